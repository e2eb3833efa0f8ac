use super::*;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

#[test]
fn the_defaults_are_safe_and_unsafe_timing_is_refused() {
    assert!(LivenessConfig::default().check().is_ok());
    assert!(LivenessConfig::for_backend(Backend::Etcd).check().is_ok());
    let bad = LivenessConfig {
        fence_after: ms(500),
        dead_after: ms(500),
        ..LivenessConfig::default()
    };
    assert!(bad.check().unwrap_err().contains("unsafe"));
    let jumpy = LivenessConfig {
        fence_after: ms(150),
        ..LivenessConfig::default()
    };
    assert!(jumpy.check().unwrap_err().contains("twice"));
    let short_lease = LivenessConfig {
        lease_ttl: ms(400),
        ..LivenessConfig::default()
    };
    assert!(short_lease.check().is_err());
}

#[test]
fn the_fence_runs_from_the_send_time_of_the_last_success() {
    let cfg = LivenessConfig::default();
    let t0 = Instant::now();
    let mut f = Fence::new(cfg);
    assert!(!f.may_route(t0), "nothing before the first renewal");
    f.lease_renewed(t0);
    f.renewed(t0);
    assert!(f.may_route(t0 + ms(299)));
    assert!(!f.may_route(t0 + ms(300)));
    f.renewed(t0 + ms(100));
    f.renewed(t0 + ms(50)); // a late answer to an older request changes nothing
    assert_eq!(f.valid_until(), Some(t0 + ms(400)));
    f.revoke();
    assert!(!f.may_route(t0 + ms(101)));
    f.renewed(t0 + ms(200));
    assert!(f.may_route(t0 + ms(201)));
    // The lease bounds it too: renewals keep succeeding but keep-alives do not.
    let lease_end = t0 + cfg.lease_ttl.mul_f64(1.0 - cfg.max_drift) - cfg.reaction;
    f.renewed(lease_end - ms(10));
    assert_eq!(f.valid_until(), Some(lease_end));
}

#[test]
fn the_monitor_declares_death_after_dead_after_on_its_own_clock() {
    let cfg = LivenessConfig::default();
    let t0 = Instant::now();
    let mut m = Monitor::new(&cfg);
    m.expect("b", t0);
    assert_eq!(
        m.poll(t0),
        vec![LivenessEvent::Alive {
            gateway: "b".into()
        }]
    );
    m.heartbeat("b", 10, t0 + ms(100));
    m.heartbeat("b", 9, t0 + ms(450)); // stale revision: ignored
    assert_eq!(m.next_deadline(), Some(t0 + ms(600)));
    assert!(m.poll(t0 + ms(599)).is_empty());
    assert_eq!(
        m.poll(t0 + ms(600)),
        vec![LivenessEvent::Dead {
            gateway: "b".into(),
            last_heartbeat: Some(10)
        }]
    );
    assert!(m.poll(t0 + ms(700)).is_empty(), "reported once");
    assert!(!m.is_alive("b"));
    m.heartbeat("b", 11, t0 + ms(800));
    assert_eq!(
        m.poll(t0 + ms(800)),
        vec![LivenessEvent::Alive {
            gateway: "b".into()
        }]
    );
    m.gone("b", t0 + ms(810));
    assert_eq!(
        m.poll(t0 + ms(810)),
        vec![LivenessEvent::Dead {
            gateway: "b".into(),
            last_heartbeat: None
        }],
        "a vanished heartbeat key is death at once"
    );
    assert_eq!(m.last_heartbeat("b"), None);
}

/// The inequality, simulated: the owner renews every interval until it is cut off at
/// a random moment; the watcher sees each heartbeat after a random delay and claims
/// D after the last one it saw; its claim must come after the owner stopped.
#[test]
fn no_overlap_between_the_fenced_owner_and_the_claimant() {
    use proptest::prelude::*;
    let cfg = LivenessConfig::default();
    proptest!(|(cut in 0u64..2000, delays in proptest::collection::vec(0u64..400, 40), drift in -0.01f64..0.01)| {
        let t0 = Instant::now();
        let mut fence = Fence::new(cfg);
        fence.lease_renewed(t0);
        let mut last_seen: Option<Instant> = None;
        let mut t = 0;
        let mut i = 0;
        while t <= cut {
            let sent = t0 + ms(t);
            let commit = sent + ms(delays[i % delays.len()] / 8);
            fence.renewed(sent);
            let seen = commit + ms(delays[(i + 7) % delays.len()]);
            last_seen = Some(last_seen.map_or(seen, |l| l.max(seen)));
            t += cfg.heartbeat_interval.as_millis() as u64;
            i += 1;
        }
        let stop = fence.valid_until().unwrap() + cfg.reaction;
        // The watcher's clock runs (1 + drift) as fast: D on it is D / (1 + drift) real.
        let claim = last_seen.unwrap() + cfg.dead_after.mul_f64(1.0 / (1.0 + drift));
        prop_assert!(stop < claim, "owner stops {:?} after the claim", stop - claim);
    });
}
