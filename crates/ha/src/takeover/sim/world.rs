//! The simulated world's machinery: the event loop on virtual time, the store's
//! side of every request (compare-and-swap, heartbeats, move requests, lease
//! expiry), watch events with per-gateway latency in order, store reads on
//! (re)connection, and the links between gateways and the store.

use super::{Delivery, Event, Request, Sim};
use crate::takeover::{CasOutcome, GatewayName, GroupId, HaMachine, Input};
use std::cmp::Reverse;
use std::time::{Duration, Instant};

impl Sim {
    /// One step of the world not later than `end`; `false` if nothing is due.
    pub(super) fn step(&mut self, end: Instant) -> bool {
        let t_event = self.queue.peek().map(|Reverse((t, _))| *t);
        let t_timer = self
            .nodes
            .values()
            .filter_map(|n| n.machine.as_ref()?.poll_timeout())
            .min();
        let t_lease = if self.store_up {
            self.store.next_expiry(self.timing.lease_ttl)
        } else {
            None
        };
        let Some(t) = [t_event, t_timer, t_lease].into_iter().flatten().min() else {
            return false;
        };
        if t > end {
            return false;
        }
        if t > self.now {
            self.now = t;
            self.check_fences();
        }
        if t_event == Some(t) {
            let Reverse((_, seq)) = self.queue.pop().expect("peeked");
            let event = self.events.remove(&seq).expect("queued event");
            self.handle_event(event);
        } else if t_timer == Some(t) {
            self.fire_timers();
        } else {
            self.expire_leases();
        }
        true
    }

    pub(super) fn fire_timers(&mut self) {
        let now = self.now;
        let due: Vec<GatewayName> = self
            .nodes
            .iter()
            .filter(|(_, n)| {
                n.machine
                    .as_ref()
                    .and_then(HaMachine::poll_timeout)
                    .is_some_and(|t| t <= now)
            })
            .map(|(g, _)| g.clone())
            .collect();
        for gw in due {
            if let Some(m) = self.nodes.get_mut(&gw).and_then(|n| n.machine.as_mut()) {
                m.handle_timeout(now);
                if m.poll_timeout().is_some_and(|t| t <= now) {
                    self.violation(format!(
                        "{gw}: poll_timeout not in the future after handle_timeout"
                    ));
                }
            }
            self.drain(&gw);
        }
    }

    pub(super) fn expire_leases(&mut self) {
        let gone = self.store.expire(self.now, self.timing.lease_ttl);
        for g in gone {
            self.note(&g, "lease expired in the store".into());
            self.notify_all(Input::LeaseGone { gateway: g });
        }
    }

    pub(super) fn handle_event(&mut self, event: Event) {
        match event {
            Event::AtStore {
                from,
                incarnation,
                request,
            } => self.at_store(from, incarnation, request),
            Event::AtNode {
                to,
                incarnation,
                delivery,
            } => {
                let current = self.nodes.get(&to).map(|n| n.incarnation);
                if current != Some(incarnation) {
                    return;
                }
                match delivery {
                    Delivery::FromStore { input, if_cut } => {
                        if self.link_up(&to) {
                            self.deliver(&to, input);
                        } else if let Some(fail) = if_cut {
                            self.deliver(&to, fail);
                        }
                    }
                    Delivery::Local(input) => {
                        if let Input::HandoverDone { group, .. } = &input {
                            if let Some(n) = self.nodes.get_mut(&to) {
                                n.handing_over.remove(group);
                            }
                        }
                        self.deliver(&to, input);
                    }
                    Delivery::Reachable(up) => {
                        if self.link_up(&to) == up {
                            self.deliver(&to, Input::StoreReachable(up));
                        }
                    }
                }
            }
        }
    }

    /// A request reaches the store.
    pub(super) fn at_store(&mut self, from: GatewayName, incarnation: u32, request: Request) {
        let failure = failure_for(&request);
        if !self.link_up(&from) {
            if let Some(fail) = failure {
                self.send_local_at(&from, incarnation, fail, self.timing.request_timeout);
            }
            return;
        }
        let reply = match request {
            Request::Renew { sent_at } => {
                let revision = self.store.renew(&from, self.now);
                self.notify_all(Input::PeerHeartbeat {
                    gateway: from.clone(),
                    revision,
                });
                Some(Input::RenewOk { sent_at })
            }
            Request::Claim {
                group,
                expected,
                pinned,
                guard,
            } => {
                let outcome = self
                    .store
                    .claim(&from, group, expected, pinned, guard.as_ref());
                self.after_cas(group, &outcome);
                Some(Input::ClaimResult { group, outcome })
            }
            Request::Release {
                group,
                epoch,
                successor,
                pinned,
            } => {
                let outcome = self.store.release(&from, group, epoch, successor, pinned);
                self.after_cas(group, &outcome);
                Some(Input::ReleaseResult { group, outcome })
            }
            Request::Move { group, to, epoch } => {
                self.store.request_move(group, to.clone(), epoch);
                self.notify_all(Input::MoveRequested { group, to, epoch });
                None
            }
        };
        if let (Some(input), Some(if_cut)) = (reply, failure) {
            let delivery = Delivery::FromStore {
                input,
                if_cut: Some(if_cut),
            };
            self.push_event(
                self.timing.store_latency,
                Event::AtNode {
                    to: from,
                    incarnation,
                    delivery,
                },
            );
        }
    }

