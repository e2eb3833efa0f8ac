//! Gratuitous ARP bursts: when an address starts being answered on an interface (or
//! with another MAC), it is announced `count` times, `interval` apart, the first at
//! once, as keepalived does on a transition to master. A newer burst for the same
//! address replaces the older one; releasing an address cancels its burst, so a
//! standby sends nothing.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::time::Instant;

use plexgate_wire::arp::EthernetAddress;

use super::config::AnnounceConfig;
use super::IfaceId;

/// One address's pending announcements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Burst {
    pub(crate) iface: IfaceId,
    pub(crate) mac: EthernetAddress,
    remaining: u32,
    next: Instant,
}

/// Pending bursts by address.
#[derive(Debug, Clone, Default)]
pub(crate) struct Bursts {
    by_addr: BTreeMap<Ipv4Addr, Burst>,
}

impl Bursts {
    /// Starts (or restarts) the burst for `addr`; the first announcement is due now.
    pub(crate) fn start(
        &mut self,
        now: Instant,
        addr: Ipv4Addr,
        iface: IfaceId,
        mac: EthernetAddress,
        cfg: &AnnounceConfig,
    ) {
        self.by_addr.insert(
            addr,
            Burst {
                iface,
                mac,
                remaining: cfg.count.max(1),
                next: now,
            },
        );
    }

    /// Cancels the burst for `addr`.
    pub(crate) fn cancel(&mut self, addr: Ipv4Addr) {
        self.by_addr.remove(&addr);
    }

    /// When the next announcement is due.
    pub(crate) fn next_due(&self) -> Option<Instant> {
        self.by_addr.values().map(|b| b.next).min()
    }

    /// The announcements due at `now`, in address order; advances their bursts.
    pub(crate) fn take_due(
        &mut self,
        now: Instant,
        cfg: &AnnounceConfig,
    ) -> Vec<(Ipv4Addr, IfaceId, EthernetAddress)> {
        let mut out = Vec::new();
        self.by_addr.retain(|addr, b| {
            if b.next > now {
                return true;
            }
            out.push((*addr, b.iface, b.mac));
            b.remaining -= 1;
            // Paced from the schedule, not from `now`: a late timer does not
            // stretch the burst.
            b.next += cfg.interval;
            if b.next <= now {
                b.next = now + cfg.interval;
            }
            b.remaining > 0
        });
        out
    }
}
