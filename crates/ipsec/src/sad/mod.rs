//! The security association database (RFC 4301 §4.4.2): inbound SAs by SPI,
//! outbound SAs by a handle of the SAD's own with the index that chooses the
//! outbound SA of a packet by its SPD rule and the SA's selectors
//! ([`outbound`], RFC 4301 §5.1), the pairing of both SAs of a Child SA,
//! lifetime timers, and events in the quinn style: the caller passes time in,
//! drives [`Sad::handle_timeout`] at [`Sad::next_timeout`], and drains
//! [`Sad::poll_event`].
//!
//! The hot path ([`Sad::open_in_place`], [`Sad::seal`]) does at most one hash
//! lookup (a multiplicative hash on the SPI or handle; none when it is the one
//! of the previous packet) and never allocates.

mod outbound;
mod table;

pub use outbound::{ChildKey, HeldBy, OutHandle};

use crate::error::{Counters, EspError, SaError};
use crate::sa::{Direction, Opened, Pending, SaParams, SecurityAssociation};
use outbound::OutboundIndex;
use plexgate_wire::ip::FiveTuple;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::time::Instant;
use table::SpiTable;

/// One SA in the SAD: an inbound SA by its SPI, an outbound one by its handle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SaKey {
    /// An inbound SA (SPI chosen by us, unique in the SAD).
    Inbound(u32),
    /// An outbound SA.
    Outbound(OutHandle),
}

impl SaKey {
    fn split(self) -> (Direction, u32) {
        match self {
            SaKey::Inbound(spi) => (Direction::Inbound, spi),
            SaKey::Outbound(h) => (Direction::Outbound, h.0),
        }
    }

    fn join(d: Direction, k: u32) -> SaKey {
        match d {
            Direction::Inbound => SaKey::Inbound(k),
            Direction::Outbound => SaKey::Outbound(OutHandle(k)),
        }
    }
}

/// Both SAs of one Child SA, as installed by [`Sad::insert_child`]. The inbound
/// SPI names the Child SA (it is ours, and it is what IKE asks about).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ChildRef {
    /// Our inbound SPI.
    pub spi_in: u32,
    /// The outbound SA.
    pub out: OutHandle,
}

/// Why an event was raised.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SadEvent {
    /// A soft lifetime (bytes, packets, seconds or the sequence number space)
    /// was reached: start a rekey of this Child SA (once per SA).
    RekeyNeeded {
        /// The SA.
        sa: SaKey,
        /// The inbound SPI of its Child SA, if it was installed as a pair.
        child: Option<u32>,
    },
    /// A hard lifetime was reached; the SA was removed from the SAD.
    Expired {
        /// The SA.
        sa: SaKey,
        /// The inbound SPI of its Child SA, if it was installed as a pair.
        child: Option<u32>,
    },
}

/// A successfully opened inbound packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inbound {
    /// The SPI of the SA that opened it (use [`Sad::inbound`] for its peer,
    /// child and selectors).
    pub spi: u32,
    /// Next header, inner range and sequence number.
    pub opened: Opened,
}

/// The security association database.
#[derive(Debug, Default)]
pub struct Sad {
    inbound: SpiTable<SecurityAssociation>,
    outbound: SpiTable<SecurityAssociation>,
    index: OutboundIndex,
    next_handle: u32,
    /// Child SAs installed as pairs: inbound SPI → outbound handle, and back.
    pair_of_in: HashMap<u32, OutHandle>,
    pair_of_out: HashMap<OutHandle, u32>,
    timers: BinaryHeap<Reverse<(Instant, Direction, u32)>>,
    events: VecDeque<SadEvent>,
    /// Drop reasons and traffic totals of all SAs in this SAD.
    pub counters: Counters,
}

impl Sad {
    /// An empty SAD.
    pub fn new() -> Self {
        Self::default()
    }

    /// Creates and installs one SA, owned by nobody in particular (use
    /// [`Sad::insert_child`] for the two SAs of a negotiated Child SA). An
    /// inbound SA is keyed by its SPI, which must be new; an outbound one gets a
    /// handle and is offered to [`Sad::select_outbound`] for its (peer, child).
    pub fn insert(&mut self, params: SaParams, now: Instant) -> Result<SaKey, SaError> {
        match params.direction {
            Direction::Inbound => {
                let spi = params.spi;
                if self.inbound.contains_key(spi) {
                    return Err(SaError::DuplicateSpi(spi));
                }
                let sa = SecurityAssociation::new(params, now)?;
                self.place(SaKey::Inbound(spi), sa);
                Ok(SaKey::Inbound(spi))
            }
            Direction::Outbound => {
                let sa = SecurityAssociation::new(params, now)?;
                Ok(SaKey::Outbound(self.place_outbound(sa, "")))
            }
        }
    }

