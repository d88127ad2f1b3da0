//! The configuration and rules a test starts from, loaded from text; every load that must
//! succeed panics with the loader's own message (file:line:col) when it does not.

use leadflow_engine::config::DEFAULT_CONFIG;
use leadflow_engine::rules::RuleSet;
use leadflow_engine::{Config, ConfigErrors, Source};
use leadflow_robots::{Registry, Runtime};
use std::path::{Path, PathBuf};
use tempfile::TempDir;

/// The embedded default configuration (`examples/leadflow.toml`).
pub fn config() -> Config {
    config_from(DEFAULT_CONFIG)
}

/// A configuration from the text of a `leadflow.toml`.
pub fn config_from(text: &str) -> Config {
    Config::from_toml("leadflow.toml", text).unwrap_or_else(|e| panic!("{e}"))
}

/// One rule file, `path` holding `text`.
pub fn source(path: &str, text: &str) -> Source {
    Source {
        path: path.into(),
        text: text.into(),
    }
}

/// The rule file `path` holding `text`, loaded against `config` with the built-in robots:
/// the rule set, or every problem found.
pub fn try_rule_set(path: &str, text: &str, config: &Config) -> Result<RuleSet, ConfigErrors> {
    RuleSet::load(&[source(path, text)], config, &Registry::builtin())
}

/// The rule file `rules.toml` loaded against `config` with the built-in robots; it must load.
pub fn rule_set(text: &str, config: &Config) -> RuleSet {
    try_rule_set("rules.toml", text, config).unwrap_or_else(|e| panic!("{e}"))
}

/// A runtime for the rule file `rules.toml` on the default configuration.
pub fn runtime(rules: &str) -> Runtime {
    runtime_with(DEFAULT_CONFIG, rules)
}

/// A runtime for the rule file `rules.toml` on the configuration `config_text`.
pub fn runtime_with(config_text: &str, rules: &str) -> Runtime {
    Runtime::load(config_from(config_text), &[source("rules.toml", rules)])
        .unwrap_or_else(|e| panic!("{e}"))
}

/// A path in the repository (`examples/scenarios`, `docs/RULES.md`), wherever the tests run.
pub fn repo(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .join(relative)
}

/// Leads are assigned round robin in the first line and get a `qualification` deadline two
/// working hours on: the rule file of the scenario runner's own tests.
pub const ASSIGN_AND_QUALIFY_RULES: &str = r#"
[[rules]]
id = "assign-first-line"
trigger = { on = "created", entity = "lead" }

  [[rules.robots]]
  robot = "assign"
  strategy = "round_robin"
  team = "first_line"

  [[rules.robots]]
  robot = "schedule_deadline"
  name = "qualification"
  after = "2h"
  working_time = true
"#;

/// A temporary folder laid out for `Scenario::load`: `rules/assign.toml` holding `rules` and
/// `scenario.toml` holding `scenario`; removed when dropped.
pub fn scenario_folder(rules: &str, scenario: &str) -> TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("rules")).unwrap();
    std::fs::write(dir.path().join("rules/assign.toml"), rules).unwrap();
    std::fs::write(dir.path().join("scenario.toml"), scenario).unwrap();
    dir
}
