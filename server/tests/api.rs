//! The native API end to end, on a real socket: every route's happy path and its errors, the
//! writer's guarantees (answers after the commit, nothing appended for bad input), `If-Match`,
//! `Idempotency-Key`, lists, the log, health and metrics.

use leadflow_testkit::http::Client;
use leadflow_testkit::serve::Server;
use leadflow_testkit::{ASSIGN_AND_QUALIFY_RULES, config};
use serde_json::{Value, json};

fn server() -> Server {
    Server::start(config(), ASSIGN_AND_QUALIFY_RULES)
}

/// The head of the log, read over the API.
fn head(c: &Client) -> i64 {
    c.get("/readyz").json()["database"]["head"]
        .as_i64()
        .unwrap()
}

fn create(c: &Client, body: Value) -> Value {
    let r = c.post("/api/v1/leads", &body);
    assert_eq!(r.status, 201, "{}", r.text());
    r.json()
}

#[test]
fn a_created_lead_is_answered_after_the_robots_reacted_with_its_etag_and_location() {
    let s = server();
    let c = s.client();
    let r = c.post(
        "/api/v1/leads",
        &json!({"name": "Ivan", "phones": ["+7 900 123-45-67"], "source": "web_form"}),
    );
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(r.header("location"), Some("/api/v1/leads/1"));
    let body = r.json();
    assert_eq!(body["id"], 1);
    assert_eq!(body["events"][0]["type"], "lead.created");
    // The round robin assigned it in the same commit: the answer shows the lead as the robots
    // left it, and their events.
    assert_eq!(body["lead"]["responsible"], "ivanov");
    assert_eq!(body["lead"]["phones"][0], "+79001234567");
    let robots: Vec<&str> = body["robots"]["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap())
        .collect();
    assert_eq!(robots, ["lead.assigned", "deadline.scheduled"]);
    let version = body["lead"]["version"].as_i64().unwrap();
    assert_eq!(r.header("etag"), Some(format!("\"{version}\"").as_str()));

    let got = c.get("/api/v1/leads/1");
    assert_eq!(got.status, 200);
    assert_eq!(got.header("etag"), r.header("etag"));
    assert_eq!(got.json()["responsible"], "ivanov");
    let etag = got.header("etag").unwrap().to_owned();
    let not_modified = c.request("GET", "/api/v1/leads/1", &[("if-none-match", &etag)], b"");
    assert_eq!(not_modified.status, 304);

    // The event was recorded as the API's.
    let events = c
        .get("/api/v1/events?stream=lead-1&type=lead.created")
        .json();
    assert_eq!(events["events"][0]["actor"], "api:admin");
    let timers = c.get("/api/v1/leads/1/timers").json();
    assert_eq!(timers["timers"][0]["name"], "qualification");
}

#[test]
fn changes_move_and_assign_check_if_match_and_a_stale_version_is_a_409_with_the_current_one() {
    let s = server();
    let c = s.client();
    let lead = create(&c, json!({"name": "Anna", "emails": ["anna@example.ru"]}));
    let v = lead["lead"]["version"].as_i64().unwrap();
    let before = head(&c);
    let stale = c.request(
        "PATCH",
        "/api/v1/leads/1",
        &[
            ("content-type", "application/json"),
            ("if-match", &format!("\"{}\"", v - 1)),
        ],
        br#"{"comment": "late"}"#,
    );
    assert_eq!(stale.status, 409, "{}", stale.text());
    assert_eq!(stale.json()["error"]["current_version"], v);
    assert_eq!(head(&c), before, "a refused change appends nothing");

    let ok = c.request(
        "PATCH",
        "/api/v1/leads/1",
        &[
            ("content-type", "application/json"),
            ("if-match", &format!("\"{v}\"")),
        ],
        br#"{"comment": "called back"}"#,
    );
    assert_eq!(ok.status, 200, "{}", ok.text());
    assert_eq!(ok.json()["lead"]["comment"], "called back");
    let moved = c.post("/api/v1/leads/1/move", &json!({"stage": "in_work"}));
    assert_eq!(moved.status, 200, "{}", moved.text());
    assert_eq!(moved.json()["lead"]["stage"], "in_work");
    let assigned = c.post("/api/v1/leads/1/assign", &json!({"to": "petrova"}));
    assert_eq!(assigned.status, 200, "{}", assigned.text());
    assert_eq!(assigned.json()["lead"]["responsible"], "petrova");
}

#[test]
fn a_business_refusal_is_a_422_with_the_engines_message_and_appends_nothing() {
    let s = server();
    let c = s.client();
    create(&c, json!({"name": "Oleg"}));
    let before = head(&c);
    let r = c.post("/api/v1/leads/1/move", &json!({"stage": "nowhere"}));
    assert_eq!(r.status, 422, "{}", r.text());
    let e = r.json()["error"].clone();
    assert_eq!(e["code"], "unknown_stage");
    assert_eq!(e["field"], "stage");
    assert!(
        e["message"]
            .as_str()
            .unwrap()
            .contains("unknown stage 'nowhere'"),
        "{e}"
    );
    let r = c.post("/api/v1/leads/99/move", &json!({"stage": "in_work"}));
    assert_eq!(r.status, 404, "{}", r.text());
    assert_eq!(head(&c), before);
}

/// A bad request: method, path, headers, body, the status and error code it must get.
type Case<'a> = (
    &'a str,
    &'a str,
    Vec<(&'a str, &'a str)>,
    Vec<u8>,
    u16,
    &'a str,
);

