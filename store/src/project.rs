//! The projection tables: current state of leads, deals, contacts, companies and tasks, and the
//! stage history, derived from the log through [`leadflow_engine::projection::project`].
//!
//! Every function takes the schema name (`main`, or `fresh` for the scratch copy that `verify`
//! builds), so the same code maintains the live tables and rebuilds the comparison copy.

use crate::error::Error;
use crate::log::{SELECT_EVENT, fmt_time, parse_time, row_to_event};
use leadflow_engine::event::{ClientType, TaskKind};
use leadflow_engine::ids::{EmployeeId, PipelineId, StageId};
use leadflow_engine::model::{Company, Contact, Deal, Lead, Task};
use leadflow_engine::projection::{StageVisit, project};
use leadflow_engine::{Entity, EntityKind, Event, StreamId};
use rusqlite::{Connection, OptionalExtension, Row, params};
use serde_json::Value;
use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Mutex, OnceLock, PoisonError};

/// The projection tables, in the order `verify` compares them.
pub const TABLES: &[&str] = &[
    "leads",
    "deals",
    "contacts",
    "companies",
    "tasks",
    "stage_history",
    "timers",
    "incidents",
    "escalations",
    "inbox",
    "inbox_read",
    "outbox",
    "idle_marks",
    "schedules",
    "match_keys",
    "requests",
    "projection_state",
];

