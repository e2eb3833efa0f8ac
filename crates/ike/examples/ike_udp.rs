//! A minimal UDP driver for interop tests against real peers (strongSwan) in network
//! namespaces: binds UDP 500 and 4500 on one address, strips/adds the RFC 3948
//! non-ESP marker on 4500, runs one [`Endpoint`] and prints its events.
//!
//! ```text
//! ike_udp respond  10.99.0.2 any       gw@example     client@example PSK 203.0.113.10/32 192.168.77.0/24
//! ike_udp initiate 10.99.0.1 10.99.0.2 client@example gw@example     PSK 192.168.77.1/32 203.0.113.10/32
//! ```
//! `CERT_KEY=k.pem CERT=c.pem CA=ca.pem` switches to certificate auth.
//! `ACTIONS="rekey_child@5,rekey_ike@10,dpd@12,delete_ike@15"` runs commands that many
//! seconds after the first Child SA is up. `IKE=aes256gcm16-prfsha384-ecp384` and
//! `ESP=aes256-sha256` pick other proposals; `EXIT_AFTER=20` stops after that long.

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::sync::Arc;
use std::time::{Duration, Instant};

use plexgate_ike::config::{ChildConfig, Config, EspProposal, IkeProposal, PeerConfig};
use plexgate_ike::{Endpoint, Event, IkeSaId, SystemRng, TrafficSelector};

fn ts(s: &str) -> TrafficSelector {
    let (a, l) = s.split_once('/').unwrap_or((s, "32"));
    TrafficSelector::prefix(
        a.parse().expect("address"),
        l.parse().expect("prefix length"),
    )
}

fn ike_prop(s: &str) -> IkeProposal {
    match s {
        "aes256gcm16-prfsha384-ecp384" => IkeProposal::AES256GCM16_PRFSHA384_ECP384,
        "aes128gcm16-prfsha256-x25519" => IkeProposal::AES128GCM16_PRFSHA256_X25519,
        "aes256-sha512-modp2048" => IkeProposal {
            encr: 12,
            encr_bits: 256,
            integ: Some(14),
            prf: 7,
            dh: 14,
        },
        "aes256-sha384-ecp256" => IkeProposal {
            encr: 12,
            encr_bits: 256,
            integ: Some(13),
            prf: 6,
            dh: 19,
        },
        _ => IkeProposal::AES128_SHA256_X25519,
    }
}

fn esp_prop(s: &str) -> EspProposal {
    match s {
        "aes256-sha256" => EspProposal::AES256_SHA256,
        "aes256gcm16" => EspProposal::AES256GCM16,
        "chacha20poly1305" => EspProposal {
            encr: 28,
            encr_bits: 256,
            integ: None,
            esn: false,
            dh: None,
        },
        "aes128gcm16-esn" => EspProposal {
            esn: true,
            ..EspProposal::AES128GCM16
        },
        "aes128gcm16-x25519" => EspProposal {
            dh: Some(31),
            ..EspProposal::AES128GCM16
        },
        _ => EspProposal::AES128GCM16,
    }
}

