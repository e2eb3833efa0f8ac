//! The in-memory store, for the deterministic cluster harness: one shared "world"
//! (keys, revisions, leases, watch history) on *virtual time* — leases expire only
//! when the caller advances the clock ([`MemoryStore::advance`]) — and any number of
//! client handles ([`MemoryStore::connect`]), each of which can be told to fail
//! ([`Fault`]): unreachable (a partitioned gateway), refusing writes (a store
//! without quorum) or slow. A watch of an unreachable client holds its events and
//! delivers them in order once the client is reachable again, as an etcd watch
//! resumes from its last revision after a reconnect.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{channel, Sender};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::error::StoreError;
use crate::kv::{
    check_key, check_txn, Backend, Compare, Entry, Expect, LeaseId, Op, Revision, Store,
    TxnOutcome, Watch, WatchEvent,
};

/// How many events the world keeps for watches that start in the past.
const HISTORY: usize = 10_000;

/// What a client handle does instead of working normally.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Fault {
    /// Works.
    #[default]
    None,
    /// Every operation fails with [`StoreError::Unavailable`]; watches hold their
    /// events until the fault is cleared.
    Unreachable,
    /// Reads work; writes, leases and keep-alives fail with [`StoreError::Refused`].
    RefuseWrites,
    /// Every operation first sleeps this long in real time (to show that a caller
    /// never waits on the store), then works.
    Slow(Duration),
}

struct MemLease {
    ttl: Duration,
    deadline: Instant,
    keys: BTreeSet<String>,
}

struct MemWatcher {
    client: u64,
    prefix: String,
    tx: Sender<WatchEvent>,
    alive: Arc<AtomicBool>,
    held: Vec<WatchEvent>,
}

struct World {
    now: Instant,
    rev: Revision,
    kv: BTreeMap<String, Entry>,
    leases: HashMap<i64, MemLease>,
    next_lease: i64,
    history: VecDeque<WatchEvent>,
    compacted: Revision,
    faults: HashMap<u64, Fault>,
    next_client: u64,
    watchers: Vec<MemWatcher>,
}

/// A handle on a shared in-memory store. Cheap to clone (the clone is the same
/// client, with the same fault); [`MemoryStore::connect`] makes another client.
#[derive(Clone)]
pub struct MemoryStore {
    world: Arc<Mutex<World>>,
    client: u64,
}

impl Default for MemoryStore {
    fn default() -> Self {
        MemoryStore::new()
    }
}

impl MemoryStore {
    /// A new empty world whose virtual clock starts now.
    pub fn new() -> MemoryStore {
        MemoryStore::starting_at(Instant::now())
    }

    /// A new empty world whose virtual clock starts at `now` (the harness's clock).
    pub fn starting_at(now: Instant) -> MemoryStore {
        let world = World {
            now,
            rev: 0,
            kv: BTreeMap::new(),
            leases: HashMap::new(),
            next_lease: 1,
            history: VecDeque::new(),
            compacted: 0,
            faults: HashMap::new(),
            next_client: 1,
            watchers: Vec::new(),
        };
        MemoryStore {
            world: Arc::new(Mutex::new(world)),
            client: 0,
        }
    }

    fn lock(&self) -> MutexGuard<'_, World> {
        // A panic while holding the lock leaves a consistent world (every mutation
        // completes before anything can panic), so a poisoned lock is still usable.
        self.world.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Another client of the same world, with its own fault setting.
    pub fn connect(&self) -> MemoryStore {
        let mut w = self.lock();
        let client = w.next_client;
        w.next_client += 1;
        MemoryStore {
            world: self.world.clone(),
            client,
        }
    }

    /// Make this client fail (or work again with [`Fault::None`]). Clearing
    /// [`Fault::Unreachable`] delivers the events its watches held.
    pub fn set_fault(&self, fault: Fault) {
        let mut w = self.lock();
        w.faults.insert(self.client, fault);
        if fault != Fault::Unreachable {
            let client = self.client;
            w.watchers.retain_mut(|wa| {
                if wa.client != client {
                    return true;
                }
                let held = std::mem::take(&mut wa.held);
                held.into_iter().all(|e| wa.tx.send(e).is_ok())
            });
        }
    }

