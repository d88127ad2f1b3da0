//! The store's backup module on its own: an export imported into a staged database and
//! installed is the same log (line for line, same head) with projections that verify; a
//! staged database that fails or is dropped leaves nothing beside its target; the export
//! line keeps the payload's exact text, which the hash covers.

use leadflow_store::{BackupError, Staged, Store, export_line, parse_export_line};
use leadflow_testkit::{Db, config, create_lead, t0};

/// A database with a few leads; its export, one line per event.
fn exported() -> (Db, Vec<String>) {
    let db = Db::new();
    let config = config();
    let mut store = db.open();
    for phone in ["+79120000001", "+79120000002", "+79120000003"] {
        create_lead(&mut store, &config, t0(), phone);
    }
    let mut lines = Vec::new();
    store
        .export_log(
            &mut |l| {
                lines.push(l.to_owned());
                Ok(())
            },
            &mut |_| {},
        )
        .unwrap();
    (db, lines)
}

fn names_in(dir: &std::path::Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[test]
fn an_imported_export_is_the_same_log_and_verifies() {
    let (db, lines) = exported();
    assert_eq!(lines.len(), 3);
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("new.db");
    let mut staged = Staged::empty(&target).unwrap();
    let head = staged
        .import(&mut lines.iter().cloned().map(Ok), &mut |_| {})
        .unwrap();
    let checked = staged.check(&mut |_| {}).unwrap();
    assert_eq!(checked.problems(), Vec::<String>::new());
    staged.install(None).unwrap();
    assert_eq!(names_in(dir.path()), ["new.db"]);
    let copy = Store::open(&target, &Db::options()).unwrap();
    assert_eq!(copy.head().unwrap(), head);
    assert_eq!(copy.head().unwrap(), db.open().head().unwrap());
    let mut again = Vec::new();
    copy.export_log(
        &mut |l| {
            again.push(l.to_owned());
            Ok(())
        },
        &mut |_| {},
    )
    .unwrap();
    assert_eq!(again, lines);
}

#[test]
fn a_failed_import_leaves_nothing_beside_its_target() {
    let (_db, mut lines) = exported();
    lines[2] = lines[2].replacen("\"version\":1", "\"version\":2", 1);
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("new.db");
    let mut staged = Staged::empty(&target).unwrap();
    let err = staged
        .import(&mut lines.iter().cloned().map(Ok), &mut |_| {})
        .unwrap_err();
    assert!(
        matches!(&err, BackupError::Line { line: 3, why } if why.contains("out of order")),
        "{err}"
    );
    drop(staged);
    assert_eq!(names_in(dir.path()), Vec::<String>::new());
}

#[test]
fn the_export_line_keeps_the_payload_text_the_hash_covers() {
    let (db, lines) = exported();
    let store = db.open();
    let stored = store
        .read_log(&Default::default(), 0, 10)
        .unwrap()
        .into_iter()
        .next()
        .unwrap();
    let line = export_line(&stored).unwrap();
    assert_eq!(line, lines[0]);
    assert!(
        line.contains(&format!("\"payload\":{},", stored.payload)),
        "{line}"
    );
    assert_eq!(parse_export_line(&line).unwrap(), stored);
}

/// A restore checks the backup against the target's head as it read it before its checks; a
/// process that wrote to the target meanwhile (and exited, so nothing holds it open) makes
/// the install refuse, and the target keeps its writes.
#[test]
fn an_install_refuses_a_target_written_to_after_its_head_was_read() {
    let (db, _) = exported();
    let backup = tempfile::tempdir().unwrap();
    let copy = backup.path().join("copy.db");
    db.open().backup_to(&copy).unwrap();
    let seen = db.open().head().unwrap();
    let mut staged = Staged::restore(&copy, db.path()).unwrap();
    assert_eq!(
        staged.check(&mut |_| {}).unwrap().problems(),
        Vec::<String>::new()
    );
    // Meanwhile another command writes one more lead and exits.
    {
        let mut store = db.open();
        create_lead(&mut store, &config(), t0(), "+79120000004");
    }
    let now = db.open().head().unwrap();
    match staged.install(seen) {
        Err(e @ BackupError::Changed { .. }) => {
            let text = e.to_string();
            assert!(
                text.contains("changed while") && text.contains("nothing was replaced"),
                "{text}"
            );
        }
        other => panic!("expected a refusal for the write meanwhile, got {other:?}"),
    }
    assert_eq!(db.open().head().unwrap(), now, "the target keeps its write");
}
