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

    /// Timers: retransmissions, rekeys, liveness checks, half-open expiry.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.cookie.rotate_at.is_some_and(|t| t <= now) {
            self.cookie.prev = self.cookie.secret;
            self.rng.fill(&mut self.cookie.secret);
            self.cookie.version = self.cookie.version.wrapping_add(1);
            self.cookie.rotate_at = Some(now + COOKIE_ROTATE);
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

// ---------------------------------------------------------------------------------
// IKE_SA_INIT
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

impl Endpoint {
    /// Start an IKE SA (and its first Child SA `child`) with a configured peer: on
    /// command or on an SPD PROTECT miss (acquire).
    pub fn initiate(&mut self, now: Instant, peer: &str, child: &str) -> Result<IkeSaId, Error> {
        let pc = self
            .peers
            .iter()
            .find(|p| p.name == peer)
            .cloned()
            .ok_or_else(|| Error::UnknownPeer(peer.into()))?;
        let cfg = pc
            .children
            .iter()
            .find(|c| c.name == child)
            .cloned()
            .ok_or_else(|| Error::UnknownChild {
                peer: peer.into(),
                child: child.into(),
            })?;
        let (Some(remote), Some(local)) = (pc.remote_addr, pc.local_addr) else {
            return Err(Error::NoAddress(peer.into()));
        };
        self.start_initiator(
            now,
            pc,
            local,
            remote,
            ChildReq {
                cfg,
                rekey_of: None,
            },
            Vec::new(),
        )
    }

    /// Takeover: renegotiate an IKE SA and all its Child SAs as initiator from a
    /// recovery record (same peer, addresses/NAT-T ports, selectors and mode; the PSK
    /// and proposals come from our config). The first child rides in IKE_AUTH, the
    /// others follow as CREATE_CHILD_SA. INITIAL_CONTACT (when configured) tells the
    /// peer to drop the SAs it still holds with the failed gateway.
    pub fn initiate_from_record(
        &mut self,
        now: Instant,
        rec: &IkeRecord,
    ) -> Result<IkeSaId, Error> {
        let pc = self
            .peers
            .iter()
            .find(|p| p.name == rec.peer)
            .cloned()
            .ok_or_else(|| Error::UnknownPeer(rec.peer.clone()))?;
        let mut reqs = Vec::new();
        for c in &rec.children {
            let mut cfg = pc
                .children
                .iter()
                .find(|x| x.name == c.name)
                .cloned()
                .ok_or_else(|| Error::UnknownChild {
                    peer: rec.peer.clone(),
                    child: c.name.clone(),
                })?;
            cfg.local_ts = c.ts_local.clone();
            cfg.remote_ts = c.ts_remote.clone();
            cfg.mode = c.mode;
            // Prefer the proposal that was in use.
            cfg.esp_proposals.retain(|p| *p != c.proposal);
            cfg.esp_proposals.insert(0, c.proposal);
            reqs.push(ChildReq {
                cfg,
                rekey_of: None,
            });
        }
        let mut rest = reqs.into_iter();
        let first = rest.next().or_else(|| {
            pc.children.first().cloned().map(|cfg| ChildReq {
                cfg,
                rekey_of: None,
            })
        });
        let Some(first) = first else {
            return Err(Error::UnknownChild {
                peer: rec.peer.clone(),
                child: String::new(),
            });
        };
        let mut ike = (*pc).clone();
        ike.ike_proposals.retain(|p| *p != rec.proposal);
        ike.ike_proposals.insert(0, rec.proposal);
        let remote = if rec.nat_local || rec.nat_remote {
            SocketAddr::new(rec.remote.ip(), rec.remote.port())
        } else {
            rec.remote
        };
        self.start_initiator(now, Arc::new(ike), rec.local, remote, first, rest.collect())
    }

    fn start_initiator(
        &mut self,
        now: Instant,
        pc: Arc<PeerConfig>,
        local: SocketAddr,
        remote: SocketAddr,
        first: ChildReq,
        more: Vec<ChildReq>,
    ) -> Result<IkeSaId, Error> {
        let prop = *pc
            .ike_proposals
            .first()
            .ok_or_else(|| Error::NoProposal(pc.name.clone()))?;
        let spi = self.new_ike_spi();
        let mut sa = IkeSa::new(IkeSaId(spi), true, local, remote);
        sa.spi_i = spi;
        sa.local_id = Some(pc.local_id.to_wire());
        sa.peer = Some(pc);
        sa.first_child = Some(first);
        sa.queue.extend(more.into_iter().map(Task::CreateChild));
        sa.dh_group = prop.dh;
        sa.ni = self.nonce();
        self.send_init(now, &mut sa)?;
        let id = sa.id;
        self.put(sa);
        Ok(id)
    }

    fn send_init(&mut self, now: Instant, sa: &mut IkeSa) -> Result<(), Error> {
        let pc = sa.peer.clone().ok_or(Error::UnknownSa(sa.id))?;
        let (dh, ke) = crypto::dh_generate(sa.dh_group, self.rng.as_mut())?;
        sa.dh = Some(dh);
        // Proposals: ours in order; the one whose group matches the KE first.
        let mut props: Vec<IkeProposal> = pc
            .ike_proposals
            .iter()
            .filter(|p| p.dh == sa.dh_group)
            .copied()
            .collect();
        props.extend(
            pc.ike_proposals
                .iter()
                .filter(|p| p.dh != sa.dh_group)
                .copied(),
        );
        let sa_payload = Payload::Sa(
            props
                .iter()
                .enumerate()
                .map(|(i, p)| Proposal {
                    num: i as u8 + 1,
                    protocol: protocol::IKE,
                    spi: Vec::new(),
                    transforms: p.transforms(),
                    unknown_attribute: false,
                })
                .collect(),
        );
        let mut payloads = Vec::with_capacity(7);
        if let Some(c) = &sa.cookie {
            //= https://www.rfc-editor.org/rfc/rfc7296#section-2.6
            //# the initiator MUST [...] retry the IKE_SA_INIT with a Notify
            //# payload of type COOKIE containing the responder-supplied cookie
            //# data as the first payload
            payloads.push(Payload::notify(notify::COOKIE, c.clone()));
        }
        payloads.push(sa_payload);
        payloads.push(Payload::Ke {
            group: sa.dh_group,
            data: ke,
        });
        payloads.push(Payload::Nonce(sa.ni.clone()));
        payloads.extend(natd_payloads(sa.spi_i, 0, sa.local, sa.remote));
        if pc.uses_certs() {
            payloads.push(hash_algorithms_notify());
        }
        let m = Message {
            header: sa.header(exchange::IKE_SA_INIT, 0, false),
            payloads,
        };
        let bytes = m.emit();
        sa.init_req = bytes.clone();
        sa.state = SaState::InitSent;
        sa.my_mid = 1;
        self.transmits.push_back(Transmit {
            local: sa.local,
            remote: sa.remote,
            payload: bytes.clone(),
        });
        sa.outstanding = Some(Outstanding {
            mid: 0,
            bytes,
            tries: 0,
            next: now + self.config.limits.retransmit_base,
            pending: Pending::Init,
        });
        Ok(())
    }

    fn cookie_for(
        &self,
        secret: &[u8; 32],
        version: u8,
        ni: &[u8],
        remote: SocketAddr,
        spi_i: u64,
    ) -> Vec<u8> {
        //= https://www.rfc-editor.org/rfc/rfc7296#section-2.6
        //# Cookie = <VersionIDofSecret> | Hash(Ni | IPi | SPIi | <secret>)
        let prf = Prf::from_id(crypto::prf_id::HMAC_SHA2_256).map(|p| {
            let ip = match remote.ip() {
                std::net::IpAddr::V4(a) => a.octets().to_vec(),
                std::net::IpAddr::V6(a) => a.octets().to_vec(),
            };
            p.prf(secret, &[ni, &ip, &spi_i.to_be_bytes()])
        });
        let mut c = vec![version];
        c.extend_from_slice(prf.as_deref().unwrap_or(&[]).get(..16).unwrap_or(&[]));
        c
    }

    fn cookie_ok(&self, cookie: &[u8], ni: &[u8], remote: SocketAddr, spi_i: u64) -> bool {
        let Some(&v) = cookie.first() else {
            return false;
        };
        let secret = if v == self.cookie.version {
            &self.cookie.secret
        } else if v == self.cookie.version.wrapping_sub(1) {
            &self.cookie.prev
        } else {
            return false;
        };
        self.cookie_for(secret, v, ni, remote, spi_i) == cookie
    }

