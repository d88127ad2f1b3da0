//! Backtest's pure side (`leadflow backtest`, `rules coverage`; docs/RULES.md, "Backtest and
//! coverage"): which recorded events are the log's *inputs*, the command an input comes back
//! as, the robots' effects in a normal form that leaves out what legitimately differs between
//! two runs (positions, hashes, generated ids), and the comparison of two runs' effects.
//!
//! Nothing here reads a log or drives a sandbox (that is `robots::backtest`): the caller hands
//! in recorded events and stable names for streams and gets roles, commands and diffs back.

use crate::command::Command;
use crate::event::Event;
use crate::explain::Origin;
use crate::ids::{EntityKind, StreamId};
use crate::stored::RecordedEvent;
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};

/// What a recorded event is to a backtest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// What a person, an import, the API or leadflow itself did (the root of a causal chain
    /// whose [`Origin`] is a person, the API, an import or the system, on an entity's stream):
    /// re-run at its recorded time.
    Input,
    /// An external robot's recorded outcome (`robot.completed`): fed to the candidate only if
    /// it made the same request.
    Outcome,
    /// A rule set came into force (`ruleset.activated`).
    Activation,
    /// A timer's, schedule's or idle rule's own firing, or an external robot's claim: the
    /// candidate's virtual clock fires its own.
    Firing,
    /// Something the rules did in reaction to another event: what is compared.
    Effect,
    /// Bookkeeping the rules neither see nor make (tokens, webhook endpoints and deliveries,
    /// notifications read): neither fed nor compared.
    Other,
}

/// Event types that are bookkeeping to a backtest ([`Role::Other`]).
fn is_bookkeeping(ty: &str) -> bool {
    ty.starts_with("token.")
        || ty.starts_with("endpoint.")
        || ty.starts_with("delivery.")
        || ty == "notification.read"
}

/// The role of a recorded event; the same classification as `explain`'s [`Origin`] decides
/// what an input is.
pub fn role(rec: &RecordedEvent) -> Role {
    let ty = rec.event_type.as_str();
    match ty {
        "ruleset.activated" => return Role::Activation,
        "robot.completed" => return Role::Outcome,
        "robot.started" => return Role::Firing,
        t if crate::react::CHAIN_STARTS.contains(&t) => return Role::Firing,
        t if is_bookkeeping(t) => return Role::Other,
        _ => {}
    }
    if rec.causation.is_some() {
        return Role::Effect;
    }
    match Origin::of(rec) {
        Origin::Person | Origin::Api | Origin::Import | Origin::System
            if rec.stream.kind.is_entity() =>
        {
            Role::Input
        }
        Origin::Robot => Role::Effect,
        _ => Role::Other,
    }
}

/// Whether an event starts an entity's stream (its `id` is the stream's).
pub fn creates(event: &Event) -> bool {
    matches!(
        event,
        Event::LeadCreated(_)
            | Event::DealCreated(_)
            | Event::ContactCreated(_)
            | Event::CompanyCreated(_)
            | Event::TaskCreated(_)
    )
}

/// The command an input event comes back as, when whether it can happen depends on the state
/// (a move, an assignment, a task done, a deletion): the sandbox decides it against the
/// candidate's state, and a rejection is a divergence. `None` for the other inputs (creations,
/// field changes, comments), which are appended as recorded (their ids mapped) to a stream
/// that must exist.
pub fn command_of(stream: StreamId, event: &Event) -> Option<Command> {
    let id = stream.id;
    Some(match event {
        Event::LeadStageChanged(s) => Command::MoveLead {
            id,
            stage: s.to.clone(),
            reason: s.reason.clone(),
        },
        Event::DealStageChanged(s) => Command::MoveDeal {
            id,
            stage: s.to.clone(),
            reason: s.reason.clone(),
        },
        Event::LeadAssigned(a) => Command::AssignLead {
            id,
            to: a.to.clone(),
        },
        Event::DealAssigned(a) => Command::AssignDeal {
            id,
            to: a.to.clone(),
        },
        Event::TaskCompleted(t) => Command::CompleteTask {
            id,
            result: t.result.clone(),
        },
        Event::LeadDeleted(d) => Command::DeleteLead {
            id,
            reason: d.reason.clone(),
        },
        Event::DealDeleted(d) => Command::DeleteDeal {
            id,
            reason: d.reason.clone(),
        },
        Event::ContactDeleted(d) => Command::DeleteContact {
            id,
            reason: d.reason.clone(),
        },
        Event::CompanyDeleted(d) => Command::DeleteCompany {
            id,
            reason: d.reason.clone(),
        },
        _ => return None,
    })
}

