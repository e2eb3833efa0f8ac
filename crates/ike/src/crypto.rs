//! IKEv2 cryptography: the PRF and prf+ (RFC 7296 §2.13), SKEYSEED and the SK_* keys
//! (§2.14), Child SA KEYMAT (§2.17), PSK AUTH (§2.15), NAT detection hashes (§2.23),
//! Diffie-Hellman (X25519, P-256, P-384 through ring; MODP-2048 with num-bigint), and
//! the Encrypted payload (§3.14) with AES-CBC + HMAC-SHA2 (RFC 4868) or AES-GCM-16
//! (RFC 5282).

use num_bigint::BigUint;
use ring::{aead, agreement, digest, hmac};

use crate::message::{Header, HEADER_LEN};

/// A source of random bytes. Tests use a seeded one; production uses [`SystemRng`].
pub trait Rng: Send {
    /// Fill `buf` with random bytes.
    fn fill(&mut self, buf: &mut [u8]);
}

/// The operating system's random generator (ring's `SystemRandom`).
pub struct SystemRng(ring::rand::SystemRandom);

impl SystemRng {
    /// A new system RNG.
    pub fn new() -> Self {
        SystemRng(ring::rand::SystemRandom::new())
    }
}

impl Default for SystemRng {
    fn default() -> Self {
        Self::new()
    }
}

impl Rng for SystemRng {
    fn fill(&mut self, buf: &mut [u8]) {
        use ring::rand::SecureRandom;
        // The OS RNG failing is not recoverable; ring documents it does not in practice.
        if self.0.fill(buf).is_err() {
            buf.iter_mut().for_each(|b| *b = 0);
        }
    }
}

/// A small deterministic RNG (xorshift-based; NOT for production keys) for tests and
/// benches.
pub struct SeededRng(u64);

impl SeededRng {
    /// Seeded generator.
    pub fn new(seed: u64) -> Self {
        SeededRng(seed ^ 0x9e37_79b9_7f4a_7c15)
    }
}

impl Rng for SeededRng {
    fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            // splitmix64
            self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^= z >> 31;
            chunk.copy_from_slice(&z.to_be_bytes()[..chunk.len()]);
        }
    }
}

/// Crypto errors.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CryptoError {
    /// Integrity check or AEAD tag failed.
    #[error("integrity check of the encrypted payload failed")]
    Integrity,
    /// The SK payload is shorter than IV + ICV or not a multiple of the block size.
    #[error("malformed encrypted payload")]
    Malformed,
    /// The padding length byte is larger than the plaintext.
    #[error("bad padding in encrypted payload")]
    Padding,
    /// A peer's public value that the group rejects.
    #[error("invalid Diffie-Hellman public value for group {0}")]
    BadPublic(u16),
    /// A transform we do not implement.
    #[error("unsupported algorithm {0}")]
    Unsupported(&'static str),
}

/// PRF transform ids (IANA "Transform Type 2").
pub mod prf_id {
    /// PRF_HMAC_SHA2_256
    pub const HMAC_SHA2_256: u16 = 5;
    /// PRF_HMAC_SHA2_384
    pub const HMAC_SHA2_384: u16 = 6;
    /// PRF_HMAC_SHA2_512
    pub const HMAC_SHA2_512: u16 = 7;
}

/// Integrity transform ids (IANA "Transform Type 3").
pub mod integ_id {
    /// AUTH_HMAC_SHA2_256_128
    pub const HMAC_SHA2_256_128: u16 = 12;
    /// AUTH_HMAC_SHA2_384_192
    pub const HMAC_SHA2_384_192: u16 = 13;
    /// AUTH_HMAC_SHA2_512_256
    pub const HMAC_SHA2_512_256: u16 = 14;
}