    /// Responder: IKE_SA_INIT request (§1.2).
    fn handle_init_request(
        &mut self,
        now: Instant,
        local: SocketAddr,
        remote: SocketAddr,
        header: &Header,
        data: &[u8],
    ) {
        if header.message_id != 0 {
            return;
        }
        // A retransmitted request: answer from the cache (§2.1).
        if let Some(id) = self.init_index.get(&(remote, header.spi_i)) {
            if let Some(sa) = self.sas.get(id) {
                if sa.init_req == data {
                    self.transmits.push_back(Transmit {
                        local,
                        remote,
                        payload: sa.init_resp.clone(),
                    });
                }
            }
            return;
        }
        let msg = match Message::parse(data) {
            Ok(m) => m,
            Err(ParseError::UnsupportedCritical(t)) => {
                return self.reply_plain(
                    local,
                    remote,
                    header,
                    vec![Payload::notify(
                        notify::UNSUPPORTED_CRITICAL_PAYLOAD,
                        vec![t],
                    )],
                );
            }
            Err(_) => return,
        };
        let p = &msg.payloads;
        let (Some(props), Some((group, ke)), Some(ni)) = (sa_of(p), ke_of(p), nonce_of(p)) else {
            return self.reply_plain(
                local,
                remote,
                header,
                vec![Payload::notify(notify::INVALID_SYNTAX, vec![])],
            );
        };
        let limits = &self.config.limits;
        let max_half_open = limits.max_half_open;
        if self.init_index.len() >= limits.cookie_threshold {
            if self.cookie.rotate_at.is_none() {
                self.cookie.rotate_at = Some(now + COOKIE_ROTATE);
            }
            let ok = match p.first() {
                Some(Payload::Notify(n)) if n.kind == notify::COOKIE => {
                    self.cookie_ok(&n.data, ni, remote, header.spi_i)
                }
                _ => false,
            };
            if !ok {
                let c = self.cookie_for(
                    &self.cookie.secret.clone(),
                    self.cookie.version,
                    ni,
                    remote,
                    header.spi_i,
                );
                return self.reply_plain(
                    local,
                    remote,
                    header,
                    vec![Payload::notify(notify::COOKIE, c)],
                );
            }
        }
        // Memory bound: beyond the cap even requests with a valid cookie are dropped.
        if self.init_index.len() >= max_half_open {
            return;
        }
        // Candidate peers by address; proposals in our order of preference,
        // preferring one whose group matches the KE already sent.
        let candidates: Vec<IkeProposal> = self
            .peers
            .iter()
            .filter(|pc| pc.remote_addr.is_none_or(|a| a.ip() == remote.ip()))
            .flat_map(|pc| pc.ike_proposals.iter().copied())
            .filter(|ip| suite_of(ip).is_some())
            .collect();
        let acceptable: Vec<(IkeProposal, u8)> = candidates
            .iter()
            .filter_map(|ip| {
                props
                    .iter()
                    .find(|pr| ip.offered_by(pr))
                    .map(|pr| (*ip, pr.num))
            })
            .collect();
        let Some(&(chosen, num)) = acceptable
            .iter()
            .find(|(ip, _)| ip.dh == group)
            .or(acceptable.first())
        else {
            return self.reply_plain(
                local,
                remote,
                header,
                vec![Payload::notify(notify::NO_PROPOSAL_CHOSEN, vec![])],
            );
        };
        if chosen.dh != group {
            //= https://www.rfc-editor.org/rfc/rfc7296#section-1.2
            //# the responder MUST reject the request and indicate its preferred
            //# Diffie-Hellman group in the INVALID_KE_PAYLOAD Notify payload.
            return self.reply_plain(
                local,
                remote,
                header,
                vec![Payload::notify(
                    notify::INVALID_KE_PAYLOAD,
                    chosen.dh.to_be_bytes().to_vec(),
                )],
            );
        }
        let Some(suite) = suite_of(&chosen) else {
            return;
        };
        let Ok((dh, ke_r)) = crypto::dh_generate(group, self.rng.as_mut()) else {
            return;
        };
        let Ok(shared) = crypto::dh_agree(dh, ke) else {
            return self.reply_plain(
                local,
                remote,
                header,
                vec![Payload::notify(notify::INVALID_SYNTAX, vec![])],
            );
        };
        let spi_r = self.new_ike_spi();
        let nr = self.nonce();
        let mut sa = IkeSa::new(IkeSaId(spi_r), false, local, remote);
        sa.spi_i = header.spi_i;
        sa.spi_r = spi_r;
        sa.state = SaState::HalfOpen;
        sa.proposal = Some(chosen);
        sa.suite = Some(suite);
        let seed = crypto::skeyseed(suite.prf, ni, &nr, &shared);
        sa.keys = Some(crypto::derive_ike_keys(
            &suite, &seed, ni, &nr, sa.spi_i, spi_r,
        ));
        sa.ni = ni.clone();
        sa.nr = nr.clone();
        sa.init_req = data.to_vec();
        sa.peer_mid = 1;
        sa.expire_at = Some(now + self.config.limits.half_open_timeout);
        let nat = detect_nat(p, sa.spi_i, 0, local, remote);
        if let Some((l, r)) = nat {
            sa.nat_local = l;
            sa.nat_remote = r;
        }
        let mut out = vec![
            Payload::Sa(vec![Proposal {
                num,
                protocol: protocol::IKE,
                spi: Vec::new(),
                transforms: chosen.transforms(),
                unknown_attribute: false,
            }]),
            Payload::Ke { group, data: ke_r },
            Payload::Nonce(nr),
        ];
        if nat.is_some() {
            out.extend(natd_payloads(sa.spi_i, spi_r, local, remote));
        }
        sa.peer_hashes = peer_hashes(p);
        let cert_trust = self
            .peers
            .iter()
            .filter(|pc| pc.remote_addr.is_none_or(|a| a.ip() == remote.ip()))
            .find_map(|pc| match &pc.auth {
                AuthConfig::Cert { trust, .. } => Some(trust.clone()),
                AuthConfig::Psk(_) => None,
            });
        if let Some(trust) = cert_trust {
            //= https://www.rfc-editor.org/rfc/rfc7427#section-4
            //# the responder [...] MUST send its Notify payload
            //# SIGNATURE_HASH_ALGORITHMS [...] in the IKE_SA_INIT response
            out.push(hash_algorithms_notify());
            out.push(Payload::CertReq {
                encoding: plexgate_pki::CERT_ENCODING_X509_SIGNATURE,
                data: trust.certreq_data(),
            });
        }
        let m = Message {
            header: sa.header(exchange::IKE_SA_INIT, 0, true),
            payloads: out,
        };
        let bytes = m.emit();
        sa.init_resp = bytes.clone();
        self.transmits.push_back(Transmit {
            local,
            remote,
            payload: bytes,
        });
        self.init_index.insert((remote, sa.spi_i), sa.id);
        self.put(sa);
    }

    /// Initiator: IKE_SA_INIT response.
    fn handle_init_response(
        &mut self,
        now: Instant,
        sa: &mut IkeSa,
        local: SocketAddr,
        remote: SocketAddr,
        data: &[u8],
    ) {
        let Ok(msg) = Message::parse(data) else {
            return;
        };
        let p = &msg.payloads;
        if let Some(n) = find_notify(p, notify::COOKIE) {
            if sa.cookie.is_none() && !n.data.is_empty() && n.data.len() <= 64 {
                sa.cookie = Some(n.data.clone());
                let _ = self.send_init(now, sa);
            }
            return;
        }
        if let Some(n) = find_notify(p, notify::INVALID_KE_PAYLOAD) {
            let Some(pc) = sa.peer.clone() else { return };
            let g = n.data.get(..2).map(|b| u16::from_be_bytes([b[0], b[1]]));
            //= https://www.rfc-editor.org/rfc/rfc7296#section-1.2
            //# the initiator [...] MUST retry with the corrected group
            if let Some(g) =
                g.filter(|g| *g != sa.dh_group && pc.ike_proposals.iter().any(|p| p.dh == *g))
            {
                sa.dh_group = g;
                let _ = self.send_init(now, sa);
                return;
            }
        }
        if let Some(n) = error_notify(p) {
            let reason = format!("IKE_SA_INIT failed: peer sent {}", notify_name(n.kind));
            self.fail(sa, &reason);
            return;
        }
        let (Some(props), Some((group, ke)), Some(nr)) = (sa_of(p), ke_of(p), nonce_of(p)) else {
            return self.fail(sa, "IKE_SA_INIT response without SA, KE or Nonce");
        };
        let pc = match sa.peer.clone() {
            Some(pc) => pc,
            None => return,
        };
        let chosen = match props.as_slice() {
            [one] => IkeProposal::from_chosen(one),
            _ => None,
        };
        let Some(chosen) = chosen
            .filter(|c| pc.ike_proposals.contains(c) && c.dh == group && group == sa.dh_group)
        else {
            return self.fail(sa, "peer chose an IKE proposal we did not offer");
        };
        let Some(suite) = suite_of(&chosen) else {
            return self.fail(sa, "unsupported IKE proposal");
        };
        let Some(dh) = sa.dh.take() else { return };
        let Ok(shared) = crypto::dh_agree(dh, ke) else {
            return self.fail(sa, "invalid KE from peer");
        };
        sa.spi_r = msg.header.spi_r;
        sa.peer_hashes = peer_hashes(p);
        sa.nr = nr.clone();
        sa.init_resp = data.to_vec();
        sa.proposal = Some(chosen);
        sa.suite = Some(suite);
        let seed = crypto::skeyseed(suite.prf, &sa.ni, nr, &shared);
        sa.keys = Some(crypto::derive_ike_keys(
            &suite, &seed, &sa.ni, nr, sa.spi_i, sa.spi_r,
        ));
        if let Some((l, r)) = detect_nat(p, sa.spi_i, sa.spi_r, local, remote) {
            sa.nat_local = l;
            sa.nat_remote = r;
        }
        //= https://www.rfc-editor.org/rfc/rfc7296#section-2.23
        //# If a NAT is detected, both devices MUST use port 4500 for all
        //# subsequent exchanges
        if sa.nat_local || sa.nat_remote {
            sa.local.set_port(4500);
            sa.remote.set_port(4500);
        }
        sa.outstanding = None;
        self.send_auth(now, sa);
    }

