//! The head of sales' reports (scenario D, seed 003) as figures: the filters checked against
//! the configuration ([`Scope`]), the store's counts (`store::report`, one SQL statement each,
//! printed in docs/REPORTS.md) for them, and the figures derived from those (through
//! `engine::report`: shares, lights, KPI rows) with their table and charts ([`Built`]).
//! `leadflow report` prints them; the dashboard shows them.
//!
//! [`build`] reads only the `Source` it is given and the `until` of its [`Scope`]: a report as
//! of a time is the same call on a scratch copy of the log up to then.

use crate::Error;
use crate::charts::{self, Chart, Series};
use crate::text::{human_duration, time};
use chrono::{DateTime, Duration, TimeZone, Utc};
use leadflow_engine::config::{Config, Pipeline, Semantic};
use leadflow_engine::ids::{EmployeeId, EntityKind, PipelineId, TeamId};
use leadflow_engine::report::{self, ClientFacts, Light, percent};
use leadflow_store::fmt_time;
use leadflow_store::query::Source;
use leadflow_store::report::{self as q, Params};
use serde_json::{Value, json};
use std::collections::BTreeMap;

/// Which report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Per stage: the period's leads that reached it, stage-to-stage conversion.
    Funnel,
    /// Per manager: leads, won, lost, conversion, the share sent to junk and its reasons.
    Conversion,
    /// Leads and deals in work per manager and team, against the team's plan.
    Managers,
    /// Average time in each stage and the stays over its target.
    TimeInStage,
    /// Red / yellow / green per client and per manager, each reason shown.
    TrafficLight,
    /// Leads in work with no activity for `days` days.
    Forgotten,
    /// Leads that came in against leads lost in the period, per manager.
    IncomingVsLost,
    /// The daily KPI rows (what the `send_report` robot sends).
    Kpi,
}

impl Kind {
    /// The report's name on the command line and in JSON.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Funnel => "funnel",
            Kind::Conversion => "conversion",
            Kind::Managers => "managers",
            Kind::TimeInStage => "time-in-stage",
            Kind::TrafficLight => "traffic-light",
            Kind::Forgotten => "forgotten",
            Kind::IncomingVsLost => "incoming-vs-lost",
            Kind::Kpi => "kpi",
        }
    }
}

/// The filters of a report as people give them (`--pipeline`, `--since`…): text, checked by
/// [`Scope::resolve`]. Each error names the flag.
#[derive(Debug, Clone, Default)]
pub struct Filters {
    /// A pipeline id (`None`: the lead pipeline).
    pub pipeline: Option<String>,
    /// An employee id.
    pub employee: Option<String>,
    /// A team id.
    pub team: Option<String>,
    /// The period's start (a time people type, in the calendar's zone).
    pub since: Option<String>,
    /// The period's end.
    pub until: Option<String>,
    /// `forgotten`: days without activity.
    pub days: u32,
}

/// The filters of one report, checked against the configuration.
pub struct Scope<'c> {
    /// The pipeline reported on.
    pub pipeline: &'c Pipeline,
    /// Whether `--pipeline` was given (`managers` and `traffic-light` read every pipeline
    /// otherwise).
    pub pipeline_given: bool,
    /// The period's start.
    pub since: DateTime<Utc>,
    /// The period's end.
    pub until: DateTime<Utc>,
    /// The employees of `--team` / `--employee` (`None`: everyone).
    pub who: Option<Vec<String>>,
    /// `--team`.
    pub team: Option<TeamId>,
    /// `forgotten`: days without activity.
    pub days: u32,
}

/// The longest `--days` (ten years, the bound on every duration).
const MAX_DAYS: u32 = 3650;

fn unknown(what: &str, id: &str, flag: &str, known: Vec<&str>) -> Error {
    Error::Unknown(format!(
        "unknown {what} '{id}' in {flag}; the configuration lists: {}",
        known.join(", ")
    ))
}

