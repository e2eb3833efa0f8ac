//! Dispatch of requests and responses of established SAs: CREATE_CHILD_SA (§1.3:
//! new Child SA, Child SA rekey with collisions §2.8.1, IKE SA rekey §1.3.2) and
//! INFORMATIONAL (§1.4: DELETE, liveness).

use super::*;

impl Endpoint {
    pub(super) fn handle_request(
        &mut self,
        now: Instant,
        sa: &mut IkeSa,
        local: SocketAddr,
        remote: SocketAddr,
        header: &Header,
        data: &[u8],
    ) {
        let mid = header.message_id;
        //= https://www.rfc-editor.org/rfc/rfc7296#section-2.1
        //# If a responder receives a retransmitted request, it MUST
        //# retransmit its cached response
        if let Some((m, bytes)) = &sa.last_response {
            if *m == mid && mid.wrapping_add(1) == sa.peer_mid {
                self.transmits.push_back(Transmit {
                    local: sa.local,
                    remote: sa.remote,
                    payload: bytes.clone(),
                });
                return;
            }
        }
        if mid != sa.peer_mid || sa.state == SaState::InitSent {
            return;
        }
        let Ok(msg) = Message::parse(data) else {
            return;
        };
        let p = match Self::open(sa, data, &msg) {
            Opened::Payloads(p) => p,
            Opened::Drop => return,
            Opened::Critical(t) => {
                sa.peer_mid = sa.peer_mid.wrapping_add(1);
                return self.send_response(
                    sa,
                    header.exchange,
                    mid,
                    &[Payload::notify(
                        notify::UNSUPPORTED_CRITICAL_PAYLOAD,
                        vec![t],
                    )],
                );
            }
        };
        sa.peer_mid = sa.peer_mid.wrapping_add(1);
        // The peer may have floated to 4500 (NAT-T) or moved behind a NAT: answer
        // where the authenticated request came from (§2.23).
        sa.local = local;
        sa.remote = remote;
        if let Some(pc) = &sa.peer {
            sa.dpd_at = pc.dpd.map(|d| now + d);
        }
        match (header.exchange, sa.state) {
            (exchange::IKE_AUTH, SaState::HalfOpen) => self.handle_auth_request(now, sa, mid, &p),
            (exchange::CREATE_CHILD_SA, SaState::Established) => {
                self.handle_create_child_request(now, sa, mid, &p)
            }
            (
                exchange::INFORMATIONAL,
                SaState::Established | SaState::Deleting | SaState::Rekeyed | SaState::AuthSent,
            ) => self.handle_informational_request(sa, mid, &p),
            (exchange::CREATE_CHILD_SA, SaState::Deleting | SaState::Rekeyed) => {
                self.send_response(
                    sa,
                    header.exchange,
                    mid,
                    &[Payload::notify(notify::TEMPORARY_FAILURE, vec![])],
                );
            }
            _ => self.send_response(
                sa,
                header.exchange,
                mid,
                &[Payload::notify(notify::INVALID_SYNTAX, vec![])],
            ),
        }
    }