/// Payload keys that hold another entity's id, and their kind.
const ID_KEYS: [(&str, EntityKind); 5] = [
    ("lead", EntityKind::Lead),
    ("deal", EntityKind::Deal),
    ("contact", EntityKind::Contact),
    ("company", EntityKind::Company),
    ("task", EntityKind::Task),
];

/// Payload keys that hold lists of ids.
const ID_LISTS: [(&str, EntityKind); 3] = [
    ("leads", EntityKind::Lead),
    ("contacts", EntityKind::Contact),
    ("companies", EntityKind::Company),
];

/// Payload keys that are positions, hashes or keys made of them: they differ between two runs
/// of the same history and say nothing about what the robots did.
const UNSTABLE: [&str; 8] = [
    "id",
    "scheduled",
    "delayed",
    "trigger",
    "request",
    "notification",
    "ruleset",
    "key",
];

/// An input event's payload with its ids moved into the sandbox: `id` becomes `own` (the
/// stream it goes to), the ids of other entities go through `map`. `Err` names the first
/// entity `map` does not know (it does not exist under the candidate).
pub fn remap(
    rec: &RecordedEvent,
    own: i64,
    map: &dyn Fn(StreamId) -> Option<StreamId>,
) -> Result<Event, RemapError> {
    let mut v: Value = serde_json::from_str(&rec.payload).map_err(|e| RemapError::Payload {
        position: rec.position,
        why: e.to_string(),
    })?;
    if let Value::Object(o) = &mut v {
        if o.contains_key("id") {
            o.insert("id".into(), Value::from(own));
        }
        for (key, kind) in ID_KEYS {
            if let Some(Value::Number(n)) = o.get(key)
                && let Some(id) = n.as_i64()
            {
                let live = StreamId::new(kind, id);
                let moved = map(live).ok_or(RemapError::Missing(live))?;
                o.insert(key.into(), Value::from(moved.id));
            }
        }
    }
    let payload = v.to_string();
    Event::decode(&rec.event_type, rec.schema_version as u32, &payload).map_err(|e| {
        RemapError::Payload {
            position: rec.position,
            why: e.to_string(),
        }
    })
}

/// Why an input could not be moved into the sandbox.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RemapError {
    /// It names an entity the candidate's run does not have.
    #[error("{0} does not exist under the candidate rules")]
    Missing(StreamId),
    /// Its payload does not read (a corrupt log).
    #[error("event at position {position}: {why}")]
    Payload {
        /// Where it is.
        position: i64,
        /// What is wrong.
        why: String,
    },
}

/// One thing the robots did, in a form two runs of a history can be compared in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Effect {
    /// The stable name of the stream it is in (`lead-7`, `deal by transfer from lead-7`).
    pub subject: String,
    /// The rule that caused it (`system` for the runtime's own bookkeeping).
    pub rule: String,
    /// Its stored type (`task.created`).
    #[serde(rename = "type")]
    pub kind: String,
    /// Its payload without positions, hashes and keys, ids as stable names (canonical JSON).
    pub detail: String,
    /// When it happened.
    pub at: DateTime<Utc>,
    /// The event that caused it: one firing of its rule is the effects with one cause.
    #[serde(skip)]
    pub cause: i64,
}

/// The rule an effect names: its actor's (`robot:<rule>`), else its payload's `rule`.
fn rule_of(rec: &RecordedEvent, payload: &Value) -> String {
    if let Some(r) = crate::explain::rule_of(&rec.actor) {
        return r.to_owned();
    }
    payload
        .get("rule")
        .and_then(Value::as_str)
        .unwrap_or("system")
        .to_owned()
}

