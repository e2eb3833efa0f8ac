//! Key logs for Wireshark: Child SAs in the format of Wireshark's ESP `esp_sa`
//! UAT file (`~/.config/wireshark/esp_sa`, or `tshark -o "uat:esp_sa:<line>"`
//! together with `-o esp.enable_encryption_decode:TRUE`), and IKE SAs in the
//! format of its `ikev2_decryption_table` UAT file.
//!
//! `esp_sa` fields, each a quoted string, are those of `esp_uat_flds` in
//! Wireshark's `epan/dissectors/packet-ipsec.c`: protocol ("IPv4"/"IPv6"),
//! source address, destination address, SPI (`0x%08x`), encryption algorithm,
//! encryption key (`0x` hex; for AEAD including the 4-byte salt),
//! authentication algorithm, authentication key.
//!
//! tshark 4.0 (Debian 12) does not know ChaCha20-Poly1305, and a line naming
//! it is an error ("invalid value") that Wireshark reports on every start and
//! that makes `-o uat:esp_sa:` refuse the option. So [`esp_sa_line`] writes a
//! ChaCha20-Poly1305 SA as a comment (prefix [`CHACHA20_PREFIX`]), which every
//! Wireshark skips; [`with_chacha20_enabled`] turns those comments back into
//! records for a Wireshark that knows the algorithm (it names it
//! "ChaCha20 with Poly1305 [RFC7634]").
//!
//! `ikev2_decryption_table` fields (`ikev2_uat_flds` in
//! `epan/dissectors/packet-isakmp.c`): SPIi and SPIr (16 hex digits each),
//! SK_ei, SK_er (hex; for AES-GCM the key and its 4-byte salt), the encryption
//! algorithm's name, SK_ai, SK_ar (empty for AEAD), the integrity algorithm's
//! name. Byte fields are bare hex, names are quoted, as Wireshark writes them.
//!
//! These are secrets: write them only where asked to.

use crate::sa::SaParams;
use crate::transform::EspTransform;
use core::fmt::Write;
use core::net::IpAddr;

/// The prefix of the commented-out line of a ChaCha20-Poly1305 SA.
pub const CHACHA20_PREFIX: &str = "#chacha20-poly1305 (Wireshark 4.2 or later) ";

/// The `esp_sa` record of one SA, for any transform (no trailing newline).
pub fn esp_sa_record(p: &SaParams) -> String {
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

/// The `esp_sa` line of one SA (no trailing newline): its record, or for a
/// ChaCha20-Poly1305 SA the record commented out with [`CHACHA20_PREFIX`], so
/// that a Wireshark that lacks ChaCha20 (tshark 4.0) loads the rest silently.
pub fn esp_sa_line(p: &SaParams) -> String {
    let record = esp_sa_record(p);
    if p.transform == EspTransform::ChaCha20Poly1305 {
        format!("{CHACHA20_PREFIX}{record}")
    } else {
        record
    }
}

/// An `esp_sa` file body: one line per SA ([`esp_sa_line`]), each ending with
/// a newline.
pub fn esp_sa_file<'a>(sas: impl IntoIterator<Item = &'a SaParams>) -> String {
    let mut s = String::new();
    for p in sas {
        s.push_str(&esp_sa_line(p));
        s.push('\n');
    }
    s
}

/// The same key log for a Wireshark that knows ChaCha20-Poly1305: the lines
/// [`esp_sa_line`] commented out become records again; nothing else changes.
pub fn with_chacha20_enabled(key_log: &str) -> String {
    let mut s = String::with_capacity(key_log.len());
    for line in key_log.lines() {
        s.push_str(line.strip_prefix(CHACHA20_PREFIX).unwrap_or(line));
        s.push('\n');
    }
    s
}

/// The `-o` argument that hands one SA to tshark: `uat:esp_sa:<record>`.
pub fn tshark_uat_option(p: &SaParams) -> String {
    format!("uat:esp_sa:{}", esp_sa_record(p))
}

