//! Backup, restore, and the log exported and imported as JSON Lines: the store's side of
//! `leadflow backup`, `restore`, `export` and `import-log` (the policy — which head is too
//! old, what `--force` allows — is the CLI's).
//!
//! - [`Store::backup_to`] copies the live database with SQLite's online backup API in **one**
//!   step: one read transaction, so the copy is one consistent snapshot while writers go on
//!   (WAL readers do not block them). A backup in small steps would be restarted by SQLite
//!   every time another connection commits, and might never end under a busy service.
//! - A new database is never written in place: it is [`Staged`] in a temporary file beside
//!   its target, checked there ([`Staged::check`]: the chain, and the projections against a
//!   fresh replay), and only then fsynced and renamed over the target ([`Staged::install`]),
//!   after making sure no other process has the target open. Dropping a `Staged` that was not
//!   installed removes the temporary file: an error leaves nothing behind.
//! - [`export_line`] and [`parse_export_line`] are the one line format of an export: the
//!   fields of `leadflow events --json`, in its order, but the payload verbatim as stored
//!   (the chain hashes its exact text; `events --json` re-serialises it and masks secrets).

use crate::chain::{GENESIS, Hash, event_hash, from_hex, to_hex};
use crate::error::Error;
use crate::log::{hashed, head, row_to_event};
use crate::verify::{ChainReport, ProjectionDiff};
use crate::{Options, Store, Synchronous, project, read_tx, verify};
use leadflow_engine::stored::{RecordedEvent, parse_time};
use leadflow_engine::{Event, StreamId};
use rusqlite::{Connection, OpenFlags, OptionalExtension, params};
use serde_json::value::RawValue;
use std::io;
use std::path::{Path, PathBuf};

/// What a backup, restore or import could not do.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    /// The store failed (or refused).
    #[error(transparent)]
    Store(#[from] Error),
    /// A file could not be read, written, synced or renamed.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// A backup is never written over an existing file.
    #[error(
        "{path} already exists; remove it or choose another name (a backup never overwrites a file)"
    )]
    Exists { path: PathBuf },
    /// Another process holds the write lock on the target.
    #[error(
        "another process is writing {path} (leadflow serve, run, an import…); stop it first — nothing was replaced"
    )]
    Busy { path: PathBuf },
    /// Another process has the target open (it would go on writing the replaced file).
    #[error(
        "{path} is open in another process (leadflow serve or run?): replacing it under that process would lose its writes; stop it first — nothing was replaced"
    )]
    InUse { path: PathBuf },
    /// The target was written to after its head was read for the checks (a process that
    /// wrote and exited meanwhile: `leadflow tick` from cron, a CLI command).
    #[error(
        "{path} changed while the replacement was checked (its head is now position {now}, was {then}): another process wrote to it; run the command again — nothing was replaced"
    )]
    Changed { path: PathBuf, then: i64, now: i64 },
    /// `import-log` writes a new database only.
    #[error(
        "{path} already holds {events} events; import-log builds a new database: give --db NEW (a file that does not exist yet)"
    )]
    NotEmpty { path: PathBuf, events: i64 },
    /// A line of an export is bad (1-based line number; the caller names the file).
    #[error("line {line}: {why}")]
    Line { line: usize, why: String },
    /// The live log does not chain: an export of it would not import.
    #[error(
        "the log is broken at position {position}: {why}; refusing to export it (its export would not import) — run `leadflow verify`"
    )]
    Broken { position: i64, why: String },
}

impl From<rusqlite::Error> for BackupError {
    fn from(e: rusqlite::Error) -> Self {
        BackupError::Store(Error::from(e))
    }
}

impl BackupError {
    fn io(path: &Path) -> impl FnOnce(io::Error) -> BackupError + '_ {
        move |source| BackupError::Io {
            path: path.to_owned(),
            source,
        }
    }
}

/// What [`Staged::check`] found: the chain (its head, its first problem) and the projection
/// tables that differ from a fresh replay (checked only when the chain is intact).
#[derive(Debug, Clone)]
pub struct Checked {
    pub chain: ChainReport,
    pub diffs: Vec<ProjectionDiff>,
}

