//! # plexgate-distrib — distribution of DVIPA connections (sans-IO)
//!
//! A *DVIPA* (distributed virtual IP address) is the inner address of a server
//! pool. The *routing gateway* that owns it spreads new connections over the
//! *targets* that have an application listening (the *DPT*, destination port
//! table), remembers where each connection went (the *CRT*, current routing
//! table) and carries the traffic to the targets over GRE. Each target runs a
//! [`target::TargetStack`] that checks the GRE link (anti-spoof), hands the inner
//! packet to its TUN and sends replies back. Gateways and targets talk over an
//! authenticated cluster control channel ([`cluster`]) from which a backup
//! gateway rebuilds DPT and CRT on takeover. Both sides know the cluster from
//! policy ([`link::NodeMap`]: every node's id, role, address and link): a
//! target accepts every gateway of its site, each on its own link, and follows
//! the gateway with the highest ownership epoch for each DVIPA.
//!
//! Everything here is sans-IO, as in quinn-proto: functions take `(now, bytes)`
//! and return a decision; the daemon owns sockets, TUN devices and timers.
//!
//! The ideas follow seed 001 (IBM Sysplex Distributor with sysplex-wide security
//! associations), figures 5A, 5B, 6 and 10-13.
//!
//! ```
//! use plexgate_distrib::cluster::{seal_with, Message};
//! use plexgate_distrib::dpt::{Algorithm, DvipaConfig, PortSet, TargetSet};
//! use plexgate_distrib::{gre, ClusterKey, Distributor, DistributorConfig, LinkId, NodeId, Route};
//! use std::time::Instant;
//!
//! let key = ClusterKey::new(b"site key bytes from keys/");
//! let mut gw = Distributor::new(DistributorConfig::new(NodeId(1), key.clone(), 1));
//! gw.bind_link(LinkId(7), NodeId(7), "10.0.0.7".parse().unwrap());
//! gw.configure_dvipa(DvipaConfig {
//!     dvipa: "198.51.100.7".parse().unwrap(),
//!     ports: PortSet::List(vec![80]),
//!     targets: TargetSet::All,
//!     algorithm: Algorithm::RoundRobin,
//!     routing_gateway: NodeId(1),
//!     backups: vec![],
//! });
//! let list = gw.poll_transmit().unwrap(); // DvipaList broadcast for the targets
//! assert!(gw.poll_transmit().is_none());
//! # let _ = list;
//! // Target 7 reports its listener (normally sealed by its TargetStack).
//! let srvstat = Message::SrvStat {
//!     target: NodeId(7),
//!     dvipa: "198.51.100.7".parse().unwrap(),
//!     port: 80,
//!     listening: true,
//! };
//! gw.handle_cluster(Instant::now(), &seal_with(&key, NodeId(7), 1, &srvstat)).unwrap();
//!
//! // A decrypted TCP SYN 192.0.2.1:1234 -> 198.51.100.7:80.
//! let syn = [
//!     0x45, 0, 0, 40, 0, 0, 0, 0, 64, 6, 0, 0, 192, 0, 2, 1, 198, 51, 100, 7, //
//!     0x04, 0xd2, 0, 80, 0, 0, 0, 1, 0, 0, 0, 0, 0x50, 0x02, 0xff, 0xff, 0, 0, 0, 0,
//! ];
//! match gw.route_inbound(Instant::now(), &syn, true) {
//!     Route::ToTarget { target, remote, key } => {
//!         assert_eq!(target, NodeId(7));
//!         let mut out = [0u8; 64];
//!         let n = gre::encapsulate(key, &syn, &mut out).unwrap();
//!         assert_eq!(n, 48); // send out[..n] to `remote` as IP protocol 47
//!         # let _ = remote;
//!     }
//!     other => panic!("{other:?}"),
//! }
//! ```
#![warn(missing_docs)]
#![forbid(unsafe_code)]

pub mod cluster;
pub mod counters;
pub mod crt;
pub mod distributor;
pub mod dpt;
pub mod flow;
pub mod gre;
pub mod link;
pub mod listeners;
pub mod mss;
pub mod target;

pub use cluster::{Announcement, ClusterError, ClusterKey, Message, Role};
pub use counters::{Counters, DropReason, Snapshot};
pub use crt::{ConnState, Crt, CrtEntry, Timeouts};
pub use distributor::{
    Distributor, DistributorConfig, FromTarget, InboundFlowCache, Outbound, Route,
};
pub use dpt::{Algorithm, Dpt, PortSet, TargetSet};
pub use flow::{FlowKey, PacketError, PacketInfo, Proto};
pub use gre::{GreError, GreKey};
pub use link::{Arrival, LinkId, LinkTable, Node, NodeMap};
pub use target::{Ownership, TargetConfig, TargetStack, TunRoute};

use std::fmt;

/// Identity of a cluster member (gateway or target), like an XCF address in
/// the seed. It travels in the GRE key (31 bits, see [`gre::GreKey`]) and in
/// every cluster message, so it must be below `2^31`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId(pub u32);

impl NodeId {
    /// Largest usable id: the GRE key keeps one bit for the IPsec flag.
    pub const MAX: u32 = 0x7FFF_FFFF;
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "node{}", self.0)
    }
}

/// Where a cluster control message should go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Destination {
    /// Every known peer (the daemon sends it to each link's remote address).
    Broadcast,
    /// One peer.
    Node(NodeId),
}

/// A sealed cluster message waiting to be sent by the daemon.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterTransmit {
    /// Recipient.
    pub to: Destination,
    /// Authenticated wire bytes (see [`cluster`] for the layout).
    pub bytes: Vec<u8>,
}