    /// This client's fault.
    pub fn fault(&self) -> Fault {
        self.lock()
            .faults
            .get(&self.client)
            .copied()
            .unwrap_or_default()
    }

    /// The virtual clock.
    pub fn now(&self) -> Instant {
        self.lock().now
    }

    /// Move the virtual clock forward by `d`; leases whose TTL has run out end
    /// (each in its own revision, deleting its keys).
    pub fn advance(&self, d: Duration) {
        let mut w = self.lock();
        let now = w.now + d;
        w.set_now(now);
    }

    /// Move the virtual clock to `now` (ignored if it is in the past).
    pub fn set_now(&self, now: Instant) {
        self.lock().set_now(now);
    }

    /// Number of keys in the world (tests).
    pub fn len(&self) -> usize {
        self.lock().kv.len()
    }

    /// Whether the world holds no key.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Apply this client's fault for an operation (`write`: it changes something).
    fn gate(&self, write: bool) -> Result<(), StoreError> {
        let fault = self.fault();
        match fault {
            Fault::None => Ok(()),
            Fault::Unreachable => Err(StoreError::Unavailable(
                "in-memory store: this client is cut off".into(),
            )),
            Fault::RefuseWrites if write => Err(StoreError::Refused(
                "in-memory store: told to refuse writes".into(),
            )),
            Fault::RefuseWrites => Ok(()),
            Fault::Slow(d) => {
                std::thread::sleep(d);
                Ok(())
            }
        }
    }
}

impl World {
    fn set_now(&mut self, now: Instant) {
        if now <= self.now {
            return;
        }
        self.now = now;
        let mut ended: Vec<i64> = self
            .leases
            .iter()
            .filter(|(_, l)| l.deadline <= now)
            .map(|(id, _)| *id)
            .collect();
        ended.sort_unstable();
        for id in ended {
            self.end_lease(id);
        }
    }

    fn end_lease(&mut self, id: i64) {
        let Some(lease) = self.leases.remove(&id) else {
            return;
        };
        let ops: Vec<Op> = lease
            .keys
            .into_iter()
            .map(|key| Op::Delete { key })
            .collect();
        self.apply(&ops);
    }

    fn holds(&self, c: &Compare) -> bool {
        let cur = self.kv.get(&c.key).map(|e| e.revision);
        match c.expect {
            Expect::Absent => cur.is_none(),
            Expect::At(r) => cur == Some(r),
        }
    }

    /// Apply checked operations at one new revision (none if nothing changes).
    fn apply(&mut self, ops: &[Op]) -> Revision {
        let rev = self.rev + 1;
        let mut events = Vec::new();
        for op in ops {
            match op {
                Op::Put { key, value, lease } => {
                    let created = self.kv.get(key).map_or(rev, |e| e.created);
                    if let Some(old) = self.kv.get(key).and_then(|e| e.lease) {
                        if let Some(l) = self.leases.get_mut(&old.0) {
                            l.keys.remove(key);
                        }
                    }
                    if let Some(l) = lease.and_then(|l| self.leases.get_mut(&l.0)) {
                        l.keys.insert(key.clone());
                    }
                    let e = Entry {
                        key: key.clone(),
                        value: value.clone(),
                        revision: rev,
                        created,
                        lease: *lease,
                    };
                    self.kv.insert(key.clone(), e.clone());
                    events.push(WatchEvent::Put(e));
                }
                Op::Delete { key } => {
                    if let Some(old) = self.kv.remove(key) {
                        if let Some(l) = old.lease.and_then(|l| self.leases.get_mut(&l.0)) {
                            l.keys.remove(key);
                        }
                        events.push(WatchEvent::Delete {
                            key: key.clone(),
                            revision: rev,
                        });
                    }
                }
            }
        }
        if events.is_empty() {
            return self.rev;
        }
        self.rev = rev;
        for e in events {
            self.publish(e);
        }
        rev
    }