impl Checked {
    /// Every problem, one sentence each (none: the database verifies).
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        if let Some(p) = &self.chain.problem {
            out.push(format!(
                "chain: broken at position {}: {}",
                p.position, p.why
            ));
        }
        for d in &self.diffs {
            out.push(format!(
                "projections: table {} differs from a fresh replay ({} rows not reproduced, {} replayed rows missing)",
                d.table, d.only_live, d.only_replayed
            ));
        }
        out
    }
}

impl Store {
    /// Copies the whole database into the new file `dest` with SQLite's online backup API, in
    /// one step (one read snapshot: whatever other connections commit meanwhile is not in the
    /// copy, and they are not held up). The copy is written to a temporary file beside `dest`,
    /// fsynced and renamed, so `dest` is either absent or complete. Returns the copy's chain
    /// (its head and whether it verifies).
    pub fn backup_to(&self, dest: &Path) -> Result<ChainReport, BackupError> {
        if dest.exists() {
            return Err(BackupError::Exists {
                path: dest.to_owned(),
            });
        }
        let tmp = Scratch::beside(dest, "backup");
        let report = {
            let mut to = Connection::open(&tmp.path)?;
            tmp.restrict()?;
            copy_all(&self.conn, &mut to)?;
            let report = read_tx(&to, |c| verify::chain(c, &mut |_| {}))?;
            to.close().map_err(|(_, e)| Error::from(e))?;
            report
        };
        tmp.sync_and_rename(dest)?;
        Ok(report)
    }

    /// Writes every event, in position order, to `sink` as [`export_line`]s, from one read
    /// snapshot, one row in memory at a time. The chain is recomputed on the way: a log that
    /// does not chain is refused at its first bad position ([`BackupError::Broken`]), since
    /// its export would not import. Returns the head exported (`None`: an empty log).
    pub fn export_log(
        &self,
        sink: &mut dyn FnMut(&str) -> io::Result<()>,
        progress: &mut dyn FnMut(i64),
    ) -> Result<Option<(i64, Hash)>, ExportError> {
        read_tx(&self.conn, |conn| {
            let mut stmt = conn
                .prepare(&format!("{} ORDER BY e.position", crate::log::SELECT_EVENT))
                .map_err(Error::from)?;
            let mut rows = stmt.query([]).map_err(Error::from)?;
            let mut prev = GENESIS;
            let mut expected = 1;
            while let Some(r) = rows.next().map_err(Error::from)? {
                let broken = |position, why: String| {
                    ExportError::Backup(BackupError::Broken { position, why })
                };
                let e = row_to_event(r).map_err(Error::from)??;
                if e.position != expected {
                    return Err(broken(expected, "a position is missing".into()));
                }
                let name = e.stream.to_string();
                if event_hash(&prev, &hashed(&e, &name)) != e.hash {
                    return Err(broken(e.position, "hash mismatch".into()));
                }
                let line = export_line(&e).map_err(|why| broken(e.position, why))?;
                sink(&line).map_err(ExportError::Sink)?;
                prev = e.hash;
                expected += 1;
                if e.position % 65536 == 0 {
                    progress(e.position);
                }
            }
            let head = (expected > 1).then_some((expected - 1, prev));
            sink(&export_end_line(head)).map_err(ExportError::Sink)?;
            progress(expected - 1);
            Ok(head)
        })
    }
}

/// What [`Store::export_log`] could not do: the store's side, or the sink's (the caller
/// knows where it writes).
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error(transparent)]
    Backup(#[from] BackupError),
    #[error("{0}")]
    Sink(#[source] io::Error),
}

impl From<Error> for ExportError {
    fn from(e: Error) -> Self {
        ExportError::Backup(BackupError::Store(e))
    }
}

/// Copies every page of `from` into `to` in one backup step, retrying a few times while the
/// source is busy or locked (a writer's WAL recovery, a checkpoint).
fn copy_all(from: &Connection, to: &mut Connection) -> Result<(), Error> {
    use rusqlite::backup::{Backup, StepResult};
    let backup = Backup::new(from, to)?;
    for _ in 0..200 {
        match backup.step(-1)? {
            StepResult::Done => return Ok(()),
            StepResult::More | StepResult::Busy | StepResult::Locked => {
                std::thread::sleep(std::time::Duration::from_millis(25));
            }
            _ => std::thread::sleep(std::time::Duration::from_millis(25)),
        }
    }
    Err(Error::Sqlite(rusqlite::Error::SqliteFailure(
        rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_BUSY),
        Some("the backup could not read the database: it stayed busy for 5 seconds".into()),
    )))
}

