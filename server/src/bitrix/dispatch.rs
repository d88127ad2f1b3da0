//! One call: the method and its parameters → an [`Answer`] or an [`Error`], against a
//! [`Crm`] the service implements over the store (reads) and the writer (changes). `batch`
//! runs up to 50 calls, resolving `$result[cmd][idx][FIELD]` references from earlier ones.
//!
//! A handler does
//! `let (status, body) = dispatch::respond(&mapping, user, method, query, content_type, &bytes,
//! &mut crm, start, || clock.now());` and answers `body` with `Content-Type:
//! application/json` and `status` — or, step by step, [`Params::from_request`], [`call`] and
//! [`Reply::of`](super::envelope::Reply::of).

use super::catalog;
use super::envelope::{Answer, Start};
use super::error::Error;
use super::filter::{self, ListRequest, Select, boolean, scalar_text};
use super::mapping::Mapping;
use super::method::{Method, Op};
use super::params::{Params, parse_query};
use super::records::{self, Found};
use leadflow_engine::Command;
use leadflow_engine::ids::{EntityKind, StreamId};
use leadflow_store::query::Visit;
use serde_json::{Value, json};

/// The most commands in one batch.
pub const MAX_BATCH: usize = 50;

/// A page of records from [`Crm::list`].
#[derive(Debug, Clone, PartialEq)]
pub struct Listed {
    /// At most [`ListRequest::limit`] records, from [`ListRequest::start`]'s offset.
    pub rows: Vec<Found>,
    /// How many records the conditions match in all; `None` is allowed when the request's
    /// start is [`Start::NoCount`].
    pub total: Option<usize>,
}

/// An `event.bind` subscription.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binding {
    /// The event, in capitals: `ONCRMLEADADD`.
    pub event: String,
    /// The URL the event is posted to.
    pub handler: String,
    /// The user the handler acts as (`auth_type`; 0 = the one who bound it).
    pub auth_type: i64,
    /// The `auth[application_token]` its events carry (`event.get` shows it, so the
    /// handler's owner can check events with it); `None` when binding.
    pub application_token: Option<String>,
}

/// What the facade needs of the service. Synchronous: the service calls [`call`] from a
/// blocking task. Errors are the facade's [`Error`]: a refusal of `decide` is
/// [`Error::Rejected`] with its message, a stale version [`Error::Conflict`], a role's refusal
/// [`Error::AccessDenied`], a store failure [`Error::Internal`].
pub trait Crm {
    /// Whether the caller (the token's role) may call this method; called for every call,
    /// each command of a batch too, before anything else.
    fn authorize(&self, method: Method) -> Result<(), Error>;
    /// Runs the commands as one change: all are committed or none. Answers the id of the
    /// record a create command made, if any.
    fn execute(&mut self, commands: Vec<Command>) -> Result<Option<i64>, Error>;
    /// One lead, deal, contact or company.
    fn get(&self, stream: StreamId) -> Result<Option<Found>, Error>;
    /// A page of records as the request asks.
    fn list(&self, request: &ListRequest) -> Result<Listed, Error>;
    /// Deletes a record.
    fn delete(&mut self, stream: StreamId) -> Result<(), Error>;
    /// The stages a lead or deal went through, oldest first.
    fn stage_history(&self, stream: StreamId) -> Result<Vec<Visit>, Error>;
    /// Adds a comment to a record's timeline; answers the comment's id.
    fn add_comment(&mut self, stream: StreamId, text: &str) -> Result<i64, Error>;
    /// Subscribes a handler; binding the same event and handler again is
    /// [`Error::HandlerAlreadyBound`].
    fn bind(&mut self, binding: Binding) -> Result<(), Error>;
    /// Removes the subscriptions of an event (of one handler, if given); answers how many.
    fn unbind(&mut self, event: &str, handler: Option<&str>) -> Result<usize, Error>;
    /// Every subscription.
    fn bindings(&self) -> Result<Vec<Binding>, Error>;
}

/// One HTTP request to `/rest/<user>/<secret>/<method>`, whole: reads the query string and
/// the body, runs the call, and answers the status and the JSON body. `start` is when the
/// request arrived; `finish` is asked once the call is done (the caller's clock).
#[allow(clippy::too_many_arguments)]
pub fn respond(
    m: &Mapping,
    user: i64,
    method: &str,
    query: Option<&str>,
    content_type: Option<&str>,
    body: &[u8],
    crm: &mut dyn Crm,
    start: chrono::DateTime<chrono::Utc>,
    finish: impl FnOnce() -> chrono::DateTime<chrono::Utc>,
) -> (u16, String) {
    let outcome = Params::from_request(query, content_type, body)
        .and_then(|params| call(m, user, method, &params, crm));
    let timing = super::envelope::Timing {
        start,
        finish: finish(),
        tz: m.tz(),
    };
    let reply = super::envelope::Reply::of(&outcome, &timing);
    (reply.status, reply.to_body())
}

