//! `inbox`, `timers` and `journal`: what the robots told employees (read or not), what is
//! still to fire, and the incident and escalation journal auditors query (stable columns,
//! RFC 3339 times in CSV and JSON Lines, the calendar's zone in tables).

use crate::cli::{InboxArgs, JournalArgs, JournalFormat, TimersArgs};
use crate::ctx::{Ctx, parse_time};
use crate::error::CliError;
use crate::output::{Table, clip, json_line, time};
use chrono::SecondsFormat;
use leadflow_engine::Config;
use leadflow_engine::Event;
use leadflow_engine::event::NotificationRead;
use leadflow_engine::ids::EmployeeId;
use leadflow_robots::runtime::SYSTEM_STREAM;
use leadflow_store::fmt_time;
use leadflow_store::query::{self, InboxFilter, JournalFilter, TimerFilter};
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

/// `inbox EMPLOYEE`: the employee's notifications, newest first, read or unread; with
/// `--mark-read N…` or `--mark-all-read` first records `notification.read` for each.
pub(crate) fn inbox(ctx: &mut Ctx, args: InboxArgs) -> Result<(), CliError> {
    known_employee(&ctx.config, &args.employee, "")?;
    if !args.mark_read.is_empty() || args.mark_all_read {
        mark_read(ctx, &args)?;
    }
    let filter = InboxFilter {
        unread: args.unread,
        read: args.read,
        limit: args.limit,
        ..InboxFilter::default()
    };
    let rows = query::inbox(&ctx.store, Some(&args.employee), &filter)?;
    let tz = ctx.config.calendar.timezone;
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
                "read": n.read_at.is_some(),
                "read_at": n.read_at.map(fmt_time),
            }));
        }
        return Ok(());
    }
    if rows.is_empty() {
        let what = if args.unread {
            "has no unread notifications"
        } else if args.read {
            "has no read notifications"
        } else {
            "is empty"
        };
        outln!("{}'s inbox {what}", args.employee);
        return Ok(());
    }
    let mut t = Table::new(&["#", "!", "READ", "AT", "STREAM", "TEXT"]);
    for n in &rows {
        t.row(vec![
            n.position.to_string(),
            if n.priority == "high" { "!" } else { "" }.to_owned(),
            if n.read_at.is_some() { "read" } else { "new" }.to_owned(),
            time(tz, n.at),
            n.stream.clone(),
            clip(&n.text, 80),
        ]);
    }
    t.print();
    Ok(())
}

/// Records `notification.read` for the named (or every unread) notification of the employee,
/// in the `system` stream (a read receipt is not a change of the lead: it must not bump the
/// lead's version or fill its history; the projection finds the notification by its
/// position); refuses numbers that are not the employee's unread
/// notifications, appending nothing. Like every write, refuses a `--now` before the log's
/// last event unless `--backdate` was given. Which notifications are unread is decided inside
/// the write transaction, so concurrent markers record each notification read once.
fn mark_read(ctx: &mut Ctx, args: &InboxArgs) -> Result<(), CliError> {
    ctx.check_backdate()?;
    let employee = args.employee.as_str();
    let rules = crate::automation::before_command(ctx)?;
    let meta = ctx.meta();
    let filter = if args.mark_all_read {
        InboxFilter {
            unread: true,
            ..InboxFilter::default()
        }
    } else {
        let mut wanted = args.mark_read.clone();
        wanted.sort_unstable();
        wanted.dedup();
        InboxFilter {
            positions: Some(wanted),
            ..InboxFilter::default()
        }
    };
    let (count, last) = ctx.store.write_with(ctx.recorded_at(), |tx| {
        let targets = tx.inbox(employee, &filter)?;
        for p in filter.positions.iter().flatten() {
            match targets.iter().find(|n| n.position == *p) {
                None => {
                    return Err(CliError::Unknown(format!(
                        "{employee} has no notification {p}; `leadflow inbox {employee}` lists them in the # column"
                    )));
                }
                Some(n) if n.read_at.is_some() => {
                    return Err(CliError::Refused(format!(
                        "notification {p} of {employee} is already read"
                    )));
                }
                Some(_) => {}
            }
        }
        let mut last = 0;
        for n in &targets {
            let version = tx.version(SYSTEM_STREAM)?;
            let event = Event::NotificationRead(NotificationRead {
                notification: n.position,
                employee: employee.into(),
            });
            last = tx.append(SYSTEM_STREAM, version, &[event], &meta)?.last_position;
        }
        Ok::<_, CliError>((targets.len(), last))
    })?;
    if count == 0 {
        errln!("{employee} has no unread notifications");
        return Ok(());
    }
    let done = format!(
        "{count} notification{} of {employee} marked read (position {last})",
        if count == 1 { "" } else { "s" }
    );
    if let Some(rt) = &rules {
        crate::automation::settle(ctx, rt, None, &done, meta.occurred_at)?;
    }
    errln!("{done}");
    Ok(())
}

