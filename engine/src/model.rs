//! Current state of each entity, and the pure fold of events into it.
//!
//! `apply` holds no business logic and cannot fail: decisions were made when the event was
//! appended. It is the one definition of state used by the live path, by replay and by the
//! projections in SQLite, so rebuilt state equals live state by construction.

use crate::event::{ClientType, Event, TaskKind};
use crate::ids::{EmployeeId, EntityKind, PipelineId, StageId, StreamId};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;

/// A lead as it stands.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Lead {
    pub id: i64,
    pub title: String,
    pub name: Option<String>,
    pub phones: Vec<String>,
    pub emails: Vec<String>,
    pub source: String,
    pub client_type: Option<ClientType>,
    pub responsible: Option<EmployeeId>,
    pub pipeline: PipelineId,
    pub stage: StageId,
    pub stage_reason: Option<String>,
    pub fields: BTreeMap<String, Value>,
    pub comment: Option<String>,
    pub contact: Option<i64>,
    pub company: Option<i64>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub stage_entered_at: DateTime<Utc>,
    /// How many events the lead's stream holds.
    pub version: i64,
}

/// A deal as it stands.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Deal {
    pub id: i64,
    pub title: String,
    pub pipeline: PipelineId,
    pub stage: StageId,
    pub stage_reason: Option<String>,
    pub amount: Option<i64>,
    pub currency: String,
    pub responsible: Option<EmployeeId>,
    pub contact: Option<i64>,
    pub company: Option<i64>,
    pub lead: Option<i64>,
    pub fields: BTreeMap<String, Value>,
    pub comment: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub stage_entered_at: DateTime<Utc>,
    pub version: i64,
}

/// A contact as it stands.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Contact {
    pub id: i64,
    pub name: String,
    pub phones: Vec<String>,
    pub emails: Vec<String>,
    pub company: Option<i64>,
    pub responsible: Option<EmployeeId>,
    pub fields: BTreeMap<String, Value>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub version: i64,
}

/// A company as it stands.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Company {
    pub id: i64,
    pub name: String,
    pub inn: Option<String>,
    pub bank_account: Option<String>,
    pub bik: Option<String>,
    pub phones: Vec<String>,
    pub emails: Vec<String>,
    pub responsible: Option<EmployeeId>,
    pub fields: BTreeMap<String, Value>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub version: i64,
}

/// A task as it stands.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Task {
    pub id: i64,
    pub kind: TaskKind,
    pub title: String,
    pub assignee: EmployeeId,
    pub due_at: DateTime<Utc>,
    pub lead: Option<i64>,
    pub deal: Option<i64>,
    pub created_at: DateTime<Utc>,
    pub completed_at: Option<DateTime<Utc>>,
    pub result: Option<String>,
    pub version: i64,
}

/// Any entity, as the projections store it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Entity {
    Lead(Lead),
    Deal(Deal),
    Contact(Contact),
    Company(Company),
    Task(Task),
}

impl Entity {
    /// The entity's stream.
    pub fn stream(&self) -> StreamId {
        match self {
            Entity::Lead(l) => StreamId::new(EntityKind::Lead, l.id),
            Entity::Deal(d) => StreamId::new(EntityKind::Deal, d.id),
            Entity::Contact(c) => StreamId::new(EntityKind::Contact, c.id),
            Entity::Company(c) => StreamId::new(EntityKind::Company, c.id),
            Entity::Task(t) => StreamId::new(EntityKind::Task, t.id),
        }
    }

    /// How many events made this state.
    pub fn version(&self) -> i64 {
        match self {
            Entity::Lead(l) => l.version,
            Entity::Deal(d) => d.version,
            Entity::Contact(c) => c.version,
            Entity::Company(c) => c.version,
            Entity::Task(t) => t.version,
        }
    }

    /// Counts `n` more events of the stream: all that the engine's bookkeeping events
    /// ([`Event::is_activity`] false) do to an entity, so a projection may apply them without
    /// loading it.
    pub fn add_version(&mut self, n: i64) {
        match self {
            Entity::Lead(l) => l.version += n,
            Entity::Deal(d) => d.version += n,
            Entity::Contact(c) => c.version += n,
            Entity::Company(c) => c.version += n,
            Entity::Task(t) => t.version += n,
        }
    }

    /// The pipeline and stage of a lead or deal.
    pub fn stage(&self) -> Option<(&PipelineId, &StageId)> {
        match self {
            Entity::Lead(l) => Some((&l.pipeline, &l.stage)),
            Entity::Deal(d) => Some((&d.pipeline, &d.stage)),
            _ => None,
        }
    }
}

