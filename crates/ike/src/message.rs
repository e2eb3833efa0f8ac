//! IKEv2 message codec (RFC 7296 §3): the fixed header, the generic payload chain and
//! every payload we meet, parsed with all lengths checked and emitted back to bytes.
//!
//! Parsing follows the smoltcp `Repr` idea: [`Message::parse`] checks every length
//! against the bytes actually present and returns owned, typed payloads, so nothing
//! downstream indexes untrusted bytes. The Encrypted payload (SK, §3.14) is kept as its
//! opaque body here; [`crate::crypto::SkCipher`] opens and seals it, and
//! [`parse_payloads`] parses the inner chain once it is decrypted.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

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

/// A bounds-checked reader over untrusted bytes.
struct Reader<'a> {
    data: &'a [u8],
    what: &'static str,
}

impl<'a> Reader<'a> {
    fn new(data: &'a [u8], what: &'static str) -> Self {
        Reader { data, what }
    }
    fn take(&mut self, n: usize) -> Result<&'a [u8], ParseError> {
        if self.data.len() < n {
            return Err(ParseError::Truncated {
                what: self.what,
                need: n,
                have: self.data.len(),
            });
        }
        let (a, b) = self.data.split_at(n);
        self.data = b;
        Ok(a)
    }
    fn u8(&mut self) -> Result<u8, ParseError> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16, ParseError> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }
    fn u32(&mut self) -> Result<u32, ParseError> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn u64(&mut self) -> Result<u64, ParseError> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_be_bytes(a))
    }
    fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.data)
    }
    fn is_empty(&self) -> bool {
        self.data.is_empty()
    }
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

/// One transform substructure (§3.3.2) with its key length attribute (§3.3.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Transform {
    /// Transform type.
    pub kind: u8,
    /// Transform id.
    pub id: u16,
    /// Key Length attribute (type 14), in bits.
    pub key_len: Option<u16>,
}

/// One proposal substructure (§3.3.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Proposal {
    /// Proposal number.
    pub num: u8,
    /// Protocol id (IKE, AH, ESP).
    pub protocol: u8,
    /// SPI (0, 4 or 8 bytes).
    pub spi: Vec<u8>,
    /// Transforms.
    pub transforms: Vec<Transform>,
    /// True if a transform carried an attribute we do not know (§3.3.6: that
    /// transform must not be chosen); we then reject the whole proposal.
    pub unknown_attribute: bool,
}

/// Identification payload body (§3.5).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Identification {
    /// ID type (1 IPv4, 2 FQDN, 3 RFC822, 5 IPv6, 9 DER_ASN1_DN, 11 KEY_ID).
    pub id_type: u8,
    /// Identification data.
    pub data: Vec<u8>,
}

/// ID types (RFC 7296 §3.5).
pub mod id_type {
    /// ID_IPV4_ADDR
    pub const IPV4_ADDR: u8 = 1;
    /// ID_FQDN
    pub const FQDN: u8 = 2;
    /// ID_RFC822_ADDR
    pub const RFC822_ADDR: u8 = 3;
    /// ID_IPV6_ADDR
    pub const IPV6_ADDR: u8 = 5;
    /// ID_DER_ASN1_DN
    pub const DER_ASN1_DN: u8 = 9;
    /// ID_KEY_ID
    pub const KEY_ID: u8 = 11;
}

impl Identification {
    /// The bytes the AUTH computation hashes: `IDType | RESERVED(3) | data` (§2.15).
    pub fn body(&self) -> Vec<u8> {
        let mut v = vec![self.id_type, 0, 0, 0];
        v.extend_from_slice(&self.data);
        v
    }
}

impl std::fmt::Display for Identification {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.id_type {
            id_type::IPV4_ADDR if self.data.len() == 4 => {
                let mut a = [0u8; 4];
                a.copy_from_slice(&self.data);
                write!(f, "{}", std::net::Ipv4Addr::from(a))
            }
            id_type::IPV6_ADDR if self.data.len() == 16 => {
                let mut a = [0u8; 16];
                a.copy_from_slice(&self.data);
                write!(f, "{}", std::net::Ipv6Addr::from(a))
            }
            id_type::FQDN | id_type::RFC822_ADDR => {
                write!(f, "{}", String::from_utf8_lossy(&self.data))
            }
            t => write!(f, "type{}:{}", t, hex::encode(&self.data)),
        }
    }
}

