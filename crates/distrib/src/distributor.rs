//! The routing gateway's distribution logic (seed 001, figures 10, 12 and 13).
//!
//! [`Distributor`] holds the DVIPA table, the DPT and the CRT of one gateway.
//! [`Distributor::route_inbound`] decides, for every decrypted (or plain)
//! inbound IP packet, whether it goes to a target over GRE, to the gateway's
//! own stack, or nowhere; [`Distributor::receive_gre`] checks and unwraps the
//! replies that targets send back; [`Distributor::handle_cluster`] applies
//! cluster messages, which is all a backup needs to rebuild DPT and CRT on
//! takeover. Sans-IO: the daemon passes `now` and bytes in, and drains
//! [`Distributor::poll_transmit`] for cluster messages to send.

use crate::cluster::{
    Announcement, ClusterEndpoint, ClusterError, ClusterKey, Message, NewConnKind, Role,
};
use crate::counters::{Counters, DropReason, Snapshot, TargetStat};
use crate::crt::{ConnState, Crt, CrtEntry, Origin, Timeouts};
use crate::dpt::{AnnounceGuard, Dpt, DvipaConfig, NewTarget};
use crate::flow::{self, FlowKey, PacketInfo, Proto, TcpFlags};
use crate::gre::{self, GreKey};
use crate::link::{Arrival, LinkId, LinkTable, Node, NodeMap};
use crate::{ClusterTransmit, Destination, NodeId};
use plexgate_wire::ip::FiveTuple;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// Where an inbound packet goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route {
    /// GRE-encapsulate with `key` and send to `remote` (the target's link).
    ToTarget {
        /// The chosen target.
        target: NodeId,
        /// The target's bound outer address.
        remote: IpAddr,
        /// GRE key to write (this gateway's id, IPsec flag).
        key: GreKey,
    },
    /// Not for a distributed DVIPA port: hand to the gateway's own stack.
    Local,
    /// Drop and (already) count.
    Drop(DropReason),
}

/// What to do with a reply a target sent back (after the GRE is removed).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outbound {
    /// Send towards the client (through the outbound SPD).
    ToClient {
        /// The connection was set up under IPsec.
        uses_ipsec: bool,
        /// The CRT entry was created by this packet (opened by a target app).
        new_connection: bool,
    },
    /// Drop and (already) count.
    Drop(DropReason),
}

/// Result of [`Distributor::receive_gre`].
#[derive(Debug, PartialEq, Eq)]
pub enum FromTarget<'a> {
    /// A checked reply: the inner IP packet and what to do with it.
    ToClient {
        /// The inner IP packet (a slice of the GRE payload).
        inner: &'a [u8],
        /// The target that sent it.
        target: NodeId,
        /// The connection was set up under IPsec.
        uses_ipsec: bool,
        /// The CRT entry was created by this packet.
        new_connection: bool,
    },
    /// Drop and (already) count.
    Drop(DropReason),
}

/// The last connection routed in a batch of inbound packets (see
/// [`Distributor::route_inbound_cached`]); one per batch, then dropped.
#[derive(Debug, Default)]
pub struct InboundFlowCache {
    last: Option<CachedFlow>,
}

#[derive(Debug, Clone, Copy)]
struct CachedFlow {
    key: FlowKey,
    /// `key` packed into one integer when both addresses are IPv4
    /// ([`v4_key`]), for [`Distributor::cached_inbound`].
    v4: Option<u128>,
    now: Instant,
    via_ipsec: bool,
    route: Route,
}

/// Configuration of a gateway's distributor.
#[derive(Clone, Debug)]
pub struct DistributorConfig {
    /// This gateway's cluster id.
    pub id: NodeId,
    /// The site's cluster key.
    pub key: ClusterKey,
    /// First cluster sequence number (larger than any used before, e.g. Unix
    /// time in microseconds).
    pub first_seq: u64,
    /// CRT timeouts.
    pub timeouts: Timeouts,
    /// CRT capacity reserved up front (no rehash below it).
    pub crt_capacity: usize,
    /// Most connections in the CRT (see [`crate::crt`] for what happens at it).
    pub crt_max: usize,
    /// A target silent for this long is considered down.
    pub node_timeout: Duration,
}

impl DistributorConfig {
    /// Defaults: default timeouts, 65 536 CRT slots, 30 s node timeout.
    pub fn new(id: NodeId, key: ClusterKey, first_seq: u64) -> Self {
        DistributorConfig {
            id,
            key,
            first_seq,
            timeouts: Timeouts::default(),
            crt_capacity: 65_536,
            crt_max: crate::crt::DEFAULT_MAX,
            node_timeout: Duration::from_secs(30),
        }
    }
}

#[derive(Clone, Debug)]
struct DvipaState {
    cfg: DvipaConfig,
    /// This gateway routes it now.
    routing: bool,
    /// The ownership epoch of its routing gateway (announced with it; targets
    /// follow the highest).
    epoch: u64,
}

