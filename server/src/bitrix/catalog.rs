//! What the facade says about itself: `crm.*.fields` descriptions, `crm.status.list`
//! (`ENTITY_ID` `STATUS`, `SOURCE`, `DEAL_STAGE`, `DEAL_STAGE_<n>`), `crm.category.list`,
//! `crm.stagehistory.list` rows and `user.current`.

use super::mapping::{Category, Mapping};
use super::records::date;
use leadflow_engine::config::Semantic;
use leadflow_engine::field::FieldType;
use leadflow_engine::ids::{EmployeeId, EntityKind};
use leadflow_store::query::Visit;
use serde_json::{Map, Value, json};

/// `(name, type, required, read-only, multiple, title)` of the plain fields.
type Described = (&'static str, &'static str, bool, bool, bool, &'static str);

const COMMON: &[Described] = &[
    ("ID", "integer", false, true, false, "ID"),
    ("ASSIGNED_BY_ID", "user", false, false, false, "Responsible"),
    ("DATE_CREATE", "datetime", false, true, false, "Created"),
    ("DATE_MODIFY", "datetime", false, true, false, "Modified"),
    (
        "OPENED",
        "char",
        false,
        true,
        false,
        "Available to everyone",
    ),
];

const LEAD: &[Described] = &[
    ("TITLE", "string", false, false, false, "Lead name"),
    ("NAME", "string", false, false, false, "Name"),
    ("STATUS_ID", "crm_status", false, false, false, "Stage"),
    (
        "STATUS_SEMANTIC_ID",
        "string",
        false,
        true,
        false,
        "Status group",
    ),
    (
        "STATUS_DESCRIPTION",
        "string",
        false,
        false,
        false,
        "Stage reason",
    ),
    ("SOURCE_ID", "crm_status", false, false, false, "Source"),
    ("COMMENTS", "string", false, false, false, "Comment"),
    ("CONTACT_ID", "crm_contact", false, false, false, "Contact"),
    ("COMPANY_ID", "crm_company", false, false, false, "Company"),
    (
        "CURRENCY_ID",
        "crm_currency",
        false,
        false,
        false,
        "Currency",
    ),
    ("OPPORTUNITY", "double", false, false, false, "Amount"),
    (
        "IS_RETURN_CUSTOMER",
        "char",
        false,
        true,
        false,
        "Repeat lead",
    ),
    ("HAS_PHONE", "char", false, true, false, "Has phone"),
    ("HAS_EMAIL", "char", false, true, false, "Has e-mail"),
    ("PHONE", "crm_multifield", false, false, true, "Phone"),
    ("EMAIL", "crm_multifield", false, false, true, "E-mail"),
];

const DEAL: &[Described] = &[
    ("TITLE", "string", true, false, false, "Name"),
    (
        "CATEGORY_ID",
        "crm_category",
        false,
        false,
        false,
        "Pipeline",
    ),
    ("STAGE_ID", "crm_status", false, false, false, "Stage"),
    (
        "STAGE_SEMANTIC_ID",
        "string",
        false,
        true,
        false,
        "Stage group",
    ),
    ("CLOSED", "char", false, true, false, "Closed"),
    ("OPPORTUNITY", "double", false, false, false, "Amount"),
    (
        "CURRENCY_ID",
        "crm_currency",
        false,
        false,
        false,
        "Currency",
    ),
    ("CONTACT_ID", "crm_contact", false, false, false, "Contact"),
    ("CONTACT_IDS", "crm_contact", false, false, true, "Contacts"),
    ("COMPANY_ID", "crm_company", false, false, false, "Company"),
    // Read-only in Bitrix24; leadflow keeps what deal.add gives (deals come from leads).
    ("LEAD_ID", "crm_lead", false, false, false, "Lead"),
    ("COMMENTS", "string", false, false, false, "Comment"),
    (
        "IS_RETURN_CUSTOMER",
        "char",
        false,
        true,
        false,
        "Repeat deal",
    ),
];

const CONTACT: &[Described] = &[
    ("NAME", "string", true, false, false, "Name"),
    ("COMPANY_ID", "crm_company", false, false, false, "Company"),
    ("HAS_PHONE", "char", false, true, false, "Has phone"),
    ("HAS_EMAIL", "char", false, true, false, "Has e-mail"),
    ("PHONE", "crm_multifield", false, false, true, "Phone"),
    ("EMAIL", "crm_multifield", false, false, true, "E-mail"),
];

const COMPANY: &[Described] = &[
    ("TITLE", "string", true, false, false, "Company name"),
    ("HAS_PHONE", "char", false, true, false, "Has phone"),
    ("HAS_EMAIL", "char", false, true, false, "Has e-mail"),
    ("PHONE", "crm_multifield", false, false, true, "Phone"),
    ("EMAIL", "crm_multifield", false, false, true, "E-mail"),
];

/// `crm.<kind>.fields`: every field with its type and flags, the custom fields under their
/// Bitrix24 names.
pub fn fields(m: &Mapping, kind: EntityKind) -> Value {
    let own = match kind {
        EntityKind::Lead => LEAD,
        EntityKind::Deal => DEAL,
        EntityKind::Contact => CONTACT,
        _ => COMPANY,
    };
    let mut out = Map::new();
    for (name, ty, required, read_only, multiple, title) in COMMON.iter().chain(own) {
        let mut d = json!({
            "type": ty, "isRequired": required, "isReadOnly": read_only, "isImmutable": false,
            "isMultiple": multiple, "isDynamic": false, "title": title,
        });
        match (kind, *name) {
            (EntityKind::Lead, "STATUS_ID") => d["statusType"] = json!("STATUS"),
            (EntityKind::Lead, "SOURCE_ID") => d["statusType"] = json!("SOURCE"),
            (EntityKind::Deal, "STAGE_ID") => d["statusType"] = json!("DEAL_STAGE"),
            (EntityKind::Deal, "CATEGORY_ID") => d["isImmutable"] = json!(true),
            _ => {}
        }
        out.insert((*name).to_owned(), d);
    }
    for def in m.config().fields.iter().filter(|f| f.entity == kind) {
        let ty = match def.ty {
            FieldType::Number => "double",
            FieldType::Money => "money",
            FieldType::Bool => "boolean",
            FieldType::Enum => "enumeration",
            FieldType::Date => "date",
            _ => "string",
        };
        let mut d = json!({
            "type": ty, "isRequired": false, "isReadOnly": false, "isImmutable": false,
            "isMultiple": false, "isDynamic": true, "title": def.label,
            "listLabel": def.label, "formLabel": def.label, "filterLabel": def.label,
        });
        if def.ty == FieldType::Enum {
            d["items"] = Value::Array(
                def.options
                    .iter()
                    .enumerate()
                    .map(|(i, o)| json!({"ID": enum_id(i), "VALUE": o}))
                    .collect(),
            );
        }
        out.insert(m.field_name(kind, &def.id), d);
    }
    Value::Object(out)
}

/// The Bitrix24 id of an enumeration field's `i`-th option (from 0): `"1"`, `"2"`, … —
/// Bitrix24's item ids are integers; records show and take them.
pub fn enum_id(i: usize) -> String {
    (i + 1).to_string()
}

/// The option an enumeration field's value stands for: an item id (`"2"`, Bitrix24's meaning,
/// first) or else the option's own text; `None` for neither.
pub fn enum_option<'a>(options: &'a [String], v: &str) -> Option<&'a str> {
    let v = v.trim();
    let by_id = v
        .parse::<usize>()
        .ok()
        .and_then(|n| options.get(n.checked_sub(1)?));
    by_id
        .or_else(|| options.iter().find(|o| o.as_str() == v))
        .map(String::as_str)
}

