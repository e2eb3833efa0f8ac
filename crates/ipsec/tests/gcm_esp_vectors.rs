//! ESP packets of draft-mcgrew-gcm-test-01 ("Test Cases for the use of
//! Galois/Counter Mode in IPsec ESP"), pages 6-20, as transcribed in the
//! table of a public AES-GMAC regression test (OpenBSD-style `gmac_test.c`:
//! key || salt, IV, AAD = SPI || [seq_hi ||] seq_lo, ciphertext, ICV). Each
//! is reassembled into an ESP packet and opened by an inbound SA: the ICV
//! must verify (with the sequence number reconstructed from the SA state,
//! including ESN), and the decrypted trailer must be valid.

use plexgate_ipsec::{
    Direction, EspError, EspTransform, Lifetime, Mode, SaParams, SecurityAssociation,
};
use std::time::Instant;

struct V {
    page: u32,
    key_salt: &'static str,
    iv: &'static str,
    aad: &'static str,
    ct: &'static str,
    tag: &'static str,
}

fn h(s: &str) -> Vec<u8> {
    hex::decode(s.split_whitespace().collect::<String>()).unwrap()
}

const VECTORS: &[V] = &[
    V { page: 6, key_salt: "4c80cdefbb5d10da906ac73c3613a634 2e443b68", iv: "4956ed7e3b244cfe",
        aad: "00004321 87654321 00000000",
        ct: "fecf537e729d5b07dc30df528dd22b768d1b98736696a6fd348509fa13ceac34cfa2436f14a3f3cf65925bf1f4a13c5d15b21e1884f5ff6247aeabb786b93bce61bc17d768fd9732",
        tag: "459018148f6cbe722fd04796562dfdb4" },
    V { page: 7, key_salt: "feffe9928665731c6d6a8f9467308308 cafebabe", iv: "facedbaddecaf888",
        aad: "0000a5f8 0000000a",
        ct: "deb22cd9b07c72c16e3a65beeb8df304a5a5897d33ae530f1ba76d5d114d2a5c3de81827c10e9a4f51330d0eec416642cfbb85a5b47e48a4ec3b9ba95d918bd1",
        tag: "83b70d3aa8bc6ee4c309e9d85a41ad4a" },
    V { page: 8, key_salt: "abbccddef00112233445566778899aababbccddef00112233445566778899aab 11223344", iv: "0102030405060708",
        aad: "4a2cbfe3 00000002",
        ct: "ff425c9b724599df7a3bcd510194e00d6a78107f1b0b1cbf06efae9d65a5d763748a637985771d347f0545659f14e99def842d8e",
        tag: "b335f4eecfdbf831824b4c4915956c96" },
    V { page: 10, key_salt: "3de09874b388e6491988d0c3607eae1f 57690e43", iv: "4e280000a2fca1a3",
        aad: "42f67e3f 10101010 10101010",
        ct: "fba2caa4853cf9f0f22cb10d86dd83b0fec75691cf1a04b00d1138ec9c35791765acbd8701ad79845bf9fe3fba487bc91755e6662b4c8d0d1f5e22739530320a",
        tag: "e0d731cc978ecafaeae88f00e80d6e48" },
    V { page: 12, key_salt: "abbccddef00112233445566778899aab decaf888", iv: "cafedebaceface74",
        aad: "00000100 00000000 00000001",
        ct: "18a6fd42f72cbf4ab2a2ea901f73d814e3e7f243d95412e1c349c1d2fbec168f9190feebaf2cb01984e65863965d7472b79da345e0e780191f0d2f0e0f496c226f2127b27db35724e7845d68",
        tag: "651f57e65f354f75ff17015769623436" },
    V { page: 16, key_salt: "7d773d00c144c525ac619d18c84a3f47 d9664267", iv: "43457e9182443bc6",
        aad: "335467ae ffffffff",
        ct: "437f866b",
        tag: "cb3f699fe9b0822bac961c4504bef270" },
    V { page: 20, key_salt: "4c80cdefbb5d10da906ac73c3613a634 22433c64", iv: "4855ec7d3a234bfd",
        aad: "00004321 87654321 00000007",
        ct: "74752e8aeb5d873cd7c0f4acc36c4bff84b7d7b98f0ca8b6acda6894bc619069",
        tag: "ef9cbc28fe1b56a7c4e0d58c86cd2bc0" },
];

