//! The payload types of an IKE message (RFC 7296 §3.2-§3.16) as owned, typed values:
//! proposals and transforms, identification, notify, delete and the [`Payload`] enum
//! itself. Parsing and emitting live in `parse.rs` and `emit.rs`.

use serde::{Deserialize, Serialize};

use super::{payload_type, TrafficSelector};

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
}
