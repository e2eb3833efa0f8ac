//! Whole-cluster scenario, in memory and deterministic: a routing gateway, a
//! backup gateway and three targets exchange cluster messages and GRE packets
//! through plain function calls, with time under the test's control.

use etherparse::{PacketBuilder, TcpOptionElement};
use plexgate_distrib::cluster::{Announcement, ClusterEndpoint, Message};
use plexgate_distrib::dpt::{Algorithm, DvipaConfig, PortSet, TargetSet};
use plexgate_distrib::gre::{self, GreKey};
use plexgate_distrib::listeners::{ProcSocket, TCP_LISTEN};
use plexgate_distrib::{
    ClusterError, ClusterKey, ClusterTransmit, Destination, Distributor, DistributorConfig,
    DropReason, FromTarget, LinkId, NodeId, Route, TargetConfig, TargetStack, TunRoute,
};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

const GW: NodeId = NodeId(1);
const BACKUP: NodeId = NodeId(2);
const T: [NodeId; 3] = [NodeId(11), NodeId(12), NodeId(13)];
const SITE_KEY: &[u8] = b"site-a cluster key, test only 0123456789";

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}
fn addr_of(n: NodeId) -> IpAddr {
    IpAddr::from([10, 0, 0, n.0 as u8])
}
fn dvipa() -> IpAddr {
    ip("198.51.100.7")
}
fn dvipa6() -> IpAddr {
    ip("2001:db8:100::7")
}

struct Cluster {
    now: Instant,
    gw: Distributor,
    backup: Distributor,
    targets: Vec<TargetStack>,
    /// Nodes that no longer receive anything.
    dead: Vec<NodeId>,
}

fn dvipa_cfg(addr: IpAddr, alg: Algorithm, weights: [u16; 3]) -> DvipaConfig {
    DvipaConfig {
        dvipa: addr,
        ports: PortSet::List(vec![80, 53]),
        targets: TargetSet::List(T.iter().copied().zip(weights).collect()),
        algorithm: alg,
        routing_gateway: GW,
        backups: vec![(BACKUP, 100)],
    }
}

fn listen(addrs: &[&str]) -> Vec<ProcSocket> {
    addrs
        .iter()
        .map(|a| ProcSocket {
            local: a.parse::<SocketAddr>().unwrap(),
            remote: "0.0.0.0:0".parse().unwrap(),
            state: TCP_LISTEN,
        })
        .collect()
}

impl Cluster {
    fn new(alg: Algorithm, weights: [u16; 3]) -> Cluster {
        let key = ClusterKey::new(SITE_KEY);
        let mut gw = Distributor::new(DistributorConfig::new(GW, key.clone(), 1_000));
        let mut backup = Distributor::new(DistributorConfig::new(BACKUP, key.clone(), 5_000));
        let mut targets = Vec::new();
        for (i, t) in T.iter().enumerate() {
            gw.bind_link(LinkId(t.0), *t, addr_of(*t));
            backup.bind_link(LinkId(t.0), *t, addr_of(*t));
            let mut ts = TargetStack::new(TargetConfig::new(*t, key.clone(), 100 * (i as u64 + 1)));
            ts.bind_link(LinkId(1), GW, addr_of(GW));
            ts.bind_link(LinkId(2), BACKUP, addr_of(BACKUP));
            targets.push(ts);
        }
        let mut c = Cluster {
            now: Instant::now(),
            gw,
            backup,
            targets,
            dead: Vec::new(),
        };
        // Flow 1: policy on both gateways, the routing one announces.
        c.gw.configure_dvipa(dvipa_cfg(dvipa(), alg, weights));
        c.gw.configure_dvipa(dvipa_cfg(dvipa6(), alg, weights));
        c.backup.configure_dvipa(dvipa_cfg(dvipa(), alg, weights));
        c.backup.configure_dvipa(dvipa_cfg(dvipa6(), alg, weights));
        c.pump();
        for ts in &c.targets {
            assert_eq!(ts.served().len(), 2);
        }
        // Every target listens on port 80 of the DVIPA (one of them by
        // wildcard) and on the IPv6 DVIPA.
        let socks = [
            listen(&["198.51.100.7:80", "[2001:db8:100::7]:80"]),
            listen(&["0.0.0.0:80", "[2001:db8:100::7]:80"]),
            listen(&[
                "198.51.100.7:80",
                "[2001:db8:100::7]:80",
                "198.51.100.7:9999",
            ]),
        ];
        for (ts, s) in c.targets.iter_mut().zip(socks.iter()) {
            assert_eq!(ts.update_listeners(s), 2);
        }
        c.pump();
        c
    }

