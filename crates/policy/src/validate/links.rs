//! Links and targets: unique names, each target alone on an existing link and in
//! its subnet, link subnets distinct (GRE anti-spoofing tells links apart by
//! subnet), and the link `remote` address filled in from its target.

use std::collections::HashMap;
use std::net::IpAddr;

use ipnet::IpNet;

use crate::model::*;
use crate::reader::Cx;

use super::index::{num, prefix_end, prefix_of, AddrIndex, PrefixIndex};
use super::{err, some, unique};

pub(super) fn links_and_targets(p: &mut Policy, cx: &mut Cx) {
    unique(cx, "link", p.links.iter().map(|l| l.name.as_str()), |i| {
        format!("link[{i}].name")
    });
    unique(
        cx,
        "target",
        p.targets.iter().map(|t| t.name.as_str()),
        |i| format!("target[{i}].name"),
    );
    link_addresses(p, cx);
    udp_links(p, cx);
    let (on_link, fills) = targets_on_links(p, cx);
    if p.cluster.is_none() && !p.targets.is_empty() && cx.spans.ok("cluster") {
        err(
            cx,
            "target[0].name",
            "the site has targets but no [cluster] section: gateways and targets need its control-channel key (`key_file`) and `gateway_id`".into(),
        );
    }
    for (li, a) in fills {
        p.links[li].remote = a;
    }
    for (i, l) in p.links.iter().enumerate() {
        if !cx.spans_has(&format!("link[{i}].remote"))
            && !on_link.contains_key(l.name.as_str())
            && !l.name.is_empty()
        {
            err(
                cx,
                &format!("link[{i}].name"),
                format!(
                    "link \"{}\" has no `remote` address and no target sits on it",
                    l.name
                ),
            );
        }
    }
}

/// `encap = "udp"` is noted: GRE in UDP (RFC 8086) is decapsulated by
/// `plexgate target` only.
fn udp_links(p: &Policy, cx: &mut Cx) {
    let port = p.cluster.as_ref().map_or(4754, |c| c.gre_udp_port);
    for (i, l) in p.links.iter().enumerate() {
        if l.encap == LinkEncap::Udp && cx.spans.okf(format_args!("link[{i}].encap")) {
            let span = cx.spans.get(&format!("link[{i}].encap"));
            cx.diags.warning(span, format!("link \"{}\" carries GRE in UDP (RFC 8086) to port {port}: its target must run `plexgate target`, which decapsulates it (a kernel GRE tunnel does not)", l.name));
        }
    }
}

/// Each link's own addresses sit in its subnet, and link subnets are distinct.
fn link_addresses(p: &Policy, cx: &mut Cx) {
    let mut by_prefix = PrefixIndex::default();
    let mut by_network = AddrIndex::default();
    for (i, l) in p.links.iter().enumerate() {
        let sub_ok = cx.spans.okf(format_args!("link[{i}].subnet"));
        if sub_ok && cx.spans.okf(format_args!("link[{i}].local")) && !l.subnet.contains(&l.local) {
            err(
                cx,
                &format!("link[{i}].local"),
                format!(
                    "local address {} of link \"{}\" is not in its subnet {}",
                    l.local, l.name, l.subnet
                ),
            );
        }
        let rp = format!("link[{i}].remote");
        let remote_given = cx.spans_has(&rp) && cx.spans.ok(&rp);
        if sub_ok && remote_given && !l.subnet.contains(&l.remote) {
            err(
                cx,
                &rp,
                format!(
                    "remote address {} of link \"{}\" is not in its subnet {}",
                    l.remote, l.name, l.subnet
                ),
            );
        }
        if sub_ok {
            if let Some(j) = earlier_overlap(&by_prefix, &by_network, &l.subnet) {
                overlap(cx, p, i, j);
            }
            by_prefix.insert(prefix_of(&l.subnet), i);
            by_network.insert(l.subnet.network(), i);
        }
    }
}

/// A link stored in the indexes whose subnet overlaps `subnet`. Prefixes either
/// nest or are disjoint: an earlier subnet overlaps if it contains this one, or
/// if its network lies inside this one.
fn earlier_overlap(
    by_prefix: &PrefixIndex<usize>,
    by_network: &AddrIndex,
    subnet: &IpNet,
) -> Option<usize> {
    let p = prefix_of(subnet);
    if let Some((_, items)) = by_prefix.containing(p).next() {
        return items.first().copied();
    }
    by_network
        .first_in(num(subnet.network()), prefix_end(p))
        .map(|(_, j)| j)
}

fn overlap(cx: &mut Cx, p: &Policy, i: usize, j: usize) {
    let (l, m) = (&p.links[i], &p.links[j]);
    let note = cx.diags.note(
        cx.spans.get(&format!("link[{j}].subnet")),
        format!("link \"{}\" has subnet {}", m.name, m.subnet),
    );
    let span = cx.spans.get(&format!("link[{i}].subnet"));
    cx.diags
        .error(span, format!("subnet {} of link \"{}\" overlaps subnet {} of link \"{}\"; GRE anti-spoofing needs each link to be distinct", l.subnet, l.name, m.subnet, m.name))
        .notes
        .push(note);
}

