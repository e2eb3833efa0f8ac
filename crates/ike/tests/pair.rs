//! Whole-exchange scenarios: an initiator and a responder [`Endpoint`] talk over a
//! simulated network in virtual time (loss, duplication, reordering, an optional NAT),
//! in the quinn `Pair` style (harness in `common/mod.rs`).

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use plexgate_ike::config::{Config, EspProposal, IkeProposal, Limits, Mode};
use plexgate_ike::{Endpoint, Event, SeededRng, TrafficSelector, Transmit};

#[test]
fn setup_over_a_clean_network() {
    let mut p = Pair::new(client_cfg(b"secret"), gw_cfg(b"secret"), Net::CLEAN, 1);
    p.client.initiate(p.now, "gw", "net").unwrap();
    assert!(p.run_until(Duration::from_secs(5), both_up));
    let c = &Pair::children(&p.ev_client)[0];
    let g = &Pair::children(&p.ev_gw)[0];
    assert_matching(c, g);
    // The gateway narrowed 192.168.250.0/24 to the client's /32 and picked its
    // preferred AES-GCM-128 (the client did not offer GCM-256).
    assert_eq!(
        g.ts_remote,
        vec![TrafficSelector::host("192.168.250.1".parse().unwrap())]
    );
    assert_eq!((c.encr, c.encr_key_bits, c.keys_in.0.len()), (20, 128, 20));
    assert!(!c.udp_encap && c.mode == Mode::Tunnel);
    // Records on both sides, without key material.
    let rec = p
        .ev_gw
        .iter()
        .find_map(|e| {
            if let Event::RecordUpdated { record, .. } = e {
                Some(record.clone())
            } else {
                None
            }
        })
        .unwrap();
    assert_eq!(rec.peer, "client");
    assert_eq!(rec.children.len(), 1);
    assert_eq!(rec.children[0].spi_in, g.spi_in);
    let json = serde_json::to_string(&rec).unwrap();
    assert!(!json.contains("secret"));
    let back: plexgate_ike::IkeRecord = serde_json::from_str(&json).unwrap();
    assert_eq!(back, rec);
    assert_eq!(
        p.gw.records(),
        vec![(Pair::ike_up(&p.ev_gw)[0], rec.clone())]
    );
    // Status.
    let st = p.gw.sas(p.now);
    assert_eq!(st.len(), 1);
    assert_eq!(st[0].remote_id.as_deref(), Some("client@example"));
    assert_eq!(
        st[0].algorithms.as_deref(),
        Some("AES_CBC_128/HMAC_SHA2_256_128/PRF_HMAC_SHA2_256/CURVE_25519")
    );
    assert_eq!(p.gw.half_open(), 0);
}

#[test]
fn setup_survives_loss_duplication_and_reordering() {
    for seed in 0..8 {
        let mut p = Pair::new(
            client_cfg(b"secret"),
            gw_cfg(b"secret"),
            Net {
                loss: 60,
                dup: 50,
                nat: false,
            },
            seed,
        );
        p.client.initiate(p.now, "gw", "net").unwrap();
        assert!(p.run_until(Duration::from_secs(60), both_up), "seed {seed}");
        // Let stray duplicates and retransmissions settle.
        p.run_until(Duration::from_secs(5), |_| false);
        let c = Pair::children(&p.ev_client);
        let g = Pair::children(&p.ev_gw);
        assert_eq!(
            (c.len(), g.len()),
            (1, 1),
            "seed {seed}: exactly one Child SA each"
        );
        assert_matching(&c[0], &g[0]);
        assert_eq!(Pair::ike_up(&p.ev_client).len(), 1);
        assert_eq!(Pair::ike_up(&p.ev_gw).len(), 1);
    }
}

#[test]
fn nat_detected_floats_to_4500_and_encapsulates() {
    let mut p = Pair::new(
        client_cfg(b"secret"),
        gw_cfg(b"secret"),
        Net {
            loss: 0,
            dup: 0,
            nat: true,
        },
        3,
    );
    p.client.initiate(p.now, "gw", "net").unwrap();
    assert!(p.run_until(Duration::from_secs(5), both_up));
    let c = &Pair::children(&p.ev_client)[0];
    let g = &Pair::children(&p.ev_gw)[0];
    assert_matching(c, g);
    assert!(c.udp_encap && g.udp_encap);
    assert_eq!(c.remote, "10.0.0.2:4500".parse().unwrap());
    assert_eq!(g.remote, format!("{NAT_PUBLIC}:31001").parse().unwrap());
    let st = p.gw.sas(p.now);
    assert!(st[0].nat);
    // The client is behind the NAT: it keeps the mapping alive, the gateway not.
    assert_eq!(
        p.client.nat_keepalives(),
        vec![(addr("10.0.0.1:4500"), addr("10.0.0.2:4500"))]
    );
    assert!(p.gw.nat_keepalives().is_empty());
}

