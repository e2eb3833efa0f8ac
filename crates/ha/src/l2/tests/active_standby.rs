//! Seed 003: only the active gateway answers for the gateway VIPA (and the private
//! gateway-system address); it announces the address when it becomes active (a few
//! gratuitous ARPs, spaced); the standby never answers; a clean stop is silent.

use std::time::Duration;

use plexgate_wire::arp::{ArpOperation, EthernetAddress};

use super::harness::{gw_mac, ip, Lan};
use super::{iface, one_lan, owned};
use crate::l2::{AddressKind, Answerer, Config, Event, L2Error, StatusKind, L2};

fn pair() -> (Lan, std::net::Ipv4Addr) {
    let vipa = ip("10.0.0.100");
    let mut lan = Lan::new();
    lan.gateway(one_lan("10.0.0.2", vipa), &[0]);
    lan.gateway(one_lan("10.0.0.3", vipa), &[0]);
    lan.client(0, ip("10.0.0.50"));
    (lan, vipa)
}

#[test]
fn only_the_active_answers() {
    let (mut lan, vipa) = pair();
    // Both standby: no answer at all.
    assert!(lan.resolve(0, vipa).is_empty());
    lan.set_active(0, vipa, true);
    for _ in 0..5 {
        let r = lan.resolve(0, vipa);
        assert_eq!(r.len(), 1, "exactly one reply per request");
        assert_eq!(r[0].arp.sender_mac, gw_mac(0, 0));
        assert_eq!(r[0].eth_dst, lan.clients[0].mac, "unicast to the requester");
    }
    assert_eq!(lan.clients[0].neigh[&vipa], gw_mac(0, 0));
    // The standby never said anything about the VIPA.
    assert!(lan
        .said(lan.t0, vipa)
        .iter()
        .all(|w| w.frame.eth_src != gw_mac(1, 0)));
    assert_eq!(lan.gws[1].l2.counters().answered, 0);
    assert_eq!(lan.gws[0].l2.counters().answered, 5);
}

#[test]
fn takeover_announces_and_takeback_returns() {
    let (mut lan, vipa) = pair();
    lan.set_active(0, vipa, true);
    lan.advance(Duration::from_secs(3));
    lan.resolve(0, vipa);
    assert_eq!(lan.clients[0].neigh[&vipa], gw_mac(0, 0));
    // Takeover: the old active goes standby (or died), the backup becomes active.
    let t = lan.now;
    lan.set_active(0, vipa, false);
    lan.set_active(1, vipa, true);
    // The first gratuitous ARP is on the wire at once; the client follows.
    assert_eq!(lan.clients[0].neigh[&vipa], gw_mac(1, 0));
    lan.advance(Duration::from_secs(3));
    let garps: Vec<_> = lan
        .said(t, vipa)
        .into_iter()
        .filter(|w| w.frame.arp.is_gratuitous())
        .collect();
    // Three announcements, 500 ms apart, all from the new active.
    assert_eq!(garps.len(), 3);
    for (n, w) in garps.iter().enumerate() {
        assert_eq!(w.at - t, Duration::from_millis(500) * n as u32);
        assert_eq!(w.frame.arp.operation, ArpOperation::Request);
        assert_eq!(w.frame.arp.sender_mac, gw_mac(1, 0));
        assert_eq!(w.frame.eth_dst, EthernetAddress::BROADCAST);
        assert_eq!(w.frame.arp.target_mac, EthernetAddress::ZERO);
    }
    assert_eq!(lan.resolve(0, vipa).len(), 1);
    // Takeback.
    lan.set_active(1, vipa, false);
    lan.set_active(0, vipa, true);
    assert_eq!(lan.clients[0].neigh[&vipa], gw_mac(0, 0));
    let r = lan.resolve(0, vipa);
    assert_eq!((r.len(), r[0].arp.sender_mac), (1, gw_mac(0, 0)));
    let e0 = lan.events(0);
    assert!(e0.contains(&Event::Released { address: vipa }), "{e0:?}");
    assert!(
        e0.iter()
            .filter(|e| matches!(e, Event::Claimed { .. }))
            .count()
            == 2
    );
}

