//! An in-memory [`Backend`]: the event log, entity states and the rules' bookkeeping (timers,
//! cursors, schedules, idle marks, pending requests) in plain collections.
//!
//! For tests of the rules and robots without SQLite, and for sandboxes that must never touch a
//! live database. It folds events with the same [`crate::model::apply`] the store's projector
//! uses and answers every [`View`] query by a scan, so it is small and obviously right rather
//! than fast. It keeps no hash chain (every hash is zero). A write transaction works on a copy
//! that replaces the state when it commits; a savepoint is a copy too.

use crate::command::{Command, Target};
use crate::config::Config;
use crate::decide::{Lookup, TokenState, check_actor, decide};
use crate::event::{Event, EventMeta};
use crate::ids::{EmployeeId, EntityKind, StreamId};
use crate::model::Entity;
use crate::stored::{
    Appended, Executed, PendingRequest, PendingTimer, RecordedEvent, fmt_time, parse_time,
};
use crate::workspace::{
    Backend, BackendError, IncidentQuery, KpiCounts, KpiQuery, MatchKey, Stamp, View, Workspace,
    WorkspaceError,
};
use chrono::{DateTime, Utc};
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// Why the in-memory backend refused an append.
#[derive(Debug, thiserror::Error)]
pub enum MemoryError {
    /// The stream is not at the version the append expected.
    #[error("{stream} is at version {actual}, not {expected}")]
    Conflict {
        /// The stream.
        stream: StreamId,
        /// The version the caller expected.
        expected: i64,
        /// Its version.
        actual: i64,
    },
    /// The event does not belong in that kind of stream.
    #[error("a {event} event cannot go to stream {stream}")]
    WrongStream {
        /// The event's type.
        event: &'static str,
        /// The stream.
        stream: StreamId,
    },
}

fn backend(e: MemoryError) -> WorkspaceError {
    WorkspaceError::Backend(BackendError::new(e))
}

/// The in-memory database. `Clone` copies it whole.
#[derive(Debug, Clone, Default)]
pub struct Memory {
    events: Vec<RecordedEvent>,
    decoded: Vec<Event>,
    versions: HashMap<StreamId, i64>,
    entities: HashMap<StreamId, Entity>,
    cursors: HashMap<String, i64>,
    /// Pending timers by (due time, id).
    timers: BTreeMap<(DateTime<Utc>, i64), (StreamId, PendingTimer)>,
    schedules: HashMap<String, DateTime<Utc>>,
    idle_marks: HashMap<(EntityKind, i64, String), DateTime<Utc>>,
    /// Pending requests, with the time a claim on each lapses.
    requests: BTreeMap<i64, Option<DateTime<Utc>>>,
    /// The `recorded_at` of the transaction in progress.
    recorded_at: String,
}

impl Memory {
    /// An empty database.
    pub fn new() -> Memory {
        Memory::default()
    }

    /// Every event, in position order.
    pub fn events(&self) -> &[RecordedEvent] {
        &self.events
    }

    /// The stored types of a stream's events, in order.
    pub fn types(&self, stream: StreamId) -> Vec<&str> {
        self.events
            .iter()
            .filter(|e| e.stream == stream)
            .map(|e| e.event_type.as_str())
            .collect()
    }

    fn next_id(&self, kind: EntityKind) -> i64 {
        self.versions
            .keys()
            .filter(|s| s.kind == kind)
            .map(|s| s.id)
            .max()
            .unwrap_or(0)
            + 1
    }

    fn unset(&mut self, id: i64) {
        self.timers.retain(|(_, i), _| *i != id);
    }

    fn set_timer(&mut self, stream: StreamId, timer: PendingTimer) {
        self.timers
            .insert((timer.due_at, timer.id), (stream, timer));
    }

