//! The TUN device: where decrypted traffic for the host itself (or a site behind it)
//! is written, and where the kernel hands plexgate the packets routed to it (plain
//! traffic for a DVIPA, outbound traffic that the SPD must protect). On a target it is
//! where GRE-decapsulated packets enter the kernel, which delivers them to the
//! applications bound on the DVIPA.
//!
//! We use `tun-rs` (maintained, multi-queue and offload capable) rather than the
//! unmaintained `tun-tap`; see `docs/dependencies.md`.
//!
//! With offload (the gateway's TUN), the device is opened with `IFF_VNET_HDR` and
//! TSO/checksum offloads: every read and write carries a `virtio_net_hdr`, the kernel
//! hands us TCP super-packets of up to 64 KB (which `recv_batch` splits into
//! MTU-sized segments with correct checksums before they are sealed, so what goes on
//! the wire is unchanged), and `send_batch` coalesces consecutive TCP segments of one
//! flow into one super-packet (GRO) before writing: one kernel traversal per batch
//! instead of one per 1400-byte packet.

use std::io;
use std::net::Ipv4Addr;
use std::os::fd::AsRawFd;
use std::time::Duration;

use tun_rs::{DeviceBuilder, GROTable, SyncDevice};

pub use tun_rs::{IDEAL_BATCH_SIZE, VIRTIO_NET_HDR_LEN};

/// A layer-3 TUN device without packet information headers.
pub struct Tun {
    dev: SyncDevice,
    name: String,
    offload: bool,
}

impl Tun {
    /// Create (or reuse) the device `name` with `addr/prefix` and `mtu`, up.
    pub fn open(name: &str, addr: Option<(Ipv4Addr, u8)>, mtu: u16) -> io::Result<Tun> {
        Self::open_with(name, addr, mtu, false)
    }

    /// As [`Tun::open`], with `IFF_VNET_HDR` + TSO/GRO offloads when `offload`.
    pub fn open_with(
        name: &str,
        addr: Option<(Ipv4Addr, u8)>,
        mtu: u16,
        offload: bool,
    ) -> io::Result<Tun> {
        let mut b = DeviceBuilder::new()
            .name(name)
            .mtu(mtu)
            .packet_information(false)
            .offload(offload);
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
            offload,
        })
    }

    /// The device name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether reads and writes carry a `virtio_net_hdr` (offloads on).
    pub fn offload(&self) -> bool {
        self.offload
    }

    fn wait_readable(&self, timeout: Duration) -> bool {
        let mut pfd = libc::pollfd {
            fd: self.dev.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd on the stack.
        let r = unsafe { libc::poll(&mut pfd, 1, timeout.as_millis() as i32) };
        r > 0
    }

    /// Read one packet; `Ok(0)` after `timeout` with nothing to read. Only for a
    /// device opened without offload.
    pub fn recv_timeout(&self, buf: &mut [u8], timeout: Duration) -> io::Result<usize> {
        match self.dev.recv(buf) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            other => return other,
        }
        if !self.wait_readable(timeout) {
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

    /// Read one packet (with offload: one super-packet, split into segments) into
    /// `bufs[i][offset..offset + sizes[i]]`; returns how many packets. `Ok(0)` after
    /// `timeout` with nothing to read. `scratch` holds the raw read (64 KB + header).
    pub fn recv_batch(
        &self,
        scratch: &mut [u8],
        bufs: &mut [Vec<u8>],
        sizes: &mut [usize],
        offset: usize,
        timeout: Duration,
    ) -> io::Result<usize> {
        match self.dev.recv_multiple(scratch, bufs, sizes, offset) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            other => return other,
        }
        if timeout.is_zero() || !self.wait_readable(timeout) {
            return Ok(0);
        }
        match self.dev.recv_multiple(scratch, bufs, sizes, offset) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(0),
            other => other,
        }
    }

    /// Write the packets `bufs[i][offset..]`, each with `offset ≥ VIRTIO_NET_HDR_LEN`
    /// bytes free in front; with offload, TCP segments of one flow are coalesced first
    /// (the buffers are modified and may grow up to their capacity).
    pub fn send_batch(
        &self,
        gro: &mut GROTable,
        bufs: &mut [Vec<u8>],
        offset: usize,
    ) -> io::Result<usize> {
        self.dev.send_multiple(gro, bufs, offset)
    }

    /// Write one IP packet into the kernel.
    pub fn send(&self, packet: &[u8]) -> io::Result<usize> {
        if !self.offload {
            return self.dev.send(packet);
        }
        // A zero virtio_net_hdr (GSO_NONE, checksum already complete) in front.
        let hdr = [0u8; VIRTIO_NET_HDR_LEN];
        let iov = [
            libc::iovec {
                iov_base: hdr.as_ptr() as *mut _,
                iov_len: hdr.len(),
            },
            libc::iovec {
                iov_base: packet.as_ptr() as *mut _,
                iov_len: packet.len(),
            },
        ];
        // SAFETY: two iovecs pointing at live buffers for the duration of the call.
        let r = unsafe { libc::writev(self.dev.as_raw_fd(), iov.as_ptr(), 2) };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok((r as usize).saturating_sub(VIRTIO_NET_HDR_LEN))
    }
}

