//! Many long TCP streams of known content through a tunnel, each checked byte for
//! byte at the far end (SHA-256 of the pattern), for failover tests: a sink on a
//! server address that serves any number of connections, and paced senders that
//! run until told to stop. A monitor follows the bytes received so that the
//! longest gap in service (nothing received by any stream) can be measured.

use crate::error::{LabError, Result};
use crate::netns::Netns;
use crate::traffic::{pattern_digest, Pattern};
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// What all sinks of a test have received, for [`Streams::longest_gap`].
#[derive(Debug)]
pub struct RxClock {
    start: Instant,
    /// Bytes received by every sink.
    pub bytes: AtomicU64,
    /// Milliseconds since `start` of the last receive.
    last_ms: AtomicU64,
}

impl RxClock {
    /// A clock starting now.
    pub fn new() -> Arc<RxClock> {
        Arc::new(RxClock {
            start: Instant::now(),
            bytes: AtomicU64::new(0),
            last_ms: AtomicU64::new(0),
        })
    }

    fn received(&self, n: usize) {
        self.bytes.fetch_add(n as u64, Ordering::Relaxed);
        self.last_ms
            .store(self.start.elapsed().as_millis() as u64, Ordering::Relaxed);
    }

    /// Time since any sink last received a byte.
    pub fn idle(&self) -> Duration {
        let last = Duration::from_millis(self.last_ms.load(Ordering::Relaxed));
        self.start.elapsed().saturating_sub(last)
    }
}

/// A server on `addr` inside a namespace: every connection is read to its end,
/// its SHA-256 written back, then closed. Stopped on drop.
#[derive(Debug)]
pub struct TcpSink {
    stop: Arc<AtomicBool>,
    served: Arc<AtomicUsize>,
    handle: Option<JoinHandle<()>>,
}

