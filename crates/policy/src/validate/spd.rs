//! The SPD: rules name existing peers and children, protect rules do not widen
//! a DVIPA, send only what their child's selectors allow, and no rule is
//! shadowed by an earlier one (RFC 4301 §4.4.1: first match wins).

use crate::addr::{proto_name, AddrSel, PortRange, TrafficSelector, TsAddr};
use crate::model::*;
use crate::reader::Cx;

use super::index::PairIndex;
use super::peers::covers_dvipa;
use super::{err, Ix};

/// Rule comparisons the shadowing check may make before it gives up with a
/// warning. The index keeps real SPDs far below it (one or two candidates per
/// rule); only rules that differ in nothing but ports or protocol, by the
/// hundred thousand, reach it.
const SHADOW_BUDGET: usize = 20_000_000;

pub(super) fn spd(p: &Policy, cx: &mut Cx, ix: &Ix) {
    let keys = [
        "local",
        "remote",
        "protocol",
        "local_port",
        "remote_port",
        "direction",
    ];
    let mut shadow = Shadow {
        earlier: PairIndex::default(),
        budget: SHADOW_BUDGET,
    };
    for (j, r) in p.spd.iter().enumerate() {
        let base = format!("spd[{j}]");
        let label = rule_label(j, r);
        let child = references(p, cx, ix, r, &base, &label);
        if !keys
            .iter()
            .all(|k| cx.spans.okf(format_args!("{base}.{k}")))
            || mixed_family(cx, &base, &label, r)
        {
            continue;
        }
        if let Some(c) = child {
            rule_within_child(cx, &base, &label, r, c);
        }
        shadow.check(p, cx, j);
    }
}

/// A protect rule names a peer and child that exist, and does not widen a
/// DVIPA. Returns the child it protects with, if it exists.
fn references<'p>(
    p: &'p Policy,
    cx: &mut Cx,
    ix: &Ix,
    r: &SpdRule,
    base: &str,
    label: &str,
) -> Option<&'p Child> {
    let SpdAction::Protect { peer, child } = &r.action else {
        return None;
    };
    let pi = ix.peers.get(peer.as_str()).copied();
    let ci = pi.and_then(|pi| ix.children.get(&(pi, child.as_str())).copied());
    if cx.spans.okf(format_args!("{base}.peer")) && !peer.is_empty() {
        if pi.is_none() {
            err(
                cx,
                &format!("{base}.peer"),
                format!("{label} protects with peer \"{peer}\", but no [[peer]] has that name"),
            );
        } else if !child.is_empty() && ci.is_none() {
            err(cx, &format!("{base}.child"), format!("{label} protects with child \"{child}\", but peer \"{peer}\" has no child of that name"));
        }
    }
    if cx.spans.okf(format_args!("{base}.local")) {
        let what = format!("the local selector of {label}");
        covers_dvipa(p, cx, ix, &format!("{base}.local"), r.local, &what);
    }
    Some(&p.peers[pi?].children[ci?])
}

/// An IPv4 local selector with an IPv6 remote one (or the reverse) matches no
/// packet. Reports it and returns true.
fn mixed_family(cx: &mut Cx, base: &str, label: &str, r: &SpdRule) -> bool {
    let (AddrSel::Range(l), AddrSel::Range(m)) = (&r.local, &r.remote) else {
        return false;
    };
    if l.start.is_ipv4() == m.start.is_ipv4() {
        return false;
    }
    let fam = |v4: bool| if v4 { "IPv4" } else { "IPv6" };
    err(
        cx,
        &format!("{base}.remote"),
        format!(
            "{label} can never match: its local selector {l} is {} and its remote selector {m} is {}; a packet has one family",
            fam(l.start.is_ipv4()),
            fam(m.start.is_ipv4())
        ),
    );
    true
}

/// The earlier rules, indexed by the prefixes of their selectors, and what is
/// left of the comparison budget.
struct Shadow {
    earlier: PairIndex,
    budget: usize,
}

impl Shadow {
    /// Reports rule `j` if an earlier rule matches all of its traffic (the
    /// first such rule in file order), then adds it to the index.
    fn check(&mut self, p: &Policy, cx: &mut Cx, j: usize) {
        if self.budget == 0 {
            return;
        }
        let r = &p.spd[j];
        let mut first: Option<usize> = None;
        for bucket in self.earlier.containing(&r.local, &r.remote) {
            self.budget = self.budget.saturating_sub(1);
            for &i in bucket {
                self.budget = self.budget.saturating_sub(1);
                if first.is_some_and(|f| f < i) {
                    break;
                }
                if r.shadowed_by(&p.spd[i]) {
                    first = Some(i);
                    break;
                }
            }
        }
        if let Some(i) = first {
            shadowed(cx, p, j, i);
        }
        self.earlier.insert(&r.local, &r.remote, j);
        if self.budget == 0 && j + 1 < p.spd.len() {
            let span = cx.spans.get(&format!("spd[{j}]"));
            cx.diags.warning(span, format!("the rules after {} were not checked for shadowing: the check stops after {SHADOW_BUDGET} rule comparisons (the SPD has {} rules that differ little)", rule_label(j, r), p.spd.len()));
        }
    }
}

fn shadowed(cx: &mut Cx, p: &Policy, j: usize, i: usize) {
    let (r, e) = (&p.spd[j], &p.spd[i]);
    let note = cx.diags.note(
        cx.spans.get(&format!("spd[{i}]")),
        format!("{} is here", rule_label(i, e)),
    );
    let span = cx.spans.get(&format!("spd[{j}]"));
    let same = if e.action == r.action {
        "with the same action"
    } else {
        "with a different action"
    };
    cx.diags
        .error(span, format!("{} can never match: {} before it matches all of its traffic ({same}); remove it or move it above", rule_label(j, r), rule_label(i, e)))
        .notes
        .push(note);
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
        // Over 255 selectors is an error of the child; do not pay for it here.
        if tss.is_empty()
            || tss.len() > 255
            || tss.iter().any(|ts| ts_covers(ts, a, r.protocol, ports))
        {
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
