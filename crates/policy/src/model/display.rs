//! A normalized listing of a policy for `plexgate policy check -v` and logs:
//! defaults filled in, proposals spelled out.

use std::collections::HashMap;
use std::fmt;
use std::time::Duration;

use super::*;

/// A duration as `4h24m`, `30s`, `1d`, `0s`, `150ms`, `1s500ms` (milliseconds
/// only when there are some; below them it is rounded down).
pub fn fmt_duration(d: Duration) -> String {
    let mut s = d.as_secs();
    let ms = d.subsec_millis();
    if s == 0 {
        return if ms == 0 {
            "0s".into()
        } else {
            format!("{ms}ms")
        };
    }
    let mut out = String::new();
    for (unit, len) in [("d", 86400), ("h", 3600), ("m", 60), ("s", 1)] {
        if s >= len {
            out.push_str(&format!("{}{unit}", s / len));
            s %= len;
        }
    }
    if ms != 0 {
        out.push_str(&format!("{ms}ms"));
    }
    out
}

impl fmt::Display for Identity {
    /// In a form that parses back to the same identity.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Identity::Any => f.write_str("%any"),
            Identity::Fqdn(s) => write!(f, "@{s}"),
            Identity::Email(s) if s.contains('@') && !s.contains('=') => f.write_str(s),
            Identity::Email(s) => write!(f, "email:{s}"),
            Identity::Ip(a) => write!(f, "{a}"),
            Identity::Dn(s) if s.contains('=') => f.write_str(s),
            Identity::Dn(s) => write!(f, "dn:{s}"),
        }
    }
}

impl fmt::Display for RemoteAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RemoteAddr::Any => f.write_str("any"),
            RemoteAddr::Host(a) => write!(f, "{a}"),
            RemoteAddr::Subnet(n) => write!(f, "{n}"),
        }
    }
}

