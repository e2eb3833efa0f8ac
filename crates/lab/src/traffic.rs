//! Traffic through the lab: iperf3, byte-exact TCP transfers, HTTP request loops.
//!
//! * [`IperfServer`] / [`iperf3_client`]: `iperf3` in namespaces with `-J` output
//!   parsed into Gbit/s, one or N parallel streams, bounded duration.
//! * [`tcp_transfer`]: a Rust TCP client and server, each on a thread inside its
//!   namespace, send N bytes of a deterministic pseudo-random pattern; the server
//!   hashes what it got with SHA-256 and sends the digest back; both digests must
//!   equal the digest of the pattern ([`pattern_digest`]). Catches corruption,
//!   truncation and reordering that a throughput test would not.
//! * [`HttpServer`] / [`http_get_loop`]: tiny HTTP/1.0 servers that answer with
//!   their own name, and a loop of N fresh connections that records who answered,
//!   for distribution tests.
//!
//! Every socket has timeouts and every loop a deadline.

use crate::error::{LabError, Result};
use crate::netns::{Netns, Process};
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{IpAddr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::{Duration, Instant};

/// A running `iperf3 -s` in a namespace, killed on drop.
#[derive(Debug)]
pub struct IperfServer {
    process: Process,
    /// Address it is bound to.
    pub addr: IpAddr,
    /// Port it listens on.
    pub port: u16,
    _dir: crate::labdir::LabDir,
}

impl IperfServer {
    /// Start `iperf3 -s -B addr -p port` in `ns` and wait (≤ 10 s) until it listens.
    pub fn start(ns: &Netns, addr: IpAddr, port: u16) -> Result<IperfServer> {
        let dir = crate::labdir::LabDir::new("iperf3")?;
        let (a, p) = (addr.to_string(), port.to_string());
        let process = ns.spawn(
            &["iperf3", "-s", "-B", &a, "-p", &p],
            &dir.join("iperf3-server.log"),
        )?;
        ns.wait_listening(port, false, Duration::from_secs(10))?;
        Ok(IperfServer {
            process,
            addr,
            port,
            _dir: dir,
        })
    }

    /// The server's log.
    pub fn log(&self) -> String {
        self.process.log()
    }
}

/// Result of one iperf3 client run.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct IperfResult {
    /// Sender-side throughput, Gbit/s.
    pub sent_gbps: f64,
    /// Receiver-side throughput, Gbit/s (the number to report).
    pub received_gbps: f64,
    /// TCP retransmissions seen by the sender.
    pub retransmits: u64,
    /// Parallel streams used.
    pub streams: u32,
}

/// Parse iperf3's `-J` output of a TCP test.
pub fn parse_iperf3_json(json: &str) -> Result<IperfResult> {
    let perr = |d: String| LabError::Parse {
        what: "iperf3 JSON".into(),
        detail: d,
    };
    let v: serde_json::Value = serde_json::from_str(json).map_err(|e| perr(e.to_string()))?;
    if let Some(err) = v.get("error").and_then(|e| e.as_str()) {
        return Err(perr(format!("iperf3 reported: {err}")));
    }
    let end = v.get("end").ok_or_else(|| perr("no `end` object".into()))?;
    let bps = |k: &str| -> Result<f64> {
        end.get(k)
            .and_then(|s| s.get("bits_per_second"))
            .and_then(|b| b.as_f64())
            .ok_or_else(|| perr(format!("no end.{k}.bits_per_second")))
    };
    let streams = v
        .get("start")
        .and_then(|s| s.get("test_start"))
        .and_then(|t| t.get("num_streams"))
        .and_then(|n| n.as_u64())
        .and_then(|n| u32::try_from(n).ok())
        .unwrap_or(1);
    Ok(IperfResult {
        sent_gbps: bps("sum_sent")? / 1e9,
        received_gbps: bps("sum_received")? / 1e9,
        retransmits: end
            .get("sum_sent")
            .and_then(|s| s.get("retransmits"))
            .and_then(|r| r.as_u64())
            .unwrap_or(0),
        streams,
    })
}

