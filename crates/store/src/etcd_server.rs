//! A throwaway single-node etcd for tests, benchmarks and the demo: loopback only,
//! free ports picked at random, data in a temporary directory, killed and removed on
//! drop. It can be stopped and started again on the same ports and data (a store
//! outage). A missing `etcd` binary is an error that says how to install it — tests
//! that need etcd fail loudly rather than pass without it.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long etcd may take to answer its health check after starting.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// Why a throwaway etcd could not start.
#[derive(Debug, thiserror::Error)]
pub enum EtcdServerError {
    /// No `etcd` binary.
    #[error("etcd is not installed (`{0}` not found): run scripts/setup.sh or apt-get install etcd-server")]
    Missing(String),
    /// It did not become healthy in time.
    #[error("etcd did not become healthy within {timeout:?}; its log:\n{log}")]
    NotReady {
        /// How long we waited.
        timeout: Duration,
        /// The tail of its log.
        log: String,
    },
    /// Files, ports, processes.
    #[error("etcd: {0}")]
    Io(#[from] std::io::Error),
}

/// A running (or stopped) throwaway etcd.
#[derive(Debug)]
pub struct EtcdServer {
    child: Option<Child>,
    dir: PathBuf,
    client_port: u16,
    peer_port: u16,
    binary: String,
}

fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?
        .local_addr()?
        .port())
}

impl EtcdServer {
    /// Start one (`etcd` from `$PLEXGATE_ETCD` or the `PATH`).
    pub fn start() -> Result<EtcdServer, EtcdServerError> {
        let binary = std::env::var("PLEXGATE_ETCD").unwrap_or_else(|_| "etcd".into());
        if Command::new(&binary)
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_err()
        {
            return Err(EtcdServerError::Missing(binary));
        }
        let mut last = None;
        // Another process may grab a port between our probe and etcd's bind: retry.
        for attempt in 0..3 {
            let dir = std::env::temp_dir().join(format!(
                "plexgate-etcd-{}-{}-{attempt}",
                std::process::id(),
                free_port()?
            ));
            std::fs::create_dir_all(&dir)?;
            let mut s = EtcdServer {
                child: None,
                dir,
                client_port: free_port()?,
                peer_port: free_port()?,
                binary: binary.clone(),
            };
            match s.restart() {
                Ok(()) => return Ok(s),
                Err(e) => last = Some(e),
            }
        }
        Err(last
            .unwrap_or_else(|| EtcdServerError::Io(std::io::Error::other("etcd did not start"))))
    }

    /// The client URL (`http://127.0.0.1:PORT`).
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.client_port)
    }

    /// The data directory.
    pub fn data_dir(&self) -> &Path {
        &self.dir
    }

    /// The etcd process id while it runs (to read its CPU time).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// Whether it is running.
    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// Kill it (SIGKILL: an abrupt outage); data and ports are kept for a restart.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Start it (again) on the same ports and data, and wait until it is healthy.
    pub fn restart(&mut self) -> Result<(), EtcdServerError> {
        self.stop();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("etcd.log"))?;
        let client = self.endpoint();
        let peer = format!("http://127.0.0.1:{}", self.peer_port);
        let child = Command::new(&self.binary)
            .args(["--name", "plx", "--data-dir"])
            .arg(self.dir.join("data"))
            .args([
                "--listen-client-urls",
                &client,
                "--advertise-client-urls",
                &client,
            ])
            .args([
                "--listen-peer-urls",
                &peer,
                "--initial-advertise-peer-urls",
                &peer,
            ])
            .args(["--initial-cluster", &format!("plx={peer}")])
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()?;
        self.child = Some(child);
        self.wait_ready()
    }

    fn wait_ready(&mut self) -> Result<(), EtcdServerError> {
        let deadline = Instant::now() + READY_TIMEOUT;
        while Instant::now() < deadline {
            if let Some(c) = self.child.as_mut() {
                if let Ok(Some(_)) = c.try_wait() {
                    break; // exited (port taken, bad flags): report its log
                }
            }
            if self.healthy() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let log = std::fs::read_to_string(self.dir.join("etcd.log")).unwrap_or_default();
        let tail: String = log
            .lines()
            .rev()
            .take(20)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect::<Vec<_>>()
            .join("\n");
        self.stop();
        Err(EtcdServerError::NotReady {
            timeout: READY_TIMEOUT,
            log: tail,
        })
    }

    /// GET /health answers `"health":"true"`.
    fn healthy(&self) -> bool {
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, self.client_port));
        let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_millis(200)) else {
            return false;
        };
        let _ = s.set_read_timeout(Some(Duration::from_secs(1)));
        if s.write_all(b"GET /health HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
            .is_err()
        {
            return false;
        }
        let mut body = String::new();
        let _ = s.read_to_string(&mut body);
        body.contains("\"health\":\"true\"")
    }
}

impl Drop for EtcdServer {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
