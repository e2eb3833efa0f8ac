//! Diagnostics: errors and warnings with file, line and column, rendered like a
//! compiler.
//!
//! Every problem the parser or the validator finds becomes one [`Diagnostic`]; all
//! of them are collected in [`Diagnostics`] (the checker never stops at the first
//! problem). A diagnostic carries the byte span of the offending text; line and
//! column (1-based, columns counted in characters) are computed from the source when
//! the diagnostic is recorded. `Display` renders each one as
//!
//! ```text
//! policy/site-a.toml:14:11: error: address 10.9.0.7 of target "web-2" is not in subnet 10.9.1.0/30 of its link "to-web-2"
//!    |
//! 14 | address = "10.9.0.7"
//!    |           ^^^^^^^^^^
//!    = note: link "to-web-2" is defined here: policy/site-a.toml:30:1
//! ```

use std::fmt;
use std::ops::Range;

/// How bad a diagnostic is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub enum Severity {
    /// The policy cannot be used; `check` fails.
    #[default]
    Error,
    /// The policy can be used, but the operator should look at this.
    Warning,
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
        })
    }
}

/// A 1-based line and column in the policy file (column counted in characters).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Position {
    /// Line, starting at 1.
    pub line: usize,
    /// Column, starting at 1, in characters (not bytes).
    pub column: usize,
}

/// A secondary remark attached to a diagnostic, optionally pointing elsewhere in
/// the file (for example at the earlier SPD rule that shadows this one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    /// The sentence.
    pub message: String,
    /// Where in the file the note points, if anywhere.
    pub position: Option<Position>,
}

/// One error or warning.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Diagnostic {
    /// Error or warning.
    pub severity: Severity,
    /// One sentence a person understands.
    pub message: String,
    /// Byte range of the offending text in the source, if known.
    pub span: Option<Range<usize>>,
    /// Line and column of the start of `span`.
    pub position: Option<Position>,
    /// Further remarks (`= note:` / `= help:` lines).
    pub notes: Vec<Note>,
}

/// All diagnostics for one policy file, with the source text to quote from.
#[derive(Debug, Clone, Default)]
pub struct Diagnostics {
    file: String,
    source: String,
    index: Box<LineIndex>,
    items: Vec<Diagnostic>,
    /// Errors and warnings not kept because [`MAX_KEPT`] were already recorded.
    dropped: [usize; 2],
    /// Where a dropped diagnostic's notes go.
    scratch: Box<Diagnostic>,
}

/// Where lines and characters are in the source.
#[derive(Debug, Clone, Default)]
struct LineIndex {
    /// Byte offset where each line starts (line 1 at index 0), so that a
    /// position or a quoted line costs a binary search, not a scan of the file.
    line_starts: Vec<usize>,
    /// UTF-8 continuation bytes before each multiple of [`CHUNK`]: a column in
    /// characters costs at most two chunk scans, even on a 50 MB line.
    cont_before: Vec<usize>,
}

/// At most this many diagnostics are kept (a hostile file could otherwise make
/// millions, each quoting a line); the rest are only counted.
pub const MAX_KEPT: usize = 1000;

/// Granularity of the character-count checkpoints.
const CHUNK: usize = 4096;

/// Lines longer than this (in bytes) are quoted as a window around the span.
const WIDE_LINE: usize = 160;

/// Characters of context kept on each side of the span in a long line.
const CONTEXT: usize = 60;

fn is_continuation(b: u8) -> bool {
    b & 0xC0 == 0x80
}

impl Diagnostics {
    /// An empty set of diagnostics for `file` (the name shown in messages) whose
    /// text is `source`.
    pub fn new(file: impl Into<String>, source: impl Into<String>) -> Self {
        let source = source.into();
        let line_starts = std::iter::once(0)
            .chain(source.match_indices('\n').map(|(i, _)| i + 1))
            .collect();
        let mut cont_before = vec![0];
        for chunk in source.as_bytes().chunks(CHUNK) {
            let last = cont_before.last().copied().unwrap_or(0);
            cont_before.push(last + chunk.iter().filter(|b| is_continuation(**b)).count());
        }
        Diagnostics {
            file: file.into(),
            source,
            index: Box::new(LineIndex {
                line_starts,
                cont_before,
            }),
            items: Vec::new(),
            dropped: [0, 0],
            scratch: Box::default(),
        }
    }

    /// The file name shown in messages.
    pub fn file(&self) -> &str {
        &self.file
    }

    /// True if at least one diagnostic is an error.
    pub fn has_errors(&self) -> bool {
        self.error_count() > 0
    }

    /// Number of errors.
    pub fn error_count(&self) -> usize {
        self.count(Severity::Error)
    }

    /// Number of warnings.
    pub fn warning_count(&self) -> usize {
        self.count(Severity::Warning)
    }

