//! Bitrix24 ids ↔ leadflow's: users ↔ employees, `STATUS_ID` ↔ lead stages, `CATEGORY_ID`
//! ↔ deal pipelines and `STAGE_ID` ↔ their stages, `SOURCE_ID` ↔ sources, Bitrix24 field
//! names (`UF_CRM_*`, `LAST_NAME`…) ↔ custom fields.
//!
//! What the configuration's `[bitrix24]` section says comes first; defaults fill the rest so
//! that the configuration `leadflow init` writes works out of the box (docs/BITRIX24-FACADE.md):
//! - users: user 1 is the default actor if it may hold leads, else the first active member
//!   of the team that works leads (clients send `ASSIGNED_BY_ID: 1`); then the default actor,
//!   then the other employees in id order;
//! - lead statuses: the first stage is `NEW`, the next two open ones `IN_PROCESS` and
//!   `PROCESSED`, the first success stage `CONVERTED`, the failure stage `junk` (or the first
//!   failure stage) `JUNK`, every other stage its id in capitals (`QUALITY_CONTROL`);
//! - deal categories: the deal pipelines in file order get the free numbers from 0; in each,
//!   the first stage is `NEW`, the first success stage `WON`, the first failure stage `LOSE`,
//!   the others their ids in capitals, prefixed `C<n>:` outside category 0;
//! - sources: the standard Bitrix24 ids take the source of a usual name (`WEB` ↔ `web_form`,
//!   `OTHER` ↔ `manual`…); other sources are their ids in capitals; an unmapped standard id
//!   is read as `OTHER`'s source;
//! - fields: a custom field `material` is `UF_CRM_MATERIAL`; a custom field named like a
//!   standard Bitrix24 field (`last_name`, `post`) is that field (`LAST_NAME`, `POST`), and a
//!   lead's `company_name`/`budget` are `COMPANY_TITLE`/`OPPORTUNITY`.

use chrono_tz::Tz;
use leadflow_engine::config::{Config, Semantic};
use leadflow_engine::field::FieldType;
use leadflow_engine::ids::{EmployeeId, EntityKind, PipelineId, StageId};
use std::collections::BTreeMap;
use std::sync::Arc;

/// A deal category: a deal pipeline and its stages' Bitrix24 ids (without `C<n>:`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Category {
    /// `CATEGORY_ID`.
    pub id: i64,
    /// The deal pipeline.
    pub pipeline: PipelineId,
    /// Bitrix24 stage ids (no prefix) → stages, in the pipeline's order.
    pub stages: Vec<(String, StageId)>,
}

impl Category {
    /// The `STAGE_ID` of a stage id without prefix: `C<n>:X`, or `X` in category 0.
    pub fn stage_id(&self, bare: &str) -> String {
        if self.id == 0 {
            bare.to_owned()
        } else {
            format!("C{}:{bare}", self.id)
        }
    }
}

/// A custom field's Bitrix24 name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldName {
    /// The Bitrix24 name: `UF_CRM_MATERIAL`, `LAST_NAME`.
    pub bitrix: String,
    /// The custom field's id.
    pub field: String,
    /// Whether records show the field under this name (a field read under two names, like
    /// `LAST_NAME` and `UF_CRM_LAST_NAME`, shows under the first).
    pub primary: bool,
}

/// The mapping, built once from a configuration.
#[derive(Debug, Clone)]
pub struct Mapping {
    config: Arc<Config>,
    users: Vec<(i64, EmployeeId)>,
    statuses: Vec<(String, StageId)>,
    sources: Vec<(String, String)>,
    source_aliases: Vec<(String, String)>,
    categories: Vec<Category>,
    fields: BTreeMap<EntityKind, Vec<FieldName>>,
}

/// The standard Bitrix24 sources and the leadflow source names each takes by default.
const SOURCES: &[(&str, &[&str])] = &[
    ("CALL", &["call", "phone"]),
    ("EMAIL", &["email", "e-mail", "mail"]),
    ("WEB", &["web", "web_form", "site", "website"]),
    ("ADVERTISING", &["advertising", "ads"]),
    ("PARTNER", &["partner"]),
    ("RECOMMENDATION", &["recommendation", "referral"]),
    ("TRADE_SHOW", &["trade_show", "exhibition"]),
    ("WEBFORM", &["webform", "web_form"]),
    ("CALLBACK", &["callback"]),
    ("STORE", &["store", "shop"]),
    ("OTHER", &["other", "manual"]),
];

