//! Why a scenario could not be loaded or run.

use crate::RobotError;
use leadflow_engine::config::{ConfigError, ConfigErrors};
use leadflow_engine::diag::summary;
use leadflow_engine::workspace::{BackendError, WorkspaceError};
use std::path::PathBuf;

/// Why a scenario could not be loaded or run (as opposed to a [`Mismatch`](super::Mismatch): the scenario ran,
/// and something was not as expected).
#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    /// A file could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The scenario file is malformed: every problem, each with `file:line:column`.
    #[error("{}", summary("the scenario", .0))]
    Invalid(Vec<ConfigError>),
    /// The configuration the scenario names has errors.
    #[error("{0}")]
    Config(ConfigErrors),
    /// The scenario's rule set has errors.
    #[error("{}", summary("the rule set", &.0.0))]
    Rules(ConfigErrors),
    /// The database failed while the scenario ran.
    #[error(transparent)]
    Store(BackendError),
    /// The rules runtime failed (a database error: robots' own failures are incidents).
    #[error(transparent)]
    Runtime(#[from] RobotError),
}

impl From<WorkspaceError> for ScenarioError {
    fn from(e: WorkspaceError) -> Self {
        match e {
            WorkspaceError::Backend(b) => ScenarioError::Store(b),
            // A refused command is a mismatch, handled where commands run.
            WorkspaceError::Rejected(r) => ScenarioError::Runtime(RobotError::Rejected(r)),
        }
    }
}
