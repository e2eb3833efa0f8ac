//! A switch: a namespace holding a Linux bridge; hosts are plugged into it with
//! veth pairs (a LAN on which an address can move from one host to another, with
//! ARP as on real Ethernet). Dropping it removes the namespace and the bridge.

use crate::error::Result;
use crate::netns::Netns;
use crate::topology::Veth;

/// A Linux bridge in a namespace of its own.
#[derive(Debug)]
pub struct Switch {
    ns: Netns,
    ports: usize,
}

impl Switch {
    /// A new bridge `br0` (multicast snooping off: every frame floods, as on a hub
    /// for multicast MACs) in a namespace labelled `label`.
    pub fn new(label: &str) -> Result<Switch> {
        let ns = Netns::new(label)?;
        ns.ip(&[
            "link",
            "add",
            "br0",
            "type",
            "bridge",
            "mcast_snooping",
            "0",
        ])?;
        ns.ip(&["link", "set", "br0", "up"])?;
        Ok(Switch { ns, ports: 0 })
    }

    /// Plugs a new interface `ifname` of `host` (address `cidr`) into the bridge;
    /// returns the bridge port's name.
    pub fn plug(&mut self, host: &Netns, ifname: &str, cidr: &str) -> Result<String> {
        self.ports += 1;
        let port = format!("p{}", self.ports);
        Veth::connect(host, ifname, &[cidr], &self.ns, &port, &[])?;
        self.ns
            .ip(&["link", "set", "dev", &port, "master", "br0"])?;
        Ok(port)
    }

    /// The bridge's namespace (for captures on `br0`).
    pub fn ns(&self) -> &Netns {
        &self.ns
    }

    /// The MAC address of `ifname` in `host`.
    pub fn mac_of(host: &Netns, ifname: &str) -> Result<String> {
        let out = host.ip(&["-br", "link", "show", "dev", ifname])?.stdout;
        Ok(out
            .split_whitespace()
            .nth(2)
            .unwrap_or_default()
            .to_string())
    }
}