    /// Counts kept and dropped diagnostics of severity `s`.
    fn count(&self, s: Severity) -> usize {
        self.items.iter().filter(|d| d.severity == s).count() + self.dropped[s as usize]
    }

    /// Number of diagnostics counted but not kept (beyond [`MAX_KEPT`]).
    pub fn dropped_count(&self) -> usize {
        self.dropped[0] + self.dropped[1]
    }

    /// True if there are no diagnostics at all.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// The diagnostics, sorted by position once [`Diagnostics::sort`] ran (the
    /// public entry points sort before returning).
    pub fn iter(&self) -> impl Iterator<Item = &Diagnostic> {
        self.items.iter()
    }

    /// Each diagnostic rendered on one line as `file:line:col: severity: message`
    /// (no quoted source). Handy for tests and logs.
    pub fn short_lines(&self) -> Vec<String> {
        self.items.iter().map(|d| self.headline(d)).collect()
    }

    /// Records an error at `span`.
    pub fn error(
        &mut self,
        span: Option<Range<usize>>,
        message: impl Into<String>,
    ) -> &mut Diagnostic {
        self.push(Severity::Error, span, message.into())
    }

    /// Records a warning at `span`.
    pub fn warning(
        &mut self,
        span: Option<Range<usize>>,
        message: impl Into<String>,
    ) -> &mut Diagnostic {
        self.push(Severity::Warning, span, message.into())
    }

    fn push(
        &mut self,
        severity: Severity,
        span: Option<Range<usize>>,
        message: String,
    ) -> &mut Diagnostic {
        if self.items.len() >= MAX_KEPT {
            // Counted, not kept: the caller still gets somewhere to put notes.
            self.dropped[severity as usize] += 1;
            *self.scratch = Diagnostic {
                severity,
                ..Diagnostic::default()
            };
            return &mut self.scratch;
        }
        let position = span.as_ref().map(|s| self.position_of(s.start));
        self.items.push(Diagnostic {
            severity,
            message,
            span,
            position,
            notes: Vec::new(),
        });
        let last = self.items.len() - 1;
        &mut self.items[last]
    }

    /// Builds a note pointing at `span`.
    pub fn note(&self, span: Option<Range<usize>>, message: impl Into<String>) -> Note {
        Note {
            message: message.into(),
            position: span.map(|s| self.position_of(s.start)),
        }
    }

    /// Line and column of byte offset `offset` (clamped to the source; offsets
    /// inside a multi-byte character count as that character).
    pub fn position_of(&self, offset: usize) -> Position {
        let mut off = offset.min(self.source.len());
        while !self.source.is_char_boundary(off) {
            off -= 1;
        }
        // The last line that starts at or before `off`.
        let line = self.index.line_starts.partition_point(|&s| s <= off).max(1);
        let line_start = self.index.line_starts.get(line - 1).copied().unwrap_or(0);
        let chars = (off - line_start) - (self.cont_upto(off) - self.cont_upto(line_start));
        Position {
            line,
            column: chars + 1,
        }
    }

    /// UTF-8 continuation bytes in `source[..at]`.
    fn cont_upto(&self, at: usize) -> usize {
        let k = at / CHUNK;
        let base = self.index.cont_before.get(k).copied().unwrap_or(0);
        let tail = self.source.as_bytes().get(k * CHUNK..at).unwrap_or(&[]);
        base + tail.iter().filter(|b| is_continuation(**b)).count()
    }

    /// Sorts by position (diagnostics without one first), keeping insertion order
    /// among equal positions, and drops exact duplicates.
    pub fn sort(&mut self) {
        self.items.sort_by_key(|d| d.position);
        self.items.dedup();
    }

    /// Moves all diagnostics of `other` (same file) into `self`.
    pub fn append(&mut self, other: &mut Diagnostics) {
        self.items.append(&mut other.items);
        for (mine, theirs) in self.dropped.iter_mut().zip(other.dropped.iter_mut()) {
            *mine += std::mem::take(theirs);
        }
    }

    /// The text of 1-based line `n`, without its newline.
    fn line(&self, n: usize) -> Option<&str> {
        let start = *self.index.line_starts.get(n.checked_sub(1)?)?;
        let end = self
            .index
            .line_starts
            .get(n)
            .map_or(self.source.len(), |&next| next - 1);
        self.source.get(start..end)
    }

    fn headline(&self, d: &Diagnostic) -> String {
        match d.position {
            Some(p) => format!(
                "{}:{}:{}: {}: {}",
                self.file, p.line, p.column, d.severity, d.message
            ),
            None => format!("{}: {}: {}", self.file, d.severity, d.message),
        }
    }

    fn render(&self, f: &mut fmt::Formatter<'_>, d: &Diagnostic) -> fmt::Result {
        writeln!(f, "{}", self.headline(d))?;
        if let (Some(span), Some(pos)) = (&d.span, d.position) {
            self.render_snippet(f, span, pos)?;
        }
        let width = d.position.map_or(1, |p| p.line.to_string().len());
        for n in &d.notes {
            write!(f, "{:width$} = note: {}", "", n.message, width = width)?;
            if let Some(p) = n.position {
                write!(f, " ({}:{}:{})", self.file, p.line, p.column)?;
            }
            writeln!(f)?;
        }
        Ok(())
    }