/// Runs one call of the webhook of `user` (the path's `<user>`): `method` is the path's last
/// part (`crm.lead.Add.json`).
pub fn call(
    m: &Mapping,
    user: i64,
    method: &str,
    params: &Params,
    crm: &mut dyn Crm,
) -> Result<Answer, Error> {
    let method = Method::parse(method)?;
    run(m, user, method, params, crm)
}

fn run(
    m: &Mapping,
    user: i64,
    method: Method,
    params: &Params,
    crm: &mut dyn Crm,
) -> Result<Answer, Error> {
    crm.authorize(method)?;
    match method {
        Method::Crm(kind, op) => entity(m, kind, op, params, crm),
        Method::Batch => batch(m, user, params, crm),
        Method::StatusList => {
            let filter = params.get("filter");
            let entity = filter
                .and_then(|f| {
                    f.as_object()?
                        .iter()
                        .find(|(k, _)| k.trim_start_matches('=').eq_ignore_ascii_case("ENTITY_ID"))
                        .map(|(_, v)| v)
                })
                .and_then(scalar_text);
            Ok(Answer::Result(Value::Array(catalog::statuses(
                m,
                entity.as_deref(),
            ))))
        }
        Method::CategoryList => {
            let ty = params.get("entitytypeid").and_then(scalar_text);
            match ty.as_deref().map(str::trim) {
                Some("2") => {}
                Some(other) => {
                    return Err(Error::InvalidArgument(format!(
                        "entityTypeId {other} has no categories here: leadflow's deal pipelines are entityTypeId 2"
                    )));
                }
                None => {
                    return Err(Error::InvalidArgument(
                        "entityTypeId is required (2 for deals)".into(),
                    ));
                }
            }
            let start = filter::start(params.get("start"));
            Ok(Answer::page_of(catalog::categories(m), start).wrapped("categories"))
        }
        Method::StageHistoryList => stage_history(m, params, crm),
        Method::TimelineCommentAdd => {
            let fields = params.get("fields").and_then(Value::as_object).ok_or_else(|| {
                Error::InvalidArgument("fields must be an object like {\"ENTITY_ID\": 1, \"ENTITY_TYPE\": \"lead\", \"COMMENT\": \"…\"}".into())
            })?;
            let get = |k: &str| {
                fields
                    .iter()
                    .find(|(key, _)| key.eq_ignore_ascii_case(k))
                    .map(|(_, v)| v)
            };
            let kind = match get("ENTITY_TYPE")
                .and_then(scalar_text)
                .map(|t| t.trim().to_ascii_lowercase())
                .as_deref()
            {
                Some("lead") => EntityKind::Lead,
                Some("deal") => EntityKind::Deal,
                Some("contact") => EntityKind::Contact,
                Some("company") => EntityKind::Company,
                _ => {
                    return Err(Error::InvalidArgument(
                        "field ENTITY_TYPE: expected lead, deal, contact or company".into(),
                    ));
                }
            };
            let id = get("ENTITY_ID").and_then(positive_id).ok_or_else(|| {
                Error::InvalidArgument("field ENTITY_ID: expected a record id".into())
            })?;
            let text = get("COMMENT")
                .and_then(scalar_text)
                .filter(|t| !t.trim().is_empty())
                .ok_or_else(|| {
                    Error::InvalidArgument("field COMMENT: the comment is empty".into())
                })?;
            let stream = StreamId::new(kind, id);
            if crm.get(stream)?.is_none() {
                return Err(Error::NotFound);
            }
            Ok(Answer::Result(json!(crm.add_comment(stream, &text)?)))
        }
        Method::UserCurrent => {
            let employee = m.employee(user).ok_or(Error::NoAuthFound)?;
            Ok(Answer::Result(catalog::user(m, user, employee)))
        }
        Method::EventBind => {
            let event = event_name(params)?;
            let handler = params
                .given("handler")
                .and_then(scalar_text)
                .ok_or_else(|| {
                    Error::InvalidArgument(
                        "handler is required: the URL the event is posted to".into(),
                    )
                })?;
            let h = handler.trim();
            if !(h.starts_with("http://") || h.starts_with("https://")) || h.len() > 2000 {
                return Err(Error::InvalidArgument(format!(
                    "handler '{h}' is not an http(s) URL"
                )));
            }
            let auth_type = params
                .get("auth_type")
                .and_then(scalar_text)
                .and_then(|t| t.trim().parse().ok())
                .unwrap_or(0);
            crm.bind(Binding {
                event,
                handler: h.to_owned(),
                auth_type,
                application_token: None,
            })?;
            Ok(Answer::Result(json!(true)))
        }
        Method::EventUnbind => {
            let event = event_name(params)?;
            let handler = params.given("handler").and_then(scalar_text);
            let count = crm.unbind(&event, handler.as_deref().map(str::trim))?;
            Ok(Answer::Result(json!({"count": count})))
        }
        Method::EventGet => {
            let rows: Vec<Value> = crm
                .bindings()?
                .into_iter()
                .map(|b| {
                    let mut row = json!({"event": b.event, "handler": b.handler, "auth_type": b.auth_type.to_string(), "offline": 0});
                    if let Some(t) = b.application_token {
                        row["application_token"] = json!(t);
                    }
                    row
                })
                .collect();
            Ok(Answer::Result(Value::Array(rows)))
        }
    }
}

