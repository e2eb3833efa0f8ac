//! The whole gateway on the cluster harness (`plexgate::sim`), one gateway and
//! one target: an IKEv2 client negotiates with the `GatewayCore`; its ESP reaches
//! the core, which distributes it to the target over GRE; the target's reply comes
//! back over GRE and leaves as ESP that the client's SA opens. Plain traffic for
//! the DVIPA is refused or distributed as the policy says. Deterministic: same
//! seed, same run. (These were `tests/gateway_core.rs`.)

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use plexgate::gateway::core::HEADROOM;
use plexgate::sim::{App, ClientSpec, Datagram, Engine, Kind, Node, Payload, Sim, SimBuilder};
use plexgate::site_template::{DvipaSite, TargetLink};
use plexgate_distrib as distrib;
use plexgate_ike as ike;
use plexgate_ipsec as ipsec;

const GW: &str = "10.10.0.2";
const CLIENT: &str = "10.10.0.1";
const CLIENT_IN: &str = "192.168.77.1";
const DVIPA: &str = "10.100.0.10";
const TARGET: &str = "10.9.0.2";
const GW_LINK: &str = "10.9.0.1";
const PSK: &[u8] = b"in-memory-secret-0123456789";
const CLUSTER_KEY: &[u8] = b"in-memory-cluster-key-0123456789";
const SECOND: Duration = Duration::from_secs(1);

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// The policy of the gateway: one DVIPA on port 80, one target, road warriors
/// from 192.168.77.0/24 with a PSK.
fn policy(plain: &str) -> String {
    let mut site = DvipaSite::new("mem", GW.parse().unwrap(), DVIPA.parse().unwrap());
    site.gateway_id = "gw@sim".into();
    site.client_id = "client@sim".into();
    site.ike_proposals = vec!["aes128gcm16-prfsha256-x25519".into()];
    site.dvipa_extra = format!("method = \"round-robin\"\nplain_traffic = \"{plain}\"");
    site.targets = vec![TargetLink::new("web-1", "web-1", GW_LINK.parse().unwrap())];
    site.toml()
}

/// One gateway, target `web-1` whose host runs `app` on the DVIPA's port 80, a
/// road warrior (client 0) and a plain host 10.10.0.7 (client 1).
fn cluster(seed: u64, plain: &str, app: App) -> Sim {
    let mut sim = SimBuilder::new(seed)
        .secret("psk", PSK)
        .secret("cluster.key", CLUSTER_KEY)
        .gateway("gw", &policy(plain))
        .target("web-1")
        .client(ClientSpec::road_warrior(
            "rw",
            ip(CLIENT),
            ip(CLIENT_IN),
            ip(GW),
            &[ip(DVIPA)],
            PSK,
        ))
        .client(ClientSpec::plain("plain", ip("10.10.0.7")))
        .build()
        .unwrap();
    sim.target_mut(0).host.listen(ip(DVIPA), 80, app, false);
    // The target reports its listener once it has the DVIPA list.
    sim.run_until(5 * SECOND, |s| listening(s, 0))
        .expect("SRVSTAT from web-1");
    sim
}

/// Some target listens on the DVIPA's port 80, as gateway `gw` knows it.
fn listening(s: &Sim, gw: usize) -> bool {
    s.gateway(gw)
        .distributor()
        .dpt()
        .get(ip(DVIPA), 80)
        .is_some_and(|e| e.targets().iter().any(|t| t.listening))
}

fn tcp(
    src: &str,
    dst: &str,
    sport: u16,
    dport: u16,
    syn: bool,
    ack: bool,
    payload: &[u8],
) -> Vec<u8> {
    let s: std::net::Ipv4Addr = src.parse().unwrap();
    let d: std::net::Ipv4Addr = dst.parse().unwrap();
    let b =
        etherparse::PacketBuilder::ipv4(s.octets(), d.octets(), 64).tcp(sport, dport, 1000, 65535);
    let b = match (syn, ack) {
        (true, false) => b.syn(),
        (true, true) => b.syn().ack(1001),
        _ => b.ack(1),
    };
    let mut v = Vec::new();
    b.write(&mut v, payload).unwrap();
    v
}

/// The datagrams of `kind` delivered since capture started, with their ends.
fn delivered(sim: &Sim, kind: Kind) -> Vec<(Node, Node, Payload)> {
    sim.net
        .captured()
        .iter()
        .filter(|c| c.payload.kind() == kind)
        .map(|c| (c.from, c.to, c.payload.clone()))
        .collect()
}

