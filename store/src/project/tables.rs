//! The projection tables' definitions: one [`Table`] per table, with its one column list
//! (name and SQL declaration), its key and its indexes, from which the DDL and the write
//! statements are derived. The entity tables (`leads`, `deals`, `contacts`, `companies`,
//! `tasks`) are defined in [`super::rows`], since their columns also say which model field
//! they hold; the side tables are defined here.
//!
//! The list of tables, which the DDL creates in order, is `project::TABLES`. Every statement
//! names its schema (`main`, or `fresh` for the scratch copy that `verify`
//! builds), so the same code maintains the live tables and rebuilds the comparison copy.

use crate::error::Error;
use rusqlite::{Connection, OptionalExtension};
use std::collections::HashMap;
use std::sync::{Mutex, OnceLock, PoisonError};

/// One column of a projection table.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Column {
    /// Its name.
    pub(crate) name: &'static str,
    /// Its SQL type and constraints, as the `CREATE TABLE` writes them.
    pub(crate) decl: &'static str,
    /// For entity tables: whether it is part of the row's key (see `rows::IndexKey`): an
    /// update that leaves every key column and match key as stored does not set these columns,
    /// so SQLite leaves the indexes on them alone.
    pub(crate) key: bool,
}

impl Column {
    /// A column of a side table.
    const fn new(name: &'static str, decl: &'static str) -> Column {
        Column {
            name,
            decl,
            key: false,
        }
    }
}

/// A projection table.
#[derive(Debug)]
pub(crate) struct Table {
    /// Its name.
    pub(crate) name: &'static str,
    /// Its columns, in table order: the order of the DDL, of `SELECT *` (which `verify`
    /// compares) and of every statement's parameters.
    pub(crate) columns: &'static [Column],
    /// A primary key over several columns, written after them.
    pub(crate) primary_key: Option<&'static str>,
    /// Whether the table is `WITHOUT ROWID`.
    pub(crate) without_rowid: bool,
    /// Statements run after its `CREATE TABLE` (its indexes), `{s}` standing for the schema.
    pub(crate) then: &'static str,
}

/// Every stage an entity has been in: one row per visit, opened by the event that entered it
/// (`position`) and closed when the entity leaves it.
pub(crate) static STAGE_HISTORY: Table = Table {
    name: "stage_history",
    columns: &[
        Column::new("position", "INTEGER PRIMARY KEY"),
        Column::new("kind", "TEXT    NOT NULL"),
        Column::new("entity_id", "INTEGER NOT NULL"),
        Column::new("pipeline", "TEXT    NOT NULL"),
        Column::new("stage", "TEXT    NOT NULL"),
        Column::new("entered_at", "TEXT    NOT NULL"),
        Column::new("left_at", "TEXT"),
    ],
    primary_key: None,
    without_rowid: false,
    then: "CREATE UNIQUE INDEX IF NOT EXISTS {s}.stage_history_open ON stage_history (kind, entity_id) WHERE left_at IS NULL;
CREATE INDEX IF NOT EXISTS {s}.stage_history_by_entity ON stage_history (kind, entity_id);
",
};

/// Pending timers (deadlines, delayed robots, a task's due time), keyed by due time and the
/// position of the event that set them.
///
/// No index by stream: firing in due order then deletes rows that sit together, while an
/// index by stream would be updated at random places. A stream's pending timers are found
/// from its scheduling events instead (`timers::pending`, through the log's partial index
/// `timer_events`). Older databases had `timers_by_stream`.
pub(crate) static TIMERS: Table = Table {
    name: "timers",
    columns: &[
        Column::new("due_at", "TEXT    NOT NULL"),
        Column::new("id", "INTEGER NOT NULL"),
        Column::new("what", "TEXT    NOT NULL"),
        Column::new("kind", "TEXT    NOT NULL"),
        Column::new("entity_id", "INTEGER NOT NULL"),
        Column::new("name", "TEXT"),
        Column::new("stage", "TEXT"),
        Column::new("survive_move", "INTEGER NOT NULL DEFAULT 0"),
    ],
    primary_key: Some("due_at, id"),
    without_rowid: true,
    then: "DROP INDEX IF EXISTS {s}.timers_by_stream;\n",
};