/// Run `iperf3 -c server -B src -P streams -t secs -J` in `ns` (TCP). The run is
/// bounded by `duration + 20 s`.
pub fn iperf3_client(
    ns: &Netns,
    server: IpAddr,
    port: u16,
    src: Option<IpAddr>,
    streams: u32,
    duration: Duration,
) -> Result<IperfResult> {
    let secs = duration.as_secs().max(1).to_string();
    let (s, p, n) = (
        server.to_string(),
        port.to_string(),
        streams.max(1).to_string(),
    );
    let src_s = src.map(|a| a.to_string());
    let mut argv = vec![
        "iperf3",
        "-c",
        &s,
        "-p",
        &p,
        "-P",
        &n,
        "-t",
        &secs,
        "-J",
        "--connect-timeout",
        "5000",
    ];
    if let Some(b) = &src_s {
        argv.extend_from_slice(&["-B", b]);
    }
    let out = ns.exec_timeout(&argv, duration + Duration::from_secs(20))?;
    // iperf3 -J prints JSON (with an `error` field) even when it fails.
    parse_iperf3_json(&out.stdout).map_err(|e| LabError::Command {
        cmd: argv.join(" "),
        status: out.status.to_string(),
        output: format!("{e}; stderr: {}", out.stderr.trim()),
    })
}

/// Deterministic pseudo-random pattern generator (xorshift64*), so both ends and
/// [`pattern_digest`] agree on the bytes without sharing them.
#[derive(Debug, Clone)]
pub struct Pattern {
    state: u64,
}

impl Pattern {
    /// A generator for `seed` (0 is replaced by a fixed non-zero constant).
    pub fn new(seed: u64) -> Pattern {
        Pattern {
            state: if seed == 0 {
                0x9E37_79B9_7F4A_7C15
            } else {
                seed
            },
        }
    }

    /// Fill `buf` with the next bytes of the pattern.
    pub fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            let mut x = self.state;
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            self.state = x;
            let v = x.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes();
            let n = chunk.len();
            chunk.copy_from_slice(&v[..n]);
        }
    }
}

/// SHA-256 of the first `len` bytes of the pattern for `seed`.
pub fn pattern_digest(seed: u64, len: usize) -> [u8; 32] {
    let mut p = Pattern::new(seed);
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    let mut buf = vec![0u8; 64 * 1024];
    let mut left = len;
    while left > 0 {
        let n = left.min(buf.len());
        // `buf` is 64 KiB and n <= its length.
        let part = &mut buf[..n];
        p.fill(part);
        ctx.update(part);
        left -= n;
    }
    to32(ctx.finish().as_ref())
}

fn to32(d: &[u8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    for (o, i) in out.iter_mut().zip(d) {
        *o = *i;
    }
    out
}

/// What a verified transfer measured.
#[derive(Debug, Clone, PartialEq)]
pub struct TransferReport {
    /// Bytes received and verified.
    pub bytes: usize,
    /// SHA-256 of the data (hex).
    pub sha256: String,
    /// Wall time from connect to the server's digest.
    pub elapsed: Duration,
}

impl TransferReport {
    /// Goodput in Gbit/s.
    pub fn gbps(&self) -> f64 {
        let s = self.elapsed.as_secs_f64();
        if s <= 0.0 {
            0.0
        } else {
            self.bytes as f64 * 8.0 / s / 1e9
        }
    }
}

fn io_err(ctx: &str) -> impl Fn(std::io::Error) -> LabError + '_ {
    move |e| LabError::io(ctx.to_string(), e)
}

fn hex(d: &[u8]) -> String {
    d.iter().map(|b| format!("{b:02x}")).collect()
}

/// Server half: accept one connection before `deadline`, hash everything until
/// EOF, send the 32-byte digest back. Returns (bytes, digest).
fn transfer_server(listener: TcpListener, deadline: Instant) -> Result<(usize, [u8; 32])> {
    listener
        .set_nonblocking(true)
        .map_err(io_err("listener nonblocking"))?;
    let mut conn = loop {
        match listener.accept() {
            Ok((c, _)) => break c,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                if Instant::now() >= deadline {
                    return Err(LabError::Timeout {
                        what: "transfer server waiting for a connection".into(),
                        after: Duration::ZERO,
                    });
                }
                thread::sleep(Duration::from_millis(5));
            }
            Err(e) => return Err(LabError::io("accept", e)),
        }
    };
    conn.set_nonblocking(false)
        .map_err(io_err("conn blocking"))?;
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    let mut buf = vec![0u8; 64 * 1024];
    let mut total = 0usize;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(LabError::Timeout {
                what: format!("transfer server receiving (got {total} bytes)"),
                after: Duration::ZERO,
            });
        }
        conn.set_read_timeout(Some(left))
            .map_err(io_err("read timeout"))?;
        let n = conn
            .read(&mut buf)
            .map_err(io_err("transfer server read"))?;
        if n == 0 {
            break;
        }
        let got = buf.get(..n).unwrap_or_default();
        ctx.update(got);
        total += n;
    }
    let d = to32(ctx.finish().as_ref());
    conn.write_all(&d).map_err(io_err("sending digest"))?;
    Ok((total, d))
}

