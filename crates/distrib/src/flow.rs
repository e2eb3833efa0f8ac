//! Flow extraction: a zero-allocation, checked look at an inner IPv4 or IPv6
//! packet that yields its addresses, transport protocol, ports and TCP flags.
//!
//! This is all the distributor needs from a packet to pick or follow a
//! connection; it never copies and never panics on short or malformed input
//! (every access is bounds-checked, errors are [`PacketError`]). IPv6 extension
//! headers Hop-by-Hop (0), Routing (43), Fragment (44), Destination Options (60)
//! and AH (51) are walked (RFC 8200 section 4); non-first fragments carry no ports.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use thiserror::Error;

/// IP protocol number of TCP.
pub const IPPROTO_TCP: u8 = 6;
/// IP protocol number of UDP.
pub const IPPROTO_UDP: u8 = 17;
/// IP protocol number of ICMP.
pub const IPPROTO_ICMP: u8 = 1;
/// IP protocol number of ICMPv6.
pub const IPPROTO_ICMPV6: u8 = 58;

/// Transport protocol of a distributed connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Proto {
    /// TCP (6).
    Tcp,
    /// UDP (17).
    Udp,
}

impl Proto {
    /// The IP protocol number.
    pub fn number(self) -> u8 {
        match self {
            Proto::Tcp => IPPROTO_TCP,
            Proto::Udp => IPPROTO_UDP,
        }
    }

    /// From an IP protocol number.
    pub fn from_number(n: u8) -> Option<Proto> {
        match n {
            IPPROTO_TCP => Some(Proto::Tcp),
            IPPROTO_UDP => Some(Proto::Udp),
            _ => None,
        }
    }
}

/// A connection as the CRT knows it: always written from the gateway's point of
/// view, client side first, whichever direction the packet travels.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FlowKey {
    /// The remote client's address.
    pub client: IpAddr,
    /// The remote client's port.
    pub client_port: u16,
    /// The DVIPA.
    pub dvipa: IpAddr,
    /// The port on the DVIPA.
    pub dvipa_port: u16,
    /// TCP or UDP.
    pub proto: Proto,
}

/// TCP header flags (RFC 9293 section 3.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct TcpFlags(pub u8);

impl TcpFlags {
    /// FIN: no more data from sender.
    pub const FIN: u8 = 0x01;
    /// SYN: synchronize sequence numbers.
    pub const SYN: u8 = 0x02;
    /// RST: reset the connection.
    pub const RST: u8 = 0x04;
    /// ACK: acknowledgment field is significant.
    pub const ACK: u8 = 0x10;

    /// True if `flag` is set.
    pub fn has(self, flag: u8) -> bool {
        self.0 & flag != 0
    }
    /// SYN without ACK: the first packet of a new TCP connection.
    pub fn is_initial_syn(self) -> bool {
        self.has(Self::SYN) && !self.has(Self::ACK)
    }
}

/// Transport-layer facts of a packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ports {
    /// Source port.
    pub src: u16,
    /// Destination port.
    pub dst: u16,
    /// TCP flags (zero for UDP).
    pub flags: TcpFlags,
}

/// What [`parse`] learnt about a packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PacketInfo {
    /// Source address.
    pub src: IpAddr,
    /// Destination address.
    pub dst: IpAddr,
    /// Upper-layer protocol number (after IPv6 extension headers).
    pub protocol: u8,
    /// Offset of the transport header in the packet.
    pub l4_offset: usize,
    /// End of the IP payload (IPv4 total length / IPv6 payload length + 40).
    pub end: usize,
    /// Ports and flags for TCP and UDP, `None` for other protocols and for
    /// non-first fragments.
    pub ports: Option<Ports>,
}

impl PacketInfo {
    /// The connection key, taking `dst` as the DVIPA side (inbound direction).
    pub fn inbound_key(&self) -> Option<FlowKey> {
        let p = self.ports?;
        Some(FlowKey {
            client: self.src,
            client_port: p.src,
            dvipa: self.dst,
            dvipa_port: p.dst,
            proto: Proto::from_number(self.protocol)?,
        })
    }

