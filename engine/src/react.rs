//! The rules' reaction to one event, as a pure function of the rule set, the configuration,
//! the event, a read-only [`View`] and the time.
//!
//! [`Reaction`] walks the rules an event triggers in order and says, one [`Step`] at a time,
//! what they do: delayed robots to cancel (the entity left their stage), a rule that fires with
//! the robot calls to run now and what follows them (a delay, a `wait`), or an incident (a
//! condition that cannot be evaluated, a delay out of reach, the depth limit). Trigger keys,
//! trigger filters, the condition variables, delays and waits and the depth check all live
//! here; the runtime (in `robots`) runs the robots and appends what the steps say.
//!
//! The steps come one at a time, not as a list, because a rule's condition sees what the
//! robots of the rules before it did: the runtime runs each step's robots before asking for
//! the next.

use crate::config::Config;
use crate::config::Semantic;
use crate::event::{DelayedRobot, Event, RobotCompleted, RobotRequested, RobotsCancelled};
use crate::ids::{EmployeeId, EntityKind, PipelineId, StageId, StreamId};
use crate::model::Entity;
use crate::rules::{Rule, RuleSet, Trigger, TriggerKey};
use crate::stored::{RecordedEvent, fmt_time};
use crate::workspace::{IncidentQuery, View, WorkspaceError};
use chrono::{DateTime, Datelike, Timelike, Utc};
use serde_json::{Map, Value, json};
use std::collections::HashSet;

/// Rules stop firing in a chain this many causation steps deep (a timer firing starts a new
/// chain); an incident is recorded instead.
pub const DEPTH_LIMIT: usize = 16;

/// The types of the events that start a new causal chain: timer, schedule and idle firings.
pub const CHAIN_STARTS: [&str; 5] = [
    "deadline.elapsed",
    "robots.resumed",
    "task.overdue",
    "idle.detected",
    "schedule.fired",
];

/// The events an external robot's call adds between a rule's trigger and the effects of its
/// answer; the depth walk passes through them without counting them.
const EXTERNAL_STEPS: [&str; 2] = ["robot.completed", "robot.requested"];

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

/// What happens after a firing's robots ran (when none failed).
#[derive(Debug, Clone, PartialEq)]
pub enum Then {
    /// Nothing more.
    Done,
    /// A `wait`: the rest of the robots are put off until `due_at`.
    Delay {
        /// When they resume.
        due_at: DateTime<Utc>,
        /// The robots after the `wait`.
        robots: Vec<DelayedRobot>,
    },
    /// A `wait` that cannot be computed: a `robot_failed` incident with this text.
    WaitFailed(String),
    /// The last robot run is external: these run after its answer (they go into its request).
    Answer(Vec<DelayedRobot>),
}

/// One thing the rules do in reaction to an event.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// The entity left the stage delayed robots were put off in: append these
    /// `robots.cancelled` events to the event's stream.
    Cancel(Vec<Event>),
    /// A rule fires (or delayed robots resume): run `run` in order — a robot that fails stops
    /// the rest and is an incident — and then do `then`.
    Fire {
        /// The rule.
        rule: String,
        /// Whether robots it puts off survive the entity leaving the stage.
        survive_move: bool,
        /// The stream the rule is about.
        subject: StreamId,
        /// The stage the subject is in, for robots put off by a `wait`.
        stage: Option<StageId>,
        /// The robots to run now.
        run: Vec<DelayedRobot>,
        /// What follows them.
        then: Then,
    },
    /// A rule with a `delay` fires: put all its robots off until `due_at`.
    Delay {
        /// The rule.
        rule: String,
        /// Whether they survive the entity leaving the stage.
        survive_move: bool,
        /// The stream the rule is about.
        subject: StreamId,
        /// The stage the subject is in.
        stage: Option<StageId>,
        /// The robots.
        robots: Vec<DelayedRobot>,
        /// When they run.
        due_at: DateTime<Utc>,
    },
    /// An external robot's call ended (the event is its `robot.completed`): the robot applies
    /// its answer's actions, or records why there is none, as the rule's effects; then, if it
    /// succeeded, `run` and `then` as for [`Step::Fire`] (the rule's robots after it).
    Outcome {
        /// The rule that called it.
        rule: String,
        /// The stream the rule is about.
        subject: StreamId,
        /// The event that triggered the rule (what the robots' templates see).
        trigger: Box<RecordedEvent>,
        /// The request.
        request: Box<RobotRequested>,
        /// Its outcome.
        completed: Box<RobotCompleted>,
        /// The stage the subject is in.
        stage: Option<StageId>,
        /// The rule's robots to run after the answer.
        run: Vec<DelayedRobot>,
        /// What follows them.
        then: Then,
    },
    /// An incident the runtime records in the subject's stream: `condition_failed`,
    /// `robot_failed` (a delay out of reach) or `depth_limit` (after which the event's
    /// reaction stops).
    Incident {
        /// The incident's kind.
        kind: &'static str,
        /// The rule concerned.
        rule: String,
        /// What happened.
        text: String,
    },
}

