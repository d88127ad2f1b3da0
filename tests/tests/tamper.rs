//! Tampering: a log of 36 events is written through the store, then attacked with raw SQL on the
//! database file, one fresh database per attack. `verify_chain` must name the first position
//! that no longer verifies and report the last good one as its head.
//!
//! What the chain can and cannot reveal:
//! - an edited, deleted, moved or swapped row breaks the hash of that row (or leaves a hole in
//!   the positions), so it is found at its own position;
//! - a row slipped into the middle with a *correct* hash (the hash has no key, so an attacker
//!   can compute it) is found at the next row, whose position and predecessor changed;
//! - cutting off the newest rows, or replacing the whole log with a consistently re-hashed one,
//!   leaves a valid chain: only a head (position and hash) kept elsewhere reveals it. Here the
//!   chain's verdict and head are checked; that the real `leadflow verify --head POS:HASH`
//!   refuses such logs is tested on the binary in `cli/tests/verify_head.rs`.

use leadflow_engine::command::{NewCompany, NewContact, NewDeal, NewTask};
use leadflow_engine::{Command, StreamId};
use leadflow_store::{ChainReport, Hash, Options, Store};
use leadflow_testkit::Db;
use leadflow_testkit::rusqlite::{Connection, params};
use leadflow_testkit::{all_events, config, exec_as, ivanov, numbered_lead, t0};
use std::path::{Path, PathBuf};
use tempfile::TempDir;

/// Events in the log every attack starts from.
const EVENTS: i64 = 36;

/// Commands that each append exactly one event, so command `i` is at position `i + 1`.
fn commands() -> Vec<Command> {
    let mut c: Vec<Command> = (1..=12).map(numbered_lead).collect();
    c.push(Command::CreateContact(NewContact {
        name: "Olga Orlova".into(),
        phones: vec!["+7 915 111 22 33".into()],
        ..Default::default()
    }));
    c.push(Command::CreateCompany(NewCompany {
        name: "Granit LLC".into(),
        inn: Some("7707083893".into()),
        ..Default::default()
    }));
    for id in 1..=8 {
        let to = if id % 2 == 0 { "petrova" } else { "ivanov" };
        c.push(Command::AssignLead { id, to: to.into() });
    }
    for id in 1..=6 {
        c.push(Command::MoveLead {
            id,
            stage: "in_work".into(),
            reason: None,
        });
    }
    for id in 7..=12 {
        c.push(Command::UpdateLead {
            id,
            changes: [("comment".to_owned(), format!("call back, lead {id}").into())]
                .into_iter()
                .collect(),
        });
    }
    c.push(Command::CreateDeal(NewDeal {
        title: "Kitchen countertop".into(),
        amount: Some("150000".into()),
        contact: Some(1),
        lead: Some(3),
        ..Default::default()
    }));
    c.push(Command::CreateTask(NewTask {
        kind: "call".into(),
        title: "Call about the measurement".into(),
        assignee: "ivanov".into(),
        due_at: t0() + chrono::Duration::days(1),
        lead: Some(1),
        deal: None,
    }));
    c
}

/// Writes `cmds` to a new database at `path`, one minute apart, and returns the store.
fn write_log(path: &Path, cmds: &[Command]) -> Store {
    let config = config();
    let mut store = Store::open(path, &Options::default()).unwrap();
    for (i, cmd) in cmds.iter().enumerate() {
        let at = t0() + chrono::Duration::minutes(i as i64);
        let out = exec_as(&mut store, &config, ivanov(), at, cmd);
        assert_eq!(
            out.appended.map(|a| a.last_position),
            Some(i as i64 + 1),
            "{cmd:?} did not append exactly one event"
        );
    }
    store
}

/// A database holding the standard log, and the hash of every position (index 0 = position 1).
struct Fixture {
    _dir: TempDir,
    path: PathBuf,
    hashes: Vec<Hash>,
}

