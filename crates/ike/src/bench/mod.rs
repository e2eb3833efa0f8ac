//! A self-contained benchmark for `plexgate bench ike`: complete IKE SA + Child SA
//! setups (X25519, AES-GCM, PSK) between an initiator and a responder [`Endpoint`] in
//! one process, with no network in between, and the memory each established IKE SA
//! with one Child SA holds; and takeover renegotiations from recovery records
//! (`recovery.rs`).

mod recovery;

pub use recovery::{bench_recovery, RecoveryReport};

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::config::{ChildConfig, Config, EspProposal, IkeProposal, PeerConfig};
use crate::crypto::SystemRng;
use crate::endpoint::{Endpoint, Event};
use crate::message::TrafficSelector;

/// Result of [`bench_setups`].
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct BenchReport {
    /// Complete setups (IKE SA + Child SA up on both ends).
    pub setups: usize,
    /// Wall time for all of them (both ends' work, on one thread).
    pub elapsed: Duration,
    /// Setups per second on one core (both ends' work counted).
    pub setups_per_sec: f64,
    /// CPU time of this thread for the run (excludes time the scheduler gave to
    /// others; on a loaded machine this is the number to compare).
    pub cpu: Duration,
    /// Setups per CPU second of this thread (both ends' work counted).
    pub setups_per_cpu_sec: f64,
    /// Estimated bytes per established responder IKE SA with one Child SA.
    pub responder_bytes_per_sa: usize,
    /// Estimated bytes per established initiator IKE SA with one Child SA.
    pub initiator_bytes_per_sa: usize,
}

fn configs() -> (Arc<Config>, Arc<Config>) {
    let a: SocketAddr = SocketAddr::from(([192, 0, 2, 1], 500));
    let b: SocketAddr = SocketAddr::from(([192, 0, 2, 2], 500));
    let ts_a = vec![TrafficSelector::host(a.ip())];
    let ts_b = vec![TrafficSelector::host(b.ip())];
    let mut ci = PeerConfig::psk(
        "gw",
        "client@bench",
        "gw@bench",
        b"bench-psk",
        ChildConfig::new(
            "c",
            ts_a.clone(),
            ts_b.clone(),
            vec![EspProposal::AES128GCM16],
        ),
    );
    ci.ike_proposals = vec![IkeProposal::AES128GCM16_PRFSHA256_X25519];
    ci.remote_addr = Some(b);
    ci.local_addr = Some(a);
    ci.initial_contact = false;
    let mut cr = PeerConfig::psk(
        "client",
        "gw@bench",
        "client@bench",
        b"bench-psk",
        ChildConfig::new("c", ts_b, ts_a, vec![EspProposal::AES128GCM16]),
    );
    cr.ike_proposals = vec![IkeProposal::AES128GCM16_PRFSHA256_X25519];
    let mut gw = Config {
        peers: vec![cr],
        ..Config::default()
    };
    gw.limits.cookie_threshold = usize::MAX;
    gw.limits.max_half_open = usize::MAX;
    (
        Arc::new(Config {
            peers: vec![ci],
            ..Config::default()
        }),
        Arc::new(gw),
    )
}

/// CPU time consumed by the calling thread (Linux `CLOCK_THREAD_CPUTIME_ID`).
pub(crate) fn thread_cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the timespec we own; no other memory is touched.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    if rc != 0 {
        return Duration::ZERO;
    }
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// Run `n` complete IKE SA + Child SA setups between two in-process endpoints.
pub fn bench_setups(n: usize) -> BenchReport {
    let (ci, cr) = configs();
    // Each setup is a new IKE SA (`initiate` would put a second Child SA into the
    // first one).
    let pc = Arc::new(ci.peers[0].clone());
    let child = pc.children[0].clone();
    let mut init = Endpoint::new(ci, Box::new(SystemRng::new()));
    let mut resp = Endpoint::new(cr, Box::new(SystemRng::new()));
    let start = Instant::now();
    let cpu0 = thread_cpu();
    let mut done = 0;
    for _ in 0..n {
        let now = Instant::now();
        if init
            .initiate_ike_sa(now, pc.clone(), child.clone())
            .is_err()
        {
            break;
        }
        // IKE_SA_INIT and IKE_AUTH: two round trips.
        for _ in 0..2 {
            while let Some(t) = init.poll_transmit() {
                resp.handle(now, t.remote, t.local, &t.payload);
            }
            while let Some(t) = resp.poll_transmit() {
                init.handle(now, t.remote, t.local, &t.payload);
            }
        }
        let mut up = 0;
        while let Some(e) = init.poll_event() {
            up += matches!(e, Event::ChildSaUp { .. }) as usize;
        }
        while let Some(e) = resp.poll_event() {
            up += matches!(e, Event::ChildSaUp { .. }) as usize;
        }
        done += (up == 2) as usize;
    }
    let elapsed = start.elapsed();
    let cpu = thread_cpu().saturating_sub(cpu0);
    BenchReport {
        cpu,
        setups_per_cpu_sec: done as f64 / cpu.as_secs_f64().max(1e-9),
        setups: done,
        elapsed,
        setups_per_sec: done as f64 / elapsed.as_secs_f64().max(1e-9),
        responder_bytes_per_sa: resp.size_estimate() / resp.len().max(1),
        initiator_bytes_per_sa: init.size_estimate() / init.len().max(1),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn bench_completes_every_setup() {
        let r = super::bench_setups(20);
        assert_eq!(r.setups, 20);
        assert!(
            r.responder_bytes_per_sa > 500 && r.responder_bytes_per_sa < 8192,
            "{r:?}"
        );
    }
}
