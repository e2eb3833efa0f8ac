//! ESP transforms: which algorithms an SA uses, their IKEv2 IDs and key sizes
//! (RFC 7296 §3.3.2, IANA "IKEv2 Transform Type" registries), and the list of
//! exactly the transforms the data plane can install, which the IKE engine and
//! the policy checker are held to ([`EspTransform::installable`]).
//!
//! - AES-GCM with a 16-byte ICV (RFC 4106) and ChaCha20-Poly1305 (RFC 7634):
//!   keying material is key || 4-byte salt; the nonce is salt || 8-byte IV.
//! - AES-CBC-128/256 (RFC 3602) with HMAC-SHA-256-128, HMAC-SHA-384-192 or
//!   HMAC-SHA-512-256 (RFC 4868): 16-byte IV, ICV = the first half of the
//!   HMAC, verified in constant time before decrypting.
//!
//! The keyed primitives live in [`crate::cipher`] ([`EspCipher`]).

use crate::error::SaError;

pub use crate::cipher::{constant_time_eq, EspCipher, Icv};

/// IKEv2 transform IDs used here (IANA "Transform Type 1/3" registries).
pub mod ids {
    /// ENCR_AES_CBC (RFC 3602).
    pub const ENCR_AES_CBC: u16 = 12;
    /// ENCR_AES_GCM_16: AES-GCM with a 16-octet ICV (RFC 4106).
    pub const ENCR_AES_GCM_16: u16 = 20;
    /// ENCR_CHACHA20_POLY1305 (RFC 7634).
    pub const ENCR_CHACHA20_POLY1305: u16 = 28;
    /// AUTH_NONE.
    pub const AUTH_NONE: u16 = 0;
    /// AUTH_HMAC_SHA2_256_128 (RFC 4868).
    pub const AUTH_HMAC_SHA2_256_128: u16 = 12;
    /// AUTH_HMAC_SHA2_384_192 (RFC 4868).
    pub const AUTH_HMAC_SHA2_384_192: u16 = 13;
    /// AUTH_HMAC_SHA2_512_256 (RFC 4868).
    pub const AUTH_HMAC_SHA2_512_256: u16 = 14;
}

/// Length of the ICV of the AEAD transforms (GCM-16, Poly1305) and of
/// HMAC-SHA-256-128; see [`EspTransform::icv_len`] for the others.
pub const ICV_LEN: usize = 16;
/// The longest ICV of any transform here (HMAC-SHA-512-256).
pub const MAX_ICV_LEN: usize = 32;
/// Length of the salt appended to AEAD keys (RFC 4106 §8.1, RFC 7634 §4).
pub const SALT_LEN: usize = 4;

/// An HMAC integrity algorithm of RFC 4868, used with AES-CBC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Integ {
    /// HMAC-SHA-256-128.
    HmacSha256_128,
    /// HMAC-SHA-384-192.
    HmacSha384_192,
    /// HMAC-SHA-512-256.
    HmacSha512_256,
}

impl Integ {
    /// IKEv2 INTEG transform ID.
    pub const fn id(self) -> u16 {
        match self {
            Integ::HmacSha256_128 => ids::AUTH_HMAC_SHA2_256_128,
            Integ::HmacSha384_192 => ids::AUTH_HMAC_SHA2_384_192,
            Integ::HmacSha512_256 => ids::AUTH_HMAC_SHA2_512_256,
        }
    }

    //= https://www.rfc-editor.org/rfc/rfc4868#section-2.1.1
    //# HMAC-SHA-256-128 ... 256-bit ... HMAC-SHA-384-192 ... 384-bit ...
    //# HMAC-SHA-512-256 ... 512-bit
    /// Key length in bytes: the hash's output length (RFC 4868 §2.1.1).
    pub const fn key_len(self) -> usize {
        match self {
            Integ::HmacSha256_128 => 32,
            Integ::HmacSha384_192 => 48,
            Integ::HmacSha512_256 => 64,
        }
    }

