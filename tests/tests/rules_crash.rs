//! Exactly-once rule processing across crashes: a child process (`rule_worker`) runs the rules
//! over 300 new leads, each rule firing three robots, and is killed with SIGKILL several times
//! mid-way; a last run finishes. Every robot effect must then be in the log exactly once per
//! lead — none lost to a kill, none repeated by a restart — and the log must be sound.

use leadflow_engine::{EntityKind, StreamId};
use leadflow_store::{Options, Store};
use leadflow_testkit::{Db, assert_log_is_sound};
use leadflow_tests::Rng;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

const LEADS: i64 = 300;

fn worker(db: &std::path::Path, args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_rule_worker"));
    c.arg(db).args(args).stdin(Stdio::null());
    c
}

#[test]
fn killed_rule_processing_resumes_without_losing_or_repeating_an_effect() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("crash.db");
    let status = worker(&db, &["seed", &LEADS.to_string()]).status().unwrap();
    assert!(status.success());
    let seed = std::env::var("LEADFLOW_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5EED_u64);
    let mut rng = Rng::new(seed);
    let mut kills = 0;
    for _ in 0..6 {
        let mut child = worker(&db, &["process"])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let lines = rng.range(1, 6) as usize;
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        let mut finished = false;
        for _ in 0..lines {
            line.clear();
            if out.read_line(&mut line).unwrap() == 0 || line.trim() == "processed 0" {
                finished = true;
                break;
            }
        }
        child.kill().unwrap();
        child.wait().unwrap();
        if finished {
            break;
        }
        kills += 1;
    }
    assert!(
        kills >= 3,
        "seed {seed}: the worker finished before it could be killed enough"
    );
    let status = worker(&db, &["process"])
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());

    let store = Store::open(&db, &Options::default()).unwrap();
    for id in 1..=LEADS {
        let types: Vec<String> = store
            .read_stream(StreamId::new(EntityKind::Lead, id))
            .unwrap()
            .into_iter()
            .map(|e| e.event_type)
            .collect();
        for ty in ["lead.assigned", "notification.queued"] {
            let n = types.iter().filter(|t| *t == ty).count();
            assert_eq!(n, 1, "seed {seed}: lead-{id} has {n} × {ty}: {types:?}");
        }
    }
    let tables = Db::at(&db);
    let tasks: Vec<(i64, i64)> =
        tables.rows("SELECT lead_id, count(*) FROM tasks GROUP BY lead_id ORDER BY lead_id");
    assert_eq!(tasks.len() as i64, LEADS, "seed {seed}: a lead has no task");
    assert!(
        tasks.iter().all(|(_, n)| *n == 1),
        "seed {seed}: a lead has two tasks"
    );
    let cursor: i64 = tables.value("SELECT position FROM rule_cursor WHERE name = 'rules'");
    assert_eq!(Some(cursor), store.head().unwrap().map(|(p, _)| p));
    let mut store = store;
    assert_log_is_sound(&mut store);
}
