//! Command-line arguments (clap derive; the doc comments are the help text).

use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

/// The heading of the options every command takes, shown after the command's own.
pub(crate) const GLOBAL: &str = "Global options";

/// Commands that change nothing in the log: they do not show the write-only global options
/// (`--rules`, `--synchronous`, `--backdate`) in their help. A path is a command and its subcommands.
/// A test in main.rs holds this list to `access`, which opens these commands read-only.
pub(crate) const READ_ONLY: &[&[&str]] = &[
    &["events"],
    &["verify"],
    &["journal"],
    &["timers"],
    &["config", "show"],
    &["lead", "show"],
    &["lead", "list"],
    &["deal", "show"],
    &["deal", "list"],
    &["contact", "show"],
    &["contact", "list"],
    &["company", "show"],
    &["company", "list"],
    &["task", "list"],
    &["token", "list"],
    &["webhook", "list"],
    &["outbox", "list"],
    &["history"],
    &["explain"],
    &["backup"],
    &["export"],
    &["report"],
    &["backtest"],
];

/// The command line with the global options propagated to every command, and the
/// write-only ones hidden from the help of read-only commands, the ones a command does not use
/// hidden from its help (still accepted), and the update commands' list options saying that
/// they replace the list.
pub(crate) fn command() -> clap::Command {
    use clap::CommandFactory;
    let mut cmd = Cli::command();
    cmd.build();
    // In place: `mut_arg` and `mut_subcommand` move what they change to the end, which on a
    // built command leaves the option index pointing at the wrong options.
    fn edit(
        cmd: clap::Command,
        path: &[&str],
        f: &dyn Fn(clap::Arg) -> clap::Arg,
    ) -> clap::Command {
        match path.split_first() {
            None => cmd.mut_args(f),
            Some((first, rest)) => cmd.mut_subcommands(|sc| {
                if sc.get_name() == *first {
                    edit(sc, rest, f)
                } else {
                    sc
                }
            }),
        }
    }
    fn hide(cmd: clap::Command, path: &[&str], args: &[&str]) -> clap::Command {
        edit(cmd, path, &|a| {
            if args.contains(&a.get_id().as_str()) {
                a.hide(true)
            } else {
                a
            }
        })
    }
    for path in READ_ONLY {
        cmd = hide(cmd, path, &["rules", "synchronous", "backdate"]);
    }
    // Checking rules uses --rules but writes nothing; replay writes but runs no rules.
    for path in [
        &["rules"][..],
        &["rules", "check"],
        &["rules", "schema"],
        &["rules", "coverage"],
    ] {
        cmd = hide(cmd, path, &["synchronous", "backdate"]);
    }
    cmd = hide(cmd, &["replay"], &["rules"]);
    // `init` and `demo` make a folder of their own and act as no one; `simulate` runs its
    // scenario in memory, on --config if given, and prints --json.
    let global = [
        "config",
        "db",
        "actor",
        "now",
        "backdate",
        "json",
        "rules",
        "synchronous",
    ];
    cmd = hide(cmd, &["init"], &global);
    cmd = hide(cmd, &["demo"], &global);
    cmd = hide(
        cmd,
        &["simulate"],
        &["db", "actor", "now", "backdate", "rules", "synchronous"],
    );
    // The backup commands act as no one, at no time of their own, and run no rules.
    for path in [&["backup"][..], &["restore"], &["export"], &["import-log"]] {
        cmd = hide(
            cmd,
            path,
            &["actor", "now", "backdate", "rules", "synchronous"],
        );
    }
    // The list options are shared with `create`, where there is no list to replace yet.
    for kind in ["lead", "contact", "company"] {
        cmd = edit(cmd, &[kind, "update"], &|a| match a.get_id().as_str() {
            "phones" | "emails" => {
                let help = a.get_help().map(ToString::to_string).unwrap_or_default();
                a.help(format!("{help} (replaces the list)"))
            }
            _ => a,
        });
    }
    cmd
}

/// leadflow — an event-sourced workflow engine for sales pipelines.
///
/// Every change is an appended, hash-chained event in an SQLite log. The configuration
/// (leadflow.toml or a folder of TOML files) and the database (leadflow.db beside it) are found
/// by flag, by environment variable, or by searching the current folder and its parents.
#[derive(Debug, Parser)]
#[command(
    name = "leadflow",
    version,
    propagate_version = true,
    max_term_width = 100
)]
pub(crate) struct Cli {
    /// Configuration file or folder [default: leadflow.toml or leadflow.d/ found upwards]
    #[arg(long, global = true, env = "LEADFLOW_CONFIG", value_name = "PATH", help_heading = GLOBAL)]
    pub config: Option<PathBuf>,

    /// Database file [default: leadflow.db beside the configuration]
    #[arg(long, global = true, env = "LEADFLOW_DB", value_name = "PATH", help_heading = GLOBAL)]
    pub db: Option<PathBuf>,

