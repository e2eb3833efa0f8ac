//! plexgate against real strongSwan (charon 5.9 with kernel-libipsec), each test in
//! namespaces of its own that are removed even when it fails.
//!
//! Topology: `client` (strongSwan, outer 10.10.0.1, inner 192.168.77.1 on lo)
//! ── veth ── `gateway` (plexgate, outer 10.10.0.2 = the gateway VIPA, inner
//! 10.30.0.10 on lo). The Child SA covers 192.168.77.1/32 === 10.30.0.10/32.

mod common;

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use common::*;
use plexgate_lab::{tcp_transfer, Charon, CharonConfig, ChildConfig, Topology};

const CLIENT_OUT: &str = "10.10.0.1";
const GW_OUT: &str = "10.10.0.2";
const CLIENT_IN: &str = "192.168.77.1";
const GW_IN: &str = "10.30.0.10";

struct Lab {
    // Field order = drop order: processes before namespaces.
    client: Option<Charon>,
    gw: Daemon,
    topo: Topology,
    dir: plexgate_lab::LabDir,
}

const PSK_AUTH: &str = r#"local_id = "gw@plexgate.lab"
remote_id = "client@plexgate.lab"
auth = "psk"
psk_file = "psk""#;

fn policy_auth(
    dir: &std::path::Path,
    remote: &str,
    auth: &str,
    ike: &str,
    esp: &str,
    extra_child: &str,
) -> std::path::PathBuf {
    write_secret(&dir.join("psk"), PSK.as_bytes());
    let text = format!(
        r#"
[site]
name = "interop"
gateway_vipas = ["{GW_OUT}"]

[[site.interface]]
name = "uplink"
address = "{GW_OUT}/24"

[[peer]]
name = "client"
remote_address = "{remote}"
{auth}
proposals = [{ike}]

  [[peer.child]]
  name = "net"
  local_ts = ["{GW_IN}/32"]
  remote_ts = ["192.168.77.0/24"]
  esp_proposals = [{esp}]
  {extra_child}

[[spd]]
name = "tunnel"
direction = "both"
local = "{GW_IN}"
remote = "192.168.77.0/24"
action = "protect"
peer = "client"
child = "net"
"#
    );
    let p = dir.join("gateway.toml");
    std::fs::write(&p, text).unwrap();
    p
}

fn lab(name: &str, ike: &str, esp: &str, client_ike: &str, client_esp: &str) -> Lab {
    lab_with(name, "any", ike, esp, |cc| {
        let mut cc = cc;
        cc.ike_proposals = vec![client_ike.to_string()];
        cc.child(
            ChildConfig::new("net", &format!("{CLIENT_IN}/32"), &format!("{GW_IN}/32"))
                .esp(&[client_esp]),
        )
    })
}

/// The strongSwan side of the lab: PSK, IKE `aes128-sha256-x25519`, ESP `aes128gcm16`.
fn default_client(cc: CharonConfig) -> CharonConfig {
    cc.child(
        ChildConfig::new("net", &format!("{CLIENT_IN}/32"), &format!("{GW_IN}/32"))
            .esp(&["aes128gcm16"]),
    )
}

/// The two-namespace lab; `remote` is the policy peer's `remote_address`, `client`
/// finishes strongSwan's configuration (proposals, children, timers).
fn lab_with(
    name: &str,
    remote: &str,
    ike: &str,
    esp: &str,
    client: impl FnOnce(CharonConfig) -> CharonConfig,
) -> Lab {
    lab_auth(name, remote, PSK_AUTH, ike, esp, "", client)
}

/// Like [`lab_with`] with the policy peer's identity and auth lines `auth`.
fn lab_auth(
    name: &str,
    remote: &str,
    auth: &str,
    ike: &str,
    esp: &str,
    extra_child: &str,
    client: impl FnOnce(CharonConfig) -> CharonConfig,
) -> Lab {
    prerequisites();
    let dir = labdir(name);
    let mut topo = Topology::new();
    topo.add_host("client").unwrap();
    topo.add_host("gateway").unwrap();
    topo.link(
        "client",
        &[&format!("{CLIENT_OUT}/24")],
        "gateway",
        &[&format!("{GW_OUT}/24")],
    )
    .unwrap();
    let (c, g) = (topo.ns("client").unwrap(), topo.ns("gateway").unwrap());
    c.add_loopback_addr(&format!("{CLIENT_IN}/32")).unwrap();
    c.disable_rp_filter().unwrap();
    g.add_loopback_addr(&format!("{GW_IN}/32")).unwrap();
    g.disable_rp_filter().unwrap();
    g.sysctl("net.ipv4.conf.default.rp_filter", "0").unwrap();
    let pol = policy_auth(dir.path(), remote, auth, ike, esp, extra_child);
    let gw = Daemon::gateway(g, dir.path(), &pol, "gw");
    let cc = client(CharonConfig::psk(
        CLIENT_OUT,
        GW_OUT,
        "client@plexgate.lab",
        "gw@plexgate.lab",
        PSK,
    ));
    let client = Charon::start(c, cc).unwrap();
    Lab {
        client: Some(client),
        gw,
        topo,
        dir,
    }
}

