//! leadflow's storage: the append-only, hash-chained SQLite event log and the projection tables
//! derived from it, kept in one database file (WAL mode).
//!
//! Every write goes through [`Store::write_with`] (or [`Store::write`] with a fixed
//! `recorded_at`, for simulations and tests), one `BEGIN IMMEDIATE` transaction in which events
//! are appended with optimistic concurrency and the projections are updated, so the log and the
//! current-state tables can never disagree after a commit. The table layout is documented for
//! auditors in `docs/SCHEMA.md`.

mod backup;
mod chain;
mod error;
pub mod history;
mod log;
mod project;
pub mod query;
pub mod report;
mod responses;
mod schema;
mod verify;
mod workspace;

pub use backup::{
    BackupError, Checked, END_PREFIX, ExportError, Staged, export_end_line, export_line,
    parse_export_line, remove_database, sync_folder_of,
};
pub use chain::{GENESIS, Hash, Hashed, event_hash, from_hex, to_hex};
pub use error::{Error, Refused};
pub use leadflow_engine::stored::PendingTimer;
pub use leadflow_engine::workspace::MatchKey;
pub use log::{Appended, Executed, LogFilter, RecordedEvent, Tx, fmt_time, parse_time};
pub use responses::Remembered;
pub use verify::{ChainReport, ProjectionDiff};
pub use workspace::Batched;

use chrono::{DateTime, Utc};
use leadflow_engine::{Entity, StreamId};
use rusqlite::{Connection, OpenFlags};
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

/// After this long waiting for another process's write lock, a writer says what it waits for.
const WAIT_NOTICE: Duration = Duration::from_secs(1);

/// An open leadflow database.
pub struct Store {
    conn: Connection,
    path: Option<PathBuf>,
    busy_timeout: Duration,
    read_only: bool,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("path", &self.path)
            .field("read_only", &self.read_only)
            .finish()
    }
}

impl Store {
    /// Opens (and if needed creates and migrates) the database at `path`, for reading and
    /// writing. Opening takes the write lock only when the schema must be migrated or the
    /// projections caught up; otherwise the first write does.
    pub fn open(path: impl AsRef<Path>, options: &Options) -> Result<Store, Error> {
        let path = path.as_ref();
        if !options.create {
            refuse_missing_or_empty(path)?;
        }
        // -wal/-shm files left read-only (by a reader of a once read-only database).
        error::let_owner_write_sides(path);
        let conn = connect_read_write(path)?;
        Store::init(conn, Some(path.to_owned()), options, true).map_err(|e| e.in_file(path))
    }

    /// Opens (or creates) a scratch database at `path` that only this connection uses and
    /// nobody needs after a crash (backtest's sandbox): the file locked to this connection,
    /// the rollback journal in memory instead of a write-ahead log, no fsync. A commit writes
    /// each changed page once, into the file.
    ///
    /// A scratch database keeps no text-search index: the triggers that keep `search_fts` in
    /// step with `search_text` are dropped (FTS5 wrote a segment at every savepoint's release,
    /// a twentieth of a backtest), so a text search over it finds nothing. Everything else —
    /// the log, every projection, match keys, custom-field values — is kept as usual.
    pub fn open_scratch(path: impl AsRef<Path>) -> Result<Store, Error> {
        let path = path.as_ref();
        let conn = connect_read_write(path)?;
        let open = || -> Result<Store, Error> {
            conn.execute_batch("PRAGMA locking_mode = EXCLUSIVE; PRAGMA journal_mode = MEMORY;")?;
            let options = Options {
                synchronous: Synchronous::Off,
                ..Options::default()
            };
            let store = Store::init(conn, Some(path.to_owned()), &options, false)?;
            store.conn.execute_batch(project::DROP_SEARCH_TRIGGERS)?;
            Ok(store)
        };
        open().map_err(|e| e.in_file(path))
    }