    /// Act as this employee (or `system`) [default: default_actor from the configuration]
    #[arg(
        long = "as",
        global = true,
        env = "LEADFLOW_AS",
        value_name = "EMPLOYEE",
        help_heading = GLOBAL
    )]
    pub actor: Option<String>,

    /// Use this time as "now" instead of the wall clock (RFC 3339, or `YYYY-MM-DD HH:MM` in the
    /// calendar's time zone)
    #[arg(long, global = true, env = "LEADFLOW_NOW", value_name = "TIME", help_heading = GLOBAL)]
    pub now: Option<String>,

    /// Allow a write whose --now is earlier than the log's last event (refused otherwise, so
    /// that events are not dated before ones already recorded)
    #[arg(long, global = true, help_heading = GLOBAL)]
    pub backdate: bool,

    /// Print machine-readable JSON instead of tables
    #[arg(long, global = true, help_heading = GLOBAL)]
    pub json: bool,

    /// Rule folder whose robots run after every change [default: rules/ beside the
    /// configuration, if it exists]
    #[arg(long, global = true, env = "LEADFLOW_RULES", value_name = "DIR", help_heading = GLOBAL)]
    pub rules: Option<PathBuf>,

    /// Durability of commits: full (fsync every commit), normal or off
    #[arg(
        long,
        global = true,
        env = "LEADFLOW_SYNCHRONOUS",
        value_name = "MODE",
        default_value = "full",
        help_heading = GLOBAL
    )]
    pub synchronous: String,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Create a configuration and an empty database in DIR (default: the current folder)
    Init {
        /// Where to create leadflow.toml and leadflow.db
        dir: Option<PathBuf>,
        /// Overwrite an existing leadflow.toml
        #[arg(long)]
        force: bool,
    },
    /// Create, change, move, assign and list leads
    #[command(subcommand)]
    Lead(LeadCmd),
    /// Create, change, move, assign and list deals
    #[command(subcommand)]
    Deal(DealCmd),
    /// Create, change and list contacts (people)
    #[command(subcommand)]
    Contact(ContactCmd),
    /// Create, change and list companies (legal entities)
    #[command(subcommand)]
    Company(CompanyCmd),
    /// Create, complete and list tasks
    #[command(subcommand)]
    Task(TaskCmd),
    /// Import leads from a CSV or JSON Lines file, all or nothing
    Import(ImportArgs),
    /// List, filter, export or follow the event log
    Events(EventsArgs),
    /// Drop the projection tables and rebuild them from the log; with --into, write a separate
    /// database as the log was up to a time or position instead
    Replay(ReplayArgs),
    /// Check the hash chain, and that the projections equal a fresh replay
    Verify(VerifyArgs),
    /// Run the demo: a few hundred leads and deals through the pipelines on a simulated week
    Demo(DemoArgs),
    /// Check rule sets and print their JSON Schema
    #[command(subcommand)]
    Rules(RulesCmd),
    /// Fire every timer, schedule and idle rule due up to now (or --now), run the rules
    Tick,
    /// Run the rules as a service: react to new events, fire timers when due (SIGINT/SIGTERM
    /// stop it)
    Run,
    /// Run the HTTP service: the JSON API, the rules and timers, in one process (SIGINT/SIGTERM
    /// stop it gracefully, SIGHUP reloads the rule folder)
    Serve(ServeArgs),
    /// Show an employee's notifications, newest first (`!` marks high priority), and mark
    /// them read
    Inbox(InboxArgs),
    /// Show pending timers: deadlines, delayed robots and task due times, with who set them
    Timers(TimersArgs),
    /// Show the incident and escalation journal, for auditors
    Journal(JournalArgs),
    /// Run a scenario file (rules, commands, clock advances, expectations) on a virtual clock
    Simulate(SimulateArgs),
    /// Show the loaded configuration: pipelines, stages, fields, employees, teams
    #[command(subcommand)]
    Config(ConfigCmd),
    /// Create, list and revoke API tokens (each has a role; see docs/CONFIG.md, roles)
    #[command(subcommand)]
    Token(TokenCmd),
    /// Add, list and remove webhook endpoints: subscriptions to events, delivered by `run`
    #[command(subcommand)]
    Webhook(WebhookCmd),
    /// List the messages to deliver (webhooks, e-mails, subscriptions); retry or drop one
    #[command(subcommand)]
    Outbox(OutboxCmd),
    /// Show a lead's, deal's, contact's or company's timeline in words: who or which rule (and
    /// rule set) did what, then its pending deadlines, delayed robots and tasks
    History(HistoryArgs),
    /// Show why an event happened: its chain of causes back to the person, API call, import,
    /// timer or schedule that started it, with each rule's condition and the values it read
    Explain(ExplainArgs),
    /// Copy the database while it is in use (SQLite's online backup: one consistent snapshot)
    /// and print the head the copy holds
    Backup(BackupArgs),
    /// Replace the database with a backup, once the backup's chain and projections verify;
    /// refuses a backup older than the database (or --head) unless --force
    Restore(RestoreArgs),
    /// Write the whole log as JSON Lines with hashes, for `import-log` (another machine,
    /// later another backend)
    Export(ExportArgs),
    /// Build a new database from an export: every line checked, the projections rebuilt and
    /// verified; an error leaves no database behind
    ImportLog(ImportLogArgs),
    /// The head of sales' reports: funnel, conversion, plan, time in stage, traffic light…
    /// (docs/REPORTS.md defines every figure and its SQL)
    Report(ReportArgs),
    /// Re-run the log's inputs with a candidate rule set in a sandbox (never the live
    /// database) and show which robots' effects would differ, per lead and deal
    /// (docs/RULES.md, "Backtest and coverage")
    Backtest(BacktestArgs),
}

