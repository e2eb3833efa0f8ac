//! The one error type of this crate.
//!
//! Every failure — a file that is not a key, a certificate chain that does not reach a
//! trusted CA, an AUTH payload that does not verify — is a [`PkiError`] variant with a
//! message a human can act on. Nothing in this crate panics on untrusted input.

use std::path::PathBuf;

/// Errors from loading credentials, checking certificate chains, signing and
/// verifying IKEv2 AUTH data, and parsing identities.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PkiError {
    /// A file could not be read.
    #[error("{what} file {path}: cannot read: {source}")]
    Io {
        /// What kind of file ("key", "certificate", "CA certificate").
        what: &'static str,
        /// The path as given.
        path: PathBuf,
        /// The underlying I/O error.
        source: std::io::Error,
    },
    /// A file was read but its content was rejected; `source` says why.
    #[error("{what} file {path}: {source}")]
    InFile {
        /// What kind of file ("key", "certificate", "CA certificate").
        what: &'static str,
        /// The path as given.
        path: PathBuf,
        /// Why the content was rejected.
        source: Box<PkiError>,
    },
    /// PEM armour was present but broken (bad base64, missing END line, ...).
    #[error("malformed PEM: {0}")]
    Pem(String),
    /// No PEM block of an expected type, and the data is not DER either.
    #[error("no {expected} found (neither a PEM block of that type nor DER)")]
    NothingFound {
        /// What was looked for, e.g. "CERTIFICATE".
        expected: &'static str,
    },
    /// The private key is not in a form we accept.
    #[error("not a usable private key: {0}")]
    BadPrivateKey(String),
    /// The certificate DER does not parse.
    #[error("malformed certificate: {0}")]
    BadCertificate(String),
    /// A public key of an algorithm or size we do not support.
    #[error("unsupported public key: {0}")]
    UnsupportedPublicKey(String),
    /// A CA certificate was configured that is not a CA (basicConstraints CA missing).
    #[error(
        "certificate \"{subject}\" is not a CA certificate (basicConstraints CA:TRUE missing)"
    )]
    NotACa {
        /// Subject DN of the offending certificate.
        subject: String,
    },
    /// No trusted CA (and no intermediate sent by the peer) issued this certificate.
    #[error("certificate \"{subject}\": issuer \"{issuer}\" is not a trusted CA and no intermediate for it was sent")]
    UntrustedIssuer {
        /// Subject DN of the certificate whose issuer is unknown.
        subject: String,
        /// Issuer DN that was looked for.
        issuer: String,
    },
    /// The issuer was found by name but its key does not verify the signature.
    #[error("certificate \"{subject}\": signature by \"{issuer}\" does not verify ({reason})")]
    BadCertificateSignature {
        /// Subject DN of the certificate.
        subject: String,
        /// Issuer DN.
        issuer: String,
        /// Detail from the verifier.
        reason: String,
    },
    /// A certificate is outside its validity period at the time given.
    #[error("certificate \"{subject}\" is not valid at {at} (valid from {not_before} until {not_after})")]
    NotValidAt {
        /// Subject DN of the certificate.
        subject: String,
        /// The time checked, RFC 2822 style.
        at: String,
        /// Start of validity.
        not_before: String,
        /// End of validity.
        not_after: String,
    },
    /// An issuer in the chain is not allowed to issue certificates.
    #[error("certificate \"{subject}\" is used as an issuer but is not a CA ({reason})")]
    IssuerNotCa {
        /// Subject DN of the would-be issuer.
        subject: String,
        /// Which constraint failed.
        reason: &'static str,
    },
    /// A pathLenConstraint was exceeded or the chain is unreasonably long.
    #[error("certificate chain too long at \"{subject}\" ({reason})")]
    ChainTooLong {
        /// Subject DN of the CA whose constraint failed.
        subject: String,
        /// Which limit.
        reason: String,
    },
    /// A certificate has a critical extension this crate does not process
    /// (RFC 5280 §4.2: such a certificate must be rejected).
    #[error("certificate \"{subject}\" has critical extension {oid}, which is not supported")]
    UnsupportedCriticalExtension {
        /// Subject DN of the certificate.
        subject: String,
        /// The extension OID.
        oid: String,
    },
    /// A weak certificate signature algorithm (SHA-1 or MD5).
    #[error("certificate \"{subject}\" is signed with a weak algorithm ({alg})")]
    WeakCertificateSignature {
        /// Subject DN of the certificate.
        subject: String,
        /// The algorithm OID.
        alg: String,
    },
    /// The peer's certificate is not meant for IKE authentication.
    #[error("certificate \"{subject}\" may not authenticate IKE: {reason}")]
    EndEntityUsage {
        /// Subject DN of the certificate.
        subject: String,
        /// Which extension forbids it.
        reason: &'static str,
    },
    /// An auth method refused as too weak.
    #[error("auth method {method} ({name}) is refused: {reason}")]
    WeakAuthMethod {
        /// The auth method.
        method: u8,
        /// Its name.
        name: &'static str,
        /// Why.
        reason: &'static str,
    },
    /// An IKEv2 auth method this crate does not implement.
    #[error("unsupported IKEv2 auth method {0}")]
    UnsupportedAuthMethod(u8),
    /// The AUTH data is structurally wrong.
    #[error("malformed AUTH data: {0}")]
    MalformedAuth(&'static str),
    /// The signature algorithm named in the AUTH data is not supported or not allowed.
    #[error("unsupported signature algorithm in AUTH data: {0}")]
    UnsupportedSignatureAlgorithm(String),
    /// The auth method / algorithm does not fit the peer's public key type.
    #[error("auth method {method} with {alg} does not fit the peer's {key} key")]
    KeyMismatch {
        /// The auth method.
        method: u8,
        /// Signature algorithm.
        alg: &'static str,
        /// The public key kind.
        key: &'static str,
    },
    /// The signature does not verify.
    #[error("AUTH signature does not verify with the peer's public key ({alg})")]
    BadSignature {
        /// The signature algorithm used.
        alg: &'static str,
    },
    /// We cannot sign with any hash the peer accepts.
    #[error("no signature hash in common: peer accepts {peer:?}, our {key} key can use {ours:?}")]
    NoCommonHash {
        /// The peer's SIGNATURE_HASH_ALGORITHMS.
        peer: Vec<u16>,
        /// What our key can do.
        ours: Vec<u16>,
        /// Our key kind.
        key: &'static str,
    },
    /// ring refused to produce a signature.
    #[error("signing failed ({0})")]
    SigningFailed(&'static str),
    /// A SIGNATURE_HASH_ALGORITHMS notify body is malformed.
    #[error("malformed SIGNATURE_HASH_ALGORITHMS data: {0}")]
    MalformedHashList(&'static str),
    /// An identity string from configuration does not parse.
    #[error("bad identity \"{input}\": {reason}")]
    BadIdentity {
        /// The input string.
        input: String,
        /// Why.
        reason: String,
    },
    /// The peer's claimed identity is not a name of its certificate.
    #[error("peer identity \"{identity}\" is neither the subject nor a subjectAltName of its certificate \"{subject}\"")]
    IdentityMismatch {
        /// The claimed identity (IDi/IDr).
        identity: String,
        /// The certificate subject.
        subject: String,
    },
    /// Our private key does not belong to our certificate.
    #[error("private key ({key}) does not match certificate \"{subject}\"")]
    KeyCertificateMismatch {
        /// Key kind.
        key: &'static str,
        /// Certificate subject.
        subject: String,
    },
    /// No end-entity certificate was received (no CERT payload).
    #[error("peer sent no certificate (no CERT payload with encoding 4)")]
    NoPeerCertificate,
    /// An ID payload body is malformed or of an unsupported type.
    #[error("malformed ID payload: {0}")]
    MalformedId(String),
}

impl PkiError {
    /// Wraps `self` with the file it came from.
    pub(crate) fn in_file(self, what: &'static str, path: &std::path::Path) -> PkiError {
        PkiError::InFile {
            what,
            path: path.to_path_buf(),
            source: Box::new(self),
        }
    }
}
