//! `store::query::list`, the one list query of both HTTP APIs: every filter, order and page on
//! a store of a few hundred generated entities, checked against the same filter applied to
//! every entity in memory; every filter's plan searches an index; paging by cursor or offset
//! visits every row once.

use chrono::{DateTime, Duration, TimeZone, Utc};
use leadflow_engine::event::{
    Assigned, ClientType, CompanyCreated, ContactCreated, DealCreated, LeadCreated, StageChanged,
    TaskCreated, TaskKind, Updated,
};
use leadflow_engine::model::Entity;
use leadflow_engine::{Actor, EntityKind, Event, EventMeta, StreamId};
use leadflow_store::query::{
    self, Cmp, Cursor, Filter, ListQuery, Order, Page, PageSpec, SortKey, Start,
};
use leadflow_store::{Error, Store};
use proptest::prelude::*;
use serde_json::json;
use std::sync::OnceLock;

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 5, 9, 0, 0).unwrap()
}

const STAGES: &[&str] = &["new", "in_work", "qualified", "junk"];
const PEOPLE: &[&str] = &["ivanov", "petrova", "sidorov"];
const SOURCES: &[&str] = &["web_form", "call", "email"];
const MATERIALS: &[&str] = &["granite", "marble", "quartz"];
const WORDS: &[&str] = &["Столешница", "Подоконник", "Countertop", "Ступени"];
const LEADS: i64 = 300;

/// A small deterministic generator.
struct Gen(u64);

impl Gen {
    fn next(&mut self, n: usize) -> usize {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((self.0 >> 33) % n as u64) as usize
    }
}

fn append(store: &mut Store, stream: StreamId, at: DateTime<Utc>, events: Vec<Event>) {
    store
        .write(at, |tx| {
            let v = tx.version(stream)?;
            tx.append(stream, v, &events, &EventMeta::root(at, Actor::System))
        })
        .unwrap();
}

/// 300 leads (varied stages, people, sources, phones, e-mails, titles, custom fields, and
/// later changes), 40 contacts, 20 companies, 60 deals, 30 tasks; created an hour apart, not
/// in id order (every tenth entity is backdated), so created order differs from id order.
fn build() -> Store {
    let mut store = Store::open_in_memory().unwrap();
    let mut g = Gen(7);
    let mut hour = 0i64;
    let mut at = |g: &mut Gen| {
        hour += 1;
        let back = if g.next(10) == 0 { 500 } else { 0 };
        t0() + Duration::hours(hour - back)
    };
    for id in 1..=20 {
        let t = at(&mut g);
        let e = Event::CompanyCreated(CompanyCreated {
            id,
            name: format!("ООО Гранит-{id}"),
            inn: None,
            bank_account: None,
            bik: None,
            phones: vec![format!("+7495000{id:04}")],
            emails: vec![],
            responsible: Some(PEOPLE[g.next(3)].into()),
            fields: Default::default(),
        });
        append(
            &mut store,
            StreamId::new(EntityKind::Company, id),
            t,
            vec![e],
        );
    }
    for id in 1..=40 {
        let t = at(&mut g);
        let company = (g.next(2) == 0).then(|| 1 + g.next(20) as i64);
        let e = Event::ContactCreated(ContactCreated {
            id,
            name: format!("Контакт {} {id}", ["Иван", "Анна"][g.next(2)]),
            phones: vec![format!("+7912000{id:04}")],
            emails: vec![format!("contact{id}@example.ru")],
            company,
            responsible: Some(PEOPLE[g.next(3)].into()),
            fields: [(
                "birthday".to_owned(),
                json!(format!("1990-01-{:02}", 1 + id % 28)),
            )]
            .into_iter()
            .collect(),
        });
        append(
            &mut store,
            StreamId::new(EntityKind::Contact, id),
            t,
            vec![e],
        );
    }
    for id in 1..=LEADS {
        let t = at(&mut g);
        let stream = StreamId::new(EntityKind::Lead, id);
        let stage = STAGES[g.next(STAGES.len())];
        let mut fields = serde_json::Map::new();
        fields.insert("material".into(), json!(MATERIALS[g.next(3)]));
        fields.insert("budget".into(), json!(1000 * g.next(50) as i64));
        let e = Event::LeadCreated(LeadCreated {
            id,
            title: format!("{} №{id}", WORDS[g.next(WORDS.len())]),
            name: (g.next(3) > 0).then(|| format!("{} {id}", ["Пётр", "Мария", "Olga"][g.next(3)])),
            phones: if g.next(4) > 0 {
                vec![format!("+7900{:07}", id % 250)]
            } else {
                vec![]
            },
            emails: vec![format!("Lead{}@Example.com", id % 200)],
            source: SOURCES[g.next(3)].into(),
            client_type: [None, Some(ClientType::Individual), Some(ClientType::Legal)][g.next(3)],
            responsible: (g.next(5) > 0).then(|| PEOPLE[g.next(3)].into()),
            pipeline: "lead".into(),
            stage: stage.into(),
            fields: fields.into_iter().collect(),
            comment: None,
            contact: (g.next(3) == 0).then(|| 1 + g.next(40) as i64),
            company: (g.next(4) == 0).then(|| 1 + g.next(20) as i64),
        });
        append(&mut store, stream, t, vec![e]);
        if g.next(3) == 0 {
            let later = t + Duration::minutes(30 + g.next(5000) as i64);
            let to = STAGES[g.next(STAGES.len())];
            let mut events = vec![Event::LeadUpdated(Updated {
                changes: [("title".to_owned(), json!(format!("Переименован {id}")))]
                    .into_iter()
                    .collect(),
            })];
            if to != stage {
                events.push(Event::LeadStageChanged(StageChanged {
                    from: stage.into(),
                    to: to.into(),
                    reason: None,
                }));
            }
            events.push(Event::LeadAssigned(Assigned {
                from: None,
                to: PEOPLE[g.next(3)].into(),
            }));
            append(&mut store, stream, later, events);
        }
    }
    for id in 1..=60 {
        let t = at(&mut g);
        let e = Event::DealCreated(DealCreated {
            id,
            title: format!("Сделка {} {id}", WORDS[g.next(WORDS.len())]),
            pipeline: ["goods", "services"][g.next(2)].into(),
            stage: ["new", "offer", "won"][g.next(3)].into(),
            amount: Some(100 * g.next(1000) as i64),
            currency: "RUB".into(),
            responsible: Some(PEOPLE[g.next(3)].into()),
            contact: (g.next(2) == 0).then(|| 1 + g.next(40) as i64),
            company: (g.next(2) == 0).then(|| 1 + g.next(20) as i64),
            lead: (g.next(2) == 0).then(|| 1 + g.next(LEADS as usize) as i64),
            fields: [("installation".to_owned(), json!(g.next(2) == 0))]
                .into_iter()
                .collect(),
            comment: None,
        });
        append(&mut store, StreamId::new(EntityKind::Deal, id), t, vec![e]);
    }
    for id in 1..=30 {
        let t = at(&mut g);
        let e = Event::TaskCreated(TaskCreated {
            id,
            kind: TaskKind::Call,
            title: format!("Позвонить клиенту {id}"),
            assignee: PEOPLE[g.next(3)].into(),
            due_at: t + Duration::days(1),
            lead: (g.next(2) == 0).then(|| 1 + g.next(LEADS as usize) as i64),
            deal: (g.next(2) == 0).then(|| 1 + g.next(60) as i64),
        });
        append(&mut store, StreamId::new(EntityKind::Task, id), t, vec![e]);
    }
    store
}