/// `timers`: pending deadlines, delayed robots and task due times, by due time.
pub(crate) fn timers(ctx: &Ctx, args: TimersArgs) -> Result<(), CliError> {
    let filter = TimerFilter {
        stream: args
            .stream
            .as_deref()
            .map(|s| s.parse().map_err(CliError::Usage))
            .transpose()?,
        due_before: args
            .due_before
            .as_deref()
            .map(|t| {
                parse_time(t, &ctx.config, Some(ctx.clock.now()))
                    .map_err(|e| CliError::Usage(format!("--due-before: {e}")))
            })
            .transpose()?,
        limit: args.limit,
    };
    if let Some(stream) = filter.stream
        && ctx.store.stream_version(stream)? == 0
    {
        return Err(CliError::Unknown(format!(
            "unknown stream '{stream}' in --stream: the log has no {stream}"
        )));
    }
    let rows = query::timers(&ctx.store, &filter)?;
    if ctx.json {
        for t in &rows {
            json_line(&timer_json(t));
        }
        return Ok(());
    }
    if rows.is_empty() {
        outln!("no pending timers");
        return Ok(());
    }
    timer_table(ctx, &rows).print();
    Ok(())
}

/// One pending timer as JSON.
pub(crate) fn timer_json(t: &query::Timer) -> serde_json::Value {
    json!({
        "due_at": fmt_time(t.due_at),
        "what": t.what,
        "stream": t.stream,
        "name": t.name,
        "stage": t.stage,
        "set_by": t.set_by,
        "set_at_position": t.set_at_position,
    })
}

/// Pending timers as a table: when, what, for whom, and who set them.
pub(crate) fn timer_table(ctx: &Ctx, rows: &[query::Timer]) -> Table {
    let tz = ctx.config.calendar.timezone;
    let now = ctx.clock.now();
    let mut t = Table::new(&["DUE", "IN", "WHAT", "STREAM", "NAME", "SET BY", "POS"]);
    for r in rows {
        let what = match r.what.as_str() {
            "deadline" => "deadline",
            "robots" => "delayed robots",
            "task" => "task due",
            other => other,
        };
        t.row(vec![
            time(tz, r.due_at),
            if r.due_at <= now {
                "due".into()
            } else {
                crate::output::human_duration(r.due_at - now)
            },
            what.into(),
            r.stream.clone(),
            r.name.clone().unwrap_or_else(|| "-".into()),
            r.set_by.clone(),
            r.set_at_position.to_string(),
        ]);
    }
    t
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
pub(crate) fn journal(ctx: &Ctx, args: JournalArgs) -> Result<(), CliError> {
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
            .map(|t| {
                parse_time(t, &ctx.config, None)
                    .map_err(|e| CliError::Usage(format!("{flag}: {e}")))
            })
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
    let entries = query::journal(&ctx.store, &filter)?;
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
            crate::output::csv_out(&COLUMNS, rows.map(|r| r.cells()))?;
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
