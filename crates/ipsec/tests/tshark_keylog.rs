//! Independent check of seal and of the key log: plexgate seals real inner
//! packets, writes them as ESP-in-UDP/4500 into a pcap and writes the keys as
//! Wireshark `esp_sa` lines; tshark (Wireshark's dissector, code no one here
//! wrote) must decrypt them, verify the ICV and show the inner packets
//! unchanged. Fails, with a message, if tshark is missing.

mod common;

use plexgate_ipsec::keylog::{esp_sa_file, esp_sa_line, tshark_uat_option};
use plexgate_ipsec::{
    Direction, EspTransform, Lifetime, Mode, SaParams, SecurityAssociation, UdpEncapPorts,
};
use std::process::Command;
use std::time::Instant;

const TSHARK: &str = "/usr/bin/tshark";

fn params(transform: EspTransform, spi: u32) -> SaParams {
    // Deterministic, distinct keys per transform.
    let key = |n: usize, seed: u8| {
        (0..n)
            .map(|i| {
                seed.wrapping_mul(31)
                    .wrapping_add((i as u8).wrapping_mul(7))
            })
            .collect::<Vec<u8>>()
    };
    SaParams {
        spi,
        direction: Direction::Outbound,
        transform,
        enc_key: key(transform.enc_key_len(), spi as u8),
        integ_key: key(transform.integ_key_len(), (spi >> 8) as u8),
        esn: false,
        mode: Mode::Tunnel,
        replay_window: 1024,
        lifetime: Lifetime::default(),
        local_ts: vec![],
        remote_ts: vec![],
        local_addr: "198.51.100.1".parse().unwrap(),
        remote_addr: "198.51.100.2".parse().unwrap(),
        encap: Some(UdpEncapPorts {
            local_port: 4500,
            remote_port: 4500,
        }),
        initial_seq: 0,
        peer: "peer".into(),
        child: "child".into(),
    }
}

fn tshark_available() {
    let ok = Command::new(TSHARK)
        .arg("--version")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    assert!(
        ok,
        "{TSHARK} is required for this test (apt-get install tshark); it is the independent check of ESP seal and the key log"
    );
}

/// Seals `count` inner UDP packets of different sizes with the SA `p` and
/// writes them as ESP-in-UDP/4500 into a pcap; returns (pcap path, inners).
fn seal_pcap(p: &SaParams, count: usize, tag: &str) -> (std::path::PathBuf, Vec<Vec<u8>>) {
    let mut sa = SecurityAssociation::new(p.clone(), Instant::now()).unwrap();
    let mut frames = Vec::new();
    let mut inners = Vec::new();
    for i in 0..count {
        let payload: Vec<u8> = format!("plexgate {} packet {i} ", p.transform.name())
            .into_bytes()
            .into_iter()
            .cycle()
            .take(13 + i * 41)
            .collect();
        let inner = common::inner_udp(
            [192, 168, 1, 1],
            [192, 168, 2, 2],
            40000 + i as u16,
            7777,
            &payload,
        );
        let mut out = vec![0u8; 2048];
        let n = sa.seal(Instant::now(), &inner, 4, &mut out).unwrap();
        frames.push(common::ipv4_udp4500(
            [198, 51, 100, 1],
            [198, 51, 100, 2],
            &out[..n],
        ));
        inners.push(inner);
    }
    let path = std::env::temp_dir().join(format!(
        "plexgate-tshark-{}-{tag}-{:x}.pcap",
        std::process::id(),
        p.spi
    ));
    std::fs::write(&path, common::write_pcap_raw(&frames)).unwrap();
    (path, inners)
}