/// Folds one event into an entity's state. `prior` is `None` before the stream's first event.
///
/// An event that does not fit the state (an update before a create, an event of another kind)
/// leaves the state as it was: the log is written only through decisions that prevent that.
pub fn apply(prior: Option<Entity>, event: &Event, at: DateTime<Utc>) -> Option<Entity> {
    use Event as E;
    let mut state = match (prior, event) {
        (None, E::LeadCreated(e)) => {
            return Some(Entity::Lead(Lead {
                id: e.id,
                title: e.title.clone(),
                name: e.name.clone(),
                phones: e.phones.clone(),
                emails: e.emails.clone(),
                source: e.source.clone(),
                client_type: e.client_type,
                responsible: e.responsible.clone(),
                pipeline: e.pipeline.clone(),
                stage: e.stage.clone(),
                stage_reason: None,
                fields: e.fields.clone(),
                comment: e.comment.clone(),
                contact: e.contact,
                company: e.company,
                created_at: at,
                updated_at: at,
                stage_entered_at: at,
                version: 1,
            }));
        }
        (None, E::DealCreated(e)) => {
            return Some(Entity::Deal(Deal {
                id: e.id,
                title: e.title.clone(),
                pipeline: e.pipeline.clone(),
                stage: e.stage.clone(),
                stage_reason: None,
                amount: e.amount,
                currency: e.currency.clone(),
                responsible: e.responsible.clone(),
                contact: e.contact,
                company: e.company,
                lead: e.lead,
                fields: e.fields.clone(),
                comment: e.comment.clone(),
                created_at: at,
                updated_at: at,
                stage_entered_at: at,
                version: 1,
            }));
        }
        (None, E::ContactCreated(e)) => {
            return Some(Entity::Contact(Contact {
                id: e.id,
                name: e.name.clone(),
                phones: e.phones.clone(),
                emails: e.emails.clone(),
                company: e.company,
                responsible: e.responsible.clone(),
                fields: e.fields.clone(),
                created_at: at,
                updated_at: at,
                version: 1,
            }));
        }
        (None, E::CompanyCreated(e)) => {
            return Some(Entity::Company(Company {
                id: e.id,
                name: e.name.clone(),
                inn: e.inn.clone(),
                bank_account: e.bank_account.clone(),
                bik: e.bik.clone(),
                phones: e.phones.clone(),
                emails: e.emails.clone(),
                responsible: e.responsible.clone(),
                fields: e.fields.clone(),
                created_at: at,
                updated_at: at,
                version: 1,
            }));
        }
        (None, E::TaskCreated(e)) => {
            return Some(Entity::Task(Task {
                id: e.id,
                kind: e.kind,
                title: e.title.clone(),
                assignee: e.assignee.clone(),
                due_at: e.due_at,
                lead: e.lead,
                deal: e.deal,
                created_at: at,
                completed_at: None,
                result: None,
                version: 1,
            }));
        }
        (None, _) => return None,
        // A deletion ends the entity: the stream holds none after it.
        (Some(_), e) if e.is_deletion() => return None,
        (Some(state), _) => state,
    };
    match (&mut state, event) {
        (Entity::Lead(l), E::LeadUpdated(u)) => {
            for (k, v) in &u.changes {
                set_lead(l, k, v);
            }
            l.updated_at = at;
        }
        (Entity::Lead(l), E::LeadStageChanged(s)) => {
            l.stage = s.to.clone();
            l.stage_reason = s.reason.clone();
            l.stage_entered_at = at;
            l.updated_at = at;
        }
        (Entity::Lead(l), E::LeadAssigned(a)) => {
            l.responsible = Some(a.to.clone());
            l.updated_at = at;
        }
        (Entity::Deal(d), E::DealUpdated(u)) => {
            for (k, v) in &u.changes {
                set_deal(d, k, v);
            }
            d.updated_at = at;
        }
        (Entity::Deal(d), E::DealStageChanged(s)) => {
            d.stage = s.to.clone();
            d.stage_reason = s.reason.clone();
            d.stage_entered_at = at;
            d.updated_at = at;
        }
        (Entity::Deal(d), E::DealAssigned(a)) => {
            d.responsible = Some(a.to.clone());
            d.updated_at = at;
        }
        (Entity::Contact(c), E::ContactUpdated(u)) => {
            for (k, v) in &u.changes {
                match k.as_str() {
                    "name" => c.name = text(v).unwrap_or_default(),
                    "phones" => c.phones = list(v),
                    "emails" => c.emails = list(v),
                    "company" => c.company = v.as_i64(),
                    "responsible" => c.responsible = text(v).map(EmployeeId),
                    _ => set_custom(&mut c.fields, k, v),
                }
            }
            c.updated_at = at;
        }
        (Entity::Company(c), E::CompanyUpdated(u)) => {
            for (k, v) in &u.changes {
                match k.as_str() {
                    "name" => c.name = text(v).unwrap_or_default(),
                    "inn" => c.inn = text(v),
                    "bank_account" => c.bank_account = text(v),
                    "bik" => c.bik = text(v),
                    "phones" => c.phones = list(v),
                    "emails" => c.emails = list(v),
                    "responsible" => c.responsible = text(v).map(EmployeeId),
                    _ => set_custom(&mut c.fields, k, v),
                }
            }
            c.updated_at = at;
        }
        (Entity::Task(t), E::TaskCompleted(c)) => {
            t.completed_at = Some(at);
            t.result = c.result.clone();
        }
        // The engine's bookkeeping (deadlines, notifications, journals) changes no field.
        _ => {}
    }
    // Every event of the stream counts towards its version, folded or not, so the version
    // always equals the stream's and optimistic concurrency compares one number.
    state.add_version(1);
    Some(state)
}

