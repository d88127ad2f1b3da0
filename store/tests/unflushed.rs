//! Lookups inside a write transaction see the entities it changed before they are written to
//! their tables: `matching` (repeat detection, a lead's contacts) and `last_assigned` (round
//! robin) take the changed entities from the projector instead of flushing first, and answer
//! exactly what they answer once everything is written.

use chrono::{DateTime, TimeZone, Utc};
use leadflow_engine::ids::EmployeeId;
use leadflow_engine::workspace::{MatchKey, View};
use leadflow_engine::{Actor, Command, EntityKind, EventMeta};
use leadflow_store::{Options, Store, Tx};

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 5, 9, 0, 0).unwrap()
}

fn meta() -> EventMeta {
    EventMeta::root(t0(), Actor::Employee("ivanov".into()))
}

fn run(tx: &mut Tx<'_>, cmd: Command) {
    tx.execute(&leadflow_testkit::config(), &cmd, &meta())
        .unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
}

fn assign(id: i64, to: &str) -> Command {
    Command::AssignLead {
        id,
        to: EmployeeId(to.into()),
    }
}

/// What the two lookups answer: leads with each phone, and each employee's newest lead.
fn answers(tx: &mut Tx<'_>) -> Vec<(String, Vec<i64>)> {
    let mut out = Vec::new();
    for phone in ["+79120000001", "+79120000002", "+79120000009"] {
        let found = tx
            .matching(MatchKey::Phone, &[phone.into()], EntityKind::Lead, None)
            .unwrap();
        out.push((phone.to_owned(), found));
        let below = tx
            .matching(MatchKey::Phone, &[phone.into()], EntityKind::Lead, Some(2))
            .unwrap();
        out.push((format!("{phone} below 2"), below));
    }
    for who in ["ivanov", "petrova"] {
        let newest = View::last_assigned(tx, &EmployeeId(who.into()), EntityKind::Lead).unwrap();
        out.push((who.to_owned(), vec![newest]));
    }
    out
}

/// What some of the lookups must answer after a step.
type Expected = Vec<(&'static str, Vec<i64>)>;

#[test]
fn lookups_see_unwritten_changes_as_they_will_be_written() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::open(dir.path().join("unflushed.db"), &Options::default()).unwrap();
    let clock = leadflow_engine::ManualClock::new(t0());
    store
        .write_with(&clock, |tx| {
            run(tx, leadflow_testkit::countertop_lead("+79120000001"));
            run(tx, leadflow_testkit::countertop_lead("+79120000002"));
            run(tx, assign(1, "ivanov"));
            run(tx, assign(2, "ivanov"));
            Ok::<_, leadflow_store::Error>(())
        })
        .unwrap();

    // Each step changes a lead whose row now says otherwise; in the same transaction the
    // lookups answer as the tables will once it is written.
    let steps: Vec<(Command, Expected)> = vec![
        (
            assign(2, "petrova"),
            vec![("ivanov", vec![1]), ("petrova", vec![2])],
        ),
        (
            Command::UpdateLead {
                id: 2,
                changes: [("phones".to_owned(), serde_json::json!(["+79120000009"]))].into(),
            },
            vec![("+79120000002", vec![]), ("+79120000009", vec![2])],
        ),
        (
            Command::DeleteLead {
                id: 1,
                reason: Some("spam".into()),
            },
            vec![("+79120000001", vec![]), ("ivanov", vec![0])],
        ),
        (
            leadflow_testkit::countertop_lead("+79120000001"),
            vec![("+79120000001", vec![3]), ("+79120000001 below 2", vec![])],
        ),
        (assign(3, "ivanov"), vec![("ivanov", vec![3])]),
    ];
    let mut in_tx = Vec::new();
    store
        .write_with(&clock, |tx| {
            for (cmd, expected) in &steps {
                run(tx, cmd.clone());
                let got = answers(tx);
                for (what, ids) in expected {
                    let found = got.iter().find(|(w, _)| w == what).map(|(_, i)| i);
                    assert_eq!(found, Some(ids), "after {cmd:?}: {what}");
                }
                in_tx = got;
            }
            Ok::<_, leadflow_store::Error>(())
        })
        .unwrap();
    // Written: the same answers from the tables alone.
    let after = store
        .write_with(&clock, |tx| Ok::<_, leadflow_store::Error>(answers(tx)))
        .unwrap();
    assert_eq!(after, in_tx);
    assert!(store.verify_projections(&mut |_| {}).unwrap().is_empty());
}
