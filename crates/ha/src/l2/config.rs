//! What the L2 ownership machine is told at start: the LAN interfaces it speaks ARP
//! on (name, address, prefix), the addresses it may own (gateway VIPAs, a private
//! gateway-system address, proxy-ARP VIPAs), how gratuitous ARP is paced, whether
//! interfaces that share a network back each other up (seed 002), and the optional
//! cluster MAC (seed 004). [`Config::validate`] rejects what cannot work.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::time::Duration;

use plexgate_wire::arp::EthernetAddress;

/// What kind of address plexgate owns on the LAN.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum AddressKind {
    /// The outer address clients send IKE and ESP to (seed 003's cluster address).
    GatewayVipa,
    /// A private address of the gateway system that routers use as next hop for the
    /// public addresses (seed 003's "NLBS IP address").
    SystemAddress,
    /// A VIPA bound to no adapter, answered by proxy ARP (seed 000), e.g. a DVIPA
    /// reached by plain traffic from the LAN. Opt-in per address.
    ProxyVipa,
}

impl AddressKind {
    /// Lower-case name for logs and status.
    pub fn as_str(self) -> &'static str {
        match self {
            AddressKind::GatewayVipa => "gateway-vipa",
            AddressKind::SystemAddress => "system-address",
            AddressKind::ProxyVipa => "proxy-vipa",
        }
    }
}

/// A LAN interface plexgate speaks ARP on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InterfaceConfig {
    /// OS name (`eth0`).
    pub name: String,
    /// The interface's own IPv4 address.
    pub address: Ipv4Addr,
    /// Prefix length of its subnet (0-32).
    pub prefix_len: u8,
}

impl InterfaceConfig {
    /// Is `a` in this interface's subnet?
    pub fn contains(&self, a: Ipv4Addr) -> bool {
        let mask = match self.prefix_len {
            0 => 0,
            n => u32::MAX << (32 - u32::from(n.min(32))),
        };
        u32::from(a) & mask == u32::from(self.address) & mask
    }
}

/// An address plexgate may own (answered only while [`crate::l2::L2::set_active`]
/// says this gateway is active for it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AddressConfig {
    /// The address.
    pub address: Ipv4Addr,
    /// What it is.
    pub kind: AddressKind,
}

/// Gratuitous ARP pacing: `count` announcements, `interval` apart, the first at once
/// (keepalived's `garp_master_repeat` with `garp_interval`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AnnounceConfig {
    /// Announcements per change (at least 1).
    pub count: u32,
    /// Time between two announcements.
    pub interval: Duration,
}

impl Default for AnnounceConfig {
    fn default() -> Self {
        AnnounceConfig {
            count: 3,
            interval: Duration::from_millis(500),
        }
    }
}

/// A member of the cluster that shares the cluster MAC (seed 004).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClusterMember {
    /// The member's own (dedicated) IPv4 address on the LAN.
    pub address: Ipv4Addr,
    /// Its per-member MAC; `None` derives `03:bf:` + the address (seed 004).
    pub mac: Option<EthernetAddress>,
}

/// Cluster MAC mode (seed 004): owned addresses are answered with one MAC that
/// all gateways of the site share, so a takeover changes no neighbour entry; the
/// members reach each other through per-member MACs, which they learn from ARP
/// replies that are rewritten for requests coming from a member.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterConfig {
    /// The shared cluster MAC.
    pub mac: EthernetAddress,
    /// Every member of the cluster (this gateway may be listed too).
    pub members: Vec<ClusterMember>,
}

impl ClusterConfig {
    /// Seed 004's dedicated multicast MAC of a member: prefix `03:bf` and the four
    /// bytes of its IPv4 address.
    pub fn derived_mac(address: Ipv4Addr) -> EthernetAddress {
        let o = address.octets();
        EthernetAddress([0x03, 0xbf, o[0], o[1], o[2], o[3]])
    }

    /// Is `a` a member's own address?
    pub fn is_member(&self, a: Ipv4Addr) -> bool {
        self.members.iter().any(|m| m.address == a)
    }

    /// The per-member MAC of address `a` (configured or derived).
    pub fn member_mac(&self, a: Ipv4Addr) -> EthernetAddress {
        self.members
            .iter()
            .find(|m| m.address == a)
            .and_then(|m| m.mac)
            .unwrap_or_else(|| Self::derived_mac(a))
    }

