//! Rule sets: a folder of TOML files of rules — trigger → optional CEL condition → robots —
//! loaded whole or not at all, with every problem reported at its file, line and column.
//!
//! A loaded [`RuleSet`] indexes its rules by trigger, so finding the rules an event may fire
//! costs a hash lookup, not a scan of every rule.

use crate::condition::Condition;
use crate::config::{
    Config, ConfigError, ConfigErrors, Semantic, Source, builtin_fields, line_col, parse_duration,
};
use crate::event::Event;
use crate::ids::{EntityKind, PipelineId, StageId};
use crate::robot::{Emits, ParamKind, RobotCatalog, RobotSpec};
use chrono::Duration;
use serde::Deserialize;
use std::collections::{BTreeMap, HashMap};
use toml::Spanned;

/// Where something was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    pub file: String,
    pub line: usize,
    pub col: usize,
}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}:{}", self.file, self.line, self.col)
    }
}

/// What starts a rule.
#[derive(Debug, Clone, PartialEq)]
pub enum Trigger {
    /// A lead or deal was created (optionally only from these sources / in these pipelines).
    Created {
        entity: EntityKind,
        sources: Vec<String>,
        pipelines: Vec<PipelineId>,
    },
    /// A lead or deal entered a stage.
    StageEntered {
        entity: EntityKind,
        pipeline: Option<PipelineId>,
        stage: StageId,
    },
    /// One of these fields of a lead or deal changed.
    FieldChanged {
        entity: EntityKind,
        fields: Vec<String>,
    },
    /// A named deadline elapsed.
    DeadlineElapsed { name: String },
    /// A lead was recognised as a repeat lead.
    RepeatDetected,
    /// A task was completed.
    TaskCompleted,
    /// A task passed its due time undone.
    TaskOverdue,
    /// A lead or deal entered a success stage.
    Won {
        entity: EntityKind,
        pipelines: Vec<PipelineId>,
    },
    /// A lead or deal entered a failure stage.
    Lost {
        entity: EntityKind,
        pipelines: Vec<PipelineId>,
    },
    /// A lead or deal saw no event for this long (optionally only in these stages).
    Idle {
        entity: EntityKind,
        after: Duration,
        stages: Vec<StageId>,
    },
    /// A cron schedule in the calendar's time zone.
    Schedule { cron: String },
}

/// The index key of a trigger: what an event must be to be worth looking at.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TriggerKey {
    Created(EntityKind),
    StageEntered(EntityKind, StageId),
    FieldChanged(EntityKind, String),
    DeadlineElapsed(String),
    RepeatDetected,
    TaskCompleted,
    TaskOverdue,
    Won(EntityKind),
    Lost(EntityKind),
    Idle(EntityKind),
    Schedule,
}

impl Trigger {
    /// The keys under which the rule is indexed.
    pub fn keys(&self) -> Vec<TriggerKey> {
        match self {
            Trigger::Created { entity, .. } => vec![TriggerKey::Created(*entity)],
            Trigger::StageEntered { entity, stage, .. } => {
                vec![TriggerKey::StageEntered(*entity, stage.clone())]
            }
            Trigger::FieldChanged { entity, fields } => fields
                .iter()
                .map(|f| TriggerKey::FieldChanged(*entity, f.clone()))
                .collect(),
            Trigger::DeadlineElapsed { name } => vec![TriggerKey::DeadlineElapsed(name.clone())],
            Trigger::RepeatDetected => vec![TriggerKey::RepeatDetected],
            Trigger::TaskCompleted => vec![TriggerKey::TaskCompleted],
            Trigger::TaskOverdue => vec![TriggerKey::TaskOverdue],
            Trigger::Won { entity, .. } => vec![TriggerKey::Won(*entity)],
            Trigger::Lost { entity, .. } => vec![TriggerKey::Lost(*entity)],
            Trigger::Idle { entity, .. } => vec![TriggerKey::Idle(*entity)],
            Trigger::Schedule { .. } => vec![TriggerKey::Schedule],
        }
    }