/// The store, built once for every test of this file (they only read it).
fn store() -> std::sync::MutexGuard<'static, Store> {
    static STORE: OnceLock<std::sync::Mutex<Store>> = OnceLock::new();
    STORE
        .get_or_init(|| std::sync::Mutex::new(build()))
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Every entity of `kind`, by id.
fn all(store: &Store, kind: EntityKind) -> Vec<Entity> {
    (1..=LEADS)
        .filter_map(|id| store.load(StreamId::new(kind, id)).unwrap())
        .collect()
}

fn lead(e: &Entity) -> &leadflow_engine::model::Lead {
    match e {
        Entity::Lead(l) => l,
        other => panic!("not a lead: {other:?}"),
    }
}

fn ids(items: &[Entity]) -> Vec<i64> {
    items.iter().map(|e| e.stream().id).collect()
}

/// Every page of `q` (from its first), by cursor or by offset.
fn every_page(store: &Store, mut q: ListQuery, by_cursor: bool) -> Vec<Page> {
    let mut pages = Vec::new();
    loop {
        let page = query::list(store, &q).unwrap();
        let (next, offset) = (page.next.clone(), page.next_offset);
        pages.push(page);
        q.page.start = match (by_cursor, next, offset) {
            (true, Some(c), _) => Start::After(c),
            (false, _, Some(n)) => Start::Offset(n),
            _ => return pages,
        };
        assert!(pages.len() < 1000, "paging does not end");
    }
}

/// The ids `filter` finds among every lead (all pages, by id), and the same computed in
/// memory by `keep`, which must be non-trivial: some but not all leads.
fn check_leads(filter: Filter, keep: impl Fn(&leadflow_engine::model::Lead) -> bool) {
    let store = store();
    let want: Vec<i64> = all(&store, EntityKind::Lead)
        .iter()
        .map(lead)
        .filter(|l| keep(l))
        .map(|l| l.id)
        .collect();
    assert!(
        !want.is_empty() && want.len() < LEADS as usize,
        "{filter:?} must find some leads, not all: {}",
        want.len()
    );
    let q = ListQuery {
        filters: vec![filter.clone()],
        page: PageSpec {
            limit: 500,
            total: true,
            ..PageSpec::default()
        },
        ..ListQuery::new(EntityKind::Lead)
    };
    let page = query::list(&*store, &q).unwrap();
    assert_eq!(ids(&page.items), want, "{filter:?}");
    assert_eq!(page.total, Some(want.len() as u64));
    assert_indexed(&store, &q);
}

/// Fails if the query's plan reads a whole table rather than searching an index.
fn assert_indexed(store: &Store, q: &ListQuery) {
    let plan = query::explain(store, q).unwrap();
    // A MATCH on the FTS5 table is its index's lookup (idxStr `M…`), not a scan.
    let fts_match =
        |l: &str| l.starts_with("SCAN search_fts VIRTUAL TABLE INDEX ") && l.contains(":M");
    assert!(
        plan.iter().all(|l| !l.starts_with("SCAN") || fts_match(l)),
        "{:?} scans a table: {plan:#?}",
        q.filters
    );
}

fn s(v: &str) -> String {
    v.to_owned()
}

#[test]
fn id_filters_compare_the_id() {
    check_leads(Filter::Id(Cmp::Eq(17)), |l| l.id == 17);
    check_leads(Filter::Id(Cmp::In(vec![3, 5, 400])), |l| {
        [3, 5].contains(&l.id)
    });
    check_leads(Filter::Id(Cmp::Lt(40)), |l| l.id < 40);
    check_leads(Filter::Id(Cmp::Le(40)), |l| l.id <= 40);
    check_leads(Filter::Id(Cmp::Gt(250)), |l| l.id > 250);
    check_leads(Filter::Id(Cmp::Ge(250)), |l| l.id >= 250);
}

