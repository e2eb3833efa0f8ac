//! IKE_SA_INIT (RFC 7296 §1.2): proposals, KE, nonces, NAT detection (§2.23),
//! COOKIE (§2.6), INVALID_KE_PAYLOAD retries; both roles.

use super::*;

impl Endpoint {
    /// Start an IKE SA (and its first Child SA `child`) with a configured peer: on
    /// command or on an SPD PROTECT miss (acquire).
    pub fn initiate(&mut self, now: Instant, peer: &str, child: &str) -> Result<IkeSaId, Error> {
        let pc = self
            .peers
            .iter()
            .find(|p| p.name == peer)
            .cloned()
            .ok_or_else(|| Error::UnknownPeer(peer.into()))?;
        let cfg = pc
            .children
            .iter()
            .find(|c| c.name == child)
            .cloned()
            .ok_or_else(|| Error::UnknownChild {
                peer: peer.into(),
                child: child.into(),
            })?;
        let (Some(remote), Some(local)) = (pc.remote_addr, pc.local_addr) else {
            return Err(Error::NoAddress(peer.into()));
        };
        self.start_initiator(
            now,
            pc,
            local,
            remote,
            ChildReq {
                cfg,
                rekey_of: None,
            },
            Vec::new(),
        )
    }

    /// Takeover: renegotiate an IKE SA and all its Child SAs as initiator from a
    /// recovery record (same peer, addresses/NAT-T ports, selectors and mode; the PSK
    /// and proposals come from our config). The first child rides in IKE_AUTH, the
    /// others follow as CREATE_CHILD_SA. INITIAL_CONTACT (when configured) tells the
    /// peer to drop the SAs it still holds with the failed gateway.
    pub fn initiate_from_record(
        &mut self,
        now: Instant,
        rec: &IkeRecord,
    ) -> Result<IkeSaId, Error> {
        let pc = self
            .peers
            .iter()
            .find(|p| p.name == rec.peer)
            .cloned()
            .ok_or_else(|| Error::UnknownPeer(rec.peer.clone()))?;
        let mut reqs = Vec::new();
        for c in &rec.children {
            let mut cfg = pc
                .children
                .iter()
                .find(|x| x.name == c.name)
                .cloned()
                .ok_or_else(|| Error::UnknownChild {
                    peer: rec.peer.clone(),
                    child: c.name.clone(),
                })?;
            cfg.local_ts = c.ts_local.clone();
            cfg.remote_ts = c.ts_remote.clone();
            cfg.mode = c.mode;
            // Prefer the proposal that was in use.
            cfg.esp_proposals.retain(|p| *p != c.proposal);
            cfg.esp_proposals.insert(0, c.proposal);
            reqs.push(ChildReq {
                cfg,
                rekey_of: None,
            });
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
        ike.ike_proposals.retain(|p| *p != rec.proposal);
        ike.ike_proposals.insert(0, rec.proposal);
        let remote = if rec.nat_local || rec.nat_remote {
            SocketAddr::new(rec.remote.ip(), rec.remote.port())
        } else {
            rec.remote
        };
        self.start_initiator(now, Arc::new(ike), rec.local, remote, first, rest.collect())
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
        let spi = self.new_ike_spi();
        let mut sa = IkeSa::new(IkeSaId(spi), true, local, remote);
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
            next: now + self.config.limits.retransmit_base,
            pending: Pending::Init,
        });
        Ok(())
    }

    pub(super) fn cookie_for(
        &self,
        secret: &[u8; 32],
        version: u8,
        ni: &[u8],
        remote: SocketAddr,
        spi_i: u64,
    ) -> Vec<u8> {
        //= https://www.rfc-editor.org/rfc/rfc7296#section-2.6
        //# Cookie = <VersionIDofSecret> | Hash(Ni | IPi | SPIi | <secret>)
        let prf = Prf::from_id(crypto::prf_id::HMAC_SHA2_256).map(|p| {
            let ip = match remote.ip() {
                std::net::IpAddr::V4(a) => a.octets().to_vec(),
                std::net::IpAddr::V6(a) => a.octets().to_vec(),
            };
            p.prf(secret, &[ni, &ip, &spi_i.to_be_bytes()])
        });
        let mut c = vec![version];
        c.extend_from_slice(prf.as_deref().unwrap_or(&[]).get(..16).unwrap_or(&[]));
        c
    }

    pub(super) fn cookie_ok(
        &self,
        cookie: &[u8],
        ni: &[u8],
        remote: SocketAddr,
        spi_i: u64,
    ) -> bool {
        let Some(&v) = cookie.first() else {
            return false;
        };
        let secret = if v == self.cookie.version {
            &self.cookie.secret
        } else if v == self.cookie.version.wrapping_sub(1) {
            &self.cookie.prev
        } else {
            return false;
        };
        self.cookie_for(secret, v, ni, remote, spi_i) == cookie
    }

    /// Responder: IKE_SA_INIT request (§1.2).
    pub(super) fn handle_init_request(
        &mut self,
        now: Instant,
        local: SocketAddr,
        remote: SocketAddr,
        header: &Header,
        data: &[u8],
    ) {
        if header.message_id != 0 {
            return;
        }
        // A retransmitted request: answer from the cache (§2.1).
        if let Some(id) = self.init_index.get(&(remote, header.spi_i)) {
            if let Some(sa) = self.sas.get(id) {
                if sa.init_req == data {
                    self.transmits.push_back(Transmit {
                        local,
                        remote,
                        payload: sa.init_resp.clone(),
                    });
                }
            }
            return;
        }
        let msg = match Message::parse(data) {
            Ok(m) => m,
            Err(ParseError::UnsupportedCritical(t)) => {
                return self.reply_plain(
                    local,
                    remote,
                    header,
                    vec![Payload::notify(
                        notify::UNSUPPORTED_CRITICAL_PAYLOAD,
                        vec![t],
                    )],
                );
            }
            Err(_) => return,
        };
        let p = &msg.payloads;
        let (Some(props), Some((group, ke)), Some(ni)) = (sa_of(p), ke_of(p), nonce_of(p)) else {
            return self.reply_plain(
                local,
                remote,
                header,
                vec![Payload::notify(notify::INVALID_SYNTAX, vec![])],
            );
        };
        let limits = &self.config.limits;
        let max_half_open = limits.max_half_open;
        if self.init_index.len() >= limits.cookie_threshold {
            match self.cookie.rotate_at {
                None => self.cookie.rotate_at = Some(now + COOKIE_ROTATE),
                Some(t) if t <= now => self.rotate_cookie_secret(now),
                Some(_) => {}
            }
            let ok = match p.first() {
                Some(Payload::Notify(n)) if n.kind == notify::COOKIE => {
                    self.cookie_ok(&n.data, ni, remote, header.spi_i)
                }
                _ => false,
            };
            if !ok {
                let c = self.cookie_for(
                    &self.cookie.secret.clone(),
                    self.cookie.version,
                    ni,
                    remote,
                    header.spi_i,
                );
                return self.reply_plain(
                    local,
                    remote,
                    header,
                    vec![Payload::notify(notify::COOKIE, c)],
                );
            }
        }
        // Memory bound: beyond the cap even requests with a valid cookie are dropped.
        if self.init_index.len() >= max_half_open {
            return;
        }
        // Candidate peers by address; proposals in our order of preference,
        // preferring one whose group matches the KE already sent.
        let candidates: Vec<IkeProposal> = self
            .peers
            .iter()
            .filter(|pc| pc.remote_addr.is_none_or(|a| a.ip() == remote.ip()))
            .flat_map(|pc| pc.ike_proposals.iter().copied())
            .filter(|ip| suite_of(ip).is_some())
            .collect();
        let acceptable: Vec<(IkeProposal, u8)> = candidates
            .iter()
            .filter_map(|ip| {
                props
                    .iter()
                    .find(|pr| ip.offered_by(pr))
                    .map(|pr| (*ip, pr.num))
            })
            .collect();
        let Some(&(chosen, num)) = acceptable
            .iter()
            .find(|(ip, _)| ip.dh == group)
            .or(acceptable.first())
        else {
            return self.reply_plain(
                local,
                remote,
                header,
                vec![Payload::notify(notify::NO_PROPOSAL_CHOSEN, vec![])],
            );
        };
        if chosen.dh != group {
            //= https://www.rfc-editor.org/rfc/rfc7296#section-1.2
            //# the responder MUST reject the request and indicate its preferred
            //# Diffie-Hellman group in the INVALID_KE_PAYLOAD Notify payload.
            return self.reply_plain(
                local,
                remote,
                header,
                vec![Payload::notify(
                    notify::INVALID_KE_PAYLOAD,
                    chosen.dh.to_be_bytes().to_vec(),
                )],
            );
        }
        let Some(suite) = suite_of(&chosen) else {
            return;
        };
        let Ok((dh, ke_r)) = crypto::dh_generate(group, self.rng.as_mut()) else {
            return;
        };
        let Ok(shared) = crypto::dh_agree(dh, ke) else {
            return self.reply_plain(
                local,
                remote,
                header,
                vec![Payload::notify(notify::INVALID_SYNTAX, vec![])],
            );
        };
        let spi_r = self.new_ike_spi();
        let nr = self.nonce();
        let mut sa = IkeSa::new(IkeSaId(spi_r), false, local, remote);
        sa.spi_i = header.spi_i;
        sa.spi_r = spi_r;
        sa.state = SaState::HalfOpen;
        sa.proposal = Some(chosen);
        sa.suite = Some(suite);
        let seed = crypto::skeyseed(suite.prf, ni, &nr, &shared);
        sa.keys = Some(crypto::derive_ike_keys(
            &suite, &seed, ni, &nr, sa.spi_i, spi_r,
        ));
        sa.ni = ni.clone();
        sa.nr = nr.clone();
        sa.init_req = data.to_vec();
        sa.peer_mid = 1;
        sa.expire_at = Some(now + self.config.limits.half_open_timeout);
        let nat = detect_nat(p, sa.spi_i, 0, local, remote);
        if let Some((l, r)) = nat {
            sa.nat_local = l;
            sa.nat_remote = r;
        }
        let mut out = vec![
            Payload::Sa(vec![Proposal {
                num,
                protocol: protocol::IKE,
                spi: Vec::new(),
                transforms: chosen.transforms(),
                unknown_attribute: false,
            }]),
            Payload::Ke { group, data: ke_r },
            Payload::Nonce(nr),
        ];
        if nat.is_some() {
            out.extend(natd_payloads(sa.spi_i, spi_r, local, remote));
        }
        sa.peer_hashes = peer_hashes(p);
        let cert_trust = self
            .peers
            .iter()
            .filter(|pc| pc.remote_addr.is_none_or(|a| a.ip() == remote.ip()))
            .find_map(|pc| match &pc.auth {
                AuthConfig::Cert { trust, .. } => Some(trust.clone()),
                AuthConfig::Psk(_) => None,
            });
        if let Some(trust) = cert_trust {
            //= https://www.rfc-editor.org/rfc/rfc7427#section-4
            //# the responder [...] MUST send its Notify payload
            //# SIGNATURE_HASH_ALGORITHMS [...] in the IKE_SA_INIT response
            out.push(hash_algorithms_notify());
            out.push(Payload::CertReq {
                encoding: plexgate_pki::CERT_ENCODING_X509_SIGNATURE,
                data: trust.certreq_data(),
            });
        }
        let m = Message {
            header: sa.header(exchange::IKE_SA_INIT, 0, true),
            payloads: out,
        };
        let bytes = m.emit();
        sa.init_resp = bytes.clone();
        self.transmits.push_back(Transmit {
            local,
            remote,
            payload: bytes,
        });
        self.init_index.insert((remote, sa.spi_i), sa.id);
        self.put(sa);
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
        if let Some(n) = find_notify(p, notify::COOKIE) {
            if sa.cookie.is_none() && !n.data.is_empty() && n.data.len() <= 64 {
                sa.cookie = Some(n.data.clone());
                let _ = self.send_init(now, sa);
            }
            return;
        }
        if let Some(n) = find_notify(p, notify::INVALID_KE_PAYLOAD) {
            let Some(pc) = sa.peer.clone() else { return };
            let g = n.data.get(..2).map(|b| u16::from_be_bytes([b[0], b[1]]));
            //= https://www.rfc-editor.org/rfc/rfc7296#section-1.2
            //# the initiator [...] MUST retry with the corrected group
            if let Some(g) =
                g.filter(|g| *g != sa.dh_group && pc.ike_proposals.iter().any(|p| p.dh == *g))
            {
                sa.dh_group = g;
                let _ = self.send_init(now, sa);
                return;
            }
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
        if let Some((l, r)) = detect_nat(p, sa.spi_i, sa.spi_r, local, remote) {
            sa.nat_local = l;
            sa.nat_remote = r;
        }
        //= https://www.rfc-editor.org/rfc/rfc7296#section-2.23
        //# If a NAT is detected, both devices MUST use port 4500 for all
        //# subsequent exchanges
        if sa.nat_local || sa.nat_remote {
            sa.local.set_port(4500);
            sa.remote.set_port(4500);
        }
        sa.outstanding = None;
        self.send_auth(now, sa);
    }

    /// Give up on an SA during setup (it is destroyed by `finish`).
    pub(super) fn fail(&mut self, sa: &mut IkeSa, reason: &str) {
        if let Some(first) = sa.first_child.take() {
            self.events.push_back(Event::ChildSaFailed {
                ike: sa.id,
                name: first.cfg.name,
                reason: reason.to_string(),
            });
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
