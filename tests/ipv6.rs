//! IPv6 DVIPAs (#10), end to end in namespaces, on `policy/site-c.toml` itself:
//! the shipped file and its keys copied to a temporary directory (addresses as
//! shipped; only the key log goes to the temporary directory), a strongSwan
//! branch gateway, plexgate, and the two targets `db-1` (IPv4 link) and `db-2`
//! (IPv6 link), each serving the IPv4 DVIPA 10.30.0.30 and the IPv6 DVIPA
//! fd00:30::30 — so every mix is exercised: IPv6 over IPv6, IPv6 over IPv4,
//! IPv4 over IPv6.
//!
//! ```text
//!  branch  eth0 203.0.113.5/24 ──── gw eth0 198.51.100.21/24 + VIPA .20
//!          lo 172.16.0.10, fd00:172:16::10      (onlink routes both ways)
//!  plain   eth0 2001:db8:d::5/64 ─── gw eth2 2001:db8:d::1/64 (plain IPv6 client)
//!  db1     eth0 10.9.2.2/30 ──────── gw pg-d1 10.9.2.1/30  (+ fd00:99:1::/64 for
//!                                    direct IPv6 replies: not a policy address)
//!  db2     eth0 fd00:9:2::2/126 ──── gw pg-d2 fd00:9:2::1/126
//! ```

mod common;

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::*;
use plexgate_lab::{Charon, CharonConfig, ChildConfig, HttpServer, Netns, Topology, Veth};

const DVIPA4: &str = "10.30.0.30";
const DVIPA6: &str = "fd00:30::30";
const BRANCH4: &str = "172.16.0.10";
const BRANCH6: &str = "fd00:172:16::10";
const PLAIN6: &str = "2001:db8:d::5";

struct Lab {
    // Field order = drop order: processes before namespaces.
    servers: Vec<Option<HttpServer>>,
    targets: Vec<Daemon>,
    branch: Charon,
    gw: Daemon,
    topo: Topology,
    dir: plexgate_lab::LabDir,
}

/// `policy/site-c.toml` and the keys it names, copied under `dir` with the
/// same relative layout (`policy/`, `keys/example/`), keys at mode 0600; the key
/// log goes to `dir`. Returns the policy path.
fn copy_site_c(dir: &Path) -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    std::fs::create_dir_all(dir.join("policy")).unwrap();
    std::fs::create_dir_all(dir.join("keys/example")).unwrap();
    for k in ["site-c.psk", "cluster.key"] {
        let data = std::fs::read(root.join("keys/example").join(k)).unwrap();
        write_secret(&dir.join("keys/example").join(k), &data);
    }
    let text = std::fs::read_to_string(root.join("policy/site-c.toml")).unwrap();
    let keylog = "\"/var/lib/plexgate/site-c.keylog\"";
    assert!(
        text.contains(keylog),
        "site-c.toml changed its key log line"
    );
    let text = text.replace(
        keylog,
        &format!("\"{}\"", dir.join("site-c.keylog").display()),
    );
    let p = dir.join("policy/site-c.toml");
    std::fs::write(&p, text).unwrap();
    p
}

fn psk() -> String {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(root.join("keys/example/site-c.psk"))
        .unwrap()
        .trim_end()
        .to_string()
}

/// The strongSwan side of the branch: the three children of `[[peer]] branch`.
fn branch_config() -> CharonConfig {
    let mut c = CharonConfig::psk(
        "203.0.113.5",
        "198.51.100.20",
        "203.0.113.5",
        "198.51.100.20",
        &psk(),
    );
    c.ike_proposals = vec!["aes256-sha384-ecp384".into()];
    c.child(
        ChildConfig::new("pool", "172.16.0.0/16", &format!("{DVIPA4}/32"))
            .esp(&["aes256gcm16-ecp384"]),
    )
    .child(
        ChildConfig::new("pool6", "fd00:172:16::/48", &format!("{DVIPA6}/128"))
            .esp(&["aes256gcm16-ecp384"]),
    )
    .child(ChildConfig::new("office", "172.16.0.0/16", "10.31.0.0/24").esp(&["aes256-sha256"]))
}

