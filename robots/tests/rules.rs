//! Rule sets checked against the built-in robots: a good set loads and is indexed by trigger;
//! every kind of mistake is reported at its file, line and column, all at once.

use leadflow_engine::rules::{RuleSet, Trigger, TriggerKey};
use leadflow_engine::{EntityKind, Event};
use leadflow_robots::Registry;
use leadflow_testkit::{config, source, try_rule_set};

/// The rule file `rules/a.toml` on the default configuration: the rule set or each problem.
fn load(text: &str) -> Result<RuleSet, Vec<String>> {
    try_rule_set("rules/a.toml", text, &config())
        .map_err(|e| e.0.iter().map(ToString::to_string).collect())
}

const QUALIFICATION: &str = r#"
[[rules]]
id = "qualification-deadline"
description = "2 working hours if a phone is known, 1 working day if only an e-mail"
trigger = { on = "stage_entered", entity = "lead", stage = "in_work" }

  [[rules.robots]]
  robot = "schedule_deadline"
  name = "qualification"
  after = [{ if = "size(lead.phones) > 0", after = "2h" }, { after = "8h" }]
  working_time = true

[[rules]]
id = "qualification-missed"
trigger = { on = "deadline_elapsed", name = "qualification" }
condition = '!has(lead.fields.qualification)'

  [[rules.robots]]
  robot = "notify"
  to = "responsible"
  text = "Qualify {lead.title}: the deadline has passed"

  [[rules.robots]]
  robot = "record_incident"
  kind = "missed_qualification"

  [[rules.robots]]
  robot = "escalate_to_manager"
  kind = "missed_qualification"
  threshold = 3
  window = "30d"

[[rules]]
id = "daily-kpi"
trigger = { on = "schedule", cron = "0 0 18 * * Mon-Fri" }

  [[rules.robots]]
  robot = "send_report"
  to = "manager"
"#;

#[test]
fn a_good_rule_set_loads_and_is_indexed_by_trigger() {
    let set = load(QUALIFICATION).unwrap();
    assert_eq!(set.rules.len(), 3);
    assert!(set.warnings.is_empty(), "{:?}", set.warnings);
    let hits: Vec<&str> = set
        .by_key(&TriggerKey::DeadlineElapsed("qualification".into()))
        .map(|r| r.id.as_str())
        .collect();
    assert_eq!(hits, vec!["qualification-missed"]);
    assert_eq!(
        set.by_key(&TriggerKey::DeadlineElapsed("other".into()))
            .count(),
        0
    );
    assert!(
        matches!(&set.rules[0].trigger, Trigger::StageEntered { entity: EntityKind::Lead, stage, .. } if stage.as_str() == "in_work")
    );
    assert_eq!(set.rules[1].at.to_string(), "rules/a.toml:13:1");
}

#[test]
fn a_stage_change_answers_to_stage_and_outcome_triggers() {
    let config = config();
    let moved = Event::LeadStageChanged(leadflow_engine::event::StageChanged {
        from: "offer_sent".into(),
        to: "converted".into(),
        reason: None,
    });
    assert_eq!(
        leadflow_engine::react::trigger_keys(&config, &moved, EntityKind::Lead),
        vec![
            TriggerKey::StageEntered(EntityKind::Lead, "converted".into()),
            TriggerKey::Won(EntityKind::Lead)
        ]
    );
    let junk = Event::LeadStageChanged(leadflow_engine::event::StageChanged {
        from: "new".into(),
        to: "junk".into(),
        reason: Some("spam".into()),
    });
    assert_eq!(
        leadflow_engine::react::trigger_keys(&config, &junk, EntityKind::Lead)[1],
        TriggerKey::Lost(EntityKind::Lead)
    );
}

fn one_error(text: &str) -> String {
    let errs = load(text).unwrap_err();
    assert_eq!(errs.len(), 1, "{errs:#?}");
    errs[0].clone()
}

fn rule(trigger: &str, robot: &str) -> String {
    format!("[[rules]]\nid = \"r\"\ntrigger = {trigger}\n\n  [[rules.robots]]\n{robot}\n")
}

#[test]
fn toml_syntax_errors_are_located() {
    assert!(one_error("[[rules]\nid = \"r\"\n").starts_with("rules/a.toml:1:"));
}

