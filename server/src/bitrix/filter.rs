//! `crm.*.list` parameters → a leadflow-level list request: `filter` keys with their prefixes
//! (`=`, `!`/`!=`, `>`, `>=`, `<`, `<=`, `@`, `!@`, `%`, `=%`/`%=`, `!%`), `order`,
//! `select` and `start`, with Bitrix24's ids already mapped to leadflow's (stages, pipelines,
//! employees, sources, custom fields).
//!
//! A filter on a field leadflow does not know is an error that names it, with two
//! exceptions that Bitrix24 clients send and that cannot change the answer: `CHECK_PERMISSIONS`
//! (the token's role decides) and `OPENED` (every leadflow record is open to the roles that
//! may see it), which are ignored.

use super::envelope::Start;
use super::error::Error;
use super::mapping::Mapping;
use super::params::Params;
use chrono::{DateTime, NaiveDate, NaiveDateTime, TimeZone, Utc};
use leadflow_engine::EntityKind;
use leadflow_engine::ids::{EmployeeId, PipelineId, StageId};
use serde_json::Value;
use std::collections::BTreeSet;

/// A field a list can be filtered or ordered by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Field {
    /// `ID`.
    Id,
    /// `TITLE` (leads, deals; a company's name).
    Title,
    /// `NAME` (a lead's contact name, a contact's name).
    Name,
    /// `STATUS_ID` / `STAGE_ID`: the operand is a [`Operand::Stage`].
    Stage,
    /// `CATEGORY_ID`: the deal pipeline ([`Operand::Pipeline`]).
    Pipeline,
    /// `ASSIGNED_BY_ID` ([`Operand::Employee`]).
    Responsible,
    /// `SOURCE_ID` (a source id as text).
    Source,
    /// `PHONE`: any stored phone (E.164 when compared for equality).
    Phone,
    /// `EMAIL`: any stored e-mail (lowercase when compared for equality).
    Email,
    /// `DATE_CREATE`.
    Created,
    /// `DATE_MODIFY`.
    Updated,
    /// `CONTACT_ID`.
    Contact,
    /// `COMPANY_ID`.
    Company,
    /// `LEAD_ID` (deals).
    Lead,
    /// `OPPORTUNITY` of a deal, in minor units.
    Amount,
    /// `IS_RETURN_CUSTOMER`: repeat detection.
    Repeat,
    /// A custom field, by its leadflow id.
    Custom(String),
}

/// How a condition compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cmp {
    /// `=` (the default).
    Eq,
    /// `!` / `!=`.
    NotEq,
    /// `>`.
    Gt,
    /// `>=`.
    Ge,
    /// `<`.
    Lt,
    /// `<=`.
    Le,
    /// `@`: one of a list (also `=` with a list).
    In,
    /// `!@`: none of a list (also `!=` with a list).
    NotIn,
    /// `%`: contains the text, case-insensitively.
    Contains,
    /// `!%`: does not contain the text.
    NotContains,
    /// `=%` / `%=`: SQL `LIKE` with the value's own `%` and `_`.
    Like,
}

/// A value compared with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Operand {
    /// Text.
    Text(String),
    /// A whole number (ids, amounts in minor units).
    Int(i64),
    /// An instant.
    Time(DateTime<Utc>),
    /// Yes or no.
    Bool(bool),
    /// A stage of a pipeline.
    Stage(PipelineId, StageId),
    /// A deal pipeline.
    Pipeline(PipelineId),
    /// An employee.
    Employee(EmployeeId),
    /// A list, for [`Cmp::In`] and [`Cmp::NotIn`].
    List(Vec<Operand>),
}

/// One condition: the rows kept have `field cmp value`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Condition {
    /// The field.
    pub field: Field,
    /// The comparison.
    pub cmp: Cmp,
    /// The value.
    pub value: Operand,
}

/// An order direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// `ASC`.
    Asc,
    /// `DESC`.
    Desc,
}