/// Removes a database file and its `-wal`, `-shm` and `-journal` files, whichever exist (a
/// copy that failed, a scratch file given up).
pub fn remove_database(path: &Path) {
    for suffix in ["", "-wal", "-shm", "-journal"] {
        let mut p = path.as_os_str().to_owned();
        p.push(suffix);
        let _ = std::fs::remove_file(p);
    }
}

/// A temporary file beside a target (with its `-wal`, `-shm` and `-journal` files), removed
/// when dropped unless it was renamed into place.
struct Scratch {
    path: PathBuf,
    kept: bool,
}

impl Scratch {
    fn beside(target: &Path, what: &str) -> Scratch {
        let name = target.file_name().map_or_else(
            || "leadflow.db".into(),
            |n| n.to_string_lossy().into_owned(),
        );
        let path = target.with_file_name(format!(".{name}.{what}-{}.tmp", std::process::id()));
        let scratch = Scratch { path, kept: false };
        scratch.remove();
        scratch
    }

    /// Makes the scratch file readable by its owner only (a copy of the log holds the webhook
    /// endpoints' signing secrets and the clients' personal data); SQLite gives its -wal and
    /// -shm the same mode. Called right after the file is created, before anything is written.
    fn restrict(&self) -> Result<(), BackupError> {
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&self.path, std::fs::Permissions::from_mode(0o600)).map_err(
                |source| BackupError::Io {
                    path: self.path.clone(),
                    source,
                },
            )?;
        }
        Ok(())
    }

    fn remove(&self) {
        remove_database(&self.path);
    }

    /// fsyncs the (closed) file, renames it to `target` and fsyncs the folder, so that after
    /// a crash `target` is the old file or the complete new one.
    fn sync_and_rename(mut self, target: &Path) -> Result<(), BackupError> {
        for side in ["-wal", "-journal"] {
            let p = PathBuf::from(format!("{}{side}", self.path.display()));
            if p.exists() {
                return Err(BackupError::Io {
                    path: p,
                    source: io::Error::other("left behind: the copy is not complete"),
                });
            }
        }
        std::fs::File::open(&self.path)
            .and_then(|f| f.sync_all())
            .map_err(BackupError::io(&self.path))?;
        std::fs::rename(&self.path, target).map_err(BackupError::io(target))?;
        self.kept = true;
        let _ = std::fs::remove_file(format!("{}-shm", self.path.display()));
        sync_folder_of(target).map_err(BackupError::io(target))?;
        Ok(())
    }
}

/// Fsyncs the folder that holds `path`, so that a rename into it survives a crash.
pub fn sync_folder_of(path: &Path) -> io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    std::fs::File::open(dir).and_then(|d| d.sync_all())
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if !self.kept {
            self.remove();
        }
    }
}

/// A database built in a temporary file beside `target`, to be checked and then put in
/// place; dropped without [`Staged::install`], it is removed.
pub struct Staged {
    store: Store,
    scratch: Scratch,
    target: PathBuf,
}

impl std::fmt::Debug for Staged {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Staged")
            .field("scratch", &self.scratch.path)
            .field("target", &self.target)
            .finish()
    }
}

/// Opening settings of a staged database: no fsync per commit ([`Staged::install`] fsyncs
/// the finished file once).
fn staging_options() -> Options {
    Options {
        synchronous: Synchronous::Off,
        ..Options::default()
    }
}

impl Staged {
    /// Copies the backup `backup` (with the online backup API: consistent even if something
    /// still writes it) beside `target`, and opens the copy, upgrading it if an older
    /// leadflow wrote it. The backup itself is only read.
    pub fn restore(backup: &Path, target: &Path) -> Result<Staged, BackupError> {
        let source = Store::open_read_log(backup, &staging_options())?;
        let scratch = Scratch::beside(target, "restore");
        {
            let mut to = Connection::open(&scratch.path)?;
            scratch.restrict()?;
            copy_all(&source.conn, &mut to)?;
            to.close().map_err(|(_, e)| Error::from(e))?;
        }
        drop(source);
        let store = Store::open(
            &scratch.path,
            &Options {
                create: false,
                ..staging_options()
            },
        )?;
        Ok(Staged {
            store,
            scratch,
            target: target.to_owned(),
        })
    }