#[test]
fn wrong_psk_fails_with_a_clear_reason_on_both_sides() {
    let mut p = Pair::new(client_cfg(b"secret"), gw_cfg(b"other"), Net::CLEAN, 4);
    p.client.initiate(p.now, "gw", "net").unwrap();
    p.run_until(Duration::from_secs(5), |_| false);
    let gw_fail = p
        .ev_gw
        .iter()
        .find_map(|e| {
            if let Event::AuthFailed {
                peer_id,
                reason,
                remote,
            } = e
            {
                Some((peer_id.clone(), reason.clone(), *remote))
            } else {
                None
            }
        })
        .unwrap();
    assert_eq!(gw_fail.0.as_deref(), Some("client@example"));
    assert!(gw_fail.1.contains("wrong PSK"), "{}", gw_fail.1);
    assert_eq!(gw_fail.2, addr(CLIENT));
    assert!(p.ev_client.iter().any(|e| matches!(e, Event::AuthFailed { reason, .. } if reason.contains("AUTHENTICATION_FAILED"))));
    assert!(Pair::children(&p.ev_client).is_empty() && Pair::children(&p.ev_gw).is_empty());
    assert!(p.client.is_empty() && p.gw.is_empty());
}

#[test]
fn unknown_identity_is_rejected() {
    let mut c = client_cfg(b"secret");
    c.local_id = plexgate_ike::config::Identity("mallory@example".into());
    let mut p = Pair::new(c, gw_cfg(b"secret"), Net::CLEAN, 5);
    p.client.initiate(p.now, "gw", "net").unwrap();
    p.run_until(Duration::from_secs(5), |_| false);
    assert!(p.ev_gw.iter().any(
        |e| matches!(e, Event::AuthFailed { reason, .. } if reason.contains("mallory@example"))
    ));
}

#[test]
fn invalid_ke_payload_retry_with_the_group_the_responder_wants() {
    let c = client_cfg(b"secret"); // proposes x25519 first, ECP-384 third
    let mut g = gw_cfg(b"secret");
    g.ike_proposals = vec![IkeProposal::AES256GCM16_PRFSHA384_ECP384];
    let mut p = Pair::new(c, g, Net::CLEAN, 6);
    p.client.initiate(p.now, "gw", "net").unwrap();
    assert!(p.run_until(Duration::from_secs(5), both_up));
    assert_matching(
        &Pair::children(&p.ev_client)[0],
        &Pair::children(&p.ev_gw)[0],
    );
    let st = p.client.sas(p.now);
    assert_eq!(
        st[0].algorithms.as_deref(),
        Some("AES_GCM_16_256/PRF_HMAC_SHA2_384/ECP_384")
    );
}

#[test]
fn modp2048_and_p256_work() {
    for dh in [14u16, 19] {
        let prop = IkeProposal {
            encr: 12,
            encr_bits: 256,
            integ: Some(14),
            prf: 7,
            dh,
        };
        let mut c = client_cfg(b"secret");
        c.ike_proposals = vec![prop];
        let mut g = gw_cfg(b"secret");
        g.ike_proposals = vec![prop];
        let mut p = Pair::new(c, g, Net::CLEAN, 7);
        p.client.initiate(p.now, "gw", "net").unwrap();
        assert!(p.run_until(Duration::from_secs(5), both_up), "group {dh}");
    }
}

#[test]
fn no_proposal_chosen_is_reported() {
    let mut c = client_cfg(b"secret");
    c.ike_proposals = vec![IkeProposal::AES128_SHA256_X25519];
    let mut g = gw_cfg(b"secret");
    g.ike_proposals = vec![IkeProposal::AES256GCM16_PRFSHA384_ECP384];
    let mut p = Pair::new(c, g, Net::CLEAN, 8);
    p.client.initiate(p.now, "gw", "net").unwrap();
    p.run_until(Duration::from_secs(5), |_| false);
    assert!(p.ev_client.iter().any(
        |e| matches!(e, Event::IkeSaDeleted { reason, .. } if reason.contains("NO_PROPOSAL_CHOSEN"))
    ));
    assert!(p.gw.is_empty());
}