/// The stream a rule triggered by `rec` is about: the event's own, or `system-1` for a
/// rule-set activation.
pub fn subject_of(rec: &RecordedEvent) -> StreamId {
    if rec.stream.kind == EntityKind::Ruleset {
        SYSTEM_STREAM
    } else {
        rec.stream
    }
}

/// The employee responsible for an entity (a task's assignee).
pub fn responsible_of(e: Option<&Entity>) -> Option<EmployeeId> {
    match e? {
        Entity::Lead(l) => l.responsible.clone(),
        Entity::Deal(d) => d.responsible.clone(),
        Entity::Contact(c) => c.responsible.clone(),
        Entity::Company(c) => c.responsible.clone(),
        Entity::Task(t) => Some(t.assignee.clone()),
    }
}

/// A task's lead or deal stream.
pub fn task_parent(e: Option<&Entity>) -> Option<StreamId> {
    match e? {
        Entity::Task(t) => match (t.lead, t.deal) {
            (_, Some(d)) => Some(StreamId::new(EntityKind::Deal, d)),
            (Some(l), None) => Some(StreamId::new(EntityKind::Lead, l)),
            (None, None) => None,
        },
        _ => None,
    }
}

/// The trigger keys an event in a stream of `kind` answers to: the rules indexed under them
/// (`RuleSet::by_key`) are the candidates.
pub fn trigger_keys(config: &Config, event: &Event, kind: EntityKind) -> Vec<TriggerKey> {
    let mut keys = event_keys(config, event);
    match event {
        Event::DeadlineElapsed(d) => keys.push(TriggerKey::DeadlineElapsed(d.name.clone())),
        Event::LeadRepeatDetected(_) => keys.push(TriggerKey::RepeatDetected),
        Event::TaskOverdue(_) => keys.push(TriggerKey::TaskOverdue),
        Event::IdleDetected(_) => keys.push(TriggerKey::Idle(kind)),
        Event::ScheduleFired(_) => keys.push(TriggerKey::Schedule),
        _ => {}
    }
    keys
}

