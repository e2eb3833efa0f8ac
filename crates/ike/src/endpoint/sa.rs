//! The state the endpoint keeps per IKE SA: its SPIs, keys, addresses, identities,
//! message ids and window (§2.3), the queue of work to start, and its Child SAs.

use super::*;

/// A Child SA to create: its config (TS possibly overridden by a record) and the SA it
/// replaces.
#[derive(Debug, Clone)]
pub(super) struct ChildReq {
    pub(super) cfg: ChildConfig,
    pub(super) rekey_of: Option<u32>,
}

pub(super) struct Child {
    pub(super) sa: ChildSa,
    pub(super) proposal: EspProposal,
    pub(super) rekey_at: Option<Instant>,
    /// Set once a rekey replaced this SA (by either side) or it is being deleted: no
    /// further rekeys.
    pub(super) rekeyed: bool,
    /// The inbound SPI of the SA this one replaced (a rekey).
    pub(super) replaces: Option<u32>,
    /// The peer rekeyed this SA while our own rekey of it was in flight (§2.8.1):
    /// (inbound SPI of the SA the peer's exchange created, lowest nonce of it).
    pub(super) collision: Option<(u32, Vec<u8>)>,
}

pub(super) enum Pending {
    Init,
    Auth {
        child: Option<(ChildReq, u32)>,
    },
    CreateChild {
        child: ChildReq,
        spi_in: u32,
        ni: Vec<u8>,
        dh: Option<DhPrivate>,
    },
    RekeyIke {
        new_spi: u64,
        ni: Vec<u8>,
        dh: Option<DhPrivate>,
    },
    DeleteChild {
        spi_in: u32,
    },
    DeleteIke,
    Dpd,
}

pub(super) struct Outstanding {
    pub(super) mid: u32,
    pub(super) bytes: Vec<u8>,
    pub(super) tries: u32,
    pub(super) next: Instant,
    pub(super) pending: Pending,
}

#[derive(Debug, Clone)]
pub(super) enum Task {
    CreateChild(ChildReq),
    RekeyChild(u32),
    RekeyIke,
    DeleteChild(u32),
    DeleteIke,
    Dpd,
}

impl IkeSa {
    /// Our SPI of this SA (the one the peer's messages name us by).
    pub(super) fn our_spi(&self) -> u64 {
        if self.initiator {
            self.spi_i
        } else {
            self.spi_r
        }
    }

    /// Is a Child SA of config `name` up (and not being replaced or deleted), or on
    /// its way (in IKE_AUTH, queued or in flight)?
    pub(super) fn has_child(&self, name: &str) -> bool {
        let up = self
            .children
            .iter()
            .any(|c| c.sa.name == name && !c.rekeyed);
        let first = self
            .first_child
            .as_ref()
            .is_some_and(|r| r.cfg.name == name);
        let queued = self
            .queue
            .iter()
            .any(|t| matches!(t, Task::CreateChild(r) if r.cfg.name == name));
        let sent = match self.outstanding.as_ref().map(|o| &o.pending) {
            Some(Pending::CreateChild { child, .. }) => child.cfg.name == name,
            Some(Pending::Auth {
                child: Some((r, _)),
            }) => r.cfg.name == name,
            _ => false,
        };
        up || first || queued || sent
    }

    /// Is a DELETE of this Child SA queued or in flight?
    pub(super) fn deleting_child(&self, spi_in: u32) -> bool {
        let queued = self
            .queue
            .iter()
            .any(|t| matches!(t, Task::DeleteChild(s) if *s == spi_in));
        let sent = matches!(&self.outstanding, Some(Outstanding { pending: Pending::DeleteChild { spi_in: s }, .. }) if *s == spi_in);
        queued || sent
    }
}

pub(super) struct IkeSa {
    pub(super) id: IkeSaId,
    pub(super) peer: Option<Arc<PeerConfig>>,
    pub(super) initiator: bool,
    pub(super) spi_i: u64,
    pub(super) spi_r: u64,
    pub(super) state: SaState,
    pub(super) local: SocketAddr,
    pub(super) remote: SocketAddr,
    pub(super) nat_local: bool,
    pub(super) nat_remote: bool,
    pub(super) proposal: Option<IkeProposal>,
    pub(super) suite: Option<IkeSuite>,
    pub(super) keys: Option<IkeKeys>,
    pub(super) ni: Vec<u8>,
    pub(super) nr: Vec<u8>,
    /// IKE_SA_INIT request and response, kept for AUTH until IKE_AUTH completes.
    pub(super) init_req: Vec<u8>,
    pub(super) init_resp: Vec<u8>,
    pub(super) dh: Option<DhPrivate>,
    pub(super) dh_group: u16,
    pub(super) cookie: Option<Vec<u8>>,
    /// The peer's SIGNATURE_HASH_ALGORITHMS (RFC 7427 §4).
    pub(super) peer_hashes: Vec<u16>,
    pub(super) local_id: Option<Identification>,
    pub(super) remote_id: Option<Identification>,
    pub(super) my_mid: u32,
    pub(super) peer_mid: u32,
    pub(super) last_response: Option<(u32, Vec<u8>)>,
    pub(super) outstanding: Option<Outstanding>,
    pub(super) queue: VecDeque<Task>,
    pub(super) children: Vec<Child>,
    pub(super) first_child: Option<ChildReq>,
    pub(super) rekey_at: Option<Instant>,
    pub(super) dpd_at: Option<Instant>,
    pub(super) expire_at: Option<Instant>,
    pub(super) deadline: Option<Instant>,
    /// Our address and the peer's of the request being answered: a response goes
    /// back where its request came from (§2.11), wherever the SA's addresses are.
    pub(super) reply_to: (SocketAddr, SocketAddr),
    /// Its key in the index of half-open SAs (peer address of the IKE_SA_INIT, SPIi).
    pub(super) init_key: Option<(SocketAddr, u64)>,
    /// Renegotiated from a recovery record: the peer must prove this identity.
    pub(super) recovered_remote_id: Option<Identification>,
    /// Our SPI of the IKE SA that our rekey in flight will create (reserved).
    pub(super) reserved_spi: Option<u64>,
}

