//! The L2 agent: owning addresses on the LAN at run time (DESIGN.md flow 8). It
//! joins the sans-IO machine [`plexgate_ha::l2::L2`] to AF_PACKET sockets
//! ([`crate::io::packet`]) on a thread of its own, and keeps the kernel from
//! answering for the addresses plexgate owns (module `kernel`).
//!
//! [`L2Agent::start`] opens everything in the calling thread's network namespace
//! (start it from a thread inside the namespace); [`L2Agent::set_active`] is what
//! takeover and takeback call (it returns once the address is placed and its
//! first gratuitous ARP sent, or once it is silenced and removed);
//! [`L2Agent::status`] feeds `plexgate status` ([`status_json`], [`render_status`])
//! and [`render_metrics`] the Prometheus endpoint. Dropping the agent is a clean
//! stop: it falls silent, removes the addresses it placed and restores the
//! sysctls it changed.

mod policy;
pub use policy::from_policy;
mod kernel;
mod worker;

use std::net::Ipv4Addr;
use std::os::unix::net::UnixDatagram;
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

use plexgate_ha::l2::{AddressKind, Answerer, Config, Counters, Event, Status, StatusKind, L2};
use serde_json::{json, Value};

use crate::metrics::Exposition;

/// How the agent runs.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// The machine's configuration (interfaces, owned addresses, modes).
    pub l2: Config,
    /// Set `arp_ignore`, `arp_announce` and `proxy_arp` on the interfaces (and
    /// restore them on stop). Off only where the host is configured by hand.
    pub quiet_kernel: bool,
    /// Put gateway VIPAs and the system address on this device (normally `lo`)
    /// while active, and take them off while standby. `None`: leave the kernel's
    /// addresses alone.
    pub address_device: Option<String>,
    /// Re-read link states at least this often (link notifications usually come
    /// first).
    pub link_poll: Duration,
}

impl AgentConfig {
    /// Defaults: quiet kernel, addresses on `lo`, links re-read every second.
    pub fn new(l2: Config) -> AgentConfig {
        AgentConfig {
            l2,
            quiet_kernel: true,
            address_device: Some("lo".into()),
            link_poll: Duration::from_secs(1),
        }
    }
}

/// Why the agent cannot start or do what it is asked.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// The machine refused the configuration.
    #[error("l2 configuration: {0}")]
    Config(#[from] plexgate_ha::l2::ConfigError),
    /// A unicast cluster MAC (not supported on Linux without macvlan).
    #[error("cluster MAC {0} is unicast: every member's NIC would have to carry it and switches would see it move between ports; use a multicast MAC (group bit set, e.g. 03:bf:…) that the members join")]
    UnicastClusterMac(plexgate_wire::arp::EthernetAddress),
    /// A system call failed.
    #[error("{0}: {1}")]
    Io(String, #[source] std::io::Error),
    /// `set_active` was refused.
    #[error("{0}")]
    Refused(String),
    /// The agent's thread is gone.
    #[error("the l2 agent thread has stopped")]
    Gone,
}

/// A running L2 agent.
#[derive(Debug)]
pub struct L2Agent {
    cmds: mpsc::Sender<worker::Cmd>,
    wake: UnixDatagram,
    thread: Option<JoinHandle<()>>,
}

/// How long the handle waits for the agent's thread to answer.
const REPLY_TIMEOUT: Duration = Duration::from_secs(5);

impl L2Agent {
    /// Quiets the kernel, opens the sockets and starts the thread, all in the
    /// calling thread's network namespace. Every address starts standby.
    pub fn start(cfg: AgentConfig) -> Result<L2Agent, AgentError> {
        let l2 = L2::new(cfg.l2.clone())?;
        if let Some(c) = &cfg.l2.cluster {
            if !c.mac.is_multicast() {
                return Err(AgentError::UnicastClusterMac(c.mac));
            }
        }
        let quiet = cfg.quiet_kernel.then(|| kernel::Quiet {
            cluster: l2.answers_interface_addresses(),
            backup: cfg.l2.adapter_backup,
        });
        let mut guard = kernel::KernelGuard::new(quiet);
        if let Some(dev) = &cfg.address_device {
            let st = crate::io::packet::link_state(dev)
                .map_err(|e| AgentError::Io(format!("reading {dev}"), e))?
                .ok_or_else(|| AgentError::Io(dev.clone(), std::io::ErrorKind::NotFound.into()))?;
            guard.set_device(dev.clone(), st.index);
            for a in cfg
                .l2
                .addresses
                .iter()
                .filter(|a| a.kind != AddressKind::ProxyVipa)
            {
                guard
                    .clear(a.address)
                    .map_err(|e| AgentError::Io("starting standby".into(), e))?;
            }
        }
        // Interfaces that exist now are quieted before the agent starts (a
        // failure here is an error); the others when they appear.
        for i in &cfg.l2.interfaces {
            let exists = crate::io::packet::link_state(&i.name)
                .map_err(|e| AgentError::Io(format!("reading {}", i.name), e))?
                .is_some();
            if exists {
                if let Err(e) = guard.quiet_iface(&i.name) {
                    guard.restore();
                    return Err(AgentError::Io("setting ARP sysctls".into(), e));
                }
            }
        }
        let (wake, wake_rx) =
            UnixDatagram::pair().map_err(|e| AgentError::Io("socketpair".into(), e))?;
        wake_rx
            .set_nonblocking(true)
            .map_err(|e| AgentError::Io("socketpair".into(), e))?;
        let (tx, rx) = mpsc::channel();
        let w = worker::Worker::new(l2, guard, wake_rx, rx, cfg.link_poll);
        let thread = std::thread::Builder::new()
            .name("l2".into())
            .spawn(move || w.run())
            .map_err(|e| AgentError::Io("spawning the l2 thread".into(), e))?;
        Ok(L2Agent {
            cmds: tx,
            wake,
            thread: Some(thread),
        })
    }

    fn ask<T>(&self, make: impl FnOnce(mpsc::Sender<T>) -> worker::Cmd) -> Result<T, AgentError> {
        let (tx, rx) = mpsc::channel();
        self.cmds.send(make(tx)).map_err(|_| AgentError::Gone)?;
        let _ = self.wake.send(&[1]);
        rx.recv_timeout(REPLY_TIMEOUT).map_err(|_| AgentError::Gone)
    }

    /// This gateway is now active (or standby) for `addr`. Returns after the
    /// address was given to the kernel and its first announcement sent (active),
    /// or after it was silenced and taken from the kernel (standby).
    pub fn set_active(&self, addr: Ipv4Addr, active: bool) -> Result<(), AgentError> {
        self.ask(|r| worker::Cmd::SetActive(addr, active, r))?
            .map_err(AgentError::Refused)
    }

    /// Who owns each address, on which interface and MAC; counters.
    pub fn status(&self) -> Result<Status, AgentError> {
        self.ask(worker::Cmd::Status)
    }

    /// The last events (newest last, at most 256).
    pub fn events(&self) -> Result<Vec<Event>, AgentError> {
        self.ask(worker::Cmd::Events)
    }

    /// A clean stop; returns what could not be undone in the kernel.
    pub fn stop(mut self) -> Result<Vec<String>, AgentError> {
        self.stop_inner()
    }

    fn stop_inner(&mut self) -> Result<Vec<String>, AgentError> {
        let Some(t) = self.thread.take() else {
            return Ok(Vec::new());
        };
        let r = self.ask(worker::Cmd::Stop);
        let _ = t.join();
        r
    }
}

impl Drop for L2Agent {
    fn drop(&mut self) {
        let _ = self.stop_inner();
    }
}

fn kind_str(k: StatusKind) -> &'static str {
    match k {
        StatusKind::Owned(k) => k.as_str(),
        StatusKind::Interface => "interface",
    }
}

