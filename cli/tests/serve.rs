//! `leadflow serve` as a user runs it: the real binary in a folder `init` set up, on a real
//! socket. SIGTERM stops it gracefully with nothing acknowledged lost, SIGHUP reloads the rule
//! folder (a broken one is refused, the old set stays), and SIGKILL under load loses no
//! acknowledged lead and no robot effect, several times over.

use leadflow_testkit::cli::{Env, Serving};
use leadflow_testkit::http::{Client, send};
use leadflow_testkit::receiver::Receiver;
use serde_json::json;
use std::net::SocketAddr;
use std::process::Child;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

const ROUND_ROBIN: &str = r#"
[[rules]]
id = "assign-first-line"
trigger = { on = "created", entity = "lead" }

  [[rules.robots]]
  robot = "assign"
  strategy = "round_robin"
  team = "first_line"
"#;

/// An admin token made with `leadflow token create`: its secret.
fn admin_token(env: &Env) -> String {
    let out = env.ok(&["--json", "token", "create", "ops", "--role", "admin"]);
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    v["secret"].as_str().unwrap().to_owned()
}

fn start(env: &Env) -> Serving {
    env.serve("info")
}

fn signal(child: &Child, sig: &str) {
    let ok = std::process::Command::new("kill")
        .args([&format!("-{sig}"), &child.id().to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill -{sig}");
}

/// Clients creating leads until `stop`: the titles acknowledged with 201.
fn load(
    addr: SocketAddr,
    secret: &str,
    clients: usize,
    stop: Arc<AtomicBool>,
    tag: &'static str,
) -> Vec<std::thread::JoinHandle<Vec<String>>> {
    let auth = format!("Bearer {secret}");
    (0..clients)
        .map(|i| {
            let stop = stop.clone();
            let auth = auth.clone();
            std::thread::spawn(move || {
                let mut acked = Vec::new();
                let mut j = 0;
                while !stop.load(Ordering::SeqCst) {
                    let title = format!("{tag}-{i}-{j}");
                    j += 1;
                    let body = json!({"title": title}).to_string();
                    let key = format!("key-{title}");
                    match send(
                        addr,
                        "POST",
                        "/api/v1/leads",
                        &[
                            ("content-type", "application/json"),
                            ("idempotency-key", &key),
                            ("authorization", &auth),
                        ],
                        body.as_bytes(),
                    ) {
                        Ok(r) if r.status == 201 => acked.push(title),
                        // Refused while stopping, or the connection died with the process.
                        Ok(_) | Err(_) => {}
                    }
                }
                acked
            })
        })
        .collect()
}

#[test]
fn sigterm_under_load_stops_gracefully_and_loses_nothing_acknowledged() {
    let env = Env::with_rules("assign.toml", ROUND_ROBIN);
    let secret = admin_token(&env);
    let mut s = start(&env);
    let stop = Arc::new(AtomicBool::new(false));
    let workers = load(s.addr, &secret, 16, stop.clone(), "term");
    std::thread::sleep(std::time::Duration::from_millis(400));
    signal(&s.child, "TERM");
    let status = s.child.wait().unwrap();
    stop.store(true, Ordering::SeqCst);
    let acked: Vec<String> = workers
        .into_iter()
        .flat_map(|w| w.join().unwrap())
        .collect();
    assert!(status.success(), "serve exits 0 on SIGTERM: {}", s.log());
    assert!(!acked.is_empty());
    let log = s.log();
    assert!(log.contains("leadflow serve: stopped"), "{log}");
    let titles: Vec<String> = env
        .log()
        .iter()
        .filter(|e| e["type"] == "lead.created")
        .map(|e| e["payload"]["title"].as_str().unwrap().to_owned())
        .collect();
    for t in &acked {
        assert_eq!(
            titles.iter().filter(|x| *x == t).count(),
            1,
            "{t} stored once"
        );
    }
    env.ok(&["verify"]);
}

#[test]
fn sigkill_under_load_again_and_again_loses_no_acknowledged_lead_and_no_robot_effect() {
    let env = Env::with_rules("assign.toml", ROUND_ROBIN);
    let secret = admin_token(&env);
    let mut acked = Vec::new();
    for round in 0..3 {
        let mut s = start(&env);
        let stop = Arc::new(AtomicBool::new(false));
        let tag: &'static str = ["kill0", "kill1", "kill2"][round];
        let workers = load(s.addr, &secret, 16, stop.clone(), tag);
        std::thread::sleep(std::time::Duration::from_millis(300));
        s.child.kill().unwrap();
        s.child.wait().unwrap();
        stop.store(true, Ordering::SeqCst);
        acked.extend(workers.into_iter().flat_map(|w| w.join().unwrap()));
    }
    assert!(
        acked.len() > 30,
        "the clients got answers before each kill: {}",
        acked.len()
    );
    // A last start processes whatever the kills left unprocessed.
    let mut s = start(&env);
    signal(&s.child, "TERM");
    s.child.wait().unwrap();
    let log = env.log();
    let created: Vec<(&str, String)> = log
        .iter()
        .filter(|e| e["type"] == "lead.created")
        .map(|e| {
            (
                e["stream"].as_str().unwrap(),
                e["payload"]["title"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    for t in &acked {
        assert_eq!(
            created.iter().filter(|(_, x)| x == t).count(),
            1,
            "{t} stored once"
        );
    }
    for (stream, _) in &created {
        let assigned = log
            .iter()
            .filter(|e| e["type"] == "lead.assigned" && e["stream"] == *stream)
            .count();
        assert_eq!(assigned, 1, "{stream}: the round robin acted exactly once");
    }
    env.ok(&["verify"]);
}

#[test]
fn sighup_reloads_the_rule_folder_and_keeps_the_old_set_when_the_new_one_is_broken() {
    let env = Env::with_rules("assign.toml", ROUND_ROBIN);
    let secret = admin_token(&env);
    let mut s = start(&env);
    let c = Client::new(s.addr).bearer(&secret);
    env.write_rules(
        "broken.toml",
        "[[rules]]\nid = \"x\"\ntrigger = { on = \"nonsense\" }\n",
    );
    signal(&s.child, "HUP");
    let wait_for = |needle: &str| {
        for _ in 0..500 {
            if s.log().contains(needle) {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        panic!("{needle:?} never logged: {}", s.log());
    };
    wait_for("rule reload refused");
    assert!(s.log().contains("broken.toml:3:"), "{}", s.log());
    // The old set is still in force: a new lead is assigned.
    let r = c.post("/api/v1/leads", &json!({"name": "After a bad reload"}));
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(r.json()["lead"]["responsible"], "ivanov");
    // The same over the API says what is wrong.
    let api = c.post("/api/v1/rules/activate", &json!({}));
    assert_eq!(api.status, 422, "{}", api.text());
    assert!(api.text().contains("broken.toml:3:"), "{}", api.text());
    std::fs::remove_file(env.path().join("rules/broken.toml")).unwrap();
    env.write_rules(
        "assign.toml",
        &ROUND_ROBIN.replace("round_robin", "least_loaded"),
    );
    signal(&s.child, "HUP");
    wait_for("rules reloaded");
    signal(&s.child, "TERM");
    assert!(s.child.wait().unwrap().success());
    let activations = env
        .log()
        .iter()
        .filter(|e| e["type"] == "ruleset.activated")
        .count();
    assert_eq!(activations, 2, "the first set and the reloaded one");
}

#[test]
fn serve_refuses_a_fixed_clock_and_a_bad_address() {
    let env = Env::new();
    let out = env.run(&["serve"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(leadflow_testkit::cli::stderr(&out).contains("follows the wall clock"));
    let out = env
        .wall_clock_cmd()
        .args(["serve", "--listen", "nowhere"])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        leadflow_testkit::cli::stderr(&out)
    );
    assert!(leadflow_testkit::cli::stderr(&out).contains("bad --listen address 'nowhere'"));
}

#[test]
fn serve_delivers_a_subscribed_event_signed_to_a_local_listener() {
    let env = Env::with_rules("assign.toml", ROUND_ROBIN);
    let secret = admin_token(&env);
    let rx = Receiver::ok();
    env.ok(&[
        "webhook",
        "add",
        &rx.url,
        "--events",
        "lead.created",
        "--secret",
        "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
    ]);
    let mut s = start(&env);
    let c = Client::new(s.addr).bearer(&secret);
    let r = c.post("/api/v1/leads", &json!({"name": "Hooked"}));
    assert_eq!(r.status, 201, "{}", r.text());
    if rx.wait_for(1, std::time::Duration::from_secs(20)).is_err() {
        panic!("nothing delivered: {}", s.log());
    }
    // The endpoint's signing secret is never served by the API.
    let added = c.get("/api/v1/events?type=endpoint.added").json();
    assert_eq!(added["events"][0]["payload"]["secret"], "***", "{added}");
    assert!(
        !added
            .to_string()
            .contains("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
    );
    signal(&s.child, "TERM");
    assert!(s.child.wait().unwrap().success());
    let req = &rx.got()[0];
    assert_eq!((req.method.as_str(), req.path.as_str()), ("POST", "/hook"));
    assert!(!req.header("webhook-id").is_empty(), "{req:?}");
    assert!(!req.header("webhook-timestamp").is_empty(), "{req:?}");
    assert!(
        req.header("webhook-signature").starts_with("v1,"),
        "{req:?}"
    );
    assert_eq!(req.json()["type"], "lead.created", "{req:?}");
    assert!(req.body.contains("Hooked"), "{req:?}");
}

#[test]
fn sigterm_with_an_event_stream_open_still_stops_within_the_grace_period() {
    use std::io::{Read, Write};
    let env = Env::new();
    let secret = admin_token(&env);
    let mut s = start(&env);
    let mut sock = std::net::TcpStream::connect(s.addr).unwrap();
    write!(
        sock,
        "GET /api/v1/events/stream?after=0 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {secret}\r\n\r\n"
    )
    .unwrap();
    sock.set_read_timeout(Some(std::time::Duration::from_secs(5)))
        .unwrap();
    let mut buf = [0u8; 1024];
    let n = sock.read(&mut buf).unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).contains("200 OK"));
    let asked = std::time::Instant::now();
    signal(&s.child, "TERM");
    loop {
        if let Some(status) = s.child.try_wait().unwrap() {
            assert!(status.success(), "{}", s.log());
            break;
        }
        assert!(
            asked.elapsed() < std::time::Duration::from_secs(15),
            "serve did not stop with a stream open: {}",
            s.log()
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert!(s.log().contains("leadflow serve: stopped"));
}