    fn render_snippet(
        &self,
        f: &mut fmt::Formatter<'_>,
        span: &Range<usize>,
        pos: Position,
    ) -> fmt::Result {
        let Some(line) = self.line(pos.line) else {
            return Ok(());
        };
        let line = line.trim_end_matches('\r');
        let num = pos.line.to_string();
        let pad = " ".repeat(num.len());
        let line_start = self
            .index
            .line_starts
            .get(pos.line - 1)
            .copied()
            .unwrap_or(0);
        let mut rel = span.start.saturating_sub(line_start).min(line.len());
        while !line.is_char_boundary(rel) {
            rel -= 1;
        }
        let (mut before, mut after) = line.split_at(rel);
        let (mut prefix, mut suffix) = ("", "");
        if line.len() > WIDE_LINE {
            // Quote a window around the span, not a whole huge line.
            if before.chars().rev().nth(CONTEXT).is_some() {
                let cut = before
                    .char_indices()
                    .rev()
                    .nth(CONTEXT - 1)
                    .map_or(0, |(i, _)| i);
                (prefix, before) = ("…", &before[cut..]);
            }
            if let Some((cut, _)) = after.char_indices().nth(2 * CONTEXT) {
                (after, suffix) = (&after[..cut], "…");
            }
        }
        // The caret covers the span on the first line only.
        let span_chars = self.source.get(span.clone()).map_or(1, |s| {
            s.lines()
                .next()
                .map_or(1, |l| l.chars().take(WIDE_LINE).count())
        });
        let carets = span_chars.clamp(1, after.chars().count().max(1));
        let lead: String = prefix
            .chars()
            .chain(before.chars())
            .map(|c| if c == '\t' { '\t' } else { ' ' })
            .collect();
        writeln!(f, "{pad} |")?;
        writeln!(f, "{num} | {prefix}{before}{after}{suffix}")?;
        writeln!(f, "{pad} | {lead}{}", "^".repeat(carets))
    }
}

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for d in &self.items {
            self.render(f, d)?;
        }
        if self.dropped_count() > 0 {
            writeln!(
                f,
                "{}: only the first {MAX_KEPT} problems are shown; {} more were found",
                self.file,
                self.dropped_count()
            )?;
        }
        let (e, w) = (self.error_count(), self.warning_count());
        let plural = |n: usize, s: &str| format!("{n} {s}{}", if n == 1 { "" } else { "s" });
        if e > 0 {
            writeln!(
                f,
                "{}: {}, {}",
                self.file,
                plural(e, "error"),
                plural(w, "warning")
            )
        } else {
            writeln!(f, "{}: ok, {}", self.file, plural(w, "warning"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_count_lines_and_chars() {
        let d = Diagnostics::new("f.toml", "a = 1\nb = \"é\" x\n");
        assert_eq!(d.position_of(0), Position { line: 1, column: 1 });
        assert_eq!(d.position_of(6), Position { line: 2, column: 1 });
        // "é" is two bytes: the byte after it is column 7 in characters.
        let x = "a = 1\nb = \"é\" x\n".find('x').unwrap();
        assert_eq!(d.position_of(x), Position { line: 2, column: 9 });
        // Offsets past the end clamp to the end.
        assert_eq!(d.position_of(999), Position { line: 3, column: 1 });
    }

    #[test]
    fn columns_count_characters_across_chunks() {
        // 10,000 two-byte characters span five checkpoint chunks.
        let src = format!("a\n{}x\n", "é".repeat(10_000));
        let d = Diagnostics::new("f.toml", src.clone());
        let x = src.find('x').unwrap();
        assert_eq!(
            d.position_of(x),
            Position {
                line: 2,
                column: 10_001
            }
        );
        // An offset inside a character counts as that character.
        assert_eq!(
            d.position_of(x - 1),
            Position {
                line: 2,
                column: 10_000
            }
        );
        assert_eq!(d.line(2).map(|l| l.chars().count()), Some(10_001));
        assert_eq!(d.line(3), Some(""));
        assert_eq!(d.line(4), None);
    }

    #[test]
    fn renders_like_a_compiler() {
        let src = "[site]\nname = 7\n";
        let mut d = Diagnostics::new("p.toml", src);
        let at = src.find('7').unwrap();
        d.error(
            Some(at..at + 1),
            "`name` must be a string, found an integer",
        );
        let out = d.to_string();
        assert_eq!(
            out,
            "p.toml:2:8: error: `name` must be a string, found an integer\n  |\n2 | name = 7\n  |        ^\np.toml: 1 error, 0 warnings\n"
        );
    }
}
