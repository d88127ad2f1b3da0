//! The `[bitrix24]` section: how the Bitrix24-compatible REST facade names leadflow's ids.
//!
//! Everything here is optional: the facade derives a mapping from the pipelines, sources,
//! employees and custom fields (docs/BITRIX24-FACADE.md), and these tables override or extend
//! it. Each table maps a Bitrix24 id (the key) to a leadflow id (the value); every value must
//! exist, and no leadflow id may be named by two keys of one table, so the mapping reads back.
//!
//! ```toml
//! [bitrix24]
//! users = { "1" = "admin", "7" = "petrova" }        # ASSIGNED_BY_ID, the webhook's user
//! statuses = { NEW = "new", IN_PROCESS = "in_work" }  # lead STATUS_ID → lead stage
//! sources = { WEB = "web_form" }                      # SOURCE_ID → source
//! categories = { "0" = "goods", "1" = "services" }    # deal CATEGORY_ID → deal pipeline
//! [bitrix24.stages.goods]                             # STAGE_ID (no C<n>: prefix) → stage
//! PREPARATION = "offer"
//! [bitrix24.fields.lead]                              # Bitrix24 field → custom field
//! UF_CRM_MATERIAL = "material"
//! ```

use super::{FieldDef, Pipeline};
use crate::diag::{Diagnostic, FileIndex};
use crate::ids::{EmployeeId, EntityKind, PipelineId, StageId};
use serde::Deserialize;
use std::collections::{BTreeMap, BTreeSet};
use toml::Spanned;

/// The `[bitrix24]` section as validated: only what the file says (the facade adds defaults).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Bitrix24 {
    /// Numeric Bitrix24 user ids → employees.
    pub users: BTreeMap<i64, EmployeeId>,
    /// Lead `STATUS_ID`s → stages of the lead pipeline.
    pub statuses: BTreeMap<String, StageId>,
    /// `SOURCE_ID`s → intake sources.
    pub sources: BTreeMap<String, String>,
    /// Deal `CATEGORY_ID`s → deal pipelines.
    pub categories: BTreeMap<i64, PipelineId>,
    /// Per deal pipeline: `STAGE_ID`s without their `C<n>:` prefix → stages.
    pub stages: BTreeMap<PipelineId, BTreeMap<String, StageId>>,
    /// Per entity: Bitrix24 field names (`UF_CRM_MATERIAL`, `LAST_NAME`) → custom fields.
    pub fields: BTreeMap<EntityKind, BTreeMap<String, String>>,
}

type RawTable = BTreeMap<Spanned<String>, Spanned<String>>;

/// The section as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawBitrix24 {
    #[serde(default)]
    users: RawTable,
    #[serde(default)]
    statuses: RawTable,
    #[serde(default)]
    sources: RawTable,
    #[serde(default)]
    categories: RawTable,
    #[serde(default)]
    stages: BTreeMap<Spanned<String>, RawTable>,
    #[serde(default)]
    fields: BTreeMap<Spanned<String>, RawTable>,
}

/// What the section is checked against.
pub(super) struct Known<'a> {
    pub(super) employees: &'a BTreeMap<EmployeeId, super::Employee>,
    pub(super) sources: &'a [String],
    pub(super) pipelines: &'a [Pipeline],
    pub(super) fields: &'a [FieldDef],
}

