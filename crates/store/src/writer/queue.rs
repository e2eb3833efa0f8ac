//! The record queue, free of threads and clocks: the changes not yet durable, one per
//! key (the newest wins: a put superseded by a delete is never written), bounded,
//! drained oldest first in batches of at most [`MAX_TXN_OPS`]. [`RecordWriter`]
//! drives it from its own thread; the deterministic cluster harness can drive it
//! directly with [`RecordQueue::flush`] on virtual time.
//!
//! When the bound is reached a new key is refused and counted, and the queue asks for
//! a resync: the daemon hands it the complete live set ([`RecordQueue::resync`]) and
//! the queue rewrites it and then deletes every record of the site that is not in it,
//! so the store ends matching the live SAs even after an overflow.
//!
//! [`RecordWriter`]: crate::writer::RecordWriter

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::error::StoreError;
use crate::kv::{Op, Store, MAX_TXN_OPS};
use crate::records::{Record, RecordBook};
use crate::seal::SealError;
use crate::writer::histogram::Histogram;

/// What a key should become.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// A value already sealed.
    Put(Vec<u8>),
    /// A record, sealed on the writer's side just before it is written.
    Record(Arc<Record>),
    /// Absent.
    Delete,
}

#[derive(Debug)]
struct Pending {
    change: Change,
    seq: u64,
    /// When this change was handed over (latency and lag are measured from here).
    since: Instant,
}

/// A batch taken for writing: `(seq, key)` of each change and the change (records
/// are sealed by [`Batch::ops`], outside the queue's lock).
#[derive(Debug)]
pub struct Batch {
    items: Vec<(u64, String)>,
    changes: Vec<Change>,
}

impl Batch {
    /// The operations of one transaction; records are sealed here with `book`.
    pub fn ops(&self, book: Option<&RecordBook>) -> Result<Vec<Op>, SealError> {
        let mut ops = Vec::with_capacity(self.items.len());
        for ((_, key), change) in self.items.iter().zip(&self.changes) {
            ops.push(match change {
                Change::Put(v) => Op::Put {
                    key: key.clone(),
                    value: v.clone(),
                    lease: None,
                },
                Change::Record(r) => {
                    let book = book.ok_or_else(|| SealError::Decode("no record book".into()))?;
                    Op::Put {
                        key: key.clone(),
                        value: book.seal(r)?.1,
                        lease: None,
                    }
                }
                Change::Delete => Op::Delete { key: key.clone() },
            });
        }
        Ok(ops)
    }

    /// Number of changes.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Whether there is nothing to write.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }
}

/// Counters of a queue.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct QueueCounters {
    /// Changes made durable.
    pub written: u64,
    /// Changes replaced by a newer change of the same key before being written.
    pub superseded: u64,
    /// Changes refused because the queue was full (a resync is then due).
    pub dropped: u64,
    /// Changes given up (the store refused them for good, or they could not be sealed).
    pub failed: u64,
}

/// The pending changes.
#[derive(Debug)]
pub struct RecordQueue {
    pending: HashMap<String, Pending>,
    order: BTreeMap<u64, String>,
    next_seq: u64,
    max_pending: usize,
    book: Option<RecordBook>,
    counters: QueueCounters,
    latency: Histogram,
    resync_due: bool,
    /// After a resync: keep only these keys under these prefixes.
    sweep: Option<(Vec<String>, HashSet<String>)>,
}

impl RecordQueue {
    /// A queue of at most `max_pending` keys; `book` seals [`Change::Record`]s.
    pub fn new(max_pending: usize, book: Option<RecordBook>) -> RecordQueue {
        RecordQueue {
            pending: HashMap::new(),
            order: BTreeMap::new(),
            next_seq: 1,
            max_pending: max_pending.max(1),
            book,
            counters: QueueCounters::default(),
            latency: Histogram::default(),
            resync_due: false,
            sweep: None,
        }
    }

