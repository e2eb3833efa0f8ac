//! The sockets of links, for IPv4 and IPv6 alike: raw GRE (IP protocol 47)
//! sockets bound to a link's device and/or to our address on it, cluster-channel
//! UDP sockets bound to link addresses only (and to their interface, so that a
//! spoofer on another link cannot reach them), the IPv6 raw sender of a target,
//! and what a received datagram's family changes: raw IPv4 sockets hand over the
//! IPv4 header with each datagram, raw IPv6 sockets do not (RFC 3542 §3) — the
//! payload starts at the GRE header and the outer source is the address
//! `recvmmsg` reports ([`gre_outer`]).

use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::time::Duration;

use socket2::{Domain, Protocol, Socket, Type};

use super::net::{ipv4_dst, ipv4_outer, IPPROTO_GRE};

/// A raw GRE socket of the family of IPv6 (`v6`) or IPv4, bound to `device`
/// and/or to our address `local` on a link when given (then it receives only
/// GRE sent to that address, and sends with it as the source). The address may
/// still be tentative (IPv6 duplicate address detection): the bind is free.
pub fn gre_socket_on(v6: bool, device: Option<&str>, local: Option<IpAddr>) -> io::Result<Socket> {
    let dom = if v6 { Domain::IPV6 } else { Domain::IPV4 };
    let s = Socket::new(dom, Type::RAW, Some(Protocol::from(IPPROTO_GRE)))?;
    if let Some(dev) = device {
        s.bind_device(Some(dev.as_bytes()))?;
    }
    if let Some(a) = local {
        free_bind(&s, a)?;
        s.bind(&SocketAddr::new(a, 0).into())?;
    }
    let _ = s.set_recv_buffer_size(4 << 20);
    let _ = s.set_send_buffer_size(4 << 20);
    s.set_read_timeout(Some(Duration::from_millis(200)))?;
    Ok(s)
}

/// Allow binding `a` before it is usable (IPv6 duplicate address detection).
fn free_bind(s: &Socket, a: IpAddr) -> io::Result<()> {
    match a {
        IpAddr::V4(_) => s.set_freebind_v4(true),
        IpAddr::V6(_) => s.set_freebind_v6(true),
    }
}

/// A UDP socket bound to `addr` as [`udp_socket`], and to `device` when given
/// (then only datagrams that arrived on that interface reach it: a spoofer on
/// another link cannot reach it even with this address as destination), where
/// `addr` may not be usable yet (a link address during IPv6 duplicate address
/// detection): for the cluster channel, which listens on link addresses only.
pub fn udp_socket_on_link(addr: SocketAddr, device: Option<&str>) -> io::Result<Socket> {
    let dom = if addr.is_ipv4() {
        Domain::IPV4
    } else {
        Domain::IPV6
    };
    let s = Socket::new(dom, Type::DGRAM, Some(Protocol::UDP))?;
    s.set_reuse_address(true)?;
    if addr.is_ipv6() {
        s.set_only_v6(true)?;
    }
    if let Some(dev) = device {
        s.bind_device(Some(dev.as_bytes()))?;
    }
    free_bind(&s, addr.ip())?;
    s.bind(&addr.into())?;
    s.set_read_timeout(Some(Duration::from_millis(200)))?;
    Ok(s)
}

/// The name of the interface that has address `addr` (`getifaddrs(3)`), if any.
pub fn interface_of(addr: IpAddr) -> Option<String> {
    let mut list: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills `list` with a linked list we free below.
    if unsafe { libc::getifaddrs(&mut list) } != 0 {
        return None;
    }
    let mut found = None;
    let mut cur = list;
    while !cur.is_null() {
        // SAFETY: `cur` is a node of the list getifaddrs returned.
        let ifa = unsafe { &*cur };
        cur = ifa.ifa_next;
        if ifa.ifa_addr.is_null() {
            continue;
        }
        // SAFETY: a non-null ifa_addr points to a sockaddr of its family, and
        // sockaddr_storage is large enough to read either family from.
        let a = unsafe { sockaddr_ptr_to_std(ifa.ifa_addr) };
        if a.map(|a| a.ip()) == Some(addr) {
            // SAFETY: ifa_name is a NUL-terminated string owned by the list.
            let name = unsafe { std::ffi::CStr::from_ptr(ifa.ifa_name) };
            found = Some(name.to_string_lossy().into_owned());
            break;
        }
    }
    // SAFETY: `list` came from getifaddrs and is freed once.
    unsafe { libc::freeifaddrs(list) };
    found
}

