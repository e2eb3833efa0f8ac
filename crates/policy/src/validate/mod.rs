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

use crate::model::*;
use crate::reader::Cx;

mod dvipa;
mod links;
mod peers;
mod spd;

use dvipa::{cluster_and_ha, dvipas};
use links::links_and_targets;
use peers::peers;
use spd::spd;

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
