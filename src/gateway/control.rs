//! The control socket's commands (`plexgate status`, `initiate`, `rekey-*`,
//! `delete-ike`, `set-weight`) applied to the gateway core.

use std::time::Instant;

use serde_json::{json, Value};

use super::core::{GatewayCore, Sink};

/// Answer one control request.
pub(super) fn handle(c: &mut GatewayCore, now: Instant, req: &Value, sink: &mut dyn Sink) -> Value {
    let as_u64 = |k: &str| {
        req[k].as_u64().or_else(|| {
            req[k]
                .as_str()
                .and_then(|s| u64::from_str_radix(s, 16).ok())
        })
    };
    match req["cmd"].as_str() {
        Some("status") => c.status(now),
        Some("initiate") => match c.initiate(
            now,
            req["peer"].as_str().unwrap_or(""),
            req["child"].as_str(),
            sink,
        ) {
            Ok(id) => json!({"ok": true, "ike_sa": id}),
            Err(e) => json!({"error": e}),
        },
        Some("rekey-child") => match as_u64("spi") {
            Some(spi) => result_json(c.rekey_child(now, spi as u32, sink)),
            None => {
                json!({"error": "rekey-child needs \"spi\" (inbound SPI, hex string or number)"})
            }
        },
        Some("rekey-ike") => match req["id"].as_u64() {
            Some(id) => result_json(c.rekey_ike(now, id, sink)),
            None => json!({"error": "rekey-ike needs \"id\""}),
        },
        Some("delete-ike") => match req["id"].as_u64() {
            Some(id) => result_json(c.delete_ike(now, id, sink)),
            None => json!({"error": "delete-ike needs \"id\""}),
        },
        Some("set-weight") => match (
            req["dvipa"].as_str().and_then(|d| d.parse().ok()),
            req["node"].as_u64(),
            req["weight"].as_u64(),
        ) {
            (Some(d), Some(n), Some(w)) if n <= u64::from(u32::MAX) && w <= u64::from(u16::MAX) => {
                result_json(c.set_weight(d, n as u32, w as u16))
            }
            _ => {
                json!({"error": "set-weight needs \"dvipa\" (address), \"node\" (target node id) and \"weight\" (0-65535)"})
            }
        },
        other => {
            json!({"error": format!("unknown command {other:?}; try status, initiate, rekey-child, rekey-ike, delete-ike, set-weight")})
        }
    }
}

fn result_json(r: Result<(), String>) -> Value {
    match r {
        Ok(()) => json!({"ok": true}),
        Err(e) => json!({"error": e}),
    }
}
