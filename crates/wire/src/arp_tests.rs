//! Tests of the ARP view (`arp.rs`) on real frames.

use super::*;

// Captured with `tcpdump -xx` (4.99) on a veth pair between two network namespaces,
// Linux 6.18: host A 52:54:00:12:34:01 / 192.0.2.1, host B 52:54:00:12:34:02 /
// 192.0.2.2. A pings B (request, reply); then B's interface goes down and up with
// `net.ipv4.conf.e0.arp_notify = 1`, which makes the kernel announce its address.

/// "52:54:00:12:34:01 > ff:ff:ff:ff:ff:ff, Request who-has 192.0.2.2 tell 192.0.2.1".
const REQUEST: &str = "ffffffffffff 525400123401 0806 0001 0800 0604 0001 \
    525400123401 c0000201 000000000000 c0000202";
/// "52:54:00:12:34:02 > 52:54:00:12:34:01, Reply 192.0.2.2 is-at 52:54:00:12:34:02".
const REPLY: &str = "525400123401 525400123402 0806 0001 0800 0604 0002 \
    525400123402 c0000202 525400123401 c0000201";
/// "52:54:00:12:34:02 > ff:ff:ff:ff:ff:ff, Request who-has 192.0.2.2 tell 192.0.2.2"
/// (the kernel's gratuitous ARP, an RFC 5227 announcement).
const GARP: &str = "ffffffffffff 525400123402 0806 0001 0800 0604 0001 \
    525400123402 c0000202 000000000000 c0000202";

fn bytes(h: &str) -> Vec<u8> {
    hex::decode(h.replace(' ', "")).unwrap()
}

const A_MAC: EthernetAddress = EthernetAddress([0x52, 0x54, 0, 0x12, 0x34, 0x01]);
const B_MAC: EthernetAddress = EthernetAddress([0x52, 0x54, 0, 0x12, 0x34, 0x02]);
const A_IP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
const B_IP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 2);

#[test]
fn deconstruct_request() {
    let f = bytes(REQUEST);
    assert_eq!(f.len(), FRAME_LEN);
    let eth = EthernetFrame::new_checked(&f[..]).unwrap();
    assert_eq!(eth.dst(), EthernetAddress::BROADCAST);
    assert_eq!(eth.src(), A_MAC);
    assert_eq!(eth.ethertype(), ETHERTYPE_ARP);
    let p = ArpPacket::new_checked(eth.payload()).unwrap();
    assert_eq!(p.hardware_type(), HTYPE_ETHERNET);
    assert_eq!(p.protocol_type(), ETHERTYPE_IPV4);
    assert_eq!((p.hardware_len(), p.protocol_len()), (6, 4));
    assert_eq!(p.operation(), ArpOperation::Request);
    assert_eq!(p.sender_hardware_addr(), &A_MAC.0);
    assert_eq!(p.sender_protocol_addr(), &[192, 0, 2, 1]);
    assert_eq!(p.target_hardware_addr(), &[0; 6]);
    assert_eq!(p.target_protocol_addr(), &[192, 0, 2, 2]);
}

#[test]
fn parse_and_emit_real_frames() {
    let req = ArpFrameRepr::parse(&bytes(REQUEST)).unwrap();
    assert_eq!(
        req,
        ArpFrameRepr {
            eth_dst: EthernetAddress::BROADCAST,
            eth_src: A_MAC,
            arp: ArpRepr::request(A_MAC, A_IP, B_IP),
        }
    );
    let rep = ArpFrameRepr::parse(&bytes(REPLY)).unwrap();
    // The kernel's reply is exactly RFC 826's swap of the request.
    assert_eq!(rep.arp, ArpRepr::reply_to(&req.arp, B_MAC));
    assert_eq!((rep.eth_dst, rep.eth_src), (A_MAC, B_MAC));
    let garp = ArpFrameRepr::parse(&bytes(GARP)).unwrap();
    assert_eq!(garp.arp, ArpRepr::announcement(B_MAC, B_IP));
    assert!(garp.arp.is_gratuitous() && !garp.arp.is_probe());
    // Emitting each repr gives back the captured bytes.
    for (h, r) in [(REQUEST, req), (REPLY, rep), (GARP, garp)] {
        assert_eq!(&r.to_bytes()[..], &bytes(h)[..], "{}", r.arp);
    }
}

#[test]
fn construct_with_setters() {
    let mut b = bytes(REQUEST);
    let mut eth = EthernetFrame::new_checked(&mut b[..]).unwrap();
    eth.set_dst(A_MAC);
    eth.set_src(B_MAC);
    let mut p = ArpPacket::new_checked(eth.payload_mut()).unwrap();
    p.set_operation(ArpOperation::Reply);
    let r = ArpFrameRepr::parse(&b).unwrap();
    assert_eq!((r.eth_dst, r.eth_src), (A_MAC, B_MAC));
    assert_eq!(r.arp.operation, ArpOperation::Reply);
}

#[test]
fn padded_frame_is_accepted() {
    // A NIC pads ARP frames to the 60-byte Ethernet minimum.
    let mut f = bytes(REQUEST);
    f.resize(60, 0);
    assert_eq!(ArpFrameRepr::parse(&f).unwrap().arp.target_ip, B_IP);
}

