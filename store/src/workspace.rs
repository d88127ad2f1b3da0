//! SQLite's side of the engine's [`leadflow_engine::workspace`] traits: a write transaction
//! ([`Tx`]) is the rules' [`View`] and [`Workspace`], the [`Store`] their [`Backend`].
//!
//! Every query the rules and robots make is here, one method each; a second backend
//! implements the same list.

use crate::log::{SELECT_EVENT, Tx, read_log, row_to_event};
use crate::{Error, LogFilter, Store, fmt_time, parse_time};
use chrono::{DateTime, Utc};
use leadflow_engine::ids::EmployeeId;
use leadflow_engine::stored::{Appended, Executed, PendingRequest, PendingTimer, RecordedEvent};
use leadflow_engine::workspace::{
    Backend, BackendError, IncidentQuery, KpiCounts, KpiQuery, MatchKey, Stamp, View, Workspace,
    WorkspaceError,
};
use leadflow_engine::{Command, Config, Entity, EntityKind, Event, EventMeta, StreamId};
use rusqlite::{Connection, OptionalExtension, ToSql, params};
use std::collections::HashSet;

impl From<Error> for WorkspaceError {
    fn from(e: Error) -> Self {
        match e {
            Error::Rejected(r) => WorkspaceError::Rejected(r),
            other => WorkspaceError::Backend(BackendError::new(other)),
        }
    }
}

impl From<WorkspaceError> for Error {
    /// The store's error back from a workspace error (a robot's, say).
    fn from(e: WorkspaceError) -> Self {
        match e {
            WorkspaceError::Rejected(r) => Error::Rejected(r),
            WorkspaceError::Backend(b) => match b.into_inner().downcast::<Error>() {
                Ok(e) => *e,
                Err(other) => match other.downcast::<leadflow_engine::stored::StoredError>() {
                    Ok(e) => (*e).into(),
                    Err(other) => Error::Corrupt {
                        position: 0,
                        why: other.to_string(),
                    },
                },
            },
        }
    }
}

/// The projection table of the leads or deals (`kind`) a rules query reads: the projector's
/// own table, leads for anything that has none of lead or deal.
fn table_of(kind: EntityKind) -> &'static str {
    match kind {
        EntityKind::Lead | EntityKind::Deal => {
            crate::project::table_of(kind).map_or("leads", |t| t.name)
        }
        _ => "leads",
    }
}

