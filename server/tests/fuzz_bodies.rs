//! Generated bad request bodies on a real socket, over the three surfaces: the native API
//! (create, change and move a lead), the web-form intake (urlencoded, multipart and JSON) and
//! the Bitrix24 facade (`crm.lead.add`, `batch`, `crm.lead.list`). Random JSON of wrong types,
//! unknown fields, absurd numbers, invalid UTF-8, deep nesting and mutated valid bodies:
//! whatever comes back is a 2xx or a 4xx — never a 5xx — a 4xx has the surface's error shape
//! with a non-empty message and appended nothing (the log's head is unchanged), and the
//! process is still serving after every case. (`bitrix_fuzz.rs` fuzzes the facade's mapping
//! in memory; this is the whole service behind its socket.)

use leadflow_engine::config::DEFAULT_CONFIG;
use leadflow_testkit::config_from;
use leadflow_testkit::fuzz::mutated;
use leadflow_testkit::http::{Client, Response};
use leadflow_testkit::serve::{ADMIN_SECRET, Server};
use proptest::prelude::*;
use proptest::test_runner::{Config as RunConfig, TestCaseError, TestRunner};
use serde_json::{Map, Value, json};

const FORMS: &str = r#"
[forms.fuzz]
honeypot = "website"

[forms.fuzz.fields]
name = "name"
phones = ["phone", "phone2"]
emails = "email"
comment = "message"

[forms.partner]
token = "partner-fuzz-secret-0123456789"

[forms.partner.fields]
name = "name"
phones = "phone"
"#;

/// Field names the surfaces know (native, form and Bitrix24), and some they do not.
const KEYS: &[&str] = &[
    "name",
    "title",
    "phones",
    "emails",
    "phone",
    "email",
    "comment",
    "message",
    "source",
    "stage",
    "reason",
    "pipeline",
    "responsible",
    "client_type",
    "website",
    "token",
    "fields",
    "TITLE",
    "PHONE",
    "EMAIL",
    "STATUS_ID",
    "ASSIGNED_BY_ID",
    "OPPORTUNITY",
    "filter",
    "select",
    "order",
    "start",
    "cmd",
    "halt",
    "id",
    "",
    "__proto__",
    "name\u{0}",
];

/// Texts that break parsers and validators.
const TEXTS: &[&str] = &[
    "",
    " ",
    "NaN",
    "Infinity",
    "-Infinity",
    "1e999",
    "-1",
    "0",
    "99999999999999999999999999999",
    "-9223372036854775809",
    "+7 900 123-45-67",
    "not-an-email@",
    "ivan@example.ru",
    "NEW",
    "QUALIFIED",
    "lost",
    "\u{0}",
    "\u{202e}gnp.exe",
    "Иван Петров",
    "😀😀😀",
    "<script>alert(1)</script>",
    "'; DROP TABLE events; --",
    "$result[0]",
    "%00%ff",
    "a\r\nX-Injected: 1",
];

/// Numbers at and past every limit.
const NUMBERS: &[&str] = &[
    "1e999",
    "-1e999",
    "1.7976931348623157e308",
    "-0",
    "0.0000000000000000000000001",
    "99999999999999999999999999999",
    "-99999999999999999999999999999",
    "9223372036854775807",
    "18446744073709551616",
    "NaN",
    "Infinity",
    "0x10",
    "01",
    "1.",
    ".5",
];

fn scalar() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_filter_map("finite", |f| serde_json::Number::from_f64(f)
            .map(Value::Number)),
        prop::sample::select(TEXTS).prop_map(Value::from),
        "\\PC{0,30}".prop_map(Value::from),
    ]
}

fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => prop::sample::select(KEYS).prop_map(String::from),
        1 => "[a-zA-Z_\\[\\]0-9]{1,16}",
    ]
}

