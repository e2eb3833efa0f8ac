//! Gateways, heartbeats and DVIPA ownership in the store, on top of [`Store`]: a
//! [`Member`] is one gateway's presence (a lease, its presence and heartbeat keys),
//! renews itself every heartbeat interval, and claims or releases DVIPAs by
//! compare-and-swap on their owner keys; the revision of a winning claim is the
//! owner's *epoch*, which messages to targets carry so a stale owner is refused.
//! [`PeerWatch`] turns a watch on the heartbeat prefix into [`LivenessEvent`]s. The
//! timing rules and why they keep two gateways from routing one DVIPA are in
//! [`crate::liveness`]. Every value here is sealed like a record.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::error::StoreError;
use crate::keys::Keys;
use crate::kv::{Compare, Entry, LeaseId, Op, Revision, Store, TxnOutcome, WatchEvent};
use crate::liveness::{Fence, LivenessConfig, LivenessEvent, Monitor};
use crate::records::{open_json, seal_json, SCHEMA_VERSION};
use crate::seal::SealError;

/// A gateway's presence (`gw/<name>`, on its lease).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GatewayInfo {
    /// Schema version.
    pub schema: u16,
    /// Gateway name.
    pub name: String,
    /// Its default rank (1-254).
    pub rank: u8,
    /// Its process id (for operators).
    pub pid: u32,
    /// When it joined, milliseconds since the UNIX epoch.
    pub started_unix_ms: u64,
}

/// A heartbeat (`hb/<name>`, on the lease, rewritten every interval).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Heartbeat {
    /// Schema version.
    pub schema: u16,
    /// Gateway name.
    pub name: String,
    /// Counts up by one per renewal.
    pub seq: u64,
}

/// Who routes a DVIPA (`dvipa/<addr>/owner`, on the owner's lease).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OwnerRecord {
    /// Schema version.
    pub schema: u16,
    /// The DVIPA.
    pub dvipa: IpAddr,
    /// The owning gateway.
    pub gateway: String,
}

/// A gateway's configured rank for a DVIPA (`dvipa/<addr>/rank/<gw>`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RankRecord {
    /// Schema version.
    pub schema: u16,
    /// The DVIPA.
    pub dvipa: IpAddr,
    /// The gateway.
    pub gateway: String,
    /// Its rank 1-254 (higher takes over first).
    pub rank: u8,
}

/// The current owner of a DVIPA as read from the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner {
    /// The owning gateway.
    pub gateway: String,
    /// The epoch: the revision of the claim (the owner key's revision).
    pub epoch: Revision,
}

/// Errors of ownership operations.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OwnershipError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A value did not open (forged, altered, moved).
    #[error("{key}: {err}")]
    Seal {
        /// The key.
        key: String,
        /// Why.
        err: SealError,
    },
}

fn sealed<T: Serialize>(keys: &Keys, key: &str, v: &T) -> Result<Vec<u8>, OwnershipError> {
    seal_json(keys.ring(), key, v).map_err(|err| OwnershipError::Seal {
        key: key.to_string(),
        err,
    })
}

fn opened<T: serde::de::DeserializeOwned>(keys: &Keys, e: &Entry) -> Result<T, OwnershipError> {
    open_json(keys.ring(), &e.key, &e.value).map_err(|err| OwnershipError::Seal {
        key: e.key.clone(),
        err,
    })
}

/// The owner of `dvipa`, if any.
pub fn owner_of(
    store: &dyn Store,
    keys: &Keys,
    dvipa: IpAddr,
) -> Result<Option<Owner>, OwnershipError> {
    let Some(e) = store.get(&keys.dvipa_owner(dvipa))? else {
        return Ok(None);
    };
    let r: OwnerRecord = opened(keys, &e)?;
    Ok(Some(Owner {
        gateway: r.gateway,
        epoch: e.revision,
    }))
}

/// Open an owner key's entry as read from a list or a watch: which DVIPA, and who
/// owns it at which epoch (the entry's revision). A deleted owner key carries no
/// value: match it against [`Keys::dvipa_owner`] of the configured DVIPAs.
pub fn open_owner(keys: &Keys, e: &Entry) -> Result<(IpAddr, Owner), OwnershipError> {
    let r: OwnerRecord = opened(keys, e)?;
    Ok((
        r.dvipa,
        Owner {
            gateway: r.gateway,
            epoch: e.revision,
        },
    ))
}

