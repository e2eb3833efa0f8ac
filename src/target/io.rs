//! The target's sockets and TUN: per address the target has on its links, one raw
//! GRE socket and one cluster (UDP) socket bound to that address and to the
//! interface that has it — never to a wildcard — so that what arrives on a socket
//! arrived on that link, and what is sent on it leaves with the target's address
//! on that link as its source. Raw
//! `IPPROTO_RAW` senders (IPv4, IPv6) carry replies of plain connections straight
//! out, marked so that they bypass the policy routing into the TUN.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};

use plexgate_distrib as distrib;
use socket2::Socket;

use crate::cluster::TargetLink;
use crate::io::tun::Tun;
use crate::io::{link, net};

type BoxError = Box<dyn std::error::Error>;

/// Firewall mark of packets the target sends directly (exempt from the table
/// that carries DVIPA-sourced packets into the TUN).
pub(super) const MARK: u32 = 0x7411;

/// The sockets of one address of the target (usually one link; several links
/// when gateways reach the target at the same address).
pub(super) struct LinkSockets {
    /// The target's address.
    pub(super) local: IpAddr,
    /// Raw GRE (IP protocol 47) of the address's family, bound to it.
    pub(super) gre: Socket,
    /// The cluster channel, bound to (address, cluster port).
    pub(super) cluster: Socket,
    /// (link, gateway address) of every link on this address.
    links: Vec<(distrib::LinkId, IpAddr)>,
}

impl LinkSockets {
    /// The sockets of `l`'s address, bound to it and to the interface that has
    /// it (so that only what arrived on that link reaches them).
    fn open(l: &TargetLink, port: u16) -> Result<LinkSockets, BoxError> {
        let dev = link::interface_of(l.local);
        if dev.is_none() {
            tracing::warn!(
                "link {}: no interface has address {} (yet): its sockets are bound to the address only",
                l.name,
                l.local
            );
        }
        let dev = dev.as_deref();
        Ok(LinkSockets {
            local: l.local,
            gre: link::gre_socket_on(l.local.is_ipv6(), dev, Some(l.local))
                .map_err(|e| format!("GRE socket on {}: {e}", l.local))?,
            cluster: link::udp_socket_on_link(SocketAddr::new(l.local, port), dev)
                .map_err(|e| format!("cluster socket on {}:{port}: {e}", l.local))?,
            links: Vec::new(),
        })
    }

    /// The link a datagram from `src` arrived on: the link whose gateway has
    /// that address, or (a stranger: the stack will count it) the first.
    pub(super) fn link_of(&self, src: IpAddr) -> distrib::LinkId {
        self.links
            .iter()
            .find(|(_, a)| *a == src)
            .unwrap_or(&self.links[0])
            .0
    }
}

/// Everything the target's threads send on.
pub(super) struct TargetIo {
    pub(super) tun: Tun,
    pub(super) direct4: Socket,
    pub(super) direct6: Option<Socket>,
    pub(super) sockets: Vec<LinkSockets>,
    /// Gateway → (index in `sockets`, its cluster address).
    to_gateway: HashMap<distrib::NodeId, (usize, SocketAddr)>,
}

impl TargetIo {
    /// Open the TUN's companions: the sockets of every link, the direct senders.
    pub(super) fn open(tun: Tun, links: &[TargetLink], port: u16) -> Result<TargetIo, BoxError> {
        let mut sockets: Vec<LinkSockets> = Vec::new();
        let mut to_gateway = HashMap::new();
        for l in links {
            let i = match sockets.iter().position(|s| s.local == l.local) {
                Some(i) => i,
                None => {
                    sockets.push(LinkSockets::open(l, port)?);
                    sockets.len() - 1
                }
            };
            sockets[i].links.push((l.gateway.link, l.gateway.address));
            to_gateway.insert(l.gateway.id, (i, SocketAddr::new(l.gateway.address, port)));
        }
        let direct4 = net::raw_ip_sender()?;
        direct4.set_mark(MARK)?;
        let direct6 = match link::raw_ip6_sender() {
            Ok(s) => {
                s.set_mark(MARK)?;
                Some(s)
            }
            Err(e) => {
                tracing::warn!(
                    "no raw IPv6 sender ({e}): plain IPv6 replies cannot leave directly"
                );
                None
            }
        };
        Ok(TargetIo {
            tun,
            direct4,
            direct6,
            sockets,
            to_gateway,
        })
    }

    /// Index in `sockets` of the link to `gateway`.
    pub(super) fn socket_of(&self, gateway: distrib::NodeId) -> Option<usize> {
        self.to_gateway.get(&gateway).map(|(i, _)| *i)
    }

    /// Send every queued cluster message, each on the link of its gateway.
    pub(super) fn flush(&self, stack: &mut distrib::TargetStack) {
        while let Some(t) = stack.poll_transmit() {
            let distrib::Destination::Node(g) = t.to else {
                continue; // a target never broadcasts
            };
            match self.to_gateway.get(&g) {
                Some((i, to)) => {
                    if let Err(e) = net::send_to(&self.sockets[*i].cluster, &t.bytes, *to) {
                        tracing::debug!("cluster message to {g} at {to}: {e}");
                    }
                }
                None => tracing::debug!("cluster message to {g}: no link to it"),
            }
        }
    }
}
