//! Work we start on an established IKE SA (queued behind the window of one, §2.3)
//! and the commands and status the daemon uses.

use super::*;

/// The config of a Child SA like `c`: the same selectors, mode and (first) proposal.
fn config_like(sa: &IkeSa, c: &Child) -> Option<ChildConfig> {
    let pc = sa.peer.as_ref()?;
    let mut cfg = pc
        .children
        .iter()
        .find(|x| x.name == c.sa.name)
        .cloned()
        .unwrap_or_else(|| ChildConfig::new(&c.sa.name, vec![], vec![], vec![]));
    cfg.local_ts = c.sa.ts_local.clone();
    cfg.remote_ts = c.sa.ts_remote.clone();
    cfg.mode = c.sa.mode;
    let mut p = c.proposal;
    p.dh = cfg
        .esp_proposals
        .iter()
        .find(|e| e.encr == p.encr && e.encr_bits == p.encr_bits && e.integ == p.integ)
        .and_then(|e| e.dh);
    cfg.esp_proposals.retain(|e| {
        e.encr != p.encr || e.encr_bits != p.encr_bits || e.integ != p.integ || e.esn != p.esn
    });
    cfg.esp_proposals.insert(0, p);
    Some(cfg)
}

/// How long to wait before rekeying again an SA whose replacement failed.
const REKEY_RETRY: Duration = Duration::from_secs(30);

impl Endpoint {
    pub(super) fn start_next_task(&mut self, now: Instant, sa: &mut IkeSa) {
        while sa.outstanding.is_none() && sa.state == SaState::Established {
            let Some(task) = sa.queue.pop_front() else {
                return;
            };
            match task {
                Task::CreateChild(req) => self.start_create_child(now, sa, req),
                Task::RekeyChild(spi_in) => self.start_rekey_child(now, sa, spi_in),
                Task::RekeyIke => self.start_rekey_ike(now, sa),
                Task::DeleteChild(spi_in) => {
                    if !sa.children.iter().any(|c| c.sa.spi_in == spi_in) {
                        continue;
                    }
                    let d = Payload::Delete(Delete {
                        protocol: protocol::ESP,
                        spis: vec![spi_in],
                    });
                    self.send_request(
                        now,
                        sa,
                        exchange::INFORMATIONAL,
                        &[d],
                        Pending::DeleteChild { spi_in },
                    );
                }
                Task::DeleteIke => {
                    let d = Payload::Delete(Delete {
                        protocol: protocol::IKE,
                        spis: vec![],
                    });
                    self.send_request(now, sa, exchange::INFORMATIONAL, &[d], Pending::DeleteIke);
                }
                Task::Dpd => {
                    //= https://www.rfc-editor.org/rfc/rfc7296#section-1.4
                    //# An INFORMATIONAL request with no payloads (other than the empty
                    //# Encrypted payload required by the syntax) is commonly used as a
                    //# check for liveness.
                    self.send_request(now, sa, exchange::INFORMATIONAL, &[], Pending::Dpd);
                }
            }
        }
    }

    /// Rekey a Child SA with the same selectors, mode and (first) proposal; nothing
    /// when it is gone or already rekeyed.
    fn start_rekey_child(&mut self, now: Instant, sa: &mut IkeSa, spi_in: u32) {
        let Some(c) = sa
            .children
            .iter()
            .find(|c| c.sa.spi_in == spi_in && !c.rekeyed)
        else {
            return;
        };
        let Some(cfg) = config_like(sa, c) else {
            return;
        };
        let req = ChildReq {
            cfg,
            rekey_of: Some(spi_in),
        };
        self.start_create_child(now, sa, req);
    }

    /// `req` with only the ESP proposals the data plane can install, or None (and a
    /// `ChildSaFailed`) when none is left.
    pub(super) fn installable_req(&mut self, sa: &IkeSa, req: ChildReq) -> Option<ChildReq> {
        match installable(&req.cfg, &self.esp_support) {
            Ok(cfg) => Some(ChildReq { cfg, ..req }),
            Err(reason) => {
                self.child_failed(sa, &req.cfg.name, reason);
                None
            }
        }
    }

