//! Two gateways and two targets in memory, every message checked against the
//! node maps the daemons build from policy (address and link of each sender):
//! ownership epochs (#12) and the cluster channel under attack (#15).
//!
//! ```text
//!   gw-1 (node 1) ── link 1 ──┐        ┌── link 1 ── target 11
//!                             ├ targets ┤
//!   gw-2 (node 2) ── link 2 ──┘        └── link 2 ── target 12
//! ```
//! Gateway g reaches target t at 10.t.g.2 on its link t; target t reaches
//! gateway g at 10.t.g.1 on its link g.

use plexgate_distrib::cluster::{seal_with, ClusterEndpoint, Message};
use plexgate_distrib::dpt::{Algorithm, DvipaConfig, PortSet, TargetSet};
use plexgate_distrib::listeners::{ProcSocket, TCP_LISTEN};
use plexgate_distrib::{
    Arrival, ClusterError, ClusterKey, ClusterTransmit, Destination, Distributor,
    DistributorConfig, DropReason, LinkId, Node, NodeId, Ownership, Role, Route, TargetConfig,
    TargetStack,
};
use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

const KEY: &[u8] = b"two gateways, test key 0123456789abcdef";
const GWS: [NodeId; 2] = [NodeId(1), NodeId(2)];
const TS: [NodeId; 2] = [NodeId(11), NodeId(12)];

fn key() -> ClusterKey {
    ClusterKey::new(KEY)
}

/// Gateway `g`'s address on its link to target `t` (`.1`), or the target's (`.2`).
fn addr(t: NodeId, g: NodeId, host: u8) -> IpAddr {
    IpAddr::from([10, t.0 as u8, g.0 as u8, host])
}

fn dvipa() -> IpAddr {
    "198.51.100.7".parse().unwrap()
}

fn cfg() -> DvipaConfig {
    DvipaConfig {
        dvipa: dvipa(),
        ports: PortSet::List(vec![80]),
        targets: TargetSet::All,
        algorithm: Algorithm::RoundRobin,
        routing_gateway: GWS[0],
        backups: vec![(GWS[1], 100)],
    }
}

struct Site {
    now: Instant,
    gws: Vec<Distributor>,
    ts: Vec<TargetStack>,
}

impl Site {
    fn new() -> Site {
        let mut gws: Vec<Distributor> = GWS
            .iter()
            .map(|g| Distributor::new(DistributorConfig::new(*g, key(), 1_000 * u64::from(g.0))))
            .collect();
        let mut ts: Vec<TargetStack> = TS
            .iter()
            .map(|t| TargetStack::new(TargetConfig::new(*t, key(), 50 * u64::from(t.0))))
            .collect();
        for (gi, gw) in gws.iter_mut().enumerate() {
            for t in TS {
                gw.add_node(Node {
                    id: t,
                    role: Role::Target,
                    name: format!("web-{}", t.0),
                    address: addr(t, GWS[gi], 2),
                    link: LinkId(t.0),
                });
            }
        }
        for (ti, t) in ts.iter_mut().enumerate() {
            for g in GWS {
                t.add_node(Node {
                    id: g,
                    role: Role::Gateway,
                    name: format!("gw-{}", g.0),
                    address: addr(TS[ti], g, 1),
                    link: LinkId(g.0),
                });
            }
        }
        let mut s = Site {
            now: Instant::now(),
            gws,
            ts,
        };
        for g in &mut s.gws {
            g.configure_dvipa(cfg());
        }
        for t in &mut s.ts {
            t.hello();
        }
        s.pump();
        let listen = [ProcSocket {
            local: SocketAddr::new(dvipa(), 80),
            remote: "0.0.0.0:0".parse().unwrap(),
            state: TCP_LISTEN,
        }];
        for t in &mut s.ts {
            assert_eq!(t.update_listeners(&listen), 1);
        }
        s.pump();
        s
    }

    /// Deliver every queued message, each with the arrival the daemon would
    /// report (the sender's own address on its own link), until all is quiet.
    fn pump(&mut self) {
        loop {
            let mut q: Vec<(NodeId, ClusterTransmit)> = Vec::new();
            for (i, g) in self.gws.iter_mut().enumerate() {
                q.extend(std::iter::from_fn(|| g.poll_transmit()).map(|m| (GWS[i], m)));
            }
            for (i, t) in self.ts.iter_mut().enumerate() {
                q.extend(std::iter::from_fn(|| t.poll_transmit()).map(|m| (TS[i], m)));
            }
            if q.is_empty() {
                return;
            }
            for (from, m) in q {
                let to: Vec<NodeId> = match m.to {
                    Destination::Node(n) => vec![n],
                    Destination::Broadcast => TS.to_vec(),
                };
                for n in to {
                    let r = self.deliver(from, n, &m.bytes);
                    assert!(
                        matches!(r, Ok(()) | Err(ClusterError::Unsynced { .. })),
                        "{from} -> {n}: {r:?}"
                    );
                }
            }
        }
    }

