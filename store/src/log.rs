//! Appending to and reading from the event log.

use crate::chain::{GENESIS, Hash, Hashed, event_hash};
use crate::error::{Error, Refused};
use crate::project::{self, Projector};
use chrono::{DateTime, Utc};
use leadflow_engine::command::Target;
use leadflow_engine::decide::EndpointState;
use leadflow_engine::{
    Command, Config, Entity, EntityKind, Event, EventMeta, Lookup, StreamId, decide,
};
use rusqlite::{Connection, OptionalExtension, Row, Transaction, params};
use std::collections::HashMap;

use leadflow_engine::stored::PendingTimer;
pub use leadflow_engine::stored::{Appended, Executed, RecordedEvent, fmt_time, parse_time};
use leadflow_engine::workspace::MatchKey;

/// The fields the chain hash covers, for `event_hash`.
pub(crate) fn hashed<'a>(rec: &'a RecordedEvent, stream_name: &'a str) -> Hashed<'a> {
    Hashed {
        position: rec.position,
        stream: stream_name,
        version: rec.version,
        event_type: &rec.event_type,
        schema_version: rec.schema_version,
        payload: &rec.payload,
        occurred_at: &rec.occurred_at,
        recorded_at: &rec.recorded_at,
        actor: &rec.actor,
        causation: rec.causation,
        correlation: rec.correlation,
    }
}

pub(crate) const SELECT_EVENT: &str = "SELECT e.position, s.kind, s.entity_id, e.version, e.type, e.schema_version, e.payload, \
     e.occurred_at, e.recorded_at, e.actor, e.causation, e.correlation, e.hash \
     FROM events e JOIN streams s ON s.stream_key = e.stream_key";

pub(crate) fn row_to_event(r: &Row<'_>) -> rusqlite::Result<Result<RecordedEvent, Error>> {
    let position: i64 = r.get(0)?;
    // NULLs when a verifying LEFT JOIN finds no stream row.
    let kind: Option<String> = r.get(1)?;
    let entity: Option<i64> = r.get(2)?;
    let hash: Vec<u8> = r.get(12)?;
    let (Some(Ok(kind)), Some(entity)) = (kind.as_deref().map(str::parse::<EntityKind>), entity)
    else {
        return Ok(Err(Error::Corrupt {
            position,
            why: format!(
                "the row's stream is unknown ({})",
                kind.as_deref().unwrap_or("no stream row")
            ),
        }));
    };
    let Ok(hash) = Hash::try_from(hash.as_slice()) else {
        return Ok(Err(Error::Corrupt {
            position,
            why: "hash is not 32 bytes".into(),
        }));
    };
    Ok(Ok(RecordedEvent {
        position,
        stream: StreamId::new(kind, entity),
        version: r.get(3)?,
        event_type: r.get(4)?,
        schema_version: r.get(5)?,
        payload: r.get(6)?,
        occurred_at: r.get(7)?,
        recorded_at: r.get(8)?,
        actor: r.get(9)?,
        causation: r.get(10)?,
        correlation: r.get(11)?,
        hash,
    }))
}

/// Which events to list.
#[derive(Debug, Clone, Default)]
pub struct LogFilter {
    /// Only this stream.
    pub stream: Option<StreamId>,
    /// Only these types; a trailing `*` matches a prefix (`lead.*`).
    pub types: Vec<String>,
    /// Only this actor (`employee:petrova`, `system`…); `api:TOKEN` also matches the token
    /// acting for an employee (`api:TOKEN@EMPLOYEE`).
    pub actor: Option<String>,
    /// Only events that occurred at or after this time.
    pub since: Option<DateTime<Utc>>,
    /// Only events that occurred before this time.
    pub until: Option<DateTime<Utc>>,
}

pub(crate) fn read_log(
    conn: &Connection,
    filter: &LogFilter,
    after: i64,
    limit: usize,
) -> Result<Vec<RecordedEvent>, Error> {
    let mut sql = format!("{SELECT_EVENT} WHERE e.position > ?1");
    let mut args: Vec<rusqlite::types::Value> = vec![after.into()];
    let arg = |v: rusqlite::types::Value, args: &mut Vec<rusqlite::types::Value>| {
        args.push(v);
        format!("?{}", args.len())
    };
    if let Some(s) = &filter.stream {
        let a = arg(s.kind.as_str().to_owned().into(), &mut args);
        let b = arg(s.id.into(), &mut args);
        sql += &format!(" AND s.kind = {a} AND s.entity_id = {b}");
    }
    if !filter.types.is_empty() {
        let mut alts = Vec::new();
        for t in &filter.types {
            match t.strip_suffix('*') {
                Some(prefix) => {
                    let p = arg(
                        format!("{}%", prefix.replace(['%', '_'], "")).into(),
                        &mut args,
                    );
                    alts.push(format!("e.type LIKE {p}"));
                }
                None => {
                    let p = arg(t.clone().into(), &mut args);
                    alts.push(format!("e.type = {p}"));
                }
            }
        }
        sql += &format!(" AND ({})", alts.join(" OR "));
    }
    if let Some(a) = &filter.actor {
        let p = arg(a.clone().into(), &mut args);
        if a.starts_with("api:") && !a.contains('@') {
            // A token: whoever it acted for (`api:crm@ivanov`) too.
            sql += &format!(
                " AND (e.actor = {p} OR substr(e.actor, 1, length({p}) + 1) = {p} || '@')"
            );
        } else {
            sql += &format!(" AND e.actor = {p}");
        }
    }
    if let Some(t) = filter.since {
        let p = arg(fmt_time(t).into(), &mut args);
        sql += &format!(" AND e.occurred_at >= {p}");
    }
    if let Some(t) = filter.until {
        let p = arg(fmt_time(t).into(), &mut args);
        sql += &format!(" AND e.occurred_at < {p}");
    }
    let p = arg((limit.min(i64::MAX as usize) as i64).into(), &mut args);
    sql += &format!(" ORDER BY e.position LIMIT {p}");
    let mut stmt = conn.prepare_cached(&sql)?;
    let rows = stmt.query_map(rusqlite::params_from_iter(args), row_to_event)?;
    // Sized for a full page up front: a page grown by doubling cost a backtest (which reads
    // the whole log in pages of 512) a twentieth of its time in copies and fresh memory.
    let mut out = Vec::with_capacity(limit.min(512));
    for r in rows {
        out.push(r??);
    }
    Ok(out)
}

