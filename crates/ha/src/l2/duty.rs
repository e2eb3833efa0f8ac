//! Who answers for which address, recomputed from scratch after every change (link
//! up or down, active or standby, a network discovered), so that there is exactly
//! one consistent answer per address at any time. The machine compares the new
//! table with the old one and announces what changed.
//!
//! - An owned address (gateway VIPA, system address, proxy-ARP VIPA) has a duty
//!   only while this gateway is active for it: on the first interface, in
//!   configuration order, that is up and whose subnet contains it (seed 000's
//!   dynamically chosen agent; seed 003's "only the active answers").
//! - An interface's own address, when adapter backup (seed 002) or cluster MAC
//!   mode (seed 004) is on: on the interface itself while it is up; while it is
//!   down, on the first up interface found on the same network, with that
//!   interface's MAC.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use plexgate_wire::arp::EthernetAddress;

use super::config::Config;
use super::discovery::Networks;
use super::IfaceId;

/// Link state of one interface as the runtime reports it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Link {
    pub(crate) up: bool,
    pub(crate) mac: Option<EthernetAddress>,
}

impl Link {
    /// The MAC, if the interface is up and its MAC known.
    pub(crate) fn usable(&self) -> Option<EthernetAddress> {
        self.mac.filter(|_| self.up)
    }
}

/// Why an interface answers for an address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reason {
    /// `Config::addresses[i]`, this gateway being active for it.
    Owned(usize),
    /// The interface's own address, on itself.
    Own,
    /// The address of interface `of`, which is down (seed 002).
    Backup { of: IfaceId },
}

/// One address's duty.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Duty {
    /// Interface it is answered and announced on.
    pub(crate) iface: IfaceId,
    /// MAC it is answered with (ARP sender hardware address).
    pub(crate) mac: EthernetAddress,
    /// plexgate answers requests (false: the kernel does, plexgate only
    /// announces and watches for conflicts).
    pub(crate) answer: bool,
    /// Why.
    pub(crate) reason: Reason,
}

/// What the duty table depends on.
pub(crate) struct Inputs<'a> {
    pub(crate) cfg: &'a Config,
    pub(crate) links: &'a [Link],
    pub(crate) active: &'a [bool],
    pub(crate) networks: &'a Networks,
    pub(crate) stopped: bool,
}

/// The duty table: at most one duty per address.
pub(crate) fn compute(x: &Inputs<'_>) -> BTreeMap<Ipv4Addr, Duty> {
    let mut out = BTreeMap::new();
    if x.stopped {
        return out;
    }
    let cluster_mac = x.cfg.cluster.as_ref().map(|c| c.mac);
    for (k, a) in x.cfg.addresses.iter().enumerate() {
        if !x.active.get(k).copied().unwrap_or(false) {
            continue;
        }
        let agent = x.cfg.interfaces.iter().enumerate().find_map(|(i, ifc)| {
            let mac = x.links.get(i)?.usable()?;
            ifc.contains(a.address).then_some((IfaceId(i), mac))
        });
        if let Some((iface, mac)) = agent {
            out.insert(
                a.address,
                Duty {
                    iface,
                    mac: cluster_mac.unwrap_or(mac),
                    answer: true,
                    reason: Reason::Owned(k),
                },
            );
        }
    }
    if !x.cfg.adapter_backup && x.cfg.cluster.is_none() {
        return out;
    }
    for (i, ifc) in x.cfg.interfaces.iter().enumerate() {
        let own = x.links.get(i).and_then(Link::usable);
        let duty = match own {
            Some(mac) => Some(Duty {
                iface: IfaceId(i),
                mac,
                answer: x.cfg.cluster.is_some(),
                reason: Reason::Own,
            }),
            None if x.cfg.adapter_backup => backup_of(x, i).map(|(b, mac)| Duty {
                iface: b,
                mac,
                answer: true,
                reason: Reason::Backup { of: IfaceId(i) },
            }),
            None => None,
        };
        if let Some(d) = duty {
            out.insert(ifc.address, d);
        }
    }
    out
}

/// The first up interface on the same network as interface `i`.
fn backup_of(x: &Inputs<'_>, i: usize) -> Option<(IfaceId, EthernetAddress)> {
    x.networks
        .peers(i)
        .into_iter()
        .find_map(|j| Some((IfaceId(j), x.links.get(j)?.usable()?)))
}