    pub(super) fn start_create_child(&mut self, now: Instant, sa: &mut IkeSa, req: ChildReq) {
        let rekey_of = req.rekey_of;
        let Some(req) = self.installable_req(sa, req) else {
            return self.after_failed_rekey(sa, rekey_of);
        };
        let spi_in = self.new_child_spi();
        let ni = self.nonce();
        let group = req.cfg.esp_proposals.first().and_then(|e| e.dh);
        let mut dh = None;
        let mut p = vec![];
        if let Some(old) = req
            .rekey_of
            .and_then(|s| sa.children.iter().find(|c| c.sa.spi_in == s))
        {
            //= https://www.rfc-editor.org/rfc/rfc7296#section-1.3.3
            //# The SA being rekeyed is identified by the SPI field in the Notify
            //# payload; this is the SPI the exchange initiator would expect in
            //# inbound ESP or AH packets.
            p.push(Payload::Notify(Notify {
                protocol: protocol::ESP,
                spi: old.sa.spi_in.to_be_bytes().to_vec(),
                kind: notify::REKEY_SA,
                data: vec![],
            }));
        }
        if req.cfg.mode == Mode::Transport {
            p.push(Payload::notify(notify::USE_TRANSPORT_MODE, vec![]));
        }
        p.push(esp_sa_payload(&req.cfg, spi_in, group.is_some()));
        p.push(Payload::Nonce(ni.clone()));
        if let Some(g) = group {
            match crypto::dh_generate(g, self.rng.as_mut()) {
                Ok((d, pubv)) => {
                    dh = Some(d);
                    p.push(Payload::Ke {
                        group: g,
                        data: pubv,
                    });
                }
                Err(_) => return,
            }
        }
        p.push(Payload::TsI(req.cfg.local_ts.clone()));
        p.push(Payload::TsR(req.cfg.remote_ts.clone()));
        self.send_request(
            now,
            sa,
            exchange::CREATE_CHILD_SA,
            &p,
            Pending::CreateChild {
                child: req,
                spi_in,
                ni,
                dh,
            },
        );
    }

    pub(super) fn start_rekey_ike(&mut self, now: Instant, sa: &mut IkeSa) {
        let Some(pc) = sa.peer.clone() else { return };
        let Some(cur) = sa.proposal else { return };
        // Reserved (for this SA) until the new SA takes it over or the rekey fails.
        if let Some(s) = sa.reserved_spi.take() {
            self.release_spi(s, sa.id);
        }
        let new_spi = self.new_ike_spi(sa.id);
        sa.reserved_spi = Some(new_spi);
        let ni = self.nonce();
        let Ok((dh, pubv)) = crypto::dh_generate(cur.dh, self.rng.as_mut()) else {
            return;
        };
        let mut props = vec![cur];
        props.extend(
            pc.ike_proposals
                .iter()
                .filter(|p| **p != cur && p.dh == cur.dh),
        );
        let sa_p = Payload::Sa(
            props
                .iter()
                .enumerate()
                .map(|(i, p)| Proposal {
                    num: i as u8 + 1,
                    protocol: protocol::IKE,
                    spi: new_spi.to_be_bytes().to_vec(),
                    transforms: p.transforms(),
                    unknown_attribute: false,
                })
                .collect(),
        );
        let p = vec![
            sa_p,
            Payload::Nonce(ni.clone()),
            Payload::Ke {
                group: cur.dh,
                data: pubv,
            },
        ];
        // Reserve the SPI so that no other SA takes it meanwhile.
        self.send_request(
            now,
            sa,
            exchange::CREATE_CHILD_SA,
            &p,
            Pending::RekeyIke {
                new_spi,
                ni,
                dh: Some(dh),
            },
        );
    }

