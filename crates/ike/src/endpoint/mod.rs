//! The IKEv2 state machine (RFC 7296), sans-IO in the quinn-proto shape: one
//! [`Endpoint`] holds every IKE SA of a gateway; the daemon feeds it datagrams and
//! time and drains transmits, events and the next timeout.
//!
//! Exchanges: IKE_SA_INIT (§1.2, with NAT detection §2.23, COOKIE §2.6,
//! INVALID_KE_PAYLOAD retry), IKE_AUTH with PSK (§2.15) and the first Child SA
//! (§1.2, TS narrowing §2.9, USE_TRANSPORT_MODE), CREATE_CHILD_SA (§1.3: new Child
//! SA, Child SA rekey, IKE SA rekey), INFORMATIONAL (§1.4: DELETE, liveness checks).
//! Each side keeps a window of one outstanding request (§2.3), retransmits with
//! exponential back-off and answers a retransmitted request from its cache (§2.1).

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use crate::config::{AuthConfig, ChildConfig, Config, EspProposal, IkeProposal, Mode, PeerConfig};
use crate::crypto::{self, CryptoError, DhPrivate, IkeKeys, IkeSuite, Prf, Rng, SkCipher};
use crate::message::{
    exchange, find_notify, flags, notify, protocol, Delete, Header, Identification, Message,
    Notify, ParseError, Payload, Proposal, TrafficSelector,
};
use crate::record::{ChildRecord, IkeRecord};

/// An IKE SA, named by our own SPI of it.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub struct IkeSaId(pub u64);

impl std::fmt::Display for IkeSaId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

/// A datagram to send. When either port is 4500 the daemon prepends the four-byte
/// non-ESP marker (RFC 3948 §2.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    /// Source address.
    pub local: SocketAddr,
    /// Destination address.
    pub remote: SocketAddr,
    /// IKE message bytes.
    pub payload: Vec<u8>,
}

/// An established Child SA, ready for the SAD.
#[derive(Clone, PartialEq, Eq)]
pub struct ChildSa {
    /// Child config name.
    pub name: String,
    /// Our inbound SPI.
    pub spi_in: u32,
    /// Outbound SPI (the peer's inbound).
    pub spi_out: u32,
    /// IP protocol of the SA (50 = ESP).
    pub protocol: u8,
    /// ENCR transform id (IANA).
    pub encr: u16,
    /// Encryption key length in bits (without salt).
    pub encr_key_bits: u16,
    /// INTEG transform id, None for AEAD.
    pub integ: Option<u16>,
    /// Extended sequence numbers.
    pub esn: bool,
    /// Inbound (encryption key incl. salt, integrity key).
    pub keys_in: (Vec<u8>, Vec<u8>),
    /// Outbound (encryption key incl. salt, integrity key).
    pub keys_out: (Vec<u8>, Vec<u8>),
    /// Local traffic selectors.
    pub ts_local: Vec<TrafficSelector>,
    /// Remote traffic selectors.
    pub ts_remote: Vec<TrafficSelector>,
    /// Our address.
    pub local: SocketAddr,
    /// The peer's address.
    pub remote: SocketAddr,
    /// ESP in UDP (RFC 3948) on port 4500.
    pub udp_encap: bool,
    /// Tunnel or transport.
    pub mode: Mode,
    /// Hard lifetime.
    pub lifetime: Duration,
}

impl std::fmt::Debug for ChildSa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChildSa")
            .field("name", &self.name)
            .field("spi_in", &format_args!("{:08x}", self.spi_in))
            .field("spi_out", &format_args!("{:08x}", self.spi_out))
            .field("encr", &self.encr)
            .field("encr_key_bits", &self.encr_key_bits)
            .field("integ", &self.integ)
            .field("esn", &self.esn)
            .field("ts_local", &self.ts_local)
            .field("ts_remote", &self.ts_remote)
            .field("local", &self.local)
            .field("remote", &self.remote)
            .field("udp_encap", &self.udp_encap)
            .field("mode", &self.mode)
            .finish_non_exhaustive()
    }
}

impl ChildSa {
    fn record(&self, proposal: EspProposal) -> ChildRecord {
        ChildRecord {
            name: self.name.clone(),
            spi_in: self.spi_in,
            spi_out: self.spi_out,
            protocol: self.protocol,
            proposal,
            ts_local: self.ts_local.clone(),
            ts_remote: self.ts_remote.clone(),
            mode: self.mode,
        }
    }
}

/// What happened, for the daemon.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// An IKE SA is established (IKE_AUTH done, or a rekeyed one).
    IkeSaUp {
        /// The SA.
        id: IkeSaId,
        /// Its recovery record.
        record: IkeRecord,
    },
    /// A Child SA to install into the SAD.
    ChildSaUp {
        /// Parent IKE SA.
        ike: IkeSaId,
        /// The Child SA.
        child: ChildSa,
    },
    /// A Child SA was rekeyed: install `new` and send with it; keep accepting on the
    /// old inbound SPI until its `ChildSaDeleted` arrives.
    ChildSaRekeyed {
        /// Parent IKE SA.
        ike: IkeSaId,
        /// Old inbound SPI.
        old_spi_in: u32,
        /// Old outbound SPI.
        old_spi_out: u32,
        /// The replacement.
        new: ChildSa,
    },
    /// Remove a Child SA from the SAD.
    ChildSaDeleted {
        /// Parent IKE SA.
        ike: IkeSaId,
        /// Inbound SPI.
        spi_in: u32,
        /// Outbound SPI.
        spi_out: u32,
    },
    /// A Child SA could not be created (the IKE SA may still be up).
    ChildSaFailed {
        /// Parent IKE SA.
        ike: IkeSaId,
        /// Child config name.
        name: String,
        /// Why (e.g. the notify the peer sent).
        reason: String,
    },
    /// The IKE SA `old` was replaced by `new` (its Child SAs move to `new`); an
    /// `IkeSaDeleted` for `old` follows.
    IkeSaRekeyed {
        /// Old SA.
        old: IkeSaId,
        /// New SA.
        new: IkeSaId,
        /// The new SA's record.
        record: IkeRecord,
    },
    /// An IKE SA is gone (its Child SAs have had their own `ChildSaDeleted`).
    IkeSaDeleted {
        /// The SA.
        id: IkeSaId,
        /// Why.
        reason: String,
    },
    /// Authentication failed: log material.
    AuthFailed {
        /// Peer address.
        remote: SocketAddr,
        /// Identity the peer claimed, if any.
        peer_id: Option<String>,
        /// Why.
        reason: String,
    },
    /// Store this recovery record (created or changed).
    RecordUpdated {
        /// The SA.
        id: IkeSaId,
        /// The record.
        record: IkeRecord,
    },
    /// Remove this SA's recovery record.
    RecordRemoved {
        /// The SA.
        id: IkeSaId,
    },
}

