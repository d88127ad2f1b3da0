//! Rules through the real `leadflow` binary on temporary folders: commands run the robots of a
//! rule set beside the configuration, a broken rule set stops them with file:line:col, `tick`
//! fires what is due at `--now`, `run` fires a deadline on the wall clock and stops on SIGTERM,
//! and `inbox` and `journal` show what the robots recorded.

use leadflow_testkit::cli::*;
use serde_json::Value;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A call-back deadline two hours after a lead arrives; missing it notifies the responsible,
/// records an incident and escalates to the manager at once.
const DEADLINE: &str = r#"
[[rules]]
id = "call-back"
trigger = { on = "created", entity = "lead" }

  [[rules.robots]]
  robot = "assign"
  strategy = "round_robin"
  team = "first_line"

  [[rules.robots]]
  robot = "schedule_deadline"
  name = "call_back"
  after = "2h"

[[rules]]
id = "call-back-missed"
trigger = { on = "deadline_elapsed", name = "call_back" }

  [[rules.robots]]
  robot = "notify"
  to = "responsible"
  text = "call {lead.title} back"
  priority = "high"

  [[rules.robots]]
  robot = "record_incident"
  kind = "missed_call_back"
  text = "{lead.title} was not called back"

  [[rules.robots]]
  robot = "escalate_to_manager"
  kind = "missed_call_back"
  threshold = 1
"#;

fn lead(env: &Env, name: &str) {
    env.ok(&["lead", "create", "--name", name, "--source", "web_form"]);
}

#[test]
fn without_rules_commands_append_only_their_own_events() {
    let env = Env::new();
    // init's rules/example.toml is all comments: no rule set, nothing activated.
    let out = env.ok(&["lead", "create", "--name", "Ivan", "--source", "web_form"]);
    assert_eq!(out.trim(), "lead-1 created (position 1, version 1)");
    let v: Value =
        serde_json::from_str(&env.ok(&["--json", "lead", "create", "--name", "Anna"])).unwrap();
    assert!(v.get("robots").is_none(), "{v}");
    assert_eq!(env.log_types(), ["lead.created", "lead.created"]);
    // Nothing to run is not an error (issue 8, defect 8).
    assert!(env.ok(&["tick"]).contains("nothing to run"));
    std::fs::remove_dir_all(env.path().join("rules")).unwrap();
    assert!(
        env.ok(&["tick"])
            .contains("create rules/ beside the configuration or pass --rules DIR")
    );
    assert_eq!(env.log_types(), ["lead.created", "lead.created"]);
}

#[test]
fn a_rule_set_beside_the_config_assigns_new_leads_round_robin() {
    let env = Env::with_rules("intake.toml", ROUND_ROBIN_RULES);
    let out = env.ok(&["lead", "create", "--name", "Ivan", "--source", "web_form"]);
    assert_eq!(
        out,
        "lead-1 created (position 1, version 1)\n  lead.assigned lead-1 v2 by robot:assign-first-line (position 3)\n"
    );
    let v: Value = serde_json::from_str(&env.ok(&[
        "--json", "lead", "create", "--name", "Anna", "--source", "web_form",
    ]))
    .unwrap();
    assert_eq!(v["robots"][0]["type"], "lead.assigned");
    assert_eq!(v["robots"][0]["actor"], "robot:assign-first-line");
    assert_eq!(v["incidents"], 0);
    // A lead from another source is not the rule's business.
    env.ok(&["lead", "create", "--name", "Oleg", "--source", "call"]);
    assert_eq!(
        env.log_types(),
        [
            "lead.created",
            "ruleset.activated",
            "lead.assigned",
            "lead.created",
            "lead.assigned",
            "lead.created"
        ]
    );
    let leads = json_lines(&env.ok(&["--json", "lead", "list"]));
    let responsible: Vec<&Value> = leads.iter().rev().map(|l| &l["responsible"]).collect();
    assert_eq!(
        responsible,
        [
            &Value::from("ivanov"),
            &Value::from("petrova"),
            &Value::Null
        ]
    );
    // The log still verifies: robots' events are chained and projected like any other.
    env.ok(&["verify"]);
}