fn main() {
    let a: Vec<String> = std::env::args().collect();
    if a.len() < 9 {
        eprintln!("usage: ike_udp respond|initiate LOCAL_IP REMOTE_IP|any LOCAL_ID REMOTE_ID PSK LOCAL_TS REMOTE_TS");
        std::process::exit(2);
    }
    let local_ip: IpAddr = a[2].parse().expect("local ip");
    let env = |k: &str| std::env::var(k).unwrap_or_default();
    let mut child = ChildConfig::new(
        "net",
        vec![ts(&a[7])],
        vec![ts(&a[8])],
        vec![esp_prop(&env("ESP"))],
    );
    if env("TRANSPORT") == "1" {
        child.mode = plexgate_ike::Mode::Transport;
    }
    let mut peer = PeerConfig::psk("peer", &a[4], &a[5], a[6].as_bytes(), child);
    peer.ike_proposals = vec![ike_prop(&env("IKE"))];
    if !env("CERT").is_empty() {
        // CERT_KEY=key.pem CERT=cert.pem CA=ca.pem: certificate auth instead of PSK.
        let credentials = plexgate_pki::LocalCredentials::load(env("CERT_KEY"), env("CERT"))
            .expect("credentials");
        let trust = plexgate_pki::TrustStore::from_files(&[env("CA")]).expect("CA");
        peer.auth = plexgate_ike::config::AuthConfig::Cert {
            credentials: Arc::new(credentials),
            trust: Arc::new(trust),
        };
    }
    peer.local_addr = Some(SocketAddr::new(local_ip, 500));
    peer.remote_addr =
        (a[3] != "any").then(|| SocketAddr::new(a[3].parse().expect("remote ip"), 500));
    peer.dpd = env("DPD").parse().ok().map(Duration::from_secs);
    let cfg = Arc::new(Config {
        peers: vec![peer],
        ..Config::default()
    });
    let mut ep = Endpoint::new(cfg, Box::new(SystemRng::new()));
    let s500 = UdpSocket::bind(SocketAddr::new(local_ip, 500)).expect("bind 500");
    let s4500 = UdpSocket::bind(SocketAddr::new(local_ip, 4500)).expect("bind 4500");
    s500.set_nonblocking(true).ok();
    s4500.set_nonblocking(true).ok();
    let start = Instant::now();
    if a[1] == "initiate" {
        ep.initiate(start, "peer", "net").expect("initiate");
    }
    let mut actions: Vec<(u64, String)> = env("ACTIONS")
        .split(',')
        .filter_map(|x| {
            x.split_once('@')
                .map(|(c, t)| (t.parse().unwrap_or(0), c.to_string()))
        })
        .collect();
    let exit_after = env("EXIT_AFTER").parse().unwrap_or(u64::MAX);
    let mut up_at: Option<Instant> = None;
    let mut ike: Option<IkeSaId> = None;
    let mut child_spi: Option<u32> = None;
    let mut buf = [0u8; 65536];
    loop {
        let now = Instant::now();
        if now.duration_since(start).as_secs() >= exit_after {
            println!("EXIT");
            return;
        }
        for (sock, marker) in [(&s500, false), (&s4500, true)] {
            while let Ok((n, from)) = sock.recv_from(&mut buf) {
                let d = &buf[..n];
                let d = if marker {
                    match d.strip_prefix(&[0, 0, 0, 0]) {
                        Some(x) => x,
                        None => continue, // ESP in UDP: not ours here
                    }
                } else {
                    d
                };
                ep.handle(now, sock.local_addr().expect("addr"), from, d);
            }
        }
        ep.handle_timeout(now);
        while let Some(t) = ep.poll_transmit() {
            let (sock, data) = if t.local.port() == 4500 || t.remote.port() == 4500 {
                let mut v = vec![0u8; 4];
                v.extend_from_slice(&t.payload);
                (&s4500, v)
            } else {
                (&s500, t.payload)
            };
            if let Err(e) = sock.send_to(&data, t.remote) {
                eprintln!("send: {e}");
            }
        }
        while let Some(e) = ep.poll_event() {
            match &e {
                Event::ChildSaUp { ike: i, child, .. } => {
                    up_at.get_or_insert(now);
                    ike = Some(*i);
                    child_spi = Some(child.spi_in);
                    println!("EVENT ChildSaUp {child:?}");
                }
                Event::ChildSaRekeyed { ike: i, new, .. } => {
                    ike = Some(*i);
                    child_spi = Some(new.spi_in);
                    println!("EVENT {e:?}");
                }
                Event::IkeSaRekeyed { new, .. } => {
                    ike = Some(*new);
                    println!("EVENT IkeSaRekeyed {e:?}");
                }
                _ => println!("EVENT {e:?}"),
            }
        }
        if let Some(t0) = up_at {
            let el = now.duration_since(t0).as_secs();
            actions.retain(|(at, cmd)| {
                if *at > el {
                    return true;
                }
                let r = match (cmd.as_str(), ike, child_spi) {
                    ("rekey_child", _, Some(s)) => ep.rekey_child(now, s),
                    ("rekey_ike", Some(i), _) => ep.rekey_ike(now, i),
                    ("dpd", Some(i), _) => ep.dpd(now, i),
                    ("delete_child", _, Some(s)) => ep.delete_child(now, s),
                    ("delete_ike", Some(i), _) => ep.delete_ike(now, i),
                    ("create_child", Some(i), _) => ep.create_child(now, i, "net"),
                    _ => Ok(()),
                };
                println!("ACTION {cmd}: {r:?}");
                false
            });
            if actions.is_empty() && env("STATUS") == "1" {
                println!("STATUS {}", serde_json_like(&ep, now));
            }
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

fn serde_json_like(ep: &Endpoint, now: Instant) -> String {
    format!("{:?}", ep.sas(now))
}
