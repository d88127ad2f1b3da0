//! Records both ways: a leadflow lead, deal, contact or company → the Bitrix24 record
//! (scalars as strings, `OPPORTUNITY` `"1500.00"`, multi-fields `[{ID, VALUE_TYPE, VALUE,
//! TYPE_ID}]`, dates with the calendar's offset), and Bitrix24 `fields` → the leadflow
//! commands that make the change.
//!
//! Writing `fields`:
//! - a field leadflow stores is read (a wrong value is an error that names the Bitrix24 field);
//! - a custom field is read under its Bitrix24 name ([`Mapping::custom_field`]);
//! - a standard Bitrix24 field leadflow does not store (`OPENED`, `TYPE_ID`, `ADDRESS`, an
//!   unmapped `LAST_NAME`…) and the read-only fields (`ID`, `DATE_CREATE`,
//!   `IS_RETURN_CUSTOMER`…) are ignored, as Bitrix24 ignores fields it cannot set;
//! - any other name is an error: it is a typo or an unmapped `UF_CRM_*` field.
//!
//! Multi-fields (`PHONE`, `EMAIL`) on update: an item without `ID` is appended, one with `ID`
//! overwrites that value, one with `ID` and an empty `VALUE` or `DELETE: "Y"` deletes it. leadflow
//! keeps the values as a list, so an item's `ID` is derived from the record and the position:
//! `<record id> * 1000 + <1 phone, 2 e-mail> * 100 + <position from 1>`. It is stable until the
//! list changes; read the record again after changing it.

use super::error::Error;
use super::filter::{FieldKind, Select, boolean, scalar_text};
use super::mapping::Mapping;
use chrono::{DateTime, SecondsFormat, Utc};
use leadflow_engine::Command;
use leadflow_engine::command::{FieldInputs, NewCompany, NewContact, NewDeal, NewLead};
use leadflow_engine::config::Semantic;
use leadflow_engine::field::{FieldType, format_money};
use leadflow_engine::ids::{EmployeeId, EntityKind, PipelineId, StageId};
use leadflow_engine::model::{Company, Contact, Deal, Entity, Lead};
use serde_json::{Map, Value, json};

/// A record as the store gives it, with what the facade shows beside it.
#[derive(Debug, Clone, PartialEq)]
pub struct Found {
    /// The lead, deal, contact or company.
    pub entity: Entity,
    /// Whether repeat detection marked it (`IS_RETURN_CUSTOMER`): for a lead, its own
    /// `lead.repeat_detected`; for a deal, its lead's.
    pub repeat: bool,
}

/// The multi-fields leadflow keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Multi {
    Phone,
    Email,
}

impl Multi {
    fn name(self) -> &'static str {
        match self {
            Multi::Phone => "PHONE",
            Multi::Email => "EMAIL",
        }
    }

    fn code(self) -> i64 {
        match self {
            Multi::Phone => 1,
            Multi::Email => 2,
        }
    }
}

/// The most values of one multi-field an item id can number.
const MULTI_MAX: usize = 99;

fn multi_id(record: i64, m: Multi, index: usize) -> i64 {
    record
        .saturating_mul(1000)
        .saturating_add(m.code() * 100 + index as i64 + 1)
}

fn multi_items(record: i64, m: Multi, values: &[String]) -> Value {
    Value::Array(
        values
            .iter()
            .enumerate()
            .map(|(i, v)| {
                json!({"ID": multi_id(record, m, i).to_string(), "VALUE_TYPE": "WORK", "VALUE": v, "TYPE_ID": m.name()})
            })
            .collect(),
    )
}

/// Fields leadflow does not store, or that only the server sets: ignored when written.
const IGNORED: &[&str] = &[
    // read-only
    "ID",
    "DATE_CREATE",
    "DATE_MODIFY",
    "CREATED_BY_ID",
    "MODIFY_BY_ID",
    "IS_RETURN_CUSTOMER",
    "IS_REPEATED_APPROACH",
    "HAS_PHONE",
    "HAS_EMAIL",
    "HAS_IMOL",
    "STATUS_SEMANTIC_ID",
    "STAGE_SEMANTIC_ID",
    "DATE_CLOSED",
    "MOVED_BY_ID",
    "MOVED_TIME",
    "LAST_ACTIVITY_TIME",
    "LAST_ACTIVITY_BY",
    "IS_NEW",
    "IS_RECURRING",
    "CLOSED",
    // standard fields leadflow does not keep (unless mapped to a custom field)
    "OPENED",
    "SOURCE_DESCRIPTION",
    "HONORIFIC",
    "BIRTHDATE",
    "ADDRESS",
    "ADDRESS_2",
    "ADDRESS_CITY",
    "ADDRESS_POSTAL_CODE",
    "ADDRESS_REGION",
    "ADDRESS_PROVINCE",
    "ADDRESS_COUNTRY",
    "ADDRESS_COUNTRY_CODE",
    "ADDRESS_LOC_ADDR_ID",
    "TYPE_ID",
    "PROBABILITY",
    "BEGINDATE",
    "CLOSEDATE",
    "IS_MANUAL_OPPORTUNITY",
    "ORIGINATOR_ID",
    "ORIGIN_ID",
    "TAX_VALUE",
    "WEB",
    "IM",
    "LINK",
    "UTM_SOURCE",
    "UTM_MEDIUM",
    "UTM_CAMPAIGN",
    "UTM_CONTENT",
    "UTM_TERM",
    "LAST_NAME",
    "SECOND_NAME",
    "POST",
    "COMPANY_TITLE",
    "EXPORT",
    "COMPANY_TYPE",
    "INDUSTRY",
    "EMPLOYEES",
    "REVENUE",
    "BANKING_DETAILS",
    "LOCATION_ID",
    "ADDITIONAL_INFO",
    "PHOTO",
    "LOGO",
    "OBSERVER_IDS",
    "QUOTE_ID",
    "FACE_ID",
    "COMPANY_IDS",
    "LEAD_ID",
    "OPPORTUNITY",
    "STATUS_DESCRIPTION",
];

