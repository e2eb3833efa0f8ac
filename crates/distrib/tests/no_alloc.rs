//! The data path does not allocate: a counting global allocator around
//! `route_inbound` (CRT hits), `receive_gre` on the gateway, and the target's
//! `receive_gre` / `route_tun` for an established connection.

use plexgate_distrib::cluster::{seal_with, Announcement, Message};
use plexgate_distrib::dpt::{Algorithm, DvipaConfig, PortSet, TargetSet};
use plexgate_distrib::gre::{self, GreKey};
use plexgate_distrib::{
    ClusterKey, Distributor, DistributorConfig, FromTarget, LinkId, NodeId, Route, TargetConfig,
    TargetStack, TunRoute,
};
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

/// Counts the allocations of the threads that set [`TRACK`] (the test's own):
/// the test harness's main thread may still be allocating its bookkeeping for
/// this test when the test thread starts, and those are not the data path's.
struct Counting;
static ALLOCS: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    static TRACK: Cell<bool> = const { Cell::new(false) };
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        if TRACK.try_with(Cell::get).unwrap_or(false) {
            ALLOCS.fetch_add(1, Ordering::Relaxed);
        }
        System.alloc(l)
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        System.dealloc(p, l)
    }
}

#[global_allocator]
static A: Counting = Counting;

fn tcp(src: [u8; 4], sport: u16, dst: [u8; 4], dport: u16, syn: bool) -> Vec<u8> {
    let b = etherparse::PacketBuilder::ipv4(src, dst, 64).tcp(sport, dport, 1, 65535);
    let b = if syn { b.syn() } else { b.ack(1) };
    let mut v = Vec::new();
    b.write(&mut v, b"payload").unwrap();
    v
}

#[test]
fn established_path_does_not_allocate() {
    let key = ClusterKey::new(b"no-alloc-key");
    let dv = [198, 51, 100, 7];
    let cfg = DvipaConfig {
        dvipa: IpAddr::from(dv),
        ports: PortSet::List(vec![80]),
        targets: TargetSet::All,
        algorithm: Algorithm::RoundRobin,
        routing_gateway: NodeId(1),
        backups: vec![],
    };
    let now = Instant::now();
    let gw_addr = IpAddr::from([10, 0, 0, 1]);
    let t_addr = IpAddr::from([10, 0, 0, 11]);
    let mut d = Distributor::new(DistributorConfig::new(NodeId(1), key.clone(), 1));
    d.bind_link(LinkId(11), NodeId(11), t_addr);
    d.configure_dvipa(cfg.clone());
    let srv = Message::SrvStat {
        target: NodeId(11),
        dvipa: IpAddr::from(dv),
        port: 80,
        listening: true,
    };
    d.handle_cluster(now, &seal_with(&key, NodeId(11), 1, &srv))
        .unwrap();
    let mut t = TargetStack::new(TargetConfig::new(NodeId(11), key.clone(), 1));
    t.bind_link(LinkId(1), NodeId(1), gw_addr);
    t.handle_cluster(
        now,
        &seal_with(
            &key,
            NodeId(1),
            2,
            &Message::DvipaList(vec![Announcement { cfg, epoch: 1 }]),
        ),
    )
    .unwrap();

    let syn = tcp([192, 0, 2, 1], 4000, dv, 80, true);
    let data = tcp([192, 0, 2, 1], 4000, dv, 80, false);
    let reply = tcp(dv, 80, [192, 0, 2, 1], 4000, false);
    let mut buf = [0u8; 256];
    let mut rbuf = [0u8; 256];
    // Set-up packets may allocate (CRT insert on the target side).
    let Route::ToTarget { key: k, .. } = d.route_inbound(now, &syn, true) else {
        panic!()
    };
    let n = gre::encapsulate(k, &syn, &mut buf).unwrap();
    t.receive_gre(now, LinkId(1), gw_addr, &mut buf[..n])
        .unwrap();

    TRACK.with(|t| t.set(true));
    let before = ALLOCS.load(Ordering::Relaxed);
    for _ in 0..1000 {
        let Route::ToTarget { key: k, .. } = d.route_inbound(now, &data, true) else {
            panic!()
        };
        let n = gre::encapsulate(k, &data, &mut buf).unwrap();
        t.receive_gre(now, LinkId(1), gw_addr, &mut buf[..n])
            .unwrap();
        let mut r = [0u8; 64];
        r[..reply.len()].copy_from_slice(&reply);
        let TunRoute::ToGateway { key: rk, .. } = t.route_tun(now, &mut r[..reply.len()]) else {
            panic!()
        };
        assert_eq!(
            rk,
            GreKey {
                sender: NodeId(11),
                ipsec: true
            }
        );
        let m = gre::encapsulate(rk, &r[..reply.len()], &mut rbuf).unwrap();
        assert!(matches!(
            d.receive_gre(now, LinkId(11), t_addr, &rbuf[..m]),
            FromTarget::ToClient { .. }
        ));
    }
    assert_eq!(ALLOCS.load(Ordering::Relaxed) - before, 0);
    // The counter does see allocations.
    let v = std::hint::black_box(vec![0u8; 16]);
    assert_eq!(ALLOCS.load(Ordering::Relaxed) - before, 1);
    drop(v);
}
