//! GRE between gateway and targets (RFC 2784 with the key extension of RFC 2890).
//!
//! Every GRE packet plexgate sends carries a key ([`GreKey`]): the low 31 bits
//! name the sending cluster member ([`NodeId`]), the top bit says that the inner
//! packet arrived at the gateway under IPsec (so the target sends the replies
//! of that connection back through the gateway). Header parsing and writing
//! use the checked `GrePacket` view and `GreRepr` of `plexgate-wire`.

use crate::NodeId;
use plexgate_wire::gre::{GrePacket, GreRepr};
use plexgate_wire::WireError;
use thiserror::Error;

/// Length of the GRE header plexgate writes: base header (4) + key (4).
pub const GRE_HEADER_LEN: usize = 8;

/// EtherType carried in the GRE protocol field for IPv4 payloads.
pub const ETHERTYPE_IPV4: u16 = plexgate_wire::gre::PROTO_IPV4;
/// EtherType carried in the GRE protocol field for IPv6 payloads.
pub const ETHERTYPE_IPV6: u16 = plexgate_wire::gre::PROTO_IPV6;

/// The 32-bit GRE key as plexgate uses it: sender id and IPsec flag.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct GreKey {
    /// Cluster member that sent the packet.
    pub sender: NodeId,
    /// The connection is protected by IPsec at the gateway.
    pub ipsec: bool,
}

impl GreKey {
    /// The key's wire value.
    pub fn to_u32(self) -> u32 {
        (self.sender.0 & NodeId::MAX) | if self.ipsec { 0x8000_0000 } else { 0 }
    }
    /// Split a wire key.
    pub fn from_u32(v: u32) -> GreKey {
        GreKey {
            sender: NodeId(v & NodeId::MAX),
            ipsec: v & 0x8000_0000 != 0,
        }
    }
}

/// Why a GRE packet was refused.
#[derive(Debug, Error, Clone, Copy, PartialEq, Eq)]
pub enum GreError {
    /// Shorter than its header.
    #[error("GRE packet truncated")]
    Truncated,
    /// Version other than 0, or reserved bits set (RFC 2784 section 2.5).
    #[error("unsupported GRE version or reserved bits set")]
    Unsupported,
    /// No key present: plexgate needs it to know the sender.
    #[error("GRE packet without key")]
    NoKey,
    /// The protocol type is neither IPv4 nor IPv6, or does not match the payload.
    #[error("GRE payload is not the IP version the protocol type announces")]
    BadProtocol,
    /// The GRE checksum (when present) does not verify.
    #[error("GRE checksum mismatch")]
    BadChecksum,
    /// The output buffer cannot hold header plus payload.
    #[error("output buffer too small: need {0} bytes")]
    BufferTooSmall(usize),
}

/// Write the 8-byte header for `inner` (IPv4 or IPv6, chosen by its version
/// nibble) with `key` into `out[..8]`; `out[8..8 + inner_len]` is expected to
/// hold the inner packet already (in-place encapsulation with headroom).
#[inline]
pub fn write_header(
    key: GreKey,
    inner_first_byte: u8,
    out: &mut [u8],
    inner_len: usize,
) -> Result<usize, GreError> {
    let protocol = match inner_first_byte >> 4 {
        4 => ETHERTYPE_IPV4,
        6 => ETHERTYPE_IPV6,
        _ => return Err(GreError::BadProtocol),
    };
    //= https://www.rfc-editor.org/rfc/rfc2890#section-2
    //# Key Present (bit 2)
    //#
    //# If the Key Present bit is set to 1, then it indicates that the Key
    //# field is present in the GRE header.
    let repr = GreRepr {
        protocol,
        key: Some(key.to_u32()),
        seq: None,
        checksum: false,
    };
    repr.emit(out, inner_len).map_err(|e| match e {
        WireError::BufferTooSmall { needed, .. } => GreError::BufferTooSmall(needed),
        _ => GreError::BadProtocol,
    })
}

