//! `[cluster]` (the control channel), `[ha]` with its peers and `[ha.store]`,
//! and `[log]`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::addr;
use crate::model::*;
use crate::reader::{Cx, Table};

use super::values::{duration, name_of, parsed, path, port, rank, PLACEHOLDER_IP};

/// Largest cluster node id of a peer gateway: node ids travel in the 31 bits
/// of the GRE key (the top bit is the IPsec flag).
const NODE_ID_MAX: i128 = 0x7FFF_FFFF;

pub(super) fn cluster(mut t: Table<'_, '_>, cx: &mut Cx, base: &Path) -> Cluster {
    let key_file = path(&mut t, cx, "key_file", true, base).unwrap_or_default();
    let gateway_id = t
        .int(cx, "gateway_id", true, 1, u32::MAX as i128)
        .map_or(1, |n| n as u32);
    let cluster_port = port(&mut t, cx, "port", 7600);
    //= https://www.rfc-editor.org/rfc/rfc8086#section-3.2
    //# The destination port MUST be set to 4754 (GRE-in-UDP).
    // 4754 is the default; another port can be set for sites whose firewalls
    // or NATs need it (both ends read it from this one policy).
    let gre_udp_port = port(&mut t, cx, "gre_udp_port", 4754);
    t.finish(cx, &["key_file", "gateway_id", "port", "gre_udp_port"]);
    Cluster {
        key_file,
        gateway_id,
        port: cluster_port,
        gre_udp_port,
    }
}

/// Default heartbeat: how often a gateway renews its liveness in the store.
const HEARTBEAT: Duration = Duration::from_millis(150);

pub(super) fn ha(mut t: Table<'_, '_>, cx: &mut Cx, base: &Path) -> Ha {
    let name = t
        .string(cx, "name", true)
        .map(|(s, _)| s)
        .unwrap_or_default();
    let own_rank = rank(&mut t, cx, "rank", true);
    let own_address = parsed(&mut t, cx, "address", false, addr::parse_ip);
    let peers = ha_peers(&mut t, cx);
    let (store, store_keys) = match t.table(cx, "store", "[ha.store]".into()) {
        Some(s) => store(s, cx, base),
        None => {
            if t.raw(cx, "store").is_none() {
                cx.err(
                    &t.sub("store"),
                    Some(t.span.clone()),
                    "[ha] needs a [ha.store] section (kind = \"embedded\" or \"etcd\")".into(),
                );
            }
            (
                Store::Embedded {
                    path: PathBuf::new(),
                },
                no_keys(),
            )
        }
    };
    let heartbeat = duration(&mut t, cx, "heartbeat").unwrap_or(HEARTBEAT);
    let dead_after = duration(&mut t, cx, "dead_after").unwrap_or(heartbeat * 4);
    t.finish(
        cx,
        &[
            "name",
            "rank",
            "address",
            "peer",
            "store",
            "heartbeat",
            "dead_after",
        ],
    );
    Ha {
        name,
        rank: own_rank,
        address: own_address,
        peers,
        store,
        store_keys,
        heartbeat,
        dead_after,
    }
}

fn ha_peers(t: &mut Table<'_, '_>, cx: &mut Cx) -> Vec<HaPeer> {
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
    peers
}

fn no_keys() -> StoreKeys {
    StoreKeys {
        key_file: PathBuf::new(),
        key_id: 1,
        old_keys: Vec::new(),
    }
}

const STORE_KEYS: &[&str] = &[
    "kind",
    "path",
    "endpoints",
    "prefix",
    "lease_seconds",
    "key_file",
    "key_id",
    "old_keys",
];

fn store(mut t: Table<'_, '_>, cx: &mut Cx, base: &Path) -> (Store, StoreKeys) {
    let kind = t.string(cx, "kind", true);
    let store = match kind.as_ref().map(|(k, _)| k.as_str()) {
        Some("embedded") => {
            let path = path(&mut t, cx, "path", true, base).unwrap_or_default();
            Store::Embedded { path }
        }
        Some("etcd") => etcd(&mut t, cx),
        Some(other) => {
            let span = kind.as_ref().map(|k| k.1.clone());
            cx.err(
                &t.sub("kind"),
                span,
                format!("store kind \"{other}\" is unknown: use \"embedded\" or \"etcd\""),
            );
            // We cannot tell which keys belong; accept the known ones.
            for k in ["path", "endpoints", "prefix", "lease_seconds"] {
                let _ = t.raw(cx, k);
            }
            Store::Embedded {
                path: PathBuf::new(),
            }
        }
        None => Store::Embedded {
            path: PathBuf::new(),
        },
    };
    let keys = store_keys(&mut t, cx, base);
    let known: &[&str] = match &store {
        _ if !matches!(
            kind.as_ref().map(|k| k.0.as_str()),
            Some("embedded" | "etcd")
        ) =>
        {
            STORE_KEYS
        }
        Store::Embedded { .. } => &["kind", "path", "key_file", "key_id", "old_keys"],
        Store::Etcd { .. } => &[
            "kind",
            "endpoints",
            "prefix",
            "lease_seconds",
            "key_file",
            "key_id",
            "old_keys",
        ],
    };
    t.finish(cx, known);
    (store, keys)
}

fn etcd(t: &mut Table<'_, '_>, cx: &mut Cx) -> Store {
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
    Store::Etcd {
        endpoints,
        prefix,
        lease: Duration::from_secs(lease),
    }
}

/// `key_file` (required: every record is sealed), `key_id`, `old_keys`.
fn store_keys(t: &mut Table<'_, '_>, cx: &mut Cx, base: &Path) -> StoreKeys {
    let key_file = path(t, cx, "key_file", false, base);
    if key_file.is_none() && !cx.spans_has(&t.sub("key_file")) {
        cx.err(
            &t.sub("key_file"),
            Some(t.span.clone()),
            "[ha.store] is missing the required key `key_file`: recovery records are sealed with it (32 bytes as 64 hex digits, mode 0600)".into(),
        );
    }
    let key_id = t.int(cx, "key_id", false, 1, 65535).map_or(1, |n| n as u16);
    let mut old_keys = Vec::new();
    for mut o in t.tables(cx, "old_keys", "[ha.store] old key") {
        let id = o.int(cx, "id", true, 1, 65535).map_or(0, |n| n as u16);
        let file = path(&mut o, cx, "file", true, base).unwrap_or_default();
        o.finish(cx, &["id", "file"]);
        old_keys.push(OldStoreKey { id, file });
    }
    StoreKeys {
        key_file: key_file.unwrap_or_default(),
        key_id,
        old_keys,
    }
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
