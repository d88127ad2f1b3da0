//! The configuration files' TOML format, as read before any check: spans kept for messages.

use super::Semantic;
use crate::access::Resource;
use crate::field::FieldType;
use serde::Deserialize;
use std::collections::BTreeMap;
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
    pub(super) server: Option<Spanned<super::service::RawServer>>,
    #[serde(default)]
    pub(super) forms: std::collections::BTreeMap<Spanned<String>, super::service::RawForm>,
    pub(super) bitrix24: Option<Spanned<super::bitrix24::RawBitrix24>>,
    /// `[roles.NAME]`: API roles replacing or adding to the defaults (issue 10, access).
    #[serde(default)]
    pub(super) roles: BTreeMap<Spanned<String>, RawRole>,
    pub(super) delivery: Option<Spanned<super::delivery::RawDelivery>>,
    pub(super) ui: Option<Spanned<super::ui::RawUi>>,
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
    /// How many leads the team should have in work at once (reports).
    pub(super) plan: Option<Spanned<i64>>,
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

/// A list of actions, as written: `["read", "write"]`.
pub(super) type RawActions = Option<Spanned<Vec<Spanned<String>>>>;

/// `[roles.NAME]`: a key per resource (an unknown one is a TOML error at its place) with the
/// actions granted on it, a scope and a description.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRole {
    pub(super) description: Option<String>,
    pub(super) scope: Option<Spanned<String>>,
    pub(super) lead: RawActions,
    pub(super) deal: RawActions,
    pub(super) contact: RawActions,
    pub(super) company: RawActions,
    pub(super) task: RawActions,
    pub(super) events: RawActions,
    pub(super) journal: RawActions,
    pub(super) inbox: RawActions,
    pub(super) timers: RawActions,
    pub(super) rules: RawActions,
    pub(super) tokens: RawActions,
    pub(super) webhooks: RawActions,
    pub(super) outbox: RawActions,
    pub(super) verify: RawActions,
    pub(super) reports: RawActions,
    pub(super) intake: RawActions,
}

impl RawRole {
    /// Each resource's granted actions, as written.
    pub(super) fn grants(self) -> [(Resource, RawActions); 16] {
        use Resource as R;
        [
            (R::Lead, self.lead),
            (R::Deal, self.deal),
            (R::Contact, self.contact),
            (R::Company, self.company),
            (R::Task, self.task),
            (R::Events, self.events),
            (R::Journal, self.journal),
            (R::Inbox, self.inbox),
            (R::Timers, self.timers),
            (R::Rules, self.rules),
            (R::Tokens, self.tokens),
            (R::Webhooks, self.webhooks),
            (R::Outbox, self.outbox),
            (R::Verify, self.verify),
            (R::Reports, self.reports),
            (R::Intake, self.intake),
        ]
    }
}
