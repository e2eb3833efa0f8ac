//! Peers and their children: unique names, usable proposals and identities,
//! soft lifetimes below hard ones, start actions that can start, and local
//! selectors that name a DVIPA at host granularity.

use std::net::IpAddr;
use std::time::Duration;

use crate::addr::{AddrSel, TrafficSelector, TsAddr};
use crate::model::*;
use crate::reader::Cx;

use super::{err, unique, Ix, LISTED};

pub(super) fn peers(p: &Policy, cx: &mut Cx, ix: &Ix) {
    unique(cx, "peer", p.peers.iter().map(|x| x.name.as_str()), |i| {
        format!("peer[{i}].name")
    });
    for (i, peer) in p.peers.iter().enumerate() {
        peer_checks(p, cx, ix, i, peer);
    }
}

fn peer_checks(p: &Policy, cx: &mut Cx, ix: &Ix, i: usize, peer: &Peer) {
    let base = format!("peer[{i}]");
    unique(
        cx,
        "child",
        peer.children.iter().map(|c| c.name.as_str()),
        |j| format!("{base}.child[{j}].name"),
    );
    if peer.encap == Encap::Udp
        && !matches!(peer.remote, RemoteAddr::Host(_))
        && cx.spans.okf(format_args!("{base}.encap"))
    {
        // Only the initiator chooses the port IKE starts on (RFC 7296 §2.23).
        let span = cx.spans.get(&format!("{base}.encap"));
        cx.diags.warning(span, format!("encap = \"udp\" in peer \"{}\" has no effect: we never initiate to a peer without a single remote_address, and a responder uses what the initiator chose", peer.name));
    }
    remote_family(p, cx, &base, peer);
    retransmit(cx, &base, peer);
    if peer.proposals.is_empty() && cx.spans.okf(format_args!("{base}.proposals")) {
        err(
            cx,
            &format!("{base}.proposals"),
            format!("peer \"{}\" has an empty `proposals` list", peer.name),
        );
    }
    if peer.local_id == Identity::Any && cx.spans.okf(format_args!("{base}.local_id")) {
        err(
            cx,
            &format!("{base}.local_id"),
            format!(
                "local_id of peer \"{}\" cannot be %any: we must say who we are",
                peer.name
            ),
        );
    }
    lifetime(
        cx,
        &base,
        "peer",
        &peer.name,
        peer.rekey_time.as_secs(),
        peer.life_time.as_secs(),
        ("rekey_time", "life_time", " s"),
    );
    if peer.children.is_empty() {
        cx.diags.warning(
            cx.spans.get(&format!("{base}.name")),
            format!(
                "peer \"{}\" has no [[peer.child]]: it can authenticate but carries no traffic",
                peer.name
            ),
        );
    }
    for (j, c) in peer.children.iter().enumerate() {
        child(p, cx, ix, peer, &format!("{base}.child[{j}]"), c);
    }
}

fn lifetime(
    cx: &mut Cx,
    base: &str,
    what: &str,
    name: &str,
    soft: u64,
    hard: u64,
    keys: (&str, &str, &str),
) {
    let (soft_key, hard_key, unit) = keys;
    let (sp, hp) = (format!("{base}.{soft_key}"), format!("{base}.{hard_key}"));
    if !cx.spans.ok(&sp) || !cx.spans.ok(&hp) || soft < hard {
        return;
    }
    let at = if cx.spans_has(&hp) { hp } else { sp };
    err(cx, &at, format!("{soft_key} ({soft}{unit}) of {what} \"{name}\" must be below {hard_key} ({hard}{unit}): the SA must be rekeyed before it expires"));
}

fn child(p: &Policy, cx: &mut Cx, ix: &Ix, peer: &Peer, base: &str, c: &Child) {
    selectors(cx, base, c);
    if c.esp_proposals.is_empty() && cx.spans.okf(format_args!("{base}.esp_proposals")) {
        err(
            cx,
            &format!("{base}.esp_proposals"),
            format!("child \"{}\" has an empty `esp_proposals` list", c.name),
        );
    }
    child_lifetimes(cx, base, c);
    if c.start_action != StartAction::None
        && !matches!(peer.remote, RemoteAddr::Host(_))
        && cx.spans.okf(format_args!("{base}.start_action"))
    {
        let word = if c.start_action == StartAction::Start {
            "start"
        } else {
            "trap"
        };
        err(
            cx,
            &format!("{base}.start_action"),
            format!("child \"{}\" has start_action = \"{word}\", but peer \"{}\" has no single remote address to initiate to", c.name, peer.name),
        );
    }
    // Only the local side can hold a DVIPA (it is an address of our pool).
    for (k, ts) in c.local_ts.iter().enumerate() {
        if let TsAddr::Sel(sel) = ts.addr {
            let what = format!("local_ts of child \"{}\"", c.name);
            covers_dvipa(p, cx, ix, &format!("{base}.local_ts[{k}]"), sel, &what);
        }
    }
}