/// Encryption transform ids (IANA "Transform Type 1").
pub mod encr_id {
    /// ENCR_AES_CBC
    pub const AES_CBC: u16 = 12;
    /// ENCR_AES_GCM_16
    pub const AES_GCM_16: u16 = 20;
    /// ENCR_CHACHA20_POLY1305
    pub const CHACHA20_POLY1305: u16 = 28;
}

/// Diffie-Hellman group ids (IANA "Transform Type 4").
pub mod dh_id {
    /// 2048-bit MODP group (RFC 3526)
    pub const MODP_2048: u16 = 14;
    /// 256-bit random ECP group (RFC 5903)
    pub const ECP_256: u16 = 19;
    /// 384-bit random ECP group (RFC 5903)
    pub const ECP_384: u16 = 20;
    /// Curve25519 (RFC 8031)
    pub const CURVE25519: u16 = 31;
}

/// A negotiated PRF.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Prf(hmac::Algorithm, u16);

impl Prf {
    /// From its transform id.
    pub fn from_id(id: u16) -> Option<Prf> {
        Some(match id {
            prf_id::HMAC_SHA2_256 => Prf(hmac::HMAC_SHA256, id),
            prf_id::HMAC_SHA2_384 => Prf(hmac::HMAC_SHA384, id),
            prf_id::HMAC_SHA2_512 => Prf(hmac::HMAC_SHA512, id),
            _ => return None,
        })
    }
    /// Transform id.
    pub fn id(&self) -> u16 {
        self.1
    }
    /// Output (and preferred key) length.
    pub fn len(&self) -> usize {
        self.0.digest_algorithm().output_len()
    }
    /// Never empty; here for clippy's `len_without_is_empty`.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// prf(key, data) over any number of data pieces.
    pub fn prf(&self, key: &[u8], data: &[&[u8]]) -> Vec<u8> {
        let k = hmac::Key::new(self.0, key);
        let mut ctx = hmac::Context::with_key(&k);
        for d in data {
            ctx.update(d);
        }
        ctx.sign().as_ref().to_vec()
    }

    /// prf+ (§2.13): `T1 | T2 | ...` truncated to `len`.
    //= https://www.rfc-editor.org/rfc/rfc7296#section-2.13
    //# prf+ (K,S) = T1 | T2 | T3 | T4 | ...
    //# where:
    //# T1 = prf (K, S | 0x01)
    //# T2 = prf (K, T2 | S | 0x02)
    pub fn prf_plus(&self, key: &[u8], seed: &[&[u8]], len: usize) -> Vec<u8> {
        let k = hmac::Key::new(self.0, key);
        let mut out = Vec::with_capacity(len + self.len());
        let mut prev: Vec<u8> = Vec::new();
        let mut i: u8 = 1;
        while out.len() < len {
            let mut ctx = hmac::Context::with_key(&k);
            ctx.update(&prev);
            for s in seed {
                ctx.update(s);
            }
            ctx.update(&[i]);
            prev = ctx.sign().as_ref().to_vec();
            out.extend_from_slice(&prev);
            i = i.wrapping_add(1);
        }
        out.truncate(len);
        out
    }
}

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

/// The seven keys of an IKE SA (§2.14).
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

impl std::fmt::Debug for IkeKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("IkeKeys(..)")
    }
}

