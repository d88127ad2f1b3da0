//! Domain events: what happened, in the past tense, with a stable stored type name
//! (`lead.created`) and schema version that never change when a Rust name does.
//!
//! Old schema versions stay readable: [`Event::decode`] upcasts a stored payload to the current
//! shape before deserialising it.

use crate::ids::{EmployeeId, EntityKind, PipelineId, StageId, StreamId};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

/// Field changes: a built-in field name or a custom field id, mapped to its new normal value;
/// `null` clears it. Built-in names and custom ids share one namespace (the config forbids
/// clashes).
pub type Changes = BTreeMap<String, Value>;

/// Whether a client is a person or a legal entity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClientType {
    /// A private person.
    Individual,
    /// A company or sole trader.
    Legal,
}

impl ClientType {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            ClientType::Individual => "individual",
            ClientType::Legal => "legal",
        }
    }
}

impl FromStr for ClientType {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "individual" => Ok(ClientType::Individual),
            "legal" => Ok(ClientType::Legal),
            other => Err(format!(
                "unknown client type '{other}': expected individual or legal"
            )),
        }
    }
}

/// A lead entered the lead pipeline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LeadCreated {
    pub id: i64,
    pub title: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub phones: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub emails: Vec<String>,
    pub source: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_type: Option<ClientType>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub responsible: Option<EmployeeId>,
    pub pipeline: PipelineId,
    pub stage: StageId,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub fields: BTreeMap<String, Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contact: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub company: Option<i64>,
}

/// A deal was opened in a deal pipeline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DealCreated {
    pub id: i64,
    pub title: String,
    pub pipeline: PipelineId,
    pub stage: StageId,
    /// Integer minor units of `currency`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub amount: Option<i64>,
    pub currency: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub responsible: Option<EmployeeId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contact: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub company: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lead: Option<i64>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub fields: BTreeMap<String, Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
}

/// A contact (person) was created.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ContactCreated {
    pub id: i64,
    pub name: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub phones: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub emails: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub company: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub responsible: Option<EmployeeId>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub fields: BTreeMap<String, Value>,
}

/// A company (legal entity) was created.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CompanyCreated {
    pub id: i64,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inn: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bank_account: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bik: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub phones: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub emails: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub responsible: Option<EmployeeId>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub fields: BTreeMap<String, Value>,
}

/// The kind of a task.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskKind {
    /// Call the client.
    Call,
    /// Write to the client.
    Email,
    /// Meet the client.
    Meeting,
    /// Send a commercial offer.
    SendOffer,
    /// Anything else.
    Other,
}

impl TaskKind {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            TaskKind::Call => "call",
            TaskKind::Email => "email",
            TaskKind::Meeting => "meeting",
            TaskKind::SendOffer => "send_offer",
            TaskKind::Other => "other",
        }
    }
}

impl FromStr for TaskKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "call" => Ok(TaskKind::Call),
            "email" => Ok(TaskKind::Email),
            "meeting" => Ok(TaskKind::Meeting),
            "send_offer" => Ok(TaskKind::SendOffer),
            "other" => Ok(TaskKind::Other),
            other => Err(format!(
                "unknown task kind '{other}': expected call, email, meeting, send_offer or other"
            )),
        }
    }
}

/// A task was set for an employee.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskCreated {
    pub id: i64,
    pub kind: TaskKind,
    pub title: String,
    pub assignee: EmployeeId,
    pub due_at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lead: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deal: Option<i64>,
}

/// Fields of an entity changed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Updated {
    pub changes: Changes,
}

/// A lead or deal moved to another stage of its pipeline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StageChanged {
    pub from: StageId,
    pub to: StageId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// A lead or deal got a new responsible employee.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Assigned {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<EmployeeId>,
    pub to: EmployeeId,
}

/// A task was done.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskCompleted {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<String>,
}

/// One rule file as it was activated.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuleFile {
    pub path: String,
    pub text: String,
}

/// A rule set came into force; the rules in force at any position are the last activated
/// before it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RulesetActivated {
    /// SHA-256 of the files (paths and texts), hex.
    pub hash: String,
    pub files: Vec<RuleFile>,
}

