//! Diffie-Hellman key exchange: X25519, P-256 and P-384 through ring, MODP-2048
//! (RFC 3526) with num-bigint.

use num_bigint::BigUint;
use ring::agreement;
use zeroize::{Zeroize, Zeroizing};

use super::{dh_id, CryptoError, Rng};

/// RFC 3526 §3: the 2048-bit MODP group (id 14), generator 2.
const MODP_2048_P: &str = "FFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD129024E088A67CC74020BBEA63B139B22514A08798E3404DDEF9519B3CD3A431B302B0A6DF25F14374FE1356D6D51C245E485B576625E7EC6F44C42E9A637ED6B0BFF5CB6F406B7EDEE386BFB5A899FA5AE9F24117C4B1FE649286651ECE45B3DC2007CB8A163BF0598DA48361C55D39A69163FA8FD24CF5F83655D23DCA3AD961C62F356208552BB9ED529077096966D670C354E4ABC9804F1746C08CA18217C32905E462E36CE3BE39E772C180E86039B2783A2EC07A28FB5C55DF06F4C52C9DE2BCBF6955817183995497CEA956AE515D2261898FA051015728E5A8AACAA68FFFFFFFFFFFFFFFF";

pub(super) fn modp_2048() -> BigUint {
    // The constant is valid hex; parse failure would be a build-time typo caught by tests.
    BigUint::parse_bytes(MODP_2048_P.as_bytes(), 16).unwrap_or_default()
}

/// A Diffie-Hellman private value waiting for the peer's public value.
pub enum DhPrivate {
    /// ECDH through ring (X25519, P-256, P-384).
    Ecdh(agreement::EphemeralPrivateKey, u16),
    /// MODP-2048 exponent (big-endian bytes, wiped on drop; the big-number
    /// temporaries of the arithmetic are not).
    Modp(Zeroizing<Vec<u8>>),
}

impl std::fmt::Debug for DhPrivate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DhPrivate(..)")
    }
}

fn ring_alg(group: u16) -> Option<&'static agreement::Algorithm> {
    Some(match group {
        dh_id::CURVE25519 => &agreement::X25519,
        dh_id::ECP_256 => &agreement::ECDH_P256,
        dh_id::ECP_384 => &agreement::ECDH_P384,
        _ => return None,
    })
}

/// Is the DH group implemented?
pub fn dh_supported(group: u16) -> bool {
    group == dh_id::MODP_2048 || ring_alg(group).is_some()
}

/// Generate a key pair; returns the private part and the KE payload data.
/// ECDH keys come from ring's own system RNG (ring does not take a caller RNG);
/// MODP exponents come from `rng`.
pub fn dh_generate(group: u16, rng: &mut dyn Rng) -> Result<(DhPrivate, Vec<u8>), CryptoError> {
    if group == dh_id::MODP_2048 {
        let mut x = Zeroizing::new(vec![0u8; 32]);
        rng.fill(&mut x);
        x[0] |= 0x80;
        let p = modp_2048();
        let y = BigUint::from(2u8).modpow(&BigUint::from_bytes_be(&x), &p);
        let mut pubv = y.to_bytes_be();
        while pubv.len() < 256 {
            pubv.insert(0, 0);
        }
        return Ok((DhPrivate::Modp(x), pubv));
    }
    let alg = ring_alg(group).ok_or(CryptoError::Unsupported("DH group"))?;
    let sys = ring::rand::SystemRandom::new();
    let k = agreement::EphemeralPrivateKey::generate(alg, &sys)
        .map_err(|_| CryptoError::Unsupported("DH keygen"))?;
    let p = k
        .compute_public_key()
        .map_err(|_| CryptoError::Unsupported("DH keygen"))?;
    //= https://www.rfc-editor.org/rfc/rfc5903#section-7
    //# the Diffie-Hellman public value is [...] x and y [...] concatenated
    let pubv = match group {
        dh_id::CURVE25519 => p.as_ref().to_vec(),
        _ => p.as_ref().get(1..).unwrap_or(&[]).to_vec(),
    };
    Ok((DhPrivate::Ecdh(k, group), pubv))
}

/// Compute g^ir from our private value and the peer's KE data (wiped on drop).
pub fn dh_agree(private: DhPrivate, peer: &[u8]) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
    match private {
        DhPrivate::Modp(x) => {
            let p = modp_2048();
            let y = BigUint::from_bytes_be(peer);
            if peer.len() != 256 || y <= BigUint::from(1u8) || y >= &p - 1u8 {
                return Err(CryptoError::BadPublic(dh_id::MODP_2048));
            }
            let mut s = y.modpow(&BigUint::from_bytes_be(&x), &p).to_bytes_be();
            let mut out = Zeroizing::new(vec![0u8; 256usize.saturating_sub(s.len())]);
            out.extend_from_slice(&s);
            s.zeroize();
            Ok(out)
        }
        DhPrivate::Ecdh(k, group) => {
            let alg = ring_alg(group).ok_or(CryptoError::Unsupported("DH group"))?;
            let bytes: Vec<u8> = if group == dh_id::CURVE25519 {
                peer.to_vec()
            } else {
                let mut v = Vec::with_capacity(peer.len() + 1);
                v.push(4);
                v.extend_from_slice(peer);
                v
            };
            let pk = agreement::UnparsedPublicKey::new(alg, bytes);
            agreement::agree_ephemeral(k, &pk, |s| Zeroizing::new(s.to_vec()))
                .map_err(|_| CryptoError::BadPublic(group))
        }
    }
}
