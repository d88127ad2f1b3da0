//! The pure side of the head-of-sales reports (scenario D, seed 003; docs/REPORTS.md): the
//! traffic light's rules, the KPI rows the `send_report` robot and `leadflow report kpi` share,
//! and the one way a share is computed. The counts come from the store's `report` queries; the
//! figures derived from them are decided here, so the robot, the CLI and the charts agree.

use crate::config::{Config, Pipeline, Semantic};
use crate::event::KpiRow;
use crate::ids::EmployeeId;
use crate::workspace::KpiCounts;
use serde::Serialize;

/// `part` as a percentage of `whole`, rounded to one decimal; `None` when `whole` is 0 (a
/// share of nothing is not 0 %).
pub fn percent(part: i64, whole: i64) -> Option<f64> {
    if whole <= 0 {
        return None;
    }
    // Integer arithmetic first, so 1/3 is 33.3 on every platform: tenths of a percent,
    // rounded half up.
    let tenths = (part * 2000 + whole) / (2 * whole);
    Some(tenths as f64 / 10.0)
}

/// The KPI rows of `employees`, in their order, from a period's counts: the one place both
/// the `send_report` robot and `leadflow report kpi` turn counts into rows.
pub fn kpi_rows(counts: &KpiCounts, employees: &[EmployeeId]) -> Vec<KpiRow> {
    let get = |m: &std::collections::HashMap<String, i64>, e: &EmployeeId| {
        m.get(e.as_str()).copied().unwrap_or(0)
    };
    employees
        .iter()
        .map(|e| KpiRow {
            employee: e.clone(),
            leads_in: get(&counts.leads_in, e),
            converted: get(&counts.converted, e),
            lost: get(&counts.lost, e),
            overdue: get(&counts.overdue, e),
        })
        .collect()
}

/// The ids of a pipeline's stages with this semantic, in configuration order.
pub fn stages_with(pipeline: &Pipeline, semantic: Semantic) -> Vec<String> {
    pipeline
        .stages
        .iter()
        .filter(|s| s.semantic == semantic)
        .map(|s| s.id.to_string())
        .collect()
}

/// The `pipeline/stage` keys of every in-progress stage (of one pipeline, or of all): where a
/// lead or deal is "in work" or "active".
pub fn open_stage_keys(config: &Config, pipeline: Option<&Pipeline>) -> Vec<String> {
    config
        .pipelines
        .iter()
        .filter(|p| pipeline.is_none_or(|only| only.id == p.id))
        .flat_map(|p| {
            p.stages
                .iter()
                .filter(|s| s.semantic == Semantic::InProgress)
                .map(move |s| format!("{}/{}", p.id, s.id))
        })
        .collect()
}

/// Red, yellow or green.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Light {
    /// The work with the client is fine.
    Green,
    /// There are problems, not critical ones: the client's card is incomplete.
    Yellow,
    /// There are problems to fix now: nothing is being worked on, or a task is overdue.
    Red,
}

impl Light {
    /// `red`, `yellow`, `green`.
    pub fn as_str(self) -> &'static str {
        match self {
            Light::Green => "green",
            Light::Yellow => "yellow",
            Light::Red => "red",
        }
    }
}

/// What the traffic light reads about one client (a contact or a company).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ClientFacts {
    /// Leads and deals of the client in an in-progress stage.
    pub active: i64,
    /// Open tasks of the client's leads and deals past their due time.
    pub overdue: i64,
    /// Every custom field the configuration defines for the client's kind has a value.
    pub portrait: bool,
    /// The client has a phone and an e-mail.
    pub contacts: bool,
}

/// A reason the light is not green, as reports show it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    /// No lead or deal of the client is in work (red).
    NoActiveLeadOrDeal,
    /// A task of the client's leads or deals is overdue (red).
    OverdueTask,
    /// The client's portrait (its custom fields) is not filled (yellow).
    PortraitMissing,
    /// The client's phone or e-mail is missing (yellow).
    ContactInfoMissing,
}

impl Reason {
    /// The reason in words.
    pub fn text(self) -> &'static str {
        match self {
            Reason::NoActiveLeadOrDeal => "no active lead or deal",
            Reason::OverdueTask => "overdue task",
            Reason::PortraitMissing => "portrait not filled",
            Reason::ContactInfoMissing => "contact information missing",
        }
    }
}

/// The traffic light of one client: red when no lead or deal of theirs is in work or a task
/// is overdue; else yellow when the portrait or the contact information is missing; else
/// green. Every failed check is a reason, in that order.
pub fn client_light(f: &ClientFacts) -> (Light, Vec<Reason>) {
    let mut reasons = Vec::new();
    if f.active == 0 {
        reasons.push(Reason::NoActiveLeadOrDeal);
    }
    if f.overdue > 0 {
        reasons.push(Reason::OverdueTask);
    }
    let red = !reasons.is_empty();
    if !f.portrait {
        reasons.push(Reason::PortraitMissing);
    }
    if !f.contacts {
        reasons.push(Reason::ContactInfoMissing);
    }
    let light = if red {
        Light::Red
    } else if reasons.is_empty() {
        Light::Green
    } else {
        Light::Yellow
    };
    (light, reasons)
}

/// A manager's light: the worst light among their clients (green with none).
pub fn manager_light(lights: impl IntoIterator<Item = Light>) -> Light {
    lights.into_iter().max().unwrap_or(Light::Green)
}

#[cfg(test)]
mod tests {
    use super::*;

    const FINE: ClientFacts = ClientFacts {
        active: 1,
        overdue: 0,
        portrait: true,
        contacts: true,
    };

    #[test]
    fn a_client_in_work_with_a_full_card_is_green() {
        assert_eq!(client_light(&FINE), (Light::Green, vec![]));
    }

    #[test]
    fn no_active_work_or_an_overdue_task_is_red_and_card_gaps_are_still_named() {
        let idle = ClientFacts {
            active: 0,
            overdue: 2,
            portrait: false,
            ..FINE
        };
        assert_eq!(
            client_light(&idle),
            (
                Light::Red,
                vec![
                    Reason::NoActiveLeadOrDeal,
                    Reason::OverdueTask,
                    Reason::PortraitMissing
                ]
            )
        );
        let late = ClientFacts { overdue: 1, ..FINE };
        assert_eq!(client_light(&late), (Light::Red, vec![Reason::OverdueTask]));
    }

    #[test]
    fn an_incomplete_card_alone_is_yellow() {
        let f = ClientFacts {
            contacts: false,
            ..FINE
        };
        assert_eq!(
            client_light(&f),
            (Light::Yellow, vec![Reason::ContactInfoMissing])
        );
    }

    #[test]
    fn a_manager_shows_the_worst_light_of_their_clients() {
        assert_eq!(manager_light([Light::Green, Light::Yellow]), Light::Yellow);
        assert_eq!(manager_light([Light::Red, Light::Green]), Light::Red);
        assert_eq!(manager_light([]), Light::Green);
    }

    #[test]
    fn percent_rounds_to_a_tenth_and_has_no_share_of_nothing() {
        assert_eq!(percent(3, 10), Some(30.0));
        assert_eq!(percent(1, 3), Some(33.3));
        assert_eq!(percent(2, 3), Some(66.7));
        assert_eq!(percent(1, 8), Some(12.5));
        assert_eq!(percent(0, 0), None);
    }
}
