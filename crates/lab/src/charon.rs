//! strongSwan's charon as a peer inside a namespace.
//!
//! [`CharonConfig`] describes one IKEv2 connection (addresses, identities, PSK or
//! certificate authentication, IKE proposals, Child SAs with traffic selectors,
//! ESP proposals, mode, rekey/lifetime limits, start and DPD actions) and renders
//! `strongswan.conf` and `swanctl.conf` (one setting per line: swanctl silently
//! drops lines with several). [`Charon::start`] writes them to a scratch directory,
//! starts `/usr/lib/ipsec/charon` inside the namespace in a private mount namespace
//! with its own tmpfs `/run` (charon insists on `/var/run/charon.pid`, so two in one
//! mount namespace clash), waits for its vici socket and for the `ipsec0` TUN of
//! `kernel-libipsec`, and loads the config with `swanctl --load-all`. The plugins
//! that route the LAN into the tunnel (`bypass-lan`, `forecast`, `farp`, `dhcp`,
//! `ha`) are off and `install_routes = no`: routes into `ipsec0` are added with
//! [`Charon::route_ipsec0`]. kernel-libipsec always uses ESP in UDP on port 4500.
//!
//! charon's stderr (levels ike 2, chd 2, cfg 2, knl 1, net 1, others 1) goes to
//! `charon.log` in the scratch directory; [`Charon::log`] returns it, and when a
//! test panics with a `Charon` alive its last lines are printed.

mod sas;

pub use sas::{parse_list_sas, ChildSa, IkeSa};

use crate::cmd::{self, Output, SHORT};
use crate::error::{LabError, Result};
use crate::labdir::LabDir;
use crate::netns::{Netns, Process};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant};

/// Where Debian installs the daemon.
pub const CHARON_BIN: &str = "/usr/lib/ipsec/charon";

/// How the peer authenticates (both directions use the same method).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Auth {
    /// Pre-shared key shared by the two identities.
    Psk(String),
    /// Certificates: our certificate and private key, and the CA certificates we
    /// trust for the peer (PEM or DER files; copied into swanctl's `x509/`,
    /// `private/` and `x509ca/`).
    Certs {
        /// Our end-entity certificate.
        cert: PathBuf,
        /// Our private key (RSA, ECDSA or Ed25519; PKCS#1 or PKCS#8).
        key: PathBuf,
        /// CA certificates to trust.
        cas: Vec<PathBuf>,
    },
}

/// IPsec mode of a Child SA.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    /// Tunnel mode (default).
    #[default]
    Tunnel,
    /// Transport mode.
    Transport,
}

/// What charon does with a Child SA after loading (`start_action`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StartAction {
    /// Wait to be initiated or for the peer (default).
    #[default]
    None,
    /// Initiate at once when loaded.
    Start,
    /// Install a trap policy (note: with kernel-libipsec traps need routes too).
    Trap,
}

/// One Child SA of the connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChildConfig {
    /// Child name (used by `initiate`).
    pub name: String,
    /// Local traffic selectors (`10.0.0.1/32`, `dynamic`, ...).
    pub local_ts: Vec<String>,
    /// Remote traffic selectors.
    pub remote_ts: Vec<String>,
    /// ESP proposals, e.g. `aes128gcm16`.
    pub esp_proposals: Vec<String>,
    /// Tunnel or transport.
    pub mode: Mode,
    /// `rekey_time` (swanctl duration such as `30s`, `1h`), if set.
    pub rekey_time: Option<String>,
    /// `life_time`, if set.
    pub life_time: Option<String>,
    /// `rekey_bytes`, if set.
    pub rekey_bytes: Option<u64>,
    /// `life_bytes`, if set.
    pub life_bytes: Option<u64>,
    /// `rekey_packets`, if set.
    pub rekey_packets: Option<u64>,
    /// `start_action`.
    pub start_action: StartAction,
    /// `dpd_action` (`clear`, `trap`, `restart`), if set.
    pub dpd_action: Option<String>,
    /// Extra `key = value` lines for this child (one setting each).
    pub extra: Vec<(String, String)>,
}

