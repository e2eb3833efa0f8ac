//! The failover topology (DESIGN.md flows 6 and 7): a strongSwan client (behind a
//! masquerading router if asked), two plexgate gateways on one LAN sharing the
//! gateway VIPA, the shared store (the embedded SQLite file, or etcd in a
//! namespace of its own on the gateways' HA network), and targets linked to both
//! gateways, each running `plexgate target` and a TCP sink bound to the DVIPA.
//!
//! ```text
//!  client 10.10.0.10 ──┐ LAN bridge 10.10.0.0/24, VIPA 10.10.0.100
//!  (or client ─ nat)   ├── gw1 10.10.0.2 ── links 10.9.N.0/30 ──┐
//!                      └── gw2 10.10.0.3 ── links 10.9.1N.0/30 ─┴ targets tN (DVIPA on lo)
//!  gw1 10.77.0.1, gw2 10.77.0.2, store 10.77.0.10: HA bridge 10.77.0.0/24
//! ```
//!
//! Used by `tests/failover.rs` and `plexgate bench failover`; the caller gives the
//! path of the `plexgate` binary. Everything is removed on drop.

use crate::charon::{Charon, CharonConfig, ChildConfig};
use crate::error::{LabError, Result};
use crate::labdir::LabDir;
use crate::netns::{Netns, Process};
use crate::streams::{RxClock, Streams, TcpSink};
use crate::switch::Switch;
use crate::topology::Topology;
use crate::traffic::{http_get_loop, HttpServer};
use serde_json::Value;
use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The gateway VIPA.
pub const VIPA: &str = "10.10.0.100";
/// The DVIPA.
pub const DVIPA: &str = "10.200.0.20";
/// The port of the targets' TCP sinks on the DVIPA.
pub const SINK_PORT: u16 = 5000;
/// The client's inner address.
pub const CLIENT_INNER: &str = "192.168.77.1";
const PSK: &str = "plexgate-failover-psk-0123456789";

/// Which shared store the gateways use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreKind {
    /// The embedded SQLite store (one file both gateway processes open).
    Embedded,
    /// etcd, in a namespace on the gateways' HA network.
    Etcd,
}

/// What to build.
#[derive(Debug, Clone)]
pub struct FailoverSpec {
    /// A short label for names.
    pub label: String,
    /// The `plexgate` binary.
    pub plexgate: PathBuf,
    /// The store.
    pub store: StoreKind,
    /// The client sits behind a masquerading router.
    pub nat: bool,
    /// Number of targets (1-9).
    pub targets: usize,
}

/// The running topology.
pub struct FailoverLab {
    /// The spec.
    pub spec: FailoverSpec,
    /// Counts what the sinks receive.
    pub clock: Arc<RxClock>,
    gws: [Option<Process>; 2],
    client: Option<Charon>,
    sinks: Vec<TcpSink>,
    http: Vec<HttpServer>,
    targets: Vec<Process>,
    etcd: Option<Process>,
    topo: Topology,
    _lan: Switch,
    ha: Switch,
    dir: LabDir,
}

fn host_t(n: usize) -> String {
    format!("t{n}")
}

