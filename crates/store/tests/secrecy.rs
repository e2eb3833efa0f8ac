//! Nothing readable in clear: after records, presence, heartbeats, ranks and an
//! ownership claim are written, the raw store — every file of the embedded store
//! (database, write-ahead log, lock files), and for etcd both `etcdctl get --prefix`
//! and etcd's own data files — holds no identity, address, SPI, peer or gateway name,
//! JSON field name, or the store key.

mod common;

use std::net::IpAddr;
use std::path::Path;
use std::time::Instant;

use common::*;
use plexgate_store::embedded::{EmbeddedOptions, EmbeddedStore};
use plexgate_store::etcd::{EtcdOptions, EtcdStore};
use plexgate_store::etcd_server::EtcdServer;
use plexgate_store::liveness::LivenessConfig;
use plexgate_store::ownership::{publish_rank, Claim, Member};
use plexgate_store::*;

const PREFIX: &str = "/plexgate/site-a/";

/// Write one of everything plexgate puts in a store.
fn populate(s: &dyn Store) {
    let book = book(PREFIX);
    for n in 1..=3u64 {
        let (k, v) = book.seal(&Record::Ike(ike(n))).unwrap();
        s.put(&k, &v, None).unwrap();
        let (k, v) = book
            .seal(&Record::Child(child(n, 0xc0ff_ee00 + n as u32, 1)))
            .unwrap();
        s.put(&k, &v, None).unwrap();
    }
    let d: IpAddr = "10.100.0.10".parse().unwrap();
    let mut m = Member::join(
        s,
        book.keys().clone(),
        "gw-alpha",
        200,
        LivenessConfig::default(),
        Instant::now(),
        0,
    )
    .unwrap();
    assert!(matches!(
        m.claim(s, d, None, None, Instant::now()).unwrap(),
        Claim::Won { .. }
    ));
    m.renew(s, Instant::now()).unwrap();
    publish_rank(s, book.keys(), d, "gw-alpha", 200).unwrap();
    publish_rank(s, book.keys(), d, "gw-bravo", 100).unwrap();
}

/// What must not appear, as (label, bytes).
fn needles() -> Vec<(String, Vec<u8>)> {
    let mut n: Vec<(String, Vec<u8>)> = Vec::new();
    let mut text = |s: &str| n.push((s.to_string(), s.as_bytes().to_vec()));
    for s in [
        "gw.plexgate.test",
        "alice@branch.example",
        "branch-office",
        "gw-alpha",
        "gw-bravo",
        "198.51.100.77",
        "192.0.2.10",
        "10.100.0.10",
        "172.16.5.9",
        "\"peer\"",
        "remote_id",
        "established",
        "1111222233330001",
        "4444555566660001",
        "c0ffee01",
        "C0FFEE01",
    ] {
        text(s);
    }
    n.push(("store key".into(), KEY.to_vec()));
    n.push(("store key hex".into(), hex::encode(KEY).into_bytes()));
    n.push(("198.51.100.77 raw".into(), vec![198, 51, 100, 77]));
    n.push(("10.100.0.10 raw".into(), vec![10, 100, 0, 10]));
    n.push((
        "SPI_i raw".into(),
        0x1111_2222_3333_0001u64.to_be_bytes().to_vec(),
    ));
    n.push((
        "SPI_r raw".into(),
        0x4444_5555_6666_0001u64.to_be_bytes().to_vec(),
    ));
    n.push((
        "child SPI raw".into(),
        0xc0ff_ee01u32.to_be_bytes().to_vec(),
    ));
    n
}

fn assert_clean(what: &str, bytes: &[u8]) {
    assert!(
        bytes.len() > 1000,
        "{what}: only {} bytes: nothing was written?",
        bytes.len()
    );
    for (label, needle) in needles() {
        assert!(
            !bytes.windows(needle.len()).any(|w| w == needle.as_slice()),
            "{what}: {label} found in clear"
        );
    }
}

/// Every file under `dir`, with long runs of zeros squeezed (etcd preallocates 64 MB
/// of WAL; no needle holds 64 zeros in a row).
fn all_files(dir: &Path, out: &mut Vec<u8>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            all_files(&p, out);
        } else if let Ok(b) = std::fs::read(&p) {
            let mut zeros = 0;
            for &x in &b {
                zeros = if x == 0 { zeros + 1 } else { 0 };
                if zeros <= 64 {
                    out.push(x);
                }
            }
            out.push(0);
        }
    }
}

#[test]
fn the_embedded_store_files_hold_nothing_in_clear() {
    let dir = TempDir::new("secrecy");
    let s = EmbeddedStore::open(dir.path(), EmbeddedOptions::default()).unwrap();
    populate(&s);
    let mut raw = Vec::new();
    all_files(dir.path(), &mut raw);
    assert_clean("embedded store files (with the WAL)", &raw);
    drop(s);
    let mut raw = Vec::new();
    all_files(dir.path(), &mut raw);
    assert_clean("embedded store files (after checkpoint)", &raw);
    // The search itself works: a value written in clear is found.
    let s = EmbeddedStore::open(dir.path(), EmbeddedOptions::default()).unwrap();
    s.put(&format!("{PREFIX}canary"), b"alice@branch.example", None)
        .unwrap();
    let mut raw = Vec::new();
    all_files(dir.path(), &mut raw);
    assert!(
        raw.windows(20).any(|w| w == b"alice@branch.example"),
        "the search finds a value written in clear"
    );
}

#[test]
fn etcd_holds_nothing_in_clear() {
    let etcd = EtcdServer::start().expect("this test needs etcd (it must not pass without it)");
    let s = EtcdStore::connect(&[etcd.endpoint()], EtcdOptions::default()).unwrap();
    populate(&s);
    let out = std::process::Command::new("etcdctl")
        .env("ETCDCTL_API", "3")
        .args(["--endpoints", &etcd.endpoint(), "get", "--prefix", PREFIX])
        .output()
        .expect("etcdctl is needed for this test (scripts/setup.sh installs it)");
    assert!(
        out.status.success(),
        "etcdctl: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_clean("etcdctl get --prefix", &out.stdout);
    let keys = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.starts_with(PREFIX))
        .count();
    assert!(keys >= 10, "etcdctl listed {keys} keys");
    let mut raw = Vec::new();
    all_files(etcd.data_dir(), &mut raw);
    assert_clean("etcd's data files", &raw);
}
