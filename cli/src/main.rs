//! The `leadflow` binary: parses the command line, installs logging, resolves the configuration
//! and database, runs one command, and turns any error into one message and an exit code
//! (0 ok, 1 a "no": refused, unknown, failed verification; 2 could not run; see `CliError`).

// The binary is where leadflow prints (the workspace denies it everywhere else): data through
// `output::stdout_line` / `outln!`, messages through `errln!`, a warning or two with `eprintln!`.
#![allow(clippy::print_stdout, clippy::print_stderr)]

/// mimalloc for Rust's allocations and, through its `override` feature, SQLite's (see the
/// workspace's Cargo.toml).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[macro_use]
mod output;
mod automation;
mod backtestcmd;
mod backupcmd;
mod cli;
mod configcmd;
mod coveragecmd;
mod ctx;
mod demo;
mod entity;
mod error;
mod history;
mod import;
mod init;
mod journal;
mod logcmd;
mod outboxcmd;
mod reportcmd;
mod rulescmd;
mod servecmd;
mod service;
mod simulate;
mod tokencmd;
mod webhookcmd;

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
    let default_filter = if matches!(cli.command, Command::Run | Command::Serve(_)) {
        "info"
    } else {
        "warn"
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env();
    // A service's log, or one asked for with RUST_LOG, is stamped (in UTC, as logs are); a
    // one-shot command's few warnings are messages for the person who typed it: no UTC time.
    let stamped = filter.is_ok() || matches!(cli.command, Command::Run | Command::Serve(_));
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
    use cli::{CompanyCmd, ContactCmd, DealCmd, LeadCmd, TaskCmd, TokenCmd};
    let reads = match command {
        Command::Lead(c) => matches!(c, LeadCmd::Show { .. } | LeadCmd::List(_)),
        Command::Deal(c) => matches!(c, DealCmd::Show { .. } | DealCmd::List(_)),
        Command::Contact(c) => matches!(c, ContactCmd::Show { .. } | ContactCmd::List { .. }),
        Command::Company(c) => matches!(c, CompanyCmd::Show { .. } | CompanyCmd::List { .. }),
        Command::Task(c) => matches!(c, TaskCmd::List { .. }),
        Command::Token(c) => matches!(c, TokenCmd::List),
        // Marking notifications read appends `notification.read`.
        Command::Inbox(a) => a.mark_read.is_empty() && !a.mark_all_read,
        // Only the log: these read a read-only copy that needs an upgrade as it is.
        Command::Events(_) => return Access::Log,
        Command::Verify(a) if a.chain_only => return Access::Log,
        Command::Verify(_) | Command::Journal(_) | Command::Timers(_) => true,
        Command::Webhook(c) => matches!(c, cli::WebhookCmd::List { .. }),
        Command::Outbox(c) => matches!(c, cli::OutboxCmd::List { .. }),
        Command::History(_) | Command::Explain(_) | Command::Report(_) => true,
        // With --into, the live database is only read.
        Command::Replay(a) => a.into.is_some(),
        Command::Import(_) | Command::Tick | Command::Run | Command::Serve(_) => false,
        Command::Init { .. }
        | Command::Demo(_)
        | Command::Rules(_)
        | Command::Simulate(_)
        | Command::Config(_) => false,
        // Backup and export read the log as it is; restore and import-log replace the file.
        Command::Backup(_) | Command::Export(_) => return Access::Log,
        Command::Restore(_) | Command::ImportLog(_) => false,
        // The sandbox is a scratch database: the live one is only read.
        Command::Backtest(_) => true,
    };
    if reads { Access::Read } else { Access::Write }
}

