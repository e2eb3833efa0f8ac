//! Interop with an implementation we did not write: signatures made by OpenSSL
//! 3.0 (`openssl dgst -sign`, see tests/vectors/make-vectors.sh and
//! openssl-version.txt) over tests/vectors/message.bin with the test keys, verified
//! through the IKEv2 AUTH path. If the test PKI is regenerated, re-run
//! make-vectors.sh.
//!
//! A second test runs `openssl` at test time to verify *our* signatures (skipped
//! when no `openssl` binary is installed).

mod common;
use common::*;

use std::path::PathBuf;
use std::process::Command;

use plexgate_pki::{
    auth_method, verify_auth, DigitalSignature, PkiError, RsaPadding, SignatureScheme,
};

fn vectors() -> PathBuf {
    crate_dir().join("tests/vectors")
}

fn message() -> Vec<u8> {
    std::fs::read(vectors().join("message.bin")).expect("message.bin")
}

fn vector(name: &str) -> Vec<u8> {
    let text = std::fs::read_to_string(vectors().join(name)).expect("vector file");
    hex::decode(text.trim()).expect("hex")
}

/// Public key of a test certificate (so the vectors are checked against the
/// certificate, as in IKE, not against the private key).
fn cert_key(name: &str) -> plexgate_pki::PeerPublicKey {
    cert(name).public_key().expect("public key")
}

/// Converts a DER ECDSA-Sig-Value to RFC 4754's fixed r|s.
fn der_to_fixed(sig: &[u8], n: usize) -> Vec<u8> {
    fn int(b: &[u8]) -> (&[u8], &[u8]) {
        assert_eq!(b[0], 0x02);
        let len = b[1] as usize;
        (&b[2..2 + len], &b[2 + len..])
    }
    assert_eq!(sig[0], 0x30);
    let body = &sig[2..];
    let (r, rest) = int(body);
    let (s, _) = int(rest);
    let pad = |x: &[u8]| {
        let x: Vec<u8> = x.iter().copied().skip_while(|&b| b == 0).collect();
        let mut out = vec![0u8; n - x.len()];
        out.extend(x);
        out
    };
    [pad(r), pad(s)].concat()
}

#[test]
fn openssl_ecdsa_p256_sha256_as_method_14_and_9() {
    let sig = vector("gw-ecdsa-sha256.der.hex");
    let pk = cert_key("x509/gw.pem");
    let data = DigitalSignature::emit(SignatureScheme::EcdsaSha256, &sig);
    verify_auth(&pk, auth_method::DIGITAL_SIGNATURE, &data, &message()).expect("method 14");
    let fixed = der_to_fixed(&sig, 32);
    verify_auth(&pk, auth_method::ECDSA_SHA256_P256, &fixed, &message()).expect("method 9");
    assert!(verify_auth(&pk, 14, &data, b"another message").is_err());
}

#[test]
fn openssl_ecdsa_p384_sha384_as_method_14_and_10() {
    let sig = vector("p384-ecdsa-sha384.der.hex");
    let pk = cert_key("x509/p384-client.pem");
    let data = DigitalSignature::emit(SignatureScheme::EcdsaSha384, &sig);
    verify_auth(&pk, 14, &data, &message()).expect("method 14");
    verify_auth(&pk, 10, &der_to_fixed(&sig, 48), &message()).expect("method 10");
}

#[test]
fn openssl_rsa_signatures() {
    let pk = cert_key("x509/rsa-gw.pem");
    let msg = message();
    for (file, scheme) in [
        (
            "rsa-gw-pkcs1-sha256.sig.hex",
            SignatureScheme::RsaPkcs1Sha256,
        ),
        ("rsa-gw-pss-sha256.sig.hex", SignatureScheme::RsaPssSha256),
        ("rsa-gw-pss-sha384.sig.hex", SignatureScheme::RsaPssSha384),
    ] {
        let data = DigitalSignature::emit(scheme, &vector(file));
        verify_auth(&pk, 14, &data, &msg).unwrap_or_else(|e| panic!("{file}: {e}"));
    }
    // Wrong padding label: a PKCS#1 signature presented as PSS fails.
    let data = DigitalSignature::emit(
        SignatureScheme::RsaPssSha256,
        &vector("rsa-gw-pkcs1-sha256.sig.hex"),
    );
    assert!(verify_auth(&pk, 14, &data, &msg).is_err());
    // Classic method 1 (RSASSA-PKCS1-v1_5 with SHA-1): refused even with a signature
    // that verifies, because SHA-1 signatures are not accepted.
    let err = verify_auth(
        &pk,
        auth_method::RSA_DIGITAL_SIGNATURE,
        &vector("rsa-gw-pkcs1-sha1.sig.hex"),
        &msg,
    )
    .expect_err("method 1 is refused");
    assert!(
        matches!(err, PkiError::WeakAuthMethod { method: 1, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("SHA-1"), "{err}");
    assert!(verify_auth(&pk, 1, &vector("rsa-gw-pkcs1-sha256.sig.hex"), &msg).is_err());
}

fn openssl_available() -> bool {
    Command::new("openssl")
        .arg("version")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// OpenSSL verifies the raw signatures inside our AUTH data.
#[test]
fn openssl_verifies_our_signatures() {
    if !openssl_available() {
        panic!("openssl is not installed (scripts/setup.sh installs it): this test cannot run");
    }
    let dir = std::env::temp_dir().join(format!("plexgate-pki-interop-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("tmp dir");
    let msg_path = dir.join("msg.bin");
    let msg = b"octets signed by plexgate";
    std::fs::write(&msg_path, msg).expect("write");
    let cases: [(&str, &str, Option<RsaPadding>, &[&str]); 4] = [
        ("gw.pem", "x509/gw.pem", None, &["-sha256"]),
        (
            "p384-client.pem",
            "x509/p384-client.pem",
            None,
            &["-sha384"],
        ),
        (
            "rsa-gw.pem",
            "x509/rsa-gw.pem",
            Some(RsaPadding::Pkcs1),
            &["-sha256"],
        ),
        (
            "rsa-gw.pem",
            "x509/rsa-gw.pem",
            Some(RsaPadding::Pss),
            &[
                "-sha256",
                "-sigopt",
                "rsa_padding_mode:pss",
                "-sigopt",
                "rsa_pss_saltlen:32",
            ],
        ),
    ];
    for (i, (key, certfile, padding, args)) in cases.iter().enumerate() {
        let mut s = signer(key);
        if let Some(p) = padding {
            s = s.with_rsa_padding(*p);
        }
        let (method, data) = s.sign(msg, &[2, 3, 4, 5]).expect("sign");
        assert_eq!(method, 14);
        let sig = DigitalSignature::parse(&data)
            .expect("parse")
            .signature
            .to_vec();
        let sig_path = dir.join(format!("sig{i}.bin"));
        let pub_path = dir.join(format!("pub{i}.pem"));
        std::fs::write(&sig_path, sig).expect("write");
        let out = Command::new("openssl")
            .args(["x509", "-noout", "-pubkey", "-in"])
            .arg(keys().join(certfile))
            .output()
            .expect("openssl x509");
        std::fs::write(&pub_path, out.stdout).expect("write");
        let out = Command::new("openssl")
            .arg("dgst")
            .args(*args)
            .arg("-verify")
            .arg(&pub_path)
            .arg("-signature")
            .arg(&sig_path)
            .arg(&msg_path)
            .output()
            .expect("openssl dgst");
        assert!(
            out.status.success(),
            "openssl refused our {key} {padding:?} signature: {}",
            String::from_utf8_lossy(&out.stdout)
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}