/// Any JSON value, nested a little.
fn value() -> impl Strategy<Value = Value> {
    scalar().prop_recursive(4, 32, 5, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            prop::collection::vec((key(), inner), 0..5)
                .prop_map(|kv| Value::Object(kv.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

/// A JSON object over known and unknown keys with values of any type.
fn object() -> impl Strategy<Value = Value> {
    prop::collection::vec((key(), value()), 0..6)
        .prop_map(|kv| Value::Object(kv.into_iter().collect::<Map<_, _>>()))
}

/// Bodies that are not what they claim: bytes, invalid UTF-8, deep nesting, absurd numbers
/// spelled out, and mutated valid bodies.
fn raw(seeds: &'static [&'static str]) -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..120),
        (prop::sample::select(seeds), any::<prop::sample::Index>()).prop_map(|(s, at)| {
            // Invalid UTF-8 inside a valid body.
            let mut b = s.as_bytes().to_vec();
            let i = at.index(b.len().max(1)).min(b.len());
            b.splice(i..i, [0xff, 0xfe, 0xc3]);
            b
        }),
        (1usize..3000, prop::bool::ANY).prop_map(|(n, arr)| {
            let (o, c) = if arr { ("[", "]") } else { ("{\"a\":", "}") };
            format!("{}1{}", o.repeat(n), c.repeat(n)).into_bytes()
        }),
        (prop::sample::select(KEYS), prop::sample::select(NUMBERS))
            .prop_map(|(k, n)| format!("{{\"{k}\": {n}}}").into_bytes()),
        mutated(seeds),
    ]
}

/// A body: generated JSON, or raw bytes.
fn body(seeds: &'static [&'static str]) -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        2 => object().prop_map(|v| v.to_string().into_bytes()),
        1 => value().prop_map(|v| v.to_string().into_bytes()),
        2 => raw(seeds),
    ]
}

/// A server with the forms, one lead to change and move, and its admin client.
fn server() -> (Server, Client) {
    let s = Server::start(config_from(&format!("{DEFAULT_CONFIG}\n{FORMS}")), "");
    let c = s.client();
    let r = c.post(
        "/api/v1/leads",
        &json!({"name": "Seed", "phones": ["+79001234567"]}),
    );
    assert_eq!(r.status, 201, "{}", r.text());
    (s, c)
}

fn head(c: &Client) -> Result<i64, TestCaseError> {
    let r = c.get("/readyz");
    prop_assert_eq!(r.status, 200, "the service stopped serving: {}", r.text());
    Ok(r.json()["database"]["head"].as_i64().unwrap())
}

/// Which error shape a surface answers.
#[derive(Clone, Copy)]
enum Shape {
    /// `{"error": {"code", "message", ...}}`.
    Native,
    /// `{"error": "CODE", "error_description": "..."}` (the code may be empty, as Bitrix24's).
    Bitrix,
}