    /// Installs both SAs of a Child SA negotiated with the peer identity `owner`,
    /// or neither. Refused: an inbound SPI already in use, parameters the data
    /// plane cannot use, and remote selectors that overlap those of an SA of
    /// another owner under the same (peer, child) — one peer never receives
    /// another's traffic.
    pub fn insert_child(
        &mut self,
        inbound: SaParams,
        outbound: SaParams,
        owner: &str,
        now: Instant,
    ) -> Result<ChildRef, SaError> {
        if inbound.direction != Direction::Inbound || outbound.direction != Direction::Outbound {
            return Err(SaError::WrongDirection);
        }
        let spi_in = inbound.spi;
        if self.inbound.contains_key(spi_in) {
            return Err(SaError::DuplicateSpi(spi_in));
        }
        if let Some(held) =
            self.index
                .held_by_other(&outbound.peer, &outbound.child, owner, &outbound.remote_ts)
        {
            return Err(SaError::SelectorsHeld { owner: held.owner });
        }
        let sa_in = SecurityAssociation::new(inbound, now)?;
        let sa_out = SecurityAssociation::new(outbound, now)?;
        self.place(SaKey::Inbound(spi_in), sa_in);
        let out = self.place_outbound(sa_out, owner);
        self.pair_of_in.insert(spi_in, out);
        self.pair_of_out.insert(out, spi_in);
        Ok(ChildRef { spi_in, out })
    }

    fn place_outbound(&mut self, sa: SecurityAssociation, owner: &str) -> OutHandle {
        let h = self.fresh_handle();
        let p = sa.params();
        self.index
            .insert(h, &p.peer, &p.child, owner, &p.local_ts, &p.remote_ts);
        self.place(SaKey::Outbound(h), sa);
        h
    }

    fn place(&mut self, key: SaKey, sa: SecurityAssociation) {
        let (dir, k) = key.split();
        let (soft, hard) = sa.deadlines();
        for t in [soft, hard].into_iter().flatten() {
            self.timers.push(Reverse((t, dir, k)));
        }
        self.map_mut(dir).insert(k, sa);
    }

    fn fresh_handle(&mut self) -> OutHandle {
        loop {
            self.next_handle = self.next_handle.wrapping_add(1).max(1);
            if !self.outbound.contains_key(self.next_handle) {
                return OutHandle(self.next_handle);
            }
        }
    }

    /// Removes one SA (e.g. on a DELETE from the peer or after a rekey).
    pub fn remove(&mut self, key: SaKey) -> Option<SecurityAssociation> {
        let (dir, k) = key.split();
        let sa = self.map_mut(dir).remove(k)?;
        match key {
            SaKey::Inbound(spi) => {
                if let Some(h) = self.pair_of_in.remove(&spi) {
                    self.pair_of_out.remove(&h);
                }
            }
            SaKey::Outbound(h) => {
                self.index.remove(h);
                if let Some(spi) = self.pair_of_out.remove(&h) {
                    self.pair_of_in.remove(&spi);
                }
            }
        }
        Some(sa)
    }

    /// Removes both SAs of the Child SA with inbound SPI `spi_in`; returns the
    /// outbound SA that went with it (the inbound one is gone too).
    pub fn remove_child(&mut self, spi_in: u32) -> Option<SecurityAssociation> {
        let out = self.pair_of_in.get(&spi_in).copied();
        self.remove(SaKey::Inbound(spi_in));
        out.and_then(|h| self.remove(SaKey::Outbound(h)))
    }

    /// Stops offering the outbound SA of a rekeyed Child SA for new packets: its
    /// replacement carries them from now on; the SA itself stays until removed.
    pub fn retire_outbound(&mut self, h: OutHandle) {
        self.index.retire(h);
    }

    fn map_mut(&mut self, d: Direction) -> &mut SpiTable<SecurityAssociation> {
        match d {
            Direction::Inbound => &mut self.inbound,
            Direction::Outbound => &mut self.outbound,
        }
    }

    /// The inbound SA with this SPI.
    pub fn inbound(&self, spi: u32) -> Option<&SecurityAssociation> {
        self.inbound.get(spi)
    }

    /// The outbound SA with this handle.
    pub fn outbound(&self, h: OutHandle) -> Option<&SecurityAssociation> {
        self.outbound.get(h.0)
    }

