//! The outbox, delivered: the `webhook` robot's and `notify`'s webhooks and e-mails (the
//! outbox rows of `notification.queued`) and the webhook endpoints' event subscriptions.
//!
//! No I/O inside a write transaction (decision 0006). One pass of [`Deliverer::run_once`]:
//! 1. **Fan-out.** For each active endpoint, the events after its cursor whose type matches
//!    its patterns are taken as messages: `delivery.queued` in the endpoint's stream, and the
//!    cursor moved, in one write ([`Job::Queue`]).
//! 2. **Due.** The pending messages whose next attempt is due and that wait for no earlier
//!    pending message of their lane (the same target and the same stream of the event) are
//!    read through read-only queries.
//! 3. **Send.** Each is POSTed (Standard Webhooks headers, signed; a timeout) or mailed
//!    (SMTP through `lettre`), concurrently, outside any transaction.
//! 4. **Outcomes.** Every attempt's outcome is an event appended in one write
//!    ([`Job::Outcomes`]): `delivery.succeeded`, `delivery.attempted` (with the next attempt's
//!    time: exponential backoff with jitter), or `delivery.failed` and an `incident.recorded`
//!    past the bound on attempts or age; a 410 from an endpoint disables it
//!    (`endpoint.disabled`).
//!
//! A crash between a POST and its outcome leaves the message pending: the next pass sends it
//! again with the same `webhook-id` (at least once). The writes are [`Job`]s, plain data run
//! by [`Job::run`] on a store transaction, so the service's writer thread can run them as one
//! job each ([`DeliveryDb`]).

pub mod bitrix;
mod body;
mod job;
pub mod manage;
mod send;
mod sign;

pub use body::{Body, bitrix_body, native_body};
pub use job::{Job, Outcome};
pub use sign::{new_secret, signature, signing_key};

use chrono::{DateTime, Utc};
use leadflow_engine::config::Delivery;
use leadflow_engine::event::{self, DeliveryAttempted, DeliveryFailed, DeliverySucceeded};
use leadflow_engine::event::{EndpointDisabled, IncidentRecorded};
use leadflow_engine::{Clock, Config, EntityKind, Event, StreamId};
use leadflow_store::query::{self, Delivery as Message, Endpoint};
use leadflow_store::{LogFilter, RecordedEvent, Store};
use std::collections::HashMap;
use std::future::Future;
use std::time::Duration;

/// Why a pass could not run.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Reading or writing the database failed.
    #[error(transparent)]
    Store(#[from] leadflow_store::Error),
    /// The `[delivery.smtp]` relay cannot be used as configured.
    #[error("[delivery.smtp]: {0}")]
    Smtp(String),
    /// The HTTP client could not be built.
    #[error("the HTTP client: {0}")]
    Client(String),
}

/// The database as the worker uses it: reads through a (read-only is enough) [`Store`], and
/// each write a [`Job`] run in one write transaction. The CLI's `run` implements it on its
/// [`Store`]; the service sends the job to its writer thread.
pub trait DeliveryDb {
    /// The store the worker reads through.
    fn reader(&self) -> &Store;
    /// Runs `job` in one write transaction and commits it; how many events it appended.
    fn write(&mut self, job: Job) -> impl Future<Output = Result<usize, Error>>;
}

/// A [`Store`] opened for writing is a [`DeliveryDb`] on its own, stamping `recorded_at` from
/// `clock`.
pub struct Direct<'a> {
    /// The store read and written.
    pub store: &'a mut Store,
    /// The wall clock, for `recorded_at`.
    pub clock: &'a dyn Clock,
}

impl DeliveryDb for Direct<'_> {
    fn reader(&self) -> &Store {
        self.store
    }

    fn write(&mut self, job: Job) -> impl Future<Output = Result<usize, Error>> {
        let done = self
            .store
            .write_with(self.clock, |tx| job.run(tx))
            .map_err(Error::from);
        std::future::ready(done)
    }
}

/// What one pass did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// Messages taken for endpoints (`delivery.queued`).
    pub queued: usize,
    /// Attempts made.
    pub attempts: usize,
    /// Messages delivered.
    pub delivered: usize,
    /// Attempts that failed and will be retried.
    pub retried: usize,
    /// Messages given up on.
    pub failed: usize,
    /// Whether there is more to do at once (a full page was handled).
    pub more: bool,
}

impl Report {
    /// Whether the pass did anything.
    pub fn is_empty(&self) -> bool {
        self.queued + self.attempts == 0
    }
}