impl IkeSa {
    pub(super) fn new(
        id: IkeSaId,
        initiator: bool,
        local: SocketAddr,
        remote: SocketAddr,
    ) -> IkeSa {
        IkeSa {
            id,
            peer: None,
            initiator,
            spi_i: 0,
            spi_r: 0,
            state: SaState::InitSent,
            local,
            remote,
            nat_local: false,
            nat_remote: false,
            proposal: None,
            suite: None,
            keys: None,
            ni: Vec::new(),
            nr: Vec::new(),
            init_req: Vec::new(),
            init_resp: Vec::new(),
            dh: None,
            dh_group: 0,
            cookie: None,
            peer_hashes: Vec::new(),
            local_id: None,
            remote_id: None,
            my_mid: 0,
            peer_mid: 0,
            last_response: None,
            outstanding: None,
            queue: VecDeque::new(),
            children: Vec::new(),
            first_child: None,
            rekey_at: None,
            dpd_at: None,
            expire_at: None,
            deadline: None,
            reply_to: (local, remote),
            init_key: None,
            recovered_remote_id: None,
            reserved_spi: None,
        }
    }

    pub(super) fn udp_encap(&self) -> bool {
        self.nat_local || self.nat_remote || self.local.port() == 4500 || self.remote.port() == 4500
    }

    pub(super) fn next_deadline(&self) -> Option<Instant> {
        let mut d = [
            self.outstanding.as_ref().map(|o| o.next),
            self.expire_at,
            if self.outstanding.is_none() {
                self.rekey_at
            } else {
                None
            },
            if self.outstanding.is_none() {
                self.dpd_at
            } else {
                None
            },
        ]
        .into_iter()
        .flatten()
        .min();
        if self.state == SaState::Established && self.outstanding.is_none() {
            for c in &self.children {
                if let Some(r) = c.rekey_at {
                    d = Some(d.map_or(r, |x: Instant| x.min(r)));
                }
            }
        }
        d
    }

    /// (SK_e, SK_a) for messages we send / we receive.
    pub(super) fn out_keys(&self) -> Option<(&[u8], &[u8])> {
        let k = self.keys.as_ref()?;
        Some(if self.initiator {
            (&k.sk_ei, &k.sk_ai)
        } else {
            (&k.sk_er, &k.sk_ar)
        })
    }
    pub(super) fn in_keys(&self) -> Option<(&[u8], &[u8])> {
        let k = self.keys.as_ref()?;
        Some(if self.initiator {
            (&k.sk_er, &k.sk_ar)
        } else {
            (&k.sk_ei, &k.sk_ai)
        })
    }

    pub(super) fn header(&self, exch: u8, mid: u32, response: bool) -> Header {
        Header {
            spi_i: self.spi_i,
            spi_r: self.spi_r,
            next_payload: 0,
            version: 0x20,
            exchange: exch,
            flags: if self.initiator { flags::INITIATOR } else { 0 }
                | if response { flags::RESPONSE } else { 0 },
            message_id: mid,
            length: 0,
        }
    }

    pub(super) fn record(&self) -> Option<IkeRecord> {
        Some(IkeRecord {
            peer: self.peer.as_ref()?.name.clone(),
            local: self.local,
            remote: self.remote,
            nat_local: self.nat_local,
            nat_remote: self.nat_remote,
            initiator: self.initiator,
            spi_i: self.spi_i,
            spi_r: self.spi_r,
            local_id: self.local_id.clone()?,
            remote_id: self.remote_id.clone()?,
            proposal: self.proposal?,
            children: self
                .children
                .iter()
                .map(|c| c.sa.record(c.proposal))
                .collect(),
        })
    }

    pub(super) fn size_estimate(&self) -> usize {
        let mut n = std::mem::size_of::<IkeSa>();
        n += self.ni.capacity()
            + self.nr.capacity()
            + self.init_req.capacity()
            + self.init_resp.capacity();
        n += self.keys.as_ref().map_or(0, |k| {
            k.sk_d.capacity()
                + k.sk_ai.capacity()
                + k.sk_ar.capacity()
                + k.sk_ei.capacity()
                + k.sk_er.capacity()
                + k.sk_pi.capacity()
                + k.sk_pr.capacity()
        });
        n += self.last_response.as_ref().map_or(0, |(_, b)| b.capacity());
        n += self.outstanding.as_ref().map_or(0, |o| {
            o.bytes.capacity() + std::mem::size_of::<Outstanding>()
        });
        n += self.local_id.as_ref().map_or(0, |i| i.data.capacity())
            + self.remote_id.as_ref().map_or(0, |i| i.data.capacity());
        for c in &self.children {
            n += std::mem::size_of::<Child>() + c.sa.name.capacity();
            n += c.sa.keys_in.0.capacity()
                + c.sa.keys_in.1.capacity()
                + c.sa.keys_out.0.capacity()
                + c.sa.keys_out.1.capacity();
            n += (c.sa.ts_local.capacity() + c.sa.ts_remote.capacity())
                * std::mem::size_of::<TrafficSelector>();
        }
        n
    }
}