fn semantics(s: Semantic) -> &'static str {
    match s {
        Semantic::InProgress => "process",
        Semantic::Success => "success",
        Semantic::Failure => "failure",
    }
}

/// The `ENTITY_ID` of a deal category's stages: `DEAL_STAGE`, `DEAL_STAGE_<n>`.
pub fn deal_stage_entity(c: &Category) -> String {
    if c.id == 0 {
        "DEAL_STAGE".into()
    } else {
        format!("DEAL_STAGE_{}", c.id)
    }
}

/// `crm.status.list`: lead statuses, sources and every category's deal stages, each row
/// `{ID, ENTITY_ID, STATUS_ID, NAME, NAME_INIT, SORT, SYSTEM, CATEGORY_ID?, SEMANTICS?}`;
/// `entity` keeps the rows of one `ENTITY_ID` (any case).
pub fn statuses(m: &Mapping, entity: Option<&str>) -> Vec<Value> {
    let config = m.config();
    let mut rows = Vec::new();
    let lead = config.lead_pipeline();
    for (i, (status, stage)) in m.statuses().iter().enumerate() {
        let s = lead.stage(stage);
        rows.push(json!({
            "ENTITY_ID": "STATUS", "STATUS_ID": status,
            "NAME": s.map_or(stage.as_str(), |s| s.name.as_str()),
            "SORT": ((i + 1) * 10).to_string(), "SYSTEM": "N",
            "SEMANTICS": s.map(|s| semantics(s.semantic)),
            "EXTRA": {"SEMANTICS": s.map(|s| semantics(s.semantic))},
        }));
    }
    for (i, (id, source)) in m.sources().iter().enumerate() {
        rows.push(json!({
            "ENTITY_ID": "SOURCE", "STATUS_ID": id, "NAME": source,
            "SORT": ((i + 1) * 10).to_string(), "SYSTEM": "N",
        }));
    }
    for c in m.categories() {
        let p = config.pipeline(&c.pipeline);
        for (i, (bare, stage)) in c.stages.iter().enumerate() {
            let s = p.and_then(|p| p.stage(stage));
            rows.push(json!({
                "ENTITY_ID": deal_stage_entity(c), "STATUS_ID": c.stage_id(bare),
                "NAME": s.map_or(stage.as_str(), |s| s.name.as_str()),
                "SORT": ((i + 1) * 10).to_string(), "SYSTEM": "N",
                "CATEGORY_ID": c.id.to_string(),
                "SEMANTICS": s.map(|s| semantics(s.semantic)),
                "EXTRA": {"SEMANTICS": s.map(|s| semantics(s.semantic))},
            }));
        }
    }
    let want = entity.map(|e| e.trim().to_ascii_uppercase());
    rows.into_iter()
        .enumerate()
        .filter_map(|(i, mut r)| {
            r["ID"] = json!((i + 1).to_string());
            r["NAME_INIT"] = r["NAME"].clone();
            match &want {
                Some(w) if r["ENTITY_ID"] != json!(w) => None,
                _ => Some(r),
            }
        })
        .collect()
}

