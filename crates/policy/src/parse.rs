//! Structural parsing: TOML document → typed [`Policy`], with every value's span
//! recorded and every structural problem (unknown key, wrong type, missing key,
//! unparsable address, unknown algorithm, out-of-range number) reported.
//!
//! Values that fail to parse are replaced by a harmless placeholder and marked bad
//! in [`Spans`], so parsing always continues to the end of the file and the
//! semantic checks in `validate` can skip what depends on them. The placeholder
//! model is never handed out: `load` only returns a `Policy` without errors.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use toml::de::DeValue;

use crate::addr::{self, AddrSel, PortRange, TrafficSelector};
use crate::model::*;
use crate::proposal;
use crate::reader::{int_of, kind, Cx, Span, Table};

const PLACEHOLDER_IP: IpAddr = IpAddr::V4(Ipv4Addr::UNSPECIFIED);

/// Parses the document into a policy (with placeholders where values were bad).
pub(crate) fn parse(root: Table<'_, '_>, cx: &mut Cx, source: &Path, base: &Path) -> Policy {
    let mut root = root;
    let site = match root.table(cx, "site", "[site]".into()) {
        Some(t) => site(t, cx),
        None => {
            if root.raw(cx, "site").is_none() {
                cx.err("site", Some(0..0), "the policy has no [site] section; it needs at least `name` and `gateway_vipas`".into());
            }
            Site {
                name: String::new(),
                gateway_vipas: vec![],
                interfaces: vec![],
                ike_port: 500,
                natt_port: 4500,
            }
        }
    };
    let peers = root
        .tables(cx, "peer", "[[peer]]")
        .into_iter()
        .map(|t| peer(t, cx, base))
        .collect();
    let spd = root
        .tables(cx, "spd", "SPD rule")
        .into_iter()
        .map(|t| spd_rule(t, cx))
        .collect();
    let dvipas = root
        .tables(cx, "dvipa", "[[dvipa]]")
        .into_iter()
        .map(|t| dvipa(t, cx))
        .collect();
    let targets = root
        .tables(cx, "target", "[[target]]")
        .into_iter()
        .map(|t| target(t, cx))
        .collect();
    let links = root
        .tables(cx, "link", "[[link]]")
        .into_iter()
        .map(|t| link(t, cx))
        .collect();
    let cluster = root
        .table(cx, "cluster", "[cluster]".into())
        .map(|t| cluster(t, cx, base));
    let ha = root.table(cx, "ha", "[ha]".into()).map(|t| ha(t, cx, base));
    let log = root
        .table(cx, "log", "[log]".into())
        .map(|t| log(t, cx, base))
        .unwrap_or_default();
    root.finish(
        cx,
        &[
            "site", "peer", "spd", "dvipa", "target", "link", "cluster", "ha", "log",
        ],
    );
    Policy {
        source: source.to_path_buf(),
        site,
        peers,
        spd,
        dvipas,
        targets,
        links,
        cluster,
        ha,
        log,
    }
}

// ---------------------------------------------------------------- helpers

