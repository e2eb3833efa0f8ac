//! `[l2]`: owning addresses on the LAN.

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use toml::de::DeValue;

use super::values::{duration, parsed, parsed_list};
use crate::addr;
use crate::model::L2;
use crate::reader::{Cx, Table};

/// A boolean key (`None` when absent or of another type, which is reported).
fn boolean(t: &mut Table<'_, '_>, cx: &mut Cx, key: &str) -> Option<bool> {
    let v = t.raw(cx, key)?;
    match v.get_ref() {
        DeValue::Boolean(b) => Some(*b),
        _ => {
            let span = v.span();
            cx.err(
                &t.sub(key),
                Some(span),
                format!("`{key}` in {} must be true or false", t.what),
            );
            None
        }
    }
}

fn v4(t: &Table<'_, '_>, cx: &mut Cx, key: &str, a: IpAddr) -> Option<Ipv4Addr> {
    match a {
        IpAddr::V4(a) => Some(a),
        IpAddr::V6(_) => {
            let span = cx.spans.get(&t.sub(key));
            cx.err(
                &t.sub(key),
                span,
                format!("`{key}` in {}: ARP is IPv4 only; {a} is IPv6", t.what),
            );
            None
        }
    }
}

/// A MAC address `aa:bb:cc:dd:ee:ff`.
fn mac(s: &str) -> Result<[u8; 6], String> {
    let parts: Vec<&str> = s.split(':').collect();
    let mut m = [0u8; 6];
    if parts.len() != 6 {
        return Err(format!(
            "{s:?} is not a MAC address (six hex bytes separated by ':')"
        ));
    }
    for (o, p) in m.iter_mut().zip(&parts) {
        *o = u8::from_str_radix(p, 16).map_err(|_| format!("{s:?} is not a MAC address"))?;
    }
    if m[0] & 1 == 0 {
        return Err(format!(
            "cluster MAC {s} is not a multicast address: without macvlan a Linux interface accepts one unicast MAC only (use e.g. 03:bf:…, as seed 004 and iptables CLUSTERIP do)"
        ));
    }
    Ok(m)
}

pub(super) fn l2(mut t: Table<'_, '_>, cx: &mut Cx) -> L2 {
    let arp = boolean(&mut t, cx, "arp").unwrap_or(false);
    let interfaces = t
        .strings(cx, "interfaces", false)
        .unwrap_or_default()
        .into_iter()
        .map(|s| s.0)
        .collect();
    let system_address = parsed(&mut t, cx, "system_address", false, addr::parse_ip)
        .and_then(|a| v4(&t, cx, "system_address", a));
    let proxy_arp = parsed_list(&mut t, cx, "proxy_arp", false, addr::parse_ip)
        .into_iter()
        .filter_map(|a| v4(&t, cx, "proxy_arp", a))
        .collect();
    let adapter_backup = boolean(&mut t, cx, "adapter_backup").unwrap_or(false);
    let cluster_mac = parsed(&mut t, cx, "cluster_mac", false, mac);
    let cluster_members = parsed_list(&mut t, cx, "cluster_members", false, addr::parse_ip)
        .into_iter()
        .filter_map(|a| v4(&t, cx, "cluster_members", a))
        .collect();
    let garp_count = t
        .int(cx, "garp_count", false, 1, 20)
        .map_or(3, |n| n as u32);
    let garp_interval = duration(&mut t, cx, "garp_interval").unwrap_or(Duration::from_millis(500));
    t.finish(
        cx,
        &[
            "arp",
            "interfaces",
            "system_address",
            "proxy_arp",
            "adapter_backup",
            "cluster_mac",
            "cluster_members",
            "garp_count",
            "garp_interval",
        ],
    );
    L2 {
        arp,
        interfaces,
        system_address,
        proxy_arp,
        adapter_backup,
        cluster_mac,
        cluster_members,
        garp_count,
        garp_interval,
    }
}