#[test]
fn child_proposal_mismatch_keeps_the_ike_sa() {
    let mut g = gw_cfg(b"secret");
    g.children[0].esp_proposals = vec![EspProposal {
        encr: 28,
        encr_bits: 256,
        integ: None,
        esn: false,
        dh: None,
    }];
    let mut p = Pair::new(client_cfg(b"secret"), g, Net::CLEAN, 9);
    p.client.initiate(p.now, "gw", "net").unwrap();
    p.run_until(Duration::from_secs(5), |_| false);
    assert_eq!(Pair::ike_up(&p.ev_client).len(), 1);
    assert!(p.ev_client.iter().any(|e| matches!(e, Event::ChildSaFailed { reason, .. } if reason.contains("NO_PROPOSAL_CHOSEN"))));
}

fn established(seed: u64) -> Pair {
    let mut p = Pair::new(client_cfg(b"secret"), gw_cfg(b"secret"), Net::CLEAN, seed);
    p.client.initiate(p.now, "gw", "net").unwrap();
    assert!(p.run_until(Duration::from_secs(5), both_up));
    p
}

#[test]
fn child_rekey_from_either_side() {
    for from_client in [true, false] {
        let mut p = established(10);
        let c0 = Pair::children(&p.ev_client)[0].clone();
        let g0 = Pair::children(&p.ev_gw)[0].clone();
        if from_client {
            p.client.rekey_child(p.now, c0.spi_in).unwrap();
        } else {
            p.gw.rekey_child(p.now, g0.spi_in).unwrap();
        }
        let deleted = |ev: &[Event], spi: u32| {
            ev.iter()
                .any(|e| matches!(e, Event::ChildSaDeleted { spi_in, .. } if *spi_in == spi))
        };
        assert!(
            p.run_until(Duration::from_secs(5), |p| deleted(&p.ev_client, c0.spi_in)
                && deleted(&p.ev_gw, g0.spi_in))
        );
        let c1 = Pair::children(&p.ev_client)[1].clone();
        let g1 = Pair::children(&p.ev_gw)[1].clone();
        assert_matching(&c1, &g1);
        assert_ne!(c1.keys_in, c0.keys_in);
        assert!(p.ev_client.iter().any(
            |e| matches!(e, Event::ChildSaRekeyed { old_spi_in, .. } if *old_spi_in == c0.spi_in)
        ));
        assert_eq!(p.client.sas(p.now)[0].children.len(), 1);
        assert_eq!(p.gw.sas(p.now)[0].children.len(), 1);
    }
}

#[test]
fn child_rekey_with_pfs() {
    let mut c = client_cfg(b"secret");
    c.children[0].esp_proposals = vec![EspProposal {
        dh: Some(31),
        ..EspProposal::AES128GCM16
    }];
    let mut g = gw_cfg(b"secret");
    g.children[0].esp_proposals = vec![EspProposal {
        dh: Some(31),
        ..EspProposal::AES128GCM16
    }];
    let mut p = Pair::new(c, g, Net::CLEAN, 11);
    p.client.initiate(p.now, "gw", "net").unwrap();
    assert!(p.run_until(Duration::from_secs(5), both_up));
    rekey_first_child_from_client(&mut p);
}

/// The client rekeys its first Child SA; the gateway installs the new one and both
/// sides end with matching keys for it.
fn rekey_first_child_from_client(p: &mut Pair) {
    let c0 = Pair::children(&p.ev_client)[0].clone();
    p.client.rekey_child(p.now, c0.spi_in).unwrap();
    assert!(
        p.run_until(Duration::from_secs(5), |p| Pair::children(&p.ev_gw).len()
            == 2)
    );
    p.run_until(Duration::from_secs(1), |_| false);
    assert_matching(
        &Pair::children(&p.ev_client)[1],
        &Pair::children(&p.ev_gw)[1],
    );
}

