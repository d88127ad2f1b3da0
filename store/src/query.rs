//! Read queries over the projection tables, for the CLI and reports.

use crate::error::Error;
use crate::log::parse_time;
use crate::project::{
    COMPANY_COLUMNS, CONTACT_COLUMNS, DEAL_COLUMNS, LEAD_COLUMNS, TASK_COLUMNS, company_row,
    contact_row, deal_row, lead_row, task_row,
};
use chrono::{DateTime, Utc};
use leadflow_engine::StreamId;
use leadflow_engine::model::{Company, Contact, Deal, Lead, Task};
use rusqlite::{Connection, params_from_iter, types::Value as Sql};

/// Filters for listing leads or deals.
#[derive(Debug, Clone, Default)]
pub struct ListFilter {
    /// Only this pipeline.
    pub pipeline: Option<String>,
    /// Only this stage.
    pub stage: Option<String>,
    /// Only this responsible employee.
    pub responsible: Option<String>,
    /// At most this many rows (newest first).
    pub limit: usize,
}

fn where_clause(f: &ListFilter, responsible_col: &str) -> (String, Vec<Sql>) {
    let mut conds = Vec::new();
    let mut args: Vec<Sql> = Vec::new();
    if let Some(p) = &f.pipeline {
        args.push(p.clone().into());
        conds.push(format!("pipeline = ?{}", args.len()));
    }
    if let Some(s) = &f.stage {
        args.push(s.clone().into());
        conds.push(format!("stage = ?{}", args.len()));
    }
    if let Some(r) = &f.responsible {
        args.push(r.clone().into());
        conds.push(format!("{responsible_col} = ?{}", args.len()));
    }
    let w = if conds.is_empty() {
        String::new()
    } else {
        format!(" WHERE {}", conds.join(" AND "))
    };
    (w, args)
}

fn limit(n: usize) -> i64 {
    if n == 0 {
        -1
    } else {
        n.min(i64::MAX as usize) as i64
    }
}

