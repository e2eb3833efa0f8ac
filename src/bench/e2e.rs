//! `plexgate bench e2e`: iperf3 through a namespace topology (client site — gateway
//! — target) with strongSwan at both tunnel ends, and with plexgate at both tunnel
//! ends, in one run.
//!
//! plexgate at both ends: a plexgate "client-site gateway" in the client namespace
//! (initiator; its SPD protects `192.168.77.1 → 10.20.0.0/24`, routed into its TUN
//! at start) and a plexgate gateway in the gateway namespace (responder; decrypted
//! packets for the target subnet go into the kernel through its TUN and are
//! forwarded to the target; replies come back into the TUN by the Child SA's
//! route). Same IKE (aes128-sha256-x25519) and ESP (aes128gcm16) as the strongSwan
//! baseline. Measured twice: with ESP in UDP (`encap = "udp"`, which is what
//! strongSwan's kernel-libipsec always uses here, and what plexgate batches with
//! UDP GSO/GRO) and with plain ESP (IP protocol 50, raw sockets, no offload).
//!
//! A third plexgate run measures the product's own path: the tunnel ends at the
//! gateway for a DVIPA, and the gateway distributes the connections over GRE to
//! `plexgate target`, where iperf3 listens on the DVIPA.
//!
//! The last run, `no_tunnel`, is the reference: the same topology with plain
//! kernel forwarding and no IPsec at all, i.e. what this machine can carry
//! through three namespaces; every run is also shown as a share of it.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use plexgate_lab::site::{
    CLIENT_INNER, CLIENT_NET, CLIENT_OUTER, DVIPA, GATEWAY_INNER, GATEWAY_OUTER, PSK, TARGET_ADDR,
    TARGET_NET,
};
use plexgate_lab::traffic::{iperf3_client, IperfServer};

use crate::site_template::{DvipaSite, TargetLink};

/// iperf3's port, distributed on the DVIPA in the distributed run.
const IPERF_PORT: u16 = 5201;
/// Cluster key of the distributed run's site (bench only).
const CLUSTER_KEY: &[u8] = b"plexgate-bench-e2e-cluster-key-0123456789";
use plexgate_lab::{Endpoint, LabDir, Ready, Site, SiteSpec};
use serde_json::{json, Value};

type BoxError = Box<dyn std::error::Error>;

/// One implementation's figures.
#[derive(Debug, Clone, Copy)]
struct Figures {
    gbps_1: f64,
    gbps_8: f64,
    /// Received packets per second, iperf3 UDP with 64-byte payloads.
    pps_64: f64,
}

/// The runs of `plexgate bench e2e`, in order; `--only` picks one.
pub const RUNS: [&str; 5] = [
    "strongswan",
    "plexgate",
    "plexgate_esp",
    "plexgate_distributed",
    "no_tunnel",
];

