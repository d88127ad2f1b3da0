//! The robots and the runtime reach the database only through the engine's workspace traits:
//! every seed scenario passes on the in-memory backend (`leadflow_engine::memory`) as it does
//! on SQLite, and both backends end with the same log — the same events, in the same streams,
//! in the same order, with the same payloads, actors and causes.

use leadflow_engine::memory::Memory;
use leadflow_engine::stored::RecordedEvent;
use leadflow_engine::workspace::Backend;
use leadflow_robots::scenario::{Scenario, run_in};
use leadflow_store::Store;
use std::path::Path;

/// Everything of an event a backend decides, leaving out the SQLite-only hash and the
/// wall-clock `recorded_at`.
fn essence(e: &RecordedEvent) -> String {
    format!(
        "{} {} v{} {} {} {} cause={:?} corr={} {}",
        e.position,
        e.stream,
        e.version,
        e.event_type,
        e.occurred_at,
        e.actor,
        e.causation,
        e.correlation,
        e.payload
    )
}

fn log<D: Backend>(db: &D) -> Vec<String> {
    let mut out = Vec::new();
    loop {
        let page = db.read_after(out.len() as i64, 500).unwrap();
        if page.is_empty() {
            return out;
        }
        out.extend(page.iter().map(essence));
    }
}

fn on_both(folder: &str) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../examples/scenarios")
        .join(folder);
    let scenario = Scenario::load(&path).unwrap_or_else(|e| panic!("{folder}: {e}"));
    let mut memory = Memory::new();
    let outcome = run_in(&scenario, &mut memory).unwrap_or_else(|e| panic!("{folder}: {e}"));
    let listed: Vec<String> = outcome.mismatches.iter().map(ToString::to_string).collect();
    assert!(
        outcome.passed(),
        "{folder} on the in-memory backend: {} mismatches\n\n{}",
        listed.len(),
        listed.join("\n\n")
    );
    let mut store = Store::open_in_memory().unwrap();
    let on_sqlite = run_in(&scenario, &mut store).unwrap();
    assert!(on_sqlite.passed(), "{folder} on SQLite");
    let (a, b) = (log(&memory), log(&store));
    assert!(!a.is_empty());
    for (i, (m, s)) in a.iter().zip(&b).enumerate() {
        assert_eq!(m, s, "{folder}: the logs part at event {}", i + 1);
    }
    assert_eq!(a.len(), b.len(), "{folder}: the logs differ in length");
    assert_eq!(
        outcome.report, on_sqlite.report,
        "{folder}: the runtime's counts"
    );
}

#[test]
fn scenario_a_runs_alike_on_memory_and_sqlite() {
    on_both("a-two-line-sales");
}

#[test]
fn scenario_b_runs_alike_on_memory_and_sqlite() {
    on_both("b-qualification");
}

#[test]
fn scenario_c_runs_alike_on_memory_and_sqlite() {
    on_both("c-conversion");
}

#[test]
fn scenario_d_runs_alike_on_memory_and_sqlite() {
    on_both("d-head-of-sales");
}

#[test]
fn scenario_e_runs_alike_on_memory_and_sqlite() {
    on_both("e-reanimation");
}