pub(crate) fn read_stream(
    conn: &Connection,
    stream: StreamId,
) -> Result<Vec<RecordedEvent>, Error> {
    let mut stmt = conn.prepare_cached(&format!(
        "{SELECT_EVENT} WHERE s.kind = ?1 AND s.entity_id = ?2 ORDER BY e.version"
    ))?;
    let rows = stmt.query_map(params![stream.kind.as_str(), stream.id], row_to_event)?;
    let mut out = Vec::new();
    for r in rows {
        out.push(r??);
    }
    Ok(out)
}

pub(crate) fn head(conn: &Connection) -> Result<Option<(i64, Hash)>, Error> {
    let row: Option<(i64, Vec<u8>)> = conn
        .prepare_cached("SELECT position, hash FROM events ORDER BY position DESC LIMIT 1")?
        .query_row([], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    match row {
        None => Ok(None),
        Some((p, h)) => Hash::try_from(h.as_slice())
            .map(|h| Some((p, h)))
            .map_err(|_| Error::Corrupt {
                position: p,
                why: "hash is not 32 bytes".into(),
            }),
    }
}

/// The highest position in the log, without reading (or trusting) its hash.
pub(crate) fn last_position(conn: &Connection) -> Result<i64, Error> {
    Ok(
        conn.query_row("SELECT coalesce(max(position), 0) FROM events", [], |r| {
            r.get(0)
        })?,
    )
}

pub(crate) fn stream_version(conn: &Connection, stream: StreamId) -> Result<i64, Error> {
    Ok(conn
        .prepare_cached("SELECT version FROM streams WHERE kind = ?1 AND entity_id = ?2")?
        .query_row(params![stream.kind.as_str(), stream.id], |r| r.get(0))
        .optional()?
        .unwrap_or(0))
}

/// Checks the newest event cheaply before anything is appended on top of it: its position
/// follows its predecessor's, its hash covers its content and its predecessor's hash, and its
/// stream's head row is at its version. (`verify` checks the whole log.)
pub(crate) fn check_tail(conn: &Connection) -> Result<(), Error> {
    let mut stmt = conn.prepare_cached(
        "SELECT e.position, s.kind, s.entity_id, e.version, e.type, e.schema_version, e.payload, \
         e.occurred_at, e.recorded_at, e.actor, e.causation, e.correlation, e.hash, s.version \
         FROM events e LEFT JOIN streams s ON s.stream_key = e.stream_key \
         ORDER BY e.position DESC LIMIT 2",
    )?;
    let mut rows = stmt.query([])?;
    let mut tail = Vec::with_capacity(2);
    while let Some(r) = rows.next()? {
        let position: i64 = r.get(0)?;
        let decoded = row_to_event(r).and_then(|e| Ok((e, r.get::<_, Option<i64>>(13)?)));
        match decoded {
            Ok(row) => tail.push(row),
            // A column of the wrong type (a row edited by hand): as broken as a bad hash.
            Err(
                e @ (rusqlite::Error::InvalidColumnType(..)
                | rusqlite::Error::FromSqlConversionFailure(..)
                | rusqlite::Error::IntegralValueOutOfRange(..)),
            ) => {
                return Err(Error::Tampered {
                    position,
                    why: format!("the row is not one leadflow writes ({e})"),
                    refused: Refused::Append,
                });
            }
            Err(e) => return Err(e.into()),
        }
    }
    let mut tail = tail.into_iter();
    let Some((last, head_version)) = tail.next() else {
        return Ok(());
    };
    // A row that does not decode is what a broken tail looks like: refused, naming its
    // position. Any other error is passed on as it is.
    let tampered = |e: Error| match e {
        Error::Corrupt { position, why } => Error::Tampered {
            position,
            why,
            refused: Refused::Append,
        },
        other => other,
    };
    let broken = |position: i64, why: String| {
        Err(Error::Tampered {
            position,
            why,
            refused: Refused::Append,
        })
    };
    let last = last.map_err(tampered)?;
    let (expected, prev_hash) = match tail.next() {
        None => (1, GENESIS),
        Some((prev, _)) => {
            let prev = prev.map_err(tampered)?;
            (prev.position + 1, prev.hash)
        }
    };
    if last.position != expected {
        return broken(
            expected.min(last.position),
            format!(
                "position {expected} is missing or out of order (the newest row is {})",
                last.position
            ),
        );
    }
    let name = last.stream.to_string();
    if event_hash(&prev_hash, &hashed(&last, &name)) != last.hash {
        return broken(
            last.position,
            "the newest event's hash does not match its content and its predecessor's hash (a row was edited, inserted or moved)".into(),
        );
    }
    if head_version != Some(last.version) {
        return broken(
            last.position,
            format!(
                "stream {}: its head row says version {}, but its newest event is version {}",
                last.stream,
                head_version.map_or("-".into(), |v| v.to_string()),
                last.version
            ),
        );
    }
    Ok(())
}

/// Refuses a rule cursor past the log's end (the log was cut or the cursor edited): the
/// robots would silently skip whatever is appended next. Checked when a writer opens, before
/// anything is appended. (`rule_cursor` holds a row per runtime: one, in practice.)
fn check_cursors(conn: &Connection, head_position: i64) -> Result<(), Error> {
    let ahead: Option<(String, i64)> = conn
        .prepare_cached(
            "SELECT name, position FROM rule_cursor WHERE position > ?1 ORDER BY position DESC LIMIT 1",
        )?
        .query_row([head_position], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    match ahead {
        None => Ok(()),
        Some((name, position)) => Err(Error::Tampered {
            position: head_position,
            refused: Refused::Append,
            why: format!(
                "the rules' cursor (rule_cursor '{name}') is at position {position}, past the log's end ({head_position}): \
                 the log was cut or the cursor edited, and the robots would skip whatever comes next"
            ),
        }),
    }
}

/// Applies events after the checkpoint of `schema` until the projections reach the head of the
/// log, one write transaction (from `begin`) per page. Returns the new checkpoint.
///
/// From checkpoint 0 (empty tables) everything is built in one transaction by
/// [`project::rebuild_from_scratch`]; from a later checkpoint, in pages of one transaction
/// each. Each transaction re-reads the checkpoint under the write lock, so two processes
/// catching up at once never apply an event twice.
pub(crate) fn catch_up<'c>(
    begin: &dyn Fn() -> Result<Transaction<'c>, Error>,
    schema: &'static str,
    progress: &mut dyn FnMut(i64),
) -> Result<i64, Error> {
    const PAGE: i64 = 8192;
    loop {
        let tx = begin()?;
        if project::checkpoint(&tx, schema)? == 0 {
            let position = project::rebuild_from_scratch(&tx, schema, progress)?;
            tx.commit()?;
            return Ok(position);
        }
        let mut projector = Projector::new(schema);
        let applied = catch_up_page(&tx, &mut projector, PAGE)?;
        let position = project::checkpoint(&tx, schema)?;
        tx.commit()?;
        if applied == 0 {
            return Ok(position);
        }
        progress(position);
    }
}

/// Feeds the projector up to `limit` events after the checkpoint of its schema, flushes them
/// and moves the checkpoint. Returns how many events were applied.
pub(crate) fn catch_up_page(
    conn: &Connection,
    projector: &mut Projector,
    limit: i64,
) -> Result<usize, Error> {
    let schema = projector.schema();
    let after = project::checkpoint(conn, schema)?;
    let page = {
        let mut stmt = conn.prepare_cached(&format!(
            "{SELECT_EVENT} WHERE e.position > ?1 ORDER BY e.position LIMIT ?2"
        ))?;
        let rows = stmt.query_map(params![after, limit], row_to_event)?;
        let mut page = Vec::with_capacity(limit.clamp(0, 8192) as usize);
        for r in rows {
            page.push(r??);
        }
        page
    };
    let Some(last) = page.last().map(|r| r.position) else {
        return Ok(0);
    };
    for rec in &page {
        let event = rec.decode()?;
        let at = rec.occurred_at()?;
        projector.apply(conn, rec.position, rec.stream, &event, at, &rec.actor)?;
    }
    projector.flush(conn)?;
    project::set_checkpoint(conn, schema, last)?;
    Ok(page.len())
}

/// A write transaction: appends and the projection updates they cause. Created by
/// [`crate::Store::write`]; commits when the closure returns `Ok`, rolls back otherwise.
pub struct Tx<'c> {
    tx: Transaction<'c>,
    recorded_at: String,
    head_position: i64,
    head_hash: Hash,
    /// The head when the transaction began.
    begun_at: i64,
    projector: Projector,
    next_ids: HashMap<EntityKind, i64>,
    /// Streams looked up or appended to in this transaction: their key and version (`None`:
    /// no such stream yet), so a version check followed by an append reads `streams` once.
    heads: HashMap<StreamId, Option<(i64, i64)>>,
    /// The events appended in this transaction, as read back they would be, while they fit
    /// in [`RECENT_MAX`]: reading the log after them is then served from memory.
    recent: Vec<RecordedEvent>,
    /// Whether `recent` holds every event appended in this transaction.
    recent_complete: bool,
    /// The earliest due time of the timers appended events set (see [`Tx::soonest_timer`]).
    soonest_timer: Option<DateTime<Utc>>,
}

