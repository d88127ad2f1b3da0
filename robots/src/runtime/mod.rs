//! The rules runtime: reacts to the log's events in position order ([`Runtime::process`],
//! this file) and fires timers, schedules and idle rules ([`Runtime::tick`], `timers.rs`).
//!
//! **Exactly once.** A cursor (`rule_cursor`) holds the last position processed. Processing an
//! event — asking the engine's [`Reaction`] what the rules do, running the robots it names —
//! appends the robots' effects and moves the cursor in the same transaction, so a crash either
//! keeps both or neither, and a restart resumes at the cursor. Replay never runs a robot: it
//! folds the stored effects.
//!
//! The runtime reaches the database only through the engine's [`Backend`] and [`Workspace`]
//! traits, which the store implements.

mod requests;
mod timers;

use crate::context::{Ctx, RobotError};
use crate::{Params, Registry};
use chrono::{DateTime, Utc};
use leadflow_engine::event::{
    DelayedRobot, IncidentRecorded, RobotsDelayed, RuleFile, RulesetActivated,
};
use leadflow_engine::ids::StageId;
use leadflow_engine::react::{Observer, Reaction, Step, Then, responsible_of, subject_of};
use leadflow_engine::rules::RuleSet;
use leadflow_engine::stored::RecordedEvent;
use leadflow_engine::workspace::{Backend, Stamp, Workspace, WorkspaceError};
use leadflow_engine::{Actor, Clock, Config, Event, EventMeta, StreamId};
use sha2::{Digest, Sha256};
use std::sync::Arc;

pub use leadflow_engine::react::{DEPTH_LIMIT, RULESET_STREAM, SYSTEM_STREAM};
pub use requests::PendingCall;
pub use timers::{Advanced, TICKS_PER_INSTANT};

/// The cursor's name in `rule_cursor`.
pub const CURSOR: &str = "rules";

/// The types of the events that fire timers: their cause is the event that set the timer, not
/// a trigger the rules reacted to.
/// (An external robot's outcome, likewise, is caused by its request.)
const FIRINGS: [&str; 5] = [
    "deadline.elapsed",
    "robots.resumed",
    "task.overdue",
    "robot.started",
    "robot.completed",
];

/// Events processed per transaction: bounds how much one commit holds.
const EVENTS_PER_TX: usize = 256;

/// What a call did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// Events the rules looked at.
    pub processed: usize,
    /// Rules that fired (ran robots or delayed them).
    pub fired: usize,
    /// Timers, schedules and idle checks that fired.
    pub timers: usize,
    /// Incidents recorded by the runtime itself (robot failures, depth limit).
    pub incidents: usize,
}

impl Report {
    /// Adds another report's counts to this one.
    pub fn add(&mut self, o: &Report) {
        self.processed += o.processed;
        self.fired += o.fired;
        self.timers += o.timers;
        self.incidents += o.incidents;
    }
}

/// A rule set, the configuration and the robots, ready to process a database.
pub struct Runtime {
    config: Config,
    rules: RuleSet,
    registry: Registry,
    hash: String,
    /// Stamps `recorded_at`; `None`: the business time given to each call stamps both.
    wall: Option<Arc<dyn Clock>>,
    /// Told which rules match and which conditions say no (`rules coverage`); `None` in
    /// the live runtime.
    observer: Option<Arc<dyn Observer>>,
    /// A backtest's sandbox: external robots are never run (their recorded outcomes are fed).
    sandboxed: bool,
}

/// The SHA-256 of a rule set's files (paths and texts), hex.
pub fn ruleset_hash(rules: &RuleSet) -> String {
    let mut h = Sha256::new();
    for s in &rules.sources {
        h.update((s.path.len() as u64).to_le_bytes());
        h.update(s.path.as_bytes());
        h.update((s.text.len() as u64).to_le_bytes());
        h.update(s.text.as_bytes());
    }
    leadflow_engine::hex(&h.finalize())
}