fn event_name(params: &Params) -> Result<String, Error> {
    let event = params
        .given("event")
        .and_then(scalar_text)
        .map(|e| e.trim().to_ascii_uppercase())
        .ok_or_else(|| Error::InvalidArgument("event is required, e.g. ONCRMLEADADD".into()))?;
    if crate::bitrix::events::leadflow_types(&event).is_none() {
        let served: Vec<&str> = crate::bitrix::events::EVENTS
            .iter()
            .map(|(name, _)| *name)
            .collect();
        return Err(Error::InvalidArgument(format!(
            "event {event} is not served: bind one of {}",
            served.join(", ")
        )));
    }
    Ok(event)
}

/// A positive record id from a number or numeric text.
fn positive_id(v: &Value) -> Option<i64> {
    scalar_text(v)?
        .trim()
        .parse::<i64>()
        .ok()
        .filter(|n| *n > 0)
}

/// The `id` of a get/update/delete.
fn record_id(params: &Params) -> Result<i64, Error> {
    params
        .get("id")
        .and_then(positive_id)
        .ok_or(Error::IdNotDefined)
}

fn entity(
    m: &Mapping,
    kind: EntityKind,
    op: Op,
    params: &Params,
    crm: &mut dyn Crm,
) -> Result<Answer, Error> {
    match op {
        Op::Fields => Ok(Answer::Result(catalog::fields(m, kind))),
        Op::Add => {
            let command = records::add_command(m, kind, params.get("fields"))?;
            let id = crm.execute(vec![command])?.ok_or_else(|| {
                Error::Internal(format!("the {kind} was created but its id is unknown"))
            })?;
            Ok(Answer::Result(json!(id)))
        }
        Op::Get => {
            let found = crm
                .get(StreamId::new(kind, record_id(params)?))?
                .ok_or(Error::NotFound)?;
            Ok(Answer::Result(records::record(m, &found, &Select::all())))
        }
        Op::Update => {
            let stream = StreamId::new(kind, record_id(params)?);
            let found = crm.get(stream)?.ok_or(Error::NotFound)?;
            let commands = records::update_commands(m, &found.entity, params.get("fields"))?;
            if !commands.is_empty() {
                crm.execute(commands)?;
            }
            Ok(Answer::Result(json!(true)))
        }
        Op::Delete => {
            let stream = StreamId::new(kind, record_id(params)?);
            if crm.get(stream)?.is_none() {
                return Err(Error::NotFound);
            }
            crm.delete(stream)?;
            Ok(Answer::Result(json!(true)))
        }
        Op::List => {
            let request = filter::list_request(kind, params, m)?;
            let listed = crm.list(&request)?;
            let rows = listed
                .rows
                .iter()
                .take(request.limit())
                .map(|f| records::record(m, f, &request.select))
                .collect();
            let total = match (request.start, listed.total) {
                (Start::At(_), Some(t)) => t,
                (Start::At(_), None) => {
                    return Err(Error::Internal("the list gave no total count".into()));
                }
                (Start::NoCount, _) => 0,
            };
            Ok(Answer::page(rows, request.start, total))
        }
    }
}

