//! `plexgate bench store`: how fast recovery records reach the shared store, and that
//! the data path never waits for them.
//!
//! For each backend (embedded: SQLite in a temporary directory; etcd: a throwaway
//! etcd on loopback that this command starts) and each SA count (1,000 and 100,000 by
//! default), every SA's two records (IKE and Child) are handed to the
//! [`RecordWriter`] as fast as the caller can, as the gateway does when SAs come up
//! (a *burst*); the figures are records written per second (hand-over of the first
//! to the last one durable), the time the caller spent per hand-over, and the time
//! from hand-over ("SA established") to durable per record (p50, p99, max). A
//! *paced* run (1,000 SAs at 1,000 SAs/s) gives that latency without a queue.
//!
//! Then the data path: the inbound loop of `bench datapath` (AES-GCM-128, 1400 B)
//! runs on this thread, raw AEAD rounds alternating with whole-path rounds, once with
//! the store idle and once while another thread keeps the writer saturated; the
//! ratio and the path's ns/packet are reported side by side, with the longest single
//! hand-over seen by the writing thread (the caller's worst wait on the store).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use plexgate_ipsec::EspTransform;
use plexgate_store::embedded::{EmbeddedOptions, EmbeddedStore};
use plexgate_store::etcd::{EtcdOptions, EtcdStore};
use plexgate_store::etcd_server::EtcdServer;
use plexgate_store::records::*;
use plexgate_store::{IkeSpis, Keyring, Keys, RecordWriter, Store, StoreKey, WriterConfig};
use serde_json::json;

use super::datapath::Fixture;

type BoxError = Box<dyn std::error::Error>;

/// SA counts measured by default.
pub const COUNTS: [usize; 2] = [1_000, 100_000];
/// SAs per second of the paced run.
const PACED_RATE: f64 = 1000.0;
/// Keep at most this many changes queued while saturating the writer.
const SATURATION_BACKLOG: usize = 20_000;

/// One burst or paced run.
#[derive(Debug, Clone, serde::Serialize)]
pub struct WriteRow {
    /// `embedded` or `etcd`.
    pub backend: &'static str,
    /// `burst` or `paced`.
    pub mode: &'static str,
    /// SAs (each one IKE and one Child record).
    pub sas: usize,
    /// Records written.
    pub records: u64,
    /// Records durable per second (first hand-over to last durable).
    pub records_per_sec: f64,
    /// Mean time the caller spent per hand-over, ns.
    pub handoff_ns: f64,
    /// Hand-over to durable, per record, ms.
    pub durable_p50_ms: f64,
    /// 99th percentile, ms.
    pub durable_p99_ms: f64,
    /// Largest, ms.
    pub durable_max_ms: f64,
    /// CPU time of this process (gateway side: sealing, writer, SQLite), ms.
    pub cpu_ms: f64,
    /// CPU time of the etcd server (0 for the embedded store, which is in-process), ms.
    pub server_cpu_ms: f64,
    /// Records per CPU second of both together (independent of the box's load).
    pub records_per_cpu_sec: f64,
}

/// The data path with the store idle and with the writer saturated.
#[derive(Debug, Clone, serde::Serialize)]
pub struct DatapathRow {
    /// `embedded` or `etcd`.
    pub backend: &'static str,
    /// Raw AEAD / whole path, median over round pairs, store idle.
    pub ratio_idle: f64,
    /// The same while records are written.
    pub ratio_writing: f64,
    /// Whole path ns per packet, store idle.
    pub path_ns_idle: f64,
    /// Whole path ns per packet while records are written.
    pub path_ns_writing: f64,
    /// Records made durable per second during the writing half.
    pub records_per_sec_during: f64,
    /// The longest single hand-over to the writer during that half, µs.
    pub max_handoff_us: f64,
    /// Hand-overs made during that half.
    pub handoffs: u64,
    /// Times the handing thread blocked (voluntary context switch) inside a
    /// hand-over: waiting on the store or the writer would show here.
    pub handoff_blocked: i64,
    /// Times it was preempted by the scheduler inside one (CPU contention: the
    /// longest hand-over is one of these).
    pub handoff_preempted: i64,
}

/// A store of one backend, with what keeps it alive.
struct Backend {
    name: &'static str,
    store: Arc<dyn Store>,
    _etcd: Option<EtcdServer>,
    dir: Option<std::path::PathBuf>,
}

impl Drop for Backend {
    fn drop(&mut self) {
        if let Some(d) = &self.dir {
            let _ = std::fs::remove_dir_all(d);
        }
    }
}