    pub(super) fn handle_response(
        &mut self,
        now: Instant,
        sa: &mut IkeSa,
        local: SocketAddr,
        remote: SocketAddr,
        header: &Header,
        data: &[u8],
    ) {
        let Some(o) = sa.outstanding.as_ref() else {
            return;
        };
        if o.mid != header.message_id {
            return;
        }
        if header.exchange == exchange::IKE_SA_INIT {
            if matches!(o.pending, Pending::Init) {
                self.handle_init_response(now, sa, local, remote, data);
            }
            return;
        }
        let Ok(msg) = Message::parse(data) else {
            return;
        };
        let p = match Self::open(sa, data, &msg) {
            Opened::Payloads(p) => p,
            _ => return,
        };
        let Some(o) = sa.outstanding.take() else {
            return;
        };
        if let Some(pc) = &sa.peer {
            sa.dpd_at = pc.dpd.map(|d| now + d);
        }
        match o.pending {
            Pending::Init => {}
            Pending::Auth { child } => self.handle_auth_response(now, sa, &p, child),
            Pending::CreateChild {
                child,
                spi_in,
                ni,
                dh,
            } => self.handle_create_child_response(now, sa, &p, child, spi_in, ni, dh),
            Pending::RekeyIke { new_spi, ni, dh } => {
                self.handle_rekey_ike_response(now, sa, &p, new_spi, ni, dh)
            }
            Pending::DeleteChild { spi_in } => {
                if let Some(i) = sa.children.iter().position(|c| c.sa.spi_in == spi_in) {
                    let c = sa.children.remove(i);
                    self.child_index.remove(&spi_in);
                    self.events.push_back(Event::ChildSaDeleted {
                        ike: sa.id,
                        spi_in,
                        spi_out: c.sa.spi_out,
                    });
                    self.emit_record(sa);
                }
            }
            Pending::DeleteIke if sa.state == SaState::Deleting => {
                // The DELETE of an SA we rekeyed: IkeSaRekeyed already said it all.
            }
            Pending::DeleteIke => {
                sa.state = SaState::Deleting;
                let id = sa.id;
                for c in sa.children.drain(..) {
                    self.child_index.remove(&c.sa.spi_in);
                    self.events.push_back(Event::ChildSaDeleted {
                        ike: id,
                        spi_in: c.sa.spi_in,
                        spi_out: c.sa.spi_out,
                    });
                }
                if sa.record().is_some() || sa.peer.is_some() {
                    self.events.push_back(Event::RecordRemoved { id });
                }
                self.events.push_back(Event::IkeSaDeleted {
                    id,
                    reason: "deleted by us".into(),
                });
            }
            Pending::Dpd => {}
        }
    }

    pub(super) fn handle_informational_request(&mut self, sa: &mut IkeSa, mid: u32, p: &[Payload]) {
        let mut ours = Vec::new();
        let mut delete_ike = false;
        for d in p.iter().filter_map(|x| {
            if let Payload::Delete(d) = x {
                Some(d)
            } else {
                None
            }
        }) {
            match d.protocol {
                protocol::IKE => delete_ike = true,
                protocol::ESP => {
                    //= https://www.rfc-editor.org/rfc/rfc7296#section-1.4.1
                    //# the recipient MUST [...] delete the corresponding inbound SAs
                    //# [...] and send a response containing a DELETE for the
                    //# corresponding outbound SAs
                    for spi in &d.spis {
                        if let Some(i) = sa.children.iter().position(|c| c.sa.spi_out == *spi) {
                            let c = sa.children.remove(i);
                            self.child_index.remove(&c.sa.spi_in);
                            self.events.push_back(Event::ChildSaDeleted {
                                ike: sa.id,
                                spi_in: c.sa.spi_in,
                                spi_out: c.sa.spi_out,
                            });
                            // A child we are rekeying or deleting ourselves: the
                            // simultaneous delete needs no extra answer.
                            if !matches!(&sa.outstanding, Some(Outstanding { pending: Pending::DeleteChild { spi_in }, .. }) if *spi_in == c.sa.spi_in)
                            {
                                ours.push(c.sa.spi_in);
                            }
                        }
                    }
                }
                _ => {}
            }
        }
        if delete_ike {
            self.send_response(sa, exchange::INFORMATIONAL, mid, &[]);
            let id = sa.id;
            for c in sa.children.drain(..) {
                self.child_index.remove(&c.sa.spi_in);
                self.events.push_back(Event::ChildSaDeleted {
                    ike: id,
                    spi_in: c.sa.spi_in,
                    spi_out: c.sa.spi_out,
                });
            }
            if !matches!(sa.state, SaState::Deleting | SaState::Rekeyed) {
                self.events.push_back(Event::RecordRemoved { id });
                self.events.push_back(Event::IkeSaDeleted {
                    id,
                    reason: "deleted by peer".into(),
                });
            }
            sa.state = SaState::Deleting;
            sa.outstanding = None;
            sa.queue.clear();
            return;
        }
        let out: Vec<Payload> = if ours.is_empty() {
            Vec::new()
        } else {
            vec![Payload::Delete(Delete {
                protocol: protocol::ESP,
                spis: ours,
            })]
        };
        self.send_response(sa, exchange::INFORMATIONAL, mid, &out);
        if p.iter().any(|x| matches!(x, Payload::Delete(_))) {
            self.emit_record(sa);
        }
    }

