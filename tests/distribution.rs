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
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::*;
use plexgate::site_template::{DvipaSite, TargetLink};
use plexgate_lab::{Charon, CharonConfig, ChildConfig, HttpServer, Netns, Topology};

const CLIENT_OUT: &str = "10.10.0.1";
const GW_OUT: &str = "10.10.0.2";
const CLIENT_IN: &str = "192.168.77.1";
const DVIPA: &str = "10.200.0.20";
const PORT: u16 = 80;
const TARGETS: usize = 3;
const CLUSTER_KEY: &[u8] = b"plexgate-distribution-test-cluster-key-0123456789";

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
    let mut site = DvipaSite::new("distrib", GW_OUT.parse().unwrap(), DVIPA.parse().unwrap());
    site.gateway_id = "gw@plexgate.lab".into();
    site.client_id = "client@plexgate.lab".into();
    site.ike_proposals = vec!["aes128-sha256-x25519".into()];
    site.ports = vec![PORT];
    site.dvipa_extra = dvipa_extra.to_string();
    site.targets = (0..TARGETS)
        .map(|i| TargetLink::new(&tname(i), &host(i), Ipv4Addr::new(10, 9, i as u8 + 1, 1)))
        .collect();
    site.write(dir, PSK.as_bytes(), CLUSTER_KEY).unwrap()
}

/// How the lab is brought up.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// strongSwan client with a Child SA to the DVIPA.
    Ipsec,
    /// No IPsec: the client routes the DVIPA via the gateway in the clear.
    Plain,
}

/// Build the whole topology, start gateway, targets, HTTP servers and strongSwan,
/// and bring the tunnel up.
fn lab(name: &str, dvipa_extra: &str, mode: Mode) -> Lab {
    prerequisites();
    let dir = labdir(name);
    let mut topo = Topology::new();
    topo.add_host("client").unwrap();
    topo.add_host("gw").unwrap();
    topo.link(
        "client",
        &[&format!("{CLIENT_OUT}/24")],
        "gw",
        &[&format!("{GW_OUT}/24")],
    )
    .unwrap();
    for i in 0..TARGETS {
        let n = i + 1;
        topo.add_host(&host(i)).unwrap();
        topo.link(
            "gw",
            &[&format!("10.9.{n}.1/30")],
            &host(i),
            &[&format!("10.9.{n}.2/30")],
        )
        .unwrap();
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
        t.route_via("10.10.0.0/24", &format!("10.9.{}.1", i + 1))
            .unwrap();
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
    let client = match mode {
        Mode::Ipsec => {
            let cc = CharonConfig::psk(
                CLIENT_OUT,
                GW_OUT,
                "client@plexgate.lab",
                "gw@plexgate.lab",
                PSK,
            );
            let cc = cc.child(
                ChildConfig::new("web", &format!("{CLIENT_IN}/32"), &format!("{DVIPA}/32"))
                    .esp(&["aes128gcm16"]),
            );
            Some(Charon::start(c, cc).unwrap())
        }
        Mode::Plain => {
            c.route_via(&format!("{DVIPA}/32"), GW_OUT).unwrap();
            None
        }
    };
    let l = Lab {
        servers,
        targets,
        client,
        gw,
        topo,
        dir,
    };
    if mode == Mode::Ipsec {
        l.connect();
    }
    l.wait_listeners(TARGETS);
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
        let mut s = format!(
            "gateway status:\n{}\ngateway log:\n{}\n",
            serde_json::to_string_pretty(&self.gw.status()).unwrap(),
            self.gw.log()
        );
        for (i, t) in self.targets.iter().enumerate() {
            s.push_str(&format!(
                "{} status: {}\n{} log:\n{}\n",
                tname(i),
                t.status(),
                tname(i),
                t.log()
            ));
        }
        s
    }

    fn connect(&self) {
        let c = self.client();
        if let Err(e) = c.initiate("web") {
            panic!(
                "initiate failed: {e}\ncharon log:\n{}\n{}",
                c.log(),
                self.logs()
            );
        }
        if let Err(e) = c.wait_established("web", Duration::from_secs(15)) {
            panic!(
                "not established: {e}\ncharon log:\n{}\n{}",
                c.log(),
                self.logs()
            );
        }
        c.route_ipsec0(&format!("{DVIPA}/32"), CLIENT_IN).unwrap();
        self.gw
            .wait_status("Child SA installed", Duration::from_secs(5), |s| {
                child_sa_count(s) >= 2
            });
    }

    /// Wait until the gateway's DPT shows exactly `want` targets listening on the
    /// DVIPA port (SRVSTAT from each target's listener scan).
    fn wait_listeners(&self, want: usize) {
        self.gw
            .wait_status("DPT listeners", Duration::from_secs(10), |s| {
                plexgate::status::listening_targets(s) == want
            });
    }

    /// `n` HTTP GETs from `src` (in the client namespace) over new connections.
    fn requests_from(&self, src: &'static str, n: usize) -> BTreeMap<String, usize> {
        let answers = self
            .ns("client")
            .run_in(move || {
                (0..n)
                    .map(|_| {
                        http_get_from(src, dvipa_addr(), Duration::from_secs(5))
                            .map_err(|e| e.to_string())
                    })
                    .collect::<Vec<_>>()
            })
            .unwrap();
        plexgate_lab::traffic::count_by_server(&answers)
    }

    /// `n` HTTP GETs from the client's inner address (through the tunnel).
    fn requests(&self, n: usize) -> BTreeMap<String, usize> {
        self.requests_from(CLIENT_IN, n)
    }

    /// A distribution drop counter from the gateway's status.
    fn drops(&self, reason: &str) -> u64 {
        let s = self.gw.status();
        s["distrib_drops"][reason]
            .as_u64()
            .unwrap_or_else(|| panic!("no drop counter {reason}: {s}"))
    }

    /// The outbound ESP packet counter (all outbound SAs).
    fn esp_out_packets(&self) -> u64 {
        let s = self.gw.status();
        s["child_sas"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|c| c["direction"] == "outbound")
            .map(|c| c["packets"].as_u64().unwrap())
            .sum()
    }
}

