//! The whole gateway in memory, with no socket and no clock of its own: an IKEv2
//! client (crate `plexgate-ike`) negotiates with a `GatewayCore`; the client's ESP
//! reaches the core, which distributes it to a target over GRE; the target's reply
//! comes back over GRE and leaves as ESP that the client's SA opens. Plain traffic
//! for the DVIPA is refused as the policy says. Deterministic: same seeds, same run.

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use plexgate::gateway::core::{GatewayCore, SideEffect, Sink};
use plexgate::site_template::{DvipaSite, TargetLink};
use plexgate_distrib as distrib;
use plexgate_ike as ike;
use plexgate_ipsec as ipsec;

const GW: &str = "10.10.0.2";
const CLIENT: &str = "10.10.0.1";
const CLIENT_IN: &str = "192.168.77.1";
const DVIPA: &str = "10.100.0.10";
const TARGET: &str = "10.9.0.2";
const PSK: &[u8] = b"in-memory-secret-0123456789";
const CLUSTER_KEY: &[u8] = b"in-memory-cluster-key-0123456789";

#[derive(Default)]
struct Recorder {
    udp: Vec<(SocketAddr, SocketAddr, Vec<u8>)>,
    esp: Vec<(IpAddr, Vec<u8>)>,
    gre: Vec<(IpAddr, Vec<u8>)>,
    tun: Vec<Vec<u8>>,
    cluster: usize,
}

impl Sink for Recorder {
    fn udp(&mut self, local: SocketAddr, remote: SocketAddr, data: &[u8]) {
        self.udp.push((local, remote, data.to_vec()));
    }
    fn esp(&mut self, _local: IpAddr, remote: IpAddr, data: &[u8]) {
        self.esp.push((remote, data.to_vec()));
    }
    fn gre(&mut self, remote: IpAddr, data: &[u8]) {
        self.gre.push((remote, data.to_vec()));
    }
    fn tun(&mut self, packet: &[u8]) {
        self.tun.push(packet.to_vec());
    }
    fn cluster(&mut self, _to: distrib::Destination, _data: &[u8]) {
        self.cluster += 1;
    }
}

fn gateway(dir: &Path, plain: &str) -> GatewayCore {
    let mut site = DvipaSite::new("mem", GW.parse().unwrap(), DVIPA.parse().unwrap());
    site.gateway_id = "gw@mem".into();
    site.client_id = "client@mem".into();
    site.ike_proposals = vec!["aes128gcm16-prfsha256-x25519".into()];
    site.dvipa_extra = format!("method = \"round-robin\"\nplain_traffic = \"{plain}\"");
    site.targets = vec![TargetLink::new(
        "web-1",
        "web-1",
        "10.9.0.1".parse().unwrap(),
    )];
    site.write(dir, PSK, CLUSTER_KEY).unwrap();
    let checked =
        plexgate_policy::parse_str(&site.toml(), "mem.toml", dir).unwrap_or_else(|d| panic!("{d}"));
    let setup = plexgate::gateway::core::CoreSetup::load(&checked.policy).unwrap();
    GatewayCore::new(
        &checked.policy,
        setup,
        Box::new(ike::SeededRng::new(7)),
        Instant::now(),
    )
    .unwrap()
}

fn client() -> ike::Endpoint {
    let child = ike::ChildConfig::new(
        "web",
        vec![ike::TrafficSelector::host(CLIENT_IN.parse().unwrap())],
        vec![ike::TrafficSelector::host(DVIPA.parse().unwrap())],
        vec![ike::EspProposal::AES128GCM16],
    );
    let mut p = ike::PeerConfig::psk("gw", "client@mem", "gw@mem", PSK, child);
    p.ike_proposals = vec![ike::IkeProposal::AES128GCM16_PRFSHA256_X25519];
    p.remote_addr = Some(SocketAddr::new(GW.parse().unwrap(), 500));
    p.local_addr = Some(SocketAddr::new(CLIENT.parse().unwrap(), 500));
    ike::Endpoint::new(
        Arc::new(ike::Config {
            peers: vec![p],
            limits: ike::Limits::default(),
        }),
        Box::new(ike::SeededRng::new(11)),
    )
}

