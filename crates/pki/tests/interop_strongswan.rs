//! strongSwan accepts our signatures: we re-sign the TBSCertificate of a test
//! certificate with our `LocalSigner` (holding the CA key) and ask strongSwan
//! 5.9's `pki --verify` whether the result is trusted. The signature bytes are the
//! same ones `LocalSigner::sign` puts into RFC 7427 AUTH data (DER ECDSA,
//! RSASSA-PKCS1-v1_5, RSASSA-PSS), so this shows strongSwan verifies what we
//! produce. Skipped when the `pki` tool (Debian package strongswan-pki) is absent.
//!
//! (strongSwan's signatures in the other direction are covered by tests/chain.rs:
//! the CA and end-entity certificates were signed by strongSwan's `pki`.)

mod common;
use common::*;

use std::process::Command;

use plexgate_pki::{Certificate, DigitalSignature, RsaPadding, SignatureScheme};

/// Splits one DER TLV: (whole TLV, rest).
fn tlv(b: &[u8]) -> (&[u8], &[u8]) {
    let (len, hdr) = match b[1] {
        l if l < 0x80 => (l as usize, 2),
        0x81 => (b[2] as usize, 3),
        0x82 => (((b[2] as usize) << 8) | b[3] as usize, 4),
        other => panic!("length form {other:#x}"),
    };
    b.split_at(hdr + len)
}

fn der_len(n: usize) -> Vec<u8> {
    match n {
        0..=0x7f => vec![n as u8],
        0x80..=0xff => vec![0x81, n as u8],
        _ => vec![0x82, (n >> 8) as u8, n as u8],
    }
}

/// Certificate = SEQUENCE { tbs, signatureAlgorithm, BIT STRING signature }
/// with the signature replaced by ours.
fn resign(
    cert: &Certificate,
    ca_key: &str,
    padding: RsaPadding,
    scheme: SignatureScheme,
) -> Vec<u8> {
    let der = cert.der();
    let (outer, _) = tlv(der);
    let body = &outer[if outer[1] == 0x82 { 4 } else { 3 }..];
    let (tbs, rest) = tlv(body);
    let (alg, _) = tlv(rest);
    let signer = signer(ca_key).with_rsa_padding(padding);
    let data = signer.sign_digital_signature(scheme, tbs).expect("sign");
    let sig = DigitalSignature::parse(&data)
        .expect("parse")
        .signature
        .to_vec();
    let mut bits = vec![0x03];
    bits.extend(der_len(sig.len() + 1));
    bits.push(0);
    bits.extend(sig);
    let content = [tbs, alg, &bits].concat();
    let mut out = vec![0x30];
    out.extend(der_len(content.len()));
    out.extend(content);
    out
}

fn strongswan_verifies(cert_der: &[u8], ca: &str, tag: &str) -> (bool, String) {
    let path =
        std::env::temp_dir().join(format!("plexgate-pki-sw-{}-{tag}.der", std::process::id()));
    std::fs::write(&path, cert_der).expect("write");
    let out = Command::new("pki")
        .args(["--verify", "--in"])
        .arg(&path)
        .arg("--cacert")
        .arg(keys().join(ca))
        .output()
        .expect("run pki");
    let _ = std::fs::remove_file(&path);
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    (
        out.status.success() && text.contains("certificate trusted"),
        text,
    )
}

#[test]
fn strongswan_pki_accepts_our_signatures() {
    if Command::new("pki").arg("--help").output().is_err() {
        panic!("strongSwan's pki is not installed (scripts/setup.sh installs it): this test cannot run");
    }
    let cases = [
        (
            "x509/gw.pem",
            "ca.pem",
            "x509ca/ca.pem",
            RsaPadding::Pkcs1,
            SignatureScheme::EcdsaSha256,
        ),
        (
            "x509/rsa-gw.pem",
            "rsa-ca.pem",
            "x509ca/rsa-ca.pem",
            RsaPadding::Pkcs1,
            SignatureScheme::RsaPkcs1Sha256,
        ),
        (
            "x509/rsa-client.pem",
            "rsa-ca.pem",
            "x509ca/rsa-ca.pem",
            RsaPadding::Pss,
            SignatureScheme::RsaPssSha256,
        ),
    ];
    for (i, (file, key, ca, padding, scheme)) in cases.into_iter().enumerate() {
        let original = cert(file);
        let ours = resign(&original, key, padding, scheme);
        if scheme == SignatureScheme::EcdsaSha256 {
            assert_ne!(ours, original.der(), "ECDSA is randomised: a new signature");
        }
        // We accept it ourselves ...
        let c = Certificate::from_der(&ours).expect("parses");
        store(&[ca])
            .verify_chain(&c, &[], now())
            .unwrap_or_else(|e| panic!("{file}: {e}"));
        // ... and so does strongSwan.
        let (ok, text) = strongswan_verifies(&ours, ca, &i.to_string());
        assert!(
            ok,
            "strongSwan refused our {scheme:?} signature on {file}:\n{text}"
        );
        // Control: a corrupted signature is refused by strongSwan too.
        let mut bad = ours.clone();
        let n = bad.len();
        bad[n - 3] ^= 0x40;
        let (ok, text) = strongswan_verifies(&bad, ca, &format!("{i}-bad"));
        assert!(!ok, "strongSwan accepted a corrupted signature:\n{text}");
    }
}
