//! A target of the harness: the [`TargetStack`] of `plexgate target` on a host
//! whose kernel is modelled by [`Host`]. GRE from a gateway arrives on the link
//! its destination address belongs to; the inner packet goes to the host; what
//! the host sends from a DVIPA goes through `route_tun` (GRE to the routing
//! gateway, or out directly). A duty timer does what the daemon's scan thread
//! does (`src/target.rs`): listeners to `update_listeners`, established
//! connections to `learn_established`, connection expiry and keepalives.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use plexgate_distrib::{
    self as distrib, ClusterKey, Destination, LinkId, NodeId, TargetConfig, TargetStack, TunRoute,
};

use super::host::Host;
use super::net::{Network, Node, Payload};
use super::packet::{self, flags, Parsed};

/// How often the target daemon does its periodic work (as `src/target.rs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TargetDuty {
    /// Listener scan (SRVSTAT) and connection expiry.
    pub scan_every: Duration,
    /// Scan of established connections (NEWCONN after a restart).
    pub established_every: Duration,
    /// Keepalives to the gateways.
    pub keepalive_every: Duration,
}

impl Default for TargetDuty {
    fn default() -> Self {
        TargetDuty {
            scan_every: Duration::from_millis(250),
            established_every: Duration::from_secs(2),
            keepalive_every: Duration::from_secs(2),
        }
    }
}

/// A target's link to one gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TargetLink {
    /// Link id at the target.
    pub link: LinkId,
    /// The gateway's node id.
    pub gateway: NodeId,
    /// The gateway's address on the link.
    pub gateway_addr: IpAddr,
    /// The target's address on the link.
    pub addr: IpAddr,
}

/// A packet a target handed to its host, as the invariants see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Inbound {
    /// Client side.
    pub src: SocketAddr,
    /// DVIPA side.
    pub dst: SocketAddr,
    /// TCP (else UDP).
    pub tcp: bool,
    /// An initial SYN.
    pub syn: bool,
}

/// One target.
pub struct TargetNode {
    /// Its name in the policies.
    pub name: String,
    /// Its cluster node id.
    pub id: NodeId,
    key: ClusterKey,
    stack: TargetStack,
    /// Its kernel and applications.
    pub host: Host,
    links: Vec<TargetLink>,
    /// Periods of the daemon's duties.
    pub duty: TargetDuty,
    scan_at: Instant,
    established_at: Instant,
    keepalive_at: Instant,
    /// How many times the daemon was restarted.
    pub restarts: u32,
}

impl TargetNode {
    /// A target daemon starting at `now` (it says Hello to every gateway).
    pub fn new(
        name: &str,
        id: NodeId,
        key: ClusterKey,
        links: Vec<TargetLink>,
        host: Host,
        now: Instant,
    ) -> Self {
        let stack = Self::new_stack(id, &key, &links, 1);
        let duty = TargetDuty::default();
        let mut t = TargetNode {
            name: name.to_string(),
            id,
            key,
            stack,
            host,
            links,
            duty,
            scan_at: now,
            established_at: now,
            keepalive_at: now + duty.keepalive_every,
            restarts: 0,
        };
        t.stack.hello();
        t
    }

    fn new_stack(
        id: NodeId,
        key: &ClusterKey,
        links: &[TargetLink],
        first_seq: u64,
    ) -> TargetStack {
        let mut s = TargetStack::new(TargetConfig::new(id, key.clone(), first_seq));
        for l in links {
            s.bind_link(l.link, l.gateway, l.gateway_addr);
        }
        s
    }

    /// The daemon restarts (the host, its sockets and connections stay): a new
    /// stack that knows no DVIPA says Hello and learns everything again.
    pub fn restart(&mut self, now: Instant) {
        self.restarts += 1;
        let first_seq = u64::from(self.restarts + 1) << 40;
        self.stack = Self::new_stack(self.id, &self.key, &self.links, first_seq);
        self.stack.hello();
        self.scan_at = now;
        self.established_at = now;
        self.keepalive_at = now + self.duty.keepalive_every;
    }