/// At most this many changed entities of a kind are taken from the projector to correct a
/// query over their tables; beyond, the query flushes first.
const UNFLUSHED_MAX: usize = 256;

/// What one transaction of a batch hands to the next (see [`Tx::carry`]).
pub(crate) struct Carry {
    projector: Projector,
    recent: Vec<RecordedEvent>,
}

/// At most this many appended events are kept in memory for reading back.
const RECENT_MAX: usize = 8192;

/// Events are applied to the projection cache and flushed to SQL in groups of this size.
const FLUSH_EVERY: usize = 4096;

/// WAL pages after which a commit checkpoints the WAL into the database file: SQLite's
/// default, right for commands of one or a few events (a small WAL is rewritten in place,
/// which makes its fsyncs cheaper than appending to a growing file).
pub(crate) const WAL_CHECKPOINT_PAGES: i64 = 1000;

/// A transaction that appends at least this many events is a bulk one (an import batch).
const BULK_EVENTS: i64 = 256;

/// The checkpoint threshold for bulk commits (64 MiB of WAL). A batch of a thousand events
/// dirties a few thousand pages, so at the default threshold every batch paid a checkpoint
/// (copying its pages into the database file and fsyncing it); with this one consecutive
/// batches share one, and a page they all touch is copied back once.
pub(crate) const BULK_WAL_CHECKPOINT_PAGES: i64 = 16_384;

