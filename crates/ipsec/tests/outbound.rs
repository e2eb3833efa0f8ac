//! The outbound SA of a packet is the one its SPD rule names whose selectors fit
//! the packet (RFC 4301 §5.1), and one peer never holds another's addresses or
//! touches another's SAs (SPIs collide across peers; the SAD keys outbound SAs
//! by its own handle).

use plexgate_ipsec::{
    ChildSaConfig, EspTransform, Lifetime, Mode, SaError, SaParams, Sad, TrafficSelector,
};
use plexgate_wire::ip::FiveTuple;
use std::time::Instant;

fn ts(s: &str) -> TrafficSelector {
    // "10.31.0.0/24" or "10.31.0.5/32[6/7000]"
    let (net, rest) = s.split_once('[').unwrap_or((s, ""));
    let t = TrafficSelector::from_net(net.parse().unwrap());
    match rest.trim_end_matches(']').split_once('/') {
        Some((p, port)) => {
            let port: u16 = port.parse().unwrap();
            t.with_protocol(p.parse().unwrap()).with_ports(port, port)
        }
        None => t,
    }
}

/// Our (inbound, outbound) SAs of a Child SA with the given selectors and SPIs.
fn child(
    peer: &str,
    name: &str,
    local: &[&str],
    remote: &[&str],
    spis: (u32, u32),
) -> (SaParams, SaParams) {
    let t = EspTransform::AesGcm128;
    let keymat = vec![0x42; 2 * t.keymat_len()];
    let cfg = ChildSaConfig {
        transform: t,
        esn: false,
        mode: Mode::Tunnel,
        replay_window: 1024,
        lifetime: Lifetime::default(),
        local_ts: local.iter().map(|s| ts(s)).collect(),
        remote_ts: remote.iter().map(|s| ts(s)).collect(),
        local_addr: "198.51.100.1".parse().unwrap(),
        remote_addr: "203.0.113.5".parse().unwrap(),
        encap: None,
        peer: peer.into(),
        child: name.into(),
    };
    SaParams::pair_from_keymat(&cfg, &keymat, false, spis.0, spis.1).unwrap()
}

fn tcp(src: [u8; 4], dst: [u8; 4], sport: u16, dport: u16) -> FiveTuple {
    let mut v = Vec::new();
    etherparse::PacketBuilder::ipv4(src, dst, 64)
        .tcp(sport, dport, 1, 1000)
        .write(&mut v, b"x")
        .unwrap();
    FiveTuple::parse(&v).unwrap()
}

/// Issue #10: two Child SAs to one client, `office` for a subnet and `web` for
/// one host and port installed after it. Replies for `office` leave in the
/// office SA even to the web host's address; web traffic in the web SA.
#[test]
fn two_children_to_one_peer_each_packet_in_its_rules_sa() {
    let now = Instant::now();
    let mut sad = Sad::new();
    let (i1, o1) = child(
        "branch",
        "office",
        &["10.31.0.0/24"],
        &["172.16.0.0/16"],
        (0x100, 0x200),
    );
    let (i2, o2) = child(
        "branch",
        "web",
        &["10.31.0.5/32[6/7000]"],
        &["172.16.0.0/16"],
        (0x101, 0x201),
    );
    let office = sad.insert_child(i1, o1, "203.0.113.5", now).unwrap();
    let web = sad.insert_child(i2, o2, "203.0.113.5", now).unwrap();
    let k_office = sad.child_key("branch", "office").unwrap();
    let k_web = sad.child_key("branch", "web").unwrap();
    // A reply from 10.31.0.5:80 (office rule) to 172.16.1.1.
    let t = tcp([10, 31, 0, 5], [172, 16, 1, 1], 80, 40000);
    assert_eq!(sad.select_outbound(k_office, &t), Some(office.out));
    // A reply from the web port: the web rule's SA.
    let t = tcp([10, 31, 0, 5], [172, 16, 1, 1], 7000, 40000);
    assert_eq!(sad.select_outbound(k_web, &t), Some(web.out));
    // A packet the web SA's selectors do not cover gets no web SA.
    let t = tcp([10, 31, 0, 6], [172, 16, 1, 1], 7000, 40000);
    assert_eq!(sad.select_outbound(k_web, &t), None);
    assert_eq!(sad.outbound(office.out).unwrap().spi(), 0x200);
    assert_eq!(sad.child_of_outbound(web.out), Some(0x101));
}

