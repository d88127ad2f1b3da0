//! Diagnostics of the files a person writes (configuration, rule sets, scenarios): where in a
//! file something is, as 1-based line and column.

/// The starts of the lines of one text, computed once, so that turning many byte offsets into
/// lines and columns costs a binary search each instead of a scan of the text.
#[derive(Debug, Clone)]
pub struct LineIndex<'a> {
    text: &'a str,
    /// Byte offset of the start of each line; the first is 0.
    starts: Vec<usize>,
}

impl<'a> LineIndex<'a> {
    /// Indexes the lines of `text`.
    pub fn new(text: &'a str) -> LineIndex<'a> {
        let starts = std::iter::once(0)
            .chain(text.match_indices('\n').map(|(i, _)| i + 1))
            .collect();
        LineIndex { text, starts }
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
}

/// 1-based line and column (in characters) of a byte offset of `text`. To look up many offsets
/// of one text, build a [`LineIndex`] once.
pub fn line_col(text: &str, offset: usize) -> (usize, usize) {
    LineIndex::new(text).line_col(offset)
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
            let index = LineIndex::new(text);
            for offset in 0..=text.len() + 2 {
                assert_eq!(
                    index.line_col(offset),
                    scanned(text, offset),
                    "{text:?} at {offset}"
                );
            }
        }
    }
}