impl TcpSink {
    /// Listen on `addr` in `ns`; `clock` counts what arrives.
    pub fn start(ns: &Netns, addr: SocketAddr, clock: Arc<RxClock>) -> Result<TcpSink> {
        let stop = Arc::new(AtomicBool::new(false));
        let served = Arc::new(AtomicUsize::new(0));
        let (s, n) = (stop.clone(), served.clone());
        let (tx, rx) = std::sync::mpsc::channel();
        let handle = ns.spawn_thread(move || {
            let l = match TcpListener::bind(addr) {
                Ok(l) => l,
                Err(e) => {
                    let _ = tx.send(Err(e));
                    return;
                }
            };
            let _ = l.set_nonblocking(true);
            let _ = tx.send(Ok(()));
            while !s.load(Ordering::Relaxed) {
                match l.accept() {
                    Ok((c, _)) => {
                        let (n, clock) = (n.clone(), clock.clone());
                        std::thread::spawn(move || {
                            if sink_one(c, &clock).is_ok() {
                                n.fetch_add(1, Ordering::Relaxed);
                            }
                        });
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        })?;
        match rx.recv_timeout(Duration::from_secs(10)) {
            Ok(Ok(())) => Ok(TcpSink {
                stop,
                served,
                handle: Some(handle),
            }),
            Ok(Err(e)) => Err(LabError::io(format!("binding {addr}"), e)),
            Err(_) => Err(LabError::Verify(format!("sink on {addr} did not start"))),
        }
    }

    /// Connections read to their end and answered.
    pub fn served(&self) -> usize {
        self.served.load(Ordering::Relaxed)
    }
}

impl Drop for TcpSink {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

fn sink_one(mut c: TcpStream, clock: &RxClock) -> std::io::Result<()> {
    c.set_nonblocking(false)?;
    c.set_read_timeout(Some(Duration::from_secs(120)))?;
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = c.read(&mut buf)?;
        if n == 0 {
            break;
        }
        clock.received(n);
        ctx.update(buf.get(..n).unwrap_or_default());
    }
    c.write_all(ctx.finish().as_ref())?;
    c.shutdown(Shutdown::Write)
}

/// How one stream ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamResult {
    /// Bytes sent (all acknowledged by the sink's digest when `ok`).
    pub bytes: u64,
    /// The sink's SHA-256 equals that of the pattern sent.
    pub ok: bool,
    /// Why not, if not.
    pub error: Option<String>,
}

/// Paced senders of known content, one thread each, run until [`Streams::stop`].
#[derive(Debug)]
pub struct Streams {
    stop: Arc<AtomicBool>,
    sent: Arc<Vec<AtomicU64>>,
    handles: Vec<JoinHandle<StreamResult>>,
    results: Arc<Mutex<Vec<StreamResult>>>,
}

impl Streams {
    /// `n` streams from `ns` to `to`, each sending `rate` bytes per second (in
    /// 16 KiB writes) of the pattern for seed `seed + i`.
    pub fn start(ns: &Netns, to: SocketAddr, n: usize, rate: u64, seed: u64) -> Result<Streams> {
        let stop = Arc::new(AtomicBool::new(false));
        let sent: Arc<Vec<AtomicU64>> = Arc::new((0..n).map(|_| AtomicU64::new(0)).collect());
        let mut handles = Vec::with_capacity(n);
        for i in 0..n {
            let (stop, sent) = (stop.clone(), sent.clone());
            handles.push(
                ns.spawn_thread(move || stream_one(to, seed + i as u64, rate, &stop, &sent[i]))?,
            );
        }
        Ok(Streams {
            stop,
            sent,
            handles,
            results: Arc::new(Mutex::new(Vec::new())),
        })
    }

    /// Bytes written so far by the slowest stream.
    pub fn min_sent(&self) -> u64 {
        self.sent
            .iter()
            .map(|s| s.load(Ordering::Relaxed))
            .min()
            .unwrap_or(0)
    }

    /// Stop sending, finish every stream and return how each ended.
    pub fn stop(mut self) -> Vec<StreamResult> {
        self.stop.store(true, Ordering::Relaxed);
        let mut out: Vec<StreamResult> = std::mem::take(&mut self.handles)
            .into_iter()
            .map(|h| {
                h.join().unwrap_or(StreamResult {
                    bytes: 0,
                    ok: false,
                    error: Some("stream thread panicked".into()),
                })
            })
            .collect();
        if let Ok(mut r) = self.results.lock() {
            r.append(&mut out.clone());
        }
        std::mem::take(&mut out)
    }
}

fn stream_one(
    to: SocketAddr,
    seed: u64,
    rate: u64,
    stop: &AtomicBool,
    sent: &AtomicU64,
) -> StreamResult {
    let fail = |bytes: u64, e: String| StreamResult {
        bytes,
        ok: false,
        error: Some(e),
    };
    let mut s = match TcpStream::connect_timeout(&to, Duration::from_secs(10)) {
        Ok(s) => s,
        Err(e) => return fail(0, format!("connect {to}: {e}")),
    };
    let _ = s.set_write_timeout(Some(Duration::from_secs(60)));
    let _ = s.set_read_timeout(Some(Duration::from_secs(60)));
    let mut p = Pattern::new(seed);
    let mut buf = vec![0u8; 16 * 1024];
    let t0 = Instant::now();
    let mut total: u64 = 0;
    while !stop.load(Ordering::Relaxed) {
        p.fill(&mut buf);
        if let Err(e) = s.write_all(&buf) {
            return fail(total, format!("write after {total} bytes: {e}"));
        }
        total += buf.len() as u64;
        sent.store(total, Ordering::Relaxed);
        // Pace: never more than `rate` bytes per second on average.
        let due = Duration::from_secs_f64(total as f64 / rate.max(1) as f64);
        if let Some(wait) = due.checked_sub(t0.elapsed()) {
            std::thread::sleep(wait.min(Duration::from_millis(200)));
        }
    }
    if let Err(e) = s.shutdown(Shutdown::Write) {
        return fail(total, format!("half-close: {e}"));
    }
    let mut d = [0u8; 32];
    if let Err(e) = s.read_exact(&mut d) {
        return fail(
            total,
            format!("reading the digest after {total} bytes: {e}"),
        );
    }
    let ok = d == pattern_digest(seed, total as usize);
    StreamResult {
        bytes: total,
        ok,
        error: (!ok).then(|| format!("the sink's SHA-256 of {total} bytes differs")),
    }
}

/// The longest time no sink received anything while `running` holds, sampled
/// every 10 ms on a thread; read with [`GapMonitor::stop`].
#[derive(Debug)]
pub struct GapMonitor {
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<Duration>>,
}

impl GapMonitor {
    /// Start sampling `clock`.
    pub fn start(clock: Arc<RxClock>) -> GapMonitor {
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let handle = std::thread::spawn(move || {
            let mut worst = Duration::ZERO;
            while !s.load(Ordering::Relaxed) {
                worst = worst.max(clock.idle());
                std::thread::sleep(Duration::from_millis(10));
            }
            worst
        });
        GapMonitor {
            stop,
            handle: Some(handle),
        }
    }

    /// The longest gap seen.
    pub fn stop(mut self) -> Duration {
        self.stop.store(true, Ordering::Relaxed);
        self.handle
            .take()
            .and_then(|h| h.join().ok())
            .unwrap_or_default()
    }
}
