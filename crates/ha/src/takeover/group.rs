//! One ownership group as this gateway sees it: the owner record from the store,
//! our state towards the group (idle, claiming, owning in some phase, releasing),
//! and what we hold for it (address, forwarding, records, SAs), so that every way
//! out of ownership undoes exactly what was done. Claim planning lives in
//! `claim.rs`, moves and hand-overs in `handover.rs`.

use super::config::{GatewayName, GroupConfig, Takeback, Timing};
use super::event::{Action, CasOutcome, ConnMark, Epoch, Level, LogLine, OwnerRecord};
use super::liveness::{OwnStore, Peers};
use super::Role;
use std::collections::VecDeque;
use std::time::Instant;

/// What a group's handlers need from the machine: the time, who we are, what we
/// know about liveness, and where actions go.
pub(crate) struct Cx<'a> {
    pub(crate) now: Instant,
    pub(crate) me: &'a GatewayName,
    pub(crate) timing: &'a Timing,
    pub(crate) takeback: Takeback,
    pub(crate) peers: &'a Peers,
    pub(crate) own: &'a OwnStore,
    pub(crate) shutting_down: bool,
    pub(crate) out: &'a mut VecDeque<Action>,
}

impl Cx<'_> {
    pub(crate) fn push(&mut self, action: Action) {
        self.out.push_back(action);
    }

    pub(crate) fn log(&mut self, level: Level, group: &GroupConfig, message: String) {
        self.out.push_back(Action::Log(LogLine {
            level,
            group: Some(group.id()),
            message,
        }));
    }

    /// Our store view is current: we may claim and resume routing.
    pub(crate) fn store_live(&self) -> bool {
        self.own.live(self.now, self.timing.fence_after)
    }

    /// Our last acknowledged heartbeat is recent enough to keep routing.
    pub(crate) fn store_fresh(&self) -> bool {
        self.own.fresh(self.now, self.timing.fence_after)
    }

    /// Whether `gateway` is dead for us now (we ourselves are alive).
    pub(crate) fn is_dead(&self, gateway: &GatewayName) -> bool {
        gateway != self.me
            && self
                .peers
                .is_dead(gateway, self.timing.dead_after, self.now)
    }
}

/// How a claim came about, which decides what follows when it is applied.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum ClaimKind {
    /// The owner is dead, or nobody owns the group: full takeover, renegotiate.
    Takeover,
    /// We are the named successor of a hand-over: renegotiate; `pinned` goes into
    /// the record.
    Successor { pinned: bool },
    /// We own it but were fenced: confirm with a fresh epoch, keep our SAs.
    Reclaim { pinned: bool },
}

/// The phase of a group we own.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Phase {
    /// Claimed, routing, renegotiating the recorded SAs.
    TakingOver { until: Instant },
    /// Routing.
    Routing,
    /// Handing over to `to` (NEWCONN, DELETEs); release follows.
    HandingOver {
        to: GatewayName,
        pinned: bool,
        until: Instant,
    },
    /// No acknowledged heartbeat for `fence_after`: not routing, SAs kept.
    Fenced {
        handing_to: Option<(GatewayName, bool)>,
    },
}

/// Our state towards a group.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum State {
    /// Not owning (primary waiting, backup or standby).
    Idle,
    /// A claim is in flight.
    Claiming {
        expected: Option<Epoch>,
        kind: ClaimKind,
        until: Instant,
    },
    /// We own the group at `epoch`.
    Owning { epoch: Epoch, phase: Phase },
    /// A release is in flight.
    Releasing {
        epoch: Epoch,
        successor: Option<GatewayName>,
        pinned: bool,
        retry_at: Instant,
    },
}

/// What we hold for the group, to undo on the way out.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Held {
    pub(crate) vipa: bool,
    pub(crate) forwarding: bool,
    pub(crate) records: bool,
    pub(crate) sas: bool,
    pub(crate) local: bool,
}