    /// Give up on an SA during setup (it is destroyed by `finish`).
    fn fail(&mut self, sa: &mut IkeSa, reason: &str) {
        if let Some(first) = sa.first_child.take() {
            self.events.push_back(Event::ChildSaFailed {
                ike: sa.id,
                name: first.cfg.name,
                reason: reason.to_string(),
            });
        }
        sa.outstanding = None;
        sa.queue.clear();
        sa.state = SaState::Deleting;
        self.events.push_back(Event::IkeSaDeleted {
            id: sa.id,
            reason: reason.to_string(),
        });
    }
}

// ---------------------------------------------------------------------------------
// IKE_AUTH and Child SA negotiation
// ---------------------------------------------------------------------------------

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

impl Endpoint {
    /// Build a Child SA from negotiated parameters. `initiator`: our role in the
    /// exchange that created it (decides which KEYMAT half is inbound).
    #[allow(clippy::too_many_arguments)]
    fn make_child(
        &mut self,
        sa: &IkeSa,
        cfg: &ChildConfig,
        esp: EspProposal,
        spi_in: u32,
        spi_out: u32,
        ts_local: Vec<TrafficSelector>,
        ts_remote: Vec<TrafficSelector>,
        mode: Mode,
        ni: &[u8],
        nr: &[u8],
        shared: Option<&[u8]>,
        initiator: bool,
    ) -> Option<ChildSa> {
        let suite = sa.suite?;
        let keys = sa.keys.as_ref()?;
        let el = crypto::esp_encr_key_len(esp.encr, esp.encr_bits)?;
        let il = crypto::esp_integ_key_len(esp.integ)?;
        let ck = crypto::derive_child_keys(suite.prf, &keys.sk_d, shared, ni, nr, el, il);
        let (keys_in, keys_out) = if initiator {
            (ck.r_to_i, ck.i_to_r)
        } else {
            (ck.i_to_r, ck.r_to_i)
        };
        Some(ChildSa {
            name: cfg.name.clone(),
            spi_in,
            spi_out,
            protocol: 50,
            encr: esp.encr,
            encr_key_bits: if esp.encr == crypto::encr_id::CHACHA20_POLY1305 {
                256
            } else {
                esp.encr_bits
            },
            integ: esp.integ,
            esn: esp.esn,
            keys_in,
            keys_out,
            ts_local,
            ts_remote,
            local: sa.local,
            remote: sa.remote,
            udp_encap: sa.udp_encap(),
            mode,
            lifetime: cfg.life_time,
        })
    }

    fn add_child(
        &mut self,
        now: Instant,
        sa: &mut IkeSa,
        child: ChildSa,
        esp: EspProposal,
        rekey_time: Duration,
    ) {
        let jitter = sa
            .peer
            .as_ref()
            .map_or(Duration::ZERO, |p| p.rand_time.min(rekey_time / 2));
        let rekey_at = Some(self.jittered(now, rekey_time, jitter));
        self.child_index.insert(child.spi_in, sa.id);
        sa.children.push(Child {
            sa: child,
            proposal: esp,
            rekey_at,
            rekeyed: false,
            collision: None,
        });
    }

    /// Initiator: IKE_AUTH request (PSK or certificate) and the first Child SA.
    fn send_auth(&mut self, now: Instant, sa: &mut IkeSa) {
        let Some(pc) = sa.peer.clone() else { return };
        let (Some(suite), Some(keys)) = (sa.suite, sa.keys.as_ref()) else {
            return;
        };
        let idi = pc.local_id.to_wire();
        let octets =
            crypto::signed_octets(suite.prf, &sa.init_req, &sa.nr, &keys.sk_pi, &idi.body());
        let (certs, auth) = match make_auth(&pc, suite.prf, &octets, &sa.peer_hashes) {
            Ok(x) => x,
            Err(reason) => return self.fail(sa, &reason),
        };
        let mut p = vec![Payload::IdI(idi.clone())];
        p.extend(certs);
        if let AuthConfig::Cert { trust, .. } = &pc.auth {
            //= https://www.rfc-editor.org/rfc/rfc7296#section-3.7
            //# The Certificate Request payload provides a means to request
            //# preferred certificates via IKE
            // strongSwan sends its certificate only when asked (send_cert = ifasked).
            p.push(Payload::CertReq {
                encoding: plexgate_pki::CERT_ENCODING_X509_SIGNATURE,
                data: trust.certreq_data(),
            });
        }
        if pc.initial_contact {
            p.push(Payload::notify(notify::INITIAL_CONTACT, vec![]));
        }
        if pc.remote_id.0 != "%any" {
            p.push(Payload::IdR(pc.remote_id.to_wire()));
        }
        p.push(auth);
        let child = sa.first_child.take().map(|req| {
            let spi_in = self.new_child_spi();
            p.push(esp_sa_payload(&req.cfg, spi_in, false));
            p.push(Payload::TsI(req.cfg.local_ts.clone()));
            p.push(Payload::TsR(req.cfg.remote_ts.clone()));
            if req.cfg.mode == Mode::Transport {
                p.push(Payload::notify(notify::USE_TRANSPORT_MODE, vec![]));
            }
            (req, spi_in)
        });
        sa.state = SaState::AuthSent;
        self.send_request(now, sa, exchange::IKE_AUTH, &p, Pending::Auth { child });
    }

    /// Responder: IKE_AUTH request.
    fn handle_auth_request(&mut self, now: Instant, sa: &mut IkeSa, mid: u32, p: &[Payload]) {
        let idi = p.iter().find_map(|x| {
            if let Payload::IdI(i) = x {
                Some(i)
            } else {
                None
            }
        });
        let idr = p.iter().find_map(|x| {
            if let Payload::IdR(i) = x {
                Some(i)
            } else {
                None
            }
        });
        let has_auth = p.iter().any(|x| matches!(x, Payload::Auth { .. }));
        let (Some(idi), true) = (idi, has_auth) else {
            // EAP and other methods are not supported.
            return self.auth_failed(
                sa,
                mid,
                None,
                "IKE_AUTH without IDi/AUTH (EAP is not supported)",
            );
        };
        let remote_ip = sa.remote.ip();
        // The first peer config whose identities and address fit (several may share
        //  `%any`: the PSK or certificate check decides among those in order).
        let candidates: Vec<Arc<PeerConfig>> = self
            .peers
            .iter()
            .filter(|pc| {
                pc.remote_id.matches(idi)
                    && idr.is_none_or(|r| pc.local_id.to_wire() == *r)
                    && pc.remote_addr.is_none_or(|a| a.ip() == remote_ip)
            })
            .cloned()
            .collect();
        if candidates.is_empty() {
            let reason = format!("no peer config matches identity '{idi}'");
            return self.auth_failed(sa, mid, Some(idi.to_string()), &reason);
        }
        let Some(suite) = sa.suite else { return };
        let Some(keys) = sa.keys.as_ref() else { return };
        //= https://www.rfc-editor.org/rfc/rfc7296#section-2.15
        //# InitiatorSignedOctets = RealMessage1 | NonceRData | MACedIDForI
        let octets =
            crypto::signed_octets(suite.prf, &sa.init_req, &sa.nr, &keys.sk_pi, &idi.body());
        let wall = self.wall_time(now);
        let mut failure = String::new();
        let mut chosen = None;
        for pc in candidates {
            match check_auth(&pc, suite.prf, &octets, idi, p, wall) {
                Ok(()) => {
                    chosen = Some(pc);
                    break;
                }
                Err(e) if failure.is_empty() => failure = e,
                Err(_) => {}
            }
        }
        let Some(pc) = chosen else {
            return self.auth_failed(sa, mid, Some(idi.to_string()), &failure);
        };
        let my_id = pc.local_id.to_wire();
        //= https://www.rfc-editor.org/rfc/rfc7296#section-2.15
        //# ResponderSignedOctets = RealMessage2 | NonceIData | MACedIDForR
        let octets_r =
            crypto::signed_octets(suite.prf, &sa.init_resp, &sa.ni, &keys.sk_pr, &my_id.body());
        let (certs, my_auth) = match make_auth(&pc, suite.prf, &octets_r, &sa.peer_hashes) {
            Ok(x) => x,
            Err(reason) => return self.auth_failed(sa, mid, Some(idi.to_string()), &reason),
        };
        sa.peer = Some(pc.clone());
        sa.local_id = Some(my_id.clone());
        sa.remote_id = Some(idi.clone());
        let mut out = vec![Payload::IdR(my_id)];
        out.extend(certs);
        out.push(my_auth);
        let mut up_child = None;
        if sa_of(p).is_some() {
            match select_child(&pc, p, None, None) {
                Ok(sel) => {
                    let spi_in = self.new_child_spi();
                    let (ni, nr) = (sa.ni.clone(), sa.nr.clone());
                    let made = self.make_child(
                        sa,
                        &sel.cfg,
                        sel.esp,
                        spi_in,
                        sel.spi_out,
                        sel.ts_local.clone(),
                        sel.ts_remote.clone(),
                        sel.mode,
                        &ni,
                        &nr,
                        None,
                        false,
                    );
                    if let Some(c) = made {
                        out.push(chosen_esp_payload(&sel, spi_in));
                        out.push(Payload::TsI(sel.ts_remote.clone()));
                        out.push(Payload::TsR(sel.ts_local.clone()));
                        if sel.mode == Mode::Transport {
                            out.push(Payload::notify(notify::USE_TRANSPORT_MODE, vec![]));
                        }
                        up_child = Some((c, sel.esp, sel.cfg.rekey_time));
                    }
                }
                Err(n) => {
                    out.push(Payload::notify(n, vec![]));
                    self.events.push_back(Event::ChildSaFailed {
                        ike: sa.id,
                        name: String::new(),
                        reason: format!("we answered {}", notify_name(n)),
                    });
                }
            }
        }
        self.send_response(sa, exchange::IKE_AUTH, mid, &out);
        let initial_contact = find_notify(p, notify::INITIAL_CONTACT).is_some();
        self.established(now, sa, initial_contact);
        if let Some((c, esp, rt)) = up_child {
            self.events.push_back(Event::ChildSaUp {
                ike: sa.id,
                child: c.clone(),
            });
            self.add_child(now, sa, c, esp, rt);
        }
        self.emit_record(sa);
    }

