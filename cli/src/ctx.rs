//! Where the configuration and database are, who acts, and what time it is: resolved once per
//! invocation from flags, environment variables and the current folder (searched upwards, the
//! way cargo finds its manifest).

use crate::cli::Cli;
use crate::error::CliError;
use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use leadflow_engine::{Actor, Clock, Config, EventMeta, config::Source};
use leadflow_store::{Options, Store};
use std::path::{Path, PathBuf};

/// The wall clock. The CLI is the only place that reads it.
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// A clock stopped at the `--now` time.
pub struct FixedClock(pub DateTime<Utc>);

impl Clock for FixedClock {
    fn now(&self) -> DateTime<Utc> {
        self.0
    }
}

/// Everything a command needs.
pub struct Ctx {
    pub config: Config,
    pub config_path: PathBuf,
    pub store: Store,
    pub actor: Actor,
    pub clock: Box<dyn Clock>,
    pub json: bool,
    /// The rule folder: `--rules`, else `rules/` beside the configuration if it exists.
    pub rules_dir: Option<PathBuf>,
}

impl Ctx {
    /// Resolves configuration, database, actor and clock, and opens the store.
    pub fn open(cli: &Cli) -> Result<Ctx, CliError> {
        let config_path = find_config(cli.config.as_deref())?;
        let config = load_config(&config_path)?;
        let db = db_path(cli, &config_path);
        let options = Options {
            synchronous: cli.synchronous.parse().map_err(CliError::Usage)?,
            create: false,
            ..Options::default()
        };
        // A testability hook: cli/tests/cli.rs checks the default durability through it.
        tracing::debug!(db = %db.display(), synchronous = ?options.synchronous, "opening the database");
        let store = Store::open(&db, &options)?;
        let actor = resolve_actor(cli.actor.as_deref(), &config)?;
        let rules_dir = crate::automation::rules_dir(cli.rules.as_deref(), &config_path);
        Ok(Ctx {
            config,
            config_path,
            store,
            actor,
            clock: clock(cli)?,
            json: cli.json,
            rules_dir,
        })
    }

    /// Metadata for a command issued now by the resolved actor.
    pub fn meta(&self) -> EventMeta {
        EventMeta::root(self.clock.now(), self.actor.clone())
    }
}

/// The clock: `--now` if given, else the wall clock.
pub fn clock(cli: &Cli) -> Result<Box<dyn Clock>, CliError> {
    Ok(match &cli.now {
        Some(t) => Box::new(FixedClock(parse_time(t, None)?)),
        None => Box::new(SystemClock),
    })
}

fn db_path(cli: &Cli, config_path: &Path) -> PathBuf {
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
pub fn find_config(given: Option<&Path>) -> Result<PathBuf, CliError> {
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
pub fn load_config(path: &Path) -> Result<Config, CliError> {
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

/// The acting employee: `--as`, else the configuration's default_actor.
pub fn resolve_actor(given: Option<&str>, config: &Config) -> Result<Actor, CliError> {
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
        Actor::Employee(e) if config.employee(e).is_none() => Err(CliError::Usage(format!(
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

/// Parses a time: RFC 3339, `YYYY-MM-DD HH:MM[:SS]` or `YYYY-MM-DD` (UTC), or `+2h`, `+1d 4h`
/// from `now` when given.
pub fn parse_time(text: &str, now: Option<DateTime<Utc>>) -> Result<DateTime<Utc>, CliError> {
    let t = text.trim();
    if let (Some(rest), Some(now)) = (t.strip_prefix('+'), now) {
        let d = leadflow_engine::config::parse_duration(rest).map_err(CliError::Usage)?;
        return Ok(now + d);
    }
    if let Ok(dt) = DateTime::parse_from_rfc3339(t) {
        return Ok(dt.with_timezone(&Utc));
    }
    for fmt in [
        "%Y-%m-%d %H:%M:%S",
        "%Y-%m-%d %H:%M",
        "%Y-%m-%dT%H:%M:%S",
        "%Y-%m-%dT%H:%M",
    ] {
        if let Ok(n) = NaiveDateTime::parse_from_str(t, fmt) {
            return Ok(n.and_utc());
        }
    }
    if let Ok(d) = NaiveDate::parse_from_str(t, "%Y-%m-%d") {
        return Ok(d.and_hms_opt(0, 0, 0).expect("midnight exists").and_utc());
    }
    Err(CliError::Usage(format!(
        "bad time '{text}': write 2026-03-02T09:00:00Z, '2026-03-02 09:00', 2026-03-02{}",
        if now.is_some() { " or +2h" } else { "" }
    )))
}
