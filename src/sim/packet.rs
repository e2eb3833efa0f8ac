//! IP packets for the hosts of the harness: building TCP and UDP packets (IPv4 or
//! IPv6, checksums computed by `etherparse`) and reading back the fields the host
//! model needs. Reading never panics: anything that is not a well-formed IPv4/IPv6
//! TCP or UDP packet is `None`.

use std::net::{IpAddr, SocketAddr};

use etherparse::{PacketBuilder, TcpOptionElement};

/// TCP flag bits as they sit in byte 13 of the TCP header.
pub mod flags {
    /// FIN.
    pub const FIN: u8 = 0x01;
    /// SYN.
    pub const SYN: u8 = 0x02;
    /// RST.
    pub const RST: u8 = 0x04;
    /// PSH.
    pub const PSH: u8 = 0x08;
    /// ACK.
    pub const ACK: u8 = 0x10;
}

/// A TCP segment to build.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TcpSeg {
    /// Source address and port.
    pub src: SocketAddr,
    /// Destination address and port.
    pub dst: SocketAddr,
    /// Sequence number.
    pub seq: u32,
    /// Acknowledgment number (meaningful with ACK).
    pub ack: u32,
    /// Flag bits ([`flags`]).
    pub flags: u8,
    /// Advertised window.
    pub window: u16,
    /// MSS option (SYN and SYN-ACK).
    pub mss: Option<u16>,
    /// Payload.
    pub payload: Vec<u8>,
}

impl TcpSeg {
    /// The IP packet of this segment; `None` for mixed address families.
    pub fn build(&self) -> Option<Vec<u8>> {
        let b = ip_builder(self.src.ip(), self.dst.ip())?;
        let mut b = b.tcp(self.src.port(), self.dst.port(), self.seq, self.window);
        if self.flags & flags::SYN != 0 {
            b = b.syn();
        }
        if self.flags & flags::ACK != 0 {
            b = b.ack(self.ack);
        }
        if self.flags & flags::FIN != 0 {
            b = b.fin();
        }
        if self.flags & flags::RST != 0 {
            b = b.rst();
        }
        if self.flags & flags::PSH != 0 {
            b = b.psh();
        }
        if let Some(m) = self.mss {
            b = b.options(&[TcpOptionElement::MaximumSegmentSize(m)]).ok()?;
        }
        let mut v = Vec::with_capacity(60 + self.payload.len());
        b.write(&mut v, &self.payload).ok()?;
        Some(v)
    }
}

fn ip_builder(
    src: IpAddr,
    dst: IpAddr,
) -> Option<etherparse::PacketBuilderStep<etherparse::IpHeaders>> {
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => Some(PacketBuilder::ipv4(s.octets(), d.octets(), 64)),
        (IpAddr::V6(s), IpAddr::V6(d)) => Some(PacketBuilder::ipv6(s.octets(), d.octets(), 64)),
        _ => None,
    }
}

/// A UDP packet from `src` to `dst`; `None` for mixed address families.
pub fn udp(src: SocketAddr, dst: SocketAddr, payload: &[u8]) -> Option<Vec<u8>> {
    let b = ip_builder(src.ip(), dst.ip())?.udp(src.port(), dst.port());
    let mut v = Vec::with_capacity(48 + payload.len());
    b.write(&mut v, payload).ok()?;
    Some(v)
}

/// What a host reads from an IP packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed<'a> {
    /// A TCP segment.
    Tcp {
        /// Source.
        src: SocketAddr,
        /// Destination.
        dst: SocketAddr,
        /// Sequence number.
        seq: u32,
        /// Acknowledgment number.
        ack: u32,
        /// Flag bits.
        flags: u8,
        /// MSS option, if present.
        mss: Option<u16>,
        /// Payload.
        payload: &'a [u8],
    },
    /// A UDP datagram.
    Udp {
        /// Source.
        src: SocketAddr,
        /// Destination.
        dst: SocketAddr,
        /// Payload.
        payload: &'a [u8],
    },
}

