//! `config show [SECTION]`: the loaded configuration as tables or JSON — what the pipelines,
//! stages, fields, employees and teams are after every file is merged and validated. Reads no
//! database.

use crate::cli::ConfigSection;
use crate::error::CliError;
use crate::output::{Table, human_duration, json_line, json_pretty, opt};
use leadflow_engine::Config;
use leadflow_engine::config::{Pipeline, Stage};
use serde_json::{Value, json};

fn stage_json(p: &Pipeline, s: &Stage) -> Value {
    json!({
        "pipeline": p.id.to_string(),
        "id": s.id.to_string(),
        "name": s.name,
        "semantic": s.semantic.as_str(),
        "target_seconds": s.target.map(|d| d.num_seconds()),
        "required": s.required.iter().map(ToString::to_string).collect::<Vec<_>>(),
        "required_when": s.required_when.iter().map(|r| json!({
            "field": r.field,
            "equals": r.equals,
            "required": r.required.iter().map(ToString::to_string).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
        "from": s.from.as_ref().map(|f| f.iter().map(ToString::to_string).collect::<Vec<_>>()),
        "reasons": s.reasons,
    })
}

/// One JSON object per row of `section`.
fn rows(config: &Config, section: ConfigSection) -> Vec<Value> {
    match section {
        ConfigSection::Pipelines => config
            .pipelines
            .iter()
            .map(|p| {
                json!({
                    "id": p.id.to_string(),
                    "name": p.name,
                    "entity": p.entity.as_str(),
                    "stages": p.stages.iter().map(|s| s.id.to_string()).collect::<Vec<_>>(),
                })
            })
            .collect(),
        ConfigSection::Stages => config
            .pipelines
            .iter()
            .flat_map(|p| p.stages.iter().map(move |s| stage_json(p, s)))
            .collect(),
        ConfigSection::Fields => config
            .fields
            .iter()
            .map(|f| {
                json!({
                    "id": f.id,
                    "entity": f.entity.as_str(),
                    "type": f.ty.as_str(),
                    "label": f.label,
                    "group": f.group,
                    "options": f.options,
                })
            })
            .collect(),
        ConfigSection::Employees => config
            .employees
            .values()
            .map(|e| {
                json!({
                    "id": e.id.to_string(),
                    "name": e.name,
                    "team": e.team.as_ref().map(ToString::to_string),
                    "manager": e.manager.as_ref().map(ToString::to_string),
                    "email": e.email,
                    "active": e.active,
                })
            })
            .collect(),
        ConfigSection::Teams => config
            .teams
            .values()
            .map(|t| {
                json!({
                    "id": t.id.to_string(),
                    "name": t.name,
                    "manager": t.manager.as_ref().map(ToString::to_string),
                    "pipelines": t.pipelines.iter().map(ToString::to_string).collect::<Vec<_>>(),
                    "members": config.employees.values()
                        .filter(|e| e.team.as_ref() == Some(&t.id))
                        .map(|e| e.id.to_string())
                        .collect::<Vec<_>>(),
                })
            })
            .collect(),
    }
}

fn text(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        Value::Array(items) if items.is_empty() => "-".into(),
        Value::Array(items) => items.iter().map(text).collect::<Vec<_>>().join(", "),
        Value::Bool(b) => if *b { "yes" } else { "no" }.into(),
        other => other.to_string(),
    }
}

fn table(config: &Config, section: ConfigSection) -> Table {
    let rows = rows(config, section);
    let (headers, keys): (&[&'static str], &[&str]) = match section {
        ConfigSection::Pipelines => (
            &["ID", "ENTITY", "NAME", "STAGES"],
            &["id", "entity", "name", "stages"],
        ),
        ConfigSection::Stages => (
            &[
                "PIPELINE", "STAGE", "NAME", "SEMANTIC", "TARGET", "REQUIRED", "FROM", "REASONS",
            ],
            &[
                "pipeline", "id", "name", "semantic", "target", "required", "from", "reasons",
            ],
        ),
        ConfigSection::Fields => (
            &["ID", "ENTITY", "TYPE", "LABEL", "GROUP", "OPTIONS"],
            &["id", "entity", "type", "label", "group", "options"],
        ),
        ConfigSection::Employees => (
            &["ID", "NAME", "TEAM", "MANAGER", "EMAIL", "ACTIVE"],
            &["id", "name", "team", "manager", "email", "active"],
        ),
        ConfigSection::Teams => (
            &["ID", "NAME", "MANAGER", "PIPELINES", "MEMBERS"],
            &["id", "name", "manager", "pipelines", "members"],
        ),
    };
    let mut t = Table::new(headers);
    for r in &rows {
        t.row(
            keys.iter()
                .map(|k| match *k {
                    "target" => r["target_seconds"].as_i64().map_or_else(
                        || "-".into(),
                        |s| human_duration(chrono::Duration::seconds(s)),
                    ),
                    "required" => {
                        let mut parts = vec![text(&r["required"])];
                        for w in r["required_when"].as_array().into_iter().flatten() {
                            parts.push(format!(
                                "{} when {} = {}",
                                text(&w["required"]),
                                text(&w["field"]),
                                text(&w["equals"])
                            ));
                        }
                        parts.retain(|p| p != "-");
                        if parts.is_empty() {
                            "-".into()
                        } else {
                            parts.join("; ")
                        }
                    }
                    k => text(&r[k]),
                })
                .collect(),
        );
    }
    t
}

const ALL: [ConfigSection; 5] = [
    ConfigSection::Pipelines,
    ConfigSection::Stages,
    ConfigSection::Fields,
    ConfigSection::Employees,
    ConfigSection::Teams,
];

/// `config show [SECTION]`.
pub(crate) fn show(
    config: &Config,
    path: &std::path::Path,
    section: Option<ConfigSection>,
    as_json: bool,
) -> Result<(), CliError> {
    match (section, as_json) {
        (Some(s), true) => rows(config, s).iter().for_each(json_line),
        (Some(s), false) => table(config, s).print(),
        (None, true) => {
            let mut all = json!({
                "path": path.display().to_string(),
                "currency": config.currency,
                "default_actor": config.default_actor.as_ref().map(ToString::to_string),
                "sources": config.sources,
                "timezone": config.calendar.timezone.name(),
            });
            for s in ALL {
                all[s.name()] = Value::Array(rows(config, s));
            }
            json_pretty(&all);
        }
        (None, false) => {
            outln!("configuration {}", path.display());
            outln!(
                "currency {}, time zone {}, default actor {}, sources: {}",
                config.currency,
                config.calendar.timezone.name(),
                opt(&config.default_actor),
                config.sources.join(", ")
            );
            for s in ALL {
                outln!();
                outln!("{}:", s.name());
                table(config, s).print();
            }
        }
    }
    Ok(())
}
