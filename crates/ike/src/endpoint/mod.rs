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

mod auth;
mod authn;
mod child;
mod cookie;
mod create_child;
mod events;
mod exchanges;
mod init;
mod init_responder;
mod isolation;
mod messages;
mod names;
mod payloads;
mod rekey_ike;
mod sa;
mod select;
mod status;
mod tasks;
mod timers;

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use crate::config::{
    AuthConfig, ChildConfig, Config, EspProposal, EspSupport, IkeProposal, Mode, PeerConfig,
    StartAction,
};
use crate::crypto::{self, DhPrivate, IkeKeys, IkeSuite, Prf, Rng, SkCipher};
use crate::message::{
    exchange, find_notify, flags, notify, protocol, Delete, Header, Identification, Message,
    Notify, ParseError, Payload, Proposal, TrafficSelector,
};
use crate::record::IkeRecord;
use zeroize::Zeroizing;

use authn::*;
use child::ChildKeying;
use cookie::CookieState;
use names::{describe_proposals, esp_name};
use payloads::*;
use sa::*;
use select::*;

pub use events::{ChildSa, Error, Event, IkeKeyLog, IkeSaId, Transmit};
pub use status::{ChildInfo, IkeSaInfo, SaState};

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
    /// IKE SAs by our SPI (also SPIs reserved for an IKE SA rekey in flight).
    spi_index: HashMap<u64, IkeSaId>,
    /// The number of the next IKE SA.
    next_id: u64,
    timers: BTreeSet<(Instant, IkeSaId)>,
    transmits: VecDeque<Transmit>,
    events: VecDeque<Event>,
    cookie: CookieState,
    /// Maps the caller's `Instant`s to wall-clock time for certificate validity.
    wall: (Instant, SystemTime),
    /// The ESP transforms the data plane can install: nothing else is negotiated.
    esp_support: EspSupport,
    /// Report the keys of every IKE SA (`Event::IkeKeys`) for a key log.
    key_log: bool,
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
    /// Decrypted (the ICV verified) but the inner chain is malformed.
    Invalid(ParseError),
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
            spi_index: HashMap::new(),
            next_id: 1,
            timers: BTreeSet::new(),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            cookie: CookieState::new(secret),
            wall: (Instant::now(), SystemTime::now()),
            esp_support: EspSupport::default(),
            key_log: false,
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

    /// Tell the engine which ESP transforms the data plane can install (by default
    /// [`EspSupport::default`], what `plexgate-ipsec` implements). From then on no
    /// Child SA is proposed or accepted with another transform; established ones stay.
    pub fn set_esp_support(&mut self, support: EspSupport) {
        self.esp_support = support;
    }

    /// Report the keys of each new IKE SA as an `Event::IkeKeys` (off by default), so
    /// that the daemon can write Wireshark's IKEv2 decryption table.
    pub fn set_key_log(&mut self, on: bool) {
        self.key_log = on;
    }

    /// The key log event of `sa`, when asked for and its keys exist.
    fn log_keys(&mut self, sa: &IkeSa) {
        let (true, Some(k), Some(s)) = (self.key_log, sa.keys.as_ref(), sa.suite) else {
            return;
        };
        let keys = IkeKeyLog {
            spi_i: sa.spi_i,
            spi_r: sa.spi_r,
            encr: s.encr,
            encr_bits: s.encr_bits,
            integ: s.integ,
            sk_ei: k.sk_ei.clone(),
            sk_er: k.sk_er.clone(),
            sk_ai: k.sk_ai.clone(),
            sk_ar: k.sk_ar.clone(),
        };
        self.events.push_back(Event::IkeKeys { id: sa.id, keys });
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
            + self.spi_index.len() * 24
            + self.timers.len() * 32
    }

    fn random_u64(&mut self) -> u64 {
        let mut b = [0u8; 8];
        self.rng.fill(&mut b);
        u64::from_be_bytes(b)
    }

    /// The number of a new IKE SA.
    fn next_id(&mut self) -> IkeSaId {
        let id = IkeSaId(self.next_id);
        self.next_id += 1;
        id
    }

    /// A new SPI of ours, unique among our IKE SAs, registered for `owner`.
    fn new_ike_spi(&mut self, owner: IkeSaId) -> u64 {
        loop {
            let s = self.random_u64();
            if s != 0 && !self.spi_index.contains_key(&s) {
                self.spi_index.insert(s, owner);
                return s;
            }
        }
    }

    /// Forget the SPI `spi` when it is registered for `owner`.
    fn release_spi(&mut self, spi: u64, owner: IkeSaId) {
        if self.spi_index.get(&spi) == Some(&owner) {
            self.spi_index.remove(&spi);
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
        self.release_spi(sa.our_spi(), sa.id);
        if let Some(s) = sa.reserved_spi.take() {
            self.release_spi(s, sa.id);
        }
        if let Some(d) = sa.deadline.take() {
            self.timers.remove(&(d, sa.id));
        }
        if let Some(k) = sa.init_key.take() {
            self.init_index.remove(&k);
        }
        self.remove_children(&mut sa);
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
}