#[test]
fn rules_given_by_flag_or_environment_are_used_and_must_exist() {
    let env = Env::new();
    let elsewhere = tempfile::tempdir().unwrap();
    std::fs::write(elsewhere.path().join("intake.toml"), ROUND_ROBIN_RULES).unwrap();
    let dir = elsewhere.path().to_str().unwrap();
    env.ok(&[
        "--rules", dir, "lead", "create", "--name", "Ivan", "--source", "web_form",
    ]);
    let out = env
        .cmd()
        .env("LEADFLOW_RULES", dir)
        .args(["lead", "create", "--name", "Anna", "--source", "web_form"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        env.log_types()
            .iter()
            .filter(|t| *t == "lead.assigned")
            .count(),
        2
    );
    env.refused_quietly(
        &[
            "--rules",
            "no-such-folder",
            "lead",
            "create",
            "--name",
            "Oleg",
        ],
        2,
        "no rule folder at no-such-folder",
    );
}

#[test]
fn a_broken_rule_file_stops_every_appending_command_with_its_location() {
    let env = Env::with_rules("intake.toml", ROUND_ROBIN_RULES);
    env.ok(&["lead", "create", "--name", "Ivan", "--source", "web_form"]);
    env.write_rules(
        "qualification.toml",
        "[[rules]]\nid = \"q\"\ntrigger = { on = \"stage_entered\", entity = \"lead\", stage = \"in_wrok\" }\n\n  [[rules.robots]]\n  robot = \"schedule_deadline\"\n  name = \"qualification\"\n  after = \"2 hours\"\n",
    );
    let needles = [
        "the rule set has 2 errors",
        "qualification.toml:3:60: rule 'q': unknown stage 'in_wrok' in any lead pipeline",
        "qualification.toml:8:11: rule 'q': robot 'schedule_deadline': bad duration '2 hours'",
    ];
    let csv = env.path().join("leads.csv");
    std::fs::write(&csv, "name,phone\nOlga,+7 912 000-00-03\n").unwrap();
    for args in [
        &["lead", "create", "--name", "Anna"][..],
        &["lead", "update", "1", "--comment", "call later"],
        &["lead", "move", "1", "in_work"],
        &["lead", "assign", "1", "petrova"],
        &["deal", "create", "--title", "Countertop"],
        &["contact", "create", "--name", "Anna"],
        &["company", "create", "--name", "Stone LLC"],
        &[
            "task",
            "create",
            "--title",
            "Call",
            "--assignee",
            "ivanov",
            "--due",
            "+1h",
        ],
        &["import", csv.to_str().unwrap()],
        &["tick"],
    ] {
        let err = env.refused_quietly(args, 2, needles[0]);
        for n in &needles[1..] {
            assert!(err.contains(n), "{args:?}: expected {n:?} in {err:?}");
        }
    }
    // Reading still works.
    env.ok(&["lead", "show", "1"]);
}

#[test]
fn tick_fires_a_deadline_due_at_now() {
    let env = Env::with_rules("call-back.toml", DEADLINE);
    lead(&env, "Ivan");
    let before = env.log_types();
    assert_eq!(
        before[before.len() - 2..],
        ["lead.assigned", "deadline.scheduled"]
    );
    // A minute early: nothing.
    let out = env.ok(&["tick", "--now", "2026-03-02T10:59:00Z"]);
    assert_eq!(
        out.trim(),
        "tick at 2026-03-02 13:59 MSK: 0 timers fired, 0 events processed, 0 rules fired, 0 incidents, 0 escalations; next due 2026-03-02 14:00 MSK"
    );
    assert_eq!(env.log_types(), before);
    // Due: the deadline elapses and the missed-deadline rule runs.
    let v: Value =
        serde_json::from_str(&env.ok(&["--json", "tick", "--now", "2026-03-02T11:00:00Z"]))
            .unwrap();
    assert_eq!(v["now"], "2026-03-02T11:00:00Z");
    assert_eq!(v["timers"], 1, "{v}");
    assert_eq!(v["fired"], 1, "{v}");
    assert_eq!(v["incidents"], 1, "{v}");
    assert_eq!(v["escalations"], 1, "{v}");
    assert_eq!(v["next_due"], Value::Null);
    let after = env.log_types();
    assert_eq!(
        after[before.len()..],
        [
            "deadline.elapsed",
            "notification.queued",
            "incident.recorded",
            "notification.queued",
            "escalation.recorded"
        ]
    );
    // Nothing fires twice.
    let v: Value =
        serde_json::from_str(&env.ok(&["--json", "tick", "--now", "2026-03-03T11:00:00Z"]))
            .unwrap();
    assert_eq!(v["timers"], 0, "{v}");
    assert_eq!(env.log_types(), after);
    env.refused_quietly(&["tick", "--now", "tomorrow"], 2, "bad time 'tomorrow'");
}

#[test]
fn inbox_shows_an_employees_notifications_newest_first() {
    let env = Env::with_rules("call-back.toml", DEADLINE);
    lead(&env, "Ivan");
    lead(&env, "Anna");
    lead(&env, "Oleg");
    lead(&env, "Maria");
    assert_eq!(
        env.ok(&["inbox", "ivanov"]).trim(),
        "ivanov's inbox is empty"
    );
    env.ok(&["tick", "--now", "2026-03-02T11:00:00Z"]);
    // Round robin over ivanov, petrova and sidorov: Ivan and Maria went to ivanov.
    let out = env.ok(&["inbox", "ivanov"]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 3, "{out}");
    assert!(lines[0].starts_with("#   !  READ  AT"), "{out}");
    assert!(
        lines[1].ends_with("  !  new   2026-03-02 14:00 MSK  lead-4  call Maria back"),
        "{out}"
    );
    assert!(
        lines[2].ends_with("  !  new   2026-03-02 14:00 MSK  lead-1  call Ivan back"),
        "{out}"
    );
    let json = json_lines(&env.ok(&["--json", "inbox", "ivanov", "--limit", "1"]));
    assert_eq!(json.len(), 1);
    assert_eq!(json[0]["text"], "call Maria back");
    assert_eq!(json[0]["priority"], "high");
    assert_eq!(json[0]["stream"], "lead-4");
    assert_eq!(json[0]["rule"], "call-back-missed");
    assert_eq!(json[0]["at"], "2026-03-02T11:00:00.000000Z");
    // The manager got the escalations.
    assert_eq!(
        json_lines(&env.ok(&["--json", "inbox", "smirnova"])).len(),
        4
    );
    env.refused_quietly(
        &["inbox", "nobody"],
        1,
        "unknown employee 'nobody'; the configuration lists: admin, ivanov",
    );
    env.refused_quietly(&["inbox", "ivanov", "--limit", "x"], 2, "invalid value 'x'");
}

#[test]
fn journal_filters_incidents_and_escalations_and_prints_csv_and_json() {
    let env = Env::with_rules("call-back.toml", DEADLINE);
    lead(&env, "Ivan");
    lead(&env, "Anna");
    env.ok(&["tick", "--now", "2026-03-02T11:00:00Z"]);
    let csv = env.ok(&["journal", "--format", "csv"]);
    let mut lines = csv.lines();
    assert_eq!(
        lines.next().unwrap(),
        "record,position,at,employee,team,kind,rule,stream,manager,count,window,text"
    );
    let rows: Vec<&str> = lines.collect();
    assert_eq!(rows.len(), 4, "{csv}");
    assert!(
        rows[0].starts_with("incident,"),
        "incidents and escalations in log order: {csv}"
    );
    assert!(
        rows[0].ends_with(
            ",2026-03-02T11:00:00.000000Z,ivanov,first_line,missed_call_back,call-back-missed,lead-1,,,,Ivan was not called back"
        ),
        "{csv}"
    );
    assert!(
        rows[1].contains(
            ",2026-03-02T11:00:00.000000Z,ivanov,first_line,missed_call_back,call-back-missed,lead-1,smirnova,1,"
        ),
        "{csv}"
    );
    assert!(rows[1].starts_with("escalation,"), "{csv}");

    let json = |args: &[&str]| {
        let mut a = vec!["journal", "--format", "json"];
        a.extend_from_slice(args);
        json_lines(&env.ok(&a))
    };
    let all = json(&[]);
    assert_eq!(all.len(), 4);
    let keys: Vec<&String> = all[0].as_object().unwrap().keys().collect();
    assert_eq!(keys.len(), 12);
    assert_eq!(all[0]["record"], "incident");
    assert_eq!(all[0]["employee"], "ivanov");
    assert_eq!(all[1]["record"], "escalation");
    assert_eq!(all[1]["manager"], "smirnova");
    assert_eq!(all[1]["count"], 1);
    // --json is --format json.
    assert_eq!(json_lines(&env.ok(&["--json", "journal"])), all);

    let count = |args: &[&str]| json(args).len();
    assert_eq!(count(&["--employee", "petrova"]), 2);
    assert_eq!(count(&["--employee", "petrova", "--incidents"]), 1);
    assert_eq!(count(&["--escalations"]), 2);
    assert_eq!(count(&["--incidents", "--escalations"]), 4);
    assert_eq!(count(&["--team", "first_line"]), 4);
    assert_eq!(count(&["--team", "goods"]), 0);
    assert_eq!(count(&["--team", "goods", "--employee", "ivanov"]), 0);
    assert_eq!(count(&["--kind", "missed_call_back"]), 4);
    assert_eq!(count(&["--kind", "other"]), 0);
    assert_eq!(count(&["--rule", "call-back-missed"]), 4);
    assert_eq!(count(&["--rule", "call-back"]), 0);
    assert_eq!(count(&["--since", "2026-03-02T11:00:00Z"]), 4);
    assert_eq!(count(&["--since", "2026-03-02 14:01"]), 0); // Moscow: 11:01 UTC
    assert_eq!(count(&["--until", "2026-03-02T11:00:00Z"]), 0);
    assert_eq!(count(&["--until", "2026-03-03"]), 4);

    let table = env.ok(&["journal", "--employee", "ivanov"]);
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 3, "{table}");
    assert!(
        lines[0].starts_with(
            "RECORD      POS  AT                    EMPLOYEE  TEAM        KIND              RULE"
        ),
        "{table}"
    );
    assert!(lines[1].starts_with("incident    "), "{table}");
    assert_eq!(
        env.ok(&["journal", "--kind", "other"]).trim(),
        "the journal has no matching records"
    );

    env.refused_quietly(
        &["journal", "--format", "xml"],
        2,
        "invalid value 'xml' for '--format <FORMAT>'",
    );
    env.refused_quietly(
        &["journal", "--since", "last week"],
        2,
        "--since: bad time 'last week'",
    );
    env.refused_quietly(
        &["journal", "--until", "soon"],
        2,
        "--until: bad time 'soon'",
    );
    env.refused_quietly(
        &["journal", "--employee", "nobody"],
        1,
        "unknown employee 'nobody' in --employee",
    );
    env.refused_quietly(
        &["journal", "--team", "nobody"],
        1,
        "unknown team 'nobody' in --team; the configuration lists: first_line, goods",
    );
}