/// One ownership group.
#[derive(Clone, Debug)]
pub(crate) struct Group {
    pub(crate) cfg: GroupConfig,
    /// The owner record as last seen (`None`: not read yet).
    pub(crate) record: Option<OwnerRecord>,
    /// When the current record was first seen.
    pub(crate) record_since: Instant,
    pub(crate) state: State,
    pub(crate) held: Held,
    /// No new claim before this instant (after a failed one).
    pub(crate) retry_at: Option<Instant>,
    /// A move that arrived while we were still taking over.
    pub(crate) pending_move: Option<(GatewayName, bool)>,
    /// The last takeback request we wrote: (owner epoch, when).
    pub(crate) takeback_asked: Option<(Epoch, Instant)>,
}

impl Group {
    pub(crate) fn new(cfg: GroupConfig, now: Instant) -> Self {
        Group {
            cfg,
            record: None,
            record_since: now,
            state: State::Idle,
            held: Held::default(),
            retry_at: None,
            pending_move: None,
            takeback_asked: None,
        }
    }

    /// Our role, for status and tests.
    pub(crate) fn role(&self, me: &GatewayName) -> Role {
        match &self.state {
            State::Owning { phase, .. } => match phase {
                Phase::TakingOver { .. } => Role::TakingOver,
                Phase::Routing => Role::Routing,
                Phase::HandingOver { to, .. } => Role::HandingOver { to: to.clone() },
                Phase::Fenced { .. } => Role::Fenced,
            },
            State::Claiming { .. } => Role::Claiming,
            State::Releasing { .. } => Role::Releasing,
            State::Idle if self.cfg.primary() == me => Role::Primary,
            State::Idle => match self.cfg.rank_of(me) {
                Some(rank) => Role::Backup { rank },
                None => Role::Standby,
            },
        }
    }

    pub(crate) fn epoch(&self) -> Option<Epoch> {
        self.record.as_ref().and_then(OwnerRecord::epoch)
    }

    /// A new owner record, from the watch (`authoritative == false`) or from a
    /// compare-and-swap answer. Epochs only grow: older records are ignored, and an
    /// `Absent` record after a known epoch only counts when it answers our own
    /// compare-and-swap (someone deleted the key by hand).
    pub(crate) fn on_record(&mut self, cx: &mut Cx<'_>, record: OwnerRecord, authoritative: bool) {
        if let Some(known) = self.epoch() {
            match record.epoch() {
                Some(e) if e < known => return,
                None if !authoritative => {
                    let msg = format!("ignored: owner record vanished after epoch {known}");
                    cx.log(Level::Warn, &self.cfg, msg);
                    return;
                }
                _ => {}
            }
        }
        if self.record.as_ref() == Some(&record) {
            return;
        }
        self.record = Some(record.clone());
        self.record_since = cx.now;
        match self.state.clone() {
            State::Owning { epoch, phase } => {
                let ours_at = match &record {
                    OwnerRecord::Owned {
                        gateway, epoch: e, ..
                    } if gateway == cx.me => Some(*e),
                    _ => None,
                };
                match (ours_at, phase) {
                    (Some(e), _) if e == epoch => {}
                    (Some(e), Phase::Fenced { handing_to }) => {
                        // A reclaim of ours went through although we were told
                        // the store was unreachable: still fenced, at the new epoch.
                        self.state = State::Owning {
                            epoch: e,
                            phase: Phase::Fenced { handing_to },
                        };
                    }
                    _ => self.lose(cx, &format!("owner record is now {}", describe(&record))),
                }
            }
            State::Claiming { expected, kind, .. } => {
                if record.epoch() <= expected {
                    return;
                }
                match &record {
                    OwnerRecord::Owned { gateway, epoch, .. } if gateway == cx.me => {
                        self.claim_applied(cx, *epoch, kind);
                    }
                    _ => self.lose(cx, &format!("claim lost: {}", describe(&record))),
                }
            }
            State::Releasing { epoch, .. } => {
                if record.epoch() > Some(epoch) {
                    self.state = State::Idle;
                }
            }
            State::Idle => {}
        }
    }

