//! Decisions: a command, the current state of the entity it touches and the configuration go
//! in; the events to append, or a [`Rejection`] that names the problem, come out.
//!
//! All business validation lives here: unknown stages, forbidden transitions, fields required
//! by the target stage, field types, phones and e-mails, employees and team membership.

use crate::command::{
    Command, FieldInputs, NewCompany, NewContact, NewDeal, NewLead, NewTask, NewToken,
};
use crate::config::{Config, Pipeline, Requirement, Semantic, Stage, builtin_fields};
use crate::event::{self, Actor, Changes, ClientType, Event, TaskKind};
use crate::field::{self, normalize_email, normalize_phone, normalize_value};
use crate::ids::{EmployeeId, EntityKind, PipelineId, StageId, StreamId};
use crate::model::{self, Entity, is_filled};
use serde_json::Value;
use std::collections::BTreeMap;

/// Answers the questions a decision needs about other entities.
pub trait Lookup {
    /// Whether the entity exists.
    fn exists(&self, stream: StreamId) -> bool;

    /// The token named `name`: the one not revoked if there is one, else the newest revoked.
    fn token(&self, name: &str) -> Option<TokenState>;
    /// A webhook endpoint's stream version and state; `None` if there is no such endpoint (a
    /// backend without endpoints keeps this default).
    fn endpoint(&self, _stream: StreamId) -> Option<EndpointState> {
        None
    }
}

/// What a decision needs to know about an API token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenState {
    /// Its stream (`token-N`).
    pub stream: StreamId,
    /// The stream's version.
    pub version: i64,
    /// Whether it was revoked.
    pub revoked: bool,
}

/// What a decision about an endpoint needs to know of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EndpointState {
    /// Its stream's version.
    pub version: i64,
    /// Whether it was removed.
    pub removed: bool,
}

/// The longest timeline comment, in characters.
pub const MAX_COMMENT: usize = 10_000;

/// A business "no": the command was understood but cannot be carried out. Nothing is appended.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    #[error("{stream} does not exist")]
    NotFound { stream: StreamId },
    #[error("{stream} is a {actual}, not a {expected}")]
    WrongKind {
        stream: StreamId,
        expected: EntityKind,
        actual: EntityKind,
    },
    #[error("unknown pipeline '{pipeline}'; known {entity} pipelines: {known}")]
    UnknownPipeline {
        pipeline: PipelineId,
        entity: EntityKind,
        known: String,
    },
    #[error("unknown stage '{stage}' in pipeline '{pipeline}'; its stages are: {known}")]
    UnknownStage {
        pipeline: PipelineId,
        stage: StageId,
        known: String,
    },
    #[error("{stream} is already in stage '{stage}'")]
    AlreadyInStage { stream: StreamId, stage: StageId },
    #[error("{}: {why}", match from {
        Some(from) => format!("cannot move {stream} from '{from}' to '{to}'"),
        None => format!("cannot create {stream} in stage '{to}'"),
    })]
    ForbiddenTransition {
        stream: StreamId,
        /// The stage it is in; `None` when it is being created.
        from: Option<StageId>,
        to: StageId,
        why: String,
    },
    #[error("{subject} cannot enter stage '{stage}': missing required {}: {}", if missing.len() == 1 { "field" } else { "fields" }, missing.join(", "))]
    MissingRequired {
        subject: String,
        stage: StageId,
        missing: Vec<String>,
    },
    #[error("stage '{stage}' needs a reason, one of: {known}")]
    ReasonRequired { stage: StageId, known: String },
    #[error("unknown reason '{reason}' for stage '{stage}'; allowed: {known}")]
    UnknownReason {
        stage: StageId,
        reason: String,
        known: String,
    },
    #[error("stage '{stage}' takes no reason: only failure stages with reasons do")]
    UnexpectedReason { stage: StageId },
    #[error("unknown {entity} field '{field}'")]
    UnknownField { entity: EntityKind, field: String },
    #[error("field '{field}' cannot be changed this way: {hint}")]
    ReadOnlyField { field: String, hint: String },
    #[error("field '{field}': {message}")]
    InvalidValue { field: String, message: String },
    #[error("unknown source '{source_name}'; known sources: {known}")]
    UnknownSource { source_name: String, known: String },
    #[error("unknown employee '{employee}'")]
    UnknownEmployee { employee: EmployeeId },
    #[error("employee '{employee}' is inactive and cannot be given work")]
    InactiveEmployee { employee: EmployeeId },
    #[error("employee '{employee}' is not in team '{team}', which works pipeline '{pipeline}'")]
    NotInTeam {
        employee: EmployeeId,
        team: String,
        pipeline: PipelineId,
    },
    #[error("{stream} is already completed")]
    TaskAlreadyCompleted { stream: StreamId },
    #[error(
        "token name '{name}' must start with a lowercase letter or digit, go on with lowercase letters, digits, '_', '.' or '-', and be at most 64 characters"
    )]
    InvalidTokenName { name: String },
    #[error("a token named '{name}' exists already; revoke it first or choose another name")]
    TokenExists { name: String },
    #[error("unknown role '{role}'; the configuration defines: {known}")]
    UnknownRole { role: String, known: String },
    #[error("unknown token '{name}'; `leadflow token list` shows the tokens")]
    UnknownToken { name: String },
    #[error("token '{name}' is already revoked")]
    TokenAlreadyRevoked { name: String },
    #[error(
        "{stream} was converted (stage '{stage}'): the deal made from it links to it and the conversion counts in reports, so it cannot be deleted; delete the deal, or move the lead out of '{stage}' first"
    )]
    DeleteConverted { stream: StreamId, stage: StageId },
    #[error("{stream} was already removed")]
    EndpointRemoved { stream: StreamId },
}