impl<'c> Scope<'c> {
    /// The filters of report `kind` checked against `config`, times read at `now`; `as_of`:
    /// where `--as-of` ends the period: the default `--until` and its latest value.
    pub fn resolve(
        config: &'c Config,
        kind: Kind,
        args: &Filters,
        now: DateTime<Utc>,
        as_of: Option<DateTime<Utc>>,
    ) -> Result<Scope<'c>, Error> {
        // The KPI rows are the `send_report` robot's: leads of the lead pipeline, whatever
        // deal pipeline one names (their figures would mean nothing).
        if kind == Kind::Kpi
            && let Some(p) = &args.pipeline
            && p.as_str() != config.lead_pipeline().id.as_str()
        {
            return Err(Error::Usage(format!(
                "--pipeline {p}: the kpi report counts the leads of the lead pipeline '{}' (as the send_report robot does); leave --pipeline out",
                config.lead_pipeline().id
            )));
        }
        let pipeline = match &args.pipeline {
            None => config.lead_pipeline(),
            Some(p) => config
                .pipeline(&PipelineId::from(p.as_str()))
                .ok_or_else(|| {
                    unknown(
                        "pipeline",
                        p,
                        "--pipeline",
                        config.pipelines.iter().map(|p| p.id.as_str()).collect(),
                    )
                })?,
        };
        if let Some(e) = &args.employee
            && config.employee(&EmployeeId::from(e.as_str())).is_none()
        {
            return Err(unknown(
                "employee",
                e,
                "--employee",
                config.employees.keys().map(|e| e.as_str()).collect(),
            ));
        }
        let team = match &args.team {
            None => None,
            Some(t) => {
                let id = TeamId::from(t.as_str());
                if !config.teams.contains_key(&id) {
                    return Err(unknown(
                        "team",
                        t,
                        "--team",
                        config.teams.keys().map(|t| t.as_str()).collect(),
                    ));
                }
                Some(id)
            }
        };
        // Inactive employees too: the period may be history.
        let members = |t: &TeamId| -> Vec<String> {
            config
                .employees
                .values()
                .filter(|e| e.team.as_ref() == Some(t))
                .map(|e| e.id.to_string())
                .collect()
        };
        let who = match (&args.employee, &team) {
            (Some(e), Some(t)) => {
                if !members(t).contains(e) {
                    return Err(Error::Unknown(format!(
                        "employee '{e}' is not in team '{t}' (--employee and --team)"
                    )));
                }
                Some(vec![e.clone()])
            }
            (Some(e), None) => Some(vec![e.clone()]),
            (None, Some(t)) => Some(members(t)),
            (None, None) => None,
        };
        let at = |t: &Option<String>, flag: &str| {
            t.as_deref()
                .map(|t| {
                    leadflow_engine::time::parse_time(t, config.calendar.timezone, Some(now))
                        .map_err(|e| Error::Usage(format!("{flag}: {e}")))
                })
                .transpose()
        };
        let tz = config.calendar.timezone;
        let until = match (at(&args.until, "--until")?, as_of) {
            (Some(u), Some(a)) if u > a => {
                return Err(Error::Usage(format!(
                    "--until {} is after --as-of {}: a report as of a time ends by then",
                    time(tz, u),
                    time(tz, a)
                )));
            }
            (Some(u), _) => u,
            (None, Some(a)) => a,
            (None, None) => now,
        };
        let since = match at(&args.since, "--since")? {
            Some(s) => s,
            None if kind == Kind::Kpi => until - Duration::days(1),
            None => Utc.timestamp_opt(0, 0).single().unwrap_or(until),
        };
        if since >= until {
            return Err(Error::Usage(format!(
                "--since {} is not before --until {}: the period is empty",
                time(tz, since),
                time(tz, until)
            )));
        }
        if args.days > MAX_DAYS {
            return Err(Error::Usage(format!(
                "--days {} is more than {MAX_DAYS} (ten years)",
                args.days
            )));
        }
        Ok(Scope {
            pipeline,
            pipeline_given: args.pipeline.is_some(),
            since,
            until,
            who,
            team,
            days: args.days,
        })
    }

    /// The values of the reports' SQL parameters.
    pub fn params(&self, config: &Config, kind: Kind) -> Params {
        let pipeline = self.pipeline;
        let every_pipeline =
            matches!(kind, Kind::Managers | Kind::TrafficLight) && !self.pipeline_given;
        let portrait = |entity: EntityKind| {
            config
                .fields
                .iter()
                .filter(|f| f.entity == entity)
                .map(|f| f.id.clone())
                .collect()
        };
        Params {
            pipeline: pipeline.id.to_string(),
            since: self.since,
            until: self.until,
            who: self.who.clone(),
            success: report::stages_with(pipeline, Semantic::Success),
            failure: report::stages_with(pipeline, Semantic::Failure),
            steps: pipeline
                .stages
                .iter()
                .filter(|s| s.semantic != Semantic::Failure)
                .map(|s| s.id.to_string())
                .collect(),
            open: report::open_stage_keys(config, (!every_pipeline).then_some(pipeline)),
            targets: pipeline
                .stages
                .iter()
                .filter_map(|s| s.target.map(|t| (s.id.to_string(), t.num_seconds())))
                .collect(),
            before: self.until - Duration::days(i64::from(self.days)),
            contact_portrait: portrait(EntityKind::Contact),
            company_portrait: portrait(EntityKind::Company),
        }
    }
}

