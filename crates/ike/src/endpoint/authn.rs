//! Authentication payloads (§2.15, RFC 7427): our AUTH and CERT payloads, and the
//! check of the peer's AUTH (PSK or certificate chain naming its ID).

use super::*;

pub(super) fn hash_algorithms_notify() -> Payload {
    Payload::notify(
        notify::SIGNATURE_HASH_ALGORITHMS,
        plexgate_pki::encode_hash_algorithms(plexgate_pki::SUPPORTED_HASH_ALGORITHMS),
    )
}

/// The hash algorithms a peer announced (empty when none or malformed).
pub(super) fn peer_hashes(p: &[Payload]) -> Vec<u16> {
    find_notify(p, notify::SIGNATURE_HASH_ALGORITHMS)
        .and_then(|n| plexgate_pki::decode_hash_algorithms(&n.data).ok())
        .unwrap_or_default()
}

/// Our AUTH payload (and the CERT payloads that go with it) over `octets`.
pub(super) fn make_auth(
    pc: &PeerConfig,
    prf: Prf,
    octets: &[u8],
    peer_hashes: &[u16],
) -> Result<(Vec<Payload>, Payload), String> {
    match &pc.auth {
        AuthConfig::Psk(k) => Ok((
            Vec::new(),
            Payload::Auth {
                method: 2,
                data: crypto::psk_auth(prf, k, &[octets]),
            },
        )),
        AuthConfig::Cert { credentials, .. } => {
            let (method, data) = credentials
                .signer
                .sign(octets, peer_hashes)
                .map_err(|e| format!("cannot sign our AUTH: {e}"))?;
            //= https://www.rfc-editor.org/rfc/rfc7296#section-3.6
            //# The first certificate provided MUST contain the public key used to
            //# verify the AUTH field.
            let certs = credentials
                .cert_payloads()
                .into_iter()
                .map(|d| Payload::Cert {
                    encoding: plexgate_pki::CERT_ENCODING_X509_SIGNATURE,
                    data: d.to_vec(),
                })
                .collect();
            Ok((certs, Payload::Auth { method, data }))
        }
    }
}

/// Check the peer's AUTH payload (and for certificates its CERT chain and that the
/// certificate names its ID). The error is a log line.
pub(super) fn check_auth(
    pc: &PeerConfig,
    prf: Prf,
    octets: &[u8],
    id: &Identification,
    p: &[Payload],
    wall: SystemTime,
) -> Result<(), String> {
    let Some((method, data)) = p.iter().find_map(|x| match x {
        Payload::Auth { method, data } => Some((*method, data)),
        _ => None,
    }) else {
        return Err(format!("no AUTH payload from '{id}'"));
    };
    match &pc.auth {
        AuthConfig::Psk(k) => {
            if method != 2 {
                return Err(format!(
                    "peer '{id}' uses auth method {method}, config expects PSK"
                ));
            }
            if !ring_eq(&crypto::psk_auth(prf, k, &[octets]), data) {
                return Err(format!(
                    "pre-shared key AUTH of '{id}' does not verify (wrong PSK?)"
                ));
            }
            Ok(())
        }
        AuthConfig::Cert { trust, .. } => {
            let certs = cert_payloads(p)?;
            let identity = plexgate_pki::Identity::from_type_and_data(id.id_type, &id.data)
                .map_err(|e| format!("peer ID '{id}': {e}"))?;
            let pa = plexgate_pki::PeerAuth {
                cert_payloads: &certs,
                identity: &identity,
                auth_method: method,
                auth_data: data,
                signed_octets: octets,
            };
            trust
                .authenticate_peer(&pa, wall)
                .map(|_| ())
                .map_err(|e| format!("certificate authentication of '{id}' failed: {e}"))
        }
    }
}

/// At most this many CERT payloads are looked at in one message (an end-entity
/// certificate and intermediates; longer chains are refused anyway).
const MAX_CERT_PAYLOADS: usize = 8;
/// The largest certificate accepted in a CERT payload, in bytes.
const MAX_CERT_LEN: usize = 16 * 1024;

/// The X.509 certificates of a message's CERT payloads, bounded in number and size
/// before anything parses them.
fn cert_payloads(p: &[Payload]) -> Result<Vec<&[u8]>, String> {
    let all: Vec<(u8, &[u8])> = p
        .iter()
        .filter_map(|x| match x {
            Payload::Cert { encoding, data } => Some((*encoding, data.as_slice())),
            _ => None,
        })
        .collect();
    if all.len() > MAX_CERT_PAYLOADS {
        return Err(format!(
            "{} CERT payloads, more than the {MAX_CERT_PAYLOADS} accepted",
            all.len()
        ));
    }
    if let Some((_, big)) = all.iter().find(|(_, d)| d.len() > MAX_CERT_LEN) {
        return Err(format!(
            "a CERT payload of {} bytes, more than the {MAX_CERT_LEN} accepted",
            big.len()
        ));
    }
    Ok(all
        .into_iter()
        .filter(|(e, _)| *e == plexgate_pki::CERT_ENCODING_X509_SIGNATURE)
        .map(|(_, d)| d)
        .collect())
}

pub(super) fn ring_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
