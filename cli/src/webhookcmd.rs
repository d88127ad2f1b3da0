//! `webhook add|list|remove`: webhook endpoints, each a subscription to events (decided by
//! `engine::decide` like every command; `leadflow run` delivers them).

use crate::cli::WebhookCmd;
use crate::ctx::Ctx;
use crate::error::CliError;
use crate::output::{Table, json_line, time};
use leadflow_delivery::manage::{self, NewHook};
use leadflow_engine::Command;
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
    let (cmd, made) = manage::add_command(NewHook {
        url,
        events: manage::parse_events(events),
        format: Some(format),
        secret,
    })
    .map_err(|e| {
        CliError::Usage(format!(
            "cannot make a secret ({e}); give one with --secret"
        ))
    })?;
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
        json_line(&manage::added_json(
            out.stream,
            position,
            added,
            made.as_deref(),
        ));
        return Ok(());
    }
    outln!(
        "{} added: {} gets {} ({}, position {position})",
        out.stream,
        added.url,
        added.events.join(", "),
        added.format.as_str()
    );
    if let Some(secret) = made {
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
            json_line(&manage::endpoint_json(e));
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
    manage::endpoint_id(text).ok_or_else(|| {
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
