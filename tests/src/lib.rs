//! What only leadflow's end-to-end tests and benchmarks share: a tiny seeded random number
//! generator (so runs are reproducible without the `rand` crate), for the crash tests and the
//! `crash_writer` child process, and raw SQLite set up like leadflow's, for the raw sides of
//! the benchmarks. Everything else the tests share is in `leadflow-testkit`.

/// A small, fast, seeded pseudo-random generator (SplitMix64). Good enough to pick kill points
/// and commands; not for anything secret.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator whose sequence is fixed by `seed`.
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `lo..=hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        assert!(lo <= hi, "empty range {lo}..={hi}");
        lo + self.next_u64() % (hi - lo + 1)
    }

    /// One element of a non-empty slice.
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.range(0, items.len() as u64 - 1) as usize]
    }
}

/// Raw rusqlite set up the way leadflow sets up its own connections, for the raw sides of the
/// benchmarks: both sides of every figure run with the same SQLite settings, so a ratio measures
/// the work leadflow does, not a different page cache or checkpoint policy.
///
/// The values mirror `Store::open` and `Tx::commit` (store/src/lib.rs, store/src/log.rs);
/// `raw_settings_match_a_default_store` below fails if the store's change.
pub mod raw {
    /// The raw sides use this rusqlite (the same build as the store's), so the crates whose
    /// benchmarks have a raw side need no rusqlite of their own.
    pub use rusqlite;

    use leadflow_store::{Options, Synchronous};
    use rusqlite::Connection;
    use std::path::Path;

    /// WAL pages after which a commit checkpoints (SQLite's default, leadflow's for commands).
    pub const CHECKPOINT_PAGES: i64 = 1000;
    /// The checkpoint threshold leadflow commits a bulk transaction with (64 MiB of WAL).
    pub const BULK_CHECKPOINT_PAGES: i64 = 16_384;
    /// A transaction of at least this many rows is a bulk one (leadflow: events appended).
    pub const BULK_ROWS: usize = 256;

    fn pragma(s: Synchronous) -> &'static str {
        match s {
            Synchronous::Full => "FULL",
            Synchronous::Normal => "NORMAL",
            Synchronous::Off => "OFF",
        }
    }

    /// Opens `path` with leadflow's settings: WAL, `synchronous`, leadflow's page cache,
    /// temporary tables in memory, the WAL checkpoint threshold and journal size limit.
    pub fn open(path: &Path, synchronous: Synchronous) -> rusqlite::Result<Connection> {
        let conn = Connection::open(path)?;
        conn.query_row("PRAGMA journal_mode = WAL", [], |_| Ok(()))?;
        conn.execute_batch(&format!(
            "PRAGMA synchronous = {}; PRAGMA cache_size = -{}; PRAGMA temp_store = MEMORY;
             PRAGMA wal_autocheckpoint = {CHECKPOINT_PAGES}; PRAGMA journal_size_limit = {};",
            pragma(synchronous),
            Options::default().cache_kib,
            BULK_CHECKPOINT_PAGES * 4096
        ))?;
        Ok(conn)
    }

    /// Commits the open transaction (begun with `BEGIN`) of `rows` rows as leadflow commits
    /// one of as many events: a bulk one with the larger checkpoint threshold, restored after.
    pub fn commit(conn: &Connection, rows: usize) -> rusqlite::Result<()> {
        if rows >= BULK_ROWS {
            conn.pragma_update(None, "wal_autocheckpoint", BULK_CHECKPOINT_PAGES)?;
            conn.execute_batch("COMMIT")?;
            conn.pragma_update(None, "wal_autocheckpoint", CHECKPOINT_PAGES)
        } else {
            conn.execute_batch("COMMIT")
        }
    }

    /// Removes a database and its -wal and -shm files, those that exist.
    pub fn remove_db(path: &Path) {
        for suffix in ["", "-wal", "-shm"] {
            let mut p = path.as_os_str().to_owned();
            p.push(suffix);
            let _ = std::fs::remove_file(std::path::PathBuf::from(p));
        }
    }

    /// The settings, for the reports.
    pub fn describe(synchronous: Synchronous) -> String {
        format!(
            "WAL, synchronous={}, {} MiB page cache, temp_store=MEMORY, WAL checkpoint every {} pages \
             ({} pages when a transaction writes {} events or rows or more), journal_size_limit {} MiB",
            pragma(synchronous),
            Options::default().cache_kib / 1024,
            CHECKPOINT_PAGES,
            BULK_CHECKPOINT_PAGES,
            BULK_ROWS,
            BULK_CHECKPOINT_PAGES * 4096 / (1024 * 1024)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rng_is_reproducible_and_stays_in_range() {
        let mut a = Rng::new(7);
        let mut b = Rng::new(7);
        for _ in 0..1000 {
            let x = a.range(3, 9);
            assert_eq!(x, b.range(3, 9));
            assert!((3..=9).contains(&x));
        }
        assert_ne!(Rng::new(1).next_u64(), Rng::new(2).next_u64());
    }

    #[test]
    fn raw_settings_match_a_default_store() {
        let dir = tempfile::tempdir().unwrap();
        let store =
            leadflow_store::Store::open(dir.path().join("ours.db"), &Default::default()).unwrap();
        let conn = raw::open(
            &dir.path().join("raw.db"),
            leadflow_store::Synchronous::Full,
        )
        .unwrap();
        let settings = store.settings().unwrap();
        assert_eq!(settings.len(), 6);
        for (pragma, ours) in settings {
            let raw: rusqlite::types::Value = conn
                .query_row(&format!("PRAGMA {pragma}"), [], |r| r.get(0))
                .unwrap();
            assert_eq!(
                leadflow_store::sql_text(&raw),
                ours,
                "PRAGMA {pragma} differs"
            );
        }
    }
}
