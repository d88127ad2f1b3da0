//! How late `leadflow run` fires deadlines, beside raw tokio + rusqlite doing the same work in
//! the same run; writes `docs/BENCHMARKS-RUN.md`.
//!
//! ```text
//! cargo bench -p leadflow-cli --bench lateness                          # full run
//! LEADFLOW_BENCH_QUICK=1 cargo bench -p leadflow-cli --bench lateness   # smoke run, writes nothing
//! ```
//!
//! How: `leadflow init` makes a folder with a rule on `deadline_elapsed` named `callback` that
//! notifies the lead's responsible (checked with `leadflow rules check`). Through the store API
//! the bench creates one lead per deadline and appends one `deadline.scheduled` to each, due
//! from 3 s later at a fixed spacing, every 50th deadline starting a burst of 5 due at the same
//! instant. Then it starts the real `leadflow run` (after scheduling: a service reads the timers
//! when it starts, and sees timers other processes append only at its next poll) and polls the
//! database read-only every millisecond for `deadline.elapsed`. Per deadline: **fired** =
//! the event's `occurred_at` − its `due_at` (the service's clock when it ticked), and **seen** =
//! when this process first read it − `due_at` (committed and visible to others). A second,
//! smaller case appends deadlines one by one while the service runs, each due 1 s after it is
//! appended: they must be on time too, since they are due after the next poll. Then SIGTERM,
//! and the service must exit 0. The raw side is a current-thread tokio loop over the same
//! schedule: `sleep_until(due)`, then one INSERT in its own transaction, with the SQLite settings
//! `leadflow run` uses by default (`leadflow_tests::raw`: WAL, synchronous=FULL, the same page
//! cache and checkpoints), while another thread reads the table every millisecond as the bench
//! reads the service's log; lateness after waking, after the commit, and when the reader first
//! saw the row. The two sides take turns over `LEADFLOW_BENCH_RUNS` runs (default 3); every
//! figure is the median over the runs of that run's statistic.
//!
//! - `LEADFLOW_BENCH_DEADLINES` (default 1,000; quick 100): deadlines fired by the service.
//! - `LEADFLOW_BENCH_SPACING_MS` (default 20): time between consecutive due times.
//! - `LEADFLOW_BENCH_APPENDED` (default 100; quick 20): deadlines appended while it runs.
//! - `LEADFLOW_BENCH_RUNS` (default 3): runs of each side.
//! - `LEADFLOW_BENCH_DIR`: where the temporary folders go (default: cargo's target tmp dir, on
//!   a real disk so that fsync is not free).
//! - `LEADFLOW_BENCH_OUT`: where to write the report (default `docs/BENCHMARKS-RUN.md`; relative
//!   paths from the workspace root; not written in quick mode unless set).

// A benchmark's output is its figures (stdout) and its progress (stderr): the workspace's
// ban on printing, meant for the libraries, does not apply to it.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use chrono::{DateTime, TimeDelta, Utc};
use leadflow_engine::command::NewLead;
use leadflow_engine::event::DeadlineScheduled;
use leadflow_engine::{Actor, Command as LeadCommand, Config, Event, EventMeta, StreamId};
use leadflow_store::{Options, Store, Synchronous, parse_time};
use leadflow_tests::raw::rusqlite::{self, Connection, OpenFlags, params};
use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

/// The first deadline is due this long after scheduling.
const LEAD_TIME: Duration = Duration::from_secs(3);
/// Every this many deadlines a burst starts…
const BURST_EVERY: usize = 50;
/// …of this many due at the same instant.
const BURST: usize = 5;
/// How often the bench reads the log.
const READ_EVERY: Duration = Duration::from_millis(1);
/// Deadlines appended while the service runs are due this long after they are appended.
const APPENDED_DUE: TimeDelta = TimeDelta::seconds(1);
/// Time between two appends while the service runs.
const APPENDED_EVERY: Duration = Duration::from_millis(50);
/// How long after the last due time the service may take before the bench gives up.
const GIVE_UP: TimeDelta = TimeDelta::seconds(30);
/// The target of the issue: p99 of the lateness below this many ms.
const TARGET_P99_MS: f64 = 50.0;

