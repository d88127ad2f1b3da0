//! The log and what is read from it: events (the `leadflow events` filters, `?after=POS`, and
//! Server-Sent Events to tail it), the journal, the inbox, an entity's pending timers, the
//! rule set (check and activate) and verify.

use super::entities::{no_more, query_pairs, query_time, take};
use crate::auth::Caller;
use crate::error::ApiError;
use crate::state::AppState;
use crate::writer::Answer;
use axum::extract::{Path, RawQuery, State};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::stream::Stream;
use leadflow_engine::access::{Action, Resource, Want};
use leadflow_engine::ids::{EntityKind, StreamId};
use leadflow_store::query::{self, InboxFilter, JournalFilter};
use leadflow_store::{LogFilter, RecordedEvent, fmt_time, to_hex};
use serde_json::{Map, Value, json};
use std::collections::HashMap;
use std::convert::Infallible;

/// Keeps the events the caller may see: a first-line token's log carries no deal events, a
/// sales token's only its pipelines' (looked up once per stream).
fn visible(
    state: &AppState,
    caller: &Caller,
    store: &leadflow_store::Store,
    events: Vec<RecordedEvent>,
    cache: &mut HashMap<StreamId, bool>,
) -> Result<Vec<RecordedEvent>, ApiError> {
    let mut out = Vec::with_capacity(events.len());
    for e in events {
        let seen = match cache.get(&e.stream) {
            Some(v) => *v,
            None => {
                let pipeline = event_pipeline(store, e.stream)?;
                let v = caller.may_see(state, e.stream, pipeline.as_ref());
                cache.insert(e.stream, v);
                v
            }
        };
        if seen {
            out.push(e);
        }
    }
    Ok(out)
}

/// The pipeline a stream's events belong to for access: a lead's or deal's own, a task's or
/// contact's through what it is linked to, a deleted lead or deal the one it was created in.
/// The one resolution the event list, the event stream and the dashboard's explain share.
pub(crate) fn event_pipeline(
    store: &leadflow_store::Store,
    stream: StreamId,
) -> Result<Option<leadflow_engine::ids::PipelineId>, ApiError> {
    Ok(match store.load(stream)? {
        Some(entity) => super::entities::pipeline_of(&entity, &mut |x| {
            super::entities::stream_pipeline(store, x)
        })?,
        None if matches!(stream.kind, EntityKind::Lead | EntityKind::Deal) => {
            super::entities::stream_pipeline(store, stream)?
        }
        None => None,
    })
}

fn position(q: &mut Map<String, Value>, key: &str) -> Result<i64, ApiError> {
    match take(q, key) {
        None => Ok(0),
        Some(t) => t.parse::<i64>().ok().filter(|n| *n >= 0).ok_or_else(|| {
            ApiError::bad_field(
                key,
                format!("{key} must be a log position (0 or more), not '{t}'"),
            )
        }),
    }
}

fn log_filter(state: &AppState, q: &mut Map<String, Value>) -> Result<LogFilter, ApiError> {
    Ok(LogFilter {
        stream: take(q, "stream")
            .map(|s| {
                s.parse::<StreamId>()
                    .map_err(|e| ApiError::bad_field("stream", e))
            })
            .transpose()?,
        types: take(q, "type")
            .map(|t| {
                t.split(',')
                    .map(|s| s.trim().to_owned())
                    .filter(|s| !s.is_empty())
                    .collect()
            })
            .unwrap_or_default(),
        actor: take(q, "actor"),
        since: query_time(state, q, "since")?,
        until: query_time(state, q, "until")?,
    })
}

/// `GET /events?after=&stream=&type=&actor=&since=&until=&limit=`: events in position order.
pub(crate) async fn events(
    State(state): State<AppState>,
    caller: Caller,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    caller.may(&state, &Want::new(Resource::Events, Action::Read))?;
    let mut q = query_pairs(raw.as_deref())?;
    let after = position(&mut q, "after")?;
    let limit = match take(&mut q, "limit") {
        None => 100,
        Some(t) => t
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=1000).contains(n))
            .ok_or_else(|| ApiError::bad_field("limit", "limit must be from 1 to 1000"))?,
    };
    let filter = log_filter(&state, &mut q)?;
    no_more(q, "after, stream, type, actor, since, until, limit")?;
    let st = state.clone();
    let (rows, next) = state
        .readers
        .read(move |s| {
            let rows = s.read_log(&filter, after, limit)?;
            let next = rows.last().map(|e| e.position);
            Ok((visible(&st, &caller, s, rows, &mut HashMap::new())?, next))
        })
        .await?;
    Ok(axum::Json(json!({
        "events": rows.iter().map(RecordedEvent::to_json).collect::<Vec<_>>(),
        "next_after": next,
    }))
    .into_response())
}

