//! The outbound half of the SAD: which SA carries an outbound packet.
//!
//! RFC 4301 §5.1: the outbound SPD rule that matches a packet names the SA
//! (bundle) that must carry it; among the SAs negotiated for that rule, the
//! packet must fit the SA's own selectors. Here an SPD PROTECT rule is named by
//! its (peer, child) pair, interned as a [`ChildKey`]; every outbound SA of that
//! pair is indexed by the destination addresses its remote selectors cover, and
//! [`OutboundIndex::select`] returns the newest SA whose local and remote
//! selectors both fit the packet.
//!
//! Outbound SAs are keyed by an [`OutHandle`] the SAD gives out, not by SPI: each
//! peer chooses the SPIs of its own inbound SAs, so two peers may pick the same
//! one, by accident or on purpose, and neither may then touch the other's SA.
//!
//! The index also keeps one peer from holding another's inner addresses
//! (RFC 4301 §4.4.1 "one SA per peer"): an SA whose remote selectors overlap
//! those of an SA of a different owner (the authenticated remote identity) in
//! the same (peer, child) is refused.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use crate::selector::{outbound_matches, TrafficSelector};
use plexgate_wire::ip::FiveTuple;

/// The SAD's name for an outbound SA (its SPI is the peer's choice and need not
/// be unique).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct OutHandle(pub u32);

impl std::fmt::Display for OutHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "out#{}", self.0)
    }
}

/// An interned (peer, child) pair: what an SPD PROTECT rule points at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ChildKey(u32);

/// The selection data of one outbound SA.
#[derive(Debug, Clone)]
struct Entry {
    key: ChildKey,
    owner: Arc<str>,
    local_ts: Vec<TrafficSelector>,
    remote_ts: Vec<TrafficSelector>,
    /// Still offered for new packets (false once a rekey replaced it).
    current: bool,
    /// Insertion order (handles wrap; this does not).
    seq: u64,
}

/// The SAs of one (peer, child), by the destinations they cover.
#[derive(Debug, Default)]
struct ChildSet {
    /// Remote selectors that are one address: that address → SAs, oldest first.
    hosts: HashMap<IpAddr, Vec<OutHandle>>,
    /// Other remote selectors (ranges, "any"), oldest first.
    ranges: Vec<(TrafficSelector, OutHandle)>,
}

/// An SA's remote selectors overlap those of another owner's SA.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeldBy {
    /// The other SA.
    pub handle: OutHandle,
    /// Its owner.
    pub owner: String,
}

/// Outbound selection index (see the module doc).
#[derive(Debug, Default)]
pub(crate) struct OutboundIndex {
    names: HashMap<String, HashMap<String, ChildKey>>,
    sets: Vec<ChildSet>,
    entries: HashMap<OutHandle, Entry>,
    inserted: u64,
}

/// A remote selector list entry as the index files it.
fn host_of(t: &TrafficSelector) -> Option<IpAddr> {
    (t.start_addr == t.end_addr).then_some(t.start_addr)
}

fn overlaps(a: &TrafficSelector, b: &TrafficSelector) -> bool {
    a.start_addr.is_ipv4() == b.start_addr.is_ipv4()
        && a.start_addr <= b.end_addr
        && b.start_addr <= a.end_addr
}

/// "Any address" of both families, for an SA with no remote selectors.
fn any_remote() -> [TrafficSelector; 2] {
    [TrafficSelector::any_v4(), TrafficSelector::any_v6()]
}

impl OutboundIndex {
    /// The key of a (peer, child) pair, if any SA was ever indexed for it.
    pub(crate) fn key(&self, peer: &str, child: &str) -> Option<ChildKey> {
        self.names.get(peer)?.get(child).copied()
    }

    /// The key of a (peer, child) pair, made if it is new.
    pub(crate) fn key_or_insert(&mut self, peer: &str, child: &str) -> ChildKey {
        if let Some(k) = self.key(peer, child) {
            return k;
        }
        let k = ChildKey(self.sets.len() as u32);
        self.names
            .entry(peer.to_string())
            .or_default()
            .insert(child.to_string(), k);
        self.sets.push(ChildSet::default());
        k
    }