/// The keys of an entity change (a stage change is also a win or a loss when the new stage is
/// a success or failure stage).
fn event_keys(config: &Config, event: &Event) -> Vec<TriggerKey> {
    use Event as E;
    let stage_keys = |entity: EntityKind, pipeline: Option<&PipelineId>, to: &StageId| {
        let mut keys = vec![TriggerKey::StageEntered(entity, to.clone())];
        let semantic = pipeline
            .and_then(|p| config.pipeline(p))
            .and_then(|p| p.stage(to))
            .map(|s| s.semantic);
        match semantic {
            Some(Semantic::Success) => keys.push(TriggerKey::Won(entity)),
            Some(Semantic::Failure) => keys.push(TriggerKey::Lost(entity)),
            _ => {}
        }
        keys
    };
    match event {
        E::LeadCreated(e) => {
            let mut k = vec![TriggerKey::Created(EntityKind::Lead)];
            k.extend(stage_keys(EntityKind::Lead, Some(&e.pipeline), &e.stage));
            k
        }
        E::DealCreated(e) => {
            let mut k = vec![TriggerKey::Created(EntityKind::Deal)];
            k.extend(stage_keys(EntityKind::Deal, Some(&e.pipeline), &e.stage));
            k
        }
        E::LeadStageChanged(s) => {
            stage_keys(EntityKind::Lead, Some(&config.lead_pipeline().id), &s.to)
        }
        E::DealStageChanged(s) => {
            let p = config
                .pipelines
                .iter()
                .find(|p| p.entity == EntityKind::Deal && p.stage(&s.to).is_some())
                .map(|p| &p.id);
            stage_keys(EntityKind::Deal, p, &s.to)
        }
        E::LeadUpdated(u) => u
            .changes
            .keys()
            .map(|k| TriggerKey::FieldChanged(EntityKind::Lead, k.clone()))
            .collect(),
        E::DealUpdated(u) => u
            .changes
            .keys()
            .map(|k| TriggerKey::FieldChanged(EntityKind::Deal, k.clone()))
            .collect(),
        E::LeadAssigned(_) => vec![TriggerKey::FieldChanged(
            EntityKind::Lead,
            "responsible".into(),
        )],
        E::DealAssigned(_) => vec![TriggerKey::FieldChanged(
            EntityKind::Deal,
            "responsible".into(),
        )],
        E::TaskCompleted(_) => vec![TriggerKey::TaskCompleted],
        _ => vec![],
    }
}

/// Whether the trigger's filters (sources, pipelines, the stage's pipeline, the idle rule's
/// id, the schedule's rule) accept the event.
pub fn trigger_applies(rule: &Rule, event: &Event, entity: Option<&Entity>) -> bool {
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
        _ => true,
    }
}

/// How many causation steps lead from `rec` back to the start of its chain, up to the depth
/// limit. A timer, schedule or idle firing starts a new chain.
pub fn chain_depth(view: &mut dyn View, rec: &RecordedEvent) -> Result<usize, WorkspaceError> {
    let mut depth = 0;
    let mut ty = rec.event_type.clone();
    let mut cause = rec.causation;
    while depth < DEPTH_LIMIT {
        if CHAIN_STARTS.contains(&ty.as_str()) {
            break;
        }
        let Some(pos) = cause else { break };
        let Some((c, t)) = view.cause_of(pos)? else {
            break;
        };
        // An external robot's request and outcome are one step of its rule, not three: an
        // answer's action sits one step below the rule's trigger, as a built-in robot's does.
        if !EXTERNAL_STEPS.contains(&ty.as_str()) {
            depth += 1;
        }
        cause = c;
        ty = t;
    }
    Ok(depth)
}

/// A rule's robot calls as stored in `robots.delayed` (parameters as JSON).
pub fn calls_of(rule: &Rule) -> Vec<DelayedRobot> {
    rule.robots
        .iter()
        .map(|c| DelayedRobot {
            robot: c.robot.clone(),
            params: c
                .params
                .iter()
                .map(|(k, v)| (k.clone(), serde_json::to_value(v).unwrap_or_default()))
                .collect(),
        })
        .collect()
}

