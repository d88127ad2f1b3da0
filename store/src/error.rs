//! The store's error type.

use leadflow_engine::{DecodeError, Rejection, StreamId};
use std::path::PathBuf;

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
    /// The file is an SQLite database but not a leadflow one.
    #[error("{path} is not a leadflow database (it holds other tables); refusing to touch it")]
    NotLeadflow { path: PathBuf },
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
    /// SQLite failed.
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
}

impl Error {
    /// Whether retrying the operation may succeed (a lost optimistic-concurrency race or a
    /// busy database).
    pub fn is_conflict(&self) -> bool {
        matches!(self, Error::Conflict { .. })
    }
}
