//! What goes back: `{"result": …, "time": {…}}`, list pages with `total` and `next`, batch
//! results with their five inner keys, and `{"error", "error_description"}` with the status of
//! BITRIX24.md §3. The caller gives the two instants of the `time` block; nothing here reads a
//! clock.

use super::error::Error;
use chrono::{DateTime, SecondsFormat, Utc};
use chrono_tz::Tz;
use serde::ser::{Serialize, SerializeMap, Serializer};
use serde_json::{Value, json};

/// Rows per list page: fixed, clients step their `start` by it.
pub const PAGE: usize = 50;

/// Where a list page starts (`start=N`), or `start=-1`: no `total` and no `next`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// Skip this many rows; answer `total` and, when more rows exist, `next`.
    At(usize),
    /// `start=-1`: the first page of what the filter matches, with no count.
    NoCount,
}

impl Start {
    /// How many rows to skip.
    pub fn offset(self) -> usize {
        match self {
            Start::At(n) => n,
            Start::NoCount => 0,
        }
    }

    /// Whether the page needs the total count.
    pub fn counts(self) -> bool {
        matches!(self, Start::At(_))
    }
}

/// JSON whose maps keep their order (serde_json's sort their keys): batch labels come back in
/// the order the commands ran, which b24pysdk's `as_list_fast` relies on.
#[derive(Debug, Clone, PartialEq)]
pub enum Json {
    /// Any JSON value.
    Value(Value),
    /// A map in this order.
    Map(Vec<(String, Json)>),
}

impl Json {
    /// The plain JSON value (maps sorted), for tests and for reading.
    pub fn to_value(&self) -> Value {
        match self {
            Json::Value(v) => v.clone(),
            Json::Map(entries) => Value::Object(
                entries
                    .iter()
                    .map(|(k, v)| (k.clone(), v.to_value()))
                    .collect(),
            ),
        }
    }

    /// A map's keys, in order.
    pub fn keys(&self) -> Vec<String> {
        match self {
            Json::Map(entries) => entries.iter().map(|(k, _)| k.clone()).collect(),
            Json::Value(Value::Object(m)) => m.keys().cloned().collect(),
            Json::Value(_) => Vec::new(),
        }
    }

    /// The entry `key` of a map.
    pub fn get(&self, key: &str) -> Option<Json> {
        match self {
            Json::Map(entries) => entries
                .iter()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v.clone()),
            Json::Value(v) => v.get(key).cloned().map(Json::Value),
        }
    }

    /// A map that is empty is written `[]`, as PHP's `json_encode` writes an empty array.
    fn map_or_empty_list(entries: Vec<(String, Json)>) -> Json {
        if entries.is_empty() {
            Json::Value(json!([]))
        } else {
            Json::Map(entries)
        }
    }
}

impl Serialize for Json {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Json::Value(v) => v.serialize(s),
            Json::Map(entries) => {
                let mut m = s.serialize_map(Some(entries.len()))?;
                for (k, v) in entries {
                    m.serialize_entry(k, v)?;
                }
                m.end()
            }
        }
    }
}

/// The two instants of a call and the time zone `date_start`/`date_finish` are written in
/// (the configuration calendar's).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Timing {
    /// When the call began.
    pub start: DateTime<Utc>,
    /// When it ended.
    pub finish: DateTime<Utc>,
    /// The zone of the dates.
    pub tz: Tz,
}

/// How long Bitrix24's `operating` budget lasts before it resets.
const OPERATING_WINDOW_SECS: i64 = 600;

impl Timing {
    /// The `time` block with all its keys: `start`, `finish` (Unix seconds), `duration`,
    /// `processing`, `date_start`, `date_finish` (RFC 3339 with the zone's offset), `operating`
    /// and `operating_reset_at`.
    pub fn block(&self) -> Value {
        let secs = |t: DateTime<Utc>| t.timestamp_micros() as f64 / 1e6;
        let duration = ((self.finish - self.start)
            .num_microseconds()
            .unwrap_or(0)
            .max(0)) as f64
            / 1e6;
        let date = |t: DateTime<Utc>| {
            t.with_timezone(&self.tz)
                .to_rfc3339_opts(SecondsFormat::Secs, false)
        };
        json!({
            "start": secs(self.start),
            "finish": secs(self.finish),
            "duration": duration,
            "processing": duration,
            "date_start": date(self.start),
            "date_finish": date(self.finish),
            "operating_reset_at": self.start.timestamp() + OPERATING_WINDOW_SECS,
            "operating": duration,
        })
    }
}

