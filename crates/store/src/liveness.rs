//! Liveness and self-fencing, free of I/O and clocks (time is passed in): the
//! [`Monitor`] a gateway runs over its peers' heartbeats ("missed heartbeats for
//! `dead_after` on *my* clock → dead"), and the [`Fence`] an owner runs over its own
//! renewals ("no renewal has succeeded for `fence_after` since it was *sent* → stop
//! routing"). [`crate::ownership`] does the store side.
//!
//! Why it is safe (no two gateways route a DVIPA at once), with F = `fence_after`,
//! D = `dead_after`, ρ the largest relative clock-rate difference between two hosts
//! and r the time the owner needs to actually stop once its deadline passes:
//!
//! - the owner's renewal is a transaction "if I still own each of my DVIPAs at my
//!   epoch, write my heartbeat"; its fence deadline is `sent + F`, counted from
//!   *before* the request left (so it never outlives what the store saw);
//! - a watcher claims only "if the owner key is at the epoch I saw *and* the owner's
//!   heartbeat key is still at the revision I last saw", no sooner than D after it
//!   saw that heartbeat;
//! - so when the claim commits, the heartbeat it names was the owner's last
//!   successful renewal (a later one would have changed the heartbeat revision and
//!   failed the claim; one after the claim fails its own compare). That heartbeat was
//!   sent at s ≤ its commit ≤ the time the watcher saw it, and the claim comes at
//!   least D later on the watcher's clock, while the owner stopped at s + F + r on
//!   its own. Safe when **F·(1+ρ) + r < D·(1−ρ)**, checked by
//!   [`LivenessConfig::check`]; defaults F = 300 ms, D = 500 ms, ρ = 1 %, r = 20 ms.
//! - When the owner's lease ends its owner and heartbeat keys vanish and a watcher
//!   may claim at once; the owner therefore also stops `ttl·(1−ρ) − r` after its last
//!   successful keep-alive was sent (the store cannot end a lease sooner than TTL
//!   after a keep-alive). On the embedded store a dead process releases its lease
//!   lock at once, which is the fast path there.
//!
//! The watcher's delay is never a risk, only a cost: a late watch event makes it
//! claim on stale knowledge, and that claim fails its compare.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::kv::{Backend, Revision};

/// Heartbeat, fencing and lease timing.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LivenessConfig {
    /// How often a gateway renews (writes its heartbeat): ~100-200 ms.
    pub heartbeat_interval: Duration,
    /// F: an owner stops routing when no renewal sent in the last F has succeeded.
    pub fence_after: Duration,
    /// D: a peer is dead when no new heartbeat has been seen for D.
    pub dead_after: Duration,
    /// ρ: the largest relative clock-rate difference between two gateways' hosts.
    pub max_drift: f64,
    /// r: how long an owner takes to stop forwarding once its fence deadline passes.
    pub reaction: Duration,
    /// The store lease's TTL (etcd raises it to at least ~2 s).
    pub lease_ttl: Duration,
}

impl Default for LivenessConfig {
    fn default() -> Self {
        LivenessConfig {
            heartbeat_interval: Duration::from_millis(100),
            fence_after: Duration::from_millis(300),
            dead_after: Duration::from_millis(500),
            max_drift: 0.01,
            reaction: Duration::from_millis(20),
            lease_ttl: Duration::from_secs(10),
        }
    }
}

impl LivenessConfig {
    /// The defaults for a backend (the same timing; etcd's lease TTL must be whole
    /// seconds and is raised by etcd to its floor anyway).
    pub fn for_backend(backend: Backend) -> LivenessConfig {
        let d = LivenessConfig::default();
        match backend {
            Backend::Etcd => LivenessConfig {
                heartbeat_interval: Duration::from_millis(150),
                fence_after: Duration::from_millis(450),
                dead_after: Duration::from_millis(750),
                ..d
            },
            Backend::Embedded | Backend::Memory => d,
        }
    }

    /// Check the safety inequality F·(1+ρ) + r < D·(1−ρ), that an owner does not fence
    /// itself after one late renewal (F ≥ 2 × interval), and that the lease outlasts
    /// the detection (TTL > D).
    pub fn check(&self) -> Result<(), String> {
        let f = self.fence_after.as_secs_f64();
        let d = self.dead_after.as_secs_f64();
        let rho = self.max_drift;
        if !(0.0..0.5).contains(&rho) {
            return Err(format!("max_drift {rho} must be in [0, 0.5)"));
        }
        if f * (1.0 + rho) + self.reaction.as_secs_f64() >= d * (1.0 - rho) {
            return Err(format!(
                "unsafe timing: fence_after {:?} × (1 + {rho}) + reaction {:?} must be below dead_after {:?} × (1 − {rho})",
                self.fence_after, self.reaction, self.dead_after
            ));
        }
        if self.fence_after < 2 * self.heartbeat_interval {
            return Err(format!(
                "fence_after {:?} must be at least twice the heartbeat interval {:?}, or one late renewal stops an owner",
                self.fence_after, self.heartbeat_interval
            ));
        }
        if self.lease_ttl <= self.dead_after {
            return Err(format!(
                "lease TTL {:?} must exceed dead_after {:?}",
                self.lease_ttl, self.dead_after
            ));
        }
        Ok(())
    }
}

/// The owner's side: until when it may route.
#[derive(Debug, Clone)]
pub struct Fence {
    cfg: LivenessConfig,
    renewal_sent: Option<Instant>,
    lease_sent: Option<Instant>,
    lost: bool,
}

