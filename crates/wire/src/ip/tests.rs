//! Tests of the IP view and the helpers read through it.

use super::*;
use core::net::Ipv6Addr;

/// An ICMP echo request 192.168.250.1 -> 203.0.113.250 (the addresses of
/// the inner packets in `/work/shared/captures`), built with etherparse.
fn icmp_v4() -> Vec<u8> {
    let b = etherparse::PacketBuilder::ipv4([192, 168, 250, 1], [203, 0, 113, 250], 64)
        .icmpv4_echo_request(7, 1);
    let mut v = Vec::new();
    b.write(&mut v, &[0u8; 8]).unwrap();
    v
}

#[test]
fn tuple_v4_parses_like_five_tuple() {
    let mut rng = 0x1234_5678_9abc_def0u64;
    let mut next = || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let base = {
        let b = etherparse::PacketBuilder::ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64)
            .tcp(40000, 80, 1, 100);
        let mut v = Vec::new();
        b.write(&mut v, &[7u8; 30]).unwrap();
        v
    };
    let mut seen_ok = 0;
    for i in 0..200_000 {
        let mut p = base.clone();
        // Mutate a few header bytes and the length.
        for _ in 0..(next() % 4) {
            let at = (next() as usize) % 28;
            p[at] = next() as u8;
        }
        p.truncate((next() as usize) % (p.len() + 1));
        if i % 3 == 0 && !p.is_empty() {
            p[0] = 0x40 | (p[0] & 0x0f);
        }
        let a = TupleV4::parse(&p).map(TupleV4::to_five).ok();
        let is_v4 = p.first().is_some_and(|b| b >> 4 == 4);
        let b = if is_v4 {
            FiveTuple::parse(&p).ok()
        } else {
            None
        };
        assert_eq!(a, b, "{p:02x?}");
        seen_ok += usize::from(a.is_some());
    }
    assert!(seen_ok > 1000);
    assert!(TupleV4::parse(&icmp_v4()).is_ok());
    assert_eq!(
        TupleV4::parse(&icmp_v4()).unwrap().to_five(),
        FiveTuple::parse(&icmp_v4()).unwrap()
    );
}

#[test]
fn udp_v4() {
    let b = etherparse::PacketBuilder::ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64).udp(4500, 53);
    let mut v = Vec::new();
    b.write(&mut v, b"hello").unwrap();
    v.extend_from_slice(&[0, 0]); // link padding is ignored
    let t = FiveTuple::parse(&v).unwrap();
    assert_eq!(t.src, IpAddr::from([10, 0, 0, 1]));
    assert_eq!(t.dst, IpAddr::from([10, 0, 0, 2]));
    assert_eq!(
        (t.protocol, t.src_port, t.dst_port),
        (17, Some(4500), Some(53))
    );
    assert_eq!(total_len(&v).unwrap(), v.len() - 2);
    assert_eq!(version(&v).unwrap(), 4);
}

#[test]
fn icmp_type_code() {
    let v = icmp_v4();
    let t = FiveTuple::parse(&v).unwrap();
    assert_eq!(t.protocol, proto::ICMP);
    assert_eq!(t.src_port, Some(0x0800));
    assert_eq!(t.dst_port, Some(0x0800));
}

#[test]
fn tcp_v6_with_hop_by_hop() {
    let b = etherparse::PacketBuilder::ipv6([0x20; 16], [0x30; 16], 64).tcp(443, 55000, 1, 100);
    let mut v = Vec::new();
    b.write(&mut v, b"x").unwrap();
    let t = FiveTuple::parse(&v).unwrap();
    assert_eq!(
        (t.protocol, t.src_port, t.dst_port),
        (6, Some(443), Some(55000))
    );
    // Insert an 8-byte hop-by-hop header (next header TCP, PadN).
    let mut w = v[..40].to_vec();
    w[6] = 0;
    let plen = u16::from_be_bytes([w[4], w[5]]) + 8;
    w[4..6].copy_from_slice(&plen.to_be_bytes());
    w.extend_from_slice(&[6, 0, 1, 4, 0, 0, 0, 0]);
    w.extend_from_slice(&v[40..]);
    let t = FiveTuple::parse(&w).unwrap();
    assert_eq!(
        (t.protocol, t.src_port, t.dst_port),
        (6, Some(443), Some(55000))
    );
}

