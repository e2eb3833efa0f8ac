//! IKE_AUTH (RFC 7296 §1.2, §2.15): PSK or certificate authentication and the
//! first Child SA, with traffic selector narrowing (§2.9); both roles.

use super::*;

impl Endpoint {
    /// Initiator: IKE_AUTH request (PSK or certificate) and the first Child SA.
    pub(super) fn send_auth(&mut self, now: Instant, sa: &mut IkeSa) {
        let Some(pc) = sa.peer.clone() else { return };
        let (Some(suite), Some(keys)) = (sa.suite, sa.keys.as_ref()) else {
            return;
        };
        let idi = pc.local_id.to_wire();
        let octets =
            crypto::signed_octets(suite.prf, &sa.init_req, &sa.nr, &keys.sk_pi, &idi.body());
        let (certs, auth) = match make_auth(&pc, suite.prf, &octets, &sa.peer_hashes) {
            Ok(x) => x,
            Err(reason) => return self.fail(sa, &reason),
        };
        let mut p = vec![Payload::IdI(idi.clone())];
        p.extend(certs);
        if let AuthConfig::Cert { trust, .. } = &pc.auth {
            //= https://www.rfc-editor.org/rfc/rfc7296#section-3.7
            //# The Certificate Request payload provides a means to request
            //# preferred certificates via IKE
            // strongSwan sends its certificate only when asked (send_cert = ifasked).
            p.push(Payload::CertReq {
                encoding: plexgate_pki::CERT_ENCODING_X509_SIGNATURE,
                data: trust.certreq_data(),
            });
        }
        //= https://www.rfc-editor.org/rfc/rfc7296#section-3.10.1
        //# This notification asserts that this IKE SA is the only IKE SA
        //# currently active between the authenticated identities.
        // Only the first IKE SA with a peer says so (a second one would make the
        // peer drop the first); a recovered one always does (the peer's SAs with the
        // dead gateway must go).
        let first = !self.sas.values().any(|o| {
            o.peer.as_ref().is_some_and(|p| p.name == pc.name) && o.state != SaState::Deleting
        });
        if (pc.initial_contact && first) || sa.recovered_remote_id.is_some() {
            p.push(Payload::notify(notify::INITIAL_CONTACT, vec![]));
        }
        if let Some(id) = &sa.recovered_remote_id {
            p.push(Payload::IdR(id.clone()));
        } else if pc.remote_id.0 != "%any" {
            p.push(Payload::IdR(pc.remote_id.to_wire()));
        }
        p.push(auth);
        let child = sa
            .first_child
            .take()
            .and_then(|req| self.installable_req(sa, req));
        let child = child.map(|req| {
            let spi_in = self.new_child_spi();
            p.push(esp_sa_payload(&req.cfg, spi_in, false));
            p.push(Payload::TsI(req.cfg.local_ts.clone()));
            p.push(Payload::TsR(req.cfg.remote_ts.clone()));
            if req.cfg.mode == Mode::Transport {
                p.push(Payload::notify(notify::USE_TRANSPORT_MODE, vec![]));
            }
            (req, spi_in)
        });
        sa.state = SaState::AuthSent;
        self.send_request(now, sa, exchange::IKE_AUTH, &p, Pending::Auth { child });
    }