/// A time as Bitrix24 writes it: RFC 3339 in the calendar's zone, with its offset.
pub fn date(m: &Mapping, t: DateTime<Utc>) -> String {
    t.with_timezone(&m.tz())
        .to_rfc3339_opts(SecondsFormat::Secs, false)
}

fn id_text(id: Option<i64>) -> Value {
    id.map_or(Value::Null, |i| Value::from(i.to_string()))
}

fn user_text(m: &Mapping, e: Option<&EmployeeId>) -> Value {
    e.and_then(|e| m.user(e))
        .map_or(Value::Null, |u| Value::from(u.to_string()))
}

fn yn(b: bool) -> Value {
    Value::from(if b { "Y" } else { "N" })
}

fn semantic_code(s: Option<Semantic>) -> Value {
    Value::from(match s {
        Some(Semantic::Success) => "S",
        Some(Semantic::Failure) => "F",
        _ => "P",
    })
}

/// A custom field's value as Bitrix24 shows it (an enumeration's option as its item id).
fn custom_text(def: &leadflow_engine::config::FieldDef, v: &Value) -> Value {
    if let (FieldType::Enum, Value::String(s)) = (def.ty, v)
        && let Some(i) = def.options.iter().position(|o| o == s)
    {
        return Value::from(crate::bitrix::catalog::enum_id(i));
    }
    match (Some(def.ty), v) {
        (_, Value::Null) => Value::Null,
        (Some(FieldType::Money), Value::Number(n)) => n.as_i64().map_or_else(
            || Value::from(n.to_string()),
            |i| Value::from(format_money(i)),
        ),
        (_, Value::Bool(b)) => yn(*b),
        (_, Value::Array(a)) => Value::Array(a.iter().map(|x| custom_text(def, x)).collect()),
        (_, Value::String(s)) => Value::from(s.clone()),
        (_, other) => Value::from(other.to_string()),
    }
}

/// The Bitrix24 record of a lead, deal, contact or company, with the fields `select` keeps
/// (`Select::all()` for `crm.*.get`).
pub fn record(m: &Mapping, found: &Found, select: &Select) -> Value {
    let mut r = Map::new();
    let (kind, fields) = match &found.entity {
        Entity::Lead(l) => {
            lead_record(m, l, found.repeat, &mut r);
            (EntityKind::Lead, &l.fields)
        }
        Entity::Deal(d) => {
            deal_record(m, d, found.repeat, &mut r);
            (EntityKind::Deal, &d.fields)
        }
        Entity::Contact(c) => {
            contact_record(m, c, &mut r);
            (EntityKind::Contact, &c.fields)
        }
        Entity::Company(c) => {
            company_record(m, c, &mut r);
            (EntityKind::Company, &c.fields)
        }
        Entity::Task(t) => return json!({"ID": t.id.to_string()}),
    };
    for def in m.config().fields.iter().filter(|f| f.entity == kind) {
        let name = m.field_name(kind, &def.id);
        let v = fields.get(&def.id).unwrap_or(&Value::Null);
        // An empty custom field standing for a plain one (`OPPORTUNITY`) keeps its default.
        if v.is_null() && r.contains_key(&name) {
            continue;
        }
        r.insert(name, custom_text(def, v));
    }
    r.retain(|k, _| {
        let fk = if k == "PHONE" || k == "EMAIL" {
            FieldKind::Multi
        } else if k.starts_with("UF_") {
            FieldKind::Custom
        } else {
            FieldKind::Plain
        };
        select.keeps(k, fk)
    });
    Value::Object(r)
}

fn common(
    m: &Mapping,
    r: &mut Map<String, Value>,
    id: i64,
    created: DateTime<Utc>,
    updated: DateTime<Utc>,
    responsible: Option<&EmployeeId>,
) {
    r.insert("ID".into(), Value::from(id.to_string()));
    r.insert("ASSIGNED_BY_ID".into(), user_text(m, responsible));
    r.insert("DATE_CREATE".into(), Value::from(date(m, created)));
    r.insert("DATE_MODIFY".into(), Value::from(date(m, updated)));
    r.insert("OPENED".into(), yn(true));
}

