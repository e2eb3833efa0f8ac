//! An in-memory LAN on virtual time: gateways (each an [`L2`] machine with
//! interfaces plugged into segments), clients with a Linux-like neighbour table,
//! and a switch that delivers broadcast and multicast frames to every port of a
//! segment and unicast frames to the port with that MAC. Every frame on the wire is
//! logged with its time, so tests can check who said what, and when.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use plexgate_wire::arp::{ArpFrameRepr, ArpOperation, ArpRepr, EthernetAddress};

use crate::l2::{Config, Event, IfaceId, L2};

/// A frame seen on a segment.
#[derive(Debug, Clone)]
pub(crate) struct Wire {
    pub(crate) at: Instant,
    pub(crate) segment: usize,
    pub(crate) frame: ArpFrameRepr,
}

pub(crate) struct Gw {
    pub(crate) l2: L2,
    /// Segment of each interface (None: unplugged).
    pub(crate) ports: Vec<Option<usize>>,
    pub(crate) macs: Vec<EthernetAddress>,
    pub(crate) events: Vec<Event>,
}

pub(crate) struct Client {
    pub(crate) mac: EthernetAddress,
    pub(crate) ip: Ipv4Addr,
    pub(crate) segment: usize,
    /// Linux-like: created by replies to our requests, updated by gratuitous ARP
    /// for existing entries.
    pub(crate) neigh: BTreeMap<Ipv4Addr, EthernetAddress>,
    pub(crate) replies: Vec<ArpFrameRepr>,
}

pub(crate) struct Lan {
    pub(crate) t0: Instant,
    pub(crate) now: Instant,
    pub(crate) gws: Vec<Gw>,
    pub(crate) clients: Vec<Client>,
    pub(crate) wire: Vec<Wire>,
}

pub(crate) fn ip(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}

pub(crate) fn gw_mac(g: usize, i: usize) -> EthernetAddress {
    EthernetAddress([0x02, 0, 0, 0, g as u8 + 1, i as u8 + 1])
}

impl Lan {
    pub(crate) fn new() -> Lan {
        let t0 = Instant::now();
        Lan {
            t0,
            now: t0,
            gws: Vec::new(),
            clients: Vec::new(),
            wire: Vec::new(),
        }
    }

    /// A gateway whose interface `i` is plugged into segment `ports[i]` and up.
    pub(crate) fn gateway(&mut self, cfg: Config, ports: &[usize]) -> usize {
        let g = self.gws.len();
        let l2 = L2::new(cfg).unwrap();
        let macs = (0..ports.len()).map(|i| gw_mac(g, i)).collect();
        self.gws.push(Gw {
            l2,
            ports: ports.iter().map(|p| Some(*p)).collect(),
            macs,
            events: Vec::new(),
        });
        for i in 0..ports.len() {
            self.link(g, i, true);
        }
        g
    }

    pub(crate) fn client(&mut self, segment: usize, ip: Ipv4Addr) -> usize {
        let c = self.clients.len();
        self.clients.push(Client {
            mac: EthernetAddress([0x02, 0xcc, 0, 0, 0, c as u8 + 1]),
            ip,
            segment,
            neigh: BTreeMap::new(),
            replies: Vec::new(),
        });
        c
    }

    pub(crate) fn link(&mut self, g: usize, i: usize, up: bool) {
        let (now, mac) = (self.now, self.gws[g].macs[i]);
        self.gws[g].l2.set_link(now, IfaceId(i), up, Some(mac));
        self.pump();
    }

    /// Moves interface `i` of gateway `g` to another segment (recabling).
    pub(crate) fn plug(&mut self, g: usize, i: usize, segment: usize) {
        self.gws[g].ports[i] = Some(segment);
    }

    pub(crate) fn set_active(&mut self, g: usize, addr: Ipv4Addr, active: bool) {
        let now = self.now;
        self.gws[g].l2.set_active(now, addr, active).unwrap();
        self.pump();
    }