/// Errors from the commands of [`Endpoint`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// No peer with that name.
    #[error("no peer config named {0:?}")]
    UnknownPeer(String),
    /// No child with that name in the peer.
    #[error("peer {peer:?} has no child config named {child:?}")]
    UnknownChild {
        /// Peer.
        peer: String,
        /// Child.
        child: String,
    },
    /// The peer has no fixed address/local address to initiate to/from.
    #[error("peer {0:?} has no remote or local address to initiate with")]
    NoAddress(String),
    /// No such IKE SA.
    #[error("no IKE SA {0}")]
    UnknownSa(IkeSaId),
    /// No Child SA with that inbound SPI.
    #[error("no Child SA with inbound SPI {0:08x}")]
    UnknownChildSa(u32),
    /// The IKE SA is not established.
    #[error("IKE SA {0} is not established")]
    NotEstablished(IkeSaId),
    /// The peer config has no IKE proposal.
    #[error("peer {0:?} has no usable IKE proposal")]
    NoProposal(String),
    /// Crypto failure (e.g. DH keygen).
    #[error("crypto: {0}")]
    Crypto(#[from] CryptoError),
}

/// State of an IKE SA, for status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum SaState {
    /// Initiator: IKE_SA_INIT sent.
    InitSent,
    /// Initiator: IKE_AUTH sent.
    AuthSent,
    /// Responder: IKE_SA_INIT answered, waiting for IKE_AUTH (half-open).
    HalfOpen,
    /// Established.
    Established,
    /// Being deleted (or rekeyed by us): only our DELETE remains.
    Deleting,
    /// Rekeyed by the peer: waiting for the peer's DELETE of this old SA.
    Rekeyed,
}

/// One Child SA in status output.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ChildInfo {
    /// Name.
    pub name: String,
    /// Inbound SPI.
    pub spi_in: u32,
    /// Outbound SPI.
    pub spi_out: u32,
    /// Algorithms, strongSwan style.
    pub algorithms: String,
    /// Local selectors.
    pub ts_local: Vec<String>,
    /// Remote selectors.
    pub ts_remote: Vec<String>,
    /// Mode.
    pub mode: Mode,
    /// UDP encapsulation.
    pub udp_encap: bool,
    /// Seconds until the rekey (None when not scheduled).
    pub rekey_in_secs: Option<u64>,
}

/// One IKE SA in status output (`plexgate status`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct IkeSaInfo {
    /// Our SPI.
    pub id: IkeSaId,
    /// Peer config name (None while half-open).
    pub peer: Option<String>,
    /// State.
    pub state: SaState,
    /// Whether we initiated it.
    pub initiator: bool,
    /// Initiator SPI.
    pub spi_i: u64,
    /// Responder SPI.
    pub spi_r: u64,
    /// Our address.
    pub local: SocketAddr,
    /// Peer address.
    pub remote: SocketAddr,
    /// Our identity.
    pub local_id: Option<String>,
    /// Peer identity.
    pub remote_id: Option<String>,
    /// IKE algorithms.
    pub algorithms: Option<String>,
    /// NAT detected (either side).
    pub nat: bool,
    /// Seconds until the IKE rekey.
    pub rekey_in_secs: Option<u64>,
    /// Child SAs.
    pub children: Vec<ChildInfo>,
}

/// A Child SA to create: its config (TS possibly overridden by a record) and the SA it
/// replaces.
#[derive(Debug, Clone)]
struct ChildReq {
    cfg: ChildConfig,
    rekey_of: Option<u32>,
}

struct Child {
    sa: ChildSa,
    proposal: EspProposal,
    rekey_at: Option<Instant>,
    /// Set once a rekey replaced this SA (by either side): no further rekeys.
    rekeyed: bool,
    /// The peer rekeyed this SA while our own rekey of it was in flight (§2.8.1):
    /// (inbound SPI of the SA the peer's exchange created, lowest nonce of it).
    collision: Option<(u32, Vec<u8>)>,
}

enum Pending {
    Init,
    Auth {
        child: Option<(ChildReq, u32)>,
    },
    CreateChild {
        child: ChildReq,
        spi_in: u32,
        ni: Vec<u8>,
        dh: Option<DhPrivate>,
    },
    RekeyIke {
        new_spi: u64,
        ni: Vec<u8>,
        dh: Option<DhPrivate>,
    },
    DeleteChild {
        spi_in: u32,
    },
    DeleteIke,
    Dpd,
}

struct Outstanding {
    mid: u32,
    bytes: Vec<u8>,
    tries: u32,
    next: Instant,
    pending: Pending,
}

#[derive(Debug, Clone)]
enum Task {
    CreateChild(ChildReq),
    RekeyChild(u32),
    RekeyIke,
    DeleteChild(u32),
    DeleteIke,
    Dpd,
}

