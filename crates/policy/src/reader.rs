//! A checked walk over the TOML document that keeps every byte span.
//!
//! We do not use `#[derive(Deserialize)]` with `deny_unknown_fields`: serde stops at
//! the first error, and a policy checker must report all of them. Instead the
//! document is parsed with `toml::de::DeTable::parse_recoverable` (which keeps the
//! span of every key and value and recovers after syntax errors), and each section
//! is read through a [`Table`] that records which keys were used, reports wrong
//! types and missing required keys, and at the end reports every key it did not
//! expect (with a "did you mean" suggestion).
//!
//! Semantic checks that run later on the typed model point at the exact text
//! through [`Spans`]: a path such as `target[2].address` is resolved in the
//! document on demand (keeping a map of every value's span cost more time and
//! memory than the whole check on a 50 MB policy). A value that failed to parse
//! is marked *bad*, and later checks that depend on it are skipped, which avoids
//! cascades of errors.

use std::collections::{HashMap, HashSet};
use std::ops::Range;

use toml::de::{DeTable, DeValue};
use toml::Spanned;

use crate::diag::Diagnostics;

/// A byte range in the policy source.
pub(crate) type Span = Range<usize>;

/// Finds the span of a path in the document, and remembers which paths held
/// invalid values.
#[derive(Debug, Default)]
pub(crate) struct Spans<'a> {
    root: Option<&'a DeTable<'a>>,
    /// Spans set explicitly where the document's own would point elsewhere
    /// (the key, not the value, of a weight).
    overrides: HashMap<String, Span>,
    bad: HashSet<String>,
}

impl<'a> Spans<'a> {
    /// Spans of the paths of document `root`.
    pub(crate) fn of(root: &'a DeTable<'a>) -> Self {
        Spans {
            root: Some(root),
            ..Spans::default()
        }
    }

    /// Points `path` at `span` instead of where the document has it.
    pub(crate) fn set(&mut self, path: &str, span: Span) {
        self.overrides.insert(path.to_string(), span);
    }

    pub(crate) fn mark_bad(&mut self, path: &str) {
        self.bad.insert(path.to_string());
    }

    /// The span of `path` or of its closest parent in the document.
    pub(crate) fn get(&self, path: &str) -> Option<Span> {
        if let Some(s) = self.overrides.get(path) {
            return Some(s.clone());
        }
        self.walk(path).0
    }

    /// True if `path` is in the document.
    pub(crate) fn has(&self, path: &str) -> bool {
        self.overrides.contains_key(path) || self.walk(path).1
    }

    /// True if `path` was read and parsed without error (a missing optional value
    /// that got its default counts as fine).
    pub(crate) fn ok(&self, path: &str) -> bool {
        self.bad.is_empty() || !self.bad.contains(path)
    }

    /// True if some value was marked bad.
    pub(crate) fn any_bad(&self) -> bool {
        !self.bad.is_empty()
    }

    /// [`Spans::ok`] for a path given as format arguments: formats nothing
    /// unless some value is bad.
    pub(crate) fn okf(&self, path: std::fmt::Arguments<'_>) -> bool {
        self.bad.is_empty() || !self.bad.contains(&path.to_string())
    }

    /// Follows `path` (`a.b[2].c`) down the document: the span of the deepest
    /// value reached, and whether the whole path was found. `[0]` of a value
    /// that is not an array is the value itself (a single string stands for a
    /// list of one).
    fn walk(&self, path: &str) -> (Option<Span>, bool) {
        let Some(root) = self.root else {
            return (None, false);
        };
        let mut cur: Option<&Spanned<DeValue<'_>>> = None;
        for seg in path.split('.') {
            let (name, mut idx) = seg.split_once('[').map_or((seg, ""), |(n, i)| (n, i));
            let table = match cur.map(|v| v.get_ref()) {
                None => root,
                Some(DeValue::Table(t)) => t,
                Some(_) => return (cur.map(|v| v.span()), false),
            };
            let Some(v) = table.get(name) else {
                return (cur.map(|v| v.span()), false);
            };
            cur = Some(v);
            while let Some((n, rest)) = idx.split_once(']') {
                idx = rest.trim_start_matches('[');
                let n: usize = n.parse().unwrap_or(usize::MAX);
                let here = cur.map(|v| v.get_ref());
                match here {
                    Some(DeValue::Array(a)) => match a.get(n) {
                        Some(item) => cur = Some(item),
                        None => return (cur.map(|v| v.span()), false),
                    },
                    Some(_) if n == 0 => {}
                    _ => return (cur.map(|v| v.span()), false),
                }
            }
        }
        (cur.map(|v| v.span()), true)
    }
}

/// What the reader needs from its caller: where errors go and where spans go.
pub(crate) struct Cx<'a> {
    pub(crate) diags: Diagnostics,
    pub(crate) spans: Spans<'a>,
}

