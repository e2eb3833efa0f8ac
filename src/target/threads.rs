//! The target's threads, each blocked on one socket or device and driving the one
//! [`TargetStack`] behind a mutex, taken once per batch: per link address a GRE
//! receiver (GRE → anti-spoof → TUN, one coalescing TUN write pass per batch) and
//! a cluster receiver (source and link checked by the stack); the TUN reader
//! (replies → GRE to the DVIPA's routing gateway on its link, or straight out);
//! and the timer, which sleeps until the stack's next deadline
//! ([`TargetStack::next_timeout`]) or the next scan of the host's sockets,
//! whichever comes first.

use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use distrib::TargetStack;
use plexgate_distrib as distrib;

use super::io::TargetIo;
use crate::io::link;
use crate::io::net::{self, RecvBatch, SendBatch};
use crate::io::tun::{TunBatch, TunReader};

type Shared = Arc<Mutex<TargetStack>>;

/// How often the listening sockets are read (SRVSTAT changes): the kernel
/// announces no listen(2), so this is polled, with sock_diag (cheap).
const LISTENER_SCAN: Duration = Duration::from_millis(250);
/// How often established connections are read: only those the stack does not
/// know yet matter (after a restart of the daemon).
const ESTABLISHED_SCAN: Duration = Duration::from_secs(2);

fn lock(s: &Shared) -> MutexGuard<'_, TargetStack> {
    s.lock().unwrap_or_else(|e| e.into_inner())
}

fn spawn(name: String, f: impl FnOnce() + Send + 'static) -> JoinHandle<()> {
    std::thread::Builder::new()
        .name(name)
        .spawn(f)
        .expect("spawn thread")
}

/// Start every thread.
pub(super) fn spawn_all(stack: &Shared, io: &Arc<TargetIo>) -> Vec<JoinHandle<()>> {
    let mut threads = Vec::new();
    for i in 0..io.sockets.len() {
        threads.push(gre_thread(i, stack, io));
        threads.push(cluster_thread(i, stack, io));
    }
    threads.push(tun_thread(stack, io));
    threads.push(timer_thread(stack, io));
    threads
}

/// GRE on link address `i` → anti-spoof → TUN.
fn gre_thread(i: usize, stack: &Shared, io: &Arc<TargetIo>) -> JoinHandle<()> {
    let (stack, io) = (stack.clone(), io.clone());
    spawn(format!("gre-{i}"), move || {
        let link = &io.sockets[i];
        let mut b = RecvBatch::new();
        let mut to_tun = TunBatch::new();
        loop {
            let n = match b.recv(net::fd_of(&link.gre)) {
                Ok(n) => n,
                Err(e) => {
                    tracing::error!("GRE on {}: {e}", link.local);
                    std::thread::sleep(Duration::from_millis(100));
                    continue;
                }
            };
            if n == 0 {
                continue;
            }
            let now = Instant::now();
            {
                let mut s = lock(&stack);
                for k in 0..n {
                    let (buf, len, from) = b.slot_mut(k);
                    let Some((src, off)) = link::gre_outer(&buf[..len], from) else {
                        continue;
                    };
                    let l = link.link_of(src);
                    if let Ok(inner) = s.receive_gre(now, l, src, &mut buf[off..len]) {
                        to_tun.push(&io.tun, inner);
                    }
                }
                io.flush(&mut s);
            }
            to_tun.flush(&io.tun);
        }
    })
}

/// Cluster messages on link address `i`, checked against the sender's link.
fn cluster_thread(i: usize, stack: &Shared, io: &Arc<TargetIo>) -> JoinHandle<()> {
    let (stack, io) = (stack.clone(), io.clone());
    spawn(format!("cluster-{i}"), move || {
        let link = &io.sockets[i];
        let mut buf = vec![0u8; 65536];
        loop {
            // SAFETY: u8 and MaybeUninit<u8> have the same layout; the kernel
            // writes initialised bytes only.
            let ub = unsafe {
                &mut *(buf.as_mut_slice() as *mut [u8] as *mut [std::mem::MaybeUninit<u8>])
            };
            let Ok((n, from)) = link.cluster.recv_from(ub) else {
                continue;
            };
            let Some(src) = from.as_socket().map(|a| a.ip()) else {
                continue;
            };
            let arrival = distrib::Arrival {
                link: link.link_of(src),
                src,
            };
            let now = Instant::now();
            let mut s = lock(&stack);
            if let Err(e) = s.handle_cluster_from(now, arrival, &buf[..n]) {
                tracing::debug!("cluster message from {src} dropped: {e}");
            }
            io.flush(&mut s);
        }
    })
}

