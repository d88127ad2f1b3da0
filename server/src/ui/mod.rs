//! The dashboard: the browser UI `leadflow serve` serves at `/` (docs/DASHBOARD.md), for the
//! head of sales, the first line and auditors.
//!
//! Server-rendered pages (minijinja templates embedded from `server/templates/`, HTML
//! autoescaped) with plain forms; one stylesheet, embedded and served here; no script at all.
//! Every page carries a strict Content-Security-Policy (nothing but this service's own
//! stylesheet, no script, forms only to itself, no framing).
//!
//! It reads and writes exactly as the API does — the same list query, entity reads and role
//! checks (`api::entities`, `api::logs`), the same writer jobs with the actor
//! `api:<token>[@employee]` — and shows what the CLI shows with the same code
//! (`leadflow_report`: the reports' figures and charts, the timeline and the explanation).
//! `session` is signing in and the guards of every POST; `i18n` the pages' words (`[ui]
//! language`); `pages` the handlers.

pub(crate) mod i18n;
mod pages;
pub mod session;

pub use session::Sessions;

use crate::error::ApiError;
use crate::state::AppState;
use axum::Router;
use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use minijinja::Environment;
use session::Signed;
use std::sync::OnceLock;

/// The Content-Security-Policy of every page: only this service's stylesheet and images, no
/// script, no plugins, forms posted only here, never framed.
pub const CSP: &str = "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// The dashboard's routes: `/` and everything under `/ui/` (none under `/api/v1`).
pub(crate) fn routes() -> Router<AppState> {
    use pages as p;
    Router::new()
        .route("/", get(root))
        .route("/ui", get(root))
        .route("/ui/", get(p::dashboard))
        .route("/ui/login", get(p::login_form).post(p::login))
        .route("/ui/logout", post(p::logout))
        .route("/ui/leads", get(p::leads))
        .route("/ui/deals", get(p::deals))
        .route("/ui/leads/{id}", get(p::lead_card))
        .route("/ui/deals/{id}", get(p::deal_card))
        .route("/ui/leads/{id}/move", post(p::move_lead))
        .route("/ui/leads/{id}/assign", post(p::assign_lead))
        .route("/ui/deals/{id}/move", post(p::move_deal))
        .route("/ui/deals/{id}/assign", post(p::assign_deal))
        .route("/ui/journal", get(p::journal))
        .route("/ui/inbox", get(p::inbox))
        .route("/ui/explain/{position}", get(p::explain))
        .route("/ui/assets/app.css", get(stylesheet))
        .route("/ui/assets/icon.svg", get(icon))
        .route("/favicon.ico", get(icon))
        .layer(axum::middleware::from_fn(page_headers))
}

async fn root() -> Redirect {
    Redirect::to("/ui/")
}

/// The stylesheet.
async fn stylesheet() -> Response {
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/css; charset=utf-8"),
            ),
            (
                header::CACHE_CONTROL,
                HeaderValue::from_static("public, max-age=3600"),
            ),
        ],
        include_str!("../../templates/app.css"),
    )
        .into_response()
}

/// The icon.
async fn icon() -> Response {
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("image/svg+xml"),
            ),
            (
                header::CACHE_CONTROL,
                HeaderValue::from_static("public, max-age=3600"),
            ),
        ],
        "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 16 16\"><rect width=\"16\" height=\"16\" rx=\"3\" fill=\"#23395d\"/><rect x=\"3\" y=\"9\" width=\"2\" height=\"4\" fill=\"#fff\"/><rect x=\"7\" y=\"6\" width=\"2\" height=\"7\" fill=\"#fff\"/><rect x=\"11\" y=\"3\" width=\"2\" height=\"10\" fill=\"#fff\"/></svg>",
    )
        .into_response()
}

