//! The cluster as the site policy describes it, for the daemons: which nodes a
//! gateway or a target talks to, at which address, over which link
//! (`plexgate_distrib::NodeMap`), and the node ids (a gateway's from
//! `[cluster] gateway_id` / `[[ha.peer]] id`, a target's 1000 + its position in
//! the file). Both sides build their maps from the same file, so that a target
//! accepts and answers every gateway of its site, each on its own link, and a
//! gateway knows the other gateways' addresses.

use std::net::IpAddr;

use plexgate_distrib::{LinkId, Node, NodeId, NodeMap, Role};
use plexgate_policy::Policy;

/// The link id under which a gateway receives the other gateways' cluster
/// messages (its socket on `[ha] address`); target links are numbered by the
/// target's position in the file.
pub const PEER_LINK: LinkId = LinkId(u32::MAX - 1);

/// Cluster node id of target `name`: 1000 + its position among `[[target]]`.
pub fn target_id(p: &Policy, name: &str) -> Option<NodeId> {
    p.targets
        .iter()
        .position(|t| t.name == name)
        .map(|i| NodeId(1000 + i as u32))
}

/// One link of a target to one gateway, as the target sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetLink {
    /// The gateway at the other end (its node entry: id, name, address on this
    /// link, and the link id the target daemon uses for it).
    pub gateway: Node,
    /// The target's own address on this link (its GRE and cluster sockets bind it).
    pub local: IpAddr,
    /// The policy's name for the link.
    pub name: String,
}

/// The links of target `name` to the gateways of its site, numbered from 0
/// in file order. Gateways without a node id (`[[ha.peer]]` without `id`)
/// are left out and named in the second list.
pub fn target_links(p: &Policy, name: &str) -> (Vec<TargetLink>, Vec<String>) {
    let gateways = p.gateways();
    let mut out = Vec::new();
    let mut skipped = Vec::new();
    for l in p.target_links(name) {
        let Some(id) = gateways
            .iter()
            .find(|g| g.name == l.gateway)
            .and_then(|g| g.id)
        else {
            skipped.push(l.gateway.clone());
            continue;
        };
        out.push(TargetLink {
            gateway: Node {
                id: NodeId(id),
                role: Role::Gateway,
                name: l.gateway.clone(),
                address: l.local,
                link: LinkId(out.len() as u32),
            },
            local: l.remote,
            name: l.name.clone(),
        });
    }
    (out, skipped)
}

/// The nodes gateway `p` (a view from `Policy::for_gateway`) talks to: every
/// target it has a link to (on link = the target's position, at its address on
/// that link) and every other gateway with an id (on [`PEER_LINK`], at its
/// `[[ha.peer]] address`).
pub fn gateway_nodes(p: &Policy) -> NodeMap {
    let mut m = NodeMap::new();
    for (i, t) in p.targets.iter().enumerate() {
        if t.link.is_empty() {
            continue;
        }
        m.insert(Node {
            id: NodeId(1000 + i as u32),
            role: Role::Target,
            name: t.name.clone(),
            address: t.address,
            link: LinkId(i as u32),
        });
    }
    for peer in p.ha.iter().flat_map(|h| &h.peers) {
        if let Some(id) = peer.id {
            m.insert(Node {
                id: NodeId(id),
                role: Role::Gateway,
                name: peer.name.clone(),
                address: peer.address,
                link: PEER_LINK,
            });
        }
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    const SITE: &str = r#"
[site]
name = "t"
gateway_vipas = ["192.0.2.1"]
[[site.interface]]
name = "eth0"
address = "192.0.2.2/24"
[[target]]
name = "web-1"
address = "10.9.0.2"
link = "gw1-web-1"
[[target]]
name = "web-2"
address = "10.9.0.6"
link = "gw1-web-2"
[[link]]
name = "gw1-web-1"
interface = "a"
local = "10.9.0.1"
subnet = "10.9.0.0/30"
[[link]]
name = "gw1-web-2"
interface = "b"
local = "10.9.0.5"
subnet = "10.9.0.4/30"
[[link]]
name = "gw2-web-2"
gateway = "gw-2"
target = "web-2"
interface = "b"
local = "fd00:9:2::1"
subnet = "fd00:9:2::/126"
remote = "fd00:9:2::2"
[cluster]
key_file = "k"
gateway_id = 7
[ha]
name = "gw-1"
rank = 200
address = "192.0.2.11"
  [[ha.peer]]
  name = "gw-2"
  id = 8
  address = "192.0.2.12"
  rank = 100
  [ha.store]
  kind = "embedded"
  path = "s"
  key_file = "k"
"#;

    fn policy() -> Policy {
        plexgate_policy::parse_str(SITE, "t.toml", std::path::Path::new("/"))
            .unwrap()
            .policy
    }

    #[test]
    fn a_target_knows_every_gateway_on_its_own_link() {
        let p = policy();
        let (links, skipped) = target_links(&p, "web-2");
        assert!(skipped.is_empty());
        let got: Vec<(u32, &str, IpAddr, u32, IpAddr)> = links
            .iter()
            .map(|l| {
                (
                    l.gateway.id.0,
                    l.gateway.name.as_str(),
                    l.gateway.address,
                    l.gateway.link.0,
                    l.local,
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                (
                    7,
                    "gw-1",
                    "10.9.0.5".parse().unwrap(),
                    0,
                    "10.9.0.6".parse().unwrap()
                ),
                (
                    8,
                    "gw-2",
                    "fd00:9:2::1".parse().unwrap(),
                    1,
                    "fd00:9:2::2".parse().unwrap()
                ),
            ]
        );
        assert_eq!(target_links(&p, "web-1").0.len(), 1);
        assert_eq!(target_id(&p, "web-2"), Some(NodeId(1001)));
    }

    #[test]
    fn each_gateway_knows_its_targets_and_the_other_gateways() {
        let p = policy();
        let gw1 = gateway_nodes(&p.for_gateway("gw-1").unwrap());
        assert_eq!(gw1.len(), 3);
        assert_eq!(
            gw1.get(NodeId(1001)).unwrap().address,
            "10.9.0.6".parse::<IpAddr>().unwrap()
        );
        assert_eq!(gw1.get(NodeId(8)).unwrap().link, PEER_LINK);
        let gw2 = gateway_nodes(&p.for_gateway("gw-2").unwrap());
        // gw-2 reaches web-2 only, over its IPv6 link; it knows gw-1.
        assert!(gw2.get(NodeId(1000)).is_none());
        let web2 = gw2.get(NodeId(1001)).unwrap();
        assert_eq!(web2.address, "fd00:9:2::2".parse::<IpAddr>().unwrap());
        assert_eq!(web2.link, LinkId(1));
        let gw1_seen = gw2.get(NodeId(7)).unwrap();
        assert_eq!(gw1_seen.address, "192.0.2.11".parse::<IpAddr>().unwrap());
        assert_eq!(gw1_seen.role, Role::Gateway);
    }
}
