//! A host's IP stack as the harness models it: what the kernel of a target (or of
//! a client behind its tunnel) does with the packets plexgate hands it. Sockets
//! listen on (address, port) with an application behind them — an echo server,
//! an HTTP-like responder that names its host, or a capture that only records —
//! and connections use the small TCP of [`super::tcp`]. The socket table is
//! reported as the target daemon reads it from the kernel
//! ([`plexgate_distrib::listeners::ProcSocket`], TCP only, like `sock_diag`).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

use plexgate_distrib::listeners::{ProcSocket, TCP_ESTABLISHED, TCP_LISTEN};

use super::packet::{self, flags, Parsed, TcpSeg};
use super::rng::SimRng;
use super::tcp::{SegIn, TcpConn, TcpState};

/// What answers on a listening socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum App {
    /// Sends every byte back; closes when the peer closes (TCP), answers each
    /// datagram with itself (UDP).
    Echo,
    /// Reads a request up to an empty line and answers
    /// `HTTP/1.0 200 OK` with the body `served by <name>`, then closes.
    Http(String),
    /// Records every packet for the test and answers nothing (scenarios that
    /// write both directions by hand).
    Capture,
}

/// A listening socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listener {
    /// Local address; unspecified (`0.0.0.0`, `::`) listens on every address of
    /// that family.
    pub addr: IpAddr,
    /// Local port.
    pub port: u16,
    /// The application.
    pub app: App,
    /// Also takes UDP datagrams on the port (TCP always).
    pub udp: bool,
}

impl Listener {
    fn takes(&self, dst: SocketAddr) -> bool {
        self.port == dst.port()
            && (self.addr == dst.ip()
                || (self.addr.is_unspecified() && self.addr.is_ipv4() == dst.ip().is_ipv4()))
    }
}

/// A connection of a host, as returned by [`Host::connect`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId(pub u64);

#[derive(Debug)]
enum AppState {
    Echo,
    Http {
        name: String,
        req: Vec<u8>,
    },
    /// Driven by the test.
    Owned,
}

#[derive(Debug)]
struct Socket {
    tcp: TcpConn,
    app: AppState,
}

/// Counters of a host.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct HostStats {
    /// IP packets handed to the host.
    pub rx: u64,
    /// IP packets the host sent.
    pub tx: u64,
    /// Connections accepted by listeners.
    pub accepted: u64,
    /// Packets no socket took (recorded in [`Host::captured`]).
    pub unclaimed: u64,
    /// RSTs sent for segments no socket took.
    pub rst_sent: u64,
    /// Packets that were not IPv4/IPv6 TCP or UDP.
    pub unparsed: u64,
}

/// One host's stack.
#[derive(Debug)]
pub struct Host {
    listeners: Vec<Listener>,
    conns: BTreeMap<ConnId, Socket>,
    by_tuple: HashMap<(SocketAddr, SocketAddr), ConnId>,
    next_id: u64,
    next_port: u16,
    rng: SimRng,
    mss: u16,
    out: VecDeque<Vec<u8>>,
    captured: Vec<Vec<u8>>,
    /// Answer segments no socket takes with RST, as a kernel does (on for targets;
    /// off for clients, whose tests send hand-made segments).
    pub rst_unmatched: bool,
    /// Counters.
    pub stats: HostStats,
}

impl Host {
    /// A host with no socket; `seed` drives its initial sequence numbers.
    pub fn new(seed: u64, mss: u16, rst_unmatched: bool) -> Host {
        Host {
            listeners: Vec::new(),
            conns: BTreeMap::new(),
            by_tuple: HashMap::new(),
            next_id: 1,
            next_port: 40000,
            rng: SimRng::new(seed, 0x7cb),
            mss,
            out: VecDeque::new(),
            captured: Vec::new(),
            rst_unmatched,
            stats: HostStats::default(),
        }
    }

    /// Listen on `addr:port` (TCP, and UDP if `udp`).
    pub fn listen(&mut self, addr: IpAddr, port: u16, app: App, udp: bool) {
        self.unlisten(addr, port);
        self.listeners.push(Listener {
            addr,
            port,
            app,
            udp,
        });
    }

    /// Stop listening on `addr:port` (open connections stay).
    pub fn unlisten(&mut self, addr: IpAddr, port: u16) {
        self.listeners
            .retain(|l| !(l.addr == addr && l.port == port));
    }