/// A report ready to print: its JSON document, its table (for tables and CSV) and its charts.
pub struct Built {
    /// The report's title.
    pub title: String,
    /// Its JSON document (without the period and parameters).
    pub json: Value,
    /// The table's column headers.
    pub headers: Vec<&'static str>,
    /// The table's rows.
    pub rows: Vec<Vec<String>>,
    /// Its charts.
    pub charts: Vec<Chart>,
    /// Lines printed under the table (totals, notes).
    pub notes: Vec<String>,
}

fn pct(v: Option<f64>) -> String {
    v.map_or_else(|| "-".to_owned(), |v| format!("{v:.1}"))
}

fn name_of(config: &Config, id: Option<&str>) -> String {
    match id {
        None => "(nobody)".to_owned(),
        Some(id) => config
            .employee(&EmployeeId::from(id))
            .map_or_else(|| id.to_owned(), |e| e.name.clone()),
    }
}

/// Runs one report on `db`: the live database, or (`--as-of`) a scratch copy of the log up to
/// a position, with the scope's `until` at most that time.
pub fn build(
    db: &impl Source,
    config: &Config,
    kind: Kind,
    scope: &Scope<'_>,
    p: &Params,
) -> Result<Built, Error> {
    Ok(match kind {
        Kind::Funnel => funnel(scope, q::funnel(db, p)?, &q::funnel_steps(db, p)?),
        Kind::Conversion => {
            conversion(config, q::conversion(db, p)?, q::conversion_reasons(db, p)?)
        }
        Kind::Managers => managers(config, scope, q::in_work(db, p)?),
        Kind::TimeInStage => time_in_stage(scope, q::time_in_stage(db, p)?),
        Kind::TrafficLight => traffic_light(config, q::traffic_light(db, p)?),
        Kind::Forgotten => forgotten(config, scope, q::forgotten(db, p)?),
        Kind::IncomingVsLost => incoming_vs_lost(config, q::incoming_vs_lost(db, p)?),
        Kind::Kpi => kpi(config, scope, &q::kpi(db, p)?),
    })
}

/// Every stage of the pipeline in order, with the cohort that reached it; the step
/// conversion of a stage that is not a failure stage: of the cohort that reached the
/// previous such stage, the share that reached this one too.
fn funnel(scope: &Scope<'_>, rows: Vec<q::FunnelRow>, steps: &BTreeMap<String, i64>) -> Built {
    let by_stage: BTreeMap<&str, &q::FunnelRow> =
        rows.iter().map(|r| (r.stage.as_str(), r)).collect();
    let cohort = rows.first().map_or(0, |r| r.cohort);
    let mut previous: Option<i64> = None;
    let mut out = Vec::new();
    let mut table = Vec::new();
    for s in &scope.pipeline.stages {
        let r = by_stage.get(s.id.as_str());
        let (reached, current) = r.map_or((0, 0), |r| (r.reached, r.current));
        let from_previous = if s.semantic == Semantic::Failure || previous.is_none() {
            None
        } else {
            Some(steps.get(s.id.as_str()).copied().unwrap_or(0))
        };
        let step = match (from_previous, previous) {
            (Some(n), Some(prev)) => percent(n, prev),
            _ => None,
        };
        if s.semantic != Semantic::Failure {
            previous = Some(reached);
        }
        let share = percent(reached, cohort);
        table.push(vec![
            s.id.to_string(),
            s.name.clone(),
            reached.to_string(),
            current.to_string(),
            pct(share),
            pct(step),
        ]);
        out.push(json!({
            "stage": s.id.as_str(),
            "name": s.name,
            "semantic": s.semantic.as_str(),
            "reached": reached,
            "current": current,
            "cohort": cohort,
            "share_pct": share,
            "from_previous": from_previous,
            "step_pct": step,
        }));
    }
    let chart = Chart::Bars {
        title: "Funnel: leads that reached each stage".into(),
        labels: scope
            .pipeline
            .stages
            .iter()
            .map(|s| s.name.clone())
            .collect(),
        series: vec![Series {
            name: "reached".into(),
            values: out
                .iter()
                .map(|r| r["reached"].as_i64().unwrap_or(0) as f64)
                .collect(),
            color: charts::BLUE,
        }],
        unit: String::new(),
    };
    Built {
        title: "Funnel".into(),
        json: json!({ "cohort": cohort, "rows": out }),
        headers: vec![
            "STAGE",
            "NAME",
            "REACHED",
            "NOW",
            "% OF ALL",
            "% OF PREVIOUS",
        ],
        rows: table,
        charts: vec![chart],
        notes: vec![format!(
            "{cohort} created in the period; % of previous: over the previous stage that is not a failure stage"
        )],
    }
}

