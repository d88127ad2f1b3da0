//! `simulate SCENARIO`: runs a scenario file (a rule set, a script of commands and clock
//! advances, and the events and state expected along the way) on a virtual clock and an
//! in-memory store. It uses the configuration the scenario names (or the built-in default),
//! or `--config` when given, and says which; it touches no database.

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
pub(crate) fn simulate(
    args: &SimulateArgs,
    config: Option<&std::path::Path>,
    json: bool,
) -> Result<(), CliError> {
    let given = match config {
        Some(path) => {
            let path = crate::ctx::find_config(Some(path))?;
            let config = crate::ctx::load_config(&path)?;
            Some((path, config))
        }
        None => None,
    };
    let scenario = Scenario::load_with(&args.scenario, given).map_err(scenario_error)?;
    let config_name = scenario.config_path.as_ref().map_or_else(
        || "the built-in default configuration".to_owned(),
        |p| p.display().to_string(),
    );
    for w in &scenario.rules.warnings {
        errln!("warning: {w}");
    }
    let mut store = leadflow_store::Store::open_in_memory()?;
    let outcome = scenario::run_in(&scenario, &mut store).map_err(scenario_error)?;
    let n = outcome.mismatches.len();
    if json {
        json_line(&json!({
            "scenario": scenario.name,
            "config": scenario.config_path.as_ref().map(|p| p.display().to_string()),
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
            "{}: passed: {} steps, {} events, virtual clock at {} (configuration: {config_name})",
            scenario.name,
            scenario.steps.len(),
            outcome.events,
            crate::output::time(scenario.config.calendar.timezone, outcome.end)
        );
    } else {
        errln!("configuration: {config_name}");
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
