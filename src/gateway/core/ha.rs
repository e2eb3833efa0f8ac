//! What the HA machine (`plexgate_ha::takeover`) asks of the gateway core, per
//! ownership group (the DVIPAs reached through one gateway VIPA, DESIGN.md flows
//! 6 and 7): route its DVIPAs at an epoch (targets follow the highest), stop
//! routing them, keep or stop its recovery records, renegotiate the recorded SAs
//! as initiator (takeover), hand its SAs over with DELETEs (takeback, planned
//! move) or drop them without a word (someone else took the group). Reports go
//! back through [`GatewayCore::poll_ha_report`].

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::time::Instant;

use plexgate_ike as ike;

use super::{GatewayCore, Sink};

/// A report of the core for the HA machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HaReport {
    /// Every recorded IKE SA of the group was renegotiated or failed.
    RenegotiationDone {
        /// The group's gateway VIPA.
        vipa: IpAddr,
        /// The epoch the renegotiation was for.
        epoch: u64,
        /// IKE SAs up again.
        up: usize,
        /// IKE SAs that could not be renegotiated.
        failed: usize,
    },
}

/// A renegotiation in progress.
#[derive(Debug, Default)]
struct Recovery {
    epoch: u64,
    pending: HashSet<ike::IkeSaId>,
    up: usize,
    failed: usize,
}

/// The core's HA state.
#[derive(Debug, Default)]
pub(super) struct HaState {
    /// Whether the gateway runs under the HA machine (else it routes its
    /// DVIPAs from the start and records everything, as a lone gateway).
    pub(super) enabled: bool,
    /// Gateway VIPAs whose recovery records are kept.
    records: HashSet<IpAddr>,
    recoveries: HashMap<IpAddr, Recovery>,
    reports: Vec<HaReport>,
}

impl HaState {
    /// Whether reports wait for the HA machine.
    pub(super) fn has_reports(&self) -> bool {
        !self.reports.is_empty()
    }

    /// Whether records of IKE SAs on `local` are written.
    pub(super) fn records_for(&self, local: IpAddr) -> bool {
        !self.enabled || self.records.contains(&local)
    }
}

impl GatewayCore {
    /// Put the core under the HA machine: no DVIPA is routed and no record
    /// written until the machine says so.
    pub fn enable_ha(&mut self) {
        self.ha.enabled = true;
        let routed: Vec<IpAddr> = self
            .dist
            .dvipas()
            .filter(|(_, routing)| *routing)
            .map(|(d, _)| d.dvipa)
            .collect();
        for d in routed {
            self.dist.release(d);
        }
    }

    /// Route `dvipas` at ownership epoch `epoch`: targets hear the DVIPA list
    /// with the epoch and answer with SRVSTAT and NEWCONN (DPT and CRT rebuild).
    pub fn start_routing(
        &mut self,
        now: Instant,
        dvipas: &[IpAddr],
        epoch: u64,
        sink: &mut dyn Sink,
    ) {
        for d in dvipas {
            if !self.dist.take_over_at(*d, epoch) {
                tracing::warn!("HA: {d} is not a DVIPA of this gateway");
            }
        }
        self.flush(now, sink);
    }

    /// Stop routing `dvipas` (no announcement; the next owner's is newer).
    pub fn stop_routing(&mut self, dvipas: &[IpAddr]) {
        for d in dvipas {
            self.dist.release(*d);
        }
    }

    /// Keep (or stop keeping) the recovery records of IKE SAs on `vipa`. Stopping
    /// deletes nothing: the next owner renegotiates from them.
    pub fn set_records(&mut self, vipa: IpAddr, on: bool) {
        if on {
            self.ha.records.insert(vipa);
        } else {
            self.ha.records.remove(&vipa);
        }
    }

    /// Takeover: renegotiate, as initiator with INITIAL_CONTACT, every recorded IKE
    /// SA of the group `vipa` with its Child SAs. The outcome comes as a
    /// [`HaReport::RenegotiationDone`] once each is up or failed.
    pub fn renegotiate(
        &mut self,
        now: Instant,
        vipa: IpAddr,
        epoch: u64,
        records: &[ike::IkeRecord],
        sink: &mut dyn Sink,
    ) {
        let mut rec = Recovery {
            epoch,
            ..Recovery::default()
        };
        for r in records {
            match self.ike.initiate_recovered(now, r) {
                Ok(id) => {
                    rec.pending.insert(id);
                }
                Err(e) => {
                    tracing::warn!(peer = %r.peer, remote = %r.remote, "takeover: cannot renegotiate a recorded IKE SA: {e}");
                    rec.failed += 1;
                }
            }
        }
        tracing::info!(
            "takeover of {vipa} (epoch {epoch}): renegotiating {} IKE SAs",
            rec.pending.len()
        );
        self.ha.recoveries.insert(vipa, rec);
        self.check_recovery(vipa);
        self.flush(now, sink);
    }

    /// An IKE SA came up (`up`) or went before it did: count it in its
    /// renegotiation, if it is part of one.
    pub(super) fn recovery_progress(&mut self, id: ike::IkeSaId, up: bool) {
        let mut found = None;
        for (v, r) in self.ha.recoveries.iter_mut() {
            if r.pending.remove(&id) {
                if up {
                    r.up += 1;
                } else {
                    r.failed += 1;
                }
                found = Some(*v);
                break;
            }
        }
        let Some(vipa) = found else {
            return;
        };
        self.check_recovery(vipa);
    }

    fn check_recovery(&mut self, vipa: IpAddr) {
        if self
            .ha
            .recoveries
            .get(&vipa)
            .is_some_and(|r| r.pending.is_empty())
        {
            if let Some(r) = self.ha.recoveries.remove(&vipa) {
                self.ha.reports.push(HaReport::RenegotiationDone {
                    vipa,
                    epoch: r.epoch,
                    up: r.up,
                    failed: r.failed,
                });
            }
        }
    }

    /// Takeback or planned move: DELETE every IKE SA on `vipa` to its peer (the
    /// new owner renegotiates from the records). Returns how many.
    pub fn hand_over(&mut self, now: Instant, vipa: IpAddr, sink: &mut dyn Sink) -> usize {
        let ids = self.ike_sas_on(now, vipa);
        for id in &ids {
            if let Err(e) = self.ike.delete_ike(now, *id) {
                tracing::debug!("hand-over: IKE SA {id}: {e}");
            }
        }
        self.flush(now, sink);
        ids.len()
    }

    /// Another gateway owns `vipa` now and has replaced our SAs at the peers
    /// (INITIAL_CONTACT): drop them without a word.
    pub fn drop_sas(&mut self, now: Instant, vipa: IpAddr, sink: &mut dyn Sink) -> usize {
        let ids = self.ike_sas_on(now, vipa);
        for id in &ids {
            let _ = self.ike.forget_ike(*id);
        }
        self.flush(now, sink);
        ids.len()
    }

    fn ike_sas_on(&self, now: Instant, vipa: IpAddr) -> Vec<ike::IkeSaId> {
        self.ike
            .sas(now)
            .into_iter()
            .filter(|s| s.local.ip() == vipa)
            .map(|s| s.id)
            .collect()
    }

    /// The next report for the HA machine.
    pub fn poll_ha_report(&mut self) -> Option<HaReport> {
        if self.ha.reports.is_empty() {
            None
        } else {
            Some(self.ha.reports.remove(0))
        }
    }
}
