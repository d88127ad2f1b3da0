//! The audit's pure side (`history`, `explain`, state as of a position): an event in words,
//! who or what started a causal chain, the rules of a stored rule set, and a rule's condition
//! re-evaluated with the values it read.
//!
//! Nothing here reads the log: the caller hands in the events (a stream's, up to a position;
//! the rule set in force) and gets words and values back. Times are formatted by the caller
//! (the CLI has the one format for people), through the `time` argument.

use crate::condition::Condition;
use crate::config::Config;
use crate::event::{Event, RulesetActivated};
use crate::ids::{EmployeeId, EntityKind, StageId, StreamId};
use crate::model::{Entity, apply};
use crate::stored::{PendingTimer, RecordedEvent, StoredError};
use crate::workspace::{IncidentQuery, KpiCounts, KpiQuery, MatchKey, View, WorkspaceError};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// Formats a time for people (the caller's calendar zone).
pub type TimeFmt<'a> = &'a dyn Fn(DateTime<Utc>) -> String;

/// An employee as people know them: their name from the configuration, or the id.
pub fn employee(config: &Config, id: &EmployeeId) -> String {
    config
        .employee(id)
        .map_or_else(|| id.as_str().to_owned(), |e| e.name.clone())
}

/// A stage's name in the pipelines of `kind` (the id when no pipeline has it).
pub fn stage(config: &Config, kind: EntityKind, id: &StageId) -> String {
    config
        .pipelines
        .iter()
        .filter(|p| p.entity == kind)
        .find_map(|p| p.stage(id))
        .map_or_else(|| id.as_str().to_owned(), |s| s.name.clone())
}

/// The rule an actor names: `robot:<rule>` → `<rule>`.
pub fn rule_of(actor: &str) -> Option<&str> {
    actor.strip_prefix("robot:")
}

