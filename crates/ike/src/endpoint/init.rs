//! IKE_SA_INIT (RFC 7296 §1.2): proposals, KE, nonces, NAT detection (§2.23),
//! COOKIE (§2.6), INVALID_KE_PAYLOAD retries; both roles.

use super::*;

impl Endpoint {
    /// Start a Child SA of config `child` (the peer's first child in config order when
    /// None) with a configured peer: on command or on an SPD PROTECT miss (acquire).
    /// When an IKE SA with that peer exists (established or still being set up), the
    /// Child SA is negotiated inside it with CREATE_CHILD_SA and that IKE SA's id is
    /// returned; when such a Child SA is already up or on its way, nothing more
    /// happens. Otherwise a new IKE SA starts, with the Child SA in its IKE_AUTH.
    pub fn initiate<'a>(
        &mut self,
        now: Instant,
        peer: &str,
        child: impl Into<Option<&'a str>>,
    ) -> Result<IkeSaId, Error> {
        let pc = self
            .peers
            .iter()
            .find(|p| p.name == peer)
            .cloned()
            .ok_or_else(|| Error::UnknownPeer(peer.into()))?;
        let child = child.into();
        let cfg = pc
            .children
            .iter()
            .find(|c| child.is_none_or(|n| c.name == n))
            .cloned()
            .ok_or_else(|| Error::UnknownChild {
                peer: peer.into(),
                child: child.unwrap_or_default().into(),
            })?;
        installable(&cfg, &self.esp_support).map_err(|_| Error::NotInstallable {
            peer: peer.into(),
            child: cfg.name.clone(),
        })?;
        if let Some(id) = self.ike_sa_with(peer) {
            return self.with_sa(now, id, |_, sa| {
                if !sa.has_child(&cfg.name) {
                    sa.queue.push_back(Task::CreateChild(ChildReq {
                        cfg,
                        rekey_of: None,
                    }));
                }
                Ok(id)
            });
        }
        self.initiate_ike_sa(now, pc, cfg)
    }

    /// A new IKE SA with peer `pc` and the Child SA `cfg` in its IKE_AUTH.
    pub(crate) fn initiate_ike_sa(
        &mut self,
        now: Instant,
        pc: Arc<PeerConfig>,
        cfg: ChildConfig,
    ) -> Result<IkeSaId, Error> {
        let (Some(remote), Some(local)) = (pc.remote_addr, pc.local_addr) else {
            return Err(Error::NoAddress(pc.name.clone()));
        };
        let req = ChildReq {
            cfg,
            rekey_of: None,
        };
        self.start_initiator(now, pc, local, remote, req, Vec::new())
    }

    /// An IKE SA with peer config `peer` that is up or being set up by us, the
    /// established one first.
    fn ike_sa_with(&self, peer: &str) -> Option<IkeSaId> {
        let usable = |s: &&IkeSa| {
            s.peer.as_ref().is_some_and(|p| p.name == peer)
                && matches!(
                    s.state,
                    SaState::Established | SaState::InitSent | SaState::AuthSent
                )
        };
        let mut v: Vec<&IkeSa> = self.sas.values().filter(usable).collect();
        v.sort_by_key(|s| (s.state != SaState::Established, s.id));
        v.first().map(|s| s.id)
    }

    /// Takeover: renegotiate an IKE SA and all its Child SAs as initiator from a
    /// recovery record written by another gateway. The IKE_SA_INIT goes to the
    /// recorded address and port (the peer's NAT mapping on port 4500, from our port
    /// 4500, when NAT was detected: the daemon adds the non-ESP marker) with the
    /// recorded IKE proposal first; IKE_AUTH carries the recorded identities (they
    /// must match the peer config: the peer must prove the very identity recorded),
    /// INITIAL_CONTACT (so that the peer drops what it still holds with the failed
    /// gateway, RFC 7296 §2.4) and the first recorded Child SA with its recorded ESP
    /// proposal first and its narrowed selectors; the other Child SAs follow by
    /// CREATE_CHILD_SA. Secrets and proposals come from our own config only.
    pub fn initiate_recovered(&mut self, now: Instant, rec: &IkeRecord) -> Result<IkeSaId, Error> {
        let pc = self
            .peers
            .iter()
            .find(|p| p.name == rec.peer)
            .cloned()
            .ok_or_else(|| Error::UnknownPeer(rec.peer.clone()))?;
        let mismatch = |what: String| Error::RecordMismatch {
            peer: rec.peer.clone(),
            what,
        };
        if pc.local_id.to_wire() != rec.local_id {
            return Err(mismatch(format!("our identity '{}'", rec.local_id)));
        }
        if !pc.remote_id.matches(&rec.remote_id) {
            return Err(mismatch(format!("peer identity '{}'", rec.remote_id)));
        }
        let mut reqs = Vec::new();
        for c in &rec.children {
            reqs.push(recovered_child(&pc, rec, c).map_err(mismatch)?);
        }
        let mut rest = reqs.into_iter();
        let first = rest.next().or_else(|| {
            pc.children.first().cloned().map(|cfg| ChildReq {
                cfg,
                rekey_of: None,
            })
        });
        let Some(first) = first else {
            return Err(Error::UnknownChild {
                peer: rec.peer.clone(),
                child: String::new(),
            });
        };
        let mut ike = (*pc).clone();
        if ike.ike_proposals.contains(&rec.proposal) {
            ike.ike_proposals.retain(|p| *p != rec.proposal);
            ike.ike_proposals.insert(0, rec.proposal);
        }
        let id = self.start_initiator(
            now,
            Arc::new(ike),
            rec.local,
            rec.remote,
            first,
            rest.collect(),
        )?;
        if let Some(sa) = self.sas.get_mut(&id) {
            sa.recovered_remote_id = Some(rec.remote_id.clone());
        }
        Ok(id)
    }

    pub(super) fn start_initiator(
        &mut self,
        now: Instant,
        pc: Arc<PeerConfig>,
        local: SocketAddr,
        remote: SocketAddr,
        first: ChildReq,
        more: Vec<ChildReq>,
    ) -> Result<IkeSaId, Error> {
        let prop = *pc
            .ike_proposals
            .first()
            .ok_or_else(|| Error::NoProposal(pc.name.clone()))?;
        let id = self.next_id();
        let spi = self.new_ike_spi(id);
        let mut sa = IkeSa::new(id, true, local, remote);
        sa.spi_i = spi;
        sa.local_id = Some(pc.local_id.to_wire());
        sa.peer = Some(pc);
        sa.first_child = Some(first);
        sa.queue.extend(more.into_iter().map(Task::CreateChild));
        sa.dh_group = prop.dh;
        sa.ni = self.nonce();
        self.send_init(now, &mut sa)?;
        let id = sa.id;
        self.put(sa);
        Ok(id)
    }

    pub(super) fn send_init(&mut self, now: Instant, sa: &mut IkeSa) -> Result<(), Error> {
        let pc = sa.peer.clone().ok_or(Error::UnknownSa(sa.id))?;
        let (dh, ke) = crypto::dh_generate(sa.dh_group, self.rng.as_mut())?;
        sa.dh = Some(dh);
        // Proposals: ours in order; the one whose group matches the KE first.
        let mut props: Vec<IkeProposal> = pc
            .ike_proposals
            .iter()
            .filter(|p| p.dh == sa.dh_group)
            .copied()
            .collect();
        props.extend(
            pc.ike_proposals
                .iter()
                .filter(|p| p.dh != sa.dh_group)
                .copied(),
        );
        let sa_payload = Payload::Sa(
            props
                .iter()
                .enumerate()
                .map(|(i, p)| Proposal {
                    num: i as u8 + 1,
                    protocol: protocol::IKE,
                    spi: Vec::new(),
                    transforms: p.transforms(),
                    unknown_attribute: false,
                })
                .collect(),
        );
        let mut payloads = Vec::with_capacity(7);
        if let Some(c) = &sa.cookie {
            //= https://www.rfc-editor.org/rfc/rfc7296#section-2.6
            //# the initiator MUST [...] retry the IKE_SA_INIT with a Notify
            //# payload of type COOKIE containing the responder-supplied cookie
            //# data as the first payload
            payloads.push(Payload::notify(notify::COOKIE, c.clone()));
        }
        payloads.push(sa_payload);
        payloads.push(Payload::Ke {
            group: sa.dh_group,
            data: ke,
        });
        payloads.push(Payload::Nonce(sa.ni.clone()));
        payloads.extend(natd_payloads(sa.spi_i, 0, sa.local, sa.remote));
        if pc.uses_certs() {
            payloads.push(hash_algorithms_notify());
        }
        let m = Message {
            header: sa.header(exchange::IKE_SA_INIT, 0, false),
            payloads,
        };
        let bytes = m.emit();
        sa.init_req = bytes.clone();
        sa.state = SaState::InitSent;
        sa.my_mid = 1;
        self.transmits.push_back(Transmit {
            local: sa.local,
            remote: sa.remote,
            payload: bytes.clone(),
        });
        sa.outstanding = Some(Outstanding {
            mid: 0,
            bytes,
            tries: 0,
            next: now + self.retransmit_wait(sa, 0),
            pending: Pending::Init,
        });
        Ok(())
    }

    /// Initiator: IKE_SA_INIT response.
    pub(super) fn handle_init_response(
        &mut self,
        now: Instant,
        sa: &mut IkeSa,
        local: SocketAddr,
        remote: SocketAddr,
        data: &[u8],
    ) {
        let Ok(msg) = Message::parse(data) else {
            return;
        };
        let p = &msg.payloads;
        if self.init_retry(now, sa, p) {
            return;
        }
        if let Some(n) = error_notify(p) {
            let reason = format!("IKE_SA_INIT failed: peer sent {}", notify_name(n.kind));
            self.fail(sa, &reason);
            return;
        }
        let (Some(props), Some((group, ke)), Some(nr)) = (sa_of(p), ke_of(p), nonce_of(p)) else {
            return self.fail(sa, "IKE_SA_INIT response without SA, KE or Nonce");
        };
        let pc = match sa.peer.clone() {
            Some(pc) => pc,
            None => return,
        };
        let chosen = match props.as_slice() {
            [one] => IkeProposal::from_chosen(one),
            _ => None,
        };
        let Some(chosen) = chosen
            .filter(|c| pc.ike_proposals.contains(c) && c.dh == group && group == sa.dh_group)
        else {
            return self.fail(sa, "peer chose an IKE proposal we did not offer");
        };
        let Some(suite) = suite_of(&chosen) else {
            return self.fail(sa, "unsupported IKE proposal");
        };
        if !nonce_ok(suite.prf, nr) {
            return self.fail(
                sa,
                "the responder's nonce is shorter than RFC 7296 §2.10 allows",
            );
        }
        let Some(dh) = sa.dh.take() else { return };
        let Ok(shared) = crypto::dh_agree(dh, ke) else {
            return self.fail(sa, "invalid KE from peer");
        };
        sa.spi_r = msg.header.spi_r;
        sa.peer_hashes = peer_hashes(p);
        sa.nr = nr.clone();
        sa.init_resp = data.to_vec();
        sa.proposal = Some(chosen);
        sa.suite = Some(suite);
        let seed = crypto::skeyseed(suite.prf, &sa.ni, nr, &shared);
        sa.keys = Some(crypto::derive_ike_keys(
            &suite, &seed, &sa.ni, nr, sa.spi_i, sa.spi_r,
        ));
        self.log_keys(sa);
        if let Some((l, r)) = detect_nat(p, sa.spi_i, sa.spi_r, local, remote) {
            sa.nat_local = l;
            sa.nat_remote = r;
        }
        //= https://www.rfc-editor.org/rfc/rfc7296#section-2.23
        //# If a NAT is detected, both devices MUST use port 4500 for all
        //# subsequent exchanges
        // (Already on port 4500, e.g. to a peer's NAT mapping: stay where we are.)
        if (sa.nat_local || sa.nat_remote) && sa.local.port() != 4500 {
            sa.local.set_port(4500);
            sa.remote.set_port(4500);
        }
        sa.outstanding = None;
        self.send_auth(now, sa);
    }

    /// A COOKIE (§2.6) or INVALID_KE_PAYLOAD (§1.2) answer to our IKE_SA_INIT: send
    /// the request again as asked. Returns whether the response was such an answer.
    fn init_retry(&mut self, now: Instant, sa: &mut IkeSa, p: &[Payload]) -> bool {
        if let Some(n) = find_notify(p, notify::COOKIE) {
            if sa.cookie.is_none() && !n.data.is_empty() && n.data.len() <= 64 {
                sa.cookie = Some(n.data.clone());
                let _ = self.send_init(now, sa);
            }
            return true;
        }
        let Some(n) = find_notify(p, notify::INVALID_KE_PAYLOAD) else {
            return false;
        };
        let Some(pc) = sa.peer.clone() else {
            return true;
        };
        let g = n.data.get(..2).map(|b| u16::from_be_bytes([b[0], b[1]]));
        //= https://www.rfc-editor.org/rfc/rfc7296#section-1.2
        //# the initiator [...] MUST retry with the corrected group
        match g.filter(|g| *g != sa.dh_group && pc.ike_proposals.iter().any(|p| p.dh == *g)) {
            Some(g) => {
                sa.dh_group = g;
                let _ = self.send_init(now, sa);
                true
            }
            None => false,
        }
    }

    /// Give up on an SA during setup (it is destroyed by `finish`).
    pub(super) fn fail(&mut self, sa: &mut IkeSa, reason: &str) {
        if let Some(first) = sa.first_child.take() {
            self.child_failed(sa, &first.cfg.name, reason.to_string());
        }
        sa.outstanding = None;
        sa.queue.clear();
        sa.state = SaState::Deleting;
        self.events.push_back(Event::IkeSaDeleted {
            id: sa.id,
            reason: reason.to_string(),
        });
    }
}

