//! Self-test of the lab (crate `plexgate-lab`) and the strongSwan baseline.
//!
//! Proves, on this machine, that the pieces every end-to-end test relies on work:
//! two namespaces with a strongSwan charon each (client initiates to the gateway,
//! PSK, ESP aes128gcm16 in UDP via kernel-libipsec), ping and a byte-exact 4 MB TCP
//! transfer through the tunnel, `list_sas` showing the SA and its byte counters;
//! that namespaces and processes are gone after a test body panics; and that the
//! client-site — gateway — target topology measures a strongSwan baseline.
//!
//! Needs root, strongSwan, iperf3 (run `scripts/setup.sh`). Missing tools make the
//! tests FAIL with the list of what is missing; they are never skipped.

use plexgate_lab::capture::{esp_spis, Capture};
use plexgate_lab::netns;
use plexgate_lab::site::{self, Endpoint, Ready, Site, SiteSpec};
use plexgate_lab::traffic::{count_by_server, http_get_loop, tcp_transfer, HttpServer};
use plexgate_lab::{check_prerequisites, Auth, Charon, CharonConfig, ChildConfig, Netns, Topology};
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

const MB: usize = 1024 * 1024;

#[test]
fn prerequisites_are_installed() {
    check_prerequisites().expect("lab prerequisites");
}

/// Client and gateway namespaces, one link, each with its inner address on `lo`
/// (kernel-libipsec needs a local address inside the local traffic selector).
fn two_hosts() -> Topology {
    let mut t = Topology::new();
    t.add_host("client").unwrap();
    t.add_host("gw").unwrap();
    // Interfaces are named after the peer host: `gw` in client, `client` in gw.
    t.link(
        "client",
        &["10.99.0.1/24", "fd99::1/64"],
        "gw",
        &["10.99.0.2/24", "fd99::2/64"],
    )
    .unwrap();
    t.ns("client")
        .unwrap()
        .add_loopback_addr("192.168.77.1/32")
        .unwrap();
    t.ns("gw")
        .unwrap()
        .add_loopback_addr("203.0.113.10/32")
        .unwrap();
    t
}

fn client_config() -> CharonConfig {
    CharonConfig::psk(
        "10.99.0.1",
        "10.99.0.2",
        "client@example",
        "gw@example",
        "testsecret0123456789",
    )
    .child(ChildConfig::new("net", "192.168.77.1/32", "203.0.113.10/32").esp(&["aes128gcm16"]))
}

#[test]
fn strongswan_psk_tunnel_carries_ping_and_exact_bytes() {
    check_prerequisites().expect("lab prerequisites");
    let topo = two_hosts();
    let (c_ns, g_ns) = (topo.ns("client").unwrap(), topo.ns("gw").unwrap());
    // Plain reachability of the outer addresses, both families.
    let t = Duration::from_secs(5);
    c_ns.wait_ping("10.99.0.2", None, t).unwrap();
    c_ns.wait_ping("fd99::2", None, t).unwrap();

    let gw = Charon::start(g_ns, client_config().mirrored()).unwrap();
    let client = Charon::start(c_ns, client_config()).unwrap();
    client.initiate("net").unwrap();
    let sa = client
        .wait_established("net", Duration::from_secs(10))
        .unwrap();
    client
        .route_ipsec0("203.0.113.10/32", "192.168.77.1")
        .unwrap();
    gw.route_ipsec0("192.168.77.1/32", "203.0.113.10").unwrap();

    // Watch the client's wire while pinging through the tunnel.
    let mut cap =
        Capture::start(c_ns, topo.iface("client", "gw").unwrap(), "udp port 4500").unwrap();
    c_ns.wait_ping("203.0.113.10", Some("192.168.77.1"), Duration::from_secs(5))
        .unwrap();
    assert!(c_ns.ping("203.0.113.10", Some("192.168.77.1"), 3).unwrap());
    let spis = esp_spis(cap.stop()).unwrap();
    let to: SocketAddr = "203.0.113.10:9000".parse().unwrap();
    let report = tcp_transfer(g_ns, to, c_ns, 4 * MB, 7, Duration::from_secs(60)).unwrap();
    assert_eq!(report.bytes, 4 * MB);

    // The SA as strongSwan reports it, on both ends.
    assert!(sa.initiator);
    assert_eq!(sa.remote_id, "gw@example");
    assert_eq!(sa.remote_port, Some(4500), "kernel-libipsec uses UDP 4500");
    let sas = client.list_sas().unwrap();
    assert_eq!(sas.len(), 1);
    let c = sas[0].child("net").expect("installed child on the client");
    assert_eq!(c.encr_alg.as_deref(), Some("AES_GCM_16"));
    assert_eq!(c.encr_keysize, Some(128));
    assert!(c.encap);
    assert_eq!(c.local_ts, vec!["192.168.77.1/32".to_string()]);
    assert!(
        c.bytes_out >= (4 * MB) as u64,
        "client sent {} bytes through the SA",
        c.bytes_out
    );
    let g_sas = gw.list_sas().unwrap();
    let g = g_sas[0]
        .child("net")
        .expect("installed child on the gateway");
    assert_eq!((g.spi_in, g.spi_out), (c.spi_out, c.spi_in));
    assert!(g.bytes_in >= (4 * MB) as u64);
    assert!(!sas[0].initiator_spi.is_empty() && sas[0].initiator_spi == g_sas[0].initiator_spi);
    assert!(
        client.log().contains("CHILD_SA net{"),
        "charon log is captured"
    );
    // On the wire: ESP in UDP 4500 with exactly the two SPIs of this Child SA,
    // requests and replies.
    assert!(spis.len() >= 6, "ESP packets seen: {spis:?}");
    assert!(
        spis.contains(&c.spi_out) && spis.contains(&c.spi_in),
        "{spis:?} vs {c:?}"
    );
    assert!(spis.iter().all(|s| *s == c.spi_out || *s == c.spi_in));

    // Rekey the Child SA: new SPIs, the old ones retired, traffic still flows.
    client.rekey_child("net").unwrap();
    let old_in = c.spi_in;
    client
        .wait_for("child rekeyed", Duration::from_secs(10), |sas| {
            sas.iter()
                .flat_map(|s| &s.children)
                .any(|c| c.installed() && c.spi_in != old_in)
        })
        .unwrap();
    c_ns.wait_ping("203.0.113.10", Some("192.168.77.1"), Duration::from_secs(5))
        .unwrap();

    // Tear down: both ends lose the SA.
    client.terminate_ike().unwrap();
    assert!(client.list_sas().unwrap().is_empty());
}

