//! Web-form intake: `POST /intake/{form}` takes a submission as site builders and form
//! services send it — `application/x-www-form-urlencoded`, `multipart/form-data` or JSON — and
//! creates a lead (actor `api:<form>`) mapped by `[forms.NAME]`, so the intake rules run. It
//! answers 201 with the lead, or 303 to the form's `redirect` for a plain HTML form. A bad
//! submission is a 422 naming the form field, and appends nothing.
//!
//! Guards: the form's token (when it has one), its allowed origins (CORS, with the preflight
//! answered here), its size limit and a honeypot field (a submission that fills it is
//! answered as accepted and creates nothing).

use crate::api::entities::respond;
use crate::api::extract::{key_of, request_hash};
use crate::error::ApiError;
use crate::state::AppState;
use crate::writer::Answer;
use axum::body::Bytes;
use axum::extract::{FromRequest, Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use leadflow_engine::config::FormConfig;
use leadflow_engine::verb::{self, Verb};
use leadflow_engine::{Actor, EventMeta};
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;

/// A submission's fields: name → values, in the order sent.
type Fields = BTreeMap<String, Vec<String>>;

/// `OPTIONS /intake/{form}`: the CORS preflight.
pub(crate) async fn preflight(
    State(state): State<AppState>,
    Path(form): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let form = find(&state, &form)?;
    let origin = allowed_origin(&state, form, &headers)?;
    let mut r = StatusCode::NO_CONTENT.into_response();
    cors(&mut r, origin.as_deref());
    let h = r.headers_mut();
    h.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static("POST, OPTIONS"),
    );
    h.insert(
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static("content-type, authorization, idempotency-key"),
    );
    h.insert(
        header::ACCESS_CONTROL_MAX_AGE,
        HeaderValue::from_static("600"),
    );
    Ok(r)
}

/// `POST /intake/{form}`.
pub(crate) async fn submit(
    State(state): State<AppState>,
    Path(form_name): Path<String>,
    req: Request,
) -> Result<Response, ApiError> {
    let form = find(&state, &form_name)?.clone();
    let headers = req.headers().clone();
    let origin = allowed_origin(&state, &form, &headers)?;
    let query = req.uri().query().map(str::to_owned);
    let path = req.uri().path().to_owned();
    let kind = content_kind(&headers)?;
    let plain_form = kind != Kind::Json && !accepts_json(&headers);
    // A form's token is a secret like an API token's: wrong ones count as failed attempts of
    // the address, which is refused (429) after too many.
    let ip = req
        .extensions()
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|c| c.0.ip());
    if form.token.is_some() {
        state.failures.check(ip)?;
    }
    let (fields, body_bytes) = read_fields(req, &state, &form, kind).await?;
    if let Err(e) = check_token(&form, &fields, query.as_deref(), &headers) {
        state.failures.fail(ip);
        metrics::counter!("leadflow_auth_failures_total").increment(1);
        return Err(e);
    }
    let mut resp = if is_bot(&form, &fields) {
        tracing::info!(form = %form.name, "intake: honeypot filled; accepted and dropped");
        accepted(&form, plain_form, None)
    } else {
        let args = lead_args(&form, &fields, &state.config.fields)?;
        let cmd = verb::build(Verb::LeadCreate, &args, state.clock.now(), &state.config)
            .map_err(|m| unprocessable(&form, &m))?;
        let key = key_of(&headers)?.map(|key| crate::writer::Idempotency {
            scope: format!("form:{}", form.name),
            key,
            request_hash: request_hash(&Method::POST, &path, &body_bytes),
        });
        let actor = Actor::api(form.name.clone());
        let form2 = form.clone();
        let answer = state
            .writer
            .run(
                key,
                Box::new(move |tx, ctx| {
                    let out = tx
                        .execute(ctx.config, &cmd, &EventMeta::root(ctx.now, actor))
                        .map_err(|e| match ApiError::from(e) {
                            ApiError::Unprocessable {
                                code,
                                message,
                                field,
                            } => ApiError::Unprocessable {
                                code,
                                message: format!("form '{}': {message}", form2.name),
                                field: field.map(|f| form_field(&form2, &f)),
                            },
                            other => other,
                        })?;
                    let entity = tx.load(out.stream)?;
                    Ok(Answer {
                        status: StatusCode::CREATED,
                        body: json!({
                            "id": out.stream.id,
                            "stream": out.stream.to_string(),
                            "lead": entity.as_ref().map(crate::api::entities::entity_json),
                        }),
                        version: entity.as_ref().map(leadflow_engine::model::Entity::version),
                        location: Some(format!("/api/v1/leads/{}", out.stream.id)),
                        replayed: false,
                        subject: Some((
                            out.stream,
                            out.appended
                                .as_ref()
                                .map(|a| (a.first_position, a.last_position)),
                        )),
                    })
                }),
            )
            .await
            .map_err(|e| {
                tracing::info!(form = %form.name, error = %e, "intake: refused");
                e
            })?;
        if plain_form && form.redirect.is_some() {
            accepted(&form, true, Some(answer.body["id"].as_i64().unwrap_or(0)))
        } else {
            respond(answer)
        }
    };
    cors(&mut resp, origin.as_deref());
    Ok(resp)
}