impl Fixture {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log.db");
        let mut store = write_log(&path, &commands());
        assert_eq!(store.last_position().unwrap(), EVENTS);
        leadflow_testkit::assert_log_is_sound(&mut store);
        let hashes = all_events(&store).iter().map(|e| e.hash).collect();
        Fixture {
            _dir: dir,
            path,
            hashes,
        }
    }

    fn hash(&self, position: i64) -> Hash {
        self.hashes[position as usize - 1]
    }

    fn head(&self) -> (i64, Hash) {
        (EVENTS, self.hash(EVENTS))
    }

    /// Runs raw SQL on the file, as an attacker with write access would.
    fn attack(&self, f: impl FnOnce(&Connection)) {
        Db::at(&self.path).attack(f);
    }

    fn open(&self) -> Store {
        Store::open(
            &self.path,
            &Options {
                create: false,
                ..Options::default()
            },
        )
        .unwrap()
    }

    fn verify(&self) -> ChainReport {
        self.open().verify_chain(&mut |_| {}).unwrap()
    }

    /// Asserts that verify names `position` as the first bad one, for the reason `why`.
    fn assert_named(&self, position: i64, why: &str) -> ChainReport {
        let report = self.verify();
        let problem = report
            .problem
            .clone()
            .unwrap_or_else(|| panic!("tampering at {position} went unnoticed: {report:?}"));
        assert_eq!(
            problem.position, position,
            "wrong position named: {problem:?}"
        );
        assert!(
            problem.why.contains(why),
            "expected '{why}' in: {}",
            problem.why
        );
        assert_eq!(report.events, position - 1, "events counted as good");
        report
    }

    /// Like [`Fixture::assert_named`], and the row before `position` (as originally written) is
    /// reported as the last good head.
    fn assert_detected_at(&self, position: i64, why: &str) {
        let report = self.assert_named(position, why);
        let good = position - 1;
        assert_eq!(
            report.head,
            (good > 0).then(|| (good, self.hash(good))),
            "the reported last good head is wrong"
        );
    }
}

/// Shifts every row at or after `from` one position up, leaving `from` free.
fn make_room(conn: &Connection, from: i64) {
    // Two steps, so the primary key never collides half-way through the update.
    conn.execute(
        "UPDATE events SET position = -(position + 1) WHERE position >= ?1",
        [from],
    )
    .unwrap();
    conn.execute(
        "UPDATE events SET position = -position WHERE position < 0",
        [],
    )
    .unwrap();
}

/// The stream key of `stream`, creating its head row at `version` if it has none.
fn stream_key(conn: &Connection, stream: &str, version: i64) -> i64 {
    let s: StreamId = stream.parse().unwrap();
    conn.execute(
        "INSERT OR IGNORE INTO streams (kind, entity_id, version) VALUES (?1, ?2, ?3)",
        params![s.kind.as_str(), s.id, version],
    )
    .unwrap();
    conn.query_row(
        "SELECT stream_key FROM streams WHERE kind = ?1 AND entity_id = ?2",
        params![s.kind.as_str(), s.id],
        |r| r.get(0),
    )
    .unwrap()
}

#[test]
fn an_untouched_log_verifies_and_reports_its_head() {
    let f = Fixture::new();
    let report = f.verify();
    assert_eq!(report.problem, None);
    assert_eq!(report.events, EVENTS);
    assert_eq!(report.head, Some(f.head()));
    assert_eq!(f.open().head().unwrap(), Some(f.head()));
}

#[test]
fn an_edited_payload_is_detected_at_its_position() {
    let f = Fixture::new();
    f.attack(|c| {
        let n = c
            .execute(
                "UPDATE events SET payload = json_set(payload, '$.title', 'Forged') WHERE position = 5",
                [],
            )
            .unwrap();
        assert_eq!(n, 1);
    });
    f.assert_detected_at(5, "hash mismatch");
}

