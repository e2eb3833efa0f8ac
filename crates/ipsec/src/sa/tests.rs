//! Known answers of the SA: RFC 7634 and strongSwan packets opened and
//! re-sealed byte for byte.

use super::*;
use crate::selector::TrafficSelector;
use crate::transform::EspTransform;
use core::net::IpAddr;
use plexgate_wire::ip::proto;

pub(crate) fn params(
    transform: EspTransform,
    spi: u32,
    enc: &str,
    integ: &str,
    direction: Direction,
) -> SaParams {
    SaParams {
        spi,
        direction,
        transform,
        enc_key: hex::decode(enc).unwrap(),
        integ_key: hex::decode(integ).unwrap(),
        esn: false,
        mode: Mode::Tunnel,
        replay_window: 128,
        lifetime: Lifetime::default(),
        local_ts: vec![],
        remote_ts: vec![],
        local_addr: "10.250.0.2".parse().unwrap(),
        remote_addr: "10.250.0.1".parse().unwrap(),
        encap: None,
        initial_seq: 0,
        peer: "p".into(),
        child: "c".into(),
    }
}

/// Opens `packet` with an inbound SA, then re-seals the inner packet with
/// an outbound SA of the same keys, the same sequence number and the IV
/// from the packet; the result must equal the original bytes.
fn open_and_reseal(p: SaParams, packet: &str) -> Vec<u8> {
    let now = Instant::now();
    let orig = hex::decode(packet).unwrap();
    let mut buf = orig.clone();
    let mut inb = SecurityAssociation::new(p.clone(), now).unwrap();
    let o = inb.open_in_place(now, &mut buf).unwrap();
    let inner = buf[o.inner.clone()].to_vec();
    let mut out_p = p;
    out_p.direction = Direction::Outbound;
    out_p.initial_seq = o.seq - 1;
    let mut outb = SecurityAssociation::new(out_p, now).unwrap();
    let h = outb.header_len();
    let iv = orig[8..h].to_vec();
    let mut sealed = vec![0u8; outb.sealed_len(inner.len())];
    sealed[h..h + inner.len()].copy_from_slice(&inner);
    let n = outb
        .seal_with_iv(now, &mut sealed, inner.len(), o.next_header, Some(&iv))
        .unwrap();
    assert_eq!(hex::encode(&sealed[..n]), hex::encode(&orig));
    inner
}

/// RFC 7634 Appendix A, "ESP Example": SPI 0x01020304, seq 5, IV
/// 0x1011121314151617, key 80..9f, salt a0a1a2a3; the plaintext is an
/// 84-byte ICMP echo request 198.51.100.5 -> 192.0.2.5 with pad 01 02,
/// pad length 2, next header 4.
#[test]
fn rfc7634_esp_example() {
    let packet = "0102030400000005101112131415161724039428\
        b97f417e3c13753a4f05087b67c352e6a7fab1b982d466ef407ae5c614ee8099d52844eb61aa95dfab\
        4c02f72aa71e7c4c4f64c9befe2facc638e8f3cbec163fac469b502773f6fb94e664da9165b82829f641\
        e076aaa8266b7fb0f7b11b369907e1ad43";
    let p = params(
        EspTransform::ChaCha20Poly1305,
        0x0102_0304,
        "808182838485868788898a8b8c8d8e8f909192939495969798999a9b9c9d9e9fa0a1a2a3",
        "",
        Direction::Inbound,
    );
    let inner = open_and_reseal(p, packet);
    assert_eq!(inner.len(), 84);
    let t = FiveTuple::parse(&inner).unwrap();
    assert_eq!(t.src, "198.51.100.5".parse::<IpAddr>().unwrap());
    assert_eq!(t.dst, "192.0.2.5".parse::<IpAddr>().unwrap());
    assert_eq!(t.src_port, Some(0x0800)); // echo request
}

/// Frame 5 of `/work/shared/captures/gcm128-x25519/exchange.pcap`:
/// strongSwan 5.9.8, AES-GCM-128, client -> gateway, SPI 0x634a93ee, key
/// and salt from responder.log ("encryption initiator key").
#[test]
fn strongswan_gcm128_reseal() {
    let packet = "634a93ee00000001607747c91f6b88f93dd41b0e26b9210bc94c79a63922de70ff41bba59c9ab93a\
        d59b1f1ad4e2395bcca71dbb4330fd44ff5ed6cbb49c0df4b59acd347c6a13c3544196f2cede51ad387a8a\
        4c166f9ea08551d4d19df2ff342f970a7d75e2ee5fdbb47a0fe72493040b3c8ba987217d8c";
    let mut p = params(
        EspTransform::AesGcm128,
        0x634a_93ee,
        "c65629a57c9b614e59d66baef2e260b5af77a5e5",
        "",
        Direction::Inbound,
    );
    p.local_ts = vec![TrafficSelector::host("203.0.113.250".parse().unwrap())];
    p.remote_ts = vec![TrafficSelector::host("192.168.250.1".parse().unwrap())];
    let inner = open_and_reseal(p, packet);
    let t = FiveTuple::parse(&inner).unwrap();
    assert_eq!(t.protocol, proto::ICMP);
    assert_eq!(t.src_port, Some(0x0800));
}

/// Frame 5 of `/work/shared/captures/gcm256-p384/exchange.pcap`:
/// strongSwan 5.9.8, AES-CBC-256 + HMAC-SHA-256-128, SPI 0xdbd3a3b8, keys
/// from responder.log ("encryption/integrity initiator key").
#[test]
fn strongswan_cbc256_reseal() {
    let packet = "dbd3a3b8000000016bc8a69b4b0e86bf06c38f456484697bf5506ab45db3824350948c0e87ce47e6\
        9e8002f571dcf1e2602f93e9823a022e4ed3e442822e1f11f9d6f2b04dc5e8e8ea51dbc17d28686cdf1fe7\
        ad22c471489f2aa019c000760818d5d44d1d3ed897c57a28ed0abc2cf70b700ab271a38b23f4d8de73bdc6\
        3a03bfb345a08560e99b";
    let p = params(
        EspTransform::AesCbc256HmacSha256,
        0xdbd3_a3b8,
        "d30d315402f29185733aba440c0772f80b1d4e3021667727aeab4ed519e15bfd",
        "534566742e90a45ade9e1f6380fe75af5a3ca269907702f051daa6aafa8d8cb1",
        Direction::Inbound,
    );
    let inner = open_and_reseal(p, packet);
    let t = FiveTuple::parse(&inner).unwrap();
    assert_eq!(t.src, "192.168.250.1".parse::<IpAddr>().unwrap());
    assert_eq!(t.dst, "203.0.113.250".parse::<IpAddr>().unwrap());
    assert_eq!(t.src_port, Some(0x0800));
}
