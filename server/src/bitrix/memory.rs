//! An in-memory [`Crm`] for tests and sandboxes: the engine's own `decide` and `apply` over
//! entities in a map, list requests evaluated by a scan (small and obviously right rather than
//! fast). It is also the reference for what a [`ListRequest`] means: a store-backed `Crm`
//! answers the same rows in the same order.

use super::dispatch::{Binding, Crm, Listed};
use super::error::Error;
use super::filter::{Cmp, Condition, Direction, Field, ListRequest, Operand};
use super::mapping::Mapping;
use super::method::Method;
use super::records::{self, Found};
use chrono::{DateTime, Duration, Utc};
use leadflow_engine::Command;
use leadflow_engine::command::Target;
use leadflow_engine::config::Config;
use leadflow_engine::decide::{Lookup, decide};
use leadflow_engine::ids::{EntityKind, StreamId};
use leadflow_engine::model::{self, Entity};
use leadflow_store::query::Visit;
use serde_json::Value;
use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

/// The in-memory CRM. Every change advances its clock by one second, so records have
/// distinct, increasing times.
#[derive(Debug, Clone)]
pub struct MemoryCrm {
    config: Arc<Config>,
    mapping: Mapping,
    entities: BTreeMap<StreamId, Entity>,
    history: BTreeMap<StreamId, Vec<Visit>>,
    /// Leads marked as repeats.
    pub repeats: BTreeSet<i64>,
    /// Comments added, by record.
    pub comments: Vec<(StreamId, String)>,
    /// Subscriptions.
    pub bound: Vec<Binding>,
    /// Methods refused as if the token's role lacked them.
    pub denied: BTreeSet<String>,
    /// How many times [`Crm::execute`] ran (a rejected call counts too).
    pub executions: usize,
    now: DateTime<Utc>,
}

struct Exists<'a>(&'a BTreeMap<StreamId, Entity>);

impl Lookup for Exists<'_> {
    fn exists(&self, stream: StreamId) -> bool {
        self.0.contains_key(&stream)
    }

    fn token(&self, _name: &str) -> Option<leadflow_engine::decide::TokenState> {
        // The facade makes no tokens.
        None
    }
}

impl MemoryCrm {
    /// An empty CRM whose clock starts at `now`.
    pub fn new(config: Arc<Config>, now: DateTime<Utc>) -> MemoryCrm {
        MemoryCrm {
            mapping: Mapping::new(config.clone()),
            config,
            entities: BTreeMap::new(),
            history: BTreeMap::new(),
            repeats: BTreeSet::new(),
            comments: Vec::new(),
            bound: Vec::new(),
            denied: BTreeSet::new(),
            executions: 0,
            now,
        }
    }

    /// The entity of a stream, as it stands.
    pub fn entity(&self, stream: StreamId) -> Option<&Entity> {
        self.entities.get(&stream)
    }

    /// How many records of a kind exist.
    pub fn count(&self, kind: EntityKind) -> usize {
        self.entities.keys().filter(|s| s.kind == kind).count()
    }

    fn found(&self, e: &Entity) -> Found {
        let repeat = match e {
            Entity::Lead(l) => self.repeats.contains(&l.id),
            Entity::Deal(d) => d.lead.is_some_and(|l| self.repeats.contains(&l)),
            _ => false,
        };
        Found {
            entity: e.clone(),
            repeat,
        }
    }
}

impl Crm for MemoryCrm {
    fn authorize(&self, method: Method) -> Result<(), Error> {
        if self.denied.contains(&method.to_string()) {
            return Err(Error::AccessDenied(format!(
                "this token's role may not call {method}"
            )));
        }
        Ok(())
    }

