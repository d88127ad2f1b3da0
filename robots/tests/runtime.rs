//! The rules runtime against an in-memory store: matching, robots, timers, exactly-once
//! processing and the depth limit.

use chrono::{DateTime, TimeZone, Utc};
use leadflow_engine::command::NewLead;
use leadflow_engine::config::DEFAULT_CONFIG;
use leadflow_engine::rules::RuleSet;
use leadflow_engine::{Actor, Command, Config, Entity, EventMeta, Source, StreamId};
use leadflow_robots::{Registry, Runtime};
use leadflow_store::Store;

fn config() -> Config {
    Config::from_toml("leadflow.toml", DEFAULT_CONFIG).unwrap()
}

fn runtime(rules: &str) -> Runtime {
    let config = config();
    let registry = Registry::builtin();
    let set = RuleSet::load(
        &[Source {
            path: "rules.toml".into(),
            text: rules.into(),
        }],
        &config,
        &registry,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    Runtime::new(config, set, registry)
}

/// Monday 2 March 2026, 10:00 Moscow time.
fn monday_10() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 2, 7, 0, 0).unwrap()
}

fn lead(store: &mut Store, rt: &Runtime, at: DateTime<Utc>, phone: &str) -> i64 {
    let config = rt.config().clone();
    let out = store
        .write(at, |tx| {
            tx.execute(
                &config,
                &Command::CreateLead(NewLead {
                    title: Some("Countertop".into()),
                    phones: vec![phone.into()],
                    source: Some("web_form".into()),
                    ..Default::default()
                }),
                &EventMeta::root(at, Actor::Employee("admin".into())),
            )
        })
        .unwrap();
    out.stream.id
}

fn types(store: &Store, stream: StreamId) -> Vec<String> {
    store
        .read_stream(stream)
        .unwrap()
        .into_iter()
        .map(|e| e.event_type)
        .collect()
}

const QUALIFICATION: &str = r#"
[[rules]]
id = "assign-first-line"
trigger = { on = "created", entity = "lead" }
[[rules.robots]]
robot = "assign"
strategy = "round_robin"
team = "first_line"
[[rules.robots]]
robot = "schedule_deadline"
name = "qualification"
after = [{ if = "has(lead.phone)", after = "2h" }, { after = "1d" }]
working_time = true

[[rules]]
id = "missed"
trigger = { on = "deadline_elapsed", name = "qualification" }
[[rules.robots]]
robot = "record_incident"
kind = "missed_deadline"
text = "{lead.title}: qualification deadline missed"
[[rules.robots]]
robot = "escalate_to_manager"
kind = "missed_deadline"
[[rules.robots]]
robot = "schedule_deadline"
name = "qualification"
after = "2h"
working_time = true
"#;

#[test]
fn rules_assign_schedule_and_escalate_after_the_third_miss() {
    let rt = runtime(QUALIFICATION);
    let mut store = Store::open_in_memory().unwrap();
    let t0 = monday_10();
    rt.activate(&mut store, t0).unwrap();
    let id = lead(&mut store, &rt, t0, "+7 912 000-00-01");
    let report = rt.process(&mut store, t0).unwrap();
    assert_eq!(report.fired, 1, "{report:?}");
    let stream = StreamId::new(leadflow_engine::EntityKind::Lead, id);
    assert_eq!(
        types(&store, stream),
        ["lead.created", "lead.assigned", "deadline.scheduled"]
    );
    let Some(Entity::Lead(l)) = store.load(stream).unwrap() else {
        panic!()
    };
    assert_eq!(l.responsible.unwrap().as_str(), "ivanov");
    assert_eq!(l.version, 3);
    // Nothing is due before 12:00.
    assert_eq!(
        rt.tick(&mut store, t0 + chrono::Duration::minutes(119))
            .unwrap()
            .timers,
        0
    );
    // Three misses, two working hours apart (12:00, 15:00 after lunch, 17:00 Moscow time):
    // the third escalates.
    for hour_utc in [9, 12, 14] {
        let now = Utc.with_ymd_and_hms(2026, 3, 2, hour_utc, 0, 0).unwrap();
        assert_eq!(rt.next_due(&store).unwrap(), Some(now));
        let r = rt.tick(&mut store, now).unwrap();
        assert_eq!(r.timers, 1, "{r:?} at {now}");
    }
    let all = types(&store, stream);
    assert_eq!(all.iter().filter(|t| *t == "incident.recorded").count(), 3);
    assert_eq!(
        all.iter().filter(|t| *t == "escalation.recorded").count(),
        1,
        "{all:?}"
    );
    let inbox: i64 = store
        .connection()
        .query_row(
            "SELECT count(*) FROM inbox WHERE employee = 'smirnova' AND priority = 'high'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(inbox, 1);
    // Live projections equal a replay from the log.
    assert!(store.verify_projections(&mut |_| {}).unwrap().is_empty());
}
