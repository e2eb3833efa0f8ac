//! Child SAs in and out of the SAD: installation from IKE events, removal, the
//! routes of the peers' selectors, acquires for traffic with no SA yet, and SAD
//! lifetime events turned into rekeys and deletes.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use plexgate_ike as ike;
use plexgate_ipsec as ipsec;

use super::*;
use serde_json::json;
use std::collections::HashMap;

impl GatewayCore {
    pub(super) fn acquire(&mut self, now: Instant, peer: &str, child: &str, sink: &mut dyn Sink) {
        let k = (peer.to_string(), child.to_string());
        if self.acquiring.get(&k).is_some_and(|until| now < *until) {
            return;
        }
        // One negotiation at a time per child; if it neither succeeds nor fails
        // visibly, traffic may trigger another after the back-off.
        match self.ike.initiate(now, peer, child) {
            Ok(_) => {
                tracing::info!(
                    peer,
                    child,
                    "acquire: no SA for outbound traffic, initiating"
                );
                self.counters.acquires += 1;
                self.acquiring.insert(k, now + Duration::from_secs(30));
            }
            Err(e) => {
                tracing::warn!(peer, child, "acquire failed (next try in 10 s): {e}");
                self.acquiring.insert(k, now + Duration::from_secs(10));
            }
        }
        self.flush(now, sink);
    }

    pub(super) fn after_sad(&mut self, now: Instant, sink: &mut dyn Sink) {
        let mut any = false;
        while let Some(ev) = self.sad.poll_event() {
            any = true;
            match ev {
                ipsec::SadEvent::RekeyNeeded { spi, direction } => {
                    let spi_in = match direction {
                        ipsec::Direction::Inbound => spi,
                        ipsec::Direction::Outbound => match self.pair_of_out.get(&spi) {
                            Some(s) => *s,
                            None => continue,
                        },
                    };
                    if let Err(e) = self.ike.rekey_child(now, spi_in) {
                        tracing::debug!("rekey of child {spi_in:08x} not started: {e}");
                    }
                }
                ipsec::SadEvent::Expired { spi, direction } => {
                    // A hard lifetime ended the SA (RFC 4301 §4.4.2.1): the IKE engine
                    // deletes the Child SA and tells the peer (INFORMATIONAL DELETE).
                    let spi_in = match direction {
                        ipsec::Direction::Outbound => {
                            self.out_index.remove(spi);
                            self.pair_of_out.get(&spi).copied()
                        }
                        ipsec::Direction::Inbound => Some(spi),
                    };
                    if let Some(spi_in) = spi_in {
                        tracing::info!("Child SA {spi_in:08x}: hard lifetime reached, deleting");
                        let _ = self.ike.delete_child(now, spi_in);
                    }
                }
            }
        }
        if any {
            self.flush(now, sink);
        }
    }

    pub(super) fn on_ike_event(&mut self, now: Instant, ev: ike::Event) {
        match ev {
            ike::Event::IkeSaUp { id, record }
            | ike::Event::IkeSaRekeyed {
                new: id, record, ..
            } => {
                let key = format!(
                    "{}/ike/{:016x}-{:016x}",
                    self.site, record.spi_i, record.spi_r
                );
                tracing::info!(peer = %record.peer, remote = %record.remote, "IKE SA {:016x}_i {:016x}_r established", record.spi_i, record.spi_r);
                if let Ok(v) = serde_json::to_vec_pretty(&record) {
                    self.side.push(SideEffect::PutRecord(key.clone(), v));
                }
                self.ike_records.insert(id, key);
            }
            ike::Event::IkeSaDeleted { id, reason } => {
                tracing::info!("IKE SA {} deleted: {reason}", id.0);
                if let Some(k) = self.ike_records.remove(&id) {
                    self.side.push(SideEffect::DeleteRecord(k));
                }
            }
            ike::Event::ChildSaUp { child, .. } => self.install_child(now, child, None),
            ike::Event::ChildSaRekeyed {
                old_spi_in,
                old_spi_out,
                new,
                ..
            } => self.install_child(now, new, Some((old_spi_in, old_spi_out))),
            ike::Event::ChildSaDeleted {
                spi_in, spi_out, ..
            } => {
                tracing::info!("Child SA {spi_in:08x}_i {spi_out:08x}_o deleted");
                self.remove_child_sa(spi_in, spi_out);
            }
            ike::Event::ChildSaFailed { name, reason, .. } => {
                tracing::warn!(child = %name, "Child SA failed: {reason}");
                self.acquiring.retain(|(_, c), _| c != &name);
            }
            ike::Event::AuthFailed {
                remote,
                peer_id,
                reason,
            } => {
                tracing::warn!(%remote, peer_id = ?peer_id, "authentication failed: {reason}");
            }
            other => tracing::debug!("IKE event {other:?}"),
        }
    }

