//! Rebuilding the projections from the whole log at once (`replay`, `verify`'s scratch copy,
//! a database whose projections were dropped), stream by stream.

use super::rows;
use super::side;
use super::tables::set_checkpoint;
use crate::error::Error;
use chrono::{DateTime, Utc};
use leadflow_engine::projection::{StageVisit, project};
use leadflow_engine::stored::parse_time;
use leadflow_engine::{Entity, EntityKind, Event, StreamId};
use rusqlite::{Connection, Row};

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
    // Streams in key order, each stream's events through the (stream_key, version) index: no
    // sort, no temporary table (CROSS JOIN pins that join order; the write lock means no
    // event beyond `head` can appear).
    let mut stmt = conn.prepare(
        "SELECT s.stream_key, s.kind, s.entity_id, e.position, e.type, e.schema_version, e.payload, e.occurred_at, e.actor \
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
                fold.finish(conn)?;
            }
            let kind = text(r, 1)?;
            let Ok(kind) = kind.parse::<EntityKind>() else {
                return Err(Error::Corrupt {
                    position,
                    why: format!("unknown stream kind '{kind}'"),
                });
            };
            current = Some((key, StreamFold::new(schema, StreamId::new(kind, r.get(2)?))));
        }
        let event = Event::decode(text(r, 4)?, r.get::<_, i64>(5)? as u32, text(r, 6)?)
            .map_err(|source| Error::Decode { position, source })?;
        let occurred_at = text(r, 7)?;
        let at = parse_time(occurred_at).ok_or_else(|| Error::Corrupt {
            position,
            why: format!("occurred_at '{occurred_at}' is not a time"),
        })?;
        if let Some((_, fold)) = current.as_mut() {
            fold.apply(conn, position, &event, at, text(r, 8)?)?;
        }
        applied += 1;
        if applied % PROGRESS_EVERY == 0 {
            progress(applied);
        }
    }
    if let Some((_, fold)) = current.take() {
        fold.finish(conn)?;
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
    schema: &'static str,
    stream: StreamId,
    entity: Option<Entity>,
    open: Option<(i64, StageVisit)>,
    /// The stream's entity was deleted.
    deleted: bool,
}

impl StreamFold {
    fn new(schema: &'static str, stream: StreamId) -> Self {
        StreamFold {
            schema,
            stream,
            entity: None,
            open: None,
            deleted: false,
        }
    }

    /// The same changes as `Projector::apply`, kept in memory until the stream ends.
    fn apply(
        &mut self,
        conn: &Connection,
        position: i64,
        event: &Event,
        at: DateTime<Utc>,
        actor: &str,
    ) -> Result<(), Error> {
        side::apply(conn, self.schema, position, self.stream, event, at, actor)?;
        if !self.stream.kind.is_entity() {
            return Ok(());
        }
        let p = project(self.entity.take(), event, at);
        if event.is_deletion()
            && let Some((entered, visit)) = self.open.take()
        {
            // As the live path: the open stage visit ends when the entity is deleted.
            side::stage_visit(conn, self.schema, entered, &visit, Some(at))?;
        }
        if p.left.is_some()
            && let Some((entered, visit)) = self.open.take()
        {
            side::stage_visit(conn, self.schema, entered, &visit, Some(at))?;
        }
        if let Some(visit) = p.entered {
            // A visit entered while another is open would break the one-open-visit index,
            // exactly as the live path would.
            if let Some((entered, open)) = self.open.replace((position, visit)) {
                side::stage_visit(conn, self.schema, entered, &open, None)?;
            }
        }
        let gone = event.is_deletion() || self.deleted;
        self.deleted |= event.is_deletion();
        if p.entity.is_none() && !gone {
            tracing::warn!(position, stream = %self.stream, event = event.event_type(), "event does not apply to the entity's state; ignored");
        }
        self.entity = p.entity;
        Ok(())
    }

    /// Writes the entity's row and its open stage visit.
    fn finish(self, conn: &Connection) -> Result<(), Error> {
        if let Some((entered, visit)) = &self.open {
            side::stage_visit(conn, self.schema, *entered, visit, None)?;
        }
        if let Some(e) = &self.entity {
            rows::save(conn, self.schema, e, None)?;
        }
        Ok(())
    }
}
