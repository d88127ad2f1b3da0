//! Scenarios: a rule set, a script of commands and clock advances, and the events and state
//! expected along the way, run against a fresh store on a virtual clock (`leadflow simulate`,
//! the examples in `examples/scenarios/`, and the tests that keep them true).
//!
//! # The file
//!
//! A scenario is one TOML file (`scenario.toml`, usually in a folder beside its `rules/`):
//!
//! ```toml
//! name = "B. Qualification with deadline and escalation"
//! description = "..."                   # optional
//! rules = "rules"                       # rule folder (or one file), relative to this file; default "rules"
//! config = "../../leadflow.toml"        # optional file or folder; default: the built-in default config
//! start = "2026-03-02T10:00:00+03:00"   # the virtual clock's start
//!
//! [[steps]]
//! note = "a web-form lead arrives"      # optional, for people reading the file
//! as = "admin"                          # actor: an employee id, system, or api:NAME; default: the
//!                                       # config's default_actor, else admin, else system
//! do = "lead.create"                    # the command (see below)
//! args = { title = "Countertop", phones = ["+7 912 000-00-01"], source = "web_form" }
//! expect_error = "missing required"     # optional: the command must be refused with this in the message
//!
//! [[steps]]
//! advance = "2h"                        # move the clock on (calendar time: 1d = 24h) ...
//! # until = "2026-03-03T09:00:00+03:00" # ... or to a moment (a time without offset is in the calendar's zone)
//!
//! [[steps]]
//! expect = [ { stream = "lead-1", type = "deadline.elapsed" },
//!            { type = "incident.recorded", with = { kind = "missed_deadline" } } ]
//! absent = ["escalation.recorded"]
//! state = [ { stream = "lead-1", stage = "in_work", responsible = "ivanov", fields.material = "granite" } ]
//! ```
//!
//! A step does at most one thing — a command (`do`) or a clock move (`advance` or `until`) —
//! and then checks; a step may also only check.
//!
//! **Commands** and their `args`: `lead.create`, `deal.create`, `contact.create`,
//! `company.create` take the fields of a new entity (as the CLI's `create` does: `title`,
//! `name`, `phones`, `emails`, `source`, `client_type`, `responsible`, `stage`, `fields = {..}`,
//! `comment`, `contact`, `company`; deals `pipeline`, `amount`, `lead`; companies `inn`,
//! `bank_account`, `bik`); `lead.update`, `deal.update`, `contact.update`, `company.update`
//! take `id` and the fields to change (built-in names or custom field ids); `lead.move` and
//! `deal.move` take `id`, `stage` and `reason`; `lead.assign` and `deal.assign` take `id` and
//! `to`; `task.create` takes `kind`, `title`, `assignee`, `due` (a duration from now, `1d`
//! by default; `working_time = true` counts working hours) or `due_at` (a time), `lead`,
//! `deal`; `task.complete` takes `id` and `result`. An `id` is a number or a stream id
//! (`lead-3`). After each command the rules run until nothing is left to process, as after a
//! CLI command; timers do not fire until the clock moves.
//!
//! **Moving the clock** fires what falls due on the way, each at its own time and in order —
//! deadlines, delayed robots, task due times, cron schedules and idle rules — and ends with a
//! tick at the target.
//!
//! **Checks.** `expect` lists events that must have been appended since the previous step
//! that had `expect` or `absent` (the *window*; the first window starts with the run), in this
//! order, other events in between allowed. An expectation is a type (`"lead.created"`, or a
//! prefix such as `"deadline.*"`) or a table: `type`, and optionally `stream` (`lead-1`),
//! `actor` (`robot:qualification-deadline`, `employee:ivanov`, `system`, or just the part
//! after the colon), `with` (a table every key of which must be in the event's JSON payload
//! with that value; nested tables and lists match the same way; times match as instants) and
//! `contains` (text that must appear in the payload). `absent` lists expectations no event of
//! the window may meet. `state` checks the current state of entities: `stream`, then any keys
//! of the entity (`stage`, `responsible`, `contact`, `fields.material`... compared like
//! `with`), `unset = ["contact", "fields.inn"]` (must be empty) and `exists = false`.
//!
//! # Running
//!
//! [`Scenario::load`] reads and checks everything — the scenario file, the configuration and
//! the rule set — and reports every problem with `file:line:column`. [`run_in`] runs it on a
//! database the caller opens (any [`Backend`]: an in-memory store, a file) and returns an [`Outcome`] whose
//! [`Mismatch`]es say which step expected what and what was found. A refused command is a
//! mismatch unless the step has `expect_error`.

use crate::runtime::TICKS_PER_INSTANT;
use crate::{Registry, Report, RobotError, Runtime};
use chrono::{DateTime, Duration, Utc};
use leadflow_engine::calendar::Calendar;
use leadflow_engine::command::{NewCompany, NewContact, NewDeal, NewLead, NewTask};
use leadflow_engine::config::{ConfigError, ConfigErrors, DEFAULT_CONFIG};
use leadflow_engine::diag::{FileIndex, summary};
use leadflow_engine::ids::EmployeeId;
use leadflow_engine::rules::RuleSet;
use leadflow_engine::stored::{RecordedEvent, parse_time};
use leadflow_engine::workspace::{Backend, BackendError, Stamp, WorkspaceError};
use leadflow_engine::{Actor, Command, Config, EntityKind, EventMeta, Source, StreamId};
use serde::Deserialize;
use serde_json::{Map, Value};
use std::fmt;
use std::path::{Path, PathBuf};
use toml::Spanned;

/// The name of the scenario file inside a scenario folder.
pub const SCENARIO_FILE: &str = "scenario.toml";

/// Why a scenario could not be loaded or run (as opposed to a [`Mismatch`]: the scenario ran,
/// and something was not as expected).
#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    /// A file could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The scenario file is malformed: every problem, each with `file:line:column`.
    #[error("{}", summary("the scenario", .0))]
    Invalid(Vec<ConfigError>),
    /// The configuration the scenario names has errors.
    #[error("{0}")]
    Config(ConfigErrors),
    /// The scenario's rule set has errors.
    #[error("{}", summary("the rule set", &.0.0))]
    Rules(ConfigErrors),
    /// The database failed while the scenario ran.
    #[error(transparent)]
    Store(BackendError),
    /// The rules runtime failed (a database error: robots' own failures are incidents).
    #[error(transparent)]
    Runtime(#[from] RobotError),
}

