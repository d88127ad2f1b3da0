//! Backtest's sandbox (`leadflow backtest`, `rules coverage`; docs/RULES.md, "Backtest and
//! coverage"): the live log's inputs re-run at their recorded times on a sandbox [`Backend`]
//! with a candidate rule set, on a virtual clock that follows the recorded times and fires the
//! candidate's timers when due ([`Runtime::advance`]); the robots' effects of both runs are
//! compared as they come ([`Comparison`]).
//!
//! What an input is, the command it comes back as and the normal form of an effect are the
//! engine's (`leadflow_engine::backtest`). Streams get *stable names* on both sides, so the
//! runs compare although their positions and generated ids differ: an entity an input created
//! is named by its live stream (`lead-7`); one a robot created by its kind, rule and the
//! subject of the chain that made it (`deal by transfer from lead-7`, `#2` for a second one).
//! An input about an entity the candidate does not have, or that its decision refuses against
//! the candidate's state, is a [`Divergence`] and is not fed; an external robot's recorded
//! outcome is fed only to the same request (same subject, rule, robot and count), and no
//! external robot ever runs in the sandbox.

use crate::context::RobotError;
use crate::{Registry, Runtime};
use chrono::{DateTime, Duration, Utc};
use leadflow_engine::backtest::{
    Comparison, Divergence, Role, command_of, creates, effect, remap, role,
};
use leadflow_engine::config::ConfigErrors;
use leadflow_engine::event::{RobotCompleted, RulesetActivated};
use leadflow_engine::react::Observer;
use leadflow_engine::rules::RuleSet;
use leadflow_engine::stored::RecordedEvent;
use leadflow_engine::workspace::{Backend, Stamp, Workspace, WorkspaceError};
use leadflow_engine::{Actor, Config, EntityKind, Event, EventMeta, Source, StreamId};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

/// A sandbox held in one transaction (`Store::batched`) commits once this many events have
/// been appended: no more than a transaction keeps in memory to read back.
pub const BATCH_EVENTS: i64 = 8000;

/// The runtime of a rule set as a `ruleset.activated` event recorded it, loaded against
/// `config` with the built-in robots (backtest's `--as-recorded`, `rules coverage`).
pub fn recorded_runtime(set: &RulesetActivated, config: &Config) -> Result<Runtime, ConfigErrors> {
    let sources: Vec<Source> = set
        .files
        .iter()
        .map(|f| Source {
            path: f.path.clone(),
            text: f.text.clone(),
        })
        .collect();
    let registry = Registry::builtin();
    let rules = RuleSet::load(&sources, config, &registry)?;
    Ok(Runtime::new(config.clone(), rules, registry))
}

/// How soon after a command's events a rule-set activation that follows them comes from
/// that command's rules run: at once in the service and the CLI; logs the CLI wrote before it
/// reacted at the command's moment have its second reading of the clock, after the commit.
const SAME_COMMAND: Duration = Duration::seconds(1);

/// Live events read per page.
const PAGE: usize = 512;

/// What to re-run and compare.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Compare only effects at or after this time (the run starts at the log's start).
    pub since: Option<DateTime<Utc>>,
    /// Stop at this time.
    pub until: Option<DateTime<Utc>>,
    /// Follow the live history's rule-set activations: each recorded set replaces the
    /// candidate from the moment it came into force (the candidate runs until the first).
    pub as_recorded: bool,
    /// Read the live log up to this position only (its head when the backtest began: what a
    /// running service appends meanwhile, its reactions not yet committed, is left out).
    pub head: Option<i64>,
}

