//! The in-memory pair harness shared by the integration tests: an initiator and a
//! responder [`Endpoint`] talk over a simulated network in virtual time (loss,
//! duplication, reordering, an optional NAT), in the quinn `Pair` style.
#![allow(dead_code)]

pub mod rogue;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use plexgate_ike::config::{ChildConfig, Config, EspProposal, Limits, PeerConfig};
use plexgate_ike::{ChildSa, Endpoint, Event, IkeSaId, Rng, SeededRng, TrafficSelector, Transmit};

pub const CLIENT: &str = "10.0.0.1:500";
pub const GW: &str = "10.0.0.2:500";
pub const NAT_PUBLIC: &str = "198.51.100.7";

pub fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

pub fn client_cfg(psk: &[u8]) -> PeerConfig {
    let child = ChildConfig::new(
        "net",
        vec![TrafficSelector::host("192.168.250.1".parse().unwrap())],
        vec![TrafficSelector::host("203.0.113.250".parse().unwrap())],
        vec![EspProposal::AES128GCM16, EspProposal::AES256_SHA256],
    );
    let mut p = PeerConfig::psk("gw", "client@example", "gw@example", psk, child);
    p.remote_addr = Some(addr(GW));
    p.local_addr = Some(addr(CLIENT));
    p
}

pub fn gw_cfg(psk: &[u8]) -> PeerConfig {
    let child = ChildConfig::new(
        "net",
        vec![TrafficSelector::host("203.0.113.250".parse().unwrap())],
        vec![TrafficSelector::prefix(
            "192.168.250.0".parse().unwrap(),
            24,
        )],
        vec![EspProposal::AES256GCM16, EspProposal::AES128GCM16],
    );
    let mut p = PeerConfig::psk("client", "gw@example", "client@example", psk, child);
    p.remote_addr = None;
    p.local_addr = Some(addr(GW));
    p
}

pub fn config(peer: PeerConfig) -> Arc<Config> {
    Arc::new(Config {
        peers: vec![peer],
        limits: Limits::default(),
    })
}

pub struct Net {
    pub loss: u8,
    pub dup: u8,
    pub nat: bool,
}

impl Net {
    /// No loss, no duplication, no NAT.
    pub const CLEAN: Net = Net {
        loss: 0,
        dup: 0,
        nat: false,
    };
}

/// Decides which datagrams a [`Pair`] holds back.
pub type Hold = Box<dyn FnMut(&Transmit) -> bool>;

pub struct Pair {
    pub client: Endpoint,
    pub gw: Endpoint,
    pub now: Instant,
    pub start: Instant,
    pub inflight: Vec<(Instant, Transmit)>,
    pub rng: SeededRng,
    pub net: Net,
    pub ev_client: Vec<Event>,
    pub ev_gw: Vec<Event>,
    /// Datagrams this returns true for are held back (in `held`) instead of sent.
    pub hold: Option<Hold>,
    /// Datagrams held back, in order.
    pub held: Vec<Transmit>,
}

impl Pair {
    pub fn new(client: PeerConfig, gw: PeerConfig, net: Net, seed: u64) -> Pair {
        Pair::with(config(client), config(gw), net, seed)
    }

    pub fn with(client: Arc<Config>, gw: Arc<Config>, net: Net, seed: u64) -> Pair {
        let now = Instant::now();
        Pair {
            client: Endpoint::new(client, Box::new(SeededRng::new(seed))),
            gw: Endpoint::new(gw, Box::new(SeededRng::new(seed + 1000))),
            now,
            start: now,
            inflight: Vec::new(),
            rng: SeededRng::new(seed + 7),
            net,
            ev_client: Vec::new(),
            ev_gw: Vec::new(),
            hold: None,
            held: Vec::new(),
        }
    }

    pub fn rand(&mut self) -> u8 {
        let mut b = [0u8];
        self.rng.fill(&mut b);
        b[0]
    }

    /// NAT in front of the client: rewrites the client's source on the way out and
    /// the destination on the way back.
    pub fn nat_out(&self, mut t: Transmit) -> Transmit {
        if self.net.nat && t.local.ip() == addr(CLIENT).ip() {
            let port = if t.local.port() == 4500 { 31001 } else { 31000 };
            t.local = SocketAddr::new(NAT_PUBLIC.parse().unwrap(), port);
        } else if self.net.nat && t.remote.ip().to_string() == NAT_PUBLIC {
            let port = if t.remote.port() == 31001 { 4500 } else { 500 };
            t.remote = SocketAddr::new(addr(CLIENT).ip(), port);
        }
        t
    }