#[test]
fn stage_filters_find_the_stage_its_list_or_every_other() {
    check_leads(Filter::Stage(Cmp::Eq(s("junk"))), |l| {
        l.stage.as_str() == "junk"
    });
    check_leads(Filter::Stage(Cmp::Ne(s("junk"))), |l| {
        l.stage.as_str() != "junk"
    });
    check_leads(
        Filter::Stage(Cmp::In(vec![s("new"), s("qualified")])),
        |l| ["new", "qualified"].contains(&l.stage.as_str()),
    );
}

#[test]
fn pipeline_responsible_source_and_client_type_filters_find_their_value() {
    let store = store();
    let q = ListQuery {
        filters: vec![Filter::Pipeline(Cmp::Eq(s("lead")))],
        ..ListQuery::new(EntityKind::Lead)
    };
    assert_indexed(&store, &q);
    let page = query::list(&*store, &q).unwrap();
    assert_eq!(page.items.len(), 50);
    drop(store);
    check_leads(Filter::Responsible(Cmp::Eq(s("petrova"))), |l| {
        l.responsible
            .as_ref()
            .is_some_and(|r| r.as_str() == "petrova")
    });
    check_leads(
        Filter::Responsible(Cmp::In(vec![s("petrova"), s("ivanov")])),
        |l| {
            l.responsible
                .as_ref()
                .is_some_and(|r| ["petrova", "ivanov"].contains(&r.as_str()))
        },
    );
    check_leads(Filter::Source(Cmp::Eq(s("call"))), |l| l.source == "call");
    check_leads(Filter::Source(Cmp::In(vec![s("call"), s("email")])), |l| {
        l.source != "web_form"
    });
    check_leads(Filter::ClientType(Cmp::Eq(s("legal"))), |l| {
        l.client_type == Some(ClientType::Legal)
    });
}

#[test]
fn link_filters_find_the_linked_contact_or_company() {
    let store = store();
    let leads = all(&store, EntityKind::Lead);
    let contact = leads.iter().find_map(|e| lead(e).contact).unwrap();
    let company = leads.iter().find_map(|e| lead(e).company).unwrap();
    drop(store);
    check_leads(Filter::Contact(Cmp::Eq(contact)), |l| {
        l.contact == Some(contact)
    });
    check_leads(Filter::Company(Cmp::In(vec![company, 999])), |l| {
        l.company == Some(company)
    });
}

#[test]
fn created_and_updated_ranges_compare_the_times() {
    let mid = t0() + Duration::hours(200);
    check_leads(Filter::CreatedAt(Cmp::Ge(mid)), |l| l.created_at >= mid);
    check_leads(Filter::CreatedAt(Cmp::Lt(mid)), |l| l.created_at < mid);
    check_leads(Filter::UpdatedAt(Cmp::Gt(mid)), |l| l.updated_at > mid);
    check_leads(Filter::UpdatedAt(Cmp::Le(mid)), |l| l.updated_at <= mid);
    let store = store();
    let one = lead(&all(&store, EntityKind::Lead)[41]).created_at;
    drop(store);
    check_leads(Filter::CreatedAt(Cmp::Eq(one)), |l| l.created_at == one);
}

#[test]
fn phone_and_email_filters_match_any_stored_value_normalised() {
    check_leads(Filter::Phone(Cmp::Eq(s("+79000000042"))), |l| {
        l.phones.iter().any(|p| p == "+79000000042")
    });
    // An extension is not part of the match key.
    check_leads(
        Filter::Phone(Cmp::In(vec![s("+79000000042;ext=7"), s("+79000000043")])),
        |l| {
            l.phones
                .iter()
                .any(|p| p == "+79000000042" || p == "+79000000043")
        },
    );
    check_leads(Filter::Email(Cmp::Eq(s("LEAD42@example.COM"))), |l| {
        l.emails
            .iter()
            .any(|e| e.eq_ignore_ascii_case("lead42@example.com"))
    });
}

#[test]
fn title_and_name_substrings_ignore_case_in_any_script() {
    check_leads(Filter::Title(s("столешн")), |l| {
        l.title.to_lowercase().contains("столешн")
    });
    check_leads(Filter::Title(s("TOP №1")), |l| {
        l.title.to_lowercase().contains("top №1")
    });
    check_leads(Filter::Name(s("мария")), |l| {
        l.name.as_deref().is_some_and(|n| n.contains("Мария"))
    });
    // A quote in the text is searched for, not taken as FTS syntax.
    let store = store();
    let q = ListQuery {
        filters: vec![Filter::Title(s("a\" OR \"b"))],
        ..ListQuery::new(EntityKind::Lead)
    };
    assert!(query::list(&*store, &q).unwrap().items.is_empty());
}

#[test]
fn text_search_looks_at_title_name_phones_and_emails() {
    check_leads(Filter::Text(s("Переим")), |l| {
        l.title.contains("Переим")
    });
    check_leads(Filter::Text(s("Olga")), |l| {
        l.name.as_deref().is_some_and(|n| n.contains("Olga"))
    });
    check_leads(Filter::Text(s("0000004")), |l| {
        l.phones.iter().any(|p| p.contains("0000004"))
    });
    check_leads(Filter::Text(s("lead17@")), |l| {
        l.emails
            .iter()
            .any(|e| e.to_lowercase().contains("lead17@"))
    });
}

#[test]
fn custom_field_filters_compare_text_and_numbers() {
    check_leads(
        Filter::Custom {
            field: s("material"),
            cmp: Cmp::Eq(json!("marble")),
        },
        |l| l.fields.get("material") == Some(&json!("marble")),
    );
    check_leads(
        Filter::Custom {
            field: s("budget"),
            cmp: Cmp::Ge(json!(30000)),
        },
        |l| l.fields["budget"].as_i64().unwrap() >= 30000,
    );
    check_leads(
        Filter::Custom {
            field: s("material"),
            cmp: Cmp::In(vec![json!("granite"), json!("quartz")]),
        },
        |l| l.fields.get("material") != Some(&json!("marble")),
    );
}

