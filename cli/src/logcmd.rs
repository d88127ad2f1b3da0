//! `events`, `replay` and `verify`: the log as ops and auditors see it.

use crate::cli::{EventsArgs, VerifyArgs};
use crate::ctx::{Ctx, parse_time};
use crate::error::CliError;
use crate::output::{Table, clip, json_line, time};
use indicatif::{ProgressBar, ProgressStyle};
use leadflow_store::{LogFilter, RecordedEvent, from_hex, to_hex};
use serde_json::json;

/// A progress bar on stderr, hidden when stderr is not a terminal.
pub(crate) fn progress(len: u64, what: &str) -> ProgressBar {
    let bar = ProgressBar::new(len);
    if !std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    bar.set_style(
        ProgressStyle::with_template("{msg:>10} [{bar:40}] {pos}/{len} ({per_sec}, {eta})")
            .expect("valid template")
            .progress_chars("=> "),
    );
    bar.set_message(what.to_owned());
    bar
}

pub(crate) fn events(ctx: &Ctx, args: EventsArgs) -> Result<(), CliError> {
    let filter = LogFilter {
        stream: args
            .stream
            .as_deref()
            .map(|s| s.parse().map_err(CliError::Usage))
            .transpose()?,
        types: args.types.clone(),
        actor: args.actor.as_deref().map(|a| {
            if a.contains(':') || a == "system" {
                a.to_owned()
            } else {
                format!("employee:{a}")
            }
        }),
        since: args
            .since
            .as_deref()
            .map(|t| parse_time(t, &ctx.config, None))
            .transpose()?,
        until: args
            .until
            .as_deref()
            .map(|t| parse_time(t, &ctx.config, None))
            .transpose()?,
    };
    let tz = ctx.config.calendar.timezone;
    let occurred = |e: &RecordedEvent| {
        e.occurred_at()
            .map_or_else(|_| e.occurred_at.clone(), |t| time(tz, t))
    };
    const PAGE: usize = 2048;
    let mut after = args.after;
    let mut left = if args.limit == 0 {
        usize::MAX
    } else {
        args.limit
    };
    let mut table = Table::new(&[
        "POS", "OCCURRED", "STREAM", "VER", "TYPE", "ACTOR", "PAYLOAD",
    ]);
    loop {
        let page = ctx.store.read_log(&filter, after, PAGE.min(left))?;
        for e in &page {
            if ctx.json || args.follow {
                if ctx.json {
                    json_line(&e.to_json());
                } else {
                    outln!(
                        "{} {} {} v{} {} {} {}",
                        e.position,
                        occurred(e),
                        e.stream,
                        e.version,
                        e.event_type,
                        e.actor,
                        e.shown_payload()
                    );
                }
            } else {
                table.row(vec![
                    e.position.to_string(),
                    occurred(e),
                    e.stream.to_string(),
                    e.version.to_string(),
                    e.event_type.clone(),
                    e.actor.clone(),
                    clip(&e.shown_payload().to_string(), 60),
                ]);
            }
            after = e.position;
        }
        left -= page.len();
        if left == 0 {
            break;
        }
        if page.len() < PAGE.min(left) {
            if !args.follow {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(250));
        }
    }
    if !ctx.json && !args.follow {
        if after == args.after {
            outln!("no matching events");
        } else {
            table.print();
        }
    }
    Ok(())
}

pub(crate) fn replay(ctx: &mut Ctx) -> Result<(), CliError> {
    let total = ctx.store.last_position()?;
    let bar = progress(total as u64, "replay");
    let start = std::time::Instant::now();
    let reached = ctx.store.replay(&mut |p| bar.set_position(p as u64))?;
    bar.finish_and_clear();
    if ctx.json {
        json_line(&json!({"replayed": reached, "seconds": start.elapsed().as_secs_f64()}));
    } else {
        outln!(
            "rebuilt the projections from {reached} events in {:.1}s",
            start.elapsed().as_secs_f64()
        );
    }
    Ok(())
}

/// A head as `verify` prints it, `POSITION:HASH`.
pub(crate) fn parse_head(text: &str) -> Result<(i64, leadflow_store::Hash), CliError> {
    let bad = || {
        CliError::Usage(format!(
            "bad --head '{text}': write POSITION:HASH as printed by `leadflow verify`"
        ))
    };
    let (p, h) = text.split_once(':').ok_or_else(bad)?;
    let p: i64 = p.trim().parse().map_err(|_| bad())?;
    let h = from_hex(h.trim()).ok_or_else(bad)?;
    Ok((p, h))
}

pub(crate) fn verify(ctx: &mut Ctx, args: VerifyArgs) -> Result<(), CliError> {
    let kept = args.head.as_deref().map(parse_head).transpose()?;
    // The chain, the kept head, the projections and their fresh replay are read from one
    // snapshot, so what other processes commit meanwhile cannot make them disagree.
    let (report, problems, diffs) = ctx.store.snapshot(|snap| {
        let total = snap.last_position()?;
        let bar = progress(total as u64, "chain");
        let report = snap.verify_chain(&mut |p| bar.set_position(p as u64))?;
        bar.finish_and_clear();
        let mut problems: Vec<String> = Vec::new();
        if let Some(p) = &report.problem {
            problems.push(format!(
                "chain: broken at position {}: {}",
                p.position, p.why
            ));
        }
        if let Some((pos, hash)) = kept {
            match snap.hash_at(pos)? {
                None => problems.push(format!(
                    "head: the kept head is at position {pos}, but the log ends at {total}: the newest events were cut off"
                )),
                Some(h) if h != hash => problems.push(format!(
                    "head: the hash at position {pos} differs from the kept head: the log was rewritten from there or earlier"
                )),
                Some(_) => {}
            }
        }
        let mut diffs = Vec::new();
        if !args.chain_only && report.problem.is_none() {
            let bar = progress(total as u64, "replay");
            diffs = snap.verify_projections(&mut |p| bar.set_position(p as u64))?;
            bar.finish_and_clear();
            for d in &diffs {
                problems.push(format!(
                    "projections: table {} differs from a fresh replay ({} live rows not reproduced, {} replayed rows missing; first key {}); run `leadflow replay`",
                    d.table,
                    d.only_live,
                    d.only_replayed,
                    d.first_key.map_or("-".into(), |k| k.to_string())
                ));
            }
        }
        Ok::<_, CliError>((report, problems, diffs))
    })?;
    let head = report.head.map(|(p, h)| format!("{p}:{}", to_hex(&h)));
    if ctx.json {
        json_line(&json!({
            "ok": problems.is_empty(),
            "events": report.events,
            "head": head,
            "first_bad_position": report.problem.as_ref().map(|p| p.position),
            "problems": problems,
        }));
    } else {
        if report.problem.is_none() {
            outln!("chain: ok, {} events", report.events);
        }
        if kept.is_some() && !problems.iter().any(|p| p.starts_with("head:")) {
            outln!("head: matches the kept head");
        }
        if !args.chain_only && report.problem.is_none() && diffs.is_empty() {
            outln!("projections: ok, equal to a fresh replay");
        }
        if let Some(h) = &head {
            outln!("head: {h}");
            if report.problem.is_none() {
                outln!(
                    "      (keep this elsewhere; `leadflow verify --head {h}` later proves nothing was cut off)"
                );
            }
        }
        for p in &problems {
            errln!("{p}");
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(CliError::Verify(format!(
            "verification failed: {} problem{}",
            problems.len(),
            if problems.len() == 1 { "" } else { "s" }
        )))
    }
}