    /// The answer to our claim.
    pub(crate) fn claim_result(&mut self, cx: &mut Cx<'_>, outcome: CasOutcome) {
        let State::Claiming { kind, .. } = self.state.clone() else {
            return;
        };
        match outcome {
            CasOutcome::Applied { epoch } => {
                if self.epoch().is_some_and(|known| epoch < known) {
                    let msg = format!("ignored: claim applied at {epoch}, already superseded");
                    cx.log(Level::Warn, &self.cfg, msg);
                    return;
                }
                self.claim_applied(cx, epoch, kind);
            }
            CasOutcome::Conflict { current } => {
                let State::Claiming { expected, .. } = self.state else {
                    return;
                };
                if current.epoch() == expected {
                    // The record was as expected, so the owner-heartbeat guard
                    // failed: the owner renewed after the heartbeat we judged
                    // stale. Our view lags; give it time before trying again.
                    let wait = cx.timing.rank_delay.max(cx.timing.heartbeat);
                    self.retry_at = Some(cx.now + wait);
                    self.lose(
                        cx,
                        "claim refused: the owner's heartbeat is newer than we saw",
                    );
                    return;
                }
                self.on_record(cx, current.clone(), true);
                if matches!(self.state, State::Claiming { .. }) {
                    self.lose(cx, &format!("claim refused: {}", describe(&current)));
                }
            }
            CasOutcome::Unreachable => {
                self.retry_at = Some(cx.now + cx.timing.heartbeat);
                match (kind, self.epoch()) {
                    (ClaimKind::Reclaim { .. }, Some(epoch)) => {
                        self.state = State::Owning {
                            epoch,
                            phase: Phase::Fenced { handing_to: None },
                        };
                    }
                    _ => self.state = State::Idle,
                }
                cx.log(
                    Level::Warn,
                    &self.cfg,
                    "claim failed: store unreachable".into(),
                );
            }
        }
    }

    /// Our claim went through at `epoch`.
    fn claim_applied(&mut self, cx: &mut Cx<'_>, epoch: Epoch, kind: ClaimKind) {
        let pinned = match kind {
            ClaimKind::Takeover => false,
            ClaimKind::Successor { pinned } | ClaimKind::Reclaim { pinned } => pinned,
        };
        self.record = Some(OwnerRecord::Owned {
            gateway: cx.me.clone(),
            epoch,
            pinned,
        });
        self.record_since = cx.now;
        self.retry_at = None;
        let fenced = Phase::Fenced { handing_to: None };
        if cx.shutting_down || !cx.store_live() {
            // Not routing on a claim we cannot keep: the fenced phase releases (on
            // shutdown) or reclaims once the store view is current again.
            self.state = State::Owning {
                epoch,
                phase: fenced,
            };
            return;
        }
        // A reclaim keeps the SAs we still hold; if we never got to hold any
        // (fenced right after a takeover claim), they are still to renegotiate.
        let renegotiate = !matches!(kind, ClaimKind::Reclaim { .. }) || !self.held.sas;
        self.bring_up(cx, epoch, renegotiate);
    }

