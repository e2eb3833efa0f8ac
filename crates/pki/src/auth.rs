//! IKEv2 signature authentication: the AUTH payload's Authentication Data for
//! certificate-based methods, and the SIGNATURE_HASH_ALGORITHMS notify.
//!
//! Implemented auth methods (RFC 7296 §3.8 and IANA "IKEv2 Authentication Method"):
//!
//! | method | name | sign | verify |
//! | --- | --- | --- | --- |
//! | 1 | RSA Digital Signature (PKCS#1 v1.5, SHA-1) | no (SHA-1, ring cannot) | yes |
//! | 9 | ECDSA with SHA-256 on P-256 (RFC 4754, r‖s) | yes | yes |
//! | 10 | ECDSA with SHA-384 on P-384 (RFC 4754, r‖s) | yes | yes |
//! | 14 | Digital Signature (RFC 7427) | yes | yes |
//!
//! For method 14 the signature algorithms are ECDSA (DER-encoded `ECDSA-Sig-Value`)
//! with SHA-256/384, RSASSA-PKCS1-v1_5 and RSASSA-PSS with SHA-256/384/512, and
//! Ed25519 (RFC 8420). SHA-1 is refused in method 14 (RFC 8247 deprecates SHA-1
//! signatures in IKEv2).
//!
//! The IKE engine computes the octets to be signed itself (RFC 7296 §2.15:
//! `RealMessage | Nonce | prf(SK_p, IDx')`) and hands them in.

use ring::signature::{self, UnparsedPublicKey, VerificationAlgorithm};

use crate::der::{self, tag};
use crate::key::{LocalSigner, PeerPublicKey, RsaPadding, SignerKey};
use crate::PkiError;

/// IKEv2 Authentication Method numbers (IANA registry, RFC 7296 §3.8).
pub mod auth_method {
    /// RSA Digital Signature: RSASSA-PKCS1-v1_5 with SHA-1 (RFC 7296 §3.8).
    pub const RSA_DIGITAL_SIGNATURE: u8 = 1;
    /// Shared Key Message Integrity Code (not handled by this crate).
    pub const SHARED_KEY_MIC: u8 = 2;
    /// ECDSA with SHA-256 on the P-256 curve (RFC 4754).
    pub const ECDSA_SHA256_P256: u8 = 9;
    /// ECDSA with SHA-384 on the P-384 curve (RFC 4754).
    pub const ECDSA_SHA384_P384: u8 = 10;
    /// ECDSA with SHA-512 on the P-521 curve (RFC 4754; not supported).
    pub const ECDSA_SHA512_P521: u8 = 11;
    /// Digital Signature (RFC 7427).
    pub const DIGITAL_SIGNATURE: u8 = 14;
}

/// IKEv2 Hash Algorithm identifiers for SIGNATURE_HASH_ALGORITHMS (RFC 7427 §7,
/// RFC 8420 §2).
pub mod hash_alg {
    /// SHA-1 (listed by some peers; never used by us).
    pub const SHA1: u16 = 1;
    /// SHA2-256.
    pub const SHA2_256: u16 = 2;
    /// SHA2-384.
    pub const SHA2_384: u16 = 3;
    /// SHA2-512.
    pub const SHA2_512: u16 = 4;
    /// "Identity": no separate hash, for Ed25519/Ed448 (RFC 8420).
    pub const IDENTITY: u16 = 5;
}

/// Notify Message Type of SIGNATURE_HASH_ALGORITHMS (RFC 7427 §4, IANA).
pub const NOTIFY_SIGNATURE_HASH_ALGORITHMS: u16 = 16431;

/// The hash algorithms we can verify in method 14: what to put in our own
/// SIGNATURE_HASH_ALGORITHMS notify.
pub const SUPPORTED_HASH_ALGORITHMS: &[u16] = &[
    hash_alg::SHA2_256,
    hash_alg::SHA2_384,
    hash_alg::SHA2_512,
    hash_alg::IDENTITY,
];

//= https://www.rfc-editor.org/rfc/rfc7427#section-4
//# The Notification Data field contains the list of 16-bit hash
//# algorithm identifiers from the Hash Algorithm Identifiers of IANA's
//# "Internet Key Exchange Version 2 (IKEv2) Parameters" registry.
//# There is no padding between the hash algorithm identifiers.
/// Encodes the Notification Data of SIGNATURE_HASH_ALGORITHMS.
pub fn encode_hash_algorithms(algs: &[u16]) -> Vec<u8> {
    algs.iter().flat_map(|a| a.to_be_bytes()).collect()
}

