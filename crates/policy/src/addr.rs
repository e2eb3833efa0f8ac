//! Addresses, port ranges, protocols and traffic selectors as written in the
//! policy file.
//!
//! Traffic selectors use strongSwan's swanctl.conf syntax: an address part
//! (`10.1.0.0/16`, `10.1.0.5`, `10.1.0.5-10.1.0.9`, `any`, or `dynamic`) optionally
//! followed by `[proto]` or `[proto/port]` / `[proto/lo-hi]`, e.g.
//! `10.100.0.10/32[tcp/443]`. In IKEv2 a traffic selector is an address *range*, a
//! protocol and a port *range* (RFC 7296 §3.13.1), so that is what they parse into.

//= https://www.rfc-editor.org/rfc/rfc7296#section-3.13.1
//# Start Port (2 octets, unsigned integer) - Value specifying the smallest port
//# number allowed by this Traffic Selector.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use ipnet::IpNet;

/// An inclusive range of addresses of one family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct IpRange {
    /// First address.
    pub start: IpAddr,
    /// Last address (same family as `start`, not below it).
    pub end: IpAddr,
}

fn ip_u128(a: IpAddr) -> u128 {
    match a {
        IpAddr::V4(v) => u128::from(u32::from(v)),
        IpAddr::V6(v) => u128::from(v),
    }
}

impl IpRange {
    /// The range of one address.
    pub fn host(a: IpAddr) -> Self {
        IpRange { start: a, end: a }
    }

    /// The range a prefix covers.
    pub fn from_net(n: IpNet) -> Self {
        IpRange {
            start: n.network(),
            end: n.broadcast(),
        }
    }

    /// True if `a` lies in the range.
    pub fn contains(&self, a: IpAddr) -> bool {
        a.is_ipv4() == self.start.is_ipv4()
            && ip_u128(self.start) <= ip_u128(a)
            && ip_u128(a) <= ip_u128(self.end)
    }

    /// True if every address of `o` is in `self`.
    pub fn covers(&self, o: &IpRange) -> bool {
        self.contains(o.start) && self.contains(o.end)
    }

    /// True if the two ranges share an address.
    pub fn overlaps(&self, o: &IpRange) -> bool {
        self.start.is_ipv4() == o.start.is_ipv4()
            && ip_u128(self.start) <= ip_u128(o.end)
            && ip_u128(o.start) <= ip_u128(self.end)
    }

    /// True if the range is a single address.
    pub fn is_host(&self) -> bool {
        self.start == self.end
    }
}

impl IpRange {
    /// The prefix this range is exactly, if it is one.
    pub fn as_net(&self) -> Option<IpNet> {
        let bits: u32 = if self.start.is_ipv4() { 32 } else { 128 };
        let (s, e) = (ip_u128(self.start), ip_u128(self.end));
        let span = e.checked_sub(s)?.checked_add(1);
        let host_bits = match span {
            Some(n) if n.is_power_of_two() => n.trailing_zeros(),
            None if bits == 128 => 128, // the whole IPv6 space
            _ => return None,
        };
        let aligned = host_bits >= 128 || s & ((1u128 << host_bits) - 1) == 0;
        if !aligned || host_bits > bits {
            return None;
        }
        IpNet::new(self.start, (bits - host_bits) as u8).ok()
    }
}

impl fmt::Display for IpRange {
    /// A host as `a`, a prefix as `a/len`, anything else as `a-b`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_host() {
            write!(f, "{}", self.start)
        } else if let Some(n) = self.as_net() {
            write!(f, "{n}")
        } else {
            write!(f, "{}-{}", self.start, self.end)
        }
    }
}

/// An address selector: every address, or a range of one family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AddrSel {
    /// `any`: all IPv4 and IPv6 addresses.
    Any,
    /// A CIDR, a single address or an explicit `a-b` range.
    Range(IpRange),
}

