//! External robots after the commit: [`Runtime::run_requests`] runs every `robot.requested`
//! that has no outcome yet — outside any write transaction, so a slow or hung program holds
//! no lock — and appends its `robot.completed`, which the rules then process like any other
//! event (applying the answer's actions exactly once, with the cursor).
//!
//! The process whose rules made a request runs it: first it claims it under the write lock
//! (`robot.started`, until the call's time limit and [`STALE_AFTER`]), so no other live
//! process runs it too. A request is recorded in the transaction that decided it, so a crash
//! loses none: one whose process died is free again when its claim lapses (or, never
//! claimed, when the time limit and the margin have passed since it was recorded), and the
//! next process that looks (a command, `tick`, `run`, which wakes for it) runs it again,
//! with the same input and idempotency key. Only the first outcome is appended (a later one
//! finds the request completed, under the write lock).

use super::Runtime;
use crate::context::RobotError;
use crate::external::Call;
use chrono::{DateTime, Utc};
use leadflow_engine::event::{RobotCompleted, RobotOutcome, RobotRequested, RobotStarted};
use leadflow_engine::stored::{PendingRequest, RecordedEvent, parse_time};
use leadflow_engine::workspace::{Backend, Workspace};
use leadflow_engine::{Actor, Event, EventMeta};

/// Requests read per batch.
const REQUESTS_PER_BATCH: usize = 64;

/// How long past its time limit a request without an outcome waits before another process
/// takes it for abandoned.
pub(super) const STALE_AFTER: std::time::Duration = std::time::Duration::from_secs(10);

/// The longest a process may hold a request: its call's time limit and [`STALE_AFTER`].
fn lease(call: Option<&std::sync::Arc<dyn Call>>, request: &RobotRequested) -> chrono::Duration {
    let limit = call.map_or(std::time::Duration::ZERO, |c| c.time_limit(request));
    chrono::Duration::from_std(limit + STALE_AFTER).unwrap_or(chrono::Duration::MAX)
}

/// When a pending request may be taken by a process that did not make it: when the claim on
/// it lapses, or — nobody took it — when its time limit and the margin have passed since it
/// was recorded (its process died before running it).
fn free_at(pending: &PendingRequest, lease: chrono::Duration) -> Option<DateTime<Utc>> {
    match pending.claimed_until {
        Some(until) => Some(until),
        None => parse_time(&pending.request.recorded_at).and_then(|t| t.checked_add_signed(lease)),
    }
}

impl Runtime {
    /// The business time and the wall time (the same without a wall clock).
    fn wall(&self, now: DateTime<Utc>) -> DateTime<Utc> {
        self.wall.as_ref().map_or(now, |c| c.now().max(now))
    }

    /// When the next pending request of another process becomes free to take (for `run` to
    /// wake then).
    pub(super) fn next_request<D: Backend>(
        &self,
        db: &D,
    ) -> Result<Option<DateTime<Utc>>, RobotError> {
        let mut next: Option<DateTime<Utc>> = None;
        for pending in db.pending_requests(0, REQUESTS_PER_BATCH)? {
            let Ok(Event::RobotRequested(request)) = pending.request.decode() else {
                continue;
            };
            let lease = lease(self.registry.call(&request.robot), &request);
            if let Some(t) = free_at(&pending, lease) {
                next = Some(next.map_or(t, |n| n.min(t)));
            }
        }
        Ok(next)
    }

    /// Runs the external robots' pending requests that are this process's (`mine`, not taken
    /// by another) or free to take, oldest first: each is claimed (`robot.started`) under the
    /// write lock, run, and its outcome appended. How many outcomes this call appended.
    pub(super) fn run_requests<D: Backend>(
        &self,
        db: &mut D,
        now: DateTime<Utc>,
        mine: &mut Vec<i64>,
    ) -> Result<usize, RobotError> {
        let mut appended = 0;
        let mut after = 0;
        loop {
            let (calls, last) = self.pending_calls(db, now, after, mine)?;
            let Some(last) = last else {
                mine.clear();
                return Ok(appended);
            };
            after = last;
            for pending in calls {
                if !self.write(db, now, |ws| self.claim_in(ws, &pending, now))? {
                    continue;
                }
                let completed = self.call(&pending);
                if self.write(db, now, |ws| self.complete_in(ws, &pending, completed, now))? {
                    appended += 1;
                }
            }
        }
    }

