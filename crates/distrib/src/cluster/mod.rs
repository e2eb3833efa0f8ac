//! Cluster control channel between gateways and targets (seed 001, figures 10,
//! 14 and 15: DVIPA list, SRVSTAT, NEWCONN).
//!
//! Every message is authenticated with HMAC-SHA-256 under a per-site key and
//! carries the sender's [`NodeId`] and a 64-bit sequence number that the sender
//! increases for every message. A receiver ([`ClusterEndpoint`]) accepts a
//! message only if (1) it came from its sender's address on its sender's link
//! (the [`NodeMap`](crate::link::NodeMap) built from policy), (2) the HMAC
//! verifies, and (3) its sequence number is new and inside the sender's replay
//! window ([`window`]): at most 64 behind the highest seen, at most
//! [`MAX_JUMP`] ahead of it. A message outside the window is not applied: it is
//! held, and the receiver challenges the sender (Challenge with a fresh nonce,
//! to the sender's address from the node map); the sender's signed
//! ChallengeAck, numbered with its current sequence number, re-synchronises
//! the window (up after a restart, *down* after a forged message pushed it
//! ahead), and held messages that precede the answer are applied. So one
//! message, even signed with the site key, can neither lock a sender out nor
//! push its window arbitrarily far (`docs/distribution.md`, "Replay window").
//!
//! Byte layout (all integers big-endian), see also `docs/distribution.md`:
//!
//! ```text
//! 0       1       2               4               8                      16
//! +-------+-------+---------------+---------------+-----------------------+
//! |version| type  |  body length  |   sender id   |   sequence number     |
//! +-------+-------+---------------+---------------+-----------------------+
//! | body (body length bytes, per type)                                    |
//! +-----------------------------------------------------------------------+
//! | HMAC-SHA-256(site key, bytes 0 .. 16+body length)  (32 bytes)         |
//! +-----------------------------------------------------------------------+
//! ```

use crate::dpt::DvipaConfig;
use crate::flow::FlowKey;
use crate::NodeId;
use ring::hmac;
use std::net::IpAddr;
use thiserror::Error;

mod codec;
mod endpoint;
#[cfg(test)]
mod tests;
pub mod window;

pub use endpoint::{ClusterEndpoint, HOLD_MAX, RECHALLENGE};
pub use window::{ReplayWindow, MAX_JUMP, REPLAY_WINDOW};

/// Wire format version written and accepted (2: DVIPA lists carry ownership
/// epochs; Challenge and ChallengeAck).
pub const VERSION: u8 = 2;
/// Header length.
pub const HEADER_LEN: usize = 16;
/// HMAC-SHA-256 tag length.
pub const TAG_LEN: usize = 32;

/// The per-site HMAC key.
#[derive(Clone)]
pub struct ClusterKey(hmac::Key);

impl ClusterKey {
    /// A key from the bytes of the site's key file (at least 16 bytes advised).
    pub fn new(bytes: &[u8]) -> Self {
        ClusterKey(hmac::Key::new(hmac::HMAC_SHA256, bytes))
    }

    pub(crate) fn sign(&self, data: &[u8]) -> hmac::Tag {
        hmac::sign(&self.0, data)
    }
}

impl std::fmt::Debug for ClusterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClusterKey(..)")
    }
}

/// Role of a cluster node (announced in a Hello, recorded in the node map).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// A routing or backup gateway.
    Gateway,
    /// A target stack.
    Target,
}

/// How a connection reported by NEWCONN started.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NewConnKind {
    /// An application on the target opened it.
    Opened,
    /// It existed before (report after a DVIPA list or a ConnQuery).
    Existing,
}

/// One entry of a DVIPA list: the DVIPA's configuration and the ownership
/// epoch of its routing gateway (a number the shared store hands out on every
/// takeover; targets follow the highest, see [`crate::target`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Announcement {
    /// The DVIPA, its ports, targets, routing gateway and backups.
    pub cfg: DvipaConfig,
    /// The routing gateway's ownership epoch (1 for a gateway that never took
    /// a DVIPA over).
    pub epoch: u64,
}

/// A cluster control message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Message {
    /// Type 1: a node starts or restarts.
    Hello {
        /// Gateway or target.
        role: Role,
        /// The sender's link to the recipient is healthy.
        link_up: bool,
    },
    /// Type 2: liveness, sent periodically.
    Keepalive {
        /// The sender's link to the recipient is healthy.
        link_up: bool,
    },
    /// Type 3: the DVIPAs a gateway routes or backs up (figure 10), each with
    /// its ownership epoch.
    DvipaList(Vec<Announcement>),
    /// Type 4: SRVSTAT, an application listens (or stopped) on (DVIPA, port).
    SrvStat {
        /// The reporting target.
        target: NodeId,
        /// The DVIPA.
        dvipa: IpAddr,
        /// The port.
        port: u16,
        /// Listening now.
        listening: bool,
    },
    /// Type 5: NEWCONN, a connection served by `target`.
    NewConn {
        /// The target that holds the connection.
        target: NodeId,
        /// The connection (client side first).
        conn: FlowKey,
        /// Opened by an app, or existing.
        kind: NewConnKind,
        /// The connection is protected by IPsec.
        uses_ipsec: bool,
    },
    /// Type 6: a connection ended on `target`.
    ConnEnd {
        /// The target.
        target: NodeId,
        /// The connection.
        conn: FlowKey,
    },
    /// Type 7: the gateway asks for NEWCONN of all existing connections (of one
    /// DVIPA, or of all).
    ConnQuery {
        /// Only this DVIPA, or all.
        dvipa: Option<IpAddr>,
    },
    /// Type 8: the receiver lost track of the sender's sequence numbers (a
    /// message outside the replay window): prove you are live, echo `nonce`.
    /// Handled by [`ClusterEndpoint`]; outside the replay window.
    Challenge {
        /// Fresh, unpredictable without the receiver's state.
        nonce: u64,
    },
    /// Type 9: the answer to a Challenge, numbered with the sender's current
    /// sequence number, which re-synchronises the challenger's window.
    ChallengeAck {
        /// The challenge's nonce.
        nonce: u64,
    },
}

