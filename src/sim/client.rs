//! A client of the harness: a road warrior or branch gateway that negotiates with
//! plexgate as an IKEv2 initiator (`plexgate_ike::Endpoint`), installs its Child
//! SAs into its own `plexgate_ipsec::Sad`, and seals and opens real ESP (raw, or
//! in UDP when the SA says so) for the host behind it ([`Host`]). A plain client
//! (no IKE) sends its packets in clear.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;

use plexgate_ike as ike;
use plexgate_ipsec as ipsec;
use plexgate_wire::udp_encap::{self, UdpEncap};

use super::host::Host;
use super::net::{Network, Node, Payload};
use crate::gateway::config::ts_to_ipsec;
use crate::gateway::core::esp_transform;

/// How to build a client.
#[derive(Debug, Clone)]
pub struct ClientSpec {
    /// Name (for messages).
    pub name: String,
    /// Its outer (public) address.
    pub outer: IpAddr,
    /// The addresses of the host behind it (its inner addresses).
    pub inner: Vec<IpAddr>,
    /// The IKE peer towards the gateway; `None` for a plain client.
    pub peer: Option<ike::PeerConfig>,
    /// The MSS its host announces.
    pub mss: u16,
}

impl ClientSpec {
    /// A road warrior at `outer` whose host is `inner`, with a PSK peer `gw` at
    /// `gateway`:500 (identities `client@sim` → `gw@sim`, AES-GCM) and one child
    /// `web` from `inner` to `remote` (e.g. the DVIPAs it reaches).
    pub fn road_warrior(
        name: &str,
        outer: IpAddr,
        inner: IpAddr,
        gateway: IpAddr,
        remote: &[IpAddr],
        psk: &[u8],
    ) -> ClientSpec {
        let child = ike::ChildConfig::new(
            "web",
            vec![ike::TrafficSelector::host(inner)],
            remote
                .iter()
                .map(|a| ike::TrafficSelector::host(*a))
                .collect(),
            vec![ike::EspProposal::AES128GCM16],
        );
        let mut p = ike::PeerConfig::psk("gw", "client@sim", "gw@sim", psk, child);
        p.ike_proposals = vec![ike::IkeProposal::AES128GCM16_PRFSHA256_X25519];
        p.remote_addr = Some(SocketAddr::new(gateway, 500));
        p.local_addr = Some(SocketAddr::new(outer, 500));
        ClientSpec {
            name: name.to_string(),
            outer,
            inner: vec![inner],
            peer: Some(p),
            mss: 1460,
        }
    }

    /// A host at `addr` that sends in clear.
    pub fn plain(name: &str, addr: IpAddr) -> ClientSpec {
        ClientSpec {
            name: name.to_string(),
            outer: addr,
            inner: vec![addr],
            peer: None,
            mss: 1460,
        }
    }

    /// The IKE peer, to adjust identities, proposals or children.
    pub fn peer_mut(&mut self) -> Option<&mut ike::PeerConfig> {
        self.peer.as_mut()
    }
}

/// Counters of a client.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ClientStats {
    /// ESP packets sealed and sent.
    pub esp_sent: u64,
    /// ESP packets opened.
    pub esp_opened: u64,
    /// ESP packets that did not open (unknown SPI, ICV, replay, selectors).
    pub esp_dropped: u64,
    /// Packets with no SA to carry them.
    pub no_sa: u64,
    /// NAT-T keepalives received.
    pub keepalives: u64,
}

/// One client.
pub struct ClientNode {
    /// Its name.
    pub name: String,
    /// Its outer address.
    pub outer: IpAddr,
    /// Its inner addresses.
    pub inner: Vec<IpAddr>,
    ike: Option<ike::Endpoint>,
    peer: String,
    child_names: Vec<String>,
    sad: ipsec::Sad,
    /// The host behind the client.
    pub host: Host,
    /// Every IKE event, in order.
    pub events: Vec<ike::Event>,
    /// Installed Child SAs (current ones), with their IKE SA.
    pub children: Vec<(ike::IkeSaId, ike::ChildSa)>,
    /// Established IKE SAs.
    pub ike_sas: Vec<ike::IkeSaId>,
    /// Counters.
    pub stats: ClientStats,
}

impl ClientNode {
    /// Build from a spec; `seed` seeds its IKE engine and its host.
    pub fn new(spec: ClientSpec, seed: u64) -> ClientNode {
        let (peer, child_names) = spec.peer.as_ref().map_or((String::new(), Vec::new()), |p| {
            (
                p.name.clone(),
                p.children.iter().map(|c| c.name.clone()).collect(),
            )
        });
        let ike = spec.peer.map(|p| {
            let cfg = ike::Config {
                peers: vec![p],
                limits: ike::Limits::default(),
            };
            ike::Endpoint::new(Arc::new(cfg), Box::new(ike::SeededRng::new(seed)))
        });
        ClientNode {
            name: spec.name,
            outer: spec.outer,
            inner: spec.inner,
            ike,
            peer,
            child_names,
            sad: ipsec::Sad::new(),
            host: Host::new(seed, spec.mss, false),
            events: Vec::new(),
            children: Vec::new(),
            ike_sas: Vec::new(),
            stats: ClientStats::default(),
        }
    }