/// Per manager, the share won and the share lost (sent to a failure stage — junk), with the
/// reasons; the highest share lost first.
fn conversion(
    config: &Config,
    rows: Vec<q::ConversionRow>,
    reasons: Vec<q::LostReasonRow>,
) -> Built {
    let mut rows = rows;
    rows.sort_by(|a, b| {
        let share = |r: &q::ConversionRow| r.lost * 1000 / r.leads.max(1);
        share(b)
            .cmp(&share(a))
            .then_with(|| a.responsible.cmp(&b.responsible))
    });
    let mut out = Vec::new();
    let mut table = Vec::new();
    for r in &rows {
        let mine: Vec<&q::LostReasonRow> = reasons
            .iter()
            .filter(|x| x.responsible == r.responsible)
            .collect();
        let text = mine
            .iter()
            .map(|x| {
                let reason = if x.reason.is_empty() {
                    "no reason"
                } else {
                    x.reason.as_str()
                };
                format!("{}/{reason} {}", x.stage, x.lost)
            })
            .collect::<Vec<_>>()
            .join(", ");
        let (won_pct, lost_pct) = (percent(r.won, r.leads), percent(r.lost, r.leads));
        table.push(vec![
            name_of(config, r.responsible.as_deref()),
            r.leads.to_string(),
            r.won.to_string(),
            r.lost.to_string(),
            pct(won_pct),
            pct(lost_pct),
            text,
        ]);
        out.push(json!({
            "responsible": r.responsible,
            "name": name_of(config, r.responsible.as_deref()),
            "leads": r.leads,
            "won": r.won,
            "lost": r.lost,
            "open": r.leads - r.won - r.lost,
            "conversion_pct": won_pct,
            "lost_pct": lost_pct,
            "reasons": mine.iter().map(|x| json!({"stage": x.stage, "reason": x.reason, "lost": x.lost})).collect::<Vec<_>>(),
        }));
    }
    let labels: Vec<String> = rows
        .iter()
        .map(|r| name_of(config, r.responsible.as_deref()))
        .collect();
    let share = |f: fn(&q::ConversionRow) -> i64| -> Vec<f64> {
        rows.iter()
            .map(|r| percent(f(r), r.leads).unwrap_or(0.0))
            .collect()
    };
    let chart = Chart::Bars {
        title: "Conversion and junk share per manager".into(),
        labels,
        series: vec![
            Series {
                name: "converted %".into(),
                values: share(|r| r.won),
                color: charts::GREEN,
            },
            Series {
                name: "lost (junk) %".into(),
                values: share(|r| r.lost),
                color: charts::RED,
            },
        ],
        unit: "%".into(),
    };
    let reasons_json: Vec<Value> = reasons
        .iter()
        .map(|x| json!({"responsible": x.responsible, "stage": x.stage, "reason": x.reason, "lost": x.lost}))
        .collect();
    Built {
        title: "Conversion per manager".into(),
        json: json!({ "rows": out, "reasons": reasons_json }),
        headers: vec![
            "MANAGER", "LEADS", "WON", "LOST", "WON %", "JUNK %", "REASONS",
        ],
        rows: table,
        charts: vec![chart],
        notes: vec![
            "of the leads created in the period; JUNK %: the share now in a failure stage".into(),
        ],
    }
}

