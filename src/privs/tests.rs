//! Dropping privileges for real, in a forked child (the test process stays
//! root): the child checks its ids and capability sets in `/proc/self/status`
//! and what it can still do, and reports through its exit code.

use std::path::Path;

use super::*;

/// Reads `/proc/self/status` into `buf` with raw system calls (the forked child
/// of a threaded process must not allocate); returns its length.
fn read_status(buf: &mut [u8]) -> usize {
    let path = b"/proc/self/status\0";
    // SAFETY: a NUL-terminated path; `buf` is writable for its length.
    unsafe {
        let fd = libc::open(path.as_ptr().cast(), libc::O_RDONLY);
        if fd < 0 {
            return 0;
        }
        let mut len = 0;
        while len < buf.len() {
            let n = libc::read(fd, buf[len..].as_mut_ptr().cast(), buf.len() - len);
            if n <= 0 {
                break;
            }
            len += n as usize;
        }
        libc::close(fd);
        len
    }
}

/// The value after `key` on its line of the status text.
fn field<'a>(status: &'a [u8], key: &[u8]) -> &'a [u8] {
    status
        .split(|b| *b == b'\n')
        .find(|l| l.starts_with(key))
        .map(|l| l[key.len()..].trim_ascii())
        .unwrap_or(b"")
}

/// Parses a decimal number without allocating.
fn dec(s: &[u8]) -> Option<u32> {
    s.iter().try_fold(0u32, |n, b| {
        b.is_ascii_digit()
            .then(|| n.checked_mul(10)?.checked_add(u32::from(b - b'0')))
            .flatten()
    })
}

/// 0 if everything holds, else the number of the first check that failed.
fn child_checks(user: &User) -> i32 {
    match drop_to(user, DAEMON_CAPS) {
        Ok(Outcome::Dropped { caps: 0x3000, .. }) => {}
        _ => return 10,
    }
    let mut buf = [0u8; 8192];
    let n = read_status(&mut buf);
    let status = &buf[..n];
    // Uid:/Gid: real, effective, saved, filesystem.
    for (key, want, code) in [(&b"Uid:"[..], user.uid, 11), (&b"Gid:"[..], user.gid, 12)] {
        let ids = field(status, key);
        let all = ids.split(|b| *b == b'\t').filter(|x| !x.is_empty());
        if all.clone().count() != 4 || !all.clone().all(|x| dec(x) == Some(want)) {
            return code;
        }
    }
    // CAP_NET_ADMIN (12) and CAP_NET_RAW (13) only: 0x3000.
    for (key, code) in [
        (&b"CapEff:"[..], 13),
        (&b"CapPrm:"[..], 14),
        (&b"CapAmb:"[..], 15),
    ] {
        if field(status, key) != b"0000000000003000" {
            return code;
        }
    }
    if field(status, b"CapBnd:") != b"0000000000003000" {
        return 16;
    }
    if field(status, b"NoNewPrivs:") != b"1" {
        return 17;
    }
    // CAP_NET_RAW still works: a raw ESP socket opens.
    // SAFETY: socket(2) and close(2).
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_RAW, 50);
        if fd < 0 {
            return 18;
        }
        libc::close(fd);
    }
    // Root powers are gone: becoming root again fails, and so does binding a
    // privileged port (CAP_NET_BIND_SERVICE was not kept).
    // SAFETY: setuid(2) and socket calls on local values.
    unsafe {
        if libc::setuid(0) == 0 {
            return 19;
        }
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0);
        let mut sa: libc::sockaddr_in = std::mem::zeroed();
        sa.sin_family = libc::AF_INET as libc::sa_family_t;
        sa.sin_port = 81u16.to_be();
        sa.sin_addr.s_addr = u32::from(std::net::Ipv4Addr::LOCALHOST).to_be();
        let len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
        let bound = libc::bind(fd, (&sa as *const libc::sockaddr_in).cast(), len);
        libc::close(fd);
        if bound == 0 {
            return 20;
        }
    }
    // Started unprivileged (as under systemd), the daemon keeps what it has...
    match drop_privileges(None, DAEMON_CAPS) {
        Ok(Outcome::NotRoot { uid, caps }) if uid == user.uid && caps == 0x3000 => {}
        _ => return 21,
    }
    // ... and trims what it does not need.
    match drop_privileges(None, &[Cap::NetRaw]) {
        Ok(Outcome::NotRoot { caps: 0x2000, .. }) => {}
        _ => return 22,
    }
    0
}

