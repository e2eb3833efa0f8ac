//! Least privilege (#15): once the daemon has opened its sockets and devices it
//! stops being root. It switches to an unprivileged user and keeps only the
//! capabilities it still needs: CAP_NET_ADMIN (routes, addresses, TUN settings,
//! the `ip` commands it runs) and CAP_NET_RAW (raw ESP and GRE sockets, AF_PACKET
//! for ARP). The sequence is the classic one: `prctl(PR_SET_KEEPCAPS)` so that
//! the permitted set survives the change of user, the bounding set cut down to
//! the kept capabilities, `setgroups` + `setresgid` + `setresuid`, `capset` to the
//! kept set (effective, permitted, inheritable), the kept capabilities raised as
//! *ambient* ones so that commands the daemon runs (`ip route …`) get them too,
//! and `PR_SET_NO_NEW_PRIVS`. Then it reads back its ids and capabilities and
//! fails if they are not exactly what was asked.
//!
//! Capabilities are per thread: call [`drop_to`] on the main thread before
//! starting the others (threads started before keep nothing: the change of user
//! clears their capabilities). [`drop_to`] makes system calls only and allocates
//! nothing, so it may run in a freshly forked child; [`lookup_user`] (which reads
//! the user database) runs before.

use std::ffi::CString;
use std::io;

/// A capability the daemon may keep.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cap {
    /// CAP_NET_ADMIN (12): routes, addresses, links, TUN, netlink.
    NetAdmin,
    /// CAP_NET_RAW (13): raw IP and packet sockets.
    NetRaw,
}

impl Cap {
    /// The capability number (`linux/capability.h`).
    pub fn number(self) -> u32 {
        match self {
            Cap::NetAdmin => 12,
            Cap::NetRaw => 13,
        }
    }

    fn mask(caps: &[Cap]) -> u64 {
        caps.iter().fold(0, |m, c| m | 1 << c.number())
    }
}

/// What the gateway and the target keep after dropping root.
pub const DAEMON_CAPS: &[Cap] = &[Cap::NetAdmin, Cap::NetRaw];

/// A user to run as, looked up in the user database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    /// Its name.
    pub name: String,
    /// Its uid.
    pub uid: u32,
    /// Its primary gid.
    pub gid: u32,
}

/// Why privileges could not be dropped.
#[derive(Debug, thiserror::Error)]
pub enum PrivsError {
    /// No such user.
    #[error("there is no user {0:?} to run as (create it, e.g. `useradd --system --no-create-home plexgate`)")]
    UnknownUser(String),
    /// The user is root: nothing would be dropped.
    #[error("user {0:?} is root; run as an unprivileged user")]
    RootUser(String),
    /// A system call failed.
    #[error("dropping privileges: {what} failed: {err}")]
    Syscall {
        /// The call.
        what: &'static str,
        /// Its error.
        err: io::Error,
    },
    /// The result read back is not what was asked.
    #[error("dropping privileges: after the change {what}")]
    Verify {
        /// What is wrong.
        what: &'static str,
    },
}

/// What [`drop_privileges`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Now running as `user` with exactly the kept capabilities.
    Dropped {
        /// The user.
        user: User,
        /// The kept capability mask (bit n = capability n).
        caps: u64,
    },
    /// Not started as root (e.g. by systemd with `User=` and
    /// `AmbientCapabilities=`): capabilities beyond the kept ones, if any, were
    /// dropped.
    NotRoot {
        /// The effective uid.
        uid: u32,
        /// The effective capability mask now.
        caps: u64,
    },
    /// Root, and no user was given: nothing was dropped (the caller should warn).
    StayedRoot,
}

/// Looks `name` up in the user database (`getpwnam_r`).
pub fn lookup_user(name: &str) -> Result<User, PrivsError> {
    let unknown = || PrivsError::UnknownUser(name.to_string());
    let cname = CString::new(name).map_err(|_| unknown())?;
    // SAFETY: a zeroed passwd is a valid out-parameter for getpwnam_r.
    let mut pw: libc::passwd = unsafe { std::mem::zeroed() };
    let mut buf = vec![0 as libc::c_char; 16 * 1024];
    let mut result: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: every pointer is valid for the call, `buf.len()` is its size.
    let rc = unsafe {
        libc::getpwnam_r(
            cname.as_ptr(),
            &mut pw,
            buf.as_mut_ptr(),
            buf.len(),
            &mut result,
        )
    };
    if rc != 0 || result.is_null() {
        return Err(unknown());
    }
    Ok(User {
        name: name.to_string(),
        uid: pw.pw_uid,
        gid: pw.pw_gid,
    })
}

/// The daemon's entry point: with `user`, looks it up and drops to it keeping
/// `keep`; without, stays root if root (the caller warns) or trims the
/// capabilities to `keep` if not.
pub fn drop_privileges(user: Option<&str>, keep: &[Cap]) -> Result<Outcome, PrivsError> {
    // SAFETY: geteuid cannot fail.
    let euid = unsafe { libc::geteuid() };
    match user {
        Some(name) if euid == 0 => drop_to(&lookup_user(name)?, keep),
        None if euid == 0 => Ok(Outcome::StayedRoot),
        _ => {
            // Started unprivileged (systemd `User=` with `AmbientCapabilities=`):
            // trim to `keep` only if there is more; under a seccomp filter
            // without capset that is never needed.
            let mask = Cap::mask(keep);
            let (eff, prm) = get_caps()?;
            if (eff | prm) & !mask != 0 {
                set_caps(mask)?;
                verify_caps(mask)?;
            }
            let (eff, _) = get_caps()?;
            Ok(Outcome::NotRoot {
                uid: euid,
                caps: eff,
            })
        }
    }
}

