//! The outbox, delivered: `leadflow run` POSTs subscriptions and rule webhooks to a local
//! receiver (a std TcpListener on 127.0.0.1:0) with the Standard Webhooks headers, retries
//! with the same `webhook-id`, keeps order per stream, disables an endpoint that answers 410,
//! gives up at the bound with an incident, redelivers after a SIGKILL, and mails through a
//! fake SMTP relay; the log then verifies and replays with the new tables.

use leadflow_testkit::cli::{Env, json_lines, stderr};
use leadflow_testkit::receiver::{Receiver, Reply};
use serde_json::Value;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// Waits (polling) until `cond` holds, at most 30 s.
fn wait_until(what: &str, mut cond: impl FnMut() -> bool, log: &Env) {
    let start = Instant::now();
    while !cond() {
        if start.elapsed() > Duration::from_secs(30) {
            let run_log = std::fs::read_to_string(log.path().join("run.log")).unwrap_or_default();
            panic!("timed out waiting for {what}; leadflow run said:\n{run_log}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `leadflow run` in the background, killed (SIGKILL) when dropped.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn run(env: &Env) -> Running {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(env.path().join("run.log"))
        .unwrap();
    Running(
        env.wall_clock_cmd()
            .arg("run")
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap(),
    )
}

/// A folder whose configuration delivers quickly: 1 s between attempts.
fn env_with(delivery: &str) -> Env {
    let env = Env::new();
    let config = env.path().join("leadflow.toml");
    let mut text = std::fs::read_to_string(&config).unwrap();
    let defaults = [
        ("timeout", "\"5s\""),
        ("backoff_base", "\"1s\""),
        ("backoff_max", "\"1s\""),
        ("max_age", "\"3650d\""),
    ];
    text.push_str("\n[delivery]\n");
    for (k, v) in defaults {
        if !delivery.contains(&format!("{k} =")) {
            text.push_str(&format!("{k} = {v}\n"));
        }
    }
    text.push_str(&format!("secret = \"{SECRET}\"\n{delivery}\n"));
    std::fs::write(config, text).unwrap();
    env
}

const WEBHOOK_RULE: &str = r#"
[[rules]]
id = "tell-the-site"
trigger = { on = "created", entity = "lead" }

  [[rules.robots]]
  robot = "webhook"
  url = "URL"
  body = "new lead {lead.title}"
"#;

fn with_webhook_rule(env: &Env, url: &str) {
    env.write_rules("hook.toml", &WEBHOOK_RULE.replace("URL", url));
}

/// A command on the wall clock (after `run` dated events by it).
fn wall_ok(env: &Env, args: &[&str]) -> String {
    let out = env.wall_clock_cmd().args(args).output().unwrap();
    assert!(out.status.success(), "{args:?} failed: {}", stderr(&out));
    String::from_utf8(out.stdout).unwrap()
}

/// A refused command on the wall clock: its exit code and message, and nothing appended.
fn wall_refused(env: &Env, args: &[&str], needle: &str) {
    let before = env.log().len();
    let out = env.wall_clock_cmd().args(args).output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{args:?}: {}", stderr(&out));
    assert!(stderr(&out).contains(needle), "{args:?}: {}", stderr(&out));
    assert_eq!(env.log().len(), before, "{args:?} appended events");
}

fn types(env: &Env) -> Vec<String> {
    env.log_types()
}

fn count(env: &Env, ty: &str) -> usize {
    types(env).iter().filter(|t| *t == ty).count()
}

fn outbox(env: &Env) -> Vec<Value> {
    json_lines(&env.ok(&["--json", "outbox", "list"]))
}

fn verified(env: &Env) {
    env.ok(&["verify"]);
    env.ok(&["replay"]);
    env.ok(&["verify"]);
}

#[test]
fn a_subscription_is_delivered_signed_with_the_event() {
    let rx = Receiver::start(|_| Reply::Status(204));
    let env = env_with("");
    let added = json_lines(&env.ok(&[
        "--json",
        "webhook",
        "add",
        &rx.url,
        "--events",
        "lead.created",
        "--secret",
        SECRET,
    ]));
    assert_eq!(added[0]["endpoint"], "endpoint-1");
    env.ok(&[
        "lead",
        "create",
        "--name",
        "Anna",
        "--phone",
        "+79161234567",
    ]);
    let _run = run(&env);
    wait_until("the delivery", || !rx.got().is_empty(), &env);
    let got = rx.got().remove(0);
    let id = got.header("webhook-id");
    let ts: i64 = got.header("webhook-timestamp").parse().unwrap();
    assert!(!id.is_empty());
    assert_eq!(
        got.header("webhook-signature"),
        leadflow_delivery::signature(SECRET, id, ts, got.body.as_bytes()),
        "the signature covers id.timestamp.body under the endpoint's secret"
    );
    // Someone without the secret cannot sign the body.
    assert_ne!(
        got.header("webhook-signature"),
        leadflow_delivery::signature(
            "whsec_AAAAAAAAAAAAAAAAAAAAAAAA",
            id,
            ts,
            got.body.as_bytes()
        )
    );
    let body = got.json();
    assert_eq!(body["type"], "lead.created");
    assert_eq!(body["stream"], "lead-1");
    assert_eq!(body["payload"]["name"], "Anna");
    assert!(body["position"].as_i64().unwrap() > 0);
    wait_until(
        "the outcome",
        || count(&env, "delivery.succeeded") == 1,
        &env,
    );
    let rows = outbox(&env);
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0]["state"], "succeeded");
    assert_eq!(rows[0]["webhook_id"], id);
    verified(&env);
}

#[test]
fn a_rule_webhook_is_retried_with_the_same_webhook_id_after_500s() {
    let rx = Receiver::start(|n| Reply::Status(if n < 2 { 500 } else { 200 }));
    let env = env_with("");
    with_webhook_rule(&env, &rx.url);
    env.ok(&["lead", "create", "--name", "Boris"]);
    let _run = run(&env);
    wait_until("three attempts", || rx.got().len() >= 3, &env);
    wait_until(
        "the outcome",
        || count(&env, "delivery.succeeded") == 1,
        &env,
    );
    let got = rx.got();
    assert_eq!(got.len(), 3, "delivered once after two 500s");
    let ids: Vec<&str> = got.iter().map(|g| g.header("webhook-id")).collect();
    assert!(ids.iter().all(|i| *i == ids[0] && !i.is_empty()), "{ids:?}");
    assert!(got[0].header("webhook-signature").starts_with("v1,"));
    assert_eq!(got[0].json()["payload"]["text"], "new lead Boris");
    assert_eq!(count(&env, "delivery.attempted"), 2);
    let log = env.log();
    let attempted: Vec<&Value> = log
        .iter()
        .filter(|e| e["type"] == "delivery.attempted")
        .collect();
    assert_eq!(attempted[0]["payload"]["status"], 500);
    assert_eq!(attempted[1]["payload"]["attempt"], 2);
    verified(&env);
}

#[test]
fn an_endpoint_that_answers_410_is_disabled() {
    let rx = Receiver::start(|_| Reply::Status(410));
    let env = env_with("");
    env.ok(&["webhook", "add", &rx.url, "--events", "lead.*"]);
    env.ok(&["lead", "create", "--name", "Gone"]);
    let _run = run(&env);
    wait_until(
        "endpoint.disabled",
        || count(&env, "endpoint.disabled") == 1,
        &env,
    );
    let eps = json_lines(&env.ok(&["--json", "webhook", "list", "--all"]));
    assert_eq!(eps[0]["state"], "disabled");
    assert!(
        env.ok(&["webhook", "list"])
            .contains("no webhook endpoints")
    );
    assert_eq!(count(&env, "delivery.failed"), 1);
    assert_eq!(count(&env, "incident.recorded"), 1);
    // Nothing more goes to it.
    wall_ok(&env, &["lead", "create", "--name", "Later"]);
    std::thread::sleep(Duration::from_millis(800));
    assert_eq!(rx.got().len(), 1);
    verified(&env);
}

#[test]
fn past_the_bound_on_attempts_a_message_fails_with_an_incident_and_can_be_retried() {
    let fail = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let f = fail.clone();
    let rx = Receiver::start(move |_| {
        Reply::Status(if f.load(std::sync::atomic::Ordering::SeqCst) {
            503
        } else {
            200
        })
    });
    let env = env_with("max_attempts = 2");
    with_webhook_rule(&env, &rx.url);
    env.ok(&["lead", "create", "--name", "Bounded"]);
    {
        let _run = run(&env);
        wait_until(
            "delivery.failed",
            || count(&env, "delivery.failed") == 1,
            &env,
        );
    }
    assert_eq!(rx.got().len(), 2, "two attempts, then it gave up");
    let journal = env.ok(&["journal"]);
    assert!(journal.contains("delivery_failed"), "{journal}");
    let failed = json_lines(&env.ok(&["--json", "outbox", "list", "--failed"]));
    assert_eq!(failed.len(), 1);
    assert!(
        failed[0]["last_error"]
            .as_str()
            .unwrap()
            .contains("gave up after 2 attempts"),
        "{failed:?}"
    );
    let id = failed[0]["id"].as_i64().unwrap().to_string();
    // A pending or delivered message cannot be retried; a failed one gets a new round.
    wall_ok(&env, &["outbox", "retry", &id]);
    wall_refused(&env, &["outbox", "retry", &id], "only a failed message");
    fail.store(false, std::sync::atomic::Ordering::SeqCst);
    let _run = run(&env);
    wait_until(
        "delivery.succeeded",
        || count(&env, "delivery.succeeded") == 1,
        &env,
    );
    let got = rx.got();
    assert_eq!(got.len(), 3);
    assert_eq!(got[2].header("webhook-id"), got[0].header("webhook-id"));
    verified(&env);
}

#[test]
fn a_dropped_message_is_never_delivered() {
    let rx = Receiver::start(|_| Reply::Status(200));
    let env = env_with("");
    with_webhook_rule(&env, &rx.url);
    env.ok(&["lead", "create", "--name", "Dropped"]);
    let rows = outbox(&env);
    let id = rows[0]["id"].as_i64().unwrap().to_string();
    env.ok(&["outbox", "drop", &id]);
    env.refused_saying(&["outbox", "drop", &id], 1, &["is dropped"]);
    env.refused_saying(&["outbox", "retry", "999"], 1, &["no message 999"]);
    env.ok(&["lead", "create", "--name", "Kept"]);
    let _run = run(&env);
    wait_until(
        "delivery.succeeded",
        || count(&env, "delivery.succeeded") == 1,
        &env,
    );
    let got = rx.got();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].json()["payload"]["text"], "new lead Kept");
    assert_eq!(outbox(&env)[1]["state"], "dropped");
}

