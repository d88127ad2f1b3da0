//! The Bitrix24 facade driven the way real clients drive it: the captured requests of
//! BITRIX24.md §2 verbatim (fast-bitrix24, b24pysdk, bitrix24-rest) and every method of issue
//! 10's list, through `Params::from_request` → `dispatch::call` → `Reply::of`, against the
//! in-memory CRM (the engine's own `decide`) on the configuration `leadflow init` writes.

use chrono::{DateTime, TimeZone, Utc};
use leadflow_engine::config::{Config, DEFAULT_CONFIG};
use leadflow_engine::ids::{EntityKind, StreamId};
use leadflow_server::bitrix::memory::MemoryCrm;
use leadflow_server::bitrix::{Mapping, Params, Reply, Timing, call};
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::sync::Arc;

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 2, 9, 0, 0).unwrap()
}

struct World {
    m: Mapping,
    crm: MemoryCrm,
}

impl World {
    fn new() -> World {
        let config = Arc::new(Config::from_toml("leadflow.toml", DEFAULT_CONFIG).unwrap());
        World {
            m: Mapping::new(config.clone()),
            crm: MemoryCrm::new(config, t0()),
        }
    }

    /// One HTTP call as a handler makes it: path's method, query, content type, body.
    fn http(&mut self, method: &str, query: Option<&str>, ct: Option<&str>, body: &[u8]) -> Reply {
        let timing = Timing {
            start: t0(),
            finish: t0() + chrono::Duration::milliseconds(250),
            tz: self.m.tz(),
        };
        let outcome = Params::from_request(query, ct, body)
            .and_then(|p| call(&self.m, 1, method, &p, &mut self.crm));
        let reply = Reply::of(&outcome, &timing);
        // Never an error with 200; the body is always JSON.
        let v: Value = serde_json::from_str(&reply.to_body()).unwrap();
        if reply.status == 200 {
            assert!(v.get("error").is_none(), "an error with 200: {v}");
            assert!(v["time"]["date_start"].is_string(), "no time block: {v}");
        } else {
            assert!(
                v["error"].is_string() && v["error_description"].is_string(),
                "{v}"
            );
        }
        reply
    }

    /// A JSON POST; answers the status and the body.
    fn post(&mut self, method: &str, body: &str) -> (u16, Value) {
        let r = self.http(method, None, Some("application/json"), body.as_bytes());
        (r.status, r.json())
    }

    /// A JSON POST that must succeed; answers `result`.
    fn ok(&mut self, method: &str, body: Value) -> Value {
        let (status, v) = self.post(method, &body.to_string());
        assert_eq!(status, 200, "{method} {body}: {v}");
        v["result"].clone()
    }

    /// The Bitrix24 user id of an employee.
    fn user(&self, employee: &str) -> i64 {
        self.m.user(&employee.into()).unwrap()
    }

    fn lead(&mut self, title: &str) -> i64 {
        let id = self.ok(
            "crm.lead.add",
            json!({"fields": {"TITLE": title, "PHONE": [{"VALUE": "+79001234567", "VALUE_TYPE": "WORK"}]}}),
        );
        id.as_i64().unwrap()
    }
}

fn ids(rows: &Value) -> Vec<i64> {
    rows.as_array()
        .unwrap()
        .iter()
        .map(|r| r["ID"].as_str().unwrap().parse().unwrap())
        .collect()
}

// ---- fast-bitrix24 ----------------------------------------------------------------------

#[test]
fn fast_bitrix24_batch_wrapped_add_creates_the_lead() {
    let mut w = World::new();
    let body = r#"{"halt": 0, "cmd": {"order0000000000": "crm.lead.add?__order=order0000000000&fields[TITLE]=chk1831346428-fast_bitrix24%20lead%20A%20%28phone%29&fields[NAME]=Ivan&fields[PHONE][0][VALUE]=%2B79002339605&fields[PHONE][0][VALUE_TYPE]=WORK&fields[EMAIL][0][VALUE]=ivan%40example.com&fields[EMAIL][0][VALUE_TYPE]=WORK&fields[SOURCE_ID]=WEB&fields[CURRENCY_ID]=RUB&fields[ASSIGNED_BY_ID]=1&fields[OPENED]=True&fields[OPPORTUNITY]=1500&fields[STATUS_ID]=NEW&"}}"#;
    let (status, v) = w.post("batch", body);
    assert_eq!(status, 200, "{v}");
    let inner = &v["result"];
    assert_eq!(inner["result"]["order0000000000"], json!(1), "{v}");
    assert_eq!(inner["result_error"], json!([]));
    for key in ["result_total", "result_next", "result_time"] {
        assert!(inner.get(key).is_some(), "{key} missing: {v}");
    }
    let lead = w.ok("crm.lead.get", json!({"id": 1}));
    assert_eq!(lead["TITLE"], "chk1831346428-fast_bitrix24 lead A (phone)");
    assert_eq!(lead["NAME"], "Ivan");
    assert_eq!(lead["PHONE"][0]["VALUE"], "+79002339605");
    assert_eq!(lead["PHONE"][0]["TYPE_ID"], "PHONE");
    assert_eq!(lead["EMAIL"][0]["VALUE"], "ivan@example.com");
    assert_eq!(lead["SOURCE_ID"], "WEB");
    assert_eq!(lead["STATUS_ID"], "NEW");
    assert_eq!(lead["OPPORTUNITY"], "1500.00");
    assert_eq!(lead["CURRENCY_ID"], "RUB");
    assert_eq!(lead["ASSIGNED_BY_ID"], "1");
    assert_eq!(lead["HAS_PHONE"], "Y");
    assert_eq!(lead["IS_RETURN_CUSTOMER"], "N");
    assert_eq!(lead["ID"], "1");
}

#[test]
fn fast_bitrix24_get_by_id_labels_results_with_the_ids() {
    let mut w = World::new();
    w.lead("a");
    w.lead("b");
    let (status, v) = w.post(
        "batch",
        r#"{"halt": 0, "cmd": {"2": "crm.lead.get?ID=2&", "240": "crm.lead.get?ID=240&"}}"#,
    );
    assert_eq!(status, 200);
    assert_eq!(v["result"]["result"]["2"]["TITLE"], "b");
    assert_eq!(
        v["result"]["result_error"]["240"]["error_description"],
        "Not found"
    );
}

