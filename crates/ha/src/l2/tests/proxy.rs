//! Seed 000: proxy ARP for VIPAs bound to no adapter, per-VIPA opt-in, answered by
//! a dynamically chosen agent interface in the VIPA's subnet; the duty moves when
//! the agent goes down (and back when it returns) and waits while none is up.

use std::time::Duration;

use super::harness::{gw_mac, ip, Lan};
use super::{iface, owned};
use crate::l2::{AddressKind, Answerer, Config, Event};

/// eth0 and eth1 on the 10.0.0.0/24 LAN (segment 0), eth2 on 10.1.0.0/24
/// (segment 1); proxy VIPA 10.0.0.50 (opted in), DVIPA 10.0.0.60 not opted in.
fn three_adapters() -> Lan {
    let cfg = Config::new(
        vec![
            iface("eth0", "10.0.0.2", 24),
            iface("eth1", "10.0.0.3", 24),
            iface("eth2", "10.1.0.2", 24),
        ],
        vec![owned(ip("10.0.0.50"), AddressKind::ProxyVipa)],
    );
    let mut lan = Lan::new();
    lan.gateway(cfg, &[0, 0, 1]);
    lan.client(0, ip("10.0.0.9"));
    lan.client(1, ip("10.1.0.9"));
    lan
}

#[test]
fn agent_is_the_first_interface_in_the_subnet_and_answers_once() {
    let mut lan = three_adapters();
    let vipa = ip("10.0.0.50");
    lan.set_active(0, vipa, true);
    // The request reaches eth0 and eth1; only the agent answers.
    for _ in 0..3 {
        let r = lan.resolve(0, vipa);
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].arp.sender_mac, gw_mac(0, 0));
        assert_eq!(r[0].eth_src, gw_mac(0, 0));
    }
    // Not opted in: never answered.
    assert!(lan.resolve(0, ip("10.0.0.60")).is_empty());
    // Another subnet: eth2 is not an agent for 10.0.0.50.
    assert!(lan.resolve(1, vipa).is_empty());
    let st = lan.gws[0].l2.status();
    assert_eq!(st.addresses[0].interface.as_deref(), Some("eth0"));
    assert_eq!(st.addresses[0].answerer, Answerer::Plexgate);
}

#[test]
fn agent_moves_when_it_goes_down_and_back_when_it_returns() {
    let mut lan = three_adapters();
    let vipa = ip("10.0.0.50");
    lan.set_active(0, vipa, true);
    lan.resolve(0, vipa);
    lan.advance(Duration::from_secs(2));
    lan.events(0);
    lan.link(0, 0, false);
    // The announcement on eth1 updates the client at once.
    assert_eq!(lan.clients[0].neigh[&vipa], gw_mac(0, 1));
    let r = lan.resolve(0, vipa);
    assert_eq!((r.len(), r[0].arp.sender_mac), (1, gw_mac(0, 1)));
    assert_eq!(
        lan.events(0),
        vec![Event::Moved {
            address: vipa,
            from: "eth0".into(),
            to: "eth1".into(),
            mac: gw_mac(0, 1)
        }]
    );
    lan.advance(Duration::from_secs(2));
    lan.link(0, 0, true);
    assert_eq!(lan.clients[0].neigh[&vipa], gw_mac(0, 0));
    let r = lan.resolve(0, vipa);
    assert_eq!((r.len(), r[0].arp.sender_mac), (1, gw_mac(0, 0)));
}

#[test]
fn waits_while_no_interface_of_the_subnet_is_up() {
    let mut lan = three_adapters();
    let vipa = ip("10.0.0.50");
    lan.link(0, 0, false);
    lan.link(0, 1, false);
    lan.set_active(0, vipa, true);
    assert_eq!(lan.events(0), vec![Event::Waiting { address: vipa }]);
    assert_eq!(
        lan.gws[0].l2.status().addresses[0].answerer,
        Answerer::Nobody
    );
    lan.advance(Duration::from_secs(5));
    assert!(
        lan.said(lan.t0, vipa).is_empty(),
        "nothing to say while waiting"
    );
    let t = lan.now;
    lan.link(0, 1, true);
    let garps = lan.said(t, vipa);
    assert_eq!(garps.len(), 1, "announced as soon as eth1 is up");
    assert_eq!(garps[0].frame.arp.sender_mac, gw_mac(0, 1));
    assert!(matches!(lan.events(0)[..], [Event::Claimed { .. }]));
    // Both down again: waits again (reported once).
    lan.link(0, 1, false);
    lan.link(0, 2, false);
    assert_eq!(lan.events(0), vec![Event::Waiting { address: vipa }]);
}

#[test]
fn vipa_outside_every_subnet_is_never_answered() {
    let cfg = Config::new(
        vec![iface("eth0", "10.0.0.2", 24)],
        vec![owned(ip("198.51.100.7"), AddressKind::ProxyVipa)],
    );
    let mut lan = Lan::new();
    lan.gateway(cfg, &[0]);
    let c = lan.client(0, ip("10.0.0.9"));
    lan.set_active(0, ip("198.51.100.7"), true);
    assert!(lan.resolve(c, ip("198.51.100.7")).is_empty());
    assert_eq!(
        lan.events(0),
        vec![Event::Waiting {
            address: ip("198.51.100.7")
        }]
    );
}
