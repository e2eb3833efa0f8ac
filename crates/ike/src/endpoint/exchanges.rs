//! Dispatch of requests and responses of established SAs to their exchange, and
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
                    local,
                    remote,
                    payload: bytes.clone(),
                });
                return;
            }
        }
        if mid != sa.peer_mid || sa.state == SaState::InitSent {
            return;
        }
        sa.reply_to = (local, remote);
        let Ok(msg) = Message::parse(data) else {
            return;
        };
        let p = match Self::open(sa, data, &msg) {
            Opened::Payloads(p) => p,
            Opened::Drop => return,
            Opened::Critical(t) => {
                let n = Payload::notify(notify::UNSUPPORTED_CRITICAL_PAYLOAD, vec![t]);
                let reason = format!("unsupported critical payload {t}");
                return self.refuse_request(sa, header, n, &reason);
            }
            //= https://www.rfc-editor.org/rfc/rfc7296#section-3.10.1
            //# To avoid a DoS attack using forged messages, this status may only be
            //# returned for and in an encrypted packet if the Message ID and
            //# cryptographic checksum were valid.
            Opened::Invalid(e) => {
                let n = Payload::notify(notify::INVALID_SYNTAX, vec![]);
                return self.refuse_request(sa, header, n, &format!("malformed request: {e}"));
            }
        };
        sa.peer_mid = sa.peer_mid.wrapping_add(1);
        //= https://www.rfc-editor.org/rfc/rfc7296#section-2.23
        //# When such a validated packet is found, a host that does not support
        //# other methods of recovery such as IKEv2 Mobility and Multihoming
        //# (MOBIKE) [MOBIKE], and that is not behind a NAT, SHOULD send all
        //# packets (including retransmission packets) to the IP address and port
        //# in the validated packet
        // Only behind a NAT (which also covers the float to port 4500): without one
        // the SA's addresses stay, so that an authenticated request replayed from
        // elsewhere cannot redirect the SA (its answer still goes back where it came
        // from, §2.11). The message id check above is the replay protection.
        if sa.nat_local || sa.nat_remote {
            sa.local = local;
            sa.remote = remote;
        }
        if let Some(pc) = &sa.peer {
            sa.dpd_at = pc.dpd.map(|d| now + d);
        }
        self.dispatch_request(now, sa, header.exchange, mid, &p);
    }

    /// An authenticated request to the handler of its exchange in this SA's state.
    fn dispatch_request(
        &mut self,
        now: Instant,
        sa: &mut IkeSa,
        exch: u8,
        mid: u32,
        p: &[Payload],
    ) {
        match (exch, sa.state) {
            (exchange::IKE_AUTH, SaState::HalfOpen) => self.handle_auth_request(now, sa, mid, p),
            (exchange::CREATE_CHILD_SA, SaState::Established) => {
                self.handle_create_child_request(now, sa, mid, p)
            }
            (
                exchange::INFORMATIONAL,
                SaState::Established | SaState::Deleting | SaState::Rekeyed | SaState::AuthSent,
            ) => self.handle_informational_request(sa, mid, p),
            (exchange::CREATE_CHILD_SA, SaState::Deleting | SaState::Rekeyed) => {
                self.answer_notify(sa, exch, mid, notify::TEMPORARY_FAILURE)
            }
            _ => self.answer_notify(sa, exch, mid, notify::INVALID_SYNTAX),
        }
    }

    /// Answer an authenticated request we cannot process with the error notify `n`. A
    /// half-open SA (the request was its IKE_AUTH) is freed: nothing can follow.
    fn refuse_request(&mut self, sa: &mut IkeSa, header: &Header, n: Payload, reason: &str) {
        sa.peer_mid = sa.peer_mid.wrapping_add(1);
        self.send_response(sa, header.exchange, header.message_id, &[n]);
        if sa.state == SaState::HalfOpen {
            self.events.push_back(Event::AuthFailed {
                remote: sa.remote,
                peer_id: None,
                reason: format!("IKE_AUTH refused: {reason}"),
            });
            sa.state = SaState::Deleting;
            sa.outstanding = None;
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
            Pending::DeleteChild { spi_in } => self.child_delete_confirmed(sa, spi_in),
            Pending::DeleteIke if sa.state == SaState::Deleting => {
                // The DELETE of an SA we rekeyed: IkeSaRekeyed already said it all.
            }
            Pending::DeleteIke => self.ike_delete_confirmed(sa),
            Pending::Dpd => {}
        }
    }

    /// The peer answered our DELETE of a Child SA (§1.4.1).
    fn child_delete_confirmed(&mut self, sa: &mut IkeSa, spi_in: u32) {
        if self.remove_child(sa, spi_in).is_some() {
            self.emit_record(sa);
        }
    }

    /// The peer answered our DELETE of the IKE SA: its Child SAs and record go.
    fn ike_delete_confirmed(&mut self, sa: &mut IkeSa) {
        sa.state = SaState::Deleting;
        let id = sa.id;
        self.remove_children(sa);
        if sa.record().is_some() || sa.peer.is_some() {
            self.events.push_back(Event::RecordRemoved { id });
        }
        self.events.push_back(Event::IkeSaDeleted {
            id,
            reason: "deleted by us".into(),
        });
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
                        let found = sa.children.iter().find(|c| c.sa.spi_out == *spi);
                        let found = found.map(|c| c.sa.spi_in);
                        if let Some(c) = found.and_then(|s| self.remove_child(sa, s)) {
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
            self.remove_children(sa);
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
}
