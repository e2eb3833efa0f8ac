//! DVIPA table, destination port table (DPT) and target selection.
//!
//! The *DVIPA table* says, for each DVIPA, which ports are distributed, which
//! targets are candidates (a list with weights, or all), which node is the
//! routing gateway and which nodes back it up. The *DPT* says, for each
//! (DVIPA, port), which targets have an application listening (learnt from
//! SRVSTAT), their weight (0 = drain: no new connections, existing ones stay),
//! and how many connections are active. On a SYN the DPT entry picks a target
//! among those that listen, whose link is up and whose weight is above zero:
//! round-robin, smooth weighted round-robin (as nginx does it) or weighted
//! least connections (seed 001, figure 12, block 252).

use crate::NodeId;
use std::collections::HashMap;
use std::net::IpAddr;

/// Ports of a DVIPA that are distributed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PortSet {
    /// Every port.
    All,
    /// Only these.
    List(Vec<u16>),
}

impl PortSet {
    /// True if `port` is distributed.
    pub fn contains(&self, port: u16) -> bool {
        match self {
            PortSet::All => true,
            PortSet::List(l) => l.contains(&port),
        }
    }
}

/// Candidate targets of a DVIPA.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TargetSet {
    /// Every target (seed 001's "ALL"); weight 1 each.
    All,
    /// These targets with their weights.
    List(Vec<(NodeId, u16)>),
}

impl TargetSet {
    /// The configured weight of `node`, or `None` if it is not a candidate.
    pub fn weight_of(&self, node: NodeId) -> Option<u16> {
        match self {
            TargetSet::All => Some(1),
            TargetSet::List(l) => l.iter().find(|(n, _)| *n == node).map(|(_, w)| *w),
        }
    }
}

/// How a target is picked for a new connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Algorithm {
    /// Each eligible target in turn (counts differ by at most one).
    #[default]
    RoundRobin,
    /// Smooth weighted round-robin: over one cycle of `sum(weights)`
    /// connections each target gets exactly its weight.
    WeightedRoundRobin,
    /// Fewest active connections relative to weight.
    LeastConnections,
}

impl Algorithm {
    /// Wire code.
    pub fn code(self) -> u8 {
        match self {
            Algorithm::RoundRobin => 0,
            Algorithm::WeightedRoundRobin => 1,
            Algorithm::LeastConnections => 2,
        }
    }
    /// From a wire code.
    pub fn from_code(c: u8) -> Option<Algorithm> {
        match c {
            0 => Some(Algorithm::RoundRobin),
            1 => Some(Algorithm::WeightedRoundRobin),
            2 => Some(Algorithm::LeastConnections),
            _ => None,
        }
    }
}

/// One DVIPA as configured by policy and announced in a DvipaList.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DvipaConfig {
    /// The distributed address.
    pub dvipa: IpAddr,
    /// Distributed ports.
    pub ports: PortSet,
    /// Candidate targets.
    pub targets: TargetSet,
    /// Selection algorithm.
    pub algorithm: Algorithm,
    /// The node that routes it now.
    pub routing_gateway: NodeId,
    /// Backups with their rank (1-254, higher takes over first).
    pub backups: Vec<(NodeId, u8)>,
}

impl DvipaConfig {
    /// The routing gateway and the backups: the nodes allowed to announce
    /// this DVIPA.
    pub fn gateways(&self) -> impl Iterator<Item = NodeId> + '_ {
        std::iter::once(self.routing_gateway).chain(self.backups.iter().map(|(n, _)| *n))
    }
}

/// Trust on first use for DVIPA announcements: the first list (or local
/// policy) for a DVIPA fixes which gateways may announce it; later lists must
/// come from one of them and may add more.
#[derive(Clone, Debug, Default)]
pub struct AnnounceGuard {
    allowed: Vec<(IpAddr, Vec<NodeId>)>,
}

impl AnnounceGuard {
    /// True if `sender` may announce `cfg` (and then remembers its gateways).
    pub fn admit(&mut self, sender: NodeId, cfg: &DvipaConfig) -> bool {
        if cfg.routing_gateway != sender {
            return false;
        }
        match self.allowed.iter_mut().find(|(d, _)| *d == cfg.dvipa) {
            Some((_, nodes)) => {
                if !nodes.contains(&sender) {
                    return false;
                }
                for n in cfg.gateways() {
                    if !nodes.contains(&n) {
                        nodes.push(n);
                    }
                }
                true
            }
            None => {
                self.allowed.push((cfg.dvipa, cfg.gateways().collect()));
                true
            }
        }
    }

    /// Trust `cfg`'s gateways from local policy.
    pub fn configure(&mut self, cfg: &DvipaConfig) {
        self.allowed.retain(|(d, _)| *d != cfg.dvipa);
        self.allowed.push((cfg.dvipa, cfg.gateways().collect()));
    }
}

