//! IKEv2 message codec (RFC 7296 §3): the fixed header, the generic payload chain and
//! every payload we meet, parsed with all lengths checked and emitted back to bytes.
//!
//! Parsing follows the smoltcp `Repr` idea: [`Message::parse`] checks every length
//! against the bytes actually present and returns owned, typed payloads, so nothing
//! downstream indexes untrusted bytes. The Encrypted payload (SK, §3.14) is kept as its
//! opaque body here; [`crate::crypto::SkCipher`] opens and seals it, and
//! [`parse_payloads`] parses the inner chain once it is decrypted.
//!
//! Files: `payload.rs` (payload types), `ts.rs` (traffic selectors), `parse.rs` and
//! `emit.rs` (the two directions of the codec), `reader.rs` (bounds-checked reads).

mod emit;
mod parse;
mod payload;
mod reader;
mod ts;

pub use emit::emit_payloads;
pub use parse::parse_payloads;
pub use payload::{id_type, Delete, Identification, Notify, Payload, Proposal, Transform};
pub use ts::{ts_type, TrafficSelector};

use reader::Reader;

/// Length of the fixed IKE header.
pub const HEADER_LEN: usize = 28;

/// Exchange types (RFC 7296 §3.1).
pub mod exchange {
    /// IKE_SA_INIT
    pub const IKE_SA_INIT: u8 = 34;
    /// IKE_AUTH
    pub const IKE_AUTH: u8 = 35;
    /// CREATE_CHILD_SA
    pub const CREATE_CHILD_SA: u8 = 36;
    /// INFORMATIONAL
    pub const INFORMATIONAL: u8 = 37;
}

/// Header flags (RFC 7296 §3.1).
pub mod flags {
    /// Initiator (of the IKE SA).
    pub const INITIATOR: u8 = 0x08;
    /// Version: higher version supported.
    pub const VERSION: u8 = 0x10;
    /// Response.
    pub const RESPONSE: u8 = 0x20;
}

/// Payload type numbers (RFC 7296 §3.2).
pub mod payload_type {
    /// No next payload.
    pub const NONE: u8 = 0;
    /// Security Association.
    pub const SA: u8 = 33;
    /// Key Exchange.
    pub const KE: u8 = 34;
    /// Identification - Initiator.
    pub const IDI: u8 = 35;
    /// Identification - Responder.
    pub const IDR: u8 = 36;
    /// Certificate.
    pub const CERT: u8 = 37;
    /// Certificate Request.
    pub const CERTREQ: u8 = 38;
    /// Authentication.
    pub const AUTH: u8 = 39;
    /// Nonce.
    pub const NONCE: u8 = 40;
    /// Notify.
    pub const NOTIFY: u8 = 41;
    /// Delete.
    pub const DELETE: u8 = 42;
    /// Vendor ID.
    pub const VENDOR: u8 = 43;
    /// Traffic Selector - Initiator.
    pub const TSI: u8 = 44;
    /// Traffic Selector - Responder.
    pub const TSR: u8 = 45;
    /// Encrypted and Authenticated.
    pub const SK: u8 = 46;
    /// Configuration.
    pub const CP: u8 = 47;
    /// Extensible Authentication.
    pub const EAP: u8 = 48;
    /// Encrypted and Authenticated Fragment (RFC 7383).
    pub const SKF: u8 = 53;
}