impl From<WorkspaceError> for ScenarioError {
    fn from(e: WorkspaceError) -> Self {
        match e {
            WorkspaceError::Backend(b) => ScenarioError::Store(b),
            // A refused command is a mismatch, handled where commands run.
            WorkspaceError::Rejected(r) => ScenarioError::Runtime(RobotError::Rejected(r)),
        }
    }
}

/// A command a step can give.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verb {
    /// `lead.create`
    LeadCreate,
    /// `lead.update`
    LeadUpdate,
    /// `lead.move`
    LeadMove,
    /// `lead.assign`
    LeadAssign,
    /// `deal.create`
    DealCreate,
    /// `deal.update`
    DealUpdate,
    /// `deal.move`
    DealMove,
    /// `deal.assign`
    DealAssign,
    /// `contact.create`
    ContactCreate,
    /// `contact.update`
    ContactUpdate,
    /// `company.create`
    CompanyCreate,
    /// `company.update`
    CompanyUpdate,
    /// `task.create`
    TaskCreate,
    /// `task.complete`
    TaskComplete,
}

impl Verb {
    /// Every command, with its name in scenario files.
    pub const ALL: [(&'static str, Verb); 14] = [
        ("lead.create", Verb::LeadCreate),
        ("lead.update", Verb::LeadUpdate),
        ("lead.move", Verb::LeadMove),
        ("lead.assign", Verb::LeadAssign),
        ("deal.create", Verb::DealCreate),
        ("deal.update", Verb::DealUpdate),
        ("deal.move", Verb::DealMove),
        ("deal.assign", Verb::DealAssign),
        ("contact.create", Verb::ContactCreate),
        ("contact.update", Verb::ContactUpdate),
        ("company.create", Verb::CompanyCreate),
        ("company.update", Verb::CompanyUpdate),
        ("task.create", Verb::TaskCreate),
        ("task.complete", Verb::TaskComplete),
    ];

    /// The name in scenario files, e.g. `lead.create`.
    pub fn as_str(self) -> &'static str {
        Verb::ALL
            .iter()
            .find(|(_, v)| *v == self)
            .map_or("?", |(n, _)| n)
    }

    fn parse(s: &str) -> Option<Verb> {
        Verb::ALL.iter().find(|(n, _)| *n == s).map(|(_, v)| *v)
    }

    fn kind(self) -> EntityKind {
        use Verb as V;
        match self {
            V::LeadCreate | V::LeadUpdate | V::LeadMove | V::LeadAssign => EntityKind::Lead,
            V::DealCreate | V::DealUpdate | V::DealMove | V::DealAssign => EntityKind::Deal,
            V::ContactCreate | V::ContactUpdate => EntityKind::Contact,
            V::CompanyCreate | V::CompanyUpdate => EntityKind::Company,
            V::TaskCreate | V::TaskComplete => EntityKind::Task,
        }
    }
}

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

impl Expectation {
    fn type_matches(&self, ty: &str) -> bool {
        match self.event_type.strip_suffix('*') {
            Some(prefix) => ty.starts_with(prefix),
            None => ty == self.event_type,
        }
    }

    fn actor_matches(&self, actor: &str) -> bool {
        match &self.actor {
            None => true,
            Some(want) if want.contains(':') || want == "system" => actor == want,
            Some(want) => actor.split_once(':').is_some_and(|(_, who)| who == want),
        }
    }

    /// Whether the event is this one, apart from `with` and `contains`.
    fn roughly(&self, e: &WindowEvent) -> bool {
        self.type_matches(&e.rec.event_type)
            && self
                .stream
                .as_ref()
                .is_none_or(|s| *s == e.rec.stream.to_string())
            && self.actor_matches(&e.rec.actor)
    }

    /// How the event's payload falls short of `with` and `contains`, if it does.
    fn payload_differs(&self, e: &WindowEvent) -> Option<String> {
        if let Some(with) = &self.with
            && let Some(d) = differ(with, Some(&e.payload), "")
        {
            return Some(d);
        }
        if let Some(text) = &self.contains
            && !e.rec.payload.contains(text.as_str())
        {
            return Some(format!("the payload does not contain '{text}'"));
        }
        None
    }

    fn matches(&self, e: &WindowEvent) -> bool {
        self.roughly(e) && self.payload_differs(e).is_none()
    }
}

impl fmt::Display for Expectation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.event_type)?;
        if let Some(s) = &self.stream {
            write!(f, " in {s}")?;
        }
        if let Some(a) = &self.actor {
            write!(f, " by {a}")?;
        }
        if let Some(w) = &self.with {
            write!(f, " with {w}")?;
        }
        if let Some(c) = &self.contains {
            write!(f, " containing '{c}'")?;
        }
        Ok(())
    }
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

/// Something that was not as a step expected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mismatch {
    /// The step, counted from 1.
    pub step: usize,
    /// The line of the step in the scenario file.
    pub line: usize,
    /// What was expected and what was found.
    pub message: String,
}

impl fmt::Display for Mismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "step {} (line {}): {}",
            self.step, self.line, self.message
        )
    }
}

/// What one step did: the clock when it ended and the events it appended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepRun {
    /// The step, counted from 1.
    pub step: usize,
    /// The virtual clock after it.
    pub at: DateTime<Utc>,
    /// Its events are those at positions after this ...
    pub after: i64,
    /// ... up to and including this.
    pub last: i64,
}

/// How a run went.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    /// Everything that was not as expected, in step order; empty when the scenario passed.
    pub mismatches: Vec<Mismatch>,
    /// Events appended during the run (the rule-set activation included).
    pub events: usize,
    /// Per step: the clock and the positions of its events.
    pub steps: Vec<StepRun>,
    /// What the rules did over the whole run.
    pub report: Report,
    /// The virtual clock at the end.
    pub end: DateTime<Utc>,
}

impl Outcome {
    /// Whether every expectation held.
    pub fn passed(&self) -> bool {
        self.mismatches.is_empty()
    }
}

