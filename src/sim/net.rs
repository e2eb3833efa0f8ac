//! The network of the harness: who owns which address, and the datagrams in
//! flight. Every datagram is queued with a delivery instant drawn from the path's
//! [`Conditions`] (latency, jitter, loss, duplication, reordering) by a seeded
//! generator, so that a run is the same for the same seed.
//!
//! Addresses are fixed (link addresses, client addresses) or *owned*: a gateway
//! VIPA or a DVIPA that the LAN or the routers send to whichever gateway owns it
//! now ([`Network::claim`]; what a gratuitous ARP or a route change does). A
//! datagram is routed when it is sent (for its path's conditions) and again when
//! it arrives, so that traffic in flight follows an address that moved.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use plexgate_distrib::NodeId;

use super::nat::Nat;
use super::rng::SimRng;

/// A node of the simulated cluster.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Node {
    /// Gateway `i` (in the order they were added).
    Gateway(usize),
    /// Target `i`.
    Target(usize),
    /// Client `i`.
    Client(usize),
}

/// What travels between nodes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Payload {
    /// A UDP datagram (IKE on 500, IKE with the non-ESP marker / ESP-in-UDP /
    /// keepalives on 4500).
    Udp {
        /// Source.
        src: SocketAddr,
        /// Destination.
        dst: SocketAddr,
        /// UDP payload.
        data: Vec<u8>,
    },
    /// Raw ESP (IP protocol 50), from the SPI on.
    Esp {
        /// Outer source.
        src: IpAddr,
        /// Outer destination.
        dst: IpAddr,
        /// ESP packet.
        data: Vec<u8>,
    },
    /// GRE (IP protocol 47 payload) on a gateway-target link.
    Gre {
        /// Outer source.
        src: IpAddr,
        /// Outer destination.
        dst: IpAddr,
        /// GRE header and inner packet.
        data: Vec<u8>,
    },
    /// A cleartext IP packet, routed by its own destination (plain traffic to a
    /// DVIPA, a target's direct reply, what a gateway's kernel forwards).
    Ip(Vec<u8>),
    /// A cluster control message to node `to` (UDP on the cluster port).
    Cluster {
        /// The recipient's node id.
        to: NodeId,
        /// Sealed message.
        data: Vec<u8>,
    },
}

/// The kind of a [`Payload`], for counters and filters.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    /// [`Payload::Udp`].
    Udp,
    /// [`Payload::Esp`].
    Esp,
    /// [`Payload::Gre`].
    Gre,
    /// [`Payload::Ip`].
    Ip,
    /// [`Payload::Cluster`].
    Cluster,
}

impl Payload {
    /// Its kind.
    pub fn kind(&self) -> Kind {
        match self {
            Payload::Udp { .. } => Kind::Udp,
            Payload::Esp { .. } => Kind::Esp,
            Payload::Gre { .. } => Kind::Gre,
            Payload::Ip(_) => Kind::Ip,
            Payload::Cluster { .. } => Kind::Cluster,
        }
    }

    /// The bytes carried.
    pub fn bytes(&self) -> &[u8] {
        match self {
            Payload::Udp { data, .. }
            | Payload::Esp { data, .. }
            | Payload::Gre { data, .. }
            | Payload::Cluster { data, .. }
            | Payload::Ip(data) => data,
        }
    }

    /// The destination address (cluster messages have a node id instead).
    pub fn dst_addr(&self) -> Option<IpAddr> {
        match self {
            Payload::Udp { dst, .. } => Some(dst.ip()),
            Payload::Esp { dst, .. } | Payload::Gre { dst, .. } => Some(*dst),
            Payload::Ip(p) => super::packet::ip_layer(p).map(|(_, d, _, _)| d),
            Payload::Cluster { .. } => None,
        }
    }
}

/// A datagram in flight.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Datagram {
    /// When it arrives.
    pub at: Instant,
    /// Who sent it.
    pub from: Node,
    /// What it is.
    pub payload: Payload,
}

/// How a path treats datagrams. Probabilities are per datagram.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Conditions {
    /// One-way delay.
    pub latency: Duration,
    /// Extra delay, uniform in `[0, jitter)` (reorders datagrams closer than it).
    pub jitter: Duration,
    /// Probability of loss.
    pub loss: f64,
    /// Probability that a datagram arrives twice.
    pub duplicate: f64,
    /// Probability that a datagram is held back by `reorder_delay` (overtaken).
    pub reorder: f64,
    /// How long a reordered datagram is held back.
    pub reorder_delay: Duration,
}