impl FailoverLab {
    /// Build the topology, write the policies and keys, start the store and the
    /// targets (not the gateways).
    pub fn build(spec: FailoverSpec) -> Result<FailoverLab> {
        crate::prereq::check_prerequisites()?;
        let dir = LabDir::new(&spec.label)?;
        let mut topo = Topology::new();
        let mut lan = Switch::new("lan")?;
        let mut ha = Switch::new("ha")?;
        for h in ["client", "gw1", "gw2"] {
            topo.add_host(h)?;
        }
        for n in 1..=spec.targets {
            topo.add_host(&host_t(n))?;
            topo.link(
                "gw1",
                &[&format!("10.9.{n}.1/30")],
                &host_t(n),
                &[&format!("10.9.{n}.2/30")],
            )?;
            topo.link(
                "gw2",
                &[&format!("10.9.1{n}.1/30")],
                &host_t(n),
                &[&format!("10.9.1{n}.2/30")],
            )?;
        }
        lan.plug(topo.ns("gw1")?, "lan", "10.10.0.2/24")?;
        lan.plug(topo.ns("gw2")?, "lan", "10.10.0.3/24")?;
        ha.plug(topo.ns("gw1")?, "ha", "10.77.0.1/24")?;
        ha.plug(topo.ns("gw2")?, "ha", "10.77.0.2/24")?;
        if spec.nat {
            topo.add_host("nat")?;
            topo.link("client", &["192.168.50.2/24"], "nat", &["192.168.50.1/24"])?;
            lan.plug(topo.ns("nat")?, "lan", "10.10.0.10/24")?;
            let nat = topo.ns("nat")?;
            nat.enable_forwarding()?;
            // Masquerade what leaves on the LAN (nftables; no iptables here).
            for rule in [
                "add table ip nat",
                "add chain ip nat post { type nat hook postrouting priority 100 ; }",
                "add rule ip nat post oifname lan masquerade",
            ] {
                let mut argv = vec!["nft"];
                argv.extend(rule.split(' '));
                nat.exec_ok_timeout(&argv, Duration::from_secs(10))?;
            }
            topo.ns("client")?
                .ip(&["route", "add", "default", "via", "192.168.50.1"])?;
        } else {
            lan.plug(topo.ns("client")?, "lan", "10.10.0.10/24")?;
        }
        let c = topo.ns("client")?;
        c.add_loopback_addr(&format!("{CLIENT_INNER}/32"))?;
        c.disable_rp_filter()?;
        for h in ["gw1", "gw2"] {
            let g = topo.ns(h)?;
            g.disable_rp_filter()?;
            g.sysctl("net.ipv4.conf.default.rp_filter", "0")?;
        }
        let mut lab = FailoverLab {
            clock: RxClock::new(),
            gws: [None, None],
            client: None,
            sinks: Vec::new(),
            http: Vec::new(),
            targets: Vec::new(),
            etcd: None,
            topo,
            _lan: lan,
            ha,
            dir,
            spec,
        };
        lab.write_files()?;
        if lab.spec.store == StoreKind::Etcd {
            lab.start_etcd()?;
        }
        for n in 1..=lab.spec.targets {
            lab.start_target(n)?;
        }
        Ok(lab)
    }

    /// A host's namespace.
    pub fn ns(&self, host: &str) -> Result<&Netns> {
        self.topo.ns(host)
    }

