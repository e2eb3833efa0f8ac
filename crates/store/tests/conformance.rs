//! One conformance suite, run against the in-memory store, the embedded store and a
//! throwaway etcd: put/get/delete/list by prefix, compare-and-swap, transactions,
//! leases (granted, revoked, expiring the backend's way), watches, and sealed records
//! refused when altered or moved. If `etcd` is not installed the etcd run FAILS.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use plexgate_store::embedded::{EmbeddedOptions, EmbeddedStore};
use plexgate_store::etcd::{EtcdOptions, EtcdStore};
use plexgate_store::etcd_server::EtcdServer;
use plexgate_store::memory::MemoryStore;
use plexgate_store::*;

/// Two clients of one store, and a fresh prefix for each check.
struct Env {
    a: Arc<dyn Store>,
    b: Arc<dyn Store>,
    name: &'static str,
}

impl Env {
    fn prefix(&self, check: &str) -> String {
        format!("/plx-test/{}/{check}/", std::process::id())
    }
}

fn next_event(w: &Watch, what: &str) -> WatchEvent {
    w.recv_timeout(PATIENCE)
        .unwrap_or_else(|| panic!("no watch event ({what}) within {PATIENCE:?}"))
}

fn kv_basics(env: &Env) {
    let p = env.prefix("kv");
    let (a, b) = (env.a.as_ref(), env.b.as_ref());
    let r0 = a.revision().unwrap();
    let r1 = a.put(&format!("{p}x/1"), b"one", None).unwrap();
    assert!(r1 > r0, "{}: a put moves the revision", env.name);
    let r2 = a.put(&format!("{p}x/2"), b"two", None).unwrap();
    a.put(&format!("{p}y/1"), b"three", None).unwrap();
    a.put(&format!("{p}x"), b"not under x/", None).unwrap();
    let e = b
        .get(&format!("{p}x/1"))
        .unwrap()
        .expect("the other client sees it");
    assert_eq!(
        (e.value.as_slice(), e.revision, e.created, e.lease),
        (&b"one"[..], r1, r1, None)
    );
    let keys: Vec<String> = b
        .list(&format!("{p}x/"))
        .unwrap()
        .into_iter()
        .map(|e| e.key)
        .collect();
    assert_eq!(keys, [format!("{p}x/1"), format!("{p}x/2")], "{}", env.name);
    assert_eq!(b.list(&p).unwrap().len(), 4);
    let r3 = a.put(&format!("{p}x/1"), b"uno", None).unwrap();
    let e = b.get(&format!("{p}x/1")).unwrap().unwrap();
    assert_eq!(
        (e.value.as_slice(), e.revision, e.created),
        (&b"uno"[..], r3, r1),
        "{}: created stays",
        env.name
    );
    a.delete(&format!("{p}x/2")).unwrap();
    assert_eq!(b.get(&format!("{p}x/2")).unwrap(), None);
    assert!(r2 > r1);
    let before = a.revision().unwrap();
    a.delete(&format!("{p}never")).unwrap();
    assert_eq!(
        a.revision().unwrap(),
        before,
        "{}: deleting nothing changes nothing",
        env.name
    );
    assert!(matches!(a.get(""), Err(StoreError::BadKey { .. })));
    assert_eq!(b.list(&format!("{p}zzz/")).unwrap(), vec![]);
}

