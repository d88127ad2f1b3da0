//! The process configuration: employees, teams, pipelines with their stages, custom fields and
//! intake sources, read from one `leadflow.toml` or a folder of TOML files.
//!
//! Loading is whole-or-nothing: every problem in every file is collected and reported with its
//! file, line and column, and no partial configuration is ever returned. The engine never reads
//! files itself; the caller passes the texts as [`Source`]s.
//!
//! Where to change what:
//! - `mod.rs` (here) — the validated model: [`Config`], [`Pipeline`], [`Stage`], [`Employee`],
//!   [`Team`], [`FieldDef`] and their look-ups, and the built-in fields.
//! - `raw.rs` — the TOML format of the files, as read before any check (a new key starts here).
//! - `load.rs` — [`Config::load`] and its `Loader`: one method per section (settings,
//!   `[calendar]`, `[[teams]]`, `[[employees]]`, `[[fields]]`, `[[pipelines]]` and their
//!   stages, `[roles.NAME]`) checks it and builds its part of the model, collecting every
//!   problem with its location.
//! - `bitrix24.rs` — the `[bitrix24]` section ([`Bitrix24`]): its format and its checks.
//!
//! The diagnostics types ([`ConfigError`], [`ConfigErrors`], [`Source`]) are those of
//! [`crate::diag`]; the duration syntax ([`parse_duration`], [`DurationParts`]) is
//! [`crate::time`]'s. Both are re-exported here.

mod bitrix24;
mod delivery;
mod load;
mod raw;
mod service;
mod ui;

pub use service::{FormConfig, ServerConfig};
pub use ui::{Language, UiConfig};

pub use bitrix24::Bitrix24;

use crate::calendar::Calendar;
use crate::field::FieldType;
use crate::ids::{EmployeeId, EntityKind, PipelineId, StageId, TeamId};
use chrono::Duration;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::fmt;

pub use crate::diag::{Diagnostic as ConfigError, Diagnostics as ConfigErrors, Source, line_col};
pub use crate::time::{DurationParts, parse_duration};
pub use delivery::{Delivery, Smtp, SmtpTls};

/// Whether a stage is still open, or ends the lead/deal as won or lost.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Semantic {
    /// Work goes on.
    InProgress,
    /// Won: converted lead, closed deal. Final.
    Success,
    /// Lost: junk lead, failed deal. May be reopened.
    Failure,
}

impl Semantic {
    /// The name used in config files and projections.
    pub fn as_str(self) -> &'static str {
        match self {
            Semantic::InProgress => "in_progress",
            Semantic::Success => "success",
            Semantic::Failure => "failure",
        }
    }
}

/// A set of field names of which at least one must be filled (`company_name|inn`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Requirement {
    /// The alternatives; any one filled satisfies the requirement.
    pub any_of: Vec<String>,
}

impl fmt::Display for Requirement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.any_of.join(" or "))
    }
}

/// Requirements that apply only when a field has a given value (legal entity ⇒ INN…).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConditionalRequirement {
    /// The field whose value is tested.
    pub field: String,
    /// The value that switches the requirements on.
    pub equals: String,
    /// What is then required.
    pub required: Vec<Requirement>,
}

/// One stage of a pipeline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stage {
    /// Id, unique within the pipeline.
    pub id: StageId,
    /// Display name.
    pub name: String,
    /// Open, won or lost.
    pub semantic: Semantic,
    /// Target time in the stage, for reports.
    pub target: Option<Duration>,
    /// Fields that must be filled to enter the stage.
    pub required: Vec<Requirement>,
    /// Fields that must be filled to enter the stage when a condition holds.
    pub required_when: Vec<ConditionalRequirement>,
    /// If set, the only stages from which this one may be entered.
    pub from: Option<Vec<StageId>>,
    /// For failure stages: the allowed reasons; when non-empty a reason is required.
    pub reasons: Vec<String>,
}

/// An ordered list of stages for leads or for deals.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pipeline {
    /// Id, e.g. `lead`, `goods`.
    pub id: PipelineId,
    /// Display name.
    pub name: String,
    /// `Lead` or `Deal`.
    pub entity: EntityKind,
    /// The stages in order; the first is where new items start.
    pub stages: Vec<Stage>,
}

impl Pipeline {
    /// The stage with this id.
    pub fn stage(&self, id: &StageId) -> Option<&Stage> {
        self.stages.iter().find(|s| &s.id == id)
    }

    /// Where new items start.
    pub fn first_stage(&self) -> &Stage {
        &self.stages[0]
    }
}

/// A person who works leads and deals.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Employee {
    /// Id used on the command line (`--as petrova`).
    pub id: EmployeeId,
    /// Full name.
    pub name: String,
    /// The team the employee belongs to.
    pub team: Option<TeamId>,
    /// The employee's manager: set explicitly, or the team's manager.
    pub manager: Option<EmployeeId>,
    /// E-mail for notifications.
    pub email: Option<String>,
    /// Inactive employees keep their history but cannot be given work.
    pub active: bool,
}

