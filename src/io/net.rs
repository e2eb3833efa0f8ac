//! Sockets of the gateway and the target: UDP 500/4500 for IKE and ESP-in-UDP
//! (RFC 3948), raw IP protocol 47 sockets for GRE (one per link, bound to the link's
//! device so that the arrival link is known for the anti-spoof check), and a raw
//! `IPPROTO_RAW` socket for packets a target sends straight out.
//!
//! The kernel here has no GRE or ESP module: a raw socket for protocol 47 still
//! receives every GRE datagram addressed to this host (the raw-socket path does not
//! need `ip_gre`), and sending on it makes the kernel add the outer IPv4 header.
//!
//! Receiving is batched with `recvmmsg(2)`: one system call returns up to
//! [`BATCH`] datagrams, which is where a user-space data path spends most of its time.

use std::io;
use std::mem::MaybeUninit;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::{AsRawFd, RawFd};
use std::time::Duration;

use socket2::{Domain, Protocol, SockAddr, Socket, Type};

/// How many datagrams one `recvmmsg` call may return.
pub const BATCH: usize = 64;
/// Size of one receive buffer: a jumbo-ish datagram plus room for in-place work.
pub const BUF: usize = 9216;

/// IP protocol number of GRE (RFC 2784).
pub const IPPROTO_GRE: i32 = 47;

/// A UDP socket bound to `addr`, with large buffers and a read timeout so that the
/// thread that owns it can notice shutdown.
pub fn udp_socket(addr: SocketAddr) -> io::Result<Socket> {
    let dom = if addr.is_ipv4() {
        Domain::IPV4
    } else {
        Domain::IPV6
    };
    let s = Socket::new(dom, Type::DGRAM, Some(Protocol::UDP))?;
    s.set_reuse_address(true)?;
    let _ = s.set_recv_buffer_size(4 << 20);
    let _ = s.set_send_buffer_size(4 << 20);
    s.bind(&addr.into())?;
    s.set_read_timeout(Some(Duration::from_millis(200)))?;
    Ok(s)
}

/// A raw GRE socket (IPv4), bound to `device` when given, so that what it receives
/// arrived on that link.
pub fn gre_socket(device: Option<&str>) -> io::Result<Socket> {
    let s = Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::from(IPPROTO_GRE)))?;
    if let Some(dev) = device {
        s.bind_device(Some(dev.as_bytes()))?;
    }
    let _ = s.set_recv_buffer_size(4 << 20);
    let _ = s.set_send_buffer_size(4 << 20);
    s.set_read_timeout(Some(Duration::from_millis(200)))?;
    Ok(s)
}

/// A raw socket that sends complete IPv4 packets (`IP_HDRINCL`): used by a target to
/// send replies of plain connections straight to the client.
pub fn raw_ip_sender() -> io::Result<Socket> {
    let s = Socket::new(
        Domain::IPV4,
        Type::RAW,
        Some(Protocol::from(libc::IPPROTO_RAW)),
    )?;
    s.set_header_included_v4(true)?;
    Ok(s)
}

/// Send a whole IPv4 packet with a raw `IPPROTO_RAW` socket.
pub fn send_raw_ipv4(sock: &Socket, packet: &[u8]) -> io::Result<usize> {
    if packet.len() < 20 || packet[0] >> 4 != 4 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not an IPv4 packet",
        ));
    }
    let dst = Ipv4Addr::new(packet[16], packet[17], packet[18], packet[19]);
    sock.send_to(packet, &SocketAddr::V4(SocketAddrV4::new(dst, 0)).into())
}

/// Send `data` to `to` on a UDP or raw socket.
pub fn send_to(sock: &Socket, data: &[u8], to: SocketAddr) -> io::Result<usize> {
    sock.send_to(data, &to.into())
}

/// Receive buffers for one `recvmmsg` batch: owned once per thread, reused for ever.
pub struct RecvBatch {
    bufs: Vec<Vec<u8>>,
    addrs: Vec<libc::sockaddr_storage>,
    lens: Vec<usize>,
    n: usize,
}

impl Default for RecvBatch {
    fn default() -> Self {
        Self::new()
    }
}

impl RecvBatch {
    /// Allocate the batch (the only allocation of a receive thread).
    pub fn new() -> Self {
        // SAFETY: sockaddr_storage is plain old data; all-zero is a valid value.
        let zero: libc::sockaddr_storage = unsafe { MaybeUninit::zeroed().assume_init() };
        RecvBatch {
            bufs: (0..BATCH).map(|_| vec![0u8; BUF]).collect(),
            addrs: vec![zero; BATCH],
            lens: vec![0; BATCH],
            n: 0,
        }
    }