fn cas(env: &Env) {
    let p = env.prefix("cas");
    let k = format!("{p}owner");
    let (a, b) = (env.a.as_ref(), env.b.as_ref());
    let CasOutcome::Swapped(e1) = a
        .compare_and_swap(&k, Expect::Absent, b"gw-a", None)
        .unwrap()
    else {
        panic!("{}: a claim of an absent key succeeds", env.name)
    };
    assert_eq!(
        b.get(&k).unwrap().unwrap().revision,
        e1,
        "the epoch is the key's revision"
    );
    match b
        .compare_and_swap(&k, Expect::Absent, b"gw-b", None)
        .unwrap()
    {
        CasOutcome::Conflict(Some(cur)) => {
            assert_eq!((cur.value.as_slice(), cur.revision), (&b"gw-a"[..], e1))
        }
        other => panic!("{}: expected a conflict, got {other:?}", env.name),
    }
    let CasOutcome::Swapped(e2) = b
        .compare_and_swap(&k, Expect::At(e1), b"gw-b", None)
        .unwrap()
    else {
        panic!("{}: a claim on the seen epoch succeeds", env.name)
    };
    assert!(e2 > e1);
    assert!(
        matches!(
            a.compare_and_swap(&k, Expect::At(e1), b"gw-a", None)
                .unwrap(),
            CasOutcome::Conflict(_)
        ),
        "stale epoch"
    );
    a.delete(&k).unwrap();
    assert!(matches!(
        a.compare_and_swap(&k, Expect::At(e2), b"x", None).unwrap(),
        CasOutcome::Conflict(None)
    ));
}

fn transactions(env: &Env) {
    let p = env.prefix("txn");
    let (a, b) = (env.a.as_ref(), env.b.as_ref());
    let ops: Vec<Op> = (0..MAX_TXN_OPS)
        .map(|i| Op::Put {
            key: format!("{p}r/{i:03}"),
            value: vec![i as u8; 100],
            lease: None,
        })
        .collect();
    let rev = a.batch(&ops).unwrap();
    let all = b.list(&format!("{p}r/")).unwrap();
    assert_eq!(all.len(), MAX_TXN_OPS);
    assert!(
        all.iter().all(|e| e.revision == rev),
        "{}: one transaction, one revision",
        env.name
    );
    let too_many: Vec<Op> = (0..=MAX_TXN_OPS)
        .map(|i| Op::Delete {
            key: format!("{p}r/{i:03}"),
        })
        .collect();
    assert!(matches!(
        a.batch(&too_many),
        Err(StoreError::TooLarge { .. })
    ));
    // A failed compare writes nothing, not even the ops before it.
    let guarded = [
        Op::Delete {
            key: format!("{p}r/000"),
        },
        Op::Put {
            key: format!("{p}new"),
            value: b"n".to_vec(),
            lease: None,
        },
    ];
    let when = [Compare::absent(format!("{p}r/001"))];
    assert_eq!(a.txn(&when, &guarded).unwrap(), TxnOutcome::Conflict);
    assert!(b.get(&format!("{p}r/000")).unwrap().is_some());
    assert!(b.get(&format!("{p}new")).unwrap().is_none());
    let when = [
        Compare::at(format!("{p}r/001"), rev),
        Compare::absent(format!("{p}new")),
    ];
    let TxnOutcome::Committed(r2) = a.txn(&when, &guarded).unwrap() else {
        panic!("{}: compares hold", env.name)
    };
    assert!(b.get(&format!("{p}r/000")).unwrap().is_none());
    assert_eq!(b.get(&format!("{p}new")).unwrap().unwrap().revision, r2);
}

fn leases_granted_and_revoked(env: &Env) {
    let p = env.prefix("lease");
    let (a, b) = (env.a.as_ref(), env.b.as_ref());
    let l = a.grant_lease(Duration::from_secs(30)).unwrap();
    a.put(&format!("{p}gw"), b"here", Some(l)).unwrap();
    a.put(&format!("{p}hb"), b"1", Some(l)).unwrap();
    a.put(&format!("{p}stays"), b"no lease", None).unwrap();
    assert_eq!(b.get(&format!("{p}gw")).unwrap().unwrap().lease, Some(l));
    a.keep_alive(l).unwrap();
    let w = b.watch(&p, None).unwrap();
    a.revoke_lease(l).unwrap();
    let mut gone = vec![
        next_event(&w, "delete on revoke")
            .key()
            .unwrap()
            .to_string(),
        next_event(&w, "delete on revoke")
            .key()
            .unwrap()
            .to_string(),
    ];
    gone.sort();
    assert_eq!(gone, [format!("{p}gw"), format!("{p}hb")], "{}", env.name);
    assert!(b.get(&format!("{p}gw")).unwrap().is_none());
    assert!(b.get(&format!("{p}stays")).unwrap().is_some());
    assert!(
        matches!(a.keep_alive(l), Err(StoreError::LeaseExpired(_))),
        "{}",
        env.name
    );
    assert!(
        matches!(
            a.put(&format!("{p}late"), b"x", Some(l)),
            Err(StoreError::LeaseExpired(_))
        ),
        "{}",
        env.name
    );
}

