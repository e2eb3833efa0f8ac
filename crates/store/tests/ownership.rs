//! Liveness, ownership and fencing on the in-memory store, on virtual time: a
//! partitioned owner stops routing before a backup's claim succeeds; a claim made on
//! a stale view fails; a lease that ends frees the DVIPA; takeback by release.

mod common;

use std::net::IpAddr;
use std::time::{Duration, Instant};

use common::*;
use plexgate_store::liveness::{LivenessConfig, LivenessEvent};
use plexgate_store::memory::{Fault, MemoryStore};
use plexgate_store::ownership::*;
use plexgate_store::*;

fn d() -> IpAddr {
    "10.100.0.10".parse().unwrap()
}

fn keys() -> Keys {
    book("/site-a/").keys().clone()
}

struct Gw {
    s: MemoryStore,
    m: Member,
}

fn join(world: &MemoryStore, name: &str, rank: u8, cfg: LivenessConfig) -> Gw {
    let s = world.connect();
    let m = Member::join(&s, keys(), name, rank, cfg, world.now(), 0).unwrap();
    Gw { s, m }
}

/// Advance the world in 10 ms steps, renewing `a` every interval (while reachable)
/// and feeding `b`'s peer watch, until `until(now)` or `limit`.
fn run(
    world: &MemoryStore,
    a: &mut Gw,
    pw: &mut PeerWatch,
    w: &Watch,
    cfg: &LivenessConfig,
    limit: Duration,
    mut until: impl FnMut(Instant, &Gw, &mut PeerWatch) -> bool,
) {
    let end = world.now() + limit;
    let mut next_renew = world.now();
    while world.now() < end {
        let now = world.now();
        if now >= next_renew {
            let _ = a.m.renew(&a.s, now);
            next_renew = now + cfg.heartbeat_interval;
        }
        for e in w.drain() {
            pw.on_event(&e, now).unwrap();
        }
        if until(now, a, pw) {
            return;
        }
        world.advance(Duration::from_millis(10));
    }
    panic!("condition not reached within {limit:?}");
}

#[test]
fn a_partitioned_owner_stops_before_the_backup_takes_over() {
    let cfg = LivenessConfig::default();
    let world = MemoryStore::new();
    let mut a = join(&world, "gw-a", 200, cfg);
    let mut b = join(&world, "gw-b", 100, cfg);
    let Claim::Won { epoch: e1 } = a.m.claim(&a.s, d(), None, None, world.now()).unwrap() else {
        panic!()
    };
    assert!(
        matches!(b.m.claim(&b.s, d(), None, None, world.now()).unwrap(), Claim::Lost { owner: Some(Owner { ref gateway, epoch }) } if gateway == "gw-a" && epoch == e1)
    );
    let w = b.s.watch(&keys().heartbeat_prefix(), None).unwrap();
    let mut pw = PeerWatch::new(keys(), &cfg, &["gw-a"], world.now());
    // One healthy second, then the partition.
    run(
        &world,
        &mut a,
        &mut pw,
        &w,
        &cfg,
        Duration::from_secs(2),
        |_, _, pw| pw.monitor.last_heartbeat("gw-a").is_some_and(|r| r > 20),
    );
    assert!(a.m.may_route(world.now()));
    a.s.set_fault(Fault::Unreachable);
    let cut = world.now();
    let mut stopped = None;
    let mut dead = None;
    run(
        &world,
        &mut a,
        &mut pw,
        &w,
        &cfg,
        Duration::from_secs(5),
        |now, a, pw| {
            if stopped.is_none() && !a.m.may_route(now) {
                stopped = Some(now);
            }
            dead = pw
                .poll(now)
                .into_iter()
                .find(|e| matches!(e, LivenessEvent::Dead { .. }));
            dead.is_some()
        },
    );
    let stopped = stopped.expect("the owner never stopped");
    let declared = world.now();
    let Some(LivenessEvent::Dead { last_heartbeat, .. }) = dead else {
        unreachable!()
    };
    let Claim::Won { epoch: e2 } =
        b.m.claim(
            &b.s,
            d(),
            Some(e1),
            Some(("gw-a", last_heartbeat)),
            declared,
        )
        .unwrap()
    else {
        panic!("the backup's claim failed")
    };
    assert!(e2 > e1);
    assert!(
        stopped < declared,
        "the owner stopped {:?} after the partition, the backup claimed {:?} after it",
        stopped - cut,
        declared - cut
    );
    eprintln!(
        "partition: owner stopped after {:?}, backup claimed after {:?}",
        stopped - cut,
        declared - cut
    );
    // The old owner comes back: its renewal tells it the DVIPA is gone.
    a.s.set_fault(Fault::None);
    assert_eq!(
        a.m.renew(&a.s, world.now()).unwrap(),
        Renewal::Lost(vec![d()])
    );
    assert!(a.m.owned().is_empty());
    assert_eq!(
        owner_of(&a.s, &keys(), d()).unwrap().unwrap(),
        Owner {
            gateway: "gw-b".into(),
            epoch: e2
        }
    );
}