/// `plexgate bench e2e`; `only` restricts it to one of [`RUNS`] (ratios then
/// need the strongSwan run and are left out).
pub fn e2e(as_json: bool, seconds: u32, only: Option<&str>) -> Result<(), BoxError> {
    if let Some(o) = only {
        if !RUNS.contains(&o) {
            return Err(format!("--only {o:?}: not one of {}", RUNS.join(", ")).into());
        }
    }
    plexgate_lab::check_prerequisites()?;
    let d = Duration::from_secs(u64::from(seconds.max(1)));
    let mut results: Vec<(&str, Figures)> = Vec::new();
    for run in RUNS {
        if only.is_some_and(|o| o != run) {
            continue;
        }
        let f = match run {
            "strongswan" => {
                let site = Site::build(&SiteSpec::strongswan())?;
                site.connect()?;
                measure(&site, d)?
            }
            // ESP in UDP, as strongSwan's kernel-libipsec always does: like for like.
            "plexgate" => plexgate_both_ends(d, true)?,
            // Plain ESP (IP protocol 50), which has no segmentation offload.
            "plexgate_esp" => plexgate_both_ends(d, false)?,
            // The ceiling: the same namespaces, kernel forwarding, no tunnel.
            "no_tunnel" => {
                let site = Site::build(&SiteSpec {
                    client: Endpoint::Nothing,
                    gateway: Endpoint::Nothing,
                    target: Endpoint::Nothing,
                    dvipa_on_target: false,
                })?;
                site.ns("client")?
                    .route_via(TARGET_NET, &GATEWAY_OUTER.to_string())?;
                site.ns("gateway")?
                    .route_via(CLIENT_NET, &CLIENT_OUTER.to_string())?;
                measure(&site, d)?
            }
            // The product's path: distributed over GRE to a plexgate target (no
            // strongSwan equivalent; its ratio is to strongSwan's forwarded path).
            _ => {
                let (gbps_1, gbps_8) = plexgate_distributed(d)?;
                Figures {
                    gbps_1,
                    gbps_8,
                    pps_64: f64::NAN,
                }
            }
        };
        results.push((run, f));
    }
    let base = results
        .iter()
        .find(|(r, _)| *r == "strongswan")
        .map(|(_, f)| *f);
    let ratio = |a: f64, b: Option<f64>| match b {
        Some(b) if b > 0.0 && a.is_finite() => Some(round(a / b)),
        _ => None,
    };
    let ceiling = results
        .iter()
        .find(|(r, _)| *r == "no_tunnel")
        .map(|(_, f)| *f);
    let mut rows = Vec::new();
    let mut pps_rows = Vec::new();
    for (imp, f) in &results {
        for (streams, v, b, c) in [
            (
                1,
                f.gbps_1,
                base.map(|b| b.gbps_1),
                ceiling.map(|c| c.gbps_1),
            ),
            (
                8,
                f.gbps_8,
                base.map(|b| b.gbps_8),
                ceiling.map(|c| c.gbps_8),
            ),
        ] {
            rows.push((*imp, streams, v, ratio(v, b), ratio(v, c)));
        }
        if f.pps_64.is_finite() {
            pps_rows.push((
                *imp,
                f.pps_64,
                ratio(f.pps_64, base.map(|b| b.pps_64)),
                ratio(f.pps_64, ceiling.map(|c| c.pps_64)),
            ));
        }
    }
    let show = |r: Option<f64>| r.map_or("-".to_string(), |r| format!("{r:.2}"));
    if as_json {
        for (imp, streams, gbps, r, c) in rows {
            println!(
                "{}",
                json!({"implementation": imp, "test": "tcp", "streams": streams, "gbps": round(gbps), "ratio": r, "of_no_tunnel": c, "seconds": d.as_secs()})
            );
        }
        for (imp, pps, r, c) in pps_rows {
            println!(
                "{}",
                json!({"implementation": imp, "test": "udp_64", "streams": 1, "pps": pps.round(), "ratio": r, "of_no_tunnel": c, "seconds": d.as_secs()})
            );
        }
    } else {
        println!("iperf3 client site (192.168.77.1) → tunnel → gateway → target (10.20.0.2), {} s per run", d.as_secs());
        println!("IKE aes128-sha256-x25519, ESP aes128gcm16; ratio = plexgate / strongSwan (kernel-libipsec)");
        println!("plexgate: ESP in UDP (encap = \"udp\", UDP GSO/GRO), as strongSwan here; plexgate_esp: plain ESP (IP protocol 50)");
        println!("plexgate_distributed: ESP in UDP to the DVIPA, distributed over GRE to `plexgate target` (iperf3 on the DVIPA)");
        println!("no_tunnel: the same namespaces with kernel forwarding and no IPsec (the ceiling; \"of no_tunnel\" = share of it)");
        println!(
            "{:<34} {:>7} {:>10} {:>7} {:>12}",
            "implementation (both tunnel ends)", "streams", "Gbit/s", "ratio", "of no_tunnel"
        );
        for (imp, streams, gbps, r, c) in rows {
            println!(
                "{imp:<34} {streams:>7} {gbps:>10.3} {:>7} {:>12}",
                show(r),
                show(c)
            );
        }
        println!(
            "{:<34} {:>7} {:>10} {:>7} {:>12}",
            "UDP, 64-byte payloads", "", "kpps rx", "ratio", "of no_tunnel"
        );
        for (imp, pps, r, c) in pps_rows {
            println!(
                "{imp:<34} {:>7} {:>10.1} {:>7} {:>12}",
                1,
                pps / 1e3,
                show(r),
                show(c)
            );
        }
    }
    Ok(())
}

