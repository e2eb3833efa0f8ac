//! IKEv2 cryptography: the PRF and prf+ (RFC 7296 §2.13), SKEYSEED and the SK_* keys
//! (§2.14), Child SA KEYMAT (§2.17), PSK AUTH (§2.15), NAT detection hashes (§2.23),
//! Diffie-Hellman (X25519, P-256, P-384 through ring; MODP-2048 with num-bigint), and
//! the Encrypted payload (§3.14) with AES-CBC + HMAC-SHA2 (RFC 4868) or AES-GCM-16
//! (RFC 5282).
//!
//! Files: `rng.rs` (random sources), `prf.rs` (PRF, prf+), `keys.rs` (SKEYSEED, SK_*,
//! KEYMAT, AUTH octets, NAT-D), `dh.rs` (key exchange), `sk.rs` (Encrypted payload).

mod dh;
mod keys;
mod prf;
mod rng;
mod sk;

pub use dh::{dh_agree, dh_generate, dh_supported, DhPrivate};
pub use keys::{
    derive_child_keys, derive_ike_keys, esp_encr_key_len, esp_integ_key_len, natd_hash, psk_auth,
    signed_octets, skeyseed, skeyseed_rekey, ChildKeys, IkeKeys, IkeSuite,
};
pub use prf::Prf;
pub use rng::{Rng, SeededRng, SystemRng};
pub use sk::SkCipher;

/// Crypto errors.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CryptoError {
    /// Integrity check or AEAD tag failed.
    #[error("integrity check of the encrypted payload failed")]
    Integrity,
    /// The SK payload is shorter than IV + ICV or not a multiple of the block size.
    #[error("malformed encrypted payload")]
    Malformed,
    /// The padding length byte is larger than the plaintext.
    #[error("bad padding in encrypted payload")]
    Padding,
    /// A peer's public value that the group rejects.
    #[error("invalid Diffie-Hellman public value for group {0}")]
    BadPublic(u16),
    /// A transform we do not implement.
    #[error("unsupported algorithm {0}")]
    Unsupported(&'static str),
}

/// PRF transform ids (IANA "Transform Type 2").
pub mod prf_id {
    /// PRF_HMAC_SHA2_256
    pub const HMAC_SHA2_256: u16 = 5;
    /// PRF_HMAC_SHA2_384
    pub const HMAC_SHA2_384: u16 = 6;
    /// PRF_HMAC_SHA2_512
    pub const HMAC_SHA2_512: u16 = 7;
}

/// Integrity transform ids (IANA "Transform Type 3").
pub mod integ_id {
    /// AUTH_HMAC_SHA2_256_128
    pub const HMAC_SHA2_256_128: u16 = 12;
    /// AUTH_HMAC_SHA2_384_192
    pub const HMAC_SHA2_384_192: u16 = 13;
    /// AUTH_HMAC_SHA2_512_256
    pub const HMAC_SHA2_512_256: u16 = 14;
}

/// Encryption transform ids (IANA "Transform Type 1").
pub mod encr_id {
    /// ENCR_AES_CBC
    pub const AES_CBC: u16 = 12;
    /// ENCR_AES_GCM_16
    pub const AES_GCM_16: u16 = 20;
    /// ENCR_CHACHA20_POLY1305
    pub const CHACHA20_POLY1305: u16 = 28;
}

/// Diffie-Hellman group ids (IANA "Transform Type 4").
pub mod dh_id {
    /// 2048-bit MODP group (RFC 3526)
    pub const MODP_2048: u16 = 14;
    /// 256-bit random ECP group (RFC 5903)
    pub const ECP_256: u16 = 19;
    /// 384-bit random ECP group (RFC 5903)
    pub const ECP_384: u16 = 20;
    /// Curve25519 (RFC 8031)
    pub const CURVE25519: u16 = 31;
}

#[cfg(test)]
mod tests;
