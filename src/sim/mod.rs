//! The in-memory cluster harness: quinn's `Pair` grown to a cluster, on virtual
//! time (used by the tests in `tests/cluster_*.rs`; see `docs/testing.md`).
//!
//! A [`Sim`] holds N gateways ([`GatewayNode`]: a `GatewayCore` built from a policy
//! text the test writes, with a seeded RNG), M targets ([`TargetNode`]: a
//! `TargetStack` on a modelled host whose applications answer on the DVIPA),
//! clients ([`ClientNode`]: an IKEv2 initiator with its own SAD, sealing and
//! opening real ESP, or a plain host), a [`Network`] that carries UDP, ESP, GRE,
//! cleartext IP and cluster messages with latency, loss, duplication and
//! reordering from a seeded generator, knows which gateway owns a VIPA or DVIPA
//! now and can put a node behind a [`Nat`], and a [`SimStore`] for the recovery
//! records. [`Sim::step`] delivers the
//! next datagram or fires the earliest timer of any node (every node's
//! `next_timeout`), so a run depends only on its seed. [`Sim::run_until`] steps
//! until a condition holds; invariants ([`Checks`]) are checked at every step.
//!
//! The lead's HA machine plugs in as an [`Agent`] (its own timers, full access to
//! the simulation: store, gateways, address ownership); scripted events go in
//! with [`Sim::schedule`].

mod build;
mod checks;
mod client;
mod gateway;
mod host;
mod nat;
mod net;
mod ops;
pub mod packet;
mod report;
mod rng;
mod store;
mod target;
pub mod tcp;

pub use build::SimBuilder;
pub use checks::Checks;
pub use client::{ClientNode, ClientSpec, ClientStats};
pub use gateway::{DistributorOnly, Engine, GatewayNode, Outputs, Reply};
pub use host::{App, ConnId, Host, HostStats, Listener};
pub use nat::Nat;
pub use net::{Captured, Conditions, Datagram, Kind, NetStats, Network, Node, Payload};
pub use ops::Transfer;
pub use rng::SimRng;
pub use store::{SimStore, StoreFault, StoreStats};
pub use target::{Inbound, TargetDuty, TargetLink, TargetNode};

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// What can go wrong building or running a simulation.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// A policy text did not pass the checker.
    #[error("{node}: the policy has errors:\n{diagnostics}")]
    Policy {
        /// The gateway.
        node: String,
        /// The checker's report.
        diagnostics: String,
    },
    /// A node could not be built.
    #[error("{node}: {what}")]
    Setup {
        /// The node.
        node: String,
        /// Why.
        what: String,
    },
    /// A condition did not hold in time.
    #[error("{what}: not reached after {after:?} of virtual time")]
    Timeout {
        /// What was awaited.
        what: String,
        /// How long.
        after: Duration,
    },
    /// A byte-exact check failed.
    #[error("{0}")]
    Mismatch(String),
    /// The IKE engine refused a command.
    #[error("IKE: {0}")]
    Ike(#[from] plexgate_ike::Error),
}

/// Something with its own timers that acts on the whole simulation (the HA
/// machine of a gateway, a scripted operator).
pub trait Agent {
    /// When [`Agent::handle_timeout`] must run.
    fn poll_timeout(&self) -> Option<Instant>;
    /// Its timer fired.
    fn handle_timeout(&mut self, now: Instant, sim: &mut Sim);
}

type Scheduled = Box<dyn FnOnce(&mut Sim)>;

/// A whole cluster in memory.
pub struct Sim {
    now: Instant,
    start: Instant,
    seed: u64,
    /// The network.
    pub net: Network,
    gateways: Vec<GatewayNode>,
    targets: Vec<TargetNode>,
    clients: Vec<ClientNode>,
    /// The recovery-record store.
    pub store: SimStore,
    agents: Vec<Option<Box<dyn Agent>>>,
    scheduled: BTreeMap<(Instant, u64), Scheduled>,
    sched_seq: u64,
    /// Invariants checked at every step.
    pub checks: Checks,
    /// Hand a gateway the ESP that arrives at one instant as one batch
    /// (`on_esp_batch`, `on_udp_batch`), as the daemon's `recvmmsg` does.
    pub batch_rx: bool,
    /// Batches of more than one datagram handed to a gateway (with `batch_rx`).
    pub batches: u64,
    /// Datagrams delivered to each node, by kind.
    pub delivered: HashMap<Node, BTreeMap<Kind, u64>>,
    spins: HashMap<Node, u32>,
    steps: u64,
    _keys: KeyDir,
}

/// Above this many timer firings at one instant, a node's `next_timeout` is
/// taken to be stuck (it must move past `now` once `on_timeout(now)` ran).
const MAX_SPINS: u32 = 10_000;

