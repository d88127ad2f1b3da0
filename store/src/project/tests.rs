//! The projections' own tests: the live path, a paged catch-up and a stream-order rebuild
//! write the same rows; timers are set, found, taken and cleared as the log says.

use super::*;
use crate::Store;
use crate::log::catch_up_page;
use chrono::{Duration, TimeZone, Utc};
use leadflow_engine::event::TaskKind;
use leadflow_engine::event::{
    Assigned, CompanyCreated, DealCreated, LeadCreated, StageChanged, TaskCompleted, TaskCreated,
    Updated,
};
use leadflow_engine::{Actor, EventMeta};
use leadflow_engine::{Entity, EntityKind, Event, StreamId};
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};

/// Every projection table, row by row, as text.
fn snapshot(conn: &Connection) -> Vec<String> {
    let mut out = Vec::new();
    for t in TABLES.iter().map(|t| t.name) {
        let mut stmt = conn
            .prepare(&format!("SELECT * FROM main.{t} ORDER BY 1"))
            .unwrap();
        let n = stmt.column_count();
        let mut rows = stmt.query([]).unwrap();
        while let Some(r) = rows.next().unwrap() {
            let cells: Vec<String> = (0..n)
                .map(|i| format!("{:?}", r.get_ref(i).unwrap()))
                .collect();
            out.push(format!("{t}: {}", cells.join(" | ")));
        }
    }
    out
}

/// A bare lead `id` in the first stage of the lead pipeline.
fn lead_created(id: i64) -> Event {
    Event::LeadCreated(LeadCreated {
        id,
        title: "lead".into(),
        name: None,
        phones: vec![],
        emails: vec![],
        source: "web_form".into(),
        client_type: None,
        responsible: None,
        pipeline: "lead".into(),
        stage: "new".into(),
        fields: BTreeMap::new(),
        comment: None,
        contact: None,
        company: None,
    })
}

fn changes(pairs: &[(&str, Value)]) -> BTreeMap<String, Value> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), v.clone()))
        .collect()
}

/// A log touching every table and every kind of row write: inserts, updates that change
/// indexed columns (stage, responsible, INN, task completion) and updates that do not.
fn sample_store() -> Store {
    let mut store = Store::open_in_memory().unwrap();
    let t0 = Utc.with_ymd_and_hms(2026, 3, 2, 9, 0, 0).unwrap();
    let mut versions: HashMap<StreamId, i64> = HashMap::new();
    let mut at = t0;
    // Three passes over twelve entities, in one transaction per pass, interleaved.
    for pass in 0..3i64 {
        store
            .write(at, |tx| {
                for id in 1..=12i64 {
                    at += Duration::seconds(37);
                    let (kind, event) = match (id % 4, pass) {
                        (0, 0) => (
                            EntityKind::Lead,
                            Event::LeadCreated(LeadCreated {
                                id,
                                title: format!("lead {id}"),
                                name: None,
                                phones: vec![format!("+7912000000{id:02}")],
                                emails: vec![],
                                source: "web_form".into(),
                                client_type: None,
                                responsible: None,
                                pipeline: "lead".into(),
                                stage: "new".into(),
                                fields: BTreeMap::new(),
                                comment: None,
                                contact: None,
                                company: None,
                            }),
                        ),
                        (0, 1) => (
                            EntityKind::Lead,
                            Event::LeadAssigned(Assigned {
                                from: None,
                                to: "petrova".into(),
                            }),
                        ),
                        (0, _) => (
                            EntityKind::Lead,
                            Event::LeadStageChanged(StageChanged {
                                from: "new".into(),
                                to: "in_work".into(),
                                reason: None,
                            }),
                        ),
                        (1, 0) => (
                            EntityKind::Company,
                            Event::CompanyCreated(CompanyCreated {
                                id,
                                name: format!("company {id}"),
                                inn: Some("7707083893".into()),
                                bank_account: None,
                                bik: None,
                                phones: vec![],
                                emails: vec![],
                                responsible: None,
                                fields: BTreeMap::new(),
                            }),
                        ),
                        (1, 1) => (
                            EntityKind::Company,
                            Event::CompanyUpdated(Updated {
                                changes: changes(&[("name", Value::from("renamed"))]),
                            }),
                        ),
                        (1, _) => (
                            EntityKind::Company,
                            Event::CompanyUpdated(Updated {
                                changes: changes(&[("inn", Value::from("500100732259"))]),
                            }),
                        ),
                        (2, 0) => (
                            EntityKind::Task,
                            Event::TaskCreated(TaskCreated {
                                id,
                                kind: TaskKind::Call,
                                title: "call back".into(),
                                assignee: "ivanov".into(),
                                due_at: t0 + Duration::days(1),
                                lead: None,
                                deal: None,
                            }),
                        ),
                        (2, 1) => (
                            EntityKind::Task,
                            Event::TaskCompleted(TaskCompleted {
                                result: Some("done".into()),
                            }),
                        ),
                        (2, _) => continue,
                        (_, 0) => (
                            EntityKind::Deal,
                            Event::DealCreated(DealCreated {
                                id,
                                title: format!("deal {id}"),
                                pipeline: "goods".into(),
                                stage: "new".into(),
                                amount: Some(100_000),
                                currency: "RUB".into(),
                                responsible: None,
                                contact: None,
                                company: None,
                                lead: None,
                                fields: BTreeMap::new(),
                                comment: None,
                            }),
                        ),
                        (_, 1) => (
                            EntityKind::Deal,
                            Event::DealUpdated(Updated {
                                changes: changes(&[("comment", Value::from("note"))]),
                            }),
                        ),
                        (_, _) => (
                            EntityKind::Deal,
                            Event::DealStageChanged(StageChanged {
                                from: "new".into(),
                                to: "offer".into(),
                                reason: None,
                            }),
                        ),
                    };
                    let stream = StreamId::new(kind, id);
                    let version = versions.entry(stream).or_insert(0);
                    let meta = EventMeta::root(at, Actor::System);
                    tx.append(stream, *version, std::slice::from_ref(&event), &meta)?;
                    *version += 1;
                }
                Ok::<_, Error>(())
            })
            .unwrap();
    }
    store
}