/// Sends one generated request and checks the property.
fn check(
    c: &Client,
    shape: Shape,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Result<(), TestCaseError> {
    let before = head(c)?;
    let r: Response = c.request(method, path, headers, body);
    let what = || {
        format!(
            "{method} {path} {headers:?} {:?} -> {} {}",
            String::from_utf8_lossy(body),
            r.status,
            r.text()
        )
    };
    prop_assert!(
        (200..300).contains(&r.status) || (400..500).contains(&r.status),
        "{}",
        what()
    );
    if r.status >= 400 {
        let v: Value = serde_json::from_slice(&r.body)
            .map_err(|e| TestCaseError::fail(format!("not JSON ({e}): {}", what())))?;
        match shape {
            Shape::Native => {
                prop_assert!(v["error"]["code"].is_string(), "{}", what());
                prop_assert!(
                    v["error"]["message"]
                        .as_str()
                        .is_some_and(|m| !m.trim().is_empty()),
                    "{}",
                    what()
                );
            }
            Shape::Bitrix => {
                // (Bitrix24's crm methods answer some refusals with an empty code.)
                prop_assert!(v["error"].is_string(), "{}", what());
                prop_assert!(
                    v["error_description"]
                        .as_str()
                        .is_some_and(|m| !m.trim().is_empty()),
                    "{}",
                    what()
                );
            }
        }
        prop_assert_eq!(head(c)?, before, "a 4xx appended: {}", what());
    } else {
        head(c)?;
    }
    Ok(())
}

fn runner(cases: u32) -> TestRunner {
    TestRunner::new(RunConfig {
        cases,
        failure_persistence: None,
        ..RunConfig::default()
    })
}

const NATIVE_SEEDS: &[&str] = &[
    r#"{"name": "Ivan", "phones": ["+7 900 123-45-67"], "source": "web_form"}"#,
    r#"{"name": "Anna K", "emails": ["anna@example.ru"], "comment": "call back"}"#,
    r#"{"stage": "IN_PROGRESS"}"#,
    r#"{"stage": "LOST", "reason": "no_budget"}"#,
    r#"{"client_type": "company", "responsible": "ivanov"}"#,
];

#[test]
fn bad_bodies_on_the_native_api_are_4xx_with_its_error_and_append_nothing() {
    let (_s, c) = server();
    let ids = prop::sample::select(
        &[
            "1",
            "0",
            "-1",
            "99999999999999999999",
            "abc",
            "1.5",
            "%00",
            "%ff",
            "1e3",
            "%F0%9F%98%80",
        ][..],
    );
    let route = prop_oneof![
        Just(("POST", "/api/v1/leads".to_owned())),
        ids.clone()
            .prop_map(|id| ("PATCH", format!("/api/v1/leads/{id}"))),
        ids.prop_map(|id| ("POST", format!("/api/v1/leads/{id}/move"))),
    ];
    let ct = prop::sample::select(
        &[
            Some("application/json"),
            Some("application/json"),
            Some("application/json"),
            Some("application/json"),
            Some("application/json; charset=utf-8"),
            Some("text/plain"),
            Some("application/x-www-form-urlencoded"),
            None,
        ][..],
    );
    let if_match = prop::sample::select(
        &[
            None,
            Some("\"1\""),
            Some("abc"),
            Some("-1"),
            Some("99999999999999999999999"),
        ][..],
    );
    runner(80)
        .run(
            &(route, ct, if_match, body(NATIVE_SEEDS)),
            |((method, path), ct, if_match, body)| {
                let mut h = Vec::new();
                if let Some(ct) = ct {
                    h.push(("content-type", ct));
                }
                if let Some(m) = if_match {
                    h.push(("if-match", m));
                }
                check(&c, Shape::Native, method, &path, &h, &body)
            },
        )
        .unwrap();
}

const FORM_SEEDS: &[&str] = &[
    "name=Ivan&phone=%2B7+900+123-45-67&email=ivan%40example.ru&message=hello",
    "name=Anna&phone=89001234567&phone2=&token=partner-fuzz-secret-0123456789",
    r#"{"name": "Ivan", "phone": ["+79001234567", "8 900 000"], "email": "ivan@example.ru"}"#,
    "--XyZ\r\nContent-Disposition: form-data; name=\"name\"\r\n\r\nIvan\r\n--XyZ\r\nContent-Disposition: form-data; name=\"phone\"\r\n\r\n+79001234567\r\n--XyZ--\r\n",
];

/// Form fields as pairs, to encode.
fn pairs() -> impl Strategy<Value = Vec<(String, String)>> {
    prop::collection::vec(
        (
            key(),
            prop_oneof![
                prop::sample::select(TEXTS).prop_map(String::from),
                prop::sample::select(NUMBERS).prop_map(String::from),
                "\\PC{0,40}",
            ],
        ),
        0..8,
    )
}

fn multipart(pairs: &[(String, String)], file: bool) -> Vec<u8> {
    let mut b = Vec::new();
    for (i, (k, v)) in pairs.iter().enumerate() {
        b.extend_from_slice(b"--XyZ\r\nContent-Disposition: form-data; name=\"");
        b.extend_from_slice(k.replace(['"', '\r', '\n'], "").as_bytes());
        b.push(b'"');
        if file && i == 0 {
            b.extend_from_slice(b"; filename=\"cv.pdf\"");
        }
        b.extend_from_slice(b"\r\n\r\n");
        b.extend_from_slice(v.as_bytes());
        b.extend_from_slice(b"\r\n");
    }
    b.extend_from_slice(b"--XyZ--\r\n");
    b
}

#[test]
fn bad_submissions_on_the_intake_are_4xx_with_its_error_and_append_nothing() {
    let (_s, c) = server();
    let anonymous = Client::new(c.addr);
    let form = prop_oneof![
        6 => prop::sample::select(&["site", "fuzz", "partner"][..]),
        1 => prop::sample::select(&["nope", "%00", "%ff", "site%2F..%2Fpartner"][..]),
    ];
    // (content type, body) in each encoding, well formed and not.
    let urlencoded = prop_oneof![
        pairs().prop_map(|p| form_urlencoded::Serializer::new(String::new())
            .extend_pairs(p)
            .finish()
            .into_bytes()),
        raw(FORM_SEEDS),
    ]
    .prop_map(|b| ("application/x-www-form-urlencoded", b));
    let multi = prop_oneof![
        (pairs(), any::<bool>()).prop_map(|(p, f)| multipart(&p, f)),
        raw(FORM_SEEDS),
    ]
    .prop_map(|b| ("multipart/form-data; boundary=XyZ", b));
    let no_boundary = raw(FORM_SEEDS).prop_map(|b| ("multipart/form-data", b));
    let json_body = body(FORM_SEEDS).prop_map(|b| ("application/json", b));
    let other = raw(FORM_SEEDS).prop_map(|b| ("text/plain", b));
    let submission = prop_oneof![
        3 => urlencoded,
        3 => multi,
        1 => no_boundary,
        3 => json_body,
        1 => other,
    ];
    let query = prop::sample::select(
        &[
            "",
            "?token=wrong",
            "?token=partner-fuzz-secret-0123456789",
            "?token=%ff",
        ][..],
    );
    runner(80)
        .run(&(form, submission, query), |(form, (ct, body), query)| {
            check(
                &anonymous,
                Shape::Native,
                "POST",
                &format!("/intake/{form}{query}"),
                &[("content-type", ct), ("accept", "application/json")],
                &body,
            )
        })
        .unwrap();
}

const FACADE_SEEDS: &[&str] = &[
    r#"{"fields": {"TITLE": "b24", "PHONE": [{"VALUE": "+79008448151", "VALUE_TYPE": "WORK"}], "SOURCE_ID": "WEB", "OPPORTUNITY": 1500, "STATUS_ID": "NEW"}}"#,
    r#"{"halt": 0, "cmd": {"a": "crm.lead.add?fields[TITLE]=x", "b": "crm.lead.list?filter[>ID]=$result[a]"}}"#,
    r#"{"filter": {"%TITLE": "x", ">=DATE_CREATE": "2026-01-01", "@ID": [1, 2]}, "select": ["ID", "PHONE"], "order": {"ID": "DESC"}, "start": 50}"#,
    "fields%5BTITLE%5D=R&D+lead&fields%5BPHONE%5D%5B0%5D%5BVALUE%5D=+7+999&start=0",
    "cmd[a]=crm.lead.get?id=1&cmd[b]=crm.lead.add?fields[TITLE]=y&halt=1",
];

#[test]
fn garbage_on_the_facade_over_the_socket_is_4xx_with_the_bitrix_error_and_appends_nothing() {
    let (_s, c) = server();
    let anonymous = Client::new(c.addr);
    let method = prop::sample::select(
        &[
            "crm.lead.add",
            "crm.lead.add.json",
            "batch",
            "batch.json",
            "crm.lead.list",
            "crm.lead.update",
            "crm.lead.add/extra",
            "crm.lead.%ff",
        ][..],
    );
    let ct = prop::sample::select(
        &[
            Some("application/json"),
            Some("application/x-www-form-urlencoded"),
            Some("multipart/form-data; boundary=XyZ"),
            Some("text/plain"),
            None,
        ][..],
    );
    let query = prop_oneof![
        Just(String::new()),
        pairs().prop_map(|p| format!(
            "?{}",
            form_urlencoded::Serializer::new(String::new())
                .extend_pairs(p)
                .finish()
        )),
    ];
    let http = prop::sample::select(&["POST", "POST", "GET"][..]);
    runner(80)
        .run(
            &(method, ct, query, http, body(FACADE_SEEDS)),
            |(method, ct, query, http, body)| {
                let mut h = Vec::new();
                if let Some(ct) = ct {
                    h.push(("content-type", ct));
                }
                check(
                    &anonymous,
                    Shape::Bitrix,
                    http,
                    &format!("/rest/1/{ADMIN_SECRET}/{method}{query}"),
                    &h,
                    &body,
                )
            },
        )
        .unwrap();
}
