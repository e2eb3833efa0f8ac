//! Keys: the peer's public key ([`PeerPublicKey`], from a verified certificate or a
//! SubjectPublicKeyInfo) and our own private key ([`LocalSigner`]).
//!
//! Private keys are accepted as PKCS#8 (RFC 5958) PEM or DER — what `openssl
//! genpkey` writes — and, for convenience, in the legacy forms strongSwan's `pki
//! --gen` and older openssl write: SEC1 `EC PRIVATE KEY` (RFC 5915, must contain the
//! public key) and PKCS#1 `RSA PRIVATE KEY` (RFC 8017 Appendix A.1.2). Supported
//! algorithms: ECDSA P-256 and P-384, RSA 2048–8192 bits, Ed25519.

use std::path::Path;

use ring::rand::SystemRandom;
use ring::signature::{self, EcdsaKeyPair, Ed25519KeyPair, KeyPair, RsaKeyPair};

use crate::der::{self, tag};
use crate::pem::{looks_like_pem, parse_pem};
use crate::PkiError;

/// OID contents: id-ecPublicKey (RFC 5480 §2.1.1).
pub(crate) const OID_EC_PUBLIC_KEY: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
/// OID contents: secp256r1 / prime256v1 (RFC 5480 §2.1.1.1).
pub(crate) const OID_P256: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
/// OID contents: secp384r1 (RFC 5480 §2.1.1.1).
pub(crate) const OID_P384: &[u8] = &[0x2b, 0x81, 0x04, 0x00, 0x22];
/// OID contents: rsaEncryption (RFC 8017 Appendix C).
pub(crate) const OID_RSA_ENCRYPTION: &[u8] =
    &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];
/// OID contents: id-Ed25519 (RFC 8410 §3).
pub(crate) const OID_ED25519: &[u8] = &[0x2b, 0x65, 0x70];

/// A peer's public key, ready to verify AUTH signatures.
#[derive(Clone, PartialEq, Eq)]
pub enum PeerPublicKey {
    /// ECDSA on NIST P-256; the uncompressed SEC1 point (65 bytes).
    EcdsaP256(Vec<u8>),
    /// ECDSA on NIST P-384; the uncompressed SEC1 point (97 bytes).
    EcdsaP384(Vec<u8>),
    /// RSA; the PKCS#1 `RSAPublicKey` DER and the modulus size in bits.
    Rsa {
        /// `RSAPublicKey ::= SEQUENCE { modulus, publicExponent }` DER.
        der: Vec<u8>,
        /// Modulus length in bits.
        bits: usize,
    },
    /// Ed25519 (RFC 8410); the 32-byte public key.
    Ed25519(Vec<u8>),
}

impl std::fmt::Debug for PeerPublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PeerPublicKey::Rsa { bits, .. } => write!(f, "PeerPublicKey(RSA {bits} bits)"),
            other => write!(f, "PeerPublicKey({})", other.kind()),
        }
    }
}

