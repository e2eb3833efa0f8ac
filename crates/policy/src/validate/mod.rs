//! Semantic checks on the parsed model: things each value can be on its own but
//! not together. Each check reports at the precise place in the file (through the
//! spans recorded while reading) and skips values that already failed to parse.
//!
//! The checks, in order: names are unique and references resolve; addresses sit in
//! the subnets they must sit in (gateway VIPAs on a local interface subnet, target
//! addresses in their link's subnet); SPD rules are not shadowed by earlier rules;
//! selectors that cover a DVIPA name it at host granularity (DESIGN.md, "Rules that
//! keep SAs movable"); soft lifetimes are below hard ones; ranks and gateways of
//! DVIPA backups make sense. File checks (existence, permissions) are in `files`.
//!
//! One module per part of the policy: `links` (links and targets), `peers`
//! (peers and children), `spd`, and `dvipa` (DVIPAs, `[cluster]`, `[ha]`).

use std::collections::HashMap;

use ipnet::IpNet;

use crate::model::*;
use crate::reader::Cx;

mod dvipa;
mod ha;
mod index;
mod links;
mod peers;
mod spd;

use dvipa::dvipas;
use ha::cluster_and_ha;
use index::{prefix_of, AddrIndex, PrefixIndex};
use links::links_and_targets;
use peers::peers;
use spd::spd;

/// Runs every semantic check, filling in derived defaults (link remote
/// addresses, the etcd prefix, backup order) on the way.
pub(crate) fn validate(p: &mut Policy, cx: &mut Cx) {
    site(p, cx);
    links_and_targets(p, cx);
    let ix = Ix::new(p, cx);
    peers(p, cx, &ix);
    spd(p, cx, &ix);
    drop(ix);
    dvipas(p, cx);
    cluster_and_ha(p, cx);
    l2(p, cx);
}

/// `[l2]` names site interfaces, and its addresses are on their subnets.
fn l2(p: &Policy, cx: &mut Cx) {
    let Some(l2) = &p.l2 else {
        return;
    };
    for (k, name) in l2.interfaces.iter().enumerate() {
        if !p.site.interfaces.iter().any(|i| &i.name == name) {
            let path = format!("l2.interfaces[{k}]");
            let span = cx
                .spans
                .get(&path)
                .or_else(|| cx.spans.get("l2.interfaces"));
            cx.err(
                &path,
                span,
                format!("[l2] names interface \"{name}\", which is not a [[site.interface]]"),
            );
        }
    }
    let on_lan = |a: std::net::Ipv4Addr| {
        p.site
            .interfaces
            .iter()
            .any(|i| i.address.contains(&std::net::IpAddr::V4(a)))
    };
    for a in l2.system_address.iter().chain(&l2.proxy_arp) {
        if !on_lan(*a) {
            let span = cx
                .spans
                .get("l2.system_address")
                .or_else(|| cx.spans.get("l2.proxy_arp"));
            cx.err("l2", span, format!("[l2] address {a} is on no [[site.interface]] subnet: no interface could answer ARP for it"));
        }
    }
    if l2.cluster_mac.is_some() && l2.cluster_members.is_empty() {
        let span = cx.spans.get("l2.cluster_mac");
        cx.err(
            "l2.cluster_mac",
            span,
            "[l2] cluster_mac needs `cluster_members` (the members' own LAN addresses)".into(),
        );
    }
}

/// Lookups built once, so that no check searches a list per item.
struct Ix<'p> {
    /// Peer name → index of the first peer with that name.
    peers: HashMap<&'p str, usize>,
    /// (peer index, child name) → index of the first such child of that peer.
    children: HashMap<(usize, &'p str), usize>,
    /// DVIPAs whose address parsed, by address.
    dvipas: AddrIndex,
}