/// The node id the gateway gives target `i` (`config::target_node`: 1000 + index).
fn node(i: usize) -> u64 {
    1000 + i as u64
}

/// Assert every answer came from a server and none failed.
fn assert_no_errors(got: &BTreeMap<String, usize>, l: &Lab) {
    assert!(
        !got.contains_key("<error>"),
        "requests failed: {got:?}\n{}",
        l.logs()
    );
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
        _ => Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("not an HTTP response: {text:?}"),
        )),
    }
}

#[test]
fn one_request_through_the_tunnel() {
    let l = lab("dist-one", "", Mode::Ipsec);
    let got = l.requests(1);
    assert_eq!(got.values().sum::<usize>(), 1, "{got:?}\n{}", l.logs());
    assert!(
        got.keys().all(|k| k.starts_with("web-")),
        "{got:?}\n{}",
        l.logs()
    );
    drop(l.dir);
}

#[test]
fn round_robin_300_requests_spread_evenly() {
    let l = lab("dist-rr", "", Mode::Ipsec);
    let got = l.requests(300);
    assert_no_errors(&got, &l);
    for i in 0..TARGETS {
        let n = got.get(&tname(i)).copied().unwrap_or(0);
        assert!(
            (99..=101).contains(&n),
            "round-robin spread {got:?}\n{}",
            l.logs()
        );
    }
    let s = l.gw.status();
    assert_eq!(s["distrib_drops"]["spoof"], 0, "{s}");
    drop(l.dir);
}

#[test]
fn weighted_round_robin_3_2_1() {
    let extra = "method = \"weighted-round-robin\"\nweights = { web-1 = 3, web-2 = 2, web-3 = 1 }";
    let l = lab("dist-wrr", extra, Mode::Ipsec);
    let got = l.requests(300);
    assert_no_errors(&got, &l);
    for (i, w) in [3usize, 2, 1].into_iter().enumerate() {
        let want = 300 * w / 6;
        let n = got.get(&tname(i)).copied().unwrap_or(0);
        // Within 5 % of all requests.
        assert!(
            n.abs_diff(want) <= 15,
            "weighted spread {got:?}, want {want} for {}",
            tname(i)
        );
    }
    drop(l.dir);
}

