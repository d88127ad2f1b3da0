//! Error statuses on a real socket: every refusal the service makes — 400, 401, 403, 404, 405,
//! 409, 413, 415, 422, 429, 503 (writer queue full, commit failed on a held write lock, request
//! timeout) — is its JSON error `{"error": {"code", "message", "field"?, "current_version"?}}`
//! with the right status (and `Retry-After` for 429 and 503), and none of them appended
//! anything to the log.

use leadflow_testkit::http::{Client, Response};
use leadflow_testkit::serve::{ADMIN_SECRET, Server, make_token};
use leadflow_testkit::{Db, config};
use serde_json::{Value, json};
use std::io::{Read, Write};
use std::time::{Duration, Instant};

/// The head of the log, read over the API.
fn head(c: &Client) -> i64 {
    c.get("/readyz").json()["database"]["head"]
        .as_i64()
        .unwrap()
}

/// Asserts `r` is the service's JSON error with `status` and `code`: JSON content type, an
/// `error` object with only the documented keys and a non-empty message. The body.
fn assert_error(r: &Response, status: u16, code: &str) -> Value {
    assert_eq!(r.status, status, "{}", r.text());
    assert!(
        r.header("content-type")
            .is_some_and(|c| c.starts_with("application/json")),
        "status {status} without a JSON content type: {:?} {}",
        r.headers,
        r.text()
    );
    let v = r.json();
    let e = v["error"]
        .as_object()
        .unwrap_or_else(|| panic!("no error object: {v}"));
    assert_eq!(e["code"], code, "{v}");
    assert!(
        e["message"].as_str().is_some_and(|m| !m.trim().is_empty()),
        "{v}"
    );
    for k in e.keys() {
        assert!(
            ["code", "message", "field", "current_version"].contains(&k.as_str()),
            "unexpected key {k} in {v}"
        );
    }
    assert_eq!(v.as_object().unwrap().len(), 1, "{v}");
    v
}

/// Asserts a `Retry-After` of a whole number of seconds, at least 1.
fn assert_retry_after(r: &Response) -> u64 {
    let s: u64 = r
        .header("retry-after")
        .unwrap_or_else(|| panic!("no Retry-After on {}: {:?}", r.status, r.headers))
        .parse()
        .unwrap();
    assert!(s >= 1);
    s
}

/// `POST /api/v1/leads` with `name` on a thread of its own: its answer when joined.
fn create_in_background(c: &Client, name: &'static str) -> std::thread::JoinHandle<Response> {
    let c = c.clone();
    std::thread::spawn(move || c.post("/api/v1/leads", &json!({ "name": name })))
}

fn lead_count(c: &Client) -> usize {
    c.get("/api/v1/events?type=lead.created").json()["events"]
        .as_array()
        .unwrap()
        .len()
}