fn child_lifetimes(cx: &mut Cx, base: &str, c: &Child) {
    let l = &c.lifetime;
    lifetime(
        cx,
        base,
        "child",
        &c.name,
        l.rekey_time.as_secs(),
        l.life_time.as_secs(),
        ("rekey_time", "life_time", " s"),
    );
    if let (Some(s), Some(h)) = (l.rekey_bytes, l.life_bytes) {
        lifetime(
            cx,
            base,
            "child",
            &c.name,
            s,
            h,
            ("rekey_bytes", "life_bytes", " bytes"),
        );
    }
    if let (Some(s), Some(h)) = (l.rekey_packets, l.life_packets) {
        lifetime(
            cx,
            base,
            "child",
            &c.name,
            s,
            h,
            ("rekey_packets", "life_packets", " packets"),
        );
    }
}

/// DESIGN.md "Rules that keep SAs movable": a selector that contains a DVIPA must
/// be exactly that DVIPA. One error per selector, naming the first DVIPA it
/// covers (in address order) and listing some of the others.
pub(super) fn covers_dvipa(p: &Policy, cx: &mut Cx, ix: &Ix, path: &str, sel: AddrSel, what: &str) {
    if matches!(sel, AddrSel::Range(r) if r.is_host()) {
        return;
    }
    let mut covered = ix.dvipas.within(&sel).map(|(_, i)| i);
    let Some(i) = covered.next() else {
        return;
    };
    let others: Vec<IpAddr> = covered
        .by_ref()
        .take(LISTED)
        .map(|j| p.dvipas[j].address)
        .collect();
    let more = covered.next().is_some();
    let d = &p.dvipas[i];
    let host = if d.address.is_ipv4() { 32 } else { 128 };
    let note = cx.diags.note(
        cx.spans.get(&format!("dvipa[{i}].address")),
        format!("DVIPA {} is defined here", d.address),
    );
    let span = cx.spans.get(path);
    let e = cx.diags.error(
        span,
        format!(
            "{what} covers DVIPA {} with the wider selector {sel}; SAs for DVIPA traffic must name the DVIPA itself ({}/{host}) so they can move between gateways",
            d.address, d.address
        ),
    );
    e.notes.push(note);
    if !others.is_empty() {
        let list: Vec<String> = others.iter().map(|a| a.to_string()).collect();
        let more = if more { " and more" } else { "" };
        e.notes.push(crate::diag::Note {
            message: format!("it also covers DVIPA {}{more}", list.join(", ")),
            position: None,
        });
    }
}

/// `local_ts` and `remote_ts`: not empty, at most 255 each (the IKE TS payload
/// counts them in one octet), and of families that can meet.
fn selectors(cx: &mut Cx, base: &str, c: &Child) {
    //= https://www.rfc-editor.org/rfc/rfc7296#section-3.13
    //# Number of TSs (1 octet) - Number of Traffic Selectors being
    //# provided.
    for (key, v) in [("local_ts", &c.local_ts), ("remote_ts", &c.remote_ts)] {
        let path = format!("{base}.{key}");
        if !cx.spans.ok(&path) || !cx.spans_has(&path) {
            continue;
        }
        if v.is_empty() {
            err(
                cx,
                &path,
                format!("`{key}` of child \"{}\" is empty", c.name),
            );
        } else if v.len() > 255 {
            err(cx, &path, format!("`{key}` of child \"{}\" has {} traffic selectors; IKEv2 carries at most 255 (RFC 7296 §3.13)", c.name, v.len()));
        }
    }
    if cx.spans.okf(format_args!("{base}.local_ts"))
        && cx.spans.okf(format_args!("{base}.remote_ts"))
    {
        selector_families(cx, base, c);
    }
}

/// Which families a traffic selector can match: `[IPv6, IPv4]`.
fn families(ts: &TrafficSelector) -> [bool; 2] {
    match ts.addr {
        TsAddr::Sel(AddrSel::Range(r)) => {
            let v4 = r.start.is_ipv4();
            [!v4, v4]
        }
        TsAddr::Sel(AddrSel::Any) | TsAddr::Dynamic => [true, true],
    }
}

