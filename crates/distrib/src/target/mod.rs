//! The target side (`plexgate target`, seed 001 figures 6 and 11).
//!
//! [`TargetStack`] receives GRE from the gateways of its site, each on its own
//! link, checks the link (anti-spoof) and that the sender routes the inner
//! packet's DVIPA, clamps the MSS of SYNs, and returns the inner packet for the
//! TUN. Replies read from the TUN (source = a DVIPA) go back over GRE to the
//! DVIPA's current routing gateway, or out directly for a connection known not
//! to use IPsec. It learns which DVIPAs it serves, and who owns each, from DVIPA
//! lists ([`control`]: ownership follows the highest epoch), reports listeners
//! (SRVSTAT) and connections (NEWCONN, CONNEND), and answers ConnQuery —
//! everything a (backup) gateway needs to rebuild its DPT and CRT.

use crate::cluster::{ClusterEndpoint, ClusterKey, Message, NewConnKind, Role};
use crate::counters::{Counters, DropReason, Snapshot};
use crate::crt::{CrtEntry, Origin, Timeouts};
use crate::dpt::{AnnounceGuard, DvipaConfig};
use crate::flow::{self, FlowKey, Proto, TcpFlags};
use crate::gre::{self, GreKey};
use crate::link::{LinkId, LinkTable, Node, NodeMap};
use crate::listeners::ListenerTracker;
use crate::mss::MssClamp;
use crate::{ClusterTransmit, Destination, NodeId};
use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::time::{Duration, Instant};

pub mod control;
#[cfg(test)]
mod tests;

pub use control::Ownership;

/// Where a packet read from the TUN goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TunRoute {
    /// GRE-encapsulate with `key` and send to `remote`, the routing gateway.
    ToGateway {
        /// The DVIPA's routing gateway.
        gateway: NodeId,
        /// Its bound outer address.
        remote: IpAddr,
        /// GRE key to write (this target's id; IPsec flag of the connection).
        key: GreKey,
    },
    /// A connection that does not use IPsec: send the packet out directly.
    Direct,
    /// Drop and (already) count.
    Drop(DropReason),
}

/// Configuration of a target stack.
#[derive(Clone, Debug)]
pub struct TargetConfig {
    /// This target's cluster id.
    pub id: NodeId,
    /// The site's cluster key.
    pub key: ClusterKey,
    /// First cluster sequence number (see [`ClusterEndpoint::new`]).
    pub first_seq: u64,
    /// MSS clamping.
    pub mss: MssClamp,
    /// Connection-table timeouts.
    pub timeouts: Timeouts,
    /// How often a Keepalive goes to every gateway.
    pub keepalive_every: Duration,
}

impl TargetConfig {
    /// Defaults for `id`.
    pub fn new(id: NodeId, key: ClusterKey, first_seq: u64) -> Self {
        TargetConfig {
            id,
            key,
            first_seq,
            mss: MssClamp::default(),
            timeouts: Timeouts::default(),
            keepalive_every: Duration::from_secs(2),
        }
    }
}

/// A target's distribution state.
#[derive(Debug)]
pub struct TargetStack {
    id: NodeId,
    cluster: ClusterEndpoint,
    links: LinkTable,
    served: Vec<DvipaConfig>,
    /// Per DVIPA: who owns it, by the highest epoch seen.
    owners: Vec<(IpAddr, Ownership)>,
    guard: AnnounceGuard,
    conns: HashMap<FlowKey, CrtEntry, ahash::RandomState>,
    listeners: ListenerTracker,
    mss: MssClamp,
    timeouts: Timeouts,
    outbox: VecDeque<ClusterTransmit>,
    counters: Counters,
    keepalive_every: Duration,
    /// When the connections were last swept for idle ones.
    swept_at: Option<Instant>,
    /// When the next Keepalive goes out.
    keepalive_at: Option<Instant>,
}

