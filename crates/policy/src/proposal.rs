//! IKE and ESP proposals written as strongSwan-style strings
//! (`aes256gcm16-prfsha384-ecp384`, `aes128-sha256-x25519`, `aes256gcm16-esn`),
//! parsed into structured transforms with their IANA transform IDs.
//!
//! A proposal string is a `-`-separated list of algorithm keywords; each keyword is
//! one transform (RFC 7296 §3.3.2). The checks follow RFC 7296 §3.3 and, mostly,
//! strongSwan: an AEAD cipher carries its own integrity (so no integrity algorithm
//! next to it, and AEAD and non-AEAD ciphers do not mix in one proposal — strongSwan
//! silently splits such a string into two proposals, we ask for two strings);
//! a non-AEAD cipher needs an integrity algorithm; an IKE proposal needs a PRF
//! (taken from the integrity algorithm when not written, as strongSwan does) and a
//! key exchange method; an ESP proposal has no PRF, its optional DH group is the
//! PFS group, and it offers "no ESN" unless `esn` is written.

//= https://www.rfc-editor.org/rfc/rfc7296#section-3.3.3
//#    Protocol    Mandatory Types          Optional Types
//#      IKE         ENCR, PRF, INTEG*, D-H
//#      ESP         ENCR, ESN              INTEG, D-H

use std::fmt;

/// An encryption transform (transform type 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Encr {
    /// AES-CBC (ENCR_AES_CBC, 12) with a 128, 192 or 256 bit key.
    AesCbc {
        /// Key length in bits.
        key_bits: u16,
    },
    /// AES-GCM (ENCR_AES_GCM_8/12/16 = 18/19/20) — an AEAD cipher.
    AesGcm {
        /// Key length in bits.
        key_bits: u16,
        /// ICV length in bytes: 8, 12 or 16.
        icv_bytes: u8,
    },
    /// ChaCha20-Poly1305 (ENCR_CHACHA20_POLY1305, 28, RFC 7634) — AEAD, 256-bit key.
    ChaCha20Poly1305,
}

impl Encr {
    /// The IANA transform ID (IKEv2 Transform Type 1).
    pub fn transform_id(&self) -> u16 {
        match self {
            Encr::AesCbc { .. } => 12,
            Encr::AesGcm { icv_bytes: 8, .. } => 18,
            Encr::AesGcm { icv_bytes: 12, .. } => 19,
            Encr::AesGcm { .. } => 20,
            Encr::ChaCha20Poly1305 => 28,
        }
    }

    /// Key length in bits (the Key Length attribute for AES; 256 for ChaCha20).
    pub fn key_bits(&self) -> u16 {
        match self {
            Encr::AesCbc { key_bits } | Encr::AesGcm { key_bits, .. } => *key_bits,
            Encr::ChaCha20Poly1305 => 256,
        }
    }

    /// True for combined-mode (AEAD) ciphers.
    pub fn is_aead(&self) -> bool {
        !matches!(self, Encr::AesCbc { .. })
    }
}

/// An integrity transform (transform type 3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Integ {
    /// AUTH_HMAC_SHA1_96 (2). Weak; accepted with a warning.
    HmacSha1_96,
    /// AUTH_HMAC_SHA2_256_128 (12).
    HmacSha256_128,
    /// AUTH_HMAC_SHA2_384_192 (13).
    HmacSha384_192,
    /// AUTH_HMAC_SHA2_512_256 (14).
    HmacSha512_256,
}

impl Integ {
    /// The IANA transform ID (IKEv2 Transform Type 3).
    pub fn transform_id(&self) -> u16 {
        match self {
            Integ::HmacSha1_96 => 2,
            Integ::HmacSha256_128 => 12,
            Integ::HmacSha384_192 => 13,
            Integ::HmacSha512_256 => 14,
        }
    }

    fn as_prf(&self) -> Prf {
        match self {
            Integ::HmacSha1_96 => Prf::HmacSha1,
            Integ::HmacSha256_128 => Prf::HmacSha256,
            Integ::HmacSha384_192 => Prf::HmacSha384,
            Integ::HmacSha512_256 => Prf::HmacSha512,
        }
    }
}

/// A pseudorandom function (transform type 2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Prf {
    /// PRF_HMAC_SHA1 (2).
    HmacSha1,
    /// PRF_HMAC_SHA2_256 (5).
    HmacSha256,
    /// PRF_HMAC_SHA2_384 (6).
    HmacSha384,
    /// PRF_HMAC_SHA2_512 (7).
    HmacSha512,
}