/// `backtest`.
#[derive(Debug, Args)]
pub(crate) struct BacktestArgs {
    /// The candidate rule folder (with --as-recorded, the rule sets the log recorded are used
    /// instead, and this may be left out)
    #[arg(required_unless_present = "as_recorded")]
    pub rules_dir: Option<PathBuf>,
    /// Compare the effects from this time on (the sandbox still runs from the log's start)
    #[arg(long, value_name = "TIME")]
    pub since: Option<String>,
    /// Stop at this time [default: the log's end]
    #[arg(long, value_name = "TIME")]
    pub until: Option<String>,
    /// Show only this lead (and the deals, contacts, companies and tasks made from it); repeatable
    #[arg(long = "lead", value_name = "ID")]
    pub leads: Vec<i64>,
    /// Run the rule set each `ruleset.activated` of the log put in force, from then on (the
    /// equality check: the live history, reproduced)
    #[arg(long)]
    pub as_recorded: bool,
}

/// `rules coverage`.
#[derive(Debug, Args)]
pub(crate) struct CoverageArgs {
    /// The period starts here [default: the log's start]
    #[arg(long, value_name = "TIME")]
    pub since: Option<String>,
    /// The period ends here [default: the log's end]
    #[arg(long, value_name = "TIME")]
    pub until: Option<String>,
}

/// `replay`.
#[derive(Debug, Args)]
pub(crate) struct ReplayArgs {
    /// Write the log up to this position or time (a number is a position; a time is read in
    /// the calendar's zone) [default: the head]
    #[arg(long, value_name = "T|POS", requires = "into")]
    pub until: Option<String>,
    /// Write a new database FILE (refused if it exists) instead of rebuilding the live
    /// projections; the live database is only read
    #[arg(long, value_name = "FILE")]
    pub into: Option<PathBuf>,
}

/// What `history` shows the timeline of.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum HistoryKind {
    /// A lead
    Lead,
    /// A deal
    Deal,
    /// A contact
    Contact,
    /// A company
    Company,
}

/// `history`.
#[derive(Debug, Args)]
pub(crate) struct HistoryArgs {
    /// lead, deal, contact or company
    #[arg(value_enum)]
    pub kind: HistoryKind,
    /// Its id
    pub id: String,
}

/// `explain`.
#[derive(Debug, Args)]
pub(crate) struct ExplainArgs {
    /// The event's position in the log (`leadflow events` and `history` show them)
    #[arg(allow_negative_numbers = true)]
    pub position: i64,
}

#[derive(Debug, Args)]
pub(crate) struct BackupArgs {
    /// The backup file to write (it must not exist yet)
    pub file: PathBuf,
}

#[derive(Debug, Args)]
pub(crate) struct RestoreArgs {
    /// The backup to restore (a file `leadflow backup` wrote)
    pub file: PathBuf,
    /// Restore even a backup older than the database or --head, or of another history
    #[arg(long)]
    pub force: bool,
    /// A head kept from `verify` or `backup`, as POSITION:HASH: the backup must reach it
    #[arg(long, value_name = "POS:HASH")]
    pub head: Option<String>,
}

