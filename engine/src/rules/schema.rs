//! The JSON Schema of a rule file, for editors.

use super::TRIGGERS;
use crate::config::{Config, builtin_fields};
use crate::ids::EntityKind;
use crate::robot::{ParamKind, RobotCatalog};

/// The JSON Schema of a rule file, for editors (VS Code with Even Better TOML, for one): every
/// trigger and robot with its parameters; with a configuration, the stage, pipeline, field,
/// team and employee names too.
pub fn json_schema(catalog: &dyn RobotCatalog, config: Option<&Config>) -> serde_json::Value {
    use serde_json::json;
    let names = |f: &dyn Fn(&Config) -> Vec<String>| -> serde_json::Value {
        match config {
            Some(c) => {
                let mut v = f(c);
                v.sort();
                v.dedup();
                json!({ "type": "string", "enum": v })
            }
            None => json!({ "type": "string" }),
        }
    };
    let stages = names(&|c| {
        c.pipelines
            .iter()
            .flat_map(|p| p.stages.iter().map(|s| s.id.to_string()))
            .collect()
    });
    let pipelines = names(&|c| c.pipelines.iter().map(|p| p.id.to_string()).collect());
    let fields = names(&|c| {
        let mut f: Vec<String> = c.fields.iter().map(|f| f.id.clone()).collect();
        for e in [EntityKind::Lead, EntityKind::Deal] {
            f.extend(builtin_fields(e).iter().map(|s| (*s).to_owned()));
        }
        f
    });
    let teams = names(&|c| c.teams.keys().map(|t| t.to_string()).collect());
    let employees = names(&|c| c.employees.keys().map(|e| e.to_string()).collect());
    let sources = names(&|c| c.sources.clone());
    let duration = json!({ "type": "string", "pattern": "^\\s*(\\d+(s|m|min|h|d|w)\\s*)+$", "description": "e.g. 30m, 2h, 1d 4h" });
    let param = |kind: ParamKind| -> serde_json::Value {
        match kind {
            ParamKind::Text | ParamKind::Template | ParamKind::Condition => {
                json!({ "type": "string" })
            }
            ParamKind::DeadlineName => {
                json!({ "type": "string", "pattern": "^[a-z][a-z0-9_.-]*$" })
            }
            ParamKind::Bool => json!({ "type": "boolean" }),
            ParamKind::Int => json!({ "type": "integer", "minimum": 1 }),
            ParamKind::Duration => duration.clone(),
            ParamKind::DurationCases => json!({ "oneOf": [duration.clone(), {
                "type": "array",
                "items": { "type": "object", "additionalProperties": false, "required": ["after"],
                           "properties": { "if": { "type": "string", "description": "CEL condition" }, "after": duration.clone() } }
            }] }),
            ParamKind::Stage => stages.clone(),
            ParamKind::Pipeline => pipelines.clone(),
            ParamKind::Field => fields.clone(),
            ParamKind::Requirements | ParamKind::List => {
                json!({ "type": "array", "items": { "type": "string" } })
            }
            ParamKind::Team => teams.clone(),
            ParamKind::Employee => employees.clone(),
            ParamKind::OneOf(words) => json!({ "type": "string", "enum": words }),
            ParamKind::Value => json!({}),
        }
    };
    let robots: Vec<serde_json::Value> = catalog
        .robots()
        .iter()
        .map(|r| {
            let mut props = serde_json::Map::new();
            props.insert("robot".into(), json!({ "const": r.name, "description": r.doc }));
            let mut required = vec![json!("robot")];
            for p in &r.params {
                let mut schema = param(p.kind);
                if let Some(o) = schema.as_object_mut() {
                    o.insert("description".into(), json!(p.doc));
                }
                props.insert(p.name.into(), schema);
                if p.required {
                    required.push(json!(p.name));
                }
            }
            json!({ "type": "object", "description": r.doc, "additionalProperties": false, "required": required, "properties": props })
        })
        .collect();
    let list = |item: serde_json::Value| json!({ "type": "array", "items": item });
    json!({
        "$schema": "http://json-schema.org/draft-07/schema#",
        "title": "leadflow rule file",
        "description": "A file of a leadflow rule set; see docs/RULES.md.",
        "type": "object",
        "additionalProperties": false,
        "properties": { "rules": { "type": "array", "items": { "$ref": "#/definitions/rule" } } },
        "definitions": {
            "rule": {
                "type": "object",
                "additionalProperties": false,
                "required": ["id", "trigger", "robots"],
                "properties": {
                    "id": { "type": "string", "pattern": "^[a-z][a-z0-9_.-]*$" },
                    "description": { "type": "string" },
                    "trigger": { "$ref": "#/definitions/trigger" },
                    "condition": { "type": "string", "description": "CEL expression over lead, deal, task, event, responsible, time" },
                    "delay": duration,
                    "delay_working": { "type": "boolean", "description": "count the delay in working time" },
                    "survive_move": { "type": "boolean", "description": "delayed robots still run after the lead/deal leaves the stage" },
                    "robots": { "type": "array", "minItems": 1, "items": { "oneOf": robots } }
                }
            },
            "trigger": {
                "type": "object",
                "additionalProperties": false,
                "required": ["on"],
                "properties": {
                    "on": { "type": "string", "enum": TRIGGERS },
                    "entity": { "type": "string", "enum": ["lead", "deal"] },
                    "pipeline": pipelines.clone(),
                    "pipelines": list(pipelines),
                    "stage": stages.clone(),
                    "stages": list(stages),
                    "sources": list(sources),
                    "field": fields.clone(),
                    "fields": list(fields),
                    "name": { "type": "string", "description": "deadline name" },
                    "after": duration,
                    "cron": { "type": "string", "description": "sec min hour day month weekday, e.g. 0 0 18 * * Mon-Fri" }
                }
            }
        }
    })
}