fn topology() -> Topology {
    let mut topo = Topology::new();
    for h in ["branch", "plain", "gw", "db1", "db2"] {
        topo.add_host(h).unwrap();
    }
    let ns = |h: &str| topo.ns(h).unwrap();
    Veth::connect(
        ns("gw"),
        "eth0",
        &["198.51.100.21/24"],
        ns("branch"),
        "eth0",
        &["203.0.113.5/24"],
    )
    .unwrap();
    Veth::connect(
        ns("gw"),
        "eth2",
        &["2001:db8:d::1/64"],
        ns("plain"),
        "eth0",
        &["2001:db8:d::5/64"],
    )
    .unwrap();
    Veth::connect(
        ns("gw"),
        "pg-d1",
        &["10.9.2.1/30", "fd00:99:1::1/64"],
        ns("db1"),
        "eth0",
        &["10.9.2.2/30", "fd00:99:1::2/64"],
    )
    .unwrap();
    Veth::connect(
        ns("gw"),
        "pg-d2",
        &["fd00:9:2::1/126"],
        ns("db2"),
        "eth0",
        &["fd00:9:2::2/126"],
    )
    .unwrap();
    let (g, b) = (ns("gw"), ns("branch"));
    g.add_addr("eth0", "198.51.100.20/24").unwrap();
    g.route_dev("203.0.113.0/24", "eth0", None).unwrap();
    g.enable_forwarding().unwrap();
    g.sysctl("net.ipv4.conf.default.rp_filter", "0").unwrap();
    b.route_dev("198.51.100.0/24", "eth0", None).unwrap();
    b.add_loopback_addr(&format!("{BRANCH4}/32")).unwrap();
    b.add_loopback_addr(&format!("{BRANCH6}/128")).unwrap();
    b.disable_rp_filter().unwrap();
    ns("plain")
        .route_via(&format!("{DVIPA6}/128"), "2001:db8:d::1")
        .unwrap();
    // Direct (plain) replies from the targets reach the plain client via the gateway.
    ns("db1")
        .route_via("2001:db8:d::/64", "fd00:99:1::1")
        .unwrap();
    ns("db2")
        .route_via("2001:db8:d::/64", "fd00:9:2::1")
        .unwrap();
    for t in ["db1", "db2"] {
        ns(t).disable_rp_filter().unwrap();
    }
    topo
}

fn lab(name: &str) -> Lab {
    prerequisites();
    let dir = labdir(name);
    let policy = copy_site_c(dir.path());
    let topo = topology();
    // The branch first: the gateway initiates `office` (start_action = start).
    let branch = Charon::start(topo.ns("branch").unwrap(), branch_config()).unwrap();
    let gw = Daemon::gateway(topo.ns("gw").unwrap(), dir.path(), &policy, "gw");
    let mut targets = Vec::new();
    let mut servers = Vec::new();
    for (host, name) in [("db1", "db-1"), ("db2", "db-2")] {
        let ns = topo.ns(host).unwrap();
        targets.push(Daemon::target(ns, dir.path(), &policy, name));
        for a in [
            SocketAddr::new(DVIPA6.parse().unwrap(), 80),
            SocketAddr::new(DVIPA4.parse().unwrap(), 5432),
        ] {
            servers.push(Some(HttpServer::start(ns, a, name).unwrap()));
        }
    }
    let l = Lab {
        servers,
        targets,
        branch,
        gw,
        topo,
        dir,
    };
    l.wait_listeners(DVIPA6, 80, 2);
    l.wait_listeners(DVIPA4, 5432, 2);
    l
}

impl Lab {
    fn ns(&self, h: &str) -> &Netns {
        self.topo.ns(h).unwrap()
    }

    fn logs(&self) -> String {
        let mut s = format!(
            "gateway status:\n{}\ngateway log:\n{}\n",
            serde_json::to_string_pretty(&self.gw.status()).unwrap(),
            self.gw.log()
        );
        for t in &self.targets {
            s.push_str(&format!(
                "target status: {}\nlog:\n{}\n",
                t.status(),
                t.log()
            ));
        }
        s
    }

    /// Wait until the DPT row of (dvipa, port) has `want` listening targets.
    fn wait_listeners(&self, dvipa: &str, port: u16, want: usize) {
        self.gw.wait_status(
            &format!("{want} listeners on [{dvipa}]:{port}"),
            Duration::from_secs(15),
            |s| {
                s["dpt"].as_array().into_iter().flatten().any(|row| {
                    row["dvipa"] == dvipa
                        && row["port"] == port
                        && row["targets"].as_array().is_some_and(|t| {
                            t.iter().filter(|t| t["listening"] == true).count() == want
                        })
                })
            },
        );
    }

    /// Bring up the branch's Child SAs `children` and route their DVIPAs into ipsec0.
    fn connect(&self, children: &[&str]) {
        for c in children {
            if let Err(e) = self.branch.initiate(c) {
                panic!("initiate {c}: {e}\n{}\n{}", self.branch.log(), self.logs());
            }
            if let Err(e) = self.branch.wait_established(c, Duration::from_secs(15)) {
                panic!(
                    "{c} not established: {e}\n{}\n{}",
                    self.branch.log(),
                    self.logs()
                );
            }
        }
        self.branch
            .route_ipsec0(&format!("{DVIPA6}/128"), BRANCH6)
            .unwrap();
        self.branch
            .route_ipsec0(&format!("{DVIPA4}/32"), BRANCH4)
            .unwrap();
    }

    /// `n` HTTP GETs from `src` in `host` to `to`, each on a new connection:
    /// the answers by body (which must be exactly a target's name).
    fn requests(
        &self,
        host: &str,
        src: &'static str,
        to: SocketAddr,
        n: usize,
    ) -> BTreeMap<String, usize> {
        let answers = self
            .ns(host)
            .run_in(move || {
                (0..n)
                    .map(|_| http_get_from(src, to).map_err(|e| e.to_string()))
                    .collect::<Vec<_>>()
            })
            .unwrap();
        let got = plexgate_lab::traffic::count_by_server(&answers);
        assert!(
            got.keys().all(|k| k == "db-1" || k == "db-2"),
            "answers {got:?}\n{answers:?}\n{}",
            self.logs()
        );
        got
    }
}

