//! Webhook endpoints and the outbox over the API, as `leadflow webhook add|list|remove` and
//! `leadflow outbox list|retry|drop` do them (the shared decisions are
//! `leadflow_delivery::manage`'s): endpoints listed without their secrets, added (the secret
//! made here shown once) and removed; messages listed with the counts by state, retried or
//! dropped. Writes go through the writer with `Idempotency-Key`.

use super::entities::{limit, no_more, query_pairs, respond, take};
use super::extract::{IdempotencyKey, JsonBody, kind_of};
use crate::auth::Caller;
use crate::error::ApiError;
use crate::state::AppState;
use crate::writer::{Answer, WriteCtx};
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use leadflow_delivery::manage::{self, Change, NewHook, Refusal};
use leadflow_engine::access::{Action, Resource, Want};
use leadflow_engine::{Command, Event, EventMeta};
use leadflow_store::Tx;
use leadflow_store::query::{self, DeliveryFilter};
use serde_json::{Map, Value, json};

/// The states a message can be in (`?state=`).
const STATES: &[&str] = &["pending", "succeeded", "failed", "dropped", "cancelled"];

/// `true` or `false` in a query (absent: false).
fn flag(q: &mut Map<String, Value>, key: &str) -> Result<bool, ApiError> {
    match take(q, key).as_deref() {
        None | Some("false") => Ok(false),
        Some("true") => Ok(true),
        Some(o) => Err(ApiError::bad_field(
            key,
            format!("{key} must be true or false, not '{o}'"),
        )),
    }
}

/// `GET /webhooks?all=true`: the endpoints (active ones, or all), never their secrets.
pub(crate) async fn list_webhooks(
    State(state): State<AppState>,
    caller: Caller,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    caller.may(&state, &Want::new(Resource::Webhooks, Action::Read))?;
    let mut q = query_pairs(raw.as_deref())?;
    let all = flag(&mut q, "all")?;
    no_more(q, "all")?;
    let rows = state
        .readers
        .read(move |s| Ok(query::endpoints(s, all)?))
        .await?;
    let rows: Vec<Value> = rows.iter().map(manage::endpoint_json).collect();
    Ok(axum::Json(json!({ "webhooks": rows })).into_response())
}

/// A string field of the body (`None` when absent); 400 naming it when it is not a string.
fn string(map: &mut Map<String, Value>, key: &str) -> Result<Option<String>, ApiError> {
    match map.remove(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(other) => Err(ApiError::bad_field(
            key,
            format!("{key} must be a string, not {}", kind_of(&other)),
        )),
    }
}

/// The endpoint a `POST /webhooks` body asks for.
fn new_hook(mut map: Map<String, Value>) -> Result<NewHook, ApiError> {
    let url = string(&mut map, "url")?
        .ok_or_else(|| ApiError::bad_field("url", "url is required: where to POST the events"))?;
    let events = match map.remove("events") {
        None | Some(Value::Null) => {
            return Err(ApiError::bad_field(
                "events",
                "events is required: a list of event types or patterns, like [\"lead.*\"]",
            ));
        }
        Some(Value::String(s)) => manage::parse_events(&s),
        Some(Value::Array(items)) => items
            .into_iter()
            .map(|v| match v {
                Value::String(s) => Ok(s),
                other => Err(ApiError::bad_field(
                    "events",
                    format!("events must be strings, not {}", kind_of(&other)),
                )),
            })
            .collect::<Result<_, _>>()?,
        Some(other) => {
            return Err(ApiError::bad_field(
                "events",
                format!(
                    "events must be a list of strings or one comma-separated string, not {}",
                    kind_of(&other)
                ),
            ));
        }
    };
    let format = string(&mut map, "format")?;
    let secret = string(&mut map, "secret")?;
    no_fields(map, "url, events, format, secret")?;
    Ok(NewHook {
        url,
        events,
        format,
        secret,
    })
}

/// A 400 naming the first field of `map` (none is expected beyond `known`).
fn no_fields(map: Map<String, Value>, known: &str) -> Result<(), ApiError> {
    match map.keys().next() {
        Some(k) => Err(ApiError::bad_field(
            k.clone(),
            format!("unknown field '{k}'; this route takes {known}"),
        )),
        None => Ok(()),
    }
}

/// Runs `work` for `caller` through the writer (its events recorded as the caller's, with
/// `Idempotency-Key`) and answers after the commit.
async fn write(
    state: &AppState,
    caller: &Caller,
    key: IdempotencyKey,
    hash: &str,
    work: impl FnOnce(&mut Tx<'_>, &WriteCtx<'_>, &EventMeta) -> Result<Answer, ApiError>
    + Send
    + 'static,
) -> Result<Response, ApiError> {
    if !state.ready() {
        return Err(ApiError::Unavailable("the service is shutting down".into()));
    }
    let actor = caller.actor();
    let answer = state
        .writer
        .run(
            key.with(&caller.token, hash),
            Box::new(move |tx, ctx| work(tx, ctx, &EventMeta::root(ctx.now, actor))),
        )
        .await?;
    Ok(respond(answer))
}

