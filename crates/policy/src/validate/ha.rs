//! `[cluster]` and `[ha]`: ports that do not collide, unique gateway names,
//! liveness timing that a backup can rely on, store keys with distinct ids, and
//! the etcd prefix.

use std::collections::HashMap;
use std::time::Duration;

use crate::model::*;
use crate::reader::Cx;

use super::{err, unique};

pub(super) fn cluster_and_ha(p: &mut Policy, cx: &mut Cx) {
    if let Some(c) = &p.cluster {
        cluster_ports(p, cx, c);
    }
    let site_name = p.site.name.clone();
    let Some(ha) = &mut p.ha else {
        return;
    };
    liveness(cx, ha);
    store_keys(cx, &ha.store_keys);
    let all = std::iter::once(ha.name.as_str()).chain(ha.peers.iter().map(|x| x.name.as_str()));
    unique(cx, "gateway", all, |i| match i {
        0 => "ha.name".to_string(),
        i => format!("ha.peer[{}].name", i - 1),
    });
    for (i, x) in ha.peers.iter().enumerate() {
        if x.rank == ha.rank
            && cx.spans.okf(format_args!("ha.peer[{i}].rank"))
            && cx.spans.ok("ha.rank")
        {
            cx.diags.warning(
                cx.spans.get(&format!("ha.peer[{i}].rank")),
                format!("gateway \"{}\" has the same default rank {} as this gateway \"{}\"; DVIPA backups must then set ranks explicitly", x.name, x.rank, ha.name),
            );
        }
    }
    if let Store::Etcd { prefix, .. } = &mut ha.store {
        if prefix.is_empty() {
            *prefix = format!("/plexgate/{site_name}/");
        } else if !prefix.starts_with('/') && cx.spans.ok("ha.store.prefix") {
            err(
                cx,
                "ha.store.prefix",
                format!("etcd prefix \"{prefix}\" must start with `/`"),
            );
        }
    }
}

/// The control channel and GRE-in-UDP ports do not collide with IKE (or each
/// other).
fn cluster_ports(p: &Policy, cx: &mut Cx, c: &Cluster) {
    let ike = [p.site.ike_port, p.site.natt_port];
    if ike.contains(&c.port) && cx.spans.ok("cluster.port") {
        err(
            cx,
            "cluster.port",
            format!(
                "cluster port {} collides with the IKE ports {} / {}",
                c.port, p.site.ike_port, p.site.natt_port
            ),
        );
    }
    let udp_links = p.links.iter().any(|l| l.encap == LinkEncap::Udp);
    let collides = ike.contains(&c.gre_udp_port) || c.gre_udp_port == c.port;
    if udp_links && collides && cx.spans.ok("cluster.gre_udp_port") {
        err(
            cx,
            "cluster.gre_udp_port",
            format!(
                "gre_udp_port {} collides with the IKE ports {} / {} or the cluster port {}",
                c.gre_udp_port, p.site.ike_port, p.site.natt_port, c.port
            ),
        );
    }
}

/// The shortest heartbeat: a store write per gateway every 20 ms is already
/// far more than failover needs.
const MIN_HEARTBEAT: Duration = Duration::from_millis(20);

/// `heartbeat` is at least 20 ms and `dead_after` at least three of them: one
/// late or lost heartbeat must not make a live gateway dead.
fn liveness(cx: &mut Cx, ha: &Ha) {
    if ha.heartbeat < MIN_HEARTBEAT && cx.spans.ok("ha.heartbeat") {
        err(
            cx,
            "ha.heartbeat",
            format!(
                "heartbeat {} in [ha] is too short: at least 20ms",
                fmt_duration(ha.heartbeat)
            ),
        );
        return;
    }
    if ha.dead_after < ha.heartbeat * 3
        && cx.spans.ok("ha.dead_after")
        && cx.spans.ok("ha.heartbeat")
    {
        let at = if cx.spans_has("ha.dead_after") {
            "ha.dead_after"
        } else {
            "ha.heartbeat"
        };
        err(
            cx,
            at,
            format!(
                "dead_after {} in [ha] must be at least 3 heartbeats ({}): a gateway is declared dead only after several missed heartbeats",
                fmt_duration(ha.dead_after),
                fmt_duration(ha.heartbeat * 3)
            ),
        );
    }
}

/// Old store key ids are distinct and differ from the current one (a record
/// names the key it was sealed with by id).
fn store_keys(cx: &mut Cx, k: &StoreKeys) {
    let mut seen: HashMap<u16, usize> = HashMap::new();
    for (i, o) in k.old_keys.iter().enumerate() {
        let path = format!("ha.store.old_keys[{i}].id");
        if !cx.spans.ok(&path) || o.id == 0 {
            continue;
        }
        if o.id == k.key_id && cx.spans.ok("ha.store.key_id") {
            err(
                cx,
                &path,
                format!(
                    "old store key id {} is the current `key_id`; an old key needs its own id",
                    o.id
                ),
            );
        } else if let Some(j) = seen.insert(o.id, i) {
            let note = cx.diags.note(
                cx.spans.get(&format!("ha.store.old_keys[{j}].id")),
                "the first key with that id",
            );
            let span = cx.spans.get(&path);
            cx.diags
                .error(span, format!("two old store keys have id {}", o.id))
                .notes
                .push(note);
        }
    }
}