    pub(super) fn with_sa<R>(
        &mut self,
        now: Instant,
        id: IkeSaId,
        f: impl FnOnce(&mut Self, &mut IkeSa) -> Result<R, Error>,
    ) -> Result<R, Error> {
        let mut sa = self.take(id).ok_or(Error::UnknownSa(id))?;
        let r = f(self, &mut sa);
        self.finish(now, sa);
        r
    }

    /// Create another Child SA (config `child`) in an established IKE SA.
    pub fn create_child(&mut self, now: Instant, id: IkeSaId, child: &str) -> Result<(), Error> {
        self.with_sa(now, id, |this, sa| {
            let pc = sa.peer.clone().ok_or(Error::NotEstablished(id))?;
            let cfg = pc
                .children
                .iter()
                .find(|c| c.name == child)
                .cloned()
                .ok_or_else(|| Error::UnknownChild {
                    peer: pc.name.clone(),
                    child: child.into(),
                })?;
            installable(&cfg, &this.esp_support).map_err(|_| Error::NotInstallable {
                peer: pc.name.clone(),
                child: child.into(),
            })?;
            sa.queue.push_back(Task::CreateChild(ChildReq {
                cfg,
                rekey_of: None,
            }));
            Ok(())
        })
    }

    /// Rekey the Child SA with inbound SPI `spi_in` (SAD soft expiry). The new SA
    /// comes as `ChildSaRekeyed`, the old one's `ChildSaDeleted` follows.
    pub fn rekey_child(&mut self, now: Instant, spi_in: u32) -> Result<(), Error> {
        let id = *self
            .child_index
            .get(&spi_in)
            .ok_or(Error::UnknownChildSa(spi_in))?;
        self.with_sa(now, id, |_, sa| {
            if sa.state != SaState::Established {
                return Err(Error::NotEstablished(id));
            }
            sa.queue.push_back(Task::RekeyChild(spi_in));
            Ok(())
        })
    }

    /// The daemon could not install a Child SA the engine agreed to (from a
    /// `ChildSaUp` or `ChildSaRekeyed`): delete it with the peer (INFORMATIONAL
    /// DELETE, RFC 7296 §1.4.1) so that the peer does not send into the void; its
    /// `ChildSaDeleted` follows as usual. When it replaced an SA in a rekey whose
    /// DELETE has not gone out yet, that SA is kept and rekeyed again later.
    pub fn child_install_failed(&mut self, now: Instant, spi_in: u32) -> Result<(), Error> {
        let id = *self
            .child_index
            .get(&spi_in)
            .ok_or(Error::UnknownChildSa(spi_in))?;
        self.with_sa(now, id, |this, sa| {
            let c = sa
                .children
                .iter_mut()
                .find(|c| c.sa.spi_in == spi_in)
                .ok_or(Error::UnknownChildSa(spi_in))?;
            c.rekeyed = true;
            c.rekey_at = None;
            let replaced = c.replaces.take();
            if let Some(old) = replaced {
                this.keep_or_recreate(now, sa, old, spi_in);
            }
            if !sa.deleting_child(spi_in) {
                sa.queue.push_front(Task::DeleteChild(spi_in));
            }
            Ok(())
        })
    }

    /// The replacement `new` of the Child SA `old` could not be installed: keep `old`
    /// when its DELETE has not gone out (and rekey it again later), else negotiate a
    /// Child SA like it from scratch (once: that one replaces nothing).
    fn keep_or_recreate(&mut self, now: Instant, sa: &mut IkeSa, old: u32, new: u32) {
        let queued = |t: &Task| matches!(t, Task::DeleteChild(s) if *s == old);
        if sa.queue.iter().any(queued) {
            sa.queue.retain(|t| !queued(t));
            let retry = self.jittered(now, REKEY_RETRY, REKEY_RETRY / 2);
            if let Some(o) = sa.children.iter_mut().find(|c| c.sa.spi_in == old) {
                o.rekeyed = false;
                o.rekey_at = Some(retry);
            }
            return;
        }
        let like = sa.children.iter().find(|c| c.sa.spi_in == new);
        if let Some(cfg) = like.and_then(|c| config_like(sa, c)) {
            sa.queue.push_back(Task::CreateChild(ChildReq {
                cfg,
                rekey_of: None,
            }));
        }
    }