#[test]
fn several_filters_all_apply() {
    check_leads(Filter::Stage(Cmp::Eq(s("new"))), |l| {
        l.stage.as_str() == "new"
    });
    let store = store();
    let want: Vec<i64> = all(&store, EntityKind::Lead)
        .iter()
        .map(lead)
        .filter(|l| {
            l.stage.as_str() == "new"
                && l.responsible
                    .as_ref()
                    .is_some_and(|r| r.as_str() == "ivanov")
                && l.created_at >= t0() + Duration::hours(100)
        })
        .map(|l| l.id)
        .collect();
    assert!(!want.is_empty());
    let q = ListQuery {
        filters: vec![
            Filter::Stage(Cmp::Eq(s("new"))),
            Filter::Responsible(Cmp::Eq(s("ivanov"))),
            Filter::CreatedAt(Cmp::Ge(t0() + Duration::hours(100))),
        ],
        page: PageSpec {
            limit: 500,
            total: true,
            ..PageSpec::default()
        },
        ..ListQuery::new(EntityKind::Lead)
    };
    let page = query::list(&*store, &q).unwrap();
    assert_eq!(ids(&page.items), want);
    assert_indexed(&store, &q);
}

#[test]
fn deals_contacts_companies_and_tasks_have_their_own_filters() {
    let store = store();
    let check = |kind: EntityKind, filter: Filter, keep: &dyn Fn(&Entity) -> bool| {
        let want: Vec<i64> = all(&store, kind)
            .iter()
            .filter(|e| keep(e))
            .map(|e| e.stream().id)
            .collect();
        assert!(!want.is_empty(), "{filter:?} finds nothing");
        let q = ListQuery {
            filters: vec![filter.clone()],
            page: PageSpec {
                limit: 500,
                ..PageSpec::default()
            },
            ..ListQuery::new(kind)
        };
        assert_eq!(
            ids(&query::list(&*store, &q).unwrap().items),
            want,
            "{filter:?}"
        );
        assert_indexed(&store, &q);
    };
    let deal = |e: &Entity| match e {
        Entity::Deal(d) => d.clone(),
        _ => unreachable!(),
    };
    check(
        EntityKind::Deal,
        Filter::Pipeline(Cmp::Eq(s("services"))),
        &|e| deal(e).pipeline.as_str() == "services",
    );
    check(EntityKind::Deal, Filter::Stage(Cmp::Eq(s("won"))), &|e| {
        deal(e).stage.as_str() == "won"
    });
    let some_lead = all(&store, EntityKind::Deal)
        .iter()
        .find_map(|e| deal(e).lead)
        .unwrap();
    check(EntityKind::Deal, Filter::Lead(Cmp::Eq(some_lead)), &|e| {
        deal(e).lead == Some(some_lead)
    });
    check(
        EntityKind::Deal,
        Filter::Title(s("сделка подо")),
        &|e| deal(e).title.contains("Сделка Подо"),
    );
    check(
        EntityKind::Deal,
        Filter::Custom {
            field: s("installation"),
            cmp: Cmp::Eq(json!(true)),
        },
        &|e| deal(e).fields["installation"] == json!(true),
    );
    check(
        EntityKind::Contact,
        Filter::Phone(Cmp::Eq(s("+79120000007"))),
        &|e| e.stream().id == 7,
    );
    check(
        EntityKind::Contact,
        Filter::Email(Cmp::Eq(s("contact8@example.ru"))),
        &|e| e.stream().id == 8,
    );
    check(EntityKind::Contact, Filter::Name(s("анна")), &|e| match e {
        Entity::Contact(c) => c.name.contains("Анна"),
        _ => false,
    });
    check(
        EntityKind::Contact,
        Filter::Custom {
            field: s("birthday"),
            cmp: Cmp::Lt(json!("1990-01-10")),
        },
        &|e| match e {
            Entity::Contact(c) => c.fields["birthday"].as_str().unwrap() < "1990-01-10",
            _ => false,
        },
    );
    check(
        EntityKind::Company,
        Filter::Name(s("гранит-1")),
        &|e| match e {
            Entity::Company(c) => c.name.starts_with("ООО Гранит-1"),
            _ => false,
        },
    );
    check(
        EntityKind::Company,
        Filter::Phone(Cmp::Eq(s("+74950000003"))),
        &|e| e.stream().id == 3,
    );
    check(
        EntityKind::Task,
        Filter::Responsible(Cmp::Eq(s("sidorov"))),
        &|e| match e {
            Entity::Task(t) => t.assignee.as_str() == "sidorov",
            _ => false,
        },
    );
    check(
        EntityKind::Task,
        Filter::Text(s("клиенту 2")),
        &|e| match e {
            Entity::Task(t) => t.title.contains("клиенту 2"),
            _ => false,
        },
    );
}