/// Leads and deals in work per employee and team, against the team's plan.
fn managers(config: &Config, scope: &Scope<'_>, in_work: BTreeMap<String, i64>) -> Built {
    let wanted = |e: &str| scope.who.as_ref().is_none_or(|w| w.iter().any(|x| x == e));
    let mut teams = Vec::new();
    let mut table = Vec::new();
    let mut labels = Vec::new();
    let (mut have, mut plan) = (Vec::new(), Vec::new());
    for t in config.teams.values() {
        if scope.team.as_ref().is_some_and(|only| only != &t.id) {
            continue;
        }
        let members: Vec<_> = config
            .employees
            .values()
            .filter(|e| e.team.as_ref() == Some(&t.id) && wanted(e.id.as_str()))
            .collect();
        if members.is_empty() {
            continue;
        }
        let mut total = 0;
        let mut rows = Vec::new();
        for e in &members {
            let n = in_work.get(e.id.as_str()).copied().unwrap_or(0);
            total += n;
            table.push(vec![
                t.id.to_string(),
                e.name.clone(),
                n.to_string(),
                String::new(),
                String::new(),
            ]);
            rows.push(json!({"employee": e.id.as_str(), "name": e.name, "in_work": n}));
        }
        let of_plan = t.plan.and_then(|p| percent(total, p));
        table.push(vec![
            t.id.to_string(),
            format!("= {}", t.name),
            total.to_string(),
            t.plan.map_or_else(|| "-".into(), |p| p.to_string()),
            pct(of_plan),
        ]);
        labels.push(t.name.clone());
        have.push(total as f64);
        plan.push(t.plan.unwrap_or(0) as f64);
        teams.push(json!({
            "team": t.id.as_str(),
            "name": t.name,
            "plan": t.plan,
            "in_work": total,
            "plan_pct": of_plan,
            "members": rows,
        }));
    }
    let employees: Vec<Value> = in_work
        .iter()
        .map(|(e, n)| json!({"responsible": e, "in_work": n}))
        .collect();
    Built {
        title: "Leads and deals in work against the plan".into(),
        json: json!({ "teams": teams, "employees": employees }),
        headers: vec!["TEAM", "EMPLOYEE", "IN WORK", "PLAN", "% OF PLAN"],
        rows: table,
        charts: vec![Chart::Bars {
            title: "In work against the plan, per team".into(),
            labels,
            series: vec![
                Series {
                    name: "in work".into(),
                    values: have,
                    color: charts::BLUE,
                },
                Series {
                    name: "plan".into(),
                    values: plan,
                    color: charts::GREY,
                },
            ],
            unit: String::new(),
        }],
        notes: vec!["in work: in an in-progress stage now".into()],
    }
}

/// Every stage with a stay in the period, in pipeline order, against its target.
fn time_in_stage(scope: &Scope<'_>, rows: Vec<q::StageTimeRow>) -> Built {
    let mut out = Vec::new();
    let mut table = Vec::new();
    let (mut labels, mut avg, mut target) = (Vec::new(), Vec::new(), Vec::new());
    for s in &scope.pipeline.stages {
        let Some(r) = rows.iter().find(|r| r.stage == s.id.as_str()) else {
            continue;
        };
        let target_s = s.target.map(|t| t.num_seconds());
        let over_pct = r.over_target.and_then(|o| percent(o, r.visits));
        table.push(vec![
            s.id.to_string(),
            r.visits.to_string(),
            r.open.to_string(),
            human_duration(Duration::seconds(r.avg_seconds)),
            s.target.map_or_else(|| "-".into(), human_duration),
            r.over_target.map_or_else(|| "-".into(), |o| o.to_string()),
            pct(over_pct),
        ]);
        if s.semantic == Semantic::InProgress {
            labels.push(s.name.clone());
            avg.push(r.avg_seconds as f64 / 3600.0);
            target.push(target_s.map_or(0.0, |t| t as f64 / 3600.0));
        }
        out.push(json!({
            "stage": s.id.as_str(),
            "name": s.name,
            "visits": r.visits,
            "open": r.open,
            "avg_seconds": r.avg_seconds,
            "target_seconds": target_s,
            "over_target": r.over_target,
            "over_target_pct": over_pct,
        }));
    }
    Built {
        title: "Time in stage".into(),
        json: json!({ "rows": out }),
        headers: vec![
            "STAGE", "STAYS", "ONGOING", "AVERAGE", "TARGET", "OVER", "OVER %",
        ],
        rows: table,
        charts: vec![Chart::Bars {
            title: "Average time in stage against its target (hours)".into(),
            labels,
            series: vec![
                Series {
                    name: "average".into(),
                    values: avg,
                    color: charts::BLUE,
                },
                Series {
                    name: "target".into(),
                    values: target,
                    color: charts::GREY,
                },
            ],
            unit: "h".into(),
        }],
        notes: vec!["stays that began in the period; an ongoing stay counts up to --until".into()],
    }
}

