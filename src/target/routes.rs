//! Where DVIPA traffic goes on a target: each DVIPA as a host address on the
//! loopback (not advertised), and policy routing that carries every packet the
//! host sends *from* a DVIPA into the target's TUN — `ip rule from DVIPA lookup
//! 7411`, `default dev TUN` in table 7411 — except what plexgate itself sends
//! straight out (firewall mark 0x7411 looks up `main`). IPv4 and IPv6 each have
//! their own rules and table (`ip -6`): an IPv6 DVIPA with IPv4 commands fails
//! ("Invalid source address").

use std::net::IpAddr;

use super::io::MARK;
use crate::gateway::{host_cidr, ip};

/// Routing table that carries DVIPA-sourced packets into the TUN.
const TABLE: &str = "7411";

/// `ip` (IPv4) or `ip -6` with `args`.
fn ip_family(v6: bool, args: &[&str]) -> bool {
    if v6 {
        let mut a = vec!["-6"];
        a.extend_from_slice(args);
        ip(&a)
    } else {
        ip(args)
    }
}

/// Put `dvipas` on the loopback and route what they send into `tun`.
pub(super) fn install(tun: &str, dvipas: &[IpAddr]) {
    sysctl(&format!("net/ipv4/conf/{tun}/rp_filter"), "0");
    sysctl("net/ipv4/conf/all/rp_filter", "0");
    sysctl(&format!("net/ipv4/conf/{tun}/accept_local"), "1");
    sysctl(&format!("net/ipv6/conf/{tun}/disable_ipv6"), "0");
    for d in dvipas {
        let v6 = d.is_ipv6();
        let cidr = host_cidr(*d);
        if v6 {
            // No duplicate address detection: the address is not advertised.
            ip(&["-6", "addr", "replace", &cidr, "dev", "lo", "nodad"]);
        } else {
            ip(&["addr", "replace", &cidr, "dev", "lo"]);
        }
        ip_family(v6, &["rule", "del", "from", &cidr, "lookup", TABLE]);
        ip_family(
            v6,
            &[
                "rule", "add", "from", &cidr, "lookup", TABLE, "priority", "100",
            ],
        );
    }
    for v6 in [false, true] {
        if !dvipas.iter().any(|d| d.is_ipv6() == v6) {
            continue;
        }
        let mark = format!("{MARK:#x}");
        ip_family(v6, &["rule", "del", "fwmark", &mark, "lookup", "main"]);
        ip_family(
            v6,
            &[
                "rule", "add", "fwmark", &mark, "lookup", "main", "priority", "99",
            ],
        );
        ip_family(
            v6,
            &["route", "replace", "default", "dev", tun, "table", TABLE],
        );
    }
}

fn sysctl(key: &str, value: &str) {
    let _ = std::fs::write(format!("/proc/sys/{key}"), value);
}