impl Lab {
    fn client(&self) -> &Charon {
        self.client.as_ref().unwrap()
    }

    /// plexgate initiates (control socket), strongSwan's SA comes up, the client
    /// routes the gateway's inner address into the tunnel and plexgate has both
    /// Child SAs installed. Returns strongSwan's view of the IKE SA.
    fn initiate_from_gateway(&self) -> plexgate_lab::IkeSa {
        let r = self
            .gw
            .ctl(serde_json::json!({"cmd": "initiate", "peer": "client"}));
        assert_eq!(r["ok"], true, "initiate: {r}");
        let sa = self
            .client()
            .wait_established("net", Duration::from_secs(15))
            .unwrap_or_else(|e| panic!("{}", self.fail(&e.to_string())));
        self.client()
            .route_ipsec0(&format!("{GW_IN}/32"), CLIENT_IN)
            .unwrap();
        self.gw
            .wait_status("Child SA installed", Duration::from_secs(5), |s| {
                child_sa_count(s) >= 2
            });
        sa
    }

    fn connect(&self) {
        let c = self.client();
        if let Err(e) = c.initiate("net") {
            panic!(
                "initiate failed: {e}\ncharon log:\n{}\nplexgate log:\n{}",
                c.log(),
                self.gw.log()
            );
        }
        if let Err(e) = c.wait_established("net", Duration::from_secs(15)) {
            panic!(
                "not established: {e}\ncharon log:\n{}\nplexgate log:\n{}",
                c.log(),
                self.gw.log()
            );
        }
        c.route_ipsec0(&format!("{GW_IN}/32"), CLIENT_IN).unwrap();
        self.gw
            .wait_status("Child SA installed", Duration::from_secs(5), |s| {
                child_sa_count(s) >= 2
            });
    }

    fn ping_and_transfer(&self, mb: usize) {
        let c = self.topo.ns("client").unwrap();
        let g = self.topo.ns("gateway").unwrap();
        if let Err(e) = c.wait_ping(GW_IN, Some(CLIENT_IN), Duration::from_secs(10)) {
            panic!(
                "ping through the tunnel failed: {e}\nplexgate status:\n{}\nlog:\n{}\ncharon:\n{}",
                self.gw.status(),
                self.gw.log(),
                self.client().log()
            );
        }
        let addr = SocketAddr::new(GW_IN.parse::<IpAddr>().unwrap(), 5001);
        let r = tcp_transfer(g, addr, c, mb << 20, 7, Duration::from_secs(60))
            .unwrap_or_else(|e| panic!("transfer failed: {e}\nplexgate log:\n{}", self.gw.log()));
        assert_eq!(r.bytes, mb << 20, "bytes received");
        // tcp_transfer itself fails unless both ends agree on the SHA-256 of every byte.
        assert_eq!(r.sha256.len(), 64);
    }
}

#[test]
fn strongswan_initiates_psk_ping_and_tcp() {
    let l = lab(
        "ss-init-psk",
        "\"aes128-sha256-x25519\"",
        "\"aes128gcm16\"",
        "aes128-sha256-x25519",
        "aes128gcm16",
    );
    l.connect();
    l.ping_and_transfer(8);
    let s = l.gw.status();
    let ike = &s["ike_sas"][0];
    assert_eq!(ike["remote_id"], "client@plexgate.lab", "{s}");
    // The per-SA counters saw the transfer: 8 MB in, acknowledgements out.
    let by_dir = |d: &str| {
        s["child_sas"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["direction"] == d)
            .map(|c| c["bytes"].as_u64().unwrap())
            .unwrap()
    };
    assert!(by_dir("inbound") > 8 << 20, "inbound byte counter: {s}");
    assert!(by_dir("outbound") > 0, "outbound byte counter: {s}");
    drop(l.dir);
}

impl Lab {
    fn fail(&self, what: &str) -> String {
        format!(
            "{what}\nplexgate status:\n{}\nplexgate log:\n{}\ncharon log:\n{}",
            self.gw.status(),
            self.gw.log(),
            self.client().log()
        )
    }

    /// The ids of plexgate's IKE SAs.
    fn gw_ike_ids(&self) -> Vec<u64> {
        self.gw.status()["ike_sas"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|s| s["id"].as_u64())
            .collect()
    }

    /// plexgate's inbound Child SA SPIs (hex).
    fn gw_spis_in(&self) -> Vec<String> {
        let s = self.gw.status();
        s["child_sas"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|c| c["direction"] == "inbound")
            .map(|c| c["spi"].as_str().unwrap().to_string())
            .collect()
    }

