//! The `leadflow` binary: parses the command line, installs logging, resolves the configuration
//! and database, runs one command, and turns any error into one message and an exit code
//! (0 ok, 1 a "no": refused, unknown, failed verification; 2 could not run; see `CliError`).

#[macro_use]
mod output;
mod automation;
mod cli;
mod configcmd;
mod ctx;
mod demo;
mod entity;
mod error;
mod import;
mod init;
mod journal;
mod logcmd;
mod rulescmd;
mod service;
mod simulate;

use clap::FromArgMatches;
use cli::{Cli, Command};
use ctx::{Access, Ctx};
use error::CliError;

fn main() {
    let cli = match Cli::from_arg_matches(&cli::command().get_matches()) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    // The service logs what it does by default; one-shot commands only warnings.
    let default_filter = if matches!(cli.command, Command::Run) {
        "info"
    } else {
        "warn"
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env();
    // A service's log, or one asked for with RUST_LOG, is stamped (in UTC, as logs are); a
    // one-shot command's few warnings are messages for the person who typed it: no UTC time.
    let stamped = filter.is_ok() || matches!(cli.command, Command::Run);
    let log = tracing_subscriber::fmt()
        .with_env_filter(filter.unwrap_or_else(|_| default_filter.into()))
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    if stamped {
        log.init();
    } else {
        log.without_time().with_target(false).init();
    }
    if let Err(e) = run(cli) {
        errln!("error: {e}");
        std::process::exit(e.exit_code());
    }
}

/// Whether a command only reads the database (it then never takes the write lock and works on
/// a read-only copy) or may write it.
fn access(command: &Command) -> Access {
    use cli::{CompanyCmd, ContactCmd, DealCmd, LeadCmd, TaskCmd};
    let reads = match command {
        Command::Lead(c) => matches!(c, LeadCmd::Show { .. } | LeadCmd::List(_)),
        Command::Deal(c) => matches!(c, DealCmd::Show { .. } | DealCmd::List(_)),
        Command::Contact(c) => matches!(c, ContactCmd::Show { .. } | ContactCmd::List { .. }),
        Command::Company(c) => matches!(c, CompanyCmd::Show { .. } | CompanyCmd::List { .. }),
        Command::Task(c) => matches!(c, TaskCmd::List { .. }),
        // Marking notifications read appends `notification.read`.
        Command::Inbox(a) => a.mark_read.is_empty() && !a.mark_all_read,
        // Only the log: these read a read-only copy that needs an upgrade as it is.
        Command::Events(_) => return Access::Log,
        Command::Verify(a) if a.chain_only => return Access::Log,
        Command::Verify(_) | Command::Journal(_) | Command::Timers(_) => true,
        Command::Import(_) | Command::Replay | Command::Tick | Command::Run => false,
        Command::Init { .. }
        | Command::Demo(_)
        | Command::Rules(_)
        | Command::Simulate(_)
        | Command::Config(_) => false,
    };
    if reads { Access::Read } else { Access::Write }
}

fn run(cli: Cli) -> Result<(), CliError> {
    match cli.command {
        Command::Init { ref dir, force } => {
            init::init(dir.as_deref().unwrap_or(std::path::Path::new(".")), force)
        }
        Command::Demo(args) => demo::demo(args),
        Command::Rules(cmd) => {
            rulescmd::rules(cli.config.as_deref(), cli.rules.as_deref(), cli.json, cmd)
        }
        Command::Simulate(ref args) => simulate::simulate(args, cli.config.as_deref(), cli.json),
        Command::Config(cli::ConfigCmd::Show { section }) => {
            let path = ctx::find_config(cli.config.as_deref())?;
            let config = ctx::load_config(&path)?;
            configcmd::show(&config, &path, section, cli.json)
        }
        _ => {
            let mut ctx = Ctx::open(&cli, access(&cli.command))?;
            tracing::debug!(config = %ctx.config_path.display(), actor = %ctx.actor, "resolved");
            let db = ctx.store.path().map(std::path::Path::to_owned);
            let result = match cli.command {
                Command::Lead(c) => entity::lead(&mut ctx, c),
                Command::Deal(c) => entity::deal(&mut ctx, c),
                Command::Contact(c) => entity::contact(&mut ctx, c),
                Command::Company(c) => entity::company(&mut ctx, c),
                Command::Task(c) => entity::task(&mut ctx, c),
                Command::Import(a) => import::import(&mut ctx, a),
                Command::Events(a) => logcmd::events(&ctx, a),
                Command::Replay => logcmd::replay(&mut ctx),
                Command::Verify(a) => logcmd::verify(&mut ctx, a),
                Command::Tick => automation::tick(&mut ctx),
                Command::Run => service::run(ctx, cli.now.is_some()),
                Command::Inbox(a) => journal::inbox(&mut ctx, a),
                Command::Timers(a) => journal::timers(&ctx, a),
                Command::Journal(a) => journal::journal(&ctx, a),
                Command::Init { .. }
                | Command::Demo(_)
                | Command::Rules(_)
                | Command::Simulate(_)
                | Command::Config(_) => {
                    unreachable!("handled above")
                }
            };
            result.map_err(|e| e.in_db(db.as_deref()))
        }
    }
}
