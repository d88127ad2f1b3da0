//! leadflow's storage: the append-only, hash-chained SQLite event log and the projection tables
//! derived from it, kept in one database file (WAL mode).
//!
//! Every write goes through [`Store::write`], one `BEGIN IMMEDIATE` transaction in which events
//! are appended with optimistic concurrency and the projections are updated, so the log and the
//! current-state tables can never disagree after a commit. The table layout is documented for
//! auditors in `docs/SCHEMA.md`.

mod chain;
mod error;
mod log;
mod project;
pub mod query;
mod schema;
mod verify;

pub use chain::{GENESIS, Hash, Hashed, event_hash, from_hex, to_hex};
pub use error::Error;
pub use log::{Appended, Executed, LogFilter, RecordedEvent, Tx, fmt_time, parse_time};
pub use project::PendingTimer;
pub use verify::{ChainReport, ProjectionDiff};

use chrono::{DateTime, Utc};
use leadflow_engine::{Entity, StreamId};
use rusqlite::{Connection, OpenFlags, TransactionBehavior};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How hard SQLite works to make a commit durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Synchronous {
    /// fsync the WAL at every commit: an acknowledged event survives power loss (default).
    #[default]
    Full,
    /// fsync only at checkpoints: survives a process crash, may lose the newest commits on
    /// power loss.
    Normal,
    /// Never fsync. For throwaway databases and benchmarks only.
    Off,
}

impl Synchronous {
    fn pragma(self) -> &'static str {
        match self {
            Synchronous::Full => "FULL",
            Synchronous::Normal => "NORMAL",
            Synchronous::Off => "OFF",
        }
    }
}

impl std::str::FromStr for Synchronous {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "full" => Ok(Synchronous::Full),
            "normal" => Ok(Synchronous::Normal),
            "off" => Ok(Synchronous::Off),
            other => Err(format!(
                "unknown synchronous mode '{other}': expected full, normal or off"
            )),
        }
    }
}

/// Settings for opening a database.
#[derive(Debug, Clone)]
pub struct Options {
    /// Durability of commits.
    pub synchronous: Synchronous,
    /// How long a writer waits for another process's write lock before failing.
    pub busy_timeout: Duration,
    /// SQLite page cache per connection, in KiB.
    pub cache_kib: i64,
    /// Create the database if it does not exist.
    pub create: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            synchronous: Synchronous::Full,
            busy_timeout: Duration::from_secs(10),
            cache_kib: 64 * 1024,
            create: true,
        }
    }
}

/// An open leadflow database.
pub struct Store {
    conn: Connection,
    path: Option<PathBuf>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("path", &self.path).finish()
    }
}

impl Store {
    /// Opens (and if needed creates and migrates) the database at `path`.
    pub fn open(path: impl AsRef<Path>, options: &Options) -> Result<Store, Error> {
        let path = path.as_ref();
        if !options.create && !path.exists() {
            return Err(Error::Missing {
                path: path.to_owned(),
            });
        }
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX
            | OpenFlags::SQLITE_OPEN_URI;
        let conn = Connection::open_with_flags(path, flags).map_err(|e| Error::Open {
            path: path.to_owned(),
            source: e,
        })?;
        Store::init(conn, Some(path.to_owned()), options)
    }

    /// Opens a fresh database in memory (for tests).
    pub fn open_in_memory() -> Result<Store, Error> {
        Store::init(Connection::open_in_memory()?, None, &Options::default())
    }

    fn init(conn: Connection, path: Option<PathBuf>, options: &Options) -> Result<Store, Error> {
        conn.busy_timeout(options.busy_timeout)?;
        schema::check_identity(&conn, path.as_deref())?;
        if path.is_some() {
            let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
            if !mode.eq_ignore_ascii_case("wal") {
                tracing::warn!(mode, "the database could not be switched to WAL mode");
            }
        }
        conn.execute_batch(&format!(
            "PRAGMA synchronous = {}; PRAGMA cache_size = -{}; PRAGMA foreign_keys = OFF; PRAGMA temp_store = MEMORY;",
            options.synchronous.pragma(),
            options.cache_kib.max(2048)
        ))?;
        // A write runs a dozen distinct statements (log, streams, each projection table);
        // rusqlite's default cache of 16 would keep re-preparing them.
        conn.set_prepared_statement_cache_capacity(64);
        // SQLite checkpoints the WAL into the database file once it holds this many pages
        // (its default); bulk transactions raise it for their commit (see `Tx::commit`). A
        // WAL that grew (by a bulk import or a replay) is cut back to 64 MiB at the next
        // checkpoint.
        conn.execute_batch(&format!(
            "PRAGMA wal_autocheckpoint = {}; PRAGMA journal_size_limit = {};",
            log::WAL_CHECKPOINT_PAGES,
            log::BULK_WAL_CHECKPOINT_PAGES * 4096
        ))?;
        let mut store = Store { conn, path };
        schema::migrate(&mut store.conn)?;
        store.catch_up()?;
        Ok(store)
    }