fn contacts(r: &mut Map<String, Value>, id: i64, phones: &[String], emails: &[String]) {
    r.insert("HAS_PHONE".into(), yn(!phones.is_empty()));
    r.insert("HAS_EMAIL".into(), yn(!emails.is_empty()));
    r.insert("PHONE".into(), multi_items(id, Multi::Phone, phones));
    r.insert("EMAIL".into(), multi_items(id, Multi::Email, emails));
}

fn stage_semantic(m: &Mapping, pipeline: &PipelineId, stage: &StageId) -> Option<Semantic> {
    m.config()
        .pipeline(pipeline)
        .and_then(|p| p.stage(stage))
        .map(|s| s.semantic)
}

fn lead_record(m: &Mapping, l: &Lead, repeat: bool, r: &mut Map<String, Value>) {
    common(
        m,
        r,
        l.id,
        l.created_at,
        l.updated_at,
        l.responsible.as_ref(),
    );
    r.insert("TITLE".into(), Value::from(l.title.clone()));
    r.insert(
        "NAME".into(),
        l.name.clone().map_or(Value::Null, Value::from),
    );
    r.insert("STATUS_ID".into(), Value::from(m.status_id(&l.stage)));
    r.insert(
        "STATUS_SEMANTIC_ID".into(),
        semantic_code(stage_semantic(m, &l.pipeline, &l.stage)),
    );
    r.insert(
        "STATUS_DESCRIPTION".into(),
        l.stage_reason.clone().map_or(Value::Null, Value::from),
    );
    r.insert("SOURCE_ID".into(), Value::from(m.source_id(&l.source)));
    r.insert(
        "COMMENTS".into(),
        l.comment.clone().map_or(Value::Null, Value::from),
    );
    r.insert("CONTACT_ID".into(), id_text(l.contact));
    r.insert("COMPANY_ID".into(), id_text(l.company));
    r.insert(
        "CURRENCY_ID".into(),
        Value::from(m.config().currency.clone()),
    );
    r.insert("OPPORTUNITY".into(), Value::from("0.00"));
    r.insert("IS_RETURN_CUSTOMER".into(), yn(repeat));
    contacts(r, l.id, &l.phones, &l.emails);
}

fn deal_record(m: &Mapping, d: &Deal, repeat: bool, r: &mut Map<String, Value>) {
    common(
        m,
        r,
        d.id,
        d.created_at,
        d.updated_at,
        d.responsible.as_ref(),
    );
    let semantic = stage_semantic(m, &d.pipeline, &d.stage);
    r.insert("TITLE".into(), Value::from(d.title.clone()));
    r.insert(
        "CATEGORY_ID".into(),
        id_text(m.category_of(&d.pipeline).map(|c| c.id)),
    );
    r.insert(
        "STAGE_ID".into(),
        Value::from(m.stage_id(&d.pipeline, &d.stage)),
    );
    r.insert("STAGE_SEMANTIC_ID".into(), semantic_code(semantic));
    r.insert(
        "CLOSED".into(),
        yn(semantic.is_some_and(|s| s != Semantic::InProgress)),
    );
    r.insert(
        "OPPORTUNITY".into(),
        Value::from(format_money(d.amount.unwrap_or(0))),
    );
    r.insert("CURRENCY_ID".into(), Value::from(d.currency.clone()));
    r.insert("CONTACT_ID".into(), id_text(d.contact));
    r.insert(
        "CONTACT_IDS".into(),
        Value::Array(
            d.contact
                .map(|c| Value::from(c.to_string()))
                .into_iter()
                .collect(),
        ),
    );
    r.insert("COMPANY_ID".into(), id_text(d.company));
    r.insert("LEAD_ID".into(), id_text(d.lead));
    r.insert(
        "COMMENTS".into(),
        d.comment.clone().map_or(Value::Null, Value::from),
    );
    r.insert("IS_RETURN_CUSTOMER".into(), yn(repeat));
}

fn contact_record(m: &Mapping, c: &Contact, r: &mut Map<String, Value>) {
    common(
        m,
        r,
        c.id,
        c.created_at,
        c.updated_at,
        c.responsible.as_ref(),
    );
    r.insert("NAME".into(), Value::from(c.name.clone()));
    r.insert("COMPANY_ID".into(), id_text(c.company));
    contacts(r, c.id, &c.phones, &c.emails);
}

fn company_record(m: &Mapping, c: &Company, r: &mut Map<String, Value>) {
    common(
        m,
        r,
        c.id,
        c.created_at,
        c.updated_at,
        c.responsible.as_ref(),
    );
    r.insert("TITLE".into(), Value::from(c.name.clone()));
    contacts(r, c.id, &c.phones, &c.emails);
}

// ---- fields → commands ----------------------------------------------------------------

/// Reads one `fields` object.
struct Reader<'a> {
    m: &'a Mapping,
    kind: EntityKind,
}

