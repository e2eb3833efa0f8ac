//! Planned moves, takebacks and hand-overs of a group we own (seed 001, figures 8A,
//! 8B and 15). The owner stops writing records, sends NEWCONN to the new owner and
//! DELETEs to the peers, then stops forwarding, gives up the address and releases
//! the owner record naming the successor, which claims next. Because the release
//! comes only after the DELETEs were sent (or `handover_timeout` passed), the new
//! owner never renegotiates before the old owner's DELETEs are out.

use super::event::{Action, CasOutcome, ConnMark, Epoch, InputError, Level, OwnerRecord};
use super::group::{describe, Cx, Group, Held, Phase, State};
use super::GatewayName;

impl Group {
    /// `plexgate move DVIPA --to GATEWAY`, given to this gateway.
    pub(crate) fn move_command(
        &mut self,
        cx: &mut Cx<'_>,
        to: &GatewayName,
    ) -> Result<(), InputError> {
        let group = self.cfg.id();
        if cx.shutting_down {
            return Err(InputError::ShuttingDown);
        }
        if !self.cfg.is_candidate(to) {
            return Err(InputError::NotACandidate {
                group,
                gateway: to.clone(),
            });
        }
        let pinned = to != self.cfg.primary();
        match self.record.clone() {
            None => Err(InputError::OwnerUnknown(group)),
            Some(OwnerRecord::Owned { gateway, epoch, .. }) => {
                if gateway == *to {
                    let msg = format!("move: {to} already routes the group");
                    cx.log(Level::Info, &self.cfg, msg);
                    Ok(())
                } else if gateway == *cx.me {
                    match self.state {
                        State::Owning { epoch: e, .. } if e == epoch => {
                            self.accept_move(cx, to, pinned)
                        }
                        _ => Err(InputError::Busy(group)),
                    }
                } else {
                    if cx.is_dead(to) {
                        return Err(InputError::NotLive(to.clone()));
                    }
                    cx.push(Action::RequestMove {
                        group,
                        to: to.clone(),
                        epoch,
                    });
                    let msg = format!("move: asked {gateway} (epoch {epoch}) to hand over to {to}");
                    cx.log(Level::Info, &self.cfg, msg);
                    Ok(())
                }
            }
            Some(_) => Err(InputError::NoOwner(group)),
        }
    }

    /// A move request seen in the store; only the owner at `epoch` acts on it.
    pub(crate) fn move_requested(&mut self, cx: &mut Cx<'_>, to: &GatewayName, epoch: Epoch) {
        if !matches!(self.state, State::Owning { epoch: e, .. } if e == epoch) {
            return;
        }
        if !self.cfg.is_candidate(to) {
            let msg = format!("move request to {to} refused: not a candidate of the group");
            cx.log(Level::Warn, &self.cfg, msg);
            return;
        }
        let pinned = to != self.cfg.primary();
        if let Err(e) = self.accept_move(cx, to, pinned) {
            cx.log(Level::Warn, &self.cfg, format!("move request refused: {e}"));
        }
    }

    /// We own the group and are asked to hand it to `to`.
    fn accept_move(
        &mut self,
        cx: &mut Cx<'_>,
        to: &GatewayName,
        pinned: bool,
    ) -> Result<(), InputError> {
        if to == cx.me {
            return Ok(());
        }
        if cx.is_dead(to) {
            return Err(InputError::NotLive(to.clone()));
        }
        let State::Owning { phase, .. } = &self.state else {
            return Err(InputError::Busy(self.cfg.id()));
        };
        match phase {
            Phase::Routing => self.start_handover(cx, to.clone(), pinned),
            Phase::TakingOver { .. } => {
                let msg = format!("move to {to} waits for the renegotiation to finish");
                cx.log(Level::Info, &self.cfg, msg);
                self.pending_move = Some((to.clone(), pinned));
            }
            Phase::HandingOver { to: t, .. } if t == to => {}
            _ => return Err(InputError::Busy(self.cfg.id())),
        }
        Ok(())
    }

    /// Begin the hand-over to `to` (seed 001, figure 15 blocks 346-350): records
    /// stop first so that they stay as the successor will read them, then NEWCONN
    /// and DELETEs go out.
    pub(crate) fn start_handover(&mut self, cx: &mut Cx<'_>, to: GatewayName, pinned: bool) {
        let State::Owning { epoch, .. } = self.state else {
            return;
        };
        let group = self.cfg.id();
        if self.held.records {
            cx.push(Action::StopRecords { group });
            self.held.records = false;
        }
        //= https://www.rfc-editor.org/rfc/rfc7296#section-1.4.1
        //# To delete an SA, an INFORMATIONAL exchange with one or more Delete
        //# payloads is sent listing the SPIs (as they would be expected in the
        //# headers of inbound packets) of the SAs to be deleted.
        cx.push(Action::HandOver {
            group,
            epoch,
            to: to.clone(),
        });
        cx.log(
            Level::Info,
            &self.cfg,
            format!("handing over to {to} (epoch {epoch})"),
        );
        self.state = State::Owning {
            epoch,
            phase: Phase::HandingOver {
                to,
                pinned,
                until: cx.now + cx.timing.handover_timeout,
            },
        };
    }