#[test]
fn an_edit_to_any_hashed_column_is_detected_at_its_position() {
    let edits: &[(i64, &str)] = &[
        (
            1,
            "UPDATE events SET actor = 'employee:smirnova' WHERE position = ?1",
        ),
        (
            9,
            "UPDATE events SET occurred_at = '2025-12-31T23:59:59.000000Z' WHERE position = ?1",
        ),
        (
            17,
            "UPDATE events SET recorded_at = '2026-03-02T09:00:00.000001Z' WHERE position = ?1",
        ),
        (
            20,
            "UPDATE events SET type = 'lead.updated' WHERE position = ?1",
        ),
        (
            23,
            "UPDATE events SET version = version + 100 WHERE position = ?1",
        ),
        (
            24,
            "UPDATE events SET schema_version = 2 WHERE position = ?1",
        ),
        (30, "UPDATE events SET causation = 1 WHERE position = ?1"),
        (31, "UPDATE events SET correlation = 1 WHERE position = ?1"),
        (
            35,
            "UPDATE events SET hash = zeroblob(32) WHERE position = ?1",
        ),
        (12, "UPDATE events SET hash = x'00' WHERE position = ?1"),
        (36, "UPDATE events SET payload = '{}' WHERE position = ?1"),
        // Moving an event to another stream (lead-5's event to lead-12, at a free version).
        (
            27,
            "UPDATE events SET stream_key = (SELECT stream_key FROM streams WHERE kind = 'lead' AND entity_id = 12), \
             version = 100 WHERE position = ?1",
        ),
    ];
    for (position, sql) in edits {
        let f = Fixture::new();
        f.attack(|c| assert_eq!(c.execute(sql, [position]).unwrap(), 1, "{sql}"));
        f.assert_detected_at(*position, "hash mismatch");
    }
}

#[test]
fn an_event_moved_to_an_unknown_stream_is_detected_at_its_position() {
    let f = Fixture::new();
    f.attack(|c| {
        c.execute(
            "UPDATE events SET stream_key = 9999 WHERE position = 14",
            [],
        )
        .unwrap();
    });
    f.assert_detected_at(14, "stream is unknown");
}

#[test]
fn a_malformed_hash_on_the_newest_row_is_reported_at_its_position() {
    let f = Fixture::new();
    f.attack(|c| {
        c.execute(
            "UPDATE events SET hash = x'00' WHERE position = ?1",
            [EVENTS],
        )
        .unwrap();
    });
    // Either verify runs and names the row, or the store refuses to open and names it.
    let named = match Store::open(&f.path, &Options::default()) {
        Ok(store) => store
            .verify_chain(&mut |_| {})
            .unwrap()
            .problem
            .map(|p| p.position),
        Err(leadflow_store::Error::Corrupt { position, .. }) => Some(position),
        Err(other) => panic!("unexpected error: {other}"),
    };
    assert_eq!(named, Some(EVENTS));
}

#[test]
fn a_deleted_row_is_detected_at_the_missing_position() {
    for position in [1, 20, EVENTS - 1] {
        let f = Fixture::new();
        f.attack(|c| {
            let n = c
                .execute("DELETE FROM events WHERE position = ?1", [position])
                .unwrap();
            assert_eq!(n, 1);
        });
        f.assert_detected_at(position, "missing");
    }
}

#[test]
fn a_row_inserted_in_the_middle_is_detected_at_its_position() {
    // The forger makes room at 15 and copies in a plausible row for a new lead, reusing the
    // hash of the row before it.
    let f = Fixture::new();
    f.attack(|c| {
        make_room(c, 15);
        let key = stream_key(c, "lead-13", 1);
        c.execute(
            "INSERT INTO events (position, stream_key, version, type, schema_version, payload, occurred_at, \
             recorded_at, actor, causation, correlation, hash) \
             SELECT 15, ?1, 1, type, schema_version, json_set(payload, '$.id', 13), occurred_at, recorded_at, \
             actor, causation, 15, hash FROM events WHERE position = 12",
            [key],
        )
        .unwrap();
    });
    f.assert_detected_at(15, "hash mismatch");
}

