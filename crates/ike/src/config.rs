//! Configuration the daemon maps the site policy onto: local identity, peers (address,
//! identity, PSK, IKE proposals, children with traffic selectors and ESP proposals,
//! lifetimes) and limits (half-open threshold for COOKIEs, retransmission).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use plexgate_pki::{LocalCredentials, TrustStore};

use serde::{Deserialize, Serialize};

use crate::crypto::{dh_id, encr_id, integ_id, prf_id};
use crate::message::{
    id_type, protocol, transform_type, Identification, Proposal, TrafficSelector, Transform,
};

/// An IKE SA proposal (one combination; list several in order of preference).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct IkeProposal {
    /// ENCR id: 12 AES-CBC, 20 AES-GCM-16.
    pub encr: u16,
    /// Key length in bits (128, 256).
    pub encr_bits: u16,
    /// INTEG id for non-AEAD (12, 13, 14), None for GCM.
    pub integ: Option<u16>,
    /// PRF id (5, 6, 7).
    pub prf: u16,
    /// DH group (31, 19, 20, 14).
    pub dh: u16,
}

impl IkeProposal {
    /// strongSwan `aes128-sha256-x25519`.
    pub const AES128_SHA256_X25519: IkeProposal = IkeProposal {
        encr: encr_id::AES_CBC,
        encr_bits: 128,
        integ: Some(integ_id::HMAC_SHA2_256_128),
        prf: prf_id::HMAC_SHA2_256,
        dh: dh_id::CURVE25519,
    };
    /// strongSwan `aes256gcm16-prfsha384-ecp384`.
    pub const AES256GCM16_PRFSHA384_ECP384: IkeProposal = IkeProposal {
        encr: encr_id::AES_GCM_16,
        encr_bits: 256,
        integ: None,
        prf: prf_id::HMAC_SHA2_384,
        dh: dh_id::ECP_384,
    };
    /// strongSwan `aes128gcm16-prfsha256-x25519`.
    pub const AES128GCM16_PRFSHA256_X25519: IkeProposal = IkeProposal {
        encr: encr_id::AES_GCM_16,
        encr_bits: 128,
        integ: None,
        prf: prf_id::HMAC_SHA2_256,
        dh: dh_id::CURVE25519,
    };

    /// As wire transforms.
    pub fn transforms(&self) -> Vec<Transform> {
        let mut t = vec![Transform {
            kind: transform_type::ENCR,
            id: self.encr,
            key_len: Some(self.encr_bits),
        }];
        if let Some(i) = self.integ {
            t.push(Transform {
                kind: transform_type::INTEG,
                id: i,
                key_len: None,
            });
        }
        t.push(Transform {
            kind: transform_type::PRF,
            id: self.prf,
            key_len: None,
        });
        t.push(Transform {
            kind: transform_type::DH,
            id: self.dh,
            key_len: None,
        });
        t
    }

    /// Does a received proposal offer this exact combination? (§3.3.6: the
    /// responder picks one transform of each type.)
    pub fn offered_by(&self, p: &Proposal) -> bool {
        if p.protocol != protocol::IKE || p.unknown_attribute {
            return false;
        }
        let has = |kind: u8, id: u16, kl: Option<u16>| {
            p.transforms
                .iter()
                .any(|t| t.kind == kind && t.id == id && t.key_len == kl)
        };
        has(transform_type::ENCR, self.encr, Some(self.encr_bits))
            && match self.integ {
                Some(i) => has(transform_type::INTEG, i, None),
                None => !p
                    .transforms
                    .iter()
                    .any(|t| t.kind == transform_type::INTEG && t.id != 0),
            }
            && has(transform_type::PRF, self.prf, None)
            && has(transform_type::DH, self.dh, None)
    }

    /// Parse a proposal that must carry exactly one transform of each type (a
    /// response, §3.3.6).
    pub fn from_chosen(p: &Proposal) -> Option<IkeProposal> {
        if p.protocol != protocol::IKE || p.unknown_attribute {
            return None;
        }
        let one = |kind: u8| {
            let mut it = p.transforms.iter().filter(|t| t.kind == kind);
            let a = it.next();
            if it.next().is_some() {
                None
            } else {
                a.copied()
            }
        };
        let e = one(transform_type::ENCR)?;
        let integ = match p
            .transforms
            .iter()
            .filter(|t| t.kind == transform_type::INTEG)
            .count()
        {
            0 => None,
            1 => one(transform_type::INTEG).map(|t| t.id),
            _ => return None,
        };
        Some(IkeProposal {
            encr: e.id,
            encr_bits: e.key_len?,
            integ,
            prf: one(transform_type::PRF)?.id,
            dh: one(transform_type::DH)?.id,
        })
    }

