//! Outbound ESP (RFC 4303 §3.3): sealing an inner packet into
//! `SPI | seq | IV | ciphertext | ICV` in the caller's buffer, and the AAD and
//! ICV inputs that open shares.

use super::{Direction, SecurityAssociation};
use crate::error::EspError;
use crate::transform::Icv;
use plexgate_wire::esp::EspPacket;
use std::time::Instant;

impl SecurityAssociation {
    /// Seals `inner` into `out`: writes SPI | seq | IV | ciphertext | ICV and
    /// returns the ESP length. `next_header` is 4 / 41 in tunnel mode, the
    /// transport protocol in transport mode, 59 for a dummy packet.
    pub fn seal(
        &mut self,
        now: Instant,
        inner: &[u8],
        next_header: u8,
        out: &mut [u8],
    ) -> Result<usize, EspError> {
        let h = self.header_len();
        let needed = self.sealed_len(inner.len());
        if out.len() < needed {
            return Err(EspError::BufferTooSmall {
                needed,
                have: out.len(),
            });
        }
        out[h..h + inner.len()].copy_from_slice(inner);
        self.seal_in_place(now, out, inner.len(), next_header)
    }

    /// Seals in place: the inner packet is already at
    /// `buf[header_len() .. header_len() + inner_len]`, and `buf` has room for
    /// trailer and ICV (`sealed_len(inner_len)` bytes in all). Returns the ESP
    /// length.
    pub fn seal_in_place(
        &mut self,
        now: Instant,
        buf: &mut [u8],
        inner_len: usize,
        next_header: u8,
    ) -> Result<usize, EspError> {
        self.seal_with_iv(now, buf, inner_len, next_header, None)
    }

    /// Seal with an optional explicit IV (known-answer tests only: a fixed IV
    /// breaks GCM's uniqueness requirement).
    pub(super) fn seal_with_iv(
        &mut self,
        now: Instant,
        buf: &mut [u8],
        inner_len: usize,
        next_header: u8,
        iv_override: Option<&[u8]>,
    ) -> Result<usize, EspError> {
        if self.params.direction != Direction::Outbound {
            return Err(EspError::WrongDirection);
        }
        self.check_alive(now)?;
        let t = self.params.transform;
        let h = self.header_len();
        let total = self.sealed_len(inner_len);
        let have = buf.len();
        let buf = buf.get_mut(..total).ok_or(EspError::BufferTooSmall {
            needed: total,
            have,
        })?;
        //= https://www.rfc-editor.org/rfc/rfc4303#section-3.3.3
        //# If the sequence number would cycle, the sender ... MUST NOT send
        if self.last_seq >= self.seq_max {
            self.expire();
            return Err(EspError::SeqExhausted);
        }
        let seq = self.last_seq + 1;
        let ct_end = total - t.icv_len();
        // Trailer: padding 1, 2, 3, ..., pad length, next header (RFC 4303 §2.4).
        //= https://www.rfc-editor.org/rfc/rfc4303#section-2.4
        //# the Padding bytes are initialized with a series of (unsigned, 1-byte)
        //# integer values.  The first padding byte appended to the plaintext is
        //# numbered 1
        let pad_start = h + inner_len;
        let pad_len = ct_end - 2 - pad_start;
        for (i, b) in buf[pad_start..ct_end - 2].iter_mut().enumerate() {
            *b = (i + 1) as u8;
        }
        buf[ct_end - 2] = pad_len as u8;
        buf[ct_end - 1] = next_header;
        let mut esp = EspPacket::new_unchecked(&mut *buf);
        esp.set_spi(self.params.spi);
        esp.set_seq(seq as u32);
        let seq_hi = ((seq >> 32) as u32).to_be_bytes();
        if t.is_aead() {
            //= https://www.rfc-editor.org/rfc/rfc4106#section-3.1
            //# the IV MUST be unique for each packet ... a counter is suitable
            let mut iv = seq.to_be_bytes();
            if let Some(o) = iv_override {
                iv.copy_from_slice(o);
            }
            buf[8..16].copy_from_slice(&iv);
            let aad = self.aad(&seq_hi, buf);
            let (_, rest) = buf.split_at_mut(h);
            let (pt, icv) = rest.split_at_mut(ct_end - h);
            let tag = self
                .cipher
                .aead_seal(&iv, aad.as_slice(), pt)
                .ok_or(EspError::BadIcv)?;
            icv.copy_from_slice(&tag);
        } else {
            let mut iv = self.cipher.cbc_iv(seq).ok_or(EspError::BadIcv)?;
            if let Some(o) = iv_override {
                iv.copy_from_slice(o);
            }
            buf[8..24].copy_from_slice(&iv);
            self.cipher
                .cbc_encrypt(&iv, &mut buf[h..ct_end])
                .ok_or(EspError::BadIcv)?;
            let icv = self.icv(&buf[..ct_end], &seq_hi).ok_or(EspError::BadIcv)?;
            buf[ct_end..].copy_from_slice(icv.as_slice());
        }
        self.last_seq = seq;
        self.account(inner_len);
        Ok(total)
    }

    /// AAD: SPI || seq_lo, or SPI || seq_hi || seq_lo with ESN.
    //= https://www.rfc-editor.org/rfc/rfc4106#section-5
    //# SPI, 64-bit Extended Sequence Number ... SPI, 32-bit Sequence Number
    #[inline]
    pub(super) fn aad(&self, seq_hi: &[u8; 4], buf: &[u8]) -> Aad {
        let mut a = [0u8; 12];
        a[..4].copy_from_slice(&buf[..4]);
        if self.params.esn {
            a[4..8].copy_from_slice(seq_hi);
            a[8..12].copy_from_slice(&buf[4..8]);
            Aad { bytes: a, len: 12 }
        } else {
            a[4..8].copy_from_slice(&buf[4..8]);
            Aad { bytes: a, len: 8 }
        }
    }

    /// HMAC ICV over header, IV and ciphertext, plus seq_hi with ESN.
    //= https://www.rfc-editor.org/rfc/rfc4303#section-2.2.1
    //# the high-order 32 bits are ... included in the ICV computation
    #[inline]
    pub(super) fn icv(&self, covered: &[u8], seq_hi: &[u8; 4]) -> Option<Icv> {
        if self.params.esn {
            self.cipher.hmac_icv(&[covered, seq_hi])
        } else {
            self.cipher.hmac_icv(&[covered])
        }
    }
}

pub(super) struct Aad {
    bytes: [u8; 12],
    len: usize,
}

impl Aad {
    #[inline]
    pub(super) fn as_slice(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
}