// ---- loading ---------------------------------------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawScenario {
    name: String,
    description: Option<String>,
    rules: Option<Spanned<String>>,
    config: Option<Spanned<String>>,
    start: Spanned<toml::Value>,
    #[serde(default)]
    steps: Vec<Spanned<RawStep>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStep {
    note: Option<String>,
    #[serde(rename = "as")]
    actor: Option<Spanned<String>>,
    #[serde(rename = "do")]
    command: Option<Spanned<String>>,
    args: Option<Spanned<toml::Table>>,
    expect_error: Option<Spanned<String>>,
    advance: Option<Spanned<String>>,
    until: Option<Spanned<toml::Value>>,
    expect: Option<Vec<Spanned<toml::Value>>>,
    absent: Option<Vec<Spanned<toml::Value>>>,
    state: Option<Vec<Spanned<toml::Table>>>,
}

/// Collects problems of one file with their locations.
struct Problems<'a> {
    file: FileIndex<'a>,
    text: &'a str,
    errors: Vec<ConfigError>,
}

impl Problems<'_> {
    fn at(&mut self, offset: usize, message: impl Into<String>) {
        self.errors.push(self.file.error(offset, message));
    }

    fn line(&self, offset: usize) -> usize {
        self.file.line_col(offset).0
    }
}

impl Scenario {
    /// Reads a scenario file (or the `scenario.toml` of a folder), its configuration and its
    /// rule set, and checks them all; every problem is reported with its location.
    pub fn load(path: impl AsRef<Path>) -> Result<Scenario, ScenarioError> {
        Scenario::load_with(path, None)
    }

    /// [`Scenario::load`], but with this configuration (its path, for messages, and the
    /// configuration) instead of the one the scenario names.
    pub fn load_with(
        path: impl AsRef<Path>,
        config: Option<(PathBuf, Config)>,
    ) -> Result<Scenario, ScenarioError> {
        let mut path = path.as_ref().to_owned();
        if path.is_dir() {
            path = path.join(SCENARIO_FILE);
        }
        let text = std::fs::read_to_string(&path).map_err(|source| ScenarioError::Io {
            path: path.clone(),
            source,
        })?;
        Scenario::parse_with(&path, &text, config)
    }

    /// Checks a scenario given as text; `path` names it in messages and is where the rule
    /// folder and configuration are looked for.
    pub fn parse(path: &Path, text: &str) -> Result<Scenario, ScenarioError> {
        Scenario::parse_with(path, text, None)
    }

    fn parse_with(
        path: &Path,
        text: &str,
        given: Option<(PathBuf, Config)>,
    ) -> Result<Scenario, ScenarioError> {
        let file = path.display().to_string();
        let mut p = Problems {
            file: FileIndex::new(&file, text),
            text,
            errors: Vec::new(),
        };
        let raw: RawScenario = match toml::from_str(text) {
            Ok(r) => r,
            Err(e) => {
                p.errors.push(p.file.toml_error(&e));
                return Err(ScenarioError::Invalid(p.errors));
            }
        };
        let base = path.parent().unwrap_or(Path::new("")).to_owned();
        let mut config_path = raw.config.as_ref().map(|c| base.join(c.get_ref()));
        let config = match (given, &config_path) {
            (Some((path, config)), _) => {
                config_path = Some(path);
                config
            }
            (None, None) => Config::from_toml("leadflow.toml (built-in)", DEFAULT_CONFIG)
                .map_err(ScenarioError::Config)?,
            (None, Some(c)) => {
                let sources = match read_toml_files(c) {
                    Ok(s) => s,
                    Err(m) => {
                        let at = raw.config.as_ref().map_or(0, |c| c.span().start);
                        p.at(at, m);
                        return Err(ScenarioError::Invalid(p.errors));
                    }
                };
                Config::load(&sources).map_err(ScenarioError::Config)?
            }
        };
        let start = match time_of(raw.start.get_ref(), &config.calendar) {
            Ok(t) => t,
            Err(m) => {
                p.at(raw.start.span().start, m);
                DateTime::<Utc>::UNIX_EPOCH
            }
        };
        let default_actor = match &config.default_actor {
            Some(a) => actor_of(a.as_str(), &config).unwrap_or(Actor::System),
            None if config.employee(&EmployeeId::from("admin")).is_some() => {
                Actor::Employee("admin".into())
            }
            None => Actor::System,
        };
        let mut steps = Vec::new();
        for step in &raw.steps {
            if let Some(s) = parse_step(&mut p, step, &config, &default_actor, start) {
                steps.push(s);
            }
        }
        let rules_path = base.join(raw.rules.as_ref().map_or("rules", |r| r.get_ref()));
        let rule_sources = match read_toml_files(&rules_path) {
            Ok(s) => Some(s),
            Err(m) => {
                let at = raw.rules.as_ref().map_or(0, |r| r.span().start);
                p.at(at, m);
                None
            }
        };
        if !p.errors.is_empty() {
            return Err(ScenarioError::Invalid(p.errors));
        }
        let rules = RuleSet::load(
            &rule_sources.unwrap_or_default(),
            &config,
            &Registry::builtin(),
        )
        .map_err(ScenarioError::Rules)?;
        Ok(Scenario {
            path: path.to_owned(),
            name: raw.name,
            description: raw.description,
            rules_path,
            config_path,
            config,
            rules,
            start,
            steps,
        })
    }

    /// A runtime for this scenario's configuration and rules, with the built-in robots.
    pub fn runtime(&self) -> Runtime {
        Runtime::new(self.config.clone(), self.rules.clone(), Registry::builtin())
    }
}