const RULES: &str = r#"# Written by cli/benches/lateness.rs.
[[rules]]
id = "callback-missed"
trigger = { on = "deadline_elapsed", name = "callback" }

  [[rules.robots]]
  robot = "notify"
  to = "responsible"
  text = "call {lead.title} back"
  priority = "high"
"#;

/// Who the leads are assigned to, in turn.
const RESPONSIBLE: [&str; 3] = ["ivanov", "petrova", "sidorov"];

/// Kills the service if the bench fails before it stops.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        if self.0.try_wait().ok().flatten().is_none() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// A `leadflow` folder made by `leadflow init`.
struct Folder {
    dir: PathBuf,
}

impl Folder {
    fn config(&self) -> PathBuf {
        self.dir.join("leadflow.toml")
    }

    fn db(&self) -> PathBuf {
        self.dir.join("leadflow.db")
    }

    /// The real binary on this folder's configuration, with the user's leadflow variables
    /// removed and logging at warnings.
    fn cmd(&self) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_leadflow"));
        c.current_dir(&self.dir)
            .env("LEADFLOW_CONFIG", self.config())
            .env_remove("LEADFLOW_DB")
            .env_remove("LEADFLOW_AS")
            .env_remove("LEADFLOW_RULES")
            .env_remove("LEADFLOW_NOW")
            .env_remove("LEADFLOW_SYNCHRONOUS")
            .env("RUST_LOG", "warn");
        c
    }
}

fn check(what: &str, out: &Output) -> Result<()> {
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{what} failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
        .into())
    }
}

/// `leadflow init DIR`, the bench's rule file, and `leadflow rules check`.
fn setup(dir: &Path) -> Result<Folder> {
    std::fs::create_dir_all(dir)?;
    let folder = Folder {
        dir: dir.to_owned(),
    };
    let out = folder
        .cmd()
        .env_remove("LEADFLOW_CONFIG")
        .arg("init")
        .arg(dir)
        .output()
        .map_err(|e| format!("running {}: {e}", env!("CARGO_BIN_EXE_leadflow")))?;
    check("leadflow init", &out)?;
    std::fs::write(dir.join("rules").join("bench.toml"), RULES)?;
    let out = folder.cmd().args(["rules", "check"]).output()?;
    check("leadflow rules check", &out)?;
    Ok(folder)
}

/// The instant truncated to what the store keeps (microseconds).
fn micros(t: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(t.timestamp_micros()).expect("a time within chrono's range")
}

/// When each of `n` deadlines is due, as offsets from the first: `spacing` apart, except that
/// every [`BURST_EVERY`]th starts [`BURST`] due at the same instant.
fn schedule_offsets(n: usize, spacing: Duration) -> Vec<Duration> {
    let mut slot = 0u32;
    (0..n)
        .map(|i| {
            let at = spacing * slot;
            if i % BURST_EVERY + 1 >= BURST {
                slot += 1;
            }
            at
        })
        .collect()
}

fn delta(d: Duration) -> TimeDelta {
    TimeDelta::from_std(d).expect("a bench duration fits a TimeDelta")
}

/// Creates `n` leads, each with a responsible; their streams.
fn create_leads(store: &mut Store, config: &Config, n: usize) -> Result<Vec<StreamId>> {
    let now = Utc::now();
    let streams = store.write(now, |tx| {
        (0..n)
            .map(|i| {
                let executed = tx.execute(
                    config,
                    &LeadCommand::CreateLead(NewLead {
                        title: Some(format!("Lead {i}")),
                        source: Some("web_form".into()),
                        responsible: Some(RESPONSIBLE[i % RESPONSIBLE.len()].into()),
                        ..Default::default()
                    }),
                    &EventMeta::root(now, Actor::System),
                )?;
                Ok(executed.stream)
            })
            .collect::<std::result::Result<Vec<_>, leadflow_store::Error>>()
    })?;
    Ok(streams)
}