#[test]
fn drained_target_gets_no_new_connections_but_keeps_its_open_one() {
    use std::io::{Read, Write};
    let l = lab("dist-drain", "", Mode::Ipsec);
    // An open connection: half a request, so the (single-threaded) server waits.
    let mut open = l
        .ns("client")
        .run_in(|| -> std::io::Result<std::net::TcpStream> {
            let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)?;
            s.bind(&SocketAddr::new(CLIENT_IN.parse::<IpAddr>().unwrap(), 0).into())?;
            s.connect_timeout(&dvipa_addr().into(), Duration::from_secs(5))?;
            let mut s: std::net::TcpStream = s.into();
            s.set_read_timeout(Some(Duration::from_secs(5)))?;
            s.write_all(b"GET / HTTP/1.0\r\n")?;
            Ok(s)
        })
        .unwrap()
        .unwrap();
    // Which target has it?
    let s = l.gw.wait_status(
        "the open connection in the CRT",
        Duration::from_secs(5),
        |s| {
            s["distrib_targets"]
                .as_array()
                .is_some_and(|a| a.iter().any(|t| t["connections"] == 1))
        },
    );
    let holder = s["distrib_targets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["connections"] == 1)
        .unwrap()["node"]
        .as_u64()
        .unwrap();
    let i = (holder - 1000) as usize;
    let r = l
        .gw
        .ctl(serde_json::json!({"cmd": "set-weight", "dvipa": DVIPA, "node": holder, "weight": 0}));
    assert_eq!(r["ok"], true, "{r}");
    let got = l.requests(20);
    assert_no_errors(&got, &l);
    assert_eq!(
        got.get(&tname(i)),
        None,
        "drained {} still got new connections: {got:?}",
        tname(i)
    );
    assert_eq!(got.values().sum::<usize>(), 20);
    // The open connection still works and is answered by the drained target.
    open.write_all(b"\r\n").unwrap();
    let mut resp = String::new();
    open.read_to_string(&mut resp)
        .unwrap_or_else(|e| panic!("open connection broke: {e}\n{}", l.logs()));
    assert!(
        resp.ends_with(&tname(i)),
        "open connection answered {resp:?}, expected {}",
        tname(i)
    );
    // Undrained, it gets its share again.
    let r = l.gw.ctl(
        serde_json::json!({"cmd": "set-weight", "dvipa": DVIPA, "node": node(i), "weight": 1}),
    );
    assert_eq!(r["ok"], true, "{r}");
    let got = l.requests(9);
    assert_no_errors(&got, &l);
    assert!(
        got.get(&tname(i)).copied().unwrap_or(0) >= 2,
        "undrained target got {got:?}"
    );
    drop(l.dir);
}

#[test]
fn stopped_server_moves_new_connections_to_the_others() {
    let mut l = lab("dist-srvstat", "", Mode::Ipsec);
    let served = l.servers[1].take().unwrap().stop();
    assert!(served <= 1);
    l.wait_listeners(TARGETS - 1);
    let got = l.requests(30);
    assert_no_errors(&got, &l);
    assert_eq!(got.get(&tname(1)), None, "{got:?}");
    assert_eq!(got.get(&tname(0)).copied().unwrap_or(0), 15, "{got:?}");
    assert_eq!(got.get(&tname(2)).copied().unwrap_or(0), 15, "{got:?}");
    drop(l.dir);
}

