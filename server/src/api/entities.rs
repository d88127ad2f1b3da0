//! Leads, deals, contacts, companies and tasks: create, update, move, assign, complete, get
//! and list. A write is a writer job — the command from `engine::verb` (the CLI's mapping),
//! decided and appended in its own savepoint with the rules' reactions — answered after its
//! commit with the entity as the robots left it and the robots' events.

use super::extract::{IdempotencyKey, IfMatch, JsonBody};
use crate::auth::Caller;
use crate::error::ApiError;
use crate::state::AppState;
use crate::writer::Answer;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use leadflow_engine::access::{Action, Reach, Resource, Want};
use leadflow_engine::command::Target;
use leadflow_engine::ids::{EntityKind, StreamId};
use leadflow_engine::model::Entity;
use leadflow_engine::verb::{self, Verb};
use leadflow_engine::{Command, EventMeta};
use leadflow_store::Executed;
use leadflow_store::query::{self, Cmp, Filter, ListFilter, ListQuery, Search};
use serde_json::{Map, Value, json};

/// An entity as JSON (the CLI's `show --json` shape).
pub(crate) fn entity_json(e: &Entity) -> Value {
    let v = match e {
        Entity::Lead(l) => serde_json::to_value(l),
        Entity::Deal(d) => serde_json::to_value(d),
        Entity::Contact(c) => serde_json::to_value(c),
        Entity::Company(c) => serde_json::to_value(c),
        Entity::Task(t) => serde_json::to_value(t),
    };
    let mut v = v.unwrap_or(Value::Null);
    v["version"] = json!(e.version());
    v
}

