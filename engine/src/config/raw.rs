//! The configuration files' TOML format, as read before any check: spans kept for messages.

use super::Semantic;
use crate::field::FieldType;
use serde::Deserialize;
use toml::Spanned;

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawFile {
    pub(super) currency: Option<Spanned<String>>,
    pub(super) default_actor: Option<Spanned<String>>,
    pub(super) sources: Option<Vec<Spanned<String>>>,
    #[serde(default)]
    pub(super) employees: Vec<RawEmployee>,
    #[serde(default)]
    pub(super) teams: Vec<RawTeam>,
    #[serde(default)]
    pub(super) fields: Vec<RawField>,
    #[serde(default)]
    pub(super) pipelines: Vec<RawPipeline>,
    pub(super) calendar: Option<Spanned<RawCalendar>>,
    pub(super) delivery: Option<Spanned<super::delivery::RawDelivery>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCalendar {
    pub(super) timezone: Option<Spanned<String>>,
    pub(super) days: Option<Spanned<Vec<Spanned<String>>>>,
    pub(super) hours: Option<Spanned<Vec<Spanned<String>>>>,
    #[serde(default)]
    pub(super) holidays: Vec<Spanned<String>>,
    #[serde(default)]
    pub(super) working_weekends: Vec<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawEmployee {
    pub(super) id: Spanned<String>,
    pub(super) name: String,
    pub(super) team: Option<Spanned<String>>,
    pub(super) manager: Option<Spanned<String>>,
    pub(super) email: Option<Spanned<String>>,
    #[serde(default = "yes")]
    pub(super) active: bool,
}

fn yes() -> bool {
    true
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTeam {
    pub(super) id: Spanned<String>,
    pub(super) name: String,
    pub(super) manager: Option<Spanned<String>>,
    #[serde(default)]
    pub(super) pipelines: Vec<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawField {
    pub(super) id: Spanned<String>,
    pub(super) entity: Spanned<String>,
    #[serde(rename = "type")]
    pub(super) ty: Spanned<FieldType>,
    pub(super) label: Option<String>,
    pub(super) group: Option<String>,
    #[serde(default)]
    pub(super) options: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPipeline {
    pub(super) id: Spanned<String>,
    pub(super) name: String,
    pub(super) entity: Spanned<String>,
    pub(super) stages: Spanned<Vec<RawStage>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawStage {
    pub(super) id: Spanned<String>,
    pub(super) name: String,
    #[serde(default = "in_progress")]
    pub(super) semantic: Semantic,
    pub(super) target: Option<Spanned<String>>,
    #[serde(default)]
    pub(super) required: Vec<Spanned<String>>,
    #[serde(default)]
    pub(super) required_when: Vec<RawConditional>,
    pub(super) from: Option<Vec<Spanned<String>>>,
    #[serde(default)]
    pub(super) reasons: Vec<String>,
}

fn in_progress() -> Semantic {
    Semantic::InProgress
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConditional {
    pub(super) field: Spanned<String>,
    pub(super) equals: String,
    pub(super) required: Vec<Spanned<String>>,
}
