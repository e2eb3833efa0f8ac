//! From the site policy (crate `plexgate-policy`) to the configurations of the
//! protocol crates: the IKE endpoint's peers, the SPD, and the distributor's DVIPAs,
//! targets and links. Pure functions except for reading the key files the policy
//! names (already checked by `plexgate policy check`).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use plexgate_distrib as distrib;
use plexgate_ike as ike;
use plexgate_ipsec as ipsec;
use plexgate_policy as policy;

/// A configuration error that `policy check` cannot see (e.g. an algorithm the
/// engine does not implement).
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A key file could not be read.
    #[error("{path}: {err}")]
    KeyFile {
        /// The file.
        path: String,
        /// What went wrong.
        err: std::io::Error,
    },
    /// A certificate, private key or CA file could not be used.
    #[error("peer {peer:?}: {err}")]
    Credentials {
        /// The policy peer.
        peer: String,
        /// What the PKI said.
        err: plexgate_pki::PkiError,
    },
    /// Something the policy allows but this gateway cannot do.
    #[error("{0}")]
    Unsupported(String),
}

/// Turn the policy's peers into the IKE engine's configuration.
pub fn ike_config(p: &policy::Policy) -> Result<ike::Config, ConfigError> {
    let mut peers = Vec::new();
    for peer in &p.peers {
        peers.push(ike_peer(p, peer)?);
    }
    Ok(ike::Config {
        peers,
        limits: ike::Limits::default(),
    })
}

fn ike_peer(p: &policy::Policy, peer: &policy::Peer) -> Result<ike::PeerConfig, ConfigError> {
    let auth = match &peer.auth {
        policy::Auth::Psk { psk_file } => {
            let raw = std::fs::read(psk_file).map_err(|err| ConfigError::KeyFile {
                path: psk_file.display().to_string(),
                err,
            })?;
            ike::AuthConfig::Psk(trim_secret(&raw))
        }
        policy::Auth::Cert {
            cert,
            private_key,
            ca,
        } => {
            let bad = |err| ConfigError::Credentials {
                peer: peer.name.clone(),
                err,
            };
            let credentials =
                plexgate_pki::LocalCredentials::load(private_key, cert).map_err(bad)?;
            let trust = plexgate_pki::TrustStore::from_files(ca).map_err(bad)?;
            ike::AuthConfig::Cert {
                credentials: std::sync::Arc::new(credentials),
                trust: std::sync::Arc::new(trust),
            }
        }
    };
    // encap = "udp": start IKE on the NAT-T port, so that both ends carry ESP in UDP
    // (RFC 7296 §2.23: "An initiator can use port 4500 for both IKE and ESP,
    // regardless of whether or not there is a NAT, even at the beginning of IKE").
    let ike_port = match peer.encap {
        policy::Encap::Auto => p.site.ike_port,
        policy::Encap::Udp => p.site.natt_port,
    };
    let remote_addr = match peer.remote {
        policy::RemoteAddr::Host(a) => Some(SocketAddr::new(a, ike_port)),
        _ => None,
    };
    let local_addr = p
        .site
        .gateway_vipas
        .first()
        .map(|a| SocketAddr::new(*a, ike_port));
    let mut ike_proposals = Vec::new();
    for prop in &peer.proposals {
        ike_proposals.extend(ike_proposals_of(prop));
    }
    if ike_proposals.is_empty() {
        return Err(ConfigError::Unsupported(format!(
            "peer {:?}: none of its IKE proposals uses only algorithms this gateway implements",
            peer.name
        )));
    }
    let children = peer
        .children
        .iter()
        .map(|c| ike_child(p, peer, c))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(ike::PeerConfig {
        name: peer.name.clone(),
        local_id: ike::config::Identity(identity(&peer.local_id)),
        remote_id: ike::config::Identity(identity(&peer.remote_id)),
        remote_addr,
        local_addr,
        auth,
        ike_proposals,
        children,
        rekey_time: peer.rekey_time,
        rand_time: peer.rekey_time / 10,
        dpd: peer.dpd_delay,
        initial_contact: true,
        // strongSwan's retransmit_timeout / _base / _tries, per peer; DPD uses them.
        retransmit: Some(ike::Retransmit {
            timeout: peer.retransmit.timeout,
            base: peer.retransmit.base,
            tries: u32::from(peer.retransmit.tries),
        }),
    })
}

/// PSK files hold the secret, optionally followed by a newline.
fn trim_secret(raw: &[u8]) -> Vec<u8> {
    let mut v = raw.to_vec();
    while v.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
        v.pop();
    }
    v
}

fn identity(id: &policy::Identity) -> String {
    match id {
        policy::Identity::Any => "%any".into(),
        policy::Identity::Fqdn(s) => s.trim_start_matches('@').into(),
        policy::Identity::Email(s) | policy::Identity::Dn(s) => s.clone(),
        policy::Identity::Ip(a) => a.to_string(),
    }
}

fn dh_id(g: policy::DhGroup) -> Option<u16> {
    let id = g.transform_id();
    // Groups the IKE engine implements: 14 (MODP-2048), 19, 20, 31.
    matches!(id, 14 | 19 | 20 | 31).then_some(id)
}

