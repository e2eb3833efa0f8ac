//! The control socket: a Unix stream socket where `plexgate status` and
//! `plexgate initiate` talk to a running daemon. One JSON request per line, one JSON
//! answer per line — easy to script (`socat - UNIX:/run/plexgate/ctl.sock`).
//!
//! Hardened for a careless or hostile local client (#15): a request line is at most
//! [`MAX_LINE`] bytes (a longer one gets an error and the connection is closed,
//! instead of growing memory without bound); at most [`MAX_CONNECTIONS`] connections
//! are served at once, each closed after [`IDLE_TIMEOUT`] without a complete
//! request; a second daemon refuses a socket path another one is serving ("another
//! plexgate is running on …") and only a stale socket file is removed; the socket
//! file is removed by [`CtlServer::shutdown`] or [`shutdown_all`], which the daemon
//! calls on SIGTERM/SIGINT through [`on_termination`]. Answers never carry integers
//! above 2^53 (JSON readers hold numbers as doubles): larger ones become strings.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use serde_json::Value;

mod signals;

pub use signals::on_termination;

/// Default path of the control socket.
pub const DEFAULT_SOCKET: &str = "/run/plexgate/ctl.sock";

/// The longest request line accepted, in bytes (without its newline).
pub const MAX_LINE: usize = 64 * 1024;

/// Connections served at once; more are answered with an error and closed.
pub const MAX_CONNECTIONS: usize = 16;

/// A connection that has not completed a request for this long is closed.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(10);

/// The largest integer a JSON reader that holds numbers as doubles reads exactly.
pub const MAX_SAFE_INTEGER: u64 = (1 << 53) - 1;

/// What a daemon answers a request with.
pub type Handler = Arc<dyn Fn(&Value) -> Value + Send + Sync>;

/// Why the control socket could not be served.
#[derive(Debug, thiserror::Error)]
pub enum CtlError {
    /// A daemon answers on the path already.
    #[error("another plexgate is running on {0} (it accepted a connection); stop it or choose another --ctl path")]
    InUse(PathBuf),
    /// The path exists and is not a socket: not ours to remove.
    #[error("{0} exists and is not a socket; remove it or choose another --ctl path")]
    NotASocket(PathBuf),
    /// Creating, binding or protecting the socket failed.
    #[error("control socket {path}: {err}")]
    Io {
        /// The socket path.
        path: PathBuf,
        /// What failed.
        err: io::Error,
    },
}

/// A control socket being served. Dropping it leaves the socket served (like a
/// detached thread); [`CtlServer::shutdown`] stops it and removes the file.
#[derive(Debug, Clone)]
pub struct CtlServer {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    path: PathBuf,
    /// Device and inode of the socket file we bound: we remove only that file,
    /// never one another daemon bound at the same path since.
    file: (u64, u64),
    stopped: AtomicBool,
}

fn identity(path: &Path) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    std::fs::symlink_metadata(path)
        .ok()
        .map(|m| (m.dev(), m.ino()))
}

impl Inner {
    /// Stops accepting and removes the socket file (once).
    fn stop(&self) {
        if !self.stopped.swap(true, Ordering::SeqCst) {
            // Wake the accept loop so that it sees `stopped` and returns.
            let _ = UnixStream::connect(&self.path);
            if identity(&self.path) == Some(self.file) {
                let _ = std::fs::remove_file(&self.path);
            }
        }
    }
}

/// Every server of this process, for [`shutdown_all`].
static SERVERS: Mutex<Vec<Weak<Inner>>> = Mutex::new(Vec::new());

impl CtlServer {
    /// The socket path.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Stops accepting connections and removes the socket file. Connections in
    /// progress finish their current request.
    pub fn shutdown(&self) {
        self.inner.stop();
    }
}

/// Stops every control socket this process serves and removes their files: what
/// the daemon does on SIGTERM/SIGINT (see [`on_termination`]).
pub fn shutdown_all() {
    let servers = SERVERS.lock().unwrap_or_else(|e| e.into_inner());
    for s in servers.iter().filter_map(Weak::upgrade) {
        s.stop();
    }
}

/// Serve the control socket at `path` on a background thread (one more thread per
/// connection, at most [`MAX_CONNECTIONS`]). Refuses a path where another daemon
/// answers; removes a stale socket file (one nobody answers on).
pub fn serve(path: &Path, handler: Handler) -> Result<CtlServer, CtlError> {
    let io_err = |err| CtlError::Io {
        path: path.to_path_buf(),
        err,
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io_err)?;
    }
    remove_if_stale(path)?;
    let listener = UnixListener::bind(path).map_err(io_err)?;
    // Whoever can connect can initiate and delete SAs: owner only.
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(io_err)?;
    }
    let inner = Arc::new(Inner {
        path: path.to_path_buf(),
        file: identity(path).unwrap_or_default(),
        stopped: AtomicBool::new(false),
    });
    {
        let mut all = SERVERS.lock().unwrap_or_else(|e| e.into_inner());
        all.retain(|w| w.strong_count() > 0);
        all.push(Arc::downgrade(&inner));
    }
    let server = CtlServer {
        inner: inner.clone(),
    };
    std::thread::Builder::new()
        .name("ctl".into())
        .spawn(move || accept_loop(listener, handler, inner))
        .map_err(io_err)?;
    Ok(server)
}