/// The answer to a write: 201 for a create, 200 otherwise, with `ETag` and `Location`.
pub(crate) fn respond(a: Answer) -> Response {
    let mut resp = (a.status, axum::Json(a.body)).into_response();
    let h = resp.headers_mut();
    if let Some(v) = a.version
        && let Ok(v) = HeaderValue::from_str(&format!("\"{v}\""))
    {
        h.insert(header::ETAG, v);
    }
    if let Some(l) = a.location
        && let Ok(l) = HeaderValue::from_str(&l)
    {
        h.insert(header::LOCATION, l);
    }
    if a.replayed {
        h.insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    resp
}

/// The pipeline an entity is in, for the role's reach: a lead's or deal's own; a task's is
/// that of the deal or lead it is on — kept when that one was deleted (the pipeline it was
/// created in); contacts, companies and a task on nothing are in none. `parent` answers a
/// lead's or deal's pipeline ([`stream_pipeline`], or [`stream_pipeline_in`] in a write).
pub(crate) fn pipeline_of(
    entity: &Entity,
    parent: &mut dyn FnMut(StreamId) -> Result<Option<leadflow_engine::ids::PipelineId>, ApiError>,
) -> Result<Option<leadflow_engine::ids::PipelineId>, ApiError> {
    Ok(match entity {
        Entity::Lead(l) => Some(l.pipeline.clone()),
        Entity::Deal(d) => Some(d.pipeline.clone()),
        Entity::Task(t) => match (t.deal, t.lead) {
            (Some(d), _) => parent(StreamId::new(EntityKind::Deal, d))?,
            (None, Some(l)) => parent(StreamId::new(EntityKind::Lead, l))?,
            (None, None) => None,
        },
        Entity::Contact(_) | Entity::Company(_) => None,
    })
}

/// The pipeline of a lead or deal stream, read through `s`: its own, or — deleted — the one
/// its first event created it in.
pub(crate) fn stream_pipeline(
    s: &leadflow_store::Store,
    stream: StreamId,
) -> Result<Option<leadflow_engine::ids::PipelineId>, ApiError> {
    Ok(match s.load(stream)? {
        Some(Entity::Lead(l)) => Some(l.pipeline),
        Some(Entity::Deal(d)) => Some(d.pipeline),
        Some(_) => None,
        None => created_pipeline(s.read_stream(stream)?.first()),
    })
}

/// [`stream_pipeline`] inside a write transaction.
pub(crate) fn stream_pipeline_in(
    tx: &mut leadflow_store::Tx<'_>,
    stream: StreamId,
) -> Result<Option<leadflow_engine::ids::PipelineId>, ApiError> {
    use leadflow_engine::workspace::View;
    Ok(match tx.load(stream)? {
        Some(Entity::Lead(l)) => Some(l.pipeline),
        Some(Entity::Deal(d)) => Some(d.pipeline),
        Some(_) => None,
        None => created_pipeline(
            View::event_of(tx, stream, 1)
                .map_err(leadflow_store::Error::from)?
                .as_ref(),
        ),
    })
}

/// The pipeline a `lead.created`/`deal.created` event names.
fn created_pipeline(
    first: Option<&leadflow_store::RecordedEvent>,
) -> Option<leadflow_engine::ids::PipelineId> {
    let payload = serde_json::from_str::<serde_json::Value>(&first?.payload).ok()?;
    payload["pipeline"]
        .as_str()
        .map(leadflow_engine::ids::PipelineId::from)
}

/// Runs `command` for `caller` through the writer (checking `If-Match` first) and answers.
pub(crate) async fn write(
    state: &AppState,
    caller: &Caller,
    key: IdempotencyKey,
    hash: &str,
    if_match: Option<i64>,
    command: Command,
) -> Result<Response, ApiError> {
    if !state.ready() {
        return Err(ApiError::Unavailable("the service is shutting down".into()));
    }
    let actor = caller.actor();
    let created = matches!(command.target(), Target::New(_));
    if created {
        caller.may(state, &Want::of_command(&command, &state.config, None))?;
    }
    let who = caller.clone();
    let answer = state
        .writer
        .run(
            key.with(&caller.token, hash),
            Box::new(move |tx, ctx| {
                // The role's reach is checked on the entity as the transaction sees it (a new
                // task: on its lead or deal).
                if matches!(command.target(), Target::Existing(_))
                    || matches!(command, Command::CreateTask(_))
                {
                    who.may_execute(tx, ctx.config, &command)?;
                }
                if let (Some(expected), Target::Existing(stream)) = (if_match, command.target()) {
                    let actual = tx.load(stream)?.map(|e| e.version());
                    match actual {
                        None => return Err(ApiError::NotFound(format!("{stream} does not exist"))),
                        Some(actual) if actual != expected => {
                            return Err(ApiError::Conflict {
                                message: format!(
                                    "{stream} is at version {actual}, not {expected} (If-Match); reload it and retry"
                                ),
                                current: actual,
                            });
                        }
                        Some(_) => {}
                    }
                }
                let out = tx.execute(ctx.config, &command, &EventMeta::root(ctx.now, actor))?;
                written(&out, created)
            }),
        )
        .await?;
    Ok(respond(answer))
}

/// The answer to a command that ran: its events; the writer puts in the entity as the robots
/// left it, its version, and the robots' events, after the rules reacted (`Answer::subject`).
fn written(out: &Executed, created: bool) -> Result<Answer, ApiError> {
    let events: Vec<Value> = match &out.appended {
        Some(a) => out
            .events
            .iter()
            .zip(a.first_position..)
            .map(|(e, p)| json!({"position": p, "type": e.event_type()}))
            .collect(),
        None => vec![],
    };
    let body = json!({
        "id": out.stream.id,
        "stream": out.stream.to_string(),
        "changed": out.appended.is_some(),
        "events": events,
    });
    Ok(Answer {
        status: if created {
            StatusCode::CREATED
        } else {
            StatusCode::OK
        },
        version: None,
        location: created.then(|| format!("/api/v1/{}/{}", plural(out.stream.kind), out.stream.id)),
        body,
        replayed: false,
        subject: Some((
            out.stream,
            out.appended
                .as_ref()
                .map(|a| (a.first_position, a.last_position)),
        )),
    })
}

/// `leads`, `deals`…: the collection's path segment.
pub(crate) fn plural(kind: EntityKind) -> &'static str {
    match kind {
        EntityKind::Lead => "leads",
        EntityKind::Deal => "deals",
        EntityKind::Contact => "contacts",
        EntityKind::Company => "companies",
        EntityKind::Task => "tasks",
        EntityKind::Ruleset => "rulesets",
        EntityKind::System => "system",
        EntityKind::Token => "tokens",
        EntityKind::Endpoint => "webhooks",
    }
}

