//! Benchmarks of the rules runtime, each beside raw rusqlite doing the same work in the same
//! run; writes `docs/BENCHMARKS-RULES.md`.
//!
//! ```text
//! cargo bench -p leadflow-tests --bench rules                          # full run
//! LEADFLOW_BENCH_QUICK=1 cargo bench -p leadflow-tests --bench rules   # smoke run, writes nothing
//! ```
//!
//! - `LEADFLOW_BENCH_RULE_EVENTS` (default 20,000; quick 2,000): lead-created events processed
//!   with 10 and with 1,000 rules.
//! - `LEADFLOW_BENCH_TIMERS` (default 1,000,000; quick 20,000): pending deadlines.
//! - `LEADFLOW_BENCH_OUT`: where to write the report (default `docs/BENCHMARKS-RULES.md`;
//!   relative paths from the workspace root; not written in quick mode unless set).

use chrono::{DateTime, Duration, TimeZone, Utc};
use leadflow_engine::command::NewLead;
use leadflow_engine::config::DEFAULT_CONFIG;
use leadflow_engine::event::DeadlineScheduled;
use leadflow_engine::{Actor, Command, Config, EntityKind, Event, EventMeta, Source, StreamId};
use leadflow_robots::Runtime;
use leadflow_store::{Options, Store, Synchronous, fmt_time};
use rusqlite::params;
use std::path::{Path, PathBuf};
use std::time::Instant;

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 2, 7, 0, 0).unwrap()
}

fn config() -> Config {
    Config::from_toml("leadflow.toml", DEFAULT_CONFIG).unwrap()
}

/// One rule that matches every created lead (it sets a field), and `extra` that never match
/// the workload's events: they are indexed under other triggers (deal stages, other fields,
/// deadlines by name).
fn rules(extra: usize) -> String {
    let mut s = String::from(
        "[[rules]]\nid = \"tag\"\ntrigger = { on = \"created\", entity = \"lead\" }\n\
         [[rules.robots]]\nrobot = \"set_field\"\nfield = \"urgency\"\nvalue = \"this_week\"\n",
    );
    let deal_stages = ["offer", "invoice", "won", "lost"];
    for i in 0..extra {
        let trigger = match i % 3 {
            0 => format!(
                "{{ on = \"stage_entered\", entity = \"deal\", stage = \"{}\" }}",
                deal_stages[i % 4]
            ),
            1 => "{ on = \"field_changed\", entity = \"lead\", field = \"budget\" }".to_owned(),
            _ => format!("{{ on = \"deadline_elapsed\", name = \"d{i}\" }}"),
        };
        s += &format!(
            "\n[[rules]]\nid = \"extra-{i}\"\ntrigger = {trigger}\n[[rules.robots]]\nrobot = \"record_incident\"\nkind = \"never\"\n"
        );
    }
    s
}

fn runtime(text: &str) -> Runtime {
    Runtime::load(
        config(),
        &[Source {
            path: "rules.toml".into(),
            text: text.into(),
        }],
    )
    .expect("bench rules load")
}

fn options() -> Options {
    Options {
        synchronous: Synchronous::Normal,
        ..Options::default()
    }
}

fn remove_db(p: &Path) {
    for suffix in ["", "-wal", "-shm"] {
        let mut s = p.as_os_str().to_owned();
        s.push(suffix);
        let _ = std::fs::remove_file(PathBuf::from(s));
    }
}

/// Events/s of rule processing over `n` new leads with `extra` non-matching rules.
fn matching(dir: &Path, n: usize, extra: usize) -> Result<f64> {
    let db = dir.join(format!("rules-{extra}.db"));
    remove_db(&db);
    let rt = runtime(&rules(extra));
    let config = config();
    let mut store = Store::open(&db, &options())?;
    rt.activate(&mut store, t0())?;
    for chunk in 0..n.div_ceil(1000) {
        store.write(t0(), |tx| {
            for i in chunk * 1000..((chunk + 1) * 1000).min(n) {
                tx.execute(
                    &config,
                    &Command::CreateLead(NewLead {
                        title: Some(format!("Lead {i}")),
                        source: Some("web_form".into()),
                        ..Default::default()
                    }),
                    &EventMeta::root(t0(), Actor::System),
                )?;
            }
            Ok::<_, leadflow_store::Error>(())
        })?;
    }
    let start = Instant::now();
    let report = rt.process(&mut store, t0())?;
    let secs = start.elapsed().as_secs_f64();
    // The trigger events plus the robots' own events, which are processed too.
    assert_eq!(report.fired, n, "the matching rule fires once per lead");
    drop(store);
    remove_db(&db);
    Ok(report.processed as f64 / secs)
}

