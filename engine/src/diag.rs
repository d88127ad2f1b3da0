//! Diagnostics of the files a person writes — the configuration, rule sets, scenarios: the
//! file given to a loader ([`Source`]), where in it something is ([`Location`], 1-based line and
//! column in characters, found through a [`FileIndex`] built once per file), one problem there
//! ([`Diagnostic`], shown `file:line:col: message`) and the list of them a loader reports
//! ([`Diagnostics`]).
//!
//! The configuration re-exports these as `config::Source`, `config::ConfigError` and
//! `config::ConfigErrors`, and the rules `Location` as `rules::Location`.

use std::fmt;

/// One file's name (as shown in messages) and text.
#[derive(Debug, Clone)]
pub struct Source {
    /// The path shown in error messages.
    pub path: String,
    /// The file's TOML text.
    pub text: String,
}

/// Where something was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    /// The file, as given in its [`Source`].
    pub file: String,
    /// 1-based line.
    pub line: usize,
    /// 1-based column, in characters.
    pub col: usize,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.file, self.line, self.col)
    }
}

/// One problem in a file, with its location.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// The file, as given in its [`Source`].
    pub file: String,
    /// 1-based line.
    pub line: usize,
    /// 1-based column, in characters.
    pub col: usize,
    /// What is wrong.
    pub message: String,
}

impl Diagnostic {
    /// A problem at `at`.
    pub fn new(at: &Location, message: impl Into<String>) -> Diagnostic {
        Diagnostic {
            file: at.file.clone(),
            line: at.line,
            col: at.col,
            message: message.into(),
        }
    }

    /// Where the problem is.
    pub fn location(&self) -> Location {
        Location {
            file: self.file.clone(),
            line: self.line,
            col: self.col,
        }
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}",
            self.file, self.line, self.col, self.message
        )
    }
}

/// Every problem found while loading files. Shown as [`summary`] of "the configuration".
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct Diagnostics(pub Vec<Diagnostic>);

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&summary("the configuration", &self.0))
    }
}

/// `{what} has N error(s)`, then each problem on its own indented line.
pub fn summary(what: &str, errors: &[Diagnostic]) -> String {
    let n = errors.len();
    let mut s = format!("{what} has {n} error{}", if n == 1 { "" } else { "s" });
    for e in errors {
        s.push_str("\n  ");
        s.push_str(&e.to_string());
    }
    s
}

/// One file with the starts of its lines computed once, so that turning many byte offsets
/// (TOML spans) into locations costs a binary search each instead of a scan of the text.
#[derive(Debug, Clone)]
pub struct FileIndex<'a> {
    path: &'a str,
    text: &'a str,
    /// Byte offset of the start of each line; the first is 0.
    starts: Vec<usize>,
}

impl<'a> FileIndex<'a> {
    /// Indexes the lines of `text`, the file `path` (as shown in messages).
    pub fn new(path: &'a str, text: &'a str) -> FileIndex<'a> {
        let starts = std::iter::once(0)
            .chain(text.match_indices('\n').map(|(i, _)| i + 1))
            .collect();
        FileIndex { path, text, starts }
    }

    /// Indexes a source.
    pub fn of(source: &'a Source) -> FileIndex<'a> {
        FileIndex::new(&source.path, &source.text)
    }

    /// The file as shown in messages.
    pub fn path(&self) -> &'a str {
        self.path
    }

    /// The indexed text.
    pub fn text(&self) -> &'a str {
        self.text
    }

    /// 1-based line and column (in characters) of a byte offset. An offset past the end is the
    /// end; one inside a character is that character.
    pub fn line_col(&self, offset: usize) -> (usize, usize) {
        let offset = self.text.floor_char_boundary(offset.min(self.text.len()));
        // The number of lines starting at or before `offset` is its 1-based line.
        let line = self.starts.partition_point(|&s| s <= offset);
        let start = self.starts[line - 1];
        let col = self.text[start..offset].chars().count() + 1;
        (line, col)
    }

    /// The location of a byte offset.
    pub fn at(&self, offset: usize) -> Location {
        let (line, col) = self.line_col(offset);
        Location {
            file: self.path.to_owned(),
            line,
            col,
        }
    }

    /// A problem at a byte offset.
    pub fn error(&self, offset: usize, message: impl Into<String>) -> Diagnostic {
        Diagnostic::new(&self.at(offset), message)
    }

    /// A file that is not the TOML it should be (bad syntax, an unknown key, a wrong type): the
    /// parser's message where it points (the file's start if nowhere).
    pub fn toml_error(&self, e: &toml::de::Error) -> Diagnostic {
        self.error(e.span().map_or(0, |s| s.start), e.message().trim())
    }
}

/// 1-based line and column (in characters) of a byte offset of `text`. To look up many offsets
/// of one text, build a [`FileIndex`] once.
pub fn line_col(text: &str, offset: usize) -> (usize, usize) {
    FileIndex::new("", text).line_col(offset)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The scan `line_col` used to be: the specification of the index.
    fn scanned(text: &str, offset: usize) -> (usize, usize) {
        let offset = offset.min(text.len());
        let before = &text[..text.floor_char_boundary(offset)];
        let line = before.matches('\n').count() + 1;
        let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        (line, col)
    }

    #[test]
    fn line_col_counts_characters() {
        assert_eq!(line_col("ab\nпривет x", 16), (2, 8));
        assert_eq!(line_col("abc", 0), (1, 1));
    }

    #[test]
    fn the_line_index_agrees_with_a_scan_at_every_offset() {
        for text in [
            "",
            "\n",
            "\n\n",
            "abc",
            "ab\nпривет x",
            "a\n\nb\r\nc\n",
            "ё\nъ\n€😀\nz",
            "[[rules]]\nid = \"a\"\n\n  [[rules.robots]]\n  robot = \"notify\"\n",
        ] {
            let index = FileIndex::new("f", text);
            for offset in 0..=text.len() + 2 {
                assert_eq!(
                    index.line_col(offset),
                    scanned(text, offset),
                    "{text:?} at {offset}"
                );
            }
        }
    }

    #[test]
    fn problems_show_file_line_and_column_and_are_counted() {
        let index = FileIndex::new("rules/a.toml", "[[rules]]\nid = 'x'\n");
        let one = index.error(15, "bad");
        assert_eq!(one.to_string(), "rules/a.toml:2:6: bad");
        assert_eq!(one.location().to_string(), "rules/a.toml:2:6");
        assert_eq!(
            Diagnostics(vec![one.clone()]).to_string(),
            "the configuration has 1 error\n  rules/a.toml:2:6: bad"
        );
        assert_eq!(
            summary("the rule set", &[one.clone(), one]),
            "the rule set has 2 errors\n  rules/a.toml:2:6: bad\n  rules/a.toml:2:6: bad"
        );
        assert_eq!(summary("the scenario", &[]), "the scenario has 0 errors");
    }

    #[test]
    fn toml_errors_are_located_where_the_parser_points() {
        let text = "a = 1\nb = [\n";
        let e = toml::from_str::<toml::Table>(text).unwrap_err();
        let d = FileIndex::new("x.toml", text).toml_error(&e);
        assert_eq!(
            (d.line, d.col),
            crate::diag::line_col(text, e.span().unwrap().start)
        );
        assert_eq!(d.message, e.message().trim());
    }
}
