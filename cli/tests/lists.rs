//! `lead list`, `deal list` and `timers` through the real `leadflow` binary: a name or id
//! they are given that is not known exits 1 (as the README's exit-code rule says), a lead-only
//! option given to `deal list` is a usage error (exit 2), and a known one still lists.

use leadflow_testkit::cli::*;

/// What this file adds to the harness.
trait ListsEnv {
    /// A folder with the default configuration and one lead (`lead-1`, from a call).
    fn with_lead() -> Env;
    fn refused(&self, args: &[&str], code: i32, needle: &str);
}

impl ListsEnv for Env {
    fn with_lead() -> Env {
        let env = Env::new();
        let out = env.run(&["lead", "create", "--title", "Windows", "--source", "call"]);
        assert!(out.status.success(), "lead create failed: {}", stderr(&out));
        env
    }

    /// Runs a command that must exit with `code`, print nothing and say `needle` on stderr.
    fn refused(&self, args: &[&str], code: i32, needle: &str) {
        let out = self.run(args);
        assert_eq!(out.status.code(), Some(code), "{args:?}: {}", stderr(&out));
        assert!(out.stdout.is_empty(), "{args:?} printed: {}", stdout(&out));
        assert!(
            stderr(&out).contains(needle),
            "{args:?} should say {needle:?}: {}",
            stderr(&out)
        );
    }
}

#[test]
fn list_filters_naming_an_unknown_employee_pipeline_stage_or_source_exit_1() {
    let env = Env::with_lead();
    for (flag, what) in [
        ("--responsible", "employee"),
        ("--pipeline", "pipeline"),
        ("--stage", "stage"),
        ("--source", "source"),
    ] {
        env.refused(
            &["lead", "list", flag, "nosuch"],
            1,
            &format!("unknown {what} 'nosuch' in {flag}"),
        );
    }
    for (flag, what) in [
        ("--responsible", "employee"),
        ("--pipeline", "pipeline"),
        ("--stage", "stage"),
    ] {
        env.refused(
            &["deal", "list", flag, "nosuch"],
            1,
            &format!("unknown {what} 'nosuch' in {flag}"),
        );
    }
    // A lead pipeline is not a deal pipeline, and a stage must be in the pipeline given.
    env.refused(
        &["deal", "list", "--pipeline", "lead"],
        1,
        "unknown pipeline 'lead'",
    );
    env.refused(
        &["lead", "list", "--pipeline", "lead", "--stage", "won"],
        1,
        "unknown stage 'won'",
    );
    // Known names still list.
    for args in [
        &["lead", "list", "--stage", "new", "--source", "call"][..],
        &[
            "lead",
            "list",
            "--pipeline",
            "lead",
            "--responsible",
            "ivanov",
        ],
    ] {
        let out = env.run(args);
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
    }
    let out = env.run(&["lead", "list", "--stage", "new", "--source", "call"]);
    assert!(stdout(&out).contains("Windows"), "{}", stdout(&out));
}

#[test]
fn deal_list_refuses_the_lead_only_options_with_exit_2() {
    let env = Env::with_lead();
    for args in [
        &["deal", "list", "--source", "call"][..],
        &["deal", "list", "--repeat"],
        &["deal", "list", "--first-time"],
    ] {
        env.refused(args, 2, &format!("{} is for leads only", args[2]));
    }
    let out = env.run(&["deal", "list"]);
    assert!(out.status.success(), "{}", stderr(&out));
}

#[test]
fn timers_of_a_stream_that_does_not_exist_exit_1_like_lead_show() {
    let env = Env::with_lead();
    env.refused(&["lead", "show", "999"], 1, "");
    env.refused(
        &["timers", "--stream", "lead-999"],
        1,
        "unknown stream 'lead-999'",
    );
    let out = env.run(&["timers", "--stream", "lead-1"]);
    assert!(out.status.success(), "{}", stderr(&out));
}
