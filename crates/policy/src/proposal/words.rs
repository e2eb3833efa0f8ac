//! Proposal keywords: each `-`-separated word of a proposal string is one
//! transform; [`split`] sorts the words by transform type and checks the rules
//! of RFC 7296 §3.3 that hold for IKE and ESP alike.

use super::{DhGroup, Encr, Esn, Integ, Prf, ProposalError};

enum Word {
    Encr(Encr),
    Integ(Integ),
    Prf(Prf),
    Dh(DhGroup),
    Esn(Esn),
}

const KNOWN: &[&str] = &[
    "aes128",
    "aes192",
    "aes256",
    "aes128gcm8",
    "aes128gcm12",
    "aes128gcm16",
    "aes192gcm16",
    "aes256gcm8",
    "aes256gcm12",
    "aes256gcm16",
    "chacha20poly1305",
    "sha1",
    "sha256",
    "sha384",
    "sha512",
    "prfsha1",
    "prfsha256",
    "prfsha384",
    "prfsha512",
    "modp1024",
    "modp2048",
    "modp3072",
    "modp4096",
    "ecp256",
    "ecp384",
    "ecp521",
    "x25519",
    "curve25519",
    "x448",
    "curve448",
    "esn",
    "noesn",
];

fn word(w: &str) -> Option<Word> {
    use Word::*;
    if let Some(rest) = w.strip_prefix("aes") {
        // aes128 / aes128gcm16 (also strongSwan's aes128gcm128 = 16-byte ICV).
        let (bits, gcm) = match rest.split_once("gcm") {
            Some((b, icv)) => (b, Some(icv)),
            None => (rest, None),
        };
        let key_bits = match bits {
            "" => 128,
            "128" => 128,
            "192" => 192,
            "256" => 256,
            _ => return None,
        };
        return match gcm {
            None => Some(Encr(self::Encr::AesCbc { key_bits })),
            Some(icv) => {
                let icv_bytes = match icv {
                    "8" | "64" => 8,
                    "12" | "96" => 12,
                    "16" | "128" | "" => 16,
                    _ => return None,
                };
                Some(Encr(self::Encr::AesGcm {
                    key_bits,
                    icv_bytes,
                }))
            }
        };
    }
    Some(match w {
        "chacha20poly1305" => Encr(self::Encr::ChaCha20Poly1305),
        "sha1" | "sha" => Integ(self::Integ::HmacSha1_96),
        "sha256" | "sha2_256" => Integ(self::Integ::HmacSha256_128),
        "sha384" | "sha2_384" => Integ(self::Integ::HmacSha384_192),
        "sha512" | "sha2_512" => Integ(self::Integ::HmacSha512_256),
        "prfsha1" => Prf(self::Prf::HmacSha1),
        "prfsha256" => Prf(self::Prf::HmacSha256),
        "prfsha384" => Prf(self::Prf::HmacSha384),
        "prfsha512" => Prf(self::Prf::HmacSha512),
        "modp1024" => Dh(DhGroup::Modp1024),
        "modp2048" => Dh(DhGroup::Modp2048),
        "modp3072" => Dh(DhGroup::Modp3072),
        "modp4096" => Dh(DhGroup::Modp4096),
        "ecp256" => Dh(DhGroup::Ecp256),
        "ecp384" => Dh(DhGroup::Ecp384),
        "ecp521" => Dh(DhGroup::Ecp521),
        "x25519" | "curve25519" => Dh(DhGroup::X25519),
        "x448" | "curve448" => Dh(DhGroup::X448),
        "esn" => Esn(self::Esn::Yes),
        "noesn" => Esn(self::Esn::No),
        _ => return None,
    })
}

fn hint(w: &str) -> String {
    let weak = [
        "3des", "des", "md5", "blowfish", "cast128", "null", "modp768",
    ];
    if weak.contains(&w) {
        return " (it is weak and not supported)".into();
    }
    let best = KNOWN
        .iter()
        .map(|k| (crate::reader::levenshtein(w, k), *k))
        .min_by_key(|(d, _)| *d)
        .filter(|(d, _)| *d <= 2);
    match best {
        Some((_, k)) => format!("; did you mean `{k}`?"),
        None => format!("; known algorithms: {}", KNOWN.join(", ")),
    }
}

pub(super) struct Words {
    pub(super) encr: Vec<Encr>,
    pub(super) integ: Vec<Integ>,
    pub(super) prf: Vec<Prf>,
    pub(super) dh: Vec<DhGroup>,
    pub(super) esn: Vec<Esn>,
    pub(super) warnings: Vec<String>,
}

pub(super) fn split(kind: &'static str, s: &str) -> Result<Words, ProposalError> {
    let mut w = Words {
        encr: vec![],
        integ: vec![],
        prf: vec![],
        dh: vec![],
        esn: vec![],
        warnings: vec![],
    };
    let invalid = |problem: &str| ProposalError::Invalid {
        kind,
        proposal: s.to_string(),
        problem: problem.to_string(),
    };
    if s.trim().is_empty() {
        return Err(invalid("is empty"));
    }
    for raw in s.split('-') {
        let lw = raw.trim().to_ascii_lowercase();
        match word(&lw) {
            Some(Word::Encr(e)) => push_unique(&mut w.encr, e),
            Some(Word::Integ(i)) => {
                if i == Integ::HmacSha1_96 {
                    w.warnings.push(format!(
                        "{kind} proposal `{s}` offers HMAC-SHA1, which is weak; prefer sha256"
                    ));
                }
                push_unique(&mut w.integ, i)
            }
            Some(Word::Prf(p)) => push_unique(&mut w.prf, p),
            Some(Word::Dh(d)) => {
                if d == DhGroup::Modp1024 {
                    w.warnings
                        .push(format!("{kind} proposal `{s}` offers modp1024, which is weak; prefer x25519 or ecp256"));
                }
                push_unique(&mut w.dh, d)
            }
            Some(Word::Esn(e)) => push_unique(&mut w.esn, e),
            None => {
                return Err(ProposalError::Unknown {
                    kind,
                    proposal: s.to_string(),
                    word: raw.to_string(),
                    hint: hint(&lw),
                })
            }
        }
    }
    if w.encr.is_empty() {
        return Err(invalid(
            "has no encryption algorithm (such as aes256gcm16 or aes128)",
        ));
    }
    let aead = w.encr.iter().filter(|e| e.is_aead()).count();
    if aead != 0 && aead != w.encr.len() {
        return Err(invalid("mixes AEAD ciphers (…gcm…, chacha20poly1305) with non-AEAD ones; write them as two proposals"));
    }
    if aead != 0 && !w.integ.is_empty() {
        return Err(invalid("pairs an AEAD cipher with an integrity algorithm; AEAD ciphers carry their own integrity, drop the sha…"));
    }
    if aead == 0 && w.integ.is_empty() {
        return Err(invalid(
            "has a non-AEAD cipher but no integrity algorithm (add e.g. sha256)",
        ));
    }
    Ok(w)
}

fn push_unique<T: PartialEq>(v: &mut Vec<T>, x: T) {
    if !v.contains(&x) {
        v.push(x);
    }
}