/// Checks the section against the rest of the configuration, pushing every problem.
pub(super) fn load(
    file: &FileIndex<'_>,
    raw: RawBitrix24,
    known: &Known<'_>,
    errors: &mut Vec<Diagnostic>,
) -> Bitrix24 {
    let mut c = Checker { file, errors };
    let mut out = Bitrix24::default();
    let users = c.table("users", &raw.users, |c, k, v| {
        let id = c.number(k, "a Bitrix24 user id", 1)?;
        c.exists(
            v,
            known
                .employees
                .contains_key(&EmployeeId(v.get_ref().clone())),
            "employee",
        )?;
        Some((id, EmployeeId(v.get_ref().clone())))
    });
    out.users = users.into_iter().collect();
    let lead = known
        .pipelines
        .iter()
        .find(|p| p.entity == EntityKind::Lead);
    out.statuses = c
        .table("statuses", &raw.statuses, |c, k, v| {
            c.bitrix_id(k)?;
            let ok = lead.is_some_and(|p| p.stage(&StageId(v.get_ref().clone())).is_some());
            c.exists(v, ok, "stage of the lead pipeline")?;
            Some((k.get_ref().clone(), StageId(v.get_ref().clone())))
        })
        .into_iter()
        .collect();
    out.sources = c
        .table("sources", &raw.sources, |c, k, v| {
            c.bitrix_id(k)?;
            c.exists(v, known.sources.contains(v.get_ref()), "source")?;
            Some((k.get_ref().clone(), v.get_ref().clone()))
        })
        .into_iter()
        .collect();
    let deal_pipeline = |id: &str| {
        known
            .pipelines
            .iter()
            .find(|p| p.entity == EntityKind::Deal && p.id.as_str() == id)
    };
    out.categories = c
        .table("categories", &raw.categories, |c, k, v| {
            let n = c.number(k, "a deal category id", 0)?;
            c.exists(v, deal_pipeline(v.get_ref()).is_some(), "deal pipeline")?;
            Some((n, PipelineId(v.get_ref().clone())))
        })
        .into_iter()
        .collect();
    for (pipeline, table) in &raw.stages {
        let Some(p) = deal_pipeline(pipeline.get_ref()) else {
            c.err(
                pipeline.span().start,
                format!(
                    "unknown deal pipeline '{}' in [bitrix24.stages]",
                    pipeline.get_ref()
                ),
            );
            continue;
        };
        let what = format!("stages.{}", pipeline.get_ref());
        let map = c
            .table(&what, table, |c, k, v| {
                c.bitrix_id(k)?;
                let ok = p.stage(&StageId(v.get_ref().clone())).is_some();
                c.exists(v, ok, &format!("stage of pipeline '{}'", p.id))?;
                Some((k.get_ref().clone(), StageId(v.get_ref().clone())))
            })
            .into_iter()
            .collect();
        out.stages.insert(p.id.clone(), map);
    }
    for (entity, table) in &raw.fields {
        let kind = match entity.get_ref().parse::<EntityKind>() {
            Ok(
                k @ (EntityKind::Lead
                | EntityKind::Deal
                | EntityKind::Contact
                | EntityKind::Company),
            ) => k,
            _ => {
                c.err(
                    entity.span().start,
                    format!(
                        "unknown entity '{}' in [bitrix24.fields]: expected lead, deal, contact or company",
                        entity.get_ref()
                    ),
                );
                continue;
            }
        };
        let what = format!("fields.{kind}");
        let map = c
            .table(&what, table, |c, k, v| {
                c.bitrix_id(k)?;
                let ok = known
                    .fields
                    .iter()
                    .any(|f| f.entity == kind && &f.id == v.get_ref());
                c.exists(v, ok, &format!("custom {kind} field"))?;
                Some((k.get_ref().clone(), v.get_ref().clone()))
            })
            .into_iter()
            .collect();
        out.fields.insert(kind, map);
    }
    out
}

struct Checker<'a, 'f> {
    file: &'a FileIndex<'f>,
    errors: &'a mut Vec<Diagnostic>,
}

impl Checker<'_, '_> {
    fn err(&mut self, offset: usize, message: String) {
        self.errors.push(self.file.error(offset, message));
    }

    /// Checks each entry with `f`, and that no value is named twice.
    fn table<T>(
        &mut self,
        what: &str,
        table: &RawTable,
        mut f: impl FnMut(&mut Self, &Spanned<String>, &Spanned<String>) -> Option<T>,
    ) -> Vec<T> {
        let mut seen = BTreeSet::new();
        let mut out = Vec::new();
        for (k, v) in table {
            if !seen.insert(v.get_ref().clone()) {
                self.err(
                    v.span().start,
                    format!(
                        "'{}' is mapped twice in [bitrix24] {what}: give each leadflow id one Bitrix24 id",
                        v.get_ref()
                    ),
                );
                continue;
            }
            if let Some(t) = f(self, k, v) {
                out.push(t);
            }
        }
        out
    }

    fn number(&mut self, k: &Spanned<String>, what: &str, min: i64) -> Option<i64> {
        match k.get_ref().parse::<i64>() {
            Ok(n) if n >= min && n < 1 << 31 => Some(n),
            _ => {
                self.err(
                    k.span().start,
                    format!(
                        "'{}' is not {what}: write a whole number from {min}",
                        k.get_ref()
                    ),
                );
                None
            }
        }
    }

    fn bitrix_id(&mut self, k: &Spanned<String>) -> Option<()> {
        let s = k.get_ref();
        let ok = !s.is_empty()
            && s.chars()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_');
        if ok {
            Some(())
        } else {
            self.err(
                k.span().start,
                format!("'{s}' is not a Bitrix24 id: use A-Z, 0-9 and _ (like IN_PROCESS)"),
            );
            None
        }
    }

    fn exists(&mut self, v: &Spanned<String>, ok: bool, what: &str) -> Option<()> {
        if ok {
            Some(())
        } else {
            self.err(
                v.span().start,
                format!("unknown {what} '{}' in [bitrix24]", v.get_ref()),
            );
            None
        }
    }
}
