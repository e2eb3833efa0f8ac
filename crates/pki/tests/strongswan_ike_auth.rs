//! Known-answer test from a real IKEv2 exchange between two strongSwan 5.9.8
//! charons authenticating with the test PKI (tests/vectors/strongswan-certs/:
//! exchange.pcap, initiator.log, the swanctl/strongswan configs, and extract.py,
//! which wrote auth-vectors.txt from them).
//!
//! For each IKE_AUTH message we check the integrity checksum and decrypt the SK
//! payload (AES-CBC-128 / HMAC-SHA2-256-128, keys from charon's log), take the
//! CERT, ID and AUTH payloads strongSwan sent, and run
//! `TrustStore::authenticate_peer` with the octets charon logged as signed. This
//! proves we accept strongSwan's RFC 7427 AUTH payloads: ECDSA P-256 with SHA-256
//! (both directions), RSASSA-PSS SHA-256 (`rsa_pss = yes`) and RSA PKCS#1 v1.5.

mod common;
use common::*;

use std::collections::HashMap;

use aes::cipher::{block_padding::NoPadding, BlockDecryptMut, KeyIvInit};
use plexgate_pki::{
    auth_method, DigitalSignature, Identity, PeerAuth, PkiError, SignatureScheme,
    CERT_ENCODING_X509_SIGNATURE,
};

fn vectors() -> HashMap<String, Vec<u8>> {
    let path = crate_dir().join("tests/vectors/strongswan-certs/auth-vectors.txt");
    std::fs::read_to_string(path)
        .expect("auth-vectors.txt")
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let (k, v) = l.split_once(" = ").expect("name = hex");
            (k.to_string(), hex::decode(v).expect("hex"))
        })
        .collect()
}

struct Payloads {
    id: Vec<u8>,
    certs: Vec<Vec<u8>>,
    auth_method: u8,
    auth_data: Vec<u8>,
}

const SK: u8 = 46;
const IDI: u8 = 35;
const IDR: u8 = 36;
const CERT: u8 = 37;
const AUTH: u8 = 39;

/// Checks the ICV, decrypts the SK payload and collects the ID payload of type
/// `id_type` (IDi or IDr: an initiator may also send an IDr hint), CERT and AUTH.
fn open(datagram: &[u8], sk_a: &[u8], sk_e: &[u8], id_type: u8) -> Payloads {
    // UDP 4500: strip the non-ESP marker (RFC 3948 §2.2).
    let msg = datagram
        .strip_prefix(&[0, 0, 0, 0])
        .expect("non-ESP marker");
    assert_eq!(msg[16], SK, "first payload is SK");
    let length = u32::from_be_bytes(msg[24..28].try_into().expect("4")) as usize;
    assert_eq!(length, msg.len());
    // RFC 7296 §3.14: the checksum covers the message up to the ICV.
    let (signed, icv) = msg.split_at(msg.len() - 16);
    let tag = ring::hmac::sign(&ring::hmac::Key::new(ring::hmac::HMAC_SHA256, sk_a), signed);
    assert_eq!(&tag.as_ref()[..16], icv, "HMAC-SHA2-256-128 ICV");
    let inner_first = msg[28];
    let sk_len = u16::from_be_bytes([msg[30], msg[31]]) as usize;
    let body = &msg[32..28 + sk_len - 16];
    let (iv, ct) = body.split_at(16);
    let mut buf = ct.to_vec();
    let plain = cbc::Decryptor::<aes::Aes128>::new(sk_e.into(), iv.into())
        .decrypt_padded_mut::<NoPadding>(&mut buf)
        .expect("CBC")
        .to_vec();
    let pad = *plain.last().expect("pad length") as usize;
    let mut rest = &plain[..plain.len() - pad - 1];
    let mut next = inner_first;
    let mut p = Payloads {
        id: vec![],
        certs: vec![],
        auth_method: 0,
        auth_data: vec![],
    };
    while next != 0 {
        let len = u16::from_be_bytes([rest[2], rest[3]]) as usize;
        let body = &rest[4..len];
        match next {
            t if t == id_type => p.id = body.to_vec(),
            CERT => {
                assert_eq!(body[0], CERT_ENCODING_X509_SIGNATURE);
                p.certs.push(body[1..].to_vec());
            }
            AUTH => {
                p.auth_method = body[0];
                p.auth_data = body[4..].to_vec();
            }
            _ => {}
        }
        next = rest[0];
        rest = &rest[len..];
    }
    p
}