/// Leads matching `f`, newest first.
pub fn leads(conn: &Connection, f: &ListFilter) -> Result<Vec<Lead>, Error> {
    let (w, args) = where_clause(f, "responsible");
    let sql = format!(
        "SELECT {LEAD_COLUMNS} FROM leads{w} ORDER BY id DESC LIMIT {}",
        limit(f.limit)
    );
    let mut stmt = conn.prepare(&sql)?;
    let rows = stmt.query_map(params_from_iter(args), lead_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Deals matching `f`, newest first.
pub fn deals(conn: &Connection, f: &ListFilter) -> Result<Vec<Deal>, Error> {
    let (w, args) = where_clause(f, "responsible");
    let sql = format!(
        "SELECT {DEAL_COLUMNS} FROM deals{w} ORDER BY id DESC LIMIT {}",
        limit(f.limit)
    );
    let mut stmt = conn.prepare(&sql)?;
    let rows = stmt.query_map(params_from_iter(args), deal_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Contacts, newest first.
pub fn contacts(conn: &Connection, n: usize) -> Result<Vec<Contact>, Error> {
    let mut stmt = conn.prepare(&format!(
        "SELECT {CONTACT_COLUMNS} FROM contacts ORDER BY id DESC LIMIT {}",
        limit(n)
    ))?;
    let rows = stmt.query_map([], contact_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Companies, newest first.
pub fn companies(conn: &Connection, n: usize) -> Result<Vec<Company>, Error> {
    let mut stmt = conn.prepare(&format!(
        "SELECT {COMPANY_COLUMNS} FROM companies ORDER BY id DESC LIMIT {}",
        limit(n)
    ))?;
    let rows = stmt.query_map([], company_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Filters for listing tasks.
#[derive(Debug, Clone, Default)]
pub struct TaskFilter {
    /// Only this assignee.
    pub assignee: Option<String>,
    /// Only tasks not yet done.
    pub open: bool,
    /// Only open tasks due before this time.
    pub overdue_at: Option<DateTime<Utc>>,
    /// At most this many rows.
    pub limit: usize,
}

/// Tasks matching `f`, by due time.
pub fn tasks(conn: &Connection, f: &TaskFilter) -> Result<Vec<Task>, Error> {
    let mut conds = Vec::new();
    let mut args: Vec<Sql> = Vec::new();
    if let Some(a) = &f.assignee {
        args.push(a.clone().into());
        conds.push(format!("assignee = ?{}", args.len()));
    }
    if f.open || f.overdue_at.is_some() {
        conds.push("completed_at IS NULL".to_owned());
    }
    if let Some(t) = f.overdue_at {
        args.push(crate::log::fmt_time(t).into());
        conds.push(format!("due_at < ?{}", args.len()));
    }
    let w = if conds.is_empty() {
        String::new()
    } else {
        format!(" WHERE {}", conds.join(" AND "))
    };
    let sql = format!(
        "SELECT {TASK_COLUMNS} FROM tasks{w} ORDER BY due_at, id LIMIT {}",
        limit(f.limit)
    );
    let mut stmt = conn.prepare(&sql)?;
    let rows = stmt.query_map(params_from_iter(args), task_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// A period a lead or deal spent in a stage.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Visit {
    /// The pipeline.
    pub pipeline: String,
    /// The stage.
    pub stage: String,
    /// When it was entered.
    pub entered_at: DateTime<Utc>,
    /// When it was left; `None` while it is the current stage.
    pub left_at: Option<DateTime<Utc>>,
}

/// The stage history of a lead or deal, oldest first.
pub fn stage_history(conn: &Connection, stream: StreamId) -> Result<Vec<Visit>, Error> {
    let mut stmt = conn.prepare_cached(
        "SELECT pipeline, stage, entered_at, left_at FROM stage_history WHERE kind = ?1 AND entity_id = ?2 ORDER BY position",
    )?;
    let rows = stmt.query_map(rusqlite::params![stream.kind.as_str(), stream.id], |r| {
        let entered: String = r.get(2)?;
        let left: Option<String> = r.get(3)?;
        Ok(Visit {
            pipeline: r.get(0)?,
            stage: r.get(1)?,
            entered_at: parse_time(&entered).unwrap_or_default(),
            left_at: left.and_then(|l| parse_time(&l)),
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// How many leads or deals stand in each stage: `(pipeline, stage, count)`.
pub fn stage_counts(conn: &Connection, table: &str) -> Result<Vec<(String, String, i64)>, Error> {
    let table = if table == "deals" { "deals" } else { "leads" };
    let mut stmt = conn.prepare(&format!(
        "SELECT pipeline, stage, count(*) FROM {table} GROUP BY pipeline, stage"
    ))?;
    let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// The chain hash at a position, if the log reaches it.
pub fn hash_at(conn: &Connection, position: i64) -> Result<Option<Vec<u8>>, Error> {
    use rusqlite::OptionalExtension;
    Ok(conn
        .query_row(
            "SELECT hash FROM events WHERE position = ?1",
            [position],
            |r| r.get(0),
        )
        .optional()?)
}

/// One stage of a funnel.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct FunnelStage {
    /// The pipeline.
    pub pipeline: String,
    /// The stage.
    pub stage: String,
    /// Leads or deals that ever entered the stage.
    pub reached: i64,
    /// Leads or deals in the stage now.
    pub current: i64,
}

/// For every stage that leads (`kind` = lead) or deals ever entered: how many entered it and
/// how many are in it now, from the stage history.
pub fn funnel(
    conn: &Connection,
    kind: leadflow_engine::EntityKind,
) -> Result<Vec<FunnelStage>, Error> {
    let mut stmt = conn.prepare(
        "SELECT pipeline, stage, count(DISTINCT entity_id), count(*) FILTER (WHERE left_at IS NULL) \
         FROM stage_history WHERE kind = ?1 GROUP BY pipeline, stage ORDER BY pipeline, min(position)",
    )?;
    let rows = stmt.query_map([kind.as_str()], |r| {
        Ok(FunnelStage {
            pipeline: r.get(0)?,
            stage: r.get(1)?,
            reached: r.get(2)?,
            current: r.get(3)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Total amount of deals in success stages named `stage`: `(count, sum of minor units)`.
pub fn deal_totals(conn: &Connection, stage: &str) -> Result<(i64, i64), Error> {
    Ok(conn.query_row(
        "SELECT count(*), coalesce(sum(amount), 0) FROM deals WHERE stage = ?1",
        [stage],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?)
}

/// A notification in an employee's in-app inbox.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Notification {
    /// The position of the `notification.queued` event.
    pub position: i64,
    /// When it was queued.
    pub at: DateTime<Utc>,
    /// Who it is for.
    pub employee: String,
    /// `normal` or `high`.
    pub priority: String,
    /// The message.
    pub text: String,
    /// The rule that sent it.
    pub rule: Option<String>,
    /// The stream it is about, e.g. `lead-42`.
    pub stream: String,
}

/// An employee's inbox, newest first; at most `n` notifications (0: all).
pub fn inbox(conn: &Connection, employee: &str, n: usize) -> Result<Vec<Notification>, Error> {
    let mut stmt = conn.prepare(&format!(
        "SELECT position, at, employee, priority, text, rule, stream FROM inbox \
         WHERE employee = ?1 ORDER BY position DESC LIMIT {}",
        limit(n)
    ))?;
    let rows = stmt.query_map([employee], |r| {
        let at: String = r.get(1)?;
        Ok(Notification {
            position: r.get(0)?,
            at: parse_time(&at).unwrap_or_default(),
            employee: r.get(2)?,
            priority: r.get(3)?,
            text: r.get(4)?,
            rule: r.get(5)?,
            stream: r.get(6)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Which journal a [`JournalEntry`] comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum JournalRecord {
    /// The incident journal (`incident.recorded`).
    Incident,
    /// The escalation journal (`escalation.recorded`).
    Escalation,
}

impl JournalRecord {
    /// `incident` or `escalation`.
    pub fn as_str(self) -> &'static str {
        match self {
            JournalRecord::Incident => "incident",
            JournalRecord::Escalation => "escalation",
        }
    }
}

/// Filters for [`journal`].
#[derive(Debug, Clone, Default)]
pub struct JournalFilter {
    /// Only these employees (`None`: everyone; an empty list matches nothing).
    pub employees: Option<Vec<String>>,
    /// Only this kind.
    pub kind: Option<String>,
    /// Only records made by this rule.
    pub rule: Option<String>,
    /// Only records made at or after this time.
    pub since: Option<DateTime<Utc>>,
    /// Only records made before this time.
    pub until: Option<DateTime<Utc>>,
    /// Include incidents.
    pub incidents: bool,
    /// Include escalations.
    pub escalations: bool,
}

/// One row of the incident or escalation journal.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct JournalEntry {
    /// Incident or escalation.
    pub record: JournalRecord,
    /// The position of the event that recorded it.
    pub position: i64,
    /// When it was recorded.
    pub at: DateTime<Utc>,
    /// The employee concerned (an incident may have none).
    pub employee: Option<String>,
    /// The kind, e.g. `missed_deadline`.
    pub kind: String,
    /// The rule that recorded it (runtime incidents may have none).
    pub rule: Option<String>,
    /// The stream it is about.
    pub stream: String,
    /// The manager notified (escalations).
    pub manager: Option<String>,
    /// How many incidents led to it (escalations).
    pub count: Option<i64>,
    /// The window they were counted in (escalations).
    pub window: Option<String>,
    /// The details (incidents).
    pub text: Option<String>,
}

/// Incidents and escalations matching `f`, in log order.
pub fn journal(conn: &Connection, f: &JournalFilter) -> Result<Vec<JournalEntry>, Error> {
    if f.employees.as_ref().is_some_and(Vec::is_empty) {
        return Ok(Vec::new());
    }
    let mut conds = Vec::new();
    let mut args: Vec<Sql> = Vec::new();
    if let Some(list) = &f.employees {
        let mut marks = Vec::new();
        for e in list {
            args.push(e.clone().into());
            marks.push(format!("?{}", args.len()));
        }
        conds.push(format!("employee IN ({})", marks.join(", ")));
    }
    if let Some(k) = &f.kind {
        args.push(k.clone().into());
        conds.push(format!("kind = ?{}", args.len()));
    }
    if let Some(r) = &f.rule {
        args.push(r.clone().into());
        conds.push(format!("rule = ?{}", args.len()));
    }
    if let Some(t) = f.since {
        args.push(crate::log::fmt_time(t).into());
        conds.push(format!("at >= ?{}", args.len()));
    }
    if let Some(t) = f.until {
        args.push(crate::log::fmt_time(t).into());
        conds.push(format!("at < ?{}", args.len()));
    }
    let w = if conds.is_empty() {
        String::new()
    } else {
        format!(" WHERE {}", conds.join(" AND "))
    };
    let mut parts = Vec::new();
    if f.incidents {
        parts.push(format!(
            "SELECT 'incident', position, at, employee, kind, rule, stream, NULL, NULL, NULL, text \
             FROM incidents{w}"
        ));
    }
    if f.escalations {
        parts.push(format!(
            "SELECT 'escalation', position, at, employee, kind, rule, stream, manager, count, window, NULL \
             FROM escalations{w}"
        ));
    }
    if parts.is_empty() {
        return Ok(Vec::new());
    }
    let sql = format!("{} ORDER BY 2", parts.join(" UNION ALL "));
    let mut stmt = conn.prepare(&sql)?;
    let rows = stmt.query_map(params_from_iter(args), |r| {
        let record: String = r.get(0)?;
        let at: String = r.get(2)?;
        Ok(JournalEntry {
            record: if record == "incident" {
                JournalRecord::Incident
            } else {
                JournalRecord::Escalation
            },
            position: r.get(1)?,
            at: parse_time(&at).unwrap_or_default(),
            employee: r.get(3)?,
            kind: r.get(4)?,
            rule: r.get(5)?,
            stream: r.get(6)?,
            manager: r.get(7)?,
            count: r.get(8)?,
            window: r.get(9)?,
            text: r.get(10)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}