/// Splits robot calls at the first `wait` or external robot (`is_external`): the calls before
/// a `wait` and what it says, or the calls up to the external robot and the rest, which run
/// after its answer.
pub fn plan(
    config: &Config,
    rule: &str,
    calls: &[DelayedRobot],
    now: DateTime<Utc>,
    is_external: &dyn Fn(&str) -> bool,
) -> (Vec<DelayedRobot>, Then) {
    let Some(i) = calls
        .iter()
        .position(|c| c.robot == "wait" || is_external(&c.robot))
    else {
        return (calls.to_vec(), Then::Done);
    };
    if calls[i].robot != "wait" {
        return (calls[..=i].to_vec(), Then::Answer(calls[i + 1..].to_vec()));
    }
    let wait = &calls[i];
    let text = wait
        .params
        .get("for")
        .and_then(|v| v.as_str())
        .unwrap_or("0s");
    let working = wait
        .params
        .get("working_time")
        .and_then(|v| v.as_bool())
        .unwrap_or(false);
    let then = match config.calendar.after(now, text, working) {
        Err(m) => Then::WaitFailed(format!("rule '{rule}', robot 'wait': {m}")),
        Ok(_) if i + 1 == calls.len() => Then::Done,
        Ok(due_at) => Then::Delay {
            due_at,
            robots: calls[i + 1..].to_vec(),
        },
    };
    (calls[..i].to_vec(), then)
}

/// Watches the rules' reactions, for `rules coverage`: told each time a rule's trigger matches
/// and each time its condition then says no. Nobody watches the live runtime (the calls are
/// behind an `Option`).
pub trait Observer: Send + Sync {
    /// Rule `rule`'s trigger (and its filters) matched an event at `now`.
    fn matched(&self, rule: &str, now: DateTime<Utc>);
    /// Rule `rule`'s condition was false at `now`.
    fn condition_false(&self, rule: &str, now: DateTime<Utc>);
}

/// The reaction to one event: the [`Step`]s its rules take, one at a time.
pub struct Reaction<'r> {
    observer: Option<&'r dyn Observer>,
    config: &'r Config,
    is_external: &'r dyn Fn(&str) -> bool,
    rec: &'r RecordedEvent,
    event: &'r Event,
    now: DateTime<Utc>,
    /// The trigger keys and, for each, its rules.
    keys: Vec<(TriggerKey, Vec<&'r Rule>)>,
    /// Where the walk is: key, rule.
    at: (usize, usize),
    /// What comes before the rules (cancelled or resumed robots), or `None` once given.
    first: Option<First>,
    fired: HashSet<&'r str>,
    fired_count: usize,
    /// The subject's state as the first rule saw it (loaded once).
    entity: Option<Option<Entity>>,
    depth: Option<usize>,
    stopped: bool,
}

/// What a reaction looks at before the rules.
enum First {
    /// Delayed robots put off at this position resume.
    Resume(i64),
    /// The entity left this stage: its delayed robots may be cancelled.
    Left(StageId),
    /// An external robot's call ended.
    Completed(RobotCompleted),
    Nothing,
}

