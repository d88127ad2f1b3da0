//! `require_fields`: checks that a lead's or deal's required (and conditionally required)
//! fields are filled, asks the responsible for what is missing and, if told to, records it in
//! the incident journal.

use crate::builtin::{compiled, lead_or_deal, text};
use crate::context::{Ctx, RobotError};
use crate::{Params, Robot};
use leadflow_engine::Entity;
use leadflow_engine::event::{Channel, NotificationQueued};
use leadflow_engine::model::{deal_field, is_filled, lead_field};
use leadflow_engine::react::Reads;
use serde_json::Value;

/// `require_fields`: the requirements of `fields` (`a|b` = either) on the subject's lead or
/// deal (a task's lead or deal).
///
/// With `when`, the check runs only when that condition holds. When something is missing,
/// the responsible gets an inbox message naming every missing requirement ("Fill in on
/// Countertop (lead-3): material, company_name or inn") and, with `incident = "kind"`, an
/// incident of that kind is recorded against them. Nothing missing: nothing is appended. A
/// lead or deal with something missing and no responsible to ask is a failure (an incident
/// the runtime records), so the gap is never silent.
pub struct RequireFields;

impl Robot for RequireFields {
    fn run(&self, ctx: &mut Ctx<'_, '_>, params: &Params) -> Result<(), RobotError> {
        let requirements = requirements(params)?;
        if let Some(when) = text(params, "when") {
            let cond = compiled(when).map_err(|e| {
                RobotError::Failed(format!("require_fields: 'when': {}", e.message))
            })?;
            let vars = ctx.vars(Reads::Condition(cond.uses()))?;
            let holds = cond.eval(&vars).map_err(|m| {
                RobotError::Failed(format!(
                    "require_fields: 'when' could not be evaluated: {m}"
                ))
            })?;
            if !holds {
                return Ok(());
            }
        }
        let entity = lead_or_deal(ctx, "require_fields")?;
        let (stream, title, responsible) = match &entity {
            Entity::Lead(l) => (entity.stream(), l.title.clone(), l.responsible.clone()),
            Entity::Deal(d) => (entity.stream(), d.title.clone(), d.responsible.clone()),
            _ => unreachable!("lead_or_deal returns a lead or a deal"),
        };
        let value_of = |field: &str| -> Value {
            match &entity {
                Entity::Lead(l) => lead_field(l, field),
                Entity::Deal(d) => deal_field(d, field),
                _ => Value::Null,
            }
        };
        let missing: Vec<String> = requirements
            .iter()
            .filter(|any_of| !any_of.iter().any(|f| is_filled(&value_of(f))))
            .map(|any_of| any_of.join(" or "))
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        let message = format!("Fill in on {title} ({stream}): {}", missing.join(", "));
        let Some(responsible) = responsible else {
            return Err(RobotError::Failed(format!(
                "require_fields: {stream} has nobody responsible to ask; missing: {}",
                missing.join(", ")
            )));
        };
        ctx.notify(NotificationQueued {
            channel: Channel::Inbox,
            to: Some(responsible.clone()),
            target: None,
            text: message.clone(),
            priority: "normal".into(),
            rule: None,
            key: String::new(),
        })?;
        if let Some(kind) = text(params, "incident") {
            ctx.incident(kind, Some(responsible), message)?;
        }
        Ok(())
    }
}

/// The `fields` parameter: each requirement as its alternatives.
fn requirements(params: &Params) -> Result<Vec<Vec<String>>, RobotError> {
    let bad = || {
        RobotError::Failed(
            "require_fields: 'fields' must be a list of field names like [\"budget\", \"company_name|inn\"]"
                .into(),
        )
    };
    let items = params
        .get("fields")
        .and_then(Value::as_array)
        .ok_or_else(bad)?;
    items
        .iter()
        .map(|item| {
            let alternatives: Vec<String> = item
                .as_str()
                .ok_or_else(bad)?
                .split('|')
                .map(|f| f.trim().to_owned())
                .filter(|f| !f.is_empty())
                .collect();
            if alternatives.is_empty() {
                Err(bad())
            } else {
                Ok(alternatives)
            }
        })
        .collect()
}
