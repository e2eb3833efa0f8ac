//! DVIPAs (unique, not a gateway VIPA, ports and targets that exist, weights
//! for members), their routing gateway and ranked backups.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;

use crate::model::*;
use crate::reader::Cx;

use super::{err, some};

fn gateway_names(p: &Policy) -> Vec<&str> {
    match &p.ha {
        Some(ha) => std::iter::once(ha.name.as_str())
            .chain(ha.peers.iter().map(|x| x.name.as_str()))
            .collect(),
        None => vec![],
    }
}

/// The gateway names of `[ha]`, as a set and as listed in messages.
struct Gateways {
    names: HashSet<String>,
    listed: String,
}

pub(super) fn dvipas(p: &mut Policy, cx: &mut Cx) {
    let mut seen: HashMap<IpAddr, usize> = HashMap::new();
    let names = gateway_names(p);
    let gws = Gateways {
        listed: some(names.iter()),
        names: names.iter().map(|n| n.to_string()).collect(),
    };
    let vipas: HashSet<IpAddr> = p.site.gateway_vipas.iter().copied().collect();
    // Target name → its first index (names are unique once `links` checked them).
    let mut target_index: HashMap<&str, usize> = HashMap::with_capacity(p.targets.len());
    for (i, t) in p.targets.iter().enumerate() {
        target_index.entry(t.name.as_str()).or_insert(i);
    }
    for (i, d) in p.dvipas.iter().enumerate() {
        let base = format!("dvipa[{i}]");
        let what = format!("DVIPA {}", d.address);
        if cx.spans.okf(format_args!("{base}.address")) {
            if let Some(j) = seen.insert(d.address, i) {
                let note = cx.diags.note(
                    cx.spans.get(&format!("dvipa[{j}].address")),
                    "it is first defined here",
                );
                let span = cx.spans.get(&format!("{base}.address"));
                cx.diags
                    .error(span, format!("DVIPA {} is defined twice", d.address))
                    .notes
                    .push(note);
            }
            if vipas.contains(&d.address) {
                err(cx, &format!("{base}.address"), format!("DVIPA {} is also a gateway VIPA; the outer and inner addresses must differ", d.address));
            }
        }
        if d.ports.is_empty()
            && cx.spans.okf(format_args!("{base}.ports"))
            && cx.spans_has(&format!("{base}.ports"))
        {
            err(
                cx,
                &format!("{base}.ports"),
                format!("{what} lists no ports"),
            );
        }
        dvipa_targets(p, cx, &base, &what, d, &target_index);
        ha_of_dvipa(cx, &base, &what, d, &gws, p.ha.is_some());
        if let Some(v) = d.gateway_vipa {
            if !vipas.contains(&v) {
                err(
                    cx,
                    &format!("{base}.gateway_vipa"),
                    format!("{what} names gateway VIPA {v}, which is not in [site] gateway_vipas"),
                );
            }
        }
    }
    same_owners_per_vipa(p, cx);
    for d in &mut p.dvipas {
        d.backups.sort_by_key(|b| std::cmp::Reverse(b.rank));
    }
}

/// DVIPAs reached through one gateway VIPA share its IKE SAs and move together on
/// takeover: they must name the same routing gateway and the same backups.
fn same_owners_per_vipa(p: &Policy, cx: &mut Cx) {
    let mut first: HashMap<IpAddr, usize> = HashMap::new();
    for (i, d) in p.dvipas.iter().enumerate() {
        let Some(v) = d.gateway_vipa_in(&p.site) else {
            continue;
        };
        let j = *first.entry(v).or_insert(i);
        let o = &p.dvipas[j];
        let ranks = |x: &Dvipa| {
            let mut b: Vec<(String, u8)> = x
                .backups
                .iter()
                .map(|b| (b.gateway.clone(), b.rank))
                .collect();
            b.sort();
            b
        };
        // A DVIPA without a routing gateway has its own error already.
        let both_named = o.routing_gateway.is_some() && d.routing_gateway.is_some();
        if j != i && both_named && (o.routing_gateway != d.routing_gateway || ranks(o) != ranks(d))
        {
            err(cx, &format!("dvipa[{i}].address"), format!("DVIPA {} shares gateway VIPA {v} with DVIPA {} but not its routing gateway and backups; DVIPAs of one gateway VIPA move together (set `gateway_vipa` to separate them)", d.address, o.address));
        }
    }
}