    /// Deliver cluster messages until every outbox is empty.
    fn pump(&mut self) {
        loop {
            let mut msgs: Vec<(NodeId, ClusterTransmit)> = Vec::new();
            while let Some(m) = self.gw.poll_transmit() {
                msgs.push((GW, m));
            }
            while let Some(m) = self.backup.poll_transmit() {
                msgs.push((BACKUP, m));
            }
            for ts in &mut self.targets {
                while let Some(m) = ts.poll_transmit() {
                    msgs.push((ts.id(), m));
                }
            }
            if msgs.is_empty() {
                return;
            }
            for (from, m) in msgs {
                let now = self.now;
                let deliver = |to: NodeId, c: &mut Cluster| {
                    if c.dead.contains(&to) {
                        return;
                    }
                    let r = if to == GW {
                        c.gw.handle_cluster(now, &m.bytes)
                    } else if to == BACKUP {
                        c.backup.handle_cluster(now, &m.bytes)
                    } else if let Some(ts) = c.targets.iter_mut().find(|t| t.id() == to) {
                        ts.handle_cluster(now, &m.bytes)
                    } else {
                        Ok(())
                    };
                    // Outside the sender's window (a restarted node): held
                    // until the sender answers the challenge, pumped next.
                    if !matches!(r, Ok(()) | Err(ClusterError::Unsynced { .. })) {
                        panic!("{to}: {r:?}");
                    }
                };
                match m.to {
                    Destination::Node(n) => deliver(n, self),
                    Destination::Broadcast => {
                        for n in [GW, BACKUP, T[0], T[1], T[2]] {
                            if n != from {
                                deliver(n, self);
                            }
                        }
                    }
                }
            }
        }
    }

    fn target(&mut self, n: NodeId) -> &mut TargetStack {
        self.targets.iter_mut().find(|t| t.id() == n).unwrap()
    }

    /// Send a client packet through a gateway and, if routed, through GRE
    /// into the chosen target. Returns the target that received it.
    fn inbound(&mut self, via_backup: bool, pkt: &[u8]) -> Result<NodeId, DropReason> {
        let now = self.now;
        let (gw_id, route) = if via_backup {
            (BACKUP, self.backup.route_inbound(now, pkt, true))
        } else {
            (GW, self.gw.route_inbound(now, pkt, true))
        };
        let (target, remote, key) = match route {
            Route::ToTarget {
                target,
                remote,
                key,
            } => (target, remote, key),
            Route::Drop(r) => return Err(r),
            Route::Local => panic!("unexpected Local"),
        };
        assert_eq!(remote, addr_of(target));
        assert_eq!(
            key,
            GreKey {
                sender: gw_id,
                ipsec: true
            }
        );
        let mut buf = vec![0u8; pkt.len() + gre::GRE_HEADER_LEN];
        gre::encapsulate(key, pkt, &mut buf).unwrap();
        let link = LinkId(gw_id.0);
        let inner = self
            .target(target)
            .receive_gre(now, link, addr_of(gw_id), &mut buf)?;
        assert_eq!(inner.len(), pkt.len());
        Ok(target)
    }

    /// A reply from `target`'s TUN back through GRE to its routing gateway
    /// (for a connection set up under IPsec).
    fn reply(&mut self, target: NodeId, pkt: &[u8]) -> Result<NodeId, DropReason> {
        let (gw, uses_ipsec) = self.reply_raw(target, pkt)?;
        assert!(uses_ipsec);
        Ok(gw)
    }

    fn reply_raw(&mut self, target: NodeId, pkt: &[u8]) -> Result<(NodeId, bool), DropReason> {
        let now = self.now;
        let mut p = pkt.to_vec();
        let (gw_id, remote, key) = match self.target(target).route_tun(now, &mut p) {
            TunRoute::ToGateway {
                gateway,
                remote,
                key,
            } => (gateway, remote, key),
            TunRoute::Drop(r) => return Err(r),
            TunRoute::Direct => panic!("unexpected Direct"),
        };
        assert_eq!(remote, addr_of(gw_id));
        let mut buf = vec![0u8; p.len() + gre::GRE_HEADER_LEN];
        gre::encapsulate(key, &p, &mut buf).unwrap();
        let g = if gw_id == GW {
            &mut self.gw
        } else {
            &mut self.backup
        };
        match g.receive_gre(now, LinkId(target.0), addr_of(target), &buf) {
            FromTarget::ToClient {
                target: t,
                uses_ipsec,
                ..
            } => {
                assert_eq!(t, target);
                Ok((gw_id, uses_ipsec))
            }
            FromTarget::Drop(r) => Err(r),
        }
    }
}

fn client(i: u32) -> IpAddr {
    IpAddr::from([192, 0, 2, 1 + (i % 200) as u8])
}