#[test]
fn ike_rekey_from_either_side_moves_children() {
    for from_client in [true, false] {
        let mut p = established(12);
        let old_c = Pair::ike_up(&p.ev_client)[0];
        let old_g = Pair::ike_up(&p.ev_gw)[0];
        if from_client {
            p.client.rekey_ike(p.now, old_c).unwrap();
        } else {
            p.gw.rekey_ike(p.now, old_g).unwrap();
        }
        let rekeyed = |ev: &[Event]| {
            ev.iter().find_map(|e| {
                if let Event::IkeSaRekeyed { new, .. } = e {
                    Some(*new)
                } else {
                    None
                }
            })
        };
        assert!(
            p.run_until(Duration::from_secs(5), |p| rekeyed(&p.ev_client).is_some()
                && rekeyed(&p.ev_gw).is_some())
        );
        p.run_until(Duration::from_secs(2), |_| false);
        // Old SAs gone, one SA left each side, children moved.
        assert_eq!(p.client.len(), 1, "from_client={from_client}");
        assert_eq!(p.gw.len(), 1);
        let new_c = rekeyed(&p.ev_client).unwrap();
        // The old SA is reported gone on both sides, exactly once, after the rekey.
        for (ev, old) in [(&p.ev_client, old_c), (&p.ev_gw, old_g)] {
            let n = ev
                .iter()
                .filter(|e| matches!(e, Event::IkeSaDeleted { id, .. } if *id == old))
                .count();
            assert_eq!(n, 1);
        }
        assert_eq!(p.client.sas(p.now)[0].id, new_c);
        assert_eq!(p.client.sas(p.now)[0].children.len(), 1);
        // The new SA works: rekey the child over it.
        rekey_first_child_from_client(&mut p);
    }
}

#[test]
fn delete_ike_and_child() {
    let mut p = established(13);
    let c0 = Pair::children(&p.ev_client)[0].clone();
    p.client.delete_child(p.now, c0.spi_in).unwrap();
    p.run_until(Duration::from_secs(2), |_| false);
    assert!(p
        .ev_gw
        .iter()
        .any(|e| matches!(e, Event::ChildSaDeleted { spi_out, .. } if *spi_out == c0.spi_in)));
    assert!(p
        .ev_client
        .iter()
        .any(|e| matches!(e, Event::ChildSaDeleted { spi_in, .. } if *spi_in == c0.spi_in)));
    let id = Pair::ike_up(&p.ev_gw)[0];
    p.gw.delete_ike(p.now, id).unwrap();
    p.run_until(Duration::from_secs(2), |_| false);
    assert!(p
        .ev_client
        .iter()
        .any(|e| matches!(e, Event::IkeSaDeleted { .. })));
    assert!(p
        .ev_gw
        .iter()
        .any(|e| matches!(e, Event::RecordRemoved { .. })));
    assert!(p.client.is_empty() && p.gw.is_empty());
}

#[test]
fn dead_peer_is_detected_by_retransmission_back_off() {
    let mut c = client_cfg(b"secret");
    c.dpd = Some(Duration::from_secs(10));
    let mut p = Pair::new(c, gw_cfg(b"secret"), Net::CLEAN, 14);
    p.client.initiate(p.now, "gw", "net").unwrap();
    assert!(p.run_until(Duration::from_secs(5), both_up));
    // The gateway dies: everything to it is lost from now on.
    p.net.loss = 255;
    let t0 = p.now;
    assert!(
        p.run_until(Duration::from_secs(120), |p| p.ev_client.iter().any(
            |e| matches!(e, Event::IkeSaDeleted { reason, .. } if reason.contains("not responding"))
        ))
    );
    // DPD after 10 s, then 0.5+1+2+4+8+16 s of back-off.
    let took = p.now - t0;
    assert!(
        took >= Duration::from_secs(40) && took <= Duration::from_secs(45),
        "{took:?}"
    );
    assert!(p
        .ev_client
        .iter()
        .any(|e| matches!(e, Event::ChildSaDeleted { .. })));
}

#[test]
fn responder_answers_a_retransmitted_request_from_its_cache() {
    let mut p = Pair::new(client_cfg(b"secret"), gw_cfg(b"secret"), Net::CLEAN, 15);
    p.client.initiate(p.now, "gw", "net").unwrap();
    let init = p.client.poll_transmit().unwrap();
    p.gw.handle(p.now, init.remote, init.local, &init.payload);
    let r1 = p.gw.poll_transmit().unwrap();
    p.gw.handle(p.now, init.remote, init.local, &init.payload);
    let r2 = p.gw.poll_transmit().unwrap();
    assert_eq!(r1, r2);
    assert_eq!(p.gw.len(), 1);
    p.client.handle(p.now, r1.remote, r1.local, &r1.payload);
    let auth = p.client.poll_transmit().unwrap();
    p.gw.handle(p.now, auth.remote, auth.local, &auth.payload);
    let a1 = p.gw.poll_transmit().unwrap();
    p.gw.handle(p.now, auth.remote, auth.local, &auth.payload);
    let a2 = p.gw.poll_transmit().unwrap();
    assert_eq!(a1, a2, "cached IKE_AUTH response resent byte for byte");
    assert_eq!(
        Pair::children(&{
            let mut v = Vec::new();
            while let Some(e) = p.gw.poll_event() {
                v.push(e);
            }
            v
        })
        .len(),
        1,
        "the duplicate did not create a second Child SA"
    );
}

