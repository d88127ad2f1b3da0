//! A database in a temporary file that a test reads with SQL over a connection of its own.
//!
//! The store never lends its connection to a test: a test that inspects tables opens its
//! [`Store`] on a [`Db`] (`db.open()`) and reads with [`Db::count`], [`Db::rows`] and the
//! like, each on a fresh read-only connection to the same file, which sees every committed
//! write. [`Db::tamper`] writes behind the store's back, for the tests of what it detects.

use leadflow_store::{Options, Store, Synchronous};
use rusqlite::types::FromSql;
use rusqlite::{Connection, OpenFlags, Row};
use std::path::{Path, PathBuf};
use tempfile::TempDir;

/// The path of a database to read with SQL: `leadflow.db` in a temporary folder of its own
/// ([`Db::new`]; the folder and all in it are removed when the `Db` is dropped), or a file
/// something else made ([`Db::at`]).
pub struct Db {
    /// Held so that the folder lives as long as the `Db`.
    _dir: Option<TempDir>,
    path: PathBuf,
}

impl Default for Db {
    fn default() -> Self {
        Db::new()
    }
}

impl Db {
    /// A new temporary folder; the database file is created by the first [`Db::open`].
    pub fn new() -> Db {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("leadflow.db");
        Db {
            _dir: Some(dir),
            path,
        }
    }

