//! The built-in robots that act on one lead or deal: stages, fields, assignment, deadlines,
//! notifications, tasks and the incident journal.

use crate::context::{Ctx, RobotError};
use crate::{Params, Robot};
use leadflow_engine::command::NewTask;
use leadflow_engine::condition::{Condition, ConditionError};
use leadflow_engine::config::Semantic;
use leadflow_engine::event::{
    Channel, DeadlineCancelled, DeadlineScheduled, EscalationRecorded, NotificationQueued,
};
use leadflow_engine::ids::{EmployeeId, TeamId};
use leadflow_engine::react::Reads;
use leadflow_engine::{Actor, Command, Entity, EntityKind, Event};
use serde_json::Value;
use std::collections::HashMap;
use std::sync::{LazyLock, Mutex};

/// A text parameter.
pub(crate) fn text<'p>(params: &'p Params, name: &str) -> Option<&'p str> {
    params.get(name).and_then(Value::as_str)
}

/// A text parameter the rule set's validation guarantees.
pub(crate) fn required<'p>(params: &'p Params, name: &str) -> Result<&'p str, RobotError> {
    text(params, name).ok_or_else(|| RobotError::Failed(format!("parameter '{name}' is missing")))
}

/// A true/false parameter.
pub(crate) fn flag(params: &Params, name: &str) -> bool {
    params.get(name).and_then(Value::as_bool).unwrap_or(false)
}

/// The lead or deal a robot acts on, or a clear failure.
pub(crate) fn lead_or_deal(ctx: &mut Ctx<'_, '_>, robot: &str) -> Result<Entity, RobotError> {
    match ctx.lead_or_deal()? {
        Some(e @ (Entity::Lead(_) | Entity::Deal(_))) => Ok(e),
        _ => Err(RobotError::Failed(format!(
            "{robot} needs a lead or deal, but the rule is about {}",
            ctx.subject
        ))),
    }
}

/// `set_stage`: moves the lead or deal.
pub struct SetStage;

impl Robot for SetStage {
    fn run(&self, ctx: &mut Ctx<'_, '_>, params: &Params) -> Result<(), RobotError> {
        let stage = required(params, "stage")?.into();
        let reason = text(params, "reason").map(str::to_owned);
        let cmd = match lead_or_deal(ctx, "set_stage")? {
            Entity::Lead(l) if l.stage == stage => return Ok(()),
            Entity::Deal(d) if d.stage == stage => return Ok(()),
            Entity::Lead(l) => Command::MoveLead {
                id: l.id,
                stage,
                reason,
            },
            Entity::Deal(d) => Command::MoveDeal {
                id: d.id,
                stage,
                reason,
            },
            _ => unreachable!("lead_or_deal returns a lead or a deal"),
        };
        ctx.execute(&cmd)?;
        Ok(())
    }
}

/// `set_field`: sets one field.
pub struct SetField;

impl Robot for SetField {
    fn run(&self, ctx: &mut Ctx<'_, '_>, params: &Params) -> Result<(), RobotError> {
        let field = required(params, "field")?;
        let value = params.get("value").cloned().unwrap_or(Value::Null);
        let value = match &value {
            Value::String(s) if s.contains('{') => Value::String(ctx.render(s)?),
            _ => value,
        };
        let entity = lead_or_deal(ctx, "set_field")?;
        let cmd = match (field, &entity) {
            ("responsible", e) => {
                let to = EmployeeId(
                    value
                        .as_str()
                        .ok_or_else(|| {
                            RobotError::Failed("responsible must be an employee id".into())
                        })?
                        .to_owned(),
                );
                match e {
                    Entity::Lead(l) => Command::AssignLead { id: l.id, to },
                    Entity::Deal(d) => Command::AssignDeal { id: d.id, to },
                    _ => unreachable!(),
                }
            }
            (f, e) => {
                let name = match f {
                    "phone" => "phones",
                    "email" => "emails",
                    other => other,
                };
                let changes = [(name.to_owned(), value.clone())].into_iter().collect();
                match e {
                    Entity::Lead(l) => Command::UpdateLead { id: l.id, changes },
                    Entity::Deal(d) => Command::UpdateDeal { id: d.id, changes },
                    _ => unreachable!(),
                }
            }
        };
        ctx.execute(&cmd)?;
        Ok(())
    }
}