const WHAT: [&str; 13] = [
    "drop_to did not report exactly CAP_NET_ADMIN + CAP_NET_RAW",
    "Uid: is not the user's four times",
    "Gid: is not the user's four times",
    "CapEff is not 0x3000",
    "CapPrm is not 0x3000",
    "CapAmb is not 0x3000",
    "CapBnd is not 0x3000",
    "NoNewPrivs is not set",
    "a raw socket could not be opened with CAP_NET_RAW kept",
    "setuid(0) succeeded after the drop",
    "a privileged port could be bound",
    "drop_privileges(None) as the user did not keep exactly 0x3000",
    "drop_privileges(None) did not trim to CAP_NET_RAW",
];

#[test]
fn a_forked_child_drops_to_nobody_keeping_net_admin_and_net_raw() {
    // SAFETY: geteuid cannot fail.
    assert_eq!(
        unsafe { libc::geteuid() },
        0,
        "this test drops root and must run as root (the build machines do)"
    );
    let user = lookup_user("nobody").expect("the user database has no `nobody`");
    assert_ne!(user.uid, 0);
    // SAFETY: the child only makes system calls and leaves with _exit.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    if pid == 0 {
        let code = child_checks(&user);
        // SAFETY: leave the child without running the parent's cleanup.
        unsafe { libc::_exit(code) };
    }
    let mut status = 0;
    // SAFETY: waiting for our own child.
    assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
    assert!(
        libc::WIFEXITED(status),
        "the child did not exit: {status:#x}"
    );
    let code = libc::WEXITSTATUS(status);
    let what = usize::try_from(code - 10).ok().and_then(|i| WHAT.get(i));
    assert_eq!(code, 0, "check {code} failed: {}", what.unwrap_or(&"?"));
}

#[test]
fn staying_root_is_the_default_and_unknown_users_are_refused() {
    // SAFETY: geteuid cannot fail.
    if unsafe { libc::geteuid() } == 0 {
        assert_eq!(
            drop_privileges(None, DAEMON_CAPS).unwrap(),
            Outcome::StayedRoot
        );
    }
    let e = lookup_user("plexgate-no-such-user").unwrap_err();
    assert_eq!(
        e.to_string(),
        "there is no user \"plexgate-no-such-user\" to run as (create it, e.g. `useradd --system --no-create-home plexgate`)"
    );
    let root = User {
        name: "root".into(),
        uid: 0,
        gid: 0,
    };
    assert!(matches!(
        drop_to(&root, DAEMON_CAPS),
        Err(PrivsError::RootUser(_))
    ));
    assert_eq!(Cap::mask(DAEMON_CAPS), 0x3000);
}

/// The systemd unit in `dist/` is sandboxed: `systemd-analyze security` rates its
/// exposure at most 3.0 ("OK"), parses every line of it, and finds none of the
/// dangerous capabilities or settings.
#[test]
fn the_systemd_unit_is_rated_ok_by_systemd_analyze() {
    let unit = Path::new(env!("CARGO_MANIFEST_DIR")).join("dist/plexgate@.service");
    let out = std::process::Command::new("systemd-analyze")
        .args(["security", "--offline=yes", "--no-pager"])
        .arg(&unit)
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run systemd-analyze ({e}): install it (`apt-get install systemd`); this test does not skip")
        });
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "systemd-analyze failed:\n{stderr}\n{stdout}"
    );
    // Every directive understood (a typo would be ignored with a warning).
    assert!(
        stderr.trim().is_empty(),
        "systemd-analyze warned:\n{stderr}"
    );
    let last = stdout
        .lines()
        .rev()
        .find(|l| l.contains("Overall exposure level"))
        .unwrap();
    let score: f64 = last
        .split(": ")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no score in {last:?}"));
    println!("{last}");
    assert!(score <= 3.0 && last.contains(" OK"), "{last}\n{stdout}");
    for granted in [
        "CapabilityBoundingSet=~CAP_SYS_ADMIN",
        "CapabilityBoundingSet=~CAP_SET(UID|GID|PCAP)",
        "NoNewPrivileges=",
        "ProtectSystem=",
        "ProtectHome=",
        "PrivateTmp=",
        "User=/DynamicUser=",
        "RestrictAddressFamilies=~…",
    ] {
        let line = stdout.lines().find(|l| l.contains(granted));
        assert!(
            line.is_some_and(|l| l.starts_with('✓')),
            "{granted}: {line:?}"
        );
    }
}
