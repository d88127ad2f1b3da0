//! Times and durations through the real `leadflow` binary: bounds on what rule files and
//! `--now` may say, times typed without an offset read in the calendar's zone, `recorded_at`
//! the real moment of the commit, and writes dated before the log's last event refused unless
//! `--backdate` is given.

use chrono::{DateTime, Utc};
use leadflow_testkit::cli::*;
use leadflow_testkit::time::at as utc;
use serde_json::Value;

/// A JSON string holding an RFC 3339 time.
fn instant(v: &Value) -> DateTime<Utc> {
    utc(v.as_str().unwrap_or_else(|| panic!("not a time: {v}")))
}

/// A rule that sets a deadline `after` on every new lead.
fn deadline_rule(after: &str) -> String {
    format!(
        r#"[[rules]]
id = "qualify"
trigger = {{ on = "created", entity = "lead" }}

  [[rules.robots]]
  robot = "schedule_deadline"
  name = "qualification"
  after = "{after}"
"#
    )
}

#[test]
fn rules_check_refuses_durations_too_long_with_their_location() {
    let env = Env::with_rules("time.toml", &deadline_rule("3000000d"));
    let out = env.run(&["rules", "check"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains(
            "time.toml:8:11: rule 'qualify': robot 'schedule_deadline': duration '3000000d' is too long: at most 3660d (ten years)"
        ),
        "{err}"
    );
    // The other places a rule gives a duration.
    env.write_rules(
        "time.toml",
        r#"[[rules]]
id = "late"
trigger = { on = "created", entity = "lead" }
delay = "9999999999d"

  [[rules.robots]]
  robot = "notify"
  to = "responsible"
  text = "hi"

[[rules]]
id = "late-working"
trigger = { on = "created", entity = "lead" }
delay = "3000d"
delay_working = true

  [[rules.robots]]
  robot = "notify"
  to = "responsible"
  text = "hi"

[[rules]]
id = "quiet"
trigger = { on = "idle", entity = "lead", after = "9999999999d" }

  [[rules.robots]]
  robot = "notify"
  to = "responsible"
  text = "hi"

[[rules]]
id = "waits"
trigger = { on = "created", entity = "lead" }

  [[rules.robots]]
  robot = "wait"
  for = "9999999999d"

  [[rules.robots]]
  robot = "wait"
  for = "400d"
  working_time = true

  [[rules.robots]]
  robot = "notify"
  to = "responsible"
  text = "hi"

[[rules]]
id = "windows"
trigger = { on = "created", entity = "lead" }

  [[rules.robots]]
  robot = "escalate_to_manager"
  kind = "missed_deadline"
  window = "9999999999d"

  [[rules.robots]]
  robot = "send_report"
  to = "manager"
  period = "9999999999d"
"#,
    );
    let out = env.run(&["rules", "check"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    for needle in [
        "time.toml:4:9: rule 'late': duration '9999999999d' is too long",
        "time.toml:14:9: rule 'late-working': working-time duration '3000d' is too long: at most 366 working days",
        "time.toml:24:51: rule 'quiet': duration '9999999999d' is too long",
        "time.toml:37:9: rule 'waits': robot 'wait': duration '9999999999d' is too long",
        "time.toml:41:9: rule 'waits': robot 'wait': working-time duration '400d' is too long: at most 366 working days",
        "time.toml:56:12: rule 'windows': robot 'escalate_to_manager': duration '9999999999d' is too long",
        "time.toml:61:12: rule 'windows': robot 'send_report': duration '9999999999d' is too long",
    ] {
        assert!(err.contains(needle), "expected {needle:?} in {err}");
    }
}

#[test]
fn a_far_future_now_is_refused_and_tick_keeps_working() {
    let env = Env::with_rules("time.toml", &deadline_rule("2h"));
    env.ok(&[
        "lead",
        "create",
        "--name",
        "Ivan",
        "--phone",
        "+79378922084",
    ]);
    env.refused_saying(
        &["tick", "--now", "9999-12-31 23:59"],
        2,
        &[
            "--now: time '9999-12-31 23:59' is out of range: times must lie between 1970-01-01 and 2999-12-31",
        ],
    );
    env.refused_saying(
        &[
            "--now",
            "+10240-08-21T20:41:43Z",
            "lead",
            "create",
            "--name",
            "Far",
        ],
        2,
        &["--now: bad time '+10240-08-21T20:41:43Z'"],
    );
    // The deadline (12:00 Moscow + 2h) fires at its time: nothing is stuck.
    env.ok(&["tick"]);
    env.ok(&["tick", "--now", "2026-03-02 14:00"]);
    let types: Vec<String> = env
        .log()
        .iter()
        .map(|e| e["type"].as_str().unwrap().to_owned())
        .collect();
    assert!(
        types.iter().any(|t| t == "deadline.elapsed"),
        "no deadline fired: {types:?}"
    );
    env.ok(&["tick", "--now", "2999-12-31 23:00"]);
}

#[test]
fn a_time_without_an_offset_is_in_the_calendar_zone() {
    let env = Env::with_rules("time.toml", &deadline_rule("2h"));
    let out = env.ok(&["--json", "tick", "--now", "2026-03-02 15:00"]);
    let v: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(
        instant(&v["now"]),
        utc("2026-03-02T12:00:00Z"),
        "15:00 in Moscow is 12:00 UTC: {v}"
    );
    env.ok(&[
        "--now",
        "2026-03-02 15:00",
        "lead",
        "create",
        "--name",
        "Ivan",
    ]);
    let created = env.log().pop().unwrap();
    assert_eq!(
        instant(&created["occurred_at"]),
        utc("2026-03-02T12:00:00Z")
    );
    // --since reads the same way: everything happened at 12:00 UTC, 15:00 in Moscow.
    let since = |t: &str| env.ok(&["--json", "events", "--since", t]).lines().count();
    assert_eq!(since("2026-03-02 15:00"), env.log().len());
    assert_eq!(since("2026-03-02 15:01"), 0);
}

#[test]
fn recorded_at_is_the_wall_clock_whatever_now_says() {
    let env = Env::with_rules("time.toml", &deadline_rule("2h"));
    let before = Utc::now();
    env.ok(&[
        "--now",
        "2030-01-01 10:00",
        "lead",
        "create",
        "--name",
        "Ivan",
    ]);
    env.ok(&["tick", "--now", "2030-01-02 10:00"]);
    let after = Utc::now();
    let events = env.log();
    let types: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert!(
        types.contains(&"lead.created")
            && types.contains(&"deadline.scheduled")
            && types.contains(&"deadline.elapsed"),
        "{types:?}"
    );
    for e in &events {
        let recorded = instant(&e["recorded_at"]);
        assert!(
            before - chrono::Duration::seconds(1) <= recorded && recorded <= after,
            "recorded_at {recorded} is not the commit time ({before}..{after}): {e}"
        );
        assert!(
            instant(&e["occurred_at"]) >= utc("2030-01-01T07:00:00Z"),
            "occurred_at is business time: {e}"
        );
    }
    let created = events.iter().find(|e| e["type"] == "lead.created").unwrap();
    assert_eq!(
        instant(&created["occurred_at"]),
        utc("2030-01-01T07:00:00Z"),
        "10:00 in Moscow"
    );
}

#[test]
fn a_write_dated_before_the_last_event_is_refused_unless_backdated() {
    let env = Env::new();
    env.ok(&[
        "--now",
        "2026-03-02 15:00",
        "lead",
        "create",
        "--name",
        "Ivan",
    ]);
    let last = env.log().len();
    let message = format!(
        "--now 2026-03-02 14:00:00 +03:00 is before the log's last event (position {last}, lead.created at 2026-03-02 15:00:00 +03:00)"
    );
    env.refused_saying(
        &[
            "--now",
            "2026-03-02 14:00",
            "lead",
            "create",
            "--name",
            "Early",
        ],
        1,
        &[&message, "pass --backdate to record it anyway"],
    );
    env.refused_saying(
        &[
            "--now",
            "2026-03-02T10:59:59Z",
            "lead",
            "update",
            "1",
            "-f",
            "budget=1000",
        ],
        1,
        &["is before the log's last event"],
    );
    let csv = env.path().join("leads.csv");
    std::fs::write(&csv, "name,phone\nPetr,+79120000002\n").unwrap();
    env.refused_saying(
        &["--now", "2026-03-02 14:00", "import", csv.to_str().unwrap()],
        1,
        &["is before the log's last event"],
    );
    // Not earlier: the same instant is fine.
    env.ok(&[
        "--now",
        "2026-03-02T12:00:00Z",
        "lead",
        "create",
        "--name",
        "Same",
    ]);
    // --backdate records it, dated as asked.
    env.ok(&[
        "--backdate",
        "--now",
        "2026-03-02 14:00",
        "lead",
        "create",
        "--name",
        "Early",
    ]);
    let events = env.log();
    let early = events.last().unwrap();
    assert_eq!(early["type"], "lead.created");
    assert_eq!(instant(&early["occurred_at"]), utc("2026-03-02T11:00:00Z"));
    let help = env.ok(&["--help"]);
    assert!(help.contains("--backdate"), "{help}");
}

#[test]
fn a_tick_dated_before_the_last_event_is_refused_unless_backdated() {
    let env = Env::with_rules("time.toml", &deadline_rule("2h"));
    env.ok(&[
        "--now",
        "2026-03-02 15:00",
        "lead",
        "create",
        "--name",
        "Ivan",
    ]);
    env.refused_saying(
        &["tick", "--now", "2026-03-02 14:59"],
        1,
        &["--now 2026-03-02 14:59:00 +03:00 is before the log's last event"],
    );
    env.ok(&["tick", "--now", "2026-03-02 14:59", "--backdate"]);
    env.ok(&["tick", "--now", "2026-03-02 18:00"]);
}
