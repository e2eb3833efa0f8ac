//! The ESP header (RFC 4303 §2): a 32-bit SPI and a 32-bit sequence number,
//! followed by the (encrypted) payload.
//!
//! This module only reads and writes the 8 clear-text header bytes. The IV, the
//! encrypted payload, the trailer (padding, pad length, next header) and the ICV
//! depend on the SA's transform and are handled by `plexgate-ipsec`.

use crate::{need, Result, WireError};

//= https://www.rfc-editor.org/rfc/rfc4303#section-2
//# 0                   1                   2                   3
//# 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//# +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+ ----
//# |               Security Parameters Index (SPI)                 | ^Int.
//# +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+ |Cov-
//# |                      Sequence Number                          | |ered
mod field {
    use core::ops::{Range, RangeFrom};
    pub(super) const SPI: Range<usize> = 0..4;
    pub(super) const SEQ: Range<usize> = 4..8;
    pub(super) const PAYLOAD: RangeFrom<usize> = 8..;
}

/// Length of the ESP header (SPI and sequence number).
pub const HEADER_LEN: usize = 8;

/// IP protocol number of ESP (RFC 4303 §2).
pub const IP_PROTOCOL: u8 = 50;

/// A checked view of an ESP packet (header and everything after it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EspPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> EspPacket<T> {
    /// Wraps a buffer without checking it; accessors may panic on short input.
    /// Use [`EspPacket::new_checked`] on untrusted bytes.
    pub const fn new_unchecked(buffer: T) -> Self {
        EspPacket { buffer }
    }

    /// Wraps a buffer after checking that it holds at least the 8-byte header
    /// and a non-zero SPI (RFC 4303 §2.1: SPI 0 is reserved for local use and
    /// MUST NOT be sent on the wire).
    pub fn new_checked(buffer: T) -> Result<Self> {
        let p = Self::new_unchecked(buffer);
        p.check_len()?;
        if p.spi() == 0 {
            return Err(WireError::ZeroSpi);
        }
        Ok(p)
    }

    /// Checks that the header fits in the buffer.
    pub fn check_len(&self) -> Result<()> {
        need(self.buffer.as_ref().len(), HEADER_LEN)
    }

    /// Returns the underlying buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// The Security Parameters Index.
    #[inline]
    pub fn spi(&self) -> u32 {
        let b = self.buffer.as_ref();
        u32::from_be_bytes([b[0], b[1], b[2], b[3]])
    }

    /// The low 32 bits of the sequence number, as sent.
    #[inline]
    pub fn seq(&self) -> u32 {
        let b = self.buffer.as_ref();
        u32::from_be_bytes([b[4], b[5], b[6], b[7]])
    }

    /// Everything after the header: IV, ciphertext, ICV.
    #[inline]
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[field::PAYLOAD]
    }

    /// The header bytes, as covered by the ICV.
    #[inline]
    pub fn header(&self) -> &[u8] {
        &self.buffer.as_ref()[..HEADER_LEN]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> EspPacket<T> {
    /// Sets the SPI.
    #[inline]
    pub fn set_spi(&mut self, spi: u32) {
        self.buffer.as_mut()[field::SPI].copy_from_slice(&spi.to_be_bytes());
    }

    /// Sets the low 32 bits of the sequence number.
    #[inline]
    pub fn set_seq(&mut self, seq: u32) {
        self.buffer.as_mut()[field::SEQ].copy_from_slice(&seq.to_be_bytes());
    }

    /// Everything after the header, mutable.
    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        &mut self.buffer.as_mut()[field::PAYLOAD]
    }
}

/// The clear-text ESP header fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct EspRepr {
    /// Security Parameters Index (non-zero).
    pub spi: u32,
    /// Low 32 bits of the sequence number.
    pub seq: u32,
}

impl EspRepr {
    /// Reads the header of a checked packet.
    pub fn parse<T: AsRef<[u8]>>(packet: &EspPacket<T>) -> Result<Self> {
        packet.check_len()?;
        if packet.spi() == 0 {
            return Err(WireError::ZeroSpi);
        }
        Ok(EspRepr {
            spi: packet.spi(),
            seq: packet.seq(),
        })
    }

    /// Length of the emitted header.
    pub const fn header_len(&self) -> usize {
        HEADER_LEN
    }

    /// Writes the 8-byte header at the start of `buf`.
    pub fn emit(&self, buf: &mut [u8]) -> Result<()> {
        let have = buf.len();
        let out = buf.get_mut(..HEADER_LEN).ok_or(WireError::BufferTooSmall {
            needed: HEADER_LEN,
            have,
        })?;
        out[field::SPI].copy_from_slice(&self.spi.to_be_bytes());
        out[field::SEQ].copy_from_slice(&self.seq.to_be_bytes());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// UDP payload of frame 5 of `/work/shared/captures/gcm128-x25519/exchange.pcap`
    /// (strongSwan 5.9.8, ESP in UDP/4500, AES-GCM-128, first ping from the client).
    const CAPTURED: &str = "634a93ee00000001607747c91f6b88f93dd41b0e26b9210bc94c79a63922de70\
        ff41bba59c9ab93ad59b1f1ad4e2395bcca71dbb4330fd44ff5ed6cbb49c0df4b59acd347c6a13c354\
        4196f2cede51ad387a8a4c166f9ea08551d4d19df2ff342f970a7d75e2ee5fdbb47a0fe72493040b3c\
        8ba987217d8c";

    #[test]
    fn deconstruct_captured() {
        let bytes = hex::decode(CAPTURED).unwrap();
        let p = EspPacket::new_checked(&bytes[..]).unwrap();
        assert_eq!(p.spi(), 0x634a_93ee);
        assert_eq!(p.seq(), 1);
        assert_eq!(p.payload().len(), 120 - 8);
        assert_eq!(
            &p.payload()[..8],
            &hex::decode("607747c91f6b88f9").unwrap()[..]
        );
        assert_eq!(
            EspRepr::parse(&p).unwrap(),
            EspRepr {
                spi: 0x634a_93ee,
                seq: 1
            }
        );
    }

    #[test]
    fn emit_round_trip() {
        let bytes = hex::decode(CAPTURED).unwrap();
        let mut out = bytes.clone();
        out[..8].fill(0);
        EspRepr {
            spi: 0x634a_93ee,
            seq: 1,
        }
        .emit(&mut out)
        .unwrap();
        assert_eq!(out, bytes);
        let mut p = EspPacket::new_unchecked(&mut out[..]);
        p.set_seq(0xdead_beef);
        p.set_spi(7);
        assert_eq!((p.spi(), p.seq()), (7, 0xdead_beef));
    }

    #[test]
    fn truncated_and_zero_spi() {
        assert_eq!(
            EspPacket::new_checked(&[1u8, 2, 3, 4, 0, 0, 0][..]),
            Err(WireError::Truncated { needed: 8, have: 7 })
        );
        assert_eq!(
            EspPacket::new_checked(&[0u8; 8][..]),
            Err(WireError::ZeroSpi)
        );
        let mut small = [0u8; 7];
        assert!(matches!(
            EspRepr { spi: 1, seq: 1 }.emit(&mut small),
            Err(WireError::BufferTooSmall { .. })
        ));
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(data in proptest::collection::vec(proptest::num::u8::ANY, 0..64)) {
            if let Ok(p) = EspPacket::new_checked(&data[..]) {
                let r = EspRepr::parse(&p).unwrap();
                let mut out = [0u8; 8];
                r.emit(&mut out).unwrap();
                proptest::prop_assert_eq!(&out[..], &data[..8]);
                let _ = p.payload();
            }
        }
    }
}
