use std::sync::Arc;

use super::*;
use crate::memory::MemoryStore;
use crate::seal::StoreKey;

pub(crate) fn book(site: &str) -> RecordBook {
    let ring = Keyring::single(site, StoreKey::from_bytes(&[3u8; 32]).unwrap());
    RecordBook::new(Keys::new("/plexgate/site", Arc::new(ring)))
}

pub(crate) fn ike(n: u64) -> IkeRecord {
    IkeRecord {
        schema: SCHEMA_VERSION,
        peer: "branch".into(),
        spis: IkeSpis {
            initiator: 0x1111_0000_0000_0000 + n,
            responder: 0x2222_0000_0000_0000 + n,
        },
        initiator: false,
        local: "192.0.2.10:4500".parse().unwrap(),
        remote: "198.51.100.7:31337".parse().unwrap(),
        nat_local: false,
        nat_remote: true,
        local_id: Identity {
            id_type: 2,
            data: b"gw.plexgate.test".to_vec(),
        },
        remote_id: Identity {
            id_type: 3,
            data: b"alice@branch.example".to_vec(),
        },
        auth_method: 2,
        proposal: IkeProposal {
            encr: 20,
            encr_bits: 256,
            integ: None,
            prf: 7,
            dh: 31,
        },
        established_unix_ms: 1_700_000_000_000,
    }
}

pub(crate) fn child(n: u64, spi_in: u32) -> ChildRecord {
    let host = |a: &str| Selector {
        protocol: 0,
        start_port: 0,
        end_port: 65535,
        start: a.parse().unwrap(),
        end: a.parse().unwrap(),
    };
    ChildRecord {
        schema: SCHEMA_VERSION,
        ike: ike(n).spis,
        peer: "branch".into(),
        child: "web".into(),
        spis: ChildSpis {
            spi_in,
            spi_out: 0xdead_0000 + n as u32,
        },
        protocol: 50,
        proposal: EspProposal {
            encr: 20,
            encr_bits: 128,
            integ: None,
            dh: None,
        },
        esn: true,
        mode: Mode::Tunnel,
        ts_local: vec![host("10.100.0.10")],
        ts_remote: vec![host("172.16.5.9")],
        lifetimes: Lifetimes {
            soft: Limits {
                seconds: Some(3000),
                ..Limits::default()
            },
            hard: Limits {
                seconds: Some(3600),
                bytes: Some(1 << 40),
                packets: None,
            },
        },
        udp_encap: Some(UdpEncap {
            local_port: 4500,
            remote_port: 31337,
        }),
        dvipas: vec!["10.100.0.10".parse().unwrap()],
        replaces: None,
        established_unix_ms: 1_700_000_000_500,
    }
}

#[test]
fn records_round_trip_sealed_and_padded() {
    let b = book("site-a");
    for r in [Record::Ike(ike(1)), Record::Child(child(1, 0xc1))] {
        let (key, sealed) = b.seal(&r).unwrap();
        assert_eq!(key, b.key_of(&r));
        assert_eq!(
            (sealed.len() - crate::seal::HEADER_LEN - crate::seal::TAG_LEN) % PAD,
            0
        );
        assert_eq!(b.open(&key, &sealed).unwrap(), r);
    }
    let c = child(1, 0xc1);
    assert!(b
        .keys()
        .child(c.ike, 0xc1)
        .starts_with(&b.keys().children_of(ike(1).spis)));
}

#[test]
fn a_record_under_the_wrong_key_is_refused() {
    let b = book("site-a");
    let one = Record::Ike(ike(1));
    let two_key = b.key_of(&Record::Ike(ike(2)));
    // Sealed for the other key (as a buggy or malicious writer with the key could):
    let sealed = seal_json(b.keys().ring(), &two_key, &ike(1)).unwrap();
    assert!(matches!(
        b.open(&two_key, &sealed),
        Err(SealError::Decode(_))
    ));
    // An IKE record sealed under a child key does not decode as a child.
    let ck = b.key_of(&Record::Child(child(1, 5)));
    let sealed = seal_json(b.keys().ring(), &ck, &ike(1)).unwrap();
    assert!(matches!(b.open(&ck, &sealed), Err(SealError::Decode(_))));
    assert!(b.open("/elsewhere/x", &b.seal(&one).unwrap().1).is_err());
    assert_eq!(b.keys().ring().counters().refused_malformed, 3);
}

#[test]
fn load_opens_everything_and_lists_what_it_refused() {
    let b = book("site-a");
    let s = MemoryStore::new();
    for r in [
        Record::Ike(ike(1)),
        Record::Child(child(1, 10)),
        Record::Child(child(1, 11)),
        Record::Child(child(9, 12)),
        Record::Ike(ike(2)),
    ] {
        let (k, v) = b.seal(&r).unwrap();
        s.put(&k, &v, None).unwrap();
    }
    // Tamper with one, move another.
    let k2 = b.key_of(&Record::Ike(ike(2)));
    let mut v = s.get(&k2).unwrap().unwrap().value;
    let n = v.len();
    v[n - 1] ^= 1;
    s.put(&k2, &v, None).unwrap();
    let k10 = b.key_of(&Record::Child(child(1, 10)));
    let moved = format!("{}ffff", b.keys().children_of(ike(1).spis));
    s.put(&moved, &s.get(&k10).unwrap().unwrap().value, None)
        .unwrap();
    let l = b.load(&s).unwrap();
    assert_eq!(l.ike.len(), 1);
    assert_eq!(l.ike[0].record, ike(1));
    assert_eq!(l.children.len(), 3);
    assert_eq!(l.children_of(ike(1).spis).count(), 2);
    assert_eq!(l.orphans().count(), 1);
    let mut refused: Vec<_> = l
        .refused
        .iter()
        .map(|(k, e)| (k.clone(), e.clone()))
        .collect();
    refused.sort_by(|a, b| a.0.cmp(&b.0));
    let mut want = vec![(k2, SealError::Forged), (moved, SealError::Forged)];
    want.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(refused, want);
}

#[test]
fn another_site_cannot_read_the_records() {
    let a = book("site-a");
    let b = book("site-b");
    let (k, v) = a.seal(&Record::Ike(ike(1))).unwrap();
    assert_eq!(b.open(&k, &v), Err(SealError::Forged));
}
