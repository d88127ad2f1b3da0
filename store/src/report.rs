//! The head-of-sales reports' queries (scenario D; docs/REPORTS.md): one function per report,
//! each one SQL statement over the projection tables returning typed rows.
//!
//! The statements are the ones docs/REPORTS.md prints for auditors, with the same named
//! parameters (`:since`, `:until`, `:pipeline`…): [`Params::bindings`] gives their values, and
//! `leadflow report X --format json` prints them, so anyone can rerun a report's SQL in
//! `sqlite3` and get the same numbers (a test holds the document to these statements' results).
//! Figures derived from the counts (shares, lights) are the engine's (`engine::report`).
//!
//! Every report reads the projections as they stand; a report "as of" a time reads a database
//! rebuilt up to then (the seam is the [`Source`] it is given).

use crate::error::Error;
use crate::query::{Source, Token};
use chrono::{DateTime, Utc};
use leadflow_engine::stored::{fmt_time, parse_time};
use leadflow_engine::workspace::{KpiCounts, KpiQuery};
use rusqlite::types::Value as Sql;
use rusqlite::{Connection, Row};
use std::collections::{BTreeMap, HashMap};

/// What a report is about: the values of the named parameters of its statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Params {
    /// `:pipeline`, the pipeline reported on.
    pub pipeline: String,
    /// `:since`: the period starts here (inclusive)…
    pub since: DateTime<Utc>,
    /// `:until`: …and ends here (exclusive); the time the state is judged at (overdue tasks,
    /// open stays).
    pub until: DateTime<Utc>,
    /// `:who`: only leads, deals and clients whose responsible is one of these (`None`: all).
    pub who: Option<Vec<String>>,
    /// `:success`: the pipeline's success stages.
    pub success: Vec<String>,
    /// `:failure`: the pipeline's failure stages.
    pub failure: Vec<String>,
    /// `:steps`: the pipeline's other stages, in order (the funnel's steps).
    pub steps: Vec<String>,
    /// `:open`: the in-progress stages that count as "in work", as `pipeline/stage` keys.
    pub open: Vec<String>,
    /// `:targets`: the target time of each stage that has one, in seconds.
    pub targets: BTreeMap<String, i64>,
    /// `:before`: a lead or deal with no activity since this time is forgotten.
    pub before: DateTime<Utc>,
    /// `:contact_portrait`: the custom fields of a contact that make its portrait.
    pub contact_portrait: Vec<String>,
    /// `:company_portrait`: the same for a company.
    pub company_portrait: Vec<String>,
}

/// A parameter's value, as bound to the statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Binding {
    /// NULL.
    Null,
    /// Text (times in the stored format, JSON arrays and objects).
    Text(String),
}

impl Params {
    /// Every named parameter and its value (a statement binds those it names).
    pub fn bindings(&self) -> Vec<(&'static str, Binding)> {
        let json = |v: serde_json::Value| Binding::Text(v.to_string());
        vec![
            (":pipeline", Binding::Text(self.pipeline.clone())),
            (":since", Binding::Text(fmt_time(self.since))),
            (":until", Binding::Text(fmt_time(self.until))),
            (
                ":who",
                self.who
                    .as_ref()
                    .map_or(Binding::Null, |w| json(serde_json::json!(w))),
            ),
            (":success", json(serde_json::json!(self.success))),
            (":failure", json(serde_json::json!(self.failure))),
            (":steps", json(serde_json::json!(self.steps))),
            (":open", json(serde_json::json!(self.open))),
            (":targets", json(serde_json::json!(self.targets))),
            (":before", Binding::Text(fmt_time(self.before))),
            (
                ":contact_portrait",
                json(serde_json::json!(self.contact_portrait)),
            ),
            (
                ":company_portrait",
                json(serde_json::json!(self.company_portrait)),
            ),
        ]
    }
}

