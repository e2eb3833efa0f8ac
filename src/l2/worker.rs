//! The L2 agent's thread: one loop that owns the [`L2`] machine, a packet socket
//! per interface, a netlink link watch and the kernel guard. It blocks in `poll(2)`
//! on all of them (and on a wake-up socket for commands from the handle) until the
//! machine's next timer, and then: applies commands, re-reads link states when the
//! watch fired (or every `link_poll`), feeds received ARP frames to the machine,
//! fires timers, sends what the machine queued and logs its events.

use std::collections::VecDeque;
use std::net::Ipv4Addr;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixDatagram;
use std::sync::mpsc::{Receiver, Sender};
use std::time::{Duration, Instant};

use plexgate_ha::l2::{AddressKind, Event, IfaceId, Status, L2};

use super::kernel::KernelGuard;
use crate::io::packet::{self, LinkWatch, PacketSocket, PacketType};

/// Events kept for [`super::L2Agent::events`].
const EVENT_LOG: usize = 256;
/// Frames read from one socket per loop turn, so one busy interface cannot starve
/// the others or the commands.
const RX_BUDGET: usize = 256;

/// A request from the handle.
pub(super) enum Cmd {
    SetActive(Ipv4Addr, bool, Sender<Result<(), String>>),
    Status(Sender<Status>),
    Events(Sender<Vec<Event>>),
    Stop(Sender<Vec<String>>),
}

struct Port {
    name: String,
    socket: Option<PacketSocket>,
}

pub(super) struct Worker {
    pub(super) l2: L2,
    ports: Vec<Port>,
    watch: Option<LinkWatch>,
    pub(super) kernel: KernelGuard,
    wake: UnixDatagram,
    cmds: Receiver<Cmd>,
    link_poll: Duration,
    next_link_poll: Instant,
    events: VecDeque<Event>,
    send_errors: u64,
}

impl Worker {
    pub(super) fn new(
        l2: L2,
        kernel: KernelGuard,
        wake: UnixDatagram,
        cmds: Receiver<Cmd>,
        link_poll: Duration,
    ) -> Worker {
        let ports = l2
            .config()
            .interfaces
            .iter()
            .map(|i| Port {
                name: i.name.clone(),
                socket: None,
            })
            .collect();
        let watch = LinkWatch::open()
            .map_err(|e| {
                tracing::warn!("l2: no link notifications ({e}); polling links every {link_poll:?}")
            })
            .ok();
        Worker {
            l2,
            ports,
            watch,
            kernel,
            wake,
            cmds,
            link_poll,
            next_link_poll: Instant::now(),
            events: VecDeque::new(),
            send_errors: 0,
        }
    }

    /// Runs until a `Stop` command or until the handle is gone.
    pub(super) fn run(mut self) {
        self.refresh_links(Instant::now());
        loop {
            let now = Instant::now();
            if let Some(done) = self.commands(now) {
                self.shutdown(done);
                return;
            }
            if now >= self.next_link_poll {
                self.refresh_links(now);
            }
            self.receive(now);
            if self.l2.poll_timeout().is_some_and(|t| t <= now) {
                self.l2.handle_timeout(now);
            }
            self.flush();
            self.wait();
        }
    }

    /// Applies pending commands; `Some(reply)` when asked to stop (or orphaned).
    fn commands(&mut self, now: Instant) -> Option<Option<Sender<Vec<String>>>> {
        let mut buf = [0u8; 64];
        while self.wake.recv(&mut buf).is_ok() {}
        loop {
            match self.cmds.try_recv() {
                Ok(Cmd::SetActive(addr, active, reply)) => {
                    let r = self.set_active(now, addr, active);
                    self.flush();
                    let _ = reply.send(r);
                }
                Ok(Cmd::Status(reply)) => {
                    let _ = reply.send(self.l2.status());
                }
                Ok(Cmd::Events(reply)) => {
                    let _ = reply.send(self.events.iter().cloned().collect());
                }
                Ok(Cmd::Stop(reply)) => return Some(Some(reply)),
                Err(std::sync::mpsc::TryRecvError::Empty) => return None,
                Err(std::sync::mpsc::TryRecvError::Disconnected) => return Some(None),
            }
        }
    }

    /// Active: the kernel gets the address first, then the machine announces it.
    /// Standby: the machine falls silent first, then the kernel lets go.
    fn set_active(&mut self, now: Instant, addr: Ipv4Addr, active: bool) -> Result<(), String> {
        let kind = self
            .l2
            .config()
            .addresses
            .iter()
            .find(|a| a.address == addr)
            .map(|a| a.kind)
            .ok_or_else(|| format!("{addr} is not an address this gateway may own"))?;
        let placed = kind != AddressKind::ProxyVipa;
        if active && placed {
            self.kernel.place(addr).map_err(|e| e.to_string())?;
        }
        self.l2
            .set_active(now, addr, active)
            .map_err(|e| e.to_string())?;
        if !active && placed {
            self.kernel.remove(addr).map_err(|e| e.to_string())?;
        }
        Ok(())
    }

