//! Traffic selectors (RFC 7296 §3.13.1): address and port ranges with an IP protocol,
//! their intersection (used to narrow, §2.9) and their strongSwan-style display.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

/// TS types (§3.13.1).
pub mod ts_type {
    /// TS_IPV4_ADDR_RANGE
    pub const IPV4_ADDR_RANGE: u8 = 7;
    /// TS_IPV6_ADDR_RANGE
    pub const IPV6_ADDR_RANGE: u8 = 8;
}

/// One traffic selector (§3.13.1): an address range, a port range and an IP protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct TrafficSelector {
    /// IP protocol id (0 = any).
    pub protocol: u8,
    /// First port.
    pub start_port: u16,
    /// Last port.
    pub end_port: u16,
    /// First address.
    pub start: IpAddr,
    /// Last address (same family as `start`).
    pub end: IpAddr,
}

impl TrafficSelector {
    /// A selector for one host, all protocols and ports.
    pub fn host(addr: IpAddr) -> Self {
        TrafficSelector {
            protocol: 0,
            start_port: 0,
            end_port: 65535,
            start: addr,
            end: addr,
        }
    }

    /// A selector for a prefix, all protocols and ports.
    pub fn prefix(net: IpAddr, len: u8) -> Self {
        match net {
            IpAddr::V4(a) => {
                let a = u32::from(a);
                let mask = if len == 0 {
                    0
                } else {
                    u32::MAX << (32 - len.min(32))
                };
                TrafficSelector {
                    protocol: 0,
                    start_port: 0,
                    end_port: 65535,
                    start: IpAddr::V4((a & mask).into()),
                    end: IpAddr::V4((a | !mask).into()),
                }
            }
            IpAddr::V6(a) => {
                let a = u128::from(a);
                let mask = if len == 0 {
                    0
                } else {
                    u128::MAX << (128 - len.min(128))
                };
                TrafficSelector {
                    protocol: 0,
                    start_port: 0,
                    end_port: 65535,
                    start: IpAddr::V6((a & mask).into()),
                    end: IpAddr::V6((a | !mask).into()),
                }
            }
        }
    }

    /// The intersection of two selectors (§2.9 narrowing), if any.
    pub fn intersect(&self, other: &TrafficSelector) -> Option<TrafficSelector> {
        let protocol = match (self.protocol, other.protocol) {
            (0, p) | (p, 0) => p,
            (a, b) if a == b => a,
            _ => return None,
        };
        let start_port = self.start_port.max(other.start_port);
        let end_port = self.end_port.min(other.end_port);
        if start_port > end_port {
            return None;
        }
        let (start, end) = match (self.start, self.end, other.start, other.end) {
            (IpAddr::V4(a1), IpAddr::V4(a2), IpAddr::V4(b1), IpAddr::V4(b2)) => {
                let s = u32::from(a1).max(u32::from(b1));
                let e = u32::from(a2).min(u32::from(b2));
                if s > e {
                    return None;
                }
                (IpAddr::V4(s.into()), IpAddr::V4(e.into()))
            }
            (IpAddr::V6(a1), IpAddr::V6(a2), IpAddr::V6(b1), IpAddr::V6(b2)) => {
                let s = u128::from(a1).max(u128::from(b1));
                let e = u128::from(a2).min(u128::from(b2));
                if s > e {
                    return None;
                }
                (IpAddr::V6(s.into()), IpAddr::V6(e.into()))
            }
            _ => return None,
        };
        Some(TrafficSelector {
            protocol,
            start_port,
            end_port,
            start,
            end,
        })
    }

    /// Does `self` lie entirely within `other`?
    pub fn is_subset_of(&self, other: &TrafficSelector) -> bool {
        self.intersect(other).as_ref() == Some(self)
    }
}

impl std::fmt::Display for TrafficSelector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.start == self.end {
            write!(f, "{}", self.start)?;
        } else if let Some(len) = prefix_len(self.start, self.end) {
            write!(f, "{}/{len}", self.start)?;
        } else {
            write!(f, "{}..{}", self.start, self.end)?;
        }
        if self.protocol != 0 || self.start_port != 0 || self.end_port != 65535 {
            write!(
                f,
                "[{}/{}-{}]",
                self.protocol, self.start_port, self.end_port
            )?;
        }
        Ok(())
    }
}

/// The prefix length when `start..end` is exactly one prefix (strongSwan prints
/// selectors that way).
fn prefix_len(start: IpAddr, end: IpAddr) -> Option<u32> {
    let (s, e, bits) = match (start, end) {
        (IpAddr::V4(s), IpAddr::V4(e)) => (u32::from(s) as u128, u32::from(e) as u128, 32),
        (IpAddr::V6(s), IpAddr::V6(e)) => (u128::from(s), u128::from(e), 128),
        _ => return None,
    };
    let host = s ^ e;
    // The differing bits must be a run of low ones, all zero in start.
    let ok = host.checked_add(1).is_none_or(|x| x.is_power_of_two()) && s & host == 0;
    ok.then(|| bits - host.count_ones())
}