/// Which fields a list returns (`select`): `*` all plain fields, `UF_*` all custom fields,
/// named fields; multi-fields (`PHONE`, `EMAIL`) only when named.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Select {
    /// `*` (or no `select`): every plain field.
    pub plain: bool,
    /// `UF_*`: every custom field.
    pub custom: bool,
    /// Fields named, in capitals.
    pub named: BTreeSet<String>,
}

impl Select {
    /// Everything (what `crm.*.get` returns).
    pub fn all() -> Select {
        Select {
            plain: true,
            custom: true,
            named: ["PHONE", "EMAIL"].map(String::from).into(),
        }
    }

    /// Whether a record's field is kept.
    pub fn keeps(&self, name: &str, kind: FieldKind) -> bool {
        name == "ID"
            || self.named.contains(name)
            || match kind {
                FieldKind::Plain => self.plain,
                FieldKind::Custom => self.custom,
                FieldKind::Multi => false,
            }
    }
}

/// What kind of field a record's field is, for [`Select::keeps`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldKind {
    /// A plain field.
    Plain,
    /// A custom (`UF_*`) field.
    Custom,
    /// A multi-field (`PHONE`, `EMAIL`).
    Multi,
}

/// A leadflow-level list request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListRequest {
    /// What is listed.
    pub kind: EntityKind,
    /// All must hold.
    pub conditions: Vec<Condition>,
    /// The order; `ID ASC` when none is given, and `ID` last so pages are stable.
    pub order: Vec<(Field, Direction)>,
    /// Where the page starts.
    pub start: Start,
    /// The fields returned.
    pub select: Select,
}

impl ListRequest {
    /// The most rows a page holds.
    pub fn limit(&self) -> usize {
        super::envelope::PAGE
    }
}

/// Reads `filter`, `order`, `select` and `start` of a `crm.<kind>.list` call.
pub fn list_request(kind: EntityKind, params: &Params, m: &Mapping) -> Result<ListRequest, Error> {
    let mut conditions = Vec::new();
    match params.get("filter") {
        None | Some(Value::Null) => {}
        Some(Value::Object(f)) => {
            for (key, value) in f {
                if let Some(c) = condition(kind, key, value, m)? {
                    conditions.push(c);
                }
            }
        }
        Some(Value::Array(a)) if a.is_empty() => {}
        Some(Value::String(s)) if s.is_empty() => {}
        Some(_) => {
            return Err(Error::InvalidArgument(
                "filter must be an object like {\"STATUS_ID\": \"NEW\"}".into(),
            ));
        }
    }
    Ok(ListRequest {
        kind,
        conditions,
        order: order(kind, params.get("order"), m)?,
        start: start(params.get("start")),
        select: select(params.get("select"))?,
    })
}

/// `start`: PHP's `intval`; `-1` means no count, other negatives are 0.
pub fn start(v: Option<&Value>) -> Start {
    let n = match v {
        Some(Value::Number(n)) => n.as_i64().unwrap_or(0),
        Some(Value::String(s)) => {
            let s = s.trim();
            let end = s
                .char_indices()
                .find(|(i, c)| !(c.is_ascii_digit() || (*i == 0 && (*c == '-' || *c == '+'))))
                .map_or(s.len(), |(i, _)| i);
            s[..end].parse::<i64>().unwrap_or(0)
        }
        _ => 0,
    };
    match n {
        -1 => Start::NoCount,
        n if n < 0 => Start::At(0),
        n => Start::At(usize::try_from(n).unwrap_or(usize::MAX)),
    }
}

fn select(v: Option<&Value>) -> Result<Select, Error> {
    let names: Vec<String> = match v {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(a)) => a.iter().filter_map(scalar_text).collect(),
        Some(Value::Object(o)) => o.values().filter_map(scalar_text).collect(),
        Some(Value::String(s)) if s.is_empty() => Vec::new(),
        Some(Value::String(s)) => vec![s.clone()],
        Some(_) => {
            return Err(Error::InvalidArgument(
                "select must be a list of field names like [\"ID\", \"TITLE\"]".into(),
            ));
        }
    };
    let names: BTreeSet<String> = names
        .into_iter()
        .map(|n| n.trim().to_ascii_uppercase())
        .filter(|n| !n.is_empty())
        .collect();
    Ok(Select {
        plain: names.is_empty() || names.contains("*"),
        custom: names.contains("UF_*"),
        named: names,
    })
}

