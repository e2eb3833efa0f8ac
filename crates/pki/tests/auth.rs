//! IKEv2 AUTH signatures: round trips for every algorithm, the choice of method
//! from the peer's SIGNATURE_HASH_ALGORITHMS, and refusal of bad signatures.

mod common;
use common::*;

use plexgate_pki::{
    auth_method, decode_hash_algorithms, encode_hash_algorithms, hash_alg, verify_auth,
    DigitalSignature, LocalSigner, PkiError, RsaPadding, SignatureScheme,
    SUPPORTED_HASH_ALGORITHMS,
};

/// What strongSwan 5.9 sends in SIGNATURE_HASH_ALGORITHMS: SHA2-256, SHA2-384,
/// SHA2-512 and Identity (0002 0003 0004 0005).
const STRONGSWAN_HASHES: [u16; 4] = [2, 3, 4, 5];

const OCTETS: &[u8] = b"InitiatorRealMessage | Nr | prf(SK_pi, IDi')";

fn round_trip(signer: &LocalSigner, peer_hashes: &[u16]) -> (u8, Vec<u8>) {
    let (method, data) = signer
        .sign(OCTETS, peer_hashes)
        .unwrap_or_else(|e| panic!("{e}"));
    let pk = signer.public_key();
    verify_auth(&pk, method, &data, OCTETS).unwrap_or_else(|e| panic!("{signer:?}: {e}"));
    // Any change of the signed octets is refused ...
    let err = verify_auth(&pk, method, &data, b"other octets").expect_err("wrong octets");
    assert!(matches!(err, PkiError::BadSignature { .. }), "{err}");
    // ... and so is a flipped bit in the signature (the last byte).
    let mut bad = data.clone();
    *bad.last_mut().expect("non-empty") ^= 0x01;
    assert!(verify_auth(&pk, method, &bad, OCTETS).is_err());
    (method, data)
}

#[test]
fn ecdsa_p256_method_14_when_peer_offers_sha256() {
    let (method, data) = round_trip(&signer("gw.pem"), &STRONGSWAN_HASHES);
    assert_eq!(method, auth_method::DIGITAL_SIGNATURE);
    let ds = DigitalSignature::parse(&data).expect("parses");
    // RFC 7427 Appendix A.3.1 ecdsa-with-sha256: 12-byte AlgorithmIdentifier.
    assert_eq!(data[0], 0x0c);
    assert_eq!(
        ds.algorithm_identifier,
        hex::decode("300a06082a8648ce3d040302").expect("hex")
    );
    // DER ECDSA-Sig-Value: SEQUENCE { r INTEGER, s INTEGER }
    assert_eq!(ds.signature[0], 0x30);
}

#[test]
fn ecdsa_p256_method_9_without_peer_hashes() {
    let (method, data) = round_trip(&signer("gw.pem"), &[]);
    assert_eq!(method, auth_method::ECDSA_SHA256_P256);
    assert_eq!(data.len(), 64, "RFC 4754: r|s, 32 bytes each");
    // Peer offers only SHA-512: still method 9, which every RFC 4754 peer takes.
    let (method, _) = round_trip(&signer("gw.pem"), &[hash_alg::SHA2_512]);
    assert_eq!(method, auth_method::ECDSA_SHA256_P256);
}

#[test]
fn ecdsa_p384_methods_14_and_10() {
    let s = signer("p384-client.pem");
    let (method, data) = round_trip(&s, &STRONGSWAN_HASHES);
    assert_eq!(method, auth_method::DIGITAL_SIGNATURE);
    let ds = DigitalSignature::parse(&data).expect("parses");
    assert_eq!(
        ds.algorithm_identifier,
        hex::decode("300a06082a8648ce3d040303").expect("hex")
    );
    let (method, data) = round_trip(&s, &[]);
    assert_eq!(method, auth_method::ECDSA_SHA384_P384);
    assert_eq!(data.len(), 96);
}

