//! Time arithmetic in the rules runtime never overflows: a delay, a `wait`, a window, a report
//! period or an idle wait that cannot be reached (rule sets are bounded when loaded; these are
//! set past the bounds by hand, as a hand-edited or future rule set might) is a `robot_failed`
//! incident or a skipped check, never a panic, and the cursor moves on to the next event. And
//! scenario times are read like `--now`: in the calendar's zone, bounded.

use chrono::{DateTime, TimeDelta, TimeZone, Utc};
use leadflow_engine::rules::{RuleSet, Trigger};
use leadflow_robots::{Registry, Runtime};
use leadflow_store::Store;
use leadflow_testkit::{
    Db, config, create_lead, memory_store, monday_10 as t0, rule_set, try_rule_set,
};

/// The rule set loaded (it must be valid), then changed by `edit`.
fn runtime(rules: &str, edit: impl FnOnce(&mut RuleSet)) -> Runtime {
    let mut set = rule_set(rules, &config());
    edit(&mut set);
    Runtime::new(config(), set, Registry::builtin())
}

/// A new lead from the web form by `admin` at `at`.
fn lead(store: &mut Store, at: DateTime<Utc>) {
    create_lead(store, &config(), at, "+79120000001");
}

/// `(kind, rule, text)` of every incident.
fn incidents(db: &Db) -> Vec<(String, String, String)> {
    db.rows("SELECT kind, coalesce(rule, ''), text FROM incidents ORDER BY position")
}

/// Two leads, each processed: the first robot failure must not stop the second lead's rules,
/// nor leave the cursor behind. Returns the incidents.
fn two_leads_fail_alone(rt: &Runtime) -> Vec<(String, String, String)> {
    let db = Db::new();
    let mut store = db.open();
    rt.activate(&mut store, t0()).unwrap();
    lead(&mut store, t0());
    let first = rt.process(&mut store, t0()).unwrap();
    assert_eq!(first.incidents, 1, "{first:?}");
    lead(&mut store, t0());
    let second = rt.process(&mut store, t0()).unwrap();
    assert_eq!(second.incidents, 1, "{second:?}");
    assert_eq!(
        rt.process(&mut store, t0()).unwrap().processed,
        0,
        "the cursor is at the head"
    );
    rt.tick(&mut store, t0() + TimeDelta::days(1)).unwrap();
    let all = incidents(&db);
    assert_eq!(all.len(), 2, "{all:?}");
    assert!(
        all.iter().all(|(kind, _, _)| kind == "robot_failed"),
        "{all:?}"
    );
    all
}

const DELAYED: &str = r#"
[[rules]]
id = "slow"
trigger = { on = "created", entity = "lead" }
delay = "1h"
[[rules.robots]]
robot = "record_incident"
kind = "never"
"#;

#[test]
fn a_delay_out_of_reach_is_an_incident_not_a_panic() {
    let rt = runtime(DELAYED, |s| s.rules[0].delay = Some(TimeDelta::MAX));
    let all = two_leads_fail_alone(&rt);
    assert_eq!(all[0].1, "slow");
    assert!(all[0].2.contains("its delay from"), "{all:?}");
    assert!(all[0].2.contains("out of reach"), "{all:?}");
}

#[test]
fn a_working_time_delay_out_of_reach_is_an_incident_not_a_panic() {
    let rt = runtime(DELAYED, |s| {
        s.rules[0].delay = Some(TimeDelta::MAX);
        s.rules[0].delay_working = true;
    });
    let all = two_leads_fail_alone(&rt);
    assert!(all[0].2.contains("delay in working time"), "{all:?}");
}