fn tcp(
    src: IpAddr,
    sport: u16,
    dst: IpAddr,
    dport: u16,
    f: impl FnOnce(
        etherparse::PacketBuilderStep<etherparse::TcpHeader>,
    ) -> etherparse::PacketBuilderStep<etherparse::TcpHeader>,
) -> Vec<u8> {
    let b = match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => PacketBuilder::ipv4(s.octets(), d.octets(), 64),
        (IpAddr::V6(s), IpAddr::V6(d)) => PacketBuilder::ipv6(s.octets(), d.octets(), 64),
        _ => panic!("mixed families"),
    };
    let b = f(b.tcp(sport, dport, 1000, 65535));
    let mut v = Vec::new();
    b.write(&mut v, b"").unwrap();
    v
}

fn syn(i: u32) -> Vec<u8> {
    tcp(client(i), 20000 + i as u16, dvipa(), 80, |b| {
        b.syn()
            .options(&[TcpOptionElement::MaximumSegmentSize(1460)])
            .unwrap()
    })
}
fn ack(i: u32) -> Vec<u8> {
    tcp(client(i), 20000 + i as u16, dvipa(), 80, |b| b.ack(1))
}
fn fin_in(i: u32) -> Vec<u8> {
    tcp(client(i), 20000 + i as u16, dvipa(), 80, |b| b.ack(1).fin())
}
fn rst_in(i: u32) -> Vec<u8> {
    tcp(client(i), 20000 + i as u16, dvipa(), 80, |b| b.rst())
}
fn synack_out(i: u32) -> Vec<u8> {
    tcp(dvipa(), 80, client(i), 20000 + i as u16, |b| {
        b.syn()
            .ack(1001)
            .options(&[TcpOptionElement::MaximumSegmentSize(1460)])
            .unwrap()
    })
}
fn fin_out(i: u32) -> Vec<u8> {
    tcp(dvipa(), 80, client(i), 20000 + i as u16, |b| b.ack(1).fin())
}

fn count(targets: &[NodeId]) -> [usize; 3] {
    let mut c = [0; 3];
    for t in targets {
        c[T.iter().position(|x| x == t).unwrap()] += 1;
    }
    c
}

#[test]
fn round_robin_300_syns_within_one() {
    let mut c = Cluster::new(Algorithm::RoundRobin, [1, 1, 1]);
    let got: Vec<NodeId> = (0..300)
        .map(|i| c.inbound(false, &syn(i)).unwrap())
        .collect();
    let n = count(&got);
    assert!(
        n.iter().max().unwrap() - n.iter().min().unwrap() <= 1,
        "{n:?}"
    );
    assert_eq!(n.iter().sum::<usize>(), 300);
    assert_eq!(c.gw.crt().len(), 300);
    let snap = c.gw.snapshot();
    assert_eq!(snap.connections, 300);
    assert_eq!(
        snap.targets
            .iter()
            .map(|t| t.connections)
            .collect::<Vec<_>>(),
        vec![100, 100, 100]
    );
    // Each target saw its SYNs and clamped their MSS for the ESP+GRE overhead.
    for ts in &c.targets {
        assert_eq!(ts.counters().mss_clamped, 100);
        assert_eq!(ts.connection_count(), 100);
    }
    // Follow-up packets stick to their target; replies go back to the gateway.
    for i in 0..300 {
        assert_eq!(c.inbound(false, &ack(i)).unwrap(), got[i as usize]);
        assert_eq!(c.reply(got[i as usize], &synack_out(i)).unwrap(), GW);
    }
    // Something not to a DVIPA is local; a non-distributed port too.
    let other = tcp(client(1), 1, ip("203.0.113.1"), 80, |b| b.syn());
    assert_eq!(c.gw.route_inbound(c.now, &other, true), Route::Local);
    let port22 = tcp(client(1), 1, dvipa(), 22, |b| b.syn());
    assert_eq!(c.gw.route_inbound(c.now, &port22, true), Route::Local);
}

#[test]
fn ipv6_dvipa_is_distributed() {
    let mut c = Cluster::new(Algorithm::RoundRobin, [1, 1, 1]);
    let mut got = Vec::new();
    for i in 0..6u16 {
        let cl: IpAddr = format!("2001:db8:5::{}", i + 1).parse().unwrap();
        let p = tcp(cl, 30000 + i, dvipa6(), 80, |b| b.syn());
        got.push(c.inbound(false, &p).unwrap());
    }
    assert_eq!(count(&got), [2, 2, 2]);
}

#[test]
fn weighted_round_robin_3_2_1_exact() {
    let mut c = Cluster::new(Algorithm::WeightedRoundRobin, [3, 2, 1]);
    let first: Vec<NodeId> = (0..6).map(|i| c.inbound(false, &syn(i)).unwrap()).collect();
    assert_eq!(count(&first), [3, 2, 1]);
    let rest: Vec<NodeId> = (6..600)
        .map(|i| c.inbound(false, &syn(i)).unwrap())
        .collect();
    assert_eq!(count(&rest), [297, 198, 99]);
}