/// The bounds and backoff of `[delivery]`.
#[derive(Debug, Clone)]
struct Policy {
    max_attempts: u32,
    max_age: chrono::Duration,
    base: Duration,
    max: Duration,
}

impl Policy {
    /// The wait after failed attempt `attempt` (1, 2…): exponential from the base, doubling,
    /// at most the max, with jitter (backon's).
    fn backoff(&self, attempt: u32) -> Duration {
        use backon::BackoffBuilder;
        let mut delays = backon::ExponentialBuilder::default()
            .with_min_delay(self.base)
            .with_max_delay(self.max)
            .with_factor(2.0)
            .with_jitter()
            .with_max_times(attempt as usize)
            .build();
        delays
            .nth(attempt.saturating_sub(1) as usize)
            .unwrap_or(self.max)
    }
}

/// Events read per endpoint per pass, and messages attempted per pass.
const FAN_OUT_PAGE: usize = 512;
const SEND_PAGE: usize = 64;

/// Delivers the outbox and the subscriptions. Cheap to keep for the life of the process (it
/// holds the HTTP client's connection pool and the SMTP transport).
pub struct Deliverer {
    policy: Policy,
    rule_secret: Option<String>,
    emails: HashMap<String, String>,
    sender: send::Sender,
    origin: bitrix::Origin,
}

impl Deliverer {
    /// A deliverer for `config`'s `[delivery]` section (the employees' e-mail addresses are
    /// taken for `notify` e-mails queued without one).
    pub fn new(config: &Config) -> Result<Deliverer, Error> {
        let d: &Delivery = &config.delivery;
        Ok(Deliverer {
            policy: Policy {
                max_attempts: d.max_attempts,
                max_age: chrono::Duration::from_std(d.max_age).unwrap_or(chrono::Duration::MAX),
                base: d.backoff_base,
                max: d.backoff_max,
            },
            rule_secret: d.secret.clone(),
            emails: config
                .employees
                .values()
                .filter_map(|e| Some((e.id.to_string(), e.email.clone()?)))
                .collect(),
            sender: send::Sender::new(d)?,
            origin: bitrix::Origin::new(&config.server.listen),
        })
    }

    /// The address Bitrix24 event handlers are told to call back (`auth[domain]`): the one
    /// the service listens on (by default `[server] listen`).
    pub fn with_origin(mut self, domain: &str) -> Deliverer {
        self.origin = bitrix::Origin::new(domain);
        self
    }

    /// Whether there is anything to deliver, now or later: an active endpoint, or a pending
    /// message (for `run`, which has nothing else to do without rules).
    pub fn has_work(db: &Store) -> Result<bool, Error> {
        Ok(!query::endpoints(db, false)?.is_empty() || query::next_delivery_at(db)?.is_some())
    }

    /// When the next pending message is due (`None`: none is pending).
    pub fn next_due(db: &Store) -> Result<Option<DateTime<Utc>>, Error> {
        Ok(query::next_delivery_at(db)?)
    }

    /// One pass: fan-out, then one page of due messages sent and their outcomes appended.
    /// `clock` gives the time of the attempts (the wall clock in `run` and `serve`).
    pub async fn run_once(
        &self,
        db: &mut impl DeliveryDb,
        clock: &dyn Clock,
    ) -> Result<Report, Error> {
        let mut report = Report::default();
        self.fan_out(db, clock, &mut report).await?;
        let now = clock.now();
        let due = query::due_deliveries(db.reader(), now, SEND_PAGE)?;
        report.more |= due.len() == SEND_PAGE;
        if due.is_empty() {
            return Ok(report);
        }
        let mut sends = Vec::new();
        for m in &due {
            sends.push(self.prepare(db.reader(), m)?);
        }
        let results =
            futures_util::future::join_all(sends.iter().map(|s| self.sender.send(s, clock.now())))
                .await;
        let at = clock.now();
        let mut outcomes = Vec::new();
        for (m, sent) in due.iter().zip(results) {
            report.attempts += 1;
            let events = self.outcome(m, &sent, at);
            match events.first() {
                Some(Event::DeliverySucceeded(_)) => report.delivered += 1,
                Some(Event::DeliveryAttempted(_)) => report.retried += 1,
                _ => report.failed += 1,
            }
            match &sent {
                send::Sent::Delivered { .. } => {
                    tracing::debug!(message = m.id, webhook_id = %m.webhook_id, "delivered")
                }
                other => {
                    tracing::info!(message = m.id, webhook_id = %m.webhook_id, attempt = m.attempts + 1, outcome = %other, "delivery attempt failed")
                }
            }
            outcomes.push(Outcome {
                message: m.id,
                stream: m.stream,
                attempts: m.attempts,
                events,
                at,
            });
        }
        db.write(Job::Outcomes(outcomes)).await?;
        Ok(report)
    }