/// Decodes the Notification Data of SIGNATURE_HASH_ALGORITHMS. Unknown identifiers
/// are kept (the caller intersects with what it supports); an odd length or an
/// empty list is an error.
pub fn decode_hash_algorithms(data: &[u8]) -> Result<Vec<u16>, PkiError> {
    if data.is_empty() {
        return Err(PkiError::MalformedHashList("empty list"));
    }
    if data.len() % 2 != 0 {
        return Err(PkiError::MalformedHashList("odd length"));
    }
    Ok(data
        .chunks_exact(2)
        .map(|c| u16::from_be_bytes([c[0], c[1]]))
        .collect())
}

/// A signature algorithm usable inside RFC 7427 Digital Signature AUTH data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SignatureScheme {
    /// ecdsa-with-SHA256 (RFC 5758 §3.2), DER `ECDSA-Sig-Value`.
    EcdsaSha256,
    /// ecdsa-with-SHA384.
    EcdsaSha384,
    /// ecdsa-with-SHA512 (parsed, but ring cannot verify it).
    EcdsaSha512,
    /// sha256WithRSAEncryption (RSASSA-PKCS1-v1_5).
    RsaPkcs1Sha256,
    /// sha384WithRSAEncryption.
    RsaPkcs1Sha384,
    /// sha512WithRSAEncryption.
    RsaPkcs1Sha512,
    /// RSASSA-PSS, SHA-256, MGF1-SHA-256, salt 32.
    RsaPssSha256,
    /// RSASSA-PSS, SHA-384, MGF1-SHA-384, salt 48.
    RsaPssSha384,
    /// RSASSA-PSS, SHA-512, MGF1-SHA-512, salt 64.
    RsaPssSha512,
    /// Ed25519 (RFC 8420, RFC 8410).
    Ed25519,
}

const OID_ECDSA_SHA256: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02];
const OID_ECDSA_SHA384: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x03];
const OID_ECDSA_SHA512: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x04];
const OID_RSA_SHA1: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x05];
const OID_RSA_SHA256: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0b];
const OID_RSA_SHA384: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0c];
const OID_RSA_SHA512: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0d];
const OID_RSASSA_PSS: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0a];
const OID_MGF1: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x08];
const OID_SHA256: &[u8] = &[0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01];
const OID_SHA384: &[u8] = &[0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x02];
const OID_SHA512: &[u8] = &[0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x03];
const OID_ECDSA_SHA1: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x01];
const OID_ED25519: &[u8] = crate::key::OID_ED25519;
const NULL: &[u8] = &[tag::NULL, 0x00];

impl SignatureScheme {
    /// The IKEv2 hash algorithm identifier this scheme uses (RFC 7427 §4).
    pub fn hash_alg(self) -> u16 {
        use SignatureScheme::*;
        match self {
            EcdsaSha256 | RsaPkcs1Sha256 | RsaPssSha256 => hash_alg::SHA2_256,
            EcdsaSha384 | RsaPkcs1Sha384 | RsaPssSha384 => hash_alg::SHA2_384,
            EcdsaSha512 | RsaPkcs1Sha512 | RsaPssSha512 => hash_alg::SHA2_512,
            Ed25519 => hash_alg::IDENTITY,
        }
    }