/// The command of `verb` with the body's arguments (and `id` from the path).
pub(crate) fn command(
    state: &AppState,
    verb: Verb,
    id: Option<i64>,
    mut args: Map<String, Value>,
) -> Result<Command, ApiError> {
    if let Some(id) = id {
        if args.contains_key("id") {
            return Err(ApiError::bad_field(
                "id",
                "the id is in the path; leave it out of the body",
            ));
        }
        args.insert("id".into(), json!(id));
    }
    verb::build(verb, &args, state.clock.now(), &state.config).map_err(|m| {
        let field = quoted_name(&m);
        ApiError::BadRequest {
            code: "invalid_argument",
            message: m,
            field,
        }
    })
}

/// The first name in quotes in a message (`unknown field 'x'` → `x`), for the error's field.
fn quoted_name(m: &str) -> Option<String> {
    for q in ['`', '\''] {
        if let Some(start) = m.find(q)
            && let Some(len) = m[start + 1..].find(q)
        {
            return Some(m[start + 1..start + 1 + len].to_owned());
        }
    }
    None
}

/// An id from the path: a positive integer.
pub(crate) fn id_of(kind: EntityKind, text: &str) -> Result<i64, ApiError> {
    text.parse::<i64>()
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| ApiError::NotFound(format!("no {kind} '{text}': ids are positive integers")))
}

async fn create(
    state: AppState,
    caller: Caller,
    key: IdempotencyKey,
    body: JsonBody,
    verb: Verb,
) -> Result<Response, ApiError> {
    let cmd = command(&state, verb, None, body.map)?;
    write(&state, &caller, key, &body.hash, None, cmd).await
}

async fn change(
    state: AppState,
    caller: Caller,
    key: IdempotencyKey,
    if_match: IfMatch,
    id: String,
    body: JsonBody,
    verb: Verb,
) -> Result<Response, ApiError> {
    let id = id_of(verb.kind(), &id)?;
    if matches!(
        verb,
        Verb::LeadUpdate | Verb::DealUpdate | Verb::ContactUpdate | Verb::CompanyUpdate
    ) && body.map.is_empty()
    {
        return Err(ApiError::bad_request(
            "nothing_to_change",
            "the body names no field to change",
        ));
    }
    let cmd = command(&state, verb, Some(id), body.map)?;
    write(&state, &caller, key, &body.hash, if_match.0, cmd).await
}

/// The entity `kind` `id` if the caller's role may read it (in its pipeline): 404 for a
/// missing one, 403 for one out of reach. (`GET /{kind}/{id}` and the dashboard's card.)
pub(crate) async fn visible_entity(
    state: &AppState,
    caller: &Caller,
    kind: EntityKind,
    id: &str,
) -> Result<Entity, ApiError> {
    caller.may(state, &Want::new(Resource::of_stream(kind), Action::Read))?;
    let stream = StreamId::new(kind, id_of(kind, id)?);
    let (entity, pipeline) = state
        .readers
        .read(move |s| {
            let Some(e) = s.load(stream)? else {
                return Ok(None);
            };
            let p = pipeline_of(&e, &mut |x| stream_pipeline(s, x))?;
            Ok(Some((e, p)))
        })
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("{stream} does not exist")))?;
    let mut want = Want::new(Resource::of_stream(kind), Action::Read);
    want.pipeline = pipeline;
    caller.may(state, &want)?;
    Ok(entity)
}

/// `GET /{kind}/{id}`: the entity, with `ETag`; `If-None-Match` with its version is a 304.
async fn get(
    state: AppState,
    caller: Caller,
    headers: HeaderMap,
    kind: EntityKind,
    id: String,
) -> Result<Response, ApiError> {
    let entity = visible_entity(&state, &caller, kind, &id).await?;
    let etag = format!("\"{}\"", entity.version());
    if headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(',')
                .any(|t| t.trim().trim_start_matches("W/") == etag)
        })
    {
        return Ok(StatusCode::NOT_MODIFIED.into_response());
    }
    let mut resp = axum::Json(entity_json(&entity)).into_response();
    if let Ok(v) = HeaderValue::from_str(&etag) {
        resp.headers_mut().insert(header::ETAG, v);
    }
    Ok(resp)
}

