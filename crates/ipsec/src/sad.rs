//! The security association database (RFC 4301 §4.4.2): inbound SAs by SPI,
//! outbound SAs by SPI with an index from (peer, child) to the newest outbound
//! SA, lifetime timers, and events in the quinn style: the caller passes time
//! in, drives [`Sad::handle_timeout`] at [`Sad::next_timeout`], and drains
//! [`Sad::poll_event`].
//!
//! The hot path ([`Sad::open_in_place`], [`Sad::seal`]) does at most one hash
//! lookup (a multiplicative hash on the SPI; none when the SPI is the one of
//! the previous packet) and never allocates.

use crate::error::{Counters, EspError, SaError};
use crate::sa::{Direction, Opened, Pending, SaParams, SecurityAssociation};
use plexgate_wire::ip::FiveTuple;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::hash::{BuildHasherDefault, Hasher};
use std::time::Instant;

/// A fast hasher for SPIs. SPIs are chosen at random by us (inbound) or the
/// peer (outbound); a multiply-and-fold spreads them over the table's bits.
#[derive(Default, Clone, Copy)]
pub struct SpiHasher(u64);

impl Hasher for SpiHasher {
    #[inline]
    fn finish(&self) -> u64 {
        self.0
    }
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(*b)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        }
    }
    #[inline]
    fn write_u32(&mut self, v: u32) {
        let x = (u64::from(v) ^ self.0).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        self.0 = x ^ (x >> 29);
    }
}

type SpiMap<V> = HashMap<u32, V, BuildHasherDefault<SpiHasher>>;

/// SAs of one direction by SPI: a dense vector with a hash index, and a memo
/// of the last SPI looked up mutably. Consecutive packets of one SA (a bulk
/// transfer, a receive batch) then skip the hash probe: one compare and one
/// indexed load.
#[derive(Debug)]
struct SpiTable<V> {
    slots: Vec<(u32, V)>,
    index: SpiMap<usize>,
    /// (SPI, slot) of the last `get_mut` hit; cleared when slots move.
    last: Option<(u32, usize)>,
}

impl<V> Default for SpiTable<V> {
    fn default() -> Self {
        SpiTable {
            slots: Vec::new(),
            index: SpiMap::default(),
            last: None,
        }
    }
}

impl<V> SpiTable<V> {
    fn contains_key(&self, spi: u32) -> bool {
        self.index.contains_key(&spi)
    }

    /// Insert `v` under `spi`, replacing the value already there (as a map
    /// would; `Sad::insert` refuses duplicates before it gets here).
    fn insert(&mut self, spi: u32, v: V) {
        if let Some(&i) = self.index.get(&spi) {
            self.slots[i].1 = v;
            return;
        }
        self.index.insert(spi, self.slots.len());
        self.slots.push((spi, v));
    }

    fn remove(&mut self, spi: u32) -> Option<V> {
        let i = self.index.remove(&spi)?;
        self.last = None;
        let (_, v) = self.slots.swap_remove(i);
        if let Some((moved, _)) = self.slots.get(i) {
            self.index.insert(*moved, i);
        }
        Some(v)
    }

    fn get(&self, spi: u32) -> Option<&V> {
        self.index.get(&spi).map(|&i| &self.slots[i].1)
    }

    #[inline(always)]
    fn get_mut(&mut self, spi: u32) -> Option<&mut V> {
        let i = match self.last {
            Some((s, i)) if s == spi => i,
            _ => {
                let i = *self.index.get(&spi)?;
                self.last = Some((spi, i));
                i
            }
        };
        self.slots.get_mut(i).map(|(_, v)| v)
    }

    fn values(&self) -> impl Iterator<Item = &V> {
        self.slots.iter().map(|(_, v)| v)
    }

    fn len(&self) -> usize {
        self.slots.len()
    }
}

