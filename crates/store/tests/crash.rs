//! Crash safety of the embedded store: a writer process is killed with SIGKILL a
//! thousand times at random moments (while opening the store, between or in the
//! middle of transactions); after every kill the store opens and every record reads
//! back whole — each transaction replaces one complete generation of records by the
//! next, so exactly one complete generation (or, before the first commit, none) must
//! be there, and every value must open under its seal.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::*;
use plexgate_store::embedded::{EmbeddedOptions, EmbeddedStore};
use plexgate_store::{Op, Record, RecordBook, Store};

const KILLS: usize = 1000;
/// Records per generation (one IKE SA, the rest its Child SAs).
const PER_GENERATION: u32 = 8;
/// DVIPAs per Child record: makes each record ~2 KB, a transaction ~15 KB (many pages).
const DVIPAS: usize = 100;

fn generation(book: &RecordBook, g: u64) -> Vec<(String, Record)> {
    let mut out = vec![Record::Ike(ike(g))];
    for i in 1..PER_GENERATION {
        out.push(Record::Child(child(
            g,
            (g as u32).wrapping_mul(16) + i,
            DVIPAS,
        )));
    }
    out.into_iter().map(|r| (book.key_of(&r), r)).collect()
}

/// The writer: replaces generation g-1 by g, one transaction each, forever.
#[test]
#[ignore = "child process of kill_9_a_thousand_times"]
fn crash_writer() {
    let Ok(path) = std::env::var("PLX_CRASH_STORE") else {
        return;
    };
    die_with_parent();
    let s = EmbeddedStore::open(Path::new(&path), EmbeddedOptions::default()).unwrap();
    let book = book("/crash/");
    let loaded = book.load(&s).unwrap();
    let mut g = loaded
        .ike
        .first()
        .map_or(1, |l| l.record.spis.initiator & 0xffff)
        + 1;
    println!("ready");
    loop {
        let mut ops = Vec::new();
        for (key, r) in generation(&book, g) {
            let (_, value) = book.seal(&r).unwrap();
            ops.push(Op::Put {
                key,
                value,
                lease: None,
            });
        }
        for (key, _) in generation(&book, g - 1) {
            ops.push(Op::Delete { key });
        }
        s.batch(&ops).unwrap();
        g += 1;
    }
}

/// xorshift64*: reproducible from the seed printed at the start.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

/// Open the store and check it holds zero or one complete, intact generation.
fn check(path: &Path, book: &RecordBook, kill: usize) -> Option<u64> {
    let s = EmbeddedStore::open(path, EmbeddedOptions::default())
        .unwrap_or_else(|e| panic!("kill {kill}: the store does not open: {e}"));
    let l = book.load(&s).unwrap();
    assert!(
        l.refused.is_empty(),
        "kill {kill}: torn or corrupt records: {:?}",
        l.refused
    );
    if l.ike.is_empty() {
        assert!(
            l.children.is_empty(),
            "kill {kill}: children without their IKE record"
        );
        return None;
    }
    assert_eq!(l.ike.len(), 1, "kill {kill}: two generations at once");
    let g = l.ike[0].record.spis.initiator & 0xffff;
    let want = generation(book, g);
    assert_eq!(
        l.children.len() as u32,
        PER_GENERATION - 1,
        "kill {kill}: generation {g} incomplete"
    );
    for c in &l.children {
        assert!(
            want.iter()
                .any(|(k, r)| *k == c.key && *r == Record::Child(c.record.clone())),
            "kill {kill}: a child record of generation {g} is not as written"
        );
    }
    Some(g)
}

#[test]
fn kill_9_a_thousand_times() {
    let dir = TempDir::new("crash");
    let path = dir.path().join("store.sqlite");
    let book = book("/crash/");
    let seed = std::env::var("PLX_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            let t = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default();
            t.as_nanos() as u64 ^ u64::from(std::process::id()) << 32 | 1
        });
    eprintln!("crash test seed {seed} (PLX_CRASH_SEED to repeat)");
    let mut rng = Rng(seed);
    let env = [("PLX_CRASH_STORE", path.display().to_string())];
    let (mut last, mut progressed, mut before_ready) = (0u64, 0usize, 0usize);
    let started = Instant::now();
    for kill in 0..KILLS {
        let mut child = spawn_self("crash_writer", &env);
        if rng.next() % 10 < 1 {
            // Kill it while it starts and opens the store.
            std::thread::sleep(Duration::from_micros(rng.next() % 5000));
            before_ready += 1;
        } else {
            let _out = wait_line(&mut child, "ready");
            std::thread::sleep(Duration::from_micros(rng.next() % 30_000));
        }
        kill9(&mut child);
        if let Some(g) = check(&path, &book, kill) {
            assert!(
                g >= last,
                "kill {kill}: generation went back from {last} to {g}"
            );
            progressed += (g > last) as usize;
            last = g;
        }
        if kill % 100 == 99 {
            let c = rusqlite::Connection::open(&path).unwrap();
            let ok: String = c
                .query_row("PRAGMA integrity_check", [], |r| r.get(0))
                .unwrap();
            assert_eq!(ok, "ok", "kill {kill}: SQLite integrity check");
        }
    }
    eprintln!(
        "{KILLS} kills in {:?}: {before_ready} while starting, {progressed} after new commits, last generation {last}",
        started.elapsed()
    );
    assert!(
        last > 100,
        "the writer hardly wrote ({last} generations): the kills did not land between writes"
    );
}
