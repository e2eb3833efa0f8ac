//! Network namespaces as RAII guards.
//!
//! A [`Netns`] is created with `ip netns add` under a name that is unique per run
//! (prefix `plx-`, process id, a counter and a random suffix), so that tests running
//! in parallel, in one process or several, never collide. Dropping it kills every
//! process inside (`ip netns pids`, SIGTERM then SIGKILL) and deletes it, also while
//! a test panics. [`Netns::spawn`] starts a background process inside; its
//! [`Process`] guard kills the whole process group on drop. [`Netns::run_in`] runs a
//! Rust closure on a thread that has entered the namespace (`setns(2)`), which is how
//! the traffic tools open sockets inside without an external program.

use crate::cmd::{self, kill_group, wait_until, Output, SHORT};
use crate::error::{LabError, Result};
use std::fs::File;
use std::io::Read;
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::thread;
use std::time::{Duration, Instant};

/// Prefix of every namespace the lab creates; [`cleanup_stale`] looks for it.
pub const PREFIX: &str = "plx-";

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// Four random bytes from the kernel, as hex (falls back to time if unavailable).
pub(crate) fn random_hex() -> String {
    let mut b = [0u8; 4];
    let ok = File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut b))
        .is_ok();
    if !ok {
        let n = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        b = n.to_le_bytes();
    }
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// A unique token for this run: `<pid>-<counter>-<random>`.
pub(crate) fn unique_token() -> String {
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{}-{}-{}", std::process::id(), n, random_hex())
}

/// Checks that `s` is safe to use as a namespace label or interface name part.
fn check_label(s: &str) -> Result<()> {
    if s.is_empty()
        || s.len() > 24
        || !s
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return Err(LabError::Config(format!(
            "label `{s}` must be 1-24 characters of [A-Za-z0-9_-]"
        )));
    }
    Ok(())
}

/// A network namespace that is deleted (with everything running in it) on drop.
#[derive(Debug)]
pub struct Netns {
    name: String,
    label: String,
}

impl Netns {
    /// Create a fresh namespace whose name contains `label` (for humans reading
    /// `ip netns list`), with `lo` up.
    pub fn new(label: &str) -> Result<Netns> {
        check_label(label)?;
        let name = format!("{PREFIX}{}-{label}", unique_token());
        cmd::run_ok(&["ip", "netns", "add", &name], SHORT)?;
        let ns = Netns {
            name,
            label: label.to_string(),
        };
        ns.ip(&["link", "set", "dev", "lo", "up"])?;
        Ok(ns)
    }

    /// The full namespace name (for `ip netns exec NAME`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The label given at creation.
    pub fn label(&self) -> &str {
        &self.label
    }

    /// `ip netns exec NAME argv…` with the given timeout; non-zero exit is returned,
    /// not an error.
    pub fn exec_timeout(&self, argv: &[&str], timeout: Duration) -> Result<Output> {
        let mut full = vec!["ip", "netns", "exec", &self.name];
        full.extend_from_slice(argv);
        cmd::run(&full, timeout)
    }

    /// Run `argv` inside with the short default timeout and require success.
    pub fn exec(&self, argv: &[&str]) -> Result<Output> {
        self.exec_ok_timeout(argv, SHORT)
    }

    /// Run `argv` inside with `timeout` and require success.
    pub fn exec_ok_timeout(&self, argv: &[&str], timeout: Duration) -> Result<Output> {
        let mut full = vec!["ip", "netns", "exec", &self.name];
        full.extend_from_slice(argv);
        cmd::run_ok(&full, timeout)
    }

    /// `ip -n NAME args…`, required to succeed.
    pub fn ip(&self, args: &[&str]) -> Result<Output> {
        let mut full = vec!["ip", "-n", &self.name];
        full.extend_from_slice(args);
        cmd::run_ok(&full, SHORT)
    }

    /// Add an address (CIDR, e.g. `10.0.0.1/24` or `fd00::1/64`) to `dev`. IPv6
    /// addresses get `nodad` so they are usable at once.
    pub fn add_addr(&self, dev: &str, cidr: &str) -> Result<()> {
        if cidr.contains(':') {
            self.ip(&["addr", "add", cidr, "dev", dev, "nodad"])?;
        } else {
            self.ip(&["addr", "add", cidr, "dev", dev])?;
        }
        Ok(())
    }

