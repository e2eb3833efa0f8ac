//! GRE link table and anti-spoof check (seed 001, figures 11 and 13).
//!
//! A *link* is the point-to-point path between a gateway and a target. Each
//! link is bound to one peer: its cluster id and its outer address. A GRE
//! packet is accepted only if it arrived on a known link, from that link's bound
//! address, and its key names the node that owns the link; anything else is a
//! spoof. Both gateway and target use this table.

use crate::gre::GreKey;
use crate::NodeId;
use std::net::IpAddr;

/// The daemon's name for a link (for example the interface index, or one id
/// per peer when all peers share one interface).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LinkId(pub u32);

/// One bound link.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Link {
    /// The peer that owns the link.
    pub node: NodeId,
    /// The peer's outer address, the only allowed GRE source on this link.
    pub remote: IpAddr,
    /// Health as last reported (keepalives, interface state).
    pub up: bool,
}

/// Link id → bound peer. A short vector: a site has a handful of peers, and a
/// linear scan over a few entries is faster than hashing on the data path.
#[derive(Clone, Debug, Default)]
pub struct LinkTable {
    links: Vec<(LinkId, Link)>,
}

impl LinkTable {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    /// Bind `link` to `node` at `remote` (replaces an earlier binding of the
    /// link or of the node). New links start up.
    pub fn bind(&mut self, link: LinkId, node: NodeId, remote: IpAddr) {
        self.links.retain(|(id, l)| *id != link && l.node != node);
        self.links.push((
            link,
            Link {
                node,
                remote,
                up: true,
            },
        ));
    }

    /// Remove a link.
    pub fn unbind(&mut self, link: LinkId) {
        self.links.retain(|(id, _)| *id != link);
    }

    /// The link bound to `link`.
    pub fn get(&self, link: LinkId) -> Option<&Link> {
        self.links
            .iter()
            .find(|(id, _)| *id == link)
            .map(|(_, l)| l)
    }

    /// The link and its state for `node`.
    #[inline]
    pub fn for_node(&self, node: NodeId) -> Option<(LinkId, &Link)> {
        self.links
            .iter()
            .find(|(_, l)| l.node == node)
            .map(|(id, l)| (*id, l))
    }

    /// The link whose bound remote address is `addr` (for daemons that cannot
    /// tell links apart otherwise).
    pub fn by_remote(&self, addr: IpAddr) -> Option<LinkId> {
        self.links
            .iter()
            .find(|(_, l)| l.remote == addr)
            .map(|(id, _)| *id)
    }

    /// Mark the link of `node` up or down; returns false if `node` has no link.
    pub fn set_up(&mut self, node: NodeId, up: bool) -> bool {
        match self.links.iter_mut().find(|(_, l)| l.node == node) {
            Some((_, l)) => {
                l.up = up;
                true
            }
            None => false,
        }
    }

    /// True if `node` has a link that is up.
    pub fn is_up(&self, node: NodeId) -> bool {
        self.for_node(node).is_some_and(|(_, l)| l.up)
    }

    /// All links.
    pub fn iter(&self) -> impl Iterator<Item = (LinkId, &Link)> {
        self.links.iter().map(|(id, l)| (*id, l))
    }

    //= https://www.rfc-editor.org/rfc/rfc2890#section-2.1
    //# The Key field contains a four octet number which was inserted by the
    //# encapsulator.  The actual method by which this Key is obtained is
    //# beyond the scope of the document.  The Key field is intended to be
    //# used for identifying an individual traffic flow within a tunnel.
    /// The anti-spoof check: `true` if a GRE packet with `key` that arrived on
    /// `link` from `outer_src` really comes from the node bound to that link.
    pub fn check(&self, link: LinkId, outer_src: IpAddr, key: GreKey) -> bool {
        self.get(link)
            .is_some_and(|l| l.remote == outer_src && l.node == key.sender)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn anti_spoof() {
        let mut t = LinkTable::new();
        let a: IpAddr = "10.0.0.2".parse().unwrap();
        let b: IpAddr = "10.0.0.3".parse().unwrap();
        t.bind(LinkId(1), NodeId(2), a);
        t.bind(LinkId(2), NodeId(3), b);
        let k2 = GreKey {
            sender: NodeId(2),
            ipsec: false,
        };
        let k3 = GreKey {
            sender: NodeId(3),
            ipsec: false,
        };
        assert!(t.check(LinkId(1), a, k2));
        // Right source, other node's key.
        assert!(!t.check(LinkId(1), a, k3));
        // Right key, wrong source on this link.
        assert!(!t.check(LinkId(1), b, k2));
        // Unknown link.
        assert!(!t.check(LinkId(9), a, k2));
        assert_eq!(t.by_remote(b), Some(LinkId(2)));
        // Rebinding node 2 to another link drops the old one.
        t.bind(LinkId(5), NodeId(2), a);
        assert!(t.get(LinkId(1)).is_none());
        assert!(t.check(LinkId(5), a, k2));
        assert!(t.set_up(NodeId(2), false));
        assert!(!t.is_up(NodeId(2)));
    }
}