/// A target in one DPT entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DptTarget {
    /// The target.
    pub node: NodeId,
    /// Weight; 0 drains the target.
    pub weight: u16,
    /// An application listens on (DVIPA, port) there (SRVSTAT).
    pub listening: bool,
    /// The link to the target is up.
    pub link_up: bool,
    /// Connections in the CRT routed to it on this (DVIPA, port).
    pub active: u32,
    current: i64,
}

impl DptTarget {
    fn eligible(&self) -> bool {
        self.listening && self.link_up && self.weight > 0
    }
}

/// The DPT row of one (DVIPA, port).
#[derive(Clone, Debug, Default)]
pub struct DptEntry {
    /// Selection algorithm.
    pub algorithm: Algorithm,
    targets: Vec<DptTarget>,
    rr_next: usize,
}

impl DptEntry {
    /// The targets of this row.
    pub fn targets(&self) -> &[DptTarget] {
        &self.targets
    }

    fn target_mut(&mut self, node: NodeId) -> Option<&mut DptTarget> {
        self.targets.iter_mut().find(|t| t.node == node)
    }

    /// Pick a target for a new connection; `None` if no target is eligible.
    /// Does not count the connection: call [`DptEntry::opened`] for that.
    pub fn select(&mut self) -> Option<NodeId> {
        match self.algorithm {
            Algorithm::RoundRobin => self.round_robin(),
            Algorithm::WeightedRoundRobin => self.smooth_wrr(),
            Algorithm::LeastConnections => self.least_connections(),
        }
    }

    fn round_robin(&mut self) -> Option<NodeId> {
        let n = self.targets.len();
        for i in 0..n {
            let idx = (self.rr_next + i) % n;
            if self.targets[idx].eligible() {
                self.rr_next = (idx + 1) % n;
                return Some(self.targets[idx].node);
            }
        }
        None
    }

    // Smooth weighted round-robin (nginx ngx_http_upstream_get_peer): every
    // eligible peer gains its weight, the largest is chosen and loses the total.
    fn smooth_wrr(&mut self) -> Option<NodeId> {
        let mut total = 0i64;
        let mut best: Option<usize> = None;
        for i in 0..self.targets.len() {
            let t = &mut self.targets[i];
            if !t.eligible() {
                continue;
            }
            t.current += i64::from(t.weight);
            total += i64::from(t.weight);
            let cur = t.current;
            if best.is_none_or(|b| cur > self.targets[b].current) {
                best = Some(i);
            }
        }
        let b = best?;
        self.targets[b].current -= total;
        Some(self.targets[b].node)
    }

    fn least_connections(&mut self) -> Option<NodeId> {
        let n = self.targets.len();
        let mut best: Option<usize> = None;
        // Start at the round-robin cursor so that ties rotate.
        for i in 0..n {
            let idx = (self.rr_next + i) % n;
            let t = &self.targets[idx];
            if !t.eligible() {
                continue;
            }
            // active_t / w_t < active_b / w_b, without division.
            let better = best.is_none_or(|b| {
                let bt = &self.targets[b];
                u64::from(t.active) * u64::from(bt.weight)
                    < u64::from(bt.active) * u64::from(t.weight)
            });
            if better {
                best = Some(idx);
            }
        }
        let b = best?;
        self.rr_next = (b + 1) % n;
        Some(self.targets[b].node)
    }

    /// Count a connection opened to `node`.
    pub fn opened(&mut self, node: NodeId) {
        if let Some(t) = self.target_mut(node) {
            t.active = t.active.saturating_add(1);
        }
    }

    /// Count a connection of `node` closed.
    pub fn closed(&mut self, node: NodeId) {
        if let Some(t) = self.target_mut(node) {
            t.active = t.active.saturating_sub(1);
        }
    }
}

/// Starting values of a target row created by [`Dpt::set_listening`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NewTarget {
    /// Configured weight (from the DVIPA's candidate list).
    pub weight: u16,
    /// Link state now.
    pub link_up: bool,
    /// The DVIPA's selection algorithm.
    pub algorithm: Algorithm,
}

/// The destination port table: (DVIPA, port) → [`DptEntry`].
#[derive(Clone, Debug, Default)]
pub struct Dpt {
    entries: HashMap<(IpAddr, u16), DptEntry>,
}

impl Dpt {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    /// The row of (dvipa, port).
    pub fn get(&self, dvipa: IpAddr, port: u16) -> Option<&DptEntry> {
        self.entries.get(&(dvipa, port))
    }

    /// The row of (dvipa, port), mutable.
    pub fn get_mut(&mut self, dvipa: IpAddr, port: u16) -> Option<&mut DptEntry> {
        self.entries.get_mut(&(dvipa, port))
    }

    /// Record a SRVSTAT: `node` listens (or stopped listening) on (dvipa, port).
    /// The target row is created on first sight from `init`.
    pub fn set_listening(
        &mut self,
        dvipa: IpAddr,
        port: u16,
        node: NodeId,
        listening: bool,
        init: NewTarget,
    ) {
        let NewTarget {
            weight,
            link_up,
            algorithm,
        } = init;
        let e = self.entries.entry((dvipa, port)).or_default();
        e.algorithm = algorithm;
        match e.target_mut(node) {
            Some(t) => t.listening = listening,
            None => e.targets.push(DptTarget {
                node,
                weight,
                listening,
                link_up,
                active: 0,
                current: 0,
            }),
        }
    }