    /// Install both SAs of a negotiated Child SA into the SAD (what `ChildSaUp`
    /// does; public for benchmarks and for re-creating SAs from records).
    pub fn install_child_sa(&mut self, now: Instant, c: ike::ChildSa) {
        self.install_child(now, c, None);
    }

    /// Remove both SAs of a Child SA, its outbound index entry and, with the last SA
    /// of a selector, its route; the recovery record goes too.
    pub fn remove_child_sa(&mut self, spi_in: u32, spi_out: u32) {
        self.sad.remove(ipsec::Direction::Inbound, spi_in);
        if let Some(sa) = self.sad.remove(ipsec::Direction::Outbound, spi_out) {
            // Only the last SA of a selector takes its route away (a rekeyed
            // SA's replacement inherited it).
            let still = self.sad.iter().any(|o| {
                o.params().direction == ipsec::Direction::Outbound
                    && o.params().remote_ts == sa.params().remote_ts
            });
            if !still {
                for cidr in sa.params().remote_ts.iter().filter_map(ts_cidr) {
                    if let Some(n) = self.routes.get_mut(&cidr) {
                        *n = n.saturating_sub(1);
                        if *n == 0 {
                            self.routes.remove(&cidr);
                            self.route_changes.push((false, cidr));
                        }
                    }
                }
            }
        }
        self.out_index.remove(spi_out);
        self.pair_of_out.remove(&spi_out);
        self.side.push(SideEffect::DeleteRecord(format!(
            "{}/child/{spi_in:08x}",
            self.site
        )));
    }

