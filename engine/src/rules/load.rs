//! Loading: reading TOML rule files into the model, checking every trigger, condition and robot
//! call against the configuration and the robots, and reporting every problem at its file, line
//! and column.

use super::{RobotCall, Rule, RuleSet, TRIGGERS, Trigger, TriggerKey};
use crate::condition::Condition;
use crate::config::{Config, builtin_fields};
use crate::diag::{Diagnostic, Diagnostics, FileIndex, Location, Source};
use crate::ids::{EntityKind, PipelineId, StageId};
use crate::robot::{ParamKind, RobotCatalog, RobotSpec};
use crate::time::parse_duration;
use serde::Deserialize;
use std::collections::{BTreeMap, HashMap};
use toml::Spanned;

impl RuleSet {
    /// Loads and validates every rule file against the configuration and the robots.
    pub fn load(
        sources: &[Source],
        config: &Config,
        catalog: &dyn RobotCatalog,
    ) -> Result<RuleSet, Diagnostics> {
        let mut l = Loader {
            config,
            catalog,
            errors: Vec::new(),
        };
        let mut rules = Vec::new();
        for source in sources {
            let src = &FileIndex::of(source);
            match toml::from_str::<RawFile>(&source.text) {
                Ok(raw) => {
                    for r in raw.rules {
                        if let Some(rule) = l.rule(src, r) {
                            rules.push(rule);
                        }
                    }
                }
                Err(e) => l.errors.push(src.toml_error(&e)),
            }
        }
        let mut seen: HashMap<&str, &Location> = HashMap::new();
        let mut dups = Vec::new();
        for r in &rules {
            if let Some(first) = seen.insert(&r.id, &r.at) {
                dups.push(Diagnostic::new(
                    &r.at,
                    format!("rule '{}' is defined twice (first at {first})", r.id),
                ));
            }
        }
        l.errors.extend(dups);
        if !l.errors.is_empty() {
            l.errors
                .sort_by(|a, b| (&a.file, a.line, a.col).cmp(&(&b.file, b.line, b.col)));
            return Err(Diagnostics(l.errors));
        }
        Ok(RuleSet::new(rules, sources, config, catalog))
    }

    /// Indexes validated rules by trigger, and finds the rules that can trigger each other
    /// without a pause (the set's warnings).
    fn new(
        rules: Vec<Rule>,
        sources: &[Source],
        config: &Config,
        catalog: &dyn RobotCatalog,
    ) -> RuleSet {
        let mut index: HashMap<TriggerKey, Vec<usize>> = HashMap::new();
        for (i, r) in rules.iter().enumerate() {
            for k in r.trigger.keys() {
                index.entry(k).or_default().push(i);
            }
        }
        let mut set = RuleSet {
            rules,
            warnings: Vec::new(),
            sources: sources.to_vec(),
            index,
        };
        set.warnings = set.cycles(config, catalog);
        set
    }
}

// ---- raw format -------------------------------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    rules: Vec<Spanned<RawRule>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    id: Spanned<String>,
    description: Option<String>,
    trigger: Spanned<RawTrigger>,
    condition: Option<Spanned<String>>,
    delay: Option<Spanned<String>>,
    #[serde(default)]
    delay_working: bool,
    #[serde(default)]
    survive_move: bool,
    #[serde(default)]
    robots: Vec<Spanned<BTreeMap<String, Spanned<toml::Value>>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTrigger {
    on: Spanned<String>,
    entity: Option<Spanned<String>>,
    pipeline: Option<Spanned<String>>,
    #[serde(default)]
    pipelines: Vec<Spanned<String>>,
    stage: Option<Spanned<String>>,
    #[serde(default)]
    stages: Vec<Spanned<String>>,
    #[serde(default)]
    sources: Vec<Spanned<String>>,
    field: Option<Spanned<String>>,
    #[serde(default)]
    fields: Vec<Spanned<String>>,
    name: Option<Spanned<String>>,
    after: Option<Spanned<String>>,
    cron: Option<Spanned<String>>,
}

struct Loader<'a> {
    config: &'a Config,
    catalog: &'a dyn RobotCatalog,
    errors: Vec<Diagnostic>,
}