/// A routing (or backup) gateway's distribution state.
#[derive(Debug)]
pub struct Distributor {
    id: NodeId,
    cluster: ClusterEndpoint,
    links: LinkTable,
    dvipas: Vec<DvipaState>,
    guard: AnnounceGuard,
    dpt: Dpt,
    crt: Crt,
    timeouts: Timeouts,
    node_timeout: Duration,
    last_heard: HashMap<NodeId, Instant>,
    outbox: VecDeque<ClusterTransmit>,
    counters: Counters,
    /// When the CRT was last swept for idle entries.
    swept_at: Option<Instant>,
}

/// How often idle CRT entries are swept and silent nodes marked down.
pub const SWEEP_EVERY: Duration = Duration::from_secs(1);

impl Distributor {
    /// A gateway with no DVIPA yet.
    pub fn new(cfg: DistributorConfig) -> Self {
        Distributor {
            id: cfg.id,
            cluster: ClusterEndpoint::new(cfg.key, cfg.id, cfg.first_seq),
            links: LinkTable::new(),
            dvipas: Vec::new(),
            guard: AnnounceGuard::default(),
            dpt: Dpt::new(),
            crt: Crt::with_capacity(cfg.crt_capacity, cfg.crt_max),
            timeouts: cfg.timeouts,
            node_timeout: cfg.node_timeout,
            last_heard: HashMap::new(),
            outbox: VecDeque::new(),
            counters: Counters::default(),
            swept_at: None,
        }
    }

    /// This gateway's id.
    pub fn id(&self) -> NodeId {
        self.id
    }

    /// Bind a GRE link to a target at `remote` (the target is also entered in
    /// the cluster node map, on that link at that address).
    pub fn bind_link(&mut self, link: LinkId, node: NodeId, remote: IpAddr) {
        self.links.bind(link, node, remote);
        self.dpt.set_link_up(node, true);
        if self
            .cluster
            .nodes()
            .get(node)
            .is_none_or(|n| n.role == Role::Target)
        {
            self.cluster.nodes_mut().insert(Node {
                id: node,
                role: Role::Target,
                name: String::new(),
                address: remote,
                link,
            });
        }
    }

    /// Add a cluster node from policy: a target (its GRE link is bound too) or
    /// another gateway (known for takeover and its cluster messages).
    pub fn add_node(&mut self, node: Node) {
        if node.role == Role::Target {
            self.links.bind(node.link, node.id, node.address);
            self.dpt.set_link_up(node.id, true);
        }
        self.cluster.nodes_mut().insert(node);
    }

    /// The cluster nodes this gateway knows (targets and other gateways).
    pub fn nodes(&self) -> &NodeMap {
        self.cluster.nodes()
    }

    /// The link table (the daemon maps outer sources to links with it).
    pub fn links(&self) -> &LinkTable {
        &self.links
    }

    /// Mark a node's link up or down (interface events, keepalive loss).
    pub fn set_link_up(&mut self, node: NodeId, up: bool) {
        self.links.set_up(node, up);
        self.dpt.set_link_up(node, up);
    }

    /// Add or replace a DVIPA from local policy. If this gateway is its routing
    /// gateway, the DVIPA list is queued for broadcast (flow 1, figure 10).
    pub fn configure_dvipa(&mut self, cfg: DvipaConfig) {
        self.guard.configure(&cfg);
        self.dpt.apply_config(&cfg);
        let routing = cfg.routing_gateway == self.id;
        self.upsert(cfg, routing, None);
        if routing {
            self.announce();
        }
    }

    fn upsert(&mut self, cfg: DvipaConfig, routing: bool, epoch: Option<u64>) {
        match self.dvipas.iter_mut().find(|d| d.cfg.dvipa == cfg.dvipa) {
            Some(d) => {
                d.cfg = cfg;
                d.routing = routing;
                d.epoch = epoch.unwrap_or(d.epoch);
            }
            None => self.dvipas.push(DvipaState {
                cfg,
                routing,
                epoch: epoch.unwrap_or(1),
            }),
        }
    }

    /// The DVIPAs this gateway routes, as announced: with their epochs.
    fn routed_list(&self) -> Vec<Announcement> {
        self.dvipas
            .iter()
            .filter(|d| d.routing)
            .map(|d| Announcement {
                cfg: d.cfg.clone(),
                epoch: d.epoch,
            })
            .collect()
    }

    /// The ownership epoch known for `dvipa` (this gateway's if it routes it).
    pub fn epoch(&self, dvipa: IpAddr) -> Option<u64> {
        self.dvipas
            .iter()
            .find(|d| d.cfg.dvipa == dvipa)
            .map(|d| d.epoch)
    }

    /// Queue a broadcast of the DVIPA list (the DVIPAs this gateway routes).
    pub fn announce(&mut self) {
        let list = self.routed_list();
        self.send(Destination::Broadcast, &Message::DvipaList(list));
    }

    /// Become the routing gateway of `dvipa` (known from policy or from another
    /// gateway's DVIPA list): announce it, and ask targets for their existing
    /// connections (flow 6, figure 14). Targets answer with SRVSTAT and NEWCONN,
    /// which rebuild DPT and CRT. The ownership epoch becomes the one known
    /// plus one (a gateway that the shared store gives an epoch uses
    /// [`Distributor::take_over_at`]). Returns false if `dvipa` is unknown.
    pub fn take_over(&mut self, dvipa: IpAddr) -> bool {
        match self.epoch(dvipa) {
            Some(e) => self.take_over_at(dvipa, e.saturating_add(1)),
            None => false,
        }
    }

