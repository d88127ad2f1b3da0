//! `send_report`: the KPI summary of scenario D — per employee, the leads that came in, were
//! converted or lost in the period, and their overdue tasks — sent to managers' inboxes and
//! recorded as `report.sent`.

use crate::builtin::{required, text};
use crate::context::{Ctx, RobotError};
use crate::runtime::SYSTEM_STREAM;
use crate::{Params, Robot};
use chrono::{DateTime, Utc};
use leadflow_engine::config::{Semantic, parse_duration};
use leadflow_engine::event::{Channel, KpiRow, NotificationQueued, ReportSent};
use leadflow_engine::ids::{EmployeeId, TeamId};
use leadflow_engine::report;
use leadflow_engine::workspace::{KpiCounts, KpiQuery};
use leadflow_engine::{Config, Event};
use std::collections::BTreeMap;
use std::fmt::Write as _;

/// `send_report`: KPI rows for the period ending now (`period`, default `1d`; a lead counts
/// in the period `(now - period, now]`).
///
/// Per employee: `leads_in` — leads created in the period, by their responsible now;
/// `converted` / `lost` — leads that entered a success / failure stage of the lead pipeline in
/// the period (from the stage history), by their responsible now; `overdue` — their open tasks
/// past due now.
///
/// Who gets what:
/// - `to = "manager"`: each team's manager gets the rows of their team's active members (one
///   report over all their teams); with `team`, only that team's manager.
/// - `to = "team"`: every active member of `team` gets the whole team's rows.
/// - `to = "employee"`: `employee` gets the rows of `team`, or of every active employee.
///
/// Each report is a `report.sent` event in `system-1` and an inbox message with a plain-text
/// table to each recipient (in the rule's subject stream; for schedule rules `system-1`).
pub struct SendReport;

/// Who receives one report, and whose rows it holds.
struct Audience {
    to: Vec<EmployeeId>,
    rows_of: Vec<EmployeeId>,
}

impl Robot for SendReport {
    fn run(&self, ctx: &mut Ctx<'_, '_>, params: &Params) -> Result<(), RobotError> {
        let to = required(params, "to")?;
        let period = text(params, "period").unwrap_or("1d");
        let span = parse_duration(period)
            .map_err(|m| RobotError::Failed(format!("send_report: 'period': {m}")))?;
        let until = ctx.now;
        let since = until.checked_sub_signed(span).ok_or_else(|| {
            RobotError::Failed(format!(
                "send_report: 'period' {period} reaches before the start of time"
            ))
        })?;
        let audiences = audiences(ctx.config, to, params)?;
        let counts = kpi_counts(ctx, since, until)?;
        for audience in audiences {
            let rows = report::kpi_rows(&counts, &audience.rows_of);
            let table = render(ctx.config, since, until, &rows);
            ctx.append(
                SYSTEM_STREAM,
                &[Event::ReportSent(ReportSent {
                    to: audience.to.clone(),
                    since,
                    until,
                    rows,
                    rule: ctx.rule.to_owned(),
                })],
            )?;
            for recipient in audience.to {
                ctx.notify(NotificationQueued {
                    channel: Channel::Inbox,
                    to: Some(recipient),
                    target: None,
                    text: table.clone(),
                    priority: "normal".into(),
                    rule: None,
                    key: String::new(),
                })?;
            }
        }
        Ok(())
    }
}

/// Active members of a team, in config order.
fn members(config: &Config, team: &TeamId) -> Vec<EmployeeId> {
    config
        .members(team)
        .into_iter()
        .map(|e| e.id.clone())
        .collect()
}

fn team_param(config: &Config, params: &Params) -> Result<Option<TeamId>, RobotError> {
    match text(params, "team") {
        None => Ok(None),
        Some(t) if config.teams.contains_key(&TeamId::from(t)) => Ok(Some(t.into())),
        Some(t) => Err(RobotError::Failed(format!(
            "send_report: unknown team '{t}'"
        ))),
    }
}