#[test]
fn a_correctly_hashed_row_inserted_in_the_middle_is_detected_at_the_next_position() {
    // The forger computes a valid hash for the inserted row: a twin database with the same
    // first 14 events, plus one forged lead at 15, does exactly that.
    let f = Fixture::new();
    let twin_path = f.path.with_file_name("twin.db");
    let mut forged = commands()[..14].to_vec();
    forged.push(numbered_lead(666));
    let twin = write_log(&twin_path, &forged);
    let twin_events = all_events(&twin);
    assert_eq!(
        twin_events[13].hash,
        f.hash(14),
        "the twin's history differs"
    );
    assert_eq!(twin_events[14].stream.to_string(), "lead-13");
    drop(twin);
    f.attack(|c| {
        make_room(c, 15);
        let key = stream_key(c, "lead-13", 1);
        c.execute("ATTACH DATABASE ?1 AS twin", [twin_path.to_str().unwrap()])
            .unwrap();
        c.execute(
            "INSERT INTO events (position, stream_key, version, type, schema_version, payload, occurred_at, \
             recorded_at, actor, causation, correlation, hash) \
             SELECT position, ?1, version, type, schema_version, payload, occurred_at, recorded_at, actor, \
             causation, correlation, hash FROM twin.events WHERE position = 15",
            [key],
        )
        .unwrap();
    });
    // Row 15 itself verifies; the original row 15, now at 16, no longer does.
    let report = f.assert_named(16, "hash mismatch");
    assert_eq!(report.head, Some((15, twin_events[14].hash)));
}

#[test]
fn a_row_inserted_past_the_end_with_a_gap_is_detected_at_the_gap() {
    // A comment for lead-7 at position 38, its stream head kept consistent.
    let f = Fixture::new();
    f.attack(|c| {
        c.execute(
            "INSERT INTO events (position, stream_key, version, type, schema_version, payload, occurred_at, \
             recorded_at, actor, causation, correlation, hash) \
             SELECT ?1, stream_key, version + 1, type, schema_version, payload, occurred_at, recorded_at, actor, \
             causation, ?1, hash FROM events WHERE position = 29",
            [EVENTS + 2],
        )
        .unwrap();
        c.execute(
            "UPDATE streams SET version = version + 1 WHERE stream_key = (SELECT stream_key FROM events WHERE position = 29)",
            [],
        )
        .unwrap();
    });
    f.assert_detected_at(EVENTS + 1, "missing");
}

#[test]
fn a_row_inserted_before_the_first_position_is_detected_at_its_position() {
    let f = Fixture::new();
    f.attack(|c| {
        let key = stream_key(c, "lead-13", 1);
        c.execute(
            "INSERT INTO events (position, stream_key, version, type, schema_version, payload, occurred_at, \
             recorded_at, actor, causation, correlation, hash) \
             SELECT 0, ?1, 1, type, schema_version, json_set(payload, '$.id', 13), occurred_at, recorded_at, \
             actor, causation, 0, hash FROM events WHERE position = 1",
            [key],
        )
        .unwrap();
    });
    let report = f.verify();
    let problem = report.problem.expect("a row at position 0 went unnoticed");
    assert_eq!(problem.position, 0, "{}", problem.why);
    assert_eq!(report.head, None);
}

#[test]
fn two_swapped_rows_are_detected_at_the_earlier_position() {
    const COLUMNS: &str = "stream_key, version, type, schema_version, payload, occurred_at, recorded_at, \
                           actor, causation, correlation, hash";
    for (a, b) in [(12, 25), (20, 21), (35, 36)] {
        let f = Fixture::new();
        f.attack(|c| {
            // Everything but the position changes places, hashes included; the (stream,
            // version) pair is parked on a free version while the rows trade contents.
            c.execute_batch(&format!(
                "CREATE TEMP TABLE swap AS SELECT position, {COLUMNS} FROM events WHERE position IN ({a}, {b});
                 UPDATE events SET version = -version WHERE position IN ({a}, {b});
                 UPDATE events SET ({COLUMNS}) = (SELECT {COLUMNS} FROM swap WHERE swap.position = {b}) WHERE position = {a};
                 UPDATE events SET ({COLUMNS}) = (SELECT {COLUMNS} FROM swap WHERE swap.position = {a}) WHERE position = {b};"
            ))
            .unwrap();
        });
        f.assert_detected_at(a, "hash mismatch");
    }
}

