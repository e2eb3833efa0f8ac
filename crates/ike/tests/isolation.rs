//! One peer must never touch another's SAs (issue #16, the IKE side): each test
//! reproduces what an authenticated peer could do to another before, with scripted
//! initiators ([`Rogue`]) against one responder [`Endpoint`].

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::rogue::{auth_with_child, esp_sa, notify_kinds, Rogue};
use common::*;
use plexgate_ike::config::{ChildConfig, Config, EspProposal, IkeProposal, Limits, PeerConfig};
use plexgate_ike::message::{exchange, notify, protocol, Payload};
use plexgate_ike::{Endpoint, Event, SeededRng, TrafficSelector};

const ALICE: &str = "198.51.100.1:500";
const BOB: &str = "198.51.100.2:500";
const GROUP_PSK: &[u8] = b"group-secret";

fn ts(a: &str) -> TrafficSelector {
    TrafficSelector::host(a.parse().unwrap())
}

/// A road-warrior config: any identity with the group PSK, inner addresses from
/// 10.31.0.0/24, to 10.100.0.10.
fn road_warriors(name: &str, remote_id: &str, psk: &[u8]) -> PeerConfig {
    let child = ChildConfig::new(
        "web",
        vec![ts("10.100.0.10")],
        vec![TrafficSelector::prefix("10.31.0.0".parse().unwrap(), 24)],
        vec![EspProposal::AES128GCM16],
    );
    let mut p = PeerConfig::psk(name, "gw@example", remote_id, psk, child);
    p.local_addr = Some(addr(GW));
    p
}

fn gateway(peers: Vec<PeerConfig>, limits: Limits) -> Endpoint {
    Endpoint::new(
        Arc::new(Config { peers, limits }),
        Box::new(SeededRng::new(3)),
    )
}

fn events(e: &mut Endpoint) -> Vec<Event> {
    std::iter::from_fn(|| e.poll_event()).collect()
}

/// IKE_SA_INIT from `from` (AES-GCM-128, X25519).
fn init(gw: &mut Endpoint, now: Instant, from: &str, seed: u64) -> Rogue {
    Rogue::init(
        gw,
        now,
        addr(from),
        addr(GW),
        IkeProposal::AES128GCM16_PRFSHA256_X25519,
        32,
        seed,
    )
    .unwrap_or_else(|p| panic!("IKE_SA_INIT refused: {p:?}"))
}

/// IKE_SA_INIT and IKE_AUTH as `id` with one Child SA `inner` === 10.100.0.10.
#[allow(clippy::too_many_arguments)]
fn connect(
    gw: &mut Endpoint,
    now: Instant,
    from: &str,
    id: &str,
    psk: &[u8],
    inner: &str,
    extra: Vec<Payload>,
    seed: u64,
) -> (Rogue, Vec<Payload>) {
    let mut r = init(gw, now, from, seed);
    let p = auth_with_child(&r, id, psk, ts(inner), ts("10.100.0.10"), extra);
    let answer = r.request(gw, now, exchange::IKE_AUTH, &p).expect("answer");
    (r, answer)
}

fn has_child(answer: &[Payload]) -> bool {
    answer.iter().any(|p| matches!(p, Payload::Sa(_)))
}

#[test]
fn child_events_name_their_peer_and_ike_sa() {
    let now = Instant::now();
    let mut gw = gateway(
        vec![
            road_warriors("alice", "alice@example", b"alice-psk"),
            road_warriors("bob", "bob@example", b"bob-psk"),
        ],
        Limits::default(),
    );
    connect(
        &mut gw,
        now,
        ALICE,
        "alice@example",
        b"alice-psk",
        "10.31.0.5",
        vec![],
        1,
    );
    connect(
        &mut gw,
        now,
        BOB,
        "bob@example",
        b"bob-psk",
        "10.31.0.6",
        vec![],
        2,
    );
    let ev = events(&mut gw);
    let ups: Vec<(String, String)> = ev
        .iter()
        .filter_map(|e| match e {
            Event::ChildSaUp { ike, peer, child } => {
                Some((peer.clone(), format!("{ike}/{}", child.ts_remote[0])))
            }
            _ => None,
        })
        .collect();
    // Both children are called "web"; the peer tells them apart.
    assert_eq!(ups.len(), 2);
    assert_eq!(ups[0].0, "alice");
    assert_eq!(ups[1].0, "bob");
    let st = gw.sas(now);
    for (peer, _) in &ups {
        let sa = st.iter().find(|s| s.peer.as_deref() == Some(peer)).unwrap();
        assert!(ups
            .iter()
            .any(|(p, k)| p == peer && k.starts_with(&sa.id.to_string())));
    }
}