    /// The bookkeeping the store keeps in side tables (timers, schedules, idle marks,
    /// pending requests), for one event.
    fn side_effects(&mut self, position: i64, stream: StreamId, event: &Event) {
        let timer = |what: &str, due_at, name: Option<String>| PendingTimer {
            id: position,
            due_at,
            what: what.into(),
            name,
            stage: None,
            survive_move: false,
        };
        match event {
            Event::DeadlineScheduled(d) => {
                self.set_timer(stream, timer("deadline", d.due_at, Some(d.name.clone())))
            }
            Event::DeadlineCancelled(d) => self.unset(d.scheduled),
            Event::DeadlineElapsed(d) => self.unset(d.scheduled),
            Event::RobotsDelayed(d) => self.set_timer(
                stream,
                PendingTimer {
                    stage: d.stage.as_ref().map(|s| s.to_string()),
                    survive_move: d.survive_move,
                    ..timer("robots", d.due_at, Some(d.rule.clone()))
                },
            ),
            Event::RobotsResumed(r) => self.unset(r.delayed),
            Event::RobotsCancelled(r) => self.unset(r.delayed),
            Event::TaskCreated(t) => self.set_timer(stream, timer("task", t.due_at, None)),
            Event::TaskCompleted(_) | Event::TaskOverdue(_) => {
                self.timers.retain(|_, (s, _)| *s != stream)
            }
            Event::IdleDetected(i) => {
                self.idle_marks
                    .insert((stream.kind, stream.id, i.rule.clone()), i.since);
            }
            Event::ScheduleFired(f) => {
                self.schedules.insert(f.rule.clone(), f.due_at);
            }
            Event::RobotRequested(_) => {
                self.requests.insert(position, None);
            }
            Event::RobotStarted(r) => {
                if let Some(claim) = self.requests.get_mut(&r.request) {
                    *claim = Some(r.until);
                }
            }
            Event::RobotCompleted(c) => {
                self.requests.remove(&c.request);
            }
            _ => {}
        }
    }

    fn event_at_(&self, position: i64) -> Option<RecordedEvent> {
        usize::try_from(position - 1)
            .ok()
            .and_then(|i| self.events.get(i))
            .cloned()
    }

    fn decoded_of(&self, kind: &str) -> impl Iterator<Item = (&RecordedEvent, &Event)> {
        self.events
            .iter()
            .zip(&self.decoded)
            .filter(move |(r, _)| r.event_type == kind)
    }

    fn leads_and_deals(&self, kind: EntityKind) -> impl Iterator<Item = &Entity> {
        self.entities
            .values()
            .filter(move |e| e.stream().kind == kind)
    }
}

/// An entity's responsible, stage and last change, for the queries that filter on them.
fn facts(e: &Entity) -> (Option<&EmployeeId>, Option<&str>, Option<DateTime<Utc>>) {
    match e {
        Entity::Lead(l) => (
            l.responsible.as_ref(),
            Some(l.stage.as_str()),
            Some(l.updated_at),
        ),
        Entity::Deal(d) => (
            d.responsible.as_ref(),
            Some(d.stage.as_str()),
            Some(d.updated_at),
        ),
        _ => (None, None, None),
    }
}

struct Exists<'a>(&'a Memory);

impl Lookup for Exists<'_> {
    fn exists(&self, stream: StreamId) -> bool {
        self.0.entities.contains_key(&stream)
    }

    fn token(&self, name: &str) -> Option<TokenState> {
        let mut named: BTreeMap<StreamId, bool> = BTreeMap::new();
        for (rec, event) in self.0.events.iter().zip(&self.0.decoded) {
            match event {
                Event::TokenCreated(t) if t.name == name => {
                    named.insert(rec.stream, false);
                }
                Event::TokenRevoked(t) if t.name == name => {
                    named.insert(rec.stream, true);
                }
                _ => {}
            }
        }
        let (stream, revoked) = named
            .iter()
            .find(|(_, revoked)| !**revoked)
            .or_else(|| named.iter().next_back())?;
        Some(TokenState {
            stream: *stream,
            version: self.0.versions.get(stream).copied().unwrap_or(0),
            revoked: *revoked,
        })
    }
}

impl View for Memory {
    fn load(&mut self, stream: StreamId) -> Result<Option<Entity>, WorkspaceError> {
        Ok(self.entities.get(&stream).cloned())
    }

    fn event_at(&mut self, position: i64) -> Result<Option<RecordedEvent>, WorkspaceError> {
        Ok(self.event_at_(position))
    }

    fn event_of(
        &mut self,
        stream: StreamId,
        version: i64,
    ) -> Result<Option<RecordedEvent>, WorkspaceError> {
        Ok(self
            .events
            .iter()
            .find(|e| e.stream == stream && e.version == version)
            .cloned())
    }

    fn latest_of_type(
        &mut self,
        stream: StreamId,
        event_type: &str,
    ) -> Result<Option<RecordedEvent>, WorkspaceError> {
        Ok(self
            .events
            .iter()
            .rev()
            .find(|e| e.stream == stream && e.event_type == event_type)
            .cloned())
    }