fn order(
    kind: EntityKind,
    v: Option<&Value>,
    m: &Mapping,
) -> Result<Vec<(Field, Direction)>, Error> {
    let mut out = Vec::new();
    let entries: Vec<(String, &Value)> = match v {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Object(o)) => o.iter().map(|(k, v)| (k.clone(), v)).collect(),
        Some(Value::Array(a)) if a.is_empty() => Vec::new(),
        Some(Value::String(s)) if s.is_empty() => Vec::new(),
        Some(_) => {
            return Err(Error::InvalidArgument(
                "order must be an object like {\"ID\": \"ASC\"}".into(),
            ));
        }
    };
    for (k, dir) in entries {
        let name = k.trim().to_ascii_uppercase();
        let field = field(kind, &name, m).ok_or_else(|| {
            Error::InvalidArgument(format!("cannot order {kind}s by unknown field {name}"))
        })?;
        let dir = match scalar_text(dir)
            .map(|d| d.trim().to_ascii_uppercase())
            .as_deref()
        {
            Some("ASC") => Direction::Asc,
            Some("DESC") => Direction::Desc,
            _ => {
                return Err(Error::InvalidArgument(format!(
                    "order of {name} must be ASC or DESC, got {dir}"
                )));
            }
        };
        out.push((field, dir));
    }
    if !out.iter().any(|(f, _)| *f == Field::Id) {
        out.push((Field::Id, Direction::Asc));
    }
    Ok(out)
}

/// The prefixes, longest first.
const PREFIXES: &[(&str, Cmp)] = &[
    ("!@", Cmp::NotIn),
    ("!%", Cmp::NotContains),
    ("!=", Cmp::NotEq),
    (">=", Cmp::Ge),
    ("<=", Cmp::Le),
    ("=%", Cmp::Like),
    ("%=", Cmp::Like),
    ("!", Cmp::NotEq),
    (">", Cmp::Gt),
    ("<", Cmp::Lt),
    ("@", Cmp::In),
    ("%", Cmp::Contains),
    ("=", Cmp::Eq),
];

/// Splits `>=DATE_CREATE` into `>=` and `DATE_CREATE`.
pub fn split_prefix(key: &str) -> (Cmp, &str) {
    for (p, cmp) in PREFIXES {
        if let Some(rest) = key.strip_prefix(p) {
            return (*cmp, rest);
        }
    }
    (Cmp::Eq, key)
}

/// The field a Bitrix24 name stands for in lists of `kind`; `None` if unknown.
fn field(kind: EntityKind, name: &str, m: &Mapping) -> Option<Field> {
    use EntityKind as K;
    let f = match (kind, name) {
        (_, "ID") => Field::Id,
        (K::Lead | K::Deal | K::Company, "TITLE") => Field::Title,
        (K::Lead | K::Contact, "NAME") => Field::Name,
        (K::Lead, "STATUS_ID") | (K::Deal, "STAGE_ID") => Field::Stage,
        (K::Deal, "CATEGORY_ID") => Field::Pipeline,
        (_, "ASSIGNED_BY_ID") => Field::Responsible,
        (K::Lead, "SOURCE_ID") => Field::Source,
        (K::Lead | K::Contact | K::Company, "PHONE") => Field::Phone,
        (K::Lead | K::Contact | K::Company, "EMAIL") => Field::Email,
        (_, "DATE_CREATE") => Field::Created,
        (_, "DATE_MODIFY") => Field::Updated,
        (K::Lead | K::Deal, "CONTACT_ID") => Field::Contact,
        (K::Lead | K::Deal | K::Contact, "COMPANY_ID") => Field::Company,
        (K::Deal, "LEAD_ID") => Field::Lead,
        (K::Deal, "OPPORTUNITY") => Field::Amount,
        (K::Lead | K::Deal, "IS_RETURN_CUSTOMER") => Field::Repeat,
        _ => Field::Custom(m.custom_field(kind, name)?.to_owned()),
    };
    Some(f)
}