/// Client half: connect, send `len` pattern bytes, half-close, read the digest.
/// How long a transfer client sends.
#[derive(Debug, Clone)]
enum Until {
    /// Exactly this many bytes.
    Len(usize),
    /// Until the flag is set (checked between 64 KiB writes).
    Stopped(Arc<AtomicBool>),
}

fn transfer_client(
    to: SocketAddr,
    seed: u64,
    until: Until,
    deadline: Instant,
) -> Result<(usize, [u8; 32], [u8; 32])> {
    let left = deadline.saturating_duration_since(Instant::now());
    let mut s = TcpStream::connect_timeout(&to, left.min(Duration::from_secs(10)))
        .map_err(io_err("transfer client connect"))?;
    s.set_write_timeout(Some(left.max(Duration::from_millis(1))))
        .map_err(io_err("write timeout"))?;
    s.set_read_timeout(Some(left.max(Duration::from_millis(1))))
        .map_err(io_err("read timeout"))?;
    let mut p = Pattern::new(seed);
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    let mut buf = vec![0u8; 64 * 1024];
    let mut sent = 0usize;
    loop {
        let n = match &until {
            Until::Len(len) if sent >= *len => break,
            Until::Len(len) => (len - sent).min(buf.len()),
            Until::Stopped(stop) if stop.load(Ordering::Relaxed) => break,
            Until::Stopped(_) => buf.len(),
        };
        let part = &mut buf[..n];
        p.fill(part);
        ctx.update(part);
        s.write_all(part).map_err(io_err("transfer client write"))?;
        sent += n;
    }
    s.shutdown(Shutdown::Write).map_err(io_err("half-close"))?;
    let mut d = [0u8; 32];
    s.read_exact(&mut d)
        .map_err(io_err("reading server digest"))?;
    Ok((sent, to32(ctx.finish().as_ref()), d))
}

/// Send `len` bytes of the pattern for `seed` from a client in `client_ns` to a
/// server listening on `server_addr` in `server_ns`, and verify byte-exactness
/// with SHA-256 at both ends. Everything must finish within `timeout`.
pub fn tcp_transfer(
    server_ns: &Netns,
    server_addr: SocketAddr,
    client_ns: &Netns,
    len: usize,
    seed: u64,
    timeout: Duration,
) -> Result<TransferReport> {
    transfer(
        server_ns,
        server_addr,
        client_ns,
        Until::Len(len),
        seed,
        timeout,
    )
}

/// As [`tcp_transfer`], but the client sends the pattern until `stop` is set
/// (a transfer meant to overlap some work lasts as long as that work, however
/// fast the path is), then half-closes; every byte sent is verified.
pub fn tcp_transfer_until(
    server_ns: &Netns,
    server_addr: SocketAddr,
    client_ns: &Netns,
    stop: Arc<AtomicBool>,
    seed: u64,
    timeout: Duration,
) -> Result<TransferReport> {
    transfer(
        server_ns,
        server_addr,
        client_ns,
        Until::Stopped(stop),
        seed,
        timeout,
    )
}