    /// Queue a change of `key`, replacing a pending one. Returns false (and counts
    /// it, and asks for a resync) if the queue is full and `key` is not in it.
    pub fn set(&mut self, key: String, change: Change, now: Instant) -> bool {
        if let Some((_, live)) = &mut self.sweep {
            match change {
                Change::Delete => live.remove(&key),
                _ => live.insert(key.clone()),
            };
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        if let Some(p) = self.pending.get_mut(&key) {
            self.order.remove(&p.seq);
            self.order.insert(seq, key);
            p.change = change;
            p.seq = seq;
            p.since = now;
            self.counters.superseded += 1;
            return true;
        }
        if self.pending.len() >= self.max_pending {
            self.counters.dropped += 1;
            self.resync_due = true;
            return false;
        }
        self.order.insert(seq, key.clone());
        self.pending.insert(
            key,
            Pending {
                change,
                seq,
                since: now,
            },
        );
        true
    }

    /// Queue a record (sealed when written).
    pub fn set_record(&mut self, record: Record, now: Instant) -> Result<bool, SealError> {
        let book = self
            .book
            .as_ref()
            .ok_or_else(|| SealError::Decode("this queue has no record book".into()))?;
        let key = book.key_of(&record);
        Ok(self.set(key, Change::Record(Arc::new(record)), now))
    }

    /// Replace everything pending by the complete live set of records under
    /// `prefixes`: write them all, then delete every other key under the prefixes.
    /// Clears the resync request.
    pub fn resync(&mut self, prefixes: Vec<String>, live: Vec<(String, Change)>, now: Instant) {
        self.pending.clear();
        self.order.clear();
        self.resync_due = false;
        let keys: HashSet<String> = live.iter().map(|(k, _)| k.clone()).collect();
        self.sweep = Some((prefixes, keys));
        let max = self.max_pending;
        self.max_pending = usize::MAX;
        for (k, c) in live {
            self.set(k, c, now);
        }
        self.max_pending = max;
    }

    /// Whether the queue overflowed and wants [`RecordQueue::resync`].
    pub fn resync_due(&self) -> bool {
        self.resync_due
    }

    /// Keys with a change pending.
    pub fn len(&self) -> usize {
        self.pending.len()
    }

    /// Whether nothing is pending (a resync sweep may still be due).
    pub fn is_empty(&self) -> bool {
        self.pending.is_empty() && self.sweep.is_none()
    }

    /// How long the oldest pending change has waited (since its latest update).
    pub fn lag(&self, now: Instant) -> Duration {
        self.order
            .values()
            .next()
            .and_then(|k| self.pending.get(k))
            .map(|p| now.saturating_duration_since(p.since))
            .unwrap_or_default()
    }

    /// Counters.
    pub fn counters(&self) -> QueueCounters {
        self.counters
    }

    /// Latency from hand-over to durable, so far.
    pub fn latency(&self) -> crate::writer::histogram::LatencySummary {
        self.latency.summary()
    }

    /// The oldest changes, at most `max` (≤ [`MAX_TXN_OPS`]), for one transaction.
    pub fn take_batch(&self, max: usize) -> Batch {
        let max = max.clamp(1, MAX_TXN_OPS);
        let mut items = Vec::with_capacity(max);
        let mut changes = Vec::with_capacity(max);
        for (seq, key) in self.order.iter().take(max) {
            items.push((*seq, key.clone()));
            changes.push(self.pending[key].change.clone());
        }
        Batch { items, changes }
    }

    /// The record book (for [`Batch::ops`]).
    pub fn book(&self) -> Option<&RecordBook> {
        self.book.as_ref()
    }

    /// The batch is durable: forget its changes (unless superseded meanwhile).
    pub fn ack(&mut self, batch: &Batch, now: Instant) {
        for (seq, key) in &batch.items {
            if self.pending.get(key).is_some_and(|p| p.seq == *seq) {
                if let Some(p) = self.pending.remove(key) {
                    self.latency.record(now.saturating_duration_since(p.since));
                }
                self.order.remove(seq);
                self.counters.written += 1;
            }
        }
    }

    /// Give up the changes of `batch` for good (the store refused them; counted as
    /// failed) unless they were superseded meanwhile.
    pub fn give_up(&mut self, batch: &Batch) {
        for (seq, key) in &batch.items {
            if self.pending.get(key).is_some_and(|p| p.seq == *seq) {
                self.pending.remove(key);
                self.order.remove(seq);
                self.counters.failed += 1;
            }
        }
    }

    /// Write what is pending to `store` until it is empty or the store fails. A
    /// transient failure is returned (everything stays pending); a change the store
    /// refuses for good is dropped and counted. Returns the changes written.
    pub fn flush(
        &mut self,
        store: &dyn Store,
        clock: &dyn Fn() -> Instant,
    ) -> Result<usize, StoreError> {
        let mut written = 0;
        loop {
            let batch = self.take_batch(MAX_TXN_OPS);
            if batch.is_empty() {
                if let Some(prefixes) = self.sweep_prefixes() {
                    let listed = list_keys(store, &prefixes)?;
                    self.finish_sweep(listed, clock());
                }
                if self.pending.is_empty() {
                    return Ok(written);
                }
                continue;
            }
            let n = batch.len();
            match write_batch(store, batch, self.book.as_ref()) {
                Written::All(b) => {
                    self.ack(&b, clock());
                    written += n;
                }
                Written::Each(results) => {
                    for (b, r) in results {
                        match r {
                            Ok(()) => {
                                self.ack(&b, clock());
                                written += 1;
                            }
                            Err(e) if e.is_transient() => return Err(e),
                            Err(_) => self.give_up(&b),
                        }
                    }
                }
                Written::Failed(_, e) => return Err(e),
            }
        }
    }

    /// The prefixes a resync sweep must list, once the resync's writes are done.
    pub fn sweep_prefixes(&self) -> Option<Vec<String>> {
        match &self.sweep {
            Some((p, _)) if self.pending.is_empty() => Some(p.clone()),
            _ => None,
        }
    }

    /// The keys listed under the sweep's prefixes: queue a delete for each that is
    /// neither live nor pending.
    pub fn finish_sweep(&mut self, listed: Vec<String>, now: Instant) {
        let Some((_, live)) = self.sweep.take() else {
            return;
        };
        for k in listed {
            if !live.contains(&k) && !self.pending.contains_key(&k) {
                self.set(k, Change::Delete, now);
            }
        }
    }
}

/// How writing a batch went.
#[derive(Debug)]
pub enum Written {
    /// In one transaction.
    All(Batch),
    /// The store refused the transaction for good; each change was then tried on
    /// its own, with this result.
    Each(Vec<(Batch, Result<(), StoreError>)>),
    /// The store is away (transient error): nothing written.
    Failed(Batch, StoreError),
}

/// Seal and write `batch` in one transaction; if the store refuses it for good, try
/// its changes one by one (to give up only the bad one). No lock is needed: the queue
/// is updated afterwards with [`RecordQueue::ack`] and [`RecordQueue::give_up`].
pub fn write_batch(store: &dyn Store, batch: Batch, book: Option<&RecordBook>) -> Written {
    let ops = match batch.ops(book) {
        Ok(ops) => ops,
        Err(e) => {
            return Written::Failed(batch, StoreError::Refused(format!("sealing failed: {e}")))
        }
    };
    match store.batch(&ops) {
        Ok(_) => Written::All(batch),
        Err(e) if e.is_transient() => Written::Failed(batch, e),
        Err(e) => {
            tracing::error!("record store refused a batch ({e}); writing its changes one by one");
            let mut out = Vec::with_capacity(batch.items.len());
            for ((item, change), op) in batch.items.into_iter().zip(batch.changes).zip(ops) {
                let key = item.1.clone();
                let one = Batch {
                    items: vec![item],
                    changes: vec![change],
                };
                let r = store.batch(std::slice::from_ref(&op)).map(|_| ());
                if let Err(e) = &r {
                    if !e.is_transient() {
                        tracing::error!("record store: giving up {key}: {e}");
                    }
                }
                out.push((one, r));
            }
            Written::Each(out)
        }
    }
}

/// Every key under `prefixes`.
pub fn list_keys(store: &dyn Store, prefixes: &[String]) -> Result<Vec<String>, StoreError> {
    let mut keys = Vec::new();
    for p in prefixes {
        keys.extend(store.list(p)?.into_iter().map(|e| e.key));
    }
    Ok(keys)
}

#[cfg(test)]
#[path = "queue_tests.rs"]
mod tests;