fn check(what: &'static str, rc: libc::c_int) -> Result<(), PrivsError> {
    if rc == 0 {
        Ok(())
    } else {
        Err(PrivsError::Syscall {
            what,
            err: io::Error::last_os_error(),
        })
    }
}

/// Switches from root to `user`, keeping exactly `keep` (see the module doc).
/// System calls only; allocates nothing.
pub fn drop_to(user: &User, keep: &[Cap]) -> Result<Outcome, PrivsError> {
    if user.uid == 0 {
        return Err(PrivsError::RootUser(user.name.clone()));
    }
    let mask = Cap::mask(keep);
    // SAFETY: plain system calls on integers and a one-element array.
    unsafe {
        check(
            "prctl(PR_SET_KEEPCAPS)",
            libc::prctl(libc::PR_SET_KEEPCAPS, 1, 0, 0, 0),
        )?;
        drop_bounding(mask)?;
        let groups = [user.gid];
        check("setgroups", libc::setgroups(1, groups.as_ptr()))?;
        check("setresgid", libc::setresgid(user.gid, user.gid, user.gid))?;
        check("setresuid", libc::setresuid(user.uid, user.uid, user.uid))?;
    }
    set_caps(mask)?;
    // SAFETY: plain system calls on integers.
    unsafe {
        check(
            "prctl(PR_SET_KEEPCAPS, 0)",
            libc::prctl(libc::PR_SET_KEEPCAPS, 0, 0, 0, 0),
        )?;
        for c in keep {
            let rc = libc::prctl(
                libc::PR_CAP_AMBIENT,
                libc::PR_CAP_AMBIENT_RAISE,
                libc::c_ulong::from(c.number()),
                0,
                0,
            );
            check("prctl(PR_CAP_AMBIENT_RAISE)", rc)?;
        }
        check(
            "prctl(PR_SET_NO_NEW_PRIVS)",
            libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0),
        )?;
    }
    verify_ids(user)?;
    verify_caps(mask)?;
    Ok(Outcome::Dropped {
        user: user.clone(),
        caps: mask,
    })
}

/// Removes every capability not in `mask` from the bounding set (needs
/// CAP_SETPCAP, so while still root). Stops at the first number the kernel
/// does not know.
fn drop_bounding(mask: u64) -> Result<(), PrivsError> {
    for cap in 0..64u32 {
        // SAFETY: a query of the bounding set.
        let known =
            unsafe { libc::prctl(libc::PR_CAPBSET_READ, libc::c_ulong::from(cap), 0, 0, 0) };
        if known < 0 {
            break;
        }
        if mask & 1 << cap == 0 && known == 1 {
            // SAFETY: dropping one capability from the bounding set.
            let rc =
                unsafe { libc::prctl(libc::PR_CAPBSET_DROP, libc::c_ulong::from(cap), 0, 0, 0) };
            check("prctl(PR_CAPBSET_DROP)", rc)?;
        }
    }
    Ok(())
}

/// `struct __user_cap_header_struct`.
#[repr(C)]
struct CapHeader {
    version: u32,
    pid: libc::c_int,
}

/// `struct __user_cap_data_struct`.
#[repr(C)]
#[derive(Default, Clone, Copy)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

/// `_LINUX_CAPABILITY_VERSION_3`: 64-bit sets in two 32-bit halves.
const CAP_V3: u32 = 0x2008_0522;

fn halves(mask: u64) -> [u32; 2] {
    [mask as u32, (mask >> 32) as u32]
}

/// Sets effective, permitted and inheritable to `mask` for this thread.
fn set_caps(mask: u64) -> Result<(), PrivsError> {
    let mut hdr = CapHeader {
        version: CAP_V3,
        pid: 0,
    };
    let h = halves(mask);
    let data = [0, 1].map(|i| CapData {
        effective: h[i],
        permitted: h[i],
        inheritable: h[i],
    });
    // SAFETY: capset with a v3 header and two data structs.
    let rc = unsafe { libc::syscall(libc::SYS_capset, &mut hdr, data.as_ptr()) };
    check("capset", rc as libc::c_int)
}

/// This thread's (effective, permitted) capability masks.
fn get_caps() -> Result<(u64, u64), PrivsError> {
    let mut hdr = CapHeader {
        version: CAP_V3,
        pid: 0,
    };
    let mut data = [CapData::default(); 2];
    // SAFETY: capget with a v3 header and room for two data structs.
    let rc = unsafe { libc::syscall(libc::SYS_capget, &mut hdr, data.as_mut_ptr()) };
    check("capget", rc as libc::c_int)?;
    let join = |lo: u32, hi: u32| u64::from(lo) | u64::from(hi) << 32;
    Ok((
        join(data[0].effective, data[1].effective),
        join(data[0].permitted, data[1].permitted),
    ))
}

fn verify_caps(mask: u64) -> Result<(), PrivsError> {
    let (eff, prm) = get_caps()?;
    if eff != mask || prm != mask {
        return Err(PrivsError::Verify {
            what: "the capabilities are not exactly the kept ones",
        });
    }
    Ok(())
}

fn verify_ids(user: &User) -> Result<(), PrivsError> {
    let (mut r, mut e, mut s) = (0, 0, 0);
    let (mut gr, mut ge, mut gs) = (0, 0, 0);
    // SAFETY: out-parameters for getresuid/getresgid.
    unsafe {
        check("getresuid", libc::getresuid(&mut r, &mut e, &mut s))?;
        check("getresgid", libc::getresgid(&mut gr, &mut ge, &mut gs))?;
    }
    if [r, e, s] != [user.uid; 3] || [gr, ge, gs] != [user.gid; 3] {
        return Err(PrivsError::Verify {
            what: "the user or group ids are not the requested ones",
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests;