/// TUN (packets from a DVIPA) → GRE to the routing gateway on its link, or
/// straight out; a read may be a TCP super-packet, split into segments; one
/// `sendmmsg` per socket per batch.
fn tun_thread(stack: &Shared, io: &Arc<TargetIo>) -> JoinHandle<()> {
    const HEAD: usize = 64;
    let (stack, io) = (stack.clone(), io.clone());
    spawn("tun".into(), move || {
        let mut reader = TunReader::new(HEAD);
        let mut gre: Vec<SendBatch> = io.sockets.iter().map(|_| SendBatch::new()).collect();
        let (mut direct4, mut direct6) = (SendBatch::new(), SendBatch::new());
        loop {
            if reader.read(&io.tun, Duration::from_millis(200)) == 0 {
                continue;
            }
            let now = Instant::now();
            {
                let mut s = lock(&stack);
                for (buf, len) in reader.packets_mut() {
                    let pkt = HEAD..HEAD + len;
                    match s.route_tun(now, &mut buf[pkt.clone()]) {
                        distrib::TunRoute::ToGateway {
                            gateway,
                            remote,
                            key,
                        } => {
                            let Some(i) = io.socket_of(gateway) else {
                                continue;
                            };
                            let first = buf[HEAD];
                            let framed = HEAD - 8..pkt.end;
                            if distrib::gre::write_header(key, first, &mut buf[framed.clone()], len)
                                .is_ok()
                            {
                                gre[i].push(
                                    &io.sockets[i].gre,
                                    &buf[framed],
                                    std::net::SocketAddr::new(remote, 0),
                                );
                            }
                        }
                        distrib::TunRoute::Direct => {
                            let Some(dst) = link::ip_dst(&buf[pkt.clone()]) else {
                                continue;
                            };
                            let (batch, sock) = match dst {
                                std::net::IpAddr::V4(_) => (&mut direct4, Some(&io.direct4)),
                                std::net::IpAddr::V6(_) => (&mut direct6, io.direct6.as_ref()),
                            };
                            if let Some(sock) = sock {
                                batch.push(sock, &buf[pkt], std::net::SocketAddr::new(dst, 0));
                            }
                        }
                        distrib::TunRoute::Drop(_) => {}
                    }
                }
                io.flush(&mut s);
            }
            for (i, b) in gre.iter_mut().enumerate() {
                b.flush(&io.sockets[i].gre);
            }
            direct4.flush(&io.direct4);
            if let Some(s) = &io.direct6 {
                direct6.flush(s);
            }
        }
    })
}

/// TCP sockets in `states` from sock_diag, or from `/proc/net/tcp*` when netlink is
/// refused; an empty list (logged) when neither answers.
fn tcp_sockets(states: u32) -> Vec<distrib::listeners::ProcSocket> {
    match crate::io::sockdiag::tcp_sockets(states) {
        Ok(v) => v,
        Err(e) => {
            tracing::debug!("sock_diag: {e}; reading /proc/net/tcp instead");
            match distrib::listeners::read_listeners() {
                Ok(mut v) => {
                    v.retain(|s| states & crate::io::sockdiag::state_bit(s.state) != 0);
                    v
                }
                Err(e) => {
                    tracing::warn!("cannot read the host's TCP sockets: {e}");
                    Vec::new()
                }
            }
        }
    }
}

/// The timer: socket scans (SRVSTAT, NEWCONN for unknown connections) when due,
/// the stack's timers (CONNEND, Keepalives) when due, then sleep until the
/// earliest next deadline. No call from another thread moves the stack's
/// deadline earlier (they are set by `handle_timeout` only), so the sleep needs
/// no wake-up.
fn timer_thread(stack: &Shared, io: &Arc<TargetIo>) -> JoinHandle<()> {
    let (stack, io) = (stack.clone(), io.clone());
    spawn("timer".into(), move || {
        let start = Instant::now();
        let (mut listeners_at, mut established_at) = (start, start);
        loop {
            let now = Instant::now();
            let listeners = (now >= listeners_at).then(|| tcp_sockets(crate::io::sockdiag::LISTEN));
            let established =
                (now >= established_at).then(|| tcp_sockets(crate::io::sockdiag::ESTABLISHED));
            let next = {
                let mut s = lock(&stack);
                if let Some(l) = &listeners {
                    let changes = s.update_listeners(l);
                    if changes > 0 {
                        tracing::info!("{changes} listener change(s) reported (SRVSTAT)");
                    }
                    listeners_at = now + LISTENER_SCAN;
                }
                // Connections on served DVIPAs that this stack does not know (after
                // a restart of the daemon, or served before the DVIPA list arrived)
                // are reported with NEWCONN so the gateway keeps them here.
                if let Some(e) = &established {
                    let learnt = s.learn_established(now, e);
                    if learnt > 0 {
                        tracing::info!("{learnt} existing DVIPA connection(s) reported (NEWCONN)");
                    }
                    established_at = now + ESTABLISHED_SCAN;
                }
                if s.next_timeout().is_none_or(|t| now >= t) {
                    s.handle_timeout(now);
                }
                io.flush(&mut s);
                s.next_timeout()
            };
            let wake = [Some(listeners_at), Some(established_at), next]
                .into_iter()
                .flatten()
                .min()
                .unwrap_or(listeners_at);
            std::thread::sleep(wake.saturating_duration_since(Instant::now()));
        }
    })
}
