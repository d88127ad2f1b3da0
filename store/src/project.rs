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
use leadflow_engine::projection::project;
use leadflow_engine::{Entity, EntityKind, Event, StreamId};
use rusqlite::{Connection, OptionalExtension, Row, params};
use serde_json::Value;
use std::collections::{BTreeMap, HashMap, HashSet};

/// The projection tables, in the order `verify` compares them.
pub const TABLES: &[&str] = &[
    "leads",
    "deals",
    "contacts",
    "companies",
    "tasks",
    "stage_history",
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
        .query_row(
            &format!("SELECT position FROM {schema}.projection_state WHERE id = 1"),
            [],
            |r| r.get(0),
        )
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

/// Applies events after the checkpoint of `schema` in pages, one transaction per page, until
/// the projections reach the head of the log. Returns the new checkpoint.
///
/// Each page re-reads the checkpoint under the write lock, so two processes catching up at once
/// never apply an event twice.
pub fn rebuild(
    conn: &mut Connection,
    schema: &'static str,
    progress: &mut dyn FnMut(i64),
) -> Result<i64, Error> {
    const PAGE: i64 = 8192;
    loop {
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
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
    cache: HashMap<StreamId, Option<Entity>>,
    dirty: HashSet<StreamId>,
    pending: usize,
}

impl Projector {
    /// A projector writing to `schema`.
    pub fn new(schema: &'static str) -> Self {
        Projector {
            schema,
            cache: HashMap::new(),
            dirty: HashSet::new(),
            pending: 0,
        }
    }

    /// Events applied since the last flush.
    pub fn pending(&self) -> usize {
        self.pending
    }

    /// Whether the entity is known to exist in the cache.
    pub fn cached(&self, stream: StreamId) -> bool {
        matches!(self.cache.get(&stream), Some(Some(_)))
    }

    /// The entity's current state: from the cache, else from the table.
    pub fn load(&mut self, conn: &Connection, stream: StreamId) -> Result<Option<Entity>, Error> {
        if let Some(e) = self.cache.get(&stream) {
            return Ok(e.clone());
        }
        let e = load(conn, self.schema, stream)?;
        self.cache.insert(stream, e.clone());
        Ok(e)
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
        let prior = match self.cache.remove(&stream) {
            Some(e) => e,
            None => load(conn, self.schema, stream)?,
        };
        let p = project(prior, event, at);
        let s = self.schema;
        if p.left.is_some() {
            conn.prepare_cached(&format!(
                "UPDATE {s}.stage_history SET left_at = ?1 WHERE kind = ?2 AND entity_id = ?3 AND left_at IS NULL"
            ))?
            .execute(params![fmt_time(at), stream.kind.as_str(), stream.id])?;
        }
        if let Some(v) = &p.entered {
            conn.prepare_cached(&format!(
                "INSERT INTO {s}.stage_history (position, kind, entity_id, pipeline, stage, entered_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)"
            ))?
            .execute(params![position, stream.kind.as_str(), stream.id, v.pipeline.as_str(), v.stage.as_str(), fmt_time(v.entered_at)])?;
        }
        if p.entity.is_none() {
            tracing::warn!(position, %stream, event = event.event_type(), "event does not apply to the entity's state; ignored");
        }
        self.dirty.insert(stream);
        self.cache.insert(stream, p.entity);
        self.pending += 1;
        Ok(())
    }

    /// Writes every changed entity to its table and empties the cache.
    pub fn flush(&mut self, conn: &Connection) -> Result<(), Error> {
        for stream in self.dirty.drain() {
            if let Some(Some(e)) = self.cache.get(&stream) {
                save(conn, self.schema, e)?;
            }
        }
        self.cache.clear();
        self.pending = 0;
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

/// Writes an entity's row.
pub fn save(conn: &Connection, s: &str, entity: &Entity) -> Result<(), Error> {
    match entity {
        Entity::Lead(l) => {
            conn.prepare_cached(&format!(
                "INSERT OR REPLACE INTO {s}.leads (id, title, name, phones, emails, source, client_type, responsible, pipeline, stage, \
                 stage_reason, fields, comment, contact_id, company_id, created_at, updated_at, stage_entered_at, version) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19)"
            ))?
            .execute(params![
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
            conn.prepare_cached(&format!(
                "INSERT OR REPLACE INTO {s}.deals (id, title, pipeline, stage, stage_reason, amount, currency, responsible, contact_id, \
                 company_id, lead_id, fields, comment, created_at, updated_at, stage_entered_at, version) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17)"
            ))?
            .execute(params![
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
            conn.prepare_cached(&format!(
                "INSERT OR REPLACE INTO {s}.contacts (id, name, phones, emails, company_id, responsible, fields, created_at, updated_at, version) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)"
            ))?
            .execute(params![
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
            conn.prepare_cached(&format!(
                "INSERT OR REPLACE INTO {s}.companies (id, name, inn, bank_account, bik, phones, emails, responsible, fields, created_at, updated_at, version) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)"
            ))?
            .execute(params![
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
            conn.prepare_cached(&format!(
                "INSERT OR REPLACE INTO {s}.tasks (id, kind, title, assignee, due_at, lead_id, deal_id, created_at, completed_at, result, version) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)"
            ))?
            .execute(params![
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
    let id = stream.id;
    let e = match stream.kind {
        EntityKind::Lead => conn
            .prepare_cached(&format!(
                "SELECT {LEAD_COLUMNS} FROM {s}.leads WHERE id = ?1"
            ))?
            .query_row([id], lead_row)
            .optional()?
            .map(Entity::Lead),
        EntityKind::Deal => conn
            .prepare_cached(&format!(
                "SELECT {DEAL_COLUMNS} FROM {s}.deals WHERE id = ?1"
            ))?
            .query_row([id], deal_row)
            .optional()?
            .map(Entity::Deal),
        EntityKind::Contact => conn
            .prepare_cached(&format!(
                "SELECT {CONTACT_COLUMNS} FROM {s}.contacts WHERE id = ?1"
            ))?
            .query_row([id], contact_row)
            .optional()?
            .map(Entity::Contact),
        EntityKind::Company => conn
            .prepare_cached(&format!(
                "SELECT {COMPANY_COLUMNS} FROM {s}.companies WHERE id = ?1"
            ))?
            .query_row([id], company_row)
            .optional()?
            .map(Entity::Company),
        EntityKind::Task => conn
            .prepare_cached(&format!(
                "SELECT {TASK_COLUMNS} FROM {s}.tasks WHERE id = ?1"
            ))?
            .query_row([id], task_row)
            .optional()?
            .map(Entity::Task),
    };
    Ok(e)
}