fn watches(env: &Env) {
    let p = env.prefix("watch");
    let (a, b) = (env.a.as_ref(), env.b.as_ref());
    let start = a.put(&format!("{p}before"), b"0", None).unwrap();
    let w = b.watch(&format!("{p}in/"), None).unwrap();
    let r1 = a.put(&format!("{p}in/1"), b"1", None).unwrap();
    a.put(&format!("{p}out/1"), b"x", None).unwrap();
    let r2 = a
        .batch(&[
            Op::Put {
                key: format!("{p}in/2"),
                value: b"2".to_vec(),
                lease: None,
            },
            Op::Delete {
                key: format!("{p}in/1"),
            },
        ])
        .unwrap();
    match next_event(&w, "put in/1") {
        WatchEvent::Put(e) => assert_eq!(
            (e.key, e.value, e.revision),
            (format!("{p}in/1"), b"1".to_vec(), r1)
        ),
        other => panic!("{}: {other:?}", env.name),
    }
    match next_event(&w, "put in/2") {
        WatchEvent::Put(e) => assert_eq!(
            (e.key.as_str(), e.revision),
            (format!("{p}in/2").as_str(), r2)
        ),
        other => panic!("{}: {other:?}", env.name),
    }
    assert_eq!(
        next_event(&w, "delete in/1"),
        WatchEvent::Delete {
            key: format!("{p}in/1"),
            revision: r2
        }
    );
    // A watch from a past revision replays what happened since.
    let w2 = b.watch(&p, Some(start)).unwrap();
    let mut seen = Vec::new();
    while seen.len() < 5 {
        seen.push(next_event(&w2, "replay"));
    }
    assert_eq!(seen[0].key(), Some(format!("{p}before").as_str()));
    assert_eq!(
        seen[4],
        WatchEvent::Delete {
            key: format!("{p}in/1"),
            revision: r2
        }
    );
    drop(w);
    a.put(&format!("{p}in/3"), b"3", None).unwrap();
    assert_eq!(
        next_event(&w2, "after the other watch was dropped").key(),
        Some(format!("{p}in/3").as_str())
    );
}

fn sealed_records(env: &Env) {
    let p = env.prefix("records");
    let (a, b) = (env.a.as_ref(), env.b.as_ref());
    let book = book(&p);
    for r in [
        Record::Ike(ike(1)),
        Record::Child(child(1, 0x100, 1)),
        Record::Child(child(1, 0x101, 1)),
    ] {
        let (k, v) = book.seal(&r).unwrap();
        a.put(&k, &v, None).unwrap();
    }
    let l = book.load(b).unwrap();
    assert_eq!(
        (l.ike.len(), l.children.len(), l.refused.len()),
        (1, 2, 0),
        "{}",
        env.name
    );
    let refused_before = book.keys().ring().counters().refused();
    // Alter one byte of a stored child record; copy the IKE record under another key.
    let ck = book.key_of(&Record::Child(child(1, 0x100, 1)));
    let mut v = b.get(&ck).unwrap().unwrap().value;
    v[30] ^= 0x40;
    a.put(&ck, &v, None).unwrap();
    let ik = book.key_of(&Record::Ike(ike(1)));
    let moved = book.key_of(&Record::Ike(ike(2)));
    a.put(&moved, &b.get(&ik).unwrap().unwrap().value, None)
        .unwrap();
    let l = book.load(b).unwrap();
    assert_eq!((l.ike.len(), l.children.len()), (1, 1), "{}", env.name);
    let mut refused: Vec<String> = l.refused.iter().map(|(k, _)| k.clone()).collect();
    refused.sort();
    let mut want = vec![ck, moved];
    want.sort();
    assert_eq!(refused, want);
    assert!(l.refused.iter().all(|(_, e)| *e == SealError::Forged));
    assert_eq!(
        book.keys().ring().counters().refused() - refused_before,
        2,
        "counted"
    );
}

