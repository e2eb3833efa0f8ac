//! Certificate path validation against the test PKI (keys/test/). The CA and
//! end-entity certificates were issued by strongSwan's `pki` tool and by openssl,
//! so these tests also verify X.509 signatures produced by implementations we did
//! not write (ECDSA P-256/SHA-256, ECDSA P-384/SHA-384, RSA PKCS#1 v1.5, RSASSA-PSS).

mod common;
use common::*;

use plexgate_pki::{cert_matches, Certificate, Identity, PeerPublicKey, PkiError, TrustStore};

#[test]
fn ecdsa_gateway_and_client_verify_against_ecdsa_ca() {
    let cas = store(&["x509ca/ca.pem"]);
    for (file, cn) in [
        ("x509/gw.pem", "gw.plexgate.test"),
        ("x509/client.pem", "client.plexgate.test"),
    ] {
        let peer = cas
            .verify_chain(&cert(file), &[], now())
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(matches!(peer.public_key, PeerPublicKey::EcdsaP256(ref p) if p.len() == 65));
        assert_eq!(
            peer.subject.to_string(),
            format!("C=CH, O=plexgate test, CN={cn}")
        );
        assert!(peer.alt_names.contains(&Identity::Fqdn(cn.into())));
        assert_eq!(peer.path.len(), 2);
        assert_eq!(
            peer.path[1].to_string(),
            "C=CH, O=plexgate test, CN=plexgate test CA"
        );
    }
}

#[test]
fn verified_key_is_the_signers_key() {
    let cas = store(&["x509ca/ca.pem"]);
    let peer = cas
        .verify_chain(&cert("x509/gw.pem"), &[], now())
        .expect("valid");
    assert_eq!(peer.public_key, signer("gw.pem").public_key());
}

#[test]
fn rsa_chain_pkcs1_and_pss_signed_certificates() {
    let cas = store(&["x509ca/rsa-ca.pem"]);
    // rsa-gw is signed with sha256WithRSAEncryption, rsa-client with RSASSA-PSS
    // (both by strongSwan pki).
    for file in ["x509/rsa-gw.pem", "x509/rsa-client.pem"] {
        let peer = cas
            .verify_chain(&cert(file), &[], now())
            .unwrap_or_else(|e| panic!("{file}: {e}"));
        assert!(matches!(
            peer.public_key,
            PeerPublicKey::Rsa { bits: 2048, .. }
        ));
    }
}

#[test]
fn p384_client_through_intermediate() {
    let cas = store(&["x509ca/ca.pem"]);
    let ee = cert("x509/p384-client.pem");
    let sub = cert("x509/sub-ca.pem");
    let peer = cas
        .verify_chain(&ee, std::slice::from_ref(&sub), now())
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(matches!(peer.public_key, PeerPublicKey::EcdsaP384(_)));
    assert_eq!(peer.path.len(), 3);
    // Intermediates in any order, with noise around them.
    let noise = cert("x509/gw.pem");
    cas.verify_chain(&ee, &[noise, sub], now())
        .expect("order does not matter");
    // Without the intermediate the issuer is unknown.
    let err = cas
        .verify_chain(&ee, &[], now())
        .expect_err("no intermediate");
    assert!(matches!(err, PkiError::UntrustedIssuer { .. }), "{err}");
    assert!(err.to_string().contains("P-384 sub CA"), "{err}");
}

#[test]
fn untrusted_ca_is_refused() {
    let cas = store(&["x509ca/ca.pem", "x509ca/rsa-ca.pem"]);
    let err = cas
        .verify_chain(&cert("untrusted/client.pem"), &[], now())
        .expect_err("untrusted");
    assert!(matches!(err, PkiError::UntrustedIssuer { .. }), "{err}");
    assert!(err.to_string().contains("untrusted test CA"), "{err}");
    // Even when the peer sends its (self-signed) CA as an "intermediate".
    let err = cas
        .verify_chain(
            &cert("untrusted/client.pem"),
            &[cert("untrusted/ca.pem")],
            now(),
        )
        .expect_err("self-signed intermediate does not make it trusted");
    assert!(
        matches!(
            err,
            PkiError::ChainTooLong { .. } | PkiError::UntrustedIssuer { .. }
        ),
        "{err}"
    );
}

