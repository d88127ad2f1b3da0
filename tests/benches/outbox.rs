//! The outbox's benchmark (issue 10): 10,000 webhooks — one per `lead.created`, for an endpoint
//! subscribed to it — delivered by `leadflow-delivery`'s worker to a local receiver that fails
//! 30 % of first attempts (a 503, chosen by the message's `webhook-id`), with backoff and
//! retries, every attempt's outcome an event; beside the same POSTs (same bodies, signed, same
//! concurrency, failures retried at once) sent by a plain HTTP client with no bookkeeping, in
//! the same run. Checks that every message is delivered and that the receiver, deduplicating by
//! `webhook-id`, sees each once; reports deliveries per second. Writes
//! `docs/BENCHMARKS-OUTBOX.md`.
//!
//! ```text
//! cargo bench -p leadflow-tests --bench outbox                 # full run, writes the report
//! LEADFLOW_BENCH_QUICK=1 cargo bench -p leadflow-tests --bench outbox   # 1,000 webhooks, writes nothing
//! ```
//!
//! `LEADFLOW_BENCH_WEBHOOKS` (default 10,000; quick 1,000), `LEADFLOW_BENCH_DIR` (default
//! cargo's target/tmp), `LEADFLOW_BENCH_OUT` (relative to the workspace root).

// A benchmark's output is its figures (stdout) and its progress (stderr).
#![allow(clippy::print_stdout, clippy::print_stderr)]

/// The binary's allocator (leadflow's `main.rs`), so the figures are the binary's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use leadflow_delivery::{Deliverer, Direct};
use leadflow_engine::event::LeadCreated;
use leadflow_engine::{Actor, Config, EntityKind, Event, EventMeta, StreamId};
use leadflow_store::{Options, Store, Synchronous};
use leadflow_testkit::receiver::{Got, Receiver, Reply};
use leadflow_testkit::serve::Wall;
use leadflow_testkit::{repo, t0};
use leadflow_tests::raw;
use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;
use std::io::{Read, Write};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
/// Messages sent at once: the worker's page (`SEND_PAGE`), and the plain client's threads.
const CONCURRENCY: usize = 64;

/// Whether the receiver fails the first attempt of this message: 3 in 10, by its id.
fn fails_first(id: &str) -> bool {
    let h = id.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    });
    h % 10 < 3
}

/// A receiver failing the first attempt of 30 % of the messages, and which ids it answered
/// with a 2xx (as a receiver deduplicating by `webhook-id` keeps them).
fn receiver() -> (Receiver, Arc<Mutex<HashMap<String, usize>>>) {
    let seen: Arc<Mutex<HashMap<String, usize>>> = Arc::default();
    let attempts = seen.clone();
    let rx = Receiver::start_with(move |_, got: &Got| {
        let id = got.header("webhook-id").to_owned();
        let mut seen = attempts.lock().unwrap();
        let n = seen.entry(id.clone()).or_default();
        *n += 1;
        if *n == 1 && fails_first(&id) {
            Reply::Status(503)
        } else {
            Reply::Status(204)
        }
    });
    (rx, seen)
}

fn lead(id: i64) -> Event {
    Event::LeadCreated(LeadCreated {
        id,
        title: format!("Webhook lead {id}"),
        name: Some(format!("Client {id}")),
        phones: vec![format!("+7900{id:07}")],
        emails: Vec::new(),
        source: "web_form".into(),
        client_type: None,
        pipeline: "lead".into(),
        stage: "new".into(),
        fields: Default::default(),
        comment: None,
        contact: None,
        company: None,
        responsible: None,
    })
}