/// Kills the child if the test fails before it exits.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        if self.0.try_wait().ok().flatten().is_none() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

#[test]
fn run_fires_a_deadline_on_the_wall_clock_and_stops_on_sigterm() {
    let env = Env::with_rules(
        "call-back.toml",
        &DEADLINE.replace("after = \"2h\"", "after = \"1s\""),
    );
    env.refused_quietly(
        &["run"],
        2,
        "`run` follows the wall clock; --now (LEADFLOW_NOW) is for `tick` and commands",
    );
    let mut run = env.cmd();
    run.env_remove("LEADFLOW_NOW")
        .env("RUST_LOG", "info")
        .arg("run")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = Running(run.spawn().unwrap());
    // A lead on the wall clock: its deadline is a second later, and only `run` can fire it.
    let out = env
        .cmd()
        .env_remove("LEADFLOW_NOW")
        .args(["lead", "create", "--name", "Ivan", "--source", "web_form"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let start = Instant::now();
    loop {
        if !json_lines(&env.ok(&["--json", "inbox", "ivanov"])).is_empty() {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "run did not fire the deadline"
        );
        assert!(child.0.try_wait().unwrap().is_none(), "run exited early");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(env.log_types().contains(&"deadline.elapsed".to_owned()));
    let pid = child.0.id().to_string();
    let kill = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    assert!(kill.success());
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.0.try_wait().unwrap() {
            break s;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "run did not stop on SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut log = String::new();
    std::io::Read::read_to_string(child.0.stderr.as_mut().unwrap(), &mut log).unwrap();
    assert!(status.success(), "{status:?}: {log}");
    assert!(log.contains("leadflow run: started"), "{log}");
    assert!(log.contains("leadflow run: stopping"), "{log}");
    assert!(log.contains("SIGTERM"), "{log}");
    // Stopped between transactions: the log is whole.
    env.ok(&["verify"]);
}

const SCENARIO: &str = r#"
name = "call back"
start = "2026-03-02T10:00:00+03:00"

[[steps]]
do = "lead.create"
args = { title = "Countertop", phones = ["+7 912 000-00-01"], source = "web_form" }
expect = ["lead.created", { type = "deadline.scheduled", actor = "robot:call-back" }]

[[steps]]
advance = "2h"
expect = [{ stream = "lead-1", type = "deadline.elapsed" }]
"#;

#[test]
fn simulate_exits_0_when_a_scenario_holds_and_1_with_each_mismatch() {
    let env = Env::new();
    let dir = env.path().join("scenario");
    std::fs::create_dir_all(dir.join("rules")).unwrap();
    std::fs::write(
        dir.join("rules").join("call-back.toml"),
        r#"
[[rules]]
id = "call-back"
trigger = { on = "created", entity = "lead" }

  [[rules.robots]]
  robot = "schedule_deadline"
  name = "call_back"
  after = "2h"
"#,
    )
    .unwrap();
    std::fs::write(dir.join("scenario.toml"), SCENARIO).unwrap();
    let before = env.log().len();
    assert_eq!(
        env.ok(&["simulate", "scenario/scenario.toml"]).trim(),
        "call back: passed: 2 steps, 4 events, virtual clock at 2026-03-02 12:00 MSK (configuration: the built-in default configuration)"
    );
    // A folder means its scenario.toml; the folder's own database is not touched.
    env.ok(&["simulate", "scenario"]);
    assert_eq!(env.log().len(), before);

    std::fs::write(
        dir.join("wrong.toml"),
        SCENARIO.replace("deadline.elapsed", "deadline.cancelled"),
    )
    .unwrap();
    let out = env.run(&["simulate", "scenario/wrong.toml"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let stdout = String::from_utf8(out.stdout.clone()).unwrap();
    assert!(
        stdout.starts_with(
            "step 2 (line 10): expected event #1 (deadline.cancelled in lead-1), but none matched"
        ),
        "{stdout}"
    );
    assert!(stderr(&out).contains("call back: 1 mismatch in scenario/wrong.toml"));
    let out = env.run(&["--json", "simulate", "scenario/wrong.toml"]);
    assert_eq!(out.status.code(), Some(1));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["passed"], false);
    assert_eq!(v["mismatches"][0]["step"], 2);

    std::fs::write(
        dir.join("broken.toml"),
        "name = \"x\"\n[[steps]]\nfoo = 1\n",
    )
    .unwrap();
    env.refused_quietly(
        &["simulate", "scenario/broken.toml"],
        2,
        "broken.toml:3:1: unknown field `foo`",
    );
    env.refused_quietly(
        &["simulate", "scenario/none.toml"],
        2,
        "cannot read scenario/none.toml",
    );
}
