//! The audit through the real binary: `history` lists a stream's events in words, in the
//! calendar's zone, with the rule and rule-set hash of each robot's event and what is still
//! pending; `explain` walks an event's causes back to the command (through timers) with each
//! rule's condition re-evaluated and the values it read; `show --as-of` and
//! `replay --until --into` give the state as of a position or time (the copy verifies, its
//! head is the position asked for, the live database is untouched); every error path names
//! the problem and appends nothing. On small hand-made histories and on the demo's.

use leadflow_testkit::cli::*;
use serde_json::Value;
use std::path::Path;

/// A web lead is assigned round robin (a rule with a condition); taking it in work sets a
/// deadline and a call task; the deadline's elapsing notifies the responsible.
const RULES: &str = r#"
[[rules]]
id = "assign-web"
trigger = { on = "created", entity = "lead" }
condition = 'lead.source == "web_form" && !has(lead.responsible)'

  [[rules.robots]]
  robot = "assign"
  strategy = "round_robin"
  team = "first_line"

[[rules]]
id = "qualify"
trigger = { on = "stage_entered", entity = "lead", stage = "in_work" }

  [[rules.robots]]
  robot = "schedule_deadline"
  name = "qualification"
  after = "2h"

  [[rules.robots]]
  robot = "create_task"
  kind = "call"
  title = "Call {lead.title}"
  due = "1d"

[[rules]]
id = "nudge"
trigger = { on = "deadline_elapsed", name = "qualification" }
condition = 'lead.stage == "in_work" && responsible.missed_deadlines == 0'

  [[rules.robots]]
  robot = "notify"
  to = "responsible"
  text = "qualify {lead.title}"
"#;

/// The hand-made history: lead-1 created at 12:00 MSK (09:00Z, by petrova), assigned by
/// `assign-web`, moved to in_work at 13:00 MSK by ivanov (deadline at 15:00, a task), and the
/// deadline fired by `tick` at 16:00 MSK.
fn history() -> Env {
    let env = Env::with_rules("flow.toml", RULES);
    env.ok(&[
        "--as",
        "petrova",
        "lead",
        "create",
        "--name",
        "Olga",
        "--phone",
        "8 912 345-67-89",
        "--source",
        "web_form",
    ]);
    env.ok(&[
        "--as",
        "ivanov",
        "--now",
        "2026-03-02 13:00",
        "lead",
        "move",
        "1",
        "in_work",
    ]);
    env.ok(&["--now", "2026-03-02 16:00", "tick"]);
    env
}

/// The first event of `ty` in the log (optionally with this actor).
fn first<'a>(log: &'a [Value], ty: &str) -> &'a Value {
    log.iter()
        .find(|e| e["type"] == ty)
        .unwrap_or_else(|| panic!("no {ty} in {log:#?}"))
}

fn pos(e: &Value) -> i64 {
    e["position"].as_i64().unwrap()
}

fn json(env: &Env, args: &[&str]) -> Value {
    let mut a = vec!["--json"];
    a.extend_from_slice(args);
    serde_json::from_str(&env.ok(&a)).unwrap()
}

