//! `Store::batched`: many writes held in one transaction (backtest's sandbox). Each write is
//! read back by the next before anything commits, a failing write breaks the batch, the
//! transaction commits every so many events and at `finish`, what is dropped uncommitted is
//! gone, and the entities cached across its commits stay what the tables hold. A scratch
//! database keeps no text-search index.

use chrono::{DateTime, Duration, TimeZone, Utc};
use leadflow_engine::event::{DeadlineScheduled, LeadCreated};
use leadflow_engine::workspace::{Backend, Stamp, WorkspaceError};
use leadflow_engine::{Actor, Entity, EntityKind, Event, EventMeta, StreamId};
use leadflow_store::{LogFilter, Options, Store};
use std::collections::BTreeMap;

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 5, 9, 0, 0).unwrap()
}

fn lead(id: i64) -> StreamId {
    StreamId::new(EntityKind::Lead, id)
}

fn created(id: i64) -> Event {
    Event::LeadCreated(LeadCreated {
        id,
        title: format!("Lead {id}"),
        name: None,
        phones: vec![format!("+7912000000{id}")],
        emails: vec![],
        source: "call".into(),
        client_type: None,
        responsible: None,
        pipeline: "leads".into(),
        stage: "new".into(),
        fields: BTreeMap::new(),
        comment: None,
        contact: None,
        company: None,
    })
}

/// Writes leads `ids` at `at`, in one write of `b`.
fn create<B: Backend>(b: &mut B, ids: &[i64], at: DateTime<Utc>) -> Result<(), WorkspaceError> {
    b.write(Stamp::At(at), |ws| {
        for &id in ids {
            ws.append(
                lead(id),
                0,
                &[created(id)],
                &EventMeta::root(at, Actor::System),
            )?;
        }
        Ok::<_, WorkspaceError>(())
    })
}

/// A write's own error.
#[derive(Debug)]
enum Refused {
    Caller,
    #[allow(dead_code)]
    Store(WorkspaceError),
}

impl From<WorkspaceError> for Refused {
    fn from(e: WorkspaceError) -> Self {
        Refused::Store(e)
    }
}

/// What another connection sees committed.
fn committed(path: &std::path::Path) -> i64 {
    Store::open_read(path, &Options::default())
        .unwrap()
        .last_position()
        .unwrap()
}

#[test]
fn batched_writes_are_read_back_at_once_and_commit_every_so_many_events() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("batched.db");
    let mut store = Store::open(&path, &Options::default()).unwrap();
    let mut batch = store.batched(3);

    create(&mut batch, &[1], t0()).unwrap();
    assert_eq!(batch.last_position().unwrap(), 1);
    assert!(matches!(
        batch.load(lead(1)).unwrap(),
        Some(Entity::Lead(_))
    ));
    assert_eq!(batch.read_after(0, 10).unwrap().len(), 1);
    assert_eq!(committed(&path), 0, "held: nothing committed yet");

    // A deadline set in the held transaction is due for the next read.
    let due = t0() + Duration::hours(1);
    batch
        .write(Stamp::At(t0()), |ws| {
            ws.append(
                lead(1),
                1,
                &[Event::DeadlineScheduled(DeadlineScheduled {
                    name: "call".into(),
                    due_at: due,
                    rule: "r".into(),
                    ruleset: "h".into(),
                })],
                &EventMeta::root(t0(), Actor::System),
            )?;
            ws.set_cursor("rules", 2)
        })
        .unwrap();
    assert_eq!(batch.next_timer_due().unwrap(), Some(due));
    assert_eq!(batch.cursor("rules").unwrap(), Some(2));
    assert_eq!(committed(&path), 0);

    // The third event reaches the batch's size: committed.
    create(&mut batch, &[2], t0() + Duration::minutes(1)).unwrap();
    assert_eq!(committed(&path), 3);

    // A write whose closure fails breaks the batch (a write has no savepoint of its own):
    // what it held since its last commit is rolled back, and it refuses anything more.
    create(&mut batch, &[3], t0() + Duration::minutes(2)).unwrap();
    assert_eq!(batch.last_position().unwrap(), 4);
    let failed = batch.write(Stamp::At(t0()), |ws| {
        ws.append(
            lead(4),
            0,
            &[created(4)],
            &EventMeta::root(t0(), Actor::System),
        )?;
        Err::<(), _>(Refused::Caller)
    });
    assert!(matches!(failed, Err(Refused::Caller)));
    assert!(
        batch.last_position().is_err(),
        "a broken batch refuses reads"
    );
    assert!(create(&mut batch, &[4], t0()).is_err(), "and writes");
    drop(batch);
    assert_eq!(committed(&path), 3);
    assert_eq!(store.last_position().unwrap(), 3);
    assert_eq!(store.load(lead(3)).unwrap(), None);

    // Dropped without `finish`: what it held since its last commit is gone.
    let mut batch = store.batched(100);
    create(&mut batch, &[3], t0() + Duration::minutes(2)).unwrap();
    drop(batch);
    assert_eq!(store.last_position().unwrap(), 3);
    assert_eq!(store.load(lead(3)).unwrap(), None);

    // `finish` commits what is held; the chain and the projections are whole.
    let mut batch = store.batched(100);
    create(&mut batch, &[3, 4], t0() + Duration::minutes(3)).unwrap();
    assert_eq!(committed(&path), 3);
    batch.finish().unwrap();
    assert_eq!(committed(&path), 5);
    assert!(store.verify_chain(&mut |_| {}).unwrap().problem.is_none());
    assert!(store.verify_projections(&mut |_| {}).unwrap().is_empty());
    // Each write stamped its own moment.
    let recorded: Vec<String> = store
        .read_log(&LogFilter::default(), 0, 10)
        .unwrap()
        .into_iter()
        .map(|e| e.recorded_at)
        .collect();
    assert_eq!(recorded[2], "2026-01-05T09:01:00.000000Z", "{recorded:?}");
    assert_eq!(recorded[3], "2026-01-05T09:03:00.000000Z", "{recorded:?}");
}

