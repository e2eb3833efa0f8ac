//! Child SAs common to IKE_AUTH and CREATE_CHILD_SA: keying a negotiated Child SA
//! (KEYMAT, RFC 7296 §2.17), reading the initiator's half of a response (the chosen
//! ESP proposal and the narrowed selectors, §2.9) and adding the Child SA to its IKE
//! SA with the event the daemon installs it from.

use super::*;

/// Where the KEYMAT of a Child SA comes from (§2.17).
pub(super) struct ChildKeying<'a> {
    /// Initiator nonce of the exchange.
    pub(super) ni: &'a [u8],
    /// Responder nonce of the exchange.
    pub(super) nr: &'a [u8],
    /// PFS g^ir of a CREATE_CHILD_SA with KE.
    pub(super) shared: Option<&'a [u8]>,
    /// Our role in the exchange that created it (decides which KEYMAT half is inbound).
    pub(super) initiator: bool,
}

impl IkeSa {
    /// The name of its peer config (empty while half-open).
    pub(super) fn peer_name(&self) -> String {
        self.peer
            .as_ref()
            .map(|p| p.name.clone())
            .unwrap_or_default()
    }
}

impl Endpoint {
    /// Report that a Child SA of config `name` could not be created.
    pub(super) fn child_failed(&mut self, sa: &IkeSa, name: &str, reason: String) {
        self.events.push_back(Event::ChildSaFailed {
            ike: sa.id,
            peer: sa.peer_name(),
            name: name.to_string(),
            reason,
        });
    }

    /// Forget all Child SAs of `sa`, reporting each for the SAD.
    pub(super) fn remove_children(&mut self, sa: &mut IkeSa) {
        let peer = sa.peer_name();
        for c in std::mem::take(&mut sa.children) {
            self.child_removed(sa.id, &peer, &c);
        }
    }

    /// Forget the Child SA with inbound SPI `spi_in` of `sa`, reporting it.
    pub(super) fn remove_child(&mut self, sa: &mut IkeSa, spi_in: u32) -> Option<Child> {
        let i = sa.children.iter().position(|c| c.sa.spi_in == spi_in)?;
        let c = sa.children.remove(i);
        self.child_removed(sa.id, &sa.peer_name(), &c);
        Some(c)
    }

    fn child_removed(&mut self, ike: IkeSaId, peer: &str, c: &Child) {
        self.child_index.remove(&c.sa.spi_in);
        self.events.push_back(Event::ChildSaDeleted {
            ike,
            peer: peer.to_string(),
            spi_in: c.sa.spi_in,
            spi_out: c.sa.spi_out,
        });
    }

    /// Build a Child SA from the negotiated parameters `sel` and our inbound SPI.
    pub(super) fn make_child(
        &mut self,
        sa: &IkeSa,
        sel: &Selected,
        spi_in: u32,
        k: ChildKeying<'_>,
    ) -> Option<ChildSa> {
        let esp = sel.esp;
        let suite = sa.suite?;
        let keys = sa.keys.as_ref()?;
        let el = crypto::esp_encr_key_len(esp.encr, esp.encr_bits)?;
        let il = crypto::esp_integ_key_len(esp.integ)?;
        let mut ck = crypto::derive_child_keys(suite.prf, &keys.sk_d, k.shared, k.ni, k.nr, el, il);
        let (i_to_r, r_to_i) = (
            std::mem::take(&mut ck.i_to_r),
            std::mem::take(&mut ck.r_to_i),
        );
        let (keys_in, keys_out) = if k.initiator {
            (r_to_i, i_to_r)
        } else {
            (i_to_r, r_to_i)
        };
        Some(ChildSa {
            name: sel.cfg.name.clone(),
            spi_in,
            spi_out: sel.spi_out,
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
            ts_local: sel.ts_local.clone(),
            ts_remote: sel.ts_remote.clone(),
            local: sa.local,
            remote: sa.remote,
            udp_encap: sa.udp_encap(),
            mode: sel.mode,
            lifetime: sel.cfg.life_time,
        })
    }

    pub(super) fn add_child(
        &mut self,
        now: Instant,
        sa: &mut IkeSa,
        child: ChildSa,
        esp: EspProposal,
        rekey_time: Duration,
        replaces: Option<u32>,
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
            replaces,
            collision: None,
        });
    }

    /// Initiator: read the Child SA part of an IKE_AUTH or CREATE_CHILD_SA response.
    pub(super) fn finish_child_initiator(
        &mut self,
        now: Instant,
        sa: &mut IkeSa,
        p: &[Payload],
        req: ChildReq,
        spi_in: u32,
        k: ChildKeying<'_>,
    ) {
        let sel = match read_chosen_child(p, &req, k.shared.is_some()) {
            Ok(sel) => sel,
            Err(reason) => return self.child_failed(sa, &req.cfg.name, reason),
        };
        let Some(c) = self.make_child(sa, &sel, spi_in, k) else {
            let reason = "unsupported ESP transform".to_string();
            return self.child_failed(sa, &req.cfg.name, reason);
        };
        self.install_child(now, sa, c, sel.esp, req.cfg.rekey_time, req.rekey_of, true);
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
                    peer: sa.peer.as_ref().map(|p| p.name.clone()).unwrap_or_default(),
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
                peer: sa.peer_name(),
                child: c.clone(),
            }),
        }
        self.add_child(now, sa, c, esp, rekey_time, rekey_of);
    }
}

/// The initiator's check of the Child SA a responder chose: one proposal among those
/// we offered, selectors no wider than ours (§2.9), the mode. The error is a reason.
fn read_chosen_child(p: &[Payload], req: &ChildReq, pfs: bool) -> Result<Selected, String> {
    if let Some(n) = error_notify(p) {
        return Err(format!("peer sent {}", notify_name(n.kind)));
    }
    let chosen = match sa_of(p).map(|v| v.as_slice()) {
        Some([one]) => EspProposal::from_chosen(one).map(|e| (e, one)),
        _ => None,
    };
    let Some((mut esp, prop)) = chosen else {
        return Err("no usable ESP proposal in response".into());
    };
    let offered = req.cfg.esp_proposals.iter().any(|o| {
        let mut o = *o;
        if !pfs {
            o.dh = None;
        }
        o == esp
    });
    if !offered {
        return Err("peer chose an ESP proposal we did not offer".into());
    }
    if !pfs {
        esp.dh = None;
    }
    let (Some(tsi), Some(tsr)) = ts_of(p) else {
        return Err("response without TSi/TSr".into());
    };
    let sub = |a: &[TrafficSelector], b: &[TrafficSelector]| {
        !a.is_empty() && a.iter().all(|t| b.iter().any(|o| t.is_subset_of(o)))
    };
    if !sub(tsi, &req.cfg.local_ts) || !sub(tsr, &req.cfg.remote_ts) {
        return Err("peer widened the traffic selectors".into());
    }
    let transport = find_notify(p, notify::USE_TRANSPORT_MODE).is_some();
    Ok(Selected {
        cfg: req.cfg.clone(),
        esp,
        num: prop.num,
        spi_out: spi_of(&prop.spi),
        ts_local: tsi.clone(),
        ts_remote: tsr.clone(),
        mode: if transport && req.cfg.mode == Mode::Transport {
            Mode::Transport
        } else {
            Mode::Tunnel
        },
    })
}