fn conformance(env: &Env) {
    kv_basics(env);
    cas(env);
    transactions(env);
    leases_granted_and_revoked(env);
    watches(env);
    sealed_records(env);
}

#[test]
fn memory_store_conforms() {
    let world = MemoryStore::new();
    let env = Env {
        a: Arc::new(world.connect()),
        b: Arc::new(world.connect()),
        name: "memory",
    };
    conformance(&env);
}

#[test]
fn memory_leases_expire_on_virtual_time() {
    let world = MemoryStore::new();
    let a = world.connect();
    let l = a.grant_lease(Duration::from_secs(2)).unwrap();
    a.put("gw", b"x", Some(l)).unwrap();
    let w = a.watch("", None).unwrap();
    world.advance(Duration::from_millis(1500));
    a.keep_alive(l).unwrap();
    world.advance(Duration::from_millis(1999));
    assert!(a.get("gw").unwrap().is_some(), "kept alive 1.999 s ago");
    world.advance(Duration::from_millis(1));
    assert!(a.get("gw").unwrap().is_none(), "TTL ran out");
    assert!(matches!(w.try_recv(), Some(WatchEvent::Delete { .. })));
    assert!(matches!(a.keep_alive(l), Err(StoreError::LeaseExpired(_))));
}

#[test]
fn embedded_store_conforms() {
    let dir = TempDir::new("conf-embedded");
    let a = EmbeddedStore::open(dir.path(), EmbeddedOptions::default()).unwrap();
    let b = EmbeddedStore::open(dir.path(), EmbeddedOptions::default()).unwrap();
    let env = Env {
        a: Arc::new(a),
        b: Arc::new(b),
        name: "embedded",
    };
    conformance(&env);
}

/// The lease holder for [`embedded_lease_ends_with_its_process`].
#[test]
#[ignore = "child process of embedded_lease_ends_with_its_process"]
fn embedded_lease_holder() {
    let Ok(path) = std::env::var("PLX_LEASE_STORE") else {
        return;
    };
    die_with_parent();
    let s = EmbeddedStore::open(std::path::Path::new(&path), EmbeddedOptions::default()).unwrap();
    let l = s.grant_lease(Duration::from_secs(600)).unwrap();
    s.put("/held/gw", b"alive", Some(l)).unwrap();
    println!("ready");
    std::thread::sleep(Duration::from_secs(600));
}

#[test]
fn embedded_lease_ends_with_its_process() {
    let dir = TempDir::new("lease-proc");
    let s = EmbeddedStore::open(dir.path(), EmbeddedOptions::default()).unwrap();
    let w = s.watch("/held/", None).unwrap();
    let mut child = spawn_self(
        "embedded_lease_holder",
        &[("PLX_LEASE_STORE", dir.path().display().to_string())],
    );
    let _out = wait_line(&mut child, "ready");
    assert!(matches!(
        next_event(&w, "the child's put"),
        WatchEvent::Put(_)
    ));
    // A TTL of 600 s: only the death of the process can end this lease now.
    let killed = Instant::now();
    kill9(&mut child);
    assert!(matches!(
        next_event(&w, "the lease ending with the child"),
        WatchEvent::Delete { .. }
    ));
    eprintln!("embedded: lease ended {:?} after SIGKILL", killed.elapsed());
    assert!(s.get("/held/gw").unwrap().is_none());
}

