//! Right with every client (issue #10, the IKE side): `initiate` with and without a
//! child and inside an existing IKE SA, NAT rebinding, per-peer retransmission,
//! the key log, and refusals that say what was received and what is configured.

mod common;

use std::time::{Duration, Instant};

use common::rogue::{auth_with_child, notify_kinds, Rogue};
use common::*;
use plexgate_ike::config::{IkeProposal, Retransmit};
use plexgate_ike::message::{exchange, Payload};
use plexgate_ike::{Endpoint, Error, Event, SeededRng, TrafficSelector};

/// The client's second child config, "alpha" (before "net" by name, after it in
/// the config), with its own inner address; the gateway's "net" covers it.
fn two_children() -> plexgate_ike::PeerConfig {
    let mut c = client_cfg(b"secret");
    let mut alpha = c.children[0].clone();
    alpha.name = "alpha".into();
    alpha.local_ts = vec![TrafficSelector::host("192.168.250.9".parse().unwrap())];
    c.children.push(alpha);
    c
}

fn deleted(ev: &[Event]) -> usize {
    ev.iter()
        .filter(|e| matches!(e, Event::IkeSaDeleted { .. }))
        .count()
}

#[test]
fn initiate_without_a_child_takes_the_first_in_config_order() {
    let mut p = Pair::new(two_children(), gw_cfg(b"secret"), Net::CLEAN, 1);
    p.client.initiate(p.now, "gw", None).unwrap();
    assert!(p.run_until(Duration::from_secs(5), both_up));
    let c = Pair::children(&p.ev_client);
    assert_eq!(c.len(), 1);
    assert_eq!(c[0].name, "net");
}

#[test]
fn a_second_initiate_adds_a_child_to_the_existing_ike_sa() {
    let mut p = Pair::new(two_children(), gw_cfg(b"secret"), Net::CLEAN, 2);
    let first = p.client.initiate(p.now, "gw", "net").unwrap();
    // Right away (IKE SA still being set up) and once it is up: the same IKE SA.
    let again = p.client.initiate(p.now, "gw", Some("alpha")).unwrap();
    assert_eq!(again, first);
    assert!(
        p.run_until(Duration::from_secs(5), |p| Pair::children(&p.ev_gw).len()
            == 2)
    );
    let more = p.client.initiate(p.now, "gw", "alpha").unwrap();
    assert_eq!(more, first, "a child that is up is not made twice");
    p.run_until(Duration::from_secs(2), |_| false);
    assert_eq!((p.client.len(), p.gw.len()), (1, 1));
    assert_eq!(p.client.sas(p.now)[0].children.len(), 2);
    assert_eq!(p.gw.sas(p.now)[0].children.len(), 2);
    // No INITIAL_CONTACT made anyone drop anything.
    assert_eq!((deleted(&p.ev_client), deleted(&p.ev_gw)), (0, 0));
    let names: Vec<String> = Pair::children(&p.ev_client)
        .iter()
        .map(|c| c.name.clone())
        .collect();
    assert_eq!(names, vec!["net", "alpha"]);
}

#[test]
fn nat_rebinding_moves_later_ike_messages() {
    let nat = Net {
        loss: 0,
        dup: 0,
        nat: true,
    };
    let mut p = Pair::new(client_cfg(b"secret"), gw_cfg(b"secret"), nat, 3);
    p.client.initiate(p.now, "gw", "net").unwrap();
    assert!(p.run_until(Duration::from_secs(5), both_up));
    let id = Pair::ike_up(&p.ev_gw)[0];
    let moved = addr(&format!("{NAT_PUBLIC}:32000"));
    p.ev_gw.clear();
    p.gw.peer_address_changed(p.now, id, moved).unwrap();
    p.collect();
    let rec = p.ev_gw.iter().find_map(|e| match e {
        Event::RecordUpdated { record, .. } => Some(record.clone()),
        _ => None,
    });
    assert_eq!(rec.map(|r| r.remote), Some(moved));
    assert_eq!(p.gw.sas(p.now)[0].remote, moved);
    // The next liveness check goes to the new mapping.
    p.gw.dpd(p.now, id).unwrap();
    let t = p.gw.poll_transmit().unwrap();
    assert_eq!(t.remote, moved);

    // Without a NAT the address does not move.
    let mut p = Pair::new(client_cfg(b"secret"), gw_cfg(b"secret"), Net::CLEAN, 4);
    p.client.initiate(p.now, "gw", "net").unwrap();
    assert!(p.run_until(Duration::from_secs(5), both_up));
    let id = Pair::ike_up(&p.ev_gw)[0];
    let e = p.gw.peer_address_changed(p.now, id, moved).unwrap_err();
    assert!(matches!(e, Error::NotBehindNat(_)), "{e}");
    assert_eq!(p.gw.sas(p.now)[0].remote, addr(CLIENT));
}