#[test]
fn a_batch_that_commits_nothing_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("empty.db");
    let mut store = Store::open(&path, &Options::default()).unwrap();
    create(&mut store, &[1], t0()).unwrap();
    let batch = store.batched(10);
    assert_eq!(batch.last_position().unwrap(), 1, "read from the store");
    assert!(batch.load(lead(1)).unwrap().is_some());
    batch.finish().unwrap();
    assert_eq!(committed(&path), 1);
}

#[test]
fn a_stream_appended_by_id_moves_the_next_new_id_on() {
    // Backtest's sandbox: a command creates lead 1 (the next id is now cached as 2), the
    // recorded history then appends lead 2 by id, and the next command must take 3.
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::open(dir.path().join("ids.db"), &Options::default()).unwrap();
    let config = leadflow_testkit::config();
    let meta = EventMeta::root(t0(), Actor::Employee("ivanov".into()));
    let mut batch = store.batched(100);
    let by_command = |b: &mut leadflow_store::Batched<'_>, phone: &str| {
        b.write(Stamp::At(t0()), |ws| {
            ws.execute(&config, &leadflow_testkit::countertop_lead(phone), &meta)
        })
        .unwrap()
        .stream
        .id
    };
    assert_eq!(by_command(&mut batch, "+79120000001"), 1);
    create(&mut batch, &[2], t0()).unwrap();
    assert_eq!(by_command(&mut batch, "+79120000003"), 3);
    batch.finish().unwrap();
    assert!(store.verify_projections(&mut |_| {}).unwrap().is_empty());
}

#[test]
fn entities_cached_across_a_batchs_commits_stay_what_the_tables_hold() {
    // Every second event commits; the projector (and its cache) goes on to the next
    // transaction. Leads changed after a commit are read back and written as they are.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("carried.db");
    let mut store = Store::open(&path, &Options::default()).unwrap();
    let config = leadflow_testkit::config();
    let meta = EventMeta::root(t0(), Actor::Employee("ivanov".into()));
    let mut batch = store.batched(2);
    create(&mut batch, &[1, 2, 3], t0()).unwrap();
    assert_eq!(committed(&path), 3);
    for round in 0..3 {
        for id in 1..=3 {
            batch
                .write(Stamp::At(t0() + Duration::minutes(round)), |ws| {
                    let cmd = leadflow_engine::Command::UpdateLead {
                        id,
                        changes: [(
                            "title".to_owned(),
                            format!("Lead {id}, round {round}").into(),
                        )]
                        .into(),
                    };
                    ws.execute(&config, &cmd, &meta).map(|_| ())
                })
                .unwrap();
            let Some(Entity::Lead(l)) = batch.load(lead(id)).unwrap() else {
                panic!("lead {id} is there");
            };
            assert_eq!(l.title, format!("Lead {id}, round {round}"));
        }
    }
    // A match key found after commits: the phone of lead 2.
    let found = batch
        .write(Stamp::At(t0()), |ws| {
            ws.matching(
                leadflow_engine::workspace::MatchKey::Phone,
                &["+79120000002".into()],
                EntityKind::Lead,
                None,
            )
        })
        .unwrap();
    assert_eq!(found, vec![2]);
    batch.finish().unwrap();
    for id in 1..=3 {
        let Some(Entity::Lead(l)) = store.load(lead(id)).unwrap() else {
            panic!("lead {id} is stored");
        };
        assert_eq!(l.title, format!("Lead {id}, round 2"));
        assert_eq!(l.version, 4);
    }
    assert!(store.verify_projections(&mut |_| {}).unwrap().is_empty());
}

#[test]
fn a_scratch_database_keeps_no_text_search_index() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("scratch.db");
    let mut scratch = Store::open_scratch(&path).unwrap();
    create(&mut scratch, &[1], t0()).unwrap();
    drop(scratch);
    let count = |path: &std::path::Path, sql: &str| -> i64 {
        rusqlite::Connection::open(path)
            .unwrap()
            .query_row(sql, [], |r| r.get(0))
            .unwrap()
    };
    let triggers = count(
        &path,
        "SELECT count(*) FROM sqlite_master WHERE type = 'trigger' AND tbl_name = 'search_text'",
    );
    assert_eq!(triggers, 0);
    let text = count(&path, "SELECT count(*) FROM search_text");
    assert_eq!(text, 1, "the searchable text is still projected");
    // An ordinary database keeps the index in step.
    let path = dir.path().join("live.db");
    let mut live = Store::open(&path, &Options::default()).unwrap();
    create(&mut live, &[1], t0()).unwrap();
    drop(live);
    let found = count(
        &path,
        "SELECT count(*) FROM search_fts WHERE search_fts MATCH '\"Lead 1\"'",
    );
    assert_eq!(found, 1);
}