/// A named deadline was set for a lead or deal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeadlineScheduled {
    pub name: String,
    pub due_at: DateTime<Utc>,
    /// The rule that set it.
    pub rule: String,
    /// The hash of the rule set in force when it was set.
    pub ruleset: String,
}

/// A pending deadline was called off.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeadlineCancelled {
    pub name: String,
    /// The position of its `deadline.scheduled`.
    pub scheduled: i64,
    pub reason: String,
}

/// A deadline's time came.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeadlineElapsed {
    pub name: String,
    /// The position of its `deadline.scheduled`.
    pub scheduled: i64,
    pub due_at: DateTime<Utc>,
}

/// A robot call kept for later: its robot and parameters as the rule file gave them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DelayedRobot {
    pub robot: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub params: BTreeMap<String, Value>,
}

/// The rest of a rule's robots were put off (by the rule's `delay` or a `wait` robot). They
/// are stored here, so they run as they were when scheduled whatever rule set is in force
/// when they resume.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RobotsDelayed {
    pub rule: String,
    pub ruleset: String,
    pub due_at: DateTime<Utc>,
    /// The position of the event that triggered the rule.
    pub trigger: i64,
    /// The stage the entity was in; leaving it cancels these robots unless `survive_move`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stage: Option<StageId>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub survive_move: bool,
    pub robots: Vec<DelayedRobot>,
}

/// Delayed robots' time came; they run as this event's effects.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RobotsResumed {
    /// The position of the `robots.delayed`.
    pub delayed: i64,
}

/// Delayed robots were called off (the entity left the stage, say).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RobotsCancelled {
    /// The position of the `robots.delayed`.
    pub delayed: i64,
    pub reason: String,
}

/// A lead's client is already known: the contacts, companies and earlier leads it matched.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RepeatDetected {
    /// What matched: `phone`, `email`, `inn`.
    pub by: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub contacts: Vec<i64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub companies: Vec<i64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub leads: Vec<i64>,
}

/// A task passed its due time undone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskOverdue {
    pub due_at: DateTime<Utc>,
}

/// A lead or deal saw no activity for as long as an `idle` rule waits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdleDetected {
    /// The `idle` rule.
    pub rule: String,
    /// The last activity.
    pub since: DateTime<Utc>,
}

/// Something went wrong that someone must answer for: a missed deadline, a robot that failed,
/// a chain of rules stopped at the depth limit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IncidentRecorded {
    pub kind: String,
    /// Whose incident it is (the responsible at the time), if anyone's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub employee: Option<EmployeeId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    pub text: String,
}

/// An employee's incidents of a kind reached the threshold; their manager was told.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EscalationRecorded {
    pub employee: EmployeeId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manager: Option<EmployeeId>,
    /// The incident kind counted.
    pub kind: String,
    /// How many were counted.
    pub count: i64,
    /// Within how long, as written in the rule (`30d`).
    pub window: String,
    pub rule: String,
}

/// How a notification travels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Channel {
    /// The in-app inbox (`leadflow inbox EMPLOYEE`).
    Inbox,
    /// An HTTP POST, delivered from the outbox.
    Webhook,
    /// An e-mail, delivered from the outbox.
    Email,
}

impl Channel {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Inbox => "inbox",
            Channel::Webhook => "webhook",
            Channel::Email => "email",
        }
    }
}

/// A message was queued: in an employee's inbox, or in the outbox for a webhook or e-mail.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NotificationQueued {
    pub channel: Channel,
    /// The employee it is for (inbox, e-mail).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<EmployeeId>,
    /// The URL (webhook) or address (e-mail).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    pub text: String,
    #[serde(default, skip_serializing_if = "is_normal")]
    pub priority: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    /// Unique per message, for receivers to drop duplicate deliveries.
    pub key: String,
}

/// An employee read an in-app notification (or several: one event each).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NotificationRead {
    /// The position of the `notification.queued` event, in this same stream.
    pub notification: i64,
    /// The employee who read it (the notification's addressee).
    pub employee: EmployeeId,
}

fn is_normal(p: &str) -> bool {
    p.is_empty() || p == "normal"
}

/// A cron rule's time came.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScheduleFired {
    pub rule: String,
    /// The scheduled time (the latest one, when several passed while nothing ran).
    pub due_at: DateTime<Utc>,
}