#[test]
fn cookies_when_half_open_threshold_is_passed() {
    let mut gcfg = Config {
        peers: vec![gw_cfg(b"secret")],
        limits: Limits::default(),
    };
    gcfg.limits.cookie_threshold = 0;
    let mut p = Pair::with(
        config(client_cfg(b"secret")),
        Arc::new(gcfg),
        Net::CLEAN,
        16,
    );
    p.client.initiate(p.now, "gw", "net").unwrap();
    let init = p.client.poll_transmit().unwrap();
    p.gw.handle(p.now, init.remote, init.local, &init.payload);
    // Stateless: a COOKIE and no state.
    assert_eq!(p.gw.len(), 0);
    let r = p.gw.poll_transmit().unwrap();
    let m = plexgate_ike::message::Message::parse(&r.payload).unwrap();
    assert!(m
        .notifies()
        .any(|n| n.kind == plexgate_ike::message::notify::COOKIE));
    p.client.handle(p.now, r.remote, r.local, &r.payload);
    assert!(p.run_until(Duration::from_secs(5), both_up));
    assert_matching(
        &Pair::children(&p.ev_client)[0],
        &Pair::children(&p.ev_gw)[0],
    );
}

#[test]
fn init_flood_is_bounded_and_expires() {
    let mut gcfg = Config {
        peers: vec![gw_cfg(b"secret")],
        limits: Limits::default(),
    };
    gcfg.limits.cookie_threshold = 50;
    gcfg.limits.max_half_open = 100;
    let mut gw = Endpoint::new(Arc::new(gcfg), Box::new(SeededRng::new(1)));
    let now = Instant::now();
    let mut cookies = 0;
    for i in 0..300u32 {
        let ip = std::net::Ipv4Addr::from(0x0a01_0000 + i);
        let mut c = client_cfg(b"secret");
        c.local_addr = Some(SocketAddr::new(ip.into(), 500));
        let mut cl = Endpoint::new(config(c), Box::new(SeededRng::new(i as u64)));
        cl.initiate(now, "gw", "net").unwrap();
        let t = cl.poll_transmit().unwrap();
        gw.handle(now, t.remote, t.local, &t.payload);
        while let Some(r) = gw.poll_transmit() {
            let m = plexgate_ike::message::Message::parse(&r.payload).unwrap();
            if m.notifies()
                .any(|n| n.kind == plexgate_ike::message::notify::COOKIE)
            {
                cookies += 1;
                // A flooder that echoes the cookie still hits the hard cap.
                cl.handle(now, r.remote, r.local, &r.payload);
                if let Some(t2) = cl.poll_transmit() {
                    gw.handle(now, t2.remote, t2.local, &t2.payload);
                }
            }
        }
    }
    assert_eq!(gw.half_open(), 100);
    assert!(cookies >= 200);
    let per_sa = gw.size_estimate() / gw.len();
    assert!(per_sa < 4096, "half-open SA costs {per_sa} bytes");
    gw.handle_timeout(now + Duration::from_secs(31));
    assert_eq!(gw.len(), 0);
    assert_eq!(gw.half_open(), 0);
}