/// Clients with their light and reasons; managers with their clients' lights.
fn traffic_light(config: &Config, rows: Vec<q::ClientRow>) -> Built {
    let mut clients = Vec::new();
    let mut table = Vec::new();
    let mut cells = Vec::new();
    let mut by_manager: BTreeMap<Option<String>, Vec<Light>> = BTreeMap::new();
    for r in &rows {
        let (light, reasons) = report::client_light(&ClientFacts {
            active: r.active,
            overdue: r.overdue,
            portrait: r.portrait,
            contacts: r.contacts,
        });
        by_manager
            .entry(r.responsible.clone())
            .or_default()
            .push(light);
        let why: Vec<&str> = reasons.iter().map(|x| x.text()).collect();
        table.push(vec![
            format!("{}-{}", r.kind, r.id),
            r.name.clone().unwrap_or_default(),
            name_of(config, r.responsible.as_deref()),
            light.as_str().to_owned(),
            why.join(", "),
        ]);
        cells.push((format!("{} {}", r.kind, r.id), light, why.join(", ")));
        clients.push(json!({
            "kind": r.kind,
            "id": r.id,
            "name": r.name,
            "responsible": r.responsible,
            "active": r.active,
            "overdue": r.overdue,
            "portrait": r.portrait,
            "contacts": r.contacts,
            "light": light,
            "reasons": reasons,
        }));
    }
    let mut managers = Vec::new();
    let mut notes = Vec::new();
    let mut manager_cells = Vec::new();
    for (who, lights) in &by_manager {
        let count = |l: Light| lights.iter().filter(|x| **x == l).count();
        let light = report::manager_light(lights.iter().copied());
        let name = name_of(config, who.as_deref());
        notes.push(format!(
            "{name}: {} (red {}, yellow {}, green {})",
            light.as_str(),
            count(Light::Red),
            count(Light::Yellow),
            count(Light::Green)
        ));
        manager_cells.push((
            name.clone(),
            light,
            format!(
                "red {}, yellow {}, green {}",
                count(Light::Red),
                count(Light::Yellow),
                count(Light::Green)
            ),
        ));
        managers.push(json!({
            "responsible": who,
            "name": name,
            "light": light,
            "red": count(Light::Red),
            "yellow": count(Light::Yellow),
            "green": count(Light::Green),
        }));
    }
    Built {
        title: "Traffic light".into(),
        json: json!({ "clients": clients, "managers": managers }),
        headers: vec!["CLIENT", "NAME", "MANAGER", "LIGHT", "REASONS"],
        rows: table,
        charts: vec![
            Chart::Grid {
                title: "Managers (the worst light of their clients)".into(),
                cells: manager_cells,
            },
            Chart::Grid {
                title: "Clients".into(),
                cells,
            },
        ],
        notes,
    }
}

/// Leads in work whose last activity is older than `--days`.
fn forgotten(config: &Config, scope: &Scope<'_>, rows: Vec<q::ForgottenRow>) -> Built {
    let tz = config.calendar.timezone;
    let mut out = Vec::new();
    let mut table = Vec::new();
    for r in &rows {
        let idle = (scope.until - r.last_activity).num_days();
        table.push(vec![
            format!("{}-{}", r.kind, r.id),
            r.title.clone().unwrap_or_default(),
            name_of(config, r.responsible.as_deref()),
            r.stage.clone(),
            time(tz, r.last_activity),
            idle.to_string(),
        ]);
        out.push(json!({
            "kind": r.kind,
            "id": r.id,
            "title": r.title,
            "responsible": r.responsible,
            "stage": r.stage,
            "last_activity": fmt_time(r.last_activity),
            "idle_days": idle,
        }));
    }
    Built {
        title: format!("Forgotten: in work, no activity for {} days", scope.days),
        json: json!({ "days": scope.days, "rows": out }),
        headers: vec!["ID", "TITLE", "MANAGER", "STAGE", "LAST ACTIVITY", "DAYS"],
        rows: table,
        charts: Vec::new(),
        notes: vec![format!("{} forgotten", rows.len())],
    }
}