impl Prf {
    /// The IANA transform ID (IKEv2 Transform Type 2).
    pub fn transform_id(&self) -> u16 {
        match self {
            Prf::HmacSha1 => 2,
            Prf::HmacSha256 => 5,
            Prf::HmacSha384 => 6,
            Prf::HmacSha512 => 7,
        }
    }
}

/// A key exchange method / Diffie-Hellman group (transform type 4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DhGroup {
    /// 1024-bit MODP (2). Weak; accepted with a warning.
    Modp1024,
    /// 2048-bit MODP (14).
    Modp2048,
    /// 3072-bit MODP (15).
    Modp3072,
    /// 4096-bit MODP (16).
    Modp4096,
    /// NIST P-256 (19).
    Ecp256,
    /// NIST P-384 (20).
    Ecp384,
    /// NIST P-521 (21).
    Ecp521,
    /// Curve25519 (31).
    X25519,
    /// Curve448 (32).
    X448,
}

impl DhGroup {
    /// The IANA transform ID (IKEv2 Transform Type 4).
    pub fn transform_id(&self) -> u16 {
        match self {
            DhGroup::Modp1024 => 2,
            DhGroup::Modp2048 => 14,
            DhGroup::Modp3072 => 15,
            DhGroup::Modp4096 => 16,
            DhGroup::Ecp256 => 19,
            DhGroup::Ecp384 => 20,
            DhGroup::Ecp521 => 21,
            DhGroup::X25519 => 31,
            DhGroup::X448 => 32,
        }
    }
}

/// Extended sequence numbers (transform type 5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Esn {
    /// 32-bit sequence numbers (0).
    No,
    /// 64-bit extended sequence numbers (1).
    Yes,
}

/// One IKE proposal: every list is non-empty after parsing.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct IkeProposal {
    /// Ciphers, all AEAD or all non-AEAD.
    pub encryption: Vec<Encr>,
    /// Integrity algorithms (empty with AEAD ciphers).
    pub integrity: Vec<Integ>,
    /// PRFs (written, or derived from the integrity algorithms).
    pub prf: Vec<Prf>,
    /// Key exchange methods.
    pub dh: Vec<DhGroup>,
}

/// One ESP proposal.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct EspProposal {
    /// Ciphers, all AEAD or all non-AEAD.
    pub encryption: Vec<Encr>,
    /// Integrity algorithms (empty with AEAD ciphers).
    pub integrity: Vec<Integ>,
    /// PFS groups for CREATE_CHILD_SA (empty: no PFS).
    pub pfs: Vec<DhGroup>,
    /// ESN choices offered; `[Esn::No]` unless the string says `esn`.
    pub esn: Vec<Esn>,
}

/// Why a proposal string was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProposalError {
    /// A keyword that is not an algorithm we implement.
    #[error("unknown algorithm `{word}` in {kind} proposal `{proposal}`{hint}")]
    Unknown {
        /// "IKE" or "ESP".
        kind: &'static str,
        /// The whole proposal string.
        proposal: String,
        /// The unknown keyword.
        word: String,
        /// "; did you mean …" or the list of known keywords.
        hint: String,
    },
    /// The keywords do not make a usable proposal.
    #[error("{kind} proposal `{proposal}` {problem}")]
    Invalid {
        /// "IKE" or "ESP".
        kind: &'static str,
        /// The whole proposal string.
        proposal: String,
        /// What is wrong, as the end of a sentence.
        problem: String,
    },
}

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

struct Words {
    encr: Vec<Encr>,
    integ: Vec<Integ>,
    prf: Vec<Prf>,
    dh: Vec<DhGroup>,
    esn: Vec<Esn>,
    warnings: Vec<String>,
}