/// `?{from}, ?{from+1}, …` for `n` values.
fn marks(from: usize, n: usize) -> String {
    (0..n)
        .map(|i| format!("?{}", i + from))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A stream's event by version: one query (it was a position lookup, then a read of the log
/// from that position: twice the work, in every robot that looks at a stream's first event
/// and in the rules' activation check before each request's reactions).
fn event_of(
    conn: &Connection,
    stream: StreamId,
    version: i64,
) -> Result<Option<RecordedEvent>, Error> {
    let mut stmt = conn.prepare_cached(&format!(
        "{SELECT_EVENT} WHERE s.kind = ?1 AND s.entity_id = ?2 AND e.version = ?3"
    ))?;
    let mut rows = stmt.query_map(
        params![stream.kind.as_str(), stream.id, version],
        row_to_event,
    )?;
    match rows.next() {
        Some(r) => Ok(Some(r??)),
        None => Ok(None),
    }
}

fn event_at(conn: &Connection, position: i64) -> Result<Option<RecordedEvent>, Error> {
    Ok(read_log(conn, &LogFilter::default(), position - 1, 1)?
        .into_iter()
        .next()
        .filter(|e| e.position == position))
}

fn latest_of_type(
    conn: &Connection,
    stream: StreamId,
    event_type: &str,
) -> Result<Option<RecordedEvent>, Error> {
    let position: Option<i64> = conn
        .prepare_cached(
            "SELECT e.position FROM events e JOIN streams s ON s.stream_key = e.stream_key \
             WHERE s.kind = ?1 AND s.entity_id = ?2 AND e.type = ?3 ORDER BY e.version DESC LIMIT 1",
        )?
        .query_row(params![stream.kind.as_str(), stream.id, event_type], |r| {
            r.get(0)
        })
        .optional()?;
    match position {
        Some(p) => event_at(conn, p),
        None => Ok(None),
    }
}

fn cause_of(conn: &Connection, position: i64) -> Result<Option<(Option<i64>, String)>, Error> {
    Ok(conn
        .prepare_cached("SELECT causation, type FROM events WHERE position = ?1")?
        .query_row([position], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?)
}

/// Incidents of an employee (of a kind) in a window: an index range on the window.
const INCIDENTS_IN_WINDOW: &str =
    "SELECT count(*) FROM incidents WHERE employee = ?1 AND kind = ?2 AND at >= ?3";
/// Of every kind.
const ALL_INCIDENTS_IN_WINDOW: &str =
    "SELECT count(*) FROM incidents WHERE employee = ?1 AND at >= ?2";
/// Those since the employee's last escalation of that kind: an index range on position,
/// whatever the window holds (`+at` keeps the planner off the window's index).
const INCIDENTS_SINCE_ESCALATION: &str = "SELECT count(*) FROM incidents WHERE employee = ?1 AND kind = ?2 AND +at >= ?3 \
     AND position > coalesce((SELECT max(position) FROM escalations WHERE employee = ?1 AND kind = ?2), 0)";

fn incident_count(conn: &Connection, q: &IncidentQuery<'_>) -> Result<i64, Error> {
    let since = fmt_time(q.since);
    let employee = q.employee.as_str();
    // (Without a kind there is no escalation of it: every incident in the window counts.)
    let Some(kind) = q.kind else {
        return Ok(conn
            .prepare_cached(ALL_INCIDENTS_IN_WINDOW)?
            .query_row(params![employee, since], |r| r.get(0))?);
    };
    let sql = if q.after_escalation {
        INCIDENTS_SINCE_ESCALATION
    } else {
        INCIDENTS_IN_WINDOW
    };
    Ok(conn
        .prepare_cached(sql)?
        .query_row(params![employee, kind, since], |r| r.get(0))?)
}

fn open_items(
    conn: &Connection,
    employee: &EmployeeId,
    kind: EntityKind,
    stages: &[String],
) -> Result<i64, Error> {
    let sql = format!(
        "SELECT count(*) FROM {} WHERE responsible = ?1 AND stage IN ({})",
        table_of(kind),
        marks(2, stages.len())
    );
    let mut args: Vec<&dyn ToSql> = vec![&employee.0];
    args.extend(stages.iter().map(|s| s as &dyn ToSql));
    Ok(conn
        .prepare_cached(&sql)?
        .query_row(args.as_slice(), |r| r.get(0))?)
}

/// The id of the employee's newest entity of `kind`, or 0: the newest of their rows that is
/// not one of the `changed` entities' (whose rows may be stale), unless `best` (the newest
/// changed one that is theirs) is newer.
fn last_assigned(
    conn: &Connection,
    employee: &EmployeeId,
    kind: EntityKind,
    best: i64,
    changed: &HashSet<i64>,
) -> Result<i64, Error> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT id FROM {} WHERE responsible = ?1 ORDER BY id DESC",
        table_of(kind)
    ))?;
    let mut rows = stmt.query([&employee.0])?;
    while let Some(row) = rows.next()? {
        let id: i64 = row.get(0)?;
        if id <= best {
            break;
        }
        if !changed.contains(&id) {
            return Ok(id);
        }
    }
    Ok(best)
}

fn company_by_inn(conn: &Connection, inn: &str) -> Result<Option<i64>, Error> {
    Ok(conn
        .prepare_cached("SELECT min(id) FROM companies WHERE inn = ?1")?
        .query_row([inn], |r| r.get(0))?)
}

fn schedule_fired_at(conn: &Connection, rule: &str) -> Result<Option<DateTime<Utc>>, Error> {
    let t: Option<String> = conn
        .prepare_cached("SELECT due_at FROM schedules WHERE rule = ?1")?
        .query_row([rule], |r| r.get(0))
        .optional()?;
    Ok(t.as_deref().and_then(parse_time))
}