/// The configured ranks of `dvipa`, highest first.
pub fn ranks(
    store: &dyn Store,
    keys: &Keys,
    dvipa: IpAddr,
) -> Result<Vec<(String, u8)>, OwnershipError> {
    let mut out = Vec::new();
    for e in store.list(&keys.dvipa_ranks(dvipa))? {
        let r: RankRecord = opened(keys, &e)?;
        out.push((r.gateway, r.rank));
    }
    out.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    Ok(out)
}

/// Publish `gateway`'s configured rank for `dvipa` (not on a lease: configuration).
pub fn publish_rank(
    store: &dyn Store,
    keys: &Keys,
    dvipa: IpAddr,
    gateway: &str,
    rank: u8,
) -> Result<(), OwnershipError> {
    let key = keys.dvipa_rank(dvipa, gateway);
    let v = sealed(
        keys,
        &key,
        &RankRecord {
            schema: SCHEMA_VERSION,
            dvipa,
            gateway: gateway.to_string(),
            rank,
        },
    )?;
    store.put(&key, &v, None)?;
    Ok(())
}

/// The gateways present (holding a lease), with their lease.
pub fn gateways(
    store: &dyn Store,
    keys: &Keys,
) -> Result<Vec<(GatewayInfo, Option<LeaseId>)>, OwnershipError> {
    store
        .list(&keys.gateway_prefix())?
        .iter()
        .map(|e| Ok((opened::<GatewayInfo>(keys, e)?, e.lease)))
        .collect()
}

/// How a claim ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// We own the DVIPA from this epoch on.
    Won {
        /// The epoch (revision of the claim).
        epoch: Revision,
    },
    /// The store was not as we saw it: this is the owner now (`None`: nobody), or our
    /// own renewal failed (then [`Member::owned`] has lost DVIPAs too).
    Lost {
        /// The current owner.
        owner: Option<Owner>,
    },
}

/// How a renewal ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Renewal {
    /// Heartbeat written; we still own everything we owned.
    Renewed,
    /// These DVIPAs were taken from us (or vanished with our lease); the heartbeat
    /// was then written for the rest.
    Lost(Vec<IpAddr>),
}

/// One gateway's membership: its lease, heartbeat, fence and owned DVIPAs.
#[derive(Debug)]
pub struct Member {
    keys: Keys,
    info: GatewayInfo,
    cfg: LivenessConfig,
    lease: LeaseId,
    seq: u64,
    fence: Fence,
    owned: BTreeMap<IpAddr, Revision>,
    lease_sent: Instant,
}

impl Member {
    /// Join: grant a lease, write the presence and first heartbeat on it.
    pub fn join(
        store: &dyn Store,
        keys: Keys,
        name: &str,
        rank: u8,
        cfg: LivenessConfig,
        now: Instant,
        unix_ms: u64,
    ) -> Result<Member, OwnershipError> {
        let info = GatewayInfo {
            schema: SCHEMA_VERSION,
            name: name.to_string(),
            rank,
            pid: std::process::id(),
            started_unix_ms: unix_ms,
        };
        let lease = store.grant_lease(cfg.lease_ttl)?;
        let mut m = Member {
            keys,
            info,
            cfg,
            lease,
            seq: 0,
            fence: Fence::new(cfg),
            owned: BTreeMap::new(),
            lease_sent: now,
        };
        m.fence.lease_renewed(now);
        m.register(store, now)?;
        Ok(m)
    }

    fn register(&mut self, store: &dyn Store, now: Instant) -> Result<(), OwnershipError> {
        let gk = self.keys.gateway(&self.info.name);
        let ops = vec![
            Op::Put {
                value: sealed(&self.keys, &gk, &self.info)?,
                key: gk,
                lease: Some(self.lease),
            },
            self.heartbeat_op()?,
        ];
        store.batch(&ops)?;
        self.fence.renewed(now);
        Ok(())
    }

    fn heartbeat_op(&mut self) -> Result<Op, OwnershipError> {
        self.seq += 1;
        let key = self.keys.heartbeat(&self.info.name);
        let hb = Heartbeat {
            schema: SCHEMA_VERSION,
            name: self.info.name.clone(),
            seq: self.seq,
        };
        Ok(Op::Put {
            value: sealed(&self.keys, &key, &hb)?,
            key,
            lease: Some(self.lease),
        })
    }