/// A JSON value as a person reads it: strings without quotes.
fn shown(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Field changes in words: `set budget = 120000, cleared inn`.
fn changes(c: &BTreeMap<String, Value>) -> String {
    let (cleared, set): (Vec<_>, Vec<_>) = c.iter().partition(|(_, v)| v.is_null());
    let mut parts = Vec::new();
    if !set.is_empty() {
        let s: Vec<String> = set
            .iter()
            .map(|(k, v)| format!("{k} = {}", shown(v)))
            .collect();
        parts.push(format!("set {}", s.join(", ")));
    }
    if !cleared.is_empty() {
        let s: Vec<&str> = cleared.iter().map(|(k, _)| k.as_str()).collect();
        parts.push(format!("cleared {}", s.join(", ")));
    }
    parts.join("; ")
}

/// One event in words, as the timeline of `history` shows it ("moved from New to Taken in
/// work", "assigned to Ivan Ivanov"); stage and employee names come from the configuration.
pub fn describe(config: &Config, rec: &RecordedEvent, event: &Event, time: TimeFmt<'_>) -> String {
    use Event as E;
    let kind = rec.stream.kind;
    let who = |id: &EmployeeId| employee(config, id);
    let to_whom = |id: &Option<EmployeeId>| {
        id.as_ref()
            .map(|e| format!(", responsible {}", who(e)))
            .unwrap_or_default()
    };
    match event {
        E::LeadCreated(l) => format!(
            "created «{}» from {} in {}{}",
            l.title,
            l.source,
            stage(config, EntityKind::Lead, &l.stage),
            to_whom(&l.responsible)
        ),
        E::DealCreated(d) => format!(
            "created «{}» in {}{}{}",
            d.title,
            stage(config, EntityKind::Deal, &d.stage),
            d.lead
                .map(|l| format!(" from lead-{l}"))
                .unwrap_or_default(),
            to_whom(&d.responsible)
        ),
        E::ContactCreated(c) => format!("created «{}»{}", c.name, to_whom(&c.responsible)),
        E::CompanyCreated(c) => format!(
            "created «{}»{}{}",
            c.name,
            c.inn
                .as_ref()
                .map(|i| format!(", INN {i}"))
                .unwrap_or_default(),
            to_whom(&c.responsible)
        ),
        E::TaskCreated(t) => format!(
            "task «{}» ({}) for {}, due {}",
            t.title,
            t.kind.as_str(),
            who(&t.assignee),
            time(t.due_at)
        ),
        E::LeadUpdated(u) | E::DealUpdated(u) | E::ContactUpdated(u) | E::CompanyUpdated(u) => {
            format!("changed: {}", changes(&u.changes))
        }
        E::LeadStageChanged(s) | E::DealStageChanged(s) => format!(
            "moved from {} to {}{}",
            stage(config, kind, &s.from),
            stage(config, kind, &s.to),
            s.reason
                .as_ref()
                .map(|r| format!(" ({r})"))
                .unwrap_or_default()
        ),
        E::LeadAssigned(a) | E::DealAssigned(a) => format!(
            "assigned to {}{}",
            who(&a.to),
            a.from
                .as_ref()
                .map(|f| format!(" (was {})", who(f)))
                .unwrap_or_default()
        ),
        E::TaskCompleted(t) => format!(
            "task done{}",
            t.result
                .as_ref()
                .map(|r| format!(": {r}"))
                .unwrap_or_default()
        ),
        E::TaskOverdue(t) => format!("task overdue (was due {})", time(t.due_at)),
        E::LeadRepeatDetected(r) => {
            let known: Vec<String> = (r.contacts.iter().map(|c| format!("contact-{c}")))
                .chain(r.companies.iter().map(|c| format!("company-{c}")))
                .chain(r.leads.iter().map(|l| format!("lead-{l}")))
                .collect();
            format!(
                "repeat client: {} (by {})",
                known.join(", "),
                r.by.join(", ")
            )
        }
        E::IdleDetected(i) => format!("no activity since {} (rule {})", time(i.since), i.rule),
        E::RulesetActivated(r) => format!(
            "rule set {} activated ({} file{})",
            short_hash(&r.hash),
            r.files.len(),
            if r.files.len() == 1 { "" } else { "s" }
        ),
        E::DeadlineScheduled(d) => format!("deadline «{}» set for {}", d.name, time(d.due_at)),
        E::DeadlineCancelled(d) => format!(
            "deadline «{}» (set at position {}) called off: {}",
            d.name, d.scheduled, d.reason
        ),
        E::DeadlineElapsed(d) => format!(
            "deadline «{}» (set at position {}) elapsed",
            d.name, d.scheduled
        ),
        E::RobotsDelayed(d) => {
            let robots: Vec<&str> = d.robots.iter().map(|r| r.robot.as_str()).collect();
            format!(
                "robots of rule {} put off until {}: {}",
                d.rule,
                time(d.due_at),
                robots.join(", ")
            )
        }
        E::RobotsResumed(r) => format!("delayed robots (position {}) resumed", r.delayed),
        E::RobotsCancelled(r) => format!(
            "delayed robots (position {}) called off: {}",
            r.delayed, r.reason
        ),
        E::IncidentRecorded(i) => format!(
            "incident {}{}: {}",
            i.kind,
            i.employee
                .as_ref()
                .map(|e| format!(" of {}", who(e)))
                .unwrap_or_default(),
            i.text
        ),
        E::EscalationRecorded(e) => format!(
            "escalated to {}: {} {} incident{} of {} within {}",
            e.manager
                .as_ref()
                .map_or_else(|| "no manager".to_owned(), who),
            e.count,
            e.kind,
            if e.count == 1 { "" } else { "s" },
            who(&e.employee),
            e.window
        ),
        E::NotificationQueued(n) => format!(
            "notified {} ({}{}): {}",
            n.to.as_ref()
                .map(who)
                .or_else(|| n.target.clone())
                .unwrap_or_else(|| "-".into()),
            n.channel.as_str(),
            if n.priority.is_empty() || n.priority == "normal" {
                String::new()
            } else {
                format!(", {}", n.priority)
            },
            n.text
        ),
        E::NotificationRead(n) => format!(
            "{} read the notification at position {}",
            who(&n.employee),
            n.notification
        ),
        E::ScheduleFired(s) => {
            format!("schedule of rule {} fired (due {})", s.rule, time(s.due_at))
        }
        E::ReportSent(r) => {
            let to: Vec<String> = r.to.iter().map(who).collect();
            format!("KPI report sent to {}", to.join(", "))
        }
        E::RobotRequested(r) => format!("asked the external robot «{}»", r.robot),
        E::RobotStarted(r) => format!(
            "the external robot's request (position {}) taken until {}",
            r.request,
            time(r.until)
        ),
        E::RobotCompleted(c) => format!(
            "the external robot's request (position {}) {}{}",
            c.request,
            match c.outcome {
                crate::event::RobotOutcome::Answered => "answered",
                crate::event::RobotOutcome::Failed => "failed",
                crate::event::RobotOutcome::TimedOut => "timed out",
            },
            c.error
                .as_ref()
                .map(|e| format!(": {e}"))
                .unwrap_or_default()
        ),
        E::TokenCreated(t) => format!("API token «{}» made, role {}", t.name, t.role),
        E::TokenRevoked(t) => format!("API token «{}» revoked", t.name),
        E::LeadDeleted(d) | E::DealDeleted(d) | E::ContactDeleted(d) | E::CompanyDeleted(d) => {
            format!(
                "deleted{}",
                d.reason
                    .as_ref()
                    .map(|r| format!(": {r}"))
                    .unwrap_or_default()
            )
        }
        E::LeadCommented(c)
        | E::DealCommented(c)
        | E::ContactCommented(c)
        | E::CompanyCommented(c) => format!("comment: {}", c.text),
        E::EndpointAdded(e) => format!("webhook endpoint {} added", e.url),
        E::EndpointRemoved(_) => "webhook endpoint removed".into(),
        E::EndpointDisabled(e) => format!("webhook endpoint disabled: {}", e.reason),
        E::DeliveryQueued(d) => format!(
            "{} at position {} queued for delivery",
            d.event_type, d.event
        ),
        E::DeliveryAttempted(d) => format!(
            "delivery of message {} attempt {} failed",
            d.message, d.attempt
        ),
        E::DeliverySucceeded(d) => format!("message {} delivered", d.message),
        E::DeliveryFailed(d) => format!("message {} given up: {}", d.message, d.reason),
        E::DeliveryRetried(d) => format!("message {} to be retried", d.message),
        E::DeliveryDropped(d) => format!("message {} dropped", d.message),
    }
}

/// The first 12 hex digits of a rule-set hash, as people quote it.
pub fn short_hash(hash: &str) -> &str {
    hash.get(..12).unwrap_or(hash)
}

/// What started a causal chain: the kind of its first event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// An employee's command (the CLI, or the API acting for them).
    Person,
    /// An API token's call.
    Api,
    /// A file import.
    Import,
    /// A deadline, delayed robots, a task's due time or an idle rule.
    Timer,
    /// A cron rule.
    Schedule,
    /// leadflow itself (a rule set activated, say).
    System,
    /// A robot whose cause is not in the log (its chain was cut).
    Robot,
}

