//! The HA machine's view of the shared store (`docs/failover.md`, "What lives in
//! the store"): per ownership group an owner record whose store revision is its
//! epoch, per gateway a heartbeat key on the gateway's lease, per group a
//! move-request key. Every value is sealed like the recovery records. Claims and
//! releases are single transactions with the compares the machine asks for; watch
//! events become the machine's inputs.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use plexgate_ha::takeover::{
    CasOutcome, Epoch, GatewayName, GroupId, HeartbeatGuard, Input, OwnerRecord,
};
use plexgate_store as store;
use serde::{Deserialize, Serialize};
use store::{Compare, Expect, Op, TxnOutcome, WatchEvent};

/// Schema of the HA values.
const SCHEMA: u16 = 1;

/// An owner record as stored (the epoch is the key's revision, not in the value).
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "lowercase")]
enum Stored {
    Owned {
        gateway: String,
        pinned: bool,
    },
    Released {
        successor: Option<String>,
        pinned: bool,
    },
}

/// A move request as stored.
#[derive(Debug, Serialize, Deserialize)]
struct MoveReq {
    to: String,
    epoch: u64,
}

/// The store side of one gateway's HA machine.
pub struct HaStore {
    store: Arc<dyn store::Store>,
    keys: store::Keys,
    me: GatewayName,
    lease_ttl: Duration,
    lease: Option<store::LeaseId>,
    kept_alive: Option<Instant>,
    /// Heartbeat key → gateway.
    beats: HashMap<String, GatewayName>,
    /// Owner key → group.
    owners: HashMap<String, GroupId>,
    /// Move-request key → group.
    moves: HashMap<String, GroupId>,
    watch: Option<store::Watch>,
}

impl HaStore {
    /// The store of gateway `me` among `gateways`, for `groups`.
    pub fn new(
        store: Arc<dyn store::Store>,
        keys: store::Keys,
        me: GatewayName,
        gateways: &[GatewayName],
        groups: &[GroupId],
        lease_ttl: Duration,
    ) -> HaStore {
        HaStore {
            beats: gateways
                .iter()
                .map(|g| (keys.heartbeat(g.as_str()), g.clone()))
                .collect(),
            owners: groups
                .iter()
                .map(|g| (keys.dvipa_owner(g.vipa()), *g))
                .collect(),
            moves: groups
                .iter()
                .map(|g| (keys.dvipa_move(g.vipa()), *g))
                .collect(),
            store,
            keys,
            me,
            lease_ttl,
            lease: None,
            kept_alive: None,
            watch: None,
        }
    }

    /// The backend's name.
    pub fn backend(&self) -> store::Backend {
        self.store.backend()
    }

    /// Read everything the machine needs at start or after the store came back:
    /// every group's owner record, every other gateway's heartbeat revision, and
    /// start watching from there. `Err` if the store cannot be read now.
    pub fn sync(&mut self) -> Result<Vec<Input>, store::StoreError> {
        let rev = self.store.revision()?;
        let mut inputs = Vec::new();
        for (key, group) in &self.owners {
            let record = match self.store.get(key)? {
                Some(e) => self.owner_of(&e).unwrap_or(OwnerRecord::Absent),
                None => OwnerRecord::Absent,
            };
            inputs.push(Input::OwnerChanged {
                group: *group,
                record,
            });
        }
        for (key, gw) in &self.beats {
            if *gw == self.me {
                continue;
            }
            if let Some(e) = self.store.get(key)? {
                inputs.push(Input::PeerHeartbeat {
                    gateway: gw.clone(),
                    revision: e.revision,
                });
            }
        }
        for (key, group) in &self.moves {
            if let Some(e) = self.store.get(key)? {
                if let Some(i) = self.move_of(*group, &e) {
                    inputs.push(i);
                }
            }
        }
        self.watch = Some(self.store.watch(self.keys.prefix(), Some(rev + 1))?);
        Ok(inputs)
    }

