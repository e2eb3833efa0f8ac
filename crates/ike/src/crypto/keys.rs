//! Key derivation (RFC 7296 §2.13-§2.18): SKEYSEED and the SK_* keys of an IKE SA,
//! Child SA KEYMAT, the PSK AUTH value and signed octets (§2.15) and the NAT detection
//! hashes (§2.23).

use ring::digest;
use zeroize::{Zeroize, Zeroizing};

use super::{encr_id, integ_id, CryptoError, Prf};

/// The IKE SA encryption/integrity suite chosen in IKE_SA_INIT.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IkeSuite {
    /// ENCR id.
    pub encr: u16,
    /// Encryption key length in bits.
    pub encr_bits: u16,
    /// INTEG id (None for AEAD).
    pub integ: Option<u16>,
    /// PRF.
    pub prf: Prf,
    /// DH group.
    pub dh: u16,
}

impl IkeSuite {
    /// Is the cipher an AEAD (GCM)?
    pub fn is_aead(&self) -> bool {
        self.encr == encr_id::AES_GCM_16
    }
    /// SK_e length: the key, plus the 4-byte salt for GCM (RFC 5282 §7.1).
    pub fn encr_key_len(&self) -> usize {
        self.encr_bits as usize / 8 + if self.is_aead() { 4 } else { 0 }
    }
    /// SK_a length (RFC 4868: key = full hash length).
    pub fn integ_key_len(&self) -> usize {
        match self.integ {
            Some(integ_id::HMAC_SHA2_256_128) => 32,
            Some(integ_id::HMAC_SHA2_384_192) => 48,
            Some(integ_id::HMAC_SHA2_512_256) => 64,
            _ => 0,
        }
    }
    /// Check the combination is one we implement.
    pub fn validate(&self) -> Result<(), CryptoError> {
        match (self.encr, self.encr_bits, self.integ) {
            (encr_id::AES_GCM_16, 128 | 256, None) => {}
            (encr_id::AES_CBC, 128 | 256, Some(12..=14)) => {}
            _ => {
                return Err(CryptoError::Unsupported(
                    "IKE encryption/integrity combination",
                ))
            }
        }
        if !matches!(self.dh, 14 | 19 | 20 | 31) {
            return Err(CryptoError::Unsupported("DH group"));
        }
        Ok(())
    }
}

/// The seven keys of an IKE SA (§2.14), wiped on drop.
#[derive(Clone, PartialEq, Eq)]
pub struct IkeKeys {
    /// SK_d: derives Child SA keys.
    pub sk_d: Vec<u8>,
    /// SK_ai: integrity, initiator to responder.
    pub sk_ai: Vec<u8>,
    /// SK_ar: integrity, responder to initiator.
    pub sk_ar: Vec<u8>,
    /// SK_ei: encryption, initiator to responder.
    pub sk_ei: Vec<u8>,
    /// SK_er: encryption, responder to initiator.
    pub sk_er: Vec<u8>,
    /// SK_pi: AUTH of the initiator.
    pub sk_pi: Vec<u8>,
    /// SK_pr: AUTH of the responder.
    pub sk_pr: Vec<u8>,
}

impl Drop for IkeKeys {
    fn drop(&mut self) {
        for k in [
            &mut self.sk_d,
            &mut self.sk_ai,
            &mut self.sk_ar,
            &mut self.sk_ei,
            &mut self.sk_er,
            &mut self.sk_pi,
            &mut self.sk_pr,
        ] {
            k.zeroize();
        }
    }
}

impl std::fmt::Debug for IkeKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("IkeKeys(..)")
    }
}

//= https://www.rfc-editor.org/rfc/rfc7296#section-2.14
//# SKEYSEED = prf(Ni | Nr, g^ir)
/// SKEYSEED for a new IKE SA (wiped on drop).
pub fn skeyseed(prf: Prf, ni: &[u8], nr: &[u8], shared: &[u8]) -> Zeroizing<Vec<u8>> {
    let mut key = Vec::with_capacity(ni.len() + nr.len());
    key.extend_from_slice(ni);
    key.extend_from_slice(nr);
    Zeroizing::new(prf.prf(&key, &[shared]))
}

//= https://www.rfc-editor.org/rfc/rfc7296#section-2.18
//# SKEYSEED = prf(SK_d (old), g^ir (new) | Ni | Nr)
/// SKEYSEED for an IKE SA rekeyed with CREATE_CHILD_SA.
pub fn skeyseed_rekey(
    prf_old: Prf,
    sk_d_old: &[u8],
    shared: &[u8],
    ni: &[u8],
    nr: &[u8],
) -> Zeroizing<Vec<u8>> {
    Zeroizing::new(prf_old.prf(sk_d_old, &[shared, ni, nr]))
}

//= https://www.rfc-editor.org/rfc/rfc7296#section-2.14
//# {SK_d | SK_ai | SK_ar | SK_ei | SK_er | SK_pi | SK_pr}
//#                 = prf+ (SKEYSEED, Ni | Nr | SPIi | SPIr)
/// Derive the seven SK_* keys.
pub fn derive_ike_keys(
    suite: &IkeSuite,
    skeyseed: &[u8],
    ni: &[u8],
    nr: &[u8],
    spi_i: u64,
    spi_r: u64,
) -> IkeKeys {
    let p = suite.prf.len();
    let a = suite.integ_key_len();
    let e = suite.encr_key_len();
    let total = 3 * p + 2 * a + 2 * e;
    let km = Zeroizing::new(suite.prf.prf_plus(
        skeyseed,
        &[ni, nr, &spi_i.to_be_bytes(), &spi_r.to_be_bytes()],
        total,
    ));
    let mut at = 0;
    let mut take = |n: usize| -> Vec<u8> {
        let k = km.get(at..at + n).unwrap_or_default().to_vec();
        at += n;
        k
    };
    IkeKeys {
        sk_d: take(p),
        sk_ai: take(a),
        sk_ar: take(a),
        sk_ei: take(e),
        sk_er: take(e),
        sk_pi: take(p),
        sk_pr: take(p),
    }
}