#[test]
fn order_is_kept_per_stream_and_endpoint() {
    // The first attempt fails: the lead's later events wait for it.
    let rx = Receiver::start(|n| Reply::Status(if n == 0 { 500 } else { 200 }));
    let env = env_with("");
    env.ok(&["webhook", "add", &rx.url, "--events", "lead.*"]);
    env.ok(&["lead", "create", "--name", "Order"]);
    env.ok(&["lead", "update", "1", "--name", "Order 2"]);
    env.ok(&["lead", "update", "1", "--name", "Order 3"]);
    let _run = run(&env);
    wait_until(
        "three deliveries",
        || count(&env, "delivery.succeeded") == 3,
        &env,
    );
    let seen: Vec<(String, i64)> = rx
        .got()
        .iter()
        .map(|g| {
            let b = g.json();
            (
                b["type"].as_str().unwrap().to_owned(),
                b["position"].as_i64().unwrap(),
            )
        })
        .collect();
    let types: Vec<&str> = seen.iter().map(|(t, _)| t.as_str()).collect();
    assert_eq!(
        types,
        [
            "lead.created",
            "lead.created",
            "lead.updated",
            "lead.updated"
        ],
        "the updates waited for the retried creation"
    );
    assert!(seen[2].1 < seen[3].1, "{seen:?}");
    verified(&env);
}

