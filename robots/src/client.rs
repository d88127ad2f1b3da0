//! The robots that find a lead's client: `detect_repeat` (is this contact data already known?)
//! and `find_or_create_company` (the company of the lead's INN, created if new), plus the
//! company helpers `convert_lead` shares with them.

use crate::builtin::lead_or_deal;
use crate::context::{Ctx, RobotError};
use crate::{Params, Robot};
use leadflow_engine::command::NewCompany;
use leadflow_engine::event::RepeatDetected;
use leadflow_engine::field::{validate_bank_account, validate_bik, validate_inn};
use leadflow_engine::model::Lead;
use leadflow_engine::workspace::MatchKey;
use leadflow_engine::{Command, Entity, EntityKind, Event};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};

/// The subject's lead, or a clear failure when the rule is about a deal (or nothing).
pub(crate) fn subject_lead(ctx: &mut Ctx<'_, '_>, robot: &str) -> Result<Lead, RobotError> {
    match lead_or_deal(ctx, robot)? {
        Entity::Lead(l) => Ok(l),
        other => Err(RobotError::Failed(format!(
            "{robot} works on leads, but the rule is about {}",
            other.stream()
        ))),
    }
}

/// A lead's custom field as trimmed text (numbers written as digits), `None` when empty.
pub(crate) fn lead_text(lead: &Lead, key: &str) -> Option<String> {
    let s = match lead.fields.get(key)? {
        Value::String(s) => s.trim().to_owned(),
        Value::Number(n) => n.to_string(),
        _ => return None,
    };
    (!s.is_empty()).then_some(s)
}

/// A lead's company details (custom fields `company_name`, `inn`, `bik`, `bank_account`),
/// checked: the INN's check digits, the BIK's form, the bank account against the BIK.
#[derive(Debug, Clone, Default)]
pub(crate) struct Requisites {
    pub name: Option<String>,
    pub inn: Option<String>,
    pub bik: Option<String>,
    pub bank_account: Option<String>,
}

impl Requisites {
    /// Reads and checks the lead's company fields; the error names every bad field and why.
    pub(crate) fn of(lead: &Lead) -> Result<Requisites, String> {
        let mut problems = Vec::new();
        let mut check = |field: &str, r: Result<String, String>| match r {
            Ok(v) => Some(v),
            Err(m) => {
                problems.push(format!("field '{field}': {m}"));
                None
            }
        };
        let inn = lead_text(lead, "inn").and_then(|v| check("inn", validate_inn(&v)));
        let raw_bik = lead_text(lead, "bik");
        let bik = raw_bik.clone().and_then(|v| check("bik", validate_bik(&v)));
        let bank_account = match (lead_text(lead, "bank_account"), &raw_bik) {
            (Some(acc), Some(b)) => check("bank_account", validate_bank_account(&acc, b)),
            (Some(_), None) => check(
                "bank_account",
                Err("is filled but 'bik' is not: fill in the bank's BIK, the account is checked against it".into()),
            ),
            (None, _) => None,
        };
        if !problems.is_empty() {
            return Err(problems.join("; "));
        }
        Ok(Requisites {
            name: lead_text(lead, "company_name"),
            inn,
            bik,
            bank_account,
        })
    }

    /// A new company from these details: named `company_name`, or `INN <inn>` until someone
    /// renames it; the lead's responsible becomes the company's.
    pub(crate) fn new_company(&self, lead: &Lead) -> NewCompany {
        let name = self
            .name
            .clone()
            .or_else(|| self.inn.as_ref().map(|i| format!("INN {i}")))
            .unwrap_or_default();
        NewCompany {
            name,
            inn: self.inn.clone(),
            bank_account: self.bank_account.clone(),
            bik: self.bik.clone(),
            responsible: lead.responsible.clone(),
            ..Default::default()
        }
    }
}

/// The oldest company with this INN.
pub(crate) fn company_by_inn(ctx: &mut Ctx<'_, '_>, inn: &str) -> Result<Option<i64>, RobotError> {
    Ok(ctx.ws.company_by_inn(inn)?)
}