impl Sim {
    /// The virtual time now.
    pub fn now(&self) -> Instant {
        self.now
    }

    /// Virtual time since the start.
    pub fn elapsed(&self) -> Duration {
        self.now - self.start
    }

    /// The seed of this run.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// Steps taken so far.
    pub fn steps(&self) -> u64 {
        self.steps
    }

    /// Gateway `i`.
    pub fn gateway(&self, i: usize) -> &GatewayNode {
        &self.gateways[i]
    }

    /// Gateway `i`, mutable (call [`Sim::gateway_do`] to reach the core with a sink).
    pub fn gateway_mut(&mut self, i: usize) -> &mut GatewayNode {
        &mut self.gateways[i]
    }

    /// Number of gateways.
    pub fn gateway_count(&self) -> usize {
        self.gateways.len()
    }

    /// Target `i`.
    pub fn target(&self, i: usize) -> &TargetNode {
        &self.targets[i]
    }

    /// Target `i`, mutable (call [`Sim::target_do`] to have what it queued sent).
    pub fn target_mut(&mut self, i: usize) -> &mut TargetNode {
        &mut self.targets[i]
    }

    /// Number of targets.
    pub fn target_count(&self) -> usize {
        self.targets.len()
    }

    /// The index of the target with cluster id `id`.
    pub fn target_index(&self, id: plexgate_distrib::NodeId) -> Option<usize> {
        self.targets.iter().position(|t| t.id == id)
    }

    /// Client `i`.
    pub fn client(&self, i: usize) -> &ClientNode {
        &self.clients[i]
    }

    /// Client `i`, mutable (call [`Sim::client_do`] to have what it queued sent).
    pub fn client_mut(&mut self, i: usize) -> &mut ClientNode {
        &mut self.clients[i]
    }

    /// Add an agent.
    pub fn add_agent(&mut self, a: Box<dyn Agent>) {
        self.agents.push(Some(a));
    }

    /// Run `f` on the simulation `after` from now.
    pub fn schedule(&mut self, after: Duration, f: impl FnOnce(&mut Sim) + 'static) {
        self.sched_seq += 1;
        self.scheduled
            .insert((self.now + after, self.sched_seq), Box::new(f));
    }

    /// When the next thing happens: a datagram, a node's timer, an agent, a
    /// scheduled action.
    pub fn next_event(&self) -> Option<Instant> {
        let up = |n: Node| !self.net.is_down(n);
        let gws = (self.gateways.iter().enumerate())
            .filter(|(i, _)| up(Node::Gateway(*i)))
            .filter_map(|(_, g)| g.next_timeout());
        let tgs = (self.targets.iter().enumerate())
            .filter(|(i, _)| up(Node::Target(*i)))
            .map(|(_, t)| t.next_timeout());
        let cls = (self.clients.iter().enumerate())
            .filter(|(i, _)| up(Node::Client(*i)))
            .filter_map(|(_, c)| c.next_timeout());
        let ags = self
            .agents
            .iter()
            .flatten()
            .filter_map(|a| a.poll_timeout());
        let sch = self.scheduled.keys().next().map(|(t, _)| *t);
        gws.chain(tgs)
            .chain(cls)
            .chain(ags)
            .chain(sch)
            .chain(self.net.next_due())
            .min()
    }

    /// Deliver the next datagram, or fire every timer due at the next instant.
    /// False when nothing is left to happen.
    pub fn step(&mut self) -> bool {
        let Some(t) = self.next_event() else {
            return false;
        };
        if t > self.now {
            self.now = t;
            self.spins.clear();
        }
        self.steps += 1;
        if let Some((d, to)) = self.net.pop_due(self.now) {
            if let Some(to) = to {
                *self
                    .delivered
                    .entry(to)
                    .or_default()
                    .entry(d.payload.kind())
                    .or_insert(0) += 1;
                self.deliver(to, d);
            }
            return true;
        }
        self.fire_due();
        true
    }

    fn deliver(&mut self, to: Node, d: Datagram) {
        let now = self.now;
        match to {
            Node::Gateway(i) => {
                let kind = d.payload.kind();
                let batchable = match &d.payload {
                    Payload::Esp { .. } => true,
                    Payload::Udp { dst, .. } => dst.port() == 4500,
                    _ => false,
                };
                let out = if self.batch_rx && batchable {
                    let mut batch = vec![d.payload];
                    let first_dst = batch[0].dst_addr();
                    let same = |p: &Payload| match (p, kind) {
                        (Payload::Udp { dst, .. }, Kind::Udp) => {
                            Some(dst.ip()) == first_dst && dst.port() == 4500
                        }
                        (Payload::Esp { .. }, Kind::Esp) => true,
                        _ => false,
                    };
                    while let Some(more) = self.net.pop_same(d.at, to, same) {
                        batch.push(more.payload);
                    }
                    self.batches += u64::from(batch.len() > 1);
                    self.gateways[i].deliver_batch(to, &mut self.net, now, batch)
                } else {
                    self.gateways[i].deliver(to, &mut self.net, now, d.payload)
                };
                self.apply(i, out);
            }
            Node::Target(j) => {
                if let Some(inb) = self.targets[j].deliver(to, &mut self.net, now, d.payload) {
                    self.checks.target_inbound(j, &inb);
                }
            }
            Node::Client(k) => self.clients[k].deliver(to, &mut self.net, now, d.payload),
        }
    }