/// Why a backtest could not run (a divergence is not an error: it is reported).
#[derive(Debug, thiserror::Error)]
pub enum BacktestError {
    /// Reading the live log or writing the sandbox failed.
    #[error(transparent)]
    Store(#[from] WorkspaceError),
    /// The rules runtime failed.
    #[error(transparent)]
    Robot(#[from] RobotError),
    /// A recorded rule set does not load against today's configuration (`--as-recorded`).
    #[error("the rule set activated at position {position} does not load today: {errors}")]
    Recorded {
        /// Its activation.
        position: i64,
        /// Its problems.
        errors: ConfigErrors,
    },
}

/// How often a rule's trigger matched and its condition said no, in the compared period.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Matches {
    /// Its trigger matched.
    pub matched: u64,
    /// Its condition was false.
    pub condition_false: u64,
}

/// Counts matches and false conditions per rule within a period (an [`Observer`]).
#[derive(Debug, Default)]
pub struct Coverage {
    since: Option<DateTime<Utc>>,
    until: Option<DateTime<Utc>>,
    counts: Mutex<BTreeMap<String, Matches>>,
}

impl Coverage {
    /// Counts within `[since, until]`.
    pub fn new(since: Option<DateTime<Utc>>, until: Option<DateTime<Utc>>) -> Coverage {
        Coverage {
            since,
            until,
            counts: Mutex::default(),
        }
    }

    /// The counts so far.
    pub fn counts(&self) -> BTreeMap<String, Matches> {
        self.counts.lock().map(|c| c.clone()).unwrap_or_default()
    }

    fn count(&self, rule: &str, now: DateTime<Utc>, f: impl FnOnce(&mut Matches)) {
        if self.since.is_some_and(|s| now < s) || self.until.is_some_and(|u| now > u) {
            return;
        }
        if let Ok(mut c) = self.counts.lock() {
            f(c.entry(rule.to_owned()).or_default());
        }
    }
}

impl Observer for Coverage {
    fn matched(&self, rule: &str, now: DateTime<Utc>) {
        self.count(rule, now, |m| m.matched += 1);
    }

    fn condition_false(&self, rule: &str, now: DateTime<Utc>) {
        self.count(rule, now, |m| m.condition_false += 1);
    }
}

/// What a backtest did.
#[derive(Debug)]
pub struct Run {
    /// The two runs' effects compared (finish it with the subjects to show).
    pub comparison: Comparison,
    /// Live events read.
    pub events: usize,
    /// Inputs fed to the sandbox (divergences included).
    pub inputs: usize,
    /// Events the sandbox's log holds at the end.
    pub sandbox_events: i64,
    /// The robots' failures per rule (incidents naming the rule), live and candidate.
    pub failures: BTreeMap<String, leadflow_engine::backtest::Counts>,
    /// The first and last time of the live events read.
    pub span: Option<(DateTime<Utc>, DateTime<Utc>)>,
}

/// Stable names of one run's streams, and its external robots' requests by key.
#[derive(Default)]
struct Names {
    of: HashMap<StreamId, String>,
    stream: HashMap<String, StreamId>,
    ordinals: HashMap<String, usize>,
    /// Request key → (position, stream, correlation).
    requests: HashMap<String, (i64, StreamId, i64)>,
    /// Request position → key.
    keys: HashMap<i64, String>,
}

impl Names {
    fn name(&self, s: StreamId) -> String {
        self.of.get(&s).cloned().unwrap_or_else(|| s.to_string())
    }

    fn set(&mut self, s: StreamId, name: String) {
        self.stream.insert(name.clone(), s);
        self.of.insert(s, name);
    }

    /// `base`, or `base #n` for the n-th stream of that base.
    fn numbered(&mut self, base: String) -> String {
        let n = self.ordinals.entry(base.clone()).or_insert(0);
        *n += 1;
        if *n == 1 {
            base
        } else {
            format!("{base} #{n}")
        }
    }

