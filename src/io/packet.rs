//! AF_PACKET sockets for ARP, and the state of network interfaces.
//!
//! [`PacketSocket`] is a non-blocking `SOCK_RAW` packet socket bound to one
//! interface and to EtherType ARP (0x0806): it receives every ARP frame on that
//! interface (whole Ethernet frames, with the kernel's packet type: to us,
//! broadcast, multicast, or outgoing — our own and the kernel's transmissions) and
//! sends whole frames built by the caller. It is created with protocol 0 and then
//! bound, so no frame of another interface slips in between. It survives the
//! interface going down and up (the kernel re-arms it; a receive returns
//! `ENETDOWN` once); if the interface is deleted and re-created it must be opened
//! again (its index changes). [`PacketSocket::join`] adds a multicast MAC to the
//! interface's receive filter for as long as the socket lives (cluster MAC mode).
//!
//! [`link_state`] reads an interface's index, MAC and operational state with
//! ioctls on a socket of the calling thread's network namespace (sysfs would show
//! the namespace sysfs was mounted in, which is wrong for a thread that entered
//! another namespace with `setns`). Up means `IFF_UP` and `IFF_RUNNING` (carrier).
//! [`LinkWatch`] is a netlink socket subscribed to link changes: it becomes
//! readable when any interface changes, so that a link going down is noticed at
//! once rather than at the next poll. [`wait`] is `poll(2)` over a set of sockets.

use std::io;
use std::mem::{size_of, zeroed};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::Duration;

use plexgate_wire::arp::EthernetAddress;

/// EtherType ARP in network byte order, as `sockaddr_ll` and `socket(2)` want it.
fn eth_p_arp_be() -> u16 {
    (libc::ETH_P_ARP as u16).to_be()
}

/// How the kernel classified a received frame (`sll_pkttype`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PacketType {
    /// Addressed to this interface's MAC.
    Host,
    /// Broadcast.
    Broadcast,
    /// Multicast.
    Multicast,
    /// Addressed to another host (seen in promiscuous mode).
    OtherHost,
    /// Sent by this host (by us or by the kernel).
    Outgoing,
    /// Anything else.
    Other(u8),
}

impl From<u8> for PacketType {
    fn from(v: u8) -> Self {
        match v {
            libc::PACKET_HOST => PacketType::Host,
            libc::PACKET_BROADCAST => PacketType::Broadcast,
            libc::PACKET_MULTICAST => PacketType::Multicast,
            libc::PACKET_OTHERHOST => PacketType::OtherHost,
            libc::PACKET_OUTGOING => PacketType::Outgoing,
            x => PacketType::Other(x),
        }
    }
}

/// A packet socket for ARP on one interface.
#[derive(Debug)]
pub struct PacketSocket {
    fd: OwnedFd,
    ifindex: i32,
}

fn cvt(r: libc::c_int) -> io::Result<libc::c_int> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