#[test]
fn bad_input_gets_a_clear_4xx_and_appends_nothing() {
    let s = server();
    let c = s.client();
    let before = head(&c);
    let json_ct = [("content-type", "application/json")];
    let cases: Vec<Case> = vec![
        (
            "POST",
            "/api/v1/leads",
            json_ct.to_vec(),
            b"{".to_vec(),
            400,
            "malformed_json",
        ),
        (
            "POST",
            "/api/v1/leads",
            json_ct.to_vec(),
            b"[1,2]".to_vec(),
            400,
            "not_an_object",
        ),
        (
            "POST",
            "/api/v1/leads",
            json_ct.to_vec(),
            b"{\"name\": \"\xff\"}".to_vec(),
            400,
            "invalid_utf8",
        ),
        (
            "POST",
            "/api/v1/leads",
            json_ct.to_vec(),
            br#"{"nmae": "x"}"#.to_vec(),
            400,
            "invalid_argument",
        ),
        (
            "POST",
            "/api/v1/leads",
            json_ct.to_vec(),
            br#"{"name": 5}"#.to_vec(),
            400,
            "invalid_argument",
        ),
        (
            "POST",
            "/api/v1/leads",
            vec![("content-type", "text/plain")],
            b"hi".to_vec(),
            415,
            "unsupported_media_type",
        ),
        (
            "POST",
            "/api/v1/leads",
            json_ct.to_vec(),
            format!("{{\"name\": \"{}\"}}", "x".repeat(2 << 20)).into_bytes(),
            413,
            "too_large",
        ),
        (
            "GET",
            "/api/v1/leads/99999999999999999999999",
            vec![],
            vec![],
            404,
            "not_found",
        ),
        ("GET", "/api/v1/leads/-1", vec![], vec![], 404, "not_found"),
        (
            "GET",
            "/api/v1/leads?limit=100000",
            vec![],
            vec![],
            400,
            "invalid_field",
        ),
        (
            "GET",
            "/api/v1/leads?colour=red",
            vec![],
            vec![],
            400,
            "invalid_field",
        ),
        (
            "GET",
            "/api/v1/leads?created_since=yesterday-ish",
            vec![],
            vec![],
            400,
            "invalid_field",
        ),
        (
            "DELETE",
            "/api/v1/leads",
            vec![],
            vec![],
            405,
            "method_not_allowed",
        ),
        (
            "GET",
            "/api/v1/nothing/here",
            vec![],
            vec![],
            404,
            "not_found",
        ),
        (
            "PATCH",
            "/api/v1/leads/1",
            json_ct.to_vec(),
            b"{}".to_vec(),
            400,
            "nothing_to_change",
        ),
        (
            "POST",
            "/api/v1/leads",
            vec![
                ("content-type", "application/json"),
                ("idempotency-key", ""),
            ],
            b"{}".to_vec(),
            400,
            "invalid_field",
        ),
        (
            "PATCH",
            "/api/v1/leads/1",
            vec![("content-type", "application/json"), ("if-match", "soon")],
            br#"{"name": "x"}"#.to_vec(),
            400,
            "invalid_field",
        ),
    ];
    for (method, path, headers, body, status, code) in cases {
        let r = c.request(method, path, &headers, &body);
        assert_eq!(r.status, status, "{method} {path}: {}", r.text());
        assert_eq!(
            r.header("content-type"),
            Some("application/json"),
            "{method} {path}"
        );
        let e = r.json();
        assert_eq!(e["error"]["code"], code, "{method} {path}: {e}");
        assert!(!e["error"]["message"].as_str().unwrap().is_empty());
    }
    let unknown = c.post("/api/v1/leads", &json!({"nmae": "x"})).json();
    assert_eq!(unknown["error"]["field"], "nmae");
    assert_eq!(head(&c), before, "no bad request appended anything");
}

