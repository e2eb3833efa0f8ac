//! X.509 certificates ([`Certificate`]), the configured trust anchors
//! ([`TrustStore`]) and certificate path validation ([`TrustStore::verify_chain`]).
//!
//! Path validation is the subset of RFC 5280 §6 that an IKEv2 responder needs: the
//! peer's end-entity certificate, plus the intermediates it sent in CERT payloads,
//! must chain by issuer name and signature to a configured CA; every certificate
//! in the path must be within its validity period at the time the caller passes
//! in; every issuer must be a CA (basicConstraints cA, keyCertSign if keyUsage is
//! present) and respect its pathLenConstraint; a certificate with a critical
//! extension we do not process is refused (RFC 5280 §4.2). Not implemented:
//! revocation (CRL, OCSP), name constraints (refused when critical), policy
//! processing.

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::prelude::FromDer;
use x509_parser::time::ASN1Time;

use crate::identity::{DistinguishedName, Identity};
use crate::key::PeerPublicKey;
use crate::pem::{looks_like_pem, parse_pem};
use crate::PkiError;

/// CERT payload Cert Encoding "X.509 Certificate - Signature" (RFC 7296 §3.6): the
/// CERT data is one DER certificate.
pub const CERT_ENCODING_X509_SIGNATURE: u8 = 4;

/// The longest chain we follow (end entity + intermediates + anchor).
pub const MAX_CHAIN_LEN: usize = 8;

/// One X.509 certificate, kept as DER and parsed on demand.
#[derive(Clone, PartialEq, Eq)]
pub struct Certificate {
    der: Vec<u8>,
}

impl std::fmt::Debug for Certificate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.subject() {
            Ok(s) => write!(f, "Certificate(\"{s}\")"),
            Err(_) => write!(f, "Certificate(<unparsable>)"),
        }
    }
}

fn parse_error(e: impl std::fmt::Display) -> PkiError {
    PkiError::BadCertificate(e.to_string())
}

impl Certificate {
    /// Parses one DER certificate (e.g. CERT payload data with encoding 4).
    /// Trailing bytes after the certificate are an error.
    pub fn from_der(der: &[u8]) -> Result<Self, PkiError> {
        let (rest, cert) = X509Certificate::from_der(der).map_err(parse_error)?;
        if !rest.is_empty() {
            return Err(PkiError::BadCertificate(format!(
                "{} bytes after the certificate",
                rest.len()
            )));
        }
        // The public key must be one we can use (the issuer's for chains, the
        // peer's for AUTH); refuse others now with a readable message.
        let spki = cert.public_key();
        PeerPublicKey::from_spki_der(spki.raw)?;
        Ok(Certificate { der: der.to_vec() })
    }

    /// Parses every `CERTIFICATE` block of a PEM text (at least one).
    pub fn from_pem(data: &[u8]) -> Result<Vec<Self>, PkiError> {
        let certs = parse_pem(data)?
            .into_iter()
            .filter(|b| b.label == "CERTIFICATE" || b.label == "X509 CERTIFICATE")
            .map(|b| Certificate::from_der(&b.der))
            .collect::<Result<Vec<_>, _>>()?;
        if certs.is_empty() {
            return Err(PkiError::NothingFound {
                expected: "CERTIFICATE",
            });
        }
        Ok(certs)
    }

    /// PEM (one or more certificates) or a single DER certificate.
    pub fn from_bytes(data: &[u8]) -> Result<Vec<Self>, PkiError> {
        if looks_like_pem(data) {
            Self::from_pem(data)
        } else {
            Self::from_der(data).map(|c| vec![c])
        }
    }

