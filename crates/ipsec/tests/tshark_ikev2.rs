//! The IKEv2 key log checked by tshark (Wireshark's dissector, code no one here
//! wrote): the keys charon logged for the strongSwan captures in
//! `crates/ike/testdata/captures/` (AES-CBC-128 + HMAC-SHA-256-128, and
//! AES-GCM-256 with its salt), formatted by `keylog::ikev2_decryption_line`,
//! make tshark decrypt IKE_AUTH, verify its integrity and show both identities.
//! And the ESP key log of #10: one file holding a ChaCha20-Poly1305 SA next to
//! GCM and CBC SAs loads in tshark 4.0 without an error and decrypts the rest.
//! Fails, with a message, if tshark is missing.

mod common;

use plexgate_ipsec::keylog::{
    esp_sa_file, ikev2_decryption_line, tshark_ikev2_option, with_chacha20_enabled, IkeSaKeys,
};
use plexgate_ipsec::{
    Direction, EspTransform, Lifetime, Mode, SaParams, SecurityAssociation, UdpEncapPorts,
};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

const TSHARK: &str = "/usr/bin/tshark";

fn tshark() -> Command {
    let ok = Command::new(TSHARK)
        .arg("--version")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    assert!(
        ok,
        "{TSHARK} is required for this test (apt-get install tshark): it is the independent check of the key logs"
    );
    Command::new(TSHARK)
}

fn capture_dir(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../ike/testdata/captures")
        .join(name)
}

/// The bytes charon logged as `<name> secret => N bytes` (a hex dump of N
/// bytes on the lines after it).
fn log_secret(log: &str, name: &str) -> Vec<u8> {
    let mut lines = log.lines();
    let head = lines
        .find(|l| l.contains(&format!("{name} secret =>")))
        .unwrap_or_else(|| panic!("{name} not in the log"));
    let n: usize = head
        .split("=>")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .and_then(|w| w.parse().ok())
        .expect("byte count");
    let mut out = Vec::with_capacity(n);
    for l in lines {
        // "14[IKE]    0: 02 CA 1F ...  ascii"
        let Some((_, dump)) = l.split_once(": ") else {
            break;
        };
        for w in dump.split_whitespace().take(16) {
            if out.len() == n {
                break;
            }
            out.push(u8::from_str_radix(w, 16).expect("hex byte"));
        }
        if out.len() == n {
            break;
        }
    }
    assert_eq!(out.len(), n, "{name}");
    out
}

/// The IKE SPIs of the capture's IKE_AUTH request, read from its bytes
/// (Ethernet or raw IPv4, UDP, then the IKE header; on port 4500 after the
/// non-ESP marker).
fn ike_auth_spis(pcap: &[u8]) -> (u64, u64) {
    let (link, frames) = common::read_pcap(pcap);
    let l2 = if link == common::LINKTYPE_RAW { 0 } else { 14 };
    for f in frames {
        let f = &f[l2..];
        let ihl = usize::from(f[0] & 0x0f) * 4;
        if f[9] != 17 {
            continue;
        }
        let udp = &f[ihl..];
        let dport = u16::from_be_bytes([udp[2], udp[3]]);
        let ike = match dport {
            500 => &udp[8..],
            4500 if udp[8..12] == [0; 4] => &udp[12..],
            _ => continue,
        };
        // Exchange type 35 = IKE_AUTH, initiator's request (flags 0x08).
        if ike[18] == 35 && ike[19] & 0x20 == 0 {
            let spi = |b: &[u8]| u64::from_be_bytes(b.try_into().unwrap());
            return (spi(&ike[0..8]), spi(&ike[8..16]));
        }
    }
    panic!("no IKE_AUTH request in the capture")
}

fn check_ike_auth(dir: &str, encr: u16, bits: u16, integ: Option<u16>) {
    let d = capture_dir(dir);
    let log = std::fs::read_to_string(d.join("responder.log")).unwrap();
    let pcap_path = d.join("exchange.pcap");
    let (spi_i, spi_r) = ike_auth_spis(&std::fs::read(&pcap_path).unwrap());
    let (ei, er, ai, ar) = (
        log_secret(&log, "Sk_ei"),
        log_secret(&log, "Sk_er"),
        if integ.is_some() {
            log_secret(&log, "Sk_ai")
        } else {
            vec![]
        },
        if integ.is_some() {
            log_secret(&log, "Sk_ar")
        } else {
            vec![]
        },
    );
    let keys = IkeSaKeys {
        spi_i,
        spi_r,
        encr,
        encr_key_bits: Some(bits),
        integ,
        sk_ei: &ei,
        sk_er: &er,
        sk_ai: &ai,
        sk_ar: &ar,
    };
    let run = |keys: &IkeSaKeys<'_>| {
        let out = tshark()
            .arg("-r")
            .arg(&pcap_path)
            .args(["-o", &tshark_ikev2_option(keys).unwrap()])
            .args([
                "-Y",
                "isakmp.exchangetype == 35",
                "-T",
                "fields",
                "-E",
                "separator=|",
            ])
            .args(["-e", "isakmp.id.data.user_fqdn", "-e", "isakmp.enc.icd"])
            .output()
            .expect("run tshark");
        assert!(
            out.status.success(),
            "tshark: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let stdout = run(&keys);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(
        lines.len(),
        2,
        "{dir}: {stdout}\nline: {}",
        ikev2_decryption_line(&keys).unwrap()
    );
    // Request: IDi (and the IDr the client asks for); response: IDr.
    assert!(lines[0].starts_with("client@example"), "{dir}: {stdout}");
    assert!(lines[1].starts_with("gw@example"), "{dir}: {stdout}");
    // The integrity of both messages was verified by tshark: with HMAC it
    // shows the checksum field; with GCM a wrong key shows nothing at all.
    if integ.is_some() {
        assert!(lines
            .iter()
            .all(|l| l.split('|').nth(1).is_some_and(|c| !c.is_empty())));
    }
    // A wrong SK_ei: nothing decrypted.
    let mut bad = ei.clone();
    bad[0] ^= 1;
    let wrong = run(&IkeSaKeys {
        sk_ei: &bad,
        ..keys
    });
    assert!(
        !wrong.contains("client@example"),
        "{dir}: decrypted with a wrong key: {wrong}"
    );
}