#[test]
fn the_common_refusals_each_have_their_status_and_json_shape_and_append_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("leadflow.db");
    leadflow_store::Store::open(&db, &leadflow_store::Options::default()).unwrap();
    let cfg = config();
    let reader = make_token(&db, &cfg, "reader", "auditor", None);
    let s = Server::start_on(db, cfg, "");
    let c = s.client();
    let created = c.post("/api/v1/leads", &json!({"name": "Anna"}));
    assert_eq!(created.status, 201, "{}", created.text());
    let version = created.json()["lead"]["version"].as_i64().unwrap();
    let before = head(&c);

    let malformed = c.request(
        "POST",
        "/api/v1/leads",
        &[("content-type", "application/json")],
        b"{\"name\": ",
    );
    assert_error(&malformed, 400, "malformed_json");
    let wrong_type = c.post("/api/v1/leads", &json!({"name": 5}));
    assert_eq!(wrong_type.status, 400, "{}", wrong_type.text());
    assert!(
        wrong_type.json()["error"]["field"].is_string(),
        "{}",
        wrong_type.text()
    );
    let not_object = c.post("/api/v1/leads", &json!([1, 2]));
    assert_error(&not_object, 400, "not_an_object");

    let anonymous = s.anonymous().post("/api/v1/leads", &json!({"name": "X"}));
    assert_error(&anonymous, 401, "unauthorized");
    let wrong = s
        .anonymous()
        .bearer("not-a-token")
        .post("/api/v1/leads", &json!({"name": "X"}));
    assert_error(&wrong, 401, "unauthorized");

    let missing = c.get("/api/v1/leads/999999");
    assert_error(&missing, 404, "not_found");
    let absurd = c.get("/api/v1/leads/99999999999999999999999999");
    assert!((400..500).contains(&absurd.status), "{}", absurd.text());
    absurd.json();

    let stale = c.request(
        "PATCH",
        "/api/v1/leads/1",
        &[
            ("content-type", "application/json"),
            ("if-match", &format!("\"{}\"", version + 5)),
        ],
        json!({"name": "Anna K"}).to_string().as_bytes(),
    );
    assert!(
        [409, 412].contains(&stale.status),
        "a stale version: {}",
        stale.text()
    );
    let body = assert_error(
        &stale,
        stale.status,
        if stale.status == 409 {
            "conflict"
        } else {
            "version_mismatch"
        },
    );
    assert_eq!(body["error"]["current_version"], version);

    let refused = c.post("/api/v1/leads/1/move", &json!({"stage": "NO_SUCH_STAGE"}));
    let body = assert_error(&refused, 422, "unknown_stage");
    assert_eq!(body["error"]["field"], "stage");

    let forbidden = s
        .anonymous()
        .bearer(&reader)
        .post("/api/v1/leads", &json!({"name": "X"}));
    assert_error(&forbidden, 403, "forbidden");

    assert_eq!(head(&c), before, "a refusal appended something");
}

#[test]
fn a_body_over_the_limit_is_a_413_json_error_and_a_body_under_it_is_taken() {
    let mut cfg = config();
    cfg.server.body_limit = 1024;
    let s = Server::start(cfg, "");
    let c = s.client();
    let before = head(&c);
    let big = json!({"name": "N".repeat(4000)});
    let r = c.post("/api/v1/leads", &big);
    let body = assert_error(&r, 413, "too_large");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("body_limit"),
        "{body}"
    );
    // The same on a change and a move.
    assert_error(&c.json("PATCH", "/api/v1/leads/1", &big), 413, "too_large");
    assert_eq!(head(&c), before);
    let small = c.post("/api/v1/leads", &json!({"name": "N".repeat(500)}));
    assert_eq!(small.status, 201, "{}", small.text());
}

