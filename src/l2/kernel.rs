//! Keeping the kernel quiet about addresses plexgate owns, and giving it those
//! addresses only while this gateway is active.
//!
//! plexgate speaks ARP itself for the gateway VIPA, the gateway-system address and
//! proxy-ARP VIPAs; the kernel must not answer for them too, or a client would get
//! two answers, or an answer from the standby. The approach (the same as LVS
//! direct routing and keepalived setups):
//!
//! - On every LAN interface plexgate speaks ARP on: `arp_ignore = 1` (the kernel
//!   answers only for addresses configured on the interface the request came in
//!   on, so never for an address on `lo`), `arp_announce = 2` (its own requests
//!   use the interface's address as sender, never a VIPA), `proxy_arp = 0`
//!   (plexgate does proxy ARP). In cluster MAC mode plexgate also answers for the
//!   interface's own address (with per-member MACs), so `arp_ignore = 8` (the
//!   kernel answers nothing on that interface). The previous values are restored
//!   on a clean stop.
//! - The gateway VIPA and the system address live on a device such as `lo` only
//!   while this gateway is active for them (added before the gratuitous ARP, removed
//!   after the last answer): the standby does not hold them, so it neither answers
//!   nor accepts their traffic. Proxy-ARP VIPAs are not placed: the gateway routes
//!   DVIPAs into its TUN.
//!
//! Sysctls are written under `/proc/sys/net/ipv4/conf/IFACE/`, which the kernel
//! resolves in the writing thread's network namespace; addresses are added and
//! removed with rtnetlink (`RTM_NEWADDR`, `RTM_DELADDR`).

use std::collections::BTreeSet;
use std::io;
use std::mem::{size_of, zeroed};
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::PathBuf;

/// Which sysctls to set on the LAN interfaces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Quiet {
    /// plexgate also answers for the interfaces' own addresses (cluster MAC mode).
    pub(super) cluster: bool,
    /// An interface's address may be answered on another interface while its own
    /// has no carrier (adapter backup): routes through an interface without
    /// carrier must not be used for the replies.
    pub(super) backup: bool,
}

/// Sysctls changed and addresses placed, undone by [`KernelGuard::restore`].
#[derive(Debug, Default)]
pub(super) struct KernelGuard {
    quiet: Option<Quiet>,
    sysctls: Vec<(PathBuf, String)>,
    device: Option<(String, i32)>,
    placed: BTreeSet<Ipv4Addr>,
}

fn sysctl_path(iface: &str, key: &str) -> PathBuf {
    PathBuf::from("/proc/sys/net/ipv4/conf")
        .join(iface)
        .join(key)
}

impl KernelGuard {
    /// A guard that quiets interfaces as [`KernelGuard::quiet_iface`] meets them
    /// (`None`: leave the sysctls alone).
    pub(super) fn new(quiet: Option<Quiet>) -> KernelGuard {
        KernelGuard {
            quiet,
            ..KernelGuard::default()
        }
    }

    /// Sets the ARP sysctls of interface `iface`. Called when the interface is
    /// first seen and again whenever it is re-created (a new interface starts
    /// from the `default` values); the value found the first time is the one
    /// restored.
    pub(super) fn quiet_iface(&mut self, iface: &str) -> io::Result<()> {
        let Some(q) = self.quiet else {
            return Ok(());
        };
        let mut keys = vec![
            ("arp_ignore", if q.cluster { "8" } else { "1" }),
            ("arp_announce", "2"),
            ("proxy_arp", "0"),
        ];
        if q.backup {
            keys.push(("ignore_routes_with_linkdown", "1"));
        }
        for (key, value) in keys {
            let p = sysctl_path(iface, key);
            let err = |e: io::Error| io::Error::new(e.kind(), format!("{}: {e}", p.display()));
            let old = std::fs::read_to_string(&p).map_err(err)?;
            std::fs::write(&p, value).map_err(err)?;
            if !self.sysctls.iter().any(|(q, _)| *q == p) {
                self.sysctls.push((p, old.trim().to_string()));
            }
        }
        Ok(())
    }

    /// Owned addresses go on `device` (index `ifindex`) while active.
    pub(super) fn set_device(&mut self, device: String, ifindex: i32) {
        self.device = Some((device, ifindex));
    }