    /// [`Distributor::take_over`] with the ownership epoch `epoch` (from the
    /// shared store's compare-and-swap): targets follow it if it is above the
    /// one they know. Returns false if `dvipa` is unknown.
    pub fn take_over_at(&mut self, dvipa: IpAddr, epoch: u64) -> bool {
        let id = self.id;
        let Some(d) = self.dvipas.iter_mut().find(|d| d.cfg.dvipa == dvipa) else {
            return false;
        };
        d.cfg.routing_gateway = id;
        d.routing = true;
        d.epoch = epoch;
        self.announce();
        self.send(
            Destination::Broadcast,
            &Message::ConnQuery { dvipa: Some(dvipa) },
        );
        true
    }

    /// Stop routing `dvipa` (another gateway owns it now); returns false if it
    /// is unknown.
    pub fn release(&mut self, dvipa: IpAddr) -> bool {
        match self.dvipas.iter_mut().find(|d| d.cfg.dvipa == dvipa) {
            Some(d) => {
                d.routing = false;
                true
            }
            None => false,
        }
    }

    /// Set the weight of `target` for every port of `dvipa`; 0 drains it.
    pub fn set_weight(&mut self, dvipa: IpAddr, target: NodeId, weight: u16) {
        self.dpt.set_weight(dvipa, target, weight);
    }

    fn send(&mut self, to: Destination, msg: &Message) {
        let bytes = self.cluster.seal(msg);
        self.outbox.push_back(ClusterTransmit { to, bytes });
    }

    /// Next cluster message to send, if any.
    pub fn poll_transmit(&mut self) -> Option<ClusterTransmit> {
        self.outbox.pop_front()
    }

    #[inline]
    fn routed_dvipa(&self, addr: IpAddr) -> Option<&DvipaState> {
        self.dvipas
            .iter()
            .find(|d| d.routing && d.cfg.dvipa == addr)
    }

    #[inline]
    fn route_to(&mut self, target: NodeId, ipsec: bool) -> Route {
        match self.links.for_node(target) {
            Some((_, l)) => {
                self.counters.routed_in += 1;
                Route::ToTarget {
                    target,
                    remote: l.remote,
                    key: GreKey {
                        sender: self.id,
                        ipsec,
                    },
                }
            }
            None => self.drop_route(DropReason::NoLink),
        }
    }

    fn drop_route(&mut self, r: DropReason) -> Route {
        self.counters.drop(r);
        Route::Drop(r)
    }

    /// Decide where an inbound packet goes (figure 12). `packet` is a decrypted
    /// or plain IP packet; `via_ipsec` says it arrived under an IPsec SA.
    /// An initial TCP SYN (or a first UDP datagram) to a distributed port picks
    /// a target and adds a CRT entry; other packets follow the CRT; FIN and RST
    /// advance or end the entry. No allocation unless a CRT entry is added.
    pub fn route_inbound(&mut self, now: Instant, packet: &[u8], via_ipsec: bool) -> Route {
        match flow::parse(packet) {
            Ok(info) => self.route_info(now, packet, &info, via_ipsec, None),
            Err(_) => self.drop_route(DropReason::Malformed),
        }
    }

    /// [`Distributor::route_inbound`] for a packet whose 5-tuple the caller
    /// already parsed (the SA's selector check, RFC 4301 §5.2, parses it with
    /// [`plexgate_wire::ip::FiveTuple::parse`]): the addresses and protocol are
    /// taken from `tuple` instead of being read again; the transport header is
    /// still checked as [`flow::parse`] checks it, so the decision (and every
    /// drop) is the same as `route_inbound(now, packet, via_ipsec)`. `tuple`
    /// must be the 5-tuple of `packet`.
    #[inline]
    pub fn route_inbound_parsed(
        &mut self,
        now: Instant,
        packet: &[u8],
        tuple: &FiveTuple,
        via_ipsec: bool,
    ) -> Route {
        match flow::parse_with_tuple(packet, tuple) {
            Ok(info) => self.route_info(now, packet, &info, via_ipsec, None),
            Err(_) => self.drop_route(DropReason::Malformed),
        }
    }

    /// [`Distributor::route_inbound_parsed`] for one packet of a batch: `cache`
    /// remembers the last packet's connection, so that the next packet of the
    /// same connection, at the same `now`, skips the DVIPA, CRT and link lookups.
    ///
    /// The result, the counters and the CRT are exactly those of
    /// `route_inbound_parsed`: a packet takes the shortcut only when the slow
    /// path would change nothing but counting it — same flow key, same `now`
    /// and `via_ipsec` as the packet that filled the cache (which went through
    /// an existing CRT entry to a target), no SYN, FIN or RST, and the entry
    /// past its opening state; every other packet takes the slow path and
    /// empties the cache first. The cache must not outlive the batch: any other
    /// call on the distributor may change what it remembers (use a fresh
    /// [`InboundFlowCache`] per batch of received packets).
    #[inline]
    pub fn route_inbound_cached(
        &mut self,
        now: Instant,
        packet: &[u8],
        tuple: &FiveTuple,
        via_ipsec: bool,
        cache: &mut InboundFlowCache,
    ) -> Route {
        let info = match flow::parse_with_tuple(packet, tuple) {
            Ok(info) => info,
            Err(_) => {
                cache.last = None;
                return self.drop_route(DropReason::Malformed);
            }
        };
        self.route_info_cached(now, packet, &info, via_ipsec, cache)
    }