#[test]
fn a_body_that_is_not_json_is_a_415_naming_the_content_type() {
    let s = Server::start(config(), "");
    let c = s.client();
    let before = head(&c);
    for ct in [
        "text/plain",
        "application/x-www-form-urlencoded",
        "application/xml",
    ] {
        let r = c.request(
            "POST",
            "/api/v1/leads",
            &[("content-type", ct)],
            br#"{"name": "Ivan"}"#,
        );
        let body = assert_error(&r, 415, "unsupported_media_type");
        assert!(
            body["error"]["message"].as_str().unwrap().contains(ct),
            "{body}"
        );
    }
    let none = c.request("POST", "/api/v1/leads", &[], br#"{"name": "Ivan"}"#);
    assert_error(&none, 415, "unsupported_media_type");
    assert_eq!(head(&c), before);
}

#[test]
fn too_many_bad_tokens_from_one_address_are_a_429_with_retry_after_even_for_a_good_token() {
    let s = Server::start(config(), "");
    let good = s.client();
    let before = head(&good);
    let allowed = leadflow_server::auth::FAILURES_ALLOWED;
    for i in 0..allowed {
        let r = s
            .anonymous()
            .bearer(&format!("wrong-secret-{i}"))
            .get("/api/v1/leads");
        assert_error(&r, 401, "unauthorized");
    }
    let r = s
        .anonymous()
        .bearer("wrong-secret-again")
        .get("/api/v1/leads");
    let body = assert_error(&r, 429, "too_many_requests");
    // Retry-After lets a client that obeys it in: it is no shorter than the wait the message
    // names (what is left of the window).
    let wait: u64 = body["error"]["message"]
        .as_str()
        .unwrap()
        .split("wait ")
        .nth(1)
        .and_then(|r| r.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no wait in {body}"));
    assert!(wait > 1, "{body}");
    assert!(assert_retry_after(&r) >= wait, "{:?} {body}", r.headers);
    // The address is refused as a whole until the window passes: the right secret too, and a
    // write with it appends nothing.
    let r = good.get("/api/v1/leads");
    assert_error(&r, 429, "too_many_requests");
    assert_retry_after(&r);
    let r = good.post("/api/v1/leads", &json!({"name": "Ivan"}));
    assert_error(&r, 429, "too_many_requests");
    // Health and metrics take no token and stay open.
    assert_eq!(s.anonymous().get("/healthz").status, 200);
    assert_eq!(head(&good), before);
    // The Bitrix24 facade refuses the address the same way, in its envelope, and its
    // Retry-After is the window too.
    let r = s.anonymous().request(
        "POST",
        &format!("/rest/1/{ADMIN_SECRET}/crm.lead.list"),
        &[("content-type", "application/json")],
        b"{}",
    );
    assert_eq!(r.status, 503, "{}", r.text());
    assert_eq!(r.json()["error"], "QUERY_LIMIT_EXCEEDED");
    assert!(assert_retry_after(&r) >= 30, "{:?}", r.headers);
}

#[test]
fn unknown_routes_are_a_json_404_and_a_wrong_method_a_json_405_with_allow() {
    let s = Server::start(config(), "");
    let c = s.client();
    let before = head(&c);
    for path in ["/nope", "/api/v1/nope", "/api/v2/leads", "/intake"] {
        assert_error(&c.get(path), 404, "not_found");
    }
    for (method, path) in [
        ("DELETE", "/api/v1/leads"),
        ("PUT", "/api/v1/leads/1"),
        ("POST", "/healthz"),
        ("GET", "/intake/site"),
    ] {
        let r = c.request(method, path, &[("content-type", "application/json")], b"{}");
        if r.status == 404 {
            // A form that does not exist is a 404 before its method is looked at.
            assert_eq!(path, "/intake/site", "{}", r.text());
            assert_error(&r, 404, "not_found");
            continue;
        }
        assert_error(&r, 405, "method_not_allowed");
        assert!(
            r.header("allow").is_some(),
            "{method} {path}: {:?}",
            r.headers
        );
    }
    assert_eq!(head(&c), before);
}

#[test]
fn a_full_writer_queue_and_a_commit_that_cannot_take_the_lock_are_503_with_retry_after() {
    let mut cfg = config();
    cfg.server.queue = 1;
    cfg.server.max_batch = 1;
    let s = Server::start(cfg, "");
    let c = s.client();
    let before_leads = lead_count(&c);
    // Another process holds the write lock: the writer waits in its first job (up to the busy
    // timeout), one more waits in the queue, and the next finds the queue full.
    let lock = Db::at(&s.db).hold_write_lock();
    let post = |name: &'static str| create_in_background(&c, name);
    let a = post("A");
    std::thread::sleep(Duration::from_millis(500));
    let b = post("B");
    std::thread::sleep(Duration::from_millis(500));
    let started = Instant::now();
    let full = c.post("/api/v1/leads", &json!({"name": "C"}));
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "a full queue answers at once"
    );
    let body = assert_error(&full, 503, "unavailable");
    assert!(
        body["error"]["message"].as_str().unwrap().contains("queue"),
        "{body}"
    );
    assert_retry_after(&full);
    // The Bitrix24 facade says the same in its envelope: a 503 its clients retry.
    let facade = c.request(
        "POST",
        &format!("/rest/1/{ADMIN_SECRET}/crm.lead.add"),
        &[("content-type", "application/json")],
        br#"{"fields": {"TITLE": "D", "NAME": "D"}}"#,
    );
    assert_eq!(facade.status, 503, "{}", facade.text());
    assert_eq!(
        facade.json()["error"],
        "SERVICE_UNAVAILABLE",
        "{}",
        facade.text()
    );
    assert!(
        facade.json()["error_description"]
            .as_str()
            .unwrap()
            .contains("queue"),
        "{}",
        facade.text()
    );
    assert_retry_after(&facade);
    // The first job's commit could not take the lock within the busy timeout: 503, nothing
    // kept, and the answer says so (the batch failed at its BEGIN, before any job ran).
    let a = a.join().unwrap();
    let body = assert_error(&a, 503, "unavailable");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(!message.contains("writer stopped"), "{body}");
    assert!(message.contains("write lock"), "{body}");
    assert_retry_after(&a);
    assert_eq!(lead_count(&c), before_leads, "a refused job left a lead");
    // The lock goes: the queued one commits.
    drop(lock);
    let b = b.join().unwrap();
    assert_eq!(b.status, 201, "{}", b.text());
    assert_eq!(lead_count(&c), before_leads + 1);
    let names: Vec<Value> = c.get("/api/v1/leads").json()["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["name"].clone())
        .collect();
    assert_eq!(names, [json!("B")]);
}

/// Sends the head of a request and only the first `sent` bytes of a body of `length`, then
/// waits for the answer: the status and the body.
fn slow_request(addr: std::net::SocketAddr, length: usize, sent: &[u8]) -> (u16, String, String) {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let head = format!(
        "POST /api/v1/leads HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nAuthorization: Bearer {ADMIN_SECRET}\r\nContent-Type: application/json\r\nContent-Length: {length}\r\n\r\n"
    );
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(sent).unwrap();
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status in {text:?}"));
    (status, head.to_ascii_lowercase(), body.to_owned())
}

#[test]
fn a_request_that_outlasts_the_timeout_is_a_json_503_with_retry_after_and_appends_nothing() {
    let mut cfg = config();
    cfg.server.request_timeout = chrono::Duration::milliseconds(300);
    let s = Server::start(cfg, "");
    let c = s.client();
    let before = head(&c);
    // A client that sends half its body and stalls.
    let started = Instant::now();
    let (status, head_text, body) = slow_request(s.addr, 100, br#"{"name": "#);
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(status, 503, "{head_text}\n{body}");
    assert!(head_text.contains("retry-after:"), "{head_text}");
    assert!(
        head_text.contains("content-type: application/json"),
        "{head_text}"
    );
    let v: Value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body:?}"));
    assert_eq!(v["error"]["code"], "unavailable", "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("request_timeout"),
        "{v}"
    );
    assert_eq!(head(&c), before);
    // A request in time is served as usual.
    assert_eq!(
        c.post("/api/v1/leads", &json!({"name": "Ivan"})).status,
        201
    );
}

#[test]
fn axum_rejections_are_answered_in_the_shape_of_their_route() {
    let mut cfg = config();
    cfg.server.body_limit = 1024;
    let s = Server::start(cfg, "");
    let c = s.client();
    let before = head(&c);
    // A path parameter that is not UTF-8: the native API and the intake give their JSON error.
    for (method, path) in [
        ("GET", "/api/v1/leads/%ff"),
        ("PATCH", "/api/v1/leads/%ff%fe"),
        ("POST", "/intake/%ff"),
    ] {
        let r = c.request(method, path, &[("content-type", "application/json")], b"{}");
        assert_error(&r, 400, "invalid_request");
    }
    // The facade gives the Bitrix24 envelope, for a bad path and for a body over the limit.
    let bitrix = |r: &Response, status: u16| {
        assert_eq!(r.status, status, "{}", r.text());
        let v = r.json();
        assert_eq!(v["error"], "INVALID_REQUEST", "{v}");
        assert!(
            v["error_description"]
                .as_str()
                .is_some_and(|d| !d.is_empty()),
            "{v}"
        );
    };
    bitrix(&c.get("/rest/1/%ff/crm.lead.list"), 400);
    bitrix(&c.get(&format!("/rest/1/{ADMIN_SECRET}/crm.lead.%ff")), 400);
    let big = json!({"fields": {"TITLE": "T".repeat(4000)}});
    bitrix(
        &c.post(&format!("/rest/1/{ADMIN_SECRET}/crm.lead.add"), &big),
        413,
    );
    // A form over the server's body limit (below its own) names the limit that applied.
    let r = s.anonymous().request(
        "POST",
        "/intake/site",
        &[("content-type", "application/x-www-form-urlencoded")],
        format!("name={}", "N".repeat(4000)).as_bytes(),
    );
    let body = assert_error(&r, 413, "too_large");
    assert!(
        body["error"]["message"].as_str().unwrap().contains("1024"),
        "{body}"
    );
    assert_eq!(head(&c), before);
}

#[test]
fn a_write_whose_request_timed_out_while_it_waited_in_the_queue_is_not_run() {
    let mut cfg = config();
    cfg.server.request_timeout = chrono::Duration::milliseconds(400);
    cfg.server.max_batch = 1;
    let s = Server::start(cfg, "");
    let c = s.client();
    let before = lead_count(&c);
    // The writer waits for the lock in A's batch; B waits in the queue past its timeout.
    let lock = Db::at(&s.db).hold_write_lock();
    let post = |name: &'static str| create_in_background(&c, name);
    let a = post("A");
    std::thread::sleep(Duration::from_millis(100));
    let b = post("B");
    // And a Bitrix24 client's add, which waits in the queue from a blocking task.
    let f = {
        let c = c.clone();
        std::thread::spawn(move || {
            c.request(
                "POST",
                &format!("/rest/1/{ADMIN_SECRET}/crm.lead.add"),
                &[("content-type", "application/json")],
                br#"{"fields": {"TITLE": "F", "NAME": "F"}}"#,
            )
        })
    };
    let (a, b, f) = (a.join().unwrap(), b.join().unwrap(), f.join().unwrap());
    assert_error(&a, 503, "unavailable");
    assert_error(&b, 503, "unavailable");
    assert_eq!(f.status, 503, "{}", f.text());
    drop(lock);
    // Neither job had run when its client gave up (the batch waited for the lock at its
    // BEGIN): neither is run. (A job already running when its client gives up still commits;
    // the 503 tells the client to retry with its Idempotency-Key.)
    std::thread::sleep(Duration::from_millis(500));
    let names: Vec<Value> = c.get("/api/v1/leads").json()["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["name"].clone())
        .collect();
    assert!(!names.contains(&json!("B")), "{names:?}");
    assert_eq!(lead_count(&c), before, "{names:?}");
    // The writer goes on.
    let r = c.post("/api/v1/leads", &json!({"name": "C"}));
    assert_eq!(r.status, 201, "{}", r.text());
}

/// A token revoked while the service runs (`leadflow token revoke`, another process) is
/// refused within the token cache's lifetime: a request right after the revocation may still
/// pass on the cached token, one after [`leadflow_server::auth::TOKEN_CACHE_TTL`] is a 401.
#[test]
fn a_token_revoked_while_the_service_runs_is_refused_within_the_cache_lifetime() {
    use leadflow_engine::{Actor, Command, EventMeta};
    let cfg = config();
    let s = Server::start(cfg.clone(), "");
    let secret = make_token(&s.db, &cfg, "crm", "admin", None);
    let crm = s.anonymous().bearer(&secret);
    assert_eq!(
        crm.get("/api/v1/leads").status,
        200,
        "the token works and is now cached"
    );
    let mut store = leadflow_store::Store::open(&s.db, &Default::default()).unwrap();
    store
        .write_with(&leadflow_testkit::serve::Wall, |tx| {
            tx.execute(
                &cfg,
                &Command::RevokeToken { name: "crm".into() },
                &EventMeta::root(chrono::Utc::now(), Actor::System),
            )
        })
        .unwrap();
    std::thread::sleep(leadflow_server::auth::TOKEN_CACHE_TTL + Duration::from_millis(200));
    let r = crm.get("/api/v1/leads");
    assert_error(&r, 401, "unauthorized");
    // The admin's token, looked up again too, still works.
    assert_eq!(s.client().get("/api/v1/leads").status, 200);
}
