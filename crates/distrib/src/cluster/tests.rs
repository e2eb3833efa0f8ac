//! Unit tests of the cluster channel: byte layouts, HMAC, the replay window,
//! and the attacks of #15 — a message signed with the site key that pushes a
//! sender's window ahead, from the wrong address or link, replayed challenges.

use super::*;
use crate::dpt::{Algorithm, PortSet, TargetSet};
use crate::flow::Proto;
use crate::link::{Arrival, LinkId, Node};
use crate::Destination;
use proptest::prelude::*;
use std::net::IpAddr;
use std::time::{Duration, Instant};

fn key() -> ClusterKey {
    ClusterKey::new(b"site-key-for-tests-0123456789abcdef")
}

fn flow() -> FlowKey {
    FlowKey {
        client: "192.0.2.10".parse().unwrap(),
        client_port: 40000,
        dvipa: "198.51.100.7".parse().unwrap(),
        dvipa_port: 443,
        proto: Proto::Tcp,
    }
}

#[test]
fn srvstat_known_bytes() {
    let m = Message::SrvStat {
        target: NodeId(3),
        dvipa: "198.51.100.7".parse().unwrap(),
        port: 443,
        listening: true,
    };
    let b = seal_with(&key(), NodeId(3), 5, &m);
    // Header and body written by hand from the layout in the module docs.
    assert_eq!(
        hex::encode(&b[..HEADER_LEN + 12]),
        concat!(
            "0204000c",
            "00000003",
            "0000000000000005", // header
            "00000003",
            "04c6336407",
            "01bb",
            "01" // body
        )
    );
    // The tag is HMAC-SHA-256 over everything before it.
    let tag = hmac::sign(&key().0, &b[..28]);
    assert_eq!(&b[28..], tag.as_ref());
    assert_eq!(b.len(), 60);
}

#[test]
fn newconn_known_body() {
    let m = Message::NewConn {
        target: NodeId(3),
        conn: flow(),
        kind: NewConnKind::Existing,
        uses_ipsec: true,
    };
    let mut body = Vec::new();
    m.encode_body(&mut body);
    // target, flags (existing|ipsec), proto 6, client 192.0.2.10:40000,
    // DVIPA 198.51.100.7:443.
    assert_eq!(
        hex::encode(&body),
        concat!(
            "00000003",
            "03",
            "06",
            "04c000020a",
            "9c40",
            "04c6336407",
            "01bb"
        )
    );
    assert_eq!(Message::decode_body(5, &body), Ok(m));
    // Flags with reserved bits are refused.
    body[4] = 0x07;
    assert_eq!(
        Message::decode_body(5, &body),
        Err(ClusterError::Malformed("NewConn flags"))
    );
}

#[test]
fn hmac_sha256_rfc4231_case_2() {
    // RFC 4231 test case 2: key "Jefe", data "what do ya want for nothing?".
    let k = ClusterKey::new(b"Jefe");
    let t = hmac::sign(&k.0, b"what do ya want for nothing?");
    assert_eq!(
        hex::encode(t.as_ref()),
        "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
    );
}

#[test]
fn replay_and_forgery_are_refused() {
    let mut a = ClusterEndpoint::new(key(), NodeId(1), 100);
    let mut b = ClusterEndpoint::new(key(), NodeId(2), 1);
    let m1 = a.seal(&Message::Keepalive { link_up: true });
    let m2 = a.seal(&Message::ConnQuery { dvipa: None });
    // Out of order within the window is fine.
    assert_eq!(b.open(&m2).unwrap().0, NodeId(1));
    assert_eq!(b.open(&m1).unwrap().1, Message::Keepalive { link_up: true });
    assert_eq!(
        b.open(&m1),
        Err(ClusterError::Replayed {
            sender: NodeId(1),
            seq: 100
        })
    );
    // Another site key.
    let mut evil = ClusterEndpoint::new(ClusterKey::new(b"other"), NodeId(1), 1000);
    assert_eq!(
        b.open(&evil.seal(&Message::Keepalive { link_up: false })),
        Err(ClusterError::AuthFailed)
    );
    // Reflection of b's own message.
    let own = b.seal(&Message::Keepalive { link_up: true });
    assert!(matches!(b.open(&own), Err(ClusterError::Replayed { .. })));
}