fn round(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// TCP with 1 and 8 streams, then UDP 64-byte packets, client → target.
fn measure(site: &Site, d: Duration) -> Result<Figures, BoxError> {
    let (gbps_1, gbps_8) = site.throughput_1_and_8(IpAddr::V4(TARGET_ADDR), d)?;
    let pps_64 = udp_pps(site, d)?;
    Ok(Figures {
        gbps_1,
        gbps_8,
        pps_64,
    })
}

/// `iperf3 -u -l 64 -b 0` from the client's inner address to the target; packets
/// per second that arrived (sent minus lost).
fn udp_pps(site: &Site, d: Duration) -> Result<f64, BoxError> {
    let target = IpAddr::V4(TARGET_ADDR);
    let srv = IperfServer::start(site.ns("target")?, target, 5202)?;
    let (s, p, secs, b) = (
        target.to_string(),
        srv.port.to_string(),
        d.as_secs().to_string(),
        CLIENT_INNER.to_string(),
    );
    let argv = [
        "iperf3",
        "-c",
        &s,
        "-p",
        &p,
        "-u",
        "-l",
        "64",
        "-b",
        "0",
        "-t",
        &secs,
        "-J",
        "--connect-timeout",
        "5000",
        "-B",
        &b,
    ];
    let out = site
        .ns("client")?
        .exec_timeout(&argv, d + Duration::from_secs(20))?;
    drop(srv);
    udp_pps_from_json(&out.stdout)
        .map_err(|e| format!("{}: {e}; stderr: {}", argv.join(" "), out.stderr.trim()).into())
}

/// Received packets per second from iperf3's UDP `-J` output.
fn udp_pps_from_json(text: &str) -> Result<f64, String> {
    let v: Value = serde_json::from_str(text).map_err(|e| format!("iperf3 JSON: {e}"))?;
    if let Some(e) = v["error"].as_str() {
        return Err(format!("iperf3 reported: {e}"));
    }
    let sum = &v["end"]["sum"];
    let (Some(pk), Some(lost), Some(secs)) = (
        sum["packets"].as_f64(),
        sum["lost_packets"].as_f64(),
        sum["seconds"].as_f64(),
    ) else {
        return Err("no end.sum.packets/lost_packets/seconds".into());
    };
    if secs <= 0.0 {
        return Err("iperf3 ran for 0 s".into());
    }
    Ok(((pk - lost).max(0.0)) / secs)
}

fn write_secret(path: &Path, data: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, data)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
}

/// Policy of the plexgate client-site gateway (initiator) protecting traffic to
/// `remote` (a prefix); `udp`: ESP in UDP.
fn client_policy(udp: bool, remote: &str) -> String {
    let encap = if udp { "udp" } else { "auto" };
    format!(
        r#"[site]
name = "e2e-client"
gateway_vipas = ["{CLIENT_OUTER}"]

[[site.interface]]
name = "uplink"
address = "{CLIENT_OUTER}/24"

[[peer]]
name = "gw"
remote_address = "{GATEWAY_OUTER}"
local_id = "client@plexgate.lab"
remote_id = "gw@plexgate.lab"
auth = "psk"
psk_file = "psk"
proposals = ["aes128-sha256-x25519"]
encap = "{encap}"

  [[peer.child]]
  name = "site"
  local_ts = ["{CLIENT_INNER}/32"]
  remote_ts = ["{remote}"]
  esp_proposals = ["aes128gcm16"]

[[spd]]
name = "tunnel"
direction = "both"
local = "{CLIENT_INNER}"
remote = "{remote}"
action = "protect"
peer = "gw"
child = "site"
"#
    )
}

/// Policy of the plexgate gateway (responder) in front of the target subnet.
fn gateway_policy() -> String {
    format!(
        r#"[site]
name = "e2e-gw"
gateway_vipas = ["{GATEWAY_OUTER}"]

[[site.interface]]
name = "uplink"
address = "{GATEWAY_OUTER}/24"

[[peer]]
name = "client"
remote_address = "any"
local_id = "gw@plexgate.lab"
remote_id = "client@plexgate.lab"
auth = "psk"
psk_file = "psk"
proposals = ["aes128-sha256-x25519"]

  [[peer.child]]
  name = "site"
  local_ts = ["{TARGET_NET}"]
  remote_ts = ["{CLIENT_NET}"]
  esp_proposals = ["aes128gcm16"]

[[spd]]
name = "tunnel"
direction = "both"
local = "{TARGET_NET}"
remote = "{CLIENT_NET}"
action = "protect"
peer = "client"
child = "site"
"#
    )
}

fn ctl(path: &Path, req: &Value) -> Result<Value, BoxError> {
    Ok(crate::ctl::request(path, req)?)
}

fn child_sas(status: &Value) -> usize {
    status["child_sas"].as_array().map_or(0, Vec::len)
}

/// Child SAs of a status reply that carry ESP in UDP.
fn udp_encap_sas(status: &Value) -> usize {
    status["child_sas"]
        .as_array()
        .map_or(0, |v| v.iter().filter(|s| s["udp_encap"] == true).count())
}