    /// Receive up to [`BATCH`] datagrams; blocks until at least one arrives or the
    /// socket's read timeout passes (then returns `Ok(0)`).
    pub fn recv(&mut self, fd: RawFd) -> io::Result<usize> {
        let mut iovs: [MaybeUninit<libc::iovec>; BATCH] = [MaybeUninit::uninit(); BATCH];
        let mut hdrs: [MaybeUninit<libc::mmsghdr>; BATCH] = [MaybeUninit::uninit(); BATCH];
        for i in 0..BATCH {
            iovs[i].write(libc::iovec {
                iov_base: self.bufs[i].as_mut_ptr().cast(),
                iov_len: BUF,
            });
            // SAFETY: msghdr is plain old data; we fill the fields we use.
            let mut h: libc::msghdr = unsafe { MaybeUninit::zeroed().assume_init() };
            h.msg_name = (&mut self.addrs[i] as *mut libc::sockaddr_storage).cast();
            h.msg_namelen = std::mem::size_of::<libc::sockaddr_storage>() as u32;
            h.msg_iov = iovs[i].as_mut_ptr();
            h.msg_iovlen = 1;
            hdrs[i].write(libc::mmsghdr {
                msg_hdr: h,
                msg_len: 0,
            });
        }
        // SAFETY: hdrs/iovs point into buffers owned by self that outlive the call;
        // BATCH entries are initialised above.
        let r = unsafe {
            libc::recvmmsg(
                fd,
                hdrs.as_mut_ptr().cast(),
                BATCH as u32,
                libc::MSG_WAITFORONE,
                std::ptr::null_mut(),
            )
        };
        if r < 0 {
            let e = io::Error::last_os_error();
            self.n = 0;
            return match e.kind() {
                io::ErrorKind::WouldBlock
                | io::ErrorKind::TimedOut
                | io::ErrorKind::Interrupted => Ok(0),
                _ => Err(e),
            };
        }
        let n = r as usize;
        for (i, h) in hdrs.iter().take(n).enumerate() {
            // SAFETY: the kernel initialised the first n headers.
            self.lens[i] = unsafe { h.assume_init_ref().msg_len } as usize;
        }
        self.n = n;
        Ok(n)
    }

    /// How many datagrams the last `recv` returned.
    pub fn len(&self) -> usize {
        self.n
    }

    /// True when the last `recv` returned nothing.
    pub fn is_empty(&self) -> bool {
        self.n == 0
    }

    /// Datagram `i` of the batch (mutable, for in-place decryption) and its source.
    pub fn get_mut(&mut self, i: usize) -> (&mut [u8], Option<SocketAddr>) {
        let len = self.lens[i];
        let from = sockaddr_to_std(&self.addrs[i]);
        (&mut self.bufs[i][..len], from)
    }

    /// The whole buffer of slot `i` (for in-place work that needs headroom) and the
    /// received length.
    pub fn slot_mut(&mut self, i: usize) -> (&mut Vec<u8>, usize, Option<SocketAddr>) {
        let from = sockaddr_to_std(&self.addrs[i]);
        (&mut self.bufs[i], self.lens[i], from)
    }
}

/// Datagrams to send on one socket, collected during one batch of received packets
/// and sent with one `sendmmsg(2)` (instead of one `sendto` each).
pub struct SendBatch {
    bufs: Vec<Vec<u8>>,
    addrs: Vec<SockAddr>,
    n: usize,
}

impl Default for SendBatch {
    fn default() -> Self {
        Self::new()
    }
}

impl SendBatch {
    /// Room for [`BATCH`] datagrams.
    pub fn new() -> SendBatch {
        let zero = SockAddr::from(SocketAddr::from(([0, 0, 0, 0], 0)));
        SendBatch {
            bufs: (0..BATCH).map(|_| Vec::with_capacity(2048)).collect(),
            addrs: vec![zero; BATCH],
            n: 0,
        }
    }

    /// Queue a copy of `data` for `to`; sends the batch first when it is full.
    pub fn push(&mut self, sock: &Socket, data: &[u8], to: SocketAddr) {
        if self.n == BATCH {
            self.flush(sock);
        }
        let b = &mut self.bufs[self.n];
        b.clear();
        b.extend_from_slice(data);
        self.addrs[self.n] = to.into();
        self.n += 1;
    }

    /// Send what is queued (datagrams the kernel refuses are dropped, as a failed
    /// `sendto` would drop them).
    pub fn flush(&mut self, sock: &Socket) {
        let mut done = 0;
        while done < self.n {
            let mut iovs: [MaybeUninit<libc::iovec>; BATCH] = [MaybeUninit::uninit(); BATCH];
            let mut hdrs: [MaybeUninit<libc::mmsghdr>; BATCH] = [MaybeUninit::uninit(); BATCH];
            let count = self.n - done;
            for j in 0..count {
                let i = done + j;
                iovs[j].write(libc::iovec {
                    iov_base: self.bufs[i].as_mut_ptr().cast(),
                    iov_len: self.bufs[i].len(),
                });
                // SAFETY: msghdr is plain old data; we fill the fields we use.
                let mut h: libc::msghdr = unsafe { MaybeUninit::zeroed().assume_init() };
                h.msg_name = self.addrs[i].as_ptr() as *mut libc::c_void;
                h.msg_namelen = self.addrs[i].len();
                h.msg_iov = iovs[j].as_mut_ptr();
                h.msg_iovlen = 1;
                hdrs[j].write(libc::mmsghdr {
                    msg_hdr: h,
                    msg_len: 0,
                });
            }
            // SAFETY: the first `count` headers are initialised and point into
            // buffers owned by self that outlive the call.
            let r = unsafe {
                libc::sendmmsg(sock.as_raw_fd(), hdrs.as_mut_ptr().cast(), count as u32, 0)
            };
            if r < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                tracing::debug!("sendmmsg: {e}");
                // Skip the datagram that failed, keep the rest.
                done += 1;
            } else if r == 0 {
                done += 1;
            } else {
                done += r as usize;
            }
        }
        self.n = 0;
    }
}

