//! [`IpPacket`]: one checked view of an IPv4 or IPv6 packet, smoltcp style.
//! [`IpPacket::new_checked`] validates the header once (version, header and
//! total lengths, the IPv6 extension headers it walks, the buffer holding the
//! whole announced packet); every accessor afterwards is infallible and cheap.
//! The 5-tuple the SPD and the connection table match on
//! ([`IpPacket::five_tuple`], the compact [`IpPacket::tuple_v4`] of the hot
//! path) and the older free functions of [`crate::ip`] are all read through it.

use super::{ports, proto, FiveTuple, TupleV4};
use crate::{need, Result, WireError};
use core::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// IPv6 extension headers walked at most (RFC 8200 §4); anything deeper is
/// taken as the upper layer, with OPAQUE ports.
const MAX_IPV6_EXTENSIONS: usize = 8;

/// A checked view of an IPv4 or IPv6 packet at the start of `buffer`. The
/// buffer may be longer than the packet (link padding, TFC padding): the
/// packet is `buffer[..total_len()]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpPacket<T: AsRef<[u8]>> {
    buffer: T,
    /// IPv4: IHL × 4; IPv6: 40 plus the extension headers walked.
    header_len: usize,
    total_len: usize,
    /// The upper-layer protocol (after IPv6 extension headers).
    protocol: u8,
    /// A non-first fragment: the transport header is not here.
    opaque: bool,
}

impl<T: AsRef<[u8]>> IpPacket<T> {
    /// Checks the header and wraps the buffer. IPv4: at least 20 bytes, IHL of
    /// at least 5 words, a total length of at least the header and at most the
    /// buffer. IPv6: at least 40 bytes, 40 + payload length within the buffer,
    /// each extension header walked (hop-by-hop, routing, fragment, AH,
    /// destination options; at most 8) within the packet.
    #[inline(always)]
    pub fn new_checked(buffer: T) -> Result<Self> {
        match buffer.as_ref().first().map(|b| b >> 4) {
            Some(4) => Self::new_checked_v4(buffer),
            Some(6) => Self::new_checked_v6(buffer),
            Some(_) => Err(WireError::BadIp("version is neither 4 nor 6")),
            None => Err(WireError::Truncated { needed: 1, have: 0 }),
        }
    }

    /// [`IpPacket::new_checked`] for IPv4 only: anything else is an error.
    /// The hot path's entry point (inlined into the caller).
    #[inline(always)]
    pub fn new_checked_v4(buffer: T) -> Result<Self> {
        let p = buffer.as_ref();
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
        let opaque = u16::from_be_bytes([p[6], p[7]]) & 0x1fff != 0;
        let protocol = p[9];
        Ok(IpPacket {
            buffer,
            header_len: ihl,
            total_len: total,
            protocol,
            opaque,
        })
    }

    fn new_checked_v6(buffer: T) -> Result<Self> {
        let p = buffer.as_ref();
        need(p.len(), 40)?;
        let total = 40 + usize::from(u16::from_be_bytes([p[4], p[5]]));
        need(p.len(), total)?;
        let mut next = p[6];
        let mut off = 40usize;
        let mut opaque = false;
        for _ in 0..MAX_IPV6_EXTENSIONS {
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
        Ok(IpPacket {
            buffer,
            header_len: off,
            total_len: total,
            protocol: next,
            opaque,
        })
    }

    /// 4 or 6.
    #[inline(always)]
    pub fn version(&self) -> u8 {
        self.buffer.as_ref()[0] >> 4
    }

    /// The header length: IPv4 IHL × 4, IPv6 40 plus the extension headers
    /// walked.
    #[inline(always)]
    pub fn header_len(&self) -> usize {
        self.header_len
    }

    /// The length the header announces for the whole packet (IPv4 total
    /// length, IPv6 40 + payload length); at most the buffer's length.
    #[inline(always)]
    pub fn total_len(&self) -> usize {
        self.total_len
    }

    /// The upper-layer protocol: IPv4's protocol field, or IPv6's last next
    /// header after the extension headers walked.
    #[inline(always)]
    pub fn protocol(&self) -> u8 {
        self.protocol
    }

    /// Whether this is a non-first fragment (its ports are OPAQUE).
    #[inline(always)]
    pub fn is_non_first_fragment(&self) -> bool {
        self.opaque
    }

    /// Source address.
    #[inline]
    pub fn src_addr(&self) -> IpAddr {
        let p = self.buffer.as_ref();
        if self.version() == 4 {
            IpAddr::V4(Ipv4Addr::new(p[12], p[13], p[14], p[15]))
        } else {
            IpAddr::V6(Ipv6Addr::from(addr16(&p[8..24])))
        }
    }

    /// Destination address.
    #[inline]
    pub fn dst_addr(&self) -> IpAddr {
        let p = self.buffer.as_ref();
        if self.version() == 4 {
            IpAddr::V4(Ipv4Addr::new(p[16], p[17], p[18], p[19]))
        } else {
            IpAddr::V6(Ipv6Addr::from(addr16(&p[24..40])))
        }
    }

    /// The packet without trailing bytes: `buffer[..total_len()]`.
    #[inline]
    pub fn packet(&self) -> &[u8] {
        &self.buffer.as_ref()[..self.total_len]
    }

    /// The upper-layer payload: `buffer[header_len()..total_len()]`.
    #[inline(always)]
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[self.header_len..self.total_len]
    }

    /// Source and destination port as the SPD sees them (RFC 4301 §4.4.1.1;
    /// see [`crate::ip::transport_ports`]); `None` for a non-first fragment.
    #[inline(always)]
    pub fn ports(&self) -> (Option<u16>, Option<u16>) {
        if self.opaque {
            (None, None)
        } else {
            ports(self.protocol, self.payload())
        }
    }

    /// Addresses, protocol and ports.
    #[inline]
    pub fn five_tuple(&self) -> FiveTuple {
        let (src_port, dst_port) = self.ports();
        FiveTuple {
            src: self.src_addr(),
            dst: self.dst_addr(),
            protocol: self.protocol,
            src_port,
            dst_port,
        }
    }

    /// The compact IPv4 tuple of the hot path, or `None` for IPv6.
    #[inline(always)]
    pub fn tuple_v4(&self) -> Option<TupleV4> {
        (self.version() == 4).then(|| self.v4_tuple())
    }

    /// [`IpPacket::tuple_v4`] of a view known to be IPv4.
    #[inline(always)]
    pub(super) fn v4_tuple(&self) -> TupleV4 {
        let p = self.buffer.as_ref();
        let (src_port, dst_port) = self.ports();
        TupleV4 {
            src: u32::from_be_bytes([p[12], p[13], p[14], p[15]]),
            dst: u32::from_be_bytes([p[16], p[17], p[18], p[19]]),
            protocol: self.protocol,
            src_port,
            dst_port,
        }
    }

    /// The underlying buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }
}

#[inline]
fn addr16(b: &[u8]) -> [u8; 16] {
    let mut a = [0u8; 16];
    a.copy_from_slice(b);
    a
}