/// Standard Bitrix24 fields a custom field may stand for, per entity, when it has the
/// lowercase name (or the name given here).
const STANDARD_FIELDS: &[(EntityKind, &str, &str)] = &[
    (EntityKind::Lead, "LAST_NAME", "last_name"),
    (EntityKind::Lead, "SECOND_NAME", "second_name"),
    (EntityKind::Lead, "POST", "post"),
    (EntityKind::Lead, "COMPANY_TITLE", "company_name"),
    (EntityKind::Lead, "COMPANY_TITLE", "company_title"),
    (EntityKind::Lead, "OPPORTUNITY", "budget"),
    (EntityKind::Lead, "OPPORTUNITY", "opportunity"),
    (EntityKind::Lead, "BIRTHDATE", "birthdate"),
    (EntityKind::Lead, "UTM_SOURCE", "utm_source"),
    (EntityKind::Lead, "UTM_MEDIUM", "utm_medium"),
    (EntityKind::Lead, "UTM_CAMPAIGN", "utm_campaign"),
    (EntityKind::Lead, "UTM_CONTENT", "utm_content"),
    (EntityKind::Lead, "UTM_TERM", "utm_term"),
    (EntityKind::Deal, "TYPE_ID", "type_id"),
    (EntityKind::Deal, "UTM_SOURCE", "utm_source"),
    (EntityKind::Deal, "UTM_MEDIUM", "utm_medium"),
    (EntityKind::Deal, "UTM_CAMPAIGN", "utm_campaign"),
    (EntityKind::Contact, "LAST_NAME", "last_name"),
    (EntityKind::Contact, "SECOND_NAME", "second_name"),
    (EntityKind::Contact, "POST", "post"),
    (EntityKind::Contact, "BIRTHDATE", "birthday"),
    (EntityKind::Contact, "BIRTHDATE", "birthdate"),
    (EntityKind::Contact, "COMMENTS", "comments"),
    (EntityKind::Company, "COMMENTS", "comments"),
    (EntityKind::Company, "INDUSTRY", "industry"),
];

/// A leadflow id in capitals, as a Bitrix24 id: `quality_control` → `QUALITY_CONTROL`.
fn capitals(id: &str) -> String {
    id.chars()
        .map(|c| match c {
            '-' | '.' => '_',
            c => c.to_ascii_uppercase(),
        })
        .collect()
}

/// Adds `(bitrix, ours)` unless either side is taken; a taken Bitrix24 id gets `_2`, `_3`….
fn add_unique<T: PartialEq + Clone>(
    list: &mut Vec<(String, T)>,
    bitrix: String,
    ours: &T,
    suffix: bool,
) {
    if list.iter().any(|(_, o)| o == ours) {
        return;
    }
    let mut id = bitrix.clone();
    let mut n = 2;
    while list.iter().any(|(b, _)| *b == id) {
        if !suffix {
            return;
        }
        id = format!("{bitrix}_{n}");
        n += 1;
    }
    list.push((id, ours.clone()));
}

/// The default Bitrix24 ids of a pipeline's stages: `(first, success, failure)` names and
/// the preferred ids of the open stages after the first.
fn stage_ids(
    stages: &[leadflow_engine::config::Stage],
    explicit: &[(String, StageId)],
    first: &str,
    open: &[&str],
    success: &str,
    failure: &str,
) -> Vec<(String, StageId)> {
    let mut out: Vec<(String, StageId)> = explicit.to_vec();
    if let Some(s) = stages.first() {
        add_unique(&mut out, first.into(), &s.id, false);
    }
    for (name, s) in open.iter().zip(
        stages
            .iter()
            .skip(1)
            .take_while(|s| s.semantic == Semantic::InProgress),
    ) {
        add_unique(&mut out, (*name).into(), &s.id, false);
    }
    if let Some(s) = stages.iter().find(|s| s.semantic == Semantic::Success) {
        add_unique(&mut out, success.into(), &s.id, false);
    }
    let failures: Vec<_> = stages
        .iter()
        .filter(|s| s.semantic == Semantic::Failure)
        .collect();
    if let Some(s) = failures
        .iter()
        .find(|s| s.id.as_str() == "junk" || s.id.as_str() == "lost")
        .or(failures.first())
    {
        add_unique(&mut out, failure.into(), &s.id, false);
    }
    for s in stages {
        add_unique(&mut out, capitals(s.id.as_str()), &s.id, true);
    }
    // In the pipeline's order, so lists of statuses read like the pipeline.
    out.sort_by_key(|(_, id)| stages.iter().position(|s| &s.id == id));
    out
}

