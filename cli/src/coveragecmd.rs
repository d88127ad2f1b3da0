//! `leadflow rules coverage`: per rule of the set in force (or of the `--rules` folder), how
//! often its trigger matched and its condition said no — re-evaluated in the backtest sandbox
//! (`backtestcmd::run` with a `robots::backtest::Coverage` observer) — and how often its robots
//! acted or failed — read from the log (the sandbox's, for a candidate folder) — and which
//! rules never matched in the period (docs/RULES.md, "Backtest and coverage").

use crate::backtestcmd::{candidate, period, run};
use crate::cli::{Cli, CoverageArgs};
use crate::ctx::{Access, Ctx};
use crate::error::CliError;
use crate::output::{Table, json_line};
use leadflow_engine::event::Event;
use leadflow_robots::Runtime;
use leadflow_robots::backtest::{Coverage, Options};
use std::sync::Arc;

/// One rule's figures.
#[derive(serde::Serialize)]
struct Row {
    rule: String,
    matched: u64,
    condition_false: u64,
    /// Matched and its condition held: its robots ran (or were put off).
    fired: u64,
    /// Firings that left an effect in the log (a robot with nothing to do leaves none).
    acted: u64,
    failed: u64,
}

/// `leadflow rules coverage`.
pub(crate) fn coverage(cli: &Cli, args: &CoverageArgs) -> Result<(), CliError> {
    let ctx = Ctx::open(cli, Access::Read)?;
    let (runtime, source) = match &cli.rules {
        Some(dir) => (candidate(&ctx, dir)?, dir.display().to_string()),
        None => in_force(&ctx)?,
    };
    let period = period(&ctx, args.since.as_deref(), args.until.as_deref())?;
    let opts = Options {
        since: period.since,
        until: period.until,
        as_recorded: false,
        head: None,
    };
    let ids: Vec<String> = runtime.rules().rules.iter().map(|r| r.id.clone()).collect();
    let observer = Arc::new(Coverage::new(period.since, period.until));
    let mut done = run(&ctx, runtime, Some(observer.clone()), &opts)?;
    let matches = observer.counts();
    let diff = std::mem::take(&mut done.comparison).finish(&|_| true);
    let from_log = cli.rules.is_none();
    let pick = |c: leadflow_engine::backtest::Counts| if from_log { c.live } else { c.candidate };
    let rows: Vec<Row> = ids
        .iter()
        .map(|id| {
            let m = matches.get(id).copied().unwrap_or_default();
            let fired = diff.by_rule.get(id).copied().map(pick).unwrap_or(0);
            let failed = done.failures.get(id).copied().map(pick).unwrap_or(0);
            Row {
                rule: id.clone(),
                matched: m.matched,
                condition_false: m.condition_false,
                fired: m.matched.saturating_sub(m.condition_false),
                acted: fired.saturating_sub(failed),
                failed,
            }
        })
        .collect();
    let never: Vec<&str> = rows
        .iter()
        .filter(|r| r.matched == 0)
        .map(|r| r.rule.as_str())
        .collect();
    if ctx.json {
        json_line(&serde_json::json!({
            "rules": source,
            "events": done.events,
            "coverage": rows,
            "never_matched": never,
        }));
        return Ok(());
    }
    outln!("coverage of {source} over {} events", done.events);
    let mut t = Table::new(&[
        "RULE",
        "MATCHED",
        "CONDITION FALSE",
        "FIRED",
        "ACTED",
        "FAILED",
    ]);
    for r in &rows {
        t.row(vec![
            r.rule.clone(),
            r.matched.to_string(),
            r.condition_false.to_string(),
            r.fired.to_string(),
            r.acted.to_string(),
            r.failed.to_string(),
        ]);
    }
    t.print();
    if never.is_empty() {
        outln!("every rule matched at least once");
    } else {
        outln!("never matched: {}", never.join(", "));
    }
    Ok(())
}

/// The rule set in force: the log's latest `ruleset.activated`, loaded against today's
/// configuration.
fn in_force(ctx: &Ctx) -> Result<(Runtime, String), CliError> {
    let head = ctx.store.last_position()?;
    let Some(rec) = leadflow_store::history::ruleset_at(&ctx.store, head)? else {
        return Err(CliError::Refused(
            "no rule set was ever activated in this database: give a rule folder with --rules DIR"
                .into(),
        ));
    };
    let Ok(Event::RulesetActivated(set)) = rec.decode() else {
        return Err(CliError::Refused(format!(
            "the rule set activated at position {} does not read",
            rec.position
        )));
    };
    let runtime =
        leadflow_robots::backtest::recorded_runtime(&set, &ctx.config).map_err(CliError::Rules)?;
    Ok((
        runtime,
        format!(
            "the rule set in force ({}, activated at position {})",
            leadflow_engine::explain::short_hash(&set.hash),
            rec.position
        ),
    ))
}