/// leadflow's side: an endpoint, `n` leads, then the worker until every message is delivered.
/// Answers (seconds, attempts, the outcome events appended).
fn ours(dir: &std::path::Path, n: i64, url: &str) -> Result<(f64, usize, i64)> {
    let path = dir.join("outbox-bench.db");
    raw::remove_db(&path);
    let mut store = Store::open(
        &path,
        &Options {
            synchronous: Synchronous::Full,
            ..Options::default()
        },
    )?;
    let mut config = Config::from_toml(
        "leadflow.toml",
        &std::fs::read_to_string(repo("examples/leadflow.toml"))?,
    )?;
    config.delivery.backoff_base = Duration::from_millis(20);
    config.delivery.backoff_max = Duration::from_millis(200);
    let meta = EventMeta::root(t0(), Actor::System);
    store.write(t0(), |tx| {
        tx.execute(
            &config,
            &leadflow_engine::Command::AddEndpoint(leadflow_engine::command::NewEndpoint {
                url: url.to_owned(),
                events: vec!["lead.created".into()],
                format: None,
                secret: SECRET.into(),
            }),
            &meta,
        )
        .map(|_| ())
    })?;
    for chunk in (1..=n).collect::<Vec<_>>().chunks(1000) {
        store.write(t0(), |tx| {
            for id in chunk {
                tx.append(StreamId::new(EntityKind::Lead, *id), 0, &[lead(*id)], &meta)?;
            }
            Ok::<_, leadflow_store::Error>(())
        })?;
    }
    let head = store.last_position()?;
    let deliverer = Deliverer::new(&config)?;
    let clock = Wall;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let started = Instant::now();
    let mut attempts = 0;
    rt.block_on(async {
        let mut db = Direct {
            store: &mut store,
            clock: &clock,
        };
        loop {
            let report = deliverer.run_once(&mut db, &clock).await?;
            attempts += report.attempts;
            if report.failed > 0 {
                return Err(format!("{} messages were given up on", report.failed).into());
            }
            if report.is_empty() && !report.more {
                match Deliverer::next_due(db.store)? {
                    None => return Ok::<_, Box<dyn std::error::Error>>(()),
                    Some(t) => {
                        let wait = (t - chrono::Utc::now()).to_std().unwrap_or_default();
                        tokio::time::sleep(wait.min(Duration::from_millis(50))).await;
                    }
                }
            }
            if started.elapsed() > Duration::from_secs(900) {
                return Err("the outbox did not drain in 15 minutes".into());
            }
        }
    })?;
    let secs = started.elapsed().as_secs_f64();
    let appended = store.last_position()? - head;
    Ok((secs, attempts, appended))
}

/// One POST with a plain TCP connection (as the receiver answers: `connection: close`);
/// the status.
fn post(addr: &str, id: &str, body: &[u8]) -> std::io::Result<u16> {
    let ts = chrono::Utc::now().timestamp();
    let sig = leadflow_delivery::signature(SECRET, id, ts, body);
    let mut s = std::net::TcpStream::connect(addr)?;
    write!(
        s,
        "POST /hook HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nwebhook-id: {id}\r\nwebhook-timestamp: {ts}\r\nwebhook-signature: {sig}\r\nconnection: close\r\n\r\n",
        body.len()
    )?;
    s.write_all(body)?;
    let mut answer = String::new();
    s.read_to_string(&mut answer)?;
    Ok(answer
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0))
}

/// The plain side: the same messages (bodies of the same size), `CONCURRENCY` threads, a
/// failure retried at once. Answers (seconds, attempts).
fn plain(n: i64, url: &str) -> Result<(f64, usize)> {
    let addr = url
        .strip_prefix("http://")
        .and_then(|r| r.split('/').next())
        .ok_or("receiver URL")?
        .to_owned();
    let next = Arc::new(Mutex::new(1i64));
    let attempts = Arc::new(Mutex::new(0usize));
    let started = Instant::now();
    let workers: Vec<_> = (0..CONCURRENCY)
        .map(|_| {
            let (next, attempts, addr) = (next.clone(), attempts.clone(), addr.clone());
            std::thread::spawn(move || -> std::io::Result<()> {
                loop {
                    let id = {
                        let mut n = next.lock().unwrap();
                        let id = *n;
                        *n += 1;
                        id
                    };
                    if id > n {
                        return Ok(());
                    }
                    let webhook_id = format!("plain_{id}");
                    let body = serde_json::json!({"id": webhook_id, "type": "lead.created", "position": id + 1, "stream": format!("lead-{id}"), "version": 1, "payload": {"id": id, "title": format!("Webhook lead {id}")}}).to_string();
                    loop {
                        *attempts.lock().unwrap() += 1;
                        if (200..300).contains(&post(&addr, &webhook_id, body.as_bytes())?) {
                            break;
                        }
                    }
                }
            })
        })
        .collect();
    for w in workers {
        w.join().map_err(|_| "a sender panicked")??;
    }
    let attempts = *attempts.lock().unwrap();
    Ok((started.elapsed().as_secs_f64(), attempts))
}