    /// The outbound SA paired with the inbound SPI `spi_in`.
    pub fn outbound_of_child(&self, spi_in: u32) -> Option<OutHandle> {
        self.pair_of_in.get(&spi_in).copied()
    }

    /// The inbound SPI of the Child SA an outbound SA belongs to.
    pub fn child_of_outbound(&self, h: OutHandle) -> Option<u32> {
        self.pair_of_out.get(&h).copied()
    }

    /// The owner (remote identity) an outbound SA was installed for.
    pub fn owner(&self, h: OutHandle) -> Option<&str> {
        self.index.owner(h)
    }

    /// The key an SPD PROTECT rule for (peer, child) selects with, once any SA
    /// of that pair was installed. Cache it to skip the string lookup per packet.
    pub fn child_key(&self, peer: &str, child: &str) -> Option<ChildKey> {
        self.index.key(peer, child)
    }

    /// The key of a (peer, child) pair, made if it is new: an SPD PROTECT rule's
    /// handle for [`Sad::select_outbound`], taken once when the SPD is built.
    pub fn intern_child(&mut self, peer: &str, child: &str) -> ChildKey {
        self.index.key_or_insert(peer, child)
    }

    /// The outbound SA that must carry the packet `t` under the SPD rule
    /// naming `key`: the newest of that rule's SAs whose selectors fit the
    /// packet (RFC 4301 §5.1). `None`: no SA yet (start an acquire).
    #[inline]
    pub fn select_outbound(&self, key: ChildKey, t: &FiveTuple) -> Option<OutHandle> {
        self.index.select(key, t)
    }

    /// [`Sad::select_outbound`] by (peer, child) names.
    pub fn outbound_for(&self, peer: &str, child: &str, t: &FiveTuple) -> Option<OutHandle> {
        self.select_outbound(self.child_key(peer, child)?, t)
    }

    /// The newest outbound SA of a (peer, child), whatever its selectors.
    pub fn newest_outbound(&self, peer: &str, child: &str) -> Option<OutHandle> {
        self.index.newest(self.child_key(peer, child)?)
    }

    /// NAT rebinding: every SA whose peer was at `from` (address, and port with
    /// UDP encapsulation) now reaches it at `to`. Returns how many moved.
    pub fn move_peer(&mut self, from: std::net::SocketAddr, to: std::net::SocketAddr) -> usize {
        let at_from = |sa: &SecurityAssociation| {
            let p = sa.params();
            p.remote_addr == from.ip() && p.encap.is_none_or(|e| e.remote_port == from.port())
        };
        let mut n = 0;
        for sa in self.inbound.values_mut().chain(self.outbound.values_mut()) {
            if at_from(sa) {
                sa.move_peer(to.ip(), to.port());
                n += 1;
            }
        }
        n
    }

    /// All SAs, for status output.
    pub fn iter(&self) -> impl Iterator<Item = &SecurityAssociation> {
        self.inbound.values().chain(self.outbound.values())
    }

    /// All outbound SAs with their handles.
    pub fn outbound_sas(&self) -> impl Iterator<Item = (OutHandle, &SecurityAssociation)> {
        self.outbound.iter().map(|(k, sa)| (OutHandle(k), sa))
    }

    /// Number of installed SAs (both directions).
    pub fn len(&self) -> usize {
        self.inbound.len() + self.outbound.len()
    }

    /// Whether no SA is installed.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Opens an ESP packet (starting with its SPI) in place with the inbound
    /// SA its SPI names. Counts the packet or its drop reason.
    ///
    /// The inner packet's selector check (RFC 4301 §5.2) is the same as in
    /// [`Sad::open_in_place_tuple`]; for IPv4 it builds no [`FiveTuple`].
    #[inline]
    pub fn open_in_place(&mut self, now: Instant, buf: &mut [u8]) -> Result<Inbound, EspError> {
        let r = self.open_inner::<false>(now, buf).map(|(i, _)| i);
        match &r {
            Ok(i) => {
                self.counters.rx_packets += 1;
                self.counters.rx_bytes += i.opened.inner.len() as u64;
            }
            Err(e) => self.counters.record_drop(e),
        }
        r
    }

    /// [`Sad::open_in_place`], also returning the inner 5-tuple that the SA's
    /// selector check parsed (see [`SecurityAssociation::open_in_place_tuple`]).
    #[inline]
    pub fn open_in_place_tuple(
        &mut self,
        now: Instant,
        buf: &mut [u8],
    ) -> Result<(Inbound, Option<FiveTuple>), EspError> {
        let r = self.open_inner::<true>(now, buf);
        match &r {
            Ok((i, _)) => {
                self.counters.rx_packets += 1;
                self.counters.rx_bytes += i.opened.inner.len() as u64;
            }
            Err(e) => self.counters.record_drop(e),
        }
        r
    }

