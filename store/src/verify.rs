//! `verify`: recompute the hash chain, and compare the projections with a fresh replay.

use crate::chain::{GENESIS, Hash, event_hash};
use crate::error::Error;
use crate::log::row_to_event;
use crate::project::{self, TABLES};
use rusqlite::Connection;

/// The outcome of checking the hash chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainReport {
    /// Events checked.
    pub events: i64,
    /// The last good event's position and hash (the head to keep, if the chain is intact).
    pub head: Option<(i64, Hash)>,
    /// The first problem found, if any.
    pub problem: Option<ChainProblem>,
}

/// The first place where the log is not what leadflow wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainProblem {
    /// The first bad position.
    pub position: i64,
    /// What is wrong there.
    pub why: String,
}

/// One projection table that differs from a fresh replay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProjectionDiff {
    /// The table.
    pub table: String,
    /// Rows in the live table that a fresh replay does not produce.
    pub only_live: i64,
    /// Rows a fresh replay produces that the live table lacks.
    pub only_replayed: i64,
    /// The first differing row's key, for the report.
    pub first_key: Option<i64>,
}

pub(crate) fn chain(
    conn: &Connection,
    progress: &mut dyn FnMut(i64),
) -> Result<ChainReport, Error> {
    let mut stmt = conn.prepare(
        "SELECT e.position, s.kind, s.entity_id, e.version, e.type, e.schema_version, e.payload, e.occurred_at, \
         e.recorded_at, e.actor, e.causation, e.correlation, e.hash \
         FROM events e LEFT JOIN streams s ON s.stream_key = e.stream_key ORDER BY e.position",
    )?;
    let mut rows = stmt.query([])?;
    let mut prev: Hash = GENESIS;
    let mut expected = 1i64;
    let mut head = None;
    let fail = |position: i64, why: String, events: i64, head| {
        Ok(ChainReport {
            events,
            head,
            problem: Some(ChainProblem { position, why }),
        })
    };
    while let Some(r) = rows.next()? {
        let position: i64 = r.get(0)?;
        if position != expected {
            let why = if position > expected {
                format!(
                    "position {expected} is missing (the next row is {position}): a row was deleted"
                )
            } else {
                format!("position {position} is out of order")
            };
            return fail(position.min(expected), why, expected - 1, head);
        }
        let rec = match row_to_event(r)? {
            Ok(rec) => rec,
            Err(Error::Corrupt { why, .. }) => {
                let why = if why.contains("32 bytes") {
                    format!("hash mismatch: {why}")
                } else {
                    why
                };
                return fail(position, why, position - 1, head);
            }
            Err(other) => return Err(other),
        };
        let stream = rec.stream;
        let name = stream.to_string();
        let computed = event_hash(&prev, &crate::log::hashed(&rec, &name));
        if computed != rec.hash {
            return fail(
                position,
                "hash mismatch: the row was edited, inserted or moved, or an earlier row was"
                    .into(),
                position - 1,
                head,
            );
        }
        prev = computed;
        head = Some((position, computed));
        expected += 1;
        if position % 65536 == 0 {
            progress(position);
        }
    }
    drop(rows);
    // The per-stream head rows must agree with the events they summarise.
    let bad: Option<(String, i64, i64, i64, i64)> = conn
        .query_row(
            "SELECT s.kind, s.entity_id, s.version, coalesce(m.top, 0), coalesce(m.n, 0) FROM streams s \
             LEFT JOIN (SELECT stream_key, max(version) AS top, count(*) AS n FROM events GROUP BY stream_key) m \
             USING (stream_key) WHERE s.version != coalesce(m.top, 0) OR coalesce(m.n, 0) != coalesce(m.top, 0) LIMIT 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
        )
        .map(Some)
        .or_else(|e| if e == rusqlite::Error::QueryReturnedNoRows { Ok(None) } else { Err(e) })?;
    if let Some((kind, id, version, top, n)) = bad {
        let position: i64 = conn
            .query_row(
                "SELECT coalesce(max(e.position), 0) FROM events e JOIN streams s USING (stream_key) WHERE s.kind = ?1 AND s.entity_id = ?2",
                rusqlite::params![kind, id],
                |r| r.get(0),
            )
            .unwrap_or(0);
        return fail(
            position,
            format!(
                "stream {kind}-{id}: its head says version {version}, but the log holds {n} events up to version {top}"
            ),
            expected - 1,
            head,
        );
    }
    progress(expected - 1);
    Ok(ChainReport {
        events: expected - 1,
        head,
        problem: None,
    })
}

/// Builds the projections afresh in the attached `fresh` schema from the log and compares
/// them with the live ones. Runs inside the caller's read transaction, so the log, the live
/// tables and the scratch replay are one snapshot, whatever other processes write meanwhile
/// (writing the attached scratch schema takes no lock on the database file).
pub(crate) fn projections(
    conn: &Connection,
    progress: &mut dyn FnMut(i64),
) -> Result<Vec<ProjectionDiff>, Error> {
    project::recreate(conn, "fresh")?;
    project::rebuild_from_scratch(conn, "fresh", progress)?;
    let mut diffs = Vec::new();
    for table in TABLES.iter().map(|t| t.name) {
        // The numeric column that best points at a differing row.
        let key = match table {
            "stage_history" | "incidents" | "escalations" | "inbox" | "outbox" | "requests" => {
                "position"
            }
            "idle_marks" | "match_keys" | "field_values" => "entity_id",
            "schedules" => "NULL",
            "tokens" => "CAST(substr(stream, 7) AS INTEGER)",
            _ => "id",
        };
        let count = |a: &str, b: &str| -> Result<(i64, Option<i64>), Error> {
            Ok(conn.query_row(
                &format!("SELECT count(*), min({key}) FROM (SELECT * FROM {a}.{table} EXCEPT SELECT * FROM {b}.{table})"),
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )?)
        };
        let (only_live, k1) = count("main", "fresh")?;
        let (only_replayed, k2) = count("fresh", "main")?;
        if only_live > 0 || only_replayed > 0 {
            diffs.push(ProjectionDiff {
                table: table.to_owned(),
                only_live,
                only_replayed,
                first_key: k1.or(k2),
            });
        }
    }
    // The FTS5 index over `search_text` must index exactly its rows (the comparison above
    // covers the rows themselves): a row it lacks would be missing from text searches.
    let unindexed: (i64, Option<i64>) = conn.query_row(
        "SELECT count(*), min(id) FROM (SELECT id FROM main.search_text EXCEPT SELECT id FROM main.search_fts_docsize)",
        [],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    let stale: (i64, Option<i64>) = conn.query_row(
        "SELECT count(*), min(id) FROM (SELECT id FROM main.search_fts_docsize EXCEPT SELECT id FROM main.search_text)",
        [],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    if unindexed.0 > 0 || stale.0 > 0 {
        diffs.push(ProjectionDiff {
            table: "search_fts".to_owned(),
            only_live: stale.0,
            only_replayed: unindexed.0,
            first_key: unindexed.1.or(stale.1),
        });
    }
    // The scratch copy is not needed any more; empty it now rather than at detach.
    conn.execute_batch("DROP TABLE IF EXISTS fresh.search_fts;")?;
    for table in TABLES {
        conn.execute_batch(&format!("DROP TABLE IF EXISTS fresh.{};", table.name))?;
    }
    Ok(diffs)
}