/// `funnel`: per stage, the leads (deals) created in the period that reached it, and those of
/// them in it now.
pub const FUNNEL: &str = "WITH entities AS (
  SELECT 'lead' AS kind, id, title, pipeline, stage, stage_reason, responsible, created_at FROM leads
  UNION ALL
  SELECT 'deal', id, title, pipeline, stage, stage_reason, responsible, created_at FROM deals),
cohort AS (
  SELECT kind, id, stage FROM entities
  WHERE pipeline = :pipeline AND created_at >= :since AND created_at < :until
    AND (:who IS NULL OR responsible IN (SELECT value FROM json_each(:who))))
SELECT h.stage,
       count(DISTINCT h.entity_id) AS reached,
       (SELECT count(*) FROM cohort n WHERE n.stage = h.stage) AS current,
       (SELECT count(*) FROM cohort) AS cohort
FROM stage_history h JOIN cohort c ON c.kind = h.kind AND c.id = h.entity_id
WHERE h.pipeline = :pipeline
GROUP BY h.stage
ORDER BY h.stage";

/// `funnel`, its steps: for each stage of `:steps` (the pipeline's stages that are not failure
/// stages, in order) after the first, the leads (deals) of the cohort that reached it and the
/// stage before it in `:steps`.
pub const FUNNEL_STEPS: &str = "WITH entities AS (
  SELECT 'lead' AS kind, id, title, pipeline, stage, stage_reason, responsible, created_at FROM leads
  UNION ALL
  SELECT 'deal', id, title, pipeline, stage, stage_reason, responsible, created_at FROM deals),
cohort AS (
  SELECT kind, id, stage FROM entities
  WHERE pipeline = :pipeline AND created_at >= :since AND created_at < :until
    AND (:who IS NULL OR responsible IN (SELECT value FROM json_each(:who)))),
pairs AS (
  SELECT a.value AS stage, b.value AS previous
  FROM json_each(:steps) a JOIN json_each(:steps) b ON b.key = a.key - 1)
SELECT p.stage, count(DISTINCT h.entity_id) AS from_previous
FROM pairs p
JOIN stage_history h ON h.pipeline = :pipeline AND h.stage = p.stage
JOIN cohort c ON c.kind = h.kind AND c.id = h.entity_id
WHERE EXISTS (SELECT 1 FROM stage_history v
              WHERE v.kind = h.kind AND v.entity_id = h.entity_id
                AND v.pipeline = :pipeline AND v.stage = p.previous)
GROUP BY p.stage
ORDER BY p.stage";

/// `conversion`: per responsible, the leads (deals) created in the period, and how many of
/// them are in a success / a failure stage now.
pub const CONVERSION: &str = "WITH entities AS (
  SELECT 'lead' AS kind, id, title, pipeline, stage, stage_reason, responsible, created_at FROM leads
  UNION ALL
  SELECT 'deal', id, title, pipeline, stage, stage_reason, responsible, created_at FROM deals)
SELECT responsible,
       count(*) AS leads,
       sum(stage IN (SELECT value FROM json_each(:success))) AS won,
       sum(stage IN (SELECT value FROM json_each(:failure))) AS lost
FROM entities
WHERE pipeline = :pipeline AND created_at >= :since AND created_at < :until
  AND (:who IS NULL OR responsible IN (SELECT value FROM json_each(:who)))
GROUP BY responsible
ORDER BY responsible";

/// `conversion`, its second part: the lost ones of [`CONVERSION`] by stage and reason.
pub const CONVERSION_REASONS: &str = "WITH entities AS (
  SELECT 'lead' AS kind, id, title, pipeline, stage, stage_reason, responsible, created_at FROM leads
  UNION ALL
  SELECT 'deal', id, title, pipeline, stage, stage_reason, responsible, created_at FROM deals)
SELECT responsible, stage, coalesce(stage_reason, '') AS reason, count(*) AS lost
FROM entities
WHERE pipeline = :pipeline AND created_at >= :since AND created_at < :until
  AND (:who IS NULL OR responsible IN (SELECT value FROM json_each(:who)))
  AND stage IN (SELECT value FROM json_each(:failure))
GROUP BY responsible, stage, reason
ORDER BY responsible, stage, reason";

