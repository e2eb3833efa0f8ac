//! The cluster harness (`plexgate::sim`) under faults: loss, duplication and
//! reordering on IKE and on data, a target daemon that restarts in the middle of
//! a transfer, a Child SA rekeyed while bytes flow, a store that is away, and two
//! clients with two Child SAs each. Every transfer is checked byte-exact; every
//! run is the same for the same seed.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use plexgate::sim::{
    App, ClientSpec, Conditions, Engine, Node, Sim, SimBuilder, StoreFault, Transfer,
};
use plexgate_ike as ike;

const SECOND: Duration = Duration::from_secs(1);
const PSK: &[u8] = b"faults-psk-0123456789";
const KEY: &[u8] = b"faults-cluster-key-0123456789";
const VIPA: &str = "10.10.0.2";
const WEB: &str = "10.100.0.10";
const API: &str = "10.100.0.20";

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// One gateway, two DVIPAs (`web` on port 80, `api` on 8080), each with its own
/// child and SPD rule, over `targets` targets; any client identity with the PSK.
fn policy(targets: usize) -> String {
    let mut t = format!(
        r#"[site]
name = "faults"
gateway_vipas = ["{VIPA}"]

[[site.interface]]
name = "uplink"
address = "{VIPA}/24"

[[peer]]
name = "clients"
remote_address = "any"
local_id = "gw@sim"
remote_id = "%any"
auth = "psk"
psk_file = "psk"
proposals = ["aes128gcm16-prfsha256-x25519"]

  [[peer.child]]
  name = "web"
  local_ts = ["{WEB}/32"]
  remote_ts = ["192.168.77.0/24"]
  esp_proposals = ["aes128gcm16"]

  [[peer.child]]
  name = "api"
  local_ts = ["{API}/32"]
  remote_ts = ["192.168.77.0/24"]
  esp_proposals = ["aes128gcm16"]
"#
    );
    for (name, addr, port) in [("web", WEB, 80), ("api", API, 8080)] {
        t += &format!(
            "\n[[spd]]\nname = \"{name}\"\ndirection = \"both\"\nlocal = \"{addr}\"\nremote = \"192.168.77.0/24\"\naction = \"protect\"\npeer = \"clients\"\nchild = \"{name}\"\n\n[[dvipa]]\naddress = \"{addr}\"\nports = [{port}]\ntargets = \"all\"\nmethod = \"round-robin\"\n"
        );
    }
    for i in 0..targets {
        t += &format!(
            "\n[[target]]\nname = \"t{i}\"\naddress = \"10.9.0.{a}\"\nlink = \"l{i}\"\n\n[[link]]\nname = \"l{i}\"\ninterface = \"l{i}\"\nlocal = \"10.9.0.{g}\"\nsubnet = \"10.9.0.{s}/30\"\n",
            a = 4 * i + 2,
            g = 4 * i + 1,
            s = 4 * i
        );
    }
    t + "\n[cluster]\nkey_file = \"cluster.key\"\ngateway_id = 1\n"
}

/// A road warrior `n` (1-based): outer 10.10.0.1n, inner 192.168.77.n, identity
/// `rw<n>@sim`, children `web` and `api`.
fn road_warrior(n: u8) -> ClientSpec {
    let inner = IpAddr::from([192, 168, 77, n]);
    let mut spec = ClientSpec::road_warrior(
        &format!("rw{n}"),
        IpAddr::from([10, 10, 0, 10 + n]),
        inner,
        ip(VIPA),
        &[ip(WEB)],
        PSK,
    );
    let p = spec.peer_mut().unwrap();
    p.local_id = ike::config::Identity(format!("rw{n}@sim"));
    let mut api = p.children[0].clone();
    api.name = "api".into();
    api.remote_ts = vec![ike::TrafficSelector::host(ip(API))];
    p.children.push(api);
    spec
}