    /// Opens the database at `path` for reading only (`mode=ro`): it never takes
    /// the write lock, so it reads while another process writes, and it works on a read-only
    /// file, folder or mount. A database that would need a migration or a projection rebuild
    /// is refused with [`Error::NeedsUpgrade`] (that takes a write).
    ///
    /// In WAL mode a reader needs the `-shm` file beside the database; in a read-only folder
    /// where it does not exist (the last writer closed cleanly and removed it) and cannot be
    /// created, the database is opened `immutable=1` instead — only when that is safe: there
    /// is no `-wal` file with changes to miss, and nobody can write in that folder (a
    /// read-only file system, or a folder whose permissions grant writing to no one).
    pub fn open_read(path: impl AsRef<Path>, options: &Options) -> Result<Store, Error> {
        let path = path.as_ref();
        let store = Store::open_read_inner(path, options, true);
        error::let_owner_write_sides(path);
        store
    }

    /// Like [`Store::open_read`], for reading the log alone (`events`, `verify --chain-only`):
    /// a database whose projections would need a rebuild, or whose schema is older, is read as
    /// it is (its log tables have not changed), with a warning instead of
    /// [`Error::NeedsUpgrade`]. Only the log may be read through it.
    pub fn open_read_log(path: impl AsRef<Path>, options: &Options) -> Result<Store, Error> {
        let path = path.as_ref();
        let store = Store::open_read_inner(path, options, false);
        error::let_owner_write_sides(path);
        store
    }

    fn open_read_inner(path: &Path, options: &Options, projections: bool) -> Result<Store, Error> {
        refuse_missing_or_empty(path)?;
        // `mode=ro` in the URI makes the database file read-only; the connection itself is
        // opened read-write so that verify's scratch schema (an attached temporary database)
        // can be written: SQLITE_OPEN_READONLY would make that read-only too.
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX
            | OpenFlags::SQLITE_OPEN_URI;
        let open = |uri: &str| {
            Connection::open_with_flags(uri, flags).map_err(|e| {
                Error::Open {
                    path: path.to_owned(),
                    source: e,
                }
                .in_file(path)
            })
        };
        let uri = file_uri(path);
        let conn = open(&format!("{uri}?mode=ro"))?;
        conn.busy_timeout(options.busy_timeout)?;
        let conn = match schema::check_identity(&conn, Some(path)) {
            Ok(()) => conn,
            Err(Error::Sqlite(rusqlite::Error::SqliteFailure(e, _)))
                if matches!(
                    e.code,
                    rusqlite::ErrorCode::ReadOnly | rusqlite::ErrorCode::CannotOpen
                ) =>
            {
                let wal = PathBuf::from(format!("{}-wal", path.display()));
                if std::fs::metadata(&wal).is_ok_and(|m| m.len() > 0) {
                    return Err(Error::Unreadable {
                        path: path.to_owned(),
                        why: format!(
                            "its write-ahead log {} holds changes that cannot be read without the -shm file, which cannot be created in this read-only folder; copy the folder somewhere writable",
                            wal.display()
                        ),
                    });
                }
                if !error::nobody_writes_beside(path) {
                    return Err(Error::Unreadable {
                        path: path.to_owned(),
                        why: format!(
                            "SQLite cannot create {}-shm in its folder, which this user may not write but others may (so the database may change while it is read); run leadflow as a user who can write the folder, or read a copy",
                            path.display()
                        ),
                    });
                }
                drop(conn);
                tracing::debug!(path = %path.display(), "read-only folder: opening the database immutable");
                let conn = open(&format!("{uri}?mode=ro&immutable=1"))?;
                schema::check_identity(&conn, Some(path)).map_err(|e| e.in_file(path))?;
                conn
            }
            Err(e) => return Err(e.in_file(path)),
        };
        conn.execute_batch(&format!(
            "PRAGMA cache_size = -{}; PRAGMA temp_store = MEMORY;",
            options.cache_kib.max(2048)
        ))?;
        conn.set_prepared_statement_cache_capacity(64);
        // As on the write connection: the service's readers run the same small queries all
        // day (the outbox worker's due messages after every commit, tokens), and each was
        // compiled again at every use.
        stable_plans(&conn)?;
        match schema::check_readable(&conn, path) {
            Err(e @ Error::NeedsUpgrade { .. }) if !projections => {
                tracing::warn!("{e}");
            }
            other => other?,
        }
        Ok(Store {
            conn,
            path: Some(path.to_owned()),
            busy_timeout: options.busy_timeout,
            read_only: true,
        })
    }

    /// Opens a fresh database in memory (for tests).
    pub fn open_in_memory() -> Result<Store, Error> {
        Store::init(
            Connection::open_in_memory()?,
            None,
            &Options::default(),
            false,
        )
    }

