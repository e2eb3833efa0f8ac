//! Random crashes, restarts, store partitions, store outages, lagging store
//! watches, planned moves and graceful stops over virtual time, with the invariants checked after every step:
//! at most one forwarder per group (hence per epoch), forwarding epochs only grow
//! (the simulation checks both at every action, plus one address holder and one
//! record writer per group, and no renegotiation during a hand-over's DELETEs);
//! after the faults end and nothing fails for long enough, every group is routed
//! by exactly one gateway — its live primary, unless an operator pinned it on a
//! backup with a planned move.

use plexgate_ha::takeover::sim::{Sim, SimTiming};
use plexgate_ha::takeover::{
    BackupSpec, DvipaSpec, GatewayName, GatewaySpec, GroupId, HaConfig, OwnerRecord, Rank, Role,
    Takeback, Timing,
};
use proptest::prelude::*;
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

const GATEWAYS: [(&str, u8); 3] = [("gw-1", 250), ("gw-2", 200), ("gw-3", 100)];
const DVIPAS: [&str; 4] = ["10.200.0.20", "10.200.0.21", "10.200.0.30", "10.200.0.40"];

fn g(s: &str) -> GatewayName {
    GatewayName::from(s)
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
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

/// Three groups: gw-1 primary of two DVIPAs behind one VIPA, gw-2 and gw-3 of one
/// each; ranks overlap; gw-2 is a standby for the third group.
fn site() -> Vec<DvipaSpec> {
    vec![
        dvipa(
            DVIPAS[0],
            "192.0.2.10",
            "gw-1",
            &[("gw-2", 200), ("gw-3", 100)],
        ),
        dvipa(
            DVIPAS[1],
            "192.0.2.10",
            "gw-1",
            &[("gw-2", 200), ("gw-3", 100)],
        ),
        dvipa(
            DVIPAS[2],
            "192.0.2.20",
            "gw-2",
            &[("gw-3", 150), ("gw-1", 50)],
        ),
        dvipa(DVIPAS[3], "192.0.2.30", "gw-3", &[("gw-1", 100)]),
    ]
}

fn configs() -> Vec<HaConfig> {
    let spec = |(n, r): &(&str, u8)| GatewaySpec {
        name: g(n),
        rank: Rank::new(*r).unwrap(),
    };
    GATEWAYS
        .iter()
        .map(|me| {
            let peers = GATEWAYS.iter().filter(|p| p.0 != me.0).map(spec).collect();
            HaConfig::new(
                spec(me),
                peers,
                site(),
                Timing::default(),
                Takeback::Automatic,
            )
            .unwrap()
        })
        .collect()
}

#[derive(Clone, Debug)]
enum Op {
    Crash(usize),
    Restart(usize),
    Link(usize, bool),
    WatchLag(usize, u64),
    Store(bool),
    Move { at: usize, dvipa: usize, to: usize },
    Stop(usize),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0..3usize).prop_map(Op::Crash),
        3 => (0..3usize).prop_map(Op::Restart),
        4 => (0..3usize, any::<bool>()).prop_map(|(i, up)| Op::Link(i, up)),
        2 => (0..3usize, prop_oneof![Just(0u64), 1u64..2000]).prop_map(|(i, ms)| Op::WatchLag(i, ms)),
        1 => any::<bool>().prop_map(Op::Store),
        2 => (0..3usize, 0..4usize, 0..3usize).prop_map(|(at, dvipa, to)| Op::Move { at, dvipa, to }),
        1 => (0..3usize).prop_map(Op::Stop),
    ]
}

fn name(i: usize) -> GatewayName {
    g(GATEWAYS[i].0)
}

/// Runs for `d`, checking after every step that no group has two forwarders.
fn run_checked(sim: &mut Sim, groups: &[GroupId], d: Duration) -> Result<(), TestCaseError> {
    let mut bad = None;
    sim.run_until(d, |s| {
        for grp in groups {
            let f = s.forwarders(*grp);
            if f.len() > 1 && bad.is_none() {
                bad = Some(format!("{grp} forwarded by {f:?}"));
            }
        }
        false
    });
    match bad {
        Some(b) => Err(TestCaseError::fail(b)),
        None => Ok(()),
    }
}