/// Notify message types (RFC 7296 §3.10.1 and the IANA registry).
pub mod notify {
    /// UNSUPPORTED_CRITICAL_PAYLOAD
    pub const UNSUPPORTED_CRITICAL_PAYLOAD: u16 = 1;
    /// INVALID_IKE_SPI
    pub const INVALID_IKE_SPI: u16 = 4;
    /// INVALID_MAJOR_VERSION
    pub const INVALID_MAJOR_VERSION: u16 = 5;
    /// INVALID_SYNTAX
    pub const INVALID_SYNTAX: u16 = 7;
    /// INVALID_MESSAGE_ID
    pub const INVALID_MESSAGE_ID: u16 = 9;
    /// INVALID_SPI
    pub const INVALID_SPI: u16 = 11;
    /// NO_PROPOSAL_CHOSEN
    pub const NO_PROPOSAL_CHOSEN: u16 = 14;
    /// INVALID_KE_PAYLOAD
    pub const INVALID_KE_PAYLOAD: u16 = 17;
    /// AUTHENTICATION_FAILED
    pub const AUTHENTICATION_FAILED: u16 = 24;
    /// SINGLE_PAIR_REQUIRED
    pub const SINGLE_PAIR_REQUIRED: u16 = 34;
    /// NO_ADDITIONAL_SAS
    pub const NO_ADDITIONAL_SAS: u16 = 35;
    /// INTERNAL_ADDRESS_FAILURE
    pub const INTERNAL_ADDRESS_FAILURE: u16 = 36;
    /// FAILED_CP_REQUIRED
    pub const FAILED_CP_REQUIRED: u16 = 37;
    /// TS_UNACCEPTABLE
    pub const TS_UNACCEPTABLE: u16 = 38;
    /// INVALID_SELECTORS
    pub const INVALID_SELECTORS: u16 = 39;
    /// TEMPORARY_FAILURE
    pub const TEMPORARY_FAILURE: u16 = 43;
    /// CHILD_SA_NOT_FOUND
    pub const CHILD_SA_NOT_FOUND: u16 = 44;
    /// INITIAL_CONTACT
    pub const INITIAL_CONTACT: u16 = 16384;
    /// SET_WINDOW_SIZE
    pub const SET_WINDOW_SIZE: u16 = 16385;
    /// ADDITIONAL_TS_POSSIBLE
    pub const ADDITIONAL_TS_POSSIBLE: u16 = 16386;
    /// IPCOMP_SUPPORTED
    pub const IPCOMP_SUPPORTED: u16 = 16387;
    /// NAT_DETECTION_SOURCE_IP
    pub const NAT_DETECTION_SOURCE_IP: u16 = 16388;
    /// NAT_DETECTION_DESTINATION_IP
    pub const NAT_DETECTION_DESTINATION_IP: u16 = 16389;
    /// COOKIE
    pub const COOKIE: u16 = 16390;
    /// USE_TRANSPORT_MODE
    pub const USE_TRANSPORT_MODE: u16 = 16391;
    /// REKEY_SA
    pub const REKEY_SA: u16 = 16393;
    /// ESP_TFC_PADDING_NOT_SUPPORTED
    pub const ESP_TFC_PADDING_NOT_SUPPORTED: u16 = 16394;
    /// NON_FIRST_FRAGMENTS_ALSO
    pub const NON_FIRST_FRAGMENTS_ALSO: u16 = 16395;
    /// MOBIKE_SUPPORTED (RFC 4555)
    pub const MOBIKE_SUPPORTED: u16 = 16396;
    /// FRAGMENTATION_SUPPORTED (RFC 7383)
    pub const FRAGMENTATION_SUPPORTED: u16 = 16430;
    /// SIGNATURE_HASH_ALGORITHMS (RFC 7427)
    pub const SIGNATURE_HASH_ALGORITHMS: u16 = 16431;
}

/// Errors from parsing IKE bytes. None of them panics; each names what was wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// Fewer bytes than a field needs.
    #[error("truncated {what}: need {need} bytes, have {have}")]
    Truncated {
        /// which structure
        what: &'static str,
        /// bytes needed
        need: usize,
        /// bytes present
        have: usize,
    },
    /// A length field that lies (too small or beyond the data).
    #[error("bad length {len} in {what}")]
    BadLength {
        /// which structure
        what: &'static str,
        /// the length found
        len: usize,
    },
    /// Major version is not 2 (§2.5).
    #[error("unsupported IKE major version {0}")]
    InvalidMajorVersion(u8),
    /// The header length does not match the datagram.
    #[error("IKE header length {header} does not match datagram length {actual}")]
    LengthMismatch {
        /// header length field
        header: usize,
        /// datagram length
        actual: usize,
    },
    /// An unknown payload with the critical bit set (§2.5).
    #[error("unsupported critical payload type {0}")]
    UnsupportedCritical(u8),
    /// The SK payload must be the last payload of the outer chain (§3.14).
    #[error("encrypted payload is not the last payload")]
    SkNotLast,
    /// A value that cannot be right (e.g. an unknown TS type).
    #[error("invalid {0}")]
    Invalid(&'static str),
}

/// The fixed IKE header (RFC 7296 §3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// IKE SA Initiator's SPI.
    pub spi_i: u64,
    /// IKE SA Responder's SPI (zero in the first IKE_SA_INIT request).
    pub spi_r: u64,
    /// Type of the first payload.
    pub next_payload: u8,
    /// Major (high nibble) and minor version; 0x20 for IKEv2.
    pub version: u8,
    /// Exchange type.
    pub exchange: u8,
    /// Flags (I, V, R).
    pub flags: u8,
    /// Message ID.
    pub message_id: u32,
    /// Length of the whole message.
    pub length: u32,
}

