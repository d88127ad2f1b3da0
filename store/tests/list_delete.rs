//! Deleting leads, deals, contacts and companies: the row leaves the projections with its
//! match keys, search text, custom-field values and pending timers; the lists no longer show
//! it; `query::lookup` says it was deleted; replay and verify agree.

use chrono::{DateTime, Duration, TimeZone, Utc};
use leadflow_engine::command::{NewCompany, NewContact, NewDeal, NewLead};
use leadflow_engine::event::{DeadlineScheduled, LeadCreated};
use leadflow_engine::{Actor, Command, Config, EntityKind, Event, EventMeta, Rejection, StreamId};
use leadflow_store::query::{self, Cmp, Filter, ListQuery, Lookup, TimerFilter};
use leadflow_store::{Error, Store};
use serde_json::json;

fn config() -> Config {
    Config::from_toml("leadflow.toml", leadflow_engine::config::DEFAULT_CONFIG).unwrap()
}

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 2, 9, 0, 0).unwrap()
}

fn run(store: &mut Store, cmd: Command) -> Result<StreamId, Error> {
    let config = config();
    let meta = EventMeta::root(t0(), Actor::Employee("ivanov".into()));
    store
        .write(t0(), |tx| tx.execute(&config, &cmd, &meta))
        .map(|out| out.stream)
}

fn count(store: &Store, kind: EntityKind, filter: Filter) -> u64 {
    let q = ListQuery {
        filters: vec![filter],
        page: query::PageSpec {
            total: true,
            ..Default::default()
        },
        ..ListQuery::new(kind)
    };
    query::list(store, &q).unwrap().total.unwrap()
}

fn lead_with_a_deadline(store: &mut Store) -> StreamId {
    let lead = run(
        store,
        Command::CreateLead(NewLead {
            title: Some("Гранитная столешница".into()),
            phones: vec!["+7 912 345-67-89".into()],
            emails: vec!["ivan@example.ru".into()],
            fields: [("material".to_owned(), json!("granite"))]
                .into_iter()
                .collect(),
            ..Default::default()
        }),
    )
    .unwrap();
    store
        .write(t0(), |tx| {
            let v = tx.version(lead)?;
            let e = Event::DeadlineScheduled(DeadlineScheduled {
                name: "first_call".into(),
                due_at: t0() + Duration::hours(1),
                rule: "call-fast".into(),
                ruleset: "x".into(),
            });
            tx.append(lead, v, &[e], &EventMeta::root(t0(), Actor::System))
        })
        .unwrap();
    lead
}

#[test]
fn a_deleted_lead_leaves_every_list_index_and_its_timers() {
    let mut store = Store::open_in_memory().unwrap();
    let lead = lead_with_a_deadline(&mut store);
    let other = lead_with_a_deadline(&mut store);
    let timers = |store: &Store, s| {
        query::timers(
            store,
            &TimerFilter {
                stream: Some(s),
                ..Default::default()
            },
        )
        .unwrap()
        .len()
    };
    assert_eq!(timers(&store, lead), 1);
    let phone = || Filter::Phone(Cmp::Eq("+79123456789".into()));
    let title = || Filter::Title("гранит".into());
    let material = || Filter::Custom {
        field: "material".into(),
        cmp: Cmp::Eq(json!("granite")),
    };
    for f in [phone(), title(), material()] {
        assert_eq!(count(&store, EntityKind::Lead, f), 2);
    }
    run(
        &mut store,
        Command::DeleteLead {
            id: lead.id,
            reason: Some("duplicate".into()),
        },
    )
    .unwrap();
    assert_eq!(store.load(lead).unwrap(), None);
    assert!(
        matches!(query::lookup(&store, lead).unwrap(), Lookup::Deleted { at, .. } if at == t0())
    );
    assert!(matches!(
        query::lookup(&store, other).unwrap(),
        Lookup::Found(_)
    ));
    assert_eq!(
        query::lookup(&store, StreamId::new(EntityKind::Lead, 99)).unwrap(),
        Lookup::Missing
    );
    assert!(matches!(
        store.lookup(lead).unwrap(),
        Lookup::Deleted { .. }
    ));
    for f in [phone(), title(), material()] {
        assert_eq!(count(&store, EntityKind::Lead, f), 1);
    }
    assert_eq!(timers(&store, lead), 0);
    assert_eq!(timers(&store, other), 1);
    // Its stage visit is closed, not forgotten.
    let history = query::stage_history(&store, lead).unwrap();
    assert_eq!(history.len(), 1);
    assert!(history[0].left_at.is_some(), "{history:?}");
    // Other paths find it gone too.
    let err = run(
        &mut store,
        Command::UpdateLead {
            id: lead.id,
            changes: [("title".to_owned(), json!("x"))].into_iter().collect(),
        },
    )
    .unwrap_err();
    assert!(
        matches!(err, Error::Rejected(Rejection::NotFound { .. })),
        "{err}"
    );
    assert!(store.verify_projections(&mut |_| {}).unwrap().is_empty());
    store.replay(&mut |_| {}).unwrap();
    assert!(store.verify_projections(&mut |_| {}).unwrap().is_empty());
    assert_eq!(store.load(lead).unwrap(), None);
    assert_eq!(count(&store, EntityKind::Lead, phone()), 1);
    assert_eq!(timers(&store, lead), 0);
}

