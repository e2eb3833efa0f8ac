//! What this gateway can actually use, in one place (#17: a transform that IKE
//! negotiated but the data plane could not install left the peer sending into
//! a void). The proposal syntax accepts every strongSwan keyword we know; the
//! checker then refuses, with line and column, any proposal that names a
//! transform the ESP data plane (`plexgate_ipsec::EspTransform`) cannot install
//! or the IKE engine (`plexgate_ike::crypto`) does not implement.
//!
//! The lists are public so that a test in the root crate can tie them to those
//! two crates: every [`ESP_SUITES`] entry must map to an `EspTransform`, every
//! IKE list entry must pass the engine's own checks, and nothing else may.

use super::{DhGroup, Encr, EspProposal, IkeProposal, Integ, Prf};

/// One ESP cipher with its integrity algorithm (`None` for AEAD ciphers).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct EspSuite {
    /// The cipher.
    pub encr: Encr,
    /// Its integrity algorithm; `None` for AEAD ciphers.
    pub integ: Option<Integ>,
}

const fn cbc(key_bits: u16, integ: Integ) -> EspSuite {
    EspSuite {
        encr: Encr::AesCbc { key_bits },
        integ: Some(integ),
    }
}

const fn gcm16(key_bits: u16) -> EspSuite {
    EspSuite {
        encr: Encr::AesGcm {
            key_bits,
            icv_bytes: 16,
        },
        integ: None,
    }
}

/// Every ESP transform combination the data plane installs: AES-GCM with a
/// 16-byte ICV (RFC 4106), ChaCha20-Poly1305 (RFC 7634), and AES-CBC (RFC 3602)
/// with HMAC-SHA-256-128, -384-192 or -512-256 (RFC 4868).
pub const ESP_SUITES: &[EspSuite] = &[
    gcm16(128),
    gcm16(256),
    EspSuite {
        encr: Encr::ChaCha20Poly1305,
        integ: None,
    },
    cbc(128, Integ::HmacSha256_128),
    cbc(128, Integ::HmacSha384_192),
    cbc(128, Integ::HmacSha512_256),
    cbc(256, Integ::HmacSha256_128),
    cbc(256, Integ::HmacSha384_192),
    cbc(256, Integ::HmacSha512_256),
];

/// IKE SA ciphers the IKE engine implements (`IkeSuite::validate`): AES-GCM-16
/// and AES-CBC, 128 or 256 bits. ChaCha20-Poly1305 is for ESP only.
pub const IKE_ENCR: &[Encr] = &[
    Encr::AesGcm {
        key_bits: 128,
        icv_bytes: 16,
    },
    Encr::AesGcm {
        key_bits: 256,
        icv_bytes: 16,
    },
    Encr::AesCbc { key_bits: 128 },
    Encr::AesCbc { key_bits: 256 },
];

/// IKE SA integrity algorithms (with AES-CBC).
pub const IKE_INTEG: &[Integ] = &[
    Integ::HmacSha256_128,
    Integ::HmacSha384_192,
    Integ::HmacSha512_256,
];

/// IKE SA PRFs.
pub const IKE_PRF: &[Prf] = &[Prf::HmacSha256, Prf::HmacSha384, Prf::HmacSha512];

/// Key exchange methods, for the IKE SA and for PFS in CREATE_CHILD_SA
/// (`plexgate_ike::crypto::dh_supported`).
pub const DH_GROUPS: &[DhGroup] = &[
    DhGroup::Modp2048,
    DhGroup::Ecp256,
    DhGroup::Ecp384,
    DhGroup::X25519,
];