    /// Names what `rec` (not an input) starts or asks: a robot-made entity, a request.
    fn note<D: Backend + ?Sized>(
        &mut self,
        db: &D,
        rec: &RecordedEvent,
    ) -> Result<(), BacktestError> {
        if rec.version == 1 && rec.stream.kind.is_entity() && !self.of.contains_key(&rec.stream) {
            let rule = leadflow_engine::explain::rule_of(&rec.actor).unwrap_or("system");
            let root = db
                .read_after(rec.correlation - 1, 1)?
                .into_iter()
                .next()
                .filter(|r| r.position == rec.correlation)
                .map_or_else(|| "history".to_owned(), |r| self.name(r.stream));
            let name = self.numbered(format!("{} by {rule} from {root}", rec.stream.kind));
            self.set(rec.stream, name);
        }
        if rec.event_type == "robot.requested"
            && let Ok(Event::RobotRequested(r)) = rec.decode()
        {
            let key = self.numbered(format!(
                "request of {} by {} to {}",
                self.name(rec.stream),
                r.rule,
                r.robot
            ));
            self.requests
                .insert(key.clone(), (rec.position, rec.stream, rec.correlation));
            self.keys.insert(rec.position, key);
        }
        Ok(())
    }
}

/// The driver's state.
struct Sandbox<'a, S: Backend> {
    db: &'a mut S,
    runtime: Runtime,
    observer: Option<Arc<dyn Observer>>,
    /// Today's configuration: the robots' (and the recorded rule sets') staff.
    config: Config,
    /// The same with every employee active: what the recorded inputs are decided against.
    inputs_config: Config,
    opts: &'a Options,
    clock: Option<DateTime<Utc>>,
    active: bool,
    live: Names,
    mine: Names,
    seen: i64,
    next_ids: HashMap<EntityKind, i64>,
    comparison: Comparison,
    failures: BTreeMap<String, leadflow_engine::backtest::Counts>,
    inputs: usize,
    /// The last inputs fed: the live positions of the first and last, and the sandbox's
    /// head before them.
    group: Option<(i64, i64, i64)>,
}

/// Runs the live log (`live`) through `sandbox` with `candidate`'s rules and compares the
/// robots' effects. `live_has_rules`: whether the live log has a `ruleset.activated` (without
/// one, the candidate is in force from the start; with one, from the first activation).
/// `observer`, when given, is told the candidate's matches and false conditions.
pub fn run<L: Backend, S: Backend>(
    live: &L,
    sandbox: &mut S,
    candidate: Runtime,
    observer: Option<Arc<dyn Observer>>,
    live_has_rules: bool,
    opts: &Options,
) -> Result<Run, BacktestError> {
    let config = candidate.config().clone();
    // The recorded inputs were decided against the staff of their time: an employee who has
    // left since still made (or received) them. They are fed with every employee active, so
    // today's deactivations are not divergences; the robots still work with today's staff.
    let mut inputs_config = config.clone();
    for e in inputs_config.employees.values_mut() {
        e.active = true;
    }
    let mut runtime = candidate.sandboxed();
    if let Some(o) = &observer {
        runtime = runtime.with_observer(o.clone());
    }
    let mut sb = Sandbox {
        db: sandbox,
        runtime,
        observer,
        config,
        inputs_config,
        opts,
        clock: None,
        active: false,
        live: Names::default(),
        mine: Names::default(),
        seen: 0,
        next_ids: HashMap::new(),
        comparison: Comparison::new(),
        failures: BTreeMap::new(),
        inputs: 0,
        group: None,
    };
    sb.seen = sb.db.last_position()?;
    let mut pending: Vec<RecordedEvent> = Vec::new();
    let mut after = 0;
    let mut events = 0;
    let mut span: Option<(DateTime<Utc>, DateTime<Utc>)> = None;
    'log: loop {
        let page = live.read_after(after, PAGE)?;
        if page.is_empty() {
            break;
        }
        for rec in page {
            if opts.head.is_some_and(|h| rec.position > h) {
                break 'log;
            }
            after = rec.position;
            let t = rec.occurred_at().map_err(WorkspaceError::from)?;
            if opts.until.is_some_and(|u| t > u) {
                break 'log;
            }
            events += 1;
            span = Some(span.map_or((t, t), |(a, b)| (a.min(t), b.max(t))));
            if !live_has_rules && !sb.active {
                sb.activate(t)?;
            }
            let r = role(&rec);
            if r == Role::Input {
                if pending
                    .first()
                    .is_some_and(|p| p.occurred_at != rec.occurred_at)
                {
                    sb.flush(&mut pending)?;
                }
                if rec.version == 1 && rec.stream.kind.is_entity() {
                    sb.live.set(rec.stream, rec.stream.to_string());
                }
                pending.push(rec);
                continue;
            }
            // An activation comes right after the command whose rules run activated it: that
            // command's inputs wait for it.
            if r != Role::Activation {
                sb.flush(&mut pending)?;
            }
            sb.live.note(live, &rec)?;
            match r {
                Role::Activation => sb.activation(&rec, t, &mut pending)?,
                Role::Outcome => sb.outcome(&rec, t)?,
                Role::Effect => {
                    let name = |s: StreamId| sb.live.name(s);
                    if let Some(e) = effect(&rec, &name)
                        && sb.in_window(e.at)
                    {
                        count_failure(&mut sb.failures, &rec, &e.rule, false);
                        sb.comparison.live(e);
                    }
                }
                Role::Input | Role::Firing | Role::Other => {}
            }
        }
    }
    sb.flush(&mut pending)?;
    if let (true, Some((_, last)), Some(now)) = (sb.active, span, sb.clock)
        && last > now
    {
        sb.runtime.advance(sb.db, now, last)?;
        sb.clock = Some(last);
    }
    sb.drain()?;
    Ok(Run {
        sandbox_events: sb.db.last_position()?,
        comparison: sb.comparison,
        events,
        inputs: sb.inputs,
        failures: sb.failures,
        span,
    })
}

