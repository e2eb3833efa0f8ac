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

use super::config;

mod children;
mod control;
mod datapath;
mod ha;
mod records;
mod status;

pub use ha::HaReport;
pub use records::{ike_record_of, RecordChange};

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
    /// A recovery record to write or remove.
    Record(RecordChange),
    /// Append a line to the Wireshark `esp_sa` key log.
    KeyLog(String),
    /// Append a line to the Wireshark `ikev2_decryption_table` key log.
    IkeKeyLog(String),
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
    /// Peers behind a NAT followed to a new address or port (RFC 7296 §2.23).
    pub nat_rebindings: u64,
    /// IKE exchanges refused (proposals, identities, selectors, IKEv1, …).
    pub ike_refused: u64,
}

/// At most [`LogLimit::BURST`] log lines per second about what peers send; the
/// rest are counted and summed up in the next line allowed.
#[derive(Debug, Default)]
pub(crate) struct LogLimit {
    window: Option<Instant>,
    used: u32,
    suppressed: u64,
}

impl LogLimit {
    /// Lines per second.
    pub(crate) const BURST: u32 = 10;

    /// May a line be written now?
    pub(crate) fn allow(&mut self, now: Instant) -> bool {
        if self
            .window
            .is_none_or(|w| now.saturating_duration_since(w) >= Duration::from_secs(1))
        {
            if self.suppressed > 0 {
                tracing::warn!("{} more such log lines suppressed", self.suppressed);
                self.suppressed = 0;
            }
            self.window = Some(now);
            self.used = 0;
        }
        self.used += 1;
        if self.used > Self::BURST {
            self.suppressed += 1;
        }
        self.used <= Self::BURST
    }
}

/// Per-child settings that the IKE engine does not carry.
#[derive(Debug, Clone)]
pub(crate) struct ChildPolicy {
    replay_window: u32,
    lifetime: ipsec::Lifetime,
}

/// Who an IKE SA belongs to.
#[derive(Debug, Clone)]
struct IkePeer {
    /// The remote identity it authenticated as.
    owner: String,
}

/// The gateway's protocol state.
pub struct GatewayCore {
    ike: ike::Endpoint,
    sad: ipsec::Sad,
    spd: ipsec::Spd,
    dist: distrib::Distributor,
    children: HashMap<(String, String), ChildPolicy>,
    /// Per outbound SPD rule (by position): the SAD key of its (peer, child)
    /// for PROTECT rules, `None` for the others.
    out_rule_keys: Vec<Option<ipsec::ChildKey>>,
    /// The peer config and proven identity of each IKE SA (its Child SAs are
    /// installed under them).
    ike_peers: HashMap<ike::IkeSaId, IkePeer>,
    /// The IKE SA of each Child SA, by inbound SPI.
    child_ike: HashMap<u32, ike::IkeSaId>,
    /// The last (inbound SPI, source) of ESP in UDP found where its SA's peer is.
    last_source: Option<(u32, SocketAddr)>,
    /// Rate limit of log lines driven by peers.
    log_limit: LogLimit,
    /// What the HA machine asked of the core.
    ha: ha::HaState,
    /// Acquires under way or recently failed: no new one before the instant.
    acquiring: HashMap<(String, String), Instant>,
    /// The recovery records written, per IKE SA.
    recorded: records::Recorded,
    /// Whether recovery records are kept (a store is configured).
    records_on: bool,
    /// The AUTH method of each peer config (for the records).
    auth_methods: HashMap<String, u8>,
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
    /// When the DVIPA list goes to the targets next.
    announce_at: Instant,
    /// When NAT-T keepalives go out next.
    keepalive_at: Instant,
}

/// What the core needs beside the policy: everything read from files or the
/// clock, so that the core itself touches neither ([`CoreSetup::load`] reads them).
pub struct CoreSetup {
    /// The IKE engine's configuration, credentials loaded.
    pub ike: ike::Config,
    /// The cluster channel key (HMAC-SHA-256).
    pub cluster_key: Vec<u8>,
    /// The first sequence number of our cluster messages: above any this node
    /// may have used before a restart (the runtime takes the wall clock in µs).
    pub first_seq: u64,
    /// Keep recovery records (the policy names a store).
    pub records: bool,
}

impl CoreSetup {
    /// Read the key files the policy names and the wall clock.
    pub fn load(p: &policy::Policy) -> Result<CoreSetup, config::ConfigError> {
        let cluster_key = match &p.cluster {
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
        Ok(CoreSetup {
            ike: config::ike_config(p)?,
            cluster_key,
            first_seq,
            records: p.ha.is_some(),
        })
    }
}

/// How often the DVIPA list is sent to the targets (they answer with SRVSTAT
/// and NEWCONN; a target that restarted learns the DVIPAs within this time).
pub const ANNOUNCE_EVERY: Duration = Duration::from_secs(5);
/// How often NAT-T keepalives go to peers behind a NAT (RFC 3948 §2.3 suggests 20 s).
pub const NAT_KEEPALIVE_EVERY: Duration = Duration::from_secs(20);

impl GatewayCore {
    /// Build the core from a checked site policy, what [`CoreSetup::load`]
    /// read, and the time now. Touches no file, clock or socket.
    pub fn new(
        p: &policy::Policy,
        setup: CoreSetup,
        rng: Box<dyn ike::Rng>,
        now: Instant,
    ) -> Result<GatewayCore, config::ConfigError> {
        let records_on = setup.records;
        let CoreSetup {
            ike: ike_cfg,
            cluster_key: key,
            first_seq,
            ..
        } = setup;
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
        let spd = config::spd(p);
        let mut sad = ipsec::Sad::new();
        let out_rule_keys = spd
            .outbound
            .iter()
            .map(|r| match &r.action {
                ipsec::SpdAction::Protect { peer, child, .. } => {
                    Some(sad.intern_child(peer, child))
                }
                _ => None,
            })
            .collect();
        let mut ike = ike::Endpoint::new(Arc::new(ike_cfg), rng);
        // IKE agrees only to ESP transforms the data plane installs (#17).
        ike.set_esp_support(esp_support());
        ike.set_key_log(p.log.keylog.is_some());
        Ok(GatewayCore {
            ike,
            sad,
            spd,
            dist,
            children,
            out_rule_keys,
            ike_peers: HashMap::new(),
            child_ike: HashMap::new(),
            last_source: None,
            log_limit: LogLimit::default(),
            ha: ha::HaState::default(),
            acquiring: HashMap::new(),
            recorded: records::Recorded::default(),
            records_on,
            auth_methods: p
                .peers
                .iter()
                .map(|peer| {
                    let m = match peer.auth {
                        policy::Auth::Psk { .. } => 2,
                        // RFC 7427 digital signatures.
                        policy::Auth::Cert { .. } => 14,
                    };
                    (peer.name.clone(), m)
                })
                .collect(),
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
            announce_at: now,
            keepalive_at: now + NAT_KEEPALIVE_EVERY,
        })
    }