fn transfer(
    server_ns: &Netns,
    server_addr: SocketAddr,
    client_ns: &Netns,
    until: Until,
    seed: u64,
    timeout: Duration,
) -> Result<TransferReport> {
    let deadline = Instant::now() + timeout;
    let (tx, rx) = mpsc::channel::<Result<TcpListener>>();
    let server = server_ns.spawn_thread(move || -> Result<(usize, [u8; 32])> {
        match TcpListener::bind(server_addr) {
            Ok(l) => {
                let _ = tx.send(Ok(l.try_clone().map_err(io_err("clone listener"))?));
                transfer_server(l, deadline)
            }
            Err(e) => {
                let _ = tx.send(Err(LabError::io(format!("binding {server_addr}"), e)));
                Err(LabError::Verify("server did not bind".into()))
            }
        }
    })?;
    match rx.recv_timeout(Duration::from_secs(10)) {
        Ok(Ok(_listener)) => {}
        Ok(Err(e)) => {
            let _ = server.join();
            return Err(e);
        }
        Err(_) => {
            return Err(LabError::Timeout {
                what: "transfer server bind".into(),
                after: Duration::from_secs(10),
            })
        }
    }
    let t0 = Instant::now();
    let client = client_ns.run_in(move || transfer_client(server_addr, seed, until, deadline))?;
    let srv = server
        .join()
        .map_err(|_| LabError::Verify("transfer server thread panicked".into()))?;
    let elapsed = t0.elapsed();
    let (len, sent_digest, echoed) = client?;
    let (got, server_digest) = srv?;
    let expected = pattern_digest(seed, len);
    if got != len || server_digest != expected || sent_digest != expected || echoed != expected {
        return Err(LabError::Verify(format!(
            "transfer of {len} bytes to {server_addr}: server got {got} bytes, sha256 {} (expected {})",
            hex(&server_digest),
            hex(&expected)
        )));
    }
    Ok(TransferReport {
        bytes: got,
        sha256: hex(&expected),
        elapsed,
    })
}

/// A tiny HTTP/1.0 server on a thread inside a namespace that answers every
/// request with its `name` as body. Stopped on drop.
#[derive(Debug)]
pub struct HttpServer {
    stop: Arc<AtomicBool>,
    handle: Option<thread::JoinHandle<u64>>,
    /// Bound address.
    pub addr: SocketAddr,
    /// The name it answers with.
    pub name: String,
}

fn serve_one(mut c: TcpStream, body: &str) -> std::io::Result<()> {
    c.set_nonblocking(false)?;
    c.set_read_timeout(Some(Duration::from_secs(2)))?;
    c.set_write_timeout(Some(Duration::from_secs(2)))?;
    let mut req = Vec::new();
    let mut buf = [0u8; 1024];
    while !req.windows(4).any(|w| w == b"\r\n\r\n") && req.len() < 16 * 1024 {
        let n = c.read(&mut buf)?;
        if n == 0 {
            break;
        }
        req.extend_from_slice(buf.get(..n).unwrap_or_default());
    }
    let resp = format!(
        "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    c.write_all(resp.as_bytes())?;
    c.shutdown(Shutdown::Write)
}

impl HttpServer {
    /// Bind `addr` in `ns` and serve until dropped.
    pub fn start(ns: &Netns, addr: SocketAddr, name: &str) -> Result<HttpServer> {
        let stop = Arc::new(AtomicBool::new(false));
        let (tx, rx) = mpsc::channel::<Result<()>>();
        let (stop2, body) = (stop.clone(), name.to_string());
        let handle = ns.spawn_thread(move || {
            let l = match TcpListener::bind(addr).and_then(|l| l.set_nonblocking(true).map(|_| l)) {
                Ok(l) => l,
                Err(e) => {
                    let _ = tx.send(Err(LabError::io(format!("HTTP server binding {addr}"), e)));
                    return 0;
                }
            };
            let _ = tx.send(Ok(()));
            let mut served = 0u64;
            while !stop2.load(Ordering::Relaxed) {
                match l.accept() {
                    Ok((c, _)) => {
                        if serve_one(c, &body).is_ok() {
                            served += 1;
                        }
                    }
                    Err(_) => thread::sleep(Duration::from_millis(5)),
                }
            }
            served
        })?;
        match rx.recv_timeout(Duration::from_secs(10)) {
            Ok(Ok(())) => Ok(HttpServer {
                stop,
                handle: Some(handle),
                addr,
                name: name.to_string(),
            }),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(LabError::Timeout {
                what: format!("HTTP server bind {addr}"),
                after: Duration::from_secs(10),
            }),
        }
    }

    /// Stop and return how many requests it answered.
    pub fn stop(mut self) -> u64 {
        self.halt()
    }

    fn halt(&mut self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        self.handle.take().and_then(|h| h.join().ok()).unwrap_or(0)
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        self.halt();
    }
}

/// One `GET /` over a fresh connection; returns the response body.
pub fn http_get(to: SocketAddr, timeout: Duration) -> std::io::Result<String> {
    let mut s = TcpStream::connect_timeout(&to, timeout)?;
    s.set_read_timeout(Some(timeout))?;
    s.set_write_timeout(Some(timeout))?;
    s.write_all(format!("GET / HTTP/1.0\r\nHost: {to}\r\n\r\n").as_bytes())?;
    let mut resp = Vec::new();
    s.read_to_end(&mut resp)?;
    let text = String::from_utf8_lossy(&resp);
    match text.split_once("\r\n\r\n") {
        Some((head, body)) if head.starts_with("HTTP/1.") => Ok(body.to_string()),
        _ => Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!(
                "not an HTTP response: {:?}",
                text.chars().take(80).collect::<String>()
            ),
        )),
    }
}