impl<'c> Tx<'c> {
    pub(crate) fn begin(tx: Transaction<'c>, recorded_at: DateTime<Utc>) -> Result<Self, Error> {
        check_tail(&tx)?;
        let (head_position, head_hash) = head(&tx)?.unwrap_or((0, GENESIS));
        check_cursors(&tx, head_position)?;
        let mut projector = Projector::new("main");
        let checkpoint = project::checkpoint(&tx, "main")?;
        if checkpoint > head_position {
            return Err(Error::Tampered {
                position: head_position + 1,
                refused: Refused::Append,
                why: format!(
                    "the projections reflect the log up to position {checkpoint}, but the log ends at {head_position}: \
                     events were removed"
                ),
            });
        }
        // Projections behind the log (another process's replay was interrupted, or is running
        // in pages): bring them up to date under this write lock before deciding anything.
        if checkpoint < head_position {
            if checkpoint == 0 {
                project::rebuild_from_scratch(&tx, "main", &mut |_| {})?;
            }
            while project::checkpoint(&tx, "main")? < head_position {
                catch_up_page(&tx, &mut projector, 8192)?;
            }
        }
        Ok(Tx {
            tx,
            recorded_at: fmt_time(recorded_at),
            head_position,
            head_hash,
            begun_at: head_position,
            projector,
            next_ids: HashMap::new(),
            heads: HashMap::new(),
            recent: Vec::new(),
            recent_complete: true,
            soonest_timer: None,
        })
    }

    /// Whether this transaction is a bulk one, committed with the larger WAL checkpoint
    /// threshold ([`crate::Store::write`] restores the default afterwards).
    pub(crate) fn bulk(&self) -> bool {
        self.head_position - self.begun_at >= BULK_EVENTS
    }

    /// The earliest due time of the timers (deadlines, delayed robots, task due times) that
    /// events appended in this transaction set, if any did. A savepoint rolled back does not
    /// take its timers out: the answer may be early, never late — what a loop that wakes for
    /// due timers needs to know without reading the `timers` table after every commit.
    pub fn soonest_timer(&self) -> Option<DateTime<Utc>> {
        self.soonest_timer
    }

    pub(crate) fn commit(mut self) -> Result<(), Error> {
        self.projector.flush(&self.tx)?;
        // Nothing appended (a tick with nothing due, a cursor moved): the checkpoint stands,
        // and a transaction that changed nothing else writes no page.
        if self.head_position != self.begun_at {
            project::set_checkpoint(&self.tx, "main", self.head_position)?;
        }
        if self.bulk() {
            self.tx
                .pragma_update(None, "wal_autocheckpoint", BULK_WAL_CHECKPOINT_PAGES)?;
        }
        self.tx.commit()?;
        Ok(())
    }

    /// Appends `events` to `stream`, which must be at `expected_version` (0 for a new stream);
    /// otherwise nothing is appended and [`Error::Conflict`] is returned.
    pub fn append(
        &mut self,
        stream: StreamId,
        expected_version: i64,
        events: &[Event],
        meta: &EventMeta,
    ) -> Result<Appended, Error> {
        let existing = self.head_of(stream)?;
        let actual = existing.map_or(0, |(_, v)| v);
        if actual != expected_version {
            return Err(Error::Conflict {
                stream,
                expected: expected_version,
                actual,
            });
        }
        if let Some(e) = events.iter().find(|e| !e.fits(stream.kind)) {
            return Err(Error::Corrupt {
                position: self.head_position + 1,
                why: format!("a {} event cannot go to stream {stream}", e.event_type()),
            });
        }
        let key = match existing {
            Some((key, _)) => key,
            None => {
                // A new stream's head row is written with its version after this append.
                self.tx
                    .prepare_cached(
                        "INSERT INTO streams (kind, entity_id, version) VALUES (?1, ?2, ?3)",
                    )?
                    .execute(params![
                        stream.kind.as_str(),
                        stream.id,
                        events.len() as i64
                    ])?;
                // No events, so no projection row either: nothing to load.
                self.projector.created(stream);
                // A stream appended to by id (a backtest's input, an import) moves the next
                // id on, as a command's does.
                if let Some(next) = self.next_ids.get_mut(&stream.kind) {
                    *next = (*next).max(stream.id + 1);
                }
                self.tx.last_insert_rowid()
            }
        };
        let stream_name = stream.to_string();
        let occurred_at = fmt_time(meta.occurred_at);
        let actor = meta.actor.to_string();
        let first = self.head_position + 1;
        let correlation = meta.correlation.unwrap_or(first);
        let mut version = actual;
        {
            let mut insert = self.tx.prepare_cached(
                "INSERT INTO events (position, stream_key, version, type, schema_version, payload, occurred_at, \
                 recorded_at, actor, causation, correlation, hash) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
            )?;
            for event in events {
                let position = self.head_position + 1;
                version += 1;
                let payload = event.payload();
                let hash = event_hash(
                    &self.head_hash,
                    &Hashed {
                        position,
                        stream: &stream_name,
                        version,
                        event_type: event.event_type(),
                        schema_version: event.schema_version() as i64,
                        payload: &payload,
                        occurred_at: &occurred_at,
                        recorded_at: &self.recorded_at,
                        actor: &actor,
                        causation: meta.causation,
                        correlation,
                    },
                );
                insert.execute(params![
                    position,
                    key,
                    version,
                    event.event_type(),
                    event.schema_version() as i64,
                    payload,
                    occurred_at,
                    self.recorded_at,
                    actor,
                    meta.causation,
                    correlation,
                    &hash[..],
                ])?;
                self.head_position = position;
                self.head_hash = hash;
                if let Some(due) = timer_set_by(event) {
                    self.soonest_timer = Some(self.soonest_timer.map_or(due, |t| t.min(due)));
                }
                self.projector.apply(
                    &self.tx,
                    position,
                    stream,
                    event,
                    meta.occurred_at,
                    &actor,
                )?;
                if self.recent_complete {
                    if self.recent.len() < RECENT_MAX {
                        self.recent.push(RecordedEvent {
                            position,
                            stream,
                            version,
                            event_type: event.event_type().to_owned(),
                            schema_version: event.schema_version() as i64,
                            payload,
                            occurred_at: occurred_at.clone(),
                            recorded_at: self.recorded_at.clone(),
                            actor: actor.clone(),
                            causation: meta.causation,
                            correlation,
                            hash,
                        });
                    } else {
                        self.recent_complete = false;
                        self.recent = Vec::new();
                    }
                }
            }
        }
        if existing.is_some() {
            self.tx
                .prepare_cached("UPDATE streams SET version = ?1 WHERE stream_key = ?2")?
                .execute(params![version, key])?;
        }
        self.heads.insert(stream, Some((key, version)));
        if self.projector.pending() >= FLUSH_EVERY {
            self.projector.flush(&self.tx)?;
        }
        tracing::debug!(%stream, first, last = self.head_position, version, "appended");
        Ok(Appended {
            stream,
            first_position: first,
            last_position: self.head_position,
            version,
        })
    }

