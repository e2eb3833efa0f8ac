//! Status for `plexgate status`: the state of each IKE SA and its Child SAs, with
//! strongSwan-style algorithm names.

use std::net::SocketAddr;
use std::time::Instant;

use super::names::esp_name;
use super::{Endpoint, IkeSaId};
use crate::config::Mode;

/// State of an IKE SA, for status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum SaState {
    /// Initiator: IKE_SA_INIT sent.
    InitSent,
    /// Initiator: IKE_AUTH sent.
    AuthSent,
    /// Responder: IKE_SA_INIT answered, waiting for IKE_AUTH (half-open).
    HalfOpen,
    /// Established.
    Established,
    /// Being deleted (or rekeyed by us): only our DELETE remains.
    Deleting,
    /// Rekeyed by the peer: waiting for the peer's DELETE of this old SA.
    Rekeyed,
}

/// One Child SA in status output.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ChildInfo {
    /// Name.
    pub name: String,
    /// Inbound SPI.
    pub spi_in: u32,
    /// Outbound SPI.
    pub spi_out: u32,
    /// Algorithms, strongSwan style.
    pub algorithms: String,
    /// Local selectors.
    pub ts_local: Vec<String>,
    /// Remote selectors.
    pub ts_remote: Vec<String>,
    /// Mode.
    pub mode: Mode,
    /// UDP encapsulation.
    pub udp_encap: bool,
    /// Seconds until the rekey (None when not scheduled).
    pub rekey_in_secs: Option<u64>,
}

/// One IKE SA in status output (`plexgate status`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct IkeSaInfo {
    /// Our SPI.
    pub id: IkeSaId,
    /// Peer config name (None while half-open).
    pub peer: Option<String>,
    /// State.
    pub state: SaState,
    /// Whether we initiated it.
    pub initiator: bool,
    /// Initiator SPI.
    pub spi_i: u64,
    /// Responder SPI.
    pub spi_r: u64,
    /// Our address.
    pub local: SocketAddr,
    /// Peer address.
    pub remote: SocketAddr,
    /// Our identity.
    pub local_id: Option<String>,
    /// Peer identity.
    pub remote_id: Option<String>,
    /// IKE algorithms.
    pub algorithms: Option<String>,
    /// NAT detected (either side).
    pub nat: bool,
    /// Seconds until the IKE rekey.
    pub rekey_in_secs: Option<u64>,
    /// Child SAs.
    pub children: Vec<ChildInfo>,
}

impl Endpoint {
    /// Status of every IKE SA (for `plexgate status`).
    pub fn sas(&self, now: Instant) -> Vec<IkeSaInfo> {
        let secs = |t: Option<Instant>| t.map(|t| t.saturating_duration_since(now).as_secs());
        let mut v: Vec<IkeSaInfo> = self
            .sas
            .values()
            .map(|sa| IkeSaInfo {
                id: sa.id,
                peer: sa.peer.as_ref().map(|p| p.name.clone()),
                state: sa.state,
                initiator: sa.initiator,
                spi_i: sa.spi_i,
                spi_r: sa.spi_r,
                local: sa.local,
                remote: sa.remote,
                local_id: sa.local_id.as_ref().map(|i| i.to_string()),
                remote_id: sa.remote_id.as_ref().map(|i| i.to_string()),
                algorithms: sa.proposal.map(|p| p.name()),
                nat: sa.nat_local || sa.nat_remote,
                rekey_in_secs: secs(sa.rekey_at),
                children: sa
                    .children
                    .iter()
                    .map(|c| ChildInfo {
                        name: c.sa.name.clone(),
                        spi_in: c.sa.spi_in,
                        spi_out: c.sa.spi_out,
                        algorithms: esp_name(&c.proposal),
                        ts_local: c.sa.ts_local.iter().map(|t| t.to_string()).collect(),
                        ts_remote: c.sa.ts_remote.iter().map(|t| t.to_string()).collect(),
                        mode: c.sa.mode,
                        udp_encap: c.sa.udp_encap,
                        rekey_in_secs: secs(c.rekey_at),
                    })
                    .collect(),
            })
            .collect();
        v.sort_by_key(|i| i.id);
        v
    }
}
