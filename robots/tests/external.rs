//! The `command` robot runs after the commit, never inside a write transaction: the rule's
//! transaction records `robot.requested`, the program runs once that commits, its outcome is
//! `robot.completed`, and the answer's actions are applied in reaction to it — exactly once,
//! across restarts (a request without an outcome runs again, with the same key), and never on
//! replay. The checks that do not need SQLite run on the in-memory backend too.

use leadflow_engine::command::NewLead;
use leadflow_engine::ids::EmployeeId;
use leadflow_engine::memory::Memory;
use leadflow_engine::workspace::{Backend, Stamp};
use leadflow_engine::{Command, Entity, EntityKind, StreamId};
use leadflow_robots::Runtime;
use leadflow_store::{Options, Store};
use serde_json::{Value, json};
use std::path::Path;
use std::time::{Duration, Instant};

use leadflow_testkit::{admin, meta, monday_10 as t0};

/// A rule that runs `sh -c script` when a lead is created.
fn runtime(script: &str, timeout: &str) -> Runtime {
    let script = serde_json::to_string(script).unwrap();
    leadflow_testkit::runtime(&format!(
        "[[rules]]\nid = \"ext\"\ntrigger = {{ on = \"created\", entity = \"lead\" }}\n[[rules.robots]]\nrobot = \"command\"\nprogram = \"sh\"\nargs = [\"-c\", {script}]\ntimeout = \"{timeout}\"\n"
    ))
}

/// A script that appends its idempotency key to `calls`, then answers with one action.
fn counting(calls: &Path) -> String {
    format!(
        "cat >/dev/null; echo \"$LEADFLOW_IDEMPOTENCY_KEY\" >> '{}'; echo '{{\"actions\": [{{\"set_field\": {{\"field\": \"material\", \"value\": \"granite\"}}}}]}}'",
        calls.display()
    )
}

/// Creates a lead as admin; its stream.
fn create_lead<D: Backend>(db: &mut D, rt: &Runtime) -> StreamId {
    let config = rt.config().clone();
    db.write(Stamp::At(t0()), |ws| {
        ws.execute(
            &config,
            &Command::CreateLead(NewLead {
                title: Some("Countertop".into()),
                responsible: Some(EmployeeId("ivanov".into())),
                ..Default::default()
            }),
            &meta(t0(), admin()),
        )
    })
    .unwrap()
    .stream
}

fn types<D: Backend>(db: &D, stream: StreamId) -> Vec<String> {
    db.read_after(0, 10_000)
        .unwrap()
        .into_iter()
        .filter(|e| e.stream == stream)
        .map(|e| e.event_type)
        .collect()
}

fn payload<D: Backend>(db: &D, ty: &str) -> Value {
    let rec = db
        .read_after(0, 10_000)
        .unwrap()
        .into_iter()
        .find(|e| e.event_type == ty)
        .unwrap_or_else(|| panic!("no {ty}"));
    serde_json::from_str(&rec.payload).unwrap()
}

fn material<D: Backend>(db: &D, lead: StreamId) -> Option<Value> {
    match db.load(lead).unwrap() {
        Some(Entity::Lead(l)) => l.fields.get("material").cloned(),
        other => panic!("{other:?}"),
    }
}

fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

/// The request, its outcome and the answer's action, in that order; the program ran once,
/// with the request's key; processing again runs nothing.
fn runs_once_after_the_commit<D: Backend>(db: &mut D, calls: &Path) {
    let rt = runtime(&counting(calls), "10s");
    rt.activate(db, t0()).unwrap();
    let lead = create_lead(db, &rt);
    rt.process(db, t0()).unwrap();
    assert_eq!(
        types(db, lead),
        [
            "lead.created",
            "robot.requested",
            "robot.started",
            "robot.completed",
            "lead.updated"
        ]
    );
    let request = payload(db, "robot.requested");
    let key = request["key"].as_str().unwrap().to_owned();
    assert_eq!(request["input"]["key"], json!(key));
    assert_eq!(request["input"]["trigger"]["type"], json!("lead.created"));
    assert_eq!(lines(calls), [key]);
    let completed = payload(db, "robot.completed");
    assert_eq!(completed["outcome"], json!("answered"));
    assert_eq!(material(db, lead), Some(json!("granite")));
    // Nothing is pending: processing again runs nothing and appends nothing.
    let before = db.last_position().unwrap();
    rt.process(db, t0()).unwrap();
    rt.tick(db, t0()).unwrap();
    assert_eq!(lines(calls).len(), 1);
    assert_eq!(db.last_position().unwrap(), before);
}

#[test]
fn the_program_runs_once_after_the_commit_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::open_in_memory().unwrap();
    runs_once_after_the_commit(&mut store, &dir.path().join("calls"));
}

#[test]
fn the_program_runs_once_after_the_commit_in_memory() {
    let dir = tempfile::tempdir().unwrap();
    let mut memory = Memory::new();
    runs_once_after_the_commit(&mut memory, &dir.path().join("calls"));
}