    /// Put an address on `lo` (a host address such as a DVIPA or a site address).
    pub fn add_loopback_addr(&self, cidr: &str) -> Result<()> {
        self.add_addr("lo", cidr)
    }

    /// `ip route replace DEST via GW`.
    pub fn route_via(&self, dest: &str, gw: &str) -> Result<()> {
        let fam = if dest.contains(':') { "-6" } else { "-4" };
        self.ip(&[fam, "route", "replace", dest, "via", gw])?;
        Ok(())
    }

    /// `ip route replace DEST dev DEV [src SRC]`.
    pub fn route_dev(&self, dest: &str, dev: &str, src: Option<&str>) -> Result<()> {
        let fam = if dest.contains(':') { "-6" } else { "-4" };
        let mut args = vec![fam, "route", "replace", dest, "dev", dev];
        if let Some(s) = src {
            args.extend_from_slice(&["src", s]);
        }
        self.ip(&args)?;
        Ok(())
    }

    /// Set a sysctl inside the namespace (`sysctl -w key=value`).
    pub fn sysctl(&self, key: &str, value: &str) -> Result<()> {
        let kv = format!("{key}={value}");
        self.exec(&["sysctl", "-q", "-w", &kv])?;
        Ok(())
    }

    /// Turn on IPv4 and IPv6 forwarding and switch reverse-path filtering off (a
    /// router in the middle of a lab topology).
    pub fn enable_forwarding(&self) -> Result<()> {
        self.sysctl("net.ipv4.ip_forward", "1")?;
        self.sysctl("net.ipv6.conf.all.forwarding", "1")?;
        self.disable_rp_filter()
    }

    /// Reverse-path filtering off on `all` and `default` (tunnel traffic arrives on
    /// interfaces the kernel would not route back through).
    pub fn disable_rp_filter(&self) -> Result<()> {
        self.sysctl("net.ipv4.conf.all.rp_filter", "0")?;
        self.sysctl("net.ipv4.conf.default.rp_filter", "0")
    }

    /// Ping `dst` (optionally from source address `src`) `count` times; `Ok(true)`
    /// if at least one reply came back. Each probe waits at most one second.
    pub fn ping(&self, dst: &str, src: Option<&str>, count: u32) -> Result<bool> {
        let c = count.max(1).to_string();
        let mut args = vec!["ping", "-n", "-q", "-c", &c, "-W", "1", "-i", "0.2"];
        if let Some(s) = src {
            args.extend_from_slice(&["-I", s]);
        }
        args.push(dst);
        let timeout = Duration::from_secs(u64::from(count.max(1)) + 5);
        let out = self.exec_timeout(&args, timeout)?;
        Ok(out.status.success())
    }