/// The outcome of a successful decision: events for one stream.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    /// The stream to append to.
    pub stream: StreamId,
    /// The stream version the decision was made on (0 for a new entity).
    pub expected_version: i64,
    /// The events; empty when the command changes nothing.
    pub events: Vec<Event>,
}

/// Checks that an actor may act at all: employees, and the employees API tokens act for, must
/// exist in the config and be active.
pub fn check_actor(config: &Config, actor: &Actor) -> Result<(), Rejection> {
    match actor.employee() {
        Some(e) => match config.employee(e) {
            None => Err(Rejection::UnknownEmployee {
                employee: e.clone(),
            }),
            Some(emp) if !emp.active => Err(Rejection::InactiveEmployee {
                employee: e.clone(),
            }),
            Some(_) => Ok(()),
        },
        None => Ok(()),
    }
}

/// Decides a command.
///
/// `stream` is the command's target: the newly allocated stream for a create command, or the
/// existing entity's stream; `current` is that entity's state (`None` for a create).
pub fn decide(
    config: &Config,
    command: &Command,
    stream: StreamId,
    current: Option<&Entity>,
    lookup: &dyn Lookup,
) -> Result<Decision, Rejection> {
    let ctx = Ctx { config, lookup };
    let mut version = current.map_or(0, Entity::version);
    let events = match command {
        Command::CreateToken(new) => vec![ctx.create_token(new)?],
        Command::RevokeToken { name } => return ctx.revoke_token(name),
        Command::CreateLead(new) => vec![ctx.create_lead(stream, new)?],
        Command::CreateDeal(new) => vec![ctx.create_deal(stream, new)?],
        Command::CreateContact(new) => vec![ctx.create_contact(stream, new)?],
        Command::CreateCompany(new) => vec![ctx.create_company(stream, new)?],
        Command::CreateTask(new) => vec![ctx.create_task(stream, new)?],
        Command::UpdateLead { changes, .. } => {
            let lead = expect_lead(stream, current)?;
            // The whole lists, not `lead_field`'s first phone/e-mail: dropping the second is
            // a change.
            let changes = ctx.changes(EntityKind::Lead, changes, |k| match k {
                "phones" => Value::from(lead.phones.clone()),
                "emails" => Value::from(lead.emails.clone()),
                _ => model::lead_field(lead, k),
            })?;
            if changes.is_empty() {
                vec![]
            } else {
                vec![Event::LeadUpdated(event::Updated { changes })]
            }
        }
        Command::UpdateDeal { changes, .. } => {
            let deal = expect_deal(stream, current)?;
            let changes = ctx.changes(EntityKind::Deal, changes, |k| model::deal_field(deal, k))?;
            if changes.is_empty() {
                vec![]
            } else {
                vec![Event::DealUpdated(event::Updated { changes })]
            }
        }
        Command::UpdateContact { changes, .. } => {
            let Some(Entity::Contact(c)) = current else {
                return Err(missing(stream, current));
            };
            let changes = ctx.changes(EntityKind::Contact, changes, |k| contact_field(c, k))?;
            if changes.is_empty() {
                vec![]
            } else {
                vec![Event::ContactUpdated(event::Updated { changes })]
            }
        }
        Command::UpdateCompany { changes, .. } => {
            let Some(Entity::Company(c)) = current else {
                return Err(missing(stream, current));
            };
            let changes = ctx.company_changes(c, changes)?;
            if changes.is_empty() {
                vec![]
            } else {
                vec![Event::CompanyUpdated(event::Updated { changes })]
            }
        }
        Command::MoveLead { stage, reason, .. } => {
            let lead = expect_lead(stream, current)?;
            let pipeline = ctx.pipeline(&lead.pipeline, EntityKind::Lead)?;
            ctx.check_move(
                stream,
                pipeline,
                &lead.stage,
                stage,
                reason.as_deref(),
                |k| model::lead_field(lead, k),
            )?;
            vec![Event::LeadStageChanged(event::StageChanged {
                from: lead.stage.clone(),
                to: stage.clone(),
                reason: reason.clone(),
            })]
        }
        Command::MoveDeal { stage, reason, .. } => {
            let deal = expect_deal(stream, current)?;
            let pipeline = ctx.pipeline(&deal.pipeline, EntityKind::Deal)?;
            ctx.check_move(
                stream,
                pipeline,
                &deal.stage,
                stage,
                reason.as_deref(),
                |k| model::deal_field(deal, k),
            )?;
            vec![Event::DealStageChanged(event::StageChanged {
                from: deal.stage.clone(),
                to: stage.clone(),
                reason: reason.clone(),
            })]
        }
        Command::AssignLead { to, .. } => {
            let lead = expect_lead(stream, current)?;
            ctx.check_assignee(to, Some(&lead.pipeline))?;
            if lead.responsible.as_ref() == Some(to) {
                vec![]
            } else {
                vec![Event::LeadAssigned(event::Assigned {
                    from: lead.responsible.clone(),
                    to: to.clone(),
                })]
            }
        }
        Command::AssignDeal { to, .. } => {
            let deal = expect_deal(stream, current)?;
            ctx.check_assignee(to, Some(&deal.pipeline))?;
            if deal.responsible.as_ref() == Some(to) {
                vec![]
            } else {
                vec![Event::DealAssigned(event::Assigned {
                    from: deal.responsible.clone(),
                    to: to.clone(),
                })]
            }
        }
        // Deleting: a lead in a success stage of its pipeline (converted) is refused — its
        // deal's `lead` link and the conversion reports depend on it. Deals, contacts and
        // companies can always be deleted; links to them from other entities stay as ids
        // (as in Bitrix24), pointing at an entity that says it was deleted.
        Command::DeleteLead { reason, .. } => {
            let lead = expect_lead(stream, current)?;
            let pipeline = ctx.pipeline(&lead.pipeline, EntityKind::Lead)?;
            if pipeline
                .stage(&lead.stage)
                .is_some_and(|s| s.semantic == crate::config::Semantic::Success)
            {
                return Err(Rejection::DeleteConverted {
                    stream,
                    stage: lead.stage.clone(),
                });
            }
            vec![Event::LeadDeleted(event::Deleted {
                reason: reason.clone(),
            })]
        }
        Command::DeleteDeal { reason, .. } => {
            expect_deal(stream, current)?;
            vec![Event::DealDeleted(event::Deleted {
                reason: reason.clone(),
            })]
        }
        Command::DeleteContact { reason, .. } => {
            let Some(Entity::Contact(_)) = current else {
                return Err(missing(stream, current));
            };
            vec![Event::ContactDeleted(event::Deleted {
                reason: reason.clone(),
            })]
        }
        Command::DeleteCompany { reason, .. } => {
            let Some(Entity::Company(_)) = current else {
                return Err(missing(stream, current));
            };
            vec![Event::CompanyDeleted(event::Deleted {
                reason: reason.clone(),
            })]
        }
        Command::Comment { text, .. } => {
            let text = text.trim();
            if text.is_empty() {
                return Err(invalid("comment", "is empty".into()));
            }
            let chars = text.chars().count();
            if chars > MAX_COMMENT {
                return Err(invalid(
                    "comment",
                    format!("is {chars} characters long; at most {MAX_COMMENT}"),
                ));
            }
            let c = event::Commented {
                text: text.to_owned(),
            };
            match (stream.kind, current) {
                (EntityKind::Lead, Some(Entity::Lead(_))) => vec![Event::LeadCommented(c)],
                (EntityKind::Deal, Some(Entity::Deal(_))) => vec![Event::DealCommented(c)],
                (EntityKind::Contact, Some(Entity::Contact(_))) => {
                    vec![Event::ContactCommented(c)]
                }
                (EntityKind::Company, Some(Entity::Company(_))) => {
                    vec![Event::CompanyCommented(c)]
                }
                (
                    EntityKind::Lead | EntityKind::Deal | EntityKind::Contact | EntityKind::Company,
                    _,
                ) => {
                    return Err(missing(stream, current));
                }
                _ => {
                    return Err(invalid(
                        "comment",
                        format!("{stream}: comments go on leads, deals, contacts and companies"),
                    ));
                }
            }
        }
        Command::CompleteTask { result, .. } => {
            let Some(Entity::Task(t)) = current else {
                return Err(missing(stream, current));
            };
            if t.completed_at.is_some() {
                return Err(Rejection::TaskAlreadyCompleted { stream });
            }
            vec![Event::TaskCompleted(event::TaskCompleted {
                result: result.clone(),
            })]
        }
        Command::AddEndpoint(new) => vec![endpoint::add(new)?],
        Command::RemoveEndpoint { .. } => {
            let state = lookup
                .endpoint(stream)
                .ok_or(Rejection::NotFound { stream })?;
            if state.removed {
                return Err(Rejection::EndpointRemoved { stream });
            }
            version = state.version;
            vec![Event::EndpointRemoved(event::EndpointRemoved {})]
        }
    };
    Ok(Decision {
        stream,
        expected_version: version,
        events,
    })
}

