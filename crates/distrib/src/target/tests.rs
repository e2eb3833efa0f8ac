//! Unit tests of the target stack: SRVSTAT and NEWCONN from captured socket
//! lists, two gateways with ownership epochs, arrival checks, timers.

use super::*;
use crate::cluster::{seal_with, Announcement, ClusterError};
use crate::dpt::{Algorithm, PortSet, TargetSet};
use crate::link::Arrival;
use crate::listeners::{parse_proc_net_tcp, ProcSocket, TCP_LISTEN};
use std::net::SocketAddr;

const TCP: &str = include_str!("../../tests/data/proc_net_tcp.txt");

fn list(cfg: DvipaConfig, epoch: u64) -> Message {
    Message::DvipaList(vec![Announcement { cfg, epoch }])
}

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
    let m = seal_with(&key(), NodeId(1), 1, &list(cfg, 1));
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

const GW1: NodeId = NodeId(1);
const GW2: NodeId = NodeId(2);

fn gw_addr(n: NodeId) -> IpAddr {
    IpAddr::from([10, 0, n.0 as u8, 1])
}

fn d6() -> IpAddr {
    "fd00:30::30".parse().unwrap()
}

/// Target 11 with a link to each of two gateways (gateway n on link n), an
/// IPv6 DVIPA routed by gateway 1 (epoch 1) with gateway 2 as backup, and a
/// listener on its port 80.
fn two_gateways() -> TargetStack {
    let mut t = TargetStack::new(TargetConfig::new(NodeId(11), key(), 1));
    for g in [GW1, GW2] {
        t.add_node(Node {
            id: g,
            role: Role::Gateway,
            name: format!("gw-{}", g.0),
            address: gw_addr(g),
            link: LinkId(g.0),
        });
    }
    let m = seal_with(&key(), GW1, 100, &list(cfg6(GW1), 1));
    t.handle_cluster_from(Instant::now(), at(GW1), &m).unwrap();
    let l = [ProcSocket {
        local: SocketAddr::new(d6(), 80),
        remote: "[::]:0".parse().unwrap(),
        state: TCP_LISTEN,
    }];
    assert_eq!(t.update_listeners(&l), 1);
    drain(&mut t);
    t
}

fn cfg6(gw: NodeId) -> DvipaConfig {
    DvipaConfig {
        dvipa: d6(),
        ports: PortSet::List(vec![80]),
        targets: TargetSet::All,
        algorithm: Algorithm::RoundRobin,
        routing_gateway: gw,
        backups: vec![(if gw == GW1 { GW2 } else { GW1 }, 100)],
    }
}

fn at(g: NodeId) -> Arrival {
    Arrival {
        link: LinkId(g.0),
        src: gw_addr(g),
    }
}

/// Messages the target queued: (to, message).
fn drain(t: &mut TargetStack) -> Vec<(NodeId, Message)> {
    let mut rx = ClusterEndpoint::new(key(), NodeId(99), 1);
    std::iter::from_fn(|| t.poll_transmit())
        .map(|tx| {
            let Destination::Node(to) = tx.to else {
                panic!("targets never broadcast")
            };
            (to, rx.open(&tx.bytes).unwrap().1)
        })
        .collect()
}

/// A TCP segment client [fd00:172:16::10]:40000 ⇄ DVIPA:80; `inbound` is the
/// client → DVIPA direction.
fn tcp6(inbound: bool, syn: bool) -> Vec<u8> {
    let c: [u8; 16] = "fd00:172:16::10"
        .parse::<std::net::Ipv6Addr>()
        .unwrap()
        .octets();
    let d: [u8; 16] = "fd00:30::30"
        .parse::<std::net::Ipv6Addr>()
        .unwrap()
        .octets();
    let (src, dst, sp, dp) = if inbound {
        (c, d, 40000, 80)
    } else {
        (d, c, 80, 40000)
    };
    let b = etherparse::PacketBuilder::ipv6(src, dst, 64);
    let mut tcp = b.tcp(sp, dp, 1, 65535);
    if syn {
        tcp = tcp.syn();
    } else {
        tcp = tcp.ack(1);
    }
    let mut v = Vec::new();
    tcp.write(&mut v, &[]).unwrap();
    v
}

fn gre_from(g: NodeId, inner: &[u8]) -> Vec<u8> {
    let mut buf = vec![0u8; inner.len() + gre::GRE_HEADER_LEN];
    let key = GreKey {
        sender: g,
        ipsec: true,
    };
    gre::encapsulate(key, inner, &mut buf).unwrap();
    buf
}

#[test]
fn each_gateway_on_its_own_link_with_its_own_binding() {
    let mut t = two_gateways();
    let now = Instant::now();
    // GW1 routes the DVIPA: its GRE on its link passes.
    let mut p = gre_from(GW1, &tcp6(true, true));
    assert!(t.receive_gre(now, LinkId(1), gw_addr(GW1), &mut p).is_ok());
    // GW1's key and address, but on GW2's link; GW2 on its own link but it
    // does not route the DVIPA: both spoofs.
    let mut p = gre_from(GW1, &tcp6(true, false));
    assert_eq!(
        t.receive_gre(now, LinkId(2), gw_addr(GW1), &mut p).err(),
        Some(DropReason::Spoof)
    );
    let mut p = gre_from(GW2, &tcp6(true, false));
    assert_eq!(
        t.receive_gre(now, LinkId(2), gw_addr(GW2), &mut p).err(),
        Some(DropReason::Spoof)
    );
    // A cluster message of GW1 that arrives on GW2's link is misrouted and
    // changes nothing.
    let m = seal_with(&key(), GW1, 101, &list(cfg6(GW1), 1));
    assert!(matches!(
        t.handle_cluster_from(now, at(GW2), &m),
        Err(ClusterError::Misrouted { .. })
    ));
    assert_eq!(t.snapshot().drops(DropReason::Misrouted), 1);
    // Keepalives go to both gateways.
    t.keepalive();
    let to: Vec<NodeId> = drain(&mut t).into_iter().map(|(n, _)| n).collect();
    assert_eq!(to, [GW1, GW2]);
}