    /// The entity the rule's variables describe, if one.
    pub fn entity(&self) -> Option<EntityKind> {
        match self {
            Trigger::Created { entity, .. }
            | Trigger::StageEntered { entity, .. }
            | Trigger::FieldChanged { entity, .. }
            | Trigger::Won { entity, .. }
            | Trigger::Lost { entity, .. }
            | Trigger::Idle { entity, .. } => Some(*entity),
            Trigger::RepeatDetected => Some(EntityKind::Lead),
            Trigger::TaskCompleted | Trigger::TaskOverdue => Some(EntityKind::Task),
            Trigger::DeadlineElapsed { .. } | Trigger::Schedule { .. } => None,
        }
    }
}

/// One robot call of a rule: the robot's name and its parameters as written (checked against
/// the robot's spec at load time).
#[derive(Debug, Clone, PartialEq)]
pub struct RobotCall {
    pub robot: String,
    pub params: BTreeMap<String, toml::Value>,
    pub at: Location,
}

/// A rule.
#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    pub id: String,
    pub description: Option<String>,
    pub trigger: Trigger,
    pub condition: Option<Condition>,
    /// Robots run this long after the trigger; if `delay_working`, this is working time, read
    /// by [`crate::calendar::Calendar::working_duration`] (`1d` is one working day).
    pub delay: Option<Duration>,
    pub delay_working: bool,
    /// Delayed robots survive the lead/deal leaving the stage the rule was triggered in.
    pub survive_move: bool,
    pub robots: Vec<RobotCall>,
    pub at: Location,
}

/// A validated rule set.
#[derive(Debug, Clone)]
pub struct RuleSet {
    pub rules: Vec<Rule>,
    /// Problems that do not stop loading (rules that can trigger each other forever).
    pub warnings: Vec<ConfigError>,
    /// The files, for `ruleset.activated`.
    pub sources: Vec<Source>,
    index: HashMap<TriggerKey, Vec<usize>>,
}

impl RuleSet {
    /// Loads and validates every rule file against the configuration and the robots.
    pub fn load(
        sources: &[Source],
        config: &Config,
        catalog: &dyn RobotCatalog,
    ) -> Result<RuleSet, ConfigErrors> {
        let mut l = Loader {
            config,
            catalog,
            errors: Vec::new(),
        };
        let mut rules = Vec::new();
        for src in sources {
            match toml::from_str::<RawFile>(&src.text) {
                Ok(raw) => {
                    for r in raw.rules {
                        if let Some(rule) = l.rule(src, r) {
                            rules.push(rule);
                        }
                    }
                }
                Err(e) => {
                    let span = e.span().unwrap_or(0..0);
                    l.err(src, span.start, e.message().trim().to_owned());
                }
            }
        }
        let mut seen: HashMap<&str, &Location> = HashMap::new();
        let mut dups = Vec::new();
        for r in &rules {
            if let Some(first) = seen.insert(&r.id, &r.at) {
                dups.push(ConfigError {
                    file: r.at.file.clone(),
                    line: r.at.line,
                    col: r.at.col,
                    message: format!("rule '{}' is defined twice (first at {first})", r.id),
                });
            }
        }
        l.errors.extend(dups);
        if !l.errors.is_empty() {
            l.errors
                .sort_by(|a, b| (&a.file, a.line, a.col).cmp(&(&b.file, b.line, b.col)));
            return Err(ConfigErrors(l.errors));
        }
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
        Ok(set)
    }

    /// The rules indexed under `key`.
    pub fn by_key(&self, key: &TriggerKey) -> impl Iterator<Item = &Rule> {
        self.index
            .get(key)
            .into_iter()
            .flatten()
            .map(|i| &self.rules[*i])
    }