#[test]
fn least_connections_prefers_the_idle_target() {
    let mut c = Cluster::new(Algorithm::LeastConnections, [1, 1, 1]);
    let got: Vec<NodeId> = (0..3).map(|i| c.inbound(false, &syn(i)).unwrap()).collect();
    assert_eq!(count(&got), [1, 1, 1]);
    // Close the connection on whichever target got client 1.
    c.inbound(false, &rst_in(1)).unwrap();
    assert_eq!(c.inbound(false, &syn(3)).unwrap(), got[1]);
}

#[test]
fn drained_target_keeps_existing_connections() {
    let mut c = Cluster::new(Algorithm::RoundRobin, [1, 1, 1]);
    let got: Vec<NodeId> = (0..3).map(|i| c.inbound(false, &syn(i)).unwrap()).collect();
    let drained = got[1];
    c.gw.set_weight(dvipa(), drained, 0);
    let later: Vec<NodeId> = (3..103)
        .map(|i| c.inbound(false, &syn(i)).unwrap())
        .collect();
    assert!(!later.contains(&drained));
    assert_eq!(count(&later).iter().filter(|n| **n == 50).count(), 2);
    // Its open connection is still routed to it.
    for _ in 0..5 {
        assert_eq!(c.inbound(false, &ack(1)).unwrap(), drained);
    }
}

#[test]
fn listener_down_moves_new_connections() {
    let mut c = Cluster::new(Algorithm::RoundRobin, [1, 1, 1]);
    let t3 = T[2];
    // Target 3's server on port 80 stops (only its other sockets remain).
    let changes = c
        .target(t3)
        .update_listeners(&listen(&["[2001:db8:100::7]:80", "198.51.100.7:9999"]));
    assert_eq!(changes, 1);
    c.pump();
    let got: Vec<NodeId> = (0..100)
        .map(|i| c.inbound(false, &syn(i)).unwrap())
        .collect();
    assert_eq!(count(&got), [50, 50, 0]);
    // Nobody listening at all: NoListener.
    for n in [T[0], T[1]] {
        c.target(n).update_listeners(&[]);
    }
    c.pump();
    assert_eq!(c.inbound(false, &syn(500)), Err(DropReason::NoListener));
    assert_eq!(c.gw.counters().drops(DropReason::NoListener), 1);
}

#[test]
fn forged_gre_is_dropped_and_counted() {
    let mut c = Cluster::new(Algorithm::RoundRobin, [1, 1, 1]);
    let t0 = c.inbound(false, &syn(0)).unwrap();
    let other = *T.iter().find(|t| **t != t0).unwrap();
    let reply = synack_out(0);
    let now = c.now;
    let mut buf = vec![0u8; reply.len() + 8];
    // Another target's key, sent from t0's own link and address.
    gre::encapsulate(
        GreKey {
            sender: other,
            ipsec: true,
        },
        &reply,
        &mut buf,
    )
    .unwrap();
    assert_eq!(
        c.gw.receive_gre(now, LinkId(t0.0), addr_of(t0), &buf),
        FromTarget::Drop(DropReason::Spoof)
    );
    // Right key, but from an address that is not bound to that link.
    gre::encapsulate(
        GreKey {
            sender: t0,
            ipsec: true,
        },
        &reply,
        &mut buf,
    )
    .unwrap();
    assert_eq!(
        c.gw.receive_gre(now, LinkId(t0.0), ip("10.9.9.9"), &buf),
        FromTarget::Drop(DropReason::Spoof)
    );
    // A target answering for a connection that another target owns.
    gre::encapsulate(
        GreKey {
            sender: other,
            ipsec: true,
        },
        &reply,
        &mut buf,
    )
    .unwrap();
    assert_eq!(
        c.gw.receive_gre(now, LinkId(other.0), addr_of(other), &buf),
        FromTarget::Drop(DropReason::Spoof)
    );
    assert_eq!(c.gw.counters().drops(DropReason::Spoof), 3);
    // Target side: GRE from the backup (bound link, but not the DVIPA's
    // routing gateway) and GRE on the gateway's link with the backup's key.
    let p = syn(7);
    let mut buf = vec![0u8; p.len() + 8];
    gre::encapsulate(
        GreKey {
            sender: BACKUP,
            ipsec: true,
        },
        &p,
        &mut buf,
    )
    .unwrap();
    let ts = c.target(t0);
    assert_eq!(
        ts.receive_gre(now, LinkId(2), addr_of(BACKUP), &mut buf.clone()),
        Err(DropReason::Spoof)
    );
    assert_eq!(
        ts.receive_gre(now, LinkId(1), addr_of(GW), &mut buf),
        Err(DropReason::Spoof)
    );
    assert_eq!(ts.counters().drops(DropReason::Spoof), 2);
    // The genuine reply still passes.
    assert_eq!(c.reply(t0, &reply), Ok(GW));
}