/// # Safety
/// `sa` must point to a valid `sockaddr_in` or `sockaddr_in6` (or another family).
unsafe fn sockaddr_ptr_to_std(sa: *const libc::sockaddr) -> Option<SocketAddr> {
    match i32::from((*sa).sa_family) {
        libc::AF_INET => {
            let a = &*(sa as *const libc::sockaddr_in);
            Some(SocketAddr::V4(SocketAddrV4::new(
                Ipv4Addr::from(u32::from_be(a.sin_addr.s_addr)),
                0,
            )))
        }
        libc::AF_INET6 => {
            let a = &*(sa as *const libc::sockaddr_in6);
            Some(SocketAddr::V6(SocketAddrV6::new(
                a.sin6_addr.s6_addr.into(),
                0,
                0,
                a.sin6_scope_id,
            )))
        }
        _ => None,
    }
}

/// A raw socket that sends complete IPv6 packets (`IPPROTO_RAW` on an IPv6 socket
/// implies the header is included): a target's replies of plain IPv6 connections.
pub fn raw_ip6_sender() -> io::Result<Socket> {
    Socket::new(
        Domain::IPV6,
        Type::RAW,
        Some(Protocol::from(libc::IPPROTO_RAW)),
    )
}

/// Destination of an IPv4 or IPv6 packet.
pub fn ip_dst(packet: &[u8]) -> Option<IpAddr> {
    match packet.first()? >> 4 {
        4 => ipv4_dst(packet),
        6 => {
            let d: [u8; 16] = packet.get(24..40)?.try_into().ok()?;
            Some(IpAddr::V6(d.into()))
        }
        _ => None,
    }
}

/// Where the GRE header of a datagram from a raw protocol-47 socket starts, and
/// its outer source: after the IPv4 header (raw IPv4 sockets include it), or at
/// the start with the source `recvmmsg` reported (raw IPv6 sockets).
pub fn gre_outer(datagram: &[u8], from: Option<SocketAddr>) -> Option<(IpAddr, usize)> {
    match from {
        Some(SocketAddr::V6(a)) => Some((IpAddr::V6(*a.ip()), 0)),
        _ => ipv4_outer(datagram),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::net::{fd_of, send_to, RecvBatch};

    #[test]
    fn the_loopback_has_its_addresses() {
        assert_eq!(
            interface_of("127.0.0.1".parse().unwrap()).as_deref(),
            Some("lo")
        );
        assert_eq!(interface_of("192.0.2.254".parse().unwrap()), None);
    }

    #[test]
    fn gre_outer_and_ip_dst_per_family() {
        let mut v4 = [0u8; 28];
        v4[0] = 0x45;
        v4[12..16].copy_from_slice(&[10, 9, 2, 1]);
        v4[16..20].copy_from_slice(&[10, 9, 2, 2]);
        let from4: SocketAddr = "10.9.2.1:0".parse().unwrap();
        assert_eq!(
            gre_outer(&v4, Some(from4)),
            Some(("10.9.2.1".parse().unwrap(), 20))
        );
        // An IPv6 raw socket: no header, the source is the reported address.
        let from6: SocketAddr = "[fd00:9:2::1]:0".parse().unwrap();
        assert_eq!(
            gre_outer(&[0x20, 0, 0x86, 0xdd], Some(from6)),
            Some(("fd00:9:2::1".parse().unwrap(), 0))
        );
        assert_eq!(ip_dst(&v4), Some("10.9.2.2".parse().unwrap()));
        let mut v6 = [0u8; 40];
        v6[0] = 0x60;
        v6[24..40].copy_from_slice(
            &"fd00:30::30"
                .parse::<std::net::Ipv6Addr>()
                .unwrap()
                .octets(),
        );
        assert_eq!(ip_dst(&v6), Some("fd00:30::30".parse().unwrap()));
        assert_eq!(ip_dst(&v6[..30]), None);
    }

    #[test]
    fn ipv6_gre_on_loopback_arrives_without_header_and_with_its_source() {
        let rx = gre_socket_on(true, None, Some("::1".parse().unwrap())).unwrap();
        let tx = gre_socket_on(true, None, None).unwrap();
        let gre = [0x20, 0, 0x86, 0xdd, 0, 0, 0, 7, 0x60, 0, 0, 0];
        send_to(&tx, &gre, "[::1]:0".parse().unwrap()).unwrap();
        let mut b = RecvBatch::new();
        let n = b.recv(fd_of(&rx)).unwrap();
        assert_eq!(n, 1, "no GRE over IPv6 received on ::1");
        let (buf, from) = b.get_mut(0);
        assert_eq!(&buf[..], &gre[..]);
        assert_eq!(gre_outer(buf, from), Some(("::1".parse().unwrap(), 0)));
    }
}
