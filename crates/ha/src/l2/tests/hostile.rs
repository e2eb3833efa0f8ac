//! Malformed and spoofed ARP: ignored and counted, never a change of ownership; a
//! host claiming an owned address is a conflict, logged once per address per
//! interval (not per packet) and defended with one announcement per
//! DEFEND_INTERVAL (RFC 5227 §2.4).

use std::time::{Duration, Instant};

use plexgate_wire::arp::{ArpFrameRepr, ArpOperation, ArpRepr, EthernetAddress};
use proptest::prelude::*;

use super::harness::{gw_mac, ip, Lan};
use super::one_lan;
use crate::l2::{Event, IfaceId, L2};

const MALLORY: EthernetAddress = EthernetAddress([0x02, 0x66, 0, 0, 0, 1]);

fn active_pair() -> Lan {
    let vipa = ip("10.0.0.100");
    let mut lan = Lan::new();
    lan.gateway(one_lan("10.0.0.2", vipa), &[0]);
    lan.gateway(one_lan("10.0.0.3", vipa), &[0]);
    lan.client(0, ip("10.0.0.50"));
    lan.set_active(0, vipa, true);
    lan.advance(Duration::from_secs(2));
    lan
}

fn frame(eth_src: EthernetAddress, arp: ArpRepr) -> [u8; 42] {
    ArpFrameRepr {
        eth_dst: EthernetAddress::BROADCAST,
        eth_src,
        arp,
    }
    .to_bytes()
}

#[test]
fn spoofed_claims_are_conflicts_logged_once_and_defended() {
    let mut lan = active_pair();
    let vipa = ip("10.0.0.100");
    lan.events(0);
    let t = lan.now;
    let spoof_reply = frame(
        MALLORY,
        ArpRepr {
            operation: ArpOperation::Reply,
            sender_mac: MALLORY,
            sender_ip: vipa,
            target_mac: EthernetAddress::BROADCAST,
            target_ip: vipa,
        },
    );
    let spoof_garp = frame(MALLORY, ArpRepr::announcement(MALLORY, vipa));
    for n in 0..1000 {
        let f = if n % 2 == 0 { spoof_reply } else { spoof_garp };
        lan.deliver(0, None, &f);
        lan.pump();
        lan.advance(Duration::from_millis(10));
    }
    let c = lan.gws[0].l2.counters();
    assert_eq!(c.conflicts, 1000);
    assert_eq!(c.ignored, 1000);
    let conflicts: Vec<Event> = lan
        .events(0)
        .into_iter()
        .filter(|e| matches!(e, Event::Conflict { .. }))
        .collect();
    assert_eq!(conflicts.len(), 1, "logged once in the 10 s of flood");
    assert!(matches!(
        conflicts[0],
        Event::Conflict { address, claimed_by: MALLORY, suppressed: 0, defended: true, .. } if address == vipa
    ));
    // Defended once per 10 s: the flood lasted 10 s, so at most two announcements.
    let defences = lan
        .said(t, vipa)
        .iter()
        .filter(|w| w.frame.arp.sender_mac == gw_mac(0, 0))
        .count();
    assert!((1..=2).contains(&defences), "{defences}");
    // Ownership unchanged; the client's entry was restored by the defence (the
    // last word in the harness is the flood's, so ask again).
    assert_eq!(lan.gws[0].l2.is_active(vipa), Some(true));
    let r = lan.resolve(0, vipa);
    assert_eq!((r.len(), r[0].arp.sender_mac), (1, gw_mac(0, 0)));
    // The standby only notes who else claims the address.
    assert_eq!(lan.gws[1].l2.counters().conflicts, 0);
    // After the log interval the next conflict is logged with the count between.
    lan.advance(Duration::from_secs(60));
    lan.deliver(0, None, &spoof_garp);
    lan.pump();
    let ev = lan.events(0);
    assert!(
        ev.iter().any(|e| matches!(
            e,
            Event::Conflict {
                suppressed: 999,
                ..
            }
        )),
        "{ev:?}"
    );
}

