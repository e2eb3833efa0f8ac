//! Shared fixtures of the end-to-end tests: a plexgate gateway in a namespace,
//! configured by a policy file the test writes.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use plexgate_lab::{LabDir, Netns, Process};

/// The PSK of the lab.
pub const PSK: &str = "plexgate-lab-secret-0123456789";

/// Fail loudly when a tool the test needs is missing.
pub fn prerequisites() {
    if let Err(e) = plexgate_lab::check_prerequisites() {
        panic!("end-to-end test prerequisites missing (run scripts/setup.sh): {e}");
    }
}

/// Write a secret file with mode 0600.
pub fn write_secret(path: &Path, data: &[u8]) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, data).expect("write secret");
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).expect("chmod secret");
}

/// Where every test gateway serves Prometheus metrics: loopback of its own
/// namespace, so gateways in different namespaces never collide.
pub const METRICS: &str = "127.0.0.1:9741";

/// `GET /metrics` from the gateway in `ns`.
pub fn metrics(ns: &Netns) -> String {
    use std::io::{Read, Write};
    ns.run_in(|| {
        let mut c = std::net::TcpStream::connect(METRICS).expect("connect to /metrics");
        c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        c.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        let mut s = String::new();
        c.read_to_string(&mut s).unwrap();
        s
    })
    .expect("run in namespace")
}

/// The value of one sample line (`name{labels} value`) in a metrics text.
pub fn metric(text: &str, name_and_labels: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        l.strip_prefix(name_and_labels)
            .and_then(|v| v.trim().parse().ok())
    })
}

/// A running `plexgate run` (or `plexgate target`) in a namespace.
pub struct Daemon {
    pub proc: Process,
    pub ctl: PathBuf,
}

impl Daemon {
    /// Start `plexgate run --policy POLICY` in `ns` and wait for its control socket.
    pub fn gateway(ns: &Netns, dir: &Path, policy: &Path, name: &str) -> Daemon {
        Self::gateway_as(ns, dir, policy, name, None)
    }

    /// [`Daemon::gateway`] as gateway `as_name` of the file (`--name`).
    pub fn gateway_as(
        ns: &Netns,
        dir: &Path,
        policy: &Path,
        name: &str,
        as_name: Option<&str>,
    ) -> Daemon {
        let ctl = dir.join(format!("{name}.sock"));
        let bin = env!("CARGO_BIN_EXE_plexgate");
        let log = dir.join(format!("{name}.log"));
        let mut argv = vec![
            bin,
            "run",
            "--policy",
            policy.to_str().unwrap(),
            "--ctl",
            ctl.to_str().unwrap(),
            "--metrics",
            METRICS,
        ];
        if let Some(n) = as_name {
            argv.extend(["--name", n]);
        }
        let p = ns.spawn(&argv, &log).expect("spawn plexgate");
        let d = Daemon { proc: p, ctl };
        d.wait_ctl();
        d
    }

    /// Start `plexgate target --policy POLICY --name NAME` in `ns`.
    pub fn target(ns: &Netns, dir: &Path, policy: &Path, name: &str) -> Daemon {
        let ctl = dir.join(format!("{name}.sock"));
        let bin = env!("CARGO_BIN_EXE_plexgate");
        let log = dir.join(format!("{name}.log"));
        let p = ns
            .spawn(
                &[
                    bin,
                    "target",
                    "--policy",
                    policy.to_str().unwrap(),
                    "--name",
                    name,
                    "--ctl",
                    ctl.to_str().unwrap(),
                ],
                &log,
            )
            .expect("spawn plexgate target");
        let d = Daemon { proc: p, ctl };
        d.wait_ctl();
        d
    }

    fn wait_ctl(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if plexgate::ctl::request(&self.ctl, &serde_json::json!({"cmd": "status"})).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("plexgate did not come up; its log:\n{}", self.proc.log());
    }

    /// Send a control request.
    pub fn ctl(&self, req: serde_json::Value) -> serde_json::Value {
        plexgate::ctl::request(&self.ctl, &req)
            .unwrap_or_else(|e| panic!("ctl: {e}\nlog:\n{}", self.proc.log()))
    }

    /// Status JSON.
    pub fn status(&self) -> serde_json::Value {
        self.ctl(serde_json::json!({"cmd": "status"}))
    }

    /// Wait until `f(status)` holds.
    pub fn wait_status(
        &self,
        what: &str,
        timeout: Duration,
        f: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        let deadline = Instant::now() + timeout;
        loop {
            let s = self.status();
            if f(&s) {
                return s;
            }
            if Instant::now() > deadline {
                panic!(
                    "timed out waiting for {what}; status:\n{}\nlog:\n{}",
                    serde_json::to_string_pretty(&s).unwrap(),
                    self.proc.log()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The daemon's log so far.
    pub fn log(&self) -> String {
        self.proc.log()
    }
}

/// Number of installed Child SAs (both directions count one each).
pub fn child_sa_count(s: &serde_json::Value) -> usize {
    s["child_sas"].as_array().map(|a| a.len()).unwrap_or(0)
}

/// A scratch directory for a test.
pub fn labdir(name: &str) -> LabDir {
    LabDir::new(name).expect("lab dir")
}
