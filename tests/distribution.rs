//! Distribution end to end: a strongSwan client → plexgate gateway → three targets
//! (`plexgate target` + an HTTP server bound to the DVIPA), each target in its own
//! namespace on its own veth link, GRE over raw IP protocol 47 sockets.
//!
//! ```text
//!  client  lo 192.168.77.1/32
//!          gw: 10.10.0.1/24 ───── client: 10.10.0.2/24 (gateway VIPA)   gateway
//!                                 web1: 10.9.1.1/30 ───── gw: 10.9.1.2/30  web1 (lo: DVIPA)
//!                                 web2: 10.9.2.1/30 ───── gw: 10.9.2.2/30  web2 (lo: DVIPA)
//!                                 web3: 10.9.3.1/30 ───── gw: 10.9.3.2/30  web3 (lo: DVIPA)
//! ```
//! The client's Child SA covers 192.168.77.1/32 === DVIPA/32.

mod common;

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::*;
use plexgate_lab::{Charon, CharonConfig, ChildConfig, HttpServer, Netns, Topology};

const CLIENT_OUT: &str = "10.10.0.1";
const GW_OUT: &str = "10.10.0.2";
const CLIENT_IN: &str = "192.168.77.1";
const DVIPA: &str = "10.200.0.20";
const PORT: u16 = 80;
const TARGETS: usize = 3;

struct Lab {
    // Field order = drop order: processes before namespaces.
    servers: Vec<Option<HttpServer>>,
    targets: Vec<Daemon>,
    client: Option<Charon>,
    gw: Daemon,
    topo: Topology,
    dir: plexgate_lab::LabDir,
}

fn tname(i: usize) -> String {
    format!("web-{}", i + 1)
}

fn host(i: usize) -> String {
    format!("web{}", i + 1)
}

/// The site policy: one DVIPA over three targets; `dvipa_extra` is appended to the
/// `[[dvipa]]` table (method, weights, plain_traffic).
fn policy(dir: &Path, dvipa_extra: &str) -> PathBuf {
    write_secret(&dir.join("psk"), PSK.as_bytes());
    write_secret(&dir.join("cluster.key"), b"plexgate-distribution-test-cluster-key-0123456789");
    let mut targets = String::new();
    for i in 0..TARGETS {
        let n = i + 1;
        targets.push_str(&format!(
            r#"
[[target]]
name = "{t}"
address = "10.9.{n}.2"
link = "to-{t}"

[[link]]
name = "to-{t}"
interface = "{h}"
local = "10.9.{n}.1"
subnet = "10.9.{n}.0/30"
remote = "10.9.{n}.2"
"#,
            t = tname(i),
            h = host(i)
        ));
    }
    let text = format!(
        r#"
[site]
name = "distrib"
gateway_vipas = ["{GW_OUT}"]

[[site.interface]]
name = "uplink"
address = "{GW_OUT}/24"

[[peer]]
name = "client"
remote_address = "any"
local_id = "gw@plexgate.lab"
remote_id = "client@plexgate.lab"
auth = "psk"
psk_file = "psk"
proposals = ["aes128-sha256-x25519"]

  [[peer.child]]
  name = "web"
  local_ts = ["{DVIPA}/32"]
  remote_ts = ["192.168.77.0/24"]
  esp_proposals = ["aes128gcm16"]

[[spd]]
name = "web"
direction = "both"
local = "{DVIPA}"
remote = "192.168.77.0/24"
action = "protect"
peer = "client"
child = "web"

[[dvipa]]
address = "{DVIPA}"
ports = [{PORT}]
targets = "all"
{dvipa_extra}
{targets}
[cluster]
key_file = "cluster.key"
gateway_id = 1
port = 7600
"#
    );
    let p = dir.join("gateway.toml");
    std::fs::write(&p, text).unwrap();
    p
}

/// Build the whole topology, start gateway, targets, HTTP servers and strongSwan,
/// and bring the tunnel up.
fn lab(name: &str, dvipa_extra: &str) -> Lab {
    prerequisites();
    let dir = labdir(name);
    let mut topo = Topology::new();
    topo.add_host("client").unwrap();
    topo.add_host("gw").unwrap();
    topo.link("client", &[&format!("{CLIENT_OUT}/24")], "gw", &[&format!("{GW_OUT}/24")]).unwrap();
    for i in 0..TARGETS {
        let n = i + 1;
        topo.add_host(&host(i)).unwrap();
        topo.link("gw", &[&format!("10.9.{n}.1/30")], &host(i), &[&format!("10.9.{n}.2/30")]).unwrap();
        assert_eq!(topo.iface("gw", &host(i)).unwrap(), host(i));
    }
    let c = topo.ns("client").unwrap();
    c.add_loopback_addr(&format!("{CLIENT_IN}/32")).unwrap();
    c.disable_rp_filter().unwrap();
    let g = topo.ns("gw").unwrap();
    g.disable_rp_filter().unwrap();
    g.sysctl("net.ipv4.conf.default.rp_filter", "0").unwrap();
    g.enable_forwarding().unwrap();
    for i in 0..TARGETS {
        let t = topo.ns(&host(i)).unwrap();
        t.disable_rp_filter().unwrap();
        // Plain (non-IPsec) replies leave the target directly, via the gateway.
        t.route_via("10.10.0.0/24", &format!("10.9.{}.1", i + 1)).unwrap();
    }
    let pol = policy(dir.path(), dvipa_extra);
    let gw = Daemon::gateway(g, dir.path(), &pol, "gw");
    let mut targets = Vec::new();
    let mut servers = Vec::new();
    for i in 0..TARGETS {
        let t = topo.ns(&host(i)).unwrap();
        targets.push(Daemon::target(t, dir.path(), &pol, &tname(i)));
        servers.push(Some(HttpServer::start(t, dvipa_addr(), &tname(i)).unwrap()));
    }
    let cc = CharonConfig::psk(CLIENT_OUT, GW_OUT, "client@plexgate.lab", "gw@plexgate.lab", PSK);
    let cc = cc.child(ChildConfig::new("web", &format!("{CLIENT_IN}/32"), &format!("{DVIPA}/32")).esp(&["aes128gcm16"]));
    let client = Charon::start(c, cc).unwrap();
    let l = Lab { servers, targets, client: Some(client), gw, topo, dir };
    l.connect();
    l.wait_listeners(&[true; TARGETS]);
    l
}