/// Webhook endpoints: their URL, event patterns, format and secret checked.
mod endpoint {
    use super::{Rejection, invalid};
    use crate::command::NewEndpoint;
    use crate::event::{self, EndpointFormat, Event};

    /// The longest URL, pattern list and secret taken.
    const MAX_URL: usize = 2048;
    const MAX_PATTERNS: usize = 64;
    const MAX_SECRET: usize = 256;

    pub(super) fn add(new: &NewEndpoint) -> Result<Event, Rejection> {
        let url = new.url.trim();
        check_url(url)?;
        if new.events.is_empty() {
            return Err(invalid(
                "events",
                "give at least one event type or pattern, like 'lead.*'".into(),
            ));
        }
        if new.events.len() > MAX_PATTERNS {
            return Err(invalid(
                "events",
                format!("at most {MAX_PATTERNS} patterns, not {}", new.events.len()),
            ));
        }
        let mut events = Vec::new();
        for p in &new.events {
            let p = p.trim();
            check_pattern(p)?;
            if !events.iter().any(|e: &String| e == p) {
                events.push(p.to_owned());
            }
        }
        let format = match new.format.as_deref().map(str::trim) {
            None | Some("") => EndpointFormat::Native,
            Some(f) => f.parse().map_err(|m| invalid("format", m))?,
        };
        check_secret(&new.secret)?;
        Ok(Event::EndpointAdded(event::EndpointAdded {
            url: url.to_owned(),
            events,
            format,
            secret: new.secret.clone(),
        }))
    }