#[test]
fn rejects_malformed() {
    let good = bytes(REQUEST);
    for n in [0, 13, 14, 21, 41] {
        assert!(
            matches!(
                ArpFrameRepr::parse(&good[..n]),
                Err(ArpError::Truncated { .. })
            ),
            "length {n}"
        );
    }
    let mut ipv4 = good.clone();
    ipv4[12..14].copy_from_slice(&[0x08, 0x00]);
    assert_eq!(ArpFrameRepr::parse(&ipv4), Err(ArpError::NotArp(0x0800)));
    let mut htype = good.clone();
    htype[15] = 6; // IEEE 802
    assert_eq!(ArpFrameRepr::parse(&htype), Err(ArpError::HardwareType(6)));
    let mut ptype = good.clone();
    ptype[16..18].copy_from_slice(&[0x86, 0xdd]);
    assert_eq!(
        ArpFrameRepr::parse(&ptype),
        Err(ArpError::ProtocolType(0x86dd))
    );
    let mut op = good.clone();
    op[21] = 3; // RARP request
    assert_eq!(ArpFrameRepr::parse(&op), Err(ArpError::Operation(3)));
    // hlen 8: the view is valid if the bytes are there, the repr refuses it.
    let mut long = good.clone();
    long[18] = 8;
    long.extend_from_slice(&[0; 4]);
    let p = ArpPacket::new_checked(&long[14..]).unwrap();
    assert_eq!(p.sender_hardware_addr().len(), 8);
    assert_eq!(
        ArpRepr::parse(&p),
        Err(ArpError::AddressLengths {
            hardware: 8,
            protocol: 4
        })
    );
    // hlen 255, plen 255: the announced addresses do not fit.
    let mut huge = good.clone();
    huge[18] = 255;
    huge[19] = 255;
    assert_eq!(
        ArpPacket::new_checked(&huge[14..]),
        Err(ArpError::Truncated {
            needed: 8 + 2 * 255 + 2 * 255,
            have: 28
        })
    );
}

#[test]
fn emit_into_short_buffer_fails() {
    let r = ArpFrameRepr::parse(&bytes(REQUEST)).unwrap();
    assert_eq!(
        r.emit(&mut [0u8; 41]),
        Err(ArpError::BufferTooSmall {
            needed: 42,
            have: 41
        })
    );
    assert!(r.arp.emit(&mut [0u8; 27]).is_err());
}

#[test]
fn mac_addresses() {
    let m: EthernetAddress = "02:BF:0a:00:00:64".parse().unwrap();
    assert_eq!(m.0, [0x02, 0xbf, 0x0a, 0, 0, 0x64]);
    assert_eq!(m.to_string(), "02:bf:0a:00:00:64");
    assert_eq!("02-bf-0a-00-00-64".parse::<EthernetAddress>().unwrap(), m);
    assert!(m.is_unicast() && m.is_local() && !m.is_multicast());
    let mc: EthernetAddress = "03:bf:0a:00:00:64".parse().unwrap();
    assert!(mc.is_multicast() && !mc.is_unicast());
    assert!(EthernetAddress::BROADCAST.is_multicast() && EthernetAddress::BROADCAST.is_broadcast());
    assert!(!EthernetAddress::ZERO.is_unicast());
    for bad in [
        "",
        "02:bf:0a:00:00",
        "02:bf:0a:00:00:64:01",
        "02:bf:0a:00:00:6",
        "zz:bf:0a:00:00:64",
        "02:bf-0a:00:00:64",
    ] {
        assert!(bad.parse::<EthernetAddress>().is_err(), "{bad}");
    }
    assert_eq!(EthernetAddress::from_bytes(&[1, 2, 3]), None);
}

proptest::proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(data in proptest::collection::vec(proptest::num::u8::ANY, 0..80)) {
        if let Ok(e) = EthernetFrame::new_checked(&data[..]) {
            let _ = (e.dst(), e.src(), e.ethertype());
            if let Ok(p) = ArpPacket::new_checked(e.payload()) {
                let _ = (p.hardware_type(), p.protocol_type(), p.operation());
                let _ = (p.sender_hardware_addr(), p.sender_protocol_addr());
                let _ = (p.target_hardware_addr(), p.target_protocol_addr());
            }
        }
        if let Ok(r) = ArpFrameRepr::parse(&data) {
            // A parsed frame re-emits to the same 42 leading bytes.
            proptest::prop_assert_eq!(&r.to_bytes()[..], &data[..FRAME_LEN]);
            proptest::prop_assert_eq!(ArpFrameRepr::parse(&r.to_bytes()).unwrap(), r);
        }
    }

    #[test]
    fn valid_arp_round_trips(
        op in 1u16..=2, sha: [u8; 6], spa: [u8; 4], tha: [u8; 6], tpa: [u8; 4], dst: [u8; 6], src: [u8; 6]
    ) {
        let r = ArpFrameRepr {
            eth_dst: EthernetAddress(dst),
            eth_src: EthernetAddress(src),
            arp: ArpRepr {
                operation: op.into(),
                sender_mac: EthernetAddress(sha),
                sender_ip: spa.into(),
                target_mac: EthernetAddress(tha),
                target_ip: tpa.into(),
            },
        };
        proptest::prop_assert_eq!(ArpFrameRepr::parse(&r.to_bytes()).unwrap(), r);
    }
}