    //= https://www.rfc-editor.org/rfc/rfc4868#section-2.3
    //# the HMAC-SHA-256 output is truncated to 128 bits ... HMAC-SHA-384 to
    //# 192 bits ... HMAC-SHA-512 to 256 bits
    /// ICV length in bytes: half of the hash's output (RFC 4868 §2.3).
    pub const fn icv_len(self) -> usize {
        self.key_len() / 2
    }

    /// The name Wireshark's ESP preferences use (`esp_authentication_type_vals`).
    pub const fn wireshark_name(self) -> &'static str {
        match self {
            Integ::HmacSha256_128 => "HMAC-SHA-256-128 [RFC4868]",
            Integ::HmacSha384_192 => "HMAC-SHA-384-192 [RFC4868]",
            Integ::HmacSha512_256 => "HMAC-SHA-512-256 [RFC4868]",
        }
    }
}

/// The ESP transforms plexgate supports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum EspTransform {
    /// AES-GCM-16 with a 128-bit key (RFC 4106).
    AesGcm128,
    /// AES-GCM-16 with a 256-bit key (RFC 4106).
    AesGcm256,
    /// ChaCha20-Poly1305 (RFC 7634).
    ChaCha20Poly1305,
    /// AES-CBC-128 (RFC 3602) with HMAC-SHA-256-128 (RFC 4868).
    AesCbc128HmacSha256,
    /// AES-CBC-256 (RFC 3602) with HMAC-SHA-256-128 (RFC 4868).
    AesCbc256HmacSha256,
    /// AES-CBC-128 (RFC 3602) with HMAC-SHA-384-192 (RFC 4868).
    AesCbc128HmacSha384,
    /// AES-CBC-256 (RFC 3602) with HMAC-SHA-384-192 (RFC 4868).
    AesCbc256HmacSha384,
    /// AES-CBC-128 (RFC 3602) with HMAC-SHA-512-256 (RFC 4868).
    AesCbc128HmacSha512,
    /// AES-CBC-256 (RFC 3602) with HMAC-SHA-512-256 (RFC 4868).
    AesCbc256HmacSha512,
}

/// `(ENCR id, Key Length attribute in bits, INTEG id or 0 = none)` of every
/// transform in [`EspTransform::ALL`], in that order.
const INSTALLABLE: [(u16, Option<u16>, u16); EspTransform::ALL.len()] = {
    let mut out = [(0, None, 0); EspTransform::ALL.len()];
    let mut i = 0;
    while i < out.len() {
        let t = EspTransform::ALL[i];
        out[i] = (
            t.encr_id(),
            t.key_bits(),
            match t.integ_id() {
                Some(x) => x,
                None => ids::AUTH_NONE,
            },
        );
        i += 1;
    }
    out
};

impl EspTransform {
    /// All supported transforms.
    pub const ALL: [EspTransform; 9] = [
        EspTransform::AesGcm128,
        EspTransform::AesGcm256,
        EspTransform::ChaCha20Poly1305,
        EspTransform::AesCbc128HmacSha256,
        EspTransform::AesCbc256HmacSha256,
        EspTransform::AesCbc128HmacSha384,
        EspTransform::AesCbc256HmacSha384,
        EspTransform::AesCbc128HmacSha512,
        EspTransform::AesCbc256HmacSha512,
    ];

