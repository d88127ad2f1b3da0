//! Commands: what a person, an import or (later) a robot asks the engine to do. Values arrive
//! raw, as typed on the command line or found in a CSV cell; [`crate::decide`] checks and
//! normalises them.

use crate::ids::{EmployeeId, EntityKind, PipelineId, StageId, StreamId};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;

/// Raw field values by built-in name or custom field id; `null` clears a field.
pub type FieldInputs = BTreeMap<String, Value>;

/// A new lead.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewLead {
    #[serde(default)]
    pub title: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub phones: Vec<String>,
    #[serde(default)]
    pub emails: Vec<String>,
    #[serde(default)]
    pub source: Option<String>,
    #[serde(default)]
    pub client_type: Option<String>,
    #[serde(default)]
    pub responsible: Option<EmployeeId>,
    #[serde(default)]
    pub stage: Option<StageId>,
    #[serde(default)]
    pub fields: FieldInputs,
    #[serde(default)]
    pub comment: Option<String>,
    #[serde(default)]
    pub contact: Option<i64>,
    #[serde(default)]
    pub company: Option<i64>,
}

/// A new deal.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewDeal {
    pub title: String,
    #[serde(default)]
    pub pipeline: Option<PipelineId>,
    #[serde(default)]
    pub stage: Option<StageId>,
    /// Raw amount, e.g. `"125000.50"`.
    #[serde(default)]
    pub amount: Option<Value>,
    #[serde(default)]
    pub responsible: Option<EmployeeId>,
    #[serde(default)]
    pub contact: Option<i64>,
    #[serde(default)]
    pub company: Option<i64>,
    #[serde(default)]
    pub lead: Option<i64>,
    #[serde(default)]
    pub fields: FieldInputs,
    #[serde(default)]
    pub comment: Option<String>,
}

/// A new contact.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewContact {
    pub name: String,
    #[serde(default)]
    pub phones: Vec<String>,
    #[serde(default)]
    pub emails: Vec<String>,
    #[serde(default)]
    pub company: Option<i64>,
    #[serde(default)]
    pub responsible: Option<EmployeeId>,
    #[serde(default)]
    pub fields: FieldInputs,
}

/// A new company.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewCompany {
    pub name: String,
    #[serde(default)]
    pub inn: Option<String>,
    #[serde(default)]
    pub bank_account: Option<String>,
    #[serde(default)]
    pub bik: Option<String>,
    #[serde(default)]
    pub phones: Vec<String>,
    #[serde(default)]
    pub emails: Vec<String>,
    #[serde(default)]
    pub responsible: Option<EmployeeId>,
    #[serde(default)]
    pub fields: FieldInputs,
}

/// A new task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewTask {
    /// `call`, `email`, `meeting`, `send_offer` or `other`.
    pub kind: String,
    pub title: String,
    pub assignee: EmployeeId,
    pub due_at: chrono::DateTime<chrono::Utc>,
    #[serde(default)]
    pub lead: Option<i64>,
    #[serde(default)]
    pub deal: Option<i64>,
}

/// A new API token. The caller makes the secret (the engine has no randomness) and passes
/// only its hash; the secret never reaches the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewToken {
    /// `[a-z0-9][a-z0-9_.-]*`, at most 64 characters; unique among tokens not revoked.
    pub name: String,
    /// A role of the configuration.
    pub role: String,
    /// The employee it acts for, if any.
    pub employee: Option<EmployeeId>,
    /// SHA-256 of the secret, lowercase hex.
    pub secret_hash: String,
    /// What it is for.
    pub note: Option<String>,
}

/// A new webhook endpoint (a subscription to events).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewEndpoint {
    /// Where to POST: an `http://` or `https://` URL.
    pub url: String,
    /// Glob patterns over event types: `lead.*`, `deal.stage_changed`, `*`.
    pub events: Vec<String>,
    /// `native` (the default) or `bitrix24`.
    #[serde(default)]
    pub format: Option<String>,
    /// The signing secret; the caller makes one (`whsec_` and base64) when the user gives none.
    pub secret: String,
}

