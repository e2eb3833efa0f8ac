//! Veth links and a small topology builder.
//!
//! [`Veth::connect`] creates a veth pair whose two ends are born directly inside
//! two namespaces (`ip link add A netns X type veth peer name B netns Y`), so
//! interface names only have to be unique inside each namespace and parallel tests
//! never race on names in the root namespace. [`Topology`] names hosts (one
//! namespace each) and links between them, and answers "which interface / address
//! does host X have towards host Y". Deleting the namespaces deletes the links.

use crate::error::{LabError, Result};
use crate::netns::{cidr_addr, Netns};
use std::net::IpAddr;

/// Linux limit on interface names (IFNAMSIZ - 1).
const IFNAME_MAX: usize = 15;

/// One veth pair between two namespaces.
#[derive(Debug, Clone)]
pub struct Veth {
    /// Namespace name of end A.
    pub a_ns: String,
    /// Interface name of end A (inside `a_ns`).
    pub a_if: String,
    /// Addresses (CIDR) of end A.
    pub a_addrs: Vec<String>,
    /// Namespace name of end B.
    pub b_ns: String,
    /// Interface name of end B (inside `b_ns`).
    pub b_if: String,
    /// Addresses (CIDR) of end B.
    pub b_addrs: Vec<String>,
}

fn check_ifname(n: &str) -> Result<()> {
    if n.is_empty()
        || n.len() > IFNAME_MAX
        || !n
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
    {
        return Err(LabError::Config(format!(
            "interface name `{n}` must be 1-{IFNAME_MAX} characters of [A-Za-z0-9_.-]"
        )));
    }
    Ok(())
}

impl Veth {
    /// Link `a` and `b` with a veth pair named `a_if` (in `a`) and `b_if` (in `b`),
    /// give each end its addresses (IPv4 or IPv6 CIDR; IPv6 with `nodad`) and bring
    /// both up. Names are always passed after the `name`/`dev` keywords, so an
    /// interface may be called `b` or `mtu` without `ip` misreading it. The first
    /// IPv6 packet may still be lost to neighbour discovery: use
    /// [`Netns::wait_ping`] rather than a single ping.
    pub fn connect(
        a: &Netns,
        a_if: &str,
        a_addrs: &[&str],
        b: &Netns,
        b_if: &str,
        b_addrs: &[&str],
    ) -> Result<Veth> {
        check_ifname(a_if)?;
        check_ifname(b_if)?;
        for c in a_addrs.iter().chain(b_addrs) {
            cidr_addr(c)?;
        }
        crate::cmd::run_ok(
            &[
                "ip",
                "link",
                "add",
                "name",
                a_if,
                "netns",
                a.name(),
                "type",
                "veth",
                "peer",
                "name",
                b_if,
                "netns",
                b.name(),
            ],
            crate::cmd::SHORT,
        )?;
        for (ns, ifn, addrs) in [(a, a_if, a_addrs), (b, b_if, b_addrs)] {
            for c in addrs {
                ns.add_addr(ifn, c)?;
            }
            ns.ip(&["link", "set", "dev", ifn, "up"])?;
        }
        Ok(Veth {
            a_ns: a.name().to_string(),
            a_if: a_if.to_string(),
            a_addrs: a_addrs.iter().map(|s| s.to_string()).collect(),
            b_ns: b.name().to_string(),
            b_if: b_if.to_string(),
            b_addrs: b_addrs.iter().map(|s| s.to_string()).collect(),
        })
    }
}

/// A link of a [`Topology`], between two named hosts.
#[derive(Debug, Clone)]
pub struct Link {
    /// Host name of end A.
    pub a: String,
    /// Host name of end B.
    pub b: String,
    /// The veth pair.
    pub veth: Veth,
}

/// Named hosts (namespaces) and the links between them. Dropping it deletes all
/// namespaces (and with them the links and every process inside).
#[derive(Debug, Default)]
pub struct Topology {
    hosts: Vec<(String, Netns)>,
    links: Vec<Link>,
}

impl Topology {
    /// An empty topology.
    pub fn new() -> Topology {
        Topology::default()
    }

