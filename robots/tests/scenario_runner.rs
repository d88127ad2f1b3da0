//! The scenario runner keeps its negative checks: a scenario whose `absent`, `contains`,
//! `exists = false` or `unset` is violated is reported as a mismatch that names that
//! expectation and the step it is in. (The example scenarios rely on them — 23 `absent` lists
//! in five scenarios — and a runner that skipped them would pass every example.)
//!
//! Each scenario also holds the same kind of check, satisfied, in another step, so the test
//! fails as well if the runner reports a check that holds.

use leadflow_robots::scenario::{Mismatch, Scenario};
use leadflow_testkit::{ASSIGN_AND_QUALIFY_RULES, scenario_folder};

/// Runs a scenario on a fresh in-memory store.
fn run(
    scenario: &Scenario,
) -> Result<leadflow_robots::scenario::Outcome, leadflow_robots::scenario::ScenarioError> {
    let mut store = leadflow_store::Store::open_in_memory().expect("an in-memory store opens");
    leadflow_robots::scenario::run_in(scenario, &mut store)
}

/// The scenario's first step: a lead that the rule assigns to ivanov.
const HEAD: &str = r#"
name = "runner test"
start = "2026-03-02T10:00:00+03:00"

[[steps]]
do = "lead.create"
args = { title = "Countertop", phones = ["+7 912 000-00-01"], source = "web_form" }
"#;

/// Runs `HEAD` followed by `steps`; returns the mismatches.
fn mismatches(steps: &str) -> Vec<Mismatch> {
    let dir = scenario_folder(ASSIGN_AND_QUALIFY_RULES, &format!("{HEAD}{steps}"));
    let scenario = Scenario::load(dir.path()).unwrap_or_else(|e| panic!("{e}"));
    run(&scenario).unwrap().mismatches
}

/// Exactly one mismatch, in `step`, saying every one of `needles`.
fn one_mismatch(m: &[Mismatch], step: usize, needles: &[&str]) {
    assert_eq!(
        m.len(),
        1,
        "expected one mismatch, in step {step}, got: {m:#?}"
    );
    assert_eq!(m[0].step, step, "{m:#?}");
    for needle in needles {
        assert!(
            m[0].message.contains(needle),
            "expected {needle:?} in: {}",
            m[0].message
        );
    }
}

#[test]
fn an_absent_event_that_was_appended_is_a_mismatch_naming_it() {
    let m = mismatches(
        r#"
absent = ["deal.created", { type = "lead.assigned", with = { to = "petrova" } }]

[[steps]]
do = "lead.create"
args = { title = "Worktop", phones = ["+7 912 000-00-02"], source = "web_form" }
absent = ["deal.*", { type = "deadline.scheduled", stream = "lead-2", with = { name = "qualification" } }]
"#,
    );
    // Step 1's absent list holds (ivanov got the first lead); step 2's second entry does not.
    one_mismatch(
        &m,
        2,
        &[
            "expected no deadline.scheduled in lead-2 with {\"name\":\"qualification\"} in the window",
            "but found: ",
            "deadline.scheduled lead-2",
        ],
    );
}

#[test]
fn an_absent_type_alone_is_checked_too() {
    let m = mismatches(
        r#"
absent = ["lead.assigned"]
"#,
    );
    one_mismatch(
        &m,
        1,
        &[
            "expected no lead.assigned in the window, but found:",
            "lead.assigned lead-1",
        ],
    );
}

#[test]
fn an_expected_event_whose_payload_lacks_the_contained_text_is_a_mismatch() {
    let m = mismatches(
        r#"
expect = [{ type = "lead.created", contains = "Countertop" }]

[[steps]]
do = "lead.create"
args = { title = "Worktop", phones = ["+7 912 000-00-02"], source = "web_form" }
expect = [{ type = "lead.created", stream = "lead-2", contains = "Countertop" }]
"#,
    );
    one_mismatch(
        &m,
        2,
        &[
            "expected event #1 (lead.created in lead-2 containing 'Countertop'), but none matched",
            "the payload does not contain 'Countertop'",
        ],
    );
}

#[test]
fn an_absent_expectation_with_contained_text_is_checked_against_the_text() {
    let m = mismatches(
        r#"
absent = [{ type = "lead.created", contains = "Worktop" }]

[[steps]]
do = "lead.create"
args = { title = "Worktop", phones = ["+7 912 000-00-02"], source = "web_form" }
absent = [{ type = "lead.created", contains = "Worktop" }]
"#,
    );
    one_mismatch(
        &m,
        2,
        &["expected no lead.created containing 'Worktop' in the window, but found:"],
    );
}

#[test]
fn an_entity_that_must_not_exist_but_does_is_a_mismatch() {
    let m = mismatches(
        r#"
state = [{ stream = "lead-2", exists = false }, { stream = "deal-1", exists = false }]

[[steps]]
do = "lead.create"
args = { title = "Worktop", phones = ["+7 912 000-00-02"], source = "web_form" }
state = [{ stream = "lead-2", exists = false }]
"#,
    );
    one_mismatch(&m, 2, &["expected lead-2 not to exist, but it does"]);
}

#[test]
fn a_field_that_must_be_unset_but_is_filled_is_a_mismatch() {
    let m = mismatches(
        r#"
state = [{ stream = "lead-1", unset = ["contact", "fields.inn", "stage_reason"] }]

[[steps]]
as = "ivanov"
do = "lead.update"
args = { id = 1, inn = "7707083893" }
state = [{ stream = "lead-1", unset = ["contact", "fields.inn", "responsible"] }]
"#,
    );
    one_mismatch(
        &m,
        2,
        &[
            "lead-1: ",
            "fields.inn: expected it unset, found \"7707083893\"",
            "responsible: expected it unset, found \"ivanov\"",
        ],
    );
    assert!(
        !m[0].message.contains("contact: expected"),
        "an empty contact was reported: {}",
        m[0].message
    );
}