/// The query string as pairs; a key given twice is refused.
pub(crate) fn query_pairs(raw: Option<&str>) -> Result<Map<String, Value>, ApiError> {
    let mut out = Map::new();
    for (k, v) in form_urlencoded::parse(raw.unwrap_or("").as_bytes()) {
        if out
            .insert(k.to_string(), Value::String(v.to_string()))
            .is_some()
        {
            return Err(ApiError::bad_field(
                k.to_string(),
                format!("'{k}' is given twice"),
            ));
        }
    }
    Ok(out)
}

/// Takes a query parameter out of `q`.
pub(crate) fn take(q: &mut Map<String, Value>, key: &str) -> Option<String> {
    q.remove(key).and_then(|v| v.as_str().map(str::to_owned))
}

/// A time in a query (`2026-03-02T10:00:00+03:00`, or `YYYY-MM-DD HH:MM` in the calendar's
/// zone).
pub(crate) fn query_time(
    state: &AppState,
    q: &mut Map<String, Value>,
    key: &str,
) -> Result<Option<chrono::DateTime<chrono::Utc>>, ApiError> {
    let Some(text) = take(q, key) else {
        return Ok(None);
    };
    leadflow_engine::time::parse_time(
        &text,
        state.config.calendar.timezone,
        Some(state.clock.now()),
    )
    .map(Some)
    .map_err(|e| ApiError::bad_field(key, e.to_string()))
}

/// Where a page starts: the first page, or after the row a `next_cursor` names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum After {
    /// The first page.
    Start,
    /// After this id, in a list newest first (`d`) or oldest first (`a`).
    Id { id: i64, ascending: bool },
    /// After skipping this many rows (lists without a keyset: contacts, companies, tasks).
    Offset(usize),
}

impl After {
    /// The cursor of the page after `last` (an id), in this order.
    fn keyset(last: i64, ascending: bool) -> String {
        format!("{}{last}", if ascending { "a" } else { "d" })
    }
}

/// `limit`: 1 to 500, default 50.
pub(crate) fn limit(q: &mut Map<String, Value>) -> Result<usize, ApiError> {
    match take(q, "limit") {
        None => Ok(50),
        Some(t) => t
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=500).contains(n))
            .ok_or_else(|| {
                ApiError::bad_field("limit", format!("limit must be from 1 to 500, not '{t}'"))
            }),
    }
}

/// `limit` (1 to 500, default 50) and `cursor` (opaque: where the last page ended).
pub(crate) fn page(q: &mut Map<String, Value>) -> Result<(usize, After), ApiError> {
    let limit = limit(q)?;
    let after = match take(q, "cursor") {
        None => After::Start,
        Some(t) => {
            let bad =
                || ApiError::bad_field("cursor", "cursor must be a next_cursor this API gave");
            let (head, n) = t.split_at_checked(1).ok_or_else(bad)?;
            let n = n.parse::<i64>().ok().filter(|n| *n >= 0).ok_or_else(bad)?;
            match head {
                "a" => After::Id {
                    id: n,
                    ascending: true,
                },
                "d" => After::Id {
                    id: n,
                    ascending: false,
                },
                "o" => After::Offset(usize::try_from(n).map_err(|_| bad())?),
                _ => return Err(bad()),
            }
        }
    };
    Ok((limit, after))
}

/// A cursor given to another list or order than it was made for.
fn stale_cursor() -> ApiError {
    ApiError::bad_field(
        "cursor",
        "cursor was made for another order or list; start from the first page",
    )
}

/// Refuses query parameters left over after a handler took the ones it knows.
pub(crate) fn no_more(q: Map<String, Value>, known: &str) -> Result<(), ApiError> {
    match q.keys().next() {
        Some(k) => Err(ApiError::bad_field(
            k.clone(),
            format!("unknown query parameter '{k}'; this route takes {known}"),
        )),
        None => Ok(()),
    }
}

/// A page of rows (one more than `limit` asked, to tell whether there are more) and the
/// cursor of the next page, an offset after `offset`.
fn page_json(items: Vec<Value>, limit: usize, offset: usize) -> Value {
    let more = items.len() > limit;
    let items: Vec<Value> = items.into_iter().take(limit).collect();
    let next = more.then(|| format!("o{}", offset + limit));
    json!({"items": items, "next_cursor": next})
}