fn open(name: &str) -> Result<Backend, BoxError> {
    static SEQ: AtomicU64 = AtomicU64::new(0);
    match name {
        "embedded" => {
            let dir = std::env::temp_dir().join(format!(
                "plexgate-bench-store-{}-{}",
                std::process::id(),
                SEQ.fetch_add(1, Ordering::Relaxed)
            ));
            let store = EmbeddedStore::open(&dir.join("store.sqlite"), EmbeddedOptions::default())?;
            Ok(Backend {
                name: "embedded",
                store: Arc::new(store),
                _etcd: None,
                dir: Some(dir),
            })
        }
        "etcd" => {
            let etcd = EtcdServer::start()?;
            let store = EtcdStore::connect(&[etcd.endpoint()], EtcdOptions::default())?;
            Ok(Backend {
                name: "etcd",
                store: Arc::new(store),
                _etcd: Some(etcd),
                dir: None,
            })
        }
        other => Err(format!("no backend {other:?}: embedded or etcd").into()),
    }
}

fn book() -> Result<RecordBook, BoxError> {
    let ring = Keyring::single("bench", StoreKey::generate()?);
    Ok(RecordBook::new(Keys::new(
        "/plexgate/bench/",
        Arc::new(ring),
    )))
}

/// The two records of SA number `n` (shaped like a road warrior behind NAT).
fn sa_records(n: u64) -> [Record; 2] {
    let spis = IkeSpis {
        initiator: 0x5eed_0000_0000_0000 | n,
        responder: 0x7a11_0000_0000_0000 | n,
    };
    let client = IpAddr::V4(Ipv4Addr::from(0xc633_0000 | (n as u32 & 0xffff)));
    let host = |a: IpAddr| Selector {
        protocol: 0,
        start_port: 0,
        end_port: 65535,
        start: a,
        end: a,
    };
    let dvipa = IpAddr::V4(Ipv4Addr::new(10, 100, 0, 10));
    let ike = IkeRecord {
        schema: SCHEMA_VERSION,
        peer: "roadwarriors".into(),
        spis,
        initiator: false,
        local: SocketAddr::new(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 10)), 4500),
        remote: SocketAddr::new(client, 4500),
        nat_local: false,
        nat_remote: true,
        local_id: Identity {
            id_type: 2,
            data: b"gw.plexgate.test".to_vec(),
        },
        remote_id: Identity {
            id_type: 3,
            data: format!("user{n}@example.org").into_bytes(),
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
    };
    let child = ChildRecord {
        schema: SCHEMA_VERSION,
        ike: spis,
        peer: "roadwarriors".into(),
        child: "pool".into(),
        spis: ChildSpis {
            spi_in: 0xc000_0000 | n as u32,
            spi_out: 0xd000_0000 | n as u32,
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
        ts_local: vec![host(dvipa)],
        ts_remote: vec![host(client)],
        lifetimes: Lifetimes::default(),
        udp_encap: Some(UdpEncap {
            local_port: 4500,
            remote_port: 4500,
        }),
        dvipas: vec![dvipa],
        replaces: None,
        established_unix_ms: 1_700_000_000_000 + n,
    };
    [Record::Ike(ike), Record::Child(child)]
}

/// CPU seconds of this process (all threads).
fn self_cpu() -> f64 {
    // SAFETY: rusage is plain integers, for which all zeroes is a valid value.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: getrusage writes one rusage into the valid pointer we pass.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) };
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(u.ru_utime) + tv(u.ru_stime)
}

/// CPU seconds of the backend's server process, if it has one.
fn server_cpu(b: &Backend) -> f64 {
    let Some(pid) = b._etcd.as_ref().and_then(|e| e.pid()) else {
        return 0.0;
    };
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    // Fields after the command name (which ends with ')'): utime and stime are 14, 15.
    let rest = stat.rsplit_once(')').map_or("", |r| r.1);
    let f: Vec<&str> = rest.split_whitespace().collect();
    // SAFETY: sysconf has no memory arguments.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / hz
}

/// CPU seconds of (this process, the server) at one moment.
#[derive(Clone, Copy)]
struct Cpu(f64, f64);

impl Cpu {
    fn now(b: &Backend) -> Cpu {
        Cpu(self_cpu(), server_cpu(b))
    }
}

