//! IKE_AUTH (RFC 7296 §1.2, §2.15): PSK or certificate authentication and the
//! first Child SA, with traffic selector narrowing (§2.9); both roles.

use super::*;

impl Endpoint {
    /// Build a Child SA from negotiated parameters. `initiator`: our role in the
    /// exchange that created it (decides which KEYMAT half is inbound).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn make_child(
        &mut self,
        sa: &IkeSa,
        cfg: &ChildConfig,
        esp: EspProposal,
        spi_in: u32,
        spi_out: u32,
        ts_local: Vec<TrafficSelector>,
        ts_remote: Vec<TrafficSelector>,
        mode: Mode,
        ni: &[u8],
        nr: &[u8],
        shared: Option<&[u8]>,
        initiator: bool,
    ) -> Option<ChildSa> {
        let suite = sa.suite?;
        let keys = sa.keys.as_ref()?;
        let el = crypto::esp_encr_key_len(esp.encr, esp.encr_bits)?;
        let il = crypto::esp_integ_key_len(esp.integ)?;
        let ck = crypto::derive_child_keys(suite.prf, &keys.sk_d, shared, ni, nr, el, il);
        let (keys_in, keys_out) = if initiator {
            (ck.r_to_i, ck.i_to_r)
        } else {
            (ck.i_to_r, ck.r_to_i)
        };
        Some(ChildSa {
            name: cfg.name.clone(),
            spi_in,
            spi_out,
            protocol: 50,
            encr: esp.encr,
            encr_key_bits: if esp.encr == crypto::encr_id::CHACHA20_POLY1305 {
                256
            } else {
                esp.encr_bits
            },
            integ: esp.integ,
            esn: esp.esn,
            keys_in,
            keys_out,
            ts_local,
            ts_remote,
            local: sa.local,
            remote: sa.remote,
            udp_encap: sa.udp_encap(),
            mode,
            lifetime: cfg.life_time,
        })
    }

    pub(super) fn add_child(
        &mut self,
        now: Instant,
        sa: &mut IkeSa,
        child: ChildSa,
        esp: EspProposal,
        rekey_time: Duration,
    ) {
        let jitter = sa
            .peer
            .as_ref()
            .map_or(Duration::ZERO, |p| p.rand_time.min(rekey_time / 2));
        let rekey_at = Some(self.jittered(now, rekey_time, jitter));
        self.child_index.insert(child.spi_in, sa.id);
        sa.children.push(Child {
            sa: child,
            proposal: esp,
            rekey_at,
            rekeyed: false,
            collision: None,
        });
    }

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
        if pc.initial_contact {
            p.push(Payload::notify(notify::INITIAL_CONTACT, vec![]));
        }
        if pc.remote_id.0 != "%any" {
            p.push(Payload::IdR(pc.remote_id.to_wire()));
        }
        p.push(auth);
        let child = sa.first_child.take().map(|req| {
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
        let idi = p.iter().find_map(|x| {
            if let Payload::IdI(i) = x {
                Some(i)
            } else {
                None
            }
        });
        let idr = p.iter().find_map(|x| {
            if let Payload::IdR(i) = x {
                Some(i)
            } else {
                None
            }
        });
        let has_auth = p.iter().any(|x| matches!(x, Payload::Auth { .. }));
        let (Some(idi), true) = (idi, has_auth) else {
            // EAP and other methods are not supported.
            return self.auth_failed(
                sa,
                mid,
                None,
                "IKE_AUTH without IDi/AUTH (EAP is not supported)",
            );
        };
        let remote_ip = sa.remote.ip();
        // The first peer config whose identities and address fit (several may share
        //  `%any`: the PSK or certificate check decides among those in order).
        let candidates: Vec<Arc<PeerConfig>> = self
            .peers
            .iter()
            .filter(|pc| {
                pc.remote_id.matches(idi)
                    && idr.is_none_or(|r| pc.local_id.to_wire() == *r)
                    && pc.remote_addr.is_none_or(|a| a.ip() == remote_ip)
            })
            .cloned()
            .collect();
        if candidates.is_empty() {
            let reason = format!("no peer config matches identity '{idi}'");
            return self.auth_failed(sa, mid, Some(idi.to_string()), &reason);
        }
        let Some(suite) = sa.suite else { return };
        let Some(keys) = sa.keys.as_ref() else { return };
        //= https://www.rfc-editor.org/rfc/rfc7296#section-2.15
        //# InitiatorSignedOctets = RealMessage1 | NonceRData | MACedIDForI
        let octets =
            crypto::signed_octets(suite.prf, &sa.init_req, &sa.nr, &keys.sk_pi, &idi.body());
        let wall = self.wall_time(now);
        let mut failure = String::new();
        let mut chosen = None;
        for pc in candidates {
            match check_auth(&pc, suite.prf, &octets, idi, p, wall) {
                Ok(()) => {
                    chosen = Some(pc);
                    break;
                }
                Err(e) if failure.is_empty() => failure = e,
                Err(_) => {}
            }
        }
        let Some(pc) = chosen else {
            return self.auth_failed(sa, mid, Some(idi.to_string()), &failure);
        };
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
        let mut up_child = None;
        if sa_of(p).is_some() {
            match select_child(&pc, p, None, None) {
                Ok(sel) => {
                    let spi_in = self.new_child_spi();
                    let (ni, nr) = (sa.ni.clone(), sa.nr.clone());
                    let made = self.make_child(
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
                        None,
                        false,
                    );
                    if let Some(c) = made {
                        out.push(chosen_esp_payload(&sel, spi_in));
                        out.push(Payload::TsI(sel.ts_remote.clone()));
                        out.push(Payload::TsR(sel.ts_local.clone()));
                        if sel.mode == Mode::Transport {
                            out.push(Payload::notify(notify::USE_TRANSPORT_MODE, vec![]));
                        }
                        up_child = Some((c, sel.esp, sel.cfg.rekey_time));
                    }
                }
                Err(n) => {
                    out.push(Payload::notify(n, vec![]));
                    self.events.push_back(Event::ChildSaFailed {
                        ike: sa.id,
                        name: String::new(),
                        reason: format!("we answered {}", notify_name(n)),
                    });
                }
            }
        }
        self.send_response(sa, exchange::IKE_AUTH, mid, &out);
        let initial_contact = find_notify(p, notify::INITIAL_CONTACT).is_some();
        self.established(now, sa, initial_contact);
        if let Some((c, esp, rt)) = up_child {
            self.events.push_back(Event::ChildSaUp {
                ike: sa.id,
                child: c.clone(),
            });
            self.add_child(now, sa, c, esp, rt);
        }
        self.emit_record(sa);
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
        self.init_index.retain(|_, v| *v != sa.id);
        let Some(pc) = sa.peer.clone() else { return };
        let jitter = pc.rand_time.min(pc.rekey_time / 2);
        sa.rekey_at = Some(self.jittered(now, pc.rekey_time, jitter));
        sa.dpd_at = pc.dpd.map(|d| now + d);
        if let Some(record) = sa.record() {
            self.events.push_back(Event::IkeSaUp { id: sa.id, record });
        }
        if initial_contact {
            //= https://www.rfc-editor.org/rfc/rfc7296#section-2.4
            //# the receiver MAY delete any other IKE SAs it has with the same
            //# authenticated identities
            let ids: Vec<IkeSaId> = self
                .sas
                .values()
                .filter(|o| {
                    o.id != sa.id
                        && o.state == SaState::Established
                        && o.remote_id == sa.remote_id
                        && o.local_id == sa.local_id
                })
                .map(|o| o.id)
                .collect();
            for id in ids {
                if let Some(old) = self.take(id) {
                    self.destroy(old, "replaced by a new IKE SA (INITIAL_CONTACT)", true);
                }
            }
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
        let verdict = if pc.remote_id.matches(idr) {
            check_auth(&pc, suite.prf, &octets, idr, p, self.wall_time(now))
        } else {
            Err(format!(
                "peer identified as '{idr}', expected '{}'",
                pc.remote_id.0
            ))
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
            self.finish_child_initiator(now, sa, p, req, spi_in, &ni, &nr, None);
        }
        self.emit_record(sa);
    }

    /// Initiator: read the Child SA part of an IKE_AUTH or CREATE_CHILD_SA response.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn finish_child_initiator(
        &mut self,
        now: Instant,
        sa: &mut IkeSa,
        p: &[Payload],
        req: ChildReq,
        spi_in: u32,
        ni: &[u8],
        nr: &[u8],
        shared: Option<&[u8]>,
    ) {
        let fail = |s: &mut Self, reason: String| {
            s.events.push_back(Event::ChildSaFailed {
                ike: sa.id,
                name: req.cfg.name.clone(),
                reason,
            });
        };
        if let Some(n) = error_notify(p) {
            return fail(self, format!("peer sent {}", notify_name(n.kind)));
        }
        let chosen = match sa_of(p).map(|v| v.as_slice()) {
            Some([one]) => EspProposal::from_chosen(one).map(|e| (e, one)),
            _ => None,
        };
        let Some((mut esp, prop)) = chosen else {
            return fail(self, "no usable ESP proposal in response".into());
        };
        let offered = req.cfg.esp_proposals.iter().any(|o| {
            let mut o = *o;
            if shared.is_none() {
                o.dh = None;
            }
            o == esp
        });
        if !offered {
            return fail(self, "peer chose an ESP proposal we did not offer".into());
        }
        if shared.is_none() {
            esp.dh = None;
        }
        let spi_out = prop
            .spi
            .get(..4)
            .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
            .unwrap_or(0);
        let (Some(tsi), Some(tsr)) = ts_of(p) else {
            return fail(self, "response without TSi/TSr".into());
        };
        let sub = |a: &[TrafficSelector], b: &[TrafficSelector]| {
            !a.is_empty() && a.iter().all(|t| b.iter().any(|o| t.is_subset_of(o)))
        };
        if !sub(tsi, &req.cfg.local_ts) || !sub(tsr, &req.cfg.remote_ts) {
            return fail(self, "peer widened the traffic selectors".into());
        }
        let transport = find_notify(p, notify::USE_TRANSPORT_MODE).is_some();
        let mode = if transport && req.cfg.mode == Mode::Transport {
            Mode::Transport
        } else {
            Mode::Tunnel
        };
        let Some(c) = self.make_child(
            sa,
            &req.cfg,
            esp,
            spi_in,
            spi_out,
            tsi.clone(),
            tsr.clone(),
            mode,
            ni,
            nr,
            shared,
            true,
        ) else {
            return fail(self, "unsupported ESP transform".into());
        };
        self.install_child(now, sa, c, esp, req.cfg.rekey_time, req.rekey_of, true);
    }

    /// Report and store a new Child SA; for a rekey, mark the old one and, as the
    /// initiator of the rekey, queue its deletion (§1.3.3).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn install_child(
        &mut self,
        now: Instant,
        sa: &mut IkeSa,
        c: ChildSa,
        esp: EspProposal,
        rekey_time: Duration,
        rekey_of: Option<u32>,
        we_initiated: bool,
    ) {
        let old = rekey_of.and_then(|spi| sa.children.iter_mut().find(|x| x.sa.spi_in == spi));
        match old {
            Some(old) => {
                old.rekeyed = true;
                old.rekey_at = None;
                self.events.push_back(Event::ChildSaRekeyed {
                    ike: sa.id,
                    old_spi_in: old.sa.spi_in,
                    old_spi_out: old.sa.spi_out,
                    new: c.clone(),
                });
                if we_initiated {
                    sa.queue.push_front(Task::DeleteChild(old.sa.spi_in));
                }
            }
            None => self.events.push_back(Event::ChildSaUp {
                ike: sa.id,
                child: c.clone(),
            }),
        }
        self.add_child(now, sa, c, esp, rekey_time);
    }
}