    /// A readable name, e.g. "ecdsa-with-SHA256".
    pub fn name(self) -> &'static str {
        use SignatureScheme::*;
        match self {
            EcdsaSha256 => "ecdsa-with-SHA256",
            EcdsaSha384 => "ecdsa-with-SHA384",
            EcdsaSha512 => "ecdsa-with-SHA512",
            RsaPkcs1Sha256 => "sha256WithRSAEncryption",
            RsaPkcs1Sha384 => "sha384WithRSAEncryption",
            RsaPkcs1Sha512 => "sha512WithRSAEncryption",
            RsaPssSha256 => "RSASSA-PSS-SHA256",
            RsaPssSha384 => "RSASSA-PSS-SHA384",
            RsaPssSha512 => "RSASSA-PSS-SHA512",
            Ed25519 => "Ed25519",
        }
    }

    //= https://www.rfc-editor.org/rfc/rfc7427#appendix-A
    //# This appendix lists the ASN.1 objects for commonly used signature
    //# algorithms.
    /// The DER AlgorithmIdentifier we send for this scheme: the encodings of
    /// RFC 7427 Appendix A (ECDSA without parameters per RFC 5758 §3.2, RSA
    /// PKCS#1 v1.5 with NULL parameters, RSASSA-PSS with explicit parameters).
    pub fn algorithm_identifier(self) -> Vec<u8> {
        use SignatureScheme::*;
        let simple = |oid: &[u8], params: &[u8]| {
            der::constructed(tag::SEQUENCE, &[&der::tlv(tag::OID, oid), params])
        };
        match self {
            EcdsaSha256 => simple(OID_ECDSA_SHA256, &[]),
            EcdsaSha384 => simple(OID_ECDSA_SHA384, &[]),
            EcdsaSha512 => simple(OID_ECDSA_SHA512, &[]),
            RsaPkcs1Sha256 => simple(OID_RSA_SHA256, NULL),
            RsaPkcs1Sha384 => simple(OID_RSA_SHA384, NULL),
            RsaPkcs1Sha512 => simple(OID_RSA_SHA512, NULL),
            RsaPssSha256 => pss_algorithm_identifier(OID_SHA256, 32),
            RsaPssSha384 => pss_algorithm_identifier(OID_SHA384, 48),
            RsaPssSha512 => pss_algorithm_identifier(OID_SHA512, 64),
            Ed25519 => simple(OID_ED25519, &[]),
        }
    }

    /// Parses a DER AlgorithmIdentifier from RFC 7427 AUTH data. Accepts absent or
    /// NULL parameters for ECDSA and PKCS#1 v1.5, and RSASSA-PSS only when the MGF1
    /// hash equals the message hash and the salt is as long as the hash (what ring
    /// implements, and what strongSwan and RFC 7427 Appendix A use).
    pub fn from_algorithm_identifier(alg_id: &[u8]) -> Result<Self, PkiError> {
        use SignatureScheme::*;
        let malformed = || PkiError::MalformedAuth("AlgorithmIdentifier does not parse");
        let (seq, trailing) = der::expect(alg_id, tag::SEQUENCE).ok_or_else(malformed)?;
        if !trailing.is_empty() {
            return Err(malformed());
        }
        let (oid, params) = der::expect(seq, tag::OID).ok_or_else(malformed)?;
        let absent_or_null = params.is_empty() || params == NULL;
        let scheme = match oid {
            OID_ECDSA_SHA256 => EcdsaSha256,
            OID_ECDSA_SHA384 => EcdsaSha384,
            OID_ECDSA_SHA512 => EcdsaSha512,
            OID_RSA_SHA256 => RsaPkcs1Sha256,
            OID_RSA_SHA384 => RsaPkcs1Sha384,
            OID_RSA_SHA512 => RsaPkcs1Sha512,
            OID_ED25519 if params.is_empty() => return Ok(Ed25519),
            OID_RSASSA_PSS => return parse_pss_params(params),
            OID_RSA_SHA1 | OID_ECDSA_SHA1 => {
                return Err(PkiError::UnsupportedSignatureAlgorithm(
                    "SHA-1 signatures are not accepted (RFC 8247)".into(),
                ))
            }
            other => {
                return Err(PkiError::UnsupportedSignatureAlgorithm(format!(
                    "algorithm {}",
                    der::oid_to_string(other).unwrap_or_else(|| "?".into())
                )))
            }
        };
        if !absent_or_null {
            return Err(PkiError::MalformedAuth(
                "unexpected parameters in AlgorithmIdentifier",
            ));
        }
        Ok(scheme)
    }
}

fn hash_alg_id(oid: &[u8]) -> Vec<u8> {
    der::constructed(tag::SEQUENCE, &[&der::tlv(tag::OID, oid), NULL])
}

/// RSASSA-PSS-params (RFC 8017 Appendix A.2.3), as in RFC 7427 Appendix A.4.
fn pss_algorithm_identifier(hash_oid: &[u8], salt: u8) -> Vec<u8> {
    let hash = hash_alg_id(hash_oid);
    let mgf = der::constructed(tag::SEQUENCE, &[&der::tlv(tag::OID, OID_MGF1), &hash]);
    let params = der::constructed(
        tag::SEQUENCE,
        &[
            &der::tlv(0xa0, &hash),
            &der::tlv(0xa1, &mgf),
            &der::tlv(0xa2, &der::tlv(tag::INTEGER, &[salt])),
        ],
    );
    der::constructed(
        tag::SEQUENCE,
        &[&der::tlv(tag::OID, OID_RSASSA_PSS), &params],
    )
}

/// The hash OID inside a `HashAlgorithm` AlgorithmIdentifier (params absent/NULL).
fn parse_hash_alg_id(alg: &[u8]) -> Option<&[u8]> {
    let seq = der::expect_only(alg, tag::SEQUENCE)?;
    let (oid, params) = der::expect(seq, tag::OID)?;
    (params.is_empty() || params == NULL).then_some(oid)
}

