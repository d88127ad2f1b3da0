//! Tampering noticed by the commands that write, not only by `verify`: a writer refuses to
//! append on top of a broken log tail or stream head, `replay` refuses a broken chain, and the
//! rules never act twice on one event when their cursor is moved back, nor skip events when it
//! is moved past the log's end. Through the real binary.

use leadflow_testkit::cli::*;

/// Every new lead gets a call task from its rule.
const TASK_RULE: &str = r#"
[[rules]]
id = "call-task"
trigger = { on = "created", entity = "lead" }

  [[rules.robots]]
  robot = "create_task"
  kind = "call"
  title = "call {lead.title}"
  assignee = "employee"
  employee = "petrova"
"#;

/// What this file adds to the harness: a log that may be broken is counted with SQL.
trait TamperEnv {
    /// The number of events in the log.
    fn events(&self) -> i64;
    /// Runs a command that must fail with `code`, append nothing, and say each of `needles`.
    fn refused(&self, args: &[&str], code: i32, needles: &[&str]);
}

impl TamperEnv for Env {
    fn events(&self) -> i64 {
        self.sql().count("SELECT count(*) FROM events")
    }

    fn refused(&self, args: &[&str], code: i32, needles: &[&str]) {
        let before = self.events();
        let out = self.run(args);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(code), "{args:?}: {err}");
        for n in needles {
            assert!(err.contains(n), "{args:?}: expected {n:?} in {err:?}");
        }
        assert_eq!(self.events(), before, "{args:?} appended events");
    }
}

fn leads(env: &Env, n: usize) {
    for i in 0..n {
        env.ok(&["lead", "create", "--name", &format!("Lead {i}")]);
    }
}

#[test]
fn a_writer_refuses_to_append_after_an_edited_newest_event() {
    let env = Env::new();
    leads(&env, 3);
    env.sql().tamper(
        "UPDATE events SET payload = json_set(payload, '$.title', 'Forged') WHERE position = 3",
    );
    env.refused(
        &["lead", "create", "--name", "Olga"],
        1,
        &[
            "the log is broken at position 3",
            "refusing to append to it",
            "leadflow verify",
        ],
    );
}

#[test]
fn a_writer_refuses_to_append_after_a_deleted_newest_event() {
    let env = Env::new();
    leads(&env, 3);
    // The newest event cut, its stream head row and the projections left as they were.
    env.sql().tamper("DELETE FROM events WHERE position = 3");
    env.refused(
        &["lead", "create", "--name", "Olga"],
        1,
        &["the log is broken at position"],
    );
}

#[test]
fn a_writer_refuses_to_append_to_a_stream_whose_head_row_was_edited() {
    let env = Env::new();
    leads(&env, 3);
    env.sql()
        .tamper("UPDATE streams SET version = version + 1 WHERE kind = 'lead' AND entity_id = 1");
    env.refused(
        &["lead", "update", "1", "--name", "Ivan"],
        1,
        &[
            "the log is broken at position 1",
            "stream lead-1: its head row says version 2",
        ],
    );
}