    pub(super) fn after_cas(&mut self, group: GroupId, outcome: &CasOutcome) {
        if let CasOutcome::Applied { .. } = outcome {
            let record = self.store.record(group);
            self.ownership.push((self.now, group, record.clone()));
            self.notify_all(Input::OwnerChanged { group, record });
        }
    }

    /// A watch event for every running gateway (after the store latency).
    pub(super) fn notify_all(&mut self, input: Input) {
        let targets: Vec<(GatewayName, u32)> = self
            .nodes
            .iter()
            .filter(|(_, n)| n.machine.is_some())
            .map(|(g, n)| (g.clone(), n.incarnation))
            .collect();
        for (to, incarnation) in targets {
            self.watch_event(&to, incarnation, input.clone());
        }
    }

    /// A watch event (or store read) for one gateway: after the store latency
    /// plus the gateway's watch delay, never before an earlier one (FIFO).
    pub(super) fn watch_event(&mut self, to: &GatewayName, incarnation: u32, input: Input) {
        let Some(node) = self.nodes.get_mut(to) else {
            return;
        };
        let at = (self.now + self.timing.store_latency + node.watch_delay).max(node.last_watch_at);
        node.last_watch_at = at;
        let delivery = Delivery::FromStore {
            input,
            if_cut: None,
        };
        self.push_event(
            at - self.now,
            Event::AtNode {
                to: to.clone(),
                incarnation,
                delivery,
            },
        );
    }

    /// A gateway's link came up: the daemon reads every owner record again and
    /// learns which leases are gone.
    pub(super) fn resync(&mut self, gw: &GatewayName) {
        let Some(incarnation) = self.nodes.get(gw).map(|n| n.incarnation) else {
            return;
        };
        let mut inputs: Vec<Input> = self
            .nodes
            .get(gw)
            .map(|n| n.cfg.groups().iter().map(|g| g.id()).collect::<Vec<_>>())
            .unwrap_or_default()
            .into_iter()
            .map(|group| Input::OwnerChanged {
                group,
                record: self.store.record(group),
            })
            .collect();
        for g in self.nodes.keys() {
            if g == gw {
                continue;
            }
            if self.store.lease_expired(g) {
                inputs.push(Input::LeaseGone { gateway: g.clone() });
            } else if let Some(revision) = self.store.heartbeat_revision(g) {
                inputs.push(Input::PeerHeartbeat {
                    gateway: g.clone(),
                    revision,
                });
            }
        }
        for input in inputs {
            self.watch_event(gw, incarnation, input);
        }
    }

    pub(super) fn link_up(&self, gw: &GatewayName) -> bool {
        self.store_up && self.nodes.get(gw).is_some_and(|n| n.link)
    }

    pub(super) fn link_changed(&mut self, gw: &GatewayName, before: bool) {
        let after = self.link_up(gw);
        if before == after {
            return;
        }
        let what = if after {
            "store link up"
        } else {
            "store link down"
        };
        self.note(gw, what.into());
        let Some(incarnation) = self.nodes.get(gw).map(|n| n.incarnation) else {
            return;
        };
        let delay = if after {
            self.resync(gw);
            self.timing.store_latency
        } else {
            self.timing.request_timeout
        };
        self.push_event(
            delay,
            Event::AtNode {
                to: gw.clone(),
                incarnation,
                delivery: Delivery::Reachable(after),
            },
        );
    }

    pub(super) fn send_local_at(
        &mut self,
        to: &GatewayName,
        incarnation: u32,
        input: Input,
        after: Duration,
    ) {
        self.push_event(
            after,
            Event::AtNode {
                to: to.clone(),
                incarnation,
                delivery: Delivery::Local(input),
            },
        );
    }
}

/// What the daemon reports when a request does not get through.
pub(super) fn failure_for(request: &Request) -> Option<Input> {
    match request {
        Request::Renew { .. } => Some(Input::RenewFailed),
        Request::Claim { group, .. } => Some(Input::ClaimResult {
            group: *group,
            outcome: CasOutcome::Unreachable,
        }),
        Request::Release { group, .. } => Some(Input::ReleaseResult {
            group: *group,
            outcome: CasOutcome::Unreachable,
        }),
        Request::Move { .. } => None,
    }
}
