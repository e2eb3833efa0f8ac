//! Recovery records (DESIGN.md flow 5), one typed shape: what a backup gateway needs
//! to renegotiate an IKE SA (phase 1, [`IkeRecord`]) and its Child SAs (phase 2,
//! [`ChildRecord`]) with the same peer as initiator, and to delete the old Child SAs
//! later. A Child record names its IKE SA by the SPI pair ([`IkeSpis`]), which is
//! also how their store keys nest ([`crate::keys`]). No key material: the backup
//! renegotiates with its own copy of the site's credentials.
//!
//! Plain fields (addresses, IANA transform ids, strings, bytes): this crate does not
//! depend on the IKE crate; the gateway converts. Every record carries
//! [`SCHEMA_VERSION`], which is also sealed into its header and associated data.
//! [`RecordBook`] seals, opens and loads them; values are JSON inside the seal,
//! padded to a multiple of 64 bytes so that their length says little.

use std::net::{IpAddr, SocketAddr};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::error::StoreError;
use crate::keys::{IkeSpis, Keys};
use crate::kv::{Revision, Store};
use crate::seal::{Keyring, SealError};

/// The schema version of every record and value this build writes (and the only one
/// it reads).
pub const SCHEMA_VERSION: u16 = 1;

/// Sealed values are padded to a multiple of this many bytes.
const PAD: usize = 64;

/// An IKE identity (RFC 7296 §3.5): ID type and data.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Identity {
    /// ID type (1 IPv4, 2 FQDN, 3 RFC822, 5 IPv6, 9 DER_ASN1_DN, 11 KEY_ID).
    pub id_type: u8,
    /// Identification data.
    #[serde(with = "hex_bytes")]
    pub data: Vec<u8>,
}

/// The negotiated IKE proposal, as IANA transform ids (RFC 7296 §3.3.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct IkeProposal {
    /// ENCR transform id (12 AES-CBC, 20 AES-GCM-16, …).
    pub encr: u16,
    /// Key length in bits.
    pub encr_bits: u16,
    /// INTEG transform id (`None` for AEAD).
    pub integ: Option<u16>,
    /// PRF transform id.
    pub prf: u16,
    /// Diffie-Hellman group.
    pub dh: u16,
}

/// The negotiated ESP proposal, as IANA transform ids.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct EspProposal {
    /// ENCR transform id (20 AES-GCM-16, 28 ChaCha20-Poly1305, 12 AES-CBC).
    pub encr: u16,
    /// Key length in bits.
    pub encr_bits: u16,
    /// INTEG transform id (`None` for AEAD).
    pub integ: Option<u16>,
    /// PFS group for rekeys (`None`: no KE in CREATE_CHILD_SA).
    pub dh: Option<u16>,
}

/// IPsec mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Mode {
    /// Tunnel mode.
    Tunnel,
    /// Transport mode.
    Transport,
}

/// A traffic selector (RFC 7296 §3.13.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Selector {
    /// IP protocol (0: any).
    pub protocol: u8,
    /// First port.
    pub start_port: u16,
    /// Last port.
    pub end_port: u16,
    /// First address.
    pub start: IpAddr,
    /// Last address (same family).
    pub end: IpAddr,
}

/// One set of lifetime limits (`None`: no limit).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Limits {
    /// Bytes.
    pub bytes: Option<u64>,
    /// Packets.
    pub packets: Option<u64>,
    /// Seconds since the SA was installed.
    pub seconds: Option<u64>,
}

/// Soft (rekey) and hard (delete) lifetimes (RFC 4301 §4.4.2.1).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Lifetimes {
    /// Reaching a soft limit starts a rekey.
    pub soft: Limits,
    /// Reaching a hard limit deletes the SA.
    pub hard: Limits,
}

/// UDP encapsulation ports (RFC 3948).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct UdpEncap {
    /// Our port.
    pub local_port: u16,
    /// The peer's port (possibly NAT-mapped).
    pub remote_port: u16,
}

/// SPIs of a Child SA (inbound, outbound).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ChildSpis {
    /// Our inbound SPI.
    pub spi_in: u32,
    /// Our outbound SPI.
    pub spi_out: u32,
}