/// The keys of an IKE SA, as the IKE engine holds them (RFC 7296 §2.14), with
/// the IKEv2 ids of its encryption and integrity transforms.
#[derive(Clone, Copy)]
pub struct IkeSaKeys<'a> {
    /// The initiator's IKE SPI.
    pub spi_i: u64,
    /// The responder's IKE SPI.
    pub spi_r: u64,
    /// ENCR transform id (RFC 7296 §3.3.2).
    pub encr: u16,
    /// Its Key Length attribute in bits, if any.
    pub encr_key_bits: Option<u16>,
    /// INTEG transform id; `None` (or 0) for AEAD.
    pub integ: Option<u16>,
    /// SK_ei (for AES-GCM: key then 4-byte salt).
    pub sk_ei: &'a [u8],
    /// SK_er.
    pub sk_er: &'a [u8],
    /// SK_ai (empty for AEAD).
    pub sk_ai: &'a [u8],
    /// SK_ar (empty for AEAD).
    pub sk_ar: &'a [u8],
}

impl core::fmt::Debug for IkeSaKeys<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(
            f,
            "IkeSaKeys({:016x}_i {:016x}_r, ENCR {} {:?}, INTEG {:?}, keys redacted)",
            self.spi_i, self.spi_r, self.encr, self.encr_key_bits, self.integ
        )
    }
}

/// Why an IKE SA cannot go into Wireshark's IKEv2 table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum KeyLogError {
    /// Wireshark has no name for this encryption transform (e.g. ChaCha20).
    #[error("Wireshark's IKEv2 decryption table has no encryption algorithm for ENCR {encr} with key length {key_bits:?}")]
    UnknownEncryption {
        /// ENCR id.
        encr: u16,
        /// Key Length attribute.
        key_bits: Option<u16>,
    },
    /// Wireshark has no name for this integrity transform.
    #[error("Wireshark's IKEv2 decryption table has no integrity algorithm for INTEG {0}")]
    UnknownIntegrity(u16),
}

/// Wireshark's name of an IKEv2 encryption transform (`ikev2_encr_algs` in
/// `packet-isakmp.c`, as tshark 4.0 spells them).
pub fn ikev2_encryption_name(encr: u16, key_bits: Option<u16>) -> Option<&'static str> {
    Some(match (encr, key_bits) {
        (3, _) => "3DES [RFC2451]",
        (11, _) => "NULL [RFC2410]",
        (12, Some(128)) => "AES-CBC-128 [RFC3602]",
        (12, Some(192)) => "AES-CBC-192 [RFC3602]",
        (12, Some(256)) => "AES-CBC-256 [RFC3602]",
        (13, Some(128)) => "AES-CTR-128 [RFC5930]",
        (13, Some(192)) => "AES-CTR-192 [RFC5930]",
        (13, Some(256)) => "AES-CTR-256 [RFC5930]",
        (14, Some(128)) => "AES-CCM-128 with 8 octet ICV [RFC5282]",
        (14, Some(192)) => "AES-CCM-192 with 8 octet ICV [RFC5282]",
        (14, Some(256)) => "AES-CCM-256 with 8 octet ICV [RFC5282]",
        (15, Some(128)) => "AES-CCM-128 with 12 octet ICV [RFC5282]",
        (15, Some(192)) => "AES-CCM-192 with 12 octet ICV [RFC5282]",
        (15, Some(256)) => "AES-CCM-256 with 12 octet ICV [RFC5282]",
        (16, Some(128)) => "AES-CCM-128 with 16 octet ICV [RFC5282]",
        (16, Some(192)) => "AES-CCM-192 with 16 octet ICV [RFC5282]",
        (16, Some(256)) => "AES-CCM-256 with 16 octet ICV [RFC5282]",
        (18, Some(128)) => "AES-GCM-128 with 8 octet ICV [RFC5282]",
        (18, Some(192)) => "AES-GCM-192 with 8 octet ICV [RFC5282]",
        (18, Some(256)) => "AES-GCM-256 with 8 octet ICV [RFC5282]",
        (19, Some(128)) => "AES-GCM-128 with 12 octet ICV [RFC5282]",
        (19, Some(192)) => "AES-GCM-192 with 12 octet ICV [RFC5282]",
        (19, Some(256)) => "AES-GCM-256 with 12 octet ICV [RFC5282]",
        (20, Some(128)) => "AES-GCM-128 with 16 octet ICV [RFC5282]",
        (20, Some(192)) => "AES-GCM-192 with 16 octet ICV [RFC5282]",
        (20, Some(256)) => "AES-GCM-256 with 16 octet ICV [RFC5282]",
        _ => return None,
    })
}