#[test]
fn non_first_fragment_is_opaque() {
    let mut v = icmp_v4();
    v[6] = 0x00;
    v[7] = 0x10; // fragment offset 16 (x8 bytes)
    let t = FiveTuple::parse(&v).unwrap();
    assert_eq!((t.src_port, t.dst_port), (None, None));
}

#[test]
fn malformed() {
    assert!(FiveTuple::parse(&[]).is_err());
    assert!(matches!(
        FiveTuple::parse(&[0x50; 40]),
        Err(WireError::BadIp(_))
    ));
    let v = icmp_v4();
    assert!(matches!(
        FiveTuple::parse(&v[..v.len() - 1]),
        Err(WireError::Truncated { .. })
    ));
    let mut bad_ihl = v.clone();
    bad_ihl[0] = 0x44;
    assert!(matches!(
        FiveTuple::parse(&bad_ihl),
        Err(WireError::BadIp(_))
    ));
    assert!(total_len(&[0x60; 39]).is_err());
}

#[test]
fn written_headers_parse_back() {
    let mut buf = [0u8; 64];
    let n = write_header(
        "192.0.2.1".parse().unwrap(),
        "198.51.100.7".parse().unwrap(),
        proto::UDP,
        12,
        &mut buf,
    )
    .unwrap();
    assert_eq!(n, 20);
    buf[20..24].copy_from_slice(&[0x11, 0x94, 0x00, 0x35]);
    let t = FiveTuple::parse(&buf[..32]).unwrap();
    assert_eq!(t.src, IpAddr::from([192, 0, 2, 1]));
    assert_eq!(
        (t.protocol, t.src_port, t.dst_port),
        (17, Some(4500), Some(53))
    );
    assert_eq!(total_len(&buf).unwrap(), 32);
    // The checksum verifies: the sum over the header is 0xffff.
    assert_eq!(crate::ones_complement_checksum(&buf[..20]), 0);
    let v4 = etherparse::Ipv4HeaderSlice::from_slice(&buf[..20]).unwrap();
    assert_eq!(v4.header_checksum(), v4.to_header().calc_header_checksum());
    let n = write_header(
        "2001:db8::1".parse().unwrap(),
        "2001:db8::2".parse().unwrap(),
        proto::TCP,
        4,
        &mut buf,
    )
    .unwrap();
    assert_eq!(n, 40);
    buf[40..44].copy_from_slice(&[0, 80, 0x1f, 0x90]);
    let t = FiveTuple::parse(&buf[..44]).unwrap();
    assert_eq!(
        (t.protocol, t.src_port, t.dst_port),
        (6, Some(80), Some(8080))
    );
    assert!(write_header(
        "192.0.2.1".parse().unwrap(),
        "2001:db8::2".parse().unwrap(),
        6,
        0,
        &mut buf
    )
    .is_err());
    assert!(matches!(
        write_header(
            "192.0.2.1".parse().unwrap(),
            "192.0.2.2".parse().unwrap(),
            6,
            0,
            &mut buf[..19]
        ),
        Err(WireError::BufferTooSmall { .. })
    ));
    assert!(write_header(
        "192.0.2.1".parse().unwrap(),
        "192.0.2.2".parse().unwrap(),
        6,
        65516,
        &mut buf
    )
    .is_err());
}

proptest::proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(data in proptest::collection::vec(proptest::num::u8::ANY, 0..128)) {
        let _ = FiveTuple::parse(&data);
        let _ = total_len(&data);
    }

    #[test]
    fn arbitrary_v6_never_panics(mut data in proptest::collection::vec(proptest::num::u8::ANY, 40..128)) {
        data[0] = 0x60;
        let plen = (data.len() - 40) as u16;
        data[4..6].copy_from_slice(&plen.to_be_bytes());
        let _ = FiveTuple::parse(&data);
    }
}

