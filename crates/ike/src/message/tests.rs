//! Codec tests against strongSwan captures and hand-built chains.

use super::*;

// IKE_SA_INIT request from strongSwan 5.9.8 (frame 1 of
// crates/ike/testdata/captures/gcm128-x25519/exchange.pcap), as logged in its initiator.log
// (the first 240 bytes of the AUTH octets are exactly that message).
pub(crate) fn init_request() -> Vec<u8> {
    crate::testutil::capture_ike("gcm128-x25519", 0)
}

#[test]
fn test_deconstruct_ike_sa_init() {
    let bytes = init_request();
    let m = Message::parse(&bytes).unwrap();
    assert_eq!(m.header.spi_i, 0x3e2a488b79d18798);
    assert_eq!(m.header.spi_r, 0);
    assert_eq!(m.header.exchange, exchange::IKE_SA_INIT);
    assert_eq!(m.header.flags, flags::INITIATOR);
    assert_eq!(m.payloads.len(), 8);
    match &m.payloads[0] {
        Payload::Sa(p) => {
            assert_eq!(p.len(), 1);
            assert_eq!(p[0].protocol, protocol::IKE);
            assert_eq!(
                p[0].transforms,
                vec![
                    Transform {
                        kind: 1,
                        id: 12,
                        key_len: Some(128)
                    },
                    Transform {
                        kind: 3,
                        id: 12,
                        key_len: None
                    },
                    Transform {
                        kind: 2,
                        id: 5,
                        key_len: None
                    },
                    Transform {
                        kind: 4,
                        id: 31,
                        key_len: None
                    },
                ]
            );
        }
        p => panic!("not SA: {p:?}"),
    }
    assert!(matches!(&m.payloads[1], Payload::Ke { group: 31, data } if data.len() == 32));
    assert!(matches!(&m.payloads[2], Payload::Nonce(n) if n.len() == 32));
    let kinds: Vec<u16> = m.notifies().map(|n| n.kind).collect();
    assert_eq!(
        kinds,
        vec![16388, 16389, 16430, 16431, 16406 /* REDIRECT_SUPPORTED, RFC 5685 */]
    );
}

#[test]
fn test_emit_round_trip_is_byte_exact() {
    let bytes = init_request();
    let m = Message::parse(&bytes).unwrap();
    assert_eq!(m.emit(), bytes);
}

#[test]
fn lying_lengths_are_errors() {
    let mut bytes = init_request();
    // SA payload length field (offset 28+2) claims more than is there.
    bytes[30] = 0xff;
    bytes[31] = 0xff;
    assert!(Message::parse(&bytes).is_err());
    let bytes = init_request();
    assert!(matches!(
        Message::parse(&bytes[..100]),
        Err(ParseError::LengthMismatch { .. })
    ));
}

#[test]
fn unknown_critical_payload_is_rejected() {
    let mut out = Vec::new();
    Header {
        spi_i: 1,
        spi_r: 0,
        next_payload: 200,
        version: 0x20,
        exchange: exchange::IKE_SA_INIT,
        flags: flags::INITIATOR,
        message_id: 0,
        length: 0,
    }
    .emit(&mut out);
    out.extend_from_slice(&[0, 0x80, 0, 4]);
    let len = out.len() as u32;
    out[24..28].copy_from_slice(&len.to_be_bytes());
    assert_eq!(
        Message::parse(&out),
        Err(ParseError::UnsupportedCritical(200))
    );
    out[29] = 0; // not critical: skipped
    let m = Message::parse(&out).unwrap();
    assert_eq!(
        m.payloads,
        vec![Payload::Unknown {
            kind: 200,
            data: vec![]
        }]
    );
}

#[test]
fn ts_narrowing() {
    let a = TrafficSelector::prefix("10.0.0.0".parse().unwrap(), 8);
    let b = TrafficSelector::host("10.1.2.3".parse().unwrap());
    assert_eq!(a.intersect(&b), Some(b));
    assert!(b.is_subset_of(&a));
    let c = TrafficSelector::host("11.1.2.3".parse().unwrap());
    assert_eq!(a.intersect(&c), None);
    let v6 = TrafficSelector::prefix("2001:db8::".parse().unwrap(), 32);
    assert_eq!(a.intersect(&v6), None);
}

#[test]
fn all_payloads_round_trip() {
    let payloads = vec![
        Payload::IdI(Identification {
            id_type: 3,
            data: b"client@example".to_vec(),
        }),
        Payload::Notify(Notify {
            protocol: 3,
            spi: vec![1, 2, 3, 4],
            kind: 16393,
            data: vec![],
        }),
        Payload::Auth {
            method: 2,
            data: vec![7; 32],
        },
        Payload::Delete(Delete {
            protocol: 3,
            spis: vec![0x11223344, 5],
        }),
        Payload::Delete(Delete {
            protocol: 1,
            spis: vec![],
        }),
        Payload::TsI(vec![TrafficSelector::host("192.168.1.1".parse().unwrap())]),
        Payload::TsR(vec![TrafficSelector::prefix(
            "2001:db8::".parse().unwrap(),
            64,
        )]),
        Payload::Cert {
            encoding: 4,
            data: vec![0x30, 0],
        },
        Payload::CertReq {
            encoding: 4,
            data: vec![9; 20],
        },
        Payload::Cp {
            cfg_type: 1,
            attrs: vec![0, 1, 0, 0],
        },
        Payload::Vendor(b"plexgate".to_vec()),
    ];
    let mut out = Vec::new();
    let first = emit_payloads(&payloads, &mut out);
    assert_eq!(parse_payloads(first, &out).unwrap(), payloads);
}
