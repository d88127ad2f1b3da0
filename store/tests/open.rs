//! Opening a database: for reading without the write lock, for writing with a wait that says
//! what it waits for, and the files that are not leadflow databases, each refused by name.

use leadflow_store::{Error, Options, Store};
use leadflow_testkit::Db;
use std::path::Path;
use std::time::Duration;

fn created(dir: &Path) -> std::path::PathBuf {
    let path = dir.join("leadflow.db");
    drop(Store::open(&path, &Options::default()).unwrap());
    path
}

fn existing() -> Options {
    Options {
        create: false,
        busy_timeout: Duration::from_millis(300),
        ..Options::default()
    }
}

#[test]
fn a_writer_that_cannot_get_the_write_lock_says_it_timed_out_waiting_for_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = created(dir.path());
    let other = Db::at(&path).hold_write_lock();
    // Opening for writing takes no lock when nothing needs migrating.
    let mut store = Store::open(&path, &existing()).unwrap();
    let err = store
        .write(chrono::Utc::now(), |_tx| Ok::<_, Error>(()))
        .unwrap_err();
    assert!(matches!(err, Error::Locked { .. }), "{err:?}");
    let text = err.to_string();
    assert!(
        text.contains("waiting for the write lock")
            && text.contains(&path.display().to_string())
            && text.contains("another leadflow process"),
        "{text}"
    );
    // Reading goes on meanwhile.
    let reader = Store::open_read(&path, &existing()).unwrap();
    assert_eq!(reader.last_position().unwrap(), 0);
    other.commit();
    store
        .write(chrono::Utc::now(), |_tx| Ok::<_, Error>(()))
        .unwrap();
}

#[test]
fn a_read_of_a_database_that_needs_migrating_says_so_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = created(dir.path());
    Db::at(&path).tamper("DROP TABLE rule_cursor; PRAGMA user_version = 1;");
    let err = Store::open_read(&path, &existing()).unwrap_err();
    assert!(matches!(err, Error::NeedsUpgrade { .. }), "{err:?}");
    assert!(err.to_string().contains("schema version 1"), "{err}");
    let version: i64 = Db::at(&path).value("PRAGMA user_version");
    assert_eq!(version, 1, "a read migrated the database");
    // A writer migrates it.
    drop(Store::open(&path, &existing()).unwrap());
    Store::open_read(&path, &existing()).unwrap();
}

#[test]
fn a_missing_projection_table_is_rebuilt_by_a_writer_and_refused_by_a_reader() {
    let dir = tempfile::tempdir().unwrap();
    let path = created(dir.path());
    Db::at(&path).tamper("DROP TABLE escalations");
    let err = Store::open_read(&path, &existing()).unwrap_err();
    assert!(err.to_string().contains("escalations"), "{err}");
    let mut store = Store::open(&path, &existing()).unwrap();
    assert!(store.verify_projections(&mut |_| {}).unwrap().is_empty());
}

#[test]
fn an_empty_file_is_not_adopted_as_a_database() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("empty.db");
    std::fs::write(&path, b"").unwrap();
    for err in [
        Store::open_read(&path, &existing()).unwrap_err(),
        Store::open(&path, &existing()).unwrap_err(),
    ] {
        assert!(matches!(err, Error::Empty { .. }), "{err:?}");
        assert!(
            err.to_string().contains("empty.db is empty")
                && err.to_string().contains("leadflow init"),
            "{err}"
        );
    }
    assert_eq!(std::fs::metadata(&path).unwrap().len(), 0);
}

#[test]
fn a_file_that_is_not_a_database_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notes.db");
    std::fs::write(
        &path,
        "these are not SQLite pages, just text that is long enough ".repeat(100),
    )
    .unwrap();
    for err in [
        Store::open_read(&path, &existing()).unwrap_err(),
        Store::open(&path, &existing()).unwrap_err(),
    ] {
        let text = err.to_string();
        assert!(
            text.contains(&path.display().to_string()) && text.contains("not a database"),
            "{text}"
        );
    }
}

fn sqlite_error(extended: i32) -> Error {
    Error::Sqlite(rusqlite::Error::SqliteFailure(
        rusqlite::ffi::Error::new(extended),
        None,
    ))
}

#[test]
fn a_full_disk_and_io_errors_name_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("leadflow.db");
    let full = sqlite_error(rusqlite::ffi::SQLITE_FULL).in_file(&path);
    assert!(matches!(full, Error::DiskFull { .. }), "{full:?}");
    let text = full.to_string();
    assert!(
        text.contains("is full") && text.contains(&path.display().to_string()),
        "{text}"
    );
    // The -shm file could not grow (here the disk has room, so it is an I/O error, named).
    let shm = sqlite_error(rusqlite::ffi::SQLITE_IOERR_SHMSIZE)
        .in_file(&path)
        .to_string();
    assert!(
        shm.contains(&format!("{}-shm", path.display())) && shm.contains("shared-memory"),
        "{shm}"
    );
    let write = sqlite_error(rusqlite::ffi::SQLITE_IOERR_WRITE)
        .in_file(&path)
        .to_string();
    assert!(write.contains(&path.display().to_string()), "{write}");
}

#[test]
fn write_with_stamps_the_clock_but_never_before_the_logs_last_recorded_at() {
    use leadflow_engine::command::NewLead;
    use leadflow_engine::{Command, ManualClock};
    use leadflow_store::{LogFilter, parse_time};
    use leadflow_testkit::{config, ivanov, meta};
    let config = config();
    let t = |s: &str| parse_time(s).unwrap();
    let lead = || {
        Command::CreateLead(NewLead {
            name: Some("Ivan".into()),
            source: Some("web_form".into()),
            ..Default::default()
        })
    };
    let meta = meta(t("2026-03-02T09:00:00Z"), ivanov());
    let mut store = leadflow_testkit::memory_store();
    let clock = ManualClock::new(t("2026-03-02T10:00:00Z"));
    store
        .write_with(&clock, |tx| tx.execute(&config, &lead(), &meta))
        .unwrap();
    // A simulation's clock ahead of the wall clock, then the wall clock again.
    store
        .write(t("2026-03-02T12:00:00Z"), |tx| {
            tx.execute(&config, &lead(), &meta)
        })
        .unwrap();
    store
        .write_with(&clock, |tx| tx.execute(&config, &lead(), &meta))
        .unwrap();
    let stamps: Vec<_> = store
        .read_log(&LogFilter::default(), 0, 10)
        .unwrap()
        .into_iter()
        .map(|e| parse_time(&e.recorded_at).unwrap())
        .collect();
    assert_eq!(
        stamps,
        [
            t("2026-03-02T10:00:00Z"),
            t("2026-03-02T12:00:00Z"),
            t("2026-03-02T12:00:00Z")
        ]
    );
}
