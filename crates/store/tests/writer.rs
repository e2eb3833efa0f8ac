//! The record writer: the caller never waits on the store (a store that blocks every
//! write does not block a thousand hand-overs); an outage keeps the newest state per
//! key and writes it when the store returns, logged as one outage; an overflow is
//! repaired by a resync; and on a real etcd that is killed and restarted while SAs
//! come and go, the store ends exactly matching the live set.

mod common;

use std::collections::BTreeMap;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use common::*;
use plexgate_store::etcd::{EtcdOptions, EtcdStore};
use plexgate_store::etcd_server::EtcdServer;
use plexgate_store::memory::{Fault, MemoryStore};
use plexgate_store::writer::Change;
use plexgate_store::*;

/// A store whose writes block until the test opens the gate.
struct Gated {
    inner: MemoryStore,
    open: Mutex<bool>,
    cv: Condvar,
    entered: Mutex<u32>,
}

impl Gated {
    fn open(&self) {
        *self.open.lock().unwrap() = true;
        self.cv.notify_all();
    }
}

impl Store for Gated {
    fn backend(&self) -> Backend {
        Backend::Memory
    }
    fn get(&self, key: &str) -> Result<Option<Entry>, StoreError> {
        self.inner.get(key)
    }
    fn list(&self, prefix: &str) -> Result<Vec<Entry>, StoreError> {
        self.inner.list(prefix)
    }
    fn txn(&self, when: &[Compare], ops: &[Op]) -> Result<TxnOutcome, StoreError> {
        *self.entered.lock().unwrap() += 1;
        let mut open = self.open.lock().unwrap();
        while !*open {
            open = self.cv.wait(open).unwrap();
        }
        drop(open);
        self.inner.txn(when, ops)
    }
    fn revision(&self) -> Result<Revision, StoreError> {
        self.inner.revision()
    }
    fn grant_lease(&self, ttl: Duration) -> Result<LeaseId, StoreError> {
        self.inner.grant_lease(ttl)
    }
    fn keep_alive(&self, l: LeaseId) -> Result<(), StoreError> {
        self.inner.keep_alive(l)
    }
    fn revoke_lease(&self, l: LeaseId) -> Result<(), StoreError> {
        self.inner.revoke_lease(l)
    }
    fn watch(&self, prefix: &str, from: Option<Revision>) -> Result<Watch, StoreError> {
        self.inner.watch(prefix, from)
    }
}

fn records(n: u64) -> Vec<Record> {
    (0..n)
        .map(|i| {
            if i % 2 < 1 {
                Record::Ike(ike(i))
            } else {
                Record::Child(child(i - 1, 0x2000 + i as u32, 1))
            }
        })
        .collect()
}

/// The store's records under the book, opened, by key.
fn stored(s: &dyn Store, book: &RecordBook) -> BTreeMap<String, Record> {
    let l = book.load(s).unwrap();
    assert!(l.refused.is_empty(), "{:?}", l.refused);
    let mut m = BTreeMap::new();
    for i in l.ike {
        m.insert(i.key, Record::Ike(i.record));
    }
    for c in l.children {
        m.insert(c.key, Record::Child(c.record));
    }
    m
}

#[test]
fn the_caller_never_waits_on_the_store() {
    let gated = Arc::new(Gated {
        inner: MemoryStore::new(),
        open: Mutex::new(false),
        cv: Condvar::new(),
        entered: Mutex::new(0),
    });
    let book = book("/w/");
    let w =
        RecordWriter::spawn(gated.clone(), Some(book.clone()), WriterConfig::default()).unwrap();
    let all = records(1000);
    // The writer thread is stuck in the store from the first record on; every
    // hand-over still returns.
    for r in &all {
        assert!(w.put_record(r.clone()));
    }
    let st = w.status();
    assert_eq!(st.counters.written, 0);
    assert!(st.pending >= 1000 - MAX_TXN_OPS, "{st:?}");
    gated.open();
    assert!(w.wait_idle(PATIENCE));
    assert_eq!(stored(&gated.inner, &book).len(), 1000);
    assert_eq!(w.status().counters.written, 1000);
    assert!(
        *gated.entered.lock().unwrap() <= 1000 / MAX_TXN_OPS as u32 + 2,
        "batched"
    );
}

