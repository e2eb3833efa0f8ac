//! CREATE_CHILD_SA for Child SAs (§1.3.1 new, §1.3.3 rekey), both roles, with
//! simultaneous rekey resolution (§2.8.1).

use super::*;

/// The peer rekeyed `old_in` while our own rekey of it is in flight (§2.8.1): remember
/// the SA its exchange created and the lowest nonce of that exchange.
fn note_collision(sa: &mut IkeSa, old_in: u32, spi_in: u32, ni: &[u8], nr: &[u8]) {
    let ours_in_flight = matches!(&sa.outstanding, Some(Outstanding { pending: Pending::CreateChild { child, .. }, .. }) if child.rekey_of == Some(old_in));
    if ours_in_flight {
        let low = if ni <= nr { ni } else { nr };
        if let Some(x) = sa.children.iter_mut().find(|x| x.sa.spi_in == old_in) {
            x.collision = Some((spi_in, low.to_vec()));
        }
    }
}

impl Endpoint {
    /// Responder: CREATE_CHILD_SA (§1.3).
    pub(super) fn handle_create_child_request(
        &mut self,
        now: Instant,
        sa: &mut IkeSa,
        mid: u32,
        p: &[Payload],
    ) {
        let Some(pc) = sa.peer.clone() else { return };
        let prf = sa.suite.map(|s| s.prf);
        let Some(ni) = nonce_of(p)
            .filter(|n| prf.is_some_and(|f| nonce_ok(f, n)))
            .cloned()
        else {
            return self.answer_notify(sa, exchange::CREATE_CHILD_SA, mid, notify::INVALID_SYNTAX);
        };
        let is_ike = sa_of(p).is_some_and(|v| v.iter().any(|x| x.protocol == protocol::IKE));
        if is_ike {
            return self.handle_rekey_ike_request(now, sa, mid, p, ni, &pc);
        }
        let old = match self.rekey_target(sa, p) {
            Ok(old) => old,
            Err(n) => return self.send_response(sa, exchange::CREATE_CHILD_SA, mid, &[n]),
        };
        let ke = ke_of(p);
        let ctx = SelectCtx {
            pfs: Pfs::Ke(ke.map(|k| k.0)),
            only: old.as_ref().map(|o| o.1.as_str()),
            support: &self.esp_support,
            peer_ip: sa.remote.ip(),
        };
        let sel = select_child(&pc, p, &ctx).and_then(|sel| self.check_ts_conflict(sa, sel));
        let sel = match sel {
            Ok(s) => s,
            Err(r) => {
                let name = ctx.only.unwrap_or_default().to_string();
                self.child_failed(sa, &name, format!("refused: {}", r.reason));
                return self.send_response(sa, exchange::CREATE_CHILD_SA, mid, &[r.payload()]);
            }
        };
        let (shared, ke_out) = match self.child_key_exchange(&sel, ke) {
            Ok(x) => x,
            Err(Some(n)) => return self.send_response(sa, exchange::CREATE_CHILD_SA, mid, &[n]),
            Err(None) => return,
        };
        let nr = self.nonce();
        let spi_in = self.new_child_spi();
        let keying = ChildKeying {
            ni: &ni,
            nr: &nr,
            shared: shared.as_ref().map(|s| s.as_slice()),
            initiator: false,
        };
        let Some(c) = self.make_child(sa, &sel, spi_in, keying) else {
            return self.answer_notify(
                sa,
                exchange::CREATE_CHILD_SA,
                mid,
                notify::NO_PROPOSAL_CHOSEN,
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
            note_collision(sa, *old_in, spi_in, &ni, &nr);
        }
        let rekey_time = sel.cfg.rekey_time;
        self.install_child(now, sa, c, sel.esp, rekey_time, old.map(|o| o.0), false);
        self.emit_record(sa);
    }

    /// The Child SA a CREATE_CHILD_SA request rekeys (REKEY_SA, §1.3.3): its inbound SPI
    /// and config name, None for a new Child SA. The error is the notify to answer.
    fn rekey_target(&self, sa: &IkeSa, p: &[Payload]) -> Result<Option<(u32, String)>, Payload> {
        let rekey = find_notify(p, notify::REKEY_SA).and_then(|n| {
            n.spi
                .get(..4)
                .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
        });
        let max = self.config.limits.max_child_sas;
        //= https://www.rfc-editor.org/rfc/rfc7296#section-3.10.1
        //# NO_ADDITIONAL_SAS [...] indicates that the CREATE_CHILD_SA request
        //# is unacceptable because the responder is unwilling to accept any
        //# more Child SAs on this IKE SA.
        // Rekeys count too: a rekey holds the old and the new SA until the old one's
        // DELETE, so it may go up to twice the limit, and no further (a peer that
        // rekeys without ever deleting cannot grow the IKE SA without bound).
        let limit = if rekey.is_some() {
            max.saturating_mul(2)
        } else {
            max
        };
        if sa.children.len() >= limit {
            return Err(Payload::notify(notify::NO_ADDITIONAL_SAS, vec![]));
        }
        let Some(spi_out) = rekey else {
            return Ok(None);
        };
        // REKEY_SA names the SPI the requester receives on: our outbound SPI.
        match sa.children.iter().find(|c| c.sa.spi_out == spi_out) {
            //= https://www.rfc-editor.org/rfc/rfc7296#section-2.25
            //# A peer that receives a request to rekey a Child SA that it is
            //# currently trying to close SHOULD reply with TEMPORARY_FAILURE.
            Some(c) if c.rekeyed || sa.deleting_child(c.sa.spi_in) => {
                Err(Payload::notify(notify::TEMPORARY_FAILURE, vec![]))
            }
            Some(c) => Ok(Some((c.sa.spi_in, c.sa.name.clone()))),
            //= https://www.rfc-editor.org/rfc/rfc7296#section-2.25
            //# the responder [...] replies with CHILD_SA_NOT_FOUND
            None => Err(Payload::Notify(Notify {
                protocol: protocol::ESP,
                spi: spi_out.to_be_bytes().to_vec(),
                kind: notify::CHILD_SA_NOT_FOUND,
                data: vec![],
            })),
        }
    }

    /// The responder's side of a PFS key exchange: (g^ir, our KE payload), or the
    /// notify to answer (None: drop the request).
    #[allow(clippy::type_complexity)]
    fn child_key_exchange(
        &mut self,
        sel: &Selected,
        ke: Option<(u16, &Vec<u8>)>,
    ) -> Result<(Option<Zeroizing<Vec<u8>>>, Option<Payload>), Option<Payload>> {
        let (Some(g), Some((kg, kd))) = (sel.esp.dh, ke) else {
            return Ok((None, None));
        };
        if g != kg {
            let data = g.to_be_bytes().to_vec();
            return Err(Some(Payload::notify(notify::INVALID_KE_PAYLOAD, data)));
        }
        let (dh, pubv) = crypto::dh_generate(g, self.rng.as_mut()).map_err(|_| None)?;
        let shared = crypto::dh_agree(dh, kd)
            .map_err(|_| Some(Payload::notify(notify::INVALID_SYNTAX, vec![])))?;
        Ok((
            Some(shared),
            Some(Payload::Ke {
                group: g,
                data: pubv,
            }),
        ))
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
        if let (Some(old), Some(_)) = (child.rekey_of, find_notify(p, notify::CHILD_SA_NOT_FOUND)) {
            return self.child_not_found(sa, old, &child.cfg.name);
        }
        let prf = sa.suite.map(|s| s.prf);
        let nr = nonce_of(p).filter(|n| prf.is_some_and(|f| nonce_ok(f, n)));
        let Some(nr) = nr.cloned() else {
            let reason = error_notify(p)
                .map(|n| format!("peer sent {}", notify_name(n.kind)))
                .unwrap_or_else(|| "no nonce in response".into());
            self.child_failed(sa, &child.cfg.name, reason);
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
        let keying = ChildKeying {
            ni: &ni,
            nr: &nr,
            shared: shared.as_ref().map(|s| s.as_slice()),
            initiator: true,
        };
        self.finish_child_initiator(now, sa, p, child, spi_in, keying);
        if sa.children.len() == before {
            return self.after_failed_rekey(sa, rekey_of);
        }
        self.resolve_collision(sa, rekey_of, &ni, &nr);
        self.emit_record(sa);
    }

    /// The peer does not know the Child SA we tried to rekey.
    //= https://www.rfc-editor.org/rfc/rfc7296#section-2.25
    //# A peer that receives a CHILD_SA_NOT_FOUND notification SHOULD silently
    //# delete the Child SA (if it still exists) and send a request to create
    //# a new Child SA from scratch (if the Child SA does not yet exist).
    fn child_not_found(&mut self, sa: &mut IkeSa, old_in: u32, name: &str) {
        if self.remove_child(sa, old_in).is_some() {
            sa.queue.retain(
                |t| !matches!(t, Task::DeleteChild(s) | Task::RekeyChild(s) if *s == old_in),
            );
            self.emit_record(sa);
        }
        let wanted = sa.peer.as_ref().and_then(|pc| {
            pc.children
                .iter()
                .find(|c| c.name == name && c.start_action != StartAction::None)
                .cloned()
        });
        // Another Child SA of that config (e.g. made by the peer meanwhile) will do.
        let exists = sa.children.iter().any(|c| c.sa.name == name && !c.rekeyed);
        if let (Some(cfg), false) = (wanted, exists) {
            sa.queue.push_back(Task::CreateChild(ChildReq {
                cfg,
                rekey_of: None,
            }));
        }
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
}
