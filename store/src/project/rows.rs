//! The entity tables (`leads`, `deals`, `contacts`, `companies`, `tasks`): one row per
//! entity, holding its current state.
//!
//! Each table is declared once, by [`entity_table!`]: its columns in table order, each with its
//! SQL declaration and the model field it holds. The DDL, the statements (insert, update,
//! select), the SELECT column list ([`LEAD_COLUMNS`]…), the row encoder and the row decoder
//! ([`lead_row`]…) are all derived from that list; how a field's type is stored is its
//! [`Cell`] implementation. Adding a column is one line in its table's list (the model field
//! must exist in `engine::model`); existing databases then need their projections rebuilt (a
//! schema migration step that drops the table, see `schema.rs`), since `CREATE TABLE IF NOT
//! EXISTS` leaves an existing table as it is.

use super::match_keys;
use super::search;
use super::tables::{Column, Op, Table};
use crate::error::Error;
use chrono::{DateTime, Utc};
use leadflow_engine::event::{ClientType, TaskKind};
use leadflow_engine::ids::{EmployeeId, PipelineId, StageId};
use leadflow_engine::model::{Company, Contact, Deal, Lead, Task};
use leadflow_engine::stored::{fmt_time, parse_time};
use leadflow_engine::workspace::MatchKey;
use leadflow_engine::{Entity, EntityKind, StreamId};
use rusqlite::types::{ToSqlOutput, Value, ValueRef};
use rusqlite::{CachedStatement, Connection, OptionalExtension, Row};
use serde_json::Value as Json;
use std::collections::BTreeMap;

/// How a model field is stored in its column, and read back.
pub(crate) trait Cell: Sized {
    /// The column's value.
    fn encode(&self) -> ToSqlOutput<'_>;
    /// The field, from column `i` of `r`.
    fn decode(r: &Row<'_>, i: usize) -> rusqlite::Result<Self>;
}

fn text(s: &str) -> ToSqlOutput<'_> {
    ToSqlOutput::Borrowed(ValueRef::Text(s.as_bytes()))
}

fn opt_text(s: Option<&str>) -> ToSqlOutput<'_> {
    s.map_or(ToSqlOutput::Owned(Value::Null), text)
}

fn owned(s: String) -> ToSqlOutput<'static> {
    ToSqlOutput::Owned(Value::Text(s))
}

/// JSON text (lists and custom fields); a column that does not parse reads as empty.
fn json<T: serde::Serialize>(v: &T) -> ToSqlOutput<'static> {
    owned(serde_json::to_string(v).expect("plain data serialises"))
}

fn from_json<T: serde::de::DeserializeOwned + Default>(
    r: &Row<'_>,
    i: usize,
) -> rusqlite::Result<T> {
    Ok(serde_json::from_str(&r.get::<_, String>(i)?).unwrap_or_default())
}

impl Cell for i64 {
    fn encode(&self) -> ToSqlOutput<'_> {
        ToSqlOutput::Owned(Value::Integer(*self))
    }
    fn decode(r: &Row<'_>, i: usize) -> rusqlite::Result<Self> {
        r.get(i)
    }
}

impl Cell for Option<i64> {
    fn encode(&self) -> ToSqlOutput<'_> {
        ToSqlOutput::Owned(self.map_or(Value::Null, Value::Integer))
    }
    fn decode(r: &Row<'_>, i: usize) -> rusqlite::Result<Self> {
        r.get(i)
    }
}

impl Cell for String {
    fn encode(&self) -> ToSqlOutput<'_> {
        text(self)
    }
    fn decode(r: &Row<'_>, i: usize) -> rusqlite::Result<Self> {
        r.get(i)
    }
}

impl Cell for Option<String> {
    fn encode(&self) -> ToSqlOutput<'_> {
        opt_text(self.as_deref())
    }
    fn decode(r: &Row<'_>, i: usize) -> rusqlite::Result<Self> {
        r.get(i)
    }
}

impl Cell for PipelineId {
    fn encode(&self) -> ToSqlOutput<'_> {
        text(self.as_str())
    }
    fn decode(r: &Row<'_>, i: usize) -> rusqlite::Result<Self> {
        Ok(PipelineId(r.get(i)?))
    }
}