/// One manager's line of a KPI report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KpiRow {
    pub employee: EmployeeId,
    pub leads_in: i64,
    pub converted: i64,
    pub lost: i64,
    pub overdue: i64,
}

/// A KPI summary was sent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReportSent {
    pub to: Vec<EmployeeId>,
    pub since: DateTime<Utc>,
    pub until: DateTime<Utc>,
    pub rows: Vec<KpiRow>,
    pub rule: String,
}

/// An external robot (a program, later a webhook or e-mail) was asked to act. It runs after
/// the transaction that records this commits, never inside it; `robot.completed` records
/// its outcome, and the rules apply the actions of its answer in reaction to that.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RobotRequested {
    /// The robot (`command`).
    pub robot: String,
    /// The rule that called it.
    pub rule: String,
    /// The hash of the rule set in force.
    pub ruleset: String,
    /// The call's parameters, as the rule gave them.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub params: BTreeMap<String, Value>,
    /// What the robot is given (a program's stdin), fixed when the rule decided: every
    /// attempt gets the same.
    pub input: Value,
    /// Unique per request and the same on every attempt, for the receiver to drop a repeat.
    pub key: String,
    /// The rule's robots after this one: they run once its answer's actions are applied.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub then: Vec<DelayedRobot>,
    /// Whether robots the rest puts off survive the entity leaving its stage.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub survive_move: bool,
}

/// How an external robot's call ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RobotOutcome {
    /// It answered with actions.
    Answered,
    /// It failed (could not start, exited non-zero, gave an answer that is not one).
    Failed,
    /// It did not finish in time.
    TimedOut,
}

/// A process took an external robot's request to run it, until `until` (its time limit and a
/// margin): no other process runs it before then; after, it is taken for abandoned.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RobotStarted {
    /// The position of the `robot.requested`.
    pub request: i64,
    /// When the claim lapses.
    pub until: DateTime<Utc>,
}

/// An external robot's outcome, in the stream of its request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RobotCompleted {
    /// The position of the `robot.requested`.
    pub request: i64,
    /// How it ended.
    pub outcome: RobotOutcome,
    /// The answer's actions, each an object with one key (`answered`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub actions: Vec<Value>,
    /// What went wrong (`failed`, `timed_out`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// An API token was made (`leadflow token create`). Only the hash of its secret is kept: the
/// secret itself was shown once, to whoever made it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenCreated {
    /// Its name, unique among tokens not revoked; API events record it (`api:<name>`).
    pub name: String,
    /// The role it has (see [`crate::access`]).
    pub role: String,
    /// The employee it acts for, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub employee: Option<EmployeeId>,
    /// SHA-256 of the secret, lowercase hex.
    pub secret_hash: String,
    /// What it is for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// An API token was revoked: it opens nothing from now on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenRevoked {
    /// Its name.
    pub name: String,
}

/// A lead, deal, contact or company was deleted (`crm.*.delete`): its row leaves the
/// projections (with its match keys, search text, custom-field index and pending timers);
/// its events stay in the log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Deleted {
    /// Why, if the person said.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// A comment on a record's timeline (Bitrix24's `crm.timeline.comment.add`): the record's
/// fields stay as they are; the comment is activity on it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Commented {
    /// The comment's text.
    pub text: String,
}

// --- Delivery: webhook endpoints and the outbox's delivery (issue 10, decision 0006) ---

/// The shape of a subscription's bodies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum EndpointFormat {
    /// leadflow's JSON: the event with its position, stream, type, payload, time and actor.
    #[default]
    Native,
    /// The form-encoded body of Bitrix24's outgoing events (`ONCRMLEADADD`…).
    Bitrix24,
}

impl EndpointFormat {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            EndpointFormat::Native => "native",
            EndpointFormat::Bitrix24 => "bitrix24",
        }
    }
}

impl FromStr for EndpointFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "native" => Ok(EndpointFormat::Native),
            "bitrix24" => Ok(EndpointFormat::Bitrix24),
            other => Err(format!(
                "unknown format '{other}': expected native or bitrix24"
            )),
        }
    }
}

/// A webhook endpoint was added: every later event whose type matches one of `events` is
/// delivered to `url`, signed with `secret`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndpointAdded {
    pub url: String,
    /// Glob patterns over event types (`lead.*`, `deal.stage_changed`, `*`).
    pub events: Vec<String>,
    pub format: EndpointFormat,
    /// The Standard Webhooks secret (`whsec_` and base64).
    pub secret: String,
}