    /// What a gateway call left: records to the store, forwarding to the checks.
    fn apply(&mut self, i: usize, out: Outputs) {
        let site = self.gateways[i].site().to_string();
        for fx in out.side_effects {
            self.store.apply(i, &site, fx);
        }
        for d in out.forwarded {
            let routing = self.gateways[i].routes_dvipa(d);
            self.checks
                .gateway_forwarded(i, d, routing, self.net.generation());
        }
    }

    fn fire_due(&mut self) {
        let now = self.now;
        while let Some(e) = self.scheduled.first_entry() {
            if e.key().0 > now {
                break;
            }
            let f = e.remove();
            f(self);
        }
        for i in 0..self.gateways.len() {
            let n = Node::Gateway(i);
            if !self.net.is_down(n) && self.gateways[i].next_timeout().is_some_and(|t| t <= now) {
                let out = self.gateways[i].on_timeout(n, &mut self.net, now);
                self.apply(i, out);
                let again = self.gateways[i].next_timeout();
                self.spun(n, again);
            }
        }
        for j in 0..self.targets.len() {
            let n = Node::Target(j);
            if !self.net.is_down(n) && self.targets[j].next_timeout() <= now {
                self.targets[j].on_timeout(n, &mut self.net, now);
                let again = Some(self.targets[j].next_timeout());
                self.spun(n, again);
            }
        }
        for k in 0..self.clients.len() {
            let n = Node::Client(k);
            if !self.net.is_down(n) && self.clients[k].next_timeout().is_some_and(|t| t <= now) {
                self.clients[k].on_timeout(n, &mut self.net, now);
                let again = self.clients[k].next_timeout();
                self.spun(n, again);
            }
        }
        for a in 0..self.agents.len() {
            let due = self.agents[a]
                .as_ref()
                .and_then(|x| x.poll_timeout())
                .is_some_and(|t| t <= now);
            if due {
                if let Some(mut agent) = self.agents[a].take() {
                    agent.handle_timeout(now, self);
                    self.agents[a] = Some(agent);
                }
            }
        }
    }

    /// A node asked for its timer again at or before `now` right after it ran.
    fn spun(&mut self, n: Node, again: Option<Instant>) {
        if again.is_some_and(|t| t <= self.now) {
            let s = self.spins.entry(n).or_insert(0);
            *s += 1;
            assert!(
                *s < MAX_SPINS,
                "{n:?}: next_timeout() stays at or before now ({:?} into the run) after on_timeout: a timer that never moves on",
                self.elapsed()
            );
        }
    }

    /// Step until `cond` holds; fails if `max` of virtual time passes first.
    /// Returns the virtual time it took.
    pub fn run_until(
        &mut self,
        max: Duration,
        mut cond: impl FnMut(&Sim) -> bool,
    ) -> Result<Duration, SimError> {
        let (t0, end) = (self.now, self.now + max);
        loop {
            if cond(self) {
                return Ok(self.now - t0);
            }
            match self.next_event() {
                Some(t) if t <= end => {
                    self.step();
                }
                _ => {
                    self.now = end;
                    return if cond(self) {
                        Ok(max)
                    } else {
                        Err(SimError::Timeout {
                            what: "condition".into(),
                            after: max,
                        })
                    };
                }
            }
        }
    }

    /// Let `d` of virtual time pass, handling everything that happens in it.
    pub fn run_for(&mut self, d: Duration) {
        let end = self.now + d;
        while self.next_event().is_some_and(|t| t <= end) {
            self.step();
        }
        self.now = self.now.max(end);
    }

    /// Step until no datagram is in flight (timers keep running); fails after
    /// `max` of virtual time.
    pub fn settle(&mut self, max: Duration) -> Result<Duration, SimError> {
        self.run_until(max, |s| s.net.in_flight() == 0)
    }
}

/// A private folder for the key files the policies name (the core reads PSK
/// files itself); removed when the simulation goes.
struct KeyDir(PathBuf);

impl KeyDir {
    fn new() -> std::io::Result<KeyDir> {
        use std::sync::atomic::{AtomicU64, Ordering};
        static N: AtomicU64 = AtomicU64::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("plx-sim-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        Ok(KeyDir(dir))
    }
}

impl Drop for KeyDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