    /// Run `during` while a byte-exact transfer of `mb` MB runs through the tunnel.
    /// A byte-exact TCP transfer through the tunnel that lasts exactly as long
    /// as `during` (at least `min_mb` MiB): bounded by the work it must
    /// overlap, not by a byte count that a faster build gets through first.
    fn transfer_during(&self, min_mb: usize, during: impl FnOnce()) {
        let c = self.topo.ns("client").unwrap();
        let g = self.topo.ns("gateway").unwrap();
        if let Err(e) = c.wait_ping(GW_IN, Some(CLIENT_IN), Duration::from_secs(10)) {
            panic!(
                "{}",
                self.fail(&format!("ping through the tunnel failed: {e}"))
            );
        }
        let addr = SocketAddr::new(GW_IN.parse::<IpAddr>().unwrap(), 5002);
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        std::thread::scope(|s| {
            let flag = stop.clone();
            let t = s.spawn(move || {
                let t0 = std::time::Instant::now();
                let r = plexgate_lab::tcp_transfer_until(
                    g,
                    addr,
                    c,
                    flag,
                    11,
                    Duration::from_secs(180),
                );
                eprintln!("transfer took {:?}", t0.elapsed());
                r
            });
            // Let the transfer get going first.
            std::thread::sleep(Duration::from_millis(200));
            during();
            stop.store(true, std::sync::atomic::Ordering::Relaxed);
            let r = t.join().unwrap();
            let r = r.unwrap_or_else(|e| panic!("{}", self.fail(&format!("transfer failed: {e}"))));
            eprintln!("{} bytes verified across the work", r.bytes);
            assert!(
                r.bytes >= min_mb << 20,
                "only {} bytes crossed the tunnel while the work ran",
                r.bytes
            );
        });
    }
}

/// The one established IKE SA with an installed `net` child and nothing else
/// (old SAs of a rekey gone).
fn settled(sas: &[plexgate_lab::IkeSa]) -> Option<(String, u32)> {
    match sas {
        [sa] if sa.established() && sa.children.len() == 1 && sa.children[0].installed() => Some((
            sa.initiator_spi.clone() + &sa.responder_spi,
            sa.children[0].spi_in,
        )),
        _ => None,
    }
}

#[test]
fn plexgate_initiates_psk_ping_and_tcp() {
    let l = lab_with(
        "pg-init-psk",
        CLIENT_OUT,
        "\"aes128-sha256-x25519\"",
        "\"aes128gcm16\"",
        default_client,
    );
    let sa = l.initiate_from_gateway();
    assert!(!sa.initiator, "strongSwan must be the responder: {sa:?}");
    let s = l.gw.status();
    assert_eq!(s["ike_sas"][0]["initiator"], true, "{s}");
    l.ping_and_transfer(4);
}

/// `encap = "udp"`: plexgate starts IKE on port 4500 (RFC 7296 §2.23: allowed
/// "regardless of whether or not there is a NAT"); strongSwan answers there, and
/// the Child SAs carry ESP in UDP, which plexgate sends with UDP GSO batches.
#[test]
fn plexgate_initiates_on_the_natt_port_with_encap_udp() {
    let auth = format!("{PSK_AUTH}\nencap = \"udp\"");
    let l = lab_auth(
        "pg-init-encap",
        CLIENT_OUT,
        &auth,
        "\"aes128-sha256-x25519\"",
        "\"aes128gcm16\"",
        "",
        default_client,
    );
    l.initiate_from_gateway();
    let s = l.gw.status();
    let ike = &s["ike_sas"][0];
    assert_eq!(ike["initiator"], true, "{s}");
    assert!(
        ike.to_string().contains(&format!("{CLIENT_OUT}:4500")),
        "IKE must run on 4500: {ike}"
    );
    // From the first message on (without encap = "udp" IKE_SA_INIT goes to 500
    // and floats to 4500 only for IKE_AUTH).
    let log = l.client().log();
    let init = log
        .lines()
        .find(|x| x.contains("received packet") && x.contains(&format!("{GW_OUT}[")))
        .unwrap_or_else(|| panic!("no received packet in charon's log:\n{log}"));
    assert!(
        init.contains(&format!("{GW_OUT}[4500] to {CLIENT_OUT}[4500]")),
        "IKE_SA_INIT did not arrive on 4500: {init}"
    );
    for sa in s["child_sas"].as_array().unwrap() {
        assert_eq!(sa["udp_encap"], true, "{sa}");
    }
    l.ping_and_transfer(4);
}