    /// The trigger keys an event answers to (a stage change is also a win or a loss when the
    /// new stage is a success or failure stage).
    pub fn keys_of(config: &Config, event: &Event) -> Vec<TriggerKey> {
        use Event as E;
        let stage_keys = |entity: EntityKind, pipeline: Option<&PipelineId>, to: &StageId| {
            let mut keys = vec![TriggerKey::StageEntered(entity, to.clone())];
            let semantic = pipeline
                .and_then(|p| config.pipeline(p))
                .and_then(|p| p.stage(to))
                .map(|s| s.semantic);
            match semantic {
                Some(Semantic::Success) => keys.push(TriggerKey::Won(entity)),
                Some(Semantic::Failure) => keys.push(TriggerKey::Lost(entity)),
                _ => {}
            }
            keys
        };
        match event {
            E::LeadCreated(e) => {
                let mut k = vec![TriggerKey::Created(EntityKind::Lead)];
                k.extend(stage_keys(EntityKind::Lead, Some(&e.pipeline), &e.stage));
                k
            }
            E::DealCreated(e) => {
                let mut k = vec![TriggerKey::Created(EntityKind::Deal)];
                k.extend(stage_keys(EntityKind::Deal, Some(&e.pipeline), &e.stage));
                k
            }
            E::LeadStageChanged(s) => {
                stage_keys(EntityKind::Lead, Some(&config.lead_pipeline().id), &s.to)
            }
            E::DealStageChanged(s) => {
                let p = config
                    .pipelines
                    .iter()
                    .find(|p| p.entity == EntityKind::Deal && p.stage(&s.to).is_some())
                    .map(|p| &p.id);
                stage_keys(EntityKind::Deal, p, &s.to)
            }
            E::LeadUpdated(u) => u
                .changes
                .keys()
                .map(|k| TriggerKey::FieldChanged(EntityKind::Lead, k.clone()))
                .collect(),
            E::DealUpdated(u) => u
                .changes
                .keys()
                .map(|k| TriggerKey::FieldChanged(EntityKind::Deal, k.clone()))
                .collect(),
            E::LeadAssigned(_) => vec![TriggerKey::FieldChanged(
                EntityKind::Lead,
                "responsible".into(),
            )],
            E::DealAssigned(_) => vec![TriggerKey::FieldChanged(
                EntityKind::Deal,
                "responsible".into(),
            )],
            E::TaskCompleted(_) => vec![TriggerKey::TaskCompleted],
            _ => vec![],
        }
    }

    /// Rules that may trigger each other without a pause (no delay, no deadline between them),
    /// as warnings located at the first rule of each loop. At run time a depth limit stops such
    /// a chain and records an incident.
    fn cycles(&self, config: &Config, catalog: &dyn RobotCatalog) -> Vec<ConfigError> {
        let n = self.rules.len();
        let mut edges: Vec<Vec<usize>> = vec![Vec::new(); n];
        for (i, r) in self.rules.iter().enumerate() {
            if r.delay.is_some() {
                continue;
            }
            let entity = r.trigger.entity().unwrap_or(EntityKind::Lead);
            for call in r.robots.iter().take_while(|c| c.robot != "wait") {
                let Some(spec) = catalog.robot(&call.robot) else {
                    continue;
                };
                for emit in &spec.emits {
                    let keys: Vec<TriggerKey> = match emit {
                        Emits::StageFromParam(p) => call
                            .params
                            .get(*p)
                            .and_then(|v| v.as_str())
                            .map(|s| {
                                let mut keys = vec![TriggerKey::StageEntered(entity, s.into())];
                                if let Some(st) = config
                                    .pipelines
                                    .iter()
                                    .filter(|p| p.entity == entity)
                                    .find_map(|p| p.stage(&s.into()))
                                {
                                    match st.semantic {
                                        Semantic::Success => keys.push(TriggerKey::Won(entity)),
                                        Semantic::Failure => keys.push(TriggerKey::Lost(entity)),
                                        Semantic::InProgress => {}
                                    }
                                }
                                keys
                            })
                            .unwrap_or_default(),
                        Emits::FieldFromParam(p) => call
                            .params
                            .get(*p)
                            .and_then(|v| v.as_str())
                            .map(|f| vec![TriggerKey::FieldChanged(entity, f.to_owned())])
                            .unwrap_or_default(),
                        Emits::Field(f) => vec![TriggerKey::FieldChanged(entity, (*f).to_owned())],
                        Emits::AnyField => self
                            .index
                            .keys()
                            .filter(|k| matches!(k, TriggerKey::FieldChanged(e, _) if *e == entity))
                            .cloned()
                            .collect(),
                        Emits::Created(kind) => vec![TriggerKey::Created(*kind)],
                        Emits::RepeatDetected => vec![TriggerKey::RepeatDetected],
                    };
                    for k in keys {
                        edges[i].extend(self.index.get(&k).into_iter().flatten().copied());
                    }
                }
            }
        }
        // Each strongly connected loop is reported once, at its first rule.
        let mut warnings = Vec::new();
        let mut reported = vec![false; n];
        for start in 0..n {
            if reported[start] {
                continue;
            }
            if let Some(path) = find_cycle(start, &edges) {
                for &i in &path {
                    reported[i] = true;
                }
                let names: Vec<&str> = path
                    .iter()
                    .chain(std::iter::once(&path[0]))
                    .map(|i| self.rules[*i].id.as_str())
                    .collect();
                let at = &self.rules[start].at;
                warnings.push(ConfigError {
                    file: at.file.clone(),
                    line: at.line,
                    col: at.col,
                    message: format!("rules can trigger each other forever: {} (at run time the chain stops at the depth limit and an incident is recorded)", names.join(" → ")),
                });
            }
        }
        warnings
    }
}