// The parser `FiveTuple::parse` was before the view (commit 9cfceb9), kept as
// the oracle: the view must accept and reject exactly what it did, with the
// same tuple.
fn reference_parse(p: &[u8]) -> Result<FiveTuple> {
    match version(p)? {
        4 => ref_v4(p),
        _ => ref_v6(p),
    }
}

#[inline]
fn ref_v4(p: &[u8]) -> Result<FiveTuple> {
    need(p.len(), 20)?;
    let ihl = usize::from(p[0] & 0x0f) * 4;
    if ihl < 20 {
        return Err(WireError::BadIp("IPv4 header length below 20"));
    }
    let total = usize::from(u16::from_be_bytes([p[2], p[3]]));
    if total < ihl {
        return Err(WireError::BadIp("IPv4 total length below header length"));
    }
    need(p.len(), total)?;
    let frag_offset = u16::from_be_bytes([p[6], p[7]]) & 0x1fff;
    let protocol = p[9];
    let src = Ipv4Addr::new(p[12], p[13], p[14], p[15]);
    let dst = Ipv4Addr::new(p[16], p[17], p[18], p[19]);
    let (src_port, dst_port) = if frag_offset != 0 {
        (None, None)
    } else {
        ports(protocol, &p[ihl..total])
    };
    Ok(FiveTuple {
        src: src.into(),
        dst: dst.into(),
        protocol,
        src_port,
        dst_port,
    })
}

fn ref_v6(p: &[u8]) -> Result<FiveTuple> {
    need(p.len(), 40)?;
    let total = 40 + usize::from(u16::from_be_bytes([p[4], p[5]]));
    need(p.len(), total)?;
    let mut a = [0u8; 16];
    a.copy_from_slice(&p[8..24]);
    let src = Ipv6Addr::from(a);
    a.copy_from_slice(&p[24..40]);
    let dst = Ipv6Addr::from(a);
    let mut next = p[6];
    let mut off = 40usize;
    let mut opaque = false;
    // Walk at most 8 extension headers (RFC 8200 §4); anything deeper is
    // treated as the upper layer with OPAQUE ports.
    for _ in 0..8 {
        let ext_len = match next {
            0 | 43 | 60 => {
                need(total, off + 2)?;
                (usize::from(p[off + 1]) + 1) * 8
            }
            44 => {
                need(total, off + 8)?;
                let frag_offset = u16::from_be_bytes([p[off + 2], p[off + 3]]) >> 3;
                opaque |= frag_offset != 0;
                8
            }
            proto::AH => {
                need(total, off + 2)?;
                (usize::from(p[off + 1]) + 2) * 4
            }
            _ => break,
        };
        next = p[off];
        off += ext_len;
        need(total, off)?;
    }
    let (src_port, dst_port) = if opaque {
        (None, None)
    } else {
        ports(next, p.get(off..total).unwrap_or(&[]))
    };
    Ok(FiveTuple {
        src: src.into(),
        dst: dst.into(),
        protocol: next,
        src_port,
        dst_port,
    })
}

/// A base packet mutated at random: a few header bytes, the length, the version.
fn mutations(base: &[u8], seed: u64, count: usize) -> Vec<Vec<u8>> {
    let mut rng = seed;
    let mut next = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    (0..count)
        .map(|i| {
            let mut p = base.to_vec();
            for _ in 0..(next() % 4) {
                let at = (next() as usize) % base.len().min(56);
                p[at] = next() as u8;
            }
            p.truncate((next() as usize) % (p.len() + 1));
            if i % 3 == 0 && !p.is_empty() {
                p[0] = (base[0] & 0xf0) | (p[0] & 0x0f);
            }
            p
        })
        .collect()
}

