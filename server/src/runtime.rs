//! The rules in the service: the rule set in force (swapped whole on reload), and the
//! background tasks that do what `leadflow run` does — react to events other processes
//! appended, fire timers, schedules and idle rules when due, and run the external robots'
//! requests after the commits that made them. Every write they make is a writer job.

use crate::error::ApiError;
use crate::readers::Readers;
use crate::writer::{Answer, Writer};
use chrono::{DateTime, Utc};
use leadflow_engine::Clock;
use leadflow_robots::Runtime;
use serde_json::json;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;
use tokio::sync::watch;

/// How often the log's head is compared with the rules' cursor (for events other processes
/// appended) when nothing else wakes the loop.
pub const POLL: Duration = Duration::from_millis(250);

/// How long an `Idempotency-Key`'s response is kept: the issue promises at least a day, and a
/// client retrying over a weekend outage is served by two.
pub const KEEP_RESPONSES: chrono::TimeDelta = chrono::TimeDelta::hours(48);

/// How often responses older than [`KEEP_RESPONSES`] are forgotten (and once at the start).
pub const FORGET_EVERY: Duration = Duration::from_secs(3600);

/// The rule set in force, if any; cheap to clone, swapped whole.
#[derive(Clone, Default)]
pub struct Rules {
    current: Arc<RwLock<Option<Arc<Runtime>>>>,
    /// The positions of the external robots' requests this process's rules made.
    mine: Arc<Mutex<Vec<i64>>>,
}

impl Rules {
    /// Rules in force from the start.
    pub fn new(rt: Option<Runtime>) -> Rules {
        Rules {
            current: Arc::new(RwLock::new(rt.map(Arc::new))),
            mine: Arc::default(),
        }
    }

    /// The rule set in force now.
    pub fn current(&self) -> Option<Arc<Runtime>> {
        self.current.read().ok().and_then(|g| g.clone())
    }

    /// Puts a new rule set in force (at the writer's next batch).
    pub fn replace(&self, rt: Option<Runtime>) {
        if let Ok(mut g) = self.current.write() {
            *g = rt.map(Arc::new);
        }
    }

    /// Notes requests made by this process's rules.
    pub(crate) fn add_mine(&self, positions: &[i64]) {
        if let Ok(mut m) = self.mine.lock() {
            m.extend_from_slice(positions);
        }
    }

    pub(crate) fn has_mine(&self) -> bool {
        self.mine.lock().is_ok_and(|m| !m.is_empty())
    }

    fn mine(&self) -> Vec<i64> {
        self.mine.lock().map(|m| m.clone()).unwrap_or_default()
    }

    fn forget(&self, position: i64) {
        if let Ok(mut m) = self.mine.lock() {
            m.retain(|p| *p != position);
        }
    }
}

/// What the background tasks need.
#[derive(Clone)]
pub struct Background {
    /// The rule set.
    pub rules: Rules,
    /// The writer.
    pub writer: Writer,
    /// Read connections.
    pub readers: Readers,
    /// The wall clock.
    pub clock: Arc<dyn Clock>,
}

/// Forgets the remembered responses older than [`KEEP_RESPONSES`] on the batch's clock (a
/// writer job, so it commits with whatever else the batch holds), and logs how many.
pub async fn forget_responses(writer: &Writer) -> Result<(), ApiError> {
    let a = writer
        .run_rules(Box::new(|tx, ctx| {
            let before = leadflow_engine::stored::fmt_time(ctx.now - KEEP_RESPONSES);
            Ok(Answer::ok(json!(tx.forget_responses(&before)?)))
        }))
        .await?;
    let n = a.body.as_u64().unwrap_or(0);
    if n > 0 {
        tracing::info!(forgotten = n, "forgot idempotency keys older than 48 hours");
    }
    Ok(())
}

/// Forgets old responses every [`FORGET_EVERY`] until `stop` turns true.
pub async fn forget_loop(writer: Writer, mut stop: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            () = tokio::time::sleep(FORGET_EVERY) => {}
            _ = stop.changed() => return,
        }
        if let Err(e) = forget_responses(&writer).await {
            tracing::warn!(error = %e, "forgetting old idempotency keys failed; trying again later");
        }
    }
}

/// Reacts to other processes' events and fires what falls due, until `stop` turns true.
///
/// It reads the database (a pass) when its poll is due, when a timer is due, and after a
/// commit that left events the rules have not processed; after the other commits (a request's
/// job, whose reactions ran in its savepoint) it only notes the timers they set, so that a
/// request costs no read here.
pub async fn rules_loop(bg: Background, mut stop: watch::Receiver<bool>) {
    let wakes = bg.writer.wakes();
    let mut wake: Option<DateTime<Utc>> = None;
    let mut first = true;
    let mut look = true;
    // The poll's deadline outlives the loop's turns: commits that come more often than the
    // poll must not keep putting it off (timers and events other processes wrote are found
    // by it).
    let mut poll = tokio::time::Instant::now();
    loop {
        if *stop.borrow() {
            return;
        }
        let due = wake.is_some_and(|t| t <= bg.clock.now());
        if look || due || tokio::time::Instant::now() >= poll {
            poll = tokio::time::Instant::now() + POLL;
            if let Some(rt) = bg.rules.current() {
                match pass(&bg, &rt, first, wake).await {
                    Ok(next) => {
                        first = false;
                        wake = next;
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "rules: a pass failed; trying again");
                        wake = None;
                    }
                }
            }
        }
        let now = bg.clock.now();
        let until_wake = wake.map(|t| (t - now).to_std().unwrap_or(Duration::ZERO));
        let until_poll = poll.saturating_duration_since(tokio::time::Instant::now());
        let pause = until_wake.map_or(until_poll, |w| w.min(until_poll));
        look = tokio::select! {
            () = tokio::time::sleep(pause) => false,
            () = wakes.rules.notified() => {
                let notes = bg.writer.take_notes();
                if let Some(t) = notes.soonest_timer {
                    wake = Some(wake.map_or(t, |w| w.min(t)));
                }
                notes.unprocessed
            }
            _ = stop.changed() => true,
        };
    }
}