#[test]
fn a_run_killed_during_a_delivery_redelivers_it_with_the_same_webhook_id() {
    let rx = Receiver::start(|n| {
        if n == 0 {
            Reply::Hang
        } else {
            Reply::Status(200)
        }
    });
    let env = env_with("timeout = \"60s\"");
    env.ok(&["webhook", "add", &rx.url, "--events", "lead.created"]);
    env.ok(&["lead", "create", "--name", "Crash"]);
    {
        let mut first = run(&env);
        wait_until("the first attempt", || rx.got().len() == 1, &env);
        // SIGKILL while the receiver holds the request: no outcome was recorded.
        first.0.kill().unwrap();
        first.0.wait().unwrap();
    }
    assert_eq!(count(&env, "delivery.succeeded"), 0);
    assert_eq!(count(&env, "delivery.attempted"), 0);
    let _second = run(&env);
    wait_until(
        "the redelivery",
        || count(&env, "delivery.succeeded") == 1,
        &env,
    );
    let got = rx.got();
    assert_eq!(got.len(), 2);
    assert_eq!(got[1].header("webhook-id"), got[0].header("webhook-id"));
    assert_eq!(got[1].body, got[0].body);
    verified(&env);
}

/// A tiny SMTP relay on 127.0.0.1: accepts one message per connection, keeps its DATA.
fn smtp_relay() -> (u16, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let mails = Arc::new(Mutex::new(Vec::new()));
    let kept = mails.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            let kept = kept.clone();
            std::thread::spawn(move || {
                let mut reader = BufReader::new(conn.try_clone().unwrap());
                let _ = conn.write_all(b"220 relay ready\r\n");
                let mut line = String::new();
                let mut data: Option<String> = None;
                loop {
                    line.clear();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 {
                        return;
                    }
                    if let Some(d) = &mut data {
                        if line == ".\r\n" {
                            kept.lock().unwrap().push(std::mem::take(d));
                            data = None;
                            let _ = conn.write_all(b"250 queued\r\n");
                        } else {
                            d.push_str(&line);
                        }
                        continue;
                    }
                    let verb = line.get(..4).unwrap_or("").to_ascii_uppercase();
                    let reply: &[u8] = match verb.as_str() {
                        "EHLO" | "HELO" => b"250 relay\r\n",
                        "DATA" => {
                            data = Some(String::new());
                            b"354 go on\r\n"
                        }
                        "QUIT" => {
                            let _ = conn.write_all(b"221 bye\r\n");
                            return;
                        }
                        _ => b"250 ok\r\n",
                    };
                    let _ = conn.write_all(reply);
                }
            });
        }
    });
    (port, mails)
}

