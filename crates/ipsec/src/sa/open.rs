//! Inbound ESP (RFC 4303 §3.4): opening a packet in place, in the order that
//! keeps costly work last: lifetime, length, SPI, sequence number (ESN
//! inference and the replay check before the ICV, RFC 4303 §3.4.3), ICV
//! (before decrypting, for CBC+HMAC), window update, trailer, and the SA's
//! traffic selectors (RFC 4301 §5.2), in tunnel or in transport mode.

use super::{Direction, Mode, SecurityAssociation};
use crate::error::EspError;
use crate::transform::constant_time_eq;
use crate::transport::tuple_of;
use core::ops::Range;
use plexgate_wire::esp::EspPacket;
use plexgate_wire::ip::{self, proto, FiveTuple, IpPacket};
use std::time::Instant;

/// Result of a successful open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Opened {
    /// The next header field: 4 (IPv4) or 41 (IPv6) in tunnel mode, the
    /// transport protocol in transport mode.
    pub next_header: u8,
    /// Where the inner packet lies in the caller's buffer (in tunnel mode
    /// trimmed to the inner IP length, so TFC padding is dropped).
    pub inner: Range<usize>,
    /// The full (64-bit with ESN) sequence number.
    pub seq: u64,
}

impl SecurityAssociation {
    /// Opens an ESP packet in place (`buf` starts with the SPI). On success the
    /// inner packet is at `buf[opened.inner]`. Checks, in order: lifetime,
    /// length, replay window (before the ICV), ICV, then updates the window,
    /// checks padding, next header, and the SA's traffic selectors: in tunnel
    /// mode against the inner packet, in transport mode against the packet
    /// the payload belongs to ([`SecurityAssociation::transport_packet`]).
    #[inline]
    pub fn open_in_place(&mut self, now: Instant, buf: &mut [u8]) -> Result<Opened, EspError> {
        self.open_impl::<false>(now, buf).map(|(o, _)| o)
    }

    /// [`SecurityAssociation::open_in_place`], also returning the inner packet's
    /// 5-tuple when the selector check parsed it (tunnel mode with selectors),
    /// so that the caller need not parse the packet again (e.g. to route it).
    /// The tuple is that of `buf[opened.inner]`; every check is the same.
    #[inline]
    pub fn open_in_place_tuple(
        &mut self,
        now: Instant,
        buf: &mut [u8],
    ) -> Result<(Opened, Option<FiveTuple>), EspError> {
        self.open_impl::<true>(now, buf)
    }

    /// Both of the above: with `TUPLE` false, the selector check of an IPv4
    /// inner packet works on a [`plexgate_wire::ip::TupleV4`] (same decision,
    /// see [`crate::selector::InboundSelectors::matches_v4`]) and no
    /// [`FiveTuple`] is built.
    #[inline(always)]
    fn open_impl<const TUPLE: bool>(
        &mut self,
        now: Instant,
        buf: &mut [u8],
    ) -> Result<(Opened, Option<FiveTuple>), EspError> {
        if self.params.direction != Direction::Inbound {
            return Err(EspError::WrongDirection);
        }
        self.check_alive(now)?;
        let (seq, ct_end) = self.authenticate_and_decrypt(buf)?;
        let h = self.header_len();
        let (next_header, inner_end) = strip_trailer(buf, h, ct_end)?;
        let (inner, parsed) = self.check_inner::<TUPLE>(buf, h..inner_end, next_header)?;
        self.account(inner.len());
        Ok((
            Opened {
                next_header,
                inner,
                seq,
            },
            parsed,
        ))
    }

    /// Length and SPI checks, the full sequence number (ESN) and the replay
    /// check, the ICV, decryption and the window update. Returns the sequence
    /// number and where the ciphertext ends (the ICV starts).
    #[inline(always)]
    fn authenticate_and_decrypt(&mut self, buf: &mut [u8]) -> Result<(u64, usize), EspError> {
        let t = self.params.transform;
        let h = self.header_len();
        let len = buf.len();
        let icv_len = t.icv_len();
        if len < h + 2 + icv_len {
            return Err(EspError::Truncated { len });
        }
        let ct_end = len - icv_len;
        if !t.is_aead() && !(ct_end - h).is_multiple_of(16) {
            return Err(EspError::Truncated { len });
        }
        // The length check above covers the 8-byte ESP header.
        let esp = EspPacket::new_unchecked(&*buf);
        if esp.spi() != self.params.spi {
            return Err(EspError::UnknownSpi(esp.spi()));
        }
        let seq_lo = esp.seq();
        let anti_replay = self.params.replay_window != 0;
        let seq = match (&self.window, self.params.esn) {
            (Some(w), true) => w
                .infer_esn(seq_lo)
                .ok_or(EspError::Replay(u64::from(seq_lo)))?,
            _ => u64::from(seq_lo),
        };
        //= https://www.rfc-editor.org/rfc/rfc4303#section-3.4.3
        //# If the received packet falls within the window and is not a
        //# duplicate, or if the packet is to the right of the window, then the
        //# receiver proceeds to ICV verification.
        if let (Some(w), true) = (&self.window, anti_replay) {
            if let Err(e) = w.check(seq) {
                self.stats.replay_drops += 1;
                return Err(e);
            }
        }
        let seq_hi = ((seq >> 32) as u32).to_be_bytes();
        let ok = if t.is_aead() {
            let mut iv = [0u8; 8];
            iv.copy_from_slice(&buf[8..16]);
            let aad = self.aad(&seq_hi, buf);
            self.cipher
                .aead_open(&iv, aad.as_slice(), &mut buf[h..])
                .is_some()
        } else {
            //= https://www.rfc-editor.org/rfc/rfc4303#section-3.4.4.1
            //# If a separate integrity algorithm is employed, then the receiver
            //# proceeds to integrity verification ... before decryption
            let icv = self.icv(&buf[..ct_end], &seq_hi);
            let good = icv.is_some_and(|i| constant_time_eq(&i, &buf[ct_end..]));
            if good {
                let mut iv = [0u8; 16];
                iv.copy_from_slice(&buf[8..24]);
                self.cipher.cbc_decrypt(&iv, &mut buf[h..ct_end]).is_some()
            } else {
                false
            }
        };
        if !ok {
            self.stats.icv_failures += 1;
            return Err(EspError::BadIcv);
        }
        //= https://www.rfc-editor.org/rfc/rfc4303#section-3.4.3
        //# The receive window is updated only if the integrity verification succeeds.
        if let Some(w) = &mut self.window {
            match w.update(seq) {
                Err(e) if anti_replay => return Err(e),
                _ => {}
            }
        }
        Ok((seq, ct_end))
    }