    fn deliver(&mut self, from: NodeId, to: NodeId, bytes: &[u8]) -> Result<(), ClusterError> {
        let now = self.now;
        if let Some(gi) = GWS.iter().position(|g| *g == to) {
            let a = Arrival {
                link: LinkId(from.0),
                src: addr(from, to, 2),
            };
            self.gws[gi].handle_cluster_from(now, a, bytes)
        } else {
            let ti = TS.iter().position(|t| *t == to).unwrap();
            let a = Arrival {
                link: LinkId(from.0),
                src: addr(to, from, 1),
            };
            self.ts[ti].handle_cluster_from(now, a, bytes)
        }
    }

    fn listening(&self, g: usize) -> usize {
        self.gws[g]
            .dpt()
            .get(dvipa(), 80)
            .map_or(0, |r| r.targets().iter().filter(|t| t.listening).count())
    }
}

fn syn(port: u16) -> Vec<u8> {
    let b = etherparse::PacketBuilder::ipv4([192, 0, 2, 1], [198, 51, 100, 7], 64);
    let mut v = Vec::new();
    b.tcp(port, 80, 1, 100).syn().write(&mut v, &[]).unwrap();
    v
}

#[test]
fn the_backup_takes_over_with_a_higher_epoch_and_the_old_owner_yields() {
    let mut s = Site::new();
    assert_eq!(s.listening(0), 2);
    for t in &s.ts {
        assert_eq!(
            t.owner(dvipa()),
            Some(Ownership {
                gateway: GWS[0],
                epoch: 1
            })
        );
    }
    // gw-2 takes over with the epoch the store gave it.
    assert!(s.gws[1].take_over_at(dvipa(), 7));
    s.pump();
    for t in &s.ts {
        assert_eq!(t.owner(dvipa()).unwrap().gateway, GWS[1]);
        assert_eq!(t.served()[0].routing_gateway, GWS[1]);
    }
    assert_eq!(s.listening(1), 2);
    // Its list reached no gateway here (the daemon broadcasts to targets), so
    // gw-1 still thinks it routes; its next announcement (epoch 1) is refused
    // by every target, which keeps following gw-2.
    s.gws[0].announce();
    s.pump();
    for t in &s.ts {
        assert_eq!(t.owner(dvipa()).unwrap().gateway, GWS[1]);
        assert_eq!(t.snapshot().drops(DropReason::StaleEpoch), 1);
    }
    // gw-1 hears gw-2's list (epoch 7 > 1): it stops routing the DVIPA.
    let mut gw2 = ClusterEndpoint::new(key(), GWS[1], 90_000);
    let list = gw2.seal(&Message::DvipaList(vec![plexgate_distrib::Announcement {
        cfg: DvipaConfig {
            routing_gateway: GWS[1],
            ..cfg()
        },
        epoch: 7,
    }]));
    s.gws[0].handle_cluster(s.now, &list).unwrap();
    assert!(s.gws[0].dvipas().all(|(_, routing)| !routing));
    assert_eq!(s.gws[0].route_inbound(s.now, &syn(1), true), Route::Local);
    // An older list of gw-2's (epoch 3) changes nothing at gw-1 either.
    let stale = gw2.seal(&Message::DvipaList(vec![plexgate_distrib::Announcement {
        cfg: DvipaConfig {
            routing_gateway: GWS[1],
            ..cfg()
        },
        epoch: 3,
    }]));
    s.gws[0].handle_cluster(s.now, &stale).unwrap();
    assert_eq!(s.gws[0].snapshot().drops(DropReason::StaleEpoch), 1);
    assert_eq!(s.gws[0].epoch(dvipa()), Some(7));
    // Takeback: gw-1's epoch goes above 7.
    assert!(s.gws[0].take_over(dvipa()));
    assert_eq!(s.gws[0].epoch(dvipa()), Some(8));
    s.pump();
    for t in &s.ts {
        assert_eq!(
            t.owner(dvipa()),
            Some(Ownership {
                gateway: GWS[0],
                epoch: 8
            })
        );
    }
    assert!(matches!(
        s.gws[0].route_inbound(s.now, &syn(2), true),
        Route::ToTarget { .. }
    ));
}

