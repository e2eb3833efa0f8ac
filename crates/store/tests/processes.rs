//! Two gateway processes on one host share the embedded store: a child process joins
//! as gateway `gw-child`, claims a DVIPA, writes 200 records through the record writer
//! and deletes 50, and heartbeats; this process watches and reads them, sees the
//! heartbeats, then kills the child with SIGKILL and takes the DVIPA over once the
//! child's lease has ended with it.

mod common;

use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use plexgate_store::embedded::{EmbeddedOptions, EmbeddedStore};
use plexgate_store::liveness::{LivenessConfig, LivenessEvent};
use plexgate_store::ownership::{owner_of, Claim, Member, PeerWatch};
use plexgate_store::*;

const PREFIX: &str = "/site-a/";
const RECORDS: u64 = 200;
const DELETED: u64 = 50;

fn dvipa() -> IpAddr {
    "10.100.0.10".parse().unwrap()
}

fn record(i: u64) -> Record {
    if i % 4 < 1 {
        Record::Ike(ike(i))
    } else {
        Record::Child(child(i / 4 * 4, 0x1000 + i as u32, 2))
    }
}

#[test]
#[ignore = "child process of two_processes_share_the_embedded_store"]
fn peer_gateway() {
    let Ok(path) = std::env::var("PLX_SHARED_STORE") else {
        return;
    };
    die_with_parent();
    let s: Arc<dyn Store> =
        Arc::new(EmbeddedStore::open(Path::new(&path), EmbeddedOptions::default()).unwrap());
    let book = book(PREFIX);
    let cfg = LivenessConfig::default();
    let mut me = Member::join(
        s.as_ref(),
        book.keys().clone(),
        "gw-child",
        200,
        cfg,
        Instant::now(),
        0,
    )
    .unwrap();
    assert!(matches!(
        me.claim(s.as_ref(), dvipa(), None, None, Instant::now())
            .unwrap(),
        Claim::Won { .. }
    ));
    let w = RecordWriter::spawn(s.clone(), Some(book.clone()), WriterConfig::default()).unwrap();
    for i in 0..RECORDS {
        assert!(w.put_record(record(i)));
    }
    for i in 0..DELETED {
        assert!(w.delete(book.key_of(&record(i * 2))));
    }
    assert!(w.wait_idle(PATIENCE));
    println!("written");
    loop {
        let now = Instant::now();
        me.renew(s.as_ref(), now).unwrap();
        std::thread::sleep(cfg.heartbeat_interval);
    }
}

#[test]
fn two_processes_share_the_embedded_store() {
    let dir = TempDir::new("shared");
    let s = EmbeddedStore::open(dir.path(), EmbeddedOptions::default()).unwrap();
    let book = book(PREFIX);
    let cfg = LivenessConfig::default();
    let records = s
        .watch(&book.keys().ike_prefix().replace("ike/", ""), None)
        .unwrap();
    let beats = s.watch(&book.keys().heartbeat_prefix(), None).unwrap();
    let mut peers = PeerWatch::new(book.keys().clone(), &cfg, &["gw-child"], Instant::now());
    let mut child = spawn_self(
        "peer_gateway",
        &[("PLX_SHARED_STORE", dir.path().display().to_string())],
    );
    let _out = wait_line(&mut child, "written");

    // The other process's writes arrive through the watch until the records seen
    // are exactly the live ones (a put superseded by its delete before the writer
    // got to it is never written: no event for it at all).
    let want: std::collections::BTreeSet<String> = (0..RECORDS)
        .filter(|i| !(i % 2 < 1 && i / 2 < DELETED))
        .map(|i| book.key_of(&record(i)))
        .collect();
    let mut seen = std::collections::BTreeSet::new();
    let t = Instant::now();
    while seen != want {
        assert!(
            t.elapsed() < PATIENCE,
            "saw {} of {} records",
            seen.len(),
            want.len()
        );
        let ev = records.recv_timeout(Duration::from_millis(100));
        let is_record = |k: &str| {
            k.starts_with(&book.keys().ike_prefix()) || k.starts_with(&book.keys().child_prefix())
        };
        match ev {
            Some(WatchEvent::Put(e)) if is_record(&e.key) => {
                book.open(&e.key, &e.value)
                    .expect("a record written by the other process opens");
                seen.insert(e.key);
            }
            Some(WatchEvent::Delete { key, .. }) if is_record(&key) => {
                seen.remove(&key);
            }
            Some(WatchEvent::Resync { .. }) => panic!("no history was trimmed"),
            _ => {}
        }
    }
    let loaded = book.load(&s).unwrap();
    assert!(loaded.refused.is_empty());
    let mut got: Vec<Record> = loaded
        .ike
        .into_iter()
        .map(|l| Record::Ike(l.record))
        .collect();
    got.extend(loaded.children.into_iter().map(|l| Record::Child(l.record)));
    assert_eq!(got.len() as u64, RECORDS - DELETED);
    for i in 0..RECORDS {
        let live = !(i % 2 < 1 && i / 2 < DELETED);
        assert_eq!(got.contains(&record(i)), live, "record {i}");
    }

    // Its heartbeats arrive; then it dies and its lease (a flock) ends with it.
    let owner = owner_of(&s, book.keys(), dvipa())
        .unwrap()
        .expect("the child owns the DVIPA");
    assert_eq!(owner.gateway, "gw-child");
    let alive_at = Instant::now();
    loop {
        if let Some(e) = beats.recv_timeout(Duration::from_millis(50)) {
            peers.on_event(&e, Instant::now()).unwrap();
        }
        if peers.monitor.last_heartbeat("gw-child").is_some() {
            break;
        }
        assert!(alive_at.elapsed() < PATIENCE, "no heartbeat from the child");
    }
    let killed = Instant::now();
    kill9(&mut child);
    let dead = loop {
        if let Some(e) = beats.recv_timeout(Duration::from_millis(10)) {
            peers.on_event(&e, Instant::now()).unwrap();
        }
        let ev = peers.poll(Instant::now());
        if let Some(d) = ev
            .into_iter()
            .find(|e| matches!(e, LivenessEvent::Dead { .. }))
        {
            break d;
        }
        assert!(
            killed.elapsed() < PATIENCE,
            "the child's death went unnoticed"
        );
    };
    let detected = killed.elapsed();
    let mut me = Member::join(
        &s,
        book.keys().clone(),
        "gw-parent",
        100,
        cfg,
        Instant::now(),
        0,
    )
    .unwrap();
    let seen = owner_of(&s, book.keys(), dvipa()).unwrap().map(|o| o.epoch);
    let guard = match &dead {
        LivenessEvent::Dead {
            gateway,
            last_heartbeat,
        } => (gateway.as_str(), *last_heartbeat),
        _ => unreachable!(),
    };
    let claim = me
        .claim(&s, dvipa(), seen, Some(guard), Instant::now())
        .unwrap();
    let took = killed.elapsed();
    let Claim::Won { epoch } = claim else {
        panic!("takeover failed: {claim:?}")
    };
    assert!(
        epoch > owner.epoch,
        "the new epoch {epoch} follows the old {}",
        owner.epoch
    );
    assert_eq!(
        guard.1, None,
        "death was seen as the lease ending, not as missed heartbeats"
    );
    eprintln!("embedded: death of a SIGKILLed gateway seen after {detected:?}, DVIPA claimed after {took:?}");
}