    fn publish(&mut self, e: WatchEvent) {
        let faults = &self.faults;
        self.watchers.retain_mut(|w| {
            if !w.alive.load(Ordering::Relaxed) {
                return false;
            }
            if !e.key().is_some_and(|k| k.starts_with(&w.prefix)) {
                return true;
            }
            if faults.get(&w.client) == Some(&Fault::Unreachable) {
                w.held.push(e.clone());
                return true;
            }
            w.tx.send(e.clone()).is_ok()
        });
        self.history.push_back(e);
        while self.history.len() > HISTORY {
            if let Some(old) = self.history.pop_front() {
                self.compacted = old.revision();
            }
        }
    }
}

impl Store for MemoryStore {
    fn backend(&self) -> Backend {
        Backend::Memory
    }

    fn get(&self, key: &str) -> Result<Option<Entry>, StoreError> {
        check_key(key)?;
        self.gate(false)?;
        Ok(self.lock().kv.get(key).cloned())
    }

    fn list(&self, prefix: &str) -> Result<Vec<Entry>, StoreError> {
        self.gate(false)?;
        let w = self.lock();
        Ok(w.kv
            .range(prefix.to_string()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(_, e)| e.clone())
            .collect())
    }

    fn txn(&self, when: &[Compare], ops: &[Op]) -> Result<TxnOutcome, StoreError> {
        check_txn(when, ops)?;
        self.gate(!ops.is_empty())?;
        let mut w = self.lock();
        if !when.iter().all(|c| w.holds(c)) {
            return Ok(TxnOutcome::Conflict);
        }
        for op in ops {
            if let Op::Put { lease: Some(l), .. } = op {
                if !w.leases.contains_key(&l.0) {
                    return Err(StoreError::LeaseExpired(*l));
                }
            }
        }
        Ok(TxnOutcome::Committed(w.apply(ops)))
    }

    fn revision(&self) -> Result<Revision, StoreError> {
        self.gate(false)?;
        Ok(self.lock().rev)
    }

    fn grant_lease(&self, ttl: Duration) -> Result<LeaseId, StoreError> {
        self.gate(true)?;
        let mut w = self.lock();
        let id = w.next_lease;
        w.next_lease += 1;
        let deadline = w.now + ttl;
        w.leases.insert(
            id,
            MemLease {
                ttl,
                deadline,
                keys: BTreeSet::new(),
            },
        );
        Ok(LeaseId(id))
    }

    fn keep_alive(&self, lease: LeaseId) -> Result<(), StoreError> {
        self.gate(true)?;
        let mut w = self.lock();
        let now = w.now;
        match w.leases.get_mut(&lease.0) {
            Some(l) => {
                l.deadline = now + l.ttl;
                Ok(())
            }
            None => Err(StoreError::LeaseExpired(lease)),
        }
    }

    fn revoke_lease(&self, lease: LeaseId) -> Result<(), StoreError> {
        self.gate(true)?;
        let mut w = self.lock();
        if !w.leases.contains_key(&lease.0) {
            return Err(StoreError::LeaseExpired(lease));
        }
        w.end_lease(lease.0);
        Ok(())
    }

    fn watch(&self, prefix: &str, from: Option<Revision>) -> Result<Watch, StoreError> {
        self.gate(false)?;
        let (tx, rx) = channel();
        let alive = Arc::new(AtomicBool::new(true));
        let mut w = self.lock();
        if let Some(from) = from {
            if from <= w.compacted {
                let _ = tx.send(WatchEvent::Resync { revision: w.rev });
            } else {
                for e in w.history.iter().filter(|e| e.revision() >= from) {
                    if e.key().is_some_and(|k| k.starts_with(prefix)) {
                        let _ = tx.send(e.clone());
                    }
                }
            }
        }
        w.watchers.push(MemWatcher {
            client: self.client,
            prefix: prefix.to_string(),
            tx,
            alive: alive.clone(),
            held: Vec::new(),
        });
        Ok(Watch::new(rx, alive))
    }
}