#[test]
fn window_slides() {
    let mut w = ReplayWindow::default();
    assert!(!w.check(0));
    w.update(200);
    assert!(w.check(137));
    assert!(!w.check(136)); // 64 behind the top
    w.update(150);
    assert!(!w.check(150));
    w.update(1000);
    assert!(!w.check(200));
    assert!(w.check(999));
}

fn arb_ip() -> impl Strategy<Value = IpAddr> {
    prop_oneof![
        any::<[u8; 4]>().prop_map(IpAddr::from),
        any::<[u8; 16]>().prop_map(IpAddr::from),
    ]
}

fn arb_flow() -> impl Strategy<Value = FlowKey> {
    (
        any::<bool>(),
        any::<[u8; 16]>(),
        any::<[u8; 16]>(),
        any::<u16>(),
        any::<u16>(),
        any::<bool>(),
    )
        .prop_map(|(v4, a, b, p1, p2, tcp)| {
            let (client, dvipa) = if v4 {
                (
                    IpAddr::from([a[0], a[1], a[2], a[3]]),
                    IpAddr::from([b[0], b[1], b[2], b[3]]),
                )
            } else {
                (IpAddr::from(a), IpAddr::from(b))
            };
            FlowKey {
                client,
                client_port: p1,
                dvipa,
                dvipa_port: p2,
                proto: if tcp { Proto::Tcp } else { Proto::Udp },
            }
        })
}

fn arb_dvipa() -> impl Strategy<Value = DvipaConfig> {
    (
        arb_ip(),
        0u8..3,
        proptest::option::of(proptest::collection::vec(any::<u16>(), 0..5)),
        proptest::option::of(proptest::collection::vec((0u32..1000, any::<u16>()), 0..5)),
        any::<u32>(),
        proptest::collection::vec((any::<u32>(), any::<u8>()), 0..4),
    )
        .prop_map(|(dvipa, alg, ports, targets, gw, backups)| DvipaConfig {
            dvipa,
            algorithm: Algorithm::from_code(alg).unwrap(),
            ports: ports.map_or(PortSet::All, PortSet::List),
            targets: targets.map_or(TargetSet::All, |l| {
                TargetSet::List(l.into_iter().map(|(n, w)| (NodeId(n), w)).collect())
            }),
            routing_gateway: NodeId(gw),
            backups: backups.into_iter().map(|(n, r)| (NodeId(n), r)).collect(),
        })
}

fn arb_message() -> impl Strategy<Value = Message> {
    prop_oneof![
        (any::<bool>(), any::<bool>()).prop_map(|(g, l)| Message::Hello {
            role: if g { Role::Gateway } else { Role::Target },
            link_up: l
        }),
        any::<bool>().prop_map(|l| Message::Keepalive { link_up: l }),
        proptest::collection::vec((arb_dvipa(), any::<u64>()), 0..4).prop_map(|v| {
            Message::DvipaList(
                v.into_iter()
                    .map(|(cfg, epoch)| Announcement { cfg, epoch })
                    .collect(),
            )
        }),
        any::<u64>().prop_map(|nonce| Message::Challenge { nonce }),
        any::<u64>().prop_map(|nonce| Message::ChallengeAck { nonce }),
        (any::<u32>(), arb_ip(), any::<u16>(), any::<bool>()).prop_map(|(t, d, p, l)| {
            Message::SrvStat {
                target: NodeId(t),
                dvipa: d,
                port: p,
                listening: l,
            }
        }),
        (any::<u32>(), arb_flow(), any::<bool>(), any::<bool>()).prop_map(|(t, f, e, i)| {
            Message::NewConn {
                target: NodeId(t),
                conn: f,
                kind: if e {
                    NewConnKind::Existing
                } else {
                    NewConnKind::Opened
                },
                uses_ipsec: i,
            }
        }),
        (any::<u32>(), arb_flow()).prop_map(|(t, f)| Message::ConnEnd {
            target: NodeId(t),
            conn: f
        }),
        proptest::option::of(arb_ip()).prop_map(|d| Message::ConnQuery { dvipa: d }),
    ]
}