    /// Delivers until `shutdown` resolves: passes back to back while there is more, else a
    /// pause until the next attempt is due, at most `poll` (to see new events and messages
    /// others appended). A failed pass (a locked database) is logged and tried again after
    /// `poll`; a broken log ends it with its error. For a service whose writes go through
    /// `db` (an attempt in flight when `shutdown` resolves has no outcome: it is sent again,
    /// with the same `webhook-id`).
    pub async fn run(
        &self,
        db: &mut impl DeliveryDb,
        clock: &dyn Clock,
        poll: Duration,
        shutdown: impl Future<Output = ()>,
    ) -> Result<(), Error> {
        tokio::pin!(shutdown);
        loop {
            let pass = tokio::select! {
                r = self.run_once(db, clock) => r,
                () = &mut shutdown => return Ok(()),
            };
            let pause = match pass {
                Ok(r) if r.more => Duration::ZERO,
                Ok(_) => match Deliverer::next_due(db.reader()) {
                    Ok(Some(t)) => (t - clock.now())
                        .to_std()
                        .unwrap_or(Duration::ZERO)
                        .min(poll),
                    _ => poll,
                },
                Err(Error::Store(e @ leadflow_store::Error::Tampered { .. })) => {
                    return Err(Error::Store(e));
                }
                Err(e) => {
                    tracing::error!("delivery: {e}; trying again");
                    poll
                }
            };
            tokio::select! {
                () = tokio::time::sleep(pause) => {}
                () = &mut shutdown => return Ok(()),
            }
        }
    }

    /// Takes the new events of every active endpoint as its messages.
    async fn fan_out(
        &self,
        db: &mut impl DeliveryDb,
        clock: &dyn Clock,
        report: &mut Report,
    ) -> Result<(), Error> {
        for ep in query::endpoints(db.reader(), false)? {
            let from = query::endpoint_start(db.reader(), &ep)?;
            let page = db
                .reader()
                .read_log(&LogFilter::default(), from, FAN_OUT_PAGE)?;
            let Some(last) = page.last().map(|e| e.position) else {
                continue;
            };
            report.more |= page.len() == FAN_OUT_PAGE;
            let events: Vec<_> = page
                .iter()
                .filter(|e| subscribed(&ep, e))
                .map(|e| (e.position, e.stream, e.event_type.clone()))
                .collect();
            report.queued += events.len();
            db.write(Job::Queue {
                endpoint: ep.id,
                from,
                to: last,
                events,
                at: clock.now(),
            })
            .await?;
        }
        Ok(())
    }

    /// What to send for a message.
    fn prepare(&self, db: &Store, m: &Message) -> Result<send::Request, Error> {
        let event = event_at(db, m.event)?;
        let endpoint = match m.endpoint {
            Some(id) => query::endpoint(db, id)?,
            None => None,
        };
        let body = |event: &RecordedEvent| match &endpoint {
            Some(ep) if ep.format == "bitrix24" => {
                bitrix_body(event, ep, &self.origin).ok_or_else(|| {
                    format!(
                        "{} raises no Bitrix24 event for endpoint-{}",
                        event.event_type, ep.id
                    )
                })
            }
            _ => Ok(native_body(event, &m.webhook_id)),
        };
        Ok(match (m.channel.as_str(), event) {
            (_, None) => send::Request::Broken(format!(
                "the event at position {} is not in the log",
                m.event
            )),
            ("email", Some(event)) => {
                let Ok(Event::NotificationQueued(n)) = event.decode() else {
                    return Ok(send::Request::Broken(format!(
                        "position {} is not a notification",
                        m.event
                    )));
                };
                let to = m.target.clone().filter(|t| !t.is_empty()).or_else(|| {
                    n.to.as_ref()
                        .and_then(|e| self.emails.get(e.as_str()).cloned())
                });
                match to {
                    Some(to) => send::Request::Mail {
                        to,
                        message_id: m.webhook_id.clone(),
                        text: n.text,
                        stream: event.stream,
                    },
                    None => send::Request::Broken("the e-mail has no address".into()),
                }
            }
            ("endpoint", Some(event)) => match (&endpoint, body(&event)) {
                (Some(ep), Ok(body)) => send::Request::Post {
                    url: ep.url.clone(),
                    webhook_id: m.webhook_id.clone(),
                    secret: Some(ep.secret.clone()),
                    body,
                },
                (Some(_), Err(why)) => send::Request::Broken(why),
                (None, _) => send::Request::Broken(format!("no endpoint {:?}", m.endpoint)),
            },
            (_, Some(event)) => match m.target.clone().filter(|t| !t.is_empty()) {
                Some(url) => send::Request::Post {
                    url,
                    webhook_id: m.webhook_id.clone(),
                    secret: self.rule_secret.clone(),
                    body: native_body(&event, &m.webhook_id),
                },
                None => send::Request::Broken("the webhook has no URL".into()),
            },
        })
    }