#[test]
fn a_request_left_without_an_outcome_runs_again_once_stale_with_the_same_key() {
    let dir = tempfile::tempdir().unwrap();
    let (db, calls) = (dir.path().join("leadflow.db"), dir.path().join("calls"));
    let lead = {
        let rt = runtime(&counting(&calls), "10s");
        let mut store = Store::open(&db, &Options::default()).unwrap();
        rt.activate(&mut store, t0()).unwrap();
        let lead = create_lead(&mut store, &rt);
        // The rules' transaction commits the request; the process ends before running it
        // (as a crash would end it).
        rt.process_some(&mut store, t0(), 100).unwrap();
        assert_eq!(types(&store, lead), ["lead.created", "robot.requested"]);
        assert!(lines(&calls).is_empty());
        lead
    };
    // A new process (the same rules) finds the request pending. Within the request's time
    // limit (10 s) and the margin after it, its own process may still be running it: left
    // alone.
    let rt = runtime(&counting(&calls), "10s");
    let mut store = Store::open(&db, &Options::default()).unwrap();
    rt.process(&mut store, t0() + chrono::Duration::seconds(15))
        .unwrap();
    assert!(lines(&calls).is_empty());
    assert_eq!(types(&store, lead), ["lead.created", "robot.requested"]);
    // Past them, it is abandoned: run again.
    rt.process(&mut store, t0() + chrono::Duration::seconds(21))
        .unwrap();
    let key = payload(&store, "robot.requested")["key"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(lines(&calls), [key]);
    assert_eq!(
        types(&store, lead),
        [
            "lead.created",
            "robot.requested",
            "robot.started",
            "robot.completed",
            "lead.updated"
        ]
    );
    assert_eq!(material(&store, lead), Some(json!("granite")));
    store.verify_projections(&mut |_| {}).unwrap();
}

#[test]
fn replay_never_runs_the_program() {
    let dir = tempfile::tempdir().unwrap();
    let (db, calls) = (dir.path().join("leadflow.db"), dir.path().join("calls"));
    let mut store = Store::open(&db, &Options::default()).unwrap();
    runs_once_after_the_commit(&mut store, &calls);
    store.replay(&mut |_| {}).unwrap();
    assert_eq!(lines(&calls).len(), 1, "replay ran the program");
    let diffs = store.verify_projections(&mut |_| {}).unwrap();
    assert!(diffs.is_empty(), "{diffs:?}");
    assert_eq!(
        material(&store, StreamId::new(EntityKind::Lead, 1)),
        Some(json!("granite"))
    );
}

#[test]
fn a_running_program_holds_no_write_lock() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("leadflow.db");
    let (started, go, done) = (
        dir.path().join("started"),
        dir.path().join("go"),
        dir.path().join("done"),
    );
    // The program says it started, waits (up to 20 s) for `go`, says it is done, answers.
    let script = format!(
        "cat >/dev/null; touch '{s}'; i=0; while [ ! -f '{g}' ] && [ $i -lt 400 ]; do sleep 0.05; i=$((i+1)); done; touch '{d}'; echo '{{\"actions\": []}}'",
        s = started.display(),
        g = go.display(),
        d = done.display()
    );
    let rt = runtime(&script, "60s");
    let mut store = Store::open(&db, &Options::default()).unwrap();
    rt.activate(&mut store, t0()).unwrap();
    create_lead(&mut store, &rt);
    let worker = std::thread::spawn(move || {
        rt.process(&mut store, t0()).unwrap();
        store
    });
    let wait_until = Instant::now() + Duration::from_secs(20);
    while !started.exists() {
        assert!(Instant::now() < wait_until, "the program never started");
        std::thread::sleep(Duration::from_millis(20));
    }
    // Another writer (its own connection, as another process has) writes at once.
    let other_rt = runtime("true", "10s");
    let mut other = Store::open(&db, &Options::default()).unwrap();
    let began = Instant::now();
    let stream = create_lead(&mut other, &other_rt);
    assert!(
        !done.exists(),
        "the other write waited for the program to end"
    );
    assert!(began.elapsed() < Duration::from_secs(5));
    assert_eq!(stream, StreamId::new(EntityKind::Lead, 2));
    std::fs::write(&go, "").unwrap();
    let store = worker.join().unwrap();
    assert_eq!(
        payload(&store, "robot.completed")["outcome"],
        json!("answered")
    );
}