fn parse_pss_params(params: &[u8]) -> Result<SignatureScheme, PkiError> {
    let unsupported =
        |why: &str| PkiError::UnsupportedSignatureAlgorithm(format!("RSASSA-PSS: {why}"));
    // Every element must fill its enclosing one exactly: the AlgorithmIdentifier is
    // not covered by the signature, so it is parsed as strict DER (a lenient parse
    // would accept many encodings of one algorithm).
    let mut rest = der::expect_only(params, tag::SEQUENCE).ok_or(PkiError::MalformedAuth(
        "RSASSA-PSS parameters do not parse",
    ))?;
    // Defaults per RFC 8017 A.2.3: SHA-1, MGF1-SHA-1, salt 20, trailer 1.
    let (mut hash, mut mgf_hash, mut salt, mut trailer): (&[u8], &[u8], u64, u64) =
        (&[], &[], 20, 1);
    while let Some((t, contents, r)) = der::read_tlv(rest) {
        match t {
            0xa0 => hash = parse_hash_alg_id(contents).ok_or_else(|| unsupported("hash"))?,
            0xa1 => {
                let seq =
                    der::expect_only(contents, tag::SEQUENCE).ok_or_else(|| unsupported("MGF"))?;
                let (oid, inner) = der::expect(seq, tag::OID).ok_or_else(|| unsupported("MGF"))?;
                if oid != OID_MGF1 {
                    return Err(unsupported("mask generation function other than MGF1"));
                }
                mgf_hash = parse_hash_alg_id(inner).ok_or_else(|| unsupported("MGF1 hash"))?;
            }
            0xa2 | 0xa3 => {
                let int = der::expect_only(contents, tag::INTEGER)
                    .ok_or_else(|| unsupported("integer"))?;
                if int.len() > 4 {
                    return Err(unsupported("integer too large"));
                }
                let v = int.iter().fold(0u64, |acc, &b| (acc << 8) | u64::from(b));
                if t == 0xa2 {
                    salt = v;
                } else {
                    trailer = v;
                }
            }
            _ => return Err(unsupported("unknown field")),
        }
        rest = r;
    }
    if !rest.is_empty() {
        return Err(PkiError::MalformedAuth(
            "RSASSA-PSS parameters do not parse",
        ));
    }
    let (scheme, len) = match hash {
        OID_SHA256 => (SignatureScheme::RsaPssSha256, 32),
        OID_SHA384 => (SignatureScheme::RsaPssSha384, 48),
        OID_SHA512 => (SignatureScheme::RsaPssSha512, 64),
        _ => return Err(unsupported("hash other than SHA-256/384/512")),
    };
    if mgf_hash != hash {
        return Err(unsupported("MGF1 hash differs from the message hash"));
    }
    if salt != len {
        return Err(unsupported("salt length differs from the hash length"));
    }
    if trailer != 1 {
        return Err(unsupported("trailer field is not 1"));
    }
    Ok(scheme)
}

//= https://www.rfc-editor.org/rfc/rfc7427#section-3
//# ASN.1 Length (1 octet) - The length of the ASN.1-encoded
//# AlgorithmIdentifier object.
/// A borrowed view of RFC 7427 Digital Signature Authentication Data:
/// `ASN.1 Length (1 octet) | AlgorithmIdentifier | Signature Value`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DigitalSignature<'a> {
    /// The DER AlgorithmIdentifier.
    pub algorithm_identifier: &'a [u8],
    /// The signature value.
    pub signature: &'a [u8],
}

impl<'a> DigitalSignature<'a> {
    /// Splits method 14 AUTH data into its parts (no cryptography).
    pub fn parse(auth_data: &'a [u8]) -> Result<Self, PkiError> {
        let (&len, rest) = auth_data
            .split_first()
            .ok_or(PkiError::MalformedAuth("empty"))?;
        let (algorithm_identifier, signature) = rest
            .split_at_checked(usize::from(len))
            .ok_or(PkiError::MalformedAuth("ASN.1 length exceeds the data"))?;
        if signature.is_empty() {
            return Err(PkiError::MalformedAuth("no signature value"));
        }
        Ok(DigitalSignature {
            algorithm_identifier,
            signature,
        })
    }

    /// Encodes method 14 AUTH data.
    pub fn emit(scheme: SignatureScheme, signature: &[u8]) -> Vec<u8> {
        let alg = scheme.algorithm_identifier();
        let mut out = Vec::with_capacity(1 + alg.len() + signature.len());
        // Every AlgorithmIdentifier we emit is < 256 bytes (the longest, PSS, is 67).
        out.push(u8::try_from(alg.len()).unwrap_or(u8::MAX));
        out.extend_from_slice(&alg);
        out.extend_from_slice(signature);
        out
    }
}

