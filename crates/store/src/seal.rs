//! Sealing: every value plexgate writes to the store is encrypted and authenticated
//! with AES-256-GCM (ring) under the site's store key, and every key name is blinded
//! with a keyed hash, so that the store holds no identity, address, SPI or name in
//! clear (`docs/store.md`, "Sealing").
//!
//! A sealed value is `format (1) | schema (2) | key id (4) | nonce (12) | ciphertext
//! | tag (16)`. The associated data binds the site name, the store key the value is
//! stored under, and that whole header (schema version, key id, nonce): a value
//! altered, forged, sealed under another key of the ring, moved to another store key
//! or copied from another site fails to open, with a typed error that is also
//! counted ([`SealCounters`]) for the daemon's metrics. Nonces are random (96 bits
//! from the system RNG); an RNG failure is an error, never a zero nonce. A GCM key
//! stays far below the 2^32 random nonces NIST allows for one key at any rate the
//! store can take; rotate it (below) long before.
//!
//! The [`Keyring`] holds several keys by id: all of them open, one (the write key)
//! seals. Rotation: add the new key to every gateway's ring, switch the write id,
//! let the records be rewritten, drop the old key. Key names are blinded with a key
//! derived from one ring key (the *names key*, by default the write key), which must
//! be the same on every gateway of the site: it is pinned separately so that
//! switching the write key does not rename the ownership keys under a running site.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use ring::{aead, hkdf, hmac, rand};

/// Format byte of a sealed value.
const FORMAT: u8 = 1;
/// Length of the clear header: format, schema, key id, nonce.
pub const HEADER_LEN: usize = 1 + 2 + 4 + aead::NONCE_LEN;
/// Length of the GCM tag.
pub const TAG_LEN: usize = 16;
const SEAL_SALT: &[u8] = b"plexgate-store-seal-v1";
const NAMES_SALT: &[u8] = b"plexgate-store-names-v1";
const AAD_LABEL: &[u8] = b"plexgate-store-v1\0";

/// The id of a key in a [`Keyring`] (carried in clear in every sealed value).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
pub struct KeyId(pub u32);

impl std::fmt::Display for KeyId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A site store key: 32 secret bytes.
#[derive(Clone)]
pub struct StoreKey([u8; 32]);

impl std::fmt::Debug for StoreKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StoreKey(..)")
    }
}

/// Why a key file was refused.
#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    /// The file cannot be read.
    #[error("store key file {path}: {err}")]
    Io {
        /// The file.
        path: String,
        /// The error.
        err: std::io::Error,
    },
    /// Group or others may read or write it.
    #[error("store key file {path} has mode {mode:o}: it must be readable by its owner only (chmod 600)")]
    Mode {
        /// The file.
        path: String,
        /// Its permission bits.
        mode: u32,
    },
    /// Not 32 raw bytes nor 64 hex digits.
    #[error("store key{}: {why}", path.as_deref().map(|p| format!(" file {p}")).unwrap_or_default())]
    Format {
        /// The file, if the key came from one.
        path: Option<String>,
        /// What is wrong.
        why: String,
    },
}

impl StoreKey {
    /// A key from 64 hex digits (surrounding whitespace ignored, the format of
    /// `keys/example/store.key`) or from exactly 32 raw bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<StoreKey, KeyFileError> {
        let text = std::str::from_utf8(bytes).ok().map(str::trim);
        if let Some(t) = text.filter(|t| t.len() == 64) {
            let mut k = [0u8; 32];
            return match hex::decode_to_slice(t, &mut k) {
                Ok(()) => Ok(StoreKey(k)),
                Err(e) => Err(KeyFileError::Format {
                    path: None,
                    why: format!("64 characters but not hex: {e}"),
                }),
            };
        }
        match <[u8; 32]>::try_from(bytes) {
            Ok(k) => Ok(StoreKey(k)),
            Err(_) => Err(KeyFileError::Format {
                path: None,
                why: format!(
                    "{} bytes: expected 64 hex digits (32 bytes) or 32 raw bytes",
                    bytes.len()
                ),
            }),
        }
    }

    /// Read a key file; refuses a file that group or others may access.
    pub fn read_file(path: &Path) -> Result<StoreKey, KeyFileError> {
        use std::os::unix::fs::PermissionsExt;
        let p = path.display().to_string();
        let io = |err| KeyFileError::Io {
            path: p.clone(),
            err,
        };
        let mode = std::fs::metadata(path).map_err(io)?.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(KeyFileError::Mode { path: p, mode });
        }
        let bytes = std::fs::read(path).map_err(io)?;
        StoreKey::from_bytes(&bytes).map_err(|e| match e {
            KeyFileError::Format { why, .. } => KeyFileError::Format { path: Some(p), why },
            other => other,
        })
    }

    /// A fresh random key.
    pub fn generate() -> Result<StoreKey, SealError> {
        let mut k = [0u8; 32];
        rand::SecureRandom::fill(&rand::SystemRandom::new(), &mut k).map_err(|_| SealError::Rng)?;
        Ok(StoreKey(k))
    }

    /// The key as 64 hex digits (to write a key file).
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

