//! The rules runtime against a store: matching, robots, timers, exactly-once processing and
//! the depth limit.

use chrono::{DateTime, TimeZone, Utc};
use leadflow_engine::{Command, Entity, StreamId};
use leadflow_robots::Runtime;
use leadflow_store::Store;
use leadflow_testkit::{Db, exec_as, ivanov, lead_stream, monday_10, runtime, types};

/// A new lead from the web form by `admin` at `at`; its id.
fn lead(store: &mut Store, rt: &Runtime, at: DateTime<Utc>, phone: &str) -> i64 {
    leadflow_testkit::create_lead(store, rt.config(), at, phone)
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
    let db = Db::new();
    let mut store = db.open();
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
    let inbox: i64 =
        db.value("SELECT count(*) FROM inbox WHERE employee = 'smirnova' AND priority = 'high'");
    assert_eq!(inbox, 1);
    // Live projections equal a replay from the log.
    assert!(store.verify_projections(&mut |_| {}).unwrap().is_empty());
}

/// Runs a command as ivanov, then the rules.
fn run_cmd(store: &mut Store, rt: &Runtime, at: DateTime<Utc>, cmd: Command) {
    exec_as(store, rt.config(), ivanov(), at, &cmd);
    rt.process(store, at).unwrap();
}

#[test]
fn a_loop_of_rules_stops_at_the_depth_limit_with_an_incident() {
    let rt = runtime(
        r#"
[[rules]]
id = "ping"
trigger = { on = "field_changed", entity = "lead", field = "comment" }
[[rules.robots]]
robot = "set_field"
field = "dimensions"
value = "{lead.version} cm"

[[rules]]
id = "pong"
trigger = { on = "field_changed", entity = "lead", field = "dimensions" }
[[rules.robots]]
robot = "set_field"
field = "comment"
value = "again {lead.version}"
"#,
    );
    assert_eq!(
        rt.rules().warnings.len(),
        1,
        "the loop is warned about statically"
    );
    let db = Db::new();
    let mut store = db.open();
    let t0 = monday_10();
    rt.activate(&mut store, t0).unwrap();
    let id = lead(&mut store, &rt, t0, "+79120000001");
    let mut changes = std::collections::BTreeMap::new();
    changes.insert("comment".to_owned(), serde_json::json!("start"));
    run_cmd(&mut store, &rt, t0, Command::UpdateLead { id, changes });
    let seen = types(&store, lead_stream(id));
    let updates = seen.iter().filter(|t| *t == "lead.updated").count();
    // The human's update, then one robot update per level up to the limit.
    let texts: Vec<String> = db.column("SELECT text FROM incidents");
    assert_eq!(
        updates,
        1 + leadflow_robots::runtime::DEPTH_LIMIT,
        "{seen:?} {texts:?}"
    );
    assert_eq!(
        db.count("SELECT count(*) FROM incidents WHERE kind = 'depth_limit'"),
        1
    );
    let text: String = db.value("SELECT text FROM incidents");
    assert!(text.contains("depth 16"), "{text}");
    // Processing is finished: nothing left behind the cursor.
    assert_eq!(rt.process(&mut store, t0).unwrap().processed, 0);
}

const DELAYED: &str = r#"
[[rules]]
id = "remind"
trigger = { on = "stage_entered", entity = "lead", stage = "in_work" }
delay = "1h"
[[rules.robots]]
robot = "notify"
to = "responsible"
text = "Still in work: {lead.title}"

[[rules]]
id = "remind-anyway"
trigger = { on = "stage_entered", entity = "lead", stage = "in_work" }
survive_move = true
[[rules.robots]]
robot = "wait"
for = "2h"
[[rules.robots]]
robot = "notify"
to = "responsible"
text = "Two hours since {lead.title} was taken"
"#;

fn take_in_work(store: &mut Store, rt: &Runtime, t0: DateTime<Utc>) -> i64 {
    let id = lead(store, rt, t0, "+79120000001");
    run_cmd(
        store,
        rt,
        t0,
        Command::AssignLead {
            id,
            to: "ivanov".into(),
        },
    );
    run_cmd(
        store,
        rt,
        t0,
        Command::MoveLead {
            id,
            stage: "in_work".into(),
            reason: None,
        },
    );
    id
}