/// Buffers for reading bursts from an offload TUN: each read may be a TCP
/// super-packet split into segments, and one [`TunReader::read`] drains reads
/// while a whole super-packet still fits. Packets start `headroom` bytes into
/// their buffer (room for headers written in place).
pub struct TunReader {
    scratch: Vec<u8>,
    bufs: Vec<Vec<u8>>,
    sizes: Vec<usize>,
    headroom: usize,
    n: usize,
}

impl TunReader {
    /// Room for two super-packets' worth of segments.
    pub fn new(headroom: usize) -> TunReader {
        let slots = 2 * IDEAL_BATCH_SIZE;
        TunReader {
            scratch: vec![0u8; VIRTIO_NET_HDR_LEN + 65536],
            bufs: (0..slots)
                .map(|_| vec![0u8; 65536 + 2 * headroom])
                .collect(),
            sizes: vec![0; slots],
            headroom,
            n: 0,
        }
    }

    /// Wait up to `timeout` for a packet, then drain what else is queued; returns
    /// how many packets are ready (0 on timeout or error).
    pub fn read(&mut self, tun: &Tun, timeout: Duration) -> usize {
        let (h, slots) = (self.headroom, self.bufs.len());
        self.n = tun
            .recv_batch(
                &mut self.scratch,
                &mut self.bufs,
                &mut self.sizes,
                h,
                timeout,
            )
            .unwrap_or(0);
        while self.n > 0 && self.n + IDEAL_BATCH_SIZE <= slots {
            let n = self.n;
            match tun.recv_batch(
                &mut self.scratch,
                &mut self.bufs[n..],
                &mut self.sizes[n..],
                h,
                Duration::ZERO,
            ) {
                Ok(0) | Err(_) => break,
                Ok(k) => self.n += k,
            }
        }
        self.n
    }

    /// The packets of the last read: (buffer, length); each packet is at
    /// `buffer[headroom..headroom + length]`.
    pub fn packets_mut(&mut self) -> impl Iterator<Item = (&mut Vec<u8>, usize)> {
        self.bufs
            .iter_mut()
            .zip(self.sizes.iter().copied())
            .take(self.n)
    }
}

/// TUN writes collected during one batch of received packets, written (and
/// coalesced) at once with [`Tun::send_batch`].
pub struct TunBatch {
    bufs: Vec<Vec<u8>>,
    n: usize,
    gro: GROTable,
}

impl Default for TunBatch {
    fn default() -> Self {
        Self::new()
    }
}

impl TunBatch {
    /// Room for [`IDEAL_BATCH_SIZE`] packets; each buffer can grow to a 64 KB
    /// coalesced packet (address space only until it is written).
    pub fn new() -> TunBatch {
        TunBatch {
            bufs: (0..IDEAL_BATCH_SIZE)
                .map(|_| Vec::with_capacity(2 * VIRTIO_NET_HDR_LEN + 65536))
                .collect(),
            n: 0,
            gro: GROTable::default(),
        }
    }

    /// Queue a copy of `packet`; writes the batch first when it is full.
    pub fn push(&mut self, tun: &Tun, packet: &[u8]) {
        if packet.len() > 65535 {
            let _ = tun.send(packet);
            return;
        }
        if self.n == self.bufs.len() {
            self.flush(tun);
        }
        let b = &mut self.bufs[self.n];
        b.clear();
        b.resize(VIRTIO_NET_HDR_LEN, 0);
        b.extend_from_slice(packet);
        self.n += 1;
    }

    /// Write what is queued.
    pub fn flush(&mut self, tun: &Tun) {
        if self.n == 0 {
            return;
        }
        if let Err(e) = tun.send_batch(&mut self.gro, &mut self.bufs[..self.n], VIRTIO_NET_HDR_LEN)
        {
            tracing::debug!("tun write: {e}");
        }
        self.n = 0;
    }
}