#[test]
fn live_paged_and_stream_order_rebuilds_write_the_same_rows() {
    let mut store = sample_store();
    let live = snapshot(&store.conn);
    assert!(
        live.iter().any(|r| r.starts_with("stage_history")),
        "{live:#?}"
    );

    // Position order, in small pages, loading and saving rows between pages.
    {
        let tx = store.conn.transaction().unwrap();
        recreate(&tx, "main").unwrap();
        set_checkpoint(&tx, "main", 0).unwrap();
        while catch_up_page(&tx, &mut Projector::new("main"), 5).unwrap() > 0 {}
        tx.commit().unwrap();
    }
    assert_eq!(snapshot(&store.conn), live);

    // Stream order, from scratch.
    assert_eq!(store.replay(&mut |_| {}).unwrap(), 33);
    assert_eq!(snapshot(&store.conn), live);
}

/// Every event that sets a timer adds its row; every event that ends one removes it, by
/// the timer's key; a stream's pending timers are found without an index by stream; and
/// bookkeeping events, projected without loading the entity, still count in its version.
#[test]
fn timers_are_set_found_and_cleared_by_every_event_that_ends_them() {
    use leadflow_engine::event::{
        DeadlineCancelled, DeadlineElapsed, DeadlineScheduled, RobotsCancelled, RobotsDelayed,
        RobotsResumed, TaskOverdue,
    };
    let mut store = Store::open_in_memory().unwrap();
    let t0 = Utc.with_ymd_and_hms(2026, 3, 2, 9, 0, 0).unwrap();
    let lead = StreamId::new(EntityKind::Lead, 1);
    let due = |h: i64| t0 + Duration::hours(h) + Duration::nanoseconds(123_456_789);
    let meta = EventMeta::root(t0, Actor::System);
    let deadline = |name: &str, h: i64| {
        Event::DeadlineScheduled(DeadlineScheduled {
            name: name.into(),
            due_at: due(h),
            rule: "r".into(),
            ruleset: "h".into(),
        })
    };
    let delayed = |h: i64, survive_move: bool| {
        Event::RobotsDelayed(RobotsDelayed {
            rule: "later".into(),
            ruleset: "h".into(),
            due_at: due(h),
            trigger: 1,
            stage: Some("new".into()),
            survive_move,
            robots: vec![],
        })
    };
    let task = |id: i64, h: i64| {
        Event::TaskCreated(TaskCreated {
            id,
            kind: TaskKind::Call,
            title: "call".into(),
            assignee: "petrova".into(),
            due_at: due(h),
            lead: Some(1),
            deal: None,
        })
    };
    store
        .write(t0, |tx| {
            tx.append(
                lead,
                0,
                &[
                    lead_created(1),
                    deadline("a", 1),
                    deadline("b", 2),
                    delayed(3, false),
                    delayed(4, true),
                ],
                &meta,
            )?;
            tx.append(StreamId::new(EntityKind::Task, 1), 0, &[task(1, 5)], &meta)?;
            tx.append(StreamId::new(EntityKind::Task, 2), 0, &[task(2, 6)], &meta)?;
            Ok::<_, Error>(())
        })
        .unwrap();
    let pending = store.write(t0, |tx| tx.pending_timers(lead)).unwrap();
    let seen: Vec<String> = pending
        .iter()
        .map(|t| {
            format!(
                "{} {} {:?} {:?} {}",
                t.id, t.what, t.name, t.stage, t.survive_move
            )
        })
        .collect();
    assert_eq!(
        seen,
        vec![
            "2 deadline Some(\"a\") None false",
            "3 deadline Some(\"b\") None false",
            "4 robots Some(\"later\") Some(\"new\") false",
            "5 robots Some(\"later\") Some(\"new\") true",
        ]
    );
    assert_eq!(pending[0].due_at, due(1));
    let count = |store: &Store| -> i64 {
        store
            .conn
            .query_row("SELECT count(*) FROM timers", [], |r| r.get(0))
            .unwrap()
    };
    assert_eq!(count(&store), 6);

    store
        .write(t0 + Duration::hours(7), |tx| {
            tx.append(
                lead,
                5,
                &[
                    Event::DeadlineElapsed(DeadlineElapsed {
                        name: "a".into(),
                        scheduled: 2,
                        due_at: due(1),
                    }),
                    Event::DeadlineCancelled(DeadlineCancelled {
                        name: "b".into(),
                        scheduled: 3,
                        reason: "done".into(),
                    }),
                    Event::RobotsResumed(RobotsResumed { delayed: 4 }),
                    Event::RobotsCancelled(RobotsCancelled {
                        delayed: 5,
                        reason: "left".into(),
                    }),
                ],
                &meta,
            )?;
            tx.append(
                StreamId::new(EntityKind::Task, 1),
                1,
                &[Event::TaskCompleted(TaskCompleted { result: None })],
                &meta,
            )?;
            tx.append(
                StreamId::new(EntityKind::Task, 2),
                1,
                &[Event::TaskOverdue(TaskOverdue { due_at: due(6) })],
                &meta,
            )?;
            Ok::<_, Error>(())
        })
        .unwrap();
    assert_eq!(count(&store), 0);
    assert!(
        store
            .write(t0, |tx| tx.pending_timers(lead))
            .unwrap()
            .is_empty()
    );
    let version: i64 = store
        .conn
        .query_row("SELECT version FROM leads WHERE id = 1", [], |r| r.get(0))
        .unwrap();
    assert_eq!(
        version, 9,
        "every event of the stream counts, bookkeeping too"
    );
    let live = snapshot(&store.conn);
    store.replay(&mut |_| {}).unwrap();
    assert_eq!(snapshot(&store.conn), live);
}

