//! Current routing table (CRT): which target serves each distributed connection.
//!
//! Keyed by [`FlowKey`] (client address and port, DVIPA and port, protocol),
//! each entry holds the target, whether the connection is protected by IPsec,
//! a small TCP state (opening, established, FIN seen from one or both sides)
//! and the last time a packet was seen. Entries leave on RST, a short linger
//! after FINs from both sides, or an idle timeout; time is passed in
//! (`std::time::Instant`), never read. The map uses a randomly keyed hash
//! (aHash) so clients cannot flood one bucket.
//!
//! The table is bounded: at its maximum a new connection evicts the oldest
//! embryonic entry (a TCP connection that has seen only SYNs), as Linux
//! conntrack's early drop does, so that a SYN flood to a distributed port
//! can neither grow memory without bound nor push out established
//! connections; with no embryonic entry left, the new connection is refused.

use crate::flow::{FlowKey, Proto, TcpFlags};
use crate::NodeId;
use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, Ipv6Addr};
use std::time::{Duration, Instant};

/// How long entries live without traffic.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timeouts {
    /// TCP connection that has seen only its SYN(s).
    pub tcp_opening: Duration,
    /// Established TCP connection.
    pub tcp_established: Duration,
    /// TCP connection with a FIN from one side.
    pub tcp_half_closed: Duration,
    /// Linger after FINs from both sides (to let the last ACK through).
    pub tcp_linger: Duration,
    /// UDP flow.
    pub udp: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            tcp_opening: Duration::from_secs(30),
            tcp_established: Duration::from_secs(3600),
            tcp_half_closed: Duration::from_secs(120),
            tcp_linger: Duration::from_secs(10),
            udp: Duration::from_secs(60),
        }
    }
}

/// State of a CRT entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConnState {
    /// Only the client's SYN has been seen.
    Opening,
    /// Traffic flows (any non-SYN packet seen, or reported by NEWCONN).
    Established,
    /// FIN seen from the client only.
    FinFromClient,
    /// FIN seen from the server (target) only.
    FinFromServer,
    /// FIN seen from both: removed after the linger time.
    Closing,
    /// UDP flow.
    Udp,
}

/// How a connection came into the CRT.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Origin {
    /// A client's SYN (or first UDP datagram) selected the target.
    Selected,
    /// Opened by an application on the target (NEWCONN or an outbound SYN).
    OpenedByTarget,
    /// Reported as existing by a target (NEWCONN after a takeover).
    Existing,
}

/// One CRT entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CrtEntry {
    /// The target serving the connection.
    pub target: NodeId,
    /// Packets of this connection arrive under IPsec.
    pub uses_ipsec: bool,
    /// TCP state.
    pub state: ConnState,
    /// How it was created.
    pub origin: Origin,
    /// Last packet seen.
    pub last_seen: Instant,
}

impl CrtEntry {
    /// A fresh entry for `proto`.
    pub fn new(
        target: NodeId,
        proto: Proto,
        uses_ipsec: bool,
        origin: Origin,
        now: Instant,
    ) -> Self {
        let state = match (proto, origin) {
            (Proto::Udp, _) => ConnState::Udp,
            (Proto::Tcp, Origin::Selected) => ConnState::Opening,
            (Proto::Tcp, _) => ConnState::Established,
        };
        CrtEntry {
            target,
            uses_ipsec,
            state,
            origin,
            last_seen: now,
        }
    }

    /// Advance the TCP state for a packet with `flags`, from the client if
    /// `from_client`. Returns true if the entry must go now (RST).
    pub fn on_packet(&mut self, flags: TcpFlags, from_client: bool, now: Instant) -> bool {
        self.last_seen = now;
        if self.state == ConnState::Udp {
            return false;
        }
        //= https://www.rfc-editor.org/rfc/rfc9293#section-3.10.7.4
        //# If the RST bit is set, then any outstanding RECEIVEs and SEND
        //# should receive "reset" responses.
        if flags.has(TcpFlags::RST) {
            return true;
        }
        if flags.has(TcpFlags::FIN) {
            self.state = match (self.state, from_client) {
                (ConnState::FinFromServer, true) | (ConnState::FinFromClient, false) => {
                    ConnState::Closing
                }
                (ConnState::Closing, _) => ConnState::Closing,
                (_, true) => ConnState::FinFromClient,
                (_, false) => ConnState::FinFromServer,
            };
        } else if self.state == ConnState::Opening && !flags.is_initial_syn() {
            self.state = ConnState::Established;
        }
        false
    }

    /// True if the entry has expired at `now`.
    pub fn expired(&self, now: Instant, t: &Timeouts) -> bool {
        let limit = match self.state {
            ConnState::Opening => t.tcp_opening,
            ConnState::Established => t.tcp_established,
            ConnState::FinFromClient | ConnState::FinFromServer => t.tcp_half_closed,
            ConnState::Closing => t.tcp_linger,
            ConnState::Udp => t.udp,
        };
        now.saturating_duration_since(self.last_seen) >= limit
    }
}

