//! ESP transforms: which algorithms an SA uses, their IKEv2 IDs and key sizes
//! (RFC 7296 §3.3.2, IANA "IKEv2 Transform Type" registries), and the
//! zero-allocation primitives that seal and open a caller's buffer.
//!
//! - AES-GCM with a 16-byte ICV (RFC 4106) and ChaCha20-Poly1305 (RFC 7634):
//!   keying material is key || 4-byte salt; the nonce is salt || 8-byte IV.
//! - AES-CBC (RFC 3602) with HMAC-SHA-256-128 (RFC 4868): 16-byte IV, ICV = the
//!   first 16 bytes of the HMAC, verified in constant time before decrypting.

use crate::error::SaError;
use aes::cipher::{BlockEncrypt, KeyInit};
use cbc::cipher::{block_padding::NoPadding, BlockDecryptMut, BlockEncryptMut, InnerIvInit};
use ring::{aead, hmac};

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
}

/// Length of every ICV produced here (GCM-16, Poly1305, HMAC-SHA-256-128).
pub const ICV_LEN: usize = 16;
/// Length of the salt appended to AEAD keys (RFC 4106 §8.1, RFC 7634 §4).
pub const SALT_LEN: usize = 4;

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
}

impl EspTransform {
    /// All supported transforms.
    pub const ALL: [EspTransform; 5] = [
        EspTransform::AesGcm128,
        EspTransform::AesGcm256,
        EspTransform::ChaCha20Poly1305,
        EspTransform::AesCbc128HmacSha256,
        EspTransform::AesCbc256HmacSha256,
    ];

    /// Maps negotiated IKEv2 transforms to an ESP transform: the ENCR ID, its
    /// Key Length attribute in bits (RFC 7296 §3.3.5; `None` if absent), and
    /// the INTEG ID (`None` or `Some(AUTH_NONE)` for AEAD).
    pub fn from_ikev2(
        encr: u16,
        key_bits: Option<u16>,
        integ: Option<u16>,
    ) -> Result<Self, SaError> {
        use ids::*;
        let integ_n = integ.filter(|&i| i != AUTH_NONE);
        Ok(match (encr, key_bits, integ_n) {
            (ENCR_AES_GCM_16, Some(128), None) => EspTransform::AesGcm128,
            (ENCR_AES_GCM_16, Some(256), None) => EspTransform::AesGcm256,
            //= https://www.rfc-editor.org/rfc/rfc7634#section-2
            //# ChaCha20-Poly1305 ... the Key Length attribute MUST NOT be sent
            (ENCR_CHACHA20_POLY1305, None, None) => EspTransform::ChaCha20Poly1305,
            (ENCR_AES_CBC, Some(128), Some(AUTH_HMAC_SHA2_256_128)) => {
                EspTransform::AesCbc128HmacSha256
            }
            (ENCR_AES_CBC, Some(256), Some(AUTH_HMAC_SHA2_256_128)) => {
                EspTransform::AesCbc256HmacSha256
            }
            _ => {
                return Err(SaError::UnsupportedTransform {
                    encr,
                    key_bits,
                    integ,
                })
            }
        })
    }

    /// IKEv2 ENCR transform ID.
    pub const fn encr_id(self) -> u16 {
        match self {
            EspTransform::AesGcm128 | EspTransform::AesGcm256 => ids::ENCR_AES_GCM_16,
            EspTransform::ChaCha20Poly1305 => ids::ENCR_CHACHA20_POLY1305,
            EspTransform::AesCbc128HmacSha256 | EspTransform::AesCbc256HmacSha256 => {
                ids::ENCR_AES_CBC
            }
        }
    }

    /// The Key Length attribute (bits) sent with the ENCR transform, if any.
    pub const fn key_bits(self) -> Option<u16> {
        match self {
            EspTransform::AesGcm128 | EspTransform::AesCbc128HmacSha256 => Some(128),
            EspTransform::AesGcm256 | EspTransform::AesCbc256HmacSha256 => Some(256),
            EspTransform::ChaCha20Poly1305 => None,
        }
    }