    /// Add a host: a fresh namespace labelled `name`, `lo` up.
    pub fn add_host(&mut self, name: &str) -> Result<&Netns> {
        if self.hosts.iter().any(|(n, _)| n == name) {
            return Err(LabError::Config(format!("host `{name}` added twice")));
        }
        let ns = Netns::new(name)?;
        self.hosts.push((name.to_string(), ns));
        self.ns(name)
    }

    /// The namespace of host `name`.
    pub fn ns(&self, name: &str) -> Result<&Netns> {
        self.hosts
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, ns)| ns)
            .ok_or_else(|| LabError::Unknown {
                kind: "host",
                name: name.to_string(),
            })
    }

    /// Host names in creation order.
    pub fn hosts(&self) -> impl Iterator<Item = &str> {
        self.hosts.iter().map(|(n, _)| n.as_str())
    }

    /// All links.
    pub fn links(&self) -> &[Link] {
        &self.links
    }

    /// Interface name to use in `host` for a link towards `peer`: `peer`, cut to
    /// 15 characters, with a number appended if the host already has that name.
    fn ifname_for(&self, host: &str, peer: &str) -> String {
        let base: String = peer.chars().take(IFNAME_MAX - 2).collect();
        let taken = |n: &str| {
            self.links
                .iter()
                .any(|l| (l.a == host && l.veth.a_if == n) || (l.b == host && l.veth.b_if == n))
        };
        if !taken(&base) {
            return base;
        }
        (1..100)
            .map(|i| format!("{base}{i}"))
            .find(|n| !taken(n))
            .unwrap_or(base)
    }

    /// Link hosts `a` and `b`; each end is named after the other host (so in the
    /// namespace of `client` the interface towards `gw` is called `gw`).
    pub fn link(&mut self, a: &str, a_addrs: &[&str], b: &str, b_addrs: &[&str]) -> Result<&Link> {
        if a == b {
            return Err(LabError::Config(format!("cannot link `{a}` to itself")));
        }
        let a_if = self.ifname_for(a, b);
        let b_if = self.ifname_for(b, a);
        let veth = Veth::connect(self.ns(a)?, &a_if, a_addrs, self.ns(b)?, &b_if, b_addrs)?;
        self.links.push(Link {
            a: a.to_string(),
            b: b.to_string(),
            veth,
        });
        self.links
            .last()
            .ok_or_else(|| LabError::Config("link vanished".into()))
    }

    fn find_link(&self, host: &str, peer: &str) -> Result<(&Link, bool)> {
        self.links
            .iter()
            .find_map(|l| {
                if l.a == host && l.b == peer {
                    Some((l, true))
                } else if l.b == host && l.a == peer {
                    Some((l, false))
                } else {
                    None
                }
            })
            .ok_or_else(|| LabError::Unknown {
                kind: "link",
                name: format!("{host}-{peer}"),
            })
    }

    /// Interface name in `host` on its (first) link to `peer`.
    pub fn iface(&self, host: &str, peer: &str) -> Result<&str> {
        let (l, is_a) = self.find_link(host, peer)?;
        Ok(if is_a { &l.veth.a_if } else { &l.veth.b_if })
    }

    /// Addresses (CIDR) of `host` on its link to `peer`.
    pub fn cidrs(&self, host: &str, peer: &str) -> Result<&[String]> {
        let (l, is_a) = self.find_link(host, peer)?;
        Ok(if is_a {
            &l.veth.a_addrs
        } else {
            &l.veth.b_addrs
        })
    }

    /// First address of `host` on its link to `peer` of the wanted family.
    pub fn addr(&self, host: &str, peer: &str, v6: bool) -> Result<IpAddr> {
        for c in self.cidrs(host, peer)? {
            let a = cidr_addr(c)?;
            if a.is_ipv6() == v6 {
                return Ok(a);
            }
        }
        Err(LabError::Unknown {
            kind: "link address",
            name: format!("{host}-{peer} ({})", if v6 { "IPv6" } else { "IPv4" }),
        })
    }

    /// First IPv4 address of `host` towards `peer`.
    pub fn addr4(&self, host: &str, peer: &str) -> Result<IpAddr> {
        self.addr(host, peer, false)
    }
}