/// Notify payload (§3.10).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notify {
    /// Protocol id (0 when no SPI).
    pub protocol: u8,
    /// SPI (empty, or 4 bytes for a Child SA).
    pub spi: Vec<u8>,
    /// Notify message type.
    pub kind: u16,
    /// Notification data.
    pub data: Vec<u8>,
}

/// Delete payload (§3.11).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delete {
    /// Protocol id (1 IKE with no SPI, 3 ESP with 4-byte SPIs).
    pub protocol: u8,
    /// The SPIs (the sender's inbound SPIs for ESP).
    pub spis: Vec<u32>,
}

/// TS types (§3.13.1).
pub mod ts_type {
    /// TS_IPV4_ADDR_RANGE
    pub const IPV4_ADDR_RANGE: u8 = 7;
    /// TS_IPV6_ADDR_RANGE
    pub const IPV6_ADDR_RANGE: u8 = 8;
}

/// One traffic selector (§3.13.1): an address range, a port range and an IP protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct TrafficSelector {
    /// IP protocol id (0 = any).
    pub protocol: u8,
    /// First port.
    pub start_port: u16,
    /// Last port.
    pub end_port: u16,
    /// First address.
    pub start: IpAddr,
    /// Last address (same family as `start`).
    pub end: IpAddr,
}

impl TrafficSelector {
    /// A selector for one host, all protocols and ports.
    pub fn host(addr: IpAddr) -> Self {
        TrafficSelector {
            protocol: 0,
            start_port: 0,
            end_port: 65535,
            start: addr,
            end: addr,
        }
    }

    /// A selector for a prefix, all protocols and ports.
    pub fn prefix(net: IpAddr, len: u8) -> Self {
        match net {
            IpAddr::V4(a) => {
                let a = u32::from(a);
                let mask = if len == 0 {
                    0
                } else {
                    u32::MAX << (32 - len.min(32))
                };
                TrafficSelector {
                    protocol: 0,
                    start_port: 0,
                    end_port: 65535,
                    start: IpAddr::V4((a & mask).into()),
                    end: IpAddr::V4((a | !mask).into()),
                }
            }
            IpAddr::V6(a) => {
                let a = u128::from(a);
                let mask = if len == 0 {
                    0
                } else {
                    u128::MAX << (128 - len.min(128))
                };
                TrafficSelector {
                    protocol: 0,
                    start_port: 0,
                    end_port: 65535,
                    start: IpAddr::V6((a & mask).into()),
                    end: IpAddr::V6((a | !mask).into()),
                }
            }
        }
    }

    /// The intersection of two selectors (§2.9 narrowing), if any.
    pub fn intersect(&self, other: &TrafficSelector) -> Option<TrafficSelector> {
        let protocol = match (self.protocol, other.protocol) {
            (0, p) | (p, 0) => p,
            (a, b) if a == b => a,
            _ => return None,
        };
        let start_port = self.start_port.max(other.start_port);
        let end_port = self.end_port.min(other.end_port);
        if start_port > end_port {
            return None;
        }
        let (start, end) = match (self.start, self.end, other.start, other.end) {
            (IpAddr::V4(a1), IpAddr::V4(a2), IpAddr::V4(b1), IpAddr::V4(b2)) => {
                let s = u32::from(a1).max(u32::from(b1));
                let e = u32::from(a2).min(u32::from(b2));
                if s > e {
                    return None;
                }
                (IpAddr::V4(s.into()), IpAddr::V4(e.into()))
            }
            (IpAddr::V6(a1), IpAddr::V6(a2), IpAddr::V6(b1), IpAddr::V6(b2)) => {
                let s = u128::from(a1).max(u128::from(b1));
                let e = u128::from(a2).min(u128::from(b2));
                if s > e {
                    return None;
                }
                (IpAddr::V6(s.into()), IpAddr::V6(e.into()))
            }
            _ => return None,
        };
        Some(TrafficSelector {
            protocol,
            start_port,
            end_port,
            start,
            end,
        })
    }

