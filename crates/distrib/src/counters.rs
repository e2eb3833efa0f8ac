//! Counters: packets dropped by reason, packets routed, connections per target.
//!
//! Plain `u64` fields bumped on the data path (no atomics: each
//! [`crate::Distributor`] or [`crate::TargetStack`] is owned by one task).
//! [`Snapshot`] is a copy the daemon exports to Prometheus and to
//! `plexgate status`; [`DropReason::label`] gives stable label values.

use crate::NodeId;

/// Why a packet or message was dropped.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DropReason {
    /// GRE from the wrong source for its link, or a key naming another node.
    Spoof,
    /// SYN for a (DVIPA, port) without an eligible listening target.
    NoListener,
    /// Non-SYN TCP for a connection not in the CRT.
    NoConnection,
    /// Destination is not a DVIPA this node serves.
    NotDvipa,
    /// Cluster message with a bad HMAC.
    AuthFailed,
    /// Cluster message with an old or repeated sequence number.
    Replayed,
    /// Unparseable packet or message.
    Malformed,
    /// Plain packet for a connection that was set up under IPsec.
    IpsecMismatch,
    /// Non-first fragment to a distributed port (no ports to route on).
    Fragment,
    /// The chosen peer has no link (or the routing gateway is unknown).
    NoLink,
    /// A node reported state for a target other than itself, or it is not a
    /// candidate target of the DVIPA.
    NotCandidate,
    /// The output buffer was too small.
    BufferTooSmall,
    /// A new connection found the CRT full with no embryonic entry to evict.
    CrtFull,
    /// Cluster message whose source address or arrival link is not its
    /// sender's (or whose sender is not a known cluster node).
    Misrouted,
    /// Cluster message outside its sender's replay window: held until the
    /// sender answers a challenge (see [`crate::cluster`]), not applied.
    Unsynced,
    /// DVIPA announcement with an ownership epoch older than the one seen (or
    /// a second owner at the same epoch).
    StaleEpoch,
}

impl DropReason {
    /// All reasons, in counter order.
    pub const ALL: [DropReason; 16] = [
        DropReason::Spoof,
        DropReason::NoListener,
        DropReason::NoConnection,
        DropReason::NotDvipa,
        DropReason::AuthFailed,
        DropReason::Replayed,
        DropReason::Malformed,
        DropReason::IpsecMismatch,
        DropReason::Fragment,
        DropReason::NoLink,
        DropReason::NotCandidate,
        DropReason::BufferTooSmall,
        DropReason::CrtFull,
        DropReason::Misrouted,
        DropReason::Unsynced,
        DropReason::StaleEpoch,
    ];

    /// Stable snake_case label (Prometheus `reason="..."`).
    pub fn label(self) -> &'static str {
        match self {
            DropReason::Spoof => "spoof",
            DropReason::NoListener => "no_listener",
            DropReason::NoConnection => "no_connection",
            DropReason::NotDvipa => "not_dvipa",
            DropReason::AuthFailed => "auth_failed",
            DropReason::Replayed => "replayed",
            DropReason::Malformed => "malformed",
            DropReason::IpsecMismatch => "ipsec_mismatch",
            DropReason::Fragment => "fragment",
            DropReason::NoLink => "no_link",
            DropReason::NotCandidate => "not_candidate",
            DropReason::BufferTooSmall => "buffer_too_small",
            DropReason::CrtFull => "crt_full",
            DropReason::Misrouted => "misrouted",
            DropReason::Unsynced => "unsynced",
            DropReason::StaleEpoch => "stale_epoch",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// Live counters.
#[derive(Clone, Debug, Default)]
pub struct Counters {
    drops: [u64; DropReason::ALL.len()],
    /// Packets handed to a target (gateway) or to the TUN (target).
    pub routed_in: u64,
    /// Packets from targets towards clients (gateway) or to GRE/direct (target).
    pub routed_out: u64,
    /// Packets not for a DVIPA handed to the local stack.
    pub local: u64,
    /// Connections added to the CRT.
    pub conns_opened: u64,
    /// Connections removed from the CRT.
    pub conns_closed: u64,
    /// Embryonic connections evicted from a full CRT (early drop).
    pub conns_evicted: u64,
    /// Cluster messages accepted.
    pub cluster_accepted: u64,
    /// TCP SYN / SYN-ACK whose MSS option was lowered.
    pub mss_clamped: u64,
}

impl Counters {
    /// Count a drop.
    pub fn drop(&mut self, r: DropReason) {
        self.drops[r.index()] += 1;
    }

    /// Drops so far for `r`.
    pub fn drops(&self, r: DropReason) -> u64 {
        self.drops[r.index()]
    }
}

/// Per-target line of a [`Snapshot`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TargetStat {
    /// The target.
    pub node: NodeId,
    /// CRT entries routed to it.
    pub connections: u64,
    /// Its link is up.
    pub link_up: bool,
}

/// A copy of the counters and table sizes at one moment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Snapshot {
    /// Drops by reason, every reason listed (zeros included).
    pub drops: Vec<(DropReason, u64)>,
    /// See [`Counters::routed_in`].
    pub routed_in: u64,
    /// See [`Counters::routed_out`].
    pub routed_out: u64,
    /// See [`Counters::local`].
    pub local: u64,
    /// See [`Counters::conns_opened`].
    pub conns_opened: u64,
    /// See [`Counters::conns_closed`].
    pub conns_closed: u64,
    /// See [`Counters::cluster_accepted`].
    pub cluster_accepted: u64,
    /// See [`Counters::mss_clamped`].
    pub mss_clamped: u64,
    /// Entries in the CRT (gateway) or connection table (target).
    pub connections: u64,
    /// Per target (gateway only), sorted by node.
    pub targets: Vec<TargetStat>,
}

impl Snapshot {
    /// Build from counters plus table facts.
    pub fn from_counters(c: &Counters, connections: u64, targets: Vec<TargetStat>) -> Snapshot {
        Snapshot {
            drops: DropReason::ALL.iter().map(|r| (*r, c.drops(*r))).collect(),
            routed_in: c.routed_in,
            routed_out: c.routed_out,
            local: c.local,
            conns_opened: c.conns_opened,
            conns_closed: c.conns_closed,
            cluster_accepted: c.cluster_accepted,
            mss_clamped: c.mss_clamped,
            connections,
            targets,
        }
    }

    /// Drops for `r`.
    pub fn drops(&self, r: DropReason) -> u64 {
        self.drops
            .iter()
            .find(|(x, _)| *x == r)
            .map_or(0, |(_, n)| *n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_index_in_order() {
        for (i, r) in DropReason::ALL.iter().enumerate() {
            assert_eq!(r.index(), i);
        }
        let mut c = Counters::default();
        c.drop(DropReason::Replayed);
        c.drop(DropReason::Replayed);
        let s = Snapshot::from_counters(&c, 0, vec![]);
        assert_eq!(s.drops(DropReason::Replayed), 2);
        assert_eq!(s.drops(DropReason::Spoof), 0);
        assert_eq!(s.drops.len(), DropReason::ALL.len());
    }
}
