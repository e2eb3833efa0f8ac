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