    /// Reads a certificate file (PEM with one or more certificates, or DER).
    pub fn load_all(path: impl AsRef<Path>) -> Result<Vec<Self>, PkiError> {
        let path = path.as_ref();
        let data = std::fs::read(path).map_err(|source| PkiError::Io {
            what: "certificate",
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_bytes(&data).map_err(|e| e.in_file("certificate", path))
    }

    /// Reads a file that holds exactly one certificate (PEM or DER).
    pub fn load(path: impl AsRef<Path>) -> Result<Self, PkiError> {
        let path = path.as_ref();
        let mut certs = Self::load_all(path)?;
        match certs.len() {
            1 => Ok(certs.remove(0)),
            n => Err(
                PkiError::BadCertificate(format!("expected one certificate, found {n}"))
                    .in_file("certificate", path),
            ),
        }
    }

    /// The DER encoding (what goes into a CERT payload with encoding 4).
    pub fn der(&self) -> &[u8] {
        &self.der
    }

    fn parsed(&self) -> Result<X509Certificate<'_>, PkiError> {
        X509Certificate::from_der(&self.der)
            .map(|(_, c)| c)
            .map_err(parse_error)
    }

    /// The subject DN.
    pub fn subject(&self) -> Result<DistinguishedName, PkiError> {
        let c = self.parsed()?;
        DistinguishedName::from_der(c.subject().as_raw()).map_err(PkiError::BadCertificate)
    }

    /// The issuer DN.
    pub fn issuer(&self) -> Result<DistinguishedName, PkiError> {
        let c = self.parsed()?;
        DistinguishedName::from_der(c.issuer().as_raw()).map_err(PkiError::BadCertificate)
    }

    /// The subject DN as an [`Identity`] (ID_DER_ASN1_DN with the exact DER of the
    /// certificate), the natural IDi/IDr for certificate authentication.
    pub fn subject_identity(&self) -> Result<Identity, PkiError> {
        self.subject().map(Identity::Dn)
    }

    /// The subjectAltNames we can express as identities: dNSName → Fqdn,
    /// rfc822Name → Rfc822, iPAddress → Ipv4/Ipv6, directoryName → Dn. Others
    /// (URI, otherName, ...) are skipped; so is a malformed extension.
    pub fn subject_alt_names(&self) -> Vec<Identity> {
        let Ok(c) = self.parsed() else {
            return Vec::new();
        };
        let Ok(Some(san)) = c.subject_alternative_name() else {
            return Vec::new();
        };
        san.value
            .general_names
            .iter()
            .filter_map(|n| match n {
                GeneralName::DNSName(s) => Some(Identity::Fqdn((*s).to_string())),
                GeneralName::RFC822Name(s) => Some(Identity::Rfc822((*s).to_string())),
                GeneralName::IPAddress(b) => match b.len() {
                    4 | 16 => {
                        Identity::from_type_and_data(if b.len() == 4 { 1 } else { 5 }, b).ok()
                    }
                    _ => None,
                },
                GeneralName::DirectoryName(name) => DistinguishedName::from_der(name.as_raw())
                    .ok()
                    .map(Identity::Dn),
                _ => None,
            })
            .collect()
    }

    /// The subjectKeyIdentifier extension value, if present.
    pub fn subject_key_id(&self) -> Option<Vec<u8>> {
        let c = self.parsed().ok()?;
        let id = c
            .iter_extensions()
            .find_map(|e| match e.parsed_extension() {
                ParsedExtension::SubjectKeyIdentifier(k) => Some(k.0.to_vec()),
                _ => None,
            });
        id
    }

    /// The key identifiers an ID_KEY_ID may name, as strongSwan matches them: the
    /// subjectKeyIdentifier extension (if any), SHA-1 of the subjectPublicKey
    /// bits (RFC 5280 §4.2.1.2 method 1) and SHA-1 of the whole
    /// SubjectPublicKeyInfo.
    pub fn key_ids(&self) -> Vec<Vec<u8>> {
        let mut ids: Vec<Vec<u8>> = self.subject_key_id().into_iter().collect();
        if let Ok(c) = self.parsed() {
            let sha1 = |b: &[u8]| {
                ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, b)
                    .as_ref()
                    .to_vec()
            };
            ids.push(sha1(&c.public_key().subject_public_key.data));
            ids.push(sha1(c.public_key().raw));
        }
        ids
    }

    /// The certificate's public key.
    pub fn public_key(&self) -> Result<PeerPublicKey, PkiError> {
        let c = self.parsed()?;
        PeerPublicKey::from_spki_der(c.public_key().raw)
    }

    /// SHA-1 of the DER SubjectPublicKeyInfo: the CA identifier IKEv2 puts in
    /// CERTREQ payloads (RFC 7296 §3.7) and strongSwan's "keyid".
    pub fn spki_sha1(&self) -> Result<[u8; 20], PkiError> {
        let c = self.parsed()?;
        let d = ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, c.public_key().raw);
        let mut out = [0u8; 20];
        out.copy_from_slice(d.as_ref());
        Ok(out)
    }

    /// `(notBefore, notAfter)` as Unix seconds.
    pub fn validity(&self) -> Result<(i64, i64), PkiError> {
        let c = self.parsed()?;
        let v = c.validity();
        Ok((v.not_before.timestamp(), v.not_after.timestamp()))
    }

    /// Whether basicConstraints says cA: TRUE.
    pub fn is_ca(&self) -> bool {
        self.parsed()
            .ok()
            .and_then(|c| c.basic_constraints().ok().flatten().map(|b| b.value.ca))
            .unwrap_or(false)
    }
}