    /// Start routing the group at `epoch`: address, forwarding, announcement to the
    /// targets, records, and (after a takeover) renegotiation of the recorded SAs.
    fn bring_up(&mut self, cx: &mut Cx<'_>, epoch: Epoch, renegotiate: bool) {
        let group = self.cfg.id();
        let routes = self.cfg.routes_for(cx.me);
        cx.push(Action::AddVipa { group });
        self.held.vipa = true;
        cx.push(Action::StartForwarding {
            group,
            epoch,
            routes: routes.clone(),
        });
        self.held.forwarding = true;
        cx.push(Action::AnnounceRouting {
            group,
            epoch,
            routes,
        });
        if !self.held.local {
            cx.push(Action::MarkConnections {
                group,
                mark: ConnMark::Local,
            });
            self.held.local = true;
        }
        cx.push(Action::StartRecords { group, epoch });
        self.held.records = true;
        let phase = if renegotiate {
            //= https://www.rfc-editor.org/rfc/rfc7296#section-2.4
            //# the receiver MAY delete any other IKE SAs it has with the same
            //# authenticated identities
            cx.push(Action::Renegotiate { group, epoch });
            Phase::TakingOver {
                until: cx.now + cx.timing.renegotiation_timeout,
            }
        } else {
            Phase::Routing
        };
        self.held.sas = true;
        let what = if renegotiate {
            "taking over, renegotiating the recorded SAs"
        } else {
            "routing again after fencing, SAs kept"
        };
        cx.log(
            Level::Info,
            &self.cfg,
            format!("owner at epoch {epoch}: {what}"),
        );
        self.state = State::Owning { epoch, phase };
    }

    /// Stop routing without giving up the claim (store view lost): forwarding,
    /// address and records stop; the SAs stay for a reclaim.
    pub(crate) fn fence(&mut self, cx: &mut Cx<'_>) {
        let State::Owning { epoch, phase } = self.state.clone() else {
            return;
        };
        let handing_to = match phase {
            Phase::HandingOver { to, pinned, .. } => Some((to, pinned)),
            Phase::Fenced { .. } => return,
            _ => None,
        };
        self.stop_routing(cx);
        if self.held.records {
            cx.push(Action::StopRecords {
                group: self.cfg.id(),
            });
            self.held.records = false;
        }
        let msg = format!(
            "fenced at epoch {epoch}: no heartbeat acknowledged for {:?}, stopped routing",
            cx.timing.fence_after
        );
        cx.log(Level::Warn, &self.cfg, msg);
        self.state = State::Owning {
            epoch,
            phase: Phase::Fenced { handing_to },
        };
    }

    /// Stop forwarding and give up the address.
    pub(crate) fn stop_routing(&mut self, cx: &mut Cx<'_>) {
        let group = self.cfg.id();
        if self.held.forwarding {
            cx.push(Action::StopForwarding { group });
            self.held.forwarding = false;
        }
        if self.held.vipa {
            cx.push(Action::RemoveVipa { group });
            self.held.vipa = false;
        }
    }

    /// Someone else has the group: undo everything we hold, forget our SAs.
    pub(crate) fn lose(&mut self, cx: &mut Cx<'_>, why: &str) {
        let group = self.cfg.id();
        let owned = !matches!(self.state, State::Idle);
        self.stop_routing(cx);
        if self.held.records {
            cx.push(Action::StopRecords { group });
        }
        if self.held.sas {
            cx.push(Action::DropSas { group });
        }
        if self.held.local {
            cx.push(Action::MarkConnections {
                group,
                mark: ConnMark::Distributed,
            });
        }
        self.held = Held::default();
        self.pending_move = None;
        self.state = State::Idle;
        if owned {
            cx.log(Level::Warn, &self.cfg, format!("gave up the group: {why}"));
        }
    }

    /// Time-driven work for the group at `cx.now`.
    pub(crate) fn tick(&mut self, cx: &mut Cx<'_>) {
        match self.state.clone() {
            State::Idle => self.tick_idle(cx),
            State::Claiming { until, .. } => {
                if cx.now >= until {
                    cx.log(Level::Warn, &self.cfg, "no answer to our claim".into());
                    self.claim_result(cx, CasOutcome::Unreachable);
                }
            }
            State::Owning { .. } => self.tick_owning(cx),
            State::Releasing {
                epoch,
                successor,
                pinned,
                retry_at,
            } => {
                if cx.now >= retry_at {
                    self.send_release(cx, epoch, successor, pinned);
                }
            }
        }
    }