impl<'r> Reaction<'r> {
    /// The reaction of `rules` to `rec` (decoded as `event`) at `now`; `is_external` says
    /// which robots are external (their answer comes after the commit, and the rule's robots
    /// after them wait for it).
    pub fn new(
        rules: &'r RuleSet,
        config: &'r Config,
        rec: &'r RecordedEvent,
        event: &'r Event,
        now: DateTime<Utc>,
        is_external: &'r dyn Fn(&str) -> bool,
    ) -> Reaction<'r> {
        let first = match event {
            Event::RobotsResumed(r) => First::Resume(r.delayed),
            Event::RobotCompleted(c) => First::Completed(c.clone()),
            Event::LeadStageChanged(s) | Event::DealStageChanged(s) => First::Left(s.from.clone()),
            _ => First::Nothing,
        };
        let keys = if matches!(first, First::Resume(_) | First::Completed(_)) {
            Vec::new()
        } else {
            trigger_keys(config, event, rec.stream.kind)
                .into_iter()
                .map(|k| {
                    let rules = rules.by_key(&k).collect();
                    (k, rules)
                })
                .collect()
        };
        Reaction {
            observer: None,
            config,
            is_external,
            rec,
            event,
            now,
            keys,
            at: (0, 0),
            first: Some(first),
            fired: HashSet::new(),
            fired_count: 0,
            entity: None,
            depth: None,
            stopped: false,
        }
    }

    /// Tells `observer` which rules matched and which conditions said no.
    pub fn observed_by(mut self, observer: Option<&'r dyn Observer>) -> Reaction<'r> {
        self.observer = observer;
        self
    }

    /// How many rules fired (ran robots or put them off), delayed robots resuming included.
    pub fn fired(&self) -> usize {
        self.fired_count
    }

    /// The next step, reading what it needs from `view`; `None` when the reaction is over.
    pub fn next_step(&mut self, view: &mut dyn View) -> Result<Option<Step>, WorkspaceError> {
        match self.first.take() {
            Some(First::Resume(delayed)) => return self.resume(view, delayed),
            Some(First::Completed(completed)) => return self.completed(view, completed),
            Some(First::Left(stage)) => {
                if let Some(step) = self.cancel(view, &stage)? {
                    return Ok(Some(step));
                }
            }
            Some(First::Nothing) | None => {}
        }
        while !self.stopped {
            let (k, r) = self.at;
            let Some((_, rules)) = self.keys.get(k) else {
                return Ok(None);
            };
            let Some(&rule) = rules.get(r) else {
                self.at = (k + 1, 0);
                continue;
            };
            self.at = (k, r + 1);
            if let Some(step) = self.consider(view, k, rule)? {
                return Ok(Some(step));
            }
        }
        Ok(None)
    }

    /// The subject's state, loaded the first time a rule needs it.
    fn state(&mut self, view: &mut dyn View) -> Result<Option<Entity>, WorkspaceError> {
        if let Some(e) = &self.entity {
            return Ok(e.clone());
        }
        let e = if self.rec.stream.kind.is_entity() {
            view.load(self.rec.stream)?
        } else {
            None
        };
        self.entity = Some(e.clone());
        Ok(e)
    }

    /// What one rule does, if anything.
    fn consider(
        &mut self,
        view: &mut dyn View,
        key: usize,
        rule: &'r Rule,
    ) -> Result<Option<Step>, WorkspaceError> {
        if self.fired.contains(rule.id.as_str()) {
            return Ok(None);
        }
        let state = self.state(view)?;
        if !trigger_applies(rule, self.event, state.as_ref()) {
            return Ok(None);
        }
        if let Some(o) = self.observer {
            o.matched(&rule.id, self.now);
        }
        let depth = match self.depth {
            Some(d) => d,
            None => *self.depth.insert(chain_depth(view, self.rec)?),
        };
        if depth >= DEPTH_LIMIT {
            self.stopped = true;
            let names: Vec<&str> = self.keys[key].1.iter().map(|r| r.id.as_str()).collect();
            return Ok(Some(Step::Incident {
                kind: "depth_limit",
                rule: rule.id.clone(),
                text: format!(
                    "rules stopped at depth {DEPTH_LIMIT}: {} → {} keeps triggering rules without a pause ({}); check the rule set for a loop (`leadflow rules check` warns of them)",
                    self.rec.event_type,
                    self.rec.stream,
                    names.join(", ")
                ),
            }));
        }
        if let Some(cond) = &rule.condition {
            let related = match task_parent(state.as_ref()) {
                Some(s) => view.load(s)?,
                None => None,
            };
            let responsible = responsible_of(state.as_ref());
            let vars = variables(
                view,
                self.config,
                self.rec,
                self.event,
                state.as_ref(),
                related.as_ref(),
                responsible.as_ref(),
                self.now,
                Reads::Condition(cond.uses()),
            )?;
            match cond.eval(&vars) {
                Ok(true) => {}
                Ok(false) => {
                    if let Some(o) = self.observer {
                        o.condition_false(&rule.id, self.now);
                    }
                    return Ok(None);
                }
                Err(m) => {
                    return Ok(Some(Step::Incident {
                        kind: "condition_failed",
                        rule: rule.id.clone(),
                        text: format!(
                            "the condition of rule '{}' could not be evaluated: {m}",
                            rule.id
                        ),
                    }));
                }
            }
        }
        self.fired.insert(rule.id.as_str());
        self.fired_count += 1;
        let calls = calls_of(rule);
        let subject = subject_of(self.rec);
        let stage = state
            .as_ref()
            .and_then(|e| e.stage())
            .map(|(_, s)| s.clone());
        if let Some(delay) = rule.delay {
            let due_at = if rule.delay_working {
                self.config.calendar.checked_add_working(self.now, delay)
            } else {
                self.now.checked_add_signed(delay)
            };
            return Ok(Some(match due_at {
                Some(due_at) => Step::Delay {
                    rule: rule.id.clone(),
                    survive_move: rule.survive_move,
                    subject,
                    stage,
                    robots: calls,
                    due_at,
                },
                None => Step::Incident {
                    kind: "robot_failed",
                    rule: rule.id.clone(),
                    text: format!(
                        "rule '{}': its delay{} from {} is out of reach; the robots did not run",
                        rule.id,
                        if rule.delay_working {
                            " in working time"
                        } else {
                            ""
                        },
                        fmt_time(self.now)
                    ),
                },
            }));
        }
        let (run, then) = plan(self.config, &rule.id, &calls, self.now, self.is_external);
        Ok(Some(Step::Fire {
            rule: rule.id.clone(),
            survive_move: rule.survive_move,
            subject,
            stage,
            run,
            then,
        }))
    }

    /// Robots a `robots.delayed` put off resume: one firing of its calls.
    fn resume(
        &mut self,
        view: &mut dyn View,
        delayed: i64,
    ) -> Result<Option<Step>, WorkspaceError> {
        self.stopped = true;
        let Some(original) = view.event_at(delayed)? else {
            return Ok(None);
        };
        let Event::RobotsDelayed(d) = original.decode()? else {
            return Ok(None);
        };
        let state = self.state(view)?;
        self.fired_count += 1;
        let (run, then) = plan(self.config, &d.rule, &d.robots, self.now, self.is_external);
        // The calls come from the stored event, not the rule set in force.
        Ok(Some(Step::Fire {
            rule: d.rule,
            survive_move: d.survive_move,
            subject: self.rec.stream,
            stage: state
                .as_ref()
                .and_then(|e| e.stage())
                .map(|(_, s)| s.clone()),
            run,
            then,
        }))
    }

    /// An external robot's outcome: one step for the robot that asked.
    fn completed(
        &mut self,
        view: &mut dyn View,
        completed: RobotCompleted,
    ) -> Result<Option<Step>, WorkspaceError> {
        self.stopped = true;
        let Some(original) = view.event_at(completed.request)? else {
            return Ok(None);
        };
        let Event::RobotRequested(request) = original.decode()? else {
            return Ok(None);
        };
        let Some(trigger) = original
            .causation
            .map(|c| view.event_at(c))
            .transpose()?
            .flatten()
        else {
            return Ok(None);
        };
        let state = self.state(view)?;
        let (run, then) = plan(
            self.config,
            &request.rule,
            &request.then,
            self.now,
            self.is_external,
        );
        Ok(Some(Step::Outcome {
            rule: request.rule.clone(),
            subject: self.rec.stream,
            trigger: Box::new(trigger),
            request: Box::new(request),
            completed: Box::new(completed),
            stage: state
                .as_ref()
                .and_then(|e| e.stage())
                .map(|(_, s)| s.clone()),
            run,
            then,
        }))
    }

    /// The delayed robots put off while the entity was in the stage it just left, unless
    /// their rule lets them survive the move.
    fn cancel(
        &mut self,
        view: &mut dyn View,
        left: &StageId,
    ) -> Result<Option<Step>, WorkspaceError> {
        let events: Vec<Event> = view
            .pending_timers(self.rec.stream)?
            .into_iter()
            .filter(|t| {
                t.what == "robots" && !t.survive_move && t.stage.as_deref() == Some(left.as_str())
            })
            .map(|t| {
                Event::RobotsCancelled(RobotsCancelled {
                    delayed: t.id,
                    reason: format!("left stage '{left}'"),
                })
            })
            .collect();
        Ok((!events.is_empty()).then_some(Step::Cancel(events)))
    }
}

