//! The real ESP packets of `/work/shared/captures` (strongSwan 5.9.8 with
//! kernel-libipsec, copied to `tests/data/`), opened with the Child SA keys from
//! charon's logs through the public SAD API: every ping and reply comes out,
//! with the right addresses and ICMP types, and a replayed packet is refused.

mod common;

use plexgate_ipsec::{
    Direction, EspError, EspTransform, Lifetime, Mode, SaParams, Sad, TrafficSelector,
};
use plexgate_wire::ip::FiveTuple;
use std::net::IpAddr;
use std::time::Instant;

const CLIENT: [u8; 4] = [10, 250, 0, 1];
const GATEWAY: [u8; 4] = [10, 250, 0, 2];

struct Sa {
    spi: u32,
    enc: &'static str,
    integ: &'static str,
    /// true: client -> gateway (initiator keys).
    from_client: bool,
}

/// An inbound SA as the receiving side would install it.
fn inbound(t: EspTransform, sa: &Sa) -> SaParams {
    let (local, remote, la, ra) = if sa.from_client {
        ("203.0.113.250", "192.168.250.1", GATEWAY, CLIENT)
    } else {
        ("192.168.250.1", "203.0.113.250", CLIENT, GATEWAY)
    };
    SaParams {
        spi: sa.spi,
        direction: Direction::Inbound,
        transform: t,
        enc_key: hex::decode(sa.enc).unwrap(),
        integ_key: hex::decode(sa.integ).unwrap(),
        esn: false,
        mode: Mode::Tunnel,
        replay_window: 1024,
        lifetime: Lifetime::default(),
        local_ts: vec![TrafficSelector::host(local.parse().unwrap())],
        remote_ts: vec![TrafficSelector::host(remote.parse().unwrap())],
        local_addr: IpAddr::from(la),
        remote_addr: IpAddr::from(ra),
        encap: None,
        initial_seq: 0,
        peer: "c".into(),
        child: "net".into(),
    }
}

fn open_all(pcap: &[u8], t: EspTransform, sas: [Sa; 2]) {
    let now = Instant::now();
    let mut sad = Sad::new();
    for sa in &sas {
        sad.insert(inbound(t, sa), now).unwrap();
    }
    let packets = common::esp_in_udp(pcap);
    assert_eq!(packets.len(), 6, "three pings and three replies");
    let mut seen = [0u32; 2];
    for (src, _dst, esp) in &packets {
        let mut buf = esp.clone();
        let got = sad.open_in_place(now, &mut buf).unwrap();
        let inner = &buf[got.opened.inner.clone()];
        let tuple = FiveTuple::parse(inner).unwrap();
        let from_client = *src == CLIENT;
        assert_eq!(got.opened.next_header, 4);
        assert_eq!(tuple.protocol, 1, "ICMP");
        let (isrc, idst, icmp_type) = if from_client {
            ("192.168.250.1", "203.0.113.250", 8)
        } else {
            ("203.0.113.250", "192.168.250.1", 0)
        };
        assert_eq!(tuple.src, isrc.parse::<IpAddr>().unwrap());
        assert_eq!(tuple.dst, idst.parse::<IpAddr>().unwrap());
        assert_eq!(tuple.src_port, Some(icmp_type << 8), "echo request / reply");
        let k = usize::from(!from_client);
        seen[k] += 1;
        assert_eq!(got.opened.seq, u64::from(seen[k]));
        // Replaying the same bytes is refused.
        let mut again = esp.clone();
        assert!(matches!(
            sad.open_in_place(now, &mut again),
            Err(EspError::Replay(_))
        ));
    }
    assert_eq!(seen, [3, 3]);
    assert_eq!(sad.counters.rx_packets, 6);
    assert_eq!(sad.counters.drop_replay, 6);
    // A flipped ciphertext bit in a fresh SAD is a bad ICV.
    let mut fresh = Sad::new();
    fresh.insert(inbound(t, &sas[0]), now).unwrap();
    let mut bad = packets[0].2.clone();
    let mid = bad.len() / 2;
    bad[mid] ^= 4;
    assert_eq!(fresh.open_in_place(now, &mut bad), Err(EspError::BadIcv));
    assert_eq!(fresh.counters.drop_bad_icv, 1);
    // Unknown SPI.
    let mut other = packets[0].2.clone();
    other[0] ^= 0xff;
    assert!(matches!(
        fresh.open_in_place(now, &mut other),
        Err(EspError::UnknownSpi(_))
    ));
}

/// `gcm128-x25519`: ESP AES_GCM_16_128; keys (20 bytes = key || salt) from
/// responder.log "encryption initiator/responder key"; SPIs from
/// "adding inbound/outbound ESP SA".
#[test]
fn strongswan_gcm128_capture() {
    open_all(
        include_bytes!("data/gcm128-x25519.pcap"),
        EspTransform::AesGcm128,
        [
            Sa {
                spi: 0x634a_93ee,
                enc: "c65629a57c9b614e59d66baef2e260b5af77a5e5",
                integ: "",
                from_client: true,
            },
            Sa {
                spi: 0xc391_0a43,
                enc: "eecc4130dcf89770cc64a669befb1f12422da1b4",
                integ: "",
                from_client: false,
            },
        ],
    );
}

/// `gcm256-p384`: ESP AES_CBC_256 / HMAC_SHA2_256_128; keys from
/// responder.log "encryption/integrity initiator/responder key".
#[test]
fn strongswan_cbc256_capture() {
    open_all(
        include_bytes!("data/gcm256-p384.pcap"),
        EspTransform::AesCbc256HmacSha256,
        [
            Sa {
                spi: 0xdbd3_a3b8,
                enc: "d30d315402f29185733aba440c0772f80b1d4e3021667727aeab4ed519e15bfd",
                integ: "534566742e90a45ade9e1f6380fe75af5a3ca269907702f051daa6aafa8d8cb1",
                from_client: true,
            },
            Sa {
                spi: 0x6209_89b1,
                enc: "2b40767d0212069d04e67c768ff6c8377e6fa67a997ee65aed98de9b5f7c8e6e",
                integ: "927f3ee4ac75bdda3a234447742682c3a796f12e3961d95695b7856f0b2ba7c0",
                from_client: false,
            },
        ],
    );
}
