//! Shared by the store's integration tests: record fixtures, temporary directories
//! and running this very test binary again as a child process (a second gateway, a
//! writer to kill).
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use plexgate_store::records::*;
use plexgate_store::{IkeSpis, Keyring, Keys, RecordBook, StoreKey};

/// A temporary directory removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let p = std::env::temp_dir().join(format!("plx-{}-{tag}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The store key every test uses (and the child processes, which must agree).
pub const KEY: [u8; 32] = [0x5a; 32];

pub fn ring(site: &str) -> Arc<Keyring> {
    Arc::new(Keyring::single(site, StoreKey::from_bytes(&KEY).unwrap()))
}

pub fn book(prefix: &str) -> RecordBook {
    RecordBook::new(Keys::new(prefix, ring("site-a")))
}

pub fn ike(n: u64) -> IkeRecord {
    IkeRecord {
        schema: SCHEMA_VERSION,
        peer: "branch-office".into(),
        spis: IkeSpis {
            initiator: 0x1111_2222_3333_0000 + n,
            responder: 0x4444_5555_6666_0000 + n,
        },
        initiator: n & 1 == 0,
        local: "192.0.2.10:4500".parse().unwrap(),
        remote: "198.51.100.77:31337".parse().unwrap(),
        nat_local: false,
        nat_remote: true,
        local_id: Identity {
            id_type: 2,
            data: b"gw.plexgate.test".to_vec(),
        },
        remote_id: Identity {
            id_type: 3,
            data: b"alice@branch.example".to_vec(),
        },
        auth_method: 2,
        proposal: IkeProposal {
            encr: 20,
            encr_bits: 256,
            integ: None,
            prf: 7,
            dh: 31,
        },
        established_unix_ms: 1_700_000_000_000 + n,
    }
}

pub fn child(n: u64, spi_in: u32, dvipas: usize) -> ChildRecord {
    let host = |a: &str| Selector {
        protocol: 6,
        start_port: 0,
        end_port: 65535,
        start: a.parse().unwrap(),
        end: a.parse().unwrap(),
    };
    ChildRecord {
        schema: SCHEMA_VERSION,
        ike: ike(n).spis,
        peer: "branch-office".into(),
        child: "web".into(),
        spis: ChildSpis {
            spi_in,
            spi_out: 0xcafe_0000 | (spi_in & 0xffff),
        },
        protocol: 50,
        proposal: EspProposal {
            encr: 20,
            encr_bits: 128,
            integ: None,
            dh: None,
        },
        esn: false,
        mode: Mode::Tunnel,
        ts_local: vec![host("10.100.0.10")],
        ts_remote: vec![host("172.16.5.9")],
        lifetimes: Lifetimes::default(),
        udp_encap: Some(UdpEncap {
            local_port: 4500,
            remote_port: 31337,
        }),
        dvipas: (0..dvipas)
            .map(|i| std::net::IpAddr::from([10, 100, (i / 250) as u8, (i % 250) as u8 + 1]))
            .collect(),
        replaces: None,
        established_unix_ms: 1_700_000_000_000 + n,
    }
}

/// Run the ignored test `name` of this binary as a child process with `env`; its
/// stdout is piped.
pub fn spawn_self(name: &str, env: &[(&str, String)]) -> Child {
    let exe = std::env::current_exe().unwrap();
    let mut c = Command::new(exe);
    c.args([
        "--exact",
        name,
        "--ignored",
        "--nocapture",
        "--test-threads=1",
    ])
    .stdin(Stdio::null())
    .stdout(Stdio::piped())
    .stderr(Stdio::inherit());
    for (k, v) in env {
        c.env(k, v);
    }
    c.spawn().expect("cannot re-run the test binary")
}

/// Read the child's stdout until a line equal to `word` (fails if it exits first).
pub fn wait_line(child: &mut Child, word: &str) -> BufReader<std::process::ChildStdout> {
    let out = child.stdout.take().expect("stdout piped");
    let mut r = BufReader::new(out);
    let mut line = String::new();
    loop {
        line.clear();
        let n = r.read_line(&mut line).unwrap();
        assert!(n > 0, "the child exited before printing {word:?}");
        // libtest prints "test NAME ... " before the test's own output.
        if line.trim_end().ends_with(word) {
            return r;
        }
    }
}

/// In a child process: die with the parent test thread (no orphans if it fails).
pub fn die_with_parent() {
    // SAFETY: prctl with integer arguments only.
    unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) };
}

/// Kill a child with SIGKILL and reap it.
pub fn kill9(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}

/// A generous bound for things that take milliseconds (a loaded 2-core box).
pub const PATIENCE: Duration = Duration::from_secs(20);
