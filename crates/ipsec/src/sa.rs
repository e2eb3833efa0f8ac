//! A Child SA's data plane: parameters (a serializable record from which a
//! backup gateway can rebuild the SA), and seal / open of ESP packets in caller
//! buffers (RFC 4303 §3.3 outbound, §3.4 inbound).
//!
//! ESP packet layout (RFC 4303 §2): `SPI | Seq | IV | ciphertext | ICV`, where
//! the ciphertext covers `inner | padding 1,2,3,... | pad length | next header`.
//! Nothing on the seal/open path allocates.

use crate::error::{EspError, SaError};
use crate::replay::{ReplayWindow, MIN_WINDOW};
use crate::selector::{inbound_matches, outbound_matches, InboundSelectors, TrafficSelector};
use crate::transform::{constant_time_eq, EspCipher, EspTransform, Icv};
use crate::transport::{tuple_of, TransportPacket};
use core::net::IpAddr;
use core::ops::Range;
use plexgate_wire::ip::{self, proto, FiveTuple, TupleV4};
use std::time::{Duration, Instant};

/// Length of the ESP header (SPI + sequence number).
pub const ESP_HEADER_LEN: usize = plexgate_wire::esp::HEADER_LEN;

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
    pub fn serialize<S: serde::Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(v))
    }
    pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
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

/// Result of a successful open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Opened {
    /// The next header field: 4 (IPv4) or 41 (IPv6) in tunnel mode, the
    /// transport protocol in transport mode.
    pub next_header: u8,
    /// Where the inner packet lies in the caller's buffer (in tunnel mode
    /// trimmed to the inner IP length, so TFC padding is dropped).
    pub inner: Range<usize>,
    /// The full (64-bit with ESN) sequence number.
    pub seq: u64,
}

/// Lifetime events an SA raises (collected by the SAD).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Pending {
    None,
    Soft,
    Hard,
}

/// Byte and packet counts of one SA.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct SaStats {
    /// Inner bytes sealed or opened.
    pub bytes: u64,
    /// Packets sealed or opened.
    pub packets: u64,
    /// Packets dropped as replays (inbound).
    pub replay_drops: u64,
    /// Packets dropped for a bad ICV (inbound).
    pub icv_failures: u64,
}

/// A live SA: cipher, sequence state, replay window, lifetime bookkeeping.
#[derive(Debug)]
pub struct SecurityAssociation {
    params: SaParams,
    cipher: EspCipher,
    /// Outbound: last sequence number used. Inbound: unused.
    last_seq: u64,
    seq_max: u64,
    seq_soft: u64,
    window: Option<ReplayWindow>,
    created: Instant,
    /// `created` + the hard lifetime in seconds, computed once (`None`: no
    /// time limit, or beyond what `Instant` can represent): the per-packet
    /// check is one comparison instead of a duration subtraction.
    hard_deadline: Option<Instant>,
    /// `params.local_ts` / `remote_ts` prepared for the inbound check.
    selectors_in: InboundSelectors,
    stats: SaStats,
    soft_bytes: u64,
    soft_packets: u64,
    hard_bytes: u64,
    hard_packets: u64,
    soft_done: bool,
    expired: bool,
    pub(crate) pending: Pending,
}

