//! Seed 004: cluster MAC mode. The gateways answer for owned addresses with one
//! shared cluster MAC, so a takeover changes no client's neighbour entry; members
//! still reach each other point-to-point through per-member MACs, which a member
//! learns because a request from a member for another member's own address is
//! answered with the responder's per-member MAC (and everyone else gets the
//! interface's MAC).

use std::time::Duration;

use plexgate_wire::arp::{ArpFrameRepr, ArpOperation, ArpRepr, EthernetAddress};

use super::harness::{gw_mac, ip, Lan};
use super::one_lan;
use crate::l2::{Answerer, ClusterConfig, ClusterMember, Config, IfaceId};

const CLUSTER_MAC: EthernetAddress = EthernetAddress([0x03, 0xbf, 0x0a, 0, 0, 0x64]);

fn member_cfg(own: &str) -> Config {
    let mut c = one_lan(own, ip("10.0.0.100"));
    c.cluster = Some(ClusterConfig {
        mac: CLUSTER_MAC,
        members: vec![
            ClusterMember {
                address: ip("10.0.0.2"),
                mac: None,
            },
            ClusterMember {
                address: ip("10.0.0.3"),
                mac: None,
            },
        ],
    });
    c
}

fn cluster() -> Lan {
    let mut lan = Lan::new();
    lan.gateway(member_cfg("10.0.0.2"), &[0]);
    lan.gateway(member_cfg("10.0.0.3"), &[0]);
    lan.client(0, ip("10.0.0.50"));
    lan
}

#[test]
fn takeover_changes_no_neighbour_entry() {
    let mut lan = cluster();
    let vipa = ip("10.0.0.100");
    lan.set_active(0, vipa, true);
    let r = lan.resolve(0, vipa);
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].arp.sender_mac, CLUSTER_MAC);
    // A multicast cluster MAC is never a source address.
    assert_eq!(r[0].eth_src, gw_mac(0, 0));
    lan.advance(Duration::from_secs(2));
    let t = lan.now;
    lan.set_active(0, vipa, false);
    lan.set_active(1, vipa, true);
    lan.advance(Duration::from_secs(2));
    assert_eq!(lan.clients[0].neigh[&vipa], CLUSTER_MAC);
    for w in lan.said(t, vipa) {
        assert_eq!(w.frame.arp.sender_mac, CLUSTER_MAC);
        assert_eq!(w.frame.eth_src, gw_mac(1, 0));
    }
    let r = lan.resolve(0, vipa);
    assert_eq!((r.len(), r[0].arp.sender_mac), (1, CLUSTER_MAC));
    // No conflict between members speaking for the VIPA with the cluster MAC.
    assert_eq!(lan.gws[0].l2.counters().conflicts, 0);
    assert_eq!(lan.gws[1].l2.counters().conflicts, 0);
}

#[test]
fn members_learn_per_member_macs() {
    let mut lan = cluster();
    // Member 0's kernel asks who has member 1's own address.
    let ask = ArpFrameRepr {
        eth_dst: EthernetAddress::BROADCAST,
        eth_src: gw_mac(0, 0),
        arp: ArpRepr::request(gw_mac(0, 0), ip("10.0.0.2"), ip("10.0.0.3")),
    };
    let t = lan.now;
    lan.deliver(0, Some((0, 0)), &ask.to_bytes());
    lan.pump();
    let replies: Vec<_> = lan
        .said(t, ip("10.0.0.3"))
        .into_iter()
        .filter(|w| w.frame.arp.target_ip == ip("10.0.0.2"))
        .collect();
    assert_eq!(replies.len(), 1);
    let f = replies[0].frame;
    assert_eq!(f.arp.sender_mac, ClusterConfig::derived_mac(ip("10.0.0.3")));
    assert_eq!(f.arp.sender_mac.0, [0x03, 0xbf, 10, 0, 0, 3]);
    assert_eq!(f.eth_dst, gw_mac(0, 0), "to the asking member only");
    assert_eq!(f.eth_src, gw_mac(1, 0));
    // A non-member gets the interface's MAC for the same address.
    let r = lan.resolve(0, ip("10.0.0.3"));
    assert_eq!((r.len(), r[0].arp.sender_mac), (1, gw_mac(1, 0)));
    // plexgate answers for the interface address in this mode.
    let st = lan.gws[1].l2.status();
    let row = st
        .addresses
        .iter()
        .find(|a| a.address == ip("10.0.0.3"))
        .unwrap();
    assert_eq!(row.answerer, Answerer::Plexgate);
    assert_eq!(st.cluster_mac, Some(CLUSTER_MAC));
    assert!(lan.gws[1].l2.answers_interface_addresses());
}

#[test]
fn a_member_asking_with_the_cluster_mac_gets_the_reply_on_its_member_mac() {
    // Unicast cluster mode (every member's NIC carries the cluster MAC): the
    // request's sender MAC is the shared one, so the reply goes to the asking
    // member's per-member MAC (seed 004, FIG. 6 rows 600-620).
    let mut lan = cluster();
    let ask = ArpFrameRepr {
        eth_dst: EthernetAddress::BROADCAST,
        eth_src: EthernetAddress([0x02, 0xbf, 0, 0, 0, 1]),
        arp: ArpRepr::request(CLUSTER_MAC, ip("10.0.0.2"), ip("10.0.0.3")),
    };
    let t = lan.now;
    lan.deliver(0, None, &ask.to_bytes());
    lan.pump();
    let said = lan.said(t, ip("10.0.0.3"));
    let replies: Vec<_> = said
        .iter()
        .filter(|w| w.frame.arp.operation == ArpOperation::Reply)
        .collect();
    assert_eq!(replies.len(), 1);
    let reply = replies[0].frame;
    let member0 = ClusterConfig::derived_mac(ip("10.0.0.2"));
    assert_eq!((reply.eth_dst, reply.arp.target_mac), (member0, member0));
}

#[test]
fn members_join_the_cluster_and_member_macs() {
    let lan = cluster();
    assert_eq!(
        lan.gws[0].l2.multicast_macs(IfaceId(0)),
        vec![CLUSTER_MAC, ClusterConfig::derived_mac(ip("10.0.0.2"))]
    );
    let plain = crate::l2::L2::new(one_lan("10.0.0.2", ip("10.0.0.100"))).unwrap();
    assert!(plain.multicast_macs(IfaceId(0)).is_empty());
    assert!(!plain.answers_interface_addresses());
}