/// Several proposal sets, strongSwan configured with exactly one each: the SA
/// that comes up uses it, and carries traffic byte-exact.
#[test]
fn proposal_sets_interoperate() {
    let sets = [
        (
            "aes256gcm16-prfsha384-ecp384",
            "aes256gcm16",
            "AES_GCM_16",
            Some("ECP_384"),
        ),
        (
            "aes256-sha256-x25519",
            "aes256-sha256",
            "AES_CBC",
            Some("CURVE_25519"),
        ),
        (
            "aes128gcm16-prfsha256-x25519",
            "chacha20poly1305",
            "CHACHA20_POLY1305",
            None,
        ),
        // No `aes128gcm16-esn` here: strongSwan's kernel-libipsec refuses ESN
        // ("IPsec SA: ESN not supported"), so the lab cannot test it.
    ];
    for (ike, esp, esp_alg, dh) in sets {
        eprintln!("--- IKE {ike}, ESP {esp}");
        let l = lab_with(
            &format!("ss-prop-{esp}"),
            "any",
            &format!("\"{ike}\""),
            &format!("\"{esp}\""),
            |mut cc| {
                cc.ike_proposals = vec![ike.to_string()];
                cc.child(
                    ChildConfig::new("net", &format!("{CLIENT_IN}/32"), &format!("{GW_IN}/32"))
                        .esp(&[esp]),
                )
            },
        );
        l.connect();
        let sa = l
            .client()
            .wait_established("net", Duration::from_secs(5))
            .unwrap();
        if let Some(dh) = dh {
            assert_eq!(sa.dh_group.as_deref(), Some(dh), "IKE {ike}: {sa:?}");
        }
        let child = sa.child("net").unwrap();
        assert_eq!(
            child.encr_alg.as_deref(),
            Some(esp_alg),
            "ESP {esp}: {child:?}"
        );
        l.ping_and_transfer(2);
    }
}

/// Issue #17: a strongSwan client offering ESP with AES-CBC-256 and
/// HMAC-SHA-384-192, then HMAC-SHA-512-256 (RFC 4868; OpenIKED's defaults),
/// gets exactly that Child SA, and traffic crosses it byte-exact.
#[test]
fn cbc_with_sha384_and_sha512_carry_exact_bytes() {
    for (esp, integ) in [
        ("aes256-sha384", "HMAC_SHA2_384_192"),
        ("aes256-sha512", "HMAC_SHA2_512_256"),
    ] {
        eprintln!("--- ESP {esp}");
        let l = lab_with(
            &format!("ss-{esp}"),
            "any",
            "\"aes256-sha384-ecp384\"",
            &format!("\"{esp}\""),
            |mut cc| {
                cc.ike_proposals = vec!["aes256-sha384-ecp384".to_string()];
                cc.child(
                    ChildConfig::new("net", &format!("{CLIENT_IN}/32"), &format!("{GW_IN}/32"))
                        .esp(&[esp]),
                )
            },
        );
        l.connect();
        let sa = l
            .client()
            .wait_established("net", Duration::from_secs(5))
            .unwrap();
        let child = sa.child("net").unwrap();
        assert_eq!(child.encr_alg.as_deref(), Some("AES_CBC"), "{child:?}");
        assert_eq!(child.encr_keysize, Some(256), "{child:?}");
        assert_eq!(child.integ_alg.as_deref(), Some(integ), "{child:?}");
        l.ping_and_transfer(2);
    }
}

/// Both sides can delete: strongSwan's DELETE clears plexgate's SAs; plexgate's
/// `delete-ike` clears strongSwan's.
#[test]
fn delete_from_either_side() {
    let l = lab(
        "ss-delete",
        "\"aes128-sha256-x25519\"",
        "\"aes128gcm16\"",
        "aes128-sha256-x25519",
        "aes128gcm16",
    );
    l.connect();
    l.client()
        .terminate_ike()
        .unwrap_or_else(|e| panic!("{}", l.fail(&e.to_string())));
    l.gw.wait_status(
        "no SAs after strongSwan's DELETE",
        Duration::from_secs(10),
        |s| s["ike_sas"].as_array().unwrap().is_empty() && child_sa_count(s) == 0,
    );
    l.connect();
    let ids = l.gw_ike_ids();
    assert_eq!(ids.len(), 1, "{}", l.fail("one IKE SA"));
    let r =
        l.gw.ctl(serde_json::json!({"cmd": "delete-ike", "id": ids[0]}));
    assert_eq!(r["ok"], true, "delete-ike: {r}");
    l.client()
        .wait_for(
            "no SAs after plexgate's DELETE",
            Duration::from_secs(10),
            |sas| sas.is_empty(),
        )
        .unwrap_or_else(|e| panic!("{}", l.fail(&e.to_string())));
    l.gw.wait_status("no SAs after our DELETE", Duration::from_secs(10), |s| {
        s["ike_sas"].as_array().unwrap().is_empty() && child_sa_count(s) == 0
    });
}