#[test]
fn history_lists_a_leads_events_in_words_in_the_calendars_zone_with_rule_and_rule_set() {
    let env = history();
    let log = env.log();
    let hash = first(&log, "ruleset.activated")["payload"]["hash"]
        .as_str()
        .unwrap()
        .to_owned();
    let text = env.ok(&["history", "lead", "1"]);
    let line = |needle: &str| -> &str {
        text.lines()
            .find(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("no line with {needle:?} in:\n{text}"))
    };
    assert!(text.starts_with("lead-1: "), "{text}");
    assert!(text.contains("Europe/Moscow"), "{text}");
    let created = line("created «Olga» from web_form in New");
    assert!(created.contains("2026-03-02 12:00 MSK"), "{created}");
    assert!(created.contains("employee:petrova"), "{created}");
    let assigned = line("assigned to ");
    assert!(assigned.contains("robot:assign-web"), "{assigned}");
    assert!(assigned.contains(&hash[..12]), "{assigned}");
    let moved = line("moved from New to Taken in work");
    assert!(moved.contains("2026-03-02 13:00 MSK"), "{moved}");
    assert!(moved.contains("employee:ivanov"), "{moved}");
    let deadline = line("deadline «qualification» set for 2026-03-02 15:00 MSK");
    assert!(deadline.contains("robot:qualify"), "{deadline}");
    line("deadline «qualification» (set at position");
    line("notified ");
    // The elapsed deadline is gone; the task is still to be done.
    let pending = &text[text.find("pending:").expect("a pending section")..];
    assert!(pending.contains("task-1 «Call Olga»"), "{pending}");
    assert!(!pending.contains("deadline «qualification»"), "{pending}");

    let v = json(&env, &["history", "lead", "1"]);
    assert_eq!(v["stream"], "lead-1");
    let events = v["events"].as_array().unwrap();
    let lead_events: Vec<&Value> = log.iter().filter(|e| e["stream"] == "lead-1").collect();
    assert_eq!(events.len(), lead_events.len());
    for (row, e) in events.iter().zip(&lead_events) {
        assert_eq!(row["position"], e["position"]);
        assert_eq!(row["actor"], e["actor"]);
        let robot = e["actor"].as_str().unwrap().strip_prefix("robot:");
        assert_eq!(row["rule"].as_str(), robot, "{row}");
        // The rule set in force for a robot's event; nothing for a person's.
        if robot.is_some() {
            assert_eq!(row["ruleset"], hash.as_str(), "{row}");
        } else {
            assert!(row["ruleset"].is_null(), "{row}");
        }
    }
    assert_eq!(v["pending"]["tasks"].as_array().unwrap().len(), 1, "{v}");
    assert_eq!(v["pending"]["timers"].as_array().unwrap().len(), 0, "{v}");
}

#[test]
fn history_before_the_deadline_shows_it_pending() {
    let env = Env::with_rules("flow.toml", RULES);
    env.ok(&[
        "lead",
        "create",
        "--name",
        "Olga",
        "--phone",
        "8 912 345-67-89",
        "--source",
        "web_form",
    ]);
    env.ok(&["lead", "move", "1", "in_work"]);
    let text = env.ok(&["history", "lead", "1"]);
    let pending = &text[text.find("pending:").expect("a pending section")..];
    assert!(
        pending.contains("deadline «qualification» due 2026-03-02 14:00 MSK"),
        "{pending}"
    );
    assert!(pending.contains("by robot:qualify"), "{pending}");
}

/// A rule set activated later is the one in force for the robots' events after it.
#[test]
fn each_robot_event_names_the_rule_set_in_force_when_it_was_appended() {
    let env = Env::with_rules("flow.toml", RULES);
    env.ok(&["lead", "create", "--name", "Olga", "--source", "web_form"]);
    // The same rules with one more (a comment changes nothing; a new rule changes the hash).
    env.write_rules(
        "more.toml",
        "[[rules]]\nid = \"noop\"\ntrigger = { on = \"created\", entity = \"deal\" }\n\n  [[rules.robots]]\n  robot = \"record_incident\"\n  kind = \"done\"\n",
    );
    env.ok(&["lead", "create", "--name", "Anna", "--source", "web_form"]);
    let log = env.log();
    let hashes: Vec<&str> = log
        .iter()
        .filter(|e| e["type"] == "ruleset.activated")
        .map(|e| e["payload"]["hash"].as_str().unwrap())
        .collect();
    assert_eq!(hashes.len(), 2, "{log:#?}");
    assert_ne!(hashes[0], hashes[1]);
    for (lead, hash) in [("1", hashes[0]), ("2", hashes[1])] {
        let v = json(&env, &["history", "lead", lead]);
        let assigned = v["events"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["type"] == "lead.assigned")
            .unwrap();
        assert_eq!(assigned["ruleset"], hash, "lead-{lead}: {v}");
    }
}

