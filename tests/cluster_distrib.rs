//! Connection distribution through the whole gateway, on the cluster harness
//! (`plexgate::sim`): a road warrior's ESP reaches a `GatewayCore` that spreads
//! connections over three targets (each a `TargetStack` with a modelled host),
//! whose replies come back over GRE and leave as ESP the client opens. These were
//! `crates/distrib/tests/scenario.rs`, which drove the distributor alone with
//! decrypted packets; here each packet crosses IKE-negotiated SAs, the SPD, the
//! core's data path, GRE links and the cluster channel. The takeover, takeback
//! and policy-reload scenarios run on distributor-only gateways until the core
//! can take a DVIPA over and reload its DVIPAs (see `docs/testing.md`).

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use etherparse::{PacketBuilder, TcpOptionElement};
use plexgate::sim::{Agent, App, ClientSpec, Conditions, Engine, Node, Payload, Sim, SimBuilder};
use plexgate_distrib::cluster::{ClusterEndpoint, Message};
use plexgate_distrib::dpt::{Algorithm, DvipaConfig, PortSet, TargetSet};
use plexgate_distrib::{gre, ClusterKey, DropReason, FlowKey, GreKey, NodeId, Proto, Route};
use plexgate_ike as ike;

const SECOND: Duration = Duration::from_secs(1);
const KEY: &[u8] = b"site-a cluster key, test only 0123456789";
const PSK: &[u8] = b"distribution-psk-0123456789";
const VIPA: &str = "203.0.113.1";
const CLIENT: &str = "203.0.113.100";
const PLAIN: &str = "203.0.113.50";
const GW: NodeId = NodeId(1);
const BACKUP: NodeId = NodeId(2);
const T: [NodeId; 3] = [NodeId(1000), NodeId(1001), NodeId(1002)];

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}
fn dvipa() -> IpAddr {
    ip("198.51.100.7")
}
fn dvipa6() -> IpAddr {
    ip("2001:db8:100::7")
}
/// The gateway's own inner address (traffic for it goes to its TUN).
fn gw_inner() -> IpAddr {
    ip("10.255.0.1")
}

/// The routing gateway's policy: the IPv4 and IPv6 DVIPAs on ports 80 and 53 over
/// three targets, road warriors from 192.0.2.0/24 and 2001:db8:5::/64.
fn policy(method: &str, weights: [u16; 3], plain: &str) -> String {
    let mut t = format!(
        r#"[site]
name = "dist"
gateway_vipas = ["{VIPA}"]

[[site.interface]]
name = "uplink"
address = "{VIPA}/24"

[[peer]]
name = "client"
remote_address = "any"
local_id = "gw@sim"
remote_id = "client@sim"
auth = "psk"
psk_file = "psk"
proposals = ["aes128gcm16-prfsha256-x25519"]

  [[peer.child]]
  name = "web"
  local_ts = ["198.51.100.7/32", "2001:db8:100::7/128", "10.255.0.1/32"]
  remote_ts = ["192.0.2.0/24", "2001:db8:5::/64"]
  esp_proposals = ["aes128gcm16"]

[[spd]]
name = "v4"
direction = "both"
local = "198.51.100.7"
remote = "192.0.2.0/24"
action = "protect"
peer = "client"
child = "web"

[[spd]]
name = "gw"
direction = "both"
local = "10.255.0.1"
remote = "192.0.2.0/24"
action = "protect"
peer = "client"
child = "web"

[[spd]]
name = "v6"
direction = "both"
local = "2001:db8:100::7"
remote = "2001:db8:5::/64"
action = "protect"
peer = "client"
child = "web"
"#
    );
    for d in ["198.51.100.7", "2001:db8:100::7"] {
        t += &format!(
            "\n[[dvipa]]\naddress = \"{d}\"\nports = [80, 53]\ntargets = \"all\"\nmethod = \"{method}\"\nplain_traffic = \"{plain}\"\nweights = {{ web-1 = {}, web-2 = {}, web-3 = {} }}\n",
            weights[0], weights[1], weights[2]
        );
    }
    t + &targets_and_links(1, "10.9.0")
}

/// A second gateway of the site (node 2) with its own links and no DVIPA.
fn backup_policy() -> String {
    format!(
        "[site]\nname = \"dist\"\ngateway_vipas = [\"203.0.113.2\"]\n\n[[site.interface]]\nname = \"uplink\"\naddress = \"203.0.113.2/24\"\n{}",
        targets_and_links(2, "10.9.1")
    )
}

fn targets_and_links(gateway_id: u32, net: &str) -> String {
    let mut t = String::new();
    for i in 0..3 {
        let (g, a) = (4 * i + 1, 4 * i + 2);
        t += &format!(
            "\n[[target]]\nname = \"web-{n}\"\naddress = \"{net}.{a}\"\nlink = \"to-web-{n}\"\n\n[[link]]\nname = \"to-web-{n}\"\ninterface = \"w{n}\"\nlocal = \"{net}.{g}\"\nsubnet = \"{net}.{s}/30\"\n",
            n = i + 1,
            s = 4 * i
        );
    }
    t + &format!(
        "\n[cluster]\nkey_file = \"cluster.key\"\ngateway_id = {gateway_id}\nport = 7600\n"
    )
}

/// Why a packet did not reach a target.
#[derive(Debug, PartialEq, Eq)]
enum Why {
    /// The distributor dropped it.
    Drop(DropReason),
    /// The distributor said "local" for a DVIPA: dropped by the core.
    NotDistributed,
    /// Anything else (ESP, SPD, …).
    Other(String),
}

struct Cluster {
    sim: Sim,
}

fn client(i: u32) -> IpAddr {
    IpAddr::from([192, 0, 2, 1 + (i % 200) as u8])
}

fn road_warrior() -> ClientSpec {
    let mut spec = ClientSpec::road_warrior("rw", ip(CLIENT), client(0), ip(VIPA), &[], PSK);
    let child = ike::ChildConfig::new(
        "web",
        vec![
            ike::TrafficSelector::prefix(ip("192.0.2.0"), 24),
            ike::TrafficSelector::prefix(ip("2001:db8:5::"), 64),
        ],
        vec![
            ike::TrafficSelector::host(dvipa()),
            ike::TrafficSelector::host(dvipa6()),
            ike::TrafficSelector::host(gw_inner()),
        ],
        vec![ike::EspProposal::AES128GCM16],
    );
    spec.peer_mut().unwrap().children = vec![child];
    spec.inner = (0..200).map(client).collect();
    spec
}

