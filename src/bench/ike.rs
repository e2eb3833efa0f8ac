//! `plexgate bench ike`: complete IKE SA + first Child SA setups (IKE_SA_INIT and
//! IKE_AUTH, X25519, PSK, AES-128-GCM ESP) per second on one core, with the
//! initiators and the responder in one process and no network in between, and the
//! memory the responder holds per established IKE SA with one Child SA.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use plexgate_ike::{ChildConfig, Config, Endpoint, EspProposal, Event, IkeProposal, Limits, PeerConfig, SystemRng, TrafficSelector};
use serde_json::json;

type BoxError = Box<dyn std::error::Error>;

const GW: &str = "10.0.0.2:500";

fn addr(s: &str) -> SocketAddr {
    s.parse().expect("address")
}

fn gw_config() -> Arc<Config> {
    let child = ChildConfig::new(
        "net",
        vec![TrafficSelector::host("203.0.113.250".parse().expect("ip"))],
        vec![TrafficSelector::prefix("10.128.0.0".parse().expect("ip"), 9)],
        vec![EspProposal::AES128GCM16],
    );
    let mut p = PeerConfig::psk("clients", "gw@bench", "%any", b"bench-secret-0123456789", child);
    p.ike_proposals = vec![IkeProposal::AES128GCM16_PRFSHA256_X25519];
    p.local_addr = Some(addr(GW));
    Arc::new(Config {
        peers: vec![p],
        limits: Limits { cookie_threshold: usize::MAX, max_half_open: usize::MAX, ..Limits::default() },
    })
}

fn client_config(i: u32) -> Arc<Config> {
    let inner = std::net::Ipv4Addr::from(0x0a80_0000u32 + i);
    let child = ChildConfig::new(
        "net",
        vec![TrafficSelector::host(inner.into())],
        vec![TrafficSelector::host("203.0.113.250".parse().expect("ip"))],
        vec![EspProposal::AES128GCM16],
    );
    let mut p = PeerConfig::psk("gw", &format!("c{i}@bench"), "gw@bench", b"bench-secret-0123456789", child);
    p.ike_proposals = vec![IkeProposal::AES128GCM16_PRFSHA256_X25519];
    p.remote_addr = Some(addr(GW));
    Arc::new(Config { peers: vec![p], limits: Limits::default() })
}

/// Result of the IKE benchmark.
#[derive(Debug, serde::Serialize)]
pub struct IkeBench {
    /// Complete setups.
    pub setups: usize,
    /// Wall time, seconds.
    pub seconds: f64,
    /// Setups per second (both ends' work on this one core).
    pub setups_per_sec: f64,
    /// Responder's estimate of its memory per IKE SA with one Child SA, bytes.
    pub bytes_per_sa: usize,
}

/// Run `count` setups.
pub fn run(count: usize) -> Result<IkeBench, BoxError> {
    let mut gw = Endpoint::new(gw_config(), Box::new(SystemRng::new()));
    // One client endpoint per setup (each initiator is a different peer address).
    let mut clients: Vec<Endpoint> = (0..count as u32).map(|i| Endpoint::new(client_config(i), Box::new(SystemRng::new()))).collect();
    let now = Instant::now();
    let start = Instant::now();
    let mut up = 0usize;
    for (i, c) in clients.iter_mut().enumerate() {
        let caddr = SocketAddr::new(std::net::Ipv4Addr::from(0x0b00_0000u32 + i as u32).into(), 500);
        let mut cfg_local = caddr;
        c.initiate(now, "gw", "net").map_err(|e| format!("initiate: {e}"))?;
        let mut rounds = 0;
        let mut done = false;
        while !done && rounds < 20 {
            rounds += 1;
            while let Some(t) = c.poll_transmit() {
                cfg_local = t.local;
                gw.handle(now, caddr, t.remote, &t.payload);
            }
            while let Some(t) = gw.poll_transmit() {
                c.handle(now, cfg_local, t.local, &t.payload);
            }
            while let Some(ev) = c.poll_event() {
                if matches!(ev, Event::ChildSaUp { .. }) {
                    done = true;
                }
            }
            while gw.poll_event().is_some() {}
        }
        if !done {
            return Err(format!("setup {i} did not complete").into());
        }
        up += 1;
    }
    let secs = start.elapsed().as_secs_f64();
    let est = gw.size_estimate() / gw.len().max(1);
    drop(clients);
    Ok(IkeBench { setups: up, seconds: secs, setups_per_sec: up as f64 / secs.max(1e-9), bytes_per_sa: est })
}

/// `plexgate bench ike`.
pub fn ike(as_json: bool, count: usize) -> Result<(), BoxError> {
    let r = run(count.max(1))?;
    if as_json {
        println!("{}", json!(r));
    } else {
        println!(
            "IKE SA + Child SA setups: {} in {:.2} s = {:.0} setups/s on one core (initiator and responder work both counted)\nresponder memory per IKE SA with one Child SA: ~{} bytes",
            r.setups, r.seconds, r.setups_per_sec, r.bytes_per_sa
        );
    }
    let _ = Duration::ZERO;
    Ok(())
}