    fn cause_of(&mut self, position: i64) -> Result<Option<(Option<i64>, String)>, WorkspaceError> {
        Ok(self
            .event_at_(position)
            .map(|e| (e.causation, e.event_type)))
    }

    fn pending_timers(&mut self, stream: StreamId) -> Result<Vec<PendingTimer>, WorkspaceError> {
        let mut out: Vec<PendingTimer> = self
            .timers
            .values()
            .filter(|(s, _)| *s == stream)
            .map(|(_, t)| t.clone())
            .collect();
        out.sort_by_key(|t| t.id);
        Ok(out)
    }

    fn incident_count(&mut self, q: &IncidentQuery<'_>) -> Result<i64, WorkspaceError> {
        let escalated = if q.after_escalation {
            self.decoded_of("escalation.recorded")
                .filter(|(_, e)| {
                    matches!(e, Event::EscalationRecorded(x)
                        if &x.employee == q.employee && Some(x.kind.as_str()) == q.kind)
                })
                .map(|(r, _)| r.position)
                .max()
                .unwrap_or(0)
        } else {
            0
        };
        Ok(self
            .decoded_of("incident.recorded")
            .filter(|(r, e)| {
                let Event::IncidentRecorded(i) = e else {
                    return false;
                };
                i.employee.as_ref() == Some(q.employee)
                    && q.kind.is_none_or(|k| k == i.kind)
                    && parse_time(&r.occurred_at).is_some_and(|t| t >= q.since)
                    && r.position > escalated
            })
            .count() as i64)
    }

    fn open_items(
        &mut self,
        employee: &EmployeeId,
        kind: EntityKind,
        stages: &[String],
    ) -> Result<i64, WorkspaceError> {
        Ok(self
            .leads_and_deals(kind)
            .filter(|e| {
                let (r, stage, _) = facts(e);
                r == Some(employee) && stage.is_some_and(|s| stages.iter().any(|x| x == s))
            })
            .count() as i64)
    }

    fn last_assigned(
        &mut self,
        employee: &EmployeeId,
        kind: EntityKind,
    ) -> Result<i64, WorkspaceError> {
        Ok(self
            .leads_and_deals(kind)
            .filter(|e| facts(e).0 == Some(employee))
            .map(|e| e.stream().id)
            .max()
            .unwrap_or(0))
    }

    fn company_by_inn(&mut self, inn: &str) -> Result<Option<i64>, WorkspaceError> {
        Ok(self
            .entities
            .values()
            .filter_map(|e| match e {
                Entity::Company(c) if c.inn.as_deref() == Some(inn) => Some(c.id),
                _ => None,
            })
            .min())
    }

    fn matching(
        &mut self,
        what: MatchKey,
        values: &[String],
        kind: EntityKind,
        before: Option<i64>,
    ) -> Result<Vec<i64>, WorkspaceError> {
        let wanted: BTreeSet<String> = values.iter().map(|v| what.normalize(v)).collect();
        let keys = |e: &Entity| -> Vec<String> {
            crate::workspace::match_keys(e)
                .into_iter()
                .filter(|(w, _)| *w == what)
                .map(|(_, v)| v)
                .collect()
        };
        let mut ids: Vec<i64> = self
            .entities
            .values()
            .filter(|e| e.stream().kind == kind)
            .filter(|e| before.is_none_or(|b| e.stream().id < b))
            .filter(|e| keys(e).iter().any(|k| wanted.contains(k)))
            .map(|e| e.stream().id)
            .collect();
        ids.sort_unstable();
        Ok(ids)
    }