#[test]
fn a_wait_out_of_reach_is_an_incident_and_later_commands_go_on() {
    let rt = runtime(
        r#"
[[rules]]
id = "waits"
trigger = { on = "created", entity = "lead" }
[[rules.robots]]
robot = "wait"
for = "1h"
[[rules.robots]]
robot = "record_incident"
kind = "never"
"#,
        |s| {
            s.rules[0].robots[0]
                .params
                .insert("for".into(), toml::Value::String("9999999999d".into()));
        },
    );
    let all = two_leads_fail_alone(&rt);
    assert!(
        all[0].2.starts_with("rule 'waits', robot 'wait': "),
        "{all:?}"
    );
    assert!(all[0].2.contains("too long"), "{all:?}");
}

#[test]
fn an_escalation_window_out_of_reach_is_an_incident() {
    let rt = runtime(
        r#"
[[rules]]
id = "escalates"
trigger = { on = "created", entity = "lead" }
[[rules.robots]]
robot = "assign"
strategy = "named"
employee = "petrova"
[[rules.robots]]
robot = "escalate_to_manager"
kind = "missed_deadline"
window = "30d"
"#,
        |s| {
            s.rules[0].robots[1]
                .params
                .insert("window".into(), toml::Value::String("9999999999d".into()));
        },
    );
    let all = two_leads_fail_alone(&rt);
    assert!(all[0].2.contains("escalate_to_manager"), "{all:?}");
}

#[test]
fn a_report_period_out_of_reach_is_an_incident() {
    let rt = runtime(
        r#"
[[rules]]
id = "reports"
trigger = { on = "created", entity = "lead" }
[[rules.robots]]
robot = "send_report"
to = "manager"
period = "1d"
"#,
        |s| {
            s.rules[0].robots[0]
                .params
                .insert("period".into(), toml::Value::String("9999999999d".into()));
        },
    );
    let all = two_leads_fail_alone(&rt);
    assert!(all[0].2.contains("send_report: 'period'"), "{all:?}");
}

#[test]
fn an_idle_wait_out_of_reach_is_skipped_and_ticks_go_on() {
    let rt = runtime(
        r#"
[[rules]]
id = "quiet"
trigger = { on = "idle", entity = "lead", after = "3d" }
[[rules.robots]]
robot = "record_incident"
kind = "idle"
"#,
        |s| {
            let Trigger::Idle { after, .. } = &mut s.rules[0].trigger else {
                panic!("not an idle trigger")
            };
            *after = TimeDelta::MAX;
        },
    );
    let db = Db::new();
    let mut store = db.open();
    rt.activate(&mut store, t0()).unwrap();
    lead(&mut store, t0());
    rt.process(&mut store, t0()).unwrap();
    let later = t0() + TimeDelta::days(30);
    let report = rt.tick(&mut store, later).unwrap();
    assert_eq!(report.incidents, 0, "{report:?}");
    assert_eq!(rt.next_wake(&store, later).unwrap(), None);
    assert!(incidents(&db).is_empty());
}

/// A scenario's own text, checked as if it were the seed scenario B's file (whose rules it
/// then uses).
fn scenario(text: &str) -> Result<leadflow_robots::scenario::Scenario, String> {
    let path = leadflow_testkit::repo("examples/scenarios/b-qualification/scenario.toml");
    leadflow_robots::scenario::Scenario::parse(&path, text).map_err(|e| e.to_string())
}

#[test]
fn scenario_times_are_read_in_the_calendar_zone_and_bounded() {
    let ok = scenario("name = \"t\"\nstart = \"2026-03-02 10:00\"\n").unwrap();
    assert_eq!(ok.start, t0(), "10:00 in Moscow");
    let err = scenario(
        "name = \"t\"\nstart = \"2026-03-02 10:00\"\n\n[[steps]]\nuntil = \"9999-12-31 23:59\"\n\n[[steps]]\nadvance = \"3000000d\"\n",
    )
    .unwrap_err();
    assert!(
        err.contains(
            "scenario.toml:5:9: time '9999-12-31 23:59' is out of range: times must lie between 1970-01-01 and 2999-12-31"
        ),
        "{err}"
    );
    assert!(
        err.contains("scenario.toml:8:11: duration '3000000d' is too long"),
        "{err}"
    );
}