/// Checks the receiver saw each of `n` ids with `prefix` answered once with a 2xx.
fn check(seen: &HashMap<String, usize>, n: i64, prefix: &str) -> Result<(usize, usize)> {
    let ours: Vec<(&String, &usize)> = seen.iter().filter(|(k, _)| k.starts_with(prefix)).collect();
    let ids: HashSet<&String> = ours.iter().map(|(k, _)| *k).collect();
    if ids.len() as i64 != n {
        return Err(format!(
            "{prefix}: the receiver saw {} distinct ids, not {n}",
            ids.len()
        )
        .into());
    }
    let failed_first = ours.iter().filter(|(k, _)| fails_first(k)).count();
    let retried = ours.iter().filter(|(_, c)| **c > 1).count();
    Ok((failed_first, retried))
}

fn main() -> Result<()> {
    if std::env::args().any(|a| a == "--list") {
        return Ok(());
    }
    let quick = std::env::var_os("LEADFLOW_BENCH_QUICK").is_some();
    let n: i64 = std::env::var("LEADFLOW_BENCH_WEBHOOKS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if quick { 1000 } else { 10_000 });
    let dir = std::env::var_os("LEADFLOW_BENCH_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")));
    std::fs::create_dir_all(&dir)?;
    let load_before = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let (rx, seen) = receiver();
    eprintln!("leadflow: {n} webhooks through the outbox…");
    let (our_secs, our_attempts, appended) = ours(&dir, n, &rx.url)?;
    let (our_failed_first, our_retried) = check(&seen.lock().unwrap(), n, "msg_")?;
    eprintln!("plain client: {n} POSTs…");
    let (plain_secs, plain_attempts) = plain(n, &rx.url)?;
    let (plain_failed_first, _) = check(&seen.lock().unwrap(), n, "plain_")?;
    let load_after = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let rate = |secs: f64| n as f64 / secs;
    let mut out = String::new();
    writeln!(out, "# Benchmark: the outbox delivered")?;
    writeln!(out)?;
    writeln!(
        out,
        "Generated by `cargo bench -p leadflow-tests --bench outbox` (source: `tests/benches/outbox.rs`); do not edit by hand."
    )?;
    writeln!(out)?;
    writeln!(
        out,
        "{n} webhooks — one per `lead.created`, for one endpoint subscribed to it — to a local receiver (127.0.0.1, a thread per connection, `connection: close`) that answers 503 to the first attempt of 30 % of the messages (chosen by `webhook-id`) and 204 otherwise. leadflow's side is `leadflow-delivery`'s worker as `run` and `serve` run it: fan-out (`delivery.queued` per message), pages of {CONCURRENCY} due messages POSTed at once with the Standard Webhooks headers, every attempt's outcome appended (`delivery.succeeded`, or `delivery.attempted` with the next attempt after a backoff of 20 ms doubling to 200 ms, with jitter), synchronous=FULL. The plain side POSTs the same number of signed JSON bodies from {CONCURRENCY} threads with no database, retrying a failure at once. Same run, same receiver."
    )?;
    writeln!(out)?;
    writeln!(
        out,
        "| side | webhooks | attempts | first attempts failed | seconds | delivered per second |"
    )?;
    writeln!(out, "|---|---:|---:|---:|---:|---:|")?;
    writeln!(
        out,
        "| leadflow outbox | {n} | {our_attempts} | {our_failed_first} | {our_secs:.2} | {:.0} |",
        rate(our_secs)
    )?;
    writeln!(
        out,
        "| plain HTTP client | {n} | {plain_attempts} | {plain_failed_first} | {plain_secs:.2} | {:.0} |",
        rate(plain_secs)
    )?;
    writeln!(out)?;
    writeln!(
        out,
        "Every message was delivered: the receiver, deduplicating by `webhook-id`, saw each of the {n} ids answered once with a 2xx ({our_retried} of leadflow's after a retry, each retry with the same `webhook-id`); the worker appended {appended} events for them (queued, attempted, succeeded). leadflow's figure includes the backoff waits of the retried messages, which the plain side does not wait."
    )?;
    writeln!(out)?;
    writeln!(
        out,
        "Load average (1, 5, 15 min) before: {}; after: {} (2 CPUs shared with other work).",
        load_before
            .split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" "),
        load_after
            .split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    )?;
    print!("{out}");
    let target = std::env::var("LEADFLOW_BENCH_OUT")
        .ok()
        .or((!quick).then(|| "docs/BENCHMARKS-OUTBOX.md".to_owned()));
    if let Some(t) = target {
        std::fs::write(repo(&t), &out)?;
        eprintln!("wrote {t}");
    }
    Ok(())
}