/// `POST /webhooks` `{"url", "events", "format"?, "secret"?}`: 201 with the endpoint, and the
/// secret when the server made it (shown this once).
pub(crate) async fn add_webhook(
    State(state): State<AppState>,
    caller: Caller,
    key: IdempotencyKey,
    body: JsonBody,
) -> Result<Response, ApiError> {
    caller.may(&state, &Want::new(Resource::Webhooks, Action::Admin))?;
    let hook = new_hook(body.map)?;
    let (cmd, made) = manage::add_command(hook)
        .map_err(|e| ApiError::Internal(format!("cannot make a secret ({e}); give one")))?;
    write(&state, &caller, key, &body.hash, move |tx, ctx, meta| {
        let out = tx.execute(ctx.config, &cmd, meta)?;
        let position = out.appended.as_ref().map_or(0, |a| a.last_position);
        let Some(Event::EndpointAdded(added)) = out.events.first() else {
            return Err(ApiError::Internal("the endpoint was not added".into()));
        };
        Ok(Answer {
            status: StatusCode::CREATED,
            body: manage::added_json(out.stream, position, added, made.as_deref()),
            version: None,
            location: Some(format!("/api/v1/webhooks/{}", out.stream.id)),
            replayed: false,
            subject: None,
        })
    })
    .await
}

/// `DELETE /webhooks/{id}` (`3` or `endpoint-3`): nothing more is delivered to it.
pub(crate) async fn remove_webhook(
    State(state): State<AppState>,
    caller: Caller,
    key: IdempotencyKey,
    Path(id): Path<String>,
    body: JsonBody,
) -> Result<Response, ApiError> {
    caller.may(&state, &Want::new(Resource::Webhooks, Action::Admin))?;
    let id = manage::endpoint_id(&id).ok_or_else(|| {
        ApiError::NotFound(format!(
            "no webhook '{id}': ids are positive integers (GET /api/v1/webhooks)"
        ))
    })?;
    no_fields(body.map, "no body")?;
    let cmd = Command::RemoveEndpoint { id };
    write(&state, &caller, key, &body.hash, move |tx, ctx, meta| {
        let out = tx.execute(ctx.config, &cmd, meta)?;
        let position = out.appended.as_ref().map_or(0, |a| a.last_position);
        Ok(Answer::ok(json!({
            "endpoint": out.stream.to_string(),
            "id": out.stream.id,
            "position": position,
        })))
    })
    .await
}

/// `GET /outbox?state=failed,pending&limit=`: messages, newest first, and the counts by state.
pub(crate) async fn list_outbox(
    State(state): State<AppState>,
    caller: Caller,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    caller.may(&state, &Want::new(Resource::Outbox, Action::Read))?;
    let mut q = query_pairs(raw.as_deref())?;
    let mut states = Vec::new();
    for s in take(&mut q, "state").iter().flat_map(|s| s.split(',')) {
        let s = s.trim();
        if !STATES.contains(&s) {
            return Err(ApiError::bad_field(
                "state",
                format!("state must be {}, not '{s}'", STATES.join(", ")),
            ));
        }
        states.push(s.to_owned());
    }
    let limit = limit(&mut q)?;
    no_more(q, "state, limit")?;
    let f = DeliveryFilter { states, limit };
    let (rows, counts) = state
        .readers
        .read(move |s| Ok((query::deliveries(s, &f)?, query::delivery_counts(s)?)))
        .await?;
    let rows: Vec<Value> = rows.iter().map(manage::message_json).collect();
    Ok(axum::Json(json!({ "messages": rows, "counts": counts })).into_response())
}

async fn change(
    state: AppState,
    caller: Caller,
    key: IdempotencyKey,
    id: String,
    body: JsonBody,
    change: Change,
) -> Result<Response, ApiError> {
    caller.may(&state, &Want::new(Resource::Outbox, Action::Admin))?;
    let id = id.parse::<i64>().ok().filter(|n| *n > 0).ok_or_else(|| {
        ApiError::NotFound(format!(
            "the outbox has no message '{id}': ids are positive integers (GET /api/v1/outbox)"
        ))
    })?;
    no_fields(body.map, "no body")?;
    write(&state, &caller, key, &body.hash, move |tx, _, meta| {
        let (stream, position) = manage::change(tx, id, change, meta).map_err(|r| match r {
            Refusal::Unknown(m) => ApiError::NotFound(m),
            Refusal::Refused(m) => ApiError::Unprocessable {
                code: match change {
                    Change::Retry => "not_retryable",
                    Change::Drop => "not_droppable",
                },
                message: m,
                field: None,
            },
            Refusal::Store(e) => e.into(),
        })?;
        Ok(Answer::ok(json!({
            "id": id,
            "stream": stream.to_string(),
            "position": position,
        })))
    })
    .await
}

/// `POST /outbox/{id}/retry`: a new round of attempts for a failed message.
pub(crate) async fn retry_message(
    State(state): State<AppState>,
    caller: Caller,
    key: IdempotencyKey,
    Path(id): Path<String>,
    body: JsonBody,
) -> Result<Response, ApiError> {
    change(state, caller, key, id, body, Change::Retry).await
}

/// `POST /outbox/{id}/drop`: no more attempts for a pending or failed message.
pub(crate) async fn drop_message(
    State(state): State<AppState>,
    caller: Caller,
    key: IdempotencyKey,
    Path(id): Path<String>,
    body: JsonBody,
) -> Result<Response, ApiError> {
    change(state, caller, key, id, body, Change::Drop).await
}