impl Origin {
    /// The origin of a chain whose first event is `rec` (an import is a lead created from
    /// the source `import`, as `leadflow import` names it by default).
    pub fn of(rec: &RecordedEvent) -> Origin {
        match rec.event_type.as_str() {
            "schedule.fired" => return Origin::Schedule,
            t if crate::react::CHAIN_STARTS.contains(&t) => return Origin::Timer,
            _ => {}
        }
        let actor = rec.actor.as_str();
        let imported = matches!(rec.decode(), Ok(Event::LeadCreated(l)) if l.source == "import");
        if actor.starts_with("api:") {
            Origin::Api
        } else if imported {
            Origin::Import
        } else if actor.starts_with("employee:") {
            Origin::Person
        } else if actor.starts_with("robot:") {
            Origin::Robot
        } else {
            Origin::System
        }
    }

    /// Its name in `explain`'s output.
    pub fn as_str(self) -> &'static str {
        match self {
            Origin::Person => "person",
            Origin::Api => "api",
            Origin::Import => "import",
            Origin::Timer => "timer",
            Origin::Schedule => "schedule",
            Origin::System => "system",
            Origin::Robot => "robot",
        }
    }
}

/// A rule as a stored rule set has it: only what `explain` shows (the files were valid when
/// activated; they are read again without the configuration and robots of today).
#[derive(Debug, Clone, PartialEq)]
pub struct StoredRule {
    /// Its id.
    pub id: String,
    /// Its description.
    pub description: Option<String>,
    /// Its condition's text.
    pub condition: Option<String>,
    /// The rule file it is in.
    pub file: String,
}

#[derive(Deserialize)]
struct LooseFile {
    #[serde(default)]
    rules: Vec<LooseRule>,
}

#[derive(Deserialize)]
struct LooseRule {
    id: String,
    description: Option<String>,
    condition: Option<String>,
}

/// The rule `id` of a stored rule set; `Err` names a file that does not read.
pub fn stored_rule(set: &RulesetActivated, id: &str) -> Result<Option<StoredRule>, String> {
    for f in &set.files {
        let file: LooseFile = toml::from_str(&f.text).map_err(|e| {
            format!(
                "rule file {} of rule set {}: {e}",
                f.path,
                short_hash(&set.hash)
            )
        })?;
        if let Some(r) = file.rules.into_iter().find(|r| r.id == id) {
            return Ok(Some(StoredRule {
                id: r.id,
                description: r.description,
                condition: r.condition,
                file: f.path.clone(),
            }));
        }
    }
    Ok(None)
}