impl ChildConfig {
    /// A tunnel-mode child `name` with one selector each way and ESP `aes128gcm16`.
    pub fn new(name: &str, local_ts: &str, remote_ts: &str) -> ChildConfig {
        ChildConfig {
            name: name.to_string(),
            local_ts: vec![local_ts.to_string()],
            remote_ts: vec![remote_ts.to_string()],
            esp_proposals: vec!["aes128gcm16".to_string()],
            mode: Mode::Tunnel,
            rekey_time: None,
            life_time: None,
            rekey_bytes: None,
            life_bytes: None,
            rekey_packets: None,
            start_action: StartAction::None,
            dpd_action: None,
            extra: Vec::new(),
        }
    }

    /// The same child with other ESP proposals.
    pub fn esp(mut self, proposals: &[&str]) -> ChildConfig {
        self.esp_proposals = proposals.iter().map(|s| s.to_string()).collect();
        self
    }
}

/// One IKEv2 connection of a charon peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CharonConfig {
    /// Connection name (also the IKE SA name in `list_sas`).
    pub conn_name: String,
    /// Our addresses (`local_addrs`).
    pub local_addrs: Vec<String>,
    /// Peer addresses (`remote_addrs`; `%any` for a responder that accepts anyone).
    pub remote_addrs: Vec<String>,
    /// Our IKE identity.
    pub local_id: String,
    /// Peer IKE identity.
    pub remote_id: String,
    /// Authentication.
    pub auth: Auth,
    /// IKE proposals, e.g. `aes128-sha256-x25519`.
    pub ike_proposals: Vec<String>,
    /// Child SAs.
    pub children: Vec<ChildConfig>,
    /// IKE SA `rekey_time`, if set.
    pub rekey_time: Option<String>,
    /// IKE SA `reauth_time`, if set.
    pub reauth_time: Option<String>,
    /// IKE SA `over_time`, if set.
    pub over_time: Option<String>,
    /// `dpd_delay`, if set (e.g. `5s`).
    pub dpd_delay: Option<String>,
    /// `mobike` (default off: keeps the lab deterministic).
    pub mobike: bool,
    /// Extra `key = value` lines for the connection section.
    pub extra: Vec<(String, String)>,
    /// IKE retransmission timeout (`charon.retransmit_timeout`).
    pub retransmit_timeout: Duration,
    /// IKE retransmission tries (`charon.retransmit_tries`).
    pub retransmit_tries: u32,
}

impl CharonConfig {
    /// A PSK connection from `local` to `remote` with IKE `aes128-sha256-x25519`.
    pub fn psk(
        local: &str,
        remote: &str,
        local_id: &str,
        remote_id: &str,
        psk: &str,
    ) -> CharonConfig {
        CharonConfig {
            conn_name: "lab".to_string(),
            local_addrs: vec![local.to_string()],
            remote_addrs: vec![remote.to_string()],
            local_id: local_id.to_string(),
            remote_id: remote_id.to_string(),
            auth: Auth::Psk(psk.to_string()),
            ike_proposals: vec!["aes128-sha256-x25519".to_string()],
            children: Vec::new(),
            rekey_time: None,
            reauth_time: None,
            over_time: None,
            dpd_delay: None,
            mobike: false,
            extra: Vec::new(),
            retransmit_timeout: Duration::from_secs(1),
            retransmit_tries: 4,
        }
    }

    /// Add a child.
    pub fn child(mut self, child: ChildConfig) -> CharonConfig {
        self.children.push(child);
        self
    }

    /// The mirror image for the other end: addresses, identities and selectors
    /// swapped, same auth secret and proposals. Only meaningful for PSK (the peer
    /// needs its own certificate otherwise).
    pub fn mirrored(&self) -> CharonConfig {
        let mut m = self.clone();
        std::mem::swap(&mut m.local_addrs, &mut m.remote_addrs);
        std::mem::swap(&mut m.local_id, &mut m.remote_id);
        for c in &mut m.children {
            std::mem::swap(&mut c.local_ts, &mut c.remote_ts);
            c.start_action = StartAction::None;
        }
        m
    }