/// Verifies the Authentication Data of an AUTH payload with the peer's public key.
///
/// `auth_method` is the AUTH payload's Auth Method; `signed_octets` are the octets
/// of RFC 7296 §2.15 that the IKE engine computed for the peer's side. Returns
/// `Ok(())` only if the signature verifies with an algorithm that fits the key.
pub fn verify_auth(
    public_key: &PeerPublicKey,
    auth_method: u8,
    auth_data: &[u8],
    signed_octets: &[u8],
) -> Result<(), PkiError> {
    let (alg, sig, name): (&'static dyn VerificationAlgorithm, &[u8], &'static str) =
        match auth_method {
            //= https://www.rfc-editor.org/rfc/rfc7296#section-3.8
            //# RSA Digital Signature (1).  Computed as specified in Section
            //# 2.15 using an RSA private key with RSASSA-PKCS1-v1_5 signature
            //# scheme specified in [PKCS1]
            auth_method::RSA_DIGITAL_SIGNATURE => match public_key {
                PeerPublicKey::Rsa { .. } => (
                    &signature::RSA_PKCS1_2048_8192_SHA1_FOR_LEGACY_USE_ONLY,
                    auth_data,
                    "RSASSA-PKCS1-v1_5 SHA-1",
                ),
                other => return Err(mismatch(auth_method, "RSA-SHA1", other)),
            },
            //= https://www.rfc-editor.org/rfc/rfc4754#section-7
            //# The signature payload shall contain an encoding of the computed
            //# signature consisting of the concatenation of a pair of integers r
            //# and s.
            auth_method::ECDSA_SHA256_P256 => match public_key {
                PeerPublicKey::EcdsaP256(_) => (
                    &signature::ECDSA_P256_SHA256_FIXED,
                    auth_data,
                    "ECDSA-256 r|s",
                ),
                other => return Err(mismatch(auth_method, "ECDSA-256", other)),
            },
            auth_method::ECDSA_SHA384_P384 => match public_key {
                PeerPublicKey::EcdsaP384(_) => (
                    &signature::ECDSA_P384_SHA384_FIXED,
                    auth_data,
                    "ECDSA-384 r|s",
                ),
                other => return Err(mismatch(auth_method, "ECDSA-384", other)),
            },
            auth_method::DIGITAL_SIGNATURE => {
                let ds = DigitalSignature::parse(auth_data)?;
                let scheme = SignatureScheme::from_algorithm_identifier(ds.algorithm_identifier)?;
                (
                    verification_alg(scheme, public_key)?,
                    ds.signature,
                    scheme.name(),
                )
            }
            other => return Err(PkiError::UnsupportedAuthMethod(other)),
        };
    UnparsedPublicKey::new(alg, public_key.ring_bytes())
        .verify(signed_octets, sig)
        .map_err(|_| PkiError::BadSignature { alg: name })
}

fn mismatch(method: u8, alg: &'static str, key: &PeerPublicKey) -> PkiError {
    PkiError::KeyMismatch {
        method,
        alg,
        key: key.kind(),
    }
}

fn verification_alg(
    scheme: SignatureScheme,
    key: &PeerPublicKey,
) -> Result<&'static dyn VerificationAlgorithm, PkiError> {
    use PeerPublicKey as K;
    use SignatureScheme::*;
    Ok(match (scheme, key) {
        (EcdsaSha256, K::EcdsaP256(_)) => &signature::ECDSA_P256_SHA256_ASN1,
        (EcdsaSha384, K::EcdsaP256(_)) => &signature::ECDSA_P256_SHA384_ASN1,
        (EcdsaSha256, K::EcdsaP384(_)) => &signature::ECDSA_P384_SHA256_ASN1,
        (EcdsaSha384, K::EcdsaP384(_)) => &signature::ECDSA_P384_SHA384_ASN1,
        (EcdsaSha512, K::EcdsaP256(_) | K::EcdsaP384(_)) => {
            return Err(PkiError::UnsupportedSignatureAlgorithm(
                "ecdsa-with-SHA512 is not supported".into(),
            ))
        }
        (RsaPkcs1Sha256, K::Rsa { .. }) => &signature::RSA_PKCS1_2048_8192_SHA256,
        (RsaPkcs1Sha384, K::Rsa { .. }) => &signature::RSA_PKCS1_2048_8192_SHA384,
        (RsaPkcs1Sha512, K::Rsa { .. }) => &signature::RSA_PKCS1_2048_8192_SHA512,
        (RsaPssSha256, K::Rsa { .. }) => &signature::RSA_PSS_2048_8192_SHA256,
        (RsaPssSha384, K::Rsa { .. }) => &signature::RSA_PSS_2048_8192_SHA384,
        (RsaPssSha512, K::Rsa { .. }) => &signature::RSA_PSS_2048_8192_SHA512,
        (Ed25519, K::Ed25519(_)) => &signature::ED25519,
        (scheme, key) => return Err(mismatch(auth_method::DIGITAL_SIGNATURE, scheme.name(), key)),
    })
}

