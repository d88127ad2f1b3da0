//! The dashboard's pages: each handler reads what the API's route of the same thing reads
//! (through the same functions), and renders it; the POSTs are the API's writes.

use super::session::{self, Signed};
use super::{error_page, finish, render};
use crate::api::entities::{self, command, id_of, next_cursor, pipeline_page, visible_entity};
use crate::api::extract::IdempotencyKey;
use crate::api::logs::{inbox_rows, journal_rows};
use crate::error::ApiError;
use crate::state::AppState;
use axum::extract::{FromRequestParts, Path, RawQuery, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use leadflow_engine::access::{Action, Resource, Want};
use leadflow_engine::ids::{EmployeeId, EntityKind, StreamId};
use leadflow_engine::model::Entity;
use leadflow_engine::verb::Verb;
use leadflow_report::figures::{Filters, Kind, Scope, build};
use leadflow_report::text::time;
use leadflow_report::{audit, charts};
use serde_json::{Map, Value, json};

/// The request's session (if any) and headers; a page without one sends the browser to
/// sign in.
pub(crate) struct Ui {
    signed: Option<Signed>,
    headers: HeaderMap,
    ip: Option<std::net::IpAddr>,
}

impl FromRequestParts<AppState> for Ui {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Ui, Response> {
        let signed = session::signed(state, parts)
            .await
            .map_err(|e| error_page(state, None, &e))?;
        Ok(Ui {
            signed,
            headers: parts.headers.clone(),
            ip: crate::auth::client_ip(parts),
        })
    }
}

/// Where a page without a session goes.
fn to_login() -> Response {
    Redirect::to("/ui/login").into_response()
}

/// A time for people, in the calendar's zone.
fn when(state: &AppState, t: chrono::DateTime<chrono::Utc>) -> String {
    time(state.config.calendar.timezone, t)
}

/// An employee's name (`-` for nobody).
fn who(state: &AppState, e: Option<&EmployeeId>) -> String {
    e.map_or_else(
        || "-".to_owned(),
        |e| leadflow_engine::explain::employee(&state.config, e),
    )
}

/// The query string without empty values (a GET form sends every field, filled or not), as
/// the API takes it.
fn cleaned(raw: Option<String>) -> Option<String> {
    let raw = raw?;
    let pairs: Vec<(String, String)> = form_urlencoded::parse(raw.as_bytes())
        .filter(|(_, v)| !v.trim().is_empty())
        .map(|(k, v)| (k.into_owned(), v.trim().to_owned()))
        .collect();
    Some(
        form_urlencoded::Serializer::new(String::new())
            .extend_pairs(pairs)
            .finish(),
    )
}

/// The value of `key` in a query string.
fn param(raw: Option<&str>, key: &str) -> String {
    form_urlencoded::parse(raw.unwrap_or("").as_bytes())
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

/// The sign-in page (the dashboard when signed in already).
pub(crate) async fn login_form(State(state): State<AppState>, ui: Ui) -> Response {
    if ui.signed.is_some() {
        return Redirect::to("/ui/").into_response();
    }
    render(&state, StatusCode::OK, "login.html", None, json!({}))
}

/// `POST /ui/login` (`token=<secret>`): the token checked as the API checks it; a session and
/// its cookie, or the form again with 401.
pub(crate) async fn login(
    State(state): State<AppState>,
    ui: Ui,
    body: axum::body::Bytes,
) -> Response {
    let again = |status: StatusCode, e: &ApiError| {
        render(
            &state,
            status,
            "login.html",
            None,
            json!({"problem": e.to_string()}),
        )
    };
    if let Err(e) = session::same_origin(&ui.headers) {
        return again(StatusCode::FORBIDDEN, &e);
    }
    let secret = form_urlencoded::parse(&body)
        .find(|(k, _)| k == "token")
        .map(|(_, v)| v.trim().to_owned())
        .unwrap_or_default();
    if secret.is_empty() {
        let e = ApiError::bad_field("token", "paste a token's secret to sign in");
        return again(StatusCode::BAD_REQUEST, &e);
    }
    let hash = leadflow_engine::access::secret_hash(&secret);
    match crate::auth::authenticate_hash(&state, ui.ip, hash.clone(), None).await {
        Ok(_) => match state.sessions.open(hash) {
            Ok((id, _)) => {
                let mut r = Redirect::to("/ui/").into_response();
                r.headers_mut()
                    .insert(header::SET_COOKIE, session::set_cookie(&id));
                r
            }
            Err(e) => again(e.status(), &e),
        },
        Err(e) => again(e.status(), &e),
    }
}

/// The form's fields, and the session's form token checked (with the origin): a POST that
/// another site's page made is refused with 403.
fn checked_form(
    signed: &Signed,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Map<String, Value>, ApiError> {
    session::same_origin(headers)?;
    let mut form = Map::new();
    for (k, v) in form_urlencoded::parse(body) {
        if form
            .insert(k.to_string(), Value::String(v.trim().to_owned()))
            .is_some()
        {
            return Err(ApiError::bad_field(
                k.to_string(),
                format!("'{k}' is given twice"),
            ));
        }
    }
    let given = form
        .remove("csrf")
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default();
    if !session::csrf_matches(&signed.csrf, &given) {
        return Err(ApiError::Forbidden(
            "the form's token is not this session's (a stale page or another site's form): reload the page and try again".into(),
        ));
    }
    Ok(form)
}

/// `POST /ui/logout`: ends the session.
pub(crate) async fn logout(
    State(state): State<AppState>,
    ui: Ui,
    body: axum::body::Bytes,
) -> Response {
    let Some(s) = ui.signed else {
        return to_login();
    };
    if let Err(e) = checked_form(&s, &ui.headers, &body) {
        return error_page(&state, Some(&s), &e);
    }
    state.sessions.close(&s.session);
    let mut r = Redirect::to("/ui/login").into_response();
    r.headers_mut()
        .insert(header::SET_COOKIE, session::clear_cookie());
    r
}

/// `/ui/`: the funnel and the traffic light with their charts (for roles that read reports,
/// as `leadflow report` makes them), filtered by `pipeline`, `since`, `until`.
pub(crate) async fn dashboard(
    State(state): State<AppState>,
    ui: Ui,
    RawQuery(raw): RawQuery,
) -> Response {
    let Some(s) = ui.signed else {
        return to_login();
    };
    let r = dashboard_page(&state, &s, cleaned(raw)).await;
    finish(&state, &s, "dashboard.html", r)
}

async fn dashboard_page(
    state: &AppState,
    s: &Signed,
    raw: Option<String>,
) -> Result<Value, ApiError> {
    let mut q = entities::query_pairs(raw.as_deref())?;
    let mut filters = Filters {
        pipeline: entities::take(&mut q, "pipeline"),
        since: entities::take(&mut q, "since"),
        until: entities::take(&mut q, "until"),
        days: 3,
        ..Filters::default()
    };
    entities::no_more(q, "pipeline, since, until")?;
    let form = json!({
        "pipeline": filters.pipeline, "since": filters.since, "until": filters.until,
    });
    // The pipelines the role's reports reach (all, for a role not scoped to a team); the
    // first of them when none is named.
    let reach_reports = |p: &leadflow_engine::ids::PipelineId| {
        let mut want = Want::new(Resource::Reports, Action::Read);
        want.pipeline = Some(p.clone());
        s.caller.may(state, &want).is_ok()
    };
    let reachable: Vec<&leadflow_engine::config::Pipeline> = state
        .config
        .pipelines
        .iter()
        .filter(|p| p.entity == EntityKind::Lead || p.entity == EntityKind::Deal)
        .filter(|p| reach_reports(&p.id))
        .collect();
    if filters.pipeline.is_none()
        && let Some(first) = reachable.first()
        && !state
            .config
            .pipelines
            .iter()
            .find(|p| p.entity == EntityKind::Lead)
            .is_some_and(|p| reach_reports(&p.id))
    {
        filters.pipeline = Some(first.id.as_str().to_owned());
    }
    let pipelines: Vec<Value> = reachable
        .iter()
        .map(|p| json!({"id": p.id.as_str(), "name": p.name}))
        .collect();
    if s.caller
        .may(state, &Want::new(Resource::Reports, Action::Read))
        .is_err()
    {
        return Ok(json!({"reports": null, "form": form, "pipelines": pipelines}));
    }
    let config = state.config.clone();
    let now = state.clock.now();
    // A team-scoped role reads the reports of its own pipelines only: the funnel of a
    // pipeline it reaches (another is a 403), the traffic light only when it reaches every
    // pipeline the light reads (all of them unless one is named; otherwise it is left out).
    let reaches = |p: &leadflow_engine::ids::PipelineId| {
        let mut want = Want::new(Resource::Reports, Action::Read);
        want.pipeline = Some(p.clone());
        s.caller.may(state, &want)
    };
    let mut kinds = Vec::new();
    for kind in [Kind::Funnel, Kind::TrafficLight] {
        let Ok(scope) = Scope::resolve(&config, kind, &filters, now, None) else {
            kinds.push(kind); // the figures' own error, said below
            continue;
        };
        if kind == Kind::TrafficLight && !scope.pipeline_given {
            if config.pipelines.iter().all(|p| reaches(&p.id).is_ok()) {
                kinds.push(kind);
            }
        } else {
            reaches(&scope.pipeline.id)?;
            kinds.push(kind);
        }
    }
    let language = state.config.ui.language;
    let word = move |t: &str| super::i18n::report_word(language, t);
    let reports = state
        .readers
        .read(move |st| {
            let mut out = Vec::new();
            for kind in kinds {
                let scope = Scope::resolve(&config, kind, &filters, now, None)?;
                let params = scope.params(&config, kind);
                let mut built = build(&*st, &config, kind, &scope, &params)?;
                for chart in &mut built.charts {
                    match chart {
                        charts::Chart::Bars { title, series, .. } => {
                            *title = word(title);
                            for s in series {
                                s.name = word(&s.name);
                            }
                        }
                        charts::Chart::Grid { title, .. } => *title = word(title),
                    }
                }
                let tz = config.calendar.timezone;
                out.push(json!({
                    "kind": kind.name(),
                    "pipeline": scope.pipeline.name,
                    "period": format!("{} – {}", time(tz, scope.since), time(tz, scope.until)),
                    "charts": built.charts.iter().map(charts::svg).collect::<Vec<_>>(),
                    "headers": built.headers.iter().map(|h| word(h)).collect::<Vec<_>>(),
                    "rows": built.rows,
                    "notes": built.notes,
                }));
            }
            Ok(out)
        })
        .await?;
    Ok(json!({"reports": reports, "form": form, "pipelines": pipelines}))
}

/// `/ui/leads`.
pub(crate) async fn leads(
    State(state): State<AppState>,
    ui: Ui,
    RawQuery(raw): RawQuery,
) -> Response {
    list(state, ui, raw, EntityKind::Lead).await
}

/// `/ui/deals`.
pub(crate) async fn deals(
    State(state): State<AppState>,
    ui: Ui,
    RawQuery(raw): RawQuery,
) -> Response {
    list(state, ui, raw, EntityKind::Deal).await
}

async fn list(state: AppState, ui: Ui, raw: Option<String>, kind: EntityKind) -> Response {
    let Some(s) = ui.signed else {
        return to_login();
    };
    let r = list_page(&state, &s, cleaned(raw), kind).await;
    finish(&state, &s, "list.html", r)
}

/// A page of the list (the API's list query, its filters and cursor), with the filter form.
async fn list_page(
    state: &AppState,
    s: &Signed,
    raw: Option<String>,
    kind: EntityKind,
) -> Result<Value, ApiError> {
    s.caller
        .may(state, &Want::new(Resource::of_stream(kind), Action::Read))?;
    let mut query = raw.clone().unwrap_or_default();
    if param(raw.as_deref(), "limit").is_empty() {
        query = format!("{query}{}limit=25", if query.is_empty() { "" } else { "&" });
    }
    let (rows, limit, ascending) = pipeline_page(state, &s.caller, Some(query), kind).await?;
    let next = next_cursor(&rows, limit, ascending).map(|c| {
        let kept: Vec<(String, String)> =
            form_urlencoded::parse(raw.as_deref().unwrap_or("").as_bytes())
                .filter(|(k, _)| k != "cursor")
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect();
        let mut ser = form_urlencoded::Serializer::new(String::new());
        ser.extend_pairs(kept);
        ser.append_pair("cursor", &c);
        format!("/ui/{}?{}", entities::plural(kind), ser.finish())
    });
    let items: Vec<Value> = rows
        .iter()
        .take(limit)
        .map(|e| match e {
            Entity::Lead(l) => json!({
                "id": l.id, "title": l.title,
                "stage": leadflow_engine::explain::stage(&state.config, kind, &l.stage),
                "responsible": who(state, l.responsible.as_ref()),
                "created": when(state, l.created_at),
                "updated": when(state, l.updated_at),
            }),
            Entity::Deal(d) => json!({
                "id": d.id, "title": d.title,
                "stage": leadflow_engine::explain::stage(&state.config, kind, &d.stage),
                "responsible": who(state, d.responsible.as_ref()),
                "created": when(state, d.created_at),
                "updated": when(state, d.updated_at),
            }),
            _ => Value::Null,
        })
        .collect();
    let stages: Vec<Value> = state
        .config
        .pipelines
        .iter()
        .filter(|p| p.entity == kind)
        .flat_map(|p| p.stages.iter().map(move |st| (p, st)))
        .map(|(p, st)| json!({"id": st.id.as_str(), "name": format!("{} — {}", p.name, st.name)}))
        .collect();
    Ok(json!({
        "kind": kind.as_str(),
        "plural": entities::plural(kind),
        "items": items,
        "next": next,
        "paged": !param(raw.as_deref(), "cursor").is_empty(),
        "form": {
            "q": param(raw.as_deref(), "q"),
            "stage": param(raw.as_deref(), "stage"),
            "responsible": param(raw.as_deref(), "responsible"),
        },
        "stages": stages,
        "employees": employees(state),
    }))
}

/// The employees, for the forms' choices.
fn employees(state: &AppState) -> Vec<Value> {
    state
        .config
        .employees
        .values()
        .filter(|e| e.active)
        .map(|e| json!({"id": e.id.as_str(), "name": e.name}))
        .collect()
}

/// `/ui/leads/{id}`.
pub(crate) async fn lead_card(
    State(state): State<AppState>,
    ui: Ui,
    Path(id): Path<String>,
) -> Response {
    card(state, ui, EntityKind::Lead, id).await
}

/// `/ui/deals/{id}`.
pub(crate) async fn deal_card(
    State(state): State<AppState>,
    ui: Ui,
    Path(id): Path<String>,
) -> Response {
    card(state, ui, EntityKind::Deal, id).await
}

async fn card(state: AppState, ui: Ui, kind: EntityKind, id: String) -> Response {
    let Some(s) = ui.signed else {
        return to_login();
    };
    let r = card_page(&state, &s, kind, &id).await;
    finish(&state, &s, "card.html", r)
}

/// A lead's or deal's card: its fields, its history (each event in words, with its rule and
/// rule set and a link to its explanation), what is pending, and the move and assign forms
/// when the role may.
async fn card_page(
    state: &AppState,
    s: &Signed,
    kind: EntityKind,
    id: &str,
) -> Result<Value, ApiError> {
    let entity = visible_entity(state, &s.caller, kind, id).await?;
    let stream = entity.stream();
    let (pipeline, stage, responsible, title) = match &entity {
        Entity::Lead(l) => (&l.pipeline, &l.stage, &l.responsible, &l.title),
        Entity::Deal(d) => (&d.pipeline, &d.stage, &d.responsible, &d.title),
        _ => {
            return Err(ApiError::NotFound(format!(
                "{stream} is not a lead or deal"
            )));
        }
    };
    let may = |action: Action| {
        s.caller
            .may(
                state,
                &Want::in_pipeline(Resource::of_stream(kind), action, pipeline.clone()),
            )
            .is_ok()
    };
    let (may_move, may_assign) = (may(Action::Move), may(Action::Assign));
    let line = state
        .readers
        .read(move |st| Ok(audit::timeline(st, stream)?))
        .await?;
    let history: Vec<Value> = line
        .events
        .iter()
        .map(|e| {
            let rule = line.rule_of(e);
            json!({
                "position": e.position,
                "when": audit::occurred(&state.config, e),
                "what": audit::words(&state.config, e),
                "actor": e.actor,
                "rule": rule.map(|r| r.0),
                "ruleset": rule.and_then(|r| r.1).map(leadflow_engine::explain::short_hash),
            })
        })
        .collect();
    let mut pending: Vec<Value> = line
        .timers
        .iter()
        .map(|t| {
            json!({
                "what": audit::timer_words(t),
                "due": when(state, t.due_at),
                "by": t.set_by,
            })
        })
        .collect();
    pending.extend(line.tasks.iter().map(|t| {
        json!({
            "what": format!("task-{} «{}» — {}", t.id, t.title, who(state, Some(&t.assignee))),
            "due": when(state, t.due_at),
            "by": "",
        })
    }));
    let mut fields: Vec<Value> = Vec::new();
    if let Value::Object(m) = entities::entity_json(&entity) {
        for (k, v) in m {
            let text = match &v {
                Value::Null => continue,
                // Times (created_at, updated_at, stage_entered_at…) in the calendar's zone.
                Value::String(t) => match chrono::DateTime::parse_from_rfc3339(t) {
                    Ok(at) => when(state, at.with_timezone(&chrono::Utc)),
                    Err(_) => t.clone(),
                },
                Value::Array(a) if a.is_empty() => continue,
                Value::Object(o) if o.is_empty() => continue,
                other => other.to_string(),
            };
            fields.push(json!({"name": k, "value": text}));
        }
    }
    let stages: Vec<Value> = state
        .config
        .pipeline(pipeline)
        .map(|p| {
            p.stages
                .iter()
                .map(
                    |st| json!({"id": st.id.as_str(), "name": st.name, "current": &st.id == stage}),
                )
                .collect()
        })
        .unwrap_or_default();
    Ok(json!({
        "kind": kind.as_str(),
        "plural": entities::plural(kind),
        "id": stream.id,
        "stream": stream.to_string(),
        "title": title,
        "stage": leadflow_engine::explain::stage(&state.config, kind, stage),
        "responsible": who(state, responsible.as_ref()),
        "responsible_id": responsible.as_ref().map(|e| e.as_str()),
        "fields": fields,
        "history": history,
        "pending": pending,
        "may_move": may_move,
        "may_assign": may_assign,
        "stages": stages,
        "employees": employees(state),
    }))
}

/// `POST /ui/leads/{id}/move` (`stage`, `reason`).
pub(crate) async fn move_lead(
    State(state): State<AppState>,
    ui: Ui,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Response {
    change(state, ui, EntityKind::Lead, id, body, Verb::LeadMove).await
}

/// `POST /ui/leads/{id}/assign` (`to`).
pub(crate) async fn assign_lead(
    State(state): State<AppState>,
    ui: Ui,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Response {
    change(state, ui, EntityKind::Lead, id, body, Verb::LeadAssign).await
}

/// `POST /ui/deals/{id}/move`.
pub(crate) async fn move_deal(
    State(state): State<AppState>,
    ui: Ui,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Response {
    change(state, ui, EntityKind::Deal, id, body, Verb::DealMove).await
}

/// `POST /ui/deals/{id}/assign`.
pub(crate) async fn assign_deal(
    State(state): State<AppState>,
    ui: Ui,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Response {
    change(state, ui, EntityKind::Deal, id, body, Verb::DealAssign).await
}

/// A move or an assignment from the card: the API's command from the form's fields, run as
/// the API runs it (a writer job, checked against the role in its transaction, the actor
/// `api:<token>[@employee]`); back to the card after its commit, or the refusal as a page.
async fn change(
    state: AppState,
    ui: Ui,
    kind: EntityKind,
    id: String,
    body: axum::body::Bytes,
    verb: Verb,
) -> Response {
    let Some(s) = ui.signed else {
        let e = ApiError::Unauthorized("sign in first: /ui/login".into());
        return error_page(&state, None, &e);
    };
    let r = async {
        let mut form = checked_form(&s, &ui.headers, &body)?;
        let known: &[&str] = match verb {
            Verb::LeadMove | Verb::DealMove => &["stage", "reason"],
            _ => &["to"],
        };
        if let Some(k) = form.keys().find(|k| !known.contains(&k.as_str())) {
            return Err(ApiError::bad_field(
                k.clone(),
                format!("unknown field '{k}'; this form takes {}", known.join(", ")),
            ));
        }
        form.retain(|_, v| v.as_str().is_some_and(|t| !t.is_empty()));
        let id = id_of(kind, &id)?;
        let cmd = command(&state, verb, Some(id), form)?;
        entities::write(&state, &s.caller, IdempotencyKey(None), "", None, cmd).await?;
        Ok(id)
    }
    .await;
    match r {
        Ok(id) => Redirect::to(&format!("/ui/{}/{id}", entities::plural(kind))).into_response(),
        Err(e) => error_page(&state, Some(&s), &e),
    }
}

/// `/ui/journal`: incidents and escalations with the API's filters.
pub(crate) async fn journal(
    State(state): State<AppState>,
    ui: Ui,
    RawQuery(raw): RawQuery,
) -> Response {
    let Some(s) = ui.signed else {
        return to_login();
    };
    let raw = cleaned(raw);
    let r = async {
        let rows = journal_rows(&state, &s.caller, raw.clone()).await?;
        let rows: Vec<Value> = rows
            .iter()
            .map(|r| {
                json!({
                    "record": r.record,
                    "position": r.position,
                    "when": when(&state, r.at),
                    "employee": who(&state, r.employee.clone().map(EmployeeId).as_ref()),
                    "kind": r.kind,
                    "rule": r.rule,
                    "stream": r.stream,
                    "link": stream_link(&r.stream),
                    "details": r.text.clone().or_else(|| r.manager.clone().map(|m| format!("→ {}", who(&state, Some(&EmployeeId(m)))))),
                })
            })
            .collect();
        let teams: Vec<Value> = state
            .config
            .teams
            .values()
            .map(|t| json!({"id": t.id.as_str(), "name": t.name}))
            .collect();
        Ok(json!({
            "rows": rows,
            "form": {
                "employee": param(raw.as_deref(), "employee"),
                "team": param(raw.as_deref(), "team"),
                "kind": param(raw.as_deref(), "kind"),
                "rule": param(raw.as_deref(), "rule"),
                "since": param(raw.as_deref(), "since"),
                "until": param(raw.as_deref(), "until"),
                "what": param(raw.as_deref(), "what"),
            },
            "employees": employees(&state),
            "teams": teams,
        }))
    }
    .await;
    finish(&state, &s, "journal.html", r)
}

/// The card of a stream (`lead-7` → `/ui/leads/7`), for leads and deals.
fn stream_link(stream: &str) -> Option<String> {
    let (kind, id) = stream.split_once('-')?;
    let plural = match kind {
        "lead" => "leads",
        "deal" => "deals",
        _ => return None,
    };
    id.parse::<i64>()
        .ok()
        .map(|id| format!("/ui/{plural}/{id}"))
}

/// `/ui/inbox`: the caller's notifications (the API's inbox).
pub(crate) async fn inbox(
    State(state): State<AppState>,
    ui: Ui,
    RawQuery(raw): RawQuery,
) -> Response {
    let Some(s) = ui.signed else {
        return to_login();
    };
    let raw = cleaned(raw);
    let r = async {
        let rows = inbox_rows(&state, &s.caller, raw.clone()).await?;
        let rows: Vec<Value> = rows
            .iter()
            .map(|n| {
                json!({
                    "when": when(&state, n.at),
                    "priority": n.priority,
                    "text": n.text,
                    "rule": n.rule,
                    "stream": n.stream,
                    "link": stream_link(&n.stream),
                    "read": n.read_at.map(|t| when(&state, t)),
                })
            })
            .collect();
        Ok(json!({"rows": rows, "unread": param(raw.as_deref(), "unread") == "true"}))
    }
    .await;
    finish(&state, &s, "inbox.html", r)
}

/// `/ui/explain/{position}`: the chain of causes of an event (as `leadflow explain`), for a
/// role that reads the log; events of streams the role may not see are not shown.
pub(crate) async fn explain(
    State(state): State<AppState>,
    ui: Ui,
    Path(position): Path<String>,
) -> Response {
    let Some(s) = ui.signed else {
        return to_login();
    };
    let r = explain_page(&state, &s, &position).await;
    finish(&state, &s, "explain.html", r)
}

async fn explain_page(state: &AppState, s: &Signed, position: &str) -> Result<Value, ApiError> {
    s.caller
        .may(state, &Want::new(Resource::Events, Action::Read))?;
    let position: i64 = position
        .parse()
        .map_err(|_| ApiError::NotFound(format!("no event at position '{position}'")))?;
    let config = state.config.clone();
    let (ex, pipelines) = state
        .readers
        .read(move |st| {
            let ex = audit::explain(st, &config, position)?;
            let mut pipelines = Vec::new();
            for e in &ex.chain {
                pipelines.push(crate::api::logs::event_pipeline(st, e.stream)?);
            }
            Ok((ex, pipelines))
        })
        .await?;
    let visible = |stream: StreamId, p: Option<&leadflow_engine::ids::PipelineId>| {
        s.caller.may_see(state, stream, p)
    };
    if let (Some(e), Some(p)) = (ex.chain.first(), pipelines.first())
        && !visible(e.stream, p.as_ref())
    {
        return Err(ApiError::Forbidden(format!(
            "token '{}': role {} may not see {}",
            s.caller.token, s.caller.role, e.stream
        )));
    }
    let shown: Vec<bool> = ex
        .chain
        .iter()
        .zip(&pipelines)
        .map(|(e, p)| visible(e.stream, p.as_ref()))
        .collect();
    let steps: Vec<Value> = ex
        .chain
        .iter()
        .zip(&ex.steps)
        .zip(&pipelines)
        .enumerate()
        .map(|(i, ((e, step), _))| {
            // A step is hidden when its event is; so is what its condition read when the
            // event that triggered it (the next link of the chain) is one the role may not see.
            if !shown[i] {
                return json!({"hidden": true, "position": e.position});
            }
            let cause_hidden = shown.get(i + 1).is_some_and(|v| !v);
            let rule = &step["rule"];
            let condition = &rule["condition"];
            let values: Vec<Value> = condition["read"]
                .as_array()
                .map(|read| {
                    read.iter()
                        .filter_map(Value::as_str)
                        .map(|path| {
                            let absent = condition["absent"]
                                .as_array()
                                .is_some_and(|a| a.iter().any(|x| x == path));
                            json!({"path": path, "value": if absent { "(absent)".to_owned() } else { condition["values"][path].to_string() }})
                        })
                        .collect()
                })
                .unwrap_or_default();
            json!({
                "position": e.position,
                "when": audit::occurred(&state.config, e),
                "stream": e.stream.to_string(),
                "link": stream_link(&e.stream.to_string()),
                "what": step["text"],
                "actor": e.actor,
                "step": step["step"],
                "rule": rule["id"],
                "ruleset": rule["ruleset"].as_str().map(leadflow_engine::explain::short_hash),
                "note": rule["note"],
                "condition": if cause_hidden { Value::Null } else { condition["source"].clone() },
                "result": if cause_hidden { Value::Null } else { match (&condition["result"], &condition["error"]) {
                    (Value::Bool(b), _) => Value::String(b.to_string()),
                    (_, Value::String(m)) => Value::String(m.clone()),
                    _ => condition["note"].clone(),
                } },
                "values": if cause_hidden { Vec::new() } else { values },
            })
        })
        .collect();
    // What started the chain, only when the role may see where it happened.
    let started = if shown.last().copied().unwrap_or(false) {
        serde_json::to_value(&ex.started).unwrap_or(Value::Null)
    } else {
        Value::Null
    };
    Ok(json!({
        "position": position,
        "steps": steps,
        "started": started,
    }))
}
