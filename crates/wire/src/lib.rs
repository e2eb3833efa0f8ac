//! plexgate-wire: checked, zero-allocation views over packet bytes.
//!
//! Each module covers one header in the smoltcp style: a `Packet<T: AsRef<[u8]>>`
//! view whose `new_checked` guarantees that no accessor panics afterwards, and a
//! `Repr` with `parse` / `emit` for the fields that matter to plexgate.
//!
//! - [`esp`]: the ESP header (RFC 4303 §2): SPI and sequence number;
//! - [`udp_encap`]: classification of UDP/4500 payloads (RFC 3948): NAT-keepalive,
//!   IKE behind the non-ESP marker, or ESP;
//! - [`gre`]: GRE (RFC 2784) with the key and sequence extensions (RFC 2890);
//! - [`ip`]: one checked view of IPv4 and IPv6 packets, [`ip::IpPacket`] (version,
//!   header length with IPv6 extension headers, addresses, protocol, payload), and
//!   the 5-tuple the security policy database (SPD) and the connection table use,
//!   read through it; `write_header` to rebuild a packet.
//!
//! Bad input returns a [`WireError`]; nothing here panics on untrusted bytes.
#![warn(missing_docs, unreachable_pub)]
#![forbid(unsafe_code)]

pub mod arp;
pub mod esp;
pub mod gre;
pub mod ip;
pub mod udp_encap;

mod checksum;

pub use checksum::ones_complement_checksum;

/// Why a packet could not be parsed or emitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// The buffer is shorter than the header (or the length it announces).
    #[error("truncated packet: need {needed} bytes, have {have}")]
    Truncated {
        /// Bytes needed.
        needed: usize,
        /// Bytes present.
        have: usize,
    },
    /// The output buffer is too small for what is being emitted.
    #[error("output buffer too small: need {needed} bytes, have {have}")]
    BufferTooSmall {
        /// Bytes needed.
        needed: usize,
        /// Bytes available.
        have: usize,
    },
    /// An ESP SPI of zero (reserved, RFC 4303 §2.1; RFC 3948 §2.2 uses it as the
    /// non-ESP marker).
    #[error("ESP SPI 0 is reserved")]
    ZeroSpi,
    /// A GRE header with a version other than 0.
    #[error("unsupported GRE version {0}")]
    GreVersion(u8),
    /// A GRE header with reserved0 bits 1, 4 or 5 set (RFC 2784 §2.5: routing,
    /// strict source route or recursion control of RFC 1701, which we do not do).
    #[error("GRE reserved0 bits set: {0:#06x}")]
    GreReserved(u16),
    /// The GRE checksum does not verify.
    #[error("GRE checksum mismatch")]
    GreChecksum,
    /// Not an IPv4 or IPv6 packet, or an IP header that is malformed.
    #[error("malformed IP packet: {0}")]
    BadIp(&'static str),
}

/// Result type of this crate.
pub type Result<T> = core::result::Result<T, WireError>;

#[inline]
pub(crate) fn need(buf_len: usize, needed: usize) -> Result<()> {
    if buf_len < needed {
        Err(WireError::Truncated {
            needed,
            have: buf_len,
        })
    } else {
        Ok(())
    }
}