    /// An SA of another owner whose remote selectors overlap `remote_ts`, in
    /// the same (peer, child).
    pub(crate) fn held_by_other(
        &self,
        peer: &str,
        child: &str,
        owner: &str,
        remote_ts: &[TrafficSelector],
    ) -> Option<HeldBy> {
        let set = &self.sets[self.key(peer, child)?.0 as usize];
        let any = any_remote();
        let wanted = if remote_ts.is_empty() {
            &any[..]
        } else {
            remote_ts
        };
        let other = |h: &OutHandle| {
            let e = &self.entries[h];
            (e.current && &*e.owner != owner).then(|| HeldBy {
                handle: *h,
                owner: e.owner.to_string(),
            })
        };
        for t in wanted {
            if let Some(a) = host_of(t) {
                if let Some(found) = set.hosts.get(&a).and_then(|v| v.iter().find_map(other)) {
                    return Some(found);
                }
            } else if let Some(found) = set
                .hosts
                .iter()
                .filter(|(a, _)| t.contains_addr(**a))
                .find_map(|(_, v)| v.iter().find_map(other))
            {
                return Some(found);
            }
            if let Some(found) = set
                .ranges
                .iter()
                .filter(|(r, _)| overlaps(r, t))
                .find_map(|(_, h)| other(h))
            {
                return Some(found);
            }
        }
        None
    }

    /// Index an outbound SA.
    pub(crate) fn insert(
        &mut self,
        h: OutHandle,
        peer: &str,
        child: &str,
        owner: &str,
        local_ts: &[TrafficSelector],
        remote_ts: &[TrafficSelector],
    ) {
        let key = self.key_or_insert(peer, child);
        let set = &mut self.sets[key.0 as usize];
        let any = any_remote();
        let list = if remote_ts.is_empty() {
            &any[..]
        } else {
            remote_ts
        };
        for t in list {
            match host_of(t) {
                Some(a) => set.hosts.entry(a).or_default().push(h),
                None => set.ranges.push((*t, h)),
            }
        }
        self.entries.insert(
            h,
            Entry {
                key,
                owner: Arc::from(owner),
                local_ts: local_ts.to_vec(),
                remote_ts: remote_ts.to_vec(),
                current: true,
                seq: self.inserted,
            },
        );
        self.inserted += 1;
    }

    /// Stop offering `h` for new packets (a rekey replaced it); it stays known
    /// until [`OutboundIndex::remove`].
    pub(crate) fn retire(&mut self, h: OutHandle) {
        self.unlink(h);
        if let Some(e) = self.entries.get_mut(&h) {
            e.current = false;
        }
    }

    /// Forget `h` entirely.
    pub(crate) fn remove(&mut self, h: OutHandle) {
        self.unlink(h);
        self.entries.remove(&h);
    }

    fn unlink(&mut self, h: OutHandle) {
        let Some(e) = self.entries.get(&h) else {
            return;
        };
        if !e.current {
            return;
        }
        let set = &mut self.sets[e.key.0 as usize];
        let any = any_remote();
        let list = if e.remote_ts.is_empty() {
            &any[..]
        } else {
            &e.remote_ts[..]
        };
        for t in list {
            if let Some(a) = host_of(t) {
                if let Some(v) = set.hosts.get_mut(&a) {
                    v.retain(|x| *x != h);
                    if v.is_empty() {
                        set.hosts.remove(&a);
                    }
                }
            }
        }
        set.ranges.retain(|(_, x)| *x != h);
    }

    /// The newest current SA of `key` whose selectors fit the packet `t`
    /// (RFC 4301 §5.1).
    #[inline]
    pub(crate) fn select(&self, key: ChildKey, t: &FiveTuple) -> Option<OutHandle> {
        let set = self.sets.get(key.0 as usize)?;
        let fits = |h: &OutHandle| {
            let e = &self.entries[h];
            outbound_matches(&e.local_ts, &e.remote_ts, t)
        };
        if let Some(v) = set.hosts.get(&t.dst) {
            if let Some(h) = v.iter().rev().find(|h| fits(h)) {
                return Some(*h);
            }
        }
        set.ranges
            .iter()
            .rev()
            .filter(|(r, _)| r.contains_addr(t.dst))
            .map(|(_, h)| h)
            .find(|h| fits(h))
            .copied()
    }

    /// The newest current SA of a (peer, child), whatever its selectors.
    pub(crate) fn newest(&self, key: ChildKey) -> Option<OutHandle> {
        self.entries
            .iter()
            .filter(|(_, e)| e.key == key && e.current)
            .max_by_key(|(_, e)| e.seq)
            .map(|(h, _)| *h)
    }

    /// The owner an SA was indexed with.
    pub(crate) fn owner(&self, h: OutHandle) -> Option<&str> {
        self.entries.get(&h).map(|e| &*e.owner)
    }
}