impl SecurityAssociation {
    /// Creates the SA at time `now` (lifetimes in seconds count from `now`).
    pub fn new(params: SaParams, now: Instant) -> Result<Self, SaError> {
        if params.spi == 0 {
            return Err(SaError::ZeroSpi);
        }
        let cipher = EspCipher::new(params.transform, &params.enc_key, &params.integ_key)?;
        // With anti-replay disabled the window still tracks the highest
        // number received, which ESN inference needs.
        let window = match (params.direction, params.replay_window) {
            (Direction::Inbound, 0) => {
                Some(ReplayWindow::starting_at(MIN_WINDOW, params.initial_seq))
            }
            (Direction::Inbound, w) if w < MIN_WINDOW => return Err(SaError::ReplayWindow(w)),
            (Direction::Inbound, w) => Some(ReplayWindow::starting_at(w, params.initial_seq)),
            (Direction::Outbound, _) => None,
        };
        //= https://www.rfc-editor.org/rfc/rfc4303#section-3.3.3
        //# the sender's counter and the receiver's counter MUST NOT be allowed to cycle
        if params.direction == Direction::Outbound
            && !params.esn
            && params.initial_seq > u64::from(u32::MAX)
        {
            return Err(SaError::InitialSeq(params.initial_seq));
        }
        let seq_max = if params.esn {
            u64::MAX
        } else {
            u64::from(u32::MAX)
        };
        let seq_soft = seq_max - seq_max / 16;
        let lim = |v: Option<u64>| v.unwrap_or(u64::MAX);
        let hard_deadline = params
            .lifetime
            .hard
            .seconds
            .and_then(|s| now.checked_add(Duration::from_secs(s)));
        Ok(SecurityAssociation {
            last_seq: params.initial_seq,
            seq_max,
            seq_soft,
            window,
            created: now,
            hard_deadline,
            selectors_in: InboundSelectors::new(&params.local_ts, &params.remote_ts),
            stats: SaStats::default(),
            soft_bytes: lim(params.lifetime.soft.bytes),
            soft_packets: lim(params.lifetime.soft.packets),
            hard_bytes: lim(params.lifetime.hard.bytes),
            hard_packets: lim(params.lifetime.hard.packets),
            soft_done: false,
            expired: false,
            pending: Pending::None,
            cipher,
            params,
        })
    }

    /// The parameters this SA was built from.
    pub fn params(&self) -> &SaParams {
        &self.params
    }

    /// SPI.
    pub fn spi(&self) -> u32 {
        self.params.spi
    }

    /// Counts of this SA.
    pub fn stats(&self) -> SaStats {
        self.stats
    }

    /// Outbound: the last sequence number used (store it in recovery records).
    pub fn last_seq(&self) -> u64 {
        self.last_seq
    }

    /// Inbound: highest sequence number accepted so far.
    pub fn highest_received(&self) -> Option<u64> {
        self.window.as_ref().map(ReplayWindow::top)
    }

    /// Whether a soft limit was reached (a rekey should be started).
    pub fn needs_rekey(&self) -> bool {
        self.soft_done
    }

    /// Whether a hard limit was reached: the SA refuses all traffic.
    pub fn is_expired(&self) -> bool {
        self.expired
    }

    /// When the soft and hard time limits fall.
    pub fn deadlines(&self) -> (Option<Instant>, Option<Instant>) {
        let at = |s: Option<u64>| s.and_then(|s| self.created.checked_add(Duration::from_secs(s)));
        (
            at(self.params.lifetime.soft.seconds),
            at(self.params.lifetime.hard.seconds),
        )
    }

    /// Bytes before the inner packet when sealing in place (header + IV).
    pub fn header_len(&self) -> usize {
        ESP_HEADER_LEN + self.params.transform.iv_len()
    }

    /// Total ESP length for an inner packet of `inner_len` bytes.
    pub fn sealed_len(&self, inner_len: usize) -> usize {
        inner_len + self.params.transform.overhead(inner_len)
    }

    /// Applies time-based lifetimes; returns true if something changed.
    pub(crate) fn handle_time(&mut self, now: Instant) -> bool {
        let (soft, hard) = self.deadlines();
        let before = (self.soft_done, self.expired);
        if hard.is_some_and(|h| now >= h) {
            self.expire();
        } else if soft.is_some_and(|s| now >= s) {
            self.soft();
        }
        before != (self.soft_done, self.expired)
    }

    fn soft(&mut self) {
        if !self.soft_done && !self.expired {
            self.soft_done = true;
            self.pending = Pending::Soft;
        }
    }

    fn expire(&mut self) {
        if !self.expired {
            self.expired = true;
            self.pending = Pending::Hard;
        }
    }

    #[inline(always)]
    fn account(&mut self, inner_len: usize) {
        self.stats.bytes += inner_len as u64;
        self.stats.packets += 1;
        if self.stats.bytes >= self.hard_bytes || self.stats.packets >= self.hard_packets {
            self.expire();
        } else if !self.soft_done
            && (self.stats.bytes >= self.soft_bytes
                || self.stats.packets >= self.soft_packets
                || self.last_seq >= self.seq_soft)
        {
            self.soft();
        }
    }

