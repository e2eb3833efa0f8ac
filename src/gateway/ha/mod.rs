//! The HA runtime of a gateway (DESIGN.md flows 6 and 7): one thread runs the
//! sans-IO [`HaMachine`] (`crates/ha/src/takeover`), feeds it the shared store's
//! watch ([`store::HaStore`]), operator commands and the gateway core's reports,
//! and carries out its actions: compare-and-swap on the owner records, the
//! gateway VIPA on and off the host (with gratuitous ARP through the L2 agent),
//! routing the group's DVIPAs at an epoch, recovery records on and off,
//! renegotiation from the records, hand-over with DELETEs. `docs/failover.md`
//! describes the machine; this file only moves its inputs and actions.

pub mod config;
pub mod store;

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::mpsc::{Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use plexgate_ha::takeover::{Action, GatewayName, GroupId, HaMachine, Input, Level};
use serde_json::{json, Value};

use super::core::{ike_record_of, GatewayCore, HaReport};
use super::io::{spawn, Io, IoSink};
use super::store::SiteStore;
use crate::l2::L2Agent;

/// What other threads tell the HA thread.
pub enum HaMsg {
    /// `plexgate move DVIPA --to GATEWAY`; the answer goes back on the sender.
    Move {
        /// The DVIPA (its whole group moves).
        dvipa: IpAddr,
        /// The gateway that should own it.
        to: String,
        /// Where the answer goes.
        reply: Sender<Result<(), String>>,
    },
    /// A report of the gateway core.
    Report(HaReport),
    /// Stop: hand every owned group over, then end.
    Shutdown,
}

/// The handle the rest of the daemon keeps.
#[derive(Clone)]
pub struct HaHandle {
    tx: Sender<HaMsg>,
    status: Arc<Mutex<Value>>,
    stopped: Arc<std::sync::atomic::AtomicBool>,
}

impl HaHandle {
    /// Wait (at most `max`) until the HA thread has handed everything over.
    pub fn wait_stopped(&self, max: Duration) {
        let t = Instant::now();
        while !self.stopped.load(std::sync::atomic::Ordering::Acquire) && t.elapsed() < max {
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Tell the HA thread something.
    pub fn send(&self, m: HaMsg) {
        let _ = self.tx.send(m);
    }

    /// The last status of the HA machine (for `plexgate status`).
    pub fn status(&self) -> Value {
        self.status.lock().map(|v| v.clone()).unwrap_or(Value::Null)
    }
}

/// Everything the HA thread works with.
struct Runtime {
    m: HaMachine,
    hs: store::HaStore,
    site: Arc<dyn plexgate_store::Store>,
    book: plexgate_store::RecordBook,
    core: Arc<Mutex<GatewayCore>>,
    io: Arc<Io>,
    l2: Option<Arc<L2Agent>>,
    /// The DVIPAs of each group.
    dvipas: HashMap<GroupId, Vec<IpAddr>>,
    /// Records a takeover renegotiates from, removed once it is done.
    taken: HashMap<GroupId, Vec<String>>,
    pending: Vec<Input>,
    status: Arc<Mutex<Value>>,
    synced: bool,
    /// Renegotiations finished: (group, IKE SAs up, failed).
    takeovers: Vec<Value>,
}

/// Start the HA thread of gateway `me`.
pub(super) fn start(
    p: &plexgate_policy::Policy,
    me: &str,
    core: Arc<Mutex<GatewayCore>>,
    io: Arc<Io>,
    site: &SiteStore,
    l2: Option<Arc<L2Agent>>,
) -> Result<(HaHandle, JoinHandle<()>), Box<dyn std::error::Error>> {
    let cfg = config::ha_config(p, me)?;
    let groups: Vec<GroupId> = cfg.groups().iter().map(|g| g.id()).collect();
    let gateways: Vec<GatewayName> = cfg.gateways().keys().cloned().collect();
    let lease = config::lease_ttl(p);
    let hs = store::HaStore::new(
        site.store.clone(),
        site.keys.clone(),
        GatewayName::new(me),
        &gateways,
        &groups,
        lease,
    );
    let dvipas = cfg
        .groups()
        .iter()
        .map(|g| (g.id(), g.dvipas().to_vec()))
        .collect();
    core.lock().unwrap_or_else(|e| e.into_inner()).enable_ha();
    let (tx, rx) = std::sync::mpsc::channel();
    let status = Arc::new(Mutex::new(Value::Null));
    let mut rt = Runtime {
        m: HaMachine::new(cfg),
        hs,
        site: site.store.clone(),
        book: plexgate_store::RecordBook::new(site.keys.clone()),
        core,
        io,
        l2,
        dvipas,
        taken: HashMap::new(),
        pending: vec![Input::Start],
        status: status.clone(),
        synced: false,
        takeovers: Vec::new(),
    };
    let stopped = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let done = stopped.clone();
    let t = spawn("ha", move || {
        rt.run(&rx);
        done.store(true, std::sync::atomic::Ordering::Release);
    });
    Ok((
        HaHandle {
            tx,
            status,
            stopped,
        },
        t,
    ))
}

impl Runtime {
    fn run(&mut self, rx: &Receiver<HaMsg>) {
        let mut stopping = false;
        loop {
            let now = Instant::now();
            if !self.synced {
                self.sync();
            }
            for input in std::mem::take(&mut self.pending) {
                if let Err(e) = self.m.handle(now, input) {
                    tracing::debug!("HA input refused: {e}");
                }
            }
            if self.m.poll_timeout().is_some_and(|t| t <= now) {
                self.m.handle_timeout(now);
            }
            while let Some(a) = self.m.poll_action() {
                self.act(Instant::now(), a);
            }
            self.publish_status();
            if stopping && self.m.released_all() {
                self.hs.leave();
                return;
            }
            if !self.pending.is_empty() {
                continue;
            }
            let wait = self
                .m
                .poll_timeout()
                .map_or(Duration::from_millis(20), |t| {
                    t.saturating_duration_since(Instant::now())
                })
                .min(Duration::from_millis(20));
            self.wait(rx, wait, &mut stopping);
        }
    }

    /// Read the store (at start and after an outage); until it answers the
    /// machine hears that the store is unreachable.
    fn sync(&mut self) {
        match self.hs.sync() {
            Ok(inputs) => {
                self.synced = true;
                self.pending.push(Input::StoreReachable(true));
                self.pending.extend(inputs);
            }
            Err(e) => {
                tracing::debug!("HA: store not readable: {e}");
                self.pending.push(Input::StoreReachable(false));
            }
        }
    }

    /// Wait for the store's watch or a message, at most `wait`.
    fn wait(&mut self, rx: &Receiver<HaMsg>, wait: Duration, stopping: &mut bool) {
        match self.hs.poll() {
            Some(inputs) if !inputs.is_empty() => {
                self.pending.extend(inputs);
                return;
            }
            Some(_) => {}
            None => {
                if self.synced {
                    self.synced = false;
                    self.pending.push(Input::StoreReachable(false));
                }
            }
        }
        let msg = match rx.recv_timeout(wait) {
            Ok(m) => m,
            Err(_) => return,
        };
        match msg {
            HaMsg::Move { dvipa, to, reply } => {
                let r = self
                    .m
                    .handle(
                        Instant::now(),
                        Input::MoveCommand {
                            dvipa,
                            to: GatewayName::new(to),
                        },
                    )
                    .map_err(|e| e.to_string());
                let _ = reply.send(r);
            }
            HaMsg::Report(HaReport::RenegotiationDone {
                vipa,
                epoch,
                up,
                failed,
            }) => {
                let group = GroupId::new(vipa);
                self.remove_taken_records(group);
                self.takeovers
                    .push(json!({"vipa": vipa, "epoch": epoch, "up": up, "failed": failed}));
                self.pending.push(Input::RenegotiationDone {
                    group,
                    epoch: plexgate_ha::takeover::Epoch(epoch),
                    up,
                    failed,
                });
            }
            HaMsg::Shutdown => {
                *stopping = true;
                self.pending.push(Input::Shutdown);
            }
        }
    }

    fn core(&self) -> std::sync::MutexGuard<'_, GatewayCore> {
        self.core.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Carry out one action of the machine.
    fn act(&mut self, now: Instant, a: Action) {
        match a {
            Action::RenewHeartbeat => {
                let i = self.hs.renew(now);
                self.pending.push(i);
            }
            Action::Claim {
                group,
                expected,
                pinned,
                owner_heartbeat,
            } => {
                let i = self
                    .hs
                    .claim(group, expected, pinned, owner_heartbeat.as_ref());
                self.pending.push(i);
            }
            Action::Release {
                group,
                epoch,
                successor,
                pinned,
            } => {
                let i = self.hs.release(group, epoch, successor.as_ref(), pinned);
                self.pending.push(i);
            }
            Action::RequestMove { group, to, epoch } => {
                self.hs.request_move(group, &to, epoch);
            }
            Action::AddVipa { group } => self.vipa(group.vipa(), true),
            Action::RemoveVipa { group } => self.vipa(group.vipa(), false),
            Action::StartForwarding { group, epoch, .. }
            | Action::AnnounceRouting { group, epoch, .. } => {
                let d = self.dvipas.get(&group).cloned().unwrap_or_default();
                let io = self.io.clone();
                self.core()
                    .start_routing(now, &d, epoch.0, &mut IoSink::direct(&io));
            }
            Action::StopForwarding { group } => {
                let d = self.dvipas.get(&group).cloned().unwrap_or_default();
                self.core().stop_routing(&d);
            }
            Action::StartRecords { group, .. } => self.core().set_records(group.vipa(), true),
            Action::StopRecords { group } => self.core().set_records(group.vipa(), false),
            Action::Renegotiate { group, epoch } => self.renegotiate(now, group, epoch.0),
            Action::HandOver { group, epoch, to } => {
                let io = self.io.clone();
                let n = self
                    .core()
                    .hand_over(now, group.vipa(), &mut IoSink::direct(&io));
                tracing::info!(
                    "{group}: handed over to {} ({n} IKE SAs deleted)",
                    to.as_str()
                );
                self.pending.push(Input::HandoverDone { group, epoch });
            }
            Action::DropSas { group } => {
                let io = self.io.clone();
                let n = self
                    .core()
                    .drop_sas(now, group.vipa(), &mut IoSink::direct(&io));
                tracing::info!("{group}: {n} IKE SAs dropped (another gateway owns it)");
            }
            Action::MarkConnections { group, mark } => {
                tracing::debug!("{group}: connections marked {mark:?}");
            }
            Action::Log(l) => match l.level {
                Level::Info => tracing::info!("HA: {}", l.message),
                Level::Warn => tracing::warn!("HA: {}", l.message),
            },
        }
    }

    /// Put the gateway VIPA on this host (and announce it) or take it away.
    fn vipa(&self, vipa: IpAddr, on: bool) {
        if let (Some(l2), IpAddr::V4(v4)) = (&self.l2, vipa) {
            if let Err(e) = l2.set_active(v4, on) {
                tracing::error!("L2: {vipa} {}: {e}", if on { "active" } else { "standby" });
            }
            return;
        }
        let cidr = super::host_cidr(vipa);
        let verb = if on { "replace" } else { "del" };
        super::ip(&["addr", verb, &cidr, "dev", "lo"]);
    }

    /// Read the group's recovery records and renegotiate them.
    fn renegotiate(&mut self, now: Instant, group: GroupId, epoch: u64) {
        let loaded = match self.book.load(self.site.as_ref()) {
            Ok(l) => l,
            Err(e) => {
                tracing::error!("{group}: cannot read the recovery records: {e}");
                self.pending.push(Input::RenegotiationDone {
                    group,
                    epoch: plexgate_ha::takeover::Epoch(epoch),
                    up: 0,
                    failed: 0,
                });
                return;
            }
        };
        let mut records = Vec::new();
        let mut keys = Vec::new();
        for i in loaded
            .ike
            .iter()
            .filter(|i| i.record.local.ip() == group.vipa())
        {
            let children: Vec<_> = loaded.children_of(i.record.spis).collect();
            keys.push(i.key.clone());
            keys.extend(children.iter().map(|c| c.key.clone()));
            let kids: Vec<_> = children.iter().map(|c| &c.record).collect();
            records.push(ike_record_of(&i.record, &kids));
        }
        self.taken.insert(group, keys);
        let io = self.io.clone();
        self.core()
            .renegotiate(now, group.vipa(), epoch, &records, &mut IoSink::direct(&io));
    }

    /// After a takeover the records the old SAs left are replaced by the new ones.
    fn remove_taken_records(&mut self, group: GroupId) {
        for k in self.taken.remove(&group).unwrap_or_default() {
            if let Err(e) = self.site.delete(&k) {
                tracing::debug!("removing an old record: {e}");
            }
        }
    }

    fn publish_status(&self) {
        use plexgate_ha::takeover::{OwnerRecord, Role};
        let groups: Vec<Value> = self
            .m
            .status()
            .iter()
            .map(|g| {
                let (owner, epoch) = match &g.record {
                    Some(OwnerRecord::Owned { gateway, epoch, .. }) => {
                        (Some(gateway.as_str().to_string()), Some(epoch.0))
                    }
                    Some(r) => (None, r.epoch().map(|e| e.0)),
                    None => (None, None),
                };
                let routing = matches!(
                    g.role,
                    Role::Routing | Role::TakingOver | Role::HandingOver { .. }
                );
                json!({
                    "vipa": g.group.vipa(),
                    "dvipas": g.dvipas,
                    "role": format!("{:?}", g.role),
                    "routing": routing,
                    "owner": owner,
                    "epoch": epoch,
                })
            })
            .collect();
        if let Ok(mut s) = self.status.lock() {
            *s = json!({ "backend": self.hs.backend().name(), "store_synced": self.synced, "groups": groups, "takeovers": self.takeovers });
        }
    }
}
