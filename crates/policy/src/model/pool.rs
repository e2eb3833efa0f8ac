//! The server pool: `[[dvipa]]` with its targets, method, weights and backups,
//! `[[target]]` and `[[link]]` (every gateway's links to every target: one file
//! describes the whole site, see `Policy::for_gateway`).

use std::collections::BTreeMap;
use std::net::IpAddr;

use ipnet::IpNet;

use crate::addr::PortRange;

/// How a DVIPA picks a target for a new connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// Each target in turn.
    RoundRobin,
    /// In proportion to the weights.
    WeightedRoundRobin,
    /// The target with the fewest open connections (weights break ties).
    LeastConnections,
}

/// Which targets serve a DVIPA.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TargetSet {
    /// Every `[[target]]` of the site.
    All,
    /// The named targets.
    Named(Vec<String>),
}

/// What to do with plain (non-IPsec) traffic to a DVIPA.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlainTraffic {
    /// Distribute it like IPsec traffic.
    Distribute,
    /// Drop it (default): only IPsec-protected traffic reaches the pool.
    Drop,
}

/// A backup gateway for a DVIPA.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backup {
    /// Gateway name (`ha.name` or an `ha.peer` name).
    pub gateway: String,
    /// Rank 1-254; higher takes over first. Unique within one DVIPA.
    pub rank: u8,
}

/// `[[dvipa]]`: a distributed virtual IP address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dvipa {
    /// The address (unique).
    pub address: IpAddr,
    /// Ports distributed (other ports are not accepted).
    pub ports: Vec<PortRange>,
    /// Candidate targets.
    pub targets: TargetSet,
    /// Distribution method.
    pub method: Method,
    /// Per-target weight overrides (0 = drain: no new connections).
    pub weights: BTreeMap<String, u32>,
    /// The gateway that owns the DVIPA (required when `[ha]` is present).
    pub routing_gateway: Option<String>,
    /// Backups, sorted by rank, highest first.
    pub backups: Vec<Backup>,
    /// Plain traffic handling.
    pub plain_traffic: PlainTraffic,
    /// The gateway VIPA clients reach this DVIPA through (default: the site's
    /// first). DVIPAs that share one move together on takeover (same IKE SAs), so
    /// they must have the same routing gateway and backups.
    pub gateway_vipa: Option<IpAddr>,
}

impl Dvipa {
    /// The gateway VIPA of this DVIPA in `site`.
    pub fn gateway_vipa_in(&self, site: &super::Site) -> Option<IpAddr> {
        self.gateway_vipa
            .or_else(|| site.gateway_vipas.first().copied())
    }
}

/// `[[target]]`: a server that runs `plexgate target`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// Unique name.
    pub name: String,
    /// The target's address on its link (in the link's subnet).
    pub address: IpAddr,
    /// The link it sits on (exactly one target per link): its link to this file's
    /// gateway. In a view for another gateway (`Policy::for_gateway`) its link to
    /// that gateway, or empty when it has none.
    pub link: String,
    /// Default weight (default 1; 0 = drained).
    pub weight: u32,
}

/// `[[link]]`: the point-to-point path from one gateway to one target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    /// Unique name.
    pub name: String,
    /// Local interface name.
    pub interface: String,
    /// Our address on the link (in `subnet`).
    pub local: IpAddr,
    /// The link subnet (host bits zero; link subnets do not overlap).
    pub subnet: IpNet,
    /// The address GRE on this link must come from: the target's address.
    pub remote: IpAddr,
    /// How packets to the target are encapsulated (default GRE).
    pub encap: LinkEncap,
    /// The gateway at the `local` end: `[ha] name` or an `[[ha.peer]]` name
    /// (default: this file's gateway); empty in a site without `[ha]`, whose
    /// only gateway has no name.
    pub gateway: String,
    /// The target at the `remote` end (default: the target whose `link` names
    /// this link); empty for a link no target sits on.
    pub target: String,
}

/// The encapsulation on a link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkEncap {
    /// GRE, IP protocol 47 (RFC 2784/2890).
    Gre,
    /// GRE in UDP (RFC 8086) to `[cluster] gre_udp_port`: spreads over
    /// receive queues by UDP port and passes NATs and firewalls that drop
    /// protocol 47; only `plexgate target` decapsulates it.
    Udp,
}