impl LocalSigner {
    /// The hash algorithms (RFC 7427 §4 identifiers) this key can sign with in
    /// method 14, in order of preference.
    pub fn signing_hashes(&self) -> &'static [u16] {
        match &self.key {
            SignerKey::EcdsaP256 { .. } => &[hash_alg::SHA2_256],
            SignerKey::EcdsaP384 { .. } => &[hash_alg::SHA2_384],
            SignerKey::Rsa(_) => &[hash_alg::SHA2_256, hash_alg::SHA2_384, hash_alg::SHA2_512],
            SignerKey::Ed25519(_) => &[hash_alg::IDENTITY],
        }
    }

    /// Signs `signed_octets` (RFC 7296 §2.15) and returns `(auth method, AUTH data)`.
    ///
    /// `peer_hashes` is the peer's SIGNATURE_HASH_ALGORITHMS list (empty if it sent
    /// none). The choice:
    /// - ECDSA P-256 / P-384: method 14 with SHA-256 / SHA-384 if the peer listed
    ///   that hash, otherwise the classic method 9 / 10 (RFC 4754).
    /// - RSA: method 14 with the first of SHA-256, SHA-384, SHA-512 the peer listed
    ///   (SHA-256 if it listed nothing: ring cannot make the SHA-1 signatures of
    ///   method 1, and RFC 8247 deprecates them), padding per
    ///   [`LocalSigner::with_rsa_padding`].
    /// - Ed25519: method 14 (RFC 8420), if the peer listed Identity (5) or nothing.
    pub fn sign(
        &self,
        signed_octets: &[u8],
        peer_hashes: &[u16],
    ) -> Result<(u8, Vec<u8>), PkiError> {
        let offered = |h: u16| peer_hashes.contains(&h);
        let no_common = || PkiError::NoCommonHash {
            peer: peer_hashes.to_vec(),
            ours: self.signing_hashes().to_vec(),
            key: self.kind(),
        };
        let scheme = match &self.key {
            SignerKey::EcdsaP256 { .. } if !offered(hash_alg::SHA2_256) => {
                return self.sign_classic(signed_octets)
            }
            SignerKey::EcdsaP384 { .. } if !offered(hash_alg::SHA2_384) => {
                return self.sign_classic(signed_octets)
            }
            SignerKey::EcdsaP256 { .. } => SignatureScheme::EcdsaSha256,
            SignerKey::EcdsaP384 { .. } => SignatureScheme::EcdsaSha384,
            SignerKey::Rsa(_) => {
                let hash = if peer_hashes.is_empty() {
                    hash_alg::SHA2_256
                } else {
                    *self
                        .signing_hashes()
                        .iter()
                        .find(|h| offered(**h))
                        .ok_or_else(no_common)?
                };
                rsa_scheme(self.rsa_padding, hash)
            }
            SignerKey::Ed25519(_) => {
                if !peer_hashes.is_empty() && !offered(hash_alg::IDENTITY) {
                    return Err(no_common());
                }
                SignatureScheme::Ed25519
            }
        };
        let data = self.sign_digital_signature(scheme, signed_octets)?;
        Ok((auth_method::DIGITAL_SIGNATURE, data))
    }

    /// Signs with RFC 4754 ECDSA (method 9 for P-256, 10 for P-384), r‖s encoding.
    /// RSA and Ed25519 keys have no classic method we can produce.
    pub fn sign_classic(&self, signed_octets: &[u8]) -> Result<(u8, Vec<u8>), PkiError> {
        let (method, pair) = match &self.key {
            SignerKey::EcdsaP256 { fixed_sig, .. } => (auth_method::ECDSA_SHA256_P256, fixed_sig),
            SignerKey::EcdsaP384 { fixed_sig, .. } => (auth_method::ECDSA_SHA384_P384, fixed_sig),
            _ => {
                return Err(PkiError::NoCommonHash {
                    peer: vec![],
                    ours: self.signing_hashes().to_vec(),
                    key: self.kind(),
                })
            }
        };
        let sig = pair
            .sign(&self.rng, signed_octets)
            .map_err(|_| PkiError::SigningFailed("ECDSA"))?;
        Ok((method, sig.as_ref().to_vec()))
    }

    /// Produces method 14 AUTH data with an explicit signature scheme.
    pub fn sign_digital_signature(
        &self,
        scheme: SignatureScheme,
        signed_octets: &[u8],
    ) -> Result<Vec<u8>, PkiError> {
        use SignatureScheme::*;
        let sig: Vec<u8> = match (&self.key, scheme) {
            (SignerKey::EcdsaP256 { der_sig, .. }, EcdsaSha256)
            | (SignerKey::EcdsaP384 { der_sig, .. }, EcdsaSha384) => der_sig
                .sign(&self.rng, signed_octets)
                .map_err(|_| PkiError::SigningFailed("ECDSA"))?
                .as_ref()
                .to_vec(),
            (SignerKey::Rsa(pair), _) => {
                let padding: &'static dyn signature::RsaEncoding = match scheme {
                    RsaPkcs1Sha256 => &signature::RSA_PKCS1_SHA256,
                    RsaPkcs1Sha384 => &signature::RSA_PKCS1_SHA384,
                    RsaPkcs1Sha512 => &signature::RSA_PKCS1_SHA512,
                    RsaPssSha256 => &signature::RSA_PSS_SHA256,
                    RsaPssSha384 => &signature::RSA_PSS_SHA384,
                    RsaPssSha512 => &signature::RSA_PSS_SHA512,
                    _ => return Err(self.cannot(scheme)),
                };
                let mut sig = vec![0u8; pair.public().modulus_len()];
                pair.sign(padding, &self.rng, signed_octets, &mut sig)
                    .map_err(|_| PkiError::SigningFailed("RSA"))?;
                sig
            }
            (SignerKey::Ed25519(pair), Ed25519) => pair.sign(signed_octets).as_ref().to_vec(),
            _ => return Err(self.cannot(scheme)),
        };
        Ok(DigitalSignature::emit(scheme, &sig))
    }

    fn cannot(&self, scheme: SignatureScheme) -> PkiError {
        PkiError::KeyMismatch {
            method: auth_method::DIGITAL_SIGNATURE,
            alg: scheme.name(),
            key: self.kind(),
        }
    }
}