    /// The IKE engine (`None` for a plain client).
    pub fn ike_mut(&mut self) -> Option<&mut ike::Endpoint> {
        self.ike.as_mut()
    }

    /// The client's SAD.
    pub fn sad(&self) -> &ipsec::Sad {
        &self.sad
    }

    /// Start an IKE SA with child `child`.
    pub fn initiate(&mut self, now: Instant, child: &str) -> Result<ike::IkeSaId, ike::Error> {
        let peer = self.peer.clone();
        let ike = self
            .ike
            .as_mut()
            .ok_or(ike::Error::UnknownPeer(peer.clone()))?;
        ike.initiate(now, &peer, child)
    }

    /// Give up every IKE SA (as a client does whose peer restarted and lost
    /// them): dropped without a DELETE, their Child SAs leave the SAD, and the
    /// next [`ClientNode::initiate`] starts a new IKE SA.
    pub fn abandon_ike_sas(&mut self) {
        let Some(ike) = self.ike.as_mut() else {
            return;
        };
        for id in std::mem::take(&mut self.ike_sas) {
            let _ = ike.forget_ike(id);
        }
        for (_, c) in std::mem::take(&mut self.children) {
            self.sad.remove_child(c.spi_in);
        }
    }

    /// Create child `child` on the first established IKE SA.
    pub fn create_child(&mut self, now: Instant, child: &str) -> Result<(), ike::Error> {
        let id = *self
            .ike_sas
            .first()
            .ok_or(ike::Error::NotEstablished(ike::IkeSaId(0)))?;
        let ike = self.ike.as_mut().ok_or(ike::Error::UnknownSa(id))?;
        ike.create_child(now, id, child)
    }

    /// Install a Child SA negotiated elsewhere (a test that gives the gateway the
    /// same one with `GatewayCore::install_child_sa`).
    pub fn install(
        &mut self,
        now: Instant,
        ike_sa: ike::IkeSaId,
        c: ike::ChildSa,
    ) -> Result<(), String> {
        let t = esp_transform(&c).ok_or_else(|| format!("transform {} not installable", c.encr))?;
        let mk = |spi, direction, keys: &(Vec<u8>, Vec<u8>)| ipsec::SaParams {
            spi,
            direction,
            transform: t,
            enc_key: keys.0.clone(),
            integ_key: keys.1.clone(),
            esn: c.esn,
            mode: match c.mode {
                ike::Mode::Transport => ipsec::Mode::Transport,
                _ => ipsec::Mode::Tunnel,
            },
            replay_window: 1024,
            lifetime: ipsec::Lifetime::default(),
            local_ts: c.ts_local.iter().map(ts_to_ipsec).collect(),
            remote_ts: c.ts_remote.iter().map(ts_to_ipsec).collect(),
            local_addr: c.local.ip(),
            remote_addr: c.remote.ip(),
            encap: c.udp_encap.then_some(ipsec::UdpEncapPorts {
                local_port: c.local.port(),
                remote_port: c.remote.port(),
            }),
            initial_seq: 0,
            peer: self.peer.clone(),
            child: c.name.clone(),
        };
        let pin = mk(c.spi_in, ipsec::Direction::Inbound, &c.keys_in);
        let pout = mk(c.spi_out, ipsec::Direction::Outbound, &c.keys_out);
        self.sad
            .insert_child(pin, pout, "gateway", now)
            .map_err(|e| e.to_string())?;
        if !self.child_names.contains(&c.name) {
            self.child_names.push(c.name.clone());
        }
        self.children.push((ike_sa, c));
        Ok(())
    }

