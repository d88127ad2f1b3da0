//! A loaded scenario: its steps, what they do and what they check.

use chrono::{DateTime, Duration, Utc};
use leadflow_engine::rules::RuleSet;
use leadflow_engine::verb::Verb;
use leadflow_engine::{Actor, Config, StreamId};
use serde_json::{Map, Value};
use std::path::PathBuf;

/// What a step does before its checks.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Nothing: the step only checks.
    Check,
    /// A command, then the rules run.
    Command {
        /// Which.
        verb: Verb,
        /// Who gives it.
        actor: Actor,
        /// Its arguments, as JSON.
        args: Map<String, Value>,
        /// The command must be refused with a message containing this.
        expect_error: Option<String>,
    },
    /// The clock moves on by this much.
    Advance(Duration),
    /// The clock moves on to this moment.
    Until(DateTime<Utc>),
}

/// An event a check looks for.
#[derive(Debug, Clone, PartialEq)]
pub struct Expectation {
    /// The event type, or a prefix ending in `*`.
    pub event_type: String,
    /// The stream, e.g. `lead-1`.
    pub stream: Option<String>,
    /// The actor: `robot:rule`, `employee:id`, `system`, or the part after the colon.
    pub actor: Option<String>,
    /// A JSON object the payload must contain.
    pub with: Option<Value>,
    /// Text the payload must contain.
    pub contains: Option<String>,
}

/// A check of an entity's current state.
#[derive(Debug, Clone, PartialEq)]
pub struct StateCheck {
    /// The entity.
    pub stream: StreamId,
    /// Whether it must exist (`exists = false` checks it does not).
    pub exists: bool,
    /// A JSON object the entity must contain (dotted keys already nested).
    pub expected: Map<String, Value>,
    /// Paths (`contact`, `fields.inn`) that must be empty.
    pub unset: Vec<String>,
}

/// One step of a scenario.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    /// The line of its `[[steps]]`.
    pub line: usize,
    /// What the file says it is for.
    pub note: Option<String>,
    /// What it does.
    pub action: Action,
    /// Whether it has `expect` or `absent` (and so closes the window of events they look at).
    pub checks_events: bool,
    /// Events that must be in the window, in order.
    pub expect: Vec<Expectation>,
    /// Events that must not be in the window.
    pub absent: Vec<Expectation>,
    /// State checks.
    pub state: Vec<StateCheck>,
}

/// A loaded, checked scenario.
#[derive(Debug, Clone)]
pub struct Scenario {
    /// The scenario file.
    pub path: PathBuf,
    /// Its name.
    pub name: String,
    /// What it shows.
    pub description: Option<String>,
    /// The rule folder (or file).
    pub rules_path: PathBuf,
    /// The configuration file or folder; `None` for the built-in default.
    pub config_path: Option<PathBuf>,
    /// The configuration.
    pub config: Config,
    /// The rule set (its `warnings` are the loops `rules check` warns of).
    pub rules: RuleSet,
    /// When the virtual clock starts.
    pub start: DateTime<Utc>,
    /// The script.
    pub steps: Vec<Step>,
}