/// What a method answers, before the envelope.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    /// `{"result": value}`.
    Result(Value),
    /// A list page: the rows, and `total`/`next` unless `start=-1`.
    Page {
        /// The rows of this page (at most [`PAGE`]).
        rows: Vec<Value>,
        /// How many rows the filter matches; `None` with `start=-1`.
        total: Option<usize>,
        /// Where the next page starts, when more rows exist.
        next: Option<usize>,
        /// The key the rows are wrapped in (`{"categories": […]}`), if any.
        wrap: Option<&'static str>,
    },
    /// The results of a batch, in the order its commands ran.
    Batch(Vec<(String, Result<Answer, Error>)>),
}

impl Answer {
    /// A list page of `rows` starting at `start`, of `total` rows in all.
    pub fn page(rows: Vec<Value>, start: Start, total: usize) -> Answer {
        match start {
            Start::NoCount => Answer::Page {
                rows,
                total: None,
                next: None,
                wrap: None,
            },
            Start::At(n) => {
                let next = n.saturating_add(PAGE);
                Answer::Page {
                    rows,
                    total: Some(total),
                    next: (next < total).then_some(next),
                    wrap: None,
                }
            }
        }
    }

    /// The same page with its rows wrapped in `{key: rows}`, as `crm.category.list` and
    /// `crm.stagehistory.list` answer.
    pub fn wrapped(self, key: &'static str) -> Answer {
        match self {
            Answer::Page {
                rows, total, next, ..
            } => Answer::Page {
                rows,
                total,
                next,
                wrap: Some(key),
            },
            other => other,
        }
    }

    /// The rows of `all` that `start` asks for, as a page.
    pub fn page_of(all: Vec<Value>, start: Start) -> Answer {
        let total = all.len();
        let rows = all.into_iter().skip(start.offset()).take(PAGE).collect();
        Answer::page(rows, start, total)
    }

    /// The `result` value (a page's rows).
    pub fn result(&self, timing: &Timing) -> Json {
        match self {
            Answer::Result(v) => Json::Value(v.clone()),
            Answer::Page { rows, wrap, .. } => {
                let rows = Value::Array(rows.clone());
                match wrap {
                    Some(key) => Json::Value(json!({ *key: rows })),
                    None => Json::Value(rows),
                }
            }
            Answer::Batch(entries) => batch_result(entries, timing),
        }
    }
}

/// The inner object of a batch: `result`, `result_error`, `result_total`, `result_next`,
/// `result_time`, each keyed by the commands' labels.
fn batch_result(entries: &[(String, Result<Answer, Error>)], timing: &Timing) -> Json {
    let mut result = Vec::new();
    let mut errors = Vec::new();
    let mut totals = Vec::new();
    let mut nexts = Vec::new();
    let mut times = Vec::new();
    for (label, outcome) in entries {
        match outcome {
            Ok(answer) => {
                result.push((label.clone(), answer.result(timing)));
                if let Answer::Page { total, next, .. } = answer {
                    if let Some(t) = total {
                        totals.push((label.clone(), Json::Value(json!(t))));
                    }
                    if let Some(n) = next {
                        nexts.push((label.clone(), Json::Value(json!(n))));
                    }
                }
            }
            Err(e) => errors.push((label.clone(), Json::Value(e.to_json()))),
        }
        times.push((label.clone(), Json::Value(timing.block())));
    }
    Json::Map(vec![
        ("result".into(), Json::map_or_empty_list(result)),
        ("result_error".into(), Json::map_or_empty_list(errors)),
        ("result_total".into(), Json::map_or_empty_list(totals)),
        ("result_next".into(), Json::map_or_empty_list(nexts)),
        ("result_time".into(), Json::map_or_empty_list(times)),
    ])
}

/// An HTTP status and a JSON body: the whole answer of one call.
#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    /// 200, or the error's status.
    pub status: u16,
    /// Always JSON (`Content-Type: application/json`).
    pub body: Json,
}

impl Reply {
    /// The envelope of an outcome: `{"result", ["total", "next",] "time"}` with 200, or the
    /// error envelope with the error's status.
    pub fn of(outcome: &Result<Answer, Error>, timing: &Timing) -> Reply {
        match outcome {
            Ok(answer) => {
                let mut body = vec![("result".to_owned(), answer.result(timing))];
                if let Answer::Page { total, next, .. } = answer {
                    if let Some(t) = total {
                        body.push(("total".into(), Json::Value(json!(t))));
                    }
                    if let Some(n) = next {
                        body.push(("next".into(), Json::Value(json!(n))));
                    }
                }
                body.push(("time".into(), Json::Value(timing.block())));
                Reply {
                    status: 200,
                    body: Json::Map(body),
                }
            }
            Err(e) => Reply::error(e),
        }
    }

    /// The error envelope, with the error's status.
    pub fn error(e: &Error) -> Reply {
        Reply {
            status: e.status(),
            body: Json::Value(e.to_json()),
        }
    }

