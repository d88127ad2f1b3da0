//! The store's error type.

use leadflow_engine::{DecodeError, Rejection, StreamId};
use rusqlite::ffi::ErrorCode;
use std::path::{Path, PathBuf};

/// Everything that can go wrong in the store.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Another writer appended to the stream since the caller read it.
    #[error(
        "conflict on {stream}: expected version {expected}, but it is at {actual}; reload and retry"
    )]
    Conflict {
        stream: StreamId,
        expected: i64,
        actual: i64,
    },
    /// The command was refused by the engine; nothing was appended.
    #[error(transparent)]
    Rejected(#[from] Rejection),
    /// The database was written by a newer leadflow.
    #[error(
        "the database has schema version {found}, newer than this leadflow supports ({supported}); upgrade leadflow — the database was not touched"
    )]
    NewerSchema { found: i64, supported: i64 },
    /// A command that only reads found a database that must be migrated (or its projections
    /// rebuilt) first, which takes a write.
    #[error(
        "{path} {why}, which takes a write, and it cannot be written here; run `leadflow replay` once where it can be written (or on a writable copy) to bring it up to date — `events` and `verify --chain-only` read it as it is"
    )]
    NeedsUpgrade { path: PathBuf, why: String },
    /// The file is an SQLite database but not a leadflow one.
    #[error("{path} is not a leadflow database (it holds other tables); refusing to touch it")]
    NotLeadflow { path: PathBuf },
    /// The file is not an SQLite database at all.
    #[error(
        "{path} is not a database file (SQLite: file is not a database); pass the leadflow.db that `leadflow init` created"
    )]
    NotADatabase { path: PathBuf },
    /// The file is empty: not a leadflow database (yet).
    #[error(
        "{path} is empty (0 bytes): not a leadflow database; `leadflow init` creates one (or remove the file)"
    )]
    Empty { path: PathBuf },
    /// The database file does not exist.
    #[error("no database at {path}; run `leadflow init` first")]
    Missing { path: PathBuf },
    /// The database could not be opened.
    #[error("cannot open {path}: {source}")]
    Open {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    /// A write was attempted on a database that cannot be written.
    #[error(
        "cannot write {path}: {why}; this command writes — commands that only read (list, show, events, journal, inbox, verify) work on it"
    )]
    ReadOnly { path: PathBuf, why: String },
    /// A read-only open could not read the database safely.
    #[error("cannot read {path}: {why}")]
    Unreadable { path: PathBuf, why: String },
    /// The disk (or file system) holding the database is full.
    #[error(
        "the disk holding {path} is full: {file} could not grow; nothing was committed — free some space and try again"
    )]
    DiskFull { path: PathBuf, file: String },
    /// Reading or writing a database file failed at the operating-system level.
    #[error("disk I/O error on {file} ({what}); nothing was committed — check the disk")]
    DiskIo { file: String, what: String },
    /// Another process held the write lock for longer than the busy timeout.
    #[error(
        "timed out after {waited_secs}s waiting for the write lock on {path}: another leadflow process (an import, `leadflow run`, `tick`…) is writing it; nothing was appended — try again when it is done"
    )]
    Locked { path: PathBuf, waited_secs: u64 },
    /// The log is not what leadflow wrote (noticed when a writer opens it, or by `replay`):
    /// what was `refused` is not done.
    #[error(
        "the log is broken at position {position}: {why}; {refused} — run `leadflow verify` and restore the database from a backup"
    )]
    Tampered {
        position: i64,
        why: String,
        refused: Refused,
    },
    /// A stored event could not be decoded.
    #[error("event at position {position}: {source}")]
    Decode {
        position: i64,
        #[source]
        source: DecodeError,
    },
    /// A stored row is not what leadflow writes.
    #[error("corrupt row at position {position}: {why}")]
    Corrupt { position: i64, why: String },
    /// A list query ([`crate::query::list`]) asks for what the store cannot do: the field (or
    /// `order`, `page`, `cursor`) and why.
    #[error("{field}: {why}")]
    BadList { field: String, why: String },
    /// SQLite failed.
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
}

/// What a broken log ([`Error::Tampered`]) stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// A writer appending on top of it.
    Append,
    /// `replay` rebuilding the projections from it (they would hide the tampering).
    Rebuild,
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Refused::Append => "refusing to append to it",
            Refused::Rebuild => {
                "refusing to rebuild the projections from it (they are left as they were)"
            }
        })
    }
}

impl Error {
    /// Whether retrying the operation may succeed (a lost optimistic-concurrency race or a
    /// busy database).
    pub fn is_conflict(&self) -> bool {
        matches!(self, Error::Conflict { .. })
    }