/// Ids of `kind` holding any of `values` as a `what` key, oldest first; only ids before
/// `before` (earlier leads). An index lookup in the store's `match_keys` projection.
fn matching(
    ctx: &mut Ctx<'_, '_>,
    kind: EntityKind,
    what: MatchKey,
    values: &[String],
    before: Option<i64>,
) -> Result<Vec<i64>, RobotError> {
    Ok(ctx.ws.matching(what, values, kind, before)?)
}

/// Contacts whose phones or e-mails include any of the lead's, oldest first.
pub(crate) fn contacts_of(ctx: &mut Ctx<'_, '_>, lead: &Lead) -> Result<Vec<i64>, RobotError> {
    let mut found: BTreeSet<i64> = BTreeSet::new();
    found.extend(matching(
        ctx,
        EntityKind::Contact,
        MatchKey::Phone,
        &lead.phones,
        None,
    )?);
    found.extend(matching(
        ctx,
        EntityKind::Contact,
        MatchKey::Email,
        &lead.emails,
        None,
    )?);
    Ok(found.into_iter().collect())
}

/// What `detect_repeat` can match on.
const MATCH_KINDS: [&str; 3] = ["phone", "email", "inn"];

/// `detect_repeat`: marks a lead whose phone, e-mail or INN is already known as a repeat lead.
///
/// Matches the lead's normalised phones and e-mails (e-mails case-insensitively) against
/// contacts, companies and earlier leads, and its INN (custom field `inn`) against companies and
/// earlier leads. When anything matches it appends `lead.repeat_detected` (unless the last one
/// said exactly the same) and fills the lead's empty Client fields: the oldest matching contact
/// and company, or else those of the oldest matching earlier lead.
pub struct DetectRepeat;

impl Robot for DetectRepeat {
    fn run(&self, ctx: &mut Ctx<'_, '_>, params: &Params) -> Result<(), RobotError> {
        let lead = subject_lead(ctx, "detect_repeat")?;
        let by: Vec<String> = match params.get("by") {
            None => MATCH_KINDS.iter().map(|s| (*s).to_owned()).collect(),
            Some(Value::Array(items)) => {
                let mut by = Vec::new();
                for item in items {
                    match item.as_str() {
                        Some(s) if MATCH_KINDS.contains(&s) => by.push(s.to_owned()),
                        _ => {
                            return Err(RobotError::Failed(format!(
                                "detect_repeat: 'by' has {item}; expected phone, email or inn"
                            )));
                        }
                    }
                }
                by
            }
            Some(other) => {
                return Err(RobotError::Failed(format!(
                    "detect_repeat: 'by' must be a list like [\"phone\", \"email\"], not {other}"
                )));
            }
        };
        let mut contacts = BTreeSet::new();
        let mut companies = BTreeSet::new();
        let mut leads = BTreeSet::new();
        let mut matched = Vec::new();
        for kind in MATCH_KINDS.iter().filter(|k| by.iter().any(|b| b == *k)) {
            let (what, values) = match *kind {
                "phone" => (MatchKey::Phone, lead.phones.clone()),
                "email" => (MatchKey::Email, lead.emails.clone()),
                _ => (MatchKey::Inn, lead_text(&lead, "inn").into_iter().collect()),
            };
            let c = if what == MatchKey::Inn {
                vec![]
            } else {
                matching(ctx, EntityKind::Contact, what, &values, None)?
            };
            let co = matching(ctx, EntityKind::Company, what, &values, None)?;
            let l = matching(ctx, EntityKind::Lead, what, &values, Some(lead.id))?;
            if !(c.is_empty() && co.is_empty() && l.is_empty()) {
                matched.push((*kind).to_owned());
            }
            contacts.extend(c);
            companies.extend(co);
            leads.extend(l);
        }
        if matched.is_empty() {
            return Ok(());
        }
        let found = RepeatDetected {
            by: matched,
            contacts: contacts.iter().copied().collect(),
            companies: companies.iter().copied().collect(),
            leads: leads.iter().copied().collect(),
        };
        if last_repeat(ctx, lead.id)?.as_ref() != Some(&found) {
            ctx.append_here(&[Event::LeadRepeatDetected(found)])?;
        }
        // The Client: a direct match, else what the oldest matching earlier lead is linked to.
        let mut via_leads = (None, None);
        for id in &leads {
            if via_leads.0.is_some() && via_leads.1.is_some() {
                break;
            }
            if let Some(Entity::Lead(earlier)) = ctx
                .ws
                .load(leadflow_engine::StreamId::new(EntityKind::Lead, *id))?
            {
                via_leads.0 = via_leads.0.or(earlier.contact);
                via_leads.1 = via_leads.1.or(earlier.company);
            }
        }
        let contact = contacts.first().copied().or(via_leads.0);
        let company = companies.first().copied().or(via_leads.1);
        let mut changes = BTreeMap::new();
        if let (None, Some(c)) = (lead.contact, contact) {
            changes.insert("contact".to_owned(), Value::from(c));
        }
        if let (None, Some(c)) = (lead.company, company) {
            changes.insert("company".to_owned(), Value::from(c));
        }
        if !changes.is_empty() {
            ctx.execute(&Command::UpdateLead {
                id: lead.id,
                changes,
            })?;
        }
        Ok(())
    }
}