/// A JSON object of an entity for conditions: its columns with empty ones left out (so
/// `has(lead.name)` means "has a name"), plus `phone` and `email` (the first of each).
fn entity_json(e: &Entity) -> Value {
    let mut v = match e {
        Entity::Lead(l) => serde_json::to_value(l),
        Entity::Deal(d) => serde_json::to_value(d),
        Entity::Contact(c) => serde_json::to_value(c),
        Entity::Company(c) => serde_json::to_value(c),
        Entity::Task(t) => serde_json::to_value(t),
    }
    .unwrap_or(Value::Null);
    if let Value::Object(m) = &mut v {
        m.retain(|_, v| !v.is_null());
        for (list, one) in [("phones", "phone"), ("emails", "email")] {
            if let Some(first) = m.get(list).and_then(|l| l.get(0)).cloned() {
                m.insert(one.to_owned(), first);
            }
        }
        if let Some(id) = m.get("id").and_then(Value::as_i64) {
            m.insert("id".into(), json!(id));
        }
    }
    v
}

/// How far back a condition's incident counts of the responsible look (`incidents`,
/// `missed_deadlines`): what `explain` re-reads to show the values a condition saw.
pub const INCIDENT_WINDOW: chrono::TimeDelta = chrono::TimeDelta::days(30);

