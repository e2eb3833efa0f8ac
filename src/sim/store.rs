//! The shared store's slot in the harness: where the gateways' recovery records
//! go. Until the in-memory backend of `crates/store` is wired in, [`SimStore`] is a
//! key-value map that applies each gateway's [`SideEffect`]s and can be made
//! unreachable for one gateway: its changes then wait in that gateway's queue, in
//! order, and are written when the store comes back (what the record writer does:
//! a store that refuses a write keeps the change and retries). Swapping it for
//! `plexgate_store::memory::MemoryStore` touches this file and
//! `Sim::apply_side_effects` only.

use std::collections::{BTreeMap, HashMap, VecDeque};

use crate::gateway::core::{RecordChange, SideEffect};

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
    pending: HashMap<usize, VecDeque<(String, RecordChange)>>,
    /// Counters.
    pub stats: StoreStats,
}

impl SimStore {
    /// An empty store.
    pub fn new() -> SimStore {
        SimStore::default()
    }

    /// Apply one side effect of gateway `gw` of site `site` (key-log lines are
    /// not the store's: they are ignored here).
    pub fn apply(&mut self, gw: usize, site: &str, fx: SideEffect) {
        let SideEffect::Record(change) = fx else {
            return;
        };
        if self.fault(gw) == StoreFault::Unreachable {
            self.stats.refused += 1;
            self.pending
                .entry(gw)
                .or_default()
                .push_back((site.to_string(), change));
            return;
        }
        self.write(site, change);
    }

    /// The harness's readable key of a record: `SITE/ike/SPIS` or
    /// `SITE/child/SPI_IN` (the daemon's store blinds its key names).
    pub fn key_of(site: &str, change: &RecordChange) -> String {
        match change {
            RecordChange::Put(r) => match &**r {
                plexgate_store::Record::Ike(r) => format!("{site}/ike/{}", r.spis),
                plexgate_store::Record::Child(c) => format!("{site}/child/{:08x}", c.spis.spi_in),
            },
            RecordChange::DeleteIke(spis) => format!("{site}/ike/{spis}"),
            RecordChange::DeleteChild { spi_in, .. } => format!("{site}/child/{spi_in:08x}"),
        }
    }

    fn write(&mut self, site: &str, change: RecordChange) {
        let key = SimStore::key_of(site, &change);
        match change {
            RecordChange::Put(r) => {
                self.stats.puts += 1;
                let value = match &*r {
                    plexgate_store::Record::Ike(i) => serde_json::to_vec(i),
                    plexgate_store::Record::Child(c) => serde_json::to_vec(c),
                };
                self.records.insert(key, value.unwrap_or_default());
            }
            RecordChange::DeleteIke(_) | RecordChange::DeleteChild { .. } => {
                self.stats.deletes += 1;
                self.records.remove(&key);
            }
        }
    }

    /// Make gateway `gw`'s store client fail or work again; on recovery its queued
    /// changes are written in order.
    pub fn set_fault(&mut self, gw: usize, fault: StoreFault) {
        self.faults.insert(gw, fault);
        if fault == StoreFault::None {
            for (site, change) in self.pending.remove(&gw).unwrap_or_default() {
                self.write(&site, change);
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

    fn spis(n: u64) -> plexgate_store::IkeSpis {
        plexgate_store::IkeSpis {
            initiator: n,
            responder: n + 1,
        }
    }

    fn del_child(n: u32) -> SideEffect {
        SideEffect::Record(RecordChange::DeleteChild {
            ike: spis(1),
            spi_in: n,
        })
    }

    #[test]
    fn unreachable_store_keeps_changes_in_order() {
        let mut s = SimStore::new();
        s.records.insert("a/child/00000001".into(), b"x".to_vec());
        s.records.insert("a/child/00000002".into(), b"y".to_vec());
        s.set_fault(0, StoreFault::Unreachable);
        s.apply(0, "a", del_child(1));
        s.apply(1, "a", del_child(2));
        assert_eq!(s.keys("a/"), vec!["a/child/00000001"]);
        assert_eq!((s.pending(0), s.stats.refused), (1, 1));
        s.set_fault(0, StoreFault::None);
        assert!(s.keys("a/").is_empty());
        assert_eq!(s.stats.deletes, 2);
    }
}
