//! `import FILE`: leads from CSV (header row) or JSON Lines, in one transaction — a bad row is
//! reported with its line number and nothing is imported.

use crate::cli::ImportArgs;
use crate::ctx::Ctx;
use crate::error::CliError;
use crate::logcmd::progress;
use crate::output::json_line;
use leadflow_engine::command::NewLead;
use leadflow_engine::event::LeadCreated;
use leadflow_engine::{Command, EntityKind, Event};
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
            "phone" | "phones" => lead.phones.extend(rejoin_extensions(list(&k, &v)?)),
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

/// Puts back together a phone and its extension that splitting a cell on `,` and `;` tore
/// apart (`+7 937 892-20-84, доб. 12`, `+79378922084;ext=12`).
fn rejoin_extensions(parts: Vec<String>) -> Vec<String> {
    let mut out: Vec<String> = Vec::with_capacity(parts.len());
    for p in parts {
        let lower = p.to_lowercase();
        let is_extension = ["доб", "ext", "x", "#"]
            .iter()
            .any(|w| lower.starts_with(w));
        match out.last_mut() {
            Some(prev) if is_extension => {
                prev.push_str(if lower.starts_with("ext=") { ";" } else { " " });
                prev.push_str(&p);
            }
            _ => out.push(p),
        }
    }
    out
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

/// How a CSV file is read: its text encoding and its cell separator, given or detected.
#[derive(Debug, Clone, Copy)]
pub(crate) struct CsvDialect {
    /// The text encoding.
    pub encoding: &'static encoding_rs::Encoding,
    /// The cell separator.
    pub delimiter: u8,
    /// Whether each was detected rather than given.
    pub detected: (bool, bool),
}

/// Parses `--encoding`: any WHATWG label (`utf-8`, `windows-1251`, `cp1251`, `koi8-r`…).
fn encoding_arg(label: &str) -> Result<&'static encoding_rs::Encoding, CliError> {
    encoding_rs::Encoding::for_label_no_replacement(label.trim().as_bytes()).ok_or_else(|| {
        CliError::Usage(format!(
            "unknown --encoding '{label}'; write utf-8, windows-1251 (cp1251), koi8-r, ibm866 or another WHATWG label"
        ))
    })
}

/// Parses `--delimiter`: one character, or `tab`.
fn delimiter_arg(text: &str) -> Result<u8, CliError> {
    match text {
        "tab" | "\\t" | "\t" => Ok(b'\t'),
        t if t.len() == 1 && t.is_ascii() && t != "\"" => Ok(t.as_bytes()[0]),
        _ => Err(CliError::Usage(format!(
            "bad --delimiter '{text}': write one character like ';' or ',', or tab"
        ))),
    }
}

/// Whether `text` reads like Windows-1251 Russian: its non-ASCII characters are (nearly) all
/// Cyrillic letters, № and typographic punctuation.
fn plausible_cyrillic(text: &str) -> bool {
    let (mut cyrillic, mut other) = (0usize, 0usize);
    for c in text.chars().filter(|c| !c.is_ascii()) {
        if matches!(
            c,
            '\u{0400}'
                ..='\u{04FF}' | '№' | '«' | '»' | '–' | '—' | '“' | '”' | '„' | '’' | '\u{a0}'
        ) {
            cyrillic += 1;
        } else {
            other += 1;
        }
    }
    cyrillic > 0 && other * 20 <= cyrillic
}

/// The separator of the header row: the most frequent of `,` `;` tab `|` outside quotes
/// (`,` when none).
fn detect_delimiter(text: &str) -> u8 {
    let header = text.lines().next().unwrap_or_default();
    let mut counts = [(b',', 0usize), (b';', 0), (b'\t', 0), (b'|', 0)];
    let mut quoted = false;
    for b in header.bytes() {
        if b == b'"' {
            quoted = !quoted;
        } else if !quoted && let Some(c) = counts.iter_mut().find(|(d, _)| *d == b) {
            c.1 += 1;
        }
    }
    counts
        .iter()
        .filter(|(_, n)| *n > 0)
        .max_by_key(|(_, n)| *n)
        .map_or(b',', |(d, _)| *d)
}

/// The 1-based line of byte `offset`.
fn line_of(bytes: &[u8], offset: usize) -> usize {
    bytes[..offset.min(bytes.len())]
        .iter()
        .filter(|b| **b == b'\n')
        .count()
        + 1
}