#[test]
fn a_retry_with_the_same_idempotency_key_gets_the_first_answer_and_appends_nothing() {
    let s = server();
    let c = s.client();
    let body = br#"{"name": "Retry", "phones": ["+79005550001"]}"#;
    let h = [
        ("content-type", "application/json"),
        ("idempotency-key", "k-1"),
    ];
    let first = c.request("POST", "/api/v1/leads", &h, body);
    assert_eq!(first.status, 201, "{}", first.text());
    let after_first = head(&c);
    let again = c.request("POST", "/api/v1/leads", &h, body);
    assert_eq!(again.status, 201);
    assert_eq!(again.json(), first.json());
    assert_eq!(again.header("idempotent-replayed"), Some("true"));
    assert_eq!(again.header("etag"), first.header("etag"));
    assert_eq!(again.header("location"), first.header("location"));
    assert_eq!(head(&c), after_first, "the retry appended nothing");
    let other = c.request("POST", "/api/v1/leads", &h, br#"{"name": "Someone else"}"#);
    assert_eq!(other.status, 422, "{}", other.text());
    assert_eq!(other.json()["error"]["code"], "idempotency_key_reused");
    assert_eq!(head(&c), after_first);
    let list = c.get("/api/v1/leads").json();
    assert_eq!(list["items"].as_array().unwrap().len(), 1);
}

#[test]
fn idempotency_keys_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("leadflow.db");
    leadflow_store::Store::open(&db, &leadflow_store::Options::default()).unwrap();
    let body = br#"{"name": "Once"}"#;
    let h = [
        ("content-type", "application/json"),
        ("idempotency-key", "restart-1"),
    ];
    let first = {
        let s = Server::start_on(db.clone(), config(), "");
        let r = s.client().request("POST", "/api/v1/leads", &h, body);
        s.stop();
        r
    };
    assert_eq!(first.status, 201);
    let s = Server::start_on(db, config(), "");
    let again = s.client().request("POST", "/api/v1/leads", &h, body);
    assert_eq!(again.status, 201);
    assert_eq!(again.json(), first.json());
    assert_eq!(
        s.client().get("/api/v1/leads").json()["items"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
}

#[test]
fn idempotency_keys_are_kept_two_days_then_forgotten() {
    use chrono::TimeDelta;
    use leadflow_engine::clock::ManualClock;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("leadflow.db");
    leadflow_store::Store::open(&db, &leadflow_store::Options::default()).unwrap();
    let clock = std::sync::Arc::new(ManualClock::new(chrono::Utc::now()));
    let h = [
        ("content-type", "application/json"),
        ("idempotency-key", "kept-1"),
    ];
    let post = |body: &[u8]| {
        let s = Server::start_with_clock(db.clone(), config(), "", clock.clone());
        let r = s.client().request("POST", "/api/v1/leads", &h, body);
        s.stop();
        r
    };
    assert_eq!(post(br#"{"name": "First"}"#).status, 201);
    // A day and a half later the key is still known: another body under it is refused.
    clock.advance(TimeDelta::hours(36));
    let r = post(br#"{"name": "Second"}"#);
    assert_eq!(r.status, 422, "{}", r.text());
    assert_eq!(r.json()["error"]["code"], "idempotency_key_reused");
    // Past two days the service forgot it at its start: the key is free again.
    clock.advance(TimeDelta::hours(13));
    let r = post(br#"{"name": "Second"}"#);
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(r.json()["lead"]["name"], "Second");
}

#[test]
fn lists_filter_and_page_with_a_cursor_through_every_row_once() {
    let s = server();
    let c = s.client();
    for i in 0..23 {
        create(
            &c,
            json!({"name": format!("Lead {i}"), "source": if i % 2 == 0 { "web_form" } else { "call" }}),
        );
    }
    let mut seen = Vec::new();
    let mut path = "/api/v1/leads?limit=5&source=web_form".to_owned();
    loop {
        let page = c.get(&path).json();
        for item in page["items"].as_array().unwrap() {
            assert_eq!(item["source"], "web_form");
            seen.push(item["id"].as_i64().unwrap());
        }
        match page["next_cursor"].as_str() {
            Some(cur) => path = format!("/api/v1/leads?limit=5&source=web_form&cursor={cur}"),
            None => break,
        }
    }
    seen.sort_unstable();
    assert_eq!(seen, (1..=23).step_by(2).collect::<Vec<i64>>());
    let by_team = c.get("/api/v1/leads?team=first_line&limit=500").json();
    assert_eq!(by_team["items"].as_array().unwrap().len(), 23);
    let found = c.get("/api/v1/leads?q=Lead%2017").json();
    assert_eq!(found["items"][0]["name"], "Lead 17");
    let bad = c.get("/api/v1/leads?stage=in_work&responsible=nobody");
    assert_eq!(bad.status, 400);
    assert_eq!(bad.json()["error"]["field"], "responsible");
}

#[test]
fn a_cursor_is_a_keyset_so_rows_added_meanwhile_neither_repeat_nor_skip_a_row() {
    let s = server();
    let c = s.client();
    for i in 0..6 {
        create(&c, json!({"name": format!("Lead {i}"), "source": "call"}));
    }
    // Newest first: 6, 5, 4 — then three more leads arrive before the next page.
    let first = c.get("/api/v1/leads?limit=3").json();
    let ids = |p: &Value| -> Vec<i64> {
        p["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["id"].as_i64().unwrap())
            .collect()
    };
    assert_eq!(ids(&first), [6, 5, 4]);
    assert!(first["items"][0]["version"].as_i64().unwrap() >= 1);
    for i in 6..9 {
        create(&c, json!({"name": format!("Lead {i}"), "source": "call"}));
    }
    let cur = first["next_cursor"].as_str().unwrap().to_owned();
    let second = c.get(&format!("/api/v1/leads?limit=3&cursor={cur}")).json();
    assert_eq!(
        ids(&second),
        [3, 2, 1],
        "an offset would have repeated 6, 5, 4"
    );
    assert_eq!(second["next_cursor"], Value::Null);
    // Oldest first pages the other way.
    let asc = c.get("/api/v1/leads?limit=4&order=asc").json();
    assert_eq!(ids(&asc), [1, 2, 3, 4]);
    let cur = asc["next_cursor"].as_str().unwrap().to_owned();
    let asc2 = c
        .get(&format!("/api/v1/leads?limit=4&order=asc&cursor={cur}"))
        .json();
    assert_eq!(ids(&asc2), [5, 6, 7, 8]);
    // Another head's cursor, another order's cursor, garbage: a 400 naming the cursor.
    let r = c.get(&format!("/api/v1/leads?limit=4&cursor={cur}"));
    assert_eq!(r.status, 400, "{}", r.text());
    assert_eq!(r.json()["error"]["field"], "cursor");
    for bad in ["zz", "d", "d-4", "o3", "%FF"] {
        let r = c.get(&format!("/api/v1/leads?cursor={bad}"));
        assert_eq!(r.status, 400, "{bad}: {}", r.text());
        assert_eq!(r.json()["error"]["field"], "cursor", "{bad}");
    }
    let r = c.get("/api/v1/leads?order=sideways");
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["error"]["field"], "order");
    // Contacts page by keyset too.
    for i in 0..3 {
        let r = c.post("/api/v1/contacts", &json!({"name": format!("Contact {i}")}));
        assert_eq!(r.status, 201, "{}", r.text());
    }
    let p1 = c.get("/api/v1/contacts?limit=2").json();
    let cur = p1["next_cursor"].as_str().unwrap().to_owned();
    let p2 = c
        .get(&format!("/api/v1/contacts?limit=2&cursor={cur}"))
        .json();
    let mut all = ids(&p1);
    all.extend(ids(&p2));
    assert_eq!(all, [3, 2, 1]);
    assert_eq!(p2["next_cursor"], Value::Null);
}

#[test]
fn contacts_companies_deals_and_tasks_have_their_routes() {
    let s = server();
    let c = s.client();
    let contact = c.post(
        "/api/v1/contacts",
        &json!({"name": "Pavel", "phones": ["+79007770011"]}),
    );
    assert_eq!(contact.status, 201, "{}", contact.text());
    let company = c.post(
        "/api/v1/companies",
        &json!({"name": "OOO Stone", "inn": "7707083893"}),
    );
    assert_eq!(company.status, 201, "{}", company.text());
    let deal = c.post(
        "/api/v1/deals",
        &json!({"title": "Countertop", "pipeline": "goods", "contact": 1}),
    );
    assert_eq!(deal.status, 201, "{}", deal.text());
    let task = c.post(
        "/api/v1/tasks",
        &json!({"kind": "call", "title": "Call back", "assignee": "ivanov", "deal": 1}),
    );
    assert_eq!(task.status, 201, "{}", task.text());
    let done = c.post("/api/v1/tasks/1/complete", &json!({"result": "reached"}));
    assert_eq!(done.status, 200, "{}", done.text());
    let again = c.post("/api/v1/tasks/1/complete", &json!({}));
    assert_eq!(again.status, 422, "{}", again.text());
    for path in [
        "/api/v1/contacts",
        "/api/v1/companies",
        "/api/v1/deals",
        "/api/v1/tasks",
    ] {
        let l = c.get(path);
        assert_eq!(l.status, 200, "{path}: {}", l.text());
        assert_eq!(l.json()["items"].as_array().unwrap().len(), 1, "{path}");
    }
    for path in [
        "/api/v1/contacts/1",
        "/api/v1/companies/1",
        "/api/v1/deals/1",
        "/api/v1/tasks/1",
    ] {
        assert_eq!(c.get(path).status, 200, "{path}");
    }
    let moved = c.post("/api/v1/deals/1/move", &json!({"stage": "won"}));
    assert!(
        moved.status == 200 || moved.status == 422,
        "{}",
        moved.text()
    );
    let renamed = c.json(
        "PATCH",
        "/api/v1/companies/1",
        &json!({"name": "OOO Granite"}),
    );
    assert_eq!(renamed.status, 200, "{}", renamed.text());
    assert_eq!(renamed.json()["company"]["name"], "OOO Granite");
}

#[test]
fn the_event_stream_sends_the_log_from_a_position_as_server_sent_events() {
    let s = server();
    let c = s.client();
    create(&c, json!({"name": "Streamed"}));
    // Read the stream until the lead's creation arrives (the connection stays open: read
    // what comes within a second).
    use std::io::{Read, Write};
    let mut sock = std::net::TcpStream::connect(s.addr).unwrap();
    sock.set_read_timeout(Some(std::time::Duration::from_secs(2)))
        .unwrap();
    write!(
        sock,
        "GET /api/v1/events/stream?after=0 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\n\r\n",
        leadflow_testkit::serve::ADMIN_SECRET
    )
    .unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&got).contains("event: deadline.scheduled") {
        match sock.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
    }
    let text = String::from_utf8_lossy(&got);
    assert!(text.contains("text/event-stream"), "{text}");
    assert!(text.contains("event: lead.created"), "{text}");
    assert!(text.contains("id: 2"), "{text}");
}

#[test]
fn health_readiness_and_metrics_answer() {
    let s = server();
    let c = s.client();
    assert_eq!(c.get("/healthz").json()["status"], "alive");
    let ready = c.get("/readyz");
    assert_eq!(ready.status, 200);
    assert_eq!(ready.json()["ready"], true);
    assert_eq!(ready.json()["rules"], 1);
    create(&c, json!({"name": "Counted"}));
    let m = c.get("/metrics");
    assert_eq!(m.status, 200);
    let text = m.text();
    for name in [
        "leadflow_http_requests_total",
        "leadflow_http_request_seconds",
        "leadflow_commit_batch_size",
        "leadflow_outbox_depth",
    ] {
        assert!(text.contains(name), "{name} missing from /metrics:\n{text}");
    }
    assert!(text.contains("route=\"/api/v1/leads\""), "{text}");
    let id = c.request("GET", "/healthz", &[("x-request-id", "req-abc-1")], b"");
    assert_eq!(id.header("x-request-id"), Some("req-abc-1"));
}

#[test]
fn the_openapi_document_lists_exactly_the_routes_of_the_router() {
    let s = server();
    let doc = s.client().get("/api/v1/openapi.json").json();
    assert_eq!(doc["openapi"], "3.1.0");
    let mut documented: Vec<(String, String)> = Vec::new();
    for (path, ops) in doc["paths"].as_object().unwrap() {
        for method in ops.as_object().unwrap().keys() {
            documented.push((method.clone(), path.clone()));
        }
    }
    documented.sort();
    // The router's routes, read from its source: `.route("/x", post(..).get(..))`.
    let src =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/src/api/mod.rs")).unwrap();
    let mut routed = Vec::new();
    for (i, _) in src.match_indices(".route(") {
        // The call's text, up to its closing parenthesis.
        let call = &src[i + ".route(".len()..];
        let mut depth = 1;
        let end = call
            .char_indices()
            .find(|(_, ch)| {
                match ch {
                    '(' => depth += 1,
                    ')' => depth -= 1,
                    _ => {}
                }
                depth == 0
            })
            .map(|(k, _)| k)
            .unwrap();
        let call = &call[..end];
        let path = call.split('"').nth(1).unwrap();
        for m in ["get", "post", "patch", "put", "delete"] {
            let called = call.match_indices(&format!("{m}(")).any(|(k, _)| {
                k == 0
                    || !call.as_bytes()[k - 1].is_ascii_alphanumeric()
                        && call.as_bytes()[k - 1] != b'_'
            });
            if called {
                routed.push((m.to_owned(), format!("/api/v1{path}")));
            }
        }
    }
    routed.sort();
    assert_eq!(documented, routed);
    // And each documented route answers something other than "no such route".
    for (method, path) in routed.iter().filter(|(_, p)| !p.ends_with("/stream")) {
        let p = path.replace("{id}", "1");
        let r = s.client().request(
            &method.to_uppercase(),
            &p,
            &[("content-type", "application/json")],
            b"{}",
        );
        assert!(!r.text().contains("no such route"), "{method} {p}");
    }
}