    /// Responder: IKE_AUTH request.
    pub(super) fn handle_auth_request(
        &mut self,
        now: Instant,
        sa: &mut IkeSa,
        mid: u32,
        p: &[Payload],
    ) {
        let idi = p.iter().find_map(|x| match x {
            Payload::IdI(i) => Some(i),
            _ => None,
        });
        let has_auth = p.iter().any(|x| matches!(x, Payload::Auth { .. }));
        let (Some(idi), true) = (idi, has_auth) else {
            // EAP and other methods are not supported.
            let reason = "IKE_AUTH without IDi/AUTH (EAP is not supported)";
            return self.auth_failed(sa, mid, None, reason);
        };
        let (Some(suite), Some(keys)) = (sa.suite, sa.keys.as_ref()) else {
            return;
        };
        //= https://www.rfc-editor.org/rfc/rfc7296#section-2.15
        //# InitiatorSignedOctets = RealMessage1 | NonceRData | MACedIDForI
        let octets =
            crypto::signed_octets(suite.prf, &sa.init_req, &sa.nr, &keys.sk_pi, &idi.body());
        let pc = match self.authenticate_initiator(now, sa, idi, p, &octets) {
            Ok(pc) => pc,
            Err(reason) => return self.auth_failed(sa, mid, Some(idi.to_string()), &reason),
        };
        let Some(keys) = sa.keys.as_ref() else { return };
        let my_id = pc.local_id.to_wire();
        //= https://www.rfc-editor.org/rfc/rfc7296#section-2.15
        //# ResponderSignedOctets = RealMessage2 | NonceIData | MACedIDForR
        let octets_r =
            crypto::signed_octets(suite.prf, &sa.init_resp, &sa.ni, &keys.sk_pr, &my_id.body());
        let (certs, my_auth) = match make_auth(&pc, suite.prf, &octets_r, &sa.peer_hashes) {
            Ok(x) => x,
            Err(reason) => return self.auth_failed(sa, mid, Some(idi.to_string()), &reason),
        };
        sa.peer = Some(pc.clone());
        sa.local_id = Some(my_id.clone());
        sa.remote_id = Some(idi.clone());
        let mut out = vec![Payload::IdR(my_id)];
        out.extend(certs);
        out.push(my_auth);
        if wants_virtual_ip(p) {
            self.events.push_back(Event::Refused {
                remote: sa.remote,
                peer: Some(pc.name.clone()),
                reason: format!(
                    "'{idi}' asks for a virtual IP (CP CFG_REQUEST): virtual IPs are not supported yet, none is assigned"
                ),
            });
        }
        let up_child = self.responder_first_child(sa, &pc, p, &mut out);
        self.send_response(sa, exchange::IKE_AUTH, mid, &out);
        let initial_contact = find_notify(p, notify::INITIAL_CONTACT).is_some();
        self.established(now, sa, initial_contact);
        if let Some((c, esp, rt)) = up_child {
            self.events.push_back(Event::ChildSaUp {
                ike: sa.id,
                peer: sa.peer_name(),
                child: c.clone(),
            });
            self.add_child(now, sa, c, esp, rt, None);
        }
        self.emit_record(sa);
    }

    /// The peer config that authenticates the initiator: the first whose identities
    /// and address fit and whose PSK or certificate check passes (several may share
    /// `%any`: the check decides among those in order). The error is a log line.
    fn authenticate_initiator(
        &self,
        now: Instant,
        sa: &IkeSa,
        idi: &Identification,
        p: &[Payload],
        octets: &[u8],
    ) -> Result<Arc<PeerConfig>, String> {
        let idr = p.iter().find_map(|x| match x {
            Payload::IdR(i) => Some(i),
            _ => None,
        });
        let remote_ip = sa.remote.ip();
        let matching: Vec<Arc<PeerConfig>> = self
            .peers
            .iter()
            .filter(|pc| {
                pc.remote_id.matches(idi)
                    && idr.is_none_or(|r| pc.local_id.to_wire() == *r)
                    && pc.remote_addr.is_none_or(|a| a.ip() == remote_ip)
            })
            .cloned()
            .collect();
        if matching.is_empty() {
            return Err(self.no_config_reason(idi, idr, remote_ip));
        }
        // The IKE proposal was chosen before the peer was known, among all configs
        // the address allowed: the config that authenticates must accept it too.
        let Some(chosen) = sa.proposal else {
            return Err("no IKE proposal".into());
        };
        let candidates: Vec<Arc<PeerConfig>> = matching
            .iter()
            .filter(|pc| pc.ike_proposals.contains(&chosen))
            .cloned()
            .collect();
        if candidates.is_empty() {
            let names: Vec<&str> = matching.iter().map(|pc| pc.name.as_str()).collect();
            return Err(format!(
                "peer config '{}' of identity '{idi}' does not accept the IKE proposal {} chosen in IKE_SA_INIT",
                names.join("', '"),
                chosen.name()
            ));
        }
        let Some(suite) = sa.suite else {
            return Err("no IKE suite".into());
        };
        let wall = self.wall_time(now);
        let mut failure = String::new();
        for pc in candidates {
            match check_auth(&pc, suite.prf, octets, idi, p, wall) {
                Ok(()) => return Ok(pc),
                Err(e) if failure.is_empty() => failure = e,
                Err(_) => {}
            }
        }
        Err(failure)
    }