fn stage_history(m: &Mapping, params: &Params, crm: &mut dyn Crm) -> Result<Answer, Error> {
    let kind = match params
        .get("entitytypeid")
        .and_then(scalar_text)
        .as_deref()
        .map(str::trim)
    {
        Some("1") => EntityKind::Lead,
        Some("2") => EntityKind::Deal,
        _ => {
            return Err(Error::InvalidArgument(
                "entityTypeId must be 1 (leads) or 2 (deals)".into(),
            ));
        }
    };
    let owner = params
        .get("filter")
        .and_then(Value::as_object)
        .and_then(|f| {
            f.iter()
                .find(|(k, _)| k.trim_start_matches('=').eq_ignore_ascii_case("OWNER_ID"))
                .map(|(_, v)| v)
        })
        .and_then(positive_id)
        .ok_or_else(|| {
            Error::InvalidArgument("filter OWNER_ID is required: the lead's or deal's id".into())
        })?;
    let stream = StreamId::new(kind, owner);
    let visits = crm.stage_history(stream)?;
    let mut rows = catalog::stage_history(m, kind, owner, &visits);
    let desc = params
        .get("order")
        .and_then(Value::as_object)
        .and_then(|o| o.values().next())
        .and_then(scalar_text)
        .is_some_and(|d| d.trim().eq_ignore_ascii_case("DESC"));
    if desc {
        rows.reverse();
    }
    let start = filter::start(params.get("start"));
    Ok(Answer::page_of(rows, start).wrapped("items"))
}

// ---- batch ------------------------------------------------------------------------------

fn batch(m: &Mapping, user: i64, params: &Params, crm: &mut dyn Crm) -> Result<Answer, Error> {
    let cmds: Vec<(String, Value)> = match params.get("cmd") {
        // In the order sent: a command may refer to the results of the ones before it.
        Some(Value::Object(o)) if o.len() > MAX_BATCH => return Err(Error::BatchLengthExceeded),
        Some(Value::Object(o)) => {
            let mut cmds: Vec<(String, Value)> = Vec::with_capacity(o.len());
            let labels = params.cmd_order().iter().chain(o.keys());
            for k in labels {
                if let Some(v) = o.get(k)
                    && !cmds.iter().any(|(label, _)| label == k)
                {
                    cmds.push((k.clone(), v.clone()));
                }
            }
            cmds
        }
        Some(Value::Array(a)) => a
            .iter()
            .enumerate()
            .map(|(i, v)| (i.to_string(), v.clone()))
            .collect(),
        None | Some(Value::Null) => Vec::new(),
        Some(_) => {
            return Err(Error::InvalidArgument(
                "cmd must be an object like {\"a\": \"crm.lead.get?id=1\"}".into(),
            ));
        }
    };
    if cmds.len() > MAX_BATCH {
        return Err(Error::BatchLengthExceeded);
    }
    let halt = params.get("halt").and_then(boolean).unwrap_or(false);
    let mut done: Vec<(String, Result<Answer, Error>)> = Vec::new();
    for (label, cmd) in cmds {
        let outcome = one_command(m, user, &cmd, &done, crm);
        let failed = outcome.is_err();
        done.push((label, outcome));
        if failed && halt {
            break;
        }
    }
    Ok(Answer::Batch(done))
}

fn one_command(
    m: &Mapping,
    user: i64,
    cmd: &Value,
    done: &[(String, Result<Answer, Error>)],
    crm: &mut dyn Crm,
) -> Result<Answer, Error> {
    let text = match cmd {
        Value::String(s) => s.as_str(),
        _ => {
            return Err(Error::InvalidArgument(
                "a batch command must be a string like crm.lead.get?id=1".into(),
            ));
        }
    };
    let (path, query) = text.split_once('?').unwrap_or((text, ""));
    let method = Method::parse(path)?;
    if method == Method::Batch {
        return Err(Error::BatchMethodNotAllowed);
    }
    let params = parse_query(query)?;
    let params = Params::from_value(resolve(&Value::Object(params.as_map().clone()), done)?);
    run(m, user, method, &params, crm)
}

/// The result of an earlier command as JSON, for references.
fn result_of(answer: &Answer) -> Value {
    match answer {
        Answer::Result(v) => v.clone(),
        Answer::Page { rows, .. } => Value::Array(rows.clone()),
        Answer::Batch(_) => Value::Null,
    }
}

/// Replaces `$result[label][idx][FIELD]`, `$result_total[label]` and `$result_next[label]`
/// in every string of `v` with what the earlier commands answered. A string that is one
/// reference becomes the value; a reference inside text is written as text. A reference to
/// nothing (a command not run, an index past the rows) is an error.
fn resolve(v: &Value, done: &[(String, Result<Answer, Error>)]) -> Result<Value, Error> {
    Ok(match v {
        Value::String(s) if s.contains("$result") => resolve_text(s, done)?,
        Value::Array(a) => Value::Array(
            a.iter()
                .map(|x| resolve(x, done))
                .collect::<Result<_, _>>()?,
        ),
        Value::Object(o) => Value::Object(
            o.iter()
                .map(|(k, x)| Ok((k.clone(), resolve(x, done)?)))
                .collect::<Result<_, Error>>()?,
        ),
        other => other.clone(),
    })
}