    /// Write our heartbeat (on our lease, granted or kept alive as needed).
    pub fn renew(&mut self, now: Instant) -> Input {
        let sent_at = now;
        match self.try_renew(now) {
            Ok(()) => Input::RenewOk { sent_at },
            Err(e) => {
                tracing::debug!("heartbeat: {e}");
                Input::RenewFailed
            }
        }
    }

    fn try_renew(&mut self, now: Instant) -> Result<(), store::StoreError> {
        let lease = match self.lease {
            Some(l) => {
                if self
                    .kept_alive
                    .is_none_or(|t| now.saturating_duration_since(t) >= self.lease_ttl / 3)
                {
                    if let Err(e) = self.store.keep_alive(l) {
                        // The lease ended (or the store forgot it): a new one.
                        self.lease = None;
                        return Err(e);
                    }
                    self.kept_alive = Some(now);
                }
                l
            }
            None => {
                let l = self.store.grant_lease(self.lease_ttl)?;
                self.lease = Some(l);
                self.kept_alive = Some(now);
                l
            }
        };
        let key = self.keys.heartbeat(self.me.as_str());
        let value = self
            .seal(&key, self.me.as_str().as_bytes())
            .map_err(|e| store::StoreError::Refused(format!("sealing the heartbeat: {e}")))?;
        self.store.put(&key, &value, Some(lease))?;
        Ok(())
    }

    /// Claim `group`: one transaction comparing the owner record's epoch and, for a
    /// takeover, the dead owner's heartbeat revision.
    pub fn claim(
        &self,
        group: GroupId,
        expected: Option<Epoch>,
        pinned: bool,
        guard: Option<&HeartbeatGuard>,
    ) -> Input {
        let key = self.keys.dvipa_owner(group.vipa());
        let mut when = vec![Compare {
            key: key.clone(),
            expect: expected.map_or(Expect::Absent, |e| Expect::At(e.0)),
        }];
        if let Some(g) = guard {
            when.push(Compare::seen(
                self.keys.heartbeat(g.gateway.as_str()),
                g.revision,
            ));
        }
        let value = Stored::Owned {
            gateway: self.me.as_str().to_string(),
            pinned,
        };
        let outcome = self.cas(&key, &when, &value);
        Input::ClaimResult { group, outcome }
    }

    /// Release `group` (owned by us at `epoch`) to `successor`.
    pub fn release(
        &self,
        group: GroupId,
        epoch: Epoch,
        successor: Option<&GatewayName>,
        pinned: bool,
    ) -> Input {
        let key = self.keys.dvipa_owner(group.vipa());
        let when = [Compare::at(key.clone(), epoch.0)];
        let value = Stored::Released {
            successor: successor.map(|s| s.as_str().to_string()),
            pinned,
        };
        let outcome = self.cas(&key, &when, &value);
        Input::ReleaseResult { group, outcome }
    }

    fn cas(&self, key: &str, when: &[Compare], value: &Stored) -> CasOutcome {
        let sealed = match serde_json::to_vec(value)
            .map_err(|e| e.to_string())
            .and_then(|v| self.seal(key, &v).map_err(|e| e.to_string()))
        {
            Ok(v) => v,
            Err(e) => {
                tracing::error!("sealing an owner record: {e}");
                return CasOutcome::Unreachable;
            }
        };
        let op = Op::Put {
            key: key.to_string(),
            value: sealed,
            lease: None,
        };
        match self.store.txn(when, &[op]) {
            Ok(TxnOutcome::Committed(rev)) => CasOutcome::Applied { epoch: Epoch(rev) },
            Ok(TxnOutcome::Conflict) => match self.store.get(key) {
                Ok(Some(e)) => CasOutcome::Conflict {
                    current: self.owner_of(&e).unwrap_or(OwnerRecord::Absent),
                },
                Ok(None) => CasOutcome::Conflict {
                    current: OwnerRecord::Absent,
                },
                Err(_) => CasOutcome::Unreachable,
            },
            Err(e) => {
                tracing::debug!("claim/release of {key}: {e}");
                CasOutcome::Unreachable
            }
        }
    }