fn is_id(s: &str) -> bool {
    !s.is_empty()
        && s.starts_with(|c: char| c.is_ascii_lowercase())
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '_' | '-' | '.'))
}

impl Loader<'_> {
    fn err(&mut self, src: &FileIndex<'_>, offset: usize, message: String) {
        self.errors.push(src.error(offset, message));
    }

    fn rule(&mut self, src: &FileIndex<'_>, raw: Spanned<RawRule>) -> Option<Rule> {
        let at = src.at(raw.span().start);
        let raw = raw.into_inner();
        let id = raw.id.get_ref().clone();
        if !is_id(&id) {
            self.err(
                src,
                raw.id.span().start,
                format!(
                    "rule id '{id}' must start with a lowercase letter and use only a-z, 0-9, _ - ."
                ),
            );
        }
        let before = self.errors.len();
        let trigger = self.trigger(src, &id, raw.trigger);
        // In working time a delay reads like a `wait` with `working_time`: `1d` is one working
        // day of the calendar, bounded in working days.
        let delay = raw.delay.as_ref().and_then(|d| {
            let parsed = if raw.delay_working {
                self.config.calendar.working_duration(d.get_ref())
            } else {
                parse_duration(d.get_ref())
            };
            parsed
                .map_err(|m| self.err(src, d.span().start, format!("rule '{id}': {m}")))
                .ok()
        });
        let condition = raw
            .condition
            .as_ref()
            .and_then(|c| self.condition(src, &id, c, trigger.as_ref().and_then(Trigger::entity)));
        let entity = trigger.as_ref().and_then(Trigger::entity);
        let pipeline = match &trigger {
            Some(Trigger::StageEntered {
                pipeline: Some(p), ..
            }) => Some(p.clone()),
            _ => None,
        };
        let mut robots = Vec::new();
        if raw.robots.is_empty() {
            self.err(
                src,
                raw.id.span().start,
                format!("rule '{id}' has no robots: add at least one [[rules.robots]]"),
            );
        }
        for call in raw.robots {
            if let Some(c) = self.robot_call(src, &id, call, entity, pipeline.as_ref()) {
                robots.push(c);
            }
        }
        if self.errors.len() > before {
            return None;
        }
        Some(Rule {
            id,
            description: raw.description,
            trigger: trigger?,
            condition,
            delay,
            delay_working: raw.delay_working,
            survive_move: raw.survive_move,
            robots,
            at,
        })
    }

    fn condition(
        &mut self,
        src: &FileIndex<'_>,
        id: &str,
        text: &Spanned<String>,
        entity: Option<EntityKind>,
    ) -> Option<Condition> {
        // The expression starts after the opening quote(s) of the TOML string.
        let span = text.span();
        let raw = &src.text()[span.clone()];
        let quote = if raw.starts_with("'''") || raw.starts_with("\"\"\"") {
            3
        } else {
            1
        };
        let start = span.start + quote;
        match Condition::compile(text.get_ref()) {
            Ok(c) => match c.check(self.config, entity) {
                Ok(()) => Some(c),
                Err(m) => {
                    self.err(src, start, format!("rule '{id}': {m}"));
                    None
                }
            },
            Err(e) => {
                let offset = text
                    .get_ref()
                    .lines()
                    .take(e.line)
                    .map(|l| l.len() + 1)
                    .sum::<usize>()
                    + text.get_ref().lines().nth(e.line).map_or(0, |l| {
                        l.char_indices().nth(e.col).map_or(l.len(), |(i, _)| i)
                    });
                self.err(src, start + offset, format!("rule '{id}': {}", e.message));
                None
            }
        }
    }

    fn entity(
        &mut self,
        src: &FileIndex<'_>,
        id: &str,
        raw: &Option<Spanned<String>>,
        on: &Spanned<String>,
        allowed: &[EntityKind],
    ) -> Option<EntityKind> {
        match raw {
            None if allowed.len() == 1 => Some(allowed[0]),
            None => {
                self.err(
                    src,
                    on.span().start,
                    format!(
                        "rule '{id}': trigger '{}' needs entity = \"lead\" or \"deal\"",
                        on.get_ref()
                    ),
                );
                None
            }
            Some(e) => match e.get_ref().parse::<EntityKind>() {
                Ok(k) if allowed.contains(&k) => Some(k),
                _ => {
                    let names: Vec<&str> = allowed.iter().map(|k| k.as_str()).collect();
                    self.err(
                        src,
                        e.span().start,
                        format!(
                            "rule '{id}': entity must be {} for trigger '{}'",
                            names.join(" or "),
                            on.get_ref()
                        ),
                    );
                    None
                }
            },
        }
    }

    fn pipeline_ok(
        &mut self,
        src: &FileIndex<'_>,
        id: &str,
        p: &Spanned<String>,
        entity: EntityKind,
    ) -> Option<PipelineId> {
        match self.config.pipeline(&p.get_ref().as_str().into()) {
            Some(pl) if pl.entity == entity => Some(pl.id.clone()),
            _ => {
                let known: Vec<String> = self
                    .config
                    .pipelines
                    .iter()
                    .filter(|pl| pl.entity == entity)
                    .map(|pl| pl.id.to_string())
                    .collect();
                self.err(
                    src,
                    p.span().start,
                    format!(
                        "rule '{id}': unknown {entity} pipeline '{}'; known: {}",
                        p.get_ref(),
                        known.join(", ")
                    ),
                );
                None
            }
        }
    }

    fn stage_ok(
        &mut self,
        src: &FileIndex<'_>,
        id: &str,
        s: &Spanned<String>,
        entity: EntityKind,
        pipeline: Option<&PipelineId>,
    ) -> Option<StageId> {
        let stage: StageId = s.get_ref().as_str().into();
        let found = self
            .config
            .pipelines
            .iter()
            .filter(|p| p.entity == entity && pipeline.is_none_or(|want| &p.id == want))
            .any(|p| p.stage(&stage).is_some());
        if found {
            Some(stage)
        } else {
            let where_ = pipeline.map_or_else(
                || format!("any {entity} pipeline"),
                |p| format!("pipeline '{p}'"),
            );
            self.err(
                src,
                s.span().start,
                format!("rule '{id}': unknown stage '{}' in {where_}", s.get_ref()),
            );
            None
        }
    }

    fn field_ok(
        &mut self,
        src: &FileIndex<'_>,
        id: &str,
        f: &Spanned<String>,
        entity: EntityKind,
    ) -> bool {
        let name = f.get_ref().as_str();
        let builtin = builtin_fields(entity).contains(&name) || matches!(name, "phones" | "emails");
        if builtin || self.config.field(entity, name).is_some() {
            true
        } else {
            self.err(
                src,
                f.span().start,
                format!("rule '{id}': unknown {entity} field '{name}'"),
            );
            false
        }
    }

    fn trigger(
        &mut self,
        src: &FileIndex<'_>,
        id: &str,
        raw: Spanned<RawTrigger>,
    ) -> Option<Trigger> {
        let t = raw.into_inner();
        let on = t.on.clone();
        let lead_or_deal = [EntityKind::Lead, EntityKind::Deal];
        let unused = |this: &mut Self, name: &str, present: bool, span: usize| {
            if present {
                this.err(
                    src,
                    span,
                    format!("rule '{id}': trigger '{}' takes no '{name}'", on.get_ref()),
                );
            }
        };
        let trigger = match on.get_ref().as_str() {
            "created" => {
                let entity = self.entity(src, id, &t.entity, &on, &lead_or_deal)?;
                let sources = t
                    .sources
                    .iter()
                    .filter_map(|s| {
                        if self.config.sources.contains(s.get_ref()) {
                            Some(s.get_ref().clone())
                        } else {
                            self.err(
                                src,
                                s.span().start,
                                format!(
                                    "rule '{id}': unknown source '{}'; known: {}",
                                    s.get_ref(),
                                    self.config.sources.join(", ")
                                ),
                            );
                            None
                        }
                    })
                    .collect();
                let pipelines = t
                    .pipelines
                    .iter()
                    .chain(&t.pipeline)
                    .filter_map(|p| self.pipeline_ok(src, id, p, entity))
                    .collect();
                Trigger::Created {
                    entity,
                    sources,
                    pipelines,
                }
            }
            "stage_entered" => {
                let entity = self.entity(src, id, &t.entity, &on, &lead_or_deal)?;
                let pipeline = match &t.pipeline {
                    Some(p) => Some(self.pipeline_ok(src, id, p, entity)?),
                    None => None,
                };
                let Some(stage) = &t.stage else {
                    self.err(
                        src,
                        on.span().start,
                        format!("rule '{id}': trigger 'stage_entered' needs stage = \"...\""),
                    );
                    return None;
                };
                let stage = self.stage_ok(src, id, stage, entity, pipeline.as_ref())?;
                Trigger::StageEntered {
                    entity,
                    pipeline,
                    stage,
                }
            }
            "field_changed" => {
                let entity = self.entity(src, id, &t.entity, &on, &lead_or_deal)?;
                let all: Vec<&Spanned<String>> = t.fields.iter().chain(&t.field).collect();
                if all.is_empty() {
                    self.err(src, on.span().start, format!("rule '{id}': trigger 'field_changed' needs field = \"...\" or fields = [...]"));
                    return None;
                }
                let mut fields = Vec::new();
                for f in all {
                    if self.field_ok(src, id, f, entity) {
                        fields.push(match f.get_ref().as_str() {
                            "phone" => "phones".to_owned(),
                            "email" => "emails".to_owned(),
                            other => other.to_owned(),
                        });
                    }
                }
                Trigger::FieldChanged { entity, fields }
            }
            "deadline_elapsed" => match &t.name {
                Some(n) if is_id(n.get_ref()) => Trigger::DeadlineElapsed {
                    name: n.get_ref().clone(),
                },
                Some(n) => {
                    self.err(
                        src,
                        n.span().start,
                        format!(
                            "rule '{id}': deadline name '{}' must be a lowercase id",
                            n.get_ref()
                        ),
                    );
                    return None;
                }
                None => {
                    self.err(
                        src,
                        on.span().start,
                        format!("rule '{id}': trigger 'deadline_elapsed' needs name = \"...\""),
                    );
                    return None;
                }
            },
            "repeat_detected" => Trigger::RepeatDetected,
            "task_completed" => Trigger::TaskCompleted,
            "task_overdue" => Trigger::TaskOverdue,
            "won" | "lost" => {
                let entity = self.entity(src, id, &t.entity, &on, &lead_or_deal)?;
                let pipelines = t
                    .pipelines
                    .iter()
                    .chain(&t.pipeline)
                    .filter_map(|p| self.pipeline_ok(src, id, p, entity))
                    .collect();
                if on.get_ref() == "won" {
                    Trigger::Won { entity, pipelines }
                } else {
                    Trigger::Lost { entity, pipelines }
                }
            }
            "idle" => {
                let entity = self.entity(src, id, &t.entity, &on, &lead_or_deal)?;
                let Some(after) = &t.after else {
                    self.err(
                        src,
                        on.span().start,
                        format!("rule '{id}': trigger 'idle' needs after = \"3d\""),
                    );
                    return None;
                };
                let after = match parse_duration(after.get_ref()) {
                    Ok(d) => d,
                    Err(m) => {
                        self.err(src, after.span().start, format!("rule '{id}': {m}"));
                        return None;
                    }
                };
                let stages = t
                    .stages
                    .iter()
                    .filter_map(|s| self.stage_ok(src, id, s, entity, None))
                    .collect();
                Trigger::Idle {
                    entity,
                    after,
                    stages,
                }
            }
            "schedule" => {
                let Some(cron) = &t.cron else {
                    self.err(
                        src,
                        on.span().start,
                        format!(
                            "rule '{id}': trigger 'schedule' needs cron = \"0 0 18 * * Mon-Fri\""
                        ),
                    );
                    return None;
                };
                if let Err(m) = check_cron(cron.get_ref()) {
                    self.err(src, cron.span().start, format!("rule '{id}': {m}"));
                    return None;
                }
                Trigger::Schedule {
                    cron: cron.get_ref().clone(),
                }
            }
            other => {
                self.err(
                    src,
                    on.span().start,
                    format!(
                        "rule '{id}': unknown trigger '{other}'; triggers are: {}",
                        TRIGGERS.join(", ")
                    ),
                );
                return None;
            }
        };
        // Keys that this trigger does not take are mistakes worth naming.
        let takes: &[&str] = match on.get_ref().as_str() {
            "created" => &["entity", "sources", "pipeline", "pipelines"],
            "stage_entered" => &["entity", "pipeline", "stage"],
            "field_changed" => &["entity", "field", "fields"],
            "deadline_elapsed" => &["name"],
            "won" | "lost" => &["entity", "pipeline", "pipelines"],
            "idle" => &["entity", "after", "stages"],
            "schedule" => &["cron"],
            _ => &[],
        };
        let present: [(&str, Option<usize>); 11] = [
            ("entity", t.entity.as_ref().map(|s| s.span().start)),
            ("pipeline", t.pipeline.as_ref().map(|s| s.span().start)),
            ("pipelines", t.pipelines.first().map(|s| s.span().start)),
            ("stage", t.stage.as_ref().map(|s| s.span().start)),
            ("stages", t.stages.first().map(|s| s.span().start)),
            ("sources", t.sources.first().map(|s| s.span().start)),
            ("field", t.field.as_ref().map(|s| s.span().start)),
            ("fields", t.fields.first().map(|s| s.span().start)),
            ("name", t.name.as_ref().map(|s| s.span().start)),
            ("after", t.after.as_ref().map(|s| s.span().start)),
            ("cron", t.cron.as_ref().map(|s| s.span().start)),
        ];
        for (key, span) in present {
            if let Some(span) = span
                && !takes.contains(&key)
            {
                unused(self, key, true, span);
            }
        }
        Some(trigger)
    }

    fn robot_call(
        &mut self,
        src: &FileIndex<'_>,
        id: &str,
        raw: Spanned<BTreeMap<String, Spanned<toml::Value>>>,
        entity: Option<EntityKind>,
        trigger_pipeline: Option<&PipelineId>,
    ) -> Option<RobotCall> {
        let at = src.at(raw.span().start);
        let start = raw.span().start;
        let mut params = raw.into_inner();
        let Some(name) = params.remove("robot") else {
            self.err(
                src,
                start,
                format!("rule '{id}': a robot call needs robot = \"...\""),
            );
            return None;
        };
        let Some(robot) = name.get_ref().as_str().map(str::to_owned) else {
            self.err(
                src,
                name.span().start,
                format!("rule '{id}': robot must be a name in quotes"),
            );
            return None;
        };
        let Some(spec) = self.catalog.robot(&robot) else {
            let known: Vec<&str> = self.catalog.robots().iter().map(|r| r.name).collect();
            self.err(
                src,
                name.span().start,
                format!(
                    "rule '{id}': unknown robot '{robot}'; robots are: {}",
                    known.join(", ")
                ),
            );
            return None;
        };
        let spec: RobotSpec = spec.clone();
        let before = self.errors.len();
        for p in spec.params.iter().filter(|p| p.required) {
            if !params.contains_key(p.name) {
                self.err(
                    src,
                    name.span().start,
                    format!(
                        "rule '{id}': robot '{robot}' needs parameter '{}' ({})",
                        p.name, p.doc
                    ),
                );
            }
        }
        let pipeline = params
            .get("pipeline")
            .and_then(|p| p.get_ref().as_str())
            .map(PipelineId::from)
            .or_else(|| trigger_pipeline.cloned());
        // Durations of a call with `working_time = true` count working time.
        let working = params
            .get("working_time")
            .and_then(|w| w.get_ref().as_bool())
            .unwrap_or(false);
        for (key, value) in &params {
            let Some(p) = spec.param(key) else {
                let known: Vec<&str> = spec.params.iter().map(|p| p.name).collect();
                self.err(src, value.span().start, format!("rule '{id}': robot '{robot}' has no parameter '{key}'; its parameters are: {}", known.join(", ")));
                continue;
            };
            // `convert_lead`'s `lead_stage` is a stage of the lead pipeline, whatever deal
            // pipeline the call names.
            let lead_pipeline = self.config.lead_pipeline().id.clone();
            let (entity, pipeline) = if key == "lead_stage" {
                (Some(EntityKind::Lead), Some(&lead_pipeline))
            } else {
                (entity, pipeline.as_ref())
            };
            self.param(
                src, id, &robot, p.kind, key, value, entity, pipeline, working,
            );
        }
        if self.errors.len() > before {
            return None;
        }
        Some(RobotCall {
            robot,
            params: params
                .into_iter()
                .map(|(k, v)| (k, v.into_inner()))
                .collect(),
            at,
        })
    }

    #[allow(clippy::too_many_arguments)]
    fn param(
        &mut self,
        src: &FileIndex<'_>,
        id: &str,
        robot: &str,
        kind: ParamKind,
        key: &str,
        value: &Spanned<toml::Value>,
        entity: Option<EntityKind>,
        pipeline: Option<&PipelineId>,
        working: bool,
    ) {
        let at = value.span().start;
        let calendar = &self.config.calendar;
        let duration = |s: &str| {
            if working {
                calendar.working_duration(s)
            } else {
                parse_duration(s)
            }
        };
        let bad = |this: &mut Self, what: &str| {
            this.err(
                src,
                at,
                format!("rule '{id}': robot '{robot}': '{key}' must be {what}"),
            );
        };
        let text = value.get_ref().as_str().map(str::to_owned);
        let spanned = |s: &str| Spanned::new(value.span(), s.to_owned());
        let entity_or_lead = entity
            .filter(|e| matches!(e, EntityKind::Lead | EntityKind::Deal))
            .unwrap_or(EntityKind::Lead);
        match kind {
            ParamKind::Text => {
                if text.is_none() {
                    bad(self, "text in quotes");
                }
            }
            ParamKind::Template => match &text {
                Some(t) => {
                    if let Err(m) = crate::template::check(
                        t,
                        &crate::condition::sample_variables(self.config, entity),
                    ) {
                        self.err(
                            src,
                            at,
                            format!("rule '{id}': robot '{robot}': '{key}': {m}"),
                        );
                    }
                }
                None => bad(self, "text in quotes"),
            },
            ParamKind::Bool => {
                if value.get_ref().as_bool().is_none() {
                    bad(self, "true or false");
                }
            }
            ParamKind::Int => {
                if value.get_ref().as_integer().is_none_or(|i| i <= 0) {
                    bad(self, "a whole number above 0");
                }
            }
            ParamKind::Duration => match text.as_deref().map(duration) {
                Some(Ok(_)) => {}
                Some(Err(m)) => self.err(src, at, format!("rule '{id}': robot '{robot}': {m}")),
                None => bad(self, "a duration in quotes, like \"2h\""),
            },
            ParamKind::DurationCases => match value.get_ref() {
                toml::Value::String(s) => {
                    if let Err(m) = duration(s) {
                        self.err(src, at, format!("rule '{id}': robot '{robot}': {m}"));
                    }
                }
                toml::Value::Array(cases) => {
                    for case in cases {
                        let table = case.as_table();
                        let after = table.and_then(|t| t.get("after")).and_then(|a| a.as_str());
                        match after.map(duration) {
                            Some(Ok(_)) => {}
                            Some(Err(m)) => {
                                self.err(src, at, format!("rule '{id}': robot '{robot}': {m}"))
                            }
                            None => bad(
                                self,
                                "a duration or a list of { if = \"...\", after = \"2h\" }",
                            ),
                        }
                        if let Some(cond) = table.and_then(|t| t.get("if")) {
                            match cond.as_str().map(Condition::compile) {
                                Some(Ok(c)) => {
                                    if let Err(m) = c.check(self.config, entity) {
                                        self.err(
                                            src,
                                            at,
                                            format!("rule '{id}': robot '{robot}': {m}"),
                                        );
                                    }
                                }
                                Some(Err(e)) => self.err(
                                    src,
                                    at,
                                    format!("rule '{id}': robot '{robot}': {}", e.message),
                                ),
                                None => bad(self, "cases whose 'if' is a condition in quotes"),
                            }
                        }
                        if let Some(extra) = table
                            .and_then(|t| t.keys().find(|k| !matches!(k.as_str(), "if" | "after")))
                        {
                            self.err(src, at, format!("rule '{id}': robot '{robot}': a case takes only 'if' and 'after', not '{extra}'"));
                        }
                    }
                }
                _ => bad(
                    self,
                    "a duration or a list of { if = \"...\", after = \"2h\" }",
                ),
            },
            ParamKind::Stage => match text {
                Some(s) => {
                    let _ = self.stage_ok(src, id, &spanned(&s), entity_or_lead, pipeline);
                }
                None => bad(self, "a stage id in quotes"),
            },
            ParamKind::Pipeline => {
                match text {
                    Some(s) => {
                        if self.config.pipeline(&s.as_str().into()).is_none() {
                            let known: Vec<String> = self
                                .config
                                .pipelines
                                .iter()
                                .map(|p| p.id.to_string())
                                .collect();
                            self.err(src, at, format!("rule '{id}': robot '{robot}': unknown pipeline '{s}'; known: {}", known.join(", ")));
                        }
                    }
                    None => bad(self, "a pipeline id in quotes"),
                }
            }
            ParamKind::Field => match text {
                Some(s) => {
                    self.field_ok(src, id, &spanned(&s), entity_or_lead);
                }
                None => bad(self, "a field name in quotes"),
            },
            ParamKind::Requirements => match value.get_ref().as_array() {
                Some(items) => {
                    for item in items {
                        match item.as_str() {
                            Some(req) => {
                                for alt in req.split('|') {
                                    self.field_ok(src, id, &spanned(alt.trim()), entity_or_lead);
                                }
                            }
                            None => bad(self, "a list of field names"),
                        }
                    }
                }
                None => bad(
                    self,
                    "a list of field names like [\"budget\", \"company_name|inn\"]",
                ),
            },
            ParamKind::Team => match text {
                Some(s) if self.config.teams.contains_key(&s.as_str().into()) => {}
                Some(s) => {
                    let known: Vec<&str> = self.config.teams.keys().map(|t| t.as_str()).collect();
                    self.err(
                        src,
                        at,
                        format!(
                            "rule '{id}': robot '{robot}': unknown team '{s}'; teams are: {}",
                            known.join(", ")
                        ),
                    );
                }
                None => bad(self, "a team id in quotes"),
            },
            ParamKind::Employee => match text {
                Some(s) if self.config.employee(&s.as_str().into()).is_some() => {}
                Some(s) => self.err(
                    src,
                    at,
                    format!("rule '{id}': robot '{robot}': unknown employee '{s}'"),
                ),
                None => bad(self, "an employee id in quotes"),
            },
            ParamKind::OneOf(words) => match text {
                Some(s) if words.contains(&s.as_str()) => {}
                _ => bad(self, &format!("one of {}", words.join(", "))),
            },
            ParamKind::DeadlineName => match text {
                Some(s) if is_id(&s) => {}
                _ => bad(self, "a lowercase deadline name"),
            },
            ParamKind::Condition => match text.as_deref().map(Condition::compile) {
                Some(Ok(c)) => {
                    if let Err(m) = c.check(self.config, entity) {
                        self.err(src, at, format!("rule '{id}': robot '{robot}': {m}"));
                    }
                }
                Some(Err(e)) => self.err(
                    src,
                    at,
                    format!("rule '{id}': robot '{robot}': {}", e.message),
                ),
                None => bad(self, "a condition in quotes"),
            },
            ParamKind::Value => {}
            ParamKind::List => {
                if !value
                    .get_ref()
                    .as_array()
                    .is_some_and(|a| a.iter().all(|v| v.is_str()))
                {
                    bad(self, "a list of words in quotes");
                }
            }
        }
    }
}

/// Checks a cron expression (the `cron` crate's syntax, seconds first: `0 0 18 * * Mon-Fri`).
pub fn check_cron(expr: &str) -> Result<cron::Schedule, String> {
    expr.parse::<cron::Schedule>()
        .map_err(|e| format!("bad cron expression '{expr}': {e}; write sec min hour day month weekday, e.g. \"0 0 18 * * Mon-Fri\""))
}