fn apply(sim: &mut Sim, groups: &[GroupId], op: &Op) -> Result<(), TestCaseError> {
    match *op {
        Op::Crash(i) => sim.crash(&name(i)),
        Op::Restart(i) => sim.start(&name(i)),
        Op::Link(i, up) => sim.set_store_link(&name(i), up),
        Op::WatchLag(i, ms) => sim.set_watch_delay(&name(i), Duration::from_millis(ms)),
        Op::Store(up) => sim.set_store_up(up),
        Op::Move { at, dvipa, to } => {
            // Refusals (not a candidate, target dead, owner busy) are fine here.
            let _ = sim.command_move(&name(at), ip(DVIPAS[dvipa]), &name(to));
        }
        Op::Stop(i) => {
            let gw = name(i);
            if sim.is_running(&gw) {
                sim.shutdown(&gw);
                let mut done = false;
                let mut bad = None;
                sim.run_until(Duration::from_secs(2), |s| {
                    for grp in groups {
                        if s.forwarders(*grp).len() > 1 && bad.is_none() {
                            bad = Some(format!("{grp} has two forwarders during a stop"));
                        }
                    }
                    done = s.released_all(&gw);
                    done
                });
                if let Some(b) = bad {
                    return Err(TestCaseError::fail(b));
                }
                let _ = done;
                sim.crash(&gw);
            }
        }
    }
    Ok(())
}

/// After healing: one forwarder per group, the live primary unless pinned.
fn check_settled(sim: &Sim, cfg: &HaConfig) -> Result<(), TestCaseError> {
    for gc in cfg.groups() {
        let grp = gc.id();
        let f = sim.forwarders(grp);
        prop_assert_eq!(f.len(), 1, "{} forwarded by {:?}", grp, f);
        let (owner, epoch) = f[0].clone();
        match sim.record(grp) {
            OwnerRecord::Owned {
                gateway,
                epoch: e,
                pinned,
            } => {
                prop_assert_eq!(&gateway, &owner);
                prop_assert_eq!(e, epoch);
                if !pinned {
                    prop_assert_eq!(&owner, gc.primary(), "{} not back on its primary", grp);
                }
            }
            other => prop_assert!(false, "{} record {:?}", grp, other),
        }
        prop_assert_eq!(sim.role(&owner, grp), Some(Role::Routing));
        prop_assert_eq!(sim.vipa_holders(grp), vec![owner.clone()]);
    }
    let mut last: BTreeMap<GroupId, u64> = BTreeMap::new();
    for (_, grp, rec) in sim.ownership_history() {
        let e = rec.epoch().expect("written records have epochs").0;
        let prev = last.insert(*grp, e).unwrap_or(0);
        prop_assert!(
            e > prev,
            "epochs only grow: {} after {} for {}",
            e,
            prev,
            grp
        );
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn random_failures_keep_the_invariants_and_settle_on_the_primaries(
        steps in prop::collection::vec((0u64..2500, op()), 1..25),
        latency_ms in 1u64..25,
        timeout_ms in 50u64..300,
    ) {
        let timing = SimTiming {
            store_latency: Duration::from_millis(latency_ms),
            request_timeout: Duration::from_millis(timeout_ms),
            ..SimTiming::default()
        };
        let cfgs = configs();
        let cfg = cfgs[0].clone();
        let groups: Vec<GroupId> = cfg.groups().iter().map(|g| g.id()).collect();
        let mut sim = Sim::new(Instant::now(), cfgs, timing);
        sim.start_all();
        run_checked(&mut sim, &groups, Duration::from_secs(1))?;
        for (wait, op) in &steps {
            apply(&mut sim, &groups, op)?;
            run_checked(&mut sim, &groups, Duration::from_millis(*wait))?;
        }
        // Heal everything, then nothing fails for long enough.
        sim.set_store_up(true);
        for i in 0..3 {
            sim.set_store_link(&name(i), true);
            sim.set_watch_delay(&name(i), Duration::ZERO);
            sim.start(&name(i));
        }
        run_checked(&mut sim, &groups, Duration::from_secs(20))?;
        if !sim.violations().is_empty() || sim.counters().input_errors != 0 {
            let tail: Vec<&String> = sim.log().iter().rev().take(60).collect();
            prop_assert!(false, "violations {:#?}\nerrors {}\nlog {:#?}",
                sim.violations(), sim.counters().input_errors, tail);
        }
        check_settled(&sim, &cfg)?;
    }
}