/// The effect a recorded event is, if it is one ([`Role::Effect`]); `name` gives each stream
/// its stable name.
pub fn effect(rec: &RecordedEvent, name: &dyn Fn(StreamId) -> String) -> Option<Effect> {
    if role(rec) != Role::Effect {
        return None;
    }
    let mut v: Value = serde_json::from_str(&rec.payload).unwrap_or(Value::Null);
    let rule = rule_of(rec, &v);
    if let Value::Object(o) = &mut v {
        for k in UNSTABLE {
            o.remove(k);
        }
        for (key, kind) in ID_KEYS {
            if let Some(id) = o.get(key).and_then(Value::as_i64) {
                o.insert(key.into(), Value::from(name(StreamId::new(kind, id))));
            }
        }
        for (key, kind) in ID_LISTS {
            if let Some(Value::Array(ids)) = o.get_mut(key) {
                for id in ids.iter_mut() {
                    if let Some(n) = id.as_i64() {
                        *id = Value::from(name(StreamId::new(kind, n)));
                    }
                }
            }
        }
    }
    Some(Effect {
        subject: name(rec.stream),
        rule,
        kind: rec.event_type.clone(),
        detail: v.to_string(),
        at: rec.occurred_at().unwrap_or_default(),
        cause: rec.causation.unwrap_or(rec.position),
    })
}

/// An input the candidate's state made impossible, or an external robot's outcome for a
/// request the candidate did not make: reported for its subject, not fed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Divergence {
    /// The stable name of the stream the input was for.
    pub subject: String,
    /// Its position in the live log.
    pub position: i64,
    /// When it happened.
    pub at: DateTime<Utc>,
    /// Its stored type.
    #[serde(rename = "type")]
    pub kind: String,
    /// Who did it.
    pub actor: String,
    /// Why the candidate could not take it.
    pub reason: String,
}

/// One difference in a subject's effects.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Change {
    /// `added` (only the candidate did it), `removed` (only the live history has it) or
    /// `changed` (both, differently).
    pub change: &'static str,
    /// The rule that caused it.
    pub rule: String,
    /// The effect's stored type.
    #[serde(rename = "type")]
    pub kind: String,
    /// The live history's effect (removed, changed).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub live: Option<Side>,
    /// The candidate's effect (added, changed).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub candidate: Option<Side>,
}

/// One run's side of a change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Side {
    /// When.
    pub at: DateTime<Utc>,
    /// What (the normalised payload).
    pub detail: Value,
}

/// The differences of one subject (a lead, deal, contact, company, task or the system).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct SubjectDiff {
    /// Its stable name.
    pub subject: String,
    /// Effects added, removed or changed.
    pub changes: Vec<Change>,
    /// Inputs the candidate could not take.
    pub divergences: Vec<Divergence>,
}

/// How many of something each run has.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    /// In the live history.
    pub live: u64,
    /// Under the candidate.
    pub candidate: u64,
}

/// What a backtest found.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Diff {
    /// Leads and deals the compared period touched (inputs or effects).
    pub subjects: usize,
    /// Subjects with a difference or a divergence, by stable name.
    pub differing: Vec<SubjectDiff>,
    /// Effects per stored type.
    pub by_type: BTreeMap<String, Counts>,
    /// Firings (effects with one cause) per rule.
    pub by_rule: BTreeMap<String, Counts>,
    /// Inputs the candidate could not take.
    pub divergences: usize,
}

impl Diff {
    /// Whether the candidate reproduces the live history exactly.
    pub fn is_empty(&self) -> bool {
        self.differing.is_empty()
    }

    /// Leads and deals with a difference of their own or of something made from them (a
    /// task, a deal, a contact).
    pub fn differing_leads_and_deals(&self) -> usize {
        let roots: std::collections::BTreeSet<&str> = self
            .differing
            .iter()
            .map(|d| root(&d.subject))
            .filter(|s| is_lead_or_deal(s))
            .collect();
        roots.len()
    }

