//! Transport mode and the inbound selector check (RFC 4301 §5.2), issue #16: a
//! transport-mode SA whose selectors allow the peer's TCP port 443 only must
//! drop (and count) a payload for another protocol or port, and must hand on
//! what the caller needs to rebuild the packet: outer addresses, protocol and
//! payload.

use plexgate_ipsec::{
    Direction, EspError, EspTransform, Lifetime, Mode, SaParams, Sad, SecurityAssociation,
    TrafficSelector,
};
use std::time::Instant;

const GW: &str = "198.51.100.1";
const PEER: &str = "198.51.100.2";

/// Our inbound SA and the peer's outbound SA of a transport-mode Child SA
/// between the two hosts, selectors: peer TCP port 443 -> us, any port.
fn pair(t: EspTransform) -> (SaParams, SaParams) {
    let key = |n: usize, s: u8| (0..n).map(|i| s ^ (i as u8)).collect::<Vec<u8>>();
    let peer_tcp_443 = TrafficSelector {
        protocol: 6,
        start_port: 443,
        end_port: 443,
        ..TrafficSelector::host(PEER.parse().unwrap())
    };
    let us_tcp = TrafficSelector {
        protocol: 6,
        ..TrafficSelector::host(GW.parse().unwrap())
    };
    let inbound = SaParams {
        spi: 0x4000_0001,
        direction: Direction::Inbound,
        transform: t,
        enc_key: key(t.enc_key_len(), 0x21),
        integ_key: key(t.integ_key_len(), 0x42),
        esn: false,
        mode: Mode::Transport,
        replay_window: 1024,
        lifetime: Lifetime::default(),
        local_ts: vec![us_tcp],
        remote_ts: vec![peer_tcp_443],
        local_addr: GW.parse().unwrap(),
        remote_addr: PEER.parse().unwrap(),
        encap: None,
        initial_seq: 0,
        peer: "peer".into(),
        child: "transport".into(),
    };
    let mut outbound = inbound.clone();
    outbound.direction = Direction::Outbound;
    outbound.local_ts = vec![peer_tcp_443];
    outbound.remote_ts = vec![us_tcp];
    std::mem::swap(&mut outbound.local_addr, &mut outbound.remote_addr);
    (inbound, outbound)
}

/// A TCP header (20 bytes) from `sport` to `dport`, then `data`.
fn tcp(sport: u16, dport: u16, data: &[u8]) -> Vec<u8> {
    let mut v = vec![0u8; 20];
    v[0..2].copy_from_slice(&sport.to_be_bytes());
    v[2..4].copy_from_slice(&dport.to_be_bytes());
    v[12] = 5 << 4;
    v.extend_from_slice(data);
    v
}

/// Fails on the code before #16 was fixed: transport mode skipped the check.
#[test]
fn transport_payload_outside_the_selectors_is_dropped_and_counted() {
    for t in [EspTransform::AesGcm128, EspTransform::AesCbc256HmacSha384] {
        let now = Instant::now();
        let (inb, outb) = pair(t);
        let mut sad = Sad::new();
        sad.insert(inb, now).unwrap();
        let mut peer = SecurityAssociation::new(outb, now).unwrap();
        let mut buf = vec![0u8; 512];

        // From port 443: allowed.
        let ok = tcp(443, 51000, b"hello");
        let n = peer.seal(now, &ok, 6, &mut buf).unwrap();
        let got = sad.open_in_place(now, &mut buf[..n]).unwrap();
        assert_eq!(&buf[got.opened.inner.clone()], &ok[..]);
        assert_eq!(got.opened.next_header, 6);

        // From another port, as UDP to a port in range, and as a runt TCP
        // header without ports: all outside the selectors.
        let before = sad.counters.drop_selector_mismatch;
        for (payload, nh) in [
            (tcp(22, 51000, b"x"), 6u8),
            (tcp(443, 51000, b"x"), 17),
            (vec![0x01, 0xbb], 6),
        ] {
            let n = peer.seal(now, &payload, nh, &mut buf).unwrap();
            assert_eq!(
                sad.open_in_place(now, &mut buf[..n]).map(|_| ()),
                Err(EspError::SelectorMismatch),
                "{t}: next header {nh}, payload {payload:02x?}"
            );
        }
        assert_eq!(sad.counters.drop_selector_mismatch, before + 3, "{t}");
        assert_eq!(sad.counters.rx_packets, 1, "{t}");
    }
}

#[test]
fn transport_packet_gives_what_rebuilds_the_ip_packet() {
    let now = Instant::now();
    let (inb, outb) = pair(EspTransform::AesGcm256);
    let mut rx = SecurityAssociation::new(inb, now).unwrap();
    let mut tx = SecurityAssociation::new(outb, now).unwrap();
    let payload = tcp(443, 51000, b"rebuild me");
    let mut buf = vec![0u8; 512];
    let n = tx.seal(now, &payload, 6, &mut buf).unwrap();
    let opened = rx.open_in_place(now, &mut buf[..n]).unwrap();
    let tp = rx.transport_packet(&opened).expect("transport mode");
    assert_eq!(tp.src, PEER.parse::<std::net::IpAddr>().unwrap());
    assert_eq!(tp.dst, GW.parse::<std::net::IpAddr>().unwrap());
    assert_eq!(tp.protocol, 6);
    assert_eq!(&buf[tp.payload.clone()], &payload[..]);
    let t = tp.tuple(&buf);
    assert_eq!((t.src_port, t.dst_port), (Some(443), Some(51000)));

    let mut pkt = vec![0u8; tp.ip_header_len() + tp.payload.len()];
    let h = tp.write_ip_header(&mut pkt).unwrap();
    pkt[h..].copy_from_slice(&buf[tp.payload.clone()]);
    let parsed = plexgate_wire::ip::FiveTuple::parse(&pkt).unwrap();
    assert_eq!(parsed, t);
    assert_eq!(plexgate_wire::ip::total_len(&pkt).unwrap(), pkt.len());
    assert!(tp.write_ip_header(&mut [0u8; 10]).is_err());

    // A tunnel-mode SA has no transport packet.
    let (mut tun, _) = pair(EspTransform::AesGcm256);
    tun.mode = Mode::Tunnel;
    let tun = SecurityAssociation::new(tun, now).unwrap();
    assert_eq!(tun.transport_packet(&opened), None);
}
