//! What a message's body says: leadflow's native JSON, or (the boundary for the Bitrix24
//! facade) the form-encoded shape of Bitrix24's outgoing events.

use crate::bitrix::{self, Auth, Origin};
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

/// The body of an endpoint bound with `event.bind` (or added with `--format bitrix24`):
/// Bitrix24's outgoing event, form-encoded — the Bitrix24 event the stored event raises, the
/// endpoint's id as `event_handler_id`, the record's id, the event's time and the `auth` block
/// with the endpoint's `application_token`. `None` for an event that raises no Bitrix24 event
/// (the fan-out does not take those for such an endpoint).
pub fn bitrix_body(event: &RecordedEvent, endpoint: &Endpoint, origin: &Origin) -> Option<Body> {
    let name = bitrix::bitrix_event(&event.event_type)?;
    let auth = Auth::of(origin, &endpoint.secret);
    let body = bitrix::payload(&bitrix::Event {
        name,
        handler_id: endpoint.id,
        entity_id: event.stream.id,
        // The log holds RFC 3339 times (checked when written and by `verify`).
        ts: chrono::DateTime::parse_from_rfc3339(&event.occurred_at).map_or(0, |t| t.timestamp()),
        auth: &auth,
    });
    Some(Body {
        content_type: "application/x-www-form-urlencoded",
        bytes: body.into_bytes(),
    })
}
