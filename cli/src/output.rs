//! Printing: aligned tables for people, JSON for programs. Data goes to stdout, through
//! [`outln!`] and [`stdout_line`]: a reader that closes the pipe early (`leadflow events | head`)
//! ends the command quietly with exit 0, as ripgrep does, instead of a panic.

use serde::Serialize;
use std::io::Write;

/// Like `println!`, but a closed pipe ends the command quietly (see [`stdout_line`]).
macro_rules! outln {
    () => {
        $crate::output::stdout_line(format_args!(""))
    };
    ($($arg:tt)*) => {
        $crate::output::stdout_line(format_args!($($arg)*))
    };
}

/// Like `eprintln!`, but a closed stderr (`2>&1 | head`) never panics: the line is dropped.
macro_rules! errln {
    ($($arg:tt)*) => {
        $crate::output::stderr_line(format_args!($($arg)*))
    };
}

/// Writes one line to stderr, ignoring a failure: there is nowhere left to report it.
pub(crate) fn stderr_line(args: std::fmt::Arguments<'_>) {
    let mut err = std::io::stderr().lock();
    let _ = err.write_fmt(args).and_then(|()| err.write_all(b"\n"));
}

/// Writes one line to stdout. When the reader has gone (a broken pipe) the command ends here
/// with exit 0 and no message: whatever it had to commit is committed before it prints. Any
/// other write error ends it with exit 2 and the error.
pub(crate) fn stdout_line(args: std::fmt::Arguments<'_>) {
    let mut out = std::io::stdout().lock();
    if let Err(e) = out.write_fmt(args).and_then(|()| out.write_all(b"\n")) {
        stdout_failed(&e);
    }
}

/// Ends the process after a failed write to stdout: quietly with 0 for a broken pipe.
pub(crate) fn stdout_failed(e: &std::io::Error) -> ! {
    if e.kind() == std::io::ErrorKind::BrokenPipe {
        std::process::exit(0);
    }
    stderr_line(format_args!("error: writing to stdout: {e}"));
    std::process::exit(2);
}

/// A table printed with aligned columns.
pub(crate) struct Table {
    headers: Vec<&'static str>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub(crate) fn new(headers: &[&'static str]) -> Self {
        Table {
            headers: headers.to_vec(),
            rows: Vec::new(),
        }
    }

    pub(crate) fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    pub(crate) fn print(&self) {
        let mut widths: Vec<usize> = self.headers.iter().map(|h| h.chars().count()).collect();
        for r in &self.rows {
            for (i, c) in r.iter().enumerate() {
                widths[i] = widths[i].max(c.chars().count());
            }
        }
        let mut out = std::io::stdout().lock();
        let line = |cells: &mut dyn Iterator<Item = &str>, out: &mut dyn Write| {
            let mut s = String::new();
            for (i, c) in cells.enumerate() {
                if i > 0 {
                    s.push_str("  ");
                }
                s.push_str(c);
                if i + 1 < widths.len() {
                    s.extend(std::iter::repeat_n(
                        ' ',
                        widths[i].saturating_sub(c.chars().count()),
                    ));
                }
            }
            if let Err(e) = writeln!(out, "{}", s.trim_end()) {
                stdout_failed(&e);
            }
        };
        line(&mut self.headers.iter().copied(), &mut out);
        for r in &self.rows {
            line(&mut r.iter().map(String::as_str), &mut out);
        }
    }
}

/// Prints a value as one line of JSON.
pub(crate) fn json_line(v: &impl Serialize) {
    outln!("{}", serde_json::to_string(v).expect("serialisable"));
}

/// Prints a value as pretty JSON.
pub(crate) fn json_pretty(v: &impl Serialize) {
    outln!("{}", serde_json::to_string_pretty(v).expect("serialisable"));
}

/// Shortens text for a table cell.
pub(crate) fn clip(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_owned()
    } else {
        let mut c: String = s.chars().take(max.saturating_sub(1)).collect();
        c.push('…');
        c
    }
}

/// A time for people (tables, lines of text): in the calendar's zone, `2026-03-02 12:00 MSK`
/// (the one format, shared with the dashboard). JSON keeps RFC 3339 instead.
pub(crate) use leadflow_report::text::time;

/// A stored phone for people: `+79378922084;ext=12` reads `+79378922084 ext. 12`.
pub(crate) fn phone(stored: &str) -> String {
    stored.replacen(";ext=", " ext. ", 1)
}

/// An optional value for tables.
pub(crate) fn opt<T: std::fmt::Display>(v: &Option<T>) -> String {
    v.as_ref()
        .map_or_else(|| "-".to_owned(), ToString::to_string)
}

/// `3d 4h`, `2h 5m`, `40s`.
pub(crate) use leadflow_report::text::human_duration;

/// Writes a CSV document to stdout: `headers`, then `rows`. A cell a spreadsheet would run
/// as a formula — text that starts with `=`, `+`, `-`, `@`, a tab or a carriage return and is
/// not a number (lead titles and names come from web forms) — is written with a leading `'`.
pub(crate) fn csv_out<R, C>(
    headers: &[&str],
    rows: impl IntoIterator<Item = R>,
) -> Result<(), crate::error::CliError>
where
    R: IntoIterator<Item = C>,
    C: AsRef<str>,
{
    let mut w = csv::Writer::from_writer(std::io::stdout().lock());
    let failed = |e: csv::Error| match e.kind() {
        csv::ErrorKind::Io(io) => stdout_failed(io),
        _ => crate::error::CliError::Usage(format!("writing CSV: {e}")),
    };
    w.write_record(headers).map_err(failed)?;
    for r in rows {
        let cells: Vec<std::borrow::Cow<'_, str>> = r
            .into_iter()
            .map(|c| csv_cell(c.as_ref()).into_owned().into())
            .collect();
        w.write_record(cells.iter().map(|c| c.as_ref()))
            .map_err(failed)?;
    }
    if let Err(e) = w.flush() {
        stdout_failed(&e);
    }
    Ok(())
}

/// A cell as [`csv_out`] writes it.
fn csv_cell(cell: &str) -> std::borrow::Cow<'_, str> {
    let risky = cell.starts_with(['=', '+', '-', '@', '\t', '\r']) && cell.parse::<f64>().is_err();
    if risky {
        format!("'{cell}").into()
    } else {
        cell.into()
    }
}

#[cfg(test)]
mod csv_tests {
    use super::csv_cell;

    #[test]
    fn a_cell_a_spreadsheet_would_run_is_quoted_and_numbers_are_not() {
        assert_eq!(csv_cell("=HYPERLINK(\"x\")"), "'=HYPERLINK(\"x\")");
        assert_eq!(csv_cell("+7 901"), "'+7 901");
        assert_eq!(csv_cell("@sum"), "'@sum");
        assert_eq!(csv_cell("-2"), "-2");
        assert_eq!(csv_cell("-12.5"), "-12.5");
        assert_eq!(csv_cell("Ivanov"), "Ivanov");
        assert_eq!(csv_cell(""), "");
    }
}