    fn auth_failed(&mut self, sa: &mut IkeSa, mid: u32, peer_id: Option<String>, reason: &str) {
        //= https://www.rfc-editor.org/rfc/rfc7296#section-2.21.2
        //# If the error occurs on the responder, the notification is returned in the
        //# protected response, and is usually the only payload in that response.
        self.send_response(
            sa,
            exchange::IKE_AUTH,
            mid,
            &[Payload::notify(notify::AUTHENTICATION_FAILED, vec![])],
        );
        self.events.push_back(Event::AuthFailed {
            remote: sa.remote,
            peer_id,
            reason: reason.to_string(),
        });
        sa.state = SaState::Deleting;
        sa.outstanding = None;
    }

    /// Common to both roles once IKE_AUTH succeeded.
    fn established(&mut self, now: Instant, sa: &mut IkeSa, initial_contact: bool) {
        sa.state = SaState::Established;
        sa.expire_at = None;
        sa.init_req = Vec::new();
        sa.init_resp = Vec::new();
        self.init_index.retain(|_, v| *v != sa.id);
        let Some(pc) = sa.peer.clone() else { return };
        let jitter = pc.rand_time.min(pc.rekey_time / 2);
        sa.rekey_at = Some(self.jittered(now, pc.rekey_time, jitter));
        sa.dpd_at = pc.dpd.map(|d| now + d);
        if let Some(record) = sa.record() {
            self.events.push_back(Event::IkeSaUp { id: sa.id, record });
        }
        if initial_contact {
            //= https://www.rfc-editor.org/rfc/rfc7296#section-2.4
            //# the receiver MAY delete any other IKE SAs it has with the same
            //# authenticated identities
            let ids: Vec<IkeSaId> = self
                .sas
                .values()
                .filter(|o| {
                    o.id != sa.id
                        && o.state == SaState::Established
                        && o.remote_id == sa.remote_id
                        && o.local_id == sa.local_id
                })
                .map(|o| o.id)
                .collect();
            for id in ids {
                if let Some(old) = self.take(id) {
                    self.destroy(old, "replaced by a new IKE SA (INITIAL_CONTACT)", true);
                }
            }
        }
    }

    /// Initiator: IKE_AUTH response.
    fn handle_auth_response(
        &mut self,
        now: Instant,
        sa: &mut IkeSa,
        p: &[Payload],
        child: Option<(ChildReq, u32)>,
    ) {
        let Some(pc) = sa.peer.clone() else { return };
        if find_notify(p, notify::AUTHENTICATION_FAILED).is_some() {
            self.events.push_back(Event::AuthFailed {
                remote: sa.remote,
                peer_id: Some(pc.remote_id.0.clone()),
                reason: "peer sent AUTHENTICATION_FAILED (PSK, certificate or identity rejected by the peer)".into(),
            });
            return self.fail(sa, "authentication failed");
        }
        let idr = p.iter().find_map(|x| {
            if let Payload::IdR(i) = x {
                Some(i)
            } else {
                None
            }
        });
        let Some(idr) = idr else {
            let e = error_notify(p)
                .map(|n| notify_name(n.kind))
                .unwrap_or_else(|| "no IDr".into());
            self.events.push_back(Event::AuthFailed {
                remote: sa.remote,
                peer_id: None,
                reason: format!("IKE_AUTH response unusable: {e}"),
            });
            return self.fail(sa, "authentication failed");
        };
        let (Some(suite), Some(keys)) = (sa.suite, sa.keys.as_ref()) else {
            return;
        };
        let octets =
            crypto::signed_octets(suite.prf, &sa.init_resp, &sa.ni, &keys.sk_pr, &idr.body());
        let verdict = if pc.remote_id.matches(idr) {
            check_auth(&pc, suite.prf, &octets, idr, p, self.wall_time(now))
        } else {
            Err(format!(
                "peer identified as '{idr}', expected '{}'",
                pc.remote_id.0
            ))
        };
        if let Err(reason) = verdict {
            self.events.push_back(Event::AuthFailed {
                remote: sa.remote,
                peer_id: Some(idr.to_string()),
                reason: reason.clone(),
            });
            return self.fail(sa, &reason);
        }
        sa.remote_id = Some(idr.clone());
        self.established(now, sa, false);
        if let Some((req, spi_in)) = child {
            let (ni, nr) = (sa.ni.clone(), sa.nr.clone());
            self.finish_child_initiator(now, sa, p, req, spi_in, &ni, &nr, None);
        }
        self.emit_record(sa);
    }

    /// Initiator: read the Child SA part of an IKE_AUTH or CREATE_CHILD_SA response.
    #[allow(clippy::too_many_arguments)]
    fn finish_child_initiator(
        &mut self,
        now: Instant,
        sa: &mut IkeSa,
        p: &[Payload],
        req: ChildReq,
        spi_in: u32,
        ni: &[u8],
        nr: &[u8],
        shared: Option<&[u8]>,
    ) {
        let fail = |s: &mut Self, reason: String| {
            s.events.push_back(Event::ChildSaFailed {
                ike: sa.id,
                name: req.cfg.name.clone(),
                reason,
            });
        };
        if let Some(n) = error_notify(p) {
            return fail(self, format!("peer sent {}", notify_name(n.kind)));
        }
        let chosen = match sa_of(p).map(|v| v.as_slice()) {
            Some([one]) => EspProposal::from_chosen(one).map(|e| (e, one)),
            _ => None,
        };
        let Some((mut esp, prop)) = chosen else {
            return fail(self, "no usable ESP proposal in response".into());
        };
        let offered = req.cfg.esp_proposals.iter().any(|o| {
            let mut o = *o;
            if shared.is_none() {
                o.dh = None;
            }
            o == esp
        });
        if !offered {
            return fail(self, "peer chose an ESP proposal we did not offer".into());
        }
        if shared.is_none() {
            esp.dh = None;
        }
        let spi_out = prop
            .spi
            .get(..4)
            .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
            .unwrap_or(0);
        let (Some(tsi), Some(tsr)) = ts_of(p) else {
            return fail(self, "response without TSi/TSr".into());
        };
        let sub = |a: &[TrafficSelector], b: &[TrafficSelector]| {
            !a.is_empty() && a.iter().all(|t| b.iter().any(|o| t.is_subset_of(o)))
        };
        if !sub(tsi, &req.cfg.local_ts) || !sub(tsr, &req.cfg.remote_ts) {
            return fail(self, "peer widened the traffic selectors".into());
        }
        let transport = find_notify(p, notify::USE_TRANSPORT_MODE).is_some();
        let mode = if transport && req.cfg.mode == Mode::Transport {
            Mode::Transport
        } else {
            Mode::Tunnel
        };
        let Some(c) = self.make_child(
            sa,
            &req.cfg,
            esp,
            spi_in,
            spi_out,
            tsi.clone(),
            tsr.clone(),
            mode,
            ni,
            nr,
            shared,
            true,
        ) else {
            return fail(self, "unsupported ESP transform".into());
        };
        self.install_child(now, sa, c, esp, req.cfg.rekey_time, req.rekey_of, true);
    }