#[test]
fn fin_rst_and_idle_remove_entries() {
    let mut c = Cluster::new(Algorithm::RoundRobin, [1, 1, 1]);
    let t: Vec<NodeId> = (0..4).map(|i| c.inbound(false, &syn(i)).unwrap()).collect();
    for i in 0..4 {
        c.inbound(false, &ack(i)).unwrap();
    }
    // 0: FIN both ways, then the linger time.
    c.inbound(false, &fin_in(0)).unwrap();
    c.reply(t[0], &fin_out(0)).unwrap();
    c.inbound(false, &ack(0)).unwrap(); // last ACK still routed during linger
    assert_eq!(c.gw.crt().len(), 4);
    // 1: RST from the client ends it at once.
    c.inbound(false, &rst_in(1)).unwrap();
    assert_eq!(c.gw.crt().len(), 3);
    assert_eq!(c.inbound(false, &ack(1)), Err(DropReason::NoConnection));
    c.now += Duration::from_secs(11);
    // 3 keeps talking; 2 stays idle.
    c.inbound(false, &ack(3)).unwrap();
    assert_eq!(c.gw.handle_timeout(c.now), 1); // the closed one
    assert_eq!(c.gw.crt().len(), 2);
    c.now += Duration::from_secs(3595);
    assert_eq!(c.gw.handle_timeout(c.now), 1); // 2 idle for an hour
    assert!(c.gw.crt().get(&key(3)).is_some());
    let s = c.gw.snapshot();
    assert_eq!((s.conns_opened, s.conns_closed), (4, 3));
    // Targets forget theirs and report CONNEND, which the gateway applies.
    c.now += Duration::from_secs(3600);
    let ended: usize = c
        .targets
        .iter_mut()
        .map(|ts| ts.handle_timeout(c.now))
        .sum();
    // The target never ran its timer: 0 (closed), 2 and 3 (idle) go now; 1 went
    // with its RST. CONNEND for 0 and 2 is a no-op at the gateway.
    assert_eq!(ended, 3);
    c.pump();
    assert!(c.gw.crt().is_empty());
}

fn key(i: u32) -> plexgate_distrib::FlowKey {
    plexgate_distrib::FlowKey {
        client: client(i),
        client_port: 20000 + i as u16,
        dvipa: dvipa(),
        dvipa_port: 80,
        proto: plexgate_distrib::Proto::Tcp,
    }
}

#[test]
fn udp_flows_are_selected_and_expire() {
    let mut c = Cluster::new(Algorithm::RoundRobin, [1, 1, 1]);
    for t in &mut c.targets {
        t.update_listeners(&listen(&["0.0.0.0:80", "[::]:80"]));
    }
    let q = |i: u16| {
        let b = PacketBuilder::ipv4([192, 0, 2, 99], [198, 51, 100, 7], 64).udp(5000 + i, 53);
        let mut v = Vec::new();
        b.write(&mut v, b"query").unwrap();
        v
    };
    // No UDP listener report for port 53 yet: no target.
    assert_eq!(c.inbound(false, &q(0)), Err(DropReason::NoListener));
    for t in &mut c.targets {
        t.update_listeners(&listen(&["0.0.0.0:53", "0.0.0.0:80", "[::]:80"]));
    }
    c.pump();
    let a = c.inbound(false, &q(1)).unwrap();
    assert_eq!(c.inbound(false, &q(1)).unwrap(), a);
    c.now += Duration::from_secs(61);
    assert_eq!(c.gw.handle_timeout(c.now), 1);
}

#[test]
fn plain_packet_cannot_join_an_ipsec_connection() {
    let mut c = Cluster::new(Algorithm::RoundRobin, [1, 1, 1]);
    c.inbound(false, &syn(0)).unwrap();
    assert_eq!(
        c.gw.route_inbound(c.now, &ack(0), false),
        Route::Drop(DropReason::IpsecMismatch)
    );
    // A plain connection is distributed too, and its replies may go direct.
    let t = match c.gw.route_inbound(c.now, &syn(1), false) {
        Route::ToTarget { target, key, .. } => {
            assert!(!key.ipsec);
            let p = syn(1);
            let mut buf = vec![0u8; p.len() + 8];
            gre::encapsulate(key, &p, &mut buf).unwrap();
            let now = c.now;
            c.target(target)
                .receive_gre(now, LinkId(1), addr_of(GW), &mut buf)
                .unwrap();
            target
        }
        r => panic!("{r:?}"),
    };
    let now = c.now;
    let mut p = synack_out(1);
    assert_eq!(c.target(t).route_tun(now, &mut p), TunRoute::Direct);
}