fn run(cli: Cli) -> Result<(), CliError> {
    match cli.command {
        Command::Init { ref dir, force } => {
            init::init(dir.as_deref().unwrap_or(std::path::Path::new(".")), force)
        }
        Command::Demo(args) => demo::demo(args),
        // Coverage reads the database (the other `rules` subcommands need none).
        Command::Rules(cli::RulesCmd::Coverage(ref a)) => coveragecmd::coverage(&cli, a),
        Command::Rules(cmd) => {
            rulescmd::rules(cli.config.as_deref(), cli.rules.as_deref(), cli.json, cmd)
        }
        Command::Simulate(ref args) => simulate::simulate(args, cli.config.as_deref(), cli.json),
        Command::Config(cli::ConfigCmd::Show { section }) => {
            let path = ctx::find_config(cli.config.as_deref())?;
            let config = ctx::load_config(&path)?;
            configcmd::show(&config, &path, section, cli.json)
        }
        Command::Backup(_) | Command::Restore(_) | Command::Export(_) | Command::ImportLog(_) => {
            backupcmd::run(&cli)
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
                Command::Replay(a) => match &a.into {
                    Some(into) => history::replay_into(&ctx, &a, into),
                    None => logcmd::replay(&mut ctx),
                },
                Command::Verify(a) => logcmd::verify(&mut ctx, a),
                Command::Tick => automation::tick(&mut ctx),
                Command::Run => service::run(ctx, cli.now.is_some()),
                Command::Serve(a) => {
                    if cli.now.is_some() {
                        return Err(CliError::Usage(
                            "`serve` follows the wall clock; --now (LEADFLOW_NOW) is for `tick` and commands".into(),
                        ));
                    }
                    servecmd::serve(ctx, a.listen, &cli.synchronous)
                }
                Command::Inbox(a) => journal::inbox(&mut ctx, a),
                Command::Timers(a) => journal::timers(&ctx, a),
                Command::Journal(a) => journal::journal(&ctx, a),
                Command::Token(c) => tokencmd::token(&mut ctx, c),
                Command::Webhook(c) => webhookcmd::webhook(&mut ctx, c),
                Command::Outbox(c) => outboxcmd::outbox(&mut ctx, c),
                Command::History(a) => history::history(&ctx, a),
                Command::Explain(a) => history::explain(&ctx, a),
                Command::Report(a) => reportcmd::report(&ctx, a),
                Command::Backtest(a) => backtestcmd::backtest(&ctx, a),
                Command::Init { .. }
                | Command::Demo(_)
                | Command::Rules(_)
                | Command::Simulate(_)
                | Command::Config(_)
                | Command::Backup(_)
                | Command::Restore(_)
                | Command::Export(_)
                | Command::ImportLog(_) => {
                    unreachable!("handled above")
                }
            };
            result.map_err(|e| e.in_db(db.as_deref()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::FromArgMatches;

    /// A command line for every command: what each one opens the database for.
    const SAMPLES: &[&[&str]] = &[
        &["init"],
        &["lead", "create", "--name", "A"],
        &["lead", "update", "1", "--name", "B"],
        &["lead", "move", "1", "in_work"],
        &["lead", "assign", "1", "ivanov"],
        &["lead", "show", "1"],
        &["lead", "list"],
        &["deal", "create", "--title", "D"],
        &["deal", "update", "1", "--title", "E"],
        &["deal", "move", "1", "won"],
        &["deal", "assign", "1", "ivanov"],
        &["deal", "show", "1"],
        &["deal", "list"],
        &["contact", "create", "--name", "C"],
        &["contact", "update", "1", "--name", "C"],
        &["contact", "show", "1"],
        &["contact", "list"],
        &["company", "create", "--name", "Co"],
        &["company", "update", "1", "--name", "Co"],
        &["company", "show", "1"],
        &["company", "list"],
        &["lead", "delete", "1"],
        &["deal", "delete", "1"],
        &["contact", "delete", "1"],
        &["company", "delete", "1"],
        &[
            "task",
            "create",
            "--title",
            "Call",
            "--assignee",
            "ivanov",
            "--due",
            "+1h",
        ],
        &["task", "complete", "1"],
        &["task", "list"],
        &["import", "leads.csv"],
        &["events"],
        &["replay"],
        &["verify"],
        &["demo"],
        &["rules", "check"],
        &["rules", "schema"],
        &["tick"],
        &["run"],
        &["serve", "--listen", "127.0.0.1:0"],
        &["inbox", "ivanov"],
        &["timers"],
        &["journal"],
        &["simulate", "scenario.toml"],
        &["config", "show"],
        &["token", "create", "crm", "--role", "sales"],
        &["token", "list"],
        &["token", "revoke", "crm"],
        &[
            "webhook",
            "add",
            "http://127.0.0.1:9/h",
            "--events",
            "lead.*",
        ],
        &["webhook", "list"],
        &["webhook", "remove", "1"],
        &["outbox", "list"],
        &["outbox", "retry", "1"],
        &["outbox", "drop", "1"],
        &["history", "lead", "1"],
        &["explain", "1"],
        &["backup", "copy.db"],
        &["restore", "copy.db"],
        &["export"],
        &["import-log", "log.jsonl"],
        &["report", "funnel"],
        &["backtest", "rules"],
        &["rules", "coverage"],
    ];

    fn parse(args: &[&str]) -> Result<Cli, String> {
        let argv = std::iter::once("leadflow").chain(args.iter().copied());
        cli::command()
            .try_get_matches_from(argv)
            .and_then(|m| Cli::from_arg_matches(&m))
            .map_err(|e| format!("{args:?}: {e}"))
    }

    /// Every command's path of subcommand names, from the clap definition itself.
    fn paths(cmd: &clap::Command, prefix: Vec<String>, out: &mut Vec<Vec<String>>) {
        for sc in cmd.get_subcommands().filter(|sc| sc.get_name() != "help") {
            let mut path = prefix.clone();
            path.push(sc.get_name().to_owned());
            if sc.get_subcommands().any(|s| s.get_name() != "help") {
                paths(sc, path, out);
            } else {
                out.push(path);
            }
        }
    }

    /// The help hides the write-only options (`cli::READ_ONLY`) exactly on the commands that
    /// open the database for reading (`access`), so the two lists cannot drift apart: a new
    /// command must be added to `SAMPLES`, and is then checked against both.
    #[test]
    fn the_help_hides_write_only_options_exactly_on_the_commands_that_only_read() {
        let mut all = Vec::new();
        paths(&cli::command(), Vec::new(), &mut all);
        for path in &all {
            let sample = SAMPLES
                .iter()
                .find(|s| s.starts_with(&path.iter().map(String::as_str).collect::<Vec<_>>()))
                .unwrap_or_else(|| panic!("no sample command line for {path:?} in SAMPLES"));
            let cli = parse(sample).unwrap();
            let reads = access(&cli.command) != Access::Write;
            let hidden = cli::READ_ONLY
                .iter()
                .any(|p| p.iter().copied().eq(path.iter().map(String::as_str)));
            // `config show` reads no database at all; it is handled before one is opened.
            if path == &["config", "show"] {
                assert!(hidden, "config show should hide the write-only options");
                continue;
            }
            // `inbox` reads, and writes with --mark-read: its help shows what a write takes.
            if path == &["inbox"] {
                assert!(
                    !hidden,
                    "inbox --mark-read writes: its help shows the write options"
                );
                continue;
            }
            assert_eq!(
                reads,
                hidden,
                "{path:?}: opened for {:?}, but the help {} the write-only options",
                access(&cli.command),
                if hidden { "hides" } else { "shows" }
            );
        }
    }

    #[test]
    fn marking_notifications_read_opens_for_writing() {
        let cli = parse(&["inbox", "ivanov", "--mark-all-read"]).unwrap();
        assert_eq!(access(&cli.command), Access::Write);
    }
}