struct IkeSa {
    id: IkeSaId,
    peer: Option<Arc<PeerConfig>>,
    initiator: bool,
    spi_i: u64,
    spi_r: u64,
    state: SaState,
    local: SocketAddr,
    remote: SocketAddr,
    nat_local: bool,
    nat_remote: bool,
    proposal: Option<IkeProposal>,
    suite: Option<IkeSuite>,
    keys: Option<IkeKeys>,
    ni: Vec<u8>,
    nr: Vec<u8>,
    /// IKE_SA_INIT request and response, kept for AUTH until IKE_AUTH completes.
    init_req: Vec<u8>,
    init_resp: Vec<u8>,
    dh: Option<DhPrivate>,
    dh_group: u16,
    cookie: Option<Vec<u8>>,
    /// The peer's SIGNATURE_HASH_ALGORITHMS (RFC 7427 §4).
    peer_hashes: Vec<u16>,
    local_id: Option<Identification>,
    remote_id: Option<Identification>,
    my_mid: u32,
    peer_mid: u32,
    last_response: Option<(u32, Vec<u8>)>,
    outstanding: Option<Outstanding>,
    queue: VecDeque<Task>,
    children: Vec<Child>,
    first_child: Option<ChildReq>,
    rekey_at: Option<Instant>,
    dpd_at: Option<Instant>,
    expire_at: Option<Instant>,
    deadline: Option<Instant>,
}

impl IkeSa {
    fn new(id: IkeSaId, initiator: bool, local: SocketAddr, remote: SocketAddr) -> IkeSa {
        IkeSa {
            id,
            peer: None,
            initiator,
            spi_i: 0,
            spi_r: 0,
            state: SaState::InitSent,
            local,
            remote,
            nat_local: false,
            nat_remote: false,
            proposal: None,
            suite: None,
            keys: None,
            ni: Vec::new(),
            nr: Vec::new(),
            init_req: Vec::new(),
            init_resp: Vec::new(),
            dh: None,
            dh_group: 0,
            cookie: None,
            peer_hashes: Vec::new(),
            local_id: None,
            remote_id: None,
            my_mid: 0,
            peer_mid: 0,
            last_response: None,
            outstanding: None,
            queue: VecDeque::new(),
            children: Vec::new(),
            first_child: None,
            rekey_at: None,
            dpd_at: None,
            expire_at: None,
            deadline: None,
        }
    }

    fn udp_encap(&self) -> bool {
        self.nat_local || self.nat_remote || self.local.port() == 4500 || self.remote.port() == 4500
    }

    fn next_deadline(&self) -> Option<Instant> {
        let mut d = [
            self.outstanding.as_ref().map(|o| o.next),
            self.expire_at,
            if self.outstanding.is_none() {
                self.rekey_at
            } else {
                None
            },
            if self.outstanding.is_none() {
                self.dpd_at
            } else {
                None
            },
        ]
        .into_iter()
        .flatten()
        .min();
        if self.state == SaState::Established && self.outstanding.is_none() {
            for c in &self.children {
                if let Some(r) = c.rekey_at {
                    d = Some(d.map_or(r, |x: Instant| x.min(r)));
                }
            }
        }
        d
    }

    /// (SK_e, SK_a) for messages we send / we receive.
    fn out_keys(&self) -> Option<(&[u8], &[u8])> {
        let k = self.keys.as_ref()?;
        Some(if self.initiator {
            (&k.sk_ei, &k.sk_ai)
        } else {
            (&k.sk_er, &k.sk_ar)
        })
    }
    fn in_keys(&self) -> Option<(&[u8], &[u8])> {
        let k = self.keys.as_ref()?;
        Some(if self.initiator {
            (&k.sk_er, &k.sk_ar)
        } else {
            (&k.sk_ei, &k.sk_ai)
        })
    }

    fn header(&self, exch: u8, mid: u32, response: bool) -> Header {
        Header {
            spi_i: self.spi_i,
            spi_r: self.spi_r,
            next_payload: 0,
            version: 0x20,
            exchange: exch,
            flags: if self.initiator { flags::INITIATOR } else { 0 }
                | if response { flags::RESPONSE } else { 0 },
            message_id: mid,
            length: 0,
        }
    }

    fn record(&self) -> Option<IkeRecord> {
        Some(IkeRecord {
            peer: self.peer.as_ref()?.name.clone(),
            local: self.local,
            remote: self.remote,
            nat_local: self.nat_local,
            nat_remote: self.nat_remote,
            initiator: self.initiator,
            spi_i: self.spi_i,
            spi_r: self.spi_r,
            local_id: self.local_id.clone()?,
            remote_id: self.remote_id.clone()?,
            proposal: self.proposal?,
            children: self
                .children
                .iter()
                .map(|c| c.sa.record(c.proposal))
                .collect(),
        })
    }

    fn size_estimate(&self) -> usize {
        let mut n = std::mem::size_of::<IkeSa>();
        n += self.ni.capacity()
            + self.nr.capacity()
            + self.init_req.capacity()
            + self.init_resp.capacity();
        n += self.keys.as_ref().map_or(0, |k| {
            k.sk_d.capacity()
                + k.sk_ai.capacity()
                + k.sk_ar.capacity()
                + k.sk_ei.capacity()
                + k.sk_er.capacity()
                + k.sk_pi.capacity()
                + k.sk_pr.capacity()
        });
        n += self.last_response.as_ref().map_or(0, |(_, b)| b.capacity());
        n += self.outstanding.as_ref().map_or(0, |o| {
            o.bytes.capacity() + std::mem::size_of::<Outstanding>()
        });
        n += self.local_id.as_ref().map_or(0, |i| i.data.capacity())
            + self.remote_id.as_ref().map_or(0, |i| i.data.capacity());
        for c in &self.children {
            n += std::mem::size_of::<Child>() + c.sa.name.capacity();
            n += c.sa.keys_in.0.capacity()
                + c.sa.keys_in.1.capacity()
                + c.sa.keys_out.0.capacity()
                + c.sa.keys_out.1.capacity();
            n += (c.sa.ts_local.capacity() + c.sa.ts_remote.capacity())
                * std::mem::size_of::<TrafficSelector>();
        }
        n
    }
}