/// Per manager, what came in and what was lost in the period.
fn incoming_vs_lost(config: &Config, rows: Vec<q::IncomingLostRow>) -> Built {
    let (incoming, lost): (i64, i64) = rows
        .iter()
        .fold((0, 0), |(i, l), r| (i + r.incoming, l + r.lost));
    let mut table: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            vec![
                name_of(config, r.responsible.as_deref()),
                r.incoming.to_string(),
                r.lost.to_string(),
                pct(percent(r.lost, r.incoming)),
            ]
        })
        .collect();
    table.push(vec![
        "total".into(),
        incoming.to_string(),
        lost.to_string(),
        pct(percent(lost, incoming)),
    ]);
    let out: Vec<Value> = rows
        .iter()
        .map(|r| {
            json!({
                "responsible": r.responsible,
                "name": name_of(config, r.responsible.as_deref()),
                "incoming": r.incoming,
                "lost": r.lost,
                "lost_pct": percent(r.lost, r.incoming),
            })
        })
        .collect();
    Built {
        title: "Incoming against lost".into(),
        json: json!({
            "rows": out,
            "total": {"incoming": incoming, "lost": lost, "lost_pct": percent(lost, incoming)},
        }),
        headers: vec!["MANAGER", "INCOMING", "LOST", "LOST %"],
        rows: table,
        charts: vec![Chart::Bars {
            title: "Incoming and lost per manager".into(),
            labels: rows
                .iter()
                .map(|r| name_of(config, r.responsible.as_deref()))
                .collect(),
            series: vec![
                Series {
                    name: "incoming".into(),
                    values: rows.iter().map(|r| r.incoming as f64).collect(),
                    color: charts::BLUE,
                },
                Series {
                    name: "lost".into(),
                    values: rows.iter().map(|r| r.lost as f64).collect(),
                    color: charts::RED,
                },
            ],
            unit: String::new(),
        }],
        notes: vec!["lost: entered a failure stage in the period".into()],
    }
}

/// The KPI rows of the active employees (of `--team` / `--employee`), as `send_report` makes
/// them.
fn kpi(
    config: &Config,
    scope: &Scope<'_>,
    counts: &leadflow_engine::workspace::KpiCounts,
) -> Built {
    let employees: Vec<EmployeeId> = config
        .employees
        .values()
        .filter(|e| e.active)
        .filter(|e| {
            scope
                .who
                .as_ref()
                .is_none_or(|w| w.iter().any(|x| x == e.id.as_str()))
        })
        .map(|e| e.id.clone())
        .collect();
    let rows = report::kpi_rows(counts, &employees);
    let mut total = [0i64; 4];
    let mut table = Vec::new();
    for r in &rows {
        let v = [r.leads_in, r.converted, r.lost, r.overdue];
        for (t, x) in total.iter_mut().zip(v) {
            *t += x;
        }
        let mut line = vec![name_of(config, Some(r.employee.as_str()))];
        line.extend(v.iter().map(ToString::to_string));
        table.push(line);
    }
    let mut line = vec!["total".to_owned()];
    line.extend(total.iter().map(ToString::to_string));
    table.push(line);
    let out: Vec<Value> = rows
        .iter()
        .map(|r| {
            json!({
                "employee": r.employee.as_str(),
                "name": name_of(config, Some(r.employee.as_str())),
                "leads_in": r.leads_in,
                "converted": r.converted,
                "lost": r.lost,
                "overdue": r.overdue,
            })
        })
        .collect();
    Built {
        title: "KPI".into(),
        json: json!({ "rows": out }),
        headers: vec!["EMPLOYEE", "LEADS IN", "CONVERTED", "LOST", "OVERDUE"],
        rows: table,
        charts: vec![Chart::Bars {
            title: "KPI per employee".into(),
            labels: rows
                .iter()
                .map(|r| name_of(config, Some(r.employee.as_str())))
                .collect(),
            series: vec![
                Series {
                    name: "leads in".into(),
                    values: rows.iter().map(|r| r.leads_in as f64).collect(),
                    color: charts::BLUE,
                },
                Series {
                    name: "converted".into(),
                    values: rows.iter().map(|r| r.converted as f64).collect(),
                    color: charts::GREEN,
                },
                Series {
                    name: "lost".into(),
                    values: rows.iter().map(|r| r.lost as f64).collect(),
                    color: charts::RED,
                },
            ],
            unit: String::new(),
        }],
        notes: vec!["the period (since, until]; overdue: open tasks past due at until".into()],
    }
}