/// The DVIPA's targets exist and are listed once, its weights are for its own
/// targets, and not every one of them is drained.
fn dvipa_targets(
    p: &Policy,
    cx: &mut Cx,
    base: &str,
    what: &str,
    d: &Dvipa,
    target_index: &HashMap<&str, usize>,
) {
    let members: Vec<usize> = match &d.targets {
        TargetSet::All => (0..p.targets.len()).collect(),
        TargetSet::Named(v) => named_targets(cx, base, what, v, target_index),
    };
    let member_names: HashSet<&str> = match &d.targets {
        TargetSet::All => p.targets.iter().map(|t| t.name.as_str()).collect(),
        TargetSet::Named(v) => v.iter().map(String::as_str).collect(),
    };
    for name in d.weights.keys() {
        if !member_names.contains(name.as_str()) {
            err(
                cx,
                &format!("{base}.weights.{name}"),
                format!("{what} sets a weight for \"{name}\", which is not one of its targets"),
            );
        }
    }
    let effective = members.iter().map(|&i| {
        let t = &p.targets[i];
        d.weights.get(&t.name).copied().unwrap_or(t.weight)
    });
    if !members.is_empty() && effective.into_iter().all(|w| w == 0) {
        cx.diags.warning(
            cx.spans.get(&format!("{base}.address")),
            format!(
                "every target of {what} has weight 0 (drained): new connections will be refused"
            ),
        );
    }
}

/// Checks a list of target names; returns the indexes of the targets it names
/// (each once, in list order).
fn named_targets(
    cx: &mut Cx,
    base: &str,
    what: &str,
    v: &[String],
    target_index: &HashMap<&str, usize>,
) -> Vec<usize> {
    if v.is_empty()
        && cx.spans.okf(format_args!("{base}.targets"))
        && cx.spans_has(&format!("{base}.targets"))
    {
        err(
            cx,
            &format!("{base}.targets"),
            format!("{what} lists no targets (write \"all\" or target names)"),
        );
    }
    let mut seen: HashSet<&str> = HashSet::with_capacity(v.len());
    let mut out = Vec::with_capacity(v.len());
    for (k, n) in v.iter().enumerate() {
        let path = format!("{base}.targets[{k}]");
        match target_index.get(n.as_str()) {
            None => err(
                cx,
                &path,
                format!("{what} names target \"{n}\", but no [[target]] has that name"),
            ),
            Some(_) if !seen.insert(n.as_str()) => {
                err(cx, &path, format!("{what} lists target \"{n}\" twice"))
            }
            Some(&i) => out.push(i),
        }
    }
    out
}

fn ha_of_dvipa(cx: &mut Cx, base: &str, what: &str, d: &Dvipa, gws: &Gateways, has_ha: bool) {
    let known = |g: &str| gws.names.contains(g);
    match &d.routing_gateway {
        Some(g) if !has_ha => err(cx, &format!("{base}.routing_gateway"), format!("{what} names routing gateway \"{g}\", but there is no [ha] section naming gateways")),
        Some(g) if !known(g) => err(cx, &format!("{base}.routing_gateway"), format!("{what} names routing gateway \"{g}\", which is neither [ha] name nor an [[ha.peer]] (known: {})", gws.listed)),
        None if has_ha && cx.spans.okf(format_args!("{base}.address")) => {
            err(cx, &format!("{base}.address"), format!("{what} needs a `routing_gateway` because [ha] is present"))
        }
        _ => {}
    }
    if !d.backups.is_empty() && !has_ha {
        err(
            cx,
            &format!("{base}.backup"),
            format!("{what} has backups, but there is no [ha] section naming gateways"),
        );
        return;
    }
    // The first earlier backup with each rank, and the gateways seen so far.
    let mut by_rank: [Option<usize>; 256] = [None; 256];
    let mut seen: HashSet<&str> = HashSet::with_capacity(d.backups.len());
    for (k, b) in d.backups.iter().enumerate() {
        let bp = format!("{base}.backup[{k}]");
        let same_rank = by_rank[usize::from(b.rank)].map(|o| &d.backups[o]);
        by_rank[usize::from(b.rank)].get_or_insert(k);
        let listed_before = !seen.insert(b.gateway.as_str());
        if !cx.spans.okf(format_args!("{bp}.gateway")) || b.gateway.is_empty() {
            continue;
        }
        if !known(&b.gateway) {
            err(cx, &format!("{bp}.gateway"), format!("backup gateway \"{}\" of {what} is neither [ha] name nor an [[ha.peer]] (known: {})", b.gateway, gws.listed));
        } else if d.routing_gateway.as_deref() == Some(b.gateway.as_str()) {
            err(
                cx,
                &format!("{bp}.gateway"),
                format!(
                    "gateway \"{}\" is both the routing gateway and a backup of {what}",
                    b.gateway
                ),
            );
        } else if listed_before {
            err(
                cx,
                &format!("{bp}.gateway"),
                format!(
                    "gateway \"{}\" is listed twice as a backup of {what}",
                    b.gateway
                ),
            );
        }
        if cx.spans.okf(format_args!("{bp}.rank")) {
            if let Some(o) = same_rank {
                err(
                    cx,
                    &format!("{bp}.rank"),
                    format!("backups \"{}\" and \"{}\" of {what} both have rank {}; ranks decide the takeover order and must differ", o.gateway, b.gateway, b.rank),
                );
            }
        }
    }
}