/// Why a value could not be sealed or opened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    /// Too short to hold a header and a tag.
    #[error("sealed value truncated ({0} bytes)")]
    Truncated(usize),
    /// An unknown format byte.
    #[error("sealed value of unknown format {0}")]
    UnknownFormat(u8),
    /// A schema version this build does not read.
    #[error("record schema version {0} is not supported (this build reads {1})")]
    UnsupportedSchema(u16, u16),
    /// Sealed with a key id that is not in the ring.
    #[error("sealed with key id {0}, which is not in the keyring")]
    UnknownKeyId(KeyId),
    /// The tag does not verify.
    #[error("sealed value refused: altered, forged, sealed with another key of the same id, or moved from another store key or site")]
    Forged,
    /// The system random number generator failed.
    #[error("the system random number generator failed: nothing sealed")]
    Rng,
    /// The ring has no key of the id asked for.
    #[error("key id {0} is not in the keyring")]
    NoSuchKey(KeyId),
    /// The plaintext does not decode as the record it should be.
    #[error("record does not decode: {0}")]
    Decode(String),
}

/// The random number generator failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("random number generator failure")]
pub struct RngFailure;

/// A source of random bytes for nonces (the system RNG; tests inject failures).
pub trait RandomSource: Send + Sync {
    /// Fill `dest` with random bytes, or fail.
    fn fill(&self, dest: &mut [u8]) -> Result<(), RngFailure>;
}

impl RandomSource for rand::SystemRandom {
    fn fill(&self, dest: &mut [u8]) -> Result<(), RngFailure> {
        rand::SecureRandom::fill(self, dest).map_err(|_| RngFailure)
    }
}

/// How many values were sealed and opened, and how many were refused, by reason.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct SealCounters {
    /// Values sealed.
    pub sealed: u64,
    /// Values opened.
    pub opened: u64,
    /// Refused: the tag did not verify (altered, forged, moved, other site or key).
    pub refused_forged: u64,
    /// Refused: sealed with a key id not in the ring.
    pub refused_unknown_key: u64,
    /// Refused: truncated, unknown format, unsupported schema, or not a record.
    pub refused_malformed: u64,
    /// Seals that failed because the RNG failed.
    pub rng_failures: u64,
}

impl SealCounters {
    /// All refusals.
    pub fn refused(&self) -> u64 {
        self.refused_forged + self.refused_unknown_key + self.refused_malformed
    }
}

#[derive(Default)]
struct Counters {
    sealed: AtomicU64,
    opened: AtomicU64,
    forged: AtomicU64,
    unknown_key: AtomicU64,
    malformed: AtomicU64,
    rng: AtomicU64,
}

/// A value opened by [`Keyring::open`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Opened {
    /// The schema version it was sealed with.
    pub schema: u16,
    /// The key that sealed it.
    pub key_id: KeyId,
    /// The plaintext.
    pub plaintext: Vec<u8>,
}

/// The site's store keys: several ids can open, one seals, one blinds key names.
pub struct Keyring {
    site: String,
    keys: BTreeMap<KeyId, aead::LessSafeKey>,
    material: BTreeMap<KeyId, StoreKey>,
    write: KeyId,
    names_id: KeyId,
    names: hmac::Key,
    rng: Box<dyn RandomSource>,
    counters: Counters,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keyring")
            .field("site", &self.site)
            .field("ids", &self.keys.keys().collect::<Vec<_>>())
            .field("write", &self.write)
            .field("names", &self.names_id)
            .finish()
    }
}

struct Len(usize);

impl hkdf::KeyType for Len {
    fn len(&self) -> usize {
        self.0
    }
}

