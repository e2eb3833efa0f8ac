//! Typed readers shared by every section: a name, a string parsed by a
//! function, a list, one word of a fixed set, a path resolved against the policy
//! directory, a duration, ports, ranks. Each reports its problem at the value and
//! marks the value bad so that later checks skip it.

use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use toml::de::DeValue;

use crate::addr::{self, PortRange};
use crate::reader::{float_of, int_of, Cx, Span, Table};

/// What a value that failed to parse is replaced by (never handed out).
pub(super) const PLACEHOLDER_IP: IpAddr = IpAddr::V4(Ipv4Addr::UNSPECIFIED);

/// Reads `name` (required) and renames the table in messages to `kind "name"`.
pub(super) fn name(t: &mut Table<'_, '_>, cx: &mut Cx, kind: &str) -> String {
    match t.string(cx, "name", true) {
        Some((n, span)) => {
            if n.is_empty() || n.chars().any(|c| c.is_whitespace() || c.is_control()) {
                cx.err(
                    &t.sub("name"),
                    Some(span),
                    format!("{kind} name `{n}` must be non-empty without spaces"),
                );
            }
            t.what = format!("{kind} \"{n}\"");
            n
        }
        None => String::new(),
    }
}

/// [`name`] under another name, for sections whose `name` is read inline.
pub(super) fn name_of(t: &mut Table<'_, '_>, cx: &mut Cx, kind: &str) -> String {
    name(t, cx, kind)
}

/// Parses a string value with `f`; reports `f`'s error at the value.
pub(super) fn parsed<T>(
    t: &mut Table<'_, '_>,
    cx: &mut Cx,
    key: &str,
    required: bool,
    f: impl Fn(&str) -> Result<T, String>,
) -> Option<T> {
    let (s, span) = t.string(cx, key, required)?;
    match f(&s) {
        Ok(v) => Some(v),
        Err(e) => {
            cx.err(
                &t.sub(key),
                Some(span),
                format!("`{key}` in {}: {e}", t.what),
            );
            None
        }
    }
}

/// Each string of a list parsed with `f`.
pub(super) fn parsed_list<T>(
    t: &mut Table<'_, '_>,
    cx: &mut Cx,
    key: &str,
    required: bool,
    f: impl Fn(&str) -> Result<T, String>,
) -> Vec<T> {
    let mut out = Vec::new();
    for (s, span, path) in t.strings(cx, key, required).unwrap_or_default() {
        match f(&s) {
            Ok(v) => out.push(v),
            Err(e) => {
                cx.err(&path, Some(span), format!("`{key}` in {}: {e}", t.what));
                cx.spans.mark_bad(&t.sub(key));
            }
        }
    }
    out
}

/// One of a fixed set of words.
pub(super) fn choice<T: Copy>(
    t: &mut Table<'_, '_>,
    cx: &mut Cx,
    key: &str,
    options: &[(&str, T)],
    default: T,
) -> T {
    let Some((s, span)) = t.string(cx, key, false) else {
        return default;
    };
    if let Some((_, v)) = options.iter().find(|(w, _)| *w == s) {
        return *v;
    }
    let words: Vec<String> = options.iter().map(|(w, _)| format!("\"{w}\"")).collect();
    cx.err(
        &t.sub(key),
        Some(span),
        format!(
            "`{key}` in {} is \"{s}\", but it must be one of {}",
            t.what,
            words.join(", ")
        ),
    );
    default
}

pub(super) fn resolve(base: &Path, p: &str) -> PathBuf {
    let p = Path::new(p);
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        base.join(p)
    }
}

pub(super) fn path(
    t: &mut Table<'_, '_>,
    cx: &mut Cx,
    key: &str,
    required: bool,
    base: &Path,
) -> Option<PathBuf> {
    let (s, span) = t.string(cx, key, required)?;
    if s.is_empty() {
        cx.err(
            &t.sub(key),
            Some(span),
            format!("`{key}` in {} is an empty path", t.what),
        );
        return None;
    }
    Some(resolve(base, &s))
}

/// Parses `30`, `"30s"`, `"150ms"`, `"15m"`, `"4h"`, `"1d"`.
pub(super) fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("`{s}` is not a duration (write seconds, or a number with ms, s, m, h or d: \"30s\", \"150ms\", \"4h\")"))?;
    let too_long = || format!("duration `{s}` is too long");
    if unit.trim() == "ms" {
        return Ok(Duration::from_millis(n));
    }
    let mult = match unit.trim() {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86400,
        u => {
            return Err(format!(
                "unknown time unit `{u}` in `{s}`: use ms, s, m, h or d"
            ))
        }
    };
    n.checked_mul(mult)
        .map(Duration::from_secs)
        .ok_or_else(too_long)
}

/// The longest duration accepted anywhere (100 years): keeps arithmetic on
/// durations (rekey + 10 %, timeouts × base^tries) far from overflow.
const MAX_DURATION: Duration = Duration::from_secs(100 * 365 * 86400);