impl Mapping {
    /// The mapping of a configuration: its `[bitrix24]` section, then the defaults.
    pub fn new(config: Arc<Config>) -> Mapping {
        let b = &config.bitrix24;
        // Users.
        let mut users: Vec<(i64, EmployeeId)> =
            b.users.iter().map(|(n, e)| (*n, e.clone())).collect();
        // User 1 must be able to hold a lead (clients send `ASSIGNED_BY_ID: 1`): the default
        // actor if it may, else the first active member of the team that works leads.
        let lead_team = config.team_of_pipeline(&config.lead_pipeline().id);
        let takes_leads = |e: &EmployeeId| {
            config.employee(e).is_some_and(|x| {
                x.active && lead_team.is_none_or(|t| x.team.as_ref() == Some(&t.id))
            })
        };
        let actor = config
            .default_actor
            .as_ref()
            .filter(|a| config.employees.contains_key(*a));
        let lead_holder = actor
            .filter(|a| takes_leads(a))
            .or_else(|| config.employees.keys().find(|e| takes_leads(e)));
        let first = lead_holder
            .into_iter()
            .chain(actor)
            .chain(config.employees.keys());
        let mut next = 1;
        for e in first {
            if users.iter().any(|(_, u)| u == e) {
                continue;
            }
            while users.iter().any(|(n, _)| *n == next) {
                next += 1;
            }
            users.push((next, e.clone()));
        }
        users.sort();
        // Lead statuses.
        let lead = config.lead_pipeline();
        let explicit: Vec<_> = b
            .statuses
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let statuses = stage_ids(
            &lead.stages,
            &explicit,
            "NEW",
            &["IN_PROCESS", "PROCESSED"],
            "CONVERTED",
            "JUNK",
        );
        // Deal categories.
        let mut cats: Vec<(i64, PipelineId)> =
            b.categories.iter().map(|(n, p)| (*n, p.clone())).collect();
        let mut next = 0;
        for p in config
            .pipelines
            .iter()
            .filter(|p| p.entity == EntityKind::Deal)
        {
            if cats.iter().any(|(_, c)| *c == p.id) {
                continue;
            }
            while cats.iter().any(|(n, _)| *n == next) {
                next += 1;
            }
            cats.push((next, p.id.clone()));
        }
        cats.sort();
        let categories = cats
            .into_iter()
            .filter_map(|(id, pipeline)| {
                let p = config.pipeline(&pipeline)?;
                let explicit: Vec<_> = b
                    .stages
                    .get(&pipeline)
                    .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
                    .unwrap_or_default();
                let stages = stage_ids(&p.stages, &explicit, "NEW", &[], "WON", "LOSE");
                Some(Category {
                    id,
                    pipeline,
                    stages,
                })
            })
            .collect();
        // Sources.
        let mut sources: Vec<(String, String)> = b
            .sources
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        for (bitrix, names) in SOURCES {
            if let Some(s) = names.iter().find(|n| {
                config.sources.iter().any(|s| s == *n) && !sources.iter().any(|(_, o)| o == *n)
            }) {
                add_unique(&mut sources, (*bitrix).into(), &(*s).to_owned(), false);
            }
        }
        for s in &config.sources {
            add_unique(&mut sources, capitals(s), s, true);
        }
        let other = sources
            .iter()
            .find(|(b, _)| b == "OTHER")
            .map(|(_, s)| s.clone());
        let mut source_aliases = Vec::new();
        for (bitrix, names) in SOURCES {
            if sources.iter().any(|(b, _)| b == bitrix) {
                continue;
            }
            let named = names
                .iter()
                .find(|n| config.sources.iter().any(|s| s == *n))
                .map(|n| (*n).to_owned());
            if let Some(s) = named.or_else(|| other.clone()) {
                source_aliases.push(((*bitrix).to_owned(), s));
            }
        }
        // Fields.
        let mut fields: BTreeMap<EntityKind, Vec<FieldName>> = BTreeMap::new();
        for kind in super::method::ENTITIES {
            let mut list: Vec<FieldName> = b
                .fields
                .get(&kind)
                .into_iter()
                .flatten()
                .map(|(k, v)| FieldName {
                    bitrix: k.clone(),
                    field: v.clone(),
                    primary: true,
                })
                .collect();
            for f in config.fields.iter().filter(|f| f.entity == kind) {
                let taken =
                    |list: &Vec<FieldName>, name: &str| list.iter().any(|n| n.bitrix == name);
                let standard = STANDARD_FIELDS
                    .iter()
                    .find(|(k, _, id)| *k == kind && *id == f.id)
                    .map(|(_, name, _)| *name)
                    .filter(|name| {
                        *name != "OPPORTUNITY"
                            || f.ty == FieldType::Money
                            || f.ty == FieldType::Number
                    });
                let shown = list.iter().any(|n| n.field == f.id);
                if let Some(name) = standard
                    && !taken(&list, name)
                {
                    list.push(FieldName {
                        bitrix: name.into(),
                        field: f.id.clone(),
                        primary: !shown,
                    });
                }
                let shown = list.iter().any(|n| n.field == f.id);
                let uf = format!("UF_CRM_{}", capitals(&f.id));
                if !taken(&list, &uf) {
                    list.push(FieldName {
                        bitrix: uf,
                        field: f.id.clone(),
                        primary: !shown,
                    });
                }
            }
            fields.insert(kind, list);
        }
        Mapping {
            config,
            users,
            statuses,
            sources,
            source_aliases,
            categories,
            fields,
        }
    }