#[test]
fn a_claim_on_a_stale_heartbeat_fails() {
    let cfg = LivenessConfig::default();
    let world = MemoryStore::new();
    let mut a = join(&world, "gw-a", 200, cfg);
    let mut b = join(&world, "gw-b", 100, cfg);
    let Claim::Won { epoch } = a.m.claim(&a.s, d(), None, None, world.now()).unwrap() else {
        panic!()
    };
    let seen_hb =
        b.s.get(&keys().heartbeat("gw-a"))
            .unwrap()
            .unwrap()
            .revision;
    // A renews after B looked: B's view is stale, its claim must fail.
    world.advance(Duration::from_millis(100));
    assert_eq!(a.m.renew(&a.s, world.now()).unwrap(), Renewal::Renewed);
    let r =
        b.m.claim(
            &b.s,
            d(),
            Some(epoch),
            Some(("gw-a", Some(seen_hb))),
            world.now(),
        )
        .unwrap();
    assert!(
        matches!(r, Claim::Lost { owner: Some(ref o) } if o.gateway == "gw-a"),
        "{r:?}"
    );
    assert!(a.m.may_route(world.now()));
    assert_eq!(a.m.renew(&a.s, world.now()).unwrap(), Renewal::Renewed);
}

#[test]
fn an_ended_lease_frees_the_dvipa_and_the_owner_has_stopped_by_then() {
    let cfg = LivenessConfig {
        lease_ttl: Duration::from_secs(2),
        ..LivenessConfig::default()
    };
    let world = MemoryStore::new();
    let mut a = join(&world, "gw-a", 200, cfg);
    let mut b = join(&world, "gw-b", 100, cfg);
    let Claim::Won { epoch } = a.m.claim(&a.s, d(), None, None, world.now()).unwrap() else {
        panic!()
    };
    let w = b.s.watch(&keys().heartbeat_prefix(), None).unwrap();
    let mut pw = PeerWatch::new(keys(), &cfg, &["gw-a"], world.now());
    // A vanishes (no revoke, no more keep-alives); B keeps its own lease alive.
    a.s.set_fault(Fault::Unreachable);
    let cut = world.now();
    while world.now() < cut + cfg.lease_ttl {
        b.m.renew(&b.s, world.now()).unwrap();
        world.advance(Duration::from_millis(100));
    }
    for e in w.drain() {
        pw.on_event(&e, world.now()).unwrap();
    }
    let ev = pw.poll(world.now());
    assert!(
        ev.contains(&LivenessEvent::Dead {
            gateway: "gw-a".into(),
            last_heartbeat: None
        }),
        "{ev:?}"
    );
    assert!(
        !a.m.may_route(world.now()),
        "the owner's fence ran out before its lease"
    );
    assert!(
        owner_of(&b.s, &keys(), d()).unwrap().is_none(),
        "the owner key went with the lease"
    );
    let Claim::Won { epoch: e2 } =
        b.m.claim(&b.s, d(), None, Some(("gw-a", None)), world.now())
            .unwrap()
    else {
        panic!()
    };
    assert!(e2 > epoch);
    // Back from the partition, A finds its lease gone, gets a new one, owns nothing.
    a.s.set_fault(Fault::None);
    assert_eq!(
        a.m.renew(&a.s, world.now()).unwrap(),
        Renewal::Lost(vec![d()])
    );
    assert!(a.m.owned().is_empty());
}