/// The incident journal (`incident.recorded`).
pub(crate) static INCIDENTS: Table = Table {
    name: "incidents",
    columns: &[
        Column::new("position", "INTEGER PRIMARY KEY"),
        Column::new("at", "TEXT    NOT NULL"),
        Column::new("kind", "TEXT    NOT NULL"),
        Column::new("employee", "TEXT"),
        Column::new("rule", "TEXT"),
        Column::new("stream", "TEXT    NOT NULL"),
        Column::new("text", "TEXT    NOT NULL"),
    ],
    primary_key: None,
    without_rowid: false,
    then: "CREATE INDEX IF NOT EXISTS {s}.incidents_by_employee ON incidents (employee, kind, at);
CREATE INDEX IF NOT EXISTS {s}.incidents_since_escalation ON incidents (employee, kind, position);
CREATE INDEX IF NOT EXISTS {s}.incidents_by_stream ON incidents (stream, position);
",
};

/// The escalation journal (`escalation.recorded`).
pub(crate) static ESCALATIONS: Table = Table {
    name: "escalations",
    columns: &[
        Column::new("position", "INTEGER PRIMARY KEY"),
        Column::new("at", "TEXT    NOT NULL"),
        Column::new("employee", "TEXT    NOT NULL"),
        Column::new("manager", "TEXT"),
        Column::new("kind", "TEXT    NOT NULL"),
        Column::new("count", "INTEGER NOT NULL"),
        Column::new("window", "TEXT    NOT NULL"),
        Column::new("rule", "TEXT    NOT NULL"),
        Column::new("stream", "TEXT    NOT NULL"),
    ],
    primary_key: None,
    without_rowid: false,
    then: "CREATE INDEX IF NOT EXISTS {s}.escalations_by_employee ON escalations (employee, kind, position);
",
};

/// Notifications queued to the inbox channel.
pub(crate) static INBOX: Table = Table {
    name: "inbox",
    columns: &[
        Column::new("position", "INTEGER PRIMARY KEY"),
        Column::new("at", "TEXT    NOT NULL"),
        Column::new("employee", "TEXT    NOT NULL"),
        Column::new("priority", "TEXT    NOT NULL"),
        Column::new("text", "TEXT    NOT NULL"),
        Column::new("rule", "TEXT"),
        Column::new("stream", "TEXT    NOT NULL"),
    ],
    primary_key: None,
    without_rowid: false,
    then: "CREATE INDEX IF NOT EXISTS {s}.inbox_by_employee ON inbox (employee, position);
CREATE INDEX IF NOT EXISTS {s}.inbox_by_stream ON inbox (stream, position);
",
};

/// Notifications read (`notification.read`): `id` is the position of the
/// `notification.queued` event, `position` that of the event that marked it read.
pub(crate) static INBOX_READ: Table = Table {
    name: "inbox_read",
    columns: &[
        Column::new("id", "INTEGER PRIMARY KEY"),
        Column::new("at", "TEXT    NOT NULL"),
        Column::new("position", "INTEGER NOT NULL"),
    ],
    primary_key: None,
    without_rowid: false,
    then: "",
};

/// Notifications queued to the other channels, for delivery.
pub(crate) static OUTBOX: Table = Table {
    name: "outbox",
    columns: &[
        Column::new("position", "INTEGER PRIMARY KEY"),
        Column::new("at", "TEXT    NOT NULL"),
        Column::new("channel", "TEXT    NOT NULL"),
        Column::new("target", "TEXT"),
        Column::new("employee", "TEXT"),
        Column::new("text", "TEXT    NOT NULL"),
        Column::new("key", "TEXT    NOT NULL"),
        Column::new("stream", "TEXT    NOT NULL"),
    ],
    primary_key: None,
    without_rowid: false,
    then: "",
};

/// Since when an idle rule has seen an entity idle (`idle.detected`).
pub(crate) static IDLE_MARKS: Table = Table {
    name: "idle_marks",
    columns: &[
        Column::new("kind", "TEXT    NOT NULL"),
        Column::new("entity_id", "INTEGER NOT NULL"),
        Column::new("rule", "TEXT    NOT NULL"),
        Column::new("since", "TEXT    NOT NULL"),
    ],
    primary_key: Some("kind, entity_id, rule"),
    without_rowid: true,
    then: "",
};