/// Filter keys that cannot change an answer, ignored (see the module's documentation).
const IGNORED: &[&str] = &["CHECK_PERMISSIONS", "OPENED"];

fn condition(
    kind: EntityKind,
    key: &str,
    value: &Value,
    m: &Mapping,
) -> Result<Option<Condition>, Error> {
    let (cmp, name) = split_prefix(key.trim());
    let name = name.trim().to_ascii_uppercase();
    if IGNORED.contains(&name.as_str()) {
        return Ok(None);
    }
    let field = field(kind, &name, m).ok_or_else(|| {
        Error::InvalidArgument(format!(
            "unknown {kind} field {name} in filter: filter on ID, TITLE, STATUS_ID, ASSIGNED_BY_ID, PHONE, EMAIL, DATE_CREATE… (crm.{kind}.fields lists them)"
        ))
    })?;
    let list = match value {
        Value::Array(a) => Some(a.clone()),
        Value::Object(o) => Some(o.values().cloned().collect()),
        _ => None,
    };
    let cmp = match (cmp, list.is_some()) {
        (Cmp::Eq | Cmp::In, true) => Cmp::In,
        (Cmp::NotEq | Cmp::NotIn, true) => Cmp::NotIn,
        (Cmp::In, false) => Cmp::Eq,
        (Cmp::NotIn, false) => Cmp::NotEq,
        (_, true) => {
            return Err(Error::InvalidArgument(format!(
                "filter on {name} compares with one value, not a list"
            )));
        }
        (c, false) => c,
    };
    let textual = matches!(cmp, Cmp::Contains | Cmp::NotContains | Cmp::Like);
    let one = |v: &Value| operand(kind, &field, &name, v, textual, m);
    let value = match list {
        Some(items) => Operand::List(items.iter().map(one).collect::<Result<_, _>>()?),
        None => one(value)?,
    };
    Ok(Some(Condition { field, cmp, value }))
}

/// Text of a scalar: strings as they are, numbers and booleans written out.
pub(crate) fn scalar_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// A Bitrix24 boolean: `true`, `"true"`, `"True"`, `1`, `"1"`, `"Y"` are yes; `false`,
/// `"false"`, `0`, `"0"`, `"N"`, `""` no.
pub fn boolean(v: &Value) -> Option<bool> {
    match v {
        Value::Bool(b) => Some(*b),
        Value::Number(n) => match n.as_i64() {
            Some(1) => Some(true),
            Some(0) => Some(false),
            _ => None,
        },
        Value::String(s) => match s.trim().to_ascii_lowercase().as_str() {
            "y" | "true" | "1" | "yes" => Some(true),
            "n" | "false" | "0" | "no" | "" => Some(false),
            _ => None,
        },
        _ => None,
    }
}

/// A Bitrix24 boolean as `"Y"` or `"N"`.
pub fn yes_no(v: &Value) -> Option<&'static str> {
    boolean(v).map(|b| if b { "Y" } else { "N" })
}