#[test]
fn an_outage_keeps_the_newest_state_and_writes_it_when_the_store_returns() {
    let world = MemoryStore::new();
    let client = world.connect();
    let book = book("/w/");
    let cfg = WriterConfig {
        retry_min: Duration::from_millis(5),
        retry_max: Duration::from_millis(20),
        ..WriterConfig::default()
    };
    let w = RecordWriter::spawn(Arc::new(client.clone()), Some(book.clone()), cfg).unwrap();
    let all = records(100);
    for r in &all[..20] {
        w.put_record(r.clone());
    }
    assert!(w.wait_idle(PATIENCE));
    client.set_fault(Fault::Unreachable);
    let mut live: BTreeMap<String, Record> = all[..20]
        .iter()
        .map(|r| (book.key_of(r), r.clone()))
        .collect();
    for r in &all[20..] {
        w.put_record(r.clone());
        live.insert(book.key_of(r), r.clone());
    }
    for r in &all[..30] {
        w.delete(book.key_of(r));
        live.remove(&book.key_of(r));
    }
    // A rekeyed record: the newest version wins.
    let Record::Ike(mut changed) = all[40].clone() else {
        panic!()
    };
    changed.remote = "203.0.113.9:4500".parse().unwrap();
    w.put_record(Record::Ike(changed.clone()));
    live.insert(book.key_of(&all[40]), Record::Ike(changed));
    // Wait for the writer to have met the outage (bounded by its first retry).
    let t = std::time::Instant::now();
    while w.status().reachable {
        assert!(t.elapsed() < PATIENCE);
        std::thread::sleep(Duration::from_millis(1));
    }
    // 30 deletes + 70 puts, one change per key, once every hand-over is queued.
    while w.status().pending != 100 {
        assert!(t.elapsed() < PATIENCE, "{:?}", w.status());
        std::thread::sleep(Duration::from_millis(1));
    }
    assert!(!w.wait_idle(Duration::from_millis(50)));
    client.set_fault(Fault::None);
    assert!(w.wait_idle(PATIENCE));
    let st = w.status();
    assert!(st.reachable);
    assert_eq!(st.outages, 1, "one outage, however many retries");
    assert_eq!(stored(&world, &book), live);
}

#[test]
fn an_overflow_is_repaired_by_a_resync() {
    let world = MemoryStore::new();
    let client = world.connect();
    let book = book("/w/");
    let stale = Record::Ike(ike(999));
    let (k, v) = book.seal(&stale).unwrap();
    world.put(&k, &v, None).unwrap();
    let cfg = WriterConfig {
        max_pending: 10,
        retry_min: Duration::from_millis(5),
        retry_max: Duration::from_millis(20),
        ..WriterConfig::default()
    };
    client.set_fault(Fault::Unreachable);
    let w = RecordWriter::spawn(Arc::new(client.clone()), Some(book.clone()), cfg).unwrap();
    let all = records(30);
    let accepted = all.iter().filter(|r| w.put_record((*r).clone())).count();
    assert_eq!(accepted, 10);
    let st = w.status();
    assert!(st.resync_due && st.counters.dropped == 20, "{st:?}");
    let prefixes = vec![book.keys().ike_prefix(), book.keys().child_prefix()];
    let live: Vec<(String, Change)> = all
        .iter()
        .map(|r| {
            (
                book.key_of(r),
                Change::Record(std::sync::Arc::new(r.clone())),
            )
        })
        .collect();
    w.resync(prefixes, live);
    client.set_fault(Fault::None);
    assert!(w.wait_idle(PATIENCE));
    let want: BTreeMap<String, Record> = all.iter().map(|r| (book.key_of(r), r.clone())).collect();
    assert_eq!(
        stored(&world, &book),
        want,
        "every live record, and the stale one gone"
    );
    assert!(!w.status().resync_due);
}

#[test]
fn etcd_outage_ends_with_the_store_matching_the_live_sas() {
    let mut etcd = EtcdServer::start().expect("this test needs etcd (it must not pass without it)");
    let opts = EtcdOptions {
        op_timeout: Duration::from_millis(500),
        ..EtcdOptions::default()
    };
    let store: Arc<dyn Store> = Arc::new(EtcdStore::connect(&[etcd.endpoint()], opts).unwrap());
    let book = book("/plexgate/site-a/");
    let cfg = WriterConfig {
        retry_min: Duration::from_millis(20),
        retry_max: Duration::from_millis(200),
        ..WriterConfig::default()
    };
    let w = RecordWriter::spawn(store.clone(), Some(book.clone()), cfg).unwrap();
    let all = records(400);
    let mut live = BTreeMap::new();
    for r in &all[..200] {
        w.put_record(r.clone());
        live.insert(book.key_of(r), r.clone());
    }
    assert!(w.wait_idle(PATIENCE));
    etcd.stop();
    // SAs come and go while etcd is down.
    for r in &all[200..] {
        w.put_record(r.clone());
        live.insert(book.key_of(r), r.clone());
    }
    for r in all.iter().step_by(3) {
        w.delete(book.key_of(r));
        live.remove(&book.key_of(r));
    }
    let t = std::time::Instant::now();
    while w.status().reachable {
        assert!(
            t.elapsed() < PATIENCE,
            "the writer never noticed etcd was down"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(w.status().pending > 0);
    etcd.restart().unwrap();
    assert!(w.wait_idle(PATIENCE), "{:?}", w.status());
    let st = w.status();
    assert_eq!(st.outages, 1);
    assert_eq!(stored(store.as_ref(), &book), live);
    eprintln!("etcd outage: {st:?}");
}