/// The last firing of each scheduled (cron) rule (`schedule.fired`).
pub(crate) static SCHEDULES: Table = Table {
    name: "schedules",
    columns: &[
        Column::new("rule", "TEXT PRIMARY KEY"),
        Column::new("due_at", "TEXT NOT NULL"),
    ],
    primary_key: None,
    without_rowid: true,
    then: "",
};

/// External robot requests (`robot.requested`) without an outcome (`robot.completed`) yet:
/// what runs after the commit, and again when its process died.
pub(crate) static REQUESTS: Table = Table {
    name: "requests",
    columns: &[
        Column::new("position", "INTEGER PRIMARY KEY"),
        Column::new("kind", "TEXT    NOT NULL"),
        Column::new("entity_id", "INTEGER NOT NULL"),
        Column::new("robot", "TEXT    NOT NULL"),
        Column::new("key", "TEXT    NOT NULL"),
        Column::new("claimed_until", "TEXT"),
    ],
    primary_key: None,
    without_rowid: false,
    then: "",
};

/// Webhook endpoints (`endpoint.added`, `.removed`, `.disabled`): one row per `endpoint-N`
/// stream; `events` is the JSON list of its patterns.
pub(crate) static ENDPOINTS: Table = Table {
    name: "endpoints",
    columns: &[
        Column::new("id", "INTEGER PRIMARY KEY"),
        Column::new("url", "TEXT    NOT NULL"),
        Column::new("events", "TEXT    NOT NULL"),
        Column::new("format", "TEXT    NOT NULL"),
        Column::new("secret", "TEXT    NOT NULL"),
        Column::new("state", "TEXT    NOT NULL"),
        Column::new("reason", "TEXT"),
        Column::new("added_at", "TEXT    NOT NULL"),
        Column::new("position", "INTEGER NOT NULL"),
    ],
    primary_key: None,
    without_rowid: false,
    then: "",
};

/// Messages to deliver and how their delivery went: one row per outbox notification
/// (`notification.queued` on the webhook or e-mail channel, in its entity's stream) and per
/// event taken for an endpoint (`delivery.queued`, in the endpoint's stream); `id` is the
/// position of that event, and the message's delivery events are in the same stream, so the
/// row is a function of one stream. `lane` is what order is kept within (the target and the
/// stream of the delivered event). `state`: pending, succeeded, failed, dropped, cancelled
/// (its endpoint went). The indexes serve the worker: the due pending rows by `next_at`, and
/// for each the earlier pending one of its lane.
pub(crate) static DELIVERIES: Table = Table {
    name: "deliveries",
    columns: &[
        Column::new("id", "INTEGER PRIMARY KEY"),
        Column::new("webhook_id", "TEXT    NOT NULL"),
        Column::new("stream", "TEXT    NOT NULL"),
        Column::new("lane", "TEXT    NOT NULL"),
        Column::new("channel", "TEXT    NOT NULL"),
        Column::new("endpoint", "INTEGER"),
        Column::new("target", "TEXT"),
        Column::new("event", "INTEGER NOT NULL"),
        Column::new("event_type", "TEXT    NOT NULL"),
        Column::new("state", "TEXT    NOT NULL"),
        Column::new("attempts", "INTEGER NOT NULL"),
        Column::new("next_at", "TEXT"),
        Column::new("queued_at", "TEXT    NOT NULL"),
        Column::new("round_at", "TEXT    NOT NULL"),
        Column::new("last_status", "INTEGER"),
        Column::new("last_error", "TEXT"),
        Column::new("done_at", "TEXT"),
    ],
    primary_key: None,
    without_rowid: false,
    then: "CREATE INDEX IF NOT EXISTS {s}.deliveries_due ON deliveries (next_at, id) WHERE state = 'pending';
CREATE INDEX IF NOT EXISTS {s}.deliveries_lane ON deliveries (lane, id) WHERE state = 'pending';
CREATE INDEX IF NOT EXISTS {s}.deliveries_by_state ON deliveries (state, id);
CREATE INDEX IF NOT EXISTS {s}.deliveries_by_endpoint ON deliveries (endpoint, event) WHERE endpoint IS NOT NULL;
",
};

