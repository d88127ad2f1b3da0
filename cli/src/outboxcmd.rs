//! `outbox list|retry|drop`: the messages to deliver — the outbox's webhooks and e-mails and
//! the endpoints' subscriptions — for ops: what is pending or failed and why, a new round of
//! attempts for a failed one (`delivery.retried`), or dropping one (`delivery.dropped`).

use crate::cli::OutboxCmd;
use crate::ctx::Ctx;
use crate::error::CliError;
use crate::output::{Table, clip, json_line, opt, time};
use leadflow_delivery::manage::{self, Change, Refusal};
use leadflow_store::query::{self, Delivery, DeliveryFilter};
use serde_json::json;

/// Runs an `outbox` subcommand.
pub(crate) fn outbox(ctx: &mut Ctx, cmd: OutboxCmd) -> Result<(), CliError> {
    match cmd {
        OutboxCmd::List {
            failed,
            pending,
            limit,
        } => list(ctx, failed, pending, limit),
        OutboxCmd::Retry { id } => change(ctx, id, Change::Retry),
        OutboxCmd::Drop { id } => change(ctx, id, Change::Drop),
    }
}

/// Where a message goes, for people.
fn destination(d: &Delivery) -> String {
    match (d.endpoint, &d.target) {
        (Some(id), _) => format!("endpoint-{id}"),
        (None, Some(t)) => t.clone(),
        (None, None) => "-".into(),
    }
}

fn list(ctx: &Ctx, failed: bool, pending: bool, limit: usize) -> Result<(), CliError> {
    let mut states = Vec::new();
    if failed {
        states.push("failed".to_owned());
    }
    if pending {
        states.push("pending".to_owned());
    }
    let rows = query::deliveries(&ctx.store, &DeliveryFilter { states, limit })?;
    let tz = ctx.config.calendar.timezone;
    if ctx.json {
        for d in &rows {
            json_line(&manage::message_json(d));
        }
        return Ok(());
    }
    if rows.is_empty() {
        outln!(
            "the outbox has no {}messages",
            match (failed, pending) {
                (true, true) => "failed or pending ",
                (true, false) => "failed ",
                (false, true) => "pending ",
                _ => "",
            }
        );
        return Ok(());
    }
    let mut t = Table::new(&[
        "ID",
        "STATE",
        "CHANNEL",
        "TO",
        "EVENT",
        "ATTEMPTS",
        "NEXT/DONE",
        "LAST ERROR",
    ]);
    for d in &rows {
        t.row(vec![
            d.id.to_string(),
            d.state.clone(),
            d.channel.clone(),
            clip(&destination(d), 40),
            format!("{} {}", d.event_type, d.event),
            d.attempts.to_string(),
            d.next_at.or(d.done_at).map_or("-".into(), |t| time(tz, t)),
            clip(&opt(&d.last_error), 60),
        ]);
    }
    t.print();
    Ok(())
}

fn change(ctx: &mut Ctx, id: i64, change: Change) -> Result<(), CliError> {
    ctx.check_backdate()?;
    let meta = ctx.meta();
    let (stream, position) = ctx.store.write_with(ctx.recorded_at(), |tx| {
        manage::change(tx, id, change, &meta).map_err(|r| match r {
            Refusal::Unknown(m) => CliError::Unknown(m),
            Refusal::Refused(m) => CliError::Refused(m),
            Refusal::Store(e) => CliError::Store(e),
        })
    })?;
    let what = match change {
        Change::Retry => "will be sent again by `leadflow run`",
        Change::Drop => "was dropped: it will not be delivered",
    };
    if ctx.json {
        json_line(&json!({"id": id, "stream": stream.to_string(), "position": position}));
    } else {
        outln!("message {id} {what} ({stream}, position {position})");
    }
    Ok(())
}
