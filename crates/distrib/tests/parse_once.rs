//! `route_inbound_parsed` (the gateway hands the distributor the 5-tuple that
//! the SA's selector check already parsed) decides exactly as `route_inbound`:
//! `flow::parse_with_tuple` equals `flow::parse` whenever the wire crate's
//! `FiveTuple::parse` accepts the packet, and two distributors fed the same
//! packets, one through each entry point, give the same routes.

use plexgate_distrib::cluster::seal_with;
use plexgate_distrib::dpt::{Algorithm, DvipaConfig, PortSet, TargetSet};
use plexgate_distrib::{flow, ClusterKey, Distributor, DistributorConfig, LinkId, Message, NodeId};
use plexgate_wire::ip::FiveTuple;
use proptest::prelude::*;
use std::net::IpAddr;
use std::time::Instant;

const DVIPA: [u8; 4] = [198, 51, 100, 7];

fn distributor() -> Distributor {
    let cfg = DvipaConfig {
        dvipa: IpAddr::from(DVIPA),
        ports: PortSet::List(vec![80, 443]),
        targets: TargetSet::All,
        algorithm: Algorithm::RoundRobin,
        routing_gateway: NodeId(1),
        backups: vec![],
    };
    let key = ClusterKey::new(b"parse-once-key");
    let mut d = Distributor::new(DistributorConfig::new(NodeId(1), key.clone(), 1));
    d.bind_link(LinkId(11), NodeId(11), IpAddr::from([10, 0, 0, 11]));
    d.configure_dvipa(cfg);
    for (seq, port) in [(1, 80), (2, 443)] {
        let m = Message::SrvStat {
            target: NodeId(11),
            dvipa: IpAddr::from(DVIPA),
            port,
            listening: true,
        };
        d.handle_cluster(Instant::now(), &seal_with(&key, NodeId(11), seq, &m))
            .expect("SRVSTAT accepted");
    }
    d
}

/// IPv4 packets (sometimes with a broken header), IPv6 packets, or bytes.
fn packet() -> impl Strategy<Value = Vec<u8>> {
    let v4 = (
        prop_oneof![Just(5u8), Just(6u8), 0u8..16],
        prop_oneof![Just(6u8), Just(17u8), Just(1u8), any::<u8>()],
        prop_oneof![Just(0u16), Just(0x2000u16), any::<u16>()],
        prop_oneof![Just(None), (0u16..200).prop_map(Some)],
        any::<bool>(),
        0u8..4,
        prop_oneof![Just(80u16), Just(443u16), any::<u16>()],
        prop_oneof![
            Just(0x02u8),
            Just(0x10u8),
            Just(0x11u8),
            Just(0x04u8),
            any::<u8>()
        ],
        proptest::collection::vec(any::<u8>(), 0..80),
    )
        .prop_map(
            |(ihl, proto, frag, total, to_dvipa, client, dport, flags, tail)| {
                let mut v = vec![0x40 | ihl, 0, 0, 0, 0, 0, 0, 0, 64, proto, 0, 0];
                v[6..8].copy_from_slice(&frag.to_be_bytes());
                v.extend_from_slice(&[192, 0, 2, client]);
                v.extend_from_slice(if to_dvipa { &DVIPA } else { &[203, 0, 113, 9] });
                v.resize(usize::from(ihl.max(5)) * 4, 0);
                let mut l4 = vec![0x9c, 0x40];
                l4.extend_from_slice(&dport.to_be_bytes());
                l4.extend_from_slice(&[0; 8]);
                l4.push(0x50);
                l4.push(flags);
                l4.extend_from_slice(&[0; 6]);
                l4.extend_from_slice(&tail);
                v.extend_from_slice(&l4);
                let len = total.map(usize::from).unwrap_or(v.len()) as u16;
                v[2..4].copy_from_slice(&len.to_be_bytes());
                v
            },
        );
    let v6 = proptest::collection::vec(any::<u8>(), 40..120).prop_map(|mut v| {
        v[0] = 0x60;
        let n = (v.len() - 40) as u16;
        v[4..6].copy_from_slice(&n.to_be_bytes());
        v[6] = 6;
        v
    });
    prop_oneof![4 => v4, 1 => v6, 1 => proptest::collection::vec(any::<u8>(), 0..60)]
}

proptest! {
    #[test]
    fn parse_with_tuple_equals_parse(p in packet()) {
        if let Ok(t) = FiveTuple::parse(&p) {
            prop_assert_eq!(flow::parse_with_tuple(&p, &t), flow::parse(&p));
        }
    }

    #[test]
    fn route_inbound_parsed_equals_route_inbound(
        ps in proptest::collection::vec((packet(), any::<bool>()), 1..12),
    ) {
        let (mut a, mut b) = (distributor(), distributor());
        let now = Instant::now();
        for (p, via_ipsec) in &ps {
            let ra = a.route_inbound(now, p, *via_ipsec);
            let rb = match FiveTuple::parse(p) {
                Ok(t) => b.route_inbound_parsed(now, p, &t, *via_ipsec),
                Err(_) => b.route_inbound(now, p, *via_ipsec),
            };
            prop_assert_eq!(ra, rb);
        }
        prop_assert_eq!(a.crt().len(), b.crt().len());
    }
}

/// The generator reaches the interesting routes: a SYN to a distributed port
/// opens a connection through either entry point, and data follows it.
#[test]
fn syn_then_data_to_target_both_ways() {
    let syn = |flags: u8| {
        let mut v = vec![0x45, 0, 0, 40, 0, 0, 0, 0, 64, 6, 0, 0, 192, 0, 2, 1];
        v.extend_from_slice(&DVIPA);
        v.extend_from_slice(&[0x9c, 0x40, 0, 80, 0, 0, 0, 0, 0, 0, 0, 0, 0x50, flags]);
        v.extend_from_slice(&[0; 6]);
        v
    };
    let (mut a, mut b) = (distributor(), distributor());
    let now = Instant::now();
    for flags in [0x02, 0x10, 0x11] {
        let p = syn(flags);
        let t = FiveTuple::parse(&p).unwrap();
        let ra = a.route_inbound(now, &p, true);
        assert!(
            matches!(ra, plexgate_distrib::Route::ToTarget { .. }),
            "{ra:?}"
        );
        assert_eq!(ra, b.route_inbound_parsed(now, &p, &t, true));
    }
    assert_eq!(a.crt().len(), 1);
    assert_eq!(b.crt().len(), 1);
}