/// Phase 1: one IKE SA.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IkeRecord {
    /// Schema version ([`SCHEMA_VERSION`]).
    pub schema: u16,
    /// Peer config name.
    pub peer: String,
    /// The IKE SA's SPIs.
    pub spis: IkeSpis,
    /// Whether this gateway was the original initiator.
    pub initiator: bool,
    /// Our address and port.
    pub local: SocketAddr,
    /// The peer's address and port (4500 after NAT-T floating; NAT-mapped).
    pub remote: SocketAddr,
    /// NAT detected in front of us.
    pub nat_local: bool,
    /// NAT detected in front of the peer.
    pub nat_remote: bool,
    /// Our identity.
    pub local_id: Identity,
    /// The peer's identity.
    pub remote_id: Identity,
    /// AUTH method (RFC 7296 §3.8: 1 RSA, 2 PSK, 9-11 ECDSA, 14 RFC 7427).
    pub auth_method: u8,
    /// The negotiated IKE proposal.
    pub proposal: IkeProposal,
    /// When the SA was established, milliseconds since the UNIX epoch (the caller's
    /// wall clock).
    pub established_unix_ms: u64,
}

/// Phase 2: one Child SA, linked to its IKE SA.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChildRecord {
    /// Schema version ([`SCHEMA_VERSION`]).
    pub schema: u16,
    /// The IKE SA this Child SA belongs to.
    pub ike: IkeSpis,
    /// Peer config name.
    pub peer: String,
    /// Child config name.
    pub child: String,
    /// SPIs.
    pub spis: ChildSpis,
    /// IPsec protocol (50 ESP).
    pub protocol: u8,
    /// The negotiated ESP proposal.
    pub proposal: EspProposal,
    /// Extended sequence numbers negotiated.
    pub esn: bool,
    /// Mode.
    pub mode: Mode,
    /// Local selectors.
    pub ts_local: Vec<Selector>,
    /// Remote selectors.
    pub ts_remote: Vec<Selector>,
    /// Lifetimes.
    pub lifetimes: Lifetimes,
    /// UDP encapsulation, if any.
    pub udp_encap: Option<UdpEncap>,
    /// The DVIPAs this Child SA carries traffic for.
    pub dvipas: Vec<IpAddr>,
    /// The Child SA this one rekeyed, still to be deleted at the peer.
    pub replaces: Option<ChildSpis>,
    /// When the SA was installed, milliseconds since the UNIX epoch.
    pub established_unix_ms: u64,
}

/// Either record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record {
    /// Phase 1.
    Ike(IkeRecord),
    /// Phase 2.
    Child(ChildRecord),
}

/// A record opened from the store, with where and when it was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Loaded<T> {
    /// Its store key.
    pub key: String,
    /// The revision that wrote it.
    pub revision: Revision,
    /// The record.
    pub record: T,
}

/// Everything under the site's record prefixes.
#[derive(Debug, Default)]
pub struct LoadedRecords {
    /// IKE records.
    pub ike: Vec<Loaded<IkeRecord>>,
    /// Child records.
    pub children: Vec<Loaded<ChildRecord>>,
    /// Keys whose value was refused (and counted), with why.
    pub refused: Vec<(String, SealError)>,
}

impl LoadedRecords {
    /// The Child records of one IKE SA.
    pub fn children_of(&self, ike: IkeSpis) -> impl Iterator<Item = &Loaded<ChildRecord>> {
        self.children.iter().filter(move |c| c.record.ike == ike)
    }

    /// Child records whose IKE record is missing.
    pub fn orphans(&self) -> impl Iterator<Item = &Loaded<ChildRecord>> {
        self.children
            .iter()
            .filter(|c| !self.ike.iter().any(|i| i.record.spis == c.record.ike))
    }
}

/// Seal `value` as JSON under `key`, padded (shared by records and liveness values).
pub(crate) fn seal_json<T: Serialize>(
    ring: &Keyring,
    key: &str,
    value: &T,
) -> Result<Vec<u8>, SealError> {
    let mut json = serde_json::to_vec(value).map_err(|e| SealError::Decode(e.to_string()))?;
    // Trailing whitespace is valid JSON: pad with spaces.
    let padded = json.len().div_ceil(PAD).max(1) * PAD;
    json.resize(padded, b' ');
    ring.seal(key, SCHEMA_VERSION, &json)
}

