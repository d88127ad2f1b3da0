//! Store behaviour on in-memory and temporary databases: appends, conflicts, projections,
//! replay and the hash chain.

use chrono::{DateTime, Duration, Utc};
use leadflow_engine::command::{NewDeal, NewLead};
use leadflow_engine::{Command, Config, Entity, EntityKind, StreamId};
use leadflow_store::{Error, Options, Store, Synchronous};
use leadflow_testkit::query::stage_history;
use leadflow_testkit::{Db, config, ivanov, memory_store, meta, t0, try_exec};

/// Executes `cmd` as ivanov at `at`.
fn run(
    store: &mut Store,
    config: &Config,
    cmd: Command,
    at: DateTime<Utc>,
) -> Result<leadflow_store::Executed, Error> {
    try_exec(store, config, ivanov(), at, &cmd)
}

fn new_lead(phone: &str) -> Command {
    Command::CreateLead(NewLead {
        name: Some("Ivan".into()),
        phones: vec![phone.into()],
        source: Some("web_form".into()),
        ..Default::default()
    })
}

#[test]
fn a_created_lead_is_projected_and_its_stream_has_one_event() {
    let config = config();
    let mut store = memory_store();
    let out = run(&mut store, &config, new_lead("8 912 345-67-89"), t0()).unwrap();
    assert_eq!(out.stream, StreamId::new(EntityKind::Lead, 1));
    let Some(Entity::Lead(lead)) = store.load(out.stream).unwrap() else {
        panic!("no lead")
    };
    assert_eq!(lead.phones, vec!["+79123456789"]);
    assert_eq!(lead.stage.as_str(), "new");
    assert_eq!(store.read_stream(out.stream).unwrap().len(), 1);
    assert_eq!(store.checkpoint().unwrap(), 1);
}

#[test]
fn a_rejected_command_appends_nothing() {
    let config = config();
    let mut store = memory_store();
    run(&mut store, &config, new_lead("+7 912 000 00 00"), t0()).unwrap();
    let err = run(
        &mut store,
        &config,
        Command::MoveLead {
            id: 1,
            stage: "qualified".into(),
            reason: None,
        },
        t0(),
    )
    .unwrap_err();
    assert!(
        err.to_string()
            .contains("missing required fields: responsible"),
        "{err}"
    );
    assert_eq!(store.last_position().unwrap(), 1);
}

#[test]
fn a_stale_expected_version_is_a_conflict_and_appends_nothing() {
    let config = config();
    let mut store = memory_store();
    run(&mut store, &config, new_lead("+7 912 000 00 00"), t0()).unwrap();
    let stream = StreamId::new(EntityKind::Lead, 1);
    let ev = leadflow_engine::Event::LeadAssigned(leadflow_engine::event::Assigned {
        from: None,
        to: "petrova".into(),
    });
    let err = store
        .write(t0(), |tx| {
            tx.append(stream, 0, std::slice::from_ref(&ev), &meta(t0(), ivanov()))
        })
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::Conflict {
                expected: 0,
                actual: 1,
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(store.last_position().unwrap(), 1);
}

#[test]
fn stage_history_records_entered_and_left_times() {
    let config = config();
    let mut store = memory_store();
    run(&mut store, &config, new_lead("+7 912 000 00 00"), t0()).unwrap();
    run(
        &mut store,
        &config,
        Command::AssignLead {
            id: 1,
            to: "petrova".into(),
        },
        t0(),
    )
    .unwrap();
    let later = t0() + Duration::minutes(30);
    run(
        &mut store,
        &config,
        Command::MoveLead {
            id: 1,
            stage: "in_work".into(),
            reason: None,
        },
        later,
    )
    .unwrap();
    let visits = stage_history(&store, StreamId::new(EntityKind::Lead, 1));
    assert_eq!(visits.len(), 2);
    assert_eq!(
        (visits[0].stage.as_str(), visits[0].left_at),
        ("new", Some(later))
    );
    assert_eq!(
        (visits[1].stage.as_str(), visits[1].left_at),
        ("in_work", None)
    );
}

#[test]
fn replay_rebuilds_identical_projections_and_the_chain_verifies() {
    let config = config();
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::open(dir.path().join("x.db"), &Options::default()).unwrap();
    for i in 0..20 {
        let at = t0() + Duration::minutes(i);
        run(
            &mut store,
            &config,
            new_lead(&format!("+7 912 000 00 {i:02}")),
            at,
        )
        .unwrap();
        run(
            &mut store,
            &config,
            Command::AssignLead {
                id: i + 1,
                to: "petrova".into(),
            },
            at,
        )
        .unwrap();
        run(
            &mut store,
            &config,
            Command::MoveLead {
                id: i + 1,
                stage: "in_work".into(),
                reason: None,
            },
            at,
        )
        .unwrap();
    }
    run(
        &mut store,
        &config,
        Command::CreateDeal(NewDeal {
            title: "Kitchen".into(),
            amount: Some("150000".into()),
            lead: Some(3),
            ..Default::default()
        }),
        t0(),
    )
    .unwrap();
    assert!(store.verify_projections(&mut |_| {}).unwrap().is_empty());
    let report = store.verify_chain(&mut |_| {}).unwrap();
    assert_eq!(report.problem, None);
    assert_eq!(report.events, 61);
    store.replay(&mut |_| {}).unwrap();
    assert!(store.verify_projections(&mut |_| {}).unwrap().is_empty());
    assert_eq!(store.checkpoint().unwrap(), 61);
}

#[test]
fn a_database_from_a_newer_leadflow_is_refused_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("x.db");
    drop(Store::open(&path, &Options::default()).unwrap());
    Db::at(&path).tamper("PRAGMA user_version = 99");
    let before = std::fs::read(&path).unwrap();
    let err = Store::open(&path, &Options::default()).unwrap_err();
    assert!(
        err.to_string()
            .contains("newer than this leadflow supports"),
        "{err}"
    );
    assert!(
        std::fs::read(&path).unwrap() == before,
        "the refused database file was changed"
    );
    let wal = dir.path().join("x.db-wal");
    assert!(
        std::fs::metadata(&wal).map_or(0, |m| m.len()) == 0,
        "the refused database got a write-ahead log with frames"
    );
}