    /// Does `self` lie entirely within `other`?
    pub fn is_subset_of(&self, other: &TrafficSelector) -> bool {
        self.intersect(other).as_ref() == Some(self)
    }
}

impl std::fmt::Display for TrafficSelector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.start == self.end {
            write!(f, "{}", self.start)?;
        } else {
            write!(f, "{}..{}", self.start, self.end)?;
        }
        if self.protocol != 0 || self.start_port != 0 || self.end_port != 65535 {
            write!(
                f,
                "[{}/{}-{}]",
                self.protocol, self.start_port, self.end_port
            )?;
        }
        Ok(())
    }
}

/// A parsed payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Payload {
    /// Security Association (§3.3).
    Sa(Vec<Proposal>),
    /// Key Exchange (§3.4).
    Ke {
        /// Diffie-Hellman group number.
        group: u16,
        /// Public value.
        data: Vec<u8>,
    },
    /// Nonce (§3.9).
    Nonce(Vec<u8>),
    /// IDi (§3.5).
    IdI(Identification),
    /// IDr (§3.5).
    IdR(Identification),
    /// Certificate (§3.6).
    Cert {
        /// Certificate encoding (4 = X.509 signature).
        encoding: u8,
        /// Certificate data.
        data: Vec<u8>,
    },
    /// Certificate request (§3.7).
    CertReq {
        /// Certificate encoding.
        encoding: u8,
        /// Certification authority hashes.
        data: Vec<u8>,
    },
    /// Authentication (§3.8).
    Auth {
        /// Auth method (1 RSA, 2 PSK, 9 ECDSA-256, 14 digital signature).
        method: u8,
        /// Authentication data.
        data: Vec<u8>,
    },
    /// Notify (§3.10).
    Notify(Notify),
    /// Delete (§3.11).
    Delete(Delete),
    /// Vendor ID (§3.12).
    Vendor(Vec<u8>),
    /// TSi (§3.13).
    TsI(Vec<TrafficSelector>),
    /// TSr (§3.13).
    TsR(Vec<TrafficSelector>),
    /// Encrypted and Authenticated (§3.14), still sealed.
    Sk {
        /// Type of the first payload inside.
        inner_first: u8,
        /// IV | ciphertext | ICV.
        body: Vec<u8>,
    },
    /// Configuration (§3.15), attributes kept raw.
    Cp {
        /// CFG type.
        cfg_type: u8,
        /// Raw attributes.
        attrs: Vec<u8>,
    },
    /// EAP (§3.16), not used: kept raw.
    Eap(Vec<u8>),
    /// A non-critical payload we do not know, skipped (§2.5).
    Unknown {
        /// Payload type.
        kind: u8,
        /// Body.
        data: Vec<u8>,
    },
}

impl Payload {
    /// The payload type number.
    pub fn kind(&self) -> u8 {
        use payload_type as t;
        match self {
            Payload::Sa(_) => t::SA,
            Payload::Ke { .. } => t::KE,
            Payload::Nonce(_) => t::NONCE,
            Payload::IdI(_) => t::IDI,
            Payload::IdR(_) => t::IDR,
            Payload::Cert { .. } => t::CERT,
            Payload::CertReq { .. } => t::CERTREQ,
            Payload::Auth { .. } => t::AUTH,
            Payload::Notify(_) => t::NOTIFY,
            Payload::Delete(_) => t::DELETE,
            Payload::Vendor(_) => t::VENDOR,
            Payload::TsI(_) => t::TSI,
            Payload::TsR(_) => t::TSR,
            Payload::Sk { .. } => t::SK,
            Payload::Cp { .. } => t::CP,
            Payload::Eap(_) => t::EAP,
            Payload::Unknown { kind, .. } => *kind,
        }
    }

    /// A status or error notify with no SPI.
    pub fn notify(kind: u16, data: Vec<u8>) -> Payload {
        Payload::Notify(Notify {
            protocol: 0,
            spi: Vec::new(),
            kind,
            data,
        })
    }