/// `assign`: picks the responsible.
pub struct Assign;

/// Picks a member of `team` for a new lead or deal of `kind`: `round_robin` gives it to the
/// member whose newest one is oldest (in rotation), `least_loaded` to the member with the
/// fewest open ones; ties go to the member listed first in the config.
pub(crate) fn pick_member(
    ctx: &mut Ctx<'_, '_>,
    team: &TeamId,
    strategy: &str,
    kind: EntityKind,
) -> Result<EmployeeId, RobotError> {
    let members: Vec<EmployeeId> = ctx
        .config
        .members(team)
        .into_iter()
        .filter(|e| e.active)
        .map(|e| e.id.clone())
        .collect();
    if members.is_empty() {
        return Err(RobotError::Failed(format!(
            "team '{team}' has no active member to assign"
        )));
    }
    let open: Vec<String> = ctx
        .config
        .pipelines
        .iter()
        .filter(|p| p.entity == kind)
        .flat_map(|p| {
            p.stages
                .iter()
                .filter(|s| s.semantic == Semantic::InProgress)
                .map(|s| s.id.to_string())
        })
        .collect();
    let mut best: Option<(i64, usize, &EmployeeId)> = None;
    for (i, m) in members.iter().enumerate() {
        let score: i64 = if strategy == "least_loaded" {
            ctx.ws.open_items(m, kind, &open)?
        } else {
            ctx.ws.last_assigned(m, kind)?
        };
        if best.is_none_or(|(b, bi, _)| (score, i) < (b, bi)) {
            best = Some((score, i, m));
        }
    }
    Ok(best.expect("members is not empty").2.clone())
}

impl Robot for Assign {
    fn run(&self, ctx: &mut Ctx<'_, '_>, params: &Params) -> Result<(), RobotError> {
        let entity = lead_or_deal(ctx, "assign")?;
        let strategy = required(params, "strategy")?;
        let to = match strategy {
            "named" => EmployeeId(
                text(params, "employee")
                    .ok_or_else(|| {
                        RobotError::Failed("strategy 'named' needs employee = \"...\"".into())
                    })?
                    .to_owned(),
            ),
            "creator" => {
                let stream = entity.stream();
                let first = ctx
                    .ws
                    .event_of(stream, 1)?
                    .map(|rec| rec.actor)
                    .ok_or_else(|| {
                        RobotError::Store(leadflow_engine::workspace::BackendError::new(
                            leadflow_engine::stored::StoredError::Corrupt {
                                position: 0,
                                why: format!("{stream} has no first event"),
                            },
                        ))
                    })?;
                // An employee, or an API token acting for one, is the creator.
                match first
                    .parse::<Actor>()
                    .ok()
                    .as_ref()
                    .and_then(Actor::employee)
                {
                    Some(e) => e.clone(),
                    None => {
                        return Err(RobotError::Failed(format!(
                            "{stream} was created by {first}, not by or for an employee, so it has no creator to assign"
                        )));
                    }
                }
            }
            strategy => {
                let team: TeamId = match text(params, "team") {
                    Some(t) => t.into(),
                    None => {
                        let pipeline = match &entity {
                            Entity::Lead(l) => &l.pipeline,
                            Entity::Deal(d) => &d.pipeline,
                            _ => unreachable!(),
                        };
                        ctx.config
                            .team_of_pipeline(pipeline)
                            .map(|t| t.id.clone())
                            .ok_or_else(|| {
                                RobotError::Failed(format!(
                                    "no team = \"...\" and no team works pipeline '{pipeline}'"
                                ))
                            })?
                    }
                };
                pick_member(ctx, &team, strategy, entity.stream().kind)?
            }
        };
        let cmd = match entity {
            Entity::Lead(l) if l.responsible.as_ref() == Some(&to) => return Ok(()),
            Entity::Deal(d) if d.responsible.as_ref() == Some(&to) => return Ok(()),
            Entity::Lead(l) => Command::AssignLead { id: l.id, to },
            Entity::Deal(d) => Command::AssignDeal { id: d.id, to },
            _ => unreachable!(),
        };
        ctx.execute(&cmd)?;
        Ok(())
    }
}

