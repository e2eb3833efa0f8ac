//! `GatewayCore`: the sans-IO heart of a routing gateway.
//!
//! It owns the IKE endpoint, the SAD and SPD, and the distributor (DPT, CRT, links),
//! and it turns inputs — a UDP datagram on 500/4500, a raw ESP packet, a GRE packet
//! from a link, a packet the kernel routed into the TUN, a cluster message, the
//! passing of time — into outputs written to a [`Sink`]. Time is passed in. Nothing
//! here opens a socket, so the tests drive a whole gateway in memory.
//!
//! Packets are handled in place: the caller's buffer holds the packet at
//! `buf[start..start + len]` with [`HEADROOM`] bytes free before it and room after
//! it, so that decryption, GRE encapsulation and ESP sealing need no copy.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use plexgate_distrib as distrib;
use plexgate_ike as ike;
use plexgate_ipsec as ipsec;
use plexgate_policy as policy;
use plexgate_wire::udp_encap::{self, UdpEncap};
use serde_json::{json, Value};

use super::config;

/// Bytes kept free in front of a packet for headers written in place
/// (ESP header + IV ≤ 24, GRE 8, IPv4 20).
pub const HEADROOM: usize = 64;

/// Where the core's outputs go. The daemon implements it with sockets and the TUN
/// device; tests record what was sent.
pub trait Sink {
    /// A UDP datagram (IKE with or without the non-ESP marker, ESP-in-UDP, keepalive).
    fn udp(&mut self, local: SocketAddr, remote: SocketAddr, data: &[u8]);
    /// A raw ESP packet (IP protocol 50) to `remote`.
    fn esp(&mut self, local: IpAddr, remote: IpAddr, data: &[u8]);
    /// A GRE packet (IP protocol 47 payload) to a target's link address.
    fn gre(&mut self, remote: IpAddr, data: &[u8]);
    /// An IP packet for the gateway's own stack (the TUN device).
    fn tun(&mut self, packet: &[u8]);
    /// A cluster control message.
    fn cluster(&mut self, to: distrib::Destination, data: &[u8]);
}

/// One received packet of a batch: the packet (a UDP payload for
/// [`GatewayCore::on_udp_batch`], an ESP packet from its SPI on for
/// [`GatewayCore::on_esp_batch`]) is at `buf[start..start + len]`, with room
/// before it as for [`GatewayCore::on_udp`].
pub struct RxPacket<'a> {
    /// The whole receive buffer.
    pub buf: &'a mut [u8],
    /// Where the packet starts in `buf`.
    pub start: usize,
    /// Its length.
    pub len: usize,
    /// The sender (UDP); `None` skips the packet in `on_udp_batch`.
    pub remote: Option<SocketAddr>,
}

/// A batch of received packets (one `recvmmsg`), handed to the core in one call.
/// The core asks for each packet once, in order; `None` skips a slot.
pub trait RxBatch {
    /// Number of slots.
    fn count(&self) -> usize;
    /// Slot `i` (`i < count()`).
    fn packet(&mut self, i: usize) -> Option<RxPacket<'_>>;
}

/// What the runtime must persist or log (drained with [`GatewayCore::drain_side_effects`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SideEffect {
    /// Write a recovery record.
    PutRecord(String, Vec<u8>),
    /// Remove a recovery record.
    DeleteRecord(String),
    /// Append a line to the Wireshark `esp_sa` key log.
    KeyLog(String),
}

/// Drops counted by the core itself (the crates count their own).
#[derive(Debug, Default, Clone, Copy, serde::Serialize)]
pub struct CoreCounters {
    /// UDP payloads that were neither IKE, ESP nor a keepalive.
    pub udp_malformed: u64,
    /// NAT keepalives received.
    pub natt_keepalives: u64,
    /// Plain packets for a DVIPA refused by `plain_traffic = "drop"` or the inbound SPD.
    pub drop_policy_in: u64,
    /// Outbound packets that matched DISCARD or no SPD rule.
    pub drop_policy_out: u64,
    /// Outbound packets with a PROTECT rule but no SA yet (an acquire was started).
    pub drop_no_sa: u64,
    /// Outbound packets bigger than the buffer allows.
    pub drop_too_big: u64,
    /// Packets for a DVIPA port (or protocol) that is not distributed.
    pub drop_dvipa_not_distributed: u64,
    /// IKE SAs the gateway started because traffic needed one (acquires).
    pub acquires: u64,
    /// IPv6 link-scope packets the local kernel sent into the TUN (router
    /// solicitations, MLD): never tunnel traffic (RFC 4291 §2.5.6), ignored.
    pub tun_link_local: u64,
}

/// Per-child settings that the IKE engine does not carry.
#[derive(Debug, Clone)]
struct ChildPolicy {
    replay_window: u32,
    lifetime: ipsec::Lifetime,
}

/// Which outbound SA carries a packet to a given inner destination.
#[derive(Debug, Default)]
struct OutboundIndex {
    hosts: HashMap<IpAddr, u32>,
    ranges: Vec<(ipsec::TrafficSelector, u32)>,
}

impl OutboundIndex {
    fn insert(&mut self, ts: &[ipsec::TrafficSelector], spi: u32) {
        for t in ts {
            if t.start_addr == t.end_addr {
                self.hosts.insert(t.start_addr, spi);
            } else {
                self.ranges.push((*t, spi));
            }
        }
    }

    fn remove(&mut self, spi: u32) {
        self.hosts.retain(|_, s| *s != spi);
        self.ranges.retain(|(_, s)| *s != spi);
    }