/// A [`FlowKey`] packed into three machine words for hashing and comparing:
/// both addresses as 128-bit integers (IPv4 as IPv4-mapped IPv6), ports,
/// protocol and family in one `u64`. Hashing it takes two hasher rounds
/// instead of the dozen that the derived `Hash` of two `IpAddr` enums costs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct PackedFlow {
    client: u128,
    dvipa: u128,
    rest: u64,
}

impl std::hash::Hash for PackedFlow {
    #[inline]
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        // Injective in the client for a given DVIPA; the few DVIPAs of a site
        // cannot make the map degrade, and equality still compares all fields.
        state.write_u128(self.client ^ self.dvipa.rotate_left(64));
        state.write_u64(self.rest);
    }
}

#[inline]
fn ip_bits(ip: IpAddr) -> (u128, bool) {
    match ip {
        IpAddr::V4(a) => (u128::from(a.to_ipv6_mapped()), true),
        IpAddr::V6(a) => (u128::from(a), false),
    }
}

impl PackedFlow {
    #[inline]
    fn pack(k: &FlowKey) -> Self {
        let (client, v4) = ip_bits(k.client);
        let (dvipa, _) = ip_bits(k.dvipa);
        let rest = (u64::from(k.client_port) << 32)
            | (u64::from(k.dvipa_port) << 16)
            | (u64::from(k.proto.number()) << 8)
            | u64::from(v4);
        PackedFlow {
            client,
            dvipa,
            rest,
        }
    }

    fn unpack(&self) -> FlowKey {
        let v4 = self.rest & 1 == 1;
        let ip = |bits: u128| {
            let a = Ipv6Addr::from(bits);
            match (v4, a.to_ipv4_mapped()) {
                (true, Some(b)) => IpAddr::V4(b),
                _ => IpAddr::V6(a),
            }
        };
        FlowKey {
            client: ip(self.client),
            client_port: (self.rest >> 32) as u16,
            dvipa: ip(self.dvipa),
            dvipa_port: (self.rest >> 16) as u16,
            proto: if (self.rest >> 8) as u8 == crate::flow::IPPROTO_UDP {
                Proto::Udp
            } else {
                Proto::Tcp
            },
        }
    }
}

/// The CRT: connection → [`CrtEntry`].
#[derive(Clone, Debug)]
pub struct Crt {
    map: HashMap<PackedFlow, CrtEntry, ahash::RandomState>,
    /// Most entries held at once.
    max: usize,
    /// Connections created in the Opening state, oldest first; an entry may
    /// have left the table or the state since (checked when it is used).
    embryonic: VecDeque<PackedFlow>,
}

impl Default for Crt {
    fn default() -> Self {
        Crt::with_capacity(0, DEFAULT_MAX)
    }
}

/// Default bound of the CRT.
pub const DEFAULT_MAX: usize = 1 << 20;

/// A new connection found the table full and nothing it may evict.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CrtFull;

impl Crt {
    /// An empty table with room for `capacity` connections before it grows,
    /// holding at most `max`.
    pub fn with_capacity(capacity: usize, max: usize) -> Self {
        Crt {
            map: HashMap::with_capacity_and_hasher(capacity.min(max), ahash::RandomState::new()),
            max: max.max(1),
            embryonic: VecDeque::new(),
        }
    }

    /// Add a new connection. At the bound, the oldest embryonic entry makes
    /// room and is returned (the caller updates what counted it).
    pub fn insert_new(
        &mut self,
        key: FlowKey,
        e: CrtEntry,
    ) -> Result<Option<(FlowKey, CrtEntry)>, CrtFull> {
        let packed = PackedFlow::pack(&key);
        let mut evicted = None;
        if !self.map.contains_key(&packed) && self.map.len() >= self.max {
            evicted = Some(self.evict_embryonic().ok_or(CrtFull)?);
        }
        if e.state == ConnState::Opening {
            self.embryonic.push_back(packed);
            if self.embryonic.len() > 2 * self.max {
                let map = &self.map;
                self.embryonic
                    .retain(|k| map.get(k).is_some_and(|e| e.state == ConnState::Opening));
            }
        }
        self.map.insert(packed, e);
        Ok(evicted)
    }

    fn evict_embryonic(&mut self) -> Option<(FlowKey, CrtEntry)> {
        while let Some(k) = self.embryonic.pop_front() {
            if self
                .map
                .get(&k)
                .is_some_and(|e| e.state == ConnState::Opening)
            {
                let e = self.map.remove(&k)?;
                return Some((k.unpack(), e));
            }
        }
        None
    }

    /// The bound.
    pub fn max(&self) -> usize {
        self.max
    }

    /// The entry of `key`.
    #[inline]
    pub fn get(&self, key: &FlowKey) -> Option<&CrtEntry> {
        self.map.get(&PackedFlow::pack(key))
    }

    /// The entry of `key`, mutable.
    #[inline]
    pub fn get_mut(&mut self, key: &FlowKey) -> Option<&mut CrtEntry> {
        self.map.get_mut(&PackedFlow::pack(key))
    }

