//! The one way the rules and robots reach stored state: a read-only [`View`], the write
//! [`Workspace`] of one transaction, and the [`Backend`] that opens transactions.
//!
//! The engine defines the traits; the store implements them (SQLite's `Tx` and `Store`, and a
//! PostgreSQL backend later), tests can use an in-memory implementation. Everything a
//! reaction or a robot reads is one named method here, so a backend implements a list, not
//! a query language.

use crate::clock::Clock;
use crate::command::Command;
use crate::config::Config;
use crate::decide::Rejection;
use crate::event::{Event, EventMeta};
use crate::ids::{EmployeeId, EntityKind, StreamId};
use crate::model::Entity;
use crate::stored::{Appended, Executed, PendingRequest, PendingTimer, RecordedEvent, StoredError};
use chrono::{DateTime, Utc};
use std::collections::HashMap;

/// A failure of the backend (I/O, a broken log, a lost lock): whatever the transaction did is
/// rolled back, and the caller stops. The backend's own error is inside, for the edge to name
/// (see [`BackendError::downcast_ref`]).
#[derive(Debug)]
pub struct BackendError(Box<dyn std::error::Error + Send + Sync + 'static>);

impl BackendError {
    /// Wraps a backend's error.
    pub fn new(e: impl std::error::Error + Send + Sync + 'static) -> BackendError {
        BackendError(Box::new(e))
    }

    /// The backend's error, if it is an `E`.
    pub fn downcast_ref<E: std::error::Error + 'static>(&self) -> Option<&E> {
        self.0.downcast_ref()
    }

    /// The backend's error, boxed.
    pub fn into_inner(self) -> Box<dyn std::error::Error + Send + Sync + 'static> {
        self.0
    }
}

impl std::fmt::Display for BackendError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for BackendError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.0.source()
    }
}

/// Why a workspace could not do what it was asked.
#[derive(Debug, thiserror::Error)]
pub enum WorkspaceError {
    /// The engine refused a command (a business rule).
    #[error("{0}")]
    Rejected(Rejection),
    /// The backend failed.
    #[error(transparent)]
    Backend(BackendError),
}

impl From<StoredError> for WorkspaceError {
    fn from(e: StoredError) -> Self {
        WorkspaceError::Backend(BackendError::new(e))
    }
}

impl From<Rejection> for WorkspaceError {
    fn from(r: Rejection) -> Self {
        WorkspaceError::Rejected(r)
    }
}

/// What a lead, contact or company can be found by (see [`View::matching`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum MatchKey {
    /// A normalised phone number.
    Phone,
    /// An e-mail address, compared in lower case.
    Email,
    /// An INN.
    Inn,
}

impl MatchKey {
    /// The name a backend stores it under.
    pub fn as_str(self) -> &'static str {
        match self {
            MatchKey::Phone => "phone",
            MatchKey::Email => "email",
            MatchKey::Inn => "inn",
        }
    }

    /// The form a value is stored and looked up in: a phone's line without its extension
    /// (`+79378922084;ext=12` matches `+79378922084`), an e-mail in lower case, an INN
    /// trimmed.
    pub fn normalize(self, v: &str) -> String {
        match self {
            MatchKey::Phone => crate::field::phone_key(v).to_owned(),
            MatchKey::Email => v.to_lowercase(),
            MatchKey::Inn => v.trim().to_owned(),
        }
    }
}

/// What a backend's match keys hold for an entity: its normalised phones and e-mails (e-mails in
/// lower case) and its INN (a company's, or a lead's custom field `inn`), each once.
pub fn match_keys(e: &Entity) -> Vec<(MatchKey, String)> {
    let mut out: Vec<(MatchKey, String)> = Vec::new();
    let (phones, emails, inn) = match e {
        Entity::Lead(l) => (&l.phones, &l.emails, text_field(&l.fields, "inn")),
        Entity::Contact(c) => (&c.phones, &c.emails, None),
        Entity::Company(c) => (&c.phones, &c.emails, c.inn.clone()),
        Entity::Deal(_) | Entity::Task(_) => return out,
    };
    let key = |what: MatchKey, v: &str| (what, what.normalize(v));
    out.extend(phones.iter().map(|p| key(MatchKey::Phone, p)));
    out.extend(emails.iter().map(|m| key(MatchKey::Email, m)));
    out.extend(inn.iter().map(|i| key(MatchKey::Inn, i)));
    out.sort();
    out.dedup();
    out
}

