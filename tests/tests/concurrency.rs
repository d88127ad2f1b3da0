//! Concurrency: several `Store`s (separate SQLite connections) on one database file, written from
//! threads released together by a barrier.
//!
//! Two writers appending to the same stream at the same expected version: exactly one wins, the
//! other gets `Error::Conflict` and appends nothing, and no event is lost. Many writers on
//! different streams: every event lands, positions stay contiguous and the chain verifies.

use leadflow_engine::{EntityKind, Event, StreamId};
use leadflow_store::{Error, Options, Store};
use leadflow_testkit::{
    all_events, assert_log_is_sound, comment_event, config, exec_as, ivanov, memory_store, meta,
    numbered_lead, t0,
};
use std::path::Path;
use std::sync::Barrier;

fn open(path: &Path) -> Store {
    Store::open(path, &Options::default()).expect("the database opens")
}

/// The comment a lead's `lead.updated` event sets, if it is one.
fn comment_of(payload: &str) -> Option<String> {
    let v: serde_json::Value = serde_json::from_str(payload).ok()?;
    v["changes"]["comment"].as_str().map(str::to_owned)
}

#[test]
fn a_stale_expected_version_loses_to_the_concurrent_writer() {
    const ROUNDS: i64 = 20;
    let config = config();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("race.db");
    let mut stores = [open(&path), open(&path)];
    let lead = exec_as(&mut stores[0], &config, ivanov(), t0(), &numbered_lead(1)).stream;
    let mut wins = [0; 2];
    for round in 0..ROUNDS {
        let version = stores[0].stream_version(lead).unwrap();
        assert_eq!(stores[1].stream_version(lead).unwrap(), version);
        let before = stores[0].last_position().unwrap();
        let barrier = Barrier::new(2);
        let at = t0() + chrono::Duration::seconds(round);
        let results: Vec<Result<_, Error>> = std::thread::scope(|s| {
            let handles: Vec<_> = stores
                .iter_mut()
                .enumerate()
                .map(|(w, store)| {
                    let barrier = &barrier;
                    s.spawn(move || {
                        let event = comment_event(&format!("round {round} by writer {w}"));
                        barrier.wait();
                        store.write(at, |tx| {
                            tx.append(
                                lead,
                                version,
                                std::slice::from_ref(&event),
                                &meta(at, ivanov()),
                            )
                        })
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let winners: Vec<usize> = (0..2).filter(|w| results[*w].is_ok()).collect();
        assert_eq!(
            winners.len(),
            1,
            "round {round}: exactly one writer must win, got {results:?}"
        );
        let (winner, loser) = (winners[0], 1 - winners[0]);
        wins[winner] += 1;
        match &results[loser] {
            Err(Error::Conflict {
                stream,
                expected,
                actual,
            }) => {
                assert_eq!(*stream, lead);
                assert_eq!((*expected, *actual), (version, version + 1));
            }
            other => panic!("round {round}: the loser got {other:?}, not a conflict"),
        }
        let appended = results[winner].as_ref().unwrap();
        assert_eq!(appended.version, version + 1);
        assert_eq!(appended.first_position, before + 1);
        // Both connections see the winner's event, and only it.
        for store in &stores {
            assert_eq!(store.last_position().unwrap(), before + 1);
            assert_eq!(store.stream_version(lead).unwrap(), version + 1);
            let newest = store.read_stream(lead).unwrap().pop().unwrap();
            assert_eq!(newest.position, before + 1);
            assert_eq!(
                comment_of(&newest.payload).as_deref(),
                Some(format!("round {round} by writer {winner}").as_str())
            );
        }
    }
    let [a, b] = &mut stores;
    assert_eq!(a.stream_version(lead).unwrap(), 1 + ROUNDS);
    assert_eq!(a.head().unwrap(), b.head().unwrap());
    assert_log_is_sound(a);
    assert_log_is_sound(b);
    assert_eq!(wins[0] + wins[1], ROUNDS, "wins per writer: {wins:?}");
}

#[test]
fn a_conflict_on_one_stream_rolls_back_the_whole_batch() {
    let config = config();
    let mut store = memory_store();
    let first = exec_as(&mut store, &config, ivanov(), t0(), &numbered_lead(1)).stream;
    let second = exec_as(&mut store, &config, ivanov(), t0(), &numbered_lead(2)).stream;
    let head = store.head().unwrap();
    let err = store
        .write(t0(), |tx| {
            tx.append(first, 1, &[comment_event("first")], &meta(t0(), ivanov()))?;
            tx.append(second, 0, &[comment_event("stale")], &meta(t0(), ivanov()))
        })
        .unwrap_err();
    assert!(
        matches!(err, Error::Conflict { stream, expected: 0, actual: 1 } if stream == second),
        "{err}"
    );
    assert_eq!(store.head().unwrap(), head, "the batch was partly appended");
    assert_eq!(store.stream_version(first).unwrap(), 1);
    assert_log_is_sound(&mut store);
}

#[test]
fn many_writers_on_different_streams_lose_nothing_and_keep_positions_contiguous() {
    const WRITERS: usize = 6;
    const TRANSACTIONS: usize = 15;
    let config = config();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("many.db");
    let mut stores: Vec<Store> = (0..WRITERS).map(|_| open(&path)).collect();
    let barrier = Barrier::new(WRITERS);
    // Each writer creates its own lead (the id is allocated inside the write lock), then
    // appends batches of one to three comments to it, tracking its own expected version.
    let written: Vec<(StreamId, Vec<String>)> = std::thread::scope(|s| {
        let handles: Vec<_> = stores
            .iter_mut()
            .enumerate()
            .map(|(w, store)| {
                let (barrier, config) = (&barrier, &config);
                s.spawn(move || {
                    barrier.wait();
                    let at = t0();
                    let lead =
                        exec_as(store, config, ivanov(), at, &numbered_lead(w as u64)).stream;
                    let mut version = 1;
                    let mut comments = Vec::new();
                    for t in 0..TRANSACTIONS {
                        let batch: Vec<String> = (0..=(w + t) % 3)
                            .map(|i| format!("writer {w} transaction {t} event {i}"))
                            .collect();
                        let events: Vec<Event> = batch.iter().map(|c| comment_event(c)).collect();
                        let appended = store
                            .write(at, |tx| {
                                tx.append(lead, version, &events, &meta(at, ivanov()))
                            })
                            .unwrap_or_else(|e| panic!("writer {w}: {e}"));
                        assert_eq!(
                            appended.last_position - appended.first_position + 1,
                            events.len() as i64
                        );
                        version = appended.version;
                        comments.extend(batch);
                    }
                    (lead, comments)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });

    let store = &mut stores[0];
    let mut leads: Vec<i64> = written.iter().map(|(s, _)| s.id).collect();
    leads.sort_unstable();
    assert_eq!(
        leads,
        (1..=WRITERS as i64).collect::<Vec<_>>(),
        "lead ids were not allocated one per writer"
    );
    let total: usize = written.iter().map(|(_, c)| 1 + c.len()).sum();
    let events = all_events(store);
    assert_eq!(events.len(), total, "events were lost or duplicated");
    for (i, e) in events.iter().enumerate() {
        assert_eq!(e.position, i as i64 + 1, "positions are not contiguous");
    }
    for (lead, comments) in &written {
        assert_eq!(lead.kind, EntityKind::Lead);
        let stream = store.read_stream(*lead).unwrap();
        assert_eq!(store.stream_version(*lead).unwrap(), stream.len() as i64);
        let got: Vec<String> = stream
            .iter()
            .filter_map(|e| comment_of(&e.payload))
            .collect();
        assert_eq!(&got, comments, "{lead} lost or reordered events");
    }
    assert_log_is_sound(store);
}
