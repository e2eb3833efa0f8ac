//! The control socket under a careless or hostile local client: long lines, idle
//! and excess connections, a second daemon, stale and foreign files, SIGTERM.

use super::*;

/// A fresh folder for one test's socket, removed on drop.
struct Dir(PathBuf);

impl Dir {
    fn new(tag: &str) -> Dir {
        let d = std::env::temp_dir().join(format!("plx-{}-ctl-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        Dir(d)
    }

    fn sock(&self) -> PathBuf {
        self.0.join("ctl.sock")
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn echo() -> Handler {
    Arc::new(|req: &Value| serde_json::json!({"echo": req["cmd"]}))
}

/// Reads until the daemon closes (EOF, or a reset: a Unix socket closed with
/// unread data resets its peer) or `limit` passes; returns what came and whether
/// the connection was closed.
fn read_all(s: &mut UnixStream, limit: Duration) -> (String, bool) {
    s.set_read_timeout(Some(limit)).unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    let closed = loop {
        match s.read(&mut buf) {
            Ok(0) => break true,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => break true,
            Err(_) => break false,
        }
    };
    (String::from_utf8_lossy(&out).into_owned(), closed)
}

#[test]
fn request_answer_round_trip() {
    let d = Dir::new("rt");
    let _srv = serve(&d.sock(), echo()).unwrap();
    let a = request(&d.sock(), &serde_json::json!({"cmd": "status"})).unwrap();
    assert_eq!(a["echo"], "status");
}

#[test]
fn an_endless_line_is_refused_and_the_connection_closed() {
    let d = Dir::new("long");
    let _srv = serve(&d.sock(), echo()).unwrap();
    let mut s = UnixStream::connect(d.sock()).unwrap();
    let mut w = s.try_clone().unwrap();
    // 256 MB without a newline: the daemon must stop reading after 64 KB and
    // close, so the writer fails long before the end.
    let writer = std::thread::spawn(move || {
        let chunk = vec![b'x'; 1 << 20];
        let mut sent = 0usize;
        while sent < 256 << 20 {
            match w.write(&chunk) {
                Ok(n) => sent += n,
                Err(_) => break,
            }
        }
        sent
    });
    let (answer, eof) = read_all(&mut s, Duration::from_secs(60));
    assert!(eof, "the connection was not closed: {answer}");
    assert_eq!(
        answer,
        "{\"error\":\"request longer than 65536 bytes; closing the connection\"}\n"
    );
    drop(s);
    let sent = writer.join().unwrap();
    assert!(sent < 256 << 20, "the daemon took all {sent} bytes");
    // And it still serves others.
    let a = request(&d.sock(), &serde_json::json!({"cmd": "after"})).unwrap();
    assert_eq!(a["echo"], "after");
}

#[test]
fn a_line_of_exactly_the_limit_is_served() {
    let d = Dir::new("limit");
    let _srv = serve(&d.sock(), echo()).unwrap();
    let mut s = UnixStream::connect(d.sock()).unwrap();
    let pad = MAX_LINE - "{\"cmd\":\"\"}".len();
    let line = format!("{{\"cmd\":\"{}\"}}\n", "y".repeat(pad));
    assert_eq!(line.len(), MAX_LINE + 1);
    s.write_all(line.as_bytes()).unwrap();
    let mut r = BufReader::new(s);
    let mut answer = String::new();
    r.read_line(&mut answer).unwrap();
    assert!(
        answer.starts_with("{\"echo\":\"yyyy"),
        "{}",
        &answer[..40.min(answer.len())]
    );
}

#[test]
fn excess_connections_are_turned_away_and_idle_ones_time_out() {
    let d = Dir::new("idle");
    let _srv = serve(&d.sock(), echo()).unwrap();
    let idle: Vec<UnixStream> = (0..MAX_CONNECTIONS)
        .map(|_| UnixStream::connect(d.sock()).unwrap())
        .collect();
    // Wait until the daemon holds all of them (each is accepted in turn).
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut extra = loop {
        let mut s = UnixStream::connect(d.sock()).unwrap();
        let (answer, eof) = read_all(&mut s, Duration::from_secs(5));
        if eof && answer.contains("too many control connections") {
            break s;
        }
        assert!(Instant::now() < deadline, "never turned away: {answer:?}");
    };
    let _ = extra.write_all(b"{}\n");
    // The idle ones are closed after IDLE_TIMEOUT, which frees their slots.
    for mut s in idle {
        let (rest, eof) = read_all(&mut s, IDLE_TIMEOUT * 3);
        assert!(
            eof && rest.is_empty(),
            "an idle connection stayed open: {rest:?}"
        );
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match request(&d.sock(), &serde_json::json!({"cmd": "again"})) {
            Ok(a) if a["echo"] == "again" => break,
            other => assert!(Instant::now() < deadline, "no slot freed: {other:?}"),
        }
    }
}

#[test]
fn a_second_daemon_refuses_the_path_of_a_running_one() {
    let d = Dir::new("second");
    let first = serve(&d.sock(), echo()).unwrap();
    let second = serve(
        &d.sock(),
        Arc::new(|_: &Value| serde_json::json!("impostor")),
    );
    match second {
        Err(e @ CtlError::InUse(_)) => assert_eq!(
            e.to_string(),
            format!(
                "another plexgate is running on {} (it accepted a connection); stop it or choose another --ctl path",
                d.sock().display()
            )
        ),
        other => panic!("{other:?}"),
    }
    let a = request(&d.sock(), &serde_json::json!({"cmd": "who"})).unwrap();
    assert_eq!(a["echo"], "who");
    first.shutdown();
}

#[test]
fn a_stale_socket_is_replaced_and_a_foreign_file_is_not() {
    let d = Dir::new("stale");
    // A socket file nobody listens on any more (a daemon killed with -9).
    drop(UnixListener::bind(d.sock()).unwrap());
    assert!(d.sock().exists());
    let srv = serve(&d.sock(), echo()).unwrap();
    assert_eq!(
        request(&d.sock(), &serde_json::json!({"cmd": "x"})).unwrap()["echo"],
        "x"
    );
    srv.shutdown();
    // A regular file at the path is somebody's: refused, left alone.
    std::fs::write(d.sock(), b"not a socket").unwrap();
    assert!(matches!(
        serve(&d.sock(), echo()),
        Err(CtlError::NotASocket(_))
    ));
    assert_eq!(std::fs::read(d.sock()).unwrap(), b"not a socket");
}

#[test]
fn shutdown_removes_our_socket_but_never_another_daemons() {
    let d = Dir::new("shutdown");
    let srv = serve(&d.sock(), echo()).unwrap();
    assert_eq!(srv.path(), d.sock());
    srv.shutdown();
    assert!(!d.sock().exists());
    assert!(request(&d.sock(), &serde_json::json!({})).is_err());
    // Somebody removed our file and another daemon bound the path since.
    let srv = serve(&d.sock(), echo()).unwrap();
    std::fs::remove_file(d.sock()).unwrap();
    let _other = UnixListener::bind(d.sock()).unwrap();
    srv.shutdown();
    assert!(d.sock().exists(), "removed another daemon's socket");
}

#[test]
fn answers_carry_no_integer_a_double_cannot_hold() {
    let d = Dir::new("ints");
    let h: Handler = Arc::new(|_: &Value| {
        serde_json::json!({
            "ike_sas": [{"id": u64::MAX, "spi": 1u64 << 53, "small": 42}],
            "neg": i64::MIN,
            "edge": MAX_SAFE_INTEGER,
            "float": 1.5,
        })
    });
    let _srv = serve(&d.sock(), h).unwrap();
    let a = request(&d.sock(), &serde_json::json!({"cmd": "status"})).unwrap();
    assert_eq!(a["ike_sas"][0]["id"], "18446744073709551615");
    assert_eq!(a["ike_sas"][0]["spi"], "9007199254740992");
    assert_eq!(a["ike_sas"][0]["small"], 42);
    assert_eq!(a["neg"], "-9223372036854775808");
    assert_eq!(a["edge"], MAX_SAFE_INTEGER);
    assert_eq!(a["float"], 1.5);
}

/// The daemon side of `sigterm_removes_the_socket_file`: runs only when that
/// test starts it in a child process (it installs process-wide handlers).
#[test]
#[ignore = "run by sigterm_removes_the_socket_file in a child process"]
fn child_serves_until_sigterm() {
    let Some(sock) = std::env::var_os("PLX_CTL_CHILD_SOCK") else {
        return;
    };
    on_termination(|sig| {
        shutdown_all();
        std::process::exit(100 + sig);
    })
    .unwrap();
    // Installed once per process.
    let again = on_termination(|_| {});
    assert_eq!(again.unwrap_err().kind(), io::ErrorKind::AlreadyExists);
    let _srv = serve(Path::new(&sock), echo()).unwrap();
    loop {
        std::thread::sleep(Duration::from_secs(1));
    }
}

#[test]
fn sigterm_removes_the_socket_file() {
    let d = Dir::new("sigterm");
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--ignored",
            "--exact",
            "ctl::tests::child_serves_until_sigterm",
            "--test-threads=1",
        ])
        .env("PLX_CTL_CHILD_SOCK", d.sock())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while request(&d.sock(), &serde_json::json!({"cmd": "up"})).is_err() {
        assert!(
            Instant::now() < deadline,
            "the child never served its socket"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // SAFETY: signalling our own child.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGTERM) }, 0);
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(100 + libc::SIGTERM), "{status:?}");
    assert!(!d.sock().exists(), "the socket file outlived the daemon");
}

#[test]
fn a_panicking_handler_gives_its_place_back() {
    let d = Dir::new("panic");
    let h: Handler = Arc::new(|req: &Value| {
        assert_ne!(req["cmd"], "boom", "handler bug (expected by this test)");
        serde_json::json!({"ok": true})
    });
    let _srv = serve(&d.sock(), h).unwrap();
    for _ in 0..MAX_CONNECTIONS + 4 {
        // The connection dies with its thread: no answer.
        assert!(request(&d.sock(), &serde_json::json!({"cmd": "boom"})).is_err());
    }
    let a = request(&d.sock(), &serde_json::json!({"cmd": "fine"})).unwrap();
    assert_eq!(a["ok"], true);
}
