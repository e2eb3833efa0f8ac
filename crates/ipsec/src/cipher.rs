//! The keyed primitives of an ESP transform, built once per SA: AES-GCM and
//! ChaCha20-Poly1305 (ring), AES-CBC (RustCrypto `aes`/`cbc`) with HMAC-SHA-2
//! (ring) truncated as RFC 4868 says, and the per-SA generator of unpredictable
//! CBC IVs. Nothing here allocates per packet; [`crate::sa`] lays out the ESP
//! packet around these calls.

use crate::error::SaError;
use crate::transform::{EspTransform, Integ, ICV_LEN, MAX_ICV_LEN, SALT_LEN};
use aes::cipher::{BlockEncrypt, KeyInit};
use cbc::cipher::{block_padding::NoPadding, BlockDecryptMut, BlockEncryptMut, InnerIvInit};
use ring::{aead, hmac};

/// An HMAC ICV (RFC 4868 §2.3: the first half of the HMAC output): 16, 24 or
/// 32 bytes, kept inline.
#[derive(Clone, Copy)]
pub struct Icv {
    bytes: [u8; MAX_ICV_LEN],
    len: u8,
}

impl Icv {
    /// The ICV bytes.
    #[inline]
    pub fn as_slice(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }
}

impl AsRef<[u8]> for Icv {
    fn as_ref(&self) -> &[u8] {
        self.as_slice()
    }
}

impl core::ops::Deref for Icv {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        self.as_slice()
    }
}

impl core::fmt::Debug for Icv {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "Icv({} bytes)", self.len)
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

impl Drop for CipherInner {
    fn drop(&mut self) {
        // The AES key schedules (ours, and the IV generator's) zeroize
        // themselves (`aes` with its `zeroize` feature), but only the half of
        // their AES-NI/software union in use: the other half can hold stack
        // residue of the key expansion, raw key bytes included
        // (`crates/ipsec/tests/zeroize.rs` sees it). ring's AEAD and HMAC keys
        // live in ring's own types, which offer no way to wipe them.
        if let CipherInner::Aead { salt, .. } = self {
            zeroize::Zeroize::zeroize(salt);
        }
    }
}

struct CbcHmac {
    aes: AesKey,
    hmac: hmac::Key,
    icv_len: usize,
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
        let inner = match transform.integ() {
            None => Self::new_aead(transform, enc_key)?,
            Some(integ) => Self::new_cbc_hmac(enc_key, integ, integ_key)?,
        };
        Ok(EspCipher { transform, inner })
    }

    fn new_aead(transform: EspTransform, enc_key: &[u8]) -> Result<CipherInner, SaError> {
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
        Ok(CipherInner::Aead {
            key: aead::LessSafeKey::new(key),
            salt,
        })
    }

    fn new_cbc_hmac(
        enc_key: &[u8],
        integ: Integ,
        integ_key: &[u8],
    ) -> Result<CipherInner, SaError> {
        let alg = match integ {
            Integ::HmacSha256_128 => hmac::HMAC_SHA256,
            Integ::HmacSha384_192 => hmac::HMAC_SHA384,
            Integ::HmacSha512_256 => hmac::HMAC_SHA512,
        };
        Ok(CipherInner::CbcHmac(Box::new(CbcHmac {
            aes: aes_key(enc_key)?,
            hmac: hmac::Key::new(alg, integ_key),
            icv_len: integ.icv_len(),
            iv_gen: iv_key()?,
        })))
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
        let n = data.len();
        match &c.aes {
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
        match &c.aes {
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

    /// The HMAC ICV over the concatenation of `parts`: the first 128, 192 or
    /// 256 bits of HMAC-SHA-256, -384 or -512 (RFC 4868 §2.3).
    pub fn hmac_icv(&self, parts: &[&[u8]]) -> Option<Icv> {
        let CipherInner::CbcHmac(c) = &self.inner else {
            return None;
        };
        let mut ctx = hmac::Context::with_key(&c.hmac);
        for p in parts {
            ctx.update(p);
        }
        let tag = ctx.sign();
        let mut out = Icv {
            bytes: [0u8; MAX_ICV_LEN],
            len: c.icv_len as u8,
        };
        out.bytes[..c.icv_len].copy_from_slice(&tag.as_ref()[..c.icv_len]);
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
        let mut block = [0u8; 16];
        block[..8].copy_from_slice(&seq.to_be_bytes());
        let mut b = block.into();
        c.iv_gen.encrypt_block(&mut b);
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

/// The AES key schedule of an SA.
fn aes_key(enc_key: &[u8]) -> Result<AesKey, SaError> {
    Ok(match enc_key.len() {
        16 => AesKey::Aes128(aes::Aes128::new_from_slice(enc_key).map_err(|_| bad_key(enc_key))?),
        _ => AesKey::Aes256(aes::Aes256::new_from_slice(enc_key).map_err(|_| bad_key(enc_key))?),
    })
}

/// A random AES-128 key for the CBC IV generator.
fn iv_key() -> Result<aes::Aes128, SaError> {
    let mut r = [0u8; 16];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut r)
        .map_err(|_| SaError::Rng)?;
    let k = aes::Aes128::new(&r.into());
    zeroize::Zeroize::zeroize(&mut r);
    Ok(k)
}