fn ddl(s: &str) -> String {
    format!(
        r#"
CREATE TABLE IF NOT EXISTS {s}.leads (
    id               INTEGER PRIMARY KEY,
    title            TEXT    NOT NULL,
    name             TEXT,
    phones           TEXT    NOT NULL,
    emails           TEXT    NOT NULL,
    source           TEXT    NOT NULL,
    client_type      TEXT,
    responsible      TEXT,
    pipeline         TEXT    NOT NULL,
    stage            TEXT    NOT NULL,
    stage_reason     TEXT,
    fields           TEXT    NOT NULL,
    comment          TEXT,
    contact_id       INTEGER,
    company_id       INTEGER,
    created_at       TEXT    NOT NULL,
    updated_at       TEXT    NOT NULL,
    stage_entered_at TEXT    NOT NULL,
    version          INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS {s}.leads_by_stage ON leads (pipeline, stage);
CREATE INDEX IF NOT EXISTS {s}.leads_by_responsible ON leads (responsible);
CREATE INDEX IF NOT EXISTS {s}.leads_by_company ON leads (company_id);

CREATE TABLE IF NOT EXISTS {s}.deals (
    id               INTEGER PRIMARY KEY,
    title            TEXT    NOT NULL,
    pipeline         TEXT    NOT NULL,
    stage            TEXT    NOT NULL,
    stage_reason     TEXT,
    amount           INTEGER,
    currency         TEXT    NOT NULL,
    responsible      TEXT,
    contact_id       INTEGER,
    company_id       INTEGER,
    lead_id          INTEGER,
    fields           TEXT    NOT NULL,
    comment          TEXT,
    created_at       TEXT    NOT NULL,
    updated_at       TEXT    NOT NULL,
    stage_entered_at TEXT    NOT NULL,
    version          INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS {s}.deals_by_stage ON deals (pipeline, stage);
CREATE INDEX IF NOT EXISTS {s}.deals_by_responsible ON deals (responsible);
CREATE INDEX IF NOT EXISTS {s}.deals_by_contact ON deals (contact_id);
CREATE INDEX IF NOT EXISTS {s}.deals_by_company ON deals (company_id);

CREATE TABLE IF NOT EXISTS {s}.contacts (
    id          INTEGER PRIMARY KEY,
    name        TEXT    NOT NULL,
    phones      TEXT    NOT NULL,
    emails      TEXT    NOT NULL,
    company_id  INTEGER,
    responsible TEXT,
    fields      TEXT    NOT NULL,
    created_at  TEXT    NOT NULL,
    updated_at  TEXT    NOT NULL,
    version     INTEGER NOT NULL
);

CREATE TABLE IF NOT EXISTS {s}.companies (
    id           INTEGER PRIMARY KEY,
    name         TEXT    NOT NULL,
    inn          TEXT,
    bank_account TEXT,
    bik          TEXT,
    phones       TEXT    NOT NULL,
    emails       TEXT    NOT NULL,
    responsible  TEXT,
    fields       TEXT    NOT NULL,
    created_at   TEXT    NOT NULL,
    updated_at   TEXT    NOT NULL,
    version      INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS {s}.companies_by_inn ON companies (inn);

CREATE TABLE IF NOT EXISTS {s}.match_keys (
    what      TEXT    NOT NULL,
    value     TEXT    NOT NULL,
    kind      TEXT    NOT NULL,
    entity_id INTEGER NOT NULL,
    PRIMARY KEY (what, value, kind, entity_id)
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS {s}.tasks (
    id           INTEGER PRIMARY KEY,
    kind         TEXT    NOT NULL,
    title        TEXT    NOT NULL,
    assignee     TEXT    NOT NULL,
    due_at       TEXT    NOT NULL,
    lead_id      INTEGER,
    deal_id      INTEGER,
    created_at   TEXT    NOT NULL,
    completed_at TEXT,
    result       TEXT,
    version      INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS {s}.tasks_open_by_due ON tasks (due_at) WHERE completed_at IS NULL;
CREATE INDEX IF NOT EXISTS {s}.tasks_by_assignee ON tasks (assignee);
CREATE INDEX IF NOT EXISTS {s}.tasks_by_lead ON tasks (lead_id);
CREATE INDEX IF NOT EXISTS {s}.tasks_by_deal ON tasks (deal_id);

CREATE TABLE IF NOT EXISTS {s}.stage_history (
    position   INTEGER PRIMARY KEY,
    kind       TEXT    NOT NULL,
    entity_id  INTEGER NOT NULL,
    pipeline   TEXT    NOT NULL,
    stage      TEXT    NOT NULL,
    entered_at TEXT    NOT NULL,
    left_at    TEXT
);
CREATE UNIQUE INDEX IF NOT EXISTS {s}.stage_history_open ON stage_history (kind, entity_id) WHERE left_at IS NULL;
CREATE INDEX IF NOT EXISTS {s}.stage_history_by_entity ON stage_history (kind, entity_id);

CREATE TABLE IF NOT EXISTS {s}.timers (
    due_at       TEXT    NOT NULL,
    id           INTEGER NOT NULL,
    what         TEXT    NOT NULL,
    kind         TEXT    NOT NULL,
    entity_id    INTEGER NOT NULL,
    name         TEXT,
    stage        TEXT,
    survive_move INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (due_at, id)
) WITHOUT ROWID;
-- No index by stream: firing in due order then deletes rows that sit together, while an index
-- by stream would be updated at random places. A stream's pending timers are found from its
-- scheduling events instead (`pending_timers`). Older databases had timers_by_stream.
DROP INDEX IF EXISTS {s}.timers_by_stream;

CREATE TABLE IF NOT EXISTS {s}.incidents (
    position INTEGER PRIMARY KEY,
    at       TEXT    NOT NULL,
    kind     TEXT    NOT NULL,
    employee TEXT,
    rule     TEXT,
    stream   TEXT    NOT NULL,
    text     TEXT    NOT NULL
);
CREATE INDEX IF NOT EXISTS {s}.incidents_by_employee ON incidents (employee, kind, at);
CREATE INDEX IF NOT EXISTS {s}.incidents_by_stream ON incidents (stream, position);

CREATE TABLE IF NOT EXISTS {s}.escalations (
    position INTEGER PRIMARY KEY,
    at       TEXT    NOT NULL,
    employee TEXT    NOT NULL,
    manager  TEXT,
    kind     TEXT    NOT NULL,
    count    INTEGER NOT NULL,
    window   TEXT    NOT NULL,
    rule     TEXT    NOT NULL,
    stream   TEXT    NOT NULL
);

CREATE TABLE IF NOT EXISTS {s}.inbox (
    position INTEGER PRIMARY KEY,
    at       TEXT    NOT NULL,
    employee TEXT    NOT NULL,
    priority TEXT    NOT NULL,
    text     TEXT    NOT NULL,
    rule     TEXT,
    stream   TEXT    NOT NULL
);
CREATE INDEX IF NOT EXISTS {s}.inbox_by_employee ON inbox (employee, position);
CREATE INDEX IF NOT EXISTS {s}.inbox_by_stream ON inbox (stream, position);

-- Notifications read (`notification.read`): `id` is the position of the notification.queued
-- event, `position` that of the event that marked it read.
CREATE TABLE IF NOT EXISTS {s}.inbox_read (
    id       INTEGER PRIMARY KEY,
    at       TEXT    NOT NULL,
    position INTEGER NOT NULL
);

CREATE TABLE IF NOT EXISTS {s}.outbox (
    position INTEGER PRIMARY KEY,
    at       TEXT    NOT NULL,
    channel  TEXT    NOT NULL,
    target   TEXT,
    employee TEXT,
    text     TEXT    NOT NULL,
    key      TEXT    NOT NULL,
    stream   TEXT    NOT NULL
);

-- External robot requests (`robot.requested`) without an outcome (`robot.completed`) yet:
-- what runs after the commit, and again after a crash.
CREATE TABLE IF NOT EXISTS {s}.requests (
    position  INTEGER PRIMARY KEY,
    kind      TEXT    NOT NULL,
    entity_id INTEGER NOT NULL,
    robot     TEXT    NOT NULL,
    key       TEXT    NOT NULL
);

CREATE TABLE IF NOT EXISTS {s}.idle_marks (
    kind      TEXT    NOT NULL,
    entity_id INTEGER NOT NULL,
    rule      TEXT    NOT NULL,
    since     TEXT    NOT NULL,
    PRIMARY KEY (kind, entity_id, rule)
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS {s}.schedules (
    rule   TEXT PRIMARY KEY,
    due_at TEXT NOT NULL
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS {s}.projection_state (
    id       INTEGER PRIMARY KEY CHECK (id = 1),
    position INTEGER NOT NULL
);
INSERT OR IGNORE INTO {s}.projection_state (id, position) VALUES (1, 0);
"#
    )
}

/// Creates any missing projection table.
pub fn ensure(conn: &Connection, schema: &str) -> Result<(), Error> {
    conn.execute_batch(&ddl(schema))?;
    Ok(())
}

/// Drops and recreates every projection table (empty, checkpoint 0).
pub fn recreate(conn: &Connection, schema: &str) -> Result<(), Error> {
    for t in TABLES {
        conn.execute_batch(&format!("DROP TABLE IF EXISTS {schema}.{t};"))?;
    }
    ensure(conn, schema)
}

/// The position up to which the projections in `schema` are built.
pub fn checkpoint(conn: &Connection, schema: &str) -> Result<i64, Error> {
    Ok(conn
        .prepare_cached(&format!(
            "SELECT position FROM {schema}.projection_state WHERE id = 1"
        ))?
        .query_row([], |r| r.get(0))
        .optional()?
        .unwrap_or(0))
}

pub(crate) fn set_checkpoint(conn: &Connection, schema: &str, position: i64) -> Result<(), Error> {
    conn.prepare_cached(&format!(
        "UPDATE {schema}.projection_state SET position = ?1 WHERE id = 1"
    ))?
    .execute([position])?;
    Ok(())
}

/// Applies events after the checkpoint of `schema` until the projections reach the head of the
/// log. Returns the new checkpoint.
///
/// From checkpoint 0 (empty tables) everything is built in one transaction by
/// [`rebuild_from_scratch`]; from a later checkpoint, in pages of one transaction each. Each
/// transaction re-reads the checkpoint under the write lock, so two processes catching up at
/// once never apply an event twice.
pub(crate) fn rebuild(
    store: &crate::Store,
    schema: &'static str,
    progress: &mut dyn FnMut(i64),
) -> Result<i64, Error> {
    const PAGE: i64 = 8192;
    loop {
        let tx = store.begin_immediate()?;
        if checkpoint(&tx, schema)? == 0 {
            let position = rebuild_from_scratch(&tx, schema, progress)?;
            tx.commit()?;
            return Ok(position);
        }
        let mut projector = Projector::new(schema);
        let applied = catch_up_page(&tx, &mut projector, PAGE)?;
        let position = checkpoint(&tx, schema)?;
        tx.commit()?;
        if applied == 0 {
            return Ok(position);
        }
        progress(position);
    }
}

/// Builds the projections of `schema`, whose tables must be empty (checkpoint 0), from every
/// event in the log, inside the caller's write transaction; moves the checkpoint to the head
/// and returns it. `progress` is told how many events have been applied so far (the log has
/// no gaps, so that is also the position the rebuild has reached in count).
///
/// Projections are per entity: an entity's row and its stage history depend only on its own
/// stream. So instead of applying the log in position order, which loads and rewrites an
/// entity's row once per event, this walks the log stream by stream (through the
/// `(stream_key, version)` index), folds each stream in memory and writes each row once, with
/// each stage visit written complete (`left_at` known). The tables end up exactly as a
/// position-order replay leaves them, and memory holds one entity at a time however long the
/// log is.
pub(crate) fn rebuild_from_scratch(
    conn: &Connection,
    schema: &'static str,
    progress: &mut dyn FnMut(i64),
) -> Result<i64, Error> {
    const PROGRESS_EVERY: i64 = 16_384;
    let head: i64 = conn
        .prepare_cached("SELECT coalesce(max(position), 0) FROM events")?
        .query_row([], |r| r.get(0))?;
    let writer = Writer::new(schema);
    // Streams in key order, each stream's events through the (stream_key, version) index: no
    // sort, no temporary table (CROSS JOIN pins that join order; the write lock means no
    // event beyond `head` can appear).
    let mut stmt = conn.prepare(
        "SELECT s.stream_key, s.kind, s.entity_id, e.position, e.type, e.schema_version, e.payload, e.occurred_at \
         FROM streams s CROSS JOIN events e ON e.stream_key = s.stream_key \
         ORDER BY s.stream_key, e.version",
    )?;
    let mut rows = stmt.query([])?;
    let mut current: Option<(i64, StreamFold)> = None;
    let mut applied = 0i64;
    while let Some(r) = rows.next()? {
        let key: i64 = r.get(0)?;
        let position: i64 = r.get(3)?;
        if current.as_ref().is_none_or(|(k, _)| *k != key) {
            if let Some((_, fold)) = current.take() {
                fold.finish(conn, &writer)?;
            }
            let kind = text(r, 1)?;
            let Ok(kind) = kind.parse::<EntityKind>() else {
                return Err(Error::Corrupt {
                    position,
                    why: format!("unknown stream kind '{kind}'"),
                });
            };
            current = Some((key, StreamFold::new(StreamId::new(kind, r.get(2)?))));
        }
        let event = Event::decode(text(r, 4)?, r.get::<_, i64>(5)? as u32, text(r, 6)?)
            .map_err(|source| Error::Decode { position, source })?;
        let occurred_at = text(r, 7)?;
        let at = parse_time(occurred_at).ok_or_else(|| Error::Corrupt {
            position,
            why: format!("occurred_at '{occurred_at}' is not a time"),
        })?;
        if let Some((_, fold)) = current.as_mut() {
            fold.apply(conn, &writer, position, &event, at)?;
        }
        applied += 1;
        if applied % PROGRESS_EVERY == 0 {
            progress(applied);
        }
    }
    if let Some((_, fold)) = current.take() {
        fold.finish(conn, &writer)?;
    }
    set_checkpoint(conn, schema, head)?;
    progress(applied);
    Ok(head)
}

/// A text column, borrowed from the row.
fn text<'r>(r: &'r Row<'_>, i: usize) -> rusqlite::Result<&'r str> {
    r.get_ref(i)?.as_str().map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(i, rusqlite::types::Type::Text, Box::new(e))
    })
}

/// One stream being folded by [`rebuild_from_scratch`]: the entity so far and its open stage
/// visit, not yet written.
struct StreamFold {
    stream: StreamId,
    entity: Option<Entity>,
    open: Option<(i64, StageVisit)>,
}

impl StreamFold {
    fn new(stream: StreamId) -> Self {
        StreamFold {
            stream,
            entity: None,
            open: None,
        }
    }

    /// The same changes as [`Projector::apply`], kept in memory until the stream ends.
    fn apply(
        &mut self,
        conn: &Connection,
        writer: &Writer,
        position: i64,
        event: &Event,
        at: chrono::DateTime<chrono::Utc>,
    ) -> Result<(), Error> {
        side_tables(conn, writer.schema, position, self.stream, event, at)?;
        if !self.stream.kind.is_entity() {
            return Ok(());
        }
        let p = project(self.entity.take(), event, at);
        if p.left.is_some()
            && let Some((entered, visit)) = self.open.take()
        {
            writer.stage_visit(conn, entered, &visit, Some(at))?;
        }
        if let Some(visit) = p.entered {
            // A visit entered while another is open would break the one-open-visit index,
            // exactly as the live path would.
            if let Some((entered, open)) = self.open.replace((position, visit)) {
                writer.stage_visit(conn, entered, &open, None)?;
            }
        }
        if p.entity.is_none() {
            tracing::warn!(position, stream = %self.stream, event = event.event_type(), "event does not apply to the entity's state; ignored");
        }
        self.entity = p.entity;
        Ok(())
    }

    /// Writes the entity's row and its open stage visit.
    fn finish(self, conn: &Connection, writer: &Writer) -> Result<(), Error> {
        if let Some((entered, visit)) = &self.open {
            writer.stage_visit(conn, *entered, visit, None)?;
        }
        if let Some(e) = &self.entity {
            writer.save(conn, e, None)?;
        }
        Ok(())
    }
}

/// Applies up to `limit` events after the checkpoint of the projector's schema, flushes them
/// and moves the checkpoint. Returns how many events were applied.
pub(crate) fn catch_up_page(
    conn: &Connection,
    projector: &mut Projector,
    limit: i64,
) -> Result<usize, Error> {
    let schema = projector.schema;
    let after = checkpoint(conn, schema)?;
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
        projector.apply(conn, rec.position, rec.stream, &event, at)?;
    }
    projector.flush(conn)?;
    set_checkpoint(conn, schema, last)?;
    Ok(page.len())
}

/// Applies events to entity states held in memory, and writes them back on [`Projector::flush`].
/// Stage history rows are written as events arrive.
pub struct Projector {
    schema: &'static str,
    cache: HashMap<StreamId, Slot>,
    dirty: HashSet<StreamId>,
    /// Bookkeeping events of entities not in the cache, counted instead of loading them:
    /// they only add to the version (see `Entity::add_version`).
    bumps: HashMap<StreamId, i64>,
    /// Timers whose rows were removed in bulk when they were taken to fire (see
    /// `Tx::take_due_timers`): their firing events need not remove them again.
    taken: HashMap<StreamId, Vec<i64>>,
    pending: usize,
    writer: Writer,
}

/// An entity in the projector's cache.
struct Slot {
    /// Its state as of the events applied so far.
    state: Option<Entity>,
    /// What its row in the table holds in indexed columns; `None` if it has no row yet.
    stored: Option<IndexKey>,
}

impl Projector {
    /// A projector writing to `schema`.
    pub fn new(schema: &'static str) -> Self {
        Projector {
            schema,
            cache: HashMap::new(),
            dirty: HashSet::new(),
            bumps: HashMap::new(),
            taken: HashMap::new(),
            pending: 0,
            writer: Writer::new(schema),
        }
    }

    /// Events applied since the last flush.
    pub fn pending(&self) -> usize {
        self.pending
    }

    /// Whether the entity is known to exist in the cache.
    pub fn cached(&self, stream: StreamId) -> bool {
        matches!(self.cache.get(&stream), Some(Slot { state: Some(_), .. }))
    }

    /// Records that `stream` has just been created, so it has no row to load.
    pub fn created(&mut self, stream: StreamId) {
        self.cache.entry(stream).or_insert(Slot {
            state: None,
            stored: None,
        });
    }

    /// The entity's current state: from the cache, else from the table.
    pub fn load(&mut self, conn: &Connection, stream: StreamId) -> Result<Option<Entity>, Error> {
        Ok(self.slot(conn, stream)?.state.clone())
    }

    fn slot(&mut self, conn: &Connection, stream: StreamId) -> Result<&mut Slot, Error> {
        Ok(match self.cache.entry(stream) {
            Entry::Occupied(o) => o.into_mut(),
            Entry::Vacant(v) => {
                let mut state = load(conn, self.schema, stream)?;
                let stored = state.as_ref().map(index_key);
                if let Some(n) = self.bumps.remove(&stream) {
                    // Counted bookkeeping is now part of the cached state, written with it.
                    if let Some(e) = &mut state {
                        e.add_version(n);
                    }
                    self.dirty.insert(stream);
                }
                v.insert(Slot { state, stored })
            }
        })
    }

    /// Applies one event.
    pub fn apply(
        &mut self,
        conn: &Connection,
        position: i64,
        stream: StreamId,
        event: &Event,
        at: chrono::DateTime<chrono::Utc>,
    ) -> Result<(), Error> {
        let mut take = |id: Option<i64>| match self.taken.get_mut(&stream) {
            Some(ids) => {
                // A task has one timer, so its overdue event (which names none) takes it.
                let at = match id {
                    Some(id) => ids.iter().position(|t| *t == id),
                    None => (!ids.is_empty()).then_some(0),
                };
                let found = at.map(|i| ids.swap_remove(i)).is_some();
                if ids.is_empty() {
                    self.taken.remove(&stream);
                }
                found
            }
            None => false,
        };
        let taken = match event {
            Event::DeadlineElapsed(d) => take(Some(d.scheduled)),
            Event::RobotsResumed(r) => take(Some(r.delayed)),
            Event::TaskOverdue(_) => take(None),
            _ => false,
        };
        if !taken {
            // (A taken timer's row is gone already: nothing else in those events to project.)
            side_tables(conn, self.schema, position, stream, event, at)?;
        }
        if !stream.kind.is_entity() {
            return Ok(());
        }
        if !event.is_activity() && !self.cache.contains_key(&stream) {
            // A deadline firing, a notification, a journal entry: no need to load the entity.
            *self.bumps.entry(stream).or_default() += 1;
            self.pending += 1;
            return Ok(());
        }
        let slot = self.slot(conn, stream)?;
        let p = project(slot.state.take(), event, at);
        let ignored = p.entity.is_none();
        slot.state = p.entity;
        if p.left.is_some() {
            self.writer.stage_left(conn, stream, at)?;
        }
        if let Some(v) = &p.entered {
            self.writer.stage_visit(conn, position, v, None)?;
        }
        if ignored {
            tracing::warn!(position, %stream, event = event.event_type(), "event does not apply to the entity's state; ignored");
        }
        self.dirty.insert(stream);
        self.pending += 1;
        Ok(())
    }

    /// Records that the rows of these timers were removed, so that projecting their firing
    /// events skips removing them.
    pub fn taken(&mut self, timers: impl IntoIterator<Item = (StreamId, i64)>) {
        for (stream, id) in timers {
            self.taken.entry(stream).or_default().push(id);
        }
    }

    /// Forgets every cached state without writing it (after a rollback).
    pub fn discard(&mut self) {
        self.cache.clear();
        self.dirty.clear();
        self.bumps.clear();
        self.pending = 0;
    }

    /// Writes every changed entity to its table and empties the cache.
    pub fn flush(&mut self, conn: &Connection) -> Result<(), Error> {
        // In key order: neighbouring rows share pages.
        let mut dirty: Vec<StreamId> = self.dirty.drain().collect();
        dirty.sort_unstable();
        for stream in dirty {
            if let Some(Slot {
                state: Some(e),
                stored,
            }) = self.cache.get(&stream)
            {
                self.writer.save(conn, e, stored.as_ref())?;
            }
        }
        let mut bumps: Vec<(StreamId, i64)> = self.bumps.drain().collect();
        bumps.sort_unstable();
        for (stream, n) in bumps {
            self.writer.add_version(conn, stream, n)?;
        }
        self.cache.clear();
        self.pending = 0;
        Ok(())
    }
}

/// The values of a row's indexed columns (see [`Table::indexed`]), to tell whether an update
/// must touch the indexes.
type IndexKey = Vec<Option<String>>;

fn index_key(e: &Entity) -> IndexKey {
    let mut key = column_key(e);
    key.extend(
        match_keys(e)
            .into_iter()
            .map(|(what, value)| Some(format!("{}:{value}", what.as_str()))),
    );
    key
}

pub use leadflow_engine::workspace::{MatchKey, match_keys};

/// Ids of `kind` (lead, contact or company) that have any of `values` as a `what` key, in
/// ascending order; with `before`, only ids below it. One index lookup per value.
pub(crate) fn matching(
    conn: &Connection,
    what: MatchKey,
    values: &[String],
    kind: EntityKind,
    before: Option<i64>,
) -> Result<Vec<i64>, Error> {
    let mut ids = std::collections::BTreeSet::new();
    let mut stmt = conn.prepare_cached(
        "SELECT entity_id FROM main.match_keys WHERE what = ?1 AND value = ?2 AND kind = ?3 \
         AND entity_id < ?4",
    )?;
    for v in values {
        let v = what.normalize(v);
        let rows = stmt.query_map(
            params![what.as_str(), v, kind.as_str(), before.unwrap_or(i64::MAX)],
            |r| r.get::<_, i64>(0),
        )?;
        for id in rows {
            ids.insert(id?);
        }
    }
    Ok(ids.into_iter().collect())
}

/// The values of a row's indexed columns.
fn column_key(e: &Entity) -> IndexKey {
    let s = |v: &str| Some(v.to_owned());
    match e {
        Entity::Lead(l) => vec![
            l.responsible.as_ref().map(|r| r.as_str().to_owned()),
            s(l.pipeline.as_str()),
            s(l.stage.as_str()),
        ],
        Entity::Deal(d) => vec![
            d.responsible.as_ref().map(|r| r.as_str().to_owned()),
            s(d.pipeline.as_str()),
            s(d.stage.as_str()),
        ],
        Entity::Contact(_) => vec![],
        Entity::Company(c) => vec![c.inn.clone()],
        Entity::Task(t) => vec![
            s(t.assignee.as_str()),
            Some(fmt_time(t.due_at)),
            t.completed_at.map(fmt_time),
        ],
    }
}

/// An entity table: its columns in bind order (`?1` is always `id`, the last is `version`) and
/// the columns some index covers or filters on (in [`index_key`] order).
struct Table {
    name: &'static str,
    columns: &'static [&'static str],
    indexed: &'static [&'static str],
}

const LEADS: Table = Table {
    name: "leads",
    columns: &[
        "id",
        "title",
        "name",
        "phones",
        "emails",
        "source",
        "client_type",
        "responsible",
        "pipeline",
        "stage",
        "stage_reason",
        "fields",
        "comment",
        "contact_id",
        "company_id",
        "created_at",
        "updated_at",
        "stage_entered_at",
        "version",
    ],
    indexed: &["responsible", "pipeline", "stage"],
};

const DEALS: Table = Table {
    name: "deals",
    columns: &[
        "id",
        "title",
        "pipeline",
        "stage",
        "stage_reason",
        "amount",
        "currency",
        "responsible",
        "contact_id",
        "company_id",
        "lead_id",
        "fields",
        "comment",
        "created_at",
        "updated_at",
        "stage_entered_at",
        "version",
    ],
    indexed: &["responsible", "pipeline", "stage"],
};

const CONTACTS: Table = Table {
    name: "contacts",
    columns: &[
        "id",
        "name",
        "phones",
        "emails",
        "company_id",
        "responsible",
        "fields",
        "created_at",
        "updated_at",
        "version",
    ],
    indexed: &[],
};

const COMPANIES: Table = Table {
    name: "companies",
    columns: &[
        "id",
        "name",
        "inn",
        "bank_account",
        "bik",
        "phones",
        "emails",
        "responsible",
        "fields",
        "created_at",
        "updated_at",
        "version",
    ],
    indexed: &["inn"],
};

const TASKS: Table = Table {
    name: "tasks",
    columns: &[
        "id",
        "kind",
        "title",
        "assignee",
        "due_at",
        "lead_id",
        "deal_id",
        "created_at",
        "completed_at",
        "result",
        "version",
    ],
    indexed: &["assignee", "due_at", "completed_at"],
};

fn table(kind: EntityKind) -> &'static Table {
    match kind {
        EntityKind::Lead => &LEADS,
        EntityKind::Deal => &DEALS,
        EntityKind::Contact => &CONTACTS,
        EntityKind::Company => &COMPANIES,
        EntityKind::Task => &TASKS,
        EntityKind::Ruleset | EntityKind::System => {
            unreachable!("{kind} streams hold no entity, so no entity row is ever written")
        }
    }
}

/// How a row is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Write {
    /// A new row.
    Insert,
    /// An existing row, every column.
    Update,
    /// An existing row whose indexed columns did not change: leaves the indexes alone.
    UpdateUnindexed,
}

