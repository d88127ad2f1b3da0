//! What ops do to endpoints and messages, decided once for the CLI (`webhook add`, `outbox
//! retry|drop`) and the service (`/api/v1/webhooks`, `/api/v1/outbox`): the command that adds
//! an endpoint (its secret made when none is given), a retry or drop of a message (refused as
//! its state says) appended in the caller's transaction, and the JSON both show.

use leadflow_engine::command::NewEndpoint;
use leadflow_engine::event::{DeliveryDropped, DeliveryRetried, EndpointAdded};
use leadflow_engine::{Command, Event, EventMeta, StreamId};
use leadflow_store::query::{Delivery, Endpoint};
use leadflow_store::{Tx, fmt_time};
use serde_json::{Value, json};

/// An endpoint to add, as the CLI's flags or the API's body give it.
#[derive(Debug, Clone, Default)]
pub struct NewHook {
    /// Where to POST.
    pub url: String,
    /// Event types or patterns (`lead.*`), checked by `decide`.
    pub events: Vec<String>,
    /// `native` or `bitrix24` (`None`: native).
    pub format: Option<String>,
    /// The signing secret; one is made when `None`.
    pub secret: Option<String>,
}

/// `lead.*, deal.moved` as patterns (empty parts left out).
pub fn parse_events(text: &str) -> Vec<String> {
    text.split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(str::to_owned)
        .collect()
}

/// The `AddEndpoint` command of `hook`, and the secret when it was made here (to be shown
/// once); an error when no secret could be made.
pub fn add_command(hook: NewHook) -> Result<(Command, Option<String>), getrandom::Error> {
    let (secret, made) = match hook.secret {
        Some(s) => (s, None),
        None => {
            let s = crate::new_secret()?;
            (s.clone(), Some(s))
        }
    };
    let cmd = Command::AddEndpoint(NewEndpoint {
        url: hook.url,
        events: hook.events,
        format: hook.format,
        secret,
    });
    Ok((cmd, made))
}

/// An added endpoint as JSON (`webhook add --json`, `POST /webhooks`): the secret only when
/// it was made (`made`), never one the caller gave.
pub fn added_json(
    stream: StreamId,
    position: i64,
    added: &EndpointAdded,
    made: Option<&str>,
) -> Value {
    json!({
        "endpoint": stream.to_string(),
        "id": stream.id,
        "position": position,
        "url": added.url,
        "events": added.events,
        "format": added.format.as_str(),
        "secret": made,
    })
}

/// An endpoint as JSON, without its secret (`webhook list --json`, `GET /webhooks`).
pub fn endpoint_json(e: &Endpoint) -> Value {
    json!({
        "endpoint": e.stream().to_string(),
        "id": e.id,
        "url": e.url,
        "events": e.events,
        "format": e.format,
        "state": e.state,
        "reason": e.reason,
        "added_at": fmt_time(e.added_at),
    })
}

/// `3` or `endpoint-3` as an endpoint id.
pub fn endpoint_id(text: &str) -> Option<i64> {
    text.strip_prefix("endpoint-")
        .unwrap_or(text)
        .parse::<i64>()
        .ok()
        .filter(|id| *id > 0)
}

/// A message as JSON (`outbox list --json`, `GET /outbox`).
pub fn message_json(d: &Delivery) -> Value {
    json!({
        "id": d.id,
        "webhook_id": d.webhook_id,
        "state": d.state,
        "channel": d.channel,
        "endpoint": d.endpoint,
        "target": d.target,
        "stream": d.stream.to_string(),
        "event": d.event,
        "type": d.event_type,
        "attempts": d.attempts,
        "next_at": d.next_at.map(fmt_time),
        "queued_at": fmt_time(d.queued_at),
        "done_at": d.done_at.map(fmt_time),
        "last_status": d.last_status,
        "last_error": d.last_error,
    })
}

/// What ops do to a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// A new round of attempts for a failed message (`delivery.retried`).
    Retry,
    /// No more attempts for a pending or failed one (`delivery.dropped`).
    Drop,
}

