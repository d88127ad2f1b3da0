//! The CLI's error: one clear message for the user, and the exit code.

use leadflow_engine::ConfigErrors;
use std::path::Path;

/// Everything that can end a command unsuccessfully.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CliError {
    /// Bad arguments or environment.
    #[error("{0}")]
    Usage(String),
    /// A name or id the command was given (an employee, a team) is not in the configuration.
    #[error("{0}")]
    Unknown(String),
    /// The command was understood and the answer is no (e.g. marking a read notification
    /// read).
    #[error("{0}")]
    Refused(String),
    /// The configuration does not load.
    #[error(transparent)]
    Config(#[from] ConfigErrors),
    /// The rule set does not load.
    #[error("{}", leadflow_engine::diag::summary("the rule set", &.0.0))]
    Rules(ConfigErrors),
    /// The store refused or failed.
    #[error(transparent)]
    Store(#[from] leadflow_store::Error),
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// A row of an import file is bad; nothing was imported.
    #[error("{file}:{line}: {message}; nothing was imported")]
    Import {
        file: String,
        line: usize,
        message: String,
    },
    /// `verify` found a problem (already printed).
    #[error("{0}")]
    Verify(String),
    /// Running the rules failed (the database, not a robot: robot failures are incidents).
    #[error("running the rules failed: {0}")]
    Robot(#[source] leadflow_robots::RobotError),
    /// A command was recorded, but running the rules after it failed.
    #[error(
        "{done}, but running the rules failed: {source}; they run again with the next command, `leadflow tick` or `leadflow run`"
    )]
    RulesFailed {
        /// What the command recorded.
        done: String,
        /// Why the rules failed.
        #[source]
        source: leadflow_robots::RobotError,
    },
    /// `simulate` found differences from the scenario's expectations (already printed).
    #[error("{0}")]
    Mismatch(String),
}

impl From<leadflow_report::Error> for CliError {
    fn from(e: leadflow_report::Error) -> Self {
        match e {
            leadflow_report::Error::Usage(m) => CliError::Usage(m),
            leadflow_report::Error::Unknown(m) => CliError::Unknown(m),
            leadflow_report::Error::Refused(m) => CliError::Refused(m),
            leadflow_report::Error::Store(e) => CliError::Store(e),
        }
    }
}

impl CliError {
    /// A file could not be read or written.
    pub(crate) fn io(path: impl AsRef<Path>, source: std::io::Error) -> Self {
        CliError::Io {
            path: path.as_ref().display().to_string(),
            source,
        }
    }

    /// Names the database file in a storage error about the file (read-only, full, not a
    /// database, an I/O error).
    pub(crate) fn in_db(self, db: Option<&Path>) -> Self {
        match (self, db) {
            (CliError::Store(e), Some(db)) => CliError::Store(e.in_file(db)),
            (other, _) => other,
        }
    }

    /// Whether the log was found broken (by the command itself or by the rules it ran):
    /// trying again cannot help.
    pub(crate) fn is_tampered(&self) -> bool {
        use leadflow_robots::RobotError;
        let store = match self {
            CliError::Store(e) => e,
            CliError::Robot(RobotError::Store(e))
            | CliError::RulesFailed {
                source: RobotError::Store(e),
                ..
            } => match e.downcast_ref::<leadflow_store::Error>() {
                Some(e) => e,
                None => return false,
            },
            _ => return false,
        };
        matches!(store, leadflow_store::Error::Tampered { .. })
    }

    /// The one rule (README, "Exit codes"): 1 when the command was understood and the answer
    /// is no — a business rule refused it, a name or id it gives is not known (an employee, a
    /// team, a stage, an entity), a conflict, a failed verification or a broken log
    /// refused, a bad import row, a
    /// scenario mismatch; 2 when it could not run — malformed arguments, a missing or broken
    /// file, configuration or rule set, a storage failure.
    pub(crate) fn exit_code(&self) -> i32 {
        if self.is_tampered() {
            return 1;
        }
        match self {
            CliError::Store(
                leadflow_store::Error::Rejected(_) | leadflow_store::Error::Conflict { .. },
            )
            | CliError::Unknown(_)
            | CliError::Refused(_)
            | CliError::Import { .. }
            | CliError::Verify(_)
            | CliError::Mismatch(_) => 1,
            _ => 2,
        }
    }
}
