//! Small IPv4/IPv6 helpers that never allocate: the version, the total length
//! and the 5-tuple (addresses, protocol, ports) that the SPD (RFC 4301 §4.4.1)
//! and the connection table match on.
//!
//! Ports follow RFC 4301 §4.4.1.1: TCP, UDP, SCTP and UDP-Lite ports are read
//! from the transport header; for ICMP and ICMPv6 the message type and code form
//! one 16-bit value (type in the high byte), reported as both ports. A non-first
//! fragment carries no ports: they are OPAQUE (`None`).

use crate::{need, Result, WireError};
use core::net::{IpAddr, Ipv4Addr, Ipv6Addr};

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

/// The IP version nibble of the first byte, if it is 4 or 6.
#[inline]
pub fn version(packet: &[u8]) -> Result<u8> {
    match packet.first().map(|b| b >> 4) {
        Some(v @ (4 | 6)) => Ok(v),
        Some(_) => Err(WireError::BadIp("version is neither 4 nor 6")),
        None => Err(WireError::Truncated { needed: 1, have: 0 }),
    }
}

/// The length the IP header announces for the whole packet (IPv4 total length,
/// IPv6 40 + payload length).
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
    /// its IP header says; trailing bytes (link padding) are ignored.
    #[inline]
    pub fn parse(packet: &[u8]) -> Result<Self> {
        match version(packet)? {
            4 => Self::parse_v4(packet),
            _ => Self::parse_v6(packet),
        }
    }

    #[inline]
    fn parse_v4(p: &[u8]) -> Result<Self> {
        need(p.len(), 20)?;
        let ihl = usize::from(p[0] & 0x0f) * 4;
        if ihl < 20 {
            return Err(WireError::BadIp("IPv4 header length below 20"));
        }
        let total = usize::from(u16::from_be_bytes([p[2], p[3]]));
        if total < ihl {
            return Err(WireError::BadIp("IPv4 total length below header length"));
        }
        need(p.len(), total)?;
        let frag_offset = u16::from_be_bytes([p[6], p[7]]) & 0x1fff;
        let protocol = p[9];
        let src = Ipv4Addr::new(p[12], p[13], p[14], p[15]);
        let dst = Ipv4Addr::new(p[16], p[17], p[18], p[19]);
        let (src_port, dst_port) = if frag_offset != 0 {
            (None, None)
        } else {
            ports(protocol, &p[ihl..total])
        };
        Ok(FiveTuple {
            src: src.into(),
            dst: dst.into(),
            protocol,
            src_port,
            dst_port,
        })
    }

    fn parse_v6(p: &[u8]) -> Result<Self> {
        need(p.len(), 40)?;
        let total = 40 + usize::from(u16::from_be_bytes([p[4], p[5]]));
        need(p.len(), total)?;
        let mut a = [0u8; 16];
        a.copy_from_slice(&p[8..24]);
        let src = Ipv6Addr::from(a);
        a.copy_from_slice(&p[24..40]);
        let dst = Ipv6Addr::from(a);
        let mut next = p[6];
        let mut off = 40usize;
        let mut opaque = false;
        // Walk at most 8 extension headers (RFC 8200 §4); anything deeper is
        // treated as the upper layer with OPAQUE ports.
        for _ in 0..8 {
            let ext_len = match next {
                0 | 43 | 60 => {
                    need(total, off + 2)?;
                    (usize::from(p[off + 1]) + 1) * 8
                }
                44 => {
                    need(total, off + 8)?;
                    let frag_offset = u16::from_be_bytes([p[off + 2], p[off + 3]]) >> 3;
                    opaque |= frag_offset != 0;
                    8
                }
                proto::AH => {
                    need(total, off + 2)?;
                    (usize::from(p[off + 1]) + 2) * 4
                }
                _ => break,
            };
            next = p[off];
            off += ext_len;
            need(total, off)?;
        }
        let (src_port, dst_port) = if opaque {
            (None, None)
        } else {
            ports(next, p.get(off..total).unwrap_or(&[]))
        };
        Ok(FiveTuple {
            src: src.into(),
            dst: dst.into(),
            protocol: next,
            src_port,
            dst_port,
        })
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
    /// (IPv6 included: use [`FiveTuple::parse`] for those).
    #[inline(always)]
    pub fn parse(p: &[u8]) -> Result<Self> {
        match p.first() {
            Some(b) if b >> 4 == 4 => {}
            _ => return Err(WireError::BadIp("not IPv4")),
        }
        need(p.len(), 20)?;
        let ihl = usize::from(p[0] & 0x0f) * 4;
        if ihl < 20 {
            return Err(WireError::BadIp("IPv4 header length below 20"));
        }
        let total = usize::from(u16::from_be_bytes([p[2], p[3]]));
        if total < ihl {
            return Err(WireError::BadIp("IPv4 total length below header length"));
        }
        need(p.len(), total)?;
        let frag_offset = u16::from_be_bytes([p[6], p[7]]) & 0x1fff;
        let protocol = p[9];
        let src = u32::from_be_bytes([p[12], p[13], p[14], p[15]]);
        let dst = u32::from_be_bytes([p[16], p[17], p[18], p[19]]);
        let (src_port, dst_port) = if frag_offset != 0 {
            (None, None)
        } else {
            ports(protocol, &p[ihl..total])
        };
        Ok(TupleV4 {
            src,
            dst,
            protocol,
            src_port,
            dst_port,
        })
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
fn ports(protocol: u8, l4: &[u8]) -> (Option<u16>, Option<u16>) {
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

#[cfg(test)]
mod tests {
    use super::*;

    /// An ICMP echo request 192.168.250.1 -> 203.0.113.250 (the addresses of
    /// the inner packets in `/work/shared/captures`), built with etherparse.
    fn icmp_v4() -> Vec<u8> {
        let b = etherparse::PacketBuilder::ipv4([192, 168, 250, 1], [203, 0, 113, 250], 64)
            .icmpv4_echo_request(7, 1);
        let mut v = Vec::new();
        b.write(&mut v, &[0u8; 8]).unwrap();
        v
    }

    #[test]
    fn tuple_v4_parses_like_five_tuple() {
        let mut rng = 0x1234_5678_9abc_def0u64;
        let mut next = || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng
        };
        let base = {
            let b = etherparse::PacketBuilder::ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64)
                .tcp(40000, 80, 1, 100);
            let mut v = Vec::new();
            b.write(&mut v, &[7u8; 30]).unwrap();
            v
        };
        let mut seen_ok = 0;
        for i in 0..200_000 {
            let mut p = base.clone();
            // Mutate a few header bytes and the length.
            for _ in 0..(next() % 4) {
                let at = (next() as usize) % 28;
                p[at] = next() as u8;
            }
            p.truncate((next() as usize) % (p.len() + 1));
            if i % 3 == 0 && !p.is_empty() {
                p[0] = 0x40 | (p[0] & 0x0f);
            }
            let a = TupleV4::parse(&p).map(TupleV4::to_five).ok();
            let is_v4 = p.first().is_some_and(|b| b >> 4 == 4);
            let b = if is_v4 {
                FiveTuple::parse(&p).ok()
            } else {
                None
            };
            assert_eq!(a, b, "{p:02x?}");
            seen_ok += usize::from(a.is_some());
        }
        assert!(seen_ok > 1000);
        assert!(TupleV4::parse(&icmp_v4()).is_ok());
        assert_eq!(
            TupleV4::parse(&icmp_v4()).unwrap().to_five(),
            FiveTuple::parse(&icmp_v4()).unwrap()
        );
    }

    #[test]
    fn udp_v4() {
        let b = etherparse::PacketBuilder::ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64).udp(4500, 53);
        let mut v = Vec::new();
        b.write(&mut v, b"hello").unwrap();
        v.extend_from_slice(&[0, 0]); // link padding is ignored
        let t = FiveTuple::parse(&v).unwrap();
        assert_eq!(t.src, IpAddr::from([10, 0, 0, 1]));
        assert_eq!(t.dst, IpAddr::from([10, 0, 0, 2]));
        assert_eq!(
            (t.protocol, t.src_port, t.dst_port),
            (17, Some(4500), Some(53))
        );
        assert_eq!(total_len(&v).unwrap(), v.len() - 2);
        assert_eq!(version(&v).unwrap(), 4);
    }

    #[test]
    fn icmp_type_code() {
        let v = icmp_v4();
        let t = FiveTuple::parse(&v).unwrap();
        assert_eq!(t.protocol, proto::ICMP);
        assert_eq!(t.src_port, Some(0x0800));
        assert_eq!(t.dst_port, Some(0x0800));
    }

    #[test]
    fn tcp_v6_with_hop_by_hop() {
        let b = etherparse::PacketBuilder::ipv6([0x20; 16], [0x30; 16], 64).tcp(443, 55000, 1, 100);
        let mut v = Vec::new();
        b.write(&mut v, b"x").unwrap();
        let t = FiveTuple::parse(&v).unwrap();
        assert_eq!(
            (t.protocol, t.src_port, t.dst_port),
            (6, Some(443), Some(55000))
        );
        // Insert an 8-byte hop-by-hop header (next header TCP, PadN).
        let mut w = v[..40].to_vec();
        w[6] = 0;
        let plen = u16::from_be_bytes([w[4], w[5]]) + 8;
        w[4..6].copy_from_slice(&plen.to_be_bytes());
        w.extend_from_slice(&[6, 0, 1, 4, 0, 0, 0, 0]);
        w.extend_from_slice(&v[40..]);
        let t = FiveTuple::parse(&w).unwrap();
        assert_eq!(
            (t.protocol, t.src_port, t.dst_port),
            (6, Some(443), Some(55000))
        );
    }

    #[test]
    fn non_first_fragment_is_opaque() {
        let mut v = icmp_v4();
        v[6] = 0x00;
        v[7] = 0x10; // fragment offset 16 (x8 bytes)
        let t = FiveTuple::parse(&v).unwrap();
        assert_eq!((t.src_port, t.dst_port), (None, None));
    }

    #[test]
    fn malformed() {
        assert!(FiveTuple::parse(&[]).is_err());
        assert!(matches!(
            FiveTuple::parse(&[0x50; 40]),
            Err(WireError::BadIp(_))
        ));
        let v = icmp_v4();
        assert!(matches!(
            FiveTuple::parse(&v[..v.len() - 1]),
            Err(WireError::Truncated { .. })
        ));
        let mut bad_ihl = v.clone();
        bad_ihl[0] = 0x44;
        assert!(matches!(
            FiveTuple::parse(&bad_ihl),
            Err(WireError::BadIp(_))
        ));
        assert!(total_len(&[0x60; 39]).is_err());
    }

    #[test]
    fn written_headers_parse_back() {
        let mut buf = [0u8; 64];
        let n = write_header(
            "192.0.2.1".parse().unwrap(),
            "198.51.100.7".parse().unwrap(),
            proto::UDP,
            12,
            &mut buf,
        )
        .unwrap();
        assert_eq!(n, 20);
        buf[20..24].copy_from_slice(&[0x11, 0x94, 0x00, 0x35]);
        let t = FiveTuple::parse(&buf[..32]).unwrap();
        assert_eq!(t.src, IpAddr::from([192, 0, 2, 1]));
        assert_eq!(
            (t.protocol, t.src_port, t.dst_port),
            (17, Some(4500), Some(53))
        );
        assert_eq!(total_len(&buf).unwrap(), 32);
        // The checksum verifies: the sum over the header is 0xffff.
        assert_eq!(crate::ones_complement_checksum(&buf[..20]), 0);
        let v4 = etherparse::Ipv4HeaderSlice::from_slice(&buf[..20]).unwrap();
        assert_eq!(v4.header_checksum(), v4.to_header().calc_header_checksum());
        let n = write_header(
            "2001:db8::1".parse().unwrap(),
            "2001:db8::2".parse().unwrap(),
            proto::TCP,
            4,
            &mut buf,
        )
        .unwrap();
        assert_eq!(n, 40);
        buf[40..44].copy_from_slice(&[0, 80, 0x1f, 0x90]);
        let t = FiveTuple::parse(&buf[..44]).unwrap();
        assert_eq!(
            (t.protocol, t.src_port, t.dst_port),
            (6, Some(80), Some(8080))
        );
        assert!(write_header(
            "192.0.2.1".parse().unwrap(),
            "2001:db8::2".parse().unwrap(),
            6,
            0,
            &mut buf
        )
        .is_err());
        assert!(matches!(
            write_header(
                "192.0.2.1".parse().unwrap(),
                "192.0.2.2".parse().unwrap(),
                6,
                0,
                &mut buf[..19]
            ),
            Err(WireError::BufferTooSmall { .. })
        ));
        assert!(write_header(
            "192.0.2.1".parse().unwrap(),
            "192.0.2.2".parse().unwrap(),
            6,
            65516,
            &mut buf
        )
        .is_err());
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(data in proptest::collection::vec(proptest::num::u8::ANY, 0..128)) {
            let _ = FiveTuple::parse(&data);
            let _ = total_len(&data);
        }

        #[test]
        fn arbitrary_v6_never_panics(mut data in proptest::collection::vec(proptest::num::u8::ANY, 40..128)) {
            data[0] = 0x60;
            let plen = (data.len() - 40) as u16;
            data[4..6].copy_from_slice(&plen.to_be_bytes());
            let _ = FiveTuple::parse(&data);
        }
    }
}