/// What a condition or template reads of the variables: only that is worked out (an entity
/// as JSON, the event's payload, a lead's repeat flag, the responsible's incident counts —
/// each count a query over the journal).
#[derive(Debug, Clone, Copy)]
pub enum Reads<'a> {
    /// Everything (a payload handed on whole).
    All,
    /// A condition, or several: what they read.
    Condition(&'a crate::condition::Uses),
    /// A template: its placeholders.
    Template(&'a str),
}

impl Reads<'_> {
    /// Whether the variable `name` can be read at all.
    fn name(&self, name: &str) -> bool {
        match self {
            Reads::All => true,
            Reads::Condition(uses) => uses.reads(name),
            Reads::Template(t) => crate::template::placeholders(t).any(|p| {
                p.strip_prefix(name)
                    .is_some_and(|r| r.is_empty() || r.starts_with('.'))
            }),
        }
    }

    /// Whether `name.field` can be read.
    fn field(&self, name: &str, field: &str) -> bool {
        match self {
            Reads::All => true,
            Reads::Condition(uses) => uses.reads_field(name, field),
            Reads::Template(t) => crate::template::placeholders(t).any(|p| {
                p.strip_prefix(name)
                    .is_some_and(|r| r.is_empty() || r.strip_prefix('.') == Some(field))
            }),
        }
    }
}