/// The phones, e-mails and INNs of leads, contacts and companies, normalised, for finding
/// them by any of these (see `match_keys`).
pub(crate) static MATCH_KEYS: Table = Table {
    name: "match_keys",
    columns: &[
        Column::new("what", "TEXT    NOT NULL"),
        Column::new("value", "TEXT    NOT NULL"),
        Column::new("kind", "TEXT    NOT NULL"),
        Column::new("entity_id", "INTEGER NOT NULL"),
    ],
    primary_key: Some("what, value, kind, entity_id"),
    without_rowid: true,
    then: "",
};

/// API tokens (`token.created`, `token.revoked`): who holds which role, since when, made and
/// revoked by whom. Only the secret's hash is stored; requests find their token by it.
pub(crate) static TOKENS: Table = Table {
    name: "tokens",
    columns: &[
        Column::new("name", "TEXT    NOT NULL"),
        Column::new("stream", "TEXT    NOT NULL PRIMARY KEY"),
        Column::new("role", "TEXT    NOT NULL"),
        Column::new("employee", "TEXT"),
        Column::new("secret_hash", "TEXT    NOT NULL"),
        Column::new("created_at", "TEXT    NOT NULL"),
        Column::new("created_by", "TEXT    NOT NULL"),
        Column::new("revoked_at", "TEXT"),
        Column::new("revoked_by", "TEXT"),
    ],
    primary_key: None,
    without_rowid: false,
    then: "CREATE INDEX IF NOT EXISTS {s}.tokens_by_hash ON tokens (secret_hash);
CREATE INDEX IF NOT EXISTS {s}.tokens_by_name ON tokens (name);
",
};

/// The searchable text of every entity (title, name, phones, e-mails; see `search`): the
/// content of the FTS5 table `search_fts` (trigram tokenizer, so any substring of three
/// characters or more is an index lookup), which the triggers keep in step with it. `id` is
/// the entity id times 8 plus its kind's code (`search::key`).
pub(crate) static SEARCH_TEXT: Table = Table {
    name: "search_text",
    columns: &[
        Column::new("id", "INTEGER PRIMARY KEY"),
        Column::new("kind", "TEXT    NOT NULL"),
        Column::new("entity_id", "INTEGER NOT NULL"),
        Column::new("title", "TEXT    NOT NULL"),
        Column::new("name", "TEXT    NOT NULL"),
        Column::new("phones", "TEXT    NOT NULL"),
        Column::new("emails", "TEXT    NOT NULL"),
    ],
    primary_key: None,
    without_rowid: false,
    then: "CREATE VIRTUAL TABLE IF NOT EXISTS {s}.search_fts USING fts5(title, name, phones, emails, content='search_text', content_rowid='id', tokenize='trigram');
CREATE TRIGGER IF NOT EXISTS {s}.search_text_inserted AFTER INSERT ON search_text BEGIN
    INSERT INTO search_fts (rowid, title, name, phones, emails) VALUES (new.id, new.title, new.name, new.phones, new.emails);
END;
CREATE TRIGGER IF NOT EXISTS {s}.search_text_deleted AFTER DELETE ON search_text BEGIN
    INSERT INTO search_fts (search_fts, rowid, title, name, phones, emails) VALUES ('delete', old.id, old.title, old.name, old.phones, old.emails);
END;
CREATE TRIGGER IF NOT EXISTS {s}.search_text_updated AFTER UPDATE ON search_text BEGIN
    INSERT INTO search_fts (search_fts, rowid, title, name, phones, emails) VALUES ('delete', old.id, old.title, old.name, old.phones, old.emails);
    INSERT INTO search_fts (rowid, title, name, phones, emails) VALUES (new.id, new.title, new.name, new.phones, new.emails);
END;
",
};

/// The FTS5 index over [`SEARCH_TEXT`]: dropped and recreated with it.
pub(crate) const SEARCH_FTS: &str = "search_fts";