    /// Is `m` the cluster MAC or a member's MAC?
    pub fn is_cluster_mac(&self, m: EthernetAddress) -> bool {
        m == self.mac || self.members.iter().any(|x| self.member_mac(x.address) == m)
    }
}

/// The whole configuration of the machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// LAN interfaces, in order of preference (the first up interface in a
    /// subnet is the agent for that subnet's addresses).
    pub interfaces: Vec<InterfaceConfig>,
    /// Addresses this gateway may own.
    pub addresses: Vec<AddressConfig>,
    /// Gratuitous ARP pacing.
    pub announce: AnnounceConfig,
    /// Seed 002: find interfaces that share a network and let them back each
    /// other's address up.
    pub adapter_backup: bool,
    /// How long an interface's announcement may take to show up on another
    /// interface of the same network before they are considered separate.
    pub discovery_timeout: Duration,
    /// Cluster MAC mode (seed 004), off when `None`.
    pub cluster: Option<ClusterConfig>,
    /// A conflict (another host claiming an owned address) is logged at most once
    /// per address in this interval.
    pub conflict_log_interval: Duration,
    /// An owned address is defended (one announcement) at most once in this
    /// interval (RFC 5227 §2.4: DEFEND_INTERVAL, 10 s).
    pub defend_interval: Duration,
}

impl Config {
    /// A configuration with the defaults: no adapter backup, no cluster MAC, 3
    /// announcements 500 ms apart, conflicts logged once a minute per address.
    pub fn new(interfaces: Vec<InterfaceConfig>, addresses: Vec<AddressConfig>) -> Config {
        Config {
            interfaces,
            addresses,
            announce: AnnounceConfig::default(),
            adapter_backup: false,
            discovery_timeout: Duration::from_secs(1),
            cluster: None,
            conflict_log_interval: Duration::from_secs(60),
            defend_interval: Duration::from_secs(10),
        }
    }

    /// Checks the configuration.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.interfaces.is_empty() {
            return Err(ConfigError::NoInterfaces);
        }
        let mut names = BTreeSet::new();
        let mut own = BTreeSet::new();
        for i in &self.interfaces {
            if i.name.is_empty() || !names.insert(i.name.as_str()) {
                return Err(ConfigError::InterfaceName(i.name.clone()));
            }
            if i.prefix_len > 32 {
                return Err(ConfigError::Prefix(i.name.clone(), i.prefix_len));
            }
            if !own.insert(i.address) || !usable(i.address) {
                return Err(ConfigError::InterfaceAddress(i.address));
            }
        }
        let mut seen = BTreeSet::new();
        for a in &self.addresses {
            if own.contains(&a.address) {
                return Err(ConfigError::OwnedIsInterface(a.address));
            }
            if !seen.insert(a.address) || !usable(a.address) {
                return Err(ConfigError::Address(a.address));
            }
        }
        if self.announce.count == 0 {
            return Err(ConfigError::AnnounceCount);
        }
        if let Some(c) = &self.cluster {
            if c.mac.is_zero() || c.mac.is_broadcast() {
                return Err(ConfigError::ClusterMac(c.mac));
            }
        }
        Ok(())
    }
}

/// Addresses that can be owned: not 0.0.0.0, loopback, multicast or broadcast.
fn usable(a: Ipv4Addr) -> bool {
    !(a.is_unspecified() || a.is_loopback() || a.is_multicast() || a.is_broadcast())
}

/// A configuration the machine cannot run with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// No interfaces.
    #[error("no LAN interfaces to speak ARP on")]
    NoInterfaces,
    /// Empty or duplicate interface name.
    #[error("interface name `{0}` is empty or listed twice")]
    InterfaceName(String),
    /// Prefix over 32.
    #[error("interface {0}: prefix length {1} is over 32")]
    Prefix(String, u8),
    /// Duplicate or unusable interface address.
    #[error("interface address {0} is listed twice or cannot be a host address")]
    InterfaceAddress(Ipv4Addr),
    /// Duplicate or unusable owned address.
    #[error("owned address {0} is listed twice or cannot be a host address")]
    Address(Ipv4Addr),
    /// An owned address that is also an interface's address.
    #[error("owned address {0} is also an interface address (the kernel answers for those)")]
    OwnedIsInterface(Ipv4Addr),
    /// Zero announcements.
    #[error("announce count must be at least 1")]
    AnnounceCount,
    /// A cluster MAC that cannot be a destination.
    #[error("cluster MAC {0} cannot be all zeros or broadcast")]
    ClusterMac(EthernetAddress),
}