/// The variables a condition or template sees (see docs/RULES.md, "Conditions"): the
/// entity (and a task's lead or deal), the event, the responsible with their incident
/// counts over 30 days, and the time in the calendar's zone — of those, what `reads` can
/// read. Built here only.
#[allow(clippy::too_many_arguments)]
pub fn variables(
    view: &mut dyn View,
    config: &Config,
    trigger: &RecordedEvent,
    event: &Event,
    entity: Option<&Entity>,
    related: Option<&Entity>,
    responsible: Option<&EmployeeId>,
    now: DateTime<Utc>,
    reads: Reads<'_>,
) -> Result<Map<String, Value>, WorkspaceError> {
    let mut vars = Map::new();
    for e in entity.into_iter().chain(related) {
        let name = match e {
            Entity::Lead(_) => "lead",
            Entity::Deal(_) => "deal",
            Entity::Task(_) => "task",
            Entity::Contact(_) => "contact",
            Entity::Company(_) => "company",
        };
        if !reads.name(name) {
            continue;
        }
        let mut json = entity_json(e);
        if let (Entity::Lead(l), Value::Object(m)) = (e, &mut json)
            && reads.field("lead", "repeat")
        {
            let repeat = view
                .latest_of_type(
                    StreamId::new(EntityKind::Lead, l.id),
                    "lead.repeat_detected",
                )?
                .is_some();
            m.insert("repeat".into(), json!(repeat));
        }
        vars.insert(name.into(), json);
    }
    if reads.name("event") {
        let mut ev = match serde_json::from_str::<Value>(&trigger.payload) {
            Ok(Value::Object(m)) => m,
            _ => Map::new(),
        };
        ev.insert("type".into(), json!(event.event_type()));
        ev.insert("position".into(), json!(trigger.position));
        ev.insert("actor".into(), json!(trigger.actor));
        ev.insert("stream".into(), json!(trigger.stream.to_string()));
        if let Event::LeadUpdated(u) | Event::DealUpdated(u) = event
            && let Some(first) = u.changes.keys().next()
        {
            ev.insert("field".into(), json!(first));
        }
        vars.insert("event".into(), Value::Object(ev));
    }
    if let Some(id) = responsible
        && reads.name("responsible")
    {
        let emp = config.employee(id);
        let since = now - INCIDENT_WINDOW;
        let mut count = |kind: Option<&str>| {
            view.incident_count(&IncidentQuery {
                employee: id,
                kind,
                since,
                after_escalation: false,
            })
        };
        let mut r = Map::new();
        r.insert("id".into(), json!(id.as_str()));
        if let Some(emp) = emp {
            r.insert("name".into(), json!(emp.name));
            if let Some(t) = &emp.team {
                r.insert("team".into(), json!(t.as_str()));
            }
            if let Some(m) = &emp.manager {
                r.insert("manager".into(), json!(m.as_str()));
            }
        }
        if reads.field("responsible", "missed_deadlines") {
            r.insert(
                "missed_deadlines".into(),
                json!(count(Some("missed_deadline"))?),
            );
        }
        if reads.field("responsible", "incidents") {
            r.insert("incidents".into(), json!(count(None)?));
        }
        vars.insert("responsible".into(), Value::Object(r));
    }
    if reads.name("time") {
        let local = now.with_timezone(&config.calendar.timezone);
        vars.insert(
            "time".into(),
            json!({
                "now": fmt_time(now),
                "hour": local.hour(),
                "minute": local.minute(),
                "weekday": local.weekday().number_from_monday(),
                "working": config.calendar.is_working_time(now),
            }),
        );
    }
    Ok(vars)
}

#[cfg(test)]
mod tests {
    use super::Reads;
    use crate::condition::Condition;

    #[test]
    fn only_what_a_condition_or_template_reads_is_worked_out() {
        let c = Condition::compile("lead.stage == 'new' && responsible.incidents > 2").unwrap();
        let reads = Reads::Condition(c.uses());
        assert!(reads.name("lead") && reads.name("responsible"));
        assert!(!reads.name("event") && !reads.name("time"));
        assert!(reads.field("responsible", "incidents"));
        assert!(!reads.field("responsible", "missed_deadlines"));
        assert!(!reads.field("lead", "repeat"));
        let whole = Condition::compile("size(responsible) > 0 && lead.repeat").unwrap();
        assert!(Reads::Condition(whole.uses()).field("responsible", "missed_deadlines"));
        assert!(Reads::Condition(whole.uses()).field("lead", "repeat"));
        assert!(Reads::All.field("responsible", "missed_deadlines"));
        assert!(Reads::All.name("time"));
        let t = "{responsible.name} missed {responsible.missed_deadlines | upper}";
        assert!(Reads::Template(t).field("responsible", "missed_deadlines"));
        assert!(!Reads::Template(t).field("responsible", "incidents"));
        assert!(!Reads::Template(t).name("lead"));
        assert!(Reads::Template("all of it: {responsible}").field("responsible", "incidents"));
        assert!(
            !Reads::Template("{responsible.name} {{responsible.incidents}}")
                .field("responsible", "incidents")
        );
        assert!(!Reads::Template("{responsible_x}").field("responsible", "incidents"));
        assert!(!Reads::Template("{responsible_x}").name("responsible"));
    }
}
