//! Sockets of the gateway and the target: UDP 500/4500 for IKE and ESP-in-UDP
//! (RFC 3948), raw IP protocol 47 sockets for GRE (one per link, bound to the
//! link's device so that the arrival link is known for the anti-spoof check; the
//! sockets of links, IPv4 and IPv6, are made in [`super::link`]), and a raw
//! `IPPROTO_RAW` socket for packets a target sends straight out.
//!
//! The kernel here has no GRE or ESP module: a raw socket for protocol 47 still
//! receives every GRE datagram addressed to this host (the raw-socket path does not
//! need `ip_gre`), and sending on it makes the kernel add the outer IP header. Raw
//! IPv4 sockets hand over the IPv4 header with each datagram ([`ipv4_outer`]).
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
    // A standby gateway binds the gateway VIPA before it holds the address (the
    // address arrives with a takeover): IP_FREEBIND.
    let _ = if addr.is_ipv4() {
        s.set_freebind_v4(true)
    } else {
        s.set_freebind_v6(true)
    };
    let _ = s.set_recv_buffer_size(4 << 20);
    let _ = s.set_send_buffer_size(4 << 20);
    s.bind(&addr.into())?;
    s.set_read_timeout(Some(Duration::from_millis(200)))?;
    Ok(s)
}