    /// Report and store a new Child SA; for a rekey, mark the old one and, as the
    /// initiator of the rekey, queue its deletion (§1.3.3).
    #[allow(clippy::too_many_arguments)]
    fn install_child(
        &mut self,
        now: Instant,
        sa: &mut IkeSa,
        c: ChildSa,
        esp: EspProposal,
        rekey_time: Duration,
        rekey_of: Option<u32>,
        we_initiated: bool,
    ) {
        let old = rekey_of.and_then(|spi| sa.children.iter_mut().find(|x| x.sa.spi_in == spi));
        match old {
            Some(old) => {
                old.rekeyed = true;
                old.rekey_at = None;
                self.events.push_back(Event::ChildSaRekeyed {
                    ike: sa.id,
                    old_spi_in: old.sa.spi_in,
                    old_spi_out: old.sa.spi_out,
                    new: c.clone(),
                });
                if we_initiated {
                    sa.queue.push_front(Task::DeleteChild(old.sa.spi_in));
                }
            }
            None => self.events.push_back(Event::ChildSaUp {
                ike: sa.id,
                child: c.clone(),
            }),
        }
        self.add_child(now, sa, c, esp, rekey_time);
    }
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

// ---------------------------------------------------------------------------------
// Requests, responses, CREATE_CHILD_SA, INFORMATIONAL
// ---------------------------------------------------------------------------------

impl Endpoint {
    fn handle_request(
        &mut self,
        now: Instant,
        sa: &mut IkeSa,
        local: SocketAddr,
        remote: SocketAddr,
        header: &Header,
        data: &[u8],
    ) {
        let mid = header.message_id;
        //= https://www.rfc-editor.org/rfc/rfc7296#section-2.1
        //# If a responder receives a retransmitted request, it MUST
        //# retransmit its cached response
        if let Some((m, bytes)) = &sa.last_response {
            if *m == mid && mid.wrapping_add(1) == sa.peer_mid {
                self.transmits.push_back(Transmit {
                    local: sa.local,
                    remote: sa.remote,
                    payload: bytes.clone(),
                });
                return;
            }
        }
        if mid != sa.peer_mid || sa.state == SaState::InitSent {
            return;
        }
        let Ok(msg) = Message::parse(data) else {
            return;
        };
        let p = match Self::open(sa, data, &msg) {
            Opened::Payloads(p) => p,
            Opened::Drop => return,
            Opened::Critical(t) => {
                sa.peer_mid = sa.peer_mid.wrapping_add(1);
                return self.send_response(
                    sa,
                    header.exchange,
                    mid,
                    &[Payload::notify(
                        notify::UNSUPPORTED_CRITICAL_PAYLOAD,
                        vec![t],
                    )],
                );
            }
        };
        sa.peer_mid = sa.peer_mid.wrapping_add(1);
        // The peer may have floated to 4500 (NAT-T) or moved behind a NAT: answer
        // where the authenticated request came from (§2.23).
        sa.local = local;
        sa.remote = remote;
        if let Some(pc) = &sa.peer {
            sa.dpd_at = pc.dpd.map(|d| now + d);
        }
        match (header.exchange, sa.state) {
            (exchange::IKE_AUTH, SaState::HalfOpen) => self.handle_auth_request(now, sa, mid, &p),
            (exchange::CREATE_CHILD_SA, SaState::Established) => {
                self.handle_create_child_request(now, sa, mid, &p)
            }
            (
                exchange::INFORMATIONAL,
                SaState::Established | SaState::Deleting | SaState::Rekeyed | SaState::AuthSent,
            ) => self.handle_informational_request(sa, mid, &p),
            (exchange::CREATE_CHILD_SA, SaState::Deleting | SaState::Rekeyed) => {
                self.send_response(
                    sa,
                    header.exchange,
                    mid,
                    &[Payload::notify(notify::TEMPORARY_FAILURE, vec![])],
                );
            }
            _ => self.send_response(
                sa,
                header.exchange,
                mid,
                &[Payload::notify(notify::INVALID_SYNTAX, vec![])],
            ),
        }
    }

    fn handle_response(
        &mut self,
        now: Instant,
        sa: &mut IkeSa,
        local: SocketAddr,
        remote: SocketAddr,
        header: &Header,
        data: &[u8],
    ) {
        let Some(o) = sa.outstanding.as_ref() else {
            return;
        };
        if o.mid != header.message_id {
            return;
        }
        if header.exchange == exchange::IKE_SA_INIT {
            if matches!(o.pending, Pending::Init) {
                self.handle_init_response(now, sa, local, remote, data);
            }
            return;
        }
        let Ok(msg) = Message::parse(data) else {
            return;
        };
        let p = match Self::open(sa, data, &msg) {
            Opened::Payloads(p) => p,
            _ => return,
        };
        let Some(o) = sa.outstanding.take() else {
            return;
        };
        if let Some(pc) = &sa.peer {
            sa.dpd_at = pc.dpd.map(|d| now + d);
        }
        match o.pending {
            Pending::Init => {}
            Pending::Auth { child } => self.handle_auth_response(now, sa, &p, child),
            Pending::CreateChild {
                child,
                spi_in,
                ni,
                dh,
            } => self.handle_create_child_response(now, sa, &p, child, spi_in, ni, dh),
            Pending::RekeyIke { new_spi, ni, dh } => {
                self.handle_rekey_ike_response(now, sa, &p, new_spi, ni, dh)
            }
            Pending::DeleteChild { spi_in } => {
                if let Some(i) = sa.children.iter().position(|c| c.sa.spi_in == spi_in) {
                    let c = sa.children.remove(i);
                    self.child_index.remove(&spi_in);
                    self.events.push_back(Event::ChildSaDeleted {
                        ike: sa.id,
                        spi_in,
                        spi_out: c.sa.spi_out,
                    });
                    self.emit_record(sa);
                }
            }
            Pending::DeleteIke if sa.state == SaState::Deleting => {
                // The DELETE of an SA we rekeyed: IkeSaRekeyed already said it all.
            }
            Pending::DeleteIke => {
                sa.state = SaState::Deleting;
                let id = sa.id;
                for c in sa.children.drain(..) {
                    self.child_index.remove(&c.sa.spi_in);
                    self.events.push_back(Event::ChildSaDeleted {
                        ike: id,
                        spi_in: c.sa.spi_in,
                        spi_out: c.sa.spi_out,
                    });
                }
                if sa.record().is_some() || sa.peer.is_some() {
                    self.events.push_back(Event::RecordRemoved { id });
                }
                self.events.push_back(Event::IkeSaDeleted {
                    id,
                    reason: "deleted by us".into(),
                });
            }
            Pending::Dpd => {}
        }
    }

    fn handle_informational_request(&mut self, sa: &mut IkeSa, mid: u32, p: &[Payload]) {
        let mut ours = Vec::new();
        let mut delete_ike = false;
        for d in p.iter().filter_map(|x| {
            if let Payload::Delete(d) = x {
                Some(d)
            } else {
                None
            }
        }) {
            match d.protocol {
                protocol::IKE => delete_ike = true,
                protocol::ESP => {
                    //= https://www.rfc-editor.org/rfc/rfc7296#section-1.4.1
                    //# the recipient MUST [...] delete the corresponding inbound SAs
                    //# [...] and send a response containing a DELETE for the
                    //# corresponding outbound SAs
                    for spi in &d.spis {
                        if let Some(i) = sa.children.iter().position(|c| c.sa.spi_out == *spi) {
                            let c = sa.children.remove(i);
                            self.child_index.remove(&c.sa.spi_in);
                            self.events.push_back(Event::ChildSaDeleted {
                                ike: sa.id,
                                spi_in: c.sa.spi_in,
                                spi_out: c.sa.spi_out,
                            });
                            // A child we are rekeying or deleting ourselves: the
                            // simultaneous delete needs no extra answer.
                            if !matches!(&sa.outstanding, Some(Outstanding { pending: Pending::DeleteChild { spi_in }, .. }) if *spi_in == c.sa.spi_in)
                            {
                                ours.push(c.sa.spi_in);
                            }
                        }
                    }
                }
                _ => {}
            }
        }
        if delete_ike {
            self.send_response(sa, exchange::INFORMATIONAL, mid, &[]);
            let id = sa.id;
            for c in sa.children.drain(..) {
                self.child_index.remove(&c.sa.spi_in);
                self.events.push_back(Event::ChildSaDeleted {
                    ike: id,
                    spi_in: c.sa.spi_in,
                    spi_out: c.sa.spi_out,
                });
            }
            if !matches!(sa.state, SaState::Deleting | SaState::Rekeyed) {
                self.events.push_back(Event::RecordRemoved { id });
                self.events.push_back(Event::IkeSaDeleted {
                    id,
                    reason: "deleted by peer".into(),
                });
            }
            sa.state = SaState::Deleting;
            sa.outstanding = None;
            sa.queue.clear();
            return;
        }
        let out: Vec<Payload> = if ours.is_empty() {
            Vec::new()
        } else {
            vec![Payload::Delete(Delete {
                protocol: protocol::ESP,
                spis: ours,
            })]
        };
        self.send_response(sa, exchange::INFORMATIONAL, mid, &out);
        if p.iter().any(|x| matches!(x, Payload::Delete(_))) {
            self.emit_record(sa);
        }
    }