    /// The summary a designer acts on: "the candidate creates 14 more tasks and 3 fewer
    /// escalations; 27 of 300 leads and deals differ; rule `x` fires 41 times more".
    pub fn summary(&self) -> String {
        if self.is_empty() {
            return format!(
                "no differences: the candidate reproduces the live history of {} lead{} and deal{} exactly",
                self.subjects,
                plural(self.subjects as u64),
                plural(self.subjects as u64)
            );
        }
        let mut parts = Vec::new();
        let mut more_less = Vec::new();
        for (ty, c) in &self.by_type {
            if c.live == c.candidate {
                continue;
            }
            let (n, word) = if c.candidate > c.live {
                (c.candidate - c.live, "more")
            } else {
                (c.live - c.candidate, "fewer")
            };
            more_less.push(format!("{n} {word} {}", noun(ty, n)));
        }
        if more_less.is_empty() {
            parts.push(
                "the candidate makes as many effects of each kind, but different ones".to_owned(),
            );
        } else {
            parts.push(format!("the candidate makes {}", join_and(&more_less)));
        }
        parts.push(format!(
            "{} of {} leads and deals differ",
            self.differing_leads_and_deals(),
            self.subjects
        ));
        let mut rules: Vec<(&String, i64)> = self
            .by_rule
            .iter()
            .map(|(r, c)| (r, c.candidate as i64 - c.live as i64))
            .filter(|(r, d)| *d != 0 && r.as_str() != "system")
            .collect();
        rules.sort_by_key(|(r, d)| (-d.abs(), (*r).clone()));
        for (r, d) in rules.iter().take(5) {
            let n = d.unsigned_abs();
            let what = if *d > 0 { "more" } else { "fewer" };
            parts.push(format!("rule `{r}` fires {n} time{} {what}", plural(n)));
        }
        if self.divergences > 0 {
            parts.push(format!(
                "{} input{} could not happen under the candidate",
                self.divergences,
                plural(self.divergences as u64)
            ));
        }
        parts.join("; ")
    }
}

fn plural(n: u64) -> &'static str {
    if n == 1 { "" } else { "s" }
}

/// The stream a stable name comes from: `task by r from lead-1 #2` → `lead-1`.
pub fn root(subject: &str) -> &str {
    let last = subject.rsplit(" from ").next().unwrap_or(subject);
    last.split(" #").next().unwrap_or(last)
}

fn is_lead_or_deal(subject: &str) -> bool {
    subject.starts_with("lead") || subject.starts_with("deal")
}

/// An effect type as a noun: `task.created` → "tasks".
fn noun(ty: &str, n: u64) -> String {
    let one = match ty {
        "task.created" => "task",
        "escalation.recorded" => "escalation",
        "incident.recorded" => "incident",
        "notification.queued" => "notification",
        "deadline.scheduled" => "deadline",
        "deadline.cancelled" => "deadline cancelled",
        "lead.assigned" => "lead assignment",
        "deal.assigned" => "deal assignment",
        "lead.stage_changed" => "lead stage move",
        "deal.stage_changed" => "deal stage move",
        "deal.created" => "deal",
        "contact.created" => "contact",
        "company.created" => "company",
        "robots.delayed" => "delayed robot run",
        "robot.requested" => "external robot request",
        other => return format!("{other} event{}", plural(n)),
    };
    if n == 1 {
        one.to_owned()
    } else if let Some(stem) = one.strip_suffix('y') {
        format!("{stem}ies")
    } else {
        format!("{one}s")
    }
}

fn join_and(items: &[String]) -> String {
    match items {
        [] => String::new(),
        [one] => one.clone(),
        [init @ .., last] => format!("{} and {last}", init.join(", ")),
    }
}

/// A bucket of effects that must match: one subject, rule and type.
type Bucket = (String, String, String);