    /// Seals `inner` into `out`: writes SPI | seq | IV | ciphertext | ICV and
    /// returns the ESP length. `next_header` is 4 / 41 in tunnel mode, the
    /// transport protocol in transport mode, 59 for a dummy packet.
    pub fn seal(
        &mut self,
        now: Instant,
        inner: &[u8],
        next_header: u8,
        out: &mut [u8],
    ) -> Result<usize, EspError> {
        let h = self.header_len();
        let needed = self.sealed_len(inner.len());
        if out.len() < needed {
            return Err(EspError::BufferTooSmall {
                needed,
                have: out.len(),
            });
        }
        out[h..h + inner.len()].copy_from_slice(inner);
        self.seal_in_place(now, out, inner.len(), next_header)
    }

    /// Seals in place: the inner packet is already at
    /// `buf[header_len() .. header_len() + inner_len]`, and `buf` has room for
    /// trailer and ICV (`sealed_len(inner_len)` bytes in all). Returns the ESP
    /// length.
    pub fn seal_in_place(
        &mut self,
        now: Instant,
        buf: &mut [u8],
        inner_len: usize,
        next_header: u8,
    ) -> Result<usize, EspError> {
        self.seal_with_iv(now, buf, inner_len, next_header, None)
    }

    /// Seal with an optional explicit IV (known-answer tests only: a fixed IV
    /// breaks GCM's uniqueness requirement).
    fn seal_with_iv(
        &mut self,
        now: Instant,
        buf: &mut [u8],
        inner_len: usize,
        next_header: u8,
        iv_override: Option<&[u8]>,
    ) -> Result<usize, EspError> {
        if self.params.direction != Direction::Outbound {
            return Err(EspError::WrongDirection);
        }
        self.check_alive(now)?;
        let t = self.params.transform;
        let h = self.header_len();
        let total = self.sealed_len(inner_len);
        let have = buf.len();
        let buf = buf.get_mut(..total).ok_or(EspError::BufferTooSmall {
            needed: total,
            have,
        })?;
        //= https://www.rfc-editor.org/rfc/rfc4303#section-3.3.3
        //# If the sequence number would cycle, the sender ... MUST NOT send
        if self.last_seq >= self.seq_max {
            self.expire();
            return Err(EspError::SeqExhausted);
        }
        let seq = self.last_seq + 1;
        let ct_end = total - t.icv_len();
        // Trailer: padding 1, 2, 3, ..., pad length, next header (RFC 4303 §2.4).
        //= https://www.rfc-editor.org/rfc/rfc4303#section-2.4
        //# the Padding bytes are initialized with a series of (unsigned, 1-byte)
        //# integer values.  The first padding byte appended to the plaintext is
        //# numbered 1
        let pad_start = h + inner_len;
        let pad_len = ct_end - 2 - pad_start;
        for (i, b) in buf[pad_start..ct_end - 2].iter_mut().enumerate() {
            *b = (i + 1) as u8;
        }
        buf[ct_end - 2] = pad_len as u8;
        buf[ct_end - 1] = next_header;
        buf[0..4].copy_from_slice(&self.params.spi.to_be_bytes());
        buf[4..8].copy_from_slice(&(seq as u32).to_be_bytes());
        let seq_hi = ((seq >> 32) as u32).to_be_bytes();
        if t.is_aead() {
            //= https://www.rfc-editor.org/rfc/rfc4106#section-3.1
            //# the IV MUST be unique for each packet ... a counter is suitable
            let mut iv = seq.to_be_bytes();
            if let Some(o) = iv_override {
                iv.copy_from_slice(o);
            }
            buf[8..16].copy_from_slice(&iv);
            let aad = self.aad(&seq_hi, buf);
            let (_, rest) = buf.split_at_mut(h);
            let (pt, icv) = rest.split_at_mut(ct_end - h);
            let tag = self
                .cipher
                .aead_seal(&iv, aad.as_slice(), pt)
                .ok_or(EspError::BadIcv)?;
            icv.copy_from_slice(&tag);
        } else {
            let mut iv = self.cipher.cbc_iv(seq).ok_or(EspError::BadIcv)?;
            if let Some(o) = iv_override {
                iv.copy_from_slice(o);
            }
            buf[8..24].copy_from_slice(&iv);
            self.cipher
                .cbc_encrypt(&iv, &mut buf[h..ct_end])
                .ok_or(EspError::BadIcv)?;
            let icv = self.icv(&buf[..ct_end], &seq_hi).ok_or(EspError::BadIcv)?;
            buf[ct_end..].copy_from_slice(icv.as_slice());
        }
        self.last_seq = seq;
        self.account(inner_len);
        Ok(total)
    }