    fn check_url(url: &str) -> Result<(), Rejection> {
        let bad = |why: &str| invalid("url", format!("'{url}' {why}"));
        if url.len() > MAX_URL {
            return Err(invalid(
                "url",
                format!("the URL is longer than {MAX_URL} characters"),
            ));
        }
        let rest = url
            .strip_prefix("https://")
            .or_else(|| url.strip_prefix("http://"))
            .ok_or_else(|| bad("is not an http:// or https:// URL"))?;
        if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(bad("has spaces or control characters in it"));
        }
        let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
        let host = authority.rsplit('@').next().unwrap_or("");
        let host = match host.strip_prefix('[') {
            Some(v6) => v6.split(']').next().unwrap_or(""),
            None => host.split(':').next().unwrap_or(""),
        };
        if host.is_empty() {
            return Err(bad("has no host"));
        }
        if let Some(port) = authority.rsplit_once(':').map(|(_, p)| p)
            && !authority.ends_with(']')
            && !port.contains(']')
            && port.parse::<u16>().is_err()
        {
            return Err(bad("has a bad port"));
        }
        Ok(())
    }

    fn check_pattern(p: &str) -> Result<(), Rejection> {
        if p.is_empty()
            || !p
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._*".contains(&b))
        {
            return Err(invalid(
                "events",
                format!(
                    "'{p}' is not an event type or pattern like 'lead.*' (lowercase letters, digits, '.', '_' and '*')"
                ),
            ));
        }
        if !Event::TYPES
            .iter()
            .any(|(t, _)| event::deliverable(t) && event::type_matches(p, t))
        {
            let known: Vec<&str> = Event::TYPES
                .iter()
                .map(|(t, _)| *t)
                .filter(|t| event::deliverable(t))
                .collect();
            return Err(invalid(
                "events",
                format!(
                    "'{p}' matches no event type; known types: {}",
                    known.join(", ")
                ),
            ));
        }
        Ok(())
    }

    fn check_secret(secret: &str) -> Result<(), Rejection> {
        let bad = |why: &str| invalid("secret", why.into());
        if secret.len() < 16 {
            return Err(bad("the secret must be at least 16 characters long"));
        }
        if secret.len() > MAX_SECRET {
            return Err(bad("the secret must be at most 256 characters long"));
        }
        if secret.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(bad(
                "the secret must not contain spaces or control characters",
            ));
        }
        if let Some(b64) = secret.strip_prefix("whsec_")
            && !b64
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"+/=".contains(&b))
        {
            return Err(bad(
                "a secret starting with whsec_ must go on in base64 (A-Z, a-z, 0-9, +, /, =)",
            ));
        }
        Ok(())
    }
}

fn missing(stream: StreamId, current: Option<&Entity>) -> Rejection {
    match current {
        Some(e) => Rejection::WrongKind {
            stream,
            expected: stream.kind,
            actual: e.stream().kind,
        },
        None => Rejection::NotFound { stream },
    }
}

fn expect_lead(stream: StreamId, current: Option<&Entity>) -> Result<&model::Lead, Rejection> {
    match current {
        Some(Entity::Lead(l)) => Ok(l),
        other => Err(missing(stream, other)),
    }
}

fn expect_deal(stream: StreamId, current: Option<&Entity>) -> Result<&model::Deal, Rejection> {
    match current {
        Some(Entity::Deal(d)) => Ok(d),
        other => Err(missing(stream, other)),
    }
}

fn contact_field(c: &model::Contact, key: &str) -> Value {
    match key {
        "name" => Value::from(c.name.clone()),
        "phones" => Value::from(c.phones.clone()),
        "emails" => Value::from(c.emails.clone()),
        "company" => c.company.map_or(Value::Null, Value::from),
        "responsible" => c
            .responsible
            .clone()
            .map_or(Value::Null, |e| Value::from(e.0)),
        other => c.fields.get(other).cloned().unwrap_or(Value::Null),
    }
}

fn company_field(c: &model::Company, key: &str) -> Value {
    let opt = |o: &Option<String>| o.clone().map_or(Value::Null, Value::from);
    match key {
        "name" => Value::from(c.name.clone()),
        "inn" => opt(&c.inn),
        "bank_account" => opt(&c.bank_account),
        "bik" => opt(&c.bik),
        "phones" => Value::from(c.phones.clone()),
        "emails" => Value::from(c.emails.clone()),
        "responsible" => c
            .responsible
            .clone()
            .map_or(Value::Null, |e| Value::from(e.0)),
        other => c.fields.get(other).cloned().unwrap_or(Value::Null),
    }
}

struct Ctx<'a> {
    config: &'a Config,
    lookup: &'a dyn Lookup,
}

/// Whether `s` is a token name: `[a-z0-9][a-z0-9_.-]*`, at most 64 characters.
pub fn valid_token_name(s: &str) -> bool {
    let mut bytes = s.bytes();
    s.len() <= 64
        && bytes
            .next()
            .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        && bytes.all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"_.-".contains(&b))
}