#[test]
fn orders_sort_by_id_created_or_updated_then_id() {
    let store = store();
    let leads: Vec<leadflow_engine::model::Lead> = all(&store, EntityKind::Lead)
        .iter()
        .map(lead)
        .cloned()
        .collect();
    for (key, descending) in [
        (SortKey::Id, false),
        (SortKey::Id, true),
        (SortKey::CreatedAt, false),
        (SortKey::CreatedAt, true),
        (SortKey::UpdatedAt, false),
        (SortKey::UpdatedAt, true),
    ] {
        let mut want = leads.clone();
        want.sort_by_key(|l| match key {
            SortKey::Id => (t0(), l.id),
            SortKey::CreatedAt => (l.created_at, l.id),
            SortKey::UpdatedAt => (l.updated_at, l.id),
            SortKey::Title => unreachable!("deals_filter_by_amount_and_lists_sort_by_title"),
        });
        if descending {
            want.reverse();
        }
        let q = ListQuery {
            order: Order { key, descending },
            page: PageSpec {
                limit: 500,
                ..PageSpec::default()
            },
            ..ListQuery::new(EntityKind::Lead)
        };
        let got = ids(&query::list(&*store, &q).unwrap().items);
        assert_eq!(
            got,
            want.iter().map(|l| l.id).collect::<Vec<_>>(),
            "{key:?} {descending}"
        );
    }
    // Created order is not id order in this store.
    let by_created = ListQuery {
        order: Order {
            key: SortKey::CreatedAt,
            descending: false,
        },
        ..ListQuery::new(EntityKind::Lead)
    };
    assert_ne!(
        ids(&query::list(&*store, &by_created).unwrap().items),
        (1..=50).collect::<Vec<_>>()
    );
}

#[test]
fn pages_by_offset_say_the_total_and_the_next_start() {
    let store = store();
    let q = ListQuery {
        filters: vec![Filter::Stage(Cmp::Ne(s("junk")))],
        page: PageSpec {
            start: Start::Offset(0),
            limit: 50,
            total: true,
        },
        ..ListQuery::new(EntityKind::Lead)
    };
    let pages = every_page(&store, q, false);
    let total = pages[0].total.unwrap();
    assert!(total > 100);
    for (i, p) in pages.iter().enumerate() {
        assert_eq!(p.total, Some(total));
        let last = i + 1 == pages.len();
        assert_eq!(p.next_offset.is_none(), last);
        if !last {
            assert_eq!(p.next_offset, Some(50 * (i as u64 + 1)));
            assert_eq!(p.items.len(), 50);
        }
    }
    let seen: usize = pages.iter().map(|p| p.items.len()).sum();
    assert_eq!(seen as u64, total);
    // Past the end: an empty page, no next.
    let q = ListQuery {
        page: PageSpec {
            start: Start::Offset(10_000),
            ..PageSpec::default()
        },
        ..ListQuery::new(EntityKind::Lead)
    };
    let p = query::list(&*store, &q).unwrap();
    assert!(p.items.is_empty() && p.next.is_none() && p.next_offset.is_none());
}

#[test]
fn a_cursor_survives_its_text_form_and_is_refused_for_another_order() {
    let store = store();
    let q = ListQuery {
        order: Order {
            key: SortKey::UpdatedAt,
            descending: true,
        },
        ..ListQuery::new(EntityKind::Lead)
    };
    let first = query::list(&*store, &q).unwrap();
    let cursor = first.next.unwrap();
    let text = cursor.to_string();
    assert!(text.bytes().all(|b| b.is_ascii_hexdigit()), "{text}");
    assert_eq!(text.parse::<Cursor>().unwrap(), cursor);
    let other = ListQuery {
        page: PageSpec {
            start: Start::After(cursor),
            ..PageSpec::default()
        },
        ..ListQuery::new(EntityKind::Lead)
    };
    let err = query::list(&*store, &other).unwrap_err();
    assert!(
        matches!(&err, Error::BadList { field, .. } if field == "cursor"),
        "{err}"
    );
    for garbage in ["", "zz", "6869", "ffff", &"a".repeat(1000)] {
        let err = garbage.parse::<Cursor>().unwrap_err();
        assert!(err.to_string().starts_with("cursor: "), "{err}");
    }
}

#[test]
fn unsupported_filters_and_pages_are_refused_naming_the_field() {
    let store = store();
    let refused =
        |kind: EntityKind, filters: Vec<Filter>, limit: u32, field: &str, needle: &str| {
            let q = ListQuery {
                filters,
                page: PageSpec {
                    limit,
                    ..PageSpec::default()
                },
                ..ListQuery::new(kind)
            };
            match query::list(&*store, &q) {
                Err(Error::BadList { field: f, why }) => {
                    assert_eq!(f, field, "{why}");
                    assert!(why.contains(needle), "{why}");
                }
                other => panic!("expected a refusal naming {field}, got {other:?}"),
            }
        };
    refused(EntityKind::Lead, vec![], 0, "limit", "1 to 500");
    refused(EntityKind::Lead, vec![], 501, "limit", "1 to 500");
    refused(
        EntityKind::Contact,
        vec![Filter::Stage(Cmp::Eq(s("new")))],
        50,
        "stage",
        "contacts have no such field",
    );
    refused(
        EntityKind::Deal,
        vec![Filter::Phone(Cmp::Eq(s("+7900")))],
        50,
        "phone",
        "deals have",
    );
    refused(
        EntityKind::Lead,
        vec![Filter::Source(Cmp::Lt(s("x")))],
        50,
        "source",
        "'<'",
    );
    refused(
        EntityKind::Lead,
        vec![Filter::Responsible(Cmp::Ne(s("x")))],
        50,
        "responsible",
        "'!='",
    );
    refused(
        EntityKind::Lead,
        vec![Filter::Id(Cmp::Ne(1))],
        50,
        "id",
        "'!='",
    );
    refused(
        EntityKind::Lead,
        vec![Filter::Title(s("ab"))],
        50,
        "title",
        "at least 3",
    );
    refused(
        EntityKind::Lead,
        vec![Filter::Id(Cmp::In((0..1001).collect()))],
        50,
        "id",
        "at most 1000",
    );
    refused(
        EntityKind::Lead,
        vec![Filter::Custom {
            field: s("budget"),
            cmp: Cmp::Eq(json!([1])),
        }],
        50,
        "budget",
        "cannot be compared",
    );
    let tasks_by_update = ListQuery {
        order: Order {
            key: SortKey::UpdatedAt,
            descending: false,
        },
        ..ListQuery::new(EntityKind::Task)
    };
    let err = query::list(&*store, &tasks_by_update).unwrap_err();
    assert!(
        err.to_string()
            .starts_with("order: tasks have no updated_at"),
        "{err}"
    );
}