fn bad(name: &str, what: &str, v: &Value) -> Error {
    Error::InvalidArgument(format!("field {name}: {what}, got {v}"))
}

impl Reader<'_> {
    /// Text, or `None` for null / empty.
    fn text(&self, name: &str, v: &Value) -> Result<Option<String>, Error> {
        match v {
            Value::Null => Ok(None),
            Value::Array(_) | Value::Object(_) => Err(bad(name, "expected text", v)),
            other => Ok(scalar_text(other).filter(|s| !s.trim().is_empty())),
        }
    }

    /// A record id; `0`, null and empty are none (Bitrix24 writes `0` for "no link").
    fn id(&self, name: &str, v: &Value) -> Result<Option<i64>, Error> {
        let v = match v {
            Value::Array(a) => a.first().unwrap_or(&Value::Null),
            v => v,
        };
        match self.text(name, v)? {
            None => Ok(None),
            Some(t) => match t.trim().parse::<i64>() {
                Ok(0) => Ok(None),
                Ok(n) if n > 0 => Ok(Some(n)),
                _ => Err(bad(name, "expected a record id", v)),
            },
        }
    }

    fn user(&self, name: &str, v: &Value) -> Result<Option<EmployeeId>, Error> {
        match self.id(name, v)? {
            None => Ok(None),
            Some(n) => self.m.employee(n).cloned().map(Some).ok_or_else(|| {
                Error::InvalidArgument(format!(
                    "field {name}: user {n} is no employee (map users to employees in [bitrix24] users)"
                ))
            }),
        }
    }

    fn source(&self, name: &str, v: &Value) -> Result<Option<String>, Error> {
        match self.text(name, v)? {
            None => Ok(None),
            Some(s) => self.m.source(&s).map(|s| Some(s.to_owned())).ok_or_else(|| {
                Error::InvalidArgument(format!(
                    "field {name}: unknown source '{s}' (crm.status.list with ENTITY_ID SOURCE lists them)"
                ))
            }),
        }
    }

    fn currency(&self, name: &str, v: &Value) -> Result<(), Error> {
        match self.text(name, v)? {
            Some(c) if !c.eq_ignore_ascii_case(&self.m.config().currency) => {
                Err(Error::InvalidArgument(format!(
                    "field {name}: leadflow keeps amounts in {}, got {c}",
                    self.m.config().currency
                )))
            }
            _ => Ok(()),
        }
    }

    /// A custom field's value as leadflow's commands take it: Bitrix24 booleans as booleans.
    fn custom(&self, field: &str, name: &str, v: &Value) -> Result<Value, Error> {
        let def = self.m.config().field(self.kind, field);
        let ty = def.map(|d| d.ty);
        Ok(match (ty, v) {
            (_, Value::String(s)) if s.is_empty() => Value::Null,
            // An enumeration takes its item id (as Bitrix24 does) or the option's text.
            (Some(FieldType::Enum), v) if scalar_text(v).is_some() => {
                let text = scalar_text(v).unwrap_or_default();
                let options = def.map_or(&[][..], |d| &d.options[..]);
                match crate::bitrix::catalog::enum_option(options, &text) {
                    Some(o) => Value::from(o),
                    None => {
                        return Err(bad(
                            name,
                            &format!(
                                "expected an item id 1 to {} or an option (crm.*.fields lists them)",
                                options.len()
                            ),
                            v,
                        ));
                    }
                }
            }
            (Some(FieldType::Bool), v) if !v.is_null() => {
                Value::Bool(boolean(v).ok_or_else(|| bad(name, "expected Y or N", v))?)
            }
            (_, Value::Object(_)) => return Err(bad(name, "expected a value", v)),
            (_, v) => v.clone(),
        })
    }
}

/// The items of a multi-field as written: a list (or PHP map) of `{ID?, VALUE, DELETE?}`,
/// or plain values.
/// One written multi-field item: its `ID` (if any), its value (if not empty), and whether it
/// says `DELETE`.
type Item = (Option<i64>, Option<String>, bool);

fn items(name: &str, v: &Value) -> Result<Vec<Item>, Error> {
    let list: Vec<&Value> = match v {
        Value::Null => Vec::new(),
        Value::Array(a) => a.iter().collect(),
        Value::Object(o) if o.keys().any(|k| k.eq_ignore_ascii_case("VALUE")) => vec![v],
        Value::Object(o) => o.values().collect(),
        scalar => vec![scalar],
    };
    let mut out = Vec::new();
    for item in list {
        match item {
            Value::Object(o) => {
                let get = |k: &str| {
                    o.iter()
                        .find(|(key, _)| key.eq_ignore_ascii_case(k))
                        .map(|(_, v)| v)
                };
                let id = match get("ID").and_then(scalar_text) {
                    Some(t) if !t.trim().is_empty() => Some(
                        t.trim()
                            .parse::<i64>()
                            .map_err(|_| bad(name, "item ID must be a number", item))?,
                    ),
                    _ => None,
                };
                let value = get("VALUE")
                    .and_then(scalar_text)
                    .filter(|s| !s.trim().is_empty());
                let delete = get("DELETE").and_then(boolean).unwrap_or(false);
                out.push((id, value, delete));
            }
            Value::Array(_) => return Err(bad(name, "expected items like {\"VALUE\": …}", item)),
            scalar => out.push((
                None,
                scalar_text(scalar).filter(|s| !s.trim().is_empty()),
                false,
            )),
        }
    }
    Ok(out)
}