    /// The configuration the mapping was built from.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The calendar's zone, in which dates are written.
    pub fn tz(&self) -> Tz {
        self.config.calendar.timezone
    }

    /// Every user id with its employee, by id.
    pub fn users(&self) -> &[(i64, EmployeeId)] {
        &self.users
    }

    /// The employee of a Bitrix24 user id.
    pub fn employee(&self, user: i64) -> Option<&EmployeeId> {
        self.users.iter().find(|(n, _)| *n == user).map(|(_, e)| e)
    }

    /// The Bitrix24 user id of an employee.
    pub fn user(&self, employee: &EmployeeId) -> Option<i64> {
        self.users
            .iter()
            .find(|(_, e)| e == employee)
            .map(|(n, _)| *n)
    }

    /// Lead `STATUS_ID`s and their stages, in the pipeline's order.
    pub fn statuses(&self) -> &[(String, StageId)] {
        &self.statuses
    }

    /// The lead stage of a `STATUS_ID` (any case).
    pub fn lead_stage(&self, status: &str) -> Option<&StageId> {
        let status = status.trim().to_ascii_uppercase();
        self.statuses
            .iter()
            .find(|(b, _)| *b == status)
            .map(|(_, s)| s)
    }

    /// The `STATUS_ID` of a lead stage (its id in capitals if the stage is not mapped).
    pub fn status_id(&self, stage: &StageId) -> String {
        self.statuses
            .iter()
            .find(|(_, s)| s == stage)
            .map_or_else(|| capitals(stage.as_str()), |(b, _)| b.clone())
    }

    /// The deal categories, by id.
    pub fn categories(&self) -> &[Category] {
        &self.categories
    }

    /// The category of `CATEGORY_ID`.
    pub fn category(&self, id: i64) -> Option<&Category> {
        self.categories.iter().find(|c| c.id == id)
    }

    /// The category of a deal pipeline.
    pub fn category_of(&self, pipeline: &PipelineId) -> Option<&Category> {
        self.categories.iter().find(|c| &c.pipeline == pipeline)
    }

    /// The `STAGE_ID` of a deal stage: `C<n>:X`, or `X` in category 0.
    pub fn stage_id(&self, pipeline: &PipelineId, stage: &StageId) -> String {
        match self.category_of(pipeline) {
            Some(c) => {
                let bare = c
                    .stages
                    .iter()
                    .find(|(_, s)| s == stage)
                    .map_or_else(|| capitals(stage.as_str()), |(b, _)| b.clone());
                c.stage_id(&bare)
            }
            None => capitals(stage.as_str()),
        }
    }

    /// The category and stage of a `STAGE_ID` (`C1:NEW`, `WON`); `within` reads an id without
    /// prefix in that category instead of category 0.
    pub fn deal_stage(&self, stage_id: &str, within: Option<i64>) -> Option<(&Category, &StageId)> {
        let id = stage_id.trim().to_ascii_uppercase();
        let (cat, bare) = match id.strip_prefix('C').and_then(|r| r.split_once(':')) {
            Some((n, bare)) => (n.parse::<i64>().ok()?, bare.to_owned()),
            None => (within.unwrap_or(0), id),
        };
        if within.is_some_and(|w| w != cat) {
            return None;
        }
        let c = self.category(cat)?;
        let stage = c.stages.iter().find(|(b, _)| *b == bare).map(|(_, s)| s)?;
        Some((c, stage))
    }

