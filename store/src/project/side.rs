//! The side tables: every projection row that is not an entity's. What each event writes to
//! `timers` (through [`super::timers`]), the incident and escalation journals, the inbox and
//! outbox, `inbox_read`, idle marks, cron state, pending external requests and API tokens is
//! decided in
//! [`apply`]; the stage history
//! is written by the projector as entities enter and leave stages ([`stage_left`],
//! [`stage_visit`]).

use super::tables::{
    DELIVERIES, ENDPOINTS, ESCALATIONS, IDLE_MARKS, INBOX, INBOX_READ, INCIDENTS, OUTBOX, Op,
    REQUESTS, SCHEDULES, STAGE_HISTORY, TOKENS, Table, sql,
};
use super::timers::{self, NewTimer};
use crate::error::Error;
use chrono::{DateTime, Utc};
use leadflow_engine::event::Channel;
use leadflow_engine::projection::StageVisit;
use leadflow_engine::stored::fmt_time;
use leadflow_engine::{Event, StreamId};
use rusqlite::{Connection, ToSql, params};

/// Writes what `event` (at `position`, of `stream`, occurred `at`, appended by `actor`) puts in
/// the side tables. Each row depends only on its own event (and earlier events of the same
/// stream), so a stream-by-stream rebuild writes the same rows as the live path.
pub(crate) fn apply(
    conn: &Connection,
    schema: &'static str,
    position: i64,
    stream: StreamId,
    event: &Event,
    at: DateTime<Utc>,
    actor: &str,
) -> Result<(), Error> {
    let insert = |table: &Table, op: Op, values: &[&dyn ToSql]| -> Result<(), Error> {
        conn.prepare_cached(table.sql(schema, op))?
            .execute(values)?;
        Ok(())
    };
    let set = |due_at, t: NewTimer<'_>| timers::set(conn, schema, due_at, position, stream, &t);
    let unset = |id| timers::unset_set_by(conn, schema, id);
    let kind = stream.kind.as_str();
    let name = stream.to_string();
    match event {
        Event::DeadlineScheduled(d) => set(
            d.due_at,
            NewTimer {
                what: "deadline",
                name: Some(&d.name),
                stage: None,
                survive_move: false,
            },
        ),
        Event::DeadlineCancelled(d) => unset(d.scheduled),
        Event::DeadlineElapsed(d) => timers::unset(conn, schema, d.due_at, d.scheduled),
        Event::RobotsDelayed(d) => set(
            d.due_at,
            NewTimer {
                what: "robots",
                name: Some(&d.rule),
                stage: d.stage.as_ref().map(|s| s.as_str()),
                survive_move: d.survive_move,
            },
        ),
        Event::RobotsResumed(r) => unset(r.delayed),
        Event::RobotsCancelled(r) => unset(r.delayed),
        Event::TaskCreated(t) => set(
            t.due_at,
            NewTimer {
                what: "task",
                name: None,
                stage: None,
                survive_move: false,
            },
        ),
        Event::TaskCompleted(_) | Event::TaskOverdue(_) => {
            for t in timers::pending(conn, schema, stream)? {
                timers::unset(conn, schema, t.due_at, t.id)?;
            }
            Ok(())
        }
        Event::IncidentRecorded(i) => insert(
            &INCIDENTS,
            Op::Insert,
            &[
                &position,
                &fmt_time(at),
                &i.kind,
                &i.employee.as_ref().map(|e| e.as_str()),
                &i.rule,
                &name,
                &i.text,
            ],
        ),
        Event::EscalationRecorded(e) => insert(
            &ESCALATIONS,
            Op::Insert,
            &[
                &position,
                &fmt_time(at),
                &e.employee.as_str(),
                &e.manager.as_ref().map(|m| m.as_str()),
                &e.kind,
                &e.count,
                &e.window,
                &e.rule,
                &name,
            ],
        ),
        // `OR IGNORE`: the first read wins. `inbox --mark-read` decides under the write lock,
        // so it records a notification read once, but logs written before it did may hold
        // a notification read more than once, and must still replay.
        Event::NotificationRead(r) => insert(
            &INBOX_READ,
            Op::InsertOrIgnore,
            &[&r.notification, &fmt_time(at), &position],
        ),
        Event::NotificationQueued(n) => match n.channel {
            Channel::Inbox => insert(
                &INBOX,
                Op::Insert,
                &[
                    &position,
                    &fmt_time(at),
                    &n.to.as_ref().map_or("", |e| e.as_str()),
                    &if n.priority.is_empty() {
                        "normal"
                    } else {
                        n.priority.as_str()
                    },
                    &n.text,
                    &n.rule,
                    &name,
                ],
            ),
            channel => {
                insert(
                    &OUTBOX,
                    Op::Insert,
                    &[
                        &position,
                        &fmt_time(at),
                        &channel.as_str(),
                        &n.target,
                        &n.to.as_ref().map(|e| e.as_str()),
                        &n.text,
                        &n.key,
                        &name,
                    ],
                )?;
                let target = n.target.as_deref().unwrap_or("");
                delivery::queued(
                    conn,
                    schema,
                    &delivery::Queued {
                        id: position,
                        webhook_id: &n.key,
                        stream: &name,
                        lane: &format!("{}:{target}|{name}", channel.as_str()),
                        channel: channel.as_str(),
                        endpoint: None,
                        target: n.target.as_deref(),
                        event: position,
                        event_type: "notification.queued",
                        at,
                    },
                )
            }
        },
        Event::EndpointAdded(e) => insert(
            &ENDPOINTS,
            Op::Insert,
            &[
                &stream.id,
                &e.url,
                &serde_json::to_string(&e.events).unwrap_or_default(),
                &e.format.as_str(),
                &e.secret,
                &"active",
                &None::<String>,
                &fmt_time(at),
                &position,
            ],
        ),
        Event::EndpointRemoved(_) => delivery::endpoint_gone(conn, schema, stream, "removed", None),
        Event::EndpointDisabled(d) => {
            delivery::endpoint_gone(conn, schema, stream, "disabled", Some(&d.reason))
        }
        Event::DeliveryQueued(q) => delivery::queued(
            conn,
            schema,
            &delivery::Queued {
                id: position,
                webhook_id: &format!("msg_{name}_{}", q.event),
                stream: &name,
                lane: &format!("{name}|{}", q.stream),
                channel: "endpoint",
                endpoint: Some(stream.id),
                target: None,
                event: q.event,
                event_type: &q.event_type,
                at,
            },
        ),
        Event::DeliveryAttempted(a) => delivery::set(
            conn,
            schema,
            a.message,
            &delivery::Outcome {
                state: "pending",
                attempts: a.attempt,
                next_at: Some(a.next_at),
                status: a.status,
                error: a.error.as_deref(),
                done_at: None,
            },
        ),
        Event::DeliverySucceeded(d) => delivery::set(
            conn,
            schema,
            d.message,
            &delivery::Outcome {
                state: "succeeded",
                attempts: d.attempt,
                next_at: None,
                status: d.status,
                error: None,
                done_at: Some(at),
            },
        ),
        Event::DeliveryFailed(f) => delivery::set(
            conn,
            schema,
            f.message,
            &delivery::Outcome {
                state: "failed",
                attempts: f.attempts,
                next_at: None,
                status: None,
                error: Some(&f.reason),
                done_at: Some(at),
            },
        ),
        Event::DeliveryRetried(r) => delivery::retried(conn, schema, r.message, at),
        Event::DeliveryDropped(d) => delivery::dropped(conn, schema, d.message, at),
        Event::IdleDetected(i) => insert(
            &IDLE_MARKS,
            Op::InsertOrReplace,
            &[&kind, &stream.id, &i.rule, &fmt_time(i.since)],
        ),
        Event::ScheduleFired(f) => insert(
            &SCHEDULES,
            Op::InsertOrReplace,
            &[&f.rule, &fmt_time(f.due_at)],
        ),
        Event::RobotRequested(r) => insert(
            &REQUESTS,
            Op::Insert,
            &[
                &position,
                &kind,
                &stream.id,
                &r.robot,
                &r.key,
                &None::<String>,
            ],
        ),
        Event::RobotStarted(r) => {
            conn.prepare_cached(sql(
                schema,
                "UPDATE {s}.requests SET claimed_until = ?1 WHERE position = ?2",
            ))?
            .execute(params![fmt_time(r.until), r.request])?;
            Ok(())
        }
        Event::RobotCompleted(c) => {
            conn.prepare_cached(sql(schema, "DELETE FROM {s}.requests WHERE position = ?1"))?
                .execute([c.request])?;
            Ok(())
        }
        Event::TokenCreated(t) => insert(
            &TOKENS,
            Op::Insert,
            &[
                &t.name,
                &name,
                &t.role,
                &t.employee.as_ref().map(|e| e.as_str()),
                &t.secret_hash,
                &fmt_time(at),
                &actor,
                &None::<String>,
                &None::<String>,
            ],
        ),
        Event::TokenRevoked(_) => {
            conn.prepare_cached(sql(
                schema,
                "UPDATE {s}.tokens SET revoked_at = ?1, revoked_by = ?2 WHERE stream = ?3",
            ))?
            .execute(params![fmt_time(at), actor, name])?;
            Ok(())
        }
        // A deleted entity's pending timers and idle marks go with it (nothing fires for it).
        Event::LeadDeleted(_)
        | Event::DealDeleted(_)
        | Event::ContactDeleted(_)
        | Event::CompanyDeleted(_) => {
            for t in timers::pending(conn, schema, stream)? {
                timers::unset(conn, schema, t.due_at, t.id)?;
            }
            conn.prepare_cached(sql(
                schema,
                "DELETE FROM {s}.idle_marks WHERE kind = ?1 AND entity_id = ?2",
            ))?
            .execute(params![kind, stream.id])?;
            Ok(())
        }
        _ => Ok(()),
    }
}