/// `crm.category.list` rows for deals: `{id, name, sort, entityTypeId, isDefault}`.
pub fn categories(m: &Mapping) -> Vec<Value> {
    m.categories()
        .iter()
        .map(|c| {
            let name = m
                .config()
                .pipeline(&c.pipeline)
                .map_or(c.pipeline.as_str(), |p| p.name.as_str());
            json!({
                "id": c.id, "name": name, "sort": (c.id + 1) * 100, "entityTypeId": 2,
                "isDefault": if c.id == 0 { "Y" } else { "N" },
            })
        })
        .collect()
}

/// `crm.stagehistory.list` rows of one lead (`entityTypeId` 1) or deal (2): `TYPE_ID` 1 for
/// the first stage, 2 for each move; ids derived from the record and the position.
pub fn stage_history(m: &Mapping, kind: EntityKind, owner: i64, visits: &[Visit]) -> Vec<Value> {
    visits
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let semantic = m
                .config()
                .pipeline(&v.pipeline.as_str().into())
                .and_then(|p| p.stage(&v.stage.as_str().into()))
                .map(|s| match s.semantic {
                    Semantic::InProgress => "P",
                    Semantic::Success => "S",
                    Semantic::Failure => "F",
                });
            let mut row = json!({
                "ID": (owner.saturating_mul(1000) + i as i64 + 1).to_string(),
                "TYPE_ID": if i == 0 { 1 } else { 2 },
                "OWNER_ID": owner.to_string(),
                "CREATED_TIME": date(m, v.entered_at),
                "STAGE_SEMANTIC_ID": semantic,
            });
            if kind == EntityKind::Lead {
                row["STATUS_ID"] = json!(m.status_id(&v.stage.as_str().into()));
                row["STATUS_SEMANTIC_ID"] = json!(semantic);
            } else {
                let pipeline = v.pipeline.as_str().into();
                row["STAGE_ID"] = json!(m.stage_id(&pipeline, &v.stage.as_str().into()));
                row["CATEGORY_ID"] = json!(m.category_of(&pipeline).map(|c| c.id.to_string()));
            }
            row
        })
        .collect()
}

/// `user.current`: the employee of the webhook's user.
pub fn user(m: &Mapping, user: i64, employee: &EmployeeId) -> Value {
    let e = m.config().employee(employee);
    let name = e.map_or(employee.as_str(), |e| e.name.as_str());
    let (first, last) = name.split_once(' ').unwrap_or((name, ""));
    json!({
        "ID": user.to_string(),
        "XML_ID": employee.as_str(),
        "ACTIVE": e.is_none_or(|e| e.active),
        "NAME": first,
        "LAST_NAME": last,
        "EMAIL": e.and_then(|e| e.email.clone()),
        "IS_ONLINE": "N",
        "USER_TYPE": "employee",
    })
}
