//! The typed model of a site policy: what the daemon maps onto the IKE engine, the
//! SPD/SAD and the distribution tables.
//!
//! Everything here is plain data: parsed addresses (`ipnet`/`std::net`), parsed
//! proposals, durations, and file paths already resolved against the policy file's
//! directory. No spans, no I/O. A `Policy` is only handed out after validation
//! found no errors, so its invariants (documented per field, and in
//! `docs/policy.md`) hold: names are unique, references resolve, addresses sit in
//! their subnets, ranks are 1-254, and so on.
//!
//! The types live in one module per part of the file (`peer`, `spd`, `pool`,
//! `ha`); `display` renders a whole policy; `view` gives the policy as one of
//! the site's gateways sees it. All are re-exported here.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::PathBuf;

use ipnet::IpNet;

mod display;
mod ha;
mod peer;
mod pool;
mod spd;
mod view;

pub use display::fmt_duration;
pub use ha::*;
pub use peer::*;
pub use pool::*;
pub use spd::*;
pub use view::{GatewayInfo, ViewError};

/// A whole site policy.
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    /// The policy file this was read from (as given to `load`).
    pub source: PathBuf,
    /// `[site]`.
    pub site: Site,
    /// `[[peer]]`, in file order.
    pub peers: Vec<Peer>,
    /// `[[spd]]`, in file order (first match wins).
    pub spd: Vec<SpdRule>,
    /// `[[dvipa]]`.
    pub dvipas: Vec<Dvipa>,
    /// `[[target]]`.
    pub targets: Vec<Target>,
    /// `[[link]]`.
    pub links: Vec<Link>,
    /// `[cluster]`, if present.
    pub cluster: Option<Cluster>,
    /// `[ha]`, if present (absent: a single gateway, no shared store).
    pub ha: Option<Ha>,
    /// `[log]`.
    pub log: Log,
    /// `[l2]`, if present.
    pub l2: Option<L2>,
}

impl Policy {
    /// The peer named `name`.
    pub fn peer(&self, name: &str) -> Option<&Peer> {
        self.peers.iter().find(|p| p.name == name)
    }

    /// The target named `name`.
    pub fn target(&self, name: &str) -> Option<&Target> {
        self.targets.iter().find(|t| t.name == name)
    }

    /// The link named `name`.
    pub fn link(&self, name: &str) -> Option<&Link> {
        self.links.iter().find(|l| l.name == name)
    }

    /// The DVIPA with address `a`.
    pub fn dvipa(&self, a: IpAddr) -> Option<&Dvipa> {
        self.dvipas.iter().find(|d| d.address == a)
    }

    /// The targets a DVIPA distributes to, with their effective weights
    /// (the DVIPA's `weights` override the target's own `weight`; 0 = drained).
    pub fn dvipa_targets<'a>(&'a self, d: &'a Dvipa) -> Vec<(&'a Target, u32)> {
        self.dvipa_targets_by(d, &self.targets_by_name())
    }

    /// Target name → the first target with that name (the lookup
    /// [`Policy::dvipa_targets`] needs; build it once for many DVIPAs).
    pub fn targets_by_name(&self) -> HashMap<&str, &Target> {
        let mut by = HashMap::with_capacity(self.targets.len());
        for t in &self.targets {
            by.entry(t.name.as_str()).or_insert(t);
        }
        by
    }

    /// [`Policy::dvipa_targets`] with a lookup made by
    /// [`Policy::targets_by_name`]: linear in the DVIPA's targets.
    pub fn dvipa_targets_by<'a>(
        &'a self,
        d: &'a Dvipa,
        by_name: &HashMap<&str, &'a Target>,
    ) -> Vec<(&'a Target, u32)> {
        let weighted = |t: &'a Target| (t, d.weights.get(&t.name).copied().unwrap_or(t.weight));
        match &d.targets {
            TargetSet::All => self.targets.iter().map(weighted).collect(),
            TargetSet::Named(v) => v
                .iter()
                .filter_map(|n| by_name.get(n.as_str()).copied())
                .map(weighted)
                .collect(),
        }
    }
}

/// `[site]`: who this site is and where it listens.
#[derive(Debug, Clone, PartialEq)]
pub struct Site {
    /// Site name (used in logs and as the default store prefix).
    pub name: String,
    /// Gateway VIPAs: the outer addresses clients send IKE and ESP to. Each lies in
    /// the subnet of one of `interfaces`.
    pub gateway_vipas: Vec<IpAddr>,
    /// Local (LAN/uplink) interfaces with their address and prefix.
    pub interfaces: Vec<Interface>,
    /// IKE port (default 500).
    pub ike_port: u16,
    /// NAT-T port for IKE and ESP-in-UDP (default 4500).
    pub natt_port: u16,
}

/// `[[site.interface]]`: a local interface and its address with prefix length.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interface {
    /// OS interface name, e.g. `eth0`.
    pub name: String,
    /// The interface address with its prefix (`198.51.100.2/24`); the subnet is
    /// `address.trunc()`.
    pub address: IpNet,
}