fn idle_candidates(
    conn: &Connection,
    kind: EntityKind,
    rule: &str,
    cutoff: DateTime<Utc>,
    stages: &[String],
) -> Result<Vec<(i64, DateTime<Utc>)>, Error> {
    let cutoff = fmt_time(cutoff);
    let sql = format!(
        "SELECT t.id, t.updated_at FROM {} t WHERE t.updated_at <= ?1 AND t.stage IN ({}) \
         AND NOT EXISTS (SELECT 1 FROM idle_marks m WHERE m.kind = '{}' AND m.entity_id = t.id \
         AND m.rule = ?2 AND m.since >= t.updated_at) ORDER BY t.id",
        table_of(kind),
        marks(3, stages.len()),
        kind.as_str()
    );
    let mut args: Vec<&dyn ToSql> = vec![&cutoff, &rule];
    args.extend(stages.iter().map(|s| s as &dyn ToSql));
    let mut stmt = conn.prepare_cached(&sql)?;
    let rows = stmt.query_map(args.as_slice(), |r| {
        Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (id, since) = row?;
        let since = parse_time(&since).ok_or_else(|| Error::Corrupt {
            position: 0,
            why: format!("{} {id}: updated_at '{since}' is not a time", kind.as_str()),
        })?;
        out.push((id, since));
    }
    Ok(out)
}

#[allow(clippy::option_option)]
fn request_pending(
    conn: &Connection,
    position: i64,
) -> Result<Option<Option<DateTime<Utc>>>, Error> {
    let row: Option<Option<String>> = conn
        .prepare_cached("SELECT claimed_until FROM requests WHERE position = ?1")?
        .query_row([position], |r| r.get(0))
        .optional()?;
    Ok(row.map(|claim| claim.as_deref().and_then(parse_time)))
}

impl View for Tx<'_> {
    fn load(&mut self, stream: StreamId) -> Result<Option<Entity>, WorkspaceError> {
        Ok(Tx::load(self, stream)?)
    }

    fn event_at(&mut self, position: i64) -> Result<Option<RecordedEvent>, WorkspaceError> {
        Ok(Tx::event_at(self, position)?)
    }

    fn event_of(
        &mut self,
        stream: StreamId,
        version: i64,
    ) -> Result<Option<RecordedEvent>, WorkspaceError> {
        // The log is not a projection: nothing needs flushing first.
        Ok(event_of(self.sql(), stream, version)?)
    }

    fn latest_of_type(
        &mut self,
        stream: StreamId,
        event_type: &str,
    ) -> Result<Option<RecordedEvent>, WorkspaceError> {
        // The log is not a projection: nothing needs flushing first.
        Ok(latest_of_type(self.sql(), stream, event_type)?)
    }

    fn cause_of(&mut self, position: i64) -> Result<Option<(Option<i64>, String)>, WorkspaceError> {
        Ok(cause_of(self.sql(), position)?)
    }

    fn pending_timers(&mut self, stream: StreamId) -> Result<Vec<PendingTimer>, WorkspaceError> {
        Ok(Tx::pending_timers(self, stream)?)
    }

    fn incident_count(&mut self, q: &IncidentQuery<'_>) -> Result<i64, WorkspaceError> {
        // The journals are side tables, written as events are appended: nothing to flush.
        Ok(incident_count(self.sql(), q)?)
    }

    fn open_items(
        &mut self,
        employee: &EmployeeId,
        kind: EntityKind,
        stages: &[String],
    ) -> Result<i64, WorkspaceError> {
        Ok(open_items(self.conn()?, employee, kind, stages)?)
    }

    fn last_assigned(
        &mut self,
        employee: &EmployeeId,
        kind: EntityKind,
    ) -> Result<i64, WorkspaceError> {
        // Leads and deals changed since the last flush answer from the projector (as
        // `matching` does): round robin asks this for every new lead.
        let overlay = matches!(kind, EntityKind::Lead | EntityKind::Deal)
            .then(|| self.unflushed(kind))
            .flatten();
        let Some(unflushed) = overlay else {
            return Ok(last_assigned(
                self.conn()?,
                employee,
                kind,
                0,
                &HashSet::new(),
            )?);
        };
        let responsible = |e: &Entity| match e {
            Entity::Lead(l) => l.responsible.as_ref() == Some(employee),
            Entity::Deal(d) => d.responsible.as_ref() == Some(employee),
            _ => false,
        };
        let best = unflushed
            .iter()
            .filter(|(_, e)| e.is_some_and(responsible))
            .map(|(id, _)| *id)
            .max()
            .unwrap_or(0);
        let changed: HashSet<i64> = unflushed.iter().map(|(id, _)| *id).collect();
        Ok(last_assigned(self.sql(), employee, kind, best, &changed)?)
    }

    fn company_by_inn(&mut self, inn: &str) -> Result<Option<i64>, WorkspaceError> {
        Ok(company_by_inn(self.conn()?, inn)?)
    }

    fn matching(
        &mut self,
        what: MatchKey,
        values: &[String],
        kind: EntityKind,
        before: Option<i64>,
    ) -> Result<Vec<i64>, WorkspaceError> {
        Ok(Tx::matching(self, what, values, kind, before)?)
    }

    fn kpi(&mut self, q: &KpiQuery<'_>) -> Result<KpiCounts, WorkspaceError> {
        Ok(crate::report::kpi_counts(self.conn()?, q)?)
    }

    fn schedule_fired_at(&mut self, rule: &str) -> Result<Option<DateTime<Utc>>, WorkspaceError> {
        // A side table (as above).
        Ok(schedule_fired_at(self.sql(), rule)?)
    }

    fn request_pending(
        &mut self,
        position: i64,
    ) -> Result<Option<Option<DateTime<Utc>>>, WorkspaceError> {
        // A side table (as above).
        Ok(request_pending(self.sql(), position)?)
    }

    fn idle_candidates(
        &mut self,
        kind: EntityKind,
        rule: &str,
        cutoff: DateTime<Utc>,
        stages: &[String],
    ) -> Result<Vec<(i64, DateTime<Utc>)>, WorkspaceError> {
        Ok(idle_candidates(self.conn()?, kind, rule, cutoff, stages)?)
    }
}