/// The integrity transforms that go with an encryption transform: none for an
/// AEAD (RFC 7296 §3.3: combined-mode ciphers carry their own), else each listed.
fn integrity_choices(e: &policy::Encr, integrity: &[policy::Integ]) -> Vec<Option<u16>> {
    if e.is_aead() {
        vec![None]
    } else {
        integrity.iter().map(|i| Some(i.transform_id())).collect()
    }
}

fn ike_proposals_of(prop: &policy::IkeProposal) -> Vec<ike::IkeProposal> {
    let mut out = Vec::new();
    for e in &prop.encryption {
        let integs = integrity_choices(e, &prop.integrity);
        for integ in &integs {
            for prf in &prop.prf {
                for dh in prop.dh.iter().filter_map(|g| dh_id(*g)) {
                    out.push(ike::IkeProposal {
                        encr: e.transform_id(),
                        encr_bits: e.key_bits(),
                        integ: *integ,
                        prf: prf.transform_id(),
                        dh,
                    });
                }
            }
        }
    }
    out
}

fn esp_proposals_of(prop: &policy::EspProposal) -> Vec<ike::EspProposal> {
    let mut out = Vec::new();
    let esns: Vec<bool> = if prop.esn.is_empty() {
        vec![false]
    } else {
        prop.esn
            .iter()
            .map(|e| matches!(e, policy::Esn::Yes))
            .collect()
    };
    let pfs: Vec<Option<u16>> = if prop.pfs.is_empty() {
        vec![None]
    } else {
        prop.pfs
            .iter()
            .filter_map(|g| dh_id(*g))
            .map(Some)
            .collect()
    };
    for e in &prop.encryption {
        let integs = integrity_choices(e, &prop.integrity);
        for integ in &integs {
            for esn in &esns {
                for dh in &pfs {
                    out.push(ike::EspProposal {
                        encr: e.transform_id(),
                        encr_bits: e.key_bits(),
                        integ: *integ,
                        esn: *esn,
                        dh: *dh,
                    });
                }
            }
        }
    }
    out
}

fn ike_child(
    p: &policy::Policy,
    peer: &policy::Peer,
    c: &policy::Child,
) -> Result<ike::ChildConfig, ConfigError> {
    let local_ts = c
        .local_ts
        .iter()
        .map(|t| ts_of(t, p.site.gateway_vipas.first().copied()))
        .collect();
    let peer_addr = match peer.remote {
        policy::RemoteAddr::Host(a) => Some(a),
        _ => None,
    };
    // `dynamic` for a peer whose address is not known is the peer's own IKE address,
    // found per IKE SA by the engine (never whatever the peer proposes).
    let (dynamic, fixed): (Vec<_>, Vec<_>) = c
        .remote_ts
        .iter()
        .partition(|t| peer_addr.is_none() && matches!(t.addr, policy::TsAddr::Dynamic));
    let remote_ts = fixed.into_iter().map(|t| ts_of(t, peer_addr)).collect();
    let remote_dynamic = dynamic.into_iter().map(|t| ts_of(t, None)).collect();
    let mut esp = Vec::new();
    for prop in &c.esp_proposals {
        esp.extend(esp_proposals_of(prop));
    }
    Ok(ike::ChildConfig {
        name: c.name.clone(),
        local_ts,
        remote_ts,
        remote_dynamic,
        esp_proposals: esp,
        mode: match c.mode {
            policy::Mode::Transport => ike::Mode::Transport,
            _ => ike::Mode::Tunnel,
        },
        rekey_time: c.lifetime.rekey_time,
        life_time: c.lifetime.life_time,
        start_action: match c.start_action {
            policy::StartAction::None => ike::StartAction::None,
            policy::StartAction::Trap => ike::StartAction::Trap,
            policy::StartAction::Start => ike::StartAction::Start,
        },
    })
}

/// A policy selector as an IKE traffic selector. `dynamic` stands for the
/// peer's (or our) own address when it is known; for a road-warrior peer whose
/// address is not known it admits any address and the narrowing of RFC 7296 §2.9
/// picks what the peer proposes.
fn ts_of(t: &policy::TrafficSelector, dynamic: Option<IpAddr>) -> ike::TrafficSelector {
    let (start, end) = match &t.addr {
        policy::TsAddr::Dynamic => match dynamic {
            Some(a) => (a, a),
            None => (
                IpAddr::V4(Ipv4Addr::UNSPECIFIED),
                IpAddr::V4(Ipv4Addr::BROADCAST),
            ),
        },
        policy::TsAddr::Sel(policy::AddrSel::Any) => (
            IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            IpAddr::V4(Ipv4Addr::BROADCAST),
        ),
        policy::TsAddr::Sel(policy::AddrSel::Range(r)) => (r.start, r.end),
    };
    ike::TrafficSelector {
        protocol: t.proto.unwrap_or(0),
        start_port: t.ports.lo,
        end_port: t.ports.hi,
        start,
        end,
    }
}

