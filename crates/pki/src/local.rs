//! Our own credentials for certificate authentication: the private key, the
//! end-entity certificate and any intermediates to send, checked to belong
//! together when they are loaded.

use std::path::Path;

use crate::cert::Certificate;
use crate::identity::{cert_matches, Identity};
use crate::key::LocalSigner;
use crate::PkiError;

/// Key + certificate (+ intermediates) of this gateway.
#[derive(Debug)]
pub struct LocalCredentials {
    /// Our private key.
    pub signer: LocalSigner,
    /// Our end-entity certificate (first CERT payload).
    pub certificate: Certificate,
    /// Intermediate CA certificates to send after it (further CERT payloads).
    pub chain: Vec<Certificate>,
}

impl LocalCredentials {
    /// Bundles the parts; fails if the key does not match the certificate.
    pub fn new(
        signer: LocalSigner,
        certificate: Certificate,
        chain: Vec<Certificate>,
    ) -> Result<Self, PkiError> {
        if !signer.matches_certificate(&certificate) {
            return Err(PkiError::KeyCertificateMismatch {
                key: signer.kind(),
                subject: certificate
                    .subject()
                    .map(|s| s.to_string())
                    .unwrap_or_default(),
            });
        }
        Ok(LocalCredentials {
            signer,
            certificate,
            chain,
        })
    }

    /// Loads a key file and a certificate file. The certificate file holds our
    /// certificate first, optionally followed by intermediates (a PEM bundle).
    pub fn load(key: impl AsRef<Path>, cert: impl AsRef<Path>) -> Result<Self, PkiError> {
        let signer = LocalSigner::load(key)?;
        let cert = cert.as_ref();
        let mut certs = Certificate::load_all(cert)?;
        let certificate = certs.remove(0);
        Self::new(signer, certificate, certs).map_err(|e| e.in_file("certificate", cert))
    }

    /// The CERT payload data to send (encoding 4), end entity first.
    pub fn cert_payloads(&self) -> Vec<&[u8]> {
        std::iter::once(self.certificate.der())
            .chain(self.chain.iter().map(Certificate::der))
            .collect()
    }

    /// Whether `id` may be used as our IDi/IDr with this certificate (a peer
    /// following RFC 4945 would reject a mismatch).
    pub fn can_use_identity(&self, id: &Identity) -> bool {
        cert_matches(id, &self.certificate)
    }

    /// A default identity: the first dNSName subjectAltName, else the subject DN.
    pub fn default_identity(&self) -> Result<Identity, PkiError> {
        match self
            .certificate
            .subject_alt_names()
            .into_iter()
            .find(|n| matches!(n, Identity::Fqdn(_)))
        {
            Some(id) => Ok(id),
            None => self.certificate.subject_identity(),
        }
    }
}