/// Garbage and truncated datagrams to UDP 500 and 4500 do not stop the daemon.
#[test]
fn garbage_datagrams_do_not_stop_the_daemon() {
    let l = lab(
        "ss-garbage",
        "\"aes128-sha256-x25519\"",
        "\"aes128gcm16\"",
        "aes128-sha256-x25519",
        "aes128gcm16",
    );
    let c = l.topo.ns("client").unwrap();
    let sent = c
        .run_in(|| {
            let sock = std::net::UdpSocket::bind("10.10.0.1:0").unwrap();
            let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
            let mut next = move || {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x
            };
            let mut n = 0;
            for i in 0..400usize {
                let len = (next() % 600) as usize;
                let mut d: Vec<u8> = (0..len).map(|_| next() as u8).collect();
                match i % 4 {
                    // An IKE header (SA_INIT, version 2.0) with a lying length.
                    0 if d.len() >= 28 => {
                        d[16] = 33;
                        d[17] = 0x20;
                        d[18] = 34;
                        d[19] = 0x08;
                        d[24..28].copy_from_slice(&((next() % 70000) as u32).to_be_bytes());
                    }
                    1 if d.len() >= 4 => d[..4].fill(0), // non-ESP marker + garbage IKE
                    2 => d.truncate(i % 12),             // too short for anything
                    _ => {}
                }
                for port in [500, 4500] {
                    if sock.send_to(&d, (GW_OUT, port)).is_ok() {
                        n += 1;
                    }
                }
            }
            n
        })
        .unwrap();
    assert!(sent >= 700, "sent {sent}");
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        l.gw.status()["ike_sas"].as_array().unwrap().len() <= 1,
        "garbage made IKE SAs"
    );
    l.connect();
    l.ping_and_transfer(1);
}

/// Child SA and IKE SA rekeys, started by strongSwan and by plexgate, while a
/// 40 MB transfer runs: every byte arrives and every SPI changes. (strongSwan
/// keeps a rekeyed inbound SA for 5 s, so the steps wait for the new SA, not for
/// the old one to go; the end state is checked after the transfer.)
#[test]
fn rekeys_during_transfer_lose_no_byte() {
    let l = lab(
        "ss-rekey",
        "\"aes128-sha256-x25519\"",
        "\"aes128gcm16\"",
        "aes128-sha256-x25519",
        "aes128gcm16",
    );
    l.connect();
    let c = l.client();
    let fail = |e: plexgate_lab::LabError| -> ! { panic!("{}", l.fail(&e.to_string())) };
    // strongSwan's established IKE SA (SPIs) and its newest installed Child SA (inbound SPI).
    let current = |sas: &[plexgate_lab::IkeSa]| -> Option<(String, u32)> {
        let sa = sas.iter().find(|s| s.established())?;
        let child = sa.children.iter().rfind(|c| c.installed())?;
        Some((sa.initiator_spi.clone() + &sa.responder_spi, child.spi_in))
    };
    let gw_has_new_inbound =
        |what: &str, old: &[String]| {
            l.gw.wait_status(what, Duration::from_secs(15), |s| {
                s["child_sas"].as_array().unwrap().iter().any(|c| {
                    c["direction"] == "inbound" && !old.iter().any(|o| c["spi"] == o.as_str())
                })
            });
        };
    let s0 = settled(&c.list_sas().unwrap()).expect("one SA before the rekeys");
    let gw0_spis = l.gw_spis_in();
    let gw0_ike = l.gw_ike_ids();
    l.transfer_during(1, || {
        let t0 = std::time::Instant::now();
        // strongSwan rekeys the Child SA.
        c.rekey_child("net").unwrap();
        let s1 = c
            .wait_for(
                "strongSwan's Child SA rekey",
                Duration::from_secs(15),
                |sas| current(sas).is_some_and(|n| n.1 != s0.1),
            )
            .map(|sas| current(&sas).unwrap())
            .unwrap_or_else(|e| fail(e));
        gw_has_new_inbound("Child SA rekeyed by strongSwan", &gw0_spis);
        // strongSwan rekeys the IKE SA (the Child SA stays).
        c.rekey_ike().unwrap();
        let s2 = c
            .wait_for(
                "strongSwan's IKE SA rekey",
                Duration::from_secs(15),
                |sas| current(sas).is_some_and(|n| n.0 != s1.0),
            )
            .map(|sas| current(&sas).unwrap())
            .unwrap_or_else(|e| fail(e));
        assert_eq!(s2.1, s1.1, "an IKE rekey keeps the Child SA");
        l.gw.wait_status(
            "IKE SA rekeyed by strongSwan",
            Duration::from_secs(15),
            |s| {
                s["ike_sas"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|i| i["id"].as_u64().is_some_and(|id| !gw0_ike.contains(&id)))
            },
        );
        eprintln!("rekeys: strongSwan's done at {:?}", t0.elapsed());
        // plexgate rekeys the Child SA: the one whose outbound SPI is strongSwan's new inbound SPI.
        let st = l.gw.status();
        let spi_out = format!("{:08x}", s2.1);
        let cur = st["child_sas"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["direction"] == "outbound" && c["spi"] == spi_out.as_str());
        assert!(
            cur.is_some(),
            "plexgate has the rekeyed outbound SA {spi_out}: {st}"
        );
        let spis_before = l.gw_spis_in();
        let newest_in = spis_before
            .iter()
            .find(|s| !gw0_spis.contains(s))
            .unwrap()
            .clone();
        let r =
            l.gw.ctl(serde_json::json!({"cmd": "rekey-child", "spi": newest_in}));
        assert_eq!(r["ok"], true, "rekey-child: {r}");
        gw_has_new_inbound("Child SA rekeyed by plexgate", &spis_before);
        let s3 = c
            .wait_for(
                "plexgate's Child SA rekey",
                Duration::from_secs(15),
                |sas| current(sas).is_some_and(|n| n.1 != s2.1 && n.0 == s2.0),
            )
            .map(|sas| current(&sas).unwrap())
            .unwrap_or_else(|e| fail(e));
        // plexgate rekeys the IKE SA.
        let ids = l.gw_ike_ids();
        assert_eq!(
            ids.len(),
            1,
            "{}",
            l.fail("one IKE SA after strongSwan's IKE rekey")
        );
        let r =
            l.gw.ctl(serde_json::json!({"cmd": "rekey-ike", "id": ids[0]}));
        assert_eq!(r["ok"], true, "rekey-ike: {r}");
        l.gw.wait_status("IKE SA rekeyed by plexgate", Duration::from_secs(15), |s| {
            let now: Vec<u64> = s["ike_sas"]
                .as_array()
                .unwrap()
                .iter()
                .filter_map(|i| i["id"].as_u64())
                .collect();
            now.len() == 1 && now[0] != ids[0]
        });
        c.wait_for("plexgate's IKE SA rekey", Duration::from_secs(15), |sas| {
            current(sas).is_some_and(|n| n.0 != s3.0 && n.1 == s3.1)
        })
        .unwrap_or_else(|e| fail(e));
        eprintln!("rekeys: all done at {:?}", t0.elapsed());
    });
    // The old SAs go on both sides; everything changed; the tunnel still works.
    let end = c
        .wait_for("old SAs removed", Duration::from_secs(15), |sas| {
            settled(sas).is_some()
        })
        .unwrap_or_else(|e| fail(e));
    let end = settled(&end).unwrap();
    assert!(
        end.0 != s0.0 && end.1 != s0.1,
        "SPIs changed: {s0:?} -> {end:?}"
    );
    let s =
        l.gw.wait_status("plexgate's old SAs removed", Duration::from_secs(15), |s| {
            child_sa_count(s) == 2 && s["ike_sas"].as_array().unwrap().len() == 1
        });
    assert!(
        !gw0_spis.iter().any(|o| s["child_sas"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["spi"] == o.as_str())),
        "old inbound SPI gone: {s}"
    );
    assert!(
        !gw0_ike.contains(&s["ike_sas"][0]["id"].as_u64().unwrap()),
        "IKE SA id changed: {s}"
    );
    l.ping_and_transfer(1);
}