    /// `SOURCE_ID`s and their sources (each source once).
    pub fn sources(&self) -> &[(String, String)] {
        &self.sources
    }

    /// The source of a `SOURCE_ID` (any case); a standard id that no source takes is read as
    /// `OTHER`'s source.
    pub fn source(&self, source_id: &str) -> Option<&str> {
        let id = source_id.trim().to_ascii_uppercase();
        self.sources
            .iter()
            .chain(&self.source_aliases)
            .find(|(b, _)| *b == id)
            .map(|(_, s)| s.as_str())
    }

    /// The `SOURCE_ID` of a source.
    pub fn source_id(&self, source: &str) -> String {
        self.sources
            .iter()
            .find(|(_, s)| s == source)
            .map_or_else(|| capitals(source), |(b, _)| b.clone())
    }

    /// The Bitrix24 names of an entity's custom fields.
    pub fn field_names(&self, kind: EntityKind) -> &[FieldName] {
        self.fields.get(&kind).map_or(&[], Vec::as_slice)
    }

    /// The custom field a Bitrix24 field name stands for (any case).
    pub fn custom_field(&self, kind: EntityKind, name: &str) -> Option<&str> {
        let name = name.trim().to_ascii_uppercase();
        self.field_names(kind)
            .iter()
            .find(|n| n.bitrix == name)
            .map(|n| n.field.as_str())
    }