    fn shutdown(&mut self, reply: Option<Sender<Vec<String>>>) {
        self.l2.stop(Instant::now());
        self.flush();
        let errors = self.kernel.restore();
        for e in &errors {
            tracing::warn!("l2: {e}");
        }
        if let Some(r) = reply {
            let _ = r.send(errors);
        }
    }

    /// Re-reads every interface's state; (re)opens packet sockets as needed.
    fn refresh_links(&mut self, now: Instant) {
        if let Some(w) = &self.watch {
            w.drain();
        }
        self.next_link_poll = now + self.link_poll;
        for i in 0..self.ports.len() {
            let id = IfaceId(i);
            let st = match packet::link_state(&self.ports[i].name) {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!("l2: reading {}: {e}", self.ports[i].name);
                    None
                }
            };
            let Some(st) = st else {
                self.ports[i].socket = None;
                self.l2.set_link(now, id, false, None);
                continue;
            };
            if self.ports[i].socket.as_ref().map(PacketSocket::ifindex) != Some(st.index) {
                // New or re-created: its sysctls are the defaults again.
                if let Err(e) = self.kernel.quiet_iface(&self.ports[i].name) {
                    tracing::warn!("l2: {e}");
                }
                self.ports[i].socket = self.open_port(id, st.index);
            }
            let up = st.up && self.ports[i].socket.is_some();
            self.l2.set_link(now, id, up, st.mac);
        }
    }

    fn open_port(&self, id: IfaceId, index: i32) -> Option<PacketSocket> {
        let name = &self.ports[id.0].name;
        let s = PacketSocket::open(index)
            .map_err(|e| tracing::warn!("l2: packet socket on {name}: {e}"))
            .ok()?;
        for mac in self.l2.multicast_macs(id) {
            if let Err(e) = s.join(mac) {
                tracing::warn!("l2: joining {mac} on {name}: {e}");
            }
        }
        Some(s)
    }

    fn receive(&mut self, now: Instant) {
        let mut buf = [0u8; 1600];
        let mut relink = false;
        for i in 0..self.ports.len() {
            for _ in 0..RX_BUDGET {
                let Some(s) = &self.ports[i].socket else {
                    break;
                };
                match s.recv(&mut buf) {
                    Ok(Some((n, kind))) => {
                        // Our own and the kernel's transmissions, and frames for
                        // other hosts, are not requests to us.
                        if !matches!(kind, PacketType::Outgoing | PacketType::OtherHost) {
                            self.l2.handle_frame(now, IfaceId(i), &buf[..n]);
                        }
                    }
                    Ok(None) => break,
                    Err(e) => {
                        // ENETDOWN once after the link went down: re-read links.
                        tracing::debug!("l2: receive on {}: {e}", self.ports[i].name);
                        relink = true;
                        break;
                    }
                }
            }
        }
        if relink {
            self.next_link_poll = now;
        }
    }

    /// Sends what the machine queued and logs its events.
    pub(super) fn flush(&mut self) {
        while let Some(t) = self.l2.poll_transmit() {
            let port = &self.ports[t.iface.0];
            let r = match &port.socket {
                Some(s) => s.send(&t.frame),
                None => Err(std::io::Error::other("no socket")),
            };
            if let Err(e) = r {
                self.send_errors += 1;
                if self.send_errors.is_power_of_two() {
                    tracing::warn!(
                        "l2: send on {}: {e} ({} send errors)",
                        port.name,
                        self.send_errors
                    );
                }
            }
        }
        while let Some(e) = self.l2.poll_event() {
            match e {
                Event::Conflict { .. } | Event::Waiting { .. } => tracing::warn!("{e}"),
                _ => tracing::info!("{e}"),
            }
            if self.events.len() == EVENT_LOG {
                self.events.pop_front();
            }
            self.events.push_back(e);
        }
    }

    fn wait(&mut self) {
        let now = Instant::now();
        let mut until = self.next_link_poll;
        if let Some(t) = self.l2.poll_timeout() {
            until = until.min(t);
        }
        let mut fds = vec![self.wake.as_raw_fd()];
        let watch_at = self.watch.as_ref().map(|w| {
            fds.push(w.as_raw_fd());
            fds.len() - 1
        });
        fds.extend(
            self.ports
                .iter()
                .filter_map(|p| p.socket.as_ref().map(|s| s.as_raw_fd())),
        );
        match packet::wait(&fds, until.saturating_duration_since(now)) {
            Ok(ready) => {
                if watch_at.is_some_and(|k| ready[k]) {
                    self.next_link_poll = Instant::now();
                }
            }
            Err(e) => {
                tracing::warn!("l2: poll: {e}");
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }
}