    fn owned_compares(&self) -> Vec<Compare> {
        self.owned
            .iter()
            .map(|(d, epoch)| Compare::at(self.keys.dvipa_owner(*d), *epoch))
            .collect()
    }

    /// This gateway's name.
    pub fn name(&self) -> &str {
        &self.info.name
    }

    /// Its lease.
    pub fn lease(&self) -> LeaseId {
        self.lease
    }

    /// The DVIPAs it owns, with their epochs.
    pub fn owned(&self) -> &BTreeMap<IpAddr, Revision> {
        &self.owned
    }

    /// Whether it may route its DVIPAs at `now` (see [`crate::liveness`]).
    pub fn may_route(&self, now: Instant) -> bool {
        self.fence.may_route(now)
    }

    /// The instant its right to route runs out, unless renewed.
    pub fn valid_until(&self) -> Option<Instant> {
        self.fence.valid_until()
    }

    /// Renew (call every heartbeat interval; `now` is read *before* the call): keep
    /// the lease alive every third of its TTL, and write the heartbeat if every owned
    /// DVIPA is still ours. A lease that has ended is replaced (its DVIPAs are lost).
    pub fn renew(&mut self, store: &dyn Store, now: Instant) -> Result<Renewal, OwnershipError> {
        let mut lost = Vec::new();
        if now.saturating_duration_since(self.lease_sent) >= self.cfg.lease_ttl / 3 {
            match store.keep_alive(self.lease) {
                Ok(()) => {
                    self.lease_sent = now;
                    self.fence.lease_renewed(now);
                }
                Err(StoreError::LeaseExpired(_)) => {
                    self.fence.revoke();
                    lost.extend(std::mem::take(&mut self.owned).into_keys());
                    self.lease = store.grant_lease(self.cfg.lease_ttl)?;
                    self.lease_sent = now;
                    self.fence.lease_renewed(now);
                    self.register(store, now)?;
                    return Ok(Renewal::Lost(lost));
                }
                Err(e) => return Err(e.into()),
            }
        }
        for _ in 0..2 {
            let when = self.owned_compares();
            let op = self.heartbeat_op()?;
            match store.txn(&when, &[op]) {
                Ok(TxnOutcome::Committed(_)) => {
                    self.fence.renewed(now);
                    return Ok(if lost.is_empty() {
                        Renewal::Renewed
                    } else {
                        Renewal::Lost(lost)
                    });
                }
                Ok(TxnOutcome::Conflict) => {
                    self.fence.revoke();
                    lost.extend(self.drop_lost(store)?);
                }
                Err(StoreError::LeaseExpired(_)) => {
                    // Ended between the keep-alive and now: next renewal replaces it.
                    self.lease_sent = now - self.cfg.lease_ttl;
                    self.fence.revoke();
                    return Err(StoreError::LeaseExpired(self.lease).into());
                }
                Err(e) => return Err(e.into()),
            }
        }
        Ok(Renewal::Lost(lost))
    }

    /// Forget the DVIPAs whose owner key is no longer at our epoch.
    fn drop_lost(&mut self, store: &dyn Store) -> Result<Vec<IpAddr>, OwnershipError> {
        let mut lost = Vec::new();
        for (d, epoch) in self.owned.clone() {
            let cur = store.get(&self.keys.dvipa_owner(d))?.map(|e| e.revision);
            if cur != Some(epoch) {
                self.owned.remove(&d);
                lost.push(d);
            }
        }
        Ok(lost)
    }

    /// Claim `dvipa` if its owner key is as `seen` (`None`: absent; else the epoch
    /// read), and — when taking it from a peer declared dead — if that peer's
    /// heartbeat key is still at `guard` (the gateway and its last heartbeat
    /// revision seen, `None` if its key is gone). The claim also renews us.
    pub fn claim(
        &mut self,
        store: &dyn Store,
        dvipa: IpAddr,
        seen: Option<Revision>,
        guard: Option<(&str, Option<Revision>)>,
        now: Instant,
    ) -> Result<Claim, OwnershipError> {
        let key = self.keys.dvipa_owner(dvipa);
        let mut when = self.owned_compares();
        when.retain(|c| c.key != key);
        when.push(Compare::seen(key.clone(), seen));
        if let Some((gw, rev)) = guard {
            when.push(Compare::seen(self.keys.heartbeat(gw), rev));
        }
        let rec = OwnerRecord {
            schema: SCHEMA_VERSION,
            dvipa,
            gateway: self.info.name.clone(),
        };
        let ops = [
            Op::Put {
                value: sealed(&self.keys, &key, &rec)?,
                key,
                lease: Some(self.lease),
            },
            self.heartbeat_op()?,
        ];
        match store.txn(&when, &ops)? {
            TxnOutcome::Committed(epoch) => {
                self.owned.insert(dvipa, epoch);
                self.fence.renewed(now);
                Ok(Claim::Won { epoch })
            }
            TxnOutcome::Conflict => {
                if !self.drop_lost(store)?.is_empty() {
                    self.fence.revoke();
                }
                Ok(Claim::Lost {
                    owner: owner_of(store, &self.keys, dvipa)?,
                })
            }
        }
    }