/// Cookie secrets (§2.6), rotated every few minutes; the previous one still verifies.
struct CookieState {
    secret: [u8; 32],
    prev: [u8; 32],
    version: u8,
    rotate_at: Option<Instant>,
}

const COOKIE_ROTATE: Duration = Duration::from_secs(300);

/// All IKE SAs of one gateway.
pub struct Endpoint {
    config: Arc<Config>,
    peers: Vec<Arc<PeerConfig>>,
    rng: Box<dyn Rng>,
    sas: HashMap<IkeSaId, IkeSa>,
    /// Half-open responder SAs by (peer address, SPIi): retransmitted IKE_SA_INIT.
    init_index: HashMap<(SocketAddr, u64), IkeSaId>,
    /// Child SAs by inbound SPI.
    child_index: HashMap<u32, IkeSaId>,
    timers: BTreeSet<(Instant, IkeSaId)>,
    transmits: VecDeque<Transmit>,
    events: VecDeque<Event>,
    cookie: CookieState,
    /// Maps the caller's `Instant`s to wall-clock time for certificate validity.
    wall: (Instant, SystemTime),
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint")
            .field("sas", &self.sas.len())
            .finish_non_exhaustive()
    }
}

/// Result of trying to open an encrypted message.
enum Opened {
    Payloads(Vec<Payload>),
    /// Decrypted but the inner chain had an unknown critical payload.
    Critical(u8),
    /// Integrity failure or garbage: drop silently (§2.21.1).
    Drop,
}

impl Endpoint {
    /// A new endpoint. `rng` supplies SPIs, nonces, IVs, jitter (ECDH keys come from
    /// ring's own RNG).
    pub fn new(config: Arc<Config>, mut rng: Box<dyn Rng>) -> Self {
        let mut secret = [0u8; 32];
        rng.fill(&mut secret);
        let peers = config.peers.iter().cloned().map(Arc::new).collect();
        Endpoint {
            config,
            peers,
            rng,
            sas: HashMap::new(),
            init_index: HashMap::new(),
            child_index: HashMap::new(),
            timers: BTreeSet::new(),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            cookie: CookieState {
                secret,
                prev: secret,
                version: 0,
                rotate_at: None,
            },
            wall: (Instant::now(), SystemTime::now()),
        }
    }

    /// Anchor the wall clock used for certificate validity: `at` corresponds to
    /// `wall` (by default, the moment [`Endpoint::new`] ran).
    pub fn set_wall_clock(&mut self, at: Instant, wall: SystemTime) {
        self.wall = (at, wall);
    }

    fn wall_time(&self, now: Instant) -> SystemTime {
        match now.checked_duration_since(self.wall.0) {
            Some(d) => self.wall.1 + d,
            None => self.wall.1 - self.wall.0.duration_since(now),
        }
    }

    /// Replace the configuration (reload). Established SAs keep the peer config they
    /// were made with until they are rekeyed or deleted; new exchanges use `config`.
    pub fn set_config(&mut self, config: Arc<Config>) {
        self.peers = config.peers.iter().cloned().map(Arc::new).collect();
        self.config = config;
    }

    /// The recovery records of all established IKE SAs (e.g. to resync the store).
    pub fn records(&self) -> Vec<(IkeSaId, IkeRecord)> {
        let mut v: Vec<(IkeSaId, IkeRecord)> = self
            .sas
            .values()
            .filter(|sa| sa.state == SaState::Established)
            .filter_map(|sa| sa.record().map(|r| (sa.id, r)))
            .collect();
        v.sort_by_key(|(id, _)| *id);
        v
    }

    /// Where NAT keepalives are due (RFC 3948 §2.3): `(local, remote)` of every
    /// established IKE SA with a NAT in front of us. The daemon sends a one-byte
    /// 0xFF datagram (no non-ESP marker) on each about every 20 s when idle.
    pub fn nat_keepalives(&self) -> Vec<(SocketAddr, SocketAddr)> {
        let mut v: Vec<(SocketAddr, SocketAddr)> = self
            .sas
            .values()
            .filter(|sa| sa.state == SaState::Established && sa.nat_local)
            .map(|sa| (sa.local, sa.remote))
            .collect();
        v.sort();
        v.dedup();
        v
    }