#[test]
fn target_opened_connection_is_reported() {
    let mut c = Cluster::new(Algorithm::RoundRobin, [1, 1, 1]);
    // An app on target 2 connects out from DVIPA port 80 (an active FTP-like
    // data connection): SYN from the TUN goes to the gateway and NEWCONN too.
    let p = tcp(dvipa(), 80, ip("192.0.2.200"), 2121, |b| b.syn());
    // Until inbound IPsec traffic shows up the gateway does not know: its
    // outbound SPD decides.
    assert_eq!(c.reply_raw(T[1], &p), Ok((GW, false)));
    c.pump();
    let k = plexgate_distrib::FlowKey {
        client: ip("192.0.2.200"),
        client_port: 2121,
        dvipa: dvipa(),
        dvipa_port: 80,
        proto: plexgate_distrib::Proto::Tcp,
    };
    assert_eq!(c.gw.crt().get(&k).unwrap().target, T[1]);
    // The client's SYN-ACK follows the CRT to target 2.
    let sa = tcp(ip("192.0.2.200"), 2121, dvipa(), 80, |b| b.syn().ack(1));
    assert_eq!(c.inbound(false, &sa), Ok(T[1]));
    // Arriving under IPsec upgrades the entry: plain packets are refused now.
    assert!(c.gw.crt().get(&k).unwrap().uses_ipsec);
    assert_eq!(
        c.gw.route_inbound(c.now, &sa, false),
        Route::Drop(DropReason::IpsecMismatch)
    );
}

#[test]
fn new_syn_on_a_closed_four_tuple_is_distributed_afresh() {
    let mut c = Cluster::new(Algorithm::RoundRobin, [1, 1, 1]);
    let first = c.inbound(false, &syn(1)).unwrap();
    c.inbound(false, &ack(1)).unwrap();
    c.inbound(false, &fin_in(1)).unwrap();
    c.reply(first, &fin_out(1)).unwrap();
    // The client reuses its port for a new connection: round-robin moves on.
    let second = c.inbound(false, &syn(1)).unwrap();
    assert_ne!(first, second);
    // A retransmitted SYN of an open connection stays with its target.
    assert_eq!(c.inbound(false, &syn(1)).unwrap(), second);
}

#[test]
fn target_opened_connection_from_an_undistributed_port_gets_its_replies() {
    // The usual case: an app on target 2 connects out from the DVIPA on an
    // ephemeral port (not a distributed port); the client's replies must follow
    // the CRT, not go to the gateway's own stack.
    let mut c = Cluster::new(Algorithm::RoundRobin, [1, 1, 1]);
    let p = tcp(dvipa(), 40000, ip("192.0.2.200"), 7000, |b| b.syn());
    assert_eq!(c.reply_raw(T[1], &p), Ok((GW, false)));
    c.pump();
    let sa = tcp(ip("192.0.2.200"), 7000, dvipa(), 40000, |b| b.syn().ack(1));
    assert_eq!(c.inbound(false, &sa), Ok(T[1]));
    // Other traffic to that port without a CRT entry is still not distributed.
    let other = tcp(ip("192.0.2.201"), 7000, dvipa(), 40000, |b| b.syn());
    assert_eq!(c.gw.route_inbound(c.now, &other, true), Route::Local);
}

#[test]
fn backup_rebuilds_from_messages_and_routes_existing_connections() {
    let mut c = Cluster::new(Algorithm::RoundRobin, [1, 1, 1]);
    let got: Vec<NodeId> = (0..30)
        .map(|i| c.inbound(false, &syn(i)).unwrap())
        .collect();
    for i in 0..30 {
        c.inbound(false, &ack(i)).unwrap();
    }
    assert!(c.backup.crt().is_empty());
    // The routing gateway dies (it gets no more messages); the backup takes over.
    c.dead.push(GW);
    assert!(c.backup.take_over(dvipa()));
    c.pump();
    // DPT and CRT rebuilt from DvipaList + SrvStat + NewConn.
    assert_eq!(c.backup.crt().len(), 30);
    for i in 0..30 {
        assert_eq!(c.backup.crt().get(&key(i)).unwrap().target, got[i as usize]);
        assert!(c.backup.crt().get(&key(i)).unwrap().uses_ipsec);
    }
    for ts in &c.targets {
        let d = ts.served().iter().find(|d| d.dvipa == dvipa()).unwrap();
        assert_eq!(d.routing_gateway, BACKUP);
    }
    // Existing connections go to the same targets; replies go to the backup.
    for i in 0..30 {
        assert_eq!(c.inbound(true, &ack(i)).unwrap(), got[i as usize]);
        assert_eq!(c.reply(got[i as usize], &fin_out(i)), Ok(BACKUP));
    }
    // New connections are distributed by the backup over all three.
    let new: Vec<NodeId> = (100..130)
        .map(|i| c.inbound(true, &syn(i)).unwrap())
        .collect();
    assert_eq!(count(&new), [10, 10, 10]);
}

