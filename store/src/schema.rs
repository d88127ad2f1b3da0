//! Schema migrations, keyed on SQLite's `user_version`, and the database's identity
//! (`application_id`), so leadflow neither touches a foreign database nor one from a newer
//! leadflow.

use crate::error::Error;
use rusqlite::{Connection, Transaction};
use std::path::Path;

/// `PRAGMA application_id` of leadflow databases: "LFLW".
pub(crate) const APPLICATION_ID: i64 = 0x4C46_4C57;

/// The schema version this leadflow writes.
pub(crate) const LATEST: i64 = 5;

/// Migration steps; step `i` takes the schema from version `i` to `i + 1`.
const MIGRATIONS: &[&str] = &[V1, V2, V3, V4, V5];

const V1: &str = r#"
CREATE TABLE streams (
    stream_key INTEGER PRIMARY KEY,
    kind       TEXT    NOT NULL,
    entity_id  INTEGER NOT NULL,
    version    INTEGER NOT NULL,
    UNIQUE (kind, entity_id)
);

CREATE TABLE events (
    position       INTEGER PRIMARY KEY,
    stream_key     INTEGER NOT NULL REFERENCES streams (stream_key),
    version        INTEGER NOT NULL,
    type           TEXT    NOT NULL,
    schema_version INTEGER NOT NULL,
    payload        TEXT    NOT NULL,
    occurred_at    TEXT    NOT NULL,
    recorded_at    TEXT    NOT NULL,
    actor          TEXT    NOT NULL,
    causation      INTEGER,
    correlation    INTEGER NOT NULL,
    hash           BLOB    NOT NULL,
    UNIQUE (stream_key, version)
);

CREATE VIEW event_log AS
SELECT e.position,
       s.kind || '-' || s.entity_id AS stream,
       e.version, e.type, e.schema_version, e.payload, e.occurred_at, e.recorded_at,
       e.actor, e.causation, e.correlation, lower(hex(e.hash)) AS hash
FROM events e JOIN streams s USING (stream_key);
"#;

/// Version 2: the rules runtime's cursor. Not a projection: replay leaves it alone, since the
/// robots' effects it stands for are already in the log.
const V2: &str = r#"
CREATE TABLE rule_cursor (
    name     TEXT PRIMARY KEY,
    position INTEGER NOT NULL
);
"#;

/// Version 3: the `match_keys` and `inbox_read` projection tables. Projection tables are
/// derived data, so the step itself changes nothing: [`migrate`] then finds them missing (in a
/// database written before them) and recreates every projection table empty, at checkpoint 0,
/// for the writer's catch-up to rebuild from the log. A reader of a version-2 database knows
/// from the version alone that it must be upgraded.
const V3: &str = "-- match_keys, inbox_read: created by the projection check that follows";

/// Version 4: the list queries' indexes — B-tree indexes on the entity tables' filter
/// columns, and the `search_text` (with its FTS5 index `search_fts`) and `field_values`
/// projection tables. Like version 3, the step changes nothing itself: the new tables are
/// missing, so [`migrate`] recreates every projection table (with the new indexes) and the
/// catch-up rebuilds them from the log.
const V4: &str = "-- search_text, search_fts, field_values, endpoints, deliveries and the new indexes: created by the projection check that follows";

/// Version 5: the service's remembered responses (`Idempotency-Key`, kept at least a day). Not
/// a projection: replay leaves it alone (see `responses.rs`).
const V5: &str = r#"
CREATE TABLE IF NOT EXISTS responses (
    scope        TEXT    NOT NULL,
    key          TEXT    NOT NULL,
    request_hash TEXT    NOT NULL,
    status       INTEGER NOT NULL,
    body         TEXT    NOT NULL,
    at           TEXT    NOT NULL,
    PRIMARY KEY (scope, key)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS responses_at ON responses (at);
"#;

/// Refuses databases that are not leadflow's (or are from a newer leadflow).
pub(crate) fn check_identity(conn: &Connection, path: Option<&Path>) -> Result<(), Error> {
    let app: i64 = conn.query_row("PRAGMA application_id", [], |r| r.get(0))?;
    let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    let tables: i64 = conn.query_row("SELECT count(*) FROM sqlite_schema", [], |r| r.get(0))?;
    if app != APPLICATION_ID && (app != 0 || tables > 0) {
        return Err(Error::NotLeadflow {
            path: path.map(Path::to_owned).unwrap_or_default(),
        });
    }
    if version > LATEST {
        return Err(Error::NewerSchema {
            found: version,
            supported: LATEST,
        });
    }
    Ok(())
}

/// The projection tables missing from the database.
fn missing_tables(conn: &Connection) -> Result<Vec<&'static str>, Error> {
    let mut stmt =
        conn.prepare("SELECT 1 FROM sqlite_schema WHERE type = 'table' AND name = ?1")?;
    let mut missing = Vec::new();
    for t in crate::project::TABLES {
        if !stmt.exists([t.name])? {
            missing.push(t.name);
        }
    }
    Ok(missing)
}

