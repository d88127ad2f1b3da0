//! The real `leadflow` binary on temporary folders: every kind of bad input is refused with a
//! message that names the problem, a non-zero exit code, and nothing appended.

use std::process::Command;

use leadflow_testkit::cli::*;

/// What this file adds to the harness.
trait CliEnv {
    /// A folder with the default configuration and an empty database, whose commands (unlike
    /// the other test files') leave `LEADFLOW_RULES` as the caller's environment has it.
    fn with_callers_rules_var() -> Env;
    /// For failures before the database can be read at all.
    fn refused_without_events(&self, args: &[&str], needle: &str);
}

impl CliEnv for Env {
    fn with_callers_rules_var() -> Env {
        Env::builder().keep_rules_var().init()
    }

    fn refused_without_events(&self, args: &[&str], needle: &str) {
        let out = self.run(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(stderr(&out).contains(needle), "{}", stderr(&out));
    }
}

#[test]
fn a_lead_goes_through_the_pipeline_and_shows_its_history() {
    let env = Env::with_callers_rules_var();
    assert_eq!(
        env.ok(&[
            "lead",
            "create",
            "--name",
            "Ivan",
            "--phone",
            "8 912 345-67-89"
        ])
        .trim(),
        "lead-1 created (position 1, version 1)"
    );
    env.ok(&["lead", "assign", "1", "petrova"]);
    env.ok(&[
        "--as",
        "petrova",
        "--now",
        "2026-03-02T10:30:00Z",
        "lead",
        "move",
        "lead-1",
        "in_work",
    ]);
    env.ok(&[
        "--now",
        "2026-03-02T10:30:00Z",
        "lead",
        "update",
        "1",
        "-f",
        "material=granite",
        "-f",
        "dimensions=2400x600",
        "-f",
        "budget=120000",
        "-f",
        "urgency=this_week",
    ]);
    env.ok(&[
        "--now",
        "2026-03-02T12:00:00Z",
        "lead",
        "move",
        "1",
        "qualified",
    ]);
    let show = env.ok(&["--now", "2026-03-02T13:00:00Z", "lead", "show", "1"]);
    assert!(show.contains("+79123456789"), "{show}");
    assert!(show.contains("120000.00 RUB"), "{show}");
    assert!(
        show.contains("in_work    2026-03-02 13:30 MSK  2026-03-02 15:00 MSK  1h 30m"),
        "{show}"
    );
    let json: serde_json::Value =
        serde_json::from_str(&env.ok(&["--json", "lead", "show", "1"])).unwrap();
    assert_eq!(json["state"]["stage"], "qualified");
    assert_eq!(json["stage_history"].as_array().unwrap().len(), 3);
    let list = env.ok(&["lead", "list", "--stage", "qualified"]);
    assert!(list.lines().nth(1).unwrap().starts_with("1 "), "{list}");
    let events = env.ok(&[
        "--json",
        "events",
        "--stream",
        "lead-1",
        "--type",
        "lead.stage_changed",
    ]);
    assert_eq!(events.lines().count(), 2);
    let by_petrova = env.ok(&["--json", "events", "--actor", "petrova"]);
    assert_eq!(by_petrova.lines().count(), 1);
    env.ok(&["verify"]);
}

#[test]
fn an_unknown_stage_is_refused_with_the_known_stages() {
    let env = Env::with_callers_rules_var();
    env.create_lead("Ivan");
    env.refused_quietly(
        &["lead", "move", "1", "nowhere"],
        1,
        "unknown stage 'nowhere' in pipeline 'lead'; its stages are: new, in_work",
    );
}

#[test]
fn a_forbidden_transition_is_refused() {
    let env = Env::with_callers_rules_var();
    env.create_lead("Ivan");
    env.refused_quietly(&["lead", "move", "1", "converted"], 1, "cannot move lead-1 from 'new' to 'converted': 'converted' can be entered only from qualified, offer_sent");
}

#[test]
fn a_missing_required_field_is_named() {
    let env = Env::with_callers_rules_var();
    env.create_lead("Ivan");
    env.ok(&["lead", "assign", "1", "ivanov"]);
    env.ok(&["lead", "move", "1", "in_work"]);
    env.refused_quietly(&["lead", "move", "1", "qualified"], 1, "lead-1 cannot enter stage 'qualified': missing required fields: material, dimensions, budget, urgency");
}

#[test]
fn conditionally_required_fields_apply_to_legal_entities_only() {
    let env = Env::with_callers_rules_var();
    env.create_lead("Ivan");
    env.ok(&["lead", "assign", "1", "ivanov"]);
    env.ok(&["lead", "move", "1", "in_work"]);
    env.ok(&[
        "lead",
        "update",
        "1",
        "-f",
        "material=quartz",
        "-f",
        "dimensions=1x1",
        "-f",
        "budget=1",
        "-f",
        "urgency=later",
        "--client-type",
        "legal",
    ]);
    env.ok(&["lead", "move", "1", "qualified"]);
    env.refused_quietly(
        &["lead", "move", "1", "offer_sent"],
        1,
        "missing required fields: company_name or inn, bank_account, bik",
    );
    env.ok(&["lead", "update", "1", "--client-type", "individual"]);
    env.ok(&["lead", "move", "1", "offer_sent"]);
}

#[test]
fn a_wrong_field_type_is_refused() {
    let env = Env::with_callers_rules_var();
    env.create_lead("Ivan");
    env.refused_quietly(
        &["lead", "update", "1", "-f", "budget=lots"],
        1,
        "field 'budget': expected an amount like 1250.50, got 'lots'",
    );
    env.refused_quietly(
        &["lead", "update", "1", "-f", "material=cardboard"],
        1,
        "field 'material': expected one of granite, marble, quartz, acrylic, wood, got 'cardboard'",
    );
    env.refused_quietly(
        &["lead", "update", "1", "-f", "colour=red"],
        1,
        "unknown lead field 'colour'",
    );
}

#[test]
fn malformed_phones_and_emails_are_refused() {
    let env = Env::with_callers_rules_var();
    env.refused_quietly(
        &["lead", "create", "--name", "X", "--phone", "12ab"],
        1,
        "malformed phone '12ab'",
    );
    env.refused_quietly(
        &["lead", "create", "--name", "X", "--email", "ivan@"],
        1,
        "malformed e-mail 'ivan@'",
    );
    env.refused_quietly(
        &["contact", "create", "--name", "X", "--phone", "123"],
        1,
        "malformed phone '123': not a valid number",
    );
}

#[test]
fn unknown_employees_are_refused() {
    let env = Env::with_callers_rules_var();
    env.create_lead("Ivan");
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
    env.refused_quietly(
        &["lead", "assign", "1", "kuznetsov"],
        1,
        "employee 'kuznetsov' is not in team 'first_line', which works pipeline 'lead'",
    );
}

#[test]
fn company_requisites_are_checked() {
    let env = Env::with_callers_rules_var();
    env.refused_quietly(
        &[
            "company",
            "create",
            "--name",
            "OOO Kamen",
            "--inn",
            "7707083894",
        ],
        1,
        "invalid INN '7707083894': check digit does not match",
    );
    env.refused_quietly(
        &[
            "company",
            "create",
            "--name",
            "OOO Kamen",
            "--bank-account",
            "40702810938000012345",
        ],
        1,
        "a bank account needs the bank's BIK",
    );
    env.ok(&[
        "company",
        "create",
        "--name",
        "OOO Kamen",
        "--inn",
        "7707083893",
    ]);
}

#[test]
fn a_stale_expected_version_is_a_conflict() {
    let env = Env::with_callers_rules_var();
    env.create_lead("Ivan");
    env.refused_quietly(
        &["lead", "assign", "1", "ivanov", "--expect-version", "0"],
        1,
        "conflict on lead-1: expected version 0, but it is at 1",
    );
    env.ok(&["lead", "assign", "1", "ivanov", "--expect-version", "1"]);
}

#[test]
fn references_to_missing_entities_are_refused() {
    let env = Env::with_callers_rules_var();
    env.refused_quietly(
        &["deal", "create", "--title", "Kitchen", "--contact", "5"],
        1,
        "contact-5 does not exist",
    );
    env.refused_quietly(&["lead", "show", "9"], 1, "lead-9 does not exist");
    env.refused_quietly(
        &["deal", "create", "--title", "Kitchen", "--pipeline", "cars"],
        1,
        "unknown pipeline 'cars'; known deal pipelines: goods, services",
    );
    env.refused_quietly(&["lead", "show", "deal-3"], 2, "'deal-3' is not a lead id");
}

#[test]
fn configuration_errors_carry_file_line_and_column() {
    let env = Env::with_callers_rules_var();
    let cfg = env.path().join("leadflow.toml");
    let text = std::fs::read_to_string(&cfg).unwrap().replacen(
        "team = \"first_line\"",
        "team = \"first_lime\"",
        1,
    );
    std::fs::write(&cfg, text.clone()).unwrap();
    let line = text.lines().position(|l| l.contains("first_lime")).unwrap() + 1;
    let out = env.run(&["lead", "list"]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(
        err.contains(&format!(
            "leadflow.toml:{line}:8: unknown team 'first_lime' for employee 'ivanov'"
        )),
        "{err}"
    );
}

#[test]
fn a_bad_import_row_names_its_line_and_imports_nothing() {
    let env = Env::with_callers_rules_var();
    let csv = env.path().join("leads.csv");
    std::fs::write(&csv, "name,phone,email,budget\nIvan,8 912 000-00-01,,100000\n\"Olga, \"\"Kamen\"\"\",+7 912 000 00 02,olga@example.ru,\nPavel,not a phone,,\n").unwrap();
    env.refused_quietly(
        &["import", csv.to_str().unwrap()],
        1,
        "leads.csv:4: field 'phone': malformed phone 'not a phone'",
    );
    std::fs::write(&csv, "name,phone,colour\nIvan,8 912 000-00-01,red\n").unwrap();
    env.refused_quietly(
        &["import", csv.to_str().unwrap()],
        1,
        "leads.csv:2: unknown column 'colour'",
    );
    std::fs::write(&csv, "name,phone\nIvan,8 912 000-00-01,extra\n").unwrap();
    env.refused_quietly(
        &["import", csv.to_str().unwrap()],
        1,
        "leads.csv:2: expected 2 cells like the header, got 3",
    );
    let jsonl = env.path().join("leads.jsonl");
    std::fs::write(&jsonl, "{\"name\":\"Ivan\",\"phones\":[\"89120000001\"]}\n{\"name\":\"Olga\",\"fields\":{\"urgency\":\"yesterday\"}}\n").unwrap();
    env.refused_quietly(
        &["import", jsonl.to_str().unwrap()],
        1,
        "leads.jsonl:2: field 'urgency': expected one of this_week, this_month, later",
    );
    std::fs::write(&jsonl, "{\"name\":\"Ivan\"}\n[1,2]\n").unwrap();
    env.refused_quietly(
        &["import", jsonl.to_str().unwrap()],
        1,
        "leads.jsonl:2: expected a JSON object",
    );
}

#[test]
fn a_good_import_creates_every_lead() {
    let env = Env::with_callers_rules_var();
    let csv = env.path().join("leads.csv");
    let mut text = String::from("name,phone,source,budget\n");
    for i in 0..250 {
        text += &format!(
            "Client {i},+7 912 000 {:02} {:02},call,{}\n",
            i / 100,
            i % 100,
            1000 + i
        );
    }
    std::fs::write(&csv, text).unwrap();
    let out = env.ok(&["import", csv.to_str().unwrap()]);
    assert!(
        out.contains("imported 250 leads (lead-1..lead-250)"),
        "{out}"
    );
    let last: serde_json::Value =
        serde_json::from_str(&env.ok(&["--json", "lead", "show", "250"])).unwrap();
    assert_eq!(last["state"]["source"], "call");
    assert_eq!(last["state"]["fields"]["budget"], 124900);
    env.ok(&["verify"]);
}

#[test]
fn verify_names_the_tampered_position_and_a_cut_off_head() {
    let env = Env::with_callers_rules_var();
    for _ in 0..5 {
        env.create_lead("Ivan");
    }
    let out = env.ok(&["verify"]);
    let head = out
        .lines()
        .find_map(|l| l.strip_prefix("head: "))
        .unwrap()
        .trim()
        .to_owned();
    env.sql().tamper(
        "DELETE FROM events WHERE position = 5;
         UPDATE streams SET version = 0 WHERE entity_id = 5;
         DELETE FROM streams WHERE entity_id = 5;",
    );
    let out = env.run(&["verify", "--chain-only"]);
    assert!(
        out.status.success(),
        "a cut-off tail alone passes the chain check: {}",
        stderr(&out)
    );
    let out = env.run(&["verify", "--chain-only", "--head", &head]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("the kept head is at position 5, but the log ends at 4"),
        "{}",
        stderr(&out)
    );
    env.sql().tamper(
        "UPDATE events SET payload = replace(payload, 'Ivan', 'Ivanov') WHERE position = 3",
    );
    let out = env.run(&["verify"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("chain: broken at position 3: hash mismatch"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn verify_reports_projections_that_differ_from_a_replay_and_replay_repairs_them() {
    let env = Env::with_callers_rules_var();
    env.create_lead("Ivan");
    env.sql()
        .tamper("UPDATE leads SET stage = 'converted' WHERE id = 1");
    let out = env.run(&["verify"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("projections: table leads differs from a fresh replay"),
        "{}",
        stderr(&out)
    );
    env.ok(&["replay"]);
    env.ok(&["verify"]);
}

#[test]
fn a_database_from_a_newer_leadflow_is_left_alone() {
    let env = Env::with_callers_rules_var();
    env.sql().tamper("PRAGMA user_version = 42");
    let before = std::fs::read(env.db()).unwrap();
    env.refused_without_events(
        &["lead", "list"],
        "schema version 42, newer than this leadflow supports",
    );
    env.refused_without_events(
        &["lead", "create", "--name", "Ivan"],
        "schema version 42, newer than this leadflow supports",
    );
    assert!(
        std::fs::read(env.db()).unwrap() == before,
        "the newer database file was changed"
    );
    let wal = env.path().join("leadflow.db-wal");
    assert!(
        std::fs::metadata(&wal).map_or(0, |m| m.len()) == 0,
        "the newer database got a write-ahead log with frames"
    );
}

#[test]
fn commands_commit_with_synchronous_full_unless_told_otherwise() {
    // The store's own default is tested in store/tests/store.rs (PRAGMA synchronous = 2);
    // here, what is in force on the binary's connection (PRAGMA synchronous), from its debug log.
    let env = Env::with_callers_rules_var();
    let opened = |extra: &[&str]| {
        let out = env
            .cmd()
            .env("RUST_LOG", "leadflow::ctx=debug")
            .env_remove("LEADFLOW_SYNCHRONOUS")
            .args(extra)
            .args(["lead", "create", "--name", "Ivan"])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
        stderr(&out)
    };
    let log = opened(&[]);
    assert!(
        log.contains("opened the database") && log.contains("synchronous=Full"),
        "{log}"
    );
    let log = opened(&["--synchronous", "normal"]);
    assert!(log.contains("synchronous=Normal"), "{log}");
}

#[test]
fn commands_find_the_configuration_in_a_parent_folder() {
    let env = Env::with_callers_rules_var();
    let sub = env.path().join("a/b");
    std::fs::create_dir_all(&sub).unwrap();
    let out = env
        .cmd()
        .current_dir(&sub)
        .args(["lead", "create", "--name", "Ivan"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let elsewhere = tempfile::tempdir().unwrap();
    let out = env
        .cmd()
        .current_dir(elsewhere.path())
        .args(["lead", "list"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("no leadflow.toml or leadflow.d/"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn the_demo_runs_scenarios_a_and_b_and_its_log_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("demo");
    let out = Command::new(bin())
        .args(["demo", target.to_str().unwrap(), "--leads", "100"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains("hash chain intact; projections equal to a fresh replay"),
        "{text}"
    );
    // The robots did the converting: every converted lead has a deal they created.
    let reached = |stage: &str| -> i64 {
        let line = text
            .lines()
            .find(|l| l.split_whitespace().next() == Some(stage))
            .unwrap_or_else(|| panic!("no funnel row for {stage}: {text}"));
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    };
    assert!(reached("converted") > 0, "{text}");
    assert_eq!(
        reached("converted"),
        reached("transfer_goods") + reached("transfer_services"),
        "{text}"
    );
    assert!(reached("quality_control") > 0, "{text}");
    // Deadlines were missed, journalled, and the third miss went to the manager.
    let escalations = text
        .lines()
        .filter(|l| l.contains("Elena Smirnova (head of sales)  missed_deadline"))
        .count();
    assert!(escalations > 0, "{text}");
    assert!(text.contains("missed_deadline"), "{text}");
    // The demo's folder is a working installation: its rules and journal are there for
    // `leadflow` to use.
    let journal = Command::new(bin())
        .args(["journal", "--format", "csv"])
        .env("LEADFLOW_CONFIG", target.join("leadflow.toml"))
        .output()
        .unwrap();
    assert!(journal.status.success(), "{}", stderr(&journal));
    let csv = String::from_utf8(journal.stdout).unwrap();
    assert_eq!(
        csv.lines().filter(|l| l.starts_with("escalation,")).count(),
        escalations,
        "{csv}"
    );
    let check = Command::new(bin())
        .args(["rules", "check"])
        .env("LEADFLOW_CONFIG", target.join("leadflow.toml"))
        .output()
        .unwrap();
    assert!(check.status.success(), "{}", stderr(&check));
}

#[test]
fn a_configuration_folder_is_merged_and_its_errors_name_the_file() {
    let env = Env::with_callers_rules_var();
    let folder = env.path().join("leadflow.d");
    std::fs::create_dir(&folder).unwrap();
    let full = std::fs::read_to_string(env.path().join("leadflow.toml")).unwrap();
    let (people, rest) = full.split_at(full.find("# ---- the qualification card").unwrap());
    std::fs::write(folder.join("people.toml"), people).unwrap();
    std::fs::write(folder.join("pipelines.toml"), rest).unwrap();
    std::fs::remove_file(env.path().join("leadflow.toml")).unwrap();
    env.ok(&[
        "lead",
        "create",
        "--name",
        "Ivan",
        "--responsible",
        "petrova",
    ]);
    std::fs::write(
        folder.join("zz-extra.toml"),
        "[[employees]]\nid = \"petrova\"\nname = \"Again\"\n",
    )
    .unwrap();
    let out = env.run(&["lead", "list"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("zz-extra.toml:2:6: employee 'petrova' is defined twice"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn rules_check_reports_every_problem_with_its_location() {
    let env = Env::with_callers_rules_var();
    // `init` left rules/example.toml, all comments: an empty rule set that loads.
    let rules = env.path().join("rules");
    assert_eq!(
        env.ok(&["rules", "check"]).trim(),
        format!("{}: 0 rules in 1 file, no errors", rules.display())
    );
    std::fs::write(
        rules.join("intake.toml"),
        "[[rules]]\nid = \"assign-first-line\"\ntrigger = { on = \"created\", entity = \"lead\", sources = [\"web_form\"] }\n\n  [[rules.robots]]\n  robot = \"assign\"\n  strategy = \"round_robin\"\n  team = \"first_line\"\n",
    )
    .unwrap();
    assert_eq!(
        env.ok(&["rules", "check"]).trim(),
        format!("{}: 1 rule in 2 files, no errors", rules.display())
    );
    std::fs::write(
        rules.join("qualification.toml"),
        "[[rules]]\nid = \"q\"\ntrigger = { on = \"stage_entered\", entity = \"lead\", stage = \"in_wrok\" }\n\n  [[rules.robots]]\n  robot = \"schedule_deadline\"\n  name = \"qualification\"\n  after = \"2 hours\"\n",
    )
    .unwrap();
    let out = env.run(&["rules", "check"]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(err.contains("the rule set has 2 errors"), "{err}");
    assert!(
        err.contains(
            "qualification.toml:3:60: rule 'q': unknown stage 'in_wrok' in any lead pipeline"
        ),
        "{err}"
    );
    assert!(
        err.contains(
            "qualification.toml:8:11: rule 'q': robot 'schedule_deadline': bad duration '2 hours'"
        ),
        "{err}"
    );
}

#[test]
fn rules_schema_describes_every_robot_and_the_configured_names() {
    let env = Env::with_callers_rules_var();
    let schema: serde_json::Value = serde_json::from_str(&env.ok(&["rules", "schema"])).unwrap();
    let robots = schema["definitions"]["rule"]["properties"]["robots"]["items"]["oneOf"]
        .as_array()
        .unwrap();
    assert!(
        robots
            .iter()
            .any(|r| r["properties"]["robot"]["const"] == "escalate_to_manager")
    );
    let stages = schema["definitions"]["trigger"]["properties"]["stage"]["enum"]
        .as_array()
        .unwrap();
    assert!(stages.iter().any(|s| s == "in_work"), "{stages:?}");
    let generic: serde_json::Value =
        serde_json::from_str(&env.ok(&["rules", "schema", "--generic"])).unwrap();
    assert!(
        generic["definitions"]["trigger"]["properties"]["stage"]
            .get("enum")
            .is_none()
    );
}

#[test]
fn events_follow_prints_events_appended_by_other_processes() {
    use std::io::BufRead;
    let env = Env::with_callers_rules_var();
    env.create_lead("Ivan");
    let mut follow = env
        .cmd()
        .args(["--json", "events", "--follow"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(follow.stdout.take().unwrap()).lines();
    let first: serde_json::Value = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
    assert_eq!(first["position"], 1);
    env.ok(&["lead", "assign", "1", "petrova"]);
    let second: serde_json::Value = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
    follow.kill().unwrap();
    follow.wait().unwrap();
    assert_eq!(second["position"], 2);
    assert_eq!(second["type"], "lead.assigned");
    assert_eq!(second["payload"]["to"], "petrova");
    assert_eq!(second["actor"], "employee:admin");
    assert_eq!(second["causation"], serde_json::Value::Null);
    assert_eq!(second["hash"].as_str().unwrap().len(), 64);
}

#[test]
fn an_update_without_fields_is_refused_and_a_no_op_appends_nothing() {
    let env = Env::with_callers_rules_var();
    env.create_lead("Ivan");
    env.refused_quietly(
        &["lead", "update", "1"],
        2,
        "nothing to update: give at least one field",
    );
    let before = env.log().len();
    assert_eq!(
        env.ok(&["lead", "update", "1", "--name", "Ivan"]).trim(),
        "lead-1 unchanged: nothing to do"
    );
    assert_eq!(env.log().len(), before);
}

#[test]
fn malformed_arguments_name_what_to_write_instead() {
    let env = Env::with_callers_rules_var();
    env.create_lead("Ivan");
    env.refused_quietly(
        &["events", "--since", "yesterday"],
        2,
        "bad time 'yesterday': write 2026-03-02T09:00:00Z",
    );
    env.refused_quietly(
        &["events", "--stream", "lead"],
        2,
        "'lead' is not a stream id like lead-42",
    );
    env.refused_quietly(
        &["verify", "--head", "12"],
        2,
        "bad --head '12': write POSITION:HASH",
    );
    env.refused_quietly(
        &[
            "task",
            "create",
            "--title",
            "call",
            "--assignee",
            "ivanov",
            "--due",
            "soon",
        ],
        2,
        "bad time 'soon'",
    );
    env.refused_quietly(
        &["lead", "update", "1", "-f", "budget"],
        2,
        "bad --field 'budget': write NAME=VALUE",
    );
    env.refused_quietly(
        &["--synchronous", "sometimes", "lead", "list"],
        2,
        "unknown synchronous mode 'sometimes'",
    );
    let data = env.path().join("leads.xlsx");
    std::fs::write(&data, "x").unwrap();
    env.refused_quietly(
        &["import", data.to_str().unwrap()],
        2,
        "cannot tell the format of",
    );
    let out = env.run(&["init", env.path().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("already exists; pass --force to overwrite it"),
        "{}",
        stderr(&out)
    );
}