    /// strongSwan-like name, e.g. `AES_CBC_128/HMAC_SHA2_256_128/PRF_HMAC_SHA2_256/CURVE_25519`.
    pub fn name(&self) -> String {
        let e = match self.encr {
            encr_id::AES_GCM_16 => format!("AES_GCM_16_{}", self.encr_bits),
            encr_id::AES_CBC => format!("AES_CBC_{}", self.encr_bits),
            x => format!("ENCR{x}_{}", self.encr_bits),
        };
        let i = match self.integ {
            Some(12) => "/HMAC_SHA2_256_128".to_string(),
            Some(13) => "/HMAC_SHA2_384_192".to_string(),
            Some(14) => "/HMAC_SHA2_512_256".to_string(),
            Some(x) => format!("/INTEG{x}"),
            None => String::new(),
        };
        let p = match self.prf {
            5 => "PRF_HMAC_SHA2_256".to_string(),
            6 => "PRF_HMAC_SHA2_384".to_string(),
            7 => "PRF_HMAC_SHA2_512".to_string(),
            x => format!("PRF{x}"),
        };
        let d = match self.dh {
            14 => "MODP_2048".to_string(),
            19 => "ECP_256".to_string(),
            20 => "ECP_384".to_string(),
            31 => "CURVE_25519".to_string(),
            x => format!("DH{x}"),
        };
        format!("{e}{i}/{p}/{d}")
    }
}

/// An ESP proposal for a Child SA.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct EspProposal {
    /// ENCR id: 20 AES-GCM-16, 28 ChaCha20-Poly1305, 12 AES-CBC.
    pub encr: u16,
    /// Key length in bits (ignored for ChaCha20-Poly1305: 256).
    pub encr_bits: u16,
    /// INTEG id for non-AEAD (12 HMAC-SHA2-256-128).
    pub integ: Option<u16>,
    /// Extended sequence numbers.
    pub esn: bool,
    /// PFS group for CREATE_CHILD_SA (None: no KE in rekeys).
    pub dh: Option<u16>,
}

impl EspProposal {
    /// strongSwan `aes128gcm16`.
    pub const AES128GCM16: EspProposal = EspProposal {
        encr: encr_id::AES_GCM_16,
        encr_bits: 128,
        integ: None,
        esn: false,
        dh: None,
    };
    /// strongSwan `aes256gcm16`.
    pub const AES256GCM16: EspProposal = EspProposal {
        encr: encr_id::AES_GCM_16,
        encr_bits: 256,
        integ: None,
        esn: false,
        dh: None,
    };
    /// strongSwan `aes256-sha256`.
    pub const AES256_SHA256: EspProposal = EspProposal {
        encr: encr_id::AES_CBC,
        encr_bits: 256,
        integ: Some(integ_id::HMAC_SHA2_256_128),
        esn: false,
        dh: None,
    };

    fn key_len_attr(&self) -> Option<u16> {
        if self.encr == encr_id::CHACHA20_POLY1305 {
            None
        } else {
            Some(self.encr_bits)
        }
    }

    /// Wire transforms (with `dh` when `with_dh`).
    pub fn transforms(&self, with_dh: bool) -> Vec<Transform> {
        let mut t = vec![Transform {
            kind: transform_type::ENCR,
            id: self.encr,
            key_len: self.key_len_attr(),
        }];
        if let Some(i) = self.integ {
            t.push(Transform {
                kind: transform_type::INTEG,
                id: i,
                key_len: None,
            });
        }
        if let (true, Some(g)) = (with_dh, self.dh) {
            t.push(Transform {
                kind: transform_type::DH,
                id: g,
                key_len: None,
            });
        }
        t.push(Transform {
            kind: transform_type::ESN,
            id: self.esn as u16,
            key_len: None,
        });
        t
    }

    /// Is this combination offered by `p`? `with_dh`: a KE is required to match.
    pub fn offered_by(&self, p: &Proposal, with_dh: bool) -> bool {
        if p.protocol != protocol::ESP || p.unknown_attribute || p.spi.len() != 4 {
            return false;
        }
        let has = |kind: u8, id: u16, kl: Option<u16>| {
            p.transforms
                .iter()
                .any(|t| t.kind == kind && t.id == id && t.key_len == kl)
        };
        let integ_ok = match self.integ {
            Some(i) => has(transform_type::INTEG, i, None),
            None => !p
                .transforms
                .iter()
                .any(|t| t.kind == transform_type::INTEG && t.id != 0),
        };
        let dh_ok = match (with_dh, self.dh) {
            (true, Some(g)) => has(transform_type::DH, g, None),
            _ => !p
                .transforms
                .iter()
                .any(|t| t.kind == transform_type::DH && t.id != 0),
        };
        let esn_ok = has(transform_type::ESN, self.esn as u16, None)
            || (!self.esn && !p.transforms.iter().any(|t| t.kind == transform_type::ESN));
        has(transform_type::ENCR, self.encr, self.key_len_attr()) && integ_ok && dh_ok && esn_ok
    }

