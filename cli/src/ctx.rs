//! Where the configuration, the rules and the database are, who acts, and what time it is:
//! resolved once per invocation from flags, environment variables and the current folder
//! (searched upwards, the way cargo finds its manifest); and reading those files.
//!
//! The rule folder is `--rules DIR` / `LEADFLOW_RULES`, else `rules/` beside the configuration
//! when that folder exists.

use crate::cli::Cli;
use crate::error::CliError;
use chrono::{DateTime, SubsecRound, Utc};
use leadflow_engine::{Actor, Clock, Config, EventMeta, config::Source};
use leadflow_store::{LogFilter, Options, Store};
use std::path::{Path, PathBuf};

/// The wall clock, read to the microsecond (the log's precision: a time the rules compute
/// from `now` — a deadline's due time — is then the one a backtest computes from the stored
/// time of the same event). The CLI is the only place that reads it.
pub(crate) struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now().trunc_subsecs(6)
    }
}

/// A clock stopped at the `--now` time.
pub(crate) struct FixedClock(pub DateTime<Utc>);

impl Clock for FixedClock {
    fn now(&self) -> DateTime<Utc> {
        self.0
    }
}

/// Whether a command only reads the database or may write it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Access {
    /// Opened read-only (`Store::open_read`): never takes the write lock, works on a
    /// read-only file, folder or mount.
    Read,
    /// Like `Read`, for commands that read only the log (`events`, `verify --chain-only`):
    /// on a read-only copy that needs an upgrade, the log is read as it is.
    Log,
    /// Opened for writing: migrates and catches up if needed; each write waits for the lock.
    Write,
}

/// Everything a command needs.
pub(crate) struct Ctx {
    pub config: Config,
    pub config_path: PathBuf,
    pub store: Store,
    pub actor: Actor,
    pub clock: Box<dyn Clock>,
    pub json: bool,
    /// The rule folder: `--rules`, else `rules/` beside the configuration if it exists.
    pub rules_dir: Option<PathBuf>,
    /// Whether a write dated by `--now` before the log's last event is refused (no
    /// `--backdate`).
    pub refuse_backdating: bool,
}

impl Ctx {
    /// Resolves configuration, database, actor and clock, and opens the store for `access`.
    pub(crate) fn open(cli: &Cli, access: Access) -> Result<Ctx, CliError> {
        let config_path = find_config(cli.config.as_deref())?;
        let config = load_config(&config_path)?;
        let clock = clock(cli, &config)?;
        let db = db_path(cli, &config_path);
        let options = Options {
            synchronous: cli.synchronous.parse().map_err(CliError::Usage)?,
            create: false,
            ..Options::default()
        };
        let store = match access {
            Access::Read | Access::Log => open_read(&db, &options, access)?,
            Access::Write => Store::open(&db, &options)?,
        };
        // cli/tests/cli.rs checks the durability in force through this line.
        tracing::debug!(db = %db.display(), synchronous = ?store.synchronous()?, "opened the database");
        let actor = resolve_actor(cli.actor.as_deref(), &config)?;
        let rules_dir = rules_dir(cli.rules.as_deref(), &config_path);
        Ok(Ctx {
            config,
            config_path,
            store,
            actor,
            clock,
            json: cli.json,
            rules_dir,
            refuse_backdating: cli.now.is_some() && !cli.backdate,
        })
    }