/// The configured trust anchors (CA certificates).
#[derive(Debug, Clone, Default)]
pub struct TrustStore {
    anchors: Vec<Certificate>,
}

/// What a successful [`TrustStore::verify_chain`] returns about the peer.
#[derive(Debug, Clone)]
pub struct VerifiedPeer {
    /// The end-entity public key: pass it to [`crate::verify_auth`].
    pub public_key: PeerPublicKey,
    /// The subject DN of the end-entity certificate.
    pub subject: DistinguishedName,
    /// Its subjectAltNames (see [`Certificate::subject_alt_names`]).
    pub alt_names: Vec<Identity>,
    /// The end-entity certificate itself (use with [`crate::cert_matches`]).
    pub certificate: Certificate,
    /// Subject DNs of the path, end entity first, trust anchor last.
    pub path: Vec<DistinguishedName>,
}

impl VerifiedPeer {
    /// Whether the peer's claimed identity (its IDi/IDr) names this certificate.
    pub fn matches(&self, identity: &Identity) -> bool {
        crate::identity::cert_matches(identity, &self.certificate)
    }
}

fn asn1_time(t: SystemTime) -> Result<ASN1Time, PkiError> {
    let secs = match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        Err(e) => i64::try_from(e.duration().as_secs()).map_or(i64::MIN, |s| -s),
    };
    ASN1Time::from_timestamp(secs)
        .map_err(|e| PkiError::BadCertificate(format!("time {secs} out of range: {e}")))
}

fn fmt_time(t: ASN1Time) -> String {
    t.to_rfc2822().unwrap_or_else(|_| t.timestamp().to_string())
}

fn name_of(c: &X509Certificate<'_>) -> String {
    DistinguishedName::from_der(c.subject().as_raw())
        .map(|d| d.to_string())
        .unwrap_or_else(|_| "<malformed subject>".into())
}

fn parse_all(certs: &[Certificate]) -> Result<Vec<X509Certificate<'_>>, PkiError> {
    certs.iter().map(Certificate::parsed).collect()
}

/// The first of `candidates` whose subject is `issuer` and whose key verifies the
/// signature of `cert`; the last verification error is kept in `sig_error`.
fn find_signer<'a, 'b>(
    cert: &X509Certificate<'_>,
    issuer: &DistinguishedName,
    candidates: impl Iterator<Item = (usize, &'a X509Certificate<'b>)>,
    sig_error: &mut Option<String>,
) -> Option<(usize, &'a X509Certificate<'b>)>
where
    'b: 'a,
{
    candidates
        .filter(|(_, c)| {
            DistinguishedName::from_der(c.subject().as_raw()).is_ok_and(|s| s.matches(issuer))
        })
        .find(|(_, c)| match cert.verify_signature(Some(c.public_key())) {
            Ok(()) => true,
            Err(e) => {
                *sig_error = Some(e.to_string());
                false
            }
        })
}
fn check_validity(c: &X509Certificate<'_>, now: ASN1Time) -> Result<(), PkiError> {
    if c.validity().is_valid_at(now) {
        return Ok(());
    }
    Err(PkiError::NotValidAt {
        subject: name_of(c),
        at: fmt_time(now),
        not_before: fmt_time(c.validity().not_before),
        not_after: fmt_time(c.validity().not_after),
    })
}

/// Issuer checks: cA, keyCertSign, pathLenConstraint given `below` CA certs under it.
fn check_issuer(c: &X509Certificate<'_>, below: usize) -> Result<(), PkiError> {
    let subject = name_of(c);
    let bc = c
        .basic_constraints()
        .map_err(|_| PkiError::IssuerNotCa {
            subject: subject.clone(),
            reason: "malformed basicConstraints",
        })?
        .map(|b| b.value.clone());
    let Some(bc) = bc.filter(|b| b.ca) else {
        return Err(PkiError::IssuerNotCa {
            subject,
            reason: "basicConstraints cA is not set",
        });
    };
    if let Ok(Some(ku)) = c.key_usage() {
        if !ku.value.key_cert_sign() {
            return Err(PkiError::IssuerNotCa {
                subject,
                reason: "keyUsage lacks keyCertSign",
            });
        }
    } else if c.key_usage().is_err() {
        return Err(PkiError::IssuerNotCa {
            subject,
            reason: "malformed keyUsage",
        });
    }
    if let Some(max) = bc.path_len_constraint {
        if below > max as usize {
            return Err(PkiError::ChainTooLong {
                subject,
                reason: format!("pathLenConstraint {max}, {below} intermediate CA(s) below"),
            });
        }
    }
    Ok(())
}

