//! The Bitrix24-compatible REST facade on a real socket, as the clients of BITRIX24.md send
//! their requests: fast-bitrix24's batch-wrapped add and paged get_all, b24pysdk's method
//! casing and `.json`, bitrix24-rest's GET with a PHP-style query; the errors (unknown method,
//! wrong secret, a role's refusal, inside a batch too) and nothing appended for them.

use leadflow_testkit::http::Client;
use leadflow_testkit::serve::{ADMIN_SECRET, Server, make_token};
use leadflow_testkit::{ASSIGN_AND_QUALIFY_RULES, config};
use serde_json::{Value, json};

fn head(s: &Server) -> i64 {
    s.client().get("/readyz").json()["database"]["head"]
        .as_i64()
        .unwrap()
}

/// A service over a new database with a token of `role` made for `employee`; keep the folder
/// while the server runs.
fn with_token(name: &str, role: &str, employee: &str) -> (tempfile::TempDir, Server, String) {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("leadflow.db");
    leadflow_store::Store::open(&db, &leadflow_store::Options::default()).unwrap();
    let cfg = config();
    let secret = make_token(&db, &cfg, name, role, Some(employee));
    (dir, Server::start_on(db, cfg, ""), secret)
}

/// `POST /rest/1/<secret>/<method>` with a JSON body.
fn call(c: &Client, secret: &str, method: &str, body: &Value) -> (u16, Value) {
    let r = c.request(
        "POST",
        &format!("/rest/1/{secret}/{method}"),
        &[("content-type", "application/json")],
        body.to_string().as_bytes(),
    );
    assert!(
        r.header("content-type")
            .unwrap_or("")
            .starts_with("application/json"),
        "{method}"
    );
    (r.status, r.json())
}

#[test]
fn leads_are_added_got_updated_and_listed_as_the_clients_send_them() {
    let s = Server::start(config(), ASSIGN_AND_QUALIFY_RULES);
    let c = s.anonymous();
    // fast-bitrix24: a single call goes out as a batch, values percent-encoded.
    let (st, b) = call(
        &c,
        ADMIN_SECRET,
        "batch",
        &json!({"halt": 0, "cmd": {"order0000000000": "crm.lead.add?__order=order0000000000&fields[TITLE]=fast%20lead%20A&fields[NAME]=Ivan&fields[PHONE][0][VALUE]=%2B79002339605&fields[PHONE][0][VALUE_TYPE]=WORK&fields[STATUS_ID]=NEW&"}}),
    );
    assert_eq!(st, 200, "{b}");
    assert!(
        b["result"]["result_error"]
            .as_array()
            .is_some_and(Vec::is_empty)
            || b["result"]["result_error"]
                .as_object()
                .is_some_and(|o| o.is_empty()),
        "{b}"
    );
    let id = b["result"]["result"]["order0000000000"]
        .as_i64()
        .expect("the new id");
    // b24pysdk: method casing altered, `.json`, JSON body, and the `time` block.
    let (st, got) = call(&c, ADMIN_SECRET, "crm.lead.Get.json", &json!({"id": id}));
    assert_eq!(st, 200, "{got}");
    for key in [
        "start",
        "finish",
        "duration",
        "processing",
        "date_start",
        "date_finish",
    ] {
        assert!(got["time"].get(key).is_some(), "time.{key} in {got}");
    }
    let lead = &got["result"];
    assert_eq!(lead["TITLE"], "fast lead A");
    assert_eq!(lead["STATUS_ID"], "NEW");
    assert_eq!(lead["PHONE"][0]["VALUE"], "+79002339605");
    assert_eq!(
        lead["ASSIGNED_BY_ID"], "1",
        "the intake rule assigned it to user 1 (ivanov): {lead}"
    );
    let (st, up) = call(
        &c,
        ADMIN_SECRET,
        "crm.lead.Update.json",
        &json!({"id": id, "fields": {"STATUS_ID": "IN_PROCESS"}}),
    );
    assert_eq!((st, &up["result"]), (200, &json!(true)), "{up}");
    // bitrix24-rest: GET with a PHP-style query.
    let r = c.get(&format!(
        "/rest/1/{ADMIN_SECRET}/crm.lead.get.json?ID={id}&start=0&"
    ));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["result"]["STATUS_ID"], "IN_PROCESS");
    // The event says who: the token, for user 1's employee.
    let events = s
        .client()
        .get(&format!(
            "/api/v1/events?stream=lead-{id}&type=lead.created"
        ))
        .json();
    assert_eq!(events["events"][0]["actor"], "api:admin@ivanov");
}