    /// Why no peer config fits an IKE_AUTH: the IDr the peer asked for, its identity
    /// or its address.
    fn no_config_reason(
        &self,
        idi: &Identification,
        idr: Option<&Identification>,
        ip: std::net::IpAddr,
    ) -> String {
        let by_id: Vec<&Arc<PeerConfig>> = self
            .peers
            .iter()
            .filter(|pc| pc.remote_id.matches(idi))
            .collect();
        let by_addr: Vec<&&Arc<PeerConfig>> = by_id
            .iter()
            .filter(|pc| pc.remote_addr.is_none_or(|a| a.ip() == ip))
            .collect();
        match (by_id.is_empty(), by_addr.is_empty(), idr) {
            (true, _, _) => format!("no peer config matches identity '{idi}'"),
            (false, true, _) => {
                format!("the peer config of identity '{idi}' does not allow address {ip}")
            }
            (false, false, Some(r)) => {
                let ours: Vec<String> = by_addr.iter().map(|pc| pc.local_id.0.clone()).collect();
                format!(
                    "the IDr requested ('{r}') is not ours ('{}') for identity '{idi}'",
                    ours.join("', '")
                )
            }
            (false, false, None) => format!("no peer config matches identity '{idi}'"),
        }
    }

    /// Responder: the first Child SA of an IKE_AUTH request, its payloads added to
    /// `out` (or the error notify when none fits; the IKE SA comes up anyway).
    fn responder_first_child(
        &mut self,
        sa: &IkeSa,
        pc: &PeerConfig,
        p: &[Payload],
        out: &mut Vec<Payload>,
    ) -> Option<(ChildSa, EspProposal, Duration)> {
        sa_of(p)?;
        let ctx = SelectCtx {
            pfs: Pfs::Auth,
            only: None,
            support: &self.esp_support,
            peer_ip: sa.remote.ip(),
        };
        let sel = select_child(pc, p, &ctx).and_then(|sel| self.check_ts_conflict(sa, sel));
        let sel = match sel {
            Ok(sel) => sel,
            Err(r) => {
                out.push(r.payload());
                self.child_failed(sa, "", format!("refused: {}", r.reason));
                return None;
            }
        };
        let spi_in = self.new_child_spi();
        let keying = ChildKeying {
            ni: &sa.ni,
            nr: &sa.nr,
            shared: None,
            initiator: false,
        };
        let c = self.make_child(sa, &sel, spi_in, keying)?;
        out.push(chosen_esp_payload(&sel, spi_in));
        out.push(Payload::TsI(sel.ts_remote.clone()));
        out.push(Payload::TsR(sel.ts_local.clone()));
        if sel.mode == Mode::Transport {
            out.push(Payload::notify(notify::USE_TRANSPORT_MODE, vec![]));
        }
        Some((c, sel.esp, sel.cfg.rekey_time))
    }

    pub(super) fn auth_failed(
        &mut self,
        sa: &mut IkeSa,
        mid: u32,
        peer_id: Option<String>,
        reason: &str,
    ) {
        //= https://www.rfc-editor.org/rfc/rfc7296#section-2.21.2
        //# If the error occurs on the responder, the notification is returned in the
        //# protected response, and is usually the only payload in that response.
        self.send_response(
            sa,
            exchange::IKE_AUTH,
            mid,
            &[Payload::notify(notify::AUTHENTICATION_FAILED, vec![])],
        );
        self.events.push_back(Event::AuthFailed {
            remote: sa.remote,
            peer_id,
            reason: reason.to_string(),
        });
        sa.state = SaState::Deleting;
        sa.outstanding = None;
    }