/// The cluster: one gateway, `targets` targets with echo servers on both DVIPAs,
/// `clients` road warriors.
fn cluster(seed: u64, targets: usize, clients: u8, net: Conditions) -> Sim {
    let mut b = SimBuilder::new(seed)
        .secret("psk", PSK)
        .secret("cluster.key", KEY)
        .gateway("gw", &policy(targets))
        .conditions(net);
    for i in 0..targets {
        b = b.target(&format!("t{i}"));
    }
    for n in 1..=clients {
        b = b.client(road_warrior(n));
    }
    let mut sim = b.build().unwrap();
    for j in 0..targets {
        sim.target_mut(j).host.listen(ip(WEB), 80, App::Echo, false);
        sim.target_mut(j)
            .host
            .listen(ip(API), 8080, App::Echo, false);
    }
    sim
}

/// Known content: byte i of stream `s`.
fn content(s: u8, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u32).wrapping_mul(2_654_435_761).to_be_bytes()[s as usize % 4] ^ s)
        .collect()
}

fn web() -> SocketAddr {
    SocketAddr::new(ip(WEB), 80)
}

fn api() -> SocketAddr {
    SocketAddr::new(ip(API), 8080)
}

/// Wait until every transfer is over, then check each byte-exact.
fn finish(sim: &mut Sim, ts: &[Transfer], max: Duration) {
    sim.run_until(max, |s| ts.iter().all(|t| s.echo_done(t)))
        .expect("transfers done");
    for t in ts {
        sim.echo_check(t).unwrap();
    }
}

/// Loss, duplication and reordering between client and gateway and on the GRE
/// links: the IKE exchange completes (by retransmission) and a transfer comes
/// back byte-exact (TCP resends what ESP and GRE lost).
#[test]
fn loss_and_reordering_on_ike_and_data() {
    let mut lost_ike = 0;
    for seed in 1..=4u64 {
        let mut sim = cluster(seed, 2, 1, Conditions::lossy(0.15, 0.2));
        // IKE first: the handshake loses datagrams and still completes.
        sim.connect(0, "web", 60 * SECOND).expect("IKE under loss");
        lost_ike += sim.net.stats.lost;
        let data = content(seed as u8, 150_000);
        let t = sim.start_echo(0, web(), &data);
        finish(&mut sim, std::slice::from_ref(&t), 600 * SECOND);
        let c = sim.client(0).host.conn(t.conn).unwrap();
        assert!(
            c.retransmits > 0,
            "seed {seed}: the data path lost segments too"
        );
        assert!(sim.net.stats.reordered > 0 && sim.net.stats.duplicated > 0);
        let sad = sim.gateway(0).core().unwrap().sad().counters;
        assert!(
            sad.drop_replay > 0,
            "seed {seed}: duplicated ESP is refused as a replay: {sad:?}"
        );
    }
    assert!(lost_ike > 0, "IKE datagrams were lost along the way");
}

/// The same seed gives the same run: same steps, same virtual time, same
/// network counters (even though the ECDH keys, from the system's generator,
/// differ: only sizes and timing matter to the schedule).
#[test]
fn same_seed_same_run() {
    let run = |seed| {
        let mut sim = cluster(seed, 2, 1, Conditions::lossy(0.1, 0.1));
        sim.connect(0, "web", 60 * SECOND).unwrap();
        let t = sim
            .echo(0, web(), &content(1, 40_000), 300 * SECOND)
            .unwrap();
        let served = sim.served_by(t.src, t.dst);
        (sim.steps(), sim.elapsed(), sim.net.stats.clone(), served)
    };
    let a = run(11);
    assert_eq!(a, run(11));
    assert_ne!(a, run(12));
}

