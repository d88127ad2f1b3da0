//! The native JSON API, `/api/v1`: every CLI command and query over HTTP, with the same
//! commands (`engine::verb`), the same `decide` and the same messages.
//!
//! Writes go through the writer (answered after their commit) with optimistic concurrency
//! (`If-Match: <version>`) and `Idempotency-Key`; reads use read-only connections and give an
//! `ETag` (the entity's version).

pub(crate) mod entities;
pub(crate) mod extract;
pub(crate) mod logs;
pub(crate) mod openapi;
pub(crate) mod outbox;

use crate::error::ApiError;
use crate::state::AppState;
use axum::Router;
use axum::routing::{delete, get, post};

/// The `/api/v1` routes, as (path, methods) for the OpenAPI check, and the router.
pub(crate) fn routes() -> Router<AppState> {
    use entities as e;
    Router::new()
        .route("/leads", post(e::create_lead).get(e::list_leads))
        .route("/leads/{id}", get(e::get_lead).patch(e::update_lead))
        .route("/leads/{id}/move", post(e::move_lead))
        .route("/leads/{id}/assign", post(e::assign_lead))
        .route("/leads/{id}/timers", get(logs::lead_timers))
        .route("/deals", post(e::create_deal).get(e::list_deals))
        .route("/deals/{id}", get(e::get_deal).patch(e::update_deal))
        .route("/deals/{id}/move", post(e::move_deal))
        .route("/deals/{id}/assign", post(e::assign_deal))
        .route("/deals/{id}/timers", get(logs::deal_timers))
        .route("/contacts", post(e::create_contact).get(e::list_contacts))
        .route(
            "/contacts/{id}",
            get(e::get_contact).patch(e::update_contact),
        )
        .route("/companies", post(e::create_company).get(e::list_companies))
        .route(
            "/companies/{id}",
            get(e::get_company).patch(e::update_company),
        )
        .route("/tasks", post(e::create_task).get(e::list_tasks))
        .route("/tasks/{id}", get(e::get_task))
        .route("/tasks/{id}/complete", post(e::complete_task))
        .route("/events", get(logs::events))
        .route("/events/stream", get(logs::event_stream))
        .route("/journal", get(logs::journal))
        .route("/inbox", get(logs::inbox))
        .route("/rules/check", post(logs::rules_check))
        .route("/rules/activate", post(logs::rules_activate))
        .route("/verify", get(logs::verify))
        .route(
            "/webhooks",
            get(outbox::list_webhooks).post(outbox::add_webhook),
        )
        .route("/webhooks/{id}", delete(outbox::remove_webhook))
        .route("/outbox", get(outbox::list_outbox))
        .route("/outbox/{id}/retry", post(outbox::retry_message))
        .route("/outbox/{id}/drop", post(outbox::drop_message))
        .route("/openapi.json", get(openapi::document))
        .fallback(not_found)
}

async fn not_found() -> ApiError {
    ApiError::NotFound("no such route; see /api/v1/openapi.json".into())
}