/// A client with the wrong PSK is refused (strongSwan logs AUTHENTICATION_FAILED,
/// plexgate logs why) while a second client with the right PSK connects and
/// passes traffic at the same time.
#[test]
fn wrong_psk_refused_while_right_psk_connects() {
    let mut l = lab(
        "ss-wrong-psk",
        "\"aes128-sha256-x25519\"",
        "\"aes128gcm16\"",
        "aes128-sha256-x25519",
        "aes128gcm16",
    );
    l.topo.add_host("intruder").unwrap();
    l.topo
        .link("intruder", &["10.10.1.1/24"], "gateway", &["10.10.1.2/24"])
        .unwrap();
    let i = l.topo.ns("intruder").unwrap();
    i.add_loopback_addr("192.168.77.2/32").unwrap();
    i.route_via(&format!("{GW_OUT}/32"), "10.10.1.2").unwrap();
    let cc = CharonConfig::psk(
        "10.10.1.1",
        GW_OUT,
        "client@plexgate.lab",
        "gw@plexgate.lab",
        "not-the-plexgate-lab-secret-42",
    )
    .child(
        ChildConfig::new("net", "192.168.77.2/32", &format!("{GW_IN}/32")).esp(&["aes128gcm16"]),
    );
    let bad = Charon::start(i, cc).unwrap();
    std::thread::scope(|s| {
        let t = s.spawn(|| bad.initiate("net"));
        l.connect();
        let r = t.join().unwrap();
        assert!(r.is_err(), "the wrong PSK was accepted:\n{}", bad.log());
    });
    assert!(
        bad.log().contains("AUTHENTICATION_FAILED"),
        "strongSwan log:\n{}",
        bad.log()
    );
    assert!(
        bad.list_sas().unwrap().iter().all(|s| !s.established()),
        "intruder has an SA"
    );
    let log = l.gw.log();
    assert!(
        log.contains("authentication failed") && log.contains("10.10.1.1"),
        "plexgate log has no clear line:\n{log}"
    );
    l.ping_and_transfer(2);
    let s = l.gw.status();
    let ike = s["ike_sas"].as_array().unwrap();
    assert_eq!(ike.len(), 1, "only the right client has an IKE SA: {s}");
    assert!(
        ike[0]["remote"].as_str().unwrap().starts_with(CLIENT_OUT),
        "{s}"
    );
    drop(bad);
}