impl Table {
    fn sql(&self, s: &str, how: Write) -> String {
        let name = self.name;
        let params = |i: usize| format!("?{}", i + 1);
        match how {
            Write::Insert => format!(
                "INSERT OR REPLACE INTO {s}.{name} ({}) VALUES ({})",
                self.columns.join(", "),
                (0..self.columns.len())
                    .map(params)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            Write::Update | Write::UpdateUnindexed => format!(
                "UPDATE {s}.{name} SET {} WHERE id = ?1",
                self.columns
                    .iter()
                    .enumerate()
                    .skip(1)
                    .filter(|(_, c)| how == Write::Update || !self.indexed.contains(c))
                    .map(|(i, c)| format!("{c} = {}", params(i)))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }
    }
}

/// The SQL of a projection write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Sql {
    Row(EntityKind, Write),
    StageLeft,
    StageInsert,
}

impl Sql {
    fn build(self, s: &str) -> String {
        match self {
            Sql::Row(kind, how) => table(kind).sql(s, how),
            Sql::StageLeft => format!(
                "UPDATE {s}.stage_history SET left_at = ?1 WHERE kind = ?2 AND entity_id = ?3 AND left_at IS NULL"
            ),
            Sql::StageInsert => format!(
                "INSERT INTO {s}.stage_history (position, kind, entity_id, pipeline, stage, entered_at, left_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)"
            ),
        }
    }