    /// Names the database file in an SQLite error that is about the file: read-only, full,
    /// not a database, an I/O error. Other errors are returned unchanged.
    pub fn in_file(self, path: &Path) -> Error {
        let (code, extended, message) = match &self {
            Error::Sqlite(rusqlite::Error::SqliteFailure(e, m)) => {
                (e.code, e.extended_code, m.clone().unwrap_or_default())
            }
            Error::Open {
                source: rusqlite::Error::SqliteFailure(e, m),
                ..
            } => (e.code, e.extended_code, m.clone().unwrap_or_default()),
            _ => return self,
        };
        let path = path.to_owned();
        let file = |suffix: &str| format!("{}{suffix}", path.display());
        match code {
            ErrorCode::ReadOnly => Error::ReadOnly {
                why: read_only_why(&path),
                path,
            },
            ErrorCode::CannotOpen if !writable_dir(&path) => Error::ReadOnly {
                why: read_only_why(&path),
                path,
            },
            ErrorCode::DiskFull => Error::DiskFull {
                file: file(" (or its -wal journal)"),
                path,
            },
            ErrorCode::NotADatabase => Error::NotADatabase { path },
            ErrorCode::SystemIoFailure => {
                let (suffix, what) = io_what(extended);
                if matches!(extended, SQLITE_IOERR_SHMSIZE | SQLITE_IOERR_SHMMAP)
                    && !has_room(&path)
                {
                    return Error::DiskFull {
                        file: file(suffix),
                        path,
                    };
                }
                let what = if message.is_empty() || message == "disk I/O error" {
                    what.to_owned()
                } else {
                    format!("{what}: {message}")
                };
                Error::DiskIo {
                    file: file(suffix),
                    what,
                }
            }
            _ => self,
        }
    }
}

// SQLite's extended I/O error codes (sqlite3.h), for the ones that say which file failed.
const SQLITE_IOERR: i32 = 10;
const SQLITE_IOERR_READ: i32 = SQLITE_IOERR | (1 << 8);
const SQLITE_IOERR_WRITE: i32 = SQLITE_IOERR | (3 << 8);
const SQLITE_IOERR_FSYNC: i32 = SQLITE_IOERR | (4 << 8);
const SQLITE_IOERR_TRUNCATE: i32 = SQLITE_IOERR | (6 << 8);
const SQLITE_IOERR_SHMOPEN: i32 = SQLITE_IOERR | (18 << 8);
pub(crate) const SQLITE_IOERR_SHMSIZE: i32 = SQLITE_IOERR | (19 << 8);
const SQLITE_IOERR_SHMMAP: i32 = SQLITE_IOERR | (21 << 8);

/// Which file an extended I/O error code is about, and what failed.
fn io_what(extended: i32) -> (&'static str, &'static str) {
    match extended {
        SQLITE_IOERR_SHMOPEN => ("-shm", "cannot open the shared-memory file"),
        SQLITE_IOERR_SHMSIZE => ("-shm", "cannot grow the shared-memory file"),
        SQLITE_IOERR_SHMMAP => ("-shm", "cannot map the shared-memory file"),
        SQLITE_IOERR_READ => ("", "read failed"),
        SQLITE_IOERR_WRITE => (" (or its -wal journal)", "write failed"),
        SQLITE_IOERR_FSYNC => (" (or its -wal journal)", "fsync failed"),
        SQLITE_IOERR_TRUNCATE => (" (or its -wal journal)", "truncate failed"),
        _ => ("", "disk I/O error"),
    }
}

/// Whether the folder of `path` is writable (probed by creating and removing a file).
fn writable_dir(path: &Path) -> bool {
    probe_beside(path, 0).is_ok()
}

/// Whether nobody (but root) can create files in the folder of `path`: it is on a read-only
/// file system, or its permissions grant writing to no one. Then no WAL writer can run there
/// (it would have to create the -wal and -shm files), so the database cannot change under a
/// reader that opens it without locks (`immutable=1`).
pub(crate) fn nobody_writes_beside(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    match probe_beside(path, 0) {
        Ok(()) => false,
        Err(e) if e.kind() == std::io::ErrorKind::ReadOnlyFilesystem => true,
        Err(_) => {
            std::fs::metadata(dir_of(path)).is_ok_and(|m| m.permissions().mode() & 0o222 == 0)
        }
    }
}

