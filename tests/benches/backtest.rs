//! Benchmark of the audit's heavy reads on one log, in the same run: a replay (the projections
//! rebuilt, `leadflow replay`), a backtest with the live rule set (`leadflow backtest`; it must
//! find no difference), the state as of a position in the middle and near the end (`show
//! --as-of`: the log up to there copied into a scratch database, its projections rebuilt, an
//! entity read), and `replay --until mid --into FILE` (the same copy, durable). Prints the
//! figures; docs/BENCHMARKS-AUDIT.md is written by hand from a release run.
//!
//! ```text
//! cargo bench -p leadflow-tests --bench backtest                                    # 1,000,000 events
//! LEADFLOW_BENCH_EVENTS=20000 cargo bench --profile dev -p leadflow-tests --bench backtest
//! ```
//!
//! `LEADFLOW_BENCH_SANDBOX=memory` puts the backtest's sandbox in SQLite's memory instead of
//! the scratch file `leadflow backtest` uses.
//!
//! The log is made by seed scenarios A's and B's rules on a virtual clock: rounds of web leads
//! assigned round robin, taken in work (a qualification deadline, a notification), half of
//! them qualified by hand and sent to a transfer stage (a contact and a deal), the others left
//! to miss their deadline (a notification, an incident, an escalation, the deadline again) and
//! then sent to junk.

// A benchmark's output is its figures (stdout) and its progress (stderr).
#![allow(clippy::print_stdout, clippy::print_stderr)]

/// The binary's allocator (leadflow's `main.rs`), so the figures are the binary's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use chrono::{DateTime, Duration, Utc};
use leadflow_engine::command::{FieldInputs, NewLead};
use leadflow_engine::workspace::{Backend, Stamp, WorkspaceError};
use leadflow_engine::{Actor, Command, EntityKind, EventMeta, Source, StreamId};
use leadflow_robots::Runtime;
use leadflow_robots::backtest::{Options as BacktestOptions, run};
use leadflow_store::{Options, Store, Synchronous, history};
use leadflow_testkit::{config, monday_10};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::time::Instant;

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

const INTAKE: &str = include_str!("../../examples/scenarios/a-two-line-sales/rules/intake.toml");
const TRANSFER: &str =
    include_str!("../../examples/scenarios/a-two-line-sales/rules/transfer.toml");
const QUALIFICATION: &str =
    include_str!("../../examples/scenarios/b-qualification/rules/qualification.toml");

/// Leads per round.
const ROUND: i64 = 50;

fn rules() -> Runtime {
    let sources = [
        ("intake.toml", INTAKE),
        ("transfer.toml", TRANSFER),
        ("qualification.toml", QUALIFICATION),
    ]
    .map(|(p, t)| Source {
        path: p.into(),
        text: t.into(),
    });
    Runtime::load(config(), &sources).unwrap_or_else(|e| panic!("{e}"))
}

fn options(synchronous: Synchronous) -> Options {
    Options {
        synchronous,
        ..Options::default()
    }
}

fn command(
    store: &mut Store,
    rt: &Runtime,
    now: DateTime<Utc>,
    actor: Actor,
    cmd: Command,
) -> Result<()> {
    let meta = EventMeta::root(now, actor);
    let config = rt.config();
    match Backend::write(store, Stamp::At(now), |ws| ws.execute(config, &cmd, &meta)) {
        Ok(_) | Err(WorkspaceError::Rejected(_)) => {}
        Err(e) => return Err(e.into()),
    }
    rt.process(store, now)?;
    Ok(())
}

fn responsible(store: &Store, id: i64) -> Actor {
    match store.load(StreamId::new(EntityKind::Lead, id)) {
        Ok(Some(leadflow_engine::Entity::Lead(l))) => {
            Actor::Employee(l.responsible.unwrap_or_else(|| "ivanov".into()))
        }
        _ => Actor::Employee("ivanov".into()),
    }
}

/// Makes a log of at least `n` events in `path`.
fn make_log(path: &Path, n: i64) -> Result<(Store, DateTime<Utc>)> {
    leadflow_store::remove_database(path);
    let rt = rules();
    let mut store = Store::open(path, &options(Synchronous::Off))?;
    let mut now = monday_10();
    rt.activate(&mut store, now)?;
    let mut next = 1;
    let started = Instant::now();
    while store.last_position()? < n {
        let ids: Vec<i64> = (next..next + ROUND).collect();
        next += ROUND;
        for &id in &ids {
            let lead = NewLead {
                name: Some(format!("Client {id}")),
                phones: vec![format!("+7912{:07}", id % 10_000_000)],
                source: Some("web_form".into()),
                ..NewLead::default()
            };
            command(
                &mut store,
                &rt,
                now,
                Actor::System,
                Command::CreateLead(lead),
            )?;
        }
        now += Duration::minutes(10);
        for &id in &ids {
            let who = responsible(&store, id);
            let cmd = Command::MoveLead {
                id,
                stage: "in_work".into(),
                reason: None,
            };
            command(&mut store, &rt, now, who, cmd)?;
        }
        now += Duration::minutes(30);
        for &id in ids.iter().filter(|id| *id % 2 == 0) {
            let mut changes = FieldInputs::new();
            for (k, v) in [
                ("qualification", json!("qualified")),
                ("material", json!("granite")),
                ("dimensions", json!("600x3000")),
                ("budget", json!("120000")),
                ("urgency", json!("this_week")),
            ] {
                changes.insert(k.into(), v);
            }
            let who = responsible(&store, id);
            command(
                &mut store,
                &rt,
                now,
                who,
                Command::UpdateLead { id, changes },
            )?;
        }
        // The deadlines elapse: the qualified move on, the others miss theirs.
        let to = now + Duration::hours(30);
        rt.advance(&mut store, now, to)?;
        now = to;
        for &id in &ids {
            let who = responsible(&store, id);
            let (stage, reason) = if id % 2 == 0 {
                (
                    if id % 4 == 0 {
                        "transfer_goods"
                    } else {
                        "transfer_services"
                    },
                    None,
                )
            } else {
                ("junk", Some("no_answer".to_owned()))
            };
            let cmd = Command::MoveLead {
                id,
                stage: stage.into(),
                reason,
            };
            command(&mut store, &rt, now, who, cmd)?;
        }
        now += Duration::hours(2);
        eprint!(
            "\rmaking the log: {} events ({:.0}s)",
            store.last_position()?,
            started.elapsed().as_secs_f64()
        );
    }
    eprintln!();
    Ok((store, now))
}