impl TargetStack {
    /// A target serving nothing yet.
    pub fn new(cfg: TargetConfig) -> Self {
        TargetStack {
            id: cfg.id,
            cluster: ClusterEndpoint::new(cfg.key, cfg.id, cfg.first_seq),
            links: LinkTable::new(),
            served: Vec::new(),
            owners: Vec::new(),
            guard: AnnounceGuard::default(),
            conns: HashMap::default(),
            listeners: ListenerTracker::default(),
            mss: cfg.mss,
            timeouts: cfg.timeouts,
            outbox: VecDeque::new(),
            counters: Counters::default(),
            keepalive_every: cfg.keepalive_every,
            swept_at: None,
            keepalive_at: None,
        }
    }

    /// This target's id.
    pub fn id(&self) -> NodeId {
        self.id
    }

    /// Bind a GRE link to a gateway at `remote` (the gateway is also entered in
    /// the cluster node map, on that link at that address).
    pub fn bind_link(&mut self, link: LinkId, gateway: NodeId, remote: IpAddr) {
        self.add_node(Node {
            id: gateway,
            role: Role::Gateway,
            name: String::new(),
            address: remote,
            link,
        });
    }

    /// Add a gateway of the site from policy: its GRE link (anti-spoof
    /// binding) and its cluster node entry. Every gateway gets its own link.
    pub fn add_node(&mut self, node: Node) {
        self.links.bind(node.link, node.id, node.address);
        self.cluster.nodes_mut().insert(node);
    }

    /// The gateways this target knows.
    pub fn nodes(&self) -> &NodeMap {
        self.cluster.nodes()
    }

    /// The link table.
    pub fn links(&self) -> &LinkTable {
        &self.links
    }

    /// DVIPAs this target serves (the daemon adds each as a local address on
    /// its TUN / loopback, not advertised).
    pub fn served(&self) -> &[DvipaConfig] {
        &self.served
    }

    fn served_dvipa(&self, a: IpAddr) -> Option<&DvipaConfig> {
        self.served.iter().find(|d| d.dvipa == a)
    }

    /// Who owns `dvipa`, as the highest epoch seen says.
    pub fn owner(&self, dvipa: IpAddr) -> Option<Ownership> {
        self.owners
            .iter()
            .find(|(d, _)| *d == dvipa)
            .map(|(_, o)| *o)
    }

    fn send(&mut self, to: NodeId, msg: &Message) {
        let bytes = self.cluster.seal(msg);
        self.outbox.push_back(ClusterTransmit {
            to: Destination::Node(to),
            bytes,
        });
    }

    /// Next cluster message to send, if any.
    pub fn poll_transmit(&mut self) -> Option<ClusterTransmit> {
        self.outbox.pop_front()
    }

