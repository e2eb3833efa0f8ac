//! Takeover: a backup gateway renegotiates, as initiator, the IKE and Child SAs that
//! a dead gateway recorded, against the original client ([`Endpoint::initiate_recovered`]).

mod common;

use std::time::Duration;

use common::*;
use plexgate_ike::{Endpoint, Error, Event, IkeRecord, SeededRng, TrafficSelector};

/// The record the (soon dead) gateway wrote last.
fn last_record(ev: &[Event]) -> IkeRecord {
    ev.iter()
        .rev()
        .find_map(|e| match e {
            Event::RecordUpdated { record, .. } => Some(record.clone()),
            _ => None,
        })
        .expect("a record")
}

/// A client with two Child SAs through a NAT, with a gateway that then dies; the
/// backup replays its record.
#[test]
fn a_backup_renegotiates_recorded_sas_behind_a_nat_and_the_client_drops_the_old() {
    let mut client = client_cfg(b"secret");
    let mut second = client.children[0].clone();
    second.name = "second".into();
    second.local_ts = vec![TrafficSelector::host("192.168.250.2".parse().unwrap())];
    client.children.push(second.clone());
    let mut gw = gw_cfg(b"secret");
    let mut gsecond = gw.children[0].clone();
    gsecond.name = "second".into();
    gw.children.push(gsecond);
    let nat = Net {
        loss: 0,
        dup: 0,
        nat: true,
    };
    let mut p = Pair::new(client, gw.clone(), nat, 21);
    p.client.initiate(p.now, "gw", "net").unwrap();
    assert!(p.run_until(Duration::from_secs(5), both_up));
    let id = Pair::ike_up(&p.ev_client)[0];
    p.client.create_child(p.now, id, "second").unwrap();
    assert!(
        p.run_until(Duration::from_secs(5), |p| Pair::children(&p.ev_gw).len()
            == 2)
    );
    p.run_until(Duration::from_secs(1), |_| false);
    let rec = last_record(&p.ev_gw);
    assert_eq!(rec.children.len(), 2);
    assert!(rec.nat_remote && rec.remote.port() == 31001 && rec.local.port() == 4500);
    let old_client_sa = Pair::ike_up(&p.ev_client)[0];
    let old_children: Vec<u32> = Pair::children(&p.ev_client)
        .iter()
        .map(|c| c.spi_in)
        .collect();

    // The backup: the same config (without INITIAL_CONTACT configured: a recovery
    // sends it anyway) and fresh state.
    let mut backup = gw;
    backup.initial_contact = false;
    p.gw = Endpoint::new(config(backup), Box::new(SeededRng::new(99)));
    p.ev_gw.clear();
    p.ev_client.clear();
    p.gw.initiate_recovered(p.now, &rec).unwrap();
    // Its first datagram goes to the client's NAT mapping, from port 4500.
    let first = p.gw.poll_transmit().unwrap();
    assert_eq!((first.local.port(), first.remote), (4500, rec.remote));
    p.inflight.push((p.now, first));
    assert!(
        p.run_until(Duration::from_secs(5), |p| Pair::children(&p.ev_gw).len()
            == 2)
    );
    p.run_until(Duration::from_secs(1), |_| false);

    // The client dropped the old IKE SA and its Child SAs (INITIAL_CONTACT) ...
    assert!(p
        .ev_client
        .iter()
        .any(|e| matches!(e, Event::IkeSaDeleted { id, .. } if *id == old_client_sa)));
    for spi in &old_children {
        assert!(p
            .ev_client
            .iter()
            .any(|e| matches!(e, Event::ChildSaDeleted { spi_in, .. } if spi_in == spi)));
    }
    // ... and holds one IKE SA with the two renegotiated Child SAs, the same
    // selectors, proposals and encapsulation as recorded.
    assert_eq!(p.client.len(), 1);
    let g = Pair::children(&p.ev_gw);
    let c = Pair::children(&p.ev_client);
    assert_eq!((g.len(), c.len()), (2, 2));
    for (i, r) in rec.children.iter().enumerate() {
        // (The gateway names each child by its own config that fitted: both are "net".)
        let gc = g.iter().find(|x| x.ts_remote == r.ts_remote).unwrap();
        assert_eq!(gc.name, r.name);
        let cc = c.iter().find(|x| x.spi_in == gc.spi_out).unwrap();
        assert_matching(cc, gc);
        assert_eq!(gc.ts_local, r.ts_local, "child {i}");
        assert_eq!(gc.ts_remote, r.ts_remote, "child {i}");
        assert_eq!(
            (gc.encr, gc.encr_key_bits),
            (r.proposal.encr, r.proposal.encr_bits)
        );
        assert!(gc.udp_encap && gc.remote == rec.remote);
    }
    let st = p.gw.sas(p.now);
    assert_eq!(st.len(), 1);
    assert_eq!(
        st[0].algorithms.as_deref(),
        Some(rec.proposal.name().as_str())
    );
    assert_eq!(st[0].remote_id.as_deref(), Some("client@example"));
}

#[test]
fn a_record_that_does_not_fit_the_config_is_refused() {
    let mut p = Pair::new(client_cfg(b"secret"), gw_cfg(b"secret"), Net::CLEAN, 22);
    p.client.initiate(p.now, "gw", "net").unwrap();
    assert!(p.run_until(Duration::from_secs(5), both_up));
    let rec = last_record(&p.ev_gw);
    let fresh = || Endpoint::new(config(gw_cfg(b"secret")), Box::new(SeededRng::new(5)));
    // Selectors wider than the config's.
    let mut wide = rec.clone();
    wide.children[0].ts_remote = vec![TrafficSelector::prefix("0.0.0.0".parse().unwrap(), 0)];
    let e = fresh().initiate_recovered(p.now, &wide).unwrap_err();
    assert!(matches!(e, Error::RecordMismatch { .. }), "{e}");
    // Our identity changed.
    let mut other = rec.clone();
    other.local_id = plexgate_ike::config::Identity("other@example".into()).to_wire();
    let e = fresh().initiate_recovered(p.now, &other).unwrap_err();
    assert!(matches!(e, Error::RecordMismatch { .. }), "{e}");
    // A peer config that is gone.
    let mut gone = rec;
    gone.peer = "nobody".into();
    let e = fresh().initiate_recovered(p.now, &gone).unwrap_err();
    assert!(matches!(e, Error::UnknownPeer(_)), "{e}");
}