/// The `deliveries` and `endpoints` rows' writes beyond a plain insert.
mod delivery {
    use super::{DELIVERIES, Op, sql};
    use crate::error::Error;
    use chrono::{DateTime, Utc};
    use leadflow_engine::StreamId;
    use leadflow_engine::stored::fmt_time;
    use rusqlite::{Connection, params};

    /// A new message.
    pub(super) struct Queued<'a> {
        pub(super) id: i64,
        pub(super) webhook_id: &'a str,
        pub(super) stream: &'a str,
        pub(super) lane: &'a str,
        pub(super) channel: &'a str,
        pub(super) endpoint: Option<i64>,
        pub(super) target: Option<&'a str>,
        pub(super) event: i64,
        pub(super) event_type: &'a str,
        pub(super) at: DateTime<Utc>,
    }

    pub(super) fn queued(
        conn: &Connection,
        schema: &'static str,
        q: &Queued<'_>,
    ) -> Result<(), Error> {
        let at = fmt_time(q.at);
        conn.prepare_cached(DELIVERIES.sql(schema, Op::Insert))?
            .execute(params![
                q.id,
                q.webhook_id,
                q.stream,
                q.lane,
                q.channel,
                q.endpoint,
                q.target,
                q.event,
                q.event_type,
                "pending",
                0,
                at,
                at,
                at,
                None::<i64>,
                None::<String>,
                None::<String>,
            ])?;
        Ok(())
    }

    /// How an attempt left a message.
    pub(super) struct Outcome<'a> {
        pub(super) state: &'a str,
        pub(super) attempts: u32,
        pub(super) next_at: Option<DateTime<Utc>>,
        pub(super) status: Option<u16>,
        pub(super) error: Option<&'a str>,
        pub(super) done_at: Option<DateTime<Utc>>,
    }

    pub(super) fn set(
        conn: &Connection,
        schema: &'static str,
        id: i64,
        o: &Outcome<'_>,
    ) -> Result<(), Error> {
        conn.prepare_cached(sql(
            schema,
            "UPDATE {s}.deliveries SET state = ?2, attempts = ?3, next_at = ?4, \
             last_status = coalesce(?5, last_status), last_error = ?6, done_at = ?7 WHERE id = ?1",
        ))?
        .execute(params![
            id,
            o.state,
            o.attempts,
            o.next_at.map(fmt_time),
            o.status,
            o.error,
            o.done_at.map(fmt_time),
        ])?;
        Ok(())
    }

    /// A new round of attempts, from now.
    pub(super) fn retried(
        conn: &Connection,
        schema: &'static str,
        id: i64,
        at: DateTime<Utc>,
    ) -> Result<(), Error> {
        conn.prepare_cached(sql(
            schema,
            "UPDATE {s}.deliveries SET state = 'pending', attempts = 0, next_at = ?2, \
             round_at = ?2, done_at = NULL WHERE id = ?1",
        ))?
        .execute(params![id, fmt_time(at)])?;
        Ok(())
    }

    pub(super) fn dropped(
        conn: &Connection,
        schema: &'static str,
        id: i64,
        at: DateTime<Utc>,
    ) -> Result<(), Error> {
        conn.prepare_cached(sql(
            schema,
            "UPDATE {s}.deliveries SET state = 'dropped', next_at = NULL, done_at = ?2 WHERE id = ?1",
        ))?
        .execute(params![id, fmt_time(at)])?;
        Ok(())
    }

    /// An endpoint removed or disabled: its row says so, and its pending messages (all in its
    /// own stream) are cancelled.
    pub(super) fn endpoint_gone(
        conn: &Connection,
        schema: &'static str,
        stream: StreamId,
        state: &str,
        reason: Option<&str>,
    ) -> Result<(), Error> {
        conn.prepare_cached(sql(
            schema,
            "UPDATE {s}.endpoints SET state = ?2, reason = ?3 WHERE id = ?1",
        ))?
        .execute(params![stream.id, state, reason])?;
        conn.prepare_cached(sql(
            schema,
            "UPDATE {s}.deliveries SET state = 'cancelled', next_at = NULL WHERE stream = ?1 AND state = 'pending'",
        ))?
        .execute([stream.to_string()])?;
        Ok(())
    }
}

/// Closes the entity's open stage visit.
pub(crate) fn stage_left(
    conn: &Connection,
    schema: &'static str,
    stream: StreamId,
    at: DateTime<Utc>,
) -> Result<(), Error> {
    conn.prepare_cached(sql(
        schema,
        "UPDATE {s}.stage_history SET left_at = ?1 WHERE kind = ?2 AND entity_id = ?3 AND left_at IS NULL",
    ))?
    .execute(params![fmt_time(at), stream.kind.as_str(), stream.id])?;
    Ok(())
}

/// Records a stage visit that began at `position` (and ended `left_at`, if it did).
pub(crate) fn stage_visit(
    conn: &Connection,
    schema: &'static str,
    position: i64,
    v: &StageVisit,
    left_at: Option<DateTime<Utc>>,
) -> Result<(), Error> {
    conn.prepare_cached(STAGE_HISTORY.sql(schema, Op::Insert))?
        .execute(params![
            position,
            v.stream.kind.as_str(),
            v.stream.id,
            v.pipeline.as_str(),
            v.stage.as_str(),
            fmt_time(v.entered_at),
            left_at.map(fmt_time),
        ])?;
    Ok(())
}