/// Feeds one input in the caller's transaction; `Ok(Err(why))` for a divergence (nothing of
/// it appended).
fn feed(
    ws: &mut dyn Workspace,
    config: &Config,
    live: &Names,
    mine: &mut Names,
    next_ids: &mut HashMap<EntityKind, i64>,
    rec: &RecordedEvent,
    t: DateTime<Utc>,
) -> Result<Result<(), String>, WorkspaceError> {
    let event = rec.decode()?;
    let name = live.name(rec.stream);
    let actor: Actor = rec.actor.parse().unwrap_or(Actor::System);
    let meta = EventMeta::root(t, actor);
    let lookup = |m: &Names, s: StreamId| m.stream.get(&live.name(s)).copied();
    if creates(&event) {
        let kind = rec.stream.kind;
        let next = next_ids.entry(kind).or_insert(1);
        let stream = StreamId::new(kind, *next);
        let moved = match remap(rec, stream.id, &|s| lookup(mine, s)) {
            Ok(e) => e,
            Err(e) => return Ok(Err(e.to_string())),
        };
        let version = ws.version(stream)?;
        ws.append(stream, version, &[moved], &meta)?;
        *next += 1;
        mine.set(stream, name);
        return Ok(Ok(()));
    }
    let Some(stream) = lookup(mine, rec.stream) else {
        return Ok(Err(format!(
            "{name} does not exist under the candidate rules"
        )));
    };
    if let Some(cmd) = command_of(stream, &event) {
        return match ws.execute(config, &cmd, &meta) {
            Ok(_) => Ok(Ok(())),
            Err(WorkspaceError::Rejected(r)) => Ok(Err(format!("refused: {r}"))),
            Err(e) => Err(e),
        };
    }
    let moved = match remap(rec, stream.id, &|s| lookup(mine, s)) {
        Ok(e) => e,
        Err(e) => return Ok(Err(e.to_string())),
    };
    if ws.load(stream)?.is_none() {
        return Ok(Err(format!("{name} was deleted under the candidate rules")));
    }
    let version = ws.version(stream)?;
    ws.append(stream, version, &[moved], &meta)?;
    Ok(Ok(()))
}

/// Counts an incident that names its rule as one of that rule's failures.
fn count_failure(
    failures: &mut BTreeMap<String, leadflow_engine::backtest::Counts>,
    rec: &RecordedEvent,
    rule: &str,
    candidate: bool,
) {
    if rec.event_type != "incident.recorded" {
        return;
    }
    let Ok(Event::IncidentRecorded(i)) = rec.decode() else {
        return;
    };
    if !matches!(
        i.kind.as_str(),
        "robot_failed" | "condition_failed" | "depth_limit"
    ) {
        return;
    }
    let c = failures.entry(rule.to_owned()).or_default();
    if candidate {
        c.candidate += 1;
    } else {
        c.live += 1;
    }
}