/// Appends `deadline.scheduled` named `callback` to each stream, due at the paired time, in
/// one transaction; the events' positions.
fn schedule(store: &mut Store, due: &[(StreamId, DateTime<Utc>)]) -> Result<Vec<i64>> {
    let now = Utc::now();
    let positions = store.write(now, |tx| {
        due.iter()
            .map(|&(stream, due_at)| {
                let version = tx.version(stream)?;
                let appended = tx.append(
                    stream,
                    version,
                    &[Event::DeadlineScheduled(DeadlineScheduled {
                        name: "callback".into(),
                        due_at,
                        // The timer row is all the runtime needs to fire it; these name the
                        // rule and rule set that set it, which did not exist here.
                        rule: "bench".into(),
                        ruleset: "bench".into(),
                    })],
                    &EventMeta::root(now, Actor::System),
                )?;
                Ok(appended.last_position)
            })
            .collect::<std::result::Result<Vec<_>, leadflow_store::Error>>()
    })?;
    Ok(positions)
}

/// One `deadline.elapsed` as another process first saw it.
struct Fired {
    /// The position of its `deadline.scheduled`.
    scheduled: i64,
    due: DateTime<Utc>,
    occurred: DateTime<Utc>,
    seen: DateTime<Utc>,
}

impl Fired {
    fn fired_ms(&self) -> f64 {
        ms(self.occurred - self.due)
    }

    fn seen_ms(&self) -> f64 {
        ms(self.seen - self.due)
    }
}

fn ms(d: TimeDelta) -> f64 {
    d.num_microseconds().unwrap_or(i64::MAX) as f64 / 1e3
}

/// A read-only connection to the service's database.
fn reader(db: &Path) -> Result<Connection> {
    let conn = Connection::open_with_flags(
        db,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(Duration::from_secs(5))?;
    Ok(conn)
}

fn last_position(conn: &Connection) -> Result<i64> {
    Ok(
        conn.query_row("SELECT coalesce(max(position), 0) FROM events", [], |r| {
            r.get(0)
        })?,
    )
}

fn count(conn: &Connection, ty: &str, after: i64) -> Result<i64> {
    Ok(conn.query_row(
        "SELECT count(*) FROM events WHERE position > ?1 AND type = ?2",
        params![after, ty],
        |r| r.get(0),
    )?)
}

/// Reads the log every [`READ_EVERY`] until `n` `deadline.elapsed` after position `after` are
/// seen; fails past `give_up` or if the service exits.
fn watch(
    conn: &Connection,
    after: i64,
    n: usize,
    service: &mut Running,
    give_up: DateTime<Utc>,
) -> Result<Vec<Fired>> {
    let mut stmt = conn.prepare(
        "SELECT position, occurred_at, payload FROM events \
         WHERE position > ?1 AND type = 'deadline.elapsed' ORDER BY position",
    )?;
    let mut last = after;
    let mut out: Vec<Fired> = Vec::with_capacity(n);
    while out.len() < n {
        let rows = stmt
            .query_map([last], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                ))
            })?
            .collect::<std::result::Result<Vec<_>, _>>()?;
        let seen = Utc::now();
        for (position, occurred, payload) in rows {
            last = position;
            let payload: serde_json::Value = serde_json::from_str(&payload)?;
            let time = |s: Option<&str>| {
                s.and_then(parse_time)
                    .ok_or_else(|| format!("event {position}: unreadable time in {payload}"))
            };
            out.push(Fired {
                scheduled: payload["scheduled"]
                    .as_i64()
                    .ok_or_else(|| format!("event {position}: no 'scheduled' in {payload}"))?,
                due: time(payload["due_at"].as_str())?,
                occurred: time(Some(&occurred))?,
                seen,
            });
        }
        if out.len() >= n {
            break;
        }
        if let Some(status) = service.0.try_wait()? {
            return Err(format!("leadflow run exited early ({status})").into());
        }
        if seen > give_up {
            return Err(format!(
                "only {} of {n} deadlines fired by {seen} (see the service's log)",
                out.len()
            )
            .into());
        }
        std::thread::sleep(READ_EVERY);
    }
    Ok(out)
}

