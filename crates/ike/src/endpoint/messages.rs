//! Sending and receiving protected messages: sealing and opening the SK payload,
//! requests with their retransmission state, cached responses (§2.1), plain replies
//! to IKE_SA_INIT, and the entry point [`Endpoint::handle`].

use super::*;

impl Endpoint {
    pub(super) fn seal(
        &mut self,
        sa: &IkeSa,
        header: &Header,
        payloads: &[Payload],
    ) -> Option<Vec<u8>> {
        let mut inner = Vec::with_capacity(256);
        let first = crate::message::emit_payloads(payloads, &mut inner);
        let suite = sa.suite?;
        let (ke, ka) = sa.out_keys()?;
        let c = SkCipher {
            suite: &suite,
            key_e: ke,
            key_a: ka,
        };
        c.seal(header, first, &inner, self.rng.as_mut()).ok()
    }

    pub(super) fn open(sa: &IkeSa, data: &[u8], msg: &Message) -> Opened {
        let (first, body_len) = match &msg.payloads[..] {
            [.., Payload::Sk { inner_first, body }] => (*inner_first, body.len()),
            _ => return Opened::Drop,
        };
        let (Some(suite), Some((ke, ka))) = (sa.suite, sa.in_keys()) else {
            return Opened::Drop;
        };
        let c = SkCipher {
            suite: &suite,
            key_e: ke,
            key_a: ka,
        };
        let Ok(inner) = c.open(data, body_len) else {
            return Opened::Drop;
        };
        match crate::message::parse_payloads(first, &inner) {
            Ok(p) => Opened::Payloads(p),
            Err(ParseError::UnsupportedCritical(t)) => Opened::Critical(t),
            Err(e) => Opened::Invalid(e),
        }
    }

    pub(super) fn send_request(
        &mut self,
        now: Instant,
        sa: &mut IkeSa,
        exch: u8,
        payloads: &[Payload],
        pending: Pending,
    ) {
        let mid = sa.my_mid;
        let header = sa.header(exch, mid, false);
        let Some(bytes) = self.seal(sa, &header, payloads) else {
            return;
        };
        sa.my_mid = sa.my_mid.wrapping_add(1);
        self.transmits.push_back(Transmit {
            local: sa.local,
            remote: sa.remote,
            payload: bytes.clone(),
        });
        sa.outstanding = Some(Outstanding {
            mid,
            bytes,
            tries: 0,
            next: now + self.retransmit_wait(sa, 0),
            pending,
        });
    }

    pub(super) fn send_response(
        &mut self,
        sa: &mut IkeSa,
        exch: u8,
        mid: u32,
        payloads: &[Payload],
    ) {
        let header = sa.header(exch, mid, true);
        let Some(bytes) = self.seal(sa, &header, payloads) else {
            return;
        };
        let (local, remote) = sa.reply_to;
        self.transmits.push_back(Transmit {
            local,
            remote,
            payload: bytes.clone(),
        });
        sa.last_response = Some((mid, bytes));
    }

    /// A response holding one notify without data (an error, usually).
    pub(super) fn answer_notify(&mut self, sa: &mut IkeSa, exch: u8, mid: u32, kind: u16) {
        self.send_response(sa, exch, mid, &[Payload::notify(kind, vec![])]);
    }

    /// An unencrypted, stateless reply to an IKE_SA_INIT request (§2.6, §1.2).
    pub(super) fn reply_plain(
        &mut self,
        local: SocketAddr,
        remote: SocketAddr,
        req: &Header,
        payloads: Vec<Payload>,
    ) {
        let m = Message {
            header: Header {
                spi_i: req.spi_i,
                spi_r: 0,
                next_payload: 0,
                version: 0x20,
                exchange: req.exchange,
                flags: flags::RESPONSE,
                message_id: req.message_id,
                length: 0,
            },
            payloads,
        };
        self.transmits.push_back(Transmit {
            local,
            remote,
            payload: m.emit(),
        });
    }

    /// A datagram arrived (IKE bytes only: the non-ESP marker already removed).
    /// Malformed, unauthenticated or unexpected input is dropped (and answered with an
    /// error notify where RFC 7296 asks for one); it never panics.
    pub fn handle(&mut self, now: Instant, local: SocketAddr, remote: SocketAddr, data: &[u8]) {
        let header = match Header::parse(data) {
            Ok(h) => h,
            // IKEv1 (major version 1, RFC 2409) is dropped: say so, strongSwan
            // users meet it with `keyexchange=ikev1` or an old client.
            Err(ParseError::InvalidMajorVersion(1)) => {
                return self.events.push_back(Event::Refused {
                    remote,
                    peer: None,
                    reason: "IKEv1 is not supported (this gateway speaks IKEv2 only)".into(),
                });
            }
            Err(_) => return,
        };
        if header.exchange == exchange::IKE_SA_INIT && !header.is_response() && header.spi_r == 0 {
            return self.handle_init_request(now, local, remote, &header, data);
        }
        // Our SPI is the one of the side we play in this SA.
        let ours = if header.from_initiator() {
            header.spi_r
        } else {
            header.spi_i
        };
        let Some(&id) = self.spi_index.get(&ours) else {
            return;
        };
        let Some(mut sa) = self.take(id) else {
            return;
        };
        let consistent = sa.initiator != header.from_initiator()
            && sa.spi_i == header.spi_i
            && (sa.spi_r == header.spi_r
                || (sa.state == SaState::InitSent && header.exchange == exchange::IKE_SA_INIT));
        if !consistent {
            return self.put(sa);
        }
        if header.is_response() {
            self.handle_response(now, &mut sa, local, remote, &header, data);
        } else {
            self.handle_request(now, &mut sa, local, remote, &header, data);
        }
        self.finish(now, sa);
    }

    /// Put an SA back, or destroy it when it asked to be; start queued tasks.
    pub(super) fn finish(&mut self, now: Instant, mut sa: IkeSa) {
        if sa.state == SaState::Deleting && sa.outstanding.is_none() && sa.queue.is_empty() {
            return self.destroy(sa, "deleted", false);
        }
        if sa.state == SaState::Established && sa.outstanding.is_none() {
            self.start_next_task(now, &mut sa);
        }
        self.put(sa);
    }
}
