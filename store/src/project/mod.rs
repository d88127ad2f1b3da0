//! The projection tables: the current state of leads, deals, contacts, companies and tasks,
//! and the side tables (stage history, timers, journals, inbox and outbox, match keys, idle
//! marks, cron state), all derived from the log through [`leadflow_engine::projection::project`].
//!
//! Where to change what:
//! - [`tables`]: every table's definition (its one column list, key and indexes), from which
//!   the DDL and the write statements are derived; the list of tables; the checkpoint.
//! - [`rows`]: the entity tables' column lists, each column with the model field it holds, and
//!   how each field type is stored ([`rows::Cell`]). Adding a column to an entity table is one
//!   line there.
//! - [`side`]: which event writes which side-table row; [`timers`] and [`match_keys`]: those
//!   tables' reads and writes.
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
mod side;
mod tables;
mod timers;

pub(crate) use leadflow_engine::stored::PendingTimer;
pub(crate) use leadflow_engine::workspace::MatchKey;
pub(crate) use match_keys::matching;
pub(crate) use projector::Projector;
pub(crate) use replay::rebuild_from_scratch;
pub(crate) use rows::{
    COMPANY_COLUMNS, CONTACT_COLUMNS, DEAL_COLUMNS, LEAD_COLUMNS, TASK_COLUMNS, company_row,
    contact_row, deal_row, lead_row, load, table_of, task_row,
};
pub(crate) use tables::{TABLES, checkpoint, ensure, recreate, set_checkpoint};
pub(crate) use timers::{pending as pending_timers, take_due as take_due_timers};

use crate::error::Error;
use crate::log::{SELECT_EVENT, row_to_event};
use rusqlite::{Connection, params};

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

/// Applies up to `limit` events after the checkpoint of the projector's schema, flushes them
/// and moves the checkpoint. Returns how many events were applied.
pub(crate) fn catch_up_page(
    conn: &Connection,
    projector: &mut Projector,
    limit: i64,
) -> Result<usize, Error> {
    let schema = projector.schema();
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

#[cfg(test)]
mod tests;