/// A page of entities (one more than `limit` asked, to tell whether there are more), each
/// with its version, and the keyset cursor of the next page.
fn keyset_json(rows: Vec<Entity>, limit: usize, ascending: bool) -> Value {
    let next = next_cursor(&rows, limit, ascending);
    let rows = &rows[..rows.len().min(limit)];
    let items: Vec<Value> = rows.iter().map(entity_json).collect();
    json!({"items": items, "next_cursor": next})
}

/// What a known name must be: one the configuration lists.
fn check_known<'a>(
    key: &str,
    given: &Option<String>,
    known: impl IntoIterator<Item = &'a str>,
) -> Result<(), ApiError> {
    let Some(g) = given else { return Ok(()) };
    let known: Vec<&str> = known.into_iter().collect();
    if known.contains(&g.as_str()) {
        Ok(())
    } else {
        Err(ApiError::bad_field(
            key,
            format!(
                "unknown {key} '{g}'; the configuration lists: {}",
                known.join(", ")
            ),
        ))
    }
}

/// `GET /leads` and `GET /deals`.
async fn list_pipeline_items(
    state: AppState,
    caller: Caller,
    raw: Option<String>,
    kind: EntityKind,
) -> Result<Response, ApiError> {
    let (rows, limit, ascending) = pipeline_page(&state, &caller, raw, kind).await?;
    Ok(axum::Json(keyset_json(rows, limit, ascending)).into_response())
}

/// A page of leads or deals for the query string `raw` (`pipeline`, `stage`, `responsible`,
/// `team`, `source`, `q`, the time bounds, `order`, `limit`, `cursor`), within the caller's
/// pipelines: the rows (one more than the page, to tell whether there are more), the page's
/// size and its order. (`GET /leads`, `GET /deals` and the dashboard's lists.)
pub(crate) async fn pipeline_page(
    state: &AppState,
    caller: &Caller,
    raw: Option<String>,
    kind: EntityKind,
) -> Result<(Vec<Entity>, usize, bool), ApiError> {
    let mut q = query_pairs(raw.as_deref())?;
    let cfg = state.config.clone();
    let (limit, after) = page(&mut q)?;
    let ascending = match take(&mut q, "order").as_deref() {
        None | Some("desc") => false,
        Some("asc") => true,
        Some(other) => {
            return Err(ApiError::bad_field(
                "order",
                format!("order must be asc or desc, not '{other}'"),
            ));
        }
    };
    let after_id = match after {
        After::Start => None,
        After::Id { id, ascending: a } if a == ascending => Some(id),
        After::Id { .. } | After::Offset(_) => return Err(stale_cursor()),
    };
    let mut f = ListFilter {
        pipeline: take(&mut q, "pipeline"),
        stage: take(&mut q, "stage"),
        responsible: take(&mut q, "responsible"),
        source: if kind == EntityKind::Lead {
            take(&mut q, "source")
        } else {
            None
        },
        search: take(&mut q, "q").map(|t| Search::parse(&t)),
        created_since: query_time(state, &mut q, "created_since")?,
        created_until: query_time(state, &mut q, "created_until")?,
        updated_since: query_time(state, &mut q, "updated_since")?,
        updated_until: query_time(state, &mut q, "updated_until")?,
        ascending,
        limit: limit + 1,
        after_id,
        ..ListFilter::default()
    };
    check_known(
        "pipeline",
        &f.pipeline,
        cfg.pipelines
            .iter()
            .filter(|p| p.entity == kind)
            .map(|p| p.id.as_str()),
    )?;
    check_known(
        "responsible",
        &f.responsible,
        cfg.employees.keys().map(|e| e.as_str()),
    )?;
    check_known("source", &f.source, cfg.sources.iter().map(String::as_str))?;
    if let Some(team) = take(&mut q, "team") {
        let t = cfg
            .teams
            .values()
            .find(|t| t.id.as_str() == team)
            .ok_or_else(|| ApiError::bad_field("team", format!("unknown team '{team}'")))?;
        f.responsible_in = Some(
            cfg.employees
                .values()
                .filter(|e| e.team.as_ref() == Some(&t.id))
                .map(|e| e.id.as_str().to_owned())
                .collect(),
        );
    }
    no_more(
        q,
        "pipeline, stage, responsible, team, source (leads), q, created_since, created_until, updated_since, updated_until, order, limit, cursor",
    )?;
    // A team-scoped role lists only its pipelines.
    let reach = cfg
        .access
        .pipelines(&caller.role, caller.employee.as_ref())
        .unwrap_or(Reach::Only(Default::default()));
    if let Reach::Only(set) = &reach {
        match &f.pipeline {
            Some(p) => {
                let mut want = Want::new(Resource::of_stream(kind), Action::Read);
                want.pipeline = Some(p.as_str().into());
                caller.may(state, &want)?;
            }
            None => {
                let mine: Vec<_> = cfg
                    .pipelines
                    .iter()
                    .filter(|p| p.entity == kind && set.contains(&p.id))
                    .collect();
                if mine.is_empty() {
                    // Reaches none of this kind's pipelines: the 403 names one it lacks.
                    let mut want = Want::new(Resource::of_stream(kind), Action::Read);
                    want.pipeline = cfg
                        .pipelines
                        .iter()
                        .find(|p| p.entity == kind)
                        .map(|p| p.id.clone());
                    caller.may(state, &want)?;
                }
                f.pipeline_in = Some(mine.iter().map(|p| p.id.as_str().to_owned()).collect());
            }
        }
    }
    let rows: Vec<Entity> = state
        .readers
        .read(move |s| {
            Ok(match kind {
                EntityKind::Lead => query::leads(s, &f)?.into_iter().map(Entity::Lead).collect(),
                _ => query::deals(s, &f)?.into_iter().map(Entity::Deal).collect(),
            })
        })
        .await?;
    Ok((rows, limit, ascending))
}