    /// AAD: SPI || seq_lo, or SPI || seq_hi || seq_lo with ESN.
    //= https://www.rfc-editor.org/rfc/rfc4106#section-5
    //# SPI, 64-bit Extended Sequence Number ... SPI, 32-bit Sequence Number
    #[inline]
    fn aad(&self, seq_hi: &[u8; 4], buf: &[u8]) -> Aad {
        let mut a = [0u8; 12];
        a[..4].copy_from_slice(&buf[..4]);
        if self.params.esn {
            a[4..8].copy_from_slice(seq_hi);
            a[8..12].copy_from_slice(&buf[4..8]);
            Aad { bytes: a, len: 12 }
        } else {
            a[4..8].copy_from_slice(&buf[4..8]);
            Aad { bytes: a, len: 8 }
        }
    }

    /// HMAC ICV over header, IV and ciphertext, plus seq_hi with ESN.
    //= https://www.rfc-editor.org/rfc/rfc4303#section-2.2.1
    //# the high-order 32 bits are ... included in the ICV computation
    #[inline]
    fn icv(&self, covered: &[u8], seq_hi: &[u8; 4]) -> Option<Icv> {
        if self.params.esn {
            self.cipher.hmac_icv(&[covered, seq_hi])
        } else {
            self.cipher.hmac_icv(&[covered])
        }
    }

    #[inline]
    fn check_alive(&mut self, now: Instant) -> Result<(), EspError> {
        // now - created >= hard seconds  <=>  now >= created + hard seconds
        // (RFC 4301 §4.4.2.1: a hard lifetime ends the SA).
        if !self.expired && self.hard_deadline.is_some_and(|d| now >= d) {
            self.expire();
        }
        if self.expired {
            Err(EspError::SaExpired)
        } else {
            Ok(())
        }
    }

    /// Opens an ESP packet in place (`buf` starts with the SPI). On success the
    /// inner packet is at `buf[opened.inner]`. Checks, in order: lifetime,
    /// length, replay window (before the ICV), ICV, then updates the window,
    /// checks padding, next header, and the SA's traffic selectors: in tunnel
    /// mode against the inner packet, in transport mode against the packet
    /// the payload belongs to ([`SecurityAssociation::transport_packet`]).
    #[inline]
    pub fn open_in_place(&mut self, now: Instant, buf: &mut [u8]) -> Result<Opened, EspError> {
        self.open_impl::<false>(now, buf).map(|(o, _)| o)
    }

    /// [`SecurityAssociation::open_in_place`], also returning the inner packet's
    /// 5-tuple when the selector check parsed it (tunnel mode with selectors),
    /// so that the caller need not parse the packet again (e.g. to route it).
    /// The tuple is that of `buf[opened.inner]`; every check is the same.
    #[inline]
    pub fn open_in_place_tuple(
        &mut self,
        now: Instant,
        buf: &mut [u8],
    ) -> Result<(Opened, Option<FiveTuple>), EspError> {
        self.open_impl::<true>(now, buf)
    }