#[test]
fn list_pages_of_fifty_give_total_and_next_and_get_all_reads_every_row() {
    let s = Server::start(config(), "");
    let c = s.anonymous();
    for i in 0..55 {
        let (st, b) = call(
            &c,
            ADMIN_SECRET,
            "crm.lead.add",
            &json!({"fields": {"TITLE": format!("page-lead {i}"), "NAME": "X"}}),
        );
        assert_eq!(st, 200, "{b}");
    }
    let (st, p1) = call(
        &c,
        ADMIN_SECRET,
        "crm.lead.list",
        &json!({"filter": {"%TITLE": "page-lead"}, "select": ["ID", "TITLE"], "order": {"ID": "ASC"}}),
    );
    assert_eq!(st, 200, "{p1}");
    assert_eq!(p1["result"].as_array().unwrap().len(), 50);
    assert_eq!(p1["total"], 55);
    assert_eq!(p1["next"], 50);
    let (_, p2) = call(
        &c,
        ADMIN_SECRET,
        "batch",
        &json!({"halt": 0, "cmd": {"cmd0000000000": "crm.lead.list?filter[%25TITLE]=page-lead&select[0]=ID&order[ID]=ASC&start=50&"}}),
    );
    let rows = p2["result"]["result"]["cmd0000000000"].as_array().unwrap();
    assert_eq!(rows.len(), 5, "{p2}");
    let mut ids: Vec<String> = p1["result"]
        .as_array()
        .unwrap()
        .iter()
        .chain(rows)
        .map(|r| r["ID"].as_str().unwrap().to_owned())
        .collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 55);
}

#[test]
fn errors_have_the_bitrix24_envelope_and_status_and_append_nothing() {
    let s = Server::start(config(), "");
    let c = s.anonymous();
    let before = head(&s);
    let (st, e) = call(&c, ADMIN_SECRET, "crm.lead.frobnicate", &json!({}));
    assert_eq!(
        (st, e["error"].as_str()),
        (404, Some("ERROR_METHOD_NOT_FOUND")),
        "{e}"
    );
    let (st, e) = call(&c, "not-the-secret", "crm.lead.list", &json!({}));
    assert_eq!(
        (st, e["error"].as_str()),
        (401, Some("NO_AUTH_FOUND")),
        "{e}"
    );
    let r = c.get(&format!("/rest/999/{ADMIN_SECRET}/crm.lead.list"));
    assert_eq!(r.status, 401, "an unknown user id: {}", r.text());
    let (st, e) = call(&c, ADMIN_SECRET, "crm.lead.get", &json!({}));
    assert_eq!(st, 400, "{e}");
    let (st, e) = call(
        &c,
        ADMIN_SECRET,
        "crm.lead.add",
        &json!({"fields": {"PHONE": [{"VALUE": "not a phone"}]}}),
    );
    assert_eq!(st, 400, "{e}");
    assert!(
        e["error_description"].as_str().unwrap().contains("PHONE"),
        "{e}"
    );
    let r = c.request(
        "POST",
        &format!("/rest/1/{ADMIN_SECRET}/crm.lead.add"),
        &[("content-type", "application/json")],
        b"{not json",
    );
    assert_eq!(r.status, 400, "{}", r.text());
    assert_eq!(head(&s), before);
}