fn list<T: fmt::Display>(v: &[T]) -> String {
    v.iter()
        .map(|x| x.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

fn fmt_peer(f: &mut fmt::Formatter<'_>, p: &Peer) -> fmt::Result {
    let auth = match &p.auth {
        Auth::Psk { psk_file } => format!("psk {}", psk_file.display()),
        Auth::Cert { cert, .. } => format!("cert {}", cert.display()),
    };
    writeln!(
        f,
        "peer {}: remote {}, {} <-> {}, auth {auth}",
        p.name, p.remote, p.local_id, p.remote_id
    )?;
    let dpd = p.dpd_delay.map_or("off".into(), fmt_duration);
    let encap = match p.encap {
        Encap::Auto => "",
        Encap::Udp => ", esp in udp",
    };
    let r = &p.retransmit;
    writeln!(
        f,
        "  ike {}; rekey {}, life {}, dpd {dpd}{encap}; retransmit {}, base {}, {} tries",
        list(&p.proposals),
        fmt_duration(p.rekey_time),
        fmt_duration(p.life_time),
        fmt_duration(r.timeout),
        r.base,
        r.tries
    )?;
    for c in &p.children {
        let mode = if c.mode == Mode::Tunnel {
            "tunnel"
        } else {
            "transport"
        };
        writeln!(
            f,
            "  child {}: {} === {} ({mode})",
            c.name,
            list(&c.local_ts),
            list(&c.remote_ts)
        )?;
        writeln!(
            f,
            "    esp {}; rekey {}, life {}; replay {}; start {:?}",
            list(&c.esp_proposals),
            fmt_duration(c.lifetime.rekey_time),
            fmt_duration(c.lifetime.life_time),
            c.replay_window,
            c.start_action
        )?;
    }
    Ok(())
}

fn fmt_spd(f: &mut fmt::Formatter<'_>, i: usize, r: &SpdRule) -> fmt::Result {
    let name = r.name.as_deref().map_or(String::new(), |n| format!(" {n}"));
    let proto = crate::addr::proto_name(r.protocol);
    let action = match &r.action {
        SpdAction::Protect { peer, child } => format!("protect {peer}/{child}"),
        SpdAction::Bypass => "bypass".into(),
        SpdAction::Discard => "discard".into(),
    };
    writeln!(
        f,
        "  #{}{name}: {:?} {proto} local {} port {} remote {} port {} -> {action}",
        i + 1,
        r.direction,
        r.local,
        r.local_ports,
        r.remote,
        r.remote_ports
    )
}

fn fmt_dvipa<'a>(
    f: &mut fmt::Formatter<'_>,
    p: &'a Policy,
    d: &'a Dvipa,
    by_name: &HashMap<&str, &'a Target>,
) -> fmt::Result {
    writeln!(
        f,
        "dvipa {} ports {}: {:?}, plain traffic {:?}",
        d.address,
        list(&d.ports),
        d.method,
        d.plain_traffic
    )?;
    for (t, w) in p.dvipa_targets_by(d, by_name) {
        writeln!(
            f,
            "  target {} {} via link {} weight {w}",
            t.name, t.address, t.link
        )?;
    }
    if let Some(g) = &d.routing_gateway {
        let backups: Vec<String> = d
            .backups
            .iter()
            .map(|b| format!("{} (rank {})", b.gateway, b.rank))
            .collect();
        writeln!(
            f,
            "  routed by {g}, backups: {}",
            if backups.is_empty() {
                "none".into()
            } else {
                backups.join(", ")
            }
        )?;
    }
    Ok(())
}

fn fmt_cluster_ha(f: &mut fmt::Formatter<'_>, p: &Policy) -> fmt::Result {
    if let Some(c) = &p.cluster {
        let udp = if p.links.iter().any(|l| l.encap == LinkEncap::Udp) {
            format!(", gre in udp to port {}", c.gre_udp_port)
        } else {
            String::new()
        };
        writeln!(
            f,
            "cluster: gateway id {}, port {}, key {}{udp}",
            c.gateway_id,
            c.port,
            c.key_file.display()
        )?;
    }
    let Some(ha) = &p.ha else {
        return Ok(());
    };
    let peers: Vec<String> = ha
        .peers
        .iter()
        .map(|p| match p.id {
            Some(id) => format!("{} {} (id {id}, rank {})", p.name, p.address, p.rank),
            None => format!("{} {} (rank {})", p.name, p.address, p.rank),
        })
        .collect();
    writeln!(
        f,
        "ha: this gateway {} (rank {}), peers: {}; heartbeat {}, dead after {}",
        ha.name,
        ha.rank,
        peers.join(", "),
        fmt_duration(ha.heartbeat),
        fmt_duration(ha.dead_after)
    )?;
    let k = &ha.store_keys;
    let old: Vec<String> = k.old_keys.iter().map(|o| o.id.to_string()).collect();
    let keys = if old.is_empty() {
        format!("key {} (id {})", k.key_file.display(), k.key_id)
    } else {
        format!(
            "key {} (id {}), old key ids {}",
            k.key_file.display(),
            k.key_id,
            old.join(", ")
        )
    };
    match &ha.store {
        Store::Embedded { path } => writeln!(f, "  store embedded {}, {keys}", path.display()),
        Store::Etcd {
            endpoints,
            prefix,
            lease,
        } => writeln!(
            f,
            "  store etcd {} prefix {prefix} lease {}, {keys}",
            endpoints.join(", "),
            fmt_duration(*lease)
        ),
    }
}

impl fmt::Display for Policy {
    /// A normalized listing of the whole policy, for `plexgate policy check -v`
    /// and logs: defaults filled in, proposals spelled out.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = &self.site;
        writeln!(
            f,
            "site {}: gateway VIPAs {} (IKE {}, NAT-T {})",
            s.name,
            list(&s.gateway_vipas),
            s.ike_port,
            s.natt_port
        )?;
        for i in &s.interfaces {
            writeln!(f, "  interface {} {}", i.name, i.address)?;
        }
        for p in &self.peers {
            fmt_peer(f, p)?;
        }
        if !self.spd.is_empty() {
            writeln!(f, "spd (first match wins):")?;
        }
        for (i, r) in self.spd.iter().enumerate() {
            fmt_spd(f, i, r)?;
        }
        let by_name = self.targets_by_name();
        for d in &self.dvipas {
            fmt_dvipa(f, self, d, &by_name)?;
        }
        for l in &self.links {
            let encap = match l.encap {
                LinkEncap::Gre => "",
                LinkEncap::Udp => ", gre in udp",
            };
            write!(
                f,
                "link {}: {} {} in {} <-> {}{encap}",
                l.name, l.interface, l.local, l.subnet, l.remote
            )?;
            if l.gateway != self.gateway_name() {
                write!(f, " (gateway {} to target {})", l.gateway, l.target)?;
            }
            writeln!(f)?;
        }
        fmt_cluster_ha(f, self)?;
        if let Some(k) = &self.log.keylog {
            writeln!(f, "KEY LOG ON: {}", k.display())?;
        }
        Ok(())
    }
}