fn find<'a>(state: &'a AppState, name: &str) -> Result<&'a FormConfig, ApiError> {
    state.config.forms.get(name).ok_or_else(|| {
        ApiError::NotFound(format!(
            "no form '{name}': forms are set in [forms.NAME] of the configuration"
        ))
    })
}

/// The origin to allow in the answer: the request's, if the form allows it; a browser
/// request from another origin is refused (403). Requests without `Origin` (servers, form
/// services) pass.
fn allowed_origin(
    state: &AppState,
    form: &FormConfig,
    headers: &HeaderMap,
) -> Result<Option<String>, ApiError> {
    let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) else {
        return Ok(None);
    };
    let allowed = form
        .allowed_origins
        .iter()
        .chain(&state.config.server.allowed_origins)
        .any(|o| o == "*" || o.eq_ignore_ascii_case(origin));
    if allowed {
        Ok(Some(origin.to_owned()))
    } else {
        Err(ApiError::Forbidden(format!(
            "form '{}' does not take submissions from {origin}: add it to the form's allowed_origins",
            form.name
        )))
    }
}

fn cors(resp: &mut Response, origin: Option<&str>) {
    if let Some(o) = origin.and_then(|o| HeaderValue::from_str(o).ok()) {
        resp.headers_mut()
            .insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, o);
        resp.headers_mut()
            .insert(header::VARY, HeaderValue::from_static("Origin"));
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Urlencoded,
    Multipart,
    Json,
}

fn content_kind(headers: &HeaderMap) -> Result<Kind, ApiError> {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    let base = ct.split(';').next().unwrap_or("").trim();
    match base {
        "application/x-www-form-urlencoded" => Ok(Kind::Urlencoded),
        "multipart/form-data" => Ok(Kind::Multipart),
        "application/json" => Ok(Kind::Json),
        "" => Err(ApiError::UnsupportedMediaType(
            "send the form as application/x-www-form-urlencoded, multipart/form-data or application/json".into(),
        )),
        other => Err(ApiError::UnsupportedMediaType(format!(
            "forms are taken as application/x-www-form-urlencoded, multipart/form-data or application/json, not {other}"
        ))),
    }
}

fn accepts_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("application/json"))
}

