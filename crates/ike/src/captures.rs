//! Known-answer tests against real strongSwan 5.9.8 exchanges
//! (`crates/ike/testdata/captures/*`, PSK `capture-secret-0123456789`): parse every IKE
//! message, derive SKEYSEED and SK_* from the logged DH secret and the nonces on the
//! wire, open the IKE_AUTH SK payloads, recompute both AUTH values and derive the Child
//! SA keys, comparing each value with what charon logged.

use crate::config::{EspProposal, IkeProposal};
use crate::crypto::*;
use crate::message::*;
use crate::testutil::{capture_ike_all, log_hex};

const PSK: &[u8] = b"capture-secret-0123456789";

fn nonce(m: &Message) -> Vec<u8> {
    m.payloads
        .iter()
        .find_map(|p| match p {
            Payload::Nonce(n) => Some(n.clone()),
            _ => None,
        })
        .unwrap()
}

fn sa(ps: &[Payload]) -> Vec<Proposal> {
    ps.iter()
        .find_map(|p| match p {
            Payload::Sa(s) => Some(s.clone()),
            _ => None,
        })
        .unwrap()
}

fn open(suite: &IkeSuite, ke: &[u8], ka: &[u8], bytes: &[u8]) -> Vec<Payload> {
    let m = Message::parse(bytes).unwrap();
    let (first, body) = match &m.payloads[..] {
        [Payload::Sk { inner_first, body }] => (*inner_first, body.len()),
        p => panic!("not encrypted: {p:?}"),
    };
    let c = SkCipher {
        suite,
        key_e: ke,
        key_a: ka,
    };
    let inner = c.open(bytes, body).unwrap();
    parse_payloads(first, &inner).unwrap()
}