    /// Exactly the IKEv2 transform combinations the data plane can install,
    /// as `(ENCR id, Key Length attribute in bits, INTEG id)` with INTEG 0
    /// (`AUTH_NONE`) for the AEAD transforms. The IKE engine must select
    /// nothing else, and the policy checker must refuse anything else: every
    /// entry is accepted by [`EspTransform::from_ikev2`], and nothing outside it
    /// is.
    pub const fn installable() -> &'static [(u16, Option<u16>, u16)] {
        &INSTALLABLE
    }

    /// Maps negotiated IKEv2 transforms to an ESP transform: the ENCR ID, its
    /// Key Length attribute in bits (RFC 7296 §3.3.5; `None` if absent), and
    /// the INTEG ID (`None` or `Some(AUTH_NONE)` for AEAD).
    //= https://www.rfc-editor.org/rfc/rfc7634#section-2
    //# ChaCha20-Poly1305 ... the Key Length attribute MUST NOT be sent
    pub fn from_ikev2(
        encr: u16,
        key_bits: Option<u16>,
        integ: Option<u16>,
    ) -> Result<Self, SaError> {
        let integ_n = integ.unwrap_or(ids::AUTH_NONE);
        Self::ALL
            .iter()
            .zip(INSTALLABLE)
            .find(|(_, ids)| *ids == (encr, key_bits, integ_n))
            .map(|(t, _)| *t)
            .ok_or(SaError::UnsupportedTransform {
                encr,
                key_bits,
                integ,
            })
    }

    /// The transform with this strongSwan proposal keyword ([`EspTransform::name`]).
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.name() == name)
    }

    /// IKEv2 ENCR transform ID.
    pub const fn encr_id(self) -> u16 {
        match self {
            EspTransform::AesGcm128 | EspTransform::AesGcm256 => ids::ENCR_AES_GCM_16,
            EspTransform::ChaCha20Poly1305 => ids::ENCR_CHACHA20_POLY1305,
            _ => ids::ENCR_AES_CBC,
        }
    }

    /// The Key Length attribute (bits) sent with the ENCR transform, if any.
    pub const fn key_bits(self) -> Option<u16> {
        match self {
            EspTransform::AesGcm128
            | EspTransform::AesCbc128HmacSha256
            | EspTransform::AesCbc128HmacSha384
            | EspTransform::AesCbc128HmacSha512 => Some(128),
            EspTransform::ChaCha20Poly1305 => None,
            _ => Some(256),
        }
    }

    /// The HMAC of a CBC transform (`None` for AEAD transforms).
    pub const fn integ(self) -> Option<Integ> {
        match self {
            EspTransform::AesGcm128 | EspTransform::AesGcm256 | EspTransform::ChaCha20Poly1305 => {
                None
            }
            EspTransform::AesCbc128HmacSha256 | EspTransform::AesCbc256HmacSha256 => {
                Some(Integ::HmacSha256_128)
            }
            EspTransform::AesCbc128HmacSha384 | EspTransform::AesCbc256HmacSha384 => {
                Some(Integ::HmacSha384_192)
            }
            EspTransform::AesCbc128HmacSha512 | EspTransform::AesCbc256HmacSha512 => {
                Some(Integ::HmacSha512_256)
            }
        }
    }

    /// IKEv2 INTEG transform ID (`None` for AEAD transforms).
    pub const fn integ_id(self) -> Option<u16> {
        match self.integ() {
            Some(i) => Some(i.id()),
            None => None,
        }
    }

    /// Whether this is a combined-mode (AEAD) transform.
    pub const fn is_aead(self) -> bool {
        self.integ().is_none()
    }

    /// Bytes of encryption keying material, including the 4-byte salt for AEAD.
    //= https://www.rfc-editor.org/rfc/rfc4106#section-8.1
    //# The size of the KEYMAT for the AES-GCM-ESP MUST be four octets longer
    //# than is needed for the associated AES key.
    pub const fn enc_key_len(self) -> usize {
        let key = match self.key_bits() {
            Some(bits) => bits as usize / 8,
            None => 32, // ChaCha20
        };
        if self.is_aead() {
            key + SALT_LEN
        } else {
            key
        }
    }

    /// Bytes of integrity key (RFC 4868 §2.1.1: 32, 48 or 64; 0 for AEAD).
    pub const fn integ_key_len(self) -> usize {
        match self.integ() {
            Some(i) => i.key_len(),
            None => 0,
        }
    }

    /// KEYMAT bytes one direction of this SA takes (RFC 7296 §2.17).
    pub const fn keymat_len(self) -> usize {
        self.enc_key_len() + self.integ_key_len()
    }

    /// Length of the explicit IV carried in each packet.
    pub const fn iv_len(self) -> usize {
        if self.is_aead() {
            8
        } else {
            16
        }
    }

    /// Length of the ICV: 16 for AEAD, half the HMAC output for CBC.
    pub const fn icv_len(self) -> usize {
        match self.integ() {
            Some(i) => i.icv_len(),
            None => ICV_LEN,
        }
    }

    /// The plaintext (inner + padding + 2 trailer bytes) must be a multiple
    /// of this: the cipher block size, at least 4 (RFC 4303 §2.4).
    pub const fn pad_align(self) -> usize {
        if self.is_aead() {
            4
        } else {
            16
        }
    }

    /// Bytes of ESP overhead around an inner packet of `inner_len` bytes
    /// (header, IV, padding, trailer, ICV), without outer IP/UDP headers.
    pub const fn overhead(self, inner_len: usize) -> usize {
        let a = self.pad_align();
        let padded = (inner_len + 2).div_ceil(a) * a;
        crate::sa::ESP_HEADER_LEN + self.iv_len() + (padded - inner_len) + self.icv_len()
    }

    /// The largest ESP overhead for any inner length (header, IV, worst-case
    /// padding, trailer, ICV), without outer IP/UDP headers: what a target
    /// should subtract from the path MTU when clamping MSS.
    pub const fn max_overhead(self) -> usize {
        crate::sa::ESP_HEADER_LEN + self.iv_len() + (self.pad_align() - 1) + 2 + self.icv_len()
    }

    /// The encryption algorithm name as Wireshark's ESP preferences spell it
    /// (`esp_encryption_type_vals` in `epan/dissectors/packet-ipsec.c`).
    pub const fn wireshark_encryption_name(self) -> &'static str {
        match self {
            EspTransform::AesGcm128 | EspTransform::AesGcm256 => {
                "AES-GCM with 16 octet ICV [RFC4106]"
            }
            EspTransform::ChaCha20Poly1305 => "ChaCha20 with Poly1305 [RFC7634]",
            _ => "AES-CBC [RFC3602]",
        }
    }

    /// The authentication algorithm name as Wireshark spells it
    /// (`esp_authentication_type_vals`).
    pub const fn wireshark_auth_name(self) -> &'static str {
        match self.integ() {
            Some(i) => i.wireshark_name(),
            None => "NULL",
        }
    }

    /// The strongSwan proposal keyword, handy in logs and configs.
    pub const fn name(self) -> &'static str {
        match self {
            EspTransform::AesGcm128 => "aes128gcm16",
            EspTransform::AesGcm256 => "aes256gcm16",
            EspTransform::ChaCha20Poly1305 => "chacha20poly1305",
            EspTransform::AesCbc128HmacSha256 => "aes128-sha256",
            EspTransform::AesCbc256HmacSha256 => "aes256-sha256",
            EspTransform::AesCbc128HmacSha384 => "aes128-sha384",
            EspTransform::AesCbc256HmacSha384 => "aes256-sha384",
            EspTransform::AesCbc128HmacSha512 => "aes128-sha512",
            EspTransform::AesCbc256HmacSha512 => "aes256-sha512",
        }
    }

    /// Splits Child SA KEYMAT (RFC 7296 §2.17) into the keys of both
    /// directions: `(initiator→responder, responder→initiator)`.
    //= https://www.rfc-editor.org/rfc/rfc7296#section-2.17
    //# All keys for SAs carrying data from the initiator to the responder
    //# are taken before SAs going from the responder to the initiator.
    //# ... the encryption key (if any) MUST be taken from the first bits and
    //# the integrity key (if any) MUST be taken from the remaining bits.
    pub fn split_keymat(self, keymat: &[u8]) -> Result<(ChildKeys, ChildKeys), SaError> {
        let n = self.keymat_len();
        if keymat.len() < 2 * n {
            return Err(SaError::KeyLength {
                which: "KEYMAT",
                needed: 2 * n,
                have: keymat.len(),
            });
        }
        let e = self.enc_key_len();
        let take = |k: &[u8]| ChildKeys {
            enc: k[..e].to_vec(),
            integ: k[e..n].to_vec(),
        };
        Ok((take(&keymat[..n]), take(&keymat[n..2 * n])))
    }
}