    pub(super) fn install_child(
        &mut self,
        now: Instant,
        c: ike::ChildSa,
        replaces: Option<(u32, u32)>,
    ) {
        let Some(transform) = esp_transform(&c) else {
            tracing::warn!(
                "Child SA {}: transform {} not supported by the data plane",
                c.name,
                c.encr
            );
            return;
        };
        let peer = self.peer_of_child(&c.name);
        let pol = self
            .children
            .get(&(peer.clone(), c.name.clone()))
            .cloned()
            .unwrap_or(ChildPolicy {
                replay_window: 1024,
                lifetime: ipsec::Lifetime::default(),
            });
        let local_ts: Vec<_> = c.ts_local.iter().map(config::ts_to_ipsec).collect();
        let remote_ts: Vec<_> = c.ts_remote.iter().map(config::ts_to_ipsec).collect();
        let encap = c.udp_encap.then_some(ipsec::UdpEncapPorts {
            local_port: c.local.port(),
            remote_port: c.remote.port(),
        });
        let mk = |spi, direction, keys: &(Vec<u8>, Vec<u8>)| ipsec::SaParams {
            spi,
            direction,
            transform,
            enc_key: keys.0.clone(),
            integ_key: keys.1.clone(),
            esn: c.esn,
            mode: match c.mode {
                ike::Mode::Transport => ipsec::Mode::Transport,
                _ => ipsec::Mode::Tunnel,
            },
            replay_window: pol.replay_window,
            lifetime: pol.lifetime,
            local_ts: local_ts.clone(),
            remote_ts: remote_ts.clone(),
            local_addr: c.local.ip(),
            remote_addr: c.remote.ip(),
            encap,
            initial_seq: 0,
            peer: peer.clone(),
            child: c.name.clone(),
        };
        let pin = mk(c.spi_in, ipsec::Direction::Inbound, &c.keys_in);
        let pout = mk(c.spi_out, ipsec::Direction::Outbound, &c.keys_out);
        if self.keylog {
            self.side
                .push(SideEffect::KeyLog(ipsec::keylog::esp_sa_line(&pin)));
            self.side
                .push(SideEffect::KeyLog(ipsec::keylog::esp_sa_line(&pout)));
        }
        let rec = json!({
            "peer": peer, "child": c.name, "spi_in": format!("{:08x}", c.spi_in), "spi_out": format!("{:08x}", c.spi_out),
            "protocol": c.protocol, "transform": format!("{transform:?}"), "esn": c.esn,
            "local_ts": local_ts, "remote_ts": remote_ts, "local": c.local, "remote": c.remote, "udp_encap": c.udp_encap,
            "replaces": replaces.map(|(i, o)| json!({"spi_in": format!("{i:08x}"), "spi_out": format!("{o:08x}")})),
        });
        if let Err(e) = self.sad.insert(pin, now) {
            tracing::warn!("inbound SA {:08x} not installed: {e}", c.spi_in);
            return;
        }
        if let Err(e) = self.sad.insert(pout, now) {
            tracing::warn!("outbound SA {:08x} not installed: {e}", c.spi_out);
            self.sad.remove(ipsec::Direction::Inbound, c.spi_in);
            return;
        }
        if let Some((_, old_out)) = replaces {
            // New traffic goes out on the new SA at once; the old inbound SA stays
            // until the peer's DELETE (RFC 7296 §2.8).
            self.out_index.remove(old_out);
        }
        self.out_index.insert(&remote_ts, c.spi_out);
        if replaces.is_none() {
            for cidr in remote_ts.iter().filter_map(ts_cidr) {
                let n = self.routes.entry(cidr.clone()).or_insert(0);
                *n += 1;
                if *n == 1 {
                    self.route_changes.push((true, cidr));
                }
            }
        }
        self.pair_of_out.insert(c.spi_out, c.spi_in);
        self.acquiring.remove(&(peer.clone(), c.name.clone()));
        tracing::info!(
            peer = %peer, child = %c.name, "Child SA {:08x}_i {:08x}_o installed ({transform:?}{}{})",
            c.spi_in, c.spi_out, if c.esn { ", ESN" } else { "" }, if c.udp_encap { ", UDP-encap" } else { "" }
        );
        if let Ok(v) = serde_json::to_vec_pretty(&rec) {
            self.side.push(SideEffect::PutRecord(
                format!("{}/child/{:08x}", self.site, c.spi_in),
                v,
            ));
        }
    }

    pub(super) fn peer_of_child(&self, child: &str) -> String {
        let mut v: Vec<&String> = self
            .children
            .keys()
            .filter(|(_, c)| c == child)
            .map(|(p, _)| p)
            .collect();
        v.sort();
        v.first().map(|s| s.to_string()).unwrap_or_default()
    }
}

/// Which outbound SA carries a packet to a given inner destination.
#[derive(Debug, Default)]
pub(super) struct OutboundIndex {
    hosts: HashMap<IpAddr, u32>,
    ranges: Vec<(ipsec::TrafficSelector, u32)>,
}

impl OutboundIndex {
    pub(super) fn insert(&mut self, ts: &[ipsec::TrafficSelector], spi: u32) {
        for t in ts {
            if t.start_addr == t.end_addr {
                self.hosts.insert(t.start_addr, spi);
            } else {
                self.ranges.push((*t, spi));
            }
        }
    }

    pub(super) fn remove(&mut self, spi: u32) {
        self.hosts.retain(|_, s| *s != spi);
        self.ranges.retain(|(_, s)| *s != spi);
    }

    #[inline]
    pub(super) fn lookup(&self, dst: IpAddr) -> Option<u32> {
        if let Some(s) = self.hosts.get(&dst) {
            return Some(*s);
        }
        self.ranges
            .iter()
            .rev()
            .find(|(t, _)| t.contains_addr(dst))
            .map(|(_, s)| *s)
    }
}