/// The fired deadlines must be exactly the scheduled ones, each once.
fn same_deadlines(fired: &[Fired], scheduled: &[i64]) -> Result<()> {
    let got: BTreeSet<i64> = fired.iter().map(|f| f.scheduled).collect();
    let want: BTreeSet<i64> = scheduled.iter().copied().collect();
    if got.len() != fired.len() || got != want {
        return Err(format!(
            "fired {} deadline.elapsed for {} distinct deadlines, {} scheduled",
            fired.len(),
            got.len(),
            want.len()
        )
        .into());
    }
    Ok(())
}

/// Waits for `n` events of type `ty` after `after` (the robots' effects follow the firing in
/// the next transaction).
fn wait_for(conn: &Connection, ty: &str, after: i64, n: i64, service: &mut Running) -> Result<()> {
    let start = Instant::now();
    loop {
        let got = count(conn, ty, after)?;
        if got >= n {
            return Ok(());
        }
        if let Some(status) = service.0.try_wait()? {
            return Err(format!("leadflow run exited early ({status})").into());
        }
        if start.elapsed() > Duration::from_secs(30) {
            return Err(format!("only {got} of {n} {ty} after 30 s").into());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// SIGTERM; the service must exit 0 within 10 s.
fn stop(mut service: Running, log: &Path) -> Result<()> {
    let pid = service.0.id().to_string();
    let kill = Command::new("kill").args(["-TERM", &pid]).status()?;
    if !kill.success() {
        return Err(format!("kill -TERM {pid} failed ({kill})").into());
    }
    let start = Instant::now();
    let status = loop {
        if let Some(s) = service.0.try_wait()? {
            break s;
        }
        if start.elapsed() > Duration::from_secs(10) {
            return Err("leadflow run did not stop within 10 s of SIGTERM".into());
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    if !status.success() {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        return Err(format!("leadflow run exited with {status} on SIGTERM: {text}").into());
    }
    Ok(())
}

/// What the service side measured.
struct Service {
    before: Vec<Fired>,
    appended: Vec<Fired>,
    notifications: i64,
    incidents: i64,
    log_lines: usize,
}

/// The service side: `n` deadlines scheduled before it starts, `m` appended while it runs.
fn service(folder: &Folder, offsets: &[Duration], m: usize) -> Result<Service> {
    let n = offsets.len();
    let config = Config::from_toml(
        &folder.config().display().to_string(),
        &std::fs::read_to_string(folder.config())?,
    )
    .map_err(|e| format!("the configuration {}: {e}", folder.config().display()))?;
    let options = Options {
        synchronous: Synchronous::Normal,
        ..Options::default()
    };
    let mut store = Store::open(folder.db(), &options)?;
    let streams = create_leads(&mut store, &config, n + m)?;
    let (now_streams, later_streams) = streams.split_at(n);
    let base = micros(Utc::now() + delta(LEAD_TIME));
    let due: Vec<(StreamId, DateTime<Utc>)> = now_streams
        .iter()
        .zip(offsets)
        .map(|(&s, &o)| (s, micros(base + delta(o))))
        .collect();
    let scheduled = schedule(&mut store, &due)?;
    drop(store);
    let last_due = due.last().map_or(base, |d| d.1);

    // Started after the deadlines are scheduled: it reads the timers when it starts.
    let log_path = folder.dir.join("run.log");
    let log = File::create(&log_path)?;
    let mut service = Running(
        folder
            .cmd()
            .arg("run")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()?,
    );
    let conn = reader(&folder.db())?;
    let before = watch(&conn, 0, n, &mut service, last_due + GIVE_UP)?;
    same_deadlines(&before, &scheduled)?;

    // Appended one by one while it runs, each due a second later.
    let after = last_position(&conn)?;
    let db = folder.db();
    let later = later_streams.to_vec();
    let appender = std::thread::spawn(move || -> std::result::Result<Vec<i64>, String> {
        let mut store = Store::open(&db, &options).map_err(|e| e.to_string())?;
        let start = Instant::now();
        let mut positions = Vec::with_capacity(later.len());
        for (k, &stream) in later.iter().enumerate() {
            let at = start + APPENDED_EVERY * k as u32;
            std::thread::sleep(at.saturating_duration_since(Instant::now()));
            let due_at = micros(Utc::now() + APPENDED_DUE);
            positions.extend(schedule(&mut store, &[(stream, due_at)]).map_err(|e| e.to_string())?);
        }
        Ok(positions)
    });
    let appended_window = delta(APPENDED_EVERY * m as u32) + APPENDED_DUE + GIVE_UP;
    let appended = watch(&conn, after, m, &mut service, Utc::now() + appended_window)?;
    let appended_positions = appender
        .join()
        .map_err(|_| "the appending thread panicked")??;
    same_deadlines(&appended, &appended_positions)?;

    // The rule's robot ran for every one of them.
    let total = (n + m) as i64;
    wait_for(&conn, "notification.queued", 0, total, &mut service)?;
    let notifications = count(&conn, "notification.queued", 0)?;
    let incidents = count(&conn, "incident.recorded", 0)?;
    drop(conn);
    stop(service, &log_path)?;
    let log_lines = std::fs::read_to_string(&log_path)?.lines().count();
    Ok(Service {
        before,
        appended,
        notifications,
        incidents,
        log_lines,
    })
}

/// Lateness (ms) of the raw side.
struct Raw {
    /// After `sleep_until`, before the INSERT.
    woke: Vec<f64>,
    /// After the commit.
    committed: Vec<f64>,
    /// When a reader in another thread, on its own read-only connection, first saw the row.
    seen: Vec<f64>,
}

/// The raw side: a current-thread tokio loop sleeping until each due time, then one INSERT in
/// its own transaction, while another thread reads the table every [`READ_EVERY`] as the bench
/// reads the service's log.
fn raw(db: &Path, offsets: &[Duration]) -> Result<Raw> {
    for suffix in ["", "-wal", "-shm"] {
        let mut p = db.as_os_str().to_owned();
        p.push(suffix);
        let _ = std::fs::remove_file(PathBuf::from(p));
    }
    let conn = leadflow_tests::raw::open(db, Synchronous::Full)?;
    conn.execute_batch(
        "CREATE TABLE events (position INTEGER PRIMARY KEY, stream TEXT NOT NULL, type TEXT NOT NULL,
                              payload TEXT NOT NULL, occurred_at TEXT NOT NULL);",
    )?;
    let n = offsets.len();
    let base_wall = micros(Utc::now() + delta(LEAD_TIME));
    let base = tokio::time::Instant::now() + LEAD_TIME;
    let give_up = base_wall + offsets.last().map_or(TimeDelta::zero(), |&o| delta(o)) + GIVE_UP;
    let reader_conn = reader(db)?;
    let reading = std::thread::spawn(move || -> std::result::Result<Vec<f64>, String> {
        let mut stmt = reader_conn
            .prepare("SELECT position, payload FROM events WHERE position > ?1 ORDER BY position")
            .map_err(|e| e.to_string())?;
        let (mut last, mut seen) = (0i64, Vec::with_capacity(n));
        while seen.len() < n {
            let rows = stmt
                .query_map([last], |r| {
                    Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?))
                })
                .and_then(Iterator::collect::<rusqlite::Result<Vec<_>>>)
                .map_err(|e| e.to_string())?;
            let now = Utc::now();
            for (position, payload) in rows {
                last = position;
                let payload: serde_json::Value =
                    serde_json::from_str(&payload).map_err(|e| e.to_string())?;
                let due = payload["due_at"]
                    .as_str()
                    .and_then(parse_time)
                    .ok_or_else(|| format!("raw row {position}: no due_at in {payload}"))?;
                seen.push(ms(now - due));
            }
            if now > give_up {
                return Err(format!(
                    "the raw reader saw only {} of {n} rows",
                    seen.len()
                ));
            }
            std::thread::sleep(READ_EVERY);
        }
        Ok(seen)
    });
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()?;
    let (woke, committed) = rt.block_on(async {
        let mut woke = Vec::with_capacity(n);
        let mut committed = Vec::with_capacity(n);
        for (i, &offset) in offsets.iter().enumerate() {
            tokio::time::sleep_until(base + offset).await;
            let now = Utc::now();
            let due = base_wall + delta(offset);
            let tx = conn.unchecked_transaction()?;
            tx.execute(
                "INSERT INTO events (stream, type, payload, occurred_at) VALUES (?1, 'deadline.elapsed', ?2, ?3)",
                params![
                    format!("lead-{}", i + 1),
                    format!("{{\"name\":\"callback\",\"scheduled\":{i},\"due_at\":\"{}\"}}", due.to_rfc3339()),
                    now.to_rfc3339(),
                ],
            )?;
            tx.commit()?;
            woke.push(ms(now - due));
            committed.push(ms(Utc::now() - due));
        }
        Ok::<_, Box<dyn std::error::Error>>((woke, committed))
    })?;
    let seen = reading
        .join()
        .map_err(|_| "the raw reader thread panicked")??;
    Ok(Raw {
        woke,
        committed,
        seen,
    })
}

/// Median, p90, p99 and max (nearest rank), in ms.
struct Stats {
    median: f64,
    p90: f64,
    p99: f64,
    max: f64,
}

impl Stats {
    fn of(mut v: Vec<f64>) -> Stats {
        v.sort_by(f64::total_cmp);
        let at = |p: f64| {
            let k = ((p * v.len() as f64).ceil() as usize).clamp(1, v.len().max(1)) - 1;
            v.get(k).copied().unwrap_or(f64::NAN)
        };
        Stats {
            median: at(0.5),
            p90: at(0.9),
            p99: at(0.99),
            max: v.last().copied().unwrap_or(f64::NAN),
        }
    }

    /// The median over runs of each statistic.
    fn median_of(runs: &[Stats]) -> Stats {
        let m = |f: fn(&Stats) -> f64| {
            let mut v: Vec<f64> = runs.iter().map(f).collect();
            v.sort_by(f64::total_cmp);
            v[v.len() / 2]
        };
        Stats {
            median: m(|s| s.median),
            p90: m(|s| s.p90),
            p99: m(|s| s.p99),
            max: m(|s| s.max),
        }
    }

    /// A row of the table: the medians over `runs`, and each run's p99.
    fn row_of(runs: &[Stats], what: &str, target: bool) -> String {
        let p99s: Vec<String> = runs.iter().map(|s| format!("{:.1}", s.p99)).collect();
        let row = Stats::median_of(runs).row(what, target);
        format!(
            "{} {} |\n",
            row.trim_end().trim_end_matches('|').trim_end(),
            format_args!("| {}", p99s.join(", "))
        )
    }

    fn row(&self, what: &str, target: bool) -> String {
        let (target, result) = if target {
            let ok = self.p99 < TARGET_P99_MS;
            (
                format!("p99 < {TARGET_P99_MS:.0}"),
                if ok { "**pass**" } else { "**miss**" },
            )
        } else {
            ("—".to_owned(), "—")
        };
        format!(
            "| {what} | {:.1} | {:.1} | {:.1} | {:.1} | {target} | {result} |\n",
            self.median, self.p90, self.p99, self.max
        )
    }
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|v| v.trim_start_matches([' ', '\t', ':']).to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|_| "unknown".into());
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    format!(
        "{cpus} × {cpu}; Linux {kernel}; SQLite {} (bundled); release profile",
        rusqlite::version()
    )
}

fn main() -> Result<()> {
    let quick = std::env::var("LEADFLOW_BENCH_QUICK").is_ok_and(|v| !v.is_empty() && v != "0");
    let num = |name: &str, full: usize, small: usize| -> usize {
        std::env::var(name)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(if quick { small } else { full })
    };
    let n = num("LEADFLOW_BENCH_DEADLINES", 1000, 100).max(1);
    let m = num("LEADFLOW_BENCH_APPENDED", 100, 20).max(1);
    let spacing = Duration::from_millis(num("LEADFLOW_BENCH_SPACING_MS", 20, 20) as u64);
    let parent = std::env::var_os("LEADFLOW_BENCH_DIR")
        .map_or_else(|| PathBuf::from(env!("CARGO_TARGET_TMPDIR")), PathBuf::from);
    std::fs::create_dir_all(&parent)?;
    let tmp = tempfile::Builder::new()
        .prefix("leadflow-bench-run-")
        .tempdir_in(&parent)?;
    let started = Instant::now();
    let offsets = schedule_offsets(n, spacing);
    let bursts = n.div_ceil(BURST_EVERY);
    let span = offsets.last().copied().unwrap_or_default();

    eprintln!(
        "lateness: {n} deadlines over {:.1} s, then {m} appended while running, in {}",
        span.as_secs_f64(),
        tmp.path().display()
    );
    let runs = num("LEADFLOW_BENCH_RUNS", 3, 3).max(1);
    let (mut svcs, mut raws) = (Vec::new(), Vec::new());
    let (mut svc_secs, mut raw_secs) = (0.0, 0.0);
    for run in 0..runs {
        // The sides take turns: leadflow first in even runs, raw first in odd ones.
        let order = if run.is_multiple_of(2) {
            [true, false]
        } else {
            [false, true]
        };
        for ours in order {
            let t = Instant::now();
            if ours {
                let folder = setup(&tmp.path().join(format!("leadflow-{run}")))?;
                svcs.push(service(&folder, &offsets, m)?);
                svc_secs += t.elapsed().as_secs_f64();
                eprintln!("lateness, run {}: leadflow run done", run + 1);
            } else {
                raws.push(raw(&tmp.path().join(format!("raw-{run}.db")), &offsets)?);
                raw_secs += t.elapsed().as_secs_f64();
                eprintln!("lateness, run {}: raw side done", run + 1);
            }
        }
    }

    let per_run = |f: &dyn Fn(&Service) -> Vec<f64>| -> Vec<Stats> {
        svcs.iter().map(|s| Stats::of(f(s))).collect()
    };
    let fired = per_run(&|s| s.before.iter().map(Fired::fired_ms).collect());
    let seen = per_run(&|s| s.before.iter().map(Fired::seen_ms).collect());
    let a_fired = per_run(&|s| s.appended.iter().map(Fired::fired_ms).collect());
    let a_seen = per_run(&|s| s.appended.iter().map(Fired::seen_ms).collect());
    let raw_stats = |f: &dyn Fn(&Raw) -> Vec<f64>| -> Vec<Stats> {
        raws.iter().map(|r| Stats::of(f(r))).collect()
    };
    let woke = raw_stats(&|r| r.woke.clone());
    let committed = raw_stats(&|r| r.committed.clone());
    let raw_seen = raw_stats(&|r| r.seen.clone());
    let mut per_due = BTreeMap::<DateTime<Utc>, usize>::new();
    for f in &svcs[0].before {
        *per_due.entry(f.due).or_default() += 1;
    }
    let in_burst: usize = per_due.values().filter(|&&k| k > 1).sum();
    let pass =
        Stats::median_of(&fired).p99 < TARGET_P99_MS && Stats::median_of(&seen).p99 < TARGET_P99_MS;
    let total = |f: fn(&Service) -> i64| svcs.iter().map(f).sum::<i64>();

    let mut table = String::from(
        "| lateness, ms | median | p90 | p99 | max | target | result | p99 of each run |\n\
         |---|---:|---:|---:|---:|---:|---|---|\n",
    );
    table += &Stats::row_of(
        &fired,
        &format!("1. `leadflow run`, {n} deadlines: fired (`occurred_at` − `due_at`)"),
        true,
    );
    table += &Stats::row_of(
        &seen,
        "2. `leadflow run`, the same: committed and seen by another process (first read − `due_at`)",
        true,
    );
    table += &Stats::row_of(
        &a_fired,
        &format!("3. `leadflow run`, {m} deadlines appended while it runs, due 1 s later: fired"),
        true,
    );
    table += &Stats::row_of(
        &a_seen,
        "4. `leadflow run`, the same: seen by another process",
        true,
    );
    table += &Stats::row_of(
        &woke,
        "5. raw tokio + rusqlite, same schedule: woke (after `sleep_until`)",
        false,
    );
    table += &Stats::row_of(&committed, "6. raw: committed", false);
    table += &Stats::row_of(&raw_seen, "7. raw: seen by another reader", false);

    let text = format!(
        "# Benchmarks: how late `leadflow run` fires deadlines\n\n\
Generated by `cargo bench -p leadflow-cli --bench lateness` (source: `cli/benches/lateness.rs`); do not edit by hand. \
The real `leadflow run` fires deadlines on the wall clock while the bench reads the database from another process; \
raw tokio + rusqlite doing the same work (sleep until each due time, append one event) runs in the same run, \
the two sides taking turns over {runs} runs (leadflow first in odd-numbered runs, raw first in even-numbered ones); \
each figure is the median over the runs of that run's statistic. Both sides use the same SQLite settings: {}. \
The machine is shared and noisy: read the tails beside the raw side's.{}\n\n\
Target (issue): lateness of `leadflow run` firing a deadline, median and p99 over 1,000 deadlines, p99 < {TARGET_P99_MS:.0} ms: \
**{}**.\n\n{table}\n\
- Sizes: {n} deadlines named `callback`, one per lead, due from {} s after they were scheduled, {} ms apart, \
every {BURST_EVERY}th starting a burst of {BURST} due at the same instant ({bursts} bursts, {in_burst} deadlines in them), \
over {:.1} s; then {m} more appended one per transaction every {} ms while the service runs, each due 1 s after it was appended.\n\
- The deadlines are `deadline.scheduled` events appended through the store API before `leadflow run` starts: \
the service reads the timers when it starts and sleeps until the next one. Timers that other processes append while it runs \
are seen at its next poll (every 250 ms), so a deadline due sooner than that after being appended elsewhere can be up to a poll late; \
rows 3–4 are due after the poll and must be on time.\n\
- `leadflow run` with its defaults, `RUST_LOG=warn` ({} log lines over all runs); the rule on `deadline_elapsed` \
notifies the lead's responsible: {} notifications queued for {} deadlines over all runs, {} incidents; exit 0 on SIGTERM.\n\
- Fired: the `occurred_at` of `deadline.elapsed`, the service's clock when its tick began. Seen: when the bench, reading the \
log read-only every {} ms, first saw the committed event. Raw: a current-thread tokio loop, `sleep_until` each due time, then one \
INSERT in its own transaction (WAL); woke = before the INSERT, committed = after the commit, seen = when a thread reading \
the table read-only every {} ms first saw the row. Simultaneous deadlines are inserted one after the other on the raw side \
and fired in one transaction by leadflow.\n\
- Machine: {}.\n\
- Time taken (measured): `leadflow run` side {svc_secs:.0} s, raw side {raw_secs:.0} s; whole run {:.0} s.\n\n\
## Rerun\n\n\
```sh\n\
cargo bench -p leadflow-cli --bench lateness                          # this file\n\
LEADFLOW_BENCH_QUICK=1 cargo bench -p leadflow-cli --bench lateness   # quick (100 deadlines), writes this file only with LEADFLOW_BENCH_OUT\n\
```\n\n\
Sizes: `LEADFLOW_BENCH_DEADLINES`, `LEADFLOW_BENCH_SPACING_MS`, `LEADFLOW_BENCH_APPENDED`, `LEADFLOW_BENCH_RUNS`; `LEADFLOW_BENCH_DIR` for the \
folders, `LEADFLOW_BENCH_OUT` for this file.\n",
        leadflow_tests::raw::describe(Synchronous::Full),
        if quick {
            "\n\n**Quick mode (`LEADFLOW_BENCH_QUICK=1`): fewer deadlines than the full run; the target is judged on these.**"
        } else {
            ""
        },
        if pass { "pass" } else { "miss" },
        LEAD_TIME.as_secs(),
        spacing.as_millis(),
        span.as_secs_f64(),
        APPENDED_EVERY.as_millis(),
        svcs.iter().map(|s| s.log_lines).sum::<usize>(),
        total(|s| s.notifications),
        (n + m) * runs,
        total(|s| s.incidents),
        READ_EVERY.as_millis(),
        READ_EVERY.as_millis(),
        machine(),
        started.elapsed().as_secs_f64(),
    );
    println!("{text}");
    let out = std::env::var_os("LEADFLOW_BENCH_OUT")
        .map(PathBuf::from)
        .or_else(|| (!quick).then(|| PathBuf::from("docs/BENCHMARKS-RUN.md")));
    if let Some(path) = out {
        let path = if path.is_relative() {
            Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/..")).join(path)
        } else {
            path
        };
        std::fs::write(&path, &text)?;
        eprintln!("wrote {}", path.display());
    }
    Ok(())
}
