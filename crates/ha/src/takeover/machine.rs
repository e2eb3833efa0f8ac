//! [`HaMachine`]: one per gateway process, quinn-proto style. The daemon feeds it
//! inputs with [`HaMachine::handle`], calls [`HaMachine::handle_timeout`] when
//! [`HaMachine::poll_timeout`] is reached, and carries out every action from
//! [`HaMachine::poll_action`] in order. The machine drives its own heartbeat
//! cadence ([`Action::RenewHeartbeat`] every `heartbeat`), fences its groups when
//! its heartbeats stop being acknowledged, and runs one state machine per
//! ownership group.

use super::config::{HaConfig, Timing};
use super::event::{Action, Input, InputError, Level, LogLine, OwnerRecord};
use super::group::{Cx, Group, State};
use super::liveness::{OwnStore, Peers};
use super::{GatewayName, GroupId, Role};
use std::collections::VecDeque;
use std::net::IpAddr;
use std::time::Instant;

/// A group as `plexgate status` shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupStatus {
    /// The group (its gateway VIPA).
    pub group: GroupId,
    /// Its DVIPAs.
    pub dvipas: Vec<IpAddr>,
    /// Our role.
    pub role: Role,
    /// The owner record as last seen (`None`: not read yet).
    pub record: Option<OwnerRecord>,
}

/// The HA state machine of one gateway.
#[derive(Debug)]
pub struct HaMachine {
    cfg: HaConfig,
    started: bool,
    now: Option<Instant>,
    peers: Peers,
    own: OwnStore,
    groups: Vec<Group>,
    out: VecDeque<Action>,
    shutting_down: bool,
}

impl HaMachine {
    /// A machine for this configuration; nothing happens before [`Input::Start`].
    pub fn new(cfg: HaConfig) -> Self {
        HaMachine {
            cfg,
            started: false,
            now: None,
            peers: Peers::default(),
            own: OwnStore::new(),
            groups: Vec::new(),
            out: VecDeque::new(),
            shutting_down: false,
        }
    }

    /// The configuration.
    pub fn config(&self) -> &HaConfig {
        &self.cfg
    }

    /// Feeds one input. An error means the input was refused and changed nothing
    /// (the daemon logs it, or answers the operator's command with it).
    pub fn handle(&mut self, now: Instant, input: Input) -> Result<(), InputError> {
        let now = self.advance(now);
        if !self.started && input != Input::Start {
            return Err(InputError::NotStarted);
        }
        let me = self.cfg.me().clone();
        match input {
            Input::Start => self.start(now),
            Input::RenewOk { sent_at } => {
                self.own.last_ok_sent =
                    Some(self.own.last_ok_sent.map_or(sent_at, |t| t.max(sent_at)));
            }
            Input::RenewFailed => self.own.last_failure = Some(now),
            Input::StoreReachable(up) => self.store_reachable(now, up),
            Input::PeerHeartbeat { gateway, .. } if gateway == me => {}
            Input::PeerHeartbeat { gateway, revision } => {
                self.known(&gateway)?;
                self.peers.heartbeat(&gateway, revision, now);
            }
            Input::LeaseGone { gateway } if gateway == me => {
                // The store counts us dead: nothing we sent before counts any more.
                self.own.last_ok_sent = None;
                self.own.last_failure = Some(now);
                self.log(Level::Warn, "our own store lease ended");
            }
            Input::LeaseGone { gateway } => {
                self.known(&gateway)?;
                self.peers.lease_gone(&gateway, now);
            }
            other => self.group_input(other)?,
        }
        self.tick(now);
        Ok(())
    }