fn spoof_drops(sim: &Sim) -> Option<u64> {
    let snap = sim.gateway(0).distributor().snapshot();
    snap.drops
        .iter()
        .find(|(r, _)| *r == distrib::DropReason::Spoof)
        .map(|(_, n)| *n)
}

#[test]
fn ike_esp_gre_round_trip_in_memory() {
    let mut sim = cluster(7, "drop", App::Capture);
    sim.connect(0, "web", 5 * SECOND).expect("Child SA");
    let child = sim.client(0).children[0].1.clone();
    assert!(!child.udp_encap, "no NAT in this test: plain ESP");

    // The recovery records of the new IKE SA and Child SA are in the store.
    assert_eq!(
        sim.store.keys("mem/ike/").len(),
        1,
        "{:?}",
        sim.store.keys("")
    );
    let child_key = format!("mem/child/{:08x}", child.spi_out);
    assert!(
        sim.store.get(&child_key).is_some(),
        "{:?}",
        sim.store.keys("")
    );

    // Client → gateway: ESP carrying a SYN to the DVIPA goes to the target over GRE.
    sim.net.capture(true);
    let syn = tcp(CLIENT_IN, DVIPA, 40000, 80, true, false, b"");
    sim.client_send(0, syn.clone());
    sim.settle(SECOND).unwrap();
    let gre = delivered(&sim, Kind::Gre);
    assert_eq!(gre.len(), 1, "one GRE packet to the target");
    let (from, to, Payload::Gre { src, dst, data }) = &gre[0] else {
        panic!("{gre:?}")
    };
    assert_eq!((*from, *to), (Node::Gateway(0), Node::Target(0)));
    assert_eq!(
        (*src, *dst),
        (ip(GW_LINK), ip(TARGET)),
        "from the gateway's link address"
    );
    let (key, off) = distrib::gre::decapsulate(data).unwrap();
    assert_eq!(
        key.sender,
        distrib::NodeId(1),
        "the GRE key names the sending gateway"
    );
    assert!(
        key.ipsec,
        "the GRE key says the connection is IPsec-protected"
    );
    assert_eq!(
        &data[off..],
        &syn[..],
        "the inner packet reaches the target unchanged"
    );
    assert_eq!(
        sim.target(0).host.captured(),
        std::slice::from_ref(&syn),
        "and its host"
    );

    // Target → gateway: the SYN-ACK over GRE on the target's link leaves as ESP.
    sim.net.capture(true);
    let synack = tcp(DVIPA, CLIENT_IN, 80, 40000, true, true, b"");
    sim.target_send(0, synack.clone());
    sim.settle(SECOND).unwrap();
    let esp = delivered(&sim, Kind::Esp);
    assert_eq!(esp.len(), 1, "the reply is encrypted to the client");
    assert!(matches!(&esp[0].2, Payload::Esp { dst, .. } if *dst == ip(CLIENT)));
    assert_eq!(sim.client(0).stats.esp_opened, 1);
    assert_eq!(
        sim.client(0).host.captured(),
        std::slice::from_ref(&synack),
        "the client's SA opens the target's reply unchanged"
    );

    // The same reply forged from the wrong source on that link is a spoof: dropped.
    let mut g = vec![0u8; synack.len() + 8];
    let key = distrib::GreKey {
        sender: distrib::NodeId(1000),
        ipsec: true,
    };
    let n = distrib::gre::encapsulate(key, &synack, &mut g).unwrap();
    let forged = Payload::Gre {
        src: ip("10.9.0.66"),
        dst: ip(GW_LINK),
        data: g[..n].to_vec(),
    };
    sim.inject(Node::Target(0), forged);
    sim.settle(SECOND).unwrap();
    assert_eq!(
        sim.client(0).stats.esp_opened,
        1,
        "a spoofed GRE packet must not reach the client"
    );
    assert_eq!(spoof_drops(&sim), Some(1));

    // A replayed ESP packet is dropped and counted.
    sim.net.capture(true);
    sim.client_send(0, tcp(CLIENT_IN, DVIPA, 40000, 80, false, true, b"x"));
    sim.settle(SECOND).unwrap();
    let (_, _, esp) = delivered(&sim, Kind::Esp).pop().unwrap();
    sim.inject(Node::Client(0), esp);
    sim.settle(SECOND).unwrap();
    assert_eq!(sim.gateway(0).core().unwrap().sad().counters.drop_replay, 1);

    // Plain traffic for the DVIPA: refused, since plain_traffic = "drop".
    let before = sim.target(0).host.stats.rx;
    sim.client_send(1, tcp("10.10.0.7", DVIPA, 5555, 80, true, false, b""));
    sim.settle(SECOND).unwrap();
    assert_eq!(
        sim.target(0).host.stats.rx,
        before,
        "plain traffic was not distributed"
    );
    assert_eq!(sim.gateway(0).core().unwrap().counters().drop_policy_in, 1);
}