fn row(
    b: &Backend,
    mode: &'static str,
    sas: usize,
    w: &RecordWriter,
    first: Instant,
    handoff: Duration,
    cpu0: Cpu,
) -> WriteRow {
    let st = w.status();
    let records = st.counters.written;
    let elapsed = first.elapsed().as_secs_f64();
    let cpu = Cpu::now(b);
    let (own, server) = (cpu.0 - cpu0.0, cpu.1 - cpu0.1);
    WriteRow {
        backend: b.name,
        mode,
        sas,
        records,
        records_per_sec: records as f64 / elapsed,
        handoff_ns: handoff.as_nanos() as f64 / (2 * sas) as f64,
        durable_p50_ms: st.latency.p50_us / 1000.0,
        durable_p99_ms: st.latency.p99_us / 1000.0,
        durable_max_ms: st.latency.max_us / 1000.0,
        cpu_ms: own * 1000.0,
        server_cpu_ms: server * 1000.0,
        records_per_cpu_sec: records as f64 / (own + server).max(1e-9),
    }
}

fn wait(w: &RecordWriter) -> Result<(), BoxError> {
    if w.wait_idle(Duration::from_secs(600)) {
        Ok(())
    } else {
        Err(format!("records not written within 10 minutes: {:?}", w.status()).into())
    }
}

/// Hand every record over at once.
fn burst(b: &Backend, sas: usize) -> Result<WriteRow, BoxError> {
    let w = RecordWriter::spawn(b.store.clone(), Some(book()?), WriterConfig::default())?;
    let records: Vec<Record> = (0..sas as u64).flat_map(sa_records).collect();
    let cpu0 = Cpu::now(b);
    let first = Instant::now();
    for r in records {
        if !w.put_record(r) {
            return Err("the writer's queue overflowed".into());
        }
    }
    let handoff = first.elapsed();
    wait(&w)?;
    Ok(row(b, "burst", sas, &w, first, handoff, cpu0))
}

/// Hand the records over at [`PACED_RATE`] SAs per second.
fn paced(b: &Backend, sas: usize) -> Result<WriteRow, BoxError> {
    let w = RecordWriter::spawn(b.store.clone(), Some(book()?), WriterConfig::default())?;
    let cpu0 = Cpu::now(b);
    let first = Instant::now();
    let mut handoff = Duration::ZERO;
    for n in 0..sas as u64 {
        let due = first + Duration::from_secs_f64(n as f64 / PACED_RATE);
        if let Some(d) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(d);
        }
        let t = Instant::now();
        for r in sa_records(n) {
            w.put_record(r);
        }
        handoff += t.elapsed();
    }
    wait(&w)?;
    Ok(row(b, "paced", sas, &w, first, handoff, cpu0))
}

/// Median of the per-pair raw/path ratios and of the path ns per packet, over
/// `seconds` of alternating rounds.
fn datapath_ratio(f: &mut Fixture, seconds: f64) -> Result<(f64, f64), BoxError> {
    let cipher = f.cipher()?;
    let pkts = f.packets() as f64;
    let (mut ratios, mut path) = (Vec::new(), Vec::new());
    let end = Instant::now() + Duration::from_secs_f64(seconds);
    while Instant::now() < end {
        let raw = f.timed_raw_round(&cipher).ok_or("raw open failed")?;
        let (got, p) = f.timed_round();
        if got != f.packets() as u64 {
            return Err(format!("{got} of {} packets reached the target", f.packets()).into());
        }
        ratios.push(raw.as_secs_f64() / p.as_secs_f64());
        path.push(p.as_nanos() as f64 / pkts);
    }
    Ok((median(&mut ratios), median(&mut path)))
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

/// Context switches of the calling thread so far: (voluntary, involuntary). A
/// voluntary one means the thread blocked (a lock, I/O); an involuntary one that the
/// scheduler preempted it.
fn switches() -> (i64, i64) {
    // SAFETY: rusage is plain integers, for which all zeroes is a valid value.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: getrusage writes one rusage into the valid pointer we pass.
    unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut u) };
    (u.ru_nvcsw, u.ru_nivcsw)
}

/// What the saturating thread saw of its own hand-overs.
#[derive(Default)]
struct Fed {
    records: u64,
    worst: Duration,
    /// Times the thread blocked inside a hand-over.
    blocked: i64,
    /// Times it was preempted inside a hand-over.
    preempted: i64,
}

