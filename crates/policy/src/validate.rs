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

use std::collections::HashMap;
use std::net::IpAddr;

use crate::addr::{proto_name, AddrSel, PortRange, TrafficSelector, TsAddr};
use crate::model::*;
use crate::reader::Cx;

/// Runs every semantic check, filling in derived defaults (link remote
/// addresses, the etcd prefix, backup order) on the way.
pub(crate) fn validate(p: &mut Policy, cx: &mut Cx) {
    site(p, cx);
    links_and_targets(p, cx);
    peers(p, cx);
    spd(p, cx);
    dvipas(p, cx);
    cluster_and_ha(p, cx);
}

/// Reports the second and later uses of a name, pointing back at the first.
fn unique<'a>(cx: &mut Cx, kind: &str, items: impl Iterator<Item = (&'a str, String)>) {
    let mut seen: HashMap<&str, String> = HashMap::new();
    for (name, path) in items {
        if name.is_empty() || !cx.spans.ok(&path) {
            continue;
        }
        if let Some(first) = seen.get(name) {
            let first_span = cx.spans.get(first);
            let note = cx
                .diags
                .note(first_span, format!("the first {kind} \"{name}\" is here"));
            let span = cx.spans.get(&path);
            cx.diags
                .error(span, format!("duplicate {kind} name \"{name}\""))
                .notes
                .push(note);
        } else {
            seen.insert(name, path);
        }
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
        s.interfaces
            .iter()
            .enumerate()
            .map(|(i, x)| (x.name.as_str(), format!("site.interface[{i}].name"))),
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
    for (i, v) in s.gateway_vipas.iter().enumerate() {
        let path = format!("site.gateway_vipas[{i}]");
        if !cx.spans.ok(&path) {
            continue;
        }
        if !s.interfaces.iter().any(|it| it.address.contains(v)) {
            let nets: Vec<String> = s
                .interfaces
                .iter()
                .map(|it| it.address.trunc().to_string())
                .collect();
            let msg = if nets.is_empty() {
                format!("gateway VIPA {v} is not on any local subnet: [site] lists no [[site.interface]]")
            } else {
                format!(
                    "gateway VIPA {v} is not on any local subnet (the interfaces have {})",
                    nets.join(", ")
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

fn links_and_targets(p: &mut Policy, cx: &mut Cx) {
    unique(
        cx,
        "link",
        p.links
            .iter()
            .enumerate()
            .map(|(i, l)| (l.name.as_str(), format!("link[{i}].name"))),
    );
    unique(
        cx,
        "target",
        p.targets
            .iter()
            .enumerate()
            .map(|(i, t)| (t.name.as_str(), format!("target[{i}].name"))),
    );
    for (i, l) in p.links.iter().enumerate() {
        let sub_ok = cx.spans.ok(&format!("link[{i}].subnet"));
        if sub_ok && cx.spans.ok(&format!("link[{i}].local")) && !l.subnet.contains(&l.local) {
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
        for (j, m) in p.links.iter().enumerate().take(i) {
            if sub_ok
                && cx.spans.ok(&format!("link[{j}].subnet"))
                && (m.subnet.contains(&l.subnet.network())
                    || l.subnet.contains(&m.subnet.network()))
            {
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
        }
    }
    let mut on_link: HashMap<String, usize> = HashMap::new();
    let mut by_addr: HashMap<IpAddr, usize> = HashMap::new();
    let mut fills = Vec::new();
    for (i, t) in p.targets.iter().enumerate() {
        let ap = format!("target[{i}].address");
        let addr_ok = cx.spans.ok(&ap);
        if addr_ok {
            if let Some(j) = by_addr.insert(t.address, i) {
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
        }
        if !cx.spans.ok(&format!("target[{i}].link")) || t.link.is_empty() {
            continue;
        }
        let Some((li, l)) = p.links.iter().enumerate().find(|(_, l)| l.name == t.link) else {
            let known: Vec<String> = p.links.iter().map(|l| format!("\"{}\"", l.name)).collect();
            err(
                cx,
                &format!("target[{i}].link"),
                format!(
                    "target \"{}\" names link \"{}\", but no [[link]] has that name (known: {})",
                    t.name,
                    t.link,
                    if known.is_empty() {
                        "none".into()
                    } else {
                        known.join(", ")
                    }
                ),
            );
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
        if !addr_ok || !cx.spans.ok(&format!("link[{li}].subnet")) {
            continue;
        }
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

fn peers(p: &Policy, cx: &mut Cx) {
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

/// DESIGN.md "Rules that keep SAs movable": a selector that contains a DVIPA must
/// be exactly that DVIPA.
fn covers_dvipa(p: &Policy, cx: &mut Cx, path: &str, sel: AddrSel, what: &str) {
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

fn spd(p: &Policy, cx: &mut Cx) {
    // Which rules have all their selectors parsed (computed once: the shadowing
    // check below is quadratic in the number of rules).
    let keys = [
        "local",
        "remote",
        "protocol",
        "local_port",
        "remote_port",
        "direction",
    ];
    let sel_ok: Vec<bool> = (0..p.spd.len())
        .map(|j| keys.iter().all(|k| cx.spans.ok(&format!("spd[{j}].{k}"))))
        .collect();
    for (j, r) in p.spd.iter().enumerate() {
        let base = format!("spd[{j}]");
        let label = rule_label(j, r);
        if let SpdAction::Protect { peer, child } = &r.action {
            if cx.spans.ok(&format!("{base}.peer")) && !peer.is_empty() {
                match p.peer(peer) {
                    None => err(cx, &format!("{base}.peer"), format!("{label} protects with peer \"{peer}\", but no [[peer]] has that name")),
                    Some(pe) if !child.is_empty() && pe.child(child).is_none() => {
                        err(cx, &format!("{base}.child"), format!("{label} protects with child \"{child}\", but peer \"{peer}\" has no child of that name"))
                    }
                    Some(_) => {}
                }
            }
            if cx.spans.ok(&format!("{base}.local")) {
                covers_dvipa(
                    p,
                    cx,
                    &format!("{base}.local"),
                    r.local,
                    &format!("the local selector of {label}"),
                );
            }
        }
        let selectors_ok = sel_ok[j];
        if !selectors_ok {
            continue;
        }
        if let SpdAction::Protect { peer, child } = &r.action {
            if let Some(c) = p.peer(peer).and_then(|pe| pe.child(child)) {
                rule_within_child(cx, &base, &label, r, c);
            }
        }
        for (i, e) in p.spd.iter().enumerate().take(j) {
            if sel_ok[i] && r.shadowed_by(e) {
                let ebase = format!("spd[{i}]");
                let note = cx.diags.note(
                    cx.spans.get(&ebase),
                    format!("{} is here", rule_label(i, e)),
                );
                let span = cx.spans.get(&base);
                let same = if e.action == r.action {
                    "with the same action"
                } else {
                    "with a different action"
                };
                cx.diags
                    .error(span, format!("{label} can never match: {} before it matches all of its traffic ({same}); remove it or move it above", rule_label(i, e)))
                    .notes
                    .push(note);
                break;
            }
        }
    }
}

/// True if traffic selector `ts` covers addresses `a`, protocol `proto` and
/// ports `ports`. `dynamic` is only known at run time and is taken as covering.
fn ts_covers(ts: &TrafficSelector, a: &AddrSel, proto: Option<u8>, ports: &PortRange) -> bool {
    let addr = match &ts.addr {
        TsAddr::Dynamic => true,
        TsAddr::Sel(s) => s.covers(a),
    };
    addr && (ts.proto.is_none() || ts.proto == proto) && ts.ports.covers(ports)
}

/// A protect rule should only send the child traffic its selectors allow: a
/// packet outside them has no SA to travel in (RFC 4301 §4.4.1: the SPD entry
/// "protect" names the SA's selectors). A warning, not an error, because several
/// selectors together may cover what no single one does.
fn rule_within_child(cx: &mut Cx, base: &str, label: &str, r: &SpdRule, c: &Child) {
    let sides = [
        ("local", "local_ts", &r.local, &r.local_ports, &c.local_ts),
        (
            "remote",
            "remote_ts",
            &r.remote,
            &r.remote_ports,
            &c.remote_ts,
        ),
    ];
    for (side, key, a, ports, tss) in sides {
        if tss.is_empty() || tss.iter().any(|ts| ts_covers(ts, a, r.protocol, ports)) {
            continue;
        }
        let shown = match a {
            AddrSel::Any => "any".to_string(),
            AddrSel::Range(x) => x.to_string(),
        };
        let span = cx.spans.get(&format!("{base}.{side}"));
        cx.diags.warning(
            span,
            format!(
                "{label} sends {side} {shown} protocol {} ports {} to child \"{}\", but no single {key} of that child covers it; packets outside the child's selectors have no SA",
                proto_name(r.protocol),
                ports,
                c.name
            ),
        );
    }
}

fn rule_label(i: usize, r: &SpdRule) -> String {
    match &r.name {
        Some(n) => format!("SPD rule #{} (\"{n}\")", i + 1),
        None => format!("SPD rule #{}", i + 1),
    }
}

fn gateway_names(p: &Policy) -> Vec<&str> {
    match &p.ha {
        Some(ha) => std::iter::once(ha.name.as_str())
            .chain(ha.peers.iter().map(|x| x.name.as_str()))
            .collect(),
        None => vec![],
    }
}

fn dvipas(p: &mut Policy, cx: &mut Cx) {
    let mut seen: HashMap<IpAddr, usize> = HashMap::new();
    let gws: Vec<String> = gateway_names(p).into_iter().map(String::from).collect();
    let target_names: Vec<&str> = p.targets.iter().map(|t| t.name.as_str()).collect();
    for (i, d) in p.dvipas.iter().enumerate() {
        let base = format!("dvipa[{i}]");
        let what = format!("DVIPA {}", d.address);
        if cx.spans.ok(&format!("{base}.address")) {
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
            if p.site.gateway_vipas.contains(&d.address) {
                err(cx, &format!("{base}.address"), format!("DVIPA {} is also a gateway VIPA; the outer and inner addresses must differ", d.address));
            }
        }
        if d.ports.is_empty()
            && cx.spans.ok(&format!("{base}.ports"))
            && cx.spans_has(&format!("{base}.ports"))
        {
            err(
                cx,
                &format!("{base}.ports"),
                format!("{what} lists no ports"),
            );
        }
        let members: Vec<&str> = match &d.targets {
            TargetSet::All => target_names.clone(),
            TargetSet::Named(v) => v.iter().map(String::as_str).collect(),
        };
        if let TargetSet::Named(v) = &d.targets {
            if v.is_empty()
                && cx.spans.ok(&format!("{base}.targets"))
                && cx.spans_has(&format!("{base}.targets"))
            {
                err(
                    cx,
                    &format!("{base}.targets"),
                    format!("{what} lists no targets (write \"all\" or target names)"),
                );
            }
            for (k, n) in v.iter().enumerate() {
                let path = format!("{base}.targets[{k}]");
                if !target_names.contains(&n.as_str()) {
                    err(
                        cx,
                        &path,
                        format!("{what} names target \"{n}\", but no [[target]] has that name"),
                    );
                } else if v[..k].contains(n) {
                    err(cx, &path, format!("{what} lists target \"{n}\" twice"));
                }
            }
        }
        for name in d.weights.keys() {
            if !members.contains(&name.as_str()) {
                err(
                    cx,
                    &format!("{base}.weights.{name}"),
                    format!("{what} sets a weight for \"{name}\", which is not one of its targets"),
                );
            }
        }
        let effective: Vec<u32> = members
            .iter()
            .filter_map(|n| p.targets.iter().find(|t| t.name == *n))
            .map(|t| d.weights.get(&t.name).copied().unwrap_or(t.weight))
            .collect();
        if !effective.is_empty() && effective.iter().all(|w| *w == 0) {
            cx.diags.warning(cx.spans.get(&format!("{base}.address")), format!("every target of {what} has weight 0 (drained): new connections will be refused"));
        }
        ha_of_dvipa(cx, &base, &what, d, &gws, p.ha.is_some());
    }
    for d in &mut p.dvipas {
        d.backups.sort_by_key(|b| std::cmp::Reverse(b.rank));
    }
}

fn ha_of_dvipa(cx: &mut Cx, base: &str, what: &str, d: &Dvipa, gws: &[String], has_ha: bool) {
    let known = |g: &str| gws.iter().any(|x| x == g);
    match &d.routing_gateway {
        Some(g) if !has_ha => err(cx, &format!("{base}.routing_gateway"), format!("{what} names routing gateway \"{g}\", but there is no [ha] section naming gateways")),
        Some(g) if !known(g) => err(cx, &format!("{base}.routing_gateway"), format!("{what} names routing gateway \"{g}\", which is neither [ha] name nor an [[ha.peer]] (known: {})", gws.join(", "))),
        None if has_ha && cx.spans.ok(&format!("{base}.address")) => {
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
    for (k, b) in d.backups.iter().enumerate() {
        let bp = format!("{base}.backup[{k}]");
        if !cx.spans.ok(&format!("{bp}.gateway")) || b.gateway.is_empty() {
            continue;
        }
        if !known(&b.gateway) {
            err(cx, &format!("{bp}.gateway"), format!("backup gateway \"{}\" of {what} is neither [ha] name nor an [[ha.peer]] (known: {})", b.gateway, gws.join(", ")));
        } else if d.routing_gateway.as_deref() == Some(b.gateway.as_str()) {
            err(
                cx,
                &format!("{bp}.gateway"),
                format!(
                    "gateway \"{}\" is both the routing gateway and a backup of {what}",
                    b.gateway
                ),
            );
        } else if d.backups[..k].iter().any(|x| x.gateway == b.gateway) {
            err(
                cx,
                &format!("{bp}.gateway"),
                format!(
                    "gateway \"{}\" is listed twice as a backup of {what}",
                    b.gateway
                ),
            );
        }
        if cx.spans.ok(&format!("{bp}.rank")) {
            if let Some(o) = d.backups[..k].iter().find(|x| x.rank == b.rank) {
                err(
                    cx,
                    &format!("{bp}.rank"),
                    format!("backups \"{}\" and \"{}\" of {what} both have rank {}; ranks decide the takeover order and must differ", o.gateway, b.gateway, b.rank),
                );
            }
        }
    }
}

fn cluster_and_ha(p: &mut Policy, cx: &mut Cx) {
    if let Some(c) = &p.cluster {
        if (c.port == p.site.ike_port || c.port == p.site.natt_port) && cx.spans.ok("cluster.port")
        {
            err(
                cx,
                "cluster.port",
                format!(
                    "cluster port {} collides with the IKE ports {} / {}",
                    c.port, p.site.ike_port, p.site.natt_port
                ),
            );
        }
    }
    let site_name = p.site.name.clone();
    let Some(ha) = &mut p.ha else {
        return;
    };
    let all = std::iter::once((ha.name.as_str(), "ha.name".to_string())).chain(
        ha.peers
            .iter()
            .enumerate()
            .map(|(i, x)| (x.name.as_str(), format!("ha.peer[{i}].name"))),
    );
    unique(cx, "gateway", all);
    for (i, x) in ha.peers.iter().enumerate() {
        if x.rank == ha.rank && cx.spans.ok(&format!("ha.peer[{i}].rank")) && cx.spans.ok("ha.rank")
        {
            cx.diags.warning(
                cx.spans.get(&format!("ha.peer[{i}].rank")),
                format!("gateway \"{}\" has the same default rank {} as this gateway \"{}\"; DVIPA backups must then set ranks explicitly", x.name, x.rank, ha.name),
            );
        }
    }
    if let Store::Etcd { prefix, .. } = &mut ha.store {
        if prefix.is_empty() {
            *prefix = format!("/plexgate/{site_name}/");
        } else if !prefix.starts_with('/') && cx.spans.ok("ha.store.prefix") {
            err(
                cx,
                "ha.store.prefix",
                format!("etcd prefix \"{prefix}\" must start with `/`"),
            );
        }
    }
}