    fn emit_body(&self, out: &mut Vec<u8>) {
        match self {
            Payload::Sa(props) => {
                for (i, p) in props.iter().enumerate() {
                    emit_proposal(p, i + 1 == props.len(), out);
                }
            }
            Payload::Ke { group, data } => {
                out.extend_from_slice(&group.to_be_bytes());
                out.extend_from_slice(&[0, 0]);
                out.extend_from_slice(data);
            }
            Payload::Nonce(d) | Payload::Vendor(d) | Payload::Eap(d) => out.extend_from_slice(d),
            Payload::Unknown { data, .. } => out.extend_from_slice(data),
            Payload::IdI(id) | Payload::IdR(id) => out.extend_from_slice(&id.body()),
            Payload::Cert { encoding, data } | Payload::CertReq { encoding, data } => {
                out.push(*encoding);
                out.extend_from_slice(data);
            }
            Payload::Auth { method, data } => {
                out.extend_from_slice(&[*method, 0, 0, 0]);
                out.extend_from_slice(data);
            }
            Payload::Notify(n) => {
                out.push(n.protocol);
                out.push(n.spi.len() as u8);
                out.extend_from_slice(&n.kind.to_be_bytes());
                out.extend_from_slice(&n.spi);
                out.extend_from_slice(&n.data);
            }
            Payload::Delete(d) => {
                out.push(d.protocol);
                let spi_size = if d.protocol == protocol::IKE { 0 } else { 4 };
                out.push(spi_size);
                let n = if spi_size == 0 {
                    0
                } else {
                    d.spis.len() as u16
                };
                out.extend_from_slice(&n.to_be_bytes());
                if spi_size == 4 {
                    for s in &d.spis {
                        out.extend_from_slice(&s.to_be_bytes());
                    }
                }
            }
            Payload::TsI(ts) | Payload::TsR(ts) => {
                out.extend_from_slice(&[ts.len() as u8, 0, 0, 0]);
                for t in ts {
                    emit_ts(t, out);
                }
            }
            Payload::Sk { body, .. } => out.extend_from_slice(body),
            Payload::Cp { cfg_type, attrs } => {
                out.extend_from_slice(&[*cfg_type, 0, 0, 0]);
                out.extend_from_slice(attrs);
            }
        }
    }
}

fn emit_proposal(p: &Proposal, last: bool, out: &mut Vec<u8>) {
    let start = out.len();
    out.extend_from_slice(&[if last { 0 } else { 2 }, 0, 0, 0]);
    out.push(p.num);
    out.push(p.protocol);
    out.push(p.spi.len() as u8);
    out.push(p.transforms.len() as u8);
    out.extend_from_slice(&p.spi);
    for (i, t) in p.transforms.iter().enumerate() {
        let ts = out.len();
        out.extend_from_slice(&[if i + 1 == p.transforms.len() { 0 } else { 3 }, 0, 0, 0]);
        out.push(t.kind);
        out.push(0);
        out.extend_from_slice(&t.id.to_be_bytes());
        if let Some(k) = t.key_len {
            // TV format attribute: AF bit set, type 14 (Key Length).
            out.extend_from_slice(&0x800eu16.to_be_bytes());
            out.extend_from_slice(&k.to_be_bytes());
        }
        let len = (out.len() - ts) as u16;
        out[ts + 2..ts + 4].copy_from_slice(&len.to_be_bytes());
    }
    let len = (out.len() - start) as u16;
    out[start + 2..start + 4].copy_from_slice(&len.to_be_bytes());
}

fn emit_ts(t: &TrafficSelector, out: &mut Vec<u8>) {
    let (ty, len) = match t.start {
        IpAddr::V4(_) => (ts_type::IPV4_ADDR_RANGE, 16u16),
        IpAddr::V6(_) => (ts_type::IPV6_ADDR_RANGE, 40u16),
    };
    out.push(ty);
    out.push(t.protocol);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&t.start_port.to_be_bytes());
    out.extend_from_slice(&t.end_port.to_be_bytes());
    for a in [t.start, t.end] {
        match a {
            IpAddr::V4(a) => out.extend_from_slice(&a.octets()),
            IpAddr::V6(a) => out.extend_from_slice(&a.octets()),
        }
    }
}

