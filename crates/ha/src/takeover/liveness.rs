//! Liveness as this gateway knows it: the other gateways' heartbeats seen through
//! the store ([`Peers`]), and our own standing with the store ([`OwnStore`]): when
//! our last acknowledged heartbeat was sent, whether the store is reachable, and
//! since when our view of the store is current. Liveness is judged on heartbeats
//! *through the store*, not on the cluster channel: a gateway that reaches its
//! peers but not the store must be taken over, because it fences itself.

use super::config::GatewayName;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// What we know of one other gateway.
#[derive(Clone, Copy, Debug)]
struct Peer {
    /// When we last saw its heartbeat (our clock), or when we started or our store
    /// view came back (benefit of the doubt).
    last_seen: Instant,
    /// When the store told us its lease ended (cleared by a new heartbeat).
    gone_at: Option<Instant>,
    /// Store revision of the latest heartbeat we saw (`None`: none seen, or the
    /// lease ended since).
    revision: Option<u64>,
}

/// The other gateways' liveness.
#[derive(Clone, Debug, Default)]
pub(crate) struct Peers {
    peers: BTreeMap<GatewayName, Peer>,
}

impl Peers {
    /// Every gateway in `names` counts as seen at `now`.
    pub(crate) fn new<'a>(names: impl Iterator<Item = &'a GatewayName>, now: Instant) -> Self {
        let peers = names
            .map(|n| {
                (
                    n.clone(),
                    Peer {
                        last_seen: now,
                        gone_at: None,
                        revision: None,
                    },
                )
            })
            .collect();
        Peers { peers }
    }

    /// Whether `gateway` is tracked.
    pub(crate) fn knows(&self, gateway: &GatewayName) -> bool {
        self.peers.contains_key(gateway)
    }

    /// A heartbeat of `gateway` with store revision `revision`, seen at `now`.
    /// A heartbeat older than one already seen is a late event and ignored.
    pub(crate) fn heartbeat(&mut self, gateway: &GatewayName, revision: u64, now: Instant) {
        if let Some(p) = self.peers.get_mut(gateway) {
            if p.revision.is_some_and(|r| revision < r) {
                return;
            }
            p.revision = Some(revision);
            p.last_seen = p.last_seen.max(now);
            p.gone_at = None;
        }
    }

    /// The lease of `gateway` ended (its heartbeat key is gone).
    pub(crate) fn lease_gone(&mut self, gateway: &GatewayName, now: Instant) {
        if let Some(p) = self.peers.get_mut(gateway) {
            p.gone_at.get_or_insert(now);
            p.revision = None;
        }
    }

    /// The revision of `gateway`'s latest heartbeat as far as we know.
    pub(crate) fn revision(&self, gateway: &GatewayName) -> Option<u64> {
        self.peers.get(gateway).and_then(|p| p.revision)
    }

    /// Our view of the store was stale since `stale_since` (we were cut off, or
    /// had not started) and is current again. What we did not see meanwhile must
    /// not make anyone dead: every gateway counts as seen `now`, and lease ends we
    /// learned before `stale_since` are forgotten (the gateway may have restarted
    /// meanwhile); lease ends learned since (from the store read on reconnection)
    /// stand.
    pub(crate) fn refresh_all(&mut self, now: Instant, stale_since: Instant) {
        for p in self.peers.values_mut() {
            match p.gone_at {
                Some(g) if g >= stale_since => continue,
                _ => p.gone_at = None,
            }
            p.last_seen = p.last_seen.max(now);
        }
    }

    /// The instant `gateway` is (or will be, without a new heartbeat) dead.
    /// Unknown gateways are dead since forever (`None`).
    pub(crate) fn dead_at(&self, gateway: &GatewayName, dead_after: Duration) -> Option<Instant> {
        let p = self.peers.get(gateway)?;
        Some(match p.gone_at {
            Some(t) => t.min(p.last_seen + dead_after),
            None => p.last_seen + dead_after,
        })
    }

    /// Whether `gateway` counts as dead at `now`.
    pub(crate) fn is_dead(
        &self,
        gateway: &GatewayName,
        dead_after: Duration,
        now: Instant,
    ) -> bool {
        match self.dead_at(gateway, dead_after) {
            Some(t) => now >= t,
            None => true,
        }
    }
}

