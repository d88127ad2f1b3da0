//! `import FILE`: leads from CSV (header row) or JSON Lines, in one transaction — a bad row is
//! reported with its line number and nothing is imported.

use crate::cli::ImportArgs;
use crate::ctx::Ctx;
use crate::error::CliError;
use crate::logcmd::progress;
use crate::output::json_line;
use leadflow_engine::command::NewLead;
use leadflow_engine::{Command, EntityKind};
use serde_json::{Map, Value, json};
use std::io::BufRead;
use std::path::Path;

const BUILTIN: &[&str] = &[
    "title",
    "name",
    "phone",
    "phones",
    "email",
    "emails",
    "source",
    "client_type",
    "responsible",
    "stage",
    "comment",
    "contact",
    "company",
];

/// Builds a lead from one record: built-in keys, custom field ids, and (JSON) a `fields` object.
fn lead_from(record: Map<String, Value>, default_source: &str) -> Result<NewLead, String> {
    let mut lead = NewLead {
        source: Some(default_source.to_owned()),
        ..NewLead::default()
    };
    let text = |k: &str, v: &Value| -> Result<Option<String>, String> {
        match v {
            Value::Null => Ok(None),
            Value::String(s) if s.trim().is_empty() => Ok(None),
            Value::String(s) => Ok(Some(s.trim().to_owned())),
            Value::Number(n) => Ok(Some(n.to_string())),
            other => Err(format!("'{k}' must be text, got {other}")),
        }
    };
    let list = |k: &str, v: &Value| -> Result<Vec<String>, String> {
        match v {
            Value::Array(items) => items
                .iter()
                .map(|i| text(k, i).map(Option::unwrap_or_default))
                .filter(|r| r.as_ref().map_or(true, |s| !s.is_empty()))
                .collect(),
            other => Ok(text(k, other)?
                .map(|s| {
                    s.split([';', ','])
                        .map(|p| p.trim().to_owned())
                        .filter(|p| !p.is_empty())
                        .collect()
                })
                .unwrap_or_default()),
        }
    };
    let id = |k: &str, v: &Value| -> Result<Option<i64>, String> {
        match text(k, v)? {
            None => Ok(None),
            Some(s) => s
                .rsplit('-')
                .next()
                .unwrap_or(&s)
                .parse()
                .map(Some)
                .map_err(|_| format!("'{k}' must be an id like 42, got '{s}'")),
        }
    };
    for (k, v) in record {
        match k.as_str() {
            "title" => lead.title = text(&k, &v)?,
            "name" => lead.name = text(&k, &v)?,
            "phone" | "phones" => lead.phones.extend(list(&k, &v)?),
            "email" | "emails" => lead.emails.extend(list(&k, &v)?),
            "source" => {
                if let Some(s) = text(&k, &v)? {
                    lead.source = Some(s);
                }
            }
            "client_type" => lead.client_type = text(&k, &v)?,
            "responsible" => lead.responsible = text(&k, &v)?.map(|s| s.as_str().into()),
            "stage" => lead.stage = text(&k, &v)?.map(|s| s.as_str().into()),
            "comment" => lead.comment = text(&k, &v)?,
            "contact" => lead.contact = id(&k, &v)?,
            "company" => lead.company = id(&k, &v)?,
            "fields" => match v {
                Value::Object(m) => lead.fields.extend(m),
                Value::Null => {}
                other => return Err(format!("'fields' must be an object, got {other}")),
            },
            _ => {
                if !(v.is_null() || v.as_str().is_some_and(|s| s.trim().is_empty())) {
                    lead.fields.insert(k, v);
                }
            }
        }
    }
    Ok(lead)
}

enum Format {
    Csv,
    Jsonl,
}

fn format_of(args: &ImportArgs) -> Result<Format, CliError> {
    let ext = args.format.clone().or_else(|| {
        args.file
            .extension()
            .map(|e| e.to_string_lossy().to_lowercase())
    });
    match ext.as_deref() {
        Some("csv") => Ok(Format::Csv),
        Some("jsonl" | "ndjson" | "json") => Ok(Format::Jsonl),
        other => Err(CliError::Usage(format!(
            "cannot tell the format of {} ({}); pass --format csv or --format jsonl",
            args.file.display(),
            other.map_or("no extension".into(), |e| format!("'{e}'"))
        ))),
    }
}

