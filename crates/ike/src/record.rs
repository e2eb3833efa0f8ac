//! Recovery records (DESIGN.md flow 5): what a backup gateway needs to renegotiate an
//! IKE SA and its Child SAs with the same peer as initiator, and to delete the old
//! Child SAs later. Plain serde structs; no key material (the PSK comes from the
//! backup's own config).

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

use crate::config::{EspProposal, IkeProposal, Mode};
use crate::message::{Identification, TrafficSelector};

/// Phase 2 data: one Child SA.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChildRecord {
    /// Child config name.
    pub name: String,
    /// Our inbound SPI.
    pub spi_in: u32,
    /// Our outbound SPI (the peer's inbound).
    pub spi_out: u32,
    /// IPsec protocol (50 = ESP).
    pub protocol: u8,
    /// Chosen ESP proposal.
    pub proposal: EspProposal,
    /// Negotiated local selectors.
    pub ts_local: Vec<TrafficSelector>,
    /// Negotiated remote selectors.
    pub ts_remote: Vec<TrafficSelector>,
    /// Mode.
    pub mode: Mode,
}

/// Phase 1 data: one IKE SA with its Child SAs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IkeRecord {
    /// Peer config name.
    pub peer: String,
    /// Our address and port at the time.
    pub local: SocketAddr,
    /// The peer's address and port (4500 after NAT-T floating).
    pub remote: SocketAddr,
    /// NAT detected in front of us.
    pub nat_local: bool,
    /// NAT detected in front of the peer.
    pub nat_remote: bool,
    /// Whether we were the original initiator.
    pub initiator: bool,
    /// SPIs of the IKE SA (initiator's, responder's).
    pub spi_i: u64,
    /// Responder's SPI.
    pub spi_r: u64,
    /// Our identity.
    pub local_id: Identification,
    /// The peer's identity.
    pub remote_id: Identification,
    /// Chosen IKE proposal.
    pub proposal: IkeProposal,
    /// Child SAs.
    pub children: Vec<ChildRecord>,
}
