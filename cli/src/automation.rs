//! Rules in the CLI: loading the rule set of the folder [`Ctx`] found, running its robots after
//! every command that appends, and `tick`.
//!
//! A folder without any rule (only comments, as `init` leaves it) is the same as no folder:
//! nothing is activated and commands behave as without rules.

use crate::ctx::{Ctx, read_rule_files};
use crate::error::CliError;
use crate::output::json_line;
use chrono::{DateTime, SecondsFormat, Utc};
use leadflow_engine::Config;
use leadflow_engine::rules::RuleSet;
use leadflow_robots::{Registry, Runtime};
use leadflow_store::{Executed, LogFilter, RecordedEvent, Store};
use serde_json::json;
use std::path::Path;

/// Loads and validates the rule set in `dir`: `None` if it has no rules, every problem with
/// file:line:col if it does not load.
pub(crate) fn load_rule_set(dir: &Path, config: &Config) -> Result<Option<RuleSet>, CliError> {
    let sources = read_rule_files(dir)?;
    let set = RuleSet::load(&sources, config, &Registry::builtin()).map_err(CliError::Rules)?;
    for w in &set.warnings {
        tracing::warn!("{w}");
    }
    Ok((!set.rules.is_empty()).then_some(set))
}

/// The runtime for the context's rule folder, or `None` when there is no rule set.
pub(crate) fn load(ctx: &Ctx) -> Result<Option<Runtime>, CliError> {
    let Some(dir) = &ctx.rules_dir else {
        return Ok(None);
    };
    Ok(load_rule_set(dir, &ctx.config)?.map(|set| {
        Runtime::new(ctx.config.clone(), set, Registry::builtin())
            .with_wall_clock(std::sync::Arc::new(crate::ctx::SystemClock))
    }))
}

/// Before a command appends: loads the rule set (a bad one fails here, before anything is
/// appended) and runs the rules' backlog (what a crash left unprocessed), so the command is
/// decided on the state the robots leave; on a database where the rules never ran, starts their
/// cursor at the head. Nothing is appended for the command itself: the rule set is activated
/// (if it is not the one in force) after a command that succeeds, by [`settle`], and the rules
/// see the command's events — a refused command leaves the log as it was.
pub(crate) fn before_command(ctx: &mut Ctx) -> Result<Option<Runtime>, CliError> {
    let Some(rt) = load(ctx)? else {
        return Ok(None);
    };
    let report = rt
        .before_command(&mut ctx.store, ctx.clock.now())
        .map_err(CliError::Robot)?;
    if report.processed > 0 {
        tracing::info!(
            processed = report.processed,
            "ran the rules on events a previous command left unprocessed"
        );
    }
    Ok(Some(rt))
}

/// What the rules did after a command.
#[derive(Debug, Default)]
pub(crate) struct Effects {
    /// The robots' events caused by the command (at most [`EFFECTS_SHOWN`]).
    pub events: Vec<RecordedEvent>,
    /// How many there were in all.
    pub total: usize,
    /// Robot failures recorded as incidents.
    pub incidents: usize,
}

/// How many robot events a command lists.
pub(crate) const EFFECTS_SHOWN: usize = 20;

/// After a command appended (or changed nothing): runs the rules until every event is
/// processed, and collects the robots' events caused by the command (those of its
/// correlation). `done` says what was recorded, for the message if the rules fail. The rules
/// react at the command's moment `at` (as the service's do, in the command's transaction),
/// not at a second reading of the clock: what they schedule counts from the command, and a
/// backtest, which reacts at the recorded input's time, finds the same.
pub(crate) fn settle(
    ctx: &mut Ctx,
    rt: &Runtime,
    out: Option<&Executed>,
    done: &str,
    at: DateTime<Utc>,
) -> Result<Effects, CliError> {
    let report = rt
        .process(&mut ctx.store, at)
        .map_err(|source| CliError::RulesFailed {
            done: done.to_owned(),
            source,
        })?;
    let mut effects = Effects {
        incidents: report.incidents,
        ..Effects::default()
    };
    if report.incidents > 0 {
        eprintln!(
            "warning: {} robot failure{} recorded as incidents; see `leadflow journal --incidents`",
            report.incidents,
            if report.incidents == 1 { "" } else { "s" }
        );
    }
    let Some(appended) = out.and_then(|o| o.appended.as_ref()) else {
        return Ok(effects);
    };
    let correlation = appended.first_position;
    let mut after = appended.last_position;
    loop {
        let page = ctx.store.read_log(&LogFilter::default(), after, 256)?;
        let Some(last) = page.last() else { break };
        after = last.position;
        for e in page {
            if e.correlation == correlation {
                effects.total += 1;
                if effects.events.len() < EFFECTS_SHOWN {
                    effects.events.push(e);
                }
            }
        }
    }
    Ok(effects)
}