impl Workspace for Tx<'_> {
    fn execute(
        &mut self,
        config: &Config,
        command: &Command,
        meta: &EventMeta,
    ) -> Result<Executed, WorkspaceError> {
        Ok(Tx::execute(self, config, command, meta)?)
    }

    fn append(
        &mut self,
        stream: StreamId,
        expected: i64,
        events: &[Event],
        meta: &EventMeta,
    ) -> Result<Appended, WorkspaceError> {
        Ok(Tx::append(self, stream, expected, events, meta)?)
    }

    fn version(&mut self, stream: StreamId) -> Result<i64, WorkspaceError> {
        Ok(Tx::version(self, stream)?)
    }

    fn head_position(&self) -> i64 {
        Tx::head_position(self)
    }

    fn read_after(
        &mut self,
        after: i64,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>, WorkspaceError> {
        Ok(Tx::read_after(self, after, limit)?)
    }

    fn cursor(&mut self, name: &str) -> Result<Option<i64>, WorkspaceError> {
        Ok(Tx::cursor(self, name)?)
    }

    fn set_cursor(&mut self, name: &str, position: i64) -> Result<(), WorkspaceError> {
        Ok(Tx::set_cursor(self, name, position)?)
    }

    fn last_cause_after(
        &mut self,
        after: i64,
        except: &[&str],
    ) -> Result<Option<i64>, WorkspaceError> {
        Ok(Tx::last_cause_after(self, after, except)?)
    }

    fn take_due_timers(
        &mut self,
        now: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<(StreamId, PendingTimer)>, WorkspaceError> {
        Ok(Tx::take_due_timers(self, now, limit)?)
    }

    fn atomically(
        &mut self,
        f: &mut dyn FnMut(&mut dyn Workspace) -> bool,
    ) -> Result<bool, WorkspaceError> {
        /// Why the savepoint was rolled back: the caller asked, or SQLite failed.
        enum Undo {
            Asked,
            Failed(Error),
        }
        impl From<Error> for Undo {
            fn from(e: Error) -> Self {
                Undo::Failed(e)
            }
        }
        match Tx::atomically(self, |tx| if f(tx) { Ok(()) } else { Err(Undo::Asked) }) {
            Ok(()) => Ok(true),
            Err(Undo::Asked) => Ok(false),
            Err(Undo::Failed(e)) => Err(e.into()),
        }
    }
}

/// Adapts a caller's error type to the store's `write`: the store's own failures (beginning,
/// committing) and the caller's.
enum Either<E> {
    Store(Error),
    Caller(E),
}

impl<E> From<Error> for Either<E> {
    fn from(e: Error) -> Self {
        Either::Store(e)
    }
}

impl Backend for Store {
    fn write<T, E: From<WorkspaceError>>(
        &mut self,
        stamp: Stamp<'_>,
        f: impl FnOnce(&mut dyn Workspace) -> Result<T, E>,
    ) -> Result<T, E> {
        let run = |tx: &mut Tx<'_>| f(tx).map_err(Either::Caller);
        let out = match stamp {
            Stamp::At(t) => Store::write(self, t, run),
            Stamp::Clock(c) => Store::write_with(self, c, run),
        };
        out.map_err(|e| match e {
            Either::Store(e) => E::from(e.into()),
            Either::Caller(e) => e,
        })
    }

    fn cursor(&self, name: &str) -> Result<Option<i64>, WorkspaceError> {
        Ok(Store::cursor(self, name)?)
    }

    fn last_position(&self) -> Result<i64, WorkspaceError> {
        Ok(Store::last_position(self)?)
    }

    fn load(&self, stream: StreamId) -> Result<Option<Entity>, WorkspaceError> {
        Ok(Store::load(self, stream)?)
    }

    fn read_after(&self, after: i64, limit: usize) -> Result<Vec<RecordedEvent>, WorkspaceError> {
        Ok(Store::read_log(self, &LogFilter::default(), after, limit)?)
    }

    fn pending_requests(
        &self,
        after: i64,
        limit: usize,
    ) -> Result<Vec<PendingRequest>, WorkspaceError> {
        Ok(pending_requests(&self.conn, after, limit)?)
    }

    fn next_timer_due(&self) -> Result<Option<DateTime<Utc>>, WorkspaceError> {
        Ok(next_timer_due(&self.conn)?)
    }

    fn oldest_change_after(
        &self,
        kind: EntityKind,
        after: DateTime<Utc>,
        stages: &[String],
    ) -> Result<Option<DateTime<Utc>>, WorkspaceError> {
        Ok(oldest_change_after(&self.conn, kind, after, stages)?)
    }
}

fn pending_requests(
    conn: &Connection,
    after: i64,
    limit: usize,
) -> Result<Vec<PendingRequest>, Error> {
    let rows: Vec<(i64, Option<String>)> = {
        let mut stmt = conn.prepare_cached(
            "SELECT position, claimed_until FROM requests WHERE position > ?1 ORDER BY position LIMIT ?2",
        )?;
        let rows = stmt.query_map([after, limit as i64], |r| Ok((r.get(0)?, r.get(1)?)))?;
        rows.collect::<Result<_, _>>()?
    };
    let mut out = Vec::with_capacity(rows.len());
    for (p, claim) in rows {
        if let Some(request) = event_at(conn, p)? {
            out.push(PendingRequest {
                request,
                claimed_until: claim.as_deref().and_then(parse_time),
            });
        }
    }
    Ok(out)
}

fn next_timer_due(conn: &Connection) -> Result<Option<DateTime<Utc>>, Error> {
    let t: Option<String> = conn.query_row("SELECT min(due_at) FROM timers", [], |r| r.get(0))?;
    Ok(t.as_deref().and_then(parse_time))
}

fn oldest_change_after(
    conn: &Connection,
    kind: EntityKind,
    after: DateTime<Utc>,
    stages: &[String],
) -> Result<Option<DateTime<Utc>>, Error> {
    if stages.is_empty() {
        return Ok(None);
    }
    let sql = format!(
        "SELECT min(updated_at) FROM {} WHERE updated_at > ?1 AND stage IN ({})",
        table_of(kind),
        marks(2, stages.len())
    );
    let after = fmt_time(after);
    let mut args: Vec<&dyn ToSql> = vec![&after];
    args.extend(stages.iter().map(|s| s as &dyn ToSql));
    let t: Option<String> = conn.query_row(&sql, args.as_slice(), |r| r.get(0))?;
    Ok(t.as_deref().and_then(parse_time))
}

/// Many writes of a scratch database (backtest's sandbox) in one transaction, committed once
/// `events` events have been appended in it, and at [`Batched::finish`]. Cached entities stay
/// cached from one write to the next and from one commit to the next (nobody else writes the
/// database), and a write costs no commit and no savepoint of its own.
///
/// Only for a database nobody else reads meanwhile and nobody needs after a failure: dropped
/// without `finish`, or after any failed write — its closure's error or the store's —, every
/// write since the last commit is rolled back, and a batch that had a failed write refuses
/// anything more. (Backtest stops at such an error anyway; what may fail alone inside a
/// write — a robot — has its own savepoint.)
pub struct Batched<'s> {
    store: &'s Store,
    tx: std::cell::RefCell<Option<Tx<'s>>>,
    /// What the last committed transaction left the next (its projector and cache).
    carry: Option<crate::log::Carry>,
    events: i64,
    broken: bool,
}