/// Indexes on the log's own tables added after version 5 without a schema version of their
/// own (an older leadflow still writes such a database, SQLite keeping them up to date),
/// created by the first write open where missing: `timer_events`, the events that set a
/// timer, by stream (a stream's pending timers, looked up at every stage move, without
/// reading each of its events). Its condition is written with `=` and `OR`: SQLite evaluates
/// a partial index's condition at every insert, and an `IN` list there built a temporary
/// table each time.
pub(crate) const LOG_INDEXES: &[(&str, &str)] = &[(
    "timer_events",
    "CREATE INDEX IF NOT EXISTS main.timer_events ON events (stream_key, position) \
     WHERE type = 'deadline.scheduled' OR type = 'robots.delayed' OR type = 'task.created';",
)];

/// Whether a projection index is missing (one a newer leadflow added to a table it already
/// had, such as the journals' indexes by employee, kind and position: made on the table as
/// it is, with no version step and no rebuild, so older leadflows and read-only copies still
/// read the database).
fn missing_indexes(conn: &Connection) -> Result<bool, Error> {
    let mut stmt =
        conn.prepare_cached("SELECT 1 FROM sqlite_schema WHERE type = 'index' AND name = ?1")?;
    for name in crate::project::index_names().chain(LOG_INDEXES.iter().map(|(n, _)| *n)) {
        if !stmt.exists([name])? {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Whether opening for writing must take the write lock to migrate the schema or create
/// projection tables or indexes (read without a write transaction).
pub(crate) fn needs_migration(conn: &Connection) -> Result<bool, Error> {
    let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    Ok(version != LATEST || !missing_tables(conn)?.is_empty() || missing_indexes(conn)?)
}

/// Checks that a database opened read-only can be read as it is: the current schema, every
/// projection table, projections up to date with the log (one read snapshot).
pub(crate) fn check_readable(conn: &Connection, path: &Path) -> Result<(), Error> {
    let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    let needs = |why: String| Error::NeedsUpgrade {
        path: path.to_owned(),
        why,
    };
    if version < LATEST {
        return Err(needs(format!(
            "has schema version {version}, older than this leadflow's ({LATEST}), and must be migrated"
        )));
    }
    let missing = missing_tables(conn)?;
    if !missing.is_empty() {
        return Err(needs(format!(
            "lacks the projection table{} {} and must have its projections rebuilt",
            if missing.len() == 1 { "" } else { "s" },
            missing.join(", ")
        )));
    }
    let (checkpoint, head): (i64, i64) = conn.query_row(
        "SELECT (SELECT position FROM projection_state WHERE id = 1), (SELECT coalesce(max(position), 0) FROM events)",
        [],
        |r| Ok((r.get::<_, Option<i64>>(0)?.unwrap_or(0), r.get(1)?)),
    )?;
    if checkpoint < head {
        tracing::warn!(
            "{}: the projections are built up to position {checkpoint} of {head}; what is shown may be out of date (a command that writes, or `leadflow replay`, brings them up to date)",
            path.display()
        );
    }
    Ok(())
}

/// Brings the schema up to [`LATEST`], one transaction per step, and creates missing
/// projection tables. A projection table added by a newer leadflow starts empty while the
/// others are built up to the log's end, so when any is missing all are recreated (checkpoint
/// 0) and rebuilt by the caller's catch-up.
/// Each step's write transaction comes from `begin` (the store's `BEGIN IMMEDIATE`).
pub(crate) fn migrate<'c>(begin: &dyn Fn() -> Result<Transaction<'c>, Error>) -> Result<(), Error> {
    loop {
        let tx = begin()?;
        let version: i64 = tx.query_row("PRAGMA user_version", [], |r| r.get(0))?;
        if version > LATEST {
            return Err(Error::NewerSchema {
                found: version,
                supported: LATEST,
            });
        }
        if version == LATEST {
            // Projection tables are derived data, recreated whenever missing.
            let missing = missing_tables(&tx)?;
            let all = missing.len() == crate::project::TABLES.len();
            if !missing.is_empty() && !all {
                tracing::info!(
                    missing = %missing.join(", "),
                    "projection tables missing: rebuilding the projections"
                );
                crate::project::recreate(&tx, "main")?;
            } else {
                crate::project::ensure(&tx, "main")?;
            }
            for (_, ddl) in LOG_INDEXES {
                tx.execute_batch(ddl)?;
            }
            tx.commit()?;
            return Ok(());
        }
        tracing::info!(
            from = version,
            to = version + 1,
            "migrating the database schema"
        );
        tx.execute_batch(MIGRATIONS[version as usize])?;
        tx.execute_batch(&format!(
            "PRAGMA application_id = {APPLICATION_ID}; PRAGMA user_version = {};",
            version + 1
        ))?;
        tx.commit()?;
    }
}
