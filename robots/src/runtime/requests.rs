//! External robots after the commit: [`Runtime::run_requests`] runs every `robot.requested`
//! that has no outcome yet — outside any write transaction, so a slow or hung program holds
//! no lock — and appends its `robot.completed`, which the rules then process like any other
//! event (applying the answer's actions exactly once, with the cursor).
//!
//! A request is recorded in the transaction that decided it, so a crash loses none: one
//! without an outcome is run again by the next process, with the same input and idempotency
//! key. Two processes may both run a request that is pending at the same moment; only the
//! first outcome is appended (the second finds it completed, under the write lock), and the
//! key lets the program drop the repeat.

use super::Runtime;
use crate::context::RobotError;
use chrono::{DateTime, Utc};
use leadflow_engine::event::{RobotCompleted, RobotOutcome};
use leadflow_engine::workspace::Backend;
use leadflow_engine::{Actor, Event, EventMeta};

/// Requests read per batch.
const REQUESTS_PER_BATCH: usize = 16;

impl Runtime {
    /// Runs the external robots' pending requests, oldest first, and appends their outcomes;
    /// how many outcomes this call appended.
    pub(super) fn run_requests<D: Backend>(
        &self,
        db: &mut D,
        now: DateTime<Utc>,
    ) -> Result<usize, RobotError> {
        let mut appended = 0;
        let mut seen = std::collections::HashSet::new();
        loop {
            let pending: Vec<_> = db
                .pending_requests(REQUESTS_PER_BATCH)?
                .into_iter()
                .filter(|rec| seen.insert(rec.position))
                .collect();
            if pending.is_empty() {
                return Ok(appended);
            }
            for rec in pending {
                let Event::RobotRequested(request) = rec.decode()? else {
                    continue;
                };
                let mut completed = match self.registry.call(&request.robot) {
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