/// A stream's state after `events` (its events in version order, up to a position): the
/// engine's [`apply`] folded over them, as the projections have it at that position.
pub fn fold<'a>(
    events: impl IntoIterator<Item = &'a RecordedEvent>,
) -> Result<Option<Entity>, StoredError> {
    let mut state = None;
    for rec in events {
        let event = rec.decode()?;
        let next = apply(state.clone(), &event, rec.occurred_at()?);
        state = next.or(state);
    }
    Ok(state)
}

/// A condition re-evaluated: its text, what it gave, and the values it read.
#[derive(Debug, Clone, PartialEq)]
pub struct Evaluation {
    /// The condition's text.
    pub source: String,
    /// True, false, or why it could not be evaluated.
    pub result: Result<bool, String>,
    /// Each path the condition names (`lead.fields.budget`) with its value; `None`: absent.
    pub values: Vec<(String, Option<Value>)>,
}

/// Evaluates `source` against `vars` (as [`crate::react::variables`] makes them) and reads
/// the values of the paths it names.
pub fn evaluate(source: &str, vars: &Map<String, Value>) -> Evaluation {
    let result = Condition::compile(source)
        .map_err(|e| e.message)
        .and_then(|c| c.eval(vars));
    Evaluation {
        source: source.trim().to_owned(),
        result,
        values: read_values(source, vars),
    }
}

/// The dotted paths of `source` whose first name is a variable (`lead.fields.budget`,
/// `responsible.missed_deadlines`), each once, in order, with the value it has in `vars`.
/// Text inside string literals is skipped.
pub fn read_values(source: &str, vars: &Map<String, Value>) -> Vec<(String, Option<Value>)> {
    let mut out: Vec<(String, Option<Value>)> = Vec::new();
    let chars: Vec<char> = source.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '"' || c == '\'' {
            i += 1;
            while i < chars.len() && chars[i] != c {
                i += if chars[i] == '\\' { 2 } else { 1 };
            }
            i += 1;
            continue;
        }
        let starts = c.is_ascii_alphabetic() || c == '_';
        let after_dot = i > 0 && chars[i - 1] == '.';
        if !starts || after_dot || (i > 0 && chars[i - 1].is_ascii_alphanumeric()) {
            i += 1;
            continue;
        }
        let mut j = i;
        while j < chars.len()
            && (chars[j].is_ascii_alphanumeric() || chars[j] == '_' || chars[j] == '.')
        {
            j += 1;
        }
        let path: String = chars[i..j]
            .iter()
            .collect::<String>()
            .trim_end_matches('.')
            .to_owned();
        i = j;
        // `size(…)` is a function, `lead.phones.size()` a method: neither is a value.
        let is_call = chars.get(j) == Some(&'(');
        let path = if is_call {
            match path.rsplit_once('.') {
                Some((p, _)) => p.to_owned(),
                None => continue,
            }
        } else {
            path
        };
        let mut parts = path.split('.');
        let Some(root) = parts.next().and_then(|r| vars.get(r)) else {
            continue;
        };
        let value = parts.try_fold(root, |v, k| v.get(k)).cloned();
        if !out.iter().any(|(p, _)| *p == path) {
            out.push((path, value));
        }
    }
    out
}

/// The state a rule's condition saw, frozen: a [`View`] that answers what
/// [`crate::react::variables`] reads — the subject and a task's lead or deal as of the
/// trigger, whether the lead was a repeat, the responsible's incident counts then — and
/// nothing else (every other read is empty).
#[derive(Debug, Clone, Default)]
pub struct Frozen {
    /// Entities as of the trigger.
    pub entities: Vec<Entity>,
    /// The streams that had a `lead.repeat_detected` by then.
    pub repeats: Vec<(StreamId, RecordedEvent)>,
    /// Incident counts by kind (`None`: all kinds) over the 30 days the condition counts.
    pub incidents: Vec<(Option<String>, i64)>,
}