#[test]
fn embedded_lease_of_a_live_process_expires_when_not_kept_alive() {
    let dir = TempDir::new("lease-ttl");
    let a = EmbeddedStore::open(dir.path(), EmbeddedOptions::default()).unwrap();
    let b = EmbeddedStore::open(dir.path(), EmbeddedOptions::default()).unwrap();
    let l = a.grant_lease(Duration::from_millis(300)).unwrap();
    a.put("/ttl/k", b"v", Some(l)).unwrap();
    let w = b.watch("/ttl/", None).unwrap();
    let t = Instant::now();
    assert!(matches!(
        next_event(&w, "expiry by deadline"),
        WatchEvent::Delete { .. }
    ));
    assert!(
        t.elapsed() >= Duration::from_millis(250),
        "not before its TTL: {:?}",
        t.elapsed()
    );
    assert!(matches!(a.keep_alive(l), Err(StoreError::LeaseExpired(_))));
}

#[test]
fn etcd_store_conforms() {
    let etcd = EtcdServer::start().expect("this test needs etcd (it must not pass without it)");
    let a = EtcdStore::connect(&[etcd.endpoint()], EtcdOptions::default()).unwrap();
    let b = EtcdStore::connect(&[etcd.endpoint()], EtcdOptions::default()).unwrap();
    let env = Env {
        a: Arc::new(a),
        b: Arc::new(b),
        name: "etcd",
    };
    conformance(&env);
}

#[test]
fn etcd_leases_expire_after_their_ttl_and_live_while_kept_alive() {
    let etcd = EtcdServer::start().expect("this test needs etcd (it must not pass without it)");
    let s = EtcdStore::connect(&[etcd.endpoint()], EtcdOptions::default()).unwrap();
    let kept = s.grant_lease(Duration::from_secs(2)).unwrap();
    let dropped = s.grant_lease(Duration::from_secs(2)).unwrap();
    s.put("/ttl/kept", b"v", Some(kept)).unwrap();
    s.put("/ttl/dropped", b"v", Some(dropped)).unwrap();
    let w = s.watch("/ttl/", None).unwrap();
    let t = Instant::now();
    // Keep one alive every 500 ms until the other has expired.
    let gone = loop {
        s.keep_alive(kept).unwrap();
        if let Some(e) = w.recv_timeout(Duration::from_millis(500)) {
            break e;
        }
        assert!(t.elapsed() < PATIENCE, "the lease did not expire");
    };
    assert_eq!(
        gone,
        WatchEvent::Delete {
            key: "/ttl/dropped".into(),
            revision: gone.revision()
        }
    );
    assert!(
        t.elapsed() >= Duration::from_millis(1500),
        "not before its TTL: {:?}",
        t.elapsed()
    );
    eprintln!(
        "etcd: a 2 s lease ended {:?} after its last renewal",
        t.elapsed()
    );
    assert!(s.get("/ttl/kept").unwrap().is_some());
    assert!(matches!(
        s.keep_alive(dropped),
        Err(StoreError::LeaseExpired(_))
    ));
}

#[test]
fn etcd_down_is_unavailable_then_back() {
    let mut etcd = EtcdServer::start().expect("this test needs etcd (it must not pass without it)");
    let opts = EtcdOptions {
        op_timeout: Duration::from_millis(500),
        ..EtcdOptions::default()
    };
    let s = EtcdStore::connect(&[etcd.endpoint()], opts).unwrap();
    s.put("/o/k", b"1", None).unwrap();
    let w = s.watch("/o/", None).unwrap();
    etcd.stop();
    let e = s.put("/o/k", b"2", None).unwrap_err();
    assert!(e.is_transient(), "{e}");
    etcd.restart().unwrap();
    let t = Instant::now();
    let rev = loop {
        match s.put("/o/k", b"3", None) {
            Ok(r) => break r,
            Err(e) => assert!(e.is_transient() && t.elapsed() < PATIENCE, "{e}"),
        }
    };
    assert_eq!(s.get("/o/k").unwrap().unwrap().value, b"3");
    // The watch reconnected and resumes from where it was.
    match next_event(&w, "put after the restart") {
        WatchEvent::Put(e) => assert_eq!((e.value, e.revision), (b"3".to_vec(), rev)),
        other => panic!("{other:?}"),
    }
}