/// A test key or certificate, from a scratch copy of `keys/test` with the modes
/// `plexgate policy check` wants (git keeps none; the checkout stays as it is).
fn key(rel: &str) -> std::path::PathBuf {
    static KEYS: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();
    KEYS.get_or_init(|| {
        let dir = plexgate_lab::fixture::scratch(
            std::path::Path::new(env!("CARGO_TARGET_TMPDIR")),
            "interop-keys",
        );
        let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("keys/test");
        plexgate_lab::fixture::copy_with_secret_modes(&src, &dir).unwrap();
        dir
    })
    .join(rel)
}

/// The gateway's side of certificate auth (ECDSA P-256 test PKI).
fn cert_auth() -> String {
    format!(
        "local_id = \"gw.plexgate.test\"\nremote_id = \"client.plexgate.test\"\nauth = \"cert\"\ncert = \"{}\"\nprivate_key = \"{}\"\nca = [\"{}\"]",
        key("x509/gw.pem").display(),
        key("private/gw.pem").display(),
        key("x509ca/ca.pem").display()
    )
}

/// strongSwan with the client certificate `cert`/`key` trusting the test CA.
fn cert_client(cert: &str, k: &str) -> impl FnOnce(CharonConfig) -> CharonConfig {
    let (cert, k) = (key(cert), key(k));
    move |mut cc| {
        cc.local_id = "client.plexgate.test".into();
        cc.remote_id = "gw.plexgate.test".into();
        cc.auth = plexgate_lab::charon::Auth::Certs {
            cert,
            key: k,
            cas: vec![key("x509ca/ca.pem")],
        };
        default_client(cc)
    }
}

#[test]
fn certificates_strongswan_initiates() {
    let l = lab_auth(
        "ss-cert-init",
        "any",
        &cert_auth(),
        "\"aes128-sha256-x25519\"",
        "\"aes128gcm16\"",
        "",
        cert_client("x509/client.pem", "private/client.pem"),
    );
    l.connect();
    let s = l.gw.status();
    assert_eq!(s["ike_sas"][0]["remote_id"], "client.plexgate.test", "{s}");
    assert!(
        l.client()
            .log()
            .contains("authentication of 'gw.plexgate.test' with ECDSA"),
        "strongSwan verified our signature:\n{}",
        l.client().log()
    );
    l.ping_and_transfer(2);
}

#[test]
fn certificates_plexgate_initiates() {
    let l = lab_auth(
        "pg-cert-init",
        CLIENT_OUT,
        &cert_auth(),
        "\"aes128-sha256-x25519\"",
        "\"aes128gcm16\"",
        "",
        cert_client("x509/client.pem", "private/client.pem"),
    );
    let sa = l.initiate_from_gateway();
    assert!(!sa.initiator);
    l.ping_and_transfer(2);
}

/// A client certificate from a CA the gateway does not trust is refused.
#[test]
fn untrusted_certificate_refused() {
    let l = lab_auth(
        "ss-cert-untrusted",
        "any",
        &cert_auth(),
        "\"aes128-sha256-x25519\"",
        "\"aes128gcm16\"",
        "",
        |cc| {
            let mut cc = cert_client("untrusted/client.pem", "untrusted/client-key.pem")(cc);
            // strongSwan itself must accept its own cert: give it the untrusted CA too.
            if let plexgate_lab::charon::Auth::Certs { cas, .. } = &mut cc.auth {
                cas.push(key("untrusted/ca.pem"));
            }
            cc
        },
    );
    let r = l.client().initiate("net");
    assert!(
        r.is_err(),
        "untrusted certificate accepted:\n{}",
        l.gw.log()
    );
    assert!(
        l.client().log().contains("AUTHENTICATION_FAILED"),
        "strongSwan log:\n{}",
        l.client().log()
    );
    let log = l.gw.log();
    assert!(
        log.contains("authentication failed") && log.contains("is not a trusted CA"),
        "plexgate log:\n{log}"
    );
    let s = l.gw.status();
    assert_eq!(child_sa_count(&s), 0, "{s}");
}

