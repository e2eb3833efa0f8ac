//! A model of the shared store as the HA machine needs it: one owner record per
//! group changed only by compare-and-swap, a global revision that becomes the
//! epoch, gateway leases that expire `ttl` after their last renewal, and move
//! requests. It answers exactly as [`Action::Claim`](super::super::Action::Claim)
//! and [`Action::Release`](super::super::Action::Release) document, so the lead can
//! use it as the reference for the store adapters.

use super::super::{CasOutcome, Epoch, GatewayName, GroupId, HeartbeatGuard, OwnerRecord};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// An owner-record store with compare-and-swap, leases and a revision counter.
#[derive(Clone, Debug, Default)]
pub struct StoreModel {
    revision: u64,
    owners: BTreeMap<GroupId, OwnerRecord>,
    leases: BTreeMap<GatewayName, Instant>,
    heartbeats: BTreeMap<GatewayName, u64>,
    expired: std::collections::BTreeSet<GatewayName>,
    moves: BTreeMap<GroupId, (GatewayName, Epoch)>,
}

impl StoreModel {
    /// An empty store at revision 0.
    pub fn new() -> Self {
        StoreModel::default()
    }

    /// The owner record of a group.
    pub fn record(&self, group: GroupId) -> OwnerRecord {
        self.owners
            .get(&group)
            .cloned()
            .unwrap_or(OwnerRecord::Absent)
    }

    /// Every group that has a record.
    pub fn groups(&self) -> impl Iterator<Item = (&GroupId, &OwnerRecord)> {
        self.owners.iter()
    }

    fn next_epoch(&mut self) -> Epoch {
        self.revision += 1;
        Epoch(self.revision)
    }

    /// `Claim`: the record becomes `Owned { by }` if its epoch is `expected` and
    /// the guard holds (the guarded gateway's heartbeat key has that revision, or
    /// is absent for `None`).
    pub fn claim(
        &mut self,
        by: &GatewayName,
        group: GroupId,
        expected: Option<Epoch>,
        pinned: bool,
        guard: Option<&HeartbeatGuard>,
    ) -> CasOutcome {
        let current = self.record(group);
        let guard_holds = match guard {
            Some(g) => self.heartbeat_revision(&g.gateway) == g.revision,
            None => true,
        };
        if current.epoch() != expected || !guard_holds {
            return CasOutcome::Conflict { current };
        }
        let epoch = self.next_epoch();
        self.owners.insert(
            group,
            OwnerRecord::Owned {
                gateway: by.clone(),
                epoch,
                pinned,
            },
        );
        CasOutcome::Applied { epoch }
    }

    /// `Release`: the record becomes `Released` if it is `Owned { by, epoch }`.
    pub fn release(
        &mut self,
        by: &GatewayName,
        group: GroupId,
        epoch: Epoch,
        successor: Option<GatewayName>,
        pinned: bool,
    ) -> CasOutcome {
        let current = self.record(group);
        let ours = matches!(&current, OwnerRecord::Owned { gateway, epoch: e, .. }
            if gateway == by && *e == epoch);
        if !ours {
            return CasOutcome::Conflict { current };
        }
        let epoch = self.next_epoch();
        self.owners.insert(
            group,
            OwnerRecord::Released {
                epoch,
                successor,
                pinned,
            },
        );
        CasOutcome::Applied { epoch }
    }

    /// A heartbeat: (re)creates and renews `by`'s lease and writes its heartbeat
    /// key (on the lease).
    /// Returns the store revision of the heartbeat write.
    pub fn renew(&mut self, by: &GatewayName, now: Instant) -> u64 {
        self.leases.insert(by.clone(), now);
        self.expired.remove(by);
        let revision = self.next_epoch().0;
        self.heartbeats.insert(by.clone(), revision);
        revision
    }

    /// The revision of a gateway's heartbeat key (`None`: absent, lease gone).
    pub fn heartbeat_revision(&self, gateway: &GatewayName) -> Option<u64> {
        self.heartbeats.get(gateway).copied()
    }

    /// Whether `gateway` holds a lease.
    pub fn has_lease(&self, gateway: &GatewayName) -> bool {
        self.leases.contains_key(gateway)
    }

    /// Whether `gateway`'s lease expired (and was not renewed since). A gateway
    /// that never had a lease is not expired: it may be starting.
    pub fn lease_expired(&self, gateway: &GatewayName) -> bool {
        self.expired.contains(gateway)
    }

    /// When the next lease expires.
    pub fn next_expiry(&self, ttl: Duration) -> Option<Instant> {
        self.leases.values().map(|t| *t + ttl).min()
    }

    /// Removes and returns the leases expired at `now`.
    pub fn expire(&mut self, now: Instant, ttl: Duration) -> Vec<GatewayName> {
        let gone: Vec<GatewayName> = self
            .leases
            .iter()
            .filter(|(_, t)| **t + ttl <= now)
            .map(|(g, _)| g.clone())
            .collect();
        for g in &gone {
            self.leases.remove(g);
            self.heartbeats.remove(g);
            self.expired.insert(g.clone());
        }
        gone
    }

    /// After a store outage every lease counts as renewed at `now` (etcd does the
    /// same on a leader change, so that an outage does not expire every lease).
    pub fn extend_leases(&mut self, now: Instant) {
        for t in self.leases.values_mut() {
            *t = now;
        }
    }

    /// Writes a move request for a group.
    pub fn request_move(&mut self, group: GroupId, to: GatewayName, epoch: Epoch) {
        self.moves.insert(group, (to, epoch));
    }

    /// The move request of a group.
    pub fn move_request(&self, group: GroupId) -> Option<&(GatewayName, Epoch)> {
        self.moves.get(&group)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cas_claim_and_release() {
        let g = GroupId::new("192.0.2.10".parse().unwrap());
        let a = GatewayName::from("a");
        let b = GatewayName::from("b");
        let mut s = StoreModel::new();
        assert_eq!(
            s.claim(&a, g, None, false, None),
            CasOutcome::Applied { epoch: Epoch(1) }
        );
        assert!(matches!(
            s.claim(&b, g, None, false, None),
            CasOutcome::Conflict { .. }
        ));
        assert!(matches!(
            s.release(&b, g, Epoch(1), None, false),
            CasOutcome::Conflict { .. }
        ));
        assert_eq!(
            s.release(&a, g, Epoch(1), Some(b.clone()), false),
            CasOutcome::Applied { epoch: Epoch(2) }
        );
        assert_eq!(
            s.claim(&b, g, Some(Epoch(2)), false, None),
            CasOutcome::Applied { epoch: Epoch(3) }
        );
        assert_eq!(s.record(g).owner(), Some(&b));
        // A takeover guarded by b's heartbeat: fails once b renewed again.
        let t = Instant::now();
        let seen = s.renew(&b, t);
        s.renew(&b, t);
        let stale = HeartbeatGuard {
            gateway: b.clone(),
            revision: Some(seen),
        };
        let r = s.claim(&a, g, Some(Epoch(3)), false, Some(&stale));
        assert!(matches!(r, CasOutcome::Conflict { .. }));
        let fresh = HeartbeatGuard {
            gateway: b.clone(),
            revision: s.heartbeat_revision(&b),
        };
        let r = s.claim(&a, g, Some(Epoch(3)), false, Some(&fresh));
        assert!(matches!(r, CasOutcome::Applied { .. }));
    }
}