/// A webhook endpoint was removed: nothing more is delivered to it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct EndpointRemoved {}

/// A webhook endpoint was disabled by its receiver (it answered 410 Gone).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndpointDisabled {
    pub reason: String,
}

/// An event was taken for delivery to the endpoint of this stream: a message, whose id is
/// this event's position.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliveryQueued {
    /// The position of the event to deliver.
    pub event: i64,
    /// Its stream (the order of delivery is kept per stream).
    pub stream: StreamId,
    /// Its type.
    #[serde(rename = "type")]
    pub event_type: String,
}

/// One delivery attempt failed; another follows at `next_at`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliveryAttempted {
    /// The message: the position of its `notification.queued` or `delivery.queued`.
    pub message: i64,
    /// The attempt's number, from 1.
    pub attempt: u32,
    /// The receiver's HTTP status, if it answered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// What went wrong.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// When the next attempt is due.
    pub next_at: DateTime<Utc>,
}

/// A message was delivered (a 2xx answer, or the mail relay took it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliverySucceeded {
    pub message: i64,
    pub attempt: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
}

/// A message was given up on: the bound on attempts or age was reached, or its endpoint is
/// gone. An `incident.recorded` goes with it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliveryFailed {
    pub message: i64,
    pub attempts: u32,
    pub reason: String,
}

/// A failed message was given a new round of attempts (`outbox retry`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliveryRetried {
    pub message: i64,
}

/// A message was dropped (`outbox drop`): it is never delivered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliveryDropped {
    pub message: i64,
}

/// Whether an event type may be delivered to a subscription: every type but the endpoints'
/// own and the deliveries' (which would feed themselves).
pub fn deliverable(event_type: &str) -> bool {
    !(event_type.starts_with("endpoint.") || event_type.starts_with("delivery."))
}

/// Whether `event_type` matches the glob `pattern`, where `*` stands for any run of
/// characters (`lead.*`, `*.created`, `*`).
pub fn type_matches(pattern: &str, event_type: &str) -> bool {
    let (p, t) = (pattern.as_bytes(), event_type.as_bytes());
    // Iterative glob with backtracking to the last star.
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && p[pi] == b'*' {
            star = Some((pi, ti));
            pi += 1;
        } else if pi < p.len() && p[pi] == t[ti] {
            pi += 1;
            ti += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|b| *b == b'*')
}

/// Why a stored event could not be read.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// The type name is not one this leadflow knows.
    #[error("unknown event type '{0}'")]
    UnknownType(String),
    /// The event was written by a newer leadflow.
    #[error(
        "event type '{ty}' has schema version {version}, newer than this leadflow reads ({known}); upgrade leadflow"
    )]
    NewerVersion {
        ty: String,
        version: u32,
        known: u32,
    },
    /// The payload does not match the type.
    #[error("malformed payload of '{ty}': {source}")]
    Payload {
        ty: String,
        #[source]
        source: serde_json::Error,
    },
}

