//! Owning addresses on a real LAN: namespaces on a Linux bridge that the test
//! makes and removes, L2 agents (`plexgate::l2`) running inside the gateway
//! namespaces, and as evidence the kernel neighbour table of a client namespace
//! (`ip neigh`) and a tcpdump capture on the bridge, read back with tshark.
//!
//! - active/standby: the client resolves the gateway VIPA to the active's MAC;
//!   after a switch to the other gateway it resolves to the other's MAC within
//!   1 s, and back; the standby never sends an ARP reply; each broadcast request
//!   gets exactly one reply;
//! - one gateway with two interfaces on one subnet: taking the agent interface
//!   down moves the VIPA to the other within 1 s, and back when it returns;
//! - cluster MAC mode: a switch changes no client neighbour entry, and the two
//!   members still exchange unicast packets (through per-member MACs);
//! - a flood of malformed and spoofed ARP changes no ownership and crashes nothing.
//!
//! Needs root and iproute2, tcpdump, tshark, ping (run `scripts/setup.sh`); a
//! missing tool makes the tests FAIL.

mod common;

use std::net::Ipv4Addr;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use plexgate::io::packet::PacketSocket;
use plexgate::l2::{AgentConfig, L2Agent};
use plexgate_ha::l2::{
    AddressConfig, AddressKind, Answerer, ClusterConfig, ClusterMember, Config, Event,
    InterfaceConfig,
};
use plexgate_lab::capture::{tshark_fields, Capture};
use plexgate_lab::Netns;
use plexgate_wire::arp::{ArpFrameRepr, ArpOperation, ArpRepr, EthernetAddress};

const WAIT: Duration = Duration::from_secs(10);

/// The lab's switch, with the MACs of what is plugged in as wire addresses.
struct Switch {
    inner: plexgate_lab::Switch,
    last: String,
}

impl Switch {
    fn new() -> Switch {
        common::prerequisites();
        Switch {
            inner: plexgate_lab::Switch::new("sw").unwrap(),
            last: String::new(),
        }
    }

    /// Plugs a new interface `ifname` of `host` (address `cidr`) into the bridge;
    /// returns its MAC.
    fn plug(&mut self, host: &Netns, ifname: &str, cidr: &str) -> EthernetAddress {
        self.last = self.inner.plug(host, ifname, cidr).unwrap();
        mac_of(host, ifname)
    }

    /// The bridge port of the last interface plugged in.
    fn last_port(&self) -> String {
        self.last.clone()
    }
}

fn mac_of(ns: &Netns, ifname: &str) -> EthernetAddress {
    let out = ns
        .ip(&["-br", "link", "show", "dev", ifname])
        .unwrap()
        .stdout;
    out.split_whitespace()
        .nth(2)
        .and_then(|m| m.parse().ok())
        .unwrap_or_else(|| panic!("no MAC in `{out}`"))
}

/// The MAC of `addr` in `ns`'s neighbour table on `dev`, if it has one.
fn neigh(ns: &Netns, addr: Ipv4Addr, dev: &str) -> Option<EthernetAddress> {
    let a = addr.to_string();
    let out = ns
        .ip(&["neigh", "show", "to", &a, "dev", dev])
        .unwrap()
        .stdout;
    let mut words = out.split_whitespace();
    words.find(|w| *w == "lladdr")?;
    words.next()?.parse().ok()
}

fn flush_neigh(ns: &Netns, addr: Ipv4Addr) {
    ns.ip(&["neigh", "flush", "to", &addr.to_string()]).unwrap();
}