/// The pending deadline called `name` of the subject: its scheduling position.
fn pending_deadline(ctx: &mut Ctx<'_, '_>, name: &str) -> Result<Option<i64>, RobotError> {
    let subject = ctx.subject;
    Ok(ctx
        .ws
        .pending_timers(subject)?
        .into_iter()
        .find(|t| t.what == "deadline" && t.name.as_deref() == Some(name))
        .map(|t| t.id))
}

/// A robot parameter's condition, compiled once per process (a robot runs it at every step;
/// compiling CEL costs far more than evaluating it).
pub(crate) fn compiled(source: &str) -> Result<Condition, ConditionError> {
    static CACHE: LazyLock<Mutex<HashMap<String, Condition>>> = LazyLock::new(Mutex::default);
    if let Some(c) = CACHE.lock().ok().and_then(|c| c.get(source).cloned()) {
        return Ok(c);
    }
    let c = Condition::compile(source)?;
    if let Ok(mut cache) = CACHE.lock() {
        // Rule sets reloaded many times over: start again rather than grow without bound.
        if cache.len() >= 4096 {
            cache.clear();
        }
        cache.insert(source.to_owned(), c.clone());
    }
    Ok(c)
}

/// `schedule_deadline`: a named deadline after a (possibly condition-dependent) duration.
pub struct ScheduleDeadline;

