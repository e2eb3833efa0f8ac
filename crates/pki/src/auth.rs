//! IKEv2 signature authentication: the AUTH payload's Authentication Data for
//! certificate-based methods, and the SIGNATURE_HASH_ALGORITHMS notify.
//!
//! Implemented auth methods (RFC 7296 §3.8 and IANA "IKEv2 Authentication Method"):
//!
//! | method | name | sign | verify |
//! | --- | --- | --- | --- |
//! | 1 | RSA Digital Signature (PKCS#1 v1.5, SHA-1) | no | no: refused (SHA-1) |
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

mod scheme;

pub use scheme::SignatureScheme;

use ring::signature::{self, UnparsedPublicKey, VerificationAlgorithm};

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
            // Method 1 is RSASSA-PKCS1-v1_5 with SHA-1 (RFC 7296 §3.8). SHA-1
            // signatures are refused here as they are inside method 14 (RFC 8247
            // deprecates SHA-1 in IKEv2 signatures); RSA peers use method 14.
            auth_method::RSA_DIGITAL_SIGNATURE => return Err(PkiError::WeakAuthMethod {
                method: auth_method,
                name: "RSA Digital Signature, PKCS#1 v1.5 with SHA-1",
                reason:
                    "SHA-1 signatures are not accepted; use RFC 7427 digital signatures (method 14)",
            }),
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
mod tests;