    /// Loads the entity's current state (including changes made earlier in this transaction),
    /// decides the command, and appends its events. A rejection appends nothing.
    pub fn execute(
        &mut self,
        config: &Config,
        command: &Command,
        meta: &EventMeta,
    ) -> Result<Executed, Error> {
        leadflow_engine::decide::check_actor(config, &meta.actor)?;
        let (stream, current) = match command.target() {
            Target::New(kind) => (StreamId::new(kind, self.next_id(kind)?), None),
            Target::Existing(stream) => (stream, self.load(stream)?),
            Target::Token(name) => match crate::project::token_state(&self.tx, name)? {
                Some(t) => (t.stream, None),
                None => (
                    StreamId::new(EntityKind::Token, self.next_id(EntityKind::Token)?),
                    None,
                ),
            },
        };
        let endpoint = match command {
            Command::RemoveEndpoint { .. } => self.endpoint_state(stream)?,
            _ => None,
        };
        let decision = decide(
            config,
            command,
            stream,
            current.as_ref(),
            &Exists(self, endpoint),
        )?;
        let stream = decision.stream;
        if decision.events.is_empty() {
            return Ok(Executed {
                stream,
                events: vec![],
                appended: None,
            });
        }
        let appended = self.append(stream, decision.expected_version, &decision.events, meta)?;
        if let Target::New(kind) = command.target() {
            self.next_ids.insert(kind, stream.id + 1);
        }
        Ok(Executed {
            stream,
            events: decision.events,
            appended: Some(appended),
        })
    }

    /// The entity's state as of this transaction.
    pub fn load(&mut self, stream: StreamId) -> Result<Option<Entity>, Error> {
        self.projector.load(&self.tx, stream)
    }

    /// The id the next entity of `kind` will get.
    pub fn next_id(&mut self, kind: EntityKind) -> Result<i64, Error> {
        if let Some(id) = self.next_ids.get(&kind) {
            return Ok(*id);
        }
        // The kind is written into the SQL (a fixed word, one statement per kind): bound as a
        // parameter, SQLite re-plans this statement at every run.
        let id: i64 = self
            .tx
            .prepare_cached(&format!(
                "SELECT coalesce(max(entity_id), 0) + 1 FROM streams WHERE kind = '{}'",
                kind.as_str()
            ))?
            .query_row([], |r| r.get(0))?;
        self.next_ids.insert(kind, id);
        Ok(id)
    }

    /// The position of the newest event, including this transaction's.
    pub fn head_position(&self) -> i64 {
        self.head_position
    }

    /// The current version of a stream, including this transaction's appends.
    pub fn version(&mut self, stream: StreamId) -> Result<i64, Error> {
        Ok(self.head_of(stream)?.map_or(0, |(_, v)| v))
    }