/// The Child SA request for a recorded Child SA: its config with the recorded
/// selectors (which must lie within the config's) and mode, and the recorded ESP
/// proposal first when the config still has it. The error names the mismatch.
fn recovered_child(
    pc: &PeerConfig,
    rec: &IkeRecord,
    c: &crate::record::ChildRecord,
) -> Result<ChildReq, String> {
    let mut cfg = pc
        .children
        .iter()
        .find(|x| x.name == c.name)
        .cloned()
        .ok_or_else(|| format!("child '{}' (not in the config)", c.name))?;
    let within = |a: &[TrafficSelector], b: &[TrafficSelector]| {
        !a.is_empty() && a.iter().all(|t| b.iter().any(|o| t.is_subset_of(o)))
    };
    let remote = remote_selectors(&cfg, rec.remote.ip());
    if !within(&c.ts_local, &cfg.local_ts) || !within(&c.ts_remote, &remote) {
        return Err(format!(
            "selectors {} === {} of child '{}' (outside the config's)",
            ts_list(&c.ts_local),
            ts_list(&c.ts_remote),
            c.name
        ));
    }
    cfg.local_ts = c.ts_local.clone();
    cfg.remote_ts = c.ts_remote.clone();
    cfg.remote_dynamic.clear();
    cfg.mode = c.mode;
    // Prefer the proposal that was in use (it was negotiated without PFS, in
    // IKE_AUTH, or with the group the config has for it).
    let same = |e: &EspProposal| {
        EspProposal { dh: None, ..*e }
            == EspProposal {
                dh: None,
                ..c.proposal
            }
    };
    if let Some(i) = cfg.esp_proposals.iter().position(same) {
        let p = cfg.esp_proposals.remove(i);
        cfg.esp_proposals.insert(0, p);
    }
    Ok(ChildReq {
        cfg,
        rekey_of: None,
    })
}