fn log_path() -> std::path::PathBuf {
    std::env::temp_dir().join(format!("lab-selftest-sleep-{}.log", std::process::id()))
}

/// Certificate authentication with the repository's test PKI (`keys/test`,
/// ECDSA P-256 CA and end entities) and other proposals: exercises the
/// `Auth::Certs` path (files copied into swanctl's x509/, private/, x509ca/).
#[test]
fn strongswan_certificate_tunnel_with_aes256gcm() {
    check_prerequisites().expect("lab prerequisites");
    // Relative to this file, so it works from any checkout (cargo runs tests in
    // the package root, which is where a relative file!() path starts).
    let keys = Path::new(file!()).parent().unwrap().join("../keys/test");
    let certs = |who: &str| Auth::Certs {
        cert: keys.join(format!("x509/{who}.pem")),
        key: keys.join(format!("private/{who}.pem")),
        cas: vec![keys.join("x509ca/ca.pem")],
    };
    let topo = two_hosts();
    let mut cfg = client_config();
    cfg.local_id = "client.plexgate.test".into();
    cfg.remote_id = "gw.plexgate.test".into();
    cfg.ike_proposals = vec!["aes256-sha384-ecp384".into()];
    cfg.children[0].esp_proposals = vec!["aes256gcm16".into()];
    let mut gw_cfg = cfg.mirrored();
    cfg.auth = certs("client");
    gw_cfg.auth = certs("gw");
    let _gw = Charon::start(topo.ns("gw").unwrap(), gw_cfg).unwrap();
    let client = Charon::start(topo.ns("client").unwrap(), cfg).unwrap();
    client.initiate("net").unwrap();
    let sa = client
        .wait_established("net", Duration::from_secs(10))
        .unwrap();
    assert_eq!(sa.remote_id, "gw.plexgate.test");
    assert_eq!(sa.dh_group.as_deref(), Some("ECP_384"));
    let c = sa.child("net").unwrap();
    assert_eq!(
        (c.encr_alg.as_deref(), c.encr_keysize),
        (Some("AES_GCM_16"), Some(256))
    );
    assert!(client
        .log()
        .contains("authentication of 'gw.plexgate.test' with ECDSA"));
}