    fn execute(&mut self, commands: Vec<Command>) -> Result<Option<i64>, Error> {
        self.executions += 1;
        let mut entities = self.entities.clone();
        let mut history = self.history.clone();
        let mut created = None;
        let mut now = self.now;
        for command in &commands {
            now += Duration::seconds(1);
            let stream = match command.target() {
                Target::New(kind) => {
                    let next = entities
                        .keys()
                        .filter(|s| s.kind == kind)
                        .map(|s| s.id)
                        .max()
                        .unwrap_or(0)
                        + 1;
                    StreamId::new(kind, next)
                }
                Target::Existing(s) => s,
                Target::Token(name) => {
                    return Err(Error::InvalidArgument(format!(
                        "token '{name}': tokens are not made through the Bitrix24 facade"
                    )));
                }
            };
            let current = entities.get(&stream).cloned();
            let decision = decide(
                &self.config,
                command,
                stream,
                current.as_ref(),
                &Exists(&entities),
            )
            .map_err(|r| records::rejected(&self.mapping, stream.kind, &r))?;
            let mut state = current;
            for event in &decision.events {
                state = model::apply(state, event, now);
            }
            if let Some(e) = state {
                if let Some((p, s)) = e.stage() {
                    let visits = history.entry(stream).or_default();
                    if visits
                        .last()
                        .is_none_or(|v: &Visit| v.stage != s.as_str() || v.pipeline != p.as_str())
                    {
                        if let Some(last) = visits.last_mut() {
                            last.left_at = Some(now);
                        }
                        visits.push(Visit {
                            pipeline: p.to_string(),
                            stage: s.to_string(),
                            entered_at: now,
                            left_at: None,
                        });
                    }
                }
                if matches!(command.target(), Target::New(_)) && created.is_none() {
                    created = Some(stream.id);
                }
                entities.insert(stream, e);
            }
        }
        self.entities = entities;
        self.history = history;
        self.now = now;
        Ok(created)
    }

    fn get(&self, stream: StreamId) -> Result<Option<Found>, Error> {
        Ok(self.entities.get(&stream).map(|e| self.found(e)))
    }

    fn list(&self, request: &ListRequest) -> Result<Listed, Error> {
        let mut rows: Vec<Found> = self
            .entities
            .iter()
            .filter(|(s, _)| s.kind == request.kind)
            .map(|(_, e)| self.found(e))
            .filter(|f| request.conditions.iter().all(|c| holds(c, f)))
            .collect();
        rows.sort_by(|a, b| {
            for (field, dir) in &request.order {
                let o = compare(&value_of(field, a), &value_of(field, b));
                let o = if *dir == Direction::Desc {
                    o.reverse()
                } else {
                    o
                };
                if o != Ordering::Equal {
                    return o;
                }
            }
            Ordering::Equal
        });
        let total = rows.len();
        let rows = rows
            .into_iter()
            .skip(request.start.offset())
            .take(request.limit())
            .collect();
        Ok(Listed {
            rows,
            total: request.start.counts().then_some(total),
        })
    }

    fn delete(&mut self, stream: StreamId) -> Result<(), Error> {
        self.entities
            .remove(&stream)
            .map(|_| ())
            .ok_or(Error::NotFound)
    }

    fn stage_history(&self, stream: StreamId) -> Result<Vec<Visit>, Error> {
        Ok(self.history.get(&stream).cloned().unwrap_or_default())
    }

    fn add_comment(&mut self, stream: StreamId, text: &str) -> Result<i64, Error> {
        self.comments.push((stream, text.to_owned()));
        Ok(self.comments.len() as i64)
    }

    fn bind(&mut self, binding: Binding) -> Result<(), Error> {
        if self
            .bound
            .iter()
            .any(|b| b.event == binding.event && b.handler == binding.handler)
        {
            return Err(Error::HandlerAlreadyBound);
        }
        self.bound.push(binding);
        Ok(())
    }

    fn unbind(&mut self, event: &str, handler: Option<&str>) -> Result<usize, Error> {
        let before = self.bound.len();
        self.bound
            .retain(|b| !(b.event == event && handler.is_none_or(|h| h == b.handler)));
        Ok(before - self.bound.len())
    }

