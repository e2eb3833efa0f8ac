//! `[[spd]]`: ordered security policy rules (RFC 4301 §4.4.1).

use crate::addr::{AddrSel, PortRange};

/// SPD rule direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Inbound only.
    In,
    /// Outbound only.
    Out,
    /// Both directions.
    Both,
}

impl Direction {
    /// True if a rule with direction `self` sees all traffic a rule with `o` sees.
    pub fn covers(&self, o: &Direction) -> bool {
        *self == Direction::Both || self == o
    }
}

/// What an SPD rule does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SpdAction {
    /// Protect with a Child SA of `peer` negotiated from child config `child`.
    Protect {
        /// Peer name.
        peer: String,
        /// Child name within that peer.
        child: String,
    },
    /// Pass in clear.
    Bypass,
    /// Drop.
    Discard,
}

/// `[[spd]]`: one security policy rule (RFC 4301 §4.4.1). Rules are ordered;
/// validation guarantees no rule is shadowed by an earlier one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpdRule {
    /// Optional name for logs.
    pub name: Option<String>,
    /// Direction.
    pub direction: Direction,
    /// Local (our side) addresses.
    pub local: AddrSel,
    /// Remote addresses.
    pub remote: AddrSel,
    /// IP protocol, `None` = any.
    pub protocol: Option<u8>,
    /// Local ports.
    pub local_ports: PortRange,
    /// Remote ports.
    pub remote_ports: PortRange,
    /// Action.
    pub action: SpdAction,
}

impl SpdRule {
    /// True if every packet this rule matches is matched by `earlier` too.
    pub fn shadowed_by(&self, earlier: &SpdRule) -> bool {
        earlier.direction.covers(&self.direction)
            && earlier.local.covers(&self.local)
            && earlier.remote.covers(&self.remote)
            && (earlier.protocol.is_none() || earlier.protocol == self.protocol)
            && earlier.local_ports.covers(&self.local_ports)
            && earlier.remote_ports.covers(&self.remote_ports)
    }
}