/// The peer's own certificate must be meant for signing IKE AUTH: a keyUsage, when
/// present, has digitalSignature; an extendedKeyUsage, when present, allows TLS
/// server or client authentication, IKE (id-kp-ipsecIKE, RFC 4945) or any purpose.
//= https://www.rfc-editor.org/rfc/rfc5280#section-4.2.1.12
//# If the extension is present, then the certificate MUST only be used
//# for one of the purposes indicated.
fn check_end_entity_usage(c: &X509Certificate<'_>) -> Result<(), PkiError> {
    let bad = |reason: &'static str| PkiError::EndEntityUsage {
        subject: name_of(c),
        reason,
    };
    match c.key_usage() {
        Ok(Some(ku)) if !ku.value.digital_signature() => {
            return Err(bad("its keyUsage lacks digitalSignature"))
        }
        Ok(_) => {}
        Err(_) => return Err(bad("its keyUsage is malformed")),
    }
    const IPSEC_IKE: &str = "1.3.6.1.5.5.7.3.17";
    match c.extended_key_usage() {
        Ok(Some(eku)) => {
            let e = &eku.value;
            let ike = e.other.iter().any(|o| o.to_id_string() == IPSEC_IKE);
            if !(e.any || e.server_auth || e.client_auth || ike) {
                return Err(bad(
                    "its extendedKeyUsage has none of serverAuth, clientAuth, ipsecIKE, anyExtendedKeyUsage",
                ));
            }
        }
        Ok(None) => {}
        Err(_) => return Err(bad("its extendedKeyUsage is malformed")),
    }
    Ok(())
}

//= https://www.rfc-editor.org/rfc/rfc5280#section-4.2
//# A certificate-using system MUST reject the certificate if it encounters
//# a critical extension it does not recognize or a critical extension
//# that contains information that it cannot process.
/// Refuses critical extensions other than the ones path validation here handles
/// (basicConstraints, keyUsage, subjectAltName) or that carry no constraint we
/// would have to enforce (extendedKeyUsage, certificatePolicies without policy
/// processing, key identifiers). nameConstraints and policy constraints are refused.
fn check_critical_extensions(c: &X509Certificate<'_>) -> Result<(), PkiError> {
    const UNDERSTOOD: &[&str] = &[
        "2.5.29.19", // basicConstraints
        "2.5.29.15", // keyUsage
        "2.5.29.17", // subjectAltName
        "2.5.29.37", // extendedKeyUsage
        "2.5.29.32", // certificatePolicies
        "2.5.29.14", // subjectKeyIdentifier
        "2.5.29.35", // authorityKeyIdentifier
    ];
    for ext in c.extensions().iter().filter(|e| e.critical) {
        let oid = ext.oid.to_id_string();
        if !UNDERSTOOD.contains(&oid.as_str()) {
            return Err(PkiError::UnsupportedCriticalExtension {
                subject: name_of(c),
                oid,
            });
        }
    }
    Ok(())
}

/// Refuses SHA-1 and MD5 certificate signatures.
fn check_signature_strength(c: &X509Certificate<'_>) -> Result<(), PkiError> {
    let oid = c.signature_algorithm.algorithm.to_id_string();
    const WEAK: &[&str] = &[
        "1.2.840.113549.1.1.4", // md5WithRSAEncryption
        "1.2.840.113549.1.1.5", // sha1WithRSAEncryption
        "1.3.14.3.2.29",        // sha1WithRSA (OIW)
        "1.2.840.10045.4.1",    // ecdsa-with-SHA1
        "1.2.840.10040.4.3",    // dsa-with-sha1
    ];
    if WEAK.contains(&oid.as_str()) {
        return Err(PkiError::WeakCertificateSignature {
            subject: name_of(c),
            alg: oid,
        });
    }
    Ok(())
}

