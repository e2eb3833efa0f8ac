//! The receive path: one ARP frame that arrived on one interface.
//!
//! 1. Not ARP for Ethernet and IPv4 (truncated, other types or lengths, unknown
//!    operation): ignored, counted as malformed.
//! 2. Sent from one of this gateway's own interfaces: if it arrived on another
//!    interface, both share a network (seed 002); nothing else.
//! 3. An impossible sender (multicast or zero MAC that is not a cluster MAC,
//!    multicast or broadcast IPv4 sender): ignored, counted as spoofed.
//! 4. A sender claiming an address this gateway answers for, with another MAC:
//!    ignored, counted, logged once and defended (module `conflict`).
//! 5. A request for an address this gateway answers on this interface, addressed
//!    to broadcast or to us: one reply (RFC 826). In cluster MAC mode a request
//!    from a member for this member's own address gets this member's per-member
//!    MAC (seed 004), so that members reach each other point-to-point while
//!    everyone else sees the shared cluster MAC for the owned addresses.

use std::net::Ipv4Addr;
use std::time::Instant;

use plexgate_wire::arp::{ArpFrameRepr, ArpOperation, ArpRepr, EthernetAddress};

use super::duty::{Duty, Reason};
use super::{Event, IfaceId, L2};

impl L2 {
    /// An ARP frame (whole Ethernet frame) received on `iface`. Frames this host
    /// sent itself (packet type "outgoing") must not be passed in.
    pub fn handle_frame(&mut self, now: Instant, iface: IfaceId, frame: &[u8]) {
        let Some(my_mac) = self.links.get(iface.0).and_then(|l| l.usable()) else {
            return; // down or unknown interface: not ours to judge
        };
        let Ok(f) = ArpFrameRepr::parse(frame) else {
            self.counters.ignored += 1;
            self.counters.malformed += 1;
            return;
        };
        if let Some(from) = self.own_interface(f.eth_src) {
            if from != iface.0 && self.networks.seen(from, iface.0) {
                let (a, b) = (from.min(iface.0), from.max(iface.0));
                let (a, b) = (self.name_of(a), self.name_of(b));
                self.events.push_back(Event::SharedNetwork { a, b });
                self.refresh(now);
            }
            return;
        }
        if self.is_spoofed(&f) {
            self.counters.ignored += 1;
            self.counters.spoofed += 1;
            return;
        }
        let arp = f.arp;
        if let Some(d) = self.duties.get(&arp.sender_ip).copied() {
            if arp.sender_mac != d.mac && !self.is_ours(arp.sender_mac) {
                self.conflict(now, iface, &d, arp.sender_ip, arp.sender_mac);
                return;
            }
        }
        self.observe(arp.sender_ip, arp.sender_mac);
        if arp.operation == ArpOperation::Request && !arp.is_gratuitous() {
            self.answer(iface, my_mac, &f);
        }
    }

    /// The interface whose MAC is `mac`.
    fn own_interface(&self, mac: EthernetAddress) -> Option<usize> {
        self.links.iter().position(|l| l.mac == Some(mac))
    }

    /// One of our interface MACs, or a cluster MAC.
    fn is_ours(&self, mac: EthernetAddress) -> bool {
        self.own_interface(mac).is_some()
            || self
                .cfg
                .cluster
                .as_ref()
                .is_some_and(|c| c.is_cluster_mac(mac))
    }

    fn is_spoofed(&self, f: &ArpFrameRepr) -> bool {
        let sha = f.arp.sender_mac;
        let cluster = self
            .cfg
            .cluster
            .as_ref()
            .is_some_and(|c| c.is_cluster_mac(sha));
        !f.eth_src.is_unicast()
            || sha.is_zero()
            || (sha.is_multicast() && !cluster)
            || f.arp.sender_ip.is_multicast()
            || f.arp.sender_ip.is_broadcast()
    }

    fn conflict(
        &mut self,
        now: Instant,
        iface: IfaceId,
        d: &Duty,
        addr: Ipv4Addr,
        by: EthernetAddress,
    ) {
        self.counters.ignored += 1;
        self.counters.conflicts += 1;
        let v = self.conflicts.record(
            now,
            addr,
            self.cfg.conflict_log_interval,
            self.cfg.defend_interval,
        );
        if v.defend {
            self.announce(d.iface, addr, d.mac);
        }
        if let Some(suppressed) = v.log {
            self.events.push_back(Event::Conflict {
                address: addr,
                interface: self.name_of(iface.0),
                claimed_by: by,
                suppressed,
                defended: v.defend,
            });
        }
    }

    /// Remembers who else speaks for an owned address (the active, seen from a
    /// standby).
    fn observe(&mut self, sender: Ipv4Addr, mac: EthernetAddress) {
        if let Some(k) = self.cfg.addresses.iter().position(|a| a.address == sender) {
            self.seen_elsewhere[k] = Some(mac);
        }
    }

    fn answer(&mut self, iface: IfaceId, my_mac: EthernetAddress, f: &ArpFrameRepr) {
        let req = f.arp;
        let Some(d) = self.duties.get(&req.target_ip).copied() else {
            return;
        };
        if !d.answer || d.iface != iface {
            return; // the kernel answers, or another interface is the agent
        }
        if !(f.eth_dst.is_broadcast() || f.eth_dst == my_mac || f.eth_dst == d.mac) {
            return; // a unicast request for someone else (promiscuous capture)
        }
        let (sha, dst) = self.reply_macs(&d, &req);
        let Some(eth_src) = self.eth_src(iface, sha) else {
            return;
        };
        //= https://www.rfc-editor.org/rfc/rfc826
        //# Swap hardware and protocol fields, putting the local
        //#     hardware and protocol addresses in the sender fields.
        //# Set the ar$op field to ares_op$REPLY
        //# Send the packet to the (new) target hardware address on
        //#     the same hardware on which the request was received.
        let mut arp = ArpRepr::reply_to(&req, sha);
        arp.target_mac = dst;
        self.send(
            iface,
            ArpFrameRepr {
                eth_dst: dst,
                eth_src,
                arp,
            },
        );
        self.counters.answered += 1;
    }

    /// The MAC to answer with and the requester's MAC to send to.
    fn reply_macs(&self, d: &Duty, req: &ArpRepr) -> (EthernetAddress, EthernetAddress) {
        if let (Some(c), Reason::Own) = (&self.cfg.cluster, d.reason) {
            if c.is_member(req.sender_ip) {
                // Seed 004, steps 506-508: the responder's per-member MAC in the
                // ARP sender field; the initiator's per-member MAC as destination
                // when it asked with the shared cluster MAC, so that only it
                // receives the reply.
                let dst = if req.sender_mac.is_unicast() && req.sender_mac != c.mac {
                    req.sender_mac
                } else {
                    c.member_mac(req.sender_ip)
                };
                return (c.member_mac(req.target_ip), dst);
            }
        }
        (d.mac, req.sender_mac)
    }
}