macro_rules! events {
    ($( $(#[$doc:meta])* $variant:ident($ty:ty) = $name:literal, $ver:literal, $($kind:ident)|+; )*) => {
        /// Everything that can happen to leads, deals, contacts, companies and tasks, and what the
        /// rules engine records about them.
        #[derive(Debug, Clone, PartialEq)]
        pub enum Event {
            $( $(#[$doc])* $variant($ty), )*
        }

        impl Event {
            /// Every stored type name, with its current schema version.
            pub const TYPES: &'static [(&'static str, u32)] = &[ $( ($name, $ver), )* ];

            /// The stored type name, e.g. `lead.created`.
            pub fn event_type(&self) -> &'static str {
                match self { $( Event::$variant(_) => $name, )* }
            }

            /// The current schema version of this type.
            pub fn schema_version(&self) -> u32 {
                match self { $( Event::$variant(_) => $ver, )* }
            }

            /// Whether a stream of this kind may hold this event.
            pub fn fits(&self, kind: EntityKind) -> bool {
                match self { $( Event::$variant(_) => matches!(kind, $(EntityKind::$kind)|+), )* }
            }

            /// The JSON payload as stored.
            pub fn payload(&self) -> String {
                let json = match self {
                    $( Event::$variant(e) => serde_json::to_string(e), )*
                };
                json.expect("event payloads always serialise")
            }

            /// Reads a stored event, upcasting old schema versions.
            pub fn decode(ty: &str, version: u32, payload: &str) -> Result<Event, DecodeError> {
                match ty {
                    $( $name => {
                        if version > $ver {
                            return Err(DecodeError::NewerVersion { ty: ty.to_owned(), version, known: $ver });
                        }
                        let payload = upcast(ty, version, payload);
                        serde_json::from_str(&payload)
                            .map(Event::$variant)
                            .map_err(|source| DecodeError::Payload { ty: ty.to_owned(), source })
                    } )*
                    other => Err(DecodeError::UnknownType(other.to_owned())),
                }
            }
        }
    };
}

events! {
    /// A lead entered the lead pipeline.
    LeadCreated(LeadCreated) = "lead.created", 1, Lead;
    /// Lead fields changed.
    LeadUpdated(Updated) = "lead.updated", 1, Lead;
    /// A lead moved to another stage.
    LeadStageChanged(StageChanged) = "lead.stage_changed", 1, Lead;
    /// A lead got a responsible.
    LeadAssigned(Assigned) = "lead.assigned", 1, Lead;
    /// A deal was opened.
    DealCreated(DealCreated) = "deal.created", 1, Deal;
    /// Deal fields changed.
    DealUpdated(Updated) = "deal.updated", 1, Deal;
    /// A deal moved to another stage.
    DealStageChanged(StageChanged) = "deal.stage_changed", 1, Deal;
    /// A deal got a responsible.
    DealAssigned(Assigned) = "deal.assigned", 1, Deal;
    /// A contact was created.
    ContactCreated(ContactCreated) = "contact.created", 1, Contact;
    /// Contact fields changed.
    ContactUpdated(Updated) = "contact.updated", 1, Contact;
    /// A company was created.
    CompanyCreated(CompanyCreated) = "company.created", 1, Company;
    /// Company fields changed.
    CompanyUpdated(Updated) = "company.updated", 1, Company;
    /// A task was set.
    TaskCreated(TaskCreated) = "task.created", 1, Task;
    /// A task was done.
    TaskCompleted(TaskCompleted) = "task.completed", 1, Task;
    /// A task passed its due time undone.
    TaskOverdue(TaskOverdue) = "task.overdue", 1, Task;
    /// A lead's client is already known.
    LeadRepeatDetected(RepeatDetected) = "lead.repeat_detected", 1, Lead;
    /// A lead or deal was idle for as long as a rule waits.
    IdleDetected(IdleDetected) = "idle.detected", 1, Lead | Deal;
    /// A rule set came into force.
    RulesetActivated(RulesetActivated) = "ruleset.activated", 1, Ruleset;
    /// A named deadline was set.
    DeadlineScheduled(DeadlineScheduled) = "deadline.scheduled", 1, Lead | Deal;
    /// A pending deadline was called off.
    DeadlineCancelled(DeadlineCancelled) = "deadline.cancelled", 1, Lead | Deal;
    /// A deadline's time came.
    DeadlineElapsed(DeadlineElapsed) = "deadline.elapsed", 1, Lead | Deal;
    /// Robots were put off until later.
    RobotsDelayed(RobotsDelayed) = "robots.delayed", 1, Lead | Deal | Task | Contact | Company | System;
    /// Delayed robots' time came.
    RobotsResumed(RobotsResumed) = "robots.resumed", 1, Lead | Deal | Task | Contact | Company | System;
    /// Delayed robots were called off.
    RobotsCancelled(RobotsCancelled) = "robots.cancelled", 1, Lead | Deal | Task | Contact | Company | System;
    /// An incident went into the journal.
    IncidentRecorded(IncidentRecorded) = "incident.recorded", 1, Lead | Deal | Task | Contact | Company | System | Endpoint;
    /// An escalation to a manager went into the journal.
    EscalationRecorded(EscalationRecorded) = "escalation.recorded", 1, Lead | Deal | Task | Contact | Company | System;
    /// A message was queued for an inbox or the outbox.
    NotificationQueued(NotificationQueued) = "notification.queued", 1, Lead | Deal | Task | Contact | Company | System;
    /// An in-app notification was read.
    NotificationRead(NotificationRead) = "notification.read", 1, Lead | Deal | Task | Contact | Company | System;
    /// A cron rule's time came.
    ScheduleFired(ScheduleFired) = "schedule.fired", 1, System;
    /// A KPI report was sent.
    ReportSent(ReportSent) = "report.sent", 1, System;
    /// An external robot was asked to act (after the commit).
    RobotRequested(RobotRequested) = "robot.requested", 1, Lead | Deal | Task | Contact | Company | System;
    /// A process took an external robot's request to run it.
    RobotStarted(RobotStarted) = "robot.started", 1, Lead | Deal | Task | Contact | Company | System;
    /// An external robot's call ended.
    RobotCompleted(RobotCompleted) = "robot.completed", 1, Lead | Deal | Task | Contact | Company | System;
    /// An API token was made (issue 10, access).
    TokenCreated(TokenCreated) = "token.created", 1, Token;
    /// An API token was revoked (issue 10, access).
    TokenRevoked(TokenRevoked) = "token.revoked", 1, Token;
    /// A lead was deleted.
    LeadDeleted(Deleted) = "lead.deleted", 1, Lead;
    /// A deal was deleted.
    DealDeleted(Deleted) = "deal.deleted", 1, Deal;
    /// A contact was deleted.
    ContactDeleted(Deleted) = "contact.deleted", 1, Contact;
    /// A company was deleted.
    CompanyDeleted(Deleted) = "company.deleted", 1, Company;
    /// A comment went on a lead's timeline.
    LeadCommented(Commented) = "lead.commented", 1, Lead;
    /// A comment went on a deal's timeline.
    DealCommented(Commented) = "deal.commented", 1, Deal;
    /// A comment went on a contact's timeline.
    ContactCommented(Commented) = "contact.commented", 1, Contact;
    /// A comment went on a company's timeline.
    CompanyCommented(Commented) = "company.commented", 1, Company;
    /// A webhook endpoint was added.
    EndpointAdded(EndpointAdded) = "endpoint.added", 1, Endpoint;
    /// A webhook endpoint was removed.
    EndpointRemoved(EndpointRemoved) = "endpoint.removed", 1, Endpoint;
    /// A webhook endpoint was disabled (it answered 410).
    EndpointDisabled(EndpointDisabled) = "endpoint.disabled", 1, Endpoint;
    /// An event was taken for delivery to an endpoint.
    DeliveryQueued(DeliveryQueued) = "delivery.queued", 1, Endpoint;
    /// A delivery attempt failed; another follows.
    DeliveryAttempted(DeliveryAttempted) = "delivery.attempted", 1, Lead | Deal | Task | Contact | Company | System | Endpoint;
    /// A message was delivered.
    DeliverySucceeded(DeliverySucceeded) = "delivery.succeeded", 1, Lead | Deal | Task | Contact | Company | System | Endpoint;
    /// A message was given up on.
    DeliveryFailed(DeliveryFailed) = "delivery.failed", 1, Lead | Deal | Task | Contact | Company | System | Endpoint;
    /// A failed message got a new round of attempts.
    DeliveryRetried(DeliveryRetried) = "delivery.retried", 1, Lead | Deal | Task | Contact | Company | System | Endpoint;
    /// A message was dropped.
    DeliveryDropped(DeliveryDropped) = "delivery.dropped", 1, Lead | Deal | Task | Contact | Company | System | Endpoint;
}

impl Event {
    /// Whether the event deletes its entity (`lead.deleted`, …): after it the stream holds no
    /// entity, and the projections hold no row of it.
    pub fn is_deletion(&self) -> bool {
        matches!(
            self,
            Event::LeadDeleted(_)
                | Event::DealDeleted(_)
                | Event::ContactDeleted(_)
                | Event::CompanyDeleted(_)
        )
    }
}

impl Event {
    /// Whether the event is activity on its entity (a business change), as opposed to the
    /// engine's bookkeeping (timers, journals, notifications). Idle rules count activity only.
    /// Bookkeeping changes no field of an entity, only its version (see
    /// [`crate::model::Entity::add_version`]).
    pub fn is_activity(&self) -> bool {
        !matches!(
            self,
            Event::IdleDetected(_)
                | Event::RulesetActivated(_)
                | Event::DeadlineScheduled(_)
                | Event::DeadlineCancelled(_)
                | Event::DeadlineElapsed(_)
                | Event::RobotsDelayed(_)
                | Event::RobotsResumed(_)
                | Event::RobotsCancelled(_)
                | Event::IncidentRecorded(_)
                | Event::EscalationRecorded(_)
                | Event::NotificationQueued(_)
                | Event::NotificationRead(_)
                | Event::ScheduleFired(_)
                | Event::ReportSent(_)
                | Event::TaskOverdue(_)
                | Event::RobotRequested(_)
                | Event::RobotStarted(_)
                | Event::RobotCompleted(_)
                | Event::EndpointAdded(_)
                | Event::EndpointRemoved(_)
                | Event::EndpointDisabled(_)
                | Event::DeliveryQueued(_)
                | Event::DeliveryAttempted(_)
                | Event::DeliverySucceeded(_)
                | Event::DeliveryFailed(_)
                | Event::DeliveryRetried(_)
                | Event::DeliveryDropped(_)
        )
    }

    /// Whether the event starts a new chain for the rules' depth limit: a timer that fired
    /// (time passed between cause and effect, so no loop without a pause runs through it).
    pub fn is_timer_firing(&self) -> bool {
        matches!(
            self,
            Event::DeadlineElapsed(_)
                | Event::RobotsResumed(_)
                | Event::TaskOverdue(_)
                | Event::IdleDetected(_)
                | Event::ScheduleFired(_)
        )
    }
}

/// Rewrites a payload stored under an older schema version into the current shape.
///
/// Every type is at version 1 today, so this is the identity; when a payload changes shape, its
/// version goes up in [`events!`] and a step from the old shape is added here. Stored rows are
/// never rewritten.
fn upcast<'a>(_ty: &str, _version: u32, payload: &'a str) -> std::borrow::Cow<'a, str> {
    std::borrow::Cow::Borrowed(payload)
}

