//! Webhooks and the outbox over the native API, on a real socket with a local receiver: an
//! endpoint added with `POST /webhooks` (its secret made and shown once, never listed) gets a
//! new lead signed with that secret; a message failing past `[delivery] max_attempts` shows
//! failed in `GET /outbox` and `POST /outbox/{id}/retry` delivers it; a dropped pending
//! message is never delivered; and every error path (unknown id 404, wrong state 422, bad body
//! 400/422 naming the field, a role without the right 403) appends nothing.

use leadflow_engine::config::DEFAULT_CONFIG;
use leadflow_testkit::http::{Client, Response};
use leadflow_testkit::receiver::{Receiver, Reply};
use leadflow_testkit::serve::{Server, make_token};
use leadflow_testkit::setup::config_from;
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// The default configuration with a quick `[delivery]` section and `extra` lines in it.
fn config(extra: &str) -> leadflow_engine::Config {
    config_from(&format!(
        "{DEFAULT_CONFIG}\n[delivery]\ntimeout = \"5s\"\nbackoff_base = \"1s\"\nbackoff_max = \"1s\"\n{extra}\n"
    ))
}

/// The head of the log.
fn head(s: &Server) -> i64 {
    s.client().get("/readyz").json()["database"]["head"]
        .as_i64()
        .unwrap()
}

/// Waits (polling) until `cond` holds, at most 30 s.
fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `GET /api/v1/outbox` (with `query`): the messages and the counts by state.
fn outbox(c: &Client, query: &str) -> (Vec<Value>, Value) {
    let r = c.get(&format!("/api/v1/outbox{query}"));
    assert_eq!(r.status, 200, "{}", r.text());
    let body = r.json();
    (
        body["messages"].as_array().unwrap().clone(),
        body["counts"].clone(),
    )
}

/// Adds an endpoint for `events` at `url` with [`SECRET`]; its id.
fn add(c: &Client, url: &str, events: Value) -> i64 {
    let r = c.post(
        "/api/v1/webhooks",
        &json!({"url": url, "events": events, "secret": SECRET}),
    );
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(
        r.json()["secret"],
        Value::Null,
        "a given secret is not echoed"
    );
    r.json()["id"].as_i64().unwrap()
}

fn lead(c: &Client, name: &str) -> i64 {
    let r = c.post("/api/v1/leads", &json!({"name": name}));
    assert_eq!(r.status, 201, "{}", r.text());
    r.json()["id"].as_i64().unwrap()
}

#[test]
fn a_webhook_added_over_the_api_gets_a_new_lead_signed_with_the_secret_made_for_it() {
    let rx = Receiver::ok();
    let s = Server::start(config(""), "");
    let c = s.client();
    // With an Idempotency-Key, sent twice.
    let post = || {
        c.request(
            "POST",
            "/api/v1/webhooks",
            &[
                ("content-type", "application/json"),
                ("idempotency-key", "add-hook-1"),
            ],
            json!({"url": rx.url, "events": "lead.created, lead.stage_changed"})
                .to_string()
                .as_bytes(),
        )
    };
    let r = post();
    assert_eq!(r.status, 201, "{}", r.text());
    let added = r.json();
    assert_eq!(added["endpoint"], "endpoint-1");
    assert_eq!(
        added["events"],
        json!(["lead.created", "lead.stage_changed"])
    );
    assert_eq!(added["format"], "native");
    assert_eq!(r.header("location"), Some("/api/v1/webhooks/1"));
    let secret = added["secret"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("whsec_"), "{secret}");
    // The same key again: the remembered answer, no second endpoint.
    let again = post();
    assert_eq!(again.status, 201);
    assert_eq!(again.header("idempotent-replayed"), Some("true"));
    let listed = c.get("/api/v1/webhooks");
    assert_eq!(listed.status, 200);
    let hooks = listed.json()["webhooks"].as_array().unwrap().clone();
    assert_eq!(hooks.len(), 1, "{hooks:?}");
    assert_eq!(hooks[0]["url"], rx.url.as_str());
    assert_eq!(hooks[0]["state"], "active");
    assert!(
        !listed.text().contains(&secret) && hooks[0].get("secret").is_none(),
        "the secret is never listed: {}",
        listed.text()
    );

    lead(&c, "Anna");
    let got = rx.wait_for(1, Duration::from_secs(30)).unwrap().remove(0);
    let id = got.header("webhook-id");
    let ts: i64 = got.header("webhook-timestamp").parse().unwrap();
    assert_eq!(
        got.header("webhook-signature"),
        leadflow_delivery::signature(&secret, id, ts, got.body.as_bytes()),
        "signed with the secret the API made"
    );
    assert_eq!(got.json()["type"], "lead.created");
    assert_eq!(got.json()["payload"]["name"], "Anna");
    wait_until("the message delivered", || {
        outbox(&c, "").1["succeeded"] == 1
    });
    let (rows, _) = outbox(&c, "");
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0]["webhook_id"], id);
    assert_eq!(rows[0]["endpoint"], 1);
    assert_eq!(rows[0]["type"], "lead.created");

    // Removed, it is listed only with all=true.
    let r = c.request("DELETE", "/api/v1/webhooks/endpoint-1", &[], b"");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["endpoint"], "endpoint-1");
    assert_eq!(c.get("/api/v1/webhooks").json()["webhooks"], json!([]));
    let all = c.get("/api/v1/webhooks?all=true").json()["webhooks"].clone();
    assert_eq!(all[0]["state"], "removed", "{all}");
}