/// Run IKE between the client and the core until the client has its Child SA.
fn negotiate(
    now: Instant,
    gw: &mut GatewayCore,
    c: &mut ike::Endpoint,
    rec: &mut Recorder,
) -> ike::ChildSa {
    c.initiate(now, "gw", "web").unwrap();
    for _ in 0..10 {
        while let Some(t) = c.poll_transmit() {
            let mut buf = t.payload.clone();
            let n = buf.len();
            gw.on_udp(now, t.remote, t.local, &mut buf, 0, n, rec);
        }
        for (local, remote, data) in std::mem::take(&mut rec.udp) {
            c.handle(now, remote, local, &data);
        }
        while let Some(ev) = c.poll_event() {
            if let ike::Event::ChildSaUp { child, .. } = ev {
                return child;
            }
        }
    }
    panic!("no Child SA");
}

fn client_sas(child: &ike::ChildSa) -> (ipsec::SecurityAssociation, ipsec::SecurityAssociation) {
    let t = ipsec::EspTransform::from_ikev2(child.encr, Some(child.encr_key_bits), child.integ)
        .unwrap();
    let mk = |spi, direction, keys: &(Vec<u8>, Vec<u8>)| ipsec::SaParams {
        spi,
        direction,
        transform: t,
        enc_key: keys.0.clone(),
        integ_key: keys.1.clone(),
        esn: child.esn,
        mode: ipsec::Mode::Tunnel,
        replay_window: 1024,
        lifetime: ipsec::Lifetime::default(),
        local_ts: vec![],
        remote_ts: vec![],
        local_addr: child.local.ip(),
        remote_addr: child.remote.ip(),
        encap: None,
        initial_seq: 0,
        peer: "gw".into(),
        child: "web".into(),
    };
    let now = Instant::now();
    (
        ipsec::SecurityAssociation::new(
            mk(child.spi_out, ipsec::Direction::Outbound, &child.keys_out),
            now,
        )
        .unwrap(),
        ipsec::SecurityAssociation::new(
            mk(child.spi_in, ipsec::Direction::Inbound, &child.keys_in),
            now,
        )
        .unwrap(),
    )
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

fn srvstat_listening(gw: &mut GatewayCore, now: Instant, rec: &mut Recorder) {
    let key = distrib::ClusterKey::new(CLUSTER_KEY);
    let node = distrib::NodeId(1000);
    let m = distrib::Message::SrvStat {
        target: node,
        dvipa: DVIPA.parse().unwrap(),
        port: 80,
        listening: true,
    };
    gw.on_cluster(now, &distrib::cluster::seal_with(&key, node, 1, &m), rec);
}

#[test]
fn ike_esp_gre_round_trip_in_memory() {
    let dir = std::env::temp_dir().join(format!("pg-core-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let now = Instant::now();
    let mut rec = Recorder::default();
    let mut gw = gateway(&dir, "drop");
    let mut c = client();
    let child = negotiate(now, &mut gw, &mut c, &mut rec);
    assert!(!child.udp_encap, "no NAT in this test: plain ESP");
    srvstat_listening(&mut gw, now, &mut rec);

    // The recovery records of the new IKE SA and Child SA were produced at once.
    let fx = gw.drain_side_effects();
    assert!(
        fx.iter()
            .any(|e| matches!(e, SideEffect::PutRecord(k, _) if k.starts_with("mem/ike/"))),
        "{fx:?}"
    );
    assert!(fx.iter().any(|e| matches!(e, SideEffect::PutRecord(k, _) if k == &format!("mem/child/{:08x}", child.spi_out))), "{fx:?}");

    // Client → gateway: ESP carrying a SYN to the DVIPA goes to the target over GRE.
    let (mut c_out, mut c_in) = client_sas(&child);
    let syn = tcp(CLIENT_IN, DVIPA, 40000, 80, true, false, b"");
    let mut esp = vec![0u8; 64 + c_out.sealed_len(syn.len())];
    let n = c_out.seal(now, &syn, 4, &mut esp[64..]).unwrap();
    gw.on_esp(now, &mut esp, 64, n, &mut rec);
    assert_eq!(rec.gre.len(), 1, "one GRE packet to the target");
    let (to, gre) = rec.gre.pop().unwrap();
    assert_eq!(to, TARGET.parse::<IpAddr>().unwrap());
    let (key, off) = distrib::gre::decapsulate(&gre).unwrap();
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
        &gre[off..],
        &syn[..],
        "the inner packet reaches the target unchanged"
    );

    // Target → gateway: the SYN-ACK over GRE on the target's link leaves as ESP.
    let synack = tcp(DVIPA, CLIENT_IN, 80, 40000, true, true, b"");
    let mut g = vec![0u8; 64 + 8 + synack.len() + 64];
    let w = distrib::gre::encapsulate(
        distrib::GreKey {
            sender: distrib::NodeId(1000),
            ipsec: true,
        },
        &synack,
        &mut g[64..],
    )
    .unwrap();
    let link = gw.link_of(TARGET.parse().unwrap()).unwrap();
    gw.on_gre(now, link, TARGET.parse().unwrap(), &mut g, 64, w, &mut rec);
    assert_eq!(rec.esp.len(), 1, "the reply is encrypted to the client");
    let (to, mut reply) = rec.esp.pop().unwrap();
    assert_eq!(to, CLIENT.parse::<IpAddr>().unwrap());
    let opened = c_in.open_in_place(now, &mut reply).unwrap();
    assert_eq!(
        &reply[opened.inner],
        &synack[..],
        "the client's SA opens the target's reply unchanged"
    );

    // The same reply forged from the wrong source on that link is a spoof: dropped.
    let w = distrib::gre::encapsulate(
        distrib::GreKey {
            sender: distrib::NodeId(1000),
            ipsec: true,
        },
        &synack,
        &mut g[64..],
    )
    .unwrap();
    gw.on_gre(
        now,
        link,
        "10.9.0.66".parse().unwrap(),
        &mut g,
        64,
        w,
        &mut rec,
    );
    assert!(
        rec.esp.is_empty(),
        "a spoofed GRE packet must not reach the client"
    );
    let spoof = gw
        .distributor()
        .snapshot()
        .drops
        .iter()
        .find(|(r, _)| *r == distrib::DropReason::Spoof)
        .map(|(_, n)| *n);
    assert_eq!(spoof, Some(1));

    // A replayed ESP packet is dropped and counted.
    let mut again = vec![0u8; 64 + c_out.sealed_len(syn.len())];
    let n2 = c_out.seal(now, &syn, 4, &mut again[64..]).unwrap();
    let copy = again.clone();
    gw.on_esp(now, &mut again, 64, n2, &mut rec);
    let mut replay = copy;
    gw.on_esp(now, &mut replay, 64, n2, &mut rec);
    assert_eq!(gw.sad().counters.drop_replay, 1);

    // Plain traffic for the DVIPA: refused, since plain_traffic = "drop".
    let before = rec.gre.len();
    let mut plain = vec![0u8; 64];
    plain.extend_from_slice(&tcp("10.10.0.7", DVIPA, 5555, 80, true, false, b""));
    let pn = plain.len() - 64;
    gw.on_tun(now + Duration::from_millis(1), &mut plain, 64, pn, &mut rec);
    assert_eq!(rec.gre.len(), before, "plain traffic was not distributed");
    assert_eq!(gw.counters().drop_policy_in, 1);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn plain_traffic_is_distributed_when_the_policy_says_so() {
    let dir = std::env::temp_dir().join(format!("pg-core-plain-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let now = Instant::now();
    let mut rec = Recorder::default();
    let mut gw = gateway(&dir, "distribute");
    srvstat_listening(&mut gw, now, &mut rec);
    let syn = tcp("10.10.0.7", DVIPA, 5555, 80, true, false, b"");
    let mut plain = vec![0u8; 64];
    plain.extend_from_slice(&syn);
    gw.on_tun(now, &mut plain, 64, syn.len(), &mut rec);
    assert_eq!(rec.gre.len(), 1);
    let (key, off) = distrib::gre::decapsulate(&rec.gre[0].1).unwrap();
    assert!(!key.ipsec, "plain connection");
    assert_eq!(&rec.gre[0].1[off..], &syn[..]);
    // But cleartext that the SPD wants protected (from the client's inner range) is dropped.
    let prot = tcp(CLIENT_IN, DVIPA, 5556, 80, true, false, b"");
    let mut p2 = vec![0u8; 64];
    p2.extend_from_slice(&prot);
    gw.on_tun(now, &mut p2, 64, prot.len(), &mut rec);
    assert_eq!(
        rec.gre.len(),
        1,
        "cleartext matching a PROTECT rule is not distributed (RFC 4301 §5.2)"
    );
    // A port of the DVIPA that is not distributed must not go back into the TUN
    // (the DVIPA is routed there: it would loop in the kernel).
    let other = tcp("10.10.0.7", DVIPA, 5557, 22, true, false, b"");
    let mut p3 = vec![0u8; 64];
    p3.extend_from_slice(&other);
    gw.on_tun(now, &mut p3, 64, other.len(), &mut rec);
    assert!(rec.tun.is_empty(), "nothing written back into the TUN");
    assert_eq!(gw.counters().drop_dvipa_not_distributed, 1);
    let _ = std::fs::remove_dir_all(dir);
}

/// The kernel's own IPv6 link-scope packets in the TUN (a router solicitation to
/// ff02::2 from a link-local address, MLD to ff02::16) are ignored and counted as
/// such, not as policy drops; a global IPv6 packet with no SPD rule still is one.
#[test]
fn link_scope_ipv6_from_the_tun_is_ignored_not_a_policy_drop() {
    let dir = std::env::temp_dir().join(format!("pg-core-ll-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let now = Instant::now();
    let mut rec = Recorder::default();
    let mut gw = gateway(&dir, "distribute");
    let icmp6 = |src: &str, dst: &str| {
        let mut p = vec![0u8; 64];
        let src: std::net::Ipv6Addr = src.parse().unwrap();
        let dst: std::net::Ipv6Addr = dst.parse().unwrap();
        let mut ip = vec![0x60, 0, 0, 0, 0, 8, 58, 255];
        ip.extend_from_slice(&src.octets());
        ip.extend_from_slice(&dst.octets());
        ip.extend_from_slice(&[133, 0, 0, 0, 0, 0, 0, 0]); // router solicitation
        let len = ip.len();
        p.extend_from_slice(&ip);
        (p, len)
    };
    let before = gw.counters().drop_policy_out;
    for (src, dst) in [
        ("fe80::1", "ff02::2"),
        ("::", "ff02::16"),
        ("2001:db8::1", "ff02::1"),
    ] {
        let (mut p, len) = icmp6(src, dst);
        gw.on_tun(now, &mut p, 64, len, &mut rec);
    }
    assert_eq!(gw.counters().tun_link_local, 3);
    assert_eq!(gw.counters().drop_policy_out, before);
    let (mut p, len) = icmp6("2001:db8::1", "2001:db8::2");
    gw.on_tun(now, &mut p, 64, len, &mut rec);
    assert_eq!(gw.counters().drop_policy_out, before + 1);
    assert!(rec.gre.is_empty() && rec.tun.is_empty() && rec.esp.is_empty() && rec.udp.is_empty());
    let _ = std::fs::remove_dir_all(dir);
}

/// A batch of ESP packets in their own buffers (ESP at offset 64).
struct Bufs<'a>(&'a mut [(Vec<u8>, usize)]);

impl plexgate::gateway::core::RxBatch for Bufs<'_> {
    fn count(&self) -> usize {
        self.0.len()
    }
    fn packet(&mut self, i: usize) -> Option<plexgate::gateway::core::RxPacket<'_>> {
        let (buf, len) = &mut self.0[i];
        Some(plexgate::gateway::core::RxPacket {
            buf: &mut buf[..],
            start: 64,
            len: *len,
            remote: None,
        })
    }
}

/// Everything observable about a gateway's inbound decisions.
fn observed(gw: &GatewayCore, rec: &Recorder) -> String {
    let mut crt: Vec<String> = gw
        .distributor()
        .crt()
        .iter()
        .map(|(k, e)| format!("{k:?} {e:?}"))
        .collect();
    crt.sort();
    format!(
        "gre={:?}\ntun={:?}\nesp={:?}\ncore={:?}\ndist={:?}\ncrt={crt:?}",
        rec.gre,
        rec.tun,
        gw.sad().counters,
        gw.counters(),
        gw.distributor().snapshot()
    )
}

/// `on_esp_batch` decides exactly as `on_esp` packet by packet: the same GRE and
/// TUN outputs in the same order, the same ESP, core and distributor counters and
/// the same CRT, for random mixes of connections (SYN, data, FIN, RST, reopened
/// ports, a port that is not distributed, data without a connection), replays,
/// bad ICVs, unknown SPIs, truncated packets and selector mismatches, cut into
/// batches of random sizes at random times.
#[test]
fn esp_batches_decide_like_single_packets() {
    for seed in 1..=12u64 {
        let dir = std::env::temp_dir().join(format!("pg-batch-{}-{seed}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let t0 = Instant::now();
        let (mut rec_a, mut rec_b) = (Recorder::default(), Recorder::default());
        let mut a = gateway(&dir, "drop");
        let mut b = gateway(&dir, "drop");
        // The same Child SA in both gateways (IKE is not deterministic: its
        // ephemeral keys come from the system's generator).
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
            esn: seed % 2 == 0,
            keys_in: k1.clone(),
            keys_out: k2.clone(),
            ts_local: vec![ike::TrafficSelector::host(DVIPA.parse().unwrap())],
            ts_remote: vec![ike::TrafficSelector::host(CLIENT_IN.parse().unwrap())],
            local: SocketAddr::new(GW.parse().unwrap(), 500),
            remote: SocketAddr::new(CLIENT.parse().unwrap(), 500),
            udp_encap: false,
            mode: ike::Mode::Tunnel,
            lifetime: Duration::from_secs(3600),
        };
        // (ChildSa wipes its keys on drop, so no `..gw_side` update syntax.)
        let client_side = ike::ChildSa {
            name: gw_side.name.clone(),
            spi_in: gw_side.spi_out,
            spi_out: gw_side.spi_in,
            protocol: gw_side.protocol,
            encr: gw_side.encr,
            encr_key_bits: gw_side.encr_key_bits,
            integ: gw_side.integ,
            esn: gw_side.esn,
            keys_in: k2,
            keys_out: k1,
            ts_local: gw_side.ts_remote.clone(),
            ts_remote: gw_side.ts_local.clone(),
            local: gw_side.remote,
            remote: gw_side.local,
            udp_encap: gw_side.udp_encap,
            mode: gw_side.mode,
            lifetime: gw_side.lifetime,
        };
        a.install_child_sa(t0, plexgate_ike::IkeSaId(1), "client", gw_side.clone());
        b.install_child_sa(t0, plexgate_ike::IkeSaId(1), "client", gw_side);
        srvstat_listening(&mut a, t0, &mut rec_a);
        srvstat_listening(&mut b, t0, &mut rec_b);
        let (mut c_out, _) = client_sas(&client_side);

        let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
        let mut rnd = |n: u64| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x % n
        };
        let mut sent: Vec<Vec<u8>> = Vec::new();
        let mut now = t0;
        for _round in 0..40 {
            now += Duration::from_millis(rnd(3));
            let n = 1 + rnd(24) as usize;
            let mut batch: Vec<(Vec<u8>, usize)> = Vec::new();
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
                    3 => {
                        let mut p = tcp(src, DVIPA, port, dport, false, true, b"fin");
                        p[33] |= 0x01; // FIN
                        fix_ip_checksum(&mut p);
                        p
                    }
                    4 => {
                        let mut p = tcp(src, DVIPA, port, dport, false, true, b"");
                        p[33] |= 0x04; // RST
                        fix_ip_checksum(&mut p);
                        p
                    }
                    _ => tcp(src, DVIPA, port, dport, false, true, &[0x5a; 100]),
                };
                let mut esp = vec![0u8; 64 + c_out.sealed_len(inner.len()) + 16];
                let len = c_out.seal(now, &inner, 4, &mut esp[64..]).unwrap();
                match rnd(30) {
                    0 => esp[64 + len - 3] ^= 0x40, // bad ICV
                    1 => esp[64] ^= 0x55,           // unknown SPI
                    2 if !sent.is_empty() => {
                        // a replay of an earlier packet
                        let old = sent[rnd(sent.len() as u64) as usize].clone();
                        let l = old.len();
                        let mut e = vec![0u8; 64 + l + 16];
                        e[64..64 + l].copy_from_slice(&old);
                        batch.push((e, l));
                        continue;
                    }
                    3 => {
                        batch.push((esp, 7)); // truncated
                        continue;
                    }
                    _ => sent.push(esp[64..64 + len].to_vec()),
                }
                batch.push((esp, len));
            }
            for (buf, len) in batch.clone() {
                let mut buf = buf;
                a.on_esp(now, &mut buf, 64, len, &mut rec_a);
            }
            b.on_esp_batch(now, &mut Bufs(&mut batch), &mut rec_b);
            assert_eq!(
                observed(&a, &rec_a),
                observed(&b, &rec_b),
                "seed {seed}, round {_round}"
            );
        }
        assert!(
            rec_a.gre.len() > 50,
            "seed {seed}: the mix must reach the target often ({})",
            rec_a.gre.len()
        );
        let _ = std::fs::remove_dir_all(dir);
    }
}

fn fix_ip_checksum(p: &mut [u8]) {
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
}