impl Header {
    /// Parse the header of a datagram without looking at the payloads. Checks the
    /// major version and that the length field matches the datagram.
    //= https://www.rfc-editor.org/rfc/rfc7296#section-3.1
    //# Length (4 octets, unsigned integer) - Length of the total message
    //# (header + payloads) in octets.
    pub fn parse(data: &[u8]) -> Result<Header, ParseError> {
        let mut r = Reader::new(data, "IKE header");
        let h = Header {
            spi_i: r.u64()?,
            spi_r: r.u64()?,
            next_payload: r.u8()?,
            version: r.u8()?,
            exchange: r.u8()?,
            flags: r.u8()?,
            message_id: r.u32()?,
            length: r.u32()?,
        };
        if h.version >> 4 != 2 {
            return Err(ParseError::InvalidMajorVersion(h.version >> 4));
        }
        if h.length as usize != data.len() {
            return Err(ParseError::LengthMismatch {
                header: h.length as usize,
                actual: data.len(),
            });
        }
        Ok(h)
    }

    /// Is the R (response) flag set?
    pub fn is_response(&self) -> bool {
        self.flags & flags::RESPONSE != 0
    }

    /// Is the I (original initiator) flag set?
    pub fn from_initiator(&self) -> bool {
        self.flags & flags::INITIATOR != 0
    }

    /// Write the 28 header bytes.
    pub fn emit(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.spi_i.to_be_bytes());
        out.extend_from_slice(&self.spi_r.to_be_bytes());
        out.push(self.next_payload);
        out.push(self.version);
        out.push(self.exchange);
        out.push(self.flags);
        out.extend_from_slice(&self.message_id.to_be_bytes());
        out.extend_from_slice(&self.length.to_be_bytes());
    }
}

/// Transform types (RFC 7296 §3.3.2).
pub mod transform_type {
    /// Encryption Algorithm (ENCR).
    pub const ENCR: u8 = 1;
    /// Pseudorandom Function (PRF).
    pub const PRF: u8 = 2;
    /// Integrity Algorithm (INTEG).
    pub const INTEG: u8 = 3;
    /// Diffie-Hellman group (D-H).
    pub const DH: u8 = 4;
    /// Extended Sequence Numbers (ESN).
    pub const ESN: u8 = 5;
}

/// Security protocol ids (RFC 7296 §3.3.1).
pub mod protocol {
    /// IKE
    pub const IKE: u8 = 1;
    /// AH
    pub const AH: u8 = 2;
    /// ESP
    pub const ESP: u8 = 3;
}

/// A whole IKE message: header and the outer payload chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// The fixed header (its `length` and `next_payload` are recomputed on emit).
    pub header: Header,
    /// The outer payloads; an encrypted message has one `Payload::Sk`.
    pub payloads: Vec<Payload>,
}

impl Message {
    /// Parse a datagram (IKE bytes only, no non-ESP marker).
    pub fn parse(data: &[u8]) -> Result<Message, ParseError> {
        let header = Header::parse(data)?;
        let payloads = parse_payloads(header.next_payload, data.get(HEADER_LEN..).unwrap_or(&[]))?;
        Ok(Message { header, payloads })
    }

    /// Emit to bytes, filling in the length and first payload type.
    pub fn emit(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(256);
        self.header.emit(&mut out);
        let first = emit_payloads(&self.payloads, &mut out);
        out[16] = first;
        let len = out.len() as u32;
        out[24..28].copy_from_slice(&len.to_be_bytes());
        out
    }

    /// All notify payloads.
    pub fn notifies(&self) -> impl Iterator<Item = &Notify> {
        notifies(&self.payloads)
    }
}

/// All notify payloads of a chain.
pub fn notifies(payloads: &[Payload]) -> impl Iterator<Item = &Notify> {
    payloads.iter().filter_map(|p| match p {
        Payload::Notify(n) => Some(n),
        _ => None,
    })
}

/// The first notify of a given type.
pub fn find_notify(payloads: &[Payload], kind: u16) -> Option<&Notify> {
    notifies(payloads).find(|n| n.kind == kind)
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod proptests;