    /// The stream's key and version, from this transaction's memory or the `streams` table.
    fn head_of(&mut self, stream: StreamId) -> Result<Option<(i64, i64)>, Error> {
        if let Some(h) = self.heads.get(&stream) {
            return Ok(*h);
        }
        let h: Option<(i64, i64, Option<i64>)> = self
            .tx
            .prepare_cached(
                "SELECT s.stream_key, s.version, \
                 (SELECT max(e.version) FROM events e WHERE e.stream_key = s.stream_key) \
                 FROM streams s WHERE s.kind = ?1 AND s.entity_id = ?2",
            )?
            .query_row(params![stream.kind.as_str(), stream.id], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })
            .optional()?;
        // The head row must agree with the stream's events (one index probe): appending on
        // top of a stream whose head was edited would hide the edit.
        if let Some((key, version, top)) = h
            && top.unwrap_or(0) != version
        {
            let last: Option<i64> = self
                .tx
                .query_row(
                    "SELECT max(position) FROM events WHERE stream_key = ?1",
                    [key],
                    |r| r.get(0),
                )
                .optional()?
                .flatten();
            return Err(Error::Tampered {
                position: last.unwrap_or(self.head_position),
                refused: Refused::Append,
                why: format!(
                    "stream {stream}: its head row says version {version}, but its events go up to version {}",
                    top.unwrap_or(0)
                ),
            });
        }
        if h.is_none() {
            self.check_no_lost_head(stream)?;
        }
        let h = h.map(|(key, version, _)| (key, version));
        self.heads.insert(stream, h);
        Ok(h)
    }

    /// A stream with no head row must be new: if the projections hold its entity, its head
    /// row was deleted (one primary-key probe of the entity's table; the kinds without one
    /// are not checked). Appending would start the stream again at version 1 — or, for
    /// another command, report a conflict that no retry resolves.
    fn check_no_lost_head(&self, stream: StreamId) -> Result<(), Error> {
        let Some(table) = project::table_of(stream.kind).map(|t| t.name) else {
            return Ok(());
        };
        let known: bool = self
            .tx
            .prepare_cached(&format!(
                "SELECT EXISTS (SELECT 1 FROM {table} WHERE id = ?1)"
            ))?
            .query_row([stream.id], |r| r.get(0))?;
        if !known {
            return Ok(());
        }
        // Where its events are (a scan, on this error path only): the first one whose
        // stream row is gone.
        let orphan: Option<i64> = self.tx.query_row(
            "SELECT min(e.position) FROM events e \
             WHERE NOT EXISTS (SELECT 1 FROM streams s WHERE s.stream_key = e.stream_key)",
            [],
            |r| r.get(0),
        )?;
        Err(Error::Tampered {
            position: orphan.unwrap_or(self.head_position),
            why: format!(
                "stream {stream} has no head row in `streams`, but the projections hold {stream} (its head row was deleted)"
            ),
            refused: Refused::Append,
        })
    }

    /// Takes up to `limit` timers due at or before `now`, earliest first, with their streams
    /// (whose heads this transaction then knows without asking again): their rows are removed
    /// in one range delete, so the caller must append each one's firing event
    /// (`deadline.elapsed`, `robots.resumed`, `task.overdue`) in this transaction.
    pub fn take_due_timers(
        &mut self,
        now: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<(StreamId, PendingTimer)>, Error> {
        let due = project::take_due_timers(&self.tx, now, limit)?;
        let mut out = Vec::with_capacity(due.len());
        for d in due {
            if let Some(head) = d.head {
                self.heads.entry(d.stream).or_insert(Some(head));
            }
            out.push((d.stream, d.timer));
        }
        if !out.is_empty() {
            self.projector
                .taken(out.iter().map(|(stream, t)| (*stream, t.id)));
        }
        Ok(out)
    }

    /// The stream's pending timers (deadlines, delayed robots, a task's due time), in the
    /// order they were set.
    pub fn pending_timers(&mut self, stream: StreamId) -> Result<Vec<PendingTimer>, Error> {
        project::pending_timers(&self.tx, "main", stream)
    }

    /// Ids of leads, contacts or companies (`kind`) that have any of `values` as a phone,
    /// e-mail (case-insensitively) or INN, ascending; with `before`, only ids below it. An
    /// index lookup per value in the `match_keys` projection, including this transaction's
    /// appends.
    pub fn matching(
        &mut self,
        what: MatchKey,
        values: &[String],
        kind: EntityKind,
        before: Option<i64>,
    ) -> Result<Vec<i64>, Error> {
        if values.is_empty() {
            return Ok(Vec::new());
        }
        // The rows of entities changed since the last flush may be stale: their state in the
        // projector answers for them, so a lookup costs no flush (which rewrites each changed
        // row and its indexes — a reaction that looked its client up after each robot
        // rewrote the lead as many times).
        let Some(unflushed) = self.projector.unflushed(kind, UNFLUSHED_MAX) else {
            self.projector.flush(&self.tx)?;
            return project::matching(&self.tx, what, values, kind, before);
        };
        let found = project::matching(&self.tx, what, values, kind, before)?;
        if unflushed.is_empty() {
            return Ok(found);
        }
        let mut ids: std::collections::BTreeSet<i64> = found.into_iter().collect();
        let wanted: Vec<String> = values.iter().map(|v| what.normalize(v)).collect();
        for (id, state) in unflushed {
            ids.remove(&id);
            if let Some(e) = state
                && before.is_none_or(|b| id < b)
                && project::match_keys_of(e)
                    .iter()
                    .any(|(w, v)| *w == what && wanted.contains(v))
            {
                ids.insert(id);
            }
        }
        Ok(ids.into_iter().collect())
    }

    /// The entities of `kind` changed in this transaction since its last flush, with their
    /// state now (see `Projector::unflushed`); `None` when there are too many to be worth
    /// it, and the caller flushes instead.
    pub(crate) fn unflushed(&self, kind: EntityKind) -> Option<Vec<(i64, Option<&Entity>)>> {
        self.projector.unflushed(kind, UNFLUSHED_MAX)
    }

    /// The employee's notifications as of this transaction (its own appends included), under
    /// its write lock: what a writer deciding which notifications are still unread must read,
    /// so concurrent writers cannot both decide the same one is.
    pub fn inbox(
        &mut self,
        employee: &str,
        filter: &crate::query::InboxFilter,
    ) -> Result<Vec<crate::query::Notification>, Error> {
        crate::query::inbox(self.conn()?, Some(employee), filter)
    }

    /// The transaction's connection for tables the projector does not hold back: the log, the side
    /// tables (written as events are appended) and what is not a projection. Nothing is flushed.
    pub(crate) fn sql(&self) -> &Connection {
        &self.tx
    }

    /// Stamps what is appended from now on with `recorded_at` (a batch of writes held in one
    /// transaction, each with its own moment).
    pub(crate) fn restamp(&mut self, recorded_at: DateTime<Utc>) {
        self.recorded_at = fmt_time(recorded_at);
    }

    /// What the next transaction of a batch can take over from this one (see
    /// [`Tx::reuse`]): the projector, its changes written, with its cache of entities, and the
    /// memory of the events kept for reading back. Only for a database nobody else writes:
    /// the cached entities are then still what the tables hold after this commits.
    pub(crate) fn carry(&mut self) -> Result<Carry, Error> {
        self.projector.flush(&self.tx)?;
        let mut recent = std::mem::take(&mut self.recent);
        recent.clear();
        Ok(Carry {
            projector: std::mem::replace(&mut self.projector, Projector::new("main")),
            recent,
        })
    }

    /// Takes over what the batch's previous transaction left ([`Tx::carry`]), before
    /// anything is written in this one.
    pub(crate) fn reuse(&mut self, carry: Carry) {
        if self.recent.is_empty() && self.recent_complete && self.projector.pending() == 0 {
            self.projector = carry.projector;
            self.recent = carry.recent;
        }
    }

    /// How many events this transaction has appended.
    pub(crate) fn appended(&self) -> i64 {
        self.head_position - self.begun_at
    }

    /// The `recorded_at` this transaction stamps, in the stored time format.
    pub(crate) fn recorded_at(&self) -> &str {
        &self.recorded_at
    }

    /// The connection, for queries over the projections; everything appended so far in this
    /// transaction is written to the tables first, so queries see it.
    pub(crate) fn conn(&mut self) -> Result<&Connection, Error> {
        self.projector.flush(&self.tx)?;
        Ok(&self.tx)
    }

    /// Up to `limit` events after position `after`, including this transaction's, in position
    /// order.
    pub fn read_after(&self, after: i64, limit: usize) -> Result<Vec<RecordedEvent>, Error> {
        if let Some(first) = self.recent.first().map(|r| r.position)
            && self.recent_complete
            && after + 1 >= first
        {
            // Everything after `after` was appended in this transaction and is in memory.
            let skip = usize::try_from(after + 1 - first).unwrap_or(usize::MAX);
            return Ok(self.recent.iter().skip(skip).take(limit).cloned().collect());
        }
        read_log(&self.tx, &LogFilter::default(), after, limit)
    }

    /// One event by position.
    pub fn event_at(&self, position: i64) -> Result<Option<RecordedEvent>, Error> {
        Ok(read_log(&self.tx, &LogFilter::default(), position - 1, 1)?
            .into_iter()
            .next()
            .filter(|e| e.position == position))
    }

    /// The position a named cursor has reached (`None` if it was never set).
    pub fn cursor(&self, name: &str) -> Result<Option<i64>, Error> {
        Ok(self
            .tx
            .prepare_cached("SELECT position FROM rule_cursor WHERE name = ?1")?
            .query_row([name], |r| r.get(0))
            .optional()?)
    }

    /// The newest position after `after` that a later event names as its cause, leaving out
    /// events of the `except` types (timer firings, whose cause is the event that set the
    /// timer). For the rules runtime, whose reactions carry their trigger as cause, this is how
    /// far the log itself says the rules got, whatever the cursor row says. Reads only the
    /// events after `after`.
    pub fn last_cause_after(&self, after: i64, except: &[&str]) -> Result<Option<i64>, Error> {
        let marks: Vec<String> = (0..except.len()).map(|i| format!("?{}", i + 2)).collect();
        let sql = format!(
            "SELECT max(causation) FROM events WHERE position > ?1 AND causation > ?1{}",
            if except.is_empty() {
                String::new()
            } else {
                format!(" AND type NOT IN ({})", marks.join(", "))
            }
        );
        let mut args: Vec<&dyn rusqlite::ToSql> = vec![&after];
        args.extend(except.iter().map(|t| t as &dyn rusqlite::ToSql));
        Ok(self
            .tx
            .prepare_cached(&sql)?
            .query_row(args.as_slice(), |r| r.get(0))?)
    }

    /// Moves a named cursor; it commits (or not) with everything else in the transaction.
    pub fn set_cursor(&self, name: &str, position: i64) -> Result<(), Error> {
        self.tx
            .prepare_cached(
                "INSERT INTO rule_cursor (name, position) VALUES (?1, ?2) \
                 ON CONFLICT (name) DO UPDATE SET position = excluded.position",
            )?
            .execute(params![name, position])?;
        Ok(())
    }

    /// Makes every flush of this transaction's cached entities past `n` of them empty the
    /// cache (4096 otherwise): for tests of that path.
    #[doc(hidden)]
    pub fn limit_cache(&mut self, n: usize) {
        self.projector.limit_cache(n);
    }

    /// Runs `f` so that whatever it appends stays only if it returns `Ok`: on `Err`, its
    /// appends are rolled back (an SQLite savepoint) and the transaction goes on as before it.
    /// A robot runs this way, so a robot that fails half-way leaves nothing behind.
    pub fn atomically<T, E: From<Error>>(
        &mut self,
        f: impl FnOnce(&mut Self) -> Result<T, E>,
    ) -> Result<T, E> {
        let saved = (self.head_position, self.head_hash, self.next_ids.clone());
        // Prepared once per connection (a savepoint per job and per robot: parsing them
        // again each time showed in the writer's profile).
        self.tx
            .prepare_cached("SAVEPOINT robot")
            .and_then(|mut s| s.execute([]))
            .map_err(Error::from)?;
        self.projector.savepoint();
        match f(self) {
            Ok(v) => {
                self.projector.release();
                self.tx
                    .prepare_cached("RELEASE robot")
                    .and_then(|mut s| s.execute([]))
                    .map_err(Error::from)?;
                Ok(v)
            }
            Err(e) => {
                // The cache goes back with the tables (states cached before the savepoint
                // and not yet written are cached again, still to be written).
                self.projector.rollback();
                self.tx
                    .execute_batch("ROLLBACK TO robot; RELEASE robot")
                    .map_err(Error::from)?;
                (self.head_position, self.head_hash, self.next_ids) = saved;
                self.heads.clear();
                let head = self.head_position;
                self.recent.retain(|r| r.position <= head);
                Err(e)
            }
        }
    }

    /// A webhook endpoint's version and whether it was removed; `None` if it does not exist.
    fn endpoint_state(&mut self, stream: StreamId) -> Result<Option<EndpointState>, Error> {
        let version = self.version(stream)?;
        if version == 0 || stream.kind != EntityKind::Endpoint {
            return Ok(None);
        }
        let state: Option<String> = self
            .tx
            .prepare_cached("SELECT state FROM endpoints WHERE id = ?1")?
            .query_row([stream.id], |r| r.get(0))
            .optional()?;
        Ok(Some(EndpointState {
            version,
            removed: state.as_deref() == Some("removed"),
        }))
    }

    fn exists(&self, stream: StreamId) -> bool {
        self.projector.cached(stream)
            || self
                .tx
                .prepare_cached("SELECT 1 FROM streams WHERE kind = ?1 AND entity_id = ?2")
                .and_then(|mut s| s.exists(params![stream.kind.as_str(), stream.id]))
                .unwrap_or(false)
    }
}

