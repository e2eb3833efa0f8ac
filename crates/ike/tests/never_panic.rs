//! Hostile input never panics [`Endpoint::handle`]: arbitrary datagrams, and real
//! IKE_SA_INIT / IKE_AUTH / CREATE_CHILD_SA requests with bytes changed, replayed to a
//! responder.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use plexgate_ike::config::{ChildConfig, Config, EspProposal, Limits, PeerConfig};
use plexgate_ike::{Endpoint, SeededRng, TrafficSelector};
use proptest::prelude::*;

fn peer(local: &str, remote: &str, raddr: Option<&str>, laddr: &str) -> Arc<Config> {
    let mut ts = vec![
        vec![TrafficSelector::prefix("10.1.0.0".parse().unwrap(), 16)],
        vec![TrafficSelector::prefix("10.2.0.0".parse().unwrap(), 16)],
    ];
    if raddr.is_none() {
        ts.reverse();
    }
    let remote_ts = ts.pop().unwrap();
    let local_ts = ts.pop().unwrap();
    let child = ChildConfig::new("net", local_ts, remote_ts, vec![EspProposal::AES128GCM16]);
    let mut p = PeerConfig::psk("p", local, remote, b"k", child);
    p.remote_addr = raddr.map(|a| a.parse().unwrap());
    p.local_addr = Some(laddr.parse().unwrap());
    let limits = Limits {
        cookie_threshold: 3,
        ..Limits::default()
    };
    Arc::new(Config {
        peers: vec![p],
        limits,
    })
}

/// A real request sequence from an initiator: IKE_SA_INIT, IKE_AUTH and, after it,
/// a CREATE_CHILD_SA rekey (each obtained by running two endpoints).
fn real_requests() -> Vec<Vec<u8>> {
    let now = Instant::now();
    let mut c = Endpoint::new(
        peer("c@x", "g@x", Some("10.0.0.2:500"), "10.0.0.1:500"),
        Box::new(SeededRng::new(1)),
    );
    let mut g = Endpoint::new(
        peer("g@x", "c@x", None, "10.0.0.2:500"),
        Box::new(SeededRng::new(2)),
    );
    c.initiate(now, "p", "net").unwrap();
    let mut reqs = Vec::new();
    for _ in 0..4 {
        while let Some(t) = c.poll_transmit() {
            reqs.push(t.payload.clone());
            g.handle(now, t.remote, t.local, &t.payload);
        }
        while let Some(t) = g.poll_transmit() {
            c.handle(now, t.remote, t.local, &t.payload);
        }
    }
    let spi = std::iter::from_fn(|| c.poll_event())
        .find_map(|e| match e {
            plexgate_ike::Event::ChildSaUp { child, .. } => Some(child.spi_in),
            _ => None,
        })
        .unwrap();
    c.rekey_child(now, spi).unwrap();
    while let Some(t) = c.poll_transmit() {
        reqs.push(t.payload);
    }
    reqs
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 500, ..ProptestConfig::default() })]

    #[test]
    fn responder_survives_arbitrary_datagrams(datagrams in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..400), 1..8)) {
        let mut g = Endpoint::new(peer("g@x", "c@x", None, "10.0.0.2:500"), Box::new(SeededRng::new(3)));
        let now = Instant::now();
        let local: SocketAddr = "10.0.0.2:500".parse().unwrap();
        for (i, d) in datagrams.iter().enumerate() {
            let remote: SocketAddr = format!("10.9.0.{}:500", i).parse().unwrap();
            g.handle(now, local, remote, d);
            while g.poll_transmit().is_some() {}
        }
        g.handle_timeout(now + Duration::from_secs(100));
        while g.poll_event().is_some() {}
    }

    #[test]
    fn responder_survives_mutated_real_exchanges(
        flips in proptest::collection::vec((0usize..3, any::<prop::sample::Index>(), any::<u8>()), 0..4),
        cut in proptest::option::of((0usize..3, any::<prop::sample::Index>())),
    ) {
        let mut reqs = REQS.clone();
        for (m, i, b) in flips {
            let m = m % reqs.len();
            let i = i.index(reqs[m].len());
            reqs[m][i] = b;
        }
        if let Some((m, at)) = cut {
            let m = m % reqs.len();
            let n = at.index(reqs[m].len() + 1);
            reqs[m].truncate(n);
        }
        let mut g = Endpoint::new(peer("g@x", "c@x", None, "10.0.0.2:500"), Box::new(SeededRng::new(2)));
        let now = Instant::now();
        for r in &reqs {
            g.handle(now, "10.0.0.2:500".parse().unwrap(), "10.0.0.1:500".parse().unwrap(), r);
            g.handle(now, "10.0.0.2:500".parse().unwrap(), "10.0.0.1:500".parse().unwrap(), r);
            while g.poll_transmit().is_some() {}
        }
        let _ = g.sas(now);
        g.handle_timeout(now + Duration::from_secs(3600 * 5));
    }
}