/// The submission's fields, and its bytes (for the idempotency hash).
async fn read_fields(
    req: Request,
    state: &AppState,
    form: &FormConfig,
    kind: Kind,
) -> Result<(Fields, Vec<u8>), ApiError> {
    // The form's own limit, or the server's body limit when that is smaller (the body is
    // read under it).
    let limit = form.size_limit.min(state.config.server.body_limit);
    let too_large = || {
        ApiError::TooLarge(format!(
            "the submission is larger than form '{}' takes ({limit} bytes)",
            form.name
        ))
    };
    if let Some(n) = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok())
        && n > form.size_limit
    {
        return Err(too_large());
    }
    let mut fields = Fields::new();
    match kind {
        Kind::Multipart => {
            let mut mp = axum::extract::Multipart::from_request(req, state)
                .await
                .map_err(|e| {
                    ApiError::bad_request(
                        "malformed_form",
                        format!("the multipart body cannot be read: {e}"),
                    )
                })?;
            let mut size = 0usize;
            let mut raw = Vec::new();
            while let Some(field) = mp.next_field().await.map_err(|e| {
                ApiError::bad_request(
                    "malformed_form",
                    format!("the multipart body cannot be read: {e}"),
                )
            })? {
                let name = field.name().unwrap_or("").to_owned();
                let is_file = field.file_name().is_some();
                let data = field.bytes().await.map_err(|e| {
                    ApiError::bad_request(
                        "malformed_form",
                        format!("the multipart body cannot be read: {e}"),
                    )
                })?;
                size += data.len() + name.len();
                if size > form.size_limit {
                    return Err(too_large());
                }
                if is_file {
                    // Files (attachments) are not lead fields; they are left out.
                    continue;
                }
                let text = String::from_utf8(data.to_vec()).map_err(|_| {
                    ApiError::bad_field(
                        name.clone(),
                        format!("form field '{name}' is not UTF-8 text"),
                    )
                })?;
                raw.extend_from_slice(name.as_bytes());
                raw.push(0);
                raw.extend_from_slice(text.as_bytes());
                raw.push(0);
                fields.entry(name).or_default().push(text);
            }
            Ok((fields, raw))
        }
        Kind::Urlencoded | Kind::Json => {
            let bytes = Bytes::from_request(req, state).await.map_err(|e| {
                if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    too_large()
                } else {
                    ApiError::bad_request(
                        "unreadable_body",
                        format!("the body cannot be read: {e}"),
                    )
                }
            })?;
            if bytes.len() > form.size_limit {
                return Err(too_large());
            }
            if kind == Kind::Urlencoded {
                std::str::from_utf8(&bytes).map_err(|e| {
                    ApiError::bad_request(
                        "invalid_utf8",
                        format!("the form is not UTF-8 (byte {})", e.valid_up_to()),
                    )
                })?;
                for (k, v) in form_urlencoded::parse(&bytes) {
                    fields
                        .entry(k.into_owned())
                        .or_default()
                        .push(v.into_owned());
                }
            } else {
                let map = crate::api::extract::parse_object(&bytes)?;
                for (k, v) in map {
                    let values = match v {
                        Value::String(s) => vec![s],
                        Value::Number(n) => vec![n.to_string()],
                        Value::Bool(b) => vec![b.to_string()],
                        Value::Null => vec![],
                        Value::Array(a) => a
                            .into_iter()
                            .map(|x| match x {
                                Value::String(s) => Ok(s),
                                Value::Number(n) => Ok(n.to_string()),
                                other => Err(ApiError::bad_field(
                                    k.clone(),
                                    format!(
                                        "form field '{k}' holds {}: give text or a list of text",
                                        crate::api::extract::kind_of(&other)
                                    ),
                                )),
                            })
                            .collect::<Result<_, _>>()?,
                        Value::Object(_) => {
                            return Err(ApiError::bad_field(
                                k.clone(),
                                format!(
                                    "form field '{k}' holds an object: give text or a list of text"
                                ),
                            ));
                        }
                    };
                    fields.insert(k, values);
                }
            }
            Ok((fields, bytes.to_vec()))
        }
    }
}

/// Compares in constant time (for secrets).
pub(crate) fn same_secret(a: &[u8], b: &[u8]) -> bool {
    use sha2::{Digest, Sha256};
    // Equal-length digests compared byte by byte without an early exit.
    let (x, y) = (Sha256::digest(a), Sha256::digest(b));
    x.iter()
        .zip(y.iter())
        .fold(0u8, |acc, (p, q)| acc | (p ^ q))
        == 0
}

fn check_token(
    form: &FormConfig,
    fields: &Fields,
    query: Option<&str>,
    headers: &HeaderMap,
) -> Result<(), ApiError> {
    let Some(expected) = &form.token else {
        return Ok(());
    };
    let from_field = fields.get("token").and_then(|v| v.first()).cloned();
    let from_query = query.and_then(|q| {
        form_urlencoded::parse(q.as_bytes())
            .find(|(k, _)| k == "token")
            .map(|(_, v)| v.into_owned())
    });
    let from_header = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::to_owned);
    match from_header.or(from_field).or(from_query) {
        Some(given) if same_secret(given.as_bytes(), expected.as_bytes()) => Ok(()),
        Some(_) => Err(ApiError::Unauthorized(format!(
            "wrong token for form '{}'",
            form.name
        ))),
        None => Err(ApiError::Unauthorized(format!(
            "form '{}' needs its token: a `token` field, ?token= or Authorization: Bearer",
            form.name
        ))),
    }
}

fn is_bot(form: &FormConfig, fields: &Fields) -> bool {
    form.honeypot
        .as_ref()
        .and_then(|h| fields.get(h))
        .is_some_and(|v| v.iter().any(|s| !s.trim().is_empty()))
}