    /// The SA's traffic selectors on the decrypted data `buf[inner]`: in
    /// tunnel mode the inner IP packet (its version must match the next
    /// header; TFC padding after it is cut off), in transport mode the packet
    /// the payload belongs to. Returns the inner range and, with `TUPLE`, the
    /// tunnel-mode inner packet's 5-tuple if it was parsed.
    #[inline(always)]
    fn check_inner<const TUPLE: bool>(
        &self,
        buf: &[u8],
        mut inner: Range<usize>,
        next_header: u8,
    ) -> Result<(Range<usize>, Option<FiveTuple>), EspError> {
        let len = buf.len();
        if self.params.mode == Mode::Transport {
            if !self.selectors_in.is_any() {
                // RFC 4301 §5.2 makes no exception for transport mode: check
                // the SA's outer addresses, the next header as protocol and
                // the ports of the payload.
                let (src, dst) = self.params.outer_src_dst();
                let tuple = tuple_of(src, dst, next_header, &buf[inner.clone()]);
                if !self.selectors_in.matches(&tuple) {
                    return Err(EspError::SelectorMismatch);
                }
            }
            return Ok((inner, None));
        }
        let pkt = &buf[inner.clone()];
        let want = match next_header {
            proto::IPIP => 4,
            proto::IPV6 => 6,
            other => return Err(EspError::BadNextHeader(other)),
        };
        if !matches!(ip::version(pkt), Ok(v) if v == want) {
            return Err(EspError::BadNextHeader(next_header));
        }
        // Drop TFC padding after the inner packet (RFC 4303 §2.7).
        let ilen = ip::total_len(pkt).map_err(|_| EspError::Truncated { len })?;
        if ilen > pkt.len() {
            return Err(EspError::Truncated { len });
        }
        inner.end = inner.start + ilen;
        if self.selectors_in.is_any() {
            return Ok((inner, None));
        }
        //= https://www.rfc-editor.org/rfc/rfc4301#section-5.2
        //# 4. ... check that the packet ... matches the selectors of the SA
        let pkt = &buf[inner.clone()];
        if !TUPLE && want == 4 {
            match IpPacket::new_checked_v4(pkt).map(|v| v.tuple_v4()) {
                Ok(Some(tuple)) if self.selectors_in.matches_v4(tuple) => Ok((inner, None)),
                _ => Err(EspError::SelectorMismatch),
            }
        } else {
            match IpPacket::new_checked(pkt).map(|v| v.five_tuple()) {
                Ok(tuple) if self.selectors_in.matches(&tuple) => Ok((inner, Some(tuple))),
                _ => Err(EspError::SelectorMismatch),
            }
        }
    }
}

/// Checks the decrypted trailer of `buf[h..ct_end]`: padding 1, 2, 3, ..., pad
/// length, next header (RFC 4303 §2.4), and drops dummy packets (§2.6).
/// Returns the next header and where the inner data ends.
#[inline(always)]
fn strip_trailer(buf: &[u8], h: usize, ct_end: usize) -> Result<(u8, usize), EspError> {
    let next_header = buf[ct_end - 1];
    let pad_len = usize::from(buf[ct_end - 2]);
    let inner_end = (ct_end - 2)
        .checked_sub(pad_len)
        .filter(|&e| e >= h)
        .ok_or(EspError::BadPadding)?;
    if !buf[inner_end..ct_end - 2]
        .iter()
        .enumerate()
        .all(|(i, &b)| usize::from(b) == i + 1)
    {
        return Err(EspError::BadPadding);
    }
    //= https://www.rfc-editor.org/rfc/rfc4303#section-2.6
    //# A transmitter MUST be capable of generating dummy packets marked
    //# with this value in the next protocol field, and a receiver MUST be
    //# prepared to discard such packets
    if next_header == proto::NO_NEXT_HEADER {
        return Err(EspError::DummyPacket);
    }
    Ok((next_header, inner_end))
}
