//! Takeover cost: `n` clients each hold an IKE SA and a Child SA with a gateway that
//! dies; a fresh backup renegotiates every one of them from its recovery record
//! ([`Endpoint::initiate_recovered`]) and each client drops its old SAs on the
//! INITIAL_CONTACT. Only the renegotiations are timed (both ends' work, on one
//! thread), as `plexgate bench ike` does for plain setups.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::thread_cpu;
use crate::config::{ChildConfig, Config, EspProposal, IkeProposal, PeerConfig};
use crate::crypto::SystemRng;
use crate::endpoint::{Endpoint, Event};
use crate::message::TrafficSelector;
use crate::record::IkeRecord;

/// Result of [`bench_recovery`].
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct RecoveryReport {
    /// Renegotiations completed: the backup has the Child SA and the client dropped
    /// its old IKE SA.
    pub renegotiations: usize,
    /// Wall time of the renegotiations.
    pub elapsed: Duration,
    /// CPU time of this thread for them.
    pub cpu: Duration,
    /// Renegotiations per CPU second of this thread (both ends counted).
    pub per_cpu_sec: f64,
}

const GW: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 2)), 500);
const PSK: &[u8] = b"bench-group-psk";

fn host(a: IpAddr) -> TrafficSelector {
    TrafficSelector::host(a)
}

fn gateway_config() -> Arc<Config> {
    let child = ChildConfig::new(
        "c",
        vec![host(GW.ip())],
        vec![TrafficSelector::prefix(
            IpAddr::V4(Ipv4Addr::new(10, 0, 0, 0)),
            8,
        )],
        vec![EspProposal::AES128GCM16],
    );
    let mut p = PeerConfig::psk("rw", "gw@bench", "%any", PSK, child);
    p.ike_proposals = vec![IkeProposal::AES128GCM16_PRFSHA256_X25519];
    p.local_addr = Some(GW);
    let mut c = Config {
        peers: vec![p],
        ..Config::default()
    };
    c.limits.cookie_threshold = usize::MAX;
    c.limits.max_half_open = usize::MAX;
    Arc::new(c)
}

/// Client `i`: its own address, identity and inner address.
fn client(i: usize) -> (SocketAddr, Endpoint) {
    let [_, _, b, c] = (i as u32).to_be_bytes();
    let outer = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(100, 64, b, c)), 500);
    let inner = IpAddr::V4(Ipv4Addr::new(10, 1, b, c));
    let child = ChildConfig::new(
        "c",
        vec![host(inner)],
        vec![host(GW.ip())],
        vec![EspProposal::AES128GCM16],
    );
    let id = format!("client{i}@bench");
    let mut p = PeerConfig::psk("gw", &id, "gw@bench", PSK, child);
    p.ike_proposals = vec![IkeProposal::AES128GCM16_PRFSHA256_X25519];
    p.remote_addr = Some(GW);
    p.local_addr = Some(outer);
    let cfg = Arc::new(Config {
        peers: vec![p],
        ..Config::default()
    });
    (outer, Endpoint::new(cfg, Box::new(SystemRng::new())))
}

/// Deliver datagrams between the gateway and the clients (only client `only`, when
/// given) until nothing is left.
fn pump(
    now: Instant,
    gw: &mut Endpoint,
    clients: &mut [Endpoint],
    by_addr: &HashMap<IpAddr, usize>,
    only: Option<usize>,
) {
    loop {
        let mut moved = false;
        while let Some(t) = gw.poll_transmit() {
            if let Some(&i) = by_addr.get(&t.remote.ip()) {
                clients[i].handle(now, t.remote, t.local, &t.payload);
                moved = true;
            }
        }
        let range = match only {
            Some(i) => i..i + 1,
            None => 0..clients.len(),
        };
        for c in clients.get_mut(range).unwrap_or_default() {
            while let Some(t) = c.poll_transmit() {
                gw.handle(now, t.remote, t.local, &t.payload);
                moved = true;
            }
        }
        if !moved {
            return;
        }
    }
}

/// The clients connect to the gateway that will die; its last record of each SA.
fn connect_all(
    now: Instant,
    clients: &mut [Endpoint],
    by_addr: &HashMap<IpAddr, usize>,
) -> Vec<IkeRecord> {
    let mut dead = Endpoint::new(gateway_config(), Box::new(SystemRng::new()));
    for c in clients.iter_mut() {
        let _ = c.initiate(now, "gw", "c");
    }
    pump(now, &mut dead, clients, by_addr, None);
    let mut records = HashMap::new();
    while let Some(e) = dead.poll_event() {
        if let Event::RecordUpdated { id, record } = e {
            records.insert(id, record);
        }
    }
    for c in clients.iter_mut() {
        while c.poll_event().is_some() {}
    }
    let mut v: Vec<IkeRecord> = records.into_values().collect();
    v.sort_by_key(|r| r.remote);
    v
}

/// Run `n` takeover renegotiations (see the module documentation).
pub fn bench_recovery(n: usize) -> RecoveryReport {
    let now = Instant::now();
    let (addrs, mut clients): (Vec<SocketAddr>, Vec<Endpoint>) = (0..n).map(client).unzip();
    let by_addr: HashMap<IpAddr, usize> =
        addrs.iter().enumerate().map(|(i, a)| (a.ip(), i)).collect();
    let records = connect_all(now, &mut clients, &by_addr);
    let mut backup = Endpoint::new(gateway_config(), Box::new(SystemRng::new()));
    let start = Instant::now();
    let cpu0 = thread_cpu();
    let mut done = 0;
    for rec in &records {
        let Some(&i) = by_addr.get(&rec.remote.ip()) else {
            continue;
        };
        if backup.initiate_recovered(now, rec).is_err() {
            continue;
        }
        pump(now, &mut backup, &mut clients, &by_addr, Some(i));
        let mut up = false;
        while let Some(e) = backup.poll_event() {
            up |= matches!(e, Event::ChildSaUp { .. });
        }
        let mut dropped = false;
        while let Some(e) = clients[i].poll_event() {
            dropped |= matches!(e, Event::IkeSaDeleted { .. });
        }
        done += (up && dropped && clients[i].len() == 1) as usize;
    }
    let cpu = thread_cpu().saturating_sub(cpu0);
    RecoveryReport {
        renegotiations: done,
        elapsed: start.elapsed(),
        cpu,
        per_cpu_sec: done as f64 / cpu.as_secs_f64().max(1e-9),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_recorded_sa_is_renegotiated() {
        let r = super::bench_recovery(30);
        assert_eq!(r.renegotiations, 30, "{r:?}");
    }
}