#[test]
fn tshark_decrypts_ike_auth_aes_cbc_hmac_sha256() {
    check_ike_auth("gcm128-x25519", 12, 128, Some(12));
}

#[test]
fn tshark_decrypts_ike_auth_aes_gcm_256() {
    check_ike_auth("gcm256-p384", 20, 256, None);
}

fn sa(transform: EspTransform, spi: u32) -> SaParams {
    let key = |n: usize, s: u8| (0..n).map(|i| s ^ (i as u8).wrapping_mul(11)).collect();
    SaParams {
        spi,
        direction: Direction::Outbound,
        transform,
        enc_key: key(transform.enc_key_len(), spi as u8),
        integ_key: key(transform.integ_key_len(), 0x77),
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

/// #10: a key log that also holds ChaCha20-Poly1305 SAs loads in tshark 4.0
/// without an error, and the GCM and CBC SAs in it decrypt.
#[test]
fn esp_key_log_with_chacha20_loads_in_tshark() {
    let sas = [
        sa(EspTransform::ChaCha20Poly1305, 0x5000_0001),
        sa(EspTransform::AesGcm128, 0x5000_0002),
        sa(EspTransform::ChaCha20Poly1305, 0x5000_0003),
        sa(EspTransform::AesCbc256HmacSha384, 0x5000_0004),
    ];
    let now = Instant::now();
    let inner = common::inner_udp(
        [192, 168, 1, 1],
        [192, 168, 2, 2],
        40000,
        7777,
        b"chacha next door",
    );
    let mut frames = Vec::new();
    for p in &sas[1..=3] {
        if p.transform == EspTransform::ChaCha20Poly1305 {
            continue;
        }
        let mut s = SecurityAssociation::new(p.clone(), now).unwrap();
        let mut out = vec![0u8; 512];
        let n = s.seal(now, &inner, 4, &mut out).unwrap();
        frames.push(common::ipv4_udp4500(
            [198, 51, 100, 1],
            [198, 51, 100, 2],
            &out[..n],
        ));
    }
    let tmp = std::env::temp_dir().join(format!("plexgate-keylog-cc-{}", std::process::id()));
    let conf = tmp.join(".config/wireshark");
    std::fs::create_dir_all(&conf).unwrap();
    let pcap = tmp.join("esp.pcap");
    std::fs::write(&pcap, common::write_pcap_raw(&frames)).unwrap();
    let run = |key_log: &str| {
        std::fs::write(conf.join("esp_sa"), key_log).unwrap();
        let out = tshark()
            .env("HOME", &tmp)
            .env_remove("XDG_CONFIG_HOME")
            .arg("-r")
            .arg(&pcap)
            .args(["-o", "esp.enable_encryption_decode:TRUE"])
            .args(["-o", "esp.enable_authentication_check:TRUE"])
            .args([
                "-T",
                "fields",
                "-E",
                "separator=|",
                "-e",
                "esp.spi",
                "-e",
                "ip.dst",
            ])
            .args(["-e", "esp.icv_good"])
            .output()
            .expect("run tshark");
        (
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let file = esp_sa_file(sas.iter());
    let (stdout, stderr) = run(&file);
    let version =
        String::from_utf8_lossy(&tshark().arg("--version").output().unwrap().stdout).into_owned();
    let enabled = with_chacha20_enabled(&file);
    let (_, stderr_enabled) = run(&enabled);
    std::fs::remove_dir_all(&tmp).ok();
    assert!(
        !stderr.contains("invalid value"),
        "tshark refused a line:\n{stderr}\n{file}"
    );
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{stdout}");
    for (line, spi) in lines.iter().zip(["0x50000002", "0x50000004"]) {
        assert!(line.starts_with(spi), "{line}");
        assert!(
            line.contains("198.51.100.2,192.168.2.2"),
            "not decrypted: {line}"
        );
        assert!(
            line.ends_with("|1") || line.to_lowercase().ends_with("|true"),
            "ICV: {line}"
        );
    }
    // Why the ChaCha20 lines are comments: tshark 4.0 refuses the record.
    if version.contains("TShark (Wireshark) 4.0.") {
        assert!(
            stderr_enabled.contains("invalid value: ChaCha20"),
            "{stderr_enabled}"
        );
    }
}