/// A custom field as trimmed text (numbers as digits), `None` when empty.
fn text_field(
    fields: &std::collections::BTreeMap<String, serde_json::Value>,
    key: &str,
) -> Option<String> {
    let s = match fields.get(key)? {
        serde_json::Value::String(s) => s.trim().to_owned(),
        serde_json::Value::Number(n) => n.to_string(),
        _ => return None,
    };
    (!s.is_empty()).then_some(s)
}

/// Which incidents to count (see [`View::incident_count`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IncidentQuery<'a> {
    /// Whose.
    pub employee: &'a EmployeeId,
    /// Of this kind only, or all kinds.
    pub kind: Option<&'a str>,
    /// At or after this time.
    pub since: DateTime<Utc>,
    /// Only those after the employee's last escalation of the same kind.
    pub after_escalation: bool,
}

/// A period's lead counts per employee id, for the KPI report.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KpiCounts {
    /// Leads created in the period, by responsible.
    pub leads_in: HashMap<String, i64>,
    /// Leads that entered a success stage of the lead pipeline in the period.
    pub converted: HashMap<String, i64>,
    /// Leads that entered a failure stage of the lead pipeline in the period.
    pub lost: HashMap<String, i64>,
    /// Open tasks past their due time at the period's end, by assignee.
    pub overdue: HashMap<String, i64>,
}

/// The lead pipeline's stages a KPI report counts, and its period.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KpiQuery<'a> {
    /// The lead pipeline.
    pub pipeline: &'a str,
    /// Its success stages.
    pub success: &'a [String],
    /// Its failure stages.
    pub failure: &'a [String],
    /// After this time…
    pub since: DateTime<Utc>,
    /// …up to and including this one.
    pub until: DateTime<Utc>,
}

/// Everything a reaction or a robot reads: the state as the current transaction (or the
/// database, outside one) sees it, its own appends included.
pub trait View {
    /// An entity's current state; `None` if it does not exist (or the stream is not an
    /// entity's).
    fn load(&mut self, stream: StreamId) -> Result<Option<Entity>, WorkspaceError>;

    /// The event at a position.
    fn event_at(&mut self, position: i64) -> Result<Option<RecordedEvent>, WorkspaceError>;

    /// A stream's event of one version (1: the event that created it).
    fn event_of(
        &mut self,
        stream: StreamId,
        version: i64,
    ) -> Result<Option<RecordedEvent>, WorkspaceError>;

    /// A stream's newest event of one type.
    fn latest_of_type(
        &mut self,
        stream: StreamId,
        event_type: &str,
    ) -> Result<Option<RecordedEvent>, WorkspaceError>;

    /// The causation and type of the event at a position, for walking a causal chain.
    fn cause_of(&mut self, position: i64) -> Result<Option<(Option<i64>, String)>, WorkspaceError>;

    /// A stream's pending timers, in the order they were set.
    fn pending_timers(&mut self, stream: StreamId) -> Result<Vec<PendingTimer>, WorkspaceError>;