    /// Next datagram to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    /// Next event.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// When [`Endpoint::handle_timeout`] should be called next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.iter().next().map(|(t, _)| *t)
    }

    /// Number of IKE SAs (any state).
    pub fn len(&self) -> usize {
        self.sas.len()
    }

    /// No IKE SA at all?
    pub fn is_empty(&self) -> bool {
        self.sas.is_empty()
    }

    /// Number of half-open (responder, IKE_AUTH not yet seen) IKE SAs.
    pub fn half_open(&self) -> usize {
        self.init_index.len()
    }

    /// Approximate heap + inline bytes held for all IKE SAs (for `plexgate bench ike`).
    pub fn size_estimate(&self) -> usize {
        let per_entry = std::mem::size_of::<(IkeSaId, IkeSa)>() + 16;
        self.sas
            .values()
            .map(|s| s.size_estimate() + per_entry)
            .sum::<usize>()
            + self.child_index.len() * 16
            + self.timers.len() * 32
    }

    fn random_u64(&mut self) -> u64 {
        let mut b = [0u8; 8];
        self.rng.fill(&mut b);
        u64::from_be_bytes(b)
    }

    fn new_ike_spi(&mut self) -> u64 {
        loop {
            let s = self.random_u64();
            if s != 0 && !self.sas.contains_key(&IkeSaId(s)) {
                return s;
            }
        }
    }

    fn new_child_spi(&mut self) -> u32 {
        loop {
            let mut b = [0u8; 4];
            self.rng.fill(&mut b);
            let s = u32::from_be_bytes(b);
            // SPIs 1-255 are reserved by IANA (RFC 4303 §2.1).
            if s > 255 && !self.child_index.contains_key(&s) {
                return s;
            }
        }
    }

    fn nonce(&mut self) -> Vec<u8> {
        let mut n = vec![0u8; 32];
        self.rng.fill(&mut n);
        n
    }

    /// `base` minus a random jitter in `[0, jitter)`, from `now`.
    fn jittered(&mut self, now: Instant, base: Duration, jitter: Duration) -> Instant {
        let j = if jitter.is_zero() {
            Duration::ZERO
        } else {
            let r = self.random_u64() % (jitter.as_millis().max(1) as u64);
            Duration::from_millis(r)
        };
        now + base.saturating_sub(j)
    }

    fn reschedule(&mut self, sa: &mut IkeSa) {
        if let Some(d) = sa.deadline.take() {
            self.timers.remove(&(d, sa.id));
        }
        sa.deadline = sa.next_deadline();
        if let Some(d) = sa.deadline {
            self.timers.insert((d, sa.id));
        }
    }

    /// Take an SA out of the map to work on it; `put` puts it back.
    fn take(&mut self, id: IkeSaId) -> Option<IkeSa> {
        self.sas.remove(&id)
    }

    fn put(&mut self, mut sa: IkeSa) {
        self.reschedule(&mut sa);
        self.sas.insert(sa.id, sa);
    }

    /// Forget an SA (already taken out), reporting its children and itself.
    fn destroy(&mut self, mut sa: IkeSa, reason: &str, report: bool) {
        if let Some(d) = sa.deadline.take() {
            self.timers.remove(&(d, sa.id));
        }
        self.init_index.remove(&(sa.remote, sa.spi_i));
        if sa.state == SaState::HalfOpen {
            // Also by the address it was created from (it may have floated).
            self.init_index.retain(|_, v| *v != sa.id);
        }
        for c in sa.children.drain(..) {
            self.child_index.remove(&c.sa.spi_in);
            self.events.push_back(Event::ChildSaDeleted {
                ike: sa.id,
                spi_in: c.sa.spi_in,
                spi_out: c.sa.spi_out,
            });
        }
        if report {
            if sa.peer.is_some() && sa.keys.is_some() && sa.state != SaState::HalfOpen {
                self.events.push_back(Event::RecordRemoved { id: sa.id });
            }
            self.events.push_back(Event::IkeSaDeleted {
                id: sa.id,
                reason: reason.to_string(),
            });
        }
    }

    fn emit_record(&mut self, sa: &IkeSa) {
        if let Some(record) = sa.record() {
            self.events
                .push_back(Event::RecordUpdated { id: sa.id, record });
        }
    }

    fn seal(&mut self, sa: &IkeSa, header: &Header, payloads: &[Payload]) -> Option<Vec<u8>> {
        let mut inner = Vec::with_capacity(256);
        let first = crate::message::emit_payloads(payloads, &mut inner);
        let suite = sa.suite?;
        let (ke, ka) = sa.out_keys()?;
        let c = SkCipher {
            suite: &suite,
            key_e: ke,
            key_a: ka,
        };
        c.seal(header, first, &inner, self.rng.as_mut()).ok()
    }

    fn open(sa: &IkeSa, data: &[u8], msg: &Message) -> Opened {
        let (first, body_len) = match &msg.payloads[..] {
            [.., Payload::Sk { inner_first, body }] => (*inner_first, body.len()),
            _ => return Opened::Drop,
        };
        let (Some(suite), Some((ke, ka))) = (sa.suite, sa.in_keys()) else {
            return Opened::Drop;
        };
        let c = SkCipher {
            suite: &suite,
            key_e: ke,
            key_a: ka,
        };
        let Ok(inner) = c.open(data, body_len) else {
            return Opened::Drop;
        };
        match crate::message::parse_payloads(first, &inner) {
            Ok(p) => Opened::Payloads(p),
            Err(ParseError::UnsupportedCritical(t)) => Opened::Critical(t),
            Err(_) => Opened::Drop,
        }
    }

    fn send_request(
        &mut self,
        now: Instant,
        sa: &mut IkeSa,
        exch: u8,
        payloads: &[Payload],
        pending: Pending,
    ) {
        let mid = sa.my_mid;
        let header = sa.header(exch, mid, false);
        let Some(bytes) = self.seal(sa, &header, payloads) else {
            return;
        };
        sa.my_mid = sa.my_mid.wrapping_add(1);
        self.transmits.push_back(Transmit {
            local: sa.local,
            remote: sa.remote,
            payload: bytes.clone(),
        });
        sa.outstanding = Some(Outstanding {
            mid,
            bytes,
            tries: 0,
            next: now + self.config.limits.retransmit_base,
            pending,
        });
    }

    fn send_response(&mut self, sa: &mut IkeSa, exch: u8, mid: u32, payloads: &[Payload]) {
        let header = sa.header(exch, mid, true);
        let Some(bytes) = self.seal(sa, &header, payloads) else {
            return;
        };
        self.transmits.push_back(Transmit {
            local: sa.local,
            remote: sa.remote,
            payload: bytes.clone(),
        });
        sa.last_response = Some((mid, bytes));
    }

    /// An unencrypted, stateless reply to an IKE_SA_INIT request (§2.6, §1.2).
    fn reply_plain(
        &mut self,
        local: SocketAddr,
        remote: SocketAddr,
        req: &Header,
        payloads: Vec<Payload>,
    ) {
        let m = Message {
            header: Header {
                spi_i: req.spi_i,
                spi_r: 0,
                next_payload: 0,
                version: 0x20,
                exchange: req.exchange,
                flags: flags::RESPONSE,
                message_id: req.message_id,
                length: 0,
            },
            payloads,
        };
        self.transmits.push_back(Transmit {
            local,
            remote,
            payload: m.emit(),
        });
    }

    /// A datagram arrived (IKE bytes only: the non-ESP marker already removed).
    /// Malformed, unauthenticated or unexpected input is dropped (and answered with an
    /// error notify where RFC 7296 asks for one); it never panics.
    pub fn handle(&mut self, now: Instant, local: SocketAddr, remote: SocketAddr, data: &[u8]) {
        let Ok(header) = Header::parse(data) else {
            return;
        };
        if header.exchange == exchange::IKE_SA_INIT && !header.is_response() && header.spi_r == 0 {
            return self.handle_init_request(now, local, remote, &header, data);
        }
        // Our SPI is the one of the side we play in this SA.
        let ours = if header.from_initiator() {
            header.spi_r
        } else {
            header.spi_i
        };
        let Some(mut sa) = self.take(IkeSaId(ours)) else {
            return;
        };
        let consistent = sa.initiator != header.from_initiator()
            && sa.spi_i == header.spi_i
            && (sa.spi_r == header.spi_r
                || (sa.state == SaState::InitSent && header.exchange == exchange::IKE_SA_INIT));
        if !consistent {
            return self.put(sa);
        }
        if header.is_response() {
            self.handle_response(now, &mut sa, local, remote, &header, data);
        } else {
            self.handle_request(now, &mut sa, local, remote, &header, data);
        }
        self.finish(now, sa);
    }

    /// Put an SA back, or destroy it when it asked to be; start queued tasks.
    fn finish(&mut self, now: Instant, mut sa: IkeSa) {
        if sa.state == SaState::Deleting && sa.outstanding.is_none() && sa.queue.is_empty() {
            return self.destroy(sa, "deleted", false);
        }
        if sa.state == SaState::Established && sa.outstanding.is_none() {
            self.start_next_task(now, &mut sa);
        }
        self.put(sa);
    }

    fn handle_timeout_sa(&mut self, now: Instant, mut sa: IkeSa) {
        if let Some(t) = sa.expire_at {
            if t <= now {
                return self.destroy(sa, "half-open SA timed out", false);
            }
        }
        if let Some(o) = sa.outstanding.as_mut() {
            if o.next <= now {
                if o.tries >= self.config.limits.retransmit_tries {
                    if sa.state == SaState::Deleting {
                        // A rekeyed or failed SA whose DELETE went unanswered.
                        return self.destroy(sa, "", false);
                    }
                    let reason = if matches!(o.pending, Pending::DeleteIke) {
                        "deleted (peer did not confirm)"
                    } else {
                        "peer not responding (retransmits exhausted)"
                    };
                    return self.destroy(sa, reason, true);
                }
                o.tries += 1;
                //= https://www.rfc-editor.org/rfc/rfc7296#section-2.1
                //# retransmission times MUST increase exponentially
                o.next = now + self.config.limits.retransmit_base * (1u32 << o.tries.min(16));
                self.transmits.push_back(Transmit {
                    local: sa.local,
                    remote: sa.remote,
                    payload: o.bytes.clone(),
                });
            }
        }
        if sa.state == SaState::Established && sa.outstanding.is_none() {
            if sa.rekey_at.is_some_and(|t| t <= now) {
                sa.rekey_at = None;
                sa.queue.push_back(Task::RekeyIke);
            }
            if sa.dpd_at.is_some_and(|t| t <= now) {
                sa.dpd_at = None;
                sa.queue.push_back(Task::Dpd);
            }
            let due: Vec<u32> = sa
                .children
                .iter_mut()
                .filter(|c| c.rekey_at.is_some_and(|t| t <= now))
                .map(|c| {
                    c.rekey_at = None;
                    c.sa.spi_in
                })
                .collect();
            for s in due {
                sa.queue.push_back(Task::RekeyChild(s));
            }
        }
        self.finish(now, sa);
    }

    //= https://www.rfc-editor.org/rfc/rfc7296#section-2.6
    //# the responder should change the value of <secret> frequently
    fn rotate_cookie_secret(&mut self, now: Instant) {
        self.cookie.prev = self.cookie.secret;
        self.rng.fill(&mut self.cookie.secret);
        self.cookie.version = self.cookie.version.wrapping_add(1);
        self.cookie.rotate_at = Some(now + COOKIE_ROTATE);
    }

    /// Timers: retransmissions, rekeys, liveness checks, half-open expiry.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.cookie.rotate_at.is_some_and(|t| t <= now) {
            self.rotate_cookie_secret(now);
        }
        // Collect first: handling a timer may schedule new ones at `now`.
        let due: Vec<(Instant, IkeSaId)> = self
            .timers
            .iter()
            .take_while(|(t, _)| *t <= now)
            .copied()
            .collect();
        for (t, id) in due {
            self.timers.remove(&(t, id));
            let Some(mut sa) = self.take(id) else {
                continue;
            };
            sa.deadline = None;
            self.handle_timeout_sa(now, sa);
        }
    }
}

