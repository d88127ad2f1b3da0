//! Operations: `GET /healthz` (alive), `GET /readyz` (database open, rules loaded, writer
//! running), `GET /metrics` (Prometheus text), and the layers every request passes — a
//! request id (taken from `x-request-id` or made) on every log line, the request log with
//! secrets masked (a Bitrix24 URL's secret; no header is logged, and `Authorization`,
//! `Cookie` and `Set-Cookie` are marked sensitive), metrics by route and status, the body limit and the timeout.

use crate::error::ApiError;
use crate::state::AppState;
use axum::Router;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::json;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

/// The operations routes.
pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_text))
}

async fn healthz() -> Response {
    axum::Json(json!({"status": "alive"})).into_response()
}

async fn readyz(State(state): State<AppState>) -> Response {
    let db = state.readers.read(|s| Ok(s.last_position()?)).await;
    let writer = state.writer.is_alive();
    let accepting = state.accepting.load(Ordering::SeqCst);
    let rules = state.rules.current().map(|r| r.rules().rules.len());
    let ready = db.is_ok() && writer && accepting;
    let body = json!({
        "ready": ready,
        "database": match &db { Ok(head) => json!({"open": true, "head": head}), Err(e) => json!({"open": false, "error": e.to_string()}) },
        "writer": writer,
        "accepting": accepting,
        "rules": rules,
    });
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, axum::Json(body)).into_response()
}

async fn metrics_text(State(state): State<AppState>) -> Response {
    let (pending, head) = state
        .readers
        .read(|s| Ok((leadflow_store::query::outbox_depth(s)?, s.last_position()?)))
        .await
        .unwrap_or((0, 0));
    metrics::gauge!("leadflow_outbox_depth").set(pending as f64);
    metrics::gauge!("leadflow_log_head").set(head as f64);
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4"),
        )],
        state.metrics.render(),
    )
        .into_response()
}

/// A path as it may be logged: the secret of a Bitrix24 webhook URL (`/rest/<user>/<secret>/…`)
/// is masked — also in the spellings the router does not take (`//rest/…`, `/REST/…`,
/// `/%72est/…`), which are answered 404 but logged all the same. (Queries, where a form token
/// may be, are not logged.)
pub fn masked_path(path: &str) -> String {
    let mut parts: Vec<&str> = path.split('/').collect();
    let segments: Vec<usize> = (0..parts.len()).filter(|&i| !parts[i].is_empty()).collect();
    for (k, &i) in segments.iter().enumerate() {
        if percent_decoded(parts[i]).eq_ignore_ascii_case("rest")
            && let Some(&secret) = segments.get(k + 2)
        {
            parts[secret] = "***";
        }
    }
    parts.join("/")
}

/// `%XX` escapes decoded (bytes that are not UTF-8 are replaced).
fn percent_decoded(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        if b[i] == b'%'
            && let (Some(h), Some(l)) = (
                b.get(i + 1).copied().and_then(hex),
                b.get(i + 2).copied().and_then(hex),
            )
        {
            out.push((h * 16 + l) as u8);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// The request id: the client's `x-request-id` when it is short and printable, else one made
/// here (process start time and a counter).
fn request_id(req: &Request) -> String {
    if let Some(v) = req
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        && !v.is_empty()
        && v.len() <= 128
        && v.chars().all(|c| c.is_ascii_graphic())
    {
        return v.to_owned();
    }
    static START: std::sync::OnceLock<u128> = std::sync::OnceLock::new();
    let start = START.get_or_init(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos())
    });
    format!(
        "{:x}-{}",
        start & 0xffff_ffff_ffff,
        NEXT_ID.fetch_add(1, Ordering::Relaxed)
    )
}

/// The request log and metrics around every request.
async fn observe(req: Request, next: Next) -> Response {
    let id = request_id(&req);
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |m| m.as_str().to_owned());
    let method = req.method().clone();
    let path = masked_path(req.uri().path());
    let span = tracing::info_span!("request", id = %id, method = %method, path = %path);
    let started = Instant::now();
    let mut resp = {
        let _enter = span.enter();
        tracing::debug!("started");
        drop(_enter);
        tracing::Instrument::instrument(next.run(req), span.clone()).await
    };
    let elapsed = started.elapsed();
    let status = resp.status().as_u16();
    metrics::counter!("leadflow_http_requests_total", "route" => route.clone(), "method" => method.to_string(), "status" => status.to_string()).increment(1);
    metrics::histogram!("leadflow_http_request_seconds", "route" => route)
        .record(elapsed.as_secs_f64());
    span.in_scope(|| {
        if status >= 500 {
            tracing::warn!(status, ms = elapsed.as_millis() as u64, "answered");
        } else {
            tracing::info!(status, ms = elapsed.as_millis() as u64, "answered");
        }
    });
    if let Ok(v) = HeaderValue::from_str(&id) {
        resp.headers_mut().insert("x-request-id", v);
    }
    resp
}

