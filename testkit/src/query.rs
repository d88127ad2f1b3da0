//! Reads that go through the store's named queries (`leadflow_store::query`) or its own
//! settings, for what a test compares on a store it need not put in a file (the replay
//! property runs hundreds of in-memory stores).
//!
//! These are the only places in the tests that reach the store's connection: when the store
//! stops lending it, they change here, once.

use leadflow_engine::StreamId;
use leadflow_store::Store;
use leadflow_store::query::{self, Visit};

/// The stage visits of `stream`, oldest first, as `lead show` reads them.
pub fn stage_history(store: &Store, stream: StreamId) -> Vec<Visit> {
    query::stage_history(store.connection(), stream).unwrap()
}

/// A per-connection SQLite setting of the store's own connection (`PRAGMA name`), as
/// SQLite's value in debug form: what another connection to the same file cannot see.
pub fn pragma(store: &Store, name: &str) -> String {
    store
        .connection()
        .query_row(&format!("PRAGMA {name}"), [], |r| {
            r.get::<_, rusqlite::types::Value>(0)
        })
        .map(|v| format!("{v:?}"))
        .unwrap_or_else(|e| panic!("PRAGMA {name}: {e}"))
}