fn join<T: ToString>(v: impl IntoIterator<Item = T>) -> String {
    v.into_iter()
        .map(|x| x.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Words of `have` that are not in `ok`, in order, each once.
fn missing<T: PartialEq + ToString + Copy>(have: &[T], ok: &[T]) -> Vec<String> {
    have.iter()
        .filter(|x| !ok.contains(x))
        .map(|x| x.to_string())
        .collect()
}

/// What the data plane installs, for messages.
pub fn esp_supported_list() -> String {
    join(ESP_SUITES.iter().map(|s| match s.integ {
        None => s.encr.to_string(),
        Some(i) => format!("{}-{i}", s.encr),
    }))
}

/// What the IKE engine implements, for messages.
pub fn ike_supported_list() -> String {
    format!(
        "{}, with {} after a CBC cipher; PRFs {}; key exchange {}",
        join(IKE_ENCR),
        join(IKE_INTEG),
        join(IKE_PRF),
        join(DH_GROUPS)
    )
}

/// Why an ESP proposal cannot be used, if it cannot: the words the data plane
/// cannot install (or PFS groups IKE cannot make), then what is supported. The
/// caller names the proposal as written.
pub fn esp_unsupported(p: &EspProposal) -> Option<String> {
    let ciphers: Vec<Encr> = ESP_SUITES.iter().map(|s| s.encr).collect();
    let integs: Vec<Integ> = ESP_SUITES.iter().filter_map(|s| s.integ).collect();
    let mut bad = missing(&p.encryption, &ciphers);
    bad.extend(missing(&p.integrity, &integs));
    let pfs = missing(&p.pfs, DH_GROUPS);
    if bad.is_empty() && pfs.is_empty() {
        return None;
    }
    let mut parts = Vec::new();
    if !bad.is_empty() {
        parts.push(format!(
            "the data plane cannot install {}; it installs {}",
            bad.join(" or "),
            esp_supported_list()
        ));
    }
    if !pfs.is_empty() {
        parts.push(format!(
            "the IKE engine has no key exchange {} for PFS; it has {}",
            pfs.join(" or "),
            join(DH_GROUPS)
        ));
    }
    Some(parts.join("; "))
}

/// Why an IKE proposal cannot be used, if it cannot. A PRF that was derived
/// from an unsupported integrity algorithm is not named twice.
pub fn ike_unsupported(p: &IkeProposal) -> Option<String> {
    let mut bad = missing(&p.encryption, IKE_ENCR);
    let bad_integ: Vec<&Integ> = p
        .integrity
        .iter()
        .filter(|i| !IKE_INTEG.contains(i))
        .collect();
    bad.extend(bad_integ.iter().map(|i| i.to_string()));
    bad.extend(
        p.prf
            .iter()
            .filter(|f| !IKE_PRF.contains(f) && !bad_integ.iter().any(|i| i.as_prf() == **f))
            .map(|f| f.to_string()),
    );
    bad.extend(missing(&p.dh, DH_GROUPS));
    if bad.is_empty() {
        return None;
    }
    Some(format!(
        "the IKE engine does not implement {}; it implements {}",
        bad.join(" or "),
        ike_supported_list()
    ))
}

#[cfg(test)]
mod tests {
    use super::super::{parse_esp, parse_ike};
    use super::*;

    #[test]
    fn esp_list_is_what_the_data_plane_installs() {
        for ok in [
            "aes128gcm16",
            "aes256gcm16-esn",
            "chacha20poly1305",
            "aes128-sha256",
            "aes256-sha384",
            "aes256-sha512-ecp384",
            "aes128-aes256-sha256-sha512-x25519",
        ] {
            let (p, _) = parse_esp(ok).unwrap();
            assert_eq!(esp_unsupported(&p), None, "{ok}");
        }
        for (bad, words) in [
            ("aes192-sha256", "aes192"),
            ("aes256gcm12", "aes256gcm12"),
            ("aes128gcm8", "aes128gcm8"),
            ("aes192gcm16", "aes192gcm16"),
            ("aes256-sha1", "sha1"),
            ("aes192-sha1", "aes192 or sha1"),
        ] {
            let (p, _) = parse_esp(bad).unwrap();
            let msg = esp_unsupported(&p).unwrap();
            assert!(
                msg.contains(&format!("the data plane cannot install {words};")),
                "{msg}"
            );
        }
        let (p, _) = parse_esp("aes256gcm16-ecp521").unwrap();
        assert_eq!(
            esp_unsupported(&p).unwrap(),
            "the IKE engine has no key exchange ecp521 for PFS; it has modp2048, ecp256, ecp384, x25519"
        );
    }

    #[test]
    fn ike_list_is_what_the_engine_implements() {
        for ok in [
            "aes256gcm16-prfsha384-ecp384",
            "aes128-sha256-x25519",
            "aes256-sha512-modp2048",
            "aes128gcm16-prfsha256-ecp256",
        ] {
            let (p, _) = parse_ike(ok).unwrap();
            assert_eq!(ike_unsupported(&p), None, "{ok}");
        }
        // sha1 brings the derived prfsha1: named once.
        let (p, _) = parse_ike("aes128-sha1-modp1024").unwrap();
        assert_eq!(
            ike_unsupported(&p).unwrap(),
            "the IKE engine does not implement sha1 or modp1024; it implements aes128gcm16, aes256gcm16, aes128, aes256, with sha256, sha384, sha512 after a CBC cipher; PRFs prfsha256, prfsha384, prfsha512; key exchange modp2048, ecp256, ecp384, x25519"
        );
        for (bad, word) in [
            ("chacha20poly1305-prfsha256-x25519", "chacha20poly1305"),
            ("aes192-sha256-x25519", "aes192"),
            ("aes256gcm16-prfsha1-x25519", "prfsha1"),
            ("aes256gcm16-prfsha256-x448", "x448"),
            ("aes256gcm16-prfsha256-ecp521", "ecp521"),
            ("aes256gcm16-prfsha256-modp4096", "modp4096"),
        ] {
            let (p, _) = parse_ike(bad).unwrap();
            let msg = ike_unsupported(&p).unwrap();
            assert!(
                msg.contains(&format!("does not implement {word};")),
                "{msg}"
            );
        }
    }
}