fn derive(raw: &StoreKey, salt: &[u8], info: &[&[u8]]) -> [u8; 32] {
    let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, salt).extract(&raw.0);
    let mut out = [0u8; 32];
    // 32 bytes from SHA-256 HKDF is always within its 255 * 32 byte limit.
    if let Ok(okm) = prk.expand(info, Len(32)) {
        let _ = okm.fill(&mut out);
    }
    out
}

impl Keyring {
    /// A ring for `site` that seals with key `write` and opens with every key of
    /// `keys` (which must hold `write`). Key names are blinded with the write key
    /// until [`Keyring::with_names_key`] pins another.
    pub fn new(
        site: &str,
        write: KeyId,
        keys: Vec<(KeyId, StoreKey)>,
    ) -> Result<Keyring, SealError> {
        let material: BTreeMap<KeyId, StoreKey> = keys.into_iter().collect();
        let Some(wk) = material.get(&write) else {
            return Err(SealError::NoSuchKey(write));
        };
        let names = hmac::Key::new(
            hmac::HMAC_SHA256,
            &derive(wk, NAMES_SALT, &[b"names", site.as_bytes()]),
        );
        let mut ring = Keyring {
            site: site.to_string(),
            keys: BTreeMap::new(),
            material: BTreeMap::new(),
            write,
            names_id: write,
            names,
            rng: Box::new(rand::SystemRandom::new()),
            counters: Counters::default(),
        };
        for (id, k) in material {
            let seal_key = derive(&k, SEAL_SALT, &[b"seal"]);
            // A 32-byte key is always a valid AES-256 key.
            let unbound = aead::UnboundKey::new(&aead::AES_256_GCM, &seal_key)
                .map_err(|_| SealError::NoSuchKey(id))?;
            ring.keys.insert(id, aead::LessSafeKey::new(unbound));
            ring.material.insert(id, k);
        }
        Ok(ring)
    }

    /// One key, id 1, sealing and naming (a site without rotation yet).
    pub fn single(site: &str, key: StoreKey) -> Keyring {
        // Key 1 is in the ring, so this cannot fail.
        Keyring::new(site, KeyId(1), vec![(KeyId(1), key)]).unwrap_or_else(|_| unreachable!())
    }

    /// Blind key names with the key of id `id` (which must be in the ring) instead of
    /// the write key; every gateway of a site must use the same names key.
    pub fn with_names_key(mut self, id: KeyId) -> Result<Keyring, SealError> {
        let k = self.material.get(&id).ok_or(SealError::NoSuchKey(id))?;
        self.names = hmac::Key::new(
            hmac::HMAC_SHA256,
            &derive(k, NAMES_SALT, &[b"names", self.site.as_bytes()]),
        );
        self.names_id = id;
        Ok(self)
    }

    /// Draw nonces from `rng` instead of the system RNG (tests).
    pub fn with_random(mut self, rng: Box<dyn RandomSource>) -> Keyring {
        self.rng = rng;
        self
    }

    /// The site name bound into every value.
    pub fn site(&self) -> &str {
        &self.site
    }

    /// The id that seals.
    pub fn write_key_id(&self) -> KeyId {
        self.write
    }

    /// The id whose key blinds names.
    pub fn names_key_id(&self) -> KeyId {
        self.names_id
    }

    /// Every id that opens.
    pub fn key_ids(&self) -> Vec<KeyId> {
        self.keys.keys().copied().collect()
    }

    /// Seal `plaintext` to be stored under `store_key`, as schema version `schema`.
    pub fn seal(
        &self,
        store_key: &str,
        schema: u16,
        plaintext: &[u8],
    ) -> Result<Vec<u8>, SealError> {
        let key = self
            .keys
            .get(&self.write)
            .ok_or(SealError::NoSuchKey(self.write))?;
        let mut nonce = [0u8; aead::NONCE_LEN];
        if self.rng.fill(&mut nonce).is_err() {
            self.counters.rng.fetch_add(1, Ordering::Relaxed);
            return Err(SealError::Rng);
        }
        let mut out = Vec::with_capacity(HEADER_LEN + plaintext.len() + TAG_LEN);
        out.push(FORMAT);
        out.extend_from_slice(&schema.to_be_bytes());
        out.extend_from_slice(&self.write.0.to_be_bytes());
        out.extend_from_slice(&nonce);
        let aad = self.aad(store_key, &out);
        out.extend_from_slice(plaintext);
        let tag = key
            .seal_in_place_separate_tag(
                aead::Nonce::assume_unique_for_key(nonce),
                aead::Aad::from(aad),
                &mut out[HEADER_LEN..],
            )
            .map_err(|_| SealError::Rng)?;
        out.extend_from_slice(tag.as_ref());
        self.counters.sealed.fetch_add(1, Ordering::Relaxed);
        Ok(out)
    }