fn operand(
    kind: EntityKind,
    field: &Field,
    name: &str,
    v: &Value,
    textual: bool,
    m: &Mapping,
) -> Result<Operand, Error> {
    let bad = |what: &str| Error::InvalidArgument(format!("filter on {name}: {what}, got {v}"));
    let text = scalar_text(v).ok_or_else(|| bad("expected a single value"))?;
    if textual {
        return Ok(Operand::Text(text));
    }
    let op = match field {
        Field::Id | Field::Contact | Field::Company | Field::Lead => Operand::Int(
            text.trim()
                .parse::<i64>()
                .map_err(|_| bad("expected a whole number"))?,
        ),
        Field::Amount => Operand::Int(
            leadflow_engine::field::parse_money(&text)
                .ok_or_else(|| bad("expected an amount like 1500.00"))?,
        ),
        Field::Title | Field::Name => Operand::Text(text),
        Field::Phone => Operand::Text(
            leadflow_engine::field::normalize_phone(&text)
                .unwrap_or_else(|_| text.trim().to_owned()),
        ),
        Field::Email => Operand::Text(text.trim().to_lowercase()),
        Field::Stage => match kind {
            EntityKind::Lead => {
                let stage = m.lead_stage(&text).ok_or_else(|| {
                    bad("no lead stage has this STATUS_ID (crm.status.list lists them)")
                })?;
                Operand::Stage(m.config().lead_pipeline().id.clone(), stage.clone())
            }
            _ => {
                let (c, s) = m.deal_stage(&text, None).ok_or_else(|| {
                    bad("no deal stage has this STAGE_ID (crm.status.list lists them)")
                })?;
                Operand::Stage(c.pipeline.clone(), s.clone())
            }
        },
        Field::Pipeline => {
            let n = text
                .trim()
                .parse::<i64>()
                .map_err(|_| bad("expected a category id"))?;
            let c = m.category(n).ok_or_else(|| {
                bad("no deal category has this id (crm.category.list lists them)")
            })?;
            Operand::Pipeline(c.pipeline.clone())
        }
        Field::Responsible => {
            let n = text
                .trim()
                .parse::<i64>()
                .map_err(|_| bad("expected a user id"))?;
            Operand::Employee(
                m.employee(n)
                    .cloned()
                    .ok_or_else(|| bad("no employee has this user id"))?,
            )
        }
        Field::Source => Operand::Text(
            m.source(&text)
                .ok_or_else(|| bad("no source has this SOURCE_ID (crm.status.list lists them)"))?
                .to_owned(),
        ),
        Field::Created | Field::Updated => Operand::Time(time(&text, m).ok_or_else(|| {
            bad("expected a time like 2024-01-20T18:35:32+03:00 or a date like 2024-01-20")
        })?),
        Field::Repeat => Operand::Bool(boolean(v).ok_or_else(|| bad("expected Y or N"))?),
        Field::Custom(id) => {
            let def = m.config().field(kind, id);
            match def.map(|d| d.ty) {
                Some(leadflow_engine::field::FieldType::Bool) => {
                    Operand::Bool(boolean(v).ok_or_else(|| bad("expected Y or N"))?)
                }
                Some(leadflow_engine::field::FieldType::Money) => Operand::Int(
                    leadflow_engine::field::parse_money(&text)
                        .ok_or_else(|| bad("expected an amount like 1500.00"))?,
                ),
                // An enumeration's item id stands for its option.
                Some(leadflow_engine::field::FieldType::Enum) => Operand::Text(
                    crate::bitrix::catalog::enum_option(
                        def.map_or(&[][..], |d| &d.options[..]),
                        &text,
                    )
                    .map_or(text.clone(), str::to_owned),
                ),
                _ => Operand::Text(text),
            }
        }
    };
    Ok(op)
}

/// A time as Bitrix24 clients write it: RFC 3339, or a local date or date and time in the
/// calendar's zone.
pub fn time(text: &str, m: &Mapping) -> Option<DateTime<Utc>> {
    let t = text.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(t) {
        return Some(t.with_timezone(&Utc));
    }
    if let Ok(t) = DateTime::parse_from_str(t, "%Y-%m-%dT%H:%M:%S%z") {
        return Some(t.with_timezone(&Utc));
    }
    let local = ["%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M"]
        .iter()
        .find_map(|f| NaiveDateTime::parse_from_str(t, f).ok())
        .or_else(|| {
            ["%Y-%m-%d", "%d.%m.%Y"]
                .iter()
                .find_map(|f| NaiveDate::parse_from_str(t, f).ok())
                .and_then(|d| d.and_hms_opt(0, 0, 0))
        })?;
    m.tz()
        .from_local_datetime(&local)
        .earliest()
        .map(|t| t.with_timezone(&Utc))
}