fn audiences(config: &Config, to: &str, params: &Params) -> Result<Vec<Audience>, RobotError> {
    let team = team_param(config, params)?;
    let fail = |m: String| Err(RobotError::Failed(format!("send_report: {m}")));
    match to {
        "manager" => {
            let mut by_manager: BTreeMap<EmployeeId, Vec<EmployeeId>> = BTreeMap::new();
            for t in config.teams.values() {
                if team.as_ref().is_some_and(|want| want != &t.id) {
                    continue;
                }
                let Some(manager) = &t.manager else { continue };
                let rows = by_manager.entry(manager.clone()).or_default();
                for m in members(config, &t.id) {
                    if !rows.contains(&m) {
                        rows.push(m);
                    }
                }
            }
            if by_manager.is_empty() {
                return match team {
                    Some(t) => fail(format!("team '{t}' has no manager to send the report to")),
                    None => fail("no team has a manager to send the report to".into()),
                };
            }
            Ok(by_manager
                .into_iter()
                .map(|(manager, rows_of)| Audience {
                    to: vec![manager],
                    rows_of,
                })
                .collect())
        }
        "team" => {
            let Some(team) = team else {
                return fail("to = \"team\" needs team = \"...\"".into());
            };
            let rows_of = members(config, &team);
            if rows_of.is_empty() {
                return fail(format!("team '{team}' has no active member"));
            }
            Ok(vec![Audience {
                to: rows_of.clone(),
                rows_of,
            }])
        }
        "employee" => {
            let Some(employee) = text(params, "employee") else {
                return fail("to = \"employee\" needs employee = \"...\"".into());
            };
            let employee = EmployeeId(employee.to_owned());
            if config.employee(&employee).is_none_or(|e| !e.active) {
                return fail(format!("'{employee}' is not an active employee"));
            }
            let rows_of = match team {
                Some(t) => members(config, &t),
                None => config
                    .employees
                    .values()
                    .filter(|e| e.active)
                    .map(|e| e.id.clone())
                    .collect(),
            };
            Ok(vec![Audience {
                to: vec![employee],
                rows_of,
            }])
        }
        other => fail(format!(
            "unknown recipient '{other}': expected manager, team or employee"
        )),
    }
}

/// The period's KPI counts: the workspace's `kpi`, the store query `leadflow report kpi` runs
/// too (`store::report::kpi`); `engine::report::kpi_rows` makes them rows for both.
fn kpi_counts(
    ctx: &mut Ctx<'_, '_>,
    since: DateTime<Utc>,
    until: DateTime<Utc>,
) -> Result<KpiCounts, RobotError> {
    let pipeline = ctx.config.lead_pipeline();
    let success = report::stages_with(pipeline, Semantic::Success);
    let failure = report::stages_with(pipeline, Semantic::Failure);
    let pipeline = pipeline.id.to_string();
    let counts = ctx.ws.kpi(&KpiQuery {
        pipeline: &pipeline,
        success: &success,
        failure: &failure,
        since,
        until,
    })?;
    Ok(counts)
}

/// The report as a plain-text table, times in the calendar's zone.
fn render(config: &Config, since: DateTime<Utc>, until: DateTime<Utc>, rows: &[KpiRow]) -> String {
    let tz = config.calendar.timezone;
    let local = |t: DateTime<Utc>| t.with_timezone(&tz).format("%Y-%m-%d %H:%M").to_string();
    let name = |e: &EmployeeId| {
        config
            .employee(e)
            .map_or_else(|| e.to_string(), |emp| emp.name.clone())
    };
    let names: Vec<String> = rows.iter().map(|r| name(&r.employee)).collect();
    let width = names
        .iter()
        .map(|n| n.chars().count())
        .chain(["employee".len(), "total".len()])
        .max()
        .unwrap_or(8);
    let mut out = format!("KPI {} – {} ({tz})\n", local(since), local(until));
    let line = |out: &mut String, who: &str, v: [i64; 4]| {
        let _ = writeln!(
            out,
            "{who:<width$}  {:>8}  {:>9}  {:>4}  {:>7}",
            v[0], v[1], v[2], v[3]
        );
    };
    let _ = writeln!(
        out,
        "{:<width$}  {:>8}  {:>9}  {:>4}  {:>7}",
        "employee", "leads in", "converted", "lost", "overdue"
    );
    let mut total = [0i64; 4];
    for (row, who) in rows.iter().zip(&names) {
        let v = [row.leads_in, row.converted, row.lost, row.overdue];
        for (t, x) in total.iter_mut().zip(v) {
            *t += x;
        }
        line(&mut out, who, v);
    }
    line(&mut out, "total", total);
    out.truncate(out.trim_end().len());
    out
}
