//! The simulation's stand-in for each gateway daemon: it carries out the machine's
//! actions (store requests over the link, address, forwarding, records, targets,
//! renegotiation and hand-over with their durations) and checks the safety
//! invariants at the moment each action takes effect.

use super::{Delivery, Event, Request, Sim};
use crate::takeover::{Action, GatewayName, GroupId, Input, Level, OwnerRecord};
use std::collections::BTreeSet;

impl Sim {
    /// Carries out every action a gateway's machine has queued.
    pub(super) fn drain(&mut self, gw: &GatewayName) {
        loop {
            let action = self
                .nodes
                .get_mut(gw)
                .and_then(|n| n.machine.as_mut())
                .and_then(|m| m.poll_action());
            match action {
                Some(a) => self.apply(gw, a),
                None => break,
            }
        }
    }

    fn apply(&mut self, gw: &GatewayName, action: Action) {
        match action {
            Action::RenewHeartbeat
            | Action::Claim { .. }
            | Action::Release { .. }
            | Action::RequestMove { .. } => self.store_action(gw, action),
            Action::AddVipa { group } => self.add_vipa(gw, group),
            Action::RemoveVipa { group } => {
                self.held(gw, |n| n.vipas.remove(&group));
            }
            Action::StartForwarding {
                group,
                epoch,
                routes,
            } => {
                self.held(gw, |n| n.routes.insert(group, routes).is_none());
                self.start_forwarding(gw, group, epoch)
            }
            Action::StopForwarding { group } => {
                self.held(gw, |n| n.forwarding.remove(&group).is_some());
            }
            Action::AnnounceRouting { group, epoch, .. } => {
                let current = self.target_epochs.entry(group).or_insert(epoch);
                if epoch < *current {
                    self.counters.refused_announcements += 1;
                } else {
                    *current = epoch;
                }
            }
            Action::StartRecords { group, .. } => self.start_records(gw, group),
            Action::StopRecords { group } => {
                self.held(gw, |n| n.records.remove(&group));
            }
            Action::Renegotiate { group, epoch } => self.renegotiate(gw, group, epoch),
            Action::HandOver { group, epoch, .. } => {
                self.counters.handovers += 1;
                self.held(gw, |n| n.handing_over.insert(group));
                self.local(
                    gw,
                    Input::HandoverDone { group, epoch },
                    self.timing.handover,
                );
            }
            Action::DropSas { .. } | Action::MarkConnections { .. } => {}
            Action::Log(line) => {
                if line.level == Level::Warn && line.message.starts_with("fenced") {
                    self.counters.fences += 1;
                }
                let group = line.group.map(|g| format!("[{g}] ")).unwrap_or_default();
                self.note(gw, format!("{group}{}", line.message));
            }
        }
    }

    /// Actions that are requests to the store.
    fn store_action(&mut self, gw: &GatewayName, action: Action) {
        let request = match action {
            Action::RenewHeartbeat => Request::Renew { sent_at: self.now },
            Action::Claim {
                group,
                expected,
                pinned,
                owner_heartbeat,
            } => Request::Claim {
                group,
                expected,
                pinned,
                guard: owner_heartbeat,
            },
            Action::Release {
                group,
                epoch,
                successor,
                pinned,
            } => Request::Release {
                group,
                epoch,
                successor,
                pinned,
            },
            Action::RequestMove { group, to, epoch } => Request::Move { group, to, epoch },
            _ => return,
        };
        self.request(gw, request);
    }

    /// A request to the store: over the link, or failing after the timeout.
    fn request(&mut self, gw: &GatewayName, request: Request) {
        let Some(incarnation) = self.nodes.get(gw).map(|n| n.incarnation) else {
            return;
        };
        if self.link_up(gw) {
            self.push_event(
                self.timing.store_latency,
                Event::AtStore {
                    from: gw.clone(),
                    incarnation,
                    request,
                },
            );
        } else if let Some(fail) = super::world::failure_for(&request) {
            self.send_local_at(gw, incarnation, fail, self.timing.request_timeout);
        }
    }

    /// A report of the gateway's own daemon after `after`.
    fn local(&mut self, gw: &GatewayName, input: Input, after: std::time::Duration) {
        if let Some(incarnation) = self.nodes.get(gw).map(|n| n.incarnation) {
            self.push_event(
                after,
                Event::AtNode {
                    to: gw.clone(),
                    incarnation,
                    delivery: Delivery::Local(input),
                },
            );
        }
    }

    fn held(&mut self, gw: &GatewayName, f: impl FnOnce(&mut super::Node) -> bool) {
        if let Some(n) = self.nodes.get_mut(gw) {
            f(n);
        }
    }

    /// The other running gateways that hold `group` in the set `pick` selects.
    fn others_holding(
        &self,
        gw: &GatewayName,
        pick: impl Fn(&super::Node) -> bool,
    ) -> BTreeSet<GatewayName> {
        self.nodes
            .iter()
            .filter(|(g, n)| *g != gw && n.machine.is_some() && pick(n))
            .map(|(g, _)| g.clone())
            .collect()
    }

    fn add_vipa(&mut self, gw: &GatewayName, group: GroupId) {
        let others = self.others_holding(gw, |n| n.vipas.contains(&group));
        if !others.is_empty() {
            self.violation(format!("{gw} adds {group} while {others:?} hold it"));
        }
        self.held(gw, |n| n.vipas.insert(group));
    }

    fn start_forwarding(
        &mut self,
        gw: &GatewayName,
        group: GroupId,
        epoch: crate::takeover::Epoch,
    ) {
        let others = self.others_holding(gw, |n| n.forwarding.contains_key(&group));
        if !others.is_empty() {
            self.violation(format!("{gw} forwards {group} while {others:?} forward it"));
        }
        let record = self.store.record(group);
        let current = matches!(&record, OwnerRecord::Owned { gateway, epoch: e, .. }
            if gateway == gw && *e == epoch);
        if !current {
            self.violation(format!(
                "{gw} forwards {group} at epoch {epoch} but the store says {record:?}"
            ));
        }
        if let Some(max) = self.max_started.get(&group) {
            if epoch <= *max {
                self.violation(format!(
                    "{gw} forwards {group} at epoch {epoch}, not above epoch {max} seen before"
                ));
            }
        }
        self.max_started.insert(group, epoch);
        self.held(gw, |n| n.forwarding.insert(group, epoch).is_none());
    }

    fn start_records(&mut self, gw: &GatewayName, group: GroupId) {
        let others = self.others_holding(gw, |n| n.records.contains(&group));
        if !others.is_empty() {
            self.violation(format!(
                "{gw} writes records of {group} while {others:?} write them"
            ));
        }
        self.held(gw, |n| n.records.insert(group));
    }

    fn renegotiate(&mut self, gw: &GatewayName, group: GroupId, epoch: crate::takeover::Epoch) {
        self.counters.renegotiations += 1;
        let others = self.others_holding(gw, |n| n.handing_over.contains(&group));
        if !others.is_empty() {
            self.violation(format!(
                "{gw} renegotiates {group} while {others:?} still send their DELETEs"
            ));
        }
        let up = self.timing.sas_per_group;
        let done = Input::RenegotiationDone {
            group,
            epoch,
            up,
            failed: 0,
        };
        self.local(gw, done, self.timing.renegotiation);
    }
}