    /// When the client wants [`ClientNode::on_timeout`].
    pub fn next_timeout(&self) -> Option<Instant> {
        [
            self.ike.as_ref().and_then(|i| i.poll_timeout()),
            self.sad.next_timeout(),
            self.host.next_timeout(),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// IKE retransmissions and rekeys, SA lifetimes, TCP timers.
    pub fn on_timeout(&mut self, me: Node, net: &mut Network, now: Instant) {
        if let Some(ike) = &mut self.ike {
            ike.handle_timeout(now);
        }
        self.sad.handle_timeout(now);
        while let Some(ev) = self.sad.poll_event() {
            let Some(ike) = &mut self.ike else { continue };
            match ev {
                ipsec::SadEvent::RekeyNeeded {
                    child: Some(spi), ..
                } => {
                    let _ = ike.rekey_child(now, spi);
                }
                ipsec::SadEvent::Expired {
                    child: Some(spi), ..
                } => {
                    let _ = ike.delete_child(now, spi);
                }
                _ => {}
            }
        }
        self.host.handle_timeout(now);
        self.pump(me, net, now);
    }

    /// A datagram for this client.
    pub fn deliver(&mut self, me: Node, net: &mut Network, now: Instant, p: Payload) {
        match p {
            Payload::Udp { src, dst, data } => {
                if src.port() == 4500 || dst.port() == 4500 {
                    match udp_encap::classify(&data) {
                        Ok(UdpEncap::Ike(m)) => self.ike_in(now, dst, src, m),
                        Ok(UdpEncap::Esp(_)) => self.esp_in(now, data),
                        Ok(UdpEncap::Keepalive) => self.stats.keepalives += 1,
                        Err(_) => {}
                    }
                } else {
                    self.ike_in(now, dst, src, &data);
                }
            }
            Payload::Esp { data, .. } => self.esp_in(now, data),
            Payload::Ip(p) => self.host.deliver(now, &p),
            Payload::Gre { .. } | Payload::Cluster { .. } => {}
        }
        self.pump(me, net, now);
    }

    fn ike_in(&mut self, now: Instant, local: SocketAddr, remote: SocketAddr, m: &[u8]) {
        if let Some(ike) = &mut self.ike {
            ike.handle(now, local, remote, m);
        }
    }

    fn esp_in(&mut self, now: Instant, mut data: Vec<u8>) {
        match self.sad.open_in_place(now, &mut data) {
            Ok(inb) => {
                self.stats.esp_opened += 1;
                self.host.deliver(now, &data[inb.opened.inner]);
            }
            Err(_) => self.stats.esp_dropped += 1,
        }
    }

    /// Send IKE messages, apply IKE events, and seal what the host wrote.
    pub fn pump(&mut self, me: Node, net: &mut Network, now: Instant) {
        loop {
            let mut any = false;
            while let Some(t) = self.ike.as_mut().and_then(|i| i.poll_transmit()) {
                any = true;
                let data = if t.local.port() == 4500 || t.remote.port() == 4500 {
                    let mut v = vec![0u8; 4];
                    v.extend_from_slice(&t.payload);
                    v
                } else {
                    t.payload
                };
                let p = Payload::Udp {
                    src: t.local,
                    dst: t.remote,
                    data,
                };
                net.send(now, me, p);
            }
            while let Some(ev) = self.ike.as_mut().and_then(|i| i.poll_event()) {
                any = true;
                self.on_event(now, ev);
            }
            while let Some(p) = self.host.poll_output() {
                any = true;
                self.send_inner(me, net, now, p);
            }
            if !any {
                return;
            }
        }
    }

    fn on_event(&mut self, now: Instant, ev: ike::Event) {
        match &ev {
            ike::Event::IkeSaUp { id, .. } => self.ike_sas.push(*id),
            ike::Event::IkeSaRekeyed { old, new, .. } => {
                self.ike_sas.retain(|i| i != old);
                self.ike_sas.push(*new);
                for (i, _) in &mut self.children {
                    if i == old {
                        *i = *new;
                    }
                }
            }
            ike::Event::IkeSaDeleted { id, .. } => self.ike_sas.retain(|i| i != id),
            ike::Event::ChildSaUp { ike, child, .. } => {
                let _ = self.install(now, *ike, child.clone());
            }
            ike::Event::ChildSaRekeyed {
                ike,
                old_spi_in,
                new,
                ..
            } => {
                let old_out = self.sad.outbound_of_child(*old_spi_in);
                if self.install(now, *ike, new.clone()).is_ok() {
                    if let Some(h) = old_out {
                        self.sad.retire_outbound(h);
                    }
                }
            }
            ike::Event::ChildSaDeleted { spi_in, .. } => {
                self.sad.remove_child(*spi_in);
                self.children.retain(|(_, c)| c.spi_in != *spi_in);
            }
            _ => {}
        }
        self.events.push(ev);
    }

    /// Seal an inner packet with the SA whose selectors fit it (or send it in
    /// clear from a plain client).
    fn send_inner(&mut self, me: Node, net: &mut Network, now: Instant, p: Vec<u8>) {
        if self.ike.is_none() {
            net.send(now, me, Payload::Ip(p));
            return;
        }
        let Ok(t) = plexgate_wire::ip::FiveTuple::parse(&p) else {
            self.stats.no_sa += 1;
            return;
        };
        let h = self
            .child_names
            .iter()
            .find_map(|c| self.sad.outbound_for(&self.peer, c, &t));
        let Some((h, sa)) = h.and_then(|h| self.sad.outbound(h).map(|sa| (h, sa))) else {
            self.stats.no_sa += 1;
            return;
        };
        let (local, remote, encap) = (
            sa.params().local_addr,
            sa.params().remote_addr,
            sa.params().encap,
        );
        let mut out = vec![0u8; sa.sealed_len(p.len())];
        let nh = if t.dst.is_ipv6() { 41 } else { 4 };
        let Ok(n) = self.sad.seal(now, h, &p, nh, &mut out) else {
            self.stats.no_sa += 1;
            return;
        };
        out.truncate(n);
        self.stats.esp_sent += 1;
        let payload = match encap {
            Some(e) => Payload::Udp {
                src: SocketAddr::new(local, e.local_port),
                dst: SocketAddr::new(remote, e.remote_port),
                data: out,
            },
            None => Payload::Esp {
                src: local,
                dst: remote,
                data: out,
            },
        };
        net.send(now, me, payload);
    }
}