/// The lead's latest `lead.repeat_detected`, if any.
fn last_repeat(ctx: &mut Ctx<'_, '_>, lead: i64) -> Result<Option<RepeatDetected>, RobotError> {
    let payload = ctx
        .ws
        .latest_of_type(
            leadflow_engine::StreamId::new(EntityKind::Lead, lead),
            "lead.repeat_detected",
        )?
        .map(|rec| rec.payload);
    Ok(payload.and_then(|p| serde_json::from_str(&p).ok()))
}

/// `find_or_create_company`: the company of the lead's INN, found or created, linked to the
/// lead.
///
/// The INN (custom field `inn`) must be there and pass its check digits; a BIK must be 9
/// digits and a bank account must match its BIK. A company found by INN gets the lead's bank
/// account and BIK only where it has none (nothing it has is overwritten); a new company is
/// named after `company_name` (or `INN <inn>`).
pub struct FindOrCreateCompany;

impl Robot for FindOrCreateCompany {
    fn run(&self, ctx: &mut Ctx<'_, '_>, _params: &Params) -> Result<(), RobotError> {
        let lead = subject_lead(ctx, "find_or_create_company")?;
        let req = Requisites::of(&lead).map_err(|m| {
            RobotError::Failed(format!("find_or_create_company: lead-{}: {m}", lead.id))
        })?;
        let Some(inn) = req.inn.clone() else {
            return Err(RobotError::Failed(format!(
                "find_or_create_company: lead-{} has no INN: fill in field 'inn' (10 or 12 digits)",
                lead.id
            )));
        };
        let company = match company_by_inn(ctx, &inn)? {
            Some(id) => {
                fill_blanks(ctx, id, &req)?;
                id
            }
            None => {
                ctx.execute(&Command::CreateCompany(req.new_company(&lead)))?
                    .stream
                    .id
            }
        };
        if lead.company != Some(company) {
            ctx.execute(&Command::UpdateLead {
                id: lead.id,
                changes: [("company".to_owned(), Value::from(company))]
                    .into_iter()
                    .collect(),
            })?;
        }
        Ok(())
    }
}

/// Gives a found company the lead's bank details where it has none.
pub(crate) fn fill_blanks(
    ctx: &mut Ctx<'_, '_>,
    company: i64,
    req: &Requisites,
) -> Result<(), RobotError> {
    let Some(Entity::Company(c)) = ctx
        .ws
        .load(leadflow_engine::StreamId::new(EntityKind::Company, company))?
    else {
        return Ok(());
    };
    let mut changes = BTreeMap::new();
    if let (None, Some(b)) = (&c.bik, &req.bik) {
        changes.insert("bik".to_owned(), Value::from(b.clone()));
    }
    // The lead's account was checked against the lead's BIK: it fits only that bank.
    let bik_after = c.bik.as_ref().or(req.bik.as_ref());
    if let (None, Some(a)) = (&c.bank_account, &req.bank_account)
        && bik_after == req.bik.as_ref()
    {
        changes.insert("bank_account".to_owned(), Value::from(a.clone()));
    }
    if !changes.is_empty() {
        ctx.execute(&Command::UpdateCompany {
            id: company,
            changes,
        })?;
    }
    Ok(())
}