    /// Ping until one reply comes back or `timeout` passes.
    pub fn wait_ping(&self, dst: &str, src: Option<&str>, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            if self.ping(dst, src, 1)? {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(LabError::Timeout {
                    what: format!("ping {dst} from {} ({:?})", self.name, src),
                    after: timeout,
                });
            }
            thread::sleep(Duration::from_millis(100));
        }
    }

    /// Is something listening on `port` (TCP, or UDP if `udp`) in this namespace?
    pub fn is_listening(&self, port: u16, udp: bool) -> Result<bool> {
        let filter = format!("sport = :{port}");
        let kind = if udp { "-Hlun" } else { "-Hltn" };
        let out = self.exec(&["ss", kind, &filter])?;
        Ok(!out.stdout.trim().is_empty())
    }

    /// Wait until a socket listens on `port`, at most `timeout`.
    pub fn wait_listening(&self, port: u16, udp: bool, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            if self.is_listening(port, udp)? {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(LabError::Timeout {
                    what: format!(
                        "{} port {port} listening in {}",
                        if udp { "UDP" } else { "TCP" },
                        self.name
                    ),
                    after: timeout,
                });
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// Wait until a TCP connection to `addr` succeeds from inside this namespace.
    pub fn wait_connectable(&self, addr: SocketAddr, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            let ok = self.run_in(move || {
                TcpStream::connect_timeout(&addr, Duration::from_millis(500)).is_ok()
            })?;
            if ok {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(LabError::Timeout {
                    what: format!("TCP connect to {addr} from {}", self.name),
                    after: timeout,
                });
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// Spawn `argv` in the background inside the namespace, in its own process
    /// group, with stdout and stderr appended to `log`. The returned guard kills the
    /// group on drop.
    pub fn spawn(&self, argv: &[&str], log: &Path) -> Result<Process> {
        let mut full = vec!["ip", "netns", "exec", &self.name];
        full.extend_from_slice(argv);
        spawn_logged(&full, log)
    }

    /// The pids of all processes in this namespace.
    pub fn pids(&self) -> Result<Vec<u32>> {
        let out = cmd::run_ok(&["ip", "netns", "pids", &self.name], SHORT)?;
        Ok(out
            .stdout
            .split_whitespace()
            .filter_map(|p| p.parse().ok())
            .collect())
    }

    /// Run `f` on a new thread that has entered this namespace, and return its
    /// result. Sockets `f` opens live in the namespace. `f` must not block forever:
    /// give its sockets timeouts.
    pub fn run_in<F, T>(&self, f: F) -> Result<T>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        let handle = self.spawn_thread(f)?;
        handle
            .join()
            .map_err(|_| LabError::Verify(format!("thread in namespace {} panicked", self.name)))
    }

    /// Like [`Netns::run_in`] but returns the join handle of the thread at once.
    pub fn spawn_thread<F, T>(&self, f: F) -> Result<thread::JoinHandle<T>>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        let path = PathBuf::from("/run/netns").join(&self.name);
        let file = File::open(&path)
            .map_err(|e| LabError::io(format!("opening {}", path.display()), e))?;
        let (tx, rx) = std::sync::mpsc::channel::<std::io::Result<()>>();
        let handle = thread::spawn(move || {
            // SAFETY: setns(2) with a valid, open namespace fd only changes the
            // network namespace of this thread.
            let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
            if rc != 0 {
                let _ = tx.send(Err(std::io::Error::last_os_error()));
                // Never run `f` in the wrong namespace.
                panic!("setns failed");
            }
            drop(file);
            let _ = tx.send(Ok(()));
            f()
        });
        match rx.recv() {
            Ok(Ok(())) => Ok(handle),
            Ok(Err(e)) => {
                let _ = handle.join();
                Err(LabError::io(format!("setns into {}", self.name), e))
            }
            Err(_) => Err(LabError::Verify("namespace thread vanished".into())),
        }
    }

    fn destroy(&self) {
        for sig in [libc::SIGTERM, libc::SIGKILL] {
            let pids = self.pids().unwrap_or_default();
            if pids.is_empty() {
                break;
            }
            for p in pids {
                if let Ok(p) = libc::pid_t::try_from(p) {
                    // SAFETY: kill(2) on a pid that lives in our namespace.
                    unsafe {
                        libc::kill(p, sig);
                    }
                }
            }
            let deadline = Instant::now() + Duration::from_secs(3);
            while Instant::now() < deadline && !self.pids().unwrap_or_default().is_empty() {
                thread::sleep(Duration::from_millis(20));
            }
        }
        if let Err(e) = cmd::run_ok(&["ip", "netns", "del", &self.name], SHORT) {
            eprintln!(
                "plexgate-lab: could not delete namespace {}: {e}",
                self.name
            );
        }
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        self.destroy();
    }
}

/// Does a namespace of this name exist?
pub fn exists(name: &str) -> bool {
    Path::new("/run/netns").join(name).exists()
}

/// Names of all namespaces the lab created (any process) that still exist.
pub fn lab_namespaces() -> Vec<String> {
    std::fs::read_dir("/run/netns")
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with(PREFIX))
                .collect()
        })
        .unwrap_or_default()
}

/// Delete lab namespaces left behind by processes that no longer exist (a test
/// binary killed with SIGKILL cannot run its drop guards). Namespaces of live
/// processes are left alone. Returns the names deleted.
pub fn cleanup_stale() -> Vec<String> {
    let mut gone = Vec::new();
    for name in lab_namespaces() {
        let pid = name
            .strip_prefix(PREFIX)
            .and_then(|r| r.split('-').next())
            .and_then(|p| p.parse::<u32>().ok());
        let Some(pid) = pid else { continue };
        if Path::new("/proc").join(pid.to_string()).exists() {
            continue;
        }
        let ns = Netns {
            name: name.clone(),
            label: String::new(),
        };
        drop(ns);
        gone.push(name);
    }
    gone
}