#[test]
fn plain_traffic_is_distributed_when_the_policy_says_so() {
    let mut sim = cluster(8, "distribute", App::Echo);
    sim.net.capture(true);
    let syn = tcp("10.10.0.7", DVIPA, 5555, 80, true, false, b"");
    sim.client_send(1, syn.clone());
    sim.settle(SECOND).unwrap();
    let gre = delivered(&sim, Kind::Gre);
    let Payload::Gre { data, .. } = &gre[0].2 else {
        panic!()
    };
    let (key, off) = distrib::gre::decapsulate(data).unwrap();
    assert!(!key.ipsec, "plain connection");
    assert_eq!(&data[off..], &syn[..]);
    // The target's reply to a plain connection leaves directly, not via the gateway.
    let direct = delivered(&sim, Kind::Ip);
    assert!(
        direct
            .iter()
            .any(|(f, t, _)| (*f, *t) == (Node::Target(0), Node::Client(1))),
        "{direct:?}"
    );
    assert_eq!(gre.len(), 1, "nothing came back over GRE");

    // A whole plain TCP exchange works the same way, byte-exact.
    let data: Vec<u8> = (0..20_000u32).map(|i| (i % 253) as u8).collect();
    sim.echo(1, SocketAddr::new(ip(DVIPA), 80), &data, 10 * SECOND)
        .unwrap();

    // But cleartext that the SPD wants protected (from the client's inner range) is dropped.
    sim.run_for(2 * SECOND);
    let before = sim.target(0).host.stats.rx;
    let prot = tcp(CLIENT_IN, DVIPA, 5556, 80, true, false, b"");
    sim.gateway_do(0, |e, now, sink| {
        let Engine::Core(c) = e else { unreachable!() };
        let mut b = vec![0u8; HEADROOM + prot.len() + HEADROOM];
        b[HEADROOM..HEADROOM + prot.len()].copy_from_slice(&prot);
        c.on_tun(now, &mut b, HEADROOM, prot.len(), sink);
    });
    sim.settle(SECOND).unwrap();
    assert_eq!(
        sim.target(0).host.stats.rx,
        before,
        "cleartext matching a PROTECT rule is not distributed (RFC 4301 §5.2)"
    );
    // A port of the DVIPA that is not distributed must not go back into the TUN
    // (the DVIPA is routed there: it would loop in the kernel).
    sim.client_send(1, tcp("10.10.0.7", DVIPA, 5557, 22, true, false, b""));
    sim.settle(SECOND).unwrap();
    assert!(
        sim.gateway(0).tun_local.is_empty(),
        "nothing written back into the TUN"
    );
    assert_eq!(sim.gateway(0).tun_forwarded, 0);
    assert_eq!(
        sim.gateway(0)
            .core()
            .unwrap()
            .counters()
            .drop_dvipa_not_distributed,
        1
    );
    assert_eq!(sim.target(0).host.stats.rx, before);
}

