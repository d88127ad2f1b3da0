//! `convert_lead`: "create based on" (seed 004). From the lead it creates — or, with
//! `attach_existing`, finds — a contact and/or a company, opens a deal, links them all and
//! marks the lead converted.

use crate::builtin::{flag, pick_member, text};
use crate::client::{Requisites, company_by_inn, contacts_of, subject_lead};
use crate::context::{Ctx, RobotError};
use crate::{Params, Robot};
use leadflow_engine::command::{NewContact, NewDeal};
use leadflow_engine::config::Semantic;
use leadflow_engine::field::{FieldType, format_money};
use leadflow_engine::ids::{EmployeeId, PipelineId, StageId};
use leadflow_engine::model::Lead;
use leadflow_engine::{Command, EntityKind};
use serde_json::Value;
use std::collections::BTreeMap;

/// An entity to link: one that exists, or one to create.
enum Plan<T> {
    Existing(i64),
    Create(T),
}

/// `convert_lead`: creates (or attaches) contact, company and deal from the lead.
///
/// - `contact = true`: a contact named after the lead's `name`, with its phones and e-mails
///   (it needs the name and a phone or e-mail), working for the company if one is linked.
///   With `attach_existing`, the lead's linked contact, else the oldest contact sharing a
///   phone or e-mail, is used instead of a new one.
/// - `company = true`: a company from `company_name`, `inn`, `bik`, `bank_account` (it needs
///   `company_name` or `inn`; INN, BIK and account are checked). With `attach_existing`, the
///   lead's linked company, else the oldest company with its INN.
/// - `deal = true`: a deal titled like the lead in `pipeline` (default: the first deal
///   pipeline), linked to the lead and to its contact and company (the ones just made, or the
///   lead's Client), with `copy_fields` copied (each must be a field of both leads and deals).
///   Its responsible: `round_robin` or `least_loaded` within the team that works the pipeline,
///   or `lead_responsible`; by default round robin when a team works the pipeline, else the
///   lead's responsible.
/// - Then the lead is linked to its new contact and company and moved to `lead_stage`
///   (default: the lead pipeline's success stage) unless it is already there. With no flag
///   set, that move is all it does.
///
/// Everything missing is checked before anything is created and reported together; a
/// rejection half-way is rolled back by the runtime with everything the robot appended.
pub struct ConvertLead;

impl Robot for ConvertLead {
    fn run(&self, ctx: &mut Ctx<'_, '_>, params: &Params) -> Result<(), RobotError> {
        let lead = subject_lead(ctx, "convert_lead")?;
        let attach = flag(params, "attach_existing");
        let mut problems: Vec<String> = Vec::new();

        let lead_stage = match text(params, "lead_stage") {
            Some(s) => Some(StageId::from(s)),
            None => ctx
                .config
                .lead_pipeline()
                .stages
                .iter()
                .find(|s| s.semantic == Semantic::Success)
                .map(|s| s.id.clone()),
        };
        if lead_stage.is_none() {
            problems.push(
                "the lead pipeline has no success stage: set lead_stage = \"...\"".to_owned(),
            );
        }

        let company = if flag(params, "company") {
            plan_company(ctx, &lead, attach, &mut problems)?
        } else {
            None
        };
        let contact = if flag(params, "contact") {
            plan_contact(ctx, &lead, attach, &mut problems)?
        } else {
            None
        };
        let deal = if flag(params, "deal") {
            plan_deal(ctx, &lead, params, &mut problems)?
        } else {
            None
        };
        if !problems.is_empty() {
            return Err(RobotError::Failed(format!(
                "convert_lead cannot convert lead-{}: {}",
                lead.id,
                problems.join("; ")
            )));
        }

        let company_id = match company {
            Some(Plan::Existing(id)) => Some(id),
            Some(Plan::Create(req)) => Some(
                ctx.execute(&Command::CreateCompany(req.new_company(&lead)))?
                    .stream
                    .id,
            ),
            None => None,
        };
        let contact_id = match contact {
            Some(Plan::Existing(id)) => Some(id),
            Some(Plan::Create(mut new)) => {
                new.company = company_id.or(lead.company);
                Some(ctx.execute(&Command::CreateContact(new))?.stream.id)
            }
            None => None,
        };
        if let Some(Plan::Create(mut new)) = deal {
            new.contact = contact_id.or(lead.contact);
            new.company = company_id.or(lead.company);
            ctx.execute(&Command::CreateDeal(new))?;
        }

        let mut links = BTreeMap::new();
        if let Some(c) = contact_id.filter(|c| lead.contact != Some(*c)) {
            links.insert("contact".to_owned(), Value::from(c));
        }
        if let Some(c) = company_id.filter(|c| lead.company != Some(*c)) {
            links.insert("company".to_owned(), Value::from(c));
        }
        if !links.is_empty() {
            ctx.execute(&Command::UpdateLead {
                id: lead.id,
                changes: links,
            })?;
        }
        if let Some(stage) = lead_stage
            && lead.stage != stage
        {
            ctx.execute(&Command::MoveLead {
                id: lead.id,
                stage,
                reason: None,
            })?;
        }
        Ok(())
    }
}