/// The answer to an accepted submission without the lead: a 303 to the form's redirect for
/// a plain HTML form, else 201 `{"accepted": true}` (also what a bot gets).
fn accepted(form: &FormConfig, plain: bool, id: Option<i64>) -> Response {
    if plain && let Some(to) = &form.redirect {
        let mut r = StatusCode::SEE_OTHER.into_response();
        if let Ok(v) = HeaderValue::from_str(to) {
            r.headers_mut().insert(header::LOCATION, v);
        }
        return r;
    }
    (
        StatusCode::CREATED,
        axum::Json(json!({"accepted": true, "id": id})),
    )
        .into_response()
}

/// The form field a lead field was mapped from (for errors), else the lead field.
fn form_field(form: &FormConfig, lead_field: &str) -> String {
    let f = lead_field.trim_start_matches("fields.");
    let target = match f {
        "phone" => "phones",
        "email" => "emails",
        other => other,
    };
    form.map
        .get(target)
        .and_then(|v| v.first())
        .cloned()
        .unwrap_or_else(|| f.to_owned())
}

fn unprocessable(form: &FormConfig, message: &str) -> ApiError {
    let field = message
        .split('`')
        .nth(1)
        .or_else(|| message.split('\'').nth(1))
        .map(|f| form_field(form, f));
    ApiError::Unprocessable {
        code: "invalid_submission",
        message: format!("form '{}': {message}", form.name),
        field,
    }
}

/// The `lead.create` arguments of a submission, by the form's mapping.
fn lead_args(
    form: &FormConfig,
    fields: &Fields,
    custom: &[leadflow_engine::config::FieldDef],
) -> Result<Map<String, Value>, ApiError> {
    let first = |name: &str| {
        fields
            .get(name)
            .and_then(|v| v.iter().find(|s| !s.trim().is_empty()))
            .cloned()
    };
    let mut args = Map::new();
    let mut custom_values = Map::new();
    for (target, from) in &form.map {
        let values: Vec<String> = from
            .iter()
            .flat_map(|f| fields.get(f).cloned().unwrap_or_default())
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
            .collect();
        if values.is_empty() {
            continue;
        }
        match target.as_str() {
            "phones" | "emails" => {
                args.insert(target.clone(), json!(values));
            }
            "name" | "comment" | "client_type" => {
                args.insert(target.clone(), json!(values.join(" ")));
            }
            custom_field => {
                custom_values.insert(custom_field.to_owned(), json!(values.join(", ")));
            }
        }
    }
    let mut utm_text = Vec::new();
    for tag in &form.utm {
        if let Some(v) = first(tag) {
            if custom
                .iter()
                .any(|f| f.entity == leadflow_engine::ids::EntityKind::Lead && &f.id == tag)
            {
                custom_values.insert(tag.clone(), json!(v));
            } else {
                utm_text.push(format!("{tag}={v}"));
            }
        }
    }
    if !utm_text.is_empty() {
        let c = args
            .get("comment")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned();
        let utm = utm_text.join(" ");
        args.insert(
            "comment".into(),
            json!(if c.is_empty() {
                utm
            } else {
                format!("{c}\n{utm}")
            }),
        );
    }
    if let Some(t) = &form.title {
        let vars: Map<String, Value> = fields
            .iter()
            .map(|(k, v)| (k.replace('-', "_"), json!(v.join(", "))))
            .collect();
        let title =
            leadflow_engine::template::render(t, &vars).map_err(|e| ApiError::Unprocessable {
                code: "invalid_submission",
                message: format!(
                    "form '{}': the title template cannot be filled: {e}",
                    form.name
                ),
                field: None,
            })?;
        args.insert("title".into(), json!(title));
    }
    if !custom_values.is_empty() {
        args.insert("fields".into(), Value::Object(custom_values));
    }
    args.insert("source".into(), json!(form.source));
    if !["name", "phones", "emails"]
        .iter()
        .any(|k| args.contains_key(*k))
    {
        return Err(ApiError::Unprocessable {
            code: "invalid_submission",
            message: format!(
                "form '{}': the submission has no name, phone or e-mail (mapped from {})",
                form.name,
                ["name", "phones", "emails"]
                    .iter()
                    .filter_map(|k| form.map.get(*k))
                    .flatten()
                    .map(String::as_str)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            field: form
                .map
                .get("phones")
                .or(form.map.get("name"))
                .and_then(|v| v.first())
                .cloned(),
        });
    }
    Ok(args)
}
