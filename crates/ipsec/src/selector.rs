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
use plexgate_wire::ip::FiveTuple;

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

#[cfg(test)]
mod tests {
    use super::*;

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