#[test]
fn standby_mid_burst_stops_announcing() {
    let (mut lan, vipa) = pair();
    let t = lan.now;
    lan.set_active(0, vipa, true);
    lan.advance(Duration::from_millis(100));
    lan.set_active(0, vipa, false);
    lan.advance(Duration::from_secs(5));
    assert_eq!(
        lan.said(t, vipa).len(),
        1,
        "only the first announcement left"
    );
    assert!(lan.resolve(0, vipa).is_empty());
    assert_eq!(lan.gws[0].l2.poll_timeout(), None);
}

#[test]
fn clean_stop_is_silent() {
    let (mut lan, vipa) = pair();
    lan.set_active(0, vipa, true);
    lan.advance(Duration::from_secs(2));
    let t = lan.now;
    let now = lan.now;
    lan.gws[0].l2.stop(now);
    lan.pump();
    assert!(lan.resolve(0, vipa).is_empty());
    lan.advance(Duration::from_secs(10));
    assert!(lan.said(t, vipa).is_empty());
    let st = lan.gws[0].l2.status();
    assert!(!st.addresses[0].active);
    assert_eq!(st.addresses[0].answerer, Answerer::Nobody);
    // Stop wins over a later set_active.
    lan.set_active(0, vipa, true);
    assert!(lan.resolve(0, vipa).is_empty());
}

#[test]
fn system_address_is_owned_like_the_vipa() {
    let (vipa, sys) = (ip("192.168.10.100"), ip("192.168.10.11"));
    let cfg = Config::new(
        vec![iface("eth0", "192.168.10.2", 24)],
        vec![
            owned(vipa, AddressKind::GatewayVipa),
            owned(sys, AddressKind::SystemAddress),
        ],
    );
    let mut lan = Lan::new();
    lan.gateway(cfg, &[0]);
    let c = lan.client(0, ip("192.168.10.1"));
    lan.set_active(0, sys, true);
    assert_eq!(lan.resolve(c, sys).len(), 1);
    assert!(
        lan.resolve(c, vipa).is_empty(),
        "active for one, not the other"
    );
    let st = lan.gws[0].l2.status();
    let row = st.addresses.iter().find(|a| a.address == sys).unwrap();
    assert_eq!(row.kind, StatusKind::Owned(AddressKind::SystemAddress));
    assert_eq!(row.interface.as_deref(), Some("eth0"));
    assert_eq!(row.mac, Some(gw_mac(0, 0)));
}

#[test]
fn standby_sees_the_owner_and_unknown_addresses_are_refused() {
    let (mut lan, vipa) = pair();
    lan.set_active(0, vipa, true);
    let st = lan.gws[1].l2.status();
    assert_eq!(st.addresses[0].seen_elsewhere, Some(gw_mac(0, 0)));
    assert_eq!(st.addresses[0].answerer, Answerer::Nobody);
    let now = lan.now;
    assert_eq!(
        lan.gws[1].l2.set_active(now, ip("10.0.0.99"), true),
        Err(L2Error::UnknownAddress(ip("10.0.0.99")))
    );
    assert_eq!(lan.gws[1].l2.is_active(vipa), Some(false));
    // Repeating set_active changes nothing and sends nothing.
    let before = lan.gws[0].l2.counters().sent;
    lan.set_active(0, vipa, true);
    assert_eq!(lan.gws[0].l2.counters().sent, before);
}

#[test]
fn bad_configurations_are_refused() {
    let vipa = ip("10.0.0.100");
    let mut c = one_lan("10.0.0.2", vipa);
    c.announce.count = 0;
    assert!(L2::new(c).is_err());
    let c = one_lan("10.0.0.100", vipa);
    assert!(
        L2::new(c).is_err(),
        "owned address equal to the interface's"
    );
    let mut c = one_lan("10.0.0.2", vipa);
    c.interfaces.push(iface("eth0", "10.0.1.2", 24));
    assert!(L2::new(c).is_err(), "duplicate name");
    let c = Config::new(vec![], vec![]);
    assert!(L2::new(c).is_err());
    let c = one_lan("10.0.0.2", ip("224.0.0.1"));
    assert!(L2::new(c).is_err());
}
