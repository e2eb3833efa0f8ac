//! The target side (`plexgate target`, seed 001 figures 6 and 11).
//!
//! [`TargetStack`] receives GRE from routing gateways, checks the link
//! (anti-spoof) and that the sender routes the inner packet's DVIPA, clamps the
//! MSS of SYNs, and returns the inner packet for the TUN. Replies read from the
//! TUN (source = a DVIPA) go back over GRE to the DVIPA's current routing
//! gateway, or out directly for a connection known not to use IPsec. It learns
//! which DVIPAs it serves from DVIPA lists, reports listeners (SRVSTAT) and
//! connections (NEWCONN, CONNEND), and answers ConnQuery — everything a
//! (backup) gateway needs to rebuild its DPT and CRT.

use crate::cluster::{ClusterEndpoint, ClusterError, ClusterKey, Message, NewConnKind, Role};
use crate::counters::{Counters, DropReason, Snapshot};
use crate::crt::{CrtEntry, Origin, Timeouts};
use crate::distributor::cluster_drop_reason;
use crate::dpt::{AnnounceGuard, DvipaConfig};
use crate::flow::{self, FlowKey, Proto, TcpFlags};
use crate::gre::{self, GreKey};
use crate::link::{LinkId, LinkTable};
use crate::listeners::{self, ListenerTracker, ProcSocket, TCP_ESTABLISHED};
use crate::mss::MssClamp;
use crate::{ClusterTransmit, Destination, NodeId};
use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::time::Instant;

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
    guard: AnnounceGuard,
    conns: HashMap<FlowKey, CrtEntry, ahash::RandomState>,
    listeners: ListenerTracker,
    mss: MssClamp,
    timeouts: Timeouts,
    outbox: VecDeque<ClusterTransmit>,
    counters: Counters,
}

impl TargetStack {
    /// A target serving nothing yet.
    pub fn new(cfg: TargetConfig) -> Self {
        TargetStack {
            id: cfg.id,
            cluster: ClusterEndpoint::new(cfg.key, cfg.id, cfg.first_seq),
            links: LinkTable::new(),
            served: Vec::new(),
            guard: AnnounceGuard::default(),
            conns: HashMap::default(),
            listeners: ListenerTracker::default(),
            mss: cfg.mss,
            timeouts: cfg.timeouts,
            outbox: VecDeque::new(),
            counters: Counters::default(),
        }
    }

    /// This target's id.
    pub fn id(&self) -> NodeId {
        self.id
    }

