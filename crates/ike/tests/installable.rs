//! Never negotiate what the data plane cannot install (issue #17, the IKE side): the
//! transforms the engine may select or propose, a Child SA whose install failed,
//! CHILD_SA_NOT_FOUND in answer to a rekey (RFC 7296 §2.25), and an IKE_AUTH whose SA
//! payload holds no proposal.

mod common;

use std::time::{Duration, Instant};

use common::rogue::{auth_with_child, notify_kinds, Rogue};
use common::*;
use plexgate_ike::config::{EspProposal, EspSupport, EspTransformId, IkeProposal, StartAction};
use plexgate_ike::message::{exchange, notify, protocol, Payload};
use plexgate_ike::{Endpoint, Error, Event, SeededRng, TrafficSelector};

/// AES-CBC-256 with HMAC-SHA2-384-192 (strongSwan `aes256-sha384`).
const AES256_SHA384: EspProposal = EspProposal {
    encr: 12,
    encr_bits: 256,
    integ: Some(13),
    esn: false,
    dh: None,
};

/// A data plane as in issue #17: AES-GCM and AES-CBC with SHA-256 only.
fn without_sha384() -> EspSupport {
    let t = |encr, key_bits, integ| EspTransformId {
        encr,
        key_bits,
        integ,
    };
    EspSupport(vec![
        t(20, 128, None),
        t(20, 256, None),
        t(12, 256, Some(12)),
    ])
}