    /// The statement's text for `schema`, built on first use and kept for the life of the
    /// process (a few dozen short strings at most), so a write does not format SQL.
    fn text(self, schema: &'static str) -> &'static str {
        type Texts = HashMap<(&'static str, Sql), &'static str>;
        static TEXTS: OnceLock<Mutex<Texts>> = OnceLock::new();
        let mut texts = TEXTS
            .get_or_init(Default::default)
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        texts
            .entry((schema, self))
            .or_insert_with(|| Box::leak(self.build(schema).into_boxed_str()))
    }
}

/// Maintains the tables that are not entity rows: timers, the incident and escalation journals,
/// the inbox and outbox, idle marks and cron state. Each row depends only on its own event (and
/// earlier events of the same stream), so a stream-by-stream rebuild writes the same rows as
/// the live path.
fn side_tables(
    conn: &Connection,
    schema: &str,
    position: i64,
    stream: StreamId,
    event: &Event,
    at: chrono::DateTime<chrono::Utc>,
) -> Result<(), Error> {
    let run = |sql: &str, p: &[&dyn rusqlite::ToSql]| -> Result<(), Error> {
        conn.prepare_cached(&sql.replace("{s}", schema))?
            .execute(p)?;
        Ok(())
    };
    let kind = stream.kind.as_str();
    let name = stream.to_string();
    const UNSET: &str = "DELETE FROM {s}.timers WHERE due_at = ?1 AND id = ?2";
    // A timer set by the event at `id` (of this stream): its row is keyed by its due time,
    // which that event holds.
    let unset = |id: i64| match due_of(conn, id)? {
        Some(due) => run(UNSET, &[&fmt_time(due), &id]),
        None => Ok(()),
    };
    const TIMER: &str = "INSERT INTO {s}.timers (due_at, id, what, kind, entity_id, name, stage, survive_move) \
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)";
    let none: Option<&str> = None;
    match event {
        Event::DeadlineScheduled(d) => run(
            TIMER,
            &[
                &fmt_time(d.due_at),
                &position,
                &"deadline",
                &kind,
                &stream.id,
                &d.name,
                &none,
                &false,
            ],
        ),
        Event::DeadlineCancelled(d) => unset(d.scheduled),
        Event::DeadlineElapsed(d) => run(UNSET, &[&fmt_time(d.due_at), &d.scheduled]),
        Event::RobotsDelayed(d) => run(
            TIMER,
            &[
                &fmt_time(d.due_at),
                &position,
                &"robots",
                &kind,
                &stream.id,
                &d.rule,
                &d.stage.as_ref().map(|s| s.as_str()),
                &d.survive_move,
            ],
        ),
        Event::RobotsResumed(r) => unset(r.delayed),
        Event::RobotsCancelled(r) => unset(r.delayed),
        Event::TaskCreated(t) => run(
            TIMER,
            &[
                &fmt_time(t.due_at),
                &position,
                &"task",
                &kind,
                &stream.id,
                &none,
                &none,
                &false,
            ],
        ),
        Event::TaskCompleted(_) | Event::TaskOverdue(_) => {
            for t in pending_timers(conn, schema, stream)? {
                run(UNSET, &[&fmt_time(t.due_at), &t.id])?;
            }
            Ok(())
        }
        Event::IncidentRecorded(i) => run(
            "INSERT INTO {s}.incidents (position, at, kind, employee, rule, stream, text) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            &[
                &position,
                &fmt_time(at),
                &i.kind,
                &i.employee.as_ref().map(|e| e.as_str()),
                &i.rule,
                &name,
                &i.text,
            ],
        ),
        Event::EscalationRecorded(e) => run(
            "INSERT INTO {s}.escalations (position, at, employee, manager, kind, count, window, rule, stream) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            &[
                &position,
                &fmt_time(at),
                &e.employee.as_str(),
                &e.manager.as_ref().map(|m| m.as_str()),
                &e.kind,
                &e.count,
                &e.window,
                &e.rule,
                &name,
            ],
        ),
        // `OR IGNORE`: the first read wins. `inbox --mark-read` decides under the write lock,
        // so it records a notification read once, but logs written before it did may hold
        // a notification read more than once, and must still replay.
        Event::RobotRequested(r) => run(
            "INSERT INTO {s}.requests (position, kind, entity_id, robot, key) VALUES (?1, ?2, ?3, ?4, ?5)",
            &[&position, &kind, &stream.id, &r.robot, &r.key],
        ),
        Event::RobotCompleted(c) => run(
            "DELETE FROM {s}.requests WHERE position = ?1",
            &[&c.request],
        ),
        Event::NotificationRead(r) => run(
            "INSERT OR IGNORE INTO {s}.inbox_read (id, at, position) VALUES (?1, ?2, ?3)",
            &[&r.notification, &fmt_time(at), &position],
        ),
        Event::NotificationQueued(n) => match n.channel {
            leadflow_engine::event::Channel::Inbox => run(
                "INSERT INTO {s}.inbox (position, at, employee, priority, text, rule, stream) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                &[
                    &position,
                    &fmt_time(at),
                    &n.to.as_ref().map_or("", |e| e.as_str()),
                    &if n.priority.is_empty() {
                        "normal"
                    } else {
                        n.priority.as_str()
                    },
                    &n.text,
                    &n.rule,
                    &name,
                ],
            ),
            channel => run(
                "INSERT INTO {s}.outbox (position, at, channel, target, employee, text, key, stream) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                &[
                    &position,
                    &fmt_time(at),
                    &channel.as_str(),
                    &n.target,
                    &n.to.as_ref().map(|e| e.as_str()),
                    &n.text,
                    &n.key,
                    &name,
                ],
            ),
        },
        Event::IdleDetected(i) => run(
            "INSERT OR REPLACE INTO {s}.idle_marks (kind, entity_id, rule, since) VALUES (?1, ?2, ?3, ?4)",
            &[&kind, &stream.id, &i.rule, &fmt_time(i.since)],
        ),
        Event::ScheduleFired(f) => run(
            "INSERT OR REPLACE INTO {s}.schedules (rule, due_at) VALUES (?1, ?2)",
            &[&f.rule, &fmt_time(f.due_at)],
        ),
        _ => Ok(()),
    }
}