fn answerer_str(a: Answerer) -> &'static str {
    match a {
        Answerer::Plexgate => "plexgate",
        Answerer::Kernel => "kernel",
        Answerer::Nobody => "nobody",
    }
}

fn counters_json(c: &Counters) -> Value {
    json!({
        "sent": c.sent, "answered": c.answered, "announcements": c.announcements,
        "ignored": c.ignored, "malformed": c.malformed, "spoofed": c.spoofed,
        "conflicts": c.conflicts,
    })
}

/// The status as JSON (the `l2` member of `plexgate status --json`).
pub fn status_json(s: &Status) -> Value {
    let opt = |m: Option<plexgate_wire::arp::EthernetAddress>| m.map(|m| m.to_string());
    json!({
        "cluster_mac": opt(s.cluster_mac),
        "addresses": s.addresses.iter().map(|a| json!({
            "address": a.address.to_string(),
            "kind": kind_str(a.kind),
            "active": a.active,
            "answered_by": answerer_str(a.answerer),
            "interface": a.interface,
            "mac": opt(a.mac),
            "seen_elsewhere": opt(a.seen_elsewhere),
        })).collect::<Vec<_>>(),
        "interfaces": s.interfaces.iter().map(|i| json!({
            "name": i.name,
            "address": format!("{}/{}", i.address, i.prefix_len),
            "up": i.up,
            "mac": opt(i.mac),
            "same_network": i.same_network,
        })).collect::<Vec<_>>(),
        "counters": counters_json(&s.counters),
    })
}