    /// The link index of a target's address (for binding GRE sockets to links).
    pub fn link_of(&self, remote: IpAddr) -> Option<distrib::LinkId> {
        self.dist.links().by_remote(remote)
    }

    /// A cluster control message from a target.
    pub fn on_cluster(&mut self, now: Instant, bytes: &[u8], sink: &mut dyn Sink) {
        if let Err(e) = self.dist.handle_cluster(now, bytes) {
            tracing::debug!("cluster message dropped: {e}");
        }
        self.flush(now, sink);
    }

    /// A cluster control message that arrived as `from` (the link of the socket
    /// it came in on, and its source): refused and counted `misrouted` unless it
    /// comes from its sender's address on its sender's link.
    pub fn on_cluster_from(
        &mut self,
        now: Instant,
        from: distrib::Arrival,
        bytes: &[u8],
        sink: &mut dyn Sink,
    ) {
        if let Err(e) = self.dist.handle_cluster_from(now, from, bytes) {
            tracing::debug!("cluster message from {} dropped: {e}", from.src);
        }
        self.flush(now, sink);
    }

    /// Add a cluster node the targets' links do not give: another gateway of
    /// the site (`crate::cluster::gateway_nodes`).
    pub fn add_cluster_node(&mut self, node: distrib::Node) {
        self.dist.add_node(node);
    }

    /// When [`GatewayCore::on_timeout`] must run next: the earliest of the IKE
    /// engine's, the SAD's and the distributor's deadlines and the core's own
    /// periodic duties. The runtime sleeps until then (or until a packet).
    pub fn next_timeout(&self) -> Instant {
        [
            self.ike.poll_timeout(),
            self.sad.next_timeout(),
            self.dist.next_timeout(),
        ]
        .into_iter()
        .flatten()
        .fold(self.announce_at.min(self.keepalive_at), Instant::min)
    }

    /// Timers: IKE retransmissions and rekeys, SA lifetimes, CRT idle entries,
    /// the DVIPA list to targets, NAT-T keepalives.
    pub fn on_timeout(&mut self, now: Instant, sink: &mut dyn Sink) {
        self.ike.handle_timeout(now);
        self.sad.handle_timeout(now);
        self.dist.handle_timeout(now);
        if now >= self.keepalive_at {
            self.send_nat_keepalives(sink);
            self.keepalive_at = now + NAT_KEEPALIVE_EVERY;
        }
        if now >= self.announce_at {
            self.dist.announce();
            self.announce_at = now + ANNOUNCE_EVERY;
        }
        self.after_sad(now, sink);
        self.flush(now, sink);
    }

    /// NAT-T keepalives (RFC 3948 §2.3): one 0xFF byte to every peer behind a NAT,
    /// so that the NAT keeps its mapping ([`NAT_KEEPALIVE_EVERY`]).
    fn send_nat_keepalives(&mut self, sink: &mut dyn Sink) {
        for (local, remote) in self.ike.nat_keepalives() {
            sink.udp(local, remote, &[0xff]);
        }
    }

    /// Ask targets to (re)announce themselves: sends the DVIPA list.
    pub fn announce(&mut self, now: Instant, sink: &mut dyn Sink) {
        self.dist.announce();
        self.flush(now, sink);
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

    /// Whether records, key-log lines or routes wait to be drained.
    pub fn has_side_effects(&self) -> bool {
        !self.side.is_empty() || !self.route_changes.is_empty() || self.ha.has_reports()
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

    /// The SAD (benchmarks, tests).
    pub fn sad(&self) -> &ipsec::Sad {
        &self.sad
    }

    /// The distributor (tests, status).
    pub fn distributor(&self) -> &distrib::Distributor {
        &self.dist
    }

    /// Core counters.
    pub fn counters(&self) -> CoreCounters {
        self.counters
    }

    /// The IKE endpoint's SAs.
    pub fn ike_sas(&self, now: Instant) -> Vec<ike::IkeSaInfo> {
        self.ike.sas(now)
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

/// The ESP transforms of [`ipsec::EspTransform::installable`], as the IKE engine
/// names them.
pub fn esp_support() -> ike::EspSupport {
    ike::EspSupport(
        ipsec::EspTransform::installable()
            .iter()
            .map(|&(encr, bits, integ)| ike::EspTransformId {
                encr,
                // ChaCha20-Poly1305 has a fixed 256-bit key and no length attribute.
                key_bits: bits.unwrap_or(256),
                integ: (integ != 0).then_some(integ),
            })
            .collect(),
    )
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