#[test]
fn spoofed_gre_on_the_wrong_link_is_dropped_and_counted() {
    let l = lab("dist-spoof", "", Mode::Ipsec);
    // Warm up: the tunnel works.
    assert_no_errors(&l.requests(3), &l);
    let spoof_before = l.drops("spoof");
    let esp_before = l.esp_out_packets();
    // A UDP listener on the client's inner address must not see the forged packet.
    let listener = l
        .ns("client")
        .run_in(|| {
            let u = std::net::UdpSocket::bind((CLIENT_IN, 9999)).unwrap();
            u.set_read_timeout(Some(Duration::from_millis(1500)))
                .unwrap();
            u
        })
        .unwrap();
    // From web2's namespace, on web2's link: outer source = web-1's address, GRE key
    // = web-1's node id, inner UDP DVIPA:80 → 192.168.77.1:9999.
    let script = format!(
        r#"
import socket, struct
def csum(b):
    if len(b) % 2: b += b'\0'
    s = sum(struct.unpack('!%dH' % (len(b) // 2), b))
    while s >> 16: s = (s & 0xffff) + (s >> 16)
    return (~s) & 0xffff
def ip(src, dst, proto, payload):
    h = struct.pack('!BBHHHBBH4s4s', 0x45, 0, 20 + len(payload), 1, 0, 64, proto, 0, socket.inet_aton(src), socket.inet_aton(dst))
    return h[:10] + struct.pack('!H', csum(h)) + h[12:] + payload
data = b'forged'
udp = struct.pack('!HHHH', 80, 9999, 8 + len(data), 0) + data
inner = ip('{DVIPA}', '{CLIENT_IN}', 17, udp)
gre = struct.pack('!HHI', 0x2000, 0x0800, {node}) + inner
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
for _ in range(5):
    s.sendto(ip('10.9.1.2', '10.9.2.1', 47, gre), ('10.9.2.1', 0))
"#,
        node = node(0)
    );
    let out = l
        .ns(&host(1))
        .exec_ok_timeout(&["python3", "-c", &script], Duration::from_secs(10));
    out.unwrap_or_else(|e| panic!("python3 raw send: {e}"));
    l.gw.wait_status("spoof counter", Duration::from_secs(5), |s| {
        s["distrib_drops"]["spoof"].as_u64().unwrap_or(0) >= spoof_before + 5
    });
    let mut buf = [0u8; 64];
    let r = listener.recv_from(&mut buf);
    assert!(r.is_err(), "the forged packet reached the client: {r:?}");
    assert_eq!(
        l.esp_out_packets(),
        esp_before,
        "the forged packet went into the tunnel"
    );
    // The real path still works.
    assert_no_errors(&l.requests(3), &l);
    // Prometheus sees the same: the spoofed packets, the SAs' traffic, the connections.
    let m = metrics(l.topo.ns("gw").unwrap());
    let spoof = metric(&m, "plexgate_distrib_drops_total{reason=\"spoof\"}");
    assert!(
        spoof.is_some_and(|n| n >= spoof_before + 5),
        "spoof drops in /metrics: {spoof:?}\n{m}"
    );
    assert!(
        m.lines()
            .any(|l| l.starts_with("plexgate_sa_bytes{") && !l.ends_with(" 0")),
        "{m}"
    );
    assert!(
        m.lines()
            .any(|l| l.starts_with("plexgate_connections{target=")),
        "{m}"
    );
    assert!(
        m.contains("plexgate_esp_drops_total{reason=\"replay\"}"),
        "{m}"
    );
    drop(l.dir);
}

/// In the client namespace: listen on the client's inner address and accept one
/// connection within 10 s (blocking mode).
fn accept_one(port: u16) -> std::io::Result<(std::net::TcpStream, SocketAddr)> {
    let ls = std::net::TcpListener::bind((CLIENT_IN, port))?;
    ls.set_nonblocking(true)?;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let (c, from) = loop {
        match ls.accept() {
            Ok(x) => break x,
            Err(_) if std::time::Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(10))
            }
            Err(e) => return Err(e),
        }
    };
    c.set_nonblocking(false)?;
    Ok((c, from))
}

/// On a target: an app connecting out from the DVIPA to the client's `port`.
fn connect_from_dvipa(port: u16) -> std::io::Result<std::net::TcpStream> {
    let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)?;
    s.bind(&SocketAddr::new(DVIPA.parse::<IpAddr>().unwrap(), 0).into())?;
    s.connect_timeout(
        &SocketAddr::new(CLIENT_IN.parse::<IpAddr>().unwrap(), port).into(),
        Duration::from_secs(5),
    )?;
    Ok(s.into())
}