/// A rule firing the runtime carries out: what its robots' effects are caused by, the trigger
/// their templates see, and what a delay it puts off records.
struct Firing<'a> {
    /// The event being processed: the trigger, or an external robot's outcome.
    cause: &'a RecordedEvent,
    /// The event that triggered the rule.
    trigger: &'a RecordedEvent,
    /// The same, decoded.
    event: &'a Event,
    rule: &'a str,
    survive_move: bool,
    subject: StreamId,
    stage: Option<StageId>,
}

impl Runtime {
    /// A runtime for a validated rule set.
    pub fn new(config: Config, rules: RuleSet, registry: Registry) -> Runtime {
        let hash = ruleset_hash(&rules);
        Runtime {
            config,
            rules,
            registry,
            hash,
            wall: None,
            observer: None,
            sandboxed: false,
        }
    }

    /// A runtime for a backtest's sandbox: it never runs an external robot (the requests stay
    /// pending until the backtest feeds the live history's outcome) and never wakes for one.
    pub fn sandboxed(mut self) -> Runtime {
        self.sandboxed = true;
        self
    }

    /// Tells `observer` which rules' triggers match and which conditions say no.
    pub fn with_observer(mut self, observer: Arc<dyn Observer>) -> Runtime {
        self.observer = Some(observer);
        self
    }

    /// Stamps the `recorded_at` of everything this runtime commits with `clock` (the wall
    /// clock, in the CLI), whatever business time (`now`) its calls are given. Without one, a
    /// runtime driven by a virtual clock (a simulation) stamps both times with it.
    pub fn with_wall_clock(mut self, clock: Arc<dyn Clock>) -> Runtime {
        self.wall = Some(clock);
        self
    }

    /// One write transaction at business time `now`: with a wall clock, `recorded_at` is
    /// read from it once the write lock is held; without one, `now` stamps it.
    fn write<D: Backend, T, E: From<WorkspaceError>>(
        &self,
        db: &mut D,
        now: DateTime<Utc>,
        f: impl FnOnce(&mut dyn Workspace) -> Result<T, E>,
    ) -> Result<T, E> {
        let stamp = match &self.wall {
            Some(clock) => Stamp::Clock(clock.as_ref()),
            None => Stamp::At(now),
        };
        db.write(stamp, f)
    }