    /// The listening sockets.
    pub fn listeners(&self) -> &[Listener] {
        &self.listeners
    }

    /// The kernel's TCP socket table: listeners, and established connections.
    pub fn sockets(&self) -> Vec<ProcSocket> {
        let any = "0.0.0.0:0".parse().expect("literal");
        let mut v: Vec<ProcSocket> = self
            .listeners
            .iter()
            .map(|l| ProcSocket {
                local: SocketAddr::new(l.addr, l.port),
                remote: any,
                state: TCP_LISTEN,
            })
            .collect();
        for s in self.conns.values() {
            if s.tcp.state() == TcpState::Established {
                let (local, remote) = s.tcp.endpoints();
                v.push(ProcSocket {
                    local,
                    remote,
                    state: TCP_ESTABLISHED,
                });
            }
        }
        v
    }

    /// A free local port for a new connection.
    pub fn ephemeral_port(&mut self) -> u16 {
        self.next_port = self.next_port.checked_add(1).unwrap_or(40000);
        self.next_port
    }

    /// Open a connection driven by the test.
    pub fn connect(&mut self, now: Instant, local: SocketAddr, remote: SocketAddr) -> ConnId {
        let iss = self.rng.next_u64() as u32;
        let tcp = TcpConn::connect(now, local, remote, iss, self.mss);
        self.insert(tcp, AppState::Owned)
    }

    fn insert(&mut self, tcp: TcpConn, app: AppState) -> ConnId {
        let id = ConnId(self.next_id);
        self.next_id += 1;
        self.by_tuple.insert(tcp.endpoints(), id);
        self.conns.insert(id, Socket { tcp, app });
        self.collect();
        id
    }

    /// The connection `id`.
    pub fn conn(&self, id: ConnId) -> Option<&TcpConn> {
        self.conns.get(&id).map(|s| &s.tcp)
    }

    /// Connections accepted or opened, in order.
    pub fn conns(&self) -> impl Iterator<Item = (ConnId, &TcpConn)> {
        self.conns.iter().map(|(i, s)| (*i, &s.tcp))
    }

    /// Write on a connection.
    pub fn send(&mut self, now: Instant, id: ConnId, bytes: &[u8]) {
        if let Some(s) = self.conns.get_mut(&id) {
            s.tcp.send(now, bytes);
        }
        self.collect();
    }

    /// Close a connection (FIN after the data).
    pub fn close(&mut self, now: Instant, id: ConnId) {
        if let Some(s) = self.conns.get_mut(&id) {
            s.tcp.close(now);
        }
        self.collect();
    }

    /// Send a hand-made IP packet as this host.
    pub fn send_raw(&mut self, packet: Vec<u8>) {
        self.stats.tx += 1;
        self.out.push_back(packet);
    }

    /// Packets no socket took, and those of [`App::Capture`] listeners.
    pub fn captured(&self) -> &[Vec<u8>] {
        &self.captured
    }

    /// Take the captured packets.
    pub fn take_captured(&mut self) -> Vec<Vec<u8>> {
        std::mem::take(&mut self.captured)
    }

    /// Next IP packet the host sends.
    pub fn poll_output(&mut self) -> Option<Vec<u8>> {
        self.out.pop_front()
    }

    /// When [`Host::handle_timeout`] must run.
    pub fn next_timeout(&self) -> Option<Instant> {
        self.conns
            .values()
            .filter_map(|s| s.tcp.next_timeout())
            .min()
    }

    /// Retransmission timers.
    pub fn handle_timeout(&mut self, now: Instant) {
        for s in self.conns.values_mut() {
            s.tcp.handle_timeout(now);
        }
        self.run_apps(now);
    }

    /// An IP packet for this host.
    pub fn deliver(&mut self, now: Instant, packet: &[u8]) {
        self.stats.rx += 1;
        match packet::parse(packet) {
            Some(Parsed::Tcp {
                src,
                dst,
                seq,
                ack,
                flags: f,
                mss,
                payload,
            }) => {
                let seg = SegIn {
                    seq,
                    ack,
                    flags: f,
                    mss,
                    payload,
                };
                self.tcp_in(now, src, dst, &seg, packet);
            }
            Some(Parsed::Udp { src, dst, payload }) => self.udp_in(src, dst, payload, packet),
            None => {
                self.stats.unparsed += 1;
                self.capture(packet);
            }
        }
        self.run_apps(now);
    }