/// `managers`: per responsible, the leads and deals in an in-progress stage now.
pub const IN_WORK: &str = "WITH entities AS (
  SELECT 'lead' AS kind, id, title, pipeline, stage, stage_reason, responsible, created_at FROM leads
  UNION ALL
  SELECT 'deal', id, title, pipeline, stage, stage_reason, responsible, created_at FROM deals)
SELECT responsible, count(*) AS in_work
FROM entities
WHERE pipeline || '/' || stage IN (SELECT value FROM json_each(:open))
  AND responsible IS NOT NULL
  AND (:who IS NULL OR responsible IN (SELECT value FROM json_each(:who)))
GROUP BY responsible
ORDER BY responsible";

/// `time-in-stage`: per stage, the stays that began in the period — how many, how many still
/// go on at `:until`, their average length (to `:until` for those that go on) and how many
/// are longer than the stage's target.
pub const TIME_IN_STAGE: &str = "WITH entities AS (
  SELECT 'lead' AS kind, id, title, pipeline, stage, stage_reason, responsible, created_at FROM leads
  UNION ALL
  SELECT 'deal', id, title, pipeline, stage, stage_reason, responsible, created_at FROM deals),
stays AS (
  SELECT h.stage,
         h.left_at IS NULL OR h.left_at > :until AS open,
         (julianday(CASE WHEN h.left_at IS NULL OR h.left_at > :until THEN :until ELSE h.left_at END)
          - julianday(h.entered_at)) * 86400 AS seconds
  FROM stage_history h JOIN entities e ON e.kind = h.kind AND e.id = h.entity_id
  WHERE h.pipeline = :pipeline AND h.entered_at >= :since AND h.entered_at < :until
    AND (:who IS NULL OR e.responsible IN (SELECT value FROM json_each(:who))))
SELECT stage,
       count(*) AS visits,
       sum(open) AS open,
       CAST(round(avg(seconds)) AS INTEGER) AS avg_seconds,
       sum(seconds > json_extract(:targets, '$.' || stage)) AS over_target
FROM stays
GROUP BY stage
ORDER BY stage";

/// `forgotten`: leads (deals) in work with no activity since `:before` — no event of their
/// own stream (created, updated, moved, assigned, commented) by anyone but a robot before
/// `:until` (one a robot made and nobody touched is idle since it was created).
pub const FORGOTTEN: &str = "WITH entities AS (
  SELECT 'lead' AS kind, id, title, pipeline, stage, stage_reason, responsible, created_at FROM leads
  UNION ALL
  SELECT 'deal', id, title, pipeline, stage, stage_reason, responsible, created_at FROM deals),
open AS (
  SELECT o.kind, o.id, o.title, o.responsible, o.stage,
         coalesce(
           (SELECT max(e.occurred_at) FROM streams s JOIN events e ON e.stream_key = s.stream_key
            WHERE s.kind = o.kind AND s.entity_id = o.id AND e.actor NOT LIKE 'robot:%'
              AND e.occurred_at < :until
              AND substr(e.type, instr(e.type, '.') + 1)
                  IN ('created', 'updated', 'stage_changed', 'assigned', 'commented')),
           o.created_at) AS last_activity
  FROM entities o
  WHERE o.pipeline = :pipeline AND o.pipeline || '/' || o.stage IN (SELECT value FROM json_each(:open))
    AND (:who IS NULL OR o.responsible IN (SELECT value FROM json_each(:who))))
SELECT kind, id, title, responsible, stage, last_activity
FROM open
WHERE last_activity < :before
ORDER BY last_activity, id";

/// `incoming-vs-lost`: per responsible, the leads (deals) created in the period and those that
/// entered a failure stage in it.
pub const INCOMING_VS_LOST: &str = "WITH entities AS (
  SELECT 'lead' AS kind, id, title, pipeline, stage, stage_reason, responsible, created_at FROM leads
  UNION ALL
  SELECT 'deal', id, title, pipeline, stage, stage_reason, responsible, created_at FROM deals),