#[test]
fn unknown_triggers_robots_and_parameters_are_located() {
    let e = one_error(&rule(
        "{ on = \"stage_left\", entity = \"lead\" }",
        "  robot = \"notify\"\n  to = \"responsible\"\n  text = \"x\"",
    ));
    assert!(e.starts_with("rules/a.toml:3:18: rule 'r': unknown trigger 'stage_left'; triggers are: created, stage_entered"), "{e}");
    let e = one_error(&rule(
        "{ on = \"created\", entity = \"lead\" }",
        "  robot = \"teleport\"",
    ));
    assert!(
        e.starts_with(
            "rules/a.toml:6:11: rule 'r': unknown robot 'teleport'; robots are: set_stage"
        ),
        "{e}"
    );
    let e = one_error(&rule(
        "{ on = \"created\", entity = \"lead\" }",
        "  robot = \"set_stage\"\n  stage = \"in_work\"\n  colour = \"red\"",
    ));
    assert!(e.starts_with("rules/a.toml:8:12: rule 'r': robot 'set_stage' has no parameter 'colour'; its parameters are: stage, reason"), "{e}");
    let e = one_error(&rule(
        "{ on = \"created\", entity = \"lead\" }",
        "  robot = \"set_stage\"",
    ));
    assert!(
        e.contains("robot 'set_stage' needs parameter 'stage'"),
        "{e}"
    );
}

#[test]
fn unknown_stages_pipelines_fields_teams_and_employees_are_located() {
    let e = one_error(&rule(
        "{ on = \"stage_entered\", entity = \"lead\", stage = \"limbo\" }",
        "  robot = \"set_stage\"\n  stage = \"in_work\"",
    ));
    assert!(
        e.starts_with("rules/a.toml:3:60: rule 'r': unknown stage 'limbo' in any lead pipeline"),
        "{e}"
    );
    let e = one_error(&rule(
        "{ on = \"created\", entity = \"deal\", pipeline = \"cars\" }",
        "  robot = \"set_stage\"\n  stage = \"offer\"",
    ));
    assert!(
        e.contains("unknown deal pipeline 'cars'; known: goods, services"),
        "{e}"
    );
    let e = one_error(&rule(
        "{ on = \"field_changed\", entity = \"lead\", field = \"colour\" }",
        "  robot = \"set_stage\"\n  stage = \"in_work\"",
    ));
    assert!(e.contains("unknown lead field 'colour'"), "{e}");
    let e = one_error(&rule(
        "{ on = \"created\", entity = \"lead\" }",
        "  robot = \"assign\"\n  strategy = \"round_robin\"\n  team = \"night_shift\"",
    ));
    assert!(
        e.starts_with("rules/a.toml:8:10: rule 'r': robot 'assign': unknown team 'night_shift'"),
        "{e}"
    );
    let e = one_error(&rule(
        "{ on = \"created\", entity = \"lead\" }",
        "  robot = \"assign\"\n  strategy = \"named\"\n  employee = \"ghost\"",
    ));
    assert!(e.contains("unknown employee 'ghost'"), "{e}");
    let e = one_error(&rule(
        "{ on = \"created\", entity = \"deal\" }",
        "  robot = \"set_stage\"\n  stage = \"qualified\"",
    ));
    assert!(
        e.contains("unknown stage 'qualified' in any deal pipeline"),
        "{e}"
    );
}

#[test]
fn bad_durations_cron_and_conditions_are_located() {
    let e = one_error(&rule(
        "{ on = \"created\", entity = \"lead\" }",
        "  robot = \"wait\"\n  for = \"a while\"",
    ));
    assert!(
        e.starts_with("rules/a.toml:7:9: rule 'r': robot 'wait': bad duration 'a while'"),
        "{e}"
    );
    let e = one_error(&rule(
        "{ on = \"schedule\", cron = \"every evening\" }",
        "  robot = \"send_report\"\n  to = \"manager\"",
    ));
    assert!(e.contains("bad cron expression 'every evening'"), "{e}");
    let text = "[[rules]]\nid = \"r\"\ntrigger = { on = \"created\", entity = \"lead\" }\ncondition = 'lead.fields.budget > \"lots\"'\n\n  [[rules.robots]]\n  robot = \"set_stage\"\n  stage = \"in_work\"\n";
    let e = one_error(text);
    assert!(
        e.starts_with(
            "rules/a.toml:4:14: rule 'r': the condition fails on a sample of its variables"
        ),
        "{e}"
    );
    let text = text.replace("lead.fields.budget > \\\"lots\\\"", "lead.fields.budget >");
    let text = text.replace("'lead.fields.budget > \"lots\"'", "'lead.fields.budget >'");
    let e = one_error(&text);
    assert!(
        e.starts_with("rules/a.toml:4:") && e.contains("bad condition"),
        "{e}"
    );
}