#[test]
fn takeback_by_release_and_ranks_in_the_store() {
    let cfg = LivenessConfig::default();
    let world = MemoryStore::new();
    let mut a = join(&world, "gw-a", 200, cfg);
    let mut b = join(&world, "gw-b", 100, cfg);
    publish_rank(&a.s, &keys(), d(), "gw-a", 200).unwrap();
    publish_rank(&b.s, &keys(), d(), "gw-b", 100).unwrap();
    assert_eq!(
        ranks(&a.s, &keys(), d()).unwrap(),
        vec![("gw-a".to_string(), 200), ("gw-b".to_string(), 100)]
    );
    let Claim::Won { epoch: e1 } = b.m.claim(&b.s, d(), None, None, world.now()).unwrap() else {
        panic!()
    };
    // Owner changes seen through a watch name the DVIPA and the epoch.
    let w = a.s.watch(&keys().dvipa_prefix(), None).unwrap();
    assert!(b.m.release(&b.s, d()).unwrap());
    assert!(!b.m.release(&b.s, d()).unwrap(), "released once");
    let Claim::Won { epoch: e2 } = a.m.claim(&a.s, d(), None, None, world.now()).unwrap() else {
        panic!()
    };
    assert!(e2 > e1);
    let events = w.drain();
    assert_eq!(events.len(), 2, "{events:?}");
    assert!(
        matches!(&events[0], WatchEvent::Delete { key, .. } if *key == keys().dvipa_owner(d()))
    );
    let WatchEvent::Put(e) = &events[1] else {
        panic!("{events:?}")
    };
    assert!(keys().is_owner_key(&e.key));
    assert_eq!(
        open_owner(&keys(), e).unwrap(),
        (
            d(),
            Owner {
                gateway: "gw-a".into(),
                epoch: e2
            }
        )
    );
    let names: Vec<String> = gateways(&a.s, &keys())
        .unwrap()
        .into_iter()
        .map(|(g, _)| g.name)
        .collect();
    assert_eq!(names.len(), 2);
    b.m.leave(&b.s).unwrap();
    let names: Vec<String> = gateways(&a.s, &keys())
        .unwrap()
        .into_iter()
        .map(|(g, _)| g.name)
        .collect();
    assert_eq!(names, ["gw-a"]);
}

#[test]
fn a_forged_owner_value_is_refused() {
    let world = MemoryStore::new();
    let s = world.connect();
    let keys = keys();
    let mut m = Member::join(
        &s,
        keys.clone(),
        "gw-a",
        200,
        LivenessConfig::default(),
        world.now(),
        0,
    )
    .unwrap();
    m.claim(&s, d(), None, None, world.now()).unwrap();
    let k = keys.dvipa_owner(d());
    // Someone with write access to the store but without the key writes an owner:
    // a value sealed for another site's owner key, then plain bytes.
    let other = book("/elsewhere/");
    let foreign = s.get(&k).unwrap().unwrap().value;
    let other_key = other.keys().dvipa_owner(d());
    s.put(&other_key, &foreign, None).unwrap();
    assert!(
        matches!(
            owner_of(&s, other.keys(), d()),
            Err(OwnershipError::Seal { .. })
        ),
        "moved to another key"
    );
    s.put(&k, b"gw-mallory", None).unwrap();
    assert!(matches!(
        owner_of(&s, &keys, d()),
        Err(OwnershipError::Seal { .. })
    ));
    assert_eq!(keys.ring().counters().refused(), 1);
    assert_eq!(other.keys().ring().counters().refused(), 1);
}