fn v6_with_extensions() -> Vec<u8> {
    let b = etherparse::PacketBuilder::ipv6([0x20; 16], [0x30; 16], 64).udp(443, 55000);
    let mut v = Vec::new();
    b.write(&mut v, b"payload!").unwrap();
    // Hop-by-hop (8 bytes) then a fragment header (first fragment) before UDP.
    let mut w = v[..40].to_vec();
    w[6] = 0;
    let plen = u16::from_be_bytes([w[4], w[5]]) + 16;
    w[4..6].copy_from_slice(&plen.to_be_bytes());
    w.extend_from_slice(&[44, 0, 1, 4, 0, 0, 0, 0]);
    w.extend_from_slice(&[17, 0, 0, 0, 0, 0, 0, 7]);
    w.extend_from_slice(&v[40..]);
    w
}

#[test]
fn view_accepts_and_rejects_like_the_old_parser() {
    let v4 = {
        let b = etherparse::PacketBuilder::ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64)
            .tcp(40000, 80, 1, 100);
        let mut v = Vec::new();
        b.write(&mut v, &[7u8; 30]).unwrap();
        v
    };
    let mut ok = 0;
    for (seed, base) in [(1u64, v4), (2, v6_with_extensions()), (3, icmp_v4())] {
        for p in mutations(&base, 0x9e37_79b9_7f4a_7c15 ^ seed, 100_000) {
            let old = reference_parse(&p);
            let view = IpPacket::new_checked(&p[..]);
            assert_eq!(view.map(|v| v.five_tuple()), old, "{p:02x?}");
            assert_eq!(FiveTuple::parse(&p), old);
            if let Ok(v) = view {
                ok += 1;
                assert_eq!(v.total_len(), total_len(&p).unwrap());
                assert_eq!(v.version(), version(&p).unwrap());
                assert!(v.header_len() <= v.total_len() && v.total_len() <= p.len());
                assert_eq!(v.packet().len(), v.total_len());
                assert_eq!(v.payload().len(), v.total_len() - v.header_len());
            }
        }
    }
    assert!(ok > 2_000, "{ok}");
}

#[test]
fn view_fields_ipv4_and_ipv6() {
    let mut p = icmp_v4();
    p.extend_from_slice(&[0xee; 6]); // trailing bytes are not the packet
    let v = IpPacket::new_checked(&p[..]).unwrap();
    assert_eq!(v.version(), 4);
    assert_eq!((v.header_len(), v.total_len()), (20, 36));
    assert_eq!(v.src_addr(), IpAddr::from([192, 168, 250, 1]));
    assert_eq!(v.dst_addr(), IpAddr::from([203, 0, 113, 250]));
    assert_eq!(v.protocol(), proto::ICMP);
    assert_eq!(v.payload()[0], 8); // echo request
    assert_eq!(v.ports(), (Some(0x0800), Some(0x0800)));
    assert_eq!(v.tuple_v4().unwrap().to_five(), v.five_tuple());
    assert!(!v.is_non_first_fragment());

    let w = v6_with_extensions();
    let v = IpPacket::new_checked(w.as_slice()).unwrap();
    assert_eq!(v.version(), 6);
    assert_eq!(v.header_len(), 40 + 8 + 8);
    assert_eq!(v.protocol(), proto::UDP);
    assert_eq!(v.src_addr(), IpAddr::from([0x20; 16]));
    assert_eq!(v.dst_addr(), IpAddr::from([0x30; 16]));
    assert_eq!(v.ports(), (Some(443), Some(55000)));
    assert_eq!(&v.payload()[8..], b"payload!");
    assert_eq!(v.tuple_v4(), None);
    assert!(IpPacket::new_checked_v4(w.as_slice()).is_err());
    assert_eq!(v.into_inner().len(), w.len());

    // A non-first fragment: OPAQUE ports.
    let mut f = w.clone();
    f[48 + 3] = 0x08; // fragment offset 1 (x8 bytes)
    let v = IpPacket::new_checked(f.as_slice()).unwrap();
    assert!(v.is_non_first_fragment());
    assert_eq!(v.ports(), (None, None));

    assert!(matches!(
        IpPacket::new_checked(&[][..]),
        Err(WireError::Truncated { .. })
    ));
    assert!(matches!(
        IpPacket::new_checked(&[0x50u8; 40][..]),
        Err(WireError::BadIp(_))
    ));
}