/// Decodes a CSV file: UTF-8 (a BOM is dropped) unless it is not valid UTF-8 and reads as
/// Windows-1251, or as `--encoding` says.
fn decode_csv(
    path: &Path,
    bytes: &[u8],
    args: &ImportArgs,
) -> Result<(String, CsvDialect), CliError> {
    let file = path.display().to_string();
    let given = args.encoding.as_deref().map(encoding_arg).transpose()?;
    let (encoding, text) = match given {
        Some(enc) => {
            let (without_bom, enc) = match encoding_rs::Encoding::for_bom(bytes) {
                Some((bom, len)) if bom == enc => (&bytes[len..], enc),
                _ => (bytes, enc),
            };
            match enc.decode_without_bom_handling_and_without_replacement(without_bom) {
                Some(t) => (enc, t.into_owned()),
                None => {
                    let bad = if enc == encoding_rs::UTF_8 {
                        std::str::from_utf8(without_bom)
                            .err()
                            .map_or(0, |e| e.valid_up_to())
                    } else {
                        0
                    };
                    return Err(CliError::Import {
                        file,
                        line: line_of(without_bom, bad),
                        message: format!("not valid {} text", enc.name()),
                    });
                }
            }
        }
        None => {
            let without_bom = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
            match std::str::from_utf8(without_bom) {
                Ok(t) => (encoding_rs::UTF_8, t.to_owned()),
                Err(e) => {
                    let (t, _, _) = encoding_rs::WINDOWS_1251.decode(without_bom);
                    if !plausible_cyrillic(&t) {
                        return Err(CliError::Import {
                            file,
                            line: line_of(without_bom, e.valid_up_to()),
                            message: "not UTF-8, nor Russian text in Windows-1251; pass --encoding with the file's encoding (e.g. --encoding koi8-r)".into(),
                        });
                    }
                    (encoding_rs::WINDOWS_1251, t.into_owned())
                }
            }
        }
    };
    let delimiter = args.delimiter.as_deref().map(delimiter_arg).transpose()?;
    let dialect = CsvDialect {
        encoding,
        delimiter: delimiter.unwrap_or_else(|| detect_delimiter(&text)),
        detected: (given.is_none(), delimiter.is_none()),
    };
    Ok((text, dialect))
}

/// Streams records out of the file, calling `each(line, record)`; returns how a CSV file was
/// read.
fn read_records(
    path: &Path,
    format: Format,
    args: &ImportArgs,
    mut each: impl FnMut(usize, u64, Result<Map<String, Value>, String>) -> Result<(), CliError>,
) -> Result<Option<CsvDialect>, CliError> {
    let file_name = path.display().to_string();
    match format {
        Format::Csv => {
            let bytes = std::fs::read(path).map_err(|e| CliError::io(path, e))?;
            let (text, dialect) = decode_csv(path, &bytes, args)?;
            let mut reader = csv::ReaderBuilder::new()
                .flexible(false)
                .trim(csv::Trim::All)
                .delimiter(dialect.delimiter)
                .from_reader(text.as_bytes());
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
            Ok(Some(dialect))
        }
        Format::Jsonl => {
            let file = std::fs::File::open(path).map_err(|e| CliError::io(path, e))?;
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
            Ok(None)
        }
    }
}

/// A row of the file that repeats an earlier one.
#[derive(Debug, serde::Serialize)]
struct Duplicate {
    line: usize,
    same_as: usize,
    /// `row` (every cell the same), `phone`, `email`.
    by: &'static str,
    value: Option<String>,
}

/// Remembers the rows, phones and e-mails seen so far in one file.
#[derive(Default)]
struct Seen {
    keys: std::collections::HashMap<(&'static str, String), usize>,
    found: Vec<Duplicate>,
}

impl Seen {
    /// `lead` as the file gave it; `created` as it was recorded, with normalised phones and
    /// e-mails.
    fn row(&mut self, line: usize, lead: &NewLead, created: Option<&LeadCreated>) {
        let whole = serde_json::to_string(&json!({
            "title": lead.title, "name": lead.name, "phones": lead.phones, "emails": lead.emails,
            "source": lead.source, "client_type": lead.client_type, "comment": lead.comment,
            "fields": lead.fields, "contact": lead.contact, "company": lead.company,
        }))
        .expect("serialisable");
        if self.check(line, "row", whole, None) {
            return;
        }
        let Some(created) = created else { return };
        let phones = created.phones.iter().map(|p| ("phone", p.clone()));
        let emails = created.emails.iter().map(|e| ("email", e.clone()));
        for (by, value) in phones.chain(emails) {
            if self.check(line, by, value.clone(), Some(value)) {
                return;
            }
        }
    }