/// Every `*.toml` file of a folder in name order, or the one file.
fn read_toml_files(path: &Path) -> Result<Vec<Source>, String> {
    let read = |f: &Path| {
        std::fs::read_to_string(f)
            .map(|text| Source {
                path: f.display().to_string(),
                text,
            })
            .map_err(|e| format!("cannot read {}: {e}", f.display()))
    };
    if path.is_file() {
        return Ok(vec![read(path)?]);
    }
    let entries =
        std::fs::read_dir(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let mut files = Vec::new();
    for entry in entries {
        let f = entry
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?
            .path();
        if f.extension().is_some_and(|e| e == "toml") {
            files.push(f);
        }
    }
    files.sort();
    if files.is_empty() {
        return Err(format!("{} holds no .toml files", path.display()));
    }
    files.iter().map(|f| read(f)).collect()
}

/// A moment written in a scenario: RFC 3339 with an offset, or a local date and time in the
/// calendar's zone — read by the engine's one time parser, as the CLI reads `--now`.
fn time_of(v: &toml::Value, calendar: &Calendar) -> Result<DateTime<Utc>, String> {
    let text = match v {
        toml::Value::String(s) => s.clone(),
        toml::Value::Datetime(d) => d.to_string(),
        other => return Err(format!("expected a time, found {}", other.type_str())),
    };
    leadflow_engine::time::parse_time(&text, calendar.timezone, None).map_err(|e| e.to_string())
}

/// A TOML value as JSON (times become RFC 3339 text).
fn json_of(v: &toml::Value) -> Value {
    match v {
        toml::Value::String(s) => Value::from(s.clone()),
        toml::Value::Integer(i) => Value::from(*i),
        toml::Value::Float(f) => {
            serde_json::Number::from_f64(*f).map_or(Value::Null, Value::Number)
        }
        toml::Value::Boolean(b) => Value::from(*b),
        toml::Value::Datetime(d) => Value::from(d.to_string()),
        toml::Value::Array(a) => Value::Array(a.iter().map(json_of).collect()),
        toml::Value::Table(t) => Value::Object(object_of(t)),
    }
}

fn object_of(t: &toml::Table) -> Map<String, Value> {
    t.iter().map(|(k, v)| (k.clone(), json_of(v))).collect()
}

/// Nests `"fields.material" = 1` as `fields = { material = 1 }`.
fn nest_dotted(map: Map<String, Value>) -> Map<String, Value> {
    let mut out = Map::new();
    for (k, v) in map {
        let v = match v {
            Value::Object(m) => Value::Object(nest_dotted(m)),
            other => other,
        };
        let mut parts: Vec<&str> = k.split('.').collect();
        let last = parts.pop().unwrap_or_default().to_owned();
        let mut here = &mut out;
        for part in parts {
            let entry = here
                .entry(part.to_owned())
                .or_insert_with(|| Value::Object(Map::new()));
            if !entry.is_object() {
                *entry = Value::Object(Map::new());
            }
            here = entry.as_object_mut().expect("made an object above");
        }
        match (here.get_mut(&last), v) {
            (Some(Value::Object(existing)), Value::Object(more)) => existing.extend(more),
            (_, v) => {
                here.insert(last, v);
            }
        }
    }
    out
}

fn parse_step(
    p: &mut Problems<'_>,
    step: &Spanned<RawStep>,
    config: &Config,
    default_actor: &Actor,
    start: DateTime<Utc>,
) -> Option<Step> {
    let at = step.span().start;
    let line = p.line(at);
    let before = p.errors.len();
    let s = step.get_ref();
    let actions = [
        s.command.as_ref().map(|c| c.span().start),
        s.advance.as_ref().map(|c| c.span().start),
        s.until.as_ref().map(|c| c.span().start),
    ];
    let mut given: Vec<usize> = actions.iter().flatten().copied().collect();
    given.sort_unstable();
    if given.len() > 1 {
        p.at(
            given[1],
            "a step does one thing: give a command (do), or move the clock (advance or until); split it into two steps",
        );
    }
    if s.command.is_none() {
        for (key, offset) in [
            ("as", s.actor.as_ref().map(|v| v.span().start)),
            ("args", s.args.as_ref().map(|v| v.span().start)),
            (
                "expect_error",
                s.expect_error.as_ref().map(|v| v.span().start),
            ),
        ] {
            if let Some(o) = offset {
                p.at(
                    o,
                    format!("'{key}' belongs to a command step, which has 'do'"),
                );
            }
        }
    }
    let nothing = given.is_empty() && s.expect.is_none() && s.absent.is_none() && s.state.is_none();
    if nothing {
        p.at(
            at,
            "an empty step: give it 'do', 'advance', 'until', 'expect', 'absent' or 'state'",
        );
    }
    let action = if let Some(cmd) = &s.command {
        let actor = match &s.actor {
            None => default_actor.clone(),
            Some(a) => match actor_of(a.get_ref(), config) {
                Ok(actor) => actor,
                Err(m) => {
                    p.at(a.span().start, m);
                    default_actor.clone()
                }
            },
        };
        match Verb::parse(cmd.get_ref()) {
            None => {
                let known: Vec<&str> = Verb::ALL.iter().map(|(n, _)| *n).collect();
                p.at(
                    cmd.span().start,
                    format!(
                        "unknown command '{}'; expected one of: {}",
                        cmd.get_ref(),
                        known.join(", ")
                    ),
                );
                Action::Check
            }
            Some(verb) => {
                let args = s
                    .args
                    .as_ref()
                    .map(|a| object_of(a.get_ref()))
                    .unwrap_or_default();
                if let Err(m) = build(verb, &args, start, config) {
                    let offset = s.args.as_ref().map_or(cmd.span().start, |a| {
                        locate_key(p.text, a.span(), &m).unwrap_or(a.span().start)
                    });
                    p.at(offset, format!("{}: {m}", verb.as_str()));
                }
                Action::Command {
                    verb,
                    actor,
                    args,
                    expect_error: s.expect_error.as_ref().map(|e| e.get_ref().clone()),
                }
            }
        }
    } else if let Some(a) = &s.advance {
        match leadflow_engine::config::parse_duration(a.get_ref()) {
            Ok(d) if d >= Duration::zero() => Action::Advance(d),
            Ok(_) => {
                p.at(a.span().start, "the clock only moves forward");
                Action::Check
            }
            Err(m) => {
                p.at(a.span().start, m);
                Action::Check
            }
        }
    } else if let Some(u) = &s.until {
        match time_of(u.get_ref(), &config.calendar) {
            Ok(t) => Action::Until(t),
            Err(m) => {
                p.at(u.span().start, m);
                Action::Check
            }
        }
    } else {
        Action::Check
    };
    let mut expectations = |list: &Option<Vec<Spanned<toml::Value>>>, key: &str| {
        let mut out = Vec::new();
        for e in list.iter().flatten() {
            match expectation_of(e.get_ref()) {
                Ok(x) => out.push(x),
                Err(m) => p.at(e.span().start, format!("{key}: {m}")),
            }
        }
        out
    };
    let expect = expectations(&s.expect, "expect");
    let absent = expectations(&s.absent, "absent");
    let mut state = Vec::new();
    for check in s.state.iter().flatten() {
        match state_of(check.get_ref()) {
            Ok(c) => state.push(c),
            Err(m) => p.at(check.span().start, format!("state: {m}")),
        }
    }
    (p.errors.len() == before).then(|| Step {
        line,
        note: s.note.clone(),
        action,
        checks_events: s.expect.is_some() || s.absent.is_some(),
        expect,
        absent,
        state,
    })
}

/// Where in `text[span]` the argument an error message names (`unknown field `x``,
/// `argument 'x'`) is written.
fn locate_key(text: &str, span: std::ops::Range<usize>, message: &str) -> Option<usize> {
    if !message.starts_with("unknown field") && !message.starts_with("unknown argument") {
        return None;
    }
    let name = ['`', '\'']
        .iter()
        .find_map(|q| message.split(*q).nth(1))?
        .to_owned();
    if name.is_empty() {
        return None;
    }
    let slice = text.get(span.clone())?;
    slice.find(&name).map(|i| span.start + i)
}

fn actor_of(s: &str, config: &Config) -> Result<Actor, String> {
    let actor = if s == "system" || s.contains(':') {
        s.parse::<Actor>()?
    } else {
        Actor::Employee(EmployeeId::from(s))
    };
    leadflow_engine::decide::check_actor(config, &actor).map_err(|r| r.to_string())?;
    Ok(actor)
}

fn expectation_of(v: &toml::Value) -> Result<Expectation, String> {
    let t = match v {
        toml::Value::String(s) => {
            return Ok(Expectation {
                event_type: s.clone(),
                stream: None,
                actor: None,
                with: None,
                contains: None,
            });
        }
        toml::Value::Table(t) => t,
        other => {
            return Err(format!(
                "expected an event type in quotes or a table like {{ type = \"lead.created\", stream = \"lead-1\" }}, found {}",
                other.type_str()
            ));
        }
    };
    let text = |key: &str| -> Result<Option<String>, String> {
        match t.get(key) {
            None => Ok(None),
            Some(toml::Value::String(s)) => Ok(Some(s.clone())),
            Some(other) => Err(format!(
                "'{key}' must be text in quotes, found {}",
                other.type_str()
            )),
        }
    };
    for key in t.keys() {
        if !["type", "stream", "actor", "with", "contains"].contains(&key.as_str()) {
            return Err(format!(
                "unknown key '{key}'; an expectation takes type, stream, actor, with, contains"
            ));
        }
    }
    let event_type = text("type")?.ok_or("an expectation needs a 'type'")?;
    let stream = text("stream")?;
    if let Some(s) = &stream {
        s.parse::<StreamId>()?;
    }
    let with = match t.get("with") {
        None => None,
        Some(toml::Value::Table(w)) => Some(Value::Object(nest_dotted(object_of(w)))),
        Some(other) => {
            return Err(format!(
                "'with' must be a table like {{ kind = \"missed_deadline\" }}, found {}",
                other.type_str()
            ));
        }
    };
    Ok(Expectation {
        event_type,
        stream,
        actor: text("actor")?,
        with,
        contains: text("contains")?,
    })
}

fn state_of(t: &toml::Table) -> Result<StateCheck, String> {
    let stream = match t.get("stream") {
        Some(toml::Value::String(s)) => s.parse::<StreamId>()?,
        _ => return Err("a state check needs stream = \"lead-1\" (or deal-2, task-3...)".into()),
    };
    if !stream.kind.is_entity() {
        return Err(format!(
            "{stream} is not an entity; state checks look at leads, deals, contacts, companies and tasks"
        ));
    }
    let exists = match t.get("exists") {
        None => true,
        Some(toml::Value::Boolean(b)) => *b,
        Some(other) => {
            return Err(format!(
                "'exists' must be true or false, found {}",
                other.type_str()
            ));
        }
    };
    let unset = match t.get("unset") {
        None => Vec::new(),
        Some(toml::Value::Array(a)) => a
            .iter()
            .map(|v| {
                v.as_str()
                    .map(str::to_owned)
                    .ok_or_else(|| "'unset' lists field names in quotes".to_owned())
            })
            .collect::<Result<_, _>>()?,
        Some(other) => {
            return Err(format!(
                "'unset' must be a list, found {}",
                other.type_str()
            ));
        }
    };
    let rest: Map<String, Value> = t
        .iter()
        .filter(|(k, _)| !["stream", "exists", "unset"].contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), json_of(v)))
        .collect();
    Ok(StateCheck {
        stream,
        exists,
        expected: nest_dotted(rest),
        unset,
    })
}