#[cfg(test)]
mod tests {
    use super::*;
    use leadflow_engine::config::{Config, DEFAULT_CONFIG};
    use serde_json::json;
    use std::sync::Arc;

    fn m() -> Mapping {
        Mapping::new(Arc::new(
            Config::from_toml("leadflow.toml", DEFAULT_CONFIG).unwrap(),
        ))
    }

    fn req(kind: EntityKind, v: Value) -> Result<ListRequest, Error> {
        list_request(kind, &Params::from_value(v), &m())
    }

    fn conds(v: Value) -> Vec<Condition> {
        req(EntityKind::Lead, json!({ "filter": v }))
            .unwrap()
            .conditions
    }

    #[test]
    fn every_prefix_is_read() {
        let cases = [
            ("=ID", Cmp::Eq),
            ("ID", Cmp::Eq),
            ("!ID", Cmp::NotEq),
            ("!=ID", Cmp::NotEq),
            (">ID", Cmp::Gt),
            (">=ID", Cmp::Ge),
            ("<ID", Cmp::Lt),
            ("<=ID", Cmp::Le),
        ];
        for (key, cmp) in cases {
            let c = conds(json!({ key: "5" }));
            assert_eq!(
                c,
                vec![Condition {
                    field: Field::Id,
                    cmp,
                    value: Operand::Int(5)
                }],
                "{key}"
            );
        }
        let c = conds(json!({"@ID": [1, "2"]}));
        assert_eq!(c[0].cmp, Cmp::In);
        assert_eq!(
            c[0].value,
            Operand::List(vec![Operand::Int(1), Operand::Int(2)])
        );
        assert_eq!(conds(json!({"!@ID": [1]}))[0].cmp, Cmp::NotIn);
        assert_eq!(conds(json!({"ID": [1]}))[0].cmp, Cmp::In);
        for (key, cmp) in [
            ("%TITLE", Cmp::Contains),
            ("!%TITLE", Cmp::NotContains),
            ("=%TITLE", Cmp::Like),
            ("%=TITLE", Cmp::Like),
        ] {
            let c = conds(json!({ key: "ab%" }));
            assert_eq!(
                c,
                vec![Condition {
                    field: Field::Title,
                    cmp,
                    value: Operand::Text("ab%".into())
                }],
                "{key}"
            );
        }
    }

    #[test]
    fn bitrix24_ids_in_filters_become_leadflow_ids() {
        let c = conds(
            json!({"STATUS_ID": "IN_PROCESS", "ASSIGNED_BY_ID": 1, "SOURCE_ID": "WEB", "PHONE": "8 (912) 345-67-89", "UF_CRM_MATERIAL": "granite"}),
        );
        assert!(c.contains(&Condition {
            field: Field::Stage,
            cmp: Cmp::Eq,
            value: Operand::Stage("lead".into(), "in_work".into())
        }));
        assert!(c.contains(&Condition {
            field: Field::Responsible,
            cmp: Cmp::Eq,
            value: Operand::Employee("ivanov".into())
        }));
        assert!(c.contains(&Condition {
            field: Field::Source,
            cmp: Cmp::Eq,
            value: Operand::Text("web_form".into())
        }));
        assert!(c.contains(&Condition {
            field: Field::Phone,
            cmp: Cmp::Eq,
            value: Operand::Text("+79123456789".into())
        }));
        assert!(c.contains(&Condition {
            field: Field::Custom("material".into()),
            cmp: Cmp::Eq,
            value: Operand::Text("granite".into())
        }));
        let deal = req(
            EntityKind::Deal,
            json!({"filter": {"CATEGORY_ID": "1", "STAGE_ID": "C1:NEW", ">OPPORTUNITY": "1500"}}),
        )
        .unwrap();
        let of = |f: Field| {
            deal.conditions
                .iter()
                .find(|c| c.field == f)
                .unwrap()
                .value
                .clone()
        };
        assert_eq!(of(Field::Pipeline), Operand::Pipeline("services".into()));
        assert_eq!(of(Field::Amount), Operand::Int(150000));
        assert_eq!(
            of(Field::Stage),
            Operand::Stage("services".into(), "new".into())
        );
    }

