//! What a message's body says: leadflow's native JSON, or (the boundary for the Bitrix24
//! facade) the form-encoded shape of Bitrix24's outgoing events.

use leadflow_store::RecordedEvent;
use leadflow_store::query::Endpoint;
use serde_json::{Value, json};

/// A body and its content type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Body {
    /// `application/json`, `application/x-www-form-urlencoded`.
    pub content_type: &'static str,
    /// The bytes sent (and signed).
    pub bytes: Vec<u8>,
}

/// The native body: the event with its position, stream, version, type, payload, time and
/// actor, and the message's id.
pub fn native_body(event: &RecordedEvent, webhook_id: &str) -> Body {
    let payload = serde_json::from_str::<Value>(&event.payload)
        .unwrap_or_else(|_| Value::String(event.payload.clone()));
    let body = json!({
        "id": webhook_id,
        "type": event.event_type,
        "position": event.position,
        "stream": event.stream.to_string(),
        "version": event.version,
        "occurred_at": event.occurred_at,
        "actor": event.actor,
        "payload": payload,
    });
    Body {
        content_type: "application/json",
        bytes: body.to_string().into_bytes(),
    }
}

/// The body of an endpoint added with `--format bitrix24`: Bitrix24's outgoing event
/// (`ONCRMLEADADD`…, form-encoded). The Bitrix24 facade (server/src/bitrix/events.rs) writes
/// it; until that is merged, the native body is sent.
pub fn bitrix_body(event: &RecordedEvent, _endpoint: &Endpoint, webhook_id: &str) -> Body {
    native_body(event, webhook_id)
}