#[test]
fn a_message_failing_past_max_attempts_shows_failed_and_a_retry_delivers_it() {
    let fail = Arc::new(AtomicBool::new(true));
    let f = fail.clone();
    let rx =
        Receiver::start(move |_| Reply::Status(if f.load(Ordering::SeqCst) { 503 } else { 200 }));
    let s = Server::start(config("max_attempts = 2"), "");
    let c = s.client();
    add(&c, &rx.url, json!(["lead.created"]));
    lead(&c, "Bounded");
    wait_until("the message failed", || {
        outbox(&c, "?state=failed").0.len() == 1
    });
    let (failed, counts) = outbox(&c, "?state=failed");
    assert_eq!(counts["failed"], 1, "{counts}");
    assert_eq!(failed[0]["attempts"], 2);
    assert_eq!(failed[0]["last_status"], 503);
    assert_eq!(rx.got().len(), 2, "two attempts, then it gave up");
    assert!(outbox(&c, "?state=pending").0.is_empty());
    let id = failed[0]["id"].as_i64().unwrap();

    fail.store(false, Ordering::SeqCst);
    let r = c.post(&format!("/api/v1/outbox/{id}/retry"), &json!({}));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["id"], id);
    assert!(r.json()["position"].as_i64().unwrap() > 0);
    wait_until("the retried message delivered", || {
        outbox(&c, "").1["succeeded"] == 1
    });
    let got = rx.got();
    assert_eq!(got.len(), 3);
    assert_eq!(
        got[2].header("webhook-id"),
        got[0].header("webhook-id"),
        "the same message"
    );
    // Delivered, it cannot be retried again.
    let before = head(&s);
    let r = c.post(&format!("/api/v1/outbox/{id}/retry"), &json!({}));
    assert_eq!(r.status, 422, "{}", r.text());
    assert_eq!(r.json()["error"]["code"], "not_retryable");
    assert_eq!(
        r.json()["error"]["message"],
        format!("message {id} is succeeded: only a failed message can be retried")
    );
    assert_eq!(head(&s), before);
}

