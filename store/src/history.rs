//! The audit's reads (`history`, `explain`, state as of a time or position) and the copy of
//! the log up to a position into a database of its own (`replay --until --into`).
//!
//! Every read here is bounded by the position asked for: a stream's events through the
//! `(stream_key, version)` index, a chain of causes one primary-key lookup per step, the
//! position of a time by a walk from the log's start that stops at the first event after it.
//! The copy pages through the log up to its position and never writes the source.

use crate::error::Error;
use crate::log::{self, LogFilter, SELECT_EVENT, row_to_event};
use crate::{Hash, Store, project};
use chrono::{DateTime, Utc};
use leadflow_engine::StreamId;
use leadflow_engine::react::RULESET_STREAM;
use leadflow_engine::stored::{RecordedEvent, fmt_time};
use rusqlite::{OptionalExtension, params};

/// The event at `position`, if the log has one.
pub fn event_at(store: &Store, position: i64) -> Result<Option<RecordedEvent>, Error> {
    Ok(
        log::read_log(&store.conn, &LogFilter::default(), position - 1, 1)?
            .into_iter()
            .next()
            .filter(|e| e.position == position),
    )
}

/// A stream's events at or before `position`, in version order.
pub fn stream_until(
    store: &Store,
    stream: StreamId,
    position: i64,
) -> Result<Vec<RecordedEvent>, Error> {
    let mut stmt = store.conn.prepare_cached(&format!(
        "{SELECT_EVENT} WHERE s.kind = ?1 AND s.entity_id = ?2 AND e.position <= ?3 ORDER BY e.version"
    ))?;
    let rows = stmt.query_map(
        params![stream.kind.as_str(), stream.id, position],
        row_to_event,
    )?;
    let mut out = Vec::new();
    for r in rows {
        out.push(r??);
    }
    Ok(out)
}

/// The chain of causes of the event at `position`: that event, the event that caused it, and
/// so on back to the first (the one without a cause), at most `limit` events. Empty if there
/// is no event at `position`. A cause that is not in the log ends the chain early.
pub fn causes(store: &Store, position: i64, limit: usize) -> Result<Vec<RecordedEvent>, Error> {
    let mut out: Vec<RecordedEvent> = Vec::new();
    let mut next = Some(position);
    while let Some(p) = next {
        if out.len() >= limit {
            break;
        }
        let Some(e) = event_at(store, p)? else { break };
        // A cause is always earlier; anything else would loop.
        next = e.causation.filter(|c| *c < e.position);
        out.push(e);
    }
    Ok(out)
}

/// The `ruleset.activated` in force at `position`: the latest at or before it (through the
/// rule-set stream's `(stream_key, version)` index, newest first: activations are few).
pub fn ruleset_at(store: &Store, position: i64) -> Result<Option<RecordedEvent>, Error> {
    let mut stmt = store.conn.prepare_cached(&format!(
        "{SELECT_EVENT} WHERE e.stream_key = (SELECT stream_key FROM streams WHERE kind = ?1 AND entity_id = ?2) \
         AND e.type = 'ruleset.activated' AND e.position <= ?3 ORDER BY e.version DESC LIMIT 1"
    ))?;
    let mut rows = stmt.query_map(
        params![RULESET_STREAM.kind.as_str(), RULESET_STREAM.id, position],
        row_to_event,
    )?;
    match rows.next() {
        Some(r) => Ok(Some(r??)),
        None => Ok(None),
    }
}

