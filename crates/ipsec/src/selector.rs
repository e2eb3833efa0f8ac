//! Traffic selectors: an address range, an IP protocol and a port range, as
//! IKEv2 negotiates them (RFC 7296 §3.13.1) and as the SPD matches packets
//! (RFC 4301 §4.4.1.1).
//!
//! Protocol 0 means any protocol; the port range 0..=65535 means any port.
//! For ICMP the "port" is type << 8 | code (RFC 7296 §3.13.1). A packet whose
//! ports are OPAQUE (a non-first fragment, or a protocol without ports) matches
//! only a selector with the full port range or the OPAQUE range 65535..=0.

use core::net::IpAddr;
use ipnet::IpNet;
use plexgate_wire::ip::{FiveTuple, TupleV4};

/// One traffic selector: `start_addr..=end_addr`, `protocol`,
/// `start_port..=end_port`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct TrafficSelector {
    /// IP protocol, 0 for any.
    pub protocol: u8,
    /// First port (or ICMP type/code) of the range.
    pub start_port: u16,
    /// Last port of the range.
    pub end_port: u16,
    /// First address (IPv4 or IPv6; same family as `end_addr`).
    pub start_addr: IpAddr,
    /// Last address.
    pub end_addr: IpAddr,
}

impl TrafficSelector {
    /// All addresses of a prefix, any protocol, any port.
    pub fn from_net(net: IpNet) -> Self {
        TrafficSelector {
            protocol: 0,
            start_port: 0,
            end_port: u16::MAX,
            start_addr: net.network(),
            end_addr: net.broadcast(),
        }
    }

    /// One address, any protocol, any port.
    pub fn host(addr: IpAddr) -> Self {
        Self::from_net(IpNet::from(addr))
    }

    /// Every IPv4 address (0.0.0.0/0).
    pub fn any_v4() -> Self {
        Self::from_net("0.0.0.0/0".parse().expect("valid prefix"))
    }

    /// Every IPv6 address (::/0).
    pub fn any_v6() -> Self {
        Self::from_net("::/0".parse().expect("valid prefix"))
    }

    /// The same selector restricted to one protocol.
    pub fn with_protocol(mut self, protocol: u8) -> Self {
        self.protocol = protocol;
        self
    }

    /// The same selector restricted to a port range.
    pub fn with_ports(mut self, start: u16, end: u16) -> Self {
        self.start_port = start;
        self.end_port = end;
        self
    }

    /// Whether `addr` lies in the address range (same family only).
    #[inline]
    pub fn contains_addr(&self, addr: IpAddr) -> bool {
        match (self.start_addr, self.end_addr, addr) {
            (IpAddr::V4(s), IpAddr::V4(e), IpAddr::V4(a)) => s <= a && a <= e,
            (IpAddr::V6(s), IpAddr::V6(e), IpAddr::V6(a)) => s <= a && a <= e,
            _ => false,
        }
    }

    /// Whether the port range is "any".
    #[inline]
    pub fn any_port(&self) -> bool {
        (self.start_port == 0 && self.end_port == u16::MAX)
            || (self.start_port == u16::MAX && self.end_port == 0)
    }

    /// Whether a packet's (address, protocol, port) lies in this selector.
    #[inline]
    pub fn matches(&self, addr: IpAddr, protocol: u8, port: Option<u16>) -> bool {
        self.contains_addr(addr)
            && (self.protocol == 0 || self.protocol == protocol)
            && match port {
                _ if self.any_port() => true,
                Some(p) => self.start_port <= p && p <= self.end_port,
                None => false,
            }
    }

    /// Whether the packet's source side matches this selector.
    #[inline]
    pub fn matches_src(&self, t: &FiveTuple) -> bool {
        self.matches(t.src, t.protocol, t.src_port)
    }

    /// Whether the packet's destination side matches this selector.
    #[inline]
    pub fn matches_dst(&self, t: &FiveTuple) -> bool {
        self.matches(t.dst, t.protocol, t.dst_port)
    }
}