    /// IKEv2 INTEG transform ID (`None` for AEAD transforms).
    pub const fn integ_id(self) -> Option<u16> {
        if self.is_aead() {
            None
        } else {
            Some(ids::AUTH_HMAC_SHA2_256_128)
        }
    }

    /// Whether this is a combined-mode (AEAD) transform.
    pub const fn is_aead(self) -> bool {
        matches!(
            self,
            EspTransform::AesGcm128 | EspTransform::AesGcm256 | EspTransform::ChaCha20Poly1305
        )
    }

    /// Bytes of encryption keying material, including the 4-byte salt for AEAD.
    //= https://www.rfc-editor.org/rfc/rfc4106#section-8.1
    //# The size of the KEYMAT for the AES-GCM-ESP MUST be four octets longer
    //# than is needed for the associated AES key.
    pub const fn enc_key_len(self) -> usize {
        match self {
            EspTransform::AesGcm128 => 16 + SALT_LEN,
            EspTransform::AesGcm256 | EspTransform::ChaCha20Poly1305 => 32 + SALT_LEN,
            EspTransform::AesCbc128HmacSha256 => 16,
            EspTransform::AesCbc256HmacSha256 => 32,
        }
    }

    /// Bytes of integrity key (RFC 4868 §2.1.1: 32 for HMAC-SHA-256-128).
    pub const fn integ_key_len(self) -> usize {
        if self.is_aead() {
            0
        } else {
            32
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

    /// Length of the ICV.
    pub const fn icv_len(self) -> usize {
        ICV_LEN
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
        crate::sa::ESP_HEADER_LEN + self.iv_len() + (padded - inner_len) + ICV_LEN
    }

    /// The largest ESP overhead for any inner length (header, IV, worst-case
    /// padding, trailer, ICV), without outer IP/UDP headers: what a target
    /// should subtract from the path MTU when clamping MSS.
    pub const fn max_overhead(self) -> usize {
        crate::sa::ESP_HEADER_LEN + self.iv_len() + (self.pad_align() - 1) + 2 + ICV_LEN
    }

    /// The encryption algorithm name as Wireshark's ESP preferences spell it
    /// (`esp_encryption_type_vals` in `epan/dissectors/packet-ipsec.c`).
    pub const fn wireshark_encryption_name(self) -> &'static str {
        match self {
            EspTransform::AesGcm128 | EspTransform::AesGcm256 => {
                "AES-GCM with 16 octet ICV [RFC4106]"
            }
            EspTransform::ChaCha20Poly1305 => "ChaCha20 with Poly1305 [RFC7634]",
            EspTransform::AesCbc128HmacSha256 | EspTransform::AesCbc256HmacSha256 => {
                "AES-CBC [RFC3602]"
            }
        }
    }

    /// The authentication algorithm name as Wireshark spells it
    /// (`esp_authentication_type_vals`).
    pub const fn wireshark_auth_name(self) -> &'static str {
        if self.is_aead() {
            "NULL"
        } else {
            "HMAC-SHA-256-128 [RFC4868]"
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

/// The keys of one direction of a Child SA.
#[derive(Clone, PartialEq, Eq)]
pub struct ChildKeys {
    /// Encryption key (with the salt last for AEAD).
    pub enc: Vec<u8>,
    /// Integrity key (empty for AEAD).
    pub integ: Vec<u8>,
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

// Both variants live behind the Box of `CipherInner::CbcHmac`.
#[allow(clippy::large_enum_variant)]
#[derive(Clone)]
enum AesKey {
    Aes128(aes::Aes128),
    Aes256(aes::Aes256),
}

/// An initialised cipher: key schedules are computed once, at SA creation.
pub struct EspCipher {
    transform: EspTransform,
    inner: CipherInner,
}

// The AEAD key is stored inline (the hot path of the benchmark); one per SA.
#[allow(clippy::large_enum_variant)]
enum CipherInner {
    Aead {
        key: aead::LessSafeKey,
        salt: [u8; SALT_LEN],
    },
    CbcHmac(Box<CbcHmac>),
}

struct CbcHmac {
    aes: AesKey,
    hmac: hmac::Key,
    /// A random per-SA AES key that turns the (unique) sequence number into
    /// an unpredictable IV.
    iv_gen: aes::Aes128,
}

impl core::fmt::Debug for EspCipher {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "EspCipher({})", self.transform)
    }
}

fn check_len(which: &'static str, needed: usize, have: usize) -> Result<(), SaError> {
    if needed == have {
        Ok(())
    } else {
        Err(SaError::KeyLength {
            which,
            needed,
            have,
        })
    }
}

impl EspCipher {
    /// Builds a cipher from keys of the lengths [`EspTransform::enc_key_len`]
    /// and [`EspTransform::integ_key_len`].
    pub fn new(transform: EspTransform, enc_key: &[u8], integ_key: &[u8]) -> Result<Self, SaError> {
        check_len("encryption", transform.enc_key_len(), enc_key.len())?;
        check_len("integrity", transform.integ_key_len(), integ_key.len())?;
        let inner = if transform.is_aead() {
            let alg = match transform {
                EspTransform::AesGcm128 => &aead::AES_128_GCM,
                EspTransform::AesGcm256 => &aead::AES_256_GCM,
                _ => &aead::CHACHA20_POLY1305,
            };
            let (k, s) = enc_key.split_at(enc_key.len() - SALT_LEN);
            let key = aead::UnboundKey::new(alg, k).map_err(|_| SaError::KeyLength {
                which: "encryption",
                needed: alg.key_len(),
                have: k.len(),
            })?;
            let mut salt = [0u8; SALT_LEN];
            salt.copy_from_slice(s);
            CipherInner::Aead {
                key: aead::LessSafeKey::new(key),
                salt,
            }
        } else {
            let aes = match transform {
                EspTransform::AesCbc128HmacSha256 => AesKey::Aes128(
                    aes::Aes128::new_from_slice(enc_key).map_err(|_| bad_key(enc_key))?,
                ),
                _ => AesKey::Aes256(
                    aes::Aes256::new_from_slice(enc_key).map_err(|_| bad_key(enc_key))?,
                ),
            };
            let mut r = [0u8; 16];
            ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut r)
                .map_err(|_| SaError::Rng)?;
            CipherInner::CbcHmac(Box::new(CbcHmac {
                aes,
                hmac: hmac::Key::new(hmac::HMAC_SHA256, integ_key),
                iv_gen: aes::Aes128::new(&r.into()),
            }))
        };
        Ok(EspCipher { transform, inner })
    }

    /// The transform.
    pub fn transform(&self) -> EspTransform {
        self.transform
    }

    /// AEAD seal in place: encrypts `data` with nonce salt || `iv` and returns
    /// the ICV. For CBC ciphers this returns `None`.
    pub fn aead_seal(&self, iv: &[u8; 8], aad: &[u8], data: &mut [u8]) -> Option<[u8; ICV_LEN]> {
        let CipherInner::Aead { key, salt } = &self.inner else {
            return None;
        };
        let tag = key
            .seal_in_place_separate_tag(nonce(salt, iv), aead::Aad::from(aad), data)
            .ok()?;
        let mut out = [0u8; ICV_LEN];
        out.copy_from_slice(tag.as_ref());
        Some(out)
    }

    /// AEAD open in place: `data` is ciphertext || ICV; returns the plaintext
    /// length (`data.len() - 16`) or `None` if the ICV does not verify.
    pub fn aead_open(&self, iv: &[u8; 8], aad: &[u8], data: &mut [u8]) -> Option<usize> {
        let CipherInner::Aead { key, salt } = &self.inner else {
            return None;
        };
        key.open_in_place(nonce(salt, iv), aead::Aad::from(aad), data)
            .ok()
            .map(|p| p.len())
    }

    /// CBC-encrypts `data` (a multiple of 16 bytes) in place with `iv`.
    pub fn cbc_encrypt(&self, iv: &[u8; 16], data: &mut [u8]) -> Option<()> {
        let CipherInner::CbcHmac(c) = &self.inner else {
            return None;
        };
        let aes = &c.aes;
        let n = data.len();
        match aes {
            AesKey::Aes128(a) => cbc::Encryptor::<aes::Aes128>::inner_iv_init(a.clone(), iv.into())
                .encrypt_padded_mut::<NoPadding>(data, n)
                .ok()
                .map(drop),
            AesKey::Aes256(a) => cbc::Encryptor::<aes::Aes256>::inner_iv_init(a.clone(), iv.into())
                .encrypt_padded_mut::<NoPadding>(data, n)
                .ok()
                .map(drop),
        }
    }

    /// CBC-decrypts `data` (a multiple of 16 bytes) in place with `iv`.
    pub fn cbc_decrypt(&self, iv: &[u8; 16], data: &mut [u8]) -> Option<()> {
        let CipherInner::CbcHmac(c) = &self.inner else {
            return None;
        };
        let aes = &c.aes;
        match aes {
            AesKey::Aes128(a) => cbc::Decryptor::<aes::Aes128>::inner_iv_init(a.clone(), iv.into())
                .decrypt_padded_mut::<NoPadding>(data)
                .ok()
                .map(drop),
            AesKey::Aes256(a) => cbc::Decryptor::<aes::Aes256>::inner_iv_init(a.clone(), iv.into())
                .decrypt_padded_mut::<NoPadding>(data)
                .ok()
                .map(drop),
        }
    }

    /// HMAC-SHA-256-128 over the concatenation of `parts` (RFC 4868 §2.3: the
    /// first 128 bits of HMAC-SHA-256).
    pub fn hmac_icv(&self, parts: &[&[u8]]) -> Option<[u8; ICV_LEN]> {
        let CipherInner::CbcHmac(c) = &self.inner else {
            return None;
        };
        let key = &c.hmac;
        let mut ctx = hmac::Context::with_key(key);
        for p in parts {
            ctx.update(p);
        }
        let tag = ctx.sign();
        let mut out = [0u8; ICV_LEN];
        out.copy_from_slice(&tag.as_ref()[..ICV_LEN]);
        Some(out)
    }

    /// An unpredictable CBC IV for sequence number `seq`: AES under a random
    /// per-SA key of the (never repeated) 64-bit sequence number.
    //= https://www.rfc-editor.org/rfc/rfc3602#section-3
    //# The IV MUST be chosen at random, and MUST be unpredictable.
    pub fn cbc_iv(&self, seq: u64) -> Option<[u8; 16]> {
        let CipherInner::CbcHmac(c) = &self.inner else {
            return None;
        };
        let iv_gen = &c.iv_gen;
        let mut block = [0u8; 16];
        block[..8].copy_from_slice(&seq.to_be_bytes());
        let mut b = block.into();
        iv_gen.encrypt_block(&mut b);
        Some(b.into())
    }
}

#[inline]
fn nonce(salt: &[u8; SALT_LEN], iv: &[u8; 8]) -> aead::Nonce {
    //= https://www.rfc-editor.org/rfc/rfc4106#section-4
    //# The salt field is a four-octet value ... followed by the IV
    let mut n = [0u8; 12];
    n[..4].copy_from_slice(salt);
    n[4..].copy_from_slice(iv);
    aead::Nonce::assume_unique_for_key(n)
}

/// Compares two byte strings in time that depends only on their length.
#[inline]
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    core::hint::black_box(diff) == 0
}

fn bad_key(k: &[u8]) -> SaError {
    SaError::KeyLength {
        which: "encryption",
        needed: 16,
        have: k.len(),
    }
}