/// Who caused an event.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Actor {
    /// A person from the config.
    Employee(EmployeeId),
    /// A rule's robot.
    Robot(String),
    /// The engine itself (imports, timers).
    System,
    /// An API token, by name, and the employee it acted for, if any. Stored `api:<token>` or
    /// `api:<token>@<employee>`.
    Api {
        /// The token's name (`leadflow token create NAME`) or a form's.
        token: String,
        /// The employee the request acted for (a Bitrix24 URL's user id, a token's employee).
        employee: Option<EmployeeId>,
    },
}

impl Actor {
    /// An API actor acting for no employee.
    pub fn api(token: impl Into<String>) -> Actor {
        Actor::Api {
            token: token.into(),
            employee: None,
        }
    }

    /// The employee this actor is or acts for: an employee, or an API token acting for one.
    /// Robots and the engine act for no one.
    pub fn employee(&self) -> Option<&EmployeeId> {
        match self {
            Actor::Employee(e) => Some(e),
            Actor::Api { employee, .. } => employee.as_ref(),
            Actor::Robot(_) | Actor::System => None,
        }
    }
}

impl fmt::Display for Actor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Actor::Employee(e) => write!(f, "employee:{e}"),
            Actor::Robot(r) => write!(f, "robot:{r}"),
            Actor::System => f.write_str("system"),
            Actor::Api {
                token,
                employee: None,
            } => write!(f, "api:{token}"),
            Actor::Api {
                token,
                employee: Some(e),
            } => write!(f, "api:{token}@{e}"),
        }
    }
}

