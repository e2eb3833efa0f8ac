//! The HA machine's configuration from the site policy: the site's gateways with
//! their default ranks (`[ha]`, `[[ha.peer]]`), every DVIPA with its gateway VIPA,
//! routing gateway and ranked backups (`[[dvipa]]`), and the timing (`[ha]
//! heartbeat`, `dead_after`), from which the fencing deadline is derived so that
//! the inequality of `docs/failover.md` holds.

use std::time::Duration;

use plexgate_ha::takeover::{
    BackupSpec, DvipaSpec, GatewayName, GatewaySpec, HaConfig, Rank, Takeback, Timing,
};
use plexgate_policy as policy;

type BoxError = Box<dyn std::error::Error>;

/// The configuration of gateway `me`.
pub fn ha_config(p: &policy::Policy, me: &str) -> Result<HaConfig, BoxError> {
    let ha = p.ha.as_ref().ok_or("the policy has no [ha] section")?;
    let spec = |name: &str, rank: u8| -> Result<GatewaySpec, BoxError> {
        Ok(GatewaySpec {
            name: GatewayName::new(name),
            rank: Rank::new(rank).map_err(|e| format!("gateway {name}: {e}"))?,
        })
    };
    let mut all = vec![spec(&ha.name, ha.rank)?];
    for peer in &ha.peers {
        all.push(spec(&peer.name, peer.rank)?);
    }
    let i = all
        .iter()
        .position(|g| g.name.as_str() == me)
        .ok_or_else(|| format!("no gateway named {me:?} in [ha]"))?;
    let me_spec = all.remove(i);
    let mut dvipas = Vec::new();
    for d in &p.dvipas {
        let vipa = d
            .gateway_vipa_in(&p.site)
            .ok_or("the policy names no gateway VIPA")?;
        let routing = d
            .routing_gateway
            .clone()
            .ok_or_else(|| format!("DVIPA {} has no routing_gateway", d.address))?;
        let backups = d
            .backups
            .iter()
            .map(|b| {
                Ok(BackupSpec {
                    gateway: GatewayName::new(b.gateway.clone()),
                    rank: Some(Rank::new(b.rank).map_err(|e| format!("{}: {e}", d.address))?),
                    distribution: None,
                })
            })
            .collect::<Result<Vec<_>, BoxError>>()?;
        dvipas.push(DvipaSpec {
            dvipa: d.address,
            gateway_vipa: vipa,
            routing_gateway: GatewayName::new(routing),
            backups,
        });
    }
    let cfg = HaConfig::new(me_spec, all, dvipas, timing(ha), Takeback::Automatic)
        .map_err(|e| format!("[ha]: {e}"))?;
    Ok(cfg)
}

/// The machine's timing from `[ha] heartbeat` and `dead_after`. An owner fences
/// itself `fence_after` after its last acknowledged heartbeat, with
/// `fence_after + max_clock_skew + heartbeat < dead_after`: here the skew bound
/// is a tenth of `dead_after` (at most 50 ms) and another tenth is kept spare.
pub fn timing(ha: &policy::Ha) -> Timing {
    let (h, d) = (ha.heartbeat, ha.dead_after);
    let skew = (d / 10).min(Duration::from_millis(50));
    let fence = d
        .saturating_sub(h + skew + d / 10)
        .max(Duration::from_millis(1));
    Timing {
        heartbeat: h,
        dead_after: d,
        fence_after: fence,
        max_clock_skew: skew,
        rank_delay: (d / 2).max(h),
        ..Timing::default()
    }
}

/// How long the gateway's store lease lives without keep-alive: the etcd
/// `lease_seconds` of the policy; on the embedded store the lease is a lock the
/// kernel releases with the process, and the TTL only bounds a hung process.
pub fn lease_ttl(p: &policy::Policy) -> Duration {
    match p.ha.as_ref().map(|h| &h.store) {
        Some(policy::Store::Etcd { lease, .. }) => *lease,
        _ => Duration::from_secs(10),
    }
}
