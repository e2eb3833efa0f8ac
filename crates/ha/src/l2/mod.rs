//! Ownership of addresses on the LAN (DESIGN.md flow 8; seeds 000, 002, 003, 004):
//! which ARP requests this gateway answers, on which interface, with which MAC,
//! and when it announces an address with gratuitous ARP.
//!
//! [`L2`] is a sans-IO machine in the quinn-proto shape. Inputs: ARP frames
//! received per interface ([`L2::handle_frame`]), interface up/down and MAC
//! ([`L2::set_link`]), "this gateway is now active / standby for address A"
//! ([`L2::set_active`], driven by takeover and takeback), a clean stop
//! ([`L2::stop`]) and time ([`L2::handle_timeout`] at [`L2::poll_timeout`]).
//! Outputs: frames to send on an interface ([`L2::poll_transmit`]), log events
//! ([`L2::poll_event`]), [`Counters`] and a [`Status`]. Time is always passed in.
//!
//! The behaviours, each in its own module: the duty table (`duty`: the active
//! answers, the standby never does; a dynamically chosen agent interface per
//! subnet; interfaces on one network back each other up), gratuitous ARP bursts
//! (`announce`), network discovery (`discovery`), conflict logging and defence
//! (`conflict`), and the receive path with cluster MAC rewriting (`rx`).
//!
//! ```
//! use plexgate_ha::l2::{AddressConfig, AddressKind, Config, InterfaceConfig, L2};
//! use plexgate_wire::arp::{ArpFrameRepr, ArpRepr, EthernetAddress};
//! use std::time::Instant;
//!
//! let vipa = "10.0.0.100".parse().unwrap();
//! let cfg = Config::new(
//!     vec![InterfaceConfig { name: "eth0".into(), address: "10.0.0.2".parse().unwrap(), prefix_len: 24 }],
//!     vec![AddressConfig { address: vipa, kind: AddressKind::GatewayVipa }],
//! );
//! let mut l2 = L2::new(cfg).unwrap();
//! let (now, eth0) = (Instant::now(), l2.interface("eth0").unwrap());
//! let mac = EthernetAddress([0x02, 0, 0, 0, 0, 2]);
//! l2.set_link(now, eth0, true, Some(mac));
//! l2.set_active(now, vipa, true).unwrap();
//! let garp = ArpFrameRepr::parse(&l2.poll_transmit().unwrap().frame).unwrap();
//! assert_eq!(garp.arp, ArpRepr::announcement(mac, vipa));
//! ```

mod announce;
mod config;
mod conflict;
mod discovery;
mod duty;
mod report;
mod rx;

#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, VecDeque};
use std::net::Ipv4Addr;
use std::time::Instant;

use plexgate_wire::arp::{ArpFrameRepr, ArpRepr, EthernetAddress, FRAME_LEN};

pub use config::{
    AddressConfig, AddressKind, AnnounceConfig, ClusterConfig, ClusterMember, Config, ConfigError,
    InterfaceConfig,
};
pub use report::{AddressStatus, Answerer, Counters, Event, InterfaceStatus, Status, StatusKind};

use announce::Bursts;
use conflict::Conflicts;
use discovery::Networks;
use duty::{Duty, Link, Reason};

/// An interface: its position in [`Config::interfaces`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct IfaceId(pub usize);

/// A frame to send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transmit {
    /// Interface to send it on.
    pub iface: IfaceId,
    /// The whole Ethernet frame (destination MAC in the first six bytes).
    pub frame: [u8; FRAME_LEN],
}

impl Transmit {
    /// The Ethernet destination.
    pub fn dst(&self) -> EthernetAddress {
        EthernetAddress::from_bytes(&self.frame).unwrap_or_default()
    }
}

/// A request the machine cannot carry out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum L2Error {
    /// `set_active` for an address that is not in the configuration.
    #[error("{0} is not an address this gateway may own (not in the l2 configuration)")]
    UnknownAddress(Ipv4Addr),
}

