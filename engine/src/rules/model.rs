//! The rule model and its trigger-key index: what a loaded rule set is, and which of its rules
//! an event may fire.

use crate::condition::Condition;
use crate::diag::{Diagnostic, Location, Source};
use crate::ids::{EntityKind, PipelineId, StageId};
use chrono::Duration;
use std::collections::{BTreeMap, HashMap};

/// What starts a rule.
#[derive(Debug, Clone, PartialEq)]
pub enum Trigger {
    /// A lead or deal was created (optionally only from these sources / in these pipelines).
    Created {
        entity: EntityKind,
        sources: Vec<String>,
        pipelines: Vec<PipelineId>,
    },
    /// A lead or deal entered a stage.
    StageEntered {
        entity: EntityKind,
        pipeline: Option<PipelineId>,
        stage: StageId,
    },
    /// One of these fields of a lead or deal changed.
    FieldChanged {
        entity: EntityKind,
        fields: Vec<String>,
    },
    /// A named deadline elapsed.
    DeadlineElapsed { name: String },
    /// A lead was recognised as a repeat lead.
    RepeatDetected,
    /// A task was completed.
    TaskCompleted,
    /// A task passed its due time undone.
    TaskOverdue,
    /// A lead or deal entered a success stage.
    Won {
        entity: EntityKind,
        pipelines: Vec<PipelineId>,
    },
    /// A lead or deal entered a failure stage.
    Lost {
        entity: EntityKind,
        pipelines: Vec<PipelineId>,
    },
    /// A lead or deal saw no event for this long (optionally only in these stages).
    Idle {
        entity: EntityKind,
        after: Duration,
        stages: Vec<StageId>,
    },
    /// A cron schedule in the calendar's time zone.
    Schedule { cron: String },
}

/// The index key of a trigger: what an event must be to be worth looking at.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TriggerKey {
    Created(EntityKind),
    StageEntered(EntityKind, StageId),
    FieldChanged(EntityKind, String),
    DeadlineElapsed(String),
    RepeatDetected,
    TaskCompleted,
    TaskOverdue,
    Won(EntityKind),
    Lost(EntityKind),
    Idle(EntityKind),
    Schedule,
}

impl Trigger {
    /// The keys under which the rule is indexed.
    pub fn keys(&self) -> Vec<TriggerKey> {
        match self {
            Trigger::Created { entity, .. } => vec![TriggerKey::Created(*entity)],
            Trigger::StageEntered { entity, stage, .. } => {
                vec![TriggerKey::StageEntered(*entity, stage.clone())]
            }
            Trigger::FieldChanged { entity, fields } => fields
                .iter()
                .map(|f| TriggerKey::FieldChanged(*entity, f.clone()))
                .collect(),
            Trigger::DeadlineElapsed { name } => vec![TriggerKey::DeadlineElapsed(name.clone())],
            Trigger::RepeatDetected => vec![TriggerKey::RepeatDetected],
            Trigger::TaskCompleted => vec![TriggerKey::TaskCompleted],
            Trigger::TaskOverdue => vec![TriggerKey::TaskOverdue],
            Trigger::Won { entity, .. } => vec![TriggerKey::Won(*entity)],
            Trigger::Lost { entity, .. } => vec![TriggerKey::Lost(*entity)],
            Trigger::Idle { entity, .. } => vec![TriggerKey::Idle(*entity)],
            Trigger::Schedule { .. } => vec![TriggerKey::Schedule],
        }
    }

    /// The entity the rule's variables describe, if one.
    pub fn entity(&self) -> Option<EntityKind> {
        match self {
            Trigger::Created { entity, .. }
            | Trigger::StageEntered { entity, .. }
            | Trigger::FieldChanged { entity, .. }
            | Trigger::Won { entity, .. }
            | Trigger::Lost { entity, .. }
            | Trigger::Idle { entity, .. } => Some(*entity),
            Trigger::RepeatDetected => Some(EntityKind::Lead),
            Trigger::TaskCompleted | Trigger::TaskOverdue => Some(EntityKind::Task),
            Trigger::DeadlineElapsed { .. } | Trigger::Schedule { .. } => None,
        }
    }
}

/// One robot call of a rule: the robot's name and its parameters as written (checked against
/// the robot's spec at load time).
#[derive(Debug, Clone, PartialEq)]
pub struct RobotCall {
    pub robot: String,
    pub params: BTreeMap<String, toml::Value>,
    pub at: Location,
}

/// A rule.
#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    pub id: String,
    pub description: Option<String>,
    pub trigger: Trigger,
    pub condition: Option<Condition>,
    /// Robots run this long after the trigger; if `delay_working`, this is working time, read
    /// by [`crate::calendar::Calendar::working_duration`] (`1d` is one working day).
    pub delay: Option<Duration>,
    pub delay_working: bool,
    /// Delayed robots survive the lead/deal leaving the stage the rule was triggered in.
    pub survive_move: bool,
    pub robots: Vec<RobotCall>,
    pub at: Location,
}

/// A validated rule set.
#[derive(Debug, Clone)]
pub struct RuleSet {
    pub rules: Vec<Rule>,
    /// Problems that do not stop loading (rules that can trigger each other forever).
    pub warnings: Vec<Diagnostic>,
    /// The files, for `ruleset.activated`.
    pub sources: Vec<Source>,
    pub(super) index: HashMap<TriggerKey, Vec<usize>>,
}

impl RuleSet {
    /// The rules indexed under `key`.
    pub fn by_key(&self, key: &TriggerKey) -> impl Iterator<Item = &Rule> {
        self.index
            .get(key)
            .into_iter()
            .flatten()
            .map(|i| &self.rules[*i])
    }
}

/// Every trigger name, for messages and the schema.
pub const TRIGGERS: &[&str] = &[
    "created",
    "stage_entered",
    "field_changed",
    "deadline_elapsed",
    "repeat_detected",
    "task_completed",
    "task_overdue",
    "won",
    "lost",
    "idle",
    "schedule",
];