    /// Read back a chosen (single-transform-per-type) ESP proposal.
    pub fn from_chosen(p: &Proposal) -> Option<EspProposal> {
        if p.protocol != protocol::ESP || p.spi.len() != 4 || p.unknown_attribute {
            return None;
        }
        let e = p
            .transforms
            .iter()
            .find(|t| t.kind == transform_type::ENCR)?;
        Some(EspProposal {
            encr: e.id,
            encr_bits: e.key_len.unwrap_or(256),
            integ: p
                .transforms
                .iter()
                .find(|t| t.kind == transform_type::INTEG && t.id != 0)
                .map(|t| t.id),
            esn: p
                .transforms
                .iter()
                .any(|t| t.kind == transform_type::ESN && t.id == 1),
            dh: p
                .transforms
                .iter()
                .find(|t| t.kind == transform_type::DH && t.id != 0)
                .map(|t| t.id),
        })
    }
}

/// Tunnel or transport mode (USE_TRANSPORT_MODE, §1.3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
pub enum Mode {
    /// Tunnel mode (default).
    #[default]
    Tunnel,
    /// Transport mode.
    Transport,
}

/// How we and the peer authenticate (the same method in both directions).
#[derive(Clone)]
pub enum AuthConfig {
    /// Pre-shared key (RFC 7296 §2.15), AUTH method 2.
    Psk(Vec<u8>),
    /// Certificates (through `plexgate-pki`): we sign with `credentials` (RFC 7427
    /// method 14 when the peer sent SIGNATURE_HASH_ALGORITHMS, else classic ECDSA
    /// 9/10) and send its certificate chain in CERT payloads; the peer's CERT chain
    /// must verify against `trust` and name its ID.
    Cert {
        /// Our key, certificate and intermediates.
        credentials: Arc<LocalCredentials>,
        /// The CAs we trust for this peer.
        trust: Arc<TrustStore>,
    },
}

impl PartialEq for AuthConfig {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (AuthConfig::Psk(a), AuthConfig::Psk(b)) => a == b,
            (
                AuthConfig::Cert {
                    credentials: a,
                    trust: t,
                },
                AuthConfig::Cert {
                    credentials: b,
                    trust: u,
                },
            ) => Arc::ptr_eq(a, b) && Arc::ptr_eq(t, u),
            _ => false,
        }
    }
}

impl Eq for AuthConfig {}

impl std::fmt::Debug for AuthConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AuthConfig::Psk(_) => f.write_str("Psk(..)"),
            AuthConfig::Cert { credentials, .. } => {
                write!(
                    f,
                    "Cert({})",
                    credentials
                        .certificate
                        .subject()
                        .map(|s| s.to_string())
                        .unwrap_or_default()
                )
            }
        }
    }
}

/// An IKE identity as written in configs: `client@example` (RFC822), `gw.example`
/// (FQDN), an IPv4/IPv6 address, or `%any` (matches anything, responder only).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Identity(pub String);

impl Identity {
    fn pki(&self) -> Option<plexgate_pki::Identity> {
        plexgate_pki::Identity::parse(&self.0).ok()
    }

    /// The wire identification, following strongSwan's rules (as `plexgate-pki`
    /// parses them): contains `=` → ID_DER_ASN1_DN; an IP address → ID_IPV4/6_ADDR;
    /// `@name` → ID_FQDN; contains `@` → ID_RFC822_ADDR; else ID_FQDN.
    pub fn to_wire(&self) -> Identification {
        match self.pki() {
            Some(id) => Identification {
                id_type: id.id_type(),
                data: id.data(),
            },
            None => Identification {
                id_type: id_type::FQDN,
                data: self.0.as_bytes().to_vec(),
            },
        }
    }

    /// Does a received identification match this configured identity? (`%any`
    /// matches all; DNs compare by normalised RDNs.)
    pub fn matches(&self, id: &Identification) -> bool {
        if self.0 == "%any" {
            return true;
        }
        let theirs = plexgate_pki::Identity::from_type_and_data(id.id_type, &id.data);
        match (self.pki(), theirs) {
            (Some(plexgate_pki::Identity::Dn(a)), Ok(plexgate_pki::Identity::Dn(b))) => {
                a.matches(&b)
            }
            (Some(a), Ok(b)) => match (&a, &b) {
                (plexgate_pki::Identity::Fqdn(x), plexgate_pki::Identity::Fqdn(y))
                | (plexgate_pki::Identity::Rfc822(x), plexgate_pki::Identity::Rfc822(y)) => {
                    x.eq_ignore_ascii_case(y)
                }
                _ => a == b,
            },
            _ => self.to_wire() == *id,
        }
    }
}

