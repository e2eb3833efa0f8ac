//! What the endpoint hands the daemon: IKE SA ids, datagrams to send, established
//! Child SAs (with their keys, for the SAD), events and command errors.

use std::net::SocketAddr;
use std::time::Duration;

use crate::config::{EspProposal, Mode};
use crate::crypto::CryptoError;
use crate::message::TrafficSelector;
use crate::record::{ChildRecord, IkeRecord};

/// An IKE SA: a number given in order of creation (a rekeyed IKE SA gets a new
/// one), printed `#12` everywhere; its SPIs are in [`super::IkeSaInfo`] and the records.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub struct IkeSaId(pub u64);

impl std::fmt::Display for IkeSaId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "#{}", self.0)
    }
}

/// A datagram to send. When either port is 4500 the daemon prepends the four-byte
/// non-ESP marker (RFC 3948 §2.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    /// Source address.
    pub local: SocketAddr,
    /// Destination address.
    pub remote: SocketAddr,
    /// IKE message bytes.
    pub payload: Vec<u8>,
}

/// An established Child SA, ready for the SAD.
#[derive(Clone, PartialEq, Eq)]
pub struct ChildSa {
    /// Child config name.
    pub name: String,
    /// Our inbound SPI.
    pub spi_in: u32,
    /// Outbound SPI (the peer's inbound).
    pub spi_out: u32,
    /// IP protocol of the SA (50 = ESP).
    pub protocol: u8,
    /// ENCR transform id (IANA).
    pub encr: u16,
    /// Encryption key length in bits (without salt).
    pub encr_key_bits: u16,
    /// INTEG transform id, None for AEAD.
    pub integ: Option<u16>,
    /// Extended sequence numbers.
    pub esn: bool,
    /// Inbound (encryption key incl. salt, integrity key).
    pub keys_in: (Vec<u8>, Vec<u8>),
    /// Outbound (encryption key incl. salt, integrity key).
    pub keys_out: (Vec<u8>, Vec<u8>),
    /// Local traffic selectors.
    pub ts_local: Vec<TrafficSelector>,
    /// Remote traffic selectors.
    pub ts_remote: Vec<TrafficSelector>,
    /// Our address.
    pub local: SocketAddr,
    /// The peer's address.
    pub remote: SocketAddr,
    /// ESP in UDP (RFC 3948) on port 4500.
    pub udp_encap: bool,
    /// Tunnel or transport.
    pub mode: Mode,
    /// Hard lifetime.
    pub lifetime: Duration,
}

impl std::fmt::Debug for ChildSa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChildSa")
            .field("name", &self.name)
            .field("spi_in", &format_args!("{:08x}", self.spi_in))
            .field("spi_out", &format_args!("{:08x}", self.spi_out))
            .field("encr", &self.encr)
            .field("encr_key_bits", &self.encr_key_bits)
            .field("integ", &self.integ)
            .field("esn", &self.esn)
            .field("ts_local", &self.ts_local)
            .field("ts_remote", &self.ts_remote)
            .field("local", &self.local)
            .field("remote", &self.remote)
            .field("udp_encap", &self.udp_encap)
            .field("mode", &self.mode)
            .finish_non_exhaustive()
    }
}

/// The keys handed out are wiped when the Child SA (and every clone) is dropped.
impl Drop for ChildSa {
    fn drop(&mut self) {
        use zeroize::Zeroize;
        for k in [
            &mut self.keys_in.0,
            &mut self.keys_in.1,
            &mut self.keys_out.0,
            &mut self.keys_out.1,
        ] {
            k.zeroize();
        }
    }
}

impl ChildSa {
    pub(super) fn record(&self, proposal: EspProposal) -> ChildRecord {
        ChildRecord {
            name: self.name.clone(),
            spi_in: self.spi_in,
            spi_out: self.spi_out,
            protocol: self.protocol,
            proposal,
            ts_local: self.ts_local.clone(),
            ts_remote: self.ts_remote.clone(),
            mode: self.mode,
        }
    }
}

/// The keys of an IKE SA for a key log (Wireshark's `ikev2_decryption_table`): only
/// produced when the daemon asked for it ([`crate::Endpoint::set_key_log`]). Wiped
/// on drop; `Debug` does not show them.
#[derive(Clone, PartialEq, Eq)]
pub struct IkeKeyLog {
    /// Initiator SPI.
    pub spi_i: u64,
    /// Responder SPI.
    pub spi_r: u64,
    /// ENCR transform id of the IKE SA.
    pub encr: u16,
    /// Its key length in bits.
    pub encr_bits: u16,
    /// INTEG transform id (None for AEAD).
    pub integ: Option<u16>,
    /// SK_ei (with the 4-byte salt for AES-GCM).
    pub sk_ei: Vec<u8>,
    /// SK_er.
    pub sk_er: Vec<u8>,
    /// SK_ai (empty for AEAD).
    pub sk_ai: Vec<u8>,
    /// SK_ar.
    pub sk_ar: Vec<u8>,
}

impl Drop for IkeKeyLog {
    fn drop(&mut self) {
        use zeroize::Zeroize;
        for k in [
            &mut self.sk_ei,
            &mut self.sk_er,
            &mut self.sk_ai,
            &mut self.sk_ar,
        ] {
            k.zeroize();
        }
    }
}