#[test]
fn a_newer_epoch_moves_the_dvipa_and_its_connections_at_once() {
    let mut t = two_gateways();
    let now = Instant::now();
    let mut p = gre_from(GW1, &tcp6(true, true));
    t.receive_gre(now, LinkId(1), gw_addr(GW1), &mut p).unwrap();
    assert!(matches!(
        t.route_tun(now, &mut tcp6(false, true)),
        TunRoute::ToGateway { gateway: GW1, .. }
    ));
    drain(&mut t);
    // GW2 takes over with epoch 2.
    let m = seal_with(&key(), GW2, 500, &list(cfg6(GW2), 2));
    t.handle_cluster_from(now, at(GW2), &m).unwrap();
    assert_eq!(
        t.owner(d6()),
        Some(Ownership {
            gateway: GW2,
            epoch: 2
        })
    );
    let sent = drain(&mut t);
    assert!(sent.iter().all(|(to, _)| *to == GW2), "{sent:?}");
    assert!(sent.iter().any(|(_, m)| matches!(
        m,
        Message::SrvStat {
            port: 80,
            listening: true,
            ..
        }
    )));
    assert!(sent.iter().any(|(_, m)| matches!(
        m,
        Message::NewConn {
            kind: NewConnKind::Existing,
            uses_ipsec: true,
            ..
        }
    )));
    // Replies go to GW2 over its link; GW1's GRE is refused now.
    assert_eq!(
        t.route_tun(now, &mut tcp6(false, false)),
        TunRoute::ToGateway {
            gateway: GW2,
            remote: gw_addr(GW2),
            key: GreKey {
                sender: NodeId(11),
                ipsec: true
            }
        }
    );
    let mut p = gre_from(GW1, &tcp6(true, false));
    assert_eq!(
        t.receive_gre(now, LinkId(1), gw_addr(GW1), &mut p).err(),
        Some(DropReason::Spoof)
    );
    let mut p = gre_from(GW2, &tcp6(true, false));
    assert!(t.receive_gre(now, LinkId(2), gw_addr(GW2), &mut p).is_ok());
}

#[test]
fn an_older_epoch_is_refused_and_counted_a_higher_one_takes_back() {
    let mut t = two_gateways();
    let now = Instant::now();
    let m = seal_with(&key(), GW2, 500, &list(cfg6(GW2), 2));
    t.handle_cluster_from(now, at(GW2), &m).unwrap();
    drain(&mut t);
    // The old owner, still announcing epoch 1, and a second owner claiming
    // the same epoch 2 (split brain): both refused, nothing sent.
    for (seq, epoch) in [(101, 1), (102, 2)] {
        let m = seal_with(&key(), GW1, seq, &list(cfg6(GW1), epoch));
        t.handle_cluster_from(now, at(GW1), &m).unwrap();
    }
    assert_eq!(t.snapshot().drops(DropReason::StaleEpoch), 2);
    assert_eq!(t.owner(d6()).unwrap().gateway, GW2);
    assert!(drain(&mut t).is_empty());
    // The old owner asks for connections: it owns nothing, it learns nothing.
    let q = seal_with(&key(), GW1, 103, &Message::ConnQuery { dvipa: None });
    t.handle_cluster_from(now, at(GW1), &q).unwrap();
    assert!(drain(&mut t).is_empty());
    // Takeback with epoch 3.
    let m = seal_with(&key(), GW1, 104, &list(cfg6(GW1), 3));
    t.handle_cluster_from(now, at(GW1), &m).unwrap();
    assert_eq!(
        t.owner(d6()),
        Some(Ownership {
            gateway: GW1,
            epoch: 3
        })
    );
    assert!(drain(&mut t).iter().all(|(to, _)| *to == GW1));
}

#[test]
fn timers_sleep_until_the_next_sweep_or_keepalive() {
    let mut t = two_gateways();
    let t0 = Instant::now();
    assert_eq!(t.next_timeout(), None);
    t.handle_timeout(t0);
    // Nothing sent yet; the next deadline is the sweep (1 s) before the
    // keepalive (2 s).
    assert!(drain(&mut t).is_empty());
    assert_eq!(t.next_timeout(), Some(t0 + control::SWEEP_EVERY));
    t.handle_timeout(t0 + control::SWEEP_EVERY);
    assert_eq!(t.next_timeout(), Some(t0 + Duration::from_secs(2)));
    t.handle_timeout(t0 + Duration::from_secs(2));
    assert_eq!(drain(&mut t).len(), 2);
    assert_eq!(
        t.next_timeout(),
        Some(t0 + Duration::from_secs(2) + control::SWEEP_EVERY)
    );
}