/// Open a value sealed by [`seal_json`] under `key`; every refusal is counted.
pub(crate) fn open_json<T: DeserializeOwned>(
    ring: &Keyring,
    key: &str,
    sealed: &[u8],
) -> Result<T, SealError> {
    let r = ring.open_uncounted(key, sealed).and_then(|o| {
        if o.schema != SCHEMA_VERSION {
            return Err(SealError::UnsupportedSchema(o.schema, SCHEMA_VERSION));
        }
        serde_json::from_slice(&o.plaintext).map_err(|e| SealError::Decode(e.to_string()))
    });
    match &r {
        Ok(_) => ring.count_opened(),
        Err(e) => ring.count_refused(e),
    }
    r
}

/// Seals, opens and loads the site's recovery records.
#[derive(Debug, Clone)]
pub struct RecordBook {
    keys: Keys,
}

impl RecordBook {
    /// Records under `keys`' prefix, sealed with its keyring.
    pub fn new(keys: Keys) -> RecordBook {
        RecordBook { keys }
    }

    /// The key layout.
    pub fn keys(&self) -> &Keys {
        &self.keys
    }

    /// The store key of a record.
    pub fn key_of(&self, r: &Record) -> String {
        match r {
            Record::Ike(i) => self.keys.ike(i.spis),
            Record::Child(c) => self.keys.child(c.ike, c.spis.spi_in),
        }
    }

    /// The store key and sealed value of a record.
    pub fn seal(&self, r: &Record) -> Result<(String, Vec<u8>), SealError> {
        let key = self.key_of(r);
        let value = match r {
            Record::Ike(i) => seal_json(self.keys.ring(), &key, i)?,
            Record::Child(c) => seal_json(self.keys.ring(), &key, c)?,
        };
        Ok((key, value))
    }

    /// Open the value stored under `key`: it must open, be of the kind the key says,
    /// carry the schema version, and be the record that belongs under this key.
    pub fn open(&self, key: &str, sealed: &[u8]) -> Result<Record, SealError> {
        let ring = self.keys.ring();
        let r = if key.starts_with(&self.keys.ike_prefix()) {
            Record::Ike(open_json::<IkeRecord>(ring, key, sealed)?)
        } else if key.starts_with(&self.keys.child_prefix()) {
            Record::Child(open_json::<ChildRecord>(ring, key, sealed)?)
        } else {
            let e = SealError::Decode(format!("{key} is not a record key"));
            ring.count_refused(&e);
            return Err(e);
        };
        let schema = match &r {
            Record::Ike(i) => i.schema,
            Record::Child(c) => c.schema,
        };
        let e = if schema != SCHEMA_VERSION {
            SealError::UnsupportedSchema(schema, SCHEMA_VERSION)
        } else if self.key_of(&r) != key {
            SealError::Decode("the record belongs under another key".into())
        } else {
            return Ok(r);
        };
        ring.count_refused(&e);
        Err(e)
    }

    /// Read and open every record of the site. Refused values are listed (and
    /// counted), not fatal.
    pub fn load(&self, store: &dyn Store) -> Result<LoadedRecords, StoreError> {
        let mut out = LoadedRecords::default();
        for prefix in [self.keys.ike_prefix(), self.keys.child_prefix()] {
            for e in store.list(&prefix)? {
                match self.open(&e.key, &e.value) {
                    Ok(Record::Ike(record)) => out.ike.push(Loaded {
                        key: e.key,
                        revision: e.revision,
                        record,
                    }),
                    Ok(Record::Child(record)) => out.children.push(Loaded {
                        key: e.key,
                        revision: e.revision,
                        record,
                    }),
                    Err(err) => out.refused.push((e.key, err)),
                }
            }
        }
        Ok(out)
    }
}

mod hex_bytes {
    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(v))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let s = String::deserialize(d)?;
        hex::decode(s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
#[path = "records_tests.rs"]
pub(crate) mod tests;