fn run(dir: &str, expect_ike: IkeProposal, expect_esp: EspProposal) {
    let msgs = capture_ike_all(dir);
    // Every IKE message of the capture parses and re-emits byte-exactly.
    for (_, _, b) in &msgs {
        let m = Message::parse(b).unwrap();
        assert_eq!(&m.emit(), b);
    }
    let m0 = Message::parse(&msgs[0].2).unwrap();
    let m1 = Message::parse(&msgs[1].2).unwrap();
    let (ni, nr) = (nonce(&m0), nonce(&m1));
    let (spi_i, spi_r) = (m1.header.spi_i, m1.header.spi_r);
    let chosen = IkeProposal::from_chosen(&sa(&m1.payloads)[0]).unwrap();
    assert_eq!(chosen, expect_ike);
    assert!(expect_ike.offered_by(&sa(&m0.payloads)[0]));
    let prf = Prf::from_id(chosen.prf).unwrap();
    let suite = IkeSuite {
        encr: chosen.encr,
        encr_bits: chosen.encr_bits,
        integ: chosen.integ,
        prf,
        dh: chosen.dh,
    };
    suite.validate().unwrap();

    let log = "initiator.log";
    let shared = log_hex(dir, log, "shared Diffie Hellman secret", 0);
    // The responder logged the same g^ir.
    assert_eq!(
        shared,
        log_hex(dir, "responder.log", "shared Diffie Hellman secret", 0)
    );
    let seed = skeyseed(prf, &ni, &nr, &shared);
    assert_eq!(*seed, log_hex(dir, log, "SKEYSEED", 0));
    let k = derive_ike_keys(&suite, &seed, &ni, &nr, spi_i, spi_r);
    assert_eq!(k.sk_d, log_hex(dir, log, "Sk_d secret", 0));
    assert_eq!(k.sk_ei, log_hex(dir, log, "Sk_ei secret", 0));
    assert_eq!(k.sk_er, log_hex(dir, log, "Sk_er secret", 0));
    assert_eq!(k.sk_pi, log_hex(dir, log, "Sk_pi secret", 0));
    assert_eq!(k.sk_pr, log_hex(dir, log, "Sk_pr secret", 0));
    if suite.integ.is_some() {
        assert_eq!(k.sk_ai, log_hex(dir, log, "Sk_ai secret", 0));
        assert_eq!(k.sk_ar, log_hex(dir, log, "Sk_ar secret", 0));
    }

    // IKE_AUTH request: open, parse, recompute the initiator's AUTH.
    let req = open(&suite, &k.sk_ei, &k.sk_ai, &msgs[2].2);
    let idi = req
        .iter()
        .find_map(|p| {
            if let Payload::IdI(i) = p {
                Some(i.clone())
            } else {
                None
            }
        })
        .unwrap();
    assert_eq!(idi.to_string(), "client@example");
    let auth_i = psk_auth_payload(&req);
    let octets = signed_octets(prf, &msgs[0].2, &nr, &k.sk_pi, &idi.body());
    assert_eq!(octets, log_hex(dir, log, "octets = message", 0));
    assert_eq!(psk_auth(prf, PSK, &[&octets]), auth_i);
    assert_ne!(psk_auth(prf, b"wrong", &[&octets]), auth_i);
    assert!(find_notify(&req, notify::INITIAL_CONTACT).is_some());

    // IKE_AUTH response: open, parse, recompute the responder's AUTH.
    let resp = open(&suite, &k.sk_er, &k.sk_ar, &msgs[3].2);
    let idr = resp
        .iter()
        .find_map(|p| {
            if let Payload::IdR(i) = p {
                Some(i.clone())
            } else {
                None
            }
        })
        .unwrap();
    assert_eq!(idr.to_string(), "gw@example");
    let auth_r = psk_auth_payload(&resp);
    let octets_r = signed_octets(prf, &msgs[1].2, &ni, &k.sk_pr, &idr.body());
    assert_eq!(psk_auth(prf, PSK, &[&octets_r]), auth_r);
    let tsi = resp
        .iter()
        .find_map(|p| {
            if let Payload::TsI(t) = p {
                Some(t.clone())
            } else {
                None
            }
        })
        .unwrap();
    assert_eq!(
        tsi,
        vec![TrafficSelector::host("192.168.250.1".parse().unwrap())]
    );

    // Child SA: chosen ESP proposal and KEYMAT (§2.17).
    let esp = &sa(&resp)[0];
    assert_eq!(EspProposal::from_chosen(esp).unwrap(), expect_esp);
    assert!(expect_esp.offered_by(&sa(&req)[0], false));
    let el = esp_encr_key_len(expect_esp.encr, expect_esp.encr_bits).unwrap();
    let il = esp_integ_key_len(expect_esp.integ).unwrap();
    let ck = derive_child_keys(prf, &k.sk_d, None, &ni, &nr, el, il);
    assert_eq!(
        ck.i_to_r.0,
        log_hex(dir, log, "encryption initiator key", 0)
    );
    assert_eq!(
        ck.r_to_i.0,
        log_hex(dir, log, "encryption responder key", 0)
    );
    if il > 0 {
        assert_eq!(ck.i_to_r.1, log_hex(dir, log, "integrity initiator key", 0));
        assert_eq!(ck.r_to_i.1, log_hex(dir, log, "integrity responder key", 0));
    }

    // The INFORMATIONAL exchanges and the final DELETE open with the same keys.
    let mut saw_delete = false;
    for (_, _, b) in &msgs[4..] {
        let m = Message::parse(b).unwrap();
        let from_init = m.header.from_initiator();
        let (ke, ka) = if from_init {
            (&k.sk_ei, &k.sk_ai)
        } else {
            (&k.sk_er, &k.sk_ar)
        };
        let inner = open(&suite, ke, ka, b);
        saw_delete |= inner
            .iter()
            .any(|p| matches!(p, Payload::Delete(Delete { protocol: 1, .. })));
    }
    assert!(saw_delete);

    // NAT-D: the initiator's destination hash is SHA1(SPIi | 0 | 10.250.0.2 | 500).
    let dst = find_notify(&m0.payloads, notify::NAT_DETECTION_DESTINATION_IP).unwrap();
    assert_eq!(
        dst.data,
        natd_hash(spi_i, 0, "10.250.0.2:500".parse().unwrap()).to_vec()
    );
    // kernel-libipsec makes charon fake its source hash to force UDP encapsulation.
    let src = find_notify(&m0.payloads, notify::NAT_DETECTION_SOURCE_IP).unwrap();
    assert_ne!(
        src.data,
        natd_hash(spi_i, 0, "10.250.0.1:500".parse().unwrap()).to_vec()
    );
}

/// The data of the shared-key AUTH payload (method 2) of a decrypted message.
fn psk_auth_payload(payloads: &[Payload]) -> Vec<u8> {
    payloads
        .iter()
        .find_map(|p| match p {
            Payload::Auth { method: 2, data } => Some(data.clone()),
            _ => None,
        })
        .expect("an AUTH payload with the shared key method")
}

#[test]
fn kat_gcm128_x25519() {
    run(
        "gcm128-x25519",
        IkeProposal::AES128_SHA256_X25519,
        EspProposal::AES128GCM16,
    );
}

#[test]
fn kat_gcm256_p384() {
    run(
        "gcm256-p384",
        IkeProposal::AES256GCM16_PRFSHA384_ECP384,
        EspProposal::AES256_SHA256,
    );
}
