//! Peers and their children: unique names, usable proposals and identities,
//! soft lifetimes below hard ones, start actions that can start, and local
//! selectors that name a DVIPA at host granularity.

use crate::addr::{AddrSel, TsAddr};
use crate::model::*;
use crate::reader::Cx;

use super::{err, unique};

pub(super) fn peers(p: &Policy, cx: &mut Cx) {
    unique(
        cx,
        "peer",
        p.peers
            .iter()
            .enumerate()
            .map(|(i, x)| (x.name.as_str(), format!("peer[{i}].name"))),
    );
    for (i, peer) in p.peers.iter().enumerate() {
        let base = format!("peer[{i}]");
        unique(
            cx,
            "child",
            peer.children
                .iter()
                .enumerate()
                .map(|(j, c)| (c.name.as_str(), format!("{base}.child[{j}].name"))),
        );
        if peer.encap == Encap::Udp
            && !matches!(peer.remote, RemoteAddr::Host(_))
            && cx.spans.ok(&format!("{base}.encap"))
        {
            // Only the initiator chooses the port IKE starts on (RFC 7296 §2.23).
            let span = cx.spans.get(&format!("{base}.encap"));
            cx.diags.warning(span, format!("encap = \"udp\" in peer \"{}\" has no effect: we never initiate to a peer without a single remote_address, and a responder uses what the initiator chose", peer.name));
        }
        if peer.proposals.is_empty() && cx.spans.ok(&format!("{base}.proposals")) {
            err(
                cx,
                &format!("{base}.proposals"),
                format!("peer \"{}\" has an empty `proposals` list", peer.name),
            );
        }
        if peer.local_id == Identity::Any && cx.spans.ok(&format!("{base}.local_id")) {
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
            child(p, cx, peer, &format!("{base}.child[{j}]"), c);
        }
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

fn child(p: &Policy, cx: &mut Cx, peer: &Peer, base: &str, c: &Child) {
    for key in ["local_ts", "remote_ts"] {
        let v = if key == "local_ts" {
            &c.local_ts
        } else {
            &c.remote_ts
        };
        if v.is_empty()
            && cx.spans.ok(&format!("{base}.{key}"))
            && cx.spans_has(&format!("{base}.{key}"))
        {
            err(
                cx,
                &format!("{base}.{key}"),
                format!("`{key}` of child \"{}\" is empty", c.name),
            );
        }
    }
    if c.esp_proposals.is_empty() && cx.spans.ok(&format!("{base}.esp_proposals")) {
        err(
            cx,
            &format!("{base}.esp_proposals"),
            format!("child \"{}\" has an empty `esp_proposals` list", c.name),
        );
    }
    child_lifetimes(cx, base, c);
    if c.start_action != StartAction::None
        && !matches!(peer.remote, RemoteAddr::Host(_))
        && cx.spans.ok(&format!("{base}.start_action"))
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
    // (Only local_ts is checked; the position of each item is local_ts[k].)
    // Paths of items are `local_ts[k]`.
    let offenders: Vec<(usize, AddrSel)> = c
        .local_ts
        .iter()
        .enumerate()
        .filter_map(|(k, ts)| match ts.addr {
            TsAddr::Sel(s) => Some((k, s)),
            TsAddr::Dynamic => None,
        })
        .collect();
    for (k, sel) in offenders {
        let path = format!("{base}.local_ts[{k}]");
        covers_dvipa(
            p,
            cx,
            &path,
            sel,
            &format!("local_ts of child \"{}\"", c.name),
        );
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
/// be exactly that DVIPA.
pub(super) fn covers_dvipa(p: &Policy, cx: &mut Cx, path: &str, sel: AddrSel, what: &str) {
    let is_host = matches!(sel, AddrSel::Range(r) if r.is_host());
    if is_host {
        return;
    }
    for (i, d) in p.dvipas.iter().enumerate() {
        if !cx.spans.ok(&format!("dvipa[{i}].address")) || !sel.contains(d.address) {
            continue;
        }
        let shown = match sel {
            AddrSel::Any => "any".to_string(),
            AddrSel::Range(r) => r.to_string(),
        };
        let host = if d.address.is_ipv4() { 32 } else { 128 };
        let note = cx.diags.note(
            cx.spans.get(&format!("dvipa[{i}].address")),
            format!("DVIPA {} is defined here", d.address),
        );
        let span = cx.spans.get(path);
        cx.diags
            .error(
                span,
                format!(
                    "{what} covers DVIPA {} with the wider selector {shown}; SAs for DVIPA traffic must name the DVIPA itself ({}/{host}) so they can move between gateways",
                    d.address, d.address
                ),
            )
            .notes
            .push(note);
    }
}
