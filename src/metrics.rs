//! A Prometheus text-format endpoint (`GET /metrics`), served by a small blocking HTTP
//! responder on its own threads: nothing on the data path waits for it.
//!
//! Each connection is served on a thread of its own, at most
//! [`Limits::max_connections`] at once (more are answered `503` at once), and a
//! client must send its request head within [`Limits::header_timeout`]: a scrape
//! never waits behind idle connections (#15: four idle connections used to delay
//! one by 20 s, one connection at a time with 5 s read timeouts).

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Renders the current metrics as Prometheus text exposition format.
pub type Render = Arc<dyn Fn() -> String + Send + Sync>;

/// The longest request head read (a scrape's is a few hundred bytes).
const MAX_HEAD: usize = 8 * 1024;

/// How the endpoint bounds its clients.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Connections served at once (default 16); more get `503` and are closed.
    pub max_connections: usize,
    /// Time a client has to send its whole request head (default 2 s).
    pub header_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 16,
            header_timeout: Duration::from_secs(2),
        }
    }
}

/// Serve `/metrics` on `addr` with the default [`Limits`]; returns the bound
/// address.
pub fn serve(addr: SocketAddr, render: Render) -> io::Result<SocketAddr> {
    serve_with(addr, render, Limits::default())
}

/// Serve `/metrics` on `addr`; returns the bound address.
pub fn serve_with(addr: SocketAddr, render: Render, limits: Limits) -> io::Result<SocketAddr> {
    let l = TcpListener::bind(addr)?;
    let bound = l.local_addr()?;
    std::thread::Builder::new()
        .name("metrics".into())
        .spawn(move || accept_loop(l, render, limits))?;
    Ok(bound)
}

/// One of the connection places; given back when dropped, even if rendering
/// panics.
struct Slot(Arc<AtomicUsize>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

fn accept_loop(l: TcpListener, render: Render, limits: Limits) {
    let active = Arc::new(AtomicUsize::new(0));
    for c in l.incoming() {
        let Ok(mut c) = c else {
            // Out of descriptors, say: do not spin.
            std::thread::sleep(Duration::from_millis(10));
            continue;
        };
        let _ = c.set_write_timeout(Some(Duration::from_secs(5)));
        let slot = Slot(active.clone());
        if active.fetch_add(1, Ordering::SeqCst) >= limits.max_connections {
            drop(slot);
            let _ = respond(&mut c, "503 Service Unavailable", "too many connections\n");
            continue;
        }
        let render = render.clone();
        let spawned = std::thread::Builder::new()
            .name("metrics-conn".into())
            .spawn(move || {
                let _slot = slot;
                let _ = serve_one(c, &render, limits.header_timeout);
            });
        if spawned.is_err() {
            tracing::warn!("metrics: cannot start a connection thread");
        }
    }
}

fn serve_one(mut c: TcpStream, render: &Render, timeout: Duration) -> io::Result<()> {
    let Some(head) = read_head(&mut c, timeout)? else {
        return Ok(());
    };
    let request_line = head.split(|b| *b == b'\n').next().unwrap_or_default();
    let target = request_line
        .split(|b| *b == b' ')
        .nth(1)
        .unwrap_or_default();
    if request_line.starts_with(b"GET ")
        && (target == b"/metrics" || target.starts_with(b"/metrics?"))
    {
        respond(&mut c, "200 OK", &render())
    } else {
        respond(&mut c, "404 Not Found", "try /metrics\n")
    }
}

/// The request head (up to the blank line), or `None` if the client closed,
/// sent more than [`MAX_HEAD`] bytes, or took longer than `timeout` in all.
fn read_head(c: &mut TcpStream, timeout: Duration) -> io::Result<Option<Vec<u8>>> {
    let deadline = Instant::now() + timeout;
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && !head.windows(2).any(|w| w == b"\n\n") {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || head.len() > MAX_HEAD {
            return Ok(None);
        }
        c.set_read_timeout(Some(left))?;
        match c.read(&mut buf) {
            Ok(0) => return Ok(None),
            Ok(n) => head.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                return Ok(None)
            }
            Err(e) => return Err(e),
        }
    }
    Ok(Some(head))
}

