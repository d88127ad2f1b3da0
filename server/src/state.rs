//! What every handler shares: the configuration, the writer, the read pool, the rules, the
//! clock, the metrics handle and the service's readiness.

use crate::readers::Readers;
use crate::runtime::Rules;
use crate::writer::Writer;
use leadflow_engine::{Clock, Config};
use metrics_exporter_prometheus::PrometheusHandle;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// Reloads the rule folder: the new runtime (`None`: the folder has no rules), or every
/// problem with its file:line:col. Given by the binary, which reads the files.
pub type ReloadRules =
    Arc<dyn Fn(&Config) -> Result<Option<leadflow_robots::Runtime>, Vec<String>> + Send + Sync>;

/// The shared state; cheap to clone.
#[derive(Clone)]
pub struct AppState {
    /// The configuration.
    pub config: Arc<Config>,
    /// The one writer.
    pub writer: Writer,
    /// Read-only connections.
    pub readers: Readers,
    /// The rule set in force.
    pub rules: Rules,
    /// Loads the rule folder again.
    pub reload: ReloadRules,
    /// The wall clock.
    pub clock: Arc<dyn Clock>,
    /// Renders `/metrics`.
    pub metrics: PrometheusHandle,
    /// False once shutdown began: `/readyz` says so, new writes are refused.
    pub accepting: Arc<AtomicBool>,
    /// Failed authentication attempts by address.
    pub failures: Arc<crate::auth::Failures>,
    /// Tokens recently found by their secret.
    pub tokens: Arc<crate::auth::TokenCache>,
    /// The dashboard's signed-in browsers.
    pub sessions: Arc<crate::ui::Sessions>,
}

impl AppState {
    /// Whether the service takes requests (not shutting down, writer running).
    pub fn ready(&self) -> bool {
        self.accepting.load(Ordering::SeqCst) && self.writer.is_alive()
    }
}
