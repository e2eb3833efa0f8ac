//! Issue #16: the CRT stays within its bound under a SYN flood to a
//! distributed port (embryonic entries are evicted oldest first, as conntrack's
//! early drop does), established connections keep being routed, and with no
//! embryonic entry left a new connection is refused and counted.

use plexgate_distrib::cluster::{seal_with, Message};
use plexgate_distrib::dpt::{Algorithm, DvipaConfig, PortSet, TargetSet};
use plexgate_distrib::{
    ClusterKey, Distributor, DistributorConfig, DropReason, LinkId, NodeId, Route,
};
use std::net::Ipv4Addr;
use std::time::Instant;

const DVIPA: [u8; 4] = [198, 51, 100, 7];

fn tcp(src: Ipv4Addr, sport: u16, flags: u8) -> Vec<u8> {
    let s = src.octets();
    let mut p = vec![
        0x45, 0, 0, 40, 0, 0, 0, 0, 64, 6, 0, 0, s[0], s[1], s[2], s[3], DVIPA[0], DVIPA[1],
        DVIPA[2], DVIPA[3],
    ];
    p.extend_from_slice(&sport.to_be_bytes());
    p.extend_from_slice(&[
        0, 80, 0, 0, 0, 1, 0, 0, 0, 0, 0x50, flags, 0xff, 0xff, 0, 0, 0, 0,
    ]);
    p
}

const SYN: u8 = 0x02;
const ACK: u8 = 0x10;

fn gateway(max: usize) -> Distributor {
    let key = ClusterKey::new(b"site key bytes from keys/");
    let mut cfg = DistributorConfig::new(NodeId(1), key.clone(), 1);
    cfg.crt_max = max;
    let mut gw = Distributor::new(cfg);
    gw.bind_link(LinkId(7), NodeId(7), "10.0.0.7".parse().unwrap());
    gw.configure_dvipa(DvipaConfig {
        dvipa: Ipv4Addr::from(DVIPA).into(),
        ports: PortSet::List(vec![80]),
        targets: TargetSet::All,
        algorithm: Algorithm::RoundRobin,
        routing_gateway: NodeId(1),
        backups: vec![],
    });
    while gw.poll_transmit().is_some() {}
    let srvstat = Message::SrvStat {
        target: NodeId(7),
        dvipa: Ipv4Addr::from(DVIPA).into(),
        port: 80,
        listening: true,
    };
    gw.handle_cluster(Instant::now(), &seal_with(&key, NodeId(7), 1, &srvstat))
        .unwrap();
    gw
}

#[test]
fn a_syn_flood_stays_within_the_crt_bound_and_established_connections_live_on() {
    let now = Instant::now();
    let mut gw = gateway(1000);
    // Ten real clients complete their handshake (SYN, then ACK).
    let clients: Vec<Ipv4Addr> = (1..=10).map(|i| Ipv4Addr::new(192, 0, 2, i)).collect();
    for c in &clients {
        assert!(matches!(
            gw.route_inbound(now, &tcp(*c, 40000, SYN), true),
            Route::ToTarget { .. }
        ));
        assert!(matches!(
            gw.route_inbound(now, &tcp(*c, 40000, ACK), true),
            Route::ToTarget { .. }
        ));
    }
    // 20,000 spoofed SYNs: the table never holds more than its bound.
    for i in 0..20_000u32 {
        let src = Ipv4Addr::from(0x0a00_0000 + i);
        let r = gw.route_inbound(now, &tcp(src, 1024 + (i % 60000) as u16, SYN), true);
        assert!(matches!(r, Route::ToTarget { .. }), "SYN {i}: {r:?}");
        assert!(gw.crt().len() <= 1000);
    }
    assert_eq!(gw.crt().len(), 1000);
    assert_eq!(gw.counters().conns_evicted, 20_000 + 10 - 1000);
    // The real clients' connections are still there and routed.
    for c in &clients {
        assert!(matches!(
            gw.route_inbound(now, &tcp(*c, 40000, ACK), true),
            Route::ToTarget { .. }
        ));
    }
    // The DPT's count of active connections follows the evictions.
    let row = gw.dpt().get(Ipv4Addr::from(DVIPA).into(), 80).unwrap();
    assert_eq!(row.targets()[0].active as usize, gw.crt().len());
}

#[test]
fn with_nothing_embryonic_left_a_new_connection_is_refused() {
    let now = Instant::now();
    let mut gw = gateway(5);
    for i in 1..=5 {
        let c = Ipv4Addr::new(192, 0, 2, i);
        gw.route_inbound(now, &tcp(c, 40000, SYN), true);
        gw.route_inbound(now, &tcp(c, 40000, ACK), true);
    }
    let r = gw.route_inbound(now, &tcp(Ipv4Addr::new(192, 0, 2, 99), 1, SYN), true);
    assert_eq!(r, Route::Drop(DropReason::CrtFull));
    assert_eq!(gw.crt().len(), 5);
    assert_eq!(
        gw.snapshot()
            .drops
            .iter()
            .find(|(r, _)| *r == DropReason::CrtFull)
            .map(|(_, n)| *n),
        Some(1)
    );
}
