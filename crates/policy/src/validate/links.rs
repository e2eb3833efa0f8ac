//! Links and targets: unique names, each target alone on an existing link and in
//! its subnet, link subnets distinct per gateway (GRE anti-spoofing tells links
//! apart by subnet), the link `remote` address filled in from its target, each
//! link's gateway and target resolved (one link per gateway and target), and the
//! gateways' cluster node ids unique.

use std::collections::{HashMap, HashSet};
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
    link_gateways(p, cx);
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
    link_targets(p, cx, &on_link);
    gateway_ids(p, cx);
    for (i, l) in p.links.iter().enumerate() {
        if !cx.spans_has(&format!("link[{i}].remote"))
            && !on_link.contains_key(l.name.as_str())
            && !l.name.is_empty()
            && !cx.spans_has(&format!("link[{i}].target"))
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

/// Each link's own addresses sit in its subnet, and the subnets of one
/// gateway's links are distinct.
fn link_addresses(p: &Policy, cx: &mut Cx) {
    let mut per_gateway: HashMap<&str, (PrefixIndex<usize>, AddrIndex)> = HashMap::new();
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
            let (by_prefix, by_network) = per_gateway.entry(l.gateway.as_str()).or_default();
            if let Some(j) = earlier_overlap(by_prefix, by_network, &l.subnet) {
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
        .error(span, format!("subnet {} of link \"{}\" overlaps subnet {} of link \"{}\"{}; GRE anti-spoofing needs each link to be distinct", l.subnet, l.name, m.subnet, m.name, of_gateway(&l.gateway)))
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

/// " (both of gateway \"g\")" for a named gateway, nothing for the only one.
fn of_gateway(g: &str) -> String {
    if g.is_empty() {
        String::new()
    } else {
        format!(" (both of gateway \"{g}\")")
    }
}

/// Each link's `gateway`: this file's gateway by default, else a gateway that
/// `[ha]` names.
fn link_gateways(p: &mut Policy, cx: &mut Cx) {
    let own = p.gateway_name().to_string();
    let known: Vec<String> = p.gateways().into_iter().map(|g| g.name).collect();
    for (i, l) in p.links.iter_mut().enumerate() {
        let gp = format!("link[{i}].gateway");
        if !cx.spans_has(&gp) {
            l.gateway = own.clone();
            continue;
        }
        if !cx.spans.ok(&gp) || known.contains(&l.gateway) && !own.is_empty() {
            continue;
        }
        let msg = if p.ha.is_none() {
            format!(
                "link \"{}\" names gateway \"{}\", but there is no [ha] section naming gateways",
                l.name, l.gateway
            )
        } else {
            format!(
                "link \"{}\" names gateway \"{}\", which is neither [ha] name nor an [[ha.peer]] (known: {})",
                l.name,
                l.gateway,
                known.join(", ")
            )
        };
        err(cx, &gp, msg);
    }
}

/// Each link's `target`: the target whose `link` names it by default; an
/// explicit `target` must exist, agree with that target's `link`, and comes
/// with `remote` (its address on this link). One link per gateway and target.
fn link_targets(p: &mut Policy, cx: &mut Cx, on_link: &HashMap<String, usize>) {
    let names: HashSet<String> = p.targets.iter().map(|t| t.name.clone()).collect();
    for (i, l) in p.links.iter_mut().enumerate() {
        let tp = format!("link[{i}].target");
        let by_link = on_link
            .get(l.name.as_str())
            .map(|&t| p.targets[t].name.clone());
        if !cx.spans_has(&tp) {
            l.target = by_link.unwrap_or_default();
            continue;
        }
        if !cx.spans.ok(&tp) {
            continue;
        }
        if !names.contains(&l.target) {
            let msg = format!(
                "link \"{}\" names target \"{}\", but no [[target]] has that name",
                l.name, l.target
            );
            err(cx, &tp, msg);
            l.target.clear();
        } else if let Some(t) = by_link.filter(|t| *t != l.target) {
            let msg = format!(
                "link \"{}\" names target \"{}\", but target \"{t}\" sits on it (its `link`)",
                l.name, l.target
            );
            err(cx, &tp, msg);
            l.target = t;
        } else if !cx.spans_has(&format!("link[{i}].remote")) {
            let msg = format!(
                "link \"{}\" names target \"{}\" and so needs `remote`: the target's address on this link",
                l.name, l.target
            );
            err(cx, &tp, msg);
        }
    }
    one_link_per_pair(p, cx);
}

fn one_link_per_pair(p: &Policy, cx: &mut Cx) {
    // Duplicated link or target names are reported as such, not again here.
    let mut names: HashMap<&str, usize> = HashMap::new();
    for n in p.links.iter().map(|l| l.name.as_str()) {
        *names.entry(n).or_default() += 1;
    }
    let mut targets: HashMap<&str, usize> = HashMap::new();
    for n in p.targets.iter().map(|t| t.name.as_str()) {
        *targets.entry(n).or_default() += 1;
    }
    let mut seen: HashMap<(&str, &str), usize> = HashMap::new();
    for (i, l) in p.links.iter().enumerate() {
        if l.target.is_empty()
            || !cx.spans.okf(format_args!("link[{i}].name"))
            || names.get(l.name.as_str()) > Some(&1)
            || targets.get(l.target.as_str()) > Some(&1)
        {
            continue;
        }
        let Some(&j) = seen.get(&(l.gateway.as_str(), l.target.as_str())) else {
            seen.insert((l.gateway.as_str(), l.target.as_str()), i);
            continue;
        };
        let note = cx.diags.note(
            cx.spans.get(&format!("link[{j}].name")),
            format!("link \"{}\" is the first", p.links[j].name),
        );
        let span = cx.spans.get(&format!("link[{i}].name"));
        let gw = if l.gateway.is_empty() {
            "the gateway".to_string()
        } else {
            format!("gateway \"{}\"", l.gateway)
        };
        cx.diags
            .error(
                span,
                format!(
                    "link \"{}\" is a second link between {gw} and target \"{}\"; one link per gateway and target",
                    l.name, l.target
                ),
            )
            .notes
            .push(note);
    }
}

/// Cluster node ids of the gateways (`[cluster] gateway_id`, `[[ha.peer]] id`)
/// are unique, and none is the id of a target (targets are numbered 1000 +
/// their position in the file, in `[[target]]` order).
fn gateway_ids(p: &Policy, cx: &mut Cx) {
    let Some(ha) = &p.ha else {
        return;
    };
    let own = p
        .cluster
        .as_ref()
        .filter(|_| cx.spans.ok("cluster.gateway_id"))
        .map(|c| {
            (
                c.gateway_id,
                ha.name.as_str(),
                "cluster.gateway_id".to_string(),
            )
        });
    let peers = ha.peers.iter().enumerate().filter_map(|(i, x)| {
        let path = format!("ha.peer[{i}].id");
        match x.id {
            Some(id) if cx.spans.ok(&path) => Some((id, x.name.as_str(), path)),
            _ => None,
        }
    });
    let all: Vec<(u32, &str, String)> = own.into_iter().chain(peers).collect();
    for (k, (id, name, path)) in all.iter().enumerate() {
        if let Some((_, first, fp)) = all[..k].iter().find(|(x, _, _)| x == id) {
            let note = cx
                .diags
                .note(cx.spans.get(fp), format!("gateway \"{first}\" has it"));
            let span = cx.spans.get(path);
            cx.diags
                .error(span, format!("gateway \"{name}\" has cluster node id {id}, like gateway \"{first}\"; node ids must be unique"))
                .notes
                .push(note);
        } else if let Some(t) = id.checked_sub(1000).and_then(|i| p.targets.get(i as usize)) {
            let msg = format!("gateway \"{name}\" has cluster node id {id}, the id of target \"{}\" (targets are numbered 1000 + their position)", t.name);
            err(cx, path, msg);
        }
    }
    for (i, x) in ha.peers.iter().enumerate() {
        // A peer the file gives links to is meant to run from it.
        if x.id.is_none()
            && !cx.spans_has(&format!("ha.peer[{i}].id"))
            && p.links_of(&x.name).next().is_some()
        {
            cx.diags.warning(
                cx.spans.get(&format!("ha.peer[{i}]")),
                format!("[[ha.peer]] \"{}\" has links but no `id` (its cluster node id): targets refuse its cluster messages and GRE, and the file cannot run as it", x.name),
            );
        }
    }
}