    /// Refuse values that would break the one-setting-per-line config syntax.
    pub fn validate(&self) -> Result<()> {
        let mut vals: Vec<&str> = vec![&self.conn_name, &self.local_id, &self.remote_id];
        vals.extend(self.local_addrs.iter().map(String::as_str));
        vals.extend(self.remote_addrs.iter().map(String::as_str));
        vals.extend(self.ike_proposals.iter().map(String::as_str));
        for (k, v) in &self.extra {
            vals.push(k);
            vals.push(v);
        }
        for c in &self.children {
            vals.push(&c.name);
            vals.extend(c.local_ts.iter().map(String::as_str));
            vals.extend(c.remote_ts.iter().map(String::as_str));
            vals.extend(c.esp_proposals.iter().map(String::as_str));
            for (k, v) in &c.extra {
                vals.push(k);
                vals.push(v);
            }
        }
        if let Auth::Psk(p) = &self.auth {
            if p.contains('"') || p.contains('\\') || p.contains('\n') {
                return Err(LabError::Config(
                    "PSK must not contain quotes, backslashes or newlines".into(),
                ));
            }
        }
        for v in vals {
            if v.is_empty()
                || v.chars()
                    .any(|c| matches!(c, '\n' | '\r' | '{' | '}' | '#' | '"'))
            {
                return Err(LabError::Config(format!(
                    "swanctl value `{}` is empty or contains a newline, brace, quote or #",
                    v.escape_debug()
                )));
            }
        }
        if self.children.is_empty() {
            return Err(LabError::Config(
                "a connection needs at least one child".into(),
            ));
        }
        Ok(())
    }

    /// `swanctl.conf` text. Certificate files are referred to by their file names
    /// (the lab copies them into the swanctl directory).
    pub fn swanctl_conf(&self) -> Result<String> {
        self.validate()?;
        let mut s = String::new();
        let w = &mut s;
        let kv = |w: &mut String, ind: usize, k: &str, v: &str| {
            let _ = writeln!(w, "{:ind$}{k} = {v}", "");
        };
        let _ = writeln!(w, "connections {{");
        let _ = writeln!(w, "  {} {{", self.conn_name);
        kv(w, 4, "version", "2");
        kv(w, 4, "local_addrs", &self.local_addrs.join(","));
        kv(w, 4, "remote_addrs", &self.remote_addrs.join(","));
        kv(w, 4, "proposals", &self.ike_proposals.join(","));
        kv(w, 4, "mobike", if self.mobike { "yes" } else { "no" });
        for (k, v) in [
            ("rekey_time", &self.rekey_time),
            ("reauth_time", &self.reauth_time),
            ("over_time", &self.over_time),
            ("dpd_delay", &self.dpd_delay),
        ] {
            if let Some(v) = v {
                kv(w, 4, k, v);
            }
        }
        for (k, v) in &self.extra {
            kv(w, 4, k, v);
        }
        let (auth, cert) = match &self.auth {
            Auth::Psk(_) => ("psk", None),
            Auth::Certs { cert, .. } => ("pubkey", Some(file_name(cert)?)),
        };
        let _ = writeln!(w, "    local {{");
        kv(w, 6, "auth", auth);
        kv(w, 6, "id", &self.local_id);
        if let Some(c) = &cert {
            kv(w, 6, "certs", c);
        }
        let _ = writeln!(w, "    }}");
        let _ = writeln!(w, "    remote {{");
        kv(w, 6, "auth", auth);
        kv(w, 6, "id", &self.remote_id);
        let _ = writeln!(w, "    }}");
        let _ = writeln!(w, "    children {{");
        for c in &self.children {
            let _ = writeln!(w, "      {} {{", c.name);
            kv(w, 8, "local_ts", &c.local_ts.join(","));
            kv(w, 8, "remote_ts", &c.remote_ts.join(","));
            kv(w, 8, "esp_proposals", &c.esp_proposals.join(","));
            let mode = match c.mode {
                Mode::Tunnel => "tunnel",
                Mode::Transport => "transport",
            };
            kv(w, 8, "mode", mode);
            for (k, v) in [("rekey_time", &c.rekey_time), ("life_time", &c.life_time)] {
                if let Some(v) = v {
                    kv(w, 8, k, v);
                }
            }
            for (k, v) in [
                ("rekey_bytes", c.rekey_bytes),
                ("life_bytes", c.life_bytes),
                ("rekey_packets", c.rekey_packets),
            ] {
                if let Some(v) = v {
                    kv(w, 8, k, &v.to_string());
                }
            }
            let sa = match c.start_action {
                StartAction::None => "none",
                StartAction::Start => "start",
                StartAction::Trap => "trap",
            };
            kv(w, 8, "start_action", sa);
            if let Some(d) = &c.dpd_action {
                kv(w, 8, "dpd_action", d);
            }
            for (k, v) in &c.extra {
                kv(w, 8, k, v);
            }
            let _ = writeln!(w, "      }}");
        }
        let _ = writeln!(w, "    }}");
        let _ = writeln!(w, "  }}");
        let _ = writeln!(w, "}}");
        if let Auth::Psk(p) = &self.auth {
            let _ = writeln!(w, "secrets {{");
            let _ = writeln!(w, "  ike-lab {{");
            kv(w, 4, "id-1", &self.local_id);
            kv(w, 4, "id-2", &self.remote_id);
            kv(w, 4, "secret", &format!("\"{p}\""));
            let _ = writeln!(w, "  }}");
            let _ = writeln!(w, "}}");
        }
        Ok(s)
    }

