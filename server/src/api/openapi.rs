//! `/api/v1/openapi.json`: the OpenAPI 3.1 document of the native API. The routes are listed
//! once here; a test holds the list to the router (every `.route(...)` of `api/mod.rs` is in
//! it, and nothing else).

use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

/// Every route: method, path (OpenAPI style), summary, whether it writes.
pub(crate) const ROUTES: &[(&str, &str, &str)] = &[
    ("post", "/leads", "Create a lead"),
    (
        "get",
        "/leads",
        "List leads (filters: pipeline, stage, responsible, team, source, q, created_since/until, updated_since/until; cursor pages)",
    ),
    ("get", "/leads/{id}", "A lead, with its ETag"),
    ("patch", "/leads/{id}", "Change a lead's fields (If-Match)"),
    ("post", "/leads/{id}/move", "Move a lead to a stage"),
    ("post", "/leads/{id}/assign", "Give a lead a responsible"),
    (
        "get",
        "/leads/{id}/timers",
        "A lead's pending deadlines, delayed robots and task due times",
    ),
    ("post", "/deals", "Create a deal"),
    ("get", "/deals", "List deals"),
    ("get", "/deals/{id}", "A deal, with its ETag"),
    ("patch", "/deals/{id}", "Change a deal's fields (If-Match)"),
    ("post", "/deals/{id}/move", "Move a deal to a stage"),
    ("post", "/deals/{id}/assign", "Give a deal a responsible"),
    ("get", "/deals/{id}/timers", "A deal's pending timers"),
    ("post", "/contacts", "Create a contact"),
    ("get", "/contacts", "List contacts"),
    ("get", "/contacts/{id}", "A contact"),
    ("patch", "/contacts/{id}", "Change a contact"),
    ("post", "/companies", "Create a company"),
    ("get", "/companies", "List companies"),
    ("get", "/companies/{id}", "A company"),
    ("patch", "/companies/{id}", "Change a company"),
    ("post", "/tasks", "Create a task"),
    ("get", "/tasks", "List tasks"),
    ("get", "/tasks/{id}", "A task"),
    ("post", "/tasks/{id}/complete", "Complete a task"),
    (
        "get",
        "/events",
        "Events in position order (after, stream, type, actor, since, until, limit)",
    ),
    (
        "get",
        "/events/stream",
        "Server-Sent Events tailing the log",
    ),
    ("get", "/journal", "The incident and escalation journal"),
    ("get", "/inbox", "An employee's notifications"),
    (
        "post",
        "/rules/check",
        "Load the rule folder and report every problem",
    ),
    (
        "post",
        "/rules/activate",
        "Reload the rule folder and put it in force",
    ),
    ("get", "/verify", "Check the hash chain and the projections"),
    (
        "get",
        "/webhooks",
        "Webhook endpoints, never their secrets (all=true: removed and disabled ones too)",
    ),
    (
        "post",
        "/webhooks",
        "Subscribe a URL to events (url, events, format, secret); a secret made here is shown once",
    ),
    ("delete", "/webhooks/{id}", "Remove a webhook endpoint"),
    (
        "get",
        "/outbox",
        "Messages to deliver, newest first (state, limit), and the counts by state",
    ),
    (
        "post",
        "/outbox/{id}/retry",
        "A new round of attempts for a failed message",
    ),
    (
        "post",
        "/outbox/{id}/drop",
        "Drop a pending or failed message: it is not delivered",
    ),
    ("get", "/openapi.json", "This document"),
];

fn error_schema() -> Value {
    json!({
        "type": "object",
        "required": ["error"],
        "properties": {"error": {
            "type": "object",
            "required": ["code", "message"],
            "properties": {
                "code": {"type": "string"},
                "message": {"type": "string"},
                "field": {"type": "string"},
                "current_version": {"type": "integer"}
            }
        }}
    })
}

/// The document.
pub(crate) fn spec() -> Value {
    let mut paths = Map::new();
    for (method, path, summary) in ROUTES {
        let mut op = json!({
            "summary": summary,
            "operationId": format!("{method}{}", path.replace(['/', '{', '}', '.'], "_")),
            "security": [{"bearer": []}],
            "responses": {
                "200": {"description": "OK", "content": {"application/json": {"schema": {"type": "object"}}}},
                "400": {"$ref": "#/components/responses/Error"},
                "401": {"$ref": "#/components/responses/Error"},
                "403": {"$ref": "#/components/responses/Error"},
                "404": {"$ref": "#/components/responses/Error"},
                "503": {"$ref": "#/components/responses/Error"}
            }
        });
        let mut params = Vec::new();
        if path.contains("{id}") {
            params.push(json!({"name": "id", "in": "path", "required": true, "schema": {"type": "integer", "minimum": 1}}));
        }
        if *method != "get" {
            params.push(json!({"name": "Idempotency-Key", "in": "header", "schema": {"type": "string", "maxLength": 255}}));
            op["responses"]["409"] = json!({"$ref": "#/components/responses/Error"});
            op["responses"]["413"] = json!({"$ref": "#/components/responses/Error"});
            op["responses"]["415"] = json!({"$ref": "#/components/responses/Error"});
            op["responses"]["422"] = json!({"$ref": "#/components/responses/Error"});
            if !path.starts_with("/rules") {
                op["requestBody"] =
                    json!({"content": {"application/json": {"schema": {"type": "object"}}}});
            }
            if *method == "patch"
                || path.ends_with("/move")
                || path.ends_with("/assign")
                || path.ends_with("/complete")
            {
                params.push(json!({"name": "If-Match", "in": "header", "schema": {"type": "string"}, "description": "the version the change is based on (the ETag)"}));
            }
            if *method == "post" && !path.contains('{') && !path.starts_with("/rules") {
                op["responses"]["201"] = json!({"description": "Created", "content": {"application/json": {"schema": {"type": "object"}}}});
            }
        }
        if !params.is_empty() {
            op["parameters"] = Value::Array(params);
        }
        let entry = paths
            .entry(format!("/api/v1{path}"))
            .or_insert_with(|| json!({}));
        entry[*method] = op;
    }
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "leadflow",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "The native JSON API of leadflow serve. Writes are answered after their commit; errors are {\"error\": {\"code\", \"message\", \"field\"?}}."
        },
        "paths": paths,
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {"Error": error_schema()},
            "responses": {"Error": {"description": "An error", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}}
        }
    })
}

/// `GET /api/v1/openapi.json`.
pub(crate) async fn document() -> Response {
    axum::Json(spec()).into_response()
}