    /// Inputs addressed to one group.
    fn group_input(&mut self, input: Input) -> Result<(), InputError> {
        match input {
            Input::OwnerChanged { group, record } => {
                self.with_group(group, |g, cx| g.on_record(cx, record, false))
            }
            Input::ClaimResult { group, outcome } => {
                self.with_group(group, |g, cx| g.claim_result(cx, outcome))
            }
            Input::ReleaseResult { group, outcome } => {
                self.with_group(group, |g, cx| g.release_result(cx, outcome))
            }
            Input::MoveCommand { dvipa, to } => {
                let group = self
                    .cfg
                    .group_of(dvipa)
                    .ok_or(InputError::UnknownDvipa(dvipa))?;
                self.known(&to)?;
                self.with_group(group, |g, cx| g.move_command(cx, &to))?
            }
            Input::MoveRequested { group, to, epoch } => {
                self.known(&to)?;
                self.with_group(group, |g, cx| g.move_requested(cx, &to, epoch))
            }
            Input::RenegotiationDone {
                group,
                epoch,
                up,
                failed,
            } => self.with_group(group, |g, cx| g.renegotiation_done(cx, epoch, up, failed)),
            Input::HandoverDone { group, epoch } => {
                self.with_group(group, |g, cx| g.handover_done(cx, epoch))
            }
            Input::Shutdown => {
                if !self.shutting_down {
                    self.shutting_down = true;
                    self.log(Level::Info, "shutting down: handing over owned groups");
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }

    /// Runs what is due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        let now = self.advance(now);
        self.tick(now);
    }

    /// The next instant [`HaMachine::handle_timeout`] must be called at (if no
    /// input comes first).
    pub fn poll_timeout(&self) -> Option<Instant> {
        let now = self.now?;
        if !self.started {
            return None;
        }
        let mut next = self.own.next_renew;
        // When our last acknowledged heartbeat gets too old: owners fence then,
        // whether or not the store was reported unreachable before.
        let fence_at = self.own.fence_at(self.cfg.timing().fence_after);
        next = min_opt(next, fence_at.filter(|t| *t > now));
        let mut out = VecDeque::new();
        let cx = self.cx(now, &mut out);
        for g in &self.groups {
            next = min_opt(next, g.deadline(&cx));
        }
        next
    }

    /// The next action to carry out.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.out.pop_front()
    }

    /// Our role for a group.
    pub fn role(&self, group: GroupId) -> Option<Role> {
        let me = self.cfg.me();
        self.groups
            .iter()
            .find(|g| g.cfg.id() == group)
            .map(|g| g.role(me))
    }

    /// Every group with our role and the owner record as we last saw it.
    pub fn status(&self) -> Vec<GroupStatus> {
        let me = self.cfg.me();
        self.groups
            .iter()
            .map(|g| GroupStatus {
                group: g.cfg.id(),
                dvipas: g.cfg.dvipas().to_vec(),
                role: g.role(me),
                record: g.record.clone(),
            })
            .collect()
    }

    /// After [`Input::Shutdown`]: whether no group is owned, claimed or being
    /// released any more (the process may exit).
    pub fn released_all(&self) -> bool {
        self.groups.iter().all(|g| matches!(g.state, State::Idle))
    }

    fn advance(&mut self, now: Instant) -> Instant {
        let now = self.now.map_or(now, |n| n.max(now));
        self.now = Some(now);
        now
    }

    fn start(&mut self, now: Instant) {
        if self.started {
            return;
        }
        self.started = true;
        let me = self.cfg.me().clone();
        let others = self.cfg.gateways().keys().filter(|g| **g != me);
        self.peers = Peers::new(others, now);
        self.groups = self
            .cfg
            .groups()
            .iter()
            .map(|g| Group::new(g.clone(), now))
            .collect();
        self.own.next_renew = Some(now);
        self.own.stale_since = Some(now);
        self.log(Level::Info, &format!("HA started as {me}"));
    }

    fn store_reachable(&mut self, now: Instant, up: bool) {
        if up != self.own.reachable {
            let msg = if up {
                "store reachable again"
            } else {
                "store unreachable"
            };
            self.log(if up { Level::Info } else { Level::Warn }, msg);
        }
        self.own.reachable = up;
        if !up {
            self.own.last_failure = Some(now);
        }
    }

    fn known(&self, gateway: &GatewayName) -> Result<(), InputError> {
        if self.peers.knows(gateway) || gateway == self.cfg.me() {
            Ok(())
        } else {
            Err(InputError::UnknownGateway(gateway.clone()))
        }
    }

    /// Heartbeat cadence, store view transitions, then every group.
    fn tick(&mut self, now: Instant) {
        if !self.started {
            return;
        }
        let timing: Timing = *self.cfg.timing();
        if self.own.next_renew.is_some_and(|t| t <= now) {
            self.out.push_back(Action::RenewHeartbeat);
            self.own.next_renew = Some(now + timing.heartbeat);
        }
        let live = self.own.live(now, timing.fence_after);
        if live != self.own.view_live {
            self.own.view_live = live;
            if live {
                // Heartbeats we could not see meanwhile do not make anyone dead.
                let stale_since = self.own.stale_since.unwrap_or(now);
                self.peers.refresh_all(now, stale_since);
                self.own.live_since = Some(now);
                self.log(Level::Info, "store view current");
            } else {
                self.own.stale_since = Some(now);
                self.log(
                    Level::Warn,
                    "store view lost: no heartbeat acknowledged in time",
                );
            }
        }
        let (groups, mut cx) = self.parts(now);
        for g in groups.iter_mut() {
            g.tick(&mut cx);
        }
    }

    /// The groups and a context over the other fields, borrowed apart.
    fn parts(&mut self, now: Instant) -> (&mut Vec<Group>, Cx<'_>) {
        let HaMachine {
            cfg,
            peers,
            own,
            groups,
            out,
            shutting_down,
            ..
        } = self;
        let cx = Cx {
            now,
            me: cfg.me(),
            timing: cfg.timing(),
            takeback: cfg.takeback(),
            peers,
            own,
            shutting_down: *shutting_down,
            out,
        };
        (groups, cx)
    }

    fn cx<'a>(&'a self, now: Instant, out: &'a mut VecDeque<Action>) -> Cx<'a> {
        Cx {
            now,
            me: self.cfg.me(),
            timing: self.cfg.timing(),
            takeback: self.cfg.takeback(),
            peers: &self.peers,
            own: &self.own,
            shutting_down: self.shutting_down,
            out,
        }
    }

    fn with_group<R>(
        &mut self,
        group: GroupId,
        f: impl FnOnce(&mut Group, &mut Cx<'_>) -> R,
    ) -> Result<R, InputError> {
        let idx = self
            .groups
            .iter()
            .position(|g| g.cfg.id() == group)
            .ok_or(InputError::UnknownGroup(group))?;
        let now = self.now.ok_or(InputError::NotStarted)?;
        let (groups, mut cx) = self.parts(now);
        Ok(f(&mut groups[idx], &mut cx))
    }

    fn log(&mut self, level: Level, message: &str) {
        self.out.push_back(Action::Log(LogLine {
            level,
            group: None,
            message: message.to_string(),
        }));
    }
}

fn min_opt(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, None) => a,
        (None, b) => b,
    }
}
