//! Operations asked through the control socket: initiate, rekey, delete, weights.

use std::net::IpAddr;
use std::time::Instant;

use plexgate_distrib as distrib;
use plexgate_ike as ike;

use super::*;

impl GatewayCore {
    /// `plexgate initiate`: a Child SA of config `child` (the peer's first in
    /// config order when `None`) — inside the IKE SA with that peer if there is
    /// one (CREATE_CHILD_SA), else in a new IKE SA. Returns the IKE SA's id.
    pub fn initiate(
        &mut self,
        now: Instant,
        peer: &str,
        child: Option<&str>,
        sink: &mut dyn Sink,
    ) -> Result<u64, String> {
        let r = self
            .ike
            .initiate(now, peer, child)
            .map(|id| id.0)
            .map_err(|e| e.to_string());
        self.flush(now, sink);
        r
    }

    /// Set the weight of target `node` on `dvipa` (0 drains it: no new connections).
    pub fn set_weight(&mut self, dvipa: IpAddr, node: u32, weight: u16) -> Result<(), String> {
        if !self.dist.dvipas().any(|(d, _)| d.dvipa == dvipa) {
            return Err(format!("{dvipa} is not a DVIPA"));
        }
        self.dist.set_weight(dvipa, distrib::NodeId(node), weight);
        Ok(())
    }

    /// Delete an IKE SA by its id (sends DELETE).
    pub fn delete_ike(&mut self, now: Instant, id: u64, sink: &mut dyn Sink) -> Result<(), String> {
        let r = self
            .ike
            .delete_ike(now, ike::IkeSaId(id))
            .map_err(|e| e.to_string());
        self.flush(now, sink);
        r
    }

    /// Start a rekey of the Child SA with inbound SPI `spi_in`.
    pub fn rekey_child(
        &mut self,
        now: Instant,
        spi_in: u32,
        sink: &mut dyn Sink,
    ) -> Result<(), String> {
        let r = self.ike.rekey_child(now, spi_in).map_err(|e| e.to_string());
        self.flush(now, sink);
        r
    }

    /// Start a rekey of an IKE SA.
    pub fn rekey_ike(&mut self, now: Instant, id: u64, sink: &mut dyn Sink) -> Result<(), String> {
        let r = self
            .ike
            .rekey_ike(now, ike::IkeSaId(id))
            .map_err(|e| e.to_string());
        self.flush(now, sink);
        r
    }
}