impl FromStr for Actor {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if s == "system" {
            return Ok(Actor::System);
        }
        let bad = || {
            format!(
                "bad actor '{s}': expected system, employee:ID, robot:RULE, api:TOKEN or api:TOKEN@EMPLOYEE"
            )
        };
        match s.split_once(':') {
            Some(("employee", e)) if !e.is_empty() => Ok(Actor::Employee(EmployeeId(e.to_owned()))),
            Some(("robot", r)) if !r.is_empty() => Ok(Actor::Robot(r.to_owned())),
            Some(("api", t)) if !t.is_empty() => match t.split_once('@') {
                None => Ok(Actor::api(t)),
                Some((token, e)) if !token.is_empty() && !e.is_empty() => Ok(Actor::Api {
                    token: token.to_owned(),
                    employee: Some(EmployeeId(e.to_owned())),
                }),
                Some(_) => Err(bad()),
            },
            _ => Err(bad()),
        }
    }
}

/// Metadata the engine attaches to every event of a command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventMeta {
    /// Business time, from the engine's clock.
    pub occurred_at: DateTime<Utc>,
    /// Who did it.
    pub actor: Actor,
    /// The position of the event that caused this one.
    pub causation: Option<i64>,
    /// The position of the first event of the chain; the store fills it in for chain roots.
    pub correlation: Option<i64>,
}

