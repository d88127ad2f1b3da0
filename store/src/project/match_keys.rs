//! `match_keys`: the normalised phones, e-mails and INNs of leads, contacts and companies, so
//! that an entity is found by any of them with one index lookup. Written with the entity's row
//! (see `rows::save`).

use super::tables::{MATCH_KEYS, Op, sql};
use crate::error::Error;
use leadflow_engine::workspace::MatchKey;
use leadflow_engine::{Entity, EntityKind, StreamId};
use rusqlite::{Connection, params};

/// What `match_keys` holds for an entity (the engine's one derivation, which the in-memory
/// backend shares).
pub(crate) fn of(e: &Entity) -> Vec<(MatchKey, String)> {
    leadflow_engine::workspace::match_keys(e)
}

/// Brings the entity's rows from the keys `old` (what its row had, if any) to `new`.
pub(crate) fn save(
    conn: &Connection,
    schema: &'static str,
    stream: StreamId,
    old: &[(MatchKey, String)],
    new: &[(MatchKey, String)],
) -> Result<(), Error> {
    if old == new {
        return Ok(());
    }
    for (what, value) in old.iter().filter(|k| !new.contains(k)) {
        conn.prepare_cached(sql(
            schema,
            "DELETE FROM {s}.match_keys WHERE what = ?1 AND value = ?2 AND kind = ?3 AND entity_id = ?4",
        ))?
        .execute(params![what.as_str(), value, stream.kind.as_str(), stream.id])?;
    }
    for (what, value) in new.iter().filter(|k| !old.contains(k)) {
        conn.prepare_cached(MATCH_KEYS.sql(schema, Op::InsertOrIgnore))?
            .execute(params![
                what.as_str(),
                value,
                stream.kind.as_str(),
                stream.id
            ])?;
    }
    Ok(())
}

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