/// Keep the writer saturated until `stop`.
fn saturate(w: &RecordWriter, stop: &AtomicBool) -> Fed {
    let mut fed = Fed::default();
    let mut n = 0u64;
    while !stop.load(Ordering::Relaxed) {
        if w.status().pending > SATURATION_BACKLOG {
            std::thread::sleep(Duration::from_millis(1));
            continue;
        }
        for _ in 0..1000 {
            for r in sa_records(n) {
                let (v0, i0) = switches();
                let t = Instant::now();
                w.put_record(r);
                let took = t.elapsed();
                let (v1, i1) = switches();
                fed.worst = fed.worst.max(took);
                fed.blocked += v1 - v0;
                fed.preempted += i1 - i0;
            }
            n += 1;
        }
    }
    fed.records = 2 * n;
    fed
}

fn datapath_under_writes(b: &Backend, seconds: f64) -> Result<DatapathRow, BoxError> {
    let mut f = Fixture::new(EspTransform::AesGcm128, 1400, 2048)?;
    let (ratio_idle, path_ns_idle) = datapath_ratio(&mut f, seconds)?;
    let w = RecordWriter::spawn(b.store.clone(), Some(book()?), WriterConfig::default())?;
    let stop = AtomicBool::new(false);
    let started = Instant::now();
    let ((ratio_writing, path_ns_writing), fed, written) = std::thread::scope(|s| {
        let feeder = s.spawn(|| saturate(&w, &stop));
        let r = datapath_ratio(&mut f, seconds);
        let written = w.status().counters.written;
        stop.store(true, Ordering::Relaxed);
        let fed = feeder.join().unwrap_or_default();
        r.map(|r| (r, fed, written))
    })?;
    let elapsed = started.elapsed().as_secs_f64();
    Ok(DatapathRow {
        backend: b.name,
        ratio_idle,
        ratio_writing,
        path_ns_idle,
        path_ns_writing,
        records_per_sec_during: written as f64 / elapsed,
        max_handoff_us: fed.worst.as_secs_f64() * 1e6,
        handoffs: fed.records,
        handoff_blocked: fed.blocked,
        handoff_preempted: fed.preempted,
    })
}

fn print_write(r: &WriteRow, as_json: bool) {
    if as_json {
        println!("{}", json!(r));
    } else {
        println!(
            "{:<9} {:<6} {:>7} SAs {:>8} records {:>9.0} rec/s ({:>6.0} per CPU s)  hand-over {:>6.0} ns  durable p50 {:>8.2} ms p99 {:>8.2} ms max {:>8.2} ms",
            r.backend, r.mode, r.sas, r.records, r.records_per_sec, r.records_per_cpu_sec, r.handoff_ns, r.durable_p50_ms, r.durable_p99_ms, r.durable_max_ms
        );
    }
}

fn print_datapath(r: &DatapathRow, as_json: bool) {
    if as_json {
        println!("{}", json!(r));
    } else {
        println!(
            "{:<9} datapath ratio idle {:.3} / writing {:.3}; path {:.0} / {:.0} ns/pkt; {:.0} records/s meanwhile; {} hand-overs: blocked {} times, preempted {} times, longest {:.1} µs",
            r.backend, r.ratio_idle, r.ratio_writing, r.path_ns_idle, r.path_ns_writing, r.records_per_sec_during,
            r.handoffs, r.handoff_blocked, r.handoff_preempted, r.max_handoff_us
        );
    }
}

/// `plexgate bench store`: `backends` among `embedded`, `etcd`; `counts` SA counts;
/// `seconds` per half of the data-path comparison (0: skip it).
pub fn store(
    as_json: bool,
    backends: &[String],
    counts: &[usize],
    seconds: f64,
) -> Result<(), BoxError> {
    for name in backends {
        for &sas in counts {
            let b = open(name)?;
            print_write(&burst(&b, sas)?, as_json);
        }
        let b = open(name)?;
        print_write(&paced(&b, 1000)?, as_json);
        if seconds > 0.0 {
            let b = open(name)?;
            print_datapath(&datapath_under_writes(&b, seconds)?, as_json);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_small_burst_is_written_and_counted_on_the_embedded_store() {
        let b = open("embedded").unwrap();
        let r = burst(&b, 50).unwrap();
        assert_eq!(r.records, 100);
        assert!(r.records_per_sec > 0.0 && r.durable_max_ms >= r.durable_p50_ms);
        let loaded = book().unwrap();
        // Another keyring cannot read them; the records are there, sealed.
        let l = loaded.load(b.store.as_ref()).unwrap();
        assert_eq!((l.ike.len(), l.refused.len()), (0, 100));
    }
}
