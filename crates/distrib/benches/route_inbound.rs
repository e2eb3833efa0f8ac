//! Criterion bench of `Distributor::route_inbound` on the hot path: a data
//! packet of an established connection (CRT hit) among 10 000 connections,
//! IPv4 and IPv6, plus the cost of a SYN that selects a target.
use criterion::{criterion_group, Criterion};
use plexgate_distrib::cluster::{seal_with, Message};
use plexgate_distrib::dpt::{Algorithm, DvipaConfig, PortSet, TargetSet};
use plexgate_distrib::{ClusterKey, Distributor, DistributorConfig, LinkId, NodeId, Route};
use std::hint::black_box;
use std::net::IpAddr;
use std::time::Instant;

fn tcp(src: IpAddr, sport: u16, dst: IpAddr, flags: u8) -> Vec<u8> {
    // Minimal IPv4/IPv6 + 20-byte TCP header, checksums irrelevant here.
    let mut p = Vec::new();
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            p.extend_from_slice(&[0x45, 0, 0, 40, 0, 0, 0x40, 0, 64, 6, 0, 0]);
            p.extend_from_slice(&s.octets());
            p.extend_from_slice(&d.octets());
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            p.extend_from_slice(&[0x60, 0, 0, 0, 0, 20, 6, 64]);
            p.extend_from_slice(&s.octets());
            p.extend_from_slice(&d.octets());
        }
        _ => unreachable!(),
    }
    p.extend_from_slice(&sport.to_be_bytes());
    p.extend_from_slice(&443u16.to_be_bytes());
    p.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 0, 0x50, flags, 0xff, 0xff, 0, 0, 0, 0]);
    p
}

fn gateway(dvipas: &[IpAddr]) -> Distributor {
    let key = ClusterKey::new(b"bench-key-0123456789");
    let mut d = Distributor::new(DistributorConfig::new(NodeId(1), key.clone(), 1));
    for t in 0..3u32 {
        d.bind_link(
            LinkId(t),
            NodeId(10 + t),
            IpAddr::from([10, 0, 0, 10 + t as u8]),
        );
    }
    for (i, dv) in dvipas.iter().enumerate() {
        d.configure_dvipa(DvipaConfig {
            dvipa: *dv,
            ports: PortSet::List(vec![443]),
            targets: TargetSet::All,
            algorithm: Algorithm::RoundRobin,
            routing_gateway: NodeId(1),
            backups: vec![],
        });
        for t in 0..3u32 {
            let m = Message::SrvStat {
                target: NodeId(10 + t),
                dvipa: *dv,
                port: 443,
                listening: true,
            };
            let b = seal_with(&key, NodeId(10 + t), 1000 + i as u64, &m);
            d.handle_cluster(Instant::now(), &b).unwrap();
        }
    }
    d
}

fn bench(c: &mut Criterion) {
    let v4: IpAddr = "198.51.100.7".parse().unwrap();
    let v6: IpAddr = "2001:db8::7".parse().unwrap();
    let mut d = gateway(&[v4, v6]);
    let now = Instant::now();
    for i in 0..5000u32 {
        let c4 = IpAddr::from([192, 0, 2, (i % 250) as u8]);
        let c6: IpAddr = format!("2001:db8:1::{i:x}").parse().unwrap();
        let port = 10000 + (i / 250) as u16;
        assert!(matches!(
            d.route_inbound(now, &tcp(c4, port, v4, 0x02), true),
            Route::ToTarget { .. }
        ));
        assert!(matches!(
            d.route_inbound(now, &tcp(c6, port, v6, 0x02), true),
            Route::ToTarget { .. }
        ));
    }
    let p4 = tcp(IpAddr::from([192, 0, 2, 7]), 10003, v4, 0x10);
    let p6 = tcp("2001:db8:1::77".parse().unwrap(), 10000, v6, 0x10);
    c.bench_function("route_inbound/v4_established", |b| {
        b.iter(|| black_box(d.route_inbound(now, black_box(&p4), true)))
    });
    c.bench_function("route_inbound/v6_established", |b| {
        b.iter(|| black_box(d.route_inbound(now, black_box(&p6), true)))
    });
    let other = tcp(
        IpAddr::from([192, 0, 2, 7]),
        10003,
        "203.0.113.1".parse().unwrap(),
        0x10,
    );
    c.bench_function("route_inbound/not_dvipa", |b| {
        b.iter(|| black_box(d.route_inbound(now, black_box(&other), true)))
    });
    // SYN + RST of a fresh connection: selection, CRT insert and removal.
    let syn = tcp(IpAddr::from([203, 0, 113, 9]), 555, v4, 0x02);
    let rst = tcp(IpAddr::from([203, 0, 113, 9]), 555, v4, 0x04);
    c.bench_function("route_inbound/syn_then_rst", |b| {
        b.iter(|| {
            black_box(d.route_inbound(now, black_box(&syn), true));
            black_box(d.route_inbound(now, black_box(&rst), true))
        })
    });
}

/// The machine this runs on is shared (load above the core count), so
/// criterion's means include time the thread spent preempted. The minimum over
/// many short batches is the cost when the thread actually runs: printed first.
fn min_batch_ns(name: &str, mut f: impl FnMut()) {
    const BATCH: u32 = 200;
    let mut best = f64::MAX;
    for _ in 0..20_000 {
        let t = Instant::now();
        for _ in 0..BATCH {
            f();
        }
        best = best.min(t.elapsed().as_nanos() as f64 / f64::from(BATCH));
    }
    println!("{name}: min-batch {best:.1} ns/op");
}

fn min_batches() {
    let v4: IpAddr = "198.51.100.7".parse().unwrap();
    let v6: IpAddr = "2001:db8::7".parse().unwrap();
    let mut d = gateway(&[v4, v6]);
    let now = Instant::now();
    for i in 0..5000u32 {
        let c4 = IpAddr::from([192, 0, 2, (i % 250) as u8]);
        let port = 10000 + (i / 250) as u16;
        d.route_inbound(now, &tcp(c4, port, v4, 0x02), true);
    }
    let p4 = tcp(IpAddr::from([192, 0, 2, 7]), 10003, v4, 0x10);
    let p6 = tcp("2001:db8:1::77".parse().unwrap(), 10000, v6, 0x02);
    d.route_inbound(now, &p6, true);
    let p6 = tcp("2001:db8:1::77".parse().unwrap(), 10000, v6, 0x10);
    min_batch_ns("route_inbound/v4_established", || {
        black_box(d.route_inbound(now, black_box(&p4), true));
    });
    min_batch_ns("route_inbound/v6_established", || {
        black_box(d.route_inbound(now, black_box(&p6), true));
    });
    min_batch_ns("flow::parse/v4", || {
        black_box(plexgate_distrib::flow::parse(black_box(&p4)).ok());
    });
}

criterion_group!(benches, bench);

fn main() {
    min_batches();
    benches();
    Criterion::default().configure_from_args().final_summary();
}