/// Copy `inner` behind a GRE header with `key` into `out`; returns the number
/// of bytes written (`8 + inner.len()`).
pub fn encapsulate(key: GreKey, inner: &[u8], out: &mut [u8]) -> Result<usize, GreError> {
    let n = GRE_HEADER_LEN + inner.len();
    let first = *inner.first().ok_or(GreError::BadProtocol)?;
    let dst = out
        .get_mut(GRE_HEADER_LEN..n)
        .ok_or(GreError::BufferTooSmall(n))?;
    dst.copy_from_slice(inner);
    write_header(key, first, out, inner.len())
}

/// Read a GRE packet (the IP payload of protocol 47) with the checked view of
/// `plexgate-wire`: returns the key and the offset where the inner IP packet
/// starts. A checksum, if present, must verify; a sequence number is skipped.
pub fn decapsulate(gre: &[u8]) -> Result<(GreKey, usize), GreError> {
    //= https://www.rfc-editor.org/rfc/rfc2784#section-2.5.1
    //# A receiver MUST discard a packet where any of bits 1-5 are non-zero,
    //# unless that receiver implements RFC 1701.
    let p = GrePacket::new_checked(gre).map_err(|e| match e {
        WireError::Truncated { .. } => GreError::Truncated,
        _ => GreError::Unsupported,
    })?;
    if !p.verify_checksum() {
        return Err(GreError::BadChecksum);
    }
    let key = p.key().ok_or(GreError::NoKey)?;
    let off = p.header_len();
    let version = gre.get(off).ok_or(GreError::Truncated)? >> 4;
    match (p.protocol(), version) {
        (ETHERTYPE_IPV4, 4) | (ETHERTYPE_IPV6, 6) => Ok((GreKey::from_u32(key), off)),
        _ => Err(GreError::BadProtocol),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_layout() {
        let k = GreKey {
            sender: NodeId(7),
            ipsec: true,
        };
        assert_eq!(k.to_u32(), 0x8000_0007);
        assert_eq!(GreKey::from_u32(0x8000_0007), k);
        assert!(!GreKey::from_u32(7).ipsec);
    }

    #[test]
    fn encapsulates_to_standard_header() {
        let inner = [0x45u8, 0, 0, 20];
        let mut out = [0u8; 12];
        let k = GreKey {
            sender: NodeId(0x0102_0304),
            ipsec: false,
        };
        assert_eq!(encapsulate(k, &inner, &mut out), Ok(12));
        // RFC 2890 header: K bit, version 0, protocol 0x0800, key.
        assert_eq!(hex::encode(&out[..8]), "2000080001020304");
        assert_eq!(decapsulate(&out), Ok((k, 8)));
        assert_eq!(
            encapsulate(k, &inner, &mut out[..11]),
            Err(GreError::BufferTooSmall(12))
        );
    }

    #[test]
    fn reads_checksum_and_sequence_variants() {
        // K and S set: key, sequence, then an IPv6 payload.
        let p = hex::decode("300086dd00000009000000016000").unwrap();
        let (k, off) = decapsulate(&p).unwrap();
        assert_eq!((k.sender, off), (NodeId(9), 12));
        assert_eq!(decapsulate(&p[..10]), Err(GreError::Truncated));
        // C and K with a checksum over header and payload (one's complement of
        // 0xa000 + 0x86dd + 0x0009 + 0x6000 = 0x1_86e6 -> 0x86e7 -> 0x7918).
        let p = hex::decode("a00086dd79180000000000096000").unwrap();
        assert_eq!(
            decapsulate(&p).map(|(k, o)| (k.sender, o)),
            Ok((NodeId(9), 12))
        );
        let mut bad = p.clone();
        bad[13] = 1;
        assert_eq!(decapsulate(&bad), Err(GreError::BadChecksum));
    }

    #[test]
    fn refuses_bad_headers() {
        assert_eq!(
            decapsulate(&hex::decode("0000080045").unwrap()),
            Err(GreError::NoKey)
        );
        assert_eq!(
            decapsulate(&hex::decode("2001080000000001").unwrap()),
            Err(GreError::Unsupported)
        );
        // Protocol IPv4 but an IPv6 payload.
        assert_eq!(
            decapsulate(&hex::decode("200008000000000160").unwrap()),
            Err(GreError::BadProtocol)
        );
    }
}
