//! A deterministic cluster on virtual time: several [`HaMachine`]s, a model of the
//! shared store ([`StoreModel`]) reached over links with latency that can be cut
//! per gateway or for everyone, and a stand-in for each daemon that carries out
//! the machines' actions (renegotiation and hand-over take a configurable time).
//! Gateways can crash and restart, be cut off from the store, be moved by an
//! operator or shut down. After every action the simulation checks the safety
//! invariants (at most one gateway forwards, holds the address or writes records
//! for a group at any instant; forwarding epochs only grow and are the store's
//! current epoch; nobody renegotiates while a hand-over's DELETEs are still going
//! out; nobody forwards past its fence) and records any breach in
//! [`Sim::violations`].

mod daemon;
mod store;
mod world;

pub use store::StoreModel;

use super::{DvipaRoute, Epoch, HeartbeatGuard};
use super::{GatewayName, GroupId, HaConfig, HaMachine, Input, InputError, OwnerRecord, Role};
use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap};
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// How the simulated world behaves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SimTiming {
    /// One-way latency between a gateway and the store (2 ms).
    pub store_latency: Duration,
    /// How long a request to an unreachable store takes to fail, and how long a
    /// daemon takes to notice the store is gone (100 ms).
    pub request_timeout: Duration,
    /// A lease expires this long after its last renewal (2.4 s, as etcd 3.4).
    pub lease_ttl: Duration,
    /// How long a daemon takes to renegotiate a group's SAs (50 ms).
    pub renegotiation: Duration,
    /// How long a daemon takes to send NEWCONN and DELETEs (20 ms).
    pub handover: Duration,
    /// SAs per group (reported in renegotiation results).
    pub sas_per_group: usize,
}

impl Default for SimTiming {
    fn default() -> Self {
        SimTiming {
            store_latency: Duration::from_millis(2),
            request_timeout: Duration::from_millis(100),
            lease_ttl: Duration::from_millis(2400),
            renegotiation: Duration::from_millis(50),
            handover: Duration::from_millis(20),
            sas_per_group: 100,
        }
    }
}

/// A request on its way to the store.
#[derive(Clone, Debug)]
enum Request {
    Renew {
        sent_at: Instant,
    },
    Claim {
        group: GroupId,
        expected: Option<Epoch>,
        pinned: bool,
        guard: Option<HeartbeatGuard>,
    },
    Release {
        group: GroupId,
        epoch: Epoch,
        successor: Option<GatewayName>,
        pinned: bool,
    },
    Move {
        group: GroupId,
        to: GatewayName,
        epoch: Epoch,
    },
}

/// Something on its way to a gateway.
#[derive(Clone, Debug)]
enum Delivery {
    /// From the store: dropped if the link is down on arrival, or replaced by
    /// `if_cut` (the failure the daemon would report).
    FromStore { input: Input, if_cut: Option<Input> },
    /// From the gateway's own daemon.
    Local(Input),
    /// The daemon notices the store connection changed.
    Reachable(bool),
}

#[derive(Clone, Debug)]
enum Event {
    AtStore {
        from: GatewayName,
        incarnation: u32,
        request: Request,
    },
    AtNode {
        to: GatewayName,
        incarnation: u32,
        delivery: Delivery,
    },
}

/// One simulated gateway and what its daemon holds.
#[derive(Debug)]
struct Node {
    cfg: HaConfig,
    machine: Option<HaMachine>,
    incarnation: u32,
    link: bool,
    forwarding: BTreeMap<GroupId, Epoch>,
    routes: BTreeMap<GroupId, Vec<DvipaRoute>>,
    watch_delay: Duration,
    last_watch_at: Instant,
    last_ok_sent: Option<Instant>,
    vipas: BTreeSet<GroupId>,
    records: BTreeSet<GroupId>,
    handing_over: BTreeSet<GroupId>,
}

/// Counters of what happened during a run.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SimCounters {
    /// Renegotiations started (one per group takeover).
    pub renegotiations: u64,
    /// Hand-overs started.
    pub handovers: u64,
    /// Announcements a target refused (older epoch than one it already had).
    pub refused_announcements: u64,
    /// Inputs a machine refused (should stay 0: the simulation sends only valid ones).
    pub input_errors: u64,
    /// Gateways fenced (log lines "fenced").
    pub fences: u64,
}

/// The simulated cluster.
#[derive(Debug)]
pub struct Sim {
    origin: Instant,
    now: Instant,
    timing: SimTiming,
    nodes: BTreeMap<GatewayName, Node>,
    store: StoreModel,
    store_up: bool,
    queue: BinaryHeap<Reverse<(Instant, u64)>>,
    events: BTreeMap<u64, Event>,
    seq: u64,
    target_epochs: BTreeMap<GroupId, Epoch>,
    max_started: BTreeMap<GroupId, Epoch>,
    ownership: Vec<(Instant, GroupId, OwnerRecord)>,
    violations: Vec<String>,
    log: Vec<String>,
    counters: SimCounters,
}