impl PacketSocket {
    /// Opens a non-blocking ARP socket bound to interface index `ifindex`.
    pub fn open(ifindex: i32) -> io::Result<PacketSocket> {
        // SAFETY: plain socket(2); the fd is owned at once.
        let fd = cvt(unsafe {
            libc::socket(
                libc::AF_PACKET,
                libc::SOCK_RAW | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                0,
            )
        })?;
        // SAFETY: fd is a fresh, valid descriptor nobody else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        // SAFETY: sockaddr_ll is plain data; zero is a valid start.
        let mut sll: libc::sockaddr_ll = unsafe { zeroed() };
        sll.sll_family = libc::AF_PACKET as u16;
        sll.sll_protocol = eth_p_arp_be();
        sll.sll_ifindex = ifindex;
        // SAFETY: the address points to a sockaddr_ll of the given size.
        cvt(unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&sll as *const libc::sockaddr_ll).cast(),
                size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        })?;
        Ok(PacketSocket { fd, ifindex })
    }

    /// The interface index it is bound to.
    pub fn ifindex(&self) -> i32 {
        self.ifindex
    }

    /// Sends one whole Ethernet frame (the destination MAC is its first 6 bytes).
    pub fn send(&self, frame: &[u8]) -> io::Result<()> {
        let dst = EthernetAddress::from_bytes(frame)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "frame under 6 bytes"))?;
        // SAFETY: plain data.
        let mut sll: libc::sockaddr_ll = unsafe { zeroed() };
        sll.sll_family = libc::AF_PACKET as u16;
        sll.sll_protocol = eth_p_arp_be();
        sll.sll_ifindex = self.ifindex;
        sll.sll_halen = 6;
        sll.sll_addr[..6].copy_from_slice(&dst.0);
        // SAFETY: buffer and address are valid for the given lengths.
        let n = unsafe {
            libc::sendto(
                self.fd.as_raw_fd(),
                frame.as_ptr().cast(),
                frame.len(),
                0,
                (&sll as *const libc::sockaddr_ll).cast(),
                size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Receives one frame into `buf`: `Ok(None)` when nothing is waiting.
    pub fn recv(&self, buf: &mut [u8]) -> io::Result<Option<(usize, PacketType)>> {
        // SAFETY: plain data.
        let mut sll: libc::sockaddr_ll = unsafe { zeroed() };
        let mut len = size_of::<libc::sockaddr_ll>() as libc::socklen_t;
        // SAFETY: buffer and address are valid for the given lengths.
        let n = unsafe {
            libc::recvfrom(
                self.fd.as_raw_fd(),
                buf.as_mut_ptr().cast(),
                buf.len(),
                0,
                (&mut sll as *mut libc::sockaddr_ll).cast(),
                &mut len,
            )
        };
        if n < 0 {
            let e = io::Error::last_os_error();
            return match e.kind() {
                io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted => Ok(None),
                _ => Err(e),
            };
        }
        Ok(Some((n as usize, PacketType::from(sll.sll_pkttype))))
    }

    /// Receives frames sent to multicast MAC `mac` on this interface (adds it to
    /// the NIC's filter while the socket is open).
    pub fn join(&self, mac: EthernetAddress) -> io::Result<()> {
        // SAFETY: plain data.
        let mut mr: libc::packet_mreq = unsafe { zeroed() };
        mr.mr_ifindex = self.ifindex;
        mr.mr_type = libc::PACKET_MR_MULTICAST as u16;
        mr.mr_alen = 6;
        mr.mr_address[..6].copy_from_slice(&mac.0);
        // SAFETY: option value points to a packet_mreq of the given size.
        cvt(unsafe {
            libc::setsockopt(
                self.fd.as_raw_fd(),
                libc::SOL_PACKET,
                libc::PACKET_ADD_MEMBERSHIP,
                (&mr as *const libc::packet_mreq).cast(),
                size_of::<libc::packet_mreq>() as libc::socklen_t,
            )
        })?;
        Ok(())
    }
}

impl AsRawFd for PacketSocket {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

/// An interface's index, MAC and operational state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinkState {
    /// Interface index.
    pub index: i32,
    /// Hardware address (None if not Ethernet-like).
    pub mac: Option<EthernetAddress>,
    /// Administratively up and with carrier (`IFF_UP` and `IFF_RUNNING`).
    pub up: bool,
}

fn ifreq_for(name: &str) -> io::Result<libc::ifreq> {
    let b = name.as_bytes();
    if b.is_empty() || b.len() >= libc::IFNAMSIZ || b.contains(&0) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("`{name}` is not an interface name"),
        ));
    }
    // SAFETY: ifreq is plain data.
    let mut r: libc::ifreq = unsafe { zeroed() };
    for (d, s) in r.ifr_name.iter_mut().zip(b) {
        *d = *s as libc::c_char;
    }
    Ok(r)
}

/// Reads the state of interface `name` in the calling thread's namespace;
/// `Ok(None)` if there is no such interface.
pub fn link_state(name: &str) -> io::Result<Option<LinkState>> {
    // SAFETY: plain socket(2), owned at once.
    let fd = cvt(unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) })?;
    // SAFETY: fresh descriptor.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let ioctl = |req: libc::c_ulong, r: &mut libc::ifreq| -> io::Result<()> {
        // SAFETY: `r` is a valid ifreq for these SIOCGIF* requests.
        cvt(unsafe { libc::ioctl(fd.as_raw_fd(), req as _, r as *mut libc::ifreq) }).map(|_| ())
    };
    let mut r = ifreq_for(name)?;
    match ioctl(libc::SIOCGIFINDEX, &mut r) {
        Err(e) if e.raw_os_error() == Some(libc::ENODEV) => return Ok(None),
        other => other?,
    }
    // SAFETY: SIOCGIFINDEX filled the ifindex member.
    let index = unsafe { r.ifr_ifru.ifru_ifindex };
    let mut r = ifreq_for(name)?;
    ioctl(libc::SIOCGIFFLAGS, &mut r)?;
    // SAFETY: SIOCGIFFLAGS filled the flags member.
    let flags = i32::from(unsafe { r.ifr_ifru.ifru_flags });
    let up = flags & libc::IFF_UP != 0 && flags & libc::IFF_RUNNING != 0;
    let mut r = ifreq_for(name)?;
    ioctl(libc::SIOCGIFHWADDR, &mut r)?;
    // SAFETY: SIOCGIFHWADDR filled the hwaddr member.
    let hw = unsafe { r.ifr_ifru.ifru_hwaddr };
    let mac = (hw.sa_family == libc::ARPHRD_ETHER).then(|| {
        let mut m = [0u8; 6];
        for (d, s) in m.iter_mut().zip(hw.sa_data.iter()) {
            *d = *s as u8;
        }
        EthernetAddress(m)
    });
    Ok(Some(LinkState { index, mac, up }))
}