fn find_cycle(start: usize, edges: &[Vec<usize>]) -> Option<Vec<usize>> {
    // Depth-first search for a path from `start` back to itself.
    let mut stack = vec![(start, 0usize)];
    let mut path = vec![start];
    let mut visited = vec![false; edges.len()];
    visited[start] = true;
    while let Some((node, next)) = stack.pop() {
        if next < edges[node].len() {
            stack.push((node, next + 1));
            let to = edges[node][next];
            if to == start {
                return Some(path);
            }
            if !visited[to] {
                visited[to] = true;
                stack.push((to, 0));
                path.push(to);
            }
        } else {
            path.pop();
        }
    }
    None
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

/// Every trigger name, for messages and the schema.
pub const TRIGGERS: &[&str] = &[
    "created",
    "stage_entered",
    "field_changed",
    "deadline_elapsed",
    "repeat_detected",
    "task_completed",
    "task_overdue",
    "won",
    "lost",
    "idle",
    "schedule",
];

struct Loader<'a> {
    config: &'a Config,
    catalog: &'a dyn RobotCatalog,
    errors: Vec<ConfigError>,
}

fn is_id(s: &str) -> bool {
    !s.is_empty()
        && s.starts_with(|c: char| c.is_ascii_lowercase())
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '_' | '-' | '.'))
}

impl Loader<'_> {
    fn err(&mut self, src: &Source, offset: usize, message: String) {
        let (line, col) = line_col(&src.text, offset);
        self.errors.push(ConfigError {
            file: src.path.clone(),
            line,
            col,
            message,
        });
    }

    fn loc(&self, src: &Source, offset: usize) -> Location {
        let (line, col) = line_col(&src.text, offset);
        Location {
            file: src.path.clone(),
            line,
            col,
        }
    }

    fn rule(&mut self, src: &Source, raw: Spanned<RawRule>) -> Option<Rule> {
        let at = self.loc(src, raw.span().start);
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
        src: &Source,
        id: &str,
        text: &Spanned<String>,
        entity: Option<EntityKind>,
    ) -> Option<Condition> {
        // The expression starts after the opening quote(s) of the TOML string.
        let span = text.span();
        let raw = &src.text[span.clone()];
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
        src: &Source,
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
        src: &Source,
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
        src: &Source,
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
        src: &Source,
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

    fn trigger(&mut self, src: &Source, id: &str, raw: Spanned<RawTrigger>) -> Option<Trigger> {
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
        src: &Source,
        id: &str,
        raw: Spanned<BTreeMap<String, Spanned<toml::Value>>>,
        entity: Option<EntityKind>,
        trigger_pipeline: Option<&PipelineId>,
    ) -> Option<RobotCall> {
        let at = self.loc(src, raw.span().start);
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
        src: &Source,
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