#[test]
fn a_program_past_its_timeout_is_killed_and_its_outcome_says_so() {
    let mut memory = Memory::new();
    let rt = runtime("cat >/dev/null; sleep 5; echo '{\"actions\": []}'", "1s");
    rt.activate(&mut memory, t0()).unwrap();
    let lead = create_lead(&mut memory, &rt);
    let began = Instant::now();
    rt.process(&mut memory, t0()).unwrap();
    assert!(began.elapsed() < Duration::from_secs(4));
    let completed = payload(&memory, "robot.completed");
    assert_eq!(completed["outcome"], json!("timed_out"));
    assert!(
        completed["error"]
            .as_str()
            .unwrap()
            .contains("did not finish within 1s; it was killed"),
        "{completed}"
    );
    assert_eq!(
        types(&memory, lead),
        [
            "lead.created",
            "robot.requested",
            "robot.started",
            "robot.completed",
            "incident.recorded"
        ]
    );
}

#[test]
fn a_request_another_process_holds_is_left_to_it_until_its_claim_lapses() {
    let dir = tempfile::tempdir().unwrap();
    let calls = dir.path().join("calls");
    let rt = runtime(&counting(&calls), "10s");
    let mut memory = Memory::new();
    rt.activate(&mut memory, t0()).unwrap();
    let lead = create_lead(&mut memory, &rt);
    rt.process_some(&mut memory, t0(), 100).unwrap();
    let request = memory
        .events()
        .iter()
        .find(|e| e.event_type == "robot.requested")
        .unwrap()
        .position;
    // Nobody took it: free once its time limit (10 s) and the margin (10 s) have passed, which
    // is when `run` wakes for it.
    assert_eq!(
        rt.next_wake(&memory, t0()).unwrap(),
        Some(t0() + chrono::Duration::seconds(20))
    );
    // Another process takes it, until a minute on.
    let until = t0() + chrono::Duration::seconds(60);
    memory
        .write(Stamp::At(t0()), |ws| {
            let version = ws.version(lead)?;
            ws.append(
                lead,
                version,
                &[leadflow_engine::Event::RobotStarted(
                    leadflow_engine::event::RobotStarted { request, until },
                )],
                &meta(t0(), leadflow_engine::Actor::System),
            )
        })
        .unwrap();
    assert_eq!(rt.next_wake(&memory, t0()).unwrap(), Some(until));
    rt.process(&mut memory, t0() + chrono::Duration::seconds(30))
        .unwrap();
    assert!(
        lines(&calls).is_empty(),
        "ran a request another process holds"
    );
    // Its claim lapsed: that process is gone; this one takes it over.
    rt.process(&mut memory, until).unwrap();
    assert_eq!(lines(&calls).len(), 1);
    assert_eq!(material(&memory, lead), Some(json!("granite")));
}

/// A rule whose `command` answers with `answer` (its stdout), followed by a `set_field`.
fn command_then_set_field(answer: &str) -> Runtime {
    let script = serde_json::to_string(&format!("cat >/dev/null; echo '{answer}'")).unwrap();
    leadflow_testkit::runtime(&format!(
        "[[rules]]\nid = \"ext\"\ntrigger = {{ on = \"created\", entity = \"lead\" }}\n[[rules.robots]]\nrobot = \"command\"\nprogram = \"sh\"\nargs = [\"-c\", {script}]\n[[rules.robots]]\nrobot = \"set_field\"\nfield = \"urgency\"\nvalue = \"this_month\"\n"
    ))
}

fn urgency(memory: &Memory, lead: StreamId) -> Option<Value> {
    match memory.load(lead).unwrap() {
        Some(Entity::Lead(l)) => l.fields.get("urgency").cloned(),
        other => panic!("{other:?}"),
    }
}

#[test]
fn the_robots_after_a_command_run_after_its_answer_and_not_when_it_fails() {
    // Answered: its action, then the rule's next robot.
    let rt = command_then_set_field(
        r#"{"actions": [{"notify": {"to": "responsible", "text": "checked after {event.type}"}}]}"#,
    );
    let mut memory = Memory::new();
    rt.activate(&mut memory, t0()).unwrap();
    let lead = create_lead(&mut memory, &rt);
    rt.process(&mut memory, t0()).unwrap();
    assert_eq!(
        types(&memory, lead),
        [
            "lead.created",
            "robot.requested",
            "robot.started",
            "robot.completed",
            "notification.queued",
            "lead.updated"
        ]
    );
    assert_eq!(urgency(&memory, lead), Some(json!("this_month")));
    // The answer's templates see the rule's trigger, not the outcome event.
    assert_eq!(
        payload(&memory, "notification.queued")["text"],
        json!("checked after lead.created")
    );
    // Failed: the rule stops there, as when a built-in robot fails.
    let rt = command_then_set_field("not json");
    let mut memory = Memory::new();
    rt.activate(&mut memory, t0()).unwrap();
    let lead = create_lead(&mut memory, &rt);
    rt.process(&mut memory, t0()).unwrap();
    assert_eq!(urgency(&memory, lead), None);
    assert_eq!(
        types(&memory, lead),
        [
            "lead.created",
            "robot.requested",
            "robot.started",
            "robot.completed",
            "incident.recorded"
        ]
    );
}
