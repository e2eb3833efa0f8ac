//! CREATE_CHILD_SA rekeying the IKE SA itself (§1.3.2, §2.18), both roles: the new
//! SA adopts the Child SAs of the old one.

use super::*;

/// The negotiated parameters and keys of the IKE SA that replaces a rekeyed one.
pub(super) struct NewIke {
    pub(super) spi_i: u64,
    pub(super) spi_r: u64,
    pub(super) proposal: IkeProposal,
    pub(super) suite: IkeSuite,
    pub(super) keys: IkeKeys,
    pub(super) ni: Vec<u8>,
    pub(super) nr: Vec<u8>,
}

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
            return self.answer_notify(
                sa,
                exchange::CREATE_CHILD_SA,
                mid,
                notify::TEMPORARY_FAILURE,
            );
        }
        let Some((kg, kd)) = ke_of(p) else {
            return self.answer_notify(sa, exchange::CREATE_CHILD_SA, mid, notify::INVALID_SYNTAX);
        };
        let props = sa_of(p).map(Vec::as_slice).unwrap_or_default();
        let (chosen, pr) = match choose_rekey_proposal(pc, props, kg) {
            Ok(x) => x,
            Err(n) => return self.send_response(sa, exchange::CREATE_CHILD_SA, mid, &[n]),
        };
        let (Some(suite), Some(old_suite), Some(old_keys)) =
            (suite_of(&chosen), sa.suite, sa.keys.as_ref())
        else {
            return;
        };
        if !nonce_ok(suite.prf, &ni) {
            return self.answer_notify(sa, exchange::CREATE_CHILD_SA, mid, notify::INVALID_SYNTAX);
        }
        let Ok((dh, pubv)) = crypto::dh_generate(kg, self.rng.as_mut()) else {
            return;
        };
        let Ok(shared) = crypto::dh_agree(dh, kd) else {
            return;
        };
        let new_spi_i = spi8_of(&pr.spi);
        let new_id = self.next_id();
        let new_spi_r = self.new_ike_spi(new_id);
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
        let new = NewIke {
            spi_i: new_spi_i,
            spi_r: new_spi_r,
            proposal: chosen,
            suite,
            keys,
            ni,
            nr,
        };
        self.adopt(now, sa, new_id, false, new);
    }

    /// Move everything from `old` to the rekeyed SA `id` made of `n`, and report it.
    pub(super) fn adopt(
        &mut self,
        now: Instant,
        old: &mut IkeSa,
        id: IkeSaId,
        initiator: bool,
        n: NewIke,
    ) {
        let mut new = IkeSa::new(id, initiator, old.local, old.remote);
        new.spi_i = n.spi_i;
        new.spi_r = n.spi_r;
        new.peer = old.peer.clone();
        new.nat_local = old.nat_local;
        new.nat_remote = old.nat_remote;
        new.proposal = Some(n.proposal);
        new.suite = Some(n.suite);
        new.keys = Some(n.keys);
        new.ni = n.ni;
        new.nr = n.nr;
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
        self.log_keys(&new);
        self.report_ike_rekeyed(old.id, &new);
        self.put(new);
    }

    fn report_ike_rekeyed(&mut self, old: IkeSaId, new: &IkeSa) {
        let Some(record) = new.record() else { return };
        self.events.push_back(Event::IkeSaRekeyed {
            old,
            new: new.id,
            record: record.clone(),
        });
        self.events.push_back(Event::RecordRemoved { id: old });
        self.events
            .push_back(Event::RecordUpdated { id: new.id, record });
        // From the daemon's point of view the old SA is gone now (its DELETE
        // exchange still runs inside the engine, silently).
        self.events.push_back(Event::IkeSaDeleted {
            id: old,
            reason: format!("rekeyed, replaced by {}", new.id),
        });
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
                IkeProposal::from_chosen(one).map(|c| (c, spi8_of(&one.spi)))
            }
            _ => None,
        };
        let usable = match (chosen, nonce_of(p), ke_of(p), dh) {
            (Some((c, spi_r)), Some(nr), Some((kg, kd)), Some(dh))
                if pc.ike_proposals.contains(&c)
                    && c.dh == kg
                    && suite_of(&c).is_some_and(|s| nonce_ok(s.prf, nr)) =>
            {
                Some((c, spi_r, nr, kd, dh))
            }
            _ => None,
        };
        let Some((chosen, new_spi_r, nr, kd, dh)) = usable else {
            // Failed (e.g. NO_PROPOSAL_CHOSEN): keep the old SA, try again later.
            if let Some(s) = sa.reserved_spi.take() {
                self.release_spi(s, sa.id);
            }
            sa.rekey_at =
                Some(self.jittered(now, Duration::from_secs(30), Duration::from_secs(25)));
            return;
        };
        let (Some(suite), Some(old_suite), Some(old_keys)) =
            (suite_of(&chosen), sa.suite, sa.keys.as_ref())
        else {
            return;
        };
        let Ok(shared) = crypto::dh_agree(dh, kd) else {
            return;
        };
        let seed = crypto::skeyseed_rekey(old_suite.prf, &old_keys.sk_d, &shared, &ni, nr);
        let keys = crypto::derive_ike_keys(&suite, &seed, &ni, nr, new_spi, new_spi_r);
        let new = NewIke {
            spi_i: new_spi,
            spi_r: new_spi_r,
            proposal: chosen,
            suite,
            keys,
            ni,
            nr: nr.clone(),
        };
        sa.reserved_spi = None;
        let new_id = self.next_id();
        self.spi_index.insert(new_spi, new_id);
        self.adopt(now, sa, new_id, true, new);
        //= https://www.rfc-editor.org/rfc/rfc7296#section-1.3.2
        //# After the new equivalent IKE SA is created, the initiator deletes the
        //# old IKE SA
        let d = Payload::Delete(Delete {
            protocol: protocol::IKE,
            spis: vec![],
        });
        self.send_request(now, sa, exchange::INFORMATIONAL, &[d], Pending::DeleteIke);
        sa.state = SaState::Deleting;
    }
}

/// The responder's choice among the proposals of an IKE SA rekey, preferring the
/// group of the KE sent. The error is the notify to answer with.
fn choose_rekey_proposal<'a>(
    pc: &PeerConfig,
    props: &'a [Proposal],
    kg: u16,
) -> Result<(IkeProposal, &'a Proposal), Payload> {
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
    let Some(&(chosen, pr)) = acceptable
        .iter()
        .find(|(ip, _)| ip.dh == kg)
        .or(acceptable.first())
    else {
        return Err(Payload::notify(notify::NO_PROPOSAL_CHOSEN, vec![]));
    };
    if chosen.dh != kg {
        let g = chosen.dh.to_be_bytes().to_vec();
        return Err(Payload::notify(notify::INVALID_KE_PAYLOAD, g));
    }
    Ok((chosen, pr))
}

/// An IKE SPI from an 8-byte SPI field (0 otherwise).
fn spi8_of(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    match b.get(..8) {
        Some(s) => {
            a.copy_from_slice(s);
            u64::from_be_bytes(a)
        }
        None => 0,
    }
}