scoped AS (
  SELECT kind, id, responsible, created_at FROM entities
  WHERE pipeline = :pipeline AND (:who IS NULL OR responsible IN (SELECT value FROM json_each(:who)))),
incoming AS (
  SELECT responsible, count(*) AS n FROM scoped
  WHERE created_at >= :since AND created_at < :until GROUP BY responsible),
lost AS (
  SELECT s.responsible, count(DISTINCT s.id) AS n
  FROM stage_history h JOIN scoped s ON s.kind = h.kind AND s.id = h.entity_id
  WHERE h.pipeline = :pipeline AND h.entered_at >= :since AND h.entered_at < :until
    AND h.stage IN (SELECT value FROM json_each(:failure))
  GROUP BY s.responsible)
SELECT responsible, sum(incoming) AS incoming, sum(lost) AS lost
FROM (SELECT responsible, n AS incoming, 0 AS lost FROM incoming
      UNION ALL SELECT responsible, 0, n FROM lost)
GROUP BY responsible
ORDER BY responsible";

/// `traffic-light`: what the light reads about every contact and company: their leads and
/// deals in work (in a stage of `:open`), the tasks of their leads and deals overdue at
/// `:until` (made before it, due before it, not completed by then), whether the portrait's fields are filled, and whether a phone and an e-mail are.
/// Each count is an index search (leads and deals by `contact_id` / `company_id`, tasks by
/// `lead_id` / `deal_id`), so the report grows with the clients and their work.
pub const TRAFFIC_LIGHT: &str = "WITH clients AS (
  SELECT 'contact' AS kind, id, id AS contact_id, NULL AS company_id,
         name, responsible, phones, emails, fields FROM contacts
  UNION ALL
  SELECT 'company', id, NULL, id, name, responsible, phones, emails, fields FROM companies),
open AS (SELECT value AS key FROM json_each(:open))
SELECT c.kind, c.id, c.name, c.responsible,
       (SELECT count(*) FROM leads w WHERE w.contact_id = c.contact_id
          AND w.pipeline || '/' || w.stage IN (SELECT key FROM open))
       + (SELECT count(*) FROM leads w WHERE w.company_id = c.company_id
          AND w.pipeline || '/' || w.stage IN (SELECT key FROM open))
       + (SELECT count(*) FROM deals w WHERE w.contact_id = c.contact_id
          AND w.pipeline || '/' || w.stage IN (SELECT key FROM open))
       + (SELECT count(*) FROM deals w WHERE w.company_id = c.company_id
          AND w.pipeline || '/' || w.stage IN (SELECT key FROM open)) AS active,
       (SELECT count(*) FROM leads w JOIN tasks t ON t.lead_id = w.id
        WHERE w.contact_id = c.contact_id AND t.due_at < :until AND t.created_at < :until
          AND (t.completed_at IS NULL OR t.completed_at >= :until))
       + (SELECT count(*) FROM leads w JOIN tasks t ON t.lead_id = w.id
        WHERE w.company_id = c.company_id AND t.due_at < :until AND t.created_at < :until
          AND (t.completed_at IS NULL OR t.completed_at >= :until))
       + (SELECT count(*) FROM deals w JOIN tasks t ON t.deal_id = w.id
        WHERE w.contact_id = c.contact_id AND t.due_at < :until AND t.created_at < :until
          AND (t.completed_at IS NULL OR t.completed_at >= :until))
       + (SELECT count(*) FROM deals w JOIN tasks t ON t.deal_id = w.id
        WHERE w.company_id = c.company_id AND t.due_at < :until AND t.created_at < :until
          AND (t.completed_at IS NULL OR t.completed_at >= :until))
       AS overdue,
       NOT EXISTS (SELECT 1 FROM json_each(CASE c.kind WHEN 'contact' THEN :contact_portrait
                                                      ELSE :company_portrait END) f
                   WHERE json_extract(c.fields, '$.' || f.value) IS NULL) AS portrait,
       coalesce(json_array_length(c.phones), 0) > 0
         AND coalesce(json_array_length(c.emails), 0) > 0 AS contacts