/// Turns the answers the layers and axum's extractors make into the service's errors: axum's
/// bare 405 (a route without that method, with its `Allow` kept), the timeout's bare 503 (with
/// `Retry-After`), and axum's plain-text 4xx rejections (a path parameter that is not UTF-8,
/// a facade body over `[server] body_limit`). Under `/rest/` they take the Bitrix24 envelope
/// `{"error", "error_description"}`, elsewhere the JSON error.
async fn json_bare_errors(req: Request, next: Next) -> Response {
    let rest = req.uri().path().starts_with("/rest/");
    let resp = next.run(req).await;
    let status = resp.status();
    let content_type = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let plain_rejection = status.is_client_error()
        && content_type
            .as_deref()
            .is_some_and(|c| c.starts_with("text/plain; charset=utf-8"));
    let error = match (status, content_type.is_none(), plain_rejection) {
        (StatusCode::METHOD_NOT_ALLOWED, true, _) => {
            ApiError::MethodNotAllowed("this route does not take that method".into())
        }
        (StatusCode::SERVICE_UNAVAILABLE, true, _) => ApiError::Unavailable(
            "the request did not finish within [server] request_timeout; a write already queued may still be committed, so retry with the same Idempotency-Key".into(),
        ),
        (StatusCode::PAYLOAD_TOO_LARGE, _, true) => ApiError::TooLarge(
            "the body is larger than the server accepts ([server] body_limit)".into(),
        ),
        (_, _, true) => {
            let allow = resp.headers().get(header::ALLOW).cloned();
            let text = axum::body::to_bytes(resp.into_body(), 4096)
                .await
                .map(|b| String::from_utf8_lossy(&b).trim().to_owned())
                .ok()
                .filter(|t| !t.is_empty())
                .unwrap_or_else(|| "the request cannot be read".into());
            let mut r = rejection(rest, status, &text);
            if let Some(a) = allow {
                r.headers_mut().insert(header::ALLOW, a);
            }
            return r;
        }
        _ => return resp,
    };
    let allow = resp.headers().get(header::ALLOW).cloned();
    let mut r = if rest {
        bitrix_error(&error)
    } else {
        error.into_response()
    };
    if let Some(a) = allow {
        r.headers_mut().insert(header::ALLOW, a);
    }
    r
}

/// An axum rejection's text as the error of its route, with its status.
fn rejection(rest: bool, status: StatusCode, text: &str) -> Response {
    if rest {
        return bitrix_envelope(status, "INVALID_REQUEST", text);
    }
    let code = if status == StatusCode::UNSUPPORTED_MEDIA_TYPE {
        "unsupported_media_type"
    } else {
        "invalid_request"
    };
    (
        status,
        axum::Json(json!({"error": {"code": code, "message": text}})),
    )
        .into_response()
}

/// One of the service's errors in the Bitrix24 envelope, for a `/rest/` path.
fn bitrix_error(e: &ApiError) -> Response {
    let code = match e {
        ApiError::Unavailable(_) => "INTERNAL_SERVER_ERROR",
        ApiError::MethodNotAllowed(_) => "ERROR_METHOD_NOT_FOUND",
        _ => "INVALID_REQUEST",
    };
    let mut r = bitrix_envelope(e.status(), code, &e.to_string());
    if matches!(e, ApiError::Unavailable(_)) {
        r.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    r
}

fn bitrix_envelope(status: StatusCode, code: &str, description: &str) -> Response {
    (
        status,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json; charset=utf-8"),
        )],
        json!({"error": code, "error_description": description}).to_string(),
    )
        .into_response()
}

/// The layers around the whole app.
pub(crate) fn layers(router: Router, state: &AppState) -> Router {
    let s = &state.config.server;
    let timeout = s
        .request_timeout
        .to_std()
        .unwrap_or(std::time::Duration::from_secs(30));
    // The JSON errors wrap the timeout, so that its bare 503 is answered as JSON too. The
    // request log writes the method and path only; the headers that carry secrets (a token,
    // the dashboard's session cookie) are marked sensitive besides, so that no layer or debug
    // output that prints headers shows them.
    let secret_headers = [header::AUTHORIZATION, header::COOKIE, header::SET_COOKIE];
    router
        .layer(axum::extract::DefaultBodyLimit::max(s.body_limit))
        .layer(tower_http::timeout::TimeoutLayer::with_status_code(
            StatusCode::SERVICE_UNAVAILABLE,
            timeout,
        ))
        .layer(axum::middleware::from_fn(json_bare_errors))
        .layer(axum::middleware::from_fn(observe))
        .layer(tower_http::sensitive_headers::SetSensitiveHeadersLayer::new(secret_headers))
}

#[cfg(test)]
mod tests {
    use super::masked_path;

    #[test]
    fn the_secret_of_a_rest_path_is_masked_in_every_spelling() {
        for (path, want) in [
            ("/rest/1/s3cret/crm.lead.list", "/rest/1/***/crm.lead.list"),
            ("/rest/1/s3cret", "/rest/1/***"),
            ("//rest/1/s3cret/x", "//rest/1/***/x"),
            ("/REST/1/s3cret/x", "/REST/1/***/x"),
            ("/%72est/1/s3cret/x", "/%72est/1/***/x"),
            ("/rest//1//s3cret/x", "/rest//1//***/x"),
            ("/rest/1", "/rest/1"),
            ("/api/v1/leads/1", "/api/v1/leads/1"),
        ] {
            assert_eq!(masked_path(path), want, "{path}");
        }
    }
}
