//! `history`, `explain` and the state as of a time or position (`replay --until --into`, the
//! `show` subcommands' and `report`'s `--as-of`): the audit of the log, for auditors and ops.
//!
//! The timeline and the chain of causes, with the words for events and the re-evaluated
//! conditions, are `leadflow_report::audit` (shared with the dashboard); the reads, bounded by
//! the position asked for, `store::history`. This module prints them.

use crate::cli::{ExplainArgs, HistoryArgs, HistoryKind, ReplayArgs};
use crate::ctx::{Ctx, parse_time};
use crate::error::CliError;
use crate::output::{Table, json_line, json_pretty, time};
use chrono::{DateTime, Utc};
use leadflow_engine::explain::{self, Origin};
use leadflow_engine::stored::RecordedEvent;
use leadflow_engine::{EntityKind, StreamId};
use leadflow_report::audit;
use leadflow_store::{Options, Store, Synchronous, history, to_hex};
use serde_json::{Value, json};
use std::path::Path;

/// A position or time (`T|POS`) as the log's position then and the instant it stands for: a
/// number is a position (it must be in the log; the instant is when its event occurred),
/// anything else a time (`2026-03-02 12:00` in the calendar's zone, RFC 3339, `-1d`): the last
/// event before the first that occurred after it.
pub(crate) fn resolve_at(
    ctx: &Ctx,
    text: &str,
    flag: &str,
) -> Result<(i64, DateTime<Utc>), CliError> {
    if text.trim().parse::<i64>().is_ok() {
        let p = resolve(ctx, text, flag)?;
        let e = history::event_at(&ctx.store, p)?
            .ok_or_else(|| CliError::Unknown(format!("{flag} {p}: no event at position {p}")))?;
        return Ok((p, e.occurred_at().map_err(|e| CliError::Store(e.into()))?));
    }
    let t = parse_time(text, &ctx.config, Some(ctx.clock.now()))
        .map_err(|e| CliError::Usage(format!("{flag} '{text}': {e}")))?;
    Ok((resolve(ctx, text, flag)?, t))
}

/// A position or time (`T|POS`) as the log's position then: a number is a position (it must
/// be in the log), anything else a time (`2026-03-02 12:00` in the calendar's zone, RFC 3339,
/// `-1d`), the last event before the first that occurred after it.
pub(crate) fn resolve(ctx: &Ctx, text: &str, flag: &str) -> Result<i64, CliError> {
    let head = ctx.store.last_position()?;
    if let Ok(p) = text.trim().parse::<i64>() {
        if p < 1 {
            return Err(CliError::Usage(format!("{flag} {p}: positions start at 1")));
        }
        if p > head {
            return Err(CliError::Unknown(format!(
                "{flag} {p}: position {p} is past the head of the log (position {head})"
            )));
        }
        return Ok(p);
    }
    let t = parse_time(text, &ctx.config, Some(ctx.clock.now()))
        .map_err(|e| CliError::Usage(format!("{flag} '{text}': {e}")))?;
    let p = history::position_at(&ctx.store, t)?;
    if p == 0 {
        let tz = ctx.config.calendar.timezone;
        return Err(CliError::Unknown(match history::event_at(&ctx.store, 1)? {
            None => format!("{flag} {}: the log is empty", time(tz, t)),
            Some(first) => format!(
                "{flag} {}: that is before the log's start (its first event occurred at {})",
                time(tz, t),
                first
                    .occurred_at()
                    .map_or_else(|_| first.occurred_at.clone(), |f| time(tz, f))
            ),
        }));
    }
    Ok(p)
}

/// When an event occurred, for people.
fn occurred(ctx: &Ctx, e: &RecordedEvent) -> String {
    audit::occurred(&ctx.config, e)
}

/// An event in words.
fn words(ctx: &Ctx, e: &RecordedEvent) -> String {
    audit::words(&ctx.config, e)
}