FROM clients c
WHERE :who IS NULL OR c.responsible IN (SELECT value FROM json_each(:who))
ORDER BY c.kind DESC, c.id";

/// `kpi`: per employee, the leads created in the period `(:since, :until]` (by responsible),
/// those of the lead pipeline that entered a success / a failure stage in it, and their
/// tasks overdue at `:until` — made and due before it, not completed by then (by assignee). The `send_report` robot reads the same counts.
pub const KPI: &str = "WITH entered AS (
  SELECT l.responsible, h.stage, l.id
  FROM stage_history h JOIN leads l ON l.id = h.entity_id
  WHERE h.kind = 'lead' AND h.entered_at > :since AND h.entered_at <= :until
    AND h.pipeline = :pipeline AND l.responsible IS NOT NULL)
SELECT employee, sum(leads_in) AS leads_in, sum(converted) AS converted, sum(lost) AS lost,
       sum(overdue) AS overdue
FROM (
  SELECT responsible AS employee, count(*) AS leads_in, 0 AS converted, 0 AS lost, 0 AS overdue
  FROM leads WHERE created_at > :since AND created_at <= :until AND responsible IS NOT NULL
  GROUP BY responsible
  UNION ALL
  SELECT responsible, 0, count(DISTINCT id), 0, 0 FROM entered
  WHERE stage IN (SELECT value FROM json_each(:success)) GROUP BY responsible
  UNION ALL
  SELECT responsible, 0, 0, count(DISTINCT id), 0 FROM entered
  WHERE stage IN (SELECT value FROM json_each(:failure)) GROUP BY responsible
  UNION ALL
  SELECT assignee, 0, 0, 0, count(*) FROM tasks
  WHERE due_at < :until AND created_at < :until
    AND (completed_at IS NULL OR completed_at >= :until) GROUP BY assignee)
GROUP BY employee
ORDER BY employee";

/// Every report's statement by its name in docs/REPORTS.md.
pub const STATEMENTS: &[(&str, &str)] = &[
    ("funnel", FUNNEL),
    ("funnel-steps", FUNNEL_STEPS),
    ("conversion", CONVERSION),
    ("conversion-reasons", CONVERSION_REASONS),
    ("managers", IN_WORK),
    ("time-in-stage", TIME_IN_STAGE),
    ("traffic-light", TRAFFIC_LIGHT),
    ("forgotten", FORGOTTEN),
    ("incoming-vs-lost", INCOMING_VS_LOST),
    ("kpi", KPI),
];

/// Runs `sql` with the parameters it names, mapping each row with `f`.
fn rows<T>(
    conn: &Connection,
    sql: &str,
    p: &Params,
    mut f: impl FnMut(&Row<'_>) -> rusqlite::Result<T>,
) -> Result<Vec<T>, Error> {
    let mut stmt = conn.prepare_cached(sql)?;
    for (name, value) in p.bindings() {
        if let Some(i) = stmt.parameter_index(name)? {
            let v = match value {
                Binding::Null => Sql::Null,
                Binding::Text(t) => Sql::Text(t),
            };
            stmt.raw_bind_parameter(i, v)?;
        }
    }
    let mut out = Vec::new();
    let mut q = stmt.raw_query();
    while let Some(r) = q.next()? {
        out.push(f(r)?);
    }
    Ok(out)
}

/// One stage of the funnel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FunnelRow {
    /// The stage.
    pub stage: String,
    /// Leads (deals) of the cohort that were ever in it.
    pub reached: i64,
    /// Those of them in it now.
    pub current: i64,
    /// The cohort: leads (deals) of the pipeline created in the period.
    pub cohort: i64,
}

/// [`FUNNEL`]: the stages the period's cohort reached (stages none reached are absent).
pub fn funnel(db: &impl Source, p: &Params) -> Result<Vec<FunnelRow>, Error> {
    rows(db.sql(Token(())), FUNNEL, p, |r| {
        Ok(FunnelRow {
            stage: r.get(0)?,
            reached: r.get(1)?,
            current: r.get(2)?,
            cohort: r.get(3)?,
        })
    })
}