    /// A new, empty database beside `target`, for [`Staged::import`]. `target` must not hold
    /// events: it is absent, empty (0 bytes), or a leadflow database with an empty log (as
    /// `leadflow init` makes it).
    pub fn empty(target: &Path) -> Result<Staged, BackupError> {
        if std::fs::metadata(target).is_ok_and(|m| m.len() > 0) {
            let events = Store::open_read_log(target, &staging_options())?.last_position()?;
            if events > 0 {
                return Err(BackupError::NotEmpty {
                    path: target.to_owned(),
                    events,
                });
            }
        }
        let scratch = Scratch::beside(target, "import");
        let store = Store::open(&scratch.path, &staging_options())?;
        scratch.restrict()?;
        Ok(Staged {
            store,
            scratch,
            target: target.to_owned(),
        })
    }

    /// Appends the events of an export, one [`export_line`] per item of `lines` (line 1
    /// first), exactly as they were recorded, and rebuilds the projections from them — all
    /// in one transaction. Every line is checked before it is written: it must parse, follow
    /// the previous position without a gap, be the next version of its stream, fit its
    /// stream, decode, and its hash must chain from the previous line's; the first line that
    /// does not is refused with its number. Memory does not grow with the file. Returns the
    /// head imported.
    pub fn import(
        &mut self,
        lines: &mut dyn Iterator<Item = io::Result<String>>,
        progress: &mut dyn FnMut(i64),
    ) -> Result<Option<(i64, Hash)>, BackupError> {
        let tx = self.store.begin_immediate()?;
        if crate::log::last_position(&tx)? != 0 {
            return Err(BackupError::NotEmpty {
                path: self.target.clone(),
                events: crate::log::last_position(&tx)?,
            });
        }
        let mut prev = GENESIS;
        let mut expected = 1i64;
        {
            let mut version_of = tx.prepare(
                "SELECT stream_key, version FROM streams WHERE kind = ?1 AND entity_id = ?2",
            )?;
            let mut new_stream =
                tx.prepare("INSERT INTO streams (kind, entity_id, version) VALUES (?1, ?2, ?3)")?;
            let mut bump = tx.prepare("UPDATE streams SET version = ?1 WHERE stream_key = ?2")?;
            // The number of the end line, once read: nothing may follow it.
            let mut ended = None;
            let mut read = 0;
            for (i, line) in lines.enumerate() {
                let n = i + 1;
                read = n;
                let bad = |why: String| BackupError::Line { line: n, why };
                let line = line.map_err(|e| bad(format!("cannot be read: {e}")))?;
                if let Some(end) = ended {
                    if line.trim().is_empty() {
                        continue;
                    }
                    return Err(bad(format!(
                        "a line after the export's end line (line {end}): an export ends there"
                    )));
                }
                if line.starts_with(END_PREFIX) {
                    let head = (expected > 1).then_some((expected - 1, prev));
                    check_end_line(&line, head).map_err(bad)?;
                    ended = Some(n);
                    continue;
                }
                let e = parse_export_line(&line).map_err(bad)?;
                if e.position != expected {
                    return Err(bad(if e.position > expected {
                        format!(
                            "position {} follows position {}: a gap (position {expected} is missing)",
                            e.position,
                            expected - 1
                        )
                    } else {
                        format!(
                            "position {} comes after position {}: positions must increase by one",
                            e.position,
                            expected - 1
                        )
                    }));
                }
                let stream = (e.stream.kind.as_str(), e.stream.id);
                let known: Option<(i64, i64)> = version_of
                    .query_row(params![stream.0, stream.1], |r| Ok((r.get(0)?, r.get(1)?)))
                    .optional()?;
                let at = known.map_or(0, |(_, v)| v);
                if e.version != at + 1 {
                    return Err(bad(format!(
                        "version {} of {} is out of order: the stream is at version {at}, so the next is {}",
                        e.version,
                        e.stream,
                        at + 1
                    )));
                }
                let event = Event::decode(&e.event_type, e.schema_version as u32, &e.payload)
                    .map_err(|err| {
                        bad(format!(
                            "{} (schema version {}) does not decode: {err}",
                            e.event_type, e.schema_version
                        ))
                    })?;
                if !event.fits(e.stream.kind) {
                    return Err(bad(format!(
                        "a {} event cannot go to stream {}",
                        e.event_type, e.stream
                    )));
                }
                let name = e.stream.to_string();
                let computed = event_hash(&prev, &hashed(&e, &name));
                if computed != e.hash {
                    return Err(bad(format!(
                        "the hash does not chain: hashing this line's fields after the previous line's hash gives {}, the line says {}; this line (or an earlier one) was changed",
                        &to_hex(&computed)[..16],
                        &to_hex(&e.hash)[..16]
                    )));
                }
                let key = match known {
                    Some((key, _)) => {
                        bump.execute(params![e.version, key])?;
                        key
                    }
                    None => {
                        new_stream.execute(params![stream.0, stream.1, e.version])?;
                        tx.last_insert_rowid()
                    }
                };
                crate::log::insert_recorded(&tx, key, &e)?;
                prev = computed;
                expected += 1;
                if e.position % 65536 == 0 {
                    progress(e.position);
                }
            }
            if ended.is_none() {
                return Err(BackupError::Line {
                    line: read.max(1),
                    why: if read == 0 {
                        "the file is empty: an export has at least its end line".into()
                    } else {
                        format!(
                            "the export stops after this line without its end line ({END_PREFIX}…}}}}, which leadflow export writes last): it was cut short"
                        )
                    },
                });
            }
        }
        project::recreate(&tx, "main")?;
        project::rebuild_from_scratch(&tx, "main", progress)?;
        tx.commit().map_err(Error::from)?;
        Ok((expected > 1).then_some((expected - 1, prev)))
    }