#[test]
fn a_dropped_pending_message_is_never_delivered() {
    // The first attempt fails, so the lead's second event waits behind the first in its lane.
    let rx = Receiver::start(|n| Reply::Status(if n == 0 { 500 } else { 200 }));
    let s = Server::start(config(""), "");
    let c = s.client();
    add(&c, &rx.url, json!(["lead.*"]));
    let id = lead(&c, "Dropped");
    let r = c.json(
        "PATCH",
        &format!("/api/v1/leads/{id}"),
        &json!({"name": "Dropped 2"}),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    wait_until("both messages queued", || outbox(&c, "").0.len() == 2);
    let (rows, _) = outbox(&c, "");
    let second = rows
        .iter()
        .find(|m| m["type"] == "lead.updated")
        .unwrap_or_else(|| panic!("{rows:?}"));
    assert_eq!(second["state"], "pending");
    let second = second["id"].as_i64().unwrap();
    let r = c.post(&format!("/api/v1/outbox/{second}/drop"), &json!({}));
    assert_eq!(r.status, 200, "{}", r.text());
    // The first is delivered on its second attempt; the dropped one never is.
    wait_until("the first message delivered", || {
        outbox(&c, "").1["succeeded"] == 1
    });
    std::thread::sleep(Duration::from_millis(1500));
    let got = rx.got();
    assert_eq!(
        got.len(),
        2,
        "the first message twice, the dropped one never"
    );
    assert!(got.iter().all(|g| g.json()["type"] == "lead.created"));
    let (rows, counts) = outbox(&c, "");
    assert_eq!(counts, json!({"dropped": 1, "succeeded": 1}), "{rows:?}");
    let before = head(&s);
    for (route, message) in [
        (
            "drop",
            "is dropped: only a pending or failed message can be dropped",
        ),
        ("retry", "is dropped: only a failed message can be retried"),
    ] {
        let r = c.post(&format!("/api/v1/outbox/{second}/{route}"), &json!({}));
        assert_eq!(r.status, 422, "{route}: {}", r.text());
        assert!(
            r.json()["error"]["message"]
                .as_str()
                .unwrap()
                .contains(message),
            "{route}: {}",
            r.text()
        );
    }
    assert_eq!(head(&s), before);
}

/// Whether `r` is the error `status`/`code`, naming `field` if given.
fn refused(r: &Response, status: u16, code: &str, field: Option<&str>) -> Result<(), String> {
    let body = serde_json::from_slice::<Value>(&r.body).unwrap_or(Value::Null);
    let e = &body["error"];
    let ok = r.status == status
        && e["code"] == code
        && e["message"].as_str().is_some_and(|m| !m.is_empty())
        && field.is_none_or(|f| e["field"] == f);
    if ok {
        Ok(())
    } else {
        Err(format!(
            "want {status} {code} {field:?}, got {} {}",
            r.status,
            r.text()
        ))
    }
}

#[test]
fn every_error_path_is_refused_with_its_status_and_appends_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("leadflow.db");
    leadflow_store::Store::open(&db, &leadflow_store::Options::default()).unwrap();
    let cfg = config("");
    let designer = make_token(&db, &cfg, "designer", "designer", Some("admin"));
    let first_line = make_token(&db, &cfg, "first_line", "first_line", Some("ivanov"));
    let s = Server::start_on(db, cfg, "");
    let c = s.client();
    let rx = Receiver::ok();
    let hook = add(&c, &rx.url, json!(["lead.created"]));
    let removed = add(&c, &rx.url, json!(["deal.created"]));
    let r = c.request("DELETE", &format!("/api/v1/webhooks/{removed}"), &[], b"");
    assert_eq!(r.status, 200, "{}", r.text());
    lead(&c, "Delivered");
    wait_until("the message delivered", || {
        outbox(&c, "").1["succeeded"] == 1
    });
    let delivered = outbox(&c, "").0[0]["id"].as_i64().unwrap();
    let designer = s.anonymous().bearer(&designer);
    let first_line = s.anonymous().bearer(&first_line);
    let url = rx.url.as_str();

    let post = |c: &Client, path: &str, body: Value| c.post(path, &body);
    let cases: Vec<(&str, Response, u16, &str, Option<&str>)> = vec![
        (
            "retry of no message",
            post(&c, "/api/v1/outbox/999/retry", json!({})),
            404,
            "not_found",
            None,
        ),
        (
            "drop of no message",
            post(&c, "/api/v1/outbox/999/drop", json!({})),
            404,
            "not_found",
            None,
        ),
        (
            "drop of a bad id",
            post(&c, "/api/v1/outbox/abc/drop", json!({})),
            404,
            "not_found",
            None,
        ),
        (
            "remove no webhook",
            c.request("DELETE", "/api/v1/webhooks/999", &[], b""),
            404,
            "not_found",
            None,
        ),
        (
            "remove a bad id",
            c.request("DELETE", "/api/v1/webhooks/x-1", &[], b""),
            404,
            "not_found",
            None,
        ),
        (
            "remove a removed webhook",
            c.request("DELETE", &format!("/api/v1/webhooks/{removed}"), &[], b""),
            422,
            "endpoint_removed",
            None,
        ),
        (
            "retry of a delivered message",
            post(&c, &format!("/api/v1/outbox/{delivered}/retry"), json!({})),
            422,
            "not_retryable",
            None,
        ),
        (
            "drop of a delivered message",
            post(&c, &format!("/api/v1/outbox/{delivered}/drop"), json!({})),
            422,
            "not_droppable",
            None,
        ),
        (
            "a body on retry",
            post(
                &c,
                &format!("/api/v1/outbox/{delivered}/retry"),
                json!({"now": true}),
            ),
            400,
            "invalid_field",
            Some("now"),
        ),
        (
            "no url",
            post(&c, "/api/v1/webhooks", json!({"events": ["lead.*"]})),
            400,
            "invalid_field",
            Some("url"),
        ),
        (
            "a url not a string",
            post(
                &c,
                "/api/v1/webhooks",
                json!({"url": 5, "events": ["lead.*"]}),
            ),
            400,
            "invalid_field",
            Some("url"),
        ),
        (
            "no events",
            post(&c, "/api/v1/webhooks", json!({"url": url})),
            400,
            "invalid_field",
            Some("events"),
        ),
        (
            "events a number",
            post(&c, "/api/v1/webhooks", json!({"url": url, "events": 3})),
            400,
            "invalid_field",
            Some("events"),
        ),
        (
            "events not strings",
            post(&c, "/api/v1/webhooks", json!({"url": url, "events": [1]})),
            400,
            "invalid_field",
            Some("events"),
        ),
        (
            "an unknown field",
            post(
                &c,
                "/api/v1/webhooks",
                json!({"url": url, "events": ["lead.*"], "colour": "red"}),
            ),
            400,
            "invalid_field",
            Some("colour"),
        ),
        (
            "a format not a string",
            post(
                &c,
                "/api/v1/webhooks",
                json!({"url": url, "events": ["lead.*"], "format": 1}),
            ),
            400,
            "invalid_field",
            Some("format"),
        ),
        (
            "not JSON",
            c.request(
                "POST",
                "/api/v1/webhooks",
                &[("content-type", "application/json")],
                b"{url",
            ),
            400,
            "malformed_json",
            None,
        ),
        (
            "an ftp url",
            post(
                &c,
                "/api/v1/webhooks",
                json!({"url": "ftp://hooks.example/x", "events": ["lead.*"]}),
            ),
            422,
            "invalid_value",
            Some("url"),
        ),
        (
            "empty events",
            post(&c, "/api/v1/webhooks", json!({"url": url, "events": []})),
            422,
            "invalid_value",
            Some("events"),
        ),
        (
            "an unknown format",
            post(
                &c,
                "/api/v1/webhooks",
                json!({"url": url, "events": ["lead.*"], "format": "xml"}),
            ),
            422,
            "invalid_value",
            Some("format"),
        ),
        (
            "an unknown state",
            c.get("/api/v1/outbox?state=lost"),
            400,
            "invalid_field",
            Some("state"),
        ),
        (
            "limit 0",
            c.get("/api/v1/outbox?limit=0"),
            400,
            "invalid_field",
            Some("limit"),
        ),
        (
            "an unknown parameter",
            c.get("/api/v1/outbox?failed=true"),
            400,
            "invalid_field",
            Some("failed"),
        ),
        (
            "all not a flag",
            c.get("/api/v1/webhooks?all=yes"),
            400,
            "invalid_field",
            Some("all"),
        ),
        (
            "designer adds",
            post(
                &designer,
                "/api/v1/webhooks",
                json!({"url": url, "events": ["lead.*"]}),
            ),
            403,
            "forbidden",
            None,
        ),
        (
            "designer removes",
            designer.request("DELETE", &format!("/api/v1/webhooks/{hook}"), &[], b""),
            403,
            "forbidden",
            None,
        ),
        (
            "designer retries",
            post(
                &designer,
                &format!("/api/v1/outbox/{delivered}/retry"),
                json!({}),
            ),
            403,
            "forbidden",
            None,
        ),
        (
            "designer drops",
            post(
                &designer,
                &format!("/api/v1/outbox/{delivered}/drop"),
                json!({}),
            ),
            403,
            "forbidden",
            None,
        ),
        (
            "first line lists webhooks",
            first_line.get("/api/v1/webhooks"),
            403,
            "forbidden",
            None,
        ),
        (
            "first line lists the outbox",
            first_line.get("/api/v1/outbox"),
            403,
            "forbidden",
            None,
        ),
    ];
    let before = head(&s);
    let mut wrong = Vec::new();
    for (what, r, status, code, field) in &cases {
        if let Err(e) = refused(r, *status, code, *field) {
            wrong.push(format!("{what}: {e}"));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    assert_eq!(head(&s), before, "the refusals appended nothing");
    // What the refusals say: the CLI's words.
    assert!(cases[0].1.text().contains("the outbox has no message 999"));
    assert!(
        cases[6]
            .1
            .text()
            .contains("only a failed message can be retried")
    );
    assert!(
        cases[7]
            .1
            .text()
            .contains("only a pending or failed message can be dropped")
    );
    assert!(
        cases[24]
            .1
            .text()
            .contains("role designer may not administer webhooks"),
        "{}",
        cases[24].1.text()
    );
    // A role that may read sees the endpoints, never a secret.
    let listed = designer.get("/api/v1/webhooks?all=true");
    assert_eq!(listed.status, 200, "{}", listed.text());
    assert_eq!(listed.json()["webhooks"].as_array().unwrap().len(), 2);
    assert!(!listed.text().contains(SECRET));
    assert_eq!(designer.get("/api/v1/outbox").status, 200);
}