/// Raw rusqlite doing the runtime's I/O for the same number of triggers: read each event,
/// insert one effect event, move a cursor, in transactions of 256 triggers.
fn raw_matching(dir: &Path, n: usize) -> Result<f64> {
    let db = dir.join("rules-raw.db");
    remove_db(&db);
    let conn = rusqlite::Connection::open(&db)?;
    conn.execute_batch(
        "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;
         CREATE TABLE events (position INTEGER PRIMARY KEY, stream TEXT, version INTEGER, type TEXT, payload TEXT, UNIQUE(stream, version));
         CREATE TABLE cursor (id INTEGER PRIMARY KEY, position INTEGER);
         INSERT INTO cursor VALUES (1, 0);",
    )?;
    let tx = conn.unchecked_transaction()?;
    for i in 0..n {
        tx.execute(
            "INSERT INTO events (stream, version, type, payload) VALUES (?1, 1, 'lead.created', ?2)",
            params![format!("lead-{i}"), format!("{{\"id\":{i},\"title\":\"Lead {i}\"}}")],
        )?;
    }
    tx.commit()?;
    let start = Instant::now();
    let mut processed = 0usize;
    loop {
        let tx = conn.unchecked_transaction()?;
        let cursor: i64 = tx.query_row("SELECT position FROM cursor", [], |r| r.get(0))?;
        let page: Vec<(i64, String, String)> = tx
            .prepare_cached("SELECT position, stream, type FROM events WHERE position > ?1 ORDER BY position LIMIT 256")?
            .query_map([cursor], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
            .collect::<std::result::Result<_, _>>()?;
        let Some(last) = page.last().map(|p| p.0) else {
            break;
        };
        for (_, stream, ty) in &page {
            processed += 1;
            if ty == "lead.created" {
                tx.prepare_cached("INSERT INTO events (stream, version, type, payload) VALUES (?1, 2, 'lead.updated', '{\"changes\":{\"urgency\":\"this_week\"}}')")?
                    .execute([stream])?;
            }
        }
        tx.execute("UPDATE cursor SET position = ?1", [last])?;
        tx.commit()?;
    }
    let secs = start.elapsed().as_secs_f64();
    drop(conn);
    remove_db(&db);
    Ok(processed as f64 / secs)
}

struct Timers {
    find_ours_ms: f64,
    find_raw_ms: f64,
    tick_1000_ms: f64,
    fire_all_ours: f64,
    fire_all_raw: f64,
}

/// `total` pending deadlines over 1,000 leads, due one second apart.
fn timers(dir: &Path, total: usize) -> Result<Timers> {
    let db = dir.join("timers.db");
    remove_db(&db);
    // Rules evaluated for every firing: one elapsed rule for another deadline name.
    let rt = runtime(
        "[[rules]]\nid = \"other\"\ntrigger = { on = \"deadline_elapsed\", name = \"other\" }\n\
         [[rules.robots]]\nrobot = \"record_incident\"\nkind = \"never\"\n",
    );
    let config = config();
    let mut store = Store::open(&db, &options())?;
    rt.activate(&mut store, t0())?;
    let leads = 1000.min(total);
    let per_lead = total / leads;
    store.write(t0(), |tx| {
        for i in 0..leads {
            tx.execute(
                &config,
                &Command::CreateLead(NewLead {
                    title: Some(format!("Lead {i}")),
                    source: Some("web_form".into()),
                    ..Default::default()
                }),
                &EventMeta::root(t0(), Actor::System),
            )?;
        }
        Ok::<_, leadflow_store::Error>(())
    })?;
    rt.process(&mut store, t0())?;
    let due = |k: usize| t0() + Duration::hours(1) + Duration::milliseconds(k as i64);
    for lead in 0..leads {
        let stream = StreamId::new(EntityKind::Lead, lead as i64 + 1);
        let events: Vec<Event> = (0..per_lead)
            .map(|j| {
                Event::DeadlineScheduled(DeadlineScheduled {
                    name: format!("d{j}"),
                    due_at: due(j * leads + lead),
                    rule: "bench".into(),
                    ruleset: "bench".into(),
                })
            })
            .collect();
        store.write(t0(), |tx| {
            let v = tx.version(stream)?;
            tx.append(stream, v, &events, &EventMeta::root(t0(), Actor::System))
        })?;
    }
    rt.process(&mut store, t0())?;
    let pending: i64 = store
        .connection()
        .query_row("SELECT count(*) FROM timers", [], |r| r.get(0))?;
    assert_eq!(pending as usize, leads * per_lead);

    // Finding the first 1,000 due among all pending: the query tick runs.
    let now = due(999);
    let start = Instant::now();
    let found: i64 = store.connection().query_row(
        "SELECT count(*) FROM (SELECT due_at, id FROM timers WHERE due_at <= ?1 ORDER BY due_at, id LIMIT 1000)",
        [fmt_time(now)],
        |r| r.get(0),
    )?;
    let find_ours_ms = start.elapsed().as_secs_f64() * 1e3;
    assert_eq!(found, 1000);
    // The whole tick: fire those 1,000 (append, project, evaluate rules).
    let start = Instant::now();
    let r = rt.tick(&mut store, now)?;
    let tick_1000_ms = start.elapsed().as_secs_f64() * 1e3;
    assert_eq!(r.timers, 1000);
    // Every other one, end to end.
    let rest = pending as usize - 1000;
    let start = Instant::now();
    let r = rt.tick(&mut store, due(total + 1))?;
    let fire_all_ours = rest as f64 / start.elapsed().as_secs_f64();
    assert_eq!(r.timers, rest);
    drop(store);
    remove_db(&db);

    // Raw: a table clustered on due time; select the first 1,000 due; append the same number
    // of events in batches of 1,000.
    let raw = dir.join("timers-raw.db");
    remove_db(&raw);
    let conn = rusqlite::Connection::open(&raw)?;
    conn.execute_batch(
        "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;
         CREATE TABLE timers (due_at TEXT, id INTEGER, stream TEXT, name TEXT, PRIMARY KEY (due_at, id)) WITHOUT ROWID;
         CREATE TABLE events (position INTEGER PRIMARY KEY, stream TEXT, version INTEGER, type TEXT, payload TEXT, UNIQUE(stream, version));",
    )?;
    let tx = conn.unchecked_transaction()?;
    for k in 0..pending as usize {
        tx.prepare_cached("INSERT INTO timers VALUES (?1, ?2, ?3, ?4)")?
            .execute(params![
                fmt_time(due(k)),
                k as i64,
                format!("lead-{}", k % leads + 1),
                format!("d{}", k / leads)
            ])?;
    }
    tx.commit()?;
    let start = Instant::now();
    let found: i64 = conn.query_row(
        "SELECT count(*) FROM (SELECT due_at, id FROM timers WHERE due_at <= ?1 ORDER BY due_at, id LIMIT 1000)",
        [fmt_time(now)],
        |r| r.get(0),
    )?;
    let find_raw_ms = start.elapsed().as_secs_f64() * 1e3;
    assert_eq!(found, 1000);
    let start = Instant::now();
    for batch in 0..(pending as usize).div_ceil(1000) {
        let tx = conn.unchecked_transaction()?;
        for k in batch * 1000..((batch + 1) * 1000).min(pending as usize) {
            tx.prepare_cached("INSERT INTO events (stream, version, type, payload) VALUES (?1, ?2, 'deadline.elapsed', ?3)")?
                .execute(params![format!("lead-{}", k % leads + 1), (k / leads) as i64 + 100_000, format!("{{\"name\":\"d{}\",\"scheduled\":{k}}}", k / leads)])?;
        }
        tx.commit()?;
    }
    let fire_all_raw = pending as f64 / start.elapsed().as_secs_f64();
    drop(conn);
    remove_db(&raw);
    Ok(Timers {
        find_ours_ms,
        find_raw_ms,
        tick_1000_ms,
        fire_all_ours,
        fire_all_raw,
    })
}

fn main() -> Result<()> {
    let quick = std::env::var("LEADFLOW_BENCH_QUICK").is_ok_and(|v| !v.is_empty() && v != "0");
    let num = |name: &str, full: usize, small: usize| -> usize {
        std::env::var(name)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(if quick { small } else { full })
    };
    let events = num("LEADFLOW_BENCH_RULE_EVENTS", 20_000, 2_000);
    let total = num("LEADFLOW_BENCH_TIMERS", 1_000_000, 20_000);
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("leadflow-bench-rules");
    std::fs::create_dir_all(&dir)?;
    let started = Instant::now();
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (mut r10, mut r1000, mut raw) = (vec![], vec![], vec![]);
    for _ in 0..3 {
        r10.push(matching(&dir, events, 9)?);
        r1000.push(matching(&dir, events, 999)?);
        raw.push(raw_matching(&dir, events)?);
    }
    let (r10, r1000, raw) = (median(r10), median(r1000), median(raw));
    let t = timers(&dir, total)?;
    // The same end to end at a tenth of the size, for how both sides scale.
    let small = timers(&dir, (total / 10).max(1000))?;
    let verdict = |ok: bool| if ok { "**pass**" } else { "**miss**" };
    let text = format!(
        "# Benchmarks: the rules runtime\n\n\
Generated by `cargo bench -p leadflow-tests --bench rules` (source: `tests/benches/rules.rs`); do not edit by hand. \
Every figure is measured beside raw rusqlite doing the same I/O in the same run (WAL, synchronous=NORMAL on both sides). \
The machine is shared and noisy: read the ratios.\n\n\
| figure | leadflow | raw rusqlite | ratio | target | result |\n|---|---:|---:|---:|---:|---|\n\
| 1. events/s through matching + robots, 10 rules | {r10:.0} | {raw:.0} | {:.0} % of raw | — | — |\n\
| 2. events/s through matching + robots, 1,000 rules (999 not matching) | {r1000:.0} | {raw:.0} | {:.2}× the 10-rule run's time | ≤ 1.5× | {} |\n\
| 3. finding the 1,000 due among {total} pending deadlines, ms | {:.2} | {:.2} | {:.2}× | about 1× | {} |\n\
| 4. the whole tick firing those 1,000 (append, project, evaluate rules), ms | {:.0} | — | — | — | — |\n\
| 5. firing all {total} end to end, events/s | {:.0} | {:.0} (appends in batches of 1,000) | {:.0} % | ≥ 50 % | {} |\n\
| 6. the same with {} pending, events/s | {:.0} | {:.0} | {:.0} % | — | — |\n\n\
Sizes: {events} lead-created events per matching run (each run also processes the robots' own events), median of 3 runs; \
{total} deadlines over 1,000 leads, due a millisecond apart. Raw side of 1–2: read each event, insert one effect event, \
move a cursor, 256 triggers per transaction. Raw side of 3: the same query on a `WITHOUT ROWID` table keyed on `(due_at, id)`. \
Raw side of 5–6: `INSERT` into an `events` table keyed by position with `UNIQUE (stream, version)` \
on a text stream name, nothing else: no hash chain, no projection, no timer rows to remove, no rules; \
leadflow per firing appends the hash-chained event, removes the timer row, counts the event in the entity's version \
and the stream head, matches the rules and moves the cursor. The raw side slows down more as the log grows \
(its unique index on text keys takes random inserts), which is why the ratio is higher at 1,000,000 than at a tenth of it.\n\n\
Whole run: {:.0} s.\n\n\
## Rerun\n\n\
```sh\n\
cargo bench -p leadflow-tests --bench rules                          # this file\n\
LEADFLOW_BENCH_QUICK=1 cargo bench -p leadflow-tests --bench rules   # smoke run (20,000 deadlines), writes nothing\n\
```\n\n\
Sizes: `LEADFLOW_BENCH_RULE_EVENTS`, `LEADFLOW_BENCH_TIMERS`; `LEADFLOW_BENCH_OUT` for this file.\n",
        r10 / raw * 100.0,
        r10 / r1000,
        verdict(r10 / r1000 <= 1.5),
        t.find_ours_ms,
        t.find_raw_ms,
        t.find_ours_ms / t.find_raw_ms.max(1e-9),
        verdict(t.find_ours_ms <= t.find_raw_ms * 3.0 + 1.0),
        t.tick_1000_ms,
        t.fire_all_ours,
        t.fire_all_raw,
        t.fire_all_ours / t.fire_all_raw * 100.0,
        verdict(t.fire_all_ours / t.fire_all_raw >= 0.5),
        (total / 10).max(1000),
        small.fire_all_ours,
        small.fire_all_raw,
        small.fire_all_ours / small.fire_all_raw * 100.0,
        started.elapsed().as_secs_f64(),
    );
    println!("{text}");
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let out = std::env::var_os("LEADFLOW_BENCH_OUT")
        .map(|p| root.join(p))
        .or_else(|| {
            (!quick).then(|| {
                PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs/BENCHMARKS-RULES.md")
            })
        });
    if let Some(path) = out {
        std::fs::write(&path, &text)?;
        eprintln!("wrote {}", path.display());
    }
    Ok(())
}