/// [`FUNNEL_STEPS`]: per stage after the first step, how many reached it from the one before
/// (absent: none).
pub fn funnel_steps(db: &impl Source, p: &Params) -> Result<BTreeMap<String, i64>, Error> {
    Ok(rows(db.sql(Token(())), FUNNEL_STEPS, p, |r| {
        Ok((r.get(0)?, r.get(1)?))
    })?
    .into_iter()
    .collect())
}

/// One responsible's conversion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConversionRow {
    /// The responsible (`None`: nobody).
    pub responsible: Option<String>,
    /// Leads (deals) created in the period.
    pub leads: i64,
    /// Of them, in a success stage now.
    pub won: i64,
    /// Of them, in a failure stage now.
    pub lost: i64,
}

/// [`CONVERSION`].
pub fn conversion(db: &impl Source, p: &Params) -> Result<Vec<ConversionRow>, Error> {
    rows(db.sql(Token(())), CONVERSION, p, |r| {
        Ok(ConversionRow {
            responsible: r.get(0)?,
            leads: r.get(1)?,
            won: r.get(2)?,
            lost: r.get(3)?,
        })
    })
}

/// Lost leads (deals) of one responsible in one failure stage with one reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LostReasonRow {
    /// The responsible.
    pub responsible: Option<String>,
    /// The failure stage.
    pub stage: String,
    /// The reason given (empty: none).
    pub reason: String,
    /// How many.
    pub lost: i64,
}

/// [`CONVERSION_REASONS`].
pub fn conversion_reasons(db: &impl Source, p: &Params) -> Result<Vec<LostReasonRow>, Error> {
    rows(db.sql(Token(())), CONVERSION_REASONS, p, |r| {
        Ok(LostReasonRow {
            responsible: r.get(0)?,
            stage: r.get(1)?,
            reason: r.get(2)?,
            lost: r.get(3)?,
        })
    })
}

/// [`IN_WORK`]: leads and deals in work per responsible (absent: none).
pub fn in_work(db: &impl Source, p: &Params) -> Result<BTreeMap<String, i64>, Error> {
    Ok(rows(db.sql(Token(())), IN_WORK, p, |r| {
        Ok((r.get(0)?, r.get(1)?))
    })?
    .into_iter()
    .collect())
}

/// One stage's stays.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StageTimeRow {
    /// The stage.
    pub stage: String,
    /// Stays that began in the period.
    pub visits: i64,
    /// Of them, still going on at `:until`.
    pub open: i64,
    /// Their average length in seconds.
    pub avg_seconds: i64,
    /// Of them, longer than the stage's target (`None`: it has none).
    pub over_target: Option<i64>,
}

/// [`TIME_IN_STAGE`].
pub fn time_in_stage(db: &impl Source, p: &Params) -> Result<Vec<StageTimeRow>, Error> {
    rows(db.sql(Token(())), TIME_IN_STAGE, p, |r| {
        Ok(StageTimeRow {
            stage: r.get(0)?,
            visits: r.get(1)?,
            open: r.get(2)?,
            avg_seconds: r.get(3)?,
            over_target: r.get(4)?,
        })
    })
}

/// A forgotten lead or deal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForgottenRow {
    /// `lead` or `deal`.
    pub kind: String,
    /// Its id.
    pub id: i64,
    /// Its title.
    pub title: Option<String>,
    /// Its responsible.
    pub responsible: Option<String>,
    /// Its stage.
    pub stage: String,
    /// Its last activity.
    pub last_activity: DateTime<Utc>,
}