// ---- commands --------------------------------------------------------------------------------

/// Arguments being taken one by one; what is left over is an error.
struct Args<'a> {
    verb: Verb,
    map: Map<String, Value>,
    takes: &'a [&'a str],
}

impl Args<'_> {
    fn take(&mut self, key: &str) -> Option<Value> {
        self.map.remove(key).filter(|v| !v.is_null())
    }

    fn text(&mut self, key: &str) -> Result<Option<String>, String> {
        match self.take(key) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(other) => Err(format!(
                "argument '{key}' must be text in quotes, not {other}"
            )),
        }
    }

    fn required_text(&mut self, key: &str) -> Result<String, String> {
        self.text(key)?
            .ok_or_else(|| format!("argument '{key}' is missing"))
    }

    fn id(&mut self, key: &str, kind: EntityKind) -> Result<Option<i64>, String> {
        match self.take(key) {
            None => Ok(None),
            Some(Value::Number(n)) => n
                .as_i64()
                .filter(|i| *i > 0)
                .map(Some)
                .ok_or_else(|| format!("argument '{key}' must be an id above 0, not {n}")),
            Some(Value::String(s)) => {
                let stream: StreamId = s.parse()?;
                if stream.kind != kind {
                    return Err(format!(
                        "argument '{key}' names {stream}, but must be a {kind}"
                    ));
                }
                Ok(Some(stream.id))
            }
            Some(other) => Err(format!(
                "argument '{key}' must be an id like 3 or \"{kind}-3\", not {other}"
            )),
        }
    }

    fn required_id(&mut self) -> Result<i64, String> {
        self.id("id", self.verb.kind())?
            .ok_or_else(|| "argument 'id' is missing".to_owned())
    }

    /// Fails on arguments nobody took.
    fn done(self) -> Result<(), String> {
        match self.map.keys().next() {
            None => Ok(()),
            Some(k) => Err(format!(
                "unknown argument '{k}'; {} takes: {}",
                self.verb.as_str(),
                self.takes.join(", ")
            )),
        }
    }
}