#[test]
fn a_converted_lead_is_refused_and_nothing_is_appended() {
    let mut store = Store::open_in_memory().unwrap();
    let lead = StreamId::new(EntityKind::Lead, 1);
    store
        .write(t0(), |tx| {
            let e = Event::LeadCreated(LeadCreated {
                id: 1,
                title: "Ivan".into(),
                name: None,
                phones: vec![],
                emails: vec![],
                source: "call".into(),
                client_type: None,
                responsible: None,
                pipeline: "lead".into(),
                stage: "converted".into(),
                fields: Default::default(),
                comment: None,
                contact: None,
                company: None,
            });
            tx.append(lead, 0, &[e], &EventMeta::root(t0(), Actor::System))
        })
        .unwrap();
    let before = store.head().unwrap();
    let err = run(
        &mut store,
        Command::DeleteLead {
            id: 1,
            reason: None,
        },
    )
    .unwrap_err();
    assert!(
        matches!(&err, Error::Rejected(Rejection::DeleteConverted { stream, .. }) if *stream == lead),
        "{err}"
    );
    assert!(err.to_string().contains("cannot be deleted"), "{err}");
    assert_eq!(store.head().unwrap(), before);
    assert!(store.load(lead).unwrap().is_some());
}

#[test]
fn deals_contacts_and_companies_are_deleted_from_their_lists() {
    let mut store = Store::open_in_memory().unwrap();
    let company = run(
        &mut store,
        Command::CreateCompany(NewCompany {
            name: "ООО Гранит".into(),
            phones: vec!["+7 495 000-00-01".into()],
            ..Default::default()
        }),
    )
    .unwrap();
    let contact = run(
        &mut store,
        Command::CreateContact(NewContact {
            name: "Анна Петрова".into(),
            emails: vec!["anna@example.ru".into()],
            company: Some(company.id),
            ..Default::default()
        }),
    )
    .unwrap();
    let deal = run(
        &mut store,
        Command::CreateDeal(NewDeal {
            title: "Столешница".into(),
            contact: Some(contact.id),
            ..Default::default()
        }),
    )
    .unwrap();
    assert_eq!(
        count(&store, EntityKind::Deal, Filter::Title("столеш".into())),
        1
    );
    assert_eq!(
        count(
            &store,
            EntityKind::Contact,
            Filter::Email(Cmp::Eq("anna@example.ru".into()))
        ),
        1
    );
    assert_eq!(
        count(&store, EntityKind::Company, Filter::Name("гранит".into())),
        1
    );
    run(
        &mut store,
        Command::DeleteDeal {
            id: deal.id,
            reason: None,
        },
    )
    .unwrap();
    run(
        &mut store,
        Command::DeleteContact {
            id: contact.id,
            reason: None,
        },
    )
    .unwrap();
    run(
        &mut store,
        Command::DeleteCompany {
            id: company.id,
            reason: None,
        },
    )
    .unwrap();
    assert_eq!(
        count(&store, EntityKind::Deal, Filter::Title("столеш".into())),
        0
    );
    assert_eq!(
        count(
            &store,
            EntityKind::Contact,
            Filter::Email(Cmp::Eq("anna@example.ru".into()))
        ),
        0
    );
    assert_eq!(
        count(&store, EntityKind::Company, Filter::Name("гранит".into())),
        0
    );
    for s in [deal, contact, company] {
        assert!(
            matches!(query::lookup(&store, s).unwrap(), Lookup::Deleted { .. }),
            "{s}"
        );
    }
    // The wrong kind of delete finds nothing to delete.
    let err = run(
        &mut store,
        Command::DeleteDeal {
            id: 7,
            reason: None,
        },
    )
    .unwrap_err();
    assert!(
        matches!(err, Error::Rejected(Rejection::NotFound { .. })),
        "{err}"
    );
    assert!(store.verify_projections(&mut |_| {}).unwrap().is_empty());
}

#[test]
fn a_lead_created_and_deleted_in_one_transaction_leaves_no_row() {
    let mut store = Store::open_in_memory().unwrap();
    let config = config();
    let meta = EventMeta::root(t0(), Actor::System);
    store
        .write(t0(), |tx| {
            let out = tx.execute(
                &config,
                &Command::CreateLead(NewLead {
                    title: Some("Мойка".into()),
                    phones: vec!["+7 912 345-67-89".into()],
                    ..Default::default()
                }),
                &meta,
            )?;
            tx.execute(
                &config,
                &Command::DeleteLead {
                    id: out.stream.id,
                    reason: None,
                },
                &meta,
            )
        })
        .unwrap();
    assert_eq!(
        count(&store, EntityKind::Lead, Filter::Title("мойка".into())),
        0
    );
    assert_eq!(
        count(
            &store,
            EntityKind::Lead,
            Filter::Phone(Cmp::Eq("+79123456789".into()))
        ),
        0
    );
    assert!(store.verify_projections(&mut |_| {}).unwrap().is_empty());
}