/// `plexgate run` (or `target`) argv for the running binary.
fn plexgate_argv(args: &[&str]) -> Result<Vec<String>, BoxError> {
    let exe = std::env::current_exe()?;
    let exe = exe.to_str().ok_or("binary path is not UTF-8")?.to_string();
    Ok(std::iter::once(exe)
        .chain(args.iter().map(|s| s.to_string()))
        .collect())
}

/// A site with plexgate at both tunnel ends, the tunnel up.
struct PlexgateSite {
    site: Site,
    _dir: LabDir,
    gctl: PathBuf,
}

impl PlexgateSite {
    /// Start the client-site gateway (policy text `client`), the gateway (policy
    /// file `gateway`) and the target command, initiate from the client and wait
    /// for the Child SAs at both ends (ESP in UDP when `udp`).
    fn up(
        dir: LabDir,
        client: &str,
        gateway: &Path,
        target: Option<Vec<String>>,
        udp: bool,
    ) -> Result<PlexgateSite, BoxError> {
        let cpol = dir.join("client.toml");
        std::fs::write(&cpol, client)?;
        let (cctl, gctl) = (dir.join("client.sock"), dir.join("gateway.sock"));
        let run = |pol: &Path, sock: &Path| {
            plexgate_argv(&[
                "run",
                "--policy",
                &pol.display().to_string(),
                "--ctl",
                &sock.display().to_string(),
            ])
        };
        let spec = SiteSpec {
            client: Endpoint::Command {
                argv: run(&cpol, &cctl)?,
                ready: Ready::UdpPort(500),
            },
            gateway: Endpoint::Command {
                argv: run(gateway, &gctl)?,
                ready: Ready::UdpPort(500),
            },
            target: match target {
                Some(argv) => Endpoint::Command {
                    argv,
                    ready: Ready::Immediately,
                },
                None => Endpoint::Nothing,
            },
            dvipa_on_target: false,
        };
        let site = Site::build(&spec)?;
        let s = PlexgateSite {
            site,
            _dir: dir,
            gctl,
        };
        // Decrypted packets enter each kernel through a TUN.
        s.site.ns("gateway")?.disable_rp_filter()?;
        let up = (|| -> Result<(), BoxError> {
            // Initiate from the client end (the control socket comes up just after
            // the IKE sockets).
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                match ctl(
                    &cctl,
                    &json!({"cmd": "initiate", "peer": "gw", "child": "site"}),
                ) {
                    Ok(v) if v["ok"] == true => break,
                    Ok(v) => return Err(format!("initiate: {v}").into()),
                    Err(e) if Instant::now() > deadline => {
                        return Err(format!("client control socket: {e}").into())
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(100)),
                }
            }
            let deadline = Instant::now() + Duration::from_secs(15);
            loop {
                let c = ctl(&cctl, &json!({"cmd": "status"}))
                    .map(|s| child_sas(&s))
                    .unwrap_or(0);
                let g = ctl(&s.gctl, &json!({"cmd": "status"}))
                    .map(|s| child_sas(&s))
                    .unwrap_or(0);
                if c >= 2 && g >= 2 {
                    // The SAs must carry what this run claims to measure.
                    let encap =
                        ctl(&s.gctl, &json!({"cmd": "status"})).map(|s| udp_encap_sas(&s))?;
                    if (encap > 0) != udp {
                        return Err(format!(
                            "wanted {}, but the gateway has {encap} UDP-encapsulated Child SAs",
                            if udp { "ESP in UDP" } else { "plain ESP" }
                        )
                        .into());
                    }
                    return Ok(());
                }
                if Instant::now() > deadline {
                    return Err(format!(
                        "Child SA not installed at both ends after 15 s (client {c}, gateway {g} SAs)"
                    )
                    .into());
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        })();
        match up {
            Ok(()) => Ok(s),
            Err(e) => {
                Err(format!("plexgate at both ends: tunnel not up: {e}\n{}", s.logs()).into())
            }
        }
    }

    fn logs(&self) -> String {
        let l = |r: &plexgate_lab::Running| r.process().map(|p| p.log()).unwrap_or_default();
        format!(
            "client plexgate log:\n{}\ngateway plexgate log:\n{}\ntarget log:\n{}",
            l(&self.site.client),
            l(&self.site.gateway),
            l(&self.site.target)
        )
    }
}

/// plexgate at both tunnel ends (ESP in UDP when `udp`), the gateway forwarding
/// to the target subnet through its kernel; measure.
fn plexgate_both_ends(d: Duration, udp: bool) -> Result<Figures, BoxError> {
    let dir = LabDir::new("bench-e2e")?;
    write_secret(&dir.join("psk"), PSK.as_bytes())?;
    let gpol = dir.join("gateway.toml");
    std::fs::write(&gpol, gateway_policy())?;
    let s = PlexgateSite::up(dir, &client_policy(udp, TARGET_NET), &gpol, None, udp)?;
    s.site
        .ns("client")?
        .wait_ping(
            &TARGET_ADDR.to_string(),
            Some(&CLIENT_INNER.to_string()),
            Duration::from_secs(10),
        )
        .map_err(|e| format!("ping through the tunnel: {e}\n{}", s.logs()))?;
    measure(&s.site, d).map_err(|e| format!("plexgate at both ends: {e}\n{}", s.logs()).into())
}

/// The product's own path: the client's tunnel ends at the gateway for the DVIPA,
/// whose connections the gateway distributes over GRE to `plexgate target` (one
/// target here), where iperf3 listens on the DVIPA. TCP with 1 and 8 streams.
fn plexgate_distributed(d: Duration) -> Result<(f64, f64), BoxError> {
    let dir = LabDir::new("bench-e2e-dist")?;
    let mut site = DvipaSite::new("e2e-dist", GATEWAY_OUTER, DVIPA);
    site.gateway_id = "gw@plexgate.lab".into();
    site.client_id = "client@plexgate.lab".into();
    site.ike_proposals = vec!["aes128-sha256-x25519".into()];
    site.client_net = CLIENT_NET.into();
    site.ports = vec![IPERF_PORT];
    site.targets = vec![TargetLink::new("t1", "target", GATEWAY_INNER)];
    let gpol = site.write(dir.path(), PSK.as_bytes(), CLUSTER_KEY)?;
    let target = plexgate_argv(&[
        "target",
        "--policy",
        &gpol.display().to_string(),
        "--name",
        "t1",
        "--ctl",
        &dir.join("target.sock").display().to_string(),
    ])?;
    let client = client_policy(true, &format!("{DVIPA}/32"));
    let s = PlexgateSite::up(dir, &client, &gpol, Some(target), true)?;
    let dvipa = IpAddr::V4(DVIPA);
    let srv = IperfServer::start(s.site.ns("target")?, dvipa, IPERF_PORT)?;
    // The target reports the listener (SRVSTAT) before any SYN is sent.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let st = ctl(&s.gctl, &json!({"cmd": "status"}))?;
        let listening = st["dpt"].as_array().is_some_and(|rows| {
            rows.iter()
                .any(|r| r.to_string().contains("\"listening\":true"))
        });
        if listening {
            break;
        }
        if Instant::now() > deadline {
            return Err(format!(
                "the target's iperf3 listener never reached the DPT: {st}\n{}",
                s.logs()
            )
            .into());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let run = |streams| {
        iperf3_client(
            s.site.ns("client")?,
            dvipa,
            srv.port,
            Some(IpAddr::V4(CLIENT_INNER)),
            streams,
            d,
        )
        .map(|r| r.received_gbps)
        .map_err(|e| -> BoxError { format!("distributed: {e}\n{}", s.logs()).into() })
    };
    Ok((run(1)?, run(8)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_policies_pass_the_checker() {
        let dir = LabDir::new("bench-e2e-test").unwrap();
        write_secret(&dir.join("psk"), PSK.as_bytes()).unwrap();
        for (name, text) in [
            ("c.toml", client_policy(true, TARGET_NET)),
            ("c2.toml", client_policy(false, "203.0.113.10/32")),
            ("g.toml", gateway_policy()),
        ] {
            let p = dir.join(name);
            std::fs::write(&p, text).unwrap();
            let checked = plexgate_policy::load(&p).unwrap_or_else(|d| panic!("{name}: {d}"));
            assert_eq!(checked.policy.spd.len(), 1);
        }
    }

    #[test]
    fn udp_json_counts_received_packets() {
        let j = r#"{"end":{"sum":{"packets":1000,"lost_packets":250,"seconds":2.0}}}"#;
        assert_eq!(udp_pps_from_json(j).unwrap(), 375.0);
        assert!(udp_pps_from_json(r#"{"error":"unable to connect"}"#).is_err());
        assert!(udp_pps_from_json(r#"{"end":{}}"#).is_err());
    }
}
