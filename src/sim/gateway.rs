//! A gateway of the harness: a [`GatewayCore`] built from a policy text the test
//! wrote, and the [`Sink`] that turns what it sends into datagrams on the
//! simulated network (UDP and ESP from the gateway VIPA, GRE from its address on
//! each target's link, cluster messages by node id, the TUN as the gateway host's
//! kernel).
//!
//! A gateway can also be a bare [`Distributor`] ([`Engine::Distributor`]): the
//! distribution half of a gateway without IKE and ESP, fed decrypted packets by
//! the test. It stands in where the core does not expose what a scenario needs
//! yet (taking a DVIPA over, reloading the DVIPA list); see `docs/testing.md`.

use std::collections::{BTreeSet, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::time::Instant;

use plexgate_distrib::{self as distrib, Destination, Distributor, LinkId, NodeId};
use plexgate_ike as ike;

use super::net::{Network, Node, Payload};
use super::SimError;
use crate::gateway::config;
use crate::gateway::core::{CoreSetup, GatewayCore, RxBatch, RxPacket, SideEffect, Sink, HEADROOM};

/// What runs inside a simulated gateway.
pub enum Engine {
    /// The whole sans-IO gateway.
    Core(Box<GatewayCore>),
    /// The distributor alone (decrypted packets are injected by the test).
    Distributor(Box<DistributorOnly>),
}

/// A distributor with the periodic DVIPA announcement the core would add.
pub struct DistributorOnly {
    /// The distributor.
    pub dist: Distributor,
    announce_at: Instant,
}

/// A reply a target sent to a distributor-only gateway (it would be sealed to
/// the client, or sent in clear, by a whole gateway).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// The inner IP packet.
    pub inner: Vec<u8>,
    /// The target that sent it.
    pub target: NodeId,
    /// The connection uses IPsec.
    pub uses_ipsec: bool,
}

/// One gateway of the simulated cluster.
pub struct GatewayNode {
    /// Its name (the policy file is `<name>.toml`).
    pub name: String,
    /// Its cluster node id (`[cluster] gateway_id`).
    pub id: NodeId,
    policy: plexgate_policy::Policy,
    engine: Engine,
    /// Target address → (our address on that link, link id).
    links: HashMap<IpAddr, (IpAddr, LinkId)>,
    link_by_local: HashMap<IpAddr, LinkId>,
    /// Packets the core wrote to the TUN for the gateway host itself.
    pub tun_local: Vec<Vec<u8>>,
    /// Packets the core wrote to the TUN that the host's kernel forwarded.
    pub tun_forwarded: u64,
    /// Wireshark key-log lines.
    pub keylog: Vec<String>,
    /// Routes into the TUN the core asked for.
    pub routes: BTreeSet<String>,
    /// Replies that reached a distributor-only gateway.
    pub replies: Vec<Reply>,
    /// How many times the process was restarted.
    pub restarts: u32,
}

/// What one call into a gateway produced besides datagrams.
#[derive(Debug, Default)]
pub struct Outputs {
    /// Recovery records to write and remove.
    pub side_effects: Vec<SideEffect>,
    /// Inner destinations of the GRE packets sent to targets.
    pub forwarded: Vec<IpAddr>,
}

fn parse_policy(name: &str, text: &str, dir: &Path) -> Result<plexgate_policy::Policy, SimError> {
    plexgate_policy::parse_str(text, &format!("{name}.toml"), dir)
        .map(|c| c.policy)
        .map_err(|d| SimError::Policy {
            node: name.to_string(),
            diagnostics: d.to_string(),
        })
}

impl GatewayNode {
    /// The site of its policy.
    pub fn site(&self) -> &str {
        &self.policy.site.name
    }