#[test]
fn a_group_psk_member_cannot_take_another_members_inner_address() {
    let now = Instant::now();
    let mut gw = gateway(
        vec![road_warriors("rw", "%any", GROUP_PSK)],
        Limits::default(),
    );
    let (_, a) = connect(
        &mut gw,
        now,
        ALICE,
        "alice@example",
        GROUP_PSK,
        "10.31.0.5",
        vec![],
        1,
    );
    assert!(has_child(&a));
    // Bob knows the group PSK and narrows his TSi to Alice's inner address.
    let (_, b) = connect(
        &mut gw,
        now,
        BOB,
        "bob@example",
        GROUP_PSK,
        "10.31.0.5",
        vec![],
        2,
    );
    assert!(!has_child(&b));
    assert_eq!(notify_kinds(&b), vec![notify::TS_UNACCEPTABLE]);
    let ev = events(&mut gw);
    let refused = ev.iter().find_map(|e| match e {
        Event::ChildSaFailed { peer, reason, .. } => Some((peer.clone(), reason.clone())),
        _ => None,
    });
    let (peer, reason) = refused.expect("a ChildSaFailed for Bob");
    assert_eq!(peer, "rw");
    assert!(
        reason.contains("10.31.0.5") && reason.contains("alice@example"),
        "{reason}"
    );
    // His own address is fine, and Alice may come back (same identity).
    let (_, b) = connect(
        &mut gw,
        now,
        BOB,
        "bob@example",
        GROUP_PSK,
        "10.31.0.6",
        vec![],
        3,
    );
    assert!(has_child(&b));
    let (_, a2) = connect(
        &mut gw,
        now,
        ALICE,
        "alice@example",
        GROUP_PSK,
        "10.31.0.5",
        vec![],
        4,
    );
    assert!(
        has_child(&a2),
        "the same identity re-authenticating keeps its address"
    );
}

#[test]
fn dynamic_means_the_peers_own_address() {
    let now = Instant::now();
    let mut rw = road_warriors("rw", "%any", GROUP_PSK);
    rw.children[0].remote_ts = vec![];
    rw.children[0].remote_dynamic = vec![TrafficSelector::prefix("0.0.0.0".parse().unwrap(), 0)];
    let mut gw = gateway(vec![rw], Limits::default());
    // Whatever it proposes, Alice gets her own (outer) address and nothing else.
    let mut r = init(&mut gw, now, ALICE, 1);
    let any = TrafficSelector::prefix("0.0.0.0".parse().unwrap(), 0);
    let p = auth_with_child(
        &r,
        "alice@example",
        GROUP_PSK,
        any,
        ts("10.100.0.10"),
        vec![],
    );
    let a = r.request(&mut gw, now, exchange::IKE_AUTH, &p).unwrap();
    let tsi = a.iter().find_map(|x| match x {
        Payload::TsI(t) => Some(t.clone()),
        _ => None,
    });
    assert_eq!(tsi, Some(vec![ts("198.51.100.1")]));
    // Bob cannot claim another address, not even Alice's.
    let (_, b) = connect(
        &mut gw,
        now,
        BOB,
        "bob@example",
        GROUP_PSK,
        "198.51.100.1",
        vec![],
        2,
    );
    assert_eq!(notify_kinds(&b), vec![notify::TS_UNACCEPTABLE]);
    let (_, b) = connect(
        &mut gw,
        now,
        BOB,
        "bob@example",
        GROUP_PSK,
        "10.31.0.9",
        vec![],
        3,
    );
    assert_eq!(notify_kinds(&b), vec![notify::TS_UNACCEPTABLE]);
}