/// Whether `t` flows from `remote` to `local` (an inbound packet of an SA
/// whose selectors are `local` / `remote`; empty lists match anything).
pub fn inbound_matches(
    local: &[TrafficSelector],
    remote: &[TrafficSelector],
    t: &FiveTuple,
) -> bool {
    (local.is_empty() || local.iter().any(|s| s.matches_dst(t)))
        && (remote.is_empty() || remote.iter().any(|s| s.matches_src(t)))
}

/// Whether `t` flows from `local` to `remote` (an outbound packet).
pub fn outbound_matches(
    local: &[TrafficSelector],
    remote: &[TrafficSelector],
    t: &FiveTuple,
) -> bool {
    (local.is_empty() || local.iter().any(|s| s.matches_src(t)))
        && (remote.is_empty() || remote.iter().any(|s| s.matches_dst(t)))
}

/// One selector with its addresses as integers, for the per-packet check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Flat {
    v6: bool,
    lo: u128,
    hi: u128,
    protocol: u8,
    any_port: bool,
    start_port: u16,
    end_port: u16,
}

#[inline]
fn addr_bits(a: IpAddr) -> (bool, u128) {
    match a {
        IpAddr::V4(a) => (false, u128::from(u32::from(a))),
        IpAddr::V6(a) => (true, u128::from(a)),
    }
}

impl Flat {
    fn new(t: &TrafficSelector) -> Flat {
        let (v6, lo) = addr_bits(t.start_addr);
        let (v6_end, hi) = addr_bits(t.end_addr);
        // A range whose ends are of different families contains nothing
        // (`contains_addr`): make it empty.
        let (lo, hi) = if v6 == v6_end { (lo, hi) } else { (1, 0) };
        Flat {
            v6,
            lo,
            hi,
            protocol: t.protocol,
            any_port: t.any_port(),
            start_port: t.start_port,
            end_port: t.end_port,
        }
    }

    /// Exactly [`TrafficSelector::matches`].
    #[inline(always)]
    fn matches(&self, (v6, a): (bool, u128), protocol: u8, port: Option<u16>) -> bool {
        self.v6 == v6
            && self.lo <= a
            && a <= self.hi
            && (self.protocol == 0 || self.protocol == protocol)
            && (self.any_port || port.is_some_and(|p| self.start_port <= p && p <= self.end_port))
    }
}

/// [`Flat`] for IPv4 addresses only, half a cache line smaller: what the check
/// of every IPv4 inbound packet walks ([`InboundSelectors::matches_v4`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FlatV4 {
    lo: u32,
    hi: u32,
    protocol: u8,
    any_port: bool,
    start_port: u16,
    end_port: u16,
}

impl FlatV4 {
    /// The IPv4 selector of `f`, or `None` for an IPv6 one (which no IPv4
    /// address matches).
    fn of(f: &Flat) -> Option<FlatV4> {
        if f.v6 {
            return None;
        }
        // An empty range (lo > hi) stays empty; IPv4 ends fit in 32 bits.
        let (lo, hi) = match (u32::try_from(f.lo), u32::try_from(f.hi)) {
            (Ok(lo), Ok(hi)) => (lo, hi),
            _ => (1, 0),
        };
        Some(FlatV4 {
            lo,
            hi,
            protocol: f.protocol,
            any_port: f.any_port,
            start_port: f.start_port,
            end_port: f.end_port,
        })
    }

    /// Exactly [`Flat::matches`] for an IPv4 address.
    #[inline(always)]
    fn matches(&self, a: u32, protocol: u8, port: Option<u16>) -> bool {
        self.lo <= a
            && a <= self.hi
            && (self.protocol == 0 || self.protocol == protocol)
            && (self.any_port || port.is_some_and(|p| self.start_port <= p && p <= self.end_port))
    }
}