impl std::fmt::Debug for IkeKeyLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IkeKeyLog")
            .field("spi_i", &format_args!("{:016x}", self.spi_i))
            .field("spi_r", &format_args!("{:016x}", self.spi_r))
            .finish_non_exhaustive()
    }
}

/// What happened, for the daemon.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// An IKE SA is established (IKE_AUTH done, or a rekeyed one).
    IkeSaUp {
        /// The SA.
        id: IkeSaId,
        /// Its recovery record.
        record: IkeRecord,
    },
    /// A Child SA to install into the SAD.
    ChildSaUp {
        /// Parent IKE SA.
        ike: IkeSaId,
        /// Peer config name of the parent IKE SA.
        peer: String,
        /// The Child SA.
        child: ChildSa,
    },
    /// A Child SA was rekeyed: install `new` and send with it; keep accepting on the
    /// old inbound SPI until its `ChildSaDeleted` arrives.
    ChildSaRekeyed {
        /// Parent IKE SA.
        ike: IkeSaId,
        /// Peer config name of the parent IKE SA.
        peer: String,
        /// Old inbound SPI.
        old_spi_in: u32,
        /// Old outbound SPI.
        old_spi_out: u32,
        /// The replacement.
        new: ChildSa,
    },
    /// Remove a Child SA from the SAD.
    ChildSaDeleted {
        /// Parent IKE SA.
        ike: IkeSaId,
        /// Peer config name of the parent IKE SA.
        peer: String,
        /// Inbound SPI.
        spi_in: u32,
        /// Outbound SPI.
        spi_out: u32,
    },
    /// A Child SA could not be created (the IKE SA may still be up).
    ChildSaFailed {
        /// Parent IKE SA.
        ike: IkeSaId,
        /// Peer config name of the parent IKE SA.
        peer: String,
        /// Child config name.
        name: String,
        /// Why (e.g. the notify the peer sent).
        reason: String,
    },
    /// The IKE SA `old` was replaced by `new` (its Child SAs move to `new`); an
    /// `IkeSaDeleted` for `old` follows.
    IkeSaRekeyed {
        /// Old SA.
        old: IkeSaId,
        /// New SA.
        new: IkeSaId,
        /// The new SA's record.
        record: IkeRecord,
    },
    /// An IKE SA is gone (its Child SAs have had their own `ChildSaDeleted`).
    IkeSaDeleted {
        /// The SA.
        id: IkeSaId,
        /// Why.
        reason: String,
    },
    /// Authentication failed: log material.
    AuthFailed {
        /// Peer address.
        remote: SocketAddr,
        /// Identity the peer claimed, if any.
        peer_id: Option<String>,
        /// Why.
        reason: String,
    },
    /// Something a peer sent or asked for was refused or is not supported: log
    /// material (what was received and what is configured). Unauthenticated input
    /// produces these too: log them rate-limited.
    Refused {
        /// Peer address.
        remote: SocketAddr,
        /// Peer config name, when the peer is known.
        peer: Option<String>,
        /// What and why.
        reason: String,
    },
    /// The keys of a new IKE SA, for the key log (only when asked for).
    IkeKeys {
        /// The SA.
        id: IkeSaId,
        /// SPIs, algorithms and keys.
        keys: IkeKeyLog,
    },
    /// Store this recovery record (created or changed).
    RecordUpdated {
        /// The SA.
        id: IkeSaId,
        /// The record.
        record: IkeRecord,
    },
    /// Remove this SA's recovery record.
    RecordRemoved {
        /// The SA.
        id: IkeSaId,
    },
}

/// Errors from the commands of [`crate::Endpoint`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// No peer with that name.
    #[error("no peer config named {0:?}")]
    UnknownPeer(String),
    /// No child with that name in the peer.
    #[error("peer {peer:?} has no child config named {child:?}")]
    UnknownChild {
        /// Peer.
        peer: String,
        /// Child.
        child: String,
    },
    /// The peer has no fixed address/local address to initiate to/from.
    #[error("peer {0:?} has no remote or local address to initiate with")]
    NoAddress(String),
    /// No such IKE SA.
    #[error("no IKE SA {0}")]
    UnknownSa(IkeSaId),
    /// No Child SA with that inbound SPI.
    #[error("no Child SA with inbound SPI {0:08x}")]
    UnknownChildSa(u32),
    /// The IKE SA is not established.
    #[error("IKE SA {0} is not established")]
    NotEstablished(IkeSaId),
    /// The peer config has no IKE proposal.
    #[error("peer {0:?} has no usable IKE proposal")]
    NoProposal(String),
    /// None of the child's ESP proposals can be installed by the data plane.
    #[error("none of the ESP proposals of child {child:?} of peer {peer:?} can be installed by the data plane")]
    NotInstallable {
        /// Peer.
        peer: String,
        /// Child.
        child: String,
    },
    /// No NAT was detected for this IKE SA: its peer's address does not move.
    #[error("IKE SA {0} has no NAT in front of its peer: its address does not move")]
    NotBehindNat(IkeSaId),
    /// A recovery record that does not fit our config.
    #[error("recovery record of peer {peer:?} does not fit our config: {what}")]
    RecordMismatch {
        /// Peer.
        peer: String,
        /// What does not fit.
        what: String,
    },
    /// Crypto failure (e.g. DH keygen).
    #[error("crypto: {0}")]
    Crypto(#[from] CryptoError),
}
