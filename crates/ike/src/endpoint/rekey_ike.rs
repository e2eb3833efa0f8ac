//! CREATE_CHILD_SA rekeying the IKE SA itself (§1.3.2, §2.18), both roles: the new
//! SA adopts the Child SAs of the old one.

use super::*;

impl Endpoint {
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