impl Store {
    /// Writes held in one transaction, committed every `events` events (see [`Batched`]).
    pub fn batched(&mut self, events: i64) -> Batched<'_> {
        Batched {
            store: self,
            tx: std::cell::RefCell::new(None),
            carry: None,
            events: events.max(1),
            broken: false,
        }
    }
}

impl Batched<'_> {
    /// Commits what is held.
    pub fn finish(self) -> Result<(), Error> {
        self.refuse_if_broken()?;
        match self.tx.into_inner() {
            Some(tx) => self.store.commit_held(tx),
            None => Ok(()),
        }
    }

    fn refuse_if_broken(&self) -> Result<(), Error> {
        if self.broken {
            return Err(Error::Corrupt {
                position: 0,
                why: "a batched write failed: the writes since the batch's last commit were rolled back".into(),
            });
        }
        Ok(())
    }

    /// Runs `f` on the open transaction, or, with none open, on the store.
    fn read<T>(
        &self,
        held: impl FnOnce(&mut Tx<'_>) -> Result<T, Error>,
        direct: impl FnOnce(&Store) -> Result<T, Error>,
    ) -> Result<T, WorkspaceError> {
        self.refuse_if_broken()?;
        Ok(match self.tx.borrow_mut().as_mut() {
            Some(tx) => held(tx)?,
            None => direct(self.store)?,
        })
    }
}