#[test]
fn explain_of_a_robots_event_walks_back_to_the_command_with_the_condition_and_its_values() {
    let env = history();
    let log = env.log();
    let hash = first(&log, "ruleset.activated")["payload"]["hash"]
        .as_str()
        .unwrap()
        .to_owned();
    let created = pos(first(&log, "lead.created"));
    let assigned = pos(first(&log, "lead.assigned"));
    let v = json(&env, &["explain", &assigned.to_string()]);
    let chain = v["chain"].as_array().unwrap();
    assert_eq!(chain.len(), 2, "{v:#}");
    assert_eq!(chain[0]["position"], assigned);
    assert_eq!(chain[0]["step"], "robot");
    let rule = &chain[0]["rule"];
    assert_eq!(rule["id"], "assign-web");
    assert_eq!(rule["ruleset"], hash.as_str());
    // The file as the activation stored it.
    assert!(
        rule["file"].as_str().unwrap().ends_with("/rules/flow.toml"),
        "{rule}"
    );
    assert_eq!(rule["trigger"], created);
    let cond = &rule["condition"];
    assert_eq!(
        cond["source"],
        r#"lead.source == "web_form" && !has(lead.responsible)"#
    );
    assert_eq!(cond["result"], true, "{cond}");
    assert_eq!(cond["values"]["lead.source"], "web_form", "{cond}");
    assert_eq!(
        cond["absent"],
        serde_json::json!(["lead.responsible"]),
        "{cond}"
    );
    assert_eq!(cond["state_at"], created);
    assert_eq!(chain[1]["position"], created);
    assert_eq!(chain[1]["step"], "command");
    assert_eq!(v["started_by"]["kind"], "person");
    assert_eq!(v["started_by"]["actor"], "employee:petrova");
    assert_eq!(v["started_by"]["complete"], true);

    let text = env.ok(&["explain", &assigned.to_string()]);
    for needle in [
        "lead-1 v2 lead.assigned: assigned to ",
        &format!("/rules/flow.toml) of rule set {}", &hash[..12]),
        "rule assign-web (",
        &format!("triggered by position {created}"),
        r#"condition: lead.source == "web_form" && !has(lead.responsible) → true"#,
        r#"lead.source = "web_form""#,
        "lead.responsible is absent",
        "2026-03-02 12:00 MSK",
        &format!("started by: person employee:petrova at position {created}"),
    ] {
        assert!(text.contains(needle), "no {needle:?} in:\n{text}");
    }
}

#[test]
fn explain_walks_through_a_timer_to_the_person_who_set_it_off() {
    let env = history();
    let log = env.log();
    let notified = pos(first(&log, "notification.queued"));
    let moved = pos(first(&log, "lead.stage_changed"));
    let v = json(&env, &["explain", &notified.to_string()]);
    let chain = v["chain"].as_array().unwrap();
    let steps: Vec<(&str, &str)> = chain
        .iter()
        .map(|s| (s["type"].as_str().unwrap(), s["step"].as_str().unwrap()))
        .collect();
    assert_eq!(
        steps,
        [
            ("notification.queued", "robot"),
            ("deadline.elapsed", "timer"),
            ("deadline.scheduled", "robot"),
            ("lead.stage_changed", "command"),
        ],
        "{v:#}"
    );
    // The nudge's condition as of the elapsed deadline: in work, no missed deadlines yet.
    let cond = &chain[0]["rule"]["condition"];
    assert_eq!(cond["result"], true, "{cond}");
    assert_eq!(cond["values"]["lead.stage"], "in_work", "{cond}");
    assert_eq!(cond["values"]["responsible.missed_deadlines"], 0, "{cond}");
    // A rule without a condition says so.
    assert!(chain[2]["rule"]["condition"].is_null(), "{v:#}");
    assert_eq!(chain[2]["rule"]["id"], "qualify");
    assert_eq!(v["started_by"]["kind"], "person");
    assert_eq!(v["started_by"]["actor"], "employee:ivanov");
    assert_eq!(v["started_by"]["position"], moved);
    let text = env.ok(&["explain", &notified.to_string()]);
    assert!(text.contains("a timer fired (set at position"), "{text}");
    assert!(text.contains("no condition"), "{text}");
    assert!(
        text.contains(&format!(
            "started by: person employee:ivanov at position {moved}"
        )),
        "{text}"
    );
}

#[test]
fn a_commands_own_event_is_its_own_start() {
    let env = history();
    let v = json(&env, &["explain", "1"]);
    assert_eq!(v["chain"].as_array().unwrap().len(), 1, "{v:#}");
    assert_eq!(v["chain"][0]["step"], "command");
    assert_eq!(v["started_by"]["kind"], "person");
}