    /// The database at `path` (the binary's, say), left in place when the `Db` is dropped.
    pub fn at(path: impl Into<PathBuf>) -> Db {
        Db {
            _dir: None,
            path: path.into(),
        }
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The folder the file is in.
    pub fn dir(&self) -> &Path {
        self.path.parent().unwrap()
    }

    /// The options tests open the file with: the defaults, but never an fsync (a throwaway
    /// database need not survive power loss).
    pub fn options() -> Options {
        Options {
            synchronous: Synchronous::Off,
            ..Options::default()
        }
    }

    /// Opens (creating it the first time) a store on the file, for reading and writing.
    pub fn open(&self) -> Store {
        Store::open(&self.path, &Db::options())
            .unwrap_or_else(|e| panic!("{}: {e}", self.path.display()))
    }

    /// A read-only connection to the file.
    fn reader(&self) -> Connection {
        Connection::open_with_flags(
            &self.path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .unwrap_or_else(|e| panic!("{}: {e}", self.path.display()))
    }

    /// The first column of the first row a query returns (`SELECT count(*) …`); panics if
    /// there is no row.
    pub fn value<T: FromSql>(&self, sql: &str) -> T {
        self.reader()
            .query_row(sql, [], |r| r.get(0))
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
    }

    /// The number a `SELECT count(*) …` (or any one-integer query) returns.
    pub fn count(&self, sql: &str) -> i64 {
        self.value(sql)
    }

    /// The first column of every row, in the query's order.
    pub fn column<T: FromSql>(&self, sql: &str) -> Vec<T> {
        self.rows::<(T,)>(sql).into_iter().map(|(v,)| v).collect()
    }

    /// Every row as a tuple of its columns (`(String, Option<i64>)`), in the query's order.
    pub fn rows<T>(&self, sql: &str) -> Vec<T>
    where
        T: for<'a> TryFrom<&'a Row<'a>, Error = rusqlite::Error>,
    {
        let conn = self.reader();
        let mut stmt = conn.prepare(sql).unwrap_or_else(|e| panic!("{sql}: {e}"));
        stmt.query_map([], |r| T::try_from(r))
            .and_then(Iterator::collect)
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
    }

    /// The first row a query returns, as a tuple of its columns; panics if there is none.
    pub fn row<T>(&self, sql: &str) -> T
    where
        T: for<'a> TryFrom<&'a Row<'a>, Error = rusqlite::Error>,
    {
        self.reader()
            .query_row(sql, [], |r| T::try_from(r))
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
    }

    /// Every row of a query with named parameters (`:since`…), as JSON objects keyed by column
    /// name, in the query's order. `params` maps each name to a JSON string or null; a name
    /// the query does not use is left out, as an auditor would not set it.
    pub fn records(
        &self,
        sql: &str,
        params: &serde_json::Map<String, serde_json::Value>,
    ) -> Vec<serde_json::Map<String, serde_json::Value>> {
        use rusqlite::types::ValueRef;
        use serde_json::Value;
        let conn = self.reader();
        let mut stmt = conn.prepare(sql).unwrap_or_else(|e| panic!("{sql}: {e}"));
        for (name, v) in params {
            if let Some(i) = stmt.parameter_index(name).unwrap() {
                let bound = match v {
                    Value::Null => stmt.raw_bind_parameter(i, rusqlite::types::Null),
                    Value::String(s) => stmt.raw_bind_parameter(i, s.as_str()),
                    other => stmt.raw_bind_parameter(i, other.to_string()),
                };
                bound.unwrap_or_else(|e| panic!("{name}: {e}"));
            }
        }
        let names: Vec<String> = stmt.column_names().map(str::to_owned).collect();
        let mut out = Vec::new();
        let mut rows = stmt.raw_query();
        while let Some(r) = rows.next().unwrap_or_else(|e| panic!("{sql}: {e}")) {
            let mut m = serde_json::Map::new();
            for (i, n) in names.iter().enumerate() {
                let v = match r.get_ref(i).unwrap() {
                    ValueRef::Null => Value::Null,
                    ValueRef::Integer(x) => Value::from(x),
                    ValueRef::Real(x) => Value::from(x),
                    ValueRef::Text(t) => Value::from(String::from_utf8_lossy(t).into_owned()),
                    ValueRef::Blob(b) => Value::from(format!("{b:?}")),
                };
                m.insert(n.clone(), v);
            }
            out.push(m);
        }
        out
    }

    /// Takes the write lock (`BEGIN IMMEDIATE`) on a connection of its own, as another
    /// process's writer would, and holds it until the [`WriteLock`] is committed or dropped.
    pub fn hold_write_lock(&self) -> WriteLock {
        let conn = Connection::open(&self.path).unwrap();
        conn.execute_batch("BEGIN IMMEDIATE").unwrap();
        WriteLock { conn }
    }

    /// Runs `sql` (one statement or several) on a read-write connection of its own, behind
    /// the store's back: the tests of what the store detects edit its tables this way.
    pub fn tamper(&self, sql: &str) {
        Connection::open(&self.path)
            .and_then(|c| c.execute_batch(sql))
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }

    /// Hands `f` a read-write connection of its own with foreign keys off, as an attacker with
    /// write access to the file would have: for tampering that needs parameters or several
    /// steps ([`Db::tamper`] runs plain SQL).
    pub fn attack(&self, f: impl FnOnce(&Connection)) {
        let conn = Connection::open(&self.path).unwrap();
        conn.execute_batch("PRAGMA foreign_keys = OFF").unwrap();
        f(&conn);
    }
}

/// Another process's write transaction on a database, held until [`WriteLock::commit`] or
/// until dropped (which rolls it back).
pub struct WriteLock {
    conn: Connection,
}

impl WriteLock {
    /// The one value a query returns, read inside the held transaction.
    pub fn value<T: FromSql>(&self, sql: &str) -> T {
        self.conn
            .query_row(sql, [], |r| r.get(0))
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
    }

    /// Commits the transaction, releasing the lock.
    pub fn commit(self) {
        self.conn.execute_batch("COMMIT").unwrap();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_see_each_committed_write_and_tampering_reaches_the_file() {
        let db = Db::new();
        let config = crate::config();
        let mut store = db.open();
        assert_eq!(db.count("SELECT count(*) FROM events"), 0);
        crate::create_lead(&mut store, &config, crate::t0(), "+79120000001");
        assert_eq!(db.count("SELECT count(*) FROM events"), 1);
        assert_eq!(
            db.column::<String>("SELECT title FROM leads"),
            ["Countertop"]
        );
        let (id, phones): (i64, String) = db.row("SELECT id, phones FROM leads");
        assert_eq!((id, phones.contains("79120000001")), (1, true));
        db.tamper("UPDATE leads SET title = 'Edited'");
        assert!(!store.verify_projections(&mut |_| {}).unwrap().is_empty());
    }
}
