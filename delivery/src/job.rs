//! The worker's writes, as plain data: each [`Job`] runs in one write transaction
//! ([`Job::run`]), checking under the write lock that what it records is still the next thing
//! to record (another process may have done it, or an operator dropped the message).

use chrono::{DateTime, Utc};
use leadflow_engine::event::DeliveryQueued;
use leadflow_engine::{Actor, EntityKind, Event, EventMeta, StreamId};
use leadflow_store::{Error, Tx};

/// One write of the worker.
#[derive(Debug, Clone, PartialEq)]
pub enum Job {
    /// Takes an endpoint's events in (`from`, `to`] that it subscribed to (`events`: position,
    /// stream, type) as messages, and moves its cursor to `to`.
    Queue {
        endpoint: i64,
        from: i64,
        to: i64,
        events: Vec<(i64, StreamId, String)>,
        at: DateTime<Utc>,
    },
    /// Records attempts' outcomes.
    Outcomes(Vec<Outcome>),
}

/// One attempt's outcome: the events to append to the message's stream, if the message is
/// still pending after `attempts` attempts.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    /// The message id.
    pub message: i64,
    /// The stream of its delivery events.
    pub stream: StreamId,
    /// The attempts made before this one.
    pub attempts: u32,
    /// What to append.
    pub events: Vec<Event>,
    /// When the attempt ended.
    pub at: DateTime<Utc>,
}

/// The name of an endpoint's cursor (in the table of the rules' cursor).
pub(crate) fn cursor_name(endpoint: i64) -> String {
    format!("delivery:endpoint-{endpoint}")
}

fn meta(at: DateTime<Utc>) -> EventMeta {
    // No causation: the rules' cursor takes a cause past it for proof that the rules got
    // there (robots' reactions name their trigger), which a delivery event is not.
    EventMeta::root(at, Actor::System)
}

impl Job {
    /// Runs the job in `tx`; how many events it appended.
    pub fn run(self, tx: &mut Tx<'_>) -> Result<usize, Error> {
        match self {
            Job::Queue {
                endpoint,
                from,
                to,
                events,
                at,
            } => {
                let Some(ep) = tx.endpoint(endpoint)? else {
                    return Ok(0);
                };
                if ep.state != "active" || tx.endpoint_start(&ep)? != from {
                    // Removed meanwhile, or another process took these events.
                    return Ok(0);
                }
                let stream = StreamId::new(EntityKind::Endpoint, endpoint);
                let queued: Vec<Event> = events
                    .into_iter()
                    .map(|(event, stream, event_type)| {
                        Event::DeliveryQueued(DeliveryQueued {
                            event,
                            stream,
                            event_type,
                        })
                    })
                    .collect();
                if !queued.is_empty() {
                    let version = tx.version(stream)?;
                    tx.append(stream, version, &queued, &meta(at))?;
                }
                tx.set_cursor(&cursor_name(endpoint), to)?;
                Ok(queued.len())
            }
            Job::Outcomes(outcomes) => {
                let mut n = 0;
                for o in outcomes {
                    let current = tx.delivery(o.message)?;
                    let still =
                        current.is_some_and(|d| d.state == "pending" && d.attempts == o.attempts);
                    if !still || o.events.is_empty() {
                        continue;
                    }
                    let version = tx.version(o.stream)?;
                    tx.append(o.stream, version, &o.events, &meta(o.at))?;
                    n += o.events.len();
                }
                Ok(n)
            }
        }
    }
}