#[test]
fn lead_show_as_of_before_a_move_shows_the_old_stage() {
    let env = history();
    let log = env.log();
    let moved = pos(first(&log, "lead.stage_changed"));
    let now = json(&env, &["lead", "show", "1"]);
    assert_eq!(now["state"]["stage"], "in_work");
    assert!(now.get("as_of").is_none());

    let before = json(
        &env,
        &["lead", "show", "1", "--as-of", &(moved - 1).to_string()],
    );
    assert_eq!(before["as_of"], moved - 1);
    assert_eq!(before["state"]["stage"], "new", "{before:#}");
    assert!(before["state"]["responsible"].is_string(), "{before:#}");
    assert_eq!(before["timers"].as_array().unwrap().len(), 0, "{before:#}");
    assert_eq!(before["open_tasks"].as_array().unwrap().len(), 0);

    // By time: at 12:30 MSK the lead was new; at 14:00 in work with its deadline pending.
    let at_1230 = json(&env, &["lead", "show", "1", "--as-of", "2026-03-02 12:30"]);
    assert_eq!(at_1230["state"]["stage"], "new", "{at_1230:#}");
    assert_eq!(at_1230["as_of"], moved - 1);
    let at_1400 = json(&env, &["lead", "show", "1", "--as-of", "2026-03-02 14:00"]);
    assert_eq!(at_1400["state"]["stage"], "in_work", "{at_1400:#}");
    let timers = at_1400["timers"].as_array().unwrap();
    assert_eq!(timers.len(), 1, "{at_1400:#}");
    assert_eq!(timers[0]["what"], "deadline");
    assert_eq!(at_1400["open_tasks"].as_array().unwrap().len(), 1);
    // Durations count from then: an hour in work, the deadline an hour away.
    let text = env.ok(&["lead", "show", "1", "--as-of", "2026-03-02 14:00"]);
    let in_work = text
        .lines()
        .find(|l| l.starts_with("in_work "))
        .unwrap_or_else(|| panic!("no in_work visit in:\n{text}"));
    assert!(in_work.ends_with("1h 0m"), "{in_work}");
    let deadline = text
        .lines()
        .find(|l| l.contains("qualification"))
        .unwrap_or_else(|| panic!("no deadline in:\n{text}"));
    assert!(deadline.contains(" 1h 0m "), "{deadline}");

    let text = env.ok(&["lead", "show", "1", "--as-of", &(moved - 1).to_string()]);
    assert!(
        text.starts_with(&format!("as of position {}", moved - 1)),
        "{text}"
    );
    assert!(text.contains("lead / new"), "{text}");
    // The live database was only read.
    assert_eq!(env.log(), log);
    assert_eq!(json(&env, &["lead", "show", "1"]), now);
}

#[test]
fn replay_until_into_writes_a_database_that_verifies_with_the_asked_head() {
    let env = history();
    let log = env.log();
    let moved = pos(first(&log, "lead.stage_changed"));
    let copy = env.path().join("then.db");
    let out = json(
        &env,
        &[
            "replay",
            "--until",
            &moved.to_string(),
            "--into",
            copy.to_str().unwrap(),
        ],
    );
    assert_eq!(out["head"], moved, "{out}");
    let in_copy = |args: &[&str]| -> Value {
        let mut a = vec!["--db", copy.to_str().unwrap(), "--json"];
        a.extend_from_slice(args);
        serde_json::from_str(&env.ok(&a)).unwrap()
    };
    let verified = in_copy(&["verify"]);
    let hash = log[moved as usize - 1]["hash"].as_str().unwrap();
    assert_eq!(verified["head"], format!("{moved}:{hash}"), "{verified}");
    assert_eq!(out["hash"], hash);
    let copied = json_lines(&env.ok(&["--db", copy.to_str().unwrap(), "--json", "events"]));
    assert_eq!(copied, log[..moved as usize].to_vec());
    assert_eq!(in_copy(&["lead", "show", "1"])["state"]["stage"], "in_work");
    // The live database is as it was.
    assert_eq!(env.log(), log);
    env.ok(&["verify"]);

    // By time, before the move: the copy ends where the log stood at 12:30 MSK.
    let early = env.path().join("early.db");
    env.ok(&[
        "replay",
        "--until",
        "2026-03-02 12:30",
        "--into",
        early.to_str().unwrap(),
    ]);
    let early_log = json_lines(&env.ok(&["--db", early.to_str().unwrap(), "--json", "events"]));
    assert_eq!(early_log, log[..moved as usize - 1].to_vec());
    env.ok(&["--db", early.to_str().unwrap(), "verify"]);

    // Without --until, the whole log.
    let all = env.path().join("all.db");
    let out = json(&env, &["replay", "--into", all.to_str().unwrap()]);
    assert_eq!(out["head"], log.len());
}