#[test]
fn every_error_in_every_file_is_reported_at_once() {
    let bad = source(
        "rules/b.toml",
        &rule("{ on = \"nope\" }", "  robot = \"teleport\""),
    );
    let also = source("rules/c.toml", "rules = 5");
    let errs = RuleSet::load(&[bad, also], &config(), &Registry::builtin())
        .unwrap_err()
        .0;
    assert_eq!(errs.len(), 3, "{errs:#?}");
}

#[test]
fn duplicate_rule_ids_are_refused() {
    let text = format!(
        "{}\n{}",
        rule(
            "{ on = \"created\", entity = \"lead\" }",
            "  robot = \"set_stage\"\n  stage = \"in_work\""
        ),
        rule(
            "{ on = \"created\", entity = \"deal\" }",
            "  robot = \"set_stage\"\n  stage = \"offer\""
        )
    );
    let e = one_error(&text);
    assert!(
        e.contains("rule 'r' is defined twice (first at rules/a.toml:1:1)"),
        "{e}"
    );
}

#[test]
fn rules_that_trigger_each_other_without_a_pause_are_warned_about() {
    let text = r#"
[[rules]]
id = "ping"
trigger = { on = "stage_entered", entity = "lead", stage = "in_work" }
  [[rules.robots]]
  robot = "set_stage"
  stage = "qualified"

[[rules]]
id = "pong"
trigger = { on = "stage_entered", entity = "lead", stage = "qualified" }
  [[rules.robots]]
  robot = "set_stage"
  stage = "in_work"

[[rules]]
id = "later"
trigger = { on = "stage_entered", entity = "lead", stage = "new" }
delay = "1h"
  [[rules.robots]]
  robot = "set_stage"
  stage = "new"
"#;
    let set = load(text).unwrap();
    assert_eq!(set.warnings.len(), 1, "{:?}", set.warnings);
    assert!(
        set.warnings[0].to_string().starts_with(
            "rules/a.toml:2:1: rules can trigger each other forever: ping → pong → ping"
        ),
        "{}",
        set.warnings[0]
    );
}

#[test]
fn message_templates_are_checked_against_the_variables() {
    let e = one_error(&rule(
        "{ on = \"created\", entity = \"lead\" }",
        "  robot = \"notify\"\n  to = \"responsible\"\n  text = \"New lead {lead.titel}\"",
    ));
    assert!(e.starts_with("rules/a.toml:8:10: rule 'r': robot 'notify': 'text': unknown placeholder '{lead.titel}'"), "{e}");
    assert!(load(&rule("{ on = \"created\", entity = \"lead\" }", "  robot = \"notify\"\n  to = \"responsible\"\n  text = \"New lead {lead.title}, budget {lead.fields.budget|money}\"")).is_ok());
}

#[test]
fn docs_rules_md_describes_every_robot_and_trigger() {
    let doc = std::fs::read_to_string(leadflow_testkit::repo("docs/RULES.md")).unwrap();
    for robot in leadflow_engine::robot::RobotCatalog::robots(&Registry::builtin()) {
        assert!(
            doc.contains(&format!("| `{}` |", robot.name)),
            "docs/RULES.md lacks robot {}",
            robot.name
        );
        for p in &robot.params {
            assert!(
                doc.contains(&format!("`{}`", p.name)),
                "docs/RULES.md lacks parameter {} of {}",
                p.name,
                robot.name
            );
        }
    }
    for trigger in leadflow_engine::rules::TRIGGERS {
        assert!(
            doc.contains(&format!("| `{trigger}` |")),
            "docs/RULES.md lacks trigger {trigger}"
        );
    }
}

#[test]
fn convert_lead_takes_its_lead_stage_from_the_lead_pipeline_whatever_the_deal_pipeline() {
    let text = |stage: &str| {
        format!(
            r#"
[[rules]]
id = "convert"
trigger = {{ on = "stage_entered", entity = "lead", stage = "qualified" }}
[[rules.robots]]
robot = "convert_lead"
deal = true
pipeline = "goods"
lead_stage = "{stage}"
"#
        )
    };
    assert!(load(&text("converted")).is_ok());
    let errors = load(&text("invoice")).unwrap_err();
    assert!(
        errors.iter().any(|e| e.contains("unknown stage 'invoice'")),
        "{errors:?}"
    );
}
