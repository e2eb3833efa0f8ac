//! The agent's configuration from the site policy's `[l2]` section: which
//! interfaces speak ARP, which addresses the gateway may own (the gateway VIPAs,
//! the system address, proxied VIPAs), and the modes of seeds 002 and 004.

use std::net::IpAddr;

use plexgate_ha::l2::{
    AddressConfig, AddressKind, AnnounceConfig, ClusterConfig, ClusterMember, Config,
    InterfaceConfig,
};
use plexgate_policy as policy;
use plexgate_wire::arp::EthernetAddress;

use super::{AgentConfig, AgentError, L2Agent};

/// The machine's configuration, or `None` when the policy leaves ARP to the
/// kernel (`[l2]` absent or `arp = false`).
pub fn config(p: &policy::Policy) -> Option<Config> {
    let l2 = p.l2.as_ref().filter(|l| l.arp)?;
    let interfaces = p
        .site
        .interfaces
        .iter()
        .filter(|i| l2.interfaces.is_empty() || l2.interfaces.contains(&i.name))
        .filter_map(|i| match i.address.addr() {
            IpAddr::V4(a) => Some(InterfaceConfig {
                name: i.name.clone(),
                address: a,
                prefix_len: i.address.prefix_len(),
            }),
            IpAddr::V6(_) => None,
        })
        .collect();
    let mut addresses: Vec<AddressConfig> = p
        .site
        .gateway_vipas
        .iter()
        .filter_map(|a| match a {
            IpAddr::V4(a) => Some(AddressConfig {
                address: *a,
                kind: AddressKind::GatewayVipa,
            }),
            IpAddr::V6(_) => None,
        })
        .collect();
    addresses.extend(l2.system_address.map(|a| AddressConfig {
        address: a,
        kind: AddressKind::SystemAddress,
    }));
    addresses.extend(l2.proxy_arp.iter().map(|a| AddressConfig {
        address: *a,
        kind: AddressKind::ProxyVipa,
    }));
    let mut cfg = Config::new(interfaces, addresses);
    cfg.announce = AnnounceConfig {
        count: l2.garp_count,
        interval: l2.garp_interval,
    };
    cfg.adapter_backup = l2.adapter_backup;
    cfg.cluster = l2.cluster_mac.map(|mac| ClusterConfig {
        mac: EthernetAddress(mac),
        members: l2
            .cluster_members
            .iter()
            .map(|a| ClusterMember {
                address: *a,
                mac: None,
            })
            .collect(),
    });
    Some(cfg)
}

/// Start the agent the policy asks for. Under HA every address starts standby and
/// the takeover machine activates it; a lone gateway owns its VIPAs at once.
pub fn from_policy(p: &policy::Policy) -> Result<Option<L2Agent>, AgentError> {
    let Some(cfg) = config(p) else {
        return Ok(None);
    };
    let agent = L2Agent::start(AgentConfig::new(cfg.clone()))?;
    if p.ha.is_none() {
        for a in &cfg.addresses {
            agent.set_active(a.address, true)?;
        }
    }
    Ok(Some(agent))
}