proptest! {
    #[test]
    fn round_trip(m in arb_message(), seq in 1u64..u64::MAX) {
        let mut rx = ClusterEndpoint::new(key(), NodeId(99), 1);
        let b = seal_with(&key(), NodeId(7), seq, &m);
        let mut body = Vec::new();
        m.encode_body(&mut body);
        prop_assert_eq!(Message::decode_body(m.type_code(), &body), Ok(m.clone()));
        if matches!(m, Message::ChallengeAck { .. }) {
            // An answer to no pending challenge is refused.
            let refused = matches!(rx.open(&b), Err(ClusterError::Replayed { .. }));
            prop_assert!(refused);
        } else {
            prop_assert_eq!(rx.open(&b), Ok((NodeId(7), m)));
        }
    }

    #[test]
    fn tampered_byte_fails_auth(m in arb_message(), pos in any::<proptest::sample::Index>(), flip in 1u8..=255) {
        let mut rx = ClusterEndpoint::new(key(), NodeId(99), 1);
        let mut b = seal_with(&key(), NodeId(7), 42, &m);
        let i = pos.index(b.len());
        b[i] ^= flip;
        let r = rx.open(&b);
        // The version byte is checked before the HMAC; a changed length
        // makes the message end in the wrong place: both are refusals too.
        prop_assert!(matches!(
            r,
            Err(ClusterError::AuthFailed | ClusterError::Version(_) | ClusterError::Truncated)
        ), "{:?}", r);
    }

    #[test]
    fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..300)) {
        let mut rx = ClusterEndpoint::new(key(), NodeId(99), 1);
        let _ = rx.open(&data);
        if let Some((&ty, body)) = data.split_first() {
            let _ = Message::decode_body(ty % 10, body);
        }
    }
}

fn ka() -> Message {
    Message::Keepalive { link_up: true }
}

/// Deliver everything `from` wants sent (control messages) to `to`; returns
/// how many were delivered.
fn deliver_control(from: &mut ClusterEndpoint, to: &mut ClusterEndpoint) -> usize {
    let mut n = 0;
    while let Some(tx) = from.poll_control() {
        assert_eq!(tx.to, Destination::Node(to.id()));
        to.open(&tx.bytes).unwrap();
        n += 1;
    }
    n
}

#[test]
fn a_far_ahead_forgery_is_held_and_the_real_sender_resyncs() {
    let mut gw = ClusterEndpoint::new(key(), NodeId(1), 5_000);
    let mut t = ClusterEndpoint::new(key(), NodeId(11), 1_000);
    assert_eq!(gw.open(&t.seal(&ka())).unwrap().0, NodeId(11));
    // The attack of #15: one message signed with the site key, numbered far
    // ahead of the target's real counter.
    let forged = seal_with(&key(), NodeId(11), u64::MAX - 1, &ka());
    assert_eq!(
        gw.open(&forged),
        Err(ClusterError::Unsynced {
            sender: NodeId(11),
            seq: u64::MAX - 1
        })
    );
    // Not applied; the target is challenged, answers, and the window follows
    // the target's real counter: the forged message is not released.
    assert_eq!(deliver_control(&mut gw, &mut t), 1);
    assert_eq!(deliver_control(&mut t, &mut gw), 1);
    assert_eq!(gw.poll_released(), None);
    for _ in 0..100 {
        assert_eq!(gw.open(&t.seal(&ka())).unwrap().0, NodeId(11));
    }
    // The forged message replayed is still outside.
    assert!(matches!(
        gw.open(&forged),
        Err(ClusterError::Unsynced { .. })
    ));
}

