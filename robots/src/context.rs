//! What a robot sees while it runs: the write transaction (as the engine's [`Workspace`]),
//! the configuration, the event that triggered its rule, the entity the rule is about, the
//! time; and helpers to append its effects as events caused by that trigger.

use chrono::{DateTime, Utc};
use leadflow_engine::event::{DelayedRobot, IncidentRecorded, NotificationQueued};
use leadflow_engine::ids::EmployeeId;
use leadflow_engine::react::{Reads, responsible_of, task_parent, variables};
use leadflow_engine::stored::{Executed, RecordedEvent, StoredError};
use leadflow_engine::workspace::{BackendError, Workspace, WorkspaceError};
use leadflow_engine::{Actor, Command, Config, Entity, Event, EventMeta, StreamId};
use serde_json::{Map, Value};

/// Why a robot did not do its job.
#[derive(Debug, thiserror::Error)]
pub enum RobotError {
    /// The engine refused the command the robot gave: recorded as an incident.
    #[error("{0}")]
    Rejected(#[from] leadflow_engine::Rejection),
    /// The robot cannot act here (a missing parameter value, nobody to assign…): recorded as
    /// an incident.
    #[error("{0}")]
    Failed(String),
    /// The database failed: processing stops and is retried; nothing of it is kept. The
    /// backend's own error is inside ([`BackendError::downcast_ref`]).
    #[error(transparent)]
    Store(BackendError),
}

impl From<WorkspaceError> for RobotError {
    fn from(e: WorkspaceError) -> Self {
        match e {
            WorkspaceError::Rejected(r) => RobotError::Rejected(r),
            WorkspaceError::Backend(b) => RobotError::Store(b),
        }
    }
}

impl From<StoredError> for RobotError {
    fn from(e: StoredError) -> Self {
        RobotError::Store(BackendError::new(e))
    }
}

/// A robot's run-time context.
pub struct Ctx<'a, 't> {
    /// The write transaction everything is read from and appended in.
    pub ws: &'a mut (dyn Workspace + 't),
    /// The configuration.
    pub config: &'a Config,
    /// The rule running.
    pub rule: &'a str,
    /// The hash of the rule set in force.
    pub ruleset: &'a str,
    /// The event that triggered the rule (or resumed its delayed robots).
    pub trigger: &'a RecordedEvent,
    /// The same, decoded.
    pub event: &'a Event,
    /// The event the robot's effects are caused by: the trigger, or — for the robots that
    /// apply an external robot's answer and those after it — its outcome.
    pub cause: &'a RecordedEvent,
    /// The stream the rule is about: the lead, deal or task, or `system-1` for schedules.
    pub subject: StreamId,
    /// Now, from the runtime's clock.
    pub now: DateTime<Utc>,
    /// The rule's robots after this one when this one is external (they run after its
    /// answer, so its request holds them); empty otherwise.
    pub then: &'a [DelayedRobot],
    /// Whether robots the rule puts off survive the entity leaving its stage.
    pub survive_move: bool,
}

impl Ctx<'_, '_> {
    /// Metadata for the robot's events: actor `robot:<rule>`, caused by [`Ctx::cause`].
    pub fn meta(&self) -> EventMeta {
        EventMeta {
            occurred_at: self.now,
            actor: Actor::Robot(self.rule.to_owned()),
            causation: Some(self.cause.position),
            correlation: Some(self.cause.correlation),
        }
    }

    /// Decides and appends a command as the robot.
    pub fn execute(&mut self, command: &Command) -> Result<Executed, RobotError> {
        let meta = self.meta();
        Ok(self.ws.execute(self.config, command, &meta)?)
    }

    /// Appends events to a stream at its current version.
    pub fn append(&mut self, stream: StreamId, events: &[Event]) -> Result<(), RobotError> {
        let meta = self.meta();
        let version = self.ws.version(stream)?;
        self.ws.append(stream, version, events, &meta)?;
        Ok(())
    }

    /// Appends events to the subject's stream.
    pub fn append_here(&mut self, events: &[Event]) -> Result<(), RobotError> {
        self.append(self.subject, events)
    }

    /// An entity's current state.
    pub fn load(&mut self, stream: StreamId) -> Result<Option<Entity>, RobotError> {
        Ok(self.ws.load(stream)?)
    }

    /// The subject entity's current state.
    pub fn entity(&mut self) -> Result<Option<Entity>, RobotError> {
        if !self.subject.kind.is_entity() {
            return Ok(None);
        }
        self.load(self.subject)
    }

    /// The subject's lead or deal: the entity itself, or a task's lead/deal.
    pub fn lead_or_deal(&mut self) -> Result<Option<Entity>, RobotError> {
        match self.entity()? {
            Some(task @ Entity::Task(_)) => match task_parent(Some(&task)) {
                Some(stream) => self.load(stream),
                None => Ok(None),
            },
            other => Ok(other),
        }
    }

    /// The employee responsible for the subject (a task's assignee).
    pub fn responsible(&mut self) -> Result<Option<EmployeeId>, RobotError> {
        Ok(responsible_of(self.entity()?.as_ref()))
    }

    /// The variables conditions and templates see, as far as `reads` can read them.
    pub fn vars(&mut self, reads: Reads<'_>) -> Result<Map<String, Value>, RobotError> {
        let entity = self.entity()?;
        let related = match &entity {
            Some(Entity::Task(_)) => self.lead_or_deal()?,
            _ => None,
        };
        let responsible = self.responsible()?;
        Ok(variables(
            self.ws,
            self.config,
            self.trigger,
            self.event,
            entity.as_ref(),
            related.as_ref(),
            responsible.as_ref(),
            self.now,
            reads,
        )?)
    }

    /// Renders a `{lead.title}`-style template.
    pub fn render(&mut self, template: &str) -> Result<String, RobotError> {
        let vars = self.vars(Reads::Template(template))?;
        leadflow_engine::template::render(template, &vars).map_err(RobotError::Failed)
    }

    /// Records an incident in the subject's stream.
    pub fn incident(
        &mut self,
        kind: &str,
        employee: Option<EmployeeId>,
        text: String,
    ) -> Result<(), RobotError> {
        let e = Event::IncidentRecorded(IncidentRecorded {
            kind: kind.to_owned(),
            employee,
            rule: Some(self.rule.to_owned()),
            text,
        });
        self.append_here(&[e])
    }

    /// Queues a notification in the subject's stream.
    pub fn notify(&mut self, mut n: NotificationQueued) -> Result<(), RobotError> {
        n.rule = Some(self.rule.to_owned());
        if n.key.is_empty() {
            // Unique per message: the trigger, the rule, and the position it will get.
            n.key = format!(
                "{}-{}-{}",
                self.trigger.position,
                self.rule,
                self.ws.head_position() + 1
            );
        }
        self.append_here(&[Event::NotificationQueued(n)])
    }
}