#[test]
fn rsa_pkcs1_method_14() {
    let (method, data) = round_trip(&signer("rsa-gw.pem"), &STRONGSWAN_HASHES);
    assert_eq!(method, auth_method::DIGITAL_SIGNATURE);
    let ds = DigitalSignature::parse(&data).expect("parses");
    // RFC 7427 Appendix A.2.2 sha256WithRSAEncryption, 15 bytes with NULL parameters.
    assert_eq!(data[0], 15);
    assert_eq!(
        ds.algorithm_identifier,
        hex::decode("300d06092a864886f70d01010b0500").expect("hex")
    );
    assert_eq!(ds.signature.len(), 256);
    // Peer without the notify: still method 14 / SHA-256 (we cannot sign SHA-1).
    let (method, _) = round_trip(&signer("rsa-gw.pem"), &[]);
    assert_eq!(method, auth_method::DIGITAL_SIGNATURE);
    // Peer that wants SHA-384 only.
    let (_, data) = round_trip(&signer("rsa-gw.pem"), &[hash_alg::SHA2_384]);
    let ds = DigitalSignature::parse(&data).expect("parses");
    assert_eq!(
        SignatureScheme::from_algorithm_identifier(ds.algorithm_identifier).expect("known"),
        SignatureScheme::RsaPkcs1Sha384
    );
}

#[test]
fn rsa_pss_method_14() {
    let s = signer("rsa-gw.pem").with_rsa_padding(RsaPadding::Pss);
    let (_, data) = round_trip(&s, &STRONGSWAN_HASHES);
    let ds = DigitalSignature::parse(&data).expect("parses");
    // The RSASSA-PSS AlgorithmIdentifier with SHA-256, MGF1-SHA-256, salt 32: byte for
    // byte what strongSwan 5.9.8 `pki --issue --rsa-padding pss` put into
    // keys/test/x509/rsa-client.pem (and RFC 7427 Appendix A.4.3).
    let strongswan = "304106092a864886f70d01010a3034a00f300d06096086480165030402010500\
                      a11c301a06092a864886f70d010108300d06096086480165030402010500a203020120";
    assert_eq!(hex::encode(ds.algorithm_identifier), strongswan);
    assert_eq!(data[0], 0x43);
    for (hash, scheme) in [
        (hash_alg::SHA2_384, SignatureScheme::RsaPssSha384),
        (hash_alg::SHA2_512, SignatureScheme::RsaPssSha512),
    ] {
        let (_, data) = round_trip(&s, &[hash]);
        let ds = DigitalSignature::parse(&data).expect("parses");
        assert_eq!(
            SignatureScheme::from_algorithm_identifier(ds.algorithm_identifier).expect("ok"),
            scheme
        );
    }
}

#[test]
fn pss_algorithm_identifier_in_strongswan_certificate_parses() {
    // The signatureAlgorithm of a certificate strongSwan signed with PSS.
    let der = cert("x509/rsa-client.pem").der().to_vec();
    let oid = hex::decode("06092a864886f70d01010a").expect("hex");
    let at = der
        .windows(oid.len())
        .position(|w| w == oid.as_slice())
        .expect("PSS OID")
        - 2;
    let alg = &der[at..at + 67];
    assert_eq!(
        SignatureScheme::from_algorithm_identifier(alg).expect("parses"),
        SignatureScheme::RsaPssSha256
    );
}

#[test]
fn rsa_no_common_hash() {
    let err = signer("rsa-gw.pem")
        .sign(OCTETS, &[hash_alg::SHA1])
        .expect_err("SHA-1 only");
    assert!(matches!(err, PkiError::NoCommonHash { .. }), "{err}");
}

#[test]
fn signatures_do_not_verify_with_another_key() {
    let (method, data) = signer("gw.pem")
        .sign(OCTETS, &STRONGSWAN_HASHES)
        .expect("sign");
    let other = signer("client.pem").public_key();
    let err = verify_auth(&other, method, &data, OCTETS).expect_err("wrong key");
    assert!(matches!(err, PkiError::BadSignature { .. }), "{err}");
    // An ECDSA signature presented against an RSA key: a type mismatch, not a panic.
    let rsa = signer("rsa-gw.pem").public_key();
    let err = verify_auth(&rsa, method, &data, OCTETS).expect_err("mismatch");
    assert!(matches!(err, PkiError::KeyMismatch { .. }), "{err}");
    let (m9, d9) = signer("gw.pem").sign(OCTETS, &[]).expect("sign");
    assert!(matches!(
        verify_auth(&rsa, m9, &d9, OCTETS),
        Err(PkiError::KeyMismatch { .. })
    ));
}

