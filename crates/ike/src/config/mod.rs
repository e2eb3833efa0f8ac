//! Configuration the daemon maps the site policy onto: local identity, peers (address,
//! identity, PSK, IKE proposals, children with traffic selectors and ESP proposals,
//! lifetimes) and limits (half-open threshold for COOKIEs, retransmission).
//!
//! Files: `proposal.rs` (IKE and ESP proposals, installable ESP transforms),
//! `identity.rs` (identities and their matching).

mod identity;
mod proposal;

pub use identity::Identity;
pub use proposal::{EspProposal, EspSupport, EspTransformId, IkeProposal};

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use plexgate_pki::{LocalCredentials, TrustStore};

use serde::{Deserialize, Serialize};

use crate::message::TrafficSelector;

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

/// The PSK (every copy of it) is wiped on drop.
impl Drop for AuthConfig {
    fn drop(&mut self) {
        if let AuthConfig::Psk(k) = self {
            zeroize::Zeroize::zeroize(k);
        }
    }
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

/// What to do with a Child SA when the daemon starts, or when the peer lost it
/// (strongSwan `start_action`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
pub enum StartAction {
    /// Wait for the peer or a command (default).
    #[default]
    None,
    /// Negotiate when matching traffic appears (the daemon's SPD acquire).
    Trap,
    /// Initiate at start.
    Start,
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
    /// Remote selectors that stand for the peer's own address (strongSwan
    /// `dynamic`): each is used with the peer's IKE address (its virtual IP once
    /// those exist) in place of its address range, keeping its protocol and ports;
    /// they come in addition to `remote_ts`. A peer can then never claim inner
    /// addresses other than its own.
    #[serde(default)]
    pub remote_dynamic: Vec<TrafficSelector>,
    /// ESP proposals, preferred first.
    pub esp_proposals: Vec<EspProposal>,
    /// Tunnel or transport.
    pub mode: Mode,
    /// Rekey after this long (jittered down by up to `rand_time`).
    pub rekey_time: Duration,
    /// Hard lifetime reported to the SAD.
    pub life_time: Duration,
    /// Whether this Child SA should exist without the peer asking: a Child SA the
    /// peer lost (CHILD_SA_NOT_FOUND, RFC 7296 §2.25) is created again when this is
    /// `Trap` or `Start`.
    #[serde(default)]
    pub start_action: StartAction,
}

/// Retransmission of our requests to a peer, as strongSwan's `retransmit_timeout`,
/// `retransmit_base` and `retransmit_tries`: the n-th retransmission (n from 0) is
/// sent `timeout * base^n` after the previous one; after `tries` retransmissions
/// without an answer the peer is declared dead (liveness checks included).
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct Retransmit {
    /// Wait for the first answer (strongSwan default 4 s).
    pub timeout: Duration,
    /// Growth of each further wait (strongSwan default 1.8; at least 1).
    pub base: f64,
    /// Retransmissions before giving up (strongSwan default 5).
    pub tries: u32,
}

impl Retransmit {
    /// strongSwan's defaults: 4 s, 1.8, 5 tries (about 165 s to give up).
    pub const STRONGSWAN: Retransmit = Retransmit {
        timeout: Duration::from_secs(4),
        base: 1.8,
        tries: 5,
    };

    /// The wait after the `n`-th send (0: the request itself), capped at an hour.
    pub fn wait(&self, n: u32) -> Duration {
        let f = self.base.max(1.0).powi(n.min(64) as i32);
        let secs = (self.timeout.as_secs_f64() * f).min(3600.0);
        Duration::from_secs_f64(secs)
    }
}

impl PartialEq for Retransmit {
    fn eq(&self, o: &Self) -> bool {
        self.timeout == o.timeout
            && self.base.to_bits() == o.base.to_bits()
            && self.tries == o.tries
    }
}

impl Eq for Retransmit {}

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
    /// Send INITIAL_CONTACT in IKE_AUTH (on the first IKE SA with the peer).
    pub initial_contact: bool,
    /// Retransmission timing towards this peer (None: [`Limits`]' doubling from
    /// `retransmit_base`, `retransmit_tries` times).
    pub retransmit: Option<Retransmit>,
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
            retransmit: None,
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
            remote_dynamic: Vec::new(),
            esp_proposals: esp,
            mode: Mode::Tunnel,
            rekey_time: Duration::from_secs(3600),
            life_time: Duration::from_secs(3960),
            start_action: StartAction::None,
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
    /// Largest IKE_SA_INIT request accepted, in bytes: a half-open SA keeps its
    /// request (for the AUTH check) and its response (for retransmissions), so
    /// this bounds the memory of each (RFC 7296 §2 asks for 3000 bytes at least).
    #[serde(default = "default_max_init_request")]
    pub max_init_request: usize,
    /// Child SAs per IKE SA a peer may create (rekeys excepted); beyond it
    /// CREATE_CHILD_SA gets NO_ADDITIONAL_SAS.
    pub max_child_sas: usize,
}

fn default_max_init_request() -> usize {
    8192
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            cookie_threshold: 1000,
            max_half_open: 20_000,
            retransmit_base: Duration::from_millis(500),
            retransmit_tries: 5,
            half_open_timeout: Duration::from_secs(30),
            max_init_request: default_max_init_request(),
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