impl Cx<'_> {
    /// True if `path` was present in the file (whether or not it parsed).
    pub(crate) fn spans_has(&self, path: &str) -> bool {
        self.spans.has(path)
    }

    /// Like [`Cx::err`], and also marks the enclosing list `list` bad.
    pub(crate) fn err_also(&mut self, list: &str, path: &str, span: Option<Span>, msg: String) {
        self.spans.mark_bad(list);
        self.err(path, span, msg);
    }

    pub(crate) fn err(&mut self, path: &str, span: Option<Span>, msg: String) {
        self.spans.mark_bad(path);
        self.diags.error(span, msg);
    }
}

pub(crate) fn kind(v: &DeValue<'_>) -> &'static str {
    match v {
        DeValue::String(_) => "a string",
        DeValue::Integer(_) => "an integer",
        DeValue::Float(_) => "a float",
        DeValue::Boolean(_) => "a boolean",
        DeValue::Datetime(_) => "a date-time",
        DeValue::Array(_) => "an array",
        DeValue::Table(_) => "a table",
    }
}

/// Reads an integer value as i128 (TOML integers fit in i64; i128 avoids sign
/// trouble with the radix forms).
pub(crate) fn int_of(v: &DeValue<'_>) -> Option<i128> {
    match v {
        DeValue::Integer(i) => i128::from_str_radix(i.as_str(), i.radix()).ok(),
        _ => None,
    }
}

/// Reads a float (or an integer) as f64; `None` for other types, and for
/// infinities and NaN.
pub(crate) fn float_of(v: &DeValue<'_>) -> Option<f64> {
    let f = match v {
        DeValue::Float(f) => f.as_str().replace('_', "").parse::<f64>().ok()?,
        DeValue::Integer(_) => int_of(v)? as f64,
        _ => return None,
    };
    f.is_finite().then_some(f)
}

/// One TOML table being read: remembers which keys were consumed.
pub(crate) struct Table<'a, 'i> {
    /// Path of this table, e.g. `peer[0].child[1]`.
    pub(crate) path: String,
    /// How the table is named in messages, e.g. `[[peer.child]] "web"`.
    pub(crate) what: String,
    /// Span of the whole table (used for "missing key").
    pub(crate) span: Span,
    table: &'a DeTable<'i>,
    /// The keys read so far (a handful per table: a list is cheaper than a set).
    used: Vec<&'a str>,
}

impl<'a, 'i> Table<'a, 'i> {
    pub(crate) fn new(path: String, what: String, span: Span, table: &'a DeTable<'i>) -> Self {
        Table {
            path,
            what,
            span,
            table,
            used: Vec::new(),
        }
    }

    /// Path of `key` inside this table.
    pub(crate) fn sub(&self, key: &str) -> String {
        if self.path.is_empty() {
            key.to_string()
        } else {
            format!("{}.{}", self.path, key)
        }
    }

    /// The raw value of `key`, marking it used.
    pub(crate) fn raw(&mut self, _cx: &mut Cx, key: &str) -> Option<&'a Spanned<DeValue<'i>>> {
        let (k, v) = self.table.get_key_value(key)?;
        let k: &'a str = k.get_ref().as_ref();
        if !self.used.contains(&k) {
            self.used.push(k);
        }
        Some(v)
    }

    /// Like [`Table::raw`] but reports a missing key.
    pub(crate) fn required(&mut self, cx: &mut Cx, key: &str) -> Option<&'a Spanned<DeValue<'i>>> {
        let v = self.raw(cx, key);
        if v.is_none() {
            let path = self.sub(key);
            cx.err(
                &path,
                Some(self.span.clone()),
                format!("{} is missing the required key `{key}`", self.what),
            );
        }
        v
    }

    fn type_error(&self, cx: &mut Cx, key: &str, v: &Spanned<DeValue<'_>>, want: &str) {
        cx.err(
            &self.sub(key),
            Some(v.span()),
            format!(
                "`{key}` in {} must be {want}, found {}",
                self.what,
                kind(v.get_ref())
            ),
        );
    }

    /// A string value with its span.
    pub(crate) fn string(
        &mut self,
        cx: &mut Cx,
        key: &str,
        required: bool,
    ) -> Option<(String, Span)> {
        let v = if required {
            self.required(cx, key)?
        } else {
            self.raw(cx, key)?
        };
        match v.get_ref() {
            DeValue::String(s) => Some((s.to_string(), v.span())),
            _ => {
                self.type_error(cx, key, v, "a string");
                None
            }
        }
    }

    /// An integer in `min..=max`, with `unit` used in the range message.
    pub(crate) fn int(
        &mut self,
        cx: &mut Cx,
        key: &str,
        required: bool,
        min: i128,
        max: i128,
    ) -> Option<i128> {
        let v = if required {
            self.required(cx, key)?
        } else {
            self.raw(cx, key)?
        };
        let Some(n) = int_of(v.get_ref()) else {
            self.type_error(cx, key, v, "an integer");
            return None;
        };
        if n < min || n > max {
            cx.err(
                &self.sub(key),
                Some(v.span()),
                format!(
                    "`{key}` = {n} in {} is out of range: it must be between {min} and {max}",
                    self.what
                ),
            );
            return None;
        }
        Some(n)
    }

    /// A list of strings. A single string is accepted as a list of one.
    /// Returns each string with its span and its path (`key[i]`).
    pub(crate) fn strings(
        &mut self,
        cx: &mut Cx,
        key: &str,
        required: bool,
    ) -> Option<Vec<(String, Span, String)>> {
        let v = if required {
            self.required(cx, key)?
        } else {
            self.raw(cx, key)?
        };
        let base = self.sub(key);
        match v.get_ref() {
            DeValue::String(s) => Some(vec![(s.to_string(), v.span(), format!("{base}[0]"))]),
            DeValue::Array(a) => {
                let mut out = Vec::new();
                for (i, item) in a.iter().enumerate() {
                    let p = format!("{base}[{i}]");
                    match item.get_ref() {
                        DeValue::String(s) => out.push((s.to_string(), item.span(), p)),
                        other => cx.err_also(
                            &base,
                            &p,
                            Some(item.span()),
                            format!(
                                "items of `{key}` in {} must be strings, found {}",
                                self.what,
                                kind(other)
                            ),
                        ),
                    }
                }
                Some(out)
            }
            _ => {
                self.type_error(cx, key, v, "a string or an array of strings");
                None
            }
        }
    }

    /// A sub-table `[a.b]` or inline table.
    pub(crate) fn table(&mut self, cx: &mut Cx, key: &str, what: String) -> Option<Table<'a, 'i>> {
        let v = self.raw(cx, key)?;
        match v.get_ref() {
            DeValue::Table(t) => Some(Table::new(self.sub(key), what, v.span(), t)),
            _ => {
                self.type_error(cx, key, v, "a table");
                None
            }
        }
    }

    /// An array of tables `[[a.b]]` (or an array of inline tables).
    /// `what(i)` names element `i` in messages.
    pub(crate) fn tables(&mut self, cx: &mut Cx, key: &str, what: &str) -> Vec<Table<'a, 'i>> {
        let Some(v) = self.raw(cx, key) else {
            return Vec::new();
        };
        let base = self.sub(key);
        match v.get_ref() {
            DeValue::Array(a) => {
                let mut out = Vec::new();
                for (i, item) in a.iter().enumerate() {
                    let p = format!("{base}[{i}]");
                    match item.get_ref() {
                        DeValue::Table(t) => {
                            out.push(Table::new(p, format!("{what} #{}", i + 1), item.span(), t))
                        }
                        other => cx.err(
                            &p,
                            Some(item.span()),
                            format!("each `{key}` entry must be a table, found {}", kind(other)),
                        ),
                    }
                }
                out
            }
            DeValue::Table(t) => {
                cx.err(
                    &base,
                    Some(v.span()),
                    format!(
                        "`{key}` must be an array of tables: write [[{}]], not [{}]",
                        base, base
                    ),
                );
                let _ = t;
                Vec::new()
            }
            other => {
                cx.err(
                    &base,
                    Some(v.span()),
                    format!(
                        "`{key}` must be an array of tables ([[{base}]]), found {}",
                        kind(other)
                    ),
                );
                Vec::new()
            }
        }
    }

    /// Reports every key of this table that was not read, suggesting the closest
    /// known key.
    pub(crate) fn finish(self, cx: &mut Cx, known: &[&str]) {
        let mut unknown: Vec<_> = self
            .table
            .iter()
            .filter(|(k, _)| !self.used.contains(&k.get_ref().as_ref()))
            .collect();
        unknown.sort_by_key(|(k, _)| k.span().start);
        for (k, _) in unknown {
            let name: &str = k.get_ref().as_ref();
            let mut msg = format!("unknown key `{name}` in {}", self.what);
            if let Some(best) = closest(name, known) {
                msg.push_str(&format!("; did you mean `{best}`?"));
            } else if !known.is_empty() {
                msg.push_str(&format!("; known keys are: {}", known.join(", ")));
            }
            cx.err(&self.sub(name), Some(k.span()), msg);
        }
    }
}

/// The known key closest to `name` by edit distance, if it is close enough to be
/// a plausible typo.
fn closest<'k>(name: &str, known: &[&'k str]) -> Option<&'k str> {
    known
        .iter()
        .map(|k| (levenshtein(name, k), *k))
        .filter(|(d, k)| *d <= 2.max(k.len() / 3))
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

pub(crate) fn levenshtein(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != *cb);
            cur.push(sub.min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggestions() {
        assert_eq!(levenshtein("adress", "address"), 1);
        assert_eq!(
            closest("adress", &["name", "address", "link"]),
            Some("address")
        );
        assert_eq!(closest("zzzzzz", &["name", "address", "link"]), None);
    }
}