    fn kpi(&mut self, q: &KpiQuery<'_>) -> Result<KpiCounts, WorkspaceError> {
        let in_period = |t: DateTime<Utc>| t > q.since && t <= q.until;
        let responsible = |id: i64| -> Option<String> {
            match self.entities.get(&StreamId::new(EntityKind::Lead, id)) {
                Some(Entity::Lead(l)) => l.responsible.as_ref().map(|r| r.to_string()),
                _ => None,
            }
        };
        let mut out = KpiCounts::default();
        for e in self.entities.values() {
            if let Entity::Lead(l) = e
                && in_period(l.created_at)
                && let Some(r) = &l.responsible
            {
                *out.leads_in.entry(r.to_string()).or_default() += 1;
            }
            if let Entity::Task(t) = e
                && t.completed_at.is_none()
                && t.due_at < q.until
            {
                *out.overdue.entry(t.assignee.to_string()).or_default() += 1;
            }
        }
        // Stage entries of leads in the lead pipeline, once per lead and kind.
        let mut converted = BTreeSet::new();
        let mut lost = BTreeSet::new();
        for (rec, event) in self.events.iter().zip(&self.decoded) {
            if rec.stream.kind != EntityKind::Lead {
                continue;
            }
            let entered = match event {
                Event::LeadCreated(c) if c.pipeline.as_str() == q.pipeline => Some(&c.stage),
                Event::LeadStageChanged(s) => Some(&s.to),
                _ => None,
            };
            let (Some(stage), Some(at)) = (entered, parse_time(&rec.occurred_at)) else {
                continue;
            };
            if !in_period(at) {
                continue;
            }
            if q.success.iter().any(|s| s == stage.as_str()) {
                converted.insert(rec.stream.id);
            }
            if q.failure.iter().any(|s| s == stage.as_str()) {
                lost.insert(rec.stream.id);
            }
        }
        for (set, map) in [(converted, &mut out.converted), (lost, &mut out.lost)] {
            for id in set {
                if let Some(r) = responsible(id) {
                    *map.entry(r).or_default() += 1;
                }
            }
        }
        Ok(out)
    }

    fn request_pending(
        &mut self,
        position: i64,
    ) -> Result<Option<Option<DateTime<Utc>>>, WorkspaceError> {
        Ok(self.requests.get(&position).copied())
    }

    fn schedule_fired_at(&mut self, rule: &str) -> Result<Option<DateTime<Utc>>, WorkspaceError> {
        Ok(self.schedules.get(rule).copied())
    }

    fn idle_candidates(
        &mut self,
        kind: EntityKind,
        rule: &str,
        cutoff: DateTime<Utc>,
        stages: &[String],
    ) -> Result<Vec<(i64, DateTime<Utc>)>, WorkspaceError> {
        let mut out: Vec<(i64, DateTime<Utc>)> = self
            .leads_and_deals(kind)
            .filter_map(|e| {
                let (_, stage, updated) = facts(e);
                let updated = updated?;
                let id = e.stream().id;
                let marked = self
                    .idle_marks
                    .get(&(kind, id, rule.to_owned()))
                    .is_some_and(|since| *since >= updated);
                (updated <= cutoff
                    && stage.is_some_and(|s| stages.iter().any(|x| x == s))
                    && !marked)
                    .then_some((id, updated))
            })
            .collect();
        out.sort_unstable();
        Ok(out)
    }
}

impl Workspace for Memory {
    fn execute(
        &mut self,
        config: &Config,
        command: &Command,
        meta: &EventMeta,
    ) -> Result<Executed, WorkspaceError> {
        check_actor(config, &meta.actor)?;
        let (stream, current) = match command.target() {
            Target::New(kind) => (StreamId::new(kind, self.next_id(kind)), None),
            Target::Existing(stream) => (stream, self.entities.get(&stream).cloned()),
            Target::Token(name) => match Exists(self).token(name) {
                Some(t) => (t.stream, None),
                None => (
                    StreamId::new(EntityKind::Token, self.next_id(EntityKind::Token)),
                    None,
                ),
            },
        };
        let decision = decide(config, command, stream, current.as_ref(), &Exists(self))?;
        let stream = decision.stream;
        if decision.events.is_empty() {
            return Ok(Executed {
                stream,
                events: vec![],
                appended: None,
            });
        }
        let appended = self.append(stream, decision.expected_version, &decision.events, meta)?;
        Ok(Executed {
            stream,
            events: decision.events,
            appended: Some(appended),
        })
    }

