//! `inbox` and `journal`: what the robots told employees, and the incident and escalation
//! journal auditors query (stable columns, RFC 3339 times, table, CSV or JSON Lines).

use crate::cli::{InboxArgs, JournalArgs, JournalFormat};
use crate::ctx::{Ctx, parse_time};
use crate::error::CliError;
use crate::output::{Table, clip, json_line, time};
use chrono::SecondsFormat;
use leadflow_engine::Config;
use leadflow_engine::ids::EmployeeId;
use leadflow_store::fmt_time;
use leadflow_store::query::{self, JournalFilter};
use serde::Serialize;
use serde_json::json;

/// Refuses an employee id the configuration does not list.
fn known_employee(config: &Config, id: &str, flag: &str) -> Result<(), CliError> {
    if config.employee(&EmployeeId::from(id)).is_some() {
        return Ok(());
    }
    let known: Vec<&str> = config.employees.keys().map(|e| e.as_str()).collect();
    Err(CliError::Unknown(format!(
        "unknown employee '{id}'{flag}; the configuration lists: {}",
        known.join(", ")
    )))
}

/// `inbox EMPLOYEE`: the employee's notifications, newest first.
pub fn inbox(ctx: &Ctx, args: InboxArgs) -> Result<(), CliError> {
    known_employee(&ctx.config, &args.employee, "")?;
    let rows = query::inbox(ctx.store.connection(), &args.employee, args.limit)?;
    if ctx.json {
        for n in &rows {
            json_line(&json!({
                "position": n.position,
                "at": fmt_time(n.at),
                "employee": n.employee,
                "priority": n.priority,
                "stream": n.stream,
                "rule": n.rule,
                "text": n.text,
            }));
        }
        return Ok(());
    }
    if rows.is_empty() {
        outln!("{}'s inbox is empty", args.employee);
        return Ok(());
    }
    let mut t = Table::new(&["!", "AT", "STREAM", "TEXT"]);
    for n in &rows {
        t.row(vec![
            if n.priority == "high" { "!" } else { "" }.to_owned(),
            time(ctx.config.calendar.timezone, n.at),
            n.stream.clone(),
            clip(&n.text, 80),
        ]);
    }
    t.print();
    Ok(())
}

/// One journal row as `journal` prints it; the field order is the column order.
#[derive(Serialize)]
struct Row {
    record: &'static str,
    position: i64,
    at: String,
    #[serde(skip)]
    at_local: String,
    employee: Option<String>,
    team: Option<String>,
    kind: String,
    rule: Option<String>,
    stream: String,
    manager: Option<String>,
    count: Option<i64>,
    window: Option<String>,
    text: Option<String>,
}

const COLUMNS: [&str; 12] = [
    "record", "position", "at", "employee", "team", "kind", "rule", "stream", "manager", "count",
    "window", "text",
];

impl Row {
    fn cells(&self) -> [String; 12] {
        let o = |v: &Option<String>| v.clone().unwrap_or_default();
        [
            self.record.to_owned(),
            self.position.to_string(),
            self.at.clone(),
            o(&self.employee),
            o(&self.team),
            self.kind.clone(),
            o(&self.rule),
            self.stream.clone(),
            o(&self.manager),
            self.count.map(|c| c.to_string()).unwrap_or_default(),
            o(&self.window),
            o(&self.text),
        ]
    }
}

/// `journal`: incidents and escalations, filtered, as a table, CSV or JSON Lines.
pub fn journal(ctx: &Ctx, args: JournalArgs) -> Result<(), CliError> {
    let config = &ctx.config;
    if let Some(e) = &args.employee {
        known_employee(config, e, " in --employee")?;
    }
    let mut employees: Option<Vec<String>> = args.employee.clone().map(|e| vec![e]);
    if let Some(team) = &args.team {
        if !config.teams.keys().any(|t| t.as_str() == team) {
            let known: Vec<&str> = config.teams.keys().map(|t| t.as_str()).collect();
            return Err(CliError::Unknown(format!(
                "unknown team '{team}' in --team; the configuration lists: {}",
                known.join(", ")
            )));
        }
        // Inactive employees included: the journal is history.
        let members: Vec<String> = config
            .employees
            .values()
            .filter(|e| e.team.as_ref().is_some_and(|t| t.as_str() == team))
            .map(|e| e.id.to_string())
            .collect();
        employees = Some(match employees {
            Some(one) => one.into_iter().filter(|e| members.contains(e)).collect(),
            None => members,
        });
    }
    let time_arg = |t: &Option<String>, flag: &str| {
        t.as_deref()
            .map(|t| parse_time(t, None).map_err(|e| CliError::Usage(format!("{flag}: {e}"))))
            .transpose()
    };
    let both = !args.incidents && !args.escalations;
    let filter = JournalFilter {
        employees,
        kind: args.kind.clone(),
        rule: args.rule.clone(),
        since: time_arg(&args.since, "--since")?,
        until: time_arg(&args.until, "--until")?,
        incidents: both || args.incidents,
        escalations: both || args.escalations,
    };
    let format = args.format.unwrap_or(if ctx.json {
        JournalFormat::Json
    } else {
        JournalFormat::Table
    });
    let entries = query::journal(ctx.store.connection(), &filter)?;
    let team_of = |e: &Option<String>| {
        e.as_ref()
            .and_then(|e| config.employee(&EmployeeId::from(e.as_str())))
            .and_then(|e| e.team.as_ref())
            .map(ToString::to_string)
    };
    let rows = entries.into_iter().map(|e| Row {
        record: e.record.as_str(),
        position: e.position,
        at: e.at.to_rfc3339_opts(SecondsFormat::Micros, true),
        at_local: time(config.calendar.timezone, e.at),
        team: team_of(&e.employee),
        employee: e.employee,
        kind: e.kind,
        rule: e.rule,
        stream: e.stream,
        manager: e.manager,
        count: e.count,
        window: e.window,
        text: e.text,
    });
    match format {
        JournalFormat::Json => rows.for_each(|r| json_line(&r)),
        JournalFormat::Csv => {
            let mut w = csv::Writer::from_writer(std::io::stdout().lock());
            let csv_err = |e: csv::Error| match e.kind() {
                csv::ErrorKind::Io(io) => crate::output::stdout_failed(io),
                _ => CliError::Usage(format!("writing CSV: {e}")),
            };
            w.write_record(COLUMNS).map_err(csv_err)?;
            for r in rows {
                w.write_record(r.cells()).map_err(csv_err)?;
            }
            if let Err(e) = w.flush() {
                crate::output::stdout_failed(&e);
            }
        }
        JournalFormat::Table => {
            let mut t = Table::new(&COLUMNS.map(|c| match c {
                "record" => "RECORD",
                "position" => "POS",
                "at" => "AT",
                "employee" => "EMPLOYEE",
                "team" => "TEAM",
                "kind" => "KIND",
                "rule" => "RULE",
                "stream" => "STREAM",
                "manager" => "MANAGER",
                "count" => "COUNT",
                "window" => "WINDOW",
                _ => "TEXT",
            }));
            let mut n = 0;
            for r in rows {
                let mut cells = r.cells().map(|c| if c.is_empty() { "-".into() } else { c });
                cells[2] = r.at_local.clone();
                cells[11] = clip(&cells[11], 60);
                t.row(cells.to_vec());
                n += 1;
            }
            if n == 0 {
                outln!("the journal has no matching records");
            } else {
                t.print();
            }
        }
    }
    Ok(())
}