#[test]
fn delayed_robots_run_when_due_and_are_cancelled_when_the_lead_leaves_the_stage() {
    let rt = runtime(DELAYED);
    let t0 = monday_10();

    // Stays in the stage: both fire.
    let db = Db::new();
    let mut store = db.open();
    rt.activate(&mut store, t0).unwrap();
    let id = take_in_work(&mut store, &rt, t0);
    assert_eq!(
        db.count("SELECT count(*) FROM timers WHERE what = 'robots'"),
        2
    );
    rt.tick(&mut store, t0 + chrono::Duration::hours(3))
        .unwrap();
    assert_eq!(db.count("SELECT count(*) FROM inbox"), 2);
    let seen = types(&store, lead_stream(id));
    assert_eq!(seen.iter().filter(|t| *t == "robots.resumed").count(), 2);

    // Leaves the stage after 30 minutes: the plain delay is cancelled, survive_move is not.
    let db = Db::new();
    let mut store = db.open();
    rt.activate(&mut store, t0).unwrap();
    let id = take_in_work(&mut store, &rt, t0);
    let mut changes = std::collections::BTreeMap::new();
    changes.insert("material".to_owned(), serde_json::json!("granite"));
    let t1 = t0 + chrono::Duration::minutes(30);
    run_cmd(
        &mut store,
        &rt,
        t1,
        Command::MoveLead {
            id,
            stage: "junk".into(),
            reason: Some("spam".into()),
        },
    );
    let seen = types(&store, lead_stream(id));
    assert_eq!(
        seen.iter().filter(|t| *t == "robots.cancelled").count(),
        1,
        "{seen:?}"
    );
    rt.tick(&mut store, t0 + chrono::Duration::hours(3))
        .unwrap();
    let texts: Vec<String> = db.column("SELECT text FROM inbox");
    assert_eq!(texts, ["Two hours since Countertop was taken"]);
    assert!(store.verify_projections(&mut |_| {}).unwrap().is_empty());
}

#[test]
fn a_failing_robot_is_an_incident_and_leaves_nothing_behind() {
    // Moving to `qualified` needs material, dimensions, budget and urgency: refused.
    let rt = runtime(
        r#"
[[rules]]
id = "too-eager"
trigger = { on = "created", entity = "lead" }
[[rules.robots]]
robot = "assign"
strategy = "named"
employee = "petrova"
[[rules.robots]]
robot = "set_stage"
stage = "qualified"
[[rules.robots]]
robot = "notify"
to = "responsible"
text = "never sent"
"#,
    );
    let db = Db::new();
    let mut store = db.open();
    let t0 = monday_10();
    rt.activate(&mut store, t0).unwrap();
    let id = lead(&mut store, &rt, t0, "+79120000001");
    rt.process(&mut store, t0).unwrap();
    assert_eq!(
        types(&store, lead_stream(id)),
        ["lead.created", "lead.assigned", "incident.recorded"]
    );
    let (kind, employee, text): (String, String, String) =
        db.row("SELECT kind, employee, text FROM incidents");
    assert_eq!(
        (kind.as_str(), employee.as_str()),
        ("robot_failed", "petrova")
    );
    assert!(
        text.contains("set_stage") && text.contains("material"),
        "{text}"
    );
}

#[test]
fn triggers_filter_by_source_field_outcome_and_task() {
    let rt = runtime(
        r#"
[[rules]]
id = "from-calls"
trigger = { on = "created", entity = "lead", sources = ["call"] }
[[rules.robots]]
robot = "record_incident"
kind = "from_calls"

[[rules]]
id = "budget-changed"
trigger = { on = "field_changed", entity = "lead", field = "budget" }
[[rules.robots]]
robot = "record_incident"
kind = "budget_changed"

[[rules]]
id = "lost"
trigger = { on = "lost", entity = "lead" }
condition = 'event.reason == "spam"'
[[rules.robots]]
robot = "record_incident"
kind = "lost_spam"

[[rules]]
id = "task-done"
trigger = { on = "task_completed" }
[[rules.robots]]
robot = "record_incident"
kind = "task_done"

[[rules]]
id = "task-late"
trigger = { on = "task_overdue" }
[[rules.robots]]
robot = "record_incident"
kind = "task_late"
"#,
    );
    let db = Db::new();
    let mut store = db.open();
    let t0 = monday_10();
    rt.activate(&mut store, t0).unwrap();
    let id = lead(&mut store, &rt, t0, "+79120000001"); // web_form: no from_calls
    let mut changes = std::collections::BTreeMap::new();
    changes.insert("budget".to_owned(), serde_json::json!("150000"));
    run_cmd(&mut store, &rt, t0, Command::UpdateLead { id, changes });
    run_cmd(
        &mut store,
        &rt,
        t0,
        Command::MoveLead {
            id,
            stage: "junk".into(),
            reason: Some("spam".into()),
        },
    );
    for (title, done) in [("first", true), ("second", false)] {
        run_cmd(
            &mut store,
            &rt,
            t0,
            Command::CreateTask(leadflow_engine::command::NewTask {
                kind: "call".into(),
                title: title.into(),
                assignee: "ivanov".into(),
                due_at: t0 + chrono::Duration::hours(1),
                lead: Some(id),
                deal: None,
            }),
        );
        if done {
            run_cmd(
                &mut store,
                &rt,
                t0,
                Command::CompleteTask {
                    id: 1,
                    result: None,
                },
            );
        }
    }
    rt.tick(&mut store, t0 + chrono::Duration::hours(2))
        .unwrap();
    let kinds: Vec<String> = db.column("SELECT kind FROM incidents ORDER BY position");
    assert_eq!(
        kinds,
        ["budget_changed", "lost_spam", "task_done", "task_late"]
    );
}

