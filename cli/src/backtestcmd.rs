//! `leadflow backtest RULES_DIR`: the log's inputs re-run with a candidate rule set in a
//! scratch database (`robots::backtest`; the live database is only read), and the robots'
//! effects of both runs compared per lead and deal — a summary, then each subject's added,
//! removed and changed effects and its divergences (docs/RULES.md, "Backtest and coverage").

use crate::cli::BacktestArgs;
use crate::ctx::{Ctx, parse_time, read_rule_files};
use crate::error::CliError;
use crate::output::{json_line, time};
use chrono::{DateTime, Utc};
use leadflow_engine::backtest::{Change, Diff};
use leadflow_engine::react::Observer;
use leadflow_engine::rules::RuleSet;
use leadflow_engine::{EntityKind, StreamId};
use leadflow_robots::backtest::{BacktestError, Options, Run};
use leadflow_robots::{Registry, RobotError, Runtime};
use leadflow_store::{LogFilter, Store};
use std::path::Path;
use std::sync::Arc;

/// The period a backtest compares, checked against the log.
pub(crate) struct Period {
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
}

/// Reads `--since`/`--until` and refuses a period that is reversed, starts before the log's
/// first event, or holds no event.
pub(crate) fn period(
    ctx: &Ctx,
    since: Option<&str>,
    until: Option<&str>,
) -> Result<Period, CliError> {
    let now = ctx.clock.now();
    let read = |t: Option<&str>, flag: &str| {
        t.map(|t| {
            parse_time(t, &ctx.config, Some(now))
                .map_err(|e| CliError::Usage(format!("{flag}: {e}")))
        })
        .transpose()
    };
    let (since, until) = (read(since, "--since")?, read(until, "--until")?);
    let tz = ctx.config.calendar.timezone;
    if let (Some(s), Some(u)) = (since, until)
        && s > u
    {
        return Err(CliError::Usage(format!(
            "--since {} is after --until {}",
            time(tz, s),
            time(tz, u)
        )));
    }
    let Some(first) = ctx
        .store
        .read_log(&LogFilter::default(), 0, 1)?
        .into_iter()
        .next()
    else {
        return Err(CliError::Refused(
            "the log is empty: there is no history to run".into(),
        ));
    };
    let start = first.occurred_at().map_err(leadflow_store::Error::from)?;
    for (t, flag) in [(since, "--since"), (until, "--until")] {
        if let Some(t) = t
            && t < start
        {
            return Err(CliError::Usage(format!(
                "{flag} {} is before the log's start ({})",
                time(tz, t),
                time(tz, start)
            )));
        }
    }
    let within = ctx.store.read_log(
        &LogFilter {
            since,
            until: until.and_then(|u| u.checked_add_signed(chrono::Duration::microseconds(1))),
            ..LogFilter::default()
        },
        0,
        1,
    )?;
    if within.is_empty() {
        return Err(CliError::Refused(format!(
            "no event happened from {} to {}: the period is empty",
            since.map_or_else(|| "the log's start".to_owned(), |t| time(tz, t)),
            until.map_or_else(|| "the log's end".to_owned(), |t| time(tz, t)),
        )));
    }
    Ok(Period { since, until })
}

/// Loads a candidate rule folder whole or not at all (every problem with file:line:col).
pub(crate) fn candidate(ctx: &Ctx, dir: &Path) -> Result<Runtime, CliError> {
    let sources = read_rule_files(dir)?;
    let registry = Registry::builtin();
    let rules = RuleSet::load(&sources, &ctx.config, &registry).map_err(CliError::Rules)?;
    Ok(Runtime::new(ctx.config.clone(), rules, registry))
}

/// Runs the backtest in a scratch database in a temporary folder (removed afterwards).
pub(crate) fn run(
    ctx: &Ctx,
    runtime: Runtime,
    observer: Option<Arc<dyn Observer>>,
    opts: &Options,
) -> Result<Run, CliError> {
    let head = ctx.store.last_position()?;
    let live_has_rules = !leadflow_store::history::activations(&ctx.store, head)?.is_empty();
    let dir =
        tempfile::tempdir().map_err(|e| CliError::io(Path::new("the temporary folder"), e))?;
    let mut sandbox = Store::open_scratch(dir.path().join("sandbox.db"))?;
    let opts = Options {
        head: Some(head),
        ..opts.clone()
    };
    // Its writes held in transactions of many moments each; the folder is removed
    // afterwards, so the last of them is left uncommitted.
    let mut batch = sandbox.batched(leadflow_robots::backtest::BATCH_EVENTS);
    leadflow_robots::backtest::run(
        &ctx.store,
        &mut batch,
        runtime,
        observer,
        live_has_rules,
        &opts,
    )
    .map_err(|e| match e {
        BacktestError::Store(e) => CliError::Robot(RobotError::from(e)),
        BacktestError::Robot(e) => CliError::Robot(e),
        e @ BacktestError::Recorded { .. } => CliError::Refused(e.to_string()),
    })
}