/// The scalar custom fields of leads, deals, contacts and companies (text, numbers, yes/no as
/// 1/0; see `search`), so a custom-field filter is an index lookup. `value` has no type
/// affinity: numbers stay numbers, text stays text.
pub(crate) static FIELD_VALUES: Table = Table {
    name: "field_values",
    columns: &[
        Column::new("kind", "TEXT    NOT NULL"),
        Column::new("field", "TEXT    NOT NULL"),
        Column::new("value", "BLOB    NOT NULL"),
        Column::new("entity_id", "INTEGER NOT NULL"),
    ],
    primary_key: Some("kind, field, value, entity_id"),
    without_rowid: true,
    then: "",
};

/// The position up to which the projections are built (one row).
pub(crate) static PROJECTION_STATE: Table = Table {
    name: "projection_state",
    columns: &[
        Column::new("id", "INTEGER PRIMARY KEY CHECK (id = 1)"),
        Column::new("position", "INTEGER NOT NULL"),
    ],
    primary_key: None,
    without_rowid: false,
    then: "INSERT OR IGNORE INTO {s}.projection_state (id, position) VALUES (1, 0);\n",
};

/// A statement derived from a table's column list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Op {
    /// `INSERT INTO … (every column) VALUES (?1, …)`.
    Insert,
    /// The same, `INSERT OR IGNORE`.
    InsertOrIgnore,
    /// The same, `INSERT OR REPLACE`.
    InsertOrReplace,
    /// `UPDATE … SET` every column but the first `WHERE` first `= ?1`, parameters in column
    /// order.
    Update,
    /// The same, leaving out the key columns (their parameters are still numbered).
    UpdateUnkeyed,
    /// `SELECT` every column `WHERE` first `= ?1`.
    Select,
    /// `UPDATE … SET version = version + ?1 WHERE` first `= ?2`.
    AddVersion,
    /// `DELETE FROM … WHERE` first `= ?1`.
    Delete,
}

impl Table {
    /// The table's `CREATE TABLE` and the statements that go with it, for `schema`.
    pub(crate) fn ddl(&self, schema: &str) -> String {
        let width = self.columns.iter().map(|c| c.name.len()).max().unwrap_or(0);
        let mut lines: Vec<String> = self
            .columns
            .iter()
            .map(|c| format!("    {:<width$} {}", c.name, c.decl))
            .collect();
        lines.extend(self.primary_key.map(|k| format!("    PRIMARY KEY ({k})")));
        format!(
            "CREATE TABLE IF NOT EXISTS {schema}.{} (\n{}\n){};\n{}",
            self.name,
            lines.join(",\n"),
            if self.without_rowid {
                " WITHOUT ROWID"
            } else {
                ""
            },
            self.then.replace("{s}", schema)
        )
    }

    /// The names of the indexes its DDL creates.
    pub(crate) fn index_names(&self) -> impl Iterator<Item = &'static str> {
        const MARK: &str = "INDEX IF NOT EXISTS {s}.";
        let then: &'static str = self.then;
        then.match_indices(MARK).filter_map(move |(i, _)| {
            let rest = &then[i + MARK.len()..];
            rest.split_whitespace().next()
        })
    }

    /// The text of statement `op` on this table in `schema`, built on first use and kept for
    /// the life of the process (a few dozen short strings at most), so a write does not format
    /// SQL.
    pub(crate) fn sql(&self, schema: &'static str, op: Op) -> &'static str {
        cached(Key::Table(schema, self.name, op), || self.build(schema, op))
    }

    fn build(&self, s: &str, op: Op) -> String {
        let name = self.name;
        let param = |i: usize| format!("?{}", i + 1);
        let names = || {
            self.columns
                .iter()
                .map(|c| c.name)
                .collect::<Vec<_>>()
                .join(", ")
        };
        let first = self.columns[0].name;
        let insert = |verb: &str| {
            format!(
                "{verb} INTO {s}.{name} ({}) VALUES ({})",
                names(),
                (0..self.columns.len())
                    .map(param)
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        };
        match op {
            Op::Insert => insert("INSERT"),
            Op::InsertOrIgnore => insert("INSERT OR IGNORE"),
            Op::InsertOrReplace => insert("INSERT OR REPLACE"),
            Op::Update | Op::UpdateUnkeyed => format!(
                "UPDATE {s}.{name} SET {} WHERE {first} = ?1",
                self.columns
                    .iter()
                    .enumerate()
                    .skip(1)
                    .filter(|(_, c)| op == Op::Update || !c.key)
                    .map(|(i, c)| format!("{} = {}", c.name, param(i)))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            Op::Select => format!("SELECT {} FROM {s}.{name} WHERE {first} = ?1", names()),
            Op::AddVersion => {
                format!("UPDATE {s}.{name} SET version = version + ?1 WHERE {first} = ?2")
            }
            Op::Delete => format!("DELETE FROM {s}.{name} WHERE {first} = ?1"),
        }
    }
}

/// The text of a fixed statement whose `{s}` stands for the schema, for `schema`, formatted
/// once (see [`Table::sql`]).
pub(crate) fn sql(schema: &'static str, template: &'static str) -> &'static str {
    cached(Key::Text(schema, template), || {
        template.replace("{s}", schema)
    })
}

/// What a cached statement text is built from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Key {
    Table(&'static str, &'static str, Op),
    Text(&'static str, &'static str),
}

