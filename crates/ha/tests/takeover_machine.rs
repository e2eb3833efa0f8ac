//! One `HaMachine` driven by hand: the exact action sequences the daemon must
//! carry out (claim and bring-up, hand-over, fencing and reclaim), the timing of
//! claims, the guard on takeover claims, refused inputs, and the configuration
//! checks. These pin down the contract the daemon is written against.

use plexgate_ha::takeover::{
    Action, BackupSpec, CasOutcome, ConfigError, ConnMark, Distribution, DvipaRoute, DvipaSpec,
    Epoch, GatewayName, GatewaySpec, GroupId, HaConfig, HaMachine, HeartbeatGuard, Input,
    InputError, OwnerRecord, Rank, Role, Takeback, Timing,
};
use std::net::IpAddr;
use std::time::{Duration, Instant};

fn g(s: &str) -> GatewayName {
    GatewayName::from(s)
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn rank(r: u8) -> Rank {
    Rank::new(r).unwrap()
}

const VIPA: &str = "192.0.2.10";

fn grp() -> GroupId {
    GroupId::new(ip(VIPA))
}

fn spec(d: &str, primary: &str, backups: &[(&str, Option<u8>)]) -> DvipaSpec {
    DvipaSpec {
        dvipa: ip(d),
        gateway_vipa: ip(VIPA),
        routing_gateway: g(primary),
        backups: backups
            .iter()
            .map(|(b, r)| BackupSpec {
                gateway: g(b),
                rank: r.map(rank),
                distribution: None,
            })
            .collect(),
    }
}

/// gw-1 (primary) and gw-2 (backup 200) for 10.200.0.20 behind 192.0.2.10; the
/// machine is `me`'s.
fn machine(me: &str) -> HaMachine {
    let gws = [("gw-1", 250), ("gw-2", 200)];
    let mine = gws.iter().find(|(n, _)| *n == me).unwrap();
    let peers = gws
        .iter()
        .filter(|(n, _)| *n != me)
        .map(|(n, r)| GatewaySpec {
            name: g(n),
            rank: rank(*r),
        })
        .collect();
    let cfg = HaConfig::new(
        GatewaySpec {
            name: g(mine.0),
            rank: rank(mine.1),
        },
        peers,
        vec![spec("10.200.0.20", "gw-1", &[("gw-2", Some(200))])],
        Timing::default(),
        Takeback::Automatic,
    )
    .unwrap();
    HaMachine::new(cfg)
}

/// The actions queued, without log lines and heartbeat writes.
fn actions(m: &mut HaMachine) -> Vec<Action> {
    std::iter::from_fn(|| m.poll_action())
        .filter(|a| !matches!(a, Action::Log(_) | Action::RenewHeartbeat))
        .collect()
}

fn first_non_log(m: &mut HaMachine) -> Option<Action> {
    std::iter::from_fn(|| m.poll_action()).find(|a| !matches!(a, Action::Log(_)))
}

fn routes() -> Vec<DvipaRoute> {
    vec![DvipaRoute {
        dvipa: ip("10.200.0.20"),
        distribution: Distribution::Default,
    }]
}

/// Starts `m` at `t0` with its first heartbeat acknowledged and the record given.
fn started(m: &mut HaMachine, t0: Instant, record: OwnerRecord) {
    m.handle(t0, Input::Start).unwrap();
    assert_eq!(
        first_non_log(m),
        Some(Action::RenewHeartbeat),
        "first action"
    );
    m.handle(t0 + ms(2), Input::RenewOk { sent_at: t0 })
        .unwrap();
    m.handle(
        t0 + ms(3),
        Input::OwnerChanged {
            group: grp(),
            record,
        },
    )
    .unwrap();
}

/// Makes `m` (gw-1) the routing owner at epoch 5.
fn owner_at_5(m: &mut HaMachine, t0: Instant) {
    started(m, t0, OwnerRecord::Absent);
    assert_eq!(
        actions(m),
        vec![Action::Claim {
            group: grp(),
            expected: None,
            pinned: false,
            owner_heartbeat: None,
        }]
    );
    m.handle(
        t0 + ms(5),
        Input::ClaimResult {
            group: grp(),
            outcome: CasOutcome::Applied { epoch: Epoch(5) },
        },
    )
    .unwrap();
}

#[test]
fn inputs_before_start_are_refused_and_start_begins_the_heartbeat() {
    let mut m = machine("gw-1");
    let t0 = Instant::now();
    assert_eq!(
        m.handle(t0, Input::RenewFailed),
        Err(InputError::NotStarted)
    );
    assert_eq!(m.poll_timeout(), None);
    m.handle(t0, Input::Start).unwrap();
    assert_eq!(first_non_log(&mut m), Some(Action::RenewHeartbeat));
    assert_eq!(m.poll_timeout(), Some(t0 + ms(150)));
    m.handle_timeout(t0 + ms(150));
    let beats = std::iter::from_fn(|| m.poll_action())
        .filter(|a| *a == Action::RenewHeartbeat)
        .count();
    assert_eq!(beats, 1, "one heartbeat per period");
    assert_eq!(m.role(grp()), Some(Role::Primary));
}

#[test]
fn claim_then_bring_up_in_order() {
    let mut m = machine("gw-1");
    let t0 = Instant::now();
    owner_at_5(&mut m, t0);
    let group = grp();
    assert_eq!(
        actions(&mut m),
        vec![
            Action::AddVipa { group },
            Action::StartForwarding {
                group,
                epoch: Epoch(5),
                routes: routes()
            },
            Action::AnnounceRouting {
                group,
                epoch: Epoch(5),
                routes: routes()
            },
            Action::MarkConnections {
                group,
                mark: ConnMark::Local
            },
            Action::StartRecords {
                group,
                epoch: Epoch(5)
            },
            Action::Renegotiate {
                group,
                epoch: Epoch(5)
            },
        ]
    );
    assert_eq!(m.role(group), Some(Role::TakingOver));
    m.handle(
        t0 + ms(50),
        Input::RenegotiationDone {
            group,
            epoch: Epoch(5),
            up: 10,
            failed: 0,
        },
    )
    .unwrap();
    assert_eq!(m.role(group), Some(Role::Routing));
}

#[test]
fn hand_over_in_order_then_release_naming_the_successor() {
    let mut m = machine("gw-1");
    let t0 = Instant::now();
    owner_at_5(&mut m, t0);
    let group = grp();
    let now = t0 + ms(60);
    m.handle(
        now,
        Input::RenegotiationDone {
            group,
            epoch: Epoch(5),
            up: 1,
            failed: 0,
        },
    )
    .unwrap();
    m.handle(
        now,
        Input::PeerHeartbeat {
            gateway: g("gw-2"),
            revision: 40,
        },
    )
    .unwrap();
    actions(&mut m);
    // A request for another epoch is stale and ignored.
    m.handle(
        now,
        Input::MoveRequested {
            group,
            to: g("gw-2"),
            epoch: Epoch(4),
        },
    )
    .unwrap();
    assert_eq!(actions(&mut m), vec![]);
    m.handle(
        now,
        Input::MoveRequested {
            group,
            to: g("gw-2"),
            epoch: Epoch(5),
        },
    )
    .unwrap();
    assert_eq!(
        actions(&mut m),
        vec![
            Action::StopRecords { group },
            Action::HandOver {
                group,
                epoch: Epoch(5),
                to: g("gw-2")
            },
        ]
    );
    assert_eq!(m.role(group), Some(Role::HandingOver { to: g("gw-2") }));
    m.handle(
        now + ms(20),
        Input::HandoverDone {
            group,
            epoch: Epoch(5),
        },
    )
    .unwrap();
    assert_eq!(
        actions(&mut m),
        vec![
            Action::StopForwarding { group },
            Action::RemoveVipa { group },
            Action::MarkConnections {
                group,
                mark: ConnMark::Distributed
            },
            // A move to a backup is an operator's: the successor claims pinned.
            Action::Release {
                group,
                epoch: Epoch(5),
                successor: Some(g("gw-2")),
                pinned: true
            },
        ]
    );
    m.handle(
        now + ms(22),
        Input::ReleaseResult {
            group,
            outcome: CasOutcome::Applied { epoch: Epoch(6) },
        },
    )
    .unwrap();
    assert_eq!(m.role(group), Some(Role::Primary));
    assert!(m.released_all());
}

#[test]
fn hand_over_without_confirmation_releases_after_the_timeout() {
    let mut m = machine("gw-1");
    let t0 = Instant::now();
    owner_at_5(&mut m, t0);
    let group = grp();
    let now = t0 + ms(60);
    m.handle(
        now,
        Input::RenegotiationDone {
            group,
            epoch: Epoch(5),
            up: 1,
            failed: 0,
        },
    )
    .unwrap();
    m.handle(
        now,
        Input::PeerHeartbeat {
            gateway: g("gw-2"),
            revision: 40,
        },
    )
    .unwrap();
    m.handle(
        now,
        Input::MoveRequested {
            group,
            to: g("gw-1"),
            epoch: Epoch(5),
        },
    )
    .unwrap();
    m.handle(
        now,
        Input::MoveRequested {
            group,
            to: g("gw-2"),
            epoch: Epoch(5),
        },
    )
    .unwrap();
    actions(&mut m);
    // Keep the heartbeat acknowledged so that only the hand-over timer matters.
    let mut t = now;
    while t + ms(100) < now + ms(1000) {
        t += ms(100);
        m.handle(t, Input::RenewOk { sent_at: t }).unwrap();
        m.handle(
            t,
            Input::PeerHeartbeat {
                gateway: g("gw-2"),
                revision: 41,
            },
        )
        .unwrap();
    }
    let waiting = actions(&mut m);
    assert!(
        waiting.is_empty(),
        "still waiting for the DELETEs: {waiting:?}"
    );
    assert_eq!(m.poll_timeout(), Some(now + Duration::from_secs(1)));
    m.handle_timeout(now + Duration::from_secs(1));
    let a = actions(&mut m);
    assert!(
        matches!(a.last(), Some(Action::Release { successor: Some(s), .. }) if *s == g("gw-2"))
    );
}

#[test]
fn fencing_stops_routing_and_a_reclaim_resumes_without_renegotiation() {
    let mut m = machine("gw-1");
    let t0 = Instant::now();
    owner_at_5(&mut m, t0);
    let group = grp();
    m.handle(
        t0 + ms(50),
        Input::RenegotiationDone {
            group,
            epoch: Epoch(5),
            up: 1,
            failed: 0,
        },
    )
    .unwrap();
    actions(&mut m);
    // The last acknowledged heartbeat was sent at t0: fenced at t0 + fence_after.
    assert_eq!(m.poll_timeout(), Some(t0 + ms(150)), "next heartbeat first");
    m.handle_timeout(t0 + ms(150));
    m.handle(t0 + ms(250), Input::RenewFailed).unwrap();
    m.handle_timeout(t0 + ms(300));
    assert_eq!(m.role(group), Some(Role::Routing));
    assert!(m.poll_timeout().unwrap() <= t0 + ms(350));
    m.handle_timeout(t0 + ms(350));
    assert_eq!(
        actions(&mut m),
        vec![
            Action::StopForwarding { group },
            Action::RemoveVipa { group },
            Action::StopRecords { group },
        ]
    );
    assert_eq!(m.role(group), Some(Role::Fenced));
    // The store answers again: reclaim with the epoch we hold, no guard.
    let back = t0 + ms(2000);
    m.handle(back, Input::RenewOk { sent_at: back }).unwrap();
    assert_eq!(
        actions(&mut m),
        vec![Action::Claim {
            group,
            expected: Some(Epoch(5)),
            pinned: false,
            owner_heartbeat: None
        }]
    );
    m.handle(
        back + ms(2),
        Input::ClaimResult {
            group,
            outcome: CasOutcome::Applied { epoch: Epoch(9) },
        },
    )
    .unwrap();
    assert_eq!(
        actions(&mut m),
        vec![
            Action::AddVipa { group },
            Action::StartForwarding {
                group,
                epoch: Epoch(9),
                routes: routes()
            },
            Action::AnnounceRouting {
                group,
                epoch: Epoch(9),
                routes: routes()
            },
            Action::StartRecords {
                group,
                epoch: Epoch(9)
            },
        ]
    );
    assert_eq!(m.role(group), Some(Role::Routing));
}

#[test]
fn a_fenced_owner_that_lost_the_group_drops_its_sas_quietly() {
    let mut m = machine("gw-1");
    let t0 = Instant::now();
    owner_at_5(&mut m, t0);
    let group = grp();
    m.handle_timeout(t0 + ms(400));
    assert_eq!(m.role(group), Some(Role::Fenced));
    actions(&mut m);
    let rec = OwnerRecord::Owned {
        gateway: g("gw-2"),
        epoch: Epoch(8),
        pinned: false,
    };
    m.handle(t0 + ms(2000), Input::OwnerChanged { group, record: rec })
        .unwrap();
    assert_eq!(
        actions(&mut m),
        vec![
            Action::DropSas { group },
            Action::MarkConnections {
                group,
                mark: ConnMark::Distributed
            },
        ]
    );
    assert_eq!(m.role(group), Some(Role::Primary));
}

#[test]
fn backup_claims_dead_after_the_last_heartbeat_with_the_guard() {
    let mut m = machine("gw-2");
    let t0 = Instant::now();
    let rec = OwnerRecord::Owned {
        gateway: g("gw-1"),
        epoch: Epoch(5),
        pinned: false,
    };
    started(&mut m, t0, rec);
    let mut t = t0;
    for i in 0..10u64 {
        t = t0 + ms(100 * i);
        m.handle(t, Input::RenewOk { sent_at: t }).unwrap();
        m.handle(
            t,
            Input::PeerHeartbeat {
                gateway: g("gw-1"),
                revision: 40 + i,
            },
        )
        .unwrap();
    }
    assert!(actions(&mut m).is_empty());
    // gw-1 goes quiet at `t`; we keep renewing.
    let dead = t + ms(600);
    let mut now = t;
    while now + ms(100) < dead {
        now += ms(100);
        m.handle(now, Input::RenewOk { sent_at: now }).unwrap();
    }
    assert!(actions(&mut m).is_empty(), "not before dead_after");
    assert_eq!(m.poll_timeout(), Some(dead));
    m.handle(dead, Input::RenewOk { sent_at: dead }).unwrap();
    assert_eq!(
        actions(&mut m),
        vec![Action::Claim {
            group: grp(),
            expected: Some(Epoch(5)),
            pinned: false,
            owner_heartbeat: Some(HeartbeatGuard {
                gateway: g("gw-1"),
                revision: Some(49)
            }),
        }]
    );
    // The store refuses: gw-1 renewed after all. No immediate retry.
    let rec = OwnerRecord::Owned {
        gateway: g("gw-1"),
        epoch: Epoch(5),
        pinned: false,
    };
    m.handle(
        dead + ms(2),
        Input::ClaimResult {
            group: grp(),
            outcome: CasOutcome::Conflict { current: rec },
        },
    )
    .unwrap();
    assert!(actions(&mut m).is_empty());
    assert_eq!(m.role(grp()), Some(Role::Backup { rank: rank(200) }));
    assert!(m.poll_timeout().unwrap() > dead + ms(2));
}

#[test]
fn after_its_own_store_outage_a_backup_does_not_claim_on_its_stale_view() {
    let mut m = machine("gw-2");
    let t0 = Instant::now();
    let rec = OwnerRecord::Owned {
        gateway: g("gw-1"),
        epoch: Epoch(5),
        pinned: false,
    };
    started(&mut m, t0, rec);
    m.handle(
        t0,
        Input::PeerHeartbeat {
            gateway: g("gw-1"),
            revision: 40,
        },
    )
    .unwrap();
    m.handle(t0 + ms(100), Input::StoreReachable(false))
        .unwrap();
    m.handle_timeout(t0 + ms(3000));
    assert!(actions(&mut m).is_empty(), "no claim without the store");
    let back = t0 + ms(3100);
    m.handle(back, Input::StoreReachable(true)).unwrap();
    m.handle(back, Input::RenewOk { sent_at: back }).unwrap();
    assert!(
        actions(&mut m).is_empty(),
        "the stale view does not make gw-1 dead"
    );
    // If gw-1 stays silent for dead_after from now, then we claim, not before.
    let mut t = back;
    while t + ms(100) < back + ms(600) {
        t += ms(100);
        m.handle(t, Input::RenewOk { sent_at: t }).unwrap();
    }
    assert!(actions(&mut m).is_empty());
    let dead = back + ms(600);
    m.handle(dead, Input::RenewOk { sent_at: dead }).unwrap();
    assert!(matches!(actions(&mut m).as_slice(), [Action::Claim { .. }]));
}

#[test]
fn inputs_naming_unknown_things_are_refused_and_old_records_ignored() {
    let mut m = machine("gw-1");
    let t0 = Instant::now();
    owner_at_5(&mut m, t0);
    actions(&mut m);
    assert_eq!(
        m.handle(
            t0,
            Input::PeerHeartbeat {
                gateway: g("x"),
                revision: 1
            }
        ),
        Err(InputError::UnknownGateway(g("x")))
    );
    let other = GroupId::new(ip("198.51.100.1"));
    assert_eq!(
        m.handle(
            t0,
            Input::OwnerChanged {
                group: other,
                record: OwnerRecord::Absent
            }
        ),
        Err(InputError::UnknownGroup(other))
    );
    // A late watch event from before our claim changes nothing.
    m.handle(
        t0 + ms(10),
        Input::OwnerChanged {
            group: grp(),
            record: OwnerRecord::Absent,
        },
    )
    .unwrap();
    let old = OwnerRecord::Owned {
        gateway: g("gw-2"),
        epoch: Epoch(3),
        pinned: false,
    };
    m.handle(
        t0 + ms(10),
        Input::OwnerChanged {
            group: grp(),
            record: old,
        },
    )
    .unwrap();
    assert!(actions(&mut m).is_empty());
    assert_eq!(m.role(grp()), Some(Role::TakingOver));
}

#[test]
fn config_folds_dvipas_behind_one_vipa_and_resolves_default_ranks() {
    let cfg = HaConfig::new(
        GatewaySpec {
            name: g("gw-1"),
            rank: rank(250),
        },
        vec![
            GatewaySpec {
                name: g("gw-2"),
                rank: rank(200),
            },
            GatewaySpec {
                name: g("gw-3"),
                rank: rank(100),
            },
        ],
        vec![
            spec("10.200.0.20", "gw-1", &[("gw-3", None), ("gw-2", None)]),
            spec(
                "10.200.0.21",
                "gw-1",
                &[("gw-2", Some(200)), ("gw-3", Some(100))],
            ),
        ],
        Timing::default(),
        Takeback::Automatic,
    )
    .unwrap();
    assert_eq!(cfg.groups().len(), 1);
    let gc = &cfg.groups()[0];
    assert_eq!(gc.dvipas(), &[ip("10.200.0.20"), ip("10.200.0.21")]);
    assert_eq!(
        gc.backups(),
        &[(g("gw-2"), rank(200)), (g("gw-3"), rank(100))]
    );
    assert_eq!(cfg.group_of(ip("10.200.0.21")), Some(grp()));
}

fn check(dvipas: Vec<DvipaSpec>, timing: Timing) -> Result<HaConfig, ConfigError> {
    HaConfig::new(
        GatewaySpec {
            name: g("gw-1"),
            rank: rank(250),
        },
        vec![
            GatewaySpec {
                name: g("gw-2"),
                rank: rank(200),
            },
            GatewaySpec {
                name: g("gw-3"),
                rank: rank(100),
            },
        ],
        dvipas,
        timing,
        Takeback::Automatic,
    )
}

#[test]
fn config_errors() {
    let t = Timing::default();
    let e = check(
        vec![
            spec("10.200.0.20", "gw-1", &[("gw-2", Some(200))]),
            spec("10.200.0.21", "gw-2", &[("gw-1", Some(200))]),
        ],
        t,
    )
    .unwrap_err();
    assert!(
        matches!(
            e,
            ConfigError::GroupMismatch {
                what: "routing_gateway",
                ..
            }
        ),
        "{e}"
    );
    assert!(e.to_string().contains("move together"), "{e}");
    let e = check(
        vec![
            spec("10.200.0.20", "gw-1", &[("gw-2", Some(200))]),
            spec("10.200.0.21", "gw-1", &[("gw-2", Some(201))]),
        ],
        t,
    )
    .unwrap_err();
    assert!(
        matches!(
            e,
            ConfigError::GroupMismatch {
                what: "backups",
                ..
            }
        ),
        "{e}"
    );
    let dup = check(
        vec![spec(
            "10.200.0.20",
            "gw-1",
            &[("gw-2", Some(9)), ("gw-3", Some(9))],
        )],
        t,
    );
    assert!(matches!(dup, Err(ConfigError::DuplicateRank { .. })));
    let twice = check(
        vec![spec(
            "10.200.0.20",
            "gw-1",
            &[("gw-2", None), ("gw-2", Some(9))],
        )],
        t,
    );
    assert!(matches!(twice, Err(ConfigError::DuplicateBackup { .. })));
    let own = check(vec![spec("10.200.0.20", "gw-1", &[("gw-1", None)])], t);
    assert!(matches!(
        own,
        Err(ConfigError::BackupIsRoutingGateway { .. })
    ));
    let unknown = check(vec![spec("10.200.0.20", "gw-7", &[])], t);
    assert!(matches!(unknown, Err(ConfigError::UnknownGateway { .. })));
    let vipa = check(vec![spec(VIPA, "gw-1", &[])], t);
    assert!(matches!(vipa, Err(ConfigError::DvipaIsGatewayVipa(_))));
    assert_eq!(Rank::new(0), Err(ConfigError::RankOutOfRange(0)));
    assert_eq!(Rank::new(255), Err(ConfigError::RankOutOfRange(255)));
}

#[test]
fn config_checks_the_fencing_inequality() {
    let ok = Timing::default();
    assert!(ok.validate().is_ok());
    // 350 + 50 + 150 = 550 < 600; at 400 the sum reaches dead_after.
    let tight = Timing {
        fence_after: ms(400),
        ..ok
    };
    let e = tight.validate().unwrap_err();
    assert!(matches!(e, ConfigError::FencingInequality { .. }));
    assert!(
        e.to_string().contains("must be less than dead_after"),
        "{e}"
    );
    let no_beat = Timing {
        heartbeat: Duration::ZERO,
        ..ok
    };
    assert_eq!(
        no_beat.validate(),
        Err(ConfigError::ZeroDuration("heartbeat"))
    );
    assert!(matches!(
        check(vec![spec("10.200.0.20", "gw-1", &[])], tight),
        Err(ConfigError::FencingInequality { .. })
    ));
    let fast = Timing {
        heartbeat: ms(50),
        dead_after: ms(200),
        fence_after: ms(100),
        max_clock_skew: ms(20),
        ..ok
    };
    assert!(fast.validate().is_ok());
}

#[test]
fn standby_never_claims() {
    let cfg = check(vec![spec("10.200.0.20", "gw-2", &[])], Timing::default()).unwrap();
    let mut m = HaMachine::new(cfg);
    let t0 = Instant::now();
    started(&mut m, t0, OwnerRecord::Absent);
    for i in 1..40u64 {
        let t = t0 + ms(150 * i);
        m.handle(t, Input::RenewOk { sent_at: t }).unwrap();
    }
    assert!(actions(&mut m).is_empty());
    assert_eq!(m.role(grp()), Some(Role::Standby));
}

#[test]
fn the_fence_instant_is_a_timeout_even_when_the_store_is_reported_down() {
    let mut m = machine("gw-1");
    let t0 = Instant::now();
    owner_at_5(&mut m, t0);
    let group = grp();
    let sent = t0 + ms(120);
    m.handle(sent + ms(5), Input::RenewOk { sent_at: sent })
        .unwrap();
    m.handle(sent + ms(10), Input::StoreReachable(false))
        .unwrap();
    actions(&mut m);
    assert_eq!(
        m.role(group),
        Some(Role::TakingOver),
        "still routing: fresh"
    );
    // Heartbeat timer at t0 + 150, 300, 450; the fence instant is t0 + 470.
    for t in [150, 300, 450] {
        assert_eq!(m.poll_timeout(), Some(t0 + ms(t)));
        m.handle_timeout(t0 + ms(t));
    }
    assert_eq!(m.role(group), Some(Role::TakingOver));
    assert_eq!(m.poll_timeout(), Some(sent + ms(350)));
    m.handle_timeout(sent + ms(350));
    assert_eq!(m.role(group), Some(Role::Fenced));
    assert!(actions(&mut m).contains(&Action::StopForwarding { group }));
}

#[test]
fn a_takeover_claim_applied_while_our_view_is_stale_renegotiates_after_the_reclaim() {
    let mut m = machine("gw-1");
    let t0 = Instant::now();
    started(&mut m, t0, OwnerRecord::Absent);
    actions(&mut m);
    let group = grp();
    // The answer comes after our last acknowledged heartbeat is too old.
    let late = t0 + ms(400);
    m.handle(
        late,
        Input::ClaimResult {
            group,
            outcome: CasOutcome::Applied { epoch: Epoch(5) },
        },
    )
    .unwrap();
    assert_eq!(m.role(group), Some(Role::Fenced));
    assert!(
        actions(&mut m).is_empty(),
        "no routing on a claim we cannot keep"
    );
    let back = t0 + ms(500);
    m.handle(back, Input::RenewOk { sent_at: back }).unwrap();
    assert_eq!(
        actions(&mut m),
        vec![Action::Claim {
            group,
            expected: Some(Epoch(5)),
            pinned: false,
            owner_heartbeat: None
        }]
    );
    // The answer is lost, but the watch shows the reclaim went through.
    m.handle(
        back + ms(2),
        Input::ClaimResult {
            group,
            outcome: CasOutcome::Unreachable,
        },
    )
    .unwrap();
    assert_eq!(m.role(group), Some(Role::Fenced));
    let rec = OwnerRecord::Owned {
        gateway: g("gw-1"),
        epoch: Epoch(6),
        pinned: false,
    };
    m.handle(back + ms(3), Input::OwnerChanged { group, record: rec })
        .unwrap();
    assert_eq!(
        m.role(group),
        Some(Role::Fenced),
        "ours, still fenced, nothing dropped"
    );
    assert!(actions(&mut m).is_empty());
    // The retry (a heartbeat after the failure) reclaims at epoch 6 and, never
    // having held SAs, renegotiates.
    let t = back + ms(160);
    m.handle(t, Input::RenewOk { sent_at: t }).unwrap();
    assert_eq!(
        actions(&mut m),
        vec![Action::Claim {
            group,
            expected: Some(Epoch(6)),
            pinned: false,
            owner_heartbeat: None
        }]
    );
    m.handle(
        t + ms(2),
        Input::ClaimResult {
            group,
            outcome: CasOutcome::Applied { epoch: Epoch(7) },
        },
    )
    .unwrap();
    let a = actions(&mut m);
    assert!(
        a.contains(&Action::Renegotiate {
            group,
            epoch: Epoch(7)
        }),
        "{a:?}"
    );
    assert_eq!(m.role(group), Some(Role::TakingOver));
}