    /// Responder: CREATE_CHILD_SA (§1.3).
    pub(super) fn handle_create_child_request(
        &mut self,
        now: Instant,
        sa: &mut IkeSa,
        mid: u32,
        p: &[Payload],
    ) {
        let Some(pc) = sa.peer.clone() else { return };
        let Some(ni) = nonce_of(p).cloned() else {
            return self.send_response(
                sa,
                exchange::CREATE_CHILD_SA,
                mid,
                &[Payload::notify(notify::INVALID_SYNTAX, vec![])],
            );
        };
        let is_ike = sa_of(p).is_some_and(|v| v.iter().any(|x| x.protocol == protocol::IKE));
        if is_ike {
            return self.handle_rekey_ike_request(now, sa, mid, p, ni, &pc);
        }
        let rekey = find_notify(p, notify::REKEY_SA).and_then(|n| {
            n.spi
                .get(..4)
                .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
        });
        if rekey.is_none() && sa.children.len() >= self.config.limits.max_child_sas {
            //= https://www.rfc-editor.org/rfc/rfc7296#section-3.10.1
            //# NO_ADDITIONAL_SAS [...] indicates that the CREATE_CHILD_SA request
            //# is unacceptable because the responder is unwilling to accept any
            //# more Child SAs on this IKE SA.
            let n = Payload::notify(notify::NO_ADDITIONAL_SAS, vec![]);
            return self.send_response(sa, exchange::CREATE_CHILD_SA, mid, &[n]);
        }
        // REKEY_SA names the SPI the requester receives on: our outbound SPI.
        let old = match rekey {
            Some(spi_out) => match sa.children.iter().find(|c| c.sa.spi_out == spi_out) {
                Some(c) if c.rekeyed => {
                    //= https://www.rfc-editor.org/rfc/rfc7296#section-2.25
                    //# A peer that receives a request to rekey a Child SA that it is
                    //# currently trying to close SHOULD reply with TEMPORARY_FAILURE.
                    return self.send_response(
                        sa,
                        exchange::CREATE_CHILD_SA,
                        mid,
                        &[Payload::notify(notify::TEMPORARY_FAILURE, vec![])],
                    );
                }
                Some(c) => Some((c.sa.spi_in, c.sa.name.clone())),
                None => {
                    //= https://www.rfc-editor.org/rfc/rfc7296#section-2.25
                    //# the responder [...] replies with CHILD_SA_NOT_FOUND
                    let n = Payload::Notify(Notify {
                        protocol: protocol::ESP,
                        spi: spi_out.to_be_bytes().to_vec(),
                        kind: notify::CHILD_SA_NOT_FOUND,
                        data: vec![],
                    });
                    return self.send_response(sa, exchange::CREATE_CHILD_SA, mid, &[n]);
                }
            },
            None => None,
        };
        let ke = ke_of(p);
        let sel = select_child(&pc, p, ke.map(|k| k.0), old.as_ref().map(|o| o.1.as_str()));
        let sel = match sel {
            Ok(s) => s,
            Err(n) => {
                return self.send_response(
                    sa,
                    exchange::CREATE_CHILD_SA,
                    mid,
                    &[Payload::notify(n, vec![])],
                )
            }
        };
        let mut shared = None;
        let mut ke_out = None;
        if let (Some(g), Some((kg, kd))) = (sel.esp.dh, ke) {
            if g != kg {
                let n = Payload::notify(notify::INVALID_KE_PAYLOAD, g.to_be_bytes().to_vec());
                return self.send_response(sa, exchange::CREATE_CHILD_SA, mid, &[n]);
            }
            let Ok((dh, pubv)) = crypto::dh_generate(g, self.rng.as_mut()) else {
                return;
            };
            let Ok(s) = crypto::dh_agree(dh, kd) else {
                return self.send_response(
                    sa,
                    exchange::CREATE_CHILD_SA,
                    mid,
                    &[Payload::notify(notify::INVALID_SYNTAX, vec![])],
                );
            };
            shared = Some(s);
            ke_out = Some(Payload::Ke {
                group: g,
                data: pubv,
            });
        }
        let nr = self.nonce();
        let spi_in = self.new_child_spi();
        let Some(c) = self.make_child(
            sa,
            &sel.cfg,
            sel.esp,
            spi_in,
            sel.spi_out,
            sel.ts_local.clone(),
            sel.ts_remote.clone(),
            sel.mode,
            &ni,
            &nr,
            shared.as_deref(),
            false,
        ) else {
            return self.send_response(
                sa,
                exchange::CREATE_CHILD_SA,
                mid,
                &[Payload::notify(notify::NO_PROPOSAL_CHOSEN, vec![])],
            );
        };
        let mut out = vec![chosen_esp_payload(&sel, spi_in), Payload::Nonce(nr.clone())];
        out.extend(ke_out);
        out.push(Payload::TsI(sel.ts_remote.clone()));
        out.push(Payload::TsR(sel.ts_local.clone()));
        if sel.mode == Mode::Transport {
            out.push(Payload::notify(notify::USE_TRANSPORT_MODE, vec![]));
        }
        self.send_response(sa, exchange::CREATE_CHILD_SA, mid, &out);
        if let Some((old_in, _)) = &old {
            let ours_in_flight = matches!(&sa.outstanding, Some(Outstanding { pending: Pending::CreateChild { child, .. }, .. }) if child.rekey_of == Some(*old_in));
            if ours_in_flight {
                let low = if ni <= nr { ni.clone() } else { nr.clone() };
                if let Some(x) = sa.children.iter_mut().find(|x| x.sa.spi_in == *old_in) {
                    x.collision = Some((spi_in, low));
                }
            }
        }
        self.install_child(
            now,
            sa,
            c,
            sel.esp,
            sel.cfg.rekey_time,
            old.map(|o| o.0),
            false,
        );
        self.emit_record(sa);
    }