/// Every target listens on port 80 of both DVIPAs (one by wildcard), the third
/// also on 9999; all with [`App::Capture`] (the scenarios write both directions).
fn listen(sim: &mut Sim) {
    let socks: [&[&str]; 3] = [
        &["198.51.100.7:80", "[2001:db8:100::7]:80"],
        &["0.0.0.0:80", "[2001:db8:100::7]:80"],
        &[
            "198.51.100.7:80",
            "[2001:db8:100::7]:80",
            "198.51.100.7:9999",
        ],
    ];
    for (j, s) in socks.iter().enumerate() {
        for a in s.iter() {
            let a: SocketAddr = a.parse().unwrap();
            sim.target_mut(j)
                .host
                .listen(a.ip(), a.port(), App::Capture, false);
        }
    }
}

impl Cluster {
    fn new(alg: &str, weights: [u16; 3]) -> Cluster {
        Cluster::with(alg, weights, "drop")
    }

    fn with(alg: &str, weights: [u16; 3], plain: &str) -> Cluster {
        Cluster::with_policy(&policy(alg, weights, plain))
    }

    fn with_policy(text: &str) -> Cluster {
        let mut sim = SimBuilder::new(0xd157)
            .secret("psk", PSK)
            .secret("cluster.key", KEY)
            .gateway("gw", text)
            .gateway("backup", &backup_policy())
            .target("web-1")
            .target("web-2")
            .target("web-3")
            .client(road_warrior())
            .client(ClientSpec::plain("plain", ip(PLAIN)))
            .build()
            .unwrap();
        listen(&mut sim);
        sim.connect(0, "web", 5 * SECOND).unwrap();
        let mut c = Cluster { sim };
        c.wait(|s| {
            (0..3).all(|j| s.target(j).stack().served().len() == 2)
                && [dvipa(), dvipa6()]
                    .iter()
                    .all(|d| listening(s, *d, 80) == 3)
        });
        c
    }

    fn wait(&mut self, cond: impl FnMut(&Sim) -> bool) {
        self.sim
            .run_until(10 * SECOND, cond)
            .expect("cluster state");
    }

    fn drops(&self) -> BTreeMap<DropReason, u64> {
        self.sim
            .gateway(0)
            .distributor()
            .snapshot()
            .drops
            .into_iter()
            .collect()
    }

    fn core_drops(&self) -> u64 {
        self.sim
            .gateway(0)
            .core()
            .unwrap()
            .counters()
            .drop_dvipa_not_distributed
    }

    /// Send a client packet through the gateway; the target that received it.
    fn inbound(&mut self, pkt: &[u8]) -> Result<usize, Why> {
        self.send_and_see(pkt, |s, p| s.client_send(0, p))
    }

    /// Plain traffic from the plain host.
    fn inbound_plain(&mut self, pkt: &[u8]) -> Result<usize, Why> {
        self.send_and_see(pkt, |s, p| s.client_send(1, p))
    }

    fn send_and_see(
        &mut self,
        pkt: &[u8],
        send: impl FnOnce(&mut Sim, Vec<u8>),
    ) -> Result<usize, Why> {
        let rx: Vec<u64> = (0..3).map(|j| self.sim.target(j).host.stats.rx).collect();
        let (drops, local) = (self.drops(), self.core_drops());
        let esp = self.sim.gateway(0).core().unwrap().sad().counters;
        send(&mut self.sim, pkt.to_vec());
        self.sim.settle(SECOND).unwrap();
        let got: Vec<usize> = (0..3)
            .filter(|j| self.sim.target(*j).host.stats.rx != rx[*j])
            .collect();
        match got[..] {
            [t] => return Ok(t),
            [] => {}
            _ => panic!("one packet reached several targets: {got:?}"),
        }
        let now = self.drops();
        if let Some((r, _)) = now.iter().find(|(r, n)| drops.get(r) != Some(n)) {
            return Err(Why::Drop(*r));
        }
        if self.core_drops() != local {
            return Err(Why::NotDistributed);
        }
        let esp2 = self.sim.gateway(0).core().unwrap().sad().counters;
        Err(Why::Other(format!("ESP before {esp:?}, after {esp2:?}")))
    }

    /// A reply from target `j`'s host back through its gateway; Ok when the
    /// client's SA opened it.
    fn reply(&mut self, j: usize, pkt: &[u8]) -> Result<(), Why> {
        let before = self.sim.client(0).stats.esp_opened;
        let drops = self.drops();
        self.sim.target_send(j, pkt.to_vec());
        self.sim.settle(SECOND).unwrap();
        if self.sim.client(0).stats.esp_opened == before + 1 {
            return Ok(());
        }
        let now = self.drops();
        match now.iter().find(|(r, n)| drops.get(r) != Some(n)) {
            Some((r, _)) => Err(Why::Drop(*r)),
            None => Err(Why::Other("the reply did not reach the client".into())),
        }
    }

    fn crt_len(&self) -> usize {
        self.sim.gateway(0).distributor().crt().len()
    }
}

/// How many targets listen on (`dvipa`, `port`) in gateway 0's DPT.
fn listening(s: &Sim, dvipa: IpAddr, port: u16) -> usize {
    s.gateway(0)
        .distributor()
        .dpt()
        .get(dvipa, port)
        .map_or(0, |e| e.targets().iter().filter(|t| t.listening).count())
}

fn tcp(
    src: IpAddr,
    sport: u16,
    dst: IpAddr,
    dport: u16,
    f: impl FnOnce(
        etherparse::PacketBuilderStep<etherparse::TcpHeader>,
    ) -> etherparse::PacketBuilderStep<etherparse::TcpHeader>,
) -> Vec<u8> {
    let b = match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => PacketBuilder::ipv4(s.octets(), d.octets(), 64),
        (IpAddr::V6(s), IpAddr::V6(d)) => PacketBuilder::ipv6(s.octets(), d.octets(), 64),
        _ => panic!("mixed families"),
    };
    let b = f(b.tcp(sport, dport, 1000, 65535));
    let mut v = Vec::new();
    b.write(&mut v, b"").unwrap();
    v
}