#[test]
fn target_app_connects_out_to_the_client_through_the_tunnel() {
    use std::io::{Read, Write};
    let l = lab("dist-newconn", "", Mode::Ipsec);
    let server = l
        .ns("client")
        .spawn_thread(|| -> std::io::Result<String> {
            let (mut c, from) = accept_one(7000)?;
            c.set_read_timeout(Some(Duration::from_secs(5)))?;
            let mut b = [0u8; 5];
            c.read_exact(&mut b)?;
            c.write_all(b"world")?;
            Ok(format!("{} {}", from.ip(), String::from_utf8_lossy(&b)))
        })
        .unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let answer = l
        .ns(&host(1))
        .run_in(|| -> std::io::Result<String> {
            let mut s = connect_from_dvipa(7000)?;
            s.set_read_timeout(Some(Duration::from_secs(5)))?;
            s.write_all(b"hello")?;
            let mut b = [0u8; 5];
            s.read_exact(&mut b)?;
            Ok(String::from_utf8_lossy(&b).into_owned())
        })
        .unwrap();
    let answer =
        answer.unwrap_or_else(|e| panic!("target → client connection failed: {e}\n{}", l.logs()));
    assert_eq!(answer, "world");
    let seen = server.join().unwrap().unwrap();
    assert_eq!(
        seen,
        format!("{DVIPA} hello"),
        "the client saw the DVIPA as the source"
    );
    // It went through the tunnel and the gateway learnt it (NEWCONN).
    assert!(l.esp_out_packets() > 0);
    let s = l.gw.status();
    assert!(
        s["distrib_targets"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["node"] == node(1) && t["connections"].as_u64() >= Some(1)),
        "{s}"
    );
    drop(l.dir);
}

#[test]
fn plain_tcp_to_the_dvipa_is_distributed() {
    let l = lab("dist-plain", "plain_traffic = \"distribute\"", Mode::Plain);
    let got = l.requests_from(CLIENT_OUT, 30);
    assert_no_errors(&got, &l);
    for i in 0..TARGETS {
        let n = got.get(&tname(i)).copied().unwrap_or(0);
        assert!((9..=11).contains(&n), "plain round-robin spread {got:?}");
    }
    drop(l.dir);
}

/// Bulk data over the distributed path, byte for byte, both ways: 24 MB from the
/// client to a server on the DVIPA (the target writes GRE batches into its TUN
/// coalesced), and 24 MB from an app on the target, bound to the DVIPA, to the
/// client (the target reads TCP super-packets from its TUN and splits them into
/// GRE packets; the gateway seals each into ESP).
#[test]
fn bulk_transfers_over_gre_are_byte_exact_both_ways() {
    use plexgate_lab::traffic::{tcp_transfer, Pattern};
    use std::io::{Read, Write};
    const LEN: usize = 24 << 20;
    let mut l = lab("dist-bulk", "", Mode::Ipsec);
    // Only web-1 listens on the DVIPA port, with the transfer server.
    for s in l.servers.iter_mut() {
        s.take().unwrap().stop();
    }
    l.wait_listeners(0);
    let to = dvipa_addr();
    // Client → DVIPA (the SYN waits in TCP's retransmission until web-1's
    // SRVSTAT reaches the gateway: tcp_transfer connects right after binding).
    let up = tcp_transfer(
        l.ns(&host(0)),
        to,
        l.ns("client"),
        LEN,
        11,
        Duration::from_secs(90),
    )
    .unwrap_or_else(|e| panic!("upload failed: {e}\n{}", l.logs()));
    assert_eq!(up.bytes, LEN);
    // Target app (bound to the DVIPA) → client.
    let server = l
        .ns("client")
        .spawn_thread(|| -> std::io::Result<Vec<u8>> {
            let (mut c, _) = accept_one(7001)?;
            c.set_read_timeout(Some(Duration::from_secs(20)))?;
            let mut got = Vec::with_capacity(LEN);
            c.read_to_end(&mut got)?;
            Ok(got)
        })
        .unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let sent = l
        .ns(&host(0))
        .run_in(|| -> std::io::Result<()> {
            let mut s = connect_from_dvipa(7001)?;
            s.set_write_timeout(Some(Duration::from_secs(20)))?;
            let mut p = Pattern::new(12);
            let mut chunk = vec![0u8; 256 << 10];
            for _ in 0..LEN / chunk.len() {
                p.fill(&mut chunk);
                s.write_all(&chunk)?;
            }
            s.shutdown(std::net::Shutdown::Write)
        })
        .unwrap();
    sent.unwrap_or_else(|e| panic!("download (target → client) failed: {e}\n{}", l.logs()));
    let got = server
        .join()
        .unwrap()
        .unwrap_or_else(|e| panic!("client side of the download: {e}\n{}", l.logs()));
    assert_eq!(got.len(), LEN, "bytes received");
    let mut want = vec![0u8; LEN];
    Pattern::new(12).fill(&mut want);
    assert!(got == want, "the downloaded bytes differ from the pattern");
    // The target's TUN hands it super-packets of up to 64 KB; had it sent them
    // whole over GRE, the gateway would have sealed ~400 giant ESP packets. Every
    // ESP packet must carry one segment of at most the path MTU.
    assert!(l.esp_out_packets() as usize > LEN / 1500, "{}", l.logs());
}

