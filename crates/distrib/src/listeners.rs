//! Listener discovery on a target: which applications listen on a DVIPA port
//! (for SRVSTAT) and which connections exist (for NEWCONN).
//!
//! Linux publishes its TCP sockets in `/proc/net/tcp` and `/proc/net/tcp6`:
//! one line per socket, `local_address` and `rem_address` as hex `ADDR:PORT`
//! where the address is printed one 32-bit word at a time in host byte order
//! (little-endian on x86 and arm64, so `0100007F` is 127.0.0.1) and the port
//! in plain big hex; `st` is the TCP state (`0A` LISTEN, `01` ESTABLISHED).
//! [`parse_proc_net_tcp`] is a pure function over that text;
//! [`read_listeners`] is the thin reader of the two files. A listener bound
//! to `0.0.0.0` or `::` serves every local address, DVIPAs included.

use crate::dpt::PortSet;
use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use thiserror::Error;

/// TCP state code of a listening socket.
pub const TCP_LISTEN: u8 = 0x0A;
/// TCP state code of an established connection.
pub const TCP_ESTABLISHED: u8 = 0x01;

/// One socket line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct ProcSocket {
    /// Local address and port.
    pub local: SocketAddr,
    /// Remote address and port (unspecified for listeners).
    pub remote: SocketAddr,
    /// TCP state code (see [`TCP_LISTEN`], [`TCP_ESTABLISHED`]).
    pub state: u8,
}

/// A line of `/proc/net/tcp*` that cannot be read.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[error("/proc/net/tcp line {line}: {what}")]
pub struct ListenerError {
    /// 1-based line number.
    pub line: usize,
    /// What is wrong.
    pub what: &'static str,
}

/// Parse the text of `/proc/net/tcp` or `/proc/net/tcp6` (header line skipped).
/// IPv4-mapped IPv6 addresses (`::ffff:a.b.c.d`) are returned as IPv4.
pub fn parse_proc_net_tcp(text: &str) -> Result<Vec<ProcSocket>, ListenerError> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let mut f = line.split_whitespace();
        let Some(first) = f.next() else { continue };
        if first == "sl" {
            continue;
        }
        let err = |what| ListenerError { line: i + 1, what };
        if !first.ends_with(':') {
            return Err(err("no slot number"));
        }
        let local = f
            .next()
            .ok_or(err("no local address"))
            .and_then(|s| sock(s).ok_or(err("bad local address")))?;
        let remote = f
            .next()
            .ok_or(err("no remote address"))
            .and_then(|s| sock(s).ok_or(err("bad remote address")))?;
        let state = f
            .next()
            .and_then(|s| u8::from_str_radix(s, 16).ok())
            .ok_or(err("bad state"))?;
        out.push(ProcSocket {
            local,
            remote,
            state,
        });
    }
    Ok(out)
}

fn word(hex: &str) -> Option<[u8; 4]> {
    if hex.len() != 8 {
        return None;
    }
    // Printed as a host-order u32: the in-memory (network-order) bytes come
    // out little-endian on the machines plexgate runs on.
    Some(u32::from_str_radix(hex, 16).ok()?.to_le_bytes())
}

fn sock(s: &str) -> Option<SocketAddr> {
    let (a, p) = s.split_once(':')?;
    let port = u16::from_str_radix(p, 16).ok()?;
    if p.len() != 4 {
        return None;
    }
    let ip = match a.len() {
        8 => IpAddr::V4(Ipv4Addr::from(word(a)?)),
        32 => {
            let mut b = [0u8; 16];
            for i in 0..4 {
                b[i * 4..i * 4 + 4].copy_from_slice(&word(a.get(i * 8..i * 8 + 8)?)?);
            }
            let v6 = Ipv6Addr::from(b);
            match v6.to_ipv4_mapped() {
                Some(v4) => IpAddr::V4(v4),
                None => IpAddr::V6(v6),
            }
        }
        _ => return None,
    };
    Some(SocketAddr::new(ip, port))
}