impl Fence {
    /// A fence that allows nothing until the first renewal.
    pub fn new(cfg: LivenessConfig) -> Fence {
        Fence {
            cfg,
            renewal_sent: None,
            lease_sent: None,
            lost: false,
        }
    }

    /// A renewal sent at `sent` succeeded.
    pub fn renewed(&mut self, sent: Instant) {
        self.renewal_sent = Some(self.renewal_sent.map_or(sent, |t| t.max(sent)));
        self.lost = false;
    }

    /// A lease keep-alive (or the grant) sent at `sent` succeeded.
    pub fn lease_renewed(&mut self, sent: Instant) {
        self.lease_sent = Some(self.lease_sent.map_or(sent, |t| t.max(sent)));
    }

    /// The store said we no longer hold what we thought (a renewal's compare
    /// failed, or the lease ended): stop at once, until the next renewal.
    pub fn revoke(&mut self) {
        self.lost = true;
    }

    /// The instant after which this gateway must not route.
    pub fn valid_until(&self) -> Option<Instant> {
        if self.lost {
            return None;
        }
        let by_renewal = self.renewal_sent? + self.cfg.fence_after;
        let lease = self
            .cfg
            .lease_ttl
            .mul_f64(1.0 - self.cfg.max_drift)
            .saturating_sub(self.cfg.reaction);
        let by_lease = self.lease_sent? + lease;
        Some(by_renewal.min(by_lease))
    }

    /// Whether this gateway may route at `now`.
    pub fn may_route(&self, now: Instant) -> bool {
        self.valid_until().is_some_and(|t| now < t)
    }
}

/// A change of a peer's liveness.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LivenessEvent {
    /// No heartbeat for `dead_after`, or its heartbeat key vanished (lease ended).
    Dead {
        /// The gateway.
        gateway: String,
        /// The revision of its last heartbeat seen (`None`: the key is gone), to
        /// guard a claim with.
        last_heartbeat: Option<Revision>,
    },
    /// A gateway thought dead heartbeats again (or is seen for the first time).
    Alive {
        /// The gateway.
        gateway: String,
    },
}

#[derive(Debug, Clone)]
struct Peer {
    last: Option<Revision>,
    seen_at: Instant,
    alive: bool,
    reported: bool,
}

/// The watcher's side: peers' heartbeats against the local clock.
#[derive(Debug, Clone)]
pub struct Monitor {
    dead_after: Duration,
    peers: BTreeMap<String, Peer>,
}

impl Monitor {
    /// A monitor declaring peers dead after `cfg.dead_after` without a heartbeat.
    pub fn new(cfg: &LivenessConfig) -> Monitor {
        Monitor {
            dead_after: cfg.dead_after,
            peers: BTreeMap::new(),
        }
    }

    /// Expect heartbeats from `gateway`, giving it `dead_after` from `now` to show up.
    pub fn expect(&mut self, gateway: &str, now: Instant) {
        self.peers.entry(gateway.to_string()).or_insert(Peer {
            last: None,
            seen_at: now,
            alive: true,
            reported: false,
        });
    }

    /// `gateway`'s heartbeat key was written at revision `rev` (seen at `now`).
    /// Older or repeated revisions are ignored.
    pub fn heartbeat(&mut self, gateway: &str, rev: Revision, now: Instant) {
        self.expect(gateway, now);
        if let Some(p) = self.peers.get_mut(gateway) {
            if p.last.is_some_and(|l| rev <= l) {
                return;
            }
            p.last = Some(rev);
            p.seen_at = now;
            if !p.alive {
                p.alive = true;
                p.reported = false;
            }
        }
    }

    /// `gateway`'s heartbeat key was deleted (its lease ended): dead now.
    pub fn gone(&mut self, gateway: &str, now: Instant) {
        self.expect(gateway, now);
        if let Some(p) = self.peers.get_mut(gateway) {
            p.last = None;
            if p.alive {
                p.alive = false;
                p.reported = false;
            }
        }
    }

    /// Liveness changes since the last poll.
    pub fn poll(&mut self, now: Instant) -> Vec<LivenessEvent> {
        let mut out = Vec::new();
        for (name, p) in &mut self.peers {
            if p.alive && now.saturating_duration_since(p.seen_at) >= self.dead_after {
                p.alive = false;
                p.reported = false;
            }
            if p.reported {
                continue;
            }
            p.reported = true;
            out.push(if p.alive {
                LivenessEvent::Alive {
                    gateway: name.clone(),
                }
            } else {
                LivenessEvent::Dead {
                    gateway: name.clone(),
                    last_heartbeat: p.last,
                }
            });
        }
        out
    }

    /// When the next peer would be declared dead (for the caller's timer).
    pub fn next_deadline(&self) -> Option<Instant> {
        self.peers
            .values()
            .filter(|p| p.alive)
            .map(|p| p.seen_at + self.dead_after)
            .min()
    }

    /// Whether `gateway` is alive as of the last poll.
    pub fn is_alive(&self, gateway: &str) -> bool {
        self.peers.get(gateway).is_some_and(|p| p.alive)
    }

    /// The revision of `gateway`'s last heartbeat seen (`None`: none or gone).
    pub fn last_heartbeat(&self, gateway: &str) -> Option<Revision> {
        self.peers.get(gateway).and_then(|p| p.last)
    }
}

#[cfg(test)]
#[path = "liveness_tests.rs"]
mod tests;
