//! Building a [`Sim`]: key files, gateways from their policy texts, targets from
//! what the policies say about them (cluster id, address on each gateway's link),
//! clients, and the network's address book.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::time::Instant;

use plexgate_distrib::{ClusterKey, LinkId, NodeId};

use super::{
    ClientNode, ClientSpec, Conditions, GatewayNode, Host, KeyDir, Network, Node, Sim, SimError,
    SimStore, TargetLink, TargetNode,
};
use crate::gateway::config;

/// How to build a [`Sim`].
pub struct SimBuilder {
    seed: u64,
    secrets: Vec<(String, Vec<u8>)>,
    gateways: Vec<(String, String, bool)>,
    targets: Vec<String>,
    clients: Vec<ClientSpec>,
    conditions: Conditions,
}

impl SimBuilder {
    /// An empty cluster whose every random decision follows `seed`.
    pub fn new(seed: u64) -> SimBuilder {
        SimBuilder {
            seed,
            secrets: Vec::new(),
            gateways: Vec::new(),
            targets: Vec::new(),
            clients: Vec::new(),
            conditions: Conditions::IDEAL,
        }
    }

    /// A key file the policies name (relative to their folder), e.g. `psk` or
    /// `cluster.key`; written with mode 0600 into a private temporary folder.
    pub fn secret(mut self, file: &str, bytes: &[u8]) -> Self {
        self.secrets.push((file.to_string(), bytes.to_vec()));
        self
    }

    /// A gateway built from `policy` (TOML text). The first gateway whose policy
    /// names a gateway VIPA or DVIPA owns it at the start.
    pub fn gateway(mut self, name: &str, policy: &str) -> Self {
        self.gateways.push((name.into(), policy.into(), false));
        self
    }

    /// A distributor-only gateway (see [`super::Engine::Distributor`]).
    pub fn distributor_gateway(mut self, name: &str, policy: &str) -> Self {
        self.gateways.push((name.into(), policy.into(), true));
        self
    }

    /// A target named `name` in the gateways' policies (`[[target]] name`).
    pub fn target(mut self, name: &str) -> Self {
        self.targets.push(name.into());
        self
    }

    /// A client.
    pub fn client(mut self, spec: ClientSpec) -> Self {
        self.clients.push(spec);
        self
    }

    /// Conditions of every path (paths can be changed later on `sim.net`).
    pub fn conditions(mut self, c: Conditions) -> Self {
        self.conditions = c;
        self
    }

    /// Build everything at the virtual time zero (now).
    pub fn build(self) -> Result<Sim, SimError> {
        let keys = KeyDir::new().map_err(|e| setup("harness", format!("temporary folder: {e}")))?;
        for (f, b) in &self.secrets {
            crate::site_template::write_secret(&keys.0.join(f), b)
                .map_err(|e| setup("harness", format!("key file {f}: {e}")))?;
        }
        let now = Instant::now();
        let seed = self.seed;
        let mut net = Network::new(seed);
        net.set_default(self.conditions);
        let mut gateways = Vec::new();
        for (i, (name, text, bare)) in self.gateways.iter().enumerate() {
            let g = GatewayNode::new(name, text, &keys.0, mix(seed, 1, i), 1 << 40, now, *bare)?;
            let n = Node::Gateway(i);
            for (local, _) in g.link_addresses() {
                net.bind(local, n);
            }
            net.bind_cluster(g.id, n);
            let p = g.policy();
            for a in p
                .site
                .gateway_vipas
                .iter()
                .chain(p.dvipas.iter().map(|d| &d.address))
            {
                if net.owner(*a).is_none() {
                    net.claim(*a, n);
                }
            }
            gateways.push(g);
        }
        let mut targets = Vec::new();
        for (j, name) in self.targets.iter().enumerate() {
            let t = build_target(name, &gateways, mix(seed, 2, j), now)?;
            for l in t.links() {
                net.bind(l.addr, Node::Target(j));
            }
            net.bind_cluster(t.id, Node::Target(j));
            targets.push(t);
        }
        let mut clients = Vec::new();
        for (k, spec) in self.clients.into_iter().enumerate() {
            let n = Node::Client(k);
            net.bind(spec.outer, n);
            for a in &spec.inner {
                net.bind(*a, n);
            }
            clients.push(ClientNode::new(spec, mix(seed, 3, k)));
        }
        Ok(Sim {
            now,
            start: now,
            seed,
            net,
            gateways,
            targets,
            clients,
            store: SimStore::new(),
            agents: Vec::new(),
            scheduled: BTreeMap::new(),
            sched_seq: 0,
            checks: super::Checks::default(),
            batch_rx: false,
            batches: 0,
            delivered: HashMap::new(),
            spins: HashMap::new(),
            steps: 0,
            _keys: keys,
        })
    }
}

fn setup(node: &str, what: String) -> SimError {
    SimError::Setup {
        node: node.into(),
        what,
    }
}

/// A seed for node `i` of kind `kind`, different for every node.
fn mix(seed: u64, kind: u64, i: usize) -> u64 {
    seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ (kind << 32) ^ (i as u64 + 1)
}

/// A target as the gateways' policies describe it: the same cluster id in each,
/// and one link per gateway (its address there, the gateway's address there).
fn build_target(
    name: &str,
    gws: &[GatewayNode],
    seed: u64,
    now: Instant,
) -> Result<TargetNode, SimError> {
    let mut id: Option<NodeId> = None;
    let mut links = Vec::new();
    let mut key = None;
    for (i, g) in gws.iter().enumerate() {
        let p = g.policy();
        let Some(t) = p.targets.iter().find(|t| t.name == name) else {
            continue;
        };
        let tid =
            config::target_node(p, name).ok_or_else(|| setup(name, "no cluster id".into()))?;
        if id.is_some_and(|x| x != tid) {
            return Err(setup(
                name,
                format!(
                    "cluster id {} in {}'s policy, {} before: list the targets in the same order",
                    tid.0,
                    g.name,
                    id.map_or(0, |x| x.0)
                ),
            ));
        }
        id = Some(tid);
        let gw_addr: IpAddr = p
            .links
            .iter()
            .find(|l| l.name == t.link)
            .map(|l| l.local)
            .ok_or_else(|| setup(name, format!("no link {:?} in {}'s policy", t.link, g.name)))?;
        links.push(TargetLink {
            link: LinkId(i as u32),
            gateway: g.id,
            gateway_addr: gw_addr,
            addr: t.address,
        });
        if key.is_none() {
            if let Some(c) = &p.cluster {
                let k = std::fs::read(&c.key_file).map_err(|e| {
                    setup(name, format!("cluster key {}: {e}", c.key_file.display()))
                })?;
                key = Some(ClusterKey::new(&k));
            }
        }
    }
    let id = id.ok_or_else(|| setup(name, "in no gateway's policy".into()))?;
    let key = key.ok_or_else(|| setup(name, "no [cluster] key in the policies".into()))?;
    let host = Host::new(seed, 1460, true);
    Ok(TargetNode::new(name, id, key, links, host, now))
}