/// A raw GRE socket (IPv4), bound to `device` when given, so that what it receives
/// arrived on that link.
pub fn gre_socket(device: Option<&str>) -> io::Result<Socket> {
    super::link::gre_socket_on(false, device, None)
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

/// Destination of an IPv4 packet (for sending it whole on an `IPPROTO_RAW` socket).
pub fn ipv4_dst(packet: &[u8]) -> Option<IpAddr> {
    if packet.len() < 20 || packet[0] >> 4 != 4 {
        return None;
    }
    Some(IpAddr::V4(Ipv4Addr::new(
        packet[16], packet[17], packet[18], packet[19],
    )))
}

/// Send `data` to `to` on a UDP or raw socket.
pub fn send_to(sock: &Socket, data: &[u8], to: SocketAddr) -> io::Result<usize> {
    sock.send_to(data, &to.into())
}

/// `UDP_SEGMENT` (linux/udp.h): send-side UDP segmentation offload.
const UDP_SEGMENT: libc::c_int = 103;
/// `UDP_GRO` (linux/udp.h): receive coalesced datagrams with their segment size.
const UDP_GRO: libc::c_int = 104;
/// Most segments one UDP GSO send may carry (`UDP_MAX_SEGMENTS` is 64 or more).
const GSO_MAX_SEGMENTS: usize = 64;
/// Most payload bytes one UDP GSO send may carry (an IPv4 datagram's limit with
/// room for the IP and UDP headers).
const GSO_MAX_BYTES: usize = 65_000;
/// Room for one `cmsghdr` carrying an int, 8-byte aligned.
const CMSG_ROOM: usize = 32;

/// Ask the kernel to hand this UDP socket coalesced datagrams (`UDP_GRO`): one
/// receive returns several datagrams of one flow back to back, each `gso_size`
/// bytes except maybe the last, as [`RecvBatch::segments`] splits them. A sender
/// that used UDP GSO over veth or loopback arrives this way without ever being
/// split. Returns false when the kernel does not support it (then every datagram
/// arrives alone, as before).
pub fn enable_udp_gro(sock: &Socket) -> bool {
    let one: libc::c_int = 1;
    // SAFETY: valid fd, option value points to a c_int of the given size.
    let r = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::SOL_UDP,
            UDP_GRO,
            (&one as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    r == 0
}

/// Receive buffers for one `recvmmsg` batch: owned once per thread, reused for ever.
pub struct RecvBatch {
    bufs: Vec<Vec<u8>>,
    addrs: Vec<libc::sockaddr_storage>,
    lens: Vec<usize>,
    /// Segment size of a coalesced (UDP GRO) receive, 0 for a single datagram.
    segs: Vec<usize>,
    ctrl: Vec<[u64; CMSG_ROOM / 8]>,
    buf_size: usize,
    n: usize,
}

impl Default for RecvBatch {
    fn default() -> Self {
        Self::new()
    }
}

impl RecvBatch {
    /// [`BATCH`] slots of [`BUF`] bytes (raw ESP and GRE sockets).
    pub fn new() -> Self {
        Self::with(BATCH, BUF)
    }

    /// Slots big enough for UDP GRO receives (64 KB each): for a socket on which
    /// [`enable_udp_gro`] succeeded.
    pub fn for_gro() -> Self {
        Self::with(BATCH / 2, 65_536)
    }

    /// `slots` buffers of `size` bytes (the only allocation of a receive thread).
    pub fn with(slots: usize, size: usize) -> Self {
        let slots = slots.clamp(1, BATCH);
        // SAFETY: sockaddr_storage is plain old data; all-zero is a valid value.
        let zero: libc::sockaddr_storage = unsafe { MaybeUninit::zeroed().assume_init() };
        RecvBatch {
            bufs: (0..slots).map(|_| vec![0u8; size]).collect(),
            addrs: vec![zero; slots],
            lens: vec![0; slots],
            segs: vec![0; slots],
            ctrl: vec![[0; CMSG_ROOM / 8]; slots],
            buf_size: size,
            n: 0,
        }
    }

    /// Receive up to one batch of datagrams; blocks until at least one arrives or
    /// the socket's read timeout passes (then returns `Ok(0)`).
    pub fn recv(&mut self, fd: RawFd) -> io::Result<usize> {
        let slots = self.bufs.len();
        let mut iovs: [MaybeUninit<libc::iovec>; BATCH] = [MaybeUninit::uninit(); BATCH];
        let mut hdrs: [MaybeUninit<libc::mmsghdr>; BATCH] = [MaybeUninit::uninit(); BATCH];
        for i in 0..slots {
            iovs[i].write(libc::iovec {
                iov_base: self.bufs[i].as_mut_ptr().cast(),
                iov_len: self.buf_size,
            });
            // SAFETY: msghdr is plain old data; we fill the fields we use.
            let mut h: libc::msghdr = unsafe { MaybeUninit::zeroed().assume_init() };
            h.msg_name = (&mut self.addrs[i] as *mut libc::sockaddr_storage).cast();
            h.msg_namelen = std::mem::size_of::<libc::sockaddr_storage>() as u32;
            h.msg_iov = iovs[i].as_mut_ptr();
            h.msg_iovlen = 1;
            h.msg_control = self.ctrl[i].as_mut_ptr().cast();
            h.msg_controllen = CMSG_ROOM as _;
            hdrs[i].write(libc::mmsghdr {
                msg_hdr: h,
                msg_len: 0,
            });
        }
        // SAFETY: hdrs/iovs/ctrl point into buffers owned by self that outlive the
        // call; `slots` entries are initialised above.
        let r = unsafe {
            libc::recvmmsg(
                fd,
                hdrs.as_mut_ptr().cast(),
                slots as u32,
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
            let h = unsafe { h.assume_init_ref() };
            self.lens[i] = h.msg_len as usize;
            self.segs[i] = gro_segment_size(&h.msg_hdr);
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

    /// The datagrams in slot `i` as (offset, length): one, or several when the
    /// kernel coalesced them (UDP GRO: all `gso_size` bytes but maybe the last).
    pub fn segments(&self, i: usize) -> Segments {
        Segments {
            at: 0,
            len: self.lens[i],
            seg: if self.segs[i] == 0 {
                self.lens[i].max(1)
            } else {
                self.segs[i]
            },
        }
    }
}

/// Iterator over the datagrams of one receive slot.
pub struct Segments {
    at: usize,
    len: usize,
    seg: usize,
}

impl Iterator for Segments {
    type Item = (usize, usize);
    fn next(&mut self) -> Option<(usize, usize)> {
        if self.at >= self.len {
            return None;
        }
        let l = self.seg.min(self.len - self.at);
        let r = (self.at, l);
        self.at += l;
        Some(r)
    }
}

/// The `UDP_GRO` segment size in a received message's control data, or 0.
fn gro_segment_size(h: &libc::msghdr) -> usize {
    if h.msg_control.is_null() || h.msg_controllen < std::mem::size_of::<libc::cmsghdr>() {
        return 0;
    }
    // SAFETY: msg_control/msg_controllen describe the control buffer the kernel
    // filled; the CMSG_* helpers stay within it.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(h);
        while !c.is_null() {
            if (*c).cmsg_level == libc::SOL_UDP && (*c).cmsg_type == UDP_GRO {
                let v: libc::c_int = std::ptr::read_unaligned(libc::CMSG_DATA(c).cast());
                return usize::try_from(v).unwrap_or(0);
            }
            c = libc::CMSG_NXTHDR(h, c);
        }
    }
    0
}

/// ESP-in-UDP datagrams to send, collected during one batch and sent with one
/// `sendmmsg(2)`: consecutive datagrams to one destination with the same length
/// (what sealing the segments of one TCP super-packet produces) go out as one UDP
/// GSO send (`UDP_SEGMENT`), which the kernel carries as one packet as far as it
/// can and splits into the very same datagrams at the last moment (or never, when
/// the receiver uses UDP GRO). Each datagram on the wire is exactly the one queued.
pub struct UdpSendBatch {
    bufs: Vec<Vec<u8>>,
    dests: Vec<SocketAddr>,
    n: usize,
    /// Datagrams are grouped only when shorter than this: `usize::MAX` at first,
    /// lowered to a size the kernel refused for the path (EINVAL/EMSGSIZE: the
    /// path MTU is below that segment), 0 for good when it refuses GSO as such
    /// (EIO and friends: no offload for the route's device).
    gso_below: usize,
    /// Scratch of `flush`: the groups and their destinations.
    groups: Vec<(usize, usize, usize)>,
    addrs: Vec<SockAddr>,
}

impl Default for UdpSendBatch {
    fn default() -> Self {
        Self::new()
    }
}

/// How many datagrams a [`UdpSendBatch`] holds before it sends.
const UDP_BATCH: usize = 2 * GSO_MAX_SEGMENTS;

impl UdpSendBatch {
    /// Room for [`UDP_BATCH`] datagrams.
    pub fn new() -> Self {
        UdpSendBatch {
            bufs: (0..UDP_BATCH).map(|_| Vec::with_capacity(2048)).collect(),
            dests: vec![SocketAddr::from(([0, 0, 0, 0], 0)); UDP_BATCH],
            n: 0,
            gso_below: usize::MAX,
            groups: Vec::with_capacity(UDP_BATCH),
            addrs: Vec::with_capacity(UDP_BATCH),
        }
    }

    /// Whether GSO is still in use for datagrams of `len` bytes.
    pub fn gso_enabled_for(&self, len: usize) -> bool {
        len < self.gso_below
    }

    /// Queue a copy of `data` for `to`; sends the batch first when it is full.
    pub fn push(&mut self, sock: &Socket, data: &[u8], to: SocketAddr) {
        if self.n == UDP_BATCH {
            self.flush(sock);
        }
        let b = &mut self.bufs[self.n];
        b.clear();
        b.extend_from_slice(data);
        self.dests[self.n] = to;
        self.n += 1;
    }

    /// The groups of the queue: (first, count, segment size); a group of more than
    /// one datagram has equal lengths except perhaps a shorter last one.
    fn groups(&self, out: &mut Vec<(usize, usize, usize)>) {
        out.clear();
        let mut i = 0;
        while i < self.n {
            let seg = self.bufs[i].len();
            let mut total = seg;
            let mut j = i + 1;
            if seg < self.gso_below {
                while j < self.n
                    && j - i < GSO_MAX_SEGMENTS
                    && self.dests[j] == self.dests[i]
                    && self.bufs[j].len() <= seg
                    && total + self.bufs[j].len() <= GSO_MAX_BYTES
                {
                    total += self.bufs[j].len();
                    j += 1;
                    if self.bufs[j - 1].len() < seg {
                        break; // a shorter datagram ends the group
                    }
                }
            }
            out.push((i, j - i, seg));
            i = j;
        }
    }

    /// Send what is queued (datagrams the kernel refuses are dropped, as a failed
    /// `sendto` would drop them).
    pub fn flush(&mut self, sock: &Socket) {
        if self.n == 0 {
            return;
        }
        // Scratch reused from flush to flush: no allocation once warm.
        let mut groups = std::mem::take(&mut self.groups);
        self.groups(&mut groups);
        let mut addrs = std::mem::take(&mut self.addrs);
        addrs.clear();
        addrs.extend(groups.iter().map(|g| SockAddr::from(self.dests[g.0])));
        let mut iovs = [libc::iovec {
            iov_base: std::ptr::null_mut(),
            iov_len: 0,
        }; UDP_BATCH];
        for (v, b) in iovs.iter_mut().zip(self.bufs.iter_mut().take(self.n)) {
            *v = libc::iovec {
                iov_base: b.as_mut_ptr().cast(),
                iov_len: b.len(),
            };
        }
        let mut ctrl = [[0u64; CMSG_ROOM / 8]; UDP_BATCH];
        let mut hdrs: [MaybeUninit<libc::mmsghdr>; UDP_BATCH] = [MaybeUninit::uninit(); UDP_BATCH];
        for (k, &(first, count, seg)) in groups.iter().enumerate() {
            // SAFETY: msghdr is plain old data; we fill the fields we use.
            let mut h: libc::msghdr = unsafe { MaybeUninit::zeroed().assume_init() };
            h.msg_name = addrs[k].as_ptr() as *mut libc::c_void;
            h.msg_namelen = addrs[k].len();
            h.msg_iov = iovs[first..].as_mut_ptr();
            h.msg_iovlen = count as _;
            if count > 1 {
                h.msg_control = ctrl[k].as_mut_ptr().cast();
                // SAFETY: CMSG_SPACE is a pure size computation.
                h.msg_controllen = unsafe { libc::CMSG_SPACE(2) } as _;
                // SAFETY: the control buffer holds CMSG_SPACE(2) bytes (≤ CMSG_ROOM).
                unsafe {
                    let c = libc::CMSG_FIRSTHDR(&h);
                    (*c).cmsg_level = libc::SOL_UDP;
                    (*c).cmsg_type = UDP_SEGMENT;
                    (*c).cmsg_len = libc::CMSG_LEN(2) as _;
                    std::ptr::write_unaligned(libc::CMSG_DATA(c).cast::<u16>(), seg as u16);
                }
            }
            hdrs[k].write(libc::mmsghdr {
                msg_hdr: h,
                msg_len: 0,
            });
        }
        let mut done = 0;
        while done < groups.len() {
            // SAFETY: every header points into iovs/addrs/ctrl/bufs, which outlive
            // the call.
            let r = unsafe {
                libc::sendmmsg(
                    sock.as_raw_fd(),
                    hdrs[done..].as_mut_ptr().cast(),
                    (groups.len() - done) as u32,
                    0,
                )
            };
            if r > 0 {
                done += r as usize;
                continue;
            }
            let e = io::Error::last_os_error();
            if r < 0 && e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            let (first, count, seg) = groups[done];
            let refused = match e.raw_os_error() {
                // The path's MTU is below this segment size.
                Some(libc::EINVAL | libc::EMSGSIZE) => Some(seg),
                // No segmentation offload at all.
                Some(libc::EIO | libc::ENOPROTOOPT | libc::EOPNOTSUPP) => Some(0),
                _ => None,
            };
            if let (true, Some(below)) = (count > 1, refused) {
                // Send this group's datagrams one by one, and do not group such
                // datagrams again.
                tracing::info!(
                    "UDP GSO refused for {seg}-byte datagrams ({e}); sending them one by one"
                );
                self.gso_below = self.gso_below.min(below);
                for b in &self.bufs[first..first + count] {
                    let _ = sock.send_to(b, &addrs[done]);
                }
            } else {
                tracing::debug!("sendmmsg: {e}");
            }
            done += 1;
        }
        self.n = 0;
        self.groups = groups;
        self.addrs = addrs;
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

    /// Receive `count` datagrams on `rx`, splitting coalesced (GRO) receives.
    fn recv_all(rx: &Socket, b: &mut RecvBatch, count: usize) -> (Vec<Vec<u8>>, usize) {
        let mut got = Vec::new();
        let mut coalesced = 0;
        while got.len() < count {
            let n = b.recv(fd_of(rx)).unwrap();
            assert!(n > 0, "timed out after {} datagrams", got.len());
            for i in 0..n {
                let segs: Vec<_> = b.segments(i).collect();
                if segs.len() > 1 {
                    coalesced += 1;
                }
                let (buf, _, _) = b.slot_mut(i);
                for (at, len) in segs {
                    got.push(buf[at..at + len].to_vec());
                }
            }
        }
        (got, coalesced)
    }

    /// 150 datagrams: runs of equal length (GSO groups), a shorter one ending a
    /// run, two destinations interleaved, and one bigger than the rest.
    fn gso_pattern() -> Vec<(u8, Vec<u8>)> {
        let mut v = Vec::new();
        for i in 0..150u32 {
            let len = match i {
                70 => 300,
                71..=99 => 1200,
                120 => 1500,
                _ => 1400,
            };
            let dest = u8::from(i % 50 == 7);
            let mut d = vec![(i % 251) as u8; len];
            d[..4].copy_from_slice(&i.to_be_bytes());
            v.push((dest, d));
        }
        v
    }

    #[test]
    fn udp_gso_batches_arrive_as_the_same_datagrams_with_and_without_gro() {
        let rx_gro = udp_socket("127.0.0.1:0".parse().unwrap()).unwrap();
        assert!(
            enable_udp_gro(&rx_gro),
            "UDP_GRO not supported by this kernel"
        );
        let rx_plain = udp_socket("127.0.0.1:0".parse().unwrap()).unwrap();
        let to = [
            rx_gro.local_addr().unwrap().as_socket().unwrap(),
            rx_plain.local_addr().unwrap().as_socket().unwrap(),
        ];
        let tx = udp_socket("127.0.0.1:0".parse().unwrap()).unwrap();
        let mut sb = UdpSendBatch::new();
        let pattern = gso_pattern();
        let groups_before_flush = {
            for (d, data) in pattern.iter().take(UDP_BATCH) {
                sb.push(&tx, data, to[usize::from(*d)]);
            }
            let mut g = Vec::new();
            sb.groups(&mut g);
            g.len()
        };
        // Far fewer sends than datagrams: GSO groups formed.
        assert!(
            groups_before_flush < UDP_BATCH / 4,
            "{groups_before_flush} groups"
        );
        for (d, data) in pattern.iter().skip(UDP_BATCH) {
            sb.push(&tx, data, to[usize::from(*d)]);
        }
        sb.flush(&tx);
        assert!(
            sb.gso_enabled_for(1500),
            "the kernel refused UDP GSO on loopback"
        );
        let want = |dest: u8| -> Vec<Vec<u8>> {
            pattern
                .iter()
                .filter(|(d, _)| *d == dest)
                .map(|(_, x)| x.clone())
                .collect()
        };
        let mut b = RecvBatch::for_gro();
        let (got, coalesced) = recv_all(&rx_gro, &mut b, want(0).len());
        assert_eq!(got, want(0));
        assert!(
            coalesced > 0,
            "the GRO socket never got a coalesced receive"
        );
        let mut b = RecvBatch::new();
        let (got, coalesced) = recv_all(&rx_plain, &mut b, want(1).len());
        assert_eq!(got, want(1));
        assert_eq!(coalesced, 0);
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
