//! IKE_SA_INIT as responder (RFC 7296 §1.2): a retransmitted request is answered
//! from the cache (§2.1), the COOKIE gate (§2.6) and the half-open cap come first,
//! then the proposal choice (with INVALID_KE_PAYLOAD, §1.2), the key exchange, NAT
//! detection (§2.23) and the half-open SA.

use super::*;

/// The proposal the responder chose in IKE_SA_INIT and its number in the request.
struct InitChoice {
    proposal: IkeProposal,
    suite: IkeSuite,
    num: u8,
}

impl Endpoint {
    /// Responder: IKE_SA_INIT request (§1.2).
    pub(super) fn handle_init_request(
        &mut self,
        now: Instant,
        local: SocketAddr,
        remote: SocketAddr,
        header: &Header,
        data: &[u8],
    ) {
        if header.message_id != 0 || self.init_retransmit(local, remote, header, data) {
            return;
        }
        // Memory bound: a half-open SA keeps the request (its AUTH signs it).
        if data.len() > self.config.limits.max_init_request {
            return;
        }
        let msg = match Message::parse(data) {
            Ok(m) => m,
            Err(ParseError::UnsupportedCritical(t)) => {
                let n = Payload::notify(notify::UNSUPPORTED_CRITICAL_PAYLOAD, vec![t]);
                return self.reply_plain(local, remote, header, vec![n]);
            }
            Err(_) => return,
        };
        let p = &msg.payloads;
        let (Some(props), Some((group, ke)), Some(ni)) = (sa_of(p), ke_of(p), nonce_of(p)) else {
            let n = Payload::notify(notify::INVALID_SYNTAX, vec![]);
            return self.reply_plain(local, remote, header, vec![n]);
        };
        if !self.cookie_gate(now, local, remote, header, p, ni) {
            return;
        }
        // Memory bound: beyond the cap even requests with a valid cookie are dropped.
        if self.init_index.len() >= self.config.limits.max_half_open {
            return;
        }
        let choice = match self.choose_ike_proposal(remote, props, group) {
            Ok(c) => c,
            Err(n) => return self.reply_plain(local, remote, header, vec![n]),
        };
        if !nonce_ok(choice.suite.prf, ni) {
            let n = Payload::notify(notify::INVALID_SYNTAX, vec![]);
            return self.reply_plain(local, remote, header, vec![n]);
        }
        let Ok((dh, ke_r)) = crypto::dh_generate(group, self.rng.as_mut()) else {
            return;
        };
        let Ok(shared) = crypto::dh_agree(dh, ke) else {
            let n = Payload::notify(notify::INVALID_SYNTAX, vec![]);
            return self.reply_plain(local, remote, header, vec![n]);
        };
        let mut sa = self.half_open_sa(now, local, remote, header, &choice, ni, &shared);
        self.log_keys(&sa);
        sa.init_req = data.to_vec();
        let nat = detect_nat(p, sa.spi_i, 0, local, remote);
        if let Some((l, r)) = nat {
            sa.nat_local = l;
            sa.nat_remote = r;
        }
        sa.peer_hashes = peer_hashes(p);
        let mut out = init_response_payloads(&sa, &choice, group, ke_r);
        if nat.is_some() {
            out.extend(natd_payloads(sa.spi_i, sa.spi_r, local, remote));
        }
        out.extend(self.init_cert_payloads(remote));
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
        sa.init_key = Some((remote, sa.spi_i));
        self.put(sa);
    }

    /// A retransmitted IKE_SA_INIT request of a half-open SA: answer from the cache
    /// (§2.1). Returns whether the request belonged to a known SA.
    fn init_retransmit(
        &mut self,
        local: SocketAddr,
        remote: SocketAddr,
        header: &Header,
        data: &[u8],
    ) -> bool {
        let Some(id) = self.init_index.get(&(remote, header.spi_i)) else {
            return false;
        };
        if let Some(sa) = self.sas.get(id) {
            if sa.init_req == data {
                self.transmits.push_back(Transmit {
                    local,
                    remote,
                    payload: sa.init_resp.clone(),
                });
            }
        }
        true
    }