/// Human-readable lines for `plexgate status` from [`status_json`]'s value.
pub fn render_status(v: &Value) -> String {
    let s = |x: &Value| x.as_str().unwrap_or("-").to_string();
    let mut o = String::new();
    if let Some(m) = v["cluster_mac"].as_str() {
        o.push_str(&format!("L2 cluster MAC {m}\n"));
    }
    for a in v["addresses"].as_array().into_iter().flatten() {
        let state = match (a["active"].as_bool(), s(&a["answered_by"]).as_str()) {
            (_, "plexgate") | (_, "kernel") => format!(
                "answered by {} on {} as {}",
                s(&a["answered_by"]),
                s(&a["interface"]),
                s(&a["mac"])
            ),
            (Some(true), _) => "active, waiting for an interface of its subnet".into(),
            _ => match a["seen_elsewhere"].as_str() {
                Some(m) => format!("standby (owner seen at {m})"),
                None => "standby".into(),
            },
        };
        o.push_str(&format!(
            "L2 {} {}: {state}\n",
            s(&a["kind"]),
            s(&a["address"])
        ));
    }
    for i in v["interfaces"].as_array().into_iter().flatten() {
        let peers: Vec<String> = i["same_network"]
            .as_array()
            .into_iter()
            .flatten()
            .map(&s)
            .collect();
        o.push_str(&format!(
            "  interface {} {} {} {}{}\n",
            s(&i["name"]),
            s(&i["address"]),
            if i["up"] == true { "up" } else { "down" },
            s(&i["mac"]),
            if peers.is_empty() {
                String::new()
            } else {
                format!(", same network as {}", peers.join(", "))
            }
        ));
    }
    o.push_str(&format!("L2 counters: {}\n", v["counters"]));
    o
}

/// ARP counters and ownership as Prometheus metrics.
pub fn render_metrics(e: &mut Exposition, s: &Status) {
    let c = s.counters;
    for (name, help, v) in [
        ("plexgate_arp_sent_total", "ARP frames sent", c.sent),
        (
            "plexgate_arp_answered_total",
            "ARP requests answered",
            c.answered,
        ),
        (
            "plexgate_arp_announcements_total",
            "Gratuitous ARP announcements sent",
            c.announcements,
        ),
        (
            "plexgate_arp_conflicts_total",
            "ARP frames claiming an address this gateway owns",
            c.conflicts,
        ),
    ] {
        e.family(name, "counter", help).sample(name, &[], v);
    }
    let name = "plexgate_arp_ignored_total";
    e.family(name, "counter", "ARP frames ignored, by reason");
    for (reason, v) in [
        ("malformed", c.malformed),
        ("spoofed", c.spoofed),
        ("conflict", c.conflicts),
    ] {
        e.sample(name, &[("reason", reason.into())], v);
    }
    let name = "plexgate_l2_answering";
    e.family(
        name,
        "gauge",
        "1 if this gateway answers ARP for the address",
    );
    for a in &s.addresses {
        if let StatusKind::Owned(_) = a.kind {
            let on = u64::from(a.answerer == Answerer::Plexgate);
            let l = [
                ("address", a.address.to_string()),
                ("interface", a.interface.clone().unwrap_or_default()),
            ];
            e.sample(name, &l, on);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use plexgate_ha::l2::{AddressConfig, IfaceId, InterfaceConfig};
    use plexgate_wire::arp::EthernetAddress;
    use std::time::Instant;

    #[test]
    fn status_renders_as_json_text_and_metrics() {
        let vipa: Ipv4Addr = "10.77.0.100".parse().unwrap();
        let cfg = Config::new(
            vec![InterfaceConfig {
                name: "eth0".into(),
                address: "10.77.0.2".parse().unwrap(),
                prefix_len: 24,
            }],
            vec![AddressConfig {
                address: vipa,
                kind: AddressKind::GatewayVipa,
            }],
        );
        let mut l2 = L2::new(cfg).unwrap();
        let mac: EthernetAddress = "4a:e3:d2:fc:9f:de".parse().unwrap();
        let now = Instant::now();
        l2.set_link(now, IfaceId(0), true, Some(mac));
        l2.set_active(now, vipa, true).unwrap();
        let st = l2.status();
        let v = status_json(&st);
        assert_eq!(v["addresses"][0]["answered_by"], "plexgate");
        assert_eq!(v["addresses"][0]["mac"], "4a:e3:d2:fc:9f:de");
        assert_eq!(v["interfaces"][0]["address"], "10.77.0.2/24");
        assert_eq!(v["counters"]["announcements"], 1);
        let text = render_status(&v);
        assert!(
            text.contains(
                "L2 gateway-vipa 10.77.0.100: answered by plexgate on eth0 as 4a:e3:d2:fc:9f:de\n"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "L2 interface 10.77.0.2: answered by kernel on eth0 as 4a:e3:d2:fc:9f:de\n"
            ),
            "{text}"
        );
        assert!(
            text.contains("  interface eth0 10.77.0.2/24 up 4a:e3:d2:fc:9f:de\n"),
            "{text}"
        );
        l2.set_active(now, vipa, false).unwrap();
        let text = render_status(&status_json(&l2.status()));
        assert!(
            text.contains("L2 gateway-vipa 10.77.0.100: standby\n"),
            "{text}"
        );
        let mut e = Exposition::default();
        render_metrics(&mut e, &st);
        let m = e.finish();
        assert!(m.contains("plexgate_arp_announcements_total 1\n"), "{m}");
        assert!(
            m.contains("plexgate_arp_ignored_total{reason=\"malformed\"} 0\n"),
            "{m}"
        );
        assert!(
            m.contains("plexgate_l2_answering{address=\"10.77.0.100\",interface=\"eth0\"} 1\n"),
            "{m}"
        );
    }
}