#[test]
fn replay_refuses_a_broken_chain_and_rebuilds_nothing() {
    let env = Env::new();
    leads(&env, 3);
    env.sql().tamper(
        "UPDATE events SET payload = json_set(payload, '$.title', 'Forged') WHERE position = 2",
    );
    let out = env.run(&["replay"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("the log is broken at position 2"), "{err}");
    // It says what it refused: replay appends nothing.
    assert!(
        err.contains("refusing to rebuild the projections from it"),
        "{err}"
    );
    assert!(!err.contains("append"), "{err}");
    assert_eq!(
        env.sql()
            .count("SELECT count(*) FROM leads WHERE title = 'Forged'"),
        0,
        "replay folded the forged event into the projections"
    );
}

#[test]
fn a_rule_never_acts_twice_on_an_event_when_its_cursor_is_moved_back() {
    let env = Env::with_rules("tasks.toml", TASK_RULE);
    leads(&env, 2);
    assert_eq!(env.sql().count("SELECT count(*) FROM tasks"), 2);
    env.sql().tamper("UPDATE rule_cursor SET position = 0");
    leads(&env, 1);
    env.ok(&["tick"]);
    assert_eq!(
        env.sql().count("SELECT count(*) FROM tasks"),
        3,
        "the robots acted again on events they had processed"
    );
    env.ok(&["verify"]);
}

#[test]
fn a_rule_cursor_past_the_end_of_the_log_is_refused_before_anything_is_appended() {
    // One event ahead was skipped silently (the backlog ran only for a cursor behind the log),
    // and further ahead was noticed only after the command's event was committed.
    for ahead in [1, 2] {
        let env = Env::with_rules("tasks.toml", TASK_RULE);
        leads(&env, 1);
        env.sql().tamper(&format!(
            "UPDATE rule_cursor SET position = (SELECT max(position) + {ahead} FROM events)"
        ));
        env.refused(
            &["lead", "create", "--name", "Olga"],
            1,
            &["the log is broken at position", "past the log's end"],
        );
        assert_eq!(env.sql().count("SELECT count(*) FROM leads"), 1, "+{ahead}");
        env.refused(&["tick"], 1, &["past the log's end"]);
    }
}

/// A log whose newest event was edited, with the task rule loaded.
fn broken_log_with_rules() -> Env {
    let env = Env::with_rules("tasks.toml", TASK_RULE);
    leads(&env, 1);
    let last = env.sql().count("SELECT max(position) FROM events");
    env.sql().tamper(&format!(
        "UPDATE events SET payload = json_set(payload, '$.title', 'Forged') WHERE position = {last}"
    ));
    env
}

#[test]
fn tick_refuses_a_broken_log_with_the_exit_code_of_a_command() {
    let env = broken_log_with_rules();
    // Exit 1, as a command on the same log: a broken log refused, not a failure to run.
    env.refused(
        &["lead", "create", "--name", "Olga"],
        1,
        &["the log is broken at position"],
    );
    env.refused(&["tick"], 1, &["the log is broken at position"]);
    env.refused(&["--json", "tick"], 1, &["the log is broken at position"]);
}

#[test]
fn run_stops_on_a_broken_log_instead_of_retrying_it_forever() {
    use std::process::Stdio;
    use std::time::{Duration, Instant};
    let env = broken_log_with_rules();
    let before = env.events();
    let mut child = env
        .wall_clock_cmd()
        .arg("run")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if start.elapsed() > Duration::from_secs(15) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("`run` kept going on a broken log");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    assert_eq!(status.code(), Some(1), "{err}");
    assert!(err.contains("the log is broken at position"), "{err}");
    assert_eq!(env.events(), before, "`run` appended events");
}

#[test]
fn a_deleted_stream_head_row_is_tampering_not_a_conflict() {
    let env = Env::new();
    leads(&env, 4);
    // The newest events on another stream, so that the tail check does not see the deletions.
    env.ok(&["lead", "update", "2", "--name", "Y"]);
    env.ok(&["lead", "update", "2", "--name", "Z"]);
    let no_fk = "PRAGMA foreign_keys = OFF; DELETE FROM streams WHERE kind = 'lead' AND entity_id";
    env.sql().tamper(&format!("{no_fk} = 1"));
    // Not "conflict on lead-1 …; reload and retry": retrying cannot help.
    env.refused(
        &["lead", "update", "1", "--name", "X"],
        1,
        &[
            "the log is broken at position 1",
            "stream lead-1 has no head row",
        ],
    );
    // The newest lead's row deleted: a create would take its id again.
    env.sql().tamper(&format!("{no_fk} = 4"));
    env.refused(
        &["lead", "create", "--name", "Olga"],
        1,
        &[
            "the log is broken at position",
            "stream lead-4 has no head row",
        ],
    );
}

#[test]
fn a_writer_refuses_a_newest_event_whose_column_has_the_wrong_type() {
    let env = Env::new();
    leads(&env, 3);
    // Before: "database error: Invalid column type …", exit 2, naming no position.
    env.sql()
        .tamper("UPDATE events SET version = 'one' WHERE position = 3");
    // On the wall clock: with --now, the backdating check reads the newest event first.
    let out = env
        .wall_clock_cmd()
        .args(["lead", "create", "--name", "Olga"])
        .output()
        .unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("the log is broken at position 3"), "{err}");
    assert!(err.contains("refusing to append to it"), "{err}");
    assert_eq!(env.events(), 3, "appended on a broken log");
}