//= https://www.rfc-editor.org/rfc/rfc7296#section-2.14
//# SKEYSEED = prf(Ni | Nr, g^ir)
/// SKEYSEED for a new IKE SA.
pub fn skeyseed(prf: Prf, ni: &[u8], nr: &[u8], shared: &[u8]) -> Vec<u8> {
    let mut key = Vec::with_capacity(ni.len() + nr.len());
    key.extend_from_slice(ni);
    key.extend_from_slice(nr);
    prf.prf(&key, &[shared])
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
) -> Vec<u8> {
    prf_old.prf(sk_d_old, &[shared, ni, nr])
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
    let km = suite.prf.prf_plus(
        skeyseed,
        &[ni, nr, &spi_i.to_be_bytes(), &spi_r.to_be_bytes()],
        total,
    );
    let mut it = km.into_iter();
    let mut take = |n: usize| -> Vec<u8> { it.by_ref().take(n).collect() };
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

/// The keys of one Child SA: for each direction (encryption key incl. salt, integrity key).
#[derive(Clone, PartialEq, Eq)]
pub struct ChildKeys {
    /// Initiator to responder: (encr, integ).
    pub i_to_r: (Vec<u8>, Vec<u8>),
    /// Responder to initiator: (encr, integ).
    pub r_to_i: (Vec<u8>, Vec<u8>),
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
    let km = match shared {
        Some(g) => prf.prf_plus(sk_d, &[g, ni, nr], total),
        None => prf.prf_plus(sk_d, &[ni, nr], total),
    };
    let mut it = km.into_iter();
    let mut take = |n: usize| -> Vec<u8> { it.by_ref().take(n).collect() };
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
    let k = prf.prf(psk, &[b"Key Pad for IKEv2"]);
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

/// RFC 3526 §3: the 2048-bit MODP group (id 14), generator 2.
const MODP_2048_P: &str = "FFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD129024E088A67CC74020BBEA63B139B22514A08798E3404DDEF9519B3CD3A431B302B0A6DF25F14374FE1356D6D51C245E485B576625E7EC6F44C42E9A637ED6B0BFF5CB6F406B7EDEE386BFB5A899FA5AE9F24117C4B1FE649286651ECE45B3DC2007CB8A163BF0598DA48361C55D39A69163FA8FD24CF5F83655D23DCA3AD961C62F356208552BB9ED529077096966D670C354E4ABC9804F1746C08CA18217C32905E462E36CE3BE39E772C180E86039B2783A2EC07A28FB5C55DF06F4C52C9DE2BCBF6955817183995497CEA956AE515D2261898FA051015728E5A8AACAA68FFFFFFFFFFFFFFFF";

fn modp_2048() -> BigUint {
    // The constant is valid hex; parse failure would be a build-time typo caught by tests.
    BigUint::parse_bytes(MODP_2048_P.as_bytes(), 16).unwrap_or_default()
}

/// A Diffie-Hellman private value waiting for the peer's public value.
pub enum DhPrivate {
    /// ECDH through ring (X25519, P-256, P-384).
    Ecdh(agreement::EphemeralPrivateKey, u16),
    /// MODP-2048 exponent.
    Modp(BigUint),
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
        let mut x = [0u8; 32];
        rng.fill(&mut x);
        let x = BigUint::from_bytes_be(&x) | BigUint::from(1u8) << 255u32;
        let p = modp_2048();
        let y = BigUint::from(2u8).modpow(&x, &p);
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

/// Compute g^ir from our private value and the peer's KE data.
pub fn dh_agree(private: DhPrivate, peer: &[u8]) -> Result<Vec<u8>, CryptoError> {
    match private {
        DhPrivate::Modp(x) => {
            let p = modp_2048();
            let y = BigUint::from_bytes_be(peer);
            if peer.len() != 256 || y <= BigUint::from(1u8) || y >= &p - 1u8 {
                return Err(CryptoError::BadPublic(dh_id::MODP_2048));
            }
            let mut s = y.modpow(&x, &p).to_bytes_be();
            while s.len() < 256 {
                s.insert(0, 0);
            }
            Ok(s)
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
            agreement::agree_ephemeral(k, &pk, |s| s.to_vec())
                .map_err(|_| CryptoError::BadPublic(group))
        }
    }
}

/// Sealing and opening of the Encrypted payload for one direction.
pub struct SkCipher<'a> {
    /// The suite.
    pub suite: &'a IkeSuite,
    /// SK_e of the direction (key | salt for GCM).
    pub key_e: &'a [u8],
    /// SK_a of the direction (empty for GCM).
    pub key_a: &'a [u8],
}

impl SkCipher<'_> {
    fn iv_len(&self) -> usize {
        if self.suite.is_aead() {
            8
        } else {
            16
        }
    }
    fn icv_len(&self) -> usize {
        match self.suite.integ {
            None => 16,
            Some(integ_id::HMAC_SHA2_256_128) => 16,
            Some(integ_id::HMAC_SHA2_384_192) => 24,
            Some(_) => 32,
        }
    }
    fn hmac_alg(&self) -> hmac::Algorithm {
        match self.suite.integ {
            Some(integ_id::HMAC_SHA2_384_192) => hmac::HMAC_SHA384,
            Some(integ_id::HMAC_SHA2_512_256) => hmac::HMAC_SHA512,
            _ => hmac::HMAC_SHA256,
        }
    }
    fn gcm_key(&self) -> Result<(aead::LessSafeKey, [u8; 4]), CryptoError> {
        let n = self
            .key_e
            .len()
            .checked_sub(4)
            .ok_or(CryptoError::Malformed)?;
        let alg = if n == 16 {
            &aead::AES_128_GCM
        } else {
            &aead::AES_256_GCM
        };
        let key =
            aead::UnboundKey::new(alg, &self.key_e[..n]).map_err(|_| CryptoError::Malformed)?;
        let mut salt = [0u8; 4];
        salt.copy_from_slice(&self.key_e[n..]);
        Ok((aead::LessSafeKey::new(key), salt))
    }

    /// Build a whole encrypted message: `header` (length/next payload are filled in),
    /// an SK payload whose Next Payload is `inner_first`, around `inner` payload bytes.
    //= https://www.rfc-editor.org/rfc/rfc7296#section-3.14
    //# The Integrity Checksum Data is the cryptographic checksum of the
    //# entire message starting with the Fixed IKE header through the Pad
    //# Length.
    pub fn seal(
        &self,
        header: &Header,
        inner_first: u8,
        inner: &[u8],
        rng: &mut dyn Rng,
    ) -> Result<Vec<u8>, CryptoError> {
        let iv_len = self.iv_len();
        let icv_len = self.icv_len();
        let block = if self.suite.is_aead() { 4 } else { 16 };
        let pad = (block - (inner.len() + 1) % block) % block;
        let ct_len = inner.len() + pad + 1;
        let sk_len = 4 + iv_len + ct_len + icv_len;
        let total = HEADER_LEN + sk_len;
        let mut out = Vec::with_capacity(total);
        let mut h = *header;
        h.next_payload = crate::message::payload_type::SK;
        h.length = total as u32;
        h.emit(&mut out);
        out.push(inner_first);
        out.push(0);
        out.extend_from_slice(&(sk_len as u16).to_be_bytes());
        let mut iv = [0u8; 16];
        rng.fill(&mut iv[..iv_len]);
        out.extend_from_slice(&iv[..iv_len]);
        let pt_start = out.len();
        out.extend_from_slice(inner);
        out.extend(std::iter::repeat_n(0u8, pad));
        out.push(pad as u8);
        if self.suite.is_aead() {
            let (key, salt) = self.gcm_key()?;
            let mut nonce = [0u8; 12];
            nonce[..4].copy_from_slice(&salt);
            nonce[4..].copy_from_slice(&iv[..8]);
            //= https://www.rfc-editor.org/rfc/rfc5282#section-5.1
            //# the associated data [...] MUST consist of the partial
            //# IKEv2 message from the beginning of the IKE Header through
            //# the last octet of the Encrypted Payload header
            let (head, pt) = out.split_at_mut(pt_start);
            let aad = aead::Aad::from(&head[..HEADER_LEN + 4]);
            let tag = key
                .seal_in_place_separate_tag(aead::Nonce::assume_unique_for_key(nonce), aad, pt)
                .map_err(|_| CryptoError::Malformed)?;
            out.extend_from_slice(tag.as_ref());
        } else {
            use cbc::cipher::{block_padding::NoPadding, BlockEncryptMut, KeyIvInit};
            let pt = &mut out[pt_start..];
            let n = pt.len();
            let r = match self.key_e.len() {
                16 => cbc::Encryptor::<aes::Aes128>::new_from_slices(self.key_e, &iv)
                    .map_err(|_| CryptoError::Malformed)?
                    .encrypt_padded_mut::<NoPadding>(pt, n)
                    .map(|_| ()),
                32 => cbc::Encryptor::<aes::Aes256>::new_from_slices(self.key_e, &iv)
                    .map_err(|_| CryptoError::Malformed)?
                    .encrypt_padded_mut::<NoPadding>(pt, n)
                    .map(|_| ()),
                _ => return Err(CryptoError::Malformed),
            };
            r.map_err(|_| CryptoError::Malformed)?;
            let k = hmac::Key::new(self.hmac_alg(), self.key_a);
            let tag = hmac::sign(&k, &out);
            out.extend_from_slice(&tag.as_ref()[..icv_len]);
        }
        Ok(out)
    }

    /// Open the SK payload of a whole datagram whose SK payload body (the last
    /// `sk_body_len` bytes) is `IV | ciphertext | ICV`. Returns the inner payload bytes.
    pub fn open(&self, datagram: &[u8], sk_body_len: usize) -> Result<Vec<u8>, CryptoError> {
        let iv_len = self.iv_len();
        let icv_len = self.icv_len();
        let sk_start = datagram
            .len()
            .checked_sub(sk_body_len + 4)
            .ok_or(CryptoError::Malformed)?;
        if sk_start < HEADER_LEN || sk_body_len < iv_len + icv_len + 1 {
            return Err(CryptoError::Malformed);
        }
        let body = &datagram[sk_start + 4..];
        let (iv, rest) = body.split_at(iv_len);
        let (ct, icv) = rest.split_at(rest.len() - icv_len);
        let mut pt;
        if self.suite.is_aead() {
            let (key, salt) = self.gcm_key()?;
            let mut nonce = [0u8; 12];
            nonce[..4].copy_from_slice(&salt);
            nonce[4..].copy_from_slice(iv);
            let aad = aead::Aad::from(&datagram[..sk_start + 4]);
            pt = rest.to_vec();
            let n = key
                .open_in_place(aead::Nonce::assume_unique_for_key(nonce), aad, &mut pt)
                .map_err(|_| CryptoError::Integrity)?
                .len();
            pt.truncate(n);
        } else {
            let k = hmac::Key::new(self.hmac_alg(), self.key_a);
            let tag = hmac::sign(&k, &datagram[..datagram.len() - icv_len]);
            if !constant_time_eq(&tag.as_ref()[..icv_len], icv) {
                return Err(CryptoError::Integrity);
            }
            if ct.len() % 16 != 0 || ct.is_empty() {
                return Err(CryptoError::Malformed);
            }
            use cbc::cipher::{block_padding::NoPadding, BlockDecryptMut, KeyIvInit};
            pt = ct.to_vec();
            let r = match self.key_e.len() {
                16 => cbc::Decryptor::<aes::Aes128>::new_from_slices(self.key_e, iv)
                    .map_err(|_| CryptoError::Malformed)?
                    .decrypt_padded_mut::<NoPadding>(&mut pt)
                    .map(|_| ()),
                32 => cbc::Decryptor::<aes::Aes256>::new_from_slices(self.key_e, iv)
                    .map_err(|_| CryptoError::Malformed)?
                    .decrypt_padded_mut::<NoPadding>(&mut pt)
                    .map(|_| ()),
                _ => return Err(CryptoError::Malformed),
            };
            r.map_err(|_| CryptoError::Malformed)?;
        }
        let pad = *pt.last().ok_or(CryptoError::Padding)? as usize;
        if pad + 1 > pt.len() {
            return Err(CryptoError::Padding);
        }
        pt.truncate(pt.len() - pad - 1);
        Ok(pt)
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modp_2048_prime_passes_fermat() {
        // Catches any typo in the RFC 3526 constant: 2^(p-1) = 1 mod p for a prime.
        let p = modp_2048();
        assert_eq!(p.bits(), 2048);
        let e = &p - 1u8;
        assert_eq!(BigUint::from(2u8).modpow(&e, &p), BigUint::from(1u8));
        assert_eq!(BigUint::from(3u8).modpow(&e, &p), BigUint::from(1u8));
    }

    #[test]
    fn dh_groups_agree() {
        let mut rng = SeededRng::new(1);
        for g in [14u16, 19, 20, 31] {
            let (a, pa) = dh_generate(g, &mut rng).unwrap();
            let (b, pb) = dh_generate(g, &mut rng).unwrap();
            let s1 = dh_agree(a, &pb).unwrap();
            let s2 = dh_agree(b, &pa).unwrap();
            assert_eq!(s1, s2, "group {g}");
        }
        let (a, _) = dh_generate(19, &mut rng).unwrap();
        assert_eq!(dh_agree(a, &[1, 2, 3]), Err(CryptoError::BadPublic(19)));
    }

    #[test]
    fn prf_plus_matches_rfc4231_hmac_for_first_block() {
        // RFC 4231 test case 2: HMAC-SHA-256(key="Jefe", "what do ya want for nothing?")
        let prf = Prf::from_id(5).unwrap();
        let out = prf.prf(b"Jefe", &[b"what do ya want for nothing?"]);
        assert_eq!(
            hex::encode(out),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        // prf+ T1 = prf(K, S | 0x01), T2 = prf(K, T1 | S | 0x02)
        let k = b"key";
        let t = prf.prf_plus(k, &[b"seed"], 40);
        let t1 = prf.prf(k, &[b"seed", &[1]]);
        let t2 = prf.prf(k, &[&t1, b"seed", &[2]]);
        assert_eq!(&t[..32], &t1[..]);
        assert_eq!(&t[32..], &t2[..8]);
    }

    #[test]
    fn seal_open_round_trip_all_suites() {
        let mut rng = SeededRng::new(7);
        let header = Header {
            spi_i: 1,
            spi_r: 2,
            next_payload: 0,
            version: 0x20,
            exchange: 35,
            flags: 8,
            message_id: 1,
            length: 0,
        };
        for (encr, bits, integ) in [
            (20u16, 128u16, None),
            (20, 256, None),
            (12, 128, Some(12u16)),
            (12, 256, Some(13)),
            (12, 128, Some(14)),
        ] {
            let suite = IkeSuite {
                encr,
                encr_bits: bits,
                integ,
                prf: Prf::from_id(5).unwrap(),
                dh: 31,
            };
            let ke = vec![0x42; suite.encr_key_len()];
            let ka = vec![0x24; suite.integ_key_len()];
            let c = SkCipher {
                suite: &suite,
                key_e: &ke,
                key_a: &ka,
            };
            for len in [0usize, 1, 15, 16, 17, 100] {
                let inner = vec![0xab; len];
                let msg = c.seal(&header, 41, &inner, &mut rng).unwrap();
                let m = crate::message::Message::parse(&msg).unwrap();
                let body_len = match &m.payloads[0] {
                    crate::message::Payload::Sk {
                        body,
                        inner_first: 41,
                    } => body.len(),
                    p => panic!("{p:?}"),
                };
                assert_eq!(c.open(&msg, body_len).unwrap(), inner);
                let mut bad = msg.clone();
                let n = bad.len();
                bad[n - 1] ^= 1;
                assert_eq!(c.open(&bad, body_len), Err(CryptoError::Integrity));
            }
        }
    }
}