#[test]
fn wrong_ca_is_refused() {
    let rsa_only = store(&["x509ca/rsa-ca.pem"]);
    let err = rsa_only
        .verify_chain(&cert("x509/gw.pem"), &[], now())
        .expect_err("wrong CA");
    assert!(matches!(err, PkiError::UntrustedIssuer { .. }), "{err}");
}

#[test]
fn certificate_issued_by_non_ca_is_refused() {
    // rogue.pem is signed by the gateway's end-entity key (no basicConstraints cA).
    let cas = store(&["x509ca/ca.pem"]);
    let err = cas
        .verify_chain(&cert("untrusted/rogue.pem"), &[cert("x509/gw.pem")], now())
        .expect_err("gw is not a CA");
    assert!(matches!(err, PkiError::IssuerNotCa { .. }), "{err}");
}

#[test]
fn expired_and_not_yet_valid_are_refused() {
    let cas = store(&["x509ca/ca.pem"]);
    let gw = cert("x509/gw.pem");
    let (not_before, not_after) = gw.validity().expect("validity");
    assert!(
        not_after - not_before >= 20 * 365 * 86_400,
        "20-year validity"
    );
    cas.verify_chain(&gw, &[], at(not_after - 1))
        .expect("valid on the last second");
    let err = cas
        .verify_chain(&gw, &[], at(not_after + 1))
        .expect_err("expired");
    assert!(matches!(err, PkiError::NotValidAt { .. }), "{err}");
    assert!(err.to_string().contains("gw.plexgate.test"), "{err}");
    let err = cas
        .verify_chain(&gw, &[], at(not_before - 3600))
        .expect_err("not yet valid");
    assert!(matches!(err, PkiError::NotValidAt { .. }), "{err}");
}

#[test]
fn tampered_certificate_is_refused() {
    let cas = store(&["x509ca/ca.pem"]);
    let der = cert("x509/gw.pem").der().to_vec();
    // Change one byte of the subjectAltName "gw.plexgate.test" → "gx.plexgate.test".
    let pos = der
        .windows(16)
        .position(|w| w == b"gw.plexgate.test")
        .expect("SAN present");
    let mut bad = der.clone();
    bad[pos + 1] = b'x';
    let tampered = Certificate::from_der(&bad).expect("still parses");
    let err = cas
        .verify_chain(&tampered, &[], now())
        .expect_err("tampered");
    assert!(
        matches!(err, PkiError::BadCertificateSignature { .. }),
        "{err}"
    );
    // And a flipped bit in the signature itself.
    let mut bad = der;
    let last = bad.len() - 5;
    bad[last] ^= 0x01;
    if let Ok(c) = Certificate::from_der(&bad) {
        assert!(cas.verify_chain(&c, &[], now()).is_err());
    }
}

#[test]
fn end_entity_certificate_is_not_accepted_as_ca() {
    let mut store = TrustStore::new();
    let err = store.add(cert("x509/gw.pem")).expect_err("not a CA");
    assert!(matches!(err, PkiError::NotACa { .. }), "{err}");
    let err = TrustStore::from_files(&[keys().join("x509/client.pem")]).expect_err("not a CA");
    assert!(err.to_string().contains("x509/client.pem"), "{err}");
}

#[test]
fn certreq_data_is_sha1_of_spki_per_anchor() {
    let cas = store(&["x509ca/ca.pem", "x509ca/rsa-ca.pem"]);
    let data = cas.certreq_data();
    assert_eq!(data.len(), 40);
    // strongSwan prints this value as the CA's "keyid" (pki --print); compare with
    // the subjectKeyIdentifier-independent value computed here from the DER.
    let ca = cert("x509ca/ca.pem");
    assert_eq!(&data[..20], &ca.spki_sha1().expect("sha1")[..]);
}