#[test]
fn method_14_with_a_substituted_algorithm_is_refused() {
    // Re-label an ECDSA-SHA256 signature as ECDSA-SHA384: must not verify.
    let s = signer("gw.pem");
    let data = s
        .sign_digital_signature(SignatureScheme::EcdsaSha256, OCTETS)
        .expect("sign");
    let ds = DigitalSignature::parse(&data).expect("parses");
    let relabelled = DigitalSignature::emit(SignatureScheme::EcdsaSha384, ds.signature);
    assert!(verify_auth(&s.public_key(), 14, &relabelled, OCTETS).is_err());
}

#[test]
fn unsupported_and_malformed_auth_data() {
    let pk = signer("gw.pem").public_key();
    assert!(matches!(
        verify_auth(&pk, 2, b"x", OCTETS),
        Err(PkiError::UnsupportedAuthMethod(2))
    ));
    assert!(matches!(
        verify_auth(&pk, 11, b"x", OCTETS),
        Err(PkiError::UnsupportedAuthMethod(11))
    ));
    for bad in [&b""[..], &[0x20, 0x30][..], &[0x0c][..]] {
        assert!(matches!(
            verify_auth(&pk, 14, bad, OCTETS),
            Err(PkiError::MalformedAuth(_))
        ));
    }
    // sha1WithRSAEncryption in method 14 is refused as weak.
    let sha1 = hex::decode("0f300d06092a864886f70d0101050500aabb").expect("hex");
    let err = verify_auth(&pk, 14, &sha1, OCTETS).expect_err("sha1");
    assert!(
        matches!(err, PkiError::UnsupportedSignatureAlgorithm(_)),
        "{err}"
    );
}

#[test]
fn ecdsa_sign_with_wrong_scheme_is_an_error() {
    let err = signer("gw.pem")
        .sign_digital_signature(SignatureScheme::RsaPkcs1Sha256, OCTETS)
        .expect_err("ECDSA key cannot make RSA signatures");
    assert!(matches!(err, PkiError::KeyMismatch { .. }), "{err}");
    assert!(signer("rsa-gw.pem").sign_classic(OCTETS).is_err());
}

#[test]
fn signature_hash_algorithms_notify() {
    // RFC 7427 §4: 16-bit identifiers, no padding. strongSwan 5.9.8 sends
    // 0002 0003 0004 0005 (bytes 402f00020003000400050000 in the IKE_SA_INIT of
    // the team's strongSwan captures, gcm128-x25519/exchange.pcap).
    let data = encode_hash_algorithms(&STRONGSWAN_HASHES);
    assert_eq!(data, [0, 2, 0, 3, 0, 4, 0, 5]);
    assert_eq!(
        decode_hash_algorithms(&data).expect("ok"),
        STRONGSWAN_HASHES
    );
    assert_eq!(
        encode_hash_algorithms(SUPPORTED_HASH_ALGORITHMS),
        [0, 2, 0, 3, 0, 4, 0, 5]
    );
    assert!(decode_hash_algorithms(&[0, 2, 0]).is_err());
    assert!(decode_hash_algorithms(&[]).is_err());
    assert_eq!(
        decode_hash_algorithms(&[0xff, 0xff]).expect("unknown kept"),
        [0xffff]
    );
}

#[test]
fn ed25519_method_14() {
    // The example Ed25519 private key of RFC 8410 §10.3 (PKCS#8 v1 PEM).
    let pem = b"-----BEGIN PRIVATE KEY-----\n\
MC4CAQAwBQYDK2VwBCIEINTuctv5E1hK1bbY8fdp+K06/nwoy/HU++CXqI9EdVhC\n\
-----END PRIVATE KEY-----\n";
    let s = LocalSigner::from_pem(pem).expect("RFC 8410 key loads");
    let (method, data) = round_trip(&s, &STRONGSWAN_HASHES);
    assert_eq!(method, 14);
    // RFC 8420 §2: AlgorithmIdentifier id-Ed25519 without parameters.
    assert_eq!(
        &data[..8],
        &hex::decode("07300506032b6570").expect("hex")[..]
    );
    let err = s
        .sign(OCTETS, &[hash_alg::SHA2_256])
        .expect_err("peer lacks Identity");
    assert!(matches!(err, PkiError::NoCommonHash { .. }), "{err}");
}