/// Emit a payload chain; returns the type of the first payload (0 when empty).
/// `last_next` is the Next Payload value of the final payload (0 normally).
pub fn emit_payloads(payloads: &[Payload], out: &mut Vec<u8>) -> u8 {
    for (i, p) in payloads.iter().enumerate() {
        let next = match payloads.get(i + 1) {
            Some(n) => n.kind(),
            None => match p {
                // §3.14: the SK payload's Next Payload names the first inner payload.
                Payload::Sk { inner_first, .. } => *inner_first,
                _ => payload_type::NONE,
            },
        };
        let start = out.len();
        out.extend_from_slice(&[next, 0, 0, 0]);
        p.emit_body(out);
        let len = (out.len() - start) as u16;
        out[start + 2..start + 4].copy_from_slice(&len.to_be_bytes());
    }
    payloads
        .first()
        .map(|p| p.kind())
        .unwrap_or(payload_type::NONE)
}

/// Parse a chain of payloads starting with type `first`.
//= https://www.rfc-editor.org/rfc/rfc7296#section-2.5
//# If the critical flag is set and the payload type is unrecognized, the message
//# MUST be rejected and the response to the IKE request containing that payload
//# MUST include a Notify payload UNSUPPORTED_CRITICAL_PAYLOAD
pub fn parse_payloads(first: u8, data: &[u8]) -> Result<Vec<Payload>, ParseError> {
    let mut out = Vec::new();
    let mut r = Reader::new(data, "payload header");
    let mut next = first;
    while next != payload_type::NONE {
        let kind = next;
        next = r.u8()?;
        let critical = r.u8()? & 0x80 != 0;
        let len = r.u16()? as usize;
        if len < 4 {
            return Err(ParseError::BadLength {
                what: "generic payload header",
                len,
            });
        }
        let body = r.take(len - 4).map_err(|_| ParseError::BadLength {
            what: "generic payload header",
            len,
        })?;
        if kind == payload_type::SK || kind == payload_type::SKF {
            if !r.is_empty() {
                return Err(ParseError::SkNotLast);
            }
            if kind == payload_type::SKF {
                // RFC 7383 fragments are not reassembled: treat as unsupported.
                return Err(ParseError::Invalid("IKE fragment (SKF) payload"));
            }
            out.push(Payload::Sk {
                inner_first: next,
                body: body.to_vec(),
            });
            return Ok(out);
        }
        match parse_body(kind, body)? {
            Some(p) => out.push(p),
            None if critical => return Err(ParseError::UnsupportedCritical(kind)),
            None => out.push(Payload::Unknown {
                kind,
                data: body.to_vec(),
            }),
        }
    }
    if !r.is_empty() {
        // Trailing bytes after the last payload: the lengths lie.
        return Err(ParseError::BadLength {
            what: "payload chain (trailing bytes)",
            len: r.data.len(),
        });
    }
    Ok(out)
}

