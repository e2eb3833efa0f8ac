//! `[[spd]]`: one security policy rule (RFC 4301 §4.4.1): direction, selectors,
//! protocol, ports and action.

use crate::addr::{self, AddrSel, PortRange};
use crate::model::*;
use crate::reader::{Cx, Table};

use super::values::{choice, parsed, ports_one};

pub(super) fn spd_rule(mut t: Table<'_, '_>, cx: &mut Cx) -> SpdRule {
    let name = t.string(cx, "name", false).map(|(n, _)| n);
    if let Some(n) = &name {
        t.what = format!("{} (\"{n}\")", t.what);
    }
    let direction = choice(
        &mut t,
        cx,
        "direction",
        &[
            ("in", Direction::In),
            ("out", Direction::Out),
            ("both", Direction::Both),
        ],
        Direction::Both,
    );
    let local = parsed(&mut t, cx, "local", true, addr::parse_addr_sel).unwrap_or(AddrSel::Any);
    let remote = parsed(&mut t, cx, "remote", true, addr::parse_addr_sel).unwrap_or(AddrSel::Any);
    let protocol = parsed(&mut t, cx, "protocol", false, addr::parse_proto).unwrap_or(None);
    let local_ports = ports_one(&mut t, cx, "local_port");
    let remote_ports = ports_one(&mut t, cx, "remote_port");
    ports_need_protocol(&t, cx, protocol, local_ports, remote_ports);
    let action = action(&mut t, cx);
    t.finish(
        cx,
        &[
            "name",
            "direction",
            "local",
            "remote",
            "protocol",
            "local_port",
            "remote_port",
            "action",
            "peer",
            "child",
        ],
    );
    SpdRule {
        name,
        direction,
        local,
        remote,
        protocol,
        local_ports,
        remote_ports,
        action,
    }
}

/// Ports only mean something for TCP, UDP and SCTP.
fn ports_need_protocol(
    t: &Table<'_, '_>,
    cx: &mut Cx,
    protocol: Option<u8>,
    local_ports: PortRange,
    remote_ports: PortRange,
) {
    for (key, p) in [("local_port", local_ports), ("remote_port", remote_ports)] {
        if p != PortRange::ANY && !addr::proto_has_ports(protocol) && cx.spans.ok(&t.sub(key)) {
            let span = cx.spans.get(&t.sub(key));
            cx.err(
                &t.sub(key),
                span,
                format!(
                    "{} names `{key}` but protocol {} has no ports (use tcp, udp or sctp)",
                    t.what,
                    addr::proto_name(protocol)
                ),
            );
        }
    }
}

/// `action`, and `peer`/`child` for "protect".
fn action(t: &mut Table<'_, '_>, cx: &mut Cx) -> SpdAction {
    let act = choice(
        t,
        cx,
        "action",
        &[("protect", 0), ("bypass", 1), ("discard", 2)],
        2,
    );
    if t.raw(cx, "action").is_none() {
        cx.err(
            &t.sub("action"),
            Some(t.span.clone()),
            format!(
                "{} is missing the required key `action` (\"protect\", \"bypass\" or \"discard\")",
                t.what
            ),
        );
    }
    let peer = t.string(cx, "peer", act == 0);
    let child = t.string(cx, "child", act == 0);
    if act != 0 {
        for (key, v) in [("peer", &peer), ("child", &child)] {
            if let Some((_, span)) = v {
                cx.err(
                    &t.sub(key),
                    Some(span.clone()),
                    format!(
                        "`{key}` in {} is only used with action = \"protect\"",
                        t.what
                    ),
                );
            }
        }
    }
    match act {
        0 => SpdAction::Protect {
            peer: peer.map(|p| p.0).unwrap_or_default(),
            child: child.map(|c| c.0).unwrap_or_default(),
        },
        1 => SpdAction::Bypass,
        _ => SpdAction::Discard,
    }
}