/// Runs a command that must fail with `code` saying each needle, appending nothing.
fn refused(env: &Env, args: &[&str], code: i32, needles: &[&str]) {
    env.refused_saying(args, code, needles);
}

#[test]
fn every_error_names_the_problem_and_appends_nothing() {
    let env = history();
    let head = env.log().len().to_string();
    let past = format!("position 999 is past the head of the log (position {head})");
    refused(
        &env,
        &["explain", "999"],
        1,
        &[&format!(
            "no event at position 999: the log ends at position {head}"
        )],
    );
    refused(&env, &["explain", "0"], 2, &["positions start at 1"]);
    refused(&env, &["explain", "-3"], 2, &["positions start at 1"]);
    refused(&env, &["explain", "seven"], 2, &["invalid value 'seven'"]);
    refused(&env, &["lead", "show", "1", "--as-of", "999"], 1, &[&past]);
    refused(
        &env,
        &["lead", "show", "1", "--as-of", "0"],
        2,
        &["positions start at 1"],
    );
    refused(
        &env,
        &["lead", "show", "1", "--as-of", "2026-03-01 12:00"],
        1,
        &[
            "--as-of 2026-03-01 12:00 MSK: that is before the log's start",
            "its first event occurred at 2026-03-02 12:00 MSK",
        ],
    );
    refused(
        &env,
        &["lead", "show", "1", "--as-of", "yesterday-ish"],
        2,
        &["--as-of 'yesterday-ish'"],
    );
    refused(
        &env,
        &["lead", "show", "2", "--as-of", "1"],
        1,
        &["lead-2 does not exist"],
    );
    refused(
        &env,
        &["deal", "show", "1", "--as-of", "1"],
        1,
        &["deal-1 does not exist"],
    );
    refused(&env, &["history", "lead", "9"], 1, &["lead-9"]);
    refused(
        &env,
        &["history", "task", "1"],
        2,
        &["invalid value 'task'"],
    );
    refused(
        &env,
        &["history", "lead", "x"],
        2,
        &["'x' is not a lead id; write 42 or lead-42"],
    );
    refused(
        &env,
        &["history", "lead", "deal-1"],
        2,
        &["'deal-1' is not a lead id"],
    );
    assert_eq!(
        env.ok(&["history", "lead", "lead-1"]),
        env.ok(&["history", "lead", "1"])
    );

    // replay --into: an existing file is never replaced; nothing is left by a refused copy.
    let existing = env.path().join("kept.txt");
    std::fs::write(&existing, "keep me").unwrap();
    refused(
        &env,
        &[
            "replay",
            "--until",
            "2",
            "--into",
            existing.to_str().unwrap(),
        ],
        1,
        &["already exists", "kept.txt"],
    );
    assert_eq!(std::fs::read_to_string(&existing).unwrap(), "keep me");
    refused(
        &env,
        &["replay", "--into", env.db().to_str().unwrap()],
        1,
        &["leadflow.db is the live database"],
    );
    let fresh = env.path().join("fresh.db");
    refused(
        &env,
        &[
            "replay",
            "--until",
            "999",
            "--into",
            fresh.to_str().unwrap(),
        ],
        1,
        &[&format!("--until 999: {past}")],
    );
    refused(
        &env,
        &[
            "replay",
            "--until",
            "2020-01-01 00:00",
            "--into",
            fresh.to_str().unwrap(),
        ],
        1,
        &["before the log's start"],
    );
    assert!(!fresh.exists());
    refused(&env, &["replay", "--until", "2"], 2, &["--into"]);
    let nowhere = env.path().join("no/such/folder/x.db");
    refused(
        &env,
        &["replay", "--into", nowhere.to_str().unwrap()],
        2,
        &["x.db"],
    );
}

