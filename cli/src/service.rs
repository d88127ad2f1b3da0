//! `run`: the rules as a long-running service.
//!
//! Without rules (a fresh `init` leaves only a commented example) it says there is nothing to
//! run and exits 0.
//!
//! One current-thread tokio runtime; all SQLite work happens inline on that thread between
//! awaits (the connection never crosses threads), so a signal is only acted on between
//! transactions: SIGINT or SIGTERM lets the current work commit, logs, and exits 0. A failure
//! (a locked database) is logged and retried; a broken log ([`leadflow_store::Error::Tampered`])
//! is not: `run` stops with its message and exit 1.
//!
//! The loop: every [`POLL`] it compares the head of the log with the one it last saw and
//! processes new events appended by anyone; it sleeps until the earliest of the next timer, the
//! next cron time, the moment the next lead or deal turns idle for an idle rule, and the next
//! poll, then ticks. The
//! rule folder is re-read when its files change; a rule set that no longer loads is logged and
//! the loaded one kept.
//!
//! Between rule passes it delivers the outbox and the webhook subscriptions
//! (`leadflow_delivery`), and wakes when the next attempt is due; without rules it still runs
//! when there is something to deliver (an endpoint, a pending message).

use crate::automation;
use crate::ctx::Ctx;
use crate::error::CliError;
use chrono::{DateTime, Utc};
use leadflow_delivery::{Deliverer, Direct};
use leadflow_robots::{Report, Runtime};
use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// How often the head of the log is polled for events other processes appended.
pub(crate) const POLL: Duration = Duration::from_millis(250);

/// After a failure (a locked or unavailable database), how long to wait before trying again.
const RETRY: Duration = Duration::from_secs(2);

/// `run`: starts the runtime and serves until SIGINT or SIGTERM.
pub(crate) fn run(ctx: Ctx, now_given: bool) -> Result<(), CliError> {
    if now_given {
        return Err(CliError::Usage(
            "`run` follows the wall clock; --now (LEADFLOW_NOW) is for `tick` and commands".into(),
        ));
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::io("the tokio runtime", e))?;
    rt.block_on(async {
        let shutdown = shutdown_signal()?;
        serve(ctx, shutdown).await
    })
}

/// Resolves with the signal's name on SIGINT or SIGTERM. The handlers are installed at once,
/// so a signal that arrives while the loop is busy is not lost.
fn shutdown_signal() -> Result<impl Future<Output = &'static str>, CliError> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let io = |e| CliError::io("signal handler", e);
        let mut int = signal(SignalKind::interrupt()).map_err(io)?;
        let mut term = signal(SignalKind::terminate()).map_err(io)?;
        Ok(async move {
            tokio::select! {
                _ = int.recv() => "SIGINT",
                _ = term.recv() => "SIGTERM",
            }
        })
    }
    #[cfg(not(unix))]
    {
        Ok(async {
            let _ = tokio::signal::ctrl_c().await;
            "Ctrl-C"
        })
    }
}

/// A cheap summary of a rule folder's files, to notice edits.
fn fingerprint(dir: &Path) -> Vec<(PathBuf, u64, Option<SystemTime>)> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let p = e.path();
            if p.extension().is_some_and(|x| x == "toml")
                && let Ok(m) = e.metadata()
            {
                out.push((p, m.len(), m.modified().ok()));
            }
        }
    } else if let Ok(m) = std::fs::metadata(dir) {
        out.push((dir.to_owned(), m.len(), m.modified().ok()));
    }
    out.sort();
    out
}

fn log_report(what: &str, r: &Report) {
    if r.processed + r.timers + r.fired + r.incidents > 0 {
        tracing::info!(
            timers = r.timers,
            processed = r.processed,
            fired = r.fired,
            incidents = r.incidents,
            "{what}"
        );
    }
}