fn syn(i: u32) -> Vec<u8> {
    tcp(client(i), 20000 + i as u16, dvipa(), 80, |b| {
        b.syn()
            .options(&[TcpOptionElement::MaximumSegmentSize(1460)])
            .unwrap()
    })
}
fn ack(i: u32) -> Vec<u8> {
    tcp(client(i), 20000 + i as u16, dvipa(), 80, |b| b.ack(1))
}
fn fin_in(i: u32) -> Vec<u8> {
    tcp(client(i), 20000 + i as u16, dvipa(), 80, |b| b.ack(1).fin())
}
fn rst_in(i: u32) -> Vec<u8> {
    tcp(client(i), 20000 + i as u16, dvipa(), 80, |b| b.rst())
}
fn synack_out(i: u32) -> Vec<u8> {
    tcp(dvipa(), 80, client(i), 20000 + i as u16, |b| {
        b.syn()
            .ack(1001)
            .options(&[TcpOptionElement::MaximumSegmentSize(1460)])
            .unwrap()
    })
}
fn fin_out(i: u32) -> Vec<u8> {
    tcp(dvipa(), 80, client(i), 20000 + i as u16, |b| b.ack(1).fin())
}

fn key(i: u32) -> FlowKey {
    FlowKey {
        client: client(i),
        client_port: 20000 + i as u16,
        dvipa: dvipa(),
        dvipa_port: 80,
        proto: Proto::Tcp,
    }
}

fn count(targets: &[usize]) -> [usize; 3] {
    let mut c = [0; 3];
    for t in targets {
        c[*t] += 1;
    }
    c
}

#[test]
fn round_robin_300_syns_within_one() {
    let mut c = Cluster::new("round-robin", [1, 1, 1]);
    let got: Vec<usize> = (0..300).map(|i| c.inbound(&syn(i)).unwrap()).collect();
    let n = count(&got);
    assert!(
        n.iter().max().unwrap() - n.iter().min().unwrap() <= 1,
        "{n:?}"
    );
    assert_eq!(n.iter().sum::<usize>(), 300);
    assert_eq!(c.crt_len(), 300);
    let snap = c.sim.gateway(0).distributor().snapshot();
    assert_eq!(snap.connections, 300);
    let per: Vec<u64> = snap.targets.iter().map(|t| t.connections).collect();
    assert_eq!(per, vec![100, 100, 100]);
    // Each target saw its SYNs and clamped their MSS for the ESP+GRE overhead.
    for j in 0..3 {
        let ts = c.sim.target(j).stack();
        assert_eq!(ts.counters().mss_clamped, 100);
        assert_eq!(ts.connection_count(), 100);
    }
    // Follow-up packets stick to their target; replies reach the client under ESP.
    for i in 0..300 {
        assert_eq!(c.inbound(&ack(i)).unwrap(), got[i as usize]);
        c.reply(got[i as usize], &synack_out(i)).unwrap();
    }
    // A non-distributed port of the DVIPA: not for any target, not into the TUN.
    let port22 = tcp(client(1), 1, dvipa(), 22, |b| b.syn());
    assert_eq!(c.inbound(&port22), Err(Why::NotDistributed));
    // Traffic for the gateway's own address goes to its own stack.
    let own = tcp(client(1), 1, gw_inner(), 80, |b| b.syn());
    assert!(matches!(c.inbound(&own), Err(Why::Other(_))));
    assert_eq!(c.sim.gateway(0).tun_local.last(), Some(&own));
}

#[test]
fn ipv6_dvipa_is_distributed() {
    let mut c = Cluster::new("round-robin", [1, 1, 1]);
    let mut got = Vec::new();
    for i in 0..6u16 {
        let cl: IpAddr = format!("2001:db8:5::{}", i + 1).parse().unwrap();
        let p = tcp(cl, 30000 + i, dvipa6(), 80, |b| b.syn());
        got.push(c.inbound(&p).unwrap());
    }
    assert_eq!(count(&got), [2, 2, 2]);
    // And the reply crosses back to the client under ESP.
    let back = tcp(dvipa6(), 80, ip("2001:db8:5::1"), 30000, |b| {
        b.syn().ack(1001)
    });
    c.reply(got[0], &back).unwrap();
}

#[test]
fn weighted_round_robin_3_2_1_exact() {
    let mut c = Cluster::new("weighted-round-robin", [3, 2, 1]);
    let first: Vec<usize> = (0..6).map(|i| c.inbound(&syn(i)).unwrap()).collect();
    assert_eq!(count(&first), [3, 2, 1]);
    let rest: Vec<usize> = (6..600).map(|i| c.inbound(&syn(i)).unwrap()).collect();
    assert_eq!(count(&rest), [297, 198, 99]);
}

#[test]
fn least_connections_prefers_the_idle_target() {
    let mut c = Cluster::new("least-connections", [1, 1, 1]);
    let got: Vec<usize> = (0..3).map(|i| c.inbound(&syn(i)).unwrap()).collect();
    assert_eq!(count(&got), [1, 1, 1]);
    // Close the connection on whichever target got client 1.
    c.inbound(&rst_in(1)).unwrap();
    assert_eq!(c.inbound(&syn(3)).unwrap(), got[1]);
}

#[test]
fn drained_target_keeps_existing_connections() {
    let mut c = Cluster::new("round-robin", [1, 1, 1]);
    let got: Vec<usize> = (0..3).map(|i| c.inbound(&syn(i)).unwrap()).collect();
    let drained = got[1];
    c.sim
        .gateway_do(0, |e, _, _| match e {
            Engine::Core(core) => core.set_weight(dvipa(), T[drained].0, 0),
            Engine::Distributor(_) => unreachable!(),
        })
        .unwrap();
    let later: Vec<usize> = (3..103).map(|i| c.inbound(&syn(i)).unwrap()).collect();
    assert!(!later.contains(&drained));
    assert_eq!(count(&later).iter().filter(|n| **n == 50).count(), 2);
    // Its open connection is still routed to it.
    for _ in 0..5 {
        assert_eq!(c.inbound(&ack(1)).unwrap(), drained);
    }
}

#[test]
fn listener_down_moves_new_connections() {
    let mut c = Cluster::new("round-robin", [1, 1, 1]);
    // Target 3's server on port 80 of the IPv4 DVIPA stops (its other sockets stay);
    // the target's next scan reports it (SRVSTAT).
    c.sim.target_mut(2).host.unlisten(dvipa(), 80);
    c.wait(|s| listening(s, dvipa(), 80) == 2);
    assert_eq!(listening(&c.sim, dvipa6(), 80), 3);
    let got: Vec<usize> = (0..100).map(|i| c.inbound(&syn(i)).unwrap()).collect();
    assert_eq!(count(&got), [50, 50, 0]);
    // Nobody listening at all: NoListener.
    for j in [0, 1] {
        let socks: Vec<(IpAddr, u16)> = c
            .sim
            .target(j)
            .host
            .listeners()
            .iter()
            .map(|l| (l.addr, l.port))
            .collect();
        for (a, p) in socks {
            c.sim.target_mut(j).host.unlisten(a, p);
        }
    }
    c.wait(|s| listening(s, dvipa(), 80) == 0);
    assert_eq!(c.inbound(&syn(500)), Err(Why::Drop(DropReason::NoListener)));
    assert_eq!(
        c.sim
            .gateway(0)
            .distributor()
            .counters()
            .drops(DropReason::NoListener),
        1
    );
}

