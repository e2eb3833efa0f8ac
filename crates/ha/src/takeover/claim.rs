//! When an idle candidate claims a group, and when a returning primary asks for it
//! back (seed 001, figures 7A and 14; DESIGN.md flow 6).
//!
//! Claim order: the named successor of a hand-over, then the primary, then the
//! backups by rank. A candidate claims once the owner is dead (no heartbeat for
//! `dead_after`, or its lease gone) — or at once when the group is free — plus
//! `rank_delay` for every candidate ranked above it that is still alive. So the
//! highest-ranked live candidate claims first, and a lower one claims only if the
//! higher ones are dead too (or did not manage to claim in their slot); the store's
//! compare-and-swap makes sure that exactly one claim wins per epoch.
//!
//! Takeback: with [`Takeback::Automatic`], a primary that does not own its group
//! asks the live owner to hand it back once its own heartbeats have been
//! acknowledged without a single failure for `takeback_hold` (hysteresis: a
//! flapping primary never qualifies), unless the owner got the group by an
//! operator's move (pinned).

use super::config::Takeback;
use super::event::{Action, Epoch, HeartbeatGuard, Level, OwnerRecord};
use super::group::{ClaimKind, Cx, Group, NotBefore, State};
use super::GatewayName;
use std::time::Instant;

/// A claim we would make, if nothing changes, at `at`.
#[derive(Clone, Debug)]
pub(crate) struct Plan {
    /// When we may claim.
    at: Instant,
    /// When a higher-ranked candidate becomes dead (the plan gets earlier).
    wake: Option<Instant>,
    expected: Option<Epoch>,
    kind: ClaimKind,
    guard: Option<HeartbeatGuard>,
}

impl Group {
    /// The claim this gateway would make, or `None` if it may not claim at all
    /// (not a candidate, store view not current, record unknown, shutting down).
    pub(crate) fn claim_plan(&self, cx: &Cx<'_>) -> Option<Plan> {
        if cx.shutting_down || !cx.store_live() || !self.cfg.is_candidate(cx.me) {
            return None;
        }
        let record = self.record.as_ref()?;
        let not_before = self.retry_at.unwrap_or(cx.now).max(cx.now);
        let expected = record.epoch();
        let immediate = |kind| Plan {
            at: not_before,
            wake: None,
            expected,
            kind,
            guard: None,
        };
        let (base, first, owner) = match record {
            OwnerRecord::Owned { gateway, .. } if gateway == cx.me => {
                // Ours from an earlier life of this process (or an answer we
                // missed): nobody routes it; take it over with a fresh epoch.
                return Some(immediate(ClaimKind::Takeover));
            }
            OwnerRecord::Released {
                successor: Some(s),
                pinned,
                ..
            } if s == cx.me => {
                return Some(immediate(ClaimKind::Successor { pinned: *pinned }));
            }
            OwnerRecord::Owned { gateway, .. } => {
                let dead_at = cx.peers.dead_at(gateway, cx.timing.dead_after);
                (dead_at.unwrap_or(self.record_since), None, Some(gateway))
            }
            OwnerRecord::Released { successor, .. } => {
                (self.record_since, successor.as_ref(), None)
            }
            OwnerRecord::Absent => (self.record_since, None, None),
        };
        let (above, wake) = self.live_above(cx, first, owner);
        let at = (base + cx.timing.rank_delay * above).max(not_before);
        let guard = owner.map(|o| HeartbeatGuard {
            gateway: o.clone(),
            revision: cx.peers.revision(o),
        });
        Some(Plan {
            at,
            wake,
            expected,
            kind: ClaimKind::Takeover,
            guard,
        })
    }