    /// The connection key, taking `src` as the DVIPA side (reply direction).
    pub fn outbound_key(&self) -> Option<FlowKey> {
        let p = self.ports?;
        Some(FlowKey {
            client: self.dst,
            client_port: p.dst,
            dvipa: self.src,
            dvipa_port: p.src,
            proto: Proto::from_number(self.protocol)?,
        })
    }

    /// TCP flags, zero unless TCP with a header.
    pub fn tcp_flags(&self) -> TcpFlags {
        match self.ports {
            Some(p) if self.protocol == IPPROTO_TCP => p.flags,
            _ => TcpFlags(0),
        }
    }
}

/// Why an inner packet could not be read.
#[derive(Debug, Error, Clone, Copy, PartialEq, Eq)]
pub enum PacketError {
    /// Empty buffer or a version nibble other than 4 or 6.
    #[error("not an IPv4 or IPv6 packet")]
    NotIp,
    /// Fewer bytes than the headers announce.
    #[error("packet truncated: need {need} bytes, have {have}")]
    Truncated {
        /// Bytes needed.
        need: usize,
        /// Bytes present.
        have: usize,
    },
    /// A header field has an impossible value.
    #[error("malformed {0} header")]
    Malformed(&'static str),
}

#[inline]
fn need(buf: &[u8], n: usize) -> Result<(), PacketError> {
    if buf.len() < n {
        Err(PacketError::Truncated {
            need: n,
            have: buf.len(),
        })
    } else {
        Ok(())
    }
}

#[inline]
fn be16(buf: &[u8], at: usize) -> Result<u16, PacketError> {
    match buf.get(at..at + 2) {
        Some(b) => Ok(u16::from_be_bytes([b[0], b[1]])),
        None => Err(PacketError::Truncated {
            need: at + 2,
            have: buf.len(),
        }),
    }
}

/// Parse the IP and transport headers of `packet`.
#[inline]
pub fn parse(packet: &[u8]) -> Result<PacketInfo, PacketError> {
    match packet.first().map(|b| b >> 4) {
        Some(4) => parse_v4(packet),
        Some(6) => parse_v6(packet),
        _ => Err(PacketError::NotIp),
    }
}

/// [`parse`] for a packet whose 5-tuple was already read by
/// [`plexgate_wire::ip::FiveTuple::parse`] (which checked the IP header: version,
/// IPv4 header length ≥ 20, total length ≥ header length, packet ≥ total length):
/// for IPv4 the addresses and protocol come from `tuple`, and only the fragment
/// offset and the transport header are read again, with the same checks as
/// [`parse`]; IPv6 (extension headers) and anything else takes [`parse`]. The
/// result equals `parse(packet)` when `tuple` is the packet's 5-tuple.
#[inline]
pub fn parse_with_tuple(
    packet: &[u8],
    tuple: &plexgate_wire::ip::FiveTuple,
) -> Result<PacketInfo, PacketError> {
    match (tuple.src, tuple.dst, packet.first().map(|b| b >> 4)) {
        (IpAddr::V4(_), IpAddr::V4(_), Some(4)) if packet.len() >= 20 => {
            let ihl = usize::from(packet[0] & 0x0f) * 4;
            let total = usize::from(u16::from_be_bytes([packet[2], packet[3]]));
            if ihl < 20 || total < ihl || packet.len() < total || tuple.protocol != packet[9] {
                return parse(packet);
            }
            let non_first_fragment = u16::from_be_bytes([packet[6], packet[7]]) & 0x1fff != 0;
            let ports = if non_first_fragment {
                None
            } else {
                transport(&packet[..total], ihl, tuple.protocol)?
            };
            Ok(PacketInfo {
                src: tuple.src,
                dst: tuple.dst,
                protocol: tuple.protocol,
                l4_offset: ihl,
                end: total,
                ports,
            })
        }
        _ => parse(packet),
    }
}

//= https://www.rfc-editor.org/rfc/rfc791#section-3.1
//# IHL:  4 bits
//#   Internet Header Length is the length of the internet header in 32
//#   bit words, and thus points to the beginning of the data.  Note that
//#   the minimum value for a correct header is 5.
#[inline]
fn parse_v4(p: &[u8]) -> Result<PacketInfo, PacketError> {
    need(p, 20)?;
    let ihl = usize::from(p[0] & 0x0f) * 4;
    if ihl < 20 {
        return Err(PacketError::Malformed("IPv4"));
    }
    let total = usize::from(be16(p, 2)?);
    if total < ihl {
        return Err(PacketError::Malformed("IPv4"));
    }
    need(p, total)?;
    let frag = be16(p, 6)?;
    let non_first_fragment = frag & 0x1fff != 0;
    let src = IpAddr::V4(Ipv4Addr::new(p[12], p[13], p[14], p[15]));
    let dst = IpAddr::V4(Ipv4Addr::new(p[16], p[17], p[18], p[19]));
    let protocol = p[9];
    let ports = if non_first_fragment {
        None
    } else {
        transport(&p[..total], ihl, protocol)?
    };
    Ok(PacketInfo {
        src,
        dst,
        protocol,
        l4_offset: ihl,
        end: total,
        ports,
    })
}

#[inline]
fn v6_addr(p: &[u8], at: usize) -> Result<Ipv6Addr, PacketError> {
    let b: [u8; 16] =
        p.get(at..at + 16)
            .and_then(|s| s.try_into().ok())
            .ok_or(PacketError::Truncated {
                need: at + 16,
                have: p.len(),
            })?;
    Ok(Ipv6Addr::from(b))
}

//= https://www.rfc-editor.org/rfc/rfc8200#section-4.1
//# Each extension header should occur at most once, except for the
//# Destination Options header, which should occur at most twice
#[inline]
fn parse_v6(p: &[u8]) -> Result<PacketInfo, PacketError> {
    need(p, 40)?;
    let end = 40 + usize::from(be16(p, 4)?);
    need(p, end)?;
    let p = &p[..end];
    let src = IpAddr::V6(v6_addr(p, 8)?);
    let dst = IpAddr::V6(v6_addr(p, 24)?);
    let mut next = p[6];
    let mut off = 40;
    let mut non_first_fragment = false;
    // At most 8 extension headers: enough for any sane packet, bounded work.
    for _ in 0..8 {
        match next {
            0 | 43 | 60 => {
                need(p, off + 2)?;
                next = p[off];
                off += (usize::from(p[off + 1]) + 1) * 8;
            }
            44 => {
                need(p, off + 8)?;
                next = p[off];
                non_first_fragment = be16(p, off + 2)? & 0xfff8 != 0;
                off += 8;
            }
            51 => {
                need(p, off + 2)?;
                next = p[off];
                off += (usize::from(p[off + 1]) + 2) * 4;
            }
            _ => break,
        }
    }
    need(p, off)?;
    let ports = if non_first_fragment {
        None
    } else {
        transport(p, off, next)?
    };
    Ok(PacketInfo {
        src,
        dst,
        protocol: next,
        l4_offset: off,
        end,
        ports,
    })
}

#[inline(always)]
fn transport(p: &[u8], off: usize, protocol: u8) -> Result<Option<Ports>, PacketError> {
    match protocol {
        IPPROTO_TCP => {
            need(p, off + 20)?;
            let doff = usize::from(p[off + 12] >> 4) * 4;
            if doff < 20 {
                return Err(PacketError::Malformed("TCP"));
            }
            need(p, off + doff)?;
            Ok(Some(Ports {
                src: be16(p, off)?,
                dst: be16(p, off + 2)?,
                flags: TcpFlags(p[off + 13]),
            }))
        }
        IPPROTO_UDP => {
            need(p, off + 8)?;
            Ok(Some(Ports {
                src: be16(p, off)?,
                dst: be16(p, off + 2)?,
                flags: TcpFlags(0),
            }))
        }
        _ => Ok(None),
    }
}

/// For an ICMP error about a packet the DVIPA side sent (ICMP destination
/// unreachable, time exceeded, parameter problem; ICMPv6 types 1-4, "packet
/// too big" included), the connection of the quoted packet: quoted source =
/// DVIPA, quoted destination = client. The quote is truncated by design, so
/// only its IP header and the first four transport octets (the ports) are
/// read. `None` for anything else, or when the quoted source is not the
/// packet's destination.
pub fn icmp_error_flow(packet: &[u8], info: &PacketInfo) -> Option<FlowKey> {
    let icmp = packet.get(info.l4_offset..info.end)?;
    let ty = *icmp.first()?;
    let is_error = match info.protocol {
        //= https://www.rfc-editor.org/rfc/rfc792
        //# Destination Unreachable Message
        IPPROTO_ICMP => matches!(ty, 3 | 11 | 12),
        //= https://www.rfc-editor.org/rfc/rfc4443#section-2.1
        //# ICMPv6 error messages are identified as such by a
        //# zero in the high-order bit of their message Type field values.
        IPPROTO_ICMPV6 => (1..=4).contains(&ty),
        _ => false,
    };
    if !is_error {
        return None;
    }
    let q = icmp.get(8..)?;
    let (src, dst, proto, l4) = match q.first()? >> 4 {
        4 if info.protocol == IPPROTO_ICMP => {
            let ihl = usize::from(q.first()? & 0x0f) * 4;
            let h = q.get(..20)?;
            if ihl < 20 || u16::from_be_bytes([h[6], h[7]]) & 0x1fff != 0 {
                return None;
            }
            let src = IpAddr::V4(Ipv4Addr::new(h[12], h[13], h[14], h[15]));
            let dst = IpAddr::V4(Ipv4Addr::new(h[16], h[17], h[18], h[19]));
            (src, dst, h[9], ihl)
        }
        6 if info.protocol == IPPROTO_ICMPV6 => {
            let h = q.get(..40)?;
            (
                IpAddr::V6(v6_addr(h, 8).ok()?),
                IpAddr::V6(v6_addr(h, 24).ok()?),
                h[6],
                40,
            )
        }
        _ => return None,
    };
    let proto = Proto::from_number(proto)?;
    let p = q.get(l4..l4 + 4)?;
    if src != info.dst {
        return None;
    }
    Some(FlowKey {
        client: dst,
        client_port: u16::from_be_bytes([p[2], p[3]]),
        dvipa: src,
        dvipa_port: u16::from_be_bytes([p[0], p[1]]),
        proto,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    // A TCP SYN 192.0.2.10:40000 -> 198.51.100.7:443 with MSS 1460, written by
    // etherparse (independent encoder).
    fn syn_v4() -> Vec<u8> {
        let b = etherparse::PacketBuilder::ipv4([192, 0, 2, 10], [198, 51, 100, 7], 64)
            .tcp(40000, 443, 1000, 65535)
            .syn()
            .options(&[etherparse::TcpOptionElement::MaximumSegmentSize(1460)])
            .unwrap();
        let mut v = Vec::new();
        b.write(&mut v, &[]).unwrap();
        v
    }

    #[test]
    fn parses_ipv4_syn() {
        let p = syn_v4();
        let info = parse(&p).unwrap();
        assert_eq!(info.src, "192.0.2.10".parse::<IpAddr>().unwrap());
        assert_eq!(info.dst, "198.51.100.7".parse::<IpAddr>().unwrap());
        assert!(info.tcp_flags().is_initial_syn());
        let k = info.inbound_key().unwrap();
        assert_eq!(
            (k.client_port, k.dvipa_port, k.proto),
            (40000, 443, Proto::Tcp)
        );
        assert_eq!(info.l4_offset, 20);
        assert_eq!(info.end, p.len());
    }

    #[test]
    fn parses_ipv6_udp_with_hop_by_hop() {
        // Hand-built: IPv6 header, Hop-by-Hop (8 bytes, PadN), UDP 5353 -> 53.
        let mut p = hex::decode(concat!(
            "6000000000100040",                 // v6, payload 16, next HBH, hop 64
            "20010db8000000000000000000000001", // src 2001:db8::1
            "20010db8000000000000000000000002", // dst 2001:db8::2
            "1100010400000000",                 // HBH: next UDP, len 0, PadN(4)
            "14e9003500080000"                  // UDP 5353 -> 53, len 8
        ))
        .unwrap();
        let info = parse(&p).unwrap();
        assert_eq!(info.protocol, IPPROTO_UDP);
        assert_eq!(info.l4_offset, 48);
        let k = info.inbound_key().unwrap();
        assert_eq!((k.client_port, k.dvipa_port), (5353, 53));
        // Outbound key swaps sides.
        assert_eq!(info.outbound_key().unwrap().dvipa_port, 5353);
        // Truncate the UDP header.
        p.truncate(50);
        p[5] = 10;
        assert!(matches!(parse(&p), Err(PacketError::Truncated { .. })));
    }

    #[test]
    fn rejects_bad_headers() {
        assert_eq!(parse(&[]), Err(PacketError::NotIp));
        assert_eq!(parse(&[0x50; 40]), Err(PacketError::NotIp));
        let mut p = syn_v4();
        p[0] = 0x44; // IHL 4
        assert_eq!(parse(&p), Err(PacketError::Malformed("IPv4")));
        let mut p = syn_v4();
        p[32] = 0x40; // TCP data offset 4
        assert_eq!(parse(&p), Err(PacketError::Malformed("TCP")));
    }

    #[test]
    fn non_first_fragment_has_no_ports() {
        let mut p = syn_v4();
        p[6] = 0x00;
        p[7] = 0x10; // fragment offset 16 * 8
        assert_eq!(parse(&p).unwrap().ports, None);
    }

    #[test]
    fn icmp_fragmentation_needed_names_the_connection() {
        // The DVIPA's reply 198.51.100.7:443 -> 192.0.2.10:40000 was too big
        // for a router (203.0.113.1) on the way; it quotes the reply's headers.
        let reply = {
            let b = etherparse::PacketBuilder::ipv4([198, 51, 100, 7], [192, 0, 2, 10], 64)
                .tcp(443, 40000, 1, 65535)
                .ack(1);
            let mut v = Vec::new();
            b.write(&mut v, &[0u8; 1400]).unwrap();
            v
        };
        let icmp = {
            use etherparse::icmpv4::DestUnreachableHeader;
            let b = etherparse::PacketBuilder::ipv4([203, 0, 113, 1], [198, 51, 100, 7], 64)
                .icmpv4(etherparse::Icmpv4Type::DestinationUnreachable(
                    DestUnreachableHeader::FragmentationNeeded { next_hop_mtu: 1400 },
                ));
            let mut v = Vec::new();
            b.write(&mut v, &reply[..28]).unwrap();
            v
        };
        let info = parse(&icmp).unwrap();
        assert_eq!(info.ports, None);
        let k = icmp_error_flow(&icmp, &info).unwrap();
        assert_eq!(k, parse(&reply).unwrap().outbound_key().unwrap());
        // An echo request is not an error.
        let mut echo = icmp.clone();
        echo[20] = 8;
        assert_eq!(icmp_error_flow(&echo, &parse(&echo).unwrap()), None);
        // The quote must be about a packet the destination sent.
        let mut other = icmp.clone();
        other[28 + 12] = 10;
        assert_eq!(icmp_error_flow(&other, &parse(&other).unwrap()), None);
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(data in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..200)) {
            if let Ok(info) = parse(&data) {
                let _ = icmp_error_flow(&data, &info);
            }
        }
    }
}