fn split(kind: &'static str, s: &str) -> Result<Words, ProposalError> {
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

/// A parsed proposal plus warnings about weak algorithms.
pub type WithWarnings<T> = (T, Vec<String>);

/// Parses an IKE proposal such as `aes256gcm16-prfsha384-ecp384`.
pub fn parse_ike(s: &str) -> Result<WithWarnings<IkeProposal>, ProposalError> {
    let mut w = split("IKE", s)?;
    let invalid = |problem: &str| ProposalError::Invalid {
        kind: "IKE",
        proposal: s.to_string(),
        problem: problem.to_string(),
    };
    if !w.esn.is_empty() {
        return Err(invalid(
            "names esn/noesn, which only applies to ESP proposals",
        ));
    }
    if w.prf.is_empty() {
        // strongSwan: without an explicit PRF the integrity algorithms map to PRFs.
        w.prf = w.integ.iter().map(Integ::as_prf).collect();
    }
    if w.prf.is_empty() {
        return Err(invalid(
            "uses an AEAD cipher but names no PRF (add e.g. prfsha256 or prfsha384)",
        ));
    }
    if w.dh.is_empty() {
        return Err(invalid(
            "has no key exchange method (add e.g. x25519 or ecp384)",
        ));
    }
    Ok((
        IkeProposal {
            encryption: w.encr,
            integrity: w.integ,
            prf: w.prf,
            dh: w.dh,
        },
        w.warnings,
    ))
}

/// Parses an ESP proposal such as `aes256gcm16-esn` or `aes256-sha256-ecp384`.
pub fn parse_esp(s: &str) -> Result<WithWarnings<EspProposal>, ProposalError> {
    let w = split("ESP", s)?;
    if !w.prf.is_empty() {
        return Err(ProposalError::Invalid {
            kind: "ESP",
            proposal: s.to_string(),
            problem: "names a PRF (prf…), which only applies to IKE proposals".into(),
        });
    }
    let esn = if w.esn.is_empty() {
        vec![Esn::No]
    } else {
        w.esn
    };
    Ok((
        EspProposal {
            encryption: w.encr,
            integrity: w.integ,
            pfs: w.dh,
            esn,
        },
        w.warnings,
    ))
}

impl fmt::Display for Encr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Encr::AesCbc { key_bits } => write!(f, "aes{key_bits}"),
            Encr::AesGcm {
                key_bits,
                icv_bytes,
            } => write!(f, "aes{key_bits}gcm{icv_bytes}"),
            Encr::ChaCha20Poly1305 => f.write_str("chacha20poly1305"),
        }
    }
}

impl fmt::Display for Integ {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Integ::HmacSha1_96 => "sha1",
            Integ::HmacSha256_128 => "sha256",
            Integ::HmacSha384_192 => "sha384",
            Integ::HmacSha512_256 => "sha512",
        })
    }
}

impl fmt::Display for Prf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Prf::HmacSha1 => "prfsha1",
            Prf::HmacSha256 => "prfsha256",
            Prf::HmacSha384 => "prfsha384",
            Prf::HmacSha512 => "prfsha512",
        })
    }
}

impl fmt::Display for DhGroup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DhGroup::Modp1024 => "modp1024",
            DhGroup::Modp2048 => "modp2048",
            DhGroup::Modp3072 => "modp3072",
            DhGroup::Modp4096 => "modp4096",
            DhGroup::Ecp256 => "ecp256",
            DhGroup::Ecp384 => "ecp384",
            DhGroup::Ecp521 => "ecp521",
            DhGroup::X25519 => "x25519",
            DhGroup::X448 => "x448",
        })
    }
}

fn join(f: &mut fmt::Formatter<'_>, words: &[String]) -> fmt::Result {
    f.write_str(&words.join("-"))
}

fn words<T: fmt::Display>(v: &[T]) -> impl Iterator<Item = String> + '_ {
    v.iter().map(|x| x.to_string())
}

impl fmt::Display for IkeProposal {
    /// The strongSwan string, PRF always written out: parsing it gives back the
    /// same proposal.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let w: Vec<String> = words(&self.encryption)
            .chain(words(&self.integrity))
            .chain(words(&self.prf))
            .chain(words(&self.dh))
            .collect();
        join(f, &w)
    }
}