/// Traffic-triggered: a packet from the gateway's inner address to the client's
/// is routed into the TUN, the SPD says PROTECT with no SA yet, and plexgate
/// initiates to strongSwan (acquire).
#[test]
fn plexgate_initiates_on_traffic_acquire() {
    let l = lab_with(
        "pg-acquire",
        CLIENT_OUT,
        "\"aes128-sha256-x25519\"",
        "\"aes128gcm16\"",
        default_client,
    );
    let g = l.topo.ns("gateway").unwrap();
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        l.client().list_sas().unwrap().is_empty(),
        "an SA came up before any traffic"
    );
    // The first pings trigger the acquire (and may be dropped while IKE runs).
    let _ = g.ping(CLIENT_IN, Some(GW_IN), 2);
    let sa = l
        .client()
        .wait_established("net", Duration::from_secs(15))
        .unwrap_or_else(|e| panic!("{}", l.fail(&e.to_string())));
    assert!(!sa.initiator, "strongSwan must be the responder: {sa:?}");
    l.client()
        .route_ipsec0(&format!("{GW_IN}/32"), CLIENT_IN)
        .unwrap();
    g.wait_ping(CLIENT_IN, Some(GW_IN), Duration::from_secs(10))
        .unwrap_or_else(|e| panic!("{}", l.fail(&format!("ping from the gateway side: {e}"))));
    l.ping_and_transfer(2);
}

/// Rekeys driven by lifetimes, not commands, while traffic flows: plexgate's Child
/// SA `rekey_time` is 3 s, strongSwan's Child SA `rekey_time` 5 s and its IKE SA
/// `rekey_time` 7 s, so both sides start rekeys on their own timers (and may
/// collide, RFC 7296 §2.8.1). Back-to-back byte-exact transfers run for 12 s; every
/// one must arrive intact, and both the Child SA and the IKE SA must have been
/// replaced along the way.
#[test]
fn lifetime_rekeys_from_both_sides_lose_no_byte() {
    prerequisites();
    let l = lab_auth(
        "ss-lifetimes",
        "any",
        PSK_AUTH,
        "\"aes128-sha256-x25519\"",
        "\"aes128gcm16\"",
        "rekey_time = \"3s\"\n  life_time = \"60s\"",
        |cc| {
            let mut cc = default_client(cc);
            cc.rekey_time = Some("7s".into());
            // Without over_time, strongSwan's hard IKE lifetime is rekey_time + 10 %:
            // it would delete the SA it just rekeyed (its own doing, not the peer's).
            cc.over_time = Some("60s".into());
            for ch in &mut cc.children {
                ch.rekey_time = Some("5s".into());
            }
            cc
        },
    );
    l.connect();
    let c = l.topo.ns("client").unwrap();
    let g = l.topo.ns("gateway").unwrap();
    let mut spis = std::collections::BTreeSet::new();
    let mut ike_ids = std::collections::BTreeSet::new();
    let note = |s: &serde_json::Value,
                spis: &mut std::collections::BTreeSet<String>,
                ike: &mut std::collections::BTreeSet<u64>| {
        for ch in s["child_sas"].as_array().unwrap() {
            if ch["direction"] == "inbound" {
                spis.insert(ch["spi"].as_str().unwrap().to_string());
            }
        }
        for i in s["ike_sas"].as_array().unwrap() {
            ike.insert(i["id"].as_u64().unwrap());
        }
    };
    note(&l.gw.status(), &mut spis, &mut ike_ids);
    let start = std::time::Instant::now();
    let mut transfers = 0;
    let mut seed = 100;
    while start.elapsed() < Duration::from_secs(12) {
        seed += 1;
        let addr = SocketAddr::new(GW_IN.parse::<IpAddr>().unwrap(), 5100 + (seed % 50) as u16);
        let r =
            tcp_transfer(g, addr, c, 4 << 20, seed, Duration::from_secs(30)).unwrap_or_else(|e| {
                panic!(
                    "{}",
                    l.fail(&format!("transfer {transfers} during lifetime rekeys: {e}"))
                )
            });
        assert_eq!(r.bytes, 4 << 20);
        transfers += 1;
        note(&l.gw.status(), &mut spis, &mut ike_ids);
    }
    assert!(transfers >= 3, "only {transfers} transfers in 12 s");
    assert!(
        spis.len() >= 3,
        "{}",
        l.fail(&format!(
            "expected at least two Child SA rekeys in 12 s, saw inbound SPIs {spis:?}"
        ))
    );
    assert!(
        ike_ids.len() >= 2,
        "{}",
        l.fail(&format!(
            "expected strongSwan's IKE SA rekey by 7 s, saw IKE SAs {ike_ids:?}"
        ))
    );
    // The rekeys left one IKE SA with working Child SAs behind.
    let s =
        l.gw.wait_status("old SAs deleted", Duration::from_secs(10), |s| {
            s["ike_sas"].as_array().unwrap().len() == 1
        });
    assert!(child_sa_count(&s) >= 2, "{s}");
}