/// The due time an event that sets a timer (`deadline.scheduled`, `robots.delayed`,
/// `task.created`) gave it.
#[derive(serde::Deserialize)]
struct DueAt {
    due_at: chrono::DateTime<chrono::Utc>,
}

/// The due time set by the event at `position`, if it sets one.
fn due_of(
    conn: &Connection,
    position: i64,
) -> Result<Option<chrono::DateTime<chrono::Utc>>, Error> {
    let payload: Option<String> = conn
        .prepare_cached("SELECT payload FROM main.events WHERE position = ?1")?
        .query_row([position], |r| r.get(0))
        .optional()?;
    Ok(payload
        .and_then(|p| serde_json::from_str::<DueAt>(&p).ok())
        .map(|d| d.due_at))
}

pub use leadflow_engine::stored::PendingTimer;

/// The stream's pending timers, in the order they were set: its timer-setting events whose
/// rows are still in `timers` (the table has no index by stream; see its DDL).
pub(crate) fn pending_timers(
    conn: &Connection,
    schema: &str,
    stream: StreamId,
) -> Result<Vec<PendingTimer>, Error> {
    let key: Option<i64> = conn
        .prepare_cached("SELECT stream_key FROM main.streams WHERE kind = ?1 AND entity_id = ?2")?
        .query_row(params![stream.kind.as_str(), stream.id], |r| r.get(0))
        .optional()?;
    let Some(key) = key else {
        return Ok(Vec::new());
    };
    let set: Vec<(i64, String)> = {
        let mut stmt = conn.prepare_cached(
            "SELECT position, payload FROM main.events WHERE stream_key = ?1 \
             AND type IN ('deadline.scheduled', 'robots.delayed', 'task.created') ORDER BY version",
        )?;
        let rows = stmt.query_map([key], |r| Ok((r.get(0)?, r.get(1)?)))?;
        rows.collect::<Result<_, _>>()?
    };
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT what, name, stage, survive_move FROM {schema}.timers WHERE due_at = ?1 AND id = ?2"
    ))?;
    let mut out = Vec::new();
    for (id, payload) in set {
        let Ok(DueAt { due_at }) = serde_json::from_str::<DueAt>(&payload) else {
            continue;
        };
        let row = stmt
            .query_row(params![fmt_time(due_at), id], |r| {
                Ok(PendingTimer {
                    id,
                    due_at,
                    what: r.get(0)?,
                    name: r.get(1)?,
                    stage: r.get(2)?,
                    survive_move: r.get(3)?,
                })
            })
            .optional()?;
        out.extend(row);
    }
    Ok(out)
}

/// Writes projection rows to one schema.
struct Writer {
    schema: &'static str,
}

impl Writer {
    fn new(schema: &'static str) -> Self {
        Writer { schema }
    }

    /// Closes the entity's open stage visit.
    fn stage_left(
        &self,
        conn: &Connection,
        stream: StreamId,
        at: chrono::DateTime<chrono::Utc>,
    ) -> Result<(), Error> {
        conn.prepare_cached(Sql::StageLeft.text(self.schema))?
            .execute(params![fmt_time(at), stream.kind.as_str(), stream.id])?;
        Ok(())
    }

    /// Records a stage visit that began at `position`.
    fn stage_visit(
        &self,
        conn: &Connection,
        position: i64,
        v: &StageVisit,
        left_at: Option<chrono::DateTime<chrono::Utc>>,
    ) -> Result<(), Error> {
        conn.prepare_cached(Sql::StageInsert.text(self.schema))?
            .execute(params![
                position,
                v.stream.kind.as_str(),
                v.stream.id,
                v.pipeline.as_str(),
                v.stage.as_str(),
                fmt_time(v.entered_at),
                left_at.map(fmt_time),
            ])?;
        Ok(())
    }

    /// Writes an entity's row; `stored` is what its row holds in indexed columns, `None` if it
    /// has no row.
    /// Adds `n` to the version of the entity's row (if it has one).
    fn add_version(&self, conn: &Connection, stream: StreamId, n: i64) -> Result<(), Error> {
        let sql = format!(
            "UPDATE {}.{} SET version = version + ?1 WHERE id = ?2",
            self.schema,
            table(stream.kind).name
        );
        conn.prepare_cached(&sql)?
            .execute(rusqlite::params![n, stream.id])?;
        Ok(())
    }

    fn save(&self, conn: &Connection, e: &Entity, stored: Option<&IndexKey>) -> Result<(), Error> {
        let key = index_key(e);
        let how = match stored {
            None => Write::Insert,
            Some(k) if *k == key => Write::UpdateUnindexed,
            Some(_) => Write::Update,
        };
        let sql = Sql::Row(e.stream().kind, how).text(self.schema);
        save(&mut conn.prepare_cached(sql)?, e)?;
        if how != Write::UpdateUnindexed {
            self.save_match_keys(conn, e, stored, &key)?;
        }
        Ok(())
    }