    /// The batch path's shortcut, for [`Distributor::route_inbound_cached`]
    /// without a 5-tuple from the caller (the SA's selector check of an IPv4
    /// packet keeps none). When the cache holds an IPv4 connection, the
    /// packet's headers are read straight into one integer key
    /// (`steady_v4_key`: IPv4, header lengths, first fragment, TCP data
    /// offset / UDP length — every check of [`flow::parse`] — and no SYN, FIN
    /// or RST); if it equals the cached one (same `now` and `via_ipsec`), the
    /// cached route is returned (counted as routed) without building a
    /// [`PacketInfo`] or a [`FlowKey`], by reference so that the caller reads it
    /// in place. Otherwise `None`, and nothing changes: call
    /// [`Distributor::route_inbound_uncached`]. Together the two give the same
    /// result, counters and CRT as [`Distributor::route_inbound`] per packet.
    #[inline(always)]
    pub fn cached_inbound<'c>(
        &mut self,
        now: Instant,
        packet: &[u8],
        via_ipsec: bool,
        cache: &'c InboundFlowCache,
    ) -> Option<&'c Route> {
        let c = cache.last.as_ref()?;
        let k = c.v4?;
        if c.now == now && c.via_ipsec == via_ipsec && steady_v4_key(packet) == Some(k) {
            self.counters.routed_in += 1;
            return Some(&c.route);
        }
        None
    }

    /// The rest of the batch path after [`Distributor::cached_inbound`] said
    /// no: [`flow::parse`] and the checks of `route_inbound_cached`; the
    /// packet's connection is remembered in `cache`.
    #[inline]
    pub fn route_inbound_uncached(
        &mut self,
        now: Instant,
        packet: &[u8],
        via_ipsec: bool,
        cache: &mut InboundFlowCache,
    ) -> Route {
        let info = match flow::parse(packet) {
            Ok(info) => info,
            Err(_) => {
                cache.last = None;
                return self.drop_route(DropReason::Malformed);
            }
        };
        self.route_info_cached(now, packet, &info, via_ipsec, cache)
    }

    /// The cache check of [`Distributor::route_inbound_cached`] on a parsed packet.
    #[inline]
    fn route_info_cached(
        &mut self,
        now: Instant,
        packet: &[u8],
        info: &PacketInfo,
        via_ipsec: bool,
        cache: &mut InboundFlowCache,
    ) -> Route {
        if let (Some(c), Some(ports)) = (&cache.last, info.ports) {
            if c.now == now
                && c.via_ipsec == via_ipsec
                && ports.flags.0 & (TcpFlags::SYN | TcpFlags::FIN | TcpFlags::RST) == 0
                && info.inbound_key() == Some(c.key)
            {
                self.counters.routed_in += 1;
                return c.route;
            }
        }
        cache.last = None;
        self.route_info(now, packet, info, via_ipsec, Some(cache))
    }

    #[inline]
    fn route_info(
        &mut self,
        now: Instant,
        packet: &[u8],
        info: &PacketInfo,
        via_ipsec: bool,
        cache: Option<&mut InboundFlowCache>,
    ) -> Route {
        let Some(d) = self.routed_dvipa(info.dst) else {
            self.counters.local += 1;
            return Route::Local;
        };
        let Some(ports) = info.ports else {
            if Proto::from_number(info.protocol).is_some() {
                return self.drop_route(DropReason::Fragment);
            }
            return self.route_icmp_error(packet, info, via_ipsec);
        };
        let distributed = d.cfg.ports.contains(ports.dst);
        let Some(key) = info.inbound_key() else {
            self.counters.local += 1;
            return Route::Local;
        };
        // The CRT first: a connection a target app opened (NEWCONN) or learnt on
        // takeover has the DVIPA side on a port that need not be distributed.
        // A new SYN on the 4-tuple of a connection that both sides closed is a new
        // connection (clients reuse ports; the target's TIME_WAIT accepts it):
        // it is distributed afresh, not pinned to the old target.
        if ports.flags.is_initial_syn()
            && self
                .crt
                .get(&key)
                .is_some_and(|e| e.state == ConnState::Closing)
        {
            self.remove_conn(&key);
        }
        if let Some(e) = self.crt.get_mut(&key) {
            if e.uses_ipsec && !via_ipsec {
                return self.drop_route(DropReason::IpsecMismatch);
            }
            if via_ipsec && !e.uses_ipsec && e.origin == Origin::OpenedByTarget {
                e.uses_ipsec = true;
            }
            let (target, ipsec) = (e.target, e.uses_ipsec);
            let closes = e.on_packet(ports.flags, true, now);
            // The next packet of this connection would find the entry as it is
            // now and change nothing but its last_seen (already `now`): it may
            // take the shortcut of `route_inbound_cached`.
            let steady = !closes
                && e.state != ConnState::Opening
                && ports.flags.0 & (TcpFlags::SYN | TcpFlags::FIN | TcpFlags::RST) == 0;
            if closes {
                self.remove_conn(&key);
            }
            let route = self.route_to(target, ipsec);
            if let (Some(c), true, Route::ToTarget { .. }) = (cache, steady, route) {
                c.last = Some(CachedFlow {
                    key,
                    v4: v4_key(&key),
                    now,
                    via_ipsec,
                    route,
                });
            }
            return route;
        }
        if !distributed {
            self.counters.local += 1;
            return Route::Local;
        }
        let initial = match key.proto {
            Proto::Tcp => ports.flags.is_initial_syn(),
            Proto::Udp => true,
        };
        if !initial {
            return self.drop_route(DropReason::NoConnection);
        }
        let target = match self.dpt.get_mut(key.dvipa, key.dvipa_port) {
            Some(row) => row.select(),
            None => None,
        };
        let Some(target) = target else {
            return self.drop_route(DropReason::NoListener);
        };
        let e = CrtEntry::new(target, key.proto, via_ipsec, Origin::Selected, now);
        match self.crt.insert_new(key, e) {
            Ok(evicted) => {
                if let Some((k, old)) = evicted {
                    if let Some(row) = self.dpt.get_mut(k.dvipa, k.dvipa_port) {
                        row.closed(old.target);
                    }
                    self.counters.conns_evicted += 1;
                }
                self.counters.conns_opened += 1;
                if let Some(row) = self.dpt.get_mut(key.dvipa, key.dvipa_port) {
                    row.opened(target);
                }
            }
            Err(_) => return self.drop_route(DropReason::CrtFull),
        }
        self.route_to(target, via_ipsec)
    }

    /// ICMP errors about a distributed connection (fragmentation needed,
    /// packet too big, unreachable) go to the target that owns it, so its
    /// path MTU discovery works; other ICMP to the DVIPA is local.
    fn route_icmp_error(&mut self, packet: &[u8], info: &PacketInfo, via_ipsec: bool) -> Route {
        let Some(key) = flow::icmp_error_flow(packet, info) else {
            self.counters.local += 1;
            return Route::Local;
        };
        match self.crt.get(&key) {
            Some(e) if e.uses_ipsec && !via_ipsec => self.drop_route(DropReason::IpsecMismatch),
            Some(e) => {
                let (target, ipsec) = (e.target, e.uses_ipsec);
                self.route_to(target, ipsec)
            }
            None => {
                self.counters.local += 1;
                Route::Local
            }
        }
    }

    fn add_conn(&mut self, key: FlowKey, e: CrtEntry) {
        let target = e.target;
        if let Some(old) = self.crt.insert(key, e) {
            if let Some(row) = self.dpt.get_mut(key.dvipa, key.dvipa_port) {
                row.closed(old.target);
            }
        } else {
            self.counters.conns_opened += 1;
        }
        if let Some(row) = self.dpt.get_mut(key.dvipa, key.dvipa_port) {
            row.opened(target);
        }
    }

    fn remove_conn(&mut self, key: &FlowKey) -> Option<CrtEntry> {
        let e = self.crt.remove(key)?;
        if let Some(row) = self.dpt.get_mut(key.dvipa, key.dvipa_port) {
            row.closed(e.target);
        }
        self.counters.conns_closed += 1;
        Some(e)
    }

    /// Check and unwrap a GRE packet (the payload of IP protocol 47) that
    /// arrived on `link` from `outer_src` (figure 13): anti-spoof, then
    /// [`Distributor::route_outbound`] on the inner packet.
    pub fn receive_gre<'a>(
        &mut self,
        now: Instant,
        link: LinkId,
        outer_src: IpAddr,
        gre_packet: &'a [u8],
    ) -> FromTarget<'a> {
        let (key, off) = match gre::decapsulate(gre_packet) {
            Ok(k) => k,
            Err(_) => {
                self.counters.drop(DropReason::Malformed);
                return FromTarget::Drop(DropReason::Malformed);
            }
        };
        if !self.links.check(link, outer_src, key) {
            self.counters.drop(DropReason::Spoof);
            return FromTarget::Drop(DropReason::Spoof);
        }
        let inner = &gre_packet[off..];
        match self.route_outbound(now, key.sender, inner) {
            Outbound::ToClient {
                uses_ipsec,
                new_connection,
            } => FromTarget::ToClient {
                inner,
                target: key.sender,
                uses_ipsec,
                new_connection,
            },
            Outbound::Drop(r) => FromTarget::Drop(r),
        }
    }

    /// Account for a reply (or a target-opened connection's packet) that
    /// `from` sent: the source must be a DVIPA this gateway routes; the CRT
    /// entry is updated (FIN/RST) or, for a packet of an unknown connection
    /// other than RST, learnt (a target app opened it, or it existed before
    /// this gateway took over). A reply for a connection another target owns
    /// is a spoof.
    pub fn route_outbound(&mut self, now: Instant, from: NodeId, inner: &[u8]) -> Outbound {
        let info = match flow::parse(inner) {
            Ok(i) => i,
            Err(_) => return self.drop_out(DropReason::Malformed),
        };
        if self.routed_dvipa(info.src).is_none() {
            return self.drop_out(DropReason::NotDvipa);
        }
        let Some(key) = info.outbound_key() else {
            // ICMP and friends from a DVIPA: pass to the SPD, no CRT state.
            self.counters.routed_out += 1;
            return Outbound::ToClient {
                uses_ipsec: false,
                new_connection: false,
            };
        };
        let flags = info.tcp_flags();
        if let Some(e) = self.crt.get_mut(&key) {
            if e.target != from {
                return self.drop_out(DropReason::Spoof);
            }
            let uses_ipsec = e.uses_ipsec;
            if e.on_packet(flags, false, now) {
                self.remove_conn(&key);
            }
            self.counters.routed_out += 1;
            return Outbound::ToClient {
                uses_ipsec,
                new_connection: false,
            };
        }
        if flags.has(TcpFlags::RST) {
            return self.drop_out(DropReason::NoConnection);
        }
        let origin = if key.proto == Proto::Udp || flags.is_initial_syn() {
            Origin::OpenedByTarget
        } else {
            Origin::Existing
        };
        self.add_conn(key, CrtEntry::new(from, key.proto, false, origin, now));
        self.counters.routed_out += 1;
        Outbound::ToClient {
            uses_ipsec: false,
            new_connection: true,
        }
    }

    fn drop_out(&mut self, r: DropReason) -> Outbound {
        self.counters.drop(r);
        Outbound::Drop(r)
    }

    /// Authenticate and apply one cluster message. Refused messages are counted
    /// (AuthFailed, Replayed, Malformed) and returned as errors.
    /// No arrival check: for in-memory harnesses; the daemon uses
    /// [`Distributor::handle_cluster_from`].
    pub fn handle_cluster(&mut self, now: Instant, bytes: &[u8]) -> Result<(), ClusterError> {
        self.receive_cluster(now, None, bytes)
    }

    /// [`Distributor::handle_cluster`] for a message that arrived as `from`: it
    /// must come from its sender's address on its sender's link (node map),
    /// else it is refused and counted `misrouted`.
    pub fn handle_cluster_from(
        &mut self,
        now: Instant,
        from: Arrival,
        bytes: &[u8],
    ) -> Result<(), ClusterError> {
        self.receive_cluster(now, Some(from), bytes)
    }

    fn receive_cluster(
        &mut self,
        now: Instant,
        from: Option<Arrival>,
        bytes: &[u8],
    ) -> Result<(), ClusterError> {
        let r = self.cluster.receive(Some(now), from, bytes);
        while let Some(tx) = self.cluster.poll_control() {
            self.outbox.push_back(tx);
        }
        let r = match r {
            Ok((sender, msg)) => {
                self.accept(now, sender, msg);
                Ok(())
            }
            Err(e) => {
                self.counters.drop(cluster_drop_reason(&e));
                Err(e)
            }
        };
        while let Some((sender, msg)) = self.cluster.poll_released() {
            self.accept(now, sender, msg);
        }
        r
    }

    fn accept(&mut self, now: Instant, sender: NodeId, msg: Message) {
        self.counters.cluster_accepted += 1;
        self.last_heard.insert(sender, now);
        self.apply(now, sender, msg);
    }

    fn apply(&mut self, now: Instant, sender: NodeId, msg: Message) {
        match msg {
            Message::Hello { role, link_up } => {
                self.set_link_up(sender, link_up);
                if role == Role::Target && self.dvipas.iter().any(|d| d.routing) {
                    let list = self.routed_list();
                    self.send(Destination::Node(sender), &Message::DvipaList(list));
                }
            }
            Message::Keepalive { link_up } => self.set_link_up(sender, link_up),
            Message::DvipaList(list) => {
                for a in list {
                    // Only a DVIPA's routing gateway announces it, and only a
                    // gateway the policy (or the first list) names for it.
                    if self.guard.admit(sender, &a.cfg) {
                        self.apply_peer_dvipa(a);
                    } else {
                        self.counters.drop(DropReason::NotCandidate);
                    }
                }
            }
            Message::SrvStat {
                target,
                dvipa,
                port,
                listening,
            } => self.apply_srvstat(sender, target, dvipa, port, listening),
            Message::NewConn {
                target,
                conn,
                kind,
                uses_ipsec,
            } => {
                if target != sender || self.routed_dvipa(conn.dvipa).is_none() {
                    self.counters.drop(DropReason::NotCandidate);
                    return;
                }
                let origin = match kind {
                    NewConnKind::Opened => Origin::OpenedByTarget,
                    NewConnKind::Existing => Origin::Existing,
                };
                let keep = self.crt.get(&conn).map(|e| e.target == target);
                match keep {
                    Some(true) => {
                        if let Some(e) = self.crt.get_mut(&conn) {
                            e.uses_ipsec |= uses_ipsec;
                            e.last_seen = now;
                        }
                    }
                    _ => self.add_conn(
                        conn,
                        CrtEntry::new(target, conn.proto, uses_ipsec, origin, now),
                    ),
                }
            }
            Message::ConnEnd { target, conn } => {
                if self
                    .crt
                    .get(&conn)
                    .is_some_and(|e| e.target == target && target == sender)
                {
                    self.remove_conn(&conn);
                }
            }
            // Challenges are the endpoint's business.
            Message::ConnQuery { .. }
            | Message::Challenge { .. }
            | Message::ChallengeAck { .. } => {}
        }
    }

    /// Another gateway's DVIPA list: remember it (for takeover); if it now
    /// routes a DVIPA this gateway was routing, hand the connections over
    /// (takeback, flow 7: NEWCONN for each, then forget them). Only a higher
    /// epoch takes a DVIPA from this gateway, and none below the one known
    /// changes anything (counted `stale_epoch`).
    fn apply_peer_dvipa(&mut self, a: Announcement) {
        let Announcement { cfg, epoch } = a;
        let dvipa = cfg.dvipa;
        let was_routing = self.routed_dvipa(dvipa).is_some();
        if self
            .epoch(dvipa)
            .is_some_and(|e| epoch < e || (epoch == e && was_routing))
        {
            self.counters.drop(DropReason::StaleEpoch);
            return;
        }
        let routing = cfg.routing_gateway == self.id;
        let new_gw = cfg.routing_gateway;
        self.upsert(cfg, routing, Some(epoch));
        if was_routing && !routing {
            let conns: Vec<(FlowKey, CrtEntry)> = self
                .crt
                .iter()
                .filter(|(k, _)| k.dvipa == dvipa)
                .map(|(k, e)| (k, *e))
                .collect();
            for (k, e) in conns {
                let m = Message::NewConn {
                    target: e.target,
                    conn: k,
                    kind: NewConnKind::Existing,
                    uses_ipsec: e.uses_ipsec,
                };
                self.send(Destination::Node(new_gw), &m);
                self.remove_conn(&k);
            }
            self.dpt.remove_dvipa(dvipa);
        }
    }

    fn apply_srvstat(
        &mut self,
        sender: NodeId,
        target: NodeId,
        dvipa: IpAddr,
        port: u16,
        listening: bool,
    ) {
        let Some(d) = self.routed_dvipa(dvipa) else {
            self.counters.drop(DropReason::NotDvipa);
            return;
        };
        let weight = d.cfg.targets.weight_of(target);
        let (alg, ports_ok) = (d.cfg.algorithm, d.cfg.ports.contains(port));
        match weight {
            Some(w) if target == sender && ports_ok => {
                let up = self.links.is_up(target);
                let init = NewTarget {
                    weight: w,
                    link_up: up,
                    algorithm: alg,
                };
                self.dpt.set_listening(dvipa, port, target, listening, init);
            }
            _ => self.counters.drop(DropReason::NotCandidate),
        }
    }

    /// When [`Distributor::handle_timeout`] must run next: [`SWEEP_EVERY`]
    /// after the last sweep (`None` before the first one: run it at once).
    pub fn next_timeout(&self) -> Option<Instant> {
        self.swept_at.map(|t| t + SWEEP_EVERY)
    }

    /// Expire idle CRT entries and mark silent nodes down; does the sweep when
    /// it is due ([`Distributor::next_timeout`]). Returns the number of CRT
    /// entries removed.
    pub fn handle_timeout(&mut self, now: Instant) -> usize {
        if self.swept_at.is_some_and(|t| now < t + SWEEP_EVERY) {
            return 0;
        }
        self.swept_at = Some(now);
        let mut gone: Vec<(FlowKey, NodeId)> = Vec::new();
        self.crt
            .expire(now, &self.timeouts, |k, e| gone.push((*k, e.target)));
        for (k, t) in &gone {
            if let Some(row) = self.dpt.get_mut(k.dvipa, k.dvipa_port) {
                row.closed(*t);
            }
        }
        self.counters.conns_closed += gone.len() as u64;
        let silent: Vec<NodeId> = self
            .last_heard
            .iter()
            .filter(|(_, t)| now.saturating_duration_since(**t) >= self.node_timeout)
            .map(|(n, _)| *n)
            .collect();
        for n in silent {
            self.last_heard.remove(&n);
            self.set_link_up(n, false);
        }
        gone.len()
    }

    /// The CRT (read-only).
    pub fn crt(&self) -> &Crt {
        &self.crt
    }

    /// The DPT (read-only).
    pub fn dpt(&self) -> &Dpt {
        &self.dpt
    }

    /// The DVIPAs known, with whether this gateway routes each.
    pub fn dvipas(&self) -> impl Iterator<Item = (&DvipaConfig, bool)> {
        self.dvipas.iter().map(|d| (&d.cfg, d.routing))
    }

    /// Live counters.
    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// Counters, CRT size and connections per target.
    pub fn snapshot(&self) -> Snapshot {
        let mut per: BTreeMap<NodeId, u64> = BTreeMap::new();
        for (_, l) in self.links.iter() {
            per.entry(l.node).or_insert(0);
        }
        for (_, e) in self.crt.iter() {
            *per.entry(e.target).or_insert(0) += 1;
        }
        let targets = per
            .into_iter()
            .map(|(node, connections)| TargetStat {
                node,
                connections,
                link_up: self.links.is_up(node),
            })
            .collect();
        Snapshot::from_counters(&self.counters, self.crt.len() as u64, targets)
    }
}