mod auth;
mod exchanges;
mod init;
mod tasks;

// ---------------------------------------------------------------------------------
// Helpers shared by the exchanges
// ---------------------------------------------------------------------------------

fn nonce_of(p: &[Payload]) -> Option<&Vec<u8>> {
    p.iter().find_map(|p| match p {
        Payload::Nonce(n) => Some(n),
        _ => None,
    })
}

fn ke_of(p: &[Payload]) -> Option<(u16, &Vec<u8>)> {
    p.iter().find_map(|p| match p {
        Payload::Ke { group, data } => Some((*group, data)),
        _ => None,
    })
}

fn sa_of(p: &[Payload]) -> Option<&Vec<Proposal>> {
    p.iter().find_map(|p| match p {
        Payload::Sa(s) => Some(s),
        _ => None,
    })
}

fn ts_of(p: &[Payload]) -> (Option<&Vec<TrafficSelector>>, Option<&Vec<TrafficSelector>>) {
    let tsi = p.iter().find_map(|p| match p {
        Payload::TsI(t) => Some(t),
        _ => None,
    });
    let tsr = p.iter().find_map(|p| match p {
        Payload::TsR(t) => Some(t),
        _ => None,
    });
    (tsi, tsr)
}

/// The first error notify (type < 16384) of a chain.
fn error_notify(p: &[Payload]) -> Option<&Notify> {
    crate::message::notifies(p).find(|n| n.kind < 16384)
}

