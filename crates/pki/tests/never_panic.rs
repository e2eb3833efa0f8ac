//! "Arbitrary bytes never panic" property tests for every parser that sees
//! untrusted input — the CI twins of fuzz/fuzz_targets/pki_cert.rs. Besides pure
//! noise they mutate real certificates and AUTH data, which reaches deeper.

mod common;
use common::*;

use std::sync::OnceLock;

use proptest::prelude::*;

use plexgate_pki::{
    decode_hash_algorithms, pem::parse_pem, verify_auth, Certificate, DigitalSignature,
    DistinguishedName, Identity, LocalSigner, SignatureScheme,
};

/// Loaded once: the CA store, two public keys, and a real RSASSA-PSS AUTH payload.
struct Fixture {
    cas: plexgate_pki::TrustStore,
    keys: Vec<plexgate_pki::PeerPublicKey>,
    gw_der: Vec<u8>,
    rsa_key: plexgate_pki::PeerPublicKey,
    pss_auth: Vec<u8>,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let s = signer("rsa-gw.pem").with_rsa_padding(plexgate_pki::RsaPadding::Pss);
        let (_, pss_auth) = s.sign(b"octets", &[2]).expect("sign");
        Fixture {
            cas: store(&["x509ca/ca.pem"]),
            keys: vec![
                signer("gw.pem").public_key(),
                signer("p384-client.pem").public_key(),
            ],
            gw_der: cert("x509/gw.pem").der().to_vec(),
            rsa_key: s.public_key(),
            pss_auth,
        }
    })
}

fn exercise_cert(bytes: &[u8]) {
    if let Ok(c) = Certificate::from_der(bytes) {
        let _ = c.subject().map(|s| s.to_string());
        let _ = c.issuer();
        let _ = c.subject_alt_names();
        let _ = c.key_ids();
        let _ = c.validity();
        let _ = c.is_ca();
        let _ = fixture()
            .cas
            .verify_chain(&c, std::slice::from_ref(&c), now());
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn certificate_noise(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        exercise_cert(&bytes);
        let _ = Certificate::from_bytes(&bytes);
    }

    #[test]
    fn certificate_mutations(pos in any::<prop::sample::Index>(), val in any::<u8>(), cut in any::<prop::sample::Index>()) {
        let mut m = fixture().gw_der.clone();
        let i = pos.index(m.len());
        m[i] = val;
        exercise_cert(&m);
        exercise_cert(&m[..cut.index(m.len())]);
    }

    #[test]
    fn auth_data_noise(method in prop::sample::select(vec![1u8, 9, 10, 11, 14, 200]),
                       bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        for pk in &fixture().keys {
            prop_assert!(verify_auth(pk, method, &bytes, b"octets").is_err());
        }
        if let Ok(ds) = DigitalSignature::parse(&bytes) {
            let _ = SignatureScheme::from_algorithm_identifier(ds.algorithm_identifier);
        }
    }

    #[test]
    fn auth_data_mutations(pos in any::<prop::sample::Index>(), val in any::<u8>()) {
        // A real RSASSA-PSS AUTH payload (long AlgorithmIdentifier) with one byte changed.
        let mut m = fixture().pss_auth.clone();
        let i = pos.index(m.len());
        prop_assume!(m[i] != val);
        m[i] = val;
        prop_assert!(verify_auth(&fixture().rsa_key, 14, &m, b"octets").is_err());
    }

    #[test]
    fn identity_and_dn_noise(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        if let Ok(id) = Identity::from_payload_body(&bytes) {
            let _ = id.to_string();
            prop_assert_eq!(Identity::from_payload_body(&id.to_payload_body()).ok(), Some(id));
        }
        if let Ok(dn) = DistinguishedName::from_der(&bytes) {
            let _ = dn.to_string();
            prop_assert!(dn.matches(&dn));
        }
        let _ = decode_hash_algorithms(&bytes);
    }

    #[test]
    fn identity_strings(s in "\\PC{0,60}") {
        if let Ok(id) = Identity::parse(&s) {
            let _ = id.to_payload_body();
            let _ = id.to_string();
        }
    }

    #[test]
    fn key_and_pem_noise(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
        let _ = LocalSigner::from_bytes(&bytes);
        let _ = LocalSigner::from_sec1_der(&bytes);
        let _ = parse_pem(&bytes);
    }

    #[test]
    fn pem_text_noise(s in "(-----BEGIN [A-Z ]{0,12}-----\n)?[A-Za-z0-9+/=\n]{0,80}(-----END [A-Z ]{0,12}-----\n)?") {
        let _ = parse_pem(s.as_bytes());
        let _ = Certificate::from_pem(s.as_bytes());
        let _ = LocalSigner::from_pem(s.as_bytes());
    }
}
