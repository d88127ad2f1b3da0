//! The rules runtime's bookkeeping around a command, through the real binary: a refused
//! command appends nothing (not even the rule set's activation), the backlog a crash left runs
//! before the next command is decided, and `tick` and `run` without rules say so and exit 0.

use leadflow_testkit::cli::*;

#[test]
fn a_refused_command_on_a_fresh_database_appends_nothing_not_even_the_activation() {
    let env = Env::with_rules("assign.toml", ROUND_ROBIN_RULES);
    for args in [
        &["lead", "move", "1", "in_work"][..],
        &["lead", "create", "--name", "Ivan", "--source", "nowhere"],
    ] {
        let out = env.run(args);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {}", stderr(&out));
        assert_eq!(
            env.log_types(),
            Vec::<String>::new(),
            "{args:?} appended events"
        );
    }
    // The first command that succeeds activates the rule set, and the rules see it.
    env.ok(&["lead", "create", "--name", "Ivan", "--source", "web_form"]);
    let types = env.log_types();
    assert!(types.contains(&"ruleset.activated".to_owned()), "{types:?}");
    assert!(types.contains(&"lead.assigned".to_owned()), "{types:?}");
    // A refused command with the rule set in force appends nothing either.
    let before = env.log_types().len();
    let out = env.run(&["lead", "move", "1", "nowhere"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(env.log_types().len(), before);
}

#[test]
fn the_backlog_a_crash_left_runs_before_the_next_command_is_decided() {
    let env = Env::with_rules("assign.toml", ROUND_ROBIN_RULES);
    env.ok(&["lead", "create", "--name", "Ivan", "--source", "web_form"]);
    // A command whose robots did not run (as after a crash between the two): recorded with
    // an empty rule folder, so lead-2 is left without the responsible the rule gives.
    let empty = env.path().join("no-rules");
    std::fs::create_dir(&empty).unwrap();
    env.ok(&[
        "--rules",
        empty.to_str().unwrap(),
        "lead",
        "create",
        "--name",
        "Olga",
        "--phone",
        "+7 912 345-67-89",
        "--source",
        "web_form",
    ]);
    // Entering in_work requires a responsible: the round-robin robot must run first.
    let out = env.ok(&["lead", "move", "2", "in_work"]);
    assert!(out.contains("lead-2 moved to in_work"), "{out}");
    let show: serde_json::Value =
        serde_json::from_str(&env.ok(&["--json", "lead", "show", "2"])).unwrap();
    assert!(
        show["state"]["responsible"].is_string(),
        "{}",
        show["state"]
    );
    env.ok(&["verify"]);
}

#[test]
fn tick_and_run_without_rules_say_so_and_exit_0() {
    let env = Env::new();
    // The README's steps on a fresh init.
    let out = env.ok(&["rules", "check"]);
    assert!(out.contains("0 rules"), "{out}");
    let out = env.ok(&["tick"]);
    assert!(
        out.contains("no rules in") && out.contains("nothing to run"),
        "{out}"
    );
    let json: serde_json::Value = serde_json::from_str(&env.ok(&["--json", "tick"])).unwrap();
    assert_eq!(json["rules"], 0);
    assert_eq!(json["timers"], 0);
    let out = env.wall_clock_cmd().arg("run").output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("nothing to run"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert_eq!(env.log_types(), Vec::<String>::new());
}
