//! IPv4 and IPv6: one checked view, [`IpPacket`] (`packet.rs`), and what is
//! read through it: the 5-tuple (addresses, protocol, ports) that the SPD (RFC
//! 4301 §4.4.1) and the connection table match on ([`FiveTuple`], and the
//! compact IPv4 [`TupleV4`] of the hot path). The free functions here are thin
//! wrappers kept for callers that have not moved onto the view yet, plus
//! [`write_header`] for rebuilding a packet. Nothing allocates.
//!
//! Ports follow RFC 4301 §4.4.1.1: TCP, UDP, SCTP and UDP-Lite ports are read
//! from the transport header; for ICMP and ICMPv6 the message type and code form
//! one 16-bit value (type in the high byte), reported as both ports. A non-first
//! fragment carries no ports: they are OPAQUE (`None`).

use crate::{need, Result, WireError};
use core::net::{IpAddr, Ipv4Addr};

mod packet;
#[cfg(test)]
mod tests;

pub use packet::IpPacket;

/// IP protocol numbers used here.
pub mod proto {
    /// ICMP.
    pub const ICMP: u8 = 1;
    /// IP-in-IP (IPv4 inner packet in ESP tunnel mode).
    pub const IPIP: u8 = 4;
    /// TCP.
    pub const TCP: u8 = 6;
    /// UDP.
    pub const UDP: u8 = 17;
    /// IPv6 inner packet.
    pub const IPV6: u8 = 41;
    /// GRE.
    pub const GRE: u8 = 47;
    /// ESP.
    pub const ESP: u8 = 50;
    /// AH.
    pub const AH: u8 = 51;
    /// ICMPv6.
    pub const ICMPV6: u8 = 58;
    /// "No next header": the ESP dummy packet (RFC 4303 §2.6).
    pub const NO_NEXT_HEADER: u8 = 59;
    /// SCTP.
    pub const SCTP: u8 = 132;
    /// UDP-Lite.
    pub const UDPLITE: u8 = 136;
}

/// The IP version nibble of the first byte, if it is 4 or 6 (the first check
/// of [`IpPacket::new_checked`], on its own).
#[inline]
pub fn version(packet: &[u8]) -> Result<u8> {
    match packet.first().map(|b| b >> 4) {
        Some(v @ (4 | 6)) => Ok(v),
        Some(_) => Err(WireError::BadIp("version is neither 4 nor 6")),
        None => Err(WireError::Truncated { needed: 1, have: 0 }),
    }
}

/// The length the IP header announces for the whole packet (IPv4 total length,
/// IPv6 40 + payload length), read without the other checks of
/// [`IpPacket::new_checked`] (the buffer may be shorter than announced: the
/// caller compares). [`IpPacket::total_len`] on a checked view.
#[inline]
pub fn total_len(packet: &[u8]) -> Result<usize> {
    match version(packet)? {
        4 => {
            need(packet.len(), 20)?;
            Ok(usize::from(u16::from_be_bytes([packet[2], packet[3]])))
        }
        _ => {
            need(packet.len(), 40)?;
            Ok(40 + usize::from(u16::from_be_bytes([packet[4], packet[5]])))
        }
    }
}

/// Addresses, protocol and ports of a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FiveTuple {
    /// Source address.
    pub src: IpAddr,
    /// Destination address.
    pub dst: IpAddr,
    /// Upper-layer protocol (after IPv6 extension headers).
    pub protocol: u8,
    /// Source port, ICMP type/code, or `None` when OPAQUE (non-first fragment)
    /// or for a protocol without ports.
    pub src_port: Option<u16>,
    /// Destination port, ICMP type/code, or `None` (see `src_port`).
    pub dst_port: Option<u16>,
}

impl FiveTuple {
    /// Parses an IPv4 or IPv6 packet. The packet must be at least as long as
    /// its IP header says; trailing bytes (link padding) are ignored. The same
    /// as [`IpPacket::new_checked`] then [`IpPacket::five_tuple`].
    #[inline]
    pub fn parse(packet: &[u8]) -> Result<Self> {
        IpPacket::new_checked(packet).map(|v| v.five_tuple())
    }
}

/// The 5-tuple of an IPv4 packet as integers (addresses as host-order `u32`):
/// small, aligned and `Copy`, so that the per-packet checks can keep it in
/// registers instead of moving two 17-byte [`IpAddr`]s through memory.
/// [`TupleV4::parse`] accepts and rejects exactly what [`FiveTuple::parse`]
/// does on an IPv4 packet, and [`TupleV4::to_five`] gives the same tuple.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TupleV4 {
    /// Source address.
    pub src: u32,
    /// Destination address.
    pub dst: u32,
    /// Protocol.
    pub protocol: u8,
    /// Source port, ICMP type/code, or `None` (see [`FiveTuple::src_port`]).
    pub src_port: Option<u16>,
    /// Destination port, ICMP type/code, or `None`.
    pub dst_port: Option<u16>,
}