    #[test]
    fn booleans_are_normalised() {
        for yes in [
            json!(true),
            json!("true"),
            json!("True"),
            json!(1),
            json!("Y"),
        ] {
            assert_eq!(yes_no(&yes), Some("Y"), "{yes}");
            assert_eq!(
                conds(json!({"IS_RETURN_CUSTOMER": yes}))[0].value,
                Operand::Bool(true)
            );
        }
        for no in [json!(false), json!("false"), json!("N"), json!(0)] {
            assert_eq!(yes_no(&no), Some("N"), "{no}");
        }
    }

    #[test]
    fn dates_are_read_in_the_calendar_zone() {
        let c = conds(
            json!({">=DATE_CREATE": "2024-01-20", "<DATE_MODIFY": "2024-01-20T18:35:32+01:00"}),
        );
        let of = |f: Field| c.iter().find(|c| c.field == f).unwrap().value.clone();
        assert_eq!(
            of(Field::Created),
            Operand::Time("2024-01-19T21:00:00Z".parse().unwrap())
        );
        assert_eq!(
            of(Field::Updated),
            Operand::Time("2024-01-20T17:35:32Z".parse().unwrap())
        );
    }

    #[test]
    fn unknown_fields_and_values_are_errors_that_name_them() {
        let e = |v: Value| req(EntityKind::Lead, v).unwrap_err().to_string();
        assert!(e(json!({"filter": {"COLOUR": "red"}})).contains("unknown lead field COLOUR"));
        assert!(e(json!({"filter": {"STATUS_ID": "NOPE"}})).contains("STATUS_ID"));
        assert!(e(json!({"filter": {"ASSIGNED_BY_ID": 999}})).contains("no employee"));
        assert!(e(json!({"filter": {">ID": [1, 2]}})).contains("not a list"));
        assert!(e(json!({"order": {"TITLE": "UP"}})).contains("ASC or DESC"));
        assert!(e(json!({"order": {"COLOUR": "ASC"}})).contains("unknown field COLOUR"));
        assert!(e(json!({"filter": "x"})).contains("filter must be an object"));
        // Ignored: cannot change the answer.
        assert!(conds(json!({"CHECK_PERMISSIONS": "N", "OPENED": "Y"})).is_empty());
    }

    #[test]
    fn order_select_and_start() {
        let r = req(EntityKind::Lead, json!({"order": {"DATE_CREATE": "desc"}, "select": ["id", "TITLE", "PHONE"], "start": "50"})).unwrap();
        assert_eq!(
            r.order,
            vec![
                (Field::Created, Direction::Desc),
                (Field::Id, Direction::Asc)
            ]
        );
        assert_eq!(r.start, Start::At(50));
        assert!(
            !r.select.plain
                && r.select.keeps("TITLE", FieldKind::Plain)
                && r.select.keeps("PHONE", FieldKind::Multi)
        );
        assert!(!r.select.keeps("NAME", FieldKind::Plain));
        let all = req(EntityKind::Lead, json!({"select": ["*", "UF_*"]}))
            .unwrap()
            .select;
        assert!(
            all.keeps("NAME", FieldKind::Plain)
                && all.keeps("UF_CRM_X", FieldKind::Custom)
                && !all.keeps("PHONE", FieldKind::Multi)
        );
        let none = req(EntityKind::Lead, json!({})).unwrap();
        assert!(none.select.plain && !none.select.custom);
        assert_eq!(none.order, vec![(Field::Id, Direction::Asc)]);
        assert_eq!(start(Some(&json!(-1))), Start::NoCount);
        assert_eq!(start(Some(&json!("-1"))), Start::NoCount);
        assert_eq!(start(Some(&json!("abc"))), Start::At(0));
        assert_eq!(start(Some(&json!("-7"))), Start::At(0));
        assert_eq!(start(Some(&json!("100xyz"))), Start::At(100));
    }
}