/// What a decision may ask of the transaction (and, for an endpoint command, its endpoint's
/// state, read beforehand).
struct Exists<'a, 'c>(&'a Tx<'c>, Option<EndpointState>);

impl Lookup for Exists<'_, '_> {
    fn exists(&self, stream: StreamId) -> bool {
        self.0.exists(stream)
    }

    fn token(&self, name: &str) -> Option<leadflow_engine::decide::TokenState> {
        // An error here recurs at the append, which reports it.
        crate::project::token_state(&self.0.tx, name).ok().flatten()
    }

    fn endpoint(&self, _stream: StreamId) -> Option<EndpointState> {
        self.1
    }
}

/// Inserts an event as it was recorded elsewhere (an export, another database's log), under
/// the stream key `key`: its position, hash and every field kept as they are. For copies of a
/// log, which check or rebuild the chain and projections themselves.
pub(crate) fn insert_recorded(
    conn: &Connection,
    key: i64,
    e: &RecordedEvent,
) -> Result<(), rusqlite::Error> {
    conn.prepare_cached(
        "INSERT INTO events (position, stream_key, version, type, schema_version, payload, \
         occurred_at, recorded_at, actor, causation, correlation, hash) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
    )?
    .execute(params![
        e.position,
        key,
        e.version,
        e.event_type,
        e.schema_version,
        e.payload,
        e.occurred_at,
        e.recorded_at,
        e.actor,
        e.causation,
        e.correlation,
        e.hash.as_slice(),
    ])?;
    Ok(())
}