fn parse_body(kind: u8, body: &[u8]) -> Result<Option<Payload>, ParseError> {
    use payload_type as t;
    let mut r = Reader::new(body, "payload body");
    let p = match kind {
        t::SA => Payload::Sa(parse_sa(body)?),
        t::KE => {
            let group = r.u16()?;
            r.take(2)?;
            Payload::Ke {
                group,
                data: r.rest().to_vec(),
            }
        }
        t::NONCE => {
            //= https://www.rfc-editor.org/rfc/rfc7296#section-3.9
            //# The size of the Nonce Data MUST be between 16 and 256 octets, inclusive.
            if body.len() < 16 || body.len() > 256 {
                return Err(ParseError::BadLength {
                    what: "nonce",
                    len: body.len(),
                });
            }
            Payload::Nonce(body.to_vec())
        }
        t::IDI | t::IDR => {
            let id_type = r.u8()?;
            r.take(3)?;
            let id = Identification {
                id_type,
                data: r.rest().to_vec(),
            };
            if kind == t::IDI {
                Payload::IdI(id)
            } else {
                Payload::IdR(id)
            }
        }
        t::CERT | t::CERTREQ => {
            let encoding = r.u8()?;
            let data = r.rest().to_vec();
            if kind == t::CERT {
                Payload::Cert { encoding, data }
            } else {
                Payload::CertReq { encoding, data }
            }
        }
        t::AUTH => {
            let method = r.u8()?;
            r.take(3)?;
            Payload::Auth {
                method,
                data: r.rest().to_vec(),
            }
        }
        t::NOTIFY => {
            let protocol = r.u8()?;
            let spi_size = r.u8()? as usize;
            let kind = r.u16()?;
            let spi = r.take(spi_size)?.to_vec();
            Payload::Notify(Notify {
                protocol,
                spi,
                kind,
                data: r.rest().to_vec(),
            })
        }
        t::DELETE => {
            let protocol = r.u8()?;
            let spi_size = r.u8()? as usize;
            let n = r.u16()? as usize;
            let mut spis = Vec::new();
            match (protocol, spi_size) {
                (protocol::IKE, 0) => {}
                (protocol::ESP | protocol::AH, 4) => {
                    for _ in 0..n {
                        spis.push(r.u32()?);
                    }
                }
                _ => return Err(ParseError::Invalid("delete payload SPI size")),
            }
            if !r.is_empty() {
                return Err(ParseError::BadLength {
                    what: "delete payload",
                    len: body.len(),
                });
            }
            Payload::Delete(Delete { protocol, spis })
        }
        t::VENDOR => Payload::Vendor(body.to_vec()),
        t::TSI | t::TSR => {
            let n = r.u8()? as usize;
            r.take(3)?;
            let mut ts = Vec::with_capacity(n.min(16));
            for _ in 0..n {
                ts.push(parse_ts(&mut r)?);
            }
            if !r.is_empty() {
                return Err(ParseError::BadLength {
                    what: "traffic selector payload",
                    len: body.len(),
                });
            }
            if kind == t::TSI {
                Payload::TsI(ts)
            } else {
                Payload::TsR(ts)
            }
        }
        t::CP => {
            let cfg_type = r.u8()?;
            r.take(3)?;
            Payload::Cp {
                cfg_type,
                attrs: r.rest().to_vec(),
            }
        }
        t::EAP => Payload::Eap(body.to_vec()),
        _ => return Ok(None),
    };
    Ok(Some(p))
}

fn parse_ts(r: &mut Reader<'_>) -> Result<TrafficSelector, ParseError> {
    let ty = r.u8()?;
    let protocol = r.u8()?;
    let len = r.u16()? as usize;
    let alen = match ty {
        ts_type::IPV4_ADDR_RANGE => 4,
        ts_type::IPV6_ADDR_RANGE => 16,
        _ => return Err(ParseError::Invalid("traffic selector type")),
    };
    if len != 8 + 2 * alen {
        return Err(ParseError::BadLength {
            what: "traffic selector",
            len,
        });
    }
    let start_port = r.u16()?;
    let end_port = r.u16()?;
    let a = r.take(alen)?;
    let b = r.take(alen)?;
    let to_ip = |s: &[u8]| -> IpAddr {
        if s.len() == 4 {
            let mut x = [0u8; 4];
            x.copy_from_slice(s);
            IpAddr::from(x)
        } else {
            let mut x = [0u8; 16];
            x.copy_from_slice(s);
            IpAddr::from(x)
        }
    };
    Ok(TrafficSelector {
        protocol,
        start_port,
        end_port,
        start: to_ip(a),
        end: to_ip(b),
    })
}

fn parse_sa(body: &[u8]) -> Result<Vec<Proposal>, ParseError> {
    let mut r = Reader::new(body, "proposal");
    let mut props = Vec::new();
    loop {
        let last = r.u8()?;
        r.u8()?;
        let len = r.u16()? as usize;
        if len < 8 {
            return Err(ParseError::BadLength {
                what: "proposal",
                len,
            });
        }
        let pb = r.take(len - 4).map_err(|_| ParseError::BadLength {
            what: "proposal",
            len,
        })?;
        props.push(parse_proposal(pb)?);
        match last {
            0 => break,
            2 => continue,
            _ => return Err(ParseError::Invalid("proposal last-substructure field")),
        }
    }
    if !r.is_empty() {
        return Err(ParseError::BadLength {
            what: "security association payload",
            len: body.len(),
        });
    }
    Ok(props)
}