    /// Give `dvipa` up (takeback, planned move): delete its owner key if it is still
    /// ours. Returns whether it was.
    pub fn release(&mut self, store: &dyn Store, dvipa: IpAddr) -> Result<bool, OwnershipError> {
        let Some(epoch) = self.owned.remove(&dvipa) else {
            return Ok(false);
        };
        let key = self.keys.dvipa_owner(dvipa);
        let r = store.txn(&[Compare::at(key.clone(), epoch)], &[Op::Delete { key }])?;
        Ok(matches!(r, TxnOutcome::Committed(_)))
    }

    /// Leave the site: revoke the lease (presence, heartbeat and owner keys vanish).
    pub fn leave(self, store: &dyn Store) -> Result<(), OwnershipError> {
        store.revoke_lease(self.lease)?;
        Ok(())
    }
}

/// Peers' heartbeats from a watch on [`Keys::heartbeat_prefix`], fed to a [`Monitor`].
#[derive(Debug)]
pub struct PeerWatch {
    keys: Keys,
    by_key: HashMap<String, String>,
    /// The monitor (poll it for [`LivenessEvent`]s).
    pub monitor: Monitor,
}

impl PeerWatch {
    /// Watch the heartbeats of `peers` (their names: deletions carry no value, so the
    /// key must be known in advance).
    pub fn new(keys: Keys, cfg: &LivenessConfig, peers: &[&str], now: Instant) -> PeerWatch {
        let mut monitor = Monitor::new(cfg);
        let mut by_key = HashMap::new();
        for p in peers {
            by_key.insert(keys.heartbeat(p), p.to_string());
            monitor.expect(p, now);
        }
        PeerWatch {
            keys,
            by_key,
            monitor,
        }
    }

    /// Read every heartbeat now (at start and after [`WatchEvent::Resync`]); returns
    /// the store revision to watch from (exclusive).
    pub fn reload(&mut self, store: &dyn Store, now: Instant) -> Result<Revision, OwnershipError> {
        let rev = store.revision()?;
        let present: HashMap<String, Entry> = store
            .list(&self.keys.heartbeat_prefix())?
            .into_iter()
            .map(|e| (e.key.clone(), e))
            .collect();
        for (key, name) in &self.by_key {
            match present.get(key) {
                Some(e) => self.monitor.heartbeat(name, e.revision, now),
                None => self.monitor.gone(name, now),
            }
        }
        Ok(rev)
    }

    /// Feed one watch event. A heartbeat value that does not open is refused and
    /// counted; it changes nothing. Returns true on [`WatchEvent::Resync`] (call
    /// [`PeerWatch::reload`]).
    pub fn on_event(&mut self, ev: &WatchEvent, now: Instant) -> Result<bool, OwnershipError> {
        match ev {
            WatchEvent::Put(e) => {
                let Some(name) = self.by_key.get(&e.key) else {
                    return Ok(false);
                };
                let hb: Heartbeat = opened(&self.keys, e)?;
                if hb.name == *name {
                    self.monitor.heartbeat(name, e.revision, now);
                }
                Ok(false)
            }
            WatchEvent::Delete { key, .. } => {
                if let Some(name) = self.by_key.get(key) {
                    self.monitor.gone(name, now);
                }
                Ok(false)
            }
            WatchEvent::Resync { .. } => Ok(true),
        }
    }

    /// Liveness changes (see [`Monitor::poll`]).
    pub fn poll(&mut self, now: Instant) -> Vec<LivenessEvent> {
        self.monitor.poll(now)
    }
}