impl core::fmt::Display for EspTransform {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.name())
    }
}

/// The keys of one direction of a Child SA; zeroized when dropped.
#[derive(Clone, PartialEq, Eq)]
pub struct ChildKeys {
    /// Encryption key (with the salt last for AEAD).
    pub enc: Vec<u8>,
    /// Integrity key (empty for AEAD).
    pub integ: Vec<u8>,
}

impl Drop for ChildKeys {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.enc);
        zeroize::Zeroize::zeroize(&mut self.integ);
    }
}

impl core::fmt::Debug for ChildKeys {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(
            f,
            "ChildKeys {{ enc: {} bytes, integ: {} bytes }}",
            self.enc.len(),
            self.integ.len()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The installable list is exactly what `from_ikev2` accepts: every entry
    /// maps to its transform, and neighbours of the entries (other key sizes,
    /// other INTEG ids, AEAD with an INTEG, CBC without one) are refused.
    #[test]
    fn installable_is_exactly_what_from_ikev2_accepts() {
        let list = EspTransform::installable();
        assert_eq!(list.len(), EspTransform::ALL.len());
        for (t, &(encr, bits, integ)) in EspTransform::ALL.iter().zip(list) {
            assert_eq!(
                EspTransform::from_ikev2(encr, bits, Some(integ)).ok(),
                Some(*t)
            );
            let integ_opt = (integ != 0).then_some(integ);
            assert_eq!(
                EspTransform::from_ikev2(encr, bits, integ_opt).ok(),
                Some(*t)
            );
        }
        let encrs = [0, 3, 12, 13, 14, 18, 19, 20, 28, 1024];
        let bitss = [
            None,
            Some(0),
            Some(64),
            Some(128),
            Some(192),
            Some(256),
            Some(512),
        ];
        let integs = [
            None,
            Some(0),
            Some(1),
            Some(2),
            Some(5),
            Some(12),
            Some(13),
            Some(14),
            Some(15),
        ];
        let mut accepted = 0;
        for e in encrs {
            for b in bitss {
                for i in integs {
                    let listed = list.contains(&(e, b, i.unwrap_or(0)));
                    assert_eq!(
                        EspTransform::from_ikev2(e, b, i).is_ok(),
                        listed,
                        "({e}, {b:?}, {i:?})"
                    );
                    accepted += usize::from(listed);
                }
            }
        }
        // Each listed entry was reached (twice for AEAD: None and Some(0)).
        assert_eq!(accepted, 3 * 2 + 6);
        assert_eq!(
            EspTransform::from_ikev2(12, Some(256), Some(13)).ok(),
            Some(EspTransform::AesCbc256HmacSha384)
        );
        assert_eq!(
            EspTransform::from_ikev2(12, Some(128), Some(14)).ok(),
            Some(EspTransform::AesCbc128HmacSha512)
        );
    }

    #[test]
    fn names_round_trip_and_sizes() {
        for t in EspTransform::ALL {
            assert_eq!(EspTransform::from_name(t.name()), Some(t));
        }
        assert_eq!(EspTransform::from_name("aes256-sha1"), None);
        let t = EspTransform::AesCbc256HmacSha384;
        assert_eq!(
            (t.enc_key_len(), t.integ_key_len(), t.icv_len()),
            (32, 48, 24)
        );
        let t = EspTransform::AesCbc128HmacSha512;
        assert_eq!(
            (t.enc_key_len(), t.integ_key_len(), t.icv_len()),
            (16, 64, 32)
        );
        assert_eq!(t.max_overhead(), 8 + 16 + 15 + 2 + 32);
        assert_eq!(t.wireshark_auth_name(), "HMAC-SHA-512-256 [RFC4868]");
    }
}