/// A background process (and its process group) killed on drop.
#[derive(Debug)]
pub struct Process {
    child: Child,
    argv: String,
    log: PathBuf,
}

/// Spawn `argv` in its own process group with output appended to `log`.
pub fn spawn_logged(argv: &[&str], log: &Path) -> Result<Process> {
    let (prog, args) = argv
        .split_first()
        .ok_or_else(|| LabError::Config("empty command".into()))?;
    let out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .map_err(|e| LabError::io(format!("opening log {}", log.display()), e))?;
    let err = out
        .try_clone()
        .map_err(|e| LabError::io("cloning log handle", e))?;
    let child = Command::new(prog)
        .args(args)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .process_group(0)
        .spawn()
        .map_err(|e| LabError::io(format!("spawning `{}`", cmd::display(argv)), e))?;
    Ok(Process {
        child,
        argv: cmd::display(argv),
        log: log.to_path_buf(),
    })
}

impl Process {
    /// Process id (also the process group id).
    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// The command line.
    pub fn argv(&self) -> &str {
        &self.argv
    }

    /// Where stdout and stderr go.
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// The log so far (lossy UTF-8).
    pub fn log(&self) -> String {
        std::fs::read(&self.log)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    /// Has it exited? Returns the status if so.
    pub fn try_wait(&mut self) -> Result<Option<std::process::ExitStatus>> {
        self.child
            .try_wait()
            .map_err(|e| LabError::io("polling background process", e))
    }

    /// Wait for it to exit by itself, at most `timeout`.
    pub fn wait_timeout(&mut self, timeout: Duration) -> Result<std::process::ExitStatus> {
        wait_until(&mut self.child, Instant::now() + timeout)?.ok_or_else(|| LabError::Timeout {
            what: format!("exit of `{}`", self.argv),
            after: timeout,
        })
    }

    /// SIGTERM to the group, up to `grace` to exit, then SIGKILL. Idempotent.
    pub fn stop(&mut self, grace: Duration) {
        if let Ok(Some(_)) = self.child.try_wait() {
            kill_group(self.child.id(), libc::SIGKILL);
            return;
        }
        kill_group(self.child.id(), libc::SIGTERM);
        if let Ok(Some(_)) = wait_until(&mut self.child, Instant::now() + grace) {
            kill_group(self.child.id(), libc::SIGKILL);
            return;
        }
        kill_group(self.child.id(), libc::SIGKILL);
        let _ = self.child.wait();
    }
}

impl Process {
    /// SIGKILL the process (and its group), as a crash would, and reap it.
    pub fn kill(&mut self) {
        kill_group(self.child.id(), libc::SIGKILL);
        let _ = self.child.wait();
    }

    /// SIGTERM the process and wait up to `grace` for it to end (then SIGKILL).
    pub fn terminate(&mut self, grace: Duration) {
        self.stop(grace);
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.stop(Duration::from_secs(2));
    }
}

/// Parse `addr/len` and return the address part.
pub fn cidr_addr(cidr: &str) -> Result<IpAddr> {
    let a = cidr.split('/').next().unwrap_or(cidr);
    a.parse()
        .map_err(|_| LabError::Config(format!("`{cidr}` is not an address or CIDR")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_unique() {
        let a = unique_token();
        let b = unique_token();
        assert_ne!(a, b);
        assert!(a.starts_with(&format!("{}-", std::process::id())));
    }

    #[test]
    fn labels_are_checked() {
        assert!(check_label("gw-1").is_ok());
        assert!(check_label("").is_err());
        assert!(check_label("a b").is_err());
        assert!(check_label("a/b").is_err());
    }

    #[test]
    fn cidr_addr_parses_both_families() {
        assert_eq!(cidr_addr("10.0.0.1/24").unwrap().to_string(), "10.0.0.1");
        assert_eq!(cidr_addr("fd00::1/64").unwrap().to_string(), "fd00::1");
        assert!(cidr_addr("nope/1").is_err());
    }
}