/// The counter a refused cluster message goes to.
pub(crate) fn cluster_drop_reason(e: &ClusterError) -> DropReason {
    match e {
        ClusterError::AuthFailed => DropReason::AuthFailed,
        ClusterError::Replayed { .. } => DropReason::Replayed,
        ClusterError::Misrouted { .. } => DropReason::Misrouted,
        ClusterError::Unsynced { .. } => DropReason::Unsynced,
        _ => DropReason::Malformed,
    }
}

/// A flow key with IPv4 addresses packed into one integer: client address,
/// DVIPA, client port, DVIPA port, protocol number. `None` for IPv6.
#[inline]
fn v4_key(k: &FlowKey) -> Option<u128> {
    match (k.client, k.dvipa) {
        (IpAddr::V4(c), IpAddr::V4(d)) => Some(pack_v4(
            u32::from(c),
            u32::from(d),
            k.client_port,
            k.dvipa_port,
            match k.proto {
                Proto::Tcp => flow::IPPROTO_TCP,
                Proto::Udp => flow::IPPROTO_UDP,
            },
        )),
        _ => None,
    }
}

#[inline(always)]
fn pack_v4(client: u32, dvipa: u32, client_port: u16, dvipa_port: u16, protocol: u8) -> u128 {
    (u128::from(client) << 96)
        | (u128::from(dvipa) << 64)
        | (u128::from(client_port) << 48)
        | (u128::from(dvipa_port) << 32)
        | u128::from(protocol)
}