#[test]
fn a_stream_created_after_the_position_did_not_exist_then() {
    let env = history();
    env.ok(&[
        "--now",
        "2026-03-02 17:00",
        "lead",
        "create",
        "--name",
        "Late",
    ]);
    let created = pos(env
        .log()
        .iter()
        .rfind(|e| e["type"] == "lead.created")
        .unwrap());
    refused(
        &env,
        &["lead", "show", "2", "--as-of", "2026-03-02 16:30"],
        1,
        &[&format!(
            "lead-2 did not exist yet at position {}: it was created at position {created}",
            created - 1
        )],
    );
}

#[test]
fn an_empty_log_has_no_time_to_be_as_of() {
    let env = Env::new();
    let copy = env.path().join("x.db");
    refused(
        &env,
        &["replay", "--into", copy.to_str().unwrap()],
        1,
        &["the log is empty"],
    );
    assert!(!copy.exists());
    refused(
        &env,
        &["explain", "1"],
        1,
        &["no event at position 1: the log ends at position 0"],
    );
}

/// The demo's folder (its configuration, rules and database), made once per test.
fn demo() -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("demo");
    let out = leadflow_in(dir.path())
        .args(["demo", target.to_str().unwrap(), "--leads", "40"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    (dir, target)
}

fn in_dir(dir: &Path, args: &[&str]) -> String {
    let out = leadflow_in(dir).args(args).output().unwrap();
    assert!(out.status.success(), "{args:?}: {}", stderr(&out));
    String::from_utf8(out.stdout).unwrap()
}

/// On the demo's week: every robot's event names a rule of the rule set in force, and
/// re-evaluating its rule's condition on the state as of its trigger gives true, as it did
/// when the rule fired; every chain ends at a person, an import, the API, a timer, a
/// schedule or leadflow itself (the demo's web form), never at a cut. A mid-week copy verifies.
#[test]
fn on_the_demos_history_every_robot_step_is_explained_by_a_condition_that_held() {
    let (_dir, demo) = demo();
    let log = json_lines(&in_dir(&demo, &["--json", "events"]));
    let hashes: Vec<&str> = log
        .iter()
        .filter(|e| e["type"] == "ruleset.activated")
        .map(|e| e["payload"]["hash"].as_str().unwrap())
        .collect();
    assert!(!hashes.is_empty());
    let robots: Vec<&Value> = log
        .iter()
        .filter(|e| e["actor"].as_str().unwrap().starts_with("robot:"))
        .collect();
    assert!(robots.len() > 100, "{}", robots.len());
    // A spread of them (the whole week's would take long), the last one included.
    let step = (robots.len() / 40).max(1);
    let mut conditions = 0;
    for e in robots.iter().step_by(step).chain(robots.last()) {
        let p = pos(e).to_string();
        let v: Value = serde_json::from_str(&in_dir(&demo, &["--json", "explain", &p])).unwrap();
        assert_eq!(v["started_by"]["complete"], true, "{v:#}");
        let kind = v["started_by"]["kind"].as_str().unwrap();
        assert!(
            ["person", "api", "import", "timer", "schedule", "system"].contains(&kind),
            "{p}: started by {kind}: {v:#}"
        );
        for s in v["chain"].as_array().unwrap() {
            if s["step"] != "robot" {
                continue;
            }
            let rule = &s["rule"];
            assert!(
                hashes.contains(&rule["ruleset"].as_str().unwrap()),
                "{rule}"
            );
            assert!(rule.get("note").is_none(), "{rule}");
            assert!(rule["file"].is_string(), "{rule}");
            if let Some(result) = rule["condition"].get("result") {
                conditions += 1;
                assert_eq!(result, true, "{p}: {rule:#}");
            }
        }
    }
    assert!(conditions > 5, "{conditions} conditions evaluated");

    let lead = robots
        .iter()
        .find(|e| e["stream"].as_str().unwrap().starts_with("lead-"))
        .unwrap()["stream"]
        .as_str()
        .unwrap()
        .strip_prefix("lead-")
        .unwrap()
        .to_owned();
    let h: Value =
        serde_json::from_str(&in_dir(&demo, &["--json", "history", "lead", &lead])).unwrap();
    for row in h["events"].as_array().unwrap() {
        if row["rule"].is_string() {
            assert!(hashes.contains(&row["ruleset"].as_str().unwrap()), "{row}");
        }
        assert!(!row["text"].as_str().unwrap().is_empty());
    }

    let mid = log.len() / 2;
    let copy = demo.join("mid.db");
    in_dir(
        &demo,
        &[
            "replay",
            "--until",
            &mid.to_string(),
            "--into",
            copy.to_str().unwrap(),
        ],
    );
    let v: Value = serde_json::from_str(&in_dir(
        &demo,
        &["--db", copy.to_str().unwrap(), "--json", "verify"],
    ))
    .unwrap();
    let hash = log[mid - 1]["hash"].as_str().unwrap();
    assert_eq!(v["head"], format!("{mid}:{hash}"), "{v}");
}

/// Robots put off by a rule's `delay` act on the condition checked when the rule fired: the
/// chain goes through the resumption (a timer) and the `robots.delayed` (whose step shows the
/// condition) to the command.
#[test]
fn explain_of_delayed_robots_shows_the_condition_checked_when_they_were_put_off() {
    let env = Env::with_rules(
        "later.toml",
        r#"
[[rules]]
id = "later"
trigger = { on = "created", entity = "lead" }
condition = 'size(lead.phones) > 0'
delay = "1h"

  [[rules.robots]]
  robot = "record_incident"
  kind = "follow_up"
  text = "call {lead.title} back"
"#,
    );
    env.create_lead("Olga");
    env.ok(&["--now", "2026-03-02 14:00", "tick"]);
    let log = env.log();
    let incident = pos(first(&log, "incident.recorded"));
    let v = json(&env, &["explain", &incident.to_string()]);
    let chain = v["chain"].as_array().unwrap();
    let steps: Vec<(&str, &str)> = chain
        .iter()
        .map(|s| (s["type"].as_str().unwrap(), s["step"].as_str().unwrap()))
        .collect();
    assert_eq!(
        steps,
        [
            ("incident.recorded", "robot"),
            ("robots.resumed", "timer"),
            ("robots.delayed", "robot"),
            ("lead.created", "command"),
        ],
        "{v:#}"
    );
    let resumed = &chain[0]["rule"]["condition"];
    assert!(resumed.get("result").is_none(), "{resumed}");
    assert!(
        resumed["note"]
            .as_str()
            .unwrap()
            .contains("checked when the rule first fired"),
        "{resumed}"
    );
    let delayed = &chain[2]["rule"]["condition"];
    assert_eq!(delayed["result"], true, "{delayed}");
    assert_eq!(
        delayed["values"]["lead.phones"],
        serde_json::json!(["+79123456789"]),
        "{delayed}"
    );
    assert_eq!(v["started_by"]["kind"], "person");
}

#[test]
fn contact_and_company_show_as_of_give_their_old_fields() {
    let env = Env::new();
    env.ok(&["contact", "create", "--name", "Olga Ivanova"]);
    env.ok(&["contact", "update", "1", "--name", "Olga Petrova"]);
    env.ok(&["company", "create", "--name", "Stone LLC"]);
    env.ok(&["company", "update", "1", "--name", "Stone & Co"]);
    let contact = json(&env, &["contact", "show", "1", "--as-of", "1"]);
    assert_eq!(contact["state"]["name"], "Olga Ivanova", "{contact:#}");
    assert_eq!(
        json(&env, &["contact", "show", "1"])["state"]["name"],
        "Olga Petrova"
    );
    let company = json(&env, &["company", "show", "1", "--as-of", "3"]);
    assert_eq!(company["state"]["name"], "Stone LLC", "{company:#}");
    let history = env.ok(&["history", "company", "1"]);
    assert!(history.contains("created «Stone LLC»"), "{history}");
    assert!(
        history.contains("changed: set name = Stone & Co"),
        "{history}"
    );
    refused(
        &env,
        &["company", "show", "1", "--as-of", "2"],
        1,
        &["company-1 did not exist yet at position 2: it was created at position 3"],
    );
}