#[test]
fn a_forgery_inside_the_jump_bound_cannot_lock_the_sender_out() {
    let mut gw = ClusterEndpoint::new(key(), NodeId(1), 5_000);
    let mut t = ClusterEndpoint::new(key(), NodeId(11), 1_000);
    gw.open(&t.seal(&ka())).unwrap();
    // A key holder on the link pushes the window MAX_JUMP ahead (the most one
    // message can): accepted, the node cannot tell it from a burst of loss.
    let forged = seal_with(&key(), NodeId(11), 1_000 + MAX_JUMP, &ka());
    gw.open(&forged).unwrap();
    // The target's next real message is now far behind: held, challenged...
    let real = t.seal(&Message::SrvStat {
        target: NodeId(11),
        dvipa: "198.51.100.7".parse().unwrap(),
        port: 80,
        listening: true,
    });
    assert!(matches!(gw.open(&real), Err(ClusterError::Unsynced { .. })));
    deliver_control(&mut gw, &mut t);
    deliver_control(&mut t, &mut gw);
    // ... and applied once the target answered: the window went back down.
    let (from, m) = gw.poll_released().unwrap();
    assert_eq!(from, NodeId(11));
    assert!(matches!(m, Message::SrvStat { .. }));
    assert!(gw.open(&t.seal(&ka())).is_ok());
}

#[test]
fn a_restarted_sender_resyncs_and_its_held_messages_apply_in_order() {
    let mut gw = ClusterEndpoint::new(key(), NodeId(1), 5_000);
    let mut t = ClusterEndpoint::new(key(), NodeId(11), 1_000);
    gw.open(&t.seal(&ka())).unwrap();
    // The target restarts: its clock-seeded counter jumps far ahead.
    let mut t = ClusterEndpoint::new(key(), NodeId(11), 9_000_000_000);
    let t0 = Instant::now();
    let msgs: Vec<Message> = (0..3u16)
        .map(|p| Message::SrvStat {
            target: NodeId(11),
            dvipa: "198.51.100.7".parse().unwrap(),
            port: p,
            listening: true,
        })
        .collect();
    for m in &msgs {
        let r = gw.receive(Some(t0), None, &t.seal(m));
        assert!(matches!(r, Err(ClusterError::Unsynced { .. })), "{r:?}");
    }
    // One challenge, not three.
    assert_eq!(deliver_control(&mut gw, &mut t), 1);
    assert_eq!(deliver_control(&mut t, &mut gw), 1);
    let released: Vec<Message> = std::iter::from_fn(|| gw.poll_released())
        .map(|(_, m)| m)
        .collect();
    assert_eq!(released, msgs);
    assert!(gw.open(&t.seal(&ka())).is_ok());
}

#[test]
fn a_lost_challenge_is_renewed_after_a_while() {
    let mut gw = ClusterEndpoint::new(key(), NodeId(1), 5_000);
    let mut t = ClusterEndpoint::new(key(), NodeId(11), 1_000);
    gw.open(&t.seal(&ka())).unwrap();
    let mut t = ClusterEndpoint::new(key(), NodeId(11), 9_000_000_000);
    let t0 = Instant::now();
    let _ = gw.receive(Some(t0), None, &t.seal(&ka()));
    let lost = gw.poll_control().unwrap();
    // Within RECHALLENGE: no new challenge.
    let _ = gw.receive(Some(t0 + RECHALLENGE / 2), None, &t.seal(&ka()));
    assert!(gw.poll_control().is_none());
    // After it: a new nonce; the answer to the lost one no longer counts.
    let _ = gw.receive(Some(t0 + RECHALLENGE), None, &t.seal(&ka()));
    let renewed = gw.poll_control().unwrap();
    t.open(&lost.bytes).unwrap();
    let stale_ack = t.poll_control().unwrap();
    assert!(matches!(
        gw.open(&stale_ack.bytes),
        Err(ClusterError::Replayed { .. })
    ));
    t.open(&renewed.bytes).unwrap();
    deliver_control(&mut t, &mut gw);
    assert!(gw.open(&t.seal(&ka())).is_ok());
}