#[test]
fn takeover_from_record_renegotiates_and_replaces_old_sas() {
    let mut p = established(17);
    let rec = p
        .ev_gw
        .iter()
        .rev()
        .find_map(|e| {
            if let Event::RecordUpdated { record, .. } = e {
                Some(record.clone())
            } else {
                None
            }
        })
        .unwrap();
    let old_client_sa = Pair::ike_up(&p.ev_client)[0];
    // The backup gateway: same config and address, fresh state.
    let mut backup = gw_cfg(b"secret");
    backup.remote_addr = Some(rec.remote);
    p.gw = Endpoint::new(config(backup), Box::new(SeededRng::new(99)));
    p.ev_gw.clear();
    let n_before = Pair::children(&p.ev_client).len();
    p.gw.initiate_recovered(p.now, &rec).unwrap();
    assert!(
        p.run_until(Duration::from_secs(5), |p| !Pair::children(&p.ev_gw)
            .is_empty()
            && Pair::children(&p.ev_client).len() > n_before)
    );
    p.run_until(Duration::from_secs(1), |_| false);
    let g = Pair::children(&p.ev_gw)[0].clone();
    let c = Pair::children(&p.ev_client).last().unwrap().clone();
    assert_matching(&c, &g);
    assert_eq!(g.ts_local, rec.children[0].ts_local);
    // INITIAL_CONTACT made the client drop its SA with the dead gateway.
    assert!(p
        .ev_client
        .iter()
        .any(|e| matches!(e, Event::IkeSaDeleted { id, .. } if *id == old_client_sa)));
    assert_eq!(p.client.len(), 1);
}

#[test]
fn automatic_rekey_timers_fire_with_jitter() {
    let mut c = client_cfg(b"secret");
    c.children[0].rekey_time = Duration::from_secs(100);
    c.rand_time = Duration::from_secs(10);
    c.rekey_time = Duration::from_secs(1000);
    let mut p = Pair::new(c, gw_cfg(b"secret"), Net::CLEAN, 18);
    p.client.initiate(p.now, "gw", "net").unwrap();
    assert!(p.run_until(Duration::from_secs(5), both_up));
    let t0 = p.now;
    assert!(p.run_until(Duration::from_secs(200), |p| p
        .ev_client
        .iter()
        .any(|e| matches!(e, Event::ChildSaRekeyed { .. }))));
    let after = p.now - t0;
    assert!(
        after >= Duration::from_secs(89) && after <= Duration::from_secs(101),
        "{after:?}"
    );
    let _ = p.start;
}

#[test]
fn simultaneous_child_rekey_leaves_one_pair() {
    for seed in 20..26 {
        let mut p = established(seed);
        let c0 = Pair::children(&p.ev_client)[0].clone();
        let g0 = Pair::children(&p.ev_gw)[0].clone();
        // Both ends rekey the same Child SA at the same instant: the requests cross.
        p.client.rekey_child(p.now, c0.spi_in).unwrap();
        p.gw.rekey_child(p.now, g0.spi_in).unwrap();
        p.run_until(Duration::from_secs(5), |_| false);
        let c = &p.client.sas(p.now)[0].children;
        let g = &p.gw.sas(p.now)[0].children;
        assert_eq!((c.len(), g.len()), (1, 1), "seed {seed}: {c:?} {g:?}");
        assert_eq!(c[0].spi_in, g[0].spi_out);
        assert_eq!(c[0].spi_out, g[0].spi_in);
        assert_ne!(c[0].spi_in, c0.spi_in);
        // The surviving pair has matching keys.
        let cs = Pair::children(&p.ev_client)
            .into_iter()
            .find(|x| x.spi_in == c[0].spi_in)
            .unwrap();
        let gs = Pair::children(&p.ev_gw)
            .into_iter()
            .find(|x| x.spi_in == g[0].spi_in)
            .unwrap();
        assert_matching(&cs, &gs);
    }
}

#[test]
fn simultaneous_ike_rekey_resolves_to_one_sa() {
    for seed in 30..34 {
        let mut p = established(seed);
        let c = Pair::ike_up(&p.ev_client)[0];
        let g = Pair::ike_up(&p.ev_gw)[0];
        p.client.rekey_ike(p.now, c).unwrap();
        p.gw.rekey_ike(p.now, g).unwrap();
        // Both answer TEMPORARY_FAILURE, both retry after 5-30 s (random): one wins.
        p.run_until(Duration::from_secs(120), |_| false);
        assert_eq!((p.client.len(), p.gw.len()), (1, 1), "seed {seed}");
        let (cs, gs) = (p.client.sas(p.now), p.gw.sas(p.now));
        assert_ne!(cs[0].id, c);
        assert_eq!((cs[0].spi_i, cs[0].spi_r), (gs[0].spi_i, gs[0].spi_r));
        assert_eq!((cs[0].children.len(), gs[0].children.len()), (1, 1));
        // Still usable.
        let spi = cs[0].children[0].spi_in;
        p.client.rekey_child(p.now, spi).unwrap();
        assert!(
            p.run_until(Duration::from_secs(5), |p| Pair::children(&p.ev_gw).len()
                == 2)
        );
    }
}