fn open(v: &V) -> (Result<plexgate_ipsec::Opened, EspError>, Vec<u8>) {
    let key = h(v.key_salt);
    let t = if key.len() == 20 {
        EspTransform::AesGcm128
    } else {
        EspTransform::AesGcm256
    };
    let aad = h(v.aad);
    let esn = aad.len() == 12;
    let spi = u32::from_be_bytes(aad[..4].try_into().unwrap());
    let seq = if esn {
        u64::from_be_bytes(aad[4..12].try_into().unwrap())
    } else {
        u64::from(u32::from_be_bytes(aad[4..8].try_into().unwrap()))
    };
    let params = SaParams {
        spi,
        direction: Direction::Inbound,
        transform: t,
        enc_key: key,
        integ_key: vec![],
        esn,
        // The draft puts whole IPv4 packets behind next header 1, so open in
        // transport mode (no tunnel next-header check) and inspect them.
        mode: Mode::Transport,
        replay_window: 128,
        lifetime: Lifetime::default(),
        local_ts: vec![],
        remote_ts: vec![],
        local_addr: "192.0.2.1".parse().unwrap(),
        remote_addr: "192.0.2.2".parse().unwrap(),
        encap: None,
        // The receiver has seen the packet before this one (puts the ESN
        // high half where the vector has it).
        initial_seq: seq - 1,
        peer: String::new(),
        child: String::new(),
    };
    let mut sa = SecurityAssociation::new(params, Instant::now()).unwrap();
    let mut pkt = Vec::new();
    pkt.extend_from_slice(&aad[..4]);
    pkt.extend_from_slice(&aad[aad.len() - 4..]);
    pkt.extend_from_slice(&h(v.iv));
    pkt.extend_from_slice(&h(v.ct));
    pkt.extend_from_slice(&h(v.tag));
    let r = sa.open_in_place(Instant::now(), &mut pkt);
    (r, pkt)
}

#[test]
fn draft_mcgrew_gcm_test_packets() {
    for v in VECTORS {
        let (r, pkt) = open(v);
        match r {
            Ok(o) => {
                // The ICV verified and the padding 1, 2, ... is valid; the
                // payload is an IPv4 packet. (The draft's IPv4 total length
                // fields count the ESP trailer too, so they are not compared.)
                let inner = &pkt[o.inner.clone()];
                assert_eq!(o.next_header, 1, "page {}", v.page);
                match v.page {
                    // Page 16 carries only padding: 01 02 02 01.
                    16 => assert!(inner.is_empty()),
                    // Page 20 is a transport-mode ICMP echo request.
                    20 => assert_eq!(inner.first(), Some(&8)),
                    _ => assert_eq!(inner.first(), Some(&0x45), "page {}", v.page),
                }
                assert_eq!(
                    o.seq & 0xffff_ffff,
                    u64::from(u32::from_be_bytes(pkt[4..8].try_into().unwrap()))
                );
            }
            Err(e) => panic!("page {}: {e}", v.page),
        }
    }
}

#[test]
fn draft_vectors_fail_with_a_flipped_bit() {
    for v in VECTORS {
        let mut w = V { ..*v };
        let mut tag = h(v.tag);
        tag[0] ^= 0x80;
        let t = hex::encode(tag);
        w.tag = Box::leak(t.into_boxed_str());
        assert_eq!(open(&w).0.err(), Some(EspError::BadIcv), "page {}", v.page);
    }
}
