//! The store's backup module on its own: an export imported into a staged database and
//! installed is the same log (line for line, same head) with projections that verify; a
//! staged database that fails or is dropped leaves nothing beside its target; the export
//! line keeps the payload's exact text, which the hash covers; an export ends with a line
//! that counts its events and names its head, so one cut at a line boundary is refused.

use leadflow_store::{
    BackupError, END_PREFIX, Staged, Store, export_end_line, export_line, parse_export_line,
};
use leadflow_testkit::{Db, config, create_lead, t0};

/// A database with a few leads; its export, one line per event and the end line.
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
    assert_eq!(lines.len(), 3 + 1, "three events and the end line");
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

/// Imports `lines` into a fresh staged database: the error's line and text.
fn import_error(lines: &[String]) -> (usize, String) {
    let dir = tempfile::tempdir().unwrap();
    let mut staged = Staged::empty(&dir.path().join("new.db")).unwrap();
    match staged.import(&mut lines.iter().cloned().map(Ok), &mut |_| {}) {
        Err(BackupError::Line { line, why }) => (line, why),
        other => panic!("expected a bad line, got {other:?}"),
    }
}

#[test]
fn an_export_ends_with_its_event_count_and_head_and_one_cut_short_is_refused() {
    let (db, lines) = exported();
    let head = db.open().head().unwrap();
    let last = lines.last().unwrap();
    assert!(last.starts_with(END_PREFIX), "{last}");
    assert_eq!(*last, export_end_line(head));
    let end: serde_json::Value = serde_json::from_str(last).unwrap();
    assert_eq!(end["end"]["events"], lines.len() as i64 - 1);
    assert_eq!(end["end"]["head"], leadflow_store::to_hex(&head.unwrap().1));
    // Cut at a line boundary: every event line is sound, the end is missing.
    let n = lines.len();
    let (line, why) = import_error(&lines[..n - 2]);
    assert_eq!(line, n - 2);
    assert!(why.contains("without its end line"), "{why}");
    // An end line that counts more events than came before it, or names another head.
    let mut fewer = lines[..n - 2].to_vec();
    fewer.push(last.clone());
    let (line, why) = import_error(&fewer);
    assert_eq!(line, n - 1);
    assert!(why.contains("lines are missing"), "{why}");
    let mut other = lines.clone();
    other[n - 1] = export_end_line(Some((n as i64 - 1, [7; 32])));
    let (_, why) = import_error(&other);
    assert!(why.contains("is not the last event's hash"), "{why}");
    // Anything after the end line but blank lines (an editor's or a copy's last newline).
    let mut more = lines.clone();
    more.push(String::new());
    more.push(lines[0].clone());
    assert_eq!(import_error(&more).0, n + 2);
    let mut blank = lines.clone();
    blank.push("  ".into());
    let dir = tempfile::tempdir().unwrap();
    let mut staged = Staged::empty(&dir.path().join("new.db")).unwrap();
    assert_eq!(
        staged
            .import(&mut blank.into_iter().map(Ok), &mut |_| {})
            .unwrap(),
        head
    );
    // An empty file is not an export; the empty log's export is its end line alone.
    assert!(import_error(&[]).1.contains("the file is empty"));
    let dir = tempfile::tempdir().unwrap();
    let mut staged = Staged::empty(&dir.path().join("new.db")).unwrap();
    let empty = staged
        .import(&mut std::iter::once(Ok(export_end_line(None))), &mut |_| {})
        .unwrap();
    assert_eq!(empty, None);
}