#[test]
fn a_token_s_role_holds_on_the_facade_and_inside_a_batch() {
    let (_dir, s, first) = with_token("operator", "first_line", "ivanov");
    let c = s.anonymous();
    let (st, _) = call(
        &c,
        &first,
        "crm.lead.add",
        &json!({"fields": {"TITLE": "mine", "NAME": "A"}}),
    );
    assert_eq!(st, 200);
    let before = head(&s);
    let (st, e) = call(&c, &first, "crm.deal.list", &json!({}));
    assert_eq!(st, 403, "{e}");
    assert!(
        e["error_description"]
            .as_str()
            .unwrap()
            .contains("first_line"),
        "{e}"
    );
    let (st, b) = call(
        &c,
        &first,
        "batch",
        &json!({"halt": 0, "cmd": {"ok": "crm.lead.list?select[0]=ID", "no": "crm.deal.add?fields[TITLE]=x"}}),
    );
    assert_eq!(st, 200, "{b}");
    assert!(
        b["result"]["result_error"]["no"]["error_description"]
            .as_str()
            .unwrap()
            .contains("first_line"),
        "{b}"
    );
    assert_eq!(b["result"]["result"]["ok"].as_array().unwrap().len(), 1);
    assert_eq!(head(&s), before, "the refused deal appended nothing");
}

#[test]
fn a_token_made_for_an_employee_cannot_act_for_another_user_through_the_url() {
    let (_dir, s, sales) = with_token("seller", "sales", "kuznetsov");
    let c = s.anonymous();
    let mut answered = Vec::new();
    for user in 1..=12 {
        let r = c.get(&format!("/rest/{user}/{sales}/user.current"));
        match r.status {
            200 => answered.push((user, r.json())),
            401 => {
                let e = r.json();
                assert_eq!(e["error"], "NO_AUTH_FOUND", "{e}");
                assert!(!r.text().contains(&sales), "the secret is never echoed");
            }
            other => panic!("user {user}: {other} {}", r.text()),
        }
    }
    assert_eq!(
        answered.len(),
        1,
        "only the token's own employee: {answered:?}"
    );
    let (user, me) = &answered[0];
    assert_eq!(me["result"]["XML_ID"], "kuznetsov", "{me}");
    assert_eq!(me["result"]["ID"], user.to_string(), "{me}");
}