/// GRE from target `j`'s side of `gateway`'s link to it (or any source).
fn gre_to_gateway(
    c: &mut Cluster,
    gateway: usize,
    j: usize,
    src: IpAddr,
    key: GreKey,
    inner: &[u8],
) {
    let link = c.sim.target(j).links()[gateway];
    let mut buf = vec![0u8; inner.len() + 8];
    let n = gre::encapsulate(key, inner, &mut buf).unwrap();
    buf.truncate(n);
    c.sim.inject(
        Node::Target(j),
        Payload::Gre {
            src,
            dst: link.gateway_addr,
            data: buf,
        },
    );
    c.sim.settle(SECOND).unwrap();
}

#[test]
fn forged_gre_is_dropped_and_counted() {
    let mut c = Cluster::new("round-robin", [1, 1, 1]);
    let t0 = c.inbound(&syn(0)).unwrap();
    let other = (0..3).find(|t| *t != t0).unwrap();
    let reply = synack_out(0);
    let addr = |c: &Cluster, j: usize, gw: usize| c.sim.target(j).links()[gw].addr;
    let key = |j: usize| GreKey {
        sender: T[j],
        ipsec: true,
    };
    // Another target's key, sent from t0's own link and address.
    let a0 = addr(&c, t0, 0);
    gre_to_gateway(&mut c, 0, t0, a0, key(other), &reply);
    // Right key, but from an address that is not bound to that link.
    gre_to_gateway(&mut c, 0, t0, ip("10.9.9.9"), key(t0), &reply);
    // A target answering for a connection that another target owns.
    let ao = addr(&c, other, 0);
    gre_to_gateway(&mut c, 0, other, ao, key(other), &reply);
    assert_eq!(
        c.sim
            .gateway(0)
            .distributor()
            .counters()
            .drops(DropReason::Spoof),
        3
    );
    assert_eq!(
        c.sim.client(0).stats.esp_opened,
        0,
        "none of them reached the client"
    );
    // Target side: GRE from the second gateway (bound link, but not the DVIPA's
    // routing gateway) and GRE on the routing gateway's link with its key.
    let p = syn(7);
    let mut buf = vec![0u8; p.len() + 8];
    gre::encapsulate(
        GreKey {
            sender: BACKUP,
            ipsec: true,
        },
        &p,
        &mut buf,
    )
    .unwrap();
    let (l0, l1) = (c.sim.target(t0).links()[0], c.sim.target(t0).links()[1]);
    let rx = c.sim.target(t0).host.stats.rx;
    c.sim.inject(
        Node::Gateway(1),
        Payload::Gre {
            src: l1.gateway_addr,
            dst: l1.addr,
            data: buf.clone(),
        },
    );
    c.sim.inject(
        Node::Gateway(1),
        Payload::Gre {
            src: l0.gateway_addr,
            dst: l0.addr,
            data: buf,
        },
    );
    c.sim.settle(SECOND).unwrap();
    assert_eq!(
        c.sim.target(t0).stack().counters().drops(DropReason::Spoof),
        2
    );
    assert_eq!(
        c.sim.target(t0).host.stats.rx,
        rx,
        "neither reached the host"
    );
    // The genuine reply still passes.
    c.reply(t0, &reply).unwrap();
}

#[test]
fn fin_rst_and_idle_remove_entries() {
    let mut c = Cluster::new("round-robin", [1, 1, 1]);
    for j in 0..3 {
        c.sim.target_mut(j).duty.scan_every = SECOND;
    }
    let t: Vec<usize> = (0..4).map(|i| c.inbound(&syn(i)).unwrap()).collect();
    for i in 0..4 {
        c.inbound(&ack(i)).unwrap();
    }
    // 0: FIN both ways, then the linger time.
    c.inbound(&fin_in(0)).unwrap();
    c.reply(t[0], &fin_out(0)).unwrap();
    c.inbound(&ack(0)).unwrap(); // last ACK still routed during linger
    assert_eq!(c.crt_len(), 4);
    // 1: RST from the client ends it at once.
    c.inbound(&rst_in(1)).unwrap();
    assert_eq!(c.crt_len(), 3);
    assert_eq!(c.inbound(&ack(1)), Err(Why::Drop(DropReason::NoConnection)));
    c.sim.run_for(11 * SECOND);
    // 3 keeps talking; 2 stays idle; the closed one is gone after its linger.
    c.inbound(&ack(3)).unwrap();
    assert_eq!(c.crt_len(), 2);
    c.sim.run_for(3595 * SECOND);
    // 2 was idle for an hour.
    let crt = c.sim.gateway(0).distributor().crt();
    assert_eq!(crt.len(), 1);
    assert!(crt.get(&key(3)).is_some());
    let s = c.sim.gateway(0).distributor().snapshot();
    assert_eq!((s.conns_opened, s.conns_closed), (4, 3));
    // The targets forgot theirs too, and 3 goes after its own idle hour.
    c.sim.run_for(3600 * SECOND);
    assert_eq!(c.crt_len(), 0);
    for j in 0..3 {
        assert_eq!(c.sim.target(j).stack().connection_count(), 0);
    }
    let closed: u64 = (0..3)
        .map(|j| c.sim.target(j).stack().snapshot().conns_closed)
        .sum();
    assert_eq!(closed, 4);
    // Two idle hours passed with IKE and Child SA rekeys on the way: still up.
    assert_eq!(c.inbound(&syn(50)).map(|_| ()), Ok(()));
}