    /// Responder: CREATE_CHILD_SA (§1.3).
    fn handle_create_child_request(
        &mut self,
        now: Instant,
        sa: &mut IkeSa,
        mid: u32,
        p: &[Payload],
    ) {
        let Some(pc) = sa.peer.clone() else { return };
        let Some(ni) = nonce_of(p).cloned() else {
            return self.send_response(
                sa,
                exchange::CREATE_CHILD_SA,
                mid,
                &[Payload::notify(notify::INVALID_SYNTAX, vec![])],
            );
        };
        let is_ike = sa_of(p).is_some_and(|v| v.iter().any(|x| x.protocol == protocol::IKE));
        if is_ike {
            return self.handle_rekey_ike_request(now, sa, mid, p, ni, &pc);
        }
        let rekey = find_notify(p, notify::REKEY_SA).and_then(|n| {
            n.spi
                .get(..4)
                .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
        });
        // REKEY_SA names the SPI the requester receives on: our outbound SPI.
        let old = match rekey {
            Some(spi_out) => match sa.children.iter().find(|c| c.sa.spi_out == spi_out) {
                Some(c) if c.rekeyed => {
                    //= https://www.rfc-editor.org/rfc/rfc7296#section-2.25
                    //# A peer that receives a request to rekey a Child SA that it is
                    //# currently trying to close SHOULD reply with TEMPORARY_FAILURE.
                    return self.send_response(
                        sa,
                        exchange::CREATE_CHILD_SA,
                        mid,
                        &[Payload::notify(notify::TEMPORARY_FAILURE, vec![])],
                    );
                }
                Some(c) => Some((c.sa.spi_in, c.sa.name.clone())),
                None => {
                    //= https://www.rfc-editor.org/rfc/rfc7296#section-2.25
                    //# the responder [...] replies with CHILD_SA_NOT_FOUND
                    let n = Payload::Notify(Notify {
                        protocol: protocol::ESP,
                        spi: spi_out.to_be_bytes().to_vec(),
                        kind: notify::CHILD_SA_NOT_FOUND,
                        data: vec![],
                    });
                    return self.send_response(sa, exchange::CREATE_CHILD_SA, mid, &[n]);
                }
            },
            None => None,
        };
        let ke = ke_of(p);
        let sel = select_child(&pc, p, ke.map(|k| k.0), old.as_ref().map(|o| o.1.as_str()));
        let sel = match sel {
            Ok(s) => s,
            Err(n) => {
                return self.send_response(
                    sa,
                    exchange::CREATE_CHILD_SA,
                    mid,
                    &[Payload::notify(n, vec![])],
                )
            }
        };
        let mut shared = None;
        let mut ke_out = None;
        if let (Some(g), Some((kg, kd))) = (sel.esp.dh, ke) {
            if g != kg {
                let n = Payload::notify(notify::INVALID_KE_PAYLOAD, g.to_be_bytes().to_vec());
                return self.send_response(sa, exchange::CREATE_CHILD_SA, mid, &[n]);
            }
            let Ok((dh, pubv)) = crypto::dh_generate(g, self.rng.as_mut()) else {
                return;
            };
            let Ok(s) = crypto::dh_agree(dh, kd) else {
                return self.send_response(
                    sa,
                    exchange::CREATE_CHILD_SA,
                    mid,
                    &[Payload::notify(notify::INVALID_SYNTAX, vec![])],
                );
            };
            shared = Some(s);
            ke_out = Some(Payload::Ke {
                group: g,
                data: pubv,
            });
        }
        let nr = self.nonce();
        let spi_in = self.new_child_spi();
        let Some(c) = self.make_child(
            sa,
            &sel.cfg,
            sel.esp,
            spi_in,
            sel.spi_out,
            sel.ts_local.clone(),
            sel.ts_remote.clone(),
            sel.mode,
            &ni,
            &nr,
            shared.as_deref(),
            false,
        ) else {
            return self.send_response(
                sa,
                exchange::CREATE_CHILD_SA,
                mid,
                &[Payload::notify(notify::NO_PROPOSAL_CHOSEN, vec![])],
            );
        };
        let mut out = vec![chosen_esp_payload(&sel, spi_in), Payload::Nonce(nr.clone())];
        out.extend(ke_out);
        out.push(Payload::TsI(sel.ts_remote.clone()));
        out.push(Payload::TsR(sel.ts_local.clone()));
        if sel.mode == Mode::Transport {
            out.push(Payload::notify(notify::USE_TRANSPORT_MODE, vec![]));
        }
        self.send_response(sa, exchange::CREATE_CHILD_SA, mid, &out);
        if let Some((old_in, _)) = &old {
            let ours_in_flight = matches!(&sa.outstanding, Some(Outstanding { pending: Pending::CreateChild { child, .. }, .. }) if child.rekey_of == Some(*old_in));
            if ours_in_flight {
                let low = if ni <= nr { ni.clone() } else { nr.clone() };
                if let Some(x) = sa.children.iter_mut().find(|x| x.sa.spi_in == *old_in) {
                    x.collision = Some((spi_in, low));
                }
            }
        }
        self.install_child(
            now,
            sa,
            c,
            sel.esp,
            sel.cfg.rekey_time,
            old.map(|o| o.0),
            false,
        );
        self.emit_record(sa);
    }

    /// Responder: rekey of the IKE SA itself (§1.3.2). The requester becomes the
    /// initiator of the new IKE SA; Child SAs move to it; the old one waits for the
    /// requester's DELETE.
    fn handle_rekey_ike_request(
        &mut self,
        now: Instant,
        sa: &mut IkeSa,
        mid: u32,
        p: &[Payload],
        ni: Vec<u8>,
        pc: &PeerConfig,
    ) {
        //= https://www.rfc-editor.org/rfc/rfc7296#section-2.25
        //# A peer that receives a request to rekey [...] SHOULD reply with
        //# TEMPORARY_FAILURE
        // We answer TEMPORARY_FAILURE while our own rekey (of the IKE SA or of a
        // Child SA) is in flight: the IKE SA must not move under an exchange that
        // is still running. Our side retries after a random delay, so two plexgate
        // peers do not collide forever; strongSwan resolves its own side.
        if matches!(
            sa.outstanding.as_ref().map(|o| &o.pending),
            Some(Pending::RekeyIke { .. } | Pending::CreateChild { .. })
        ) {
            let n = Payload::notify(notify::TEMPORARY_FAILURE, vec![]);
            return self.send_response(sa, exchange::CREATE_CHILD_SA, mid, &[n]);
        }
        let props = sa_of(p).cloned().unwrap_or_default();
        let ke = ke_of(p);
        let acceptable: Vec<(IkeProposal, &Proposal)> = pc
            .ike_proposals
            .iter()
            .filter_map(|ip| {
                props
                    .iter()
                    .find(|pr| ip.offered_by(pr) && pr.spi.len() == 8)
                    .map(|pr| (*ip, pr))
            })
            .collect();
        let Some((kg, kd)) = ke else {
            return self.send_response(
                sa,
                exchange::CREATE_CHILD_SA,
                mid,
                &[Payload::notify(notify::INVALID_SYNTAX, vec![])],
            );
        };
        let Some(&(chosen, pr)) = acceptable
            .iter()
            .find(|(ip, _)| ip.dh == kg)
            .or(acceptable.first())
        else {
            return self.send_response(
                sa,
                exchange::CREATE_CHILD_SA,
                mid,
                &[Payload::notify(notify::NO_PROPOSAL_CHOSEN, vec![])],
            );
        };
        if chosen.dh != kg {
            let n = Payload::notify(notify::INVALID_KE_PAYLOAD, chosen.dh.to_be_bytes().to_vec());
            return self.send_response(sa, exchange::CREATE_CHILD_SA, mid, &[n]);
        }
        let (Some(suite), Some(old_suite), Some(old_keys)) =
            (suite_of(&chosen), sa.suite, sa.keys.as_ref())
        else {
            return;
        };
        let Ok((dh, pubv)) = crypto::dh_generate(kg, self.rng.as_mut()) else {
            return;
        };
        let Ok(shared) = crypto::dh_agree(dh, kd) else {
            return;
        };
        let mut spi_i_b = [0u8; 8];
        spi_i_b.copy_from_slice(pr.spi.get(..8).unwrap_or(&[0; 8]));
        let new_spi_i = u64::from_be_bytes(spi_i_b);
        let new_spi_r = self.new_ike_spi();
        let nr = self.nonce();
        let seed = crypto::skeyseed_rekey(old_suite.prf, &old_keys.sk_d, &shared, &ni, &nr);
        let keys = crypto::derive_ike_keys(&suite, &seed, &ni, &nr, new_spi_i, new_spi_r);
        let out = vec![
            Payload::Sa(vec![Proposal {
                num: pr.num,
                protocol: protocol::IKE,
                spi: new_spi_r.to_be_bytes().to_vec(),
                transforms: chosen.transforms(),
                unknown_attribute: false,
            }]),
            Payload::Nonce(nr.clone()),
            Payload::Ke {
                group: kg,
                data: pubv,
            },
        ];
        self.send_response(sa, exchange::CREATE_CHILD_SA, mid, &out);
        let mut new = IkeSa::new(IkeSaId(new_spi_r), false, sa.local, sa.remote);
        self.adopt(
            now, sa, &mut new, new_spi_i, new_spi_r, chosen, suite, keys, ni, nr,
        );
    }

    /// Move everything from `old` to the rekeyed `new` SA and report it.
    #[allow(clippy::too_many_arguments)]
    fn adopt(
        &mut self,
        now: Instant,
        old: &mut IkeSa,
        new: &mut IkeSa,
        spi_i: u64,
        spi_r: u64,
        prop: IkeProposal,
        suite: IkeSuite,
        keys: IkeKeys,
        ni: Vec<u8>,
        nr: Vec<u8>,
    ) {
        new.spi_i = spi_i;
        new.spi_r = spi_r;
        new.peer = old.peer.clone();
        new.nat_local = old.nat_local;
        new.nat_remote = old.nat_remote;
        new.proposal = Some(prop);
        new.suite = Some(suite);
        new.keys = Some(keys);
        new.ni = ni;
        new.nr = nr;
        new.local_id = old.local_id.clone();
        new.remote_id = old.remote_id.clone();
        new.state = SaState::Established;
        new.children = std::mem::take(&mut old.children);
        for c in &new.children {
            self.child_index.insert(c.sa.spi_in, new.id);
        }
        // Pending work other than the rekey itself follows the new SA.
        new.queue = std::mem::take(&mut old.queue)
            .into_iter()
            .filter(|t| !matches!(t, Task::RekeyIke | Task::DeleteIke))
            .collect();
        if let Some(pc) = new.peer.clone() {
            let jitter = pc.rand_time.min(pc.rekey_time / 2);
            new.rekey_at = Some(self.jittered(now, pc.rekey_time, jitter));
            new.dpd_at = pc.dpd.map(|d| now + d);
        }
        old.state = if old.outstanding.is_some() || !old.queue.is_empty() {
            SaState::Deleting
        } else {
            SaState::Rekeyed
        };
        old.rekey_at = None;
        old.dpd_at = None;
        old.expire_at = Some(now + Duration::from_secs(60));
        if let Some(record) = new.record() {
            self.events.push_back(Event::IkeSaRekeyed {
                old: old.id,
                new: new.id,
                record: record.clone(),
            });
            self.events.push_back(Event::RecordRemoved { id: old.id });
            self.events
                .push_back(Event::RecordUpdated { id: new.id, record });
            // From the daemon's point of view the old SA is gone now (its DELETE
            // exchange still runs inside the engine, silently).
            self.events.push_back(Event::IkeSaDeleted {
                id: old.id,
                reason: format!("rekeyed, replaced by {}", new.id),
            });
        }
        let taken = IkeSa::new(new.id, new.initiator, new.local, new.remote);
        let n = std::mem::replace(new, taken);
        self.put(n);
    }