#[test]
fn takeback_hands_connections_to_the_primary() {
    let mut c = Cluster::new(Algorithm::RoundRobin, [1, 1, 1]);
    // Backup takes over while the primary is away, gets some connections...
    assert!(c.backup.take_over(dvipa()));
    c.pump();
    // (the primary heard the backup's list and stopped routing the DVIPA)
    assert_eq!(
        c.gw.dvipas()
            .find(|(d, _)| d.dvipa == dvipa())
            .map(|(_, r)| r),
        Some(false)
    );
    let got: Vec<NodeId> = (0..9).map(|i| c.inbound(true, &syn(i)).unwrap()).collect();
    // ... then the primary takes back: it announces, the backup hands over
    // its CRT (NEWCONN) and the targets report theirs.
    assert!(c.gw.take_over(dvipa()));
    c.pump();
    assert!(c.backup.crt().is_empty());
    for i in 0..9 {
        assert_eq!(c.gw.crt().get(&key(i)).unwrap().target, got[i as usize]);
        assert_eq!(c.inbound(false, &ack(i)).unwrap(), got[i as usize]);
    }
    assert_eq!(c.backup.route_inbound(c.now, &ack(0), true), Route::Local);
}

#[test]
fn cluster_forgery_and_replay_are_counted() {
    let mut c = Cluster::new(Algorithm::RoundRobin, [1, 1, 1]);
    let key = ClusterKey::new(SITE_KEY);
    let mut t1 = ClusterEndpoint::new(key, T[0], 10_000);
    let m = t1.seal(&Message::SrvStat {
        target: T[0],
        dvipa: dvipa(),
        port: 80,
        listening: false,
    });
    let mut bad = m.clone();
    let last = bad.len() - 1;
    bad[last] ^= 1;
    assert_eq!(
        c.gw.handle_cluster(c.now, &bad),
        Err(ClusterError::AuthFailed)
    );
    c.gw.handle_cluster(c.now, &m).unwrap();
    assert!(matches!(
        c.gw.handle_cluster(c.now, &m),
        Err(ClusterError::Replayed { .. })
    ));
    // A target reporting for another target is ignored and counted.
    let lie = t1.seal(&Message::SrvStat {
        target: T[1],
        dvipa: dvipa(),
        port: 80,
        listening: false,
    });
    c.gw.handle_cluster(c.now, &lie).unwrap();
    let s = c.gw.snapshot();
    assert_eq!(s.drops(DropReason::AuthFailed), 1);
    assert_eq!(s.drops(DropReason::Replayed), 1);
    assert_eq!(s.drops(DropReason::NotCandidate), 1);
    // T1 is now down on port 80, T2 still up (the lie changed nothing).
    let got: Vec<NodeId> = (0..4).map(|i| c.inbound(false, &syn(i)).unwrap()).collect();
    assert_eq!(count(&got), [0, 2, 2]);
}

#[test]
fn silent_target_is_taken_out_of_selection() {
    let mut c = Cluster::new(Algorithm::RoundRobin, [1, 1, 1]);
    // Targets 1 and 2 keep sending keepalives, target 3 falls silent.
    c.now += Duration::from_secs(20);
    for n in [T[0], T[1]] {
        c.target(n).keepalive();
    }
    c.pump();
    c.now += Duration::from_secs(15);
    c.gw.handle_timeout(c.now);
    let got: Vec<NodeId> = (0..10)
        .map(|i| c.inbound(false, &syn(i)).unwrap())
        .collect();
    assert_eq!(count(&got), [5, 5, 0]);
    assert!(
        !c.gw
            .snapshot()
            .targets
            .iter()
            .find(|t| t.node == T[2])
            .unwrap()
            .link_up
    );
    // It comes back with a Hello.
    c.target(T[2]).hello();
    c.pump();
    let got: Vec<NodeId> = (10..13)
        .map(|i| c.inbound(false, &syn(i)).unwrap())
        .collect();
    assert_eq!(count(&got), [1, 1, 1]);
}