    /// Checks the staged database as `leadflow verify` does: the chain, then (if it is
    /// intact) the projections against a fresh replay, in one snapshot.
    pub fn check(&mut self, progress: &mut dyn FnMut(i64)) -> Result<Checked, Error> {
        self.store.snapshot(|s| {
            let chain = s.verify_chain(progress)?;
            let diffs = if chain.problem.is_none() {
                s.verify_projections(progress)?
            } else {
                Vec::new()
            };
            Ok(Checked { chain, diffs })
        })
    }

    /// The staged log's hash at `position`, if it reaches it (to compare with a kept head).
    pub fn hash_at(&self, position: i64) -> Result<Option<Hash>, Error> {
        let h: Option<Vec<u8>> = self
            .store
            .conn
            .query_row(
                "SELECT hash FROM events WHERE position = ?1",
                [position],
                |r| r.get(0),
            )
            .optional()?;
        Ok(h.and_then(|h| Hash::try_from(h.as_slice()).ok()))
    }

    /// The staged log's head.
    pub fn head(&self) -> Result<Option<(i64, Hash)>, Error> {
        head(&self.store.conn)
    }

    /// Puts the staged database in place of the target: closes it, makes sure no other
    /// process has the target open ([`BackupError::Busy`] while one holds its write lock,
    /// [`BackupError::InUse`] while one merely has it open), fsyncs the new file, renames it
    /// over the target and fsyncs the folder. On any error the target is left as it was.
    ///
    /// Another process is noticed through SQLite's own bookkeeping: the last connection to
    /// close a WAL database removes its `-wal` file, so one that remains after this function
    /// closes its probe connection belongs to a connection still open. (A process that opens
    /// the target in the instant between that check and the rename is not noticed.) Beside
    /// a target that is absent or not a database at all, a `-wal` or `-shm` is stale — it
    /// belongs to no database that can be written — and is removed, so that it is never
    /// paired with the new file.
    ///
    /// `seen` is the target's head as the caller read it before its checks (`None`: the
    /// target had no events or did not exist): if the target's head is another now (read
    /// under the write lock of the probe), something wrote meanwhile and nothing is replaced.
    pub fn install(self, seen: Option<(i64, Hash)>) -> Result<(), BackupError> {
        let Staged {
            store,
            scratch,
            target,
        } = self;
        drop(store);
        ensure_unused(&target, seen)?;
        scratch.sync_and_rename(&target)
    }
}

