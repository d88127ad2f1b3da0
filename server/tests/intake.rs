//! Web-form intake on a real socket: the three encodings site builders send, the mapping of
//! `[forms.NAME]`, the intake rules reacting, and the guards (token, origins, honeypot, size),
//! with bad submissions answered 4xx naming the form field and appending nothing.

use leadflow_engine::config::DEFAULT_CONFIG;
use leadflow_testkit::http::Client;
use leadflow_testkit::serve::Server;
use leadflow_testkit::{ASSIGN_AND_QUALIFY_RULES, config_from};
use serde_json::Value;

const FORMS: &str = r#"
[forms.shop]
title = "Site: {your_name}"
honeypot = "website"
allowed_origins = ["https://shop.example"]
utm = ["utm_source", "utm_campaign"]
redirect = "https://shop.example/thanks"

[forms.shop.fields]
name = "your-name"
phones = ["tel", "tel2"]
emails = "mail"
comment = "message"

[forms.partner]
token = "partner-secret-0123456789"
source = "call"

[forms.partner.fields]
name = "name"
phones = "phone"
"#;

fn server() -> Server {
    Server::start(
        config_from(&format!("{DEFAULT_CONFIG}\n{FORMS}")),
        ASSIGN_AND_QUALIFY_RULES,
    )
}

fn head(c: &Client) -> i64 {
    c.get("/readyz").json()["database"]["head"]
        .as_i64()
        .unwrap()
}

fn form(
    c: &Client,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> leadflow_testkit::http::Response {
    let mut h = vec![("content-type", "application/x-www-form-urlencoded")];
    h.extend_from_slice(headers);
    c.request("POST", path, &h, body.as_bytes())
}

#[test]
fn an_urlencoded_submission_becomes_a_lead_the_intake_rules_assign() {
    let s = server();
    let c = s.anonymous();
    let r = form(
        &c,
        "/intake/shop",
        &[("accept", "application/json")],
        "your-name=Ivan+Petrov&tel=%2B7+900+111-22-33&tel2=&mail=Ivan%40Example.RU&message=Granite%2C+2m&utm_source=yandex&utm_campaign=spring&extra=ignored",
    );
    assert_eq!(r.status, 201, "{}", r.text());
    let lead = &r.json()["lead"];
    assert_eq!(lead["title"], "Site: Ivan Petrov");
    assert_eq!(lead["name"], "Ivan Petrov");
    assert_eq!(lead["phones"][0], "+79001112233");
    assert_eq!(lead["emails"][0], "ivan@example.ru");
    assert_eq!(lead["source"], "web_form");
    assert_eq!(
        lead["comment"],
        "Granite, 2m\nutm_source=yandex utm_campaign=spring"
    );
    assert_eq!(lead["responsible"], "ivanov", "the intake rule assigned it");
    let created = s
        .client()
        .get("/api/v1/events?stream=lead-1&type=lead.created")
        .json();
    assert_eq!(created["events"][0]["actor"], "api:shop");
}

#[test]
fn multipart_and_json_submissions_are_taken_too() {
    let s = server();
    let c = s.anonymous();
    let boundary = "XyZ123";
    let body = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"your-name\"\r\n\r\nAnna\r\n--{boundary}\r\nContent-Disposition: form-data; name=\"tel\"\r\n\r\n+79002223344\r\n--{boundary}\r\nContent-Disposition: form-data; name=\"cv\"; filename=\"cv.pdf\"\r\nContent-Type: application/pdf\r\n\r\n%PDF\r\n--{boundary}--\r\n"
    );
    let ct = format!("multipart/form-data; boundary={boundary}");
    let r = c.request(
        "POST",
        "/intake/shop",
        &[("content-type", &ct), ("accept", "application/json")],
        body.as_bytes(),
    );
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(r.json()["lead"]["name"], "Anna");
    let j = c.request(
        "POST",
        "/intake/shop",
        &[("content-type", "application/json")],
        br#"{"your-name": "Oleg", "tel": ["+79003334455"], "mail": "oleg@example.ru"}"#,
    );
    assert_eq!(j.status, 201, "{}", j.text());
    assert_eq!(j.json()["lead"]["phones"][0], "+79003334455");
}

#[test]
fn a_plain_html_form_is_redirected_and_a_bot_filling_the_honeypot_creates_nothing() {
    let s = server();
    let c = s.anonymous();
    let r = form(
        &c,
        "/intake/shop",
        &[],
        "your-name=Maria&tel=%2B79004445566",
    );
    assert_eq!(r.status, 303, "{}", r.text());
    assert_eq!(r.header("location"), Some("https://shop.example/thanks"));
    let before = head(&c);
    let bot = form(
        &c,
        "/intake/shop",
        &[("accept", "application/json")],
        "your-name=Bot&tel=%2B79005556677&website=http%3A%2F%2Fspam",
    );
    assert_eq!(bot.status, 201, "{}", bot.text());
    assert_eq!(bot.json()["accepted"], true);
    assert_eq!(head(&c), before, "the honeypot submission appended nothing");
}