#[test]
fn icmp_packet_too_big_reaches_the_connection_owner() {
    let mut c = Cluster::new(Algorithm::RoundRobin, [1, 1, 1]);
    let owners: Vec<NodeId> = (0..3).map(|i| c.inbound(false, &syn(i)).unwrap()).collect();
    // A router says the reply to client 2 was too big (RFC 1191 style).
    let reply = synack_out(2);
    let icmp = {
        use etherparse::icmpv4::DestUnreachableHeader;
        let b = PacketBuilder::ipv4([203, 0, 113, 1], [198, 51, 100, 7], 64).icmpv4(
            etherparse::Icmpv4Type::DestinationUnreachable(
                DestUnreachableHeader::FragmentationNeeded { next_hop_mtu: 1280 },
            ),
        );
        let mut v = Vec::new();
        b.write(&mut v, &reply[..28]).unwrap();
        v
    };
    assert_eq!(c.inbound(false, &icmp), Ok(owners[2]));
    // Unrelated ICMP to the DVIPA (an echo request) stays local.
    let ping = {
        let b =
            PacketBuilder::ipv4([192, 0, 2, 1], [198, 51, 100, 7], 64).icmpv4_echo_request(1, 1);
        let mut v = Vec::new();
        b.write(&mut v, b"ping").unwrap();
        v
    };
    assert_eq!(c.gw.route_inbound(c.now, &ping, true), Route::Local);
}

#[test]
fn restarted_gateway_rebuilds_dpt_and_crt() {
    let mut c = Cluster::new(Algorithm::RoundRobin, [1, 1, 1]);
    let got: Vec<NodeId> = (0..12)
        .map(|i| c.inbound(false, &syn(i)).unwrap())
        .collect();
    // The routing gateway process restarts with empty tables (same id, a
    // larger first sequence number) and announces its DVIPAs again.
    let key = ClusterKey::new(SITE_KEY);
    c.gw = Distributor::new(DistributorConfig::new(GW, key, 1_000_000));
    for t in T {
        c.gw.bind_link(LinkId(t.0), t, addr_of(t));
    }
    c.gw.configure_dvipa(dvipa_cfg(dvipa(), Algorithm::RoundRobin, [1, 1, 1]));
    c.pump();
    assert_eq!(c.gw.crt().len(), 12);
    for i in 0..12 {
        assert_eq!(c.inbound(false, &ack(i)).unwrap(), got[i as usize]);
    }
    let new: Vec<NodeId> = (100..103)
        .map(|i| c.inbound(false, &syn(i)).unwrap())
        .collect();
    assert_eq!(count(&new), [1, 1, 1]);
}

#[test]
fn a_target_cannot_hijack_a_dvipa() {
    let mut c = Cluster::new(Algorithm::RoundRobin, [1, 1, 1]);
    let got: Vec<NodeId> = (0..3).map(|i| c.inbound(false, &syn(i)).unwrap()).collect();
    // Target 1 holds the site key and announces the DVIPA naming itself.
    let mut evil = ClusterEndpoint::new(ClusterKey::new(SITE_KEY), T[0], 9_000);
    let mut cfg = dvipa_cfg(dvipa(), Algorithm::RoundRobin, [1, 1, 1]);
    cfg.routing_gateway = T[0];
    let m = evil.seal(&Message::DvipaList(vec![Announcement { cfg, epoch: 1 }]));
    c.gw.handle_cluster(c.now, &m).unwrap();
    c.backup.handle_cluster(c.now, &m).unwrap();
    let now = c.now;
    for n in [T[1], T[2]] {
        c.target(n).handle_cluster(now, &m).unwrap();
    }
    c.pump();
    // Nothing moved: the gateway still routes, targets still answer to it.
    assert_eq!(c.gw.crt().len(), 3);
    for i in 0..3 {
        assert_eq!(c.inbound(false, &ack(i)).unwrap(), got[i as usize]);
    }
    assert_eq!(c.gw.snapshot().drops(DropReason::NotCandidate), 1);
    assert_eq!(c.target(T[1]).snapshot().drops(DropReason::NotCandidate), 1);
}

#[test]
fn policy_reload_changes_weights_and_candidates() {
    let mut c = Cluster::new(Algorithm::RoundRobin, [1, 1, 1]);
    let first: Vec<NodeId> = (0..3).map(|i| c.inbound(false, &syn(i)).unwrap()).collect();
    // Reload: target 2 drained by weight 0, switch to weighted round-robin 2:0:1.
    c.gw.configure_dvipa(dvipa_cfg(dvipa(), Algorithm::WeightedRoundRobin, [2, 0, 1]));
    c.pump();
    let got: Vec<NodeId> = (3..9).map(|i| c.inbound(false, &syn(i)).unwrap()).collect();
    assert_eq!(count(&got), [4, 0, 2]);
    // Its open connection still goes to it.
    assert_eq!(c.inbound(false, &ack(1)).unwrap(), first[1]);
    // Reload without target 3 as a candidate at all.
    let mut cfg = dvipa_cfg(dvipa(), Algorithm::RoundRobin, [1, 1, 1]);
    cfg.targets = TargetSet::List(vec![(T[0], 1), (T[1], 1)]);
    c.gw.configure_dvipa(cfg);
    c.pump();
    let got: Vec<NodeId> = (9..13)
        .map(|i| c.inbound(false, &syn(i)).unwrap())
        .collect();
    assert_eq!(count(&got), [2, 2, 0]);
}