fn notify_name(kind: u16) -> String {
    match kind {
        notify::NO_PROPOSAL_CHOSEN => "NO_PROPOSAL_CHOSEN".into(),
        notify::INVALID_KE_PAYLOAD => "INVALID_KE_PAYLOAD".into(),
        notify::AUTHENTICATION_FAILED => "AUTHENTICATION_FAILED".into(),
        notify::TS_UNACCEPTABLE => "TS_UNACCEPTABLE".into(),
        notify::SINGLE_PAIR_REQUIRED => "SINGLE_PAIR_REQUIRED".into(),
        notify::NO_ADDITIONAL_SAS => "NO_ADDITIONAL_SAS".into(),
        notify::INTERNAL_ADDRESS_FAILURE => "INTERNAL_ADDRESS_FAILURE".into(),
        notify::FAILED_CP_REQUIRED => "FAILED_CP_REQUIRED".into(),
        notify::TEMPORARY_FAILURE => "TEMPORARY_FAILURE".into(),
        notify::CHILD_SA_NOT_FOUND => "CHILD_SA_NOT_FOUND".into(),
        notify::INVALID_SYNTAX => "INVALID_SYNTAX".into(),
        notify::UNSUPPORTED_CRITICAL_PAYLOAD => "UNSUPPORTED_CRITICAL_PAYLOAD".into(),
        k => format!("notify {k}"),
    }
}

fn suite_of(p: &IkeProposal) -> Option<IkeSuite> {
    let s = IkeSuite {
        encr: p.encr,
        encr_bits: p.encr_bits,
        integ: p.integ,
        prf: Prf::from_id(p.prf)?,
        dh: p.dh,
    };
    s.validate().ok()?;
    Some(s)
}

fn natd_payloads(spi_i: u64, spi_r: u64, local: SocketAddr, remote: SocketAddr) -> [Payload; 2] {
    [
        Payload::notify(
            notify::NAT_DETECTION_SOURCE_IP,
            crypto::natd_hash(spi_i, spi_r, local).to_vec(),
        ),
        Payload::notify(
            notify::NAT_DETECTION_DESTINATION_IP,
            crypto::natd_hash(spi_i, spi_r, remote).to_vec(),
        ),
    ]
}

/// NAT detection from a peer's NAT_DETECTION_* notifies (§2.23): returns
/// (nat in front of us, nat in front of the peer), or None when the peer sent none.
//= https://www.rfc-editor.org/rfc/rfc7296#section-2.23
//# If none of the NAT_DETECTION_SOURCE_IP payload(s) received matches
//# the expected value of the source IP and port found from the IP header
//# of the packet containing the payload, it means that the system
//# sending those payloads is behind a NAT
fn detect_nat(
    p: &[Payload],
    spi_i: u64,
    spi_r: u64,
    local: SocketAddr,
    remote: SocketAddr,
) -> Option<(bool, bool)> {
    let src: Vec<&Notify> = crate::message::notifies(p)
        .filter(|n| n.kind == notify::NAT_DETECTION_SOURCE_IP)
        .collect();
    let dst = find_notify(p, notify::NAT_DETECTION_DESTINATION_IP)?;
    if src.is_empty() {
        return None;
    }
    let want_src = crypto::natd_hash(spi_i, spi_r, remote);
    let want_dst = crypto::natd_hash(spi_i, spi_r, local);
    let nat_remote = !src.iter().any(|n| n.data == want_src);
    let nat_local = dst.data != want_dst;
    Some((nat_local, nat_remote))
}

/// What the responder picked for a Child SA.
struct Selected {
    cfg: ChildConfig,
    esp: EspProposal,
    num: u8,
    spi_out: u32,
    ts_remote: Vec<TrafficSelector>,
    ts_local: Vec<TrafficSelector>,
    mode: Mode,
}

/// Narrow the peer's selectors against ours (§2.9): every non-empty intersection.
//= https://www.rfc-editor.org/rfc/rfc7296#section-2.9
//# the responder is allowed to narrow the choices by selecting a subset
//# of the traffic, for instance by eliminating or narrowing the range of
//# one or more members of the set of traffic selectors
fn narrow(theirs: &[TrafficSelector], ours: &[TrafficSelector]) -> Vec<TrafficSelector> {
    let mut out = Vec::new();
    for t in theirs {
        for o in ours {
            if let Some(x) = t.intersect(o) {
                if !out.contains(&x) {
                    out.push(x);
                }
            }
        }
    }
    out
}

/// Responder: pick a child config, an ESP proposal and the narrowed selectors.
fn select_child(
    pc: &PeerConfig,
    p: &[Payload],
    with_dh: Option<u16>,
    only: Option<&str>,
) -> Result<Selected, u16> {
    let (Some(props), (Some(tsi), Some(tsr))) = (sa_of(p), ts_of(p)) else {
        return Err(notify::INVALID_SYNTAX);
    };
    let transport = find_notify(p, notify::USE_TRANSPORT_MODE).is_some();
    let mut ts_ok = false;
    for cfg in pc
        .children
        .iter()
        .filter(|c| only.is_none_or(|n| n == c.name))
    {
        // TSi is the initiator's side: our remote.
        let ts_remote = narrow(tsi, &cfg.remote_ts);
        let ts_local = narrow(tsr, &cfg.local_ts);
        if ts_remote.is_empty() || ts_local.is_empty() {
            continue;
        }
        ts_ok = true;
        for esp in &cfg.esp_proposals {
            let with = with_dh.is_some() && esp.dh.is_some() && esp.dh == with_dh;
            if let Some(pr) = props.iter().find(|pr| esp.offered_by(pr, with)) {
                let mut esp = *esp;
                if !with {
                    esp.dh = None;
                }
                let spi_out = pr
                    .spi
                    .get(..4)
                    .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
                    .unwrap_or(0);
                return Ok(Selected {
                    cfg: cfg.clone(),
                    esp,
                    num: pr.num,
                    spi_out,
                    ts_remote,
                    ts_local,
                    mode: if transport && cfg.mode == Mode::Transport {
                        Mode::Transport
                    } else {
                        Mode::Tunnel
                    },
                });
            }
        }
    }
    Err(if ts_ok {
        notify::NO_PROPOSAL_CHOSEN
    } else {
        notify::TS_UNACCEPTABLE
    })
}