#[test]
fn fast_bitrix24_get_all_pages_through_55_rows() {
    let mut w = World::new();
    for i in 0..55 {
        w.lead(&format!("chk1831346428-fast_bitrix24-page {i}"));
    }
    w.lead("another lead");
    // Page 1 goes direct, with the order fast-bitrix24 adds.
    let (status, first) = w.post(
        "crm.lead.list",
        r#"{"filter": {"%TITLE": "chk1831346428-fast_bitrix24-page"}, "select": ["ID", "TITLE", "STATUS_ID", "PHONE", "EMAIL"], "order": {"ID": "ASC"}}"#,
    );
    assert_eq!(status, 200);
    assert_eq!(first["total"], 55);
    assert_eq!(first["next"], 50);
    let rows = first["result"].as_array().unwrap();
    assert_eq!(rows.len(), 50);
    assert_eq!(rows[0]["PHONE"][0]["VALUE"], "+79001234567");
    assert!(rows[0].get("NAME").is_none(), "not selected: {}", rows[0]);
    // The rest as one batch, keys percent-encoded inside the command.
    let (status, rest) = w.post(
        "batch",
        r#"{"halt": 0, "cmd": {"cmd0000000000": "crm.lead.list?filter[%25TITLE]=chk1831346428-fast_bitrix24-page&select[0]=ID&order[ID]=ASC&start=50&"}}"#,
    );
    assert_eq!(status, 200);
    let page = &rest["result"]["result"]["cmd0000000000"];
    assert_eq!(page.as_array().unwrap().len(), 5);
    assert_eq!(rest["result"]["result_total"]["cmd0000000000"], 55);
    assert!(rest["result"]["result_next"].get("cmd0000000000").is_none());
    let all: BTreeSet<i64> = ids(&first["result"]).into_iter().chain(ids(page)).collect();
    assert_eq!(all.len(), 55);
}

// ---- b24pysdk -----------------------------------------------------------------------------

const B24_ADD: &str = r#"{"fields": {"TITLE": "chk1831346428-b24pysdk lead A (phone)", "NAME": "Ivan", "PHONE": [{"VALUE": "+79008448151", "VALUE_TYPE": "WORK"}], "SOURCE_ID": "WEB", "COMMENTS": "from the sdk", "OPPORTUNITY": 1500, "CURRENCY_ID": "RUB", "ASSIGNED_BY_ID": 1, "STATUS_ID": "NEW"}}"#;

