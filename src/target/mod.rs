//! The target stack daemon (`plexgate target`, DESIGN.md flow 3).
//!
//! GRE from a routing gateway → anti-spoof → the inner packet goes into a TUN
//! device, where the kernel delivers it to the server bound on the DVIPA (the DVIPA
//! sits on the loopback device, not advertised on the LAN). Every packet the host
//! sends from a DVIPA is steered into the same TUN by a policy rule (IPv4 and IPv6),
//! so plexgate sees the replies: those of IPsec connections go back over GRE to the
//! DVIPA's routing gateway, those of plain connections leave directly. The target
//! knows every gateway of its site from the policy, each on its own link with its
//! own sockets (bound to the target's address on that link), and reports its
//! listeners (SRVSTAT, from the kernel's socket table) and connections (NEWCONN) to
//! whichever gateway owns each DVIPA.
//!
//! - `io`: the sockets per link, the TUN, and where each cluster message goes;
//! - `routes`: the DVIPAs on the loopback and the policy routing into the TUN;
//! - `threads`: one GRE and one cluster receive thread per link, the TUN reader,
//!   and the timer that sleeps until the stack's next deadline or socket scan;
//! - this file: start-up and the control socket.

mod io;
mod routes;
mod threads;

use std::net::IpAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};

use plexgate_distrib as distrib;

use self::io::TargetIo;
use crate::io::tun::Tun;

type BoxError = Box<dyn std::error::Error>;

/// What a target needs from the policy.
struct Setup {
    node: distrib::NodeId,
    links: Vec<crate::cluster::TargetLink>,
    key: Vec<u8>,
    port: u16,
    /// The DVIPAs this target is a candidate for (added to the loopback).
    dvipas: Vec<IpAddr>,
}

impl Setup {
    fn load(policy_path: &Path, name: &str) -> Result<Setup, BoxError> {
        let p = plexgate_policy::load(policy_path)
            .map_err(|d| format!("{d}"))?
            .policy;
        if p.target(name).is_none() {
            return Err(format!("no target {name:?} in {}", policy_path.display()).into());
        }
        let node = crate::cluster::target_id(&p, name).ok_or("target id")?;
        let (links, skipped) = crate::cluster::target_links(&p, name);
        for g in skipped {
            tracing::warn!("gateway {g:?} has a link to {name} but no `id` in [[ha.peer]]: its GRE and cluster messages are refused");
        }
        if links.is_empty() {
            return Err(format!("target {name:?} has no link to a gateway with a node id").into());
        }
        let Some(c) = &p.cluster else {
            return Err("the policy has no [cluster] section: targets need the cluster key".into());
        };
        let key =
            std::fs::read(&c.key_file).map_err(|e| format!("{}: {e}", c.key_file.display()))?;
        let dvipas = p
            .dvipas
            .iter()
            .filter(|d| match &d.targets {
                plexgate_policy::TargetSet::All => true,
                plexgate_policy::TargetSet::Named(n) => n.iter().any(|t| t == name),
            })
            .map(|d| d.address)
            .collect();
        Ok(Setup {
            node,
            links,
            key,
            port: c.port,
            dvipas,
        })
    }
}

/// Run the target `name` of the site policy until killed.
pub fn run(policy_path: &Path, name: &str, ctl: &Path) -> Result<(), BoxError> {
    let setup = Setup::load(policy_path, name)?;
    // Seeded from the clock so that a restarted target is never taken for a
    // replayer (the gateways re-synchronise with one challenge).
    let first_seq = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(1);
    let mut stack = distrib::TargetStack::new(distrib::TargetConfig::new(
        setup.node,
        distrib::ClusterKey::new(&setup.key),
        first_seq,
    ));
    for l in &setup.links {
        stack.add_node(l.gateway.clone());
    }
    let tun_name = format!("pgt-{}", name.chars().take(10).collect::<String>());
    // With offloads (IFF_VNET_HDR, TSO/GRO): replies are read as TCP super-packets
    // and split here, and the segments of one GRE batch are written coalesced, so
    // the kernel sees one big packet instead of dozens (as on the gateway).
    let tun =
        Tun::open_with(&tun_name, None, 1500, true).map_err(|e| format!("TUN {tun_name}: {e}"))?;
    routes::install(&tun_name, &setup.dvipas);
    let io = Arc::new(TargetIo::open(tun, &setup.links, setup.port)?);
    stack.hello();
    let stack = Arc::new(Mutex::new(stack));
    io.flush(&mut stack.lock().unwrap_or_else(|e| e.into_inner()));
    let threads = threads::spawn_all(&stack, &io);
    serve_control(ctl, &stack)?;
    let gateways: Vec<String> = setup
        .links
        .iter()
        .map(|l| format!("{} {} via {}", l.gateway.name, l.gateway.address, l.local))
        .collect();
    tracing::info!(target = name, tun = %tun_name, gateways = %gateways.join(", "), "target running");
    for t in threads {
        let _ = t.join();
    }
    Ok(())
}

/// `status`: the target's id, the gateways it knows, who owns each DVIPA,
/// connections and drop counters.
fn serve_control(ctl: &Path, stack: &Arc<Mutex<distrib::TargetStack>>) -> Result<(), BoxError> {
    let stack = stack.clone();
    let h: crate::ctl::Handler = Arc::new(move |_req| {
        let s = stack.lock().unwrap_or_else(|e| e.into_inner());
        let snap = s.snapshot();
        let owners: Vec<serde_json::Value> = s
            .served()
            .iter()
            .filter_map(|d| {
                s.owner(d.dvipa).map(|o| {
                    serde_json::json!({"dvipa": d.dvipa.to_string(), "gateway": o.gateway.0, "epoch": o.epoch})
                })
            })
            .collect();
        let gateways: Vec<serde_json::Value> = s
            .nodes()
            .iter()
            .map(|n| serde_json::json!({"node": n.id.0, "name": n.name, "address": n.address.to_string(), "link": n.link.0}))
            .collect();
        serde_json::json!({
            "target": s.id().0,
            "connections": s.connection_count(),
            "served": s.served().iter().map(|d| d.dvipa.to_string()).collect::<Vec<_>>(),
            "owners": owners,
            "gateways": gateways,
            "cluster_accepted": snap.cluster_accepted,
            "drops": distrib::DropReason::ALL
                .iter()
                .map(|r| (r.label().to_string(), serde_json::json!(s.counters().drops(*r))))
                .collect::<serde_json::Map<_, _>>(),
        })
    });
    crate::ctl::serve(ctl, h)?;
    Ok(())
}