fn rsa_scheme(padding: RsaPadding, hash: u16) -> SignatureScheme {
    use SignatureScheme::*;
    match (padding, hash) {
        (RsaPadding::Pkcs1, hash_alg::SHA2_384) => RsaPkcs1Sha384,
        (RsaPadding::Pkcs1, hash_alg::SHA2_512) => RsaPkcs1Sha512,
        (RsaPadding::Pkcs1, _) => RsaPkcs1Sha256,
        (RsaPadding::Pss, hash_alg::SHA2_384) => RsaPssSha384,
        (RsaPadding::Pss, hash_alg::SHA2_512) => RsaPssSha512,
        (RsaPadding::Pss, _) => RsaPssSha256,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [SignatureScheme; 10] = [
        SignatureScheme::EcdsaSha256,
        SignatureScheme::EcdsaSha384,
        SignatureScheme::EcdsaSha512,
        SignatureScheme::RsaPkcs1Sha256,
        SignatureScheme::RsaPkcs1Sha384,
        SignatureScheme::RsaPkcs1Sha512,
        SignatureScheme::RsaPssSha256,
        SignatureScheme::RsaPssSha384,
        SignatureScheme::RsaPssSha512,
        SignatureScheme::Ed25519,
    ];

    #[test]
    fn algorithm_identifiers_round_trip() {
        for s in ALL {
            let der = s.algorithm_identifier();
            assert!(der.len() < 256);
            assert_eq!(
                SignatureScheme::from_algorithm_identifier(&der).expect("parses"),
                s
            );
        }
    }

    #[test]
    fn rfc7427_appendix_a_encodings() {
        // RFC 7427 Appendix A.1.1 sha1WithRSAEncryption is refused (SHA-1);
        // A.3.2/A.3.3 ecdsa-with-sha384/512 and A.2.3/A.2.4 sha384/512WithRSA:
        let cases = [
            (SignatureScheme::EcdsaSha384, "300a06082a8648ce3d040303"),
            (SignatureScheme::EcdsaSha512, "300a06082a8648ce3d040304"),
            (
                SignatureScheme::RsaPkcs1Sha384,
                "300d06092a864886f70d01010c0500",
            ),
            (
                SignatureScheme::RsaPkcs1Sha512,
                "300d06092a864886f70d01010d0500",
            ),
        ];
        for (s, hex) in cases {
            let der: Vec<u8> = (0..hex.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("hex"))
                .collect();
            assert_eq!(s.algorithm_identifier(), der, "{s:?}");
        }
    }

    #[test]
    fn ecdsa_with_null_parameters_is_tolerated() {
        let der = der::constructed(
            tag::SEQUENCE,
            &[&der::tlv(tag::OID, OID_ECDSA_SHA256), NULL],
        );
        assert_eq!(
            SignatureScheme::from_algorithm_identifier(&der).expect("ok"),
            SignatureScheme::EcdsaSha256
        );
        let trailing = [SignatureScheme::EcdsaSha256.algorithm_identifier(), vec![0]].concat();
        assert!(SignatureScheme::from_algorithm_identifier(&trailing).is_err());
    }

    #[test]
    fn pss_parameters_we_cannot_verify_are_refused() {
        let hash = hash_alg_id(OID_SHA256);
        let mgf_sha1 = der::constructed(
            tag::SEQUENCE,
            &[
                &der::tlv(tag::OID, OID_MGF1),
                &hash_alg_id(&[0x2b, 0x0e, 0x03, 0x02, 0x1a]),
            ],
        );
        let build = |fields: &[Vec<u8>]| {
            let refs: Vec<&[u8]> = fields.iter().map(Vec::as_slice).collect();
            let params = der::constructed(tag::SEQUENCE, &refs);
            der::constructed(
                tag::SEQUENCE,
                &[&der::tlv(tag::OID, OID_RSASSA_PSS), &params],
            )
        };
        // No parameters at all: SHA-1 defaults.
        assert!(SignatureScheme::from_algorithm_identifier(&build(&[])).is_err());
        // SHA-256 with the default salt (20) is not salt = hash length.
        let mgf = der::constructed(tag::SEQUENCE, &[&der::tlv(tag::OID, OID_MGF1), &hash]);
        let only_hash = build(&[der::tlv(0xa0, &hash), der::tlv(0xa1, &mgf)]);
        assert!(SignatureScheme::from_algorithm_identifier(&only_hash).is_err());
        // MGF1 with SHA-1 under a SHA-256 message hash.
        let mixed = build(&[
            der::tlv(0xa0, &hash),
            der::tlv(0xa1, &mgf_sha1),
            der::tlv(0xa2, &der::tlv(tag::INTEGER, &[32])),
        ]);
        assert!(SignatureScheme::from_algorithm_identifier(&mixed).is_err());
        // Explicit trailer field 1 is fine.
        let explicit = build(&[
            der::tlv(0xa0, &hash),
            der::tlv(0xa1, &mgf),
            der::tlv(0xa2, &der::tlv(tag::INTEGER, &[32])),
            der::tlv(0xa3, &der::tlv(tag::INTEGER, &[1])),
        ]);
        assert_eq!(
            SignatureScheme::from_algorithm_identifier(&explicit).expect("ok"),
            SignatureScheme::RsaPssSha256
        );
        // Strict DER: bytes after an element inside its enclosing tag are refused
        // (found by the never_panic proptest: hash SEQUENCE shortened so the NULL
        // trailed inside [0]).
        let hash_oid_only = der::constructed(tag::SEQUENCE, &[&der::tlv(tag::OID, OID_SHA256)]);
        let trailing = |inner: &[u8]| [inner, NULL].concat();
        for fields in [
            vec![
                der::tlv(0xa0, &trailing(&hash_oid_only)),
                der::tlv(0xa1, &mgf),
                der::tlv(0xa2, &der::tlv(tag::INTEGER, &[32])),
            ],
            vec![
                der::tlv(0xa0, &hash),
                der::tlv(0xa1, &trailing(&mgf)),
                der::tlv(0xa2, &der::tlv(tag::INTEGER, &[32])),
            ],
            vec![
                der::tlv(0xa0, &hash),
                der::tlv(0xa1, &mgf),
                der::tlv(0xa2, &trailing(&der::tlv(tag::INTEGER, &[32]))),
            ],
        ] {
            assert!(SignatureScheme::from_algorithm_identifier(&build(&fields)).is_err());
        }
    }

    #[test]
    fn digital_signature_parse_bounds() {
        assert!(DigitalSignature::parse(&[]).is_err());
        assert!(DigitalSignature::parse(&[5, 1, 2, 3]).is_err());
        assert!(
            DigitalSignature::parse(&[2, 1, 2]).is_err(),
            "no signature value"
        );
        let ds = DigitalSignature::parse(&[2, 1, 2, 9]).expect("ok");
        assert_eq!(
            (ds.algorithm_identifier, ds.signature),
            (&[1u8, 2][..], &[9u8][..])
        );
    }
}