/// Read `/proc/net/tcp` and `/proc/net/tcp6` (a missing tcp6 is not an error).
pub fn read_listeners() -> std::io::Result<Vec<ProcSocket>> {
    let bad = |e: ListenerError| std::io::Error::new(std::io::ErrorKind::InvalidData, e);
    let mut v = parse_proc_net_tcp(&std::fs::read_to_string("/proc/net/tcp")?).map_err(bad)?;
    match std::fs::read_to_string("/proc/net/tcp6") {
        Ok(t) => v.extend(parse_proc_net_tcp(&t).map_err(bad)?),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    Ok(v)
}

/// The (DVIPA, port) pairs that have a listener, for DVIPAs served on `ports`.
/// A wildcard listener (`0.0.0.0` / `::`) counts for every DVIPA of its family;
/// an IPv6 wildcard also serves IPv4 (dual-stack sockets, the Linux default).
pub fn listening_on<'a>(
    sockets: &[ProcSocket],
    served: impl IntoIterator<Item = (IpAddr, &'a PortSet)>,
) -> BTreeSet<(IpAddr, u16)> {
    let mut out = BTreeSet::new();
    let served: Vec<(IpAddr, &PortSet)> = served.into_iter().collect();
    for s in sockets.iter().filter(|s| s.state == TCP_LISTEN) {
        let (la, port) = (s.local.ip(), s.local.port());
        for (dvipa, ports) in &served {
            let addr_ok =
                la == *dvipa || (la.is_unspecified() && (la.is_ipv6() || dvipa.is_ipv4()));
            if addr_ok && ports.contains(port) {
                out.insert((*dvipa, port));
            }
        }
    }
    out
}

/// Listener changes since the last report: `(dvipa, port, listening)`.
#[derive(Clone, Debug, Default)]
pub struct ListenerTracker {
    last: BTreeSet<(IpAddr, u16)>,
}

impl ListenerTracker {
    /// What was last reported.
    pub fn current(&self) -> &BTreeSet<(IpAddr, u16)> {
        &self.last
    }

    /// Replace the known set with `now` and return the ups and downs.
    pub fn diff(&mut self, now: BTreeSet<(IpAddr, u16)>) -> Vec<(IpAddr, u16, bool)> {
        let mut v: Vec<(IpAddr, u16, bool)> = now
            .difference(&self.last)
            .map(|(a, p)| (*a, *p, true))
            .collect();
        v.extend(self.last.difference(&now).map(|(a, p)| (*a, *p, false)));
        self.last = now;
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Captured on the build machine while `python3 -m http.server --bind
    // 127.0.0.5 8099` and `--bind ::1 8098` ran with one client connected.
    const TCP: &str = include_str!("../tests/data/proc_net_tcp.txt");
    const TCP6: &str = include_str!("../tests/data/proc_net_tcp6.txt");

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn parses_real_proc_net_tcp() {
        let v = parse_proc_net_tcp(TCP).unwrap();
        assert_eq!(v.len(), 4);
        assert_eq!(v[0].local, sa("0.0.0.0:2024"));
        assert_eq!(v[0].state, TCP_LISTEN);
        assert_eq!(v[1].local, sa("127.0.0.5:8099"));
        assert_eq!(v[1].state, TCP_LISTEN);
        assert_eq!(v[2].local, sa("127.0.0.5:8099"));
        assert_eq!(v[2].remote, sa("127.0.0.1:33108"));
        assert_eq!(v[2].state, TCP_ESTABLISHED);
        let v6 = parse_proc_net_tcp(TCP6).unwrap();
        assert_eq!(
            v6,
            vec![ProcSocket {
                local: sa("[::1]:8098"),
                remote: sa("[::]:0"),
                state: TCP_LISTEN
            }]
        );
    }

    #[test]
    fn mapped_and_bad_lines() {
        let t = "  sl  local_address remote\n   0: 0000000000000000FFFF00000500007F:1FA3 00000000000000000000000000000000:0000 0A 0";
        let v = parse_proc_net_tcp(t).unwrap();
        assert_eq!(v[0].local, sa("127.0.0.5:8099"));
        assert_eq!(
            parse_proc_net_tcp("   0: 0500007:1FA3 00000000:0000 0A"),
            Err(ListenerError {
                line: 1,
                what: "bad local address"
            })
        );
        assert!(parse_proc_net_tcp("   0: 0500007F:1FA3 00000000:0000 ZZ").is_err());
        assert!(parse_proc_net_tcp("x").is_err());
    }

    #[test]
    fn listeners_for_dvipas_and_diff() {
        let mut v = parse_proc_net_tcp(TCP).unwrap();
        v.extend(parse_proc_net_tcp(TCP6).unwrap());
        let d5: IpAddr = "127.0.0.5".parse().unwrap();
        let d9: IpAddr = "127.0.0.9".parse().unwrap();
        let d6: IpAddr = "::1".parse().unwrap();
        let ports = PortSet::List(vec![8099, 2024, 8098]);
        let now = listening_on(&v, [(d5, &ports), (d9, &ports), (d6, &ports)]);
        // 127.0.0.5:8099 (bound), 0.0.0.0:2024 for both v4 DVIPAs, ::1:8098.
        let want: BTreeSet<(IpAddr, u16)> = [(d5, 8099), (d5, 2024), (d9, 2024), (d6, 8098)]
            .into_iter()
            .collect();
        assert_eq!(now, want);
        let mut t = ListenerTracker::default();
        assert_eq!(t.diff(now.clone()).len(), 4);
        assert!(t.diff(now).is_empty());
        // The http.server on 8099 stops.
        let v2: Vec<ProcSocket> = v
            .iter()
            .copied()
            .filter(|s| s.local.port() != 8099)
            .collect();
        let later = listening_on(&v2, [(d5, &ports), (d9, &ports), (d6, &ports)]);
        assert_eq!(t.diff(later), vec![(d5, 8099, false)]);
    }

    #[test]
    fn reads_this_machine() {
        // Whatever runs here, the files parse.
        assert!(read_listeners().is_ok());
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_text_never_panics(s in "\\PC{0,200}") {
            let _ = parse_proc_net_tcp(&s);
        }
    }
}
