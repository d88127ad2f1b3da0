//! `rules check` and `rules schema`.

use crate::cli::RulesCmd;
use crate::ctx::{find_config, load_config, read_rule_files};
use crate::error::CliError;
use crate::output::json_pretty;
use leadflow_engine::rules::{RuleSet, json_schema};
use leadflow_robots::Registry;
use std::path::{Path, PathBuf};

/// `rules check` and `rules schema`; `rules_dir` is the global `--rules`.
pub(crate) fn rules(
    config: Option<&Path>,
    rules_dir: Option<&Path>,
    json: bool,
    cmd: RulesCmd,
) -> Result<(), CliError> {
    match cmd {
        RulesCmd::Check { dir } => {
            let config_path = find_config(config)?;
            let config = load_config(&config_path)?;
            let dir = dir
                .or_else(|| rules_dir.map(Path::to_owned))
                .unwrap_or_else(|| {
                    config_path
                        .parent()
                        .map_or_else(|| PathBuf::from("rules"), |p| p.join("rules"))
                });
            let sources = read_rule_files(&dir)?;
            let set =
                RuleSet::load(&sources, &config, &Registry::builtin()).map_err(CliError::Rules)?;
            for w in &set.warnings {
                errln!("warning: {w}");
            }
            if json {
                crate::output::json_line(&serde_json::json!({
                    "ok": true,
                    "rules": set.rules.iter().map(|r| &r.id).collect::<Vec<_>>(),
                    "files": sources.len(),
                    "warnings": set.warnings.iter().map(ToString::to_string).collect::<Vec<_>>(),
                }));
            } else {
                let n = |n: usize, one: &str, many: &str| {
                    format!("{n} {}", if n == 1 { one } else { many })
                };
                outln!(
                    "{}: {} in {}, no errors",
                    dir.display(),
                    n(set.rules.len(), "rule", "rules"),
                    n(sources.len(), "file", "files")
                );
            }
            Ok(())
        }
        RulesCmd::Schema { generic } => {
            let config = if generic {
                None
            } else {
                match find_config(config) {
                    Ok(p) => Some(load_config(&p)?),
                    Err(_) => None,
                }
            };
            json_pretty(&json_schema(&Registry::builtin(), config.as_ref()));
            Ok(())
        }
        RulesCmd::Coverage(_) => unreachable!("main runs coverage with the database"),
    }
}