/// `leadflow history KIND ID`: the stream's timeline, then what is still pending.
pub(crate) fn history(ctx: &Ctx, args: HistoryArgs) -> Result<(), CliError> {
    let kind = match args.kind {
        HistoryKind::Lead => EntityKind::Lead,
        HistoryKind::Deal => EntityKind::Deal,
        HistoryKind::Contact => EntityKind::Contact,
        HistoryKind::Company => EntityKind::Company,
    };
    // `7` or `lead-7` (read here: `entity` imports this module, so this one does not import it).
    let id = args.id.trim();
    let stream: StreamId = id
        .strip_prefix(kind.as_str())
        .and_then(|rest| rest.strip_prefix('-'))
        .unwrap_or(id)
        .parse::<i64>()
        .ok()
        .filter(|id| *id > 0)
        .map(|id| StreamId::new(kind, id))
        .ok_or_else(|| {
            CliError::Usage(format!("'{id}' is not a {kind} id; write 42 or {kind}-42"))
        })?;
    let line = audit::timeline(&ctx.store, stream)?;
    let (events, activations, timers, tasks) =
        (&line.events, &line.activations, &line.timers, &line.tasks);
    let tz = ctx.config.calendar.timezone;
    if ctx.json {
        let rows: Vec<Value> = events
            .iter()
            .map(|e| {
                let rule = explain::rule_of(&e.actor);
                json!({
                    "position": e.position,
                    "version": e.version,
                    "occurred_at": e.occurred_at,
                    "type": e.event_type,
                    "text": words(ctx, e),
                    "actor": e.actor,
                    "rule": rule,
                    "ruleset": rule.and(audit::in_force(activations, e.position)),
                    "causation": e.causation,
                    "correlation": e.correlation,
                })
            })
            .collect();
        json_pretty(&json!({
            "stream": stream.to_string(),
            "timezone": tz.name(),
            "events": rows,
            "pending": {
                "timers": timers.iter().map(crate::journal::timer_json).collect::<Vec<_>>(),
                "tasks": tasks,
            },
        }));
        return Ok(());
    }
    outln!("{stream}: {} events (times in {})", events.len(), tz.name());
    let mut table = Table::new(&["POS", "WHEN", "WHAT", "ACTOR", "RULE", "RULE SET"]);
    for e in events {
        let rule = explain::rule_of(&e.actor);
        table.row(vec![
            e.position.to_string(),
            occurred(ctx, e),
            words(ctx, e),
            e.actor.clone(),
            rule.unwrap_or("-").to_owned(),
            rule.and(audit::in_force(activations, e.position))
                .map_or("-", explain::short_hash)
                .to_owned(),
        ]);
    }
    table.print();
    if timers.is_empty() && tasks.is_empty() {
        outln!("pending: nothing");
        return Ok(());
    }
    outln!("pending:");
    for t in timers {
        let what = audit::timer_words(t);
        outln!(
            "  {what} due {} (set at position {} by {})",
            time(tz, t.due_at),
            t.set_at_position,
            t.set_by
        );
    }
    for t in tasks {
        outln!(
            "  task-{} «{}» for {} due {}",
            t.id,
            t.title,
            explain::employee(&ctx.config, &t.assignee),
            time(tz, t.due_at)
        );
    }
    Ok(())
}

/// `leadflow explain POS`: the chain of causes back to what started it.
pub(crate) fn explain(ctx: &Ctx, args: ExplainArgs) -> Result<(), CliError> {
    let audit::Explained {
        chain,
        steps,
        started,
    } = audit::explain(&ctx.store, &ctx.config, args.position)?;
    let first = chain.last().expect("a chain has its event");
    let origin = Origin::of(first);
    let cut = first.causation.is_some();
    if ctx.json {
        json_pretty(&json!({"position": args.position, "chain": steps, "started_by": started}));
        return Ok(());
    }
    for (e, s) in chain.iter().zip(&steps) {
        outln!(
            "{} {} {} v{} {}: {}",
            e.position,
            occurred(ctx, e),
            e.stream,
            e.version,
            e.event_type,
            s["text"].as_str().unwrap_or_default()
        );
        outln!("    by {}", e.actor);
        if s["step"] == "timer" {
            outln!(
                "    a timer fired (set at position {})",
                opt_pos(e.causation)
            );
        }
        let Some(rule) = s["rule"].as_object() else {
            continue;
        };
        let hash = rule["ruleset"].as_str().map_or("-", explain::short_hash);
        let file = rule
            .get("file")
            .and_then(Value::as_str)
            .map(|f| format!(" ({f})"))
            .unwrap_or_default();
        outln!(
            "    rule {}{file} of rule set {hash}, triggered by position {}",
            rule["id"].as_str().unwrap_or_default(),
            rule["trigger"]
                .as_i64()
                .map_or_else(|| "-".to_owned(), |p| p.to_string())
        );
        if let Some(n) = rule.get("note").and_then(Value::as_str) {
            outln!("    {n}");
        }
        match rule.get("condition") {
            None => {}
            Some(Value::Null) => outln!("    no condition"),
            Some(c) => {
                let result = match (&c["result"], &c["error"]) {
                    (Value::Bool(b), _) => b.to_string(),
                    (_, Value::String(m)) => format!("could not be evaluated: {m}"),
                    _ => c["note"].as_str().unwrap_or("not evaluated").to_owned(),
                };
                outln!(
                    "    condition: {} → {result}",
                    c["source"].as_str().unwrap_or_default().replace('\n', " ")
                );
                if let Some(read) = c["read"].as_array() {
                    // In the order the condition reads them.
                    let absent = c["absent"].as_array().cloned().unwrap_or_default();
                    for path in read.iter().filter_map(Value::as_str) {
                        if absent.iter().any(|a| a == path) {
                            outln!("      {path} is absent");
                        } else {
                            outln!("      {path} = {}", c["values"][path]);
                        }
                    }
                    outln!("      (the state as of position {})", c["state_at"]);
                }
            }
        }
    }
    outln!(
        "started by: {} {} at position {}{}",
        origin.as_str(),
        first.actor,
        first.position,
        if cut {
            format!(
                " (its cause, position {}, is not in the log)",
                opt_pos(first.causation)
            )
        } else {
            String::new()
        }
    );
    Ok(())
}

