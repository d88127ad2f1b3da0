//! `backtest` and `rules coverage` through the real binary: backtesting the live rule set
//! reproduces the history exactly (a hand-made history and the demo's week, also with
//! `--as-recorded`); a changed candidate shows its added, removed and changed effects with
//! their rules, and an input it makes impossible as a divergence, not a crash; coverage counts
//! matches, false conditions, robot runs and dead rules; every error names the problem and
//! leaves the live database as it was.

use leadflow_testkit::cli::*;
use serde_json::Value;
use std::path::Path;

/// The live rules: web leads are assigned round robin; taking one in work sets a deadline and
/// a call task; the deadline's elapsing notifies the responsible.
const ASSIGN: &str = r#"
[[rules]]
id = "assign-web"
trigger = { on = "created", entity = "lead" }
condition = 'lead.source == "web_form" && !has(lead.responsible)'

  [[rules.robots]]
  robot = "assign"
  strategy = "round_robin"
  team = "first_line"
"#;

const QUALIFY: &str = r#"
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
condition = 'lead.stage == "in_work"'

  [[rules.robots]]
  robot = "notify"
  to = "responsible"
  text = "qualify {lead.title}"

[[rules]]
id = "won-deal"
trigger = { on = "won", entity = "deal" }

  [[rules.robots]]
  robot = "notify"
  to = "responsible"
  text = "well done"
"#;

/// lead-1 (web form) created at 12:00 MSK and assigned by `assign-web`, moved in work at 13:00
/// by its responsible (deadline, task), the deadline fired by `tick` at 16:00; lead-2 (by
/// phone: the condition says no) created at 16:30.
fn history() -> Env {
    let env = Env::with_rules("assign.toml", ASSIGN);
    env.write_rules("qualify.toml", QUALIFY);
    let responsible = web_lead(&env, env.cmd());
    env.ok(&[
        "--as",
        &responsible,
        "--now",
        "2026-03-02 13:00",
        "lead",
        "move",
        "1",
        "in_work",
    ]);
    env.ok(&["--now", "2026-03-02 16:00", "tick"]);
    env.ok(&[
        "--as",
        "petrova",
        "--now",
        "2026-03-02 16:30",
        "lead",
        "create",
        "--name",
        "Ivan",
        "--phone",
        "8 912 000-00-01",
        "--source",
        "call",
    ]);
    env
}

