//! `[[peer]]` and `[[peer.child]]`: remote address, identities, authentication,
//! IKE and ESP proposals, lifetimes, replay window, start action.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::addr::{self, TrafficSelector};
use crate::model::*;
use crate::proposal::{self, support};
use crate::reader::{int_of, kind, Cx, Table};

use super::values::{choice, duration, float, name, parsed, parsed_list, path, resolve, u64_opt};

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

pub(super) fn peer(mut t: Table<'_, '_>, cx: &mut Cx, base: &Path) -> Peer {
    let name = name(&mut t, cx, "peer");
    let remote = parsed(&mut t, cx, "remote_address", true, remote_addr).unwrap_or(RemoteAddr::Any);
    let local_id = parsed(&mut t, cx, "local_id", true, identity).unwrap_or(Identity::Any);
    let remote_id = parsed(&mut t, cx, "remote_id", true, identity).unwrap_or(Identity::Any);
    let auth = auth(&mut t, cx, base);
    let proposals = proposals(
        &mut t,
        cx,
        ("proposals", "IKE"),
        (proposal::parse_ike, support::ike_unsupported),
        &["aes256gcm16-prfsha384-ecp384", "aes128-sha256-x25519"],
    );
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
    let retransmit = retransmit(&mut t, cx);
    let mut children = Vec::new();
    let what = t.what.clone();
    for c in t.tables(cx, "child", "[[peer.child]]") {
        children.push(child(c, cx, &what));
    }
    t.finish(cx, PEER_KEYS);
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
        retransmit,
        children,
    }
}

/// `retransmit_timeout`, `retransmit_base`, `retransmit_tries` (strongSwan's
/// names and defaults).
fn retransmit(t: &mut Table<'_, '_>, cx: &mut Cx) -> Retransmit {
    let d = Retransmit::default();
    Retransmit {
        timeout: duration(t, cx, "retransmit_timeout").unwrap_or(d.timeout),
        base: float(t, cx, "retransmit_base", 1.0, 10.0).unwrap_or(d.base),
        tries: t
            .int(cx, "retransmit_tries", false, 1, 20)
            .map_or(d.tries, |n| n as u8),
    }
}

const PEER_KEYS: &[&str] = &[
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
    "retransmit_timeout",
    "retransmit_base",
    "retransmit_tries",
    "child",
];

/// How a kind of proposal is read: parsed (with warnings about weak
/// algorithms), then checked against what this gateway supports.
type Reader<P> = (
    fn(&str) -> Result<proposal::WithWarnings<P>, proposal::ProposalError>,
    fn(&P) -> Option<String>,
);

/// A list of proposal strings parsed with `parse` (weak algorithms become
/// warnings) and refused if `unsupported` says this gateway cannot use them
/// (#17), or `defaults` when the key is absent. A refused item also marks the
/// list bad, so that a list of typos is not also "empty".
fn proposals<P>(
    t: &mut Table<'_, '_>,
    cx: &mut Cx,
    (key, kind): (&str, &str),
    (parse, unsupported): Reader<P>,
    defaults: &[&str],
) -> Vec<P> {
    let mut out = Vec::new();
    let given = t.strings(cx, key, false);
    for (s, span, p) in given.clone().unwrap_or_default() {
        let prop = match parse(&s) {
            Ok(prop) => prop,
            Err(e) => {
                cx.err_also(&t.sub(key), &p, Some(span), e.to_string());
                continue;
            }
        };
        if let Some(why) = unsupported(&prop.0) {
            let msg = format!("{kind} proposal `{s}`: {why}");
            cx.err_also(&t.sub(key), &p, Some(span), msg);
            continue;
        }
        out.push(prop.0);
        for w in prop.1 {
            cx.diags.warning(Some(span.clone()), w);
        }
    }
    if given.is_none() {
        out.extend(
            defaults
                .iter()
                .filter_map(|s| parse(s).ok().map(|(p, _)| p)),
        );
    }
    out
}

/// `auth` and the files it needs.
fn auth(t: &mut Table<'_, '_>, cx: &mut Cx, base: &Path) -> Auth {
    let method = choice(t, cx, "auth", &[("psk", true), ("cert", false)], true);
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
    let psk_file = path(t, cx, "psk_file", false, base);
    let cert = path(t, cx, "cert", false, base);
    let private_key = path(t, cx, "private_key", false, base);
    let ca = parsed_list(t, cx, "ca", false, |s| Ok(resolve(base, s)));
    auth_fields(
        t,
        cx,
        auth_given && method,
        auth_given && !method,
        psk_file,
        cert,
        private_key,
        ca,
    )
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
    let esp_proposals = proposals(
        &mut t,
        cx,
        ("esp_proposals", "ESP"),
        (proposal::parse_esp, support::esp_unsupported),
        &["aes256gcm16", "aes128gcm16"],
    );
    let mode = choice(
        &mut t,
        cx,
        "mode",
        &[("tunnel", Mode::Tunnel), ("transport", Mode::Transport)],
        Mode::Tunnel,
    );
    let lifetime = child_lifetime(&mut t, cx);
    let replay_window = replay_window(&mut t, cx);
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
    t.finish(cx, CHILD_KEYS);
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

const CHILD_KEYS: &[&str] = &[
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
];

fn child_lifetime(t: &mut Table<'_, '_>, cx: &mut Cx) -> ChildLifetime {
    let rekey_time = duration(t, cx, "rekey_time").unwrap_or(Duration::from_secs(3600));
    let life_time = duration(t, cx, "life_time").unwrap_or(default_life(rekey_time));
    ChildLifetime {
        rekey_time,
        life_time,
        rekey_bytes: u64_opt(t, cx, "rekey_bytes"),
        life_bytes: u64_opt(t, cx, "life_bytes"),
        rekey_packets: u64_opt(t, cx, "rekey_packets"),
        life_packets: u64_opt(t, cx, "life_packets"),
    }
}

fn replay_window(t: &mut Table<'_, '_>, cx: &mut Cx) -> u32 {
    //= https://www.rfc-editor.org/rfc/rfc4303#section-3.4.3
    //# A minimum window size of 32 packets MUST be supported when 32-bit
    //# sequence numbers are employed; a window size of 64 is preferred and
    //# SHOULD be employed as the default.
    // plexgate asks for more (128..=4096, default 1024): a gateway that spreads
    // many flows over one SA sees heavy reordering.
    let Some(v) = t.raw(cx, "replay_window") else {
        return 1024;
    };
    match int_of(v.get_ref()) {
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
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