/// Why an event was raised.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SadEvent {
    /// A soft lifetime (bytes, packets, seconds or the sequence number space)
    /// was reached: start a rekey of this Child SA (once per SA).
    RekeyNeeded {
        /// SPI of the SA.
        spi: u32,
        /// Its direction.
        direction: Direction,
    },
    /// A hard lifetime was reached; the SA was removed from the SAD.
    Expired {
        /// SPI of the SA.
        spi: u32,
        /// Its direction.
        direction: Direction,
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
    by_child: HashMap<String, HashMap<String, u32>>,
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

    /// Creates and installs an SA. An outbound SA becomes the one
    /// [`Sad::outbound_spi`] returns for its (peer, child).
    pub fn insert(&mut self, params: SaParams, now: Instant) -> Result<(), SaError> {
        let dir = params.direction;
        let spi = params.spi;
        if self.map(dir).contains_key(spi) {
            return Err(SaError::DuplicateSpi(spi));
        }
        let sa = SecurityAssociation::new(params, now)?;
        let (soft, hard) = sa.deadlines();
        for t in [soft, hard].into_iter().flatten() {
            self.timers.push(Reverse((t, dir, spi)));
        }
        if dir == Direction::Outbound {
            let p = sa.params();
            self.by_child
                .entry(p.peer.clone())
                .or_default()
                .insert(p.child.clone(), spi);
        }
        self.map_mut(dir).insert(spi, sa);
        Ok(())
    }

    /// Removes an SA (e.g. on a DELETE from the peer or after a rekey).
    pub fn remove(&mut self, direction: Direction, spi: u32) -> Option<SecurityAssociation> {
        let sa = self.map_mut(direction).remove(spi)?;
        if direction == Direction::Outbound {
            let p = sa.params();
            if let Some(children) = self.by_child.get_mut(&p.peer) {
                if children.get(&p.child) == Some(&spi) {
                    children.remove(&p.child);
                }
                if children.is_empty() {
                    self.by_child.remove(&p.peer);
                }
            }
        }
        Some(sa)
    }

    fn map(&self, d: Direction) -> &SpiTable<SecurityAssociation> {
        match d {
            Direction::Inbound => &self.inbound,
            Direction::Outbound => &self.outbound,
        }
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

    /// The outbound SA with this SPI.
    pub fn outbound(&self, spi: u32) -> Option<&SecurityAssociation> {
        self.outbound.get(spi)
    }

    /// The SPI of the newest outbound SA for a (peer, child) — what an SPD
    /// `Protect { peer, child, .. }` rule points at. Cache it (e.g. in the
    /// connection table) to skip the string lookup per packet.
    pub fn outbound_spi(&self, peer: &str, child: &str) -> Option<u32> {
        self.by_child.get(peer)?.get(child).copied()
    }

    /// All SAs, for status output.
    pub fn iter(&self) -> impl Iterator<Item = &SecurityAssociation> {
        self.inbound.values().chain(self.outbound.values())
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

    /// Seals `inner` with the outbound SA `spi` into `out`; returns the ESP
    /// length. See [`SecurityAssociation::seal`].
    pub fn seal(
        &mut self,
        now: Instant,
        spi: u32,
        inner: &[u8],
        next_header: u8,
        out: &mut [u8],
    ) -> Result<usize, EspError> {
        let r = match self.outbound.get_mut(spi) {
            None => Err(EspError::UnknownSpi(spi)),
            Some(sa) => {
                let r = sa.seal(now, inner, next_header, out);
                if sa.pending != Pending::None {
                    self.collect(Direction::Outbound, spi);
                }
                r
            }
        };
        self.count_tx(&r, inner.len());
        r
    }

    /// Seals in place with the outbound SA `spi`; see
    /// [`SecurityAssociation::seal_in_place`].
    pub fn seal_in_place(
        &mut self,
        now: Instant,
        spi: u32,
        buf: &mut [u8],
        inner_len: usize,
        next_header: u8,
    ) -> Result<usize, EspError> {
        let r = match self.outbound.get_mut(spi) {
            None => Err(EspError::UnknownSpi(spi)),
            Some(sa) => {
                let r = sa.seal_in_place(now, buf, inner_len, next_header);
                if sa.pending != Pending::None {
                    self.collect(Direction::Outbound, spi);
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
    fn collect(&mut self, direction: Direction, spi: u32) {
        let Some(sa) = self.map_mut(direction).get_mut(spi) else {
            return;
        };
        let p = core::mem::replace(&mut sa.pending, Pending::None);
        match p {
            Pending::None => {}
            Pending::Soft => self
                .events
                .push_back(SadEvent::RekeyNeeded { spi, direction }),
            Pending::Hard => {
                self.remove(direction, spi);
                self.events.push_back(SadEvent::Expired { spi, direction });
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

#[cfg(test)]
mod spi_table_tests {
    use super::SpiTable;
    use proptest::prelude::*;
    use std::collections::HashMap;

    #[derive(Debug, Clone)]
    enum Op {
        Insert(u32),
        Remove(u32),
        GetMut(u32),
    }

    fn op() -> impl Strategy<Value = Op> {
        // Few SPIs, so that operations meet the same entries often.
        prop_oneof![
            (0u32..6).prop_map(Op::Insert),
            (0u32..6).prop_map(Op::Remove),
            (0u32..6).prop_map(Op::GetMut),
        ]
    }

    proptest! {
        /// The table (with its memo and swap-removal) behaves as a map.
        #[test]
        fn spi_table_behaves_as_a_map(ops in proptest::collection::vec(op(), 0..64)) {
            let mut t: SpiTable<u64> = SpiTable::default();
            let mut m: HashMap<u32, u64> = HashMap::new();
            for (n, o) in ops.into_iter().enumerate() {
                match o {
                    Op::Insert(s) => {
                        t.insert(s, n as u64);
                        m.insert(s, n as u64);
                    }
                    Op::Remove(s) => prop_assert_eq!(t.remove(s), m.remove(&s)),
                    Op::GetMut(s) => {
                        // Write through both, so that a stale memo would show.
                        if let Some(v) = t.get_mut(s) {
                            *v += 1000;
                        }
                        if let Some(v) = m.get_mut(&s) {
                            *v += 1000;
                        }
                    }
                }
                prop_assert_eq!(t.len(), m.len());
                for (s, v) in &m {
                    prop_assert_eq!(t.get(*s), Some(v));
                    prop_assert!(t.contains_key(*s));
                }
                let mut vals: Vec<u64> = t.values().copied().collect();
                let mut want: Vec<u64> = m.values().copied().collect();
                vals.sort_unstable();
                want.sort_unstable();
                prop_assert_eq!(vals, want);
            }
        }
    }
}