    #[inline]
    fn lookup(&self, dst: IpAddr) -> Option<u32> {
        if let Some(s) = self.hosts.get(&dst) {
            return Some(*s);
        }
        self.ranges
            .iter()
            .rev()
            .find(|(t, _)| t.contains_addr(dst))
            .map(|(_, s)| *s)
    }
}

/// The gateway's protocol state.
pub struct GatewayCore {
    ike: ike::Endpoint,
    sad: ipsec::Sad,
    spd: ipsec::Spd,
    dist: distrib::Distributor,
    children: HashMap<(String, String), ChildPolicy>,
    out_index: OutboundIndex,
    /// outbound SPI → inbound SPI of the same Child SA (rekeys are asked by spi_in).
    pair_of_out: HashMap<u32, u32>,
    /// Acquires under way or recently failed: no new one before the instant.
    acquiring: HashMap<(String, String), Instant>,
    ike_records: HashMap<ike::IkeSaId, String>,
    keylog: bool,
    local_addrs: Vec<IpAddr>,
    natt_port: u16,
    counters: CoreCounters,
    side: Vec<SideEffect>,
    scratch: Vec<u8>,
    site: String,
    /// Route refcounts: CIDR of a peer's selector → number of Child SAs using it.
    routes: HashMap<String, usize>,
    route_changes: Vec<(bool, String)>,
    /// DVIPAs whose plain (non-IPsec) traffic is dropped.
    plain_drop: Vec<IpAddr>,
    /// Target names by cluster node id (for status).
    target_names: HashMap<u32, String>,
}