    /// Our IKE proposal among those of the peers that may be at `remote`, in our order
    /// of preference, preferring one whose group matches the KE already sent. The
    /// error is the notify to answer with.
    fn choose_ike_proposal(
        &mut self,
        remote: SocketAddr,
        props: &[Proposal],
        group: u16,
    ) -> Result<InitChoice, Payload> {
        let acceptable: Vec<(IkeProposal, u8)> = self
            .peers
            .iter()
            .filter(|pc| pc.remote_addr.is_none_or(|a| a.ip() == remote.ip()))
            .flat_map(|pc| pc.ike_proposals.iter().copied())
            .filter(|ip| suite_of(ip).is_some())
            .filter_map(|ip| {
                props
                    .iter()
                    .find(|pr| ip.offered_by(pr))
                    .map(|pr| (ip, pr.num))
            })
            .collect();
        let Some(&(chosen, num)) = acceptable
            .iter()
            .find(|(ip, _)| ip.dh == group)
            .or(acceptable.first())
        else {
            let reason = self.ike_refusal(remote, props);
            self.events.push_back(Event::Refused {
                remote,
                peer: None,
                reason,
            });
            return Err(Payload::notify(notify::NO_PROPOSAL_CHOSEN, vec![]));
        };
        if chosen.dh != group {
            //= https://www.rfc-editor.org/rfc/rfc7296#section-1.2
            //# the responder MUST reject the request and indicate its preferred
            //# Diffie-Hellman group in the INVALID_KE_PAYLOAD Notify payload.
            let g = chosen.dh.to_be_bytes().to_vec();
            return Err(Payload::notify(notify::INVALID_KE_PAYLOAD, g));
        }
        let suite =
            suite_of(&chosen).ok_or_else(|| Payload::notify(notify::NO_PROPOSAL_CHOSEN, vec![]))?;
        Ok(InitChoice {
            proposal: chosen,
            suite,
            num,
        })
    }

    /// Why no IKE proposal was acceptable: what was received and what is configured.
    fn ike_refusal(&self, remote: SocketAddr, props: &[Proposal]) -> String {
        let configured: Vec<String> = self
            .peers
            .iter()
            .filter(|pc| pc.remote_addr.is_none_or(|a| a.ip() == remote.ip()))
            .flat_map(|pc| pc.ike_proposals.iter().map(|p| format!("IKE:{}", p.name())))
            .collect();
        format!(
            "no acceptable IKE proposal: received {}, configured {}",
            describe_proposals(props),
            if configured.is_empty() {
                format!("none for {}", remote.ip())
            } else {
                configured.join(", ")
            }
        )
    }

    /// A new half-open responder SA with its keys derived (§2.14).
    #[allow(clippy::too_many_arguments)]
    fn half_open_sa(
        &mut self,
        now: Instant,
        local: SocketAddr,
        remote: SocketAddr,
        header: &Header,
        choice: &InitChoice,
        ni: &[u8],
        shared: &[u8],
    ) -> IkeSa {
        let id = self.next_id();
        let spi_r = self.new_ike_spi(id);
        let nr = self.nonce();
        let mut sa = IkeSa::new(id, false, local, remote);
        sa.spi_i = header.spi_i;
        sa.spi_r = spi_r;
        sa.state = SaState::HalfOpen;
        sa.proposal = Some(choice.proposal);
        sa.suite = Some(choice.suite);
        let seed = crypto::skeyseed(choice.suite.prf, ni, &nr, shared);
        sa.keys = Some(crypto::derive_ike_keys(
            &choice.suite,
            &seed,
            ni,
            &nr,
            sa.spi_i,
            spi_r,
        ));
        sa.ni = ni.to_vec();
        sa.nr = nr;
        sa.peer_mid = 1;
        sa.expire_at = Some(now + self.config.limits.half_open_timeout);
        sa
    }

    /// SIGNATURE_HASH_ALGORITHMS and CERTREQ when a peer that may be at `remote`
    /// authenticates with certificates.
    fn init_cert_payloads(&self, remote: SocketAddr) -> Vec<Payload> {
        let cert_trust = self
            .peers
            .iter()
            .filter(|pc| pc.remote_addr.is_none_or(|a| a.ip() == remote.ip()))
            .find_map(|pc| match &pc.auth {
                AuthConfig::Cert { trust, .. } => Some(trust.clone()),
                AuthConfig::Psk(_) => None,
            });
        let Some(trust) = cert_trust else {
            return Vec::new();
        };
        //= https://www.rfc-editor.org/rfc/rfc7427#section-4
        //# the responder [...] MUST send its Notify payload
        //# SIGNATURE_HASH_ALGORITHMS [...] in the IKE_SA_INIT response
        vec![
            hash_algorithms_notify(),
            Payload::CertReq {
                encoding: plexgate_pki::CERT_ENCODING_X509_SIGNATURE,
                data: trust.certreq_data(),
            },
        ]
    }
}

/// SA (the chosen proposal), KE and Nr of our IKE_SA_INIT response.
fn init_response_payloads(
    sa: &IkeSa,
    choice: &InitChoice,
    group: u16,
    ke: Vec<u8>,
) -> Vec<Payload> {
    vec![
        Payload::Sa(vec![Proposal {
            num: choice.num,
            protocol: protocol::IKE,
            spi: Vec::new(),
            transforms: choice.proposal.transforms(),
            unknown_attribute: false,
        }]),
        Payload::Ke { group, data: ke },
        Payload::Nonce(sa.nr.clone()),
    ]
}