    /// The distribution state.
    pub fn stack(&self) -> &TargetStack {
        &self.stack
    }

    /// The distribution state, for calls the harness has no helper for.
    pub fn stack_mut(&mut self) -> &mut TargetStack {
        &mut self.stack
    }

    /// The links, one per gateway.
    pub fn links(&self) -> &[TargetLink] {
        &self.links
    }

    /// When the target wants [`TargetNode::on_timeout`].
    pub fn next_timeout(&self) -> Instant {
        let duty = self.scan_at.min(self.established_at).min(self.keepalive_at);
        self.host.next_timeout().map_or(duty, |t| t.min(duty))
    }

    /// Periodic duties and the host's timers.
    pub fn on_timeout(&mut self, me: Node, net: &mut Network, now: Instant) {
        if now >= self.scan_at {
            self.stack.update_listeners(&self.host.sockets());
            self.stack.handle_timeout(now);
            self.scan_at = now + self.duty.scan_every;
        }
        if now >= self.established_at {
            self.stack.learn_established(now, &self.host.sockets());
            self.established_at = now + self.duty.established_every;
        }
        if now >= self.keepalive_at {
            self.stack.keepalive();
            self.keepalive_at = now + self.duty.keepalive_every;
        }
        self.host.handle_timeout(now);
        self.pump(me, net, now);
    }

    /// A datagram for this target; returns what reached the host, if anything.
    pub fn deliver(
        &mut self,
        me: Node,
        net: &mut Network,
        now: Instant,
        p: Payload,
    ) -> Option<Inbound> {
        let mut seen = None;
        match p {
            Payload::Gre { src, dst, mut data } => {
                let link = self.links.iter().find(|l| l.addr == dst).map(|l| l.link);
                if let Some(link) = link {
                    if let Ok(inner) = self.stack.receive_gre(now, link, src, &mut data) {
                        seen = inbound(inner);
                        self.host.deliver(now, inner);
                    }
                }
            }
            Payload::Cluster { data, .. } => {
                let _ = self.stack.handle_cluster(now, &data);
            }
            Payload::Udp { .. } | Payload::Esp { .. } | Payload::Ip(_) => {}
        }
        self.pump(me, net, now);
        seen
    }

    /// Send what the host wrote (through `route_tun`) and the stack's cluster
    /// messages.
    pub fn pump(&mut self, me: Node, net: &mut Network, now: Instant) {
        while let Some(mut p) = self.host.poll_output() {
            match self.stack.route_tun(now, &mut p) {
                TunRoute::ToGateway {
                    gateway,
                    remote,
                    key,
                } => {
                    let src = self
                        .links
                        .iter()
                        .find(|l| l.gateway == gateway)
                        .map_or(remote, |l| l.addr);
                    let mut g = vec![0u8; p.len() + distrib::gre::GRE_HEADER_LEN];
                    if let Ok(n) = distrib::gre::encapsulate(key, &p, &mut g) {
                        g.truncate(n);
                        net.send(
                            now,
                            me,
                            Payload::Gre {
                                src,
                                dst: remote,
                                data: g,
                            },
                        );
                    }
                }
                TunRoute::Direct => net.send(now, me, Payload::Ip(p)),
                TunRoute::Drop(_) => {}
            }
        }
        while let Some(t) = self.stack.poll_transmit() {
            let to: Vec<NodeId> = match t.to {
                Destination::Node(n) => vec![n],
                Destination::Broadcast => self.links.iter().map(|l| l.gateway).collect(),
            };
            for id in to {
                let data = t.bytes.clone();
                net.send(now, me, Payload::Cluster { to: id, data });
            }
        }
    }
}

fn inbound(p: &[u8]) -> Option<Inbound> {
    match packet::parse(p)? {
        Parsed::Tcp {
            src, dst, flags: f, ..
        } => Some(Inbound {
            src,
            dst,
            tcp: true,
            syn: f & (flags::SYN | flags::ACK) == flags::SYN,
        }),
        Parsed::Udp { src, dst, .. } => Some(Inbound {
            src,
            dst,
            tcp: false,
            syn: false,
        }),
    }
}
