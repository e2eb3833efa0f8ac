//! `[[peer]]` and `[[peer.child]]`: where a peer may be, who it is, how it
//! authenticates, its proposals and lifetimes, and its Child SA configurations.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use ipnet::IpNet;

use crate::addr::TrafficSelector;
use crate::proposal::{EspProposal, IkeProposal};

/// Where an IKE peer may be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RemoteAddr {
    /// Anywhere (road warriors); we only respond.
    Any,
    /// A single host; we can initiate.
    Host(IpAddr),
    /// Anywhere in a subnet; we only respond.
    Subnet(IpNet),
}

/// An IKE identity (RFC 7296 §3.5 ID types).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Identity {
    /// `%any` / `any`: accept any identity the peer proves (remote side only).
    Any,
    /// ID_FQDN, written `@host.example` or `fqdn:host.example` or a bare name.
    Fqdn(String),
    /// ID_RFC822_ADDR, written `user@example` or `email:user@example`.
    Email(String),
    /// ID_IPV4_ADDR / ID_IPV6_ADDR.
    Ip(IpAddr),
    /// ID_DER_ASN1_DN, written `C=CH, O=Example, CN=gw` or `dn:...`.
    Dn(String),
}

/// How a peer authenticates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Auth {
    /// Pre-shared key read from `psk_file`.
    Psk {
        /// Resolved path of the PSK file (mode 0600).
        psk_file: PathBuf,
    },
    /// X.509 certificates.
    Cert {
        /// Our certificate (PEM or DER).
        cert: PathBuf,
        /// Our private key (mode 0600).
        private_key: PathBuf,
        /// CA certificates that may sign the peer's certificate.
        ca: Vec<PathBuf>,
    },
}

/// `[[peer]]`: an IKEv2 peer (or group of road warriors) and its Child SAs.
#[derive(Debug, Clone, PartialEq)]
pub struct Peer {
    /// Unique name.
    pub name: String,
    /// Where the peer may be.
    pub remote: RemoteAddr,
    /// Our identity.
    pub local_id: Identity,
    /// The identity the peer must prove.
    pub remote_id: Identity,
    /// Authentication method and its files.
    pub auth: Auth,
    /// IKE proposals in preference order (default `aes256gcm16-prfsha384-ecp384`,
    /// `aes128-sha256-x25519`).
    pub proposals: Vec<IkeProposal>,
    /// When to rekey the IKE SA (default 4 h).
    pub rekey_time: Duration,
    /// Hard IKE SA lifetime, above `rekey_time` (default rekey_time + 10 %).
    pub life_time: Duration,
    /// Dead peer detection interval; `None` = off (default 30 s).
    pub dpd_delay: Option<Duration>,
    /// How ESP travels to this peer (default `auto`).
    pub encap: Encap,
    /// When to retransmit an unanswered IKE request, and when to give up.
    pub retransmit: Retransmit,
    /// Child SAs.
    pub children: Vec<Child>,
}

impl Peer {
    /// The child named `name`.
    pub fn child(&self, name: &str) -> Option<&Child> {
        self.children.iter().find(|c| c.name == name)
    }
}

/// IKE retransmission, as strongSwan's `retransmit_timeout`, `retransmit_base`
/// and `retransmit_tries` (RFC 7296 §2.1 leaves the schedule to the
/// implementation): retransmission `n` (0 is the first send) waits
/// `timeout × base^n`; after `tries` retransmissions, the wait for the last one
/// ends the attempt (the peer is dead). Defaults 4 s, 1.8 and 5: the last wait
/// ends 165 s after the first send.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Retransmit {
    /// Wait before the first retransmission (default 4 s, at least 100 ms).
    pub timeout: Duration,
    /// Growth of each wait (default 1.8, at least 1.0).
    pub base: f64,
    /// Retransmissions before giving up (1-20, default 5).
    pub tries: u8,
}

impl Default for Retransmit {
    fn default() -> Self {
        Retransmit {
            timeout: Duration::from_secs(4),
            base: 1.8,
            tries: 5,
        }
    }
}

impl Retransmit {
    /// The wait after send `n` (0 = the original request, `tries` = the last
    /// retransmission): `timeout × base^n`. Validation keeps every wait under a
    /// day, so this does not overflow for `n <= tries`.
    pub fn wait(&self, n: u8) -> Duration {
        let secs = self.timeout.as_secs_f64() * self.base.powi(i32::from(n));
        Duration::try_from_secs_f64(secs).unwrap_or(Duration::MAX)
    }

    /// From the original request until the attempt is abandoned: the sum of
    /// the waits after the request and each of the `tries` retransmissions.
    pub fn give_up_after(&self) -> Duration {
        (0..=self.tries).map(|n| self.wait(n)).sum()
    }
}

/// How ESP to a peer is carried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encap {
    /// Plain ESP (IP protocol 50) unless NAT detection (RFC 7296 §2.23) finds a NAT;
    /// then ESP in UDP on the NAT-T port (RFC 3948).
    Auto,
    /// Always ESP in UDP: when we initiate, IKE starts on the NAT-T port, which
    /// RFC 7296 §2.23 allows "regardless of whether or not there is a NAT", so both
    /// ends carry ESP in UDP (strongSwan's `encap = yes`). Lets the gateway batch
    /// ESP with UDP segmentation offload.
    Udp,
}

/// ESP mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Tunnel mode (default).
    Tunnel,
    /// Transport mode.
    Transport,
}

/// What to do with a Child SA when the daemon starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartAction {
    /// Wait for the peer (default).
    None,
    /// Install a trap: negotiate when matching traffic appears.
    Trap,
    /// Initiate at start.
    Start,
}

/// Soft (rekey) and hard (expire) limits of a Child SA. Each soft limit is below
/// its hard limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChildLifetime {
    /// Rekey after this time (default 1 h).
    pub rekey_time: Duration,
    /// Delete after this time (default rekey_time + 10 %).
    pub life_time: Duration,
    /// Rekey after this many bytes (None = no limit).
    pub rekey_bytes: Option<u64>,
    /// Delete after this many bytes.
    pub life_bytes: Option<u64>,
    /// Rekey after this many packets.
    pub rekey_packets: Option<u64>,
    /// Delete after this many packets.
    pub life_packets: Option<u64>,
}

/// `[[peer.child]]`: a Child SA configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Child {
    /// Name, unique within its peer.
    pub name: String,
    /// Our side's traffic selectors. A selector that contains a DVIPA names
    /// exactly that DVIPA (host granularity, so SAs can move between gateways).
    pub local_ts: Vec<TrafficSelector>,
    /// The peer's traffic selectors.
    pub remote_ts: Vec<TrafficSelector>,
    /// ESP proposals (default `aes256gcm16`, `aes128gcm16`).
    pub esp_proposals: Vec<EspProposal>,
    /// Tunnel or transport.
    pub mode: Mode,
    /// Rekey and expiry limits.
    pub lifetime: ChildLifetime,
    /// Anti-replay window in packets, 128..=4096 (default 1024).
    pub replay_window: u32,
    /// What to do at start.
    pub start_action: StartAction,
}