#[test]
fn identities_match_certificates() {
    let gw = cert("x509/gw.pem");
    let client = cert("x509/client.pem");
    let id = |s: &str| Identity::parse(s).unwrap_or_else(|e| panic!("{e}"));
    // subject DN, in strongSwan's notation and with different spacing and case
    assert!(cert_matches(
        &id("C=CH, O=plexgate test, CN=gw.plexgate.test"),
        &gw
    ));
    assert!(cert_matches(
        &id("c=ch,o=PLEXGATE   test,cn=GW.plexgate.test"),
        &gw
    ));
    assert!(cert_matches(
        &id("/C=CH/O=plexgate test/CN=gw.plexgate.test"),
        &gw
    ));
    assert!(cert_matches(&gw.subject_identity().expect("subject"), &gw));
    assert!(!cert_matches(
        &id("C=CH, O=plexgate test, CN=client.plexgate.test"),
        &gw
    ));
    assert!(
        !cert_matches(&id("O=plexgate test, CN=gw.plexgate.test"), &gw),
        "RDN count differs"
    );
    // dNSName
    assert!(cert_matches(&id("gw.plexgate.test"), &gw));
    assert!(cert_matches(&id("GW.Plexgate.Test."), &gw));
    assert!(!cert_matches(&id("gw.plexgate.test"), &client));
    assert!(!cert_matches(&id("plexgate.test"), &gw));
    // iPAddress
    assert!(cert_matches(&id("192.0.2.10"), &gw));
    assert!(cert_matches(&id("2001:db8::10"), &gw));
    assert!(!cert_matches(&id("192.0.2.11"), &gw));
    // rfc822Name
    assert!(cert_matches(&id("client@plexgate.test"), &client));
    assert!(!cert_matches(&id("gw@plexgate.test"), &gw));
    // CN alone is not a dNSName
    assert!(!cert_matches(&id("fqdn:client@plexgate.test"), &client));
    // KEY_ID against subjectKeyIdentifier (openssl adds one) ...
    let p384 = cert("x509/p384-client.pem");
    let ski = p384
        .subject_key_id()
        .expect("openssl adds a subjectKeyIdentifier");
    assert!(cert_matches(&Identity::KeyId(ski.clone()), &p384));
    assert!(!cert_matches(&Identity::KeyId(ski), &client));
    // ... or SHA-1 of the SubjectPublicKeyInfo (strongSwan's "keyid"); strongSwan
    // pki does not add subjectKeyIdentifier to end-entity certificates.
    assert_eq!(gw.subject_key_id(), None);
    let keyid = gw.spki_sha1().expect("sha1").to_vec();
    assert!(cert_matches(&Identity::KeyId(keyid.clone()), &gw));
    assert!(!cert_matches(&Identity::KeyId(keyid), &client));
}

#[test]
fn untrusted_client_claiming_the_client_name_fails_chain_not_name() {
    // The untrusted client has the same subject DN and dNSName as the real one:
    // names match, so only the chain check protects us.
    let fake = cert("untrusted/client.pem");
    assert!(cert_matches(
        &Identity::parse("client.plexgate.test").expect("id"),
        &fake
    ));
    assert!(store(&["x509ca/ca.pem"])
        .verify_chain(&fake, &[], now())
        .is_err());
}

#[test]
fn path_length_constraint_is_enforced() {
    // root CA → sub-ca (pathlen:0) → sub2 CA → deep.plexgate.test: the sub CA may
    // not have a CA below it (openssl verify agrees: "path length constraint
    // exceeded").
    let cas = store(&["x509ca/ca.pem"]);
    let err = cas
        .verify_chain(
            &cert("untrusted/deep.pem"),
            &[cert("untrusted/sub2-ca.pem"), cert("x509/sub-ca.pem")],
            now(),
        )
        .expect_err("pathlen");
    assert!(matches!(err, PkiError::ChainTooLong { .. }), "{err}");
    assert!(err.to_string().contains("pathLenConstraint 0"), "{err}");
}

#[test]
fn unsupported_critical_extension_is_refused() {
    // nc-ca.pem carries a critical nameConstraints extension, which we do not
    // implement: RFC 5280 §4.2 says to reject the certificate.
    let cas = store(&["x509ca/ca.pem"]);
    let err = cas
        .verify_chain(
            &cert("untrusted/nc.pem"),
            &[cert("untrusted/nc-ca.pem")],
            now(),
        )
        .expect_err("nameConstraints");
    assert!(
        matches!(err, PkiError::UnsupportedCriticalExtension { ref oid, .. } if oid == "2.5.29.30"),
        "{err}"
    );
}
