//! The transform types of IKEv2 (RFC 7296 §3.3.2) that plexgate knows, with
//! their IANA transform IDs and their strongSwan keywords.

use std::fmt;

/// An encryption transform (transform type 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Encr {
    /// AES-CBC (ENCR_AES_CBC, 12) with a 128, 192 or 256 bit key.
    AesCbc {
        /// Key length in bits.
        key_bits: u16,
    },
    /// AES-GCM (ENCR_AES_GCM_8/12/16 = 18/19/20) — an AEAD cipher.
    AesGcm {
        /// Key length in bits.
        key_bits: u16,
        /// ICV length in bytes: 8, 12 or 16.
        icv_bytes: u8,
    },
    /// ChaCha20-Poly1305 (ENCR_CHACHA20_POLY1305, 28, RFC 7634) — AEAD, 256-bit key.
    ChaCha20Poly1305,
}

impl Encr {
    /// The IANA transform ID (IKEv2 Transform Type 1).
    pub fn transform_id(&self) -> u16 {
        match self {
            Encr::AesCbc { .. } => 12,
            Encr::AesGcm { icv_bytes: 8, .. } => 18,
            Encr::AesGcm { icv_bytes: 12, .. } => 19,
            Encr::AesGcm { .. } => 20,
            Encr::ChaCha20Poly1305 => 28,
        }
    }

    /// Key length in bits (the Key Length attribute for AES; 256 for ChaCha20).
    pub fn key_bits(&self) -> u16 {
        match self {
            Encr::AesCbc { key_bits } | Encr::AesGcm { key_bits, .. } => *key_bits,
            Encr::ChaCha20Poly1305 => 256,
        }
    }

    /// True for combined-mode (AEAD) ciphers.
    pub fn is_aead(&self) -> bool {
        !matches!(self, Encr::AesCbc { .. })
    }
}

/// An integrity transform (transform type 3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Integ {
    /// AUTH_HMAC_SHA1_96 (2). Weak; accepted with a warning.
    HmacSha1_96,
    /// AUTH_HMAC_SHA2_256_128 (12).
    HmacSha256_128,
    /// AUTH_HMAC_SHA2_384_192 (13).
    HmacSha384_192,
    /// AUTH_HMAC_SHA2_512_256 (14).
    HmacSha512_256,
}

impl Integ {
    /// The IANA transform ID (IKEv2 Transform Type 3).
    pub fn transform_id(&self) -> u16 {
        match self {
            Integ::HmacSha1_96 => 2,
            Integ::HmacSha256_128 => 12,
            Integ::HmacSha384_192 => 13,
            Integ::HmacSha512_256 => 14,
        }
    }

    pub(super) fn as_prf(&self) -> Prf {
        match self {
            Integ::HmacSha1_96 => Prf::HmacSha1,
            Integ::HmacSha256_128 => Prf::HmacSha256,
            Integ::HmacSha384_192 => Prf::HmacSha384,
            Integ::HmacSha512_256 => Prf::HmacSha512,
        }
    }
}

/// A pseudorandom function (transform type 2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Prf {
    /// PRF_HMAC_SHA1 (2).
    HmacSha1,
    /// PRF_HMAC_SHA2_256 (5).
    HmacSha256,
    /// PRF_HMAC_SHA2_384 (6).
    HmacSha384,
    /// PRF_HMAC_SHA2_512 (7).
    HmacSha512,
}

impl Prf {
    /// The IANA transform ID (IKEv2 Transform Type 2).
    pub fn transform_id(&self) -> u16 {
        match self {
            Prf::HmacSha1 => 2,
            Prf::HmacSha256 => 5,
            Prf::HmacSha384 => 6,
            Prf::HmacSha512 => 7,
        }
    }
}

/// A key exchange method / Diffie-Hellman group (transform type 4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DhGroup {
    /// 1024-bit MODP (2). Weak; accepted with a warning.
    Modp1024,
    /// 2048-bit MODP (14).
    Modp2048,
    /// 3072-bit MODP (15).
    Modp3072,
    /// 4096-bit MODP (16).
    Modp4096,
    /// NIST P-256 (19).
    Ecp256,
    /// NIST P-384 (20).
    Ecp384,
    /// NIST P-521 (21).
    Ecp521,
    /// Curve25519 (31).
    X25519,
    /// Curve448 (32).
    X448,
}

impl DhGroup {
    /// The IANA transform ID (IKEv2 Transform Type 4).
    pub fn transform_id(&self) -> u16 {
        match self {
            DhGroup::Modp1024 => 2,
            DhGroup::Modp2048 => 14,
            DhGroup::Modp3072 => 15,
            DhGroup::Modp4096 => 16,
            DhGroup::Ecp256 => 19,
            DhGroup::Ecp384 => 20,
            DhGroup::Ecp521 => 21,
            DhGroup::X25519 => 31,
            DhGroup::X448 => 32,
        }
    }
}

/// Extended sequence numbers (transform type 5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Esn {
    /// 32-bit sequence numbers (0).
    No,
    /// 64-bit extended sequence numbers (1).
    Yes,
}

impl fmt::Display for Encr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Encr::AesCbc { key_bits } => write!(f, "aes{key_bits}"),
            Encr::AesGcm {
                key_bits,
                icv_bytes,
            } => write!(f, "aes{key_bits}gcm{icv_bytes}"),
            Encr::ChaCha20Poly1305 => f.write_str("chacha20poly1305"),
        }
    }
}

impl fmt::Display for Integ {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Integ::HmacSha1_96 => "sha1",
            Integ::HmacSha256_128 => "sha256",
            Integ::HmacSha384_192 => "sha384",
            Integ::HmacSha512_256 => "sha512",
        })
    }
}

impl fmt::Display for Prf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Prf::HmacSha1 => "prfsha1",
            Prf::HmacSha256 => "prfsha256",
            Prf::HmacSha384 => "prfsha384",
            Prf::HmacSha512 => "prfsha512",
        })
    }
}

impl fmt::Display for DhGroup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DhGroup::Modp1024 => "modp1024",
            DhGroup::Modp2048 => "modp2048",
            DhGroup::Modp3072 => "modp3072",
            DhGroup::Modp4096 => "modp4096",
            DhGroup::Ecp256 => "ecp256",
            DhGroup::Ecp384 => "ecp384",
            DhGroup::Ecp521 => "ecp521",
            DhGroup::X25519 => "x25519",
            DhGroup::X448 => "x448",
        })
    }
}
