//! The projector follows a write transaction's savepoints: whatever a program of appends,
//! queries (which write the cached states to the tables, and may empty the cache) and nested
//! savepoints kept or rolled back does, the entities a transaction reads at its end are the ones its tables
//! hold after the commit, and those tables are what a replay of the log builds.

use chrono::{DateTime, Duration, TimeZone, Utc};
use leadflow_engine::event::{
    Assigned, Channel, Deleted, LeadCreated, NotificationQueued, StageChanged, Updated,
};
use leadflow_engine::workspace::MatchKey;
use leadflow_engine::{Actor, EntityKind, Event, EventMeta, StreamId};
use leadflow_store::{Error, Store, Tx};
use proptest::prelude::*;
use serde_json::json;
use std::collections::BTreeMap;

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 5, 9, 0, 0).unwrap()
}

/// Leads a program can touch (some not yet created when it starts).
const LEADS: usize = 6;

/// One step of a write transaction.
#[derive(Debug, Clone)]
enum Op {
    /// The next lead not yet created is created (nothing if all are).
    Create,
    /// A lead's title and a field change.
    Update(usize),
    /// A lead moves to a stage.
    Move(usize, bool),
    /// A lead gets a responsible.
    Assign(usize),
    /// A notification on a lead (bookkeeping: only its version changes).
    Notify(usize),
    /// A lead is deleted.
    Delete(usize),
    /// A query over the projections (they are written first).
    Query,
    /// A savepoint around these steps, kept or rolled back.
    Savepoint(Vec<Op>, bool),
}

fn ops() -> impl Strategy<Value = Vec<Op>> {
    let leaf = prop_oneof![
        2 => Just(Op::Create),
        3 => (0..LEADS).prop_map(Op::Update),
        2 => (0..LEADS, any::<bool>()).prop_map(|(l, s)| Op::Move(l, s)),
        1 => (0..LEADS).prop_map(Op::Assign),
        2 => (0..LEADS).prop_map(Op::Notify),
        1 => (0..LEADS).prop_map(Op::Delete),
        2 => Just(Op::Query),
    ];
    let op = leaf.prop_recursive(3, 40, 6, |inner| {
        (prop::collection::vec(inner, 0..6), any::<bool>())
            .prop_map(|(ops, keep)| Op::Savepoint(ops, keep))
    });
    prop::collection::vec(op, 0..14)
}

fn lead(n: usize) -> StreamId {
    StreamId::new(EntityKind::Lead, n as i64 + 1)
}

fn event(n: usize, op: &Op, step: usize) -> Event {
    match op {
        Op::Create => Event::LeadCreated(LeadCreated {
            id: n as i64 + 1,
            title: format!("Lead {n}"),
            name: None,
            phones: vec![format!("+7912000000{n}")],
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
        }),
        Op::Update(_) => Event::LeadUpdated(Updated {
            changes: BTreeMap::from([
                ("title".to_owned(), json!(format!("Lead {n} v{step}"))),
                ("material".to_owned(), json!(format!("m{step}"))),
            ]),
        }),
        Op::Move(_, second) => Event::LeadStageChanged(StageChanged {
            from: "new".into(),
            to: if *second { "qualified" } else { "in_work" }.into(),
            reason: None,
        }),
        Op::Assign(_) => Event::LeadAssigned(Assigned {
            from: None,
            to: format!("e{step}").as_str().into(),
        }),
        Op::Notify(_) => Event::NotificationQueued(NotificationQueued {
            channel: Channel::Inbox,
            to: Some("ivanov".into()),
            target: None,
            text: format!("note {step}"),
            priority: String::new(),
            rule: None,
            key: format!("k{step}"),
        }),
        Op::Delete(_) => Event::LeadDeleted(Deleted { reason: None }),
        Op::Query | Op::Savepoint(..) => unreachable!("not an event"),
    }
}

/// A store failure, or a savepoint to roll back.
#[derive(Debug)]
enum Stop {
    Store(#[allow(dead_code)] Error),
    Undo,
}

impl From<Error> for Stop {
    fn from(e: Error) -> Self {
        Stop::Store(e)
    }
}

/// Runs `ops` in `tx`; `created` counts the leads created so far.
fn run(tx: &mut Tx<'_>, ops: &[Op], created: &mut usize, step: &mut usize) -> Result<(), Stop> {
    for op in ops {
        *step += 1;
        let target = match op {
            Op::Create if *created < LEADS => {
                *created += 1;
                *created - 1
            }
            Op::Create => continue,
            Op::Update(n) | Op::Move(n, _) | Op::Assign(n) | Op::Notify(n) | Op::Delete(n) => {
                if *n >= *created {
                    continue;
                }
                *n
            }
            Op::Query => {
                let phones: Vec<String> = (0..LEADS).map(|n| format!("+7912000000{n}")).collect();
                tx.matching(MatchKey::Phone, &phones, EntityKind::Lead, None)?;
                continue;
            }
            Op::Savepoint(inner, keep) => {
                let before = *created;
                let kept = tx.atomically(|tx| {
                    run(tx, inner, created, step)?;
                    if *keep { Ok(()) } else { Err(Stop::Undo) }
                });
                match kept {
                    Ok(()) => {}
                    Err(Stop::Undo) => *created = before,
                    Err(e) => return Err(e),
                }
                continue;
            }
        };
        let stream = lead(target);
        let v = tx.version(stream)?;
        let at = t0() + Duration::minutes(*step as i64);
        tx.append(
            stream,
            v,
            &[event(target, op, *step)],
            &EventMeta::root(at, Actor::System),
        )?;
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn what_a_transaction_reads_is_what_it_commits_and_what_a_replay_builds(
        first in ops(),
        second in ops(),
        limit in prop_oneof![Just(usize::MAX), 0..4usize],
    ) {
        let mut store = Store::open_in_memory().unwrap();
        let mut created = 0;
        let mut step = 0;
        for ops in [&first, &second] {
            // Two leads created first, so there are dirty states before the first savepoint.
            let mut program = vec![Op::Create, Op::Create];
            program.extend(ops.iter().cloned());
            let read = store
                .write(t0(), |tx| {
                    // A small limit: every flush empties the cache, inside savepoints too.
                    tx.limit_cache(limit);
                    run(tx, &program, &mut created, &mut step)?;
                    let read = (0..LEADS).map(|n| tx.load(lead(n))).collect::<Result<Vec<_>, _>>()?;
                    Ok::<_, Stop>(read)
                })
                .unwrap();
            let stored: Vec<_> = (0..LEADS).map(|n| store.load(lead(n)).unwrap()).collect();
            prop_assert_eq!(&read, &stored);
        }
        let diffs = store.verify_projections(&mut |_| {}).unwrap();
        prop_assert!(diffs.is_empty(), "{diffs:?}");
    }
}
