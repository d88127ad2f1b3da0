//! The scenarios of SPEC §6 (`examples/scenarios/*/scenario.toml`) run as tests, one test per
//! folder; and the scenario runner itself: mismatches name the step and what was found, and
//! malformed scenario files are errors with their locations.

use leadflow_engine::rules::RuleSet;
use leadflow_robots::Registry;
use leadflow_robots::scenario::{Scenario, ScenarioError};
use leadflow_testkit::{ASSIGN_AND_QUALIFY_RULES, TempDir, repo, scenario_folder};
use std::path::PathBuf;

/// Runs a scenario on a fresh in-memory store.
fn run(
    scenario: &Scenario,
) -> Result<leadflow_robots::scenario::Outcome, leadflow_robots::scenario::ScenarioError> {
    let mut store = leadflow_store::Store::open_in_memory().expect("an in-memory store opens");
    leadflow_robots::scenario::run_in(scenario, &mut store)
}

fn examples() -> PathBuf {
    repo("examples/scenarios")
}

/// Loads and runs one example scenario; every mismatch fails the test, all of them listed.
fn passes(folder: &str) {
    let path = examples().join(folder);
    let scenario = Scenario::load(&path).unwrap_or_else(|e| panic!("{folder}: {e}"));
    let outcome = run(&scenario).unwrap_or_else(|e| panic!("{folder}: {e}"));
    let listed: Vec<String> = outcome.mismatches.iter().map(ToString::to_string).collect();
    assert!(
        outcome.passed(),
        "{folder} ({}): {} mismatches\n\n{}",
        scenario.name,
        listed.len(),
        listed.join("\n\n")
    );
    assert!(outcome.events > 0);
}

#[test]
fn a_two_line_sales() {
    passes("a-two-line-sales");
}

#[test]
fn b_qualification() {
    passes("b-qualification");
}

#[test]
fn c_conversion() {
    passes("c-conversion");
}

#[test]
fn d_head_of_sales() {
    passes("d-head-of-sales");
}

#[test]
fn e_reanimation() {
    passes("e-reanimation");
}

/// Writes a scenario (and a one-rule rule set) into a temporary folder and loads it.
fn scratch(scenario: &str) -> (TempDir, Result<Scenario, ScenarioError>) {
    let dir = scenario_folder(ASSIGN_AND_QUALIFY_RULES, scenario);
    let loaded = Scenario::load(dir.path());
    (dir, loaded)
}

const HEADER: &str = r#"
name = "runner test"
start = "2026-03-02T10:00:00+03:00"
"#;

#[test]
fn a_wrong_expectation_is_a_mismatch_naming_the_step_and_what_was_found() {
    let text = format!(
        r#"{HEADER}
[[steps]]
do = "lead.create"
args = {{ title = "Countertop", phones = ["+7 912 000-00-01"], source = "web_form" }}
expect = [{{ type = "lead.assigned", stream = "lead-1", with = {{ to = "petrova" }} }}]

[[steps]]
advance = "1h"
expect = ["deadline.elapsed"]
state = [{{ stream = "lead-1", stage = "in_work" }}]
"#
    );
    let (_dir, loaded) = scratch(&text);
    let scenario = loaded.unwrap();
    let outcome = run(&scenario).unwrap();
    assert!(!outcome.passed());
    let m = &outcome.mismatches;
    assert_eq!(m.len(), 3, "{m:#?}");
    // Step 1: the lead went to ivanov, not petrova; the message says so and lists the window.
    assert_eq!((m[0].step, m[0].line), (1, 5), "{m:#?}");
    assert!(
        m[0].message
            .contains("lead.assigned in lead-1 with {\"to\":\"petrova\"}"),
        "{}",
        m[0].message
    );
    assert!(
        m[0].message
            .contains("to: expected \"petrova\", found \"ivanov\""),
        "{}",
        m[0].message
    );
    assert!(
        m[0].message
            .contains("lead.created lead-1 [employee:admin]"),
        "{}",
        m[0].message
    );
    assert!(
        m[0].message
            .contains("deadline.scheduled lead-1 [robot:assign-first-line]"),
        "{}",
        m[0].message
    );
    // Step 2: an hour is not enough for a two-hour deadline, and the lead is still new.
    assert_eq!(m[1].step, 2);
    assert!(
        m[1].message
            .contains("expected event #1 (deadline.elapsed), but none matched"),
        "{}",
        m[1].message
    );
    assert!(m[1].message.contains("is empty"), "{}", m[1].message);
    assert!(
        m[2].message
            .contains("lead-1: stage: expected \"in_work\", found \"new\""),
        "{}",
        m[2].message
    );
    assert!(
        m[2].to_string().starts_with("step 2 (line 10): "),
        "{}",
        m[2]
    );
}

#[test]
fn a_refused_command_is_a_mismatch_unless_expected() {
    let text = format!(
        r#"{HEADER}
[[steps]]
do = "lead.create"
args = {{ title = "Countertop", source = "web_form" }}

[[steps]]
as = "ivanov"
do = "lead.move"
args = {{ id = 1, stage = "converted" }}

[[steps]]
as = "ivanov"
do = "lead.move"
args = {{ id = "lead-1", stage = "in_work" }}
expect_error = "missing required field: phone or email"

[[steps]]
as = "ivanov"
do = "lead.move"
args = {{ id = 1, stage = "junk", reason = "spam" }}
expect_error = "no such luck"
"#
    );
    let (_dir, loaded) = scratch(&text);
    let outcome = run(&loaded.unwrap()).unwrap();
    let m = &outcome.mismatches;
    assert_eq!(m.len(), 2, "{m:#?}");
    assert_eq!(m[0].step, 2);
    assert!(
        m[0].message.contains(
            "lead.move as ivanov was refused: cannot move lead-1 from 'new' to 'converted'"
        ),
        "{}",
        m[0].message
    );
    assert_eq!(m[1].step, 4);
    assert!(
        m[1].message
            .contains("but it was accepted: lead.stage_changed appended to lead-1"),
        "{}",
        m[1].message
    );
}

