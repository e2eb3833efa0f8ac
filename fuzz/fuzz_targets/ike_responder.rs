//! Fuzz a responder `Endpoint`: a sequence of datagrams (split on a 0xfe 0xed marker)
//! from a few source addresses, with time advancing; nothing may panic.
#![no_main]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use plexgate_ike::config::{ChildConfig, Config, EspProposal, Limits, PeerConfig};
use plexgate_ike::{Endpoint, SeededRng, TrafficSelector};

fn config() -> Arc<Config> {
    let child = ChildConfig::new(
        "net",
        vec![TrafficSelector::prefix("10.2.0.0".parse().unwrap(), 16)],
        vec![TrafficSelector::prefix("10.1.0.0".parse().unwrap(), 16)],
        vec![EspProposal::AES128GCM16, EspProposal::AES256_SHA256],
    );
    let p = PeerConfig::psk("p", "gw@example", "%any", b"fuzz", child);
    let limits = Limits {
        cookie_threshold: 4,
        max_half_open: 16,
        ..Limits::default()
    };
    Arc::new(Config {
        peers: vec![p],
        limits,
    })
}

fuzz_target!(|data: &[u8]| {
    let mut ep = Endpoint::new(config(), Box::new(SeededRng::new(1)));
    let mut now = Instant::now();
    let local: SocketAddr = "10.0.0.2:500".parse().unwrap();
    let mut start = 0;
    let mut n = 0u8;
    for i in 0..=data.len() {
        let end = i == data.len() || (data[i] == 0xfe && data.get(i + 1) == Some(&0xed));
        if !end {
            continue;
        }
        let d = &data[start..i];
        start = (i + 2).min(data.len());
        let remote: SocketAddr =
            SocketAddr::from(([10, 0, 0, 1 + n % 3], if n % 2 == 0 { 500 } else { 4500 }));
        ep.handle(now, local, remote, d);
        while ep.poll_transmit().is_some() {}
        while ep.poll_event().is_some() {}
        now += Duration::from_millis(700);
        ep.handle_timeout(now);
        n = n.wrapping_add(1);
    }
    let _ = ep.sas(now);
});