#[test]
fn idle_and_schedule_triggers_fire_once_per_occasion() {
    let rt = runtime(
        r#"
[[rules]]
id = "forgotten"
trigger = { on = "idle", entity = "lead", after = "3d" }
[[rules.robots]]
robot = "record_incident"
kind = "forgotten_lead"

[[rules]]
id = "evening"
trigger = { on = "schedule", cron = "0 0 18 * * Mon-Fri" }
[[rules.robots]]
robot = "record_incident"
kind = "evening"
"#,
    );
    let db = Db::new();
    let mut store = db.open();
    let t0 = monday_10();
    rt.activate(&mut store, t0).unwrap();
    lead(&mut store, &rt, t0, "+79120000001");
    rt.process(&mut store, t0).unwrap();
    let kinds = |kind: &str| {
        db.count(&format!(
            "SELECT count(*) FROM incidents WHERE kind = '{kind}'"
        ))
    };
    // Monday 17:59 Moscow: nothing yet; 18:00: the evening rule, once however often we tick.
    let at = |d: u32, h: u32, m: u32| Utc.with_ymd_and_hms(2026, 3, d, h, m, 0).unwrap();
    rt.tick(&mut store, at(2, 14, 59)).unwrap();
    assert_eq!(kinds("evening"), 0);
    rt.tick(&mut store, at(2, 15, 0)).unwrap();
    rt.tick(&mut store, at(2, 15, 30)).unwrap();
    assert_eq!(kinds("evening"), 1);
    assert_eq!(rt.next_schedule(at(2, 15, 30)), Some(at(3, 15, 0)));
    // Thursday: three days without activity, once.
    rt.tick(&mut store, at(5, 7, 0)).unwrap();
    rt.tick(&mut store, at(5, 8, 0)).unwrap();
    assert_eq!(kinds("forgotten_lead"), 1);
    // Three evenings passed on the way (Tue–Wed… only the latest fires after a gap).
    assert_eq!(kinds("evening"), 2);
    assert!(store.verify_projections(&mut |_| {}).unwrap().is_empty());
}

const ASSIGN_CREATOR: &str = r#"
[[rules]]
id = "mine"
trigger = { on = "created", entity = "lead" }
[[rules.robots]]
robot = "assign"
strategy = "creator"
"#;

#[test]
fn a_lead_created_through_the_api_for_an_employee_is_assigned_to_that_employee_as_creator() {
    let rt = runtime(ASSIGN_CREATOR);
    let db = Db::new();
    let mut store = db.open();
    let t0 = monday_10();
    rt.activate(&mut store, t0).unwrap();
    let for_petrova = leadflow_engine::Actor::Api {
        token: "crm".into(),
        employee: Some("petrova".into()),
    };
    let id = exec_as(
        &mut store,
        rt.config(),
        for_petrova,
        t0,
        &leadflow_testkit::countertop_lead("+7 912 000-00-01"),
    )
    .stream
    .id;
    rt.process(&mut store, t0).unwrap();
    assert_eq!(
        leadflow_testkit::load_lead(&store, id)
            .responsible
            .map(|e| e.0),
        Some("petrova".to_owned())
    );
    assert!(
        db.rows::<(String,)>("SELECT text FROM incidents")
            .is_empty()
    );
}

#[test]
fn a_lead_created_through_the_api_for_no_one_has_no_creator_to_assign() {
    let rt = runtime(ASSIGN_CREATOR);
    let db = Db::new();
    let mut store = db.open();
    let t0 = monday_10();
    rt.activate(&mut store, t0).unwrap();
    let id = exec_as(
        &mut store,
        rt.config(),
        leadflow_engine::Actor::api("site-form"),
        t0,
        &leadflow_testkit::countertop_lead("+7 912 000-00-01"),
    )
    .stream
    .id;
    rt.process(&mut store, t0).unwrap();
    assert_eq!(leadflow_testkit::load_lead(&store, id).responsible, None);
    let (text,): (String,) = db.row("SELECT text FROM incidents");
    assert!(
        text.contains("api:site-form") && text.contains("no creator"),
        "{text}"
    );
}
