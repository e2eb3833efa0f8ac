//! Key log for Wireshark: one line per SA in the format of Wireshark's ESP
//! `esp_sa` UAT file (`~/.config/wireshark/esp_sa`, or `tshark -o
//! "uat:esp_sa:<line>"` together with `-o esp.enable_encryption_decode:TRUE`).
//!
//! The fields, each a quoted string, are those of `esp_uat_flds` in Wireshark's
//! `epan/dissectors/packet-ipsec.c`: protocol ("IPv4"/"IPv6"), source address,
//! destination address, SPI (`0x%08x`), encryption algorithm, encryption key
//! (`0x` hex; for AEAD including the 4-byte salt), authentication algorithm,
//! authentication key. These are secrets: write them only where asked to.

use crate::sa::SaParams;
use core::fmt::Write;
use core::net::IpAddr;

/// The `esp_sa` line of one SA (no trailing newline).
pub fn esp_sa_line(p: &SaParams) -> String {
    let (src, dst) = p.outer_src_dst();
    let proto = match src {
        IpAddr::V4(_) => "IPv4",
        IpAddr::V6(_) => "IPv6",
    };
    let mut s = String::with_capacity(200);
    let _ = write!(
        s,
        "\"{proto}\",\"{src}\",\"{dst}\",\"0x{spi:08x}\",\"{enc}\",\"0x{ek}\",\"{auth}\",\"{ak}\"",
        spi = p.spi,
        enc = p.transform.wireshark_encryption_name(),
        ek = hex::encode(&p.enc_key),
        auth = p.transform.wireshark_auth_name(),
        ak = if p.integ_key.is_empty() {
            String::new()
        } else {
            format!("0x{}", hex::encode(&p.integ_key))
        },
    );
    s
}

/// An `esp_sa` file body: one line per SA, each ending with a newline.
pub fn esp_sa_file<'a>(sas: impl IntoIterator<Item = &'a SaParams>) -> String {
    let mut s = String::new();
    for p in sas {
        s.push_str(&esp_sa_line(p));
        s.push('\n');
    }
    s
}

/// The `-o` argument that hands one SA to tshark: `uat:esp_sa:<line>`.
pub fn tshark_uat_option(p: &SaParams) -> String {
    format!("uat:esp_sa:{}", esp_sa_line(p))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sa::{Direction, Lifetime, Mode};
    use crate::transform::EspTransform;

    fn p(t: EspTransform, dir: Direction, enc: &str, integ: &str) -> SaParams {
        SaParams {
            spi: 0x634a_93ee,
            direction: dir,
            transform: t,
            enc_key: hex::decode(enc).unwrap(),
            integ_key: hex::decode(integ).unwrap(),
            esn: false,
            mode: Mode::Tunnel,
            replay_window: 1024,
            lifetime: Lifetime::default(),
            local_ts: vec![],
            remote_ts: vec![],
            local_addr: "10.250.0.2".parse().unwrap(),
            remote_addr: "10.250.0.1".parse().unwrap(),
            encap: None,
            initial_seq: 0,
            peer: String::new(),
            child: String::new(),
        }
    }

    /// The line that decrypts the client's pings in
    /// `/work/shared/captures/gcm128-x25519` (checked with tshark 4.0.17 by
    /// hand; `tests/tshark_keylog.rs` checks lines of every transform).
    #[test]
    fn gcm_line_for_the_capture() {
        let sa = p(
            EspTransform::AesGcm128,
            Direction::Inbound,
            "c65629a57c9b614e59d66baef2e260b5af77a5e5",
            "",
        );
        assert_eq!(
            esp_sa_line(&sa),
            "\"IPv4\",\"10.250.0.1\",\"10.250.0.2\",\"0x634a93ee\",\
             \"AES-GCM with 16 octet ICV [RFC4106]\",\"0xc65629a57c9b614e59d66baef2e260b5af77a5e5\",\
             \"NULL\",\"\""
        );
    }

    #[test]
    fn cbc_line_outbound_ipv6() {
        let mut sa = p(
            EspTransform::AesCbc128HmacSha256,
            Direction::Outbound,
            "00112233445566778899aabbccddeeff",
            "ab",
        );
        sa.local_addr = "2001:db8::1".parse().unwrap();
        sa.remote_addr = "2001:db8::2".parse().unwrap();
        sa.spi = 7;
        let file = esp_sa_file([&sa, &sa]);
        assert_eq!(file.lines().count(), 2);
        assert_eq!(
            file.lines().next().unwrap(),
            "\"IPv6\",\"2001:db8::1\",\"2001:db8::2\",\"0x00000007\",\"AES-CBC [RFC3602]\",\
             \"0x00112233445566778899aabbccddeeff\",\"HMAC-SHA-256-128 [RFC4868]\",\"0xab\""
        );
        assert!(tshark_uat_option(&sa).starts_with("uat:esp_sa:\"IPv6\""));
    }
}