/// The kernel's own IPv6 link-scope packets in the TUN (a router solicitation to
/// ff02::2 from a link-local address, MLD to ff02::16) are ignored and counted as
/// such, not as policy drops; a global IPv6 packet with no SPD rule still is one.
#[test]
fn link_scope_ipv6_from_the_tun_is_ignored_not_a_policy_drop() {
    let mut sim = cluster(9, "distribute", App::Echo);
    let icmp6 = |src: &str, dst: &str| {
        let src: std::net::Ipv6Addr = src.parse().unwrap();
        let dst: std::net::Ipv6Addr = dst.parse().unwrap();
        let mut ip = vec![0x60, 0, 0, 0, 0, 8, 58, 255];
        ip.extend_from_slice(&src.octets());
        ip.extend_from_slice(&dst.octets());
        ip.extend_from_slice(&[133, 0, 0, 0, 0, 0, 0, 0]); // router solicitation
        ip
    };
    let tun = |sim: &mut Sim, p: Vec<u8>| {
        sim.gateway_do(0, |e, now, sink| {
            let Engine::Core(c) = e else { unreachable!() };
            let mut b = vec![0u8; HEADROOM + p.len()];
            b[HEADROOM..].copy_from_slice(&p);
            c.on_tun(now, &mut b, HEADROOM, p.len(), sink);
        })
    };
    let counters = |sim: &Sim| sim.gateway(0).core().unwrap().counters();
    let before = counters(&sim).drop_policy_out;
    let sent = sim.net.stats.sent.clone();
    for (src, dst) in [
        ("fe80::1", "ff02::2"),
        ("::", "ff02::16"),
        ("2001:db8::1", "ff02::1"),
    ] {
        tun(&mut sim, icmp6(src, dst));
    }
    assert_eq!(counters(&sim).tun_link_local, 3);
    assert_eq!(counters(&sim).drop_policy_out, before);
    tun(&mut sim, icmp6("2001:db8::1", "2001:db8::2"));
    assert_eq!(counters(&sim).drop_policy_out, before + 1);
    assert_eq!(sim.net.stats.sent, sent, "nothing sent anywhere");
    assert!(sim.gateway(0).tun_local.is_empty());
}

/// The same Child SA on the gateway and on a test-held sealing SA.
fn shared_child(esn: bool) -> (ike::ChildSa, ipsec::SecurityAssociation) {
    let (k1, k2) = (
        ((0..20u8).collect::<Vec<_>>(), vec![]),
        ((20..40u8).collect::<Vec<_>>(), vec![]),
    );
    let gw_side = ike::ChildSa {
        name: "web".into(),
        spi_in: 0xc000_0001,
        spi_out: 0xd000_0002,
        protocol: 50,
        encr: 20,
        encr_key_bits: 128,
        integ: None,
        esn,
        keys_in: k1.clone(),
        keys_out: k2,
        ts_local: vec![ike::TrafficSelector::host(ip(DVIPA))],
        ts_remote: vec![ike::TrafficSelector::host(ip(CLIENT_IN))],
        local: SocketAddr::new(ip(GW), 500),
        remote: SocketAddr::new(ip(CLIENT), 500),
        udp_encap: false,
        mode: ike::Mode::Tunnel,
        lifetime: Duration::from_secs(3600),
    };
    let t = ipsec::EspTransform::from_ikev2(20, Some(128), None).unwrap();
    let params = ipsec::SaParams {
        spi: gw_side.spi_in,
        direction: ipsec::Direction::Outbound,
        transform: t,
        enc_key: k1.0,
        integ_key: vec![],
        esn,
        mode: ipsec::Mode::Tunnel,
        replay_window: 1024,
        lifetime: ipsec::Lifetime::default(),
        local_ts: vec![],
        remote_ts: vec![],
        local_addr: ip(CLIENT),
        remote_addr: ip(GW),
        encap: None,
        initial_seq: 0,
        peer: "gw".into(),
        child: "web".into(),
    };
    let sa = ipsec::SecurityAssociation::new(params, std::time::Instant::now()).unwrap();
    (gw_side, sa)
}

/// Everything observable about a gateway's inbound decisions: the GRE packets
/// delivered to the target, in order, and the counters and CRT.
fn observed(sim: &Sim) -> String {
    let gw = sim.gateway(0);
    let core = gw.core().unwrap();
    let start = sim.now() - sim.elapsed();
    let mut crt: Vec<String> = (gw.distributor().crt().iter())
        .map(|(k, e)| {
            let seen = e.last_seen - start;
            format!(
                "{k:?} {:?} {} {:?} {:?} {seen:?}",
                e.target, e.uses_ipsec, e.state, e.origin
            )
        })
        .collect();
    crt.sort();
    let gre: Vec<(Node, Vec<u8>)> = delivered(sim, Kind::Gre)
        .into_iter()
        .map(|(_, to, p)| (to, p.bytes().to_vec()))
        .collect();
    format!(
        "gre={gre:?}\ntun={:?}\nesp={:?}\ncore={:?}\ndist={:?}\ncrt={crt:?}",
        gw.tun_local,
        core.sad().counters,
        core.counters(),
        gw.distributor().snapshot()
    )
}