    /// Bind a GRE link to a gateway at `remote`.
    pub fn bind_link(&mut self, link: LinkId, gateway: NodeId, remote: IpAddr) {
        self.links.bind(link, gateway, remote);
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

    /// Queue a Hello to every bound gateway (at start-up).
    pub fn hello(&mut self) {
        let gws: Vec<NodeId> = self.links.iter().map(|(_, l)| l.node).collect();
        for g in gws {
            self.send(
                g,
                &Message::Hello {
                    role: Role::Target,
                    link_up: true,
                },
            );
        }
    }

    /// Queue a Keepalive to every bound gateway (periodically).
    pub fn keepalive(&mut self) {
        let gws: Vec<(NodeId, bool)> = self.links.iter().map(|(_, l)| (l.node, l.up)).collect();
        for (g, up) in gws {
            self.send(g, &Message::Keepalive { link_up: up });
        }
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

    /// Authenticate and apply a cluster message from a gateway.
    pub fn handle_cluster(&mut self, now: Instant, bytes: &[u8]) -> Result<(), ClusterError> {
        let (sender, msg) = match self.cluster.open(bytes) {
            Ok(m) => m,
            Err(e) => {
                self.counters.drop(cluster_drop_reason(&e));
                return Err(e);
            }
        };
        self.counters.cluster_accepted += 1;
        match msg {
            Message::DvipaList(list) => {
                for cfg in list {
                    self.apply_dvipa(sender, cfg);
                }
            }
            Message::ConnQuery { dvipa } => self.report_conns(sender, dvipa),
            Message::Keepalive { link_up } | Message::Hello { link_up, .. } => {
                self.links.set_up(sender, link_up);
            }
            Message::SrvStat { .. } | Message::NewConn { .. } | Message::ConnEnd { .. } => {}
        }
        let _ = now;
        Ok(())
    }

    /// A DVIPA list entry from its routing gateway: serve it if this target
    /// is a candidate, and report listeners (SRVSTAT) and existing connections
    /// (NEWCONN) to that gateway — every time, because a list is what a
    /// starting, restarted or taking-over gateway sends to rebuild its DPT and
    /// CRT (figures 10, 14, 15). Entries naming another node as routing
    /// gateway than the sender, or from a sender that the first list for the
    /// DVIPA did not name as routing or backup gateway, are ignored (counted
    /// `not_candidate`).
    fn apply_dvipa(&mut self, sender: NodeId, cfg: DvipaConfig) {
        let dvipa = cfg.dvipa;
        let gw = cfg.routing_gateway;
        if !self.guard.admit(sender, &cfg) {
            self.counters.drop(DropReason::NotCandidate);
            return;
        }
        if cfg.targets.weight_of(self.id).is_none() {
            self.served.retain(|d| d.dvipa != dvipa);
            return;
        }
        match self.served.iter_mut().find(|d| d.dvipa == dvipa) {
            Some(d) => *d = cfg,
            None => self.served.push(cfg),
        }
        let ups: Vec<u16> = self
            .listeners
            .current()
            .iter()
            .filter(|(a, _)| *a == dvipa)
            .map(|(_, p)| *p)
            .collect();
        for port in ups {
            let m = Message::SrvStat {
                target: self.id,
                dvipa,
                port,
                listening: true,
            };
            self.send(gw, &m);
        }
        self.report_conns(gw, Some(dvipa));
    }

    fn report_conns(&mut self, to: NodeId, dvipa: Option<IpAddr>) {
        let list: Vec<(FlowKey, bool)> = self
            .conns
            .iter()
            .filter(|(k, _)| dvipa.is_none_or(|d| d == k.dvipa))
            .filter(|(k, _)| self.served_dvipa(k.dvipa).is_some())
            .map(|(k, e)| (*k, e.uses_ipsec))
            .collect();
        for (conn, uses_ipsec) in list {
            let m = Message::NewConn {
                target: self.id,
                conn,
                kind: NewConnKind::Existing,
                uses_ipsec,
            };
            self.send(to, &m);
        }
    }

    /// Feed the current TCP sockets (from [`listeners::read_listeners`]):
    /// queues SRVSTAT for every (DVIPA, port) whose listening state changed,
    /// to the DVIPA's routing gateway. Returns the number of changes.
    pub fn update_listeners(&mut self, sockets: &[ProcSocket]) -> usize {
        let now = listeners::listening_on(sockets, self.served.iter().map(|d| (d.dvipa, &d.ports)));
        let changes = self.listeners.diff(now);
        for (dvipa, port, listening) in &changes {
            let Some(gw) = self.served_dvipa(*dvipa).map(|d| d.routing_gateway) else {
                continue;
            };
            let m = Message::SrvStat {
                target: self.id,
                dvipa: *dvipa,
                port: *port,
                listening: *listening,
            };
            self.send(gw, &m);
        }
        changes.len()
    }

    /// Learn established connections on served DVIPA ports from the kernel's
    /// socket list (after a restart of the target daemon) and report the new
    /// ones with NEWCONN (existing; IPsec assumed, so replies use the gateway).
    pub fn learn_established(&mut self, now: Instant, sockets: &[ProcSocket]) -> usize {
        let mut n = 0;
        for s in sockets.iter().filter(|s| s.state == TCP_ESTABLISHED) {
            // Every connection on a DVIPA, distributed port or not: one an
            // app opened from an ephemeral port needs the gateway's CRT too.
            let Some(d) = self.served_dvipa(s.local.ip()) else {
                continue;
            };
            let gw = d.routing_gateway;
            let k = FlowKey {
                client: s.remote.ip(),
                client_port: s.remote.port(),
                dvipa: s.local.ip(),
                dvipa_port: s.local.port(),
                proto: Proto::Tcp,
            };
            if self.conns.contains_key(&k) {
                continue;
            }
            self.conns.insert(
                k,
                CrtEntry::new(gw, Proto::Tcp, true, Origin::Existing, now),
            );
            let m = Message::NewConn {
                target: self.id,
                conn: k,
                kind: NewConnKind::Existing,
                uses_ipsec: true,
            };
            self.send(gw, &m);
            n += 1;
        }
        n
    }

    /// Expire idle connections and report each with CONNEND. Returns how many.
    pub fn handle_timeout(&mut self, now: Instant) -> usize {
        let t = self.timeouts;
        let gone: Vec<FlowKey> = self
            .conns
            .iter()
            .filter(|(_, e)| e.expired(now, &t))
            .map(|(k, _)| *k)
            .collect();
        for k in &gone {
            self.end_conn(k);
            if let Some(gw) = self.served_dvipa(k.dvipa).map(|d| d.routing_gateway) {
                let m = Message::ConnEnd {
                    target: self.id,
                    conn: *k,
                };
                self.send(gw, &m);
            }
        }
        gone.len()
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::seal_with;
    use crate::dpt::{Algorithm, PortSet, TargetSet};
    use crate::listeners::parse_proc_net_tcp;

    const TCP: &str = include_str!("../tests/data/proc_net_tcp.txt");

    fn key() -> ClusterKey {
        ClusterKey::new(b"unit-test-key")
    }

    /// A target serving 127.0.0.5 (the address bound in the captured
    /// /proc/net/tcp) on port 8099, routed by gateway 1.
    fn stack() -> TargetStack {
        let mut t = TargetStack::new(TargetConfig::new(NodeId(11), key(), 1));
        t.bind_link(LinkId(1), NodeId(1), IpAddr::from([10, 0, 0, 1]));
        let cfg = DvipaConfig {
            dvipa: IpAddr::from([127, 0, 0, 5]),
            ports: PortSet::List(vec![8099]),
            targets: TargetSet::All,
            algorithm: Algorithm::RoundRobin,
            routing_gateway: NodeId(1),
            backups: vec![],
        };
        let m = seal_with(&key(), NodeId(1), 1, &Message::DvipaList(vec![cfg]));
        t.handle_cluster(Instant::now(), &m).unwrap();
        t
    }

    fn open_all(t: &mut TargetStack) -> Vec<(NodeId, Message)> {
        let mut rx = ClusterEndpoint::new(key(), NodeId(1), 1);
        let mut v = Vec::new();
        while let Some(tx) = t.poll_transmit() {
            let Destination::Node(to) = tx.to else {
                panic!("targets never broadcast")
            };
            v.push((to, rx.open(&tx.bytes).unwrap().1));
        }
        v
    }

    #[test]
    fn srvstat_and_newconn_from_captured_proc_text() {
        let mut t = stack();
        // The DVIPA list itself triggers nothing yet: no listener known.
        assert!(open_all(&mut t).is_empty());
        let socks = parse_proc_net_tcp(TCP).unwrap();
        assert_eq!(t.update_listeners(&socks), 1);
        assert_eq!(t.learn_established(Instant::now(), &socks), 1);
        let dvipa = IpAddr::from([127, 0, 0, 5]);
        let msgs = open_all(&mut t);
        assert_eq!(
            msgs[0],
            (
                NodeId(1),
                Message::SrvStat {
                    target: NodeId(11),
                    dvipa,
                    port: 8099,
                    listening: true
                }
            )
        );
        assert_eq!(
            msgs[1].1,
            Message::NewConn {
                target: NodeId(11),
                conn: FlowKey {
                    client: IpAddr::from([127, 0, 0, 1]),
                    client_port: 33108,
                    dvipa,
                    dvipa_port: 8099,
                    proto: Proto::Tcp,
                },
                kind: NewConnKind::Existing,
                uses_ipsec: true,
            }
        );
        // Nothing changed: nothing sent. The server goes away: SRVSTAT down.
        assert_eq!(t.update_listeners(&socks), 0);
        assert_eq!(t.update_listeners(&[]), 1);
        assert!(matches!(
            open_all(&mut t)[0].1,
            Message::SrvStat {
                listening: false,
                ..
            }
        ));
        // A ConnQuery is answered with the known connection.
        let q = seal_with(&key(), NodeId(1), 2, &Message::ConnQuery { dvipa: None });
        t.handle_cluster(Instant::now(), &q).unwrap();
        assert!(matches!(
            open_all(&mut t)[..],
            [(NodeId(1), Message::NewConn { .. })]
        ));
    }

    #[test]
    fn tun_traffic_not_from_a_dvipa_is_dropped() {
        let mut t = stack();
        let mut p = hex::decode(concat!(
            "4500002800000000400600000a0000020a000001",
            "1fa3815400000001000000005010ffff00000000"
        ))
        .unwrap();
        assert_eq!(
            t.route_tun(Instant::now(), &mut p),
            TunRoute::Drop(DropReason::NotDvipa)
        );
        // Same packet from the DVIPA: goes to the gateway (unknown connection).
        p[12..16].copy_from_slice(&[127, 0, 0, 5]);
        assert!(matches!(
            t.route_tun(Instant::now(), &mut p),
            TunRoute::ToGateway {
                gateway: NodeId(1),
                ..
            }
        ));
        assert_eq!(t.snapshot().drops(DropReason::NotDvipa), 1);
    }
}