    /// Brings the entity's [`match_keys`] rows from what `stored` (its row's key before, if
    /// any) says to what `key` says.
    fn save_match_keys(
        &self,
        conn: &Connection,
        e: &Entity,
        stored: Option<&IndexKey>,
        key: &IndexKey,
    ) -> Result<(), Error> {
        let columns = column_key(e).len();
        let tail =
            |k: &IndexKey| -> Vec<String> { k.iter().skip(columns).flatten().cloned().collect() };
        let old = stored.map(tail).unwrap_or_default();
        let new = tail(key);
        if old == new {
            return Ok(());
        }
        let stream = e.stream();
        let split = |k: &str| k.split_once(':').map(|(a, b)| (a.to_owned(), b.to_owned()));
        for k in old.iter().filter(|k| !new.contains(k)) {
            if let Some((what, value)) = split(k) {
                conn.prepare_cached(&format!(
                    "DELETE FROM {}.match_keys WHERE what = ?1 AND value = ?2 AND kind = ?3 AND entity_id = ?4",
                    self.schema
                ))?
                .execute(params![what, value, stream.kind.as_str(), stream.id])?;
            }
        }
        for k in new.iter().filter(|k| !old.contains(k)) {
            if let Some((what, value)) = split(k) {
                conn.prepare_cached(&format!(
                    "INSERT OR IGNORE INTO {}.match_keys (what, value, kind, entity_id) VALUES (?1, ?2, ?3, ?4)",
                    self.schema
                ))?
                .execute(params![what, value, stream.kind.as_str(), stream.id])?;
            }
        }
        Ok(())
    }
}

fn json<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string(v).expect("plain data serialises")
}

fn from_json<T: serde::de::DeserializeOwned + Default>(s: &str) -> T {
    serde_json::from_str(s).unwrap_or_default()
}

fn time(r: &Row<'_>, i: usize) -> rusqlite::Result<chrono::DateTime<chrono::Utc>> {
    let s: String = r.get(i)?;
    parse_time(&s)
        .ok_or_else(|| rusqlite::Error::InvalidColumnType(i, s, rusqlite::types::Type::Text))
}

fn opt_time(r: &Row<'_>, i: usize) -> rusqlite::Result<Option<chrono::DateTime<chrono::Utc>>> {
    let s: Option<String> = r.get(i)?;
    Ok(s.and_then(|s| parse_time(&s)))
}

fn employee(r: &Row<'_>, i: usize) -> rusqlite::Result<Option<EmployeeId>> {
    Ok(r.get::<_, Option<String>>(i)?.map(EmployeeId))
}

/// Binds an entity's columns, in [`Table::columns`] order, to `stmt` and runs it.
fn save(stmt: &mut rusqlite::CachedStatement<'_>, entity: &Entity) -> Result<(), Error> {
    match entity {
        Entity::Lead(l) => {
            stmt.execute(params![
                l.id,
                l.title,
                l.name,
                json(&l.phones),
                json(&l.emails),
                l.source,
                l.client_type.map(ClientType::as_str),
                l.responsible.as_ref().map(EmployeeId::as_str),
                l.pipeline.as_str(),
                l.stage.as_str(),
                l.stage_reason,
                json(&l.fields),
                l.comment,
                l.contact,
                l.company,
                fmt_time(l.created_at),
                fmt_time(l.updated_at),
                fmt_time(l.stage_entered_at),
                l.version
            ])?;
        }
        Entity::Deal(d) => {
            stmt.execute(params![
                d.id,
                d.title,
                d.pipeline.as_str(),
                d.stage.as_str(),
                d.stage_reason,
                d.amount,
                d.currency,
                d.responsible.as_ref().map(EmployeeId::as_str),
                d.contact,
                d.company,
                d.lead,
                json(&d.fields),
                d.comment,
                fmt_time(d.created_at),
                fmt_time(d.updated_at),
                fmt_time(d.stage_entered_at),
                d.version
            ])?;
        }
        Entity::Contact(c) => {
            stmt.execute(params![
                c.id,
                c.name,
                json(&c.phones),
                json(&c.emails),
                c.company,
                c.responsible.as_ref().map(EmployeeId::as_str),
                json(&c.fields),
                fmt_time(c.created_at),
                fmt_time(c.updated_at),
                c.version
            ])?;
        }
        Entity::Company(c) => {
            stmt.execute(params![
                c.id,
                c.name,
                c.inn,
                c.bank_account,
                c.bik,
                json(&c.phones),
                json(&c.emails),
                c.responsible.as_ref().map(EmployeeId::as_str),
                json(&c.fields),
                fmt_time(c.created_at),
                fmt_time(c.updated_at),
                c.version
            ])?;
        }
        Entity::Task(t) => {
            stmt.execute(params![
                t.id,
                t.kind.as_str(),
                t.title,
                t.assignee.as_str(),
                fmt_time(t.due_at),
                t.lead,
                t.deal,
                fmt_time(t.created_at),
                t.completed_at.map(fmt_time),
                t.result,
                t.version
            ])?;
        }
    }
    Ok(())
}

pub(crate) const LEAD_COLUMNS: &str = "id, title, name, phones, emails, source, client_type, responsible, pipeline, stage, stage_reason, \
     fields, comment, contact_id, company_id, created_at, updated_at, stage_entered_at, version";

pub(crate) fn lead_row(r: &Row<'_>) -> rusqlite::Result<Lead> {
    Ok(Lead {
        id: r.get(0)?,
        title: r.get(1)?,
        name: r.get(2)?,
        phones: from_json(&r.get::<_, String>(3)?),
        emails: from_json(&r.get::<_, String>(4)?),
        source: r.get(5)?,
        client_type: r.get::<_, Option<String>>(6)?.and_then(|c| c.parse().ok()),
        responsible: employee(r, 7)?,
        pipeline: PipelineId(r.get(8)?),
        stage: StageId(r.get(9)?),
        stage_reason: r.get(10)?,
        fields: from_json::<BTreeMap<String, Value>>(&r.get::<_, String>(11)?),
        comment: r.get(12)?,
        contact: r.get(13)?,
        company: r.get(14)?,
        created_at: time(r, 15)?,
        updated_at: time(r, 16)?,
        stage_entered_at: time(r, 17)?,
        version: r.get(18)?,
    })
}

pub(crate) const DEAL_COLUMNS: &str = "id, title, pipeline, stage, stage_reason, amount, currency, responsible, contact_id, company_id, \
     lead_id, fields, comment, created_at, updated_at, stage_entered_at, version";

pub(crate) fn deal_row(r: &Row<'_>) -> rusqlite::Result<Deal> {
    Ok(Deal {
        id: r.get(0)?,
        title: r.get(1)?,
        pipeline: PipelineId(r.get(2)?),
        stage: StageId(r.get(3)?),
        stage_reason: r.get(4)?,
        amount: r.get(5)?,
        currency: r.get(6)?,
        responsible: employee(r, 7)?,
        contact: r.get(8)?,
        company: r.get(9)?,
        lead: r.get(10)?,
        fields: from_json::<BTreeMap<String, Value>>(&r.get::<_, String>(11)?),
        comment: r.get(12)?,
        created_at: time(r, 13)?,
        updated_at: time(r, 14)?,
        stage_entered_at: time(r, 15)?,
        version: r.get(16)?,
    })
}

pub(crate) const CONTACT_COLUMNS: &str =
    "id, name, phones, emails, company_id, responsible, fields, created_at, updated_at, version";

pub(crate) fn contact_row(r: &Row<'_>) -> rusqlite::Result<Contact> {
    Ok(Contact {
        id: r.get(0)?,
        name: r.get(1)?,
        phones: from_json(&r.get::<_, String>(2)?),
        emails: from_json(&r.get::<_, String>(3)?),
        company: r.get(4)?,
        responsible: employee(r, 5)?,
        fields: from_json::<BTreeMap<String, Value>>(&r.get::<_, String>(6)?),
        created_at: time(r, 7)?,
        updated_at: time(r, 8)?,
        version: r.get(9)?,
    })
}

pub(crate) const COMPANY_COLUMNS: &str = "id, name, inn, bank_account, bik, phones, emails, responsible, fields, created_at, updated_at, version";

pub(crate) fn company_row(r: &Row<'_>) -> rusqlite::Result<Company> {
    Ok(Company {
        id: r.get(0)?,
        name: r.get(1)?,
        inn: r.get(2)?,
        bank_account: r.get(3)?,
        bik: r.get(4)?,
        phones: from_json(&r.get::<_, String>(5)?),
        emails: from_json(&r.get::<_, String>(6)?),
        responsible: employee(r, 7)?,
        fields: from_json::<BTreeMap<String, Value>>(&r.get::<_, String>(8)?),
        created_at: time(r, 9)?,
        updated_at: time(r, 10)?,
        version: r.get(11)?,
    })
}

pub(crate) const TASK_COLUMNS: &str = "id, kind, title, assignee, due_at, lead_id, deal_id, created_at, completed_at, result, version";

