//! Paths to the test PKI in `keys/test/` (made by `keys/test/make-test-pki.sh`).
#![allow(dead_code)]

use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use plexgate_pki::{Certificate, LocalSigner, TrustStore};

/// The crate directory: from the environment cargo sets when it runs the test
/// (robust against a shared target directory), else the one baked in at build time.
pub fn crate_dir() -> PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")))
}

pub fn keys() -> PathBuf {
    crate_dir().join("../../keys/test")
}

pub fn cert(name: &str) -> Certificate {
    Certificate::load(keys().join(name)).unwrap_or_else(|e| panic!("{e}"))
}

pub fn signer(name: &str) -> LocalSigner {
    LocalSigner::load(keys().join("private").join(name)).unwrap_or_else(|e| panic!("{e}"))
}

pub fn store(names: &[&str]) -> TrustStore {
    let paths: Vec<PathBuf> = names.iter().map(|n| keys().join(n)).collect();
    TrustStore::from_files(&paths).unwrap_or_else(|e| panic!("{e}"))
}

/// A time inside every test certificate's validity: one day after the gateway
/// certificate's notBefore (the test PKI is made "now" with 20-year validity).
pub fn now() -> SystemTime {
    let (nb, _) = cert("x509/gw.pem").validity().expect("validity");
    at(nb + 86_400)
}

pub fn at(unix: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(u64::try_from(unix).expect("after 1970"))
}