    /// Both of the above: with `TUPLE` false, the selector check of an IPv4
    /// inner packet works on a [`TupleV4`] (same decision, see
    /// [`InboundSelectors::matches_v4`]) and no [`FiveTuple`] is built.
    #[inline(always)]
    fn open_impl<const TUPLE: bool>(
        &mut self,
        now: Instant,
        buf: &mut [u8],
    ) -> Result<(Opened, Option<FiveTuple>), EspError> {
        if self.params.direction != Direction::Inbound {
            return Err(EspError::WrongDirection);
        }
        self.check_alive(now)?;
        let t = self.params.transform;
        let h = self.header_len();
        let len = buf.len();
        let truncated = EspError::Truncated { len };
        let icv_len = t.icv_len();
        if len < h + 2 + icv_len {
            return Err(truncated);
        }
        let ct_end = len - icv_len;
        if !t.is_aead() && !(ct_end - h).is_multiple_of(16) {
            return Err(truncated);
        }
        let spi = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]);
        if spi != self.params.spi {
            return Err(EspError::UnknownSpi(spi));
        }
        let seq_lo = u32::from_be_bytes([buf[4], buf[5], buf[6], buf[7]]);
        let anti_replay = self.params.replay_window != 0;
        let seq = match (&self.window, self.params.esn) {
            (Some(w), true) => w
                .infer_esn(seq_lo)
                .ok_or(EspError::Replay(u64::from(seq_lo)))?,
            _ => u64::from(seq_lo),
        };
        if let (Some(w), true) = (&self.window, anti_replay) {
            if let Err(e) = w.check(seq) {
                self.stats.replay_drops += 1;
                return Err(e);
            }
        }
        let seq_hi = ((seq >> 32) as u32).to_be_bytes();
        let ok = if t.is_aead() {
            let mut iv = [0u8; 8];
            iv.copy_from_slice(&buf[8..16]);
            let aad = self.aad(&seq_hi, buf);
            self.cipher
                .aead_open(&iv, aad.as_slice(), &mut buf[h..])
                .is_some()
        } else {
            //= https://www.rfc-editor.org/rfc/rfc4303#section-3.4.4.1
            //# If a separate integrity algorithm is employed, then the receiver
            //# proceeds to integrity verification ... before decryption
            let icv = self.icv(&buf[..ct_end], &seq_hi);
            let good = icv.is_some_and(|i| constant_time_eq(&i, &buf[ct_end..]));
            if good {
                let mut iv = [0u8; 16];
                iv.copy_from_slice(&buf[8..24]);
                self.cipher.cbc_decrypt(&iv, &mut buf[h..ct_end]).is_some()
            } else {
                false
            }
        };
        if !ok {
            self.stats.icv_failures += 1;
            return Err(EspError::BadIcv);
        }
        //= https://www.rfc-editor.org/rfc/rfc4303#section-3.4.3
        //# The receive window is updated only if the integrity verification succeeds.
        if let Some(w) = &mut self.window {
            match w.update(seq) {
                Err(e) if anti_replay => return Err(e),
                _ => {}
            }
        }
        let next_header = buf[ct_end - 1];
        let pad_len = usize::from(buf[ct_end - 2]);
        let inner_end = (ct_end - 2)
            .checked_sub(pad_len)
            .filter(|&e| e >= h)
            .ok_or(EspError::BadPadding)?;
        if !buf[inner_end..ct_end - 2]
            .iter()
            .enumerate()
            .all(|(i, &b)| usize::from(b) == i + 1)
        {
            return Err(EspError::BadPadding);
        }
        //= https://www.rfc-editor.org/rfc/rfc4303#section-2.6
        //# A transmitter MUST be capable of generating dummy packets marked
        //# with this value in the next protocol field, and a receiver MUST be
        //# prepared to discard such packets
        if next_header == proto::NO_NEXT_HEADER {
            return Err(EspError::DummyPacket);
        }
        let mut inner = h..inner_end;
        let mut parsed = None;
        if self.params.mode == Mode::Tunnel {
            let pkt = &buf[inner.clone()];
            let want = match next_header {
                proto::IPIP => 4,
                proto::IPV6 => 6,
                other => return Err(EspError::BadNextHeader(other)),
            };
            if !matches!(ip::version(pkt), Ok(v) if v == want) {
                return Err(EspError::BadNextHeader(next_header));
            }
            // Drop TFC padding after the inner packet (RFC 4303 §2.7).
            let ilen = ip::total_len(pkt).map_err(|_| EspError::Truncated { len })?;
            if ilen > pkt.len() {
                return Err(EspError::Truncated { len });
            }
            inner.end = inner.start + ilen;
            //= https://www.rfc-editor.org/rfc/rfc4301#section-5.2
            //# 4. ... check that the packet ... matches the selectors of the SA
            if !self.selectors_in.is_any() && !TUPLE && want == 4 {
                match TupleV4::parse(&buf[inner.clone()]) {
                    Ok(tuple) if self.selectors_in.matches_v4(tuple) => {}
                    _ => return Err(EspError::SelectorMismatch),
                }
            } else if !self.selectors_in.is_any() {
                match FiveTuple::parse(&buf[inner.clone()]) {
                    Ok(tuple) if self.selectors_in.matches(&tuple) => parsed = Some(tuple),
                    _ => return Err(EspError::SelectorMismatch),
                }
            }
        } else if !self.selectors_in.is_any() {
            // Transport mode: the same check (RFC 4301 §5.2 makes no exception
            // for it) on the packet the payload belongs to: the SA's outer
            // addresses, the next header as protocol, ports from the payload.
            let (src, dst) = self.params.outer_src_dst();
            let tuple = tuple_of(src, dst, next_header, &buf[inner.clone()]);
            if !self.selectors_in.matches(&tuple) {
                return Err(EspError::SelectorMismatch);
            }
        }
        self.account(inner.len());
        Ok((
            Opened {
                next_header,
                inner,
                seq,
            },
            parsed,
        ))
    }

    /// For an SA in transport mode, the packet `opened` (a result of this
    /// inbound SA's open) belongs to: outer addresses, protocol and payload,
    /// to check again or to rebuild the IP packet around the payload. `None`
    /// in tunnel mode, where `buf[opened.inner]` is the whole inner packet.
    pub fn transport_packet(&self, opened: &Opened) -> Option<TransportPacket> {
        if self.params.mode != Mode::Transport {
            return None;
        }
        let (src, dst) = self.params.outer_src_dst();
        Some(TransportPacket {
            src,
            dst,
            protocol: opened.next_header,
            payload: opened.inner.clone(),
        })
    }

    /// Whether an inner packet may be sent on (outbound) or was allowed to
    /// arrive on (inbound) this SA, by its traffic selectors (RFC 4301 §5.1,
    /// §5.2 step 4). Unparseable packets do not match.
    pub fn selectors_match(&self, inner: &[u8]) -> bool {
        let Ok(t) = FiveTuple::parse(inner) else {
            return false;
        };
        match self.params.direction {
            Direction::Inbound => {
                inbound_matches(&self.params.local_ts, &self.params.remote_ts, &t)
            }
            Direction::Outbound => {
                outbound_matches(&self.params.local_ts, &self.params.remote_ts, &t)
            }
        }
    }
}