fn opt_pos(p: Option<i64>) -> String {
    p.map_or_else(|| "-".to_owned(), |p| p.to_string())
}

/// A new database file at `path`, created here: refused if anything is there already.
fn create_new(path: &Path) -> Result<Store, CliError> {
    // Owner-only, as backups are: a copy of the log holds the webhook endpoints' signing
    // secrets and the clients' personal data (SQLite gives its -wal and -shm the same mode).
    let mut open = std::fs::OpenOptions::new();
    open.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut open, 0o600);
    match open.open(path) {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            return Err(CliError::Refused(format!(
                "{} already exists: replay --into writes a new database and never replaces a file; name another",
                path.display()
            )));
        }
        Err(e) => return Err(CliError::io(path, e)),
    }
    let options = Options {
        synchronous: Synchronous::Full,
        create: true,
        ..Options::default()
    };
    Store::open(path, &options).map_err(CliError::from)
}

/// Copies the log up to `position` into the new database at `into`, its projections rebuilt;
/// a copy that fails is removed.
fn copy(ctx: &Ctx, position: i64, into: &Path, store: Store) -> Result<(i64, String), CliError> {
    let mut store = store;
    let bar = crate::logcmd::progress(position as u64, "copy");
    let out = history::copy_until(&ctx.store, position, &mut store, &mut |p| {
        bar.set_position(p as u64)
    });
    bar.finish_and_clear();
    drop(store);
    match out {
        Ok(Some((p, h))) => Ok((p, to_hex(&h))),
        Ok(None) => {
            leadflow_store::remove_database(into);
            Err(CliError::Unknown(
                "the log is empty: nothing to copy".into(),
            ))
        }
        Err(e) => {
            leadflow_store::remove_database(into);
            Err(e.into())
        }
    }
}

/// `leadflow replay --into FILE [--until T|POS]`: a separate database as the log was then.
pub(crate) fn replay_into(ctx: &Ctx, args: &ReplayArgs, into: &Path) -> Result<(), CliError> {
    let position = match &args.until {
        Some(t) => resolve(ctx, t, "--until")?,
        None => ctx.store.last_position()?,
    };
    if position == 0 {
        return Err(CliError::Unknown(
            "the log is empty: nothing to copy".into(),
        ));
    }
    if let Some(live) = ctx.store.path()
        && live.canonicalize().ok() == into.canonicalize().ok()
    {
        return Err(CliError::Refused(format!(
            "{} is the live database: replay --into writes a new file",
            into.display()
        )));
    }
    let store = create_new(into)?;
    let start = std::time::Instant::now();
    let (head, hash) = copy(ctx, position, into, store)?;
    let secs = start.elapsed().as_secs_f64();
    if ctx.json {
        json_line(&json!({
            "into": into.display().to_string(),
            "head": head,
            "hash": hash,
            "seconds": secs,
        }));
    } else {
        outln!(
            "wrote {}: the log up to position {head} and its projections ({secs:.1}s); head {head}:{hash}",
            into.display()
        );
    }
    Ok(())
}

/// A scratch database as the log was at `position` (in a temporary folder that goes with
/// it), for `show --as-of` and `report --as-of`.
pub(crate) fn as_of_store(
    ctx: &Ctx,
    position: i64,
) -> Result<(tempfile::TempDir, Store), CliError> {
    let dir = tempfile::Builder::new()
        .prefix("leadflow-as-of")
        .tempdir()
        .map_err(|e| CliError::io(std::env::temp_dir(), e))?;
    let path = dir.path().join("as-of.db");
    let options = Options {
        synchronous: Synchronous::Off,
        create: true,
        ..Options::default()
    };
    let mut store = Store::open(&path, &options)?;
    history::copy_until(&ctx.store, position, &mut store, &mut |_| {})?;
    Ok((dir, store))
}

/// Checks that `stream` existed at `position` (`show --as-of`).
pub(crate) fn existed(ctx: &Ctx, stream: StreamId, position: i64) -> Result<(), CliError> {
    if history::stream_until(&ctx.store, stream, position)?.is_empty() {
        let created = ctx.store.read_stream(stream)?.first().map(|e| e.position);
        return Err(CliError::Unknown(match created {
            Some(p) => format!(
                "{stream} did not exist yet at position {position}: it was created at position {p}"
            ),
            None => format!("{stream} does not exist"),
        }));
    }
    Ok(())
}