/// The keys of one Child SA: for each direction (encryption key incl. salt, integrity
/// key), wiped on drop.
#[derive(Clone, PartialEq, Eq)]
pub struct ChildKeys {
    /// Initiator to responder: (encr, integ).
    pub i_to_r: (Vec<u8>, Vec<u8>),
    /// Responder to initiator: (encr, integ).
    pub r_to_i: (Vec<u8>, Vec<u8>),
}

impl Drop for ChildKeys {
    fn drop(&mut self) {
        for k in [
            &mut self.i_to_r.0,
            &mut self.i_to_r.1,
            &mut self.r_to_i.0,
            &mut self.r_to_i.1,
        ] {
            k.zeroize();
        }
    }
}

impl std::fmt::Debug for ChildKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ChildKeys(..)")
    }
}

/// ESP encryption key length in bytes, including the salt of AEAD ciphers (RFC 4106
/// §8.1, RFC 7634 §2).
pub fn esp_encr_key_len(encr: u16, bits: u16) -> Option<usize> {
    match (encr, bits) {
        (encr_id::AES_CBC, 128 | 256) => Some(bits as usize / 8),
        (encr_id::AES_GCM_16, 128 | 256) => Some(bits as usize / 8 + 4),
        (encr_id::CHACHA20_POLY1305, _) => Some(36),
        _ => None,
    }
}

/// ESP integrity key length in bytes.
pub fn esp_integ_key_len(integ: Option<u16>) -> Option<usize> {
    match integ {
        None => Some(0),
        Some(integ_id::HMAC_SHA2_256_128) => Some(32),
        Some(integ_id::HMAC_SHA2_384_192) => Some(48),
        Some(integ_id::HMAC_SHA2_512_256) => Some(64),
        Some(_) => None,
    }
}

//= https://www.rfc-editor.org/rfc/rfc7296#section-2.17
//# KEYMAT = prf+(SK_d, Ni | Nr)
//# [...] All keys for SAs carrying data from the initiator to the responder
//# are taken before SAs going from the responder to the initiator.
/// Child SA KEYMAT; `shared` is the PFS g^ir of a CREATE_CHILD_SA with KE.
pub fn derive_child_keys(
    prf: Prf,
    sk_d: &[u8],
    shared: Option<&[u8]>,
    ni: &[u8],
    nr: &[u8],
    encr_len: usize,
    integ_len: usize,
) -> ChildKeys {
    let total = 2 * (encr_len + integ_len);
    let km = Zeroizing::new(match shared {
        Some(g) => prf.prf_plus(sk_d, &[g, ni, nr], total),
        None => prf.prf_plus(sk_d, &[ni, nr], total),
    });
    let mut at = 0;
    let mut take = |n: usize| -> Vec<u8> {
        let k = km.get(at..at + n).unwrap_or_default().to_vec();
        at += n;
        k
    };
    let ei = take(encr_len);
    let ai = take(integ_len);
    let er = take(encr_len);
    let ar = take(integ_len);
    ChildKeys {
        i_to_r: (ei, ai),
        r_to_i: (er, ar),
    }
}

//= https://www.rfc-editor.org/rfc/rfc7296#section-2.15
//# AUTH = prf( prf(Shared Secret, "Key Pad for IKEv2"), <InitiatorSignedOctets>)
/// PSK AUTH value. `signed_octets` = message | nonce | prf(SK_p, ID').
pub fn psk_auth(prf: Prf, psk: &[u8], signed_octets: &[&[u8]]) -> Vec<u8> {
    let k = Zeroizing::new(prf.prf(psk, &[b"Key Pad for IKEv2"]));
    prf.prf(&k, signed_octets)
}

//= https://www.rfc-editor.org/rfc/rfc7296#section-2.15
//# InitiatorSignedOctets = RealMessage1 | NonceRData | MACedIDForI
//# MACedIDForI = prf(SK_pi, RestOfInitIDPayload)
/// The octets signed (or MACed) by one side.
pub fn signed_octets(
    prf: Prf,
    message: &[u8],
    peer_nonce: &[u8],
    sk_p: &[u8],
    id_body: &[u8],
) -> Vec<u8> {
    let mut v = Vec::with_capacity(message.len() + peer_nonce.len() + prf.len());
    v.extend_from_slice(message);
    v.extend_from_slice(peer_nonce);
    v.extend_from_slice(&prf.prf(sk_p, &[id_body]));
    v
}

//= https://www.rfc-editor.org/rfc/rfc7296#section-2.23
//# the hash is calculated as follows: SHA-1 ( SPIi | SPIr | IP | Port )
/// NAT detection hash.
pub fn natd_hash(spi_i: u64, spi_r: u64, addr: std::net::SocketAddr) -> [u8; 20] {
    let mut ctx = digest::Context::new(&digest::SHA1_FOR_LEGACY_USE_ONLY);
    ctx.update(&spi_i.to_be_bytes());
    ctx.update(&spi_r.to_be_bytes());
    match addr.ip() {
        std::net::IpAddr::V4(a) => ctx.update(&a.octets()),
        std::net::IpAddr::V6(a) => ctx.update(&a.octets()),
    }
    ctx.update(&addr.port().to_be_bytes());
    let mut out = [0u8; 20];
    out.copy_from_slice(ctx.finish().as_ref());
    out
}