/// Compares two runs' effects as they come, in bounded memory: equal effects cancel out at
/// once, so only the differences are kept (plus the counts).
#[derive(Debug, Default)]
pub struct Comparison {
    /// Per bucket, per detail: how many more the candidate has (negative: the live run), with
    /// the time of one of them on each side.
    open: HashMap<Bucket, HashMap<String, Balance>>,
    by_type: BTreeMap<String, Counts>,
    by_rule: BTreeMap<String, Counts>,
    last_firing: [Option<(String, i64)>; 2],
    subjects: std::collections::HashSet<String>,
    divergences: Vec<Divergence>,
}

#[derive(Debug, Default, Clone)]
struct Balance {
    n: i64,
    live_at: Vec<DateTime<Utc>>,
    candidate_at: Vec<DateTime<Utc>>,
}

impl Comparison {
    /// An empty comparison.
    pub fn new() -> Comparison {
        Comparison::default()
    }

    /// A lead or deal the compared period touched.
    pub fn touch(&mut self, subject: &str) {
        if is_lead_or_deal(subject) && !self.subjects.contains(subject) {
            self.subjects.insert(subject.to_owned());
        }
    }

    /// One of the live history's effects.
    pub fn live(&mut self, e: Effect) {
        self.add(e, false);
    }

    /// One of the candidate's effects.
    pub fn candidate(&mut self, e: Effect) {
        self.add(e, true);
    }

    /// An input the candidate could not take.
    pub fn diverged(&mut self, d: Divergence) {
        self.touch(&d.subject);
        self.divergences.push(d);
    }

    fn add(&mut self, e: Effect, candidate: bool) {
        self.touch(&e.subject);
        let side = usize::from(candidate);
        let count = |c: &mut Counts| {
            if candidate {
                c.candidate += 1
            } else {
                c.live += 1
            }
        };
        count(self.by_type.entry(e.kind.clone()).or_default());
        let firing = (e.rule.clone(), e.cause);
        if self.last_firing[side].as_ref() != Some(&firing) {
            count(self.by_rule.entry(e.rule.clone()).or_default());
            self.last_firing[side] = Some(firing);
        }
        let bucket = self.open.entry((e.subject, e.rule, e.kind)).or_default();
        let b = bucket.entry(e.detail.clone()).or_default();
        // Only the unmatched ones' times are kept: a match takes the oldest of the other side.
        let (mine, other) = if candidate {
            b.n += 1;
            (&mut b.candidate_at, &mut b.live_at)
        } else {
            b.n -= 1;
            (&mut b.live_at, &mut b.candidate_at)
        };
        if other.is_empty() {
            mine.push(e.at);
        } else {
            other.remove(0);
        }
        if b.n == 0 {
            bucket.remove(&e.detail);
        }
    }