#[test]
fn initial_contact_with_a_claimed_identity_deletes_nothing() {
    let now = Instant::now();
    let mut gw = gateway(
        vec![road_warriors("rw", "%any", GROUP_PSK)],
        Limits::default(),
    );
    connect(
        &mut gw,
        now,
        ALICE,
        "alice@example",
        GROUP_PSK,
        "10.31.0.5",
        vec![],
        1,
    );
    assert_eq!(gw.len(), 1);
    // Mallory knows the group PSK, claims to be Alice and sends INITIAL_CONTACT.
    let ic = vec![Payload::notify(notify::INITIAL_CONTACT, vec![])];
    connect(
        &mut gw,
        now,
        BOB,
        "alice@example",
        GROUP_PSK,
        "10.31.0.7",
        ic,
        2,
    );
    let ev = events(&mut gw);
    assert!(
        !ev.iter().any(|e| matches!(e, Event::IkeSaDeleted { .. })),
        "{ev:?}"
    );
    assert_eq!(gw.len(), 2, "Alice's IKE SA is still there");
}

#[test]
fn initial_contact_of_a_proven_identity_replaces_only_its_own_sas() {
    let now = Instant::now();
    let mut gw = gateway(
        vec![
            road_warriors("alice", "alice@example", b"alice-psk"),
            road_warriors("rw", "%any", GROUP_PSK),
        ],
        Limits::default(),
    );
    // An old IKE SA of Alice (her own PSK), and one under the group config that
    // claims her name.
    connect(
        &mut gw,
        now,
        ALICE,
        "alice@example",
        b"alice-psk",
        "10.31.0.5",
        vec![],
        1,
    );
    connect(
        &mut gw,
        now,
        BOB,
        "alice@example",
        GROUP_PSK,
        "10.31.0.8",
        vec![],
        2,
    );
    assert_eq!(gw.len(), 2);
    let ids: Vec<_> = gw.sas(now).iter().map(|s| (s.id, s.peer.clone())).collect();
    events(&mut gw);
    // Alice reconnects with INITIAL_CONTACT: only her old SA of config "alice" goes.
    let ic = vec![Payload::notify(notify::INITIAL_CONTACT, vec![])];
    connect(
        &mut gw,
        now,
        ALICE,
        "alice@example",
        b"alice-psk",
        "10.31.0.5",
        ic,
        3,
    );
    let ev = events(&mut gw);
    let deleted: Vec<_> = ev
        .iter()
        .filter_map(|e| match e {
            Event::IkeSaDeleted { id, .. } => Some(*id),
            _ => None,
        })
        .collect();
    let old_alice = ids
        .iter()
        .find(|(_, p)| p.as_deref() == Some("alice"))
        .unwrap()
        .0;
    assert_eq!(deleted, vec![old_alice]);
    assert_eq!(gw.len(), 2);
}

/// A CREATE_CHILD_SA rekeying the Child SA we receive on with `spi_in`, as `new`.
fn rekey(r: &mut Rogue, gw: &mut Endpoint, now: Instant, spi_in: u32, new: u32) -> Vec<Payload> {
    let p = vec![
        Payload::Notify(plexgate_ike::message::Notify {
            protocol: protocol::ESP,
            spi: spi_in.to_be_bytes().to_vec(),
            kind: notify::REKEY_SA,
            data: vec![],
        }),
        esp_sa(new, EspProposal::AES128GCM16, false),
        Payload::Nonce(vec![9; 32]),
        Payload::TsI(vec![ts("10.31.0.5")]),
        Payload::TsR(vec![ts("10.100.0.10")]),
    ];
    r.request(gw, now, exchange::CREATE_CHILD_SA, &p)
        .expect("answer")
}

#[test]
fn rekeys_count_against_max_child_sas() {
    let now = Instant::now();
    let limits = Limits {
        max_child_sas: 2,
        ..Limits::default()
    };
    let mut gw = gateway(vec![road_warriors("rw", "%any", GROUP_PSK)], limits);
    let (mut r, _) = connect(
        &mut gw,
        now,
        ALICE,
        "alice@example",
        GROUP_PSK,
        "10.31.0.5",
        vec![],
        1,
    );
    // Rekey again and again without ever deleting the old SAs.
    let mut accepted = 0;
    for spi in (0x1111_2222u32..).take(10) {
        let a = rekey(&mut r, &mut gw, now, spi, spi + 1);
        if notify_kinds(&a).contains(&notify::NO_ADDITIONAL_SAS) {
            break;
        }
        assert!(a.iter().any(|p| matches!(p, Payload::Sa(_))), "{a:?}");
        accepted += 1;
    }
    // One SA plus three rekeys make four: twice the limit, and no more.
    assert_eq!(accepted, 3);
    assert_eq!(gw.sas(now)[0].children.len(), 4);
}