    /// Open a value read from `store_key`. Every refusal is counted.
    pub fn open(&self, store_key: &str, sealed: &[u8]) -> Result<Opened, SealError> {
        let r = self.open_uncounted(store_key, sealed);
        match &r {
            Ok(_) => self.count_opened(),
            Err(e) => self.count_refused(e),
        };
        r
    }

    /// [`Keyring::open`] without counting (the record layer counts once it has also
    /// decoded the plaintext).
    pub(crate) fn open_uncounted(
        &self,
        store_key: &str,
        sealed: &[u8],
    ) -> Result<Opened, SealError> {
        if sealed.len() < HEADER_LEN + TAG_LEN {
            return Err(SealError::Truncated(sealed.len()));
        }
        if sealed[0] != FORMAT {
            return Err(SealError::UnknownFormat(sealed[0]));
        }
        let schema = u16::from_be_bytes([sealed[1], sealed[2]]);
        let key_id = KeyId(u32::from_be_bytes([
            sealed[3], sealed[4], sealed[5], sealed[6],
        ]));
        let key = self
            .keys
            .get(&key_id)
            .ok_or(SealError::UnknownKeyId(key_id))?;
        let mut nonce = [0u8; aead::NONCE_LEN];
        nonce.copy_from_slice(&sealed[7..HEADER_LEN]);
        let aad = self.aad(store_key, &sealed[..HEADER_LEN]);
        let mut body = sealed[HEADER_LEN..].to_vec();
        let plain = key
            .open_in_place(
                aead::Nonce::assume_unique_for_key(nonce),
                aead::Aad::from(aad),
                &mut body,
            )
            .map_err(|_| SealError::Forged)?;
        let n = plain.len();
        body.truncate(n);
        Ok(Opened {
            schema,
            key_id,
            plaintext: body,
        })
    }

    fn aad(&self, store_key: &str, header: &[u8]) -> Vec<u8> {
        let mut aad = Vec::with_capacity(
            AAD_LABEL.len() + 4 + self.site.len() + store_key.len() + HEADER_LEN,
        );
        aad.extend_from_slice(AAD_LABEL);
        for part in [self.site.as_bytes(), store_key.as_bytes()] {
            aad.extend_from_slice(&(part.len() as u32).to_be_bytes());
            aad.extend_from_slice(part);
        }
        aad.extend_from_slice(header);
        aad
    }

    /// Count a value that opened.
    pub(crate) fn count_opened(&self) {
        self.counters.opened.fetch_add(1, Ordering::Relaxed);
    }

    /// Count a refusal.
    pub(crate) fn count_refused(&self, e: &SealError) {
        let c = match e {
            SealError::Forged => &self.counters.forged,
            SealError::UnknownKeyId(_) => &self.counters.unknown_key,
            SealError::Rng => &self.counters.rng,
            _ => &self.counters.malformed,
        };
        c.fetch_add(1, Ordering::Relaxed);
    }

    /// A blinded name for `data` in the namespace `label`: 24 hex digits of
    /// HMAC-SHA-256 under the names key (96 bits: no collision among billions).
    pub fn blind(&self, label: &str, data: &[u8]) -> String {
        let mut ctx = hmac::Context::with_key(&self.names);
        ctx.update(label.as_bytes());
        ctx.update(&[0]);
        ctx.update(data);
        hex::encode(&ctx.sign().as_ref()[..12])
    }

    /// The counters so far.
    pub fn counters(&self) -> SealCounters {
        let c = &self.counters;
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        SealCounters {
            sealed: l(&c.sealed),
            opened: l(&c.opened),
            refused_forged: l(&c.forged),
            refused_unknown_key: l(&c.unknown_key),
            refused_malformed: l(&c.malformed),
            rng_failures: l(&c.rng),
        }
    }
}

#[cfg(test)]
#[path = "seal_tests.rs"]
mod tests;
