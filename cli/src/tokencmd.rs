//! `leadflow token create | list | revoke`: API tokens. A token's secret is made here, from
//! the operating system's random source, printed once and never stored: the log and the
//! `tokens` table keep its SHA-256 only (`engine::access::secret_hash`).

use crate::cli::TokenCmd;
use crate::ctx::Ctx;
use crate::error::CliError;
use crate::output::{Table, json_line, opt, time};
use leadflow_engine::Command;
use leadflow_engine::access::secret_hash;
use leadflow_engine::command::NewToken;
use leadflow_engine::ids::EmployeeId;
use leadflow_store::{fmt_time, query};
use serde_json::json;

/// Runs a `token` subcommand.
pub(crate) fn token(ctx: &mut Ctx, cmd: TokenCmd) -> Result<(), CliError> {
    match cmd {
        TokenCmd::Create {
            name,
            role,
            employee,
            note,
        } => create(ctx, name, role, employee, note),
        TokenCmd::List => list(ctx),
        TokenCmd::Revoke { name } => revoke(ctx, name),
    }
}

/// A new secret: 32 random bytes from the operating system, as 64 lowercase hex digits (safe
/// in a URL path: `/rest/<user>/<secret>/`).
fn new_secret() -> Result<String, CliError> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| {
        CliError::Usage(format!(
            "could not get random bytes from the operating system for the secret: {e}"
        ))
    })?;
    Ok(leadflow_engine::hex(&bytes))
}

fn create(
    ctx: &mut Ctx,
    name: String,
    role: String,
    employee: Option<String>,
    note: Option<String>,
) -> Result<(), CliError> {
    ctx.check_backdate()?;
    let secret = new_secret()?;
    let cmd = Command::CreateToken(NewToken {
        name: name.clone(),
        role: role.clone(),
        employee: employee.as_deref().map(EmployeeId::from),
        secret_hash: secret_hash(&secret),
        note,
    });
    let meta = ctx.meta();
    let config = &ctx.config;
    let out = ctx
        .store
        .write_with(ctx.recorded_at(), |tx| tx.execute(config, &cmd, &meta))?;
    let position = out.appended.as_ref().map(|a| a.last_position);
    if ctx.json {
        json_line(&json!({
            "name": name,
            "stream": out.stream.to_string(),
            "role": role,
            "employee": employee,
            "position": position,
            "secret": secret,
        }));
    } else {
        outln!("{secret}");
        let whose = employee.map_or_else(String::new, |e| format!(", acting for {e}"));
        errln!(
            "token {name} (role {role}{whose}) was recorded as {} (position {}); the secret above is shown this once: only its hash is kept",
            out.stream,
            opt(&position)
        );
    }
    Ok(())
}

fn list(ctx: &Ctx) -> Result<(), CliError> {
    let tokens = query::tokens(&ctx.store)?;
    if ctx.json {
        for t in &tokens {
            json_line(&json!({
                "name": t.name,
                "stream": t.stream.to_string(),
                "role": t.role,
                "employee": t.employee,
                "created_at": fmt_time(t.created_at),
                "created_by": t.created_by,
                "revoked_at": t.revoked_at.map(fmt_time),
                "revoked_by": t.revoked_by,
                "active": t.is_active(),
            }));
        }
        return Ok(());
    }
    if tokens.is_empty() {
        errln!("no tokens yet; `leadflow token create NAME --role ROLE` makes one");
        return Ok(());
    }
    let tz = ctx.config.calendar.timezone;
    let mut table = Table::new(&["NAME", "ROLE", "EMPLOYEE", "CREATED", "BY", "REVOKED"]);
    for t in &tokens {
        table.row(vec![
            t.name.clone(),
            t.role.clone(),
            opt(&t.employee),
            time(tz, t.created_at),
            t.created_by.clone(),
            t.revoked_at.map_or_else(
                || "-".to_owned(),
                |at| format!("{} by {}", time(tz, at), opt(&t.revoked_by)),
            ),
        ]);
    }
    table.print();
    Ok(())
}

fn revoke(ctx: &mut Ctx, name: String) -> Result<(), CliError> {
    ctx.check_backdate()?;
    let cmd = Command::RevokeToken { name: name.clone() };
    let meta = ctx.meta();
    let config = &ctx.config;
    let out = ctx
        .store
        .write_with(ctx.recorded_at(), |tx| tx.execute(config, &cmd, &meta))?;
    let position = out.appended.as_ref().map(|a| a.last_position);
    if ctx.json {
        json_line(&json!({
            "name": name,
            "stream": out.stream.to_string(),
            "position": position,
        }));
    } else {
        errln!(
            "token {name} ({}) was revoked (position {})",
            out.stream,
            opt(&position)
        );
    }
    Ok(())
}
