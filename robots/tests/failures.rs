//! A robot that fails at run time, even by panicking, is a `robot_failed` incident: its
//! appends are rolled back, the cursor moves on, and later events are processed.

use chrono::{DateTime, TimeZone, Utc};
use leadflow_engine::command::NewLead;
use leadflow_engine::config::DEFAULT_CONFIG;
use leadflow_engine::robot::RobotSpec;
use leadflow_engine::rules::RuleSet;
use leadflow_engine::{Actor, Command, Config, EventMeta, Source};
use leadflow_robots::{Ctx, Params, Registry, Robot, RobotError, Runtime};
use leadflow_store::Store;
use std::sync::Arc;

/// Records an incident, then panics.
struct Panics;

impl Robot for Panics {
    fn run(&self, ctx: &mut Ctx<'_, '_>, _: &Params) -> Result<(), RobotError> {
        ctx.incident("half_done", None, "appended before the panic".into())?;
        panic!("overflow at 1")
    }
}

fn config() -> Config {
    Config::from_toml("leadflow.toml", DEFAULT_CONFIG).unwrap()
}

fn lead(store: &mut Store, at: DateTime<Utc>) {
    store
        .write(at, |tx| {
            tx.execute(
                &config(),
                &Command::CreateLead(NewLead {
                    title: Some("Countertop".into()),
                    phones: vec!["+79120000001".into()],
                    source: Some("web_form".into()),
                    ..Default::default()
                }),
                &EventMeta::root(at, Actor::Employee("admin".into())),
            )
        })
        .unwrap();
}

#[test]
fn a_panicking_robot_is_an_incident_and_the_runtime_goes_on() {
    let registry = Registry::builtin().with(
        RobotSpec {
            name: "panics",
            doc: "panics",
            params: vec![],
            emits: vec![],
        },
        Arc::new(Panics),
    );
    let rules = RuleSet::load(
        &[Source {
            path: "rules.toml".into(),
            text: "[[rules]]\nid = \"boom\"\ntrigger = { on = \"created\", entity = \"lead\" }\n[[rules.robots]]\nrobot = \"panics\"\n".into(),
        }],
        &config(),
        &registry,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let rt = Runtime::new(config(), rules, registry);
    let mut store = Store::open_in_memory().unwrap();
    let t0 = Utc.with_ymd_and_hms(2026, 3, 2, 7, 0, 0).unwrap();
    rt.activate(&mut store, t0).unwrap();
    for _ in 0..2 {
        lead(&mut store, t0);
        let report = rt.process(&mut store, t0).unwrap();
        assert_eq!(report.incidents, 1, "{report:?}");
    }
    assert_eq!(rt.process(&mut store, t0).unwrap().processed, 0);
    let texts: Vec<(String, String)> = store
        .connection()
        .prepare("SELECT kind, text FROM incidents ORDER BY position")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(
        texts.len(),
        2,
        "the half-done incidents were rolled back: {texts:?}"
    );
    for (kind, text) in &texts {
        assert_eq!(kind, "robot_failed");
        assert_eq!(
            text,
            "rule 'boom', robot 'panics': the robot crashed: overflow at 1"
        );
    }
    assert!(store.verify_projections(&mut |_| {}).unwrap().is_empty());
}