#[test]
fn half_open_sas_keep_bounded_messages() {
    let now = Instant::now();
    let mut gw = gateway(
        vec![road_warriors("rw", "%any", GROUP_PSK)],
        Limits::default(),
    );
    // An IKE_SA_INIT padded with a 60 KB vendor ID is not kept.
    let mut r = Rogue::init(
        &mut gw,
        now,
        addr(ALICE),
        addr(GW),
        IkeProposal::AES128GCM16_PRFSHA256_X25519,
        32,
        1,
    );
    assert!(r.is_ok());
    assert_eq!(gw.half_open(), 1);
    r = Rogue::init_with(
        &mut gw,
        now,
        addr(BOB),
        addr(GW),
        IkeProposal::AES128GCM16_PRFSHA256_X25519,
        32,
        2,
        vec![Payload::Vendor(vec![0x42; 60_000])],
    );
    assert!(matches!(r, Err(ref p) if p.is_empty()), "no answer");
    assert_eq!(gw.half_open(), 1);
    // What a half-open SA holds stays small (requests of up to 8 KiB).
    let per_sa = gw.size_estimate();
    assert!(per_sa < 4 * 1024, "{per_sa} bytes for one half-open SA");
}

#[test]
fn too_many_or_too_large_cert_payloads_are_refused() {
    let now = Instant::now();
    let trust = certs_trust();
    let mut gw_cfg = road_warriors("certs", "%any", b"");
    gw_cfg.auth = trust;
    let mut gw = gateway(vec![gw_cfg], Limits::default());
    for (n, len, what) in [(9, 500, "9 CERT payloads"), (1, 17_000, "17000 bytes")] {
        let mut r = init(&mut gw, now, ALICE, n as u64);
        let mut p = vec![Payload::IdI(plexgate_ike::message::Identification {
            id_type: 3,
            data: b"alice@example".to_vec(),
        })];
        for _ in 0..n {
            p.push(Payload::Cert {
                encoding: 4,
                data: vec![0x30; len],
            });
        }
        p.push(Payload::Auth {
            method: 14,
            data: vec![0; 64],
        });
        let a = r.request(&mut gw, now, exchange::IKE_AUTH, &p).unwrap();
        assert_eq!(notify_kinds(&a), vec![notify::AUTHENTICATION_FAILED]);
        let ev = events(&mut gw);
        let reason = ev
            .iter()
            .find_map(|e| match e {
                Event::AuthFailed { reason, .. } => Some(reason.clone()),
                _ => None,
            })
            .unwrap();
        assert!(reason.contains(what), "{reason}");
    }
}

/// Certificate authentication against the test CA (keys/test/).
fn certs_trust() -> plexgate_ike::AuthConfig {
    let keys = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../keys/test");
    let k = plexgate_pki::LocalSigner::load(keys.join("private/gw.pem")).unwrap();
    let c = plexgate_pki::Certificate::load(keys.join("x509/gw.pem")).unwrap();
    let creds = plexgate_pki::LocalCredentials::new(k, c, vec![]).unwrap();
    let trust = plexgate_pki::TrustStore::from_files(&[keys.join("x509ca/ca.pem")]).unwrap();
    plexgate_ike::AuthConfig::Cert {
        credentials: Arc::new(creds),
        trust: Arc::new(trust),
    }
}

#[test]
fn the_ike_proposal_is_rechecked_against_the_config_that_authenticates() {
    let now = Instant::now();
    let mut strong = road_warriors("strong", "alice@example", b"alice-psk");
    strong.ike_proposals = vec![IkeProposal::AES256GCM16_PRFSHA384_ECP384];
    let mut weak = road_warriors("weak", "bob@example", b"bob-psk");
    weak.ike_proposals = vec![IkeProposal::AES128GCM16_PRFSHA256_X25519];
    let mut gw = gateway(vec![strong, weak], Limits::default());
    // IKE_SA_INIT picks the weak config's proposal (the peer is not known yet);
    // authenticating as Alice must not keep it.
    let (_, a) = connect(
        &mut gw,
        now,
        ALICE,
        "alice@example",
        b"alice-psk",
        "10.31.0.5",
        vec![],
        1,
    );
    assert_eq!(notify_kinds(&a), vec![notify::AUTHENTICATION_FAILED]);
    let reason = events(&mut gw)
        .iter()
        .find_map(|e| match e {
            Event::AuthFailed { reason, .. } => Some(reason.clone()),
            _ => None,
        })
        .unwrap();
    assert!(
        reason.contains("does not accept the IKE proposal"),
        "{reason}"
    );
    assert!(gw.is_empty());
    let (_, b) = connect(
        &mut gw,
        now,
        BOB,
        "bob@example",
        b"bob-psk",
        "10.31.0.6",
        vec![],
        2,
    );
    assert!(has_child(&b));
}