    /// `strongswan.conf` text for a charon whose scratch directory is `dir`.
    pub fn strongswan_conf(&self, dir: &Path) -> String {
        let d = dir.display();
        let rt = format!("{:.3}", self.retransmit_timeout.as_secs_f64());
        format!(
            "charon {{
  piddir = {d}/run
  install_routes = no
  install_virtual_ip = no
  retransmit_timeout = {rt}
  retransmit_tries = {tries}
  plugins {{
    vici {{
      socket = unix://{d}/run/charon.vici
    }}
    kernel-libipsec {{
      load = yes
    }}
    bypass-lan {{
      load = no
    }}
    forecast {{
      load = no
    }}
    farp {{
      load = no
    }}
    dhcp {{
      load = no
    }}
    ha {{
      load = no
    }}
    stroke {{
      load = no
    }}
  }}
  filelog {{
    stderr {{
      time_format = %H:%M:%S
      ike_name = yes
      flush_line = yes
      default = 1
      ike = 2
      chd = 2
      cfg = 2
      knl = 1
      net = 1
      enc = 1
      lib = 0
    }}
  }}
}}
",
            tries = self.retransmit_tries
        )
    }
}

fn file_name(p: &Path) -> Result<String> {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .ok_or_else(|| LabError::Config(format!("`{}` has no file name", p.display())))
}

fn copy_into(src: &Path, dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir)
        .map_err(|e| LabError::io(format!("creating {}", dir.display()), e))?;
    let dst = dir.join(file_name(src)?);
    std::fs::copy(src, &dst)
        .map(|_| ())
        .map_err(|e| LabError::io(format!("copying {} to {}", src.display(), dst.display()), e))
}

/// A running charon in a namespace; stopped (SIGTERM, then SIGKILL) on drop.
#[derive(Debug)]
pub struct Charon {
    process: Process,
    ns: String,
    config: CharonConfig,
    vici: PathBuf,
    swanctl_conf: PathBuf,
    strongswan_conf: PathBuf,
    // Declared last: dropped after the process is gone.
    dir: LabDir,
}

impl Charon {
    /// Write the configs, start charon in `ns`, wait for vici and `ipsec0` (at
    /// most 15 s) and load the connection. Nothing is initiated unless a child has
    /// [`StartAction::Start`].
    pub fn start(ns: &Netns, config: CharonConfig) -> Result<Charon> {
        crate::prereq::check_prerequisites()?;
        config.validate()?;
        let dir = LabDir::new(&format!("charon-{}", ns.label()))?;
        let run = dir.join("run");
        let sw = dir.join("swanctl");
        for d in [&run, &sw] {
            std::fs::create_dir_all(d)
                .map_err(|e| LabError::io(format!("creating {}", d.display()), e))?;
        }
        if let Auth::Certs { cert, key, cas } = &config.auth {
            copy_into(cert, &sw.join("x509"))?;
            copy_into(key, &sw.join("private"))?;
            for ca in cas {
                copy_into(ca, &sw.join("x509ca"))?;
            }
        }
        let strongswan_conf = dir.join("strongswan.conf");
        let swanctl_conf = sw.join("swanctl.conf");
        write(&strongswan_conf, &config.strongswan_conf(dir.path()))?;
        write(&swanctl_conf, &config.swanctl_conf()?)?;
        let vici = run.join("charon.vici");
        let script = format!(
            "mount -t tmpfs none /run && mkdir -p /run/netns && exec env STRONGSWAN_CONF={} {}",
            strongswan_conf.display(),
            CHARON_BIN
        );
        let log = dir.join("charon.log");
        let process = ns.spawn(&["unshare", "-m", "sh", "-c", &script], &log)?;
        let mut charon = Charon {
            process,
            ns: ns.name().to_string(),
            config,
            vici,
            swanctl_conf,
            strongswan_conf,
            dir,
        };
        charon.wait_ready(Duration::from_secs(15))?;
        charon.load()?;
        Ok(charon)
    }

