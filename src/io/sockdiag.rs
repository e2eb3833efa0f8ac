//! The host's TCP sockets from the kernel's socket diagnostics (`NETLINK_SOCK_DIAG`,
//! `inet_diag`, see sock_diag(7)): what a target needs for SRVSTAT (listeners) and
//! NEWCONN (established connections on a DVIPA).
//!
//! Why not `/proc/net/tcp`: reading it formats ~150 bytes of text per socket of
//! the whole host, and walks every bucket of the established hash even to find
//! the listeners. A target polls its listeners four times a second; on a server
//! with 100 000 connections that would be megabytes of text per poll. A dump
//! restricted to `TCP_LISTEN` walks only the listening hash, and the answers are
//! binary records of 72 bytes. `/proc/net/tcp` stays the fallback when netlink is
//! refused (e.g. by a seccomp profile).

use std::io;
use std::mem::size_of;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use plexgate_distrib::listeners::{ProcSocket, TCP_ESTABLISHED, TCP_LISTEN};

/// `SOCK_DIAG_BY_FAMILY` (linux/sock_diag.h).
const SOCK_DIAG_BY_FAMILY: u16 = 20;
/// `NLMSG_ERROR`, `NLMSG_DONE` (linux/netlink.h).
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
/// `NLM_F_REQUEST | NLM_F_DUMP`.
const DUMP_REQUEST: u16 = 0x1 | 0x300;
/// Length of `struct nlmsghdr`.
const NLMSG_HDR: usize = 16;
/// Length of `struct inet_diag_req_v2`.
const REQ_LEN: usize = 56;
/// Length of `struct inet_diag_msg`.
const MSG_LEN: usize = 72;

/// Bit of TCP state `s` in `idiag_states`.
pub const fn state_bit(s: u8) -> u32 {
    1 << s
}

/// Listening sockets only.
pub const LISTEN: u32 = state_bit(TCP_LISTEN);
/// Established connections only.
pub const ESTABLISHED: u32 = state_bit(TCP_ESTABLISHED);

/// TCP sockets of this network namespace whose state is in `states` (a mask of
/// [`state_bit`]s), IPv4 and IPv6. IPv4-mapped IPv6 addresses come back as IPv4,
/// as `listeners::parse_proc_net_tcp` returns them.
pub fn tcp_sockets(states: u32) -> io::Result<Vec<ProcSocket>> {
    let mut out = Vec::new();
    for family in [libc::AF_INET as u8, libc::AF_INET6 as u8] {
        dump(family, states, &mut out)?;
    }
    Ok(out)
}

/// The request: `nlmsghdr` + `inet_diag_req_v2` for TCP sockets of `family`.
fn request(family: u8, states: u32, seq: u32) -> [u8; NLMSG_HDR + REQ_LEN] {
    let mut r = [0u8; NLMSG_HDR + REQ_LEN];
    r[0..4].copy_from_slice(&((NLMSG_HDR + REQ_LEN) as u32).to_ne_bytes());
    r[4..6].copy_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
    r[6..8].copy_from_slice(&DUMP_REQUEST.to_ne_bytes());
    r[8..12].copy_from_slice(&seq.to_ne_bytes());
    // pid 0: the kernel.
    r[16] = family;
    r[17] = libc::IPPROTO_TCP as u8;
    // idiag_ext 0, pad 0.
    r[20..24].copy_from_slice(&states.to_ne_bytes());
    // inet_diag_sockid all zero: no filter on addresses.
    r
}