/// Deletes the newest `n` rows; a careful attacker also rewinds the per-stream heads.
fn truncate(conn: &Connection, n: i64, fix_stream_heads: bool) {
    conn.execute(
        "DELETE FROM events WHERE position > (SELECT max(position) FROM events) - ?1",
        [n],
    )
    .unwrap();
    if fix_stream_heads {
        conn.execute_batch(
            "UPDATE streams SET version = coalesce((SELECT max(version) FROM events e WHERE e.stream_key = streams.stream_key), 0);
             DELETE FROM streams WHERE version = 0;",
        )
        .unwrap();
    }
}

#[test]
fn truncated_newest_rows_pass_the_chain_but_not_the_kept_head() {
    let f = Fixture::new();
    let kept = f.open().head().unwrap().unwrap();
    assert_eq!(kept, f.head());
    f.attack(|c| truncate(c, 5, true));
    let report = f.verify();
    assert_eq!(report.problem, None, "the chain alone cannot see a cut");
    assert_eq!(report.events, EVENTS - 5);
    assert_eq!(report.head, Some((EVENTS - 5, f.hash(EVENTS - 5))));
    assert_ne!(report.head, Some(kept), "only the kept head shows the cut");
}

#[test]
fn truncated_and_regrown_rows_pass_the_chain_but_not_the_kept_head() {
    // After the cut, the attacker appends other events until the log is as long as before.
    let f = Fixture::new();
    let kept = f.head();
    f.attack(|c| truncate(c, 5, true));
    let config = config();
    let mut store = f.open();
    // The derived tables still hold the cut events; the attacker rebuilds them from the log.
    store.replay(&mut |_| {}).unwrap();
    for n in 0..5 {
        exec_as(&mut store, &config, ivanov(), t0(), &numbered_lead(700 + n));
    }
    assert_eq!(store.last_position().unwrap(), EVENTS);
    let report = store.verify_chain(&mut |_| {}).unwrap();
    assert_eq!(report.problem, None);
    assert_eq!(report.events, EVENTS);
    let (position, hash) = report.head.unwrap();
    assert_eq!(position, kept.0);
    assert_ne!(hash, kept.1, "only the kept head's hash shows the regrowth");
}

#[test]
fn truncation_without_rewinding_stream_heads_is_caught_by_the_stream_check() {
    let f = Fixture::new();
    f.attack(|c| truncate(c, 5, false));
    let report = f.verify();
    let problem = report.problem.expect("a careless cut went unnoticed");
    assert!(
        problem.why.contains("its head says version"),
        "{}",
        problem.why
    );
    assert!(
        (1..=EVENTS - 5).contains(&problem.position),
        "named position {} is not in the remaining log",
        problem.position
    );
}

#[test]
fn a_consistently_rehashed_history_passes_the_chain_but_not_the_kept_head() {
    // The strongest attacker rewrites one old event and recomputes every hash after it; here
    // by writing the altered history through leadflow itself.
    let f = Fixture::new();
    let kept = f.head();
    let mut altered = commands();
    altered[19] = Command::AssignLead {
        id: 6,
        to: "sidorov".into(),
    };
    let forged_path = f.path.with_file_name("forged.db");
    let forged = write_log(&forged_path, &altered);
    let report = forged.verify_chain(&mut |_| {}).unwrap();
    assert_eq!(report.problem, None);
    assert_eq!(report.events, EVENTS);
    let (position, hash) = report.head.unwrap();
    assert_eq!(position, kept.0);
    assert_ne!(hash, kept.1, "only the kept head's hash shows the rewrite");
}