/// A target daemon restarts while a transfer runs through it: the new stack
/// knows no DVIPA, says Hello, gets the DVIPA list, reports its listener
/// (SRVSTAT) and the connection (NEWCONN), and the transfer completes byte-exact.
#[test]
fn target_restart_relearns_dvipas_and_listeners() {
    let mut sim = cluster(21, 2, 1, Conditions::IDEAL);
    sim.connect(0, "web", 5 * SECOND).unwrap();
    let data = content(3, 400_000);
    let t = sim.start_echo(0, web(), &data);
    sim.run_until(10 * SECOND, |s| s.served_by(t.src, t.dst).is_some())
        .unwrap();
    let j = sim.served_by(t.src, t.dst).unwrap();
    // Half-way through, the target's daemon restarts (its host and the
    // connection stay).
    sim.run_until(10 * SECOND, |s| {
        s.client(0).host.conn(t.conn).unwrap().received().len() > data.len() / 2
    })
    .unwrap();
    sim.restart_target(j);
    assert!(
        sim.target(j).stack().served().is_empty(),
        "a new stack knows nothing"
    );
    sim.run_until(5 * SECOND, |s| !s.target(j).stack().served().is_empty())
        .expect("the DVIPA list after Hello");
    let dpt_up = |s: &Sim| {
        let e = s.gateway(0).distributor().dpt().get(ip(WEB), 80);
        e.is_some_and(|e| e.targets().iter().filter(|t| t.listening).count() == 2)
    };
    sim.run_until(5 * SECOND, dpt_up)
        .expect("SRVSTAT after restart");
    finish(&mut sim, std::slice::from_ref(&t), 60 * SECOND);
    // The restart window cost packets (GRE for a DVIPA the new stack did not
    // know yet), which TCP sent again; the new stack tracks the connection.
    let snap = sim.target(j).stack().snapshot();
    assert!(
        snap.drops(plexgate_distrib::DropReason::NotDvipa) > 0,
        "{snap:?}"
    );
    assert!(sim.client(0).host.conn(t.conn).unwrap().retransmits > 0);
    assert_eq!(sim.target(j).stack().connection_count(), 1);
    assert_eq!(sim.target(j).restarts, 1);
    // The restarted daemon learnt the connection from the kernel's socket table
    // (if it was still open) and a new connection is distributed as before.
    let t2 = sim
        .echo(0, web(), &content(4, 10_000), 10 * SECOND)
        .unwrap();
    assert_ne!(sim.served_by(t2.src, t2.dst), None);
}

/// A Child SA is rekeyed (CREATE_CHILD_SA) while a transfer runs over it: the
/// transfer loses no byte, and the rekey happened before the transfer ended
/// (bounded by the work, not by a byte count).
#[test]
fn child_rekey_during_transfer_loses_no_byte() {
    let mut sim = cluster(31, 2, 1, Conditions::IDEAL);
    sim.connect(0, "web", 5 * SECOND).unwrap();
    let old_spi = sim.client(0).children[0].1.spi_out;
    let data = content(5, 600_000);
    let t = sim.start_echo(0, web(), &data);
    sim.run_until(10 * SECOND, |s| {
        s.client(0).host.conn(t.conn).unwrap().received().len() > data.len() / 4
    })
    .unwrap();
    let rekeyed = sim.gateway_do(0, |e, now, sink| {
        let Engine::Core(c) = e else { unreachable!() };
        c.rekey_child(now, old_spi, sink)
    });
    rekeyed.expect("rekey started");
    let rekey_done = |s: &Sim| {
        s.client(0)
            .events
            .iter()
            .any(|e| matches!(e, ike::Event::ChildSaRekeyed { .. }))
    };
    sim.run_until(10 * SECOND, |s| rekey_done(s) || s.echo_done(&t))
        .unwrap();
    assert!(rekey_done(&sim), "the rekey overlapped the transfer");
    assert!(!sim.echo_done(&t), "the transfer was still running");
    finish(&mut sim, &[t], 60 * SECOND);
    let now_spi = sim.client(0).children.last().unwrap().1.spi_out;
    assert_ne!(now_spi, old_spi);
    assert!(
        sim.gateway(0)
            .core()
            .unwrap()
            .sad()
            .inbound(now_spi)
            .is_some_and(|sa| sa.stats().packets > 0),
        "the new SA carried traffic"
    );
}