/// A duration: an integer or float number of seconds, or a string with a unit.
pub(super) fn duration(t: &mut Table<'_, '_>, cx: &mut Cx, key: &str) -> Option<Duration> {
    let v = t.raw(cx, key)?;
    let r = match v.get_ref() {
        DeValue::String(s) => parse_duration(s),
        DeValue::Integer(_) | DeValue::Float(_) => match float_of(v.get_ref()) {
            Some(n) if n >= 0.0 && n <= MAX_DURATION.as_secs_f64() => {
                Ok(Duration::from_secs_f64(n))
            }
            Some(n) if n >= 0.0 => Err(format!("duration {n} s is too long")),
            _ => Err("a duration cannot be negative".to_string()),
        },
        _ => Err("it must be a duration: seconds as a number, or a string like \"30s\", \"150ms\", \"4h\"".into()),
    };
    let r = r.and_then(|d| {
        if d > MAX_DURATION {
            Err(format!(
                "duration {} is too long",
                crate::model::fmt_duration(d)
            ))
        } else {
            Ok(d)
        }
    });
    r.map_err(|e| {
        cx.err(
            &t.sub(key),
            Some(v.span()),
            format!("`{key}` in {}: {e}", t.what),
        )
    })
    .ok()
}

/// A number in `min..=max` (a float or an integer).
pub(super) fn float(
    t: &mut Table<'_, '_>,
    cx: &mut Cx,
    key: &str,
    min: f64,
    max: f64,
) -> Option<f64> {
    let v = t.raw(cx, key)?;
    match float_of(v.get_ref()) {
        Some(f) if (min..=max).contains(&f) => Some(f),
        Some(f) => {
            cx.err(
                &t.sub(key),
                Some(v.span()),
                format!(
                    "`{key}` = {f} in {} is out of range: it must be between {min:?} and {max:?}",
                    t.what
                ),
            );
            None
        }
        None => {
            cx.err(
                &t.sub(key),
                Some(v.span()),
                format!(
                    "`{key}` in {} must be a number, found {}",
                    t.what,
                    crate::reader::kind(v.get_ref())
                ),
            );
            None
        }
    }
}

pub(super) fn port(t: &mut Table<'_, '_>, cx: &mut Cx, key: &str, default: u16) -> u16 {
    t.int(cx, key, false, 1, 65535)
        .map_or(default, |n| n as u16)
}

pub(super) fn rank(t: &mut Table<'_, '_>, cx: &mut Cx, key: &str, required: bool) -> u8 {
    // Ranks are 1-254 (seed 001: 0 and 255 are reserved), higher first.
    t.int(cx, key, required, 1, 254).map_or(1, |n| n as u8)
}

/// A port selector given as an integer or a string (`443`, `"1024-65535"`, `"any"`).
pub(super) fn port_value(v: &DeValue<'_>) -> Result<PortRange, String> {
    match v {
        DeValue::String(s) => addr::parse_ports(s),
        DeValue::Integer(_) => match int_of(v) {
            Some(n @ 0..=65535) => Ok(PortRange {
                lo: n as u16,
                hi: n as u16,
            }),
            _ => Err("a port must be between 0 and 65535".into()),
        },
        _ => Err("a port must be a number or a string like \"1024-65535\"".into()),
    }
}

pub(super) fn ports_one(t: &mut Table<'_, '_>, cx: &mut Cx, key: &str) -> PortRange {
    let Some(v) = t.raw(cx, key) else {
        return PortRange::ANY;
    };
    port_value(v.get_ref())
        .map_err(|e| {
            cx.err(
                &t.sub(key),
                Some(v.span()),
                format!("`{key}` in {}: {e}", t.what),
            )
        })
        .unwrap_or(PortRange::ANY)
}

pub(super) fn ports_list(t: &mut Table<'_, '_>, cx: &mut Cx, key: &str) -> Vec<PortRange> {
    let Some(v) = t.required(cx, key) else {
        return vec![];
    };
    let base = t.sub(key);
    let items: Vec<(&DeValue<'_>, Span, String)> = match v.get_ref() {
        DeValue::Array(a) => a
            .iter()
            .enumerate()
            .map(|(i, x)| (x.get_ref(), x.span(), format!("{base}[{i}]")))
            .collect(),
        other => vec![(other, v.span(), format!("{base}[0]"))],
    };
    let mut out = Vec::new();
    for (x, span, p) in items {
        match port_value(x) {
            Ok(r) => out.push(r),
            Err(e) => {
                cx.err(&p, Some(span), format!("`{key}` in {}: {e}", t.what));
                cx.spans.mark_bad(&base);
            }
        }
    }
    out
}

pub(super) fn u64_opt(t: &mut Table<'_, '_>, cx: &mut Cx, key: &str) -> Option<u64> {
    t.int(cx, key, false, 1, i64::MAX as i128).map(|n| n as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_duration("4h").unwrap(), Duration::from_secs(14400));
        assert_eq!(parse_duration("15m").unwrap(), Duration::from_secs(900));
        assert_eq!(parse_duration("1d").unwrap(), Duration::from_secs(86400));
        assert_eq!(parse_duration("150ms").unwrap(), Duration::from_millis(150));
        assert!(parse_duration("4x")
            .unwrap_err()
            .contains("unknown time unit"));
        assert!(parse_duration("h").is_err());
        assert!(parse_duration("99999999999999999999d").is_err());
    }
}