/// #15: one message signed with the site key, claiming to be target 11 with a
/// sequence number far ahead, reporting its listener gone. Before the fix it
/// pushed the gateway's window for target 11 so far that every real message
/// of target 11 was refused as a replay.
fn forged_srvstat_gone() -> Vec<u8> {
    let m = Message::SrvStat {
        target: TS[0],
        dvipa: dvipa(),
        port: 80,
        listening: false,
    };
    seal_with(&key(), TS[0], u64::MAX - 10, &m)
}

#[test]
fn a_forged_message_from_the_internet_or_another_link_changes_nothing() {
    let mut s = Site::new();
    let forged = forged_srvstat_gone();
    let now = s.now;
    let from_internet = Arrival {
        link: LinkId(99),
        src: "203.0.113.66".parse().unwrap(),
    };
    // From target 12's link, with target 11's address as source.
    let other_link = Arrival {
        link: LinkId(TS[1].0),
        src: addr(TS[0], GWS[0], 2),
    };
    for a in [from_internet, other_link] {
        assert!(matches!(
            s.gws[0].handle_cluster_from(now, a, &forged),
            Err(ClusterError::Misrouted { .. })
        ));
    }
    assert_eq!(s.gws[0].snapshot().drops(DropReason::Misrouted), 2);
    assert_eq!(s.listening(0), 2);
    // Target 11 is still heard: its listener goes down and up again.
    s.ts[0].update_listeners(&[]);
    s.pump();
    assert_eq!(s.listening(0), 1);
}

#[test]
fn a_forged_message_on_the_right_link_is_held_and_cannot_lock_the_target_out() {
    let mut s = Site::new();
    // Sent on target 11's link with its address (a key holder on that link).
    let on_link = Arrival {
        link: LinkId(TS[0].0),
        src: addr(TS[0], GWS[0], 2),
    };
    let r = s.gws[0].handle_cluster_from(s.now, on_link, &forged_srvstat_gone());
    assert!(matches!(r, Err(ClusterError::Unsynced { .. })), "{r:?}");
    // Not applied; target 11 is challenged, answers, and stays in the DPT.
    s.pump();
    assert_eq!(s.listening(0), 2);
    assert_eq!(s.gws[0].snapshot().drops(DropReason::Unsynced), 1);
    assert_eq!(s.gws[0].snapshot().drops(DropReason::Replayed), 0);
    // Its real messages still count: the listener goes away and comes back,
    // and new connections reach it.
    s.ts[0].update_listeners(&[]);
    s.pump();
    assert_eq!(s.listening(0), 1);
    s.ts[0].update_listeners(&[ProcSocket {
        local: SocketAddr::new(dvipa(), 80),
        remote: "0.0.0.0:0".parse().unwrap(),
        state: TCP_LISTEN,
    }]);
    s.pump();
    assert_eq!(s.listening(0), 2);
    let targets: Vec<NodeId> = (0..4)
        .map(
            |i| match s.gws[0].route_inbound(s.now, &syn(100 + i), true) {
                Route::ToTarget { target, .. } => target,
                r => panic!("{r:?}"),
            },
        )
        .collect();
    assert_eq!(targets.iter().filter(|t| **t == TS[0]).count(), 2);
}

#[test]
fn a_forged_dvipa_list_at_a_target_is_refused_from_the_wrong_place() {
    let mut s = Site::new();
    // gw-2 "takes over" with a forged list sent to target 11 from gw-1's link.
    let mut forger = ClusterEndpoint::new(key(), GWS[1], 5_000_000);
    let m = forger.seal(&Message::DvipaList(vec![plexgate_distrib::Announcement {
        cfg: DvipaConfig {
            routing_gateway: GWS[1],
            ..cfg()
        },
        epoch: 99,
    }]));
    let wrong = Arrival {
        link: LinkId(GWS[0].0),
        src: addr(TS[0], GWS[1], 1),
    };
    assert!(matches!(
        s.ts[0].handle_cluster_from(s.now, wrong, &m),
        Err(ClusterError::Misrouted { .. })
    ));
    assert_eq!(s.ts[0].owner(dvipa()).unwrap().gateway, GWS[0]);
    assert!(s.ts[0].poll_transmit().is_none());
}