#[test]
fn retransmission_follows_the_peers_settings() {
    // Nobody answers: with 1 s, base 2 and 2 tries the client sends at 0, 1 s and
    // 3 s and gives up at 7 s (virtual time).
    let mut c = client_cfg(b"secret");
    c.retransmit = Some(Retransmit {
        timeout: Duration::from_secs(1),
        base: 2.0,
        tries: 2,
    });
    let mut client = Endpoint::new(config(c), Box::new(SeededRng::new(5)));
    let t0 = Instant::now();
    client.initiate(t0, "gw", "net").unwrap();
    let mut sent = vec![Duration::ZERO];
    while client.poll_transmit().is_some() {}
    let gave_up = loop {
        let next = client.poll_timeout().expect("a timer");
        client.handle_timeout(next);
        while client.poll_transmit().is_some() {
            sent.push(next - t0);
        }
        if std::iter::from_fn(|| client.poll_event())
            .any(|e| matches!(e, Event::IkeSaDeleted { .. }))
        {
            break next - t0;
        }
    };
    let s = |x| Duration::from_secs(x);
    assert_eq!(sent, vec![s(0), s(1), s(3)]);
    assert_eq!(gave_up, s(7));
    assert_eq!(
        Retransmit::STRONGSWAN.wait(4),
        Duration::from_secs_f64(4.0 * 1.8f64.powi(4))
    );
}

#[test]
fn the_key_log_has_both_ends_keys_only_when_asked() {
    let mut p = Pair::new(client_cfg(b"secret"), gw_cfg(b"secret"), Net::CLEAN, 6);
    p.client.set_key_log(true);
    p.gw.set_key_log(true);
    p.client.initiate(p.now, "gw", "net").unwrap();
    assert!(p.run_until(Duration::from_secs(5), both_up));
    let keys = |ev: &[Event]| {
        ev.iter()
            .find_map(|e| match e {
                Event::IkeKeys { keys, .. } => Some(keys.clone()),
                _ => None,
            })
            .expect("an IkeKeys event")
    };
    let (c, g) = (keys(&p.ev_client), keys(&p.ev_gw));
    assert_eq!((c.spi_i, c.spi_r), (g.spi_i, g.spi_r));
    assert_eq!(
        (&c.sk_ei, &c.sk_er, &c.sk_ai, &c.sk_ar),
        (&g.sk_ei, &g.sk_er, &g.sk_ai, &g.sk_ar)
    );
    // The default proposal: AES-CBC-128 with HMAC-SHA2-256-128.
    assert_eq!((c.encr, c.encr_bits, c.integ), (12, 128, Some(12)));
    assert_eq!((c.sk_ei.len(), c.sk_ai.len()), (16, 32));
    assert!(!format!("{c:?}").contains(&format!("{:?}", c.sk_ei)));
    // Off by default.
    let mut p = Pair::new(client_cfg(b"secret"), gw_cfg(b"secret"), Net::CLEAN, 7);
    p.client.initiate(p.now, "gw", "net").unwrap();
    assert!(p.run_until(Duration::from_secs(5), both_up));
    assert!(!p
        .ev_gw
        .iter()
        .chain(&p.ev_client)
        .any(|e| matches!(e, Event::IkeKeys { .. })));
}

fn refusals(e: &mut Endpoint) -> Vec<String> {
    std::iter::from_fn(|| e.poll_event())
        .filter_map(|e| match e {
            Event::Refused { reason, .. } | Event::AuthFailed { reason, .. } => Some(reason),
            Event::ChildSaFailed { reason, .. } => Some(reason),
            _ => None,
        })
        .collect()
}