impl GatewayCore {
    /// Build the core from a checked site policy.
    pub fn new(
        p: &policy::Policy,
        rng: Box<dyn ike::Rng>,
    ) -> Result<GatewayCore, config::ConfigError> {
        let ike_cfg = config::ike_config(p)?;
        let mut children = HashMap::new();
        for peer in &p.peers {
            for c in &peer.children {
                let l = &c.lifetime;
                let lifetime = ipsec::Lifetime {
                    soft: ipsec::Limits {
                        bytes: l.rekey_bytes,
                        packets: l.rekey_packets,
                        seconds: None,
                    },
                    hard: ipsec::Limits {
                        bytes: l.life_bytes,
                        packets: l.life_packets,
                        seconds: Some(l.life_time.as_secs().max(1)),
                    },
                };
                children.insert(
                    (peer.name.clone(), c.name.clone()),
                    ChildPolicy {
                        replay_window: c.replay_window,
                        lifetime,
                    },
                );
            }
        }
        let key = match &p.cluster {
            Some(c) => std::fs::read(&c.key_file).map_err(|err| config::ConfigError::KeyFile {
                path: c.key_file.display().to_string(),
                err,
            })?,
            None => b"plexgate-no-cluster".to_vec(),
        };
        let first_seq = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_micros() as u64)
            .unwrap_or(1);
        let mut dist = distrib::Distributor::new(distrib::DistributorConfig::new(
            config::gateway_node(p),
            distrib::ClusterKey::new(&key),
            first_seq,
        ));
        for (i, t) in p.targets.iter().enumerate() {
            if let Some(node) = config::target_node(p, &t.name) {
                dist.bind_link(distrib::LinkId(i as u32), node, t.address);
            }
        }
        for d in config::dvipas(p) {
            dist.configure_dvipa(d);
        }
        let mut local_addrs = p.site.gateway_vipas.clone();
        local_addrs.extend(p.links.iter().map(|l| l.local));
        Ok(GatewayCore {
            ike: ike::Endpoint::new(Arc::new(ike_cfg), rng),
            sad: ipsec::Sad::new(),
            spd: config::spd(p),
            dist,
            children,
            out_index: OutboundIndex::default(),
            pair_of_out: HashMap::new(),
            acquiring: HashMap::new(),
            ike_records: HashMap::new(),
            keylog: p.log.keylog.is_some(),
            local_addrs,
            natt_port: p.site.natt_port,
            counters: CoreCounters::default(),
            side: Vec::new(),
            scratch: vec![0u8; 65536 + 2 * HEADROOM],
            site: p.site.name.clone(),
            routes: HashMap::new(),
            route_changes: Vec::new(),
            plain_drop: p
                .dvipas
                .iter()
                .filter(|d| d.plain_traffic == policy::PlainTraffic::Drop)
                .map(|d| d.address)
                .collect(),
            target_names: p
                .targets
                .iter()
                .filter_map(|t| config::target_node(p, &t.name).map(|n| (n.0, t.name.clone())))
                .collect(),
        })
    }

    /// The link index of a target's address (for binding GRE sockets to links).
    pub fn link_of(&self, remote: IpAddr) -> Option<distrib::LinkId> {
        self.dist.links().by_remote(remote)
    }

    /// A UDP datagram arrived on `local` from `remote`; the payload is at
    /// `buf[start..start + len]`.
    #[allow(clippy::too_many_arguments)] // in-place API: buffer, offset and length travel together
    pub fn on_udp(
        &mut self,
        now: Instant,
        local: SocketAddr,
        remote: SocketAddr,
        buf: &mut [u8],
        start: usize,
        len: usize,
        sink: &mut dyn Sink,
    ) {
        self.udp_in(now, local, remote, buf, start, len, None, sink);
    }

    /// An ESP packet (from its SPI on) is at `buf[start..start + len]`.
    pub fn on_esp(
        &mut self,
        now: Instant,
        buf: &mut [u8],
        start: usize,
        len: usize,
        sink: &mut dyn Sink,
    ) {
        self.esp_in(now, buf, start, len, None, sink);
    }

    /// A batch of ESP packets (raw IP protocol 50, each from its SPI on), all
    /// received at `now`. Decides exactly as [`GatewayCore::on_esp`] on each
    /// packet in turn (same outputs in the same order, same counters and state),
    /// but a packet of the same connection as the one before it skips the
    /// distributor's lookups (see [`distrib::Distributor::route_inbound_cached`]).
    pub fn on_esp_batch(&mut self, now: Instant, batch: &mut impl RxBatch, sink: &mut dyn Sink) {
        let mut cache = distrib::InboundFlowCache::default();
        for i in 0..batch.count() {
            if let Some(p) = batch.packet(i) {
                self.esp_in(now, p.buf, p.start, p.len, Some(&mut cache), sink);
            }
        }
    }

    /// A batch of UDP datagrams received on `local` at `now`: [`GatewayCore::on_udp`]
    /// on each in turn, with the shortcut of [`GatewayCore::on_esp_batch`] for
    /// consecutive ESP-in-UDP packets of one connection.
    pub fn on_udp_batch(
        &mut self,
        now: Instant,
        local: SocketAddr,
        batch: &mut impl RxBatch,
        sink: &mut dyn Sink,
    ) {
        let mut cache = distrib::InboundFlowCache::default();
        for i in 0..batch.count() {
            let Some(p) = batch.packet(i) else { continue };
            let Some(remote) = p.remote else { continue };
            if self.udp_in(
                now,
                local,
                remote,
                p.buf,
                p.start,
                p.len,
                Some(&mut cache),
                sink,
            ) {
                // IKE may have changed anything: start afresh.
                cache = distrib::InboundFlowCache::default();
            }
        }
    }

    /// [`GatewayCore::on_udp`], with the batch's cache; true when the datagram
    /// was not ESP.
    #[allow(clippy::too_many_arguments)]
    #[inline]
    fn udp_in(
        &mut self,
        now: Instant,
        local: SocketAddr,
        remote: SocketAddr,
        buf: &mut [u8],
        start: usize,
        len: usize,
        cache: Option<&mut distrib::InboundFlowCache>,
        sink: &mut dyn Sink,
    ) -> bool {
        let Some(payload) = buf.get(start..start + len) else {
            return true;
        };
        if local.port() != self.natt_port && remote.port() != self.natt_port {
            // Port 500 carries only IKE (RFC 7296 §2.23).
            self.ike.handle(now, local, remote, payload);
            self.flush(now, sink);
            return true;
        }
        match udp_encap::classify(payload) {
            Ok(UdpEncap::Ike(ike_bytes)) => {
                self.ike.handle(now, local, remote, ike_bytes);
                self.flush(now, sink);
            }
            Ok(UdpEncap::Keepalive) => self.counters.natt_keepalives += 1,
            Ok(UdpEncap::Esp(_)) => {
                self.esp_in(now, buf, start, len, cache, sink);
                return false;
            }
            Err(_) => self.counters.udp_malformed += 1,
        }
        true
    }

    #[inline]
    fn esp_in(
        &mut self,
        now: Instant,
        buf: &mut [u8],
        start: usize,
        len: usize,
        cache: Option<&mut distrib::InboundFlowCache>,
        sink: &mut dyn Sink,
    ) {
        let Some(esp) = buf.get_mut(start..start + len) else {
            return;
        };
        if let Some(cache) = cache {
            // A batch: the SA's selector check keeps no 5-tuple (for IPv4 it works
            // on integers), and the distributor reads the next packet of the same
            // connection straight into an integer key (`cached_inbound`).
            let Ok(inb) = self.sad.open_in_place(now, esp) else {
                return;
            };
            let inner = start + inb.opened.inner.start..start + inb.opened.inner.end;
            // The next packet of the cached connection: its route is read in
            // place from the cache (a copy through the stack cost a stalled
            // 16-byte load of the target address).
            if let Some(route) = self
                .dist
                .cached_inbound(now, &buf[inner.clone()], true, cache)
            {
                self.forward(route, buf, inner, sink);
                return;
            }
            let route = self
                .dist
                .route_inbound_uncached(now, &buf[inner.clone()], true, cache);
            self.forward(&route, buf, inner, sink);
            return;
        }
        let Ok((inb, tuple)) = self.sad.open_in_place_tuple(now, esp) else {
            return;
        };
        // open_in_place already checked the inner packet against the SA's selectors
        // (RFC 4301 §5.2 step 4), which were negotiated from the SPD; the 5-tuple it
        // parsed for that is handed on, so the distributor does not parse it again.
        let inner = start + inb.opened.inner.start..start + inb.opened.inner.end;
        self.deliver_inbound(now, buf, inner, tuple.as_ref(), true, None, sink);
    }

    /// Send a decrypted (or plain) inbound packet to its target or to the local stack.
    #[allow(clippy::too_many_arguments)]
    fn deliver_inbound(
        &mut self,
        now: Instant,
        buf: &mut [u8],
        inner: std::ops::Range<usize>,
        tuple: Option<&plexgate_wire::ip::FiveTuple>,
        via_ipsec: bool,
        cache: Option<&mut distrib::InboundFlowCache>,
        sink: &mut dyn Sink,
    ) {
        let route = match (tuple, cache) {
            (Some(t), Some(c)) => {
                self.dist
                    .route_inbound_cached(now, &buf[inner.clone()], t, via_ipsec, c)
            }
            (Some(t), None) => {
                self.dist
                    .route_inbound_parsed(now, &buf[inner.clone()], t, via_ipsec)
            }
            (None, c) => {
                // The distributor changes outside the cache's view.
                if let Some(c) = c {
                    *c = distrib::InboundFlowCache::default();
                }
                self.dist.route_inbound(now, &buf[inner.clone()], via_ipsec)
            }
        };
        self.forward(&route, buf, inner, sink);
    }

    /// Carry out the distributor's decision on the inbound packet `buf[inner]`.
    #[inline(always)]
    fn forward(
        &mut self,
        route: &distrib::Route,
        buf: &mut [u8],
        inner: std::ops::Range<usize>,
        sink: &mut dyn Sink,
    ) {
        match route {
            &distrib::Route::ToTarget { remote, key, .. } => {
                if inner.start >= 8 {
                    let h = inner.start - 8;
                    let first = buf[inner.start];
                    if distrib::gre::write_header(key, first, &mut buf[h..inner.end], inner.len())
                        .is_ok()
                    {
                        sink.gre(remote, &buf[h..inner.end]);
                    }
                } else {
                    let n = inner.len();
                    if let Ok(w) =
                        distrib::gre::encapsulate(key, &buf[inner], &mut self.scratch[..n + 8])
                    {
                        sink.gre(remote, &self.scratch[..w]);
                    }
                }
            }
            distrib::Route::Local => {
                // The DVIPA itself is routed into the TUN (for plain traffic), so a
                // packet for a DVIPA port that is not distributed would come straight
                // back: there is nobody here to take it. Drop and count.
                let dst = plexgate_wire::ip::FiveTuple::parse(&buf[inner.clone()]).map(|t| t.dst);
                if dst.is_ok_and(|d| self.dist.dvipas().any(|(c, _)| c.dvipa == d)) {
                    self.counters.drop_dvipa_not_distributed += 1;
                } else {
                    sink.tun(&buf[inner]);
                }
            }
            distrib::Route::Drop(_) => {}
        }
    }

    /// A GRE packet (the IP protocol 47 payload) arrived on link `link` from
    /// `outer_src`: a target's reply, or a packet of a connection its app opened.
    #[allow(clippy::too_many_arguments)] // in-place API: buffer, offset and length travel together
    pub fn on_gre(
        &mut self,
        now: Instant,
        link: distrib::LinkId,
        outer_src: IpAddr,
        buf: &mut [u8],
        start: usize,
        len: usize,
        sink: &mut dyn Sink,
    ) {
        let Some(gre) = buf.get(start..start + len) else {
            return;
        };
        let (inner_off, inner_len, uses_ipsec) =
            match self.dist.receive_gre(now, link, outer_src, gre) {
                distrib::FromTarget::ToClient {
                    inner, uses_ipsec, ..
                } => {
                    let off = inner.as_ptr() as usize - gre.as_ptr() as usize;
                    (start + off, inner.len(), uses_ipsec)
                }
                distrib::FromTarget::Drop(_) => return,
            };
        // A connection a target app opened (NEWCONN) is not known as IPsec yet: the
        // outbound SPD decides here, rather than a round trip through the kernel
        // (TUN → forward → back into the TUN → on_tun).
        let protected = uses_ipsec
            || matches!(
                self.spd.lookup_packet(ipsec::Direction::Outbound, &buf[inner_off..inner_off + inner_len]),
                Ok(Some(r)) if matches!(r.action, ipsec::SpdAction::Protect { .. })
            );
        if protected {
            match plexgate_wire::ip::FiveTuple::parse(&buf[inner_off..inner_off + inner_len]) {
                Ok(t) => self.protect(now, buf, inner_off, inner_len, t, sink),
                Err(_) => self.counters.drop_policy_out += 1,
            }
        } else {
            sink.tun(&buf[inner_off..inner_off + inner_len]);
        }
    }

    /// The kernel routed a packet into the TUN: plain traffic for a DVIPA, or
    /// traffic that the outbound SPD may protect.
    pub fn on_tun(
        &mut self,
        now: Instant,
        buf: &mut [u8],
        start: usize,
        len: usize,
        sink: &mut dyn Sink,
    ) {
        let Some(pkt) = buf.get(start..start + len) else {
            return;
        };
        let Ok(t) = plexgate_wire::ip::FiveTuple::parse(pkt) else {
            self.counters.drop_policy_out += 1;
            return;
        };
        if link_scope(t.src) || link_scope(t.dst) {
            self.counters.tun_link_local += 1;
            return;
        }
        if self
            .dist
            .dvipas()
            .any(|(d, routing)| routing && d.dvipa == t.dst)
        {
            // Plain traffic for a DVIPA: only where the policy distributes it, and
            // never where the inbound SPD wants it protected or discarded
            // (RFC 4301 §5.2: cleartext matching PROTECT is dropped).
            let spd_ok = !matches!(
                self.spd
                    .lookup(ipsec::Direction::Inbound, &t)
                    .map(|r| &r.action),
                Some(ipsec::SpdAction::Protect { .. } | ipsec::SpdAction::Discard)
            );
            if spd_ok && !self.plain_drop.contains(&t.dst) {
                self.deliver_inbound(now, buf, start..start + len, None, false, None, sink);
            } else {
                self.counters.drop_policy_in += 1;
            }
            return;
        }
        self.protect(now, buf, start, len, t, sink);
    }

    /// Outbound SPD, then seal with the SA for the destination, or start an acquire.
    fn protect(
        &mut self,
        now: Instant,
        buf: &mut [u8],
        start: usize,
        len: usize,
        t: plexgate_wire::ip::FiveTuple,
        sink: &mut dyn Sink,
    ) {
        let Some(rule) = self.spd.lookup(ipsec::Direction::Outbound, &t) else {
            self.counters.drop_policy_out += 1;
            return;
        };
        // BYPASS cannot apply here: the packet came from the TUN (or a target) and
        // cannot go back; bypass traffic should not be routed into plexgate.
        if !matches!(rule.action, ipsec::SpdAction::Protect { .. }) {
            self.counters.drop_policy_out += 1;
            return;
        }
        let Some(spi) = self.out_index.lookup(t.dst) else {
            self.counters.drop_no_sa += 1;
            if let ipsec::SpdAction::Protect { peer, child, .. } = &rule.action {
                let (peer, child) = (peer.clone(), child.clone());
                self.acquire(now, &peer, &child, sink);
            }
            return;
        };
        let Some(sa) = self.sad.outbound(spi) else {
            self.out_index.remove(spi);
            self.counters.drop_no_sa += 1;
            return;
        };
        let h = sa.header_len();
        let total = sa.sealed_len(len);
        let p = sa.params();
        let (local, remote, encap) = (p.local_addr, p.remote_addr, p.encap);
        let nh = if t.dst.is_ipv6() { 41 } else { 4 };
        let (out, esp_len) = if start >= h && start - h + total <= buf.len() {
            let s = start - h;
            match self
                .sad
                .seal_in_place(now, spi, &mut buf[s..s + total], len, nh)
            {
                Ok(n) => (&buf[s..s + n], n),
                Err(_) => return,
            }
        } else {
            if total > self.scratch.len() {
                self.counters.drop_too_big += 1;
                return;
            }
            match self.sad.seal(
                now,
                spi,
                &buf[start..start + len],
                nh,
                &mut self.scratch[..total],
            ) {
                Ok(n) => (&self.scratch[..n], n),
                Err(_) => return,
            }
        };
        let out = &out[..esp_len];
        match encap {
            Some(e) => sink.udp(
                SocketAddr::new(local, e.local_port),
                SocketAddr::new(remote, e.remote_port),
                out,
            ),
            None => sink.esp(local, remote, out),
        }
        self.after_sad(now, sink);
    }

    fn acquire(&mut self, now: Instant, peer: &str, child: &str, sink: &mut dyn Sink) {
        let k = (peer.to_string(), child.to_string());
        if self.acquiring.get(&k).is_some_and(|until| now < *until) {
            return;
        }
        // One negotiation at a time per child; if it neither succeeds nor fails
        // visibly, traffic may trigger another after the back-off.
        match self.ike.initiate(now, peer, child) {
            Ok(_) => {
                tracing::info!(
                    peer,
                    child,
                    "acquire: no SA for outbound traffic, initiating"
                );
                self.counters.acquires += 1;
                self.acquiring.insert(k, now + Duration::from_secs(30));
            }
            Err(e) => {
                tracing::warn!(peer, child, "acquire failed (next try in 10 s): {e}");
                self.acquiring.insert(k, now + Duration::from_secs(10));
            }
        }
        self.flush(now, sink);
    }

    /// Start an IKE SA with its first Child SA (`plexgate initiate`).
    pub fn initiate(
        &mut self,
        now: Instant,
        peer: &str,
        child: Option<&str>,
        sink: &mut dyn Sink,
    ) -> Result<u64, String> {
        let child = match child {
            Some(c) => c.to_string(),
            None => self
                .ike_peer_first_child(peer)
                .ok_or_else(|| format!("peer {peer:?} has no child in the policy"))?,
        };
        let r = self
            .ike
            .initiate(now, peer, child.as_str())
            .map(|id| id.0)
            .map_err(|e| e.to_string());
        self.flush(now, sink);
        r
    }

    fn ike_peer_first_child(&self, peer: &str) -> Option<String> {
        let mut names: Vec<&(String, String)> =
            self.children.keys().filter(|(p, _)| p == peer).collect();
        names.sort();
        names.first().map(|(_, c)| c.clone())
    }

    /// A cluster control message from a target.
    pub fn on_cluster(&mut self, now: Instant, bytes: &[u8], sink: &mut dyn Sink) {
        if let Err(e) = self.dist.handle_cluster(now, bytes) {
            tracing::debug!("cluster message dropped: {e}");
        }
        self.flush(now, sink);
    }

    /// When [`GatewayCore::on_timeout`] must run next.
    pub fn next_timeout(&self) -> Option<Instant> {
        match (self.ike.poll_timeout(), self.sad.next_timeout()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Timers: IKE retransmissions and rekeys, SA lifetimes, CRT idle entries.
    pub fn on_timeout(&mut self, now: Instant, sink: &mut dyn Sink) {
        self.ike.handle_timeout(now);
        self.sad.handle_timeout(now);
        self.dist.handle_timeout(now);
        self.after_sad(now, sink);
        self.flush(now, sink);
    }

    /// NAT-T keepalives (RFC 3948 §2.3): one 0xFF byte to every peer behind a NAT,
    /// so that the NAT keeps its mapping; the runtime calls this every 20 s.
    pub fn send_nat_keepalives(&mut self, sink: &mut dyn Sink) {
        for (local, remote) in self.ike.nat_keepalives() {
            sink.udp(local, remote, &[0xff]);
        }
    }

    /// Ask targets to (re)announce themselves: sends the DVIPA list.
    pub fn announce(&mut self, now: Instant, sink: &mut dyn Sink) {
        self.dist.announce();
        self.flush(now, sink);
    }

    fn after_sad(&mut self, now: Instant, sink: &mut dyn Sink) {
        let mut any = false;
        while let Some(ev) = self.sad.poll_event() {
            any = true;
            match ev {
                ipsec::SadEvent::RekeyNeeded { spi, direction } => {
                    let spi_in = match direction {
                        ipsec::Direction::Inbound => spi,
                        ipsec::Direction::Outbound => match self.pair_of_out.get(&spi) {
                            Some(s) => *s,
                            None => continue,
                        },
                    };
                    if let Err(e) = self.ike.rekey_child(now, spi_in) {
                        tracing::debug!("rekey of child {spi_in:08x} not started: {e}");
                    }
                }
                ipsec::SadEvent::Expired { spi, direction } => {
                    // A hard lifetime ended the SA (RFC 4301 §4.4.2.1): the IKE engine
                    // deletes the Child SA and tells the peer (INFORMATIONAL DELETE).
                    let spi_in = match direction {
                        ipsec::Direction::Outbound => {
                            self.out_index.remove(spi);
                            self.pair_of_out.get(&spi).copied()
                        }
                        ipsec::Direction::Inbound => Some(spi),
                    };
                    if let Some(spi_in) = spi_in {
                        tracing::info!("Child SA {spi_in:08x}: hard lifetime reached, deleting");
                        let _ = self.ike.delete_child(now, spi_in);
                    }
                }
            }
        }
        if any {
            self.flush(now, sink);
        }
    }

    /// Send what the IKE engine and the distributor queued; apply IKE events.
    fn flush(&mut self, now: Instant, sink: &mut dyn Sink) {
        while let Some(t) = self.ike.poll_transmit() {
            if t.local.port() == self.natt_port || t.remote.port() == self.natt_port {
                let mut v = Vec::with_capacity(t.payload.len() + 4);
                v.extend_from_slice(&[0, 0, 0, 0]);
                v.extend_from_slice(&t.payload);
                sink.udp(t.local, t.remote, &v);
            } else {
                sink.udp(t.local, t.remote, &t.payload);
            }
        }
        while let Some(ev) = self.ike.poll_event() {
            self.on_ike_event(now, ev);
        }
        while let Some(t) = self.dist.poll_transmit() {
            sink.cluster(t.to, &t.bytes);
        }
    }

    fn on_ike_event(&mut self, now: Instant, ev: ike::Event) {
        match ev {
            ike::Event::IkeSaUp { id, record }
            | ike::Event::IkeSaRekeyed {
                new: id, record, ..
            } => {
                let key = format!(
                    "{}/ike/{:016x}-{:016x}",
                    self.site, record.spi_i, record.spi_r
                );
                tracing::info!(peer = %record.peer, remote = %record.remote, "IKE SA {:016x}_i {:016x}_r established", record.spi_i, record.spi_r);
                if let Ok(v) = serde_json::to_vec_pretty(&record) {
                    self.side.push(SideEffect::PutRecord(key.clone(), v));
                }
                self.ike_records.insert(id, key);
            }
            ike::Event::IkeSaDeleted { id, reason } => {
                tracing::info!("IKE SA {} deleted: {reason}", id.0);
                if let Some(k) = self.ike_records.remove(&id) {
                    self.side.push(SideEffect::DeleteRecord(k));
                }
            }
            ike::Event::ChildSaUp { child, .. } => self.install_child(now, child, None),
            ike::Event::ChildSaRekeyed {
                old_spi_in,
                old_spi_out,
                new,
                ..
            } => self.install_child(now, new, Some((old_spi_in, old_spi_out))),
            ike::Event::ChildSaDeleted {
                spi_in, spi_out, ..
            } => {
                tracing::info!("Child SA {spi_in:08x}_i {spi_out:08x}_o deleted");
                self.remove_child_sa(spi_in, spi_out);
            }
            ike::Event::ChildSaFailed { name, reason, .. } => {
                tracing::warn!(child = %name, "Child SA failed: {reason}");
                self.acquiring.retain(|(_, c), _| c != &name);
            }
            ike::Event::AuthFailed {
                remote,
                peer_id,
                reason,
            } => {
                tracing::warn!(%remote, peer_id = ?peer_id, "authentication failed: {reason}");
            }
            other => tracing::debug!("IKE event {other:?}"),
        }
    }

    /// Install both SAs of a negotiated Child SA into the SAD (what `ChildSaUp`
    /// does; public for benchmarks and for re-creating SAs from records).
    pub fn install_child_sa(&mut self, now: Instant, c: ike::ChildSa) {
        self.install_child(now, c, None);
    }

    /// Remove both SAs of a Child SA, its outbound index entry and, with the last SA
    /// of a selector, its route; the recovery record goes too.
    pub fn remove_child_sa(&mut self, spi_in: u32, spi_out: u32) {
        self.sad.remove(ipsec::Direction::Inbound, spi_in);
        if let Some(sa) = self.sad.remove(ipsec::Direction::Outbound, spi_out) {
            // Only the last SA of a selector takes its route away (a rekeyed
            // SA's replacement inherited it).
            let still = self.sad.iter().any(|o| {
                o.params().direction == ipsec::Direction::Outbound
                    && o.params().remote_ts == sa.params().remote_ts
            });
            if !still {
                for cidr in sa.params().remote_ts.iter().filter_map(ts_cidr) {
                    if let Some(n) = self.routes.get_mut(&cidr) {
                        *n = n.saturating_sub(1);
                        if *n == 0 {
                            self.routes.remove(&cidr);
                            self.route_changes.push((false, cidr));
                        }
                    }
                }
            }
        }
        self.out_index.remove(spi_out);
        self.pair_of_out.remove(&spi_out);
        self.side.push(SideEffect::DeleteRecord(format!(
            "{}/child/{spi_in:08x}",
            self.site
        )));
    }

    fn install_child(&mut self, now: Instant, c: ike::ChildSa, replaces: Option<(u32, u32)>) {
        let Some(transform) = esp_transform(&c) else {
            tracing::warn!(
                "Child SA {}: transform {} not supported by the data plane",
                c.name,
                c.encr
            );
            return;
        };
        let peer = self.peer_of_child(&c.name);
        let pol = self
            .children
            .get(&(peer.clone(), c.name.clone()))
            .cloned()
            .unwrap_or(ChildPolicy {
                replay_window: 1024,
                lifetime: ipsec::Lifetime::default(),
            });
        let local_ts: Vec<_> = c.ts_local.iter().map(config::ts_to_ipsec).collect();
        let remote_ts: Vec<_> = c.ts_remote.iter().map(config::ts_to_ipsec).collect();
        let encap = c.udp_encap.then_some(ipsec::UdpEncapPorts {
            local_port: c.local.port(),
            remote_port: c.remote.port(),
        });
        let mk = |spi, direction, keys: &(Vec<u8>, Vec<u8>)| ipsec::SaParams {
            spi,
            direction,
            transform,
            enc_key: keys.0.clone(),
            integ_key: keys.1.clone(),
            esn: c.esn,
            mode: match c.mode {
                ike::Mode::Transport => ipsec::Mode::Transport,
                _ => ipsec::Mode::Tunnel,
            },
            replay_window: pol.replay_window,
            lifetime: pol.lifetime,
            local_ts: local_ts.clone(),
            remote_ts: remote_ts.clone(),
            local_addr: c.local.ip(),
            remote_addr: c.remote.ip(),
            encap,
            initial_seq: 0,
            peer: peer.clone(),
            child: c.name.clone(),
        };
        let pin = mk(c.spi_in, ipsec::Direction::Inbound, &c.keys_in);
        let pout = mk(c.spi_out, ipsec::Direction::Outbound, &c.keys_out);
        if self.keylog {
            self.side
                .push(SideEffect::KeyLog(ipsec::keylog::esp_sa_line(&pin)));
            self.side
                .push(SideEffect::KeyLog(ipsec::keylog::esp_sa_line(&pout)));
        }
        let rec = json!({
            "peer": peer, "child": c.name, "spi_in": format!("{:08x}", c.spi_in), "spi_out": format!("{:08x}", c.spi_out),
            "protocol": c.protocol, "transform": format!("{transform:?}"), "esn": c.esn,
            "local_ts": local_ts, "remote_ts": remote_ts, "local": c.local, "remote": c.remote, "udp_encap": c.udp_encap,
            "replaces": replaces.map(|(i, o)| json!({"spi_in": format!("{i:08x}"), "spi_out": format!("{o:08x}")})),
        });
        if let Err(e) = self.sad.insert(pin, now) {
            tracing::warn!("inbound SA {:08x} not installed: {e}", c.spi_in);
            return;
        }
        if let Err(e) = self.sad.insert(pout, now) {
            tracing::warn!("outbound SA {:08x} not installed: {e}", c.spi_out);
            self.sad.remove(ipsec::Direction::Inbound, c.spi_in);
            return;
        }
        if let Some((_, old_out)) = replaces {
            // New traffic goes out on the new SA at once; the old inbound SA stays
            // until the peer's DELETE (RFC 7296 §2.8).
            self.out_index.remove(old_out);
        }
        self.out_index.insert(&remote_ts, c.spi_out);
        if replaces.is_none() {
            for cidr in remote_ts.iter().filter_map(ts_cidr) {
                let n = self.routes.entry(cidr.clone()).or_insert(0);
                *n += 1;
                if *n == 1 {
                    self.route_changes.push((true, cidr));
                }
            }
        }
        self.pair_of_out.insert(c.spi_out, c.spi_in);
        self.acquiring.remove(&(peer.clone(), c.name.clone()));
        tracing::info!(
            peer = %peer, child = %c.name, "Child SA {:08x}_i {:08x}_o installed ({transform:?}{}{})",
            c.spi_in, c.spi_out, if c.esn { ", ESN" } else { "" }, if c.udp_encap { ", UDP-encap" } else { "" }
        );
        if let Ok(v) = serde_json::to_vec_pretty(&rec) {
            self.side.push(SideEffect::PutRecord(
                format!("{}/child/{:08x}", self.site, c.spi_in),
                v,
            ));
        }
    }

    fn peer_of_child(&self, child: &str) -> String {
        let mut v: Vec<&String> = self
            .children
            .keys()
            .filter(|(_, c)| c == child)
            .map(|(p, _)| p)
            .collect();
        v.sort();
        v.first().map(|s| s.to_string()).unwrap_or_default()
    }

    /// Records to write and key-log lines to append since the last call.
    pub fn drain_side_effects(&mut self) -> Vec<SideEffect> {
        std::mem::take(&mut self.side)
    }

    /// Routes to add (`true`) or remove into the TUN since the last call: the
    /// selectors of the peers' side of each Child SA, as strongSwan installs them.
    pub fn routes_wanted(&mut self) -> Vec<(bool, String)> {
        std::mem::take(&mut self.route_changes)
    }

    /// Whether `addr` is one of the gateway's own addresses.
    pub fn is_local(&self, addr: IpAddr) -> bool {
        self.local_addrs.contains(&addr)
    }

    /// `plexgate status` as JSON.
    pub fn status(&self, now: Instant) -> Value {
        let sas: Vec<Value> = self
            .sad
            .iter()
            .map(|sa| {
                let p = sa.params();
                let st = sa.stats();
                json!({
                    "spi": format!("{:08x}", p.spi), "direction": p.direction, "peer": p.peer, "child": p.child,
                    "transform": format!("{:?}", p.transform), "esn": p.esn, "mode": p.mode,
                    "local": p.local_addr, "remote": p.remote_addr, "udp_encap": p.encap.is_some(),
                    "local_ts": p.local_ts, "remote_ts": p.remote_ts,
                    "bytes": st.bytes, "packets": st.packets, "needs_rekey": sa.needs_rekey(),
                })
            })
            .collect();
        let snap = self.dist.snapshot();
        json!({
            "site": self.site,
            "ike_sas": self.ike.sas(now),
            "child_sas": sas,
            "esp_counters": self.sad.counters,
            "core_counters": self.counters,
            "distribution": format!("{snap:?}"),
            "dvipas": self.dist.dvipas().map(|(d, routing)| json!({"dvipa": d.dvipa, "routing": routing, "algorithm": format!("{:?}", d.algorithm)})).collect::<Vec<_>>(),
            "dpt": self.dpt_json(),
            "crt_entries": self.dist.crt().len(),
            "distrib_drops": snap.drops.iter().map(|(r, n)| (r.label().to_string(), json!(n))).collect::<serde_json::Map<_, _>>(),
            "distrib_targets": snap.targets.iter().map(|t| json!({"node": t.node.0, "name": self.target_names.get(&t.node.0), "connections": t.connections, "link_up": t.link_up})).collect::<Vec<_>>(),
        })
    }

    /// The DPT as JSON: per (DVIPA, port) the targets with weight, listener, link
    /// state and active connections, sorted.
    fn dpt_json(&self) -> Value {
        let mut rows: Vec<_> = self.dist.dpt().iter().collect();
        rows.sort_by_key(|(k, _)| **k);
        rows.iter()
            .map(|((dvipa, port), e)| {
                json!({
                    "dvipa": dvipa, "port": port, "algorithm": format!("{:?}", e.algorithm),
                    "targets": e.targets().iter().map(|t| json!({
                        "node": t.node.0, "name": self.target_names.get(&t.node.0), "weight": t.weight, "listening": t.listening, "link_up": t.link_up, "active": t.active,
                    })).collect::<Vec<_>>(),
                })
            })
            .collect()
    }

    /// The SAD (benchmarks, tests).
    pub fn sad(&self) -> &ipsec::Sad {
        &self.sad
    }

    /// The distributor (tests, status).
    pub fn distributor(&self) -> &distrib::Distributor {
        &self.dist
    }

    /// Set the weight of target `node` on `dvipa` (0 drains it: no new connections).
    pub fn set_weight(&mut self, dvipa: IpAddr, node: u32, weight: u16) -> Result<(), String> {
        if !self.dist.dvipas().any(|(d, _)| d.dvipa == dvipa) {
            return Err(format!("{dvipa} is not a DVIPA"));
        }
        self.dist.set_weight(dvipa, distrib::NodeId(node), weight);
        Ok(())
    }

    /// Core counters.
    pub fn counters(&self) -> CoreCounters {
        self.counters
    }

    /// The IKE endpoint's SAs.
    pub fn ike_sas(&self, now: Instant) -> Vec<ike::IkeSaInfo> {
        self.ike.sas(now)
    }

    /// Delete an IKE SA by its id (sends DELETE).
    pub fn delete_ike(&mut self, now: Instant, id: u64, sink: &mut dyn Sink) -> Result<(), String> {
        let r = self
            .ike
            .delete_ike(now, ike::IkeSaId(id))
            .map_err(|e| e.to_string());
        self.flush(now, sink);
        r
    }

    /// Start a rekey of the Child SA with inbound SPI `spi_in`.
    pub fn rekey_child(
        &mut self,
        now: Instant,
        spi_in: u32,
        sink: &mut dyn Sink,
    ) -> Result<(), String> {
        let r = self.ike.rekey_child(now, spi_in).map_err(|e| e.to_string());
        self.flush(now, sink);
        r
    }

    /// Start a rekey of an IKE SA.
    pub fn rekey_ike(&mut self, now: Instant, id: u64, sink: &mut dyn Sink) -> Result<(), String> {
        let r = self
            .ike
            .rekey_ike(now, ike::IkeSaId(id))
            .map_err(|e| e.to_string());
        self.flush(now, sink);
        r
    }
}

/// An IPv6 address that never leaves its link: link-local unicast (fe80::/10) or
/// multicast of interface- or link-local scope (ff01::/16, ff02::/16).
//= https://www.rfc-editor.org/rfc/rfc4291#section-2.5.6
//# Routers must not forward any packets with Link-Local source or destination
//# addresses to other links.
fn link_scope(a: IpAddr) -> bool {
    match a {
        IpAddr::V6(v6) => {
            let s = v6.segments()[0];
            (s & 0xffc0) == 0xfe80 || (s & 0xff0f) == 0xff01 || (s & 0xff0f) == 0xff02
        }
        IpAddr::V4(_) => false,
    }
}

/// A selector as a CIDR, when it is exactly one prefix (and not "everything").
pub fn ts_cidr(t: &ipsec::TrafficSelector) -> Option<String> {
    let (a, b) = match (t.start_addr, t.end_addr) {
        (IpAddr::V4(a), IpAddr::V4(b)) => (u128::from(u32::from(a)), u128::from(u32::from(b))),
        (IpAddr::V6(a), IpAddr::V6(b)) => (u128::from(a), u128::from(b)),
        _ => return None,
    };
    let bits = if t.start_addr.is_ipv4() { 32 } else { 128 };
    let span = b.checked_sub(a)?.checked_add(1)?;
    if !span.is_power_of_two() || a & (span - 1) != 0 {
        return None;
    }
    let len = bits - span.trailing_zeros();
    if len == 0 {
        return None;
    }
    Some(format!("{}/{len}", t.start_addr))
}

/// The data plane's transform for a negotiated Child SA.
pub fn esp_transform(c: &ike::ChildSa) -> Option<ipsec::EspTransform> {
    let bits = if c.encr == 28 {
        None
    } else {
        Some(c.encr_key_bits)
    };
    ipsec::EspTransform::from_ikev2(c.encr, bits, c.integ).ok()
}