fn dump(family: u8, states: u32, out: &mut Vec<ProcSocket>) -> io::Result<()> {
    // SAFETY: plain socket(2); the fd is owned below.
    let fd = unsafe {
        libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_DGRAM | libc::SOCK_CLOEXEC,
            libc::NETLINK_SOCK_DIAG,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd is a fresh descriptor we own.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let tv = libc::timeval {
        tv_sec: 2,
        tv_usec: 0,
    };
    // SAFETY: valid fd and option value of the right size.
    unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            (&tv as *const libc::timeval).cast(),
            size_of::<libc::timeval>() as libc::socklen_t,
        );
    }
    let req = request(family, states, 1);
    // SAFETY: zeroed sockaddr_nl addresses the kernel (pid 0, no groups).
    let mut kernel: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
    kernel.nl_family = libc::AF_NETLINK as u16;
    // SAFETY: req and kernel outlive the call; lengths are theirs.
    let sent = unsafe {
        libc::sendto(
            fd.as_raw_fd(),
            req.as_ptr().cast(),
            req.len(),
            0,
            (&kernel as *const libc::sockaddr_nl).cast(),
            size_of::<libc::sockaddr_nl>() as libc::socklen_t,
        )
    };
    if sent < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        // SAFETY: buf is writable for its length.
        let n = unsafe { libc::recv(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "sock_diag: netlink socket closed before NLMSG_DONE",
            ));
        }
        if parse_dump(&buf[..n as usize], out)? {
            return Ok(());
        }
    }
}