/// The service loop; returns when `shutdown` resolves.
pub(crate) async fn serve(
    mut ctx: Ctx,
    shutdown: impl Future<Output = &'static str>,
) -> Result<(), CliError> {
    tokio::pin!(shutdown);
    let deliverer = Deliverer::new(&ctx.config).map_err(delivery_error)?;
    let mut rt = automation::load(&ctx)?;
    if rt.is_none() && !Deliverer::has_work(&ctx.store).map_err(delivery_error)? {
        // Nothing to run: say so and stop (a service that waits for rule files to appear
        // would look like it works while doing nothing).
        outln!("{}", automation::no_rules_message(&ctx));
        return Ok(());
    }
    let dir = ctx.rules_dir.clone();
    let mut files = dir.as_deref().map(fingerprint).unwrap_or_default();
    let db = ctx
        .store
        .path()
        .map_or_else(|| "memory".into(), |p| p.display().to_string());
    tracing::info!(
        db = %db,
        rules = rt.as_ref().map_or(0, |rt| rt.rules().rules.len()),
        dir = %dir.as_deref().map(Path::display).map(|d| d.to_string()).unwrap_or_default(),
        "leadflow run: started"
    );
    let mut seen: Option<i64> = None;
    let mut wake: Option<DateTime<Utc>> = None;
    // When the next delivery attempt is due (apart from `wake`, which makes the rules tick).
    let mut next_delivery: Option<DateTime<Utc>> = None;
    loop {
        // Rule files edited: load them again (the CLI's commands will activate the new set;
        // keeping the old one would make the two take turns activating theirs).
        if let Some(dir) = &dir {
            let now_files = fingerprint(dir);
            if now_files != files {
                files = now_files;
                match automation::load(&ctx) {
                    Ok(Some(new)) => {
                        tracing::info!(
                            rules = new.rules().rules.len(),
                            "rule files changed: reloaded"
                        );
                        rt = Some(new);
                        // Tick at once: the new set may have other schedules and idle rules.
                        seen = None;
                    }
                    Ok(None) => tracing::warn!(
                        "rule files changed and have no rules now; keeping the loaded rule set"
                    ),
                    Err(e) => tracing::error!(
                        "rule files changed but do not load; keeping the loaded rule set: {e}"
                    ),
                }
            }
        }
        let stepped = match &rt {
            Some(rt) => step(&mut ctx, rt, &mut seen, &mut wake),
            None => Ok(()),
        };
        let delivered = match stepped {
            Ok(()) => {
                tokio::select! {
                    d = deliver(&mut ctx, &deliverer, &mut next_delivery) => d,
                    signal = &mut shutdown => {
                        // An attempt in flight has no outcome: the next run sends it again,
                        // with the same webhook-id.
                        tracing::info!(signal, "leadflow run: stopping");
                        return Ok(());
                    }
                }
            }
            Err(e) => Err(e),
        };
        let pause = match delivered {
            Ok(()) => {
                let now = Utc::now();
                wake.into_iter()
                    .chain(next_delivery)
                    .min()
                    .map_or(POLL, |t| {
                        (t - now).to_std().unwrap_or(Duration::ZERO).min(POLL)
                    })
            }
            // A broken log stays broken: stop, and say so (exit 1).
            Err(e) if e.is_tampered() => return Err(e),
            Err(e) => {
                tracing::error!("{e}; trying again in {}s", RETRY.as_secs());
                seen = None;
                RETRY
            }
        };
        tokio::select! {
            () = tokio::time::sleep(pause) => {}
            signal = &mut shutdown => {
                tracing::info!(signal, "leadflow run: stopping");
                return Ok(());
            }
        }
    }
}

/// The delivery errors as the CLI reports them.
fn delivery_error(e: leadflow_delivery::Error) -> CliError {
    match e {
        leadflow_delivery::Error::Store(s) => CliError::Store(s),
        other => CliError::Usage(other.to_string()),
    }
}

/// Delivers what is due (a few passes while there is more), then sets `next` to the next
/// attempt's time.
async fn deliver(
    ctx: &mut Ctx,
    deliverer: &Deliverer,
    next: &mut Option<DateTime<Utc>>,
) -> Result<(), CliError> {
    for _ in 0..16 {
        let mut db = Direct {
            store: &mut ctx.store,
            clock: ctx_clock(),
        };
        let r = deliverer
            .run_once(&mut db, ctx_clock())
            .await
            .map_err(delivery_error)?;
        if !r.is_empty() {
            tracing::info!(
                queued = r.queued,
                attempts = r.attempts,
                delivered = r.delivered,
                retried = r.retried,
                failed = r.failed,
                "delivered"
            );
        }
        if !r.more {
            break;
        }
    }
    *next = Deliverer::next_due(&ctx.store).map_err(delivery_error)?;
    Ok(())
}

/// The wall clock, for delivery attempts and `recorded_at`.
fn ctx_clock() -> &'static dyn leadflow_engine::Clock {
    &crate::ctx::SystemClock
}

/// One pass: a tick if something is due (or on the first pass), else processing if the log
/// grew; then when to wake next.
fn step(
    ctx: &mut Ctx,
    rt: &Runtime,
    seen: &mut Option<i64>,
    wake: &mut Option<DateTime<Utc>>,
) -> Result<(), CliError> {
    let now = Utc::now();
    let head = ctx.store.last_position()?;
    let due = seen.is_none() || wake.is_some_and(|t| t <= now);
    if due {
        let r = rt.tick(&mut ctx.store, now).map_err(CliError::Robot)?;
        log_report("tick", &r);
    } else if Some(head) != *seen {
        let r = rt.process(&mut ctx.store, now).map_err(CliError::Robot)?;
        log_report("processed", &r);
    } else {
        return Ok(());
    }
    *seen = Some(ctx.store.last_position()?);
    *wake = rt.next_wake(&ctx.store, now).map_err(CliError::Robot)?;
    Ok(())
}