    /// The scratch directory (policies, logs, the embedded store).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    fn write_files(&self) -> Result<()> {
        let secret = |name: &str, data: &[u8]| -> Result<()> {
            let p = self.dir().join(name);
            std::fs::write(&p, data).map_err(|e| LabError::io(format!("writing {name}"), e))?;
            crate::fixture::set_mode(&p, 0o600).map_err(|e| LabError::io("chmod", e))
        };
        secret("psk", PSK.as_bytes())?;
        secret("cluster.key", b"failover-cluster-key-0123456789abcdef")?;
        secret("store.key", &[b'a'; 64])?;
        for g in 1..=2 {
            let p = self.dir().join(format!("gw{g}.toml"));
            std::fs::write(&p, self.policy(g)).map_err(|e| LabError::io("policy", e))?;
        }
        Ok(())
    }

    /// The policy file of gateway `g` (1 or 2).
    fn policy(&self, g: usize) -> String {
        let other = 3 - g;
        let rank = |g: usize| if g == 1 { 200 } else { 100 };
        let store = match self.spec.store {
            StoreKind::Embedded => "kind = \"embedded\"\npath = \"store.db\"".to_string(),
            StoreKind::Etcd => {
                "kind = \"etcd\"\nendpoints = [\"http://10.77.0.10:2379\"]\nlease_seconds = 5"
                    .to_string()
            }
        };
        let mut t = format!(
            r#"[site]
name = "{label}"
gateway_vipas = ["{VIPA}"]
[[site.interface]]
name = "lan"
address = "10.10.0.{lan}/24"

[[peer]]
name = "client"
remote_address = "any"
local_id = "gw@plexgate.lab"
remote_id = "client@plexgate.lab"
auth = "psk"
psk_file = "psk"
proposals = ["aes128-sha256-x25519"]
  [[peer.child]]
  name = "net"
  local_ts = ["{DVIPA}/32"]
  remote_ts = ["192.168.77.0/24"]
  esp_proposals = ["aes128gcm16"]

[[spd]]
name = "dvipa"
local = "{DVIPA}"
remote = "192.168.77.0/24"
action = "protect"
peer = "client"
child = "net"

[[dvipa]]
address = "{DVIPA}"
ports = [{SINK_PORT}, 80]
targets = "all"
routing_gateway = "gw-1"
backup = [{{ gateway = "gw-2", rank = 100 }}]
plain_traffic = "drop"
"#,
            label = self.spec.label,
            lan = 1 + g,
        );
        for n in 1..=self.spec.targets {
            t.push_str(&format!(
                "\n[[target]]\nname = \"t{n}\"\naddress = \"10.9.{n}.2\"\nlink = \"gw1-t{n}\"\n\n[[link]]\nname = \"gw1-t{n}\"\ngateway = \"gw-1\"\ninterface = \"{if1}\"\nlocal = \"10.9.{n}.1\"\nsubnet = \"10.9.{n}.0/30\"\n\n[[link]]\nname = \"gw2-t{n}\"\ngateway = \"gw-2\"\ntarget = \"t{n}\"\ninterface = \"{if2}\"\nlocal = \"10.9.1{n}.1\"\nsubnet = \"10.9.1{n}.0/30\"\nremote = \"10.9.1{n}.2\"\n",
                if1 = self.topo.iface("gw1", &host_t(n)).unwrap_or_default(),
                if2 = self.topo.iface("gw2", &host_t(n)).unwrap_or_default(),
            ));
        }
        t.push_str(&format!(
            "\n[cluster]\nkey_file = \"cluster.key\"\ngateway_id = {g}\n\n[ha]\nname = \"gw-{g}\"\nrank = {r}\naddress = \"10.77.0.{g}\"\n  [[ha.peer]]\n  name = \"gw-{other}\"\n  id = {other}\n  address = \"10.77.0.{other}\"\n  rank = {ro}\n  [ha.store]\n  {store}\n  key_file = \"store.key\"\n\n[l2]\narp = true\ninterfaces = [\"lan\"]\n",
            r = rank(g),
            ro = rank(other),
            store = store.replace('\n', "\n  "),
        ));
        t
    }

    fn start_etcd(&mut self) -> Result<()> {
        self.topo.add_host("store")?;
        let ns = self.topo.ns("store")?;
        self.ha.plug(ns, "ha", "10.77.0.10/24")?;
        ns.ip(&["link", "set", "lo", "up"])?;
        let data = self.dir().join("etcd");
        let argv = [
            "etcd",
            "--name",
            "s",
            "--data-dir",
            data.to_str().unwrap_or_default(),
            "--listen-client-urls",
            "http://10.77.0.10:2379",
            "--advertise-client-urls",
            "http://10.77.0.10:2379",
            "--listen-peer-urls",
            "http://127.0.0.1:2380",
            "--initial-advertise-peer-urls",
            "http://127.0.0.1:2380",
            "--initial-cluster",
            "s=http://127.0.0.1:2380",
        ];
        let p = ns.spawn(&argv, &self.dir().join("etcd.log"))?;
        self.etcd = Some(p);
        ns.wait_listening(2379, false, Duration::from_secs(20))
    }

    /// Stop etcd (a store outage) or start it again on the same data.
    pub fn etcd_running(&mut self, on: bool) -> Result<()> {
        if on {
            self.start_etcd_again()
        } else {
            if let Some(mut p) = self.etcd.take() {
                p.kill();
            }
            Ok(())
        }
    }

    fn start_etcd_again(&mut self) -> Result<()> {
        let ns = self.topo.ns("store")?;
        let data = self.dir().join("etcd");
        let argv = [
            "etcd",
            "--name",
            "s",
            "--data-dir",
            data.to_str().unwrap_or_default(),
            "--listen-client-urls",
            "http://10.77.0.10:2379",
            "--advertise-client-urls",
            "http://10.77.0.10:2379",
            "--listen-peer-urls",
            "http://127.0.0.1:2380",
            "--initial-advertise-peer-urls",
            "http://127.0.0.1:2380",
            "--initial-cluster",
            "s=http://127.0.0.1:2380",
        ];
        self.etcd = Some(ns.spawn(&argv, &self.dir().join("etcd2.log"))?);
        ns.wait_listening(2379, false, Duration::from_secs(20))
    }

    fn start_target(&mut self, n: usize) -> Result<()> {
        let name = host_t(n);
        let ns = self.topo.ns(&name)?;
        ns.disable_rp_filter()?;
        let ctl = self.dir().join(format!("{name}.sock"));
        let pol = self.dir().join("gw1.toml");
        let argv = [
            self.spec.plexgate.to_str().unwrap_or_default(),
            "target",
            "--policy",
            pol.to_str().unwrap_or_default(),
            "--name",
            &name,
            "--ctl",
            ctl.to_str().unwrap_or_default(),
        ];
        let p = ns.spawn(&argv, &self.dir().join(format!("{name}.log")))?;
        wait_ctl(&ctl, Duration::from_secs(20))?;
        self.targets.push(p);
        let addr: SocketAddr = format!("{DVIPA}:{SINK_PORT}")
            .parse()
            .map_err(|_| LabError::Config("sink address".into()))?;
        self.sinks
            .push(TcpSink::start(ns, addr, self.clock.clone())?);
        let web: SocketAddr = format!("{DVIPA}:80")
            .parse()
            .map_err(|_| LabError::Config("web address".into()))?;
        self.http.push(HttpServer::start(ns, web, &name)?);
        Ok(())
    }

    /// `n` HTTP requests from the client to the DVIPA, each on a new connection;
    /// the answers name the target that served each.
    pub fn requests(&self, n: usize) -> Result<Vec<std::result::Result<String, String>>> {
        let web: SocketAddr = format!("{DVIPA}:80")
            .parse()
            .map_err(|_| LabError::Config("web address".into()))?;
        http_get_loop(self.topo.ns("client")?, web, n, Duration::from_secs(5))
    }

    /// Start gateway `g` (1 or 2) and wait for its control socket.
    pub fn start_gateway(&mut self, g: usize) -> Result<()> {
        let host = format!("gw{g}");
        let ctl = self.ctl_path(g);
        let pol = self.dir().join(format!("gw{g}.toml"));
        let log = self.dir().join(format!("gw{g}.log"));
        let argv = [
            self.spec.plexgate.to_str().unwrap_or_default(),
            "run",
            "--policy",
            pol.to_str().unwrap_or_default(),
            "--ctl",
            ctl.to_str().unwrap_or_default(),
        ];
        let p = self.topo.ns(&host)?.spawn(&argv, &log)?;
        self.gws[g - 1] = Some(p);
        wait_ctl(&ctl, Duration::from_secs(20))
    }

    fn ctl_path(&self, g: usize) -> PathBuf {
        self.dir().join(format!("gw{g}.sock"))
    }

    /// SIGKILL gateway `g` (a crash: nothing is handed over, its lease ends).
    pub fn kill_gateway(&mut self, g: usize) {
        if let Some(mut p) = self.gws[g - 1].take() {
            p.kill();
        }
    }

    /// SIGTERM gateway `g` (a clean stop: it hands its DVIPAs over).
    pub fn stop_gateway(&mut self, g: usize) {
        if let Some(mut p) = self.gws[g - 1].take() {
            p.terminate(Duration::from_secs(10));
        }
    }

    /// A control request to gateway `g`.
    pub fn ctl(&self, g: usize, req: &Value) -> Result<Value> {
        ctl_request(&self.ctl_path(g), req)
    }

    /// `plexgate status --json` of gateway `g`.
    pub fn status(&self, g: usize) -> Result<Value> {
        self.ctl(g, &serde_json::json!({"cmd": "status"}))
    }

    /// Whether gateway `g` routes the DVIPA now (its HA role).
    pub fn routes(&self, g: usize) -> bool {
        self.status(g)
            .is_ok_and(|s| s["ha"]["groups"][0]["routing"] == true)
    }

    /// Wait until `f` holds on gateway `g`'s status.
    pub fn wait_status(
        &self,
        g: usize,
        what: &str,
        timeout: Duration,
        f: impl Fn(&Value) -> bool,
    ) -> Result<Value> {
        let t = Instant::now();
        loop {
            if let Ok(s) = self.status(g) {
                if f(&s) {
                    return Ok(s);
                }
            }
            if t.elapsed() > timeout {
                return Err(LabError::Timeout {
                    what: format!("gw{g}: {what}"),
                    after: timeout,
                });
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Start the strongSwan client, connect it and route the DVIPA into its
    /// tunnel.
    pub fn connect_client(&mut self) -> Result<()> {
        let local = if self.spec.nat {
            "192.168.50.2"
        } else {
            "10.10.0.10"
        };
        let cc =
            CharonConfig::psk(local, VIPA, "client@plexgate.lab", "gw@plexgate.lab", PSK).child(
                ChildConfig::new("net", &format!("{CLIENT_INNER}/32"), &format!("{DVIPA}/32")),
            );
        let c = Charon::start(self.topo.ns("client")?, cc)?;
        c.initiate("net")?;
        c.wait_established("net", Duration::from_secs(15))?;
        c.route_ipsec0(&format!("{DVIPA}/32"), CLIENT_INNER)?;
        self.client = Some(c);
        Ok(())
    }

    /// The strongSwan client.
    pub fn client(&self) -> Option<&Charon> {
        self.client.as_ref()
    }

    /// `n` paced streams of known content from the client to the DVIPA's sinks.
    pub fn streams(&self, n: usize, rate: u64, seed: u64) -> Result<Streams> {
        let to: SocketAddr = format!("{DVIPA}:{SINK_PORT}")
            .parse()
            .map_err(|_| LabError::Config("sink address".into()))?;
        Streams::start(self.topo.ns("client")?, to, n, rate, seed)
    }

    /// Connections each target's sink has answered.
    pub fn served(&self) -> Vec<usize> {
        self.sinks.iter().map(TcpSink::served).collect()
    }

    /// Every daemon's log, for a failing test.
    pub fn logs(&self) -> String {
        let mut o = String::new();
        let read = |name: &str| std::fs::read_to_string(self.dir().join(name)).unwrap_or_default();
        for name in ["gw1.log", "gw2.log", "t1.log", "etcd.log"] {
            let l = read(name);
            let tail: Vec<&str> = l.lines().rev().take(60).collect();
            o.push_str(&format!("--- {name} (last lines)\n"));
            for line in tail.iter().rev() {
                o.push_str(line);
                o.push('\n');
            }
        }
        if let Some(c) = &self.client {
            o.push_str(&format!(
                "--- charon\n{}\n",
                crate::charon::tail(&c.log(), 40)
            ));
            if let Ok(sas) = c.list_sas_text() {
                o.push_str(&format!("--- charon SAs\n{sas}\n"));
            }
        }
        for g in 1..=2 {
            if let Ok(s) = self.status(g) {
                o.push_str(&format!("--- gw{g} status\n{s}\n"));
            }
        }
        for n in 1..=self.spec.targets {
            let p = self.dir().join(format!("t{n}.sock"));
            if let Ok(s) = ctl_request(&p, &serde_json::json!({"cmd": "status"})) {
                o.push_str(&format!("--- t{n} status\n{s}\n"));
            }
        }
        o
    }
}

impl Drop for FailoverLab {
    fn drop(&mut self) {
        self.sinks.clear();
        self.http.clear();
        self.client = None;
        for g in self.gws.iter_mut() {
            if let Some(mut p) = g.take() {
                p.kill();
            }
        }
        self.targets.clear();
        if let Some(mut p) = self.etcd.take() {
            p.kill();
        }
    }
}

/// One request on a daemon's control socket (one JSON line each way).
pub fn ctl_request(path: &Path, req: &Value) -> Result<Value> {
    let mut s =
        UnixStream::connect(path).map_err(|e| LabError::io(format!("{}", path.display()), e))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| LabError::io("ctl", e))?;
    writeln!(s, "{req}").map_err(|e| LabError::io("ctl write", e))?;
    let mut line = String::new();
    BufReader::new(s)
        .read_line(&mut line)
        .map_err(|e| LabError::io("ctl read", e))?;
    serde_json::from_str(&line).map_err(|e| LabError::Verify(format!("ctl answer {line:?}: {e}")))
}

fn wait_ctl(path: &Path, timeout: Duration) -> Result<()> {
    let t = Instant::now();
    while ctl_request(path, &serde_json::json!({"cmd": "status"})).is_err() {
        if t.elapsed() > timeout {
            return Err(LabError::Timeout {
                what: format!("control socket {}", path.display()),
                after: timeout,
            });
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}
