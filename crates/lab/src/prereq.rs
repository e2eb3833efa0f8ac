//! Checking that the machine has what the lab needs.
//!
//! [`check_prerequisites`] looks for charon, swanctl, iperf3, tshark, ip, ss,
//! unshare, ping and `/dev/net/tun`, and for root. Tests call it first and *fail*
//! with the list of what is missing (and the hint to run `scripts/setup.sh`): a
//! missing strongSwan must never turn into a silently skipped interop test.

use crate::charon::CHARON_BIN;
use crate::error::{LabError, Result};
use std::path::{Path, PathBuf};

/// Tools looked up on `PATH` (plus `/usr/sbin` and `/sbin`), with the Debian
/// package that provides each.
pub const TOOLS: &[(&str, &str)] = &[
    ("swanctl", "strongswan-swanctl"),
    ("iperf3", "iperf3"),
    ("tshark", "tshark"),
    ("ip", "iproute2"),
    ("ss", "iproute2"),
    ("unshare", "util-linux"),
    ("ping", "iputils-ping"),
];

/// Find `tool` on `PATH`, `/usr/sbin` or `/sbin`.
pub fn which(tool: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/sbin")])
        .map(|d| d.join(tool))
        .find(|p| is_executable(p))
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p)
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

/// What is missing, as human-readable items (empty when all is there).
pub fn missing_prerequisites() -> Vec<String> {
    let mut missing = Vec::new();
    if !is_executable(Path::new(CHARON_BIN)) {
        missing.push(format!(
            "{CHARON_BIN} (package strongswan-charon + libcharon-extra-plugins)"
        ));
    }
    for (tool, pkg) in TOOLS {
        if which(tool).is_none() {
            missing.push(format!("{tool} (package {pkg})"));
        }
    }
    if !Path::new("/dev/net/tun").exists() {
        missing.push("/dev/net/tun (TUN device; kernel-libipsec and plexgate need it)".into());
    }
    // SAFETY: geteuid(2) has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        missing.push("root (network namespaces need CAP_SYS_ADMIN/CAP_NET_ADMIN)".into());
    }
    missing
}

/// `Ok(())` if everything is there, else [`LabError::Missing`] listing it all.
pub fn check_prerequisites() -> Result<()> {
    let missing = missing_prerequisites();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(LabError::Missing {
            missing: missing.join(", "),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn which_finds_sh_and_not_nonsense() {
        assert!(which("sh").is_some());
        assert!(which("no-such-tool-plexgate-lab").is_none());
    }

    #[test]
    fn missing_message_names_the_fix() {
        let e = LabError::Missing {
            missing: "iperf3 (package iperf3)".into(),
        };
        let m = e.to_string();
        assert!(
            m.contains("iperf3") && m.contains("scripts/setup.sh"),
            "{m}"
        );
    }
}