    fn append(
        &mut self,
        stream: StreamId,
        expected: i64,
        events: &[Event],
        meta: &EventMeta,
    ) -> Result<Appended, WorkspaceError> {
        let actual = self.versions.get(&stream).copied().unwrap_or(0);
        if actual != expected {
            return Err(backend(MemoryError::Conflict {
                stream,
                expected,
                actual,
            }));
        }
        if let Some(e) = events.iter().find(|e| !e.fits(stream.kind)) {
            return Err(backend(MemoryError::WrongStream {
                event: e.event_type(),
                stream,
            }));
        }
        let first = self.events.len() as i64 + 1;
        let correlation = meta.correlation.unwrap_or(first);
        let mut version = actual;
        for event in events {
            let position = self.events.len() as i64 + 1;
            version += 1;
            self.events.push(RecordedEvent {
                position,
                stream,
                version,
                event_type: event.event_type().to_owned(),
                schema_version: event.schema_version() as i64,
                payload: event.payload(),
                occurred_at: fmt_time(meta.occurred_at),
                recorded_at: self.recorded_at.clone(),
                actor: meta.actor.to_string(),
                causation: meta.causation,
                correlation,
                hash: [0; 32],
            });
            self.decoded.push(event.clone());
            if stream.kind.is_entity() {
                let prior = self.entities.remove(&stream);
                if let Some(e) = crate::model::apply(prior, event, meta.occurred_at) {
                    self.entities.insert(stream, e);
                }
            }
            self.side_effects(position, stream, event);
        }
        self.versions.insert(stream, version);
        Ok(Appended {
            stream,
            first_position: first,
            last_position: version - actual + first - 1,
            version,
        })
    }

    fn version(&mut self, stream: StreamId) -> Result<i64, WorkspaceError> {
        Ok(self.versions.get(&stream).copied().unwrap_or(0))
    }

    fn head_position(&self) -> i64 {
        self.events.len() as i64
    }

