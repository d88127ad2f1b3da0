//! Read queries over the log and the projection tables, for the CLI and reports: each a named
//! function reading a [`Source`] (a [`Store`](crate::Store) or a [`Snapshot`](crate::Snapshot)).

mod list;

pub use list::{
    Cmp, Cursor, Filter, ListQuery, MAX_IN, MAX_LIMIT, MIN_SEARCH_CHARS, Order, Page, PageSpec,
    SortKey, Start, explain, list,
};

use crate::error::Error;
use crate::project::{
    COMPANY_COLUMNS, CONTACT_COLUMNS, DEAL_COLUMNS, LEAD_COLUMNS, MatchKey, PendingTimer,
    TASK_COLUMNS, company_row, contact_row, deal_row, lead_row, task_row,
};
use chrono::{DateTime, Utc};
use leadflow_engine::StreamId;
use leadflow_engine::model::{Company, Contact, Deal, Lead, Task};
use leadflow_engine::stored::{fmt_time, parse_time};
use rusqlite::{Connection, OptionalExtension, params, params_from_iter, types::Value as Sql};

/// What the projections hold for a stream (see [`lookup`]).
#[derive(Debug, Clone, PartialEq)]
pub enum Lookup {
    /// The entity as it stands.
    Found(Box<leadflow_engine::Entity>),
    /// It was deleted by the event at `position`, which occurred `at`.
    Deleted {
        /// The position of its `*.deleted` event.
        position: i64,
        /// When it was deleted.
        at: DateTime<Utc>,
    },
    /// There is no such entity.
    Missing,
}

/// The entity of `stream`, or that it was deleted (its `*.deleted` event: a lookup of the
/// stream's events through their index), or that it never existed.
pub fn lookup(db: &impl Source, stream: StreamId) -> Result<Lookup, Error> {
    let conn = db.sql(Token(()));
    if let Some(e) = crate::project::load(conn, "main", stream)? {
        return Ok(Lookup::Found(Box::new(e)));
    }
    let deleted: Option<(i64, String)> = conn
        .prepare_cached(
            "SELECT e.position, e.occurred_at FROM streams s JOIN events e ON e.stream_key = s.stream_key \
             WHERE s.kind = ?1 AND s.entity_id = ?2 \
             AND e.type IN ('lead.deleted', 'deal.deleted', 'contact.deleted', 'company.deleted') \
             ORDER BY e.version DESC LIMIT 1",
        )?
        .query_row(rusqlite::params![stream.kind.as_str(), stream.id], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .optional()?;
    Ok(match deleted {
        Some((position, at)) => Lookup::Deleted {
            position,
            at: row_time(&at, position, "events.occurred_at")?,
        },
        None => Lookup::Missing,
    })
}

/// What `lead list` / `deal list` search for: the CLI tells which kind of key the text is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Search {
    /// Part of the title or the name (of the lead, or of a deal's contact or company).
    Text(String),
    /// A normalised phone (E.164), among the lead's or the deal's contact's/company's phones.
    Phone(String),
    /// A normalised (lowercase) e-mail.
    Email(String),
    /// An INN: the lead's `inn` field, or its (or the deal's) company's INN.
    Inn(String),
}

impl Search {
    /// What a searched text is: an e-mail (it has `@`), an INN (10 or 12 digits with a valid
    /// checksum), a phone (five digits or more that parse as one), else text.
    pub fn parse(text: &str) -> Search {
        use leadflow_engine::field;
        let t = text.trim();
        if t.contains('@')
            && let Ok(e) = field::normalize_email(t)
        {
            return Search::Email(e);
        }
        if t.chars().all(|c| c.is_ascii_digit())
            && matches!(t.len(), 10 | 12)
            && let Ok(inn) = field::validate_inn(t)
        {
            return Search::Inn(inn);
        }
        let phone_like = t.chars().filter(char::is_ascii_digit).count() >= 5
            && t.chars()
                .all(|c| c.is_ascii_digit() || " +-().".contains(c) || c.is_alphabetic());
        if phone_like && let Ok(p) = field::parse_phone(t) {
            return Search::Phone(p.number);
        }
        Search::Text(t.to_owned())
    }
}

/// The order of `lead list` / `deal list`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Sort {
    /// By creation (the id), the default.
    #[default]
    Created,
    /// By the time of the last change.
    Updated,
    /// By title.
    Title,
    /// By pipeline and stage.
    Stage,
    /// By responsible employee.
    Responsible,
}

/// Filters for listing leads or deals.
#[derive(Debug, Clone, Default)]
pub struct ListFilter {
    /// Only this pipeline.
    pub pipeline: Option<String>,
    /// Only these pipelines (those a team-scoped token reaches); an empty list matches nothing.
    pub pipeline_in: Option<Vec<String>>,
    /// Only this stage.
    pub stage: Option<String>,
    /// Only this responsible employee.
    pub responsible: Option<String>,
    /// Only these responsible employees (a team's members); an empty list matches nothing.
    pub responsible_in: Option<Vec<String>>,
    /// Only this source (leads).
    pub source: Option<String>,
    /// Only those matching this.
    pub search: Option<Search>,
    /// Only repeat leads (`true`) or only first-time ones (`false`): whether
    /// `lead.repeat_detected` was recorded (leads).
    pub repeat: Option<bool>,
    /// Only created at or after this time.
    pub created_since: Option<DateTime<Utc>>,
    /// Only created before this time.
    pub created_until: Option<DateTime<Utc>>,
    /// Only changed at or after this time.
    pub updated_since: Option<DateTime<Utc>>,
    /// Only changed before this time.
    pub updated_until: Option<DateTime<Utc>>,
    /// The order.
    pub sort: Sort,
    /// Oldest (or A to Z) first instead of newest (Z to A) first.
    pub ascending: bool,
    /// At most this many rows (0: all).
    pub limit: usize,
    /// Skip this many rows first.
    pub offset: usize,
    /// Only rows after this id in the list's order (keyset paging, with [`Sort::Created`]:
    /// ids below it newest first, above it oldest first). Stable while rows are added or
    /// removed, and an index seek however deep the page.
    pub after_id: Option<i64>,
}