/// When the timer an event sets falls due, for the events that set one.
fn timer_set_by(event: &Event) -> Option<DateTime<Utc>> {
    match event {
        Event::DeadlineScheduled(d) => Some(d.due_at),
        Event::RobotsDelayed(d) => Some(d.due_at),
        Event::TaskCreated(t) => Some(t.due_at),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn a_deadline_beyond_year_9999_never_breaks_taking_the_due_timers() {
        use leadflow_engine::Actor;
        use leadflow_engine::command::NewLead;
        use leadflow_engine::event::DeadlineScheduled;
        let config =
            Config::from_toml("leadflow.toml", leadflow_engine::config::DEFAULT_CONFIG).unwrap();
        let t0 = Utc.with_ymd_and_hms(2026, 3, 2, 9, 0, 0).unwrap();
        let meta = EventMeta::root(t0, Actor::Employee("ivanov".into()));
        let mut store = crate::Store::open_in_memory().unwrap();
        let lead = Command::CreateLead(NewLead {
            name: Some("Ivan".into()),
            phones: vec!["+79378922084".into()],
            source: Some("web_form".into()),
            ..Default::default()
        });
        store
            .write(t0, |tx| tx.execute(&config, &lead, &meta))
            .unwrap();
        let stream = StreamId::new(EntityKind::Lead, 1);
        let deadline = |name: &str, due_at| {
            Event::DeadlineScheduled(DeadlineScheduled {
                name: name.into(),
                due_at,
                rule: "r".into(),
                ruleset: "h".into(),
            })
        };
        let far = Utc.with_ymd_and_hms(10_240, 8, 21, 20, 41, 43).unwrap();
        store
            .write(t0, |tx| {
                tx.append(stream, 1, &[deadline("far", far)], &meta)?;
                tx.append(
                    stream,
                    2,
                    &[deadline("soon", t0 + chrono::Duration::hours(1))],
                    &meta,
                )
            })
            .unwrap();
        let mut taken = |at| {
            store.write(t0, |tx| tx.take_due_timers(at, 10)).map(|v| {
                v.into_iter()
                    .map(|(_, t)| t.name.unwrap())
                    .collect::<Vec<_>>()
            })
        };
        assert_eq!(taken(t0).unwrap(), Vec::<String>::new());
        assert_eq!(taken(t0 + chrono::Duration::hours(2)).unwrap(), ["soon"]);
        assert_eq!(taken(far).unwrap(), ["far"]);
    }
}