impl TupleV4 {
    /// [`FiveTuple::parse`] for an IPv4 packet; an error for anything else
    /// (IPv6 included: use [`FiveTuple::parse`] for those). The same as
    /// [`IpPacket::new_checked_v4`] then [`IpPacket::tuple_v4`].
    #[inline(always)]
    pub fn parse(p: &[u8]) -> Result<Self> {
        IpPacket::new_checked_v4(p).map(|v| v.v4_tuple())
    }

    /// The same tuple as a [`FiveTuple`].
    #[inline]
    pub fn to_five(self) -> FiveTuple {
        FiveTuple {
            src: IpAddr::V4(Ipv4Addr::from(self.src)),
            dst: IpAddr::V4(Ipv4Addr::from(self.dst)),
            protocol: self.protocol,
            src_port: self.src_port,
            dst_port: self.dst_port,
        }
    }
}

/// The ports of a transport header as the SPD sees them (RFC 4301 §4.4.1.1):
/// `(source, destination)` for TCP, UDP, SCTP and UDP-Lite, the ICMP type and
/// code as one 16-bit value for both with ICMP and ICMPv6, `None` for other
/// protocols or a header too short to hold them. `l4` starts at the transport
/// header (an ESP transport-mode payload, or the bytes after an IP header).
#[inline(always)]
pub fn transport_ports(protocol: u8, l4: &[u8]) -> (Option<u16>, Option<u16>) {
    ports(protocol, l4)
}

/// Writes a minimal IP header for a payload of `payload_len` bytes of
/// `protocol` from `src` to `dst` at the start of `out` and returns its length
/// (20 for IPv4, with its checksum; 40 for IPv6). TTL / hop limit 64, no
/// options, DSCP 0, IPv4 identification 0 with DF set. For rebuilding the IP
/// packet around an ESP transport-mode payload (RFC 4301 §4.1).
pub fn write_header(
    src: IpAddr,
    dst: IpAddr,
    protocol: u8,
    payload_len: usize,
    out: &mut [u8],
) -> Result<usize> {
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            let total = u16::try_from(20 + payload_len)
                .map_err(|_| WireError::BadIp("IPv4 packet longer than 65535 bytes"))?;
            let have = out.len();
            let h = out
                .get_mut(..20)
                .ok_or(WireError::BufferTooSmall { needed: 20, have })?;
            h.copy_from_slice(&[
                0x45, 0, 0, 0, 0, 0, 0x40, 0, 64, protocol, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
            ]);
            h[2..4].copy_from_slice(&total.to_be_bytes());
            h[12..16].copy_from_slice(&s.octets());
            h[16..20].copy_from_slice(&d.octets());
            let c = crate::ones_complement_checksum(h);
            h[10..12].copy_from_slice(&c.to_be_bytes());
            Ok(20)
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            let plen = u16::try_from(payload_len)
                .map_err(|_| WireError::BadIp("IPv6 payload longer than 65535 bytes"))?;
            let have = out.len();
            let h = out
                .get_mut(..40)
                .ok_or(WireError::BufferTooSmall { needed: 40, have })?;
            h[..4].copy_from_slice(&[0x60, 0, 0, 0]);
            h[4..6].copy_from_slice(&plen.to_be_bytes());
            h[6] = protocol;
            h[7] = 64;
            h[8..24].copy_from_slice(&s.octets());
            h[24..40].copy_from_slice(&d.octets());
            Ok(40)
        }
        _ => Err(WireError::BadIp(
            "source and destination of different families",
        )),
    }
}

#[inline(always)]
pub(crate) fn ports(protocol: u8, l4: &[u8]) -> (Option<u16>, Option<u16>) {
    match (protocol, l4) {
        (proto::TCP | proto::UDP | proto::SCTP | proto::UDPLITE, [a, b, c, d, ..]) => (
            Some(u16::from_be_bytes([*a, *b])),
            Some(u16::from_be_bytes([*c, *d])),
        ),
        (proto::ICMP | proto::ICMPV6, [t, c, ..]) => {
            let tc = u16::from_be_bytes([*t, *c]);
            (Some(tc), Some(tc))
        }
        _ => (None, None),
    }
}