    /// Set the weight of `node` on every port of `dvipa` (0 drains it).
    pub fn set_weight(&mut self, dvipa: IpAddr, node: NodeId, weight: u16) {
        for ((d, _), e) in self.entries.iter_mut() {
            if *d == dvipa {
                if let Some(t) = e.target_mut(node) {
                    t.weight = weight;
                }
            }
        }
    }

    /// Mark every row's `node` link up or down.
    pub fn set_link_up(&mut self, node: NodeId, up: bool) {
        for e in self.entries.values_mut() {
            if let Some(t) = e.target_mut(node) {
                t.link_up = up;
            }
        }
    }

    /// Bring the rows of `cfg.dvipa` in line with a new configuration:
    /// algorithm, weights from the candidate list (a policy reload can drain a
    /// target with weight 0), targets no longer candidates and ports no longer
    /// distributed are removed. Active counts of the remaining rows stay.
    pub fn apply_config(&mut self, cfg: &DvipaConfig) {
        self.entries
            .retain(|(d, port), _| *d != cfg.dvipa || cfg.ports.contains(*port));
        for ((d, _), e) in self.entries.iter_mut() {
            if *d != cfg.dvipa {
                continue;
            }
            if e.algorithm != cfg.algorithm {
                e.algorithm = cfg.algorithm;
                e.targets.iter_mut().for_each(|t| t.current = 0);
            }
            e.targets
                .retain(|t| cfg.targets.weight_of(t.node).is_some());
            for t in e.targets.iter_mut() {
                t.weight = cfg.targets.weight_of(t.node).unwrap_or(t.weight);
            }
        }
    }

    /// Remove every row of `dvipa`.
    pub fn remove_dvipa(&mut self, dvipa: IpAddr) {
        self.entries.retain(|(d, _), _| *d != dvipa);
    }

    /// All rows.
    pub fn iter(&self) -> impl Iterator<Item = (&(IpAddr, u16), &DptEntry)> {
        self.entries.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(alg: Algorithm, weights: &[u16]) -> DptEntry {
        let mut d = Dpt::new();
        let ip: IpAddr = "198.51.100.7".parse().unwrap();
        for (i, w) in weights.iter().enumerate() {
            let init = NewTarget {
                weight: *w,
                link_up: true,
                algorithm: alg,
            };
            d.set_listening(ip, 80, NodeId(i as u32 + 1), true, init);
        }
        d.get(ip, 80).unwrap().clone()
    }

    fn counts(e: &mut DptEntry, n: usize, k: usize) -> Vec<usize> {
        let mut c = vec![0; k];
        for _ in 0..n {
            let t = e.select().unwrap();
            e.opened(t);
            c[t.0 as usize - 1] += 1;
        }
        c
    }

    #[test]
    fn round_robin_is_even() {
        let mut e = entry(Algorithm::RoundRobin, &[1, 1, 1]);
        assert_eq!(counts(&mut e, 301, 3), vec![101, 100, 100]);
    }

    #[test]
    fn smooth_wrr_is_exact_and_interleaved() {
        let mut e = entry(Algorithm::WeightedRoundRobin, &[5, 1, 1]);
        let seq: Vec<u32> = (0..7).map(|_| e.select().unwrap().0).collect();
        // nginx's documented order for weights a=5, b=1, c=1: a a b a c a a.
        assert_eq!(seq, vec![1, 1, 2, 1, 3, 1, 1]);
        let mut e = entry(Algorithm::WeightedRoundRobin, &[3, 2, 1]);
        assert_eq!(counts(&mut e, 6, 3), vec![3, 2, 1]);
        assert_eq!(counts(&mut e, 600, 3), vec![300, 200, 100]);
    }

    #[test]
    fn least_connections_weighted() {
        let mut e = entry(Algorithm::LeastConnections, &[2, 1]);
        // With weight 2:1 the first target carries twice as many.
        assert_eq!(counts(&mut e, 30, 2), vec![20, 10]);
        // Closing connections on target 2 makes it preferred.
        for _ in 0..10 {
            e.closed(NodeId(2));
        }
        assert_eq!(e.select(), Some(NodeId(2)));
    }

    #[test]
    fn ineligible_targets_are_skipped() {
        for alg in [
            Algorithm::RoundRobin,
            Algorithm::WeightedRoundRobin,
            Algorithm::LeastConnections,
        ] {
            let mut e = entry(alg, &[1, 0, 1]);
            e.targets[2].link_up = false;
            for _ in 0..5 {
                assert_eq!(e.select(), Some(NodeId(1)), "{alg:?}");
            }
            e.targets[0].listening = false;
            assert_eq!(e.select(), None);
        }
    }
}
