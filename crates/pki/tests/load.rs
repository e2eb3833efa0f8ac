//! Loading keys and certificates from the test PKI files in every supported form,
//! and the error messages for files that are not what they should be.

mod common;
use common::*;

use plexgate_pki::{Certificate, LocalSigner, PeerPublicKey, PkiError};

#[test]
fn pkcs8_pem_keys_of_every_type_load() {
    for (file, kind) in [
        ("gw.pem", "ECDSA P-256"),
        ("client.pem", "ECDSA P-256"),
        ("p384-client.pem", "ECDSA P-384"),
        ("rsa-gw.pem", "RSA"),
        ("rsa-client.pem", "RSA"),
    ] {
        assert_eq!(signer(file).kind(), kind, "{file}");
    }
}

#[test]
fn legacy_forms_give_the_same_key() {
    let pkcs8 = signer("gw.pem").public_key();
    let sec1 = LocalSigner::load(keys().join("formats/gw-sec1.pem")).expect("SEC1 PEM");
    assert_eq!(sec1.public_key(), pkcs8);
    let der = LocalSigner::load(keys().join("formats/gw-pkcs8.der")).expect("PKCS#8 DER");
    assert_eq!(der.public_key(), pkcs8);
    let rsa = LocalSigner::load(keys().join("formats/rsa-gw-pkcs1.pem")).expect("PKCS#1 PEM");
    assert_eq!(rsa.public_key(), signer("rsa-gw.pem").public_key());
    assert!(matches!(
        rsa.public_key(),
        PeerPublicKey::Rsa { bits: 2048, .. }
    ));
}

#[test]
fn key_matches_its_certificate() {
    for (key, crt) in [
        ("gw.pem", "x509/gw.pem"),
        ("client.pem", "x509/client.pem"),
        ("rsa-gw.pem", "x509/rsa-gw.pem"),
        ("p384-client.pem", "x509/p384-client.pem"),
    ] {
        assert_eq!(
            signer(key).public_key(),
            cert(crt).public_key().expect("key"),
            "{key}"
        );
    }
    assert_ne!(
        signer("gw.pem").public_key(),
        cert("x509/client.pem").public_key().expect("key")
    );
}

#[test]
fn der_certificate_loads() {
    let der = Certificate::load(keys().join("formats/gw.der")).expect("DER cert");
    assert_eq!(der, cert("x509/gw.pem"));
}

#[test]
fn certificate_is_not_a_key() {
    let err = LocalSigner::load(keys().join("x509/gw.pem")).expect_err("a certificate");
    let msg = err.to_string();
    assert!(msg.starts_with("key file "), "{msg}");
    assert!(msg.contains("x509/gw.pem"), "{msg}");
    assert!(msg.contains("no PEM block PRIVATE KEY"), "{msg}");
}

#[test]
fn key_is_not_a_certificate() {
    let err = Certificate::load(keys().join("private/gw.pem")).expect_err("a key");
    let msg = err.to_string();
    assert!(msg.starts_with("certificate file "), "{msg}");
    assert!(msg.contains("CERTIFICATE"), "{msg}");
}

#[test]
fn missing_file_names_the_path() {
    let err = LocalSigner::load("/nonexistent/k.pem").expect_err("missing");
    assert!(matches!(err, PkiError::Io { .. }));
    assert!(err.to_string().contains("/nonexistent/k.pem"), "{err}");
}

#[test]
fn garbage_and_truncated_keys_are_errors() {
    assert!(LocalSigner::from_bytes(b"hello").is_err());
    assert!(LocalSigner::from_der(&[0x30, 0x03, 0x02, 0x01, 0x00]).is_err());
    let der = std::fs::read(keys().join("formats/gw-pkcs8.der")).expect("read");
    for cut in [1, 10, der.len() / 2, der.len() - 1] {
        let err = LocalSigner::from_der(&der[..cut]).expect_err("truncated");
        assert!(matches!(err, PkiError::BadPrivateKey(_)), "{err}");
    }
    let enc = b"-----BEGIN ENCRYPTED PRIVATE KEY-----\nMAA=\n-----END ENCRYPTED PRIVATE KEY-----\n";
    let err = LocalSigner::from_pem(enc).expect_err("encrypted");
    assert!(err.to_string().contains("encrypted"), "{err}");
}

#[test]
fn sec1_key_without_public_key_is_rejected_with_advice() {
    // ECPrivateKey { version 1, privateKey (32 bytes), [0] prime256v1 } — no [1].
    let mut sec1 = vec![0x30, 0x31, 0x02, 0x01, 0x01, 0x04, 0x20];
    sec1.extend([0x11; 32]);
    sec1.extend([
        0xa0, 0x0a, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07,
    ]);
    sec1[1] = (sec1.len() - 2) as u8;
    let err = LocalSigner::from_sec1_der(&sec1).expect_err("no public key");
    assert!(err.to_string().contains("openssl pkcs8 -topk8"), "{err}");
}

#[test]
fn ca_bundle_with_several_certificates() {
    let mut bundle = std::fs::read(keys().join("x509ca/ca.pem")).expect("read");
    bundle.extend(std::fs::read(keys().join("x509ca/rsa-ca.pem")).expect("read"));
    let certs = Certificate::from_pem(&bundle).expect("two");
    assert_eq!(certs.len(), 2);
    assert!(certs.iter().all(Certificate::is_ca));
}