    /// Sets up an opened connection; `wal`: in write-ahead-log mode.
    fn init(
        conn: Connection,
        path: Option<PathBuf>,
        options: &Options,
        wal: bool,
    ) -> Result<Store, Error> {
        conn.busy_timeout(options.busy_timeout)?;
        schema::check_identity(&conn, path.as_deref())?;
        if wal {
            let mode: String = conn.query_row("PRAGMA journal_mode", [], |r| r.get(0))?;
            if !mode.eq_ignore_ascii_case("wal") {
                let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
                if !mode.eq_ignore_ascii_case("wal") {
                    tracing::warn!(mode, "the database could not be switched to WAL mode");
                }
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
        stable_plans(&conn)?;
        // SQLite checkpoints the WAL into the database file once it holds this many pages
        // (its default); bulk transactions raise it for their commit (see `Tx::commit`). A
        // WAL that grew (by a bulk import or a replay) is cut back to 64 MiB at the next
        // checkpoint.
        conn.execute_batch(&format!(
            "PRAGMA wal_autocheckpoint = {}; PRAGMA journal_size_limit = {};",
            log::WAL_CHECKPOINT_PAGES,
            log::BULK_WAL_CHECKPOINT_PAGES * 4096
        ))?;
        let mut store = Store {
            conn,
            path,
            busy_timeout: options.busy_timeout,
            read_only: false,
        };
        if schema::needs_migration(&store.conn)? {
            schema::migrate(&|| store.begin_immediate())?;
        }
        store.catch_up()?;
        Ok(store)
    }

    /// Whether the store was opened with [`Store::open_read`].
    pub fn is_read_only(&self) -> bool {
        self.read_only
    }

    /// Begins a `BEGIN IMMEDIATE` transaction. If another process holds the write lock, says
    /// so after [`WAIT_NOTICE`] (a warning on the tracing output) and keeps waiting up to the
    /// busy timeout; then fails with [`Error::Locked`].
    pub(crate) fn begin_immediate(&self) -> Result<rusqlite::Transaction<'_>, Error> {
        if let Some(path) = &self.path
            && self.conn.is_readonly(rusqlite::MAIN_DB).unwrap_or(false)
        {
            return Err(Error::ReadOnly {
                path: path.clone(),
                why: if self.read_only {
                    "it was opened for reading only".into()
                } else {
                    error::read_only_why(path)
                },
            });
        }
        let total = self.busy_timeout;
        let first = total.min(WAIT_NOTICE);
        let named = |e: rusqlite::Error| match &self.path {
            Some(p) => Error::from(e).in_file(p),
            None => Error::from(e),
        };
        self.conn.busy_timeout(first).map_err(named)?;
        let attempt = rusqlite::Transaction::new_unchecked(
            &self.conn,
            rusqlite::TransactionBehavior::Immediate,
        );
        let tx = match attempt {
            Err(e) if is_busy(&e) && total > first => {
                let db = self
                    .path
                    .as_deref()
                    .map_or_else(|| "the database".to_owned(), |p| p.display().to_string());
                tracing::warn!(
                    "waiting for the database write lock (another leadflow process is writing {db})…"
                );
                self.conn.busy_timeout(total - first).map_err(named)?;
                rusqlite::Transaction::new_unchecked(
                    &self.conn,
                    rusqlite::TransactionBehavior::Immediate,
                )
            }
            other => other,
        };
        self.conn.busy_timeout(total).map_err(named)?;
        tx.map_err(|e| {
            if is_busy(&e) {
                Error::Locked {
                    path: self.path.clone().unwrap_or_else(|| "memory".into()),
                    waited_secs: total.as_secs(),
                }
            } else {
                named(e)
            }
        })
    }

    /// The durability in force on this connection (`PRAGMA synchronous`), as SQLite reports it;
    /// `EXTRA` counts as [`Synchronous::Full`].
    pub fn synchronous(&self) -> Result<Synchronous, Error> {
        let level: i64 = self
            .conn
            .query_row("PRAGMA synchronous", [], |r| r.get(0))?;
        Ok(match level {
            0 => Synchronous::Off,
            1 => Synchronous::Normal,
            _ => Synchronous::Full,
        })
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
    ///
    /// For simulations and tests, whose clock is their own; a writer on the wall clock uses
    /// [`Store::write_with`], which stamps the moment the write lock is held.
    pub fn write<T, E: From<Error>>(
        &mut self,
        recorded_at: DateTime<Utc>,
        f: impl FnOnce(&mut Tx<'_>) -> Result<T, E>,
    ) -> Result<T, E> {
        self.write_stamped(|_| Ok(recorded_at), f)
    }

    /// Like [`Store::write`], stamping `recorded_at` from `clock` read right after the write
    /// lock is held (`BEGIN IMMEDIATE` returned), not before waiting for it, and never earlier
    /// than the log's last `recorded_at`: so `recorded_at` is the moment of the commit's
    /// transaction and never decreases with position. The store reads no clock of its own.
    pub fn write_with<T, E: From<Error>>(
        &mut self,
        clock: &dyn leadflow_engine::Clock,
        f: impl FnOnce(&mut Tx<'_>) -> Result<T, E>,
    ) -> Result<T, E> {
        self.write_stamped(
            |tx| {
                use rusqlite::OptionalExtension;
                let now = clock.now();
                let last: Option<String> = tx
                    .query_row(
                        "SELECT recorded_at FROM events ORDER BY position DESC LIMIT 1",
                        [],
                        |r| r.get(0),
                    )
                    .optional()?;
                Ok(last
                    .as_deref()
                    .and_then(parse_time)
                    .map_or(now, |last| now.max(last)))
            },
            f,
        )
    }

    fn write_stamped<T, E: From<Error>>(
        &mut self,
        stamp: impl FnOnce(&rusqlite::Transaction<'_>) -> Result<DateTime<Utc>, Error>,
        f: impl FnOnce(&mut Tx<'_>) -> Result<T, E>,
    ) -> Result<T, E> {
        let tx = self.begin_immediate()?;
        let recorded_at = stamp(&tx)?;
        let mut w = Tx::begin(tx, recorded_at)?;
        let out = f(&mut w)?;
        self.commit_held(w)?;
        Ok(out)
    }

    /// Commits a transaction of this store's connection (a bulk one with the larger WAL
    /// checkpoint threshold, restored afterwards).
    fn commit_held(&self, w: Tx<'_>) -> Result<(), Error> {
        let bulk = w.bulk();
        let committed = w.commit().map_err(|e| match &self.path {
            Some(p) => e.in_file(p),
            None => e,
        });
        if bulk {
            self.conn
                .pragma_update(None, "wal_autocheckpoint", log::WAL_CHECKPOINT_PAGES)
                .map_err(Error::from)?;
        }
        committed
    }

    /// The current state of an entity, from the projections; `None` also for a deleted one
    /// ([`Store::lookup`] tells which).
    pub fn load(&self, stream: StreamId) -> Result<Option<Entity>, Error> {
        project::load(&self.conn, "main", stream)
    }

    /// The entity, or that it was deleted (when, by which event), or that it never existed.
    pub fn lookup(&self, stream: StreamId) -> Result<query::Lookup, Error> {
        query::lookup(self, stream)
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

    /// The position a named cursor has reached (`None` if it was never set).
    pub fn cursor(&self, name: &str) -> Result<Option<i64>, Error> {
        use rusqlite::OptionalExtension;
        Ok(self
            .conn
            .prepare_cached("SELECT position FROM rule_cursor WHERE name = ?1")?
            .query_row([name], |r| r.get(0))
            .optional()?)
    }

    /// Ids of leads, contacts or companies (`kind`) that have any of `values` as a phone,
    /// e-mail (case-insensitively) or INN, ascending (an index lookup per value; see
    /// [`Tx::matching`]). Phones must be normalised first (`engine::field`).
    pub fn matching(
        &self,
        what: MatchKey,
        values: &[String],
        kind: leadflow_engine::EntityKind,
        before: Option<i64>,
    ) -> Result<Vec<i64>, Error> {
        project::matching(&self.conn, what, values, kind, before)
    }

    /// The current version of a stream (0 if it has no events).
    pub fn stream_version(&self, stream: StreamId) -> Result<i64, Error> {
        log::stream_version(&self.conn, stream)
    }

    /// Recomputes the hash chain (in one read snapshot); `progress` is told the position
    /// reached now and then.
    pub fn verify_chain(&self, progress: &mut dyn FnMut(i64)) -> Result<ChainReport, Error> {
        read_tx(&self.conn, |conn| verify::chain(conn, progress))
    }

    /// Rebuilds the projections in a scratch database from the log and compares them with the
    /// live ones, table by table (in one read snapshot).
    pub fn verify_projections(
        &mut self,
        progress: &mut dyn FnMut(i64),
    ) -> Result<Vec<ProjectionDiff>, Error> {
        self.snapshot(|s| s.verify_projections(progress))
    }

    /// Runs `f` on one consistent snapshot of the database (a read transaction: nothing
    /// another process commits meanwhile is seen, and no lock is taken that a writer waits
    /// for), with a scratch schema attached for [`Snapshot::verify_projections`]. `verify`
    /// reads the chain, the kept head, the projections and their fresh replay through one
    /// snapshot, so a healthy database verifies while others write.
    pub fn snapshot<T, E: From<Error>>(
        &mut self,
        f: impl FnOnce(&Snapshot<'_>) -> Result<T, E>,
    ) -> Result<T, E> {
        // ATTACH is not allowed inside a transaction: attach first.
        self.conn
            .execute_batch("ATTACH DATABASE '' AS fresh")
            .map_err(Error::from)?;
        let out = read_tx(&self.conn, |conn| Ok::<_, Error>(f(&Snapshot { conn })));
        let detached = self.conn.execute_batch("DETACH DATABASE fresh");
        let out = out??;
        detached.map_err(Error::from)?;
        Ok(out)
    }

    /// Drops every projection table and rebuilds it from the log, in one transaction: other
    /// connections see the old projections until the new ones are complete, and an interrupted
    /// replay leaves the old ones as they were. `progress` is told how many events have been
    /// applied so far. Returns the checkpoint (the head of the log).
    ///
    /// A broken hash chain is refused ([`Error::Tampered`], nothing rebuilt): projections
    /// rebuilt from a tampered log would hide the tampering.
    pub fn replay(&mut self, progress: &mut dyn FnMut(i64)) -> Result<i64, Error> {
        let tx = self.begin_immediate()?;
        let report = verify::chain(&tx, &mut |_| {})?;
        if let Some(p) = report.problem {
            return Err(Error::Tampered {
                position: p.position,
                why: p.why,
                refused: error::Refused::Rebuild,
            });
        }
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
            log::catch_up(&|| self.begin_immediate(), "main", &mut |_| {})?;
        }
        Ok(())
    }

    /// The SQLite settings of this store's own connection that decide durability and speed
    /// (`journal_mode`, `synchronous`, `cache_size`, `temp_store`, `wal_autocheckpoint`,
    /// `journal_size_limit`), as `(name, value as text)`: what another connection to the same
    /// file cannot see.
    pub fn settings(&self) -> Result<Vec<(&'static str, String)>, Error> {
        const NAMES: [&str; 6] = [
            "journal_mode",
            "synchronous",
            "cache_size",
            "temp_store",
            "wal_autocheckpoint",
            "journal_size_limit",
        ];
        NAMES
            .into_iter()
            .map(|name| {
                let v: rusqlite::types::Value =
                    self.conn
                        .query_row(&format!("PRAGMA {name}"), [], |r| r.get(0))?;
                Ok((name, sql_text(&v)))
            })
            .collect()
    }
}

/// An SQLite value as text (`wal`, `2`, `-2000`).
pub fn sql_text(v: &rusqlite::types::Value) -> String {
    use rusqlite::types::Value;
    match v {
        Value::Null => "NULL".into(),
        Value::Integer(i) => i.to_string(),
        Value::Real(r) => r.to_string(),
        Value::Text(t) => t.clone(),
        Value::Blob(b) => format!("{} bytes", b.len()),
    }
}

/// Whether this process can write the database at `path`: the file and its folder (where
/// SQLite creates the -wal and -shm files), and those files if they exist. A read command that
/// finds the database needing an upgrade migrates it through [`Store::open`] only then.
pub fn can_write(path: &Path) -> bool {
    error::unwritable(path).is_none()
}

/// Refuses a path with no file, or an empty file (which SQLite would silently adopt as a new
/// database).
fn refuse_missing_or_empty(path: &Path) -> Result<(), Error> {
    match std::fs::metadata(path) {
        Err(_) => Err(Error::Missing {
            path: path.to_owned(),
        }),
        Ok(m) if m.is_file() && m.len() == 0 => Err(Error::Empty {
            path: path.to_owned(),
        }),
        Ok(_) => Ok(()),
    }
}

/// A `file:` URI for a path (percent-encoding what URIs reserve), without a query.
/// Plans that do not depend on bound values (SQLite's query planner stability guarantee).
/// Without it, a statement whose plan looked at a bound value — a `LIMIT ?`, an `x = ?`
/// the planner weighs by its value — is compiled again at every use: rusqlite clears the
/// bindings of a cached statement, and SQLite then expires every such statement. That was a
/// quarter of a command's instructions in the writer. Results are the same; only optimisations
/// that read a bound value (a `LIKE ?` prefix, a partial index matched by a bound value) are
/// given up, and none of leadflow's statements relies on one (the list queries' plans are
/// checked in `query::list`'s tests, on a connection with it).
fn stable_plans(conn: &Connection) -> Result<(), Error> {
    conn.set_db_config(
        rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG,
        true,
    )?;
    Ok(())
}

/// A read-write connection to the database at `path` (created if missing).
fn connect_read_write(path: &Path) -> Result<Connection, Error> {
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
        | OpenFlags::SQLITE_OPEN_CREATE
        | OpenFlags::SQLITE_OPEN_NO_MUTEX
        | OpenFlags::SQLITE_OPEN_URI;
    Connection::open_with_flags(path, flags).map_err(|e| {
        Error::Open {
            path: path.to_owned(),
            source: e,
        }
        .in_file(path)
    })
}

fn file_uri(path: &Path) -> String {
    let mut out = String::from("file:");
    for c in path.to_string_lossy().chars() {
        match c {
            '%' | '?' | '#' => out.push_str(&format!("%{:02X}", c as u32)),
            c => out.push(c),
        }
    }
    out
}

/// Whether SQLite gave up waiting for a lock.
fn is_busy(e: &rusqlite::Error) -> bool {
    matches!(
        e,
        rusqlite::Error::SqliteFailure(f, _)
            if matches!(f.code, rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
    )
}

/// A consistent read snapshot of the database; see [`Store::snapshot`].
pub struct Snapshot<'a> {
    conn: &'a Connection,
}

impl Snapshot<'_> {
    /// Recomputes the hash chain; see [`Store::verify_chain`].
    pub fn verify_chain(&self, progress: &mut dyn FnMut(i64)) -> Result<ChainReport, Error> {
        verify::chain(self.conn, progress)
    }

    /// Compares the projections with a fresh replay; see [`Store::verify_projections`].
    pub fn verify_projections(
        &self,
        progress: &mut dyn FnMut(i64),
    ) -> Result<Vec<ProjectionDiff>, Error> {
        verify::projections(self.conn, progress)
    }

    /// The highest position in the log (0 when empty).
    pub fn last_position(&self) -> Result<i64, Error> {
        log::last_position(self.conn)
    }

    /// The stored hash of the event at `position`, if there is one.
    pub fn hash_at(&self, position: i64) -> Result<Option<Vec<u8>>, Error> {
        query::hash_at(self.conn, position)
    }
}

/// Runs `f` in a read transaction on `conn` (its first read fixes the snapshot); the
/// transaction ends when `f` returns, whatever it returns.
fn read_tx<T, E: From<Error>>(
    conn: &Connection,
    f: impl FnOnce(&Connection) -> Result<T, E>,
) -> Result<T, E> {
    conn.execute_batch("BEGIN DEFERRED").map_err(Error::from)?;
    if let Err(e) = conn.query_row("SELECT count(*) FROM sqlite_schema", [], |r| {
        r.get::<_, i64>(0)
    }) {
        let _ = conn.execute_batch("ROLLBACK");
        return Err(Error::from(e).into());
    }
    let out = f(conn);
    let end = conn.execute_batch("COMMIT");
    if end.is_err() {
        let _ = conn.execute_batch("ROLLBACK");
    }
    let out = out?;
    end.map_err(Error::from)?;
    Ok(out)
}