impl AddrSel {
    /// True if every address `o` matches is matched by `self`.
    pub fn covers(&self, o: &AddrSel) -> bool {
        match (self, o) {
            (AddrSel::Any, _) => true,
            (AddrSel::Range(_), AddrSel::Any) => false,
            (AddrSel::Range(a), AddrSel::Range(b)) => a.covers(b),
        }
    }

    /// True if `a` matches.
    pub fn contains(&self, a: IpAddr) -> bool {
        match self {
            AddrSel::Any => true,
            AddrSel::Range(r) => r.contains(a),
        }
    }
}

/// Parses `any`, `A`, `A/len` (host bits must be zero) or `A-B`.
pub fn parse_addr_sel(s: &str) -> Result<AddrSel, String> {
    let s = s.trim();
    if s.eq_ignore_ascii_case("any") || s == "%any" {
        return Ok(AddrSel::Any);
    }
    if let Some((a, b)) = s.split_once('-') {
        let a = parse_ip(a.trim())?;
        let b = parse_ip(b.trim())?;
        if a.is_ipv4() != b.is_ipv4() {
            return Err(format!("range {s} mixes IPv4 and IPv6"));
        }
        if ip_u128(a) > ip_u128(b) {
            return Err(format!("range {s} is inverted: {a} comes after {b}"));
        }
        return Ok(AddrSel::Range(IpRange { start: a, end: b }));
    }
    if s.contains('/') {
        return parse_subnet(s).map(|n| AddrSel::Range(IpRange::from_net(n)));
    }
    parse_ip(s).map(|a| AddrSel::Range(IpRange::host(a)))
}

/// Parses an IP address with a readable error.
pub fn parse_ip(s: &str) -> Result<IpAddr, String> {
    IpAddr::from_str(s.trim()).map_err(|_| format!("`{s}` is not an IP address"))
}

/// Parses a subnet in CIDR form; host bits must be zero.
pub fn parse_subnet(s: &str) -> Result<IpNet, String> {
    let n = IpNet::from_str(s.trim())
        .map_err(|_| format!("`{s}` is not a subnet in CIDR form (like 10.1.0.0/24)"))?;
    if n.trunc() != n {
        return Err(format!(
            "subnet {s} has host bits set; did you mean {}?",
            n.trunc()
        ));
    }
    Ok(n)
}

/// Parses an interface address with its prefix length (`10.9.0.1/30`): host bits
/// are allowed, they are the interface's own address.
pub fn parse_if_addr(s: &str) -> Result<IpNet, String> {
    IpNet::from_str(s.trim())
        .map_err(|_| format!("`{s}` is not an address with prefix length (like 10.9.0.1/30)"))
}

/// An inclusive port range; `0-65535` means any port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PortRange {
    /// Lowest port.
    pub lo: u16,
    /// Highest port.
    pub hi: u16,
}

impl PortRange {
    /// Every port.
    pub const ANY: PortRange = PortRange { lo: 0, hi: 65535 };

    /// True if every port of `o` is in `self`.
    pub fn covers(&self, o: &PortRange) -> bool {
        self.lo <= o.lo && o.hi <= self.hi
    }

    /// True if the two ranges share a port.
    pub fn overlaps(&self, o: &PortRange) -> bool {
        self.lo <= o.hi && o.lo <= self.hi
    }

    /// True if `p` is in the range.
    pub fn contains(&self, p: u16) -> bool {
        self.lo <= p && p <= self.hi
    }
}

impl fmt::Display for PortRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if *self == PortRange::ANY {
            f.write_str("any")
        } else if self.lo == self.hi {
            write!(f, "{}", self.lo)
        } else {
            write!(f, "{}-{}", self.lo, self.hi)
        }
    }
}

/// Parses `any`, `443` or `1024-65535`.
pub fn parse_ports(s: &str) -> Result<PortRange, String> {
    let s = s.trim();
    if s.eq_ignore_ascii_case("any") || s == "%any" {
        return Ok(PortRange::ANY);
    }
    let port = |p: &str| {
        p.trim()
            .parse::<u16>()
            .map_err(|_| format!("`{p}` is not a port number (0-65535)"))
    };
    match s.split_once('-') {
        Some((a, b)) => {
            let (lo, hi) = (port(a)?, port(b)?);
            if lo > hi {
                return Err(format!("port range {s} is inverted: {lo} is above {hi}"));
            }
            Ok(PortRange { lo, hi })
        }
        None => port(s).map(|p| PortRange { lo: p, hi: p }),
    }
}