/// The headers of every dashboard answer: the CSP, no sniffing, no framing, no referrer to
/// other sites, and pages (not the stylesheet) never cached.
async fn page_headers(req: Request, next: Next) -> Response {
    let css = req.uri().path().starts_with("/ui/assets/") || req.uri().path() == "/favicon.ico";
    let mut resp = next.run(req).await;
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    if !css {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    resp
}

/// The templates, loaded once.
fn templates() -> &'static Environment<'static> {
    static ENV: OnceLock<Environment<'static>> = OnceLock::new();
    ENV.get_or_init(|| {
        let mut env = Environment::new();
        for (name, text) in [
            ("base.html", include_str!("../../templates/base.html")),
            ("login.html", include_str!("../../templates/login.html")),
            (
                "dashboard.html",
                include_str!("../../templates/dashboard.html"),
            ),
            ("list.html", include_str!("../../templates/list.html")),
            ("card.html", include_str!("../../templates/card.html")),
            ("journal.html", include_str!("../../templates/journal.html")),
            ("inbox.html", include_str!("../../templates/inbox.html")),
            ("explain.html", include_str!("../../templates/explain.html")),
            ("error.html", include_str!("../../templates/error.html")),
        ] {
            // The templates are part of the binary: one that does not parse fails every test.
            env.add_template(name, text)
                .unwrap_or_else(|e| panic!("template {name}: {e:#}"));
        }
        env
    })
}

/// What every page shows: the words, the language, who is signed in and what they may open.
fn base(state: &AppState, signed: Option<&Signed>) -> serde_json::Value {
    use leadflow_engine::access::{Action, Resource, Want};
    let language = state.config.ui.language;
    let me = signed.map(|s| {
        let may = |r: Resource| s.caller.may(state, &Want::new(r, Action::Read)).is_ok();
        serde_json::json!({
            "token": s.caller.token,
            "role": s.caller.role,
            "employee": s.caller.employee.as_ref().map(|e| leadflow_engine::explain::employee(&state.config, e)),
            "csrf": s.csrf,
            "leads": may(Resource::Lead),
            "deals": may(Resource::Deal),
            "journal": may(Resource::Journal),
            "inbox": may(Resource::Inbox) && s.caller.employee.is_some(),
        })
    });
    serde_json::json!({
        "t": i18n::words(language),
        "lang": language.code(),
        "me": me,
        "tz": state.config.calendar.timezone.name(),
    })
}

/// Page `name` with `ctx` (merged over [`base`]), with `status`.
fn render(
    state: &AppState,
    status: StatusCode,
    name: &str,
    signed: Option<&Signed>,
    ctx: serde_json::Value,
) -> Response {
    let mut all = base(state, signed);
    if let (Some(a), serde_json::Value::Object(c)) = (all.as_object_mut(), ctx) {
        a.extend(c);
    }
    let html = templates()
        .get_template(name)
        .and_then(|t| t.render(minijinja::Value::from_serialize(&all)));
    match html {
        Ok(html) => (
            status,
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/html; charset=utf-8"),
            )],
            html,
        )
            .into_response(),
        Err(e) => {
            tracing::error!(template = name, error = %format!("{e:#}"), "a dashboard page failed to render");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                [(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("text/plain; charset=utf-8"),
                )],
                "the page could not be rendered; see the service's log",
            )
                .into_response()
        }
    }
}

/// An error as a page with its status and the service's message (the API's words).
fn error_page(state: &AppState, signed: Option<&Signed>, e: &ApiError) -> Response {
    render(
        state,
        e.status(),
        "error.html",
        signed,
        serde_json::json!({"status": e.status().as_u16(), "message": e.to_string()}),
    )
}

/// A page, or its error as a page.
fn finish(
    state: &AppState,
    signed: &Signed,
    name: &str,
    result: Result<serde_json::Value, ApiError>,
) -> Response {
    match result {
        Ok(ctx) => render(state, StatusCode::OK, name, Some(signed), ctx),
        Err(e) => error_page(state, Some(signed), &e),
    }
}
