//! The rules runtime: reacts to the log's events in position order and fires timers.
//!
//! **Exactly once.** A cursor (`rule_cursor`) holds the last position processed. Processing an
//! event — matching rules, evaluating conditions, running robots — appends the robots' effects
//! and moves the cursor in the same transaction, so a crash either keeps both or neither, and
//! a restart resumes at the cursor. Replay never runs a robot: it folds the stored effects.
//!
//! **Timers.** Deadlines, delayed robots and task due times are rows of the `timers`
//! projection, keyed on `(due_at, id)`. [`Runtime::tick`] appends the firing event of each due
//! timer (`deadline.elapsed`, `robots.resumed`, `task.overdue`), plus `schedule.fired` for cron
//! rules and `idle.detected` for idle rules, and then processes them like any other event.

use crate::context::{Ctx, RobotError, variables};
use crate::{Params, Registry};
use chrono::{DateTime, Utc};
use leadflow_engine::event::{
    DeadlineElapsed, DelayedRobot, IdleDetected, IncidentRecorded, RobotsCancelled, RobotsDelayed,
    RobotsResumed, RuleFile, RulesetActivated, ScheduleFired, TaskOverdue,
};
use leadflow_engine::rules::{Rule, RuleSet, Trigger, TriggerKey};
use leadflow_engine::{Actor, Clock, Config, Entity, EntityKind, Event, EventMeta, StreamId};
use leadflow_store::{RecordedEvent, Store, Tx, fmt_time, parse_time};
use rusqlite::OptionalExtension;
use sha2::{Digest, Sha256};
use std::collections::HashSet;
use std::sync::Arc;

/// The cursor's name in `rule_cursor`.
const CURSOR: &str = "rules";

/// The types of the events that fire timers: their cause is the event that set the timer, not
/// a trigger the rules reacted to.
const FIRINGS: [&str; 3] = ["deadline.elapsed", "robots.resumed", "task.overdue"];

/// Rules stop firing in a chain this many causation steps deep (a timer firing starts a new
/// chain); an incident is recorded instead.
pub const DEPTH_LIMIT: usize = 16;

/// Events processed per transaction: bounds how much one commit holds.
const EVENTS_PER_TX: usize = 256;

/// Timers fired per transaction.
const TIMERS_PER_TX: usize = 1000;

/// The stream of rule-set activations.
pub const RULESET_STREAM: StreamId = StreamId {
    kind: EntityKind::Ruleset,
    id: 1,
};

/// The engine's own stream.
pub const SYSTEM_STREAM: StreamId = StreamId {
    kind: EntityKind::System,
    id: 1,
};

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

/// How many ticks [`Runtime::advance`] makes at one instant before it gives up on it.
pub const TICKS_PER_INSTANT: usize = 1000;

/// What [`Runtime::advance`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Advanced {
    /// The ticks' work, summed.
    pub report: Report,
    /// Where timers kept falling due at once, over and over, if they did.
    pub stuck_at: Option<DateTime<Utc>>,
}