impl Sim {
    /// A cluster of one gateway per configuration, none started; `origin` is the
    /// virtual time zero.
    pub fn new(origin: Instant, configs: Vec<HaConfig>, timing: SimTiming) -> Self {
        let nodes = configs
            .into_iter()
            .map(|cfg| {
                let node = Node {
                    cfg,
                    machine: None,
                    incarnation: 0,
                    link: true,
                    forwarding: BTreeMap::new(),
                    routes: BTreeMap::new(),
                    watch_delay: Duration::ZERO,
                    last_watch_at: origin,
                    last_ok_sent: None,
                    vipas: BTreeSet::new(),
                    records: BTreeSet::new(),
                    handing_over: BTreeSet::new(),
                };
                (node.cfg.me().clone(), node)
            })
            .collect();
        Sim {
            origin,
            now: origin,
            timing,
            nodes,
            store: StoreModel::new(),
            store_up: true,
            queue: BinaryHeap::new(),
            events: BTreeMap::new(),
            seq: 0,
            target_epochs: BTreeMap::new(),
            max_started: BTreeMap::new(),
            ownership: Vec::new(),
            violations: Vec::new(),
            log: Vec::new(),
            counters: SimCounters::default(),
        }
    }

    /// Virtual now.
    pub fn now(&self) -> Instant {
        self.now
    }

    /// Virtual time since the start of the simulation.
    pub fn elapsed(&self) -> Duration {
        self.now - self.origin
    }

    /// Starts every gateway.
    pub fn start_all(&mut self) {
        let names: Vec<GatewayName> = self.nodes.keys().cloned().collect();
        for n in names {
            self.start(&n);
        }
    }

    /// Starts (or restarts after a crash) one gateway: a fresh machine, `Start`,
    /// then the store read of every owner record (if its link is up).
    pub fn start(&mut self, gw: &GatewayName) {
        let now = self.now;
        let Some(node) = self.nodes.get_mut(gw) else {
            return;
        };
        if node.machine.is_some() {
            return;
        }
        node.incarnation += 1;
        let mut m = HaMachine::new(node.cfg.clone());
        let r = m.handle(now, Input::Start);
        node.machine = Some(m);
        self.count_error(gw, r);
        self.note(gw, "process started".into());
        if self.link_up(gw) {
            self.resync(gw);
        }
        self.drain(gw);
    }

    /// Kills a gateway (SIGKILL): its machine and everything its daemon held go.
    pub fn crash(&mut self, gw: &GatewayName) {
        if let Some(node) = self.nodes.get_mut(gw) {
            if node.machine.take().is_some() {
                node.forwarding.clear();
                node.routes.clear();
                node.last_ok_sent = None;
                node.vipas.clear();
                node.records.clear();
                node.handing_over.clear();
                self.note(gw, "process killed".into());
            }
        }
    }

    /// Cuts (`false`) or restores the link between one gateway and the store.
    pub fn set_store_link(&mut self, gw: &GatewayName, up: bool) {
        let before = self.link_up(gw);
        if let Some(node) = self.nodes.get_mut(gw) {
            node.link = up;
        }
        self.link_changed(gw, before);
    }

    /// Delays every watch event to one gateway by `extra` (a lagging watch: its
    /// requests and their answers still go through at once).
    pub fn set_watch_delay(&mut self, gw: &GatewayName, extra: Duration) {
        if let Some(node) = self.nodes.get_mut(gw) {
            node.watch_delay = extra;
        }
    }

    /// Stops (`false`) or restarts the whole store.
    pub fn set_store_up(&mut self, up: bool) {
        let names: Vec<GatewayName> = self.nodes.keys().cloned().collect();
        let before: Vec<bool> = names.iter().map(|n| self.link_up(n)).collect();
        if up && !self.store_up {
            self.store.extend_leases(self.now);
        }
        self.store_up = up;
        for (n, b) in names.iter().zip(before) {
            self.link_changed(n, b);
        }
    }

    /// `plexgate move DVIPA --to GATEWAY` given to gateway `at`.
    pub fn command_move(
        &mut self,
        at: &GatewayName,
        dvipa: IpAddr,
        to: &GatewayName,
    ) -> Result<(), InputError> {
        let now = self.now;
        let m = self
            .nodes
            .get_mut(at)
            .and_then(|n| n.machine.as_mut())
            .ok_or(InputError::NotStarted)?;
        let r = m.handle(
            now,
            Input::MoveCommand {
                dvipa,
                to: to.clone(),
            },
        );
        self.drain(at);
        r
    }

    /// Graceful stop of a gateway's HA (`Shutdown`).
    pub fn shutdown(&mut self, gw: &GatewayName) {
        self.deliver(gw, Input::Shutdown);
    }

    /// Runs the world for `d` of virtual time.
    pub fn run_for(&mut self, d: Duration) {
        let end = self.now + d;
        while self.step(end) {}
        self.now = self.now.max(end);
    }