/// Connect first: a daemon that answers keeps its socket; a socket file nobody
/// answers on is stale and is removed; anything else is left alone.
fn remove_if_stale(path: &Path) -> Result<(), CtlError> {
    use std::os::unix::fs::FileTypeExt;
    let meta = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(err) => {
            return Err(CtlError::Io {
                path: path.to_path_buf(),
                err,
            })
        }
    };
    if !meta.file_type().is_socket() {
        return Err(CtlError::NotASocket(path.to_path_buf()));
    }
    match UnixStream::connect(path) {
        Ok(_) => Err(CtlError::InUse(path.to_path_buf())),
        Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => std::fs::remove_file(path)
            .map_err(|err| CtlError::Io {
                path: path.to_path_buf(),
                err,
            }),
        Err(err) => Err(CtlError::Io {
            path: path.to_path_buf(),
            err,
        }),
    }
}

/// One of the [`MAX_CONNECTIONS`] places; given back when dropped, even if the
/// handler panics.
struct Slot(Arc<AtomicUsize>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

fn accept_loop(listener: UnixListener, handler: Handler, inner: Arc<Inner>) {
    let active = Arc::new(AtomicUsize::new(0));
    for conn in listener.incoming() {
        if inner.stopped.load(Ordering::SeqCst) {
            break;
        }
        let Ok(mut conn) = conn else {
            // Out of descriptors, say: do not spin.
            std::thread::sleep(Duration::from_millis(10));
            continue;
        };
        let slot = Slot(active.clone());
        if active.fetch_add(1, Ordering::SeqCst) >= MAX_CONNECTIONS {
            drop(slot);
            let _ = conn.set_write_timeout(Some(Duration::from_secs(1)));
            let _ = writeln!(
                conn,
                "{}",
                error(&format!(
                    "too many control connections (at most {MAX_CONNECTIONS}); try again"
                ))
            );
            continue;
        }
        let h = handler.clone();
        let spawned = std::thread::Builder::new()
            .name("ctl-conn".into())
            .spawn(move || {
                let _slot = slot;
                let _ = serve_one(conn, &h);
            });
        if spawned.is_err() {
            tracing::warn!("control socket: cannot start a connection thread");
        }
    }
}

fn error(msg: &str) -> Value {
    serde_json::json!({ "error": msg })
}

/// One connection: requests until EOF, an error, an idle timeout or an
/// oversized line.
fn serve_one(conn: UnixStream, h: &Handler) -> io::Result<()> {
    conn.set_write_timeout(Some(IDLE_TIMEOUT))?;
    let mut w = conn.try_clone()?;
    let mut r = BufReader::new(conn);
    loop {
        let line = match read_line(&mut r, IDLE_TIMEOUT)? {
            Line::Eof => return Ok(()),
            Line::TooLong => {
                let msg = format!("request longer than {MAX_LINE} bytes; closing the connection");
                writeln!(w, "{}", error(&msg))?;
                return Ok(());
            }
            Line::Idle => return Ok(()),
            Line::Text(l) => l,
        };
        let mut answer = match serde_json::from_slice::<Value>(&line) {
            Ok(req) => h(&req),
            Err(e) => error(&format!("bad request: {e}")),
        };
        safe_integers(&mut answer);
        writeln!(w, "{answer}")?;
    }
}

/// What reading one request line gave.
#[derive(Debug, PartialEq)]
enum Line {
    /// A complete line, without its newline.
    Text(Vec<u8>),
    /// The peer closed the connection (a final unterminated line is dropped).
    Eof,
    /// More than [`MAX_LINE`] bytes without a newline.
    TooLong,
    /// No complete line within the deadline.
    Idle,
}

/// Reads one line of at most [`MAX_LINE`] bytes, within `limit` in all (a client
/// that trickles a byte at a time does not reset the clock).
fn read_line<R: ReadTimeout>(r: &mut BufReader<R>, limit: Duration) -> io::Result<Line> {
    let deadline = Instant::now() + limit;
    let mut line = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(Line::Idle);
        }
        r.get_ref().set_timeout(left)?;
        let chunk = match r.fill_buf() {
            Ok(c) => c,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                return Ok(Line::Idle)
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if chunk.is_empty() {
            return Ok(Line::Eof);
        }
        let (take, done) = match chunk.iter().position(|b| *b == b'\n') {
            Some(i) => (i, true),
            None => (chunk.len(), false),
        };
        if line.len() + take > MAX_LINE {
            return Ok(Line::TooLong);
        }
        line.extend_from_slice(&chunk[..take]);
        r.consume(take + usize::from(done));
        if done {
            return Ok(Line::Text(line));
        }
    }
}

/// A stream whose reads can be bounded in time.
trait ReadTimeout: Read {
    fn set_timeout(&self, t: Duration) -> io::Result<()>;
}

impl ReadTimeout for UnixStream {
    fn set_timeout(&self, t: Duration) -> io::Result<()> {
        self.set_read_timeout(Some(t))
    }
}

/// Integers a double cannot hold exactly (above 2^53 - 1, or below its negative)
/// become strings, everywhere in `v`.
pub fn safe_integers(v: &mut Value) {
    match v {
        Value::Number(n) => {
            let big = n.as_u64().is_some_and(|u| u > MAX_SAFE_INTEGER)
                || n.as_i64()
                    .is_some_and(|i| i.unsigned_abs() > MAX_SAFE_INTEGER);
            if big {
                *v = Value::String(n.to_string());
            }
        }
        Value::Array(a) => a.iter_mut().for_each(safe_integers),
        Value::Object(o) => o.values_mut().for_each(safe_integers),
        _ => {}
    }
}

/// Send one request to the daemon and return its answer.
pub fn request(path: &Path, req: &Value) -> io::Result<Value> {
    let mut s = UnixStream::connect(path).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!(
                "cannot reach the daemon at {}: {e} (is `plexgate run` running?)",
                path.display()
            ),
        )
    })?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    writeln!(s, "{req}")?;
    let mut line = String::new();
    BufReader::new(s).read_line(&mut line)?;
    serde_json::from_str(&line).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

#[cfg(test)]
mod tests;