fn dvipa_addr() -> SocketAddr {
    SocketAddr::new(DVIPA.parse::<IpAddr>().unwrap(), PORT)
}

impl Lab {
    fn client(&self) -> &Charon {
        self.client.as_ref().unwrap()
    }

    fn ns(&self, h: &str) -> &Netns {
        self.topo.ns(h).unwrap()
    }

    fn logs(&self) -> String {
        let mut s = format!("gateway status:\n{}\ngateway log:\n{}\n", serde_json::to_string_pretty(&self.gw.status()).unwrap(), self.gw.log());
        for (i, t) in self.targets.iter().enumerate() {
            s.push_str(&format!("{} status: {}\n{} log:\n{}\n", tname(i), t.status(), tname(i), t.log()));
        }
        s
    }

    fn connect(&self) {
        let c = self.client();
        if let Err(e) = c.initiate("web") {
            panic!("initiate failed: {e}\ncharon log:\n{}\n{}", c.log(), self.logs());
        }
        if let Err(e) = c.wait_established("web", Duration::from_secs(15)) {
            panic!("not established: {e}\ncharon log:\n{}\n{}", c.log(), self.logs());
        }
        c.route_ipsec0(&format!("{DVIPA}/32"), CLIENT_IN).unwrap();
        self.gw.wait_status("Child SA installed", Duration::from_secs(5), |s| child_sa_count(s) >= 2);
    }

    /// Wait until the gateway's DPT shows exactly the targets in `up` as listening
    /// on the DVIPA port (SRVSTAT from each target's listener scan).
    fn wait_listeners(&self, up: &[bool]) {
        let want = up.iter().filter(|u| **u).count();
        self.gw.wait_status("DPT listeners", Duration::from_secs(10), |s| {
            let dpt = s["dpt"].as_str().unwrap_or("");
            dpt_targets(dpt) == want
        });
    }

    /// `n` HTTP GETs from the client's inner address over new connections.
    fn requests(&self, n: usize) -> BTreeMap<String, usize> {
        let answers = self
            .ns("client")
            .run_in(move || {
                (0..n)
                    .map(|_| http_get_from(CLIENT_IN, dvipa_addr(), Duration::from_secs(5)).map_err(|e| e.to_string()))
                    .collect::<Vec<_>>()
            })
            .unwrap();
        plexgate_lab::traffic::count_by_server(&answers)
    }
}

/// Number of target entries in the DPT debug string (counts `NodeId(` occurrences).
fn dpt_targets(dpt: &str) -> usize {
    dpt.matches("NodeId(").count()
}

/// One `GET /` over a fresh connection bound to `src`.
fn http_get_from(src: &str, to: SocketAddr, timeout: Duration) -> std::io::Result<String> {
    use std::io::{Read, Write};
    let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)?;
    s.bind(&SocketAddr::new(src.parse::<IpAddr>().unwrap(), 0).into())?;
    s.connect_timeout(&to.into(), timeout)?;
    let mut s: std::net::TcpStream = s.into();
    s.set_read_timeout(Some(timeout))?;
    s.set_write_timeout(Some(timeout))?;
    s.write_all(format!("GET / HTTP/1.0\r\nHost: {to}\r\n\r\n").as_bytes())?;
    let mut resp = Vec::new();
    s.read_to_end(&mut resp)?;
    let text = String::from_utf8_lossy(&resp);
    match text.split_once("\r\n\r\n") {
        Some((head, body)) if head.starts_with("HTTP/1.") => Ok(body.to_string()),
        _ => Err(std::io::Error::new(std::io::ErrorKind::InvalidData, format!("not an HTTP response: {text:?}"))),
    }
}

#[test]
fn one_request_through_the_tunnel() {
    let l = lab("dist-one", "");
    let got = l.requests(1);
    assert_eq!(got.values().sum::<usize>(), 1, "{got:?}\n{}", l.logs());
    assert!(got.keys().all(|k| k.starts_with("web-")), "{got:?}\n{}", l.logs());
    drop(l.dir);
}