impl Conditions {
    /// 1 ms, nothing lost, nothing reordered.
    pub const IDEAL: Conditions = Conditions {
        latency: Duration::from_millis(1),
        jitter: Duration::ZERO,
        loss: 0.0,
        duplicate: 0.0,
        reorder: 0.0,
        reorder_delay: Duration::ZERO,
    };

    /// Nothing gets through (a cut cable, a partition).
    pub const CUT: Conditions = Conditions {
        loss: 1.0,
        ..Conditions::IDEAL
    };

    /// A bad path: `loss` and `reorder` probabilities, 5 ms ± 5 ms, 1 % duplicates,
    /// reordered datagrams held back 15 ms.
    pub fn lossy(loss: f64, reorder: f64) -> Conditions {
        Conditions {
            latency: Duration::from_millis(5),
            jitter: Duration::from_millis(5),
            loss,
            duplicate: 0.01,
            reorder,
            reorder_delay: Duration::from_millis(15),
        }
    }
}

/// Network counters.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct NetStats {
    /// Datagrams sent, by kind.
    pub sent: BTreeMap<Kind, u64>,
    /// Datagrams delivered, by kind.
    pub delivered: BTreeMap<Kind, u64>,
    /// Lost on the path.
    pub lost: u64,
    /// Extra copies made.
    pub duplicated: u64,
    /// Held back to be overtaken.
    pub reordered: u64,
    /// No node owns the destination.
    pub unroutable: u64,
    /// The destination node is down.
    pub to_down_node: u64,
    /// Refused by a NAT (raw ESP, UDP to a port it never mapped).
    pub nat_refused: u64,
}

/// One captured datagram (see [`Network::capture`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Captured {
    /// When it was delivered.
    pub at: Instant,
    /// From.
    pub from: Node,
    /// To.
    pub to: Node,
    /// What.
    pub payload: Payload,
}

/// Addresses, paths and the datagrams in flight.
#[derive(Debug)]
pub struct Network {
    queue: BTreeMap<(Instant, u64), Datagram>,
    seq: u64,
    rng: SimRng,
    default: Conditions,
    paths: HashMap<(Node, Node), Conditions>,
    fixed: HashMap<IpAddr, Node>,
    owned: HashMap<IpAddr, Node>,
    generation: u64,
    cluster: BTreeMap<NodeId, Node>,
    down: HashSet<Node>,
    nats: HashMap<Node, Nat>,
    capture: Option<Vec<Captured>>,
    /// Counters.
    pub stats: NetStats,
}

impl Network {
    /// An empty network whose decisions follow `seed`.
    pub fn new(seed: u64) -> Network {
        Network {
            queue: BTreeMap::new(),
            seq: 0,
            rng: SimRng::new(seed, 0x6e6574),
            default: Conditions::IDEAL,
            paths: HashMap::new(),
            fixed: HashMap::new(),
            owned: HashMap::new(),
            generation: 0,
            cluster: BTreeMap::new(),
            down: HashSet::new(),
            nats: HashMap::new(),
            capture: None,
            stats: NetStats::default(),
        }
    }

    /// Conditions of every path without its own.
    pub fn set_default(&mut self, c: Conditions) {
        self.default = c;
    }

    /// Conditions between `a` and `b`, both ways.
    pub fn set_path(&mut self, a: Node, b: Node, c: Conditions) {
        self.paths.insert((a, b), c);
        self.paths.insert((b, a), c);
    }

    /// Conditions from `a` to `b` only.
    pub fn set_path_one_way(&mut self, a: Node, b: Node, c: Conditions) {
        self.paths.insert((a, b), c);
    }

    /// Back to the default conditions between `a` and `b`.
    pub fn heal(&mut self, a: Node, b: Node) {
        self.paths.remove(&(a, b));
        self.paths.remove(&(b, a));
    }

    /// The conditions from `a` to `b`.
    pub fn path(&self, a: Node, b: Node) -> Conditions {
        self.paths.get(&(a, b)).copied().unwrap_or(self.default)
    }

    /// `addr` always belongs to `node`.
    pub fn bind(&mut self, addr: IpAddr, node: Node) {
        self.fixed.insert(addr, node);
    }

    /// `node` now owns the movable address `addr` (a gateway VIPA after a
    /// gratuitous ARP, a DVIPA the routers now send to this gateway).
    pub fn claim(&mut self, addr: IpAddr, node: Node) {
        if self.owned.insert(addr, node) != Some(node) {
            self.generation += 1;
        }
    }

    /// Nobody owns `addr` any more.
    pub fn release(&mut self, addr: IpAddr) {
        if self.owned.remove(&addr).is_some() {
            self.generation += 1;
        }
    }