/// `GET /events/stream?after=…` (or `Last-Event-ID`): Server-Sent Events, one per event, the
/// position as the SSE id, then new ones as they are committed.
pub(crate) async fn event_stream(
    State(state): State<AppState>,
    caller: Caller,
    headers: axum::http::HeaderMap,
    RawQuery(raw): RawQuery,
) -> Result<Sse<impl Stream<Item = Result<SseEvent, Infallible>>>, ApiError> {
    let mut q = query_pairs(raw.as_deref())?;
    let mut after = position(&mut q, "after")?;
    if let Some(last) = headers.get("last-event-id").and_then(|v| v.to_str().ok()) {
        after = last.parse().map_err(|_| {
            ApiError::bad_field("Last-Event-ID", "Last-Event-ID must be a position")
        })?;
    }
    caller.may(&state, &Want::new(Resource::Events, Action::Read))?;
    let filter = log_filter(&state, &mut q)?;
    no_more(q, "after, stream, type, actor, since, until")?;
    let mut committed = state.writer.committed();
    let cache = std::sync::Arc::new(std::sync::Mutex::new(HashMap::new()));
    let stream = async_stream::stream! {
        loop {
            // The stream ends when the service begins to stop, so its connection can close.
            if !state.accepting.load(std::sync::atomic::Ordering::SeqCst) {
                return;
            }
            let f = filter.clone();
            let (st, who, cache) = (state.clone(), caller.clone(), cache.clone());
            let page = state
                .readers
                .read(move |s| {
                    let page = s.read_log(&f, after, 256)?;
                    let last = page.last().map(|e| e.position);
                    let mut cache = cache.lock().map_err(|_| ApiError::Internal("lock".into()))?;
                    Ok((visible(&st, &who, s, page, &mut cache)?, last))
                })
                .await;
            match page {
                Ok((page, Some(last))) => {
                    after = last;
                    for e in &page {
                        yield Ok(SseEvent::default()
                            .id(e.position.to_string())
                            .event(e.event_type.clone())
                            .data(e.to_json().to_string()));
                    }
                    continue;
                }
                Ok(_) => {}
                Err(e) => {
                    yield Ok(SseEvent::default().event("error").data(e.body().to_string()));
                    return;
                }
            }
            tokio::select! {
                r = committed.changed() => if r.is_err() { return },
                () = tokio::time::sleep(crate::runtime::POLL * 4) => {}
            }
        }
    };
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}

/// `GET /journal?employee=&team=&kind=&rule=&since=&until=&what=incidents|escalations`.
pub(crate) async fn journal(
    State(state): State<AppState>,
    caller: Caller,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let rows = journal_rows(&state, &caller, raw).await?;
    Ok(axum::Json(json!({ "entries": rows })).into_response())
}

/// The journal's entries for the query string `raw` (`employee`, `team`, `kind`, `rule`,
/// `since`, `until`, `what`). (`GET /journal` and the dashboard's journal.)
pub(crate) async fn journal_rows(
    state: &AppState,
    caller: &Caller,
    raw: Option<String>,
) -> Result<Vec<query::JournalEntry>, ApiError> {
    caller.may(state, &Want::new(Resource::Journal, Action::Read))?;
    let mut q = query_pairs(raw.as_deref())?;
    let cfg = state.config.clone();
    let mut employees = take(&mut q, "employee").map(|e| vec![e]);
    if let Some(team) = take(&mut q, "team") {
        if !cfg.teams.keys().any(|t| t.as_str() == team) {
            return Err(ApiError::bad_field(
                "team",
                format!("unknown team '{team}'"),
            ));
        }
        let members: Vec<String> = cfg
            .employees
            .values()
            .filter(|e| e.team.as_ref().is_some_and(|t| t.as_str() == team))
            .map(|e| e.id.as_str().to_owned())
            .collect();
        employees = Some(match employees {
            Some(one) => one.into_iter().filter(|e| members.contains(e)).collect(),
            None => members,
        });
    }
    let (incidents, escalations) = match take(&mut q, "what").as_deref() {
        None | Some("all") => (true, true),
        Some("incidents") => (true, false),
        Some("escalations") => (false, true),
        Some(o) => {
            return Err(ApiError::bad_field(
                "what",
                format!("what must be incidents, escalations or all, not '{o}'"),
            ));
        }
    };
    let f = JournalFilter {
        employees,
        kind: take(&mut q, "kind"),
        rule: take(&mut q, "rule"),
        since: query_time(state, &mut q, "since")?,
        until: query_time(state, &mut q, "until")?,
        incidents,
        escalations,
    };
    no_more(q, "employee, team, kind, rule, since, until, what")?;
    state
        .readers
        .read(move |s| Ok(query::journal(s, &f)?))
        .await
}