/// Creates lead-1 from the web form as petrova with `cmd` (which clock it runs on); its
/// responsible, whom `assign-web` chose.
fn web_lead(env: &Env, mut cmd: std::process::Command) -> String {
    let out = cmd
        .args([
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
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    env.log()
        .iter()
        .find(|e| e["type"] == "lead.assigned")
        .expect("assign-web assigned lead-1")["payload"]["to"]
        .as_str()
        .unwrap()
        .to_owned()
}

fn json(env: &Env, args: &[&str]) -> Value {
    let mut a = vec!["--json"];
    a.extend_from_slice(args);
    serde_json::from_str(&env.ok(&a)).unwrap()
}

/// A candidate folder `NAME/` in the environment with these files.
fn candidate(env: &Env, name: &str, files: &[(&str, &str)]) -> String {
    for (file, text) in files {
        env.write(&format!("{name}/{file}"), text);
    }
    env.path().join(name).to_str().unwrap().to_owned()
}

/// The changes of one subject as (change, type, rule).
fn changes(v: &Value, subject: &str) -> Vec<(String, String, String)> {
    v["differing"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["subject"] == subject)
        .flat_map(|s| s["changes"].as_array().unwrap().iter())
        .map(|c| {
            (
                c["change"].as_str().unwrap().to_owned(),
                c["type"].as_str().unwrap().to_owned(),
                c["rule"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

#[test]
fn backtesting_the_live_rules_reproduces_a_hand_made_history_exactly() {
    let env = history();
    let before = env.log().len();
    let v = json(&env, &["backtest", "rules"]);
    assert_eq!(v["identical"], true, "{v:#}");
    assert_eq!(v["differing"], serde_json::json!([]));
    assert_eq!(v["divergences"], 0);
    assert_eq!(v["subjects"], 2, "{v:#}");
    // The effects were there to compare: the same counts on both sides.
    for ty in [
        "lead.assigned",
        "deadline.scheduled",
        "task.created",
        "notification.queued",
    ] {
        let c = &v["by_type"][ty];
        assert_eq!(c["live"], 1, "{ty}: {v:#}");
        assert_eq!(c["candidate"], 1, "{ty}: {v:#}");
    }
    let text = env.ok(&["backtest", "rules"]);
    assert!(
        text.contains(
            "no differences: the candidate reproduces the live history of 2 leads and deals exactly"
        ),
        "{text}"
    );
    assert_eq!(
        env.log().len(),
        before,
        "backtest wrote to the live database"
    );
}

/// On the wall clock (no `--now`), the CLI's rules react at the command's moment, so what
/// they schedule counts from it, as the backtest (which reacts at the recorded input's time)
/// counts: the live rules find no difference. (The rules used to react at a second reading of
/// the clock, and every deadline differed by the milliseconds between the two.)
#[test]
fn on_the_wall_clock_the_live_rules_reproduce_the_deadlines_they_set() {
    let env = Env::with_rules("assign.toml", ASSIGN);
    env.write_rules("qualify.toml", QUALIFY);
    let responsible = web_lead(&env, env.wall_clock_cmd());
    let out = env
        .wall_clock_cmd()
        .args(["--as", &responsible, "lead", "move", "1", "in_work"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let log = env.log();
    let moved = log
        .iter()
        .find(|e| e["type"] == "lead.stage_changed")
        .unwrap();
    let deadline = log
        .iter()
        .find(|e| e["type"] == "deadline.scheduled")
        .expect("qualify set a deadline");
    assert_eq!(
        deadline["occurred_at"], moved["occurred_at"],
        "the rules reacted at the command's moment"
    );
    let v = json(&env, &["backtest", "rules"]);
    assert_eq!(v["identical"], true, "{v:#}");
    assert_eq!(v["by_type"]["deadline.scheduled"]["live"], 1, "{v:#}");
}

#[test]
fn a_changed_candidate_shows_changed_added_and_removed_effects_with_their_rules() {
    let env = history();
    let later = QUALIFY.replace("due = \"1d\"", "due = \"2d\"");
    let phone_too = ASSIGN.replace("lead.source == \"web_form\" && ", "");
    let dir = candidate(
        &env,
        "candidate",
        &[("assign.toml", &phone_too), ("qualify.toml", &later)],
    );
    let v = json(&env, &["backtest", &dir]);
    assert_eq!(v["identical"], false);
    assert_eq!(changes(&v, "lead-1"), [], "{v:#}");
    assert_eq!(
        changes(&v, "task by qualify from lead-1"),
        [(
            "changed".to_owned(),
            "task.created".to_owned(),
            "qualify".to_owned()
        )],
        "{v:#}"
    );
    assert_eq!(
        changes(&v, "lead-2"),
        [(
            "added".to_owned(),
            "lead.assigned".to_owned(),
            "assign-web".to_owned()
        )],
        "{v:#}"
    );
    let text = env.ok(&["backtest", &dir]);
    let summary = text.lines().nth(1).unwrap();
    assert_eq!(
        summary,
        "the candidate makes 1 more lead assignment; 2 of 2 leads and deals differ; rule `assign-web` fires 1 time more",
        "{text}"
    );
    assert!(
        text.contains("task by qualify from lead-1:\n  ~ changed task.created (rule qualify): live at 2026-03-02 13:00 MSK"),
        "{text}"
    );
    // --lead narrows the diff to one lead.
    let one = json(&env, &["backtest", &dir, "--lead", "2"]);
    let subjects: Vec<&str> = one["differing"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["subject"].as_str().unwrap())
        .collect();
    assert_eq!(subjects, ["lead-2"], "{one:#}");
    let first = json(&env, &["backtest", &dir, "--lead", "1"]);
    let subjects: Vec<&str> = first["differing"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["subject"].as_str().unwrap())
        .collect();
    assert_eq!(subjects, ["task by qualify from lead-1"], "{first:#}");
}

#[test]
fn an_input_the_candidate_makes_impossible_is_a_divergence_for_its_lead_not_a_crash() {
    let env = history();
    // Without the assignment, lead-1 has no responsible, and taking it in work is refused.
    let dir = candidate(&env, "no-assign", &[("qualify.toml", QUALIFY)]);
    let v = json(&env, &["backtest", &dir]);
    let lead = v["differing"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["subject"] == "lead-1")
        .unwrap_or_else(|| panic!("{v:#}"));
    let d = &lead["divergences"][0];
    assert_eq!(d["type"], "lead.stage_changed", "{v:#}");
    assert!(
        d["reason"].as_str().unwrap().starts_with("refused: "),
        "{d}"
    );
    assert!(d["reason"].as_str().unwrap().contains("responsible"), "{d}");
    assert_eq!(v["divergences"], 1);
    // Everything the move set off is gone, each with its rule.
    let mut got = changes(&v, "lead-1");
    got.sort();
    let want: Vec<(String, String, String)> = [
        ("removed", "deadline.scheduled", "qualify"),
        ("removed", "lead.assigned", "assign-web"),
        ("removed", "notification.queued", "nudge"),
    ]
    .iter()
    .map(|(a, b, c)| (a.to_string(), b.to_string(), c.to_string()))
    .collect();
    assert_eq!(got, want, "{v:#}");
    // The task went to its own stream, named by the rule and the lead that made it.
    assert_eq!(
        changes(&v, "task by qualify from lead-1"),
        [(
            "removed".to_owned(),
            "task.created".to_owned(),
            "qualify".to_owned()
        )],
        "{v:#}"
    );
    let text = env.ok(&["backtest", &dir]);
    assert!(
        text.contains("1 input could not happen under the candidate"),
        "{text}"
    );
    assert!(
        text.contains("  ! diverged at 2026-03-02 13:00 MSK"),
        "{text}"
    );
}

#[test]
fn coverage_counts_matches_false_conditions_robot_runs_and_rules_that_never_matched() {
    let env = history();
    let v = json(&env, &["rules", "coverage"]);
    let row = |rule: &str| {
        v["coverage"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["rule"] == rule)
            .unwrap_or_else(|| panic!("{rule}: {v:#}"))
            .clone()
    };
    let assign = row("assign-web");
    assert_eq!(
        (
            &assign["matched"],
            &assign["condition_false"],
            &assign["acted"]
        ),
        (&Value::from(2), &Value::from(1), &Value::from(1)),
        "{v:#}"
    );
    assert_eq!(row("qualify")["matched"], 1);
    assert_eq!(assign["fired"], 1);
    assert_eq!(row("qualify")["acted"], 1);
    assert_eq!(row("nudge")["acted"], 1);
    assert_eq!(v["never_matched"], serde_json::json!(["won-deal"]));
    // A period after the first lead: only lead-2's creation matched.
    let late = json(&env, &["rules", "coverage", "--since", "2026-03-02 16:15"]);
    let assign = late["coverage"][0].clone();
    assert_eq!(assign["rule"], "assign-web");
    assert_eq!(
        (&assign["matched"], &assign["condition_false"]),
        (&Value::from(1), &Value::from(1))
    );
    // A candidate folder through the sandbox.
    let dir = candidate(&env, "only-qualify", &[("qualify.toml", QUALIFY)]);
    let c = json(&env, &["--rules", &dir, "rules", "coverage"]);
    let rules: Vec<&str> = c["coverage"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["rule"].as_str().unwrap())
        .collect();
    assert_eq!(rules, ["qualify", "nudge", "won-deal"], "{c:#}");
    let text = env.ok(&["rules", "coverage"]);
    assert!(text.contains("never matched: won-deal"), "{text}");
}

#[test]
fn every_error_names_the_problem_and_leaves_the_database_as_it_was() {
    let env = history();
    let broken = candidate(
        &env,
        "broken",
        &[(
            "bad.toml",
            "[[rules]]\nid = \"x\"\ntrigger = { on = \"nothing\" }\n",
        )],
    );
    let err = env.refused_saying(&["backtest", &broken], 2, &["bad.toml:3:"]);
    assert!(err.contains("rule set"), "{err}");
    env.refused_saying(
        &["backtest", "rules", "--lead", "99"],
        1,
        &["lead-99 is not in the log"],
    );
    env.refused_saying(
        &[
            "backtest",
            "rules",
            "--since",
            "2026-03-02 15:00",
            "--until",
            "2026-03-02 14:00",
        ],
        2,
        &["--since 2026-03-02 15:00 MSK is after --until 2026-03-02 14:00 MSK"],
    );
    env.refused_saying(
        &["backtest", "rules", "--since", "2026-03-01 10:00"],
        2,
        &["--since 2026-03-01 10:00 MSK is before the log's start (2026-03-02 12:00 MSK)"],
    );
    env.refused_saying(
        &[
            "backtest", "rules", "--since", "2026-03-02 14:00", "--until", "2026-03-02 15:00",
        ],
        1,
        &["no event happened from 2026-03-02 14:00 MSK to 2026-03-02 15:00 MSK: the period is empty"],
    );
    env.refused_saying(
        &["rules", "coverage", "--until", "2026-03-01 10:00"],
        2,
        &["before the log's start"],
    );
    let empty = Env::new();
    empty.refused_saying(&["backtest", "rules"], 1, &["the log is empty"]);
    empty.refused_saying(
        &["rules", "coverage"],
        1,
        &["no rule set was ever activated"],
    );
}

/// The demo's folder (its configuration, rules and database).
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

fn in_dir(dir: &Path, args: &[&str]) -> Value {
    let out = leadflow_in(dir).args(args).output().unwrap();
    assert!(out.status.success(), "{args:?}: {}", stderr(&out));
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn backtesting_the_demos_rules_on_its_week_finds_no_difference_and_dropping_a_rule_file_does() {
    let (_dir, demo) = demo();
    let rules = demo.join("rules");
    let v = in_dir(&demo, &["--json", "backtest", rules.to_str().unwrap()]);
    assert_eq!(v["identical"], true, "{v:#}");
    assert!(v["subjects"].as_u64().unwrap() >= 40, "{v:#}");
    let tasks = &v["by_type"]["task.created"];
    assert!(tasks["live"].as_u64().unwrap() > 0, "{v:#}");
    assert_eq!(tasks["live"], tasks["candidate"]);
    let recorded = in_dir(&demo, &["--json", "backtest", "--as-recorded"]);
    assert_eq!(recorded["identical"], true, "{recorded:#}");
    // Without scenario B's qualification rules, their effects are gone.
    let candidate = demo.join("no-qualification");
    std::fs::create_dir(&candidate).unwrap();
    for f in std::fs::read_dir(&rules).unwrap() {
        let f = f.unwrap();
        if f.file_name() != "qualification.toml" {
            std::fs::copy(f.path(), candidate.join(f.file_name())).unwrap();
        }
    }
    let d = in_dir(&demo, &["--json", "backtest", candidate.to_str().unwrap()]);
    assert_eq!(d["identical"], false);
    let deadlines = &d["by_type"]["deadline.scheduled"];
    assert!(deadlines["live"].as_u64().unwrap() > 0, "{d:#}");
    assert_eq!(deadlines["candidate"], 0, "{d:#}");
    assert!(
        d["summary"].as_str().unwrap().contains("fewer deadlines"),
        "{}",
        d["summary"]
    );
}

#[test]
fn an_external_robots_recorded_answer_is_fed_to_the_same_request_and_the_robot_never_runs_again() {
    let env = Env::new();
    let runs = env.path().join("runs");
    // Counts its runs in a file and answers with an action.
    let script = format!(
        "cat >/dev/null; echo run >> '{}'; echo '{{\"actions\": [{{\"set_field\": {{\"field\": \"material\", \"value\": \"granite\"}}}}]}}'",
        runs.display()
    );
    let rule = format!(
        "[[rules]]\nid = \"ext\"\ntrigger = {{ on = \"created\", entity = \"lead\" }}\n[[rules.robots]]\nrobot = \"command\"\nprogram = \"sh\"\nargs = [\"-c\", {}]\ntimeout = \"60s\"\n",
        serde_json::to_string(&script).unwrap()
    );
    env.write_rules("ext.toml", &rule);
    env.ok(&[
        "lead",
        "create",
        "--name",
        "Olga",
        "--phone",
        "8 912 345-67-89",
    ]);
    let types = env.log_types();
    assert!(types.iter().any(|t| t == "robot.completed"), "{types:?}");
    assert!(types.iter().any(|t| t == "lead.updated"), "{types:?}");
    let v = json(&env, &["backtest", "rules"]);
    assert_eq!(v["identical"], true, "{v:#}");
    assert_eq!(v["by_type"]["lead.updated"]["candidate"], 1, "{v:#}");
    assert_eq!(
        std::fs::read_to_string(&runs).unwrap().lines().count(),
        1,
        "the sandbox ran the external robot"
    );
    // A candidate that does not ask: the recorded answer has nowhere to go.
    let dir = candidate(&env, "none", &[("empty.toml", "")]);
    let d = json(&env, &["backtest", &dir]);
    assert_eq!(d["divergences"], 1, "{d:#}");
    let lead = &d["differing"][0];
    assert_eq!(lead["subject"], "lead-1");
    let reason = lead["divergences"][0]["reason"].as_str().unwrap();
    assert_eq!(
        reason, "the candidate made no request of lead-1 by ext to command",
        "{d:#}"
    );
}

#[test]
fn with_a_rule_set_changed_midway_as_recorded_reproduces_the_history_and_the_folder_differs_only_after()
 {
    let env = Env::with_rules("assign.toml", ASSIGN);
    env.write_rules("qualify.toml", QUALIFY);
    let create = |name: &str, phone: &str, at: &str| {
        env.ok(&[
            "--as", "petrova", "--now", at, "lead", "create", "--name", name, "--phone", phone,
            "--source", "web_form",
        ]);
    };
    let take = |id: &str, at: &str| {
        let log = env.log();
        let to = log
            .iter()
            .rev()
            .find(|e| e["type"] == "lead.assigned" && e["stream"] == format!("lead-{id}"))
            .unwrap_or_else(|| panic!("lead-{id} was assigned: {log:#?}"))["payload"]["to"]
            .as_str()
            .unwrap()
            .to_owned();
        env.ok(&["--as", &to, "--now", at, "lead", "move", id, "in_work"]);
    };
    create("Olga", "8 912 345-67-89", "2026-03-02 12:00");
    take("1", "2026-03-02 12:30");
    create("Ivan", "8 912 000-00-01", "2026-03-02 13:00");
    // The task rule changes: the command after the change (taking lead-2 in work) is
    // reacted to by the new set, which is activated in its run.
    env.write_rules(
        "qualify.toml",
        &QUALIFY.replace("due = \"1d\"", "due = \"2d\""),
    );
    take("2", "2026-03-02 13:30");
    let sets = env
        .log()
        .iter()
        .filter(|e| e["type"] == "ruleset.activated")
        .count();
    assert_eq!(sets, 2);
    let recorded = json(&env, &["backtest", "--as-recorded"]);
    assert_eq!(recorded["identical"], true, "{recorded:#}");
    // The folder (the second set) from the start: only lead-1's task differs.
    let folder = json(&env, &["backtest", "rules"]);
    let subjects: Vec<&str> = folder["differing"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["subject"].as_str().unwrap())
        .collect();
    assert_eq!(subjects, ["task by qualify from lead-1"], "{folder:#}");
}

/// The recorded inputs were made by the staff of their time: an employee who acted and has
/// left since (deactivated in today's configuration) makes no divergence.
#[test]
fn an_employee_deactivated_since_does_not_make_the_live_rules_diverge() {
    let env = history();
    env.ok(&[
        "--as",
        "smirnova",
        "--now",
        "2026-03-02 17:00",
        "lead",
        "assign",
        "2",
        "sidorov",
    ]);
    let path = env.path().join("leadflow.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains("id = \"smirnova\"\n"), "{text}");
    std::fs::write(
        &path,
        text.replacen(
            "id = \"smirnova\"\n",
            "id = \"smirnova\"\nactive = false\n",
            1,
        ),
    )
    .unwrap();
    let v = json(&env, &["backtest", "rules"]);
    assert_eq!(v["divergences"], 0, "{v:#}");
    assert_eq!(v["identical"], true, "{v:#}");
}