    /// Who owns the movable address `addr`.
    pub fn owner(&self, addr: IpAddr) -> Option<Node> {
        self.owned.get(&addr).copied()
    }

    /// Counts ownership changes (the invariants compare it).
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Node id `id` on the cluster channel is `node`.
    pub fn bind_cluster(&mut self, id: NodeId, node: Node) {
        self.cluster.insert(id, node);
    }

    /// The node with cluster id `id`.
    pub fn cluster_node(&self, id: NodeId) -> Option<Node> {
        self.cluster.get(&id).copied()
    }

    /// Every cluster member: (id, node), by id.
    pub fn cluster_members(&self) -> impl Iterator<Item = (NodeId, Node)> + '_ {
        self.cluster.iter().map(|(i, n)| (*i, *n))
    }

    /// A down node receives nothing (a killed process, a dead host).
    pub fn set_down(&mut self, node: Node, down: bool) {
        if down {
            self.down.insert(node);
        } else {
            self.down.remove(&node);
        }
    }

    /// Put a masquerading router with address `public` in front of `node`
    /// (see [`Nat`]).
    pub fn nat(&mut self, node: Node, public: IpAddr) {
        self.nats.insert(node, Nat::new(public));
        self.bind(public, node);
    }

    /// The NAT in front of `node`.
    pub fn nat_of(&self, node: Node) -> Option<&Nat> {
        self.nats.get(&node)
    }

    /// Is `node` down?
    pub fn is_down(&self, node: Node) -> bool {
        self.down.contains(&node)
    }

    /// Start (or stop) recording every delivered datagram.
    pub fn capture(&mut self, on: bool) {
        self.capture = on.then(Vec::new);
    }

    /// The datagrams captured so far.
    pub fn captured(&self) -> &[Captured] {
        self.capture.as_deref().unwrap_or(&[])
    }

    /// Where a payload goes now.
    pub fn route(&self, p: &Payload) -> Option<Node> {
        match p {
            Payload::Cluster { to, .. } => self.cluster_node(*to),
            _ => {
                let d = p.dst_addr()?;
                self.owned.get(&d).or_else(|| self.fixed.get(&d)).copied()
            }
        }
    }

    /// Send `payload` from `from` at `now`: lost, delayed, duplicated or held back
    /// as the path says.
    pub fn send(&mut self, now: Instant, from: Node, payload: Payload) {
        *self.stats.sent.entry(payload.kind()).or_insert(0) += 1;
        let payload = match self.nats.get_mut(&from) {
            Some(nat) => match nat.outbound(payload) {
                Some(p) => p,
                None => {
                    self.stats.nat_refused += 1;
                    return;
                }
            },
            None => payload,
        };
        let Some(to) = self.route(&payload) else {
            self.stats.unroutable += 1;
            return;
        };
        let c = self.path(from, to);
        if self.rng.chance(c.loss) {
            self.stats.lost += 1;
            return;
        }
        let copies = if self.rng.chance(c.duplicate) { 2 } else { 1 };
        self.stats.duplicated += copies - 1;
        let mut delays = Vec::with_capacity(2);
        for _ in 0..copies {
            let mut delay = c.latency + c.jitter.mul_f64(self.rng.unit());
            if self.rng.chance(c.reorder) {
                self.stats.reordered += 1;
                delay += c.reorder_delay;
            }
            delays.push(delay);
        }
        if let Some(last) = delays.pop() {
            for d in delays {
                let payload = payload.clone();
                self.push(Datagram {
                    at: now + d,
                    from,
                    payload,
                });
            }
            self.push(Datagram {
                at: now + last,
                from,
                payload,
            });
        }
    }

    /// Queue a datagram as it is (tests that inject exact traffic).
    pub fn push(&mut self, d: Datagram) {
        self.seq += 1;
        self.queue.insert((d.at, self.seq), d);
    }

    /// When the next datagram arrives.
    pub fn next_due(&self) -> Option<Instant> {
        self.queue.keys().next().map(|(t, _)| *t)
    }

    /// Datagrams in flight.
    pub fn in_flight(&self) -> usize {
        self.queue.len()
    }

    /// Take the next datagram due by `now` with the node it goes to now; `None`
    /// inside means it cannot be delivered (counted).
    pub fn pop_due(&mut self, now: Instant) -> Option<(Datagram, Option<Node>)> {
        let (&k, _) = self.queue.iter().next().filter(|((t, _), _)| *t <= now)?;
        let mut d = self.queue.remove(&k)?;
        let to = self.deliverable(&mut d);
        Some((d, to))
    }

    /// Take the next datagram if it is due at exactly `at`, goes to `to` and
    /// `same` accepts it (to hand a gateway a batch of what arrived together).
    pub fn pop_same(
        &mut self,
        at: Instant,
        to: Node,
        same: impl Fn(&Payload) -> bool,
    ) -> Option<Datagram> {
        let (&k, d) = self.queue.iter().next()?;
        if k.0 != at || !same(&d.payload) || self.route(&d.payload) != Some(to) {
            return None;
        }
        let mut d = self.queue.remove(&k)?;
        self.deliverable(&mut d).map(|_| d)
    }

    fn deliverable(&mut self, d: &mut Datagram) -> Option<Node> {
        let Some(to) = self.route(&d.payload) else {
            self.stats.unroutable += 1;
            return None;
        };
        if self.down.contains(&to) {
            self.stats.to_down_node += 1;
            return None;
        }
        if let Some(nat) = self.nats.get_mut(&to) {
            let p = std::mem::replace(&mut d.payload, Payload::Ip(Vec::new()));
            match nat.inbound(p) {
                Some(p) => d.payload = p,
                None => {
                    self.stats.nat_refused += 1;
                    return None;
                }
            }
        }
        *self.stats.delivered.entry(d.payload.kind()).or_insert(0) += 1;
        if let Some(c) = &mut self.capture {
            c.push(Captured {
                at: d.at,
                from: d.from,
                to,
                payload: d.payload.clone(),
            });
        }
        Some(to)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn udp(to: &str) -> Payload {
        Payload::Udp {
            src: "10.0.0.1:500".parse().unwrap(),
            dst: to.parse().unwrap(),
            data: vec![1, 2, 3],
        }
    }

    #[test]
    fn owned_addresses_move_in_flight() {
        let mut n = Network::new(1);
        let now = Instant::now();
        n.bind("10.0.0.1".parse().unwrap(), Node::Client(0));
        n.claim("10.0.0.2".parse().unwrap(), Node::Gateway(0));
        n.send(now, Node::Client(0), udp("10.0.0.2:500"));
        n.claim("10.0.0.2".parse().unwrap(), Node::Gateway(1));
        assert_eq!(n.generation(), 2);
        assert!(n.pop_due(now).is_none(), "not due yet");
        let (d, to) = n.pop_due(now + Duration::from_millis(1)).unwrap();
        assert_eq!(to, Some(Node::Gateway(1)));
        assert_eq!(d.payload, udp("10.0.0.2:500"));
        n.send(now, Node::Client(0), udp("10.9.9.9:500"));
        assert_eq!(n.stats.unroutable, 1);
    }

    #[test]
    fn loss_duplication_and_reordering_follow_the_seed() {
        let run = |seed| {
            let mut n = Network::new(seed);
            n.bind("10.0.0.2".parse().unwrap(), Node::Gateway(0));
            n.set_default(Conditions::lossy(0.2, 0.2));
            let now = Instant::now();
            for i in 0..200u8 {
                let mut p = udp("10.0.0.2:500");
                if let Payload::Udp { data, .. } = &mut p {
                    data[0] = i;
                }
                n.send(
                    now + Duration::from_millis(u64::from(i)),
                    Node::Client(0),
                    p,
                );
            }
            let mut order = Vec::new();
            while let Some((d, _)) = n.pop_due(now + Duration::from_secs(10)) {
                order.push(d.payload.bytes()[0]);
            }
            (order, n.stats.clone())
        };
        let (a, sa) = run(5);
        assert_eq!(run(5).0, a, "same seed, same run");
        assert_ne!(run(6).0, a);
        assert!(sa.lost > 10 && sa.lost < 80, "{sa:?}");
        assert!(sa.duplicated <= 10);
        assert!(
            a.windows(2).any(|w| w[0] > w[1]),
            "some datagrams overtaken"
        );
        assert_eq!(a.len() as u64, 200 - sa.lost + sa.duplicated);
    }

    #[test]
    fn down_nodes_and_cut_paths_receive_nothing() {
        let mut n = Network::new(1);
        let now = Instant::now();
        n.bind("10.0.0.2".parse().unwrap(), Node::Gateway(0));
        n.set_down(Node::Gateway(0), true);
        n.send(now, Node::Client(0), udp("10.0.0.2:500"));
        let (_, to) = n.pop_due(now + Duration::from_secs(1)).unwrap();
        assert_eq!(to, None);
        assert_eq!(n.stats.to_down_node, 1);
        n.set_down(Node::Gateway(0), false);
        n.set_path(Node::Client(0), Node::Gateway(0), Conditions::CUT);
        n.send(now, Node::Client(0), udp("10.0.0.2:500"));
        assert_eq!((n.stats.lost, n.in_flight()), (1, 0));
    }
}