    /// Responder: rekey of the IKE SA itself (§1.3.2). The requester becomes the
    /// initiator of the new IKE SA; Child SAs move to it; the old one waits for the
    /// requester's DELETE.
    pub(super) fn handle_rekey_ike_request(
        &mut self,
        now: Instant,
        sa: &mut IkeSa,
        mid: u32,
        p: &[Payload],
        ni: Vec<u8>,
        pc: &PeerConfig,
    ) {
        //= https://www.rfc-editor.org/rfc/rfc7296#section-2.25
        //# A peer that receives a request to rekey [...] SHOULD reply with
        //# TEMPORARY_FAILURE
        // We answer TEMPORARY_FAILURE while our own rekey (of the IKE SA or of a
        // Child SA) is in flight: the IKE SA must not move under an exchange that
        // is still running. Our side retries after a random delay, so two plexgate
        // peers do not collide forever; strongSwan resolves its own side.
        if matches!(
            sa.outstanding.as_ref().map(|o| &o.pending),
            Some(Pending::RekeyIke { .. } | Pending::CreateChild { .. })
        ) {
            let n = Payload::notify(notify::TEMPORARY_FAILURE, vec![]);
            return self.send_response(sa, exchange::CREATE_CHILD_SA, mid, &[n]);
        }
        let props = sa_of(p).cloned().unwrap_or_default();
        let ke = ke_of(p);
        let acceptable: Vec<(IkeProposal, &Proposal)> = pc
            .ike_proposals
            .iter()
            .filter_map(|ip| {
                props
                    .iter()
                    .find(|pr| ip.offered_by(pr) && pr.spi.len() == 8)
                    .map(|pr| (*ip, pr))
            })
            .collect();
        let Some((kg, kd)) = ke else {
            return self.send_response(
                sa,
                exchange::CREATE_CHILD_SA,
                mid,
                &[Payload::notify(notify::INVALID_SYNTAX, vec![])],
            );
        };
        let Some(&(chosen, pr)) = acceptable
            .iter()
            .find(|(ip, _)| ip.dh == kg)
            .or(acceptable.first())
        else {
            return self.send_response(
                sa,
                exchange::CREATE_CHILD_SA,
                mid,
                &[Payload::notify(notify::NO_PROPOSAL_CHOSEN, vec![])],
            );
        };
        if chosen.dh != kg {
            let n = Payload::notify(notify::INVALID_KE_PAYLOAD, chosen.dh.to_be_bytes().to_vec());
            return self.send_response(sa, exchange::CREATE_CHILD_SA, mid, &[n]);
        }
        let (Some(suite), Some(old_suite), Some(old_keys)) =
            (suite_of(&chosen), sa.suite, sa.keys.as_ref())
        else {
            return;
        };
        let Ok((dh, pubv)) = crypto::dh_generate(kg, self.rng.as_mut()) else {
            return;
        };
        let Ok(shared) = crypto::dh_agree(dh, kd) else {
            return;
        };
        let mut spi_i_b = [0u8; 8];
        spi_i_b.copy_from_slice(pr.spi.get(..8).unwrap_or(&[0; 8]));
        let new_spi_i = u64::from_be_bytes(spi_i_b);
        let new_spi_r = self.new_ike_spi();
        let nr = self.nonce();
        let seed = crypto::skeyseed_rekey(old_suite.prf, &old_keys.sk_d, &shared, &ni, &nr);
        let keys = crypto::derive_ike_keys(&suite, &seed, &ni, &nr, new_spi_i, new_spi_r);
        let out = vec![
            Payload::Sa(vec![Proposal {
                num: pr.num,
                protocol: protocol::IKE,
                spi: new_spi_r.to_be_bytes().to_vec(),
                transforms: chosen.transforms(),
                unknown_attribute: false,
            }]),
            Payload::Nonce(nr.clone()),
            Payload::Ke {
                group: kg,
                data: pubv,
            },
        ];
        self.send_response(sa, exchange::CREATE_CHILD_SA, mid, &out);
        let mut new = IkeSa::new(IkeSaId(new_spi_r), false, sa.local, sa.remote);
        self.adopt(
            now, sa, &mut new, new_spi_i, new_spi_r, chosen, suite, keys, ni, nr,
        );
    }