#[test]
fn impossible_senders_are_spoofed() {
    let mut lan = active_pair();
    let vipa = ip("10.0.0.100");
    let group = EthernetAddress([0x01, 0, 0x5e, 0, 0, 1]);
    let bad = [
        frame(group, ArpRepr::request(MALLORY, ip("10.0.0.9"), vipa)),
        frame(MALLORY, ArpRepr::request(group, ip("10.0.0.9"), vipa)),
        frame(
            MALLORY,
            ArpRepr::request(EthernetAddress::ZERO, ip("10.0.0.9"), vipa),
        ),
        frame(MALLORY, ArpRepr::request(MALLORY, ip("224.0.0.1"), vipa)),
        frame(
            MALLORY,
            ArpRepr::request(MALLORY, ip("255.255.255.255"), vipa),
        ),
    ];
    let sent = lan.gws[0].l2.counters().sent;
    for f in &bad {
        lan.deliver(0, None, f);
    }
    lan.pump();
    let c = lan.gws[0].l2.counters();
    assert_eq!(
        (c.spoofed, c.ignored, c.sent),
        (5, 5, sent),
        "no answer to any"
    );
    // An RFC 5227 probe (sender IP 0.0.0.0) for the VIPA is answered.
    lan.deliver(
        0,
        None,
        &frame(MALLORY, ArpRepr::request(MALLORY, ip("0.0.0.0"), vipa)),
    );
    lan.pump();
    assert_eq!(lan.gws[0].l2.counters().answered, 1);
}

#[test]
fn malformed_flood_is_counted_and_changes_nothing() {
    let mut lan = active_pair();
    let vipa = ip("10.0.0.100");
    let before = lan.gws[0].l2.status().addresses;
    let good = frame(MALLORY, ArpRepr::request(MALLORY, ip("10.0.0.9"), vipa));
    let now = lan.now;
    let l2 = &mut lan.gws[0].l2;
    let mut n = 0u64;
    for len in 0..good.len() {
        l2.handle_frame(now, IfaceId(0), &good[..len]);
        n += 1;
    }
    // EtherType IPv4, hardware type 6, protocol 0x08dd, lengths 8/4 and 6/16,
    // operation 3.
    for (at, v) in [
        (13, 0x00u8),
        (15, 6),
        (17, 0xdd),
        (18, 8),
        (19, 16),
        (21, 3),
    ] {
        let mut f = good;
        f[at] = v;
        l2.handle_frame(now, IfaceId(0), &f);
        n += 1;
    }
    let c = lan.gws[0].l2.counters();
    assert_eq!((c.malformed, c.ignored, c.answered), (n, n, 0));
    let mut after = lan.gws[0].l2.status().addresses;
    after
        .iter_mut()
        .zip(&before)
        .for_each(|(a, b)| a.seen_elsewhere = b.seen_elsewhere);
    assert_eq!(after, before);
    assert_eq!(lan.resolve(0, vipa).len(), 1);
}

proptest! {
    /// Whatever arrives, on whichever interface, the duty table (who answers for
    /// what, where, with which MAC) stays as takeover set it.
    #[test]
    fn arbitrary_frames_never_change_ownership(
        frames in prop::collection::vec((prop::collection::vec(any::<u8>(), 0..64), any::<bool>()), 0..64),
        tails in prop::collection::vec(any::<[u8; 28]>(), 0..32),
    ) {
        let vipa = ip("10.0.0.100");
        let mut l2 = L2::new(one_lan("10.0.0.2", vipa)).unwrap();
        let t0 = Instant::now();
        l2.set_link(t0, IfaceId(0), true, Some(gw_mac(0, 0)));
        l2.set_active(t0, vipa, true).unwrap();
        let owner = |l2: &L2| {
            let s = l2.status();
            (s.addresses[0].answerer, s.addresses[0].interface.clone(), s.addresses[0].mac)
        };
        let before = owner(&l2);
        for (i, (f, arp_type)) in frames.iter().enumerate() {
            let mut f = f.clone();
            if *arp_type && f.len() >= 14 {
                f[12] = 0x08;
                f[13] = 0x06;
            }
            l2.handle_frame(t0 + Duration::from_millis(i as u64), IfaceId(0), &f);
            l2.handle_frame(t0, IfaceId(7), &f);
        }
        // Well-formed headers with arbitrary addresses.
        for t in &tails {
            let mut f = frame(MALLORY, ArpRepr::request(MALLORY, ip("10.0.0.9"), vipa)).to_vec();
            f[22..42].copy_from_slice(&t[8..28]);
            l2.handle_frame(t0, IfaceId(0), &f);
        }
        l2.handle_timeout(t0 + Duration::from_secs(100));
        prop_assert_eq!(owner(&l2), before);
        while let Some(t) = l2.poll_transmit() {
            let f = ArpFrameRepr::parse(&t.frame).unwrap();
            prop_assert!(f.arp.operation == ArpOperation::Reply || f.arp.sender_ip == vipa);
        }
    }
}
