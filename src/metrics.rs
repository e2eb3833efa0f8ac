//! A Prometheus text-format endpoint (`GET /metrics`), served by a small blocking HTTP
//! responder on its own thread: nothing on the data path waits for it.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::time::Duration;

/// Renders the current metrics as Prometheus text exposition format.
pub type Render = Arc<dyn Fn() -> String + Send + Sync>;

/// Serve `/metrics` on `addr`; returns the bound address.
pub fn serve(addr: SocketAddr, render: Render) -> io::Result<SocketAddr> {
    let l = TcpListener::bind(addr)?;
    let bound = l.local_addr()?;
    std::thread::Builder::new().name("metrics".into()).spawn(move || {
        for c in l.incoming() {
            let Ok(mut c) = c else { continue };
            let _ = c.set_read_timeout(Some(Duration::from_secs(5)));
            let mut req = [0u8; 1024];
            let n = c.read(&mut req).unwrap_or(0);
            let head = String::from_utf8_lossy(&req[..n]);
            let (status, body) = if head.starts_with("GET /metrics") {
                ("200 OK", render())
            } else {
                ("404 Not Found", "try /metrics\n".to_string())
            };
            let _ = write!(
                c,
                "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    })?;
    Ok(bound)
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
                .map(|(k, v)| format!("{k}=\"{}\"", v.replace('\\', "\\\\").replace('"', "\\\"")))
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

    #[test]
    fn serves_metrics_over_http() {
        let r: Render = Arc::new(|| {
            let mut e = Exposition::default();
            e.family("plexgate_test_total", "counter", "a test").sample(
                "plexgate_test_total",
                &[("reason", "spoof".into())],
                7,
            );
            e.finish()
        });
        let a = serve("127.0.0.1:0".parse().unwrap(), r).unwrap();
        let mut c = std::net::TcpStream::connect(a).unwrap();
        c.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        let mut s = String::new();
        c.read_to_string(&mut s).unwrap();
        assert!(s.starts_with("HTTP/1.1 200 OK"), "{s}");
        assert!(s.contains("plexgate_test_total{reason=\"spoof\"} 7"), "{s}");
    }
}