/// The kernel's count of UDP datagrams that found no socket (`/proc/net/snmp`
/// `Udp: NoPorts`) in `ns`.
fn udp_no_ports(ns: &Netns) -> u64 {
    let out = ns
        .exec_ok_timeout(&["cat", "/proc/net/snmp"], Duration::from_secs(5))
        .unwrap();
    let udp: Vec<&str> = out
        .stdout
        .lines()
        .filter(|x| x.starts_with("Udp:"))
        .collect();
    let (names, values) = (udp[0].split_whitespace(), udp[1].split_whitespace());
    names
        .zip(values)
        .find(|(n, _)| *n == "NoPorts")
        .and_then(|(_, v)| v.parse().ok())
        .expect("Udp NoPorts in /proc/net/snmp")
}

/// A UDP datagram from `src` (any address, spoofed if need be) to `dst`, sent
/// with a raw socket in `ns` (python3, as the spoofed GRE above).
fn send_udp_raw(ns: &Netns, src: &str, dst: &str, port: u16, payload: &[u8]) {
    let script = format!(
        r#"
import socket, struct
def csum(b):
    if len(b) % 2: b += b'\0'
    s = sum(struct.unpack('!%dH' % (len(b) // 2), b))
    while s >> 16: s = (s & 0xffff) + (s >> 16)
    return (~s) & 0xffff
data = bytes.fromhex('{hex}')
udp = struct.pack('!HHHH', 40000, {port}, 8 + len(data), 0) + data
h = struct.pack('!BBHHHBBH4s4s', 0x45, 0, 20 + len(udp), 1, 0, 64, 17, 0, socket.inet_aton('{src}'), socket.inet_aton('{dst}'))
h = h[:10] + struct.pack('!H', csum(h)) + h[12:]
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
s.sendto(h + udp, ('{dst}', 0))
"#,
        hex = payload
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    );
    ns.exec_ok_timeout(&["python3", "-c", &script], Duration::from_secs(10))
        .unwrap_or_else(|e| panic!("python3 raw send: {e}"));
}

/// #15: the cluster channel under attack. One message signed with the site key,
/// claiming to come from web-1 with a sequence number near 2^64 and saying its
/// listener is gone, used to push the gateway's window for web-1 so far that
/// every real message of web-1 was refused as a replay. Now: the channel is not
/// reachable on the gateway VIPA or a wildcard; from the internet or from
/// another link it is refused and counted (`misrouted`); even from web-1's own
/// address on its own link it is held (`unsynced`), never applied, and web-1's
/// real messages keep counting.
#[test]
fn forged_cluster_messages_change_nothing() {
    let mut l = lab("dist-forged", "", Mode::Ipsec);
    assert_no_errors(&l.requests(3), &l);
    // Only link addresses listen on the cluster port: no wildcard, no VIPA.
    let ss = l
        .ns("gw")
        .exec_ok_timeout(&["ss", "-H", "-uln"], Duration::from_secs(5))
        .unwrap();
    let bound: Vec<String> = ss
        .stdout
        .lines()
        .filter_map(|x| x.split_whitespace().nth(3).map(String::from))
        .filter(|a| a.ends_with(":7600"))
        .collect();
    let mut want: Vec<String> = (1..=TARGETS)
        .map(|n| format!("10.9.{n}.1%web{n}:7600"))
        .collect();
    let mut got = bound.clone();
    got.sort();
    want.sort();
    assert_eq!(got, want, "cluster sockets: {bound:?}");
    let forged = plexgate_distrib::cluster::seal_with(
        &plexgate_distrib::ClusterKey::new(CLUSTER_KEY),
        plexgate_distrib::NodeId(node(0) as u32),
        u64::MAX - 10,
        &plexgate_distrib::Message::SrvStat {
            target: plexgate_distrib::NodeId(node(0) as u32),
            dvipa: DVIPA.parse().unwrap(),
            port: PORT,
            listening: false,
        },
    );
    // From the internet: to the gateway VIPA, and to web-1's link address
    // (routed through the gateway): no socket takes them (the link's socket
    // is bound to the link's interface), the kernel counts them as UDP
    // datagrams to no port.
    let no_ports = udp_no_ports(l.ns("gw"));
    l.ns("client").route_via("10.9.1.0/30", GW_OUT).unwrap();
    send_udp_raw(l.ns("client"), CLIENT_OUT, GW_OUT, 7600, &forged);
    send_udp_raw(l.ns("client"), CLIENT_OUT, "10.9.1.1", 7600, &forged);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while udp_no_ports(l.ns("gw")) < no_ports + 2 {
        assert!(
            std::time::Instant::now() < deadline,
            "the forged datagrams never reached the gateway"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // From web-2's link, with web-1's address as source, to web-2's link
    // address: the socket of web-2's link takes it; web-1 is not on that link.
    send_udp_raw(l.ns(&host(1)), "10.9.1.2", "10.9.2.1", 7600, &forged);
    l.gw.wait_status("misrouted counter", Duration::from_secs(10), |s| {
        s["distrib_drops"]["misrouted"].as_u64().unwrap_or(0) >= 1
    });
    assert_eq!(plexgate::status::listening_targets(&l.gw.status()), TARGETS);
    // From web-1's own address on its own link (a key holder on that link).
    send_udp_raw(l.ns(&host(0)), "10.9.1.2", "10.9.1.1", 7600, &forged);
    let s =
        l.gw.wait_status("unsynced counter", Duration::from_secs(10), |s| {
            s["distrib_drops"]["unsynced"].as_u64().unwrap_or(0) >= 1
        });
    // Held, not applied: web-1 still listens.
    assert_eq!(plexgate::status::listening_targets(&s), TARGETS, "{s}");
    assert_eq!(l.drops("misrouted"), 1);
    // web-1's real messages still count: its server stops, the gateway hears it.
    let served = l.servers[0].take().unwrap().stop();
    assert!(served <= 3);
    l.wait_listeners(TARGETS - 1);
    let got = l.requests(6);
    assert_no_errors(&got, &l);
    assert_eq!(got.get(&tname(0)), None, "{got:?}");
    assert_eq!(l.drops("replayed"), 0, "{}", l.logs());
    drop(l.dir);
}

/// The site of `a_target_knows_both_gateways_of_its_site`: gateway gw-1 (routes
/// the DVIPA) and gw-2 (its backup), one target with a link to each.
const TWO_GATEWAYS: &str = r#"
[site]
name = "two-gw"
gateway_vipas = ["10.10.0.2"]
[[site.interface]]
name = "client"
address = "10.10.0.2/24"

[[dvipa]]
address = "10.200.0.20"
ports = [80]
targets = "all"
routing_gateway = "gw-1"
backup = [{ gateway = "gw-2", rank = 100 }]
plain_traffic = "distribute"

[[target]]
name = "web-1"
address = "10.9.1.2"
link = "gw1-web-1"

[[link]]
name = "gw1-web-1"
interface = "web1"
local = "10.9.1.1"
subnet = "10.9.1.0/30"

[[link]]
name = "gw2-web-1"
gateway = "gw-2"
target = "web-1"
interface = "web1"
local = "10.9.8.1"
subnet = "10.9.8.0/30"
remote = "10.9.8.2"

[cluster]
key_file = "cluster.key"
gateway_id = 1

[ha]
name = "gw-1"
rank = 200
address = "10.77.0.1"
  [[ha.peer]]
  name = "gw-2"
  id = 2
  address = "10.77.0.2"
  rank = 100
  [ha.store]
  kind = "embedded"
  path = "store"
  key_file = "store.key"
"#;

/// `cluster_accepted` of a gateway's distribution snapshot (status JSON).
fn cluster_accepted(s: &serde_json::Value) -> u64 {
    let d = s["distribution"].as_str().unwrap_or_default();
    d.split("cluster_accepted: ")
        .nth(1)
        .and_then(|r| r.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// #9: one policy file for both gateways; `plexgate run --name gw-2` runs it as
/// gw-2 (its node id, its link). The target knows both gateways, each on its
/// own link with its own sockets and binding, and follows gw-1 (the DVIPA's
/// routing gateway, at the epoch the store gave it); gw-2, its backup, hears
/// the target on its own link; nothing anywhere is misrouted.
#[test]
fn a_target_knows_both_gateways_of_its_site() {
    prerequisites();
    let dir = labdir("dist-two-gw");
    let mut topo = Topology::new();
    for h in ["client", "gw1", "gw2", "web1"] {
        topo.add_host(h).unwrap();
    }
    topo.link("client", &["10.10.0.1/24"], "gw1", &["10.10.0.2/24"])
        .unwrap();
    topo.link("gw1", &["10.9.1.1/30"], "web1", &["10.9.1.2/30"])
        .unwrap();
    topo.link("gw2", &["10.9.8.1/30"], "web1", &["10.9.8.2/30"])
        .unwrap();
    topo.link("gw1", &["10.77.0.1/30"], "gw2", &["10.77.0.2/30"])
        .unwrap();
    let ns = |h: &str| topo.ns(h).unwrap();
    // gw-2 binds IKE on the VIPA too (it would own it after a takeover).
    ns("gw2").add_loopback_addr("10.10.0.2/32").unwrap();
    ns("gw1").enable_forwarding().unwrap();
    ns("web1").disable_rp_filter().unwrap();
    ns("web1").route_via("10.10.0.0/24", "10.9.1.1").unwrap();
    ns("client")
        .route_via(&format!("{DVIPA}/32"), GW_OUT)
        .unwrap();
    plexgate::site_template::write_secret(&dir.path().join("cluster.key"), CLUSTER_KEY).unwrap();
    plexgate::site_template::write_secret(&dir.path().join("store.key"), &[b'7'; 64]).unwrap();
    let pol = dir.path().join("site.toml");
    std::fs::write(&pol, TWO_GATEWAYS).unwrap();
    let gw1 = Daemon::gateway_as(ns("gw1"), dir.path(), &pol, "gw-1", None);
    let web1 = Daemon::target(ns("web1"), dir.path(), &pol, "web-1");
    let _server = HttpServer::start(ns("web1"), dvipa_addr(), "web-1").unwrap();
    web1.wait_status("gw-1 owns the DVIPA", Duration::from_secs(15), |s| {
        s["owners"][0]["gateway"] == 1 && s["owners"][0]["epoch"].as_u64() >= Some(1)
    });
    let gw2 = Daemon::gateway_as(ns("gw2"), dir.path(), &pol, "gw-2", Some("gw-2"));
    let t = web1.status();
    let gws: Vec<(u64, String, u64)> = t["gateways"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| {
            (
                g["node"].as_u64().unwrap(),
                g["address"].as_str().unwrap().to_string(),
                g["link"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        gws,
        [
            (1, "10.9.1.1".to_string(), 0),
            (2, "10.9.8.1".to_string(), 1)
        ],
        "{t}"
    );
    // gw-2 hears the target (its keepalives) on gw-2's own link.
    gw2.wait_status(
        "the target's keepalives at gw-2",
        Duration::from_secs(10),
        |s| cluster_accepted(s) >= 1,
    );
    assert_eq!(web1.status()["owners"][0]["gateway"], 1);
    for (name, s) in [("gw-1", gw1.status()), ("gw-2", gw2.status())] {
        assert_eq!(s["distrib_drops"]["misrouted"], 0, "{name}: {s}");
        assert_eq!(s["distrib_drops"]["replayed"], 0, "{name}: {s}");
    }
    let t = web1.status();
    assert_eq!(t["drops"]["misrouted"], 0, "{t}");
    assert_eq!(t["drops"]["spoof"], 0, "{t}");
    // The site serves through gw-1.
    let answers = ns("client")
        .run_in(|| {
            (0..3)
                .map(|_| http_get_from(CLIENT_OUT, dvipa_addr(), Duration::from_secs(5)))
                .map(|r| r.map_err(|e| e.to_string()))
                .collect::<Vec<_>>()
        })
        .unwrap();
    assert!(
        answers.iter().all(|a| a.as_deref() == Ok("web-1")),
        "{answers:?}\ngw-1 log:\n{}\nweb-1 log:\n{}",
        gw1.log(),
        web1.log()
    );
    drop(dir);
}