/// The values of a new record's items: every non-empty value not marked `DELETE`; an `ID`
/// (copied from another record) is ignored.
fn new_items(m: Multi, written: &Value) -> Result<Vec<String>, Error> {
    Ok(items(m.name(), written)?
        .into_iter()
        .filter(|(_, _, delete)| !delete)
        .filter_map(|(_, value, _)| value)
        .collect())
}

/// The values after applying written items to the current ones (see the module docs).
fn apply_items(
    record: i64,
    m: Multi,
    current: &[String],
    written: &Value,
) -> Result<Vec<String>, Error> {
    let name = m.name();
    let mut values: Vec<Option<String>> = current.iter().cloned().map(Some).collect();
    for (id, value, delete) in items(name, written)? {
        match id {
            None => {
                if let Some(v) = value {
                    values.push(Some(v));
                }
            }
            Some(id) => {
                let index = (0..current.len().min(MULTI_MAX))
                    .find(|i| multi_id(record, m, *i) == id)
                    .ok_or_else(|| {
                        Error::InvalidArgument(format!(
                            "field {name}: item {id} is not one of this record's {}; read the record for its item IDs",
                            name.to_lowercase()
                        ))
                    })?;
                values[index] = if delete { None } else { value };
            }
        }
    }
    Ok(values.into_iter().flatten().collect())
}

/// Whether a written amount is zero: `OPPORTUNITY` reads `"0.00"` when there is none, so
/// writing that back is no change.
fn zero_amount(v: &Value) -> bool {
    scalar_text(v).and_then(|t| leadflow_engine::field::parse_money(&t)) == Some(0)
}

fn upper(k: &str) -> String {
    k.trim().to_ascii_uppercase()
}

fn fields_object(fields: Option<&Value>) -> Result<Map<String, Value>, Error> {
    match fields {
        None | Some(Value::Null) => Ok(Map::new()),
        Some(Value::Object(o)) => Ok(o.clone()),
        Some(Value::Array(a)) if a.is_empty() => Ok(Map::new()),
        Some(v) => Err(Error::InvalidArgument(format!(
            "fields must be an object like {{\"TITLE\": \"…\"}}, got {v}"
        ))),
    }
}

fn unknown(kind: EntityKind, name: &str) -> Error {
    Error::InvalidArgument(format!(
        "unknown {kind} field {name}: crm.{kind}.fields lists the fields; map custom fields in [bitrix24.fields.{kind}]"
    ))
}

