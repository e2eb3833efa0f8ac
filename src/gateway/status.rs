//! The daemon's parts of `plexgate status` that are not the core's (the shared
//! store: backend, reachable, lag, records, who holds a lease) and the listing of
//! `plexgate records`: what a backup would renegotiate, with identities shown as
//! text and never a key (records hold none).

use serde_json::{json, Value};

use plexgate_store as store;
use store::records as rec;

use super::store::SiteStore;

/// The store's part of `plexgate status`.
pub(super) fn store_json(site: &SiteStore) -> Value {
    let w = site.writer.status();
    let count = |prefix: String| site.store.list(&prefix).map(|v| v.len()).ok();
    let holders: Vec<&str> = site
        .gateways
        .iter()
        .filter(|g| {
            site.store
                .get(&site.keys.heartbeat(g))
                .is_ok_and(|e| e.is_some())
        })
        .map(String::as_str)
        .collect();
    json!({
        "backend": w.backend,
        "reachable": w.reachable,
        "pending": w.pending,
        "lag_ms": w.lag_ms,
        "outages": w.outages,
        "last_error": w.last_error,
        "ike_records": count(site.keys.ike_prefix()),
        "child_records": count(site.keys.child_prefix()),
        "lease_holders": holders,
        "writer": w,
    })
}

/// `plexgate records --json`.
pub(super) fn records_json(l: &rec::LoadedRecords) -> Value {
    let ike: Vec<Value> = l
        .ike
        .iter()
        .map(|i| {
            let r = &i.record;
            let children: Vec<Value> = l
                .children_of(r.spis)
                .map(|c| child_json(&c.record))
                .collect();
            json!({
                "peer": r.peer,
                "spis": r.spis.to_string(),
                "initiator": r.initiator,
                "local": r.local,
                "remote": r.remote,
                "nat_local": r.nat_local,
                "nat_remote": r.nat_remote,
                "local_id": identity(&r.local_id),
                "remote_id": identity(&r.remote_id),
                "auth_method": r.auth_method,
                "proposal": format!("{:?}", r.proposal),
                "established_unix_ms": r.established_unix_ms,
                "children": children,
            })
        })
        .collect();
    let orphans: Vec<Value> = l.orphans().map(|c| child_json(&c.record)).collect();
    json!({
        "ike": ike,
        "orphan_children": orphans,
        "refused": l.refused.iter().map(|(k, e)| json!({"key": k, "why": e.to_string()})).collect::<Vec<_>>(),
    })
}

fn child_json(c: &rec::ChildRecord) -> Value {
    json!({
        "peer": c.peer,
        "child": c.child,
        "spi_in": format!("{:08x}", c.spis.spi_in),
        "spi_out": format!("{:08x}", c.spis.spi_out),
        "proposal": format!("{:?}", c.proposal),
        "esn": c.esn,
        "mode": format!("{:?}", c.mode),
        "ts_local": c.ts_local.iter().map(selector).collect::<Vec<_>>(),
        "ts_remote": c.ts_remote.iter().map(selector).collect::<Vec<_>>(),
        "udp_encap": c.udp_encap.is_some(),
        "dvipas": c.dvipas,
    })
}

fn selector(s: &rec::Selector) -> String {
    let range = if s.start == s.end {
        s.start.to_string()
    } else {
        format!("{}-{}", s.start, s.end)
    };
    match (s.protocol, s.start_port, s.end_port) {
        (0, _, _) => range,
        (p, 0, 65535) => format!("{range}[{p}]"),
        (p, a, b) if a == b => format!("{range}[{p}/{a}]"),
        (p, a, b) => format!("{range}[{p}/{a}-{b}]"),
    }
}

fn identity(i: &rec::Identity) -> String {
    plexgate_ike::message::Identification {
        id_type: i.id_type,
        data: i.data.clone(),
    }
    .to_string()
}
