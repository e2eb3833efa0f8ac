//! Takeover, takeback, planned moves, store trouble and fencing, on virtual time:
//! several `HaMachine`s over the store model of `plexgate_ha::takeover::sim`. The
//! simulation checks the safety invariants after every action (one forwarder, one
//! address holder and one record writer per group at any instant; forwarding
//! epochs grow and are the store's current one; no renegotiation while DELETEs of
//! a hand-over are still going out); every test also asserts its own outcome.

use plexgate_ha::takeover::sim::{Sim, SimTiming};
use plexgate_ha::takeover::{
    BackupSpec, Distribution, DistributionId, DvipaSpec, Epoch, GatewayName, GatewaySpec, GroupId,
    HaConfig, InputError, OwnerRecord, Rank, Role, Takeback, Timing,
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

fn dvipa(d: &str, vipa: &str, primary: &str, backups: &[(&str, u8)]) -> DvipaSpec {
    DvipaSpec {
        dvipa: ip(d),
        gateway_vipa: ip(vipa),
        routing_gateway: g(primary),
        backups: backups
            .iter()
            .map(|(b, r)| BackupSpec {
                gateway: g(b),
                rank: Some(Rank::new(*r).unwrap()),
                distribution: None,
            })
            .collect(),
    }
}

/// One configuration per gateway of the site (the same DVIPA section for all).
fn configs(gateways: &[(&str, u8)], dvipas: Vec<DvipaSpec>) -> Vec<HaConfig> {
    let spec = |(n, r): &(&str, u8)| GatewaySpec {
        name: g(n),
        rank: Rank::new(*r).unwrap(),
    };
    gateways
        .iter()
        .map(|me| {
            let peers = gateways.iter().filter(|p| p.0 != me.0).map(spec).collect();
            HaConfig::new(
                spec(me),
                peers,
                dvipas.clone(),
                Timing::default(),
                Takeback::Automatic,
            )
            .unwrap()
        })
        .collect()
}

const G1: &str = "192.0.2.10";
const DVA1: &str = "10.200.0.20";

fn group(vipa: &str) -> GroupId {
    GroupId::new(ip(vipa))
}

/// Site B of `policy/site-b.toml`: gw-1 primary, gw-2 backup rank 200.
fn site_b() -> Sim {
    let cfgs = configs(
        &[("gw-1", 250), ("gw-2", 200)],
        vec![dvipa(DVA1, G1, "gw-1", &[("gw-2", 200)])],
    );
    Sim::new(Instant::now(), cfgs, SimTiming::default())
}

/// Three gateways: gw-1 primary, gw-2 rank 200, gw-3 rank 100.
fn three_ranks() -> Sim {
    let cfgs = configs(
        &[("gw-1", 250), ("gw-2", 200), ("gw-3", 100)],
        vec![dvipa(DVA1, G1, "gw-1", &[("gw-2", 200), ("gw-3", 100)])],
    );
    Sim::new(Instant::now(), cfgs, SimTiming::default())
}

/// The single gateway forwarding `grp`, if any (the simulation refuses two).
fn forwarder(sim: &Sim, grp: GroupId) -> Option<(GatewayName, Epoch)> {
    let f = sim.forwarders(grp);
    assert!(f.len() <= 1, "two forwarders: {f:?}");
    f.into_iter().next()
}

fn forwarded_by(sim: &Sim, grp: GroupId, gw: &str) -> bool {
    forwarder(sim, grp).is_some_and(|(f, _)| f == g(gw))
}

#[track_caller]
fn assert_clean(sim: &Sim) {
    if !sim.violations().is_empty() || sim.counters().input_errors != 0 {
        let tail: Vec<&String> = sim.log().iter().rev().take(80).collect();
        panic!(
            "violations: {:#?}\ninput errors: {}\nlast log lines (newest first):\n{:#?}",
            sim.violations(),
            sim.counters().input_errors,
            tail
        );
    }
}

/// Owner records written at or after `since`.
fn owners_since(sim: &Sim, grp: GroupId, since: Instant) -> Vec<OwnerRecord> {
    sim.ownership_history()
        .iter()
        .filter(|(t, gr, _)| *t >= since && *gr == grp)
        .map(|(_, _, r)| r.clone())
        .collect()
}

fn started(sim: &mut Sim, grp: GroupId, gw: &str) -> Epoch {
    sim.start_all();
    let took = sim.run_until(Duration::from_secs(2), |s| forwarded_by(s, grp, gw));
    assert!(took.is_some(), "{gw} never started routing {grp}");
    forwarder(sim, grp).unwrap().1
}

#[test]
fn startup_primary_claims_and_backup_waits() {
    let mut sim = three_ranks();
    let grp = group(G1);
    sim.start_all();
    let took = sim
        .run_until(Duration::from_secs(2), |s| forwarded_by(s, grp, "gw-1"))
        .expect("primary routes after start");
    assert!(
        took < ms(50),
        "the primary claims a free group at once ({took:?})"
    );
    sim.run_for(Duration::from_secs(5));
    assert!(forwarded_by(&sim, grp, "gw-1"));
    assert_eq!(sim.role(&g("gw-1"), grp), Some(Role::Routing));
    assert_eq!(
        sim.role(&g("gw-2"), grp),
        Some(Role::Backup {
            rank: Rank::new(200).unwrap()
        })
    );
    assert_eq!(
        sim.role(&g("gw-3"), grp),
        Some(Role::Backup {
            rank: Rank::new(100).unwrap()
        })
    );
    assert_eq!(sim.ownership_history().len(), 1, "one claim, no contest");
    assert_eq!(sim.counters().renegotiations, 1);
    assert_clean(&sim);
}

#[test]
fn startup_without_the_primary_the_best_backup_claims_in_its_rank_slot() {
    let mut sim = three_ranks();
    let grp = group(G1);
    sim.start(&g("gw-2"));
    sim.start(&g("gw-3"));
    let took = sim
        .run_until(Duration::from_secs(3), |s| forwarder(s, grp).is_some())
        .expect("someone routes");
    assert!(forwarded_by(&sim, grp, "gw-2"), "the higher rank claims");
    // A free group: the primary (never seen, but not known dead either) had the
    // first rank slot; gw-2 claims in the second, gw-3 would in the third.
    assert!(took >= ms(300) && took < ms(400), "{took:?}");
    assert_clean(&sim);
}

#[test]
fn takeover_after_the_primary_dies() {
    let mut sim = site_b();
    let grp = group(G1);
    let e1 = started(&mut sim, grp, "gw-1");
    sim.run_for(Duration::from_secs(2));
    let killed_at = sim.now();
    sim.crash(&g("gw-1"));
    let gap = sim
        .run_until(Duration::from_secs(3), |s| forwarded_by(s, grp, "gw-2"))
        .expect("backup takes over");
    // dead_after (600 ms) after the last heartbeat, plus at most one heartbeat
    // period and the store's round trips.
    assert!(gap >= ms(450) && gap <= ms(800), "takeover took {gap:?}");
    let (_, e2) = forwarder(&sim, grp).unwrap();
    assert!(e2 > e1, "epoch grows: {e1} -> {e2}");
    sim.run_for(Duration::from_secs(1));
    assert_eq!(sim.role(&g("gw-2"), grp), Some(Role::Routing));
    let owners = owners_since(&sim, grp, killed_at);
    assert_eq!(owners.len(), 1, "exactly one new owner: {owners:?}");
    assert_eq!(owners[0].owner(), Some(&g("gw-2")));
    assert_eq!(sim.counters().renegotiations, 2);
    assert_eq!(sim.vipa_holders(grp), vec![g("gw-2")]);
    assert_clean(&sim);
}

#[test]
fn takeback_when_the_primary_returns() {
    let mut sim = site_b();
    let grp = group(G1);
    started(&mut sim, grp, "gw-1");
    sim.crash(&g("gw-1"));
    sim.run_until(Duration::from_secs(3), |s| forwarded_by(s, grp, "gw-2"))
        .expect("takeover");
    sim.run_for(Duration::from_secs(2));
    let e2 = forwarder(&sim, grp).unwrap().1;
    let restarted_at = sim.now();
    sim.start(&g("gw-1"));
    let took = sim
        .run_until(Duration::from_secs(10), |s| forwarded_by(s, grp, "gw-1"))
        .expect("primary takes back");
    // Not before the primary has been stable for takeback_hold (3 s).
    assert!(
        took >= Duration::from_secs(3) && took < Duration::from_secs(4),
        "{took:?}"
    );
    let e3 = forwarder(&sim, grp).unwrap().1;
    assert!(e3 > e2);
    let owners = owners_since(&sim, grp, restarted_at);
    assert!(
        matches!(
            owners.as_slice(),
            [OwnerRecord::Released { successor: Some(s), pinned: false, .. },
             OwnerRecord::Owned { gateway, pinned: false, .. }] if *s == g("gw-1") && *gateway == g("gw-1")
        ),
        "release to the primary, then its claim: {owners:?}"
    );
    sim.run_for(Duration::from_secs(10));
    assert!(forwarded_by(&sim, grp, "gw-1"), "and it stays there");
    assert_eq!(
        sim.role(&g("gw-2"), grp),
        Some(Role::Backup {
            rank: Rank::new(200).unwrap()
        })
    );
    assert_eq!(sim.counters().handovers, 1);
    assert_clean(&sim);
}

#[test]
fn planned_move_sticks_and_moves_back_on_command() {
    let mut sim = three_ranks();
    let grp = group(G1);
    started(&mut sim, grp, "gw-1");
    sim.run_for(Duration::from_secs(1));
    // Given on a gateway that does not own the group: it writes a move request.
    sim.command_move(&g("gw-3"), ip(DVA1), &g("gw-2")).unwrap();
    let took = sim
        .run_until(Duration::from_secs(2), |s| forwarded_by(s, grp, "gw-2"))
        .expect("moved");
    // Request, hand-over (20 ms in the simulation), release and claim: round trips only.
    assert!(took < ms(100), "planned move took {took:?}");
    assert!(matches!(
        sim.record(grp),
        OwnerRecord::Owned { pinned: true, .. }
    ));
    sim.run_for(Duration::from_secs(10));
    assert!(
        forwarded_by(&sim, grp, "gw-2"),
        "a planned move is not taken back"
    );
    sim.command_move(&g("gw-1"), ip(DVA1), &g("gw-1")).unwrap();
    sim.run_until(Duration::from_secs(2), |s| forwarded_by(s, grp, "gw-1"))
        .expect("moved back");
    assert!(matches!(
        sim.record(grp),
        OwnerRecord::Owned { pinned: false, .. }
    ));
    assert_eq!(sim.counters().handovers, 2);
    assert_clean(&sim);
}

#[test]
fn move_commands_that_cannot_work_are_refused() {
    let cfgs = configs(
        &[("gw-1", 250), ("gw-2", 200), ("gw-9", 10)],
        vec![dvipa(DVA1, G1, "gw-1", &[("gw-2", 200)])],
    );
    let mut sim = Sim::new(Instant::now(), cfgs, SimTiming::default());
    let grp = group(G1);
    started(&mut sim, grp, "gw-1");
    let at = g("gw-1");
    assert_eq!(
        sim.command_move(&at, ip(DVA1), &g("gw-9")),
        Err(InputError::NotACandidate {
            group: grp,
            gateway: g("gw-9")
        })
    );
    assert_eq!(
        sim.command_move(&at, ip(DVA1), &g("nobody")),
        Err(InputError::UnknownGateway(g("nobody")))
    );
    assert_eq!(
        sim.command_move(&at, ip("10.9.9.9"), &g("gw-2")),
        Err(InputError::UnknownDvipa(ip("10.9.9.9")))
    );
    assert_eq!(sim.role(&g("gw-9"), grp), Some(Role::Standby));
    sim.crash(&g("gw-2"));
    sim.run_for(Duration::from_secs(1));
    assert_eq!(
        sim.command_move(&at, ip(DVA1), &g("gw-2")),
        Err(InputError::NotLive(g("gw-2")))
    );
    assert!(forwarded_by(&sim, grp, "gw-1"), "nothing moved");
    assert_clean(&sim);
}

#[test]
fn store_outage_during_takeover() {
    let mut sim = site_b();
    let grp = group(G1);
    started(&mut sim, grp, "gw-1");
    sim.run_for(Duration::from_secs(1));
    sim.crash(&g("gw-1"));
    sim.run_for(ms(400));
    sim.set_store_up(false);
    sim.run_for(Duration::from_secs(2));
    assert!(
        forwarder(&sim, grp).is_none(),
        "nobody can claim without the store"
    );
    assert_eq!(sim.record(grp).owner(), Some(&g("gw-1")));
    let back = sim.now();
    sim.set_store_up(true);
    let took = sim
        .run_until(Duration::from_secs(3), |s| forwarded_by(s, grp, "gw-2"))
        .expect("takeover once the store is back");
    // The backup's view was stale during the outage: it waits dead_after again.
    assert!(took >= ms(600) && took < ms(1000), "{took:?}");
    assert_eq!(owners_since(&sim, grp, back).len(), 1);
    assert_clean(&sim);
}

#[test]
fn owner_fences_during_a_store_outage_and_reclaims_after() {
    let mut sim = site_b();
    let grp = group(G1);
    let e1 = started(&mut sim, grp, "gw-1");
    sim.run_for(Duration::from_secs(1));
    let cut = sim.now();
    sim.set_store_up(false);
    let fenced = sim
        .run_until(Duration::from_secs(1), |s| forwarder(s, grp).is_none())
        .expect("owner fences");
    // fence_after (350 ms) after the send time of its last acknowledged heartbeat.
    assert!(fenced > ms(200) && fenced <= ms(350), "{fenced:?}");
    assert_eq!(sim.role(&g("gw-1"), grp), Some(Role::Fenced));
    assert!(sim.vipa_holders(grp).is_empty());
    sim.run_for(Duration::from_secs(2));
    sim.set_store_up(true);
    sim.run_until(Duration::from_secs(1), |s| forwarded_by(s, grp, "gw-1"))
        .expect("owner routes again");
    let e2 = forwarder(&sim, grp).unwrap().1;
    assert!(e2 > e1, "a fresh epoch after fencing");
    assert_eq!(
        sim.counters().renegotiations,
        1,
        "SAs kept: no renegotiation"
    );
    let owners = owners_since(&sim, grp, cut);
    assert_eq!(owners.len(), 1);
    assert_eq!(
        owners[0].owner(),
        Some(&g("gw-1")),
        "the backup never claimed"
    );
    assert_clean(&sim);
}

#[test]
fn backup_dying_during_takeover_next_rank_takes_over() {
    let mut sim = three_ranks();
    let grp = group(G1);
    let e1 = started(&mut sim, grp, "gw-1");
    sim.run_for(Duration::from_secs(1));
    sim.crash(&g("gw-1"));
    sim.run_until(Duration::from_secs(3), |s| {
        s.role(&g("gw-2"), grp) == Some(Role::TakingOver)
    })
    .expect("gw-2 starts taking over");
    let e2 = forwarder(&sim, grp).unwrap().1;
    assert!(e2 > e1);
    let killed = sim.now();
    sim.crash(&g("gw-2"));
    let took = sim
        .run_until(Duration::from_secs(3), |s| forwarded_by(s, grp, "gw-3"))
        .expect("gw-3 takes over");
    assert!(took <= ms(800), "{took:?}");
    let e3 = forwarder(&sim, grp).unwrap().1;
    assert!(e3 > e2);
    let owners = owners_since(&sim, grp, killed);
    assert_eq!(owners.len(), 1);
    assert_eq!(owners[0].owner(), Some(&g("gw-3")));
    assert_clean(&sim);
}

#[test]
fn primary_and_first_backup_die_together_the_next_rank_claims_without_waiting_for_them() {
    let mut sim = three_ranks();
    let grp = group(G1);
    started(&mut sim, grp, "gw-1");
    sim.run_for(Duration::from_secs(1));
    sim.crash(&g("gw-1"));
    sim.crash(&g("gw-2"));
    let took = sim
        .run_until(Duration::from_secs(3), |s| forwarded_by(s, grp, "gw-3"))
        .expect("gw-3 takes over");
    // gw-2 is as dead as gw-1 by then, so gw-3 does not wait a rank slot for it.
    assert!(took <= ms(800), "{took:?}");
    assert_clean(&sim);
}

#[test]
fn two_gateways_each_primary_for_one_group_and_backup_for_the_other() {
    let g2 = "192.0.2.20";
    let dvb1 = "10.200.0.30";
    // Seed 001: MVS5 (gw-2) has its own VIPADISTribute for DVA1.
    let mut dva1 = dvipa(DVA1, G1, "gw-1", &[]);
    dva1.backups.push(BackupSpec {
        gateway: g("gw-2"),
        rank: None,
        distribution: Some(DistributionId::new("gw-2-dva1")),
    });
    let cfgs = configs(
        &[("gw-1", 30), ("gw-2", 10)],
        vec![dva1, dvipa(dvb1, g2, "gw-2", &[("gw-1", 30)])],
    );
    let mut sim = Sim::new(Instant::now(), cfgs, SimTiming::default());
    let (ga, gb) = (group(G1), group(g2));
    sim.start_all();
    sim.run_until(Duration::from_secs(2), |s| {
        forwarded_by(s, ga, "gw-1") && forwarded_by(s, gb, "gw-2")
    })
    .expect("each routes its own");
    assert_eq!(
        sim.routes(&g("gw-1"), ga).unwrap()[0].distribution,
        Distribution::Default
    );
    sim.run_for(Duration::from_secs(1));
    sim.crash(&g("gw-1"));
    sim.run_until(Duration::from_secs(3), |s| forwarded_by(s, ga, "gw-2"))
        .expect("gw-2 takes DVA1 over");
    assert!(forwarded_by(&sim, gb, "gw-2"), "and keeps its own");
    assert_eq!(
        sim.routes(&g("gw-2"), ga).unwrap()[0].distribution,
        Distribution::Own(DistributionId::new("gw-2-dva1")),
        "the backup routes DVA1 with its own distribution definition"
    );
    sim.start(&g("gw-1"));
    sim.run_until(Duration::from_secs(10), |s| forwarded_by(s, ga, "gw-1"))
        .expect("gw-1 takes DVA1 back");
    sim.run_for(Duration::from_secs(5));
    assert!(forwarded_by(&sim, ga, "gw-1") && forwarded_by(&sim, gb, "gw-2"));
    assert_clean(&sim);
}

#[test]
fn primary_cut_off_from_the_store_fences_itself_before_the_backup_claims() {
    // The primary loses the store but not its peers or targets (the HA machine
    // judges liveness on heartbeats through the store only, so a working cluster
    // channel does not keep a store-less owner in place).
    let mut sim = site_b();
    let grp = group(G1);
    let e1 = started(&mut sim, grp, "gw-1");
    sim.run_for(Duration::from_secs(1));
    sim.set_store_link(&g("gw-1"), false);
    let mut most = 0;
    let mut fenced_at = None;
    let took = sim
        .run_until(Duration::from_secs(3), |s| {
            most = most.max(s.forwarders(grp).len());
            if fenced_at.is_none() && s.role(&g("gw-1"), grp) == Some(Role::Fenced) {
                fenced_at = Some(s.now());
            }
            forwarded_by(s, grp, "gw-2")
        })
        .expect("backup takes over");
    assert_eq!(most, 1, "never two forwarders, checked after every step");
    let fenced_at = fenced_at.expect("the primary fenced itself");
    let claimed_at = sim.now();
    assert!(
        claimed_at - fenced_at >= ms(150),
        "fenced {:?} before the backup routed",
        claimed_at - fenced_at
    );
    assert!(took <= ms(900), "{took:?}");
    assert!(forwarder(&sim, grp).unwrap().1 > e1);
    // The link returns: the old owner sees the new record and lets go.
    sim.set_store_link(&g("gw-1"), true);
    sim.run_until(Duration::from_secs(1), |s| {
        s.role(&g("gw-1"), grp) == Some(Role::Primary)
    })
    .expect("old owner stands down");
    sim.run_until(Duration::from_secs(6), |s| forwarded_by(s, grp, "gw-1"))
        .expect("and takes back once stable");
    assert_clean(&sim);
}

#[test]
fn short_store_blips_of_the_primary_never_move_the_group() {
    let mut sim = site_b();
    let grp = group(G1);
    started(&mut sim, grp, "gw-1");
    sim.run_for(Duration::from_secs(1));
    let from = sim.now();
    for _ in 0..20 {
        sim.set_store_link(&g("gw-1"), false);
        sim.run_for(ms(300));
        sim.set_store_link(&g("gw-1"), true);
        sim.run_for(ms(300));
    }
    sim.run_for(Duration::from_secs(1));
    assert!(forwarded_by(&sim, grp, "gw-1"));
    let owners = owners_since(&sim, grp, from);
    assert!(
        owners.iter().all(|r| r.owner() == Some(&g("gw-1"))),
        "the backup never claimed: {owners:?}"
    );
    assert_clean(&sim);
}

#[test]
fn flapping_primary_causes_no_ping_pong() {
    let mut sim = site_b();
    let grp = group(G1);
    started(&mut sim, grp, "gw-1");
    sim.run_for(Duration::from_secs(1));
    let from = sim.now();
    for _ in 0..8 {
        sim.set_store_link(&g("gw-1"), false);
        sim.run_for(ms(900));
        sim.set_store_link(&g("gw-1"), true);
        sim.run_for(ms(1500));
    }
    let during: Vec<GatewayName> = owners_since(&sim, grp, from)
        .iter()
        .filter_map(|r| r.owner().cloned())
        .collect();
    assert_eq!(
        during,
        vec![g("gw-2")],
        "one takeover, no takeback while flapping"
    );
    let calm = sim.now();
    sim.run_until(Duration::from_secs(6), |s| forwarded_by(s, grp, "gw-1"))
        .expect("takeback once the primary is stable");
    sim.run_for(Duration::from_secs(10));
    let after: Vec<GatewayName> = owners_since(&sim, grp, calm)
        .iter()
        .filter_map(|r| r.owner().cloned())
        .collect();
    assert_eq!(after, vec![g("gw-1")]);
    assert_clean(&sim);
}

#[test]
fn graceful_shutdown_hands_over_without_waiting_for_dead_after() {
    let mut sim = three_ranks();
    let grp = group(G1);
    started(&mut sim, grp, "gw-1");
    sim.run_for(Duration::from_secs(1));
    sim.shutdown(&g("gw-1"));
    let took = sim
        .run_until(Duration::from_secs(2), |s| {
            forwarded_by(s, grp, "gw-2") && s.released_all(&g("gw-1"))
        })
        .expect("handed over");
    assert!(took < ms(100), "{took:?}");
    // Not pinned: once the primary is back (restarted), it takes the group back.
    assert!(matches!(
        sim.record(grp),
        OwnerRecord::Owned { pinned: false, .. }
    ));
    sim.crash(&g("gw-1"));
    sim.start(&g("gw-1"));
    sim.run_until(Duration::from_secs(6), |s| forwarded_by(s, grp, "gw-1"))
        .expect("takeback after restart");
    assert_clean(&sim);
}

#[test]
fn restarted_owner_with_its_old_record_reclaims_with_a_new_epoch() {
    // The primary dies and comes back before the backup's dead_after: the store
    // still names it; it must not route on the old epoch but claim a new one.
    let mut sim = site_b();
    let grp = group(G1);
    let e1 = started(&mut sim, grp, "gw-1");
    sim.run_for(Duration::from_secs(1));
    sim.crash(&g("gw-1"));
    sim.run_for(ms(200));
    sim.start(&g("gw-1"));
    sim.run_until(Duration::from_secs(1), |s| forwarded_by(s, grp, "gw-1"))
        .expect("routes again");
    assert!(forwarder(&sim, grp).unwrap().1 > e1);
    assert_eq!(
        sim.counters().renegotiations,
        2,
        "its SAs died with it: renegotiate"
    );
    assert_clean(&sim);
}

#[test]
fn a_backup_with_a_lagging_watch_cannot_depose_a_live_owner() {
    // gw-2's watch stalls for 1.5 s: it sees no heartbeat of gw-1 and judges it
    // dead, but its claim carries the revision of the last heartbeat it saw, and
    // gw-1 renewed since, so the store refuses the claim.
    let mut sim = site_b();
    let grp = group(G1);
    let e1 = started(&mut sim, grp, "gw-1");
    sim.run_for(Duration::from_secs(1));
    sim.set_watch_delay(&g("gw-2"), Duration::from_millis(1500));
    sim.run_for(Duration::from_secs(1));
    sim.set_watch_delay(&g("gw-2"), Duration::ZERO);
    sim.run_for(Duration::from_secs(3));
    assert!(
        sim.log()
            .iter()
            .any(|l| l.contains("gw-2") && l.contains("claiming: owner gw-1 is dead")),
        "the lagging backup did try"
    );
    assert_eq!(
        forwarder(&sim, grp),
        Some((g("gw-1"), e1)),
        "and nothing moved"
    );
    assert_eq!(sim.ownership_history().len(), 1);
    assert_clean(&sim);
}

/// Time with nobody forwarding `grp`, from now until `gw` forwards it.
fn forwarding_gap(sim: &mut Sim, grp: GroupId, gw: &str, limit: Duration) -> Duration {
    let mut gone: Option<Instant> = None;
    sim.run_until(limit, |s| {
        if gone.is_none() && forwarder(s, grp).is_none() {
            gone = Some(s.now());
        }
        forwarded_by(s, grp, gw)
    })
    .unwrap_or_else(|| panic!("{gw} never forwarded {grp}"));
    gone.map_or(Duration::ZERO, |t| sim.now() - t)
}

#[test]
fn takeover_and_move_times_over_the_heartbeat_phase() {
    // Crash the primary at every 10 ms of a heartbeat period; the gap until the
    // backup forwards is bounded by dead_after + heartbeat + the store round trips.
    let (mut lo, mut hi) = (Duration::MAX, Duration::ZERO);
    for phase in 0..15u64 {
        let mut sim = site_b();
        let grp = group(G1);
        started(&mut sim, grp, "gw-1");
        sim.run_for(Duration::from_secs(1) + ms(10 * phase));
        sim.crash(&g("gw-1"));
        let gap = forwarding_gap(&mut sim, grp, "gw-2", Duration::from_secs(3));
        lo = lo.min(gap);
        hi = hi.max(gap);
        assert_clean(&sim);
    }
    assert!(hi <= ms(600 + 150 + 4 * 2), "worst takeover {hi:?}");
    assert!(lo >= ms(600 - 150), "best takeover {lo:?}");
    // Planned move and takeback: the gap is the hand-over (20 ms here) plus
    // a release and a claim round trip (4 x 2 ms store latency).
    let mut sim = site_b();
    let grp = group(G1);
    started(&mut sim, grp, "gw-1");
    sim.run_for(Duration::from_secs(1));
    sim.command_move(&g("gw-1"), ip(DVA1), &g("gw-2")).unwrap();
    let moved = forwarding_gap(&mut sim, grp, "gw-2", Duration::from_secs(2));
    assert!(
        moved <= ms(4 * 2 + 4),
        "no-forwarder time of a planned move {moved:?}"
    );
    println!(
        "virtual time, store latency 2 ms: takeover after SIGKILL {lo:?}..{hi:?}; \
         planned move: nobody forwards for {moved:?}"
    );
    assert_clean(&sim);
}