/// Wireshark's name of an IKEv2 integrity transform (`ikev2_auth_algs`).
pub fn ikev2_integrity_name(integ: Option<u16>) -> Option<&'static str> {
    Some(match integ.unwrap_or(0) {
        0 => "NONE [RFC4306]",
        1 => "HMAC_MD5_96 [RFC2403]",
        2 => "HMAC_SHA1_96 [RFC2404]",
        12 => "HMAC_SHA2_256_128 [RFC4868]",
        13 => "HMAC_SHA2_384_192 [RFC4868]",
        14 => "HMAC_SHA2_512_256 [RFC4868]",
        _ => return None,
    })
}

/// The `ikev2_decryption_table` line of one IKE SA (no trailing newline), or
/// why Wireshark could not use it.
pub fn ikev2_decryption_line(k: &IkeSaKeys<'_>) -> Result<String, KeyLogError> {
    let enc =
        ikev2_encryption_name(k.encr, k.encr_key_bits).ok_or(KeyLogError::UnknownEncryption {
            encr: k.encr,
            key_bits: k.encr_key_bits,
        })?;
    let integ =
        ikev2_integrity_name(k.integ).ok_or(KeyLogError::UnknownIntegrity(k.integ.unwrap_or(0)))?;
    Ok(format!(
        "{:016x},{:016x},{},{},\"{enc}\",{},{},\"{integ}\"",
        k.spi_i,
        k.spi_r,
        hex::encode(k.sk_ei),
        hex::encode(k.sk_er),
        hex::encode(k.sk_ai),
        hex::encode(k.sk_ar),
    ))
}

/// The `-o` argument that hands one IKE SA to tshark:
/// `uat:ikev2_decryption_table:<line>`.
pub fn tshark_ikev2_option(k: &IkeSaKeys<'_>) -> Result<String, KeyLogError> {
    Ok(format!(
        "uat:ikev2_decryption_table:{}",
        ikev2_decryption_line(k)?
    ))
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

    #[test]
    fn chacha20_is_a_comment_until_enabled() {
        let cc = p(
            EspTransform::ChaCha20Poly1305,
            Direction::Inbound,
            &"11".repeat(36),
            "",
        );
        let gcm = p(
            EspTransform::AesGcm128,
            Direction::Outbound,
            &"22".repeat(20),
            "",
        );
        let file = esp_sa_file([&cc, &gcm]);
        let lines: Vec<&str> = file.lines().collect();
        assert!(lines[0].starts_with('#'));
        assert_eq!(lines[0], format!("{CHACHA20_PREFIX}{}", esp_sa_record(&cc)));
        assert!(lines[0].contains("\"ChaCha20 with Poly1305 [RFC7634]\""));
        assert_eq!(lines[1], esp_sa_record(&gcm));
        let enabled = with_chacha20_enabled(&file);
        assert_eq!(
            enabled,
            format!("{}\n{}\n", esp_sa_record(&cc), esp_sa_record(&gcm))
        );
        assert!(tshark_uat_option(&cc).contains("ChaCha20"));
    }

    #[test]
    fn ikev2_line_and_unknown_algorithms() {
        let k = IkeSaKeys {
            spi_i: 0x3e2a_488b_79d1_8798,
            spi_r: 0x0000_0000_0000_00f6,
            encr: 20,
            encr_key_bits: Some(256),
            integ: None,
            sk_ei: &[0xaa, 0xbb],
            sk_er: &[0xcc],
            sk_ai: &[],
            sk_ar: &[],
        };
        assert_eq!(
            ikev2_decryption_line(&k).unwrap(),
            "3e2a488b79d18798,00000000000000f6,aabb,cc,\"AES-GCM-256 with 16 octet ICV [RFC5282]\",,,\"NONE [RFC4306]\""
        );
        let cc = IkeSaKeys {
            encr: 28,
            encr_key_bits: None,
            ..k
        };
        assert_eq!(
            ikev2_decryption_line(&cc),
            Err(KeyLogError::UnknownEncryption {
                encr: 28,
                key_bits: None
            })
        );
        let bad = IkeSaKeys {
            encr: 12,
            encr_key_bits: Some(128),
            integ: Some(99),
            ..k
        };
        assert_eq!(
            ikev2_decryption_line(&bad),
            Err(KeyLogError::UnknownIntegrity(99))
        );
        assert!(!format!("{k:?}").contains("aabb"));
    }
}