/// Every rule-set activation at or before `position`, as (position, hash), in order: which
/// rule set was in force at any event is the last of these before it. The rule files' texts
/// are not read.
pub fn activations(store: &Store, position: i64) -> Result<Vec<(i64, String)>, Error> {
    let mut stmt = store.conn.prepare_cached(
        "SELECT e.position, coalesce(json_extract(e.payload, '$.hash'), '') FROM events e \
         WHERE e.stream_key = (SELECT stream_key FROM streams WHERE kind = ?1 AND entity_id = ?2) \
         AND e.type = 'ruleset.activated' AND e.position <= ?3 ORDER BY e.version",
    )?;
    let rows = stmt.query_map(
        params![RULESET_STREAM.kind.as_str(), RULESET_STREAM.id, position],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// The position the log stood at at time `t`: the last event before the first one that
/// occurred after `t` (a backdated event recorded later is not part of the log as it stood
/// then). 0 when the log's first event occurred after `t` (or the log is empty). Reads the log
/// from its start up to that event only.
pub fn position_at(store: &Store, t: DateTime<Utc>) -> Result<i64, Error> {
    let after: Option<i64> = store
        .conn
        .prepare_cached(
            "SELECT position FROM events WHERE occurred_at > ?1 ORDER BY position LIMIT 1",
        )?
        .query_row([fmt_time(t)], |r| r.get(0))
        .optional()?;
    match after {
        Some(p) => Ok(p - 1),
        None => log::last_position(&store.conn),
    }
}

/// How many incidents of `employee` (of `kind`, or of any kind) at or after `since` the
/// journal held at `position`: what a rule's condition counted then.
pub fn incidents_until(
    store: &Store,
    employee: &str,
    kind: Option<&str>,
    since: DateTime<Utc>,
    position: i64,
) -> Result<i64, Error> {
    Ok(store
        .conn
        .prepare_cached(
            "SELECT count(*) FROM incidents WHERE employee = ?1 AND (?2 IS NULL OR kind = ?2) \
             AND at >= ?3 AND position <= ?4",
        )?
        .query_row(params![employee, kind, fmt_time(since), position], |r| {
            r.get(0)
        })?)
}

/// Copies the log of `source` up to `position` into `into` (a database just created, with
/// an empty log) and builds its projections from that log, in one transaction of `into`: a
/// database as `source` was at `position`. The rules' cursors are copied, at most
/// `position`. The log is read in pages (bounded memory, whatever its length) and `source`
/// is only read. `progress` is told how many events have been copied, then applied. Returns
/// the copy's head.
pub fn copy_until(
    source: &Store,
    position: i64,
    into: &mut Store,
    progress: &mut dyn FnMut(i64),
) -> Result<Option<(i64, Hash)>, Error> {
    const PAGE: usize = 2048;
    if log::last_position(&into.conn)? != 0 {
        return Err(Error::Corrupt {
            position: 0,
            why: "the database to copy into already has events".into(),
        });
    }
    let tx = into.begin_immediate()?;
    {
        let mut stream = tx.prepare_cached(
            "INSERT INTO streams (kind, entity_id, version) VALUES (?1, ?2, ?3) \
             ON CONFLICT (kind, entity_id) DO UPDATE SET version = excluded.version \
             RETURNING stream_key",
        )?;
        let mut after = 0;
        while after < position {
            let limit = PAGE.min(usize::try_from(position - after).unwrap_or(PAGE));
            let page = log::read_log(&source.conn, &LogFilter::default(), after, limit)?;
            let Some(last) = page.last() else { break };
            after = last.position;
            for e in page.iter().filter(|e| e.position <= position) {
                let key: i64 = stream.query_row(
                    params![e.stream.kind.as_str(), e.stream.id, e.version],
                    |r| r.get(0),
                )?;
                log::insert_recorded(&tx, key, e)?;
            }
            progress(after.min(position));
        }
        let mut cursors = source
            .conn
            .prepare_cached("SELECT name, position FROM rule_cursor ORDER BY name")?;
        let cursors = cursors
            .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))?
            .collect::<Result<Vec<_>, _>>()?;
        for (name, at) in cursors {
            tx.execute(
                "INSERT INTO rule_cursor (name, position) VALUES (?1, ?2)",
                params![name, at.min(position)],
            )?;
        }
    }
    project::rebuild_from_scratch(&tx, "main", progress)?;
    let head = log::head(&tx)?;
    tx.commit()?;
    Ok(head)
}