/// Parses a protocol name or number: `any`, `tcp`, `udp`, `icmp`, `ipv6-icmp`,
/// `sctp`, `gre`, `esp` or 0-255. `None` means any protocol.
pub fn parse_proto(s: &str) -> Result<Option<u8>, String> {
    let s = s.trim();
    Ok(Some(match s.to_ascii_lowercase().as_str() {
        "any" | "%any" | "" => return Ok(None),
        "icmp" => 1,
        "tcp" => 6,
        "udp" => 17,
        "gre" => 47,
        "esp" => 50,
        "icmpv6" | "ipv6-icmp" => 58,
        "sctp" => 132,
        other => other.parse::<u8>().map_err(|_| {
            format!("unknown protocol `{s}`: use tcp, udp, icmp, icmpv6, sctp, gre, esp, any or a number 0-255")
        })?,
    }))
}

/// Name of a protocol number for messages.
pub fn proto_name(p: Option<u8>) -> String {
    match p {
        None => "any".into(),
        Some(1) => "icmp".into(),
        Some(6) => "tcp".into(),
        Some(17) => "udp".into(),
        Some(58) => "icmpv6".into(),
        Some(132) => "sctp".into(),
        Some(n) => n.to_string(),
    }
}

/// True if the protocol has ports (TCP, UDP, SCTP).
pub fn proto_has_ports(p: Option<u8>) -> bool {
    matches!(p, Some(6 | 17 | 132))
}

/// The address part of a traffic selector.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TsAddr {
    /// `dynamic`: the address the peer (for `remote_ts`) or this gateway (for
    /// `local_ts`) uses for IKE, or a virtual IP assigned to it.
    Dynamic,
    /// Fixed addresses.
    Sel(AddrSel),
}

/// One traffic selector (RFC 7296 §3.13.1): addresses, protocol, ports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TrafficSelector {
    /// Addresses.
    pub addr: TsAddr,
    /// IP protocol; `None` = any.
    pub proto: Option<u8>,
    /// Ports (only meaningful for TCP, UDP, SCTP; [`PortRange::ANY`] otherwise).
    pub ports: PortRange,
}

impl FromStr for TrafficSelector {
    type Err = String;

    /// Parses swanctl-style `10.1.0.0/16[tcp/443]`.
    fn from_str(s: &str) -> Result<Self, String> {
        let (addr_part, rest) = match s.find('[') {
            Some(i) => (&s[..i], Some(&s[i + 1..])),
            None => (s, None),
        };
        let addr = if addr_part.trim().eq_ignore_ascii_case("dynamic") {
            TsAddr::Dynamic
        } else {
            TsAddr::Sel(parse_addr_sel(addr_part)?)
        };
        let (mut proto, mut ports) = (None, PortRange::ANY);
        if let Some(rest) = rest {
            let inner = rest
                .strip_suffix(']')
                .ok_or_else(|| format!("traffic selector `{s}` is missing its closing `]`"))?;
            let (p, port) = match inner.split_once('/') {
                Some((p, port)) => (p, Some(port)),
                None => (inner, None),
            };
            proto = parse_proto(p)?;
            if let Some(port) = port {
                ports = parse_ports(port)?;
                if ports != PortRange::ANY && !proto_has_ports(proto) {
                    return Err(format!(
                        "traffic selector `{s}` names ports but protocol {} has none (use tcp, udp or sctp)",
                        proto_name(proto)
                    ));
                }
            }
        }
        Ok(TrafficSelector { addr, proto, ports })
    }
}

impl fmt::Display for AddrSel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AddrSel::Any => f.write_str("any"),
            AddrSel::Range(r) => r.fmt(f),
        }
    }
}