    /// Move everything from `old` to the rekeyed `new` SA and report it.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn adopt(
        &mut self,
        now: Instant,
        old: &mut IkeSa,
        new: &mut IkeSa,
        spi_i: u64,
        spi_r: u64,
        prop: IkeProposal,
        suite: IkeSuite,
        keys: IkeKeys,
        ni: Vec<u8>,
        nr: Vec<u8>,
    ) {
        new.spi_i = spi_i;
        new.spi_r = spi_r;
        new.peer = old.peer.clone();
        new.nat_local = old.nat_local;
        new.nat_remote = old.nat_remote;
        new.proposal = Some(prop);
        new.suite = Some(suite);
        new.keys = Some(keys);
        new.ni = ni;
        new.nr = nr;
        new.local_id = old.local_id.clone();
        new.remote_id = old.remote_id.clone();
        new.state = SaState::Established;
        new.children = std::mem::take(&mut old.children);
        for c in &new.children {
            self.child_index.insert(c.sa.spi_in, new.id);
        }
        // Pending work other than the rekey itself follows the new SA.
        new.queue = std::mem::take(&mut old.queue)
            .into_iter()
            .filter(|t| !matches!(t, Task::RekeyIke | Task::DeleteIke))
            .collect();
        if let Some(pc) = new.peer.clone() {
            let jitter = pc.rand_time.min(pc.rekey_time / 2);
            new.rekey_at = Some(self.jittered(now, pc.rekey_time, jitter));
            new.dpd_at = pc.dpd.map(|d| now + d);
        }
        old.state = if old.outstanding.is_some() || !old.queue.is_empty() {
            SaState::Deleting
        } else {
            SaState::Rekeyed
        };
        old.rekey_at = None;
        old.dpd_at = None;
        old.expire_at = Some(now + Duration::from_secs(60));
        if let Some(record) = new.record() {
            self.events.push_back(Event::IkeSaRekeyed {
                old: old.id,
                new: new.id,
                record: record.clone(),
            });
            self.events.push_back(Event::RecordRemoved { id: old.id });
            self.events
                .push_back(Event::RecordUpdated { id: new.id, record });
            // From the daemon's point of view the old SA is gone now (its DELETE
            // exchange still runs inside the engine, silently).
            self.events.push_back(Event::IkeSaDeleted {
                id: old.id,
                reason: format!("rekeyed, replaced by {}", new.id),
            });
        }
        let taken = IkeSa::new(new.id, new.initiator, new.local, new.remote);
        let n = std::mem::replace(new, taken);
        self.put(n);
    }

    /// Initiator: CREATE_CHILD_SA response for a new or rekeyed Child SA.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn handle_create_child_response(
        &mut self,
        now: Instant,
        sa: &mut IkeSa,
        p: &[Payload],
        child: ChildReq,
        spi_in: u32,
        ni: Vec<u8>,
        dh: Option<DhPrivate>,
    ) {
        if let Some(n) = find_notify(p, notify::INVALID_KE_PAYLOAD) {
            let g = n.data.get(..2).map(|b| u16::from_be_bytes([b[0], b[1]]));
            if let Some(g) = g.filter(|g| {
                dh.is_some() && child.cfg.esp_proposals.iter().any(|e| e.dh == Some(*g))
            }) {
                let mut c = child;
                c.cfg.esp_proposals.sort_by_key(|e| e.dh != Some(g));
                return self.start_create_child(now, sa, c);
            }
        }
        let Some(nr) = nonce_of(p).cloned() else {
            let reason = error_notify(p)
                .map(|n| format!("peer sent {}", notify_name(n.kind)))
                .unwrap_or_else(|| "no nonce in response".into());
            self.events.push_back(Event::ChildSaFailed {
                ike: sa.id,
                name: child.cfg.name.clone(),
                reason,
            });
            return self.after_failed_rekey(sa, child.rekey_of);
        };
        let shared = match (dh, ke_of(p)) {
            (Some(d), Some((_, kd))) => match crypto::dh_agree(d, kd) {
                Ok(s) => Some(s),
                Err(_) => return,
            },
            _ => None,
        };
        let before = sa.children.len();
        let rekey_of = child.rekey_of;
        self.finish_child_initiator(now, sa, p, child, spi_in, &ni, &nr, shared.as_deref());
        if sa.children.len() == before {
            return self.after_failed_rekey(sa, rekey_of);
        }
        self.resolve_collision(sa, rekey_of, &ni, &nr);
        self.emit_record(sa);
    }

    pub(super) fn after_failed_rekey(&mut self, sa: &mut IkeSa, rekey_of: Option<u32>) {
        // Retry the rekey later rather than letting the SA expire silently.
        if let Some(c) = rekey_of.and_then(|s| sa.children.iter_mut().find(|c| c.sa.spi_in == s)) {
            if !c.rekeyed {
                c.rekey_at = None;
            }
        }
    }

    /// Simultaneous Child SA rekey (§2.8.1): when the peer also rekeyed the same
    /// SA, the new SA created with the lowest of the four nonces is redundant and is
    /// deleted by whoever initiated it.
    //= https://www.rfc-editor.org/rfc/rfc7296#section-2.8.1
    //# the SA created with the lowest of the four nonces used in the two
    //# exchanges SHOULD be deleted by the endpoint that created it.
    pub(super) fn resolve_collision(
        &mut self,
        sa: &mut IkeSa,
        rekey_of: Option<u32>,
        ni: &[u8],
        nr: &[u8],
    ) {
        let Some(old_in) = rekey_of else { return };
        let Some(old) = sa.children.iter_mut().find(|c| c.sa.spi_in == old_in) else {
            return;
        };
        let Some((_theirs, their_low)) = old.collision.take() else {
            return;
        };
        let our_low = if ni <= nr { ni } else { nr };
        if our_low < their_low.as_slice() {
            // Our new SA is the redundant one: delete it instead of the old SA
            // (the peer won and deletes the old one).
            let Some(ours) = sa.children.last().map(|c| c.sa.spi_in) else {
                return;
            };
            sa.queue
                .retain(|t| !matches!(t, Task::DeleteChild(s) if *s == old_in));
            if let Some(c) = sa.children.last_mut() {
                c.rekeyed = true;
                c.rekey_at = None;
            }
            sa.queue.push_front(Task::DeleteChild(ours));
        }
        // Otherwise the peer deletes the SA it created and we delete the old one
        // (already queued by install_child).
    }

    /// Initiator: IKE SA rekey response.
    pub(super) fn handle_rekey_ike_response(
        &mut self,
        now: Instant,
        sa: &mut IkeSa,
        p: &[Payload],
        new_spi: u64,
        ni: Vec<u8>,
        dh: Option<DhPrivate>,
    ) {
        let Some(pc) = sa.peer.clone() else { return };
        let chosen = match sa_of(p).map(|v| v.as_slice()) {
            Some([one]) if one.spi.len() == 8 => {
                IkeProposal::from_chosen(one).map(|c| (c, one.spi.clone()))
            }
            _ => None,
        };
        let (Some((chosen, spi_r)), Some(nr), Some((kg, kd)), Some(dh)) =
            (chosen, nonce_of(p), ke_of(p), dh)
        else {
            // Failed (e.g. NO_PROPOSAL_CHOSEN): keep the old SA, try again later.
            sa.rekey_at =
                Some(self.jittered(now, Duration::from_secs(30), Duration::from_secs(25)));
            return;
        };
        if !pc.ike_proposals.contains(&chosen) || chosen.dh != kg {
            sa.rekey_at =
                Some(self.jittered(now, Duration::from_secs(30), Duration::from_secs(25)));
            return;
        }
        let (Some(suite), Some(old_suite), Some(old_keys)) =
            (suite_of(&chosen), sa.suite, sa.keys.as_ref())
        else {
            return;
        };
        let Ok(shared) = crypto::dh_agree(dh, kd) else {
            return;
        };
        let mut b = [0u8; 8];
        b.copy_from_slice(&spi_r[..8]);
        let new_spi_r = u64::from_be_bytes(b);
        let seed = crypto::skeyseed_rekey(old_suite.prf, &old_keys.sk_d, &shared, &ni, nr);
        let keys = crypto::derive_ike_keys(&suite, &seed, &ni, nr, new_spi, new_spi_r);
        let nr = nr.clone();
        let mut new = IkeSa::new(IkeSaId(new_spi), true, sa.local, sa.remote);
        self.adopt(
            now, sa, &mut new, new_spi, new_spi_r, chosen, suite, keys, ni, nr,
        );
        //= https://www.rfc-editor.org/rfc/rfc7296#section-1.3.2
        //# After the new equivalent IKE SA is created, the initiator deletes the
        //# old IKE SA
        self.send_request(
            now,
            sa,
            exchange::INFORMATIONAL,
            &[Payload::Delete(Delete {
                protocol: protocol::IKE,
                spis: vec![],
            })],
            Pending::DeleteIke,
        );
        sa.state = SaState::Deleting;
    }
}
