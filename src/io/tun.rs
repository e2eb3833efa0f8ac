//! The TUN device: where decrypted traffic for the host itself (or a site behind it)
//! is written, and where the kernel hands plexgate the packets routed to it (plain
//! traffic for a DVIPA, outbound traffic that the SPD must protect). On a target it is
//! where GRE-decapsulated packets enter the kernel, which delivers them to the
//! applications bound on the DVIPA.
//!
//! We use `tun-rs` (maintained, multi-queue and offload capable) rather than the
//! unmaintained `tun-tap`; see `docs/dependencies.md`.

use std::io;
use std::net::Ipv4Addr;
use std::time::Duration;

use tun_rs::{DeviceBuilder, SyncDevice};

/// A layer-3 TUN device without packet information headers.
pub struct Tun {
    dev: SyncDevice,
    name: String,
}

impl Tun {
    /// Create (or reuse) the device `name` with `addr/prefix` and `mtu`, up.
    pub fn open(name: &str, addr: Option<(Ipv4Addr, u8)>, mtu: u16) -> io::Result<Tun> {
        let mut b = DeviceBuilder::new()
            .name(name)
            .mtu(mtu)
            .packet_information(false);
        if let Some((a, p)) = addr {
            b = b.ipv4(a, p, None);
        }
        let dev = b.build_sync()?;
        // Non-blocking reads: a busy reader drains the queue with one read(2) per
        // packet and polls only when it is empty.
        dev.set_nonblocking(true)?;
        Ok(Tun {
            dev,
            name: name.to_string(),
        })
    }

    /// The device name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Read one packet; `Ok(0)` after `timeout` with nothing to read.
    pub fn recv_timeout(&self, buf: &mut [u8], timeout: Duration) -> io::Result<usize> {
        use std::os::fd::AsRawFd;
        match self.dev.recv(buf) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            other => return other,
        }
        let mut pfd = libc::pollfd {
            fd: self.dev.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd on the stack.
        let r = unsafe { libc::poll(&mut pfd, 1, timeout.as_millis() as i32) };
        if r <= 0 {
            return Ok(0);
        }
        match self.dev.recv(buf) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(0),
            other => other,
        }
    }

    /// Read one packet without waiting; `Ok(0)` when none is queued.
    pub fn try_recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        self.recv_timeout(buf, Duration::ZERO)
    }

    /// Write one IP packet into the kernel.
    pub fn send(&self, packet: &[u8]) -> io::Result<usize> {
        self.dev.send(packet)
    }
}