    fn read_after(
        &mut self,
        after: i64,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>, WorkspaceError> {
        Backend::read_after(self, after, limit)
    }

    fn cursor(&mut self, name: &str) -> Result<Option<i64>, WorkspaceError> {
        Ok(self.cursors.get(name).copied())
    }

    fn set_cursor(&mut self, name: &str, position: i64) -> Result<(), WorkspaceError> {
        self.cursors.insert(name.to_owned(), position);
        Ok(())
    }

    fn last_cause_after(
        &mut self,
        after: i64,
        except: &[&str],
    ) -> Result<Option<i64>, WorkspaceError> {
        Ok(self
            .events
            .iter()
            .filter(|e| e.position > after && !except.contains(&e.event_type.as_str()))
            .filter_map(|e| e.causation.filter(|c| *c > after))
            .max())
    }

    fn take_due_timers(
        &mut self,
        now: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<(StreamId, PendingTimer)>, WorkspaceError> {
        let due: Vec<(DateTime<Utc>, i64)> = self
            .timers
            .keys()
            .take_while(|(t, _)| *t <= now)
            .take(limit)
            .copied()
            .collect();
        Ok(due
            .into_iter()
            .filter_map(|k| self.timers.remove(&k))
            .collect())
    }

    fn atomically(
        &mut self,
        f: &mut dyn FnMut(&mut dyn Workspace) -> bool,
    ) -> Result<bool, WorkspaceError> {
        let saved = self.clone();
        let kept = f(self);
        if !kept {
            *self = saved;
        }
        Ok(kept)
    }
}

impl Backend for Memory {
    fn write<T, E: From<WorkspaceError>>(
        &mut self,
        stamp: Stamp<'_>,
        f: impl FnOnce(&mut dyn Workspace) -> Result<T, E>,
    ) -> Result<T, E> {
        let mut tx = self.clone();
        tx.recorded_at = fmt_time(match stamp {
            Stamp::At(t) => t,
            Stamp::Clock(c) => c.now(),
        });
        let out = f(&mut tx)?;
        *self = tx;
        Ok(out)
    }

    fn cursor(&self, name: &str) -> Result<Option<i64>, WorkspaceError> {
        Ok(self.cursors.get(name).copied())
    }

    fn last_position(&self) -> Result<i64, WorkspaceError> {
        Ok(self.events.len() as i64)
    }

    fn load(&self, stream: StreamId) -> Result<Option<Entity>, WorkspaceError> {
        Ok(self.entities.get(&stream).cloned())
    }

    fn read_after(&self, after: i64, limit: usize) -> Result<Vec<RecordedEvent>, WorkspaceError> {
        let from = usize::try_from(after.max(0)).unwrap_or(usize::MAX);
        Ok(self.events.iter().skip(from).take(limit).cloned().collect())
    }

    fn pending_requests(
        &self,
        after: i64,
        limit: usize,
    ) -> Result<Vec<PendingRequest>, WorkspaceError> {
        Ok(self
            .requests
            .range(after + 1..)
            .take(limit)
            .filter_map(|(p, claimed_until)| {
                Some(PendingRequest {
                    request: self.event_at_(*p)?,
                    claimed_until: *claimed_until,
                })
            })
            .collect())
    }

    fn next_timer_due(&self) -> Result<Option<DateTime<Utc>>, WorkspaceError> {
        Ok(self.timers.keys().next().map(|(t, _)| *t))
    }

    fn oldest_change_after(
        &self,
        kind: EntityKind,
        after: DateTime<Utc>,
        stages: &[String],
    ) -> Result<Option<DateTime<Utc>>, WorkspaceError> {
        Ok(self
            .leads_and_deals(kind)
            .filter_map(|e| {
                let (_, stage, updated) = facts(e);
                let updated = updated?;
                (updated > after && stage.is_some_and(|s| stages.iter().any(|x| x == s)))
                    .then_some(updated)
            })
            .min())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{Actor, IncidentRecorded};

    fn incident() -> Event {
        Event::IncidentRecorded(IncidentRecorded {
            kind: "x".into(),
            employee: None,
            rule: None,
            text: String::new(),
        })
    }

    fn meta() -> EventMeta {
        EventMeta::root(DateTime::UNIX_EPOCH, Actor::System)
    }

    const SYSTEM: StreamId = StreamId {
        kind: EntityKind::System,
        id: 1,
    };

    #[test]
    fn an_append_at_a_stale_version_is_a_conflict_and_appends_nothing() {
        let mut m = Memory::new();
        m.append(SYSTEM, 0, &[incident()], &meta()).unwrap();
        let err = m.append(SYSTEM, 0, &[incident()], &meta()).unwrap_err();
        let WorkspaceError::Backend(b) = err else {
            panic!("{err:?}")
        };
        assert!(matches!(
            b.downcast_ref::<MemoryError>(),
            Some(MemoryError::Conflict {
                expected: 0,
                actual: 1,
                ..
            })
        ));
        assert_eq!(b.to_string(), "system-1 is at version 1, not 0");
        assert_eq!(m.events().len(), 1);
    }

    #[test]
    fn a_savepoint_rolled_back_and_a_failed_write_leave_nothing() {
        let mut m = Memory::new();
        let kept = m
            .atomically(&mut |ws| {
                ws.append(SYSTEM, 0, &[incident()], &meta()).unwrap();
                false
            })
            .unwrap();
        assert!(!kept);
        assert_eq!(m.events().len(), 0);
        let failed: Result<(), WorkspaceError> = m.write(Stamp::At(DateTime::UNIX_EPOCH), |ws| {
            ws.append(SYSTEM, 0, &[incident()], &meta())?;
            ws.append(SYSTEM, 0, &[incident()], &meta())?;
            Ok(())
        });
        assert!(failed.is_err());
        assert_eq!(m.last_position().unwrap(), 0);
        assert_eq!(Backend::cursor(&m, "rules").unwrap(), None);
    }

    #[test]
    fn tokens_are_created_and_revoked_by_name_as_in_the_store() {
        use crate::command::NewToken;
        let config = Config::from_toml("leadflow.toml", crate::config::DEFAULT_CONFIG).unwrap();
        let create = |name: &str| {
            Command::CreateToken(NewToken {
                name: name.into(),
                role: "sales".into(),
                employee: None,
                secret_hash: "ab".repeat(32),
                note: None,
            })
        };
        let revoke = |name: &str| Command::RevokeToken { name: name.into() };
        let mut m = Memory::new();
        let token = |n| StreamId::new(EntityKind::Token, n);
        assert_eq!(
            m.execute(&config, &create("crm"), &meta()).unwrap().stream,
            token(1)
        );
        assert_eq!(
            m.execute(&config, &create("site"), &meta()).unwrap().stream,
            token(2)
        );
        let err = m.execute(&config, &create("crm"), &meta()).unwrap_err();
        assert!(err.to_string().contains("exists already"), "{err}");
        assert_eq!(
            m.execute(&config, &revoke("crm"), &meta()).unwrap().stream,
            token(1)
        );
        let err = m.execute(&config, &revoke("crm"), &meta()).unwrap_err();
        assert!(err.to_string().contains("already revoked"), "{err}");
        let err = m.execute(&config, &revoke("nobody"), &meta()).unwrap_err();
        assert!(err.to_string().contains("unknown token 'nobody'"), "{err}");
        assert_eq!(
            m.execute(&config, &create("crm"), &meta()).unwrap().stream,
            token(3)
        );
        assert_eq!(
            m.execute(&config, &revoke("crm"), &meta()).unwrap().stream,
            token(3)
        );
        assert_eq!(m.events().len(), 5);
    }
}