impl Message {
    /// The type octet.
    pub fn type_code(&self) -> u8 {
        match self {
            Message::Hello { .. } => 1,
            Message::Keepalive { .. } => 2,
            Message::DvipaList(_) => 3,
            Message::SrvStat { .. } => 4,
            Message::NewConn { .. } => 5,
            Message::ConnEnd { .. } => 6,
            Message::ConnQuery { .. } => 7,
            Message::Challenge { .. } => 8,
            Message::ChallengeAck { .. } => 9,
        }
    }
}

/// Why a cluster message was refused.
#[derive(Debug, Error, Clone, Copy, PartialEq, Eq)]
pub enum ClusterError {
    /// Shorter than its header, body or tag.
    #[error("cluster message truncated")]
    Truncated,
    /// Wire version not understood.
    #[error("cluster message version {0} not supported")]
    Version(u8),
    /// Message type not understood (after authentication).
    #[error("unknown cluster message type {0}")]
    UnknownType(u8),
    /// A body field is invalid (after authentication).
    #[error("malformed cluster message: {0}")]
    Malformed(&'static str),
    /// The HMAC does not verify.
    #[error("cluster message authentication failed")]
    AuthFailed,
    /// Sequence number already seen, or a message that claims to come from
    /// this node itself, or an answer to no pending challenge.
    #[error("replayed cluster message from {sender} (sequence {seq})")]
    Replayed {
        /// Claimed sender.
        sender: NodeId,
        /// Its sequence number.
        seq: u64,
    },
    /// The claimed sender is not a known cluster node, or the message did not
    /// come from its address on its link.
    #[error("cluster message claiming to be from {sender} arrived from {src} on link {link}: not that node's address and link")]
    Misrouted {
        /// Claimed sender.
        sender: NodeId,
        /// Source address it came from.
        src: IpAddr,
        /// Link it arrived on.
        link: u32,
    },
    /// Outside the sender's replay window: held, and the sender challenged.
    #[error("cluster message from {sender} (sequence {seq}) is outside its replay window: held until {sender} answers a challenge")]
    Unsynced {
        /// Claimed sender.
        sender: NodeId,
        /// Its sequence number.
        seq: u64,
    },
}

/// Encode `msg` from `sender` with sequence `seq` and append the HMAC.
pub fn seal_with(key: &ClusterKey, sender: NodeId, seq: u64, msg: &Message) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    out.extend_from_slice(&[VERSION, msg.type_code(), 0, 0]);
    out.extend_from_slice(&sender.0.to_be_bytes());
    out.extend_from_slice(&seq.to_be_bytes());
    msg.encode_body(&mut out);
    let body_len = (out.len() - HEADER_LEN).min(usize::from(u16::MAX));
    out.truncate(HEADER_LEN + body_len);
    out[2..4].copy_from_slice(&(body_len as u16).to_be_bytes());
    let tag = key.sign(&out);
    out.extend_from_slice(tag.as_ref());
    out
}

/// The header fields of a message whose framing is sound (not yet authenticated).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Header {
    pub(crate) ty: u8,
    pub(crate) sender: NodeId,
    pub(crate) seq: u64,
    body_len: usize,
}

/// Check version and framing; read type, sender and sequence number.
pub(crate) fn header(b: &[u8]) -> Result<Header, ClusterError> {
    let h = b.get(..HEADER_LEN).ok_or(ClusterError::Truncated)?;
    if h[0] != VERSION {
        return Err(ClusterError::Version(h[0]));
    }
    let body_len = usize::from(u16::from_be_bytes([h[2], h[3]]));
    if b.len() != HEADER_LEN + body_len + TAG_LEN {
        return Err(ClusterError::Truncated);
    }
    let mut s = [0u8; 8];
    s.copy_from_slice(&h[8..16]);
    Ok(Header {
        ty: h[1],
        sender: NodeId(u32::from_be_bytes([h[4], h[5], h[6], h[7]])),
        seq: u64::from_be_bytes(s),
        body_len,
    })
}

/// Verify the HMAC of a framed message; returns its body.
pub(crate) fn authenticate<'a>(
    key: &ClusterKey,
    b: &'a [u8],
    h: &Header,
) -> Result<&'a [u8], ClusterError> {
    let (signed, tag) = b.split_at(HEADER_LEN + h.body_len);
    //= https://www.rfc-editor.org/rfc/rfc2104#section-2
    //# HMAC can be used with any iterative cryptographic hash function
    hmac::verify(&key.0, signed, tag).map_err(|_| ClusterError::AuthFailed)?;
    Ok(&signed[HEADER_LEN..])
}

/// The sender a message claims, if its framing is sound (before any check:
/// for logs and for daemons that pick a node entry before authentication).
pub fn claimed_sender(b: &[u8]) -> Option<NodeId> {
    header(b).ok().map(|h| h.sender)
}