/// `leadflow backtest`.
pub(crate) fn backtest(ctx: &Ctx, args: BacktestArgs) -> Result<(), CliError> {
    let runtime = match &args.rules_dir {
        Some(dir) => candidate(ctx, dir)?,
        // --as-recorded: the log's first activation replaces this empty set.
        None => {
            let registry = Registry::builtin();
            let rules = RuleSet::load(&[], &ctx.config, &registry).map_err(CliError::Rules)?;
            Runtime::new(ctx.config.clone(), rules, registry)
        }
    };
    let period = period(ctx, args.since.as_deref(), args.until.as_deref())?;
    for id in &args.leads {
        let lead = StreamId::new(EntityKind::Lead, *id);
        if ctx.store.stream_version(lead)? == 0 {
            return Err(CliError::Unknown(format!("{lead} is not in the log")));
        }
    }
    let opts = Options {
        since: period.since,
        until: period.until,
        as_recorded: args.as_recorded,
        head: None,
    };
    let rules = runtime.rules().rules.len();
    let started = std::time::Instant::now();
    let mut run = run(ctx, runtime, None, &opts)?;
    let names: Vec<String> = args.leads.iter().map(|id| format!("lead-{id}")).collect();
    let keep = |subject: &str| {
        names.is_empty()
            || names.iter().any(|n| {
                subject == n
                    || subject.ends_with(&format!(" from {n}"))
                    || subject.contains(&format!(" from {n} #"))
            })
    };
    let diff = std::mem::take(&mut run.comparison).finish(&keep);
    tracing::info!(took = ?started.elapsed(), events = run.events, "backtest done");
    if ctx.json {
        json_line(&serde_json::json!({
            "summary": diff.summary(),
            "identical": diff.is_empty(),
            "events": run.events,
            "inputs": run.inputs,
            "sandbox_events": run.sandbox_events,
            "subjects": diff.subjects,
            "differing": diff.differing,
            "by_type": diff.by_type,
            "by_rule": diff.by_rule,
            "divergences": diff.divergences,
        }));
        return Ok(());
    }
    print(ctx, &diff, &run, rules, args.rules_dir.as_deref());
    Ok(())
}

/// The summary, then the per-subject differences.
fn print(ctx: &Ctx, diff: &Diff, run: &Run, rules: usize, dir: Option<&Path>) {
    let tz = ctx.config.calendar.timezone;
    let span = run
        .span
        .map(|(a, b)| format!(", {} to {}", time(tz, a), time(tz, b)))
        .unwrap_or_default();
    outln!(
        "backtest of {} ({rules} rule{}) over {} events{span}: {} inputs re-run",
        dir.map_or_else(
            || "the recorded rule sets".to_owned(),
            |d| d.display().to_string()
        ),
        if rules == 1 { "" } else { "s" },
        run.events,
        run.inputs,
    );
    outln!("{}", diff.summary());
    for s in &diff.differing {
        outln!("");
        outln!("{}:", s.subject);
        for c in &s.changes {
            outln!("  {}", change_line(tz, c));
        }
        for d in &s.divergences {
            outln!(
                "  ! diverged at {} (position {}): {} by {}: {}",
                time(tz, d.at),
                d.position,
                d.kind,
                d.actor,
                d.reason
            );
        }
    }
}

/// One change in words: `+ added task.created (rule qualify) at …: {…}`.
fn change_line(tz: chrono_tz::Tz, c: &Change) -> String {
    let side = |s: &leadflow_engine::backtest::Side| format!("at {}: {}", time(tz, s.at), s.detail);
    match (&c.live, &c.candidate) {
        (Some(l), Some(n)) => format!(
            "~ changed {} (rule {}): live {} → candidate {}",
            c.kind,
            c.rule,
            side(l),
            side(n)
        ),
        (Some(l), None) => format!("- removed {} (rule {}) {}", c.kind, c.rule, side(l)),
        (None, Some(n)) => format!("+ added {} (rule {}) {}", c.kind, c.rule, side(n)),
        (None, None) => String::new(),
    }
}