struct Aad {
    bytes: [u8; 12],
    len: usize,
}

impl Aad {
    #[inline]
    fn as_slice(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::selector::TrafficSelector;

    pub(crate) fn params(
        transform: EspTransform,
        spi: u32,
        enc: &str,
        integ: &str,
        direction: Direction,
    ) -> SaParams {
        SaParams {
            spi,
            direction,
            transform,
            enc_key: hex::decode(enc).unwrap(),
            integ_key: hex::decode(integ).unwrap(),
            esn: false,
            mode: Mode::Tunnel,
            replay_window: 128,
            lifetime: Lifetime::default(),
            local_ts: vec![],
            remote_ts: vec![],
            local_addr: "10.250.0.2".parse().unwrap(),
            remote_addr: "10.250.0.1".parse().unwrap(),
            encap: None,
            initial_seq: 0,
            peer: "p".into(),
            child: "c".into(),
        }
    }

    /// Opens `packet` with an inbound SA, then re-seals the inner packet with
    /// an outbound SA of the same keys, the same sequence number and the IV
    /// from the packet; the result must equal the original bytes.
    fn open_and_reseal(p: SaParams, packet: &str) -> Vec<u8> {
        let now = Instant::now();
        let orig = hex::decode(packet).unwrap();
        let mut buf = orig.clone();
        let mut inb = SecurityAssociation::new(p.clone(), now).unwrap();
        let o = inb.open_in_place(now, &mut buf).unwrap();
        let inner = buf[o.inner.clone()].to_vec();
        let mut out_p = p;
        out_p.direction = Direction::Outbound;
        out_p.initial_seq = o.seq - 1;
        let mut outb = SecurityAssociation::new(out_p, now).unwrap();
        let h = outb.header_len();
        let iv = orig[8..h].to_vec();
        let mut sealed = vec![0u8; outb.sealed_len(inner.len())];
        sealed[h..h + inner.len()].copy_from_slice(&inner);
        let n = outb
            .seal_with_iv(now, &mut sealed, inner.len(), o.next_header, Some(&iv))
            .unwrap();
        assert_eq!(hex::encode(&sealed[..n]), hex::encode(&orig));
        inner
    }

    /// RFC 7634 Appendix A, "ESP Example": SPI 0x01020304, seq 5, IV
    /// 0x1011121314151617, key 80..9f, salt a0a1a2a3; the plaintext is an
    /// 84-byte ICMP echo request 198.51.100.5 -> 192.0.2.5 with pad 01 02,
    /// pad length 2, next header 4.
    #[test]
    fn rfc7634_esp_example() {
        let packet = "0102030400000005101112131415161724039428\
            b97f417e3c13753a4f05087b67c352e6a7fab1b982d466ef407ae5c614ee8099d52844eb61aa95dfab\
            4c02f72aa71e7c4c4f64c9befe2facc638e8f3cbec163fac469b502773f6fb94e664da9165b82829f641\
            e076aaa8266b7fb0f7b11b369907e1ad43";
        let p = params(
            EspTransform::ChaCha20Poly1305,
            0x0102_0304,
            "808182838485868788898a8b8c8d8e8f909192939495969798999a9b9c9d9e9fa0a1a2a3",
            "",
            Direction::Inbound,
        );
        let inner = open_and_reseal(p, packet);
        assert_eq!(inner.len(), 84);
        let t = FiveTuple::parse(&inner).unwrap();
        assert_eq!(t.src, "198.51.100.5".parse::<IpAddr>().unwrap());
        assert_eq!(t.dst, "192.0.2.5".parse::<IpAddr>().unwrap());
        assert_eq!(t.src_port, Some(0x0800)); // echo request
    }

    /// Frame 5 of `/work/shared/captures/gcm128-x25519/exchange.pcap`:
    /// strongSwan 5.9.8, AES-GCM-128, client -> gateway, SPI 0x634a93ee, key
    /// and salt from responder.log ("encryption initiator key").
    #[test]
    fn strongswan_gcm128_reseal() {
        let packet =
            "634a93ee00000001607747c91f6b88f93dd41b0e26b9210bc94c79a63922de70ff41bba59c9ab93a\
            d59b1f1ad4e2395bcca71dbb4330fd44ff5ed6cbb49c0df4b59acd347c6a13c3544196f2cede51ad387a8a\
            4c166f9ea08551d4d19df2ff342f970a7d75e2ee5fdbb47a0fe72493040b3c8ba987217d8c";
        let mut p = params(
            EspTransform::AesGcm128,
            0x634a_93ee,
            "c65629a57c9b614e59d66baef2e260b5af77a5e5",
            "",
            Direction::Inbound,
        );
        p.local_ts = vec![TrafficSelector::host("203.0.113.250".parse().unwrap())];
        p.remote_ts = vec![TrafficSelector::host("192.168.250.1".parse().unwrap())];
        let inner = open_and_reseal(p, packet);
        let t = FiveTuple::parse(&inner).unwrap();
        assert_eq!(t.protocol, proto::ICMP);
        assert_eq!(t.src_port, Some(0x0800));
    }

    /// Frame 5 of `/work/shared/captures/gcm256-p384/exchange.pcap`:
    /// strongSwan 5.9.8, AES-CBC-256 + HMAC-SHA-256-128, SPI 0xdbd3a3b8, keys
    /// from responder.log ("encryption/integrity initiator key").
    #[test]
    fn strongswan_cbc256_reseal() {
        let packet =
            "dbd3a3b8000000016bc8a69b4b0e86bf06c38f456484697bf5506ab45db3824350948c0e87ce47e6\
            9e8002f571dcf1e2602f93e9823a022e4ed3e442822e1f11f9d6f2b04dc5e8e8ea51dbc17d28686cdf1fe7\
            ad22c471489f2aa019c000760818d5d44d1d3ed897c57a28ed0abc2cf70b700ab271a38b23f4d8de73bdc6\
            3a03bfb345a08560e99b";
        let p = params(
            EspTransform::AesCbc256HmacSha256,
            0xdbd3_a3b8,
            "d30d315402f29185733aba440c0772f80b1d4e3021667727aeab4ed519e15bfd",
            "534566742e90a45ade9e1f6380fe75af5a3ca269907702f051daa6aafa8d8cb1",
            Direction::Inbound,
        );
        let inner = open_and_reseal(p, packet);
        let t = FiveTuple::parse(&inner).unwrap();
        assert_eq!(t.src, "192.168.250.1".parse::<IpAddr>().unwrap());
        assert_eq!(t.dst, "203.0.113.250".parse::<IpAddr>().unwrap());
        assert_eq!(t.src_port, Some(0x0800));
    }
}