/// Whether a little more can be written beside `path`: false only when a 64 KiB probe file
/// fails for lack of space (any other failure says nothing about space).
fn has_room(path: &Path) -> bool {
    use std::io::ErrorKind;
    !matches!(probe_beside(path, 65536),
        Err(e) if matches!(e.kind(), ErrorKind::StorageFull | ErrorKind::QuotaExceeded))
}

/// Creates a probe file in the folder of `path`, writes `bytes` zero bytes to it (synced, so
/// a full disk shows), and removes it again: what creating a file there would meet.
fn probe_beside(path: &Path, bytes: usize) -> std::io::Result<()> {
    use std::io::Write;
    let probe = dir_of(path).join(format!(".leadflow-probe-{}", std::process::id()));
    let mut file = std::fs::File::create(&probe)?;
    let written = if bytes == 0 {
        Ok(())
    } else {
        file.write_all(&vec![0u8; bytes])
            .and_then(|()| file.sync_all())
    };
    drop(file);
    let _ = std::fs::remove_file(&probe);
    written
}

/// Why a database cannot be written: the file, the folder, the mount, or a -wal or -shm file.
pub(crate) fn read_only_why(path: &Path) -> String {
    unwritable(path).unwrap_or_else(|| {
        format!(
            "the file {} was opened read-only (a read-only file system, or the -wal/-shm files are read-only)",
            path.display()
        )
    })
}

/// What keeps this process from writing the database at `path`, if anything: the file, its
/// folder (SQLite creates the -wal and -shm files there), or an existing -wal or -shm file.
pub(crate) fn unwritable(path: &Path) -> Option<String> {
    let write = |p: &Path| std::fs::OpenOptions::new().write(true).open(p);
    match write(path) {
        Err(e) if e.kind() == std::io::ErrorKind::ReadOnlyFilesystem => {
            return Some(format!("{} is on a read-only file system", path.display()));
        }
        Err(_) if path.exists() => {
            let folder = if writable_dir(path) {
                String::new()
            } else {
                format!(", and so is its folder {}", dir_of(path).display())
            };
            return Some(format!("the file {} is read-only{folder}", path.display()));
        }
        Err(_) => {}
        Ok(_) => {}
    }
    if !writable_dir(path) {
        return Some(format!(
            "its folder {} is read-only (SQLite creates the -wal and -shm files beside the database)",
            dir_of(path).display()
        ));
    }
    for side in sides(path) {
        if side.exists() && write(&side).is_err() {
            return Some(format!(
                "the file {} is read-only (SQLite writes it beside the database); make it writable (`chmod u+w {}`), or remove it while no leadflow process has the database open",
                side.display(),
                side.display()
            ));
        }
    }
    None
}

/// The -wal and -shm files of the database at `path`.
fn sides(path: &Path) -> [PathBuf; 2] {
    ["-wal", "-shm"].map(|suffix| PathBuf::from(format!("{}{suffix}", path.display())))
}

/// Gives the owner write permission on the database's -wal and -shm files where they lack it
/// (where this process may: it owns them). SQLite creates them with the database file's
/// permissions, so a reader of a read-only (0444) database in a writable folder leaves them
/// read-only behind it, and once the database is writable again every write would fail on
/// them. Changing a file's mode does not disturb the processes that have it open.
pub(crate) fn let_owner_write_sides(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    for side in sides(path) {
        if let Ok(m) = std::fs::metadata(&side)
            && m.is_file()
            && m.permissions().mode() & 0o200 == 0
        {
            let mode = m.permissions().mode() | 0o200;
            if std::fs::set_permissions(&side, std::fs::Permissions::from_mode(mode)).is_ok() {
                tracing::debug!(file = %side.display(), "made the file writable by its owner");
            }
        }
    }
}

/// The folder holding `path` (`.` for a bare file name).
fn dir_of(path: &Path) -> &Path {
    match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    }
}

impl From<leadflow_engine::stored::StoredError> for Error {
    fn from(e: leadflow_engine::stored::StoredError) -> Self {
        use leadflow_engine::stored::StoredError;
        match e {
            StoredError::Decode { position, source } => Error::Decode { position, source },
            StoredError::Corrupt { position, why } => Error::Corrupt { position, why },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_folder_of_a_bare_file_name_is_the_current_one() {
        assert_eq!(dir_of(Path::new("leadflow.db")), Path::new("."));
        assert_eq!(
            dir_of(Path::new("/srv/crm/leadflow.db")),
            Path::new("/srv/crm")
        );
    }

    #[test]
    fn a_probe_leaves_nothing_behind_and_finds_room_and_a_writable_folder() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("leadflow.db");
        assert!(writable_dir(&db));
        assert!(has_room(&db));
        assert!(!nobody_writes_beside(&db));
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }
}