fn child_failures(ev: &[Event]) -> Vec<String> {
    ev.iter()
        .filter_map(|e| match e {
            Event::ChildSaFailed { reason, .. } => Some(reason.clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn the_default_support_is_what_the_data_plane_implements() {
    let s = EspSupport::default();
    for (encr, bits, integ) in [
        (20, 128, None),
        (20, 256, None),
        (28, 256, None),
        (12, 128, Some(12)),
        (12, 256, Some(12)),
        (12, 128, Some(13)),
        (12, 256, Some(13)),
        (12, 128, Some(14)),
        (12, 256, Some(14)),
    ] {
        let p = EspProposal {
            encr,
            encr_bits: bits,
            integ,
            esn: false,
            dh: None,
        };
        assert!(s.allows(&p), "{p:?}");
    }
    assert_eq!(s.0.len(), 9);
    // ChaCha20-Poly1305 has one key size whatever the config wrote; AEAD with an
    // integrity transform and CBC without one are not installable.
    let chacha = EspProposal {
        encr: 28,
        encr_bits: 0,
        integ: None,
        esn: true,
        dh: Some(31),
    };
    assert!(s.allows(&chacha));
    let gcm_hmac = EspProposal {
        integ: Some(12),
        ..EspProposal::AES128GCM16
    };
    assert!(!s.allows(&gcm_hmac));
    let cbc_bare = EspProposal {
        integ: None,
        ..EspProposal::AES256_SHA256
    };
    assert!(!s.allows(&cbc_bare));
}

#[test]
fn responder_refuses_a_transform_its_data_plane_lacks() {
    let mut client = client_cfg(b"secret");
    client.children[0].esp_proposals = vec![AES256_SHA384];
    let mut gw = gw_cfg(b"secret");
    gw.children[0].esp_proposals = vec![AES256_SHA384, EspProposal::AES128GCM16];
    let mut p = Pair::new(client, gw, Net::CLEAN, 1);
    p.gw.set_esp_support(without_sha384());
    p.client.initiate(p.now, "gw", "net").unwrap();
    p.run_until(Duration::from_secs(5), |_| false);
    // The IKE SA comes up, the Child SA does not: the peer hears NO_PROPOSAL_CHOSEN
    // instead of believing in an SA whose traffic would vanish.
    assert_eq!(Pair::ike_up(&p.ev_gw).len(), 1);
    assert!(Pair::children(&p.ev_gw).is_empty());
    assert!(Pair::children(&p.ev_client).is_empty());
    let failed = child_failures(&p.ev_client);
    assert!(
        failed.iter().any(|r| r.contains("NO_PROPOSAL_CHOSEN")),
        "{failed:?}"
    );
}

#[test]
fn responder_picks_the_installable_one_of_several() {
    let mut client = client_cfg(b"secret");
    client.children[0].esp_proposals = vec![AES256_SHA384, EspProposal::AES128GCM16];
    let mut gw = gw_cfg(b"secret");
    gw.children[0].esp_proposals = vec![AES256_SHA384, EspProposal::AES128GCM16];
    let mut p = Pair::new(client, gw, Net::CLEAN, 2);
    p.gw.set_esp_support(without_sha384());
    p.client.initiate(p.now, "gw", "net").unwrap();
    assert!(p.run_until(Duration::from_secs(5), both_up));
    let g = &Pair::children(&p.ev_gw)[0];
    assert_eq!((g.encr, g.encr_key_bits, g.integ), (20, 128, None));
    // With the default (full) support, the preferred SHA-384 one is chosen.
    let mut client = client_cfg(b"secret");
    client.children[0].esp_proposals = vec![AES256_SHA384, EspProposal::AES128GCM16];
    let mut gw = gw_cfg(b"secret");
    gw.children[0].esp_proposals = vec![AES256_SHA384, EspProposal::AES128GCM16];
    let mut p = Pair::new(client, gw, Net::CLEAN, 3);
    p.client.initiate(p.now, "gw", "net").unwrap();
    assert!(p.run_until(Duration::from_secs(5), both_up));
    let g = &Pair::children(&p.ev_gw)[0];
    assert_eq!((g.encr, g.encr_key_bits, g.integ), (12, 256, Some(13)));
    assert_eq!((g.keys_in.0.len(), g.keys_in.1.len()), (32, 48));
}

#[test]
fn initiator_proposes_only_what_it_can_install() {
    let mut client = client_cfg(b"secret");
    client.children[0].esp_proposals = vec![AES256_SHA384, EspProposal::AES128GCM16];
    let mut gw = gw_cfg(b"secret");
    gw.children[0].esp_proposals = vec![AES256_SHA384, EspProposal::AES128GCM16];
    let mut p = Pair::new(client, gw, Net::CLEAN, 4);
    p.client.set_esp_support(without_sha384());
    p.client.initiate(p.now, "gw", "net").unwrap();
    assert!(p.run_until(Duration::from_secs(5), both_up));
    // The gateway prefers SHA-384 and would have taken it, had it been offered.
    let c = &Pair::children(&p.ev_client)[0];
    assert_eq!((c.encr, c.encr_key_bits, c.integ), (20, 128, None));
    // A child with nothing installable is refused before anything is sent.
    let mut client = client_cfg(b"secret");
    client.children[0].esp_proposals = vec![AES256_SHA384];
    let mut p = Pair::new(client, gw_cfg(b"secret"), Net::CLEAN, 5);
    p.client.set_esp_support(without_sha384());
    let e = p.client.initiate(p.now, "gw", "net").unwrap_err();
    assert!(matches!(e, Error::NotInstallable { .. }), "{e}");
    assert!(p.client.poll_transmit().is_none());
    assert!(p.client.is_empty());
}

#[test]
fn create_child_offers_only_installable_proposals() {
    let mut client = client_cfg(b"secret");
    let mut second = client.children[0].clone();
    second.name = "second".into();
    second.esp_proposals = vec![AES256_SHA384];
    client.children.push(second.clone());
    let mut gw = gw_cfg(b"secret");
    let mut gsecond = gw.children[0].clone();
    gsecond.name = "second".into();
    gsecond.esp_proposals = vec![AES256_SHA384];
    gw.children.push(gsecond);
    let mut p = Pair::new(client, gw, Net::CLEAN, 6);
    p.client.initiate(p.now, "gw", "net").unwrap();
    assert!(p.run_until(Duration::from_secs(5), both_up));
    let id = Pair::ike_up(&p.ev_client)[0];
    p.client.set_esp_support(without_sha384());
    let e = p.client.create_child(p.now, id, "second").unwrap_err();
    assert!(matches!(e, Error::NotInstallable { .. }), "{e}");
    // The responder's data plane lacks it: NO_PROPOSAL_CHOSEN, the IKE SA stays.
    p.client.set_esp_support(EspSupport::default());
    p.gw.set_esp_support(without_sha384());
    p.client.create_child(p.now, id, "second").unwrap();
    p.run_until(Duration::from_secs(5), |_| false);
    assert_eq!(Pair::children(&p.ev_gw).len(), 1);
    assert!(child_failures(&p.ev_client)
        .iter()
        .any(|r| r.contains("NO_PROPOSAL_CHOSEN")));
    assert_eq!(p.gw.sas(p.now).len(), 1);
}

#[test]
fn a_failed_install_deletes_the_child_with_the_peer() {
    let mut p = Pair::new(client_cfg(b"secret"), gw_cfg(b"secret"), Net::CLEAN, 7);
    p.client.initiate(p.now, "gw", "net").unwrap();
    assert!(p.run_until(Duration::from_secs(5), both_up));
    let g = Pair::children(&p.ev_gw)[0].clone();
    let c = Pair::children(&p.ev_client)[0].clone();
    p.gw.child_install_failed(p.now, g.spi_in).unwrap();
    let gone = |ev: &[Event], spi: u32| {
        ev.iter()
            .any(|e| matches!(e, Event::ChildSaDeleted { spi_in, .. } if *spi_in == spi))
    };
    assert!(
        p.run_until(Duration::from_secs(5), |p| gone(&p.ev_gw, g.spi_in)
            && gone(&p.ev_client, c.spi_in))
    );
    // The IKE SA stays, without the Child SA on either side.
    assert_eq!(p.gw.sas(p.now)[0].children.len(), 0);
    assert_eq!(p.client.sas(p.now)[0].children.len(), 0);
    assert_eq!(p.gw.sas(p.now).len(), 1);
    assert!(matches!(
        p.gw.child_install_failed(p.now, g.spi_in),
        Err(Error::UnknownChildSa(_))
    ));
}

#[test]
fn a_failed_install_of_a_rekeyed_child_is_replaced() {
    let mut p = Pair::new(client_cfg(b"secret"), gw_cfg(b"secret"), Net::CLEAN, 8);
    p.client.initiate(p.now, "gw", "net").unwrap();
    assert!(p.run_until(Duration::from_secs(5), both_up));
    let c0 = Pair::children(&p.ev_client)[0].clone();
    p.client.rekey_child(p.now, c0.spi_in).unwrap();
    // Run only until the client has the new SA (its DELETE of the old is on its way).
    assert!(
        p.run_until(Duration::from_secs(5), |p| Pair::children(&p.ev_client)
            .len()
            == 2)
    );
    let c1 = Pair::children(&p.ev_client)[1].clone();
    p.client.child_install_failed(p.now, c1.spi_in).unwrap();
    p.run_until(Duration::from_secs(5), |_| false);
    // Neither the old SA (deleted by the rekey) nor the one that failed remains; a
    // Child SA like them was negotiated from scratch, the same on both sides.
    let c = p.client.sas(p.now)[0].children.clone();
    let g = p.gw.sas(p.now)[0].children.clone();
    assert_eq!((c.len(), g.len()), (1, 1));
    assert!(![c0.spi_in, c1.spi_in].contains(&c[0].spi_in));
    assert_eq!((c[0].spi_in, c[0].spi_out), (g[0].spi_out, g[0].spi_in));
    assert_eq!(c[0].ts_local, vec![c0.ts_local[0].to_string()]);
}

#[test]
fn child_sa_not_found_after_a_crossing_delete_makes_a_fresh_child() {
    let mut client = client_cfg(b"secret");
    client.children[0].start_action = StartAction::Start;
    let mut p = Pair::new(client, gw_cfg(b"secret"), Net::CLEAN, 9);
    p.client.initiate(p.now, "gw", "net").unwrap();
    assert!(p.run_until(Duration::from_secs(5), both_up));
    let c0 = Pair::children(&p.ev_client)[0].clone();
    let g0 = Pair::children(&p.ev_gw)[0].clone();
    // The client's rekey request is held back while the gateway deletes the child.
    p.hold = Some(Box::new(|t| {
        t.remote.ip() == addr(GW).ip()
            && plexgate_ike::message::Header::parse(&t.payload)
                .is_ok_and(|h| h.exchange == exchange::CREATE_CHILD_SA)
    }));
    p.client.rekey_child(p.now, c0.spi_in).unwrap();
    p.gw.delete_child(p.now, g0.spi_in).unwrap();
    let gone = |ev: &[Event], spi: u32| {
        ev.iter()
            .any(|e| matches!(e, Event::ChildSaDeleted { spi_in, .. } if *spi_in == spi))
    };
    assert!(p.run_until(Duration::from_secs(5), |p| gone(&p.ev_gw, g0.spi_in)));
    assert_eq!(p.held.len(), 1);
    p.release();
    assert!(
        p.run_until(Duration::from_secs(5), |p| Pair::children(&p.ev_gw).len()
            == 2)
    );
    p.run_until(Duration::from_secs(2), |_| false);
    let c = p.client.sas(p.now)[0].children.clone();
    let g = p.gw.sas(p.now)[0].children.clone();
    assert_eq!((c.len(), g.len()), (1, 1));
    assert_eq!((c[0].spi_in, c[0].spi_out), (g[0].spi_out, g[0].spi_in));
    assert_ne!(c[0].spi_in, c0.spi_in);
    assert_matching(
        &Pair::children(&p.ev_client)[1],
        &Pair::children(&p.ev_gw)[1],
    );
}

/// An IKE SA from a scripted initiator with one Child SA (AES-GCM-128).
fn rogue_with_child(gw: &mut Endpoint, now: Instant) -> (Rogue, Vec<Payload>) {
    let mut r = Rogue::init(
        gw,
        now,
        addr(CLIENT),
        addr(GW),
        IkeProposal::AES128GCM16_PRFSHA256_X25519,
        32,
        1,
    )
    .unwrap();
    let p = auth_with_child(
        &r,
        "client@example",
        b"secret",
        TrafficSelector::host("192.168.250.1".parse().unwrap()),
        TrafficSelector::host("203.0.113.250".parse().unwrap()),
        vec![],
    );
    let answer = r.request(gw, now, exchange::IKE_AUTH, &p).unwrap();
    (r, answer)
}

fn gw_endpoint(start: StartAction) -> Endpoint {
    let mut gw = gw_cfg(b"secret");
    gw.children[0].start_action = start;
    Endpoint::new(config(gw), Box::new(SeededRng::new(77)))
}

fn events(e: &mut Endpoint) -> Vec<Event> {
    std::iter::from_fn(|| e.poll_event()).collect()
}

#[test]
fn child_sa_not_found_deletes_the_stale_child_and_makes_a_fresh_one() {
    let now = Instant::now();
    let mut gw = gw_endpoint(StartAction::Trap);
    let (mut r, answer) = rogue_with_child(&mut gw, now);
    assert!(answer.iter().any(|x| matches!(x, Payload::Sa(_))));
    let ev = events(&mut gw);
    let stale = Pair::children(&ev)[0].clone();
    // The gateway rekeys; the peer no longer has that Child SA.
    gw.rekey_child(now, stale.spi_in).unwrap();
    let req = gw.poll_transmit().unwrap();
    let not_found = Payload::Notify(plexgate_ike::message::Notify {
        protocol: protocol::ESP,
        spi: stale.spi_out.to_be_bytes().to_vec(),
        kind: notify::CHILD_SA_NOT_FOUND,
        data: vec![],
    });
    let next = r.answer(&mut gw, now, &req, &[not_found]);
    let ev = events(&mut gw);
    // Deleted silently: an event for the SAD, no DELETE to the peer.
    assert!(ev
        .iter()
        .any(|e| matches!(e, Event::ChildSaDeleted { spi_in, .. } if *spi_in == stale.spi_in)));
    // A new Child SA from scratch (no REKEY_SA) for the same config.
    assert_eq!(next.len(), 1, "exactly one new request");
    let h = plexgate_ike::message::Header::parse(&next[0].payload).unwrap();
    assert_eq!(h.exchange, exchange::CREATE_CHILD_SA);
    let p = r.open(&next[0]).unwrap();
    assert!(!notify_kinds(&p).contains(&notify::REKEY_SA));
    assert!(p.iter().any(|x| matches!(x, Payload::Sa(_))));
    // The peer agrees; the gateway ends with the fresh Child SA only.
    let Some(Payload::Sa(props)) = p.iter().find(|x| matches!(x, Payload::Sa(_))) else {
        unreachable!()
    };
    let mut chosen = props[0].clone();
    chosen.spi = 0x3333_4444u32.to_be_bytes().to_vec();
    let ts: Vec<Payload> = p
        .iter()
        .filter(|x| matches!(x, Payload::TsI(_) | Payload::TsR(_)))
        .cloned()
        .collect();
    let mut reply = vec![Payload::Sa(vec![chosen]), Payload::Nonce(vec![7; 32])];
    reply.extend(ts);
    r.answer(&mut gw, now, &next[0], &reply);
    let ev = events(&mut gw);
    let fresh = Pair::children(&ev);
    assert_eq!(fresh.len(), 1);
    assert_eq!(fresh[0].spi_out, 0x3333_4444);
    let st = gw.sas(now);
    assert_eq!(st[0].children.len(), 1);
    assert_eq!(st[0].children[0].spi_in, fresh[0].spi_in);
}

#[test]
fn child_sa_not_found_without_start_action_only_deletes() {
    let now = Instant::now();
    let mut gw = gw_endpoint(StartAction::None);
    let (mut r, _) = rogue_with_child(&mut gw, now);
    let stale = Pair::children(&events(&mut gw))[0].clone();
    gw.rekey_child(now, stale.spi_in).unwrap();
    let req = gw.poll_transmit().unwrap();
    let not_found = Payload::Notify(plexgate_ike::message::Notify {
        protocol: protocol::ESP,
        spi: stale.spi_out.to_be_bytes().to_vec(),
        kind: notify::CHILD_SA_NOT_FOUND,
        data: vec![],
    });
    let next = r.answer(&mut gw, now, &req, &[not_found]);
    assert!(next.is_empty(), "no DELETE and no new Child SA");
    assert!(events(&mut gw)
        .iter()
        .any(|e| matches!(e, Event::ChildSaDeleted { spi_in, .. } if *spi_in == stale.spi_in)));
    assert!(gw.sas(now)[0].children.is_empty());
}

#[test]
fn ike_auth_with_an_empty_sa_payload_is_answered_and_freed() {
    let now = Instant::now();
    let mut gw = gw_endpoint(StartAction::None);
    let mut r = Rogue::init(
        &mut gw,
        now,
        addr(CLIENT),
        addr(GW),
        IkeProposal::AES128GCM16_PRFSHA256_X25519,
        32,
        2,
    )
    .unwrap();
    assert_eq!(gw.half_open(), 1);
    let mut p = r.psk_auth("client@example", b"secret");
    p.push(Payload::Sa(vec![]));
    p.push(Payload::TsI(vec![TrafficSelector::host(
        "192.168.250.1".parse().unwrap(),
    )]));
    p.push(Payload::TsR(vec![TrafficSelector::host(
        "203.0.113.250".parse().unwrap(),
    )]));
    let answer = r.request(&mut gw, now, exchange::IKE_AUTH, &p);
    let answer = answer.expect("the responder answers");
    assert_eq!(notify_kinds(&answer), vec![notify::INVALID_SYNTAX]);
    assert_eq!(gw.half_open(), 0);
    assert!(gw.is_empty(), "the half-open SA is freed");
    let ev = events(&mut gw);
    assert!(
        ev.iter()
            .any(|e| matches!(e, Event::AuthFailed { reason, .. } if reason.contains("malformed"))),
        "{ev:?}"
    );
    assert!(gw.poll_timeout().is_none());
}