#[test]
fn transport_mode_is_negotiated_when_both_want_it() {
    let mut c = client_cfg(b"secret");
    c.children[0].mode = Mode::Transport;
    let mut g = gw_cfg(b"secret");
    g.children[0].mode = Mode::Transport;
    let mut p = Pair::new(c, g, Net::CLEAN, 40);
    p.client.initiate(p.now, "gw", "net").unwrap();
    assert!(p.run_until(Duration::from_secs(5), both_up));
    assert_eq!(Pair::children(&p.ev_client)[0].mode, Mode::Transport);
    assert_eq!(Pair::children(&p.ev_gw)[0].mode, Mode::Transport);
    // A tunnel-only responder answers without USE_TRANSPORT_MODE: tunnel it is.
    let mut c = client_cfg(b"secret");
    c.children[0].mode = Mode::Transport;
    let mut p = Pair::new(c, gw_cfg(b"secret"), Net::CLEAN, 41);
    p.client.initiate(p.now, "gw", "net").unwrap();
    assert!(p.run_until(Duration::from_secs(5), both_up));
    assert_eq!(Pair::children(&p.ev_client)[0].mode, Mode::Tunnel);
}

#[test]
fn child_sa_limit_answers_no_additional_sas() {
    let mut g = Config {
        peers: vec![gw_cfg(b"secret")],
        limits: Limits::default(),
    };
    g.limits.max_child_sas = 2;
    let mut p = Pair::with(config(client_cfg(b"secret")), Arc::new(g), Net::CLEAN, 50);
    p.client.initiate(p.now, "gw", "net").unwrap();
    assert!(p.run_until(Duration::from_secs(5), both_up));
    let id = Pair::ike_up(&p.ev_client)[0];
    for _ in 0..3 {
        p.client.create_child(p.now, id, "net").unwrap();
    }
    p.run_until(Duration::from_secs(5), |_| false);
    assert_eq!(p.gw.sas(p.now)[0].children.len(), 2);
    assert!(p.ev_client.iter().any(
        |e| matches!(e, Event::ChildSaFailed { reason, .. } if reason.contains("NO_ADDITIONAL_SAS"))
    ));
    // Rekeys are still allowed at the limit.
    let spi = p.client.sas(p.now)[0].children[0].spi_in;
    p.client.rekey_child(p.now, spi).unwrap();
    assert!(p.run_until(Duration::from_secs(5), |p| p
        .ev_client
        .iter()
        .any(|e| matches!(e, Event::ChildSaRekeyed { .. }))));
}

#[test]
fn cookie_secret_rotates_and_the_previous_one_still_counts() {
    let mut g = Config {
        peers: vec![gw_cfg(b"secret")],
        limits: Limits::default(),
    };
    g.limits.cookie_threshold = 0;
    let g = Arc::new(g);
    let has_cookie = |t: &Transmit| {
        plexgate_ike::message::Message::parse(&t.payload)
            .unwrap()
            .notifies()
            .any(|n| n.kind == plexgate_ike::message::notify::COOKIE)
    };
    // A retry carrying a cookie, held back while the gateway's clock moves on.
    let retry_after = |rotations: u32| -> bool {
        let now = Instant::now();
        let mut gw = Endpoint::new(g.clone(), Box::new(SeededRng::new(5)));
        let mut c = Endpoint::new(config(client_cfg(b"secret")), Box::new(SeededRng::new(6)));
        c.initiate(now, "gw", "net").unwrap();
        let t = c.poll_transmit().unwrap();
        gw.handle(now, t.remote, t.local, &t.payload);
        let r = gw.poll_transmit().unwrap();
        assert!(has_cookie(&r));
        c.handle(now, r.remote, r.local, &r.payload);
        let retry = c.poll_transmit().unwrap();
        let mut later = now;
        for _ in 0..rotations {
            later += Duration::from_secs(301);
            gw.handle_timeout(later);
        }
        gw.handle(later, retry.remote, retry.local, &retry.payload);
        let answer = gw.poll_transmit().unwrap();
        !has_cookie(&answer) && gw.half_open() == 1
    };
    assert!(retry_after(0), "fresh cookie accepted");
    assert!(retry_after(1), "cookie from the previous secret accepted");
    assert!(!retry_after(2), "cookie from two secrets ago refused");
}
