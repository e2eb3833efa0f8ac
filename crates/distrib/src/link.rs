//! GRE link table and anti-spoof check (seed 001, figures 11 and 13), and the
//! map of cluster nodes.
//!
//! A *link* is the point-to-point path between a gateway and a target. Each
//! link is bound to one peer: its cluster id and its outer address. A GRE
//! packet is accepted only if it arrived on a known link, from that link's bound
//! address, and its key names the node that owns the link; anything else is a
//! spoof. Both gateway and target use this table.
//!
//! The [`NodeMap`] is the cluster as the policy describes it, as seen from one
//! node: every other node's id, role, name, address and the link it is reached
//! on — a target knows every gateway of its site, each on its own link; a
//! gateway knows its targets and the other gateways. Cluster messages are
//! accepted only from a node's own address on its own link ([`NodeMap::admits`]).

use crate::cluster::Role;
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

/// Where a cluster message or GRE packet came in: the daemon's link (socket)
/// and the packet's source address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Arrival {
    /// The link it arrived on.
    pub link: LinkId,
    /// Its source address.
    pub src: IpAddr,
}

/// A cluster member as this node knows it from policy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Node {
    /// Its cluster id.
    pub id: NodeId,
    /// Gateway or target.
    pub role: Role,
    /// Its name in the policy (for logs and status).
    pub name: String,
    /// Its address: the only source its messages (and GRE) are accepted from,
    /// and where messages to it go.
    pub address: IpAddr,
    /// The link it is reached on.
    pub link: LinkId,
}

/// Cluster node id → role, name, address and link. A short vector, like
/// [`LinkTable`]: a site has a handful of nodes.
#[derive(Clone, Debug, Default)]
pub struct NodeMap {
    nodes: Vec<Node>,
}

impl NodeMap {
    /// An empty map.
    pub fn new() -> Self {
        Self::default()
    }

    /// Add `node`, replacing an earlier entry with its id.
    pub fn insert(&mut self, node: Node) {
        self.nodes.retain(|n| n.id != node.id);
        self.nodes.push(node);
    }

    /// Remove the entry of `id`.
    pub fn remove(&mut self, id: NodeId) {
        self.nodes.retain(|n| n.id != id);
    }

    /// The entry of `id`.
    pub fn get(&self, id: NodeId) -> Option<&Node> {
        self.nodes.iter().find(|n| n.id == id)
    }

    /// All nodes.
    pub fn iter(&self) -> impl Iterator<Item = &Node> {
        self.nodes.iter()
    }

    /// The nodes of one role.
    pub fn with_role(&self, role: Role) -> impl Iterator<Item = &Node> {
        self.nodes.iter().filter(move |n| n.role == role)
    }

    /// Number of nodes.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// True when no node is known.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// True if a message claiming to come from `sender` that arrived as `from`
    /// really comes from that node: it is known, and `from` is its address on
    /// its link.
    pub fn admits(&self, sender: NodeId, from: Arrival) -> bool {
        self.get(sender)
            .is_some_and(|n| n.link == from.link && n.address == from.src)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_map_admits_only_the_nodes_address_on_its_link() {
        let mut m = NodeMap::new();
        let gw1: IpAddr = "10.0.1.1".parse().unwrap();
        let gw2: IpAddr = "fd00::1".parse().unwrap();
        m.insert(Node {
            id: NodeId(1),
            role: Role::Gateway,
            name: "gw-1".into(),
            address: gw1,
            link: LinkId(0),
        });
        m.insert(Node {
            id: NodeId(2),
            role: Role::Gateway,
            name: "gw-2".into(),
            address: gw2,
            link: LinkId(1),
        });
        let at = |link, src| Arrival {
            link: LinkId(link),
            src,
        };
        assert!(m.admits(NodeId(1), at(0, gw1)));
        assert!(m.admits(NodeId(2), at(1, gw2)));
        // Right address, wrong link; right link, other node's address.
        assert!(!m.admits(NodeId(1), at(1, gw1)));
        assert!(!m.admits(NodeId(1), at(0, gw2)));
        // Unknown node.
        assert!(!m.admits(NodeId(3), at(0, gw1)));
        assert_eq!(m.with_role(Role::Gateway).count(), 2);
        // Replacing an entry keeps one per id.
        m.insert(Node {
            id: NodeId(1),
            role: Role::Gateway,
            name: "gw-1".into(),
            address: gw2,
            link: LinkId(0),
        });
        assert_eq!(m.len(), 2);
        assert!(m.admits(NodeId(1), at(0, gw2)));
    }

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