#[test]
fn b24pysdk_adds_updates_gets_and_lists_with_its_method_casing() {
    let mut w = World::new();
    let (status, v) = w.post("crm.lead.Add.json", B24_ADD);
    assert_eq!(status, 200, "{v}");
    let id = v["result"].as_i64().unwrap();
    // All six time keys b24pysdk parses, and the optional two.
    for key in [
        "start",
        "finish",
        "duration",
        "processing",
        "date_start",
        "date_finish",
        "operating",
        "operating_reset_at",
    ] {
        assert!(v["time"].get(key).is_some(), "time.{key} missing: {v}");
    }
    assert_eq!(v["time"]["date_start"], "2026-03-02T12:00:00+03:00");
    let (status, v) = w.post(
        "crm.lead.Update.json",
        &format!(r#"{{"id": {id}, "fields": {{"STATUS_ID": "IN_PROCESS"}}}}"#),
    );
    assert_eq!((status, &v["result"]), (200, &json!(true)), "{v}");
    let (_, v) = w.post("crm.lead.Get.json", &format!(r#"{{"id": {id}}}"#));
    assert_eq!(v["result"]["STATUS_ID"], "IN_PROCESS");
    assert_eq!(v["result"]["COMMENTS"], "from the sdk");
    let (_, v) = w.post(
        "crm.lead.List.json",
        r#"{"select": ["ID", "TITLE", "STATUS_ID"], "filter": {"STATUS_ID": "IN_PROCESS"}}"#,
    );
    assert_eq!(ids(&v["result"]), vec![id]);
    assert_eq!(v["total"], 1);
    let (_, v) = w.post("crm.status.list.json", "{}");
    let statuses: Vec<&str> = v["result"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["ENTITY_ID"] == "STATUS")
        .map(|r| r["STATUS_ID"].as_str().unwrap())
        .collect();
    for s in ["NEW", "IN_PROCESS", "PROCESSED", "JUNK", "CONVERTED"] {
        assert!(statuses.contains(&s), "{s} not in {statuses:?}");
    }
}

#[test]
fn b24pysdk_batches_with_named_labels_and_as_list_pages() {
    let mut w = World::new();
    for i in 0..60 {
        w.lead(&format!("chk1831346428-b24pysdk-page {i}"));
    }
    w.ok("crm.deal.add", json!({"fields": {"TITLE": "d1"}}));
    w.ok("crm.deal.add", json!({"fields": {"TITLE": "d2"}}));
    let (status, v) = w.post(
        "batch.json",
        r#"{"cmd": {"lead": "crm.lead.Get?id=59", "deal": "crm.deal.Get?id=2"}, "halt": false}"#,
    );
    assert_eq!(status, 200);
    assert_eq!(v["result"]["result"]["lead"]["ID"], "59");
    assert_eq!(v["result"]["result"]["deal"]["TITLE"], "d2");
    assert!(v["result"]["result_time"]["deal"]["date_finish"].is_string());
    let (status, v) = w.post("batch.json", r#"{"cmd": {"0": "crm.lead.List?select[0]=ID&filter[%25TITLE]=chk1831346428-b24pysdk-page&start=50"}, "halt": true}"#);
    assert_eq!(status, 200);
    assert_eq!(v["result"]["result"]["0"].as_array().unwrap().len(), 10);
    assert_eq!(v["result"]["result_total"]["0"], 60);
}

/// b24pysdk's `convert_params`: PHP-style keys, `quote_plus` on keys and values.
fn quote_plus(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'_' | b'.' | b'-' | b'~' => {
                out.push(b as char)
            }
            b' ' => out.push('+'),
            b => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

#[test]
fn b24pysdk_as_list_fast_with_result_references_gets_each_of_120_rows_once() {
    let mut w = World::new();
    for i in 0..120 {
        w.lead(&format!("fast {i}"));
    }
    for i in 0..7 {
        w.lead(&format!("other {i}"));
    }
    // The first call: start=-1, ordered by ID.
    let (status, first) = w.post(
        "crm.lead.list",
        r#"{"filter": {"%TITLE": "fast"}, "order": {"ID": "ASC"}, "start": -1}"#,
    );
    assert_eq!(status, 200);
    assert!(first.get("total").is_none() && first.get("next").is_none());
    let mut seen: Vec<i64> = ids(&first["result"]);
    assert_eq!(seen.len(), 50);
    // Then batches of 50 commands, each filtered past the last id of the previous one, as
    // `_ListFastCaller` builds them, until a page is short.
    let mut last = *seen.last().unwrap();
    loop {
        let mut cmd = serde_json::Map::new();
        for i in 0..50 {
            let after = if i == 0 {
                last.to_string()
            } else {
                format!("$result[req_{}][49][ID]", i - 1)
            };
            let query = format!(
                "{}={}&{}={}&{}={}&start=-1",
                quote_plus("filter[%TITLE]"),
                quote_plus("fast"),
                quote_plus("filter[>ID]"),
                quote_plus(&after),
                quote_plus("order[ID]"),
                "ASC",
            );
            cmd.insert(format!("req_{i}"), json!(format!("crm.lead.list?{query}")));
        }
        let (status, v) = w.post("batch", &json!({"cmd": cmd, "halt": true}).to_string());
        assert_eq!(status, 200, "{v}");
        let results = &v["result"]["result"];
        let mut short = false;
        // The client reads the results in the order they come.
        let body = serde_json::to_string(&v).unwrap();
        let mut labels: Vec<&str> = results
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        labels.sort_by_key(|l| body.find(&format!("\"{l}\":[")).unwrap());
        for label in labels {
            let page = ids(&results[label]);
            seen.extend(&page);
            if page.len() < 50 {
                short = true;
                break;
            }
            last = *page.last().unwrap();
        }
        if short {
            break;
        }
    }
    let distinct: BTreeSet<i64> = seen.iter().copied().collect();
    assert_eq!(seen.len(), 120, "duplicated rows");
    assert_eq!(distinct.len(), 120);
}

// ---- bitrix24-rest -------------------------------------------------------------------------

#[test]
fn bitrix24_rest_get_with_unescaped_values_stores_what_bitrix24_stores() {
    let mut w = World::new();
    let query = "fields%5BTITLE%5D=R&D+lead+%231&fields%5BNAME%5D=Ivan&fields%5BPHONE%5D%5B0%5D%5BVALUE%5D=+7+999+000-00-01&fields%5BPHONE%5D%5B0%5D%5BVALUE_TYPE%5D=WORK&fields%5BOPENED%5D=True&start=0&";
    let r = w.http("crm.lead.add.json", Some(query), None, b"");
    assert_eq!(r.status, 200, "{}", r.to_body());
    let id = r.json()["result"].as_i64().unwrap();
    let lead = w.ok("crm.lead.get", json!({"id": id}));
    assert_eq!(lead["TITLE"], "R");
    assert_eq!(lead["NAME"], "Ivan");
    assert_eq!(lead["PHONE"].as_array().unwrap().len(), 1);
    // Its batch sends `cmd[a]=crm.lead.get?id=1` unescaped in the query string.
    let r = w.http(
        "batch.json",
        Some("cmd[a]=crm.lead.get?id=1&halt=0"),
        None,
        b"",
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["result"]["result"]["a"]["TITLE"], "R");
}

#[test]
fn form_encoded_bodies_work_like_crest_sends_them() {
    let mut w = World::new();
    let r = w.http(
        "crm.lead.add",
        None,
        Some("application/x-www-form-urlencoded"),
        b"fields%5BTITLE%5D=Form+lead&fields%5BEMAIL%5D%5Bn0%5D%5BVALUE%5D=a%40b.ru",
    );
    assert_eq!(r.status, 200, "{}", r.to_body());
    let lead = w.ok("crm.lead.get", json!({"ID": "1"}));
    assert_eq!(lead["TITLE"], "Form lead");
    assert_eq!(lead["EMAIL"][0]["VALUE"], "a@b.ru");
}

// ---- errors ------------------------------------------------------------------------------

#[test]
fn an_unknown_method_is_404_direct_and_an_inner_error_in_a_batch() {
    let mut w = World::new();
    let (status, v) = w.post("crm.lead.merge", "{}");
    assert_eq!(status, 404);
    assert_eq!(
        v,
        json!({"error": "ERROR_METHOD_NOT_FOUND", "error_description": "Method not found!"})
    );
    let (status, v) = w.post(
        "batch",
        r#"{"halt": 0, "cmd": {"order0000000000": "crm.lead.merge?id=1&"}}"#,
    );
    assert_eq!(status, 200);
    assert_eq!(
        v["result"]["result_error"]["order0000000000"]["error"],
        "ERROR_METHOD_NOT_FOUND"
    );
}

#[test]
fn missing_ids_and_missing_records_are_400() {
    let mut w = World::new();
    let (status, v) = w.post("crm.lead.get", "{}");
    assert_eq!(
        (status, v["error_description"].as_str()),
        (400, Some("ID is not defined or invalid."))
    );
    let (status, v) = w.post("crm.lead.update", r#"{"id": "x", "fields": {}}"#);
    assert_eq!((status, v["error"].as_str()), (400, Some("")));
    let (status, v) = w.post("crm.lead.get", r#"{"id": 77}"#);
    assert_eq!(
        (status, v["error_description"].as_str()),
        (400, Some("Not found"))
    );
}

#[test]
fn batch_limits_nesting_and_halt() {
    let mut w = World::new();
    let many: serde_json::Map<String, Value> = (0..51)
        .map(|i| (format!("c{i}"), json!("user.current")))
        .collect();
    let (status, v) = w.post("batch", &json!({"cmd": many}).to_string());
    assert_eq!(
        (status, v["error"].as_str()),
        (400, Some("ERROR_BATCH_LENGTH_EXCEEDED"))
    );
    let (status, v) = w.post(
        "batch",
        r#"{"cmd": {"inner": "batch?cmd[a]=user.current"}}"#,
    );
    assert_eq!(status, 200);
    assert_eq!(
        v["result"]["result_error"]["inner"]["error"],
        "ERROR_BATCH_METHOD_NOT_ALLOWED"
    );
    for halt in ["1", "true"] {
        let body = format!(
            r#"{{"halt": {halt}, "cmd": {{"a": "crm.lead.add?fields[TITLE]=one", "bad": "crm.nope", "c": "crm.lead.add?fields[TITLE]=two"}}}}"#
        );
        let before = w.crm.count(EntityKind::Lead);
        let (status, v) = w.post("batch", &body);
        assert_eq!(status, 200);
        assert!(
            v["result"]["result"].get("c").is_none(),
            "halt did not stop: {v}"
        );
        assert_eq!(w.crm.count(EntityKind::Lead), before + 1);
    }
    let (_, v) = w.post("batch", r#"{"halt": 0, "cmd": {"a": "crm.lead.add?fields[TITLE]=one", "bad": "crm.nope", "c": "crm.lead.add?fields[TITLE]=two"}}"#);
    assert!(v["result"]["result"].get("c").is_some(), "{v}");
    assert!(v["result"]["result_time"].get("bad").is_some(), "{v}");
}

#[test]
fn a_batch_cannot_do_what_its_token_cannot() {
    let mut w = World::new();
    w.crm.denied.insert("crm.deal.add".into());
    let (status, v) = w.post("batch", r#"{"cmd": {"lead": "crm.lead.add?fields[TITLE]=ok", "deal": "crm.deal.add?fields[TITLE]=no"}}"#);
    assert_eq!(status, 200);
    assert_eq!(
        v["result"]["result_error"]["deal"]["error"],
        "ACCESS_DENIED"
    );
    assert_eq!(w.crm.count(EntityKind::Deal), 0);
    let (status, _) = w.post("crm.deal.add", r#"{"fields": {"TITLE": "no"}}"#);
    assert_eq!(status, 403);
}

#[test]
fn a_refused_change_is_400_with_leadflows_message_and_changes_nothing() {
    let mut w = World::new();
    let id = w
        .ok("crm.lead.add", json!({"fields": {"TITLE": "bare"}}))
        .as_i64()
        .unwrap();
    // Entering IN_PROCESS needs a responsible and a phone or e-mail.
    let (status, v) = w.post(
        "crm.lead.update",
        &format!(r#"{{"id": {id}, "fields": {{"NAME": "Oleg", "STATUS_ID": "IN_PROCESS"}}}}"#),
    );
    assert_eq!(status, 400, "{v}");
    assert_eq!(v["error"], "");
    let said = v["error_description"].as_str().unwrap();
    assert!(
        said.contains("responsible") && said.contains("(Bitrix24: ASSIGNED_BY_ID, PHONE or EMAIL)"),
        "{v}"
    );
    let lead = w.ok("crm.lead.get", json!({"id": id}));
    assert_eq!(
        (lead["STATUS_ID"].as_str(), lead["NAME"].as_str()),
        (Some("NEW"), None)
    );
    // With both, in one call, it moves: the update and the assignment come first.
    let petrova = w.user("petrova");
    let body = format!(
        r#"{{"id": {id}, "fields": {{"STATUS_ID": "IN_PROCESS", "ASSIGNED_BY_ID": "{petrova}", "PHONE": [{{"VALUE": "+79001112233"}}]}}}}"#
    );
    assert_eq!(w.post("crm.lead.update", &body).0, 200);
    let lead = w.ok("crm.lead.get", json!({"id": id}));
    assert_eq!(lead["STATUS_ID"], "IN_PROCESS");
    assert_eq!(lead["ASSIGNED_BY_ID"], petrova.to_string());
}

#[test]
fn field_errors_name_the_bitrix24_field() {
    let mut w = World::new();
    for (fields, needle) in [
        (json!({"TITLE": "x", "STATUS_ID": "NOPE"}), "STATUS_ID"),
        (json!({"TITLE": "x", "SOURCE_ID": "MOON"}), "SOURCE_ID"),
        (
            json!({"TITLE": "x", "ASSIGNED_BY_ID": 999}),
            "ASSIGNED_BY_ID",
        ),
        (json!({"TITLE": "x", "UF_CRM_NOPE": "1"}), "UF_CRM_NOPE"),
        (json!({"TITLE": "x", "CURRENCY_ID": "USD"}), "CURRENCY_ID"),
        (json!({"TITLE": {"a": 1}}), "TITLE"),
        (
            json!({"TITLE": "x", "UF_CRM_MATERIAL": "gold"}),
            "field UF_CRM_MATERIAL: expected an item id 1 to 5",
        ),
    ] {
        let (status, v) = w.post("crm.lead.add", &json!({"fields": fields}).to_string());
        assert_eq!(status, 400, "{fields}: {v}");
        assert!(
            v["error_description"].as_str().unwrap().contains(needle),
            "{needle}: {v}"
        );
    }
    assert_eq!(w.crm.count(EntityKind::Lead), 0);
}

// ---- the rest of the methods ---------------------------------------------------------------

#[test]
fn multi_fields_append_overwrite_and_delete_by_item_id() {
    let mut w = World::new();
    let id = w.ok("crm.lead.add", json!({"fields": {"TITLE": "m", "PHONE": [{"VALUE": "+79001111111"}, {"VALUE": "+79002222222"}]}})).as_i64().unwrap();
    let lead = w.ok("crm.lead.get", json!({"id": id}));
    let first = lead["PHONE"][0]["ID"].as_str().unwrap().to_owned();
    let second = lead["PHONE"][1]["ID"].as_str().unwrap().to_owned();
    assert_ne!(first, second);
    w.ok(
        "crm.lead.update",
        json!({"id": id, "fields": {"PHONE": [{"VALUE": "+79003333333", "VALUE_TYPE": "MOBILE"}]}}),
    );
    let phones = |w: &mut World| -> Vec<String> {
        let lead = w.ok("crm.lead.get", json!({"id": id}));
        lead["PHONE"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["VALUE"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(
        phones(&mut w),
        ["+79001111111", "+79002222222", "+79003333333"]
    );
    w.ok(
        "crm.lead.update",
        json!({"id": id, "fields": {"PHONE": [{"ID": first, "VALUE": "+79004444444"}]}}),
    );
    assert_eq!(
        phones(&mut w),
        ["+79004444444", "+79002222222", "+79003333333"]
    );
    w.ok(
        "crm.lead.update",
        json!({"id": id, "fields": {"PHONE": [{"ID": second, "VALUE": ""}]}}),
    );
    assert_eq!(phones(&mut w), ["+79004444444", "+79003333333"]);
    let lead = w.ok("crm.lead.get", json!({"id": id}));
    let third = lead["PHONE"][1]["ID"].as_str().unwrap().to_owned();
    w.ok("crm.lead.update", json!({"id": id, "fields": {"PHONE": [{"ID": third, "VALUE": "+79003333333", "DELETE": "Y"}]}}));
    assert_eq!(phones(&mut w), ["+79004444444"]);
    let (status, v) = w.post(
        "crm.lead.update",
        &json!({"id": id, "fields": {"PHONE": [{"ID": "5", "VALUE": "+79005555555"}]}}).to_string(),
    );
    assert_eq!(status, 400);
    assert!(
        v["error_description"].as_str().unwrap().contains("PHONE"),
        "{v}"
    );
}

#[test]
fn deals_live_in_categories_with_prefixed_stages() {
    let mut w = World::new();
    let lead = w.lead("source lead");
    let morozova = w.user("morozova");
    let id = w.ok("crm.deal.add", json!({"fields": {"TITLE": "Kitchen", "CATEGORY_ID": 1, "OPPORTUNITY": "125000.50", "CURRENCY_ID": "RUB", "ASSIGNED_BY_ID": morozova, "LEAD_ID": lead}})).as_i64().unwrap();
    let deal = w.ok("crm.deal.get", json!({"id": id}));
    assert_eq!(deal["CATEGORY_ID"], "1");
    assert_eq!(deal["STAGE_ID"], "C1:NEW");
    assert_eq!(deal["OPPORTUNITY"], "125000.50");
    assert_eq!(deal["LEAD_ID"], lead.to_string());
    assert_eq!(deal["IS_RETURN_CUSTOMER"], "N");
    assert_eq!(deal["ASSIGNED_BY_ID"], morozova.to_string());
    w.ok(
        "crm.deal.update",
        json!({"id": id, "fields": {"STAGE_ID": "C1:MEASUREMENT"}}),
    );
    assert_eq!(
        w.ok("crm.deal.get", json!({"id": id}))["STAGE_ID"],
        "C1:MEASUREMENT"
    );
    let (status, v) = w.post(
        "crm.deal.update",
        &json!({"id": id, "fields": {"CATEGORY_ID": 0}}).to_string(),
    );
    assert_eq!(status, 400, "{v}");
    let (status, _) = w.post(
        "crm.deal.update",
        &json!({"id": id, "fields": {"STAGE_ID": "WON"}}).to_string(),
    );
    assert_eq!(status, 400, "a stage of category 0");
    let other = w
        .ok(
            "crm.deal.add",
            json!({"fields": {"TITLE": "Table", "STAGE_ID": "C1:NEW"}}),
        )
        .as_i64()
        .unwrap();
    w.ok("crm.deal.add", json!({"fields": {"TITLE": "Goods deal"}}));
    let v = w.ok(
        "crm.deal.list",
        json!({"filter": {"CATEGORY_ID": 1}, "select": ["ID", "STAGE_ID"]}),
    );
    assert_eq!(ids(&v), vec![id, other]);
    let v = w.ok("crm.deal.list", json!({"filter": {"STAGE_ID": "NEW"}}));
    assert_eq!(v.as_array().unwrap().len(), 1);
    assert_eq!(v[0]["CATEGORY_ID"], "0");
    // Repeat detection shows on the deal of a repeat lead.
    w.crm.repeats.insert(lead);
    assert_eq!(
        w.ok("crm.deal.get", json!({"id": id}))["IS_RETURN_CUSTOMER"],
        "Y"
    );
    assert_eq!(
        w.ok("crm.lead.get", json!({"id": lead}))["IS_RETURN_CUSTOMER"],
        "Y"
    );
    let v = w.ok(
        "crm.lead.list",
        json!({"filter": {"IS_RETURN_CUSTOMER": "True"}}),
    );
    assert_eq!(ids(&v), vec![lead]);
}

#[test]
fn contacts_and_companies_add_get_update_list_delete() {
    let mut w = World::new();
    let company = w
        .ok(
            "crm.company.add",
            json!({"fields": {"TITLE": "Stone LLC", "EMAIL": [{"VALUE": "info@stone.ru"}]}}),
        )
        .as_i64()
        .unwrap();
    let contact = w.ok("crm.contact.add", json!({"fields": {"NAME": "Anna", "LAST_NAME": "Petrova", "COMPANY_ID": company, "PHONE": [{"VALUE": "+79007777777"}], "BIRTHDATE": "1990-05-01"}})).as_i64().unwrap();
    let c = w.ok("crm.contact.get", json!({"id": contact}));
    assert_eq!(c["NAME"], "Anna Petrova");
    assert_eq!(c["COMPANY_ID"], company.to_string());
    assert_eq!(c["BIRTHDATE"], "1990-05-01");
    w.ok(
        "crm.contact.update",
        json!({"id": contact, "fields": {"NAME": "Anna P."}}),
    );
    assert_eq!(
        w.ok("crm.contact.get", json!({"id": contact}))["NAME"],
        "Anna P."
    );
    assert_eq!(
        w.ok("crm.company.get", json!({"id": company}))["EMAIL"][0]["VALUE"],
        "info@stone.ru"
    );
    w.ok(
        "crm.company.update",
        json!({"id": company, "fields": {"TITLE": "Stone Ltd"}}),
    );
    let v = w.ok("crm.company.list", json!({"filter": {"%TITLE": "stone"}}));
    assert_eq!(v[0]["TITLE"], "Stone Ltd");
    let v = w.ok(
        "crm.contact.list",
        json!({"filter": {"PHONE": "8 900 777-77-77"}, "select": ["ID"]}),
    );
    assert_eq!(ids(&v), vec![contact]);
    assert_eq!(
        w.ok("crm.contact.delete", json!({"id": contact})),
        json!(true)
    );
    assert!(
        w.crm
            .entity(StreamId::new(EntityKind::Contact, contact))
            .is_none()
    );
    let (status, _) = w.post("crm.contact.delete", &json!({"id": contact}).to_string());
    assert_eq!(status, 400);
}

#[test]
fn fields_statuses_categories_and_users_describe_the_configuration() {
    let mut w = World::new();
    let f = w.ok("crm.lead.fields", json!({}));
    assert_eq!(f["STATUS_ID"]["type"], "crm_status");
    assert_eq!(f["STATUS_ID"]["statusType"], "STATUS");
    assert_eq!(f["PHONE"]["isMultiple"], true);
    assert_eq!(f["UF_CRM_MATERIAL"]["type"], "enumeration");
    assert_eq!(f["UF_CRM_MATERIAL"]["items"][0]["VALUE"], "granite");
    assert_eq!(f["IS_RETURN_CUSTOMER"]["isReadOnly"], true);
    // Enumeration items have Bitrix24's integer ids; records show the id and take it (or the
    // option's own text), and a filter takes it too.
    let items = f["UF_CRM_MATERIAL"]["items"].as_array().unwrap().clone();
    for (i, item) in items.iter().enumerate() {
        assert_eq!(item["ID"], (i + 1).to_string(), "{item}");
    }
    let (by_id, by_text) = (items[1]["ID"].clone(), items[2]["VALUE"].clone());
    let a = w.ok(
        "crm.lead.add",
        json!({"fields": {"TITLE": "enum a", "NAME": "A", "UF_CRM_MATERIAL": by_id}}),
    );
    let b = w.ok(
        "crm.lead.add",
        json!({"fields": {"TITLE": "enum b", "NAME": "B", "UF_CRM_MATERIAL": by_text}}),
    );
    assert_eq!(
        w.ok("crm.lead.get", json!({"id": a}))["UF_CRM_MATERIAL"],
        "2"
    );
    assert_eq!(
        w.ok("crm.lead.get", json!({"id": b}))["UF_CRM_MATERIAL"],
        "3"
    );
    let found = w.ok(
        "crm.lead.list",
        json!({"filter": {"UF_CRM_MATERIAL": "3"}, "select": ["ID"]}),
    );
    assert_eq!(found, json!([{"ID": b.to_string()}]));
    let f = w.ok("crm.deal.fields", json!({}));
    assert_eq!(f["LEAD_ID"]["isReadOnly"], false);
    assert_eq!(f["CATEGORY_ID"]["isImmutable"], true);
    for kind in ["contact", "company"] {
        assert!(w.ok(&format!("crm.{kind}.fields"), json!({}))["ID"].is_object());
    }
    let stages = w.ok(
        "crm.status.list",
        json!({"filter": {"ENTITY_ID": "DEAL_STAGE_1"}}),
    );
    let ids: Vec<&str> = stages
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["STATUS_ID"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        [
            "C1:NEW",
            "C1:MEASUREMENT",
            "C1:CONTRACT",
            "C1:WON",
            "C1:LOSE"
        ]
    );
    let sources = w.ok(
        "crm.status.list",
        json!({"filter": {"ENTITY_ID": "SOURCE"}}),
    );
    assert!(
        sources
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["STATUS_ID"] == "WEB" && s["NAME"] == "web_form")
    );
    let cats = w.ok("crm.category.list", json!({"entityTypeId": 2}));
    assert_eq!(
        cats["categories"][1],
        json!({"id": 1, "name": "Services", "sort": 200, "entityTypeId": 2, "isDefault": "N"})
    );
    let me = w.ok("user.current", json!({}));
    assert_eq!(
        (me["ID"].as_str(), me["XML_ID"].as_str()),
        (Some("1"), Some("ivanov"))
    );
}

#[test]
fn stage_history_comments_and_event_bindings() {
    let mut w = World::new();
    let sidorov = w.user("sidorov");
    let id = w
        .ok(
            "crm.lead.add",
            json!({"fields": {"TITLE": "h", "ASSIGNED_BY_ID": sidorov, "PHONE": "+79001234567"}}),
        )
        .as_i64()
        .unwrap();
    w.ok(
        "crm.lead.update",
        json!({"id": id, "fields": {"STATUS_ID": "IN_PROCESS"}}),
    );
    let h = w.ok(
        "crm.stagehistory.list",
        json!({"entityTypeId": 1, "filter": {"OWNER_ID": id}}),
    );
    let items = h["items"].as_array().unwrap();
    assert_eq!(items.len(), 2);
    assert_eq!(
        (items[0]["STATUS_ID"].as_str(), items[0]["TYPE_ID"].as_i64()),
        (Some("NEW"), Some(1))
    );
    assert_eq!(
        (items[1]["STATUS_ID"].as_str(), items[1]["TYPE_ID"].as_i64()),
        (Some("IN_PROCESS"), Some(2))
    );
    let (status, _) = w.post("crm.stagehistory.list", r#"{"entityTypeId": 1}"#);
    assert_eq!(status, 400);
    let c = w.ok(
        "crm.timeline.comment.add",
        json!({"fields": {"ENTITY_ID": id, "ENTITY_TYPE": "lead", "COMMENT": "called back"}}),
    );
    assert_eq!(c, json!(1));
    assert_eq!(
        w.crm.comments,
        [(
            StreamId::new(EntityKind::Lead, id),
            "called back".to_owned()
        )]
    );
    let (status, _) = w.post(
        "crm.timeline.comment.add",
        r#"{"fields": {"ENTITY_ID": 99, "ENTITY_TYPE": "lead", "COMMENT": "x"}}"#,
    );
    assert_eq!(status, 400);
    assert_eq!(
        w.ok(
            "event.bind",
            json!({"event": "onCrmLeadAdd", "handler": "http://127.0.0.1:9/h"})
        ),
        json!(true)
    );
    w.ok(
        "event.bind",
        json!({"event": "ONCRMDEALUPDATE", "handler": "http://127.0.0.1:9/h"}),
    );
    let (status, v) = w.post(
        "event.bind",
        r#"{"event": "ONCRMDEALUPDATE", "handler": "http://127.0.0.1:9/h"}"#,
    );
    assert_eq!(status, 400, "{v}");
    assert_eq!(
        v,
        json!({"error": "ERROR_CORE", "error_description": "Handler already binded"})
    );
    let got = w.ok("event.get", json!({}));
    assert_eq!(got[0]["event"], "ONCRMLEADADD");
    assert_eq!(got.as_array().unwrap().len(), 2);
    assert_eq!(
        w.ok(
            "event.unbind",
            json!({"event": "ONCRMLEADADD", "handler": "http://127.0.0.1:9/h"})
        ),
        json!({"count": 1})
    );
    assert_eq!(w.ok("event.get", json!({})).as_array().unwrap().len(), 1);
    let (status, v) = w.post(
        "event.bind",
        r#"{"event": "ONSOMETHING", "handler": "http://x/"}"#,
    );
    assert_eq!(status, 400, "{v}");
    let (status, _) = w.post(
        "event.bind",
        r#"{"event": "ONCRMLEADADD", "handler": "ftp://x/"}"#,
    );
    assert_eq!(status, 400);
}

#[test]
fn the_plain_fields_a_web_form_sends_round_trip() {
    let mut w = World::new();
    let fields = json!({"TITLE": "Form", "NAME": "Ivan", "LAST_NAME": "Petrov", "COMPANY_TITLE": "Stone LLC", "COMMENTS": "call me", "OPPORTUNITY": "1500.00", "CURRENCY_ID": "RUB", "PHONE": [{"VALUE": "+79001234567", "VALUE_TYPE": "WORK"}], "EMAIL": [{"VALUE": "ivan@example.com", "VALUE_TYPE": "WORK"}]});
    let id = w.ok("crm.lead.add", json!({"fields": fields}));
    let lead = w.ok("crm.lead.get", json!({"id": id}));
    for key in [
        "TITLE",
        "NAME",
        "COMPANY_TITLE",
        "COMMENTS",
        "OPPORTUNITY",
        "CURRENCY_ID",
    ] {
        assert_eq!(lead[key], fields[key], "{key}: {lead}");
    }
    for key in ["PHONE", "EMAIL"] {
        assert_eq!(lead[key][0]["VALUE"], fields[key][0]["VALUE"], "{key}");
    }
}

#[test]
fn list_filters_by_dates_and_pages_with_start() {
    let mut w = World::new();
    for i in 0..3 {
        w.lead(&format!("l{i}"));
    }
    // The in-memory clock advances a second per change: lead 1 at 09:00:01 UTC.
    let v = w.ok(
        "crm.lead.list",
        json!({"filter": {">DATE_CREATE": "2026-03-02T12:00:01+03:00"}}),
    );
    assert_eq!(ids(&v), vec![2, 3]);
    let v = w.ok(
        "crm.lead.list",
        json!({"order": {"ID": "DESC"}, "start": 1}),
    );
    assert_eq!(ids(&v), vec![2, 1]);
    assert_eq!(
        w.ok("crm.lead.get", json!({"id": 1}))["DATE_CREATE"],
        "2026-03-02T12:00:01+03:00"
    );
}

#[test]
fn respond_is_a_whole_handler_and_names_bitrix24_fields_in_refusals() {
    let mut w = World::new();
    let (status, body) = leadflow_server::bitrix::respond(
        &w.m,
        1,
        "crm.lead.add.json",
        Some("fields[TITLE]=via+respond&fields[ASSIGNED_BY_ID]=2"),
        None,
        b"",
        &mut w.crm,
        t0(),
        || t0() + chrono::Duration::seconds(2),
    );
    // admin (user 2) works no lead pipeline: the refusal says which user and field.
    assert_eq!(status, 400, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert!(
        v["error_description"]
            .as_str()
            .unwrap()
            .ends_with("(Bitrix24: ASSIGNED_BY_ID 2)"),
        "{v}"
    );
    let (status, body) = leadflow_server::bitrix::respond(
        &w.m,
        1,
        "crm.lead.add.json",
        Some("fields[TITLE]=via+respond"),
        None,
        b"",
        &mut w.crm,
        t0(),
        || t0() + chrono::Duration::seconds(2),
    );
    assert_eq!(status, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["time"]["duration"], json!(2.0));
    assert_eq!(
        w.ok("crm.lead.get", json!({"id": v["result"]}))["TITLE"],
        "via respond"
    );
}

#[test]
fn standard_fields_leadflow_does_not_keep_are_ignored_and_typos_are_not() {
    let mut w = World::new();
    let id = w.ok(
        "crm.lead.add",
        json!({"fields": {"TITLE": "s", "OPENED": "Y", "STATUS_DESCRIPTION": "x", "UTM_SOURCE": "ya", "ADDRESS": "Moscow", "ID": 77, "IS_RETURN_CUSTOMER": "Y"}}),
    );
    assert_eq!(id, json!(1));
    let lead = w.ok("crm.lead.get", json!({"id": 1}));
    assert_eq!(lead["IS_RETURN_CUSTOMER"], "N");
    // No budget: OPPORTUNITY reads as Bitrix24 writes an empty amount.
    assert_eq!(lead["OPPORTUNITY"], "0.00");
    let (status, v) = w.post("crm.lead.add", r#"{"fields": {"TITEL": "typo"}}"#);
    assert_eq!(status, 400);
    assert!(
        v["error_description"]
            .as_str()
            .unwrap()
            .contains("unknown lead field TITEL"),
        "{v}"
    );
    let (status, _) = w.post(
        "crm.deal.add",
        r#"{"fields": {"TITLE": "d", "OPPORTUNITY": "abc"}}"#,
    );
    assert_eq!(status, 400);
}

#[test]
fn every_method_of_the_list_answers_through_dispatch() {
    use leadflow_server::bitrix::{Method, Op};
    let mut w = World::new();
    let lead = w.lead("every");
    let deal = w
        .ok("crm.deal.add", json!({"fields": {"TITLE": "every"}}))
        .as_i64()
        .unwrap();
    let contact = w
        .ok("crm.contact.add", json!({"fields": {"NAME": "every"}}))
        .as_i64()
        .unwrap();
    let company = w
        .ok("crm.company.add", json!({"fields": {"TITLE": "every"}}))
        .as_i64()
        .unwrap();
    let id = |kind: EntityKind| match kind {
        EntityKind::Lead => lead,
        EntityKind::Deal => deal,
        EntityKind::Contact => contact,
        _ => company,
    };
    let mut served = BTreeSet::new();
    // Deletes last, so the other calls find their records.
    let mut methods = Method::all();
    methods.sort_by_key(|m| matches!(m, Method::Crm(_, Op::Delete)));
    for method in methods {
        let params = match method {
            Method::Crm(EntityKind::Contact, Op::Add) => json!({"fields": {"NAME": "n"}}),
            Method::Crm(_, Op::Add) => json!({"fields": {"TITLE": "t"}}),
            Method::Crm(EntityKind::Contact, Op::Update) => {
                json!({"id": contact, "fields": {"NAME": "u"}})
            }
            Method::Crm(kind, Op::Update) => json!({"id": id(kind), "fields": {"TITLE": "u"}}),
            Method::Crm(kind, Op::Get | Op::Delete) => json!({"id": id(kind)}),
            Method::Crm(_, Op::List | Op::Fields) => json!({}),
            Method::StatusList => json!({"filter": {"ENTITY_ID": "STATUS"}}),
            Method::CategoryList => json!({"entityTypeId": 2}),
            Method::StageHistoryList => json!({"entityTypeId": 1, "filter": {"OWNER_ID": lead}}),
            Method::TimelineCommentAdd => {
                json!({"fields": {"ENTITY_ID": deal, "ENTITY_TYPE": "deal", "COMMENT": "c"}})
            }
            Method::UserCurrent | Method::EventGet => json!({}),
            Method::Batch => json!({"cmd": {"a": "user.current"}}),
            Method::EventBind | Method::EventUnbind => {
                json!({"event": "ONCRMDEALADD", "handler": "https://h.example/"})
            }
        };
        let (status, v) = w.post(&method.to_string(), &params.to_string());
        assert_eq!(status, 200, "{method}: {v}");
        served.insert(method.to_string());
    }
    assert_eq!(served.len(), 33);
    for kind in [
        EntityKind::Lead,
        EntityKind::Deal,
        EntityKind::Contact,
        EntityKind::Company,
    ] {
        assert!(
            w.crm.entity(StreamId::new(kind, id(kind))).is_none(),
            "{kind} not deleted"
        );
    }
}

#[test]
fn a_record_copied_from_a_get_adds_with_its_item_ids_ignored() {
    let mut w = World::new();
    w.lead("original");
    let mut copy = w.ok("crm.lead.get", json!({"id": 1}));
    copy["TITLE"] = json!("copy");
    let id = w.ok("crm.lead.add", json!({"fields": copy}));
    let lead = w.ok("crm.lead.get", json!({"id": id}));
    assert_eq!(lead["TITLE"], "copy");
    assert_eq!(lead["PHONE"][0]["VALUE"], "+79001234567");
    assert_eq!(lead["PHONE"].as_array().unwrap().len(), 1);
}

#[test]
fn writing_back_a_record_as_read_changes_nothing() {
    let mut w = World::new();
    w.lead("as read");
    w.ok("crm.deal.add", json!({"fields": {"TITLE": "as read"}}));
    for kind in [EntityKind::Lead, EntityKind::Deal] {
        let stream = StreamId::new(kind, 1);
        let version = w.crm.entity(stream).unwrap().version();
        let record = w.ok(&format!("crm.{kind}.get"), json!({"id": 1}));
        assert_eq!(
            w.ok(
                &format!("crm.{kind}.update"),
                json!({"id": 1, "fields": record})
            ),
            json!(true)
        );
        assert_eq!(
            w.crm.entity(stream).unwrap().version(),
            version,
            "{kind} changed"
        );
        assert_eq!(w.ok(&format!("crm.{kind}.get"), json!({"id": 1})), record);
    }
}

#[test]
fn batch_runs_its_commands_in_the_order_sent_whatever_their_labels() {
    let mut w = World::new();
    // `z` adds, `a` reads what `z` made: sorted labels would run `a` first.
    let json_body = r#"{"halt": 1, "cmd": {"z": "crm.lead.add?fields[TITLE]=first&fields[NAME]=N", "m": "crm.lead.add?fields[TITLE]=second&fields[NAME]=N", "a": "crm.lead.get?id=$result[z]"}}"#;
    let (status, v) = w.post("batch", json_body);
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["result"]["result_error"], json!([]), "{v}");
    assert_eq!(v["result"]["result"]["a"]["TITLE"], "first", "{v}");
    let (z, m) = (
        v["result"]["result"]["z"].as_i64().unwrap(),
        v["result"]["result"]["m"].as_i64().unwrap(),
    );
    assert!(z < m, "z ran before m: {v}");
    // The answer keeps the order the commands ran in.
    let r = w.http(
        "batch",
        None,
        Some("application/json"),
        json_body.as_bytes(),
    );
    let inner = r.body.get("result").unwrap().get("result").unwrap();
    assert_eq!(inner.keys(), ["z", "m", "a"]);
    // A form body's `cmd[...]` keys, the same.
    let form = "halt=1&cmd%5Bz%5D=crm.lead.add%3Ffields%5BTITLE%5D%3Dthird%26fields%5BNAME%5D%3DN&cmd%5Ba%5D=crm.lead.get%3Fid%3D%24result%5Bz%5D";
    let r = w.http(
        "batch",
        None,
        Some("application/x-www-form-urlencoded"),
        form.as_bytes(),
    );
    let v = r.json();
    assert_eq!(r.status, 200, "{v}");
    assert_eq!(v["result"]["result"]["a"]["TITLE"], "third", "{v}");
    // A label given twice in JSON is one command (the last value, as JSON readers keep).
    let (status, v) = w.post(
        "batch",
        r#"{"cmd": {"x": "crm.lead.get?id=1", "x": "crm.lead.get?id=2"}}"#,
    );
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["result"]["result"]["x"]["ID"], "2", "{v}");
}
