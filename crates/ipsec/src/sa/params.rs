//! The parameters of one direction of a Child SA ([`SaParams`]): a
//! serializable record (keys as hex) from which a backup gateway can rebuild
//! the SA, and the enums and limits it is made of; [`SaParams::pair_from_keymat`]
//! builds both directions from IKE KEYMAT (RFC 7296 §2.17).

use crate::error::SaError;
use crate::selector::TrafficSelector;
use crate::transform::EspTransform;
use core::net::IpAddr;

/// Direction of an SA, seen from this gateway.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// Packets we receive and open.
    Inbound,
    /// Packets we seal and send.
    Outbound,
}

/// ESP mode (RFC 4301 §4.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// The inner data is a whole IP packet (next header 4 or 41).
    Tunnel,
    /// The inner data is a transport payload (next header = its protocol).
    Transport,
}

/// Lifetime limits; `None` means no limit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Limits {
    /// Inner bytes.
    pub bytes: Option<u64>,
    /// Packets.
    pub packets: Option<u64>,
    /// Seconds since the SA was installed.
    pub seconds: Option<u64>,
}

/// Soft (rekey) and hard (delete) lifetimes (RFC 4301 §4.4.2.1).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Lifetime {
    /// Reaching any soft limit asks for a rekey, once.
    pub soft: Limits,
    /// Reaching any hard limit kills the SA.
    pub hard: Limits,
}

/// NAT-T UDP encapsulation ports (RFC 3948).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct UdpEncapPorts {
    /// Our UDP port (normally 4500).
    pub local_port: u16,
    /// The peer's UDP port (4500 or a NAT-mapped port).
    pub remote_port: u16,
}

/// Everything needed to (re)create one direction of a Child SA.
///
/// Serializable so that it can go into a recovery record; keys are hex strings.
/// The keys are zeroized when a value is dropped.
/// Build both directions from IKE KEYMAT with [`SaParams::pair_from_keymat`].
#[derive(Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SaParams {
    /// SPI: for inbound SAs the one we allocated, for outbound the peer's.
    pub spi: u32,
    /// Inbound or outbound.
    pub direction: Direction,
    /// Algorithms.
    pub transform: EspTransform,
    /// Encryption key (AEAD: key || 4-byte salt).
    #[serde(with = "hex_bytes")]
    pub enc_key: Vec<u8>,
    /// Integrity key (empty for AEAD).
    #[serde(with = "hex_bytes")]
    pub integ_key: Vec<u8>,
    /// Extended (64-bit) sequence numbers negotiated (RFC 4304).
    pub esn: bool,
    /// Tunnel or transport mode.
    pub mode: Mode,
    /// Anti-replay window in packets (inbound; ≥ 128, default 1024); 0
    /// disables anti-replay (RFC 4303 §3.4.3 lets the receiver do so; the
    /// highest number received is still tracked for ESN).
    pub replay_window: u32,
    /// Soft and hard lifetimes.
    pub lifetime: Lifetime,
    /// Our side's traffic selectors (empty: any).
    pub local_ts: Vec<TrafficSelector>,
    /// The peer's traffic selectors (empty: any).
    pub remote_ts: Vec<TrafficSelector>,
    /// Our outer address.
    pub local_addr: IpAddr,
    /// The peer's outer address.
    pub remote_addr: IpAddr,
    /// UDP encapsulation (NAT-T), if used.
    pub encap: Option<UdpEncapPorts>,
    /// 0 for a new SA. Outbound: the last sequence number already used; the
    /// next packet gets `initial_seq + 1`. A backup that rebuilds an outbound
    /// SA from a record must set this past any number the old gateway may
    /// have used: a sequence number (= GCM IV) must never be reused under the
    /// same key. Inbound: the highest number already received; it and all
    /// below it count as seen (and ESN inference starts from it).
    pub initial_seq: u64,
    /// Name of the IKE peer (connection) this SA belongs to.
    pub peer: String,
    /// Name of the Child SA configuration.
    pub child: String,
}

impl Drop for SaParams {
    /// Keys are zeroized when the parameters go: when an SA is removed from the
    /// SAD, and for every copy (recovery records, key log) when it is dropped.
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.enc_key);
        zeroize::Zeroize::zeroize(&mut self.integ_key);
    }
}