/// Runs tshark with one `esp_sa` UAT line; returns one line per packet:
/// spi|seq|ip.src|ip.dst|udp.dstport|data|icv_good|next header|pad length.
fn tshark_fields(pcap: &std::path::Path, keys: Keys<'_>) -> String {
    let mut cmd = Command::new(TSHARK);
    match keys {
        Keys::Uat(opt) => {
            cmd.args(["-o", opt]);
        }
        // Wireshark reads $HOME/.config/wireshark/esp_sa.
        Keys::Home(home) => {
            cmd.env("HOME", home).env_remove("XDG_CONFIG_HOME");
        }
    }
    let out = cmd
        .arg("-r")
        .arg(pcap)
        .args(["-o", "esp.enable_encryption_decode:TRUE"])
        .args(["-o", "esp.enable_authentication_check:TRUE"])
        .args(["-T", "fields", "-E", "separator=|"])
        .args([
            "-e",
            "esp.spi",
            "-e",
            "esp.sequence",
            "-e",
            "ip.src",
            "-e",
            "ip.dst",
        ])
        .args(["-e", "udp.dstport", "-e", "data.data", "-e", "esp.icv_good"])
        .args(["-e", "esp.protocol", "-e", "esp.pad_len"])
        .output()
        .expect("run tshark");
    assert!(
        out.status.success(),
        "tshark failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Where tshark gets the keys from.
enum Keys<'a> {
    /// `-o uat:esp_sa:<line>`.
    Uat(&'a str),
    /// A home directory holding `.config/wireshark/esp_sa`.
    Home(&'a std::path::Path),
}

fn check(transform: EspTransform, spi: u32) {
    tshark_available();
    let p = params(transform, spi);
    let (pcap, inners) = seal_pcap(&p, 4, "ok");
    let stdout = if transform == EspTransform::AesGcm256 {
        // Exercise the key-log file path as well as the -o option.
        let home =
            std::env::temp_dir().join(format!("plexgate-tshark-home-{}", std::process::id()));
        let conf = home.join(".config/wireshark");
        std::fs::create_dir_all(&conf).unwrap();
        std::fs::write(conf.join("esp_sa"), esp_sa_file([&p])).unwrap();
        let out = tshark_fields(&pcap, Keys::Home(&home));
        std::fs::remove_dir_all(&home).ok();
        out
    } else {
        tshark_fields(&pcap, Keys::Uat(&tshark_uat_option(&p)))
    };
    std::fs::remove_file(&pcap).ok();
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(
        lines.len(),
        inners.len(),
        "tshark output:\n{stdout}\nkey log: {}",
        esp_sa_line(&p)
    );
    for (i, (line, inner)) in lines.iter().zip(&inners).enumerate() {
        let f: Vec<&str> = line.split('|').collect();
        assert_eq!(f.len(), 9, "{line}");
        assert_eq!(f[0], format!("0x{spi:08x}"), "{line}");
        assert_eq!(f[1], (i + 1).to_string(), "sequence number, {line}");
        // Outer and decrypted inner addresses: tshark only shows the inner
        // header if it decrypted the payload with our key log.
        assert_eq!(
            f[2],
            "198.51.100.1,192.168.1.1",
            "{line}\nkey log: {}",
            esp_sa_line(&p)
        );
        assert_eq!(f[3], "198.51.100.2,192.168.2.2", "{line}");
        assert_eq!(f[4], "4500,7777", "{line}");
        // The inner UDP payload, byte for byte.
        assert_eq!(
            f[5],
            hex::encode(&inner[28..]),
            "inner payload of packet {i}: {line}"
        );
        // Wireshark verified the ICV, saw next header 4 (IPv4) and a pad
        // length that brings the plaintext to the block size.
        assert!(
            f[6] == "1" || f[6].eq_ignore_ascii_case("true"),
            "ICV not verified by tshark: {line}"
        );
        assert_eq!(f[7], "0x04", "{line}");
        let pad: usize = f[8].parse().unwrap();
        assert_eq!((inner.len() + pad + 2) % transform.pad_align(), 0, "{line}");
        assert!(pad < transform.pad_align(), "{line}");
    }
}

#[test]
fn tshark_decrypts_aes_gcm_128() {
    check(EspTransform::AesGcm128, 0x1000_0001);
}

#[test]
fn tshark_decrypts_aes_gcm_256() {
    check(EspTransform::AesGcm256, 0x1000_0002);
}

#[test]
fn tshark_decrypts_aes_cbc_128_hmac_sha256() {
    check(EspTransform::AesCbc128HmacSha256, 0x1000_0003);
}

#[test]
fn tshark_decrypts_aes_cbc_256_hmac_sha256() {
    check(EspTransform::AesCbc256HmacSha256, 0x1000_0004);
}

#[test]
fn tshark_decrypts_aes_cbc_128_hmac_sha384() {
    check(EspTransform::AesCbc128HmacSha384, 0x1000_0006);
}

#[test]
fn tshark_decrypts_aes_cbc_256_hmac_sha384() {
    check(EspTransform::AesCbc256HmacSha384, 0x1000_0007);
}

#[test]
fn tshark_decrypts_aes_cbc_128_hmac_sha512() {
    check(EspTransform::AesCbc128HmacSha512, 0x1000_0008);
}

#[test]
fn tshark_decrypts_aes_cbc_256_hmac_sha512() {
    check(EspTransform::AesCbc256HmacSha512, 0x1000_0009);
}

/// With a wrong key, tshark must not show the inner packet and must flag the
/// ICV: the checks above cannot pass by accident.
#[test]
fn tshark_wrong_key_shows_nothing() {
    tshark_available();
    for transform in [
        EspTransform::AesGcm128,
        EspTransform::AesCbc128HmacSha256,
        EspTransform::AesCbc256HmacSha512,
    ] {
        let p = params(transform, 0x1000_0005);
        let (pcap, _) = seal_pcap(&p, 1, "wrong");
        let mut wrong = p.clone();
        wrong.enc_key[0] ^= 1;
        if !wrong.integ_key.is_empty() {
            wrong.integ_key[0] ^= 1;
        }
        let stdout = tshark_fields(&pcap, Keys::Uat(&tshark_uat_option(&wrong)));
        std::fs::remove_file(&pcap).ok();
        assert!(
            !stdout.contains("192.168.1.1"),
            "decrypted with a wrong key?\n{stdout}"
        );
        let f: Vec<&str> = stdout.trim_end().split('|').collect();
        assert!(
            f[6] != "1" && !f[6].eq_ignore_ascii_case("true"),
            "ICV good with a wrong key? {stdout}"
        );
    }
}
