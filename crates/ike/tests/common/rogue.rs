//! A scripted IKEv2 initiator built from the crate's public codec and crypto, to send
//! an [`Endpoint`] responder what a well-behaved initiator never would (a short nonce,
//! an empty SA payload, a CREATE_CHILD_SA without KE, a request from another address,
//! a flood of CERT payloads). Each call drives the responder synchronously: the
//! request goes in, and the responder's answer (if any) comes back decrypted.

use std::net::SocketAddr;
use std::time::Instant;

use plexgate_ike::crypto::{self, IkeKeys, IkeSuite, Prf, SkCipher};
use plexgate_ike::message::{
    exchange, flags, parse_payloads, protocol, Header, Identification, Message, Payload, Proposal,
};
use plexgate_ike::{Endpoint, IkeProposal, Rng, SeededRng, Transmit};

/// An initiator's view of one IKE SA with a responder [`Endpoint`].
pub struct Rogue {
    /// Our address.
    pub local: SocketAddr,
    /// The responder's address.
    pub remote: SocketAddr,
    /// SPIs.
    pub spi_i: u64,
    /// Responder SPI.
    pub spi_r: u64,
    /// The negotiated suite.
    pub suite: IkeSuite,
    /// SK_* keys.
    pub keys: IkeKeys,
    /// Our nonce.
    pub ni: Vec<u8>,
    /// The responder's nonce.
    pub nr: Vec<u8>,
    /// Our IKE_SA_INIT request.
    pub init_req: Vec<u8>,
    /// Next message id.
    pub mid: u32,
    rng: SeededRng,
}

/// The IKE_SA_INIT request payloads for `prop` with a KE and a nonce of `nonce_len`.
fn init_payloads(prop: &IkeProposal, ni: &[u8], ke: Vec<u8>) -> Vec<Payload> {
    vec![
        Payload::Sa(vec![Proposal {
            num: 1,
            protocol: protocol::IKE,
            spi: Vec::new(),
            transforms: prop.transforms(),
            unknown_attribute: false,
        }]),
        Payload::Ke {
            group: prop.dh,
            data: ke,
        },
        Payload::Nonce(ni.to_vec()),
    ]
}

impl Rogue {
    /// IKE_SA_INIT with `prop` and a nonce of `nonce_len` bytes. The error holds the
    /// payloads of the responder's plain answer (empty when it did not answer).
    pub fn init(
        gw: &mut Endpoint,
        now: Instant,
        local: SocketAddr,
        remote: SocketAddr,
        prop: IkeProposal,
        nonce_len: usize,
        seed: u64,
    ) -> Result<Rogue, Vec<Payload>> {
        Self::init_with(gw, now, local, remote, prop, nonce_len, seed, Vec::new())
    }

    /// [`Rogue::init`] with `extra` payloads at the end of the request.
    #[allow(clippy::too_many_arguments)]
    pub fn init_with(
        gw: &mut Endpoint,
        now: Instant,
        local: SocketAddr,
        remote: SocketAddr,
        prop: IkeProposal,
        nonce_len: usize,
        seed: u64,
        extra: Vec<Payload>,
    ) -> Result<Rogue, Vec<Payload>> {
        let mut rng = SeededRng::new(seed);
        let mut spi = [0u8; 8];
        rng.fill(&mut spi);
        let spi_i = u64::from_be_bytes(spi) | 1;
        let mut ni = vec![0u8; nonce_len];
        rng.fill(&mut ni);
        let (dh, ke) = crypto::dh_generate(prop.dh, &mut rng).unwrap();
        let req = Message {
            header: Header {
                spi_i,
                spi_r: 0,
                next_payload: 0,
                version: 0x20,
                exchange: exchange::IKE_SA_INIT,
                flags: flags::INITIATOR,
                message_id: 0,
                length: 0,
            },
            payloads: [init_payloads(&prop, &ni, ke), extra].concat(),
        }
        .emit();
        gw.handle(now, remote, local, &req);
        let Some(t) = gw.poll_transmit() else {
            return Err(Vec::new());
        };
        let resp = Message::parse(&t.payload).unwrap();
        let nr = resp.payloads.iter().find_map(|p| match p {
            Payload::Nonce(n) => Some(n.clone()),
            _ => None,
        });
        let ke_r = resp.payloads.iter().find_map(|p| match p {
            Payload::Ke { data, .. } => Some(data.clone()),
            _ => None,
        });
        let (Some(nr), Some(ke_r)) = (nr, ke_r) else {
            return Err(resp.payloads);
        };
        let suite = IkeSuite {
            encr: prop.encr,
            encr_bits: prop.encr_bits,
            integ: prop.integ,
            prf: Prf::from_id(prop.prf).unwrap(),
            dh: prop.dh,
        };
        let shared = crypto::dh_agree(dh, &ke_r).unwrap();
        let seed = crypto::skeyseed(suite.prf, &ni, &nr, &shared);
        let spi_r = resp.header.spi_r;
        let keys = crypto::derive_ike_keys(&suite, &seed, &ni, &nr, spi_i, spi_r);
        Ok(Rogue {
            local,
            remote,
            spi_i,
            spi_r,
            suite,
            keys,
            ni,
            nr,
            init_req: req,
            mid: 1,
            rng,
        })
    }