/// Whether any of `list` matches (a plain loop: `Iterator::any` with a
/// closure was left out of line, a call per list per packet).
#[inline(always)]
fn any_v4(list: &[FlatV4], a: u32, protocol: u8, port: Option<u16>) -> bool {
    for s in list {
        if s.matches(a, protocol, port) {
            return true;
        }
    }
    false
}

/// An SA's selectors prepared once, when the SA is installed, for the check of
/// every inbound packet (RFC 4301 §5.2 step 4): addresses as integers, "any
/// port" decided up front. [`InboundSelectors::matches`] gives exactly what
/// [`inbound_matches`] gives for the same lists.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InboundSelectors {
    local: Vec<Flat>,
    remote: Vec<Flat>,
    /// The IPv4 entries of `local` and `remote`, in order.
    local_v4: Vec<FlatV4>,
    remote_v4: Vec<FlatV4>,
}

impl InboundSelectors {
    /// Prepare an SA's `local` and `remote` selectors.
    pub fn new(local: &[TrafficSelector], remote: &[TrafficSelector]) -> Self {
        let local: Vec<Flat> = local.iter().map(Flat::new).collect();
        let remote: Vec<Flat> = remote.iter().map(Flat::new).collect();
        InboundSelectors {
            local_v4: local.iter().filter_map(FlatV4::of).collect(),
            remote_v4: remote.iter().filter_map(FlatV4::of).collect(),
            local,
            remote,
        }
    }

    /// Whether both lists are empty (everything matches).
    #[inline]
    pub fn is_any(&self) -> bool {
        self.local.is_empty() && self.remote.is_empty()
    }

    /// Whether `t` flows from the remote selectors to the local ones (empty
    /// lists match anything): [`inbound_matches`].
    #[inline]
    pub fn matches(&self, t: &FiveTuple) -> bool {
        let (src, dst) = (addr_bits(t.src), addr_bits(t.dst));
        (self.local.is_empty()
            || self
                .local
                .iter()
                .any(|s| s.matches(dst, t.protocol, t.dst_port)))
            && (self.remote.is_empty()
                || self
                    .remote
                    .iter()
                    .any(|s| s.matches(src, t.protocol, t.src_port)))
    }

