//! `report`: the head of sales' reports (scenario D, seed 003). The figures are
//! `leadflow_report::figures` (shared with the dashboard): the store's `report` queries (one
//! SQL statement each, printed in docs/REPORTS.md) and the figures derived from them; this
//! module maps the command line to its filters and prints a table, CSV, one JSON document
//! (with the SQL parameters that give its numbers) or an HTML page with charts.
//!
//! `--as-of T|POS`: `figures::build` reads only the `Source` it is given and the `until` of
//! its `Scope`; a report as of a time is the same call on a scratch copy of the log up to then
//! with its projections (`history::as_of_store`, as `show --as-of`), with `until` at that
//! instant by default and never after it.

use crate::cli::{ReportArgs, ReportFormat, ReportKind};
use crate::ctx::Ctx;
use crate::error::CliError;
use crate::output::{Table, json_pretty, time};
use chrono::Duration;
use leadflow_report::charts;
use leadflow_report::figures::{Filters, Kind, Scope, build};
use leadflow_store::fmt_time;
use leadflow_store::report::{Binding, Params};
use serde_json::{Value, json};

/// The report's kind in `leadflow_report`.
fn kind(k: ReportKind) -> Kind {
    match k {
        ReportKind::Funnel => Kind::Funnel,
        ReportKind::Conversion => Kind::Conversion,
        ReportKind::Managers => Kind::Managers,
        ReportKind::TimeInStage => Kind::TimeInStage,
        ReportKind::TrafficLight => Kind::TrafficLight,
        ReportKind::Forgotten => Kind::Forgotten,
        ReportKind::IncomingVsLost => Kind::IncomingVsLost,
        ReportKind::Kpi => Kind::Kpi,
    }
}

/// `report KIND`, or with `--as-of` the report as the database stood then.
pub(crate) fn report(ctx: &Ctx, args: ReportArgs) -> Result<(), CliError> {
    let as_of = args
        .as_of
        .as_deref()
        .map(|t| crate::history::resolve_at(ctx, t, "--as-of"))
        .transpose()?;
    // The period's end: the time given, or as of a position just after its event (a
    // microsecond, the stored times' resolution, later) so that what it created is in it.
    let end = as_of.map(|(_, then)| match args.as_of.as_deref().map(str::trim) {
        Some(t) if t.parse::<i64>().is_ok() => then + Duration::microseconds(1),
        _ => then,
    });
    let kind = kind(args.report);
    let filters = Filters {
        pipeline: args.pipeline.clone(),
        employee: args.employee.clone(),
        team: args.team.clone(),
        since: args.since.clone(),
        until: args.until.clone(),
        days: args.days,
    };
    let scope = Scope::resolve(&ctx.config, kind, &filters, ctx.clock.now(), end)?;
    let params = scope.params(&ctx.config, kind);
    let built = match as_of {
        None => build(&ctx.store, &ctx.config, kind, &scope, &params)?,
        Some((position, _)) => {
            let (dir, scratch) = crate::history::as_of_store(ctx, position)?;
            let built = build(&scratch, &ctx.config, kind, &scope, &params);
            drop(scratch);
            drop(dir);
            built?
        }
    };
    let format = args.format.unwrap_or(if ctx.json {
        ReportFormat::Json
    } else {
        ReportFormat::Table
    });
    let tz = ctx.config.calendar.timezone;
    let period = format!("{} – {}", time(tz, scope.since), time(tz, scope.until));
    // The header's "as of position N (time)" (tables and HTML).
    let header = match as_of {
        None => period,
        Some((position, then)) => {
            format!("{period}, as of position {position} ({})", time(tz, then))
        }
    };
    match format {
        ReportFormat::Json => {
            let mut doc = json!({
                "report": kind.name(),
                "pipeline": scope.pipeline.id.as_str(),
                "since": fmt_time(scope.since),
                "until": fmt_time(scope.until),
                "params": bindings_json(&params),
            });
            if let Some((position, then)) = as_of {
                doc["as_of"] = json!({"position": position, "time": fmt_time(then)});
            }
            if let (Value::Object(d), Value::Object(b)) = (&mut doc, built.json) {
                d.extend(b);
            }
            json_pretty(&doc);
        }
        ReportFormat::Csv => {
            let headers: Vec<&str> = built.headers.iter().map(|h| h.as_ref()).collect();
            crate::output::csv_out(&headers, &built.rows)?;
        }
        ReportFormat::Table => {
            outln!("{} — {}, {header}", built.title, scope.pipeline.name);
            if built.rows.is_empty() {
                outln!("(nothing in this period)");
            } else {
                let mut t = Table::new(&built.headers);
                for r in built.rows.clone() {
                    t.row(r);
                }
                t.print();
            }
            for n in &built.notes {
                outln!("{n}");
            }
        }
        ReportFormat::Html => {
            let page = charts::page(
                &format!("{} — {}", built.title, scope.pipeline.name),
                &header,
                &built.headers,
                &built.rows,
                &built.notes,
                &built.charts,
            );
            outln!("{page}");
        }
    }
    Ok(())
}

/// The SQL parameters as JSON: `{":since": "…", ":who": null, …}`.
fn bindings_json(p: &Params) -> Value {
    p.bindings()
        .into_iter()
        .map(|(name, b)| {
            let v = match b {
                Binding::Null => Value::Null,
                Binding::Text(t) => Value::String(t),
            };
            (name.to_owned(), v)
        })
        .collect::<serde_json::Map<_, _>>()
        .into()
}
