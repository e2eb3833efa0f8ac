//! The gateway's sockets and TUN device, the [`Sink`] that writes the core's
//! outputs to them (at once, or batched per receive), and the receive threads
//! that hand each `recvmmsg` batch to the core under one lock acquisition.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use plexgate_distrib as distrib;
use socket2::Socket;

use super::core::{GatewayCore, RxBatch, Sink};
use super::Waker;
use crate::io::net::{self, RecvBatch, SendBatch, UdpSendBatch};
use crate::io::tun::{Tun, TunBatch};

/// The sockets every thread sends on.
pub(super) struct Io {
    pub(super) udp: HashMap<SocketAddr, Arc<Socket>>,
    pub(super) esp: Option<Arc<Socket>>,
    /// GRE over IPv4 links, and over IPv6 links (when the host has IPv6).
    pub(super) gre: Arc<Socket>,
    pub(super) gre6: Option<Arc<Socket>>,
    pub(super) tun: Arc<Tun>,
    /// Cluster sockets, each bound to one link address (or `[ha] address`).
    pub(super) cluster: Vec<ClusterSocket>,
    /// Where each cluster node is sent to: (index in `cluster`, its address).
    pub(super) cluster_to: HashMap<distrib::NodeId, (usize, SocketAddr)>,
}

/// A cluster socket bound to one of this gateway's link addresses (or to its
/// `[ha] address`, for the other gateways): what arrives on it arrived on `link`.
pub(super) struct ClusterSocket {
    pub(super) link: distrib::LinkId,
    pub(super) local: SocketAddr,
    pub(super) sock: Arc<Socket>,
}

/// What one batch of received packets produced for the data-path sockets: written
/// with one `sendmmsg` per socket and one coalescing TUN write pass, after the core
/// lock is released (the TUN write runs the receiving stack in the writer's context).
#[derive(Default)]
pub(super) struct Out {
    tun: TunBatch,
    esp: SendBatch,
    gre: SendBatch,
    gre6: SendBatch,
    /// Per local UDP socket (IKE and ESP-in-UDP), sent with UDP GSO where it can.
    udp: Vec<(SocketAddr, UdpSendBatch)>,
}

impl Out {
    pub(super) fn flush(&mut self, io: &Io) {
        if let Some(s) = &io.esp {
            self.esp.flush(s);
        }
        for (local, b) in &mut self.udp {
            if let Some(s) = io.udp.get(local) {
                b.flush(s);
            }
        }
        self.gre.flush(&io.gre);
        if let Some(s) = &io.gre6 {
            self.gre6.flush(s);
        }
        self.tun.flush(&io.tun);
    }
}

/// A [`Sink`] that writes to the real sockets: at once, or into an [`Out`] batch.
pub(super) struct IoSink<'a> {
    io: &'a Io,
    out: Option<&'a mut Out>,
}

impl<'a> IoSink<'a> {
    /// Every output is sent at once (control plane, timers).
    pub(super) fn direct(io: &'a Io) -> Self {
        IoSink { io, out: None }
    }
    /// ESP, GRE and TUN outputs wait in `out` until [`Out::flush`].
    pub(super) fn batched(io: &'a Io, out: &'a mut Out) -> Self {
        IoSink { io, out: Some(out) }
    }
}

impl Sink for IoSink<'_> {
    fn udp(&mut self, local: SocketAddr, remote: SocketAddr, data: &[u8]) {
        let found = self
            .io
            .udp
            .get_key_value(&local)
            .or_else(|| self.io.udp.iter().find(|(a, _)| a.port() == local.port()));
        let Some((addr, s)) = found else {
            return;
        };
        match self.out.as_deref_mut() {
            Some(o) => {
                let i = match o.udp.iter().position(|(a, _)| a == addr) {
                    Some(i) => i,
                    None => {
                        o.udp.push((*addr, UdpSendBatch::new()));
                        o.udp.len() - 1
                    }
                };
                o.udp[i].1.push(s, data, remote);
            }
            None => {
                if let Err(e) = net::send_to(s, data, remote) {
                    tracing::debug!("udp send to {remote}: {e}");
                }
            }
        }
    }
    fn esp(&mut self, _local: IpAddr, remote: IpAddr, data: &[u8]) {
        if let Some(s) = &self.io.esp {
            let to = SocketAddr::new(remote, 0);
            match self.out.as_deref_mut() {
                Some(o) => o.esp.push(s, data, to),
                None => {
                    let _ = net::send_to(s, data, to);
                }
            }
        }
    }
    fn gre(&mut self, remote: IpAddr, data: &[u8]) {
        let to = SocketAddr::new(remote, 0);
        let sock = match (remote, &self.io.gre6) {
            (IpAddr::V4(_), _) => &self.io.gre,
            (IpAddr::V6(_), Some(s)) => s,
            (IpAddr::V6(_), None) => return,
        };
        match self.out.as_deref_mut() {
            Some(o) if remote.is_ipv6() => o.gre6.push(sock, data, to),
            Some(o) => o.gre.push(sock, data, to),
            None => {
                if let Err(e) = net::send_to(sock, data, to) {
                    tracing::debug!("gre send to {remote}: {e}");
                }
            }
        }
    }
    fn tun(&mut self, packet: &[u8]) {
        match self.out.as_deref_mut() {
            Some(o) => o.tun.push(&self.io.tun, packet),
            None => {
                let _ = self.io.tun.send(packet);
            }
        }
    }
    fn cluster(&mut self, to: distrib::Destination, data: &[u8]) {
        // Each node on the socket of its link: the source is our address there.
        let send = |(i, a): &(usize, SocketAddr)| {
            if let Err(e) = net::send_to(&self.io.cluster[*i].sock, data, *a) {
                tracing::debug!("cluster send to {a}: {e}");
            }
        };
        match to {
            distrib::Destination::Broadcast => self.io.cluster_to.values().for_each(send),
            distrib::Destination::Node(n) => {
                if let Some(x) = self.io.cluster_to.get(&n) {
                    send(x)
                }
            }
        }
    }
}