impl fmt::Display for TrafficSelector {
    /// swanctl syntax (`10.1.0.0/16[tcp/443]`); parses back to the same selector.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.addr {
            TsAddr::Dynamic => f.write_str("dynamic")?,
            TsAddr::Sel(s) => s.fmt(f)?,
        }
        match (self.proto, self.ports == PortRange::ANY) {
            (None, true) => Ok(()),
            (p, true) => write!(f, "[{}]", proto_name(p)),
            (p, false) => write!(f, "[{}/{}]", proto_name(p), self.ports),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selectors_parse() {
        let ts: TrafficSelector = "10.100.0.10/32[tcp/443]".parse().unwrap();
        assert_eq!(ts.proto, Some(6));
        assert_eq!(ts.ports, PortRange { lo: 443, hi: 443 });
        let TsAddr::Sel(AddrSel::Range(r)) = ts.addr else {
            panic!("not a range")
        };
        assert!(r.is_host());
        let ts: TrafficSelector = "dynamic[udp/1000-2000]".parse().unwrap();
        assert_eq!(ts.addr, TsAddr::Dynamic);
        assert_eq!(ts.ports, PortRange { lo: 1000, hi: 2000 });
        let ts: TrafficSelector = "2001:db8::/32".parse().unwrap();
        assert_eq!(ts.proto, None);
        assert!("10.0.0.0/8[icmp/80]".parse::<TrafficSelector>().is_err());
        assert!("10.0.0.0/8[tcp/80".parse::<TrafficSelector>().is_err());
        assert!("10.0.0.1/8"
            .parse::<TrafficSelector>()
            .unwrap_err()
            .contains("did you mean 10.0.0.0/8"));
        assert!("10.0.0.9-10.0.0.1"
            .parse::<TrafficSelector>()
            .unwrap_err()
            .contains("inverted"));
    }

    #[test]
    fn ranges_display_as_written() {
        let show = |s: &str| match parse_addr_sel(s).unwrap() {
            AddrSel::Range(r) => r.to_string(),
            AddrSel::Any => "any".into(),
        };
        assert_eq!(show("10.100.0.0/24"), "10.100.0.0/24");
        assert_eq!(show("10.100.0.0-10.100.0.20"), "10.100.0.0-10.100.0.20");
        assert_eq!(show("10.100.0.4-10.100.0.7"), "10.100.0.4/30");
        assert_eq!(show("10.100.0.5"), "10.100.0.5");
        assert_eq!(show("0.0.0.0/0"), "0.0.0.0/0");
        assert_eq!(show("::/0"), "::/0");
        assert_eq!(show("2001:db8::/32"), "2001:db8::/32");
    }

    #[test]
    fn selectors_display_round_trip() {
        for s in [
            "10.100.0.10[tcp/443]",
            "dynamic",
            "10.0.0.0/8[udp/1000-2000]",
            "any[icmp]",
            "2001:db8::/32[47]",
            "10.0.0.1-10.0.0.9",
        ] {
            let ts: TrafficSelector = s.parse().unwrap();
            assert_eq!(ts.to_string(), s);
            assert_eq!(ts.to_string().parse::<TrafficSelector>().unwrap(), ts);
        }
    }

    #[test]
    fn ranges_cover() {
        let big = parse_addr_sel("10.0.0.0/8").unwrap();
        let small = parse_addr_sel("10.1.2.3-10.1.2.9").unwrap();
        let v6 = parse_addr_sel("::1").unwrap();
        assert!(big.covers(&small));
        assert!(!small.covers(&big));
        assert!(!big.covers(&v6));
        assert!(AddrSel::Any.covers(&v6));
        assert!(!big.covers(&AddrSel::Any));
        assert_eq!(
            parse_ports("1024-65535").unwrap(),
            PortRange {
                lo: 1024,
                hi: 65535
            }
        );
        assert!(parse_ports("90-80").unwrap_err().contains("inverted"));
        assert!(parse_ports("70000").is_err());
    }
}