/// `n` requests from `ns` to `to`, each on a new connection (so each is a new
/// flow for a distributor). Returns per-request the body (the server's name) or the
/// error text. Each request is bounded by `each`.
pub fn http_get_loop(
    ns: &Netns,
    to: SocketAddr,
    n: usize,
    each: Duration,
) -> Result<Vec<Result<String, String>>> {
    ns.run_in(move || {
        (0..n)
            .map(|_| http_get(to, each).map_err(|e| e.to_string()))
            .collect()
    })
}

/// How many answers came from each server (errors counted under `"<error>"`).
pub fn count_by_server(answers: &[Result<String, String>]) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for a in answers {
        let k = match a {
            Ok(s) => s.clone(),
            Err(_) => "<error>".to_string(),
        };
        *m.entry(k).or_insert(0) += 1;
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pattern_is_deterministic_and_seed_dependent() {
        let mut a = [0u8; 37];
        let mut b = [0u8; 37];
        Pattern::new(7).fill(&mut a);
        Pattern::new(7).fill(&mut b);
        assert_eq!(a, b);
        Pattern::new(8).fill(&mut b);
        assert_ne!(a, b);
    }

    #[test]
    fn pattern_digest_matches_one_shot_sha256() {
        // The digest is computed in 64 KiB chunks; it must equal a one-shot hash
        // of the same bytes, also across a chunk boundary.
        let len = 64 * 1024 + 13;
        let mut all = vec![0u8; len];
        let mut p = Pattern::new(42);
        p.fill(&mut all[..64 * 1024]);
        p.fill(&mut all[64 * 1024..]);
        let one = ring::digest::digest(&ring::digest::SHA256, &all);
        assert_eq!(pattern_digest(42, len).as_slice(), one.as_ref());
    }

    #[test]
    fn empty_pattern_is_sha256_of_nothing() {
        // FIPS 180-2 / well-known SHA-256("").
        assert_eq!(
            hex(&pattern_digest(1, 0)),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    /// Real output of `iperf3 -c 127.0.0.1 -t 1 -P 2 -J` (iperf 3.12) in a lab
    /// namespace on this machine.
    const IPERF_JSON: &str = include_str!("testdata/iperf3_loopback_p2.json");

    #[test]
    fn parses_iperf3_json() {
        let r = parse_iperf3_json(IPERF_JSON).unwrap();
        assert_eq!(r.streams, 2);
        assert_eq!(r.retransmits, 3);
        assert!((r.sent_gbps - 12.100641859).abs() < 1e-6, "{r:?}");
        assert!((r.received_gbps - 12.046752321).abs() < 1e-6, "{r:?}");
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_text_never_panics(s in "\\PC*") {
            let _ = parse_iperf3_json(&s);
        }

        #[test]
        fn truncated_real_json_never_panics(n in 0usize..4000) {
            let cut: String = IPERF_JSON.chars().take(n).collect();
            let _ = parse_iperf3_json(&cut);
        }
    }

    #[test]
    fn iperf3_error_json_is_reported() {
        let e = parse_iperf3_json(r#"{"start":{},"end":{},"error":"unable to connect to server"}"#)
            .unwrap_err()
            .to_string();
        assert!(e.contains("unable to connect"), "{e}");
        assert!(parse_iperf3_json("not json").is_err());
        assert!(parse_iperf3_json("{}").is_err());
    }

    #[test]
    fn count_by_server_counts() {
        let a = vec![
            Ok("t1".to_string()),
            Ok("t2".into()),
            Ok("t1".into()),
            Err("x".into()),
        ];
        let m = count_by_server(&a);
        assert_eq!(m.get("t1"), Some(&2));
        assert_eq!(m.get("t2"), Some(&1));
        assert_eq!(m.get("<error>"), Some(&1));
    }
}