    /// How many live candidates come before us in claim order (`first`, then the
    /// configured order; the current `owner` does not count), and the earliest
    /// instant one of them becomes dead.
    fn live_above(
        &self,
        cx: &Cx<'_>,
        first: Option<&GatewayName>,
        owner: Option<&GatewayName>,
    ) -> (u32, Option<Instant>) {
        let first = first.filter(|s| self.cfg.is_candidate(s));
        let order = first.into_iter().chain(self.cfg.candidates());
        let mut counted: Vec<&GatewayName> = Vec::new();
        let mut wake: Option<Instant> = None;
        for g in order {
            if g == cx.me {
                break;
            }
            if Some(g) == owner || counted.contains(&g) || cx.is_dead(g) {
                continue;
            }
            counted.push(g);
            if let Some(t) = cx.peers.dead_at(g, cx.timing.dead_after) {
                wake = Some(wake.map_or(t, |w| w.min(t)));
            }
        }
        (counted.len() as u32, wake)
    }

    /// When a returning primary asks the owner for its group back, and the
    /// owner's epoch the request is for.
    pub(crate) fn takeback_at(&self, cx: &Cx<'_>) -> Option<(Instant, Epoch)> {
        if cx.takeback != Takeback::Automatic || self.cfg.primary() != cx.me || cx.shutting_down {
            return None;
        }
        let Some(OwnerRecord::Owned {
            gateway,
            epoch,
            pinned: false,
        }) = &self.record
        else {
            return None;
        };
        if gateway == cx.me || cx.is_dead(gateway) {
            return None;
        }
        let stable = cx.own.stable_since()? + cx.timing.takeback_hold;
        let at = match self.takeback_asked {
            Some((e, t)) if e == *epoch => stable.max(t + cx.timing.takeback_hold),
            _ => stable,
        };
        Some((at, *epoch))
    }

    /// Time-driven work of an idle group: claim, or ask for it back.
    pub(crate) fn tick_idle(&mut self, cx: &mut Cx<'_>) {
        if let Some(plan) = self.claim_plan(cx) {
            if plan.at <= cx.now {
                self.claim(cx, plan);
                return;
            }
        }
        if let Some((at, epoch)) = self.takeback_at(cx) {
            if at <= cx.now {
                cx.push(Action::RequestMove {
                    group: self.cfg.id(),
                    to: cx.me.clone(),
                    epoch,
                });
                self.takeback_asked = Some((epoch, cx.now));
                let msg =
                    format!("primary is back and stable: asking for the group (epoch {epoch})");
                cx.log(Level::Info, &self.cfg, msg);
            }
        }
    }

    /// When an idle group next has work.
    pub(crate) fn idle_deadline(&self, cx: &Cx<'_>) -> Option<Instant> {
        let plan = self.claim_plan(cx);
        let times = [
            plan.as_ref().map(|p| p.at),
            plan.as_ref().and_then(|p| p.wake),
            self.takeback_at(cx).map(|(t, _)| t),
        ];
        times.into_iter().flatten().min()
    }

    fn claim(&mut self, cx: &mut Cx<'_>, plan: Plan) {
        let pinned = matches!(plan.kind, ClaimKind::Successor { pinned: true });
        cx.push(Action::Claim {
            group: self.cfg.id(),
            expected: plan.expected,
            pinned,
            owner_heartbeat: plan.guard,
        });
        let why = match (&self.record, &plan.kind) {
            (_, ClaimKind::Successor { .. }) => "named successor of a hand-over".to_string(),
            (Some(OwnerRecord::Owned { gateway, .. }), _) if gateway == cx.me => {
                "owner record left by an earlier run of this gateway".to_string()
            }
            (Some(OwnerRecord::Owned { gateway, .. }), _) => format!("owner {gateway} is dead"),
            _ => "nobody owns the group".to_string(),
        };
        cx.log(Level::Info, &self.cfg, format!("claiming: {why}"));
        debug_assert!(self.retry_at.is_none_or_past(cx.now));
        self.state = State::Claiming {
            expected: plan.expected,
            kind: plan.kind,
            until: cx.now + cx.timing.dead_after,
        };
    }
}