#[test]
fn a_store_opened_with_default_options_commits_with_synchronous_full() {
    // SQLite's PRAGMA synchronous on the store's own connection: FULL (or EXTRA).
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("x.db"), &Options::default()).unwrap();
    assert_eq!(
        store.synchronous().unwrap(),
        Synchronous::Full,
        "a default store does not fsync every commit"
    );
    assert_eq!(
        memory_store().synchronous().unwrap(),
        Synchronous::Full,
        "an in-memory store differs from a file"
    );
}

#[test]
fn a_foreign_sqlite_database_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("other.db");
    Db::at(&path).tamper("CREATE TABLE x (y)");
    let err = Store::open(&path, &Options::default()).unwrap_err();
    assert!(
        err.to_string().contains("is not a leadflow database"),
        "{err}"
    );
}

#[test]
fn a_write_after_an_interrupted_replay_first_catches_the_projections_up() {
    let config = config();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("x.db");
    let mut store = Store::open(&path, &Options::default()).unwrap();
    for i in 0..5 {
        run(
            &mut store,
            &config,
            new_lead(&format!("+7 912 000 00 {i:02}")),
            t0(),
        )
        .unwrap();
    }
    // Another process began a replay: tables emptied, checkpoint back to 0, then it died.
    Db::at(&path).tamper(
        "DELETE FROM leads; DELETE FROM stage_history; UPDATE projection_state SET position = 0;",
    );
    run(
        &mut store,
        &config,
        Command::AssignLead {
            id: 3,
            to: "petrova".into(),
        },
        t0(),
    )
    .unwrap();
    assert_eq!(store.checkpoint().unwrap(), 6);
    assert!(store.verify_projections(&mut |_| {}).unwrap().is_empty());
    let Some(Entity::Lead(lead)) = store.load(StreamId::new(EntityKind::Lead, 3)).unwrap() else {
        panic!("lead-3 lost")
    };
    assert_eq!(lead.version, 2);
}

#[test]
fn appending_after_the_newest_events_were_cut_off_is_refused_as_corruption() {
    let config = config();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("x.db");
    let mut store = Store::open(&path, &Options::default()).unwrap();
    for i in 0..3 {
        run(
            &mut store,
            &config,
            new_lead(&format!("+7 912 000 00 {i:02}")),
            t0(),
        )
        .unwrap();
    }
    Db::at(&path)
        .tamper("DELETE FROM events WHERE position = 3; DELETE FROM streams WHERE entity_id = 3;");
    let err = run(&mut store, &config, new_lead("+7 912 000 00 99"), t0()).unwrap_err();
    assert!(err.to_string().contains("the log is broken at position 3: the projections reflect the log up to position 3, but the log ends at 2"), "{err}");
    assert_eq!(store.last_position().unwrap(), 2);
}