/// Tokens (issue 10, access).
impl Ctx<'_> {
    fn create_token(&self, new: &NewToken) -> Result<Event, Rejection> {
        if !valid_token_name(&new.name) {
            return Err(Rejection::InvalidTokenName {
                name: new.name.clone(),
            });
        }
        if self.lookup.token(&new.name).is_some_and(|t| !t.revoked) {
            return Err(Rejection::TokenExists {
                name: new.name.clone(),
            });
        }
        if self.config.access.role(&new.role).is_none() {
            return Err(Rejection::UnknownRole {
                role: new.role.clone(),
                known: self.config.access.role_names(),
            });
        }
        if let Some(e) = &new.employee {
            self.check_assignee(e, None)?;
        }
        let hex = |s: &str| {
            s.len() == 64
                && s.bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        };
        if !hex(&new.secret_hash) {
            return Err(invalid(
                "secret_hash",
                "must be the SHA-256 of the secret, 64 lowercase hex digits".into(),
            ));
        }
        Ok(Event::TokenCreated(event::TokenCreated {
            name: new.name.clone(),
            role: new.role.clone(),
            employee: new.employee.clone(),
            secret_hash: new.secret_hash.clone(),
            note: non_empty(new.note.as_deref()),
        }))
    }

    fn revoke_token(&self, name: &str) -> Result<Decision, Rejection> {
        match self.lookup.token(name) {
            None => Err(Rejection::UnknownToken {
                name: name.to_owned(),
            }),
            Some(t) if t.revoked => Err(Rejection::TokenAlreadyRevoked {
                name: name.to_owned(),
            }),
            Some(t) => Ok(Decision {
                stream: t.stream,
                expected_version: t.version,
                events: vec![Event::TokenRevoked(event::TokenRevoked {
                    name: name.to_owned(),
                })],
            }),
        }
    }
}

fn invalid(field: &str, message: String) -> Rejection {
    Rejection::InvalidValue {
        field: field.to_owned(),
        message,
    }
}

