//! Proptest twins of the fuzz targets `distrib_gre_target` and
//! `distrib_cluster_msg` (CI cannot run cargo-fuzz): arbitrary bytes through
//! every data-path entry point and the cluster channel never panic, and
//! whatever decodes re-encodes to the same message.

use plexgate_distrib::cluster::{seal_with, Announcement, ClusterEndpoint, Message};
use plexgate_distrib::dpt::{Algorithm, DvipaConfig, PortSet, TargetSet};
use plexgate_distrib::{
    ClusterKey, Distributor, DistributorConfig, LinkId, NodeId, TargetConfig, TargetStack,
};
use proptest::prelude::*;
use std::net::IpAddr;
use std::time::Instant;

fn setup() -> (TargetStack, Distributor) {
    let key = ClusterKey::new(b"fuzz-site-key");
    let cfg = DvipaConfig {
        dvipa: IpAddr::from([198, 51, 100, 7]),
        ports: PortSet::All,
        targets: TargetSet::All,
        algorithm: Algorithm::RoundRobin,
        routing_gateway: NodeId(1),
        backups: vec![],
    };
    let mut t = TargetStack::new(TargetConfig::new(NodeId(11), key.clone(), 1));
    t.bind_link(LinkId(1), NodeId(1), IpAddr::from([10, 0, 0, 1]));
    let list = seal_with(
        &key,
        NodeId(1),
        1,
        &Message::DvipaList(vec![Announcement {
            cfg: cfg.clone(),
            epoch: 1,
        }]),
    );
    t.handle_cluster(Instant::now(), &list).unwrap();
    let mut d = Distributor::new(DistributorConfig::new(NodeId(1), key, 1));
    d.bind_link(LinkId(11), NodeId(11), IpAddr::from([10, 0, 0, 11]));
    d.configure_dvipa(cfg);
    (t, d)
}

/// Bytes that look like GRE + IPv4 + TCP for the DVIPA often enough to get
/// past the first checks, then arbitrary.
fn gre_like() -> impl Strategy<Value = Vec<u8>> {
    (
        any::<bool>(),
        proptest::collection::vec(any::<u8>(), 0..120),
    )
        .prop_map(|(prefix, tail)| {
            let mut v = Vec::new();
            if prefix {
                v.extend_from_slice(&[0x20, 0, 0x08, 0, 0, 0, 0, 1]);
                v.extend_from_slice(&[0x45, 0, 0, 60, 0, 0, 0, 0, 64, 6, 0, 0]);
                v.extend_from_slice(&[192, 0, 2, 1, 198, 51, 100, 7]);
            }
            v.extend_from_slice(&tail);
            v
        })
}

proptest! {
    #[test]
    fn data_paths_never_panic(data in gre_like()) {
        let (mut t, mut d) = setup();
        let now = Instant::now();
        let mut buf = data.clone();
        let _ = t.receive_gre(now, LinkId(1), IpAddr::from([10, 0, 0, 1]), &mut buf);
        let mut buf = data.get(8..).unwrap_or(&[]).to_vec();
        let _ = t.route_tun(now, &mut buf);
        let _ = d.route_inbound(now, data.get(8..).unwrap_or(&[]), true);
        let _ = d.receive_gre(now, LinkId(11), IpAddr::from([10, 0, 0, 11]), &data);
    }

    #[test]
    fn cluster_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..200)) {
        let key = ClusterKey::new(b"fuzz-site-key");
        let mut rx = ClusterEndpoint::new(key.clone(), NodeId(1), 1);
        let _ = rx.open(&data);
        if let Some((&ty, body)) = data.split_first() {
            if let Ok(m) = Message::decode_body(ty % 8, body) {
                let sealed = seal_with(&key, NodeId(2), 7, &m);
                let mut rx = ClusterEndpoint::new(key.clone(), NodeId(1), 1);
                prop_assert_eq!(rx.open(&sealed).map(|(_, m)| m), Ok(m));
                let (mut t, mut d) = setup();
                let _ = d.handle_cluster(Instant::now(), &sealed);
                let _ = t.handle_cluster(Instant::now(), &sealed);
            }
        }
    }
}
