//! Loops among rules: rules that can trigger each other without a pause, reported as warnings
//! when a rule set loads (at run time a depth limit stops such a chain).

use super::{RuleSet, TriggerKey};
use crate::config::{Config, Semantic};
use crate::diag::Diagnostic;
use crate::ids::EntityKind;
use crate::robot::{Emits, RobotCatalog};

impl RuleSet {
    /// Rules that may trigger each other without a pause (no delay, no deadline between them),
    /// as warnings located at the first rule of each loop. At run time a depth limit stops such
    /// a chain and records an incident.
    pub(super) fn cycles(&self, config: &Config, catalog: &dyn RobotCatalog) -> Vec<Diagnostic> {
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
                warnings.push(Diagnostic::new(at, format!("rules can trigger each other forever: {} (at run time the chain stops at the depth limit and an incident is recorded)", names.join(" → "))));
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