/// The state as of `position`: a scratch copy with its projections, and one lead read (what
/// `lead show --as-of` does).
fn as_of(store: &Store, dir: &Path, position: i64, name: &str) -> Result<f64> {
    let path = dir.join(name);
    leadflow_store::remove_database(&path);
    let t = Instant::now();
    let mut copy = Store::open(&path, &options(Synchronous::Off))?;
    history::copy_until(store, position, &mut copy, &mut |_| {})?;
    let lead = copy.load(StreamId::new(EntityKind::Lead, 1))?;
    let secs = t.elapsed().as_secs_f64();
    assert!(lead.is_some(), "lead-1 exists at position {position}");
    drop(copy);
    leadflow_store::remove_database(&path);
    Ok(secs)
}

fn main() -> Result<()> {
    let n: i64 = std::env::var("LEADFLOW_BENCH_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("leadflow-bench-backtest");
    std::fs::create_dir_all(&dir)?;
    let made = Instant::now();
    let (mut store, _) = make_log(&dir.join("log.db"), n)?;
    let head = store.last_position()?;
    eprintln!("log: {head} events in {:.1}s", made.elapsed().as_secs_f64());

    let t = Instant::now();
    store.replay(&mut |_| {})?;
    let replay = t.elapsed().as_secs_f64();
    eprintln!("replay: {replay:.2}s");

    let sandbox_path = dir.join("sandbox.db");
    leadflow_store::remove_database(&sandbox_path);
    let t = Instant::now();
    // `LEADFLOW_BENCH_SANDBOX=memory`: the sandbox in SQLite's memory instead of a scratch
    // file (what `leadflow backtest` uses), to compare the two.
    let in_memory = std::env::var("LEADFLOW_BENCH_SANDBOX").is_ok_and(|v| v == "memory");
    let mut sandbox = if in_memory {
        Store::open_in_memory()?
    } else {
        Store::open_scratch(&sandbox_path)?
    };
    // As `leadflow backtest` holds it: many moments per transaction, the last one left
    // uncommitted (the sandbox is removed afterwards).
    let mut batch = sandbox.batched(leadflow_robots::backtest::BATCH_EVENTS);
    let done = run(
        &store,
        &mut batch,
        rules(),
        None,
        true,
        &BacktestOptions::default(),
    )?;
    drop(batch);
    let backtest = t.elapsed().as_secs_f64();
    let diff = done.comparison.finish(&|_| true);
    assert!(diff.is_empty(), "{}", diff.summary());
    drop(sandbox);
    leadflow_store::remove_database(&sandbox_path);
    eprintln!("backtest: {backtest:.2}s ({} inputs)", done.inputs);

    let mid = head / 2;
    let late = head - head / 20;
    let as_of_mid = as_of(&store, &dir, mid, "as-of-mid.db")?;
    let as_of_late = as_of(&store, &dir, late, "as-of-late.db")?;

    let into = dir.join("until-mid.db");
    leadflow_store::remove_database(&into);
    let t = Instant::now();
    let mut copy = Store::open(&into, &options(Synchronous::Full))?;
    history::copy_until(&store, mid, &mut copy, &mut |_| {})?;
    let replay_into = t.elapsed().as_secs_f64();
    drop(copy);
    leadflow_store::remove_database(&into);

    let rate = |secs: f64, events: i64| events as f64 / secs.max(1e-9);
    println!("| what | events | seconds | events/s | × replay |");
    println!("|---|---:|---:|---:|---:|");
    let row = |what: &str, events: i64, secs: f64| {
        println!(
            "| {what} | {events} | {secs:.2} | {:.0} | {:.2} |",
            rate(secs, events),
            secs / replay.max(1e-9)
        );
    };
    row("replay (projections rebuilt)", head, replay);
    row(
        if in_memory {
            "backtest, live rule set (0 differences), sandbox in memory"
        } else {
            "backtest, live rule set (0 differences), sandbox a scratch file"
        },
        head,
        backtest,
    );
    row("show --as-of the middle", mid, as_of_mid);
    row("show --as-of near the end (95%)", late, as_of_late);
    row("replay --until mid --into FILE", mid, replay_into);
    println!(
        "\nbacktest / replay = {:.2} (target: at most 3)",
        backtest / replay.max(1e-9)
    );
    drop(store);
    leadflow_store::remove_database(&dir.join("log.db"));
    Ok(())
}