    /// The pending requests after position `after` that this process may run now: its own
    /// (`mine`) that nobody took, and those free to take; with the position of the last one
    /// looked at (`None`: there are no more). Reads between transactions.
    pub fn pending_calls<D: Backend + ?Sized>(
        &self,
        db: &D,
        now: DateTime<Utc>,
        after: i64,
        mine: &[i64],
    ) -> Result<(Vec<PendingCall>, Option<i64>), RobotError> {
        let pending = db.pending_requests(after, REQUESTS_PER_BATCH)?;
        let last = pending.last().map(|p| p.request.position);
        let mut out = Vec::new();
        for p in pending {
            let Event::RobotRequested(request) = p.request.decode()? else {
                continue;
            };
            let lease = lease(self.registry.call(&request.robot), &request);
            let call = PendingCall {
                mine: mine.contains(&p.request.position),
                record: p.request,
                request,
                lease,
            };
            if call.takeable(p.claimed_until, self.wall(now)) {
                out.push(call);
            }
        }
        Ok((out, last))
    }

    /// Claims a pending call for this process (`robot.started`, until its lease ends), in the
    /// caller's write transaction; `false` if it was completed or taken by another process
    /// meanwhile.
    pub fn claim_in(
        &self,
        ws: &mut dyn Workspace,
        pending: &PendingCall,
        now: DateTime<Utc>,
    ) -> Result<bool, RobotError> {
        let rec = &pending.record;
        let wall = self.wall(now);
        match ws.request_pending(rec.position)? {
            Some(claim) if pending.takeable(claim, wall) => {}
            // Completed, or taken by another process meanwhile.
            _ => return Ok(false),
        }
        let version = ws.version(rec.stream)?;
        ws.append(
            rec.stream,
            version,
            &[Event::RobotStarted(RobotStarted {
                request: rec.position,
                until: wall.checked_add_signed(pending.lease).unwrap_or(wall),
            })],
            &outcome_meta(rec, now),
        )?;
        if !pending.mine {
            tracing::warn!(position = rec.position, key = %pending.request.key, "an external robot's request was left without an outcome by its process: running it again");
        }
        Ok(true)
    }

    /// Runs a claimed call (outside any transaction: it may take as long as its time limit)
    /// and returns its outcome, to append with [`Runtime::complete_in`].
    pub fn call(&self, pending: &PendingCall) -> RobotCompleted {
        let request = &pending.request;
        let mut completed = match self.registry.call(&request.robot) {
            Some(call) => {
                tracing::info!(robot = %request.robot, rule = %request.rule, key = %request.key, "running an external robot");
                // A call that panics (a bug) is a failed call, not a dead process
                // (which would leave the request to kill each process that takes it).
                crate::panics::catch(std::panic::AssertUnwindSafe(|| call.call(request)))
                    .unwrap_or_else(|panic| RobotCompleted {
                        request: 0,
                        outcome: RobotOutcome::Failed,
                        actions: vec![],
                        error: Some(format!("the robot {panic}")),
                    })
            }
            None => RobotCompleted {
                request: 0,
                outcome: RobotOutcome::Failed,
                actions: vec![],
                error: Some(format!("no robot called '{}'", request.robot)),
            },
        };
        completed.request = pending.record.position;
        completed
    }

    /// Appends a call's outcome in the caller's write transaction, unless another process
    /// completed it first (after this one's claim lapsed): whether it was appended. The rules
    /// then process it like any other event.
    pub fn complete_in(
        &self,
        ws: &mut dyn Workspace,
        pending: &PendingCall,
        completed: RobotCompleted,
        now: DateTime<Utc>,
    ) -> Result<bool, RobotError> {
        let rec = &pending.record;
        if ws.request_pending(rec.position)?.is_none() {
            return Ok(false);
        }
        let version = ws.version(rec.stream)?;
        ws.append(
            rec.stream,
            version,
            &[Event::RobotCompleted(completed)],
            &outcome_meta(rec, now),
        )?;
        Ok(true)
    }
}

/// An external robot's request this process may run: [`Runtime::pending_calls`] finds them,
/// [`Runtime::claim_in`], [`Runtime::call`] and [`Runtime::complete_in`] run one.
#[derive(Debug, Clone)]
pub struct PendingCall {
    /// The `robot.requested` event.
    pub record: RecordedEvent,
    /// The same, decoded.
    pub request: RobotRequested,
    /// Made by this process's rules.
    mine: bool,
    /// How long a claim holds it.
    lease: chrono::Duration,
}

impl PendingCall {
    /// Whether this process may take it, with the claim it has (`claimed_until`) at `wall`:
    /// its own and nobody took it, or free — its claim lapsed, or it was never taken and its
    /// process is gone.
    fn takeable(&self, claimed_until: Option<DateTime<Utc>>, wall: DateTime<Utc>) -> bool {
        let p = PendingRequest {
            request: self.record.clone(),
            claimed_until,
        };
        (self.mine && claimed_until.is_none()) || free_at(&p, self.lease).is_none_or(|t| t <= wall)
    }
}

/// Metadata of what the runtime appends about a request: caused by it, in its chain.
fn outcome_meta(rec: &RecordedEvent, now: DateTime<Utc>) -> EventMeta {
    EventMeta {
        occurred_at: now,
        actor: Actor::System,
        causation: Some(rec.position),
        correlation: Some(rec.correlation),
    }
}
