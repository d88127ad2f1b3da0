//! `timers`: the pending deadlines, delayed robots and task due times, keyed by due time and
//! the position of the event that set them, so that firing takes the earliest rows together.
//! Set and cleared by events (see `side`); read by stream and taken when due here.

use super::tables::{Op, TIMERS, sql};
use crate::error::Error;
use chrono::{DateTime, Utc};
use leadflow_engine::stored::{PendingTimer, fmt_time, parse_time};
use leadflow_engine::{EntityKind, StreamId};
use rusqlite::{Connection, OptionalExtension, ToSql, params};

/// A timer being set: the values of its row, but its key (due time and the position of the
/// event that sets it) and its stream.
pub(crate) struct NewTimer<'a> {
    /// `deadline`, `robots` or `task`.
    pub(crate) what: &'static str,
    /// The deadline's name, or the rule of delayed robots.
    pub(crate) name: Option<&'a str>,
    /// For delayed robots: the stage they were put off in.
    pub(crate) stage: Option<&'a str>,
    /// For delayed robots: whether they survive the entity leaving that stage.
    pub(crate) survive_move: bool,
}

/// Adds the row of a timer set by the event at `position`.
pub(crate) fn set(
    conn: &Connection,
    schema: &'static str,
    due_at: DateTime<Utc>,
    position: i64,
    stream: StreamId,
    t: &NewTimer<'_>,
) -> Result<(), Error> {
    let values: [&dyn ToSql; 8] = [
        &fmt_time(due_at),
        &position,
        &t.what,
        &stream.kind.as_str(),
        &stream.id,
        &t.name,
        &t.stage,
        &t.survive_move,
    ];
    conn.prepare_cached(TIMERS.sql(schema, Op::Insert))?
        .execute(&values[..])?;
    Ok(())
}

/// Removes the row of the timer set by the event at `id`, due at `due_at`.
pub(crate) fn unset(
    conn: &Connection,
    schema: &'static str,
    due_at: DateTime<Utc>,
    id: i64,
) -> Result<(), Error> {
    conn.prepare_cached(sql(
        schema,
        "DELETE FROM {s}.timers WHERE due_at = ?1 AND id = ?2",
    ))?
    .execute(params![fmt_time(due_at), id])?;
    Ok(())
}

/// Removes the row of the timer set by the event at `id` (of the same stream): its row is
/// keyed by its due time, which that event holds.
pub(crate) fn unset_set_by(conn: &Connection, schema: &'static str, id: i64) -> Result<(), Error> {
    match due_of(conn, id)? {
        Some(due) => unset(conn, schema, due, id),
        None => Ok(()),
    }
}

/// The due time an event that sets a timer (`deadline.scheduled`, `robots.delayed`,
/// `task.created`) gave it.
#[derive(serde::Deserialize)]
struct DueAt {
    due_at: DateTime<Utc>,
}

/// The due time set by the event at `position`, if it sets one.
fn due_of(conn: &Connection, position: i64) -> Result<Option<DateTime<Utc>>, Error> {
    let payload: Option<String> = conn
        .prepare_cached("SELECT payload FROM main.events WHERE position = ?1")?
        .query_row([position], |r| r.get(0))
        .optional()?;
    Ok(payload
        .and_then(|p| serde_json::from_str::<DueAt>(&p).ok())
        .map(|d| d.due_at))
}

/// The events of a stream that set a timer, in order: read from the partial index
/// `timer_events` alone (see `schema::LOG_INDEXES`; its condition is this query's).
pub(crate) const TIMER_EVENTS_OF_STREAM: &str = "SELECT position, payload FROM main.events WHERE stream_key = ?1 \
     AND (type = 'deadline.scheduled' OR type = 'robots.delayed' OR type = 'task.created') ORDER BY position";

/// The stream's pending timers, in the order they were set: its timer-setting events whose
/// rows are still in `timers` (the table has no index by stream; see its definition).
pub(crate) fn pending(
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
        let mut stmt = conn.prepare_cached(TIMER_EVENTS_OF_STREAM)?;
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

/// A timer taken by [`take_due`].
pub(crate) struct Due {
    /// Its stream.
    pub(crate) stream: StreamId,
    /// The stream's key and version, if it has a head row.
    pub(crate) head: Option<(i64, i64)>,
    /// The timer.
    pub(crate) timer: PendingTimer,
}

/// Takes up to `limit` timers due at or before `now` from the live `timers`, earliest first,
/// with their streams' heads: their rows are removed in one range delete.
pub(crate) fn take_due(
    conn: &Connection,
    now: DateTime<Utc>,
    limit: usize,
) -> Result<Vec<Due>, Error> {
    type Row = (
        String,
        i64,
        String,
        String,
        i64,
        Option<String>,
        Option<i64>,
        Option<i64>,
    );
    let rows: Vec<Row> = {
        let mut stmt = conn.prepare_cached(
            "SELECT t.due_at, t.id, t.what, t.kind, t.entity_id, t.name, s.stream_key, s.version \
             FROM timers t LEFT JOIN streams s ON s.kind = t.kind AND s.entity_id = t.entity_id \
             WHERE t.due_at <= ?1 ORDER BY t.due_at, t.id LIMIT ?2",
        )?;
        let rows = stmt.query_map(params![fmt_time(now), limit as i64], |r| {
            Ok((
                r.get(0)?,
                r.get(1)?,
                r.get(2)?,
                r.get(3)?,
                r.get(4)?,
                r.get(5)?,
                r.get(6)?,
                r.get(7)?,
            ))
        })?;
        rows.collect::<Result<_, _>>()?
    };
    let mut out = Vec::with_capacity(rows.len());
    let mut last = None;
    for (due_at, id, what, kind, entity, name, key, version) in rows {
        let (Ok(kind), Some(due_at)) = (kind.parse::<EntityKind>(), parse_time(&due_at)) else {
            return Err(Error::Corrupt {
                position: id,
                why: format!("timer row ({due_at}, {id}) has a bad kind '{kind}' or due time"),
            });
        };
        last = Some((fmt_time(due_at), id));
        out.push(Due {
            stream: StreamId::new(kind, entity),
            head: key.zip(version),
            timer: PendingTimer {
                id,
                due_at,
                what,
                name,
                stage: None,
                survive_move: false,
            },
        });
    }
    if let Some((due_at, id)) = last {
        // Exactly the rows selected: every key up to the last one taken.
        conn.prepare_cached("DELETE FROM timers WHERE (due_at, id) <= (?1, ?2)")?
            .execute(params![due_at, id])?;
    }
    Ok(out)
}