/// A lead created on Monday 2 March 2026 at 10:00 Moscow time, processed; the due time of each
/// rule's `robots.delayed`, by rule.
fn delayed_due_times(rules: &str) -> Vec<(String, DateTime<Utc>)> {
    let rt = runtime(rules, |_| {});
    let mut store = memory_store();
    rt.activate(&mut store, t0()).unwrap();
    lead(&mut store, t0());
    rt.process(&mut store, t0()).unwrap();
    let filter = leadflow_store::LogFilter {
        types: vec!["robots.delayed".into()],
        ..Default::default()
    };
    let mut due: Vec<(String, DateTime<Utc>)> = store
        .read_log(&filter, 0, 100)
        .unwrap()
        .iter()
        .map(|rec| match rec.decode().unwrap() {
            leadflow_engine::Event::RobotsDelayed(d) => (d.rule, d.due_at),
            other => panic!("not robots.delayed: {other:?}"),
        })
        .collect();
    due.sort();
    due
}

#[test]
fn a_working_day_of_delay_is_a_working_day_of_wait() {
    let due = delayed_due_times(
        r#"
[[rules]]
id = "delayed"
trigger = { on = "created", entity = "lead" }
delay = "1d"
delay_working = true
[[rules.robots]]
robot = "record_incident"
kind = "never"

[[rules]]
id = "waits"
trigger = { on = "created", entity = "lead" }
[[rules.robots]]
robot = "wait"
for = "1d"
working_time = true
[[rules.robots]]
robot = "record_incident"
kind = "never"

[[rules]]
id = "mixed"
trigger = { on = "created", entity = "lead" }
delay = "1w 1d 2h"
delay_working = true
[[rules.robots]]
robot = "record_incident"
kind = "never"
"#,
    );
    // One working day: Tuesday 3 March, 10:00 in Moscow. Six working days and two hours
    // (Monday 9 March is a holiday): Wednesday 11 March, 12:00 in Moscow. A rule's delay and
    // a `wait` read working time alike.
    let tuesday = Utc.with_ymd_and_hms(2026, 3, 3, 7, 0, 0).unwrap();
    let wednesday_week = Utc.with_ymd_and_hms(2026, 3, 11, 9, 0, 0).unwrap();
    assert_eq!(
        due,
        vec![
            ("delayed".to_owned(), tuesday),
            ("mixed".to_owned(), wednesday_week),
            ("waits".to_owned(), tuesday),
        ]
    );
    assert_eq!(
        config().calendar.after(t0(), "1w 1d 2h", true),
        Ok(wednesday_week)
    );
}

#[test]
fn a_working_time_delay_is_bounded_in_working_days() {
    let err = try_rule_set(
        "rules.toml",
        &DELAYED.replace("delay = \"1h\"", "delay = \"367d\"\ndelay_working = true"),
        &config(),
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains(
            "rules.toml:5:9: rule 'slow': working-time duration '367d' is too long: at most 366 working days"
        ),
        "{err}"
    );
    assert!(!err.contains("working hours"), "{err}");
    // 123 working days are within the bound.
    runtime(
        &DELAYED.replace("delay = \"1h\"", "delay = \"123d\"\ndelay_working = true"),
        |_| {},
    );
}

#[test]
fn a_signed_working_time_duration_is_refused_like_any_other() {
    let text = r#"
[[rules]]
id = "waits"
trigger = { on = "created", entity = "lead" }
[[rules.robots]]
robot = "wait"
for = "-1d"
working_time = true
[[rules.robots]]
robot = "record_incident"
kind = "never"
"#;
    let err = try_rule_set("rules.toml", text, &config())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("rules.toml:7:7: rule 'waits': robot 'wait': bad duration '-1d'"),
        "{err}"
    );
}