/// How the datagrams of a socket are framed.
#[derive(Clone, Copy)]
pub(super) enum Framing {
    /// UDP payloads; with `gro`, a receive may hold several datagrams (UDP GRO).
    Udp { gro: bool },
    /// Raw IPv4 sockets: the outer IPv4 header comes first; `remote` is its source.
    RawIpv4,
    /// Raw IPv6 sockets: no IP header (RFC 3542 §3); `remote` is the address
    /// `recvmmsg` reported.
    RawIpv6,
}

/// One receive batch as the core's [`super::core::RxBatch`]: each datagram, or each
/// segment of a coalesced UDP GRO receive, in the order they arrived.
pub(super) struct Received<'a> {
    b: &'a mut RecvBatch,
    /// (slot, start, length) of each packet.
    items: &'a [(usize, usize, usize)],
    framing: Framing,
}

impl RxBatch for Received<'_> {
    fn count(&self) -> usize {
        self.items.len()
    }
    fn packet(&mut self, i: usize) -> Option<super::core::RxPacket<'_>> {
        let &(slot, start, len) = self.items.get(i)?;
        let (buf, _, from) = self.b.slot_mut(slot);
        match self.framing {
            Framing::Udp { .. } => Some(super::core::RxPacket {
                buf: &mut buf[..],
                start,
                len,
                remote: from,
            }),
            Framing::RawIpv6 => Some(super::core::RxPacket {
                buf: &mut buf[..],
                start,
                len,
                remote: from,
            }),
            Framing::RawIpv4 => {
                let (src, ihl) = net::ipv4_outer(buf.get(start..start + len)?)?;
                Some(super::core::RxPacket {
                    buf: &mut buf[..],
                    start: start + ihl,
                    len: len - ihl,
                    remote: Some(SocketAddr::new(src, 0)),
                })
            }
        }
    }
}

/// A thread that receives batches with `recvmmsg` on `sock` and hands each batch
/// to `handle` under one acquisition of the core lock; the outputs are written
/// after the lock is released.
pub(super) fn receive_thread(
    name: &str,
    sock: Arc<Socket>,
    core: &Arc<Mutex<GatewayCore>>,
    io: &Arc<Io>,
    framing: Framing,
    waker: &Arc<Waker>,
    mut handle: impl FnMut(&mut GatewayCore, Instant, &mut Received<'_>, &mut IoSink<'_>)
        + Send
        + 'static,
) -> std::thread::JoinHandle<()> {
    let (core, io, label, waker) = (core.clone(), io.clone(), name.to_string(), waker.clone());
    spawn(name, move || {
        let mut b = match framing {
            Framing::Udp { gro: true } => RecvBatch::for_gro(),
            _ => RecvBatch::new(),
        };
        let mut items: Vec<(usize, usize, usize)> = Vec::with_capacity(4 * net::BATCH);
        let mut out = Out::default();
        loop {
            let n = match b.recv(net::fd_of(&sock)) {
                Ok(0) => continue,
                Ok(n) => n,
                Err(e) => {
                    tracing::error!("{label}: {e}");
                    std::thread::sleep(Duration::from_millis(100));
                    continue;
                }
            };
            items.clear();
            for i in 0..n {
                items.extend(b.segments(i).map(|(start, len)| (i, start, len)));
            }
            let now = Instant::now();
            {
                let mut c = core.lock().unwrap_or_else(|e| e.into_inner());
                let mut sink = IoSink::batched(&io, &mut out);
                let mut batch = Received {
                    b: &mut b,
                    items: &items,
                    framing,
                };
                handle(&mut c, now, &mut batch, &mut sink);
                waker.after_core_call(&c);
            }
            out.flush(&io);
        }
    })
}

pub(super) fn spawn(name: &str, f: impl FnOnce() + Send + 'static) -> std::thread::JoinHandle<()> {
    std::thread::Builder::new()
        .name(name.into())
        .spawn(f)
        .expect("spawn thread")
}

pub(super) fn as_uninit(buf: &mut [u8]) -> &mut [std::mem::MaybeUninit<u8>] {
    // SAFETY: u8 and MaybeUninit<u8> have the same layout; we only let the kernel write.
    unsafe { &mut *(buf as *mut [u8] as *mut [std::mem::MaybeUninit<u8>]) }
}

pub(super) fn raw_esp_socket() -> std::io::Result<Socket> {
    let s = Socket::new(
        socket2::Domain::IPV4,
        socket2::Type::RAW,
        Some(socket2::Protocol::from(50)),
    )?;
    // Room for the bursts that sendmmsg on the other tunnel end produces.
    let _ = s.set_recv_buffer_size(4 << 20);
    let _ = s.set_send_buffer_size(4 << 20);
    s.set_read_timeout(Some(Duration::from_millis(200)))?;
    Ok(s)
}