#[test]
fn an_empty_in_list_matches_nothing() {
    let store = store();
    let q = ListQuery {
        filters: vec![Filter::Responsible(Cmp::In(vec![]))],
        page: PageSpec {
            total: true,
            ..PageSpec::default()
        },
        ..ListQuery::new(EntityKind::Lead)
    };
    let p = query::list(&*store, &q).unwrap();
    assert!(p.items.is_empty());
    assert_eq!(p.total, Some(0));
}

#[test]
fn pages_carry_each_entity_s_version() {
    let store = store();
    let q = ListQuery {
        filters: vec![Filter::Text(s("Переим"))],
        ..ListQuery::new(EntityKind::Lead)
    };
    let page = query::list(&*store, &q).unwrap();
    assert!(!page.items.is_empty());
    for e in &page.items {
        assert!(e.version() >= 3, "{e:?}");
        assert_eq!(Some(e), store.load(e.stream()).unwrap().as_ref());
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    /// Paging by cursor or by offset, in any order, with or without a filter, visits every
    /// matching row exactly once, in the order of one big page.
    #[test]
    fn paging_visits_every_row_once(
        limit in 1u32..120,
        key in prop_oneof![Just(SortKey::Id), Just(SortKey::CreatedAt), Just(SortKey::UpdatedAt)],
        descending in any::<bool>(),
        by_cursor in any::<bool>(),
        filter in 0usize..4,
    ) {
        let store = store();
        let filters = match filter {
            0 => vec![],
            1 => vec![Filter::Stage(Cmp::In(vec![s("new"), s("junk")]))],
            2 => vec![Filter::Responsible(Cmp::Eq(s("petrova")))],
            _ => vec![Filter::Text(s("Сту"))],
        };
        let q = ListQuery {
            filters: filters.clone(),
            order: Order { key, descending },
            page: PageSpec { start: Start::Offset(0), limit, total: false },
            ..ListQuery::new(EntityKind::Lead)
        };
        let whole = ListQuery {
            page: PageSpec { limit: 500, ..PageSpec::default() },
            ..q.clone()
        };
        let want = ids(&query::list(&*store, &whole).unwrap().items);
        let pages = every_page(&store, q, by_cursor);
        let got: Vec<i64> = pages.iter().flat_map(|p| ids(&p.items)).collect();
        prop_assert_eq!(got, want);
        for p in &pages[..pages.len() - 1] {
            prop_assert_eq!(p.items.len(), limit as usize);
        }
    }
}

/// A file database with three leads, the second titled "Гранитная столешница".
fn three_leads(dir: &std::path::Path) -> std::path::PathBuf {
    let path = dir.join("leadflow.db");
    let mut store = Store::open(&path, &leadflow_store::Options::default()).unwrap();
    for (id, title) in [
        (1, "Подоконник"),
        (2, "Гранитная столешница"),
        (3, "Ступени"),
    ] {
        let e = Event::LeadCreated(LeadCreated {
            id,
            title: title.into(),
            name: None,
            phones: vec![],
            emails: vec![],
            source: "call".into(),
            client_type: None,
            responsible: None,
            pipeline: "lead".into(),
            stage: "new".into(),
            fields: [("material".to_owned(), json!("granite"))]
                .into_iter()
                .collect(),
            comment: None,
            contact: None,
            company: None,
        });
        append(
            &mut store,
            StreamId::new(EntityKind::Lead, id),
            t0(),
            vec![e],
        );
    }
    path
}

fn titled(store: &Store, text: &str) -> Vec<i64> {
    let q = ListQuery {
        filters: vec![Filter::Title(s(text))],
        ..ListQuery::new(EntityKind::Lead)
    };
    ids(&query::list(store, &q).unwrap().items)
}

#[test]
fn a_version_3_database_gets_the_list_indexes_and_its_searches_rebuilt() {
    let dir = tempfile::tempdir().unwrap();
    let path = three_leads(dir.path());
    leadflow_testkit::Db::at(&path).tamper(
        "DROP TABLE search_text; DROP TABLE search_fts; DROP TABLE field_values; \
         DROP INDEX leads_by_created; PRAGMA user_version = 3;",
    );
    let err = Store::open_read(&path, &leadflow_store::Options::default()).unwrap_err();
    assert!(err.to_string().contains("schema version 3"), "{err}");
    let mut store = Store::open(&path, &leadflow_store::Options::default()).unwrap();
    let version: i64 = leadflow_testkit::Db::at(&path).value("PRAGMA user_version");
    assert_eq!(version, 5);
    assert_eq!(titled(&store, "гранит"), vec![2]);
    let by_created = ListQuery {
        filters: vec![Filter::CreatedAt(Cmp::Ge(t0()))],
        ..ListQuery::new(EntityKind::Lead)
    };
    assert_indexed(&store, &by_created);
    assert!(store.verify_projections(&mut |_| {}).unwrap().is_empty());
}

#[test]
fn verify_finds_search_rows_and_the_text_index_out_of_step_and_replay_mends_them() {
    let dir = tempfile::tempdir().unwrap();
    let path = three_leads(dir.path());
    let mut store = Store::open(&path, &leadflow_store::Options::default()).unwrap();
    assert!(store.verify_projections(&mut |_| {}).unwrap().is_empty());
    // The FTS index loses lead 2's row (its content row stays).
    leadflow_testkit::Db::at(&path).tamper(
        "INSERT INTO search_fts (search_fts, rowid, title, name, phones, emails) \
         SELECT 'delete', id, title, name, phones, emails FROM search_text WHERE entity_id = 2;
         UPDATE field_values SET value = 'marble' WHERE entity_id = 3;",
    );
    assert_eq!(titled(&store, "гранит"), Vec::<i64>::new());
    let diffs = store.verify_projections(&mut |_| {}).unwrap();
    let tables: Vec<&str> = diffs.iter().map(|d| d.table.as_str()).collect();
    assert_eq!(tables, ["field_values", "search_fts"], "{diffs:?}");
    let fts = &diffs[1];
    assert_eq!(
        (fts.only_live, fts.only_replayed, fts.first_key),
        (0, 1, Some(2 * 8 + 1))
    );
    store.replay(&mut |_| {}).unwrap();
    assert!(store.verify_projections(&mut |_| {}).unwrap().is_empty());
    assert_eq!(titled(&store, "гранит"), vec![2]);
}

#[test]
fn every_filter_searches_an_index_in_every_order() {
    let store = store();
    let mid = t0() + Duration::hours(200);
    let filters = vec![
        Filter::Id(Cmp::Gt(10)),
        Filter::Stage(Cmp::Eq(s("new"))),
        Filter::Stage(Cmp::Ne(s("junk"))),
        Filter::Stage(Cmp::In(vec![s("new"), s("junk")])),
        Filter::Pipeline(Cmp::Eq(s("lead"))),
        Filter::Responsible(Cmp::In(vec![s("ivanov"), s("petrova")])),
        Filter::Source(Cmp::Eq(s("call"))),
        Filter::ClientType(Cmp::Eq(s("legal"))),
        Filter::Contact(Cmp::Eq(3)),
        Filter::Company(Cmp::Eq(3)),
        Filter::CreatedAt(Cmp::Ge(mid)),
        Filter::UpdatedAt(Cmp::Lt(mid)),
        Filter::Phone(Cmp::Eq(s("+79000000042"))),
        Filter::Email(Cmp::Eq(s("lead42@example.com"))),
        Filter::Title(s("столеш")),
        Filter::Name(s("мария")),
        Filter::Text(s("olga")),
        Filter::Custom {
            field: s("budget"),
            cmp: Cmp::Le(json!(3000)),
        },
        Filter::TitleIs(s("Countertop №7")),
        Filter::NameIs(s("Olga 9")),
        Filter::TitleLike(s("%ница №1_")),
        Filter::NameLike(s("Мар%")),
    ];
    // Each alone, and each beside a negation (checked on the rows it finds).
    let negation = Filter::Not(Box::new(Filter::Source(Cmp::Eq(s("call")))));
    let queries = filters
        .iter()
        .map(|f| vec![f.clone()])
        .chain(filters.iter().map(|f| vec![f.clone(), negation.clone()]));
    for filters in queries {
        for key in [
            SortKey::Id,
            SortKey::CreatedAt,
            SortKey::UpdatedAt,
            SortKey::Title,
        ] {
            for descending in [false, true] {
                let q = ListQuery {
                    filters: filters.clone(),
                    order: Order { key, descending },
                    page: PageSpec {
                        total: true,
                        ..PageSpec::default()
                    },
                    ..ListQuery::new(EntityKind::Lead)
                };
                assert_indexed(&store, &q);
            }
        }
    }
}

#[test]
fn title_and_name_equal_a_text_or_match_a_like_pattern() {
    let store = store();
    let leads: Vec<leadflow_engine::model::Lead> = all(&store, EntityKind::Lead)
        .iter()
        .map(lead)
        .cloned()
        .collect();
    drop(store);
    let some = leads
        .iter()
        .find(|l| l.title.starts_with("Countertop"))
        .unwrap();
    // Equal, ASCII letters in any case.
    let title = some
        .title
        .to_uppercase()
        .replace("COUNTERTOP", "cOuNtErToP");
    check_leads(Filter::TitleIs(title.clone()), |l| {
        l.title.eq_ignore_ascii_case(&title)
    });
    let named = leads.iter().find_map(|l| l.name.clone()).unwrap();
    check_leads(Filter::NameIs(named.clone()), |l| {
        l.name.as_deref() == Some(named.as_str())
    });
    // LIKE: `%` any run, `_` one character.
    check_leads(Filter::TitleLike(s("counterT_p №2%")), |l| {
        l.title.starts_with("Countertop №2")
    });
    check_leads(Filter::TitleLike(s("%ница №2%")), |l| {
        l.title.contains("ница №2")
    });
    // A pattern needs three literal characters in a row: anything less would read the table.
    let store = self::store();
    let q = ListQuery {
        filters: vec![Filter::TitleLike(s("%a%b%"))],
        ..ListQuery::new(EntityKind::Lead)
    };
    let err = query::list(&*store, &q).unwrap_err().to_string();
    assert!(err.contains("title") && err.contains("at least 3"), "{err}");
}

#[test]
fn a_negation_is_checked_on_the_rows_another_filter_finds() {
    check_leads_all(
        vec![
            Filter::Title(s("Countertop")),
            Filter::Not(Box::new(Filter::Id(Cmp::In(vec![3, 7, 11])))),
        ],
        |l| l.title.contains("Countertop") && ![3, 7, 11].contains(&l.id),
    );
    check_leads_all(
        vec![
            Filter::Stage(Cmp::Eq(s("new"))),
            Filter::Not(Box::new(Filter::Responsible(Cmp::Eq(s("petrova"))))),
        ],
        // A lead with no responsible is not petrova's.
        |l| {
            l.stage.as_str() == "new"
                && l.responsible
                    .as_ref()
                    .is_none_or(|r| r.as_str() != "petrova")
        },
    );
    check_leads_all(
        vec![
            Filter::Id(Cmp::Le(100)),
            Filter::Not(Box::new(Filter::Title(s("ступени")))),
        ],
        |l| l.id <= 100 && !l.title.to_lowercase().contains("ступени"),
    );
    // Not matching an empty list is every row the other filters find.
    check_leads_all(
        vec![
            Filter::Id(Cmp::Le(20)),
            Filter::Not(Box::new(Filter::Id(Cmp::In(vec![])))),
        ],
        |l| l.id <= 20,
    );
    // Alone, or only with other negations, it is refused, naming its field.
    let store = store();
    for filters in [
        vec![Filter::Not(Box::new(Filter::Source(Cmp::Eq(s("call")))))],
        vec![
            Filter::Not(Box::new(Filter::Source(Cmp::Eq(s("call"))))),
            Filter::Not(Box::new(Filter::Id(Cmp::Eq(1)))),
        ],
    ] {
        let q = ListQuery {
            filters,
            ..ListQuery::new(EntityKind::Lead)
        };
        let err = query::list(&*store, &q).unwrap_err();
        assert!(
            matches!(&err, Error::BadList { field, why } if field == "source" && why.contains("negation")),
            "{err}"
        );
    }
    let q = ListQuery {
        filters: vec![
            Filter::Id(Cmp::Le(5)),
            Filter::Not(Box::new(Filter::Not(Box::new(Filter::Id(Cmp::Eq(1)))))),
        ],
        ..ListQuery::new(EntityKind::Lead)
    };
    assert!(query::list(&*store, &q).is_err());
}

/// [`check_leads`] for several filters at once.
fn check_leads_all(filters: Vec<Filter>, keep: impl Fn(&leadflow_engine::model::Lead) -> bool) {
    let store = store();
    let want: Vec<i64> = all(&store, EntityKind::Lead)
        .iter()
        .map(lead)
        .filter(|l| keep(l))
        .map(|l| l.id)
        .collect();
    assert!(!want.is_empty(), "{filters:?} finds nothing");
    let q = ListQuery {
        filters,
        page: PageSpec {
            limit: 500,
            total: true,
            ..PageSpec::default()
        },
        ..ListQuery::new(EntityKind::Lead)
    };
    let page = query::list(&*store, &q).unwrap();
    assert_eq!(ids(&page.items), want, "{:?}", q.filters);
    assert_eq!(page.total, Some(want.len() as u64));
    assert_indexed(&store, &q);
}

#[test]
fn deals_filter_by_amount_and_lists_sort_by_title() {
    let store = store();
    let deals: Vec<leadflow_engine::model::Deal> = all(&store, EntityKind::Deal)
        .iter()
        .map(|e| match e {
            Entity::Deal(d) => d.clone(),
            _ => unreachable!(),
        })
        .collect();
    for (cmp, keep) in [
        (
            Cmp::Gt(50_000),
            Box::new(|a: i64| a > 50_000) as Box<dyn Fn(i64) -> bool>,
        ),
        (Cmp::Le(10_000), Box::new(|a: i64| a <= 10_000)),
    ] {
        let want: Vec<i64> = deals
            .iter()
            .filter(|d| d.amount.is_some_and(&keep))
            .map(|d| d.id)
            .collect();
        assert!(!want.is_empty());
        let q = ListQuery {
            filters: vec![Filter::Amount(cmp)],
            page: PageSpec {
                limit: 500,
                ..PageSpec::default()
            },
            ..ListQuery::new(EntityKind::Deal)
        };
        assert_eq!(ids(&query::list(&*store, &q).unwrap().items), want);
        assert_indexed(&store, &q);
    }
    // By title, ASCII letters in any case, then id; a cursor pages through every row once.
    let leads: Vec<leadflow_engine::model::Lead> = all(&store, EntityKind::Lead)
        .iter()
        .map(lead)
        .cloned()
        .collect();
    for descending in [false, true] {
        let mut want = leads.clone();
        want.sort_by(|a, b| {
            (a.title.to_ascii_lowercase(), a.id).cmp(&(b.title.to_ascii_lowercase(), b.id))
        });
        if descending {
            want.reverse();
        }
        let order = Order {
            key: SortKey::Title,
            descending,
        };
        for by_cursor in [false, true] {
            let q = ListQuery {
                order,
                page: PageSpec {
                    limit: 37,
                    ..PageSpec::default()
                },
                ..ListQuery::new(EntityKind::Lead)
            };
            // Unfiltered, the page reads the title index in order (as far as the page goes).
            let plan = query::explain(&*store, &q).unwrap();
            assert_eq!(plan, ["SCAN leads USING INDEX leads_by_title"]);
            let got: Vec<i64> = every_page(&store, q, by_cursor)
                .iter()
                .flat_map(|p| ids(&p.items))
                .collect();
            assert_eq!(got, want.iter().map(|l| l.id).collect::<Vec<_>>());
        }
    }
}

#[test]
fn phone_and_email_substrings_look_only_in_phones_and_emails() {
    check_leads(Filter::PhoneText(s("0000042")), |l| {
        l.phones.iter().any(|p| p.contains("0000042"))
    });
    check_leads(Filter::EmailText(s("LEAD4")), |l| {
        l.emails.iter().any(|e| e.to_lowercase().contains("lead4"))
    });
    // A title holding the text is not a match.
    let store = store();
    let q = ListQuery {
        filters: vec![Filter::EmailText(s("Countertop"))],
        ..ListQuery::new(EntityKind::Lead)
    };
    assert!(query::list(&*store, &q).unwrap().items.is_empty());
}