    /// The clock that stamps `recorded_at` (through `Store::write_with`, once the write lock
    /// is held): always the wall clock, whatever `--now` says, so a back- or forward-dated
    /// command shows for what it is.
    pub(crate) fn recorded_at(&self) -> &'static dyn Clock {
        &SystemClock
    }

    /// Before a write: refuses one whose `--now` is earlier than the log's last event's
    /// `occurred_at`, naming both times in the calendar's zone, unless `--backdate` was given
    /// (or there is no `--now`: the wall clock is what it is).
    pub(crate) fn check_backdate(&self) -> Result<(), CliError> {
        if !self.refuse_backdating {
            return Ok(());
        }
        let now = self.clock.now();
        let last = self.store.last_position()?;
        if last == 0 {
            return Ok(());
        }
        let Some(event) = self
            .store
            .read_log(&LogFilter::default(), last - 1, 1)?
            .into_iter()
            .next()
        else {
            return Ok(());
        };
        let Some(at) = leadflow_store::parse_time(&event.occurred_at) else {
            return Ok(());
        };
        if now >= at {
            return Ok(());
        }
        let tz = self.config.calendar.timezone;
        let local = |t: DateTime<Utc>| t.with_timezone(&tz).format("%Y-%m-%d %H:%M:%S %:z");
        Err(CliError::Refused(format!(
            "--now {} is before the log's last event (position {}, {} at {}): events would be dated before ones already recorded; pass --backdate to record it anyway",
            local(now),
            event.position,
            event.event_type,
            local(at)
        )))
    }

    /// Metadata for a command issued now by the resolved actor.
    pub(crate) fn meta(&self) -> EventMeta {
        EventMeta::root(self.clock.now(), self.actor.clone())
    }
}

/// Opens the database for a command that only reads. A database from an older leadflow (or
/// with projection tables missing) needs a write first: when this process can write the file,
/// it is migrated once through the write path (`Store::open`: a short write transaction, and
/// the projections' catch-up), then reopened read-only; on a read-only copy the log-only
/// commands read it as it is and the others say what to do.
fn open_read(db: &Path, options: &Options, access: Access) -> Result<Store, CliError> {
    match Store::open_read(db, options) {
        Err(leadflow_store::Error::NeedsUpgrade { why, .. }) if leadflow_store::can_write(db) => {
            tracing::info!("{} {why}: upgrading it once", db.display());
            drop(Store::open(db, options)?);
            Ok(Store::open_read(db, options)?)
        }
        Err(leadflow_store::Error::NeedsUpgrade { .. }) if access == Access::Log => {
            Ok(Store::open_read_log(db, options)?)
        }
        other => Ok(other?),
    }
}

/// The clock: `--now` (read in the calendar's zone) if given, else the wall clock.
pub(crate) fn clock(cli: &Cli, config: &Config) -> Result<Box<dyn Clock>, CliError> {
    Ok(match &cli.now {
        Some(t) => Box::new(FixedClock(
            parse_time(t, config, None).map_err(|e| CliError::Usage(format!("--now: {e}")))?,
        )),
        None => Box::new(SystemClock),
    })
}

/// The database: `--db`, else `leadflow.db` beside the configuration.
pub(crate) fn db_path(cli: &Cli, config_path: &Path) -> PathBuf {
    if let Some(db) = &cli.db {
        return db.clone();
    }
    // Beside leadflow.toml, or beside the leadflow.d/ folder.
    let base = config_path.parent().unwrap_or(Path::new("."));
    let base = if base.as_os_str().is_empty() {
        Path::new(".")
    } else {
        base
    };
    base.join("leadflow.db")
}

/// Finds the configuration: the given path, else `leadflow.toml` or `leadflow.d/` in the
/// current folder or the nearest parent that has one.
pub(crate) fn find_config(given: Option<&Path>) -> Result<PathBuf, CliError> {
    if let Some(p) = given {
        if !p.exists() {
            return Err(CliError::Usage(format!(
                "configuration {} does not exist",
                p.display()
            )));
        }
        return Ok(p.to_owned());
    }
    let cwd = std::env::current_dir().map_err(|e| CliError::io(".", e))?;
    for dir in cwd.ancestors() {
        for name in ["leadflow.toml", "leadflow.d"] {
            let candidate = dir.join(name);
            if candidate.exists() {
                return Ok(candidate);
            }
        }
    }
    Err(CliError::Usage(format!(
        "no leadflow.toml or leadflow.d/ in {} or any parent folder; run `leadflow init` or pass --config",
        cwd.display()
    )))
}