/// The cursor of the page after `rows` (a page of `limit` asked with one more row), if any.
pub(crate) fn next_cursor(rows: &[Entity], limit: usize, ascending: bool) -> Option<String> {
    (rows.len() > limit)
        .then(|| {
            rows[..limit]
                .last()
                .map(|e| After::keyset(e.stream().id, ascending))
        })
        .flatten()
}

async fn list_simple(
    state: AppState,
    caller: Caller,
    raw: Option<String>,
    kind: EntityKind,
) -> Result<Response, ApiError> {
    // A team-scoped role sees the tasks of its pipelines' leads and deals, and its own.
    let reach = state
        .config
        .access
        .pipelines(&caller.role, caller.employee.as_ref())
        .unwrap_or(Reach::Only(Default::default()));
    let me = caller.employee.clone();
    let mut q = query_pairs(raw.as_deref())?;
    let (limit, after) = page(&mut q)?;
    let offset = match (kind, after) {
        (_, After::Start) => 0,
        (EntityKind::Task, After::Offset(n)) => n,
        (
            EntityKind::Contact | EntityKind::Company,
            After::Id {
                ascending: false, ..
            },
        ) => 0,
        _ => return Err(stale_cursor()),
    };
    let assignee = if kind == EntityKind::Task {
        take(&mut q, "assignee")
    } else {
        None
    };
    let open = kind == EntityKind::Task && take(&mut q, "open").is_some_and(|v| v == "true");
    no_more(
        q,
        if kind == EntityKind::Task {
            "assignee, open, limit, cursor"
        } else {
            "limit, cursor"
        },
    )?;
    if kind != EntityKind::Task {
        // Contacts and companies, newest first, a page after the last id seen.
        // One row more than the page tells whether there are more; the store answers at most
        // `MAX_LIMIT` rows, so a page of that many looks for the row after it on its own.
        let capped = limit >= query::MAX_LIMIT as usize;
        let mut lq = ListQuery::new(kind);
        lq.order.descending = true;
        lq.page.limit = u32::try_from(limit + 1)
            .unwrap_or(u32::MAX)
            .min(query::MAX_LIMIT);
        if let After::Id { id, .. } = after {
            lq.filters.push(Filter::Id(Cmp::Lt(id)));
        }
        let rows = state
            .readers
            .read(move |s| {
                let mut rows = query::list(s, &lq)?.items;
                if capped
                    && rows.len() == limit
                    && let Some(last) = rows.last().map(|e| e.stream().id)
                {
                    let mut next = ListQuery::new(lq.kind);
                    next.order.descending = true;
                    next.page.limit = 1;
                    next.filters.push(Filter::Id(Cmp::Lt(last)));
                    rows.extend(query::list(s, &next)?.items);
                }
                Ok(rows)
            })
            .await?;
        return Ok(axum::Json(keyset_json(rows, limit, false)).into_response());
    }
    let n = offset + limit + 1;
    let items = state
        .readers
        .read(move |s| {
            // A team-scoped role's tasks are filtered here, so the query cannot stop at `n`.
            let scoped = matches!(reach, Reach::Only(_));
            let filter = query::TaskFilter {
                assignee,
                open,
                overdue_at: None,
                limit: if scoped { 0 } else { n },
            };
            let mut rows = Vec::new();
            for t in query::tasks(s, &filter)? {
                if rows.len() == n {
                    break;
                }
                if let Reach::Only(set) = &reach {
                    let mine = me.as_ref() == Some(&t.assignee);
                    let task = Entity::Task(t.clone());
                    let pipeline = pipeline_of(&task, &mut |x| stream_pipeline(s, x))?;
                    if !mine && !pipeline.is_some_and(|p| set.contains(&p)) {
                        continue;
                    }
                }
                rows.push(entity_json(&Entity::Task(t)));
            }
            Ok(rows.into_iter().skip(offset).collect())
        })
        .await?;
    Ok(axum::Json(page_json(items, limit, offset)).into_response())
}