/// Each target sits alone on a link that exists, in that link's subnet. Returns
/// which target is on which link, and the link `remote` addresses to fill in.
fn targets_on_links(p: &Policy, cx: &mut Cx) -> (HashMap<String, usize>, Vec<(usize, IpAddr)>) {
    let mut on_link: HashMap<String, usize> = HashMap::new();
    let mut by_addr: HashMap<IpAddr, usize> = HashMap::new();
    let mut fills = Vec::new();
    let link_by_name: HashMap<&str, usize> = p
        .links
        .iter()
        .enumerate()
        .rev()
        .map(|(i, l)| (l.name.as_str(), i))
        .collect();
    for (i, t) in p.targets.iter().enumerate() {
        let ap = format!("target[{i}].address");
        let addr_ok = cx.spans.ok(&ap);
        if addr_ok {
            if let Some(j) = by_addr.insert(t.address, i) {
                duplicate_address(cx, p, i, j);
            }
        }
        if !cx.spans.okf(format_args!("target[{i}].link")) || t.link.is_empty() {
            continue;
        }
        let Some((li, l)) = link_by_name
            .get(t.link.as_str())
            .map(|&li| (li, &p.links[li]))
        else {
            unknown_link(cx, p, i);
            continue;
        };
        if let Some(&j) = on_link.get(l.name.as_str()) {
            let note = cx.diags.note(
                cx.spans.get(&format!("target[{j}].link")),
                format!("target \"{}\" is on it already", p.targets[j].name),
            );
            let span = cx.spans.get(&format!("target[{i}].link"));
            cx.diags
                .error(span, format!("link \"{}\" already carries a target; a link is point-to-point, give target \"{}\" its own link", l.name, t.name))
                .notes
                .push(note);
            continue;
        }
        on_link.insert(l.name.clone(), i);
        if !addr_ok || !cx.spans.okf(format_args!("link[{li}].subnet")) {
            continue;
        }
        target_in_subnet(cx, i, t, li, l);
        let rp = format!("link[{li}].remote");
        if cx.spans_has(&rp) {
            if cx.spans.ok(&rp) && l.remote != t.address {
                let note = cx.diags.note(
                    cx.spans.get(&ap),
                    format!("target \"{}\" has address {}", t.name, t.address),
                );
                let span = cx.spans.get(&rp);
                cx.diags
                    .error(span, format!("remote address {} of link \"{}\" is not the address of its target \"{}\"", l.remote, l.name, t.name))
                    .notes
                    .push(note);
            }
        } else {
            fills.push((li, t.address));
        }
    }
    (on_link, fills)
}

fn duplicate_address(cx: &mut Cx, p: &Policy, i: usize, j: usize) {
    let t = &p.targets[i];
    let ap = format!("target[{i}].address");
    let note = cx.diags.note(
        cx.spans.get(&format!("target[{j}].address")),
        format!("target \"{}\" has it too", p.targets[j].name),
    );
    let span = cx.spans.get(&ap);
    cx.diags
        .error(
            span,
            format!(
                "address {} of target \"{}\" is used by another target",
                t.address, t.name
            ),
        )
        .notes
        .push(note);
}

fn unknown_link(cx: &mut Cx, p: &Policy, i: usize) {
    let t = &p.targets[i];
    let known = if p.links.is_empty() {
        "none".to_string()
    } else {
        some(p.links.iter().map(|l| format!("\"{}\"", l.name)))
    };
    err(
        cx,
        &format!("target[{i}].link"),
        format!(
            "target \"{}\" names link \"{}\", but no [[link]] has that name (known: {known})",
            t.name, t.link,
        ),
    );
}

/// A target's address is a usable host of its link's subnet.
fn target_in_subnet(cx: &mut Cx, i: usize, t: &Target, li: usize, l: &Link) {
    let ap = format!("target[{i}].address");
    if !l.subnet.contains(&t.address) {
        let note = cx.diags.note(
            cx.spans.get(&format!("link[{li}].subnet")),
            format!("link \"{}\" has subnet {}", l.name, l.subnet),
        );
        let span = cx.spans.get(&ap);
        cx.diags
            .error(
                span,
                format!(
                    "address {} of target \"{}\" is not in subnet {} of its link \"{}\"",
                    t.address, t.name, l.subnet, l.name
                ),
            )
            .notes
            .push(note);
    } else if t.address == l.local {
        err(
            cx,
            &ap,
            format!(
                "address {} of target \"{}\" is the gateway's own address on link \"{}\"",
                t.address, t.name, l.name
            ),
        );
    } else if l.subnet.prefix_len() + 1 < l.subnet.max_prefix_len()
        && t.address.is_ipv4()
        && (t.address == l.subnet.network() || t.address == l.subnet.broadcast())
    {
        let which = if t.address == l.subnet.network() {
            "network"
        } else {
            "broadcast"
        };
        err(cx, &ap, format!("address {} of target \"{}\" is the {which} address of subnet {} of its link \"{}\"", t.address, t.name, l.subnet, l.name));
    }
}