fn esp_sa_payload(cfg: &ChildConfig, spi_in: u32, with_dh: bool) -> Payload {
    Payload::Sa(
        cfg.esp_proposals
            .iter()
            .enumerate()
            .map(|(i, e)| Proposal {
                num: i as u8 + 1,
                protocol: protocol::ESP,
                spi: spi_in.to_be_bytes().to_vec(),
                transforms: e.transforms(with_dh),
                unknown_attribute: false,
            })
            .collect(),
    )
}

fn chosen_esp_payload(sel: &Selected, spi_in: u32) -> Payload {
    Payload::Sa(vec![Proposal {
        num: sel.num,
        protocol: protocol::ESP,
        spi: spi_in.to_be_bytes().to_vec(),
        transforms: sel.esp.transforms(sel.esp.dh.is_some()),
        unknown_attribute: false,
    }])
}

fn hash_algorithms_notify() -> Payload {
    Payload::notify(
        notify::SIGNATURE_HASH_ALGORITHMS,
        plexgate_pki::encode_hash_algorithms(plexgate_pki::SUPPORTED_HASH_ALGORITHMS),
    )
}

/// The hash algorithms a peer announced (empty when none or malformed).
fn peer_hashes(p: &[Payload]) -> Vec<u16> {
    find_notify(p, notify::SIGNATURE_HASH_ALGORITHMS)
        .and_then(|n| plexgate_pki::decode_hash_algorithms(&n.data).ok())
        .unwrap_or_default()
}

/// Our AUTH payload (and the CERT payloads that go with it) over `octets`.
fn make_auth(
    pc: &PeerConfig,
    prf: Prf,
    octets: &[u8],
    peer_hashes: &[u16],
) -> Result<(Vec<Payload>, Payload), String> {
    match &pc.auth {
        AuthConfig::Psk(k) => Ok((
            Vec::new(),
            Payload::Auth {
                method: 2,
                data: crypto::psk_auth(prf, k, &[octets]),
            },
        )),
        AuthConfig::Cert { credentials, .. } => {
            let (method, data) = credentials
                .signer
                .sign(octets, peer_hashes)
                .map_err(|e| format!("cannot sign our AUTH: {e}"))?;
            //= https://www.rfc-editor.org/rfc/rfc7296#section-3.6
            //# The first certificate provided MUST contain the public key used to
            //# verify the AUTH field.
            let certs = credentials
                .cert_payloads()
                .into_iter()
                .map(|d| Payload::Cert {
                    encoding: plexgate_pki::CERT_ENCODING_X509_SIGNATURE,
                    data: d.to_vec(),
                })
                .collect();
            Ok((certs, Payload::Auth { method, data }))
        }
    }
}

/// Check the peer's AUTH payload (and for certificates its CERT chain and that the
/// certificate names its ID). The error is a log line.
fn check_auth(
    pc: &PeerConfig,
    prf: Prf,
    octets: &[u8],
    id: &Identification,
    p: &[Payload],
    wall: SystemTime,
) -> Result<(), String> {
    let Some((method, data)) = p.iter().find_map(|x| match x {
        Payload::Auth { method, data } => Some((*method, data)),
        _ => None,
    }) else {
        return Err(format!("no AUTH payload from '{id}'"));
    };
    match &pc.auth {
        AuthConfig::Psk(k) => {
            if method != 2 {
                return Err(format!(
                    "peer '{id}' uses auth method {method}, config expects PSK"
                ));
            }
            if !ring_eq(&crypto::psk_auth(prf, k, &[octets]), data) {
                return Err(format!(
                    "pre-shared key AUTH of '{id}' does not verify (wrong PSK?)"
                ));
            }
            Ok(())
        }
        AuthConfig::Cert { trust, .. } => {
            let certs: Vec<&[u8]> = p
                .iter()
                .filter_map(|x| match x {
                    Payload::Cert { encoding, data }
                        if *encoding == plexgate_pki::CERT_ENCODING_X509_SIGNATURE =>
                    {
                        Some(data.as_slice())
                    }
                    _ => None,
                })
                .collect();
            let identity = plexgate_pki::Identity::from_type_and_data(id.id_type, &id.data)
                .map_err(|e| format!("peer ID '{id}': {e}"))?;
            let pa = plexgate_pki::PeerAuth {
                cert_payloads: &certs,
                identity: &identity,
                auth_method: method,
                auth_data: data,
                signed_octets: octets,
            };
            trust
                .authenticate_peer(&pa, wall)
                .map(|_| ())
                .map_err(|e| format!("certificate authentication of '{id}' failed: {e}"))
        }
    }
}

fn ring_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn esp_name(p: &EspProposal) -> String {
    let e = match p.encr {
        crypto::encr_id::AES_GCM_16 => format!("AES_GCM_16_{}", p.encr_bits),
        crypto::encr_id::AES_CBC => format!("AES_CBC_{}", p.encr_bits),
        crypto::encr_id::CHACHA20_POLY1305 => "CHACHA20_POLY1305".to_string(),
        x => format!("ENCR{x}"),
    };
    let i = match p.integ {
        Some(12) => "/HMAC_SHA2_256_128",
        Some(13) => "/HMAC_SHA2_384_192",
        Some(14) => "/HMAC_SHA2_512_256",
        _ => "",
    };
    let d = match p.dh {
        Some(g) => format!("/DH{g}"),
        None => String::new(),
    };
    format!(
        "ESP:{e}{i}{d}/{}",
        if p.esn { "EXT_SEQ" } else { "NO_EXT_SEQ" }
    )
}