#[test]
fn the_clock_fires_timers_at_their_times_across_nights_and_weekends() {
    // Friday 17:00: two working hours end on Monday at 10:00 (no holiday on 2 March).
    let text = r#"
name = "clock"
start = "2026-02-27 17:00"

[[steps]]
do = "lead.create"
args = { title = "Countertop", phones = ["+7 912 000-00-01"], source = "web_form" }
expect = [{ type = "deadline.scheduled", with = { due_at = "2026-03-02T10:00:00+03:00" } }]

[[steps]]
until = "2026-03-02 09:59"
absent = ["deadline.elapsed"]

[[steps]]
advance = "3d"
expect = [{ type = "deadline.elapsed", stream = "lead-1", actor = "system", with = { name = "qualification", due_at = "2026-03-02T07:00:00Z" } }]
"#;
    let (_dir, loaded) = scratch(text);
    let scenario = loaded.unwrap();
    let mut store = leadflow_testkit::memory_store();
    let outcome = leadflow_robots::scenario::run_in(&scenario, &mut store).unwrap();
    assert!(outcome.passed(), "{:#?}", outcome.mismatches);
    // The advance ended three days on, but the deadline fired at its own time on the way.
    assert_eq!(outcome.end.to_rfc3339(), "2026-03-05T06:59:00+00:00");
    let elapsed = store
        .read_log(
            &leadflow_store::LogFilter {
                types: vec!["deadline.elapsed".into()],
                ..Default::default()
            },
            0,
            10,
        )
        .unwrap();
    assert_eq!(elapsed.len(), 1);
    assert!(
        elapsed[0].occurred_at.starts_with("2026-03-02T07:00:00"),
        "{}",
        elapsed[0].occurred_at
    );
    // Each step's events are where the outcome says.
    let third = &outcome.steps[2];
    assert!(third.after < elapsed[0].position && elapsed[0].position <= third.last);
}

#[test]
fn an_unknown_command_and_other_mistakes_are_errors_with_their_locations() {
    let text = format!(
        r#"{HEADER}
[[steps]]
do = "lead.craete"
args = {{ title = "Countertop" }}

[[steps]]
do = "lead.create"
args = {{ title = "Countertop", colour = "red" }}

[[steps]]
until = "next tuesday"

[[steps]]
as = "nobody"
do = "lead.move"
args = {{ id = 1, stage = "in_work" }}

[[steps]]
advance = "2h"
do = "lead.create"

[[steps]]
expect = [{{ type = "lead.created", strem = "lead-1" }}]
"#
    );
    let (dir, loaded) = scratch(&text);
    let Err(ScenarioError::Invalid(errors)) = loaded else {
        panic!("{loaded:?}")
    };
    let file = dir.path().join("scenario.toml").display().to_string();
    let got: Vec<String> = errors.iter().map(ToString::to_string).collect();
    let want = [
        format!("{file}:6:6: unknown command 'lead.craete'; expected one of: lead.create,"),
        format!("{file}:11:32: lead.create: unknown field `colour`, expected one of `title`"),
        format!("{file}:14:9: bad time 'next tuesday'"),
        format!("{file}:17:6: unknown employee 'nobody'"),
        format!("{file}:23:6: a step does one thing"),
        format!("{file}:26:11: expect: unknown key 'strem'"),
    ];
    assert_eq!(got.len(), want.len(), "{got:#?}");
    for (g, w) in got.iter().zip(&want) {
        assert!(g.starts_with(w.as_str()), "{g}\n  does not start with\n{w}");
    }
    // TOML syntax errors and unknown keys have locations too.
    let (dir, loaded) = scratch(&format!("{HEADER}\n[[steps]]\nadvnce = \"2h\"\n"));
    let Err(ScenarioError::Invalid(errors)) = loaded else {
        panic!("{loaded:?}")
    };
    let file = dir.path().join("scenario.toml").display().to_string();
    assert!(
        errors[0]
            .to_string()
            .starts_with(&format!("{file}:6:1: unknown field `advnce`")),
        "{errors:?}"
    );
}

/// Every example's rule folder loads cleanly, with no loop warnings.
#[test]
fn every_example_rule_folder_loads_without_warnings() {
    let mut folders: Vec<PathBuf> = std::fs::read_dir(examples())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("scenario.toml").is_file())
        .collect();
    folders.sort();
    assert_eq!(folders.len(), 5, "{folders:?}");
    for folder in folders {
        let scenario =
            Scenario::load(&folder).unwrap_or_else(|e| panic!("{}: {e}", folder.display()));
        // Loading again straight from the folder, as `rules check` does, gives the same set.
        let mut sources: Vec<_> = std::fs::read_dir(folder.join("rules"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "toml"))
            .collect();
        sources.sort();
        let sources: Vec<_> = sources
            .into_iter()
            .map(|p| leadflow_engine::Source {
                path: p.display().to_string(),
                text: std::fs::read_to_string(&p).unwrap(),
            })
            .collect();
        let set = RuleSet::load(&sources, &scenario.config, &Registry::builtin())
            .unwrap_or_else(|e| panic!("{}: {e}", folder.display()));
        assert_eq!(set.rules.len(), scenario.rules.rules.len());
        assert!(
            set.warnings.is_empty(),
            "{}: {:?}",
            folder.display(),
            set.warnings
        );
    }
}
