//! The site as one gateway sees it. One policy file describes every gateway of a
//! site (`[ha] name` is the file's own gateway, `[[ha.peer]]` the others) and
//! every gateway's links (`[[link]] gateway`); [`Policy::for_gateway`] turns it
//! into the policy of one of them — its name, rank, node id and address in
//! `[ha]` and `[cluster]`, its links only, and each target's `link` and
//! `address` on those links — so that `plexgate run --name gw-2` needs no second
//! file. [`Policy::gateways`] lists every gateway with its cluster node id.

use std::net::IpAddr;

use thiserror::Error;

use super::{HaPeer, Link, Policy};

/// A gateway of the site, as the cluster channel knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatewayInfo {
    /// Its name (`[ha] name` or `[[ha.peer]] name`; empty for the only
    /// gateway of a site without `[ha]`).
    pub name: String,
    /// Its cluster node id, if the file gives one.
    pub id: Option<u32>,
    /// Its control-channel address, if the file gives one.
    pub address: Option<IpAddr>,
    /// Its default rank (0 without `[ha]`).
    pub rank: u8,
}

/// Why a policy cannot be seen as one of its gateways.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum ViewError {
    /// No gateway of that name.
    #[error("no gateway named {name:?} in [ha] (known: {known})")]
    UnknownGateway {
        /// The name asked for.
        name: String,
        /// The gateways the file names.
        known: String,
    },
    /// The peer has no `id`.
    #[error("[[ha.peer]] {0:?} has no `id`: a gateway needs its cluster node id to run")]
    NoId(String),
    /// This file's gateway has no `[ha] address`, so its peers cannot reach it.
    #[error("[ha] has no `address`: gateway {0:?} needs it to reach this file's gateway {1:?}")]
    NoAddress(String, String),
    /// No `[cluster]` section, so this file's gateway has no id to hand over.
    #[error("the policy has no [cluster] section: gateway {0:?} needs the cluster key and ids")]
    NoCluster(String),
}

impl Policy {
    /// This file's gateway: `[ha] name`, or empty for a site without `[ha]`.
    pub fn gateway_name(&self) -> &str {
        self.ha.as_ref().map_or("", |h| h.name.as_str())
    }

    /// Every gateway of the site, this file's first.
    pub fn gateways(&self) -> Vec<GatewayInfo> {
        let own_id = self.cluster.as_ref().map(|c| c.gateway_id);
        let Some(ha) = &self.ha else {
            return vec![GatewayInfo {
                name: String::new(),
                id: own_id,
                address: None,
                rank: 0,
            }];
        };
        let mut v = vec![GatewayInfo {
            name: ha.name.clone(),
            id: own_id,
            address: ha.address,
            rank: ha.rank,
        }];
        v.extend(ha.peers.iter().map(|p| GatewayInfo {
            name: p.name.clone(),
            id: p.id,
            address: Some(p.address),
            rank: p.rank,
        }));
        v
    }

    /// The links of gateway `gateway` (in file order).
    pub fn links_of<'a>(&'a self, gateway: &'a str) -> impl Iterator<Item = &'a Link> + 'a {
        self.links.iter().filter(move |l| l.gateway == gateway)
    }

    /// Every link that ends at target `target`, whichever its gateway.
    pub fn target_links<'a>(&'a self, target: &'a str) -> impl Iterator<Item = &'a Link> + 'a {
        self.links.iter().filter(move |l| l.target == target)
    }

    /// The policy as gateway `name` runs it: `[ha]` names it (with its rank,
    /// and this file's gateway among the peers), `[cluster] gateway_id` is its
    /// node id, `links` are its links only, and every target's `link` and
    /// `address` are those of its link to `name` (empty `link` when it has
    /// none: that gateway cannot reach it). The file's own name gives the file
    /// with the other gateways' links left out.
    pub fn for_gateway(&self, name: &str) -> Result<Policy, ViewError> {
        let mut p = self.clone();
        let own = self.gateway_name().to_string();
        if name != own {
            let ha = p.ha.as_mut().ok_or_else(|| ViewError::UnknownGateway {
                name: name.into(),
                known: "none: the policy has no [ha] section".into(),
            })?;
            let Some(i) = ha.peers.iter().position(|x| x.name == name) else {
                let known: Vec<String> = self.gateways().into_iter().map(|g| g.name).collect();
                return Err(ViewError::UnknownGateway {
                    name: name.into(),
                    known: known.join(", "),
                });
            };
            let me = ha.peers.remove(i);
            let id = me.id.ok_or_else(|| ViewError::NoId(name.into()))?;
            let cluster = p
                .cluster
                .as_mut()
                .ok_or_else(|| ViewError::NoCluster(name.into()))?;
            let old = HaPeer {
                name: std::mem::replace(&mut ha.name, me.name),
                id: Some(std::mem::replace(&mut cluster.gateway_id, id)),
                address: ha
                    .address
                    .ok_or_else(|| ViewError::NoAddress(name.into(), own.clone()))?,
                rank: std::mem::replace(&mut ha.rank, me.rank),
            };
            ha.address = Some(me.address);
            ha.peers.insert(0, old);
        }
        p.links.retain(|l| l.gateway == name);
        for t in &mut p.targets {
            match p.links.iter().find(|l| l.target == t.name) {
                Some(l) => {
                    t.link = l.name.clone();
                    t.address = l.remote;
                }
                None => t.link.clear(),
            }
        }
        Ok(p)
    }
}