fn from_json<T: serde::de::DeserializeOwned>(map: &Map<String, Value>) -> Result<T, String> {
    serde_json::from_value(Value::Object(map.clone())).map_err(|e| e.to_string())
}

/// The command a step gives, at virtual time `now`.
fn build(
    verb: Verb,
    args: &Map<String, Value>,
    now: DateTime<Utc>,
    config: &Config,
) -> Result<Command, String> {
    use Verb as V;
    let mut a = Args {
        verb,
        map: args.clone(),
        takes: &[],
    };
    Ok(match verb {
        V::LeadCreate => Command::CreateLead(from_json::<NewLead>(args)?),
        V::DealCreate => Command::CreateDeal(from_json::<NewDeal>(args)?),
        V::ContactCreate => Command::CreateContact(from_json::<NewContact>(args)?),
        V::CompanyCreate => Command::CreateCompany(from_json::<NewCompany>(args)?),
        V::LeadUpdate | V::DealUpdate | V::ContactUpdate | V::CompanyUpdate => {
            let id = a.required_id()?;
            let changes = std::mem::take(&mut a.map).into_iter().collect();
            match verb {
                V::LeadUpdate => Command::UpdateLead { id, changes },
                V::DealUpdate => Command::UpdateDeal { id, changes },
                V::ContactUpdate => Command::UpdateContact { id, changes },
                _ => Command::UpdateCompany { id, changes },
            }
        }
        V::LeadMove | V::DealMove => {
            a.takes = &["id", "stage", "reason"];
            let id = a.required_id()?;
            let stage = a.required_text("stage")?.as_str().into();
            let reason = a.text("reason")?;
            a.done()?;
            if verb == V::LeadMove {
                Command::MoveLead { id, stage, reason }
            } else {
                Command::MoveDeal { id, stage, reason }
            }
        }
        V::LeadAssign | V::DealAssign => {
            a.takes = &["id", "to"];
            let id = a.required_id()?;
            let to = EmployeeId(a.required_text("to")?);
            a.done()?;
            if verb == V::LeadAssign {
                Command::AssignLead { id, to }
            } else {
                Command::AssignDeal { id, to }
            }
        }
        V::TaskCreate => {
            a.takes = &[
                "kind",
                "title",
                "assignee",
                "due",
                "working_time",
                "due_at",
                "lead",
                "deal",
            ];
            let kind = a.required_text("kind")?;
            let title = a.required_text("title")?;
            let assignee = EmployeeId(a.required_text("assignee")?);
            let working = match a.take("working_time") {
                None => false,
                Some(Value::Bool(b)) => b,
                Some(other) => {
                    return Err(format!(
                        "argument 'working_time' must be true or false, not {other}"
                    ));
                }
            };
            let due_at = match (a.text("due")?, a.text("due_at")?) {
                (Some(_), Some(_)) => {
                    return Err(
                        "give 'due' (a duration from now) or 'due_at' (a time), not both".into(),
                    );
                }
                (None, Some(t)) => time_of(&toml::Value::String(t), &config.calendar)?,
                (due, None) => {
                    config
                        .calendar
                        .after(now, due.as_deref().unwrap_or("1d"), working)?
                }
            };
            let lead = a.id("lead", EntityKind::Lead)?;
            let deal = a.id("deal", EntityKind::Deal)?;
            a.done()?;
            Command::CreateTask(NewTask {
                kind,
                title,
                assignee,
                due_at,
                lead,
                deal,
            })
        }
        V::TaskComplete => {
            a.takes = &["id", "result"];
            let id = a.required_id()?;
            let result = a.text("result")?;
            a.done()?;
            Command::CompleteTask { id, result }
        }
    })
}

// ---- running ---------------------------------------------------------------------------------

/// An event of the window under check, with its payload parsed.
struct WindowEvent {
    rec: RecordedEvent,
    payload: Value,
}

impl WindowEvent {
    /// `12 incident.recorded lead-1 [robot:missed]`, with an incident's kind and text.
    fn line(&self) -> String {
        let mut s = format!(
            "{} {} {} [{}]",
            self.rec.position, self.rec.event_type, self.rec.stream, self.rec.actor
        );
        if self.rec.event_type == "incident.recorded" {
            let kind = self
                .payload
                .get("kind")
                .and_then(Value::as_str)
                .unwrap_or("");
            let text = self
                .payload
                .get("text")
                .and_then(Value::as_str)
                .unwrap_or("");
            s.push_str(&format!(" ({kind}: {text})"));
        }
        s
    }
}

