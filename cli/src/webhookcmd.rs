//! `webhook add|list|remove`: webhook endpoints, each a subscription to events (decided by
//! `engine::decide` like every command; `leadflow run` delivers them).

use crate::cli::WebhookCmd;
use crate::ctx::Ctx;
use crate::error::CliError;
use crate::output::{Table, json_line, time};
use leadflow_engine::Command;
use leadflow_engine::command::NewEndpoint;
use leadflow_store::fmt_time;
use leadflow_store::query;
use serde_json::json;

/// Runs a `webhook` subcommand.
pub(crate) fn webhook(ctx: &mut Ctx, cmd: WebhookCmd) -> Result<(), CliError> {
    match cmd {
        WebhookCmd::Add {
            url,
            events,
            format,
            secret,
        } => add(ctx, url, &events, format, secret),
        WebhookCmd::List { all } => list(ctx, all),
        WebhookCmd::Remove { id } => remove(ctx, &id),
    }
}

fn add(
    ctx: &mut Ctx,
    url: String,
    events: &str,
    format: String,
    secret: Option<String>,
) -> Result<(), CliError> {
    ctx.check_backdate()?;
    let made = secret.is_none();
    let secret = match secret {
        Some(s) => s,
        None => leadflow_delivery::new_secret().map_err(|e| {
            CliError::Usage(format!(
                "cannot make a secret ({e}); give one with --secret"
            ))
        })?,
    };
    let cmd = Command::AddEndpoint(NewEndpoint {
        url,
        events: events
            .split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .map(str::to_owned)
            .collect(),
        format: Some(format),
        secret: secret.clone(),
    });
    let meta = ctx.meta();
    let config = &ctx.config;
    let out = ctx
        .store
        .write_with(ctx.recorded_at(), |tx| tx.execute(config, &cmd, &meta))?;
    let position = out.appended.as_ref().map_or(0, |a| a.last_position);
    let Some(leadflow_engine::Event::EndpointAdded(added)) = out.events.first() else {
        return Err(CliError::Refused("the endpoint was not added".into()));
    };
    if ctx.json {
        json_line(&json!({
            "endpoint": out.stream.to_string(),
            "id": out.stream.id,
            "position": position,
            "url": added.url,
            "events": added.events,
            "format": added.format.as_str(),
            "secret": if made { Some(&secret) } else { None },
        }));
        return Ok(());
    }
    outln!(
        "{} added: {} gets {} ({}, position {position})",
        out.stream,
        added.url,
        added.events.join(", "),
        added.format.as_str()
    );
    if made {
        outln!("secret: {secret}");
        errln!("the secret is shown only this once: give it to the receiver to check signatures");
    }
    Ok(())
}

fn list(ctx: &Ctx, all: bool) -> Result<(), CliError> {
    let rows = query::endpoints(&ctx.store, all)?;
    let tz = ctx.config.calendar.timezone;
    if ctx.json {
        for e in &rows {
            json_line(&json!({
                "endpoint": e.stream().to_string(),
                "id": e.id,
                "url": e.url,
                "events": e.events,
                "format": e.format,
                "state": e.state,
                "reason": e.reason,
                "added_at": fmt_time(e.added_at),
            }));
        }
        return Ok(());
    }
    if rows.is_empty() {
        outln!(
            "no webhook endpoints{}; add one with `leadflow webhook add URL --events 'lead.*'`",
            if all { "" } else { " are active" }
        );
        return Ok(());
    }
    let mut t = Table::new(&["ID", "URL", "EVENTS", "FORMAT", "STATE", "ADDED"]);
    for e in &rows {
        t.row(vec![
            e.id.to_string(),
            e.url.clone(),
            e.events.join(","),
            e.format.clone(),
            match &e.reason {
                Some(r) => format!("{} ({r})", e.state),
                None => e.state.clone(),
            },
            time(tz, e.added_at),
        ]);
    }
    t.print();
    Ok(())
}

/// `3` or `endpoint-3`.
fn endpoint_id(text: &str) -> Result<i64, CliError> {
    text.strip_prefix("endpoint-")
        .unwrap_or(text)
        .parse::<i64>()
        .ok()
        .filter(|id| *id > 0)
        .ok_or_else(|| {
            CliError::Usage(format!(
                "'{text}' is not an endpoint id like 3 or endpoint-3 (see `leadflow webhook list`)"
            ))
        })
}

fn remove(ctx: &mut Ctx, id: &str) -> Result<(), CliError> {
    ctx.check_backdate()?;
    let id = endpoint_id(id)?;
    let cmd = Command::RemoveEndpoint { id };
    let meta = ctx.meta();
    let config = &ctx.config;
    let out = ctx
        .store
        .write_with(ctx.recorded_at(), |tx| tx.execute(config, &cmd, &meta))?;
    let position = out.appended.as_ref().map_or(0, |a| a.last_position);
    if ctx.json {
        json_line(&json!({"endpoint": out.stream.to_string(), "position": position}));
    } else {
        outln!("{} removed (position {position})", out.stream);
    }
    Ok(())
}