    /// Initiator: CREATE_CHILD_SA response for a new or rekeyed Child SA.
    #[allow(clippy::too_many_arguments)]
    fn handle_create_child_response(
        &mut self,
        now: Instant,
        sa: &mut IkeSa,
        p: &[Payload],
        child: ChildReq,
        spi_in: u32,
        ni: Vec<u8>,
        dh: Option<DhPrivate>,
    ) {
        if let Some(n) = find_notify(p, notify::INVALID_KE_PAYLOAD) {
            let g = n.data.get(..2).map(|b| u16::from_be_bytes([b[0], b[1]]));
            if let Some(g) = g.filter(|g| {
                dh.is_some() && child.cfg.esp_proposals.iter().any(|e| e.dh == Some(*g))
            }) {
                let mut c = child;
                c.cfg.esp_proposals.sort_by_key(|e| e.dh != Some(g));
                return self.start_create_child(now, sa, c);
            }
        }
        let Some(nr) = nonce_of(p).cloned() else {
            let reason = error_notify(p)
                .map(|n| format!("peer sent {}", notify_name(n.kind)))
                .unwrap_or_else(|| "no nonce in response".into());
            self.events.push_back(Event::ChildSaFailed {
                ike: sa.id,
                name: child.cfg.name.clone(),
                reason,
            });
            return self.after_failed_rekey(sa, child.rekey_of);
        };
        let shared = match (dh, ke_of(p)) {
            (Some(d), Some((_, kd))) => match crypto::dh_agree(d, kd) {
                Ok(s) => Some(s),
                Err(_) => return,
            },
            _ => None,
        };
        let before = sa.children.len();
        let rekey_of = child.rekey_of;
        self.finish_child_initiator(now, sa, p, child, spi_in, &ni, &nr, shared.as_deref());
        if sa.children.len() == before {
            return self.after_failed_rekey(sa, rekey_of);
        }
        self.resolve_collision(sa, rekey_of, &ni, &nr);
        self.emit_record(sa);
    }

    fn after_failed_rekey(&mut self, sa: &mut IkeSa, rekey_of: Option<u32>) {
        // Retry the rekey later rather than letting the SA expire silently.
        if let Some(c) = rekey_of.and_then(|s| sa.children.iter_mut().find(|c| c.sa.spi_in == s)) {
            if !c.rekeyed {
                c.rekey_at = None;
            }
        }
    }

    /// Simultaneous Child SA rekey (§2.8.1): when the peer also rekeyed the same
    /// SA, the new SA created with the lowest of the four nonces is redundant and is
    /// deleted by whoever initiated it.
    //= https://www.rfc-editor.org/rfc/rfc7296#section-2.8.1
    //# the SA created with the lowest of the four nonces used in the two
    //# exchanges SHOULD be deleted by the endpoint that created it.
    fn resolve_collision(&mut self, sa: &mut IkeSa, rekey_of: Option<u32>, ni: &[u8], nr: &[u8]) {
        let Some(old_in) = rekey_of else { return };
        let Some(old) = sa.children.iter_mut().find(|c| c.sa.spi_in == old_in) else {
            return;
        };
        let Some((_theirs, their_low)) = old.collision.take() else {
            return;
        };
        let our_low = if ni <= nr { ni } else { nr };
        if our_low < their_low.as_slice() {
            // Our new SA is the redundant one: delete it instead of the old SA
            // (the peer won and deletes the old one).
            let Some(ours) = sa.children.last().map(|c| c.sa.spi_in) else {
                return;
            };
            sa.queue
                .retain(|t| !matches!(t, Task::DeleteChild(s) if *s == old_in));
            if let Some(c) = sa.children.last_mut() {
                c.rekeyed = true;
                c.rekey_at = None;
            }
            sa.queue.push_front(Task::DeleteChild(ours));
        }
        // Otherwise the peer deletes the SA it created and we delete the old one
        // (already queued by install_child).
    }

    /// Initiator: IKE SA rekey response.
    fn handle_rekey_ike_response(
        &mut self,
        now: Instant,
        sa: &mut IkeSa,
        p: &[Payload],
        new_spi: u64,
        ni: Vec<u8>,
        dh: Option<DhPrivate>,
    ) {
        let Some(pc) = sa.peer.clone() else { return };
        let chosen = match sa_of(p).map(|v| v.as_slice()) {
            Some([one]) if one.spi.len() == 8 => {
                IkeProposal::from_chosen(one).map(|c| (c, one.spi.clone()))
            }
            _ => None,
        };
        let (Some((chosen, spi_r)), Some(nr), Some((kg, kd)), Some(dh)) =
            (chosen, nonce_of(p), ke_of(p), dh)
        else {
            // Failed (e.g. NO_PROPOSAL_CHOSEN): keep the old SA, try again later.
            sa.rekey_at =
                Some(self.jittered(now, Duration::from_secs(30), Duration::from_secs(25)));
            return;
        };
        if !pc.ike_proposals.contains(&chosen) || chosen.dh != kg {
            sa.rekey_at =
                Some(self.jittered(now, Duration::from_secs(30), Duration::from_secs(25)));
            return;
        }
        let (Some(suite), Some(old_suite), Some(old_keys)) =
            (suite_of(&chosen), sa.suite, sa.keys.as_ref())
        else {
            return;
        };
        let Ok(shared) = crypto::dh_agree(dh, kd) else {
            return;
        };
        let mut b = [0u8; 8];
        b.copy_from_slice(&spi_r[..8]);
        let new_spi_r = u64::from_be_bytes(b);
        let seed = crypto::skeyseed_rekey(old_suite.prf, &old_keys.sk_d, &shared, &ni, nr);
        let keys = crypto::derive_ike_keys(&suite, &seed, &ni, nr, new_spi, new_spi_r);
        let nr = nr.clone();
        let mut new = IkeSa::new(IkeSaId(new_spi), true, sa.local, sa.remote);
        self.adopt(
            now, sa, &mut new, new_spi, new_spi_r, chosen, suite, keys, ni, nr,
        );
        //= https://www.rfc-editor.org/rfc/rfc7296#section-1.3.2
        //# After the new equivalent IKE SA is created, the initiator deletes the
        //# old IKE SA
        self.send_request(
            now,
            sa,
            exchange::INFORMATIONAL,
            &[Payload::Delete(Delete {
                protocol: protocol::IKE,
                spis: vec![],
            })],
            Pending::DeleteIke,
        );
        sa.state = SaState::Deleting;
    }
}

// ---------------------------------------------------------------------------------
// Tasks and commands
// ---------------------------------------------------------------------------------

impl Endpoint {
    fn start_next_task(&mut self, now: Instant, sa: &mut IkeSa) {
        while sa.outstanding.is_none() && sa.state == SaState::Established {
            let Some(task) = sa.queue.pop_front() else {
                return;
            };
            match task {
                Task::CreateChild(req) => self.start_create_child(now, sa, req),
                Task::RekeyChild(spi_in) => {
                    let Some(c) = sa
                        .children
                        .iter()
                        .find(|c| c.sa.spi_in == spi_in && !c.rekeyed)
                    else {
                        continue;
                    };
                    let Some(pc) = sa.peer.clone() else { continue };
                    let mut cfg = pc
                        .children
                        .iter()
                        .find(|x| x.name == c.sa.name)
                        .cloned()
                        .unwrap_or_else(|| ChildConfig::new(&c.sa.name, vec![], vec![], vec![]));
                    // Rekey with the same selectors, mode and (first) proposal.
                    cfg.local_ts = c.sa.ts_local.clone();
                    cfg.remote_ts = c.sa.ts_remote.clone();
                    cfg.mode = c.sa.mode;
                    let mut p = c.proposal;
                    p.dh = cfg
                        .esp_proposals
                        .iter()
                        .find(|e| {
                            e.encr == p.encr && e.encr_bits == p.encr_bits && e.integ == p.integ
                        })
                        .and_then(|e| e.dh);
                    cfg.esp_proposals.retain(|e| {
                        e.encr != p.encr
                            || e.encr_bits != p.encr_bits
                            || e.integ != p.integ
                            || e.esn != p.esn
                    });
                    cfg.esp_proposals.insert(0, p);
                    self.start_create_child(
                        now,
                        sa,
                        ChildReq {
                            cfg,
                            rekey_of: Some(spi_in),
                        },
                    );
                }
                Task::RekeyIke => self.start_rekey_ike(now, sa),
                Task::DeleteChild(spi_in) => {
                    if !sa.children.iter().any(|c| c.sa.spi_in == spi_in) {
                        continue;
                    }
                    let d = Payload::Delete(Delete {
                        protocol: protocol::ESP,
                        spis: vec![spi_in],
                    });
                    self.send_request(
                        now,
                        sa,
                        exchange::INFORMATIONAL,
                        &[d],
                        Pending::DeleteChild { spi_in },
                    );
                }
                Task::DeleteIke => {
                    let d = Payload::Delete(Delete {
                        protocol: protocol::IKE,
                        spis: vec![],
                    });
                    self.send_request(now, sa, exchange::INFORMATIONAL, &[d], Pending::DeleteIke);
                }
                Task::Dpd => {
                    //= https://www.rfc-editor.org/rfc/rfc7296#section-1.4
                    //# An INFORMATIONAL request with no payloads (other than the empty
                    //# Encrypted payload required by the syntax) is commonly used as a
                    //# check for liveness.
                    self.send_request(now, sa, exchange::INFORMATIONAL, &[], Pending::Dpd);
                }
            }
        }
    }