impl<'p> Ix<'p> {
    fn new(p: &'p Policy, cx: &Cx) -> Self {
        let mut ix = Ix {
            peers: HashMap::with_capacity(p.peers.len()),
            children: HashMap::new(),
            dvipas: AddrIndex::default(),
        };
        for (i, peer) in p.peers.iter().enumerate() {
            ix.peers.entry(peer.name.as_str()).or_insert(i);
            for (j, c) in peer.children.iter().enumerate() {
                ix.children.entry((i, c.name.as_str())).or_insert(j);
            }
        }
        for (i, d) in p.dvipas.iter().enumerate() {
            if cx.spans.okf(format_args!("dvipa[{i}].address")) {
                ix.dvipas.insert(d.address, i);
            }
        }
        ix
    }
}

/// Reports the second and later uses of a name, pointing back at the first.
/// `path(i)` is the path of the `i`-th name (made only when needed).
fn unique<'a>(
    cx: &mut Cx,
    kind: &str,
    names: impl Iterator<Item = &'a str>,
    path: impl Fn(usize) -> String,
) {
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for (i, name) in names.enumerate() {
        if name.is_empty() || (cx.spans.any_bad() && !cx.spans.ok(&path(i))) {
            continue;
        }
        match seen.get(name) {
            Some(&first) => {
                let first_span = cx.spans.get(&path(first));
                let note = cx
                    .diags
                    .note(first_span, format!("the first {kind} \"{name}\" is here"));
                let span = cx.spans.get(&path(i));
                cx.diags
                    .error(span, format!("duplicate {kind} name \"{name}\""))
                    .notes
                    .push(note);
            }
            None => {
                seen.insert(name, i);
            }
        }
    }
}

/// At most this many items are listed in one message.
pub(super) const LISTED: usize = 10;

/// Up to [`LISTED`] items joined with ", ", then "and N more" if there are more
/// (a hostile file must not turn each message into a copy of itself).
fn some<T: std::fmt::Display>(items: impl ExactSizeIterator<Item = T>) -> String {
    let n = items.len();
    let shown: Vec<String> = items.take(LISTED).map(|x| x.to_string()).collect();
    if n > LISTED {
        format!("{} and {} more", shown.join(", "), n - LISTED)
    } else {
        shown.join(", ")
    }
}

fn err(cx: &mut Cx, path: &str, msg: String) {
    let span = cx.spans.get(path);
    cx.diags.error(span, msg);
}

fn site(p: &Policy, cx: &mut Cx) {
    let s = &p.site;
    unique(
        cx,
        "interface",
        s.interfaces.iter().map(|x| x.name.as_str()),
        |i| format!("site.interface[{i}].name"),
    );
    if s.gateway_vipas.is_empty()
        && cx.spans.ok("site.gateway_vipas")
        && cx.spans.get("site.gateway_vipas").is_some()
    {
        err(
            cx,
            "site.gateway_vipas",
            "[site] needs at least one gateway VIPA in `gateway_vipas`".into(),
        );
    }
    let mut subnets = PrefixIndex::default();
    for it in &s.interfaces {
        subnets.insert(prefix_of(&it.address.trunc()), ());
    }
    for (i, v) in s.gateway_vipas.iter().enumerate() {
        let path = format!("site.gateway_vipas[{i}]");
        if !cx.spans.ok(&path) {
            continue;
        }
        let host = prefix_of(&IpNet::from(*v));
        if subnets.containing(host).next().is_none() {
            let nets = s.interfaces.iter().map(|it| it.address.trunc());
            let msg = if s.interfaces.is_empty() {
                format!("gateway VIPA {v} is not on any local subnet: [site] lists no [[site.interface]]")
            } else {
                format!(
                    "gateway VIPA {v} is not on any local subnet (the interfaces have {})",
                    some(nets)
                )
            };
            err(cx, &path, msg);
        }
    }
    if s.ike_port == s.natt_port && cx.spans.get("site.natt_port").is_some() {
        err(
            cx,
            "site.natt_port",
            format!(
                "natt_port {} is the same as ike_port; NAT-T needs its own port (usually 4500)",
                s.natt_port
            ),
        );
    }
}