/// Source and destination addresses, protocol and the transport bytes of an
/// IPv4 packet (no options parsing beyond the header length, no fragments) or an
/// IPv6 packet without extension headers.
pub fn ip_layer(p: &[u8]) -> Option<(IpAddr, IpAddr, u8, &[u8])> {
    match p.first()? >> 4 {
        4 => {
            let ihl = usize::from(p[0] & 0x0f) * 4;
            let total = usize::from(u16::from_be_bytes([*p.get(2)?, *p.get(3)?]));
            if ihl < 20 || total < ihl || p.len() < total {
                return None;
            }
            if u16::from_be_bytes([p[6], p[7]]) & 0x3fff != 0 {
                return None; // a fragment
            }
            let src = IpAddr::from(<[u8; 4]>::try_from(&p[12..16]).ok()?);
            let dst = IpAddr::from(<[u8; 4]>::try_from(&p[16..20]).ok()?);
            Some((src, dst, p[9], &p[ihl..total]))
        }
        6 => {
            let plen = usize::from(u16::from_be_bytes([*p.get(4)?, *p.get(5)?]));
            if p.len() < 40 + plen {
                return None;
            }
            let src = IpAddr::from(<[u8; 16]>::try_from(&p[8..24]).ok()?);
            let dst = IpAddr::from(<[u8; 16]>::try_from(&p[24..40]).ok()?);
            Some((src, dst, p[6], &p[40..40 + plen]))
        }
        _ => None,
    }
}

/// Read a TCP or UDP packet.
pub fn parse(p: &[u8]) -> Option<Parsed<'_>> {
    let (s, d, proto, l4) = ip_layer(p)?;
    let port = |i: usize| Some(u16::from_be_bytes([*l4.get(i)?, *l4.get(i + 1)?]));
    let (src, dst) = (SocketAddr::new(s, port(0)?), SocketAddr::new(d, port(2)?));
    match proto {
        6 => {
            let off = usize::from(*l4.get(12)? >> 4) * 4;
            if off < 20 || l4.len() < off {
                return None;
            }
            let word = |i: usize| u32::from_be_bytes([l4[i], l4[i + 1], l4[i + 2], l4[i + 3]]);
            Some(Parsed::Tcp {
                src,
                dst,
                seq: word(4),
                ack: word(8),
                flags: l4[13],
                mss: mss_option(&l4[20..off]),
                payload: &l4[off..],
            })
        }
        17 if l4.len() >= 8 => Some(Parsed::Udp {
            src,
            dst,
            payload: &l4[8..],
        }),
        _ => None,
    }
}

/// The MSS option among TCP options (RFC 9293 §3.2).
fn mss_option(mut o: &[u8]) -> Option<u16> {
    while let Some(&kind) = o.first() {
        match kind {
            0 => return None,
            1 => o = &o[1..],
            _ => {
                let len = usize::from(*o.get(1)?);
                if len < 2 || o.len() < len {
                    return None;
                }
                if kind == 2 && len == 4 {
                    return Some(u16::from_be_bytes([o[2], o[3]]));
                }
                o = &o[len..];
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tcp_round_trip_v4_and_v6() {
        for (a, b) in [
            ("192.0.2.1:40000", "198.51.100.7:80"),
            ("[2001:db8::1]:40000", "[2001:db8:100::7]:80"),
        ] {
            let seg = TcpSeg {
                src: a.parse().unwrap(),
                dst: b.parse().unwrap(),
                seq: 7,
                ack: 9,
                flags: flags::SYN | flags::ACK,
                window: 1000,
                mss: Some(1360),
                payload: b"hi".to_vec(),
            };
            let p = seg.build().unwrap();
            match parse(&p).unwrap() {
                Parsed::Tcp {
                    src,
                    dst,
                    seq,
                    ack,
                    flags: f,
                    mss,
                    payload,
                } => {
                    assert_eq!(
                        (src, dst, seq, ack, mss),
                        (seg.src, seg.dst, 7, 9, Some(1360))
                    );
                    assert_eq!(f & (flags::SYN | flags::ACK), flags::SYN | flags::ACK);
                    assert_eq!(payload, b"hi");
                }
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn garbage_is_none() {
        assert_eq!(parse(&[]), None);
        assert_eq!(parse(&[0x45, 0, 0, 200]), None);
        assert_eq!(parse(&[0x60; 30]), None);
        let u = udp(
            "10.0.0.1:53".parse().unwrap(),
            "10.0.0.2:53".parse().unwrap(),
            b"q",
        )
        .unwrap();
        assert!(matches!(parse(&u), Some(Parsed::Udp { payload: b"q", .. })));
        assert!(parse(&u[..u.len() - 1]).is_none(), "truncated");
    }
}
