//! Garbage on the Bitrix24 facade: generated and mutated query strings, form and JSON bodies
//! never panic, and whatever comes back is an envelope — a 200 with `result` and `time`, or a
//! 4xx with `error` and `error_description` (never a 5xx for bad input, never an error with
//! 200); a refused call changes nothing.

use chrono::{TimeZone, Utc};
use leadflow_engine::config::{Config, DEFAULT_CONFIG};
use leadflow_engine::ids::EntityKind;
use leadflow_server::bitrix::memory::MemoryCrm;
use leadflow_server::bitrix::{Mapping, Params, Reply, Timing, call};
use leadflow_testkit::fuzz::mutated;
use proptest::prelude::*;
use serde_json::Value;
use std::sync::Arc;

const METHODS: &[&str] = &[
    "crm.lead.add",
    "crm.lead.update",
    "crm.lead.get",
    "crm.lead.list",
    "crm.lead.delete",
    "crm.lead.fields",
    "crm.deal.add",
    "crm.deal.update",
    "crm.deal.list",
    "crm.contact.add",
    "crm.company.list",
    "crm.status.list",
    "crm.category.list",
    "crm.stagehistory.list",
    "crm.timeline.comment.add",
    "user.current",
    "batch",
    "event.bind",
    "event.unbind",
    "event.get",
    "crm.lead.Add.json",
    "nope",
];

/// Requests real clients send, to mutate.
const SEEDS: &[&str] = &[
    r#"{"halt": 0, "cmd": {"order0000000000": "crm.lead.add?__order=order0000000000&fields[TITLE]=chk%20lead&fields[PHONE][0][VALUE]=%2B79002339605&fields[STATUS_ID]=NEW&"}}"#,
    r#"{"fields": {"TITLE": "b24", "PHONE": [{"VALUE": "+79008448151", "VALUE_TYPE": "WORK"}], "SOURCE_ID": "WEB", "OPPORTUNITY": 1500, "ASSIGNED_BY_ID": 1, "STATUS_ID": "NEW"}}"#,
    r#"{"id": 1, "fields": {"STATUS_ID": "IN_PROCESS", "PHONE": [{"ID": "1101", "VALUE": ""}]}}"#,
    r#"{"filter": {"%TITLE": "x", ">=DATE_CREATE": "2026-01-01", "@ID": [1, 2]}, "select": ["ID", "PHONE"], "order": {"ID": "DESC"}, "start": 50}"#,
    r#"{"cmd": {"0": "crm.lead.list?filter[%3EID]=%24result%5B1%5D%5B49%5D%5BID%5D&start=-1", "1": "batch?cmd[a]=x"}, "halt": true}"#,
    "fields%5BTITLE%5D=R&D+lead+%231&fields%5BPHONE%5D%5B0%5D%5BVALUE%5D=+7+999&start=0&",
    "cmd[a]=crm.lead.get?id=1&cmd[b]=crm.deal.add?fields[CATEGORY_ID]=1&halt=1",
];

fn world() -> (Mapping, MemoryCrm) {
    let config = Arc::new(Config::from_toml("leadflow.toml", DEFAULT_CONFIG).unwrap());
    let t = Utc.with_ymd_and_hms(2026, 3, 2, 9, 0, 0).unwrap();
    (Mapping::new(config.clone()), MemoryCrm::new(config, t))
}

fn check(method: &str, query: Option<&str>, ct: Option<&str>, body: &[u8]) {
    let (m, mut crm) = world();
    // One lead to update, get and delete.
    let seed = Params::from_request(
        None,
        Some("application/json"),
        br#"{"fields": {"TITLE": "seed", "PHONE": "+79001234567"}}"#,
    )
    .unwrap();
    call(&m, 1, "crm.lead.add", &seed, &mut crm).unwrap();
    let before = crm.clone();
    let t = Utc.with_ymd_and_hms(2026, 3, 2, 9, 0, 0).unwrap();
    let timing = Timing {
        start: t,
        finish: t,
        tz: m.tz(),
    };
    let outcome =
        Params::from_request(query, ct, body).and_then(|p| call(&m, 1, method, &p, &mut crm));
    let reply = Reply::of(&outcome, &timing);
    let v: Value = serde_json::from_str(&reply.to_body()).expect("always JSON");
    match reply.status {
        200 => {
            assert!(v.get("result").is_some() && v.get("time").is_some(), "{v}");
            assert!(v.get("error").is_none(), "{v}");
        }
        400..=499 => {
            assert!(
                v["error"].is_string() && v["error_description"].is_string(),
                "{v}"
            );
            // A refused call appends nothing.
            for kind in [
                EntityKind::Lead,
                EntityKind::Deal,
                EntityKind::Contact,
                EntityKind::Company,
            ] {
                assert_eq!(crm.count(kind), before.count(kind), "{method}: {v}");
            }
            assert_eq!(
                crm.entity(leadflow_engine::StreamId::new(EntityKind::Lead, 1)),
                before.entity(leadflow_engine::StreamId::new(EntityKind::Lead, 1))
            );
        }
        other => panic!("status {other} for bad input: {v}"),
    }
}