/// Reads and validates a configuration file or every `*.toml` in a folder.
pub(crate) fn load_config(path: &Path) -> Result<Config, CliError> {
    let mut files = Vec::new();
    if path.is_dir() {
        let entries = std::fs::read_dir(path).map_err(|e| CliError::io(path, e))?;
        for entry in entries {
            let p = entry.map_err(|e| CliError::io(path, e))?.path();
            if p.extension().is_some_and(|e| e == "toml") {
                files.push(p);
            }
        }
        files.sort();
        if files.is_empty() {
            return Err(CliError::Usage(format!(
                "the configuration folder {} has no .toml files",
                path.display()
            )));
        }
    } else {
        files.push(path.to_owned());
    }
    let mut sources = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(&f).map_err(|e| CliError::io(&f, e))?;
        sources.push(Source {
            path: f.display().to_string(),
            text,
        });
    }
    Ok(Config::load(&sources)?)
}

/// The rule folder to use: the one given (which must then exist), else `rules/` beside the
/// configuration if it is there.
pub(crate) fn rules_dir(given: Option<&Path>, config_path: &Path) -> Option<PathBuf> {
    if let Some(dir) = given {
        return Some(dir.to_owned());
    }
    let base = match config_path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let dir = base.join("rules");
    dir.is_dir().then_some(dir)
}

/// Reads every `*.toml` file in a rule folder (or one file), in name order.
pub(crate) fn read_rule_files(dir: &Path) -> Result<Vec<Source>, CliError> {
    let mut files = Vec::new();
    if dir.is_dir() {
        for entry in std::fs::read_dir(dir).map_err(|e| CliError::io(dir, e))? {
            let p = entry.map_err(|e| CliError::io(dir, e))?.path();
            if p.extension().is_some_and(|e| e == "toml") {
                files.push(p);
            }
        }
        files.sort();
    } else if dir.is_file() {
        files.push(dir.to_owned());
    } else {
        return Err(CliError::Usage(format!(
            "no rule folder at {}",
            dir.display()
        )));
    }
    files
        .into_iter()
        .map(|f| {
            let text = std::fs::read_to_string(&f).map_err(|e| CliError::io(&f, e))?;
            Ok(Source {
                path: f.display().to_string(),
                text,
            })
        })
        .collect()
}

/// The acting employee: `--as`, else the configuration's default_actor.
pub(crate) fn resolve_actor(given: Option<&str>, config: &Config) -> Result<Actor, CliError> {
    let name = match given.or(config.default_actor.as_ref().map(|a| a.as_str())) {
        Some(n) => n,
        None => {
            return Err(CliError::Usage(
                "no actor: pass --as EMPLOYEE, set LEADFLOW_AS, or set default_actor in the configuration".into(),
            ));
        }
    };
    let actor = match name.parse::<Actor>() {
        Ok(a) => a,
        Err(_) => Actor::Employee(name.into()),
    };
    match &actor {
        Actor::Employee(e) if config.employee(e).is_none() => Err(CliError::Unknown(format!(
            "unknown employee '{e}' in --as; the configuration lists: {}",
            employee_list(config)
        ))),
        Actor::Robot(_) => Err(CliError::Usage(
            "robots act through rules, not through --as".into(),
        )),
        _ => Ok(actor),
    }
}

fn employee_list(config: &Config) -> String {
    config
        .employees
        .keys()
        .map(|e| e.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Reads a time typed on the command line with the engine's one parser
/// ([`leadflow_engine::time::parse_time`]): RFC 3339 with an offset, or a local date and time
/// in the calendar's zone, or `+2h`, `+1d 4h` from `now` when given; bounded to 1970–2999.
pub(crate) fn parse_time(
    text: &str,
    config: &Config,
    now: Option<DateTime<Utc>>,
) -> Result<DateTime<Utc>, CliError> {
    leadflow_engine::time::parse_time(text, config.calendar.timezone, now)
        .map_err(|e| CliError::Usage(e.to_string()))
}