    fn capture(&mut self, packet: &[u8]) {
        self.stats.unclaimed += 1;
        self.captured.push(packet.to_vec());
    }

    fn tcp_in(
        &mut self,
        now: Instant,
        src: SocketAddr,
        dst: SocketAddr,
        s: &SegIn<'_>,
        raw: &[u8],
    ) {
        let fresh_syn = s.flags & (flags::SYN | flags::ACK) == flags::SYN;
        if let Some(id) = self.by_tuple.get(&(dst, src)).copied() {
            let done = self.conns.get(&id).is_some_and(|c| {
                matches!(
                    c.tcp.state(),
                    TcpState::Closed | TcpState::Reset | TcpState::TimedOut
                )
            });
            if !(done && fresh_syn) {
                if let Some(c) = self.conns.get_mut(&id) {
                    c.tcp.on_segment(now, s);
                }
                return;
            }
        }
        let app = self
            .listeners
            .iter()
            .find(|l| l.takes(dst))
            .map(|l| l.app.clone());
        match app {
            Some(App::Capture) => self.capture(raw),
            Some(app) if fresh_syn => {
                self.stats.accepted += 1;
                let iss = self.rng.next_u64() as u32;
                let tcp = TcpConn::accept(now, dst, src, s, iss, self.mss);
                let state = match app {
                    App::Http(name) => AppState::Http {
                        name,
                        req: Vec::new(),
                    },
                    _ => AppState::Echo,
                };
                self.insert(tcp, state);
            }
            _ => {
                self.capture(raw);
                if self.rst_unmatched && s.flags & flags::RST == 0 {
                    self.reset(src, dst, s);
                }
            }
        }
    }

    /// RFC 9293 §3.10.7.1: a segment for no connection gets a RST.
    fn reset(&mut self, src: SocketAddr, dst: SocketAddr, s: &SegIn<'_>) {
        let (seq, ack, f) = if s.flags & flags::ACK != 0 {
            (s.ack, 0, flags::RST)
        } else {
            let len = s.payload.len() as u32
                + u32::from(s.flags & flags::SYN != 0)
                + u32::from(s.flags & flags::FIN != 0);
            (0, s.seq.wrapping_add(len), flags::RST | flags::ACK)
        };
        let seg = TcpSeg {
            src: dst,
            dst: src,
            seq,
            ack,
            flags: f,
            window: 0,
            mss: None,
            payload: Vec::new(),
        };
        if let Some(p) = seg.build() {
            self.stats.rst_sent += 1;
            self.send_raw(p);
        }
    }

    fn udp_in(&mut self, src: SocketAddr, dst: SocketAddr, payload: &[u8], raw: &[u8]) {
        let app = self
            .listeners
            .iter()
            .find(|l| l.udp && l.takes(dst))
            .map(|l| l.app.clone());
        match app {
            Some(App::Echo) => {
                if let Some(p) = packet::udp(dst, src, payload) {
                    self.send_raw(p);
                }
            }
            _ => self.capture(raw),
        }
    }

    /// The applications read and answer; packets go to the output queue.
    fn run_apps(&mut self, now: Instant) {
        for s in self.conns.values_mut() {
            match &mut s.app {
                AppState::Echo => {
                    let got = s.tcp.take_received();
                    if !got.is_empty() {
                        s.tcp.send(now, &got);
                    }
                    if s.tcp.peer_closed() {
                        s.tcp.close(now);
                    }
                }
                AppState::Http { name, req } => {
                    req.extend(s.tcp.take_received());
                    if req.windows(4).any(|w| w == b"\r\n\r\n") {
                        req.clear();
                        let body = format!("served by {name}");
                        let resp = format!(
                            "HTTP/1.0 200 OK\r\nServer: {name}\r\nContent-Length: {}\r\n\r\n{body}",
                            body.len()
                        );
                        s.tcp.send(now, resp.as_bytes());
                        s.tcp.close(now);
                    }
                }
                AppState::Owned => {}
            }
        }
        self.collect();
    }

    fn collect(&mut self) {
        for s in self.conns.values_mut() {
            while let Some(p) = s.tcp.poll_packet() {
                self.stats.tx += 1;
                self.out.push_back(p);
            }
        }
    }
}