impl fmt::Display for EspProposal {
    /// The strongSwan string; `esn`/`noesn` only when not the default "no ESN".
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut w: Vec<String> = words(&self.encryption)
            .chain(words(&self.integrity))
            .chain(words(&self.pfs))
            .collect();
        if self.esn != [Esn::No] {
            w.extend(self.esn.iter().map(|e| match e {
                Esn::Yes => "esn".to_string(),
                Esn::No => "noesn".to_string(),
            }));
        }
        join(f, &w)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Known answer: the proposals of the strongSwan 5.9.8 captures in
    /// /work/shared/captures (swanctl.conf strings) and the transforms charon
    /// negotiated according to the README table of that folder.
    #[test]
    fn strongswan_capture_proposals() {
        // gcm128-x25519: "aes128-sha256-x25519" →
        // AES_CBC_128 / HMAC_SHA2_256_128 / PRF_HMAC_SHA2_256 / CURVE_25519
        let (p, w) = parse_ike("aes128-sha256-x25519").unwrap();
        assert!(w.is_empty());
        assert_eq!(p.encryption, vec![Encr::AesCbc { key_bits: 128 }]);
        assert_eq!(p.encryption[0].transform_id(), 12);
        assert_eq!(p.integrity[0].transform_id(), 12);
        assert_eq!(p.prf, vec![Prf::HmacSha256]);
        assert_eq!(p.prf[0].transform_id(), 5);
        assert_eq!(p.dh[0].transform_id(), 31);
        // ESP "aes128gcm16" → AES_GCM_16 128, no ESN.
        let (e, _) = parse_esp("aes128gcm16").unwrap();
        assert_eq!(
            e.encryption,
            vec![Encr::AesGcm {
                key_bits: 128,
                icv_bytes: 16
            }]
        );
        assert_eq!(e.encryption[0].transform_id(), 20);
        assert_eq!(e.esn, vec![Esn::No]);
        // gcm256-p384: "aes256gcm16-prfsha384-ecp384" →
        // AES_GCM_16_256 / PRF_HMAC_SHA2_384 / ECP_384
        let (p, _) = parse_ike("aes256gcm16-prfsha384-ecp384").unwrap();
        assert_eq!(p.encryption[0].key_bits(), 256);
        assert!(p.integrity.is_empty());
        assert_eq!(p.prf[0].transform_id(), 6);
        assert_eq!(p.dh[0].transform_id(), 20);
        // ESP "aes256-sha256" → AES_CBC_256 / HMAC_SHA2_256_128
        let (e, _) = parse_esp("aes256-sha256").unwrap();
        assert_eq!(e.encryption, vec![Encr::AesCbc { key_bits: 256 }]);
        assert_eq!(e.integrity, vec![Integ::HmacSha256_128]);
    }

    #[test]
    fn display_round_trips() {
        for s in [
            "aes256gcm16-prfsha384-ecp384",
            "aes128-sha256-prfsha256-x25519",
            "aes128-aes256-sha256-sha512-prfsha256-modp2048-ecp256",
            "chacha20poly1305-prfsha512-x448",
        ] {
            let (p, _) = parse_ike(s).unwrap();
            assert_eq!(p.to_string(), s);
        }
        // The derived PRF is written out.
        assert_eq!(
            parse_ike("aes128-sha256-x25519").unwrap().0.to_string(),
            "aes128-sha256-prfsha256-x25519"
        );
        for s in [
            "aes128gcm16",
            "aes256gcm16-esn",
            "aes256-sha256-ecp384",
            "aes256gcm12-esn-noesn",
        ] {
            let (p, _) = parse_esp(s).unwrap();
            assert_eq!(p.to_string(), s);
        }
    }

    #[test]
    fn esp_variants() {
        let (e, _) = parse_esp("aes256gcm16-esn").unwrap();
        assert_eq!(e.esn, vec![Esn::Yes]);
        let (e, _) = parse_esp("chacha20poly1305").unwrap();
        assert_eq!(e.encryption[0].transform_id(), 28);
        let (e, _) = parse_esp("aes256-sha384-ecp384").unwrap();
        assert_eq!(e.pfs, vec![DhGroup::Ecp384]);
    }

    #[test]
    fn rejections_explain() {
        let e = parse_ike("aes257-sha256-x25519").unwrap_err().to_string();
        assert_eq!(e, "unknown algorithm `aes257` in IKE proposal `aes257-sha256-x25519`; did you mean `aes256`?");
        let e = parse_ike("3des-sha256-x25519").unwrap_err().to_string();
        assert!(e.ends_with("(it is weak and not supported)"), "{e}");
        let e = parse_ike("aes256gcm16-ecp384").unwrap_err().to_string();
        assert!(e.contains("names no PRF"), "{e}");
        let e = parse_ike("aes256-sha256").unwrap_err().to_string();
        assert!(e.contains("no key exchange method"), "{e}");
        let e = parse_esp("aes256gcm16-sha256").unwrap_err().to_string();
        assert!(e.contains("AEAD cipher with an integrity"), "{e}");
        let e = parse_esp("aes256").unwrap_err().to_string();
        assert!(e.contains("no integrity algorithm"), "{e}");
        let e = parse_esp("aes256-aes128gcm16-sha256")
            .unwrap_err()
            .to_string();
        assert!(e.contains("mixes AEAD"), "{e}");
        assert!(parse_esp("aes128-sha256-prfsha256").is_err());
        assert!(parse_ike("aes128-sha256-x25519-esn").is_err());
        assert!(parse_ike("").is_err());
        let (_, w) = parse_ike("aes128-sha1-modp1024").unwrap();
        assert_eq!(w.len(), 2);
    }
}