fn text(v: &Value) -> Option<String> {
    v.as_str().map(str::to_owned)
}

fn list(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

fn set_custom(fields: &mut BTreeMap<String, Value>, key: &str, v: &Value) {
    if v.is_null() {
        fields.remove(key);
    } else {
        fields.insert(key.to_owned(), v.clone());
    }
}

fn set_lead(l: &mut Lead, key: &str, v: &Value) {
    match key {
        "title" => l.title = text(v).unwrap_or_default(),
        "name" => l.name = text(v),
        "phones" => l.phones = list(v),
        "emails" => l.emails = list(v),
        "source" => l.source = text(v).unwrap_or_default(),
        "client_type" => l.client_type = v.as_str().and_then(|s| s.parse().ok()),
        "comment" => l.comment = text(v),
        "contact" => l.contact = v.as_i64(),
        "company" => l.company = v.as_i64(),
        _ => set_custom(&mut l.fields, key, v),
    }
}

fn set_deal(d: &mut Deal, key: &str, v: &Value) {
    match key {
        "title" => d.title = text(v).unwrap_or_default(),
        "amount" => d.amount = v.as_i64(),
        "contact" => d.contact = v.as_i64(),
        "company" => d.company = v.as_i64(),
        "lead" => d.lead = v.as_i64(),
        "comment" => d.comment = text(v),
        _ => set_custom(&mut d.fields, key, v),
    }
}

/// The value of a built-in or custom field of a lead, as JSON (`null` when empty), for
/// requirement checks and rule conditions.
pub fn lead_field(l: &Lead, key: &str) -> Value {
    match key {
        "title" => Value::from(l.title.clone()),
        "name" => l.name.clone().map_or(Value::Null, Value::from),
        "phone" | "phones" => l.phones.first().cloned().map_or(Value::Null, Value::from),
        "email" | "emails" => l.emails.first().cloned().map_or(Value::Null, Value::from),
        "source" => Value::from(l.source.clone()),
        "client_type" => l
            .client_type
            .map_or(Value::Null, |c| Value::from(c.as_str())),
        "responsible" => l
            .responsible
            .clone()
            .map_or(Value::Null, |e| Value::from(e.0)),
        "comment" => l.comment.clone().map_or(Value::Null, Value::from),
        "contact" => l.contact.map_or(Value::Null, Value::from),
        "company" => l.company.map_or(Value::Null, Value::from),
        other => l.fields.get(other).cloned().unwrap_or(Value::Null),
    }
}

/// The value of a built-in or custom field of a deal, as JSON (`null` when empty).
pub fn deal_field(d: &Deal, key: &str) -> Value {
    match key {
        "title" => Value::from(d.title.clone()),
        "amount" => d.amount.map_or(Value::Null, Value::from),
        "contact" => d.contact.map_or(Value::Null, Value::from),
        "company" => d.company.map_or(Value::Null, Value::from),
        "lead" => d.lead.map_or(Value::Null, Value::from),
        "responsible" => d
            .responsible
            .clone()
            .map_or(Value::Null, |e| Value::from(e.0)),
        "comment" => d.comment.clone().map_or(Value::Null, Value::from),
        other => d.fields.get(other).cloned().unwrap_or(Value::Null),
    }
}

/// Whether a field value counts as filled: not null, not empty text, not an empty list.
pub fn is_filled(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::String(s) => !s.trim().is_empty(),
        Value::Array(a) => !a.is_empty(),
        _ => true,
    }
}
