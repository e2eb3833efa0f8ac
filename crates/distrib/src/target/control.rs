//! The target's control plane: the cluster messages of its gateways, who owns
//! each DVIPA, listeners (SRVSTAT), connections (NEWCONN, CONNEND), timers.
//!
//! Ownership (#12, seed 001 figures 14 and 15): every DVIPA list entry carries
//! its routing gateway's ownership epoch. The target records, per DVIPA, the
//! highest epoch seen and the gateway that announced it. An entry with an
//! older epoch — or another gateway at the same epoch — is refused and counted
//! (`stale_epoch`); a newer one moves the DVIPA to its gateway at once: SRVSTAT
//! for the DVIPA's listeners and NEWCONN (existing) for every connection on it
//! go to the new owner, GRE from the old owner is refused as a spoof, and
//! replies go to the new owner from then on.

use super::TargetStack;
use crate::cluster::{Announcement, ClusterError, Message, NewConnKind, Role};
use crate::counters::DropReason;
use crate::crt::{CrtEntry, Origin};
use crate::distributor::cluster_drop_reason;
use crate::flow::{FlowKey, Proto};
use crate::link::Arrival;
use crate::listeners::{self, ProcSocket, TCP_ESTABLISHED};
use crate::NodeId;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// How often idle connections are swept.
pub const SWEEP_EVERY: Duration = Duration::from_secs(1);

/// Who owns a DVIPA as a target sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ownership {
    /// The routing gateway.
    pub gateway: NodeId,
    /// Its ownership epoch (the highest seen for the DVIPA).
    pub epoch: u64,
}

impl TargetStack {
    /// Queue a Hello to every bound gateway (at start-up).
    pub fn hello(&mut self) {
        let gws: Vec<NodeId> = self.links.iter().map(|(_, l)| l.node).collect();
        for g in gws {
            self.send(
                g,
                &Message::Hello {
                    role: Role::Target,
                    link_up: true,
                },
            );
        }
    }

    /// Queue a Keepalive to every bound gateway (also done by
    /// [`TargetStack::handle_timeout`] every `keepalive_every`).
    pub fn keepalive(&mut self) {
        let gws: Vec<(NodeId, bool)> = self.links.iter().map(|(_, l)| (l.node, l.up)).collect();
        for (g, up) in gws {
            self.send(g, &Message::Keepalive { link_up: up });
        }
    }

    /// Authenticate and apply a cluster message from a gateway, without an
    /// arrival check (in-memory harnesses; the daemon uses
    /// [`TargetStack::handle_cluster_from`]).
    pub fn handle_cluster(&mut self, now: Instant, bytes: &[u8]) -> Result<(), ClusterError> {
        self.receive_cluster(now, None, bytes)
    }

    /// Authenticate and apply a cluster message that arrived as `from`: it must
    /// come from its gateway's address on that gateway's link (else refused,
    /// counted `misrouted`).
    pub fn handle_cluster_from(
        &mut self,
        now: Instant,
        from: Arrival,
        bytes: &[u8],
    ) -> Result<(), ClusterError> {
        self.receive_cluster(now, Some(from), bytes)
    }

    fn receive_cluster(
        &mut self,
        now: Instant,
        from: Option<Arrival>,
        bytes: &[u8],
    ) -> Result<(), ClusterError> {
        let r = self.cluster.receive(Some(now), from, bytes);
        while let Some(tx) = self.cluster.poll_control() {
            self.outbox.push_back(tx);
        }
        let r = match r {
            Ok((sender, msg)) => {
                self.apply(sender, msg);
                Ok(())
            }
            Err(e) => {
                self.counters.drop(cluster_drop_reason(&e));
                Err(e)
            }
        };
        while let Some((sender, msg)) = self.cluster.poll_released() {
            self.apply(sender, msg);
        }
        r
    }

    fn apply(&mut self, sender: NodeId, msg: Message) {
        self.counters.cluster_accepted += 1;
        match msg {
            Message::DvipaList(list) => {
                for a in list {
                    self.apply_dvipa(sender, a);
                }
            }
            Message::ConnQuery { dvipa } => self.report_conns(sender, dvipa),
            Message::Keepalive { link_up } | Message::Hello { link_up, .. } => {
                self.links.set_up(sender, link_up);
            }
            Message::SrvStat { .. }
            | Message::NewConn { .. }
            | Message::ConnEnd { .. }
            | Message::Challenge { .. }
            | Message::ChallengeAck { .. } => {}
        }
    }

    /// A DVIPA list entry from its routing gateway: record the owner if its
    /// epoch is the highest seen, serve the DVIPA if this target is a
    /// candidate, and report listeners (SRVSTAT) and existing connections
    /// (NEWCONN) to that gateway — every time, because a list is what a
    /// starting, restarted or taking-over gateway sends to rebuild its DPT and
    /// CRT (figures 10, 14, 15). Entries naming another node as routing gateway
    /// than the sender, or from a sender that policy or the first list for the
    /// DVIPA did not name as routing or backup gateway, are ignored (counted
    /// `not_candidate`); entries with an older epoch are refused (`stale_epoch`).
    fn apply_dvipa(&mut self, sender: NodeId, a: Announcement) {
        let Announcement { cfg, epoch } = a;
        let dvipa = cfg.dvipa;
        let gw = cfg.routing_gateway;
        if !self.guard.admit(sender, &cfg) {
            self.counters.drop(DropReason::NotCandidate);
            return;
        }
        match self.owner(dvipa) {
            Some(o) if epoch < o.epoch || (epoch == o.epoch && o.gateway != sender) => {
                self.counters.drop(DropReason::StaleEpoch);
                return;
            }
            _ => self.set_owner(dvipa, sender, epoch),
        }
        if cfg.targets.weight_of(self.id).is_none() {
            self.served.retain(|d| d.dvipa != dvipa);
            return;
        }
        match self.served.iter_mut().find(|d| d.dvipa == dvipa) {
            Some(d) => *d = cfg,
            None => self.served.push(cfg),
        }
        let ups: Vec<u16> = self
            .listeners
            .current()
            .iter()
            .filter(|(a, _)| *a == dvipa)
            .map(|(_, p)| *p)
            .collect();
        for port in ups {
            let m = Message::SrvStat {
                target: self.id,
                dvipa,
                port,
                listening: true,
            };
            self.send(gw, &m);
        }
        self.report_conns(gw, Some(dvipa));
    }