    fn bindings(&self) -> Result<Vec<Binding>, Error> {
        Ok(self.bound.clone())
    }
}

/// A field's value(s) in a record, as operands (several for phones and e-mails).
fn values_of(field: &Field, f: &Found) -> Vec<Operand> {
    use Operand as O;
    let e = &f.entity;
    let text = |s: &str| vec![O::Text(s.to_owned())];
    let opt_int = |i: Option<i64>| i.map(O::Int).into_iter().collect();
    match (field, e) {
        (Field::Id, _) => vec![O::Int(e.stream().id)],
        (Field::Title, Entity::Lead(l)) => text(&l.title),
        (Field::Title, Entity::Deal(d)) => text(&d.title),
        (Field::Title, Entity::Company(c)) => text(&c.name),
        (Field::Name, Entity::Lead(l)) => l.name.as_deref().map(text).unwrap_or_default(),
        (Field::Name, Entity::Contact(c)) => text(&c.name),
        (Field::Stage, _) => e
            .stage()
            .map(|(p, s)| vec![O::Stage(p.clone(), s.clone())])
            .unwrap_or_default(),
        (Field::Pipeline, _) => e
            .stage()
            .map(|(p, _)| vec![O::Pipeline(p.clone())])
            .unwrap_or_default(),
        (Field::Responsible, _) => {
            let r = match e {
                Entity::Lead(l) => l.responsible.clone(),
                Entity::Deal(d) => d.responsible.clone(),
                Entity::Contact(c) => c.responsible.clone(),
                Entity::Company(c) => c.responsible.clone(),
                Entity::Task(t) => Some(t.assignee.clone()),
            };
            r.map(O::Employee).into_iter().collect()
        }
        (Field::Source, Entity::Lead(l)) => text(&l.source),
        (Field::Phone | Field::Email, _) => {
            let (phones, emails) = match e {
                Entity::Lead(l) => (&l.phones, &l.emails),
                Entity::Contact(c) => (&c.phones, &c.emails),
                Entity::Company(c) => (&c.phones, &c.emails),
                _ => return Vec::new(),
            };
            let list = if *field == Field::Phone {
                phones
            } else {
                emails
            };
            list.iter().map(|v| O::Text(v.clone())).collect()
        }
        (Field::Created | Field::Updated, _) => {
            let (c, u) = match e {
                Entity::Lead(l) => (l.created_at, l.updated_at),
                Entity::Deal(d) => (d.created_at, d.updated_at),
                Entity::Contact(c) => (c.created_at, c.updated_at),
                Entity::Company(c) => (c.created_at, c.updated_at),
                Entity::Task(t) => (t.created_at, t.created_at),
            };
            vec![O::Time(if *field == Field::Created { c } else { u })]
        }
        (Field::Contact, Entity::Lead(l)) => opt_int(l.contact),
        (Field::Contact, Entity::Deal(d)) => opt_int(d.contact),
        (Field::Company, Entity::Lead(l)) => opt_int(l.company),
        (Field::Company, Entity::Deal(d)) => opt_int(d.company),
        (Field::Company, Entity::Contact(c)) => opt_int(c.company),
        (Field::Lead, Entity::Deal(d)) => opt_int(d.lead),
        (Field::Amount, Entity::Deal(d)) => opt_int(d.amount),
        (Field::Repeat, _) => vec![O::Bool(f.repeat)],
        (Field::Custom(id), _) => {
            let fields = match e {
                Entity::Lead(l) => &l.fields,
                Entity::Deal(d) => &d.fields,
                Entity::Contact(c) => &c.fields,
                Entity::Company(c) => &c.fields,
                Entity::Task(_) => return Vec::new(),
            };
            match fields.get(id) {
                None | Some(Value::Null) => Vec::new(),
                Some(Value::Bool(b)) => vec![O::Bool(*b)],
                Some(Value::Number(n)) if n.is_i64() => vec![O::Int(n.as_i64().unwrap_or(0))],
                Some(Value::String(s)) => vec![O::Text(s.clone())],
                Some(other) => vec![O::Text(other.to_string())],
            }
        }
        _ => Vec::new(),
    }
}

