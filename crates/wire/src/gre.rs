//! GRE (RFC 2784) with the key and sequence number extensions (RFC 2890): how
//! the routing gateway carries whole IP packets to and from a target stack.
//!
//! Only version 0 is accepted. The routing (R), strict source route (s) and
//! recursion control bits of RFC 1701 are rejected as RFC 2784 §2.5 requires of
//! an implementation without RFC 1701; bits 6-12 are ignored on receipt and sent
//! as zero.

use crate::{checksum::ones_complement_checksum, need, Result, WireError};

//= https://www.rfc-editor.org/rfc/rfc2890#section-2
//# 0                   1                   2                   3
//# 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//# +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//# |C| |K|S| Reserved0       | Ver |         Protocol Type         |
//# +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//# |      Checksum (optional)      |       Reserved1 (Optional)    |
//# +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//# |                         Key (optional)                        |
//# +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//# |                 Sequence Number (Optional)                    |
//# +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+

/// IP protocol number of GRE.
pub const IP_PROTOCOL: u8 = 47;
/// Protocol type (EtherType) of an IPv4 payload.
pub const PROTO_IPV4: u16 = 0x0800;
/// Protocol type (EtherType) of an IPv6 payload.
pub const PROTO_IPV6: u16 = 0x86dd;

const FLAG_C: u16 = 0x8000;
const FLAG_K: u16 = 0x2000;
const FLAG_S: u16 = 0x1000;
//= https://www.rfc-editor.org/rfc/rfc2784#section-2.5
//# A receiver MUST discard a packet where any of bits 1-5 are non-zero,
//# unless that receiver implements RFC 1701.
// Bits 2 (K) and 3 (S) are given a meaning by RFC 2890, so bits 1, 4 and 5 remain.
const RESERVED_MUST_BE_ZERO: u16 = 0x4000 | 0x0800 | 0x0400;
const VERSION_MASK: u16 = 0x0007;

/// Length of the fixed part of the header (flags, version, protocol).
pub const BASE_HEADER_LEN: usize = 4;

/// A checked view of a GRE packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GrePacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> GrePacket<T> {
    /// Wraps a buffer without checking; prefer [`GrePacket::new_checked`].
    pub const fn new_unchecked(buffer: T) -> Self {
        GrePacket { buffer }
    }

    /// Wraps a buffer after checking version 0, the reserved bits and that the
    /// optional fields announced by the flags are present. Does not verify the
    /// checksum (see [`GrePacket::verify_checksum`]).
    pub fn new_checked(buffer: T) -> Result<Self> {
        let p = Self::new_unchecked(buffer);
        p.check()?;
        Ok(p)
    }

    fn check(&self) -> Result<()> {
        let b = self.buffer.as_ref();
        need(b.len(), BASE_HEADER_LEN)?;
        let fv = self.flags_version();
        let version = (fv & VERSION_MASK) as u8;
        if version != 0 {
            return Err(WireError::GreVersion(version));
        }
        if fv & RESERVED_MUST_BE_ZERO != 0 {
            return Err(WireError::GreReserved(fv & RESERVED_MUST_BE_ZERO));
        }
        need(b.len(), self.header_len())
    }

    #[inline]
    fn flags_version(&self) -> u16 {
        let b = self.buffer.as_ref();
        u16::from_be_bytes([b[0], b[1]])
    }

    /// The checksum-present bit (C).
    #[inline]
    pub fn has_checksum(&self) -> bool {
        self.flags_version() & FLAG_C != 0
    }

    /// The key-present bit (K).
    #[inline]
    pub fn has_key(&self) -> bool {
        self.flags_version() & FLAG_K != 0
    }

    /// The sequence-number-present bit (S).
    #[inline]
    pub fn has_seq(&self) -> bool {
        self.flags_version() & FLAG_S != 0
    }

    /// The protocol type (EtherType) of the payload.
    #[inline]
    pub fn protocol(&self) -> u16 {
        let b = self.buffer.as_ref();
        u16::from_be_bytes([b[2], b[3]])
    }

    /// Header length given the flags: 4, plus 4 for each of C, K, S.
    #[inline]
    pub fn header_len(&self) -> usize {
        BASE_HEADER_LEN
            + 4 * (usize::from(self.has_checksum())
                + usize::from(self.has_key())
                + usize::from(self.has_seq()))
    }

    #[inline]
    fn word_at(&self, off: usize) -> u32 {
        let b = self.buffer.as_ref();
        u32::from_be_bytes([b[off], b[off + 1], b[off + 2], b[off + 3]])
    }

    /// The checksum field, if present.
    pub fn checksum(&self) -> Option<u16> {
        self.has_checksum()
            .then(|| (self.word_at(BASE_HEADER_LEN) >> 16) as u16)
    }

    /// The key (RFC 2890 §2.1), if present.
    pub fn key(&self) -> Option<u32> {
        let off = BASE_HEADER_LEN + 4 * usize::from(self.has_checksum());
        self.has_key().then(|| self.word_at(off))
    }

    /// The sequence number (RFC 2890 §2.2), if present.
    pub fn seq(&self) -> Option<u32> {
        let off =
            BASE_HEADER_LEN + 4 * (usize::from(self.has_checksum()) + usize::from(self.has_key()));
        self.has_seq().then(|| self.word_at(off))
    }

    /// The encapsulated packet.
    #[inline]
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[self.header_len()..]
    }

    /// Verifies the checksum if one is present (true when absent).
    //= https://www.rfc-editor.org/rfc/rfc2784#section-2.5
    //# the IP (one's complement) checksum sum of the all the 16 bit words in
    //# the GRE header and the payload packet
    pub fn verify_checksum(&self) -> bool {
        !self.has_checksum() || ones_complement_checksum(self.buffer.as_ref()) == 0
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> GrePacket<T> {
    /// The encapsulated packet, mutable.
    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let h = self.header_len();
        &mut self.buffer.as_mut()[h..]
    }
}