macro_rules! entity_routes {
    ($kind:expr, $create:ident, $cverb:expr, $get:ident, $list:ident, $lister:ident) => {
        pub(crate) async fn $create(
            State(state): State<AppState>,
            caller: Caller,
            key: IdempotencyKey,
            body: JsonBody,
        ) -> Result<Response, ApiError> {
            create(state, caller, key, body, $cverb).await
        }
        pub(crate) async fn $get(
            State(state): State<AppState>,
            caller: Caller,
            headers: HeaderMap,
            Path(id): Path<String>,
        ) -> Result<Response, ApiError> {
            get(state, caller, headers, $kind, id).await
        }
        pub(crate) async fn $list(
            State(state): State<AppState>,
            caller: Caller,
            RawQuery(raw): RawQuery,
        ) -> Result<Response, ApiError> {
            caller.may(&state, &Want::new(Resource::of_stream($kind), Action::Read))?;
            $lister(state, caller, raw, $kind).await
        }
    };
}

macro_rules! change_route {
    ($name:ident, $verb:expr) => {
        pub(crate) async fn $name(
            State(state): State<AppState>,
            caller: Caller,
            key: IdempotencyKey,
            if_match: IfMatch,
            Path(id): Path<String>,
            body: JsonBody,
        ) -> Result<Response, ApiError> {
            change(state, caller, key, if_match, id, body, $verb).await
        }
    };
}

entity_routes!(
    EntityKind::Lead,
    create_lead,
    Verb::LeadCreate,
    get_lead,
    list_leads,
    list_pipeline_items
);
entity_routes!(
    EntityKind::Deal,
    create_deal,
    Verb::DealCreate,
    get_deal,
    list_deals,
    list_pipeline_items
);
entity_routes!(
    EntityKind::Contact,
    create_contact,
    Verb::ContactCreate,
    get_contact,
    list_contacts,
    list_simple
);
entity_routes!(
    EntityKind::Company,
    create_company,
    Verb::CompanyCreate,
    get_company,
    list_companies,
    list_simple
);
entity_routes!(
    EntityKind::Task,
    create_task,
    Verb::TaskCreate,
    get_task,
    list_tasks,
    list_simple
);
change_route!(update_lead, Verb::LeadUpdate);
change_route!(move_lead, Verb::LeadMove);
change_route!(assign_lead, Verb::LeadAssign);
change_route!(update_deal, Verb::DealUpdate);
change_route!(move_deal, Verb::DealMove);
change_route!(assign_deal, Verb::DealAssign);
change_route!(update_contact, Verb::ContactUpdate);
change_route!(update_company, Verb::CompanyUpdate);
change_route!(complete_task, Verb::TaskComplete);