#[test]
fn refusals_say_what_was_received_and_what_is_configured() {
    let now = Instant::now();
    let gw_ep = || Endpoint::new(config(gw_cfg(b"secret")), Box::new(SeededRng::new(8)));
    // An IKE proposal the gateway does not have.
    let mut gw = gw_ep();
    let weak = IkeProposal {
        encr: 12,
        encr_bits: 256,
        integ: Some(12),
        prf: 5,
        dh: 14,
    };
    assert!(Rogue::init(&mut gw, now, addr(CLIENT), addr(GW), weak, 32, 1).is_err());
    let r = refusals(&mut gw);
    assert!(
        r.iter().any(|x| x
            .contains("received IKE:AES_CBC_256/HMAC_SHA2_256_128/PRF_HMAC_SHA2_256/MODP_2048")
            && x.contains(
                "configured IKE:AES_CBC_128/HMAC_SHA2_256_128/PRF_HMAC_SHA2_256/CURVE_25519"
            )),
        "{r:?}"
    );
    // IKEv1.
    let mut v1 = vec![0u8; 28];
    v1[17] = 0x10;
    v1[27] = 28;
    gw.handle(now, addr(GW), addr(CLIENT), &v1);
    assert!(refusals(&mut gw)
        .iter()
        .any(|x| x.contains("IKEv1 is not supported")));
    // A virtual IP, a wrong IDr, selectors that fit no child.
    let prop = IkeProposal::AES128GCM16_PRFSHA256_X25519;
    let mut r = Rogue::init(&mut gw, now, addr(CLIENT), addr(GW), prop, 32, 2).unwrap();
    let cp = Payload::Cp {
        cfg_type: 1,
        attrs: vec![0, 1, 0, 0],
    };
    let inner = TrafficSelector::host("10.9.9.9".parse().unwrap());
    let dvipa = TrafficSelector::host("203.0.113.250".parse().unwrap());
    let p = auth_with_child(&r, "client@example", b"secret", inner, dvipa, vec![cp]);
    let a = r.request(&mut gw, now, exchange::IKE_AUTH, &p).unwrap();
    assert_eq!(notify_kinds(&a), vec![38], "TS_UNACCEPTABLE");
    let why = refusals(&mut gw);
    assert!(
        why.iter()
            .any(|x| x.contains("virtual IPs are not supported yet")),
        "{why:?}"
    );
    assert!(
        why.iter().any(|x| x.contains("10.9.9.9")
            && x.contains("'net'")
            && x.contains("192.168.250.0/24")),
        "{why:?}"
    );
    let mut r = Rogue::init(&mut gw, now, addr(CLIENT), addr(GW), prop, 32, 3).unwrap();
    let idr = Payload::IdR(plexgate_ike::config::Identity("vpn@elsewhere".into()).to_wire());
    let p = auth_with_child(&r, "client@example", b"secret", inner, dvipa, vec![idr]);
    r.request(&mut gw, now, exchange::IKE_AUTH, &p).unwrap();
    let why = refusals(&mut gw);
    assert!(
        why.iter()
            .any(|x| x.contains("the IDr requested ('vpn@elsewhere') is not ours ('gw@example')")),
        "{why:?}"
    );
}

#[test]
fn ike_sa_ids_are_numbers_printed_with_a_hash() {
    let mut p = Pair::new(client_cfg(b"secret"), gw_cfg(b"secret"), Net::CLEAN, 9);
    let id = p.client.initiate(p.now, "gw", "net").unwrap();
    assert!(p.run_until(Duration::from_secs(5), both_up));
    assert_eq!(id.to_string(), "#1");
    let gw_id = Pair::ike_up(&p.ev_gw)[0];
    assert_eq!(gw_id.to_string(), "#1");
    // A rekeyed IKE SA gets the next number; its SPIs are in the status.
    p.gw.rekey_ike(p.now, gw_id).unwrap();
    assert!(p.run_until(Duration::from_secs(5), |p| p
        .ev_gw
        .iter()
        .any(|e| matches!(e, Event::IkeSaRekeyed { .. }))));
    p.run_until(Duration::from_secs(2), |_| false);
    let st = p.gw.sas(p.now);
    assert_eq!(st.len(), 1);
    assert_eq!(st[0].id.to_string(), "#2");
    assert_ne!((st[0].spi_i, st[0].spi_r), (0, 0));
    // Messages still find their SA by SPI: a liveness check is answered.
    p.gw.dpd(p.now, st[0].id).unwrap();
    p.run_until(Duration::from_secs(2), |_| false);
    assert_eq!((p.gw.len(), p.client.len()), (1, 1));
}
