//! End-entity certificate purposes: a keyUsage must allow digitalSignature and an
//! extendedKeyUsage must allow serverAuth, clientAuth, ipsecIKE or any purpose
//! (certificates in `tests/vectors/usage/`, issued by the test CA).

mod common;
use common::*;

use plexgate_pki::{Certificate, PkiError};

fn usage_cert(name: &str) -> Certificate {
    let p = crate_dir().join("tests/vectors/usage").join(name);
    Certificate::load(&p).unwrap_or_else(|e| panic!("{e}"))
}

/// A time inside the validity of the usage certificates and of the test CA.
fn when(c: &Certificate) -> std::time::SystemTime {
    let (nb, _) = c.validity().expect("validity");
    at(nb + 86_400)
}

#[test]
fn signing_purposes_are_accepted() {
    let cas = store(&["x509ca/ca.pem"]);
    for name in ["ku-sig.pem", "eku-ipsec.pem", "eku-any.pem"] {
        let c = usage_cert(name);
        cas.verify_chain(&c, &[], when(&c))
            .unwrap_or_else(|e| panic!("{name}: {e}"));
    }
    // The test PKI's own end entities carry serverAuth / clientAuth.
    for name in ["x509/gw.pem", "x509/client.pem"] {
        cas.verify_chain(&cert(name), &[], now())
            .unwrap_or_else(|e| panic!("{name}: {e}"));
    }
}

#[test]
fn key_usage_without_digital_signature_is_refused() {
    let cas = store(&["x509ca/ca.pem"]);
    let c = usage_cert("ku-nosig.pem");
    let err = cas.verify_chain(&c, &[], when(&c)).expect_err("refused");
    assert!(matches!(err, PkiError::EndEntityUsage { .. }), "{err}");
    assert!(err.to_string().contains("digitalSignature"), "{err}");
}

#[test]
fn extended_key_usage_for_other_purposes_is_refused() {
    let cas = store(&["x509ca/ca.pem"]);
    let c = usage_cert("eku-code.pem");
    let err = cas.verify_chain(&c, &[], when(&c)).expect_err("refused");
    assert!(matches!(err, PkiError::EndEntityUsage { .. }), "{err}");
    assert!(err.to_string().contains("extendedKeyUsage"), "{err}");
}
