//! Seed 002: interfaces that share a network are found by announcing each one's
//! address and seeing the announcement arrive on another; paired, they back each
//! other up: when one fails its address is announced and answered with the
//! backup's MAC, when it returns with its own again. One reply per request.

use std::time::Duration;

use plexgate_wire::arp::ArpOperation;

use super::harness::{gw_mac, ip, Lan};
use super::iface;
use crate::l2::{Answerer, Config, Event};

/// eth0, eth1 on segment 0 (10.0.0.0/24), eth2 on segment 1 (10.1.0.0/24).
fn backup_lan() -> Lan {
    let mut cfg = Config::new(
        vec![
            iface("eth0", "10.0.0.2", 24),
            iface("eth1", "10.0.0.3", 24),
            iface("eth2", "10.1.0.2", 24),
        ],
        vec![],
    );
    cfg.adapter_backup = true;
    let mut lan = Lan::new();
    lan.gateway(cfg, &[0, 0, 1]);
    lan.client(0, ip("10.0.0.9"));
    lan
}

#[test]
fn interfaces_on_one_network_are_found() {
    let mut lan = backup_lan();
    lan.advance(Duration::from_secs(2));
    let st = lan.gws[0].l2.status();
    assert_eq!(st.interfaces[0].same_network, vec!["eth1".to_string()]);
    assert_eq!(st.interfaces[1].same_network, vec!["eth0".to_string()]);
    assert!(st.interfaces[2].same_network.is_empty());
    let ev = lan.events(0);
    assert!(ev.contains(&Event::SharedNetwork {
        a: "eth0".into(),
        b: "eth1".into()
    }));
    assert!(!ev
        .iter()
        .any(|e| matches!(e, Event::SeparateNetworks { .. })));
    // Up interfaces: the kernel answers for their own addresses, plexgate does not.
    assert!(lan.resolve(0, ip("10.0.0.2")).is_empty());
    assert_eq!(st.addresses[0].answerer, Answerer::Kernel);
}

#[test]
fn failed_interface_is_announced_with_the_backup_mac_and_returns() {
    let mut lan = backup_lan();
    lan.advance(Duration::from_secs(2));
    lan.events(0);
    let t = lan.now;
    lan.link(0, 0, false);
    let said = lan.said(t, ip("10.0.0.2"));
    assert_eq!(said.len(), 1);
    assert!(said[0].frame.arp.is_gratuitous());
    assert_eq!(said[0].frame.arp.sender_mac, gw_mac(0, 1));
    assert_eq!(said[0].segment, 0);
    assert_eq!(
        lan.events(0),
        vec![Event::BackupTakeover {
            address: ip("10.0.0.2"),
            failed: "eth0".into(),
            backup: "eth1".into(),
            mac: gw_mac(0, 1)
        }]
    );
    for _ in 0..3 {
        let r = lan.resolve(0, ip("10.0.0.2"));
        assert_eq!(r.len(), 1, "exactly one reply");
        assert_eq!(r[0].arp.operation, ArpOperation::Reply);
        assert_eq!(r[0].arp.sender_mac, gw_mac(0, 1));
    }
    // eth2 is on another network: never a backup for eth0.
    assert!(lan
        .wire
        .iter()
        .all(|w| w.segment == 0 || w.frame.arp.sender_ip != ip("10.0.0.2")));
    lan.advance(Duration::from_secs(2));
    let t = lan.now;
    lan.link(0, 0, true);
    let said = lan.said(t, ip("10.0.0.2"));
    assert_eq!(said.len(), 1);
    assert_eq!(said[0].frame.arp.sender_mac, gw_mac(0, 0), "own MAC again");
    assert!(
        lan.resolve(0, ip("10.0.0.2")).is_empty(),
        "the kernel answers again"
    );
    assert!(lan.events(0).contains(&Event::BackupReturned {
        address: ip("10.0.0.2"),
        interface: "eth0".into()
    }));
}

#[test]
fn no_backup_without_a_shared_network() {
    let mut lan = backup_lan();
    lan.advance(Duration::from_secs(2));
    let t = lan.now;
    lan.link(0, 2, false);
    assert!(lan.said(t, ip("10.1.0.2")).is_empty());
    let st = lan.gws[0].l2.status();
    let row = st
        .addresses
        .iter()
        .find(|a| a.address == ip("10.1.0.2"))
        .unwrap();
    assert_eq!(row.answerer, Answerer::Nobody);
}

#[test]
fn recabling_separates_networks() {
    let mut lan = backup_lan();
    lan.advance(Duration::from_secs(2));
    lan.events(0);
    // eth1 is moved to segment 1 while down, then comes back.
    lan.link(0, 1, false);
    lan.plug(0, 1, 1);
    lan.link(0, 1, true);
    lan.advance(Duration::from_secs(2));
    let ev = lan.events(0);
    assert!(
        ev.contains(&Event::SeparateNetworks {
            a: "eth0".into(),
            b: "eth1".into()
        }),
        "{ev:?}"
    );
    assert!(
        ev.contains(&Event::SharedNetwork {
            a: "eth1".into(),
            b: "eth2".into()
        }),
        "{ev:?}"
    );
    let st = lan.gws[0].l2.status();
    assert!(st.interfaces[0].same_network.is_empty());
    assert_eq!(st.interfaces[1].same_network, vec!["eth2".to_string()]);
    // Now eth0 has no backup.
    let t = lan.now;
    lan.link(0, 0, false);
    assert!(lan.said(t, ip("10.0.0.2")).is_empty());
}
