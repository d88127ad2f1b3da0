//! The side tables: every projection row that is not an entity's. What each event writes to
//! `timers` (through [`super::timers`]), the incident and escalation journals, the inbox and
//! outbox, `inbox_read`, idle marks, cron state, pending external requests and API tokens is
//! decided in
//! [`apply`]; the stage history
//! is written by the projector as entities enter and leave stages ([`stage_left`],
//! [`stage_visit`]).

use super::tables::{
    ESCALATIONS, IDLE_MARKS, INBOX, INBOX_READ, INCIDENTS, OUTBOX, Op, REQUESTS, SCHEDULES,
    STAGE_HISTORY, TOKENS, Table, sql,
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
            channel => insert(
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
            ),
        },
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
