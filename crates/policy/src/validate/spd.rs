//! The SPD: rules name existing peers and children, protect rules do not widen
//! a DVIPA, send only what their child's selectors allow, and no rule is
//! shadowed by an earlier one (RFC 4301 §4.4.1: first match wins).

use crate::addr::{proto_name, AddrSel, PortRange, TrafficSelector, TsAddr};
use crate::model::*;
use crate::reader::Cx;

use super::err;
use super::peers::covers_dvipa;

pub(super) fn spd(p: &Policy, cx: &mut Cx) {
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