/// A group of employees that owns pipelines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Team {
    /// Id, e.g. `first_line`.
    pub id: TeamId,
    /// Display name.
    pub name: String,
    /// The head of the team.
    pub manager: Option<EmployeeId>,
    /// The pipelines this team works.
    pub pipelines: Vec<PipelineId>,
    /// How many leads and deals the team should have in work at once (a positive number; the
    /// `managers` report sets the open ones against it).
    pub plan: Option<i64>,
}

/// A typed custom field of leads, deals, contacts or companies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldDef {
    /// Id used in commands and rules.
    pub id: String,
    /// The entity that has the field.
    pub entity: EntityKind,
    /// The value type.
    pub ty: FieldType,
    /// Display label.
    pub label: String,
    /// Group on the card (e.g. `product`, `client`).
    pub group: Option<String>,
    /// Options of an enum field.
    pub options: Vec<String>,
}

/// Built-in fields that stage requirements may name, per entity.
pub fn builtin_fields(entity: EntityKind) -> &'static [&'static str] {
    match entity {
        EntityKind::Lead => &[
            "title",
            "name",
            "phone",
            "email",
            "source",
            "client_type",
            "responsible",
            "comment",
            "contact",
            "company",
        ],
        EntityKind::Deal => &[
            "title",
            "amount",
            "contact",
            "company",
            "responsible",
            "lead",
            "comment",
        ],
        EntityKind::Contact => &["name", "phone", "email", "company", "responsible"],
        EntityKind::Company => &["name", "inn", "bank_account", "bik", "phone", "email"],
        EntityKind::Task
        | EntityKind::Ruleset
        | EntityKind::System
        | EntityKind::Token
        | EntityKind::Endpoint => &[],
    }
}

/// A validated configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Currency of amounts, e.g. `RUB`.
    pub currency: String,
    /// The actor used when a command names none.
    pub default_actor: Option<EmployeeId>,
    /// Where leads come from: `web_form`, `call`…
    pub sources: Vec<String>,
    /// Employees by id.
    pub employees: BTreeMap<EmployeeId, Employee>,
    /// Teams by id.
    pub teams: BTreeMap<TeamId, Team>,
    /// Custom fields, in file order.
    pub fields: Vec<FieldDef>,
    /// Pipelines, in file order.
    pub pipelines: Vec<Pipeline>,
    /// Working days and hours, for deadlines in working time.
    pub calendar: Calendar,
    /// `[server]`: how `leadflow serve` listens.
    pub server: ServerConfig,
    /// `[forms.NAME]`: web forms whose submissions become leads, by name.
    pub forms: BTreeMap<String, FormConfig>,
    /// The `[bitrix24]` section: Bitrix24 ids for leadflow's (the REST facade adds defaults).
    pub bitrix24: Bitrix24,
    /// The API roles (the defaults and `[roles.NAME]`) and what each employee reaches.
    pub access: crate::access::Access,
    /// How the outbox and webhook subscriptions are delivered (`[delivery]`).
    pub delivery: Delivery,
    /// `[ui]`: the dashboard of `leadflow serve`.
    pub ui: UiConfig,
}

impl Config {
    /// The pipeline with this id.
    pub fn pipeline(&self, id: &PipelineId) -> Option<&Pipeline> {
        self.pipelines.iter().find(|p| &p.id == id)
    }

    /// The lead pipeline (there is exactly one).
    pub fn lead_pipeline(&self) -> &Pipeline {
        self.pipelines
            .iter()
            .find(|p| p.entity == EntityKind::Lead)
            .expect("validated: exactly one lead pipeline")
    }

    /// The first deal pipeline, used when a deal names none.
    pub fn default_deal_pipeline(&self) -> Option<&Pipeline> {
        self.pipelines.iter().find(|p| p.entity == EntityKind::Deal)
    }

    /// The custom field `id` of `entity`.
    pub fn field(&self, entity: EntityKind, id: &str) -> Option<&FieldDef> {
        self.fields
            .iter()
            .find(|f| f.entity == entity && f.id == id)
    }

    /// The employee with this id.
    pub fn employee(&self, id: &EmployeeId) -> Option<&Employee> {
        self.employees.get(id)
    }

    /// The team that works `pipeline`, if any.
    pub fn team_of_pipeline(&self, pipeline: &PipelineId) -> Option<&Team> {
        self.teams.values().find(|t| t.pipelines.contains(pipeline))
    }

    /// Active members of a team, by id.
    pub fn members(&self, team: &TeamId) -> Vec<&Employee> {
        self.employees
            .values()
            .filter(|e| e.active && e.team.as_ref() == Some(team))
            .collect()
    }
}

/// The configuration `leadflow init` writes and `leadflow demo` uses: a first line that works
/// leads, two deal teams (goods, services), the default lead pipeline of the specification and
/// two deal pipelines, with the qualification card of a countertop workshop.
pub const DEFAULT_CONFIG: &str = include_str!("../../../examples/leadflow.toml");

#[cfg(test)]
mod tests;
