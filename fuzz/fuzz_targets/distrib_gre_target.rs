//! Fuzz the target's GRE input (decapsulation, anti-spoof, inner IP/TCP
//! parsing, MSS clamping in place) and the TUN path, plus the gateway's
//! inbound routing and GRE reply path, on arbitrary bytes.
//!   cargo fuzz run distrib_gre_target
#![no_main]

use libfuzzer_sys::fuzz_target;
use plexgate_distrib::cluster::{seal_with, Announcement, Message};
use plexgate_distrib::dpt::{Algorithm, DvipaConfig, PortSet, TargetSet};
use plexgate_distrib::{
    ClusterKey, Distributor, DistributorConfig, LinkId, NodeId, TargetConfig, TargetStack,
};
use std::net::IpAddr;
use std::time::Instant;

fuzz_target!(|data: &[u8]| {
    let key = ClusterKey::new(b"fuzz-site-key");
    let gw_addr = IpAddr::from([10, 0, 0, 1]);
    let cfg = DvipaConfig {
        dvipa: IpAddr::from([198, 51, 100, 7]),
        ports: PortSet::All,
        targets: TargetSet::All,
        algorithm: Algorithm::RoundRobin,
        routing_gateway: NodeId(1),
        backups: vec![],
    };
    let now = Instant::now();
    let mut t = TargetStack::new(TargetConfig::new(NodeId(11), key.clone(), 1));
    t.bind_link(LinkId(1), NodeId(1), gw_addr);
    let list = seal_with(&key, NodeId(1), 1, &Message::DvipaList(vec![Announcement { cfg: cfg.clone(), epoch: 1 }]));
    let _ = t.handle_cluster(now, &list);
    let mut buf = data.to_vec();
    let _ = t.receive_gre(now, LinkId(1), gw_addr, &mut buf);
    let mut buf = data.to_vec();
    let _ = t.route_tun(now, &mut buf);

    let mut d = Distributor::new(DistributorConfig::new(NodeId(1), key.clone(), 1));
    d.bind_link(LinkId(11), NodeId(11), IpAddr::from([10, 0, 0, 11]));
    d.configure_dvipa(cfg);
    let _ = d.route_inbound(now, data, true);
    let _ = d.receive_gre(now, LinkId(11), IpAddr::from([10, 0, 0, 11]), data);
});