    /// The body as JSON text.
    pub fn to_body(&self) -> String {
        serde_json::to_string(&self.body).unwrap_or_else(|_| {
            // A `Json` holds only strings and finite numbers: it always serialises.
            "{\"error\":\"INTERNAL_SERVER_ERROR\",\"error_description\":\"unwritable answer\"}"
                .into()
        })
    }

    /// The body as a plain JSON value (for tests).
    pub fn json(&self) -> Value {
        self.body.to_value()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn timing() -> Timing {
        Timing {
            start: Utc.with_ymd_and_hms(2024, 1, 20, 17, 35, 32).unwrap(),
            finish: Utc.with_ymd_and_hms(2024, 1, 20, 17, 35, 37).unwrap(),
            tz: "Europe/Paris".parse().unwrap(),
        }
    }

    #[test]
    fn the_time_block_has_every_key_and_the_zone_offset() {
        let t = timing().block();
        assert_eq!(t["start"], json!(1705772132.0));
        assert_eq!(t["finish"], json!(1705772137.0));
        assert_eq!(t["duration"], json!(5.0));
        assert_eq!(t["processing"], json!(5.0));
        assert_eq!(t["date_start"], "2024-01-20T18:35:32+01:00");
        assert_eq!(t["date_finish"], "2024-01-20T18:35:37+01:00");
        assert_eq!(t["operating"], json!(5.0));
        assert_eq!(t["operating_reset_at"], json!(1705772132 + 600));
    }

    #[test]
    fn pages_give_total_and_next_only_when_more_rows_exist() {
        let rows = |n: usize| {
            (0..n)
                .map(|i| json!({"ID": i.to_string()}))
                .collect::<Vec<_>>()
        };
        let first = Reply::of(&Ok(Answer::page(rows(50), Start::At(0), 55)), &timing()).json();
        assert_eq!(first["total"], 55);
        assert_eq!(first["next"], 50);
        assert_eq!(first["result"].as_array().unwrap().len(), 50);
        let last = Reply::of(&Ok(Answer::page(rows(5), Start::At(50), 55)), &timing()).json();
        assert_eq!(last["total"], 55);
        assert!(last.get("next").is_none());
        let fast = Reply::of(&Ok(Answer::page(rows(50), Start::NoCount, 0)), &timing()).json();
        assert!(fast.get("total").is_none() && fast.get("next").is_none());
        assert!(fast.get("time").is_some());
    }

    #[test]
    fn errors_carry_their_status_and_never_200() {
        let r = Reply::of(&Err(Error::MethodNotFound), &timing());
        assert_eq!(r.status, 404);
        assert_eq!(
            r.to_body(),
            r#"{"error":"ERROR_METHOD_NOT_FOUND","error_description":"Method not found!"}"#
        );
    }

    #[test]
    fn a_batch_answers_the_five_inner_keys_in_command_order() {
        let entries = vec![
            ("lead".to_owned(), Ok(Answer::Result(json!({"ID": "1"})))),
            (
                "page".to_owned(),
                Ok(Answer::page(vec![json!({"ID": "1"})], Start::At(0), 70)),
            ),
            ("bad".to_owned(), Err(Error::MethodNotFound)),
            ("10".to_owned(), Ok(Answer::Result(json!(true)))),
            ("2".to_owned(), Ok(Answer::Result(json!(false)))),
        ];
        let r = Reply::of(&Ok(Answer::Batch(entries)), &timing());
        assert_eq!(r.status, 200);
        let body = r.to_body();
        let inner = r.json()["result"].clone();
        assert_eq!(inner["result"]["lead"]["ID"], "1");
        assert_eq!(
            inner["result_error"]["bad"]["error"],
            "ERROR_METHOD_NOT_FOUND"
        );
        assert_eq!(inner["result_total"]["page"], 70);
        assert_eq!(inner["result_next"]["page"], 50);
        assert_eq!(
            inner["result_time"]["lead"]["date_start"],
            "2024-01-20T18:35:32+01:00"
        );
        assert!(inner["result_time"]["bad"].is_object());
        // Labels in the order the commands ran, not sorted.
        let at = |s: &str| body.find(s).unwrap();
        assert!(
            at("\"lead\":{\"ID\"") < at("\"page\":[") && at("\"10\":true") < at("\"2\":false"),
            "{body}"
        );
    }

    #[test]
    fn an_empty_batch_part_is_an_empty_list_as_php_writes_it() {
        let r = Reply::of(
            &Ok(Answer::Batch(vec![(
                "a".into(),
                Ok(Answer::Result(json!(1))),
            )])),
            &timing(),
        );
        let inner = r.json()["result"].clone();
        assert_eq!(inner["result_error"], json!([]));
        assert_eq!(inner["result_total"], json!([]));
        assert_eq!(inner["result_next"], json!([]));
    }
}