/// Parse one datagram of a dump answer into `out`; true when it ended the dump
/// (`NLMSG_DONE`). A netlink error or a truncated record is an error.
pub fn parse_dump(mut data: &[u8], out: &mut Vec<ProcSocket>) -> io::Result<bool> {
    let bad = |what: &str| io::Error::new(io::ErrorKind::InvalidData, format!("sock_diag: {what}"));
    while data.len() >= NLMSG_HDR {
        let len = u32::from_ne_bytes([data[0], data[1], data[2], data[3]]) as usize;
        let kind = u16::from_ne_bytes([data[4], data[5]]);
        if len < NLMSG_HDR || len > data.len() {
            return Err(bad("truncated netlink message"));
        }
        let body = &data[NLMSG_HDR..len];
        match kind {
            NLMSG_DONE => return Ok(true),
            NLMSG_ERROR => {
                let errno = body
                    .get(..4)
                    .map(|b| i32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
                    .unwrap_or(0);
                return Err(io::Error::from_raw_os_error(-errno));
            }
            SOCK_DIAG_BY_FAMILY => {
                if body.len() < MSG_LEN {
                    return Err(bad("short inet_diag_msg"));
                }
                if let Some(s) = socket_of(body) {
                    out.push(s);
                }
            }
            _ => {}
        }
        // Messages are 4-byte aligned (NLMSG_ALIGN).
        let next = (len + 3) & !3;
        data = data.get(next..).unwrap_or_default();
    }
    Ok(false)
}

/// One `inet_diag_msg`: family, state, then `inet_diag_sockid` (ports and
/// addresses in network byte order).
fn socket_of(m: &[u8]) -> Option<ProcSocket> {
    let (family, state) = (m[0], m[1]);
    let sport = u16::from_be_bytes([m[4], m[5]]);
    let dport = u16::from_be_bytes([m[6], m[7]]);
    let addr = |b: &[u8]| -> Option<IpAddr> {
        if family == libc::AF_INET as u8 {
            Some(IpAddr::V4(Ipv4Addr::new(b[0], b[1], b[2], b[3])))
        } else if family == libc::AF_INET6 as u8 {
            let a: [u8; 16] = b.get(..16)?.try_into().ok()?;
            let v6 = Ipv6Addr::from(a);
            Some(match v6.to_ipv4_mapped() {
                Some(v4) => IpAddr::V4(v4),
                None => IpAddr::V6(v6),
            })
        } else {
            None
        }
    };
    Some(ProcSocket {
        local: SocketAddr::new(addr(&m[8..24])?, sport),
        remote: SocketAddr::new(addr(&m[24..40])?, dport),
        state,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{TcpListener, TcpStream};

    #[test]
    fn finds_a_listener_and_its_connection_and_nothing_else_when_asked_for_listeners() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let la = l.local_addr().unwrap();
        let l6 = TcpListener::bind("[::1]:0").ok();
        let listeners = tcp_sockets(LISTEN).unwrap();
        assert!(
            listeners
                .iter()
                .any(|s| s.local == la && s.state == TCP_LISTEN),
            "{listeners:?}"
        );
        assert!(listeners.iter().all(|s| s.state == TCP_LISTEN));
        if let Some(l6) = &l6 {
            let a6 = l6.local_addr().unwrap();
            assert!(listeners.iter().any(|s| s.local == a6));
        }
        let c = TcpStream::connect(la).unwrap();
        let (_srv, _) = l.accept().unwrap();
        let ca = c.local_addr().unwrap();
        let est = tcp_sockets(ESTABLISHED).unwrap();
        assert!(est.iter().all(|s| s.state == TCP_ESTABLISHED));
        // Both ends of the loopback connection, with their remotes.
        assert!(
            est.iter().any(|s| s.local == ca && s.remote == la),
            "{est:?}"
        );
        assert!(
            est.iter().any(|s| s.local == la && s.remote == ca),
            "{est:?}"
        );
        // The same sockets as /proc/net/tcp shows.
        let proc = plexgate_distrib::listeners::read_listeners().unwrap();
        assert!(proc.iter().any(|s| s.local == la && s.state == TCP_LISTEN));
        assert!(proc.iter().any(|s| s.local == ca && s.remote == la));
    }

    fn record(kind: u16, body: &[u8]) -> Vec<u8> {
        let len = NLMSG_HDR + body.len();
        let mut v = Vec::new();
        v.extend_from_slice(&(len as u32).to_ne_bytes());
        v.extend_from_slice(&kind.to_ne_bytes());
        v.extend_from_slice(&[0; 10]);
        v.extend_from_slice(body);
        while v.len() % 4 != 0 {
            v.push(0);
        }
        v
    }

    #[test]
    fn parses_v4_v6_and_mapped_records_and_refuses_truncation_and_errors() {
        let mut m4 = vec![0u8; MSG_LEN];
        m4[0] = libc::AF_INET as u8;
        m4[1] = TCP_LISTEN;
        m4[4..6].copy_from_slice(&80u16.to_be_bytes());
        m4[8..12].copy_from_slice(&[203, 0, 113, 10]);
        let mut m6 = vec![0u8; MSG_LEN];
        m6[0] = libc::AF_INET6 as u8;
        m6[1] = TCP_ESTABLISHED;
        m6[4..6].copy_from_slice(&443u16.to_be_bytes());
        m6[6..8].copy_from_slice(&50000u16.to_be_bytes());
        m6[8..24].copy_from_slice(&"::ffff:10.0.0.1".parse::<Ipv6Addr>().unwrap().octets());
        m6[24..40].copy_from_slice(&"2001:db8::7".parse::<Ipv6Addr>().unwrap().octets());
        let mut dgram = record(SOCK_DIAG_BY_FAMILY, &m4);
        dgram.extend(record(SOCK_DIAG_BY_FAMILY, &m6));
        let mut out = Vec::new();
        assert!(!parse_dump(&dgram, &mut out).unwrap());
        assert_eq!(
            out,
            vec![
                ProcSocket {
                    local: "203.0.113.10:80".parse().unwrap(),
                    remote: "0.0.0.0:0".parse().unwrap(),
                    state: TCP_LISTEN
                },
                ProcSocket {
                    local: "10.0.0.1:443".parse().unwrap(),
                    remote: "[2001:db8::7]:50000".parse().unwrap(),
                    state: TCP_ESTABLISHED
                },
            ]
        );
        assert!(parse_dump(&record(NLMSG_DONE, &[0; 4]), &mut out).unwrap());
        let err = record(NLMSG_ERROR, &(-libc::EPERM).to_ne_bytes());
        assert_eq!(
            parse_dump(&err, &mut out).unwrap_err().raw_os_error(),
            Some(libc::EPERM)
        );
        let mut cut = record(SOCK_DIAG_BY_FAMILY, &m4);
        cut.truncate(40);
        assert!(parse_dump(&cut, &mut out).is_err());
        let short = record(SOCK_DIAG_BY_FAMILY, &m4[..20]);
        assert!(parse_dump(&short, &mut out).is_err());
    }
}