    /// The database file, if any.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// Runs `f` in one write transaction (`BEGIN IMMEDIATE`): everything it appends commits
    /// together, durably, or not at all. `recorded_at` is stamped on every event appended:
    /// the caller passes the real moment of the write (the CLI's wall clock; a simulation's
    /// virtual clock), since the store reads no clock itself.
    ///
    /// The closure's error type is the caller's, so it can abort with its own errors (a bad
    /// import row, say); anything it returns as `Err` rolls the whole transaction back.
    pub fn write<T, E: From<Error>>(
        &mut self,
        recorded_at: DateTime<Utc>,
        f: impl FnOnce(&mut Tx<'_>) -> Result<T, E>,
    ) -> Result<T, E> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(Error::from)?;
        let mut w = Tx::begin(tx, recorded_at)?;
        let out = f(&mut w)?;
        let bulk = w.bulk();
        let committed = w.commit();
        if bulk {
            self.conn
                .pragma_update(None, "wal_autocheckpoint", log::WAL_CHECKPOINT_PAGES)
                .map_err(Error::from)?;
        }
        committed?;
        Ok(out)
    }

    /// The current state of an entity, from the projections.
    pub fn load(&self, stream: StreamId) -> Result<Option<Entity>, Error> {
        project::load(&self.conn, "main", stream)
    }

    /// The newest event's position and hash; `None` for an empty log.
    pub fn head(&self) -> Result<Option<(i64, Hash)>, Error> {
        log::head(&self.conn)
    }

    /// The position up to which the projections are built.
    pub fn checkpoint(&self) -> Result<i64, Error> {
        project::checkpoint(&self.conn, "main")
    }

    /// The events of one stream, in version order.
    pub fn read_stream(&self, stream: StreamId) -> Result<Vec<RecordedEvent>, Error> {
        log::read_stream(&self.conn, stream)
    }

    /// Up to `limit` events after `after` that match `filter`, in position order. Call again
    /// with the last position seen to page through the log in bounded memory.
    pub fn read_log(
        &self,
        filter: &LogFilter,
        after: i64,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>, Error> {
        log::read_log(&self.conn, filter, after, limit)
    }

    /// The current version of a stream (0 if it has no events).
    pub fn stream_version(&self, stream: StreamId) -> Result<i64, Error> {
        log::stream_version(&self.conn, stream)
    }

    /// Recomputes the hash chain; `progress` is told the position reached now and then.
    pub fn verify_chain(&self, progress: &mut dyn FnMut(i64)) -> Result<ChainReport, Error> {
        verify::chain(&self.conn, progress)
    }

    /// Rebuilds the projections in a scratch database from the log and compares them with the
    /// live ones, table by table.
    pub fn verify_projections(
        &mut self,
        progress: &mut dyn FnMut(i64),
    ) -> Result<Vec<ProjectionDiff>, Error> {
        verify::projections(&mut self.conn, progress)
    }

    /// Drops every projection table and rebuilds it from the log, in one transaction: other
    /// connections see the old projections until the new ones are complete, and an interrupted
    /// replay leaves the old ones as they were. `progress` is told how many events have been
    /// applied so far. Returns the checkpoint (the head of the log).
    pub fn replay(&mut self, progress: &mut dyn FnMut(i64)) -> Result<i64, Error> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        project::recreate(&tx, "main")?;
        let head = project::rebuild_from_scratch(&tx, "main", progress)?;
        tx.commit()?;
        Ok(head)
    }

    /// The highest position in the log (0 when empty).
    pub fn last_position(&self) -> Result<i64, Error> {
        log::last_position(&self.conn)
    }

    /// Applies events the projections have not seen yet (after projection tables were dropped
    /// or emptied by hand, or a database written by an older leadflow).
    fn catch_up(&mut self) -> Result<(), Error> {
        let head = self.last_position()?;
        let checkpoint = self.checkpoint()?;
        if checkpoint < head {
            tracing::info!(
                checkpoint,
                head,
                "projections are behind the log; catching up"
            );
            project::rebuild(&mut self.conn, "main", &mut |_| {})?;
        }
        Ok(())
    }

    /// Read access for queries in [`query`].
    pub fn connection(&self) -> &Connection {
        &self.conn
    }
}