/// `GET /inbox?employee=&unread=true&limit=`: notifications, newest first (the caller's own
/// employee's by default).
pub(crate) async fn inbox(
    State(state): State<AppState>,
    caller: Caller,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let rows = inbox_rows(&state, &caller, raw).await?;
    Ok(axum::Json(json!({ "notifications": rows })).into_response())
}

/// The notifications of the query string `raw` (`employee`, `unread`, `limit`; the caller's
/// own employee's by default), newest first. (`GET /inbox` and the dashboard's inbox.)
pub(crate) async fn inbox_rows(
    state: &AppState,
    caller: &Caller,
    raw: Option<String>,
) -> Result<Vec<query::Notification>, ApiError> {
    caller.may(state, &Want::new(Resource::Inbox, Action::Read))?;
    let mut q = query_pairs(raw.as_deref())?;
    let employee = match take(&mut q, "employee") {
        Some(e) => e,
        None => caller
            .employee
            .as_ref()
            .map(|e| e.as_str().to_owned())
            .ok_or_else(|| {
                ApiError::bad_field(
                    "employee",
                    "this token acts for no employee: name one with ?employee=",
                )
            })?,
    };
    if !state
        .config
        .employees
        .keys()
        .any(|e| e.as_str() == employee)
    {
        return Err(ApiError::bad_field(
            "employee",
            format!("unknown employee '{employee}'"),
        ));
    }
    // A team-scoped role reads its own employee's inbox ("its inbox"), no one else's.
    let scoped = matches!(
        state
            .config
            .access
            .pipelines(&caller.role, caller.employee.as_ref()),
        Some(leadflow_engine::access::Reach::Only(_))
    );
    if scoped
        && caller
            .employee
            .as_ref()
            .is_none_or(|e| e.as_str() != employee)
    {
        return Err(ApiError::Forbidden(format!(
            "token '{}': role {} may read only the inbox of the employee the token acts for ({}), not {employee}'s",
            caller.token,
            caller.role,
            caller.employee.as_ref().map_or("none", |e| e.as_str()),
        )));
    }
    let unread = take(&mut q, "unread").is_some_and(|v| v == "true");
    let limit = take(&mut q, "limit")
        .and_then(|v| v.parse().ok())
        .unwrap_or(50usize)
        .min(500);
    no_more(q, "employee, unread, limit")?;
    let f = InboxFilter {
        unread,
        limit,
        ..InboxFilter::default()
    };
    state
        .readers
        .read(move |s| Ok(query::inbox(s, Some(&employee), &f)?))
        .await
}

async fn timers_of(
    state: AppState,
    caller: Caller,
    kind: EntityKind,
    id: String,
) -> Result<Response, ApiError> {
    caller.may(&state, &Want::new(Resource::Timers, Action::Read))?;
    let id: i64 = id
        .parse()
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| ApiError::NotFound(format!("no {kind} '{id}'")))?;
    let stream = StreamId::new(kind, id);
    let st = state.clone();
    let rows = state
        .readers
        .read(move |s| {
            let Some(entity) = s.load(stream)? else {
                return Err(ApiError::NotFound(format!("{stream} does not exist")));
            };
            let mut want = Want::new(Resource::of_stream(kind), Action::Read);
            want.pipeline = super::entities::pipeline_of(&entity, &mut |x| {
                super::entities::stream_pipeline(s, x)
            })?;
            caller.may(&st, &want)?;
            Ok(query::timers(
                s,
                &query::TimerFilter {
                    stream: Some(stream),
                    ..Default::default()
                },
            )?)
        })
        .await?;
    let timers: Vec<Value> = rows
        .iter()
        .map(|t| {
            json!({
                "due_at": fmt_time(t.due_at),
                "what": t.what,
                "stream": t.stream,
                "name": t.name,
                "stage": t.stage,
                "set_by": t.set_by,
                "set_at_position": t.set_at_position,
            })
        })
        .collect();
    Ok(axum::Json(json!({ "timers": timers })).into_response())
}