/// Issue #16: road warriors under one group config. A second identity that
/// narrows its selectors to the first one's inner address is refused; the first
/// keeps receiving its replies. The same identity re-authenticating may
/// replace its own SA (newest wins).
#[test]
fn a_peer_cannot_take_another_peers_inner_address() {
    let now = Instant::now();
    let mut sad = Sad::new();
    let (ia, oa) = child(
        "rw",
        "web",
        &["10.100.0.10/32"],
        &["192.168.77.1/32"],
        (0x100, 0x5000),
    );
    let alice = sad.insert_child(ia, oa, "alice@example", now).unwrap();
    let (ib, ob) = child(
        "rw",
        "web",
        &["10.100.0.10/32"],
        &["192.168.77.1/32"],
        (0x101, 0x6000),
    );
    assert_eq!(
        sad.insert_child(ib, ob, "mallory@example", now),
        Err(SaError::SelectorsHeld {
            owner: "alice@example".into()
        })
    );
    // Nor by a wider selector that contains Alice's address.
    let (ib, ob) = child(
        "rw",
        "web",
        &["10.100.0.10/32"],
        &["192.168.77.0/24"],
        (0x102, 0x6001),
    );
    assert!(sad.insert_child(ib, ob, "mallory@example", now).is_err());
    assert!(
        sad.inbound(0x101).is_none() && sad.inbound(0x102).is_none(),
        "nothing half-installed"
    );
    let k = sad.child_key("rw", "web").unwrap();
    let t = tcp([10, 100, 0, 10], [192, 168, 77, 1], 443, 50000);
    assert_eq!(sad.select_outbound(k, &t), Some(alice.out));
    // Bob, elsewhere, is fine.
    let (ib, ob) = child(
        "rw",
        "web",
        &["10.100.0.10/32"],
        &["192.168.77.2/32"],
        (0x103, 0x7000),
    );
    let bob = sad.insert_child(ib, ob, "bob@example", now).unwrap();
    let t_bob = tcp([10, 100, 0, 10], [192, 168, 77, 2], 443, 50000);
    assert_eq!(sad.select_outbound(k, &t_bob), Some(bob.out));
    assert_eq!(sad.select_outbound(k, &t), Some(alice.out));
    // Alice again (reauthentication): her new SA carries her traffic.
    let (ia2, oa2) = child(
        "rw",
        "web",
        &["10.100.0.10/32"],
        &["192.168.77.1/32"],
        (0x104, 0x5001),
    );
    let alice2 = sad.insert_child(ia2, oa2, "alice@example", now).unwrap();
    assert_eq!(sad.select_outbound(k, &t), Some(alice2.out));
    sad.remove_child(alice.spi_in);
    assert_eq!(sad.select_outbound(k, &t), Some(alice2.out));
}

/// Issue #16: two peers pick the same SPI for their inbound SAs (our outbound);
/// both are installed, and deleting one's Child SA leaves the other's intact.
#[test]
fn outbound_spi_collisions_across_peers_are_harmless() {
    let now = Instant::now();
    let mut sad = Sad::new();
    let (ia, oa) = child(
        "rw",
        "web",
        &["10.100.0.10/32"],
        &["192.168.77.1/32"],
        (0x100, 0xcafe),
    );
    let (ib, ob) = child(
        "rw",
        "web",
        &["10.100.0.10/32"],
        &["192.168.77.2/32"],
        (0x101, 0xcafe),
    );
    let a = sad.insert_child(ia, oa, "alice@example", now).unwrap();
    let b = sad.insert_child(ib, ob, "bob@example", now).unwrap();
    assert_ne!(a.out, b.out);
    let k = sad.child_key("rw", "web").unwrap();
    let t_a = tcp([10, 100, 0, 10], [192, 168, 77, 1], 443, 50000);
    let t_b = tcp([10, 100, 0, 10], [192, 168, 77, 2], 443, 50000);
    sad.remove_child(b.spi_in);
    assert_eq!(sad.select_outbound(k, &t_a), Some(a.out));
    assert_eq!(sad.select_outbound(k, &t_b), None);
    let mut buf = vec![0u8; 256];
    let mut inner = Vec::new();
    etherparse::PacketBuilder::ipv4([10, 100, 0, 10], [192, 168, 77, 1], 64)
        .tcp(443, 50000, 1, 1000)
        .write(&mut inner, b"hello")
        .unwrap();
    assert!(
        sad.seal(now, a.out, &inner, 4, &mut buf).is_ok(),
        "Alice's SA still seals"
    );
    assert!(sad.inbound(0x100).is_some());
}

/// A rekeyed Child SA: the replacement carries new packets at once, the old SA
/// stays installed (for packets in flight) until it is removed.
#[test]
fn a_retired_sa_is_no_longer_chosen() {
    let now = Instant::now();
    let mut sad = Sad::new();
    let (i1, o1) = child(
        "branch",
        "office",
        &["10.31.0.0/24"],
        &["172.16.0.0/16"],
        (0x100, 0x200),
    );
    let old = sad.insert_child(i1, o1, "gw", now).unwrap();
    let (i2, o2) = child(
        "branch",
        "office",
        &["10.31.0.0/24"],
        &["172.16.0.0/16"],
        (0x101, 0x201),
    );
    let new = sad.insert_child(i2, o2, "gw", now).unwrap();
    sad.retire_outbound(old.out);
    let k = sad.child_key("branch", "office").unwrap();
    let t = tcp([10, 31, 0, 5], [172, 16, 1, 1], 80, 40000);
    assert_eq!(sad.select_outbound(k, &t), Some(new.out));
    sad.retire_outbound(new.out);
    assert_eq!(sad.select_outbound(k, &t), None);
    assert!(sad.outbound(old.out).is_some() && sad.outbound(new.out).is_some());
    assert_eq!(sad.remove_child(old.spi_in).map(|s| s.spi()), Some(0x200));
}