/// Whether the lead `{t}.id` has a `lead.repeat_detected` event (a lookup by stream).
fn repeat_sql(t: &str) -> String {
    format!(
        "EXISTS (SELECT 1 FROM streams s JOIN events e ON e.stream_key = s.stream_key \
         WHERE s.kind = 'lead' AND s.entity_id = {t}.id AND e.type = 'lead.repeat_detected')"
    )
}

/// The ids of `kind` (`lead`, `contact`, `company`) with the key `what` = `?n`: an index
/// lookup in the `match_keys` projection, which holds normalised phones (without an
/// extension), e-mails and INNs.
fn matching_ids(what: MatchKey, n: usize, kind: &str) -> String {
    format!(
        "SELECT entity_id FROM match_keys WHERE what = '{}' AND value = ?{n} AND kind = '{kind}'",
        what.as_str()
    )
}

fn like(text: &str) -> String {
    let escaped: String = text
        .chars()
        .flat_map(|c| match c {
            '%' | '_' | '\\' => vec!['\\', c],
            c => vec![c],
        })
        .collect();
    format!("%{escaped}%")
}

fn where_clause(f: &ListFilter, table: &str) -> (String, Vec<Sql>) {
    let mut conds = Vec::new();
    let mut args: Vec<Sql> = Vec::new();
    let arg = |v: Sql, args: &mut Vec<Sql>| {
        args.push(v);
        args.len()
    };
    if let Some(p) = &f.pipeline {
        conds.push(format!("pipeline = ?{}", arg(p.clone().into(), &mut args)));
    }
    if let Some(s) = &f.stage {
        conds.push(format!("stage = ?{}", arg(s.clone().into(), &mut args)));
    }
    if let Some(r) = &f.responsible {
        conds.push(format!(
            "responsible = ?{}",
            arg(r.clone().into(), &mut args)
        ));
    }
    for (col, list) in [
        ("pipeline", &f.pipeline_in),
        ("responsible", &f.responsible_in),
    ] {
        let Some(list) = list else { continue };
        let marks: Vec<String> = list
            .iter()
            .map(|e| format!("?{}", arg(e.clone().into(), &mut args)))
            .collect();
        conds.push(if marks.is_empty() {
            "0".to_owned()
        } else {
            format!("{col} IN ({})", marks.join(", "))
        });
    }
    if let (Some(source), "leads") = (&f.source, table) {
        conds.push(format!(
            "source = ?{}",
            arg(source.clone().into(), &mut args)
        ));
    }
    for (col, t, op) in [
        ("created_at", f.created_since, ">="),
        ("created_at", f.created_until, "<"),
        ("updated_at", f.updated_since, ">="),
        ("updated_at", f.updated_until, "<"),
    ] {
        if let Some(t) = t {
            let n = arg(fmt_time(t).into(), &mut args);
            conds.push(format!("{col} {op} ?{n}"));
        }
    }
    if let Some(id) = f.after_id {
        let n = arg(id.into(), &mut args);
        conds.push(format!("id {} ?{n}", if f.ascending { ">" } else { "<" }));
    }
    if let (Some(repeat), "leads") = (f.repeat, table) {
        conds.push(format!(
            "{}{}",
            if repeat { "" } else { "NOT " },
            repeat_sql("leads")
        ));
    }
    // A deal's contact and company, for searching deals by their client.
    let contact = |what: &str| {
        format!("EXISTS (SELECT 1 FROM contacts c WHERE c.id = deals.contact_id AND {what})")
    };
    let company = |what: &str, t: &str| {
        format!("EXISTS (SELECT 1 FROM companies co WHERE co.id = {t}.company_id AND {what})")
    };
    match (&f.search, table) {
        (None, _) => {}
        (Some(Search::Text(text)), t) => {
            // SQLite's LIKE folds ASCII letters only: try the text as typed, lowercase,
            // capitalised and uppercase, so `иван` finds `Иван`.
            let lower = text.to_lowercase();
            let mut capital = lower.chars();
            let capital: String = capital
                .next()
                .map(|c| c.to_uppercase().chain(capital).collect())
                .unwrap_or_default();
            let mut variants = vec![text.clone(), lower.clone(), capital, text.to_uppercase()];
            variants.dedup();
            variants.sort();
            variants.dedup();
            let mut own = Vec::new();
            for v in variants {
                let n = arg(like(&v).into(), &mut args);
                if t == "leads" {
                    own.push(format!(
                        "title LIKE ?{n} ESCAPE '\\' OR name LIKE ?{n} ESCAPE '\\'"
                    ));
                } else {
                    own.push(format!(
                        "title LIKE ?{n} ESCAPE '\\' OR {} OR {}",
                        contact(&format!("c.name LIKE ?{n} ESCAPE '\\'")),
                        company(&format!("co.name LIKE ?{n} ESCAPE '\\'"), "deals")
                    ));
                }
            }
            conds.push(format!("({})", own.join(" OR ")));
        }
        (Some(Search::Phone(v) | Search::Email(v) | Search::Inn(v)), t) => {
            let what = match f.search {
                Some(Search::Phone(_)) => MatchKey::Phone,
                Some(Search::Email(_)) => MatchKey::Email,
                _ => MatchKey::Inn,
            };
            let n = arg(what.normalize(v).into(), &mut args);
            let company = format!("company_id IN ({})", matching_ids(what, n, "company"));
            conds.push(match (t, what) {
                // A lead's own phones, e-mails and INN (its custom field `inn`); for an INN
                // its company's too.
                ("leads", MatchKey::Inn) => {
                    format!("(id IN ({}) OR {company})", matching_ids(what, n, "lead"))
                }
                ("leads", _) => format!("id IN ({})", matching_ids(what, n, "lead")),
                // A deal's client: its contact's phones and e-mails, its company's all three.
                (_, MatchKey::Inn) => company,
                _ => format!(
                    "(contact_id IN ({}) OR {company})",
                    matching_ids(what, n, "contact")
                ),
            });
        }
    }
    let w = if conds.is_empty() {
        String::new()
    } else {
        format!(" WHERE {}", conds.join(" AND "))
    };
    (w, args)
}

fn order_by(f: &ListFilter) -> String {
    let dir = if f.ascending { "ASC" } else { "DESC" };
    let col = match f.sort {
        Sort::Created => return format!("id {dir}"),
        Sort::Updated => "updated_at",
        Sort::Title => "title",
        Sort::Stage => "pipeline, stage",
        Sort::Responsible => "responsible",
    };
    format!("{col} {dir}, id {dir}")
}

