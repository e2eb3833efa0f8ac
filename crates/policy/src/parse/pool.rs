//! The server pool: `[[dvipa]]` (address, ports, targets, method, weights,
//! routing gateway and backups), `[[target]]` and `[[link]]`.

use std::collections::BTreeMap;

use toml::de::DeValue;

use crate::addr;
use crate::model::*;
use crate::reader::{int_of, kind, Cx, Table};

use super::values::{choice, name, parsed, ports_list, rank, PLACEHOLDER_IP};

pub(super) fn dvipa(mut t: Table<'_, '_>, cx: &mut Cx) -> Dvipa {
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
    let weights = weights(&mut t, cx);
    let routing_gateway = t.string(cx, "routing_gateway", false).map(|(s, _)| s);
    let backups = backups(&mut t, cx);
    let gateway_vipa = parsed(&mut t, cx, "gateway_vipa", false, addr::parse_ip);
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
            "gateway_vipa",
        ],
    );
    Dvipa {
        address,
        ports,
        targets,
        method,
        weights,
        routing_gateway,
        gateway_vipa,
        backups,
        plain_traffic,
    }
}

pub(super) fn target(mut t: Table<'_, '_>, cx: &mut Cx) -> Target {
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

pub(super) fn link(mut t: Table<'_, '_>, cx: &mut Cx) -> Link {
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
    let encap = choice(
        &mut t,
        cx,
        "encap",
        &[("gre", LinkEncap::Gre), ("udp", LinkEncap::Udp)],
        LinkEncap::Gre,
    );
    // `gateway` and `target` default to this file's gateway and to the target
    // whose `link` names this link (filled in by validation).
    let gateway = t
        .string(cx, "gateway", false)
        .map(|(s, _)| s)
        .unwrap_or_default();
    let target = t
        .string(cx, "target", false)
        .map(|(s, _)| s)
        .unwrap_or_default();
    t.finish(
        cx,
        &[
            "name",
            "interface",
            "local",
            "subnet",
            "remote",
            "encap",
            "gateway",
            "target",
        ],
    );
    Link {
        name,
        interface,
        local,
        subnet,
        remote,
        encap,
        gateway,
        target,
    }
}

/// `weights = { name = n }`: per-target weight overrides.
fn weights(t: &mut Table<'_, '_>, cx: &mut Cx) -> BTreeMap<String, u32> {
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
    weights
}

/// `[[dvipa.backup]]`: ranked backup gateways.
fn backups(t: &mut Table<'_, '_>, cx: &mut Cx) -> Vec<Backup> {
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
    backups
}