#[test]
fn each_challenge_is_answered_once_and_acks_answer_only_pending_ones() {
    let mut gw = ClusterEndpoint::new(key(), NodeId(1), 5_000);
    let mut t = ClusterEndpoint::new(key(), NodeId(11), 1_000);
    let ch = gw.seal(&Message::Challenge { nonce: 42 });
    t.open(&ch).unwrap();
    t.open(&ch).unwrap();
    assert_eq!(std::iter::from_fn(|| t.poll_control()).count(), 1);
    // An ack nobody asked for (gw has no pending challenge for t).
    let ack = t.seal(&Message::ChallengeAck { nonce: 42 });
    assert!(matches!(gw.open(&ack), Err(ClusterError::Replayed { .. })));
}

#[test]
fn messages_must_come_from_their_senders_address_and_link() {
    let mut gw = ClusterEndpoint::new(key(), NodeId(1), 5_000);
    let t_addr: IpAddr = "10.9.1.2".parse().unwrap();
    gw.nodes_mut().insert(Node {
        id: NodeId(11),
        role: Role::Target,
        name: "web-1".into(),
        address: t_addr,
        link: LinkId(3),
    });
    let mut t = ClusterEndpoint::new(key(), NodeId(11), 1_000);
    let from = |link, src| {
        Some(Arrival {
            link: LinkId(link),
            src,
        })
    };
    let internet: IpAddr = "203.0.113.66".parse().unwrap();
    // From the internet, from the right address on another link, from another
    // address on the right link: refused before the HMAC is even computed.
    for (link, src) in [(3, internet), (4, t_addr), (3, "10.9.1.6".parse().unwrap())] {
        let r = gw.receive(None, from(link, src), &t.seal(&ka()));
        assert_eq!(
            r,
            Err(ClusterError::Misrouted {
                sender: NodeId(11),
                src,
                link
            })
        );
    }
    // A node the map does not know.
    let mut stranger = ClusterEndpoint::new(key(), NodeId(77), 1);
    assert!(matches!(
        gw.receive(None, from(3, t_addr), &stranger.seal(&ka())),
        Err(ClusterError::Misrouted { .. })
    ));
    // The real thing; refused messages did not move the window.
    assert!(gw.receive(None, from(3, t_addr), &t.seal(&ka())).is_ok());
    assert!(gw.receive(None, from(3, t_addr), &t.seal(&ka())).is_ok());
}

#[test]
fn announcement_carries_its_epoch() {
    let a = Announcement {
        cfg: DvipaConfig {
            dvipa: "fd00:30::30".parse().unwrap(),
            ports: PortSet::All,
            targets: TargetSet::All,
            algorithm: Algorithm::RoundRobin,
            routing_gateway: NodeId(2),
            backups: vec![],
        },
        epoch: 0x0102_0304_0506_0708,
    };
    let mut body = Vec::new();
    Message::DvipaList(vec![a.clone()]).encode_body(&mut body);
    // count 1 · ip 6 fd00:30::30 · RR · all ports · all targets · gw 2 · no
    // backups · epoch.
    assert_eq!(
        hex::encode(&body),
        concat!(
            "0001",
            "06fd000030000000000000000000000030",
            "00",
            "00",
            "00",
            "00000002",
            "00",
            "0102030405060708"
        )
    );
    assert_eq!(
        Message::decode_body(3, &body),
        Ok(Message::DvipaList(vec![a]))
    );
    let _ = (Proto::Tcp, Duration::ZERO);
}