impl EventMeta {
    /// Metadata for a human or API command that starts a new chain.
    pub fn root(occurred_at: DateTime<Utc>, actor: Actor) -> Self {
        EventMeta {
            occurred_at,
            actor,
            causation: None,
            correlation: None,
        }
    }
}

/// An event and the stream it belongs to, ready to append.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamEvent {
    /// The entity stream.
    pub stream: StreamId,
    /// The event.
    pub event: Event,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_round_trip() {
        let e = Event::LeadStageChanged(StageChanged {
            from: "new".into(),
            to: "junk".into(),
            reason: Some("spam".into()),
        });
        let back = Event::decode(e.event_type(), e.schema_version(), &e.payload()).unwrap();
        assert_eq!(back, e);
    }

    #[test]
    fn unknown_and_newer_events_are_refused_not_guessed() {
        assert!(matches!(
            Event::decode("lead.exploded", 1, "{}"),
            Err(DecodeError::UnknownType(_))
        ));
        let err = Event::decode("lead.updated", 7, "{}").unwrap_err();
        assert!(err.to_string().contains("upgrade leadflow"), "{err}");
        assert!(matches!(
            Event::decode("lead.updated", 1, "[]"),
            Err(DecodeError::Payload { .. })
        ));
    }

    #[test]
    fn event_type_globs_match_as_written() {
        assert!(type_matches("lead.*", "lead.created"));
        assert!(type_matches("*", "deal.stage_changed"));
        assert!(type_matches("*.created", "deal.created"));
        assert!(type_matches("deal.stage_changed", "deal.stage_changed"));
        assert!(!type_matches("lead.*", "deal.created"));
        assert!(!type_matches("lead.created", "lead.created_x"));
        assert!(!type_matches("lead", "lead.created"));
        assert!(deliverable("lead.created"));
        assert!(!deliverable("delivery.succeeded"));
        assert!(!deliverable("endpoint.added"));
    }

    #[test]
    fn type_names_are_unique() {
        let mut names: Vec<_> = Event::TYPES.iter().map(|(n, _)| *n).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), Event::TYPES.len());
    }

    #[test]
    fn actors_round_trip_through_text() {
        for a in [
            "system",
            "employee:petrova",
            "robot:assign-first-line",
            "api:site-form",
            "api:crm@ivanov",
        ] {
            assert_eq!(a.parse::<Actor>().unwrap().to_string(), a);
        }
        assert!("petrova".parse::<Actor>().is_err());
        assert!("employee:".parse::<Actor>().is_err());
        for bad in ["api:", "api:@ivanov", "api:crm@"] {
            assert!(bad.parse::<Actor>().is_err(), "{bad} parsed");
        }
    }

    #[test]
    fn an_api_actor_stored_before_employees_were_recorded_still_reads() {
        assert_eq!(
            "api:site-form".parse::<Actor>(),
            Ok(Actor::api("site-form"))
        );
        assert_eq!(
            "api:crm@ivanov".parse::<Actor>(),
            Ok(Actor::Api {
                token: "crm".into(),
                employee: Some("ivanov".into()),
            })
        );
    }

    #[test]
    fn the_employee_of_an_actor_is_the_person_or_the_one_a_token_acts_for() {
        let of = |s: &str| s.parse::<Actor>().unwrap().employee().cloned();
        assert_eq!(of("employee:petrova"), Some("petrova".into()));
        assert_eq!(of("api:crm@ivanov"), Some("ivanov".into()));
        assert_eq!(of("api:site-form"), None);
        assert_eq!(of("robot:assign"), None);
        assert_eq!(of("system"), None);
    }
}