fn plan_company(
    ctx: &mut Ctx<'_, '_>,
    lead: &Lead,
    attach: bool,
    problems: &mut Vec<String>,
) -> Result<Option<Plan<Requisites>>, RobotError> {
    if attach && let Some(id) = lead.company {
        return Ok(Some(Plan::Existing(id)));
    }
    let req = match Requisites::of(lead) {
        Ok(r) => r,
        Err(m) => {
            problems.push(format!("the company's {m}"));
            return Ok(None);
        }
    };
    if attach
        && let Some(inn) = &req.inn
        && let Some(id) = company_by_inn(ctx, inn)?
    {
        return Ok(Some(Plan::Existing(id)));
    }
    if req.name.is_none() && req.inn.is_none() {
        problems.push("a company needs field 'company_name' or 'inn' filled".to_owned());
        return Ok(None);
    }
    Ok(Some(Plan::Create(req)))
}

fn plan_contact(
    ctx: &mut Ctx<'_, '_>,
    lead: &Lead,
    attach: bool,
    problems: &mut Vec<String>,
) -> Result<Option<Plan<NewContact>>, RobotError> {
    if attach {
        if let Some(id) = lead.contact {
            return Ok(Some(Plan::Existing(id)));
        }
        if let Some(id) = contacts_of(ctx, lead)?.first() {
            return Ok(Some(Plan::Existing(*id)));
        }
    }
    let name = lead
        .name
        .as_deref()
        .map(str::trim)
        .filter(|n| !n.is_empty());
    let mut missing = Vec::new();
    if name.is_none() {
        missing.push("'name'");
    }
    if lead.phones.is_empty() && lead.emails.is_empty() {
        missing.push("'phone' or 'email'");
    }
    if !missing.is_empty() {
        problems.push(format!(
            "a contact needs field {} filled",
            missing.join(" and ")
        ));
        return Ok(None);
    }
    Ok(Some(Plan::Create(NewContact {
        name: name.unwrap_or_default().to_owned(),
        phones: lead.phones.clone(),
        emails: lead.emails.clone(),
        company: None,
        responsible: lead.responsible.clone(),
        fields: BTreeMap::new(),
    })))
}

fn plan_deal(
    ctx: &mut Ctx<'_, '_>,
    lead: &Lead,
    params: &Params,
    problems: &mut Vec<String>,
) -> Result<Option<Plan<NewDeal>>, RobotError> {
    let pipeline: PipelineId = match text(params, "pipeline") {
        Some(p) => match ctx.config.pipeline(&p.into()) {
            Some(found) if found.entity == EntityKind::Deal => found.id.clone(),
            _ => {
                problems.push(format!("'{p}' is not a deal pipeline"));
                return Ok(None);
            }
        },
        None => match ctx.config.default_deal_pipeline() {
            Some(p) => p.id.clone(),
            None => {
                problems.push("the config has no deal pipeline".to_owned());
                return Ok(None);
            }
        },
    };
    let team = ctx.config.team_of_pipeline(&pipeline).map(|t| t.id.clone());
    let responsible: Option<EmployeeId> = match (text(params, "assign"), team) {
        (Some("lead_responsible"), _) => match &lead.responsible {
            Some(r) => Some(r.clone()),
            None => {
                problems.push(format!(
                    "lead-{} has no responsible to give the deal to (assign = \"lead_responsible\")",
                    lead.id
                ));
                None
            }
        },
        (Some(strategy), Some(team)) => Some(pick_member(ctx, &team, strategy, EntityKind::Deal)?),
        (Some(strategy), None) => {
            problems.push(format!(
                "no team works pipeline '{pipeline}', so assign = \"{strategy}\" has nobody to pick from"
            ));
            None
        }
        (None, Some(team)) => Some(pick_member(ctx, &team, "round_robin", EntityKind::Deal)?),
        (None, None) => lead.responsible.clone(),
    };
    let mut fields = BTreeMap::new();
    let copy: Vec<&str> = match params.get("copy_fields") {
        None => vec![],
        Some(Value::Array(items)) => items.iter().filter_map(Value::as_str).collect(),
        Some(other) => {
            problems.push(format!(
                "copy_fields must be a list of field ids, not {other}"
            ));
            vec![]
        }
    };
    for name in copy {
        let on_lead = ctx.config.field(EntityKind::Lead, name);
        let on_deal = ctx.config.field(EntityKind::Deal, name);
        let (Some(from), Some(_)) = (on_lead, on_deal) else {
            let lacking = match (on_lead, on_deal) {
                (None, None) => "leads or deals",
                (None, _) => "leads",
                _ => "deals",
            };
            problems.push(format!(
                "copy_fields: '{name}' is not a custom field of {lacking}"
            ));
            continue;
        };
        let Some(value) = lead.fields.get(name) else {
            continue;
        };
        // Stored money is minor units; the deal's field reads input as major units.
        let value = match (from.ty, value.as_i64()) {
            (FieldType::Money, Some(minor)) => Value::from(format_money(minor)),
            _ => value.clone(),
        };
        fields.insert(name.to_owned(), value);
    }
    Ok(Some(Plan::Create(NewDeal {
        title: lead.title.clone(),
        pipeline: Some(pipeline),
        responsible,
        lead: Some(lead.id),
        fields,
        ..Default::default()
    })))
}