#[test]
fn an_email_notification_goes_through_the_smtp_relay() {
    let (port, mails) = smtp_relay();
    let env = env_with(&format!(
        "\n[delivery.smtp]\nhost = \"127.0.0.1\"\nport = {port}\ntls = \"none\"\nfrom = \"crm@example.com\"\n"
    ));
    env.write_rules(
        "mail.toml",
        r#"
[[rules]]
id = "mail-the-responsible"
trigger = { on = "created", entity = "lead" }

  [[rules.robots]]
  robot = "notify"
  to = "responsible"
  channel = "email"
  text = "New lead {lead.title}"
"#,
    );
    env.ok(&[
        "lead",
        "create",
        "--name",
        "Mail",
        "--responsible",
        "ivanov",
    ]);
    let _run = run(&env);
    wait_until("the e-mail", || !mails.lock().unwrap().is_empty(), &env);
    wait_until(
        "delivery.succeeded",
        || count(&env, "delivery.succeeded") == 1,
        &env,
    );
    let mail = mails.lock().unwrap()[0].clone();
    assert!(mail.contains("To: ivanov@example.ru"), "{mail}");
    assert!(mail.contains("From: crm@example.com"), "{mail}");
    assert!(mail.contains("New lead Mail"), "{mail}");
    verified(&env);
}

#[test]
fn a_bad_endpoint_is_refused_naming_the_field_and_appends_nothing() {
    let env = Env::new();
    let before = env.log().len();
    env.refused_saying(
        &[
            "webhook",
            "add",
            "ftp://example.com/x",
            "--events",
            "lead.*",
        ],
        1,
        &["url", "ftp://example.com/x"],
    );
    env.refused_saying(
        &[
            "webhook",
            "add",
            "https://example.com/x",
            "--events",
            "laed.*",
        ],
        1,
        &["events", "laed.*", "matches no event type"],
    );
    env.refused_saying(
        &[
            "webhook",
            "add",
            "https://example.com/x",
            "--events",
            "lead.*",
            "--format",
            "xml",
        ],
        1,
        &["format", "xml"],
    );
    env.refused_saying(
        &["webhook", "remove", "7"],
        1,
        &["endpoint-7 does not exist"],
    );
    assert_eq!(env.log().len(), before);
    // A made secret is printed once; removing twice is refused.
    let out = env.ok(&[
        "webhook",
        "add",
        "https://example.com/x",
        "--events",
        "lead.*",
    ]);
    assert!(out.contains("secret: whsec_"), "{out}");
    assert!(!env.ok(&["webhook", "list"]).contains("whsec_"));
    env.ok(&["webhook", "remove", "endpoint-1"]);
    env.refused_saying(&["webhook", "remove", "1"], 1, &["already removed"]);
}

#[test]
fn a_bad_delivery_section_is_an_error_with_its_place() {
    let env = Env::new();
    let config = env.path().join("leadflow.toml");
    let mut text = std::fs::read_to_string(&config).unwrap();
    let line = text.lines().count() + usize::from(text.ends_with('\n')) + 3;
    text.push_str("\n[delivery]\nmax_attempts = 3\ntimeout = \"soon\"\n");
    std::fs::write(config, text).unwrap();
    let out = env.run(&["lead", "list"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains(&format!("leadflow.toml:{line}:")) && err.contains("delivery.timeout"),
        "{err}"
    );
}
