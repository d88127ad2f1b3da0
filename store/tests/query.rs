//! The read queries of `store::query` that the CLI's summaries use, on in-memory databases,
//! through a [`Store`] and through a read [`Snapshot`](leadflow_store::Snapshot).

use chrono::{DateTime, TimeZone, Utc};
use leadflow_engine::command::{NewDeal, NewLead};
use leadflow_engine::{Actor, Command, Config, EventMeta};
use leadflow_store::{Error, Store, query};
use std::collections::BTreeMap;

fn config() -> Config {
    Config::from_toml("leadflow.toml", leadflow_engine::config::DEFAULT_CONFIG).unwrap()
}

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 2, 9, 0, 0).unwrap()
}

/// Runs `cmd` as `actor` and returns the entity id it made.
fn run_as(store: &mut Store, actor: Actor, cmd: Command) -> i64 {
    let config = config();
    let meta = EventMeta::root(t0(), actor);
    store
        .write(t0(), |tx| tx.execute(&config, &cmd, &meta))
        .unwrap()
        .stream
        .id
}

fn ivanov() -> Actor {
    Actor::Employee("ivanov".into())
}

fn lead(name: &str) -> Command {
    Command::CreateLead(NewLead {
        name: Some(name.into()),
        phones: vec!["+7 912 345-67-89".into()],
        ..Default::default()
    })
}

fn deal_from(lead: Option<i64>) -> Command {
    Command::CreateDeal(NewDeal {
        title: "Countertop".into(),
        lead,
        ..Default::default()
    })
}

#[test]
fn event_counts_count_the_events_of_each_stored_type() {
    let mut store = Store::open_in_memory().unwrap();
    assert!(query::event_counts(&store).unwrap().is_empty());
    run_as(&mut store, ivanov(), lead("Ivan"));
    run_as(&mut store, ivanov(), lead("Pyotr"));
    run_as(&mut store, ivanov(), deal_from(None));
    let want: BTreeMap<String, i64> = [
        ("deal.created".to_owned(), 1),
        ("lead.created".to_owned(), 2),
    ]
    .into_iter()
    .collect();
    assert_eq!(query::event_counts(&store).unwrap(), want);
    let in_snapshot = store.snapshot(|s| query::event_counts(s)).unwrap();
    assert_eq!(in_snapshot, want);
}

#[test]
fn events_by_robots_counts_only_the_events_a_rule_appended() {
    let mut store = Store::open_in_memory().unwrap();
    assert_eq!(query::events_by_robots(&store).unwrap(), 0);
    run_as(&mut store, ivanov(), lead("Ivan"));
    run_as(&mut store, Actor::System, lead("Pyotr"));
    run_as(&mut store, Actor::api("crm"), lead("Anna"));
    run_as(&mut store, Actor::Robot("welcome".into()), lead("Olga"));
    run_as(&mut store, Actor::Robot("convert".into()), deal_from(None));
    assert_eq!(query::events_by_robots(&store).unwrap(), 2);
}

#[test]
fn deal_of_lead_is_the_newest_deal_made_from_that_lead() {
    let mut store = Store::open_in_memory().unwrap();
    let first = run_as(&mut store, ivanov(), lead("Ivan"));
    let second = run_as(&mut store, ivanov(), lead("Pyotr"));
    assert_eq!(query::deal_of_lead(&store, first).unwrap(), None);
    let older = run_as(&mut store, ivanov(), deal_from(Some(first)));
    let other = run_as(&mut store, ivanov(), deal_from(None));
    let newer = run_as(&mut store, ivanov(), deal_from(Some(first)));
    assert!(older < other && other < newer);
    assert_eq!(query::deal_of_lead(&store, first).unwrap(), Some(newer));
    assert_eq!(query::deal_of_lead(&store, second).unwrap(), None);
    assert_eq!(query::deal_of_lead(&store, 99).unwrap(), None);
}

#[test]
fn the_queries_read_a_snapshot_as_they_read_the_store() {
    let mut store = Store::open_in_memory().unwrap();
    let id = run_as(&mut store, Actor::Robot("convert".into()), lead("Ivan"));
    let deal = run_as(&mut store, ivanov(), deal_from(Some(id)));
    let (robots, of_lead) = store
        .snapshot(|s| Ok::<_, Error>((query::events_by_robots(s)?, query::deal_of_lead(s, id)?)))
        .unwrap();
    assert_eq!((robots, of_lead), (1, Some(deal)));
}
