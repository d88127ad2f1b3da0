//! Reads that go through the store's named queries (`leadflow_store::query`), for what a test
//! compares on a store it need not put in a file (the replay property runs hundreds of
//! in-memory stores).

use leadflow_engine::StreamId;
use leadflow_store::Store;
use leadflow_store::query::{self, Visit};

/// The stage visits of `stream`, oldest first, as `lead show` reads them.
pub fn stage_history(store: &Store, stream: StreamId) -> Vec<Visit> {
    query::stage_history(store, stream).unwrap()
}
