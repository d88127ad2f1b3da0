//! Loading a scenario file: its TOML layout, the configuration and rule set it names, and every
//! problem at `file:line:column` (through the engine's shared diagnostics).

use super::error::ScenarioError;
use super::format::{Action, Expectation, Scenario, StateCheck, Step};
use crate::Registry;
use chrono::{DateTime, Duration, Utc};
use leadflow_engine::calendar::Calendar;
use leadflow_engine::config::{ConfigError, DEFAULT_CONFIG};
use leadflow_engine::diag::FileIndex;
use leadflow_engine::ids::EmployeeId;
use leadflow_engine::rules::RuleSet;
use leadflow_engine::verb::{Verb, build};
use leadflow_engine::{Actor, Config, Source, StreamId};
use serde::Deserialize;
use serde_json::{Map, Value};
use std::path::{Path, PathBuf};
use toml::Spanned;

/// The name of the scenario file inside a scenario folder.
pub const SCENARIO_FILE: &str = "scenario.toml";

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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

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