impl Ctx<'_> {
    fn pipeline(&self, id: &PipelineId, entity: EntityKind) -> Result<&Pipeline, Rejection> {
        match self.config.pipeline(id) {
            Some(p) if p.entity == entity => Ok(p),
            _ => Err(Rejection::UnknownPipeline {
                pipeline: id.clone(),
                entity,
                known: self
                    .config
                    .pipelines
                    .iter()
                    .filter(|p| p.entity == entity)
                    .map(|p| p.id.to_string())
                    .collect::<Vec<_>>()
                    .join(", "),
            }),
        }
    }

    fn stage<'p>(&self, pipeline: &'p Pipeline, id: &StageId) -> Result<&'p Stage, Rejection> {
        pipeline.stage(id).ok_or_else(|| Rejection::UnknownStage {
            pipeline: pipeline.id.clone(),
            stage: id.clone(),
            known: pipeline
                .stages
                .iter()
                .map(|s| s.id.to_string())
                .collect::<Vec<_>>()
                .join(", "),
        })
    }

    fn reference(&self, kind: EntityKind, id: Option<i64>) -> Result<Option<i64>, Rejection> {
        if let Some(id) = id {
            let stream = StreamId::new(kind, id);
            if id <= 0 || !self.lookup.exists(stream) {
                return Err(Rejection::NotFound { stream });
            }
        }
        Ok(id)
    }

    fn check_assignee(
        &self,
        who: &EmployeeId,
        pipeline: Option<&PipelineId>,
    ) -> Result<(), Rejection> {
        let Some(emp) = self.config.employee(who) else {
            return Err(Rejection::UnknownEmployee {
                employee: who.clone(),
            });
        };
        if !emp.active {
            return Err(Rejection::InactiveEmployee {
                employee: who.clone(),
            });
        }
        if let Some(p) = pipeline
            && let Some(team) = self.config.team_of_pipeline(p)
            && emp.team.as_ref() != Some(&team.id)
            && team.manager.as_ref() != Some(who)
        {
            return Err(Rejection::NotInTeam {
                employee: who.clone(),
                team: team.id.to_string(),
                pipeline: p.clone(),
            });
        }
        Ok(())
    }

    fn phones(&self, field: &str, raw: &[String]) -> Result<Vec<String>, Rejection> {
        let mut out: Vec<String> = Vec::with_capacity(raw.len());
        for p in raw {
            let n = normalize_phone(p).map_err(|m| invalid(field, m))?;
            if !out.contains(&n) {
                out.push(n);
            }
        }
        Ok(out)
    }

    fn emails(&self, field: &str, raw: &[String]) -> Result<Vec<String>, Rejection> {
        let mut out: Vec<String> = Vec::with_capacity(raw.len());
        for e in raw {
            let n = normalize_email(e).map_err(|m| invalid(field, m))?;
            if !out.contains(&n) {
                out.push(n);
            }
        }
        Ok(out)
    }

    fn custom_fields(
        &self,
        entity: EntityKind,
        raw: &FieldInputs,
    ) -> Result<BTreeMap<String, Value>, Rejection> {
        let mut out = BTreeMap::new();
        for (k, v) in raw {
            let def = self
                .config
                .field(entity, k)
                .ok_or_else(|| Rejection::UnknownField {
                    entity,
                    field: k.clone(),
                })?;
            if v.is_null() {
                continue;
            }
            let value = normalize_value(def.ty, &def.options, v).map_err(|m| invalid(k, m))?;
            out.insert(k.clone(), value);
        }
        Ok(out)
    }

    fn source(&self, raw: Option<&str>) -> Result<String, Rejection> {
        let s = raw.unwrap_or("manual");
        if self.config.sources.iter().any(|k| k == s) {
            Ok(s.to_owned())
        } else {
            Err(Rejection::UnknownSource {
                source_name: s.to_owned(),
                known: self.config.sources.join(", "),
            })
        }
    }

    /// Checks that `stage` may be entered, given a way to read the entity's field values.
    fn check_requirements(
        &self,
        subject: String,
        stage: &Stage,
        value_of: &dyn Fn(&str) -> Value,
    ) -> Result<(), Rejection> {
        let mut missing = Vec::new();
        let mut need = |r: &Requirement| {
            if !r.any_of.iter().any(|f| is_filled(&value_of(f))) {
                missing.push(r.to_string());
            }
        };
        stage.required.iter().for_each(&mut need);
        for cond in &stage.required_when {
            let v = value_of(&cond.field);
            let matches = match &v {
                Value::String(s) => s == &cond.equals,
                Value::Null => false,
                other => serde_json::from_str::<Value>(&cond.equals).ok().as_ref() == Some(other),
            };
            if matches {
                cond.required.iter().for_each(&mut need);
            }
        }
        if missing.is_empty() {
            Ok(())
        } else {
            Err(Rejection::MissingRequired {
                subject,
                stage: stage.id.clone(),
                missing,
            })
        }
    }

    fn check_move(
        &self,
        stream: StreamId,
        pipeline: &Pipeline,
        from: &StageId,
        to: &StageId,
        reason: Option<&str>,
        value_of: impl Fn(&str) -> Value,
    ) -> Result<(), Rejection> {
        let target = self.stage(pipeline, to)?;
        if from == to {
            return Err(Rejection::AlreadyInStage {
                stream,
                stage: to.clone(),
            });
        }
        let forbid = |why: String| Rejection::ForbiddenTransition {
            stream,
            from: Some(from.clone()),
            to: to.clone(),
            why,
        };
        if let Some(current) = pipeline.stage(from)
            && current.semantic == Semantic::Success
        {
            return Err(forbid(format!(
                "'{from}' is a success stage and closes the {}",
                stream.kind
            )));
        }
        if let Some(allowed) = &target.from
            && !allowed.contains(from)
        {
            let list = allowed
                .iter()
                .map(|s| s.to_string())
                .collect::<Vec<_>>()
                .join(", ");
            return Err(forbid(format!("'{to}' can be entered only from {list}")));
        }
        self.check_reason(target, reason)?;
        self.check_requirements(stream.to_string(), target, &value_of)
    }

    fn check_reason(&self, stage: &Stage, reason: Option<&str>) -> Result<(), Rejection> {
        let known = || stage.reasons.join(", ");
        match reason {
            None if !stage.reasons.is_empty() => Err(Rejection::ReasonRequired {
                stage: stage.id.clone(),
                known: known(),
            }),
            Some(r) if stage.reasons.is_empty() && stage.semantic != Semantic::Failure => {
                let _ = r;
                Err(Rejection::UnexpectedReason {
                    stage: stage.id.clone(),
                })
            }
            Some(r) if !stage.reasons.is_empty() && !stage.reasons.iter().any(|k| k == r) => {
                Err(Rejection::UnknownReason {
                    stage: stage.id.clone(),
                    reason: r.to_owned(),
                    known: known(),
                })
            }
            _ => Ok(()),
        }
    }

    fn initial_stage<'p>(
        &self,
        stream: StreamId,
        pipeline: &'p Pipeline,
        stage: Option<&StageId>,
    ) -> Result<&'p Stage, Rejection> {
        match stage {
            None => Ok(pipeline.first_stage()),
            Some(id) => {
                let s = self.stage(pipeline, id)?;
                if s.semantic != Semantic::InProgress {
                    return Err(Rejection::ForbiddenTransition {
                        stream,
                        from: None,
                        to: id.clone(),
                        why: format!(
                            "a new item cannot start in a closing stage; create it in '{}' and move it",
                            pipeline.first_stage().id
                        ),
                    });
                }
                Ok(s)
            }
        }
    }

    fn create_lead(&self, stream: StreamId, new: &NewLead) -> Result<Event, Rejection> {
        let pipeline = self.config.lead_pipeline();
        let stage = self.initial_stage(stream, pipeline, new.stage.as_ref())?;
        let phones = self.phones("phone", &new.phones)?;
        let emails = self.emails("email", &new.emails)?;
        let client_type = match &new.client_type {
            Some(c) => Some(
                c.parse::<ClientType>()
                    .map_err(|m| invalid("client_type", m))?,
            ),
            None => None,
        };
        if let Some(r) = &new.responsible {
            self.check_assignee(r, Some(&pipeline.id))?;
        }
        let fields = self.custom_fields(EntityKind::Lead, &new.fields)?;
        let name = non_empty(new.name.as_deref());
        let title = non_empty(new.title.as_deref())
            .or_else(|| name.clone())
            .or_else(|| phones.first().cloned())
            .or_else(|| emails.first().cloned())
            .unwrap_or_else(|| format!("Lead #{}", stream.id));
        let created = event::LeadCreated {
            id: stream.id,
            title,
            name,
            phones,
            emails,
            source: self.source(new.source.as_deref())?,
            client_type,
            responsible: new.responsible.clone(),
            pipeline: pipeline.id.clone(),
            stage: stage.id.clone(),
            fields,
            comment: non_empty(new.comment.as_deref()),
            contact: self.reference(EntityKind::Contact, new.contact)?,
            company: self.reference(EntityKind::Company, new.company)?,
        };
        let event = Event::LeadCreated(created);
        let state = model::apply(None, &event, chrono::DateTime::UNIX_EPOCH);
        if let Some(Entity::Lead(l)) = &state {
            self.check_requirements(stream.to_string(), stage, &|k| model::lead_field(l, k))?;
        }
        Ok(event)
    }

    fn create_deal(&self, stream: StreamId, new: &NewDeal) -> Result<Event, Rejection> {
        let pipeline =
            match &new.pipeline {
                Some(p) => self.pipeline(p, EntityKind::Deal)?,
                None => self.config.default_deal_pipeline().ok_or_else(|| {
                    Rejection::UnknownPipeline {
                        pipeline: PipelineId("(default)".into()),
                        entity: EntityKind::Deal,
                        known: String::new(),
                    }
                })?,
            };
        let stage = self.initial_stage(stream, pipeline, new.stage.as_ref())?;
        if let Some(r) = &new.responsible {
            self.check_assignee(r, Some(&pipeline.id))?;
        }
        let amount = match &new.amount {
            Some(v) if !v.is_null() => Some(self.amount(v)?),
            _ => None,
        };
        let title = non_empty(Some(&new.title))
            .ok_or_else(|| invalid("title", "a deal needs a title".into()))?;
        let event = Event::DealCreated(event::DealCreated {
            id: stream.id,
            title,
            pipeline: pipeline.id.clone(),
            stage: stage.id.clone(),
            amount,
            currency: self.config.currency.clone(),
            responsible: new.responsible.clone(),
            contact: self.reference(EntityKind::Contact, new.contact)?,
            company: self.reference(EntityKind::Company, new.company)?,
            lead: self.reference(EntityKind::Lead, new.lead)?,
            fields: self.custom_fields(EntityKind::Deal, &new.fields)?,
            comment: non_empty(new.comment.as_deref()),
        });
        if let Some(Entity::Deal(d)) = model::apply(None, &event, chrono::DateTime::UNIX_EPOCH) {
            self.check_requirements(stream.to_string(), stage, &|k| model::deal_field(&d, k))?;
        }
        Ok(event)
    }

    fn amount(&self, v: &Value) -> Result<i64, Rejection> {
        let minor =
            normalize_value(field::FieldType::Money, &[], v).map_err(|m| invalid("amount", m))?;
        match minor.as_i64() {
            Some(a) if a >= 0 => Ok(a),
            _ => Err(invalid("amount", format!("must not be negative, got {v}"))),
        }
    }

    fn create_contact(&self, stream: StreamId, new: &NewContact) -> Result<Event, Rejection> {
        let name = non_empty(Some(&new.name))
            .ok_or_else(|| invalid("name", "a contact needs a name".into()))?;
        if let Some(r) = &new.responsible {
            self.check_assignee(r, None)?;
        }
        Ok(Event::ContactCreated(event::ContactCreated {
            id: stream.id,
            name,
            phones: self.phones("phone", &new.phones)?,
            emails: self.emails("email", &new.emails)?,
            company: self.reference(EntityKind::Company, new.company)?,
            responsible: new.responsible.clone(),
            fields: self.custom_fields(EntityKind::Contact, &new.fields)?,
        }))
    }

    fn create_company(&self, stream: StreamId, new: &NewCompany) -> Result<Event, Rejection> {
        let name = non_empty(Some(&new.name))
            .ok_or_else(|| invalid("name", "a company needs a name".into()))?;
        if let Some(r) = &new.responsible {
            self.check_assignee(r, None)?;
        }
        let inn = match non_empty(new.inn.as_deref()) {
            Some(i) => Some(field::validate_inn(&i).map_err(|m| invalid("inn", m))?),
            None => None,
        };
        let bik = match non_empty(new.bik.as_deref()) {
            Some(b) => Some(field::validate_bik(&b).map_err(|m| invalid("bik", m))?),
            None => None,
        };
        let bank_account = match (non_empty(new.bank_account.as_deref()), &bik) {
            (Some(a), Some(b)) => {
                Some(field::validate_bank_account(&a, b).map_err(|m| invalid("bank_account", m))?)
            }
            (Some(_), None) => {
                return Err(invalid(
                    "bank_account",
                    "a bank account needs the bank's BIK".into(),
                ));
            }
            (None, _) => None,
        };
        Ok(Event::CompanyCreated(event::CompanyCreated {
            id: stream.id,
            name,
            inn,
            bank_account,
            bik,
            phones: self.phones("phone", &new.phones)?,
            emails: self.emails("email", &new.emails)?,
            responsible: new.responsible.clone(),
            fields: self.custom_fields(EntityKind::Company, &new.fields)?,
        }))
    }

    fn create_task(&self, stream: StreamId, new: &NewTask) -> Result<Event, Rejection> {
        let kind: TaskKind = new.kind.parse().map_err(|m| invalid("kind", m))?;
        let title = non_empty(Some(&new.title))
            .ok_or_else(|| invalid("title", "a task needs a title".into()))?;
        self.check_assignee(&new.assignee, None)?;
        Ok(Event::TaskCreated(event::TaskCreated {
            id: stream.id,
            kind,
            title,
            assignee: new.assignee.clone(),
            // The log keeps times to the microsecond; so does the decision.
            due_at: chrono::SubsecRound::trunc_subsecs(new.due_at, 6),
            lead: self.reference(EntityKind::Lead, new.lead)?,
            deal: self.reference(EntityKind::Deal, new.deal)?,
        }))
    }

    /// Normalises raw changes to a lead, deal or contact and keeps only those that differ from
    /// the current values.
    fn changes(
        &self,
        entity: EntityKind,
        raw: &FieldInputs,
        current: impl Fn(&str) -> Value,
    ) -> Result<Changes, Rejection> {
        let mut out = Changes::new();
        for (k, v) in raw {
            let value = match k.as_str() {
                "responsible" => {
                    return Err(Rejection::ReadOnlyField {
                        field: k.clone(),
                        hint: format!("use `{entity} assign`"),
                    });
                }
                "stage" | "pipeline" => {
                    return Err(Rejection::ReadOnlyField {
                        field: k.clone(),
                        hint: format!("use `{entity} move`"),
                    });
                }
                "phones" | "phone" => Value::from(self.phones("phone", &string_list(k, v)?)?),
                "emails" | "email" => Value::from(self.emails("email", &string_list(k, v)?)?),
                // A lead's contact name may be cleared; every other title or name must stay.
                "name" if entity == EntityKind::Lead && v.is_null() => Value::Null,
                "title" | "name" => match v.as_str().map(str::trim) {
                    Some(t) if !t.is_empty() => Value::from(t),
                    _ => return Err(invalid(k, "must not be empty".into())),
                },
                "comment" => match v.as_str().map(str::trim) {
                    Some(t) if !t.is_empty() => Value::from(t),
                    _ => Value::Null,
                },
                "source" if entity == EntityKind::Lead => Value::from(self.source(v.as_str())?),
                "client_type" if entity == EntityKind::Lead => match v.as_str() {
                    Some(s) => {
                        Value::from(s.parse::<ClientType>().map_err(|m| invalid(k, m))?.as_str())
                    }
                    None if v.is_null() => Value::Null,
                    None => return Err(invalid(k, "expected individual or legal".into())),
                },
                "contact" | "company" | "lead" => {
                    let kind: EntityKind = k.parse().expect("literal kinds");
                    match parse_id(k, v)? {
                        Some(id) => Value::from(self.reference(kind, Some(id))?.expect("some")),
                        None => Value::Null,
                    }
                }
                "amount" if entity == EntityKind::Deal => {
                    if v.is_null() {
                        Value::Null
                    } else {
                        Value::from(self.amount(v)?)
                    }
                }
                other if builtin_fields(entity).contains(&other) => {
                    return Err(Rejection::ReadOnlyField {
                        field: k.clone(),
                        hint: "it is set by the engine".into(),
                    });
                }
                other => {
                    let def = self.config.field(entity, other).ok_or_else(|| {
                        Rejection::UnknownField {
                            entity,
                            field: k.clone(),
                        }
                    })?;
                    if v.is_null() {
                        Value::Null
                    } else {
                        normalize_value(def.ty, &def.options, v).map_err(|m| invalid(k, m))?
                    }
                }
            };
            let key = match k.as_str() {
                "phone" => "phones",
                "email" => "emails",
                other => other,
            };
            let now = match key {
                "phones" | "emails" => current_list(&current, key),
                _ => current(key),
            };
            if now != value {
                out.insert(key.to_owned(), value);
            }
        }
        Ok(out)
    }

    fn company_changes(&self, c: &model::Company, raw: &FieldInputs) -> Result<Changes, Rejection> {
        let mut out = Changes::new();
        let mut rest = FieldInputs::new();
        let bik_after = match raw.get("bik") {
            Some(Value::Null) => None,
            Some(v) => Some(
                field::validate_bik(v.as_str().unwrap_or_default())
                    .map_err(|m| invalid("bik", m))?,
            ),
            None => c.bik.clone(),
        };
        for (k, v) in raw {
            let value = match k.as_str() {
                "inn" if !v.is_null() => Value::from(
                    field::validate_inn(v.as_str().unwrap_or_default())
                        .map_err(|m| invalid("inn", m))?,
                ),
                "bik" => bik_after.clone().map_or(Value::Null, Value::from),
                "bank_account" if !v.is_null() => {
                    let Some(bik) = &bik_after else {
                        return Err(invalid(
                            "bank_account",
                            "a bank account needs the bank's BIK".into(),
                        ));
                    };
                    Value::from(
                        field::validate_bank_account(v.as_str().unwrap_or_default(), bik)
                            .map_err(|m| invalid("bank_account", m))?,
                    )
                }
                "inn" | "bank_account" => Value::Null,
                _ => {
                    rest.insert(k.clone(), v.clone());
                    continue;
                }
            };
            if company_field(c, k) != value {
                out.insert(k.clone(), value);
            }
        }
        out.extend(self.changes(EntityKind::Company, &rest, |k| company_field(c, k))?);
        Ok(out)
    }
}

