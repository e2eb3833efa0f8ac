//! The gateway's Prometheus exposition (`/metrics`).

use super::core::GatewayCore;
use crate::metrics::Exposition;

/// Render every metric of the core.
pub(super) fn render(c: &GatewayCore) -> String {
    let mut e = Exposition::default();
    let sad = c.sad();
    e.family(
        "plexgate_sa_bytes",
        "counter",
        "Inner bytes sealed or opened per SA",
    );
    for sa in sad.iter() {
        let p = sa.params();
        let l = [
            ("spi", format!("{:08x}", p.spi)),
            ("direction", format!("{:?}", p.direction).to_lowercase()),
            ("peer", p.peer.clone()),
            ("child", p.child.clone()),
        ];
        e.sample("plexgate_sa_bytes", &l, sa.stats().bytes);
    }
    e.family(
        "plexgate_sa_packets",
        "counter",
        "Packets sealed or opened per SA",
    );
    for sa in sad.iter() {
        let p = sa.params();
        let l = [
            ("spi", format!("{:08x}", p.spi)),
            ("direction", format!("{:?}", p.direction).to_lowercase()),
            ("peer", p.peer.clone()),
            ("child", p.child.clone()),
        ];
        e.sample("plexgate_sa_packets", &l, sa.stats().packets);
    }
    let k = sad.counters;
    e.family(
        "plexgate_esp_drops_total",
        "counter",
        "ESP packets dropped, by reason",
    );
    for (reason, v) in [
        ("unknown_spi", k.drop_unknown_spi),
        ("replay", k.drop_replay),
        ("bad_icv", k.drop_bad_icv),
        ("bad_padding", k.drop_bad_padding),
        ("truncated", k.drop_truncated),
        ("selector_mismatch", k.drop_selector_mismatch),
        ("seq_exhausted", k.drop_seq_exhausted),
        ("expired", k.drop_sa_expired),
    ] {
        e.sample("plexgate_esp_drops_total", &[("reason", reason.into())], v);
    }
    let cc = c.counters();
    e.family(
        "plexgate_policy_drops_total",
        "counter",
        "Packets dropped by the SPD",
    );
    e.sample(
        "plexgate_policy_drops_total",
        &[("direction", "in".into())],
        cc.drop_policy_in,
    );
    e.sample(
        "plexgate_policy_drops_total",
        &[("direction", "out".into())],
        cc.drop_policy_out,
    );
    let snap = c.distributor().snapshot();
    e.family(
        "plexgate_distrib_drops_total",
        "counter",
        "Distribution drops, by reason (spoof = GRE from the wrong link)",
    );
    for (reason, v) in snap.drops.iter() {
        e.sample(
            "plexgate_distrib_drops_total",
            &[("reason", reason.label().to_string())],
            *v,
        );
    }
    e.family(
        "plexgate_connections",
        "gauge",
        "Connections in the CRT per target",
    );
    for t in snap.targets.iter() {
        e.sample(
            "plexgate_connections",
            &[("target", t.node.0.to_string())],
            t.connections,
        );
    }
    e.finish()
}