    pub fn collect(&mut self) {
        let mut out = Vec::new();
        while let Some(t) = self.client.poll_transmit() {
            out.push(t);
        }
        while let Some(t) = self.gw.poll_transmit() {
            out.push(t);
        }
        for t in out {
            let t = self.nat_out(t);
            if self.hold.as_mut().is_some_and(|h| h(&t)) {
                self.held.push(t);
                continue;
            }
            if self.rand() < self.net.loss {
                continue;
            }
            let copies = if self.rand() < self.net.dup { 2 } else { 1 };
            for _ in 0..copies {
                let delay = Duration::from_millis(5 + (self.rand() as u64 % 40));
                self.inflight.push((self.now + delay, t.clone()));
            }
        }
        while let Some(e) = self.client.poll_event() {
            self.ev_client.push(e);
        }
        while let Some(e) = self.gw.poll_event() {
            self.ev_gw.push(e);
        }
    }

    /// Advance to the next thing that happens (but not past `end`); false when
    /// nothing is left to do before `end`.
    pub fn step(&mut self, end: Instant) -> bool {
        self.collect();
        let next_pkt = self.inflight.iter().map(|(t, _)| *t).min();
        let next = [next_pkt, self.client.poll_timeout(), self.gw.poll_timeout()]
            .into_iter()
            .flatten()
            .min();
        let Some(next) = next.filter(|n| *n <= end) else {
            self.now = self.now.max(end);
            return false;
        };
        self.now = self.now.max(next);
        let (due, rest): (Vec<_>, Vec<_>) = std::mem::take(&mut self.inflight)
            .into_iter()
            .partition(|(t, _)| *t <= self.now);
        self.inflight = rest;
        for (_, t) in due {
            if std::env::var("TRACE").is_ok() {
                let h = plexgate_ike::message::Header::parse(&t.payload).unwrap();
                eprintln!(
                    "{} -> {} exch {} flags {:x} mid {} spi {:x}/{:x}",
                    t.local, t.remote, h.exchange, h.flags, h.message_id, h.spi_i, h.spi_r
                );
            }
            if t.remote.ip() == addr(GW).ip() {
                self.gw.handle(self.now, t.remote, t.local, &t.payload);
            } else if t.remote.ip() == addr(CLIENT).ip() {
                self.client.handle(self.now, t.remote, t.local, &t.payload);
            }
        }
        self.client.handle_timeout(self.now);
        self.gw.handle_timeout(self.now);
        self.collect();
        true
    }

    /// Run until `done` or `limit` of virtual time has passed.
    pub fn run_until(&mut self, limit: Duration, mut done: impl FnMut(&Pair) -> bool) -> bool {
        let end = self.now + limit;
        while self.now < end {
            if done(self) {
                return true;
            }
            if !self.step(end) {
                return done(self);
            }
        }
        done(self)
    }

    /// Send what was held back, now.
    pub fn release(&mut self) {
        self.hold = None;
        for t in std::mem::take(&mut self.held) {
            self.inflight.push((self.now, t));
        }
    }

    pub fn children(ev: &[Event]) -> Vec<ChildSa> {
        ev.iter()
            .filter_map(|e| match e {
                Event::ChildSaUp { child, .. } => Some(child.clone()),
                Event::ChildSaRekeyed { new, .. } => Some(new.clone()),
                _ => None,
            })
            .collect()
    }

    pub fn ike_up(ev: &[Event]) -> Vec<IkeSaId> {
        ev.iter()
            .filter_map(|e| match e {
                Event::IkeSaUp { id, .. } => Some(*id),
                _ => None,
            })
            .collect()
    }
}

pub fn assert_matching(a: &ChildSa, b: &ChildSa) {
    assert_eq!(a.spi_in, b.spi_out);
    assert_eq!(a.spi_out, b.spi_in);
    assert_eq!(a.keys_in, b.keys_out);
    assert_eq!(a.keys_out, b.keys_in);
    assert_ne!(a.keys_in, a.keys_out);
    assert_eq!(
        (a.encr, a.encr_key_bits, a.integ, a.esn),
        (b.encr, b.encr_key_bits, b.integ, b.esn)
    );
    assert_eq!(a.ts_local, b.ts_remote);
    assert_eq!(a.ts_remote, b.ts_local);
}

pub fn both_up(p: &Pair) -> bool {
    !Pair::children(&p.ev_client).is_empty() && !Pair::children(&p.gw_events()).is_empty()
}

impl Pair {
    pub fn gw_events(&self) -> Vec<Event> {
        self.ev_gw.clone()
    }
}