impl core::fmt::Debug for SaParams {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("SaParams")
            .field("spi", &format_args!("{:#010x}", self.spi))
            .field("direction", &self.direction)
            .field("transform", &self.transform)
            .field("keys", &"<redacted>")
            .field("esn", &self.esn)
            .field("mode", &self.mode)
            .field("replay_window", &self.replay_window)
            .field("lifetime", &self.lifetime)
            .field("local_ts", &self.local_ts)
            .field("remote_ts", &self.remote_ts)
            .field("local_addr", &self.local_addr)
            .field("remote_addr", &self.remote_addr)
            .field("encap", &self.encap)
            .field("initial_seq", &self.initial_seq)
            .field("peer", &self.peer)
            .field("child", &self.child)
            .finish()
    }
}

mod hex_bytes {
    pub(super) fn serialize<S: serde::Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(v))
    }
    pub(super) fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let s: String = serde::Deserialize::deserialize(d)?;
        hex::decode(s).map_err(serde::de::Error::custom)
    }
}

/// What [`SaParams::pair_from_keymat`] needs besides the keys.
#[derive(Debug, Clone)]
pub struct ChildSaConfig {
    /// Negotiated transform.
    pub transform: EspTransform,
    /// ESN negotiated.
    pub esn: bool,
    /// Mode.
    pub mode: Mode,
    /// Replay window for the inbound SA.
    pub replay_window: u32,
    /// Lifetimes of both SAs.
    pub lifetime: Lifetime,
    /// Our traffic selectors (TSi if we initiated, else TSr).
    pub local_ts: Vec<TrafficSelector>,
    /// The peer's traffic selectors.
    pub remote_ts: Vec<TrafficSelector>,
    /// Our outer address.
    pub local_addr: IpAddr,
    /// The peer's outer address.
    pub remote_addr: IpAddr,
    /// NAT-T ports, if encapsulating.
    pub encap: Option<UdpEncapPorts>,
    /// IKE peer name.
    pub peer: String,
    /// Child SA name.
    pub child: String,
}

impl SaParams {
    /// Builds the inbound and outbound SA of a Child SA from its KEYMAT
    /// (RFC 7296 §2.17: KEYMAT = prf+(SK_d, [g^ir (new)] | Ni | Nr)).
    /// `inbound_spi` is the SPI we allocated, `outbound_spi` the peer's.
    /// Returns `(inbound, outbound)`.
    pub fn pair_from_keymat(
        cfg: &ChildSaConfig,
        keymat: &[u8],
        we_are_initiator: bool,
        inbound_spi: u32,
        outbound_spi: u32,
    ) -> Result<(SaParams, SaParams), SaError> {
        let (i2r, r2i) = cfg.transform.split_keymat(keymat)?;
        let (ink, outk) = if we_are_initiator {
            (r2i, i2r)
        } else {
            (i2r, r2i)
        };
        let mk = |spi, direction, mut k: crate::transform::ChildKeys| SaParams {
            spi,
            direction,
            transform: cfg.transform,
            enc_key: core::mem::take(&mut k.enc),
            integ_key: core::mem::take(&mut k.integ),
            esn: cfg.esn,
            mode: cfg.mode,
            replay_window: cfg.replay_window,
            lifetime: cfg.lifetime,
            local_ts: cfg.local_ts.clone(),
            remote_ts: cfg.remote_ts.clone(),
            local_addr: cfg.local_addr,
            remote_addr: cfg.remote_addr,
            encap: cfg.encap,
            initial_seq: 0,
            peer: cfg.peer.clone(),
            child: cfg.child.clone(),
        };
        Ok((
            mk(inbound_spi, Direction::Inbound, ink),
            mk(outbound_spi, Direction::Outbound, outk),
        ))
    }

    /// Outer source and destination addresses of this SA's packets.
    pub fn outer_src_dst(&self) -> (IpAddr, IpAddr) {
        match self.direction {
            Direction::Outbound => (self.local_addr, self.remote_addr),
            Direction::Inbound => (self.remote_addr, self.local_addr),
        }
    }
}
