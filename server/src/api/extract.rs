//! What handlers take from a request, with the service's own errors (never axum's plain-text
//! rejections): the JSON body, `If-Match`, `Idempotency-Key`, the caller.

use crate::error::ApiError;
use crate::writer::Idempotency;
use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::{HeaderMap, Method, header, request::Parts};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

/// A JSON object body (`Content-Type: application/json`), with what identifies the request
/// for `Idempotency-Key`.
pub(crate) struct JsonBody {
    /// The object.
    pub map: Map<String, Value>,
    /// SHA-256 of the method, path and body.
    pub hash: String,
}

impl<S: Send + Sync> FromRequest<S> for JsonBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let method = req.method().clone();
        let path = req.uri().path().to_owned();
        let json = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|v| {
                v.split(';')
                    .next()
                    .unwrap_or("")
                    .trim()
                    .to_ascii_lowercase()
            });
        let bytes = Bytes::from_request(req, state).await.map_err(|e| {
            if e.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::TooLarge(
                    "the body is larger than the server accepts ([server] body_limit)".into(),
                )
            } else {
                ApiError::bad_request("unreadable_body", format!("the body cannot be read: {e}"))
            }
        })?;
        let map = if bytes.is_empty() && json.is_none() {
            Map::new()
        } else {
            match json.as_deref() {
                Some("application/json") => {}
                Some(other) => {
                    return Err(ApiError::UnsupportedMediaType(format!(
                        "this route takes application/json, not {other}"
                    )));
                }
                None => {
                    return Err(ApiError::UnsupportedMediaType(
                        "this route takes a JSON body: send Content-Type: application/json".into(),
                    ));
                }
            }
            parse_object(&bytes)?
        };
        Ok(JsonBody {
            map,
            hash: request_hash(&method, &path, &bytes),
        })
    }
}

/// A JSON object from bytes, or a 400 that says where it breaks.
pub(crate) fn parse_object(bytes: &[u8]) -> Result<Map<String, Value>, ApiError> {
    let text = std::str::from_utf8(bytes).map_err(|e| {
        ApiError::bad_request(
            "invalid_utf8",
            format!(
                "the body is not UTF-8 (byte {}): send JSON in UTF-8",
                e.valid_up_to()
            ),
        )
    })?;
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(other) => Err(ApiError::bad_request(
            "not_an_object",
            format!("the body must be a JSON object, not {}", kind_of(&other)),
        )),
        Err(e) => Err(ApiError::bad_request(
            "malformed_json",
            format!("the body is not valid JSON: {e}"),
        )),
    }
}

/// "a string", "an array"… for messages.
pub(crate) fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// SHA-256 (hex) of the method, path and body.
pub(crate) fn request_hash(method: &Method, path: &str, body: &[u8]) -> String {
    let mut h = Sha256::new();
    h.update(method.as_str().as_bytes());
    h.update([0]);
    h.update(path.as_bytes());
    h.update([0]);
    h.update(body);
    leadflow_engine::hex(&h.finalize())
}

/// The version `If-Match` names: `3`, `"3"` or `W/"3"`; `*` or no header is `None`.
pub(crate) struct IfMatch(pub Option<i64>);

impl<S: Send + Sync> FromRequestParts<S> for IfMatch {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        let Some(v) = parts.headers.get(header::IF_MATCH) else {
            return Ok(IfMatch(None));
        };
        let text = v.to_str().unwrap_or("").trim();
        if text == "*" {
            return Ok(IfMatch(None));
        }
        let bare = text.trim_start_matches("W/").trim_matches('"');
        bare.parse::<i64>()
            .ok()
            .filter(|n| *n >= 0)
            .map(|n| IfMatch(Some(n)))
            .ok_or_else(|| {
                ApiError::bad_field(
                    "If-Match",
                    format!("If-Match must be the entity's version as its ETag gives it (\"3\"), not {text:?}"),
                )
            })
    }
}

/// The client's `Idempotency-Key`, if any (at most 255 visible ASCII characters).
pub(crate) struct IdempotencyKey(pub Option<String>);

impl<S: Send + Sync> FromRequestParts<S> for IdempotencyKey {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        key_of(&parts.headers).map(IdempotencyKey)
    }
}

/// The `Idempotency-Key` header, checked.
pub(crate) fn key_of(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(v) = headers.get("idempotency-key") else {
        return Ok(None);
    };
    match v.to_str() {
        Ok(s) if !s.is_empty() && s.len() <= 255 && s.chars().all(|c| c.is_ascii_graphic()) => {
            Ok(Some(s.to_owned()))
        }
        _ => Err(ApiError::bad_field(
            "Idempotency-Key",
            "Idempotency-Key must be 1 to 255 visible ASCII characters (a UUID, say)",
        )),
    }
}

impl IdempotencyKey {
    /// The writer's key for this caller and request.
    pub(crate) fn with(self, scope: &str, hash: &str) -> Option<Idempotency> {
        self.0.map(|key| Idempotency {
            scope: scope.to_owned(),
            key,
            request_hash: hash.to_owned(),
        })
    }
}