/// Runs a scenario on the caller's database (a fresh in-memory store; a file, to look at the
/// log afterwards). The rules react only to what the scenario appends: the rule set is
/// activated at the start.
pub fn run_in<D: Backend>(scenario: &Scenario, store: &mut D) -> Result<Outcome, ScenarioError> {
    let runtime = scenario.runtime();
    let first = store.last_position()?;
    let mut now = scenario.start;
    let mut report = Report::default();
    runtime.activate(store, now)?;
    report.add(&runtime.process(store, now)?);
    let mut window = first;
    let mut mismatches = Vec::new();
    let mut runs = Vec::new();
    for (i, step) in scenario.steps.iter().enumerate() {
        let number = i + 1;
        let mut fail = |message: String| {
            mismatches.push(Mismatch {
                step: number,
                line: step.line,
                message,
            })
        };
        let after = store.last_position()?;
        match &step.action {
            Action::Check => {}
            Action::Command {
                verb,
                actor,
                args,
                expect_error,
            } => {
                let outcome = match build(*verb, args, now, &scenario.config) {
                    Err(m) => Err(m),
                    Ok(cmd) => {
                        let meta = EventMeta::root(now, actor.clone());
                        match store.write(Stamp::At(now), |ws| {
                            ws.execute(&scenario.config, &cmd, &meta)
                        }) {
                            Ok(done) => Ok(done),
                            Err(WorkspaceError::Rejected(r)) => Err(r.to_string()),
                            Err(e) => return Err(e.into()),
                        }
                    }
                };
                let who = match actor {
                    Actor::Employee(e) => e.to_string(),
                    other => other.to_string(),
                };
                match (outcome, expect_error) {
                    (Ok(_), None) => {}
                    (Err(m), Some(want)) if m.contains(want.as_str()) => {}
                    (Err(m), None) => fail(format!(
                        "{} as {who} was refused: {m} (if that is intended, add expect_error = \"...\" with part of the message)",
                        verb.as_str()
                    )),
                    (Err(m), Some(want)) => fail(format!(
                        "expected {} as {who} to be refused with a message containing '{want}', but it was refused with: {m}",
                        verb.as_str()
                    )),
                    (Ok(done), Some(want)) => {
                        let types: Vec<&str> = done.events.iter().map(|e| e.event_type()).collect();
                        fail(format!(
                            "expected {} as {who} to be refused with a message containing '{want}', but it was accepted: {} appended to {}",
                            verb.as_str(),
                            if types.is_empty() {
                                "nothing".to_owned()
                            } else {
                                types.join(", ")
                            },
                            done.stream
                        ));
                    }
                }
                report.add(&runtime.process(store, now)?);
            }
            Action::Advance(d) => match now
                .checked_add_signed(*d)
                .filter(|t| leadflow_engine::time::in_range(*t))
            {
                Some(target) => advance(
                    scenario,
                    &runtime,
                    store,
                    &mut now,
                    target,
                    &mut report,
                    &mut fail,
                )?,
                None => fail(format!(
                    "advancing the clock from {} passes 2999-12-31, the latest time leadflow takes",
                    fmt_local(now, &scenario.config.calendar)
                )),
            },
            Action::Until(target) => {
                if *target < now {
                    fail(format!(
                        "until {} is before the virtual clock, which is at {}",
                        fmt_local(*target, &scenario.config.calendar),
                        fmt_local(now, &scenario.config.calendar)
                    ));
                } else {
                    advance(
                        scenario,
                        &runtime,
                        store,
                        &mut now,
                        *target,
                        &mut report,
                        &mut fail,
                    )?;
                }
            }
        }
        if step.checks_events {
            let events = read_window(store, window)?;
            check_events(step, &events, window, &mut fail);
            window = store.last_position()?;
        }
        for check in &step.state {
            if let Some(m) = check_state(store, check)? {
                fail(m);
            }
        }
        runs.push(StepRun {
            step: number,
            at: now,
            after,
            last: store.last_position()?,
        });
    }
    Ok(Outcome {
        mismatches,
        events: (store.last_position()? - first) as usize,
        steps: runs,
        report,
        end: now,
    })
}

/// A time in the calendar's zone, for messages.
fn fmt_local(t: DateTime<Utc>, calendar: &Calendar) -> String {
    t.with_timezone(&calendar.timezone)
        .format("%a %Y-%m-%d %H:%M:%S %:z")
        .to_string()
}

/// Moves the clock to `target` through [`Runtime::advance`]; a clock stuck on the way is a
/// mismatch.
fn advance<D: Backend>(
    scenario: &Scenario,
    runtime: &Runtime,
    store: &mut D,
    now: &mut DateTime<Utc>,
    target: DateTime<Utc>,
    report: &mut Report,
    fail: &mut dyn FnMut(String),
) -> Result<(), ScenarioError> {
    let done = runtime.advance(store, *now, target)?;
    if let Some(at) = done.stuck_at {
        fail(format!(
            "timers keep falling due at {} ({TICKS_PER_INSTANT} ticks there): a rule schedules something due at once, over and over; the clock jumps to the target",
            fmt_local(at, &scenario.config.calendar)
        ));
    }
    report.add(&done.report);
    *now = target;
    Ok(())
}

/// The events after position `after`, with their payloads.
fn read_window<D: Backend>(store: &D, after: i64) -> Result<Vec<WindowEvent>, ScenarioError> {
    let mut out = Vec::new();
    let mut from = after;
    loop {
        let page = store.read_after(from, 1000)?;
        let Some(last) = page.last() else {
            return Ok(out);
        };
        from = last.position;
        out.extend(page.into_iter().map(|rec| {
            let payload = serde_json::from_str(&rec.payload).unwrap_or(Value::Null);
            WindowEvent { rec, payload }
        }));
    }
}

/// The window, one event a line, for messages.
fn describe_window(events: &[WindowEvent], after: i64) -> String {
    const SHOWN: usize = 60;
    if events.is_empty() {
        return format!("the window (events after position {after}) is empty");
    }
    let mut s = format!(
        "the window (positions {}–{}) has:",
        events[0].rec.position,
        events[events.len() - 1].rec.position
    );
    for e in events.iter().take(SHOWN) {
        s.push_str("\n    ");
        s.push_str(&e.line());
    }
    if events.len() > SHOWN {
        s.push_str(&format!("\n    … and {} more", events.len() - SHOWN));
    }
    s
}