/// PHP-style query strings from pieces clients use.
fn query() -> impl Strategy<Value = String> {
    let key = prop::sample::select(
        &[
            "fields",
            "filter",
            "select",
            "order",
            "start",
            "id",
            "ID",
            "cmd",
            "halt",
            "fields[TITLE]",
            "fields[PHONE][0][VALUE]",
            "filter[>ID]",
            "filter[%TITLE]",
            "cmd[a]",
            "select[]",
            "a[",
            "[",
            "fields[PHONE][][VALUE]",
            "filter[@ID][]",
            "order[ID]",
            "entityTypeId",
        ][..],
    );
    let value = prop::sample::select(
        &[
            "",
            "1",
            "-1",
            "0",
            "NEW",
            "C1:NEW",
            "crm.lead.get?id=1",
            "batch",
            "$result[a][0][ID]",
            "%FF",
            "%E2%82",
            "+7+999",
            "True",
            "99999999999999999999",
            "DESC",
            "x%25",
            "%00",
        ][..],
    );
    prop::collection::vec((key, value), 0..8).prop_map(|pairs| {
        pairs
            .into_iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("&")
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    #[test]
    fn mutated_client_requests_answer_an_envelope(
        method in prop::sample::select(METHODS),
        body in mutated(SEEDS),
        ct in prop::sample::select(&[Some("application/json"), Some("application/x-www-form-urlencoded"), None, Some("text/plain")][..]),
    ) {
        check(method, None, ct, &body);
    }

    #[test]
    fn generated_query_strings_answer_an_envelope(method in prop::sample::select(METHODS), q in query()) {
        check(method, Some(&q), None, b"");
    }

    #[test]
    fn arbitrary_bytes_never_panic(method in prop::sample::select(METHODS), body in prop::collection::vec(any::<u8>(), 0..200)) {
        check(method, None, Some("application/json"), &body);
        check(method, None, Some("application/x-www-form-urlencoded"), &body);
    }

    #[test]
    fn arbitrary_json_never_panics(method in prop::sample::select(METHODS), v in json(3)) {
        check(method, None, Some("application/json"), v.to_string().as_bytes());
    }
}

/// Arbitrary JSON objects with the keys a facade reads.
fn json(depth: u32) -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        prop::sample::select(
            &[
                "",
                "1",
                "NEW",
                "C1:NEW",
                "Y",
                "+79001234567",
                "a@b.ru",
                "crm.lead.get?id=1",
                "$result[x]"
            ][..]
        )
        .prop_map(Value::from),
    ];
    leaf.prop_recursive(depth, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(
                prop::sample::select(
                    &[
                        "fields",
                        "filter",
                        "select",
                        "order",
                        "start",
                        "id",
                        "cmd",
                        "halt",
                        "TITLE",
                        "PHONE",
                        "VALUE",
                        "ID",
                        "STATUS_ID",
                        "STAGE_ID",
                        "CATEGORY_ID",
                        "%TITLE",
                        ">ID",
                        "ASSIGNED_BY_ID",
                        "event",
                        "handler",
                        "entityTypeId",
                        "OWNER_ID"
                    ][..]
                )
                .prop_map(String::from),
                inner,
                0..5,
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// PHP's `http_build_query`: nested keys as `a[b][0]`, keys and values `urlencode`d.
fn build_query(v: &Value) -> String {
    fn walk(prefix: &str, v: &Value, out: &mut Vec<String>) {
        match v {
            Value::Object(m) => {
                for (k, x) in m {
                    walk(
                        &if prefix.is_empty() {
                            k.clone()
                        } else {
                            format!("{prefix}[{k}]")
                        },
                        x,
                        out,
                    );
                }
            }
            Value::Array(a) => {
                for (i, x) in a.iter().enumerate() {
                    walk(&format!("{prefix}[{i}]"), x, out);
                }
            }
            Value::String(s) => out.push(format!(
                "{}={}",
                leadflow_server::bitrix::events::urlencode(prefix),
                leadflow_server::bitrix::events::urlencode(s)
            )),
            other => out.push(format!("{prefix}={other}")),
        }
    }
    let mut out = Vec::new();
    walk("", v, &mut out);
    out.join("&")
}

/// Parameter trees as PHP forms carry them: strings at the leaves, non-empty maps and lists.
fn tree() -> impl Strategy<Value = Value> {
    let leaf = any::<String>().prop_map(Value::from);
    let inner = leaf.prop_recursive(4, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 1..4).prop_map(Value::Array),
            // Keys Bitrix24 uses (`%TITLE`, `>=ID`, `VALUE_TYPE`), never all digits and never
            // brackets, so a map stays a map.
            prop::collection::btree_map("[A-Za-z_%>=!@<][A-Za-z0-9_ %.-]{0,5}", inner, 1..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    });
    prop::collection::btree_map("[a-z][a-z0-9_]{0,6}", inner, 1..4)
        .prop_map(|m| Value::Object(m.into_iter().collect()))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    /// What PHP's `http_build_query` writes, the facade reads back as it was.
    #[test]
    fn php_style_queries_read_back_what_http_build_query_wrote(v in tree()) {
        let q = build_query(&v);
        let read = Params::from_request(Some(&q), None, b"").unwrap();
        prop_assert_eq!(Value::Object(read.as_map().clone()), v);
    }
}