impl Cell for StageId {
    fn encode(&self) -> ToSqlOutput<'_> {
        text(self.as_str())
    }
    fn decode(r: &Row<'_>, i: usize) -> rusqlite::Result<Self> {
        Ok(StageId(r.get(i)?))
    }
}

impl Cell for EmployeeId {
    fn encode(&self) -> ToSqlOutput<'_> {
        text(self.as_str())
    }
    fn decode(r: &Row<'_>, i: usize) -> rusqlite::Result<Self> {
        Ok(EmployeeId(r.get(i)?))
    }
}

impl Cell for Option<EmployeeId> {
    fn encode(&self) -> ToSqlOutput<'_> {
        opt_text(self.as_ref().map(EmployeeId::as_str))
    }
    fn decode(r: &Row<'_>, i: usize) -> rusqlite::Result<Self> {
        Ok(r.get::<_, Option<String>>(i)?.map(EmployeeId))
    }
}

/// A time, as [`fmt_time`] writes it; one that does not parse is an error.
impl Cell for DateTime<Utc> {
    fn encode(&self) -> ToSqlOutput<'_> {
        owned(fmt_time(*self))
    }
    fn decode(r: &Row<'_>, i: usize) -> rusqlite::Result<Self> {
        let s: String = r.get(i)?;
        parse_time(&s)
            .ok_or_else(|| rusqlite::Error::InvalidColumnType(i, s, rusqlite::types::Type::Text))
    }
}

/// An optional time; one that does not parse reads as none.
impl Cell for Option<DateTime<Utc>> {
    fn encode(&self) -> ToSqlOutput<'_> {
        self.map_or(ToSqlOutput::Owned(Value::Null), |t| owned(fmt_time(t)))
    }
    fn decode(r: &Row<'_>, i: usize) -> rusqlite::Result<Self> {
        Ok(r.get::<_, Option<String>>(i)?.and_then(|s| parse_time(&s)))
    }
}

/// Phones, e-mails: a JSON list.
impl Cell for Vec<String> {
    fn encode(&self) -> ToSqlOutput<'_> {
        json(self)
    }
    fn decode(r: &Row<'_>, i: usize) -> rusqlite::Result<Self> {
        from_json(r, i)
    }
}

/// Custom fields: a JSON object.
impl Cell for BTreeMap<String, Json> {
    fn encode(&self) -> ToSqlOutput<'_> {
        json(self)
    }
    fn decode(r: &Row<'_>, i: usize) -> rusqlite::Result<Self> {
        from_json(r, i)
    }
}

/// A client type by its stored name; an unknown one reads as none.
impl Cell for Option<ClientType> {
    fn encode(&self) -> ToSqlOutput<'_> {
        opt_text(self.map(ClientType::as_str))
    }
    fn decode(r: &Row<'_>, i: usize) -> rusqlite::Result<Self> {
        Ok(r.get::<_, Option<String>>(i)?.and_then(|c| c.parse().ok()))
    }
}

/// A task kind by its stored name; an unknown one reads as `other`.
impl Cell for TaskKind {
    fn encode(&self) -> ToSqlOutput<'_> {
        text(self.as_str())
    }
    fn decode(r: &Row<'_>, i: usize) -> rusqlite::Result<Self> {
        Ok(r.get::<_, String>(i)?.parse().unwrap_or(TaskKind::Other))
    }
}