impl PeerPublicKey {
    /// A short name of the key type, for messages: "ECDSA P-256", "RSA", ...
    pub fn kind(&self) -> &'static str {
        match self {
            PeerPublicKey::EcdsaP256(_) => "ECDSA P-256",
            PeerPublicKey::EcdsaP384(_) => "ECDSA P-384",
            PeerPublicKey::Rsa { .. } => "RSA",
            PeerPublicKey::Ed25519(_) => "Ed25519",
        }
    }

    /// Parses a DER `SubjectPublicKeyInfo` (RFC 5280 §4.1.2.7).
    pub fn from_spki_der(spki: &[u8]) -> Result<Self, PkiError> {
        let bad =
            |why: &str| PkiError::UnsupportedPublicKey(format!("SubjectPublicKeyInfo: {why}"));
        let (inner, _) = der::expect(spki, tag::SEQUENCE).ok_or_else(|| bad("not a SEQUENCE"))?;
        let (alg, rest) =
            der::expect(inner, tag::SEQUENCE).ok_or_else(|| bad("no AlgorithmIdentifier"))?;
        let (bits, _) = der::expect(rest, tag::BIT_STRING).ok_or_else(|| bad("no BIT STRING"))?;
        let (oid, params) = der::expect(alg, tag::OID).ok_or_else(|| bad("no algorithm OID"))?;
        let key = match bits.split_first() {
            Some((0, key)) => key,
            _ => return Err(bad("BIT STRING with unused bits")),
        };
        Self::from_parts(oid, params, key)
    }

    /// Builds from the algorithm OID contents, the parameters TLV and the key bits.
    pub(crate) fn from_parts(oid: &[u8], params: &[u8], key: &[u8]) -> Result<Self, PkiError> {
        if oid == OID_EC_PUBLIC_KEY {
            let curve = der::expect(params, tag::OID).map(|(c, _)| c);
            let (kind, len) = match curve {
                Some(OID_P256) => ("P-256", 65),
                Some(OID_P384) => ("P-384", 97),
                Some(other) => {
                    return Err(PkiError::UnsupportedPublicKey(format!(
                        "EC curve {} (only P-256 and P-384)",
                        der::oid_to_string(other).unwrap_or_else(|| "?".into())
                    )))
                }
                None => {
                    return Err(PkiError::UnsupportedPublicKey(
                        "EC key without a named curve".into(),
                    ))
                }
            };
            if key.len() != len || key.first() != Some(&0x04) {
                return Err(PkiError::UnsupportedPublicKey(format!(
                    "{kind} point is not an uncompressed {len}-byte point"
                )));
            }
            Ok(if len == 65 {
                PeerPublicKey::EcdsaP256(key.to_vec())
            } else {
                PeerPublicKey::EcdsaP384(key.to_vec())
            })
        } else if oid == OID_RSA_ENCRYPTION {
            let bits = rsa_modulus_bits(key).ok_or_else(|| {
                PkiError::UnsupportedPublicKey("RSAPublicKey does not parse".into())
            })?;
            if !(2048..=8192).contains(&bits) {
                return Err(PkiError::UnsupportedPublicKey(format!(
                    "RSA key of {bits} bits (2048 to 8192 supported)"
                )));
            }
            Ok(PeerPublicKey::Rsa {
                der: key.to_vec(),
                bits,
            })
        } else if oid == OID_ED25519 {
            if key.len() != 32 {
                return Err(PkiError::UnsupportedPublicKey(
                    "Ed25519 key is not 32 bytes".into(),
                ));
            }
            Ok(PeerPublicKey::Ed25519(key.to_vec()))
        } else {
            Err(PkiError::UnsupportedPublicKey(format!(
                "algorithm {}",
                der::oid_to_string(oid).unwrap_or_else(|| "?".into())
            )))
        }
    }

    /// The raw key bytes as ring's `UnparsedPublicKey` wants them.
    pub(crate) fn ring_bytes(&self) -> &[u8] {
        match self {
            PeerPublicKey::EcdsaP256(k) | PeerPublicKey::EcdsaP384(k) => k,
            PeerPublicKey::Rsa { der, .. } => der,
            PeerPublicKey::Ed25519(k) => k,
        }
    }
}

/// Modulus size in bits of a PKCS#1 `RSAPublicKey`.
fn rsa_modulus_bits(der_bytes: &[u8]) -> Option<usize> {
    let (seq, _) = der::expect(der_bytes, tag::SEQUENCE)?;
    let (modulus, _) = der::expect(seq, tag::INTEGER)?;
    let significant = modulus
        .iter()
        .skip_while(|&&b| b == 0)
        .copied()
        .collect::<Vec<_>>();
    let first = significant.first()?;
    Some((significant.len() - 1) * 8 + (8 - first.leading_zeros() as usize))
}

/// Which padding an RSA [`LocalSigner`] uses in RFC 7427 signatures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RsaPadding {
    /// RSASSA-PKCS1-v1_5 (what strongSwan 5.9 sends unless `rsa_pss = yes`).
    #[default]
    Pkcs1,
    /// RSASSA-PSS with MGF1 of the same hash and salt length = hash length.
    Pss,
}

