//! The projection tables: the current state of leads, deals, contacts, companies and tasks,
//! and the side tables (stage history, timers, journals, inbox and outbox, match keys, idle
//! marks, cron state, API tokens), all derived from the log through [`leadflow_engine::projection::project`].
//!
//! Where to change what:
//! - here: [`TABLES`], every projection table in the order the DDL creates them and `verify`
//!   compares them (a new table is added there), and creating or recreating them.
//! - [`tables`]: every side table's definition (its one column list, key and indexes) and how
//!   the DDL and the statements are derived from a definition; the checkpoint.
//! - [`rows`]: the entity tables' column lists, each column with the model field it holds, and
//!   how each field type is stored ([`rows::Cell`]). Adding a column to an entity table is one
//!   line there.
//! - [`side`]: which event writes which side-table row; [`timers`], [`match_keys`] and
//!   [`tokens`]: those tables' reads and writes.
//! - [`projector`]: applying events inside a write transaction (the in-memory cache of entity
//!   states and its flush); [`replay`]: rebuilding every table from the whole log.
//!
//! Every function takes the schema name (`main`, or `fresh` for the scratch copy that `verify`
//! builds), so the same code maintains the live tables and rebuilds the comparison copy. This
//! module reads the log's tables but knows nothing of the log's API: the log drives it.

mod match_keys;
mod projector;
mod replay;
mod rows;
mod search;
mod side;
mod tables;
pub(crate) mod timers;
mod tokens;

pub(crate) use leadflow_engine::stored::PendingTimer;
pub(crate) use leadflow_engine::workspace::MatchKey;
pub(crate) use match_keys::{matching, of as match_keys_of};
pub(crate) use projector::Projector;
pub(crate) use replay::rebuild_from_scratch;
pub(crate) use rows::{
    COMPANY_COLUMNS, CONTACT_COLUMNS, DEAL_COLUMNS, LEAD_COLUMNS, TASK_COLUMNS, company_row,
    contact_row, deal_row, lead_row, load, table_of, task_row,
};
pub(crate) use search::{code as search_code, field_value};
pub(crate) use tables::{checkpoint, set_checkpoint};
pub(crate) use timers::{pending as pending_timers, take_due as take_due_timers};
pub(crate) use tokens::token_state;

use crate::error::Error;
use rows::{COMPANIES, CONTACTS, DEALS, LEADS, TASKS};
use rusqlite::Connection;
use tables::{
    DELIVERIES, ENDPOINTS, ESCALATIONS, IDLE_MARKS, INBOX, INBOX_READ, INCIDENTS, MATCH_KEYS,
    OUTBOX, PROJECTION_STATE, REQUESTS, SCHEDULES, STAGE_HISTORY, TIMERS, TOKENS, Table,
};
use tables::{FIELD_VALUES, SEARCH_FTS, SEARCH_TEXT};

/// The projection tables, in the order they are created and `verify` compares them.
pub(crate) static TABLES: &[&Table] = &[
    &LEADS.table,
    &DEALS.table,
    &CONTACTS.table,
    &COMPANIES.table,
    &TASKS.table,
    &STAGE_HISTORY,
    &TIMERS,
    &INCIDENTS,
    &ESCALATIONS,
    &INBOX,
    &INBOX_READ,
    &OUTBOX,
    &IDLE_MARKS,
    &SCHEDULES,
    &MATCH_KEYS,
    &REQUESTS,
    &TOKENS,
    &SEARCH_TEXT,
    &FIELD_VALUES,
    &ENDPOINTS,
    &DELIVERIES,
    &PROJECTION_STATE,
];

/// Every projection table's DDL, for `schema`.
fn ddl(schema: &str) -> String {
    TABLES
        .iter()
        .map(|t| t.ddl(schema))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The names of the projection tables' indexes.
pub(crate) fn index_names() -> impl Iterator<Item = &'static str> {
    TABLES.iter().flat_map(|t| t.index_names())
}

/// Creates any missing projection table (and index).
pub(crate) fn ensure(conn: &Connection, schema: &str) -> Result<(), Error> {
    conn.execute_batch(&ddl(schema))?;
    Ok(())
}

/// Drops the triggers that keep the text-search index in step with `search_text` (a scratch
/// database's: see [`crate::Store::open_scratch`]).
pub(crate) const DROP_SEARCH_TRIGGERS: &str = "DROP TRIGGER IF EXISTS main.search_text_inserted; \
     DROP TRIGGER IF EXISTS main.search_text_deleted; DROP TRIGGER IF EXISTS main.search_text_updated;";

/// Drops and recreates every projection table (empty, checkpoint 0), and the FTS5 index
/// over `search_text`.
pub(crate) fn recreate(conn: &Connection, schema: &str) -> Result<(), Error> {
    conn.execute_batch(&format!("DROP TABLE IF EXISTS {schema}.{SEARCH_FTS};"))?;
    for t in TABLES {
        conn.execute_batch(&format!("DROP TABLE IF EXISTS {schema}.{};", t.name))?;
    }
    ensure(conn, schema)
}

#[cfg(test)]
mod tests;