impl Robot for ScheduleDeadline {
    fn run(&self, ctx: &mut Ctx<'_, '_>, params: &Params) -> Result<(), RobotError> {
        let name = required(params, "name")?.to_owned();
        lead_or_deal(ctx, "schedule_deadline")?;
        let after = match params.get("after") {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Array(cases)) => {
                let conditions = cases
                    .iter()
                    .map(|case| {
                        case.get("if")
                            .and_then(Value::as_str)
                            .map(|c| compiled(c).map_err(|e| RobotError::Failed(e.message)))
                            .transpose()
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                let mut uses = leadflow_engine::condition::Uses::default();
                for c in conditions.iter().flatten() {
                    uses.merge(c.uses());
                }
                let vars = ctx.vars(Reads::Condition(&uses))?;
                let mut chosen = None;
                for (case, cond) in cases.iter().zip(&conditions) {
                    let holds = match cond {
                        None => true,
                        Some(cond) => cond.eval(&vars).map_err(RobotError::Failed)?,
                    };
                    if holds {
                        chosen = case.get("after").and_then(Value::as_str).map(str::to_owned);
                        break;
                    }
                }
                chosen.ok_or_else(|| {
                    RobotError::Failed(format!(
                        "no case of deadline '{name}' applies (add a last case without 'if')"
                    ))
                })?
            }
            _ => return Err(RobotError::Failed("parameter 'after' is missing".into())),
        };
        let due_at = ctx
            .config
            .calendar
            .after(ctx.now, &after, flag(params, "working_time"))
            .map_err(RobotError::Failed)?;
        let mut events = Vec::new();
        if let Some(scheduled) = pending_deadline(ctx, &name)? {
            events.push(Event::DeadlineCancelled(DeadlineCancelled {
                name: name.clone(),
                scheduled,
                reason: "rescheduled".into(),
            }));
        }
        events.push(Event::DeadlineScheduled(DeadlineScheduled {
            name,
            due_at,
            rule: ctx.rule.to_owned(),
            ruleset: ctx.ruleset.to_owned(),
        }));
        ctx.append_here(&events)
    }
}

/// `cancel_deadline`: calls off a pending deadline (nothing to do if none is pending).
pub struct CancelDeadline;

impl Robot for CancelDeadline {
    fn run(&self, ctx: &mut Ctx<'_, '_>, params: &Params) -> Result<(), RobotError> {
        let name = required(params, "name")?.to_owned();
        if let Some(scheduled) = pending_deadline(ctx, &name)? {
            let reason = format!("cancelled by rule '{}'", ctx.rule);
            ctx.append_here(&[Event::DeadlineCancelled(DeadlineCancelled {
                name,
                scheduled,
                reason,
            })])?;
        }
        Ok(())
    }
}

/// The employees `to` names: `responsible`, `manager` (the responsible's), `team`, `employee`.
pub(crate) fn recipients(
    ctx: &mut Ctx<'_, '_>,
    params: &Params,
) -> Result<Vec<EmployeeId>, RobotError> {
    let to = text(params, "to").unwrap_or("responsible");
    let subject = ctx.subject;
    let nobody = || RobotError::Failed(format!("{subject} has no responsible"));
    Ok(match to {
        "responsible" => match ctx.responsible()? {
            Some(r) => vec![r],
            None => return Err(nobody()),
        },
        "manager" => {
            let Some(r) = ctx.responsible()? else {
                return Err(nobody());
            };
            match ctx.config.employee(&r).and_then(|e| e.manager.clone()) {
                Some(m) => vec![m],
                None => {
                    return Err(RobotError::Failed(format!(
                        "{r} has no manager in the config"
                    )));
                }
            }
        }
        "team" => {
            let team: TeamId = required(params, "team")?.into();
            ctx.config
                .members(&team)
                .into_iter()
                .filter(|e| e.active)
                .map(|e| e.id.clone())
                .collect()
        }
        _ => vec![EmployeeId(required(params, "employee")?.to_owned())],
    })
}

/// `notify`: a message through the inbox, or a webhook or e-mail through the outbox.
pub struct Notify;

impl Robot for Notify {
    fn run(&self, ctx: &mut Ctx<'_, '_>, params: &Params) -> Result<(), RobotError> {
        let text_ = ctx.render(required(params, "text")?)?;
        let channel = match text(params, "channel").unwrap_or("inbox") {
            "webhook" => Channel::Webhook,
            "email" => Channel::Email,
            _ => Channel::Inbox,
        };
        let priority = text(params, "priority").unwrap_or("normal").to_owned();
        for to in recipients(ctx, params)? {
            let target = match channel {
                Channel::Email => Some(
                    ctx.config
                        .employee(&to)
                        .and_then(|e| e.email.clone())
                        .ok_or_else(|| {
                            RobotError::Failed(format!("{to} has no e-mail in the config"))
                        })?,
                ),
                _ => None,
            };
            ctx.notify(NotificationQueued {
                channel,
                to: Some(to),
                target,
                text: text_.clone(),
                priority: priority.clone(),
                rule: None,
                key: String::new(),
            })?;
        }
        Ok(())
    }
}

/// `webhook`: posts to a URL through the outbox.
pub struct Webhook;

impl Robot for Webhook {
    fn run(&self, ctx: &mut Ctx<'_, '_>, params: &Params) -> Result<(), RobotError> {
        let url = required(params, "url")?.to_owned();
        let body = match text(params, "body") {
            Some(t) => ctx.render(t)?,
            None => Value::Object(ctx.vars(Reads::All)?).to_string(),
        };
        ctx.notify(NotificationQueued {
            channel: Channel::Webhook,
            to: None,
            target: Some(url),
            text: body,
            priority: String::new(),
            rule: None,
            key: String::new(),
        })
    }
}

/// `create_task`: a task for the responsible, their manager or a named employee.
pub struct CreateTask;

impl Robot for CreateTask {
    fn run(&self, ctx: &mut Ctx<'_, '_>, params: &Params) -> Result<(), RobotError> {
        let kind = required(params, "kind")?.to_owned();
        let title = ctx.render(required(params, "title")?)?;
        let mut who = params.clone();
        who.insert(
            "to".into(),
            Value::from(text(params, "assignee").unwrap_or("responsible")),
        );
        let assignee = recipients(ctx, &who)?
            .into_iter()
            .next()
            .ok_or_else(|| RobotError::Failed("nobody to give the task to".into()))?;
        let due_at = ctx
            .config
            .calendar
            .after(
                ctx.now,
                text(params, "due").unwrap_or("1d"),
                flag(params, "working_time"),
            )
            .map_err(RobotError::Failed)?;
        let (lead, deal) = match ctx.lead_or_deal()? {
            Some(Entity::Lead(l)) => (Some(l.id), None),
            Some(Entity::Deal(d)) => (d.lead, Some(d.id)),
            _ => (None, None),
        };
        ctx.execute(&Command::CreateTask(NewTask {
            kind,
            title,
            assignee,
            due_at,
            lead,
            deal,
        }))?;
        Ok(())
    }
}

/// `record_incident`: writes to the incident journal, against the responsible.
pub struct RecordIncident;

impl Robot for RecordIncident {
    fn run(&self, ctx: &mut Ctx<'_, '_>, params: &Params) -> Result<(), RobotError> {
        let kind = required(params, "kind")?.to_owned();
        let text_ = match text(params, "text") {
            Some(t) => ctx.render(t)?,
            None => format!("{kind} on {}", ctx.subject),
        };
        let employee = ctx.responsible()?;
        ctx.incident(&kind, employee, text_)
    }
}

/// `escalate_to_manager`: after N incidents of a kind within a window, tells the manager.
pub struct EscalateToManager;

impl Robot for EscalateToManager {
    fn run(&self, ctx: &mut Ctx<'_, '_>, params: &Params) -> Result<(), RobotError> {
        let kind = required(params, "kind")?.to_owned();
        let threshold = params.get("threshold").and_then(Value::as_i64).unwrap_or(3);
        let window = text(params, "window").unwrap_or("30d").to_owned();
        let span = leadflow_engine::config::parse_duration(&window).map_err(RobotError::Failed)?;
        let Some(employee) = ctx.responsible()? else {
            return Err(RobotError::Failed(format!(
                "{} has no responsible to escalate",
                ctx.subject
            )));
        };
        let since = ctx.now.checked_sub_signed(span).ok_or_else(|| {
            RobotError::Failed(format!(
                "window '{window}' reaches before the start of time"
            ))
        })?;
        // Incidents since the last escalation for the same employee and kind: the 3rd, 6th…
        // incident escalates, not every one after the 3rd.
        let count = ctx
            .ws
            .incident_count(&leadflow_engine::workspace::IncidentQuery {
                employee: &employee,
                kind: Some(kind.as_str()),
                since,
                after_escalation: true,
            })?;
        if count < threshold {
            return Ok(());
        }
        let manager = ctx
            .config
            .employee(&employee)
            .and_then(|e| e.manager.clone());
        if let Some(m) = &manager {
            let text_ = match text(params, "text") {
                Some(t) => ctx.render(t)?,
                None => format!(
                    "{employee}: {count} incidents of kind {kind} within {window} (latest on {})",
                    ctx.subject
                ),
            };
            ctx.notify(NotificationQueued {
                channel: Channel::Inbox,
                to: Some(m.clone()),
                target: None,
                text: text_,
                priority: "high".into(),
                rule: None,
                key: String::new(),
            })?;
        }
        let rule = ctx.rule.to_owned();
        ctx.append_here(&[Event::EscalationRecorded(EscalationRecorded {
            employee,
            manager,
            kind,
            count,
            window,
            rule,
        })])
    }
}