    fn start_create_child(&mut self, now: Instant, sa: &mut IkeSa, req: ChildReq) {
        let spi_in = self.new_child_spi();
        let ni = self.nonce();
        let group = req.cfg.esp_proposals.first().and_then(|e| e.dh);
        let mut dh = None;
        let mut p = vec![];
        if let Some(old) = req
            .rekey_of
            .and_then(|s| sa.children.iter().find(|c| c.sa.spi_in == s))
        {
            //= https://www.rfc-editor.org/rfc/rfc7296#section-1.3.3
            //# The SA being rekeyed is identified by the SPI field in the Notify
            //# payload; this is the SPI the exchange initiator would expect in
            //# inbound ESP or AH packets.
            p.push(Payload::Notify(Notify {
                protocol: protocol::ESP,
                spi: old.sa.spi_in.to_be_bytes().to_vec(),
                kind: notify::REKEY_SA,
                data: vec![],
            }));
        }
        if req.cfg.mode == Mode::Transport {
            p.push(Payload::notify(notify::USE_TRANSPORT_MODE, vec![]));
        }
        p.push(esp_sa_payload(&req.cfg, spi_in, group.is_some()));
        p.push(Payload::Nonce(ni.clone()));
        if let Some(g) = group {
            match crypto::dh_generate(g, self.rng.as_mut()) {
                Ok((d, pubv)) => {
                    dh = Some(d);
                    p.push(Payload::Ke {
                        group: g,
                        data: pubv,
                    });
                }
                Err(_) => return,
            }
        }
        p.push(Payload::TsI(req.cfg.local_ts.clone()));
        p.push(Payload::TsR(req.cfg.remote_ts.clone()));
        self.send_request(
            now,
            sa,
            exchange::CREATE_CHILD_SA,
            &p,
            Pending::CreateChild {
                child: req,
                spi_in,
                ni,
                dh,
            },
        );
    }

    fn start_rekey_ike(&mut self, now: Instant, sa: &mut IkeSa) {
        let Some(pc) = sa.peer.clone() else { return };
        let Some(cur) = sa.proposal else { return };
        let new_spi = self.new_ike_spi();
        let ni = self.nonce();
        let Ok((dh, pubv)) = crypto::dh_generate(cur.dh, self.rng.as_mut()) else {
            return;
        };
        let mut props = vec![cur];
        props.extend(
            pc.ike_proposals
                .iter()
                .filter(|p| **p != cur && p.dh == cur.dh),
        );
        let sa_p = Payload::Sa(
            props
                .iter()
                .enumerate()
                .map(|(i, p)| Proposal {
                    num: i as u8 + 1,
                    protocol: protocol::IKE,
                    spi: new_spi.to_be_bytes().to_vec(),
                    transforms: p.transforms(),
                    unknown_attribute: false,
                })
                .collect(),
        );
        let p = vec![
            sa_p,
            Payload::Nonce(ni.clone()),
            Payload::Ke {
                group: cur.dh,
                data: pubv,
            },
        ];
        // Reserve the SPI so that no other SA takes it meanwhile.
        self.send_request(
            now,
            sa,
            exchange::CREATE_CHILD_SA,
            &p,
            Pending::RekeyIke {
                new_spi,
                ni,
                dh: Some(dh),
            },
        );
    }

    fn with_sa<R>(
        &mut self,
        now: Instant,
        id: IkeSaId,
        f: impl FnOnce(&mut Self, &mut IkeSa) -> Result<R, Error>,
    ) -> Result<R, Error> {
        let mut sa = self.take(id).ok_or(Error::UnknownSa(id))?;
        let r = f(self, &mut sa);
        self.finish(now, sa);
        r
    }

    /// Create another Child SA (config `child`) in an established IKE SA.
    pub fn create_child(&mut self, now: Instant, id: IkeSaId, child: &str) -> Result<(), Error> {
        self.with_sa(now, id, |_, sa| {
            let pc = sa.peer.clone().ok_or(Error::NotEstablished(id))?;
            let cfg = pc
                .children
                .iter()
                .find(|c| c.name == child)
                .cloned()
                .ok_or_else(|| Error::UnknownChild {
                    peer: pc.name.clone(),
                    child: child.into(),
                })?;
            sa.queue.push_back(Task::CreateChild(ChildReq {
                cfg,
                rekey_of: None,
            }));
            Ok(())
        })
    }

    /// Rekey the Child SA with inbound SPI `spi_in` (SAD soft expiry). The new SA
    /// comes as `ChildSaRekeyed`, the old one's `ChildSaDeleted` follows.
    pub fn rekey_child(&mut self, now: Instant, spi_in: u32) -> Result<(), Error> {
        let id = *self
            .child_index
            .get(&spi_in)
            .ok_or(Error::UnknownChildSa(spi_in))?;
        self.with_sa(now, id, |_, sa| {
            if sa.state != SaState::Established {
                return Err(Error::NotEstablished(id));
            }
            sa.queue.push_back(Task::RekeyChild(spi_in));
            Ok(())
        })
    }

    /// Rekey an IKE SA (§1.3.2); reported as `IkeSaRekeyed`.
    pub fn rekey_ike(&mut self, now: Instant, id: IkeSaId) -> Result<(), Error> {
        self.with_sa(now, id, |_, sa| {
            if sa.state != SaState::Established {
                return Err(Error::NotEstablished(id));
            }
            sa.queue.push_back(Task::RekeyIke);
            Ok(())
        })
    }

    /// Delete one Child SA (INFORMATIONAL with DELETE).
    pub fn delete_child(&mut self, now: Instant, spi_in: u32) -> Result<(), Error> {
        let id = *self
            .child_index
            .get(&spi_in)
            .ok_or(Error::UnknownChildSa(spi_in))?;
        self.with_sa(now, id, |_, sa| {
            sa.queue.push_back(Task::DeleteChild(spi_in));
            Ok(())
        })
    }

    /// Delete an IKE SA and all its Child SAs (half-open ones are dropped at once).
    pub fn delete_ike(&mut self, now: Instant, id: IkeSaId) -> Result<(), Error> {
        let mut sa = self.take(id).ok_or(Error::UnknownSa(id))?;
        if sa.state != SaState::Established {
            self.destroy(sa, "deleted by command before establishment", true);
            return Ok(());
        }
        sa.queue.clear();
        sa.queue.push_back(Task::DeleteIke);
        if sa.outstanding.is_some() {
            // Do not wait behind a rekey: the delete supersedes it.
            sa.outstanding = None;
        }
        self.finish(now, sa);
        Ok(())
    }

    /// Send a liveness check now.
    pub fn dpd(&mut self, now: Instant, id: IkeSaId) -> Result<(), Error> {
        self.with_sa(now, id, |_, sa| {
            sa.queue.push_back(Task::Dpd);
            Ok(())
        })
    }

    /// Status of every IKE SA (for `plexgate status`).
    pub fn sas(&self, now: Instant) -> Vec<IkeSaInfo> {
        let secs = |t: Option<Instant>| t.map(|t| t.saturating_duration_since(now).as_secs());
        let mut v: Vec<IkeSaInfo> = self
            .sas
            .values()
            .map(|sa| IkeSaInfo {
                id: sa.id,
                peer: sa.peer.as_ref().map(|p| p.name.clone()),
                state: sa.state,
                initiator: sa.initiator,
                spi_i: sa.spi_i,
                spi_r: sa.spi_r,
                local: sa.local,
                remote: sa.remote,
                local_id: sa.local_id.as_ref().map(|i| i.to_string()),
                remote_id: sa.remote_id.as_ref().map(|i| i.to_string()),
                algorithms: sa.proposal.map(|p| p.name()),
                nat: sa.nat_local || sa.nat_remote,
                rekey_in_secs: secs(sa.rekey_at),
                children: sa
                    .children
                    .iter()
                    .map(|c| ChildInfo {
                        name: c.sa.name.clone(),
                        spi_in: c.sa.spi_in,
                        spi_out: c.sa.spi_out,
                        algorithms: esp_name(&c.proposal),
                        ts_local: c.sa.ts_local.iter().map(|t| t.to_string()).collect(),
                        ts_remote: c.sa.ts_remote.iter().map(|t| t.to_string()).collect(),
                        mode: c.sa.mode,
                        udp_encap: c.sa.udp_encap,
                        rekey_in_secs: secs(c.rekey_at),
                    })
                    .collect(),
            })
            .collect();
        v.sort_by_key(|i| i.id);
        v
    }
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