    /// Delivers every pending frame (and what answering them produces).
    pub(crate) fn pump(&mut self) {
        loop {
            let mut out = Vec::new();
            for (g, gw) in self.gws.iter_mut().enumerate() {
                while let Some(t) = gw.l2.poll_transmit() {
                    out.push((g, t.iface.0, t.frame));
                }
                while let Some(e) = gw.l2.poll_event() {
                    gw.events.push(e);
                }
            }
            if out.is_empty() {
                return;
            }
            for (g, i, frame) in out {
                if let Some(seg) = self.gws[g].ports[i] {
                    self.deliver(seg, Some((g, i)), &frame);
                }
            }
        }
    }

    /// Puts `frame` on `segment` as sent from gateway port `from` (or from outside).
    pub(crate) fn deliver(&mut self, segment: usize, from: Option<(usize, usize)>, frame: &[u8]) {
        let now = self.now;
        let parsed = ArpFrameRepr::parse(frame).ok();
        if let Some(f) = parsed {
            self.wire.push(Wire {
                at: now,
                segment,
                frame: f,
            });
        }
        let dst = EthernetAddress::from_bytes(frame).unwrap_or_default();
        for (g, gw) in self.gws.iter_mut().enumerate() {
            for i in 0..gw.ports.len() {
                if gw.ports[i] != Some(segment) || from == Some((g, i)) {
                    continue;
                }
                let joined = gw.l2.multicast_macs(IfaceId(i)).contains(&dst);
                if dst.is_broadcast() || dst == gw.macs[i] || joined {
                    gw.l2.handle_frame(now, IfaceId(i), frame);
                }
            }
        }
        for c in self.clients.iter_mut().filter(|c| c.segment == segment) {
            if let Some(f) = parsed {
                if dst.is_broadcast() || dst == c.mac {
                    c.receive(f);
                }
            }
        }
    }

    /// Advances virtual time by `d`, firing every timer on the way.
    pub(crate) fn advance(&mut self, d: Duration) {
        let end = self.now + d;
        loop {
            let next = self.gws.iter().filter_map(|g| g.l2.poll_timeout()).min();
            match next {
                Some(t) if t <= end => {
                    self.now = self.now.max(t);
                    let now = self.now;
                    for gw in &mut self.gws {
                        if gw.l2.poll_timeout().is_some_and(|x| x <= now) {
                            gw.l2.handle_timeout(now);
                        }
                    }
                    self.pump();
                }
                _ => break,
            }
        }
        self.now = end;
    }

    /// Client `c` asks who has `target`; returns the replies it received.
    pub(crate) fn resolve(&mut self, c: usize, target: Ipv4Addr) -> Vec<ArpFrameRepr> {
        let cl = &mut self.clients[c];
        cl.replies.clear();
        let req = ArpFrameRepr {
            eth_dst: EthernetAddress::BROADCAST,
            eth_src: cl.mac,
            arp: ArpRepr::request(cl.mac, cl.ip, target),
        };
        let seg = cl.segment;
        self.deliver(seg, None, &req.to_bytes());
        self.pump();
        self.clients[c].replies.clone()
    }

    /// Frames on the wire since `since` whose ARP sender IP is `addr`.
    pub(crate) fn said(&self, since: Instant, addr: Ipv4Addr) -> Vec<&Wire> {
        self.wire
            .iter()
            .filter(|w| w.at >= since && w.frame.arp.sender_ip == addr)
            .collect()
    }

    pub(crate) fn events(&mut self, g: usize) -> Vec<Event> {
        std::mem::take(&mut self.gws[g].events)
    }
}

impl Client {
    fn receive(&mut self, f: ArpFrameRepr) {
        let a = f.arp;
        if a.operation == ArpOperation::Reply && a.target_ip == self.ip {
            self.replies.push(f);
            self.neigh.insert(a.sender_ip, a.sender_mac);
        } else if a.is_gratuitous() && self.neigh.contains_key(&a.sender_ip) {
            // Linux (arp_accept = 0) updates an existing entry on gratuitous ARP.
            self.neigh.insert(a.sender_ip, a.sender_mac);
        }
    }
}