/// The packed inbound key ([`v4_key`] of `flow::parse(packet)?.inbound_key()`)
/// of a packet that [`flow::parse`] accepts and that could take the shortcut of
/// [`Distributor::route_inbound_cached`]: IPv4, first fragment, TCP without
/// SYN, FIN or RST, or UDP. `None` otherwise (the caller takes the full path).
#[inline]
fn steady_v4_key(p: &[u8]) -> Option<u128> {
    if p.len() < 20 || p[0] >> 4 != 4 {
        return None;
    }
    let ihl = usize::from(p[0] & 0x0f) * 4;
    let total = usize::from(u16::from_be_bytes([p[2], p[3]]));
    if ihl < 20 || total < ihl || p.len() < total {
        return None;
    }
    if u16::from_be_bytes([p[6], p[7]]) & 0x1fff != 0 {
        return None;
    }
    let protocol = p[9];
    let l4 = &p[ihl..total];
    match protocol {
        flow::IPPROTO_TCP => {
            if l4.len() < 20 {
                return None;
            }
            let doff = usize::from(l4[12] >> 4) * 4;
            if doff < 20
                || l4.len() < doff
                || l4[13] & (TcpFlags::SYN | TcpFlags::FIN | TcpFlags::RST) != 0
            {
                return None;
            }
        }
        flow::IPPROTO_UDP => {
            if l4.len() < 8 {
                return None;
            }
        }
        _ => return None,
    }
    Some(pack_v4(
        u32::from_be_bytes([p[12], p[13], p[14], p[15]]),
        u32::from_be_bytes([p[16], p[17], p[18], p[19]]),
        u16::from_be_bytes([l4[0], l4[1]]),
        u16::from_be_bytes([l4[2], l4[3]]),
        protocol,
    ))
}