#[test]
fn bound_events_are_delivered_form_encoded_in_the_bitrix24_shape_until_unbound() {
    use leadflow_server::bitrix::params::parse_query;
    use leadflow_testkit::receiver::Receiver;
    use std::time::Duration;
    let s = Server::start(config(), "");
    let c = s.anonymous();
    let rx = Receiver::ok();
    for event in ["ONCRMLEADADD", "onCrmLeadUpdate"] {
        let (st, b) = call(
            &c,
            ADMIN_SECRET,
            "event.bind",
            &json!({"event": event, "handler": rx.url}),
        );
        assert_eq!((st, &b["result"]), (200, &json!(true)), "{b}");
    }
    // Binding the same event and handler again is Bitrix24's error, and appends nothing.
    let before = head(&s);
    let (st, b) = call(
        &c,
        ADMIN_SECRET,
        "event.bind",
        &json!({"event": "ONCRMLEADADD", "handler": rx.url}),
    );
    assert_eq!(st, 400, "{b}");
    assert_eq!(
        b,
        json!({"error": "ERROR_CORE", "error_description": "Handler already binded"})
    );
    assert_eq!(head(&s), before);
    // event.get lists both, with the token their events carry.
    let (_, got) = call(&c, ADMIN_SECRET, "event.get", &json!({}));
    let bound = got["result"].as_array().unwrap();
    assert_eq!(bound.len(), 2, "{got}");
    assert_eq!(bound[0]["event"], "ONCRMLEADADD");
    assert_eq!(bound[1]["event"], "ONCRMLEADUPDATE");
    assert_eq!(bound[0]["handler"], rx.url.as_str());
    let token = bound[0]["application_token"].as_str().unwrap().to_owned();
    assert_eq!(token.len(), 32, "{got}");
    // Subscribing is an event in the log, made by the token.
    let added = s.client().get("/api/v1/events?type=endpoint.added").json();
    assert_eq!(added["events"].as_array().unwrap().len(), 2, "{added}");
    // The admin token acting, through /rest/1/, for user 1 (ivanov).
    assert_eq!(added["events"][0]["actor"], "api:admin@ivanov", "{added}");

    let (st, b) = call(
        &c,
        ADMIN_SECRET,
        "crm.lead.add",
        &json!({"fields": {"TITLE": "Hooked", "NAME": "Ivan"}}),
    );
    assert_eq!(st, 200, "{b}");
    let id = b["result"].as_i64().unwrap();
    let (st, b) = call(
        &c,
        ADMIN_SECRET,
        "crm.lead.update",
        &json!({"id": id, "fields": {"TITLE": "Hooked again"}}),
    );
    assert_eq!(st, 200, "{b}");
    let got = rx
        .wait_for(2, Duration::from_secs(20))
        .unwrap_or_else(|g| panic!("delivered only {g:?}"));
    let mut names = Vec::new();
    for req in &got {
        assert_eq!(req.method, "POST");
        assert_eq!(
            req.header("content-type"),
            "application/x-www-form-urlencoded"
        );
        assert!(
            req.header("webhook-signature").starts_with("v1,"),
            "{req:?}"
        );
        assert!(!req.header("webhook-id").is_empty());
        let p = parse_query(&req.body).unwrap();
        let text = |k: &str| p.get(k).and_then(Value::as_str).unwrap_or("").to_owned();
        names.push(text("event"));
        assert_eq!(p.get("data").unwrap()["FIELDS"]["ID"], id.to_string());
        assert!(text("ts").parse::<i64>().unwrap() > 1_700_000_000);
        assert!(text("event_handler_id").parse::<i64>().unwrap() > 0);
        let auth = p.get("auth").unwrap();
        assert_eq!(auth["domain"], s.addr.to_string(), "{req:?}");
        assert_eq!(
            auth["client_endpoint"],
            format!("http://{}/rest/", s.addr),
            "{req:?}"
        );
        assert_eq!(auth["member_id"].as_str().unwrap().len(), 32);
        if text("event") == "ONCRMLEADADD" {
            assert_eq!(auth["application_token"], token.as_str(), "{req:?}");
        }
    }
    names.sort();
    assert_eq!(names, ["ONCRMLEADADD", "ONCRMLEADUPDATE"]);

    // Unbound, the event is no longer sent; the other binding still is.
    let (st, b) = call(
        &c,
        ADMIN_SECRET,
        "event.unbind",
        &json!({"event": "ONCRMLEADADD", "handler": rx.url}),
    );
    assert_eq!((st, &b["result"]), (200, &json!({"count": 1})), "{b}");
    let (_, b) = call(
        &c,
        ADMIN_SECRET,
        "event.unbind",
        &json!({"event": "ONCRMLEADADD", "handler": rx.url}),
    );
    assert_eq!(b["result"], json!({"count": 0}));
    let (_, got) = call(&c, ADMIN_SECRET, "event.get", &json!({}));
    assert_eq!(got["result"].as_array().unwrap().len(), 1, "{got}");
    let (_, b) = call(
        &c,
        ADMIN_SECRET,
        "crm.lead.add",
        &json!({"fields": {"TITLE": "Quiet", "NAME": "Olga"}}),
    );
    let quiet = b["result"].as_i64().unwrap();
    call(
        &c,
        ADMIN_SECRET,
        "crm.lead.update",
        &json!({"id": quiet, "fields": {"TITLE": "Quiet still"}}),
    );
    rx.wait_for(3, Duration::from_secs(20))
        .unwrap_or_else(|g| panic!("delivered only {g:?}"));
    std::thread::sleep(Duration::from_millis(600));
    let got = rx.got();
    assert_eq!(got.len(), 3, "{got:?}");
    assert!(got[2].body.starts_with("event=ONCRMLEADUPDATE&"), "{got:?}");
}