/// One reference found in a text: where it is, and its parts.
struct Reference {
    range: std::ops::Range<usize>,
    root: &'static str,
    path: Vec<String>,
}

fn references(s: &str) -> Vec<Reference> {
    let mut out = Vec::new();
    let mut from = 0;
    while let Some(at) = s[from..].find("$result").map(|i| i + from) {
        let rest = &s[at + 1..];
        let root = ["result_total", "result_next", "result"]
            .into_iter()
            .find(|r| rest.starts_with(r))
            .unwrap_or("result");
        let mut end = at + 1 + root.len();
        let mut path = Vec::new();
        while s[end..].starts_with('[') {
            let Some(close) = s[end..].find(']') else {
                break;
            };
            path.push(s[end + 1..end + close].to_owned());
            end += close + 1;
        }
        if !path.is_empty() {
            out.push(Reference {
                range: at..end,
                root,
                path,
            });
        }
        from = end.max(at + 1);
    }
    out
}

fn lookup(r: &Reference, done: &[(String, Result<Answer, Error>)]) -> Option<Value> {
    let label = &r.path[0];
    let (_, outcome) = done.iter().find(|(l, _)| l == label)?;
    let answer = outcome.as_ref().ok()?;
    let mut v = match (r.root, answer) {
        ("result", a) => result_of(a),
        ("result_total", Answer::Page { total: Some(t), .. }) => json!(t),
        ("result_next", Answer::Page { next: Some(n), .. }) => json!(n),
        _ => return None,
    };
    for key in &r.path[1..] {
        v = match &v {
            Value::Array(a) => a.get(key.parse::<usize>().ok()?)?.clone(),
            Value::Object(o) => o.get(key)?.clone(),
            _ => return None,
        };
    }
    Some(v)
}

fn resolve_text(s: &str, done: &[(String, Result<Answer, Error>)]) -> Result<Value, Error> {
    let refs = references(s);
    if refs.is_empty() {
        return Ok(Value::String(s.to_owned()));
    }
    let unresolved = |r: &Reference| {
        Error::InvalidArgument(format!(
            "{} refers to nothing an earlier command answered",
            &s[r.range.clone()]
        ))
    };
    if refs.len() == 1 && refs[0].range == (0..s.len()) {
        return lookup(&refs[0], done).ok_or_else(|| unresolved(&refs[0]));
    }
    let mut out = String::new();
    let mut at = 0;
    for r in &refs {
        out.push_str(&s[at..r.range.start]);
        let v = lookup(r, done).ok_or_else(|| unresolved(r))?;
        out.push_str(&scalar_text(&v).unwrap_or_else(|| v.to_string()));
        at = r.range.end;
    }
    out.push_str(&s[at..]);
    Ok(Value::String(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_are_found_with_their_paths() {
        let r = references("$result[req_0][49][ID]");
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].root, "result");
        assert_eq!(r[0].path, ["req_0", "49", "ID"]);
        let r = references("x $result_total[a] y $result_next[b]");
        assert_eq!((r[0].root, r[1].root), ("result_total", "result_next"));
        assert!(references("$result alone").is_empty());
    }

    #[test]
    fn references_resolve_from_earlier_results() {
        let done = vec![
            (
                "a".to_owned(),
                Ok(Answer::page(
                    vec![json!({"ID": "7"}), json!({"ID": "9"})],
                    Start::At(0),
                    80,
                )),
            ),
            ("b".to_owned(), Ok(Answer::Result(json!(42)))),
        ];
        assert_eq!(
            resolve_text("$result[a][1][ID]", &done).unwrap(),
            json!("9")
        );
        assert_eq!(resolve_text("$result[b]", &done).unwrap(), json!(42));
        assert_eq!(
            resolve_text("id $result[b]!", &done).unwrap(),
            json!("id 42!")
        );
        assert_eq!(resolve_text("$result_total[a]", &done).unwrap(), json!(80));
        assert_eq!(resolve_text("$result_next[a]", &done).unwrap(), json!(50));
        let e = resolve_text("$result[a][49][ID]", &done).unwrap_err();
        assert!(
            e.to_string()
                .contains("$result[a][49][ID] refers to nothing"),
            "{e}"
        );
        assert!(resolve_text("$result[zzz]", &done).is_err());
    }
}
