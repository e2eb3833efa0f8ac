//! The control socket: a Unix stream socket where `plexgate status` and
//! `plexgate initiate` talk to a running daemon. One JSON request per line, one JSON
//! answer per line — easy to script (`socat - UNIX:/run/plexgate/ctl.sock`).

use std::io::{self, BufRead, BufReader, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

/// Default path of the control socket.
pub const DEFAULT_SOCKET: &str = "/run/plexgate/ctl.sock";

/// What a daemon answers a request with.
pub type Handler = Arc<dyn Fn(&Value) -> Value + Send + Sync>;

/// Serve the control socket at `path` on a background thread.
pub fn serve(path: &Path, handler: Handler) -> io::Result<std::thread::JoinHandle<()>> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let _ = std::fs::remove_file(path);
    let listener = UnixListener::bind(path)?;
    // Whoever can connect can initiate and delete SAs: owner only.
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    }
    let path: PathBuf = path.to_path_buf();
    std::thread::Builder::new()
        .name("ctl".into())
        .spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { continue };
                let h = handler.clone();
                let _ = std::thread::Builder::new()
                    .name("ctl-conn".into())
                    .spawn(move || {
                        let _ = serve_one(conn, &h);
                    });
            }
            let _ = std::fs::remove_file(&path);
        })
}

fn serve_one(conn: UnixStream, h: &Handler) -> io::Result<()> {
    conn.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut w = conn.try_clone()?;
    for line in BufReader::new(conn).lines() {
        let line = line?;
        let answer = match serde_json::from_str::<Value>(&line) {
            Ok(req) => h(&req),
            Err(e) => serde_json::json!({"error": format!("bad request: {e}")}),
        };
        writeln!(w, "{answer}")?;
    }
    Ok(())
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
mod tests {
    use super::*;

    #[test]
    fn request_answer_round_trip() {
        let dir = std::env::temp_dir().join(format!("pg-ctl-{}", std::process::id()));
        let sock = dir.join("ctl.sock");
        let h: Handler = Arc::new(|req: &Value| serde_json::json!({"echo": req["cmd"]}));
        serve(&sock, h).unwrap();
        let a = request(&sock, &serde_json::json!({"cmd": "status"})).unwrap();
        assert_eq!(a["echo"], "status");
        let _ = std::fs::remove_dir_all(dir);
    }
}