#[test]
fn udp_flows_are_selected_and_expire() {
    let mut c = Cluster::new("round-robin", [1, 1, 1]);
    let q = |i: u16| {
        let b = PacketBuilder::ipv4([192, 0, 2, 99], [198, 51, 100, 7], 64).udp(5000 + i, 53);
        let mut v = Vec::new();
        b.write(&mut v, b"query").unwrap();
        v
    };
    // No listener report for port 53 yet: no target.
    assert_eq!(c.inbound(&q(0)), Err(Why::Drop(DropReason::NoListener)));
    // A DNS-like echo server on every target (TCP and UDP 53; the daemon learns
    // listeners from the kernel's TCP sockets).
    for j in 0..3 {
        c.sim
            .target_mut(j)
            .host
            .listen(ip("0.0.0.0"), 53, App::Echo, true);
    }
    c.wait(|s| listening(s, dvipa(), 53) == 3);
    let opened = c.sim.client(0).stats.esp_opened;
    let a = c.inbound(&q(1)).unwrap();
    assert_eq!(c.inbound(&q(1)).unwrap(), a);
    assert_eq!(
        c.sim.client(0).stats.esp_opened,
        opened + 2,
        "both answers came back under ESP"
    );
    let flow = FlowKey {
        client: ip("192.0.2.99"),
        client_port: 5001,
        dvipa: dvipa(),
        dvipa_port: 53,
        proto: Proto::Udp,
    };
    assert!(c.sim.gateway(0).distributor().crt().get(&flow).is_some());
    c.sim.run_for(62 * SECOND);
    assert!(c.sim.gateway(0).distributor().crt().get(&flow).is_none());
}

#[test]
fn plain_packet_cannot_join_an_ipsec_connection() {
    let mut c = Cluster::with("round-robin", [1, 1, 1], "distribute");
    let t = c.inbound(&syn(0)).unwrap();
    // The same 4-tuple in clear (the kernel routes it into the TUN): the SPD wants
    // it protected, so the core refuses it before the distributor sees it.
    let before = c.sim.gateway(0).core().unwrap().counters().drop_policy_in;
    let a = ack(0);
    c.sim.gateway_do(0, |e, now, sink| {
        let Engine::Core(core) = e else {
            unreachable!()
        };
        let mut b = vec![0u8; 64 + a.len()];
        b[64..].copy_from_slice(&a);
        core.on_tun(now, &mut b, 64, a.len(), sink);
    });
    c.sim.settle(SECOND).unwrap();
    assert_eq!(
        c.sim.gateway(0).core().unwrap().counters().drop_policy_in,
        before + 1
    );
    assert_eq!(
        c.sim.target(t).host.stats.rx,
        1,
        "only the SYN reached the target"
    );
    // A plain connection (from outside the protected range) is distributed too,
    // and its replies go direct.
    let psyn = tcp(ip(PLAIN), 4444, dvipa(), 80, |b| b.syn());
    let pt = c.inbound_plain(&psyn).unwrap();
    c.sim.net.capture(true);
    c.sim
        .target_send(pt, tcp(dvipa(), 80, ip(PLAIN), 4444, |b| b.syn().ack(1001)));
    c.sim.settle(SECOND).unwrap();
    let direct: Vec<(Node, Node)> = c
        .sim
        .net
        .captured()
        .iter()
        .map(|d| (d.from, d.to))
        .collect();
    assert_eq!(
        direct,
        vec![(Node::Target(pt), Node::Client(1))],
        "not through the gateway"
    );
    assert_eq!(c.sim.client(1).host.captured().len(), 1);
    // A policy whose SPD lets cleartext from the clients' range in (an inbound
    // BYPASS; outbound still protected): the distributor is the last guard, and
    // the CRT knows the connection arrived under IPsec.
    let text = policy("round-robin", [1, 1, 1], "distribute").replacen(
        "name = \"v4\"\ndirection = \"both\"",
        "name = \"v4\"\ndirection = \"out\"",
        1,
    ) + "\n[[spd]]\nname = \"clear-in\"\ndirection = \"in\"\nlocal = \"198.51.100.7\"\nremote = \"192.0.2.0/24\"\naction = \"bypass\"\n";
    let mut c = Cluster::with_policy(&text);
    let t = c.inbound(&syn(0)).unwrap();
    let mismatch = |c: &Cluster| {
        let d = c.sim.gateway(0).distributor().counters();
        d.drops(DropReason::IpsecMismatch)
    };
    assert_eq!(mismatch(&c), 0);
    c.sim.gateway_do(0, |e, now, sink| {
        let Engine::Core(core) = e else {
            unreachable!()
        };
        let mut b = vec![0u8; 64 + a.len()];
        b[64..].copy_from_slice(&a);
        core.on_tun(now, &mut b, 64, a.len(), sink);
    });
    c.sim.settle(SECOND).unwrap();
    assert_eq!(mismatch(&c), 1);
    assert_eq!(
        c.sim.target(t).host.stats.rx,
        1,
        "only the SYN reached the target"
    );
}

#[test]
fn target_opened_connection_is_reported() {
    let mut c = Cluster::new("round-robin", [1, 1, 1]);
    // An app on target 2 connects out from DVIPA port 80 (an active FTP-like
    // data connection): SYN from the TUN goes to the gateway and NEWCONN too;
    // the gateway's outbound SPD protects it to the client.
    let p = tcp(dvipa(), 80, ip("192.0.2.200"), 2121, |b| b.syn());
    c.reply(1, &p).unwrap();
    let k = FlowKey {
        client: ip("192.0.2.200"),
        client_port: 2121,
        dvipa: dvipa(),
        dvipa_port: 80,
        proto: Proto::Tcp,
    };
    assert_eq!(
        c.sim.gateway(0).distributor().crt().get(&k).unwrap().target,
        T[1]
    );
    // The client's SYN-ACK follows the CRT to target 2.
    let sa = tcp(ip("192.0.2.200"), 2121, dvipa(), 80, |b| b.syn().ack(1));
    assert_eq!(c.inbound(&sa), Ok(1));
    // Arriving under IPsec upgrades the entry: a plain copy is refused now.
    let e = *c.sim.gateway(0).distributor().crt().get(&k).unwrap();
    assert!(e.uses_ipsec);
    let rx = c.sim.target(1).host.stats.rx;
    c.sim.gateway_do(0, |e, now, sink| {
        let Engine::Core(core) = e else {
            unreachable!()
        };
        let mut b = vec![0u8; 64 + sa.len()];
        b[64..].copy_from_slice(&sa);
        core.on_tun(now, &mut b, 64, sa.len(), sink);
    });
    c.sim.settle(SECOND).unwrap();
    assert_eq!(c.sim.target(1).host.stats.rx, rx);
    let core = c.sim.gateway(0).core().unwrap();
    assert_eq!(core.counters().drop_policy_in, 1);
}