    /// Check and unwrap a GRE packet that arrived on `link` from `outer_src`
    /// (figure 11). On success returns the inner packet — a sub-slice of
    /// `gre_packet`, MSS already clamped — to write into the TUN.
    pub fn receive_gre<'a>(
        &mut self,
        now: Instant,
        link: LinkId,
        outer_src: IpAddr,
        gre_packet: &'a mut [u8],
    ) -> Result<&'a mut [u8], DropReason> {
        let r = self.receive_gre_inner(now, link, outer_src, gre_packet);
        match r {
            Ok(range) => {
                self.counters.routed_in += 1;
                Ok(&mut gre_packet[range])
            }
            Err(e) => {
                self.counters.drop(e);
                Err(e)
            }
        }
    }

    fn receive_gre_inner(
        &mut self,
        now: Instant,
        link: LinkId,
        outer_src: IpAddr,
        gre_packet: &mut [u8],
    ) -> Result<std::ops::Range<usize>, DropReason> {
        let (key, off) = gre::decapsulate(gre_packet).map_err(|_| DropReason::Malformed)?;
        if !self.links.check(link, outer_src, key) {
            return Err(DropReason::Spoof);
        }
        let inner = &mut gre_packet[off..];
        let info = flow::parse(inner).map_err(|_| DropReason::Malformed)?;
        let d = self.served_dvipa(info.dst).ok_or(DropReason::NotDvipa)?;
        // Seed 001, figure 11, block 222: the sender must be the stack that
        // routes this DVIPA, not just any bound peer.
        if d.routing_gateway != key.sender {
            return Err(DropReason::Spoof);
        }
        if let Some(k) = info.inbound_key() {
            let flags = info.tcp_flags();
            match self.conns.get_mut(&k) {
                Some(e) => {
                    e.uses_ipsec |= key.ipsec;
                    if e.on_packet(flags, true, now) {
                        self.end_conn(&k);
                    }
                }
                None if !flags.has(TcpFlags::RST) => {
                    let origin = if k.proto == Proto::Udp || flags.is_initial_syn() {
                        Origin::Selected
                    } else {
                        Origin::Existing
                    };
                    self.conns.insert(
                        k,
                        CrtEntry::new(key.sender, k.proto, key.ipsec, origin, now),
                    );
                    self.counters.conns_opened += 1;
                }
                None => {}
            }
        }
        if self.mss.clamp(inner, &info) {
            self.counters.mss_clamped += 1;
        }
        Ok(off..off + info.end)
    }

    /// Decide where a packet read from the TUN goes (figure 6); clamps the MSS
    /// of SYN / SYN-ACK in place. A new connection opened by a local app (SYN
    /// or first UDP datagram from a DVIPA) is reported with NEWCONN.
    pub fn route_tun(&mut self, now: Instant, packet: &mut [u8]) -> TunRoute {
        let info = match flow::parse(packet) {
            Ok(i) => i,
            Err(_) => return self.drop_tun(DropReason::Malformed),
        };
        let Some(d) = self.served_dvipa(info.src) else {
            return self.drop_tun(DropReason::NotDvipa);
        };
        let gateway = d.routing_gateway;
        let Some(remote) = self.links.for_node(gateway).map(|(_, l)| l.remote) else {
            return self.drop_tun(DropReason::NoLink);
        };
        if self.mss.clamp(packet, &info) {
            self.counters.mss_clamped += 1;
        }
        let mut ipsec = true;
        if let Some(k) = info.outbound_key() {
            let flags = info.tcp_flags();
            match self.conns.get_mut(&k) {
                Some(e) => {
                    ipsec = e.uses_ipsec;
                    if e.on_packet(flags, false, now) {
                        self.end_conn(&k);
                    }
                }
                None if k.proto == Proto::Udp || flags.is_initial_syn() => {
                    self.conns.insert(
                        k,
                        CrtEntry::new(gateway, k.proto, true, Origin::OpenedByTarget, now),
                    );
                    self.counters.conns_opened += 1;
                    let m = Message::NewConn {
                        target: self.id,
                        conn: k,
                        kind: NewConnKind::Opened,
                        uses_ipsec: true,
                    };
                    self.send(gateway, &m);
                }
                None => {}
            }
        }
        self.counters.routed_out += 1;
        if ipsec {
            TunRoute::ToGateway {
                gateway,
                remote,
                key: GreKey {
                    sender: self.id,
                    ipsec: true,
                },
            }
        } else {
            TunRoute::Direct
        }
    }

    fn drop_tun(&mut self, r: DropReason) -> TunRoute {
        self.counters.drop(r);
        TunRoute::Drop(r)
    }

    fn end_conn(&mut self, k: &FlowKey) {
        if self.conns.remove(k).is_some() {
            self.counters.conns_closed += 1;
        }
    }

    /// Number of tracked connections.
    pub fn connection_count(&self) -> usize {
        self.conns.len()
    }

    /// Live counters.
    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// Counters and connection count.
    pub fn snapshot(&self) -> Snapshot {
        Snapshot::from_counters(&self.counters, self.conns.len() as u64, Vec::new())
    }
}
