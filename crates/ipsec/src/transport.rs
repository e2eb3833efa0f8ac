//! Transport mode (RFC 4301 §4.1): the ESP payload is not a whole IP packet but
//! the payload of the outer one, so what an inbound SA hands on is the outer
//! addresses, the next header (the transport protocol) and the payload. The
//! selector check of RFC 4301 §5.2 runs on exactly that: source and
//! destination are the SA's outer addresses (the peer's and ours), the protocol
//! is the next header and the ports come from the payload's transport header.
//! [`TransportPacket`] is that view, with what the caller needs to check it
//! again or to rebuild the IP packet around the payload.

use crate::error::EspError;
use core::net::IpAddr;
use core::ops::Range;
use plexgate_wire::ip::{self, FiveTuple};

/// An opened transport-mode packet: outer addresses, protocol, and where its
/// payload (the transport header and data) lies in the caller's buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransportPacket {
    /// Source: the peer's outer address (the SA's `remote_addr`).
    pub src: IpAddr,
    /// Destination: our outer address (the SA's `local_addr`).
    pub dst: IpAddr,
    /// The ESP next header: the transport protocol of the payload.
    pub protocol: u8,
    /// The payload in the buffer that was opened.
    pub payload: Range<usize>,
}

impl TransportPacket {
    /// The 5-tuple the selector check used: addresses, protocol and the ports
    /// of the payload's transport header (RFC 4301 §4.4.1.1). `buf` is the
    /// buffer that was opened.
    pub fn tuple(&self, buf: &[u8]) -> FiveTuple {
        let l4 = buf.get(self.payload.clone()).unwrap_or(&[]);
        tuple_of(self.src, self.dst, self.protocol, l4)
    }

    /// Length of the IP header [`TransportPacket::write_ip_header`] writes:
    /// 20 (IPv4) or 40 (IPv6).
    pub fn ip_header_len(&self) -> usize {
        match self.src {
            IpAddr::V4(_) => 20,
            IpAddr::V6(_) => 40,
        }
    }

    /// Writes the IP header of the rebuilt packet (outer addresses, protocol,
    /// length of the payload) at the start of `out`; the payload goes right
    /// after it. Returns the header length.
    pub fn write_ip_header(&self, out: &mut [u8]) -> Result<usize, EspError> {
        ip::write_header(self.src, self.dst, self.protocol, self.payload.len(), out).map_err(|_| {
            EspError::BufferTooSmall {
                needed: self.ip_header_len(),
                have: out.len(),
            }
        })
    }
}

/// The 5-tuple of a transport-mode payload `l4` sent from `src` to `dst`.
#[inline]
pub(crate) fn tuple_of(src: IpAddr, dst: IpAddr, protocol: u8, l4: &[u8]) -> FiveTuple {
    let (src_port, dst_port) = ip::transport_ports(protocol, l4);
    FiveTuple {
        src,
        dst,
        protocol,
        src_port,
        dst_port,
    }
}