impl<S: Backend> Sandbox<'_, S> {
    fn in_window(&self, at: DateTime<Utc>) -> bool {
        self.opts.since.is_none_or(|s| at >= s) && self.opts.until.is_none_or(|u| at <= u)
    }

    /// Puts the candidate in force at `t`.
    fn activate(&mut self, t: DateTime<Utc>) -> Result<(), BacktestError> {
        self.runtime.activate(self.db, t)?;
        self.active = true;
        self.clock = Some(self.clock.map_or(t, |c| c.max(t)));
        self.drain()
    }

    /// A live rule-set activation: the first puts the candidate in force; with
    /// `--as-recorded`, each one puts its own set in force.
    fn activation(
        &mut self,
        rec: &RecordedEvent,
        t: DateTime<Utc>,
        pending: &mut Vec<RecordedEvent>,
    ) -> Result<(), BacktestError> {
        if !self.active {
            // Fed before any rule set is in force (`flush` runs no rules then).
            self.flush(pending)?;
            if self.opts.as_recorded {
                self.switch_to(rec)?;
            }
            // The CLI starts the rules' cursor before the command that activates the rule
            // set, so the rules react to that command's events: the same here.
            if let Some((_, last, head)) = self.group
                && last == rec.position - 1
            {
                self.db.write(Stamp::At(t), |ws| {
                    if ws.cursor(crate::runtime::CURSOR)?.is_none() {
                        ws.set_cursor(crate::runtime::CURSOR, head)?;
                    }
                    Ok::<_, WorkspaceError>(())
                })?;
            }
            self.activate(t)?;
            // Processed as the live runtime did after that command.
            self.runtime.process(self.db, t)?;
            return self.drain();
        }
        if !self.opts.as_recorded {
            // The candidate stays in force.
            return self.flush(pending);
        }
        // The live runtime activates a set right after the events of the command whose
        // rules run activated it (at the command's moment; see SAME_COMMAND), or first thing
        // in a tick.
        let with_command = pending.last().is_some_and(|p| {
            p.position == rec.position - 1
                && p.occurred_at()
                    .is_ok_and(|at| at <= t && t - at <= SAME_COMMAND)
        });
        if !with_command {
            // Inputs of an earlier moment were reacted to by the set in force then. A tick
            // puts the new set in force before it fires what is due, so what fell due before
            // its moment fires under the old set and what is due at its moment under the new.
            self.flush(pending)?;
            self.advance(t - Duration::microseconds(1))?;
            self.switch_to(rec)?;
            self.activate(t)?;
            self.runtime.advance(self.db, t, t)?;
            return self.drain();
        }
        // A command activated it: the timers due up to the command's moment fired before it
        // under the set in force until then; the command is decided, and reacted to, under
        // the new one (which `react_in` activates after the command's events, as the CLI
        // does).
        if let Some(first) = pending.first() {
            self.advance(first.occurred_at().map_err(WorkspaceError::from)?)?;
        }
        self.switch_to(rec)?;
        self.flush(pending)
    }

    /// Puts the rule set `rec` recorded in the sandbox runtime's place.
    fn switch_to(&mut self, rec: &RecordedEvent) -> Result<(), BacktestError> {
        if let Ok(Event::RulesetActivated(set)) = rec.decode() {
            self.runtime = self.recorded(&set, rec.position)?;
        }
        Ok(())
    }

    /// The runtime of a recorded rule set.
    fn recorded(&self, set: &RulesetActivated, position: i64) -> Result<Runtime, BacktestError> {
        let mut runtime = recorded_runtime(set, &self.config)
            .map_err(|errors| BacktestError::Recorded { position, errors })?
            .sandboxed();
        if let Some(o) = &self.observer {
            runtime = runtime.with_observer(o.clone());
        }
        Ok(runtime)
    }

    /// Moves the virtual clock to `t`, firing the candidate's timers due on the way.
    fn advance(&mut self, t: DateTime<Utc>) -> Result<(), BacktestError> {
        match self.clock {
            Some(now) if t > now && self.active => {
                self.clock = Some(t);
                // Nothing falls due on the way: no tick (most inputs).
                if self.runtime.next_wake(self.db, now)?.is_none_or(|w| w > t) {
                    return Ok(());
                }
                self.runtime.advance(self.db, now, t)?;
                self.drain()
            }
            None => {
                self.clock = Some(t);
                Ok(())
            }
            _ => Ok(()),
        }
    }

    /// Feeds the inputs of one moment and lets the candidate's rules react, in one
    /// transaction (as a command and its rules commit together).
    fn flush(&mut self, pending: &mut Vec<RecordedEvent>) -> Result<(), BacktestError> {
        let Some(first) = pending.first() else {
            return Ok(());
        };
        let t = first.occurred_at().map_err(WorkspaceError::from)?;
        self.advance(t)?;
        let last = pending.last().map_or(first.position, |r| r.position);
        self.group = Some((first.position, last, self.db.last_position()?));
        let Sandbox {
            db,
            runtime,
            inputs_config,
            live,
            mine,
            next_ids,
            active,
            ..
        } = self;
        let outcomes = db.write(Stamp::At(t), |ws| {
            let mut outcomes = Vec::with_capacity(pending.len());
            for rec in pending.iter() {
                outcomes.push(feed(ws, inputs_config, live, mine, next_ids, rec, t)?);
            }
            if *active {
                runtime.react_in(ws, t)?;
            }
            Ok::<_, BacktestError>(outcomes)
        })?;
        for (rec, outcome) in pending.drain(..).zip(outcomes) {
            self.inputs += 1;
            if !self.in_window(t) {
                continue;
            }
            match outcome {
                Ok(()) => self.comparison.touch(&self.live.name(rec.stream)),
                Err(reason) => self.comparison.diverged(Divergence {
                    subject: self.live.name(rec.stream),
                    position: rec.position,
                    at: t,
                    kind: rec.event_type.clone(),
                    actor: rec.actor.clone(),
                    reason,
                }),
            }
        }
        self.drain()
    }

    /// Feeds an external robot's recorded outcome to the candidate's same request.
    fn outcome(&mut self, rec: &RecordedEvent, t: DateTime<Utc>) -> Result<(), BacktestError> {
        let Ok(Event::RobotCompleted(done)) = rec.decode() else {
            return Ok(());
        };
        self.advance(t)?;
        self.inputs += 1;
        let key = self.live.keys.get(&done.request).cloned();
        let target = key
            .as_ref()
            .and_then(|k| self.mine.requests.get(k))
            .copied();
        let Some((position, stream, correlation)) = target else {
            if self.in_window(t) {
                self.comparison.diverged(Divergence {
                    subject: self.live.name(rec.stream),
                    position: rec.position,
                    at: t,
                    kind: rec.event_type.clone(),
                    actor: rec.actor.clone(),
                    reason: format!(
                        "the candidate made no {}",
                        key.unwrap_or_else(|| format!("request at position {}", done.request))
                    ),
                });
            }
            return Ok(());
        };
        let completed = Event::RobotCompleted(RobotCompleted {
            request: position,
            ..done
        });
        let meta = EventMeta {
            occurred_at: t,
            actor: Actor::System,
            causation: Some(position),
            correlation: Some(correlation),
        };
        self.db.write(Stamp::At(t), |ws: &mut dyn Workspace| {
            if ws.request_pending(position)?.is_none() {
                return Ok(());
            }
            let version = ws.version(stream)?;
            ws.append(stream, version, &[completed], &meta).map(|_| ())
        })?;
        self.runtime.process(self.db, t)?;
        self.drain()
    }

    /// Reads what the sandbox appended since last time: names, requests, effects.
    fn drain(&mut self) -> Result<(), BacktestError> {
        loop {
            let page = self.db.read_after(self.seen, PAGE)?;
            if page.is_empty() {
                return Ok(());
            }
            for rec in page {
                self.seen = rec.position;
                if rec.stream.kind.is_entity() {
                    let next = self.next_ids.entry(rec.stream.kind).or_insert(1);
                    *next = (*next).max(rec.stream.id + 1);
                }
                if role(&rec) == Role::Input {
                    continue;
                }
                self.mine.note(&*self.db, &rec)?;
                let name = |s: StreamId| self.mine.name(s);
                if let Some(e) = effect(&rec, &name)
                    && self.in_window(e.at)
                {
                    count_failure(&mut self.failures, &rec, &e.rule, true);
                    self.comparison.candidate(e);
                }
            }
        }
    }
}