    /// Build gateway `name` from its policy text; key files named in it are read
    /// from `dir`. `seed` seeds the IKE engine, `first_seq` the cluster channel.
    pub fn new(
        name: &str,
        text: &str,
        dir: &Path,
        seed: u64,
        first_seq: u64,
        now: Instant,
        distributor_only: bool,
    ) -> Result<GatewayNode, SimError> {
        let policy = parse_policy(name, text, dir)?;
        let engine = build_engine(name, &policy, seed, first_seq, now, distributor_only)?;
        let mut links = HashMap::new();
        let mut link_by_local = HashMap::new();
        for (i, t) in policy.targets.iter().enumerate() {
            if let Some(l) = policy.links.iter().find(|l| l.name == t.link) {
                links.insert(t.address, (l.local, LinkId(i as u32)));
                link_by_local.insert(l.local, LinkId(i as u32));
            }
        }
        Ok(GatewayNode {
            name: name.to_string(),
            id: config::gateway_node(&policy),
            policy,
            engine,
            links,
            link_by_local,
            tun_local: Vec::new(),
            tun_forwarded: 0,
            keylog: Vec::new(),
            routes: BTreeSet::new(),
            replies: Vec::new(),
            restarts: 0,
        })
    }

    /// A new process with the same policy and empty state (SAD, CRT, IKE SAs).
    pub fn restart(&mut self, seed: u64, now: Instant) -> Result<(), SimError> {
        self.restarts += 1;
        let first_seq = u64::from(self.restarts + 1) << 40;
        let bare = matches!(self.engine, Engine::Distributor(_));
        self.engine = build_engine(&self.name, &self.policy, seed, first_seq, now, bare)?;
        self.routes.clear();
        Ok(())
    }

    /// The checked policy.
    pub fn policy(&self) -> &plexgate_policy::Policy {
        &self.policy
    }

    /// The gateway core (`None` for a distributor-only gateway).
    pub fn core(&self) -> Option<&GatewayCore> {
        match &self.engine {
            Engine::Core(c) => Some(c),
            Engine::Distributor(_) => None,
        }
    }

    /// The engine, for calls the harness has no helper for.
    pub fn engine_mut(&mut self) -> &mut Engine {
        &mut self.engine
    }

    /// The distributor (of the core or on its own).
    pub fn distributor(&self) -> &Distributor {
        match &self.engine {
            Engine::Core(c) => c.distributor(),
            Engine::Distributor(d) => &d.dist,
        }
    }

    /// Does this gateway route `dvipa` now?
    pub fn routes_dvipa(&self, dvipa: IpAddr) -> bool {
        self.distributor()
            .dvipas()
            .any(|(d, routing)| routing && d.dvipa == dvipa)
    }

