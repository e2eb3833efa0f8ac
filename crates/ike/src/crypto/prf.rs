//! The negotiated PRF (HMAC-SHA2) and prf+ (RFC 7296 §2.13).

use ring::hmac;
use zeroize::Zeroize;

use super::prf_id;

/// A negotiated PRF.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Prf(hmac::Algorithm, u16);

impl Prf {
    /// From its transform id.
    pub fn from_id(id: u16) -> Option<Prf> {
        Some(match id {
            prf_id::HMAC_SHA2_256 => Prf(hmac::HMAC_SHA256, id),
            prf_id::HMAC_SHA2_384 => Prf(hmac::HMAC_SHA384, id),
            prf_id::HMAC_SHA2_512 => Prf(hmac::HMAC_SHA512, id),
            _ => return None,
        })
    }
    /// Transform id.
    pub fn id(&self) -> u16 {
        self.1
    }
    /// Output (and preferred key) length.
    pub fn len(&self) -> usize {
        self.0.digest_algorithm().output_len()
    }
    /// Never empty; here for clippy's `len_without_is_empty`.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// prf(key, data) over any number of data pieces.
    pub fn prf(&self, key: &[u8], data: &[&[u8]]) -> Vec<u8> {
        let k = hmac::Key::new(self.0, key);
        let mut ctx = hmac::Context::with_key(&k);
        for d in data {
            ctx.update(d);
        }
        ctx.sign().as_ref().to_vec()
    }

    /// prf+ (§2.13): `T1 | T2 | ...` truncated to `len`.
    //= https://www.rfc-editor.org/rfc/rfc7296#section-2.13
    //# prf+ (K,S) = T1 | T2 | T3 | T4 | ...
    //# where:
    //# T1 = prf (K, S | 0x01)
    //# T2 = prf (K, T1 | S | 0x02)
    /// The output is key material: the caller wipes it (no copy is left behind here).
    pub fn prf_plus(&self, key: &[u8], seed: &[&[u8]], len: usize) -> Vec<u8> {
        let k = hmac::Key::new(self.0, key);
        // Room for the last whole block, so that the vector never reallocates (a
        // reallocation would leave a copy of the keys in freed memory).
        let mut out = Vec::with_capacity(len + self.len());
        let mut i: u8 = 1;
        while out.len() < len {
            let mut ctx = hmac::Context::with_key(&k);
            let start = out.len().saturating_sub(self.len());
            if i > 1 {
                ctx.update(&out[start..]);
            }
            for s in seed {
                ctx.update(s);
            }
            ctx.update(&[i]);
            out.extend_from_slice(ctx.sign().as_ref());
            i = i.wrapping_add(1);
        }
        out[len..].zeroize();
        out.truncate(len);
        out
    }
}