/// Everything the engine can be asked to do.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    CreateLead(NewLead),
    UpdateLead {
        id: i64,
        changes: FieldInputs,
    },
    MoveLead {
        id: i64,
        stage: StageId,
        reason: Option<String>,
    },
    AssignLead {
        id: i64,
        to: EmployeeId,
    },
    CreateDeal(NewDeal),
    UpdateDeal {
        id: i64,
        changes: FieldInputs,
    },
    MoveDeal {
        id: i64,
        stage: StageId,
        reason: Option<String>,
    },
    AssignDeal {
        id: i64,
        to: EmployeeId,
    },
    CreateContact(NewContact),
    UpdateContact {
        id: i64,
        changes: FieldInputs,
    },
    CreateCompany(NewCompany),
    UpdateCompany {
        id: i64,
        changes: FieldInputs,
    },
    CreateTask(NewTask),
    CompleteTask {
        id: i64,
        result: Option<String>,
    },
    /// Makes an API token (issue 10, access).
    CreateToken(NewToken),
    /// Revokes the API token of this name.
    RevokeToken {
        name: String,
    },
    /// Deletes a lead; a converted one is refused (see `decide`).
    DeleteLead {
        id: i64,
        reason: Option<String>,
    },
    /// Deletes a deal.
    DeleteDeal {
        id: i64,
        reason: Option<String>,
    },
    /// Deletes a contact.
    DeleteContact {
        id: i64,
        reason: Option<String>,
    },
    /// Deletes a company.
    DeleteCompany {
        id: i64,
        reason: Option<String>,
    },
    /// Puts a comment on the timeline of a lead, deal, contact or company.
    Comment {
        /// The record.
        stream: StreamId,
        /// The comment (at most [`crate::decide::MAX_COMMENT`] characters).
        text: String,
    },
    /// Adds a webhook endpoint (`endpoint-N`).
    AddEndpoint(NewEndpoint),
    /// Removes a webhook endpoint.
    RemoveEndpoint {
        id: i64,
    },
}

/// Where a command's events go: a new entity of a kind (its id allocated by the caller), an
/// existing stream, or a token known by its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target<'a> {
    /// A create command: the caller allocates the next id of this kind.
    New(EntityKind),
    /// A command on an existing entity.
    Existing(StreamId),
    /// A command on the token of this name: the caller finds its stream with
    /// [`crate::Lookup::token`] and passes no entity state; for a name it does not find it
    /// passes the stream a new token would get, and `decide` rejects the command.
    Token(&'a str),
}

impl Command {
    /// The stream this command writes to.
    pub fn target(&self) -> Target<'_> {
        use Command as C;
        use EntityKind as K;
        let existing = |kind, id| Target::Existing(StreamId::new(kind, id));
        match self {
            C::CreateLead(_) => Target::New(K::Lead),
            C::CreateDeal(_) => Target::New(K::Deal),
            C::CreateContact(_) => Target::New(K::Contact),
            C::CreateCompany(_) => Target::New(K::Company),
            C::CreateTask(_) => Target::New(K::Task),
            C::UpdateLead { id, .. } | C::MoveLead { id, .. } | C::AssignLead { id, .. } => {
                existing(K::Lead, *id)
            }
            C::UpdateDeal { id, .. } | C::MoveDeal { id, .. } | C::AssignDeal { id, .. } => {
                existing(K::Deal, *id)
            }
            C::UpdateContact { id, .. } => existing(K::Contact, *id),
            C::UpdateCompany { id, .. } => existing(K::Company, *id),
            C::DeleteLead { id, .. } => existing(K::Lead, *id),
            C::DeleteDeal { id, .. } => existing(K::Deal, *id),
            C::DeleteContact { id, .. } => existing(K::Contact, *id),
            C::DeleteCompany { id, .. } => existing(K::Company, *id),
            C::Comment { stream, .. } => Target::Existing(*stream),
            C::CompleteTask { id, .. } => existing(K::Task, *id),
            C::CreateToken(_) => Target::New(K::Token),
            C::RevokeToken { name } => Target::Token(name),
            C::AddEndpoint(_) => Target::New(K::Endpoint),
            C::RemoveEndpoint { id } => existing(K::Endpoint, *id),
        }
    }
}