#[test]
fn namespaces_and_processes_are_gone_after_a_panic() {
    check_prerequisites().expect("lab prerequisites");
    let (tx, rx) = std::sync::mpsc::channel();
    let r = std::panic::catch_unwind(move || {
        let topo = two_hosts();
        let names: Vec<String> = ["client", "gw"]
            .iter()
            .map(|h| topo.ns(h).unwrap().name().to_string())
            .collect();
        let ns = topo.ns("gw").unwrap();
        let sleeper = ns.spawn(&["sleep", "300"], &log_path()).unwrap();
        let charon = Charon::start(ns, client_config().mirrored()).unwrap();
        let pids = ns.pids().unwrap();
        assert!(pids.len() >= 2, "sleep and charon run inside: {pids:?}");
        tx.send((names, pids, charon.dir().to_path_buf())).unwrap();
        // Keep the guards alive until the panic unwinds through them.
        let _keep = (&sleeper, &charon);
        panic!("deliberate panic inside a lab test body");
    });
    assert!(r.is_err());
    let (names, pids, charon_dir) = rx.recv().unwrap();
    for n in &names {
        assert!(!netns::exists(n), "namespace {n} still exists");
    }
    for p in pids {
        let stat = std::fs::read_to_string(format!("/proc/{p}/stat")).unwrap_or_default();
        // Gone, or at worst a zombie awaiting its (non-lab) parent.
        assert!(
            stat.is_empty() || stat.contains(") Z "),
            "pid {p} still running: {stat}"
        );
    }
    // Scratch directories are kept on panic for post-mortems; this panic was
    // deliberate, so tidy up.
    let _ = std::fs::remove_dir_all(charon_dir);
    let _ = std::fs::remove_file(log_path());
}

#[test]
fn netns_guard_runs_commands_and_threads_inside() {
    let ns = Netns::new("probe").unwrap();
    let name = ns.name().to_string();
    assert!(netns::exists(&name));
    ns.add_addr("lo", "10.123.0.1/32").unwrap();
    let out = ns.exec(&["ip", "-4", "addr", "show", "dev", "lo"]).unwrap();
    assert!(out.stdout.contains("10.123.0.1"));
    // A thread that entered the namespace sees its addresses, not the host's.
    let bound = ns
        .run_in(|| std::net::TcpListener::bind("10.123.0.1:0").is_ok())
        .unwrap();
    assert!(bound);
    assert!(std::net::TcpListener::bind("10.123.0.1:0").is_err());
    drop(ns);
    assert!(!netns::exists(&name));
}

#[test]
fn site_topology_with_command_target_and_http_through_the_tunnel() {
    check_prerequisites().expect("lab prerequisites");
    let spec = SiteSpec {
        client: Endpoint::Strongswan,
        gateway: Endpoint::Strongswan,
        // A caller-provided command on the target, waited for by its port.
        target: Endpoint::Command {
            argv: ["iperf3", "-s", "-p", "5301"].map(String::from).to_vec(),
            ready: Ready::TcpPort(5301),
        },
        dvipa_on_target: true,
    };
    let s = Site::build(&spec).unwrap();
    assert!(s.target.process().is_some());
    s.connect().unwrap();
    let target = s.ns("target").unwrap();
    let a = SocketAddr::new(site::TARGET_ADDR.into(), 8080);
    let srv = HttpServer::start(target, a, "target-1").unwrap();
    let answers = http_get_loop(s.ns("client").unwrap(), a, 5, Duration::from_secs(5)).unwrap();
    assert_eq!(
        count_by_server(&answers).get("target-1"),
        Some(&5),
        "{answers:?}"
    );
    assert_eq!(srv.stop(), 5);
    let sas = s.client.charon().unwrap().list_sas().unwrap();
    assert!(sas[0].child(site::CHILD).unwrap().packets_out >= 5);
    assert!(Path::new(s.dir()).join("target.log").exists());
}

#[test]
fn strongswan_baseline_measures_throughput() {
    check_prerequisites().expect("lab prerequisites");
    let (one, eight) = plexgate_lab::strongswan_baseline(Duration::from_secs(2)).unwrap();
    eprintln!("strongSwan baseline: {one:.3} Gbit/s (1 stream), {eight:.3} Gbit/s (8 streams)");
    assert!(one > 0.001 && eight > 0.001, "{one} {eight}");
}

#[test]
fn stale_namespaces_of_dead_processes_are_removed() {
    check_prerequisites().expect("lab prerequisites");
    // No process can have this pid (above the kernel's pid_max limit of 2^22).
    let name = format!(
        "{}4194399-0-{:08x}-stale",
        netns::PREFIX,
        std::process::id()
    );
    let out = std::process::Command::new("ip")
        .args(["netns", "add", &name])
        .status()
        .unwrap();
    assert!(out.success());
    let live = Netns::new("live").unwrap();
    let gone = plexgate_lab::cleanup_stale();
    assert!(gone.contains(&name), "{gone:?}");
    assert!(!netns::exists(&name));
    // Namespaces of live processes (this one) are left alone.
    assert!(netns::exists(live.name()));
}
