//! The signature algorithms of RFC 7427 Digital Signature AUTH data and their DER
//! AlgorithmIdentifiers (RFC 5758, RFC 4055 for RSASSA-PSS, RFC 8410 for Ed25519).

use crate::der::{self, tag};
use crate::PkiError;

use super::hash_alg;

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

pub(super) const OID_ECDSA_SHA256: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02];
pub(super) const OID_ECDSA_SHA384: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x03];
pub(super) const OID_ECDSA_SHA512: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x04];
pub(super) const OID_RSA_SHA1: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x05];
pub(super) const OID_RSA_SHA256: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0b];
pub(super) const OID_RSA_SHA384: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0c];
pub(super) const OID_RSA_SHA512: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0d];
pub(super) const OID_RSASSA_PSS: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0a];
pub(super) const OID_MGF1: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x08];
pub(super) const OID_SHA256: &[u8] = &[0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01];
pub(super) const OID_SHA384: &[u8] = &[0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x02];
pub(super) const OID_SHA512: &[u8] = &[0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x03];
pub(super) const OID_ECDSA_SHA1: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x01];
pub(super) const OID_ED25519: &[u8] = crate::key::OID_ED25519;
pub(super) const NULL: &[u8] = &[tag::NULL, 0x00];

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

pub(super) fn hash_alg_id(oid: &[u8]) -> Vec<u8> {
    der::constructed(tag::SEQUENCE, &[&der::tlv(tag::OID, oid), NULL])
}

/// RSASSA-PSS-params (RFC 8017 Appendix A.2.3), as in RFC 7427 Appendix A.4.
pub(super) fn pss_algorithm_identifier(hash_oid: &[u8], salt: u8) -> Vec<u8> {
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
pub(super) fn parse_hash_alg_id(alg: &[u8]) -> Option<&[u8]> {
    let seq = der::expect_only(alg, tag::SEQUENCE)?;
    let (oid, params) = der::expect(seq, tag::OID)?;
    (params.is_empty() || params == NULL).then_some(oid)
}

pub(super) fn parse_pss_params(params: &[u8]) -> Result<SignatureScheme, PkiError> {
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