    fn tick_owning(&mut self, cx: &mut Cx<'_>) {
        let State::Owning { epoch, phase } = self.state.clone() else {
            return;
        };
        match phase {
            Phase::Fenced { handing_to } => {
                if cx.store_live() && self.retry_at.is_none_or_past(cx.now) {
                    self.resume_after_fence(cx, epoch, handing_to);
                }
            }
            _ if !cx.store_fresh() => self.fence(cx),
            Phase::TakingOver { until } => {
                if cx.shutting_down {
                    self.tick_routing(cx);
                } else if cx.now >= until {
                    let msg = "takeover: no renegotiation report in time, routing anyway";
                    cx.log(Level::Warn, &self.cfg, msg.into());
                    self.state = State::Owning {
                        epoch,
                        phase: Phase::Routing,
                    };
                    self.tick_routing(cx);
                }
            }
            Phase::HandingOver { until, .. } => {
                if cx.now >= until {
                    let msg = "hand-over not confirmed in time, releasing anyway";
                    cx.log(Level::Warn, &self.cfg, msg.into());
                    self.finish_handover(cx);
                }
            }
            Phase::Routing => self.tick_routing(cx),
        }
    }

    /// The store view is current again after fencing: reclaim with a fresh epoch,
    /// or finish the hand-over (or shutdown) we were in.
    fn resume_after_fence(
        &mut self,
        cx: &mut Cx<'_>,
        epoch: Epoch,
        handing_to: Option<(GatewayName, bool)>,
    ) {
        let target = match handing_to {
            Some((to, pinned)) => Some((Some(to), pinned)),
            None if cx.shutting_down => Some((self.best_successor(cx), false)),
            None => None,
        };
        if let Some((successor, pinned)) = target {
            if self.held.sas {
                // The hand-over did not finish (or we are leaving): the next
                // owner's INITIAL_CONTACT replaces these SAs at the peers.
                cx.push(Action::DropSas {
                    group: self.cfg.id(),
                });
                self.held.sas = false;
            }
            self.release_now(cx, epoch, successor, pinned);
            return;
        }
        let pinned = matches!(&self.record, Some(OwnerRecord::Owned { pinned: true, .. }));
        cx.push(Action::Claim {
            group: self.cfg.id(),
            expected: Some(epoch),
            pinned,
            owner_heartbeat: None,
        });
        self.state = State::Claiming {
            expected: Some(epoch),
            kind: ClaimKind::Reclaim { pinned },
            until: cx.now + cx.timing.dead_after,
        };
    }

    /// The earliest instant at which the group has time-driven work, as of `cx.now`.
    pub(crate) fn deadline(&self, cx: &Cx<'_>) -> Option<Instant> {
        match &self.state {
            State::Idle => self.idle_deadline(cx),
            State::Claiming { until, .. } => Some(*until),
            State::Owning { phase, .. } => match phase {
                Phase::TakingOver { until } | Phase::HandingOver { until, .. } => Some(*until),
                Phase::Fenced { .. } => self.retry_at.filter(|t| *t > cx.now),
                Phase::Routing => None,
            },
            State::Releasing { retry_at, .. } => Some(*retry_at),
        }
    }
}

/// `Option<Instant>` as "not before": none, or already past.
pub(crate) trait NotBefore {
    fn is_none_or_past(&self, now: Instant) -> bool;
}

impl NotBefore for Option<Instant> {
    fn is_none_or_past(&self, now: Instant) -> bool {
        match self {
            Some(t) => now >= *t,
            None => true,
        }
    }
}

/// A record in words, for log lines.
pub(crate) fn describe(record: &OwnerRecord) -> String {
    match record {
        OwnerRecord::Absent => "no owner record".into(),
        OwnerRecord::Owned {
            gateway,
            epoch,
            pinned,
        } => {
            let pin = if *pinned { ", pinned by a move" } else { "" };
            format!("owned by {gateway} at epoch {epoch}{pin}")
        }
        OwnerRecord::Released {
            epoch, successor, ..
        } => match successor {
            Some(s) => format!("released at epoch {epoch} for {s}"),
            None => format!("released at epoch {epoch}"),
        },
    }
}