/// A packet has one family, so a local selector can only ever pair with a
/// remote selector of its family (RFC 7296 §2.9 narrows pairs of ranges). No
/// common family at all: the child can never carry traffic (an error). A
/// selector whose family the other side lacks: that selector is dead (a
/// warning).
fn selector_families(cx: &mut Cx, base: &str, c: &Child) {
    let union = |v: &[TrafficSelector]| {
        v.iter().fold([false, false], |acc, ts| {
            let f = families(ts);
            [acc[0] || f[0], acc[1] || f[1]]
        })
    };
    let (l, r) = (union(&c.local_ts), union(&c.remote_ts));
    if c.local_ts.is_empty() || c.remote_ts.is_empty() {
        return;
    }
    let name = |f: usize| if f == 1 { "IPv4" } else { "IPv6" };
    if !(l[0] && r[0] || l[1] && r[1]) {
        let lf = if l[1] { 1 } else { 0 };
        err(cx, &format!("{base}.remote_ts"), format!("child \"{}\" can never carry traffic: its local_ts are {} only and its remote_ts {} only", c.name, name(lf), name(1 - lf)));
        return;
    }
    for (key, mine, other) in [("local_ts", &c.local_ts, r), ("remote_ts", &c.remote_ts, l)] {
        let other_key = if key == "local_ts" {
            "remote_ts"
        } else {
            "local_ts"
        };
        for (k, ts) in mine.iter().enumerate() {
            let f = families(ts);
            if f[0] && f[1] {
                continue;
            }
            let fam = usize::from(f[1]);
            if !other[fam] {
                let span = cx.spans.get(&format!("{base}.{key}[{k}]"));
                cx.diags.warning(span, format!("{key} {ts} of child \"{}\" is {} but {other_key} has no {} selector: it can never match", c.name, name(fam), name(fam)));
            }
        }
    }
}

/// A peer at a fixed address or subnet of a family the site has no gateway
/// VIPA of can never exchange IKE with us.
fn remote_family(p: &Policy, cx: &mut Cx, base: &str, peer: &Peer) {
    let at = match peer.remote {
        RemoteAddr::Host(a) => a,
        RemoteAddr::Subnet(n) => n.network(),
        RemoteAddr::Any => return,
    };
    let vipas = &p.site.gateway_vipas;
    let path = format!("{base}.remote_address");
    if vipas.is_empty() || !cx.spans.ok("site.gateway_vipas") || !cx.spans.ok(&path) {
        return;
    }
    if !vipas.iter().any(|v| v.is_ipv4() == at.is_ipv4()) {
        let fam = if at.is_ipv4() { "IPv4" } else { "IPv6" };
        err(cx, &path, format!("peer \"{}\" is at {fam} address {}, but the site has no {fam} gateway VIPA: IKE with it can never start", peer.name, peer.remote));
    }
}

/// The shortest first retransmission timeout: below it a peer that is merely
/// slow gets a burst of duplicate requests.
const MIN_RETRANSMIT_TIMEOUT: Duration = Duration::from_millis(100);

/// The longest a request may go unanswered before the peer is declared dead.
const MAX_GIVE_UP: Duration = Duration::from_secs(86400);

/// `retransmit_timeout` is at least 100 ms and the whole schedule ends within a
/// day (which also keeps `Retransmit::wait` far from overflow).
fn retransmit(cx: &mut Cx, base: &str, peer: &Peer) {
    let r = &peer.retransmit;
    if r.timeout < MIN_RETRANSMIT_TIMEOUT && cx.spans.okf(format_args!("{base}.retransmit_timeout"))
    {
        let msg = format!(
            "retransmit_timeout {} of peer \"{}\" is too short: at least 100ms",
            fmt_duration(r.timeout),
            peer.name
        );
        err(cx, &format!("{base}.retransmit_timeout"), msg);
        return;
    }
    let keys = ["retransmit_base", "retransmit_tries", "retransmit_timeout"];
    if !keys
        .iter()
        .all(|k| cx.spans.okf(format_args!("{base}.{k}")))
    {
        return;
    }
    let total = r.give_up_after();
    if total > MAX_GIVE_UP {
        // Point at whichever of the three was written, the growth first.
        let at = keys
            .iter()
            .map(|k| format!("{base}.{k}"))
            .find(|p| cx.spans_has(p))
            .unwrap_or_else(|| format!("{base}.name"));
        let msg = format!(
            "peer \"{}\" would retransmit for {} before giving up (retransmit_timeout {} × retransmit_base {}^n, {} tries); keep it under 1d",
            peer.name,
            fmt_duration(total),
            fmt_duration(r.timeout),
            r.base,
            r.tries
        );
        err(cx, &at, msg);
    }
}
