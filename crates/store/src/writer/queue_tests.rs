use std::sync::Arc;

use super::*;
use crate::kv::Store;
use crate::memory::{Fault, MemoryStore};

fn q(max: usize) -> RecordQueue {
    RecordQueue::new(max, None)
}

#[test]
fn newest_change_per_key_wins_and_a_superseded_put_is_never_written() {
    let s = MemoryStore::new();
    let t = Instant::now();
    let mut q = q(100);
    q.set("a".into(), Change::Put(b"1".to_vec()), t);
    q.set("b".into(), Change::Put(b"2".to_vec()), t);
    q.set("a".into(), Change::Put(b"3".to_vec()), t);
    q.set("b".into(), Change::Delete, t);
    assert_eq!(q.len(), 2);
    let w = s.watch("", Some(1)).unwrap();
    assert_eq!(q.flush(&s, &Instant::now).unwrap(), 2);
    assert_eq!(s.get("a").unwrap().unwrap().value, b"3");
    assert_eq!(s.get("b").unwrap(), None);
    let events = w.drain();
    assert_eq!(
        events.len(),
        1,
        "one put of a, nothing of b ever: {events:?}"
    );
    assert_eq!(q.counters().superseded, 2);
    assert_eq!(q.counters().written, 2);
}

#[test]
fn a_store_that_is_down_keeps_everything_pending() {
    let s = MemoryStore::new();
    let t = Instant::now();
    let mut q = q(100);
    s.set_fault(Fault::Unreachable);
    for i in 0..300 {
        q.set(format!("k{i:03}"), Change::Put(vec![i as u8]), t);
    }
    assert!(q.flush(&s, &Instant::now).unwrap_err().is_transient());
    assert_eq!(q.len(), 100, "bounded");
    assert_eq!(q.counters().dropped, 200);
    assert!(q.resync_due());
    assert!(q.lag(t + Duration::from_secs(3)) >= Duration::from_secs(3));
    s.set_fault(Fault::RefuseWrites);
    assert!(q.flush(&s, &Instant::now).is_err());
    s.set_fault(Fault::None);
    assert_eq!(q.flush(&s, &Instant::now).unwrap(), 100);
    assert_eq!(s.len(), 100);
}

#[test]
fn a_resync_makes_the_store_match_the_live_set() {
    let s = MemoryStore::new();
    let t = Instant::now();
    for k in ["p/old1", "p/old2", "p/keep", "other/x"] {
        s.put(k, b"v", None).unwrap();
    }
    // A live set larger than the bound is taken whole.
    let mut q = q(4);
    q.resync(
        vec!["p/".into()],
        vec![
            ("p/keep".into(), Change::Put(b"new".to_vec())),
            ("p/new1".into(), Change::Put(b"n1".to_vec())),
            ("p/new2".into(), Change::Put(b"n2".to_vec())),
        ],
        t,
    );
    // A change made after the resync started is kept, not swept.
    q.set("p/late".into(), Change::Put(b"late".to_vec()), t);
    q.flush(&s, &Instant::now).unwrap();
    let keys: Vec<String> = s.list("").unwrap().into_iter().map(|e| e.key).collect();
    assert_eq!(keys, ["other/x", "p/keep", "p/late", "p/new1", "p/new2"]);
    assert!(!q.resync_due());
}

#[test]
fn a_change_the_store_refuses_for_good_is_given_up_alone() {
    let s = MemoryStore::new();
    let t = Instant::now();
    let mut q = q(10);
    q.set("good".into(), Change::Put(b"1".to_vec()), t);
    q.set("bad\0key".into(), Change::Put(b"2".to_vec()), t);
    q.set("also-good".into(), Change::Put(b"3".to_vec()), t);
    assert_eq!(q.flush(&s, &Instant::now).unwrap(), 2);
    assert_eq!(q.counters().failed, 1);
    assert!(q.is_empty());
    assert_eq!(s.len(), 2);
}

#[test]
fn records_are_sealed_when_written() {
    let book = crate::records::tests::book("site-a");
    let s: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let mut q = RecordQueue::new(10, Some(book.clone()));
    let r = Record::Child(crate::records::tests::child(1, 77));
    assert!(q.set_record(r.clone(), Instant::now()).unwrap());
    q.flush(s.as_ref(), &Instant::now).unwrap();
    let e = s.get(&book.key_of(&r)).unwrap().unwrap();
    assert_eq!(book.open(&e.key, &e.value).unwrap(), r);
    assert!(q.latency().count == 1);
}