    /// Gives `addr`/32 to the kernel on the device (no-op without a device).
    pub(super) fn place(&mut self, addr: Ipv4Addr) -> io::Result<()> {
        let Some((dev, index)) = &self.device else {
            return Ok(());
        };
        match addr_request(true, *index, addr) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {}
            Err(e) => {
                return Err(io::Error::new(
                    e.kind(),
                    format!("adding {addr}/32 to {dev}: {e}"),
                ))
            }
        }
        self.placed.insert(addr);
        Ok(())
    }

    /// Takes `addr` from the device whether or not this agent placed it (a
    /// gateway that crashed while active left it there; a standby must not hold
    /// it).
    pub(super) fn clear(&mut self, addr: Ipv4Addr) -> io::Result<()> {
        let Some((dev, index)) = &self.device else {
            return Ok(());
        };
        match addr_request(false, *index, addr) {
            Ok(()) => {
                tracing::info!("l2: removed {addr}/32 left on {dev}");
                Ok(())
            }
            Err(e) if e.raw_os_error() == Some(libc::EADDRNOTAVAIL) => Ok(()),
            Err(e) => Err(io::Error::new(
                e.kind(),
                format!("removing {addr}/32 from {dev}: {e}"),
            )),
        }
    }

    /// Takes `addr` back from the kernel (no-op if it was not placed).
    pub(super) fn remove(&mut self, addr: Ipv4Addr) -> io::Result<()> {
        let Some((dev, index)) = &self.device else {
            return Ok(());
        };
        if !self.placed.remove(&addr) {
            return Ok(());
        }
        match addr_request(false, *index, addr) {
            Ok(()) => Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::EADDRNOTAVAIL) => Ok(()),
            Err(e) => Err(io::Error::new(
                e.kind(),
                format!("removing {addr}/32 from {dev}: {e}"),
            )),
        }
    }

    /// Removes every placed address and restores the sysctls; returns what failed.
    pub(super) fn restore(&mut self) -> Vec<String> {
        let mut errors = Vec::new();
        let placed: Vec<Ipv4Addr> = self.placed.iter().copied().collect();
        for a in placed {
            if let Err(e) = self.remove(a) {
                errors.push(e.to_string());
            }
        }
        for (p, old) in std::mem::take(&mut self.sysctls).into_iter().rev() {
            if let Err(e) = std::fs::write(&p, &old) {
                errors.push(format!("restoring {}: {e}", p.display()));
            }
        }
        errors
    }
}

fn push_attr(msg: &mut Vec<u8>, kind: u16, data: &[u8]) {
    let len = 4 + data.len();
    msg.extend_from_slice(&(len as u16).to_ne_bytes());
    msg.extend_from_slice(&kind.to_ne_bytes());
    msg.extend_from_slice(data);
    while !msg.len().is_multiple_of(4) {
        msg.push(0);
    }
}

/// The rtnetlink message for `ip addr add|del ADDR/32 dev INDEX`.
fn addr_message(add: bool, ifindex: i32, addr: Ipv4Addr) -> Vec<u8> {
    let (kind, mut flags) = if add {
        (libc::RTM_NEWADDR, libc::NLM_F_CREATE | libc::NLM_F_EXCL)
    } else {
        (libc::RTM_DELADDR, 0)
    };
    flags |= libc::NLM_F_REQUEST | libc::NLM_F_ACK;
    let mut msg = Vec::with_capacity(48);
    msg.extend_from_slice(&[0; 4]); // nlmsg_len, set below
    msg.extend_from_slice(&kind.to_ne_bytes());
    msg.extend_from_slice(&(flags as u16).to_ne_bytes());
    msg.extend_from_slice(&1u32.to_ne_bytes()); // seq
    msg.extend_from_slice(&0u32.to_ne_bytes()); // pid: the kernel fills it
                                                // struct ifaddrmsg: family, prefixlen, flags, scope, index.
    msg.extend_from_slice(&[libc::AF_INET as u8, 32, 0, libc::RT_SCOPE_UNIVERSE]);
    msg.extend_from_slice(&(ifindex as u32).to_ne_bytes());
    push_attr(&mut msg, libc::IFA_LOCAL, &addr.octets());
    push_attr(&mut msg, libc::IFA_ADDRESS, &addr.octets());
    let len = msg.len() as u32;
    msg[..4].copy_from_slice(&len.to_ne_bytes());
    msg
}

/// `ip addr add|del ADDR/32 dev INDEX` over rtnetlink, waiting for the kernel's ack.
fn addr_request(add: bool, ifindex: i32, addr: Ipv4Addr) -> io::Result<()> {
    // SAFETY: plain socket(2), owned at once.
    let fd = unsafe {
        libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            libc::NETLINK_ROUTE,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fresh descriptor.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let tv = libc::timeval {
        tv_sec: 2,
        tv_usec: 0,
    };
    // SAFETY: option value is a timeval of the given size.
    unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            (&tv as *const libc::timeval).cast(),
            size_of::<libc::timeval>() as libc::socklen_t,
        );
    }
    let msg = addr_message(add, ifindex, addr);
    // SAFETY: plain data.
    let mut sa: libc::sockaddr_nl = unsafe { zeroed() };
    sa.nl_family = libc::AF_NETLINK as u16;
    // SAFETY: buffer and address valid for the given lengths.
    let n = unsafe {
        libc::sendto(
            fd.as_raw_fd(),
            msg.as_ptr().cast(),
            msg.len(),
            0,
            (&sa as *const libc::sockaddr_nl).cast(),
            size_of::<libc::sockaddr_nl>() as libc::socklen_t,
        )
    };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut buf = [0u8; 1024];
    // SAFETY: valid buffer.
    let n = unsafe { libc::recv(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    let reply = &buf[..n as usize];
    // nlmsghdr (16 bytes) then, for NLMSG_ERROR, an i32 error (0 = ack).
    if reply.len() < 20 || u16::from_ne_bytes([reply[4], reply[5]]) != libc::NLMSG_ERROR as u16 {
        return Err(io::Error::other("unexpected rtnetlink answer"));
    }
    let err = i32::from_ne_bytes([reply[16], reply[17], reply[18], reply[19]]);
    if err == 0 {
        Ok(())
    } else {
        Err(io::Error::from_raw_os_error(-err))
    }
}