/// A netlink socket that becomes readable when any link changes.
#[derive(Debug)]
pub struct LinkWatch {
    fd: OwnedFd,
}

impl LinkWatch {
    /// Subscribes to link (and IPv4 address) notifications of the calling thread's
    /// namespace.
    pub fn open() -> io::Result<LinkWatch> {
        // SAFETY: plain socket(2), owned at once.
        let fd = cvt(unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_RAW | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                libc::NETLINK_ROUTE,
            )
        })?;
        // SAFETY: fresh descriptor.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        // SAFETY: plain data.
        let mut sa: libc::sockaddr_nl = unsafe { zeroed() };
        sa.nl_family = libc::AF_NETLINK as u16;
        sa.nl_groups = (libc::RTMGRP_LINK | libc::RTMGRP_IPV4_IFADDR) as u32;
        // SAFETY: address points to a sockaddr_nl of the given size.
        cvt(unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&sa as *const libc::sockaddr_nl).cast(),
                size_of::<libc::sockaddr_nl>() as libc::socklen_t,
            )
        })?;
        Ok(LinkWatch { fd })
    }

    /// Reads and discards every pending notification; true if there was any (or
    /// the socket overflowed, which also means "something changed").
    pub fn drain(&self) -> bool {
        let mut buf = [0u8; 8192];
        let mut any = false;
        loop {
            // SAFETY: valid buffer of the given length.
            let n = unsafe {
                libc::recv(
                    self.fd.as_raw_fd(),
                    buf.as_mut_ptr().cast(),
                    buf.len(),
                    libc::MSG_DONTWAIT,
                )
            };
            if n > 0 {
                any = true;
                continue;
            }
            let e = io::Error::last_os_error();
            if n < 0 && e.raw_os_error() == Some(libc::ENOBUFS) {
                any = true;
                continue;
            }
            return any;
        }
    }
}

impl AsRawFd for LinkWatch {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

/// Waits until one of `fds` is readable or `timeout` passes; returns which are
/// readable.
pub fn wait(fds: &[RawFd], timeout: Duration) -> io::Result<Vec<bool>> {
    let mut p: Vec<libc::pollfd> = fds
        .iter()
        .map(|fd| libc::pollfd {
            fd: *fd,
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    let ms = timeout.as_millis().min(i32::MAX as u128) as libc::c_int;
    // Round a sub-millisecond wait up, so that a due timer is not spun on.
    let ms = if ms == 0 && !timeout.is_zero() { 1 } else { ms };
    // SAFETY: `p` is a valid array of `p.len()` pollfds.
    let r = unsafe { libc::poll(p.as_mut_ptr(), p.len() as libc::nfds_t, ms) };
    if r < 0 {
        let e = io::Error::last_os_error();
        if e.kind() == io::ErrorKind::Interrupted {
            return Ok(vec![false; fds.len()]);
        }
        return Err(e);
    }
    Ok(p.iter().map(|x| x.revents != 0).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_state_and_bad_names() {
        let lo = link_state("lo").unwrap().expect("lo exists");
        assert!(lo.index > 0);
        assert_eq!(lo.mac, None, "loopback is not Ethernet");
        assert_eq!(link_state("plx-no-such-if0").unwrap(), None);
        assert!(link_state("").is_err());
        assert!(link_state("a-name-that-is-far-too-long").is_err());
    }

    #[test]
    fn packet_types() {
        assert_eq!(
            PacketType::from(libc::PACKET_OUTGOING),
            PacketType::Outgoing
        );
        assert_eq!(
            PacketType::from(libc::PACKET_BROADCAST),
            PacketType::Broadcast
        );
        assert_eq!(PacketType::from(9), PacketType::Other(9));
    }
}