    /// Insert or replace, ignoring the bound (a connection a target reports
    /// already exists); returns the old entry.
    pub fn insert(&mut self, key: FlowKey, e: CrtEntry) -> Option<CrtEntry> {
        self.map.insert(PackedFlow::pack(&key), e)
    }

    /// Remove.
    pub fn remove(&mut self, key: &FlowKey) -> Option<CrtEntry> {
        self.map.remove(&PackedFlow::pack(key))
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// True if empty.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// All entries.
    pub fn iter(&self) -> impl Iterator<Item = (FlowKey, &CrtEntry)> {
        self.map.iter().map(|(k, e)| (k.unpack(), e))
    }

    /// Remove every entry that expired at `now`, calling `gone` for each.
    pub fn expire(
        &mut self,
        now: Instant,
        t: &Timeouts,
        mut gone: impl FnMut(&FlowKey, &CrtEntry),
    ) {
        self.map.retain(|k, e| {
            if e.expired(now, t) {
                gone(&k.unpack(), e);
                false
            } else {
                true
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tcp_close_sequence() {
        let now = Instant::now();
        let mut e = CrtEntry::new(NodeId(1), Proto::Tcp, true, Origin::Selected, now);
        assert_eq!(e.state, ConnState::Opening);
        // Retransmitted SYN keeps it opening.
        assert!(!e.on_packet(TcpFlags(TcpFlags::SYN), true, now));
        assert_eq!(e.state, ConnState::Opening);
        assert!(!e.on_packet(TcpFlags(TcpFlags::ACK), true, now));
        assert_eq!(e.state, ConnState::Established);
        e.on_packet(TcpFlags(TcpFlags::FIN | TcpFlags::ACK), false, now);
        assert_eq!(e.state, ConnState::FinFromServer);
        e.on_packet(TcpFlags(TcpFlags::FIN | TcpFlags::ACK), true, now);
        assert_eq!(e.state, ConnState::Closing);
        let t = Timeouts::default();
        assert!(!e.expired(now + Duration::from_secs(9), &t));
        assert!(e.expired(now + Duration::from_secs(10), &t));
        assert!(e.on_packet(TcpFlags(TcpFlags::RST), true, now));
    }

    proptest::proptest! {
        #[test]
        fn packing_round_trips(v4 in proptest::prelude::any::<bool>(), a in proptest::prelude::any::<[u8; 16]>(),
                               b in proptest::prelude::any::<[u8; 16]>(), p1 in 0u16.., p2 in 0u16.., udp in proptest::prelude::any::<bool>()) {
            let (client, dvipa) = if v4 {
                (IpAddr::from([a[0], a[1], a[2], a[3]]), IpAddr::from([b[0], b[1], b[2], b[3]]))
            } else {
                (IpAddr::from(a), IpAddr::from(b))
            };
            let k = FlowKey { client, client_port: p1, dvipa, dvipa_port: p2, proto: if udp { Proto::Udp } else { Proto::Tcp } };
            proptest::prop_assert_eq!(PackedFlow::pack(&k).unpack(), k);
        }
    }

    #[test]
    fn v4_and_mapped_v6_are_different_keys() {
        let k4 = FlowKey {
            client: "192.0.2.1".parse().unwrap(),
            client_port: 1,
            dvipa: "198.51.100.7".parse().unwrap(),
            dvipa_port: 80,
            proto: Proto::Tcp,
        };
        let k6 = FlowKey {
            client: "::ffff:192.0.2.1".parse().unwrap(),
            dvipa: "::ffff:198.51.100.7".parse().unwrap(),
            ..k4
        };
        assert_ne!(PackedFlow::pack(&k4), PackedFlow::pack(&k6));
        assert_eq!(PackedFlow::pack(&k6).unpack(), k6);
    }

    #[test]
    fn expiry_by_state() {
        let t = Timeouts::default();
        let now = Instant::now();
        let mut crt = Crt::with_capacity(4, DEFAULT_MAX);
        let key = |p| FlowKey {
            client: "192.0.2.1".parse().unwrap(),
            client_port: p,
            dvipa: "198.51.100.7".parse().unwrap(),
            dvipa_port: 80,
            proto: Proto::Tcp,
        };
        crt.insert(
            key(1),
            CrtEntry::new(NodeId(1), Proto::Tcp, false, Origin::Selected, now),
        );
        crt.insert(
            key(2),
            CrtEntry::new(NodeId(1), Proto::Tcp, false, Origin::Existing, now),
        );
        let mut gone = Vec::new();
        crt.expire(now + Duration::from_secs(30), &t, |k, _| {
            gone.push(k.client_port)
        });
        assert_eq!(gone, vec![1]);
        assert_eq!(crt.len(), 1);
        crt.expire(now + Duration::from_secs(3600), &t, |k, _| {
            gone.push(k.client_port)
        });
        assert_eq!(gone, vec![1, 2]);
        assert!(crt.is_empty());
    }
}