fn limit(n: usize) -> i64 {
    if n == 0 {
        -1
    } else {
        n.min(i64::MAX as usize) as i64
    }
}

fn page(f: &ListFilter) -> String {
    format!(
        "LIMIT {} OFFSET {}",
        limit(f.limit),
        f.offset.min(i64::MAX as usize)
    )
}

/// The query of [`leads`] or [`deals`] (`table`) and its arguments.
fn list_sql(f: &ListFilter, table: &str, columns: &str) -> (String, Vec<Sql>) {
    let (w, args) = where_clause(f, table);
    let sql = format!(
        "SELECT {columns} FROM {table}{w} ORDER BY {} {}",
        order_by(f),
        page(f)
    );
    (sql, args)
}

/// Leads matching `f`, newest first unless `f` says otherwise.
pub fn leads(db: &impl Source, f: &ListFilter) -> Result<Vec<Lead>, Error> {
    let conn = db.sql(Token(()));
    let (sql, args) = list_sql(f, "leads", LEAD_COLUMNS);
    let mut stmt = conn.prepare(&sql)?;
    let rows = stmt.query_map(params_from_iter(args), lead_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Deals matching `f`, newest first unless `f` says otherwise.
pub fn deals(db: &impl Source, f: &ListFilter) -> Result<Vec<Deal>, Error> {
    let conn = db.sql(Token(()));
    let (sql, args) = list_sql(f, "deals", DEAL_COLUMNS);
    let mut stmt = conn.prepare(&sql)?;
    let rows = stmt.query_map(params_from_iter(args), deal_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// What made `lead-{id}` a repeat lead: the payload of its latest `lead.repeat_detected`
/// event, or `None` for a first-time lead.
pub fn repeat_of(
    db: &impl Source,
    id: i64,
) -> Result<Option<leadflow_engine::event::RepeatDetected>, Error> {
    let conn = db.sql(Token(()));
    use rusqlite::OptionalExtension;
    let payload: Option<String> = conn
        .prepare_cached(
            "SELECT e.payload FROM streams s JOIN events e ON e.stream_key = s.stream_key \
             WHERE s.kind = 'lead' AND s.entity_id = ?1 AND e.type = 'lead.repeat_detected' \
             ORDER BY e.version DESC LIMIT 1",
        )?
        .query_row([id], |r| r.get(0))
        .optional()?;
    Ok(payload.and_then(|p| serde_json::from_str(&p).ok()))
}

/// Which of these lead ids are repeat leads.
pub fn repeat_leads(
    db: &impl Source,
    ids: &[i64],
) -> Result<std::collections::HashSet<i64>, Error> {
    let conn = db.sql(Token(()));
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {} FROM (SELECT ?1 AS id) leads",
        repeat_sql("leads")
    ))?;
    let mut out = std::collections::HashSet::new();
    for &id in ids {
        if stmt.query_row([id], |r| r.get::<_, bool>(0))? {
            out.insert(id);
        }
    }
    Ok(out)
}

/// Filters for [`timers`].
#[derive(Debug, Clone, Default)]
pub struct TimerFilter {
    /// Only this stream's timers.
    pub stream: Option<StreamId>,
    /// Only timers due before this time.
    pub due_before: Option<DateTime<Utc>>,
    /// At most this many (0: all).
    pub limit: usize,
}

/// A pending timer: a deadline, delayed robots or a task's due time.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Timer {
    /// When it fires.
    pub due_at: DateTime<Utc>,
    /// `deadline`, `robots` or `task`.
    pub what: String,
    /// The stream it belongs to, e.g. `lead-7`.
    pub stream: String,
    /// The deadline's name, or the delayed rule's id.
    pub name: Option<String>,
    /// The stage the delayed robots wait in, if they are called off when it is left.
    pub stage: Option<String>,
    /// The position of the event that set it.
    pub set_at_position: i64,
    /// Who set it: `robot:RULE`, `employee:ID`, `system`.
    pub set_by: String,
}

/// The stream's pending timers (deadlines, delayed robots, a task's due time), in the order
/// they were set; found from the stream's scheduling events, as the `timers` table has no
/// index by stream. For read-only connections as well as inside a write.
pub fn pending_timers(db: &impl Source, stream: StreamId) -> Result<Vec<PendingTimer>, Error> {
    let conn = db.sql(Token(()));
    crate::project::pending_timers(conn, "main", stream)
}

/// Who set the timer of the event at `position`: its actor (`""` if the event is gone).
fn timer_actor(conn: &Connection, position: i64) -> Result<String, Error> {
    let actor: Option<String> = conn
        .prepare_cached("SELECT actor FROM events WHERE position = ?1")?
        .query_row([position], |r| r.get(0))
        .optional()?;
    Ok(actor.unwrap_or_default())
}

/// Pending timers matching `f`, by due time.
pub fn timers(db: &impl Source, f: &TimerFilter) -> Result<Vec<Timer>, Error> {
    let conn = db.sql(Token(()));
    if let Some(s) = f.stream {
        let mut rows: Vec<PendingTimer> = pending_timers(conn, s)?
            .into_iter()
            .filter(|t| f.due_before.is_none_or(|b| t.due_at < b))
            .collect();
        rows.sort_by_key(|t| (t.due_at, t.id));
        if f.limit > 0 {
            rows.truncate(f.limit);
        }
        return rows
            .into_iter()
            .map(|t| {
                Ok(Timer {
                    due_at: t.due_at,
                    what: t.what,
                    stream: s.to_string(),
                    name: t.name,
                    stage: t.stage,
                    set_at_position: t.id,
                    set_by: timer_actor(conn, t.id)?,
                })
            })
            .collect();
    }
    let mut args: Vec<Sql> = Vec::new();
    let w = match f.due_before {
        Some(t) => {
            args.push(fmt_time(t).into());
            " WHERE t.due_at < ?1"
        }
        None => "",
    };
    let sql = format!(
        "SELECT t.due_at, t.what, t.kind, t.entity_id, t.name, t.stage, t.id, e.actor \
         FROM timers t LEFT JOIN events e ON e.position = t.id{w} ORDER BY t.due_at, t.id LIMIT {}",
        limit(f.limit)
    );
    let mut stmt = conn.prepare(&sql)?;
    let rows = stmt.query_map(params_from_iter(args), |r| {
        let due: String = r.get(0)?;
        let kind: String = r.get(2)?;
        let id: i64 = r.get(3)?;
        let position: i64 = r.get(6)?;
        Ok((
            due,
            Timer {
                due_at: DateTime::<Utc>::default(),
                what: r.get(1)?,
                stream: format!("{kind}-{id}"),
                name: r.get(4)?,
                stage: r.get(5)?,
                set_at_position: position,
                set_by: r.get::<_, Option<String>>(7)?.unwrap_or_default(),
            },
        ))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (due, mut t) = row?;
        t.due_at = row_time(&due, t.set_at_position, "timers.due_at")?;
        out.push(t);
    }
    Ok(out)
}

/// A stored time, or [`Error::Corrupt`] naming the row and column if it is not one.
fn row_time(s: &str, position: i64, what: &str) -> Result<DateTime<Utc>, Error> {
    parse_time(s).ok_or_else(|| Error::Corrupt {
        position,
        why: format!("{what} {s:?} is not a time"),
    })
}

/// The query of [`incidents_of`] (an index lookup by `incidents_by_stream`).
fn incidents_of_sql(n: usize) -> String {
    format!(
        "SELECT position, at, employee, kind, rule, stream, text FROM incidents \
         WHERE stream = ?1 ORDER BY position DESC LIMIT {}",
        limit(n)
    )
}

/// Incidents about one stream, newest first; at most `n` (0: all).
pub fn incidents_of(db: &impl Source, stream: &str, n: usize) -> Result<Vec<JournalEntry>, Error> {
    let conn = db.sql(Token(()));
    let mut stmt = conn.prepare(&incidents_of_sql(n))?;
    let rows = stmt.query_map([stream], |r| {
        let at: String = r.get(1)?;
        Ok((
            at,
            JournalEntry {
                record: JournalRecord::Incident,
                position: r.get(0)?,
                at: DateTime::<Utc>::default(),
                employee: r.get(2)?,
                kind: r.get(3)?,
                rule: r.get(4)?,
                stream: r.get(5)?,
                manager: None,
                count: None,
                window: None,
                text: r.get(6)?,
            },
        ))
    })?;
    journal_times(rows)
}

/// Journal rows with their stored `at` read, or [`Error::Corrupt`] naming a row whose time is
/// not one.
fn journal_times(
    rows: impl Iterator<Item = rusqlite::Result<(String, JournalEntry)>>,
) -> Result<Vec<JournalEntry>, Error> {
    let mut out = Vec::new();
    for row in rows {
        let (at, mut e) = row?;
        let table = match e.record {
            JournalRecord::Incident => "incidents.at",
            JournalRecord::Escalation => "escalations.at",
        };
        e.at = row_time(&at, e.position, table)?;
        out.push(e);
    }
    Ok(out)
}

/// The query of [`open_tasks_of`] by `col` (`lead_id` or `deal_id`, each indexed).
fn open_tasks_sql(col: &str) -> String {
    format!(
        "SELECT {TASK_COLUMNS} FROM tasks WHERE {col} = ?1 AND completed_at IS NULL ORDER BY due_at, id"
    )
}

/// Open tasks about a lead or deal, by due time.
pub fn open_tasks_of(db: &impl Source, stream: StreamId) -> Result<Vec<Task>, Error> {
    let conn = db.sql(Token(()));
    let col = match stream.kind {
        leadflow_engine::EntityKind::Deal => "deal_id",
        _ => "lead_id",
    };
    let mut stmt = conn.prepare(&open_tasks_sql(col))?;
    let rows = stmt.query_map([stream.id], task_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Contacts, newest first.
pub fn contacts(db: &impl Source, n: usize) -> Result<Vec<Contact>, Error> {
    let conn = db.sql(Token(()));
    let mut stmt = conn.prepare(&format!(
        "SELECT {CONTACT_COLUMNS} FROM contacts ORDER BY id DESC LIMIT {}",
        limit(n)
    ))?;
    let rows = stmt.query_map([], contact_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Companies, newest first.
pub fn companies(db: &impl Source, n: usize) -> Result<Vec<Company>, Error> {
    let conn = db.sql(Token(()));
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
pub fn tasks(db: &impl Source, f: &TaskFilter) -> Result<Vec<Task>, Error> {
    let conn = db.sql(Token(()));
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
        args.push(fmt_time(t).into());
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
pub fn stage_history(db: &impl Source, stream: StreamId) -> Result<Vec<Visit>, Error> {
    let conn = db.sql(Token(()));
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
pub fn stage_counts(db: &impl Source, table: &str) -> Result<Vec<(String, String, i64)>, Error> {
    let conn = db.sql(Token(()));
    let table = if table == "deals" { "deals" } else { "leads" };
    let mut stmt = conn.prepare(&format!(
        "SELECT pipeline, stage, count(*) FROM {table} GROUP BY pipeline, stage"
    ))?;
    let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// The chain hash at a position, if the log reaches it.
pub fn hash_at(db: &impl Source, position: i64) -> Result<Option<Vec<u8>>, Error> {
    let conn = db.sql(Token(()));
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
    db: &impl Source,
    kind: leadflow_engine::EntityKind,
) -> Result<Vec<FunnelStage>, Error> {
    let conn = db.sql(Token(()));
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
pub fn deal_totals(db: &impl Source, stage: &str) -> Result<(i64, i64), Error> {
    let conn = db.sql(Token(()));
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
    /// When it was read (`notification.read`); `None` while unread.
    pub read_at: Option<DateTime<Utc>>,
}

/// Which notifications [`inbox`] lists.
#[derive(Debug, Clone, Default)]
pub struct InboxFilter {
    /// Only unread ones.
    pub unread: bool,
    /// Only read ones.
    pub read: bool,
    /// Only these positions (of their `notification.queued` events).
    pub positions: Option<Vec<i64>>,
    /// Only notifications about this stream, e.g. `lead-42`.
    pub stream: Option<String>,
    /// At most this many (0: all).
    pub limit: usize,
}

/// The query of [`inbox`] and its arguments (by stream an index lookup by `inbox_by_stream`).
fn inbox_sql(employee: Option<&str>, f: &InboxFilter) -> (String, Vec<Sql>) {
    let mut conds = Vec::new();
    let mut args: Vec<Sql> = Vec::new();
    if let Some(e) = employee {
        args.push(e.to_owned().into());
        conds.push(format!("i.employee = ?{}", args.len()));
    }
    if let Some(s) = &f.stream {
        args.push(s.clone().into());
        conds.push(format!("i.stream = ?{}", args.len()));
    }
    if f.unread {
        conds.push("r.id IS NULL".to_owned());
    }
    if f.read {
        conds.push("r.id IS NOT NULL".to_owned());
    }
    if let Some(list) = &f.positions {
        let marks: Vec<String> = list
            .iter()
            .map(|p| {
                args.push((*p).into());
                format!("?{}", args.len())
            })
            .collect();
        conds.push(format!("i.position IN ({})", marks.join(", ")));
    }
    let w = if conds.is_empty() {
        String::new()
    } else {
        format!(" WHERE {}", conds.join(" AND "))
    };
    let sql = format!(
        "SELECT i.position, i.at, i.employee, i.priority, i.text, i.rule, i.stream, r.at \
         FROM inbox i LEFT JOIN inbox_read r ON r.id = i.position{w} \
         ORDER BY i.position DESC LIMIT {}",
        limit(f.limit)
    );
    (sql, args)
}

/// An employee's inbox (every employee's with `employee` `None`), newest first.
pub fn inbox(
    db: &impl Source,
    employee: Option<&str>,
    f: &InboxFilter,
) -> Result<Vec<Notification>, Error> {
    let conn = db.sql(Token(()));
    let (sql, args) = inbox_sql(employee, f);
    let mut stmt = conn.prepare(&sql)?;
    let rows = stmt.query_map(params_from_iter(args), |r| {
        let at: String = r.get(1)?;
        let read: Option<String> = r.get(7)?;
        Ok((
            at,
            read,
            Notification {
                position: r.get(0)?,
                at: DateTime::<Utc>::default(),
                employee: r.get(2)?,
                priority: r.get(3)?,
                text: r.get(4)?,
                rule: r.get(5)?,
                stream: r.get(6)?,
                read_at: None,
            },
        ))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (at, read, mut n) = row?;
        n.at = row_time(&at, n.position, "inbox.at")?;
        n.read_at = read
            .map(|t| row_time(&t, n.position, "inbox_read.at"))
            .transpose()?;
        out.push(n);
    }
    Ok(out)
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
pub fn journal(db: &impl Source, f: &JournalFilter) -> Result<Vec<JournalEntry>, Error> {
    let conn = db.sql(Token(()));
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
        args.push(fmt_time(t).into());
        conds.push(format!("at >= ?{}", args.len()));
    }
    if let Some(t) = f.until {
        args.push(fmt_time(t).into());
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
        Ok((
            at,
            JournalEntry {
                record: if record == "incident" {
                    JournalRecord::Incident
                } else {
                    JournalRecord::Escalation
                },
                position: r.get(1)?,
                at: DateTime::<Utc>::default(),
                employee: r.get(3)?,
                kind: r.get(4)?,
                rule: r.get(5)?,
                stream: r.get(6)?,
                manager: r.get(7)?,
                count: r.get(8)?,
                window: r.get(9)?,
                text: r.get(10)?,
            },
        ))
    })?;
    journal_times(rows)
}

/// What the queries read through: an open [`Store`](crate::Store) or a read
/// [`Snapshot`](crate::Snapshot) (and, inside the store, a bare connection). The connection
/// behind it stays the store's own: [`Source::sql`] takes a [`Token`] only this module makes,
/// so every read from outside the store is one of the named functions here.
pub trait Source {
    /// The connection the queries read through.
    #[doc(hidden)]
    fn sql(&self, _: Token) -> &Connection;
}

/// Makes [`Source::sql`] callable from this module only.
#[doc(hidden)]
#[derive(Debug)]
pub struct Token(pub(crate) ());

impl Source for crate::Store {
    fn sql(&self, _: Token) -> &Connection {
        &self.conn
    }
}

impl Source for crate::Snapshot<'_> {
    fn sql(&self, _: Token) -> &Connection {
        self.conn
    }
}

/// For the store's own callers that hold a connection (a write transaction's, a snapshot's).
impl Source for Connection {
    fn sql(&self, _: Token) -> &Connection {
        self
    }
}

/// How many events of each stored type (`lead.created`, …) the log holds, by type.
pub fn event_counts(db: &impl Source) -> Result<std::collections::BTreeMap<String, i64>, Error> {
    let conn = db.sql(Token(()));
    let mut stmt = conn.prepare("SELECT type, count(*) FROM events GROUP BY type")?;
    let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// How many events robots appended: those whose actor is `robot:RULE`.
pub fn events_by_robots(db: &impl Source) -> Result<i64, Error> {
    let conn = db.sql(Token(()));
    Ok(conn.query_row(
        "SELECT count(*) FROM events WHERE actor LIKE 'robot:%'",
        [],
        |r| r.get(0),
    )?)
}

/// The newest deal made from lead `lead` (by converting it), if any.
pub fn deal_of_lead(db: &impl Source, lead: i64) -> Result<Option<i64>, Error> {
    let conn = db.sql(Token(()));
    Ok(conn.query_row(
        "SELECT max(id) FROM deals WHERE lead_id = ?1",
        [lead],
        |r| r.get(0),
    )?)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The query plan's lines for `sql`, with `n` dummy arguments.
    fn plan(conn: &Connection, sql: &str, args: Vec<Sql>) -> Vec<String> {
        let mut stmt = conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).unwrap();
        let rows = stmt
            .query_map(params_from_iter(args), |r| r.get::<_, String>(3))
            .unwrap();
        rows.collect::<Result<_, _>>().unwrap()
    }

    /// Fails if the plan scans a whole table rather than searching an index.
    fn assert_indexed(conn: &Connection, sql: &str, args: Vec<Sql>) {
        let plan = plan(conn, sql, args);
        assert!(
            plan.iter().all(|l| !l.starts_with("SCAN")),
            "{sql}\nscans a table: {plan:?}"
        );
    }

    #[test]
    fn per_stream_queries_search_an_index() {
        let store = crate::Store::open_in_memory().unwrap();
        let conn = &store.conn;
        assert_indexed(
            conn,
            &incidents_of_sql(10),
            vec!["lead-1".to_owned().into()],
        );
        assert_indexed(conn, &incidents_of_sql(0), vec!["lead-1".to_owned().into()]);
        assert_indexed(conn, &open_tasks_sql("lead_id"), vec![1.into()]);
        assert_indexed(conn, &open_tasks_sql("deal_id"), vec![1.into()]);
        for unread in [false, true] {
            let f = InboxFilter {
                stream: Some("lead-1".to_owned()),
                unread,
                limit: 20,
                ..InboxFilter::default()
            };
            let (sql, args) = inbox_sql(None, &f);
            assert_indexed(conn, &sql, args);
        }
    }

    #[test]
    fn searching_leads_and_deals_by_phone_email_or_inn_looks_up_match_keys() {
        let store = crate::Store::open_in_memory().unwrap();
        let conn = &store.conn;
        for search in [
            Search::Phone("+79378922084".to_owned()),
            Search::Email("a@b.ru".to_owned()),
            Search::Inn("7707083893".to_owned()),
        ] {
            for sort in [Sort::Created, Sort::Title] {
                let f = ListFilter {
                    search: Some(search.clone()),
                    sort,
                    limit: 50,
                    ..ListFilter::default()
                };
                for (table, columns) in [("leads", LEAD_COLUMNS), ("deals", DEAL_COLUMNS)] {
                    let (sql, args) = list_sql(&f, table, columns);
                    assert_indexed(conn, &sql, args);
                }
            }
        }
    }

    /// Fails unless `r` is [`Error::Corrupt`] about the row at `position`.
    fn assert_corrupt<T: std::fmt::Debug>(r: Result<T, Error>, position: i64) {
        match r {
            Err(Error::Corrupt { position: p, why }) => {
                assert_eq!(p, position, "{why}");
                assert!(why.contains("not a time"), "{why}");
            }
            other => panic!("expected a corrupt row at {position}, got {other:?}"),
        }
    }

    #[test]
    fn a_corrupt_stored_time_is_a_corrupt_row_not_1970() {
        let store = crate::Store::open_in_memory().unwrap();
        let conn = &store.conn;
        conn.execute_batch(
            "INSERT INTO timers (due_at, id, what, kind, entity_id) VALUES ('garbage', 7, 'deadline', 'lead', 1);
             INSERT INTO incidents (position, at, kind, stream, text) VALUES (8, 'garbage', 'overdue', 'lead-1', 'x');
             INSERT INTO escalations (position, at, employee, kind, count, window, rule, stream)
                 VALUES (9, 'garbage', 'ivan', 'overdue', 3, 'P7D', 'r', 'lead-1');
             INSERT INTO inbox (position, at, employee, priority, text, stream) VALUES (10, 'garbage', 'ivan', 'normal', 'x', 'lead-1');",
        )
        .unwrap();
        assert_corrupt(timers(conn, &TimerFilter::default()), 7);
        assert_corrupt(incidents_of(conn, "lead-1", 0), 8);
        assert_corrupt(inbox(conn, None, &InboxFilter::default()), 10);
        let f = JournalFilter {
            escalations: true,
            ..JournalFilter::default()
        };
        assert_corrupt(journal(conn, &f), 9);
    }
}

/// How many messages wait in the outbox (webhooks, e-mail) for delivery.
pub fn outbox_depth(db: &impl Source) -> Result<i64, Error> {
    let conn = db.sql(Token(()));
    Ok(conn.query_row("SELECT count(*) FROM outbox", [], |r| r.get(0))?)
}

// ---- API tokens (issue 10, access) ----------------------------------------------------------

/// An API token as the `tokens` table holds it: never its secret, only the secret's hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRow {
    /// Its name (`api:<name>` in the events its requests append).
    pub name: String,
    /// Its stream, `token-N`.
    pub stream: StreamId,
    /// Its role.
    pub role: String,
    /// The employee it acts for, if any.
    pub employee: Option<String>,
    /// SHA-256 of the secret, lowercase hex.
    pub secret_hash: String,
    /// When it was made.
    pub created_at: DateTime<Utc>,
    /// Who made it (an actor as stored: `employee:admin`).
    pub created_by: String,
    /// When it was revoked, if it was.
    pub revoked_at: Option<DateTime<Utc>>,
    /// Who revoked it.
    pub revoked_by: Option<String>,
}

impl TokenRow {
    /// Whether it still opens anything.
    pub fn is_active(&self) -> bool {
        self.revoked_at.is_none()
    }

    /// The actor a request made with this token records: `api:<name>`, acting for `employee`
    /// if given (a Bitrix24 URL's user id), else for the token's own employee, if any.
    pub fn actor(
        &self,
        employee: Option<leadflow_engine::ids::EmployeeId>,
    ) -> leadflow_engine::Actor {
        leadflow_engine::Actor::Api {
            token: self.name.clone(),
            employee: employee.or_else(|| self.employee.as_deref().map(Into::into)),
        }
    }
}

const TOKEN_COLUMNS: &str =
    "name, stream, role, employee, secret_hash, created_at, created_by, revoked_at, revoked_by";

fn token_rows(
    stmt: &mut rusqlite::Statement<'_>,
    params: &[&dyn rusqlite::ToSql],
) -> Result<Vec<TokenRow>, Error> {
    let rows = stmt.query_map(params, |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, String>(2)?,
            r.get::<_, Option<String>>(3)?,
            r.get::<_, String>(4)?,
            r.get::<_, String>(5)?,
            r.get::<_, String>(6)?,
            r.get::<_, Option<String>>(7)?,
            r.get::<_, Option<String>>(8)?,
        ))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (name, stream, role, employee, secret_hash, created, created_by, revoked, revoked_by) =
            row?;
        let stream: StreamId = stream.parse().map_err(|why| Error::Corrupt {
            position: 0,
            why: format!("tokens.stream of token '{name}': {why}"),
        })?;
        out.push(TokenRow {
            created_at: row_time(&created, 0, "tokens.created_at")?,
            revoked_at: revoked
                .map(|t| row_time(&t, 0, "tokens.revoked_at"))
                .transpose()?,
            name,
            stream,
            role,
            employee,
            secret_hash,
            created_by,
            revoked_by,
        });
    }
    Ok(out)
}

/// The token whose secret hashes to `secret_hash` (SHA-256, lowercase hex), revoked or not
/// (the caller refuses a revoked one); one index probe.
pub fn token_by_hash(db: &impl Source, secret_hash: &str) -> Result<Option<TokenRow>, Error> {
    let conn = db.sql(Token(()));
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {TOKEN_COLUMNS} FROM tokens WHERE secret_hash = ?1 ORDER BY revoked_at IS NOT NULL LIMIT 1"
    ))?;
    Ok(token_rows(&mut stmt, &[&secret_hash])?.pop())
}

/// The token a request's secret opens: hashes it (`engine::access::secret_hash`) and looks the
/// hash up; `None` for an unknown or revoked one (the request is then a 401).
pub fn token_by_secret(db: &impl Source, secret: &str) -> Result<Option<TokenRow>, Error> {
    let hash = leadflow_engine::access::secret_hash(secret);
    Ok(token_by_hash(db, &hash)?.filter(TokenRow::is_active))
}

/// Every token, revoked ones too, in the order they were made.
pub fn tokens(db: &impl Source) -> Result<Vec<TokenRow>, Error> {
    let conn = db.sql(Token(()));
    let mut stmt = conn.prepare(&format!(
        "SELECT {TOKEN_COLUMNS} FROM tokens ORDER BY CAST(substr(stream, 7) AS INTEGER)"
    ))?;
    token_rows(&mut stmt, &[])
}

// --- Delivery: webhook endpoints and the messages of the outbox and subscriptions ---

/// A webhook endpoint, as the `endpoints` table holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// `endpoint-N`'s N.
    pub id: i64,
    pub url: String,
    /// Its event-type patterns.
    pub events: Vec<String>,
    /// `native` or `bitrix24`.
    pub format: String,
    pub secret: String,
    /// `active`, `removed` or `disabled`.
    pub state: String,
    /// Why it was disabled.
    pub reason: Option<String>,
    pub added_at: DateTime<Utc>,
    /// The position of its `endpoint.added`: it gets the events after it.
    pub position: i64,
}

impl Endpoint {
    /// Its stream.
    pub fn stream(&self) -> StreamId {
        StreamId::new(leadflow_engine::EntityKind::Endpoint, self.id)
    }
}

const ENDPOINT_COLUMNS: &str = "id, url, events, format, secret, state, reason, added_at, position";

fn endpoint_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<(Endpoint, String, String)> {
    Ok((
        Endpoint {
            id: r.get(0)?,
            url: r.get(1)?,
            events: vec![],
            format: r.get(3)?,
            secret: r.get(4)?,
            state: r.get(5)?,
            reason: r.get(6)?,
            added_at: DateTime::<Utc>::MIN_UTC,
            position: r.get(8)?,
        },
        r.get(2)?,
        r.get(7)?,
    ))
}

fn endpoint_of((mut e, events, at): (Endpoint, String, String)) -> Result<Endpoint, Error> {
    e.events = serde_json::from_str(&events).map_err(|_| Error::Corrupt {
        position: e.position,
        why: format!("endpoints.events {events:?} is not a JSON list"),
    })?;
    e.added_at = row_time(&at, e.position, "endpoints.added_at")?;
    Ok(e)
}

/// Webhook endpoints by id: the active ones, or all (`all`).
pub fn endpoints(db: &impl Source, all: bool) -> Result<Vec<Endpoint>, Error> {
    let conn = db.sql(Token(()));
    let mut stmt = conn.prepare_cached(if all {
        "SELECT id, url, events, format, secret, state, reason, added_at, position FROM endpoints ORDER BY id"
    } else {
        "SELECT id, url, events, format, secret, state, reason, added_at, position FROM endpoints WHERE state = 'active' ORDER BY id"
    })?;
    let rows = stmt.query_map([], endpoint_row)?;
    rows.map(|r| endpoint_of(r?)).collect()
}

/// One webhook endpoint.
pub fn endpoint(db: &impl Source, id: i64) -> Result<Option<Endpoint>, Error> {
    let conn = db.sql(Token(()));
    let row = conn
        .prepare_cached(&format!(
            "SELECT {ENDPOINT_COLUMNS} FROM endpoints WHERE id = ?1"
        ))?
        .query_row([id], endpoint_row)
        .optional()?;
    row.map(endpoint_of).transpose()
}

/// A message to deliver and how its delivery went, as the `deliveries` table holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// The message id: the position of its `notification.queued` or `delivery.queued`.
    pub id: i64,
    /// The Standard Webhooks `webhook-id`, the same on every attempt.
    pub webhook_id: String,
    /// The stream its delivery events go to.
    pub stream: StreamId,
    /// `webhook`, `email` (the outbox) or `endpoint` (a subscription).
    pub channel: String,
    /// The endpoint of a subscription's message.
    pub endpoint: Option<i64>,
    /// The URL or address of an outbox message.
    pub target: Option<String>,
    /// The event delivered: the notification itself, or the subscribed event.
    pub event: i64,
    pub event_type: String,
    /// `pending`, `succeeded`, `failed`, `dropped` or `cancelled`.
    pub state: String,
    /// Attempts made in this round.
    pub attempts: u32,
    /// When the next attempt is due (pending).
    pub next_at: Option<DateTime<Utc>>,
    pub queued_at: DateTime<Utc>,
    /// When this round of attempts began (the age bound counts from it).
    pub round_at: DateTime<Utc>,
    pub last_status: Option<u16>,
    pub last_error: Option<String>,
    pub done_at: Option<DateTime<Utc>>,
}

const DELIVERY_COLUMNS: &str = "d.id, d.webhook_id, d.stream, d.channel, d.endpoint, d.target, \
     d.event, d.event_type, d.state, d.attempts, d.next_at, d.queued_at, d.round_at, \
     d.last_status, d.last_error, d.done_at";

type DeliveryCells = (
    Delivery,
    String,
    Option<String>,
    String,
    String,
    Option<String>,
);

fn delivery_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<DeliveryCells> {
    let epoch = DateTime::<Utc>::MIN_UTC;
    Ok((
        Delivery {
            id: r.get(0)?,
            webhook_id: r.get(1)?,
            stream: StreamId::new(leadflow_engine::EntityKind::System, 1),
            channel: r.get(3)?,
            endpoint: r.get(4)?,
            target: r.get(5)?,
            event: r.get(6)?,
            event_type: r.get(7)?,
            state: r.get(8)?,
            attempts: r.get(9)?,
            next_at: None,
            queued_at: epoch,
            round_at: epoch,
            last_status: r.get(13)?,
            last_error: r.get(14)?,
            done_at: None,
        },
        r.get(2)?,
        r.get(10)?,
        r.get(11)?,
        r.get(12)?,
        r.get(15)?,
    ))
}

fn delivery_of(
    (mut d, stream, next, queued, round, done): DeliveryCells,
) -> Result<Delivery, Error> {
    let id = d.id;
    d.stream = stream
        .parse()
        .map_err(|why| Error::Corrupt { position: id, why })?;
    d.next_at = next
        .map(|t| row_time(&t, id, "deliveries.next_at"))
        .transpose()?;
    d.queued_at = row_time(&queued, id, "deliveries.queued_at")?;
    d.round_at = row_time(&round, id, "deliveries.round_at")?;
    d.done_at = done
        .map(|t| row_time(&t, id, "deliveries.done_at"))
        .transpose()?;
    Ok(d)
}

/// Which messages `outbox list` shows.
#[derive(Debug, Clone, Default)]
pub struct DeliveryFilter {
    /// Only these states (`pending`, `failed`…); empty for all.
    pub states: Vec<String>,
    /// At most this many, newest first (0: all).
    pub limit: usize,
}

/// Messages, newest first.
pub fn deliveries(db: &impl Source, f: &DeliveryFilter) -> Result<Vec<Delivery>, Error> {
    let conn = db.sql(Token(()));
    let cond = if f.states.is_empty() {
        String::new()
    } else {
        format!(
            "WHERE d.state IN ({})",
            (1..=f.states.len())
                .map(|i| format!("?{i}"))
                .collect::<Vec<_>>()
                .join(", ")
        )
    };
    let mut stmt = conn.prepare(&format!(
        "SELECT {DELIVERY_COLUMNS} FROM deliveries d {cond} ORDER BY d.id DESC LIMIT {}",
        limit(f.limit)
    ))?;
    let rows = stmt.query_map(params_from_iter(f.states.iter()), delivery_row)?;
    rows.map(|r| delivery_of(r?)).collect()
}

/// One message.
pub fn delivery(db: &impl Source, id: i64) -> Result<Option<Delivery>, Error> {
    let conn = db.sql(Token(()));
    let row = conn
        .prepare_cached(&format!(
            "SELECT {DELIVERY_COLUMNS} FROM deliveries d WHERE d.id = ?1"
        ))?
        .query_row([id], delivery_row)
        .optional()?;
    row.map(delivery_of).transpose()
}

/// Pending messages due by `now` that wait for no earlier pending message of their lane
/// (their target and the stream of their event), in due order: through the `deliveries_due`
/// index, each checked against `deliveries_lane`.
pub fn due_deliveries(
    db: &impl Source,
    now: DateTime<Utc>,
    n: usize,
) -> Result<Vec<Delivery>, Error> {
    let conn = db.sql(Token(()));
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {DELIVERY_COLUMNS} FROM deliveries d INDEXED BY deliveries_due \
         WHERE d.state = 'pending' AND d.next_at <= ?1 \
         AND NOT EXISTS (SELECT 1 FROM deliveries e INDEXED BY deliveries_lane \
             WHERE e.lane = d.lane AND e.state = 'pending' AND e.id < d.id) \
         ORDER BY d.next_at, d.id LIMIT ?2"
    ))?;
    let rows = stmt.query_map(params![fmt_time(now), limit(n)], delivery_row)?;
    rows.map(|r| delivery_of(r?)).collect()
}

/// When the next pending message is due (it may wait for an earlier one of its lane).
pub fn next_delivery_at(db: &impl Source) -> Result<Option<DateTime<Utc>>, Error> {
    let conn = db.sql(Token(()));
    let t: Option<String> = conn
        .prepare_cached(
            "SELECT next_at FROM deliveries INDEXED BY deliveries_due WHERE state = 'pending' ORDER BY next_at LIMIT 1",
        )?
        .query_row([], |r| r.get(0))
        .optional()?;
    t.map(|t| row_time(&t, 0, "deliveries.next_at")).transpose()
}

/// How many messages are in each state (for `outbox list` and metrics).
pub fn delivery_counts(db: &impl Source) -> Result<std::collections::BTreeMap<String, i64>, Error> {
    let conn = db.sql(Token(()));
    let mut stmt = conn.prepare_cached("SELECT state, count(*) FROM deliveries GROUP BY state")?;
    let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

impl crate::Tx<'_> {
    /// A message as of this transaction (for a worker to check, under the write lock, that the
    /// outcome it is about to append is still the next one).
    pub fn delivery(&mut self, id: i64) -> Result<Option<Delivery>, Error> {
        delivery(self.conn()?, id)
    }

    /// A webhook endpoint as of this transaction.
    pub fn endpoint(&mut self, id: i64) -> Result<Option<Endpoint>, Error> {
        endpoint(self.conn()?, id)
    }

    /// The webhook endpoints as of this transaction: the active ones, or all (`all`) — for a
    /// check that must see the endpoints added by earlier requests of the same batch.
    pub fn endpoints(&mut self, all: bool) -> Result<Vec<Endpoint>, Error> {
        endpoints(self.conn()?, all)
    }
}

/// Where an endpoint's next events start: after its cursor, its `endpoint.added`, and the
/// last event it took (so a cursor moved back never takes an event twice).
pub fn endpoint_start(db: &impl Source, ep: &Endpoint) -> Result<i64, Error> {
    let conn = db.sql(Token(()));
    let cursor: Option<i64> = conn
        .prepare_cached("SELECT position FROM rule_cursor WHERE name = ?1")?
        .query_row([format!("delivery:endpoint-{}", ep.id)], |r| r.get(0))
        .optional()?;
    let taken: Option<i64> = conn
        .prepare_cached(
            "SELECT max(event) FROM deliveries INDEXED BY deliveries_by_endpoint WHERE endpoint = ?1",
        )?
        .query_row([ep.id], |r| r.get(0))?;
    Ok(ep.position.max(cursor.unwrap_or(0)).max(taken.unwrap_or(0)))
}

impl crate::Tx<'_> {
    /// [`endpoint_start`] as of this transaction.
    pub fn endpoint_start(&mut self, ep: &Endpoint) -> Result<i64, Error> {
        endpoint_start(self.conn()?, ep)
    }
}