impl Backend for Batched<'_> {
    fn write<T, E: From<WorkspaceError>>(
        &mut self,
        stamp: Stamp<'_>,
        f: impl FnOnce(&mut dyn Workspace) -> Result<T, E>,
    ) -> Result<T, E> {
        self.refuse_if_broken().map_err(|e| E::from(e.into()))?;
        let store = self.store;
        let slot = self.tx.get_mut();
        let outcome = (|| -> Result<Result<T, E>, Error> {
            if slot.is_none() {
                let t = store.begin_immediate()?;
                let mut tx = Tx::begin(t, chrono::DateTime::UNIX_EPOCH)?;
                if let Some(c) = self.carry.take() {
                    tx.reuse(c);
                }
                *slot = Some(tx);
            }
            let Some(tx) = slot.as_mut() else {
                unreachable!("a transaction was just opened");
            };
            let at = match stamp {
                Stamp::At(t) => t,
                Stamp::Clock(c) => {
                    let now = c.now();
                    let last: Option<String> = tx
                        .sql()
                        .query_row(
                            "SELECT recorded_at FROM events ORDER BY position DESC LIMIT 1",
                            [],
                            |r| r.get(0),
                        )
                        .optional()?;
                    last.as_deref()
                        .and_then(parse_time)
                        .map_or(now, |l| now.max(l))
                }
            };
            tx.restamp(at);
            // No savepoint of its own: a closure that fails breaks the batch (below).
            let out = match f(tx) {
                Ok(v) => v,
                Err(e) => return Ok(Err(e)),
            };
            if tx.appended() >= self.events
                && let Some(mut tx) = slot.take()
            {
                self.carry = Some(tx.carry()?);
                store.commit_held(tx)?;
            }
            Ok(Ok(out))
        })();
        match outcome {
            Ok(Ok(out)) => Ok(out),
            Ok(Err(e)) => {
                // What the closure did before it failed is in no known state: what the
                // transaction held is rolled back.
                *slot = None;
                self.broken = true;
                Err(e)
            }
            Err(e) => {
                // The transaction is in no known state: what it held is rolled back.
                *slot = None;
                self.broken = true;
                Err(E::from(e.into()))
            }
        }
    }

    fn cursor(&self, name: &str) -> Result<Option<i64>, WorkspaceError> {
        self.read(|tx| Tx::cursor(tx, name), |s| s.cursor(name))
    }

    fn last_position(&self) -> Result<i64, WorkspaceError> {
        self.read(|tx| Ok(Tx::head_position(tx)), Store::last_position)
    }

    fn load(&self, stream: StreamId) -> Result<Option<Entity>, WorkspaceError> {
        self.read(|tx| Tx::load(tx, stream), |s| s.load(stream))
    }

    fn read_after(&self, after: i64, limit: usize) -> Result<Vec<RecordedEvent>, WorkspaceError> {
        self.read(
            |tx| Tx::read_after(tx, after, limit),
            |s| s.read_log(&LogFilter::default(), after, limit),
        )
    }

    fn pending_requests(
        &self,
        after: i64,
        limit: usize,
    ) -> Result<Vec<PendingRequest>, WorkspaceError> {
        // A side table, written as events are appended: nothing to flush.
        self.read(
            |tx| pending_requests(tx.sql(), after, limit),
            |s| pending_requests(&s.conn, after, limit),
        )
    }

    fn next_timer_due(&self) -> Result<Option<DateTime<Utc>>, WorkspaceError> {
        self.read(|tx| next_timer_due(tx.sql()), |s| next_timer_due(&s.conn))
    }

    fn oldest_change_after(
        &self,
        kind: EntityKind,
        after: DateTime<Utc>,
        stages: &[String],
    ) -> Result<Option<DateTime<Utc>>, WorkspaceError> {
        self.read(
            |tx| oldest_change_after(tx.conn()?, kind, after, stages),
            |s| oldest_change_after(&s.conn, kind, after, stages),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// SQLite's plan for `sql` with the arguments `args` (one line per step).
    fn plan(conn: &Connection, sql: &str, args: &[&dyn rusqlite::ToSql]) -> Vec<String> {
        let mut stmt = conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).unwrap();
        let rows = stmt.query_map(args, |r| r.get::<_, String>(3)).unwrap();
        rows.collect::<Result<_, _>>().unwrap()
    }

    #[test]
    fn a_streams_timers_are_found_through_the_partial_index_alone() {
        let store = crate::Store::open_in_memory().unwrap();
        let steps = plan(
            &store.conn,
            crate::project::timers::TIMER_EVENTS_OF_STREAM,
            &[&1],
        );
        assert!(
            steps.iter().any(|l| l.contains("timer_events")),
            "{steps:?}"
        );
        assert!(
            !steps.iter().any(|l| l.contains("TEMP B-TREE")),
            "{steps:?}"
        );
    }

    #[test]
    fn incident_counts_search_the_right_index() {
        let store = crate::Store::open_in_memory().unwrap();
        let conn = &store.conn;
        let args: [&dyn rusqlite::ToSql; 3] = [&"ivanov", &"missed_deadline", &"2026-01-01"];
        let since = plan(conn, INCIDENTS_SINCE_ESCALATION, &args);
        assert!(
            since
                .iter()
                .any(|l| l.contains("incidents_since_escalation"))
                && since.iter().any(|l| l.contains("escalations_by_employee")),
            "{since:?}"
        );
        let window = plan(conn, INCIDENTS_IN_WINDOW, &args);
        assert!(
            window.iter().any(|l| l.contains("incidents_by_employee")),
            "{window:?}"
        );
        let all = plan(
            conn,
            ALL_INCIDENTS_IN_WINDOW,
            &args[..1]
                .iter()
                .chain(&args[2..])
                .copied()
                .collect::<Vec<_>>(),
        );
        assert!(all.iter().all(|l| !l.starts_with("SCAN")), "{all:?}");
    }
}