impl TrustStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a trust anchor; it must be a CA certificate (basicConstraints cA).
    pub fn add(&mut self, ca: Certificate) -> Result<(), PkiError> {
        if !ca.is_ca() {
            return Err(PkiError::NotACa {
                subject: ca.subject().map(|s| s.to_string()).unwrap_or_default(),
            });
        }
        if !self.anchors.contains(&ca) {
            self.anchors.push(ca);
        }
        Ok(())
    }

    /// Reads a CA file (PEM with one or more certificates, or DER) and adds all.
    pub fn load_file(&mut self, path: impl AsRef<Path>) -> Result<(), PkiError> {
        let path = path.as_ref();
        let data = std::fs::read(path).map_err(|source| PkiError::Io {
            what: "CA certificate",
            path: path.to_path_buf(),
            source,
        })?;
        let certs =
            Certificate::from_bytes(&data).map_err(|e| e.in_file("CA certificate", path))?;
        for c in certs {
            self.add(c).map_err(|e| e.in_file("CA certificate", path))?;
        }
        Ok(())
    }

    /// Builds a store from CA files.
    pub fn from_files<P: AsRef<Path>>(paths: &[P]) -> Result<Self, PkiError> {
        let mut store = Self::new();
        for p in paths {
            store.load_file(p)?;
        }
        Ok(store)
    }

    /// The trust anchors.
    pub fn anchors(&self) -> &[Certificate] {
        &self.anchors
    }

    /// CERTREQ Certification Authority data (RFC 7296 §3.7): the concatenated
    /// SHA-1 hashes of each anchor's SubjectPublicKeyInfo.
    pub fn certreq_data(&self) -> Vec<u8> {
        self.anchors
            .iter()
            .filter_map(|a| a.spki_sha1().ok())
            .flatten()
            .collect()
    }

    /// Validates `end_entity` (with `intermediates` as sent by the peer, any order)
    /// against the anchors at time `now`, and returns the peer's key and names.
    ///
    /// Errors say which certificate failed and why: unknown issuer, bad signature,
    /// outside validity, issuer not a CA, path too long, weak (SHA-1) signature.
    pub fn verify_chain(
        &self,
        end_entity: &Certificate,
        intermediates: &[Certificate],
        now: SystemTime,
    ) -> Result<VerifiedPeer, PkiError> {
        let at = asn1_time(now)?;
        let ee = end_entity.parsed()?;
        let inter = parse_all(intermediates)?;
        let anchors = parse_all(&self.anchors)?;

        check_validity(&ee, at)?;
        check_end_entity_usage(&ee)?;
        let mut path = vec![end_entity.subject()?];
        let mut current = ee.clone();
        let mut cas_below = 0usize;
        let mut used: Vec<usize> = Vec::new();
        loop {
            if path.len() >= MAX_CHAIN_LEN {
                return Err(PkiError::ChainTooLong {
                    subject: name_of(&current),
                    reason: format!("more than {MAX_CHAIN_LEN} certificates"),
                });
            }
            check_signature_strength(&current)?;
            check_critical_extensions(&current)?;
            let issuer_dn = DistinguishedName::from_der(current.issuer().as_raw())
                .map_err(PkiError::BadCertificate)?;
            let mut last_sig_error = None;
            // 1. A trust anchor that signed `current`: done.
            let anchor = find_signer(
                &current,
                &issuer_dn,
                anchors.iter().enumerate(),
                &mut last_sig_error,
            );
            if let Some((_, anchor)) = anchor {
                check_validity(anchor, at)?;
                check_critical_extensions(anchor)?;
                check_issuer(anchor, cas_below)?;
                path.push(issuer_dn);
                return Ok(VerifiedPeer {
                    public_key: end_entity.public_key()?,
                    subject: end_entity.subject()?,
                    alt_names: end_entity.subject_alt_names(),
                    certificate: end_entity.clone(),
                    path,
                });
            }
            // 2. An intermediate from the peer that signed `current`: climb. Each
            //    intermediate is used at most once, so a self-signed certificate
            //    the peer sends (an untrusted root) ends the search.
            let unused = inter.iter().enumerate().filter(|(n, _)| !used.contains(n));
            let next = find_signer(&current, &issuer_dn, unused, &mut last_sig_error);
            match (next, last_sig_error) {
                (Some((n, i)), _) => {
                    used.push(n);
                    check_validity(i, at)?;
                    check_issuer(i, cas_below)?;
                    cas_below += 1;
                    path.push(issuer_dn);
                    current = i.clone();
                }
                (None, Some(reason)) => {
                    return Err(PkiError::BadCertificateSignature {
                        subject: name_of(&current),
                        issuer: issuer_dn.to_string(),
                        reason,
                    })
                }
                (None, None) => {
                    return Err(PkiError::UntrustedIssuer {
                        subject: name_of(&current),
                        issuer: issuer_dn.to_string(),
                    })
                }
            }
        }
    }
}