    fn wait_ready(&mut self, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(st) = self.process.try_wait()? {
                return Err(LabError::Command {
                    cmd: "charon".into(),
                    status: format!("exited early: {st}"),
                    output: tail(&self.log(), 30),
                });
            }
            let vici_ok = self.vici.exists() && self.swanctl(&["--stats"]).is_ok();
            let tun_ok = vici_ok
                && cmd::run(&["ip", "-n", &self.ns, "link", "show", "ipsec0"], SHORT)
                    .map(|o| o.status.success())
                    .unwrap_or(false);
            if tun_ok {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(LabError::Timeout {
                    what: format!(
                        "charon vici socket {} and ipsec0; log tail:\n{}",
                        self.vici.display(),
                        tail(&self.log(), 30)
                    ),
                    after: timeout,
                });
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// Run `swanctl ARGS --uri unix://…` against this charon; requires success.
    pub fn swanctl(&self, args: &[&str]) -> Result<Output> {
        self.swanctl_timeout(args, SHORT)
    }

    fn swanctl_timeout(&self, args: &[&str], timeout: Duration) -> Result<Output> {
        let uri = format!("unix://{}", self.vici.display());
        let mut argv = vec!["swanctl"];
        argv.extend_from_slice(args);
        argv.extend_from_slice(&["--uri", &uri]);
        cmd::run_ok(&argv, timeout)
    }

    /// (Re)load the whole swanctl config (`swanctl --load-all --file …`).
    pub fn load(&self) -> Result<()> {
        let f = self.swanctl_conf.display().to_string();
        self.swanctl(&["--load-all", "--file", &f])?;
        Ok(())
    }

    /// Replace the configuration (rewrites swanctl.conf, copies certs) and reload.
    pub fn reload(&mut self, config: CharonConfig) -> Result<()> {
        let text = config.swanctl_conf()?;
        if let Auth::Certs { cert, key, cas } = &config.auth {
            let sw = self.dir.join("swanctl");
            copy_into(cert, &sw.join("x509"))?;
            copy_into(key, &sw.join("private"))?;
            for ca in cas {
                copy_into(ca, &sw.join("x509ca"))?;
            }
        }
        write(&self.swanctl_conf, &text)?;
        self.config = config;
        self.load()
    }

    /// Initiate Child SA `child` (and its IKE SA if needed); waits for the result
    /// at most 30 s. The error contains swanctl's output and the charon log tail.
    pub fn initiate(&self, child: &str) -> Result<()> {
        self.swanctl_timeout(
            &["--initiate", "--child", child, "--timeout", "25"],
            Duration::from_secs(30),
        )
        .map(|_| ())
        .map_err(|e| self.with_log(e))
    }

    /// Terminate the IKE SA of the connection (and its children), waiting at most
    /// 15 s.
    pub fn terminate_ike(&self) -> Result<()> {
        let name = self.config.conn_name.clone();
        self.swanctl_timeout(&["--terminate", "--ike", &name, "--timeout", "10"], SHORT)
            .map(|_| ())
            .map_err(|e| self.with_log(e))
    }

    /// Rekey Child SA `child` (`swanctl --rekey --child`).
    pub fn rekey_child(&self, child: &str) -> Result<()> {
        self.swanctl(&["--rekey", "--child", child]).map(|_| ())
    }

    /// Rekey the IKE SA (`swanctl --rekey --ike`).
    pub fn rekey_ike(&self) -> Result<()> {
        let name = self.config.conn_name.clone();
        self.swanctl(&["--rekey", "--ike", &name]).map(|_| ())
    }

    /// `swanctl --list-sas --pretty` as text.
    pub fn list_sas_text(&self) -> Result<String> {
        Ok(self.swanctl(&["--list-sas", "--pretty"])?.stdout)
    }

    /// The IKE SAs (with their Child SAs) charon currently has.
    pub fn list_sas(&self) -> Result<Vec<IkeSa>> {
        parse_list_sas(&self.list_sas_text()?)
    }

    /// Poll until an IKE SA is ESTABLISHED with child `child` INSTALLED, at most
    /// `timeout`; returns that IKE SA.
    pub fn wait_established(&self, child: &str, timeout: Duration) -> Result<IkeSa> {
        let deadline = Instant::now() + timeout;
        loop {
            let sas = self.list_sas()?;
            if let Some(sa) = sas.into_iter().find(|s| {
                s.established() && s.children.iter().any(|c| c.name == child && c.installed())
            }) {
                return Ok(sa);
            }
            if Instant::now() >= deadline {
                return Err(self.with_log(LabError::Timeout {
                    what: format!("child SA `{child}` established"),
                    after: timeout,
                }));
            }
            thread::sleep(Duration::from_millis(100));
        }
    }

    /// Poll `list_sas` (every 100 ms, at most `timeout`) until `pred` holds;
    /// returns the SAs that satisfied it. `what` names the condition in the error.
    pub fn wait_for<F>(&self, what: &str, timeout: Duration, pred: F) -> Result<Vec<IkeSa>>
    where
        F: Fn(&[IkeSa]) -> bool,
    {
        let deadline = Instant::now() + timeout;
        loop {
            let sas = self.list_sas()?;
            if pred(&sas) {
                return Ok(sas);
            }
            if Instant::now() >= deadline {
                return Err(self.with_log(LabError::Timeout {
                    what: format!("{what}; SAs now: {sas:?}"),
                    after: timeout,
                }));
            }
            thread::sleep(Duration::from_millis(100));
        }
    }

    /// `ip route replace DEST dev ipsec0 src SRC` in charon's namespace (needed
    /// because of `install_routes = no`).
    pub fn route_ipsec0(&self, dest: &str, src: &str) -> Result<()> {
        let fam = if dest.contains(':') { "-6" } else { "-4" };
        cmd::run_ok(
            &[
                "ip", "-n", &self.ns, fam, "route", "replace", dest, "dev", "ipsec0", "src", src,
            ],
            SHORT,
        )
        .map(|_| ())
    }

    /// charon's log so far.
    pub fn log(&self) -> String {
        self.process.log()
    }

    /// Path of charon's log file.
    pub fn log_path(&self) -> &Path {
        self.process.log_path()
    }

    /// The scratch directory (configs, vici socket, log).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Path of the generated strongswan.conf.
    pub fn strongswan_conf_path(&self) -> &Path {
        &self.strongswan_conf
    }

    /// The configuration in use.
    pub fn config(&self) -> &CharonConfig {
        &self.config
    }

    /// Namespace name charon runs in.
    pub fn netns_name(&self) -> &str {
        &self.ns
    }

    /// Stop charon now (SIGTERM, up to 3 s, then SIGKILL).
    pub fn stop(&mut self) {
        self.process.stop(Duration::from_secs(3));
    }

    fn with_log(&self, e: LabError) -> LabError {
        LabError::Verify(format!(
            "{e}\n--- charon log tail ({}):\n{}",
            self.ns,
            tail(&self.log(), 40)
        ))
    }
}

impl Drop for Charon {
    fn drop(&mut self) {
        self.process.stop(Duration::from_secs(3));
        if thread::panicking() {
            eprintln!(
                "plexgate-lab: charon in {} log tail ({}):\n{}",
                self.ns,
                self.log_path().display(),
                tail(&self.log(), 60)
            );
        }
    }
}

fn write(p: &Path, text: &str) -> Result<()> {
    std::fs::write(p, text).map_err(|e| LabError::io(format!("writing {}", p.display()), e))
}

/// The last `n` lines of `s`.
pub fn tail(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

#[cfg(test)]
mod tests;