#[test]
fn pfs_is_enforced_in_create_child_sa() {
    // The gateway wants PFS (X25519) for new and rekeyed Child SAs; the client
    // offers none.
    let mut gw = gw_cfg(b"secret");
    gw.children[0].esp_proposals = vec![EspProposal {
        dh: Some(31),
        ..EspProposal::AES128GCM16
    }];
    let mut p = Pair::new(client_cfg(b"secret"), gw, Net::CLEAN, 1);
    p.client.initiate(p.now, "gw", "net").unwrap();
    // IKE_AUTH has no key exchange of its own: the first Child SA is fine.
    assert!(p.run_until(Duration::from_secs(5), both_up));
    let c0 = Pair::children(&p.ev_client)[0].clone();
    p.client.rekey_child(p.now, c0.spi_in).unwrap();
    p.run_until(Duration::from_secs(5), |_| false);
    assert_eq!(Pair::children(&p.ev_gw).len(), 1, "no rekey without KE");
    let failed: Vec<String> = p
        .ev_client
        .iter()
        .filter_map(|e| match e {
            Event::ChildSaFailed { reason, .. } => Some(reason.clone()),
            _ => None,
        })
        .collect();
    assert!(
        failed.iter().any(|r| r.contains("NO_PROPOSAL_CHOSEN")),
        "{failed:?}"
    );
    let refused: Vec<String> = p
        .ev_gw
        .iter()
        .filter_map(|e| match e {
            Event::ChildSaFailed { reason, .. } => Some(reason.clone()),
            _ => None,
        })
        .collect();
    assert!(
        refused
            .iter()
            .any(|r| r.contains("without KE") && r.contains("CURVE_25519")),
        "{refused:?}"
    );
}

#[test]
fn nonces_shorter_than_half_the_prf_key_are_refused() {
    let now = Instant::now();
    let mut rw = road_warriors("rw", "%any", GROUP_PSK);
    rw.ike_proposals = vec![IkeProposal::AES256GCM16_PRFSHA384_ECP384];
    let mut gw = gateway(vec![rw], Limits::default());
    let prop = IkeProposal::AES256GCM16_PRFSHA384_ECP384;
    // PRF-HMAC-SHA-384: at least 24 bytes.
    let short = Rogue::init(&mut gw, now, addr(ALICE), addr(GW), prop, 16, 1);
    match short {
        Err(p) => assert_eq!(notify_kinds(&p), vec![notify::INVALID_SYNTAX]),
        Ok(_) => panic!("a 16-byte nonce was accepted with PRF-HMAC-SHA-384"),
    }
    assert_eq!(gw.half_open(), 0);
    assert!(Rogue::init(&mut gw, now, addr(ALICE), addr(GW), prop, 24, 2).is_ok());
}

#[test]
fn without_nat_an_authenticated_request_does_not_move_the_sa() {
    let now = Instant::now();
    let mut rw = road_warriors("rw", "%any", GROUP_PSK);
    rw.dpd = Some(Duration::from_secs(10));
    let mut gw = gateway(vec![rw], Limits::default());
    let (mut r, _) = connect(
        &mut gw,
        now,
        ALICE,
        "alice@example",
        GROUP_PSK,
        "10.31.0.5",
        vec![],
        1,
    );
    // A valid INFORMATIONAL replayed/reflected from elsewhere: answered where it came
    // from, but the SA stays where it was.
    let elsewhere: SocketAddr = "203.0.113.66:500".parse().unwrap();
    let (t, _) = r
        .request_from(&mut gw, now, Some(elsewhere), exchange::INFORMATIONAL, &[])
        .expect("answered");
    assert_eq!(t.remote, elsewhere);
    assert_eq!(gw.sas(now)[0].remote, addr(ALICE));
    // The next liveness check goes to Alice.
    let later = now + Duration::from_secs(11);
    gw.handle_timeout(later);
    let dpd = gw.poll_transmit().expect("a liveness check");
    assert_eq!(dpd.remote, addr(ALICE));
}