    /// Our addresses on the target links, with the target address of each.
    pub fn link_addresses(&self) -> impl Iterator<Item = (IpAddr, IpAddr)> + '_ {
        self.links.iter().map(|(t, (l, _))| (*l, *t))
    }

    /// When the engine wants [`GatewayNode::on_timeout`].
    pub fn next_timeout(&self) -> Option<Instant> {
        match &self.engine {
            Engine::Core(c) => Some(c.next_timeout()),
            Engine::Distributor(d) => Some(
                d.dist
                    .next_timeout()
                    .map_or(d.announce_at, |t| t.min(d.announce_at)),
            ),
        }
    }

    /// Run `f` on the engine with a sink onto the network, then collect what the
    /// core left to do (records, key log, routes, TUN packets).
    pub fn call<R>(
        &mut self,
        me: Node,
        net: &mut Network,
        now: Instant,
        f: impl FnOnce(&mut Engine, &mut dyn Sink) -> R,
    ) -> (R, Outputs) {
        let mut sink = GwSink {
            net,
            now,
            me,
            links: &self.links,
            tun: Vec::new(),
            forwarded: Vec::new(),
        };
        let r = f(&mut self.engine, &mut sink);
        let GwSink { tun, forwarded, .. } = sink;
        let mut out = Outputs {
            forwarded,
            ..Outputs::default()
        };
        if let Engine::Core(c) = &mut self.engine {
            for fx in c.drain_side_effects() {
                match fx {
                    SideEffect::KeyLog(l) => self.keylog.push(l),
                    other => out.side_effects.push(other),
                }
            }
            for (add, cidr) in c.routes_wanted() {
                if add {
                    self.routes.insert(cidr);
                } else {
                    self.routes.remove(&cidr);
                }
            }
        }
        for p in tun {
            self.kernel(net, me, now, p);
        }
        (r, out)
    }

    /// The gateway host's kernel takes a packet from the TUN: its own, or
    /// forwarded (in clear) to wherever the network routes it.
    fn kernel(&mut self, net: &mut Network, me: Node, now: Instant, p: Vec<u8>) {
        let ours = super::packet::ip_layer(&p)
            .is_some_and(|(_, d, _, _)| self.core().is_some_and(|c| c.is_local(d)));
        let payload = Payload::Ip(p);
        if ours || net.route(&payload).is_none_or(|n| n == me) {
            if let Payload::Ip(p) = payload {
                self.tun_local.push(p);
            }
            return;
        }
        self.tun_forwarded += 1;
        net.send(now, me, payload);
    }

    /// A datagram for this gateway.
    pub fn deliver(&mut self, me: Node, net: &mut Network, now: Instant, p: Payload) -> Outputs {
        let link = match &p {
            Payload::Gre { dst, .. } => self.link_by_local.get(dst).copied(),
            _ => None,
        };
        let mut replies = Vec::new();
        let ((), out) = self.call(me, net, now, |e, sink| match (e, p) {
            (Engine::Core(c), p) => core_deliver(c, now, p, link, sink),
            (Engine::Distributor(d), p) => d.deliver(now, p, link, sink, &mut replies),
        });
        self.replies.extend(replies);
        out
    }

    /// A batch of ESP (raw, or in UDP on `local`) that arrived together.
    pub fn deliver_batch(
        &mut self,
        me: Node,
        net: &mut Network,
        now: Instant,
        batch: Vec<Payload>,
    ) -> Outputs {
        let ((), out) = self.call(me, net, now, |e, sink| {
            let Engine::Core(c) = e else { return };
            let mut b = SimBatch::new(&batch);
            match batch.first() {
                Some(Payload::Udp { dst, .. }) => c.on_udp_batch(now, *dst, &mut b, sink),
                Some(Payload::Esp { .. }) => c.on_esp_batch(now, &mut b, sink),
                _ => {}
            }
        });
        out
    }

    /// Timers.
    pub fn on_timeout(&mut self, me: Node, net: &mut Network, now: Instant) -> Outputs {
        self.call(me, net, now, |e, sink| match e {
            Engine::Core(c) => c.on_timeout(now, sink),
            Engine::Distributor(d) => d.on_timeout(now, sink),
        })
        .1
    }
}

fn build_engine(
    name: &str,
    p: &plexgate_policy::Policy,
    seed: u64,
    first_seq: u64,
    now: Instant,
    distributor_only: bool,
) -> Result<Engine, SimError> {
    let cluster_key = match &p.cluster {
        Some(c) => std::fs::read(&c.key_file).map_err(|e| SimError::Setup {
            node: name.to_string(),
            what: format!("cluster key {}: {e}", c.key_file.display()),
        })?,
        None => b"plexgate-no-cluster".to_vec(),
    };
    if distributor_only {
        let mut dist = Distributor::new(distrib::DistributorConfig::new(
            config::gateway_node(p),
            distrib::ClusterKey::new(&cluster_key),
            first_seq,
        ));
        for (i, t) in p.targets.iter().enumerate() {
            if let Some(node) = config::target_node(p, &t.name) {
                dist.bind_link(LinkId(i as u32), node, t.address);
            }
        }
        for d in config::dvipas(p) {
            dist.configure_dvipa(d);
        }
        return Ok(Engine::Distributor(Box::new(DistributorOnly {
            dist,
            announce_at: now,
        })));
    }
    let setup_err = |what: String| SimError::Setup {
        node: name.to_string(),
        what,
    };
    let setup = CoreSetup {
        ike: config::ike_config(p).map_err(|e| setup_err(e.to_string()))?,
        cluster_key,
        first_seq,
        records: true,
    };
    let rng = Box::new(ike::SeededRng::new(seed));
    let core = GatewayCore::new(p, setup, rng, now).map_err(|e| setup_err(e.to_string()))?;
    Ok(Engine::Core(Box::new(core)))
}