/// Our own heartbeat and store connection.
#[derive(Clone, Debug, Default)]
pub(crate) struct OwnStore {
    /// When the next heartbeat write is due.
    pub(crate) next_renew: Option<Instant>,
    /// Send instant of the latest acknowledged heartbeat write.
    pub(crate) last_ok_sent: Option<Instant>,
    /// When a heartbeat write last failed.
    pub(crate) last_failure: Option<Instant>,
    /// What the daemon last said about the store connection.
    pub(crate) reachable: bool,
    /// Whether our store view was current at the last evaluation.
    pub(crate) view_live: bool,
    /// Since when our store view is current.
    pub(crate) live_since: Option<Instant>,
    /// Since when our store view is not current (start, or when it was lost).
    pub(crate) stale_since: Option<Instant>,
}

impl OwnStore {
    /// A fresh state: reachable until told otherwise, nothing renewed yet.
    pub(crate) fn new() -> Self {
        OwnStore {
            reachable: true,
            ..OwnStore::default()
        }
    }

    /// The instant our last acknowledged heartbeat gets too old to route on.
    pub(crate) fn fence_at(&self, fence_after: Duration) -> Option<Instant> {
        self.last_ok_sent.map(|s| s + fence_after)
    }

    /// Whether a heartbeat sent less than `fence_after` before `now` was
    /// acknowledged: an owner keeps routing exactly as long as this holds.
    pub(crate) fn fresh(&self, now: Instant, fence_after: Duration) -> bool {
        self.fence_at(fence_after).is_some_and(|t| now < t)
    }

    /// Whether our view of the store is current at `now`: fresh, and the daemon
    /// has not reported the store unreachable. Only then may we claim, resume
    /// after fencing, or judge others dead.
    pub(crate) fn live(&self, now: Instant, fence_after: Duration) -> bool {
        self.reachable && self.fresh(now, fence_after)
    }

    /// Since when we have been live without a single failed heartbeat.
    pub(crate) fn stable_since(&self) -> Option<Instant> {
        if !self.view_live {
            return None;
        }
        let since = self.live_since?;
        Some(match self.last_failure {
            Some(f) => since.max(f),
            None => since,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peers_die_dead_after_their_last_heartbeat_and_revive() {
        let t0 = Instant::now();
        let a = GatewayName::from("a");
        let d = Duration::from_millis(600);
        let mut p = Peers::new([a.clone()].iter(), t0);
        assert!(!p.is_dead(&a, d, t0 + Duration::from_millis(599)));
        assert!(p.is_dead(&a, d, t0 + d));
        p.heartbeat(&a, 7, t0 + Duration::from_millis(500));
        assert_eq!(p.revision(&a), Some(7));
        p.heartbeat(&a, 6, t0 + Duration::from_millis(550));
        assert_eq!(p.revision(&a), Some(7), "a late event changes nothing");
        assert_eq!(p.dead_at(&a, d), Some(t0 + Duration::from_millis(1100)));
        p.lease_gone(&a, t0 + Duration::from_millis(700));
        assert!(p.is_dead(&a, d, t0 + Duration::from_millis(700)));
        assert_eq!(p.revision(&a), None, "the heartbeat key is gone");
        p.refresh_all(t0 + Duration::from_secs(5), t0 + Duration::from_millis(700));
        assert!(
            p.is_dead(&a, d, t0 + Duration::from_secs(5)),
            "a lease end learned while stale (the store read) stands"
        );
        p.refresh_all(t0 + Duration::from_secs(5), t0 + Duration::from_millis(800));
        assert!(
            !p.is_dead(&a, d, t0 + Duration::from_secs(5)),
            "a lease end learned before we were cut off is forgotten"
        );
        assert!(p.is_dead(&a, d, t0 + Duration::from_millis(5600)));
        p.heartbeat(&a, 9, t0 + Duration::from_secs(6));
        assert!(!p.is_dead(&a, d, t0 + Duration::from_secs(6)));
        assert!(p.is_dead(&GatewayName::from("zz"), d, t0));
    }

    #[test]
    fn own_store_is_live_only_with_a_recent_ack_and_a_connection() {
        let t0 = Instant::now();
        let f = Duration::from_millis(350);
        let mut s = OwnStore::new();
        assert!(!s.live(t0, f), "nothing acknowledged yet");
        s.last_ok_sent = Some(t0);
        assert!(s.live(t0 + Duration::from_millis(349), f));
        assert!(!s.live(t0 + f, f));
        s.reachable = false;
        assert!(!s.live(t0, f));
    }
}