/// A gateway fed the ESP that arrives at one instant as one batch (`on_esp_batch`,
/// as the daemon's `recvmmsg` does) decides exactly as one fed packet by packet
/// (`on_esp`): the same GRE packets to the target in the same order, the same
/// ESP, core and distributor counters and the same CRT, for random mixes of
/// connections (SYN, data, FIN, RST, reopened ports, a port that is not
/// distributed, data without a connection), replays, bad ICVs, unknown SPIs,
/// truncated packets and selector mismatches, in bursts of random sizes at random
/// times.
#[test]
fn esp_batches_decide_like_single_packets() {
    for seed in 1..=12u64 {
        let mut sims: Vec<Sim> = [false, true]
            .into_iter()
            .map(|batch| {
                let mut s = cluster(seed, "drop", App::Capture);
                s.batch_rx = batch;
                let (child, _) = shared_child(seed % 2 == 0);
                s.gateway_do(0, |e, now, _| {
                    let Engine::Core(c) = e else { unreachable!() };
                    c.install_child_sa(now, ike::IkeSaId(1), "client", child);
                });
                s.net.capture(true);
                s
            })
            .collect();
        let (_, mut c_out) = shared_child(seed % 2 == 0);
        let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
        let mut rnd = |n: u64| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x % n
        };
        let mut sent: Vec<Vec<u8>> = Vec::new();
        for round in 0..40 {
            let wait = Duration::from_millis(1 + rnd(3));
            let at = sims[0].now() + wait;
            assert_eq!(sims[0].elapsed(), sims[1].elapsed());
            let n = 1 + rnd(24) as usize;
            let mut burst: Vec<Vec<u8>> = Vec::new();
            for _ in 0..n {
                let port = 40000 + rnd(4) as u16;
                let dport = if rnd(10) == 0 { 81 } else { 80 };
                let src = if rnd(25) == 0 {
                    "192.168.77.9"
                } else {
                    CLIENT_IN
                };
                let inner = match rnd(20) {
                    0..=2 => tcp(src, DVIPA, port, dport, true, false, b""),
                    3 => with_flag(tcp(src, DVIPA, port, dport, false, true, b"fin"), 0x01),
                    4 => with_flag(tcp(src, DVIPA, port, dport, false, true, b""), 0x04),
                    _ => tcp(src, DVIPA, port, dport, false, true, &[0x5a; 100]),
                };
                let mut esp = vec![0u8; c_out.sealed_len(inner.len())];
                let len = c_out.seal(at, &inner, 4, &mut esp).unwrap();
                esp.truncate(len);
                match rnd(30) {
                    0 => esp[len - 3] ^= 0x40, // bad ICV
                    1 => esp[0] ^= 0x55,       // unknown SPI
                    2 if !sent.is_empty() => esp = sent[rnd(sent.len() as u64) as usize].clone(), // replay
                    3 => esp.truncate(7), // truncated
                    _ => sent.push(esp.clone()),
                }
                burst.push(esp);
            }
            for s in &mut sims {
                let at = s.now() + wait;
                for esp in &burst {
                    s.net.push(Datagram {
                        at,
                        from: Node::Client(0),
                        payload: Payload::Esp {
                            src: ip(CLIENT),
                            dst: ip(GW),
                            data: esp.clone(),
                        },
                    });
                }
                s.run_for(wait);
            }
            assert_eq!(
                observed(&sims[0]),
                observed(&sims[1]),
                "seed {seed}, round {round}"
            );
        }
        assert_eq!(sims[0].batches, 0);
        assert!(
            sims[1].batches > 10,
            "seed {seed}: bursts arrived as batches ({})",
            sims[1].batches
        );
        let gre = delivered(&sims[0], Kind::Gre).len();
        assert!(
            gre > 50,
            "seed {seed}: the mix must reach the target often ({gre})"
        );
    }
}

fn with_flag(mut p: Vec<u8>, flag: u8) -> Vec<u8> {
    p[33] |= flag;
    p[10] = 0;
    p[11] = 0;
    let mut s: u32 = 0;
    for i in (0..20).step_by(2) {
        s += u32::from(u16::from_be_bytes([p[i], p[i + 1]]));
    }
    while s > 0xffff {
        s = (s & 0xffff) + (s >> 16);
    }
    let c = !(s as u16);
    p[10..12].copy_from_slice(&c.to_be_bytes());
    p
}