fn check(sa: &str, initiator: bool, ca: &str, want_id: &str, want: SignatureScheme) {
    let v = vectors();
    let g = |k: &str| {
        v.get(&format!("{sa}.{k}"))
            .unwrap_or_else(|| panic!("{sa}.{k}"))
            .clone()
    };
    let (msg, a, e, octets, init) = if initiator {
        (
            g("auth_req"),
            g("sk_ai"),
            g("sk_ei"),
            g("octets_i"),
            g("init_req"),
        )
    } else {
        (
            g("auth_resp"),
            g("sk_ar"),
            g("sk_er"),
            g("octets_r"),
            g("init_resp"),
        )
    };
    // RFC 7296 §2.15: the signed octets start with the signer's IKE_SA_INIT message.
    assert!(
        octets.starts_with(&init),
        "octets begin with the IKE_SA_INIT message"
    );
    let p = open(&msg, &a, &e, if initiator { IDI } else { IDR });
    assert_eq!(p.auth_method, auth_method::DIGITAL_SIGNATURE);
    let ds = DigitalSignature::parse(&p.auth_data).expect("RFC 7427 AUTH data");
    // What we send for the same scheme is byte-identical to what strongSwan sent.
    assert_eq!(
        hex::encode(ds.algorithm_identifier),
        hex::encode(want.algorithm_identifier()),
        "AlgorithmIdentifier differs from strongSwan's"
    );
    assert_eq!(
        SignatureScheme::from_algorithm_identifier(ds.algorithm_identifier).expect("known"),
        want
    );
    let identity = Identity::from_payload_body(&p.id).expect("ID payload");
    assert_eq!(identity, Identity::parse(want_id).expect("id"));
    let certs: Vec<&[u8]> = p.certs.iter().map(Vec::as_slice).collect();
    let peer = PeerAuth {
        cert_payloads: &certs,
        identity: &identity,
        auth_method: p.auth_method,
        auth_data: &p.auth_data,
        signed_octets: &octets,
    };
    // The CA certificates as they were at capture time (copied next to the capture,
    // so that regenerating keys/test/ does not invalidate this test).
    let dir = crate_dir().join("tests/vectors/strongswan-certs");
    let cas = plexgate_pki::TrustStore::from_files(&[dir.join(ca)]).expect("CA");
    let ee = plexgate_pki::Certificate::from_der(&p.certs[0]).expect("cert");
    let now = at(ee.validity().expect("validity").0 + 86_400);
    let verified = cas
        .authenticate_peer(&peer, now)
        .unwrap_or_else(|e| panic!("{sa}: {e}"));
    assert!(verified.matches(&identity));
    // The same AUTH over different octets (e.g. the other side's) is refused.
    let other = if initiator {
        g("octets_r")
    } else {
        g("octets_i")
    };
    let replay = PeerAuth {
        signed_octets: &other,
        ..peer
    };
    assert!(matches!(
        cas.authenticate_peer(&replay, now),
        Err(PkiError::BadSignature { .. })
    ));
}

#[test]
fn strongswan_ecdsa_initiator_auth() {
    check(
        "ecdsa",
        true,
        "ca.pem",
        "client.plexgate.test",
        SignatureScheme::EcdsaSha256,
    );
}

#[test]
fn strongswan_ecdsa_responder_auth() {
    check(
        "ecdsa",
        false,
        "ca.pem",
        "gw.plexgate.test",
        SignatureScheme::EcdsaSha256,
    );
}

#[test]
fn strongswan_rsa_pss_initiator_auth() {
    check(
        "rsa",
        true,
        "rsa-ca.pem",
        "rsa-client.plexgate.test",
        SignatureScheme::RsaPssSha256,
    );
}

#[test]
fn strongswan_rsa_pkcs1_responder_auth() {
    check(
        "rsa",
        false,
        "rsa-ca.pem",
        "rsa-gw.plexgate.test",
        SignatureScheme::RsaPkcs1Sha256,
    );
}