/// The command that creates a record from Bitrix24 `fields`.
pub fn add_command(
    m: &Mapping,
    kind: EntityKind,
    fields: Option<&Value>,
) -> Result<Command, Error> {
    let r = Reader { m, kind };
    let fields = fields_object(fields)?;
    let mut custom = FieldInputs::new();
    let mut phones = Vec::new();
    let mut emails = Vec::new();
    let mut lead = NewLead::default();
    let mut deal = NewDeal::default();
    let mut contact = NewContact::default();
    let mut company = NewCompany::default();
    let mut category = None;
    let mut stage_id = None;
    let mut name_parts: [Option<String>; 3] = [None, None, None];
    for (k, v) in &fields {
        let name = upper(k);
        if let Some(f) = m.custom_field(kind, &name) {
            let value = r.custom(f, &name, v)?;
            if !value.is_null() {
                custom.insert(f.to_owned(), value);
            }
            continue;
        }
        use EntityKind as K;
        match (kind, name.as_str()) {
            (K::Lead | K::Contact | K::Company, "PHONE") => phones = new_items(Multi::Phone, v)?,
            (K::Lead | K::Contact | K::Company, "EMAIL") => emails = new_items(Multi::Email, v)?,
            (_, "ASSIGNED_BY_ID") => {
                let u = r.user(&name, v)?;
                lead.responsible = u.clone();
                deal.responsible = u.clone();
                contact.responsible = u.clone();
                company.responsible = u;
            }
            (K::Lead | K::Deal, "CURRENCY_ID") => r.currency(&name, v)?,
            (K::Lead, "TITLE") => lead.title = r.text(&name, v)?,
            (K::Lead, "NAME") => lead.name = r.text(&name, v)?,
            (K::Lead, "COMMENTS") => lead.comment = r.text(&name, v)?,
            (K::Lead, "SOURCE_ID") => lead.source = r.source(&name, v)?,
            (K::Lead, "STATUS_ID") => {
                if let Some(s) = r.text(&name, v)? {
                    lead.stage = Some(
                        m.lead_stage(&s)
                            .cloned()
                            .ok_or_else(|| unknown_status(&name, &s))?,
                    );
                }
            }
            (K::Lead, "CONTACT_ID") => lead.contact = r.id(&name, v)?,
            (K::Lead, "COMPANY_ID") => lead.company = r.id(&name, v)?,
            (K::Deal, "TITLE") => deal.title = r.text(&name, v)?.unwrap_or_default(),
            (K::Deal, "CATEGORY_ID") => {
                category = match r.text(&name, v)? {
                    Some(t) => Some(
                        t.trim()
                            .parse::<i64>()
                            .map_err(|_| bad(&name, "expected a category id", v))?,
                    ),
                    None => None,
                }
            }
            (K::Deal, "STAGE_ID") => stage_id = r.text(&name, v)?,
            (K::Deal, "OPPORTUNITY") => {
                deal.amount = match v {
                    Value::Null => None,
                    Value::String(s) if s.trim().is_empty() => None,
                    Value::Number(_) | Value::String(_) => Some(v.clone()),
                    _ => return Err(bad(&name, "expected an amount like 1500.00", v)),
                }
            }
            (K::Deal, "CONTACT_ID") => deal.contact = r.id(&name, v)?.or(deal.contact),
            (K::Deal, "CONTACT_IDS") => deal.contact = deal.contact.or(r.id(&name, v)?),
            (K::Deal, "COMPANY_ID") => deal.company = r.id(&name, v)?,
            (K::Deal, "LEAD_ID") => deal.lead = r.id(&name, v)?,
            (K::Deal, "COMMENTS") => deal.comment = r.text(&name, v)?,
            (K::Contact, "NAME") => name_parts[0] = r.text(&name, v)?,
            (K::Contact, "SECOND_NAME") => name_parts[1] = r.text(&name, v)?,
            (K::Contact, "LAST_NAME") => name_parts[2] = r.text(&name, v)?,
            (K::Contact, "COMPANY_ID") => contact.company = r.id(&name, v)?,
            (K::Company, "TITLE") => company.name = r.text(&name, v)?.unwrap_or_default(),
            (_, "STAGE_REASON") => {}
            (_, other) if IGNORED.contains(&other) => {}
            (
                K::Deal | K::Contact | K::Company,
                "SOURCE_ID" | "COMMENTS" | "CURRENCY_ID" | "OPPORTUNITY" | "STATUS_ID",
            ) => {}
            (_, other) => return Err(unknown(kind, other)),
        }
    }
    Ok(match kind {
        EntityKind::Lead => {
            lead.phones = phones;
            lead.emails = emails;
            lead.fields = custom;
            Command::CreateLead(lead)
        }
        EntityKind::Deal => {
            let within = category;
            if let Some(n) = category {
                let c = m.category(n).ok_or_else(|| {
                    Error::InvalidArgument(format!(
                        "field CATEGORY_ID: no deal category {n} (crm.category.list lists them)"
                    ))
                })?;
                deal.pipeline = Some(c.pipeline.clone());
            }
            if let Some(s) = stage_id {
                let (c, stage) = m
                    .deal_stage(&s, within)
                    .ok_or_else(|| unknown_stage(&s, within))?;
                deal.pipeline = Some(c.pipeline.clone());
                deal.stage = Some(stage.clone());
            }
            if deal.pipeline.is_none() {
                // Category 0 is the default, as in Bitrix24.
                deal.pipeline = m.category(0).map(|c| c.pipeline.clone());
            }
            deal.fields = custom;
            Command::CreateDeal(deal)
        }
        EntityKind::Contact => {
            contact.name = name_parts
                .into_iter()
                .flatten()
                .collect::<Vec<_>>()
                .join(" ");
            contact.phones = phones;
            contact.emails = emails;
            contact.fields = custom;
            Command::CreateContact(contact)
        }
        _ => {
            company.phones = phones;
            company.emails = emails;
            company.fields = custom;
            Command::CreateCompany(company)
        }
    })
}

fn unknown_status(name: &str, s: &str) -> Error {
    Error::InvalidArgument(format!(
        "field {name}: no lead stage has STATUS_ID '{s}' (crm.status.list with ENTITY_ID STATUS lists them)"
    ))
}

fn unknown_stage(s: &str, within: Option<i64>) -> Error {
    let place = within.map_or_else(String::new, |c| format!(" in category {c}"));
    Error::InvalidArgument(format!(
        "field STAGE_ID: no deal stage '{s}'{place} (crm.status.list with ENTITY_ID DEAL_STAGE or DEAL_STAGE_<n> lists them)"
    ))
}

