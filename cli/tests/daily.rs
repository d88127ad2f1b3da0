//! Daily use through the real `leadflow` binary: a closed pipe ends a command quietly, the
//! shipped examples are right, times are shown in the calendar's zone, messages are plain, and
//! the views a user reaches for (`config show`, `timers`, list search, inbox read state).

use serde_json::Value;
use std::path::Path;
use std::process::{Command, Output, Stdio};

struct Env {
    dir: tempfile::TempDir,
}

impl Env {
    /// A folder with the default configuration, an empty database and `init`'s `rules/`.
    fn new() -> Env {
        let env = Env {
            dir: tempfile::tempdir().unwrap(),
        };
        let out = env.run(&["init", env.path().to_str().unwrap()]);
        assert!(out.status.success(), "init failed: {}", stderr(&out));
        env
    }

    fn write(&self, name: &str, text: &str) {
        let p = self.path().join(name);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The binary in the folder, at 2026-03-02 09:00 UTC (Monday, 12:00 in Moscow).
    fn cmd(&self) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_leadflow"));
        c.current_dir(self.path())
            .env_remove("LEADFLOW_CONFIG")
            .env_remove("LEADFLOW_DB")
            .env_remove("LEADFLOW_AS")
            .env_remove("LEADFLOW_RULES")
            .env("LEADFLOW_NOW", "2026-03-02T09:00:00Z")
            .env("RUST_LOG", "off");
        c
    }

    fn run(&self, args: &[&str]) -> Output {
        self.cmd().args(args).output().unwrap()
    }