    /// Ask the owner of `group` to hand it to `to` (the request is for `epoch`).
    pub fn request_move(&self, group: GroupId, to: &GatewayName, epoch: Epoch) -> bool {
        let key = self.keys.dvipa_move(group.vipa());
        let req = MoveReq {
            to: to.as_str().to_string(),
            epoch: epoch.0,
        };
        let r = serde_json::to_vec(&req)
            .map_err(|e| e.to_string())
            .and_then(|v| self.seal(&key, &v).map_err(|e| e.to_string()))
            .and_then(|v| self.store.put(&key, &v, None).map_err(|e| e.to_string()));
        if let Err(e) = &r {
            tracing::warn!("move request for {group}: {e}");
        }
        r.is_ok()
    }

    /// Inputs from the watch since the last call; `None` when the watch broke (the
    /// caller reports the store unreachable and syncs again).
    pub fn poll(&mut self) -> Option<Vec<Input>> {
        let w = self.watch.as_ref()?;
        let events = w.drain();
        if events.is_empty() && w.is_closed() {
            self.watch = None;
            return None;
        }
        let mut out = Vec::new();
        for ev in events {
            match ev {
                WatchEvent::Put(e) => out.extend(self.input_of_put(&e)),
                WatchEvent::Delete { key, .. } => {
                    if let Some(gw) = self.beats.get(&key) {
                        if *gw != self.me {
                            out.push(Input::LeaseGone {
                                gateway: gw.clone(),
                            });
                        }
                    }
                }
                WatchEvent::Resync { .. } => {
                    self.watch = None;
                    return None;
                }
            }
        }
        Some(out)
    }

    fn input_of_put(&self, e: &store::Entry) -> Option<Input> {
        if let Some(gw) = self.beats.get(&e.key) {
            return (*gw != self.me).then(|| Input::PeerHeartbeat {
                gateway: gw.clone(),
                revision: e.revision,
            });
        }
        if let Some(group) = self.owners.get(&e.key) {
            return Some(Input::OwnerChanged {
                group: *group,
                record: self.owner_of(e)?,
            });
        }
        let group = *self.moves.get(&e.key)?;
        self.move_of(group, e)
    }

    fn owner_of(&self, e: &store::Entry) -> Option<OwnerRecord> {
        let v = self.open(&e.key, &e.value)?;
        let epoch = Epoch(e.revision);
        match serde_json::from_slice::<Stored>(&v).ok()? {
            Stored::Owned { gateway, pinned } => Some(OwnerRecord::Owned {
                gateway: GatewayName::new(gateway),
                epoch,
                pinned,
            }),
            Stored::Released { successor, pinned } => Some(OwnerRecord::Released {
                epoch,
                successor: successor.map(GatewayName::new),
                pinned,
            }),
        }
    }

    fn move_of(&self, group: GroupId, e: &store::Entry) -> Option<Input> {
        let v = self.open(&e.key, &e.value)?;
        let m: MoveReq = serde_json::from_slice(&v).ok()?;
        Some(Input::MoveRequested {
            group,
            to: GatewayName::new(m.to),
            epoch: Epoch(m.epoch),
        })
    }

    fn seal(&self, key: &str, plain: &[u8]) -> Result<Vec<u8>, store::SealError> {
        self.keys.ring().seal(key, SCHEMA, plain)
    }

    fn open(&self, key: &str, sealed: &[u8]) -> Option<Vec<u8>> {
        match self.keys.ring().open(key, sealed) {
            Ok(o) => Some(o.plaintext),
            Err(e) => {
                tracing::warn!("store value at {key} refused: {e}");
                None
            }
        }
    }

    /// Give our lease back (a clean stop): our heartbeat disappears at once.
    pub fn leave(&mut self) {
        if let Some(l) = self.lease.take() {
            let _ = self.store.revoke_lease(l);
        }
    }
}