/// Convert a kernel socket address to the std type.
pub fn sockaddr_to_std(ss: &libc::sockaddr_storage) -> Option<SocketAddr> {
    match ss.ss_family as i32 {
        libc::AF_INET => {
            // SAFETY: family says this is a sockaddr_in.
            let a: &libc::sockaddr_in = unsafe { &*(ss as *const _ as *const libc::sockaddr_in) };
            let ip = Ipv4Addr::from(u32::from_be(a.sin_addr.s_addr));
            Some(SocketAddr::V4(SocketAddrV4::new(
                ip,
                u16::from_be(a.sin_port),
            )))
        }
        libc::AF_INET6 => {
            // SAFETY: family says this is a sockaddr_in6.
            let a: &libc::sockaddr_in6 = unsafe { &*(ss as *const _ as *const libc::sockaddr_in6) };
            Some(SocketAddr::V6(SocketAddrV6::new(
                a.sin6_addr.s6_addr.into(),
                u16::from_be(a.sin6_port),
                a.sin6_flowinfo,
                a.sin6_scope_id,
            )))
        }
        _ => None,
    }
}

/// Outer source address of an IPv4 packet as a raw socket hands it over (raw IPv4
/// sockets deliver the IP header too). Returns (source, header length).
pub fn ipv4_outer(packet: &[u8]) -> Option<(IpAddr, usize)> {
    if packet.len() < 20 || packet[0] >> 4 != 4 {
        return None;
    }
    let ihl = usize::from(packet[0] & 0x0f) * 4;
    if ihl < 20 || packet.len() < ihl {
        return None;
    }
    let src = Ipv4Addr::new(packet[12], packet[13], packet[14], packet[15]);
    Some((IpAddr::V4(src), ihl))
}

/// A file descriptor view, for the batch receiver.
pub fn fd_of(s: &Socket) -> RawFd {
    s.as_raw_fd()
}

/// Convert a std address to the socket2 type (helper for callers).
pub fn sockaddr(a: SocketAddr) -> SockAddr {
    a.into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_receives_several_datagrams_on_loopback() {
        let rx = udp_socket("127.0.0.1:0".parse().unwrap()).unwrap();
        let to = rx.local_addr().unwrap().as_socket().unwrap();
        let tx = udp_socket("127.0.0.1:0".parse().unwrap()).unwrap();
        for i in 0..5u8 {
            send_to(&tx, &[i; 10], to).unwrap();
        }
        let mut b = RecvBatch::new();
        let mut got = Vec::new();
        while got.len() < 5 {
            let n = b.recv(fd_of(&rx)).unwrap();
            assert!(n > 0, "timed out after {} datagrams", got.len());
            for i in 0..n {
                let (d, from) = b.get_mut(i);
                assert_eq!(from, tx.local_addr().unwrap().as_socket());
                got.push(d.to_vec());
            }
        }
        for (i, d) in got.iter().enumerate() {
            assert_eq!(d, &vec![i as u8; 10]);
        }
    }

    #[test]
    fn send_batch_sends_every_datagram_in_order() {
        let rx = udp_socket("127.0.0.1:0".parse().unwrap()).unwrap();
        let to = rx.local_addr().unwrap().as_socket().unwrap();
        let tx = udp_socket("127.0.0.1:0".parse().unwrap()).unwrap();
        let mut sb = SendBatch::new();
        // More than one batch: the full batch is sent on push.
        for i in 0..(BATCH + 3) {
            sb.push(&tx, &[i as u8; 7], to);
        }
        sb.flush(&tx);
        let mut b = RecvBatch::new();
        let mut got = Vec::new();
        while got.len() < BATCH + 3 {
            let n = b.recv(fd_of(&rx)).unwrap();
            assert!(n > 0, "timed out after {} datagrams", got.len());
            for i in 0..n {
                got.push(b.get_mut(i).0.to_vec());
            }
        }
        for (i, d) in got.iter().enumerate() {
            assert_eq!(d, &vec![i as u8; 7]);
        }
    }

    #[test]
    fn ipv4_outer_rejects_short_and_non_v4() {
        assert!(ipv4_outer(&[0x45; 10]).is_none());
        assert!(ipv4_outer(&[0x60; 40]).is_none());
        let mut p = [0u8; 24];
        p[0] = 0x45;
        p[12..16].copy_from_slice(&[10, 1, 2, 3]);
        assert_eq!(ipv4_outer(&p), Some(("10.1.2.3".parse().unwrap(), 20)));
    }
}