    /// Common to both roles once IKE_AUTH succeeded.
    pub(super) fn established(&mut self, now: Instant, sa: &mut IkeSa, initial_contact: bool) {
        sa.state = SaState::Established;
        sa.expire_at = None;
        sa.init_req = Vec::new();
        sa.init_resp = Vec::new();
        if let Some(k) = sa.init_key.take() {
            self.init_index.remove(&k);
        }
        let Some(pc) = sa.peer.clone() else { return };
        let jitter = pc.rand_time.min(pc.rekey_time / 2);
        sa.rekey_at = Some(self.jittered(now, pc.rekey_time, jitter));
        sa.dpd_at = pc.dpd.map(|d| now + d);
        if let Some(record) = sa.record() {
            self.events.push_back(Event::IkeSaUp { id: sa.id, record });
        }
        if initial_contact {
            self.initial_contact(sa);
        }
    }

    /// Initiator: IKE_AUTH response.
    pub(super) fn handle_auth_response(
        &mut self,
        now: Instant,
        sa: &mut IkeSa,
        p: &[Payload],
        child: Option<(ChildReq, u32)>,
    ) {
        let Some(pc) = sa.peer.clone() else { return };
        if find_notify(p, notify::AUTHENTICATION_FAILED).is_some() {
            self.events.push_back(Event::AuthFailed {
                remote: sa.remote,
                peer_id: Some(pc.remote_id.0.clone()),
                reason: "peer sent AUTHENTICATION_FAILED (PSK, certificate or identity rejected by the peer)".into(),
            });
            return self.fail(sa, "authentication failed");
        }
        let idr = p.iter().find_map(|x| {
            if let Payload::IdR(i) = x {
                Some(i)
            } else {
                None
            }
        });
        let Some(idr) = idr else {
            let e = error_notify(p)
                .map(|n| notify_name(n.kind))
                .unwrap_or_else(|| "no IDr".into());
            self.events.push_back(Event::AuthFailed {
                remote: sa.remote,
                peer_id: None,
                reason: format!("IKE_AUTH response unusable: {e}"),
            });
            return self.fail(sa, "authentication failed");
        };
        let (Some(suite), Some(keys)) = (sa.suite, sa.keys.as_ref()) else {
            return;
        };
        let octets =
            crypto::signed_octets(suite.prf, &sa.init_resp, &sa.ni, &keys.sk_pr, &idr.body());
        let expected = sa.recovered_remote_id.as_ref().is_none_or(|r| r == idr);
        let verdict = if pc.remote_id.matches(idr) && expected {
            check_auth(&pc, suite.prf, &octets, idr, p, self.wall_time(now))
        } else {
            let want = sa.recovered_remote_id.as_ref();
            let want = want.map_or_else(|| pc.remote_id.0.clone(), |r| r.to_string());
            Err(format!("peer identified as '{idr}', expected '{want}'"))
        };
        if let Err(reason) = verdict {
            self.events.push_back(Event::AuthFailed {
                remote: sa.remote,
                peer_id: Some(idr.to_string()),
                reason: reason.clone(),
            });
            return self.fail(sa, &reason);
        }
        sa.remote_id = Some(idr.clone());
        self.established(now, sa, false);
        if let Some((req, spi_in)) = child {
            let (ni, nr) = (sa.ni.clone(), sa.nr.clone());
            let keying = ChildKeying {
                ni: &ni,
                nr: &nr,
                shared: None,
                initiator: true,
            };
            self.finish_child_initiator(now, sa, p, req, spi_in, keying);
        }
        self.emit_record(sa);
    }
}

/// Does an IKE_AUTH request carry a configuration request (a virtual IP, DNS)?
//= https://www.rfc-editor.org/rfc/rfc7296#section-3.15
//# CFG_REQUEST            1
fn wants_virtual_ip(p: &[Payload]) -> bool {
    p.iter()
        .any(|x| matches!(x, Payload::Cp { cfg_type: 1, .. }))
}