/// Reads `name` (required) and renames the table in messages to `kind "name"`.
fn name(t: &mut Table<'_, '_>, cx: &mut Cx, kind: &str) -> String {
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

/// Parses a string value with `f`; reports `f`'s error at the value.
fn parsed<T>(
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
fn parsed_list<T>(
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
fn choice<T: Copy>(
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

fn resolve(base: &Path, p: &str) -> PathBuf {
    let p = Path::new(p);
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        base.join(p)
    }
}

fn path(
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

/// Parses `30`, `"30s"`, `"15m"`, `"4h"`, `"1d"`.
pub(crate) fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("`{s}` is not a duration (write seconds, or a number with s, m, h or d: \"30s\", \"4h\")"))?;
    let mult = match unit.trim() {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86400,
        u => {
            return Err(format!(
                "unknown time unit `{u}` in `{s}`: use s, m, h or d"
            ))
        }
    };
    n.checked_mul(mult)
        .map(Duration::from_secs)
        .ok_or_else(|| format!("duration `{s}` is too long"))
}

fn duration(t: &mut Table<'_, '_>, cx: &mut Cx, key: &str) -> Option<Duration> {
    let v = t.raw(cx, key)?;
    let r = match v.get_ref() {
        DeValue::String(s) => parse_duration(s),
        DeValue::Integer(_) => match int_of(v.get_ref()) {
            Some(n) if n >= 0 => Ok(Duration::from_secs(u64::try_from(n).unwrap_or(u64::MAX))),
            _ => Err("a duration cannot be negative".to_string()),
        },
        _ => Err("it must be a duration: seconds as an integer, or a string like \"30s\", \"15m\", \"4h\"".into()),
    };
    r.map_err(|e| {
        cx.err(
            &t.sub(key),
            Some(v.span()),
            format!("`{key}` in {}: {e}", t.what),
        )
    })
    .ok()
}

fn port(t: &mut Table<'_, '_>, cx: &mut Cx, key: &str, default: u16) -> u16 {
    t.int(cx, key, false, 1, 65535)
        .map_or(default, |n| n as u16)
}

fn rank(t: &mut Table<'_, '_>, cx: &mut Cx, key: &str, required: bool) -> u8 {
    // Ranks are 1-254 (seed 001: 0 and 255 are reserved), higher first.
    t.int(cx, key, required, 1, 254).map_or(1, |n| n as u8)
}

/// A port selector given as an integer or a string (`443`, `"1024-65535"`, `"any"`).
fn port_value(v: &DeValue<'_>) -> Result<PortRange, String> {
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

fn ports_one(t: &mut Table<'_, '_>, cx: &mut Cx, key: &str) -> PortRange {
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

fn ports_list(t: &mut Table<'_, '_>, cx: &mut Cx, key: &str) -> Vec<PortRange> {
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
        cx.spans.set(&p, span.clone());
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

fn u64_opt(t: &mut Table<'_, '_>, cx: &mut Cx, key: &str) -> Option<u64> {
    t.int(cx, key, false, 1, i64::MAX as i128).map(|n| n as u64)
}

// ---------------------------------------------------------------- sections

fn site(mut t: Table<'_, '_>, cx: &mut Cx) -> Site {
    let name = match t.string(cx, "name", true) {
        Some((n, _)) => n,
        None => String::new(),
    };
    let gateway_vipas = parsed_list(&mut t, cx, "gateway_vipas", true, addr::parse_ip);
    let mut interfaces = Vec::new();
    for mut it in t.tables(cx, "interface", "[[site.interface]]") {
        let name = name_of(&mut it, cx, "interface");
        let address = parsed(&mut it, cx, "address", true, addr::parse_if_addr).unwrap_or_default();
        it.finish(cx, &["name", "address"]);
        interfaces.push(Interface { name, address });
    }
    let ike_port = port(&mut t, cx, "ike_port", 500);
    let natt_port = port(&mut t, cx, "natt_port", 4500);
    t.finish(
        cx,
        &[
            "name",
            "gateway_vipas",
            "interface",
            "ike_port",
            "natt_port",
        ],
    );
    Site {
        name,
        gateway_vipas,
        interfaces,
        ike_port,
        natt_port,
    }
}

fn name_of(t: &mut Table<'_, '_>, cx: &mut Cx, kind: &str) -> String {
    name(t, cx, kind)
}

fn identity(s: &str) -> Result<Identity, String> {
    let s = s.trim();
    if s.is_empty() {
        return Err("an identity cannot be empty".into());
    }
    if s == "%any" || s == "any" {
        return Ok(Identity::Any);
    }
    if let Some((prefix, rest)) = s.split_once(':') {
        let rest = rest.trim();
        match prefix {
            "fqdn" => return Ok(Identity::Fqdn(rest.into())),
            "email" | "rfc822" => return Ok(Identity::Email(rest.into())),
            "dn" | "asn1dn" => return Ok(Identity::Dn(rest.into())),
            "ip" | "ipv4" | "ipv6" => return addr::parse_ip(rest).map(Identity::Ip),
            _ => {}
        }
    }
    if let Some(fqdn) = s.strip_prefix('@') {
        return Ok(Identity::Fqdn(fqdn.into()));
    }
    if let Ok(ip) = addr::parse_ip(s) {
        return Ok(Identity::Ip(ip));
    }
    if s.contains('=') {
        return Ok(Identity::Dn(s.into()));
    }
    if s.contains('@') {
        return Ok(Identity::Email(s.into()));
    }
    Ok(Identity::Fqdn(s.into()))
}

fn remote_addr(s: &str) -> Result<RemoteAddr, String> {
    let s = s.trim();
    if s == "any" || s == "%any" {
        return Ok(RemoteAddr::Any);
    }
    if s.contains('/') {
        return addr::parse_subnet(s).map(RemoteAddr::Subnet);
    }
    addr::parse_ip(s)
        .map(RemoteAddr::Host)
        .map_err(|_| format!("`{s}` must be an IP address, a subnet (10.0.0.0/8) or \"any\""))
}

/// Default lifetime: 10 % above the rekey time, as strongSwan does.
fn default_life(rekey: Duration) -> Duration {
    rekey + rekey / 10
}

fn peer(mut t: Table<'_, '_>, cx: &mut Cx, base: &Path) -> Peer {
    let name = name(&mut t, cx, "peer");
    let remote = parsed(&mut t, cx, "remote_address", true, remote_addr).unwrap_or(RemoteAddr::Any);
    let local_id = parsed(&mut t, cx, "local_id", true, identity).unwrap_or(Identity::Any);
    let remote_id = parsed(&mut t, cx, "remote_id", true, identity).unwrap_or(Identity::Any);
    let method = choice(&mut t, cx, "auth", &[("psk", true), ("cert", false)], true);
    let auth_given = t.raw(cx, "auth").is_some();
    if !auth_given {
        cx.err(
            &t.sub("auth"),
            Some(t.span.clone()),
            format!(
                "{} is missing the required key `auth` (\"psk\" or \"cert\")",
                t.what
            ),
        );
    }
    let psk_file = path(&mut t, cx, "psk_file", false, base);
    let cert = path(&mut t, cx, "cert", false, base);
    let private_key = path(&mut t, cx, "private_key", false, base);
    let ca = parsed_list(&mut t, cx, "ca", false, |s| Ok(resolve(base, s)));
    let auth = auth_fields(
        &t,
        cx,
        auth_given && method,
        auth_given && !method,
        psk_file,
        cert,
        private_key,
        ca,
    );
    let mut proposals = Vec::new();
    let given = t.strings(cx, "proposals", false);
    for (s, span, p) in given.clone().unwrap_or_default() {
        match proposal::parse_ike(&s) {
            Ok((prop, warnings)) => {
                proposals.push(prop);
                for w in warnings {
                    cx.diags.warning(Some(span.clone()), w);
                }
            }
            Err(e) => cx.err(&p, Some(span), e.to_string()),
        }
    }
    if given.is_none() {
        for s in ["aes256gcm16-prfsha384-ecp384", "aes128-sha256-x25519"] {
            if let Ok((prop, _)) = proposal::parse_ike(s) {
                proposals.push(prop);
            }
        }
    }
    let rekey_time = duration(&mut t, cx, "rekey_time").unwrap_or(Duration::from_secs(4 * 3600));
    let life_time = duration(&mut t, cx, "life_time").unwrap_or(default_life(rekey_time));
    let dpd_delay = duration(&mut t, cx, "dpd_delay").unwrap_or(Duration::from_secs(30));
    let dpd_delay = (!dpd_delay.is_zero()).then_some(dpd_delay);
    let encap = choice(
        &mut t,
        cx,
        "encap",
        &[("auto", Encap::Auto), ("udp", Encap::Udp)],
        Encap::Auto,
    );
    let mut children = Vec::new();
    let what = t.what.clone();
    for c in t.tables(cx, "child", "[[peer.child]]") {
        children.push(child(c, cx, &what));
    }
    t.finish(
        cx,
        &[
            "name",
            "remote_address",
            "local_id",
            "remote_id",
            "auth",
            "psk_file",
            "cert",
            "private_key",
            "ca",
            "proposals",
            "rekey_time",
            "life_time",
            "dpd_delay",
            "encap",
            "child",
        ],
    );
    Peer {
        name,
        remote,
        local_id,
        remote_id,
        auth,
        proposals,
        rekey_time,
        life_time,
        dpd_delay,
        encap,
        children,
    }
}

#[allow(clippy::too_many_arguments)]
fn auth_fields(
    t: &Table<'_, '_>,
    cx: &mut Cx,
    is_psk: bool,
    is_cert: bool,
    psk_file: Option<PathBuf>,
    cert: Option<PathBuf>,
    private_key: Option<PathBuf>,
    ca: Vec<PathBuf>,
) -> Auth {
    let auth_span = cx.spans.get(&t.sub("auth"));
    let need = |cx: &mut Cx, key: &str, ok: bool, method: &str| {
        if !ok {
            cx.err(
                &t.sub(key),
                auth_span.clone(),
                format!("{} uses auth = \"{method}\" but has no `{key}`", t.what),
            );
        }
    };
    let forbid = |cx: &mut Cx, key: &str, present: bool, method: &str| {
        if present {
            let span = cx.spans.get(&t.sub(key));
            cx.err(
                &t.sub(key),
                span,
                format!(
                    "`{key}` in {} has no effect with auth = \"{method}\"; remove it",
                    t.what
                ),
            );
        }
    };
    if is_psk {
        need(cx, "psk_file", psk_file.is_some(), "psk");
        forbid(cx, "cert", cert.is_some(), "psk");
        forbid(cx, "private_key", private_key.is_some(), "psk");
        forbid(cx, "ca", !ca.is_empty(), "psk");
    }
    if is_cert {
        need(cx, "cert", cert.is_some(), "cert");
        need(cx, "private_key", private_key.is_some(), "cert");
        need(cx, "ca", !ca.is_empty(), "cert");
        forbid(cx, "psk_file", psk_file.is_some(), "cert");
    }
    if is_cert {
        Auth::Cert {
            cert: cert.unwrap_or_default(),
            private_key: private_key.unwrap_or_default(),
            ca,
        }
    } else {
        Auth::Psk {
            psk_file: psk_file.unwrap_or_default(),
        }
    }
}

fn child(mut t: Table<'_, '_>, cx: &mut Cx, peer_what: &str) -> Child {
    let n = name(&mut t, cx, "child");
    t.what = format!("child \"{n}\" of {peer_what}");
    let local_ts = parsed_list(&mut t, cx, "local_ts", true, |s| {
        s.parse::<TrafficSelector>()
    });
    let remote_ts = parsed_list(&mut t, cx, "remote_ts", true, |s| {
        s.parse::<TrafficSelector>()
    });
    let mut esp_proposals = Vec::new();
    let given = t.strings(cx, "esp_proposals", false);
    for (s, span, p) in given.clone().unwrap_or_default() {
        match proposal::parse_esp(&s) {
            Ok((prop, warnings)) => {
                esp_proposals.push(prop);
                for w in warnings {
                    cx.diags.warning(Some(span.clone()), w);
                }
            }
            Err(e) => cx.err(&p, Some(span), e.to_string()),
        }
    }
    if given.is_none() {
        for s in ["aes256gcm16", "aes128gcm16"] {
            if let Ok((prop, _)) = proposal::parse_esp(s) {
                esp_proposals.push(prop);
            }
        }
    }
    let mode = choice(
        &mut t,
        cx,
        "mode",
        &[("tunnel", Mode::Tunnel), ("transport", Mode::Transport)],
        Mode::Tunnel,
    );
    let rekey_time = duration(&mut t, cx, "rekey_time").unwrap_or(Duration::from_secs(3600));
    let life_time = duration(&mut t, cx, "life_time").unwrap_or(default_life(rekey_time));
    let lifetime = ChildLifetime {
        rekey_time,
        life_time,
        rekey_bytes: u64_opt(&mut t, cx, "rekey_bytes"),
        life_bytes: u64_opt(&mut t, cx, "life_bytes"),
        rekey_packets: u64_opt(&mut t, cx, "rekey_packets"),
        life_packets: u64_opt(&mut t, cx, "life_packets"),
    };
    //= https://www.rfc-editor.org/rfc/rfc4303#section-3.4.3
    //# A minimum window size of 32 packets MUST be supported when 32-bit
    //# sequence numbers are employed; a window size of 64 is preferred and
    //# SHOULD be employed as the default.
    // plexgate asks for more (128..=4096, default 1024): a gateway that spreads
    // many flows over one SA sees heavy reordering.
    let replay_window = match t.raw(cx, "replay_window") {
        None => 1024,
        Some(v) => match int_of(v.get_ref()) {
            Some(n @ 128..=4096) => n as u32,
            Some(n) => {
                cx.err(
                    &t.sub("replay_window"),
                    Some(v.span()),
                    format!("replay window {n} of {} is out of range: it must be between 128 and 4096 packets (default 1024)", t.what),
                );
                1024
            }
            None => {
                cx.err(
                    &t.sub("replay_window"),
                    Some(v.span()),
                    format!(
                        "`replay_window` in {} must be an integer, found {}",
                        t.what,
                        kind(v.get_ref())
                    ),
                );
                1024
            }
        },
    };
    let start_action = choice(
        &mut t,
        cx,
        "start_action",
        &[
            ("none", StartAction::None),
            ("trap", StartAction::Trap),
            ("start", StartAction::Start),
        ],
        StartAction::None,
    );
    t.finish(
        cx,
        &[
            "name",
            "local_ts",
            "remote_ts",
            "esp_proposals",
            "mode",
            "rekey_time",
            "life_time",
            "rekey_bytes",
            "life_bytes",
            "rekey_packets",
            "life_packets",
            "replay_window",
            "start_action",
        ],
    );
    Child {
        name: n,
        local_ts,
        remote_ts,
        esp_proposals,
        mode,
        lifetime,
        replay_window,
        start_action,
    }
}

fn spd_rule(mut t: Table<'_, '_>, cx: &mut Cx) -> SpdRule {
    let name = t.string(cx, "name", false).map(|(n, _)| n);
    if let Some(n) = &name {
        t.what = format!("{} (\"{n}\")", t.what);
    }
    let direction = choice(
        &mut t,
        cx,
        "direction",
        &[
            ("in", Direction::In),
            ("out", Direction::Out),
            ("both", Direction::Both),
        ],
        Direction::Both,
    );
    let local = parsed(&mut t, cx, "local", true, addr::parse_addr_sel).unwrap_or(AddrSel::Any);
    let remote = parsed(&mut t, cx, "remote", true, addr::parse_addr_sel).unwrap_or(AddrSel::Any);
    let protocol = parsed(&mut t, cx, "protocol", false, addr::parse_proto).unwrap_or(None);
    let local_ports = ports_one(&mut t, cx, "local_port");
    let remote_ports = ports_one(&mut t, cx, "remote_port");
    for (key, p) in [("local_port", local_ports), ("remote_port", remote_ports)] {
        if p != PortRange::ANY && !addr::proto_has_ports(protocol) && cx.spans.ok(&t.sub(key)) {
            let span = cx.spans.get(&t.sub(key));
            cx.err(
                &t.sub(key),
                span,
                format!(
                    "{} names `{key}` but protocol {} has no ports (use tcp, udp or sctp)",
                    t.what,
                    addr::proto_name(protocol)
                ),
            );
        }
    }
    let act = choice(
        &mut t,
        cx,
        "action",
        &[("protect", 0), ("bypass", 1), ("discard", 2)],
        2,
    );
    if t.raw(cx, "action").is_none() {
        cx.err(
            &t.sub("action"),
            Some(t.span.clone()),
            format!(
                "{} is missing the required key `action` (\"protect\", \"bypass\" or \"discard\")",
                t.what
            ),
        );
    }
    let peer = t.string(cx, "peer", act == 0);
    let child = t.string(cx, "child", act == 0);
    if act != 0 {
        for (key, v) in [("peer", &peer), ("child", &child)] {
            if let Some((_, span)) = v {
                cx.err(
                    &t.sub(key),
                    Some(span.clone()),
                    format!(
                        "`{key}` in {} is only used with action = \"protect\"",
                        t.what
                    ),
                );
            }
        }
    }
    let action = match act {
        0 => SpdAction::Protect {
            peer: peer.map(|p| p.0).unwrap_or_default(),
            child: child.map(|c| c.0).unwrap_or_default(),
        },
        1 => SpdAction::Bypass,
        _ => SpdAction::Discard,
    };
    t.finish(
        cx,
        &[
            "name",
            "direction",
            "local",
            "remote",
            "protocol",
            "local_port",
            "remote_port",
            "action",
            "peer",
            "child",
        ],
    );
    SpdRule {
        name,
        direction,
        local,
        remote,
        protocol,
        local_ports,
        remote_ports,
        action,
    }
}

fn dvipa(mut t: Table<'_, '_>, cx: &mut Cx) -> Dvipa {
    let address = parsed(&mut t, cx, "address", true, addr::parse_ip).unwrap_or(PLACEHOLDER_IP);
    if cx.spans.ok(&t.sub("address")) {
        t.what = format!("DVIPA {address}");
    }
    let ports = ports_list(&mut t, cx, "ports");
    let targets = match t.strings(cx, "targets", true) {
        Some(v) if v.len() == 1 && v[0].0 == "all" => TargetSet::All,
        Some(v) => TargetSet::Named(v.into_iter().map(|(s, _, _)| s).collect()),
        None => TargetSet::Named(vec![]),
    };
    let method = choice(
        &mut t,
        cx,
        "method",
        &[
            ("round-robin", Method::RoundRobin),
            ("weighted-round-robin", Method::WeightedRoundRobin),
            ("least-connections", Method::LeastConnections),
        ],
        Method::RoundRobin,
    );
    let mut weights = BTreeMap::new();
    if let Some(w) = t.table(cx, "weights", String::new()) {
        let base = w.path.clone();
        let what = t.what.clone();
        if let Some(v) = t.raw(cx, "weights") {
            if let DeValue::Table(tab) = v.get_ref() {
                for (k, val) in tab.iter() {
                    let key: &str = k.get_ref().as_ref();
                    let p = format!("{base}.{key}");
                    cx.spans.set(&p, k.span());
                    match int_of(val.get_ref()) {
                        Some(n) if (0..=1_000_000).contains(&n) => {
                            weights.insert(key.to_string(), n as u32);
                        }
                        Some(n) => cx.err(
                            &p,
                            Some(val.span()),
                            format!("weight {n} for target \"{key}\" in {what} is invalid: weights are 0 (drain) to 1000000"),
                        ),
                        None => cx.err(&p, Some(val.span()), format!("weight for target \"{key}\" in {what} must be an integer, found {}", kind(val.get_ref()))),
                    }
                }
            }
        }
    }
    let routing_gateway = t.string(cx, "routing_gateway", false).map(|(s, _)| s);
    let mut backups = Vec::new();
    let what = t.what.clone();
    for mut b in t.tables(cx, "backup", "backup") {
        b.what = format!("a backup of {what}");
        let gateway = b
            .string(cx, "gateway", true)
            .map(|(s, _)| s)
            .unwrap_or_default();
        let rank = rank(&mut b, cx, "rank", true);
        b.finish(cx, &["gateway", "rank"]);
        backups.push(Backup { gateway, rank });
    }
    let plain_traffic = choice(
        &mut t,
        cx,
        "plain_traffic",
        &[
            ("distribute", PlainTraffic::Distribute),
            ("drop", PlainTraffic::Drop),
        ],
        PlainTraffic::Drop,
    );
    t.finish(
        cx,
        &[
            "address",
            "ports",
            "targets",
            "method",
            "weights",
            "routing_gateway",
            "backup",
            "plain_traffic",
        ],
    );
    Dvipa {
        address,
        ports,
        targets,
        method,
        weights,
        routing_gateway,
        backups,
        plain_traffic,
    }
}

fn target(mut t: Table<'_, '_>, cx: &mut Cx) -> Target {
    let name = name(&mut t, cx, "target");
    let address = parsed(&mut t, cx, "address", true, addr::parse_ip).unwrap_or(PLACEHOLDER_IP);
    let link = t
        .string(cx, "link", true)
        .map(|(s, _)| s)
        .unwrap_or_default();
    let weight = match t.raw(cx, "weight") {
        None => 1,
        Some(v) => match int_of(v.get_ref()) {
            Some(n) if (0..=1_000_000).contains(&n) => n as u32,
            Some(n) => {
                cx.err(
                    &t.sub("weight"),
                    Some(v.span()),
                    format!(
                        "weight {n} of {} is invalid: weights are 0 (drain) to 1000000",
                        t.what
                    ),
                );
                1
            }
            None => {
                cx.err(
                    &t.sub("weight"),
                    Some(v.span()),
                    format!(
                        "`weight` in {} must be an integer, found {}",
                        t.what,
                        kind(v.get_ref())
                    ),
                );
                1
            }
        },
    };
    t.finish(cx, &["name", "address", "link", "weight"]);
    Target {
        name,
        address,
        link,
        weight,
    }
}

fn link(mut t: Table<'_, '_>, cx: &mut Cx) -> Link {
    let name = name(&mut t, cx, "link");
    let interface = t
        .string(cx, "interface", true)
        .map(|(s, _)| s)
        .unwrap_or_default();
    let local = parsed(&mut t, cx, "local", true, addr::parse_ip).unwrap_or(PLACEHOLDER_IP);
    let subnet = parsed(&mut t, cx, "subnet", true, addr::parse_subnet).unwrap_or_default();
    // `remote` may be left out: it defaults to the address of the target on the
    // link (filled in by validation).
    let remote = parsed(&mut t, cx, "remote", false, addr::parse_ip).unwrap_or(PLACEHOLDER_IP);
    t.finish(cx, &["name", "interface", "local", "subnet", "remote"]);
    Link {
        name,
        interface,
        local,
        subnet,
        remote,
    }
}

fn cluster(mut t: Table<'_, '_>, cx: &mut Cx, base: &Path) -> Cluster {
    let key_file = path(&mut t, cx, "key_file", true, base).unwrap_or_default();
    let gateway_id = t
        .int(cx, "gateway_id", true, 1, u32::MAX as i128)
        .map_or(1, |n| n as u32);
    let port = port(&mut t, cx, "port", 7600);
    t.finish(cx, &["key_file", "gateway_id", "port"]);
    Cluster {
        key_file,
        gateway_id,
        port,
    }
}

fn ha(mut t: Table<'_, '_>, cx: &mut Cx, base: &Path) -> Ha {
    let name = t
        .string(cx, "name", true)
        .map(|(s, _)| s)
        .unwrap_or_default();
    let own_rank = rank(&mut t, cx, "rank", true);
    let mut peers = Vec::new();
    for mut p in t.tables(cx, "peer", "[[ha.peer]]") {
        let n = name_of(&mut p, cx, "gateway");
        let address = parsed(&mut p, cx, "address", true, addr::parse_ip).unwrap_or(PLACEHOLDER_IP);
        let r = rank(&mut p, cx, "rank", true);
        p.finish(cx, &["name", "address", "rank"]);
        peers.push(HaPeer {
            name: n,
            address,
            rank: r,
        });
    }
    let store = match t.table(cx, "store", "[ha.store]".into()) {
        Some(s) => store(s, cx, base),
        None => {
            if t.raw(cx, "store").is_none() {
                cx.err(
                    &t.sub("store"),
                    Some(t.span.clone()),
                    "[ha] needs a [ha.store] section (kind = \"embedded\" or \"etcd\")".into(),
                );
            }
            Store::Embedded {
                path: PathBuf::new(),
            }
        }
    };
    t.finish(cx, &["name", "rank", "peer", "store"]);
    Ha {
        name,
        rank: own_rank,
        peers,
        store,
    }
}

fn store(mut t: Table<'_, '_>, cx: &mut Cx, base: &Path) -> Store {
    let kind = t.string(cx, "kind", true);
    let s = match kind.as_ref().map(|(k, _)| k.as_str()) {
        Some("embedded") => {
            let path = path(&mut t, cx, "path", true, base).unwrap_or_default();
            t.finish(cx, &["kind", "path"]);
            return Store::Embedded { path };
        }
        Some("etcd") => {
            let endpoints: Vec<String> = t
                .strings(cx, "endpoints", true)
                .unwrap_or_default()
                .into_iter()
                .map(|e| e.0)
                .collect();
            if endpoints.is_empty() && cx.spans.ok(&t.sub("endpoints")) {
                let span = cx.spans.get(&t.sub("endpoints"));
                cx.err(
                    &t.sub("endpoints"),
                    span,
                    "[ha.store] of kind \"etcd\" needs at least one endpoint".into(),
                );
            }
            let prefix = t
                .string(cx, "prefix", false)
                .map(|p| p.0)
                .unwrap_or_default();
            let lease = t
                .int(cx, "lease_seconds", false, 1, 3600)
                .map_or(10, |n| n as u64);
            t.finish(cx, &["kind", "endpoints", "prefix", "lease_seconds"]);
            return Store::Etcd {
                endpoints,
                prefix,
                lease: Duration::from_secs(lease),
            };
        }
        Some(other) => {
            let span = kind.as_ref().map(|k| k.1.clone());
            cx.err(
                &t.sub("kind"),
                span,
                format!("store kind \"{other}\" is unknown: use \"embedded\" or \"etcd\""),
            );
            Store::Embedded {
                path: PathBuf::new(),
            }
        }
        None => Store::Embedded {
            path: PathBuf::new(),
        },
    };
    // Unknown kind: we cannot tell which keys belong; accept the known ones.
    for k in ["path", "endpoints", "prefix", "lease_seconds"] {
        let _ = t.raw(cx, k);
    }
    t.finish(
        cx,
        &["kind", "path", "endpoints", "prefix", "lease_seconds"],
    );
    s
}

fn log(mut t: Table<'_, '_>, cx: &mut Cx, base: &Path) -> Log {
    let keylog = path(&mut t, cx, "keylog", false, base);
    if let Some(p) = &keylog {
        let span = cx.spans.get(&t.sub("keylog"));
        cx.diags.warning(
            span,
            format!(
                "key logging is on: every IKE and ESP key will be written to {}; anyone who reads it can decrypt all traffic. Use it only in a lab",
                p.display()
            ),
        );
    }
    t.finish(cx, &["keylog"]);
    Log { keylog }
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
        assert!(parse_duration("4x")
            .unwrap_err()
            .contains("unknown time unit"));
        assert!(parse_duration("h").is_err());
        assert!(parse_duration("99999999999999999999d").is_err());
    }

    #[test]
    fn identities() {
        assert_eq!(
            identity("client@example").unwrap(),
            Identity::Email("client@example".into())
        );
        assert_eq!(
            identity("@vpn.example").unwrap(),
            Identity::Fqdn("vpn.example".into())
        );
        assert_eq!(
            identity("vpn.example").unwrap(),
            Identity::Fqdn("vpn.example".into())
        );
        assert_eq!(
            identity("10.0.0.1").unwrap(),
            Identity::Ip("10.0.0.1".parse().unwrap())
        );
        assert_eq!(
            identity("C=CH, O=Example, CN=gw").unwrap(),
            Identity::Dn("C=CH, O=Example, CN=gw".into())
        );
        assert_eq!(identity("dn:CN=x").unwrap(), Identity::Dn("CN=x".into()));
        assert_eq!(identity("%any").unwrap(), Identity::Any);
        assert!(identity("ip:nope").is_err());
        assert!(identity("").is_err());
    }
}