fn respond(c: &mut TcpStream, status: &str, body: &str) -> io::Result<()> {
    write!(
        c,
        "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}

/// Helper that writes one metric family.
#[derive(Default)]
pub struct Exposition {
    out: String,
}

impl Exposition {
    /// Start a family with its help text and type (`counter` or `gauge`).
    pub fn family(&mut self, name: &str, kind: &str, help: &str) -> &mut Self {
        self.out
            .push_str(&format!("# HELP {name} {help}\n# TYPE {name} {kind}\n"));
        self
    }

    /// One sample with labels.
    pub fn sample(&mut self, name: &str, labels: &[(&str, String)], value: u64) -> &mut Self {
        if labels.is_empty() {
            self.out.push_str(&format!("{name} {value}\n"));
        } else {
            let l: Vec<String> = labels
                .iter()
                .map(|(k, v)| {
                    let v = v
                        .replace('\\', "\\\\")
                        .replace('"', "\\\"")
                        .replace('\n', "\\n");
                    format!("{k}=\"{v}\"")
                })
                .collect();
            self.out
                .push_str(&format!("{name}{{{}}} {value}\n", l.join(",")));
        }
        self
    }

    /// The text.
    pub fn finish(self) -> String {
        self.out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render() -> Render {
        Arc::new(|| {
            let mut e = Exposition::default();
            e.family("plexgate_test_total", "counter", "a test").sample(
                "plexgate_test_total",
                &[("reason", "spoof\n\"x\"".into())],
                7,
            );
            e.finish()
        })
    }

    fn try_scrape(a: SocketAddr, path: &str) -> io::Result<String> {
        let mut c = TcpStream::connect(a)?;
        c.set_read_timeout(Some(Duration::from_secs(60)))?;
        write!(c, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n")?;
        let mut s = String::new();
        c.read_to_string(&mut s)?;
        Ok(s)
    }

    fn scrape(a: SocketAddr, path: &str) -> String {
        try_scrape(a, path).unwrap()
    }

    #[test]
    fn serves_metrics_over_http() {
        let a = serve("127.0.0.1:0".parse().unwrap(), render()).unwrap();
        let s = scrape(a, "/metrics");
        assert!(s.starts_with("HTTP/1.1 200 OK"), "{s}");
        // Label values escape backslash, quote and newline (exposition format).
        assert!(
            s.contains("plexgate_test_total{reason=\"spoof\\n\\\"x\\\"\"} 7"),
            "{s}"
        );
        assert!(scrape(a, "/other").starts_with("HTTP/1.1 404"));
    }

    /// True if the server has not closed `c` (a read would block).
    fn still_open(c: &mut TcpStream) -> bool {
        c.set_nonblocking(true).unwrap();
        let mut b = [0u8; 1];
        let open = matches!(c.read(&mut b), Err(e) if e.kind() == io::ErrorKind::WouldBlock);
        c.set_nonblocking(false).unwrap();
        open
    }

    #[test]
    fn a_scrape_does_not_wait_behind_idle_connections() {
        // Idle clients may hold their connection for 30 s here: a server that
        // served one connection at a time could only answer the scrape after
        // closing them, so the scrape finishing while they are all still open
        // shows it was served concurrently.
        let limits = Limits {
            max_connections: 16,
            header_timeout: Duration::from_secs(30),
        };
        let a = serve_with("127.0.0.1:0".parse().unwrap(), render(), limits).unwrap();
        let mut idle: Vec<TcpStream> = (0..8).map(|_| TcpStream::connect(a).unwrap()).collect();
        // Half of them even started a request and stalled.
        for c in idle.iter_mut().step_by(2) {
            c.write_all(b"GET /metr").unwrap();
        }
        let start = Instant::now();
        let s = scrape(a, "/metrics");
        let took = start.elapsed();
        println!("scrape behind 8 idle connections: {took:?}");
        assert!(s.starts_with("HTTP/1.1 200 OK"), "{s}");
        assert!(
            idle.iter_mut().all(still_open),
            "idle connections were closed first"
        );
        assert!(took < Duration::from_secs(10), "took {took:?}");
    }

    #[test]
    fn excess_connections_get_503_and_idle_ones_time_out() {
        let limits = Limits {
            max_connections: 4,
            header_timeout: Duration::from_millis(300),
        };
        let a = serve_with("127.0.0.1:0".parse().unwrap(), render(), limits).unwrap();
        let mut idle: Vec<TcpStream> = (0..4).map(|_| TcpStream::connect(a).unwrap()).collect();
        // Until the server holds all four, a scrape may still get through.
        let mut turned_away = false;
        for _ in 0..100 {
            // The 503 is written without reading the request, so the close
            // that follows may reset the connection before the client reads it.
            match try_scrape(a, "/metrics") {
                Ok(s) if s.starts_with("HTTP/1.1 200") => continue,
                Ok(s) => assert!(s.is_empty() || s.starts_with("HTTP/1.1 503"), "{s}"),
                Err(e) => assert_eq!(e.kind(), io::ErrorKind::ConnectionReset),
            }
            turned_away = true;
            break;
        }
        assert!(turned_away, "a fifth connection was served");
        // The idle ones are closed after the header timeout, freeing the slots.
        for c in &mut idle {
            c.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
            let mut b = Vec::new();
            assert_eq!(c.read_to_end(&mut b).unwrap(), 0);
        }
        let deadline = Instant::now() + Duration::from_secs(60);
        while !try_scrape(a, "/metrics").is_ok_and(|s| s.starts_with("HTTP/1.1 200")) {
            assert!(Instant::now() < deadline, "slots never freed");
        }
    }

    #[test]
    fn an_endless_head_is_cut_off() {
        let a = serve("127.0.0.1:0".parse().unwrap(), render()).unwrap();
        let mut c = TcpStream::connect(a).unwrap();
        let junk = vec![b'a'; 64 * 1024];
        let _ = c.write_all(&junk);
        c.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
        let mut b = Vec::new();
        // Closed without an answer (or reset, since we sent more than it read).
        let _ = c.read_to_end(&mut b);
        assert!(b.is_empty(), "{}", String::from_utf8_lossy(&b));
        assert!(scrape(a, "/metrics").starts_with("HTTP/1.1 200"));
    }
}