/// [`FORGOTTEN`], the longest forgotten first.
pub fn forgotten(db: &impl Source, p: &Params) -> Result<Vec<ForgottenRow>, Error> {
    let raw = rows(db.sql(Token(())), FORGOTTEN, p, |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, i64>(1)?,
            r.get::<_, Option<String>>(2)?,
            r.get::<_, Option<String>>(3)?,
            r.get::<_, String>(4)?,
            r.get::<_, String>(5)?,
        ))
    })?;
    raw.into_iter()
        .map(|(kind, id, title, responsible, stage, at)| {
            let last_activity = parse_time(&at).ok_or_else(|| Error::Corrupt {
                position: 0,
                why: format!("the newest event of {kind}-{id} has occurred_at {at:?}, not a time"),
            })?;
            Ok(ForgottenRow {
                kind,
                id,
                title,
                responsible,
                stage,
                last_activity,
            })
        })
        .collect()
}

/// One responsible's incoming and lost.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IncomingLostRow {
    /// The responsible.
    pub responsible: Option<String>,
    /// Leads (deals) created in the period.
    pub incoming: i64,
    /// Leads (deals) that entered a failure stage in the period.
    pub lost: i64,
}

/// [`INCOMING_VS_LOST`].
pub fn incoming_vs_lost(db: &impl Source, p: &Params) -> Result<Vec<IncomingLostRow>, Error> {
    rows(db.sql(Token(())), INCOMING_VS_LOST, p, |r| {
        Ok(IncomingLostRow {
            responsible: r.get(0)?,
            incoming: r.get(1)?,
            lost: r.get(2)?,
        })
    })
}

/// What the traffic light reads about one client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientRow {
    /// `contact` or `company`.
    pub kind: String,
    /// Its id.
    pub id: i64,
    /// Its name.
    pub name: Option<String>,
    /// Its responsible.
    pub responsible: Option<String>,
    /// Its leads and deals in work.
    pub active: i64,
    /// Overdue open tasks of its leads and deals.
    pub overdue: i64,
    /// Its portrait's fields are all filled.
    pub portrait: bool,
    /// It has a phone and an e-mail.
    pub contacts: bool,
}

/// [`TRAFFIC_LIGHT`]: contacts, then companies, by id.
pub fn traffic_light(db: &impl Source, p: &Params) -> Result<Vec<ClientRow>, Error> {
    rows(db.sql(Token(())), TRAFFIC_LIGHT, p, |r| {
        Ok(ClientRow {
            kind: r.get(0)?,
            id: r.get(1)?,
            name: r.get(2)?,
            responsible: r.get(3)?,
            active: r.get(4)?,
            overdue: r.get(5)?,
            portrait: r.get(6)?,
            contacts: r.get(7)?,
        })
    })
}

/// [`KPI`] for `leadflow report kpi` (the robot's path is [`kpi_counts`]).
pub fn kpi(db: &impl Source, p: &Params) -> Result<KpiCounts, Error> {
    kpi_rows(db.sql(Token(())), p)
}

/// [`KPI`] for a KPI query of the rules' workspace: the `send_report` robot's counts.
pub(crate) fn kpi_counts(conn: &Connection, q: &KpiQuery<'_>) -> Result<KpiCounts, Error> {
    let p = Params {
        pipeline: q.pipeline.to_owned(),
        since: q.since,
        until: q.until,
        who: None,
        success: q.success.to_vec(),
        failure: q.failure.to_vec(),
        steps: Vec::new(),
        open: Vec::new(),
        targets: BTreeMap::new(),
        before: q.until,
        contact_portrait: Vec::new(),
        company_portrait: Vec::new(),
    };
    kpi_rows(conn, &p)
}

fn kpi_rows(conn: &Connection, p: &Params) -> Result<KpiCounts, Error> {
    let mut out = KpiCounts::default();
    let all = rows(conn, KPI, p, |r| {
        Ok((
            r.get::<_, String>(0)?,
            [r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?],
        ))
    })?;
    let put = |m: &mut HashMap<String, i64>, who: &str, n: i64| {
        if n != 0 {
            m.insert(who.to_owned(), n);
        }
    };
    for (who, [leads_in, converted, lost, overdue]) in all {
        put(&mut out.leads_in, &who, leads_in);
        put(&mut out.converted, &who, converted);
        put(&mut out.lost, &who, lost);
        put(&mut out.overdue, &who, overdue);
    }
    Ok(out)
}