    /// The name a record shows a custom field under.
    pub fn field_name(&self, kind: EntityKind, field: &str) -> String {
        self.field_names(kind)
            .iter()
            .find(|n| n.field == field && n.primary)
            .map_or_else(
                || format!("UF_CRM_{}", capitals(field)),
                |n| n.bitrix.clone(),
            )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use leadflow_engine::config::DEFAULT_CONFIG;

    fn default() -> Mapping {
        Mapping::new(Arc::new(
            Config::from_toml("leadflow.toml", DEFAULT_CONFIG).unwrap(),
        ))
    }

    #[test]
    fn user_1_of_the_init_config_can_hold_leads_and_user_2_is_the_default_actor() {
        let m = default();
        // admin is in no team that works leads; ivanov is the first of the first line.
        assert_eq!(m.employee(1), Some(&EmployeeId::from("ivanov")));
        assert_eq!(m.employee(2), Some(&EmployeeId::from("admin")));
        let petrova = m.user(&EmployeeId::from("petrova")).unwrap();
        assert_eq!(m.employee(petrova), Some(&EmployeeId::from("petrova")));
        assert_eq!(m.users().len(), m.config().employees.len());
    }

    #[test]
    fn the_standard_lead_statuses_map_to_the_lead_pipeline() {
        let m = default();
        let stage = |s: &str| m.lead_stage(s).map(|s| s.as_str().to_owned());
        assert_eq!(stage("NEW").as_deref(), Some("new"));
        assert_eq!(stage("IN_PROCESS").as_deref(), Some("in_work"));
        assert_eq!(stage("processed").as_deref(), Some("qualified"));
        assert_eq!(stage("JUNK").as_deref(), Some("junk"));
        assert_eq!(stage("CONVERTED").as_deref(), Some("converted"));
        assert_eq!(stage("QUALITY_CONTROL").as_deref(), Some("quality_control"));
        // Every stage has one id, and it reads back.
        for s in &m.config().lead_pipeline().stages {
            assert_eq!(m.lead_stage(&m.status_id(&s.id)), Some(&s.id));
        }
    }

    #[test]
    fn deal_categories_0_and_1_are_the_deal_pipelines_with_prefixed_stages() {
        let m = default();
        assert_eq!(m.category(0).unwrap().pipeline.as_str(), "goods");
        assert_eq!(m.category(1).unwrap().pipeline.as_str(), "services");
        let (c, s) = m.deal_stage("C1:NEW", None).unwrap();
        assert_eq!((c.id, s.as_str()), (1, "new"));
        let (c, s) = m.deal_stage("C1:LOSE", None).unwrap();
        assert_eq!((c.id, s.as_str()), (1, "lost"));
        let (c, s) = m.deal_stage("WON", None).unwrap();
        assert_eq!((c.id, s.as_str()), (0, "won"));
        assert_eq!(m.deal_stage("NEW", Some(1)).unwrap().0.id, 1);
        assert!(m.deal_stage("C1:NEW", Some(0)).is_none());
        assert_eq!(
            m.stage_id(&"services".into(), &"measurement".into()),
            "C1:MEASUREMENT"
        );
        assert_eq!(m.stage_id(&"goods".into(), &"new".into()), "NEW");
    }

    #[test]
    fn the_standard_sources_map_to_the_configs_sources() {
        let m = default();
        assert_eq!(m.source("CALL"), Some("call"));
        assert_eq!(m.source("EMAIL"), Some("email"));
        assert_eq!(m.source("WEB"), Some("web_form"));
        assert_eq!(m.source("WEBFORM"), Some("web_form"));
        assert_eq!(m.source("OTHER"), Some("manual"));
        assert_eq!(m.source("ADVERTISING"), Some("manual"));
        assert_eq!(m.source("IMPORT"), Some("import"));
        assert_eq!(m.source("NOPE"), None);
        assert_eq!(m.source_id("web_form"), "WEB");
        assert_eq!(m.source_id("manual"), "OTHER");
    }

    #[test]
    fn custom_fields_have_uf_crm_names_and_standard_names() {
        let m = default();
        assert_eq!(
            m.custom_field(EntityKind::Lead, "UF_CRM_MATERIAL"),
            Some("material")
        );
        assert_eq!(
            m.field_name(EntityKind::Lead, "material"),
            "UF_CRM_MATERIAL"
        );
        assert_eq!(
            m.custom_field(EntityKind::Lead, "COMPANY_TITLE"),
            Some("company_name")
        );
        assert_eq!(
            m.field_name(EntityKind::Lead, "company_name"),
            "COMPANY_TITLE"
        );
        assert_eq!(
            m.custom_field(EntityKind::Lead, "UF_CRM_COMPANY_NAME"),
            Some("company_name")
        );
        assert_eq!(
            m.custom_field(EntityKind::Lead, "OPPORTUNITY"),
            Some("budget")
        );
        assert_eq!(
            m.custom_field(EntityKind::Contact, "BIRTHDATE"),
            Some("birthday")
        );
    }

    #[test]
    fn a_minimal_config_maps_without_employees_or_deal_pipelines() {
        let text = "[[pipelines]]\nid = \"lead\"\nname = \"Leads\"\nentity = \"lead\"\nstages = [ { id = \"new\", name = \"New\" }, { id = \"won\", name = \"Won\", semantic = \"success\" }, { id = \"spam\", name = \"Spam\", semantic = \"failure\" } ]\n";
        let m = Mapping::new(Arc::new(Config::from_toml("x.toml", text).unwrap()));
        assert!(m.users().is_empty() && m.employee(1).is_none());
        assert!(m.categories().is_empty() && m.deal_stage("NEW", None).is_none());
        assert_eq!(m.lead_stage("CONVERTED").unwrap().as_str(), "won");
        assert_eq!(m.lead_stage("JUNK").unwrap().as_str(), "spam");
        assert!(m.lead_stage("IN_PROCESS").is_none());
        assert_eq!(m.source_id("web_form"), "WEB");
    }

    #[test]
    fn the_bitrix24_section_overrides_the_defaults() {
        let text = DEFAULT_CONFIG.to_owned()
            + "\n[bitrix24]\nusers = { \"1\" = \"petrova\", \"5\" = \"admin\" }\nstatuses = { NEW = \"in_work\" }\ncategories = { \"1\" = \"goods\" }\nsources = { PARTNER = \"import\" }\n[bitrix24.fields.lead]\nUF_CRM_STONE = \"material\"\n";
        let m = Mapping::new(Arc::new(Config::from_toml("x.toml", &text).unwrap()));
        assert_eq!(m.employee(1).unwrap().as_str(), "petrova");
        assert_eq!(m.employee(5).unwrap().as_str(), "admin");
        assert_eq!(m.lead_stage("NEW").unwrap().as_str(), "in_work");
        // The first stage, whose default id is taken, is its id in capitals.
        assert_eq!(m.status_id(&"new".into()), "NEW_2");
        assert_eq!(
            m.lead_stage(&m.status_id(&"new".into())).unwrap().as_str(),
            "new"
        );
        assert_eq!(m.category(1).unwrap().pipeline.as_str(), "goods");
        assert_eq!(m.category(0).unwrap().pipeline.as_str(), "services");
        assert_eq!(m.source("PARTNER"), Some("import"));
        assert_eq!(m.source_id("import"), "PARTNER");
        assert_eq!(m.field_name(EntityKind::Lead, "material"), "UF_CRM_STONE");
        assert_eq!(
            m.custom_field(EntityKind::Lead, "UF_CRM_MATERIAL"),
            Some("material")
        );
    }
}
