//! Fuzz the parsers of plexgate-pki that see peer-controlled bytes: CERT payload
//! data (DER certificates), AUTH data, ID payloads, SIGNATURE_HASH_ALGORITHMS
//! notify data, and PEM/DER key and certificate files.
//!   cargo fuzz run pki_cert
#![no_main]

use libfuzzer_sys::fuzz_target;
use plexgate_pki::{
    decode_hash_algorithms, pem::parse_pem, verify_auth, Certificate, DigitalSignature,
    Identity, LocalSigner, SignatureScheme, TrustStore,
};

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    match selector % 5 {
        0 => {
            if let Ok(c) = Certificate::from_der(rest) {
                let _ = c.subject().map(|s| s.to_string());
                let _ = c.subject_alt_names();
                let _ = c.key_ids();
                if let Ok(pk) = c.public_key() {
                    let _ = verify_auth(&pk, 14, rest, rest);
                }
                let mut store = TrustStore::new();
                if store.add(c.clone()).is_ok() {
                    let _ = store.verify_chain(&c, &[], std::time::UNIX_EPOCH);
                }
            }
        }
        1 => {
            if let Ok(ds) = DigitalSignature::parse(rest) {
                let _ = SignatureScheme::from_algorithm_identifier(ds.algorithm_identifier);
            }
        }
        2 => {
            if let Ok(id) = Identity::from_payload_body(rest) {
                let _ = id.to_string();
                let _ = id.to_payload_body();
            }
            let _ = decode_hash_algorithms(rest);
        }
        3 => {
            let _ = LocalSigner::from_bytes(rest);
            let _ = parse_pem(rest);
        }
        _ => {
            let _ = Certificate::from_bytes(rest);
            if let Ok(s) = std::str::from_utf8(rest) {
                let _ = Identity::parse(s);
            }
        }
    }
});