/// Taking due timers removes exactly the earliest rows, in one range delete; the firing
/// events appended for them then leave the table as a replay of the log builds it.
#[test]
fn taking_due_timers_removes_exactly_the_earliest_and_replays_the_same() {
    use leadflow_engine::event::{DeadlineElapsed, DeadlineScheduled, TaskOverdue};
    let mut store = Store::open_in_memory().unwrap();
    let t0 = Utc.with_ymd_and_hms(2026, 3, 2, 9, 0, 0).unwrap();
    let meta = EventMeta::root(t0, Actor::System);
    let lead = StreamId::new(EntityKind::Lead, 1);
    let task = StreamId::new(EntityKind::Task, 1);
    let due = |m: i64| t0 + Duration::minutes(m);
    store
        .write(t0, |tx| {
            let mut events = vec![lead_created(1)];
            // Due at minutes 30, 10, 20 and 10 again: the same instant twice.
            for (name, m) in [("c", 30), ("a", 10), ("b", 20), ("a2", 10)] {
                events.push(Event::DeadlineScheduled(DeadlineScheduled {
                    name: name.into(),
                    due_at: due(m),
                    rule: "r".into(),
                    ruleset: "h".into(),
                }));
            }
            tx.append(lead, 0, &events, &meta)?;
            tx.append(
                task,
                0,
                &[Event::TaskCreated(TaskCreated {
                    id: 1,
                    kind: TaskKind::Call,
                    title: "call".into(),
                    assignee: "petrova".into(),
                    due_at: due(15),
                    lead: Some(1),
                    deal: None,
                })],
                &meta,
            )?;
            Ok::<_, Error>(())
        })
        .unwrap();
    let left = |store: &Store| -> Vec<i64> {
        let mut stmt = store
            .conn
            .prepare("SELECT id FROM timers ORDER BY due_at, id")
            .unwrap();
        stmt.query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    };
    assert_eq!(left(&store), vec![3, 5, 6, 4, 2]);
    store
        .write(due(60), |tx| {
            let taken = tx.take_due_timers(due(25), 3)?;
            let ids: Vec<(StreamId, i64)> = taken.iter().map(|(s, t)| (*s, t.id)).collect();
            assert_eq!(ids, vec![(lead, 3), (lead, 5), (task, 6)]);
            for (stream, t) in &taken {
                let event = if *stream == task {
                    Event::TaskOverdue(TaskOverdue { due_at: t.due_at })
                } else {
                    Event::DeadlineElapsed(DeadlineElapsed {
                        name: t.name.clone().unwrap_or_default(),
                        scheduled: t.id,
                        due_at: t.due_at,
                    })
                };
                let v = tx.version(*stream)?;
                tx.append(*stream, v, &[event], &meta)?;
            }
            Ok::<_, Error>(())
        })
        .unwrap();
    assert_eq!(
        left(&store),
        vec![4, 2],
        "the one due at 20 (within now, beyond the limit) and the one due at 30"
    );
    let live = snapshot(&store.conn);
    store.replay(&mut |_| {}).unwrap();
    assert_eq!(snapshot(&store.conn), live);
}