#[test]
fn new_syn_on_a_closed_four_tuple_is_distributed_afresh() {
    let mut c = Cluster::new("round-robin", [1, 1, 1]);
    let first = c.inbound(&syn(1)).unwrap();
    c.inbound(&ack(1)).unwrap();
    c.inbound(&fin_in(1)).unwrap();
    c.reply(first, &fin_out(1)).unwrap();
    // The client reuses its port for a new connection: round-robin moves on.
    let second = c.inbound(&syn(1)).unwrap();
    assert_ne!(first, second);
    // A retransmitted SYN of an open connection stays with its target.
    assert_eq!(c.inbound(&syn(1)).unwrap(), second);
}

#[test]
fn target_opened_connection_from_an_undistributed_port_gets_its_replies() {
    // The usual case: an app on target 2 connects out from the DVIPA on an
    // ephemeral port (not a distributed port); the client's replies must follow
    // the CRT, not go to the gateway's own stack.
    let mut c = Cluster::new("round-robin", [1, 1, 1]);
    let p = tcp(dvipa(), 40000, ip("192.0.2.200"), 7000, |b| b.syn());
    c.reply(1, &p).unwrap();
    let sa = tcp(ip("192.0.2.200"), 7000, dvipa(), 40000, |b| b.syn().ack(1));
    assert_eq!(c.inbound(&sa), Ok(1));
    // Other traffic to that port without a CRT entry is still not distributed.
    let other = tcp(ip("192.0.2.201"), 7000, dvipa(), 40000, |b| b.syn());
    assert_eq!(c.inbound(&other), Err(Why::NotDistributed));
}

#[test]
fn cluster_forgery_and_replay_are_counted() {
    let mut c = Cluster::new("round-robin", [1, 1, 1]);
    let mut t1 = ClusterEndpoint::new(ClusterKey::new(KEY), T[0], 1 << 50);
    let m = t1.seal(&Message::SrvStat {
        target: T[0],
        dvipa: dvipa(),
        port: 80,
        listening: false,
    });
    let mut bad = m.clone();
    let last = bad.len() - 1;
    bad[last] ^= 1;
    // A lie: target 1 reporting for target 2.
    let lie = t1.seal(&Message::SrvStat {
        target: T[1],
        dvipa: dvipa(),
        port: 80,
        listening: false,
    });
    for data in [bad, m.clone(), m, lie] {
        c.sim
            .inject(Node::Target(0), Payload::Cluster { to: GW, data });
    }
    c.sim.run_for(Duration::from_millis(10));
    let s = c.sim.gateway(0).distributor().snapshot();
    assert_eq!(s.drops(DropReason::AuthFailed), 1);
    assert_eq!(s.drops(DropReason::Replayed), 1);
    assert_eq!(s.drops(DropReason::NotCandidate), 1);
    // T1 is now down on port 80, T2 still up (the lie changed nothing).
    let got: Vec<usize> = (0..4).map(|i| c.inbound(&syn(i)).unwrap()).collect();
    assert_eq!(count(&got), [0, 2, 2]);
}

#[test]
fn silent_target_is_taken_out_of_selection() {
    let mut c = Cluster::new("round-robin", [1, 1, 1]);
    // Targets 1 and 2 keep sending keepalives, target 3 falls silent.
    c.sim
        .net
        .set_path_one_way(Node::Target(2), Node::Gateway(0), Conditions::CUT);
    c.sim
        .run_until(60 * SECOND, |s| {
            !s.gateway(0).distributor().links().is_up(T[2])
        })
        .unwrap();
    assert!(
        c.sim.elapsed() > 30 * SECOND,
        "after the node timeout, not before"
    );
    let got: Vec<usize> = (0..10).map(|i| c.inbound(&syn(i)).unwrap()).collect();
    assert_eq!(count(&got), [5, 5, 0]);
    let snap = c.sim.gateway(0).distributor().snapshot();
    assert!(
        !snap
            .targets
            .iter()
            .find(|t| t.node == T[2])
            .unwrap()
            .link_up
    );
    // It comes back with a Hello.
    c.sim.net.heal(Node::Target(2), Node::Gateway(0));
    c.sim.target_do(2, |t, _| t.stack_mut().hello());
    c.sim.run_for(Duration::from_millis(5));
    assert!(c.sim.gateway(0).distributor().links().is_up(T[2]));
    let got: Vec<usize> = (10..13).map(|i| c.inbound(&syn(i)).unwrap()).collect();
    assert_eq!(count(&got), [1, 1, 1]);
}

#[test]
fn icmp_packet_too_big_reaches_the_connection_owner() {
    let mut c = Cluster::new("round-robin", [1, 1, 1]);
    let owners: Vec<usize> = (0..3).map(|i| c.inbound(&syn(i)).unwrap()).collect();
    // A router on the client's side says the reply to client 2 was too big.
    let reply = synack_out(2);
    let icmp = {
        use etherparse::icmpv4::DestUnreachableHeader;
        let b = PacketBuilder::ipv4([192, 0, 2, 254], [198, 51, 100, 7], 64).icmpv4(
            etherparse::Icmpv4Type::DestinationUnreachable(
                DestUnreachableHeader::FragmentationNeeded { next_hop_mtu: 1280 },
            ),
        );
        let mut v = Vec::new();
        b.write(&mut v, &reply[..28]).unwrap();
        v
    };
    assert_eq!(c.inbound(&icmp), Ok(owners[2]));
    // Unrelated ICMP to the DVIPA (an echo request) is for nobody.
    let ping = {
        let b =
            PacketBuilder::ipv4([192, 0, 2, 1], [198, 51, 100, 7], 64).icmpv4_echo_request(1, 1);
        let mut v = Vec::new();
        b.write(&mut v, b"ping").unwrap();
        v
    };
    assert_eq!(c.inbound(&ping), Err(Why::NotDistributed));
}

#[test]
fn restarted_gateway_rebuilds_dpt_and_crt() {
    let mut c = Cluster::new("round-robin", [1, 1, 1]);
    let got: Vec<usize> = (0..12).map(|i| c.inbound(&syn(i)).unwrap()).collect();
    // The routing gateway process restarts with empty tables (same id, a larger
    // first sequence number) and announces its DVIPAs again: targets answer with
    // SRVSTAT and NEWCONN.
    c.sim.restart_gateway(0).unwrap();
    assert_eq!(c.crt_len(), 0);
    c.wait(|s| s.gateway(0).distributor().crt().len() == 12 && listening(s, dvipa(), 80) == 3);
    // Its SAs are gone: the client negotiates again, then its connections go on.
    assert!(
        matches!(c.inbound(&ack(0)), Err(Why::Other(_))),
        "old SA unknown"
    );
    c.sim.client_do(0, |cl, _| cl.abandon_ike_sas());
    c.sim.connect(0, "web", 5 * SECOND).unwrap();
    for i in 0..12 {
        assert_eq!(c.inbound(&ack(i)).unwrap(), got[i as usize]);
    }
    let new: Vec<usize> = (100..103).map(|i| c.inbound(&syn(i)).unwrap()).collect();
    assert_eq!(count(&new), [1, 1, 1]);
}