    /// Runs a command that must succeed; returns its stdout.
    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(out.status.success(), "{args:?} failed: {}", stderr(&out));
        String::from_utf8(out.stdout).unwrap()
    }

    /// Runs a command that must fail with `code`, append nothing, and say `needle` on stderr.
    fn refused(&self, args: &[&str], code: i32, needle: &str) -> String {
        let before = self.events().len();
        let out = self.run(args);
        assert_eq!(out.status.code(), Some(code), "{args:?}: {}", stderr(&out));
        let err = stderr(&out);
        assert!(
            err.contains(needle),
            "{args:?}: expected {needle:?} in {err:?}"
        );
        assert_eq!(self.events().len(), before, "{args:?} appended events");
        err
    }

    /// The log as JSON values.
    fn events(&self) -> Vec<Value> {
        json_lines(&self.ok(&["--json", "events"]))
    }

    /// The types of the log's events, in order.
    fn types(&self) -> Vec<String> {
        self.events()
            .iter()
            .map(|e| e["type"].as_str().unwrap().to_owned())
            .collect()
    }
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn json_lines(text: &str) -> Vec<Value> {
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

// ---------------------------------------------------------------------------------------------
// A closed pipe (defect 7)
// ---------------------------------------------------------------------------------------------

/// Runs the command with its stdout a pipe whose reading end is already closed, as
/// `leadflow … | head` is once `head` has read enough: every write fails with EPIPE.
fn into_closed_pipe(env: &Env, args: &[&str]) -> Output {
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let mut cmd = env.cmd();
    cmd.args(args)
        .stdout(Stdio::from(writer))
        .stderr(Stdio::piped());
    let child = cmd.spawn().unwrap();
    // The parent's copy of the writing end went into `cmd`; drop it so only the child holds it.
    drop(cmd);
    child.wait_with_output().unwrap()
}

#[test]
fn a_pipe_closed_early_ends_reading_commands_quietly() {
    let env = Env::new();
    env.ok(&[
        "lead",
        "create",
        "--name",
        "Ivan",
        "--phone",
        "+7 912 345-67-89",
    ]);
    env.ok(&["lead", "assign", "1", "petrova"]);
    for args in [
        &["events", "--json"][..],
        &["events"],
        &["lead", "show", "1", "--json"],
        &["lead", "show", "1"],
        &["lead", "list"],
        &["lead", "list", "--json"],
        &["journal", "--format", "csv"],
        &["verify"],
    ] {
        let out = into_closed_pipe(&env, args);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{args:?} into a closed pipe: {}",
            stderr(&out)
        );
        assert_eq!(
            stderr(&out),
            "",
            "{args:?} into a closed pipe said something"
        );
    }
    // A write still commits before it prints: the pipe closing loses nothing.
    let out = into_closed_pipe(&env, &["lead", "create", "--name", "Olga"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(env.types().len(), 3);
}

#[test]
fn a_pipe_closed_after_the_first_lines_ends_a_long_listing_quietly() {
    use std::io::Read;
    let env = Env::new();
    let mut csv = String::from("name,phone\n");
    for i in 0..3000 {
        csv.push_str(&format!(
            "Lead {i},+7 912 {:03}-{:02}-{:02}\n",
            i % 1000,
            i % 100,
            i % 97
        ));
    }
    env.write("leads.csv", &csv);
    env.ok(&["import", "leads.csv"]);
    let mut child = env
        .cmd()
        .args(["events", "--json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = [0u8; 600];
    child.stdout.take().unwrap().read_exact(&mut first).unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(stderr(&out), "");
}

// ---------------------------------------------------------------------------------------------
// The shipped examples (defect 9)
// ---------------------------------------------------------------------------------------------

/// `init`'s rules/example.toml as its header tells a user to uncomment it: one leading `# `
/// removed from every line from the first `# [[rules]]` down.
fn uncommented_example(env: &Env) -> String {
    let text = std::fs::read_to_string(env.path().join("rules/example.toml")).unwrap();
    let start = text.find("# [[rules]]").expect("the example has a rule");
    let (head, body) = text.split_at(start);
    let mut out = head.to_owned();
    for line in body.lines() {
        let line = line
            .strip_prefix("# ")
            .or_else(|| line.strip_prefix('#'))
            .unwrap_or(line);
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// A fresh `init` with its example rule uncommented, checked by `rules check`.
fn with_example_rules() -> Env {
    let env = Env::new();
    let text = uncommented_example(&env);
    env.write("rules/example.toml", &text);
    let out = env.ok(&["rules", "check"]);
    assert!(out.contains("no errors"), "{out}");
    env
}

fn journal_kinds(env: &Env) -> Vec<String> {
    json_lines(&env.ok(&["journal", "--json"]))
        .iter()
        .map(|r| {
            format!(
                "{}:{}",
                r["record"].as_str().unwrap(),
                r["kind"].as_str().unwrap()
            )
        })
        .collect()
}

#[test]
fn the_init_example_rule_leaves_a_lead_qualified_in_time_alone() {
    let env = with_example_rules();
    // Monday 12:00 in Moscow: assigned round robin, two working hours to qualify.
    env.ok(&[
        "lead",
        "create",
        "--name",
        "Ivan",
        "--phone",
        "+7 912 345-67-89",
        "--source",
        "web_form",
    ]);
    assert!(env.types().contains(&"deadline.scheduled".to_owned()));
    // Qualified within minutes.
    let at = ["--now", "2026-03-02T09:10:00Z"];
    let fields = [
        "lead",
        "update",
        "1",
        "-f",
        "material=granite",
        "-f",
        "dimensions=2400x600",
        "-f",
        "budget=150000",
        "-f",
        "urgency=this_week",
    ];
    env.ok(&[&at[..], &fields[..]].concat());
    env.ok(&[&at[..], &["lead", "move", "1", "in_work"]].concat());
    env.ok(&[&at[..], &["lead", "move", "1", "qualified"]].concat());
    assert!(
        env.types().contains(&"deadline.cancelled".to_owned()),
        "{:?}",
        env.types()
    );
    // A week later nothing is due, nothing is journalled, nobody is told.
    env.ok(&["tick", "--now", "2026-03-10T09:00:00Z"]);
    assert_eq!(journal_kinds(&env), Vec::<String>::new());
    assert!(
        !env.types()
            .iter()
            .any(|t| t == "deadline.elapsed" || t == "notification.queued")
    );
    // A lead junked in time is left alone too.
    env.ok(&[
        "--now",
        "2026-03-10T09:00:00Z",
        "lead",
        "create",
        "--name",
        "Spam",
        "--phone",
        "+7 912 000-00-00",
        "--source",
        "web_form",
    ]);
    env.ok(&[
        "--now",
        "2026-03-10T09:05:00Z",
        "lead",
        "move",
        "2",
        "junk",
        "--reason",
        "spam",
    ]);
    env.ok(&["tick", "--now", "2026-03-17T09:00:00Z"]);
    assert_eq!(journal_kinds(&env), Vec::<String>::new());
}

#[test]
fn the_init_example_rule_journals_a_lead_qualified_late() {
    let env = with_example_rules();
    env.ok(&[
        "lead",
        "create",
        "--name",
        "Ivan",
        "--phone",
        "+7 912 345-67-89",
        "--source",
        "web_form",
    ]);
    env.ok(&[
        "--now",
        "2026-03-02T09:10:00Z",
        "lead",
        "move",
        "1",
        "in_work",
    ]);
    // Two working hours after Monday 12:00 in Moscow (with the 13:00-14:00 break): 15:00.
    env.ok(&["tick", "--now", "2026-03-02T11:59:00Z"]);
    assert_eq!(journal_kinds(&env), Vec::<String>::new());
    env.ok(&["tick", "--now", "2026-03-02T12:00:00Z"]);
    assert_eq!(journal_kinds(&env), ["incident:missed_deadline"]);
    let lead: Value = serde_json::from_str(&env.ok(&["lead", "show", "1", "--json"])).unwrap();
    let responsible = lead["state"]["responsible"].as_str().unwrap().to_owned();
    let inbox = json_lines(&env.ok(&["inbox", &responsible, "--json"]));
    assert_eq!(inbox.len(), 1, "{inbox:?}");
    assert_eq!(inbox[0]["priority"], "high");
}

#[test]
fn every_example_scenario_holds_through_the_binary() {
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/scenarios");
    let mut folders: Vec<_> = std::fs::read_dir(&examples)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    folders.sort();
    assert!(folders.len() >= 5, "{folders:?}");
    let env = Env::new();
    for f in folders {
        let scenario = f.join("scenario.toml");
        let out = env.run(&["simulate", scenario.to_str().unwrap()]);
        assert!(
            out.status.success(),
            "{}: {}",
            scenario.display(),
            stderr(&out)
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Times in the calendar's zone
// ---------------------------------------------------------------------------------------------

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

  [[rules.robots]]
  robot = "escalate_to_manager"
  kind = "missed_call_back"
  threshold = 1
"#;

#[test]
fn tables_show_times_in_the_calendars_zone_and_json_keeps_rfc_3339() {
    let env = Env::new();
    env.write("rules/call-back.toml", DEADLINE);
    // 09:00 UTC is 12:00 in Moscow.
    env.ok(&[
        "lead",
        "create",
        "--name",
        "Ivan",
        "--phone",
        "+7 912 345-67-89",
    ]);
    env.ok(&["tick", "--now", "2026-03-02T11:00:00Z"]);
    let show = env.ok(&["lead", "show", "1"]);
    assert!(show.contains("created      2026-03-02 12:00 MSK"), "{show}");
    assert!(
        show.contains("new    2026-03-02 12:00 MSK  (current)"),
        "{show}"
    );
    let list = env.ok(&["lead", "list"]);
    assert!(list.contains("2026-03-02 12:00 MSK"), "{list}");
    let events = env.ok(&["events", "--stream", "lead-1"]);
    assert!(
        events
            .lines()
            .nth(1)
            .unwrap()
            .contains(" 2026-03-02 12:00 MSK "),
        "{events}"
    );
    assert!(!events.contains("09:00"), "{events}");
    // The escalation reads the same in the inbox and the journal: 14:00 in Moscow.
    let inbox = env.ok(&["inbox", "smirnova"]);
    assert!(inbox.contains("2026-03-02 14:00 MSK"), "{inbox}");
    let journal = env.ok(&["journal"]);
    assert!(journal.contains("2026-03-02 14:00 MSK"), "{journal}");
    assert!(!journal.contains("11:00"), "{journal}");
    let tasks_due = env.ok(&[
        "--now",
        "2026-03-02T11:00:00Z",
        "task",
        "create",
        "--title",
        "call",
        "--assignee",
        "ivanov",
        "--due",
        "2026-03-03T06:00:00Z",
    ]);
    assert!(tasks_due.contains("task-1 created"), "{tasks_due}");
    let tasks = env.ok(&["task", "list"]);
    assert!(tasks.contains("2026-03-03 09:00 MSK"), "{tasks}");
    // JSON keeps RFC 3339 with its offset.
    let json: Value = serde_json::from_str(&env.ok(&["lead", "show", "1", "--json"])).unwrap();
    let created = json["state"]["created_at"].as_str().unwrap();
    assert!(
        chrono::DateTime::parse_from_rfc3339(created).is_ok(),
        "{created}"
    );
    assert!(created.starts_with("2026-03-02T09:00:00"), "{created}");
    let inbox = json_lines(&env.ok(&["inbox", "smirnova", "--json"]));
    let at = inbox[0]["at"].as_str().unwrap();
    assert_eq!(
        chrono::DateTime::parse_from_rfc3339(at).unwrap(),
        chrono::DateTime::parse_from_rfc3339("2026-03-02T14:00:00+03:00").unwrap()
    );
}

#[test]
fn a_zone_without_an_abbreviation_is_marked_with_its_offset() {
    let env = Env::new();
    let config = std::fs::read_to_string(env.path().join("leadflow.toml")).unwrap();
    let config = config.replace(
        "timezone = \"Europe/Moscow\"",
        "timezone = \"Asia/Yekaterinburg\"",
    );
    assert!(config.contains("Asia/Yekaterinburg"));
    env.write("leadflow.toml", &config);
    env.ok(&["lead", "create", "--name", "Ivan"]);
    let show = env.ok(&["lead", "show", "1"]);
    assert!(show.contains("2026-03-02 14:00 +05:00"), "{show}");
}

#[test]
fn time_in_stage_of_a_closed_lead_stops_at_the_close() {
    let env = Env::new();
    env.ok(&["lead", "create", "--name", "Ivan"]);
    env.ok(&[
        "--now",
        "2026-03-02T10:00:00Z",
        "lead",
        "move",
        "1",
        "junk",
        "--reason",
        "spam",
    ]);
    // 273 days later the lead is still closed, and its history says so.
    let show = env.ok(&["--now", "2026-11-30T10:00:00Z", "lead", "show", "1"]);
    assert!(
        show.contains("new    2026-03-02 12:00 MSK  2026-03-02 13:00 MSK  1h 0m"),
        "{show}"
    );
    assert!(
        show.contains("junk   2026-03-02 13:00 MSK  (closed)              -"),
        "{show}"
    );
    assert!(!show.contains("273d"), "{show}");
    // An open lead's current stage counts to now.
    env.ok(&[
        "--now",
        "2026-03-02T10:00:00Z",
        "lead",
        "create",
        "--name",
        "Olga",
    ]);
    let show = env.ok(&["--now", "2026-03-04T11:00:00Z", "lead", "show", "2"]);
    assert!(show.contains("(current)  2d 1h"), "{show}");
}

// ---------------------------------------------------------------------------------------------
// Messages (defect 13)
// ---------------------------------------------------------------------------------------------

#[test]
fn a_condition_nested_too_deeply_gets_a_located_plain_message() {
    let env = Env::new();
    let deep = format!("{}true{}", "(".repeat(200), ")".repeat(200));
    env.write(
        "rules/deep.toml",
        &format!(
            "[[rules]]\nid = \"deep\"\ntrigger = {{ on = \"created\", entity = \"lead\" }}\ncondition = \"{deep}\"\n\n  [[rules.robots]]\n  robot = \"record_incident\"\n  kind = \"x\"\n"
        ),
    );
    let out = env.run(&["rules", "check"]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(
        err.contains("deep.toml:4:")
            && err.contains("rule 'deep': bad condition: it nests more than 96 levels deep"),
        "{err}"
    );
    for internal in ["OtherError", "ParseError", "pos:", "source_info"] {
        assert!(!err.contains(internal), "{err}");
    }
    // Every appending command stops with the same message, and appends nothing.
    env.refused(
        &["lead", "create", "--name", "X"],
        2,
        "it nests more than 96 levels deep",
    );
}

#[test]
fn invalid_utf8_in_a_json_lines_import_names_its_line_and_imports_nothing() {
    let env = Env::new();
    let mut bytes = b"{\"name\": \"Ivan\"}\n{\"name\": \"Olga\"}\n{\"name\": \"".to_vec();
    bytes.extend([0xcf, 0xe5, 0xf2, 0xf0]); // "Петр" in Windows-1251
    bytes.extend(b"\"}\n");
    std::fs::write(env.path().join("leads.jsonl"), bytes).unwrap();
    let err = env.refused(&["import", "leads.jsonl"], 1, "leads.jsonl:3: not UTF-8");
    assert!(err.contains("nothing was imported"), "{err}");
    // The same bytes in a CSV file say the same.
    let mut bytes = b"name\nIvan\n".to_vec();
    bytes.extend([0xcf, 0xe5, 0xf2, 0xf0, b'\n']);
    std::fs::write(env.path().join("leads.csv"), bytes).unwrap();
    let out = env.run(&["import", "leads.csv"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("leads.csv:3:") && err.contains("nothing was imported"),
        "{err}"
    );
}

#[test]
fn creating_in_a_closing_stage_says_create() {
    let env = Env::new();
    let err = env.refused(
        &["deal", "create", "--title", "X", "--stage", "won"],
        1,
        "cannot create deal-1 in stage 'won'",
    );
    assert!(!err.contains("cannot move"), "{err}");
    env.refused(&["lead", "create", "--name", "X", "--stage", "converted"], 1, "cannot create lead-1 in stage 'converted': a new item cannot start in a closing stage; create it in 'new' and move it");
}

#[test]
fn one_import_row_is_one_lead() {
    let env = Env::new();
    env.write("one.csv", "name,phone\nIvan,+7 912 345-67-89\n");
    let out = env.ok(&["import", "one.csv"]);
    assert!(out.starts_with("imported 1 lead (lead-1) in "), "{out}");
    env.write("two.csv", "name\nOlga\nPavel\n");
    let out = env.ok(&["import", "two.csv"]);
    assert!(
        out.starts_with("imported 2 leads (lead-2..lead-3) in "),
        "{out}"
    );
}

#[test]
fn an_unknown_name_is_exit_1_wherever_it_is_given() {
    let env = Env::new();
    env.ok(&["lead", "create", "--name", "Ivan"]);
    env.refused(
        &["lead", "assign", "1", "ghost"],
        1,
        "unknown employee 'ghost'",
    );
    env.refused(
        &["--as", "ghost", "lead", "create", "--name", "X"],
        1,
        "unknown employee 'ghost' in --as",
    );
    env.refused(&["inbox", "ghost"], 1, "unknown employee 'ghost'");
    env.refused(&["journal", "--team", "ghosts"], 1, "unknown team 'ghosts'");
    env.refused(
        &["lead", "move", "1", "nowhere"],
        1,
        "unknown stage 'nowhere'",
    );
    env.refused(&["lead", "show", "9"], 1, "lead-9");
    // Malformed arguments could not run: 2.
    env.refused(&["lead", "show", "x9"], 2, "is not a lead id");
    env.refused(
        &["lead", "list", "--limit", "many"],
        2,
        "invalid value 'many'",
    );
}