    /// IDi and a PSK AUTH payload for identity `id` (an RFC 822 address or FQDN).
    pub fn psk_auth(&self, id: &str, psk: &[u8]) -> Vec<Payload> {
        let idi = Identification {
            id_type: if id.contains('@') { 3 } else { 2 },
            data: id.as_bytes().to_vec(),
        };
        let octets = crypto::signed_octets(
            self.suite.prf,
            &self.init_req,
            &self.nr,
            &self.keys.sk_pi,
            &idi.body(),
        );
        let auth = crypto::psk_auth(self.suite.prf, psk, &[&octets]);
        vec![
            Payload::IdI(idi),
            Payload::Auth {
                method: 2,
                data: auth,
            },
        ]
    }

    /// An encrypted request with the next message id, as bytes.
    pub fn seal(&mut self, exch: u8, payloads: &[Payload]) -> Vec<u8> {
        let header = Header {
            spi_i: self.spi_i,
            spi_r: self.spi_r,
            next_payload: 0,
            version: 0x20,
            exchange: exch,
            flags: flags::INITIATOR,
            message_id: self.mid,
            length: 0,
        };
        self.mid += 1;
        let mut inner = Vec::new();
        let first = plexgate_ike::message::emit_payloads(payloads, &mut inner);
        let c = SkCipher {
            suite: &self.suite,
            key_e: &self.keys.sk_ei,
            key_a: &self.keys.sk_ai,
        };
        c.seal(&header, first, &inner, &mut self.rng).unwrap()
    }

    /// Open a response of the responder: its payloads, or None when it is not one.
    pub fn open(&self, t: &Transmit) -> Option<Vec<Payload>> {
        let m = Message::parse(&t.payload).ok()?;
        let (first, len) = match m.payloads.last()? {
            Payload::Sk { inner_first, body } => (*inner_first, body.len()),
            _ => return None,
        };
        let c = SkCipher {
            suite: &self.suite,
            key_e: &self.keys.sk_er,
            key_a: &self.keys.sk_ar,
        };
        let inner = c.open(&t.payload, len).ok()?;
        parse_payloads(first, &inner).ok()
    }

    /// Send a request from `from` (our address unless given) and return the
    /// responder's decrypted answer with where it went, None when it did not answer.
    pub fn request_from(
        &mut self,
        gw: &mut Endpoint,
        now: Instant,
        from: Option<SocketAddr>,
        exch: u8,
        payloads: &[Payload],
    ) -> Option<(Transmit, Vec<Payload>)> {
        let bytes = self.seal(exch, payloads);
        gw.handle(now, self.remote, from.unwrap_or(self.local), &bytes);
        let mut answer = None;
        while let Some(t) = gw.poll_transmit() {
            if answer.is_none() {
                if let Some(p) = self.open(&t) {
                    answer = Some((t, p));
                }
            }
        }
        answer
    }

    /// [`Rogue::request_from`] from our own address, answer payloads only.
    pub fn request(
        &mut self,
        gw: &mut Endpoint,
        now: Instant,
        exch: u8,
        payloads: &[Payload],
    ) -> Option<Vec<Payload>> {
        self.request_from(gw, now, None, exch, payloads)
            .map(|(_, p)| p)
    }
}

impl Rogue {
    /// Answer a request `req` of the responder (it sent it as the original
    /// responder: we answer with our original-initiator keys). Returns what the
    /// responder sends next.
    pub fn answer(
        &mut self,
        gw: &mut Endpoint,
        now: Instant,
        req: &Transmit,
        payloads: &[Payload],
    ) -> Vec<Transmit> {
        let h = Header::parse(&req.payload).unwrap();
        let header = Header {
            flags: flags::INITIATOR | flags::RESPONSE,
            length: 0,
            next_payload: 0,
            ..h
        };
        let mut inner = Vec::new();
        let first = plexgate_ike::message::emit_payloads(payloads, &mut inner);
        let c = SkCipher {
            suite: &self.suite,
            key_e: &self.keys.sk_ei,
            key_a: &self.keys.sk_ai,
        };
        let bytes = c.seal(&header, first, &inner, &mut self.rng).unwrap();
        gw.handle(now, self.remote, self.local, &bytes);
        std::iter::from_fn(|| gw.poll_transmit()).collect()
    }
}

/// An ESP SA payload with one proposal of `e` (with its DH group when `pfs`).
pub fn esp_sa(spi: u32, e: plexgate_ike::EspProposal, pfs: bool) -> Payload {
    Payload::Sa(vec![Proposal {
        num: 1,
        protocol: protocol::ESP,
        spi: spi.to_be_bytes().to_vec(),
        transforms: e.transforms(pfs),
        unknown_attribute: false,
    }])
}

/// The IKE_AUTH payloads of a PSK initiator `id` with one Child SA (AES-GCM-128)
/// between `tsi` (ours) and `tsr`, plus `extra` payloads before AUTH.
pub fn auth_with_child(
    r: &Rogue,
    id: &str,
    psk: &[u8],
    tsi: plexgate_ike::TrafficSelector,
    tsr: plexgate_ike::TrafficSelector,
    extra: Vec<Payload>,
) -> Vec<Payload> {
    let mut p = r.psk_auth(id, psk);
    let auth = p.pop().unwrap();
    p.extend(extra);
    p.push(auth);
    p.push(esp_sa(
        0x1111_2222,
        plexgate_ike::EspProposal::AES128GCM16,
        false,
    ));
    p.push(Payload::TsI(vec![tsi]));
    p.push(Payload::TsR(vec![tsr]));
    p
}

/// The notify types in a chain of payloads.
pub fn notify_kinds(p: &[Payload]) -> Vec<u16> {
    p.iter()
        .filter_map(|x| match x {
            Payload::Notify(n) => Some(n.kind),
            _ => None,
        })
        .collect()
}
