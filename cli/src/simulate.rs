//! `simulate SCENARIO`: runs a scenario file (a rule set, a script of commands and clock
//! advances, and the events and state expected along the way) on a virtual clock and an
//! in-memory store. It touches no configuration or database of the current folder.

use crate::cli::SimulateArgs;
use crate::error::CliError;
use crate::output::json_line;
use leadflow_robots::scenario::{self, Scenario, ScenarioError};
use serde_json::json;

fn scenario_error(e: ScenarioError) -> CliError {
    CliError::Usage(e.to_string())
}

/// Runs the scenario and prints every mismatch (`step N (line L): message`), or a one-line
/// summary when there is none. Mismatches give exit code 1; a scenario that does not load or
/// run gives 2.
pub fn simulate(args: &SimulateArgs, json: bool) -> Result<(), CliError> {
    let scenario = Scenario::load(&args.scenario).map_err(scenario_error)?;
    for w in &scenario.rules.warnings {
        eprintln!("warning: {w}");
    }
    let outcome = scenario::run(&scenario).map_err(scenario_error)?;
    let n = outcome.mismatches.len();
    if json {
        json_line(&json!({
            "scenario": scenario.name,
            "passed": outcome.passed(),
            "steps": scenario.steps.len(),
            "events": outcome.events,
            "end": crate::automation::rfc3339(outcome.end),
            "mismatches": outcome.mismatches.iter().map(|m| json!({
                "step": m.step,
                "line": m.line,
                "message": m.message,
            })).collect::<Vec<_>>(),
        }));
    } else if n == 0 {
        outln!(
            "{}: passed: {} steps, {} events, virtual clock at {}",
            scenario.name,
            scenario.steps.len(),
            outcome.events,
            crate::automation::rfc3339(outcome.end)
        );
    } else {
        for m in &outcome.mismatches {
            outln!("{m}");
        }
    }
    if n == 0 {
        Ok(())
    } else {
        Err(CliError::Mismatch(format!(
            "{}: {n} mismatch{} in {}",
            scenario.name,
            if n == 1 { "" } else { "es" },
            args.scenario.display()
        )))
    }
}
