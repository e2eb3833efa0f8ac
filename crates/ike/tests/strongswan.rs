//! Interop with a real strongSwan 5.9 (charon + kernel-libipsec) in network
//! namespaces: strongSwan initiates to our responder, we initiate to strongSwan, with
//! rekeys and deletes from both sides. Needs root, `ip` and `/usr/lib/ipsec/charon`
//! (Debian `charon-systemd`/`strongswan-charon`, `strongswan-swanctl`); fails
//! loudly otherwise. The recipe is in
//! `docs/testing.md` (charon in a namespace, as `crates/lab` runs it).

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use plexgate_ike::config::{ChildConfig, Config, EspProposal, IkeProposal, PeerConfig};
use plexgate_ike::{Endpoint, Event, SystemRng, TrafficSelector};

const CHARON: &str = "/usr/lib/ipsec/charon";
const PSK: &str = "interop-secret-0123456789";

fn sh(cmd: &str) -> (bool, String) {
    let out = Command::new("sh").arg("-c").arg(cmd).output().expect("sh");
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

/// Two namespaces joined by a veth pair, charon running in the first; removed on drop.
struct Lab {
    sw: String,
    pg: String,
    dir: PathBuf,
    charon: Option<Child>,
}

impl Drop for Lab {
    fn drop(&mut self) {
        if let Some(mut c) = self.charon.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        sh(&format!(
            "ip netns del {} 2>/dev/null; ip netns del {} 2>/dev/null",
            self.sw, self.pg
        ));
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

const SWANCTL: &str = r#"
connections {
  c {
    version = 2
    local_addrs = 10.232.0.1
    remote_addrs = 10.232.0.2
    proposals = aes128-sha256-x25519,aes256gcm16-prfsha384-ecp384
    rekey_time = 0
    local {
      auth = psk
      id = client@example
    }
    remote {
      auth = psk
      id = gw@example
    }
    children {
      net {
        local_ts = 192.168.78.1/32
        remote_ts = 203.0.113.20/32
        esp_proposals = aes128gcm16
        rekey_time = 0
      }
    }
  }
  g {
    version = 2
    local_addrs = 10.232.0.1
    remote_addrs = %any
    proposals = aes256-sha384-ecp256,aes128-sha256-x25519
    rekey_time = 0
    local {
      auth = psk
      id = gw2@example
    }
    remote {
      auth = psk
      id = client2@example
    }
    children {
      gnet {
        local_ts = 192.168.78.0/24
        remote_ts = 203.0.113.0/24
        esp_proposals = aes256gcm16,aes128gcm16
        rekey_time = 0
      }
    }
  }
}
secrets {
  ike-1 {
    id-1 = client@example
    id-2 = gw@example
    secret = "interop-secret-0123456789"
  }
  ike-2 {
    id-1 = client2@example
    id-2 = gw2@example
    secret = "interop-secret-0123456789"
  }
}
"#;

impl Lab {
    fn start() -> Option<Lab> {
        let root = sh("id -u").1.trim() == "0";
        if !root || !Path::new(CHARON).exists() || !sh("command -v swanctl && command -v ip").0 {
            // A missing peer is a failure, not a pass: run scripts/setup.sh.
            panic!(
                "strongSwan interop needs root, ip, {CHARON} and swanctl (run scripts/setup.sh)"
            );
        }
        let id = std::process::id();
        let dir = std::env::temp_dir().join(format!("plexgate-ike-sw-{id}"));
        std::fs::create_dir_all(dir.join("run")).ok()?;
        let lab = Lab {
            sw: format!("pgike-sw-{id}"),
            pg: format!("pgike-pg-{id}"),
            dir,
            charon: None,
        };
        let (sw, pg) = (&lab.sw, &lab.pg);
        let v = format!("pgv{}", id % 100_000);
        let setup = format!(
            "ip netns add {sw} && ip netns add {pg} && ip link add {v}a type veth peer name {v}b && \
             ip link set {v}a netns {sw} && ip link set {v}b netns {pg} && \
             ip -n {sw} addr add 10.232.0.1/24 dev {v}a && ip -n {pg} addr add 10.232.0.2/24 dev {v}b && \
             ip -n {sw} link set {v}a up && ip -n {pg} link set {v}b up && \
             ip -n {sw} link set lo up && ip -n {pg} link set lo up && \
             ip -n {sw} addr add 192.168.78.1/32 dev lo"
        );
        let (ok, text) = sh(&setup);
        assert!(ok, "namespace setup failed: {text}");
        let d = lab.dir.display();
        std::fs::write(
            lab.dir.join("strongswan.conf"),
            format!(
                "charon {{\n  piddir = {d}/run\n  install_routes = no\n  retransmit_tries = 3\n  plugins {{\n    vici {{\n      socket = unix://{d}/run/charon.vici\n    }}\n    kernel-libipsec {{\n      load = yes\n    }}\n    bypass-lan {{\n      load = no\n    }}\n    forecast {{\n      load = no\n    }}\n    farp {{\n      load = no\n    }}\n    dhcp {{\n      load = no\n    }}\n    ha {{\n      load = no\n    }}\n  }}\n  filelog {{\n    stderr {{\n      default = 1\n    }}\n  }}\n}}\n"
            ),
        )
        .ok()?;
        std::fs::write(lab.dir.join("swanctl.conf"), SWANCTL).ok()?;
        let log = std::fs::File::create(lab.dir.join("charon.log")).ok()?;
        let child = Command::new("ip")
            .args(["netns", "exec", sw, "unshare", "-m", "sh", "-c"])
            .arg(format!(
                "mount -t tmpfs none /run && mkdir -p /run/netns && exec env STRONGSWAN_CONF={d}/strongswan.conf {CHARON}"
            ))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .ok()?;
        let mut lab = lab;
        lab.charon = Some(child);
        let vici = lab.dir.join("run/charon.vici");
        let t0 = Instant::now();
        while !vici.exists() && t0.elapsed() < Duration::from_secs(10) {
            std::thread::sleep(Duration::from_millis(100));
        }
        let (ok, text) = lab.swanctl("--load-all --file", Some(&lab.dir.join("swanctl.conf")));
        assert!(ok, "swanctl --load-all: {text}");
        Some(lab)
    }

    fn swanctl(&self, args: &str, file: Option<&Path>) -> (bool, String) {
        let f = file.map(|p| p.display().to_string()).unwrap_or_default();
        sh(&format!(
            "timeout 15 swanctl {args} {f} --uri unix://{}/run/charon.vici",
            self.dir.display()
        ))
    }

    fn charon_log(&self) -> String {
        std::fs::read_to_string(self.dir.join("charon.log")).unwrap_or_default()
    }
}

/// What the test asks the endpoint thread to do.
enum Cmd {
    RekeyChild,
    RekeyIke,
    DeleteIke,
    Stop,
}

/// Run `ep` on UDP 500/4500 of `local` inside namespace `ns` on its own thread.
fn spawn_endpoint(
    ns: String,
    local: IpAddr,
    mut ep: Endpoint,
    initiate: Option<(&'static str, &'static str)>,
) -> (
    mpsc::Sender<Cmd>,
    mpsc::Receiver<Event>,
    std::thread::JoinHandle<()>,
) {
    let (ctx, crx) = mpsc::channel::<Cmd>();
    let (etx, erx) = mpsc::channel::<Event>();
    let h = std::thread::spawn(move || {
        let f = std::fs::File::open(format!("/var/run/netns/{ns}")).expect("netns file");
        use std::os::fd::AsRawFd;
        // SAFETY: setns on this thread only; the fd is valid for the call.
        let rc = unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) };
        assert_eq!(rc, 0, "setns");
        let s500 = UdpSocket::bind(SocketAddr::new(local, 500)).expect("bind 500");
        let s4500 = UdpSocket::bind(SocketAddr::new(local, 4500)).expect("bind 4500");
        s500.set_nonblocking(true).ok();
        s4500.set_nonblocking(true).ok();
        if let Some((peer, child)) = initiate {
            ep.initiate(Instant::now(), peer, child).expect("initiate");
        }
        let mut ike = None;
        let mut spi = None;
        let mut buf = [0u8; 65536];
        loop {
            let now = Instant::now();
            match crx.try_recv() {
                Ok(Cmd::Stop) | Err(mpsc::TryRecvError::Disconnected) => return,
                Ok(Cmd::RekeyChild) => ep
                    .rekey_child(now, spi.expect("child"))
                    .expect("rekey child"),
                Ok(Cmd::RekeyIke) => ep.rekey_ike(now, ike.expect("ike")).expect("rekey ike"),
                Ok(Cmd::DeleteIke) => ep.delete_ike(now, ike.expect("ike")).expect("delete ike"),
                Err(mpsc::TryRecvError::Empty) => {}
            }
            for (sock, marker) in [(&s500, false), (&s4500, true)] {
                while let Ok((n, from)) = sock.recv_from(&mut buf) {
                    let d = &buf[..n];
                    let d = if marker {
                        match d.strip_prefix(&[0, 0, 0, 0]) {
                            Some(x) => x,
                            None => continue,
                        }
                    } else {
                        d
                    };
                    ep.handle(now, sock.local_addr().expect("addr"), from, d);
                }
            }
            ep.handle_timeout(now);
            while let Some(t) = ep.poll_transmit() {
                // RFC 3948 §2.2: IKE on 4500 carries the four-byte non-ESP marker.
                if t.local.port() == 4500 || t.remote.port() == 4500 {
                    let data = [&[0u8; 4][..], &t.payload].concat();
                    s4500.send_to(&data, t.remote).ok();
                } else {
                    s500.send_to(&t.payload, t.remote).ok();
                }
            }
            while let Some(e) = ep.poll_event() {
                match &e {
                    Event::ChildSaUp { ike: i, child, .. } => {
                        ike = Some(*i);
                        spi = Some(child.spi_in);
                    }
                    Event::ChildSaRekeyed { new, .. } => spi = Some(new.spi_in),
                    Event::IkeSaRekeyed { new, .. } => ike = Some(*new),
                    _ => {}
                }
                let _ = etx.send(e);
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    });
    (ctx, erx, h)
}

fn wait_for(
    rx: &mpsc::Receiver<Event>,
    seen: &mut Vec<Event>,
    what: &str,
    f: impl Fn(&Event) -> bool,
) -> Event {
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(15) {
        if let Ok(e) = rx.recv_timeout(Duration::from_millis(100)) {
            seen.push(e.clone());
            if f(&e) {
                return e;
            }
        }
    }
    panic!("timed out waiting for {what}; events: {seen:#?}");
}

fn peer(
    name: &str,
    me: &str,
    them: &str,
    local: &str,
    remote: Option<&str>,
    lts: TrafficSelector,
    rts: TrafficSelector,
) -> PeerConfig {
    let child = ChildConfig::new(
        "net",
        vec![lts],
        vec![rts],
        vec![EspProposal::AES128GCM16, EspProposal::AES256GCM16],
    );
    let mut p = PeerConfig::psk(name, me, them, PSK.as_bytes(), child);
    p.ike_proposals = vec![
        IkeProposal::AES256GCM16_PRFSHA384_ECP384,
        IkeProposal::AES128_SHA256_X25519,
    ];
    p.local_addr = Some(local.parse().unwrap());
    p.remote_addr = remote.map(|r| r.parse().unwrap());
    p
}

#[test]
fn strongswan_both_directions() {
    let lab = Lab::start().expect("setting up the strongSwan lab failed");
    let gw = peer(
        "client",
        "gw@example",
        "client@example",
        "10.232.0.2:500",
        None,
        TrafficSelector::host("203.0.113.20".parse().unwrap()),
        TrafficSelector::prefix("192.168.78.0".parse().unwrap(), 24),
    );
    let client = peer(
        "gw2",
        "client2@example",
        "gw2@example",
        "10.232.0.2:500",
        Some("10.232.0.1:500"),
        TrafficSelector::host("203.0.113.20".parse().unwrap()),
        TrafficSelector::prefix("192.168.78.0".parse().unwrap(), 24),
    );
    // The gateway side accepts only ECP-384: strongSwan (x25519 first) gets
    // INVALID_KE_PAYLOAD and retries. As initiator we send an ECP-384 KE and
    // strongSwan, preferring x25519, asks us to retry.
    let mut gw = gw;
    gw.ike_proposals = vec![IkeProposal::AES256GCM16_PRFSHA384_ECP384];
    let gw_cfg = Arc::new(Config {
        peers: vec![gw],
        ..Config::default()
    });
    let client_cfg = Arc::new(Config {
        peers: vec![client],
        ..Config::default()
    });

    // 1. strongSwan initiates; we answer INVALID_KE (we want ECP-384) and narrow.
    let ep = Endpoint::new(gw_cfg, Box::new(SystemRng::new()));
    let (cmd, ev, h) = spawn_endpoint(lab.pg.clone(), "10.232.0.2".parse().unwrap(), ep, None);
    let mut seen = Vec::new();
    let (ok, text) = lab.swanctl("--initiate --child net", None);
    assert!(
        ok,
        "strongSwan could not connect: {text}\n{}",
        lab.charon_log()
    );
    assert!(
        text.contains("AES_GCM_16_256/PRF_HMAC_SHA2_384/ECP_384"),
        "{text}"
    );
    let up = wait_for(&ev, &mut seen, "ChildSaUp", |e| {
        matches!(e, Event::ChildSaUp { .. })
    });
    let Event::ChildSaUp { child, .. } = up else {
        unreachable!()
    };
    assert!(
        child.udp_encap,
        "kernel-libipsec fakes NAT-D: UDP encapsulation"
    );
    assert_eq!(
        child.ts_remote,
        vec![TrafficSelector::host("192.168.78.1".parse().unwrap())]
    );
    // Rekeys from our side, then from strongSwan's.
    cmd.send(Cmd::RekeyChild).unwrap();
    wait_for(
        &ev,
        &mut seen,
        "our Child SA rekey",
        |e| matches!(e, Event::ChildSaDeleted { spi_in, .. } if *spi_in == child.spi_in),
    );
    cmd.send(Cmd::RekeyIke).unwrap();
    wait_for(&ev, &mut seen, "our IKE SA rekey", |e| {
        matches!(e, Event::IkeSaRekeyed { .. })
    });
    let (ok, text) = lab.swanctl("--rekey --child net", None);
    assert!(ok, "{text}");
    wait_for(&ev, &mut seen, "strongSwan's Child SA rekey", |e| {
        matches!(e, Event::ChildSaRekeyed { .. })
    });
    let (ok, text) = lab.swanctl("--rekey --ike c", None);
    assert!(ok, "{text}");
    wait_for(&ev, &mut seen, "strongSwan's IKE SA rekey", |e| {
        matches!(e, Event::IkeSaRekeyed { .. })
    });
    let (ok, text) = lab.swanctl("--list-sas", None);
    assert!(
        ok && text.contains("ESTABLISHED") && text.contains("INSTALLED"),
        "{text}"
    );
    let (ok, text) = lab.swanctl("--terminate --ike c", None);
    assert!(ok, "{text}");
    wait_for(
        &ev,
        &mut seen,
        "IKE SA deleted by strongSwan",
        |e| matches!(e, Event::IkeSaDeleted { reason, .. } if reason.contains("peer")),
    );
    cmd.send(Cmd::Stop).unwrap();
    h.join().unwrap();

    // 2. We initiate to strongSwan's responder config `g`.
    let ep = Endpoint::new(client_cfg, Box::new(SystemRng::new()));
    let (cmd, ev, h) = spawn_endpoint(
        lab.pg.clone(),
        "10.232.0.2".parse().unwrap(),
        ep,
        Some(("gw2", "net")),
    );
    let mut seen = Vec::new();
    let up = wait_for(&ev, &mut seen, "IkeSaUp as initiator", |e| {
        matches!(e, Event::IkeSaUp { .. })
    });
    // Our first KE was ECP-384; x25519 in the end means INVALID_KE_PAYLOAD worked.
    let Event::IkeSaUp { record, .. } = up else {
        unreachable!()
    };
    assert_eq!(record.proposal, IkeProposal::AES128_SHA256_X25519);
    wait_for(&ev, &mut seen, "ChildSaUp as initiator", |e| {
        matches!(e, Event::ChildSaUp { .. })
    });
    let (_, text) = lab.swanctl("--list-sas", None);
    assert!(
        text.contains("gw2@example") && text.contains("client2@example"),
        "{text}"
    );
    cmd.send(Cmd::RekeyChild).unwrap();
    wait_for(&ev, &mut seen, "Child SA rekey as initiator", |e| {
        matches!(e, Event::ChildSaRekeyed { .. })
    });
    cmd.send(Cmd::DeleteIke).unwrap();
    wait_for(&ev, &mut seen, "IKE SA deleted by us", |e| {
        matches!(e, Event::IkeSaDeleted { .. })
    });
    cmd.send(Cmd::Stop).unwrap();
    h.join().unwrap();
    let (_, text) = lab.swanctl("--list-sas", None);
    assert!(
        !text.contains("ESTABLISHED"),
        "strongSwan still has an SA: {text}"
    );
}