/// The commands that change `current` as Bitrix24 `fields` say: the field changes, then a
/// new responsible, then a new stage (so a stage that needs a responsible can be entered in
/// one call). Empty when nothing changes.
pub fn update_commands(
    m: &Mapping,
    current: &Entity,
    fields: Option<&Value>,
) -> Result<Vec<Command>, Error> {
    let (kind, id) = match current {
        Entity::Lead(l) => (EntityKind::Lead, l.id),
        Entity::Deal(d) => (EntityKind::Deal, d.id),
        Entity::Contact(c) => (EntityKind::Contact, c.id),
        Entity::Company(c) => (EntityKind::Company, c.id),
        Entity::Task(_) => return Err(Error::NotFound),
    };
    let r = Reader { m, kind };
    let fields = fields_object(fields)?;
    let mut changes = FieldInputs::new();
    let mut assign: Option<EmployeeId> = None;
    let mut stage: Option<StageId> = None;
    let mut reason: Option<String> = None;
    let (phones, emails, responsible) = match current {
        Entity::Lead(l) => (&l.phones[..], &l.emails[..], l.responsible.as_ref()),
        Entity::Contact(c) => (&c.phones[..], &c.emails[..], c.responsible.as_ref()),
        Entity::Company(c) => (&c.phones[..], &c.emails[..], c.responsible.as_ref()),
        Entity::Deal(d) => (&[][..], &[][..], d.responsible.as_ref()),
        Entity::Task(_) => (&[][..], &[][..], None),
    };
    let current_fields = match current {
        Entity::Lead(l) => &l.fields,
        Entity::Deal(d) => &d.fields,
        Entity::Contact(c) => &c.fields,
        Entity::Company(c) => &c.fields,
        Entity::Task(_) => return Err(Error::NotFound),
    };
    for (k, v) in &fields {
        let name = upper(k);
        if let Some(f) = m.custom_field(kind, &name) {
            let empty = current_fields.get(f).is_none_or(Value::is_null);
            if name == "OPPORTUNITY" && empty && zero_amount(v) {
                continue;
            }
            changes.insert(f.to_owned(), r.custom(f, &name, v)?);
            continue;
        }
        use EntityKind as K;
        let text_or_null = |v: &Value| r.text(&name, v).map(|t| t.map_or(Value::Null, Value::from));
        let id_or_null = |v: &Value| r.id(&name, v).map(|t| t.map_or(Value::Null, Value::from));
        match (kind, name.as_str()) {
            (K::Lead | K::Contact | K::Company, "PHONE") => {
                changes.insert(
                    "phones".into(),
                    json!(apply_items(id, Multi::Phone, phones, v)?),
                );
            }
            (K::Lead | K::Contact | K::Company, "EMAIL") => {
                changes.insert(
                    "emails".into(),
                    json!(apply_items(id, Multi::Email, emails, v)?),
                );
            }
            (_, "ASSIGNED_BY_ID") => {
                let to = r.user(&name, v)?;
                if to.as_ref() != responsible {
                    match (kind, to) {
                        (K::Lead | K::Deal, Some(to)) => assign = Some(to),
                        (K::Lead | K::Deal, None) => {
                            return Err(bad(
                                &name,
                                "a lead or deal cannot be left without a responsible",
                                v,
                            ));
                        }
                        _ => {
                            return Err(Error::InvalidArgument(format!(
                                "field ASSIGNED_BY_ID: the responsible of a {kind} is set when it is created"
                            )));
                        }
                    }
                }
            }
            (K::Lead | K::Deal, "CURRENCY_ID") => r.currency(&name, v)?,
            (K::Lead | K::Deal, "TITLE") | (K::Company, "TITLE") => {
                let key = if kind == K::Company { "name" } else { "title" };
                changes.insert(key.into(), text_or_null(v)?);
            }
            (K::Lead | K::Contact, "NAME") => {
                changes.insert("name".into(), text_or_null(v)?);
            }
            (K::Lead | K::Deal, "COMMENTS") => {
                changes.insert("comment".into(), text_or_null(v)?);
            }
            (K::Lead, "SOURCE_ID") => {
                if let Some(s) = r.source(&name, v)? {
                    changes.insert("source".into(), Value::from(s));
                }
            }
            (K::Lead, "STATUS_ID") => {
                if let Some(s) = r.text(&name, v)? {
                    stage = Some(
                        m.lead_stage(&s)
                            .cloned()
                            .ok_or_else(|| unknown_status(&name, &s))?,
                    );
                }
            }
            (K::Lead, "STATUS_DESCRIPTION") | (_, "STAGE_REASON") => reason = r.text(&name, v)?,
            (K::Lead | K::Deal, "CONTACT_ID") | (K::Deal, "CONTACT_IDS") => {
                changes.insert("contact".into(), id_or_null(v)?);
            }
            (K::Lead | K::Deal | K::Contact, "COMPANY_ID") => {
                changes.insert("company".into(), id_or_null(v)?);
            }
            (K::Deal, "LEAD_ID") => {
                changes.insert("lead".into(), id_or_null(v)?);
            }
            (K::Deal, "OPPORTUNITY") => {
                let Entity::Deal(d) = current else { continue };
                if d.amount.is_none() && zero_amount(v) {
                    continue;
                }
                let amount = match v {
                    Value::String(s) if s.trim().is_empty() => Value::Null,
                    Value::Null | Value::Number(_) | Value::String(_) => v.clone(),
                    _ => return Err(bad(&name, "expected an amount like 1500.00", v)),
                };
                changes.insert("amount".into(), amount);
            }
            (K::Deal, "CATEGORY_ID") => {
                let Entity::Deal(d) = current else { continue };
                let now = m.category_of(&d.pipeline).map(|c| c.id);
                let given = r.id(&name, v)?.or(Some(0));
                if given != now {
                    return Err(Error::InvalidArgument(
                        "field CATEGORY_ID: a deal's category is fixed when it is created".into(),
                    ));
                }
            }
            (K::Deal, "STAGE_ID") => {
                let Entity::Deal(d) = current else { continue };
                if let Some(s) = r.text(&name, v)? {
                    let within = m.category_of(&d.pipeline).map(|c| c.id);
                    let (_, st) = m
                        .deal_stage(&s, within)
                        .ok_or_else(|| unknown_stage(&s, within))?;
                    stage = Some(st.clone());
                }
            }
            (_, other) if IGNORED.contains(&other) => {}
            (
                K::Deal | K::Contact | K::Company,
                "SOURCE_ID" | "COMMENTS" | "CURRENCY_ID" | "OPPORTUNITY" | "STATUS_ID"
                | "STATUS_DESCRIPTION",
            ) => {}
            (_, other) => return Err(unknown(kind, other)),
        }
    }
    let mut out = Vec::new();
    if !changes.is_empty() {
        out.push(match kind {
            EntityKind::Lead => Command::UpdateLead { id, changes },
            EntityKind::Deal => Command::UpdateDeal { id, changes },
            EntityKind::Contact => Command::UpdateContact { id, changes },
            _ => Command::UpdateCompany { id, changes },
        });
    }
    if let Some(to) = assign {
        out.push(match kind {
            EntityKind::Lead => Command::AssignLead { id, to },
            _ => Command::AssignDeal { id, to },
        });
    }
    let now = current.stage().map(|(_, s)| s.clone());
    if let Some(stage) = stage.filter(|s| Some(s) != now.as_ref()) {
        out.push(match kind {
            EntityKind::Lead => Command::MoveLead { id, stage, reason },
            _ => Command::MoveDeal { id, stage, reason },
        });
    }
    Ok(out)
}