fn value_of(field: &Field, f: &Found) -> Option<Operand> {
    values_of(field, f).into_iter().next()
}

fn compare(a: &Option<Operand>, b: &Option<Operand>) -> Ordering {
    match (a, b) {
        (Some(a), Some(b)) => cmp_operand(a, b).unwrap_or(Ordering::Equal),
        (None, Some(_)) => Ordering::Less,
        (Some(_), None) => Ordering::Greater,
        (None, None) => Ordering::Equal,
    }
}

fn cmp_operand(a: &Operand, b: &Operand) -> Option<Ordering> {
    use Operand as O;
    Some(match (a, b) {
        (O::Int(a), O::Int(b)) => a.cmp(b),
        (O::Time(a), O::Time(b)) => a.cmp(b),
        (O::Text(a), O::Text(b)) => a.to_lowercase().cmp(&b.to_lowercase()),
        (O::Bool(a), O::Bool(b)) => a.cmp(b),
        (O::Stage(p, s), O::Stage(q, t)) => (p, s).cmp(&(q, t)),
        (O::Pipeline(a), O::Pipeline(b)) => a.cmp(b),
        (O::Employee(a), O::Employee(b)) => a.cmp(b),
        (O::Int(a), O::Text(b)) => a.to_string().cmp(b),
        (O::Text(a), O::Int(b)) => a.cmp(&b.to_string()),
        _ => return None,
    })
}

/// SQL `LIKE` with `%` and `_`, case-insensitively.
fn like(text: &str, pattern: &str) -> bool {
    fn go(t: &[char], p: &[char]) -> bool {
        match p.split_first() {
            None => t.is_empty(),
            Some(('%', rest)) => (0..=t.len()).any(|i| go(&t[i..], rest)),
            Some(('_', rest)) => !t.is_empty() && go(&t[1..], rest),
            Some((c, rest)) => t.first() == Some(c) && go(&t[1..], rest),
        }
    }
    let t: Vec<char> = text.to_lowercase().chars().collect();
    let p: Vec<char> = pattern.to_lowercase().chars().collect();
    go(&t, &p)
}

fn holds(c: &Condition, f: &Found) -> bool {
    let values = values_of(&c.field, f);
    let eq = |a: &Operand, b: &Operand| cmp_operand(a, b) == Some(Ordering::Equal);
    let any = |p: &dyn Fn(&Operand) -> bool| values.iter().any(p);
    let text = |v: &Operand| match v {
        Operand::Text(t) => t.to_lowercase(),
        Operand::Int(i) => i.to_string(),
        _ => String::new(),
    };
    match (&c.cmp, &c.value) {
        (Cmp::Eq, v) => any(&|x| eq(x, v)),
        (Cmp::NotEq, v) => !any(&|x| eq(x, v)),
        (Cmp::In, Operand::List(list)) => any(&|x| list.iter().any(|v| eq(x, v))),
        (Cmp::NotIn, Operand::List(list)) => !any(&|x| list.iter().any(|v| eq(x, v))),
        (Cmp::Gt, v) => any(&|x| cmp_operand(x, v) == Some(Ordering::Greater)),
        (Cmp::Ge, v) => {
            any(&|x| matches!(cmp_operand(x, v), Some(Ordering::Greater | Ordering::Equal)))
        }
        (Cmp::Lt, v) => any(&|x| cmp_operand(x, v) == Some(Ordering::Less)),
        (Cmp::Le, v) => {
            any(&|x| matches!(cmp_operand(x, v), Some(Ordering::Less | Ordering::Equal)))
        }
        (Cmp::Contains, v) => any(&|x| text(x).contains(&text(v))),
        (Cmp::NotContains, v) => !any(&|x| text(x).contains(&text(v))),
        (Cmp::Like, v) => any(&|x| like(&text(x), &text(v))),
        _ => false,
    }
}