    /// [`InboundSelectors::matches`] for an IPv4 packet's tuple in integer form:
    /// `matches_v4(t) == matches(&t.to_five())`.
    #[inline(always)]
    pub fn matches_v4(&self, t: TupleV4) -> bool {
        // An empty list matches anything; an IPv6-only list matches no IPv4
        // packet (its `_v4` list is empty while the list itself is not).
        (self.local.is_empty() || any_v4(&self.local_v4, t.dst, t.protocol, t.dst_port))
            && (self.remote.is_empty() || any_v4(&self.remote_v4, t.src, t.protocol, t.src_port))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn arb_addr() -> impl Strategy<Value = IpAddr> {
        prop_oneof![
            // Few distinct values, so that ranges and packets meet often.
            (0u32..8).prop_map(|x| IpAddr::from([10, 0, 0, x as u8])),
            any::<u32>().prop_map(|x| IpAddr::from(std::net::Ipv4Addr::from(x))),
            (0u128..8).prop_map(|x| IpAddr::from(std::net::Ipv6Addr::from(x))),
            any::<u128>().prop_map(|x| IpAddr::from(std::net::Ipv6Addr::from(x))),
        ]
    }

    fn arb_port() -> impl Strategy<Value = u16> {
        prop_oneof![0u16..4, Just(u16::MAX), Just(u16::MAX - 1), any::<u16>()]
    }

    fn arb_ts() -> impl Strategy<Value = TrafficSelector> {
        (
            arb_addr(),
            arb_addr(),
            prop_oneof![Just(0u8), Just(6u8), Just(17u8), any::<u8>()],
            arb_port(),
            arb_port(),
        )
            .prop_map(|(a, b, protocol, p, q)| TrafficSelector {
                protocol,
                start_port: p,
                end_port: q,
                start_addr: a,
                end_addr: b,
            })
    }

    fn arb_tuple() -> impl Strategy<Value = FiveTuple> {
        (
            arb_addr(),
            arb_addr(),
            prop_oneof![Just(6u8), Just(17u8), Just(1u8), any::<u8>()],
            proptest::option::of(arb_port()),
            proptest::option::of(arb_port()),
        )
            .prop_map(|(src, dst, protocol, src_port, dst_port)| FiveTuple {
                src,
                dst,
                protocol,
                src_port,
                dst_port,
            })
    }

    proptest! {
        /// The prepared selectors decide exactly as `inbound_matches`.
        #[test]
        fn inbound_selectors_equal_inbound_matches(
            local in proptest::collection::vec(arb_ts(), 0..3),
            remote in proptest::collection::vec(arb_ts(), 0..3),
            t in arb_tuple(),
        ) {
            let c = InboundSelectors::new(&local, &remote);
            prop_assert_eq!(c.matches(&t), inbound_matches(&local, &remote, &t));
            if let (IpAddr::V4(src), IpAddr::V4(dst)) = (t.src, t.dst) {
                let v4 = TupleV4 {
                    src: u32::from(src),
                    dst: u32::from(dst),
                    protocol: t.protocol,
                    src_port: t.src_port,
                    dst_port: t.dst_port,
                };
                prop_assert_eq!(c.matches_v4(v4), c.matches(&t));
            }
            prop_assert_eq!(c.is_any(), local.is_empty() && remote.is_empty());
        }
    }

    fn tuple(src: &str, dst: &str, proto: u8, sp: Option<u16>, dp: Option<u16>) -> FiveTuple {
        FiveTuple {
            src: src.parse().unwrap(),
            dst: dst.parse().unwrap(),
            protocol: proto,
            src_port: sp,
            dst_port: dp,
        }
    }

    #[test]
    fn prefix_protocol_ports() {
        let ts = TrafficSelector::from_net("10.1.0.0/16".parse().unwrap())
            .with_protocol(6)
            .with_ports(80, 443);
        assert!(ts.matches("10.1.255.255".parse().unwrap(), 6, Some(443)));
        assert!(!ts.matches("10.2.0.0".parse().unwrap(), 6, Some(443)));
        assert!(!ts.matches("10.1.0.1".parse().unwrap(), 17, Some(443)));
        assert!(!ts.matches("10.1.0.1".parse().unwrap(), 6, Some(444)));
        assert!(!ts.matches("10.1.0.1".parse().unwrap(), 6, None)); // OPAQUE
        assert!(!ts.matches("::1".parse().unwrap(), 6, Some(80))); // other family
        let any = TrafficSelector::any_v4();
        assert!(any.matches("1.2.3.4".parse().unwrap(), 47, None));
        assert!(TrafficSelector::any_v6().matches(
            "2001:db8::1".parse().unwrap(),
            58,
            Some(0x8000)
        ));
    }

    #[test]
    fn sa_direction() {
        // The responder's Child SA of /work/shared/captures/gcm128-x25519:
        // local_ts 203.0.113.250/32, remote_ts 192.168.250.1/32.
        let local = [TrafficSelector::host("203.0.113.250".parse().unwrap())];
        let remote = [TrafficSelector::host("192.168.250.1".parse().unwrap())];
        let ping_in = tuple(
            "192.168.250.1",
            "203.0.113.250",
            1,
            Some(0x0800),
            Some(0x0800),
        );
        assert!(inbound_matches(&local, &remote, &ping_in));
        assert!(!outbound_matches(&local, &remote, &ping_in));
        let reply = tuple("203.0.113.250", "192.168.250.1", 1, Some(0), Some(0));
        assert!(outbound_matches(&local, &remote, &reply));
        assert!(inbound_matches(&[], &[], &reply));
        let spoof = tuple(
            "192.168.250.2",
            "203.0.113.250",
            1,
            Some(0x0800),
            Some(0x0800),
        );
        assert!(!inbound_matches(&local, &remote, &spoof));
    }
}