    /// Runs until `pred` holds (checked after every step) or `limit` passed;
    /// returns the virtual time it took.
    pub fn run_until(
        &mut self,
        limit: Duration,
        mut pred: impl FnMut(&Sim) -> bool,
    ) -> Option<Duration> {
        let start = self.now;
        let end = start + limit;
        loop {
            if pred(self) {
                return Some(self.now - start);
            }
            if !self.step(end) {
                self.now = self.now.max(end);
                return pred(self).then(|| self.now - start);
            }
        }
    }

    /// The gateways forwarding a group now, with their epochs.
    pub fn forwarders(&self, group: GroupId) -> Vec<(GatewayName, Epoch)> {
        self.nodes
            .iter()
            .filter_map(|(n, node)| node.forwarding.get(&group).map(|e| (n.clone(), *e)))
            .collect()
    }

    /// The routes a gateway last started forwarding a group with.
    pub fn routes(&self, gw: &GatewayName, group: GroupId) -> Option<&[DvipaRoute]> {
        self.nodes.get(gw)?.routes.get(&group).map(Vec::as_slice)
    }

    /// The gateways holding a group's gateway VIPA now.
    pub fn vipa_holders(&self, group: GroupId) -> Vec<GatewayName> {
        self.nodes
            .iter()
            .filter(|(_, n)| n.vipas.contains(&group))
            .map(|(g, _)| g.clone())
            .collect()
    }

    /// The group's record in the store.
    pub fn record(&self, group: GroupId) -> OwnerRecord {
        self.store.record(group)
    }

    /// A gateway's role for a group (`None`: not running).
    pub fn role(&self, gw: &GatewayName, group: GroupId) -> Option<Role> {
        self.nodes.get(gw)?.machine.as_ref()?.role(group)
    }

    /// Whether a gateway is running.
    pub fn is_running(&self, gw: &GatewayName) -> bool {
        self.nodes.get(gw).is_some_and(|n| n.machine.is_some())
    }

    /// Whether a running gateway has completed its shutdown.
    pub fn released_all(&self, gw: &GatewayName) -> bool {
        self.nodes
            .get(gw)
            .and_then(|n| n.machine.as_ref())
            .is_some_and(HaMachine::released_all)
    }

    /// Every owner record the store wrote, in order.
    pub fn ownership_history(&self) -> &[(Instant, GroupId, OwnerRecord)] {
        &self.ownership
    }

    /// Safety invariants that did not hold (empty when all is well).
    pub fn violations(&self) -> &[String] {
        &self.violations
    }

    /// Everything that happened, one line per log action or fault.
    pub fn log(&self) -> &[String] {
        &self.log
    }

    /// Counters of the run.
    pub fn counters(&self) -> &SimCounters {
        &self.counters
    }

    fn push_event(&mut self, after: Duration, event: Event) {
        self.seq += 1;
        self.queue.push(Reverse((self.now + after, self.seq)));
        self.events.insert(self.seq, event);
    }

    /// Hands an input to a running gateway and carries out what it asks.
    fn deliver(&mut self, gw: &GatewayName, input: Input) {
        let now = self.now;
        let Some(m) = self.nodes.get_mut(gw).and_then(|n| n.machine.as_mut()) else {
            return;
        };
        let acked = match &input {
            Input::RenewOk { sent_at } => Some(*sent_at),
            _ => None,
        };
        let r = m.handle(now, input);
        if let (Some(sent_at), Some(node)) = (acked, self.nodes.get_mut(gw)) {
            node.last_ok_sent = Some(node.last_ok_sent.map_or(sent_at, |t| t.max(sent_at)));
        }
        self.count_error(gw, r);
        self.drain(gw);
    }

    /// Every forwarding gateway must have had a heartbeat acknowledged that was
    /// sent less than its `fence_after` ago (checked whenever time moves on).
    fn check_fences(&mut self) {
        let now = self.now;
        let late: Vec<String> = self
            .nodes
            .iter()
            .filter(|(_, n)| n.machine.is_some() && !n.forwarding.is_empty())
            .filter(|(_, n)| {
                let fence_after = n.cfg.timing().fence_after;
                match n.last_ok_sent {
                    Some(s) => now > s + fence_after,
                    None => true,
                }
            })
            .map(|(g, n)| format!("{g} still forwards {:?} past its fence", n.forwarding))
            .collect();
        for v in late {
            self.violation(v);
        }
    }

    fn count_error(&mut self, gw: &GatewayName, r: Result<(), InputError>) {
        if let Err(e) = r {
            self.counters.input_errors += 1;
            self.note(gw, format!("input refused: {e}"));
        }
    }

    fn violation(&mut self, what: String) {
        let line = format!("{} VIOLATION {what}", self.stamp());
        self.log.push(line.clone());
        self.violations.push(line);
    }

    fn note(&mut self, gw: &GatewayName, what: String) {
        let line = format!("{} {gw}: {what}", self.stamp());
        self.log.push(line);
    }

    fn stamp(&self) -> String {
        format!("t+{:>7.3}s", self.elapsed().as_secs_f64())
    }
}
