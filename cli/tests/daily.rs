//! Daily use through the real `leadflow` binary: a closed pipe ends a command quietly, the
//! shipped examples are right, times are shown in the calendar's zone, messages are plain, and
//! the views a user reaches for (`config show`, `timers`, list search, inbox read state).

use leadflow_testkit::cli::*;
use leadflow_testkit::repo;
use serde_json::Value;
use std::process::{Output, Stdio};

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
    assert_eq!(env.log_types().len(), 3);
}

#[test]
fn a_closed_stderr_never_panics_either() {
    let env = Env::new();
    env.write(
        "dups.csv",
        "name,phone\nIvan,+7 912 345-67-89\nIvan,+7 912 345-67-89\n",
    );
    let run = |args: &[&str]| {
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        let mut cmd = env.cmd();
        cmd.args(args)
            .stdout(Stdio::from(writer.try_clone().unwrap()))
            .stderr(Stdio::from(writer));
        let status = cmd.status().unwrap();
        drop(cmd);
        status.code()
    };
    // Warnings on stderr, then the summary on stdout: both pipes closed.
    assert_eq!(run(&["import", "dups.csv"]), Some(0));
    assert_eq!(env.log_types().len(), 2, "the import was committed");
    // An error message into a closed stderr keeps its exit code.
    assert_eq!(run(&["lead", "show", "9"]), Some(1));
    assert_eq!(run(&["lead", "show", "x"]), Some(2));
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
    assert!(env.log_types().contains(&"deadline.scheduled".to_owned()));
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
        env.log_types().contains(&"deadline.cancelled".to_owned()),
        "{:?}",
        env.log_types()
    );
    // A week later nothing is due, nothing is journalled, nobody is told.
    env.ok(&["tick", "--now", "2026-03-10T09:00:00Z"]);
    assert_eq!(journal_kinds(&env), Vec::<String>::new());
    assert!(
        !env.log_types()
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
    let examples = repo("examples/scenarios");
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

#[test]
fn tables_show_times_in_the_calendars_zone_and_json_keeps_rfc_3339() {
    let env = Env::new();
    env.write("rules/call-back.toml", CALL_BACK_RULES);
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
    env.refused_quietly(
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
    let err = env.refused_quietly(&["import", "leads.jsonl"], 1, "leads.jsonl:3: not UTF-8");
    assert!(err.contains("nothing was imported"), "{err}");
    // The same bytes in a CSV file say the same.
    let mut bytes = b"name\nIvan\n".to_vec();
    bytes.extend([0xcf, 0xe5, 0xf2, 0xf0, b'\n']);
    std::fs::write(env.path().join("leads.csv"), bytes).unwrap();
    let out = env.run(&["import", "leads.csv", "--encoding", "utf-8"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("leads.csv:3: not valid UTF-8 text; nothing was imported"),
        "{err}"
    );
    assert_eq!(env.log().len(), 0);
}

#[test]
fn creating_in_a_closing_stage_says_create() {
    let env = Env::new();
    let err = env.refused_quietly(
        &["deal", "create", "--title", "X", "--stage", "won"],
        1,
        "cannot create deal-1 in stage 'won'",
    );
    assert!(!err.contains("cannot move"), "{err}");
    env.refused_quietly(&["lead", "create", "--name", "X", "--stage", "converted"], 1, "cannot create lead-1 in stage 'converted': a new item cannot start in a closing stage; create it in 'new' and move it");
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
    env.refused_quietly(
        &["lead", "assign", "1", "ghost"],
        1,
        "unknown employee 'ghost'",
    );
    env.refused_quietly(
        &["--as", "ghost", "lead", "create", "--name", "X"],
        1,
        "unknown employee 'ghost' in --as",
    );
    env.refused_quietly(&["inbox", "ghost"], 1, "unknown employee 'ghost'");
    env.refused_quietly(&["journal", "--team", "ghosts"], 1, "unknown team 'ghosts'");
    env.refused_quietly(
        &["lead", "move", "1", "nowhere"],
        1,
        "unknown stage 'nowhere'",
    );
    env.refused_quietly(&["lead", "show", "9"], 1, "lead-9");
    // Malformed arguments could not run: 2.
    env.refused_quietly(&["lead", "show", "x9"], 2, "is not a lead id");
    env.refused_quietly(
        &["lead", "list", "--limit", "many"],
        2,
        "invalid value 'many'",
    );
}

// ---------------------------------------------------------------------------------------------
// Views a user misses
// ---------------------------------------------------------------------------------------------

#[test]
fn config_show_prints_each_part_as_a_table_or_json_without_a_database() {
    let env = Env::new();
    std::fs::remove_file(env.path().join("leadflow.db")).unwrap();
    let stages = env.ok(&["config", "show", "stages"]);
    assert!(stages.starts_with("PIPELINE  STAGE"), "{stages}");
    assert!(
        stages.lines().any(|l| l.starts_with("lead      converted")
            && l.contains("success")
            && l.contains("qualified, offer_sent")),
        "{stages}"
    );
    assert!(
        stages.contains(
            "client_type; company_name or inn, bank_account, bik when client_type = legal"
        ),
        "{stages}"
    );
    let teams = env.ok(&["config", "show", "teams"]);
    assert!(
        teams
            .lines()
            .any(|l| l.starts_with("first_line") && l.ends_with("ivanov, petrova, sidorov")),
        "{teams}"
    );
    let fields = json_lines(&env.ok(&["config", "show", "fields", "--json"]));
    let material = fields.iter().find(|f| f["id"] == "material").unwrap();
    assert_eq!(material["type"], "enum");
    assert_eq!(material["options"][0], "granite");
    let employees = json_lines(&env.ok(&["--json", "config", "show", "employees"]));
    assert!(
        employees.iter().any(|e| e["id"] == "petrova"
            && e["team"] == "first_line"
            && e["manager"] == "smirnova")
    );
    let pipelines = env.ok(&["config", "show", "pipelines"]);
    assert!(pipelines.contains("goods"), "{pipelines}");
    let all: Value = serde_json::from_str(&env.ok(&["config", "show", "--json"])).unwrap();
    assert_eq!(all["timezone"], "Europe/Moscow");
    for part in ["pipelines", "stages", "fields", "employees", "teams"] {
        assert!(!all[part].as_array().unwrap().is_empty(), "{part}");
    }
    let text = env.ok(&["config", "show"]);
    assert!(
        text.contains("time zone Europe/Moscow") && text.contains("\nteams:\n"),
        "{text}"
    );
    // Reading the configuration created no database.
    assert!(!env.path().join("leadflow.db").exists());
    let out = env.run(&["config", "show", "robots"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("invalid value 'robots'"),
        "{}",
        stderr(&out)
    );
}

/// A rule set that sets a deadline, a delayed robot and a task for every new lead.
const TIMERS: &str = r#"
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

  [[rules.robots]]
  robot = "create_task"
  kind = "call"
  title = "call {lead.title}"
  assignee = "responsible"
  due = "1h"

[[rules]]
id = "remind-later"
trigger = { on = "created", entity = "lead" }
delay = "1d"

  [[rules.robots]]
  robot = "notify"
  to = "responsible"
  text = "remember {lead.title}"
"#;

#[test]
fn timers_lists_what_is_pending_with_the_rule_that_set_it_and_lead_show_too() {
    let env = Env::new();
    env.write("rules/timers.toml", TIMERS);
    env.ok(&[
        "lead",
        "create",
        "--name",
        "Ivan",
        "--phone",
        "+7 912 345-67-89",
    ]);
    env.ok(&[
        "lead",
        "create",
        "--name",
        "Olga",
        "--phone",
        "+7 912 345-67-80",
    ]);
    let all = json_lines(&env.ok(&["timers", "--json"]));
    let kinds: Vec<(String, String, String)> = all
        .iter()
        .map(|t| {
            (
                t["what"].as_str().unwrap().to_owned(),
                t["stream"].as_str().unwrap().to_owned(),
                t["set_by"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    // By due time: the tasks (1h), the deadlines (2h), the delayed robots (1d).
    assert_eq!(
        kinds,
        [
            ("task".into(), "task-1".into(), "robot:call-back".into()),
            ("task".into(), "task-2".into(), "robot:call-back".into()),
            ("deadline".into(), "lead-1".into(), "robot:call-back".into()),
            ("deadline".into(), "lead-2".into(), "robot:call-back".into()),
            (
                "robots".into(),
                "lead-1".into(),
                "robot:remind-later".into()
            ),
            (
                "robots".into(),
                "lead-2".into(),
                "robot:remind-later".into()
            ),
        ]
    );
    assert_eq!(all[2]["name"], "call_back");
    assert_eq!(
        all[2]["due_at"].as_str().unwrap().get(..19),
        Some("2026-03-02T11:00:00")
    );
    let one = json_lines(&env.ok(&[
        "timers",
        "--json",
        "--stream",
        "lead-2",
        "--due-before",
        "2026-03-02T12:00:00Z",
    ]));
    assert_eq!(one.len(), 1, "{one:?}");
    assert_eq!(one[0]["what"], "deadline");
    let table = env.ok(&["timers", "--stream", "lead-1"]);
    assert!(table.starts_with("DUE "), "{table}");
    assert!(
        table.contains(
            "2026-03-02 14:00 MSK  2h 0m  deadline        lead-1  call_back     robot:call-back"
        ),
        "{table}"
    );
    assert!(
        table.contains("delayed robots  lead-1  remind-later  robot:remind-later"),
        "{table}"
    );
    // lead show: the timers, the open task, and (after the deadline) notifications and incidents.
    let show = env.ok(&["lead", "show", "1"]);
    assert!(show.contains("\npending timers:\n"), "{show}");
    assert!(
        show.contains("\nopen tasks:\n") && show.contains("task-1  call"),
        "{show}"
    );
    assert!(show.contains("repeat       no"), "{show}");
    env.write(
        "rules/missed.toml",
        r#"
[[rules]]
id = "missed"
trigger = { on = "deadline_elapsed", name = "call_back" }

  [[rules.robots]]
  robot = "notify"
  to = "responsible"
  text = "call {lead.title} back"
  priority = "high"

  [[rules.robots]]
  robot = "record_incident"
  kind = "missed_call_back"
"#,
    );
    env.ok(&["tick", "--now", "2026-03-02T11:00:00Z"]);
    let show = env.ok(&["--now", "2026-03-02T11:00:00Z", "lead", "show", "1"]);
    assert!(
        show.contains("\nlatest notifications:\n") && show.contains("call Ivan back"),
        "{show}"
    );
    assert!(
        show.contains("\nlatest incidents:\n") && show.contains("missed_call_back"),
        "{show}"
    );
    assert!(show.contains("(overdue)"), "{show}");
    let json: Value = serde_json::from_str(&env.ok(&["lead", "show", "1", "--json"])).unwrap();
    assert_eq!(json["timers"].as_array().unwrap().len(), 1, "{json}");
    assert_eq!(json["open_tasks"].as_array().unwrap().len(), 1, "{json}");
    assert_eq!(json["notifications"][0]["text"], "call Ivan back");
    assert_eq!(json["incidents"][0]["kind"], "missed_call_back");
    assert_eq!(json["repeat"], false);
    // A stream that does not exist is not known (exit 1), as for `lead show 9`.
    env.refused_quietly(
        &["timers", "--stream", "lead-9"],
        1,
        "unknown stream 'lead-9'",
    );
}

const REPEAT: &str = r#"
[[rules]]
id = "recognise-repeat"
trigger = { on = "created", entity = "lead" }

  [[rules.robots]]
  robot = "detect_repeat"
"#;

#[test]
fn lead_list_searches_filters_sorts_and_pages() {
    let env = Env::new();
    env.write("rules/repeat.toml", REPEAT);
    let at = |t: &str| format!("2026-03-02T{t}:00Z");
    env.ok(&[
        "--now",
        &at("09:00"),
        "lead",
        "create",
        "--name",
        "Ivan Petrov",
        "--phone",
        "8 912 345-67-89",
        "--source",
        "web_form",
        "--responsible",
        "ivanov",
    ]);
    env.ok(&[
        "--now",
        &at("09:10"),
        "lead",
        "create",
        "--name",
        "Olga",
        "--email",
        "Olga@Example.ru",
        "--source",
        "call",
        "--responsible",
        "petrova",
        "-f",
        "inn=7707083893",
    ]);
    env.ok(&[
        "--now",
        &at("09:20"),
        "lead",
        "create",
        "--name",
        "Pavel",
        "--phone",
        "+7 (912) 345 67 89",
        "--source",
        "web_form",
    ]);
    env.ok(&[
        "--now",
        &at("09:30"),
        "lead",
        "update",
        "1",
        "--comment",
        "called",
    ]);
    let ids = |args: &[&str]| -> Vec<i64> {
        json_lines(
            &env.ok(&[
                &["--now", "2026-03-02T10:00:00Z", "--json", "lead", "list"][..],
                args,
            ]
            .concat()),
        )
        .iter()
        .map(|l| l["id"].as_i64().unwrap())
        .collect()
    };
    assert_eq!(ids(&[]), [3, 2, 1]);
    // A phone in any format matches its normal form.
    assert_eq!(ids(&["--search", "+7 912 345 67 89"]), [3, 1]);
    assert_eq!(ids(&["-s", "89123456789"]), [3, 1]);
    assert_eq!(ids(&["--search", "olga@example.RU"]), [2]);
    assert_eq!(ids(&["--search", "7707083893"]), [2]);
    assert_eq!(ids(&["--search", "petr"]), [1]);
    assert_eq!(ids(&["--search", "100%"]), Vec::<i64>::new());
    assert_eq!(ids(&["--source", "web_form"]), [3, 1]);
    assert_eq!(ids(&["--responsible", "petrova"]), [2]);
    assert_eq!(ids(&["--team", "first_line"]), [2, 1]);
    assert_eq!(ids(&["--team", "goods"]), Vec::<i64>::new());
    // Pavel's phone was already known (Ivan's): a repeat lead.
    assert_eq!(ids(&["--repeat"]), [3]);
    assert_eq!(ids(&["--first-time"]), [2, 1]);
    assert_eq!(
        ids(&[
            "--created-since",
            &at("09:10"),
            "--created-until",
            &at("09:20")
        ]),
        [2]
    );
    assert_eq!(ids(&["--updated-since", &at("09:25")]), [1]);
    assert_eq!(ids(&["--sort", "updated"]), [1, 3, 2]);
    assert_eq!(ids(&["--sort", "title", "--asc"]), [1, 2, 3]);
    assert_eq!(ids(&["--asc", "--limit", "2"]), [1, 2]);
    assert_eq!(ids(&["--asc", "--limit", "2", "--offset", "2"]), [3]);
    let list = json_lines(&env.ok(&["--json", "lead", "list", "--search", "pavel"]));
    assert_eq!(list[0]["repeat"], true);
    let table = env.ok(&["lead", "list"]);
    assert!(table.lines().next().unwrap().contains("REPEAT"), "{table}");
    assert!(table.lines().nth(1).unwrap().contains(" yes "), "{table}");
    assert_eq!(
        env.ok(&["lead", "list", "--search", "nobody"]).trim(),
        "no matching leads"
    );
    let show = env.ok(&["lead", "show", "3"]);
    assert!(
        show.contains("repeat       yes: lead-1 (by phone)"),
        "{show}"
    );
    env.refused_quietly(
        &["lead", "list", "--team", "night"],
        1,
        "unknown team 'night' in --team",
    );
    env.refused_quietly(
        &["lead", "list", "--created-since", "soon"],
        2,
        "--created-since: bad time 'soon'",
    );
}

#[test]
fn deal_list_finds_deals_by_their_clients_phone_email_inn_and_name() {
    let env = Env::new();
    env.ok(&[
        "company",
        "create",
        "--name",
        "OOO Kamen",
        "--inn",
        "7707083893",
        "--phone",
        "+7 495 000-00-01",
    ]);
    env.ok(&[
        "contact",
        "create",
        "--name",
        "Olga Smirnova",
        "--email",
        "olga@kamen.ru",
        "--phone",
        "8 912 000 00 02",
    ]);
    env.ok(&["deal", "create", "--title", "Countertop", "--company", "1"]);
    env.ok(&[
        "deal",
        "create",
        "--title",
        "Sink",
        "--contact",
        "1",
        "--responsible",
        "popova",
    ]);
    let ids = |args: &[&str]| -> Vec<i64> {
        json_lines(&env.ok(&[&["--json", "deal", "list"][..], args].concat()))
            .iter()
            .map(|l| l["id"].as_i64().unwrap())
            .collect()
    };
    assert_eq!(ids(&[]), [2, 1]);
    assert_eq!(ids(&["--search", "7707083893"]), [1]);
    assert_eq!(ids(&["--search", "+7 (495) 000-00-01"]), [1]);
    assert_eq!(ids(&["--search", "OLGA@kamen.ru"]), [2]);
    assert_eq!(ids(&["--search", "89120000002"]), [2]);
    assert_eq!(ids(&["--search", "Kamen"]), [1]);
    assert_eq!(ids(&["--search", "Smirnova"]), [2]);
    assert_eq!(ids(&["--search", "Sink"]), [2]);
    assert_eq!(ids(&["--team", "goods"]), [2]);
    assert_eq!(
        env.ok(&["deal", "list", "--team", "services"]).trim(),
        "no matching deals"
    );
    assert_eq!(ids(&["--sort", "title", "--asc"]), [1, 2]);
}

#[test]
fn inbox_shows_read_and_unread_and_marking_read_is_a_replayable_event() {
    let env = Env::new();
    env.write("rules/call-back.toml", CALL_BACK_RULES);
    env.ok(&["lead", "create", "--name", "Ivan"]);
    env.ok(&["lead", "create", "--name", "Olga"]);
    env.ok(&["lead", "create", "--name", "Pavel"]);
    env.ok(&["lead", "create", "--name", "Maria"]);
    env.ok(&["tick", "--now", "2026-03-02T11:00:00Z"]);
    let now = ["--now", "2026-03-02T11:30:00Z"];
    let inbox = |args: &[&str]| {
        json_lines(&env.ok(&[&now[..], &["--json", "inbox", "ivanov"], args].concat()))
    };
    let all = inbox(&[]);
    assert_eq!(all.len(), 2, "{all:?}");
    assert!(all.iter().all(|n| n["read"] == false));
    let first = all[1]["position"].as_i64().unwrap().to_string();
    let before = env.log().len();
    let out = env.run(&[&now[..], &["inbox", "ivanov", "--mark-read", &first]].concat());
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("1 notification of ivanov marked read"),
        "{}",
        stderr(&out)
    );
    let events = env.log();
    assert_eq!(events.len(), before + 1);
    let read = events.last().unwrap();
    assert_eq!(read["type"], "notification.read");
    assert_eq!(read["stream"], "system-1");
    assert_eq!(
        read["payload"]["notification"]
            .as_i64()
            .unwrap()
            .to_string(),
        first
    );
    assert_eq!(read["payload"]["employee"], "ivanov");
    assert_eq!(inbox(&["--unread"]).len(), 1);
    let read_ones = inbox(&["--read"]);
    assert_eq!(read_ones.len(), 1);
    assert_eq!(
        read_ones[0]["read_at"].as_str().unwrap().get(..19),
        Some("2026-03-02T11:30:00")
    );
    let table = env.ok(&[&now[..], &["inbox", "ivanov"]].concat());
    assert!(table.lines().nth(1).unwrap().contains(" new "), "{table}");
    assert!(table.lines().nth(2).unwrap().contains(" read "), "{table}");
    // Not the employee's, or already read: refused, nothing appended.
    env.refused_quietly(
        &[&now[..], &["inbox", "ivanov", "--mark-read", &first]].concat(),
        1,
        "is already read",
    );
    env.refused_quietly(
        &[&now[..], &["inbox", "ivanov", "--mark-read", "1"]].concat(),
        1,
        "ivanov has no notification 1",
    );
    let petrova_first = json_lines(&env.ok(&["--json", "inbox", "petrova"]))[0]["position"]
        .as_i64()
        .unwrap()
        .to_string();
    env.refused_quietly(
        &[
            &now[..],
            &["inbox", "ivanov", "--mark-read", &petrova_first],
        ]
        .concat(),
        1,
        "ivanov has no notification",
    );
    env.ok(&[&now[..], &["inbox", "ivanov", "--mark-all-read"]].concat());
    assert_eq!(inbox(&["--unread"]).len(), 0);
    assert_eq!(
        env.ok(&[&now[..], &["inbox", "ivanov", "--unread"]].concat())
            .trim(),
        "ivanov's inbox has no unread notifications"
    );
    // The read marks are projections like the others: verified, and rebuilt by replay.
    env.ok(&["verify"]);
    env.ok(&["replay"]);
    assert_eq!(inbox(&["--read"]).len(), 2);
    env.ok(&["verify"]);
}

/// `text` in Windows-1251, as Russian Excel saves CSV.
fn cp1251(text: &str) -> Vec<u8> {
    text.chars()
        .map(|c| match c {
            'А'..='я' => (c as u32 - 'А' as u32 + 0xC0) as u8,
            'ё' => 0xB8,
            'Ё' => 0xA8,
            '№' => 0xB9,
            c if c.is_ascii() => c as u8,
            c => panic!("{c} is not in this test's Windows-1251 table"),
        })
        .collect()
}

#[test]
fn import_reads_a_semicolon_separated_windows_1251_file_as_russian_excel_saves_it() {
    let env = Env::new();
    let text = "name;phone;comment\nИван Петров;+7 912 345-67-89;перезвонить, после обеда\nОльга;8 912 000-00-02;счёт №5\n";
    std::fs::write(env.path().join("excel.csv"), cp1251(text)).unwrap();
    let out = env.run(&["import", "excel.csv"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out)
            .contains("read excel.csv as windows-1251 text (detected), ';'-separated (detected)"),
        "{}",
        stderr(&out)
    );
    let leads = json_lines(&env.ok(&["--json", "lead", "list", "--asc"]));
    assert_eq!(leads[0]["name"], "Иван Петров");
    assert_eq!(leads[0]["comment"], "перезвонить, после обеда");
    assert_eq!(leads[1]["phones"][0], "+79120000002");
    assert_eq!(leads[1]["comment"], "счёт №5");
    // Said explicitly, the same file reads the same.
    let out = env.run(&[
        "import",
        "excel.csv",
        "--encoding",
        "cp1251",
        "--delimiter",
        ";",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("read excel.csv as windows-1251 text, ';'-separated\n"),
        "{}",
        stderr(&out)
    );
    // A wrong separator gets a hint.
    env.refused_quietly(
        &["import", "excel.csv", "--delimiter", ","],
        1,
        "excel.csv:2:",
    );
    let err2 = env.refused_quietly(
        &["import", "excel.csv", "--delimiter", "|"],
        1,
        "unknown column 'name;phone;comment'",
    );
    assert!(err2.contains("pass --delimiter"), "{err2}");
    // Bytes that are neither UTF-8 nor Russian text: a hint to pass --encoding.
    std::fs::write(
        env.path().join("binary.csv"),
        b"name\n\x89PNG\x0d\x0a\x1a\x0a\x00\x81\n",
    )
    .unwrap();
    env.refused_quietly(
        &["import", "binary.csv"],
        1,
        "binary.csv:2: not UTF-8, nor Russian text in Windows-1251; pass --encoding",
    );
    env.refused_quietly(
        &["import", "excel.csv", "--encoding", "martian"],
        2,
        "unknown --encoding 'martian'",
    );
    env.refused_quietly(
        &["import", "excel.csv", "--delimiter", "ab"],
        2,
        "bad --delimiter 'ab'",
    );
}

#[test]
fn import_help_lists_the_columns_and_the_sample_file_imports() {
    let env = Env::new();
    let help = env.ok(&["import", "--help"]);
    for column in [
        "title",
        "name",
        "phone, phones",
        "email, emails",
        "source",
        "client_type",
        "responsible",
        "stage",
        "comment",
        "contact",
        "company",
        "<field id>",
        "examples/import/leads.csv",
    ] {
        assert!(help.contains(column), "{column} missing from {help}");
    }
    let sample = repo("examples/import/leads.csv");
    let out = env.ok(&["import", sample.to_str().unwrap()]);
    assert!(
        out.starts_with("imported 3 leads (lead-1..lead-3)"),
        "{out}"
    );
    let leads = json_lines(&env.ok(&["--json", "lead", "list", "--asc"]));
    assert_eq!(leads[0]["responsible"], "petrova");
    assert_eq!(leads[0]["fields"]["material"], "granite");
    assert_eq!(leads[1]["phones"].as_array().unwrap().len(), 2);
    assert_eq!(leads[2]["client_type"], "legal");
    // Cyrillic names are found whatever the case typed.
    for (q, id) in [("ольга", 2), ("СТОЛЕШ", 1), ("Подоконник", 3)] {
        let found = json_lines(&env.ok(&["--json", "lead", "list", "--search", q]));
        assert_eq!(found.len(), 1, "{q}: {found:?}");
        assert_eq!(found[0]["id"], id, "{q}");
    }
    // The docs list the same columns.
    let docs = std::fs::read_to_string(repo("docs/CONFIG.md")).unwrap();
    assert!(docs.contains("## Importing leads") && docs.contains("examples/import/leads.csv"));
}

#[test]
fn import_reports_rows_that_repeat_an_earlier_row_phone_or_email() {
    let env = Env::new();
    env.write(
        "dups.csv",
        "name,phone,email\nIvan,+7 912 345-67-89,\nOlga,,olga@example.ru\nIvan,+7 912 345-67-89,\nPavel,8 (912) 345-67-89,\nMaria,,OLGA@example.ru\nNina,+7 912 000-00-09,\n",
    );
    let out = env.run(&["import", "dups.csv"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("warning: dups.csv:4 repeats line 2 (every cell the same)"),
        "{err}"
    );
    assert!(
        err.contains("warning: dups.csv:5 repeats line 2 (the same phone +79123456789)"),
        "{err}"
    );
    assert!(
        err.contains("warning: dups.csv:6 repeats line 3 (the same email olga@example.ru)"),
        "{err}"
    );
    assert!(!err.contains(":7 "), "{err}");
    let v: Value = serde_json::from_str(&env.ok(&["--json", "import", "dups.csv"])).unwrap();
    assert_eq!(v["duplicates"].as_array().unwrap().len(), 3, "{v}");
    assert_eq!(v["duplicates"][1]["by"], "phone");
}

#[test]
fn phones_with_an_extension_are_taken_and_matched_on_their_line() {
    let env = Env::new();
    env.ok(&[
        "lead",
        "create",
        "--name",
        "Ivan",
        "--phone",
        "+7 (937) 892-20-84 доб. 12",
    ]);
    env.ok(&[
        "lead",
        "create",
        "--name",
        "Olga",
        "--phone",
        "8 937 892 20 84 ext. 7",
    ]);
    env.write(
        "ext.csv",
        "name,phone\nPavel,\"+7 937 892-20-84, доб. 15; 8 912 000 00 01\"\n",
    );
    env.ok(&["import", "ext.csv"]);
    let leads = json_lines(&env.ok(&["--json", "lead", "list", "--asc"]));
    assert_eq!(leads[0]["phones"][0], "+79378922084;ext=12");
    assert_eq!(leads[1]["phones"][0], "+79378922084;ext=7");
    assert_eq!(
        leads[2]["phones"],
        serde_json::json!(["+79378922084;ext=15", "+79120000001"])
    );
    let ids = |q: &str| -> Vec<i64> {
        json_lines(&env.ok(&["--json", "lead", "list", "--asc", "--search", q]))
            .iter()
            .map(|l| l["id"].as_i64().unwrap())
            .collect()
    };
    // The line matches whatever the extension.
    assert_eq!(ids("+7 937 892-20-84"), [1, 2, 3]);
    assert_eq!(ids("8 (937) 892-20-84 доб. 99"), [1, 2, 3]);
    assert_eq!(ids("+7 912 000-00-01"), [3]);
    let show = env.ok(&["lead", "show", "1"]);
    assert!(
        show.contains("phones       +79378922084 ext. 12\n"),
        "{show}"
    );
    env.refused_quietly(
        &["lead", "create", "--phone", "+7 012 345-67-89"],
        1,
        "malformed phone '+7 012 345-67-89': not a valid number",
    );
}

// ---------------------------------------------------------------------------------------------
// Help and simulate
// ---------------------------------------------------------------------------------------------

/// The option names under each heading of `COMMAND -h`.
fn help_sections(env: &Env, args: &[&str]) -> Vec<(String, Vec<String>)> {
    let help = env.ok(&[args, &["-h"]].concat());
    let mut sections: Vec<(String, Vec<String>)> = Vec::new();
    for line in help.lines() {
        if !line.starts_with(' ') && line.ends_with(':') {
            sections.push((line.trim_end_matches(':').to_owned(), Vec::new()));
        } else if let Some(opt) = line.split_whitespace().find(|w| w.starts_with("--"))
            && line.trim_start().starts_with('-')
            && let Some((_, opts)) = sections.last_mut()
        {
            opts.push(opt.trim_end_matches(',').to_owned());
        }
    }
    sections
}

#[test]
fn help_groups_the_global_options_after_the_commands_own_and_hides_write_only_ones_on_reads() {
    let env = Env::new();
    let all_global = [
        "--config",
        "--db",
        "--as",
        "--now",
        "--backdate",
        "--json",
        "--rules",
        "--synchronous",
    ];
    for args in [
        &["lead", "create"][..],
        &["import"],
        &["tick"],
        &["lead", "move"],
    ] {
        let sections = help_sections(&env, args);
        let names: Vec<&str> = sections.iter().map(|(h, _)| h.as_str()).collect();
        let (own, global) = (
            names.iter().position(|h| *h == "Options").unwrap(),
            names.iter().position(|h| *h == "Global options").unwrap(),
        );
        assert!(own < global, "{args:?}: {names:?}");
        assert_eq!(sections[global].1, all_global, "{args:?}");
        assert!(
            !sections[own]
                .1
                .iter()
                .any(|o| all_global.contains(&o.as_str())),
            "{args:?}: {sections:?}"
        );
    }
    for args in [
        &["lead", "list"][..],
        &["lead", "show"],
        &["events"],
        &["verify"],
        &["journal"],
        &["timers"],
        &["config", "show"],
        &["task", "list"],
    ] {
        let sections = help_sections(&env, args);
        let global = &sections
            .iter()
            .find(|(h, _)| h == "Global options")
            .unwrap()
            .1;
        // (`events` has an `--actor` filter of its own in place of `--as`.)
        let expected: &[&str] = if args == ["events"] {
            &["--config", "--db", "--now", "--json"]
        } else {
            &["--config", "--db", "--as", "--now", "--json"]
        };
        assert_eq!(global, expected, "{args:?}");
    }
    let sections = help_sections(&env, &["rules", "check"]);
    let global = &sections
        .iter()
        .find(|(h, _)| h == "Global options")
        .unwrap()
        .1;
    assert!(
        global.contains(&"--rules".to_owned()) && !global.contains(&"--synchronous".to_owned()),
        "{global:?}"
    );
    // Hidden from the help, still accepted.
    env.ok(&["events", "--synchronous", "normal"]);
    // The help of the program still lists every command in order.
    let help = env.ok(&["--help"]);
    let lead = help.find("\n  lead ").unwrap();
    let config = help.find("\n  config ").unwrap();
    assert!(lead < config, "{help}");
}

#[test]
fn simulate_says_which_configuration_it_uses_and_takes_config() {
    let env = Env::new();
    let scenario = repo("examples/scenarios/b-qualification");
    let scenario = scenario.to_str().unwrap();
    let out = env.ok(&["simulate", scenario]);
    assert!(
        out.contains("passed")
            && out.contains("(configuration: the built-in default configuration)"),
        "{out}"
    );
    // Another configuration: the same working hours in another zone move every deadline.
    let config = std::fs::read_to_string(env.path().join("leadflow.toml")).unwrap();
    env.write(
        "elsewhere.toml",
        &config.replace(
            "timezone = \"Europe/Moscow\"",
            "timezone = \"Asia/Yekaterinburg\"",
        ),
    );
    let out = env.run(&["simulate", "--config", "elsewhere.toml", scenario]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("configuration: elsewhere.toml"),
        "{}",
        stderr(&out)
    );
    // The same configuration as the built-in one passes, and JSON names it.
    let v: Value = serde_json::from_str(&env.ok(&[
        "--json",
        "simulate",
        "--config",
        "leadflow.toml",
        scenario,
    ]))
    .unwrap();
    assert_eq!(v["passed"], true);
    assert_eq!(v["config"], "leadflow.toml");
    env.refused_quietly(
        &["simulate", "--config", "missing.toml", scenario],
        2,
        "configuration missing.toml does not exist",
    );
}