/// The L2 ownership machine of one gateway.
#[derive(Debug)]
pub struct L2 {
    cfg: Config,
    links: Vec<Link>,
    active: Vec<bool>,
    waiting: Vec<bool>,
    seen_elsewhere: Vec<Option<EthernetAddress>>,
    stopped: bool,
    duties: BTreeMap<Ipv4Addr, Duty>,
    networks: Networks,
    bursts: Bursts,
    conflicts: Conflicts,
    transmits: VecDeque<Transmit>,
    events: VecDeque<Event>,
    counters: Counters,
}

impl L2 {
    /// A machine for `cfg`: every interface down, every address standby.
    pub fn new(cfg: Config) -> Result<L2, ConfigError> {
        cfg.validate()?;
        let (n_if, n_addr) = (cfg.interfaces.len(), cfg.addresses.len());
        Ok(L2 {
            cfg,
            links: vec![Link::default(); n_if],
            active: vec![false; n_addr],
            waiting: vec![false; n_addr],
            seen_elsewhere: vec![None; n_addr],
            stopped: false,
            duties: BTreeMap::new(),
            networks: Networks::default(),
            bursts: Bursts::default(),
            conflicts: Conflicts::default(),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            counters: Counters::default(),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// The interface called `name`.
    pub fn interface(&self, name: &str) -> Option<IfaceId> {
        self.cfg
            .interfaces
            .iter()
            .position(|i| i.name == name)
            .map(IfaceId)
    }

    /// The name of interface `id` (empty if out of range).
    pub fn interface_name(&self, id: IfaceId) -> &str {
        self.cfg
            .interfaces
            .get(id.0)
            .map(|i| i.name.as_str())
            .unwrap_or("")
    }

    /// The link state of interface `iface`: up or down, and its MAC (an interface
    /// counts as up only once its MAC is known).
    pub fn set_link(
        &mut self,
        now: Instant,
        iface: IfaceId,
        up: bool,
        mac: Option<EthernetAddress>,
    ) {
        let Some(l) = self.links.get_mut(iface.0) else {
            return;
        };
        let new = Link {
            up,
            mac: mac.or(l.mac),
        };
        if *l != new {
            *l = new;
            self.refresh(now);
        }
    }

    /// This gateway is now active (`true`) or standby for `address`: takeover and
    /// takeback call this. Becoming active announces the address; going standby
    /// silences it at once.
    pub fn set_active(
        &mut self,
        now: Instant,
        address: Ipv4Addr,
        active: bool,
    ) -> Result<(), L2Error> {
        let k = self
            .cfg
            .addresses
            .iter()
            .position(|a| a.address == address)
            .ok_or(L2Error::UnknownAddress(address))?;
        if self.active[k] != active {
            self.active[k] = active;
            self.refresh(now);
        }
        Ok(())
    }

    /// Is this gateway active for `address`? `None` if it is not configured.
    pub fn is_active(&self, address: Ipv4Addr) -> Option<bool> {
        let k = self
            .cfg
            .addresses
            .iter()
            .position(|a| a.address == address)?;
        Some(self.active[k])
    }

    /// A clean stop: stop answering and announcing everything, at once.
    pub fn stop(&mut self, now: Instant) {
        if !self.stopped {
            self.stopped = true;
            self.refresh(now);
        }
    }

    /// When [`L2::handle_timeout`] is due next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match (self.bursts.next_due(), self.networks.next_deadline()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Advances timers: due announcements, discovery verdicts.
    pub fn handle_timeout(&mut self, now: Instant) {
        let dropped = self.networks.expire(now, &self.links);
        if !dropped.is_empty() {
            for (a, b) in dropped {
                let (a, b) = (self.name_of(a), self.name_of(b));
                self.events.push_back(Event::SeparateNetworks { a, b });
            }
            self.refresh(now);
        }
        self.fire_bursts(now);
    }

    /// The next frame to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    /// The next log event.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// Counters since start.
    pub fn counters(&self) -> Counters {
        self.counters
    }

    /// Multicast MACs interface `iface` must receive (join them on the NIC): in
    /// cluster MAC mode, the cluster MAC and this member's per-member MAC when they
    /// are multicast addresses.
    pub fn multicast_macs(&self, iface: IfaceId) -> Vec<EthernetAddress> {
        let (Some(c), Some(ifc)) = (&self.cfg.cluster, self.cfg.interfaces.get(iface.0)) else {
            return Vec::new();
        };
        let mut v: Vec<EthernetAddress> = [c.mac, c.member_mac(ifc.address)]
            .into_iter()
            .filter(EthernetAddress::is_multicast)
            .collect();
        v.dedup();
        v
    }

    /// Whether plexgate answers for the interfaces' own addresses (cluster MAC mode):
    /// the runtime must then keep the kernel from answering for them too.
    pub fn answers_interface_addresses(&self) -> bool {
        self.cfg.cluster.is_some()
    }

    fn name_of(&self, i: usize) -> String {
        self.interface_name(IfaceId(i)).to_string()
    }

    /// Recomputes the duty table, announces what changed and reports it.
    fn refresh(&mut self, now: Instant) {
        let new = duty::compute(&duty::Inputs {
            cfg: &self.cfg,
            links: &self.links,
            active: &self.active,
            networks: &self.networks,
            stopped: self.stopped,
        });
        let old = std::mem::replace(&mut self.duties, new);
        for (addr, d) in &old {
            if !self.duties.contains_key(addr) {
                self.bursts.cancel(*addr);
                self.report_gone(*addr, d);
            }
        }
        let changed: Vec<(Ipv4Addr, Duty)> = self
            .duties
            .iter()
            .filter(|(a, d)| {
                old.get(a)
                    .is_none_or(|o| (o.iface, o.mac) != (d.iface, d.mac))
            })
            .map(|(a, d)| (*a, *d))
            .collect();
        for (addr, d) in changed {
            self.report_new(addr, &d, old.get(&addr));
            self.bursts
                .start(now, addr, d.iface, d.mac, &self.cfg.announce);
            if d.reason == Reason::Own && self.cfg.adapter_backup {
                self.networks
                    .start_probe(d.iface.0, now + self.cfg.discovery_timeout);
            }
        }
        self.report_waiting();
        self.fire_bursts(now);
    }

    fn report_gone(&mut self, address: Ipv4Addr, d: &Duty) {
        match d.reason {
            Reason::Owned(k) if self.active[k] && !self.stopped => {} // report_waiting
            Reason::Owned(_) | Reason::Backup { .. } => {
                self.events.push_back(Event::Released { address })
            }
            Reason::Own => {}
        }
    }

    fn report_new(&mut self, address: Ipv4Addr, d: &Duty, old: Option<&Duty>) {
        let interface = self.name_of(d.iface.0);
        let e = match (d.reason, old) {
            (Reason::Owned(_), Some(o)) if o.iface != d.iface => Event::Moved {
                address,
                from: self.name_of(o.iface.0),
                to: interface,
                mac: d.mac,
            },
            (Reason::Owned(_), _) => Event::Claimed {
                address,
                interface,
                mac: d.mac,
            },
            (Reason::Backup { of }, _) => Event::BackupTakeover {
                address,
                failed: self.name_of(of.0),
                backup: interface,
                mac: d.mac,
            },
            (Reason::Own, Some(o)) if matches!(o.reason, Reason::Backup { .. }) => {
                Event::BackupReturned { address, interface }
            }
            (Reason::Own, _) => return,
        };
        self.events.push_back(e);
    }

    fn report_waiting(&mut self) {
        for k in 0..self.cfg.addresses.len() {
            let address = self.cfg.addresses[k].address;
            let waits = self.active[k] && !self.stopped && !self.duties.contains_key(&address);
            if waits && !self.waiting[k] {
                self.events.push_back(Event::Waiting { address });
            }
            self.waiting[k] = waits;
        }
    }

    fn fire_bursts(&mut self, now: Instant) {
        for (addr, iface, mac) in self.bursts.take_due(now, &self.cfg.announce) {
            self.announce(iface, addr, mac);
        }
    }

    /// Queues one announcement of `addr` at `mac` on `iface`.
    fn announce(&mut self, iface: IfaceId, addr: Ipv4Addr, mac: EthernetAddress) {
        let Some(eth_src) = self.eth_src(iface, mac) else {
            return;
        };
        self.send(
            iface,
            ArpFrameRepr {
                eth_dst: EthernetAddress::BROADCAST,
                eth_src,
                arp: ArpRepr::announcement(mac, addr),
            },
        );
        self.counters.announcements += 1;
    }

    /// The Ethernet source for a frame on `iface` that speaks for `mac`: the
    /// interface's MAC, except a unicast cluster MAC, which the active sends from
    /// so that switches learn where it is.
    fn eth_src(&self, iface: IfaceId, mac: EthernetAddress) -> Option<EthernetAddress> {
        let own = self.links.get(iface.0)?.usable()?;
        let unicast_cluster = self
            .cfg
            .cluster
            .as_ref()
            .is_some_and(|c| c.mac == mac && mac.is_unicast());
        Some(if unicast_cluster { mac } else { own })
    }

    fn send(&mut self, iface: IfaceId, f: ArpFrameRepr) {
        self.transmits.push_back(Transmit {
            iface,
            frame: f.to_bytes(),
        });
        self.counters.sent += 1;
    }

    /// A snapshot for `plexgate status`.
    pub fn status(&self) -> Status {
        let row = |address: Ipv4Addr| {
            let d = self.duties.get(&address);
            let answerer = match d {
                Some(d) if d.answer => Answerer::Plexgate,
                Some(_) => Answerer::Kernel,
                None => Answerer::Nobody,
            };
            (
                answerer,
                d.map(|d| self.name_of(d.iface.0)),
                d.map(|d| d.mac),
            )
        };
        let mut addresses = Vec::new();
        for (k, a) in self.cfg.addresses.iter().enumerate() {
            let (answerer, interface, mac) = row(a.address);
            addresses.push(AddressStatus {
                address: a.address,
                kind: StatusKind::Owned(a.kind),
                active: self.active[k] && !self.stopped,
                answerer,
                interface,
                mac,
                seen_elsewhere: self.seen_elsewhere[k],
            });
        }
        for (i, ifc) in self.cfg.interfaces.iter().enumerate() {
            let (mut answerer, mut interface, mut mac) = row(ifc.address);
            let link = self.links[i];
            if answerer == Answerer::Nobody && link.usable().is_some() && !self.stopped {
                (answerer, interface, mac) = (Answerer::Kernel, Some(ifc.name.clone()), link.mac);
            }
            addresses.push(AddressStatus {
                address: ifc.address,
                kind: StatusKind::Interface,
                active: true,
                answerer,
                interface,
                mac,
                seen_elsewhere: None,
            });
        }
        let interfaces = self
            .cfg
            .interfaces
            .iter()
            .enumerate()
            .map(|(i, ifc)| InterfaceStatus {
                name: ifc.name.clone(),
                address: ifc.address,
                prefix_len: ifc.prefix_len,
                up: self.links[i].usable().is_some(),
                mac: self.links[i].mac,
                same_network: self
                    .networks
                    .peers(i)
                    .into_iter()
                    .map(|j| self.name_of(j))
                    .collect(),
            })
            .collect();
        Status {
            addresses,
            interfaces,
            counters: self.counters,
            cluster_mac: self.cfg.cluster.as_ref().map(|c| c.mac),
        }
    }
}