    /// How many incidents match the query.
    fn incident_count(&mut self, q: &IncidentQuery<'_>) -> Result<i64, WorkspaceError>;

    /// How many leads or deals (`kind`) the employee is responsible for in these stages.
    fn open_items(
        &mut self,
        employee: &EmployeeId,
        kind: EntityKind,
        stages: &[String],
    ) -> Result<i64, WorkspaceError>;

    /// The highest id of the leads or deals (`kind`) the employee is responsible for; 0 if
    /// none (round-robin assignment goes to whoever got one longest ago).
    fn last_assigned(
        &mut self,
        employee: &EmployeeId,
        kind: EntityKind,
    ) -> Result<i64, WorkspaceError>;

    /// The oldest company with this INN.
    fn company_by_inn(&mut self, inn: &str) -> Result<Option<i64>, WorkspaceError>;

    /// Ids of `kind` (lead, contact or company) holding any of `values` (normalised with
    /// [`MatchKey::normalize`]) as a `what` key, ascending; with `before`, only ids below it.
    fn matching(
        &mut self,
        what: MatchKey,
        values: &[String],
        kind: EntityKind,
        before: Option<i64>,
    ) -> Result<Vec<i64>, WorkspaceError>;

    /// The KPI report's counts.
    fn kpi(&mut self, q: &KpiQuery<'_>) -> Result<KpiCounts, WorkspaceError>;

    /// The external robot request at this position, if it has no outcome yet: `Some(until)`
    /// with the time a process's claim on it lapses (`None` inside: nobody took it).
    #[allow(clippy::option_option)]
    fn request_pending(
        &mut self,
        position: i64,
    ) -> Result<Option<Option<DateTime<Utc>>>, WorkspaceError>;

    /// When the schedule rule last fired (its `schedule.fired` due time).
    fn schedule_fired_at(&mut self, rule: &str) -> Result<Option<DateTime<Utc>>, WorkspaceError>;

    /// Leads or deals (`kind`) in one of `stages`, last changed at or before `cutoff`, that the
    /// idle rule has not marked idle since that change: `(id, last change)`, by id.
    fn idle_candidates(
        &mut self,
        kind: EntityKind,
        rule: &str,
        cutoff: DateTime<Utc>,
        stages: &[String],
    ) -> Result<Vec<(i64, DateTime<Utc>)>, WorkspaceError>;
}

/// One write transaction: the view plus appends, the rules' cursor and timers. Commits or
/// rolls back as a whole ([`Backend::write`]).
pub trait Workspace: View {
    /// Decides a command against the current state (with [`crate::decide`]) and appends its
    /// events.
    fn execute(
        &mut self,
        config: &Config,
        command: &Command,
        meta: &EventMeta,
    ) -> Result<Executed, WorkspaceError>;

    /// Appends events to a stream that is at version `expected`.
    fn append(
        &mut self,
        stream: StreamId,
        expected: i64,
        events: &[Event],
        meta: &EventMeta,
    ) -> Result<Appended, WorkspaceError>;

    /// A stream's current version (0: no events).
    fn version(&mut self, stream: StreamId) -> Result<i64, WorkspaceError>;

    /// The position of the newest event, this transaction's appends included.
    fn head_position(&self) -> i64;

    /// Up to `limit` events after a position, in order.
    fn read_after(
        &mut self,
        after: i64,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>, WorkspaceError>;

    /// A named cursor's position.
    fn cursor(&mut self, name: &str) -> Result<Option<i64>, WorkspaceError>;

    /// Moves a named cursor.
    fn set_cursor(&mut self, name: &str, position: i64) -> Result<(), WorkspaceError>;

    /// The highest causation of the events after `after`, leaving out events of the types in
    /// `except`: how far the robots' reactions in the log show the rules got.
    fn last_cause_after(
        &mut self,
        after: i64,
        except: &[&str],
    ) -> Result<Option<i64>, WorkspaceError>;

    /// Removes up to `limit` timers due at or before `now` and returns them, by due time; the
    /// caller appends their firing events in the same transaction.
    fn take_due_timers(
        &mut self,
        now: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<(StreamId, PendingTimer)>, WorkspaceError>;

    /// Runs `f` in a savepoint: kept if it returns `true`, rolled back (appends and all) if
    /// it returns `false`.
    fn atomically(
        &mut self,
        f: &mut dyn FnMut(&mut dyn Workspace) -> bool,
    ) -> Result<bool, WorkspaceError>;
}

/// How a write transaction's `recorded_at` is stamped.
#[derive(Clone, Copy)]
pub enum Stamp<'a> {
    /// A fixed time (simulations, tests).
    At(DateTime<Utc>),
    /// Read from a clock once the write lock is held.
    Clock(&'a dyn Clock),
}

/// A database the rules runtime drives: write transactions, and the reads it makes outside
/// them.
pub trait Backend {
    /// Runs `f` in one write transaction: committed if it returns `Ok`, rolled back if not.
    fn write<T, E: From<WorkspaceError>>(
        &mut self,
        stamp: Stamp<'_>,
        f: impl FnOnce(&mut dyn Workspace) -> Result<T, E>,
    ) -> Result<T, E>;

    /// A named cursor's position.
    fn cursor(&self, name: &str) -> Result<Option<i64>, WorkspaceError>;

    /// The position of the newest event (0: none).
    fn last_position(&self) -> Result<i64, WorkspaceError>;

    /// An entity's current state.
    fn load(&self, stream: StreamId) -> Result<Option<Entity>, WorkspaceError>;

    /// Up to `limit` events after a position, in order.
    fn read_after(&self, after: i64, limit: usize) -> Result<Vec<RecordedEvent>, WorkspaceError>;

    /// Up to `limit` external robot requests (`robot.requested`) without an outcome after
    /// position `after`, oldest first.
    fn pending_requests(
        &self,
        after: i64,
        limit: usize,
    ) -> Result<Vec<PendingRequest>, WorkspaceError>;

    /// The earliest pending timer's due time.
    fn next_timer_due(&self) -> Result<Option<DateTime<Utc>>, WorkspaceError>;

    /// The oldest last change, after `after`, of the leads or deals (`kind`) in one of
    /// `stages`: when the next one can become idle.
    fn oldest_change_after(
        &self,
        kind: EntityKind,
        after: DateTime<Utc>,
        stages: &[String],
    ) -> Result<Option<DateTime<Utc>>, WorkspaceError>;
}