fn current_list(current: &impl Fn(&str) -> Value, key: &str) -> Value {
    match current(key) {
        Value::Array(a) => Value::Array(a),
        Value::Null => Value::Array(vec![]),
        single => Value::Array(vec![single]),
    }
}

fn string_list(field: &str, v: &Value) -> Result<Vec<String>, Rejection> {
    match v {
        Value::Null => Ok(vec![]),
        Value::String(s) => Ok(s
            .split([';', ','])
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(String::from)
            .collect()),
        Value::Array(items) => items
            .iter()
            .map(|i| {
                i.as_str()
                    .map(String::from)
                    .ok_or_else(|| invalid(field, format!("expected text, got {i}")))
            })
            .collect(),
        other => Err(invalid(field, format!("expected text, got {other}"))),
    }
}

fn parse_id(field: &str, v: &Value) -> Result<Option<i64>, Rejection> {
    match v {
        Value::Null => Ok(None),
        Value::Number(n) => n
            .as_i64()
            .map(Some)
            .ok_or_else(|| invalid(field, format!("expected an id, got {n}"))),
        Value::String(s) => {
            let digits = s.rsplit('-').next().unwrap_or(s);
            digits
                .trim()
                .parse()
                .map(Some)
                .map_err(|_| invalid(field, format!("expected an id like 42, got '{s}'")))
        }
        other => Err(invalid(field, format!("expected an id, got {other}"))),
    }
}

fn non_empty(s: Option<&str>) -> Option<String> {
    s.map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}