#[test]
fn event_bind_needs_the_webhooks_right() {
    let (_dir, s, first) = with_token("operator", "first_line", "ivanov");
    let before = head(&s);
    let (st, e) = call(
        &s.anonymous(),
        &first,
        "event.bind",
        &json!({"event": "ONCRMLEADADD", "handler": "http://127.0.0.1:9/h"}),
    );
    assert_eq!(st, 403, "{e}");
    assert_eq!(e["error"], "ACCESS_DENIED");
    assert_eq!(head(&s), before);
}

#[test]
fn a_timeline_comment_is_an_event_of_the_record_and_changes_no_field() {
    let s = Server::start(config(), "");
    let c = s.anonymous();
    let (_, b) = call(
        &c,
        ADMIN_SECRET,
        "crm.lead.add",
        &json!({"fields": {"TITLE": "Talked", "NAME": "Ivan", "COMMENTS": "first call"}}),
    );
    let id = b["result"].as_i64().unwrap();
    let (st, b) = call(
        &c,
        ADMIN_SECRET,
        "crm.timeline.comment.add",
        &json!({"fields": {"ENTITY_ID": id, "ENTITY_TYPE": "lead", "COMMENT": "  asked for a quote "}}),
    );
    assert_eq!(st, 200, "{b}");
    let position = b["result"].as_i64().unwrap();
    let events = s
        .client()
        .get(&format!(
            "/api/v1/events?stream=lead-{id}&type=lead.commented"
        ))
        .json();
    let e = &events["events"][0];
    assert_eq!(e["position"], position, "{events}");
    assert_eq!(e["payload"], json!({"text": "asked for a quote"}));
    assert_eq!(e["actor"], "api:admin@ivanov");
    let (_, lead) = call(&c, ADMIN_SECRET, "crm.lead.get", &json!({"id": id}));
    assert_eq!(lead["result"]["COMMENTS"], "first call", "{lead}");

    // Refusals append nothing.
    let before = head(&s);
    for (fields, status, needle) in [
        (
            json!({"ENTITY_ID": 999, "ENTITY_TYPE": "lead", "COMMENT": "x"}),
            400,
            "Not found",
        ),
        (
            json!({"ENTITY_ID": id, "ENTITY_TYPE": "lead", "COMMENT": "  "}),
            400,
            "COMMENT",
        ),
        (
            json!({"ENTITY_ID": id, "ENTITY_TYPE": "task", "COMMENT": "x"}),
            400,
            "ENTITY_TYPE",
        ),
        (
            json!({"ENTITY_ID": id, "ENTITY_TYPE": "lead", "COMMENT": "x".repeat(10_001)}),
            400,
            "10000",
        ),
    ] {
        let (st, e) = call(
            &c,
            ADMIN_SECRET,
            "crm.timeline.comment.add",
            &json!({ "fields": fields }),
        );
        assert_eq!(st, status, "{e}");
        assert!(
            e["error_description"].as_str().unwrap().contains(needle),
            "{needle}: {e}"
        );
    }
    assert_eq!(head(&s), before);
}

#[test]
fn event_get_shows_the_application_token_only_to_who_may_bind() {
    let (_dir, s, designer) = with_token("designer", "designer", "ivanov");
    let c = s.anonymous();
    let (st, b) = call(
        &c,
        ADMIN_SECRET,
        "event.bind",
        &json!({"event": "ONCRMLEADADD", "handler": "http://127.0.0.1:9/h"}),
    );
    assert_eq!(st, 200, "{b}");
    let (_, admin) = call(&c, ADMIN_SECRET, "event.get", &json!({}));
    assert_eq!(
        admin["result"][0]["application_token"]
            .as_str()
            .map(str::len),
        Some(32),
        "{admin}"
    );
    // A designer reads the subscriptions, not the token a handler trusts events by.
    let (st, read) = call(&c, &designer, "event.get", &json!({}));
    assert_eq!(st, 200, "{read}");
    assert_eq!(read["result"][0]["handler"], "http://127.0.0.1:9/h");
    assert!(
        read["result"][0].get("application_token").is_none(),
        "{read}"
    );
}