    /// NAT rebinding: the daemon saw authenticated ESP of IKE SA `id`'s peer arrive
    /// from a new address or port. When a NAT was detected (RFC 7296 §2.23, RFC 3948)
    /// every later IKE message of the SA, liveness checks and retransmissions
    /// included, goes there, and its Child SAs and recovery record follow (a
    /// `RecordUpdated`). Without a NAT the SA stays where it is
    /// ([`Error::NotBehindNat`]): an address is only followed behind a NAT.
    pub fn peer_address_changed(
        &mut self,
        now: Instant,
        id: IkeSaId,
        remote: SocketAddr,
    ) -> Result<(), Error> {
        self.with_sa(now, id, |this, sa| {
            if !(sa.nat_local || sa.nat_remote) {
                return Err(Error::NotBehindNat(id));
            }
            if sa.remote == remote {
                return Ok(());
            }
            sa.remote = remote;
            for c in sa.children.iter_mut() {
                c.sa.remote = remote;
            }
            if sa.state == SaState::Established {
                this.emit_record(sa);
            }
            Ok(())
        })
    }

    /// Rekey an IKE SA (§1.3.2); reported as `IkeSaRekeyed`.
    pub fn rekey_ike(&mut self, now: Instant, id: IkeSaId) -> Result<(), Error> {
        self.with_sa(now, id, |_, sa| {
            if sa.state != SaState::Established {
                return Err(Error::NotEstablished(id));
            }
            sa.queue.push_back(Task::RekeyIke);
            Ok(())
        })
    }

    /// Delete one Child SA (INFORMATIONAL with DELETE).
    pub fn delete_child(&mut self, now: Instant, spi_in: u32) -> Result<(), Error> {
        let id = *self
            .child_index
            .get(&spi_in)
            .ok_or(Error::UnknownChildSa(spi_in))?;
        self.with_sa(now, id, |_, sa| {
            sa.queue.push_back(Task::DeleteChild(spi_in));
            Ok(())
        })
    }

    /// Delete an IKE SA and all its Child SAs (half-open ones are dropped at once).
    pub fn delete_ike(&mut self, now: Instant, id: IkeSaId) -> Result<(), Error> {
        let mut sa = self.take(id).ok_or(Error::UnknownSa(id))?;
        if sa.state != SaState::Established {
            self.destroy(sa, "deleted by command before establishment", true);
            return Ok(());
        }
        sa.queue.clear();
        sa.queue.push_back(Task::DeleteIke);
        if sa.outstanding.is_some() {
            // Do not wait behind a rekey: the delete supersedes it.
            sa.outstanding = None;
        }
        self.finish(now, sa);
        Ok(())
    }

    /// Drop the IKE SA `id` and its Child SAs without a word to the peer (its
    /// Child SAs and the SA itself are reported deleted as usual): for SAs that
    /// another gateway has already replaced at the peer (a takeover's
    /// INITIAL_CONTACT), or that a client gives up after its peer lost them.
    pub fn forget_ike(&mut self, id: IkeSaId) -> Result<(), Error> {
        let sa = self.take(id).ok_or(Error::UnknownSa(id))?;
        self.destroy(sa, "dropped without DELETE", true);
        Ok(())
    }

    /// Send a liveness check now.
    pub fn dpd(&mut self, now: Instant, id: IkeSaId) -> Result<(), Error> {
        self.with_sa(now, id, |_, sa| {
            sa.queue.push_back(Task::Dpd);
            Ok(())
        })
    }
}