#[test]
fn a_target_cannot_hijack_a_dvipa() {
    let mut c = Cluster::new("round-robin", [1, 1, 1]);
    let got: Vec<usize> = (0..3).map(|i| c.inbound(&syn(i)).unwrap()).collect();
    // Target 1 holds the site key and announces the DVIPA naming itself.
    let mut evil = ClusterEndpoint::new(ClusterKey::new(KEY), T[0], 1 << 50);
    let mut cfg = DvipaConfig {
        dvipa: dvipa(),
        ports: PortSet::List(vec![80, 53]),
        targets: TargetSet::List(T.iter().map(|t| (*t, 1)).collect()),
        algorithm: Algorithm::RoundRobin,
        routing_gateway: GW,
        backups: vec![],
    };
    cfg.routing_gateway = T[0];
    let m = evil.seal(&Message::DvipaList(vec![cfg]));
    for to in [GW, T[1], T[2]] {
        c.sim.inject(
            Node::Target(0),
            Payload::Cluster {
                to,
                data: m.clone(),
            },
        );
    }
    c.sim.settle(SECOND).unwrap();
    // Nothing moved: the gateway still routes, targets still answer to it.
    assert_eq!(c.crt_len(), 3);
    for i in 0..3 {
        assert_eq!(c.inbound(&ack(i)).unwrap(), got[i as usize]);
        c.reply(got[i as usize], &synack_out(i)).unwrap();
    }
    assert_eq!(
        c.sim
            .gateway(0)
            .distributor()
            .snapshot()
            .drops(DropReason::NotCandidate),
        1
    );
    assert_eq!(
        c.sim
            .target(1)
            .stack()
            .snapshot()
            .drops(DropReason::NotCandidate),
        1
    );
}

/// Two distributor-only gateways (the core cannot take a DVIPA over or reload
/// its DVIPA list yet): gateway 0 routes both DVIPAs, gateway 1 is their backup.
struct Ha {
    sim: Sim,
}

fn dvipa_cfg(addr: IpAddr, alg: Algorithm, weights: [u16; 3]) -> DvipaConfig {
    DvipaConfig {
        dvipa: addr,
        ports: PortSet::List(vec![80, 53]),
        targets: TargetSet::List(T.iter().copied().zip(weights).collect()),
        algorithm: alg,
        routing_gateway: GW,
        backups: vec![(BACKUP, 100)],
    }
}

/// Distributor-only gateway `gw` takes `dvipa` over, and the network sends the
/// DVIPA's traffic to it.
fn take_over(sim: &mut Sim, gw: usize, dvipa: IpAddr) {
    let ok = sim.gateway_do(gw, |e, _, sink| {
        let Engine::Distributor(d) = e else {
            unreachable!()
        };
        let ok = d.dist.take_over(dvipa);
        d.flush(sink);
        ok
    });
    assert!(ok);
    sim.net.claim(dvipa, Node::Gateway(gw));
}

impl Ha {
    fn new() -> Ha {
        let mut sim = SimBuilder::new(0x4a)
            .secret("psk", PSK)
            .secret("cluster.key", KEY)
            .distributor_gateway("gw", &policy("round-robin", [1, 1, 1], "drop"))
            .distributor_gateway("backup", &backup_policy())
            .target("web-1")
            .target("web-2")
            .target("web-3")
            .build()
            .unwrap();
        listen(&mut sim);
        let mut ha = Ha { sim };
        for gw in 0..2 {
            ha.configure(gw, dvipa_cfg(dvipa(), Algorithm::RoundRobin, [1, 1, 1]));
            ha.configure(gw, dvipa_cfg(dvipa6(), Algorithm::RoundRobin, [1, 1, 1]));
        }
        ha.sim
            .run_until(10 * SECOND, |s| {
                listening(s, dvipa(), 80) == 3 && listening(s, dvipa6(), 80) == 3
            })
            .unwrap();
        ha
    }

    /// What the policy (or a reload of it) gives gateway `gw` for a DVIPA.
    fn configure(&mut self, gw: usize, cfg: DvipaConfig) {
        self.sim.gateway_do(gw, |e, _, sink| {
            let Engine::Distributor(d) = e else {
                unreachable!()
            };
            d.dist.configure_dvipa(cfg);
            d.flush(sink);
        });
    }

    /// Gateway `gw` becomes the routing gateway of `dvipa`.
    fn take_over(&mut self, gw: usize, dvipa: IpAddr) {
        take_over(&mut self.sim, gw, dvipa);
    }

    /// A decrypted client packet into gateway `gw`'s data path.
    fn inbound(&mut self, gw: usize, pkt: &[u8]) -> Result<usize, Why> {
        let rx: Vec<u64> = (0..3).map(|j| self.sim.target(j).host.stats.rx).collect();
        let route = self.sim.inject_inner(gw, pkt, true).unwrap();
        self.sim.settle(SECOND).unwrap();
        match route {
            Route::ToTarget { target, .. } => {
                let j = T.iter().position(|t| *t == target).unwrap();
                assert_eq!(
                    self.sim.target(j).host.stats.rx,
                    rx[j] + 1,
                    "GRE reached the target's host"
                );
                Ok(j)
            }
            Route::Drop(r) => Err(Why::Drop(r)),
            Route::Local => Err(Why::NotDistributed),
        }
    }

    /// A reply from target `j`'s host; the gateway it reached (as IPsec traffic).
    fn reply(&mut self, j: usize, pkt: &[u8]) -> Option<usize> {
        let before: Vec<usize> = (0..2).map(|g| self.sim.gateway(g).replies.len()).collect();
        self.sim.target_send(j, pkt.to_vec());
        self.sim.settle(SECOND).unwrap();
        let g = (0..2).find(|g| self.sim.gateway(*g).replies.len() > before[*g])?;
        let r = self.sim.gateway(g).replies.last().unwrap();
        // (the target clamps the MSS of a SYN-ACK on the way: same length, maybe other bytes)
        assert!(r.uses_ipsec && r.target == T[j] && r.inner.len() == pkt.len());
        Some(g)
    }