/// Streams records out of the file, calling `each(line, record)`.
fn read_records(
    path: &Path,
    format: Format,
    mut each: impl FnMut(usize, u64, Result<Map<String, Value>, String>) -> Result<(), CliError>,
) -> Result<(), CliError> {
    let file = std::fs::File::open(path).map_err(|e| CliError::io(path, e))?;
    let file_name = path.display().to_string();
    match format {
        Format::Csv => {
            let mut reader = csv::ReaderBuilder::new()
                .flexible(false)
                .trim(csv::Trim::All)
                .from_reader(std::io::BufReader::new(file));
            let headers = reader
                .headers()
                .map_err(|e| CliError::Import {
                    file: file_name.clone(),
                    line: 1,
                    message: format!("bad header row: {e}"),
                })?
                .clone();
            for (i, h) in headers.iter().enumerate() {
                if h.is_empty() {
                    return Err(CliError::Import {
                        file: file_name,
                        line: 1,
                        message: format!("column {} has no name", i + 1),
                    });
                }
            }
            let mut record = csv::StringRecord::new();
            loop {
                let line = reader.position().line() as usize;
                match reader.read_record(&mut record) {
                    Ok(false) => break,
                    Ok(true) => {
                        let line = record.position().map_or(line, |p| p.line() as usize);
                        let map = headers
                            .iter()
                            .zip(record.iter())
                            .filter(|(_, v)| !v.is_empty())
                            .map(|(h, v)| (h.to_owned(), Value::from(v)))
                            .collect();
                        each(line, reader.position().byte(), Ok(map))?;
                    }
                    Err(e) => {
                        let line = e.position().map_or(line, |p| p.line() as usize);
                        let message = match e.kind() {
                            csv::ErrorKind::UnequalLengths {
                                expected_len, len, ..
                            } => {
                                format!("expected {expected_len} cells like the header, got {len}")
                            }
                            _ => e.to_string(),
                        };
                        return Err(CliError::Import {
                            file: file_name,
                            line,
                            message,
                        });
                    }
                }
            }
        }
        Format::Jsonl => {
            let mut bytes = 0u64;
            let mut reader = std::io::BufReader::new(file);
            let mut raw = Vec::new();
            for i in 0.. {
                raw.clear();
                let n = reader
                    .read_until(b'\n', &mut raw)
                    .map_err(|e| CliError::io(path, e))?;
                if n == 0 {
                    break;
                }
                bytes += n as u64;
                let line_text = match std::str::from_utf8(&raw) {
                    Ok(t) => t.trim_end_matches(['\n', '\r']),
                    Err(e) => {
                        return Err(CliError::Import {
                            file: file_name,
                            line: i + 1,
                            message: format!(
                                "not UTF-8 (byte {} of the line); JSON Lines files are UTF-8: save it as UTF-8",
                                e.valid_up_to() + 1
                            ),
                        });
                    }
                };
                if line_text.trim().is_empty() {
                    continue;
                }
                let parsed = match serde_json::from_str::<Value>(line_text) {
                    Ok(Value::Object(m)) => Ok(m),
                    Ok(other) => Err(format!("expected a JSON object, got {}", clip_json(&other))),
                    Err(e) => Err(format!("malformed JSON: {e}")),
                };
                each(i + 1, bytes, parsed)?;
            }
        }
    }
    Ok(())
}

/// `1 lead`, `2 leads`.
fn leads(n: usize) -> String {
    format!("{n} lead{}", if n == 1 { "" } else { "s" })
}

fn clip_json(v: &Value) -> String {
    crate::output::clip(&v.to_string(), 40)
}

pub fn import(ctx: &mut Ctx, args: ImportArgs) -> Result<(), CliError> {
    let format = format_of(&args)?;
    let rules = crate::automation::prepare(ctx)?;
    let size = std::fs::metadata(&args.file)
        .map_err(|e| CliError::io(&args.file, e))?
        .len();
    let file_name = args.file.display().to_string();
    let default_source = if ctx.config.sources.iter().any(|s| s == "import") {
        "import"
    } else {
        "manual"
    };
    let unknown_column = |k: &str| {
        !BUILTIN.contains(&k) && k != "fields" && ctx.config.field(EntityKind::Lead, k).is_none()
    };
    let bar = progress(size, "import");
    let start = std::time::Instant::now();
    let meta = ctx.meta();
    let config = &ctx.config;
    let (first, count) = ctx.store.write(ctx.clock.now(), |tx| {
        let mut first = None;
        let mut count = 0usize;
        read_records(&args.file, format, |line, bytes, record| {
            let fail = |message: String| CliError::Import { file: file_name.clone(), line, message };
            let record = record.map_err(fail)?;
            if let Some(k) = record.keys().find(|k| unknown_column(k)) {
                return Err(fail(format!("unknown column '{k}': not a lead field nor a custom lead field in the configuration")));
            }
            let lead = lead_from(record, default_source).map_err(fail)?;
            let out = tx.execute(config, &Command::CreateLead(lead), &meta).map_err(|e| match e {
                leadflow_store::Error::Rejected(r) => fail(r.to_string()),
                other => CliError::Store(other),
            })?;
            first.get_or_insert(out.stream);
            count += 1;
            if count.is_multiple_of(1024) {
                bar.set_position(bytes);
            }
            Ok(())
        })?;
        Ok::<_, CliError>((first, count))
    })?;
    bar.finish_and_clear();
    let secs = start.elapsed().as_secs_f64();
    if let Some(rt) = &rules {
        let done = format!("{} imported", leads(count));
        crate::automation::settle(ctx, rt, None, &done)?;
    }
    if ctx.json {
        json_line(
            &json!({"imported": count, "first": first.map(|s| s.to_string()), "seconds": secs}),
        );
    } else if let Some(first) = first {
        let range = if count == 1 {
            format!("lead-{}", first.id)
        } else {
            format!("lead-{}..lead-{}", first.id, first.id + count as i64 - 1)
        };
        outln!("imported {} ({range}) in {secs:.1}s", leads(count));
    } else {
        outln!("imported nothing: {} has no rows", args.file.display());
    }
    Ok(())
}