pub(crate) enum SignerKey {
    EcdsaP256 {
        der_sig: EcdsaKeyPair,
        fixed_sig: EcdsaKeyPair,
    },
    EcdsaP384 {
        der_sig: EcdsaKeyPair,
        fixed_sig: EcdsaKeyPair,
    },
    Rsa(RsaKeyPair),
    Ed25519(Ed25519KeyPair),
}

/// Our private key, able to produce IKEv2 AUTH payload data (see [`LocalSigner::sign`]).
pub struct LocalSigner {
    pub(crate) key: SignerKey,
    pub(crate) rsa_padding: RsaPadding,
    pub(crate) rng: SystemRandom,
}

impl std::fmt::Debug for LocalSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "LocalSigner({}, {:?})", self.kind(), self.rsa_padding)
    }
}

fn rejected(what: &str, e: ring::error::KeyRejected) -> PkiError {
    PkiError::BadPrivateKey(format!("{what} rejected: {e}"))
}

impl LocalSigner {
    /// Reads a private key file (PEM or DER; PKCS#8, SEC1 or PKCS#1).
    ///
    /// This is the only function of the type that does I/O. Errors name the file:
    /// `key file keys/x.pem: not a usable private key: ...`.
    pub fn load(path: impl AsRef<Path>) -> Result<Self, PkiError> {
        let path = path.as_ref();
        let data = std::fs::read(path).map_err(|source| PkiError::Io {
            what: "key",
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_bytes(&data).map_err(|e| e.in_file("key", path))
    }

    /// Parses a private key from PEM or DER bytes, whichever `data` is.
    pub fn from_bytes(data: &[u8]) -> Result<Self, PkiError> {
        if looks_like_pem(data) {
            Self::from_pem(data)
        } else {
            Self::from_der(data)
        }
    }

    /// Parses the first private key block of a PEM text: `PRIVATE KEY` (PKCS#8),
    /// `EC PRIVATE KEY` (SEC1) or `RSA PRIVATE KEY` (PKCS#1). Other blocks (such
    /// as `EC PARAMETERS`) are skipped.
    pub fn from_pem(data: &[u8]) -> Result<Self, PkiError> {
        for block in parse_pem(data)? {
            match block.label.as_str() {
                "PRIVATE KEY" => return Self::from_pkcs8_der(&block.der),
                "EC PRIVATE KEY" => return Self::from_sec1_der(&block.der),
                "RSA PRIVATE KEY" => return Self::from_pkcs1_der(&block.der),
                "ENCRYPTED PRIVATE KEY" => {
                    return Err(PkiError::BadPrivateKey(
                        "encrypted PKCS#8 keys are not supported; decrypt with \
                         `openssl pkcs8 -in enc.pem -out key.pem`"
                            .into(),
                    ))
                }
                _ => continue,
            }
        }
        Err(PkiError::BadPrivateKey(
            "no PEM block PRIVATE KEY, EC PRIVATE KEY or RSA PRIVATE KEY found".into(),
        ))
    }

    /// Parses a DER private key: PKCS#8 first, then SEC1, then PKCS#1.
    pub fn from_der(der_bytes: &[u8]) -> Result<Self, PkiError> {
        let pkcs8 = Self::from_pkcs8_der(der_bytes);
        if pkcs8.is_ok() || looks_like_pkcs8(der_bytes) {
            return pkcs8;
        }
        if let Ok(k) = Self::from_sec1_der(der_bytes) {
            return Ok(k);
        }
        if let Ok(k) = Self::from_pkcs1_der(der_bytes) {
            return Ok(k);
        }
        Err(PkiError::BadPrivateKey(
            "not a PKCS#8, SEC1 (EC PRIVATE KEY) or PKCS#1 (RSA PRIVATE KEY) DER key".into(),
        ))
    }

    /// Parses a PKCS#8 `PrivateKeyInfo` / `OneAsymmetricKey` (RFC 5958).
    pub fn from_pkcs8_der(pkcs8: &[u8]) -> Result<Self, PkiError> {
        let (oid, params) = pkcs8_algorithm(pkcs8).ok_or_else(|| {
            PkiError::BadPrivateKey("not a PKCS#8 key (PrivateKeyInfo does not parse)".into())
        })?;
        let rng = SystemRandom::new();
        let key = if oid == OID_EC_PUBLIC_KEY {
            let curve = der::expect(params, tag::OID).map(|(c, _)| c);
            match curve {
                Some(OID_P256) => SignerKey::EcdsaP256 {
                    der_sig: ecdsa_pkcs8(&signature::ECDSA_P256_SHA256_ASN1_SIGNING, pkcs8, &rng)?,
                    fixed_sig: ecdsa_pkcs8(
                        &signature::ECDSA_P256_SHA256_FIXED_SIGNING,
                        pkcs8,
                        &rng,
                    )?,
                },
                Some(OID_P384) => SignerKey::EcdsaP384 {
                    der_sig: ecdsa_pkcs8(&signature::ECDSA_P384_SHA384_ASN1_SIGNING, pkcs8, &rng)?,
                    fixed_sig: ecdsa_pkcs8(
                        &signature::ECDSA_P384_SHA384_FIXED_SIGNING,
                        pkcs8,
                        &rng,
                    )?,
                },
                _ => {
                    return Err(PkiError::BadPrivateKey(
                        "EC key on a curve other than P-256 or P-384".into(),
                    ))
                }
            }
        } else if oid == OID_RSA_ENCRYPTION {
            SignerKey::Rsa(RsaKeyPair::from_pkcs8(pkcs8).map_err(|e| rejected("RSA key", e))?)
        } else if oid == OID_ED25519 {
            SignerKey::Ed25519(
                Ed25519KeyPair::from_pkcs8_maybe_unchecked(pkcs8)
                    .map_err(|e| rejected("Ed25519 key", e))?,
            )
        } else {
            return Err(PkiError::BadPrivateKey(format!(
                "PKCS#8 key of algorithm {} is not supported (ECDSA P-256/P-384, RSA, Ed25519 are)",
                der::oid_to_string(oid).unwrap_or_else(|| "?".into())
            )));
        };
        Ok(Self::new(key))
    }

    /// Parses a SEC1 `ECPrivateKey` (RFC 5915 §3); it must name its curve and
    /// contain the public key, as `openssl ec` and strongSwan's `pki --gen` write.
    pub fn from_sec1_der(sec1: &[u8]) -> Result<Self, PkiError> {
        let bad = |why: &str| PkiError::BadPrivateKey(format!("SEC1 EC PRIVATE KEY: {why}"));
        let (seq, _) = der::expect(sec1, tag::SEQUENCE).ok_or_else(|| bad("not a SEQUENCE"))?;
        let (version, rest) = der::expect(seq, tag::INTEGER).ok_or_else(|| bad("no version"))?;
        if version != [1] {
            return Err(bad("version is not 1"));
        }
        let (private, mut rest) =
            der::expect(rest, tag::OCTET_STRING).ok_or_else(|| bad("no privateKey"))?;
        let (mut curve, mut public) = (None, None);
        while let Some((t, contents, r)) = der::read_tlv(rest) {
            match t {
                0xa0 => curve = der::expect(contents, tag::OID).map(|(c, _)| c),
                0xa1 => {
                    public = der::expect(contents, tag::BIT_STRING).and_then(|(b, _)| match b {
                        [0, point @ ..] => Some(point),
                        _ => None,
                    })
                }
                _ => {}
            }
            rest = r;
        }
        let public = public.ok_or_else(|| {
            bad("no public key inside; convert with `openssl pkcs8 -topk8 -nocrypt`")
        })?;
        let rng = SystemRandom::new();
        let pair = |alg| {
            EcdsaKeyPair::from_private_key_and_public_key(alg, private, public, &rng)
                .map_err(|e| rejected("SEC1 EC key", e))
        };
        let key = match curve {
            Some(OID_P256) => SignerKey::EcdsaP256 {
                der_sig: pair(&signature::ECDSA_P256_SHA256_ASN1_SIGNING)?,
                fixed_sig: pair(&signature::ECDSA_P256_SHA256_FIXED_SIGNING)?,
            },
            Some(OID_P384) => SignerKey::EcdsaP384 {
                der_sig: pair(&signature::ECDSA_P384_SHA384_ASN1_SIGNING)?,
                fixed_sig: pair(&signature::ECDSA_P384_SHA384_FIXED_SIGNING)?,
            },
            Some(_) => return Err(bad("curve other than P-256 or P-384")),
            None => return Err(bad("no named curve")),
        };
        Ok(Self::new(key))
    }

    /// Parses a PKCS#1 `RSAPrivateKey` (RFC 8017 Appendix A.1.2).
    pub fn from_pkcs1_der(pkcs1: &[u8]) -> Result<Self, PkiError> {
        let pair = RsaKeyPair::from_der(pkcs1).map_err(|e| rejected("PKCS#1 RSA key", e))?;
        Ok(Self::new(SignerKey::Rsa(pair)))
    }

    fn new(key: SignerKey) -> Self {
        LocalSigner {
            key,
            rsa_padding: RsaPadding::default(),
            rng: SystemRandom::new(),
        }
    }

    /// Chooses the RSA padding for RFC 7427 signatures (no effect on other keys).
    pub fn with_rsa_padding(mut self, padding: RsaPadding) -> Self {
        self.rsa_padding = padding;
        self
    }

    /// A short name of the key type: "ECDSA P-256", "ECDSA P-384", "RSA", "Ed25519".
    pub fn kind(&self) -> &'static str {
        match &self.key {
            SignerKey::EcdsaP256 { .. } => "ECDSA P-256",
            SignerKey::EcdsaP384 { .. } => "ECDSA P-384",
            SignerKey::Rsa(_) => "RSA",
            SignerKey::Ed25519(_) => "Ed25519",
        }
    }

    /// Whether `cert` carries this key's public key (check at start-up that the
    /// configured key and certificate belong together).
    pub fn matches_certificate(&self, cert: &crate::Certificate) -> bool {
        cert.public_key().is_ok_and(|k| k == self.public_key())
    }

    /// The matching public key (to compare with our certificate, or for tests).
    pub fn public_key(&self) -> PeerPublicKey {
        match &self.key {
            SignerKey::EcdsaP256 { der_sig, .. } => {
                PeerPublicKey::EcdsaP256(der_sig.public_key().as_ref().to_vec())
            }
            SignerKey::EcdsaP384 { der_sig, .. } => {
                PeerPublicKey::EcdsaP384(der_sig.public_key().as_ref().to_vec())
            }
            SignerKey::Rsa(pair) => PeerPublicKey::Rsa {
                der: pair.public().as_ref().to_vec(),
                bits: pair.public().modulus_len() * 8,
            },
            SignerKey::Ed25519(pair) => PeerPublicKey::Ed25519(pair.public_key().as_ref().to_vec()),
        }
    }
}

fn ecdsa_pkcs8(
    alg: &'static signature::EcdsaSigningAlgorithm,
    pkcs8: &[u8],
    rng: &SystemRandom,
) -> Result<EcdsaKeyPair, PkiError> {
    EcdsaKeyPair::from_pkcs8(alg, pkcs8, rng).map_err(|e| rejected("PKCS#8 EC key", e))
}

/// `(algorithm OID contents, parameters TLVs)` of a PKCS#8 PrivateKeyInfo.
fn pkcs8_algorithm(pkcs8: &[u8]) -> Option<(&[u8], &[u8])> {
    let (seq, _) = der::expect(pkcs8, tag::SEQUENCE)?;
    let (_version, rest) = der::expect(seq, tag::INTEGER)?;
    let (alg, rest) = der::expect(rest, tag::SEQUENCE)?;
    der::expect(rest, tag::OCTET_STRING)?;
    der::expect(alg, tag::OID)
}

fn looks_like_pkcs8(data: &[u8]) -> bool {
    pkcs8_algorithm(data).is_some()
}
