//! What the L2 ownership machine tells the outside: counters for metrics, events
//! for the log (each a state change, never one per packet), and a status snapshot
//! for `plexgate status` (who answers for each address, on which interface, with
//! which MAC).

use std::fmt;
use std::net::Ipv4Addr;

use plexgate_wire::arp::EthernetAddress;

use super::config::AddressKind;

/// Counters since start.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    /// ARP frames handed to the runtime to send (replies and announcements).
    pub sent: u64,
    /// Requests answered.
    pub answered: u64,
    /// Gratuitous ARP announcements sent (takeover, agent move, defence, own
    /// addresses).
    pub announcements: u64,
    /// Frames ignored: malformed, spoofed or conflicting.
    pub ignored: u64,
    /// Of `ignored`: not parseable as ARP for Ethernet and IPv4.
    pub malformed: u64,
    /// Of `ignored`: impossible sender (multicast or zero MAC, multicast or
    /// broadcast IPv4 sender address).
    pub spoofed: u64,
    /// Of `ignored`: another host claimed an address this gateway answers for.
    pub conflicts: u64,
}

/// Something worth one log line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// This gateway now answers for `address` on `interface` with `mac`.
    Claimed {
        /// The address.
        address: Ipv4Addr,
        /// Agent interface.
        interface: String,
        /// MAC it is answered with.
        mac: EthernetAddress,
    },
    /// The agent of `address` moved (seed 000: the previous agent went down, or a
    /// preferred one came back).
    Moved {
        /// The address.
        address: Ipv4Addr,
        /// Previous agent.
        from: String,
        /// New agent.
        to: String,
        /// MAC it is now answered with.
        mac: EthernetAddress,
    },
    /// No longer answered by this gateway (standby, stop).
    Released {
        /// The address.
        address: Ipv4Addr,
    },
    /// Active, but no interface of its subnet is up: waits for one (seed 000).
    Waiting {
        /// The address.
        address: Ipv4Addr,
    },
    /// Seed 002: `failed` is down, so its address is announced and answered on
    /// `backup` with the backup's MAC.
    BackupTakeover {
        /// The failed interface's address.
        address: Ipv4Addr,
        /// The failed interface.
        failed: String,
        /// The interface that answers for it now.
        backup: String,
        /// The backup's MAC.
        mac: EthernetAddress,
    },
    /// Seed 002: `interface` is back and announces its own MAC again.
    BackupReturned {
        /// The interface's address.
        address: Ipv4Addr,
        /// The interface.
        interface: String,
    },
    /// Two interfaces were found on one network (an announcement sent on one
    /// arrived on the other).
    SharedNetwork {
        /// One interface.
        a: String,
        /// The other.
        b: String,
    },
    /// An interface's announcement no longer reaches the other: separate now.
    SeparateNetworks {
        /// One interface.
        a: String,
        /// The other.
        b: String,
    },
    /// Another host claims an address this gateway answers for. Logged once per
    /// address per `conflict_log_interval`; `suppressed` counts the conflicting
    /// frames since the previous event for this address.
    Conflict {
        /// The address.
        address: Ipv4Addr,
        /// Where it was seen.
        interface: String,
        /// The MAC that claims it.
        claimed_by: EthernetAddress,
        /// Conflicting frames not logged since the last event.
        suppressed: u64,
        /// Whether an announcement was sent to defend the address (RFC 5227 §2.4).
        defended: bool,
    },
}

impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Event::Claimed {
                address,
                interface,
                mac,
            } => write!(f, "l2: answering for {address} on {interface} as {mac}"),
            Event::Moved {
                address,
                from,
                to,
                mac,
            } => write!(f, "l2: {address} moved from {from} to {to} ({mac})"),
            Event::Released { address } => write!(f, "l2: no longer answering for {address}"),
            Event::Waiting { address } => write!(
                f,
                "l2: active for {address} but no interface of its subnet is up; waiting"
            ),
            Event::BackupTakeover {
                address,
                failed,
                backup,
                mac,
            } => write!(
                f,
                "l2: {failed} is down; {backup} answers for its address {address} as {mac}"
            ),
            Event::BackupReturned { address, interface } => {
                write!(f, "l2: {interface} is back and announces {address} again")
            }
            Event::SharedNetwork { a, b } => write!(f, "l2: {a} and {b} share a network"),
            Event::SeparateNetworks { a, b } => {
                write!(f, "l2: {a} and {b} no longer share a network")
            }
            Event::Conflict {
                address,
                interface,
                claimed_by,
                suppressed,
                defended,
            } => write!(
                f,
                "l2: address conflict: {claimed_by} on {interface} claims {address}, which this gateway owns ({suppressed} more conflicting frames since the last report{})",
                if *defended { "; defended" } else { "" }
            ),
        }
    }
}

/// Who answers ARP for an address on this gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answerer {
    /// plexgate, on its packet socket.
    Plexgate,
    /// The kernel (an interface's own address, on its own interface).
    Kernel,
    /// Nobody here (standby, or no interface up).
    Nobody,
}

/// The kind of address in a status row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusKind {
    /// An owned address of the configuration.
    Owned(AddressKind),
    /// An interface's own address (seed 002).
    Interface,
}

/// One address in the status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddressStatus {
    /// The address.
    pub address: Ipv4Addr,
    /// What it is.
    pub kind: StatusKind,
    /// This gateway is active for it (always true for interface addresses).
    pub active: bool,
    /// Who answers here.
    pub answerer: Answerer,
    /// The interface it is answered on.
    pub interface: Option<String>,
    /// The MAC it is answered with.
    pub mac: Option<EthernetAddress>,
    /// The MAC another host last announced or answered it with (the owner seen
    /// from a standby).
    pub seen_elsewhere: Option<EthernetAddress>,
}

/// One interface in the status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InterfaceStatus {
    /// Name.
    pub name: String,
    /// Own address.
    pub address: Ipv4Addr,
    /// Prefix length.
    pub prefix_len: u8,
    /// Up (and its MAC known).
    pub up: bool,
    /// MAC, once known.
    pub mac: Option<EthernetAddress>,
    /// Other interfaces found on the same network (seed 002).
    pub same_network: Vec<String>,
}

/// A snapshot for `plexgate status`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    /// Owned addresses, then interface addresses answered by a backup.
    pub addresses: Vec<AddressStatus>,
    /// Interfaces.
    pub interfaces: Vec<InterfaceStatus>,
    /// Counters.
    pub counters: Counters,
    /// The cluster MAC, in cluster MAC mode.
    pub cluster_mac: Option<EthernetAddress>,
}
