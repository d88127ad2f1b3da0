//! What a robot sees while it runs: the write transaction, the configuration, the event that
//! triggered its rule, the entity the rule is about, the time; and helpers to append its
//! effects as events caused by that trigger.

use chrono::{DateTime, Datelike, Timelike, Utc};
use leadflow_engine::event::{IncidentRecorded, NotificationQueued};
use leadflow_engine::ids::EmployeeId;
use leadflow_engine::{Actor, Command, Config, Entity, EntityKind, Event, EventMeta, StreamId};
use leadflow_store::{Executed, RecordedEvent, Tx};
use serde_json::{Map, Value, json};

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
    /// The database failed: processing stops and is retried; nothing of it is kept.
    #[error(transparent)]
    Store(leadflow_store::Error),
}

impl From<leadflow_store::Error> for RobotError {
    fn from(e: leadflow_store::Error) -> Self {
        match e {
            leadflow_store::Error::Rejected(r) => RobotError::Rejected(r),
            other => RobotError::Store(other),
        }
    }
}

impl From<leadflow_engine::stored::StoredError> for RobotError {
    fn from(e: leadflow_engine::stored::StoredError) -> Self {
        RobotError::Store(e.into())
    }
}

impl From<rusqlite::Error> for RobotError {
    fn from(e: rusqlite::Error) -> Self {
        RobotError::Store(e.into())
    }
}

/// A robot's run-time context.
pub struct Ctx<'a, 't> {
    /// The write transaction everything is appended in.
    pub tx: &'a mut Tx<'t>,
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
    /// The stream the rule is about: the lead, deal or task, or `system-1` for schedules.
    pub subject: StreamId,
    /// Now, from the runtime's clock.
    pub now: DateTime<Utc>,
}

impl Ctx<'_, '_> {
    /// Metadata for the robot's events: actor `robot:<rule>`, caused by the trigger.
    pub fn meta(&self) -> EventMeta {
        EventMeta {
            occurred_at: self.now,
            actor: Actor::Robot(self.rule.to_owned()),
            causation: Some(self.trigger.position),
            correlation: Some(self.trigger.correlation),
        }
    }

    /// Decides and appends a command as the robot.
    pub fn execute(&mut self, command: &Command) -> Result<Executed, RobotError> {
        let meta = self.meta();
        Ok(self.tx.execute(self.config, command, &meta)?)
    }

    /// Appends events to a stream at its current version.
    pub fn append(&mut self, stream: StreamId, events: &[Event]) -> Result<(), RobotError> {
        let meta = self.meta();
        let version = self.tx.version(stream)?;
        self.tx.append(stream, version, events, &meta)?;
        Ok(())
    }

    /// Appends events to the subject's stream.
    pub fn append_here(&mut self, events: &[Event]) -> Result<(), RobotError> {
        self.append(self.subject, events)
    }

    /// The subject entity's current state.
    pub fn entity(&mut self) -> Result<Option<Entity>, RobotError> {
        if !self.subject.kind.is_entity() {
            return Ok(None);
        }
        Ok(self.tx.load(self.subject)?)
    }

    /// The subject's lead or deal: the entity itself, or a task's lead/deal.
    pub fn lead_or_deal(&mut self) -> Result<Option<Entity>, RobotError> {
        match self.entity()? {
            Some(Entity::Task(t)) => {
                let stream = match (t.lead, t.deal) {
                    (_, Some(d)) => StreamId::new(EntityKind::Deal, d),
                    (Some(l), None) => StreamId::new(EntityKind::Lead, l),
                    (None, None) => return Ok(None),
                };
                Ok(self.tx.load(stream)?)
            }
            other => Ok(other),
        }
    }