pub(crate) fn task_row(r: &Row<'_>) -> rusqlite::Result<Task> {
    let kind: String = r.get(1)?;
    Ok(Task {
        id: r.get(0)?,
        kind: kind.parse().unwrap_or(TaskKind::Other),
        title: r.get(2)?,
        assignee: EmployeeId(r.get(3)?),
        due_at: time(r, 4)?,
        lead: r.get(5)?,
        deal: r.get(6)?,
        created_at: time(r, 7)?,
        completed_at: opt_time(r, 8)?,
        result: r.get(9)?,
        version: r.get(10)?,
    })
}

/// Reads an entity's row.
pub fn load(conn: &Connection, s: &str, stream: StreamId) -> Result<Option<Entity>, Error> {
    fn one<T>(
        conn: &Connection,
        columns: &str,
        table: &str,
        id: i64,
        row: fn(&Row<'_>) -> rusqlite::Result<T>,
        wrap: fn(T) -> Entity,
    ) -> Result<Option<Entity>, Error> {
        let sql = format!("SELECT {columns} FROM {table} WHERE id = ?1");
        Ok(conn
            .prepare_cached(&sql)?
            .query_row([id], row)
            .optional()?
            .map(wrap))
    }
    let id = stream.id;
    match stream.kind {
        EntityKind::Lead => one(
            conn,
            LEAD_COLUMNS,
            &format!("{s}.leads"),
            id,
            lead_row,
            Entity::Lead,
        ),
        EntityKind::Deal => one(
            conn,
            DEAL_COLUMNS,
            &format!("{s}.deals"),
            id,
            deal_row,
            Entity::Deal,
        ),
        EntityKind::Contact => one(
            conn,
            CONTACT_COLUMNS,
            &format!("{s}.contacts"),
            id,
            contact_row,
            Entity::Contact,
        ),
        EntityKind::Company => one(
            conn,
            COMPANY_COLUMNS,
            &format!("{s}.companies"),
            id,
            company_row,
            Entity::Company,
        ),
        EntityKind::Task => one(
            conn,
            TASK_COLUMNS,
            &format!("{s}.tasks"),
            id,
            task_row,
            Entity::Task,
        ),
        EntityKind::Ruleset | EntityKind::System => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Store;
    use chrono::{Duration, TimeZone, Utc};
    use leadflow_engine::event::{
        Assigned, CompanyCreated, DealCreated, LeadCreated, StageChanged, TaskCompleted,
        TaskCreated, Updated,
    };
    use leadflow_engine::{Actor, EventMeta};

    /// Every projection table, row by row, as text.
    fn snapshot(conn: &Connection) -> Vec<String> {
        let mut out = Vec::new();
        for t in TABLES {
            let mut stmt = conn
                .prepare(&format!("SELECT * FROM main.{t} ORDER BY 1"))
                .unwrap();
            let n = stmt.column_count();
            let mut rows = stmt.query([]).unwrap();
            while let Some(r) = rows.next().unwrap() {
                let cells: Vec<String> = (0..n)
                    .map(|i| format!("{:?}", r.get_ref(i).unwrap()))
                    .collect();
                out.push(format!("{t}: {}", cells.join(" | ")));
            }
        }
        out
    }

    /// A bare lead `id` in the first stage of the lead pipeline.
    fn lead_created(id: i64) -> Event {
        Event::LeadCreated(LeadCreated {
            id,
            title: "lead".into(),
            name: None,
            phones: vec![],
            emails: vec![],
            source: "web_form".into(),
            client_type: None,
            responsible: None,
            pipeline: "lead".into(),
            stage: "new".into(),
            fields: BTreeMap::new(),
            comment: None,
            contact: None,
            company: None,
        })
    }

    fn changes(pairs: &[(&str, Value)]) -> BTreeMap<String, Value> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.clone()))
            .collect()
    }

    /// A log touching every table and every kind of row write: inserts, updates that change
    /// indexed columns (stage, responsible, INN, task completion) and updates that do not.
    fn sample_store() -> Store {
        let mut store = Store::open_in_memory().unwrap();
        let t0 = Utc.with_ymd_and_hms(2026, 3, 2, 9, 0, 0).unwrap();
        let mut versions: HashMap<StreamId, i64> = HashMap::new();
        let mut at = t0;
        // Three passes over twelve entities, in one transaction per pass, interleaved.
        for pass in 0..3i64 {
            store
                .write(at, |tx| {
                    for id in 1..=12i64 {
                        at += Duration::seconds(37);
                        let (kind, event) = match (id % 4, pass) {
                            (0, 0) => (
                                EntityKind::Lead,
                                Event::LeadCreated(LeadCreated {
                                    id,
                                    title: format!("lead {id}"),
                                    name: None,
                                    phones: vec![format!("+7912000000{id:02}")],
                                    emails: vec![],
                                    source: "web_form".into(),
                                    client_type: None,
                                    responsible: None,
                                    pipeline: "lead".into(),
                                    stage: "new".into(),
                                    fields: BTreeMap::new(),
                                    comment: None,
                                    contact: None,
                                    company: None,
                                }),
                            ),
                            (0, 1) => (
                                EntityKind::Lead,
                                Event::LeadAssigned(Assigned {
                                    from: None,
                                    to: "petrova".into(),
                                }),
                            ),
                            (0, _) => (
                                EntityKind::Lead,
                                Event::LeadStageChanged(StageChanged {
                                    from: "new".into(),
                                    to: "in_work".into(),
                                    reason: None,
                                }),
                            ),
                            (1, 0) => (
                                EntityKind::Company,
                                Event::CompanyCreated(CompanyCreated {
                                    id,
                                    name: format!("company {id}"),
                                    inn: Some("7707083893".into()),
                                    bank_account: None,
                                    bik: None,
                                    phones: vec![],
                                    emails: vec![],
                                    responsible: None,
                                    fields: BTreeMap::new(),
                                }),
                            ),
                            (1, 1) => (
                                EntityKind::Company,
                                Event::CompanyUpdated(Updated {
                                    changes: changes(&[("name", Value::from("renamed"))]),
                                }),
                            ),
                            (1, _) => (
                                EntityKind::Company,
                                Event::CompanyUpdated(Updated {
                                    changes: changes(&[("inn", Value::from("500100732259"))]),
                                }),
                            ),
                            (2, 0) => (
                                EntityKind::Task,
                                Event::TaskCreated(TaskCreated {
                                    id,
                                    kind: TaskKind::Call,
                                    title: "call back".into(),
                                    assignee: "ivanov".into(),
                                    due_at: t0 + Duration::days(1),
                                    lead: None,
                                    deal: None,
                                }),
                            ),
                            (2, 1) => (
                                EntityKind::Task,
                                Event::TaskCompleted(TaskCompleted {
                                    result: Some("done".into()),
                                }),
                            ),
                            (2, _) => continue,
                            (_, 0) => (
                                EntityKind::Deal,
                                Event::DealCreated(DealCreated {
                                    id,
                                    title: format!("deal {id}"),
                                    pipeline: "goods".into(),
                                    stage: "new".into(),
                                    amount: Some(100_000),
                                    currency: "RUB".into(),
                                    responsible: None,
                                    contact: None,
                                    company: None,
                                    lead: None,
                                    fields: BTreeMap::new(),
                                    comment: None,
                                }),
                            ),
                            (_, 1) => (
                                EntityKind::Deal,
                                Event::DealUpdated(Updated {
                                    changes: changes(&[("comment", Value::from("note"))]),
                                }),
                            ),
                            (_, _) => (
                                EntityKind::Deal,
                                Event::DealStageChanged(StageChanged {
                                    from: "new".into(),
                                    to: "offer".into(),
                                    reason: None,
                                }),
                            ),
                        };
                        let stream = StreamId::new(kind, id);
                        let version = versions.entry(stream).or_insert(0);
                        let meta = EventMeta::root(at, Actor::System);
                        tx.append(stream, *version, std::slice::from_ref(&event), &meta)?;
                        *version += 1;
                    }
                    Ok::<_, Error>(())
                })
                .unwrap();
        }
        store
    }

    #[test]
    fn live_paged_and_stream_order_rebuilds_write_the_same_rows() {
        let mut store = sample_store();
        let live = snapshot(&store.conn);
        assert!(
            live.iter().any(|r| r.starts_with("stage_history")),
            "{live:#?}"
        );

        // Position order, in small pages, loading and saving rows between pages.
        {
            let tx = store.conn.transaction().unwrap();
            recreate(&tx, "main").unwrap();
            set_checkpoint(&tx, "main", 0).unwrap();
            while catch_up_page(&tx, &mut Projector::new("main"), 5).unwrap() > 0 {}
            tx.commit().unwrap();
        }
        assert_eq!(snapshot(&store.conn), live);

        // Stream order, from scratch.
        assert_eq!(store.replay(&mut |_| {}).unwrap(), 33);
        assert_eq!(snapshot(&store.conn), live);
    }

    /// Every event that sets a timer adds its row; every event that ends one removes it, by
    /// the timer's key; a stream's pending timers are found without an index by stream; and
    /// bookkeeping events, projected without loading the entity, still count in its version.
    #[test]
    fn timers_are_set_found_and_cleared_by_every_event_that_ends_them() {
        use leadflow_engine::event::{
            DeadlineCancelled, DeadlineElapsed, DeadlineScheduled, RobotsCancelled, RobotsDelayed,
            RobotsResumed, TaskOverdue,
        };
        let mut store = Store::open_in_memory().unwrap();
        let t0 = Utc.with_ymd_and_hms(2026, 3, 2, 9, 0, 0).unwrap();
        let lead = StreamId::new(EntityKind::Lead, 1);
        let due = |h: i64| t0 + Duration::hours(h) + Duration::nanoseconds(123_456_789);
        let meta = EventMeta::root(t0, Actor::System);
        let deadline = |name: &str, h: i64| {
            Event::DeadlineScheduled(DeadlineScheduled {
                name: name.into(),
                due_at: due(h),
                rule: "r".into(),
                ruleset: "h".into(),
            })
        };
        let delayed = |h: i64, survive_move: bool| {
            Event::RobotsDelayed(RobotsDelayed {
                rule: "later".into(),
                ruleset: "h".into(),
                due_at: due(h),
                trigger: 1,
                stage: Some("new".into()),
                survive_move,
                robots: vec![],
            })
        };
        let task = |id: i64, h: i64| {
            Event::TaskCreated(TaskCreated {
                id,
                kind: TaskKind::Call,
                title: "call".into(),
                assignee: "petrova".into(),
                due_at: due(h),
                lead: Some(1),
                deal: None,
            })
        };
        store
            .write(t0, |tx| {
                tx.append(
                    lead,
                    0,
                    &[
                        lead_created(1),
                        deadline("a", 1),
                        deadline("b", 2),
                        delayed(3, false),
                        delayed(4, true),
                    ],
                    &meta,
                )?;
                tx.append(StreamId::new(EntityKind::Task, 1), 0, &[task(1, 5)], &meta)?;
                tx.append(StreamId::new(EntityKind::Task, 2), 0, &[task(2, 6)], &meta)?;
                Ok::<_, Error>(())
            })
            .unwrap();
        let pending = store.write(t0, |tx| tx.pending_timers(lead)).unwrap();
        let seen: Vec<String> = pending
            .iter()
            .map(|t| {
                format!(
                    "{} {} {:?} {:?} {}",
                    t.id, t.what, t.name, t.stage, t.survive_move
                )
            })
            .collect();
        assert_eq!(
            seen,
            vec![
                "2 deadline Some(\"a\") None false",
                "3 deadline Some(\"b\") None false",
                "4 robots Some(\"later\") Some(\"new\") false",
                "5 robots Some(\"later\") Some(\"new\") true",
            ]
        );
        assert_eq!(pending[0].due_at, due(1));
        let count = |store: &Store| -> i64 {
            store
                .conn
                .query_row("SELECT count(*) FROM timers", [], |r| r.get(0))
                .unwrap()
        };
        assert_eq!(count(&store), 6);

        store
            .write(t0 + Duration::hours(7), |tx| {
                tx.append(
                    lead,
                    5,
                    &[
                        Event::DeadlineElapsed(DeadlineElapsed {
                            name: "a".into(),
                            scheduled: 2,
                            due_at: due(1),
                        }),
                        Event::DeadlineCancelled(DeadlineCancelled {
                            name: "b".into(),
                            scheduled: 3,
                            reason: "done".into(),
                        }),
                        Event::RobotsResumed(RobotsResumed { delayed: 4 }),
                        Event::RobotsCancelled(RobotsCancelled {
                            delayed: 5,
                            reason: "left".into(),
                        }),
                    ],
                    &meta,
                )?;
                tx.append(
                    StreamId::new(EntityKind::Task, 1),
                    1,
                    &[Event::TaskCompleted(TaskCompleted { result: None })],
                    &meta,
                )?;
                tx.append(
                    StreamId::new(EntityKind::Task, 2),
                    1,
                    &[Event::TaskOverdue(TaskOverdue { due_at: due(6) })],
                    &meta,
                )?;
                Ok::<_, Error>(())
            })
            .unwrap();
        assert_eq!(count(&store), 0);
        assert!(
            store
                .write(t0, |tx| tx.pending_timers(lead))
                .unwrap()
                .is_empty()
        );
        let version: i64 = store
            .conn
            .query_row("SELECT version FROM leads WHERE id = 1", [], |r| r.get(0))
            .unwrap();
        assert_eq!(
            version, 9,
            "every event of the stream counts, bookkeeping too"
        );
        let live = snapshot(&store.conn);
        store.replay(&mut |_| {}).unwrap();
        assert_eq!(snapshot(&store.conn), live);
    }

    /// Taking due timers removes exactly the earliest rows, in one range delete; the firing
    /// events appended for them then leave the table as a replay of the log builds it.
    #[test]
    fn taking_due_timers_removes_exactly_the_earliest_and_replays_the_same() {
        use leadflow_engine::event::{DeadlineElapsed, DeadlineScheduled, TaskOverdue};
        let mut store = Store::open_in_memory().unwrap();
        let t0 = Utc.with_ymd_and_hms(2026, 3, 2, 9, 0, 0).unwrap();
        let meta = EventMeta::root(t0, Actor::System);
        let lead = StreamId::new(EntityKind::Lead, 1);
        let task = StreamId::new(EntityKind::Task, 1);
        let due = |m: i64| t0 + Duration::minutes(m);
        store
            .write(t0, |tx| {
                let mut events = vec![lead_created(1)];
                // Due at minutes 30, 10, 20 and 10 again: the same instant twice.
                for (name, m) in [("c", 30), ("a", 10), ("b", 20), ("a2", 10)] {
                    events.push(Event::DeadlineScheduled(DeadlineScheduled {
                        name: name.into(),
                        due_at: due(m),
                        rule: "r".into(),
                        ruleset: "h".into(),
                    }));
                }
                tx.append(lead, 0, &events, &meta)?;
                tx.append(
                    task,
                    0,
                    &[Event::TaskCreated(TaskCreated {
                        id: 1,
                        kind: TaskKind::Call,
                        title: "call".into(),
                        assignee: "petrova".into(),
                        due_at: due(15),
                        lead: Some(1),
                        deal: None,
                    })],
                    &meta,
                )?;
                Ok::<_, Error>(())
            })
            .unwrap();
        let left = |store: &Store| -> Vec<i64> {
            let mut stmt = store
                .conn
                .prepare("SELECT id FROM timers ORDER BY due_at, id")
                .unwrap();
            stmt.query_map([], |r| r.get(0))
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap()
        };
        assert_eq!(left(&store), vec![3, 5, 6, 4, 2]);
        store
            .write(due(60), |tx| {
                let taken = tx.take_due_timers(due(25), 3)?;
                let ids: Vec<(StreamId, i64)> = taken.iter().map(|(s, t)| (*s, t.id)).collect();
                assert_eq!(ids, vec![(lead, 3), (lead, 5), (task, 6)]);
                for (stream, t) in &taken {
                    let event = if *stream == task {
                        Event::TaskOverdue(TaskOverdue { due_at: t.due_at })
                    } else {
                        Event::DeadlineElapsed(DeadlineElapsed {
                            name: t.name.clone().unwrap_or_default(),
                            scheduled: t.id,
                            due_at: t.due_at,
                        })
                    };
                    let v = tx.version(*stream)?;
                    tx.append(*stream, v, &[event], &meta)?;
                }
                Ok::<_, Error>(())
            })
            .unwrap();
        assert_eq!(
            left(&store),
            vec![4, 2],
            "the one due at 20 (within now, beyond the limit) and the one due at 30"
        );
        let live = snapshot(&store.conn);
        store.replay(&mut |_| {}).unwrap();
        assert_eq!(snapshot(&store.conn), live);
    }
}