/// Every entity table's row reads back as the entity written, inserted and then updated with
/// and without changing its key columns: the encoder and the decoder derived from one column
/// list agree on every field (all of them set, none left empty).
#[test]
fn every_entity_row_reads_back_as_written() {
    use leadflow_engine::event::ClientType;
    use leadflow_engine::model::{Company, Contact, Deal, Lead, Task};
    let store = Store::open_in_memory().unwrap();
    let t = |s: i64| Utc.timestamp_opt(1_772_000_000 + s, 123_456_000).unwrap();
    let fields = changes(&[("inn", Value::from("7707083893")), ("size", Value::from(3))]);
    let phones = vec!["+79161234567".to_owned(), "+79160000000".to_owned()];
    let emails = vec!["a@b.ru".to_owned()];
    let entities = [
        Entity::Lead(Lead {
            id: 7,
            title: "lead".into(),
            name: Some("Ivan".into()),
            phones: phones.clone(),
            emails: emails.clone(),
            source: "web_form".into(),
            client_type: Some(ClientType::Legal),
            responsible: Some("petrova".into()),
            pipeline: "lead".into(),
            stage: "new".into(),
            stage_reason: Some("why".into()),
            fields: fields.clone(),
            comment: Some("note".into()),
            contact: Some(3),
            company: Some(4),
            created_at: t(1),
            updated_at: t(2),
            stage_entered_at: t(3),
            version: 5,
        }),
        Entity::Deal(Deal {
            id: 8,
            title: "deal".into(),
            pipeline: "goods".into(),
            stage: "offer".into(),
            stage_reason: Some("why".into()),
            amount: Some(100_000),
            currency: "RUB".into(),
            responsible: Some("ivanov".into()),
            contact: Some(3),
            company: Some(4),
            lead: Some(7),
            fields: fields.clone(),
            comment: Some("note".into()),
            created_at: t(4),
            updated_at: t(5),
            stage_entered_at: t(6),
            version: 2,
        }),
        Entity::Contact(Contact {
            id: 3,
            name: "Ivan".into(),
            phones: phones.clone(),
            emails: emails.clone(),
            company: Some(4),
            responsible: Some("petrova".into()),
            fields: fields.clone(),
            created_at: t(7),
            updated_at: t(8),
            version: 1,
        }),
        Entity::Company(Company {
            id: 4,
            name: "Roga".into(),
            inn: Some("7707083893".into()),
            bank_account: Some("40702810900000000001".into()),
            bik: Some("044525225".into()),
            phones,
            emails,
            responsible: Some("sidorov".into()),
            fields,
            created_at: t(9),
            updated_at: t(10),
            version: 3,
        }),
        Entity::Task(Task {
            id: 9,
            kind: TaskKind::SendOffer,
            title: "send".into(),
            assignee: "petrova".into(),
            due_at: t(11),
            lead: Some(7),
            deal: Some(8),
            created_at: t(12),
            completed_at: Some(t(13)),
            result: Some("sent".into()),
            version: 4,
        }),
    ];
    let conn = &store.conn;
    let read = |e: &Entity| rows::load(conn, "main", e.stream()).unwrap();
    for e in &entities {
        rows::save(conn, "main", e, None).unwrap();
        assert_eq!(read(e).as_ref(), Some(e));
        // The same key columns (an update that leaves them out), then other ones.
        let stored = rows::index_key(e);
        let mut changed = e.clone();
        changed.add_version(1);
        rows::save(conn, "main", &changed, Some(&stored)).unwrap();
        assert_eq!(read(e).as_ref(), Some(&changed));
        let stored = rows::index_key(&changed);
        match &mut changed {
            Entity::Lead(l) => l.stage = "in_work".into(),
            Entity::Deal(d) => d.responsible = None,
            Entity::Contact(c) => c.phones.clear(),
            Entity::Company(c) => c.inn = None,
            Entity::Task(t) => t.completed_at = None,
        }
        assert_ne!(rows::index_key(&changed), stored);
        rows::save(conn, "main", &changed, Some(&stored)).unwrap();
        assert_eq!(read(e).as_ref(), Some(&changed));
    }
}