#[cfg(test)]
mod steady_key_tests {
    use super::*;

    /// `steady_v4_key` is `Some` exactly for IPv4 TCP/UDP first fragments that
    /// `flow::parse` accepts, without SYN, FIN or RST, and then equals the
    /// packed `inbound_key`.
    #[test]
    fn steady_v4_key_agrees_with_flow_parse() {
        let mut rng = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng
        };
        let mk = |udp: bool, flags: u8| {
            let mut v = Vec::new();
            let b = etherparse::PacketBuilder::ipv4([192, 168, 1, 2], [10, 0, 0, 10], 64);
            if udp {
                b.udp(5000, 53).write(&mut v, &[1u8; 24]).unwrap();
            } else {
                let mut t = b.tcp(40000, 80, 1, 100);
                if flags & TcpFlags::SYN != 0 {
                    t = t.syn();
                }
                if flags & TcpFlags::FIN != 0 {
                    t = t.fin();
                }
                if flags & TcpFlags::RST != 0 {
                    t = t.rst();
                }
                t.ack(1).write(&mut v, &[1u8; 24]).unwrap();
            }
            v
        };
        let bases = [
            mk(true, 0),
            mk(false, 0),
            mk(false, TcpFlags::SYN),
            mk(false, TcpFlags::FIN),
            mk(false, TcpFlags::RST),
        ];
        let mut hits = 0;
        for i in 0..300_000 {
            let mut p = bases[i % bases.len()].clone();
            for _ in 0..(next() % 4) {
                let at = (next() as usize) % 40;
                p[at] = next() as u8;
            }
            if next() % 4 == 0 {
                p.truncate((next() as usize) % (p.len() + 1));
            }
            let want = flow::parse(&p).ok().and_then(|info| {
                let ports = info.ports?;
                if ports.flags.0 & (TcpFlags::SYN | TcpFlags::FIN | TcpFlags::RST) != 0 {
                    return None;
                }
                v4_key(&info.inbound_key()?)
            });
            assert_eq!(steady_v4_key(&p), want, "{p:02x?}");
            hits += usize::from(want.is_some());
        }
        assert!(hits > 10_000, "{hits}");
    }
}