fn parse_proposal(pb: &[u8]) -> Result<Proposal, ParseError> {
    let mut r = Reader::new(pb, "proposal");
    let num = r.u8()?;
    let protocol = r.u8()?;
    let spi_size = r.u8()? as usize;
    let n = r.u8()? as usize;
    let spi = r.take(spi_size)?.to_vec();
    let mut transforms = Vec::with_capacity(n);
    let mut unknown_attribute = false;
    for i in 0..n {
        let last = r.u8()?;
        r.u8()?;
        let len = r.u16()? as usize;
        if len < 8 {
            return Err(ParseError::BadLength {
                what: "transform",
                len,
            });
        }
        let tb = r.take(len - 4).map_err(|_| ParseError::BadLength {
            what: "transform",
            len,
        })?;
        if (last == 0) != (i + 1 == n) {
            return Err(ParseError::Invalid("transform count"));
        }
        let mut tr = Reader::new(tb, "transform");
        let kind = tr.u8()?;
        tr.u8()?;
        let id = tr.u16()?;
        let mut key_len = None;
        while !tr.is_empty() {
            let at = tr.u16()?;
            if at & 0x8000 != 0 {
                let v = tr.u16()?;
                if at & 0x7fff == 14 {
                    key_len = Some(v);
                } else {
                    unknown_attribute = true;
                }
            } else {
                let l = tr.u16()? as usize;
                tr.take(l)?;
                unknown_attribute = true;
            }
        }
        transforms.push(Transform { kind, id, key_len });
    }
    if !r.is_empty() {
        return Err(ParseError::BadLength {
            what: "proposal (trailing bytes)",
            len: pb.len(),
        });
    }
    Ok(Proposal {
        num,
        protocol,
        spi,
        transforms,
        unknown_attribute,
    })
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
mod tests {
    use super::*;

    // IKE_SA_INIT request from strongSwan 5.9.8 (frame 1 of
    // /work/shared/captures/gcm128-x25519/exchange.pcap), as logged in its initiator.log
    // (the first 240 bytes of the AUTH octets are exactly that message).
    pub(crate) fn init_request() -> Vec<u8> {
        crate::testutil::capture_ike("gcm128-x25519", 0)
    }

    #[test]
    fn test_deconstruct_ike_sa_init() {
        let bytes = init_request();
        let m = Message::parse(&bytes).unwrap();
        assert_eq!(m.header.spi_i, 0x3e2a488b79d18798);
        assert_eq!(m.header.spi_r, 0);
        assert_eq!(m.header.exchange, exchange::IKE_SA_INIT);
        assert_eq!(m.header.flags, flags::INITIATOR);
        assert_eq!(m.payloads.len(), 8);
        match &m.payloads[0] {
            Payload::Sa(p) => {
                assert_eq!(p.len(), 1);
                assert_eq!(p[0].protocol, protocol::IKE);
                assert_eq!(
                    p[0].transforms,
                    vec![
                        Transform {
                            kind: 1,
                            id: 12,
                            key_len: Some(128)
                        },
                        Transform {
                            kind: 3,
                            id: 12,
                            key_len: None
                        },
                        Transform {
                            kind: 2,
                            id: 5,
                            key_len: None
                        },
                        Transform {
                            kind: 4,
                            id: 31,
                            key_len: None
                        },
                    ]
                );
            }
            p => panic!("not SA: {p:?}"),
        }
        assert!(matches!(&m.payloads[1], Payload::Ke { group: 31, data } if data.len() == 32));
        assert!(matches!(&m.payloads[2], Payload::Nonce(n) if n.len() == 32));
        let kinds: Vec<u16> = m.notifies().map(|n| n.kind).collect();
        assert_eq!(
            kinds,
            vec![16388, 16389, 16430, 16431, 16406 /* REDIRECT_SUPPORTED, RFC 5685 */]
        );
    }

    #[test]
    fn test_emit_round_trip_is_byte_exact() {
        let bytes = init_request();
        let m = Message::parse(&bytes).unwrap();
        assert_eq!(m.emit(), bytes);
    }

    #[test]
    fn lying_lengths_are_errors() {
        let mut bytes = init_request();
        // SA payload length field (offset 28+2) claims more than is there.
        bytes[30] = 0xff;
        bytes[31] = 0xff;
        assert!(Message::parse(&bytes).is_err());
        let bytes = init_request();
        assert!(matches!(
            Message::parse(&bytes[..100]),
            Err(ParseError::LengthMismatch { .. })
        ));
    }

    #[test]
    fn unknown_critical_payload_is_rejected() {
        let mut out = Vec::new();
        Header {
            spi_i: 1,
            spi_r: 0,
            next_payload: 200,
            version: 0x20,
            exchange: exchange::IKE_SA_INIT,
            flags: flags::INITIATOR,
            message_id: 0,
            length: 0,
        }
        .emit(&mut out);
        out.extend_from_slice(&[0, 0x80, 0, 4]);
        let len = out.len() as u32;
        out[24..28].copy_from_slice(&len.to_be_bytes());
        assert_eq!(
            Message::parse(&out),
            Err(ParseError::UnsupportedCritical(200))
        );
        out[29] = 0; // not critical: skipped
        let m = Message::parse(&out).unwrap();
        assert_eq!(
            m.payloads,
            vec![Payload::Unknown {
                kind: 200,
                data: vec![]
            }]
        );
    }

    #[test]
    fn ts_narrowing() {
        let a = TrafficSelector::prefix("10.0.0.0".parse().unwrap(), 8);
        let b = TrafficSelector::host("10.1.2.3".parse().unwrap());
        assert_eq!(a.intersect(&b), Some(b));
        assert!(b.is_subset_of(&a));
        let c = TrafficSelector::host("11.1.2.3".parse().unwrap());
        assert_eq!(a.intersect(&c), None);
        let v6 = TrafficSelector::prefix("2001:db8::".parse().unwrap(), 32);
        assert_eq!(a.intersect(&v6), None);
    }

    #[test]
    fn all_payloads_round_trip() {
        let payloads = vec![
            Payload::IdI(Identification {
                id_type: 3,
                data: b"client@example".to_vec(),
            }),
            Payload::Notify(Notify {
                protocol: 3,
                spi: vec![1, 2, 3, 4],
                kind: 16393,
                data: vec![],
            }),
            Payload::Auth {
                method: 2,
                data: vec![7; 32],
            },
            Payload::Delete(Delete {
                protocol: 3,
                spis: vec![0x11223344, 5],
            }),
            Payload::Delete(Delete {
                protocol: 1,
                spis: vec![],
            }),
            Payload::TsI(vec![TrafficSelector::host("192.168.1.1".parse().unwrap())]),
            Payload::TsR(vec![TrafficSelector::prefix(
                "2001:db8::".parse().unwrap(),
                64,
            )]),
            Payload::Cert {
                encoding: 4,
                data: vec![0x30, 0],
            },
            Payload::CertReq {
                encoding: 4,
                data: vec![9; 20],
            },
            Payload::Cp {
                cfg_type: 1,
                attrs: vec![0, 1, 0, 0],
            },
            Payload::Vendor(b"plexgate".to_vec()),
        ];
        let mut out = Vec::new();
        let first = emit_payloads(&payloads, &mut out);
        assert_eq!(parse_payloads(first, &out).unwrap(), payloads);
    }
}

#[cfg(test)]
mod proptests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

        /// Arbitrary bytes never panic the parser.
        #[test]
        fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..600)) {
            let _ = Message::parse(&data);
            let _ = Header::parse(&data);
            for first in [payload_type::SA, payload_type::TSI, payload_type::NOTIFY, payload_type::DELETE, payload_type::IDI, 99] {
                let _ = parse_payloads(first, &data);
            }
        }

        /// Real messages with a few bytes changed or cut never panic the parser, and
        /// whatever parses re-emits to bytes that parse to the same thing.
        #[test]
        fn mutated_real_messages_never_panic(
            which in 0usize..4,
            flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
            cut in any::<prop::sample::Index>(),
        ) {
            let mut m = crate::testutil::capture_ike("gcm128-x25519", which);
            for (i, b) in flips {
                let i = i.index(m.len());
                m[i] = b;
            }
            let _ = Message::parse(&m[..cut.index(m.len() + 1)]);
            if let Ok(parsed) = Message::parse(&m) {
                let again = Message::parse(&parsed.emit());
                // Unknown transform attributes are not re-emitted; all else is.
                let lossy = parsed.payloads.iter().any(|p| matches!(p, Payload::Sa(v) if v.iter().any(|x| x.unknown_attribute)));
                if lossy {
                    prop_assert!(again.is_ok());
                } else {
                    prop_assert_eq!(again.map(|x| x.payloads), Ok(parsed.payloads));
                }
            }
        }
    }
}