    /// The employee responsible for the subject (a task's assignee).
    pub fn responsible(&mut self) -> Result<Option<EmployeeId>, RobotError> {
        Ok(match self.entity()? {
            Some(Entity::Lead(l)) => l.responsible,
            Some(Entity::Deal(d)) => d.responsible,
            Some(Entity::Contact(c)) => c.responsible,
            Some(Entity::Company(c)) => c.responsible,
            Some(Entity::Task(t)) => Some(t.assignee),
            None => None,
        })
    }

    /// The variables conditions and templates see.
    pub fn vars(&mut self) -> Result<Map<String, Value>, RobotError> {
        let entity = self.entity()?;
        let related = match &entity {
            Some(Entity::Task(_)) => self.lead_or_deal()?,
            _ => None,
        };
        let responsible = self.responsible()?;
        variables(
            self.tx,
            self.config,
            self.trigger,
            self.event,
            entity.as_ref(),
            related.as_ref(),
            responsible.as_ref(),
            self.now,
        )
    }

    /// Renders a `{lead.title}`-style template.
    pub fn render(&mut self, template: &str) -> Result<String, RobotError> {
        let vars = self.vars()?;
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
                self.tx.head_position() + 1
            );
        }
        self.append_here(&[Event::NotificationQueued(n)])
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

/// Builds the variables a condition or template sees (see docs/RULES.md, "Conditions").
#[allow(clippy::too_many_arguments)]
pub(crate) fn variables(
    tx: &mut Tx<'_>,
    config: &Config,
    trigger: &RecordedEvent,
    event: &Event,
    entity: Option<&Entity>,
    related: Option<&Entity>,
    responsible: Option<&EmployeeId>,
    now: DateTime<Utc>,
) -> Result<Map<String, Value>, RobotError> {
    let mut vars = Map::new();
    for e in entity.into_iter().chain(related) {
        let mut json = entity_json(e);
        let name = match e {
            Entity::Lead(_) => "lead",
            Entity::Deal(_) => "deal",
            Entity::Task(_) => "task",
            Entity::Contact(_) => "contact",
            Entity::Company(_) => "company",
        };
        if let (Entity::Lead(l), Value::Object(m)) = (e, &mut json) {
            m.insert("repeat".into(), json!(is_repeat(tx, l.id)?));
        }
        vars.insert(name.into(), json);
    }
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
    if let Some(id) = responsible {
        let emp = config.employee(id);
        let conn = tx.conn()?;
        let since = leadflow_store::fmt_time(now - chrono::Duration::days(30));
        let count = |kind: Option<&str>| -> Result<i64, RobotError> {
            conn.prepare_cached(
                "SELECT count(*) FROM incidents WHERE employee = ?1 AND (?2 IS NULL OR kind = ?2) AND at >= ?3",
            )
            .and_then(|mut s| s.query_row(rusqlite::params![id.as_str(), kind, since], |r| r.get(0)))
            .map_err(RobotError::from)
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
        r.insert(
            "missed_deadlines".into(),
            json!(count(Some("missed_deadline"))?),
        );
        r.insert("incidents".into(), json!(count(None)?));
        vars.insert("responsible".into(), Value::Object(r));
    }
    let local = now.with_timezone(&config.calendar.timezone);
    vars.insert(
        "time".into(),
        json!({
            "now": leadflow_store::fmt_time(now),
            "hour": local.hour(),
            "minute": local.minute(),
            "weekday": local.weekday().number_from_monday(),
            "working": config.calendar.is_working_time(now),
        }),
    );
    Ok(vars)
}

/// Whether the lead was found to be a repeat lead.
fn is_repeat(tx: &mut Tx<'_>, lead: i64) -> Result<bool, RobotError> {
    let conn = tx.conn()?;
    conn.prepare_cached(
        "SELECT 1 FROM events e JOIN streams s ON s.stream_key = e.stream_key \
         WHERE s.kind = 'lead' AND s.entity_id = ?1 AND e.type = 'lead.repeat_detected' LIMIT 1",
    )
    .and_then(|mut s| s.exists([lead]))
    .map_err(RobotError::from)
}