/// The SPD of the policy (both directions, in file order).
pub fn spd(p: &policy::Policy) -> ipsec::Spd {
    let mut spd = ipsec::Spd::new();
    for r in &p.spd {
        let local = sel(&r.local, r.protocol, r.local_ports);
        let remote = sel(&r.remote, r.protocol, r.remote_ports);
        let action = match &r.action {
            policy::SpdAction::Protect { peer, child } => ipsec::SpdAction::Protect {
                peer: peer.clone(),
                proposals: Vec::new(),
                child: child.clone(),
            },
            policy::SpdAction::Bypass => ipsec::SpdAction::Bypass,
            policy::SpdAction::Discard => ipsec::SpdAction::Discard,
        };
        let rule = ipsec::SpdRule {
            local,
            remote,
            action,
        };
        if matches!(r.direction, policy::Direction::In | policy::Direction::Both) {
            spd.push(ipsec::Direction::Inbound, rule.clone());
        }
        if matches!(
            r.direction,
            policy::Direction::Out | policy::Direction::Both
        ) {
            spd.push(ipsec::Direction::Outbound, rule);
        }
    }
    spd
}

fn sel(a: &policy::AddrSel, proto: Option<u8>, ports: policy::PortRange) -> ipsec::TrafficSelector {
    let (start_addr, end_addr) = match a {
        policy::AddrSel::Any => (
            IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            IpAddr::V4(Ipv4Addr::BROADCAST),
        ),
        policy::AddrSel::Range(r) => (r.start, r.end),
    };
    ipsec::TrafficSelector {
        protocol: proto.unwrap_or(0),
        start_port: ports.lo,
        end_port: ports.hi,
        start_addr,
        end_addr,
    }
}

/// Convert an IKE selector to the data plane's.
pub fn ts_to_ipsec(t: &ike::TrafficSelector) -> ipsec::TrafficSelector {
    ipsec::TrafficSelector {
        protocol: t.protocol,
        start_port: t.start_port,
        end_port: t.end_port,
        start_addr: t.start,
        end_addr: t.end,
    }
}

/// Node ids on the cluster channel: the gateway's id comes from `[cluster]`;
/// targets are numbered 1000 + their index in the policy.
pub fn target_node(p: &policy::Policy, name: &str) -> Option<distrib::NodeId> {
    p.targets
        .iter()
        .position(|t| t.name == name)
        .map(|i| distrib::NodeId(1000 + i as u32))
}

/// This gateway's node id.
pub fn gateway_node(p: &policy::Policy) -> distrib::NodeId {
    distrib::NodeId(p.cluster.as_ref().map(|c| c.gateway_id).unwrap_or(1))
}

/// The DVIPAs of the policy as distributor configurations.
pub fn dvipas(p: &policy::Policy) -> Vec<distrib::dpt::DvipaConfig> {
    let gw = gateway_node(p);
    // The site's gateways by name: a DVIPA's routing gateway and backups travel
    // in its announcement, so that targets accept a backup that takes it over.
    let ids: std::collections::HashMap<String, distrib::NodeId> = p
        .gateways()
        .into_iter()
        .filter_map(|g| g.id.map(|id| (g.name, distrib::NodeId(id))))
        .collect();
    p.dvipas
        .iter()
        .map(|d| {
            let ports = if d.ports.is_empty() {
                distrib::PortSet::All
            } else {
                distrib::PortSet::List(d.ports.iter().flat_map(|r| r.lo..=r.hi).collect())
            };
            // Always an explicit list, so that per-target weights travel with it.
            let targets = distrib::TargetSet::List(
                p.targets
                    .iter()
                    .filter(|t| match &d.targets {
                        policy::TargetSet::All => true,
                        policy::TargetSet::Named(names) => names.contains(&t.name),
                    })
                    .filter_map(|t| {
                        let w = d.weights.get(&t.name).copied().unwrap_or(t.weight);
                        target_node(p, &t.name).map(|n| (n, w.min(u32::from(u16::MAX)) as u16))
                    })
                    .collect(),
            );
            let algorithm = match d.method {
                policy::Method::RoundRobin => distrib::Algorithm::RoundRobin,
                policy::Method::WeightedRoundRobin => distrib::Algorithm::WeightedRoundRobin,
                policy::Method::LeastConnections => distrib::Algorithm::LeastConnections,
            };
            distrib::dpt::DvipaConfig {
                dvipa: d.address,
                ports,
                targets,
                algorithm,
                routing_gateway: d
                    .routing_gateway
                    .as_ref()
                    .and_then(|n| ids.get(n).copied())
                    .unwrap_or(gw),
                backups: d
                    .backups
                    .iter()
                    .filter_map(|b| ids.get(&b.gateway).map(|n| (*n, b.rank)))
                    .collect(),
            }
        })
        .collect()
}

/// Unspecified address of the same family (helper for "any" selectors).
pub fn unspecified_like(a: IpAddr) -> IpAddr {
    match a {
        IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
    }
}

/// Default CRT idle timeout used when the policy says nothing.
pub const CRT_IDLE: Duration = Duration::from_secs(300);
