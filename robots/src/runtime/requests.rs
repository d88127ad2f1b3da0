//! External robots after the commit: [`Runtime::run_requests`] runs every `robot.requested`
//! that has no outcome yet — outside any write transaction, so a slow or hung program holds
//! no lock — and appends its `robot.completed`, which the rules then process like any other
//! event (applying the answer's actions exactly once, with the cursor).
//!
//! The process whose rules made a request runs it. A request is recorded in the transaction
//! that decided it, so a crash loses none: one left without an outcome is stale once its time
//! limit (and [`STALE_AFTER`]) has passed since it was recorded, and then the next process
//! that looks (a command, `tick`, `run`) runs it again, with the same input and idempotency
//! key. Should two processes still run one request, only the first outcome is appended (the
//! second finds it completed, under the write lock), and the key lets the program drop the
//! repeat.

use super::Runtime;
use crate::context::RobotError;
use chrono::{DateTime, Utc};
use leadflow_engine::event::{RobotCompleted, RobotOutcome};
use leadflow_engine::workspace::Backend;
use leadflow_engine::{Actor, Event, EventMeta};

/// Requests read per batch.
const REQUESTS_PER_BATCH: usize = 64;

/// How long past its time limit a request without an outcome waits before another process
/// takes it for abandoned.
pub(super) const STALE_AFTER: std::time::Duration = std::time::Duration::from_secs(10);

impl Runtime {
    /// Runs the external robots' pending requests that are this process's (`mine`) or stale,
    /// oldest first, and appends their outcomes; how many outcomes this call appended.
    pub(super) fn run_requests<D: Backend>(
        &self,
        db: &mut D,
        now: DateTime<Utc>,
        mine: &mut Vec<i64>,
    ) -> Result<usize, RobotError> {
        let mut appended = 0;
        let mut after = 0;
        let wall = self.wall.as_ref().map_or(now, |c| c.now());
        loop {
            let pending = db.pending_requests(after, REQUESTS_PER_BATCH)?;
            let Some(last) = pending.last() else {
                mine.clear();
                return Ok(appended);
            };
            after = last.position;
            for rec in pending {
                let Event::RobotRequested(request) = rec.decode()? else {
                    continue;
                };
                let call = self.registry.call(&request.robot);
                if !mine.contains(&rec.position) {
                    let limit = call.map_or(std::time::Duration::ZERO, |c| c.time_limit(&request));
                    let stale = leadflow_engine::stored::parse_time(&rec.recorded_at)
                        .and_then(|t| {
                            chrono::Duration::from_std(limit + STALE_AFTER)
                                .ok()
                                .and_then(|d| t.checked_add_signed(d))
                        })
                        .is_none_or(|t| t <= wall);
                    if !stale {
                        // Its own process is running it (or died less than its time
                        // limit ago).
                        continue;
                    }
                    tracing::warn!(position = rec.position, key = %request.key, "an external robot's request was left without an outcome: running it again");
                }
                let mut completed = match call {
                    Some(call) => {
                        tracing::info!(robot = %request.robot, rule = %request.rule, key = %request.key, "running an external robot");
                        call.call(&request)
                    }
                    None => RobotCompleted {
                        request: 0,
                        outcome: RobotOutcome::Failed,
                        actions: vec![],
                        error: Some(format!("no robot called '{}'", request.robot)),
                    },
                };
                completed.request = rec.position;
                let meta = EventMeta {
                    occurred_at: now,
                    actor: Actor::System,
                    causation: Some(rec.position),
                    correlation: Some(rec.correlation),
                };
                let done = self.write(db, now, |ws| {
                    // Another process may have completed it while the program ran.
                    if !ws.request_pending(rec.position)? {
                        return Ok::<_, RobotError>(false);
                    }
                    let version = ws.version(rec.stream)?;
                    ws.append(
                        rec.stream,
                        version,
                        &[Event::RobotCompleted(completed)],
                        &meta,
                    )?;
                    Ok(true)
                })?;
                if done {
                    appended += 1;
                }
            }
        }
    }
}
