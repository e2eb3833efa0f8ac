//! Child SAs in and out of the SAD: installation from IKE events, removal, the
//! routes of the peers' selectors, acquires for traffic with no SA yet, and SAD
//! lifetime events turned into rekeys and deletes.

use std::time::{Duration, Instant};

use plexgate_ike as ike;
use plexgate_ipsec as ipsec;

use super::*;

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
                ipsec::SadEvent::RekeyNeeded {
                    child: Some(spi_in),
                    ..
                } => {
                    if let Err(e) = self.ike.rekey_child(now, spi_in) {
                        tracing::debug!("rekey of child {spi_in:08x} not started: {e}");
                    }
                }
                ipsec::SadEvent::Expired {
                    child: Some(spi_in),
                    ..
                } => {
                    // A hard lifetime ended the SA (RFC 4301 §4.4.2.1): the IKE engine
                    // deletes the Child SA and tells the peer (INFORMATIONAL DELETE).
                    tracing::info!("Child SA {spi_in:08x}: hard lifetime reached, deleting");
                    let _ = self.ike.delete_child(now, spi_in);
                }
                // SAs not installed as a pair have no Child SA to rekey or delete.
                _ => {}
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
                tracing::info!(peer = %record.peer, remote = %record.remote, "IKE SA {id} ({:016x}_i {:016x}_r) established", record.spi_i, record.spi_r);
                self.recovery_progress(id, true);
                self.ike_peers.insert(
                    id,
                    IkePeer {
                        owner: record.remote_id.to_string(),
                    },
                );
            }
            ike::Event::RecordUpdated { id, record } => self.record_updated(id, &record),
            ike::Event::RecordRemoved { id } => self.record_removed(id),
            ike::Event::IkeSaDeleted { id, reason } => {
                tracing::info!("IKE SA {id} deleted: {reason}");
                self.ike_peers.remove(&id);
                self.recovery_progress(id, false);
            }
            ike::Event::ChildSaUp { ike, peer, child } => {
                self.install_child(now, ike, &peer, child, None)
            }
            ike::Event::ChildSaRekeyed {
                ike,
                peer,
                old_spi_in,
                new,
                ..
            } => self.install_child(now, ike, &peer, new, Some(old_spi_in)),
            ike::Event::ChildSaDeleted {
                spi_in, spi_out, ..
            } => {
                tracing::info!("Child SA {spi_in:08x}_i {spi_out:08x}_o deleted");
                self.child_ike.remove(&spi_in);
                self.remove_child_sa(spi_in);
            }
            ike::Event::ChildSaFailed { name, reason, .. } => {
                tracing::warn!(child = %name, "Child SA failed: {reason}");
                self.acquiring.retain(|(_, c), _| c != &name);
            }
            ike::Event::Refused {
                remote,
                peer,
                reason,
            } => self.log_refusal(now, remote, peer.as_deref(), &reason),
            ike::Event::AuthFailed {
                remote,
                peer_id,
                reason,
            } => {
                if self.log_limit.allow(now) {
                    tracing::warn!(%remote, peer_id = ?peer_id, "authentication failed: {reason}");
                }
            }
            ike::Event::IkeKeys { keys, .. } => {
                let k = ipsec::keylog::IkeSaKeys {
                    spi_i: keys.spi_i,
                    spi_r: keys.spi_r,
                    encr: keys.encr,
                    encr_key_bits: Some(keys.encr_bits),
                    integ: keys.integ,
                    sk_ei: &keys.sk_ei,
                    sk_er: &keys.sk_er,
                    sk_ai: &keys.sk_ai,
                    sk_ar: &keys.sk_ar,
                };
                match ipsec::keylog::ikev2_decryption_line(&k) {
                    Ok(line) => self.side.push(SideEffect::IkeKeyLog(line)),
                    Err(e) => tracing::warn!("IKE key log: {e}"),
                }
            }
        }
    }

    /// Install both SAs of a negotiated Child SA of the IKE SA `ike` into the SAD
    /// (what `ChildSaUp` does; public for benchmarks and for re-creating SAs
    /// from records).
    pub fn install_child_sa(
        &mut self,
        now: Instant,
        ike: ike::IkeSaId,
        peer: &str,
        c: ike::ChildSa,
    ) {
        self.install_child(now, ike, peer, c, None);
    }

    /// Remove both SAs of the Child SA with inbound SPI `spi_in` and, with the
    /// last SA of a selector, its route; the recovery record goes too.
    pub fn remove_child_sa(&mut self, spi_in: u32) {
        if let Some(sa) = self.sad.remove_child(spi_in) {
            // Only the last SA of a selector takes its route away (a rekeyed
            // SA's replacement inherited it).
            let still = self
                .sad
                .outbound_sas()
                .any(|(_, o)| o.params().remote_ts == sa.params().remote_ts);
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
    }

    /// The data-plane parameters of both directions of a negotiated Child SA.
    fn sa_params(
        &self,
        c: &ike::ChildSa,
        peer: &str,
        transform: ipsec::EspTransform,
    ) -> (ipsec::SaParams, ipsec::SaParams) {
        let pol = self
            .children
            .get(&(peer.to_string(), c.name.clone()))
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
            peer: peer.to_string(),
            child: c.name.clone(),
        };
        (
            mk(c.spi_in, ipsec::Direction::Inbound, &c.keys_in),
            mk(c.spi_out, ipsec::Direction::Outbound, &c.keys_out),
        )
    }

    /// Install a Child SA; `replaces`: the inbound SPI of the Child SA it rekeys.
    /// A Child SA the data plane refuses is deleted with the peer at once, so
    /// that the peer never believes in an SA whose traffic would vanish.
    pub(super) fn install_child(
        &mut self,
        now: Instant,
        ike_sa: ike::IkeSaId,
        peer: &str,
        c: ike::ChildSa,
        replaces: Option<u32>,
    ) {
        // The IKE SA's proven identity keeps peers of one config apart in the SAD.
        let owner = match self.ike_peers.get(&ike_sa) {
            Some(p) => p.owner.clone(),
            None => format!("IKE SA {ike_sa}"),
        };
        let peer = peer.to_string();
        let installed = esp_transform(&c)
            .ok_or_else(|| format!("transform {} is not supported by the data plane", c.encr))
            .and_then(|transform| {
                let (pin, pout) = self.sa_params(&c, &peer, transform);
                if self.keylog {
                    for p in [&pin, &pout] {
                        self.side
                            .push(SideEffect::KeyLog(ipsec::keylog::esp_sa_line(p)));
                    }
                }
                self.sad
                    .insert_child(pin, pout, &owner, now)
                    .map(|r| (r, transform))
                    .map_err(|e| e.to_string())
            });
        let (child_ref, transform) = match installed {
            Ok(x) => x,
            Err(e) => {
                tracing::warn!(
                    peer = %peer, child = %c.name,
                    "Child SA {:08x}_i {:08x}_o refused by the data plane: {e}; deleting it with the peer",
                    c.spi_in, c.spi_out
                );
                if let Err(e) = self.ike.child_install_failed(now, c.spi_in) {
                    tracing::debug!("delete of refused child {:08x}: {e}", c.spi_in);
                }
                return;
            }
        };
        self.child_ike.insert(c.spi_in, ike_sa);
        match replaces.and_then(|old_in| self.sad.outbound_of_child(old_in)) {
            // New traffic goes out on the new SA at once; the old inbound SA stays
            // until the peer's DELETE (RFC 7296 §2.8).
            Some(old_out) => self.sad.retire_outbound(old_out),
            None => self.add_routes(child_ref.out),
        }
        self.acquiring.remove(&(peer.clone(), c.name.clone()));
        tracing::info!(
            peer = %peer, child = %c.name, "Child SA {:08x}_i {:08x}_o installed ({transform:?}{}{})",
            c.spi_in, c.spi_out, if c.esn { ", ESN" } else { "" }, if c.udp_encap { ", UDP-encap" } else { "" }
        );
    }

    /// Routes into the TUN for the remote selectors of a new outbound SA.
    fn add_routes(&mut self, out: ipsec::OutHandle) {
        let Some(sa) = self.sad.outbound(out) else {
            return;
        };
        for cidr in sa.params().remote_ts.iter().filter_map(ts_cidr) {
            let n = self.routes.entry(cidr.clone()).or_insert(0);
            *n += 1;
            if *n == 1 {
                self.route_changes.push((true, cidr));
            }
        }
    }
}

impl GatewayCore {
    /// An exchange the IKE engine refused (a proposal, an identity, selectors, an
    /// IKEv1 or virtual-IP request): what was received and what is configured,
    /// as strongSwan logs it. Unauthenticated peers can cause these, so at most
    /// a few lines a second are written and the rest are counted.
    fn log_refusal(&mut self, now: Instant, remote: SocketAddr, peer: Option<&str>, reason: &str) {
        self.counters.ike_refused += 1;
        if self.log_limit.allow(now) {
            match peer {
                Some(peer) => tracing::warn!(%remote, peer, "refused: {reason}"),
                None => tracing::warn!(%remote, "refused: {reason}"),
            }
        }
    }
}
