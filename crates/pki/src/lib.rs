//! plexgate-pki: certificates, private keys and IKEv2 signature authentication.
//!
//! What the IKEv2 engine and the daemon call:
//!
//! - **Loading** (the only I/O in this crate): [`LocalCredentials::load`] for our
//!   key + certificate (checked to match), or separately [`LocalSigner::load`] for our
//!   private key, [`Certificate::load`] for our certificate, [`TrustStore::load_file`]
//!   / [`TrustStore::from_files`] for CA certificates. PEM or DER.
//! - **Chain check**: [`TrustStore::verify_chain`] with the peer's end-entity
//!   certificate and intermediates from its CERT payloads, at a time passed in;
//!   returns a [`VerifiedPeer`] with the public key and subject names.
//! - **AUTH**: [`LocalSigner::sign`] makes `(auth method, AUTH data)` from the
//!   RFC 7296 §2.15 signed octets and the peer's SIGNATURE_HASH_ALGORITHMS;
//!   [`verify_auth`] checks the peer's AUTH payload. [`encode_hash_algorithms`] /
//!   [`decode_hash_algorithms`] handle the notify (RFC 7427 §4).
//! - **All at once**: [`TrustStore::authenticate_peer`] with a [`PeerAuth`] (CERT
//!   payloads, ID, AUTH, signed octets) does chain + identity + signature.
//! - **Identities**: [`Identity`] (RFC 7296 §3.5) from config strings and ID
//!   payloads; [`cert_matches`] checks that an ID names a certificate.
//!
//! Protocol logic here takes bytes and returns bytes; the clock is a parameter.
//!
//! ```
//! use plexgate_pki::{Identity, id_type};
//! let id = Identity::parse("gw.plexgate.test").unwrap();
//! assert_eq!(id.id_type(), id_type::ID_FQDN);
//! assert_eq!(id.to_payload_body(), b"\x02\0\0\0gw.plexgate.test");
//! ```

#![warn(missing_docs, unreachable_pub)]
#![forbid(unsafe_code)]

pub mod auth;
pub mod cert;
mod der;
mod dn;
mod error;
pub mod identity;
pub mod key;
pub mod local;
pub mod peer;
pub mod pem;

pub use auth::{
    auth_method, decode_hash_algorithms, encode_hash_algorithms, hash_alg, verify_auth,
    DigitalSignature, SignatureScheme, NOTIFY_SIGNATURE_HASH_ALGORITHMS, SUPPORTED_HASH_ALGORITHMS,
};
pub use cert::{Certificate, TrustStore, VerifiedPeer, CERT_ENCODING_X509_SIGNATURE};
pub use error::PkiError;
pub use identity::{cert_matches, id_type, DistinguishedName, Identity};
pub use key::{LocalSigner, PeerPublicKey, RsaPadding};
pub use local::LocalCredentials;
pub use peer::PeerAuth;
