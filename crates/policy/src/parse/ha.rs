//! `[cluster]` (the control channel), `[ha]` with its peers and `[ha.store]`,
//! and `[log]`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::addr;
use crate::model::*;
use crate::reader::{Cx, Table};

use super::values::{name_of, parsed, path, port, rank, PLACEHOLDER_IP};

/// Largest cluster node id of a peer gateway: node ids travel in the 31 bits
/// of the GRE key (the top bit is the IPsec flag).
const NODE_ID_MAX: i128 = 0x7FFF_FFFF;

pub(super) fn cluster(mut t: Table<'_, '_>, cx: &mut Cx, base: &Path) -> Cluster {
    let key_file = path(&mut t, cx, "key_file", true, base).unwrap_or_default();
    let gateway_id = t
        .int(cx, "gateway_id", true, 1, u32::MAX as i128)
        .map_or(1, |n| n as u32);
    let port = port(&mut t, cx, "port", 7600);
    t.finish(cx, &["key_file", "gateway_id", "port"]);
    Cluster {
        key_file,
        gateway_id,
        port,
    }
}

pub(super) fn ha(mut t: Table<'_, '_>, cx: &mut Cx, base: &Path) -> Ha {
    let name = t
        .string(cx, "name", true)
        .map(|(s, _)| s)
        .unwrap_or_default();
    let own_rank = rank(&mut t, cx, "rank", true);
    let own_address = parsed(&mut t, cx, "address", false, addr::parse_ip);
    let mut peers = Vec::new();
    for mut p in t.tables(cx, "peer", "[[ha.peer]]") {
        let n = name_of(&mut p, cx, "gateway");
        let id = p.int(cx, "id", false, 1, NODE_ID_MAX).map(|n| n as u32);
        let address = parsed(&mut p, cx, "address", true, addr::parse_ip).unwrap_or(PLACEHOLDER_IP);
        let r = rank(&mut p, cx, "rank", true);
        p.finish(cx, &["name", "id", "address", "rank"]);
        peers.push(HaPeer {
            name: n,
            id,
            address,
            rank: r,
        });
    }
    let store = match t.table(cx, "store", "[ha.store]".into()) {
        Some(s) => store(s, cx, base),
        None => {
            if t.raw(cx, "store").is_none() {
                cx.err(
                    &t.sub("store"),
                    Some(t.span.clone()),
                    "[ha] needs a [ha.store] section (kind = \"embedded\" or \"etcd\")".into(),
                );
            }
            Store::Embedded {
                path: PathBuf::new(),
            }
        }
    };
    t.finish(cx, &["name", "rank", "address", "peer", "store"]);
    Ha {
        name,
        rank: own_rank,
        address: own_address,
        peers,
        store,
    }
}

fn store(mut t: Table<'_, '_>, cx: &mut Cx, base: &Path) -> Store {
    let kind = t.string(cx, "kind", true);
    let s = match kind.as_ref().map(|(k, _)| k.as_str()) {
        Some("embedded") => {
            let path = path(&mut t, cx, "path", true, base).unwrap_or_default();
            t.finish(cx, &["kind", "path"]);
            return Store::Embedded { path };
        }
        Some("etcd") => {
            let endpoints: Vec<String> = t
                .strings(cx, "endpoints", true)
                .unwrap_or_default()
                .into_iter()
                .map(|e| e.0)
                .collect();
            if endpoints.is_empty() && cx.spans.ok(&t.sub("endpoints")) {
                let span = cx.spans.get(&t.sub("endpoints"));
                cx.err(
                    &t.sub("endpoints"),
                    span,
                    "[ha.store] of kind \"etcd\" needs at least one endpoint".into(),
                );
            }
            let prefix = t
                .string(cx, "prefix", false)
                .map(|p| p.0)
                .unwrap_or_default();
            let lease = t
                .int(cx, "lease_seconds", false, 1, 3600)
                .map_or(10, |n| n as u64);
            t.finish(cx, &["kind", "endpoints", "prefix", "lease_seconds"]);
            return Store::Etcd {
                endpoints,
                prefix,
                lease: Duration::from_secs(lease),
            };
        }
        Some(other) => {
            let span = kind.as_ref().map(|k| k.1.clone());
            cx.err(
                &t.sub("kind"),
                span,
                format!("store kind \"{other}\" is unknown: use \"embedded\" or \"etcd\""),
            );
            Store::Embedded {
                path: PathBuf::new(),
            }
        }
        None => Store::Embedded {
            path: PathBuf::new(),
        },
    };
    // Unknown kind: we cannot tell which keys belong; accept the known ones.
    for k in ["path", "endpoints", "prefix", "lease_seconds"] {
        let _ = t.raw(cx, k);
    }
    t.finish(
        cx,
        &["kind", "path", "endpoints", "prefix", "lease_seconds"],
    );
    s
}

pub(super) fn log(mut t: Table<'_, '_>, cx: &mut Cx, base: &Path) -> Log {
    let keylog = path(&mut t, cx, "keylog", false, base);
    if let Some(p) = &keylog {
        let span = cx.spans.get(&t.sub("keylog"));
        cx.diags.warning(
            span,
            format!(
                "key logging is on: every IKE and ESP key will be written to {}; anyone who reads it can decrypt all traffic. Use it only in a lab",
                p.display()
            ),
        );
    }
    t.finish(cx, &["keylog"]);
    Log { keylog }
}