/// Refuses a target another process has open; see [`Staged::install`].
fn ensure_unused(target: &Path, seen: Option<(i64, Hash)>) -> Result<(), BackupError> {
    let side = |s: &str| PathBuf::from(format!("{}{s}", target.display()));
    if std::fs::metadata(target).is_err() {
        // No database: a -wal or -shm left beside its name belongs to none (a process that
        // still has a removed database open writes a file no one will read again).
        for s in ["-wal", "-shm", "-journal"] {
            let _ = std::fs::remove_file(side(s));
        }
        return Ok(());
    }
    {
        let conn = Connection::open_with_flags(
            target,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(Error::from)?;
        conn.busy_timeout(std::time::Duration::ZERO)
            .map_err(Error::from)?;
        match conn.execute_batch("BEGIN IMMEDIATE;") {
            Ok(()) => {
                let now = head_under_lock(&conn);
                let _ = conn.execute_batch("ROLLBACK;");
                let now = now.map_err(|e| e.in_file(target))?;
                if now != seen {
                    return Err(BackupError::Changed {
                        path: target.to_owned(),
                        then: seen.map_or(0, |(p, _)| p),
                        now: now.map_or(0, |(p, _)| p),
                    });
                }
            }
            Err(rusqlite::Error::SqliteFailure(f, _))
                if matches!(
                    f.code,
                    rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked
                ) =>
            {
                return Err(BackupError::Busy {
                    path: target.to_owned(),
                });
            }
            // Not a database (what a forced restore may replace): no connection can be
            // writing it, and a -wal or -shm beside it is left from the database it
            // overwrote — it must not be paired with the new file.
            Err(rusqlite::Error::SqliteFailure(f, _))
                if f.code == rusqlite::ErrorCode::NotADatabase =>
            {
                drop(conn);
                tracing::warn!(path = %target.display(), "not a database: removing its stale -wal and -shm");
                for s in ["-wal", "-shm", "-journal"] {
                    let _ = std::fs::remove_file(side(s));
                }
                return Ok(());
            }
            Err(e) => return Err(Error::from(e).in_file(target).into()),
        }
        drop(conn);
    }
    if side("-wal").exists() || side("-journal").exists() {
        return Err(BackupError::InUse {
            path: target.to_owned(),
        });
    }
    // A -shm without a -wal is stale; it must not be paired with the new file.
    let _ = std::fs::remove_file(side("-shm"));
    Ok(())
}

/// The newest event's position and hash, if the database has an `events` table with any.
fn head_under_lock(conn: &Connection) -> Result<Option<(i64, Hash)>, Error> {
    let has_log: bool = conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'events')",
        [],
        |r| r.get(0),
    )?;
    if has_log { head(conn) } else { Ok(None) }
}

/// One event as a line of an export (no newline): the fields of `leadflow events --json` in
/// its order — position, stream, version, type, schema_version, payload, occurred_at,
/// recorded_at, actor, causation, correlation, hash (hex) — with the payload the stored JSON
/// text itself. Fails (saying why) for a payload that is not JSON on one line.
pub fn export_line(e: &RecordedEvent) -> Result<String, String> {
    #[derive(serde::Serialize)]
    struct Line<'a> {
        position: i64,
        stream: String,
        version: i64,
        #[serde(rename = "type")]
        event_type: &'a str,
        schema_version: i64,
        payload: &'a RawValue,
        occurred_at: &'a str,
        recorded_at: &'a str,
        actor: &'a str,
        causation: Option<i64>,
        correlation: i64,
        hash: String,
    }
    let payload: &RawValue = serde_json::from_str(&e.payload)
        .map_err(|err| format!("its payload is not JSON ({err})"))?;
    if payload.get() != e.payload || e.payload.contains(['\n', '\r']) {
        return Err("its payload is not compact JSON on one line".into());
    }
    serde_json::to_string(&Line {
        position: e.position,
        stream: e.stream.to_string(),
        version: e.version,
        event_type: &e.event_type,
        schema_version: e.schema_version,
        payload,
        occurred_at: &e.occurred_at,
        recorded_at: &e.recorded_at,
        actor: &e.actor,
        causation: e.causation,
        correlation: e.correlation,
        hash: to_hex(&e.hash),
    })
    .map_err(|err| err.to_string())
}