    /// The events that record an attempt's outcome.
    fn outcome(&self, m: &Message, sent: &send::Sent, at: DateTime<Utc>) -> Vec<Event> {
        let attempt = m.attempts + 1;
        let to = match m.endpoint {
            Some(id) => format!("endpoint-{id}"),
            None => m.target.clone().unwrap_or_default(),
        };
        let failed = |reason: String| {
            vec![
                Event::DeliveryFailed(DeliveryFailed {
                    message: m.id,
                    attempts: attempt,
                    reason: reason.clone(),
                }),
                Event::IncidentRecorded(IncidentRecorded {
                    kind: "delivery_failed".into(),
                    employee: None,
                    rule: None,
                    text: format!(
                        "message {} ({}, {}) to {to} was not delivered: {reason}",
                        m.id, m.webhook_id, m.event_type
                    ),
                }),
            ]
        };
        match sent {
            send::Sent::Delivered { status } => vec![Event::DeliverySucceeded(DeliverySucceeded {
                message: m.id,
                attempt,
                status: *status,
            })],
            send::Sent::Gone => {
                let reason = "the receiver answered 410 Gone".to_owned();
                let mut events = failed(reason.clone());
                if m.endpoint.is_some() && m.stream.kind == EntityKind::Endpoint {
                    events.insert(
                        1,
                        Event::EndpointDisabled(EndpointDisabled {
                            reason: format!("{reason} to message {}", m.webhook_id),
                        }),
                    );
                }
                events
            }
            send::Sent::Failed { status, error } => {
                let deadline = m
                    .round_at
                    .checked_add_signed(self.policy.max_age)
                    .unwrap_or(DateTime::<Utc>::MAX_UTC);
                if attempt >= self.policy.max_attempts {
                    return failed(format!("{error}; gave up after {attempt} attempts"));
                }
                if at >= deadline {
                    return failed(format!(
                        "{error}; gave up after {attempt} attempts, past the age bound"
                    ));
                }
                let wait = chrono::Duration::from_std(self.policy.backoff(attempt))
                    .unwrap_or(chrono::Duration::MAX);
                let next_at = at
                    .checked_add_signed(wait)
                    .unwrap_or(deadline)
                    .min(deadline);
                vec![Event::DeliveryAttempted(DeliveryAttempted {
                    message: m.id,
                    attempt,
                    status: *status,
                    error: Some(error.clone()),
                    next_at,
                })]
            }
        }
    }
}

/// Whether an endpoint gets an event: a type it subscribed to, and not the deliveries' or
/// endpoints' own events; a Bitrix24 endpoint only the events that raise a Bitrix24 event.
fn subscribed(ep: &Endpoint, e: &RecordedEvent) -> bool {
    e.stream.kind != EntityKind::Endpoint
        && event::deliverable(&e.event_type)
        && (ep.format != "bitrix24" || bitrix::bitrix_event(&e.event_type).is_some())
        && ep
            .events
            .iter()
            .any(|p| event::type_matches(p, &e.event_type))
}

/// The event at `position`.
fn event_at(db: &Store, position: i64) -> Result<Option<RecordedEvent>, Error> {
    Ok(db
        .read_log(&LogFilter::default(), position - 1, 1)?
        .into_iter()
        .next()
        .filter(|e| e.position == position))
}

/// The stream of endpoint `id`.
pub fn endpoint_stream(id: i64) -> StreamId {
    StreamId::new(EntityKind::Endpoint, id)
}