#[test]
fn the_token_of_a_form_is_required_and_checked() {
    let s = server();
    let c = s.anonymous();
    let before = head(&c);
    let none = form(&c, "/intake/partner", &[], "name=A&phone=%2B79001230000");
    assert_eq!(none.status, 401, "{}", none.text());
    let wrong = form(
        &c,
        "/intake/partner",
        &[],
        "name=A&phone=%2B79001230000&token=nope",
    );
    assert_eq!(wrong.status, 401);
    assert!(
        !wrong.text().contains("partner-secret"),
        "the secret is never echoed"
    );
    assert_eq!(head(&c), before);
    let ok = form(
        &c,
        "/intake/partner?token=partner-secret-0123456789",
        &[],
        "name=A&phone=%2B79001230000",
    );
    assert_eq!(ok.status, 201, "{}", ok.text());
    assert_eq!(ok.json()["lead"]["source"], "call");
    let bearer = c.request(
        "POST",
        "/intake/partner",
        &[
            ("content-type", "application/json"),
            ("authorization", "Bearer partner-secret-0123456789"),
        ],
        br#"{"name": "B", "phone": "+79001230001"}"#,
    );
    assert_eq!(bearer.status, 201, "{}", bearer.text());
    // Wrong tokens count as failed attempts of the address: after too many, even the right
    // one is refused for a while (429), and nothing is appended.
    // (The two refusals above were the first two.)
    for _ in 2..leadflow_server::auth::FAILURES_ALLOWED {
        let r = form(
            &c,
            "/intake/partner?token=guess",
            &[],
            "name=A&phone=%2B79001230000",
        );
        assert_eq!(r.status, 401, "{}", r.text());
    }
    let before = head(&c);
    let refused = form(
        &c,
        "/intake/partner?token=partner-secret-0123456789",
        &[],
        "name=A&phone=%2B79001230000",
    );
    assert_eq!(refused.status, 429, "{}", refused.text());
    assert!(refused.header("retry-after").is_some());
    assert_eq!(head(&c), before);
}

#[test]
fn browsers_may_post_only_from_the_allowed_origins() {
    let s = server();
    let c = s.anonymous();
    let pre = c.request(
        "OPTIONS",
        "/intake/shop",
        &[
            ("origin", "https://shop.example"),
            ("access-control-request-method", "POST"),
        ],
        b"",
    );
    assert_eq!(pre.status, 204, "{}", pre.text());
    assert_eq!(
        pre.header("access-control-allow-origin"),
        Some("https://shop.example")
    );
    let ok = form(
        &c,
        "/intake/shop",
        &[
            ("origin", "https://shop.example"),
            ("accept", "application/json"),
        ],
        "your-name=Ok&tel=%2B79006667788",
    );
    assert_eq!(ok.status, 201, "{}", ok.text());
    assert_eq!(
        ok.header("access-control-allow-origin"),
        Some("https://shop.example")
    );
    let before = head(&c);
    let evil = form(
        &c,
        "/intake/shop",
        &[("origin", "https://evil.example")],
        "your-name=No&tel=%2B79006667789",
    );
    assert_eq!(evil.status, 403, "{}", evil.text());
    assert_eq!(head(&c), before);
}

#[test]
fn bad_submissions_get_a_4xx_naming_the_form_field_and_append_nothing() {
    let s = server();
    let c = s.anonymous();
    let before = head(&c);
    let j = [("accept", "application/json")];
    let empty = form(&c, "/intake/shop", &j, "message=hello");
    assert_eq!(empty.status, 422, "{}", empty.text());
    let bad_phone = form(&c, "/intake/shop", &j, "your-name=X&tel=not-a-phone-at-all");
    assert_eq!(bad_phone.status, 422, "{}", bad_phone.text());
    let e: Value = bad_phone.json();
    assert_eq!(e["error"]["field"], "tel", "{e}");
    let huge = form(
        &c,
        "/intake/shop",
        &j,
        &format!("your-name={}", "x".repeat(100_000)),
    );
    assert_eq!(huge.status, 413, "{}", huge.text());
    let unknown = form(&c, "/intake/nope", &j, "a=b");
    assert_eq!(unknown.status, 404);
    let text = c.request(
        "POST",
        "/intake/shop",
        &[("content-type", "text/plain")],
        b"hi",
    );
    assert_eq!(text.status, 415);
    let not_utf8 = c.request(
        "POST",
        "/intake/shop",
        &[("content-type", "application/x-www-form-urlencoded")],
        b"your-name=\xff\xfe",
    );
    assert_eq!(not_utf8.status, 400, "{}", not_utf8.text());
    let nested = c.request(
        "POST",
        "/intake/shop",
        &[("content-type", "application/json")],
        br#"{"your-name": {"a": 1}}"#,
    );
    assert_eq!(nested.status, 400, "{}", nested.text());
    assert_eq!(nested.json()["error"]["field"], "your-name");
    for r in [
        &empty, &bad_phone, &huge, &unknown, &text, &not_utf8, &nested,
    ] {
        assert_eq!(r.header("content-type"), Some("application/json"));
    }
    assert_eq!(head(&c), before);
}