/// Why a change was not made.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    /// There is no such message.
    #[error("{0}")]
    Unknown(String),
    /// The message's state (or its endpoint's) does not allow it.
    #[error("{0}")]
    Refused(String),
    /// The database failed.
    #[error(transparent)]
    Store(#[from] leadflow_store::Error),
}

/// Retries or drops message `id` in `tx`: the event appended to the message's stream, and its
/// position; nothing is appended when it is refused.
pub fn change(
    tx: &mut Tx<'_>,
    id: i64,
    change: Change,
    meta: &EventMeta,
) -> Result<(StreamId, i64), Refusal> {
    let Some(d) = tx.delivery(id)? else {
        return Err(Refusal::Unknown(format!(
            "the outbox has no message {id}; `leadflow outbox list` shows them in the ID column"
        )));
    };
    let event = match (change, d.state.as_str()) {
        (Change::Retry, "failed") => Event::DeliveryRetried(DeliveryRetried { message: id }),
        (Change::Retry, state) => {
            return Err(Refusal::Refused(format!(
                "message {id} is {state}: only a failed message can be retried"
            )));
        }
        (Change::Drop, "pending" | "failed") => {
            Event::DeliveryDropped(DeliveryDropped { message: id })
        }
        (Change::Drop, state) => {
            return Err(Refusal::Refused(format!(
                "message {id} is {state}: only a pending or failed message can be dropped"
            )));
        }
    };
    if let (Change::Retry, Some(ep)) = (change, d.endpoint)
        && tx.endpoint(ep)?.is_none_or(|e| e.state != "active")
    {
        return Err(Refusal::Refused(format!(
            "message {id} is for endpoint-{ep}, which is no longer active: add the endpoint again"
        )));
    }
    let version = tx.version(d.stream)?;
    let a = tx.append(d.stream, version, &[event], meta)?;
    Ok((d.stream, a.last_position))
}

#[cfg(test)]
mod tests {
    //! The shared parsing: patterns from a comma list, endpoint ids, and a secret made only
    //! when none is given (and shown only then).
    use super::*;
    use leadflow_engine::event::EndpointFormat;

    #[test]
    fn events_split_on_commas_and_empty_parts_are_left_out() {
        assert_eq!(
            parse_events(" lead.*, ,deal.created,"),
            ["lead.*", "deal.created"]
        );
        assert!(parse_events(" , ").is_empty());
    }

    #[test]
    fn an_endpoint_id_is_a_positive_number_with_or_without_its_prefix() {
        assert_eq!(endpoint_id("3"), Some(3));
        assert_eq!(endpoint_id("endpoint-3"), Some(3));
        for bad in ["0", "-1", "endpoint-", "lead-3", "x"] {
            assert_eq!(endpoint_id(bad), None, "{bad}");
        }
    }

    #[test]
    fn a_secret_is_made_only_when_none_is_given_and_shown_only_then() {
        let hook = |secret: Option<&str>| NewHook {
            url: "https://hooks.example/x".into(),
            events: vec!["lead.*".into()],
            format: None,
            secret: secret.map(Into::into),
        };
        let (cmd, made) = add_command(hook(Some("whsec_given"))).unwrap();
        assert_eq!(made, None);
        let Command::AddEndpoint(e) = cmd else {
            panic!("{cmd:?}")
        };
        assert_eq!(e.secret, "whsec_given");
        let (cmd, made) = add_command(hook(None)).unwrap();
        let Command::AddEndpoint(e) = cmd else {
            panic!("{cmd:?}")
        };
        assert!(e.secret.starts_with("whsec_"), "{}", e.secret);
        assert_eq!(made.as_deref(), Some(e.secret.as_str()));
        let added = EndpointAdded {
            url: e.url,
            events: e.events,
            format: EndpointFormat::Native,
            secret: e.secret.clone(),
        };
        let stream = crate::endpoint_stream(1);
        assert_eq!(added_json(stream, 5, &added, None)["secret"], Value::Null);
        assert_eq!(
            added_json(stream, 5, &added, made.as_deref())["secret"],
            e.secret
        );
    }
}