    fn check(&mut self, line: usize, by: &'static str, key: String, value: Option<String>) -> bool {
        match self.keys.entry((by, key)) {
            std::collections::hash_map::Entry::Occupied(first) => {
                self.found.push(Duplicate {
                    line,
                    same_as: *first.get(),
                    by,
                    value,
                });
                true
            }
            std::collections::hash_map::Entry::Vacant(v) => {
                v.insert(line);
                false
            }
        }
    }
}

/// `1 lead`, `2 leads`.
fn leads(n: usize) -> String {
    format!("{n} lead{}", if n == 1 { "" } else { "s" })
}

fn clip_json(v: &Value) -> String {
    crate::output::clip(&v.to_string(), 40)
}

pub(crate) fn import(ctx: &mut Ctx, args: ImportArgs) -> Result<(), CliError> {
    let format = format_of(&args)?;
    ctx.check_backdate()?;
    let rules = crate::automation::before_command(ctx)?;
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
    let (first, count, dialect, duplicates) = ctx.store.write_with(ctx.recorded_at(), |tx| {
        let mut first = None;
        let mut count = 0usize;
        let mut seen = Seen::default();
        let dialect = read_records(&args.file, format, &args, |line, bytes, record| {
            let fail = |message: String| CliError::Import { file: file_name.clone(), line, message };
            let record = record.map_err(fail)?;
            if let Some(k) = record.keys().find(|k| unknown_column(k)) {
                let hint = if k.contains([',', ';', '\t', '|']) {
                    "; the cells seem to be separated by another character: pass --delimiter"
                } else {
                    "; `leadflow import --help` lists the columns, `leadflow config show fields` the custom ones"
                };
                return Err(fail(format!("unknown column '{k}': not a lead field nor a custom lead field in the configuration{hint}")));
            }
            let lead = lead_from(record, default_source).map_err(fail)?;
            let as_given = lead.clone();
            let out = tx.execute(config, &Command::CreateLead(lead), &meta).map_err(|e| match e {
                leadflow_store::Error::Rejected(r) => fail(r.to_string()),
                other => CliError::Store(other),
            })?;
            let created = out.events.iter().find_map(|e| match e {
                Event::LeadCreated(c) => Some(c),
                _ => None,
            });
            seen.row(line, &as_given, created);
            first.get_or_insert(out.stream);
            count += 1;
            if count.is_multiple_of(1024) {
                bar.set_position(bytes);
            }
            Ok(())
        })?;
        Ok::<_, CliError>((first, count, dialect, seen.found))
    })?;
    bar.finish_and_clear();
    if let Some(d) = dialect
        && (d.encoding != encoding_rs::UTF_8 || d.delimiter != b',')
    {
        let sep = match d.delimiter {
            b'\t' => "tab".to_owned(),
            c => format!("'{}'", c as char),
        };
        errln!(
            "read {file_name} as {} text{}, {sep}-separated{}",
            d.encoding.name(),
            if d.detected.0 { " (detected)" } else { "" },
            if d.detected.1 { " (detected)" } else { "" },
        );
    }
    const SHOWN: usize = 20;
    if duplicates.len() > SHOWN {
        errln!(
            "warning: {file_name} has {} rows repeating an earlier row, phone or e-mail; the first {SHOWN}:",
            duplicates.len()
        );
    }
    for d in duplicates.iter().take(SHOWN) {
        errln!(
            "warning: {file_name}:{} repeats line {}{}",
            d.line,
            d.same_as,
            match (&d.value, d.by) {
                (Some(v), by) => format!(" (the same {by} {v})"),
                (None, _) => " (every cell the same)".into(),
            }
        );
    }
    let secs = start.elapsed().as_secs_f64();
    // What the rules then did, and how long it took: most of an import with rules.
    let mut robots = None;
    if let Some(rt) = &rules {
        let done = format!("{} imported", leads(count));
        let (before, started) = (ctx.store.last_position()?, std::time::Instant::now());
        crate::automation::settle(ctx, rt, None, &done, meta.occurred_at)?;
        let appended = ctx.store.last_position()?
            - before
            - crate::automation::count_after(&ctx.store, "ruleset.activated", before)? as i64;
        robots = Some((appended, started.elapsed().as_secs_f64()));
    }
    if ctx.json {
        json_line(
            &json!({"imported": count, "first": first.map(|s| s.to_string()), "seconds": secs, "duplicates": duplicates,
                "robot_events": robots.map(|r| r.0), "robot_seconds": robots.map(|r| r.1)}),
        );
    } else if let Some(first) = first {
        let range = if count == 1 {
            format!("lead-{}", first.id)
        } else {
            format!("lead-{}..lead-{}", first.id, first.id + count as i64 - 1)
        };
        let robots = robots.map_or_else(String::new, |(n, t)| {
            format!(
                "; the rules then appended {n} event{} in {t:.1}s",
                if n == 1 { "" } else { "s" }
            )
        });
        outln!("imported {} ({range}) in {secs:.1}s{robots}", leads(count));
    } else {
        outln!("imported nothing: {} has no rows", args.file.display());
    }
    Ok(())
}