/// Two road warriors, two Child SAs each (one per DVIPA), four transfers at once:
/// every byte comes back, each SA carries only its own traffic, and the store
/// holds two IKE records and four Child SA records.
#[test]
fn two_clients_two_child_sas_each() {
    let mut sim = cluster(41, 3, 2, Conditions::lossy(0.02, 0.05));
    for k in 0..2 {
        sim.connect(k, "web", 30 * SECOND).unwrap();
        sim.add_child(k, "api", 30 * SECOND).unwrap();
        assert_eq!(sim.client(k).children.len(), 2);
    }
    let mut ts = Vec::new();
    for k in 0..2 {
        ts.push(sim.start_echo(k, web(), &content(10 + k as u8, 80_000)));
        ts.push(sim.start_echo(k, api(), &content(20 + k as u8, 80_000)));
    }
    finish(&mut sim, &ts, 300 * SECOND);
    let core = sim.gateway(0).core().unwrap();
    let mut inbound = 0;
    for sa in core.sad().iter() {
        let p = sa.params();
        if p.direction != plexgate_ipsec::Direction::Inbound {
            continue;
        }
        inbound += 1;
        let want = if p.child == "web" { ip(WEB) } else { ip(API) };
        assert!(
            p.local_ts
                .iter()
                .all(|t| t.start_addr == want && t.end_addr == want),
            "{p:?}"
        );
        assert!(
            sa.stats().bytes > 80_000,
            "{} carried its transfer: {:?}",
            p.child,
            sa.stats()
        );
    }
    assert_eq!(inbound, 4);
    assert_eq!(sim.store.keys("faults/ike/").len(), 2);
    assert_eq!(sim.store.keys("faults/child/").len(), 4);
    let owners: std::collections::BTreeSet<Option<usize>> =
        ts.iter().map(|t| sim.served_by(t.src, t.dst)).collect();
    assert!(!owners.contains(&None));
}

/// While the store is away, the gateway's records wait, in order; they are
/// written when it comes back.
#[test]
fn records_wait_for_an_unreachable_store() {
    let mut sim = cluster(51, 1, 1, Conditions::IDEAL);
    sim.store.set_fault(0, StoreFault::Unreachable);
    sim.connect(0, "web", 5 * SECOND).unwrap();
    assert!(sim.store.is_empty());
    assert_eq!(
        sim.store.pending(0),
        2,
        "one IKE SA record, one Child SA record"
    );
    sim.store.set_fault(0, StoreFault::None);
    assert_eq!(sim.store.keys("faults/ike/").len(), 1);
    assert_eq!(sim.store.keys("faults/child/").len(), 1);
}

/// A client whose path to the gateway is cut cannot negotiate; healed, it can.
#[test]
fn a_cut_path_stops_ike_and_healing_it_restores_it() {
    let mut sim = cluster(61, 1, 1, Conditions::IDEAL);
    sim.net
        .set_path(Node::Client(0), Node::Gateway(0), Conditions::CUT);
    assert!(sim.connect(0, "web", 3 * SECOND).is_err());
    let report = sim.report();
    assert!(report.contains("client 0 rw1: 0 IKE SA(s)"), "{report}");
    sim.net.heal(Node::Client(0), Node::Gateway(0));
    sim.run_until(30 * SECOND, |s| !s.client(0).children.is_empty())
        .expect("the retransmitted IKE_SA_INIT gets through");
    sim.echo(0, web(), &content(6, 5_000), 10 * SECOND).unwrap();
}

/// A client behind a masquerading router: NAT detection moves IKE to port 4500
/// and the Child SA to ESP in UDP (RFC 3948), and the transfer goes through the
/// NAT's mapping both ways.
#[test]
fn client_behind_a_nat_uses_esp_in_udp() {
    let mut sim = cluster(71, 2, 1, Conditions::IDEAL);
    let public = ip("198.51.100.77");
    sim.net.nat(Node::Client(0), public);
    sim.connect(0, "web", 5 * SECOND).unwrap();
    let child = sim.client(0).children[0].1.clone();
    assert!(child.udp_encap, "{child:?}");
    sim.net.capture(true);
    sim.echo(0, web(), &content(7, 50_000), 30 * SECOND)
        .unwrap();
    let core = sim.gateway(0).core().unwrap();
    let sa = core.sad().inbound(child.spi_out).unwrap();
    assert_eq!(
        sa.params().remote_addr,
        public,
        "the gateway sees the NAT's address"
    );
    assert!(
        sa.params().encap.is_some_and(|e| e.remote_port != 4500),
        "and its mapped port"
    );
    let kinds: std::collections::BTreeSet<_> = sim
        .net
        .captured()
        .iter()
        .filter(|c| matches!(c.from, Node::Client(_)) || matches!(c.to, Node::Client(_)))
        .map(|c| c.payload.kind())
        .collect();
    assert_eq!(kinds, [plexgate::sim::Kind::Udp].into_iter().collect());
    assert_eq!(sim.net.stats.nat_refused, 0);
}