    #[inline(always)]
    fn open_inner<const TUPLE: bool>(
        &mut self,
        now: Instant,
        buf: &mut [u8],
    ) -> Result<(Inbound, Option<FiveTuple>), EspError> {
        let spi = match buf.get(..4) {
            Some(s) => u32::from_be_bytes([s[0], s[1], s[2], s[3]]),
            None => return Err(EspError::Truncated { len: buf.len() }),
        };
        let sa = self.inbound.get_mut(spi).ok_or(EspError::UnknownSpi(spi))?;
        let r = if TUPLE {
            sa.open_in_place_tuple(now, buf)
        } else {
            sa.open_in_place(now, buf).map(|o| (o, None))
        };
        if sa.pending != Pending::None {
            self.collect(Direction::Inbound, spi);
        }
        r.map(|(opened, tuple)| (Inbound { spi, opened }, tuple))
    }

    /// Seals `inner` with the outbound SA `h` into `out`; returns the ESP
    /// length. See [`SecurityAssociation::seal`].
    pub fn seal(
        &mut self,
        now: Instant,
        h: OutHandle,
        inner: &[u8],
        next_header: u8,
        out: &mut [u8],
    ) -> Result<usize, EspError> {
        let r = match self.outbound.get_mut(h.0) {
            None => Err(EspError::UnknownSpi(h.0)),
            Some(sa) => {
                let r = sa.seal(now, inner, next_header, out);
                if sa.pending != Pending::None {
                    self.collect(Direction::Outbound, h.0);
                }
                r
            }
        };
        self.count_tx(&r, inner.len());
        r
    }

    /// Seals in place with the outbound SA `h`; see
    /// [`SecurityAssociation::seal_in_place`].
    pub fn seal_in_place(
        &mut self,
        now: Instant,
        h: OutHandle,
        buf: &mut [u8],
        inner_len: usize,
        next_header: u8,
    ) -> Result<usize, EspError> {
        let r = match self.outbound.get_mut(h.0) {
            None => Err(EspError::UnknownSpi(h.0)),
            Some(sa) => {
                let r = sa.seal_in_place(now, buf, inner_len, next_header);
                if sa.pending != Pending::None {
                    self.collect(Direction::Outbound, h.0);
                }
                r
            }
        };
        self.count_tx(&r, inner_len);
        r
    }

    #[inline]
    fn count_tx(&mut self, r: &Result<usize, EspError>, inner_len: usize) {
        match r {
            Ok(_) => {
                self.counters.tx_packets += 1;
                self.counters.tx_bytes += inner_len as u64;
            }
            Err(e) => self.counters.record_drop(e),
        }
    }

    /// Moves an SA's pending lifetime event to the queue; removes it if hard
    /// expired.
    #[cold]
    fn collect(&mut self, direction: Direction, k: u32) {
        let Some(sa) = self.map_mut(direction).get_mut(k) else {
            return;
        };
        let p = core::mem::replace(&mut sa.pending, Pending::None);
        let sa = SaKey::join(direction, k);
        let child = match sa {
            SaKey::Inbound(spi) => self.pair_of_in.contains_key(&spi).then_some(spi),
            SaKey::Outbound(h) => self.pair_of_out.get(&h).copied(),
        };
        match p {
            Pending::None => {}
            Pending::Soft => self.events.push_back(SadEvent::RekeyNeeded { sa, child }),
            Pending::Hard => {
                self.remove(sa);
                self.events.push_back(SadEvent::Expired { sa, child });
            }
        }
    }

    /// The next lifetime event, if any.
    pub fn poll_event(&mut self) -> Option<SadEvent> {
        self.events.pop_front()
    }

    /// When [`Sad::handle_timeout`] must next be called.
    pub fn next_timeout(&self) -> Option<Instant> {
        self.timers.peek().map(|Reverse((t, _, _))| *t)
    }

    /// Applies time-based lifetimes that fell due at or before `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some(Reverse((t, dir, spi))) = self.timers.peek().copied() {
            if t > now {
                break;
            }
            self.timers.pop();
            if let Some(sa) = self.map_mut(dir).get_mut(spi) {
                if sa.handle_time(now) {
                    self.collect(dir, spi);
                }
            }
        }
    }
}
