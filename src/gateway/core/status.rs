//! `plexgate status` of the gateway core as JSON.

use std::time::Instant;

use super::*;
use serde_json::{json, Value};

impl GatewayCore {
    /// `plexgate status` as JSON.
    pub fn status(&self, now: Instant) -> Value {
        let sas: Vec<Value> = self
            .sad
            .iter()
            .map(|sa| {
                let p = sa.params();
                let st = sa.stats();
                json!({
                    "spi": format!("{:08x}", p.spi), "direction": p.direction, "peer": p.peer, "child": p.child,
                    "transform": format!("{:?}", p.transform), "esn": p.esn, "mode": p.mode,
                    "local": p.local_addr, "remote": p.remote_addr, "udp_encap": p.encap.is_some(),
                    "local_ts": p.local_ts, "remote_ts": p.remote_ts,
                    "bytes": st.bytes, "packets": st.packets, "needs_rekey": sa.needs_rekey(),
                })
            })
            .collect();
        let snap = self.dist.snapshot();
        json!({
            "site": self.site,
            "ike_sas": self.ike.sas(now),
            "child_sas": sas,
            "esp_counters": self.sad.counters,
            "core_counters": self.counters,
            "distribution": format!("{snap:?}"),
            "dvipas": self.dist.dvipas().map(|(d, routing)| json!({"dvipa": d.dvipa, "routing": routing, "algorithm": format!("{:?}", d.algorithm)})).collect::<Vec<_>>(),
            "dpt": self.dpt_json(),
            "crt_entries": self.dist.crt().len(),
            "distrib_drops": snap.drops.iter().map(|(r, n)| (r.label().to_string(), json!(n))).collect::<serde_json::Map<_, _>>(),
            "distrib_targets": snap.targets.iter().map(|t| json!({"node": t.node.0, "name": self.target_names.get(&t.node.0), "connections": t.connections, "link_up": t.link_up})).collect::<Vec<_>>(),
        })
    }

    /// The DPT as JSON: per (DVIPA, port) the targets with weight, listener, link
    /// state and active connections, sorted.
    pub(super) fn dpt_json(&self) -> Value {
        let mut rows: Vec<_> = self.dist.dpt().iter().collect();
        rows.sort_by_key(|(k, _)| **k);
        rows.iter()
            .map(|((dvipa, port), e)| {
                json!({
                    "dvipa": dvipa, "port": port, "algorithm": format!("{:?}", e.algorithm),
                    "targets": e.targets().iter().map(|t| json!({
                        "node": t.node.0, "name": self.target_names.get(&t.node.0), "weight": t.weight, "listening": t.listening, "link_up": t.link_up, "active": t.active,
                    })).collect::<Vec<_>>(),
                })
            })
            .collect()
    }
}