/// One pass: tick if something is due (or on the first pass), else process events the cursor
/// has not reached; then when to wake.
async fn pass(
    bg: &Background,
    rt: &Arc<Runtime>,
    first: bool,
    wake: Option<DateTime<Utc>>,
) -> Result<Option<DateTime<Utc>>, ApiError> {
    let now = bg.clock.now();
    // When to wake next is read with the head and the cursor (one read after each commit,
    // not two); it is read again only if this pass writes.
    let rt2 = rt.clone();
    let (head, cursor, idle_wake) = bg
        .readers
        .read(move |s| {
            Ok((
                s.last_position()?,
                s.cursor("rules")?,
                rt2.next_wake(s, now)?,
            ))
        })
        .await?;
    if first || wake.is_some_and(|t| t <= now) {
        loop {
            let rt2 = rt.clone();
            let rules = bg.rules.clone();
            let a = bg
                .writer
                .run_rules(Box::new(move |tx, ctx| {
                    let (report, mine, more) = rt2.tick_in(tx, ctx.now)?;
                    rules.add_mine(&mine);
                    if report.timers + report.processed > 0 {
                        tracing::info!(
                            timers = report.timers,
                            processed = report.processed,
                            fired = report.fired,
                            "tick"
                        );
                    }
                    metrics::counter!("leadflow_timers_fired_total")
                        .increment(report.timers as u64);
                    Ok(Answer::ok(json!({ "more": more })))
                }))
                .await?;
            if a.body["more"] != json!(true) {
                break;
            }
        }
    } else if cursor.is_some_and(|c| c < head) {
        let rt2 = rt.clone();
        let rules = bg.rules.clone();
        bg.writer
            .run_rules(Box::new(move |tx, ctx| {
                let (report, mine) = rt2.react_in(tx, ctx.now)?;
                rules.add_mine(&mine);
                if report.processed > 0 {
                    tracing::info!(
                        processed = report.processed,
                        fired = report.fired,
                        "processed events appended by other processes"
                    );
                }
                Ok(Answer::ok(json!({})))
            }))
            .await?;
    } else {
        return Ok(idle_wake);
    }
    let rt2 = rt.clone();
    bg.readers.read(move |s| Ok(rt2.next_wake(s, now)?)).await
}

/// Runs the external robots' requests after the commits that made them, until `stop`.
pub async fn requests_loop(bg: Background, mut stop: watch::Receiver<bool>) {
    let wakes = bg.writer.wakes();
    // Only a commit after which this process's rules' requests wait wakes the loop: after
    // the others (most of them) it looks again when its poll is due, for requests other
    // processes made and leases that ran out, without a read of the requests after every
    // commit.
    let mut look = true;
    loop {
        if *stop.borrow() {
            return;
        }
        if look
            && let Some(rt) = bg.rules.current()
            && let Err(e) = run_requests(&bg, &rt, &stop).await
        {
            tracing::error!(error = %e, "external robots: a pass failed; trying again");
        }
        let poll = tokio::time::sleep(POLL * 4);
        tokio::pin!(poll);
        look = loop {
            tokio::select! {
                () = &mut poll => break true,
                () = wakes.requests.notified() => {
                    if bg.rules.has_mine() {
                        break true;
                    }
                }
                _ = stop.changed() => break true,
            }
        };
    }
}

async fn run_requests(
    bg: &Background,
    rt: &Arc<Runtime>,
    stop: &watch::Receiver<bool>,
) -> Result<(), ApiError> {
    let mut after = 0;
    loop {
        let now = bg.clock.now();
        let mine = bg.rules.mine();
        let rt2 = rt.clone();
        let (calls, last) = bg
            .readers
            .read(move |s| Ok(rt2.pending_calls(s, now, after, &mine)?))
            .await?;
        let Some(last) = last else { return Ok(()) };
        after = last;
        for call in calls {
            if *stop.borrow() {
                return Ok(());
            }
            let call = Arc::new(call);
            let (rt2, c2) = (rt.clone(), call.clone());
            let claimed = bg
                .writer
                .run_rules(Box::new(move |tx, ctx| {
                    Ok(Answer::ok(json!(rt2.claim_in(tx, &c2, ctx.now)?)))
                }))
                .await?;
            bg.rules.forget(call.record.position);
            if claimed.body != json!(true) {
                continue;
            }
            let (rt2, c2) = (rt.clone(), call.clone());
            let completed = tokio::task::spawn_blocking(move || rt2.call(&c2))
                .await
                .map_err(|e| ApiError::Internal(format!("an external robot's task failed: {e}")))?;
            let (rt2, c2, rules) = (rt.clone(), call.clone(), bg.rules.clone());
            bg.writer
                .run_rules(Box::new(move |tx, ctx| {
                    rt2.complete_in(tx, &c2, completed, ctx.now)?;
                    let (_, mine) = rt2.react_in(tx, ctx.now)?;
                    rules.add_mine(&mine);
                    Ok(Answer::ok(json!({})))
                }))
                .await?;
        }
    }
}
