//! The shared store's slot in the harness: where the gateways' recovery records
//! go. Until the in-memory backend of `crates/store` is wired in, [`SimStore`] is a
//! key-value map that applies each gateway's [`SideEffect`]s and can be made
//! unreachable for one gateway: its changes then wait in that gateway's queue, in
//! order, and are written when the store comes back (what the record writer does:
//! a store that refuses a write keeps the change and retries). Swapping it for
//! `plexgate_store::memory::MemoryStore` touches this file and
//! `Sim::apply_side_effects` only.

use std::collections::{BTreeMap, HashMap, VecDeque};

use crate::gateway::core::SideEffect;

/// What a gateway's store client does instead of working.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StoreFault {
    /// Works.
    #[default]
    None,
    /// Every write fails; changes queue up and go through once it is reachable.
    Unreachable,
}

/// Counters.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct StoreStats {
    /// Records written (puts).
    pub puts: u64,
    /// Records removed.
    pub deletes: u64,
    /// Writes refused because the store was unreachable (queued for later).
    pub refused: u64,
}

/// Recovery records by key, written by the gateways of the cluster.
#[derive(Debug, Default)]
pub struct SimStore {
    records: BTreeMap<String, Vec<u8>>,
    faults: HashMap<usize, StoreFault>,
    pending: HashMap<usize, VecDeque<SideEffect>>,
    /// Counters.
    pub stats: StoreStats,
}

impl SimStore {
    /// An empty store.
    pub fn new() -> SimStore {
        SimStore::default()
    }

    /// Apply one side effect of gateway `gw` (key-log lines are not the store's:
    /// they are ignored here).
    pub fn apply(&mut self, gw: usize, fx: SideEffect) {
        if matches!(fx, SideEffect::KeyLog(_)) {
            return;
        }
        if self.fault(gw) == StoreFault::Unreachable {
            self.stats.refused += 1;
            self.pending.entry(gw).or_default().push_back(fx);
            return;
        }
        self.write(fx);
    }

    fn write(&mut self, fx: SideEffect) {
        match fx {
            SideEffect::PutRecord(k, v) => {
                self.stats.puts += 1;
                self.records.insert(k, v);
            }
            SideEffect::DeleteRecord(k) => {
                self.stats.deletes += 1;
                self.records.remove(&k);
            }
            SideEffect::KeyLog(_) => {}
        }
    }

    /// Make gateway `gw`'s store client fail or work again; on recovery its queued
    /// changes are written in order.
    pub fn set_fault(&mut self, gw: usize, fault: StoreFault) {
        self.faults.insert(gw, fault);
        if fault == StoreFault::None {
            for fx in self.pending.remove(&gw).unwrap_or_default() {
                self.write(fx);
            }
        }
    }

    /// Gateway `gw`'s fault.
    pub fn fault(&self, gw: usize) -> StoreFault {
        self.faults.get(&gw).copied().unwrap_or_default()
    }

    /// Changes of `gw` waiting for the store.
    pub fn pending(&self, gw: usize) -> usize {
        self.pending.get(&gw).map_or(0, VecDeque::len)
    }

    /// The record at `key`.
    pub fn get(&self, key: &str) -> Option<&[u8]> {
        self.records.get(key).map(Vec::as_slice)
    }

    /// Keys starting with `prefix`, sorted.
    pub fn keys(&self, prefix: &str) -> Vec<&str> {
        self.records
            .range(prefix.to_string()..)
            .map(|(k, _)| k.as_str())
            .take_while(|k| k.starts_with(prefix))
            .collect()
    }

    /// Number of records.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// No record at all?
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unreachable_store_keeps_changes_in_order() {
        let mut s = SimStore::new();
        s.apply(0, SideEffect::PutRecord("a/ike/1".into(), b"x".to_vec()));
        s.set_fault(0, StoreFault::Unreachable);
        s.apply(0, SideEffect::PutRecord("a/child/2".into(), b"y".to_vec()));
        s.apply(0, SideEffect::DeleteRecord("a/ike/1".into()));
        s.apply(1, SideEffect::PutRecord("a/ike/3".into(), b"z".to_vec()));
        assert_eq!(s.keys("a/"), vec!["a/ike/1", "a/ike/3"]);
        assert_eq!((s.pending(0), s.stats.refused), (2, 2));
        s.set_fault(0, StoreFault::None);
        assert_eq!(s.keys("a/"), vec!["a/child/2", "a/ike/3"]);
        assert_eq!(s.pending(0), 0);
        assert_eq!(s.get("a/child/2"), Some(&b"y"[..]));
    }
}