/// A received datagram into the core, in a buffer with [`HEADROOM`] before it
/// and room after it, as the daemon's receive buffers have.
fn core_deliver(
    c: &mut GatewayCore,
    now: Instant,
    p: Payload,
    link: Option<LinkId>,
    sink: &mut dyn Sink,
) {
    let framed = |data: &[u8]| {
        let mut buf = vec![0u8; HEADROOM + data.len() + HEADROOM];
        buf[HEADROOM..HEADROOM + data.len()].copy_from_slice(data);
        (buf, data.len())
    };
    match p {
        Payload::Udp { src, dst, data } => {
            let (mut b, n) = framed(&data);
            c.on_udp(now, dst, src, &mut b, HEADROOM, n, sink);
        }
        Payload::Esp { data, .. } => {
            let (mut b, n) = framed(&data);
            c.on_esp(now, &mut b, HEADROOM, n, sink);
        }
        Payload::Gre { src, data, .. } => {
            // GRE that arrives on no link of ours is not for the core at all.
            if let Some(link) = link {
                let (mut b, n) = framed(&data);
                c.on_gre(now, link, src, &mut b, HEADROOM, n, sink);
            }
        }
        // The kernel routes plain traffic for a DVIPA (and anything else the
        // routes send there) into the TUN.
        Payload::Ip(data) => {
            let (mut b, n) = framed(&data);
            c.on_tun(now, &mut b, HEADROOM, n, sink);
        }
        Payload::Cluster { data, .. } => c.on_cluster(now, &data, sink),
    }
}

impl DistributorOnly {
    /// Send the cluster messages the distributor queued (after a call such as
    /// `take_over` or `configure_dvipa` on [`DistributorOnly::dist`]).
    pub fn flush(&mut self, sink: &mut dyn Sink) {
        while let Some(t) = self.dist.poll_transmit() {
            sink.cluster(t.to, &t.bytes);
        }
    }

    /// Route a decrypted (or plain) inbound packet as the core's data path would.
    pub fn inbound(
        &mut self,
        now: Instant,
        packet: &[u8],
        via_ipsec: bool,
        sink: &mut dyn Sink,
    ) -> distrib::Route {
        let route = self.dist.route_inbound(now, packet, via_ipsec);
        if let distrib::Route::ToTarget { remote, key, .. } = route {
            let mut g = vec![0u8; packet.len() + distrib::gre::GRE_HEADER_LEN];
            if let Ok(n) = distrib::gre::encapsulate(key, packet, &mut g) {
                sink.gre(remote, &g[..n]);
            }
        }
        self.flush(sink);
        route
    }

    fn deliver(
        &mut self,
        now: Instant,
        p: Payload,
        link: Option<LinkId>,
        sink: &mut dyn Sink,
        replies: &mut Vec<Reply>,
    ) {
        match p {
            Payload::Gre { src, data, .. } => {
                let Some(link) = link else { return };
                if let distrib::FromTarget::ToClient {
                    inner,
                    target,
                    uses_ipsec,
                    ..
                } = self.dist.receive_gre(now, link, src, &data)
                {
                    replies.push(Reply {
                        inner: inner.to_vec(),
                        target,
                        uses_ipsec,
                    });
                }
            }
            Payload::Cluster { data, .. } => {
                let _ = self.dist.handle_cluster(now, &data);
            }
            Payload::Ip(data) => {
                self.inbound(now, &data, false, sink);
            }
            Payload::Udp { .. } | Payload::Esp { .. } => {}
        }
        self.flush(sink);
    }