/// The GRE header fields plexgate uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct GreRepr {
    /// Protocol type of the payload ([`PROTO_IPV4`] or [`PROTO_IPV6`]).
    pub protocol: u16,
    /// Key (RFC 2890 §2.1); plexgate may use it to name the sending gateway.
    pub key: Option<u32>,
    /// Sequence number (RFC 2890 §2.2).
    pub seq: Option<u32>,
    /// Whether a checksum is present (RFC 2784 §2.5).
    pub checksum: bool,
}

impl GreRepr {
    /// Parses a checked packet and verifies its checksum if present.
    pub fn parse<T: AsRef<[u8]>>(packet: &GrePacket<T>) -> Result<Self> {
        packet.check()?;
        if !packet.verify_checksum() {
            return Err(WireError::GreChecksum);
        }
        Ok(GreRepr {
            protocol: packet.protocol(),
            key: packet.key(),
            seq: packet.seq(),
            checksum: packet.has_checksum(),
        })
    }

    /// Length of the header this repr emits.
    pub const fn header_len(&self) -> usize {
        BASE_HEADER_LEN
            + 4 * (self.checksum as usize
                + self.key.is_some() as usize
                + self.seq.is_some() as usize)
    }

    /// Writes the header into `buf[..header_len()]`, where `buf[header_len()..
    /// header_len() + payload_len]` already holds the payload (so a packet can be
    /// encapsulated in place, in a buffer with headroom). Computes the checksum
    /// over header and payload when `checksum` is set. Returns the total length.
    #[inline]
    pub fn emit(&self, buf: &mut [u8], payload_len: usize) -> Result<usize> {
        let h = self.header_len();
        let total = h + payload_len;
        let have = buf.len();
        let buf = buf.get_mut(..total).ok_or(WireError::BufferTooSmall {
            needed: total,
            have,
        })?;
        let mut fv = 0u16;
        if self.checksum {
            fv |= FLAG_C;
        }
        if self.key.is_some() {
            fv |= FLAG_K;
        }
        if self.seq.is_some() {
            fv |= FLAG_S;
        }
        buf[0..2].copy_from_slice(&fv.to_be_bytes());
        buf[2..4].copy_from_slice(&self.protocol.to_be_bytes());
        let mut off = BASE_HEADER_LEN;
        if self.checksum {
            // Checksum and Reserved1 are zero while the checksum is computed.
            buf[off..off + 4].fill(0);
            off += 4;
        }
        if let Some(k) = self.key {
            buf[off..off + 4].copy_from_slice(&k.to_be_bytes());
            off += 4;
        }
        if let Some(s) = self.seq {
            buf[off..off + 4].copy_from_slice(&s.to_be_bytes());
        }
        if self.checksum {
            let c = ones_complement_checksum(buf);
            buf[4..6].copy_from_slice(&c.to_be_bytes());
        }
        Ok(total)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An ICMP echo request 10.0.0.1 -> 10.0.0.2 (inner packet for the tests).
    const INNER: &str = "4500001c00010000400166de0a0000010a0000020800f7ff00000000";

    /// GRE with C, K and S set (RFC 2890 layout): flags b000, IPv4, checksum
    /// 0x47ce over header and payload, key 42, seq 7, then INNER. Built by hand;
    /// tshark 4.0.17 dissects it as "Checksum: 0x47ce [correct]", Key 0x2a, Seq 7.
    const GRE_CKS: &str = "b000080047ce00000000002a00000007\
        4500001c00010000400166de0a0000010a0000020800f7ff00000000";

    #[test]
    fn deconstruct_full_header() {
        let bytes = hex::decode(GRE_CKS).unwrap();
        let p = GrePacket::new_checked(&bytes[..]).unwrap();
        assert!(p.has_checksum() && p.has_key() && p.has_seq());
        assert_eq!(p.protocol(), PROTO_IPV4);
        assert_eq!(p.header_len(), 16);
        assert_eq!(p.key(), Some(42));
        assert_eq!(p.seq(), Some(7));
        assert_eq!(p.checksum(), Some(0x47ce));
        assert!(p.verify_checksum());
        assert_eq!(p.payload(), &hex::decode(INNER).unwrap()[..]);
        assert_eq!(
            GreRepr::parse(&p).unwrap(),
            GreRepr {
                protocol: PROTO_IPV4,
                key: Some(42),
                seq: Some(7),
                checksum: true
            }
        );
    }

    #[test]
    fn emit_in_place_matches_reference() {
        let inner = hex::decode(INNER).unwrap();
        let repr = GreRepr {
            protocol: PROTO_IPV4,
            key: Some(42),
            seq: Some(7),
            checksum: true,
        };
        let mut buf = vec![0u8; 64];
        buf[repr.header_len()..repr.header_len() + inner.len()].copy_from_slice(&inner);
        let n = repr.emit(&mut buf, inner.len()).unwrap();
        assert_eq!(&buf[..n], &hex::decode(GRE_CKS).unwrap()[..]);
    }

    #[test]
    fn minimal_header_round_trip() {
        let inner = hex::decode(INNER).unwrap();
        for (key, seq, checksum) in [
            (None, None, false),
            (Some(1), None, false),
            (None, Some(9), true),
            (Some(0xffff_ffff), Some(0), false),
        ] {
            let repr = GreRepr {
                protocol: PROTO_IPV6,
                key,
                seq,
                checksum,
            };
            let mut buf = vec![0u8; repr.header_len() + inner.len()];
            buf[repr.header_len()..].copy_from_slice(&inner);
            let n = repr.emit(&mut buf, inner.len()).unwrap();
            let p = GrePacket::new_checked(&buf[..n]).unwrap();
            assert_eq!(GreRepr::parse(&p).unwrap(), repr);
            assert_eq!(p.payload(), &inner[..]);
        }
        let plain = GreRepr {
            protocol: PROTO_IPV4,
            key: None,
            seq: None,
            checksum: false,
        };
        let mut b = [0u8; 4];
        plain.emit(&mut b, 0).unwrap();
        assert_eq!(b, [0, 0, 0x08, 0x00]);
    }

    #[test]
    fn rejects_bad_headers() {
        let good = hex::decode(GRE_CKS).unwrap();
        let mut v1 = good.clone();
        v1[1] |= 1;
        assert_eq!(
            GrePacket::new_checked(&v1[..]),
            Err(WireError::GreVersion(1))
        );
        for bit in [0x40u8, 0x08, 0x04] {
            let mut r = good.clone();
            r[0] |= bit;
            assert!(matches!(
                GrePacket::new_checked(&r[..]),
                Err(WireError::GreReserved(_))
            ));
        }
        // Bits 6-12 are ignored on receipt.
        let mut ign = good.clone();
        ign[0] |= 0x02;
        ign[1] |= 0x80;
        assert!(GrePacket::new_checked(&ign[..]).is_ok());
        // Truncated: the flags announce 16 header bytes.
        assert!(matches!(
            GrePacket::new_checked(&good[..15]),
            Err(WireError::Truncated {
                needed: 16,
                have: 15
            })
        ));
        assert!(matches!(
            GrePacket::new_checked(&good[..3]),
            Err(WireError::Truncated { .. })
        ));
        // A flipped payload bit breaks the checksum.
        let mut bad = good.clone();
        bad[30] ^= 1;
        let p = GrePacket::new_checked(&bad[..]).unwrap();
        assert_eq!(GreRepr::parse(&p), Err(WireError::GreChecksum));
        // Emit into too small a buffer.
        let repr = GreRepr::parse(&GrePacket::new_checked(&good[..]).unwrap()).unwrap();
        assert!(repr.emit(&mut [0u8; 20], 10).is_err());
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(data in proptest::collection::vec(proptest::num::u8::ANY, 0..48)) {
            if let Ok(p) = GrePacket::new_checked(&data[..]) {
                let _ = (p.key(), p.seq(), p.checksum(), p.payload(), p.verify_checksum());
                if let Ok(r) = GreRepr::parse(&p) {
                    let mut out = data.clone();
                    let n = r.emit(&mut out, p.payload().len()).unwrap();
                    proptest::prop_assert_eq!(n, data.len());
                    let q = GrePacket::new_checked(&out[..]).unwrap();
                    proptest::prop_assert_eq!(GreRepr::parse(&q).unwrap(), r);
                }
            }
        }
    }
}