    fn crt(&self, gw: usize) -> &plexgate_distrib::Crt {
        self.sim.gateway(gw).distributor().crt()
    }
}

#[test]
fn backup_rebuilds_from_messages_and_routes_existing_connections() {
    let mut c = Ha::new();
    let got: Vec<usize> = (0..30).map(|i| c.inbound(0, &syn(i)).unwrap()).collect();
    for i in 0..30 {
        c.inbound(0, &ack(i)).unwrap();
    }
    assert!(c.crt(1).is_empty());
    // The routing gateway dies; the backup takes over.
    c.sim.kill_gateway(0);
    c.take_over(1, dvipa());
    c.sim.settle(SECOND).unwrap();
    // DPT and CRT rebuilt from DvipaList + SrvStat + NewConn.
    assert_eq!(c.crt(1).len(), 30);
    for i in 0..30 {
        let e = c.crt(1).get(&key(i)).unwrap();
        assert_eq!(e.target, T[got[i as usize]]);
        assert!(e.uses_ipsec);
    }
    for j in 0..3 {
        let d = c
            .sim
            .target(j)
            .stack()
            .served()
            .iter()
            .find(|d| d.dvipa == dvipa())
            .unwrap();
        assert_eq!(d.routing_gateway, BACKUP);
    }
    // Existing connections go to the same targets; replies go to the backup.
    for i in 0..30 {
        assert_eq!(c.inbound(1, &ack(i)).unwrap(), got[i as usize]);
        assert_eq!(c.reply(got[i as usize], &fin_out(i)), Some(1));
    }
    // New connections are distributed by the backup over all three.
    let new: Vec<usize> = (100..130).map(|i| c.inbound(1, &syn(i)).unwrap()).collect();
    assert_eq!(count(&new), [10, 10, 10]);
}

#[test]
fn takeback_hands_connections_to_the_primary() {
    let mut c = Ha::new();
    // The backup takes over while the primary is away, gets some connections...
    c.take_over(1, dvipa());
    c.sim.settle(SECOND).unwrap();
    // (the primary heard the backup's list and stopped routing the DVIPA)
    assert!(!c.sim.gateway(0).routes_dvipa(dvipa()));
    let got: Vec<usize> = (0..9).map(|i| c.inbound(1, &syn(i)).unwrap()).collect();
    // ... then the primary takes back: it announces, the backup hands over its
    // CRT (NEWCONN) and the targets report theirs.
    c.take_over(0, dvipa());
    c.sim.settle(SECOND).unwrap();
    assert!(c.crt(1).is_empty());
    for i in 0..9 {
        assert_eq!(c.crt(0).get(&key(i)).unwrap().target, T[got[i as usize]]);
        assert_eq!(c.inbound(0, &ack(i)).unwrap(), got[i as usize]);
        assert_eq!(c.reply(got[i as usize], &synack_out(i)), Some(0));
    }
    assert_eq!(c.sim.inject_inner(1, &ack(0), true), Some(Route::Local));
}

#[test]
fn policy_reload_changes_weights_and_candidates() {
    let mut c = Ha::new();
    let first: Vec<usize> = (0..3).map(|i| c.inbound(0, &syn(i)).unwrap()).collect();
    // Reload: target 2 drained by weight 0, switch to weighted round-robin 2:0:1.
    c.configure(
        0,
        dvipa_cfg(dvipa(), Algorithm::WeightedRoundRobin, [2, 0, 1]),
    );
    c.sim.settle(SECOND).unwrap();
    let got: Vec<usize> = (3..9).map(|i| c.inbound(0, &syn(i)).unwrap()).collect();
    assert_eq!(count(&got), [4, 0, 2]);
    // Its open connection still goes to it.
    assert_eq!(c.inbound(0, &ack(1)).unwrap(), first[1]);
    // Reload without target 3 as a candidate at all: it stops serving the DVIPA.
    let mut cfg = dvipa_cfg(dvipa(), Algorithm::RoundRobin, [1, 1, 1]);
    cfg.targets = TargetSet::List(vec![(T[0], 1), (T[1], 1)]);
    c.configure(0, cfg);
    c.sim.settle(SECOND).unwrap();
    let got: Vec<usize> = (9..13).map(|i| c.inbound(0, &syn(i)).unwrap()).collect();
    assert_eq!(count(&got), [2, 2, 0]);
    assert!(c
        .sim
        .target(2)
        .stack()
        .served()
        .iter()
        .all(|d| d.dvipa != dvipa()));
}

/// Where the HA machine will plug in: an [`Agent`] with its own timer that
/// watches the primary and, once it has been dead for 300 ms, makes the backup
/// take the DVIPA over. The primary dies by a scheduled action.
struct Watchdog {
    next: Instant,
    dead_since: Option<Instant>,
    took_over_at: Option<Instant>,
}

impl Agent for Watchdog {
    fn poll_timeout(&self) -> Option<Instant> {
        self.took_over_at.is_none().then_some(self.next)
    }

    fn handle_timeout(&mut self, now: Instant, sim: &mut Sim) {
        self.next = now + Duration::from_millis(100);
        if !sim.net.is_down(Node::Gateway(0)) {
            self.dead_since = None;
            return;
        }
        let since = *self.dead_since.get_or_insert(now);
        if now - since >= Duration::from_millis(300) {
            take_over(sim, 1, dvipa());
            self.took_over_at = Some(now);
        }
    }
}

#[test]
fn an_agent_takes_over_when_the_primary_dies() {
    let mut c = Ha::new();
    let got: Vec<usize> = (0..6).map(|i| c.inbound(0, &syn(i)).unwrap()).collect();
    let start = c.sim.elapsed();
    c.sim.schedule(2 * SECOND, |s| s.kill_gateway(0));
    let now = c.sim.now();
    c.sim.add_agent(Box::new(Watchdog {
        next: now,
        dead_since: None,
        took_over_at: None,
    }));
    c.sim
        .run_until(10 * SECOND, |s| s.gateway(1).distributor().crt().len() == 6)
        .unwrap();
    let gap = c.sim.elapsed() - start;
    assert!(
        gap >= Duration::from_millis(2300) && gap < Duration::from_millis(2500),
        "{gap:?}"
    );
    for i in 0..6 {
        assert_eq!(c.inbound(1, &ack(i)).unwrap(), got[i as usize]);
    }
}