/// `GET /leads/{id}/timers`.
pub(crate) async fn lead_timers(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    timers_of(state, caller, EntityKind::Lead, id).await
}

/// `GET /deals/{id}/timers`.
pub(crate) async fn deal_timers(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    timers_of(state, caller, EntityKind::Deal, id).await
}

/// The rule folder loaded again (files read by the binary's loader, in a blocking task).
async fn load_rules(
    state: &AppState,
) -> Result<Result<Option<leadflow_robots::Runtime>, Vec<String>>, ApiError> {
    let reload = state.reload.clone();
    let cfg = state.config.clone();
    tokio::task::spawn_blocking(move || reload(&cfg))
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))
}

/// The 422 of a rule folder that does not load: every problem, with its file:line:col.
fn rules_refused(problems: &[String]) -> Response {
    (
        axum::http::StatusCode::UNPROCESSABLE_ENTITY,
        axum::Json(json!({
            "error": {
                "code": "rules_invalid",
                "message": format!("the rule set does not load ({} problems); the rules in force stay", problems.len()),
            },
            "problems": problems,
        })),
    )
        .into_response()
}

/// `POST /rules/check`: loads the rule folder and reports every problem (nothing changes).
pub(crate) async fn rules_check(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Response, ApiError> {
    caller.may(&state, &Want::new(Resource::Rules, Action::Read))?;
    Ok(match load_rules(&state).await? {
        Ok(rt) => axum::Json(json!({
            "ok": true,
            "rules": rt.as_ref().map_or(0, |r| r.rules().rules.len()),
            "hash": rt.as_ref().map(|r| r.hash().to_owned()),
        }))
        .into_response(),
        Err(problems) => rules_refused(&problems),
    })
}

/// `POST /rules/activate` (and SIGHUP): loads the rule folder whole and puts it in force; on
/// any problem the rule set in force stays and every problem is returned.
pub(crate) async fn rules_activate(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Response, ApiError> {
    caller.may(&state, &Want::new(Resource::Rules, Action::Admin))?;
    match reload_rules(&state).await? {
        Ok((rules, hash)) => {
            Ok(axum::Json(json!({ "ok": true, "rules": rules, "hash": hash })).into_response())
        }
        Err(problems) => Ok(rules_refused(&problems)),
    }
}

/// Reloads the rule folder; activates a new set through the writer. `Err(problems)` leaves the
/// set in force.
#[allow(clippy::type_complexity)]
pub(crate) async fn reload_rules(
    state: &AppState,
) -> Result<Result<(usize, Option<String>), Vec<String>>, ApiError> {
    let rt = match load_rules(state).await? {
        Ok(rt) => rt,
        Err(problems) => {
            tracing::error!(
                problems = problems.len(),
                "rule reload refused; the rules in force stay"
            );
            for p in &problems {
                tracing::error!("{p}");
            }
            return Ok(Err(problems));
        }
    };
    let summary = (
        rt.as_ref().map_or(0, |r| r.rules().rules.len()),
        rt.as_ref().map(|r| r.hash().to_owned()),
    );
    state.rules.replace(rt);
    if let Some(rt) = state.rules.current() {
        state
            .writer
            .run_rules(Box::new(move |tx, ctx| {
                let (_, mine) = rt.react_in(tx, ctx.now)?;
                let _ = mine;
                Ok(Answer::ok(json!({})))
            }))
            .await?;
    }
    tracing::info!(rules = summary.0, hash = ?summary.1, "rules reloaded");
    Ok(Ok(summary))
}

/// `GET /verify`: the hash chain and the projections against a fresh replay.
pub(crate) async fn verify(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Response, ApiError> {
    caller.may(&state, &Want::new(Resource::Verify, Action::Read))?;
    let (chain, diffs) = state
        .readers
        .read(|s| {
            let chain = s.verify_chain(&mut |_| {})?;
            let diffs = s.verify_projections(&mut |_| {})?;
            Ok((chain, diffs))
        })
        .await?;
    let ok = chain.problem.is_none() && diffs.is_empty();
    Ok(axum::Json(json!({
        "ok": ok,
        "events": chain.events,
        "head": chain.head.map(|(p, h)| json!({"position": p, "hash": to_hex(&h)})),
        "chain_problem": chain.problem.map(|p| format!("{p:?}")),
        "projection_differences": diffs.iter().map(|d| json!({"table": d.table, "only_live": d.only_live, "only_replayed": d.only_replayed, "first_key": d.first_key})).collect::<Vec<_>>(),
    }))
    .into_response())
}