fn check_events(step: &Step, events: &[WindowEvent], after: i64, fail: &mut dyn FnMut(String)) {
    let mut from = 0;
    let mut previous: Option<usize> = None;
    for (n, want) in step.expect.iter().enumerate() {
        if let Some(i) = (from..events.len()).find(|i| want.matches(&events[*i])) {
            from = i + 1;
            previous = Some(i);
            continue;
        }
        let mut message = format!("expected event #{} ({want})", n + 1);
        if let Some(p) = previous {
            message.push_str(&format!(
                " after #{n} (position {} {})",
                events[p].rec.position, events[p].rec.event_type
            ));
        }
        message.push_str(", but none matched");
        if let Some(early) = events[..from].iter().find(|e| want.matches(e)) {
            message.push_str(&format!(
                "; one is at position {}, before the previous expectation's match (the order differs)",
                early.rec.position
            ));
        } else {
            let near: Vec<String> = events[from..]
                .iter()
                .filter(|e| want.roughly(e))
                .filter_map(|e| {
                    want.payload_differs(e).map(|d| {
                        format!(
                            "position {}: {d}; its payload is {}",
                            e.rec.position,
                            short(&e.rec.payload)
                        )
                    })
                })
                .take(3)
                .collect();
            if !near.is_empty() {
                message.push_str("; the nearest: ");
                message.push_str(&near.join("; "));
            }
        }
        message.push_str("; ");
        message.push_str(&describe_window(events, after));
        fail(message);
    }
    for unwanted in &step.absent {
        let found: Vec<String> = events
            .iter()
            .filter(|e| unwanted.matches(e))
            .map(|e| format!("{} {}", e.line(), short(&e.rec.payload)))
            .collect();
        if !found.is_empty() {
            fail(format!(
                "expected no {unwanted} in the window, but found: {}",
                found.join("; ")
            ));
        }
    }
}

/// A payload cut to a readable length.
fn short(payload: &str) -> String {
    const MAX: usize = 300;
    if payload.chars().count() <= MAX {
        return payload.to_owned();
    }
    let cut: String = payload.chars().take(MAX).collect();
    format!("{cut}…")
}

fn check_state<D: Backend>(store: &D, check: &StateCheck) -> Result<Option<String>, ScenarioError> {
    let entity = store.load(check.stream)?;
    let Some(entity) = entity else {
        return Ok(check
            .exists
            .then(|| format!("expected {} to exist, but it does not", check.stream)));
    };
    if !check.exists {
        return Ok(Some(format!(
            "expected {} not to exist, but it does",
            check.stream
        )));
    }
    let json = match &entity {
        leadflow_engine::Entity::Lead(l) => serde_json::to_value(l),
        leadflow_engine::Entity::Deal(d) => serde_json::to_value(d),
        leadflow_engine::Entity::Contact(c) => serde_json::to_value(c),
        leadflow_engine::Entity::Company(c) => serde_json::to_value(c),
        leadflow_engine::Entity::Task(t) => serde_json::to_value(t),
    }
    .unwrap_or(Value::Null);
    let mut problems = Vec::new();
    let mut shown = json.clone();
    if let Value::Object(m) = &mut shown {
        m.retain(|_, v| !v.is_null());
    }
    if let Some(d) = differ(&Value::Object(check.expected.clone()), Some(&json), "") {
        problems.push(d);
    }
    for path in &check.unset {
        let mut here = Some(&json);
        for part in path.split('.') {
            here = here.and_then(|v| v.get(part));
        }
        if let Some(v) = here.filter(|v| leadflow_engine::model::is_filled(v)) {
            problems.push(format!("{path}: expected it unset, found {v}"));
        }
    }
    Ok((!problems.is_empty()).then(|| {
        format!(
            "{}: {}; it is {}",
            check.stream,
            problems.join("; "),
            short(&shown.to_string())
        )
    }))
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

/// Where `actual` falls short of `expected` (every key of an object, every item of a list,
/// equal scalars; times compare as instants): the first difference, or `None`.
fn differ(expected: &Value, actual: Option<&Value>, path: &str) -> Option<String> {
    let here = if path.is_empty() { "the payload" } else { path };
    let actual = match actual {
        None | Some(Value::Null) if expected.is_null() => return None,
        None | Some(Value::Null) => {
            return Some(format!("{here}: expected {expected}, found nothing"));
        }
        Some(a) => a,
    };
    match (expected, actual) {
        (Value::Object(e), Value::Object(a)) => e
            .iter()
            .find_map(|(k, v)| differ(v, a.get(k), &join(path, k))),
        (Value::Array(e), Value::Array(a)) => {
            if e.len() != a.len() {
                return Some(format!("{here}: expected {expected}, found {actual}"));
            }
            e.iter()
                .zip(a)
                .enumerate()
                .find_map(|(i, (e, a))| differ(e, Some(a), &format!("{here}[{i}]")))
        }
        (e, a) if same_scalar(e, a) => None,
        (e, a) => Some(format!("{here}: expected {e}, found {a}")),
    }
}

fn same_scalar(e: &Value, a: &Value) -> bool {
    match (e, a) {
        (Value::Number(x), Value::Number(y)) => match (x.as_i64(), y.as_i64()) {
            (Some(x), Some(y)) => x == y,
            _ => x.as_f64() == y.as_f64(),
        },
        (Value::String(x), Value::String(y)) => {
            x == y || matches!((parse_time(x), parse_time(y)), (Some(x), Some(y)) if x == y)
        }
        (x, y) => x == y,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn subsets_match_and_say_where_they_differ() {
        let actual = json!({"kind": "missed_deadline", "employee": "ivanov", "n": [1, 2]});
        assert_eq!(
            differ(&json!({"kind": "missed_deadline"}), Some(&actual), ""),
            None
        );
        assert_eq!(
            differ(&json!({"kind": "escalation"}), Some(&actual), "").unwrap(),
            "kind: expected \"escalation\", found \"missed_deadline\""
        );
        assert!(
            differ(&json!({"rule": "x"}), Some(&actual), "")
                .unwrap()
                .contains("found nothing")
        );
        assert!(differ(&json!({"n": [1]}), Some(&actual), "").is_some());
        // Times match as instants, whatever the offset they are written with.
        assert_eq!(
            differ(
                &json!({"due_at": "2026-03-10T09:30:00+03:00"}),
                Some(&json!({"due_at": "2026-03-10T06:30:00Z"})),
                ""
            ),
            None
        );
    }

    #[test]
    fn dotted_keys_nest() {
        let m: Map<String, Value> = [("fields.material".to_owned(), json!("granite"))]
            .into_iter()
            .chain([("fields".to_owned(), json!({"budget": 1}))])
            .collect();
        assert_eq!(
            Value::Object(nest_dotted(m)),
            json!({"fields": {"material": "granite", "budget": 1}})
        );
    }
}