    fn set_owner(&mut self, dvipa: IpAddr, gateway: NodeId, epoch: u64) {
        let o = Ownership { gateway, epoch };
        match self.owners.iter_mut().find(|(d, _)| *d == dvipa) {
            Some((_, x)) => *x = o,
            None => self.owners.push((dvipa, o)),
        }
    }

    /// NEWCONN (existing) to `to` for every connection on `dvipa` (or on every
    /// DVIPA) that `to` owns: a gateway learns only its own DVIPAs' connections.
    fn report_conns(&mut self, to: NodeId, dvipa: Option<IpAddr>) {
        let list: Vec<(FlowKey, bool)> = self
            .conns
            .iter()
            .filter(|(k, _)| dvipa.is_none_or(|d| d == k.dvipa))
            .filter(|(k, _)| {
                self.served_dvipa(k.dvipa)
                    .is_some_and(|d| d.routing_gateway == to)
            })
            .map(|(k, e)| (*k, e.uses_ipsec))
            .collect();
        for (conn, uses_ipsec) in list {
            let m = Message::NewConn {
                target: self.id,
                conn,
                kind: NewConnKind::Existing,
                uses_ipsec,
            };
            self.send(to, &m);
        }
    }

    /// Feed the current TCP sockets (from [`listeners::read_listeners`]):
    /// queues SRVSTAT for every (DVIPA, port) whose listening state changed,
    /// to the DVIPA's routing gateway. Returns the number of changes.
    pub fn update_listeners(&mut self, sockets: &[ProcSocket]) -> usize {
        let now = listeners::listening_on(sockets, self.served.iter().map(|d| (d.dvipa, &d.ports)));
        let changes = self.listeners.diff(now);
        for (dvipa, port, listening) in &changes {
            let Some(gw) = self.served_dvipa(*dvipa).map(|d| d.routing_gateway) else {
                continue;
            };
            let m = Message::SrvStat {
                target: self.id,
                dvipa: *dvipa,
                port: *port,
                listening: *listening,
            };
            self.send(gw, &m);
        }
        changes.len()
    }

    /// Learn established connections on served DVIPA ports from the kernel's
    /// socket list (after a restart of the target daemon) and report the new
    /// ones with NEWCONN (existing; IPsec assumed, so replies use the gateway).
    pub fn learn_established(&mut self, now: Instant, sockets: &[ProcSocket]) -> usize {
        let mut n = 0;
        for s in sockets.iter().filter(|s| s.state == TCP_ESTABLISHED) {
            // Every connection on a DVIPA, distributed port or not: one an
            // app opened from an ephemeral port needs the gateway's CRT too.
            let Some(d) = self.served_dvipa(s.local.ip()) else {
                continue;
            };
            let gw = d.routing_gateway;
            let k = FlowKey {
                client: s.remote.ip(),
                client_port: s.remote.port(),
                dvipa: s.local.ip(),
                dvipa_port: s.local.port(),
                proto: Proto::Tcp,
            };
            if self.conns.contains_key(&k) {
                continue;
            }
            self.conns.insert(
                k,
                CrtEntry::new(gw, Proto::Tcp, true, Origin::Existing, now),
            );
            let m = Message::NewConn {
                target: self.id,
                conn: k,
                kind: NewConnKind::Existing,
                uses_ipsec: true,
            };
            self.send(gw, &m);
            n += 1;
        }
        n
    }

    /// When [`TargetStack::handle_timeout`] must run next: the next sweep of
    /// idle connections ([`SWEEP_EVERY`] after the last) or the next Keepalive,
    /// whichever is first; `None` before the first call (run it at once).
    pub fn next_timeout(&self) -> Option<Instant> {
        match (self.swept_at, self.keepalive_at) {
            (Some(s), Some(k)) => Some((s + SWEEP_EVERY).min(k)),
            _ => None,
        }
    }

    /// Timers, each when due ([`TargetStack::next_timeout`]): expire idle
    /// connections and report each with CONNEND; send Keepalives to every
    /// gateway. Returns the number of connections expired.
    pub fn handle_timeout(&mut self, now: Instant) -> usize {
        if self.keepalive_at.is_none_or(|t| now >= t) {
            if self.keepalive_at.is_some() {
                self.keepalive();
            }
            self.keepalive_at = Some(now + self.keepalive_every);
        }
        if self.swept_at.is_some_and(|t| now < t + SWEEP_EVERY) {
            return 0;
        }
        self.swept_at = Some(now);
        self.expire(now)
    }

    /// Expire idle connections and report each with CONNEND.
    fn expire(&mut self, now: Instant) -> usize {
        let t = self.timeouts;
        let gone: Vec<FlowKey> = self
            .conns
            .iter()
            .filter(|(_, e)| e.expired(now, &t))
            .map(|(k, _)| *k)
            .collect();
        for k in &gone {
            self.end_conn(k);
            if let Some(gw) = self.served_dvipa(k.dvipa).map(|d| d.routing_gateway) {
                let m = Message::ConnEnd {
                    target: self.id,
                    conn: *k,
                };
                self.send(gw, &m);
            }
        }
        gone.len()
    }
}