/// How an export's last line begins: `{"end":{"events":N,"head":"…"}}`, the number of events
/// before it and the hash of the last (`null` for an empty log), so that an export cut at a
/// line boundary is told from a whole one.
pub const END_PREFIX: &str = "{\"end\":";

/// The export's end line after the events up to `head`.
pub fn export_end_line(head: Option<(i64, Hash)>) -> String {
    serde_json::json!({"end": {
        "events": head.map_or(0, |(p, _)| p),
        "head": head.map(|(_, h)| to_hex(&h)),
    }})
    .to_string()
}

/// Checks an end line against the events read before it (`head`).
fn check_end_line(text: &str, head: Option<(i64, Hash)>) -> Result<(), String> {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct End {
        end: Inner,
    }
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Inner {
        events: i64,
        head: Option<String>,
    }
    let end: End = serde_json::from_str(text).map_err(|e| match e.classify() {
        serde_json::error::Category::Eof => format!(
            "the line is cut short (not complete JSON at column {}): the file was truncated",
            e.column()
        ),
        _ => format!("not an export's end line ({{\"end\":{{\"events\":N,\"head\":\"…\"}}}}): {e}"),
    })?;
    let read = head.map_or(0, |(p, _)| p);
    if end.end.events != read {
        return Err(format!(
            "the end line says the export holds {} events, {read} came before it: lines are missing",
            end.end.events
        ));
    }
    let want = head.map(|(_, h)| to_hex(&h));
    if end.end.head != want {
        return Err(format!(
            "the end line's head {} is not the last event's hash {}",
            end.end.head.as_deref().unwrap_or("null"),
            want.as_deref().unwrap_or("null")
        ));
    }
    Ok(())
}

/// Reads one line of an export back (see [`export_line`]), saying what is wrong with a line
/// that is not one: not JSON, cut short, a field missing or of the wrong type, an unknown
/// stream, a time or hash that is not one.
pub fn parse_export_line(text: &str) -> Result<RecordedEvent, String> {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Line<'a> {
        position: i64,
        stream: String,
        version: i64,
        #[serde(rename = "type")]
        event_type: String,
        schema_version: i64,
        #[serde(borrow)]
        payload: &'a RawValue,
        occurred_at: String,
        recorded_at: String,
        actor: String,
        causation: Option<i64>,
        correlation: i64,
        hash: String,
    }
    if text.trim().is_empty() {
        return Err("an empty line: every line of an export is one event".into());
    }
    let l: Line<'_> = serde_json::from_str(text).map_err(|e| {
        use serde_json::error::Category;
        let msg = e.to_string();
        let msg = msg
            .rsplit_once(" at line ")
            .map_or(msg.as_str(), |(m, _)| m);
        match e.classify() {
            Category::Eof => format!(
                "the line is cut short (not complete JSON at column {}): the file was truncated",
                e.column()
            ),
            Category::Syntax => format!("bad JSON at column {}: {msg}", e.column()),
            _ => format!("not an exported event: {msg}"),
        }
    })?;
    let stream: StreamId = l.stream.parse()?;
    let hash =
        from_hex(&l.hash).ok_or_else(|| format!("hash '{}' is not 64 hex digits", l.hash))?;
    for (name, t) in [
        ("occurred_at", &l.occurred_at),
        ("recorded_at", &l.recorded_at),
    ] {
        if parse_time(t).is_none() {
            return Err(format!("{name} '{t}' is not a stored time"));
        }
    }
    if l.version < 1 || l.position < 1 || l.schema_version < 1 {
        return Err("position, version and schema_version start at 1".into());
    }
    Ok(RecordedEvent {
        position: l.position,
        stream,
        version: l.version,
        event_type: l.event_type,
        schema_version: l.schema_version,
        payload: l.payload.get().to_owned(),
        occurred_at: l.occurred_at,
        recorded_at: l.recorded_at,
        actor: l.actor,
        causation: l.causation,
        correlation: l.correlation,
        hash,
    })
}
