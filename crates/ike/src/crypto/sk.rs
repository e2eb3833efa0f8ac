//! The Encrypted payload (RFC 7296 §3.14): AES-CBC with HMAC-SHA2 (RFC 4868) or
//! AES-GCM-16 (RFC 5282), sealed around a whole message and opened with the ICV
//! checked first.

use ring::{aead, hmac};

use super::{integ_id, CryptoError, IkeSuite, Rng};
use crate::message::{Header, HEADER_LEN};

/// Sealing and opening of the Encrypted payload for one direction.
pub struct SkCipher<'a> {
    /// The suite.
    pub suite: &'a IkeSuite,
    /// SK_e of the direction (key | salt for GCM).
    pub key_e: &'a [u8],
    /// SK_a of the direction (empty for GCM).
    pub key_a: &'a [u8],
}

impl SkCipher<'_> {
    fn iv_len(&self) -> usize {
        if self.suite.is_aead() {
            8
        } else {
            16
        }
    }
    fn icv_len(&self) -> usize {
        match self.suite.integ {
            None => 16,
            Some(integ_id::HMAC_SHA2_256_128) => 16,
            Some(integ_id::HMAC_SHA2_384_192) => 24,
            Some(_) => 32,
        }
    }
    fn hmac_alg(&self) -> hmac::Algorithm {
        match self.suite.integ {
            Some(integ_id::HMAC_SHA2_384_192) => hmac::HMAC_SHA384,
            Some(integ_id::HMAC_SHA2_512_256) => hmac::HMAC_SHA512,
            _ => hmac::HMAC_SHA256,
        }
    }
    fn gcm_key(&self) -> Result<(aead::LessSafeKey, [u8; 4]), CryptoError> {
        let n = self
            .key_e
            .len()
            .checked_sub(4)
            .ok_or(CryptoError::Malformed)?;
        let alg = if n == 16 {
            &aead::AES_128_GCM
        } else {
            &aead::AES_256_GCM
        };
        let key =
            aead::UnboundKey::new(alg, &self.key_e[..n]).map_err(|_| CryptoError::Malformed)?;
        let mut salt = [0u8; 4];
        salt.copy_from_slice(&self.key_e[n..]);
        Ok((aead::LessSafeKey::new(key), salt))
    }

    /// Build a whole encrypted message: `header` (length/next payload are filled in),
    /// an SK payload whose Next Payload is `inner_first`, around `inner` payload bytes.
    //= https://www.rfc-editor.org/rfc/rfc7296#section-3.14
    //# The Integrity Checksum Data is the cryptographic checksum of the
    //# entire message starting with the Fixed IKE header through the Pad
    //# Length.
    pub fn seal(
        &self,
        header: &Header,
        inner_first: u8,
        inner: &[u8],
        rng: &mut dyn Rng,
    ) -> Result<Vec<u8>, CryptoError> {
        let iv_len = self.iv_len();
        let icv_len = self.icv_len();
        let block = if self.suite.is_aead() { 4 } else { 16 };
        let pad = (block - (inner.len() + 1) % block) % block;
        let ct_len = inner.len() + pad + 1;
        let sk_len = 4 + iv_len + ct_len + icv_len;
        let total = HEADER_LEN + sk_len;
        let mut out = Vec::with_capacity(total);
        let mut h = *header;
        h.next_payload = crate::message::payload_type::SK;
        h.length = total as u32;
        h.emit(&mut out);
        out.push(inner_first);
        out.push(0);
        out.extend_from_slice(&(sk_len as u16).to_be_bytes());
        let mut iv = [0u8; 16];
        rng.fill(&mut iv[..iv_len]);
        out.extend_from_slice(&iv[..iv_len]);
        let pt_start = out.len();
        out.extend_from_slice(inner);
        out.extend(std::iter::repeat_n(0u8, pad));
        out.push(pad as u8);
        if self.suite.is_aead() {
            let (key, salt) = self.gcm_key()?;
            let mut nonce = [0u8; 12];
            nonce[..4].copy_from_slice(&salt);
            nonce[4..].copy_from_slice(&iv[..8]);
            //= https://www.rfc-editor.org/rfc/rfc5282#section-5.1
            //# the associated data [...] MUST consist of the partial
            //# IKEv2 message from the beginning of the IKE Header through
            //# the last octet of the Encrypted Payload header
            let (head, pt) = out.split_at_mut(pt_start);
            let aad = aead::Aad::from(&head[..HEADER_LEN + 4]);
            let tag = key
                .seal_in_place_separate_tag(aead::Nonce::assume_unique_for_key(nonce), aad, pt)
                .map_err(|_| CryptoError::Malformed)?;
            out.extend_from_slice(tag.as_ref());
        } else {
            use cbc::cipher::{block_padding::NoPadding, BlockEncryptMut, KeyIvInit};
            let pt = &mut out[pt_start..];
            let n = pt.len();
            let r = match self.key_e.len() {
                16 => cbc::Encryptor::<aes::Aes128>::new_from_slices(self.key_e, &iv)
                    .map_err(|_| CryptoError::Malformed)?
                    .encrypt_padded_mut::<NoPadding>(pt, n)
                    .map(|_| ()),
                32 => cbc::Encryptor::<aes::Aes256>::new_from_slices(self.key_e, &iv)
                    .map_err(|_| CryptoError::Malformed)?
                    .encrypt_padded_mut::<NoPadding>(pt, n)
                    .map(|_| ()),
                _ => return Err(CryptoError::Malformed),
            };
            r.map_err(|_| CryptoError::Malformed)?;
            let k = hmac::Key::new(self.hmac_alg(), self.key_a);
            let tag = hmac::sign(&k, &out);
            out.extend_from_slice(&tag.as_ref()[..icv_len]);
        }
        Ok(out)
    }

    /// Open the SK payload of a whole datagram whose SK payload body (the last
    /// `sk_body_len` bytes) is `IV | ciphertext | ICV`. Returns the inner payload bytes.
    pub fn open(&self, datagram: &[u8], sk_body_len: usize) -> Result<Vec<u8>, CryptoError> {
        let iv_len = self.iv_len();
        let icv_len = self.icv_len();
        let sk_start = datagram
            .len()
            .checked_sub(sk_body_len + 4)
            .ok_or(CryptoError::Malformed)?;
        if sk_start < HEADER_LEN || sk_body_len < iv_len + icv_len + 1 {
            return Err(CryptoError::Malformed);
        }
        let body = &datagram[sk_start + 4..];
        let (iv, rest) = body.split_at(iv_len);
        let (ct, icv) = rest.split_at(rest.len() - icv_len);
        let mut pt;
        if self.suite.is_aead() {
            let (key, salt) = self.gcm_key()?;
            let mut nonce = [0u8; 12];
            nonce[..4].copy_from_slice(&salt);
            nonce[4..].copy_from_slice(iv);
            let aad = aead::Aad::from(&datagram[..sk_start + 4]);
            pt = rest.to_vec();
            let n = key
                .open_in_place(aead::Nonce::assume_unique_for_key(nonce), aad, &mut pt)
                .map_err(|_| CryptoError::Integrity)?
                .len();
            pt.truncate(n);
        } else {
            let k = hmac::Key::new(self.hmac_alg(), self.key_a);
            let tag = hmac::sign(&k, &datagram[..datagram.len() - icv_len]);
            if !constant_time_eq(&tag.as_ref()[..icv_len], icv) {
                return Err(CryptoError::Integrity);
            }
            if ct.len() % 16 != 0 || ct.is_empty() {
                return Err(CryptoError::Malformed);
            }
            use cbc::cipher::{block_padding::NoPadding, BlockDecryptMut, KeyIvInit};
            pt = ct.to_vec();
            let r = match self.key_e.len() {
                16 => cbc::Decryptor::<aes::Aes128>::new_from_slices(self.key_e, iv)
                    .map_err(|_| CryptoError::Malformed)?
                    .decrypt_padded_mut::<NoPadding>(&mut pt)
                    .map(|_| ()),
                32 => cbc::Decryptor::<aes::Aes256>::new_from_slices(self.key_e, iv)
                    .map_err(|_| CryptoError::Malformed)?
                    .decrypt_padded_mut::<NoPadding>(&mut pt)
                    .map(|_| ()),
                _ => return Err(CryptoError::Malformed),
            };
            r.map_err(|_| CryptoError::Malformed)?;
        }
        let pad = *pt.last().ok_or(CryptoError::Padding)? as usize;
        if pad + 1 > pt.len() {
            return Err(CryptoError::Padding);
        }
        pt.truncate(pt.len() - pad - 1);
        Ok(pt)
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