#[derive(Debug, Args)]
pub(crate) struct ExportArgs {
    /// Write to this file (replaced once complete) instead of stdout
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub(crate) struct ImportLogArgs {
    /// The export to import (JSON Lines from `leadflow export`); the database (--db, else
    /// leadflow.db beside the configuration) must not exist or hold no events
    pub file: PathBuf,
}

/// `token`: API tokens (issue 10, access).
#[derive(Debug, Subcommand)]
pub(crate) enum TokenCmd {
    /// Create a token and print its secret, once: only its hash is stored
    Create {
        /// Its name: lowercase letters, digits, '_', '.', '-' (events record `api:NAME`)
        name: String,
        /// Its role: admin, designer, first_line, sales, head_of_sales, auditor, intake, or
        /// one of `[roles.NAME]`
        #[arg(long)]
        role: String,
        /// The employee it acts for
        #[arg(long)]
        employee: Option<String>,
        /// What it is for
        #[arg(long)]
        note: Option<String>,
    },
    /// List the tokens, revoked ones too (never their secrets)
    List,
    /// Revoke a token: it opens nothing from now on
    Revoke {
        /// The token's name
        name: String,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum WebhookCmd {
    /// Subscribe URL to events: every later event whose type matches is POSTed to it, signed
    /// (Standard Webhooks)
    Add {
        /// Where to POST: an http:// or https:// URL
        url: String,
        /// Event types or patterns, comma-separated: 'lead.*,deal.stage_changed', '*'
        #[arg(long)]
        events: String,
        /// The body: native (leadflow's JSON) or bitrix24 (Bitrix24's outgoing events)
        #[arg(long, default_value = "native")]
        format: String,
        /// The signing secret (whsec_ and base64); one is made and printed once if not given
        #[arg(long, env = "LEADFLOW_WEBHOOK_SECRET", hide_env_values = true)]
        secret: Option<String>,
    },
    /// List the webhook endpoints (--all: with the removed and disabled ones)
    List {
        /// Also the removed and disabled endpoints
        #[arg(long)]
        all: bool,
    },
    /// Remove a webhook endpoint: nothing more is delivered to it
    Remove {
        /// The endpoint: 3 or endpoint-3
        id: String,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum OutboxCmd {
    /// List messages, newest first, with their state, attempts and last error
    List {
        /// Only the failed ones (given up on: `outbox retry` sends them again)
        #[arg(long)]
        failed: bool,
        /// Only the pending ones (not yet delivered)
        #[arg(long)]
        pending: bool,
        /// At most this many (0: all)
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
    /// Give a failed message a new round of attempts
    Retry {
        /// The message id (the ID column of `outbox list`)
        id: i64,
    },
    /// Drop a pending or failed message: it is never delivered
    Drop {
        /// The message id (the ID column of `outbox list`)
        id: i64,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum ConfigCmd {
    /// Print the configuration as every file of it merged and validated (reads no database)
    Show {
        /// Only this part [default: all of them]
        #[arg(value_enum)]
        section: Option<ConfigSection>,
    },
}

/// A part of the configuration `config show` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum ConfigSection {
    /// Pipelines and their stages in order
    Pipelines,
    /// Every stage: semantic, target time, required fields, allowed previous stages, reasons
    Stages,
    /// Custom fields: entity, type, label, group, options
    Fields,
    /// Employees: team, manager, e-mail, active
    Employees,
    /// Teams: manager, pipelines, members
    Teams,
}

impl ConfigSection {
    /// The section's name, as typed.
    pub(crate) fn name(self) -> &'static str {
        match self {
            ConfigSection::Pipelines => "pipelines",
            ConfigSection::Stages => "stages",
            ConfigSection::Fields => "fields",
            ConfigSection::Employees => "employees",
            ConfigSection::Teams => "teams",
        }
    }
}

/// `serve`.
#[derive(Debug, Args)]
pub(crate) struct ServeArgs {
    /// Listen on this address [default: `[server] listen`, else 127.0.0.1:8080]
    #[arg(long, value_name = "HOST:PORT")]
    pub listen: Option<String>,
}

/// `inbox EMPLOYEE`.
#[derive(Debug, Args)]
pub(crate) struct InboxArgs {
    /// The employee whose inbox to show
    pub employee: String,
    /// Only unread notifications
    #[arg(long, conflicts_with = "read")]
    pub unread: bool,
    /// Only notifications already read
    #[arg(long)]
    pub read: bool,
    /// Mark these notifications read (their numbers, the # column); records `notification.read`
    #[arg(long = "mark-read", value_name = "N", num_args = 1.., conflicts_with = "mark_all_read")]
    pub mark_read: Vec<i64>,
    /// Mark every unread notification of the employee read
    #[arg(long)]
    pub mark_all_read: bool,
    /// At most this many notifications (0: all)
    #[arg(long, default_value_t = 50)]
    pub limit: usize,
}

/// `timers`.
#[derive(Debug, Args)]
pub(crate) struct TimersArgs {
    /// Only this stream's timers, e.g. lead-7
    #[arg(long)]
    pub stream: Option<String>,
    /// Only timers due before this time (a time, or +2h / +1d from now)
    #[arg(long, value_name = "TIME")]
    pub due_before: Option<String>,
    /// At most this many (0: all)
    #[arg(long, default_value_t = 0)]
    pub limit: usize,
}

/// How `journal` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum JournalFormat {
    /// Aligned columns
    Table,
    /// Comma-separated values with a header row
    Csv,
    /// JSON Lines, one record per line
    Json,
}

/// `journal` filters and format.
#[derive(Debug, Args)]
pub(crate) struct JournalArgs {
    /// Only this employee
    #[arg(long)]
    pub employee: Option<String>,
    /// Only this kind (e.g. missed_deadline)
    #[arg(long)]
    pub kind: Option<String>,
    /// Only employees of this team
    #[arg(long)]
    pub team: Option<String>,
    /// Only records made by this rule
    #[arg(long)]
    pub rule: Option<String>,
    /// Only records made at or after this time
    #[arg(long, value_name = "TIME")]
    pub since: Option<String>,
    /// Only records made before this time
    #[arg(long, value_name = "TIME")]
    pub until: Option<String>,
    /// Only escalations [default: incidents and escalations]
    #[arg(long)]
    pub escalations: bool,
    /// Only incidents [default: incidents and escalations]
    #[arg(long)]
    pub incidents: bool,
    /// table, csv or json [default: table, or json with --json]
    #[arg(long, value_enum)]
    pub format: Option<JournalFormat>,
}

/// `simulate SCENARIO`.
#[derive(Debug, Args)]
pub(crate) struct SimulateArgs {
    /// The scenario file
    pub scenario: PathBuf,
}

#[derive(Debug, Subcommand)]
pub(crate) enum RulesCmd {
    /// Load a rule set (a folder of TOML files) and report every problem with file:line:col
    Check {
        /// The rule folder [default: --rules, else rules/ beside the configuration]
        dir: Option<PathBuf>,
    },
    /// Print the JSON Schema of rule files (for editor completion and validation)
    Schema {
        /// Leave out the stage, field, team and employee names of the configuration
        #[arg(long)]
        generic: bool,
    },
    /// Per rule of the set in force (or of the --rules folder, run through the backtest
    /// sandbox): how often its trigger matched, its condition said no, its robots acted or
    /// failed, and which rules never matched
    Coverage(CoverageArgs),
}

/// Options shared by every command that changes an existing lead or deal.
#[derive(Debug, Args)]
pub(crate) struct Expect {
    /// Fail with a conflict unless the entity is at this version (optimistic concurrency)
    #[arg(long, value_name = "N")]
    pub expect_version: Option<i64>,
}

#[derive(Debug, Args, Default)]
pub(crate) struct LeadFields {
    /// Title (default: the name, phone or e-mail)
    #[arg(long)]
    pub title: Option<String>,
    /// Contact person's name
    #[arg(long)]
    pub name: Option<String>,
    /// Phone; repeat for several
    #[arg(long = "phone", value_name = "PHONE")]
    pub phones: Vec<String>,
    /// E-mail; repeat for several
    #[arg(long = "email", value_name = "EMAIL")]
    pub emails: Vec<String>,
    /// Where the lead came from (see `sources` in the configuration)
    #[arg(long)]
    pub source: Option<String>,
    /// individual or legal
    #[arg(long)]
    pub client_type: Option<String>,
    /// Comment
    #[arg(long)]
    pub comment: Option<String>,
    /// Link to an existing contact (the Client field)
    #[arg(long, value_name = "ID")]
    pub contact: Option<String>,
    /// Link to an existing company (the Client field)
    #[arg(long, value_name = "ID")]
    pub company: Option<String>,
    /// Custom field value; repeat for several
    #[arg(long = "field", short = 'f', value_name = "NAME=VALUE")]
    pub fields: Vec<String>,
}

#[derive(Debug, Subcommand)]
pub(crate) enum LeadCmd {
    /// Create a lead in the first stage of the lead pipeline
    Create {
        #[command(flatten)]
        fields: LeadFields,
        /// Responsible employee
        #[arg(long)]
        responsible: Option<String>,
        /// Start in this stage instead of the first
        #[arg(long)]
        stage: Option<String>,
    },
    /// Change fields of a lead
    Update {
        /// Lead id (42 or lead-42)
        id: String,
        #[command(flatten)]
        fields: LeadFields,
        /// Clear a field; repeat for several
        #[arg(long, value_name = "FIELD")]
        clear: Vec<String>,
        #[command(flatten)]
        expect: Expect,
    },
    /// Move a lead to another stage
    Move(MoveArgs),
    /// Make an employee responsible for a lead
    Assign(AssignArgs),
    /// Show a lead with its stage history
    Show {
        /// Lead id
        id: String,
        /// Show it as it was at this time or position (a number is a position; a time is
        /// read in the calendar's zone)
        #[arg(long, value_name = "T|POS")]
        as_of: Option<String>,
    },
    /// List leads, newest first
    List(ListArgs),
    /// Delete a lead (not a converted one); its events stay in the log
    Delete(DeleteArgs),
}

/// `delete ID`, for leads, deals, contacts and companies.
#[derive(Debug, Args)]
pub(crate) struct DeleteArgs {
    /// The id (42, or lead-42 / deal-42 / contact-42 / company-42)
    pub id: String,
    /// Why (recorded in the event)
    #[arg(long)]
    pub reason: Option<String>,
    #[command(flatten)]
    pub expect: Expect,
}

/// `move ID STAGE`, for leads and deals.
#[derive(Debug, Args)]
pub(crate) struct MoveArgs {
    /// The id (42, or lead-42 / deal-42)
    pub id: String,
    /// Target stage
    pub stage: String,
    /// Reason (required by failure stages that list reasons)
    #[arg(long)]
    pub reason: Option<String>,
    #[command(flatten)]
    pub expect: Expect,
}

/// `assign ID EMPLOYEE`, for leads and deals.
#[derive(Debug, Args)]
pub(crate) struct AssignArgs {
    /// The id (42, or lead-42 / deal-42)
    pub id: String,
    /// Employee id
    pub employee: String,
    #[command(flatten)]
    pub expect: Expect,
}

#[derive(Debug, Args)]
pub(crate) struct ListArgs {
    /// Search: a phone (any format, matched normalised), an e-mail, an INN (10 or 12 digits
    /// with a valid checksum), or else part of the title or name (a deal's: its contact's or
    /// company's)
    #[arg(long, short = 's', value_name = "TEXT")]
    pub search: Option<String>,
    /// Only this pipeline
    #[arg(long)]
    pub pipeline: Option<String>,
    /// Only this stage
    #[arg(long)]
    pub stage: Option<String>,
    /// Only this responsible employee
    #[arg(long)]
    pub responsible: Option<String>,
    /// Only leads or deals whose responsible is in this team
    #[arg(long)]
    pub team: Option<String>,
    /// Only leads from this source (leads)
    #[arg(long)]
    pub source: Option<String>,
    /// Only repeat leads: their client was already known (leads)
    #[arg(long, conflicts_with = "first_time")]
    pub repeat: bool,
    /// Only first-time leads (leads)
    #[arg(long)]
    pub first_time: bool,
    /// Only created at or after this time
    #[arg(long, value_name = "TIME")]
    pub created_since: Option<String>,
    /// Only created before this time
    #[arg(long, value_name = "TIME")]
    pub created_until: Option<String>,
    /// Only changed at or after this time
    #[arg(long, value_name = "TIME")]
    pub updated_since: Option<String>,
    /// Only changed before this time
    #[arg(long, value_name = "TIME")]
    pub updated_until: Option<String>,
    /// Order by this
    #[arg(long, value_enum, default_value_t = SortBy::Created)]
    pub sort: SortBy,
    /// Oldest (A to Z) first [default: newest (Z to A) first]
    #[arg(long)]
    pub asc: bool,
    /// At most this many rows (0: all)
    #[arg(long, default_value_t = 50)]
    pub limit: usize,
    /// Skip this many rows first (with --limit, pages through the list)
    #[arg(long, default_value_t = 0)]
    pub offset: usize,
}

/// The order of `lead list` and `deal list`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum SortBy {
    /// Creation time
    Created,
    /// Time of the last change
    Updated,
    /// Title
    Title,
    /// Pipeline and stage
    Stage,
    /// Responsible employee
    Responsible,
}

#[derive(Debug, Args, Default)]
pub(crate) struct DealFields {
    /// Title
    #[arg(long)]
    pub title: Option<String>,
    /// Amount, e.g. 125000.50
    #[arg(long)]
    pub amount: Option<String>,
    /// Linked contact
    #[arg(long, value_name = "ID")]
    pub contact: Option<String>,
    /// Linked company
    #[arg(long, value_name = "ID")]
    pub company: Option<String>,
    /// Comment
    #[arg(long)]
    pub comment: Option<String>,
    /// Custom field value; repeat for several
    #[arg(long = "field", short = 'f', value_name = "NAME=VALUE")]
    pub fields: Vec<String>,
}

#[derive(Debug, Subcommand)]
pub(crate) enum DealCmd {
    /// Create a deal in a deal pipeline
    Create {
        #[command(flatten)]
        fields: DealFields,
        /// Pipeline [default: the first deal pipeline]
        #[arg(long)]
        pipeline: Option<String>,
        /// Start in this stage instead of the first
        #[arg(long)]
        stage: Option<String>,
        /// Responsible employee
        #[arg(long)]
        responsible: Option<String>,
        /// The lead this deal came from
        #[arg(long, value_name = "ID")]
        lead: Option<String>,
    },
    /// Change fields of a deal
    Update {
        /// Deal id (7 or deal-7)
        id: String,
        #[command(flatten)]
        fields: DealFields,
        /// Clear a field; repeat for several
        #[arg(long, value_name = "FIELD")]
        clear: Vec<String>,
        #[command(flatten)]
        expect: Expect,
    },
    /// Move a deal to another stage
    Move(MoveArgs),
    /// Make an employee responsible for a deal
    Assign(AssignArgs),
    /// Show a deal with its stage history
    Show {
        /// Deal id
        id: String,
        /// Show it as it was at this time or position (a number is a position; a time is
        /// read in the calendar's zone)
        #[arg(long, value_name = "T|POS")]
        as_of: Option<String>,
    },
    /// List deals, newest first
    List(ListArgs),
    /// Delete a deal; its events stay in the log
    Delete(DeleteArgs),
}

#[derive(Debug, Args, Default)]
pub(crate) struct PartyFields {
    /// Name
    #[arg(long)]
    pub name: Option<String>,
    /// Phone; repeat for several
    #[arg(long = "phone", value_name = "PHONE")]
    pub phones: Vec<String>,
    /// E-mail; repeat for several
    #[arg(long = "email", value_name = "EMAIL")]
    pub emails: Vec<String>,
    /// Responsible employee
    #[arg(long)]
    pub responsible: Option<String>,
    /// Custom field value; repeat for several
    #[arg(long = "field", short = 'f', value_name = "NAME=VALUE")]
    pub fields: Vec<String>,
}

#[derive(Debug, Subcommand)]
pub(crate) enum ContactCmd {
    /// Create a contact
    Create {
        #[command(flatten)]
        fields: PartyFields,
        /// The company the person works for
        #[arg(long, value_name = "ID")]
        company: Option<String>,
    },
    /// Change fields of a contact
    Update {
        /// Contact id
        id: String,
        #[command(flatten)]
        fields: PartyFields,
        /// The company the person works for
        #[arg(long, value_name = "ID")]
        company: Option<String>,
        /// Clear a field; repeat for several
        #[arg(long, value_name = "FIELD")]
        clear: Vec<String>,
    },
    /// Show a contact
    Show {
        /// Contact id
        id: String,
        /// Show it as it was at this time or position (a number is a position; a time is
        /// read in the calendar's zone)
        #[arg(long, value_name = "T|POS")]
        as_of: Option<String>,
    },
    /// List contacts, newest first
    List {
        /// At most this many rows (0: all)
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
    /// Delete a contact; its events stay in the log
    Delete(DeleteArgs),
}

#[derive(Debug, Subcommand)]
pub(crate) enum CompanyCmd {
    /// Create a company
    Create {
        #[command(flatten)]
        fields: PartyFields,
        #[command(flatten)]
        requisites: Requisites,
    },
    /// Change fields of a company
    Update {
        /// Company id
        id: String,
        #[command(flatten)]
        fields: PartyFields,
        #[command(flatten)]
        requisites: Requisites,
        /// Clear a field; repeat for several
        #[arg(long, value_name = "FIELD")]
        clear: Vec<String>,
    },
    /// Show a company
    Show {
        /// Company id
        id: String,
        /// Show it as it was at this time or position (a number is a position; a time is
        /// read in the calendar's zone)
        #[arg(long, value_name = "T|POS")]
        as_of: Option<String>,
    },
    /// List companies, newest first
    List {
        /// At most this many rows (0: all)
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
    /// Delete a company; its events stay in the log
    Delete(DeleteArgs),
}

#[derive(Debug, Args, Default)]
pub(crate) struct Requisites {
    /// Taxpayer number (10 or 12 digits, checksum verified)
    #[arg(long)]
    pub inn: Option<String>,
    /// Settlement account (20 digits, checked against the BIK)
    #[arg(long)]
    pub bank_account: Option<String>,
    /// Bank identification code (9 digits)
    #[arg(long)]
    pub bik: Option<String>,
}

#[derive(Debug, Subcommand)]
pub(crate) enum TaskCmd {
    /// Set a task for an employee
    Create {
        /// call, email, meeting, send_offer or other
        #[arg(long, default_value = "call")]
        kind: String,
        /// What to do
        #[arg(long)]
        title: String,
        /// Who does it
        #[arg(long)]
        assignee: String,
        /// When it is due: a time, or +2h / +1d from now
        #[arg(long)]
        due: String,
        /// The lead it is about
        #[arg(long, value_name = "ID")]
        lead: Option<String>,
        /// The deal it is about
        #[arg(long, value_name = "ID")]
        deal: Option<String>,
    },
    /// Mark a task done
    Complete {
        /// Task id
        id: String,
        /// What came of it
        #[arg(long)]
        result: Option<String>,
    },
    /// List tasks by due time
    List {
        /// Only this assignee
        #[arg(long)]
        assignee: Option<String>,
        /// Only tasks not yet done
        #[arg(long)]
        open: bool,
        /// Only open tasks past their due time
        #[arg(long)]
        overdue: bool,
        /// At most this many rows (0: all)
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
}

/// `import FILE`.
#[derive(Debug, Args)]
#[command(after_long_help = IMPORT_COLUMNS)]
pub(crate) struct ImportArgs {
    /// The file: .csv (with a header row) or .jsonl (one lead object per line)
    pub file: PathBuf,
    /// csv or jsonl [default: from the file extension]
    #[arg(long)]
    pub format: Option<String>,
    /// The CSV file's encoding: utf-8, windows-1251 (cp1251), koi8-r… [default: UTF-8, or
    /// Windows-1251 when the file is not UTF-8 and reads as Russian text]
    #[arg(long, value_name = "ENCODING")]
    pub encoding: Option<String>,
    /// The CSV cell separator: ',' ';' '|' or tab [default: the most frequent of them in the
    /// header row]
    #[arg(long, value_name = "CHAR")]
    pub delimiter: Option<String>,
}

/// The columns `import` accepts, for `import --help` (docs/CONFIG.md says the same).
pub(crate) const IMPORT_COLUMNS: &str = "\
Columns (CSV header names, or JSON Lines keys; every one optional, empty cells are skipped):
  title          the lead's title [default: the name, phone or e-mail]
  name           the contact person's name
  phone, phones  phones, several separated by ',' or ';' (any format; normalised)
  email, emails  e-mails, several separated by ',' or ';'
  source         one of the configuration's sources [default: import, else manual]
  client_type    individual or legal
  responsible    an employee id
  stage          the stage to start in [default: the first]
  comment        free text
  contact        an existing contact's id (42 or contact-42)
  company        an existing company's id
  <field id>     any custom lead field of the configuration (`leadflow config show fields`)
  fields         (JSON Lines) an object of custom fields
A sample file: examples/import/leads.csv. The import is all or nothing: a bad row is named
by its line and nothing is imported. Rows repeating an earlier row, phone or e-mail of the
same file are reported.";

#[derive(Debug, Args)]
pub(crate) struct EventsArgs {
    /// Only this stream, e.g. lead-42
    #[arg(long)]
    pub stream: Option<String>,
    /// Only this type (lead.created, or a prefix like lead.*); repeat for several
    #[arg(long = "type", value_name = "TYPE")]
    pub types: Vec<String>,
    /// Only this actor: an employee id, system, employee:ID, robot:RULE, api:TOKEN (whoever it
    /// acted for) or api:TOKEN@EMPLOYEE
    #[arg(long)]
    pub actor: Option<String>,
    /// Only events that occurred at or after this time
    #[arg(long, value_name = "TIME")]
    pub since: Option<String>,
    /// Only events that occurred before this time
    #[arg(long, value_name = "TIME")]
    pub until: Option<String>,
    /// Start after this position
    #[arg(long, value_name = "POS", default_value_t = 0)]
    pub after: i64,
    /// At most this many events (0: all)
    #[arg(long, default_value_t = 0)]
    pub limit: usize,
    /// Keep printing new events as they are appended (Ctrl-C to stop)
    #[arg(long)]
    pub follow: bool,
}

#[derive(Debug, Args)]
pub(crate) struct VerifyArgs {
    /// A head kept from an earlier `verify`, as POSITION:HASH, to detect cut-off newest events
    #[arg(long, value_name = "POS:HASH")]
    pub head: Option<String>,
    /// Only check the hash chain, not the projections
    #[arg(long)]
    pub chain_only: bool,
}

#[derive(Debug, Args)]
pub(crate) struct DemoArgs {
    /// Where to put the demo's leadflow.toml and leadflow.db [default: a new temporary folder]
    pub dir: Option<PathBuf>,
    /// How many leads to drive through the pipelines
    #[arg(long, default_value_t = 300)]
    pub leads: usize,
    /// Seed of the simulation
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
}

/// Which report `report` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum ReportKind {
    /// Per stage: the period's leads that reached it, stage-to-stage conversion
    Funnel,
    /// Per manager: leads, won, lost, conversion, the share sent to junk and its reasons
    Conversion,
    /// Leads and deals in work per manager and team, against the team's plan
    Managers,
    /// Average time in each stage and the stays over its target
    TimeInStage,
    /// Red / yellow / green per client and per manager, each reason shown
    TrafficLight,
    /// Leads in work with no activity for --days days
    Forgotten,
    /// Leads that came in against leads lost in the period, per manager
    IncomingVsLost,
    /// The daily KPI rows (what the send_report robot sends)
    Kpi,
}

/// How `report` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum ReportFormat {
    /// Aligned columns, times in the calendar's zone
    Table,
    /// Comma-separated values with a header row
    Csv,
    /// One JSON document: the figures and the SQL parameters that give them
    Json,
    /// One self-contained HTML page with SVG charts
    Html,
}

/// `report`.
#[derive(Debug, Args)]
pub(crate) struct ReportArgs {
    /// The report
    #[arg(value_enum)]
    pub report: ReportKind,
    /// The period starts here [default: the beginning; for kpi one day before --until]
    #[arg(long, value_name = "TIME")]
    pub since: Option<String>,
    /// The period ends here; overdue tasks and activity are judged at this time (stages and
    /// fields are today's: --as-of for the whole state of then) [default: now, or --as-of]
    #[arg(long, value_name = "TIME")]
    pub until: Option<String>,
    /// The report as the database stood at this time or position (a number is a position; a
    /// time is read in the calendar's zone); --until may not be later
    #[arg(long, value_name = "T|POS")]
    pub as_of: Option<String>,
    /// Only the members of this team
    #[arg(long)]
    pub team: Option<String>,
    /// Only this pipeline [default: the lead pipeline]
    #[arg(long)]
    pub pipeline: Option<String>,
    /// Only this employee
    #[arg(long)]
    pub employee: Option<String>,
    /// forgotten: days without activity
    #[arg(long, default_value_t = 3)]
    pub days: u32,
    /// table, csv, json or html [default: table, or json with --json]
    #[arg(long, value_enum)]
    pub format: Option<ReportFormat>,
}