fn cached(key: Key, build: impl FnOnce() -> String) -> &'static str {
    type Texts = HashMap<Key, &'static str>;
    static TEXTS: OnceLock<Mutex<Texts>> = OnceLock::new();
    let mut texts = TEXTS
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    texts
        .entry(key)
        .or_insert_with(|| Box::leak(build().into_boxed_str()))
}

/// The position up to which the projections in `schema` are built.
pub(crate) fn checkpoint(conn: &Connection, schema: &'static str) -> Result<i64, Error> {
    Ok(conn
        .prepare_cached(sql(
            schema,
            "SELECT position FROM {s}.projection_state WHERE id = 1",
        ))?
        .query_row([], |r| r.get(0))
        .optional()?
        .unwrap_or(0))
}

/// Moves the checkpoint of `schema`.
pub(crate) fn set_checkpoint(
    conn: &Connection,
    schema: &'static str,
    position: i64,
) -> Result<(), Error> {
    conn.prepare_cached(sql(
        schema,
        "UPDATE {s}.projection_state SET position = ?1 WHERE id = 1",
    ))?
    .execute([position])?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::project::rows::LEADS;

    /// Every table's statements name its columns in table order: a parameter's number is its
    /// column's place, whichever statement binds it.
    #[test]
    fn statements_are_derived_from_the_column_list() {
        assert_eq!(
            TIMERS.build("main", Op::Insert),
            "INSERT INTO main.timers (due_at, id, what, kind, entity_id, name, stage, survive_move) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)"
        );
        assert_eq!(
            LEADS.table.build("fresh", Op::UpdateUnkeyed),
            "UPDATE fresh.leads SET title = ?2, name = ?3, phones = ?4, emails = ?5, source = ?6, \
             client_type = ?7, stage_reason = ?11, fields = ?12, comment = ?13, contact_id = ?14, \
             company_id = ?15, created_at = ?16, updated_at = ?17, stage_entered_at = ?18, \
             version = ?19 WHERE id = ?1"
        );
        assert_eq!(
            SCHEDULES.ddl("main"),
            "CREATE TABLE IF NOT EXISTS main.schedules (\n    rule   TEXT PRIMARY KEY,\n    due_at TEXT NOT NULL\n) WITHOUT ROWID;\n"
        );
    }

    #[test]
    fn a_tables_index_names_are_read_from_its_ddl_and_a_fresh_database_has_them_all() {
        let names: Vec<&str> = INCIDENTS.index_names().collect();
        assert_eq!(
            names,
            [
                "incidents_by_employee",
                "incidents_since_escalation",
                "incidents_by_stream"
            ]
        );
        let store = crate::Store::open_in_memory().unwrap();
        let mut n = 0;
        for name in crate::project::index_names() {
            let found: i64 = store
                .conn
                .query_row(
                    "SELECT count(*) FROM sqlite_schema WHERE type = 'index' AND name = ?1",
                    [name],
                    |r| r.get(0),
                )
                .unwrap();
            assert_eq!(found, 1, "{name}");
            n += 1;
        }
        assert!(n > 20, "{n} indexes");
        assert!(!crate::schema::needs_migration(&store.conn).unwrap());
    }
}