/// Waits until `f` holds; returns how long it took, or panics after `WAIT`.
fn wait_for(what: &str, mut f: impl FnMut() -> bool) -> Duration {
    let t = Instant::now();
    while !f() {
        assert!(t.elapsed() < WAIT, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
    t.elapsed()
}

fn ping(ns: &Netns, addr: Ipv4Addr) {
    ns.wait_ping(&addr.to_string(), None, WAIT)
        .unwrap_or_else(|e| panic!("ping {addr} from {}: {e}", ns.label()));
}

fn epoch() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

fn lan_iface(name: &str, addr: &str) -> InterfaceConfig {
    InterfaceConfig {
        name: name.into(),
        address: addr.parse().unwrap(),
        prefix_len: 24,
    }
}

fn vipa_config(ifaces: Vec<InterfaceConfig>, vipa: Ipv4Addr) -> Config {
    Config::new(
        ifaces,
        vec![AddressConfig {
            address: vipa,
            kind: AddressKind::GatewayVipa,
        }],
    )
}

/// Starts an agent inside `ns` (its sockets and thread live there).
fn agent(ns: &Netns, cfg: Config) -> L2Agent {
    ns.run_in(move || L2Agent::start(AgentConfig::new(cfg)))
        .unwrap()
        .unwrap_or_else(|e| panic!("starting the l2 agent: {e}"))
}

fn holds(ns: &Netns, addr: Ipv4Addr) -> bool {
    let out = ns.ip(&["-4", "addr", "show", "dev", "lo"]).unwrap().stdout;
    out.contains(&format!("inet {addr}/32"))
}

/// One ARP frame of the capture.
#[derive(Debug)]
struct Arp {
    t: f64,
    eth_src: EthernetAddress,
    eth_dst: EthernetAddress,
    reply: bool,
    sha: EthernetAddress,
    spa: Ipv4Addr,
    tpa: Ipv4Addr,
}

fn arp_frames(cap: &mut Capture) -> Vec<Arp> {
    let pcap = cap.stop().to_path_buf();
    let fields = [
        "frame.time_epoch",
        "eth.src",
        "eth.dst",
        "arp.opcode",
        "arp.src.hw_mac",
        "arp.src.proto_ipv4",
        "arp.dst.proto_ipv4",
    ];
    tshark_fields(&pcap, "arp", &fields)
        .unwrap()
        .into_iter()
        .filter_map(|r| {
            Some(Arp {
                t: r.first()?.parse().ok()?,
                eth_src: r.get(1)?.parse().ok()?,
                eth_dst: r.get(2)?.parse().ok()?,
                reply: r.get(3)? == "2",
                sha: r.get(4)?.parse().ok()?,
                spa: r.get(5)?.parse().ok()?,
                tpa: r.get(6)?.parse().ok()?,
            })
        })
        .collect()
}

/// Broadcast requests from `client` for `addr` sent from time `from` on got one
/// reply each, and those sent before (nobody active yet) none; returns how many
/// requests were answered. Replies are counted in total rather than per request:
/// a reply that is slower than the client's retransmission must not count as a
/// duplicate, while a second answerer or a silent one still shows.
fn one_reply_each(frames: &[Arp], client: EthernetAddress, addr: Ipv4Addr, from: f64) -> usize {
    let requests = |after: bool| {
        frames
            .iter()
            .filter(|f| !f.reply && f.eth_src == client && f.eth_dst.is_broadcast())
            .filter(|f| f.tpa == addr && (f.t >= from) == after)
            .count()
    };
    let replies = |after: bool| {
        frames
            .iter()
            .filter(|f| f.reply && f.spa == addr && f.eth_dst == client && (f.t >= from) == after)
            .count()
    };
    assert_eq!(replies(false), 0, "replies before anyone was active");
    assert_eq!(replies(true), requests(true), "replies vs requests");
    requests(true)
}

#[test]
fn active_standby_switch_moves_the_vipa_within_a_second() {
    let vipa: Ipv4Addr = "10.77.0.100".parse().unwrap();
    let mut sw = Switch::new();
    let (client, g1, g2) = (
        Netns::new("client").unwrap(),
        Netns::new("gw1").unwrap(),
        Netns::new("gw2").unwrap(),
    );
    let c_mac = sw.plug(&client, "eth0", "10.77.0.1/24");
    let m1 = sw.plug(&g1, "eth0", "10.77.0.2/24");
    let m2 = sw.plug(&g2, "eth0", "10.77.0.3/24");
    let mut cap = Capture::start(sw.inner.ns(), "br0", "arp").unwrap();
    let a1 = agent(&g1, vipa_config(vec![lan_iface("eth0", "10.77.0.2")], vipa));
    let a2 = agent(&g2, vipa_config(vec![lan_iface("eth0", "10.77.0.3")], vipa));
    // Standby everywhere: nobody answers, the kernel included.
    assert!(!client.ping(&vipa.to_string(), None, 1).unwrap());
    flush_neigh(&client, vipa);

    // (active, standby, active's MAC) for each phase: gw1, gw2, gw1 again.
    let mut windows: Vec<(f64, f64, EthernetAddress)> = Vec::new();
    let mut since = epoch();
    let first_active = since;
    a1.set_active(vipa, true).unwrap();
    assert!(holds(&g1, vipa) && !holds(&g2, vipa));
    ping(&client, vipa);
    assert_eq!(neigh(&client, vipa, "eth0"), Some(m1));
    for (from, to, new_mac, new_ns, old_ns) in [(&a1, &a2, m2, &g2, &g1), (&a2, &a1, m1, &g1, &g2)]
    {
        // A few fresh resolutions in the stable phase: one reply each.
        for _ in 0..3 {
            flush_neigh(&client, vipa);
            ping(&client, vipa);
        }
        // Let the announcement burst end, so nothing of the old active is in
        // flight when it goes standby.
        std::thread::sleep(Duration::from_millis(1600));
        let switch = epoch();
        let t = Instant::now();
        from.set_active(vipa, false).unwrap();
        to.set_active(vipa, true).unwrap();
        let old_mac = if new_mac == m1 { m2 } else { m1 };
        windows.push((since, epoch(), old_mac));
        since = switch;
        wait_for("the client's neighbour entry to follow", || {
            neigh(&client, vipa, "eth0") == Some(new_mac)
        });
        let took = t.elapsed();
        eprintln!("l2: client followed the switch to {new_mac} in {took:?}");
        assert!(took <= Duration::from_secs(1), "switch took {took:?}");
        assert!(holds(new_ns, vipa) && !holds(old_ns, vipa));
        ping(&client, vipa);
    }
    for _ in 0..3 {
        flush_neigh(&client, vipa);
        ping(&client, vipa);
    }
    windows.push((since, epoch(), m1));
    let st2 = a2.status().unwrap();
    drop((a1, a2));

    let frames = arp_frames(&mut cap);
    assert!(one_reply_each(&frames, c_mac, vipa, first_active) >= 9);
    // Every frame speaking for the VIPA comes from the gateway active at the time.
    for f in frames.iter().filter(|f| f.spa == vipa) {
        let ok = windows
            .iter()
            .any(|(a, b, mac)| f.t >= *a && f.t <= *b && f.eth_src == *mac && f.sha == *mac);
        assert!(ok, "{f:?} outside its sender's active windows {windows:?}");
    }
    // The standby never replied: gw2 answered only while active (above), and
    // its counters agree with the capture.
    let from_g2 = frames.iter().filter(|f| f.reply && f.eth_src == m2).count() as u64;
    assert_eq!(st2.counters.answered, from_g2);
}

#[test]
fn agent_interface_down_moves_the_vipa_and_back() {
    let vipa: Ipv4Addr = "10.78.0.100".parse().unwrap();
    let mut sw = Switch::new();
    let (client, gw) = (Netns::new("client").unwrap(), Netns::new("gw").unwrap());
    let c_mac = sw.plug(&client, "eth0", "10.78.0.1/24");
    let m0 = sw.plug(&gw, "eth0", "10.78.0.2/24");
    let m1 = sw.plug(&gw, "eth1", "10.78.0.3/24");
    let mut cap = Capture::start(sw.inner.ns(), "br0", "arp").unwrap();
    let cfg = vipa_config(
        vec![
            lan_iface("eth0", "10.78.0.2"),
            lan_iface("eth1", "10.78.0.3"),
        ],
        vipa,
    );
    let a = agent(&gw, cfg);
    let first_active = epoch();
    a.set_active(vipa, true).unwrap();
    ping(&client, vipa);
    assert_eq!(neigh(&client, vipa, "eth0"), Some(m0));
    for (dev, state, mac) in [("eth0", "down", m1), ("eth0", "up", m0)] {
        // The request reaches both interfaces; exactly one answers.
        for _ in 0..3 {
            flush_neigh(&client, vipa);
            ping(&client, vipa);
        }
        let t = Instant::now();
        gw.ip(&["link", "set", "dev", dev, state]).unwrap();
        wait_for("the client's entry to follow the agent", || {
            neigh(&client, vipa, "eth0") == Some(mac)
        });
        let took = t.elapsed();
        eprintln!("l2: {dev} {state}: client followed to {mac} in {took:?}");
        assert!(took <= Duration::from_secs(1), "agent move took {took:?}");
        ping(&client, vipa);
        let st = a.status().unwrap();
        let want = if mac == m0 { "eth0" } else { "eth1" };
        assert_eq!(st.addresses[0].interface.as_deref(), Some(want));
    }
    for _ in 0..3 {
        flush_neigh(&client, vipa);
        ping(&client, vipa);
    }
    let ev = a.events().unwrap();
    let moves = ev
        .iter()
        .filter(|e| matches!(e, Event::Moved { .. }))
        .count();
    assert_eq!(moves, 2, "{ev:?}");
    drop(a);
    let frames = arp_frames(&mut cap);
    assert!(one_reply_each(&frames, c_mac, vipa, first_active) >= 9);
}

#[test]
fn interface_created_after_start_is_picked_up() {
    let vipa: Ipv4Addr = "10.82.0.100".parse().unwrap();
    let mut sw = Switch::new();
    let (client, gw) = (Netns::new("client").unwrap(), Netns::new("gw").unwrap());
    sw.plug(&client, "eth0", "10.82.0.1/24");
    // The agent starts before its interface exists, and is made active.
    let a = agent(&gw, vipa_config(vec![lan_iface("eth0", "10.82.0.2")], vipa));
    a.set_active(vipa, true).unwrap();
    let st = a.status().unwrap();
    assert!(!st.interfaces[0].up);
    assert_eq!(st.addresses[0].answerer, Answerer::Nobody);
    assert!(matches!(a.events().unwrap()[..], [Event::Waiting { .. }]));
    let t = Instant::now();
    let m = sw.plug(&gw, "eth0", "10.82.0.2/24");
    wait_for("the agent to answer on the new interface", || {
        a.status().unwrap().addresses[0].mac == Some(m)
    });
    let took = t.elapsed();
    eprintln!("l2: new interface picked up {took:?} after `ip link add`");
    assert!(took <= Duration::from_secs(1), "took {took:?}");
    ping(&client, vipa);
    assert_eq!(neigh(&client, vipa, "eth0"), Some(m));
    // The new interface was quieted, and is given back its values on stop.
    let sysctl = |k: &str| {
        let key = format!("net.ipv4.conf.eth0.{k}");
        gw.exec(&["sysctl", "-n", &key])
            .unwrap()
            .stdout
            .trim()
            .to_string()
    };
    assert_eq!(
        (sysctl("arp_ignore"), sysctl("arp_announce")),
        ("1".into(), "2".into())
    );
    drop(a);
    assert_eq!(
        (sysctl("arp_ignore"), sysctl("arp_announce")),
        ("0".into(), "0".into())
    );
    assert!(
        !holds(&gw, vipa),
        "a stopped agent leaves no address behind"
    );
}

#[test]
fn adapter_backup_answers_for_an_interface_without_carrier() {
    let own: Ipv4Addr = "10.81.0.2".parse().unwrap();
    let mut sw = Switch::new();
    let (client, gw) = (Netns::new("client").unwrap(), Netns::new("gw").unwrap());
    let c_mac = sw.plug(&client, "eth0", "10.81.0.1/24");
    let m0 = sw.plug(&gw, "eth0", "10.81.0.2/24");
    let port0 = sw.last_port();
    let m1 = sw.plug(&gw, "eth1", "10.81.0.3/24");
    let mut cap = Capture::start(sw.inner.ns(), "br0", "arp").unwrap();
    let mut cfg = Config::new(
        vec![
            lan_iface("eth0", "10.81.0.2"),
            lan_iface("eth1", "10.81.0.3"),
        ],
        vec![],
    );
    cfg.adapter_backup = true;
    let start = epoch();
    let a = agent(&gw, cfg);
    // Each interface's announcement arrives on the other: one network.
    wait_for("eth0 and eth1 to be found on one network", || {
        let st = a.status().unwrap();
        st.interfaces[0].same_network == ["eth1"] && st.interfaces[1].same_network == ["eth0"]
    });
    ping(&client, own);
    assert_eq!(neigh(&client, own, "eth0"), Some(m0));
    // Carrier loss on eth0 (its switch port goes down), then back.
    for (state, mac) in [("down", m1), ("up", m0)] {
        for _ in 0..3 {
            flush_neigh(&client, own);
            ping(&client, own);
        }
        let t = Instant::now();
        sw.inner
            .ns()
            .ip(&["link", "set", "dev", &port0, state])
            .unwrap();
        wait_for("the client's entry to follow", || {
            neigh(&client, own, "eth0") == Some(mac)
        });
        let took = t.elapsed();
        eprintln!("l2: eth0 carrier {state}: client followed to {mac} in {took:?}");
        assert!(took <= Duration::from_secs(1), "took {took:?}");
        ping(&client, own);
    }
    for _ in 0..3 {
        flush_neigh(&client, own);
        ping(&client, own);
    }
    let ev = a.events().unwrap();
    assert!(
        ev.iter().any(|e| matches!(e, Event::BackupTakeover { .. })),
        "{ev:?}"
    );
    assert!(
        ev.iter().any(|e| matches!(e, Event::BackupReturned { .. })),
        "{ev:?}"
    );
    drop(a);
    let frames = arp_frames(&mut cap);
    // While eth0 is up the kernel answers on eth0 only (arp_ignore = 1), while it
    // has no carrier plexgate answers on eth1: one reply to every request.
    assert!(one_reply_each(&frames, c_mac, own, start) >= 9);
}

#[test]
fn cluster_mac_switch_changes_no_neighbour_entry() {
    let vipa: Ipv4Addr = "10.79.0.100".parse().unwrap();
    let cluster_mac: EthernetAddress = "03:bf:0a:4f:00:64".parse().unwrap();
    let (p1, p2): (Ipv4Addr, Ipv4Addr) =
        ("10.79.0.2".parse().unwrap(), "10.79.0.3".parse().unwrap());
    let mut sw = Switch::new();
    let (client, g1, g2) = (
        Netns::new("client").unwrap(),
        Netns::new("gw1").unwrap(),
        Netns::new("gw2").unwrap(),
    );
    let c_mac = sw.plug(&client, "eth0", "10.79.0.1/24");
    sw.plug(&g1, "eth0", "10.79.0.2/24");
    let m2 = sw.plug(&g2, "eth0", "10.79.0.3/24");
    let mut cap = Capture::start(sw.inner.ns(), "br0", "arp").unwrap();
    let cfg = |own: &str| {
        let mut c = vipa_config(vec![lan_iface("eth0", own)], vipa);
        c.cluster = Some(ClusterConfig {
            mac: cluster_mac,
            members: [p1, p2]
                .map(|address| ClusterMember { address, mac: None })
                .to_vec(),
        });
        c
    };
    let a1 = agent(&g1, cfg("10.79.0.2"));
    let a2 = agent(&g2, cfg("10.79.0.3"));
    let first_active = epoch();
    a1.set_active(vipa, true).unwrap();
    ping(&client, vipa);
    assert_eq!(neigh(&client, vipa, "eth0"), Some(cluster_mac));
    for (from, to, to_ns) in [(&a1, &a2, &g2), (&a2, &a1, &g1)] {
        std::thread::sleep(Duration::from_millis(1600));
        from.set_active(vipa, false).unwrap();
        to.set_active(vipa, true).unwrap();
        assert!(holds(to_ns, vipa));
        // Through the switch and its announcements, the entry never changes.
        let t = Instant::now();
        while t.elapsed() < Duration::from_millis(1500) {
            assert_eq!(neigh(&client, vipa, "eth0"), Some(cluster_mac));
            std::thread::sleep(Duration::from_millis(50));
        }
        ping(&client, vipa);
        for _ in 0..3 {
            flush_neigh(&client, vipa);
            ping(&client, vipa);
            assert_eq!(neigh(&client, vipa, "eth0"), Some(cluster_mac));
        }
    }
    // The members reach each other point-to-point, through per-member MACs.
    ping(&g1, p2);
    ping(&g2, p1);
    assert_eq!(neigh(&g1, p2, "eth0"), Some(ClusterConfig::derived_mac(p2)));
    assert_eq!(neigh(&g2, p1, "eth0"), Some(ClusterConfig::derived_mac(p1)));
    // A non-member learns the member's own MAC.
    ping(&client, p2);
    assert_eq!(neigh(&client, p2, "eth0"), Some(m2));
    let st = a2.status().unwrap();
    let row = st.addresses.iter().find(|r| r.address == p2).unwrap();
    assert_eq!(row.answerer, Answerer::Plexgate);
    drop((a1, a2));
    let frames = arp_frames(&mut cap);
    assert!(one_reply_each(&frames, c_mac, vipa, first_active) >= 6);
    // Every answer for the VIPA carried the cluster MAC.
    assert!(frames
        .iter()
        .filter(|f| f.spa == vipa)
        .all(|f| f.sha == cluster_mac));
}

/// Frames the attacker sends: malformed ARP of every kind, replies and
/// announcements claiming the VIPA, and senders no host can have.
fn hostile_frames(me: EthernetAddress, vipa: Ipv4Addr, victim: Ipv4Addr) -> Vec<Vec<u8>> {
    let frame = |arp: ArpRepr| {
        ArpFrameRepr {
            eth_dst: EthernetAddress::BROADCAST,
            eth_src: me,
            arp,
        }
        .to_bytes()
        .to_vec()
    };
    let good = frame(ArpRepr::request(me, victim, vipa));
    let mut out = Vec::new();
    let mut x: u32 = 0x1234_5678;
    for n in 0..3000usize {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        let mut f = good.clone();
        match n % 6 {
            0 => f.truncate(14 + (x as usize % 27)),
            1 => f[14 + (x as usize % 8)] = x as u8 ^ 0x5a,
            2 => f[18..20].copy_from_slice(&[(x % 40) as u8 + 7, 4]),
            3 => f[20..22].copy_from_slice(&[0, 3 + (x % 200) as u8]),
            4 => f.extend((0..x % 40).map(|i| i as u8)),
            _ => f[14..].iter_mut().for_each(|b| {
                x = x.rotate_left(7) ^ 0x9e37_79b9;
                *b = x as u8;
            }),
        }
        out.push(f);
    }
    let claim = ArpRepr {
        operation: ArpOperation::Reply,
        sender_mac: me,
        sender_ip: vipa,
        target_mac: EthernetAddress::BROADCAST,
        target_ip: vipa,
    };
    for _ in 0..500 {
        out.push(frame(claim));
        out.push(frame(ArpRepr::announcement(me, vipa)));
        let group = EthernetAddress([0x01, 0, 0x5e, 0, 0, 9]);
        out.push(frame(ArpRepr::request(group, victim, vipa)));
    }
    out
}

#[test]
fn flood_of_malformed_and_spoofed_arp_changes_no_ownership() {
    let vipa: Ipv4Addr = "10.80.0.100".parse().unwrap();
    let mut sw = Switch::new();
    let (client, g1, g2, mallory) = (
        Netns::new("client").unwrap(),
        Netns::new("gw1").unwrap(),
        Netns::new("gw2").unwrap(),
        Netns::new("mallory").unwrap(),
    );
    sw.plug(&client, "eth0", "10.80.0.1/24");
    let m1 = sw.plug(&g1, "eth0", "10.80.0.2/24");
    let m2 = sw.plug(&g2, "eth0", "10.80.0.3/24");
    let evil = sw.plug(&mallory, "eth0", "10.80.0.66/24");
    let mut cap = Capture::start(sw.inner.ns(), "br0", "arp").unwrap();
    let a1 = agent(&g1, vipa_config(vec![lan_iface("eth0", "10.80.0.2")], vipa));
    let a2 = agent(&g2, vipa_config(vec![lan_iface("eth0", "10.80.0.3")], vipa));
    a1.set_active(vipa, true).unwrap();
    ping(&client, vipa);
    let frames = hostile_frames(evil, vipa, "10.80.0.1".parse().unwrap());
    let total = frames.len();
    let sent = mallory
        .run_in(move || {
            let idx = plexgate::io::packet::link_state("eth0")
                .unwrap()
                .unwrap()
                .index;
            let s = PacketSocket::open(idx).unwrap();
            frames.iter().filter(|f| s.send(f).is_ok()).count()
        })
        .unwrap();
    assert!(
        sent > total / 2,
        "only {sent} of {total} frames could be sent"
    );
    // Both agents still work and still see the same owner.
    let (st1, st2) = (a1.status().unwrap(), a2.status().unwrap());
    assert!(st1.addresses[0].active && !st2.addresses[0].active);
    assert_eq!(st1.addresses[0].answerer, Answerer::Plexgate);
    assert_eq!(st1.addresses[0].mac, Some(m1));
    assert_eq!(st2.addresses[0].answerer, Answerer::Nobody);
    let c = st1.counters;
    assert!(c.malformed > 0 && c.spoofed > 0 && c.conflicts > 0, "{c:?}");
    assert_eq!(c.ignored, c.malformed + c.spoofed + c.conflicts);
    assert!(c.ignored as usize <= sent);
    // The conflict was logged once, not once per frame.
    let conflicts = a1
        .events()
        .unwrap()
        .into_iter()
        .filter(|e| matches!(e, Event::Conflict { .. }))
        .count();
    assert_eq!(conflicts, 1);
    // The client's cache was poisoned by the spoofed announcements (no host can
    // prevent that); asked afresh, it gets the owner.
    flush_neigh(&client, vipa);
    ping(&client, vipa);
    assert_eq!(neigh(&client, vipa, "eth0"), Some(m1));
    drop((a1, a2));
    let frames = arp_frames(&mut cap);
    assert!(
        !frames.iter().any(|f| f.reply && f.eth_src == m2),
        "the standby replied"
    );
    assert!(frames
        .iter()
        .filter(|f| f.spa == vipa && f.eth_src == m1)
        .all(|f| f.sha == m1 && (f.reply || f.tpa == vipa)));
}