/// The Bitrix24 name of a leadflow field of `kind`: `responsible` is `ASSIGNED_BY_ID`, a
/// custom field its `UF_CRM_*` (or mapped) name.
pub fn bitrix_name(m: &Mapping, kind: EntityKind, field: &str) -> String {
    use EntityKind as K;
    let name = match (kind, field) {
        (K::Company, "name") | (_, "title") => "TITLE",
        (_, "name") => "NAME",
        (_, "phone" | "phones") => "PHONE",
        (_, "email" | "emails") => "EMAIL",
        (_, "source") => "SOURCE_ID",
        (_, "responsible") => "ASSIGNED_BY_ID",
        (_, "comment") => "COMMENTS",
        (_, "contact") => "CONTACT_ID",
        (_, "company") => "COMPANY_ID",
        (_, "lead") => "LEAD_ID",
        (_, "amount") => "OPPORTUNITY",
        (K::Lead, "stage") => "STATUS_ID",
        (_, "stage") => "STAGE_ID",
        (_, "pipeline") => "CATEGORY_ID",
        (_, other) if m.config().field(kind, other).is_some() => {
            return m.field_name(kind, other);
        }
        (_, other) => return other.to_owned(),
    };
    name.to_owned()
}

/// A refusal of leadflow's `decide` as the facade's error: leadflow's message, followed by the
/// Bitrix24 names of the fields it names, so a Bitrix24 client knows what to send.
pub fn rejected(m: &Mapping, kind: EntityKind, r: &leadflow_engine::Rejection) -> Error {
    use leadflow_engine::Rejection as R;
    let names = |fields: &[&str]| -> String {
        fields
            .iter()
            .map(|alternatives| {
                alternatives
                    .split(" or ")
                    .map(|f| bitrix_name(m, kind, f.trim()))
                    .collect::<Vec<_>>()
                    .join(" or ")
            })
            .collect::<Vec<_>>()
            .join(", ")
    };
    let fields = match r {
        R::MissingRequired { missing, .. } => Some(names(
            &missing.iter().map(String::as_str).collect::<Vec<_>>(),
        )),
        R::InvalidValue { field, .. }
        | R::ReadOnlyField { field, .. }
        | R::UnknownField { field, .. } => Some(names(&[field.as_str()])),
        R::UnknownSource { .. } => Some("SOURCE_ID".to_owned()),
        R::ReasonRequired { .. } | R::UnknownReason { .. } => Some(if kind == EntityKind::Lead {
            "STATUS_DESCRIPTION".to_owned()
        } else {
            "STAGE_REASON".to_owned()
        }),
        R::NotInTeam { employee, .. } | R::InactiveEmployee { employee } => {
            m.user(employee).map(|u| format!("ASSIGNED_BY_ID {u}"))
        }
        _ => None,
    };
    Error::Rejected(match fields {
        Some(f) => format!("{r} (Bitrix24: {f})"),
        None => r.to_string(),
    })
}