/// An entity table: its definition, and its rows' encoding derived from the same column list.
pub(crate) struct EntityTable<T: 'static> {
    /// Its definition (name, columns, indexes).
    pub(crate) table: Table,
    /// Binds the columns of an entity, in table order, and runs the statement.
    bind: fn(&mut CachedStatement<'_>, &T) -> rusqlite::Result<usize>,
    /// The values of the key columns.
    key: fn(&T) -> Vec<Value>,
    /// Reads an entity from a row of every column, in table order.
    row: fn(&Row<'_>) -> rusqlite::Result<T>,
}

/// Whether a column is marked `key`.
macro_rules! is_key {
    () => {
        false
    };
    (key) => {
        true
    };
}

/// Declares an entity table from its one column list: `column: "SQL declaration" [, key] =>
/// model_field`, in table order (the first column is the id). Defines `$table` (an
/// [`EntityTable`]), `$columns` (the column names, comma-separated, for a SELECT) and `$row`
/// (the row decoder).
macro_rules! entity_table {
    (
        $(#[$doc:meta])*
        static $table:ident: $model:ident = $name:literal, $columns:ident, $row:ident {
            $($column:ident: $decl:literal $(, $key:ident)? => $field:ident,)+
        }
        then: $then:expr;
    ) => {
        $(#[$doc])*
        pub(crate) static $table: EntityTable<$model> = EntityTable {
            table: Table {
                name: $name,
                columns: &[$(Column {
                    name: stringify!($column),
                    decl: $decl,
                    key: is_key!($($key)?),
                },)+],
                primary_key: None,
                without_rowid: false,
                then: $then,
            },
            bind: |stmt, m| stmt.execute(rusqlite::params![$(Cell::encode(&m.$field),)+]),
            key: |m| {
                let mut key = Vec::new();
                $(if is_key!($($key)?) {
                    key.push(into_value(Cell::encode(&m.$field)));
                })+
                key
            },
            row: $row,
        };

        #[doc = concat!("The columns of `", $name, "`, in table order, for a SELECT.")]
        pub(crate) const $columns: &str = without_last_comma(concat!($(stringify!($column), ", ",)+));

        #[doc = concat!("Reads a row of `", $name, "` selected with its columns in table order.")]
        pub(crate) fn $row(r: &Row<'_>) -> rusqlite::Result<$model> {
            let mut column = 0..;
            let mut next = move || column.next().unwrap_or_default();
            Ok($model {
                $($field: Cell::decode(r, next())?,)+
            })
        }
    };
}

/// `"a, b, "` without its last `", "`.
const fn without_last_comma(s: &'static str) -> &'static str {
    let (head, _) = s.as_bytes().split_at(s.len() - 2);
    match std::str::from_utf8(head) {
        Ok(head) => head,
        Err(_) => panic!("column names are ASCII"),
    }
}

/// An encoded column as an owned value (text from a `&str` is always UTF-8).
fn into_value(v: ToSqlOutput<'_>) -> Value {
    match v {
        ToSqlOutput::Borrowed(v) => Value::try_from(v).unwrap_or(Value::Null),
        ToSqlOutput::Owned(v) => v,
        _ => Value::Null,
    }
}

entity_table! {
    /// Leads.
    static LEADS: Lead = "leads", LEAD_COLUMNS, lead_row {
        id:               "INTEGER PRIMARY KEY" => id,
        title:            "TEXT    NOT NULL" => title,
        name:             "TEXT" => name,
        phones:           "TEXT    NOT NULL" => phones,
        emails:           "TEXT    NOT NULL" => emails,
        source:           "TEXT    NOT NULL" => source,
        client_type:      "TEXT" => client_type,
        responsible:      "TEXT", key => responsible,
        pipeline:         "TEXT    NOT NULL", key => pipeline,
        stage:            "TEXT    NOT NULL", key => stage,
        stage_reason:     "TEXT" => stage_reason,
        fields:           "TEXT    NOT NULL" => fields,
        comment:          "TEXT" => comment,
        contact_id:       "INTEGER" => contact,
        company_id:       "INTEGER" => company,
        created_at:       "TEXT    NOT NULL" => created_at,
        updated_at:       "TEXT    NOT NULL" => updated_at,
        stage_entered_at: "TEXT    NOT NULL" => stage_entered_at,
        version:          "INTEGER NOT NULL" => version,
    }
    then: "CREATE INDEX IF NOT EXISTS {s}.leads_by_stage ON leads (pipeline, stage);
CREATE INDEX IF NOT EXISTS {s}.leads_by_responsible ON leads (responsible);
CREATE INDEX IF NOT EXISTS {s}.leads_by_company ON leads (company_id);
CREATE INDEX IF NOT EXISTS {s}.leads_by_stage_responsible ON leads (stage, responsible);
CREATE INDEX IF NOT EXISTS {s}.leads_by_source ON leads (source);
CREATE INDEX IF NOT EXISTS {s}.leads_by_client_type ON leads (client_type);
CREATE INDEX IF NOT EXISTS {s}.leads_by_contact ON leads (contact_id);
CREATE INDEX IF NOT EXISTS {s}.leads_by_created ON leads (created_at);
CREATE INDEX IF NOT EXISTS {s}.leads_by_updated ON leads (updated_at);
CREATE INDEX IF NOT EXISTS {s}.leads_by_title ON leads (title COLLATE NOCASE);
CREATE INDEX IF NOT EXISTS {s}.leads_by_name ON leads (name COLLATE NOCASE);
";
}

entity_table! {
    /// Deals.
    static DEALS: Deal = "deals", DEAL_COLUMNS, deal_row {
        id:               "INTEGER PRIMARY KEY" => id,
        title:            "TEXT    NOT NULL" => title,
        pipeline:         "TEXT    NOT NULL", key => pipeline,
        stage:            "TEXT    NOT NULL", key => stage,
        stage_reason:     "TEXT" => stage_reason,
        amount:           "INTEGER" => amount,
        currency:         "TEXT    NOT NULL" => currency,
        responsible:      "TEXT", key => responsible,
        contact_id:       "INTEGER" => contact,
        company_id:       "INTEGER" => company,
        lead_id:          "INTEGER" => lead,
        fields:           "TEXT    NOT NULL" => fields,
        comment:          "TEXT" => comment,
        created_at:       "TEXT    NOT NULL" => created_at,
        updated_at:       "TEXT    NOT NULL" => updated_at,
        stage_entered_at: "TEXT    NOT NULL" => stage_entered_at,
        version:          "INTEGER NOT NULL" => version,
    }
    then: "CREATE INDEX IF NOT EXISTS {s}.deals_by_stage ON deals (pipeline, stage);
CREATE INDEX IF NOT EXISTS {s}.deals_by_responsible ON deals (responsible);
CREATE INDEX IF NOT EXISTS {s}.deals_by_contact ON deals (contact_id);
CREATE INDEX IF NOT EXISTS {s}.deals_by_company ON deals (company_id);
CREATE INDEX IF NOT EXISTS {s}.deals_by_stage_responsible ON deals (stage, responsible);
CREATE INDEX IF NOT EXISTS {s}.deals_by_lead ON deals (lead_id);
CREATE INDEX IF NOT EXISTS {s}.deals_by_created ON deals (created_at);
CREATE INDEX IF NOT EXISTS {s}.deals_by_updated ON deals (updated_at);
CREATE INDEX IF NOT EXISTS {s}.deals_by_title ON deals (title COLLATE NOCASE);
CREATE INDEX IF NOT EXISTS {s}.deals_by_amount ON deals (amount);
";
}

entity_table! {
    /// Contacts (people).
    static CONTACTS: Contact = "contacts", CONTACT_COLUMNS, contact_row {
        id:          "INTEGER PRIMARY KEY" => id,
        name:        "TEXT    NOT NULL" => name,
        phones:      "TEXT    NOT NULL" => phones,
        emails:      "TEXT    NOT NULL" => emails,
        company_id:  "INTEGER" => company,
        responsible: "TEXT" => responsible,
        fields:      "TEXT    NOT NULL" => fields,
        created_at:  "TEXT    NOT NULL" => created_at,
        updated_at:  "TEXT    NOT NULL" => updated_at,
        version:     "INTEGER NOT NULL" => version,
    }
    then: "CREATE INDEX IF NOT EXISTS {s}.contacts_by_company ON contacts (company_id);
CREATE INDEX IF NOT EXISTS {s}.contacts_by_responsible ON contacts (responsible);
CREATE INDEX IF NOT EXISTS {s}.contacts_by_created ON contacts (created_at);
CREATE INDEX IF NOT EXISTS {s}.contacts_by_updated ON contacts (updated_at);
CREATE INDEX IF NOT EXISTS {s}.contacts_by_name ON contacts (name COLLATE NOCASE);
";
}

entity_table! {
    /// Companies (legal entities).
    static COMPANIES: Company = "companies", COMPANY_COLUMNS, company_row {
        id:           "INTEGER PRIMARY KEY" => id,
        name:         "TEXT    NOT NULL" => name,
        inn:          "TEXT", key => inn,
        bank_account: "TEXT" => bank_account,
        bik:          "TEXT" => bik,
        phones:       "TEXT    NOT NULL" => phones,
        emails:       "TEXT    NOT NULL" => emails,
        responsible:  "TEXT" => responsible,
        fields:       "TEXT    NOT NULL" => fields,
        created_at:   "TEXT    NOT NULL" => created_at,
        updated_at:   "TEXT    NOT NULL" => updated_at,
        version:      "INTEGER NOT NULL" => version,
    }
    then: "CREATE INDEX IF NOT EXISTS {s}.companies_by_inn ON companies (inn);
CREATE INDEX IF NOT EXISTS {s}.companies_by_responsible ON companies (responsible);
CREATE INDEX IF NOT EXISTS {s}.companies_by_created ON companies (created_at);
CREATE INDEX IF NOT EXISTS {s}.companies_by_updated ON companies (updated_at);
CREATE INDEX IF NOT EXISTS {s}.companies_by_name ON companies (name COLLATE NOCASE);
";
}

entity_table! {
    /// Tasks.
    static TASKS: Task = "tasks", TASK_COLUMNS, task_row {
        id:           "INTEGER PRIMARY KEY" => id,
        kind:         "TEXT    NOT NULL" => kind,
        title:        "TEXT    NOT NULL" => title,
        assignee:     "TEXT    NOT NULL", key => assignee,
        due_at:       "TEXT    NOT NULL", key => due_at,
        lead_id:      "INTEGER" => lead,
        deal_id:      "INTEGER" => deal,
        created_at:   "TEXT    NOT NULL" => created_at,
        completed_at: "TEXT", key => completed_at,
        result:       "TEXT" => result,
        version:      "INTEGER NOT NULL" => version,
    }
    then: "CREATE INDEX IF NOT EXISTS {s}.tasks_open_by_due ON tasks (due_at) WHERE completed_at IS NULL;
CREATE INDEX IF NOT EXISTS {s}.tasks_by_assignee ON tasks (assignee);
CREATE INDEX IF NOT EXISTS {s}.tasks_by_lead ON tasks (lead_id);
CREATE INDEX IF NOT EXISTS {s}.tasks_by_deal ON tasks (deal_id);
CREATE INDEX IF NOT EXISTS {s}.tasks_by_title ON tasks (title COLLATE NOCASE);
CREATE INDEX IF NOT EXISTS {s}.tasks_by_created ON tasks (created_at);
";
}

/// The table of an entity kind; `None` for the kinds whose streams hold no entity.
pub(crate) fn table_of(kind: EntityKind) -> Option<&'static Table> {
    Some(match kind {
        EntityKind::Lead => &LEADS.table,
        EntityKind::Deal => &DEALS.table,
        EntityKind::Contact => &CONTACTS.table,
        EntityKind::Company => &COMPANIES.table,
        EntityKind::Task => &TASKS.table,
        EntityKind::Ruleset | EntityKind::System | EntityKind::Token | EntityKind::Endpoint => {
            return None;
        }
    })
}

impl<T> EntityTable<T> {
    fn load(&self, conn: &Connection, schema: &'static str, id: i64) -> Result<Option<T>, Error> {
        Ok(conn
            .prepare_cached(self.table.sql(schema, Op::Select))?
            .query_row([id], self.row)
            .optional()?)
    }

    fn write(&self, conn: &Connection, schema: &'static str, op: Op, e: &T) -> Result<(), Error> {
        (self.bind)(&mut conn.prepare_cached(self.table.sql(schema, op))?, e)?;
        Ok(())
    }
}

/// Reads an entity's row.
pub(crate) fn load(
    conn: &Connection,
    schema: &'static str,
    stream: StreamId,
) -> Result<Option<Entity>, Error> {
    let id = stream.id;
    Ok(match stream.kind {
        EntityKind::Lead => LEADS.load(conn, schema, id)?.map(Entity::Lead),
        EntityKind::Deal => DEALS.load(conn, schema, id)?.map(Entity::Deal),
        EntityKind::Contact => CONTACTS.load(conn, schema, id)?.map(Entity::Contact),
        EntityKind::Company => COMPANIES.load(conn, schema, id)?.map(Entity::Company),
        EntityKind::Task => TASKS.load(conn, schema, id)?.map(Entity::Task),
        EntityKind::Ruleset | EntityKind::System | EntityKind::Token | EntityKind::Endpoint => None,
    })
}

/// What an entity's row holds that an update may have to change in an index: the values of
/// its key columns, its match keys, its searchable text and its indexed custom fields. An
/// update that leaves all of them as they were sets none.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct IndexKey {
    columns: Vec<Value>,
    match_keys: Vec<(MatchKey, String)>,
    text: search::Text,
    fields: Vec<(String, Value)>,
}

/// The entity's [`IndexKey`].
pub(crate) fn index_key(e: &Entity) -> IndexKey {
    IndexKey {
        columns: match e {
            Entity::Lead(l) => (LEADS.key)(l),
            Entity::Deal(d) => (DEALS.key)(d),
            Entity::Contact(c) => (CONTACTS.key)(c),
            Entity::Company(c) => (COMPANIES.key)(c),
            Entity::Task(t) => (TASKS.key)(t),
        },
        match_keys: match_keys::of(e),
        text: search::text_of(e),
        fields: search::fields_of(e),
    }
}

/// Writes an entity's row and its match keys; `stored` is its row's [`IndexKey`], `None` if it
/// has no row yet. Returns the row's key now.
pub(crate) fn save(
    conn: &Connection,
    schema: &'static str,
    e: &Entity,
    stored: Option<&IndexKey>,
) -> Result<IndexKey, Error> {
    let key = index_key(e);
    let op = match stored {
        None => Op::InsertOrReplace,
        Some(k) if *k == key => Op::UpdateUnkeyed,
        Some(_) => Op::Update,
    };
    match e {
        Entity::Lead(l) => LEADS.write(conn, schema, op, l)?,
        Entity::Deal(d) => DEALS.write(conn, schema, op, d)?,
        Entity::Contact(c) => CONTACTS.write(conn, schema, op, c)?,
        Entity::Company(c) => COMPANIES.write(conn, schema, op, c)?,
        Entity::Task(t) => TASKS.write(conn, schema, op, t)?,
    }
    if op != Op::UpdateUnkeyed {
        let old = stored.map_or(&[][..], |k| &k.match_keys);
        match_keys::save(conn, schema, e.stream(), old, &key.match_keys)?;
        search::save_text(conn, schema, e.stream(), stored.map(|k| &k.text), &key.text)?;
        let old = stored.map_or(&[][..], |k| &k.fields);
        search::save_fields(conn, schema, e.stream(), old, &key.fields)?;
    }
    Ok(key)
}

/// Removes a deleted entity's row and what its [`IndexKey`] says it has in the side indexes
/// (match keys, search text, custom-field values).
pub(crate) fn delete(
    conn: &Connection,
    schema: &'static str,
    stream: StreamId,
    stored: &IndexKey,
) -> Result<(), Error> {
    let Some(table) = table_of(stream.kind) else {
        return Ok(());
    };
    conn.prepare_cached(table.sql(schema, Op::Delete))?
        .execute([stream.id])?;
    match_keys::save(conn, schema, stream, &stored.match_keys, &[])?;
    search::delete_text(conn, schema, stream)?;
    search::save_fields(conn, schema, stream, &stored.fields, &[])?;
    Ok(())
}

/// Adds `n` to the version of the entity's row (if it has one).
pub(crate) fn add_version(
    conn: &Connection,
    schema: &'static str,
    stream: StreamId,
    n: i64,
) -> Result<(), Error> {
    let Some(table) = table_of(stream.kind) else {
        unreachable!(
            "{} streams hold no entity, so no entity row is ever written",
            stream.kind
        )
    };
    conn.prepare_cached(table.sql(schema, Op::AddVersion))?
        .execute(rusqlite::params![n, stream.id])?;
    Ok(())
}
