//! The log read back through the store's API: a stream's event types and payloads, every
//! event and stream, and the whole-log soundness checks.

use leadflow_engine::StreamId;
use leadflow_store::{LogFilter, RecordedEvent, Store};
use serde_json::Value;
use std::collections::BTreeSet;

/// The types of a stream's events, in order.
pub fn types(store: &Store, stream: StreamId) -> Vec<String> {
    store
        .read_stream(stream)
        .unwrap()
        .into_iter()
        .map(|e| e.event_type)
        .collect()
}

/// The payloads of a stream's events of type `ty`, in order.
pub fn payloads(store: &Store, stream: StreamId, ty: &str) -> Vec<Value> {
    store
        .read_stream(stream)
        .unwrap()
        .into_iter()
        .filter(|e| e.event_type == ty)
        .map(|e| serde_json::from_str(&e.payload).unwrap())
        .collect()
}

/// Every event of the log, in position order, read page by page.
pub fn all_events(store: &Store) -> Vec<RecordedEvent> {
    let mut out = Vec::new();
    loop {
        let after = out.last().map_or(0, |e: &RecordedEvent| e.position);
        let page = store
            .read_log(&LogFilter::default(), after, 1000)
            .expect("the log is readable");
        if page.is_empty() {
            return out;
        }
        out.extend(page);
    }
}

/// Every stream that has at least one event.
pub fn all_streams(store: &Store) -> BTreeSet<StreamId> {
    all_events(store).into_iter().map(|e| e.stream).collect()
}

/// Panics unless the live projections equal a fresh replay of the log.
pub fn assert_projections_replay(store: &mut Store) {
    let diffs = store
        .verify_projections(&mut |_| {})
        .expect("verify_projections runs");
    assert!(
        diffs.is_empty(),
        "live projections differ from a replay: {diffs:?}"
    );
}

/// Panics unless the hash chain verifies up to the log's newest event and the live
/// projections equal a fresh replay.
pub fn assert_log_is_sound(store: &mut Store) {
    let report = store.verify_chain(&mut |_| {}).expect("verify_chain runs");
    assert_eq!(report.problem, None, "the chain does not verify");
    assert_eq!(
        report.head,
        store.head().expect("head is readable"),
        "verify reports a head other than the log's newest event"
    );
    assert_projections_replay(store);
}
