//! The control socket's commands: `status`, `initiate`, `rekey-*`, `delete-ike`,
//! `set-weight` applied to the gateway core; `move` to the HA thread; `records`
//! read from the shared store (what a backup would renegotiate, never a key).

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::core::{GatewayCore, Sink};
use super::ha::{HaHandle, HaMsg};
use super::store::SiteStore;
use crate::l2::L2Agent;

/// What the control socket reaches besides the core.
pub(super) struct Context {
    /// The shared store, if the policy names one.
    pub(super) site: Option<Arc<SiteStore>>,
    /// The HA thread, if the gateway runs under HA.
    pub(super) ha: Option<HaHandle>,
    /// The L2 agent, if it runs.
    pub(super) l2: Option<Arc<L2Agent>>,
}

impl Context {
    /// Answer a command that is not the core's (`None`: the core's).
    pub(super) fn handle(&self, req: &Value) -> Option<Value> {
        match req["cmd"].as_str()? {
            "move" => Some(self.move_dvipa(req)),
            "records" => Some(self.records()),
            _ => None,
        }
    }

    fn move_dvipa(&self, req: &Value) -> Value {
        let Some(ha) = &self.ha else {
            return json!({"error": "this gateway does not run under HA (no [ha] with a store)"});
        };
        let (Some(dvipa), Some(to)) = (
            req["dvipa"].as_str().and_then(|d| d.parse().ok()),
            req["to"].as_str(),
        ) else {
            return json!({"error": "move needs \"dvipa\" (an address) and \"to\" (a gateway name)"});
        };
        let (tx, rx) = std::sync::mpsc::channel();
        ha.send(HaMsg::Move {
            dvipa,
            to: to.to_string(),
            reply: tx,
        });
        match rx.recv_timeout(Duration::from_secs(5)) {
            Ok(Ok(())) => json!({"ok": true}),
            Ok(Err(e)) => json!({"error": e}),
            Err(_) => json!({"error": "the HA thread did not answer"}),
        }
    }

    fn records(&self) -> Value {
        let Some(site) = &self.site else {
            return json!({"error": "the policy names no store ([ha.store])"});
        };
        let book = plexgate_store::RecordBook::new(site.keys.clone());
        match book.load(site.store.as_ref()) {
            Ok(l) => super::status::records_json(&l),
            Err(e) => json!({"error": format!("reading the store: {e}")}),
        }
    }

    /// The store's, HA's and L2's parts of `plexgate status`.
    pub(super) fn add_status(&self, answer: &mut Value) {
        if let Some(site) = &self.site {
            answer["store"] = super::status::store_json(site);
        }
        if let Some(ha) = &self.ha {
            answer["ha"] = ha.status();
        }
        if let Some(l2) = &self.l2 {
            if let Ok(s) = l2.status() {
                answer["l2"] = crate::l2::status_json(&s);
            }
        }
    }
}

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
