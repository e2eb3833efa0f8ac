//! Tests of AlgorithmIdentifier encoding and parsing and of sign/verify.

use super::scheme::*;
use super::*;
use crate::der::{self, tag};

const ALL: [SignatureScheme; 10] = [
    SignatureScheme::EcdsaSha256,
    SignatureScheme::EcdsaSha384,
    SignatureScheme::EcdsaSha512,
    SignatureScheme::RsaPkcs1Sha256,
    SignatureScheme::RsaPkcs1Sha384,
    SignatureScheme::RsaPkcs1Sha512,
    SignatureScheme::RsaPssSha256,
    SignatureScheme::RsaPssSha384,
    SignatureScheme::RsaPssSha512,
    SignatureScheme::Ed25519,
];

#[test]
fn algorithm_identifiers_round_trip() {
    for s in ALL {
        let der = s.algorithm_identifier();
        assert!(der.len() < 256);
        assert_eq!(
            SignatureScheme::from_algorithm_identifier(&der).expect("parses"),
            s
        );
    }
}

#[test]
fn rfc7427_appendix_a_encodings() {
    // RFC 7427 Appendix A.1.1 sha1WithRSAEncryption is refused (SHA-1);
    // A.3.2/A.3.3 ecdsa-with-sha384/512 and A.2.3/A.2.4 sha384/512WithRSA:
    let cases = [
        (SignatureScheme::EcdsaSha384, "300a06082a8648ce3d040303"),
        (SignatureScheme::EcdsaSha512, "300a06082a8648ce3d040304"),
        (
            SignatureScheme::RsaPkcs1Sha384,
            "300d06092a864886f70d01010c0500",
        ),
        (
            SignatureScheme::RsaPkcs1Sha512,
            "300d06092a864886f70d01010d0500",
        ),
    ];
    for (s, hex) in cases {
        let der: Vec<u8> = (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("hex"))
            .collect();
        assert_eq!(s.algorithm_identifier(), der, "{s:?}");
    }
}

#[test]
fn ecdsa_with_null_parameters_is_tolerated() {
    let der = der::constructed(
        tag::SEQUENCE,
        &[&der::tlv(tag::OID, OID_ECDSA_SHA256), NULL],
    );
    assert_eq!(
        SignatureScheme::from_algorithm_identifier(&der).expect("ok"),
        SignatureScheme::EcdsaSha256
    );
    let trailing = [SignatureScheme::EcdsaSha256.algorithm_identifier(), vec![0]].concat();
    assert!(SignatureScheme::from_algorithm_identifier(&trailing).is_err());
}

#[test]
fn pss_parameters_we_cannot_verify_are_refused() {
    let hash = hash_alg_id(OID_SHA256);
    let mgf_sha1 = der::constructed(
        tag::SEQUENCE,
        &[
            &der::tlv(tag::OID, OID_MGF1),
            &hash_alg_id(&[0x2b, 0x0e, 0x03, 0x02, 0x1a]),
        ],
    );
    let build = |fields: &[Vec<u8>]| {
        let refs: Vec<&[u8]> = fields.iter().map(Vec::as_slice).collect();
        let params = der::constructed(tag::SEQUENCE, &refs);
        der::constructed(
            tag::SEQUENCE,
            &[&der::tlv(tag::OID, OID_RSASSA_PSS), &params],
        )
    };
    // No parameters at all: SHA-1 defaults.
    assert!(SignatureScheme::from_algorithm_identifier(&build(&[])).is_err());
    // SHA-256 with the default salt (20) is not salt = hash length.
    let mgf = der::constructed(tag::SEQUENCE, &[&der::tlv(tag::OID, OID_MGF1), &hash]);
    let only_hash = build(&[der::tlv(0xa0, &hash), der::tlv(0xa1, &mgf)]);
    assert!(SignatureScheme::from_algorithm_identifier(&only_hash).is_err());
    // MGF1 with SHA-1 under a SHA-256 message hash.
    let mixed = build(&[
        der::tlv(0xa0, &hash),
        der::tlv(0xa1, &mgf_sha1),
        der::tlv(0xa2, &der::tlv(tag::INTEGER, &[32])),
    ]);
    assert!(SignatureScheme::from_algorithm_identifier(&mixed).is_err());
    // Explicit trailer field 1 is fine.
    let explicit = build(&[
        der::tlv(0xa0, &hash),
        der::tlv(0xa1, &mgf),
        der::tlv(0xa2, &der::tlv(tag::INTEGER, &[32])),
        der::tlv(0xa3, &der::tlv(tag::INTEGER, &[1])),
    ]);
    assert_eq!(
        SignatureScheme::from_algorithm_identifier(&explicit).expect("ok"),
        SignatureScheme::RsaPssSha256
    );
    // Strict DER: bytes after an element inside its enclosing tag are refused
    // (found by the never_panic proptest: hash SEQUENCE shortened so the NULL
    // trailed inside [0]).
    let hash_oid_only = der::constructed(tag::SEQUENCE, &[&der::tlv(tag::OID, OID_SHA256)]);
    let trailing = |inner: &[u8]| [inner, NULL].concat();
    for fields in [
        vec![
            der::tlv(0xa0, &trailing(&hash_oid_only)),
            der::tlv(0xa1, &mgf),
            der::tlv(0xa2, &der::tlv(tag::INTEGER, &[32])),
        ],
        vec![
            der::tlv(0xa0, &hash),
            der::tlv(0xa1, &trailing(&mgf)),
            der::tlv(0xa2, &der::tlv(tag::INTEGER, &[32])),
        ],
        vec![
            der::tlv(0xa0, &hash),
            der::tlv(0xa1, &mgf),
            der::tlv(0xa2, &trailing(&der::tlv(tag::INTEGER, &[32]))),
        ],
    ] {
        assert!(SignatureScheme::from_algorithm_identifier(&build(&fields)).is_err());
    }
}

#[test]
fn digital_signature_parse_bounds() {
    assert!(DigitalSignature::parse(&[]).is_err());
    assert!(DigitalSignature::parse(&[5, 1, 2, 3]).is_err());
    assert!(
        DigitalSignature::parse(&[2, 1, 2]).is_err(),
        "no signature value"
    );
    let ds = DigitalSignature::parse(&[2, 1, 2, 9]).expect("ok");
    assert_eq!(
        (ds.algorithm_identifier, ds.signature),
        (&[1u8, 2][..], &[9u8][..])
    );
}