    /// The daemon reports the hand-over sent.
    pub(crate) fn handover_done(&mut self, cx: &mut Cx<'_>, epoch: Epoch) {
        if matches!(&self.state, State::Owning { epoch: e, phase: Phase::HandingOver { .. } }
            if *e == epoch)
        {
            self.finish_handover(cx);
        }
    }

    /// NEWCONN and DELETEs are out (or the wait is over): stop, give up the
    /// address, release naming the successor (figure 15 blocks 352 and 368).
    pub(crate) fn finish_handover(&mut self, cx: &mut Cx<'_>) {
        let State::Owning {
            epoch,
            phase: Phase::HandingOver { to, pinned, .. },
        } = self.state.clone()
        else {
            return;
        };
        // The hand-over sent DELETE for our SAs: nothing left to drop.
        self.held.sas = false;
        self.release_now(cx, epoch, Some(to), pinned);
    }

    /// Undo everything we still hold and release the owner record.
    pub(crate) fn release_now(
        &mut self,
        cx: &mut Cx<'_>,
        epoch: Epoch,
        successor: Option<GatewayName>,
        pinned: bool,
    ) {
        let group = self.cfg.id();
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
        self.send_release(cx, epoch, successor, pinned);
    }

    /// (Re)send the release compare-and-swap.
    pub(crate) fn send_release(
        &mut self,
        cx: &mut Cx<'_>,
        epoch: Epoch,
        successor: Option<GatewayName>,
        pinned: bool,
    ) {
        cx.push(Action::Release {
            group: self.cfg.id(),
            epoch,
            successor: successor.clone(),
            pinned,
        });
        self.state = State::Releasing {
            epoch,
            successor,
            pinned,
            retry_at: cx.now + cx.timing.dead_after,
        };
    }

    /// The answer to our release.
    pub(crate) fn release_result(&mut self, cx: &mut Cx<'_>, outcome: CasOutcome) {
        let State::Releasing {
            successor, pinned, ..
        } = self.state.clone()
        else {
            return;
        };
        match outcome {
            CasOutcome::Applied { epoch } => {
                let record = OwnerRecord::Released {
                    epoch,
                    successor,
                    pinned,
                };
                let msg = format!("released: {}", describe(&record));
                if self.epoch().is_none_or_below(epoch) {
                    self.record = Some(record);
                    self.record_since = cx.now;
                }
                self.state = State::Idle;
                cx.log(Level::Info, &self.cfg, msg);
            }
            CasOutcome::Conflict { current } => {
                self.on_record(cx, current, true);
                self.state = State::Idle;
            }
            CasOutcome::Unreachable => {
                if let State::Releasing { retry_at, .. } = &mut self.state {
                    *retry_at = cx.now + cx.timing.heartbeat;
                }
            }
        }
    }

    /// The daemon reports the renegotiation of a takeover.
    pub(crate) fn renegotiation_done(
        &mut self,
        cx: &mut Cx<'_>,
        epoch: Epoch,
        up: usize,
        failed: usize,
    ) {
        let taking_over = matches!(&self.state,
            State::Owning { epoch: e, phase: Phase::TakingOver { .. } } if *e == epoch);
        if !taking_over {
            return;
        }
        let level = if failed > 0 { Level::Warn } else { Level::Info };
        let msg = format!("takeover done at epoch {epoch}: {up} SAs renegotiated, {failed} failed");
        cx.log(level, &self.cfg, msg);
        self.state = State::Owning {
            epoch,
            phase: Phase::Routing,
        };
        self.tick_routing(cx);
    }

    /// Work for a routing owner: a move that waited, or the shutdown.
    pub(crate) fn tick_routing(&mut self, cx: &mut Cx<'_>) {
        let State::Owning { epoch, phase } = self.state.clone() else {
            return;
        };
        if !matches!(phase, Phase::Routing | Phase::TakingOver { .. }) {
            return;
        }
        if cx.shutting_down {
            match self.best_successor(cx) {
                Some(to) => self.start_handover(cx, to, false),
                None => {
                    cx.log(Level::Warn, &self.cfg, "shutdown: no live successor".into());
                    self.release_now(cx, epoch, None, false);
                }
            }
            return;
        }
        if matches!(phase, Phase::Routing) {
            if let Some((to, pinned)) = self.pending_move.take() {
                if let Err(e) = self.accept_move(cx, &to, pinned) {
                    cx.log(Level::Warn, &self.cfg, format!("move to {to} dropped: {e}"));
                }
            }
        }
    }

    /// The first live candidate other than us, in priority order.
    pub(crate) fn best_successor(&self, cx: &Cx<'_>) -> Option<GatewayName> {
        self.cfg
            .candidates()
            .find(|g| *g != cx.me && !cx.is_dead(g))
            .cloned()
    }
}

trait BelowEpoch {
    fn is_none_or_below(&self, epoch: Epoch) -> bool;
}

impl BelowEpoch for Option<Epoch> {
    fn is_none_or_below(&self, epoch: Epoch) -> bool {
        match self {
            Some(known) => *known < epoch,
            None => true,
        }
    }
}