    fn on_timeout(&mut self, now: Instant, sink: &mut dyn Sink) {
        self.dist.handle_timeout(now);
        if now >= self.announce_at {
            self.dist.announce();
            self.announce_at = now + crate::gateway::core::ANNOUNCE_EVERY;
        }
        self.flush(sink);
    }
}

/// The core's outputs, as datagrams from this gateway.
struct GwSink<'a> {
    net: &'a mut Network,
    now: Instant,
    me: Node,
    links: &'a HashMap<IpAddr, (IpAddr, LinkId)>,
    tun: Vec<Vec<u8>>,
    forwarded: Vec<IpAddr>,
}

impl Sink for GwSink<'_> {
    fn udp(&mut self, local: SocketAddr, remote: SocketAddr, data: &[u8]) {
        let p = Payload::Udp {
            src: local,
            dst: remote,
            data: data.to_vec(),
        };
        self.net.send(self.now, self.me, p);
    }

    fn esp(&mut self, local: IpAddr, remote: IpAddr, data: &[u8]) {
        let p = Payload::Esp {
            src: local,
            dst: remote,
            data: data.to_vec(),
        };
        self.net.send(self.now, self.me, p);
    }

    fn gre(&mut self, remote: IpAddr, data: &[u8]) {
        // The daemon sends GRE for a target from our address on its link.
        let src = self.links.get(&remote).map_or(remote, |(l, _)| *l);
        if let Ok((_, off)) = distrib::gre::decapsulate(data) {
            if let Some((_, d, _, _)) = super::packet::ip_layer(&data[off..]) {
                self.forwarded.push(d);
            }
        }
        let p = Payload::Gre {
            src,
            dst: remote,
            data: data.to_vec(),
        };
        self.net.send(self.now, self.me, p);
    }

    fn tun(&mut self, packet: &[u8]) {
        self.tun.push(packet.to_vec());
    }

    fn cluster(&mut self, to: Destination, data: &[u8]) {
        let to: Vec<NodeId> = match to {
            Destination::Node(n) => vec![n],
            // Every other member of the cluster (targets and gateways).
            Destination::Broadcast => self
                .net
                .cluster_members()
                .filter(|(_, n)| *n != self.me)
                .map(|(i, _)| i)
                .collect(),
        };
        for id in to {
            let p = Payload::Cluster {
                to: id,
                data: data.to_vec(),
            };
            self.net.send(self.now, self.me, p);
        }
    }
}

/// A batch of datagrams in their own receive buffers.
struct SimBatch {
    slots: Vec<(Vec<u8>, usize, Option<SocketAddr>)>,
}

impl SimBatch {
    fn new(batch: &[Payload]) -> SimBatch {
        let slots = batch
            .iter()
            .map(|p| {
                let (data, remote): (&[u8], _) = match p {
                    Payload::Udp { src, data, .. } => (data, Some(*src)),
                    Payload::Esp { data, .. } => (data, None),
                    _ => (&[], None),
                };
                let mut buf = vec![0u8; HEADROOM + data.len() + HEADROOM];
                buf[HEADROOM..HEADROOM + data.len()].copy_from_slice(data);
                (buf, data.len(), remote)
            })
            .collect();
        SimBatch { slots }
    }
}

impl RxBatch for SimBatch {
    fn count(&self) -> usize {
        self.slots.len()
    }

    fn packet(&mut self, i: usize) -> Option<RxPacket<'_>> {
        let (buf, len, remote) = self.slots.get_mut(i)?;
        Some(RxPacket {
            buf: &mut buf[..],
            start: HEADROOM,
            len: *len,
            remote: *remote,
        })
    }
}