impl View for Frozen {
    fn load(&mut self, stream: StreamId) -> Result<Option<Entity>, WorkspaceError> {
        Ok(self.entities.iter().find(|e| e.stream() == stream).cloned())
    }
    fn event_at(&mut self, _: i64) -> Result<Option<RecordedEvent>, WorkspaceError> {
        Ok(None)
    }
    fn event_of(&mut self, _: StreamId, _: i64) -> Result<Option<RecordedEvent>, WorkspaceError> {
        Ok(None)
    }
    fn latest_of_type(
        &mut self,
        stream: StreamId,
        event_type: &str,
    ) -> Result<Option<RecordedEvent>, WorkspaceError> {
        Ok(self
            .repeats
            .iter()
            .find(|(s, r)| *s == stream && r.event_type == event_type)
            .map(|(_, r)| r.clone()))
    }
    fn cause_of(&mut self, _: i64) -> Result<Option<(Option<i64>, String)>, WorkspaceError> {
        Ok(None)
    }
    fn pending_timers(&mut self, _: StreamId) -> Result<Vec<PendingTimer>, WorkspaceError> {
        Ok(Vec::new())
    }
    fn incident_count(&mut self, q: &IncidentQuery<'_>) -> Result<i64, WorkspaceError> {
        Ok(self
            .incidents
            .iter()
            .find(|(k, _)| k.as_deref() == q.kind)
            .map_or(0, |(_, n)| *n))
    }
    fn open_items(
        &mut self,
        _: &EmployeeId,
        _: EntityKind,
        _: &[String],
    ) -> Result<i64, WorkspaceError> {
        Ok(0)
    }
    fn last_assigned(&mut self, _: &EmployeeId, _: EntityKind) -> Result<i64, WorkspaceError> {
        Ok(0)
    }
    fn company_by_inn(&mut self, _: &str) -> Result<Option<i64>, WorkspaceError> {
        Ok(None)
    }
    fn matching(
        &mut self,
        _: MatchKey,
        _: &[String],
        _: EntityKind,
        _: Option<i64>,
    ) -> Result<Vec<i64>, WorkspaceError> {
        Ok(Vec::new())
    }
    fn kpi(&mut self, _: &KpiQuery<'_>) -> Result<KpiCounts, WorkspaceError> {
        Ok(KpiCounts::default())
    }
    fn request_pending(&mut self, _: i64) -> Result<Option<Option<DateTime<Utc>>>, WorkspaceError> {
        Ok(None)
    }
    fn schedule_fired_at(&mut self, _: &str) -> Result<Option<DateTime<Utc>>, WorkspaceError> {
        Ok(None)
    }
    fn idle_candidates(
        &mut self,
        _: EntityKind,
        _: &str,
        _: DateTime<Utc>,
        _: &[String],
    ) -> Result<Vec<(i64, DateTime<Utc>)>, WorkspaceError> {
        Ok(Vec::new())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn config() -> Config {
        Config::from_toml("leadflow.toml", crate::config::DEFAULT_CONFIG).unwrap()
    }

    /// A recorded event of `event` in `stream`, by `actor`.
    fn rec(stream: &str, event: &Event, actor: &str) -> RecordedEvent {
        RecordedEvent {
            position: 1,
            stream: stream.parse().unwrap(),
            version: 1,
            event_type: event.event_type().into(),
            schema_version: event.schema_version().into(),
            payload: event.payload(),
            occurred_at: "2026-03-02T09:00:00.000000Z".into(),
            recorded_at: "2026-03-02T09:00:00.000000Z".into(),
            actor: actor.into(),
            causation: None,
            correlation: 1,
            hash: [0; 32],
        }
    }

    #[test]
    fn events_read_in_words_with_the_configurations_names() {
        use crate::event::{Assigned, StageChanged, Updated};
        let config = config();
        let time = |t: DateTime<Utc>| t.format("%H:%M").to_string();
        let say = |stream: &str, e: Event| describe(&config, &rec(stream, &e, "system"), &e, &time);
        assert_eq!(
            say(
                "lead-1",
                Event::LeadStageChanged(StageChanged {
                    from: "new".into(),
                    to: "in_work".into(),
                    reason: None,
                })
            ),
            "moved from New to Taken in work"
        );
        assert_eq!(
            say(
                "lead-1",
                Event::LeadAssigned(Assigned {
                    from: Some("petrova".into()),
                    to: "ivanov".into(),
                })
            ),
            "assigned to Ivan Ivanov (was Anna Petrova)"
        );
        // An id the configuration no longer has is shown as it is.
        assert_eq!(
            say(
                "lead-1",
                Event::LeadAssigned(Assigned {
                    from: None,
                    to: "gone".into(),
                })
            ),
            "assigned to gone"
        );
        let changes = [
            ("budget".to_owned(), json!(120000)),
            ("inn".to_owned(), Value::Null),
        ];
        assert_eq!(
            say(
                "lead-1",
                Event::LeadUpdated(Updated {
                    changes: changes.into_iter().collect(),
                })
            ),
            "changed: set budget = 120000; cleared inn"
        );
    }

    #[test]
    fn a_chain_is_started_by_a_person_the_api_an_import_a_timer_or_a_schedule() {
        let lead = |source: &str| {
            Event::LeadCreated(crate::event::LeadCreated {
                id: 1,
                title: "x".into(),
                name: None,
                phones: vec![],
                emails: vec![],
                source: source.into(),
                client_type: None,
                responsible: None,
                pipeline: "lead".into(),
                stage: "new".into(),
                fields: BTreeMap::new(),
                comment: None,
                contact: None,
                company: None,
            })
        };
        let origin = |e: &Event, actor: &str| Origin::of(&rec("lead-1", e, actor));
        assert_eq!(origin(&lead("web_form"), "employee:ivanov"), Origin::Person);
        assert_eq!(origin(&lead("import"), "employee:ivanov"), Origin::Import);
        assert_eq!(origin(&lead("web_form"), "api:crm@ivanov"), Origin::Api);
        assert_eq!(origin(&lead("web_form"), "system"), Origin::System);
        assert_eq!(origin(&lead("web_form"), "robot:x"), Origin::Robot);
        let elapsed = Event::DeadlineElapsed(crate::event::DeadlineElapsed {
            name: "q".into(),
            scheduled: 1,
            due_at: DateTime::UNIX_EPOCH,
        });
        assert_eq!(origin(&elapsed, "system"), Origin::Timer);
        let fired = Event::ScheduleFired(crate::event::ScheduleFired {
            rule: "daily".into(),
            due_at: DateTime::UNIX_EPOCH,
        });
        assert_eq!(
            Origin::of(&rec("system-1", &fired, "system")),
            Origin::Schedule
        );
    }

    #[test]
    fn the_values_a_condition_reads_are_its_paths_outside_string_literals() {
        let vars = json!({
            "lead": {"stage": "in_work", "fields": {"budget": 120000}, "phones": ["+7"]},
            "responsible": {"missed_deadlines": 2},
        });
        let vars = vars.as_object().unwrap();
        let got = read_values(
            r#"lead.stage == "lead.title" && has(lead.fields.inn) && lead.fields.budget > 100 && size(lead.phones) > 0 && lead.phones.size() > 0 && responsible.missed_deadlines >= 2 && x.y"#,
            vars,
        );
        assert_eq!(
            got,
            vec![
                ("lead.stage".to_owned(), Some(json!("in_work"))),
                ("lead.fields.inn".to_owned(), None),
                ("lead.fields.budget".to_owned(), Some(json!(120000))),
                ("lead.phones".to_owned(), Some(json!(["+7"]))),
                ("responsible.missed_deadlines".to_owned(), Some(json!(2))),
            ]
        );
    }

    #[test]
    fn a_condition_is_evaluated_with_its_values() {
        let vars = json!({"lead": {"stage": "in_work"}});
        let e = evaluate(" lead.stage == \"in_work\" ", vars.as_object().unwrap());
        assert_eq!(e.result, Ok(true));
        assert_eq!(e.source, "lead.stage == \"in_work\"");
        let e = evaluate("lead.stage == ", vars.as_object().unwrap());
        assert!(e.result.is_err());
    }

    #[test]
    fn a_stored_rule_is_found_by_id_and_a_broken_file_is_named() {
        let set = RulesetActivated {
            hash: "0123456789abcdef".into(),
            files: vec![crate::event::RuleFile {
                path: "a.toml".into(),
                text: "[[rules]]\nid = \"x\"\ncondition = 'lead.stage == \"new\"'\ntrigger = { on = \"created\", entity = \"lead\" }\n".into(),
            }],
        };
        let r = stored_rule(&set, "x").unwrap().unwrap();
        assert_eq!(r.condition.as_deref(), Some("lead.stage == \"new\""));
        assert_eq!(r.file, "a.toml");
        assert_eq!(stored_rule(&set, "y").unwrap(), None);
        let broken = RulesetActivated {
            hash: "0123456789abcdef".into(),
            files: vec![crate::event::RuleFile {
                path: "b.toml".into(),
                text: "[[rules]\n".into(),
            }],
        };
        let e = stored_rule(&broken, "x").unwrap_err();
        assert!(e.contains("b.toml") && e.contains("0123456789ab"), "{e}");
    }
}