static REQS: std::sync::LazyLock<Vec<Vec<u8>>> = std::sync::LazyLock::new(real_requests);

#[test]
fn real_requests_are_three_exchanges() {
    assert_eq!(REQS.len(), 3);
}

/// The responses a real responder sends to a fresh initiator (IKE_SA_INIT response,
/// IKE_AUTH response), with the initiator that asked, so they can be replayed mutated.
fn real_responses() -> Vec<Vec<u8>> {
    let now = Instant::now();
    let mut c = Endpoint::new(
        peer("c@x", "g@x", Some("10.0.0.2:500"), "10.0.0.1:500"),
        Box::new(SeededRng::new(1)),
    );
    let mut g = Endpoint::new(
        peer("g@x", "c@x", None, "10.0.0.2:500"),
        Box::new(SeededRng::new(2)),
    );
    c.initiate(now, "p", "net").unwrap();
    let mut resps = Vec::new();
    for _ in 0..3 {
        while let Some(t) = c.poll_transmit() {
            g.handle(now, t.remote, t.local, &t.payload);
        }
        while let Some(t) = g.poll_transmit() {
            resps.push(t.payload.clone());
            c.handle(now, t.remote, t.local, &t.payload);
        }
    }
    resps
}

static RESPS: std::sync::LazyLock<Vec<Vec<u8>>> = std::sync::LazyLock::new(real_responses);

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    /// An initiator (same seed, so the same SPIs as in the recorded run) fed
    /// mutated responses never panics.
    #[test]
    fn initiator_survives_mutated_responses(
        flips in proptest::collection::vec((0usize..2, any::<prop::sample::Index>(), any::<u8>()), 0..4),
        cut in proptest::option::of((0usize..2, any::<prop::sample::Index>())),
    ) {
        let mut resps = RESPS.clone();
        prop_assume!(resps.len() >= 2);
        for (m, i, b) in flips {
            let i = i.index(resps[m].len());
            resps[m][i] = b;
        }
        if let Some((m, at)) = cut {
            let n = at.index(resps[m].len() + 1);
            resps[m].truncate(n);
        }
        let now = Instant::now();
        let mut c = Endpoint::new(
            peer("c@x", "g@x", Some("10.0.0.2:500"), "10.0.0.1:500"),
            Box::new(SeededRng::new(1)),
        );
        c.initiate(now, "p", "net").unwrap();
        for r in &resps {
            for port in [500u16, 4500] {
                let remote = SocketAddr::from(([10, 0, 0, 2], port));
                let local = SocketAddr::from(([10, 0, 0, 1], port));
                c.handle(now, local, remote, r);
            }
            while c.poll_transmit().is_some() {}
        }
        c.handle_timeout(now + Duration::from_secs(60));
        while c.poll_event().is_some() {}
    }
}
