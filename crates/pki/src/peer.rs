//! One call for the IKE engine to authenticate a certificate-based peer: chain,
//! identity and AUTH signature together, in the order RFC 7296 §2.15 and RFC 4945
//! §3.1 imply — so that no step can be forgotten.

use std::time::SystemTime;

use crate::auth::verify_auth;
use crate::cert::{Certificate, TrustStore, VerifiedPeer};
use crate::identity::Identity;
use crate::PkiError;

/// The certificate-related parts of a peer's IKE_AUTH message.
#[derive(Debug, Clone, Copy)]
pub struct PeerAuth<'a> {
    /// The Certificate Data of each CERT payload with encoding 4 (X.509
    /// Certificate - Signature), in order: the first is the end-entity
    /// certificate (RFC 7296 §3.6), the others intermediates.
    pub cert_payloads: &'a [&'a [u8]],
    /// The identity from the peer's IDi/IDr payload.
    pub identity: &'a Identity,
    /// AUTH payload Auth Method.
    pub auth_method: u8,
    /// AUTH payload Authentication Data.
    pub auth_data: &'a [u8],
    /// The octets the peer signed (RFC 7296 §2.15), computed by the IKE engine.
    pub signed_octets: &'a [u8],
}

impl TrustStore {
    /// Authenticates a peer: (1) the end-entity certificate chains to a trusted CA
    /// at `now`, (2) `identity` is one of its names ([`crate::cert_matches`]),
    /// (3) the AUTH data verifies with its public key. Returns the verified peer.
    pub fn authenticate_peer(
        &self,
        peer: &PeerAuth<'_>,
        now: SystemTime,
    ) -> Result<VerifiedPeer, PkiError> {
        let (ee, rest) = peer
            .cert_payloads
            .split_first()
            .ok_or(PkiError::NoPeerCertificate)?;
        let ee = Certificate::from_der(ee)?;
        let intermediates = rest
            .iter()
            .map(|d| Certificate::from_der(d))
            .collect::<Result<Vec<_>, _>>()?;
        let verified = self.verify_chain(&ee, &intermediates, now)?;
        if !verified.matches(peer.identity) {
            return Err(PkiError::IdentityMismatch {
                identity: peer.identity.to_string(),
                subject: verified.subject.to_string(),
            });
        }
        verify_auth(
            &verified.public_key,
            peer.auth_method,
            peer.auth_data,
            peer.signed_octets,
        )?;
        Ok(verified)
    }
}