    /// Loads rule files against the configuration with the built-in robots (whole or
    /// nothing: every problem is in the error, with its file:line:col).
    pub fn load(
        config: Config,
        sources: &[leadflow_engine::Source],
    ) -> Result<Runtime, leadflow_engine::config::ConfigErrors> {
        let registry = Registry::builtin();
        let rules = RuleSet::load(sources, &config, &registry)?;
        Ok(Runtime::new(config, rules, registry))
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The rule set.
    pub fn rules(&self) -> &RuleSet {
        &self.rules
    }

    /// The rule set's hash, as `ruleset.activated` records it.
    pub fn hash(&self) -> &str {
        &self.hash
    }

    /// Appends `ruleset.activated` unless this rule set is the one in force. The first
    /// activation in a database starts the cursor at the activation: rules react to what
    /// happens from then on, not to history.
    pub fn activate<D: Backend>(&self, db: &mut D, now: DateTime<Utc>) -> Result<bool, RobotError> {
        self.write(db, now, |ws| self.activate_in(ws, now))
    }

    fn activate_in(&self, ws: &mut dyn Workspace, now: DateTime<Utc>) -> Result<bool, RobotError> {
        let version = ws.version(RULESET_STREAM)?;
        /// Of the rule set in force, only its hash: its files (which the payload holds
        /// whole) are skipped, not parsed, at every call.
        #[derive(serde::Deserialize)]
        struct Activated {
            hash: String,
        }
        let in_force = ws.event_of(RULESET_STREAM, version)?.is_some_and(|rec| {
            // The payload holds the files whole and starts with the hash as leadflow writes
            // it: a glance at its start instead of a parse of all of it (at every call).
            let written = format!("{{\"hash\":\"{}\",", self.hash);
            rec.payload.starts_with(&written)
                || serde_json::from_str::<Activated>(&rec.payload)
                    .is_ok_and(|a| a.hash == self.hash)
        });
        if in_force {
            if ws.cursor(CURSOR)?.is_none() {
                let head = ws.head_position();
                ws.set_cursor(CURSOR, head)?;
            }
            return Ok(false);
        }
        let event = Event::RulesetActivated(RulesetActivated {
            hash: self.hash.clone(),
            files: self
                .rules
                .sources
                .iter()
                .map(|s| RuleFile {
                    path: s.path.clone(),
                    text: s.text.clone(),
                })
                .collect(),
        });
        let appended = ws.append(
            RULESET_STREAM,
            version,
            &[event],
            &EventMeta::root(now, Actor::System),
        )?;
        if ws.cursor(CURSOR)?.is_none() {
            ws.set_cursor(CURSOR, appended.last_position)?;
        }
        tracing::info!(hash = %self.hash, rules = self.rules.rules.len(), "rule set activated");
        Ok(true)
    }

    /// Before a command: if the rules never ran in this database, starts the cursor at the
    /// head of the log (no event is appended: a command that is then refused leaves the log
    /// as it was, and the rule set is activated after a command that succeeds); if they did,
    /// processes the backlog — events a crash between a command and its robots left
    /// unprocessed — so that the command is decided on the state the robots leave.
    pub fn before_command<D: Backend>(
        &self,
        db: &mut D,
        now: DateTime<Utc>,
    ) -> Result<Report, RobotError> {
        match db.cursor(CURSOR)? {
            None => {
                self.write(db, now, |ws| {
                    if ws.cursor(CURSOR)?.is_none() {
                        let head = ws.head_position();
                        ws.set_cursor(CURSOR, head)?;
                    }
                    Ok::<_, RobotError>(())
                })?;
                Ok(Report::default())
            }
            Some(cursor) if cursor < db.last_position()? => self.process(db, now),
            // At the head: nothing to do. Ahead (the log was cut or the cursor edited): the
            // command's write refuses it when it opens, before anything is appended.
            Some(_) => Ok(Report::default()),
        }
    }

    /// Processes every event after the cursor, including the robots' own effects, until the
    /// cursor reaches the head of the log; then, after those commits, runs the external
    /// robots' requests that have no outcome yet and processes their outcomes the same way.
    pub fn process<D: Backend>(
        &self,
        db: &mut D,
        now: DateTime<Utc>,
    ) -> Result<Report, RobotError> {
        self.process_with(db, now, &mut Vec::new())
    }

    /// [`Runtime::process`], with the requests this process already processed (`mine`): it
    /// runs those, and others only once they are free (their process died).
    fn process_with<D: Backend>(
        &self,
        db: &mut D,
        now: DateTime<Utc>,
        mine: &mut Vec<i64>,
    ) -> Result<Report, RobotError> {
        let mut total = self.process_rules(db, now, mine)?;
        if self.sandboxed {
            return Ok(total);
        }
        while self.run_requests(db, now, mine)? > 0 {
            total.add(&self.process_rules(db, now, mine)?);
        }
        Ok(total)
    }

    /// The rules' part of [`Runtime::process`]; the external robots' requests it processes
    /// go into `mine`, for this process to run.
    fn process_rules<D: Backend>(
        &self,
        db: &mut D,
        now: DateTime<Utc>,
        mine: &mut Vec<i64>,
    ) -> Result<Report, RobotError> {
        let mut total = Report::default();
        let mut first = true;
        loop {
            let (report, more) = self.write(db, now, |ws| {
                self.activate_in(ws, now)?;
                let mut report = Report::default();
                let more = self.process_in(ws, now, &mut report, EVENTS_PER_TX, first, mine)?;
                Ok::<_, RobotError>((report, more))
            })?;
            first = false;
            total.add(&report);
            if !more {
                return Ok(total);
            }
        }
    }

    /// Processes every event after the cursor in the caller's write transaction, the robots'
    /// own effects included, until the cursor reaches the head (activating the rule set first
    /// if it is not the one in force): for a service whose writer commits many requests
    /// together. Returns what it did and the positions of the external robots' requests it
    /// processed, which the caller runs after the commit ([`Runtime::pending_calls`]).
    pub fn react_in(
        &self,
        ws: &mut dyn Workspace,
        now: DateTime<Utc>,
    ) -> Result<(Report, Vec<i64>), RobotError> {
        self.activate_in(ws, now)?;
        let mut report = Report::default();
        let mut mine = Vec::new();
        self.process_in(ws, now, &mut report, usize::MAX, true, &mut mine)?;
        Ok((report, mine))
    }

    /// Processes at most `budget` events in one transaction (for callers that interleave
    /// processing with other work, and for crash tests). It runs no external robot: their
    /// requests wait for the next [`Runtime::process`].
    pub fn process_some<D: Backend>(
        &self,
        db: &mut D,
        now: DateTime<Utc>,
        budget: usize,
    ) -> Result<Report, RobotError> {
        self.write(db, now, |ws| {
            self.activate_in(ws, now)?;
            let mut report = Report::default();
            self.process_in(ws, now, &mut report, budget, true, &mut Vec::new())?;
            Ok(report)
        })
    }

    /// Processes up to `budget` events in the caller's transaction; whether more are left.
    /// With `check_cursor`, first checks the cursor against the log (a read of the backlog:
    /// done once per call of [`Runtime::process`], not for each of its transactions).
    /// The positions of the external robots' requests among the events processed are added
    /// to `mine`.
    #[allow(clippy::too_many_arguments)]
    fn process_in(
        &self,
        ws: &mut dyn Workspace,
        now: DateTime<Utc>,
        report: &mut Report,
        budget: usize,
        check_cursor: bool,
        mine: &mut Vec<i64>,
    ) -> Result<bool, RobotError> {
        let head = ws.head_position();
        let mut cursor = match ws.cursor(CURSOR)? {
            Some(c) => c,
            None => head,
        };
        // (A cursor past the log's end was refused when the transaction began.)
        // The robots' reactions carry their trigger as cause, and triggers are processed in
        // order: a reaction to a position past the cursor proves the rules got that far, so a
        // cursor moved back never makes a rule act twice on one event.
        if check_cursor
            && let Some(reached) = ws.last_cause_after(cursor, &FIRINGS)?
            && reached > cursor
        {
            tracing::warn!(
                cursor,
                reached,
                "the rules' cursor is behind the robots' reactions in the log (it was moved back): resuming after position {reached}"
            );
            cursor = reached;
        }
        let mut done = 0;
        while done < budget {
            let page = ws.read_after(cursor, (budget - done).min(64))?;
            if page.is_empty() {
                ws.set_cursor(CURSOR, cursor)?;
                return Ok(false);
            }
            for rec in &page {
                if rec.event_type == "robot.requested" {
                    mine.push(rec.position);
                }
                self.handle(ws, rec, now, report)?;
                cursor = rec.position;
                done += 1;
                report.processed += 1;
            }
        }
        ws.set_cursor(CURSOR, cursor)?;
        Ok(ws.head_position() > cursor)
    }

    /// Reacts to one event: carries out the steps of the engine's [`Reaction`].
    fn handle(
        &self,
        ws: &mut dyn Workspace,
        rec: &RecordedEvent,
        now: DateTime<Utc>,
        report: &mut Report,
    ) -> Result<(), RobotError> {
        let event = rec.decode()?;
        let is_external = |robot: &str| self.registry.call(robot).is_some();
        let mut reaction = Reaction::new(&self.rules, &self.config, rec, &event, now, &is_external)
            .observed_by(self.observer.as_deref());
        while let Some(step) = reaction.next_step(ws)? {
            match step {
                Step::Cancel(events) => {
                    let meta = system_meta(rec, now);
                    let version = ws.version(rec.stream)?;
                    ws.append(rec.stream, version, &events, &meta)?;
                }
                Step::Outcome {
                    rule,
                    subject,
                    trigger,
                    request,
                    completed,
                    stage,
                    run,
                    then,
                } => {
                    let Some(call) = self.registry.call(&request.robot) else {
                        let text = format!("rule '{rule}': no robot called '{}'", request.robot);
                        self.runtime_incident(
                            ws,
                            rec,
                            now,
                            "robot_failed",
                            Some(&rule),
                            text,
                            report,
                        )?;
                        continue;
                    };
                    // The answer's effects are caused by the outcome; what their templates
                    // see is the rule's trigger, as for any robot of the rule.
                    let trigger_event = trigger.decode()?;
                    let f = Firing {
                        cause: rec,
                        trigger: &trigger,
                        event: &trigger_event,
                        rule: &rule,
                        survive_move: request.survive_move,
                        subject,
                        stage,
                    };
                    let applied =
                        self.run_robot(ws, &f, &request.robot, &[], now, report, &mut |ctx| {
                            call.apply(ctx, &request, &completed)
                        })?;
                    if applied {
                        self.finish(ws, &f, &run, then, now, report)?;
                    }
                }
                Step::Incident { kind, rule, text } => {
                    self.runtime_incident(ws, rec, now, kind, Some(&rule), text, report)?;
                }
                Step::Delay {
                    rule,
                    survive_move,
                    subject,
                    stage,
                    robots,
                    due_at,
                } => {
                    let f = Firing {
                        cause: rec,
                        trigger: rec,
                        event: &event,
                        rule: &rule,
                        survive_move,
                        subject,
                        stage,
                    };
                    self.delay(ws, &f, robots, due_at, now)?;
                }
                Step::Fire {
                    rule,
                    survive_move,
                    subject,
                    stage,
                    run,
                    then,
                } => {
                    let f = Firing {
                        cause: rec,
                        trigger: rec,
                        event: &event,
                        rule: &rule,
                        survive_move,
                        subject,
                        stage,
                    };
                    self.finish(ws, &f, &run, then, now, report)?;
                }
            }
        }
        report.fired += reaction.fired();
        Ok(())
    }

    /// Runs a firing's robots, then does what follows them (nothing, a delay, a failed wait).
    fn finish(
        &self,
        ws: &mut dyn Workspace,
        f: &Firing<'_>,
        run: &[DelayedRobot],
        then: Then,
        now: DateTime<Utc>,
        report: &mut Report,
    ) -> Result<(), RobotError> {
        let rest: &[DelayedRobot] = match &then {
            Then::Answer(rest) => rest,
            _ => &[],
        };
        if !self.run_calls(ws, f, run, rest, now, report)? {
            return Ok(());
        }
        match then {
            // The external robot's request holds the rest.
            Then::Done | Then::Answer(_) => Ok(()),
            Then::WaitFailed(text) => {
                tracing::warn!(rule = f.rule, error = %text, "wait failed");
                self.runtime_incident(ws, f.cause, now, "robot_failed", Some(f.rule), text, report)
            }
            Then::Delay { due_at, robots } => self.delay(ws, f, robots, due_at, now),
        }
    }

    /// Runs robot calls in order, each in a savepoint; a failure stops the rule and is
    /// recorded as an incident. Whether all of them ran. `rest` is what the rule runs after
    /// an external robot's answer (for the external robot among the calls, the last one).
    fn run_calls(
        &self,
        ws: &mut dyn Workspace,
        f: &Firing<'_>,
        calls: &[DelayedRobot],
        rest: &[DelayedRobot],
        now: DateTime<Utc>,
        report: &mut Report,
    ) -> Result<bool, RobotError> {
        for call in calls {
            let Some(robot) = self.registry.implementation(&call.robot) else {
                self.runtime_incident(
                    ws,
                    f.cause,
                    now,
                    "robot_failed",
                    Some(f.rule),
                    format!("rule '{}': no robot called '{}'", f.rule, call.robot),
                    report,
                )?;
                return Ok(false);
            };
            let params: &Params = &call.params;
            let ran = self.run_robot(ws, f, &call.robot, rest, now, report, &mut |ctx| {
                robot.run(ctx, params)
            })?;
            if !ran {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Runs one robot in a savepoint. A robot that fails (or panics) has its appends rolled
    /// back and an incident recorded instead; a database failure stops everything. Whether
    /// it succeeded.
    #[allow(clippy::too_many_arguments)]
    fn run_robot(
        &self,
        ws: &mut dyn Workspace,
        f: &Firing<'_>,
        robot: &str,
        then: &[DelayedRobot],
        now: DateTime<Utc>,
        report: &mut Report,
        run: &mut dyn FnMut(&mut Ctx<'_, '_>) -> Result<(), RobotError>,
    ) -> Result<bool, RobotError> {
        let rule = f.rule;
        let mut outcome = Ok(());
        ws.atomically(&mut |ws| {
            let mut ctx = Ctx {
                ws,
                config: &self.config,
                rule,
                ruleset: &self.hash,
                trigger: f.trigger,
                event: f.event,
                cause: f.cause,
                subject: f.subject,
                now,
                then,
                survive_move: f.survive_move,
            };
            // A robot that panics (a bug) fails like one that returns an error: its appends
            // are rolled back and an incident gives the panic's message and location; the
            // runtime goes on (see `crate::panics`).
            outcome = crate::panics::catch(std::panic::AssertUnwindSafe(|| run(&mut ctx)))
                .unwrap_or_else(|panic| Err(RobotError::Failed(format!("the robot {panic}"))));
            outcome.is_ok()
        })?;
        match outcome {
            Ok(()) => Ok(true),
            Err(RobotError::Store(e)) => Err(RobotError::Store(e)),
            Err(e) => {
                tracing::warn!(rule, robot, error = %e, "robot failed");
                self.runtime_incident(
                    ws,
                    f.cause,
                    now,
                    "robot_failed",
                    Some(rule),
                    format!("rule '{rule}', robot '{robot}': {e}"),
                    report,
                )?;
                Ok(false)
            }
        }
    }

    /// Puts robot calls off until `due_at` (a rule's `delay`, or what follows a `wait`).
    fn delay(
        &self,
        ws: &mut dyn Workspace,
        f: &Firing<'_>,
        robots: Vec<DelayedRobot>,
        due_at: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<(), RobotError> {
        let version = ws.version(f.subject)?;
        ws.append(
            f.subject,
            version,
            &[Event::RobotsDelayed(RobotsDelayed {
                rule: f.rule.to_owned(),
                ruleset: self.hash.clone(),
                due_at,
                trigger: f.trigger.position,
                stage: f.stage.clone(),
                survive_move: f.survive_move,
                robots,
            })],
            &EventMeta {
                occurred_at: now,
                actor: Actor::Robot(f.rule.to_owned()),
                causation: Some(f.cause.position),
                correlation: Some(f.cause.correlation),
            },
        )?;
        Ok(())
    }

    /// Records an incident of the runtime's own (a robot failure, the depth limit) in the
    /// subject's stream, for its responsible.
    #[allow(clippy::too_many_arguments)]
    fn runtime_incident(
        &self,
        ws: &mut dyn Workspace,
        rec: &RecordedEvent,
        now: DateTime<Utc>,
        kind: &str,
        rule: Option<&str>,
        text: String,
        report: &mut Report,
    ) -> Result<(), RobotError> {
        let subject = subject_of(rec);
        let employee = if subject.kind.is_entity() {
            responsible_of(ws.load(subject)?.as_ref())
        } else {
            None
        };
        let version = ws.version(subject)?;
        ws.append(
            subject,
            version,
            &[Event::IncidentRecorded(IncidentRecorded {
                kind: kind.to_owned(),
                employee,
                rule: rule.map(str::to_owned),
                text,
            })],
            &system_meta(rec, now),
        )?;
        report.incidents += 1;
        Ok(())
    }
}

/// Metadata for what the runtime itself appends in reaction to `rec`.
fn system_meta(rec: &RecordedEvent, now: DateTime<Utc>) -> EventMeta {
    EventMeta {
        occurred_at: now,
        actor: Actor::System,
        causation: Some(rec.position),
        correlation: Some(rec.correlation),
    }
}
