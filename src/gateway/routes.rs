//! Routes into the gateway's TUN: DVIPAs, the remote side of PROTECT rules, and
//! the peers' selectors of Child SAs as they come and go.

use std::net::IpAddr;

/// `addr/32` or `addr/128`.
pub fn host_cidr(a: IpAddr) -> String {
    match a {
        IpAddr::V4(_) => format!("{a}/32"),
        IpAddr::V6(_) => format!("{a}/128"),
    }
}

/// Run `ip ARGS`, logging failures.
pub fn ip(args: &[&str]) -> bool {
    match std::process::Command::new("ip").args(args).output() {
        Ok(o) if o.status.success() => true,
        Ok(o) => {
            tracing::warn!(
                "ip {}: {}",
                args.join(" "),
                String::from_utf8_lossy(&o.stderr).trim()
            );
            false
        }
        Err(e) => {
            tracing::warn!("ip {}: {e}", args.join(" "));
            false
        }
    }
}

/// CIDRs of the remote selectors of outbound PROTECT rules that are one specific
/// prefix and contain no peer's outer address nor one of our own, a link's or a
/// target's address.
fn protect_routes(p: &plexgate_policy::Policy) -> Vec<String> {
    use plexgate_policy as pol;
    // Addresses that must stay reachable outside the tunnel.
    let mut peers: Vec<IpAddr> = p
        .peers
        .iter()
        .filter_map(|x| match x.remote {
            pol::RemoteAddr::Host(a) => Some(a),
            _ => None,
        })
        .collect();
    peers.extend(p.site.gateway_vipas.iter().copied());
    peers.extend(p.site.interfaces.iter().map(|i| i.address.addr()));
    peers.extend(p.links.iter().flat_map(|l| [l.local, l.remote]));
    peers.extend(p.targets.iter().map(|t| t.address));
    let mut out = Vec::new();
    for r in &p.spd {
        let outbound = matches!(r.direction, pol::Direction::Out | pol::Direction::Both);
        let (true, pol::SpdAction::Protect { .. }, pol::AddrSel::Range(rg)) =
            (outbound, &r.action, &r.remote)
        else {
            continue;
        };
        let ts = plexgate_ipsec::TrafficSelector {
            protocol: 0,
            start_port: 0,
            end_port: 65535,
            start_addr: rg.start,
            end_addr: rg.end,
        };
        let holds =
            |a: &IpAddr| a.is_ipv4() == rg.start.is_ipv4() && *a >= rg.start && *a <= rg.end;
        if let Some(c) = super::core::ts_cidr(&ts) {
            if !peers.iter().any(holds) && !out.contains(&c) {
                out.push(c);
            }
        }
    }
    out
}

pub(super) fn apply(tun: &str, routes: Vec<(bool, String)>) {
    for (add, cidr) in routes {
        if add {
            ip(&["route", "replace", &cidr, "dev", tun]);
        } else {
            ip(&["route", "del", &cidr, "dev", tun]);
        }
    }
}

/// Routes that exist from the start: every DVIPA (plain traffic) and the remote
/// side of each outbound PROTECT rule that is one specific prefix, so that its
/// traffic reaches the TUN (and starts an acquire) before any SA exists. Never a
/// prefix holding a peer's own address (IKE would loop).
pub(super) fn install_static(p: &plexgate_policy::Policy, tun: &str) {
    for d in &p.dvipas {
        ip(&["route", "replace", &host_cidr(d.address), "dev", tun]);
    }
    for cidr in protect_routes(p) {
        ip(&["route", "replace", &cidr, "dev", tun]);
    }
}