/// A rule set, the configuration and the robots, ready to process a store.
pub struct Runtime {
    config: Config,
    rules: RuleSet,
    registry: Registry,
    hash: String,
    /// Stamps `recorded_at`; `None`: the business time given to each call stamps both.
    wall: Option<Arc<dyn Clock>>,
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
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
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
        }
    }

    /// Stamps the `recorded_at` of everything this runtime commits with `clock` (the wall
    /// clock, in the CLI), whatever business time (`now`) its calls are given. Without one, a
    /// runtime driven by a virtual clock (a simulation) stamps both times with it.
    pub fn with_wall_clock(mut self, clock: Arc<dyn Clock>) -> Runtime {
        self.wall = Some(clock);
        self
    }

    /// One write transaction at business time `now`: with a wall clock, `recorded_at` is
    /// read from it once the write lock is held ([`Store::write_with`]); without one, `now`
    /// stamps it.
    fn write<T, E: From<leadflow_store::Error>>(
        &self,
        store: &mut Store,
        now: DateTime<Utc>,
        f: impl FnOnce(&mut Tx<'_>) -> Result<T, E>,
    ) -> Result<T, E> {
        match &self.wall {
            Some(clock) => store.write_with(clock.as_ref(), f),
            None => store.write(now, f),
        }
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
    pub fn activate(&self, store: &mut Store, now: DateTime<Utc>) -> Result<bool, RobotError> {
        self.write(store, now, |tx| self.activate_in(tx, now))
    }

    fn activate_in(&self, tx: &mut Tx<'_>, now: DateTime<Utc>) -> Result<bool, RobotError> {
        let version = tx.version(RULESET_STREAM)?;
        let current: Option<String> = tx
            .conn()?
            .prepare_cached(
                "SELECT json_extract(e.payload, '$.hash') FROM events e JOIN streams s ON s.stream_key = e.stream_key \
                 WHERE s.kind = 'ruleset' AND s.entity_id = 1 AND e.version = ?1",
            )
            .and_then(|mut s| s.query_row([version], |r| r.get(0)).optional())
            .map_err(RobotError::from)?;
        if current.as_deref() == Some(self.hash.as_str()) {
            if tx.cursor(CURSOR)?.is_none() {
                let head = tx.head_position();
                tx.set_cursor(CURSOR, head)?;
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
        let appended = tx.append(
            RULESET_STREAM,
            version,
            &[event],
            &EventMeta::root(now, Actor::System),
        )?;
        if tx.cursor(CURSOR)?.is_none() {
            tx.set_cursor(CURSOR, appended.last_position)?;
        }
        tracing::info!(hash = %self.hash, rules = self.rules.rules.len(), "rule set activated");
        Ok(true)
    }

    /// Before a command: if the rules never ran in this database, starts the cursor at the
    /// head of the log (no event is appended: a command that is then refused leaves the log
    /// as it was, and the rule set is activated after a command that succeeds); if they did,
    /// processes the backlog — events a crash between a command and its robots left
    /// unprocessed — so that the command is decided on the state the robots leave.
    pub fn prepare(&self, store: &mut Store, now: DateTime<Utc>) -> Result<Report, RobotError> {
        match store.cursor(CURSOR)? {
            None => {
                self.write(store, now, |tx| {
                    if tx.cursor(CURSOR)?.is_none() {
                        let head = tx.head_position();
                        tx.set_cursor(CURSOR, head)?;
                    }
                    Ok::<_, RobotError>(())
                })?;
                Ok(Report::default())
            }
            Some(cursor) if cursor < store.last_position()? => self.process(store, now),
            // At the head: nothing to do. Ahead (the log was cut or the cursor edited): the
            // command's write refuses it when it opens, before anything is appended.
            Some(_) => Ok(Report::default()),
        }
    }

    /// Processes every event after the cursor, including the robots' own effects, until the
    /// cursor reaches the head of the log.
    pub fn process(&self, store: &mut Store, now: DateTime<Utc>) -> Result<Report, RobotError> {
        let mut total = Report::default();
        let mut first = true;
        loop {
            let (report, more) = self.write(store, now, |tx| {
                self.activate_in(tx, now)?;
                let mut report = Report::default();
                let more = self.process_in(tx, now, &mut report, EVENTS_PER_TX, first)?;
                Ok::<_, RobotError>((report, more))
            })?;
            first = false;
            total.add(&report);
            if !more {
                return Ok(total);
            }
        }
    }

    /// Processes at most `budget` events in one transaction (for callers that interleave
    /// processing with other work, and for crash tests).
    pub fn process_some(
        &self,
        store: &mut Store,
        now: DateTime<Utc>,
        budget: usize,
    ) -> Result<Report, RobotError> {
        self.write(store, now, |tx| {
            self.activate_in(tx, now)?;
            let mut report = Report::default();
            self.process_in(tx, now, &mut report, budget, true)?;
            Ok(report)
        })
    }

    /// Processes up to `budget` events in the caller's transaction; whether more are left.
    /// With `check_cursor`, first checks the cursor against the log (a read of the backlog:
    /// done once per call of [`Runtime::process`], not for each of its transactions).
    fn process_in(
        &self,
        tx: &mut Tx<'_>,
        now: DateTime<Utc>,
        report: &mut Report,
        budget: usize,
        check_cursor: bool,
    ) -> Result<bool, RobotError> {
        let head = tx.head_position();
        let mut cursor = match tx.cursor(CURSOR)? {
            Some(c) => c,
            None => head,
        };
        // (A cursor past the log's end was refused when the transaction began.)
        // The robots' reactions carry their trigger as cause, and triggers are processed in
        // order: a reaction to a position past the cursor proves the rules got that far, so a
        // cursor moved back never makes a rule act twice on one event.
        if check_cursor
            && let Some(reached) = tx.last_cause_after(cursor, &FIRINGS)?
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
            let page = tx.read_after(cursor, (budget - done).min(64))?;
            if page.is_empty() {
                tx.set_cursor(CURSOR, cursor)?;
                return Ok(false);
            }
            for rec in &page {
                self.handle(tx, rec, now, report)?;
                cursor = rec.position;
                done += 1;
                report.processed += 1;
            }
        }
        tx.set_cursor(CURSOR, cursor)?;
        Ok(tx.head_position() > cursor)
    }

    /// Reacts to one event.
    fn handle(
        &self,
        tx: &mut Tx<'_>,
        rec: &RecordedEvent,
        now: DateTime<Utc>,
        report: &mut Report,
    ) -> Result<(), RobotError> {
        let event = rec.decode()?;
        match &event {
            Event::RobotsResumed(r) => return self.resume(tx, rec, &event, r.delayed, now, report),
            Event::LeadStageChanged(s) | Event::DealStageChanged(s) => {
                self.cancel_delayed(tx, rec, &s.from, now)?;
            }
            _ => {}
        }
        let mut keys = RuleSet::keys_of(&self.config, &event);
        match &event {
            Event::DeadlineElapsed(d) => keys.push(TriggerKey::DeadlineElapsed(d.name.clone())),
            Event::LeadRepeatDetected(_) => keys.push(TriggerKey::RepeatDetected),
            Event::TaskOverdue(_) => keys.push(TriggerKey::TaskOverdue),
            Event::IdleDetected(_) => keys.push(TriggerKey::Idle(rec.stream.kind)),
            Event::ScheduleFired(_) => keys.push(TriggerKey::Schedule),
            _ => {}
        }
        if keys.is_empty() {
            return Ok(());
        }
        let mut fired: HashSet<&str> = HashSet::new();
        let mut entity: Option<Option<Entity>> = None;
        let mut depth: Option<usize> = None;
        for key in &keys {
            for rule in self.rules.by_key(key) {
                if fired.contains(rule.id.as_str()) {
                    continue;
                }
                let state = match &entity {
                    Some(e) => e.clone(),
                    None => {
                        let e = if rec.stream.kind.is_entity() {
                            tx.load(rec.stream)?
                        } else {
                            None
                        };
                        entity = Some(e.clone());
                        e
                    }
                };
                if !trigger_applies(&self.config, rule, &event, state.as_ref()) {
                    continue;
                }
                let d = match depth {
                    Some(d) => d,
                    None => *depth.insert(chain_depth(tx, rec)?),
                };
                if d >= DEPTH_LIMIT {
                    let names: Vec<&str> = self.rules.by_key(key).map(|r| r.id.as_str()).collect();
                    self.runtime_incident(
                        tx,
                        rec,
                        now,
                        "depth_limit",
                        Some(&rule.id),
                        format!(
                            "rules stopped at depth {DEPTH_LIMIT}: {} → {} keeps triggering rules without a pause ({}); check the rule set for a loop (`leadflow rules check` warns of them)",
                            rec.event_type,
                            rec.stream,
                            names.join(", ")
                        ),
                        report,
                    )?;
                    return Ok(());
                }
                if let Some(cond) = &rule.condition {
                    let related = match &state {
                        Some(Entity::Task(t)) => {
                            let s = match (t.lead, t.deal) {
                                (_, Some(d)) => Some(StreamId::new(EntityKind::Deal, d)),
                                (Some(l), None) => Some(StreamId::new(EntityKind::Lead, l)),
                                _ => None,
                            };
                            match s {
                                Some(s) => tx.load(s)?,
                                None => None,
                            }
                        }
                        _ => None,
                    };
                    let responsible = responsible_of(state.as_ref());
                    let vars = variables(
                        tx,
                        &self.config,
                        rec,
                        &event,
                        state.as_ref(),
                        related.as_ref(),
                        responsible.as_ref(),
                        now,
                    )?;
                    match cond.eval(&vars) {
                        Ok(true) => {}
                        Ok(false) => continue,
                        Err(m) => {
                            self.runtime_incident(
                                tx,
                                rec,
                                now,
                                "condition_failed",
                                Some(&rule.id),
                                format!(
                                    "the condition of rule '{}' could not be evaluated: {m}",
                                    rule.id
                                ),
                                report,
                            )?;
                            continue;
                        }
                    }
                }
                fired.insert(rule.id.as_str());
                report.fired += 1;
                let calls: Vec<DelayedRobot> = rule
                    .robots
                    .iter()
                    .map(|c| DelayedRobot {
                        robot: c.robot.clone(),
                        params: c
                            .params
                            .iter()
                            .map(|(k, v)| (k.clone(), serde_json::to_value(v).unwrap_or_default()))
                            .collect(),
                    })
                    .collect();
                let subject = subject_of(rec);
                if let Some(delay) = rule.delay {
                    let due_at = if rule.delay_working {
                        self.config.calendar.checked_add_working(now, delay)
                    } else {
                        now.checked_add_signed(delay)
                    };
                    let Some(due_at) = due_at else {
                        self.runtime_incident(
                            tx,
                            rec,
                            now,
                            "robot_failed",
                            Some(&rule.id),
                            format!(
                                "rule '{}': its delay{} from {} is out of reach; the robots did not run",
                                rule.id,
                                if rule.delay_working { " in working time" } else { "" },
                                fmt_time(now)
                            ),
                            report,
                        )?;
                        continue;
                    };
                    let delayed = Delayed {
                        rule: &rule.id,
                        survive_move: rule.survive_move,
                        subject,
                        state: state.as_ref(),
                    };
                    self.delay(tx, rec, &delayed, calls, due_at, now)?;
                    continue;
                }
                self.run_calls(
                    tx,
                    rec,
                    &event,
                    &rule.id,
                    rule.survive_move,
                    subject,
                    state.as_ref(),
                    &calls,
                    now,
                    report,
                )?;
            }
        }
        Ok(())
    }

    /// Runs robot calls in order; a `wait` puts the rest off, a failure stops the rule and is
    /// recorded as an incident.
    #[allow(clippy::too_many_arguments)]
    fn run_calls(
        &self,
        tx: &mut Tx<'_>,
        rec: &RecordedEvent,
        event: &Event,
        rule: &str,
        survive_move: bool,
        subject: StreamId,
        state: Option<&Entity>,
        calls: &[DelayedRobot],
        now: DateTime<Utc>,
        report: &mut Report,
    ) -> Result<(), RobotError> {
        for (i, call) in calls.iter().enumerate() {
            if call.robot == "wait" {
                let text = call
                    .params
                    .get("for")
                    .and_then(|v| v.as_str())
                    .unwrap_or("0s");
                let working = call
                    .params
                    .get("working_time")
                    .and_then(|v| v.as_bool())
                    .unwrap_or(false);
                let due_at = match self.config.calendar.after(now, text, working) {
                    Ok(t) => t,
                    Err(m) => {
                        tracing::warn!(rule, error = %m, "wait failed");
                        self.runtime_incident(
                            tx,
                            rec,
                            now,
                            "robot_failed",
                            Some(rule),
                            format!("rule '{rule}', robot 'wait': {m}"),
                            report,
                        )?;
                        return Ok(());
                    }
                };
                let rest = calls[i + 1..].to_vec();
                if rest.is_empty() {
                    return Ok(());
                }
                let delayed = Delayed {
                    rule,
                    survive_move,
                    subject,
                    state,
                };
                return self.delay(tx, rec, &delayed, rest, due_at, now);
            }
            let Some(robot) = self.registry.implementation(&call.robot) else {
                self.runtime_incident(
                    tx,
                    rec,
                    now,
                    "robot_failed",
                    Some(rule),
                    format!("rule '{rule}': no robot called '{}'", call.robot),
                    report,
                )?;
                return Ok(());
            };
            let params: Params = call.params.clone();
            let outcome = tx.atomically(|tx| {
                let mut ctx = Ctx {
                    tx,
                    config: &self.config,
                    rule,
                    ruleset: &self.hash,
                    trigger: rec,
                    event,
                    subject,
                    now,
                };
                // A robot that panics (a bug) fails like one that returns an error: its
                // appends are rolled back and an incident gives the panic's message and
                // location; the runtime goes on (see `crate::panics`).
                crate::panics::catch(std::panic::AssertUnwindSafe(|| {
                    robot.run(&mut ctx, &params)
                }))
                .unwrap_or_else(|panic| Err(RobotError::Failed(format!("the robot {panic}"))))
            });
            match outcome {
                Ok(()) => {}
                Err(RobotError::Store(e)) => return Err(RobotError::Store(e)),
                Err(e) => {
                    tracing::warn!(rule, robot = %call.robot, error = %e, "robot failed");
                    self.runtime_incident(
                        tx,
                        rec,
                        now,
                        "robot_failed",
                        Some(rule),
                        format!("rule '{rule}', robot '{}': {e}", call.robot),
                        report,
                    )?;
                    return Ok(());
                }
            }
        }
        Ok(())
    }

    /// Puts robot calls off until `due_at` (a rule's `delay`, or what follows a `wait`).
    fn delay(
        &self,
        tx: &mut Tx<'_>,
        rec: &RecordedEvent,
        d: &Delayed<'_>,
        robots: Vec<DelayedRobot>,
        due_at: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<(), RobotError> {
        let stage = d.state.and_then(|e| e.stage()).map(|(_, s)| s.clone());
        let version = tx.version(d.subject)?;
        tx.append(
            d.subject,
            version,
            &[Event::RobotsDelayed(RobotsDelayed {
                rule: d.rule.to_owned(),
                ruleset: self.hash.clone(),
                due_at,
                trigger: rec.position,
                stage,
                survive_move: d.survive_move,
                robots,
            })],
            &robot_meta(d.rule, rec, now),
        )?;
        Ok(())
    }

    /// Runs the robots a `robots.delayed` put off.
    fn resume(
        &self,
        tx: &mut Tx<'_>,
        rec: &RecordedEvent,
        event: &Event,
        delayed: i64,
        now: DateTime<Utc>,
        report: &mut Report,
    ) -> Result<(), RobotError> {
        let Some(original) = tx.event_at(delayed)? else {
            return Ok(());
        };
        let Event::RobotsDelayed(d) = original.decode()? else {
            return Ok(());
        };
        let state = if rec.stream.kind.is_entity() {
            tx.load(rec.stream)?
        } else {
            None
        };
        report.fired += 1;
        self.run_calls(
            tx,
            rec,
            event,
            &d.rule,
            d.survive_move,
            rec.stream,
            state.as_ref(),
            &d.robots,
            now,
            report,
        )
    }

    /// Cancels the delayed robots scheduled while the entity was in the stage it just left,
    /// unless their rule lets them survive the move.
    fn cancel_delayed(
        &self,
        tx: &mut Tx<'_>,
        rec: &RecordedEvent,
        left: &leadflow_engine::ids::StageId,
        now: DateTime<Utc>,
    ) -> Result<(), RobotError> {
        let stream = rec.stream;
        let pending: Vec<i64> = tx
            .pending_timers(stream)?
            .into_iter()
            .filter(|t| {
                t.what == "robots" && !t.survive_move && t.stage.as_deref() == Some(left.as_str())
            })
            .map(|t| t.id)
            .collect();
        if pending.is_empty() {
            return Ok(());
        }
        let events: Vec<Event> = pending
            .into_iter()
            .map(|delayed| {
                Event::RobotsCancelled(RobotsCancelled {
                    delayed,
                    reason: format!("left stage '{left}'"),
                })
            })
            .collect();
        let meta = EventMeta {
            occurred_at: now,
            actor: Actor::System,
            causation: Some(rec.position),
            correlation: Some(rec.correlation),
        };
        let version = tx.version(stream)?;
        tx.append(stream, version, &events, &meta)?;
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn runtime_incident(
        &self,
        tx: &mut Tx<'_>,
        rec: &RecordedEvent,
        now: DateTime<Utc>,
        kind: &str,
        rule: Option<&str>,
        text: String,
        report: &mut Report,
    ) -> Result<(), RobotError> {
        let subject = subject_of(rec);
        let employee = if subject.kind.is_entity() {
            responsible_of(tx.load(subject)?.as_ref())
        } else {
            None
        };
        let meta = EventMeta {
            occurred_at: now,
            actor: Actor::System,
            causation: Some(rec.position),
            correlation: Some(rec.correlation),
        };
        let version = tx.version(subject)?;
        tx.append(
            subject,
            version,
            &[Event::IncidentRecorded(IncidentRecorded {
                kind: kind.to_owned(),
                employee,
                rule: rule.map(str::to_owned),
                text,
            })],
            &meta,
        )?;
        report.incidents += 1;
        Ok(())
    }

    /// Fires everything due at or before `now` — timers, cron schedules, idle rules — and
    /// processes the events that causes (and any other unprocessed event).
    pub fn tick(&self, store: &mut Store, now: DateTime<Utc>) -> Result<Report, RobotError> {
        let mut total = self.process(store, now)?;
        loop {
            // The firings and the rules' reactions to them commit together: one transaction
            // instead of two, and no firing is ever left unprocessed by a crash in between.
            let (fired, report, more) = self.write(store, now, |tx| {
                self.activate_in(tx, now)?;
                let fired = self.fire_timers(tx, now, TIMERS_PER_TX)?;
                let mut report = Report::default();
                // `process` just checked the cursor against the log.
                let more = self.process_in(tx, now, &mut report, TIMERS_PER_TX, false)?;
                Ok::<_, RobotError>((fired, report, more))
            })?;
            total.timers += fired;
            total.add(&report);
            if more {
                total.add(&self.process(store, now)?);
            }
            if fired < TIMERS_PER_TX {
                break;
            }
        }
        let fired = self.write(store, now, |tx| {
            let s = self.fire_schedules(tx, now)?;
            let i = self.fire_idle(tx, now)?;
            Ok::<_, RobotError>(s + i)
        })?;
        total.timers += fired;
        total.add(&self.process(store, now)?);
        Ok(total)
    }

    /// Appends the firing events of up to `limit` due timers; how many fired.
    fn fire_timers(
        &self,
        tx: &mut Tx<'_>,
        now: DateTime<Utc>,
        limit: usize,
    ) -> Result<usize, RobotError> {
        let due = tx.take_due_timers(now, limit)?;
        for (stream, timer) in &due {
            let event = match timer.what.as_str() {
                "deadline" => Event::DeadlineElapsed(DeadlineElapsed {
                    name: timer.name.clone().unwrap_or_default(),
                    scheduled: timer.id,
                    due_at: timer.due_at,
                }),
                "robots" => Event::RobotsResumed(RobotsResumed { delayed: timer.id }),
                _ => Event::TaskOverdue(TaskOverdue {
                    due_at: timer.due_at,
                }),
            };
            let meta = EventMeta {
                occurred_at: now,
                actor: Actor::System,
                causation: Some(timer.id),
                correlation: None,
            };
            let version = tx.version(*stream)?;
            tx.append(*stream, version, &[event], &meta)?;
        }
        Ok(due.len())
    }

    /// Appends `schedule.fired` for every cron rule whose time came since it last fired (once,
    /// however many times passed while nothing ran).
    fn fire_schedules(&self, tx: &mut Tx<'_>, now: DateTime<Utc>) -> Result<usize, RobotError> {
        let mut fired = 0;
        for rule in &self.rules.rules {
            let Trigger::Schedule { cron } = &rule.trigger else {
                continue;
            };
            let Ok(schedule) = leadflow_engine::rules::check_cron(cron) else {
                continue;
            };
            let last: Option<String> = tx
                .conn()?
                .prepare_cached("SELECT due_at FROM schedules WHERE rule = ?1")
                .and_then(|mut s| s.query_row([&rule.id], |r| r.get(0)).optional())
                .map_err(RobotError::from)?;
            let since = match last.as_deref().and_then(parse_time) {
                Some(t) => t,
                None => self.activated_at(tx)?.unwrap_or(now),
            };
            let tz = self.config.calendar.timezone;
            let mut latest = None;
            for t in schedule.after(&since.with_timezone(&tz)) {
                let t = t.with_timezone(&Utc);
                if t > now {
                    break;
                }
                latest = Some(t);
            }
            if let Some(due_at) = latest {
                let version = tx.version(SYSTEM_STREAM)?;
                tx.append(
                    SYSTEM_STREAM,
                    version,
                    &[Event::ScheduleFired(ScheduleFired {
                        rule: rule.id.clone(),
                        due_at,
                    })],
                    &EventMeta::root(now, Actor::System),
                )?;
                fired += 1;
            }
        }
        Ok(fired)
    }

    /// When the rule set in force was activated.
    fn activated_at(&self, tx: &mut Tx<'_>) -> Result<Option<DateTime<Utc>>, RobotError> {
        let t: Option<String> = tx
            .conn()?
            .prepare_cached(
                "SELECT e.occurred_at FROM events e JOIN streams s ON s.stream_key = e.stream_key \
                 WHERE s.kind = 'ruleset' AND s.entity_id = 1 ORDER BY e.version DESC LIMIT 1",
            )
            .and_then(|mut s| s.query_row([], |r| r.get(0)).optional())
            .map_err(RobotError::from)?;
        Ok(t.as_deref().and_then(parse_time))
    }

    /// Appends `idle.detected` for every lead or deal an idle rule's wait has passed over
    /// since its last activity (once per quiet spell).
    fn fire_idle(&self, tx: &mut Tx<'_>, now: DateTime<Utc>) -> Result<usize, RobotError> {
        let mut fired = 0;
        for IdleRule {
            rule,
            entity,
            after,
            table,
            stages,
        } in self.idle_rules()
        {
            let Some(cutoff) = now.checked_sub_signed(after) else {
                tracing::warn!(rule = %rule.id, "idle rule's wait reaches before the start of time; skipped");
                continue;
            };
            let cutoff = fmt_time(cutoff);
            let found: Vec<(i64, String)> = {
                let conn = tx.conn()?;
                let marks: Vec<String> = (0..stages.len()).map(|i| format!("?{}", i + 3)).collect();
                let marks = marks.join(", ");
                let sql = format!(
                    "SELECT t.id, t.updated_at FROM {table} t WHERE t.updated_at <= ?1 AND t.stage IN ({marks}) \
                     AND NOT EXISTS (SELECT 1 FROM idle_marks m WHERE m.kind = '{}' AND m.entity_id = t.id \
                     AND m.rule = ?2 AND m.since >= t.updated_at) ORDER BY t.id",
                    entity.as_str()
                );
                let mut args: Vec<&dyn rusqlite::ToSql> = vec![&cutoff, &rule.id];
                args.extend(stages.iter().map(|s| s as &dyn rusqlite::ToSql));
                let mut stmt = conn.prepare_cached(&sql).map_err(RobotError::from)?;
                let rows = stmt
                    .query_map(args.as_slice(), |r| Ok((r.get(0)?, r.get(1)?)))
                    .map_err(RobotError::from)?;
                rows.collect::<Result<_, _>>().map_err(RobotError::from)?
            };
            for (id, since) in found {
                let stream = StreamId::new(entity, id);
                let version = tx.version(stream)?;
                tx.append(
                    stream,
                    version,
                    &[Event::IdleDetected(IdleDetected {
                        rule: rule.id.clone(),
                        since: parse_time(&since).unwrap_or(now),
                    })],
                    &EventMeta::root(now, Actor::System),
                )?;
                fired += 1;
            }
        }
        Ok(fired)
    }

    /// The earliest pending timer's due time, for `run` to sleep until.
    pub fn next_due(&self, store: &Store) -> Result<Option<DateTime<Utc>>, RobotError> {
        let t: Option<String> = store
            .connection()
            .query_row("SELECT min(due_at) FROM timers", [], |r| r.get(0))
            .map_err(RobotError::from)?;
        Ok(t.as_deref().and_then(parse_time))
    }

    /// The idle rules, with what their queries need.
    fn idle_rules(&self) -> impl Iterator<Item = IdleRule<'_>> {
        self.rules
            .rules
            .iter()
            .filter_map(|rule| match &rule.trigger {
                Trigger::Idle {
                    entity,
                    after,
                    stages,
                } => Some(IdleRule {
                    rule,
                    entity: *entity,
                    after: *after,
                    table: if *entity == EntityKind::Deal {
                        "deals"
                    } else {
                        "leads"
                    },
                    stages: self.idle_stages(*entity, stages),
                }),
                _ => None,
            })
    }

    /// The stages an idle rule watches: those it names, or every in-progress stage of its
    /// entity's pipelines.
    fn idle_stages(
        &self,
        entity: EntityKind,
        named: &[leadflow_engine::ids::StageId],
    ) -> Vec<String> {
        if !named.is_empty() {
            return named.iter().map(|s| s.to_string()).collect();
        }
        self.config
            .pipelines
            .iter()
            .filter(|p| p.entity == entity)
            .flat_map(|p| {
                p.stages
                    .iter()
                    .filter(|s| s.semantic == leadflow_engine::config::Semantic::InProgress)
                    .map(|s| s.id.to_string())
            })
            .collect()
    }

    /// When the next lead or deal becomes idle for an idle rule, after `now`.
    pub fn next_idle(
        &self,
        store: &Store,
        now: DateTime<Utc>,
    ) -> Result<Option<DateTime<Utc>>, RobotError> {
        let mut next: Option<DateTime<Utc>> = None;
        for IdleRule {
            rule,
            after,
            table,
            stages,
            ..
        } in self.idle_rules()
        {
            if stages.is_empty() {
                continue;
            }
            let marks = vec!["?"; stages.len()].join(", ");
            let sql = format!(
                "SELECT min(updated_at) FROM {table} WHERE updated_at > ?1 AND stage IN ({marks})"
            );
            let Some(cutoff) = now.checked_sub_signed(after) else {
                tracing::warn!(rule = %rule.id, "idle rule's wait reaches before the start of time; skipped");
                continue;
            };
            let cutoff = fmt_time(cutoff);
            let mut args: Vec<&dyn rusqlite::ToSql> = vec![&cutoff];
            args.extend(stages.iter().map(|s| s as &dyn rusqlite::ToSql));
            let oldest: Option<String> = store
                .connection()
                .query_row(&sql, args.as_slice(), |r| r.get(0))
                .map_err(RobotError::from)?;
            if let Some(due) = oldest
                .as_deref()
                .and_then(parse_time)
                .and_then(|t| t.checked_add_signed(after))
            {
                next = Some(next.map_or(due, |n| n.min(due)));
            }
        }
        Ok(next)
    }

    /// The next moment anything falls due after `now`: a timer, a cron time or an idle rule.
    pub fn next_wake(
        &self,
        store: &Store,
        now: DateTime<Utc>,
    ) -> Result<Option<DateTime<Utc>>, RobotError> {
        Ok([
            self.next_due(store)?,
            self.next_schedule(now),
            self.next_idle(store, now)?,
        ]
        .into_iter()
        .flatten()
        .min())
    }

    /// Moves a virtual clock from `from` to `to`, ticking at every moment something falls due
    /// on the way, in time order, so each timer fires at its own due time.
    ///
    /// A rule set that keeps scheduling something due at once would never let the clock move:
    /// after [`TICKS_PER_INSTANT`] ticks at one instant the clock jumps to `to`, and
    /// [`Advanced::stuck_at`] says where it stuck.
    pub fn advance(
        &self,
        store: &mut Store,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Advanced, RobotError> {
        let mut out = Advanced::default();
        let mut now = from;
        let mut same = 0;
        while let Some(due) = self.next_wake(store, now)?.filter(|t| *t <= to) {
            let at = due.max(now);
            if at == now {
                same += 1;
                if same > TICKS_PER_INSTANT {
                    out.stuck_at = Some(at);
                    break;
                }
            } else {
                same = 0;
            }
            now = at;
            out.report.add(&self.tick(store, at)?);
        }
        out.report.add(&self.tick(store, to)?);
        Ok(out)
    }

    /// The next cron time of any schedule rule after `now`.
    pub fn next_schedule(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let tz = self.config.calendar.timezone;
        self.rules
            .rules
            .iter()
            .filter_map(|r| match &r.trigger {
                Trigger::Schedule { cron } => leadflow_engine::rules::check_cron(cron).ok(),
                _ => None,
            })
            .filter_map(|s| s.after(&now.with_timezone(&tz)).next())
            .map(|t| t.with_timezone(&Utc))
            .min()
    }
}

/// An idle rule: its entity, its wait, the entity's table and the stages it watches.
struct IdleRule<'a> {
    rule: &'a Rule,
    entity: EntityKind,
    after: chrono::Duration,
    table: &'static str,
    stages: Vec<String>,
}

/// Whose robots are being put off, and where.
struct Delayed<'a> {
    rule: &'a str,
    survive_move: bool,
    subject: StreamId,
    state: Option<&'a Entity>,
}

/// Metadata for what a rule appends.
fn robot_meta(rule: &str, rec: &RecordedEvent, now: DateTime<Utc>) -> EventMeta {
    EventMeta {
        occurred_at: now,
        actor: Actor::Robot(rule.to_owned()),
        causation: Some(rec.position),
        correlation: Some(rec.correlation),
    }
}

/// The stream a rule triggered by `rec` is about.
fn subject_of(rec: &RecordedEvent) -> StreamId {
    if rec.stream.kind == EntityKind::Ruleset {
        SYSTEM_STREAM
    } else {
        rec.stream
    }
}

fn responsible_of(e: Option<&Entity>) -> Option<leadflow_engine::ids::EmployeeId> {
    match e? {
        Entity::Lead(l) => l.responsible.clone(),
        Entity::Deal(d) => d.responsible.clone(),
        Entity::Contact(c) => c.responsible.clone(),
        Entity::Company(c) => c.responsible.clone(),
        Entity::Task(t) => Some(t.assignee.clone()),
    }
}

/// Whether the trigger's filters (sources, pipelines, the stage's pipeline, the idle rule's
/// id, the schedule's rule) accept the event.
fn trigger_applies(config: &Config, rule: &Rule, event: &Event, entity: Option<&Entity>) -> bool {
    let pipeline = entity.and_then(|e| e.stage()).map(|(p, _)| p);
    match &rule.trigger {
        Trigger::Created {
            sources, pipelines, ..
        } => {
            let source_ok = sources.is_empty()
                || matches!(event, Event::LeadCreated(l) if sources.contains(&l.source));
            let pipeline_ok =
                pipelines.is_empty() || pipeline.is_some_and(|p| pipelines.contains(p));
            source_ok
                && pipeline_ok
                && matches!(event, Event::LeadCreated(_) | Event::DealCreated(_))
        }
        Trigger::StageEntered {
            pipeline: Some(want),
            ..
        } => pipeline == Some(want),
        Trigger::Won { pipelines, .. } | Trigger::Lost { pipelines, .. } => {
            pipelines.is_empty() || pipeline.is_some_and(|p| pipelines.contains(p))
        }
        Trigger::Idle { .. } => matches!(event, Event::IdleDetected(i) if i.rule == rule.id),
        Trigger::Schedule { .. } => matches!(event, Event::ScheduleFired(f) if f.rule == rule.id),
        _ => {
            let _ = config;
            true
        }
    }
}

/// How many causation steps lead from `rec` back to the start of its chain, up to the depth
/// limit. A timer firing starts a new chain.
fn chain_depth(tx: &mut Tx<'_>, rec: &RecordedEvent) -> Result<usize, RobotError> {
    let timer_types = [
        "deadline.elapsed",
        "robots.resumed",
        "task.overdue",
        "idle.detected",
        "schedule.fired",
    ];
    let mut depth = 0;
    let mut ty = rec.event_type.clone();
    let mut cause = rec.causation;
    let conn = tx.conn()?;
    while depth < DEPTH_LIMIT {
        if timer_types.contains(&ty.as_str()) {
            break;
        }
        let Some(pos) = cause else { break };
        let row: Option<(Option<i64>, String)> = conn
            .prepare_cached("SELECT causation, type FROM events WHERE position = ?1")
            .and_then(|mut s| {
                s.query_row([pos], |r| Ok((r.get(0)?, r.get(1)?)))
                    .optional()
            })
            .map_err(RobotError::from)?;
        let Some((c, t)) = row else { break };
        depth += 1;
        cause = c;
        ty = t;
    }
    Ok(depth)
}