/// Prints the robots' events after a command's own line.
pub(crate) fn print_effects(effects: &Effects) {
    for e in &effects.events {
        outln!(
            "  {} {} v{} by {} (position {})",
            e.event_type,
            e.stream,
            e.version,
            e.actor,
            e.position
        );
    }
    if effects.total > effects.events.len() {
        outln!(
            "  … and {} more robot events",
            effects.total - effects.events.len()
        );
    }
}

/// The robots' events as JSON, for `--json` outputs.
pub(crate) fn effects_json(effects: &Effects) -> serde_json::Value {
    json!(
        effects
            .events
            .iter()
            .map(|e| json!({"position": e.position, "stream": e.stream.to_string(), "type": e.event_type, "actor": e.actor}))
            .collect::<Vec<_>>()
    )
}

/// An RFC 3339 time with seconds, for summaries.
pub(crate) fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// How many events of `ty` were appended after `after`.
pub(crate) fn count_after(store: &Store, ty: &str, after: i64) -> Result<usize, CliError> {
    let filter = LogFilter {
        types: vec![ty.to_owned()],
        ..LogFilter::default()
    };
    let (mut n, mut after) = (0, after);
    loop {
        let page = store.read_log(&filter, after, 1024)?;
        let Some(last) = page.last() else {
            return Ok(n);
        };
        after = last.position;
        n += page.len();
    }
}

fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// What `tick` and `run` say when there is no rule set: nothing to run, which is not an
/// error (a fresh `init` leaves only a commented example).
pub(crate) fn no_rules_message(ctx: &Ctx) -> String {
    match &ctx.rules_dir {
        Some(dir) => format!(
            "no rules in {}: nothing to run (uncomment the example or add rule files; see docs/RULES.md)",
            dir.display()
        ),
        None => "no rule set: nothing to run (create rules/ beside the configuration or pass --rules DIR)"
            .into(),
    }
}

/// `tick`: fires everything due up to now (`--now` or the wall clock) and runs the rules.
pub(crate) fn tick(ctx: &mut Ctx) -> Result<(), CliError> {
    let now = ctx.clock.now();
    let Some(rt) = load(ctx)? else {
        if ctx.json {
            json_line(&json!({
                "now": rfc3339(now),
                "rules": 0,
                "timers": 0,
                "processed": 0,
                "fired": 0,
                "incidents": 0,
                "escalations": 0,
                "next_due": null,
            }));
        } else {
            outln!("{}", no_rules_message(ctx));
        }
        return Ok(());
    };
    // With no rules nothing is written, so there is nothing to backdate.
    ctx.check_backdate()?;
    let tz = ctx.config.calendar.timezone;
    let before = ctx.store.last_position()?;
    let report = rt.tick(&mut ctx.store, now).map_err(CliError::Robot)?;
    let incidents = count_after(&ctx.store, "incident.recorded", before)?;
    let escalations = count_after(&ctx.store, "escalation.recorded", before)?;
    let next = rt.next_wake(&ctx.store, now).map_err(CliError::Robot)?;
    if ctx.json {
        json_line(&json!({
            "now": rfc3339(now),
            "rules": rt.rules().rules.len(),
            "timers": report.timers,
            "processed": report.processed,
            "fired": report.fired,
            "incidents": incidents,
            "escalations": escalations,
            "next_due": next.map(rfc3339),
        }));
    } else {
        outln!(
            "tick at {}: {} fired, {} processed, {} fired, {}, {}; next due {}",
            crate::output::time(tz, now),
            plural(report.timers, "timer", "timers"),
            plural(report.processed, "event", "events"),
            plural(report.fired, "rule", "rules"),
            plural(incidents, "incident", "incidents"),
            plural(escalations, "escalation", "escalations"),
            next.map_or_else(|| "never".to_owned(), |t| crate::output::time(tz, t))
        );
    }
    Ok(())
}