/// A Child SA configuration (strongSwan `children.<name>`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChildConfig {
    /// Name (reported in events and status).
    pub name: String,
    /// Local traffic selectors.
    pub local_ts: Vec<TrafficSelector>,
    /// Remote traffic selectors.
    pub remote_ts: Vec<TrafficSelector>,
    /// ESP proposals, preferred first.
    pub esp_proposals: Vec<EspProposal>,
    /// Tunnel or transport.
    pub mode: Mode,
    /// Rekey after this long (jittered down by up to `rand_time`).
    pub rekey_time: Duration,
    /// Hard lifetime reported to the SAD.
    pub life_time: Duration,
}

/// A peer (strongSwan `connections.<name>`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerConfig {
    /// Connection name.
    pub name: String,
    /// Our identity towards this peer.
    pub local_id: Identity,
    /// The identity the peer must present (`%any` accepts any).
    pub remote_id: Identity,
    /// The peer's address (None: any; then we can only respond).
    pub remote_addr: Option<SocketAddr>,
    /// Local address to initiate from.
    pub local_addr: Option<SocketAddr>,
    /// Authentication.
    pub auth: AuthConfig,
    /// IKE proposals, preferred first.
    pub ike_proposals: Vec<IkeProposal>,
    /// Children.
    pub children: Vec<ChildConfig>,
    /// IKE SA rekey time (jittered down by up to `rand_time`).
    pub rekey_time: Duration,
    /// Jitter subtracted from rekey times (strongSwan `rand_time`).
    pub rand_time: Duration,
    /// Liveness check interval (None: off).
    pub dpd: Option<Duration>,
    /// Send INITIAL_CONTACT in IKE_AUTH.
    pub initial_contact: bool,
}

impl PeerConfig {
    /// Does this peer authenticate with certificates?
    pub fn uses_certs(&self) -> bool {
        matches!(self.auth, AuthConfig::Cert { .. })
    }

    /// A PSK peer with one child, strongSwan-like defaults (4 h IKE rekey, 1 h child
    /// rekey, 10 % jitter, no DPD).
    pub fn psk(
        name: &str,
        local_id: &str,
        remote_id: &str,
        psk: &[u8],
        child: ChildConfig,
    ) -> PeerConfig {
        PeerConfig {
            name: name.into(),
            local_id: Identity(local_id.into()),
            remote_id: Identity(remote_id.into()),
            remote_addr: None,
            local_addr: None,
            auth: AuthConfig::Psk(psk.to_vec()),
            ike_proposals: vec![
                IkeProposal::AES128_SHA256_X25519,
                IkeProposal::AES128GCM16_PRFSHA256_X25519,
                IkeProposal::AES256GCM16_PRFSHA384_ECP384,
            ],
            children: vec![child],
            rekey_time: Duration::from_secs(4 * 3600),
            rand_time: Duration::from_secs(360),
            dpd: None,
            initial_contact: true,
        }
    }
}

impl ChildConfig {
    /// A tunnel-mode child between two selector lists with the given ESP proposals.
    pub fn new(
        name: &str,
        local_ts: Vec<TrafficSelector>,
        remote_ts: Vec<TrafficSelector>,
        esp: Vec<EspProposal>,
    ) -> ChildConfig {
        ChildConfig {
            name: name.into(),
            local_ts,
            remote_ts,
            esp_proposals: esp,
            mode: Mode::Tunnel,
            rekey_time: Duration::from_secs(3600),
            life_time: Duration::from_secs(3960),
        }
    }
}

/// Limits and timers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    /// Above this many half-open IKE SAs, IKE_SA_INIT requests must carry a COOKIE.
    pub cookie_threshold: usize,
    /// Hard cap on half-open IKE SAs (further IKE_SA_INIT are dropped).
    pub max_half_open: usize,
    /// First retransmission timeout (doubles each time).
    pub retransmit_base: Duration,
    /// Retransmissions before giving up.
    pub retransmit_tries: u32,
    /// A half-open SA that does not complete within this is dropped.
    pub half_open_timeout: Duration,
    /// Child SAs per IKE SA a peer may create (rekeys excepted); beyond it
    /// CREATE_CHILD_SA gets NO_ADDITIONAL_SAS.
    pub max_child_sas: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            cookie_threshold: 1000,
            max_half_open: 20_000,
            retransmit_base: Duration::from_millis(500),
            retransmit_tries: 5,
            half_open_timeout: Duration::from_secs(30),
            max_child_sas: 64,
        }
    }
}

/// The whole IKE configuration of a gateway.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Config {
    /// Peers.
    pub peers: Vec<PeerConfig>,
    /// Limits.
    pub limits: Limits,
}

impl Config {
    /// A peer by name.
    pub fn peer(&self, name: &str) -> Option<&PeerConfig> {
        self.peers.iter().find(|p| p.name == name)
    }
}