    /// The differences, by subject (only `keep`'s subjects, when it says no), with the counts.
    pub fn finish(self, keep: &dyn Fn(&str) -> bool) -> Diff {
        let mut subjects: BTreeMap<String, SubjectDiff> = BTreeMap::new();
        let mut buckets: Vec<(Bucket, HashMap<String, Balance>)> = self
            .open
            .into_iter()
            .filter(|(_, details)| !details.is_empty())
            .collect();
        buckets.sort_by(|a, b| a.0.cmp(&b.0));
        for ((subject, rule, kind), details) in buckets {
            if !keep(&subject) {
                continue;
            }
            let mut removed = Vec::new();
            let mut added = Vec::new();
            let mut details: Vec<(String, Balance)> = details.into_iter().collect();
            details.sort_by(|a, b| a.0.cmp(&b.0));
            for (detail, b) in details {
                let value: Value = serde_json::from_str(&detail).unwrap_or(Value::String(detail));
                for at in b.live_at {
                    removed.push(Side {
                        at,
                        detail: value.clone(),
                    });
                }
                for at in b.candidate_at {
                    added.push(Side {
                        at,
                        detail: value.clone(),
                    });
                }
            }
            removed.sort_by_key(|s| s.at);
            added.sort_by_key(|s| s.at);
            let entry = subjects
                .entry(subject.clone())
                .or_insert_with(|| SubjectDiff {
                    subject: subject.clone(),
                    ..SubjectDiff::default()
                });
            let paired = removed.len().min(added.len());
            let mut removed = removed.into_iter();
            let mut added = added.into_iter();
            for _ in 0..paired {
                entry.changes.push(Change {
                    change: "changed",
                    rule: rule.clone(),
                    kind: kind.clone(),
                    live: removed.next(),
                    candidate: added.next(),
                });
            }
            for live in removed {
                entry.changes.push(Change {
                    change: "removed",
                    rule: rule.clone(),
                    kind: kind.clone(),
                    live: Some(live),
                    candidate: None,
                });
            }
            for candidate in added {
                entry.changes.push(Change {
                    change: "added",
                    rule: rule.clone(),
                    kind: kind.clone(),
                    live: None,
                    candidate: Some(candidate),
                });
            }
        }
        let divergences = self.divergences.len();
        for d in self.divergences {
            if !keep(&d.subject) {
                continue;
            }
            subjects
                .entry(d.subject.clone())
                .or_insert_with(|| SubjectDiff {
                    subject: d.subject.clone(),
                    ..SubjectDiff::default()
                })
                .divergences
                .push(d);
        }
        for s in subjects.values_mut() {
            s.changes.sort_by_key(|c| {
                c.live
                    .as_ref()
                    .or(c.candidate.as_ref())
                    .map(|s| s.at)
                    .unwrap_or_default()
            });
        }
        Diff {
            subjects: self.subjects.iter().filter(|s| keep(s)).count(),
            differing: subjects.into_values().collect(),
            by_type: self.by_type,
            by_rule: self.by_rule,
            divergences,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn eff(subject: &str, rule: &str, kind: &str, detail: &str, cause: i64) -> Effect {
        Effect {
            subject: subject.into(),
            rule: rule.into(),
            kind: kind.into(),
            detail: detail.into(),
            at: Utc.with_ymd_and_hms(2026, 3, 2, 9, 0, 0).unwrap(),
            cause,
        }
    }

    #[test]
    fn equal_effects_cancel_and_leave_no_difference() {
        let mut c = Comparison::new();
        c.live(eff("lead-1", "r", "task.created", "{\"a\":1}", 1));
        c.candidate(eff("lead-1", "r", "task.created", "{\"a\":1}", 7));
        let d = c.finish(&|_| true);
        assert!(d.is_empty(), "{d:?}");
        assert_eq!(d.subjects, 1);
        assert!(d.summary().starts_with("no differences"), "{}", d.summary());
    }

    #[test]
    fn unmatched_effects_are_changes_additions_and_removals_with_a_summary() {
        let mut c = Comparison::new();
        c.live(eff("lead-1", "r", "task.created", "{\"a\":1}", 1));
        c.candidate(eff("lead-1", "r", "task.created", "{\"a\":2}", 5));
        c.candidate(eff("lead-2", "x", "task.created", "{}", 6));
        c.live(eff("lead-3", "esc", "escalation.recorded", "{}", 3));
        let d = c.finish(&|_| true);
        let kinds: Vec<(&str, &str)> = d
            .differing
            .iter()
            .flat_map(|s| s.changes.iter().map(|c| (s.subject.as_str(), c.change)))
            .collect();
        assert_eq!(
            kinds,
            [
                ("lead-1", "changed"),
                ("lead-2", "added"),
                ("lead-3", "removed")
            ]
        );
        assert_eq!(
            d.summary(),
            "the candidate makes 1 fewer escalation and 1 more task; 3 of 3 leads and deals differ; rule `esc` fires 1 time fewer; rule `x` fires 1 time more"
        );
    }

    #[test]
    fn a_move_comes_back_as_the_command_that_makes_it_and_a_creation_does_not() {
        let lead = StreamId::new(EntityKind::Lead, 4);
        let moved = Event::LeadStageChanged(crate::event::StageChanged {
            from: "new".into(),
            to: "in_work".into(),
            reason: None,
        });
        assert_eq!(
            command_of(lead, &moved),
            Some(Command::MoveLead {
                id: 4,
                stage: "in_work".into(),
                reason: None
            })
        );
        assert_eq!(
            command_of(
                lead,
                &Event::LeadCommented(crate::event::Commented { text: "x".into() })
            ),
            None
        );
    }
}