/// One `GET /` over a fresh connection bound to `src`; the body.
fn http_get_from(src: &str, to: SocketAddr) -> std::io::Result<String> {
    use std::io::{Read, Write};
    let timeout = Duration::from_secs(5);
    let src: IpAddr = src.parse().unwrap();
    let dom = if src.is_ipv6() {
        socket2::Domain::IPV6
    } else {
        socket2::Domain::IPV4
    };
    let s = socket2::Socket::new(dom, socket2::Type::STREAM, None)?;
    s.bind(&SocketAddr::new(src, 0).into())?;
    s.connect_timeout(&to.into(), timeout)?;
    let mut s: std::net::TcpStream = s.into();
    s.set_read_timeout(Some(timeout))?;
    s.write_all(format!("GET / HTTP/1.0\r\nHost: {to}\r\n\r\n").as_bytes())?;
    let mut resp = Vec::new();
    s.read_to_end(&mut resp)?;
    let text = String::from_utf8_lossy(&resp);
    match text.split_once("\r\n\r\n") {
        Some((head, body)) if head.starts_with("HTTP/1.0 200") => Ok(body.to_string()),
        _ => Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("not an HTTP answer: {text:?}"),
        )),
    }
}

#[test]
fn site_c_ipv6_dvipa_through_ipsec_over_ipv6_and_ipv4_links() {
    let mut l = lab("v6-ipsec");
    l.connect(&["pool6", "pool"]);
    // HTTP over the IPv6 DVIPA through IPsec, round-robin over db-1 (IPv6 over
    // an IPv4 link) and db-2 (IPv6 over an IPv6 link).
    let to6 = SocketAddr::new(DVIPA6.parse().unwrap(), 80);
    let got = l.requests("branch", BRANCH6, to6, 6);
    assert_eq!(got.get("db-1"), Some(&3), "{got:?}\n{}", l.logs());
    assert_eq!(got.get("db-2"), Some(&3), "{got:?}\n{}", l.logs());
    // The IPv4 DVIPA over both links, db-2's an IPv6 link.
    let to4 = SocketAddr::new(DVIPA4.parse().unwrap(), 5432);
    let got = l.requests("branch", BRANCH4, to4, 4);
    assert_eq!(got.values().sum::<usize>(), 4, "{got:?}");
    assert!(got.get("db-2").is_some_and(|n| *n >= 1), "{got:?}");
    // It all went through the SAs: ESP both ways on pool6 and pool.
    let s = l.gw.status();
    let sas = s["child_sas"].as_array().unwrap();
    for child in ["pool6", "pool"] {
        for dir in ["inbound", "outbound"] {
            assert!(
                sas.iter().any(|c| c["child"] == child
                    && c["direction"] == dir
                    && c["packets"].as_u64() > Some(0)),
                "no {dir} ESP on {child}: {s}"
            );
        }
    }
    // Bulk, byte for byte, over the IPv6 DVIPA to db-2 only (the others stop).
    for sv in l.servers.iter_mut() {
        sv.take().unwrap().stop();
    }
    l.wait_listeners(DVIPA6, 80, 0);
    let up = plexgate_lab::traffic::tcp_transfer(
        l.ns("db2"),
        to6,
        l.ns("branch"),
        4 << 20,
        6,
        Duration::from_secs(60),
    )
    .unwrap_or_else(|e| panic!("IPv6 transfer: {e}\n{}", l.logs()));
    assert_eq!(up.bytes, 4 << 20);
    // db-2 knows its gateway on its IPv6 link, owned at epoch 1.
    let t = l.targets[1].status();
    assert_eq!(t["gateways"][0]["address"], "fd00:9:2::1", "{t}");
    assert!(
        t["owners"]
            .as_array()
            .unwrap()
            .iter()
            .any(|o| o["dvipa"] == DVIPA6 && o["gateway"] == 7 && o["epoch"] == 1),
        "{t}"
    );
    assert_eq!(t["drops"]["spoof"], 0, "{t}");
    drop(l.dir);
}

#[test]
fn site_c_plain_ipv6_to_the_dvipa_is_distributed() {
    let l = lab("v6-plain");
    let to6 = SocketAddr::new(DVIPA6.parse().unwrap(), 80);
    let got = l.requests("plain", PLAIN6, to6, 10);
    // Round-robin over db-1 (IPv4 link) and db-2 (IPv6 link); replies leave
    // the targets directly.
    assert_eq!(got.get("db-1"), Some(&5), "{got:?}\n{}", l.logs());
    assert_eq!(got.get("db-2"), Some(&5), "{got:?}\n{}", l.logs());
    let s = l.gw.status();
    assert_eq!(s["distrib_drops"]["spoof"], 0, "{s}");
    // Plain traffic to the IPv4 DVIPA stays dropped (plain_traffic = "drop").
    drop(l.dir);
}
