//! The example policies in `policy/` pass `check`, and their models say what the
//! examples intend (so the daemon gets what the operator wrote).

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use plexgate_policy::*;

mod fixture;

/// An example policy, from a scratch copy with the key modes the checks need.
fn example(name: &str) -> PathBuf {
    fixture::path("policy").join(name)
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn load_ok(name: &str) -> Checked {
    match load(&example(name)) {
        Ok(c) => c,
        Err(d) => panic!("{name} must pass:\n{d}"),
    }
}

#[test]
fn site_a_road_warriors_round_robin() {
    let c = load_ok("site-a.toml");
    assert!(c.warnings.is_empty(), "{}", c.warnings);
    let p = c.policy;
    assert_eq!(p.site.gateway_vipas, vec![ip("192.0.2.1")]);
    let rw = p.peer("roadwarriors").unwrap();
    assert_eq!(rw.remote, RemoteAddr::Any);
    assert_eq!(rw.local_id, Identity::Fqdn("vpn.site-a.example".into()));
    assert_eq!(rw.remote_id, Identity::Any);
    match &rw.auth {
        Auth::Psk { psk_file } => assert!(psk_file.ends_with("keys/example/site-a.psk")),
        other => panic!("{other:?}"),
    }
    assert!(rw.auth_file_exists());
    assert_eq!(rw.proposals.len(), 2);
    assert_eq!(rw.rekey_time, Duration::from_secs(4 * 3600));
    assert_eq!(rw.life_time, Duration::from_secs(4 * 3600 + 1440));
    assert_eq!(rw.dpd_delay, Some(Duration::from_secs(30)));
    let web = rw.child("web").unwrap();
    assert_eq!(web.local_ts.len(), 2);
    assert_eq!(web.local_ts[0].proto, Some(6));
    assert_eq!(web.local_ts[0].ports, PortRange { lo: 443, hi: 443 });
    assert_eq!(web.remote_ts[0].addr, TsAddr::Dynamic);
    assert_eq!(web.esp_proposals[0].esn, vec![Esn::Yes]);
    assert_eq!(
        web.esp_proposals[2].encryption,
        vec![Encr::ChaCha20Poly1305]
    );
    assert_eq!(web.replay_window, 1024);
    assert_eq!(web.lifetime.rekey_bytes, Some(90_000_000_000));
    assert_eq!(p.spd.len(), 3);
    assert_eq!(p.spd[2].action, SpdAction::Discard);
    assert_eq!(
        p.spd[0].action,
        SpdAction::Protect {
            peer: "roadwarriors".into(),
            child: "web".into()
        }
    );
    let d = p.dvipa(ip("10.100.0.10")).unwrap();
    assert_eq!(d.method, Method::RoundRobin);
    assert_eq!(d.targets, TargetSet::All);
    assert_eq!(d.plain_traffic, PlainTraffic::Drop);
    let ts = p.dvipa_targets(d);
    let names: Vec<_> = ts.iter().map(|(t, w)| (t.name.as_str(), *w)).collect();
    assert_eq!(names, vec![("web-1", 1), ("web-2", 1), ("web-3", 1)]);
    // Link remote addresses default to the address of the target on the link.
    assert_eq!(p.link("to-web-2").unwrap().remote, ip("10.9.0.6"));
    assert_eq!(p.cluster.as_ref().unwrap().gateway_id, 1);
    assert!(p.ha.is_none());
    assert_eq!(p.log.keylog, None);
}

trait AuthExists {
    fn auth_file_exists(&self) -> bool;
}

impl AuthExists for Peer {
    fn auth_file_exists(&self) -> bool {
        match &self.auth {
            Auth::Psk { psk_file } => psk_file.is_file(),
            Auth::Cert {
                cert,
                private_key,
                ca,
            } => cert.is_file() && private_key.is_file() && ca.iter().all(|c| c.is_file()),
        }
    }
}

#[test]
fn site_b_certificates_weighted_ha_etcd() {
    let p = load_ok("site-b.toml").policy;
    let clients = p.peer("clients").unwrap();
    assert!(matches!(clients.auth, Auth::Cert { .. }));
    assert!(clients.auth_file_exists());
    assert_eq!(
        clients.proposals[1].encryption,
        vec![Encr::AesGcm {
            key_bits: 128,
            icv_bytes: 16
        }]
    );
    assert_eq!(clients.proposals[1].prf, vec![Prf::HmacSha256]);
    let app = clients.child("app").unwrap();
    assert_eq!(app.replay_window, 2048);
    assert_eq!(app.lifetime.rekey_time, Duration::from_secs(1800));
    assert_eq!(app.lifetime.life_packets, Some(1_000_000_000));
    let d = &p.dvipas[0];
    assert_eq!(d.method, Method::WeightedRoundRobin);
    let w: Vec<_> = p
        .dvipa_targets(d)
        .iter()
        .map(|(t, w)| (t.name.clone(), *w))
        .collect();
    assert_eq!(
        w,
        vec![
            ("app-1".into(), 3),
            ("app-2".into(), 2),
            ("app-3".into(), 1)
        ]
    );
    assert_eq!(d.routing_gateway.as_deref(), Some("gw-1"));
    assert_eq!(
        d.backups,
        vec![Backup {
            gateway: "gw-2".into(),
            rank: 200
        }]
    );
    let ha = p.ha.as_ref().unwrap();
    assert_eq!((ha.name.as_str(), ha.rank), ("gw-1", 250));
    assert_eq!(ha.peers[0].address, ip("192.0.2.12"));
    assert_eq!(
        ha.store,
        Store::Etcd {
            endpoints: vec!["http://192.0.2.50:2379".into()],
            prefix: "/plexgate/site-b/".into(),
            lease: Duration::from_secs(10)
        }
    );
}

#[test]
fn site_c_site_to_site_with_bypass_and_discard() {
    let c = load_ok("site-c.toml");
    // The key log is on in this example: exactly one warning, at its line.
    let w = c.warnings.short_lines();
    assert_eq!(w.len(), 1, "{w:?}");
    assert!(
        w[0].contains("site-c.toml:158:10: warning: key logging is on"),
        "{}",
        w[0]
    );
    let p = c.policy;
    let branch = p.peer("branch").unwrap();
    assert_eq!(branch.remote, RemoteAddr::Host(ip("203.0.113.5")));
    assert_eq!(branch.remote_id, Identity::Ip(ip("203.0.113.5")));
    assert_eq!(
        branch.child("pool").unwrap().start_action,
        StartAction::Trap
    );
    assert_eq!(
        branch.child("pool").unwrap().esp_proposals[0].pfs,
        vec![DhGroup::Ecp384]
    );
    assert_eq!(
        branch.child("office").unwrap().start_action,
        StartAction::Start
    );
    assert_eq!(p.spd.len(), 7);
    assert_eq!(p.spd[0].action, SpdAction::Bypass);
    assert_eq!(p.spd[0].protocol, Some(1));
    assert_eq!(p.spd[4].action, SpdAction::Discard);
    assert_eq!(p.dvipas[0].method, Method::LeastConnections);
    // An IPv6 link, and an IPv6 DVIPA with its own host-granular child.
    assert_eq!(p.link("to-db-2").unwrap().remote, ip("fd00:9:2::2"));
    assert_eq!(p.dvipas[1].address, ip("fd00:30::30"));
    assert_eq!(
        p.spd[5].action,
        SpdAction::Protect {
            peer: "branch".into(),
            child: "pool6".into()
        }
    );
    assert!(p.log.keylog.is_some());
}

#[test]
fn check_renders_ok_summary() {
    let r = check(&example("site-a.toml"));
    assert!(!r.has_errors());
    assert!(
        r.to_string().ends_with("site-a.toml: ok, 0 warnings\n"),
        "{r}"
    );
}

#[test]
fn site_a_listing() {
    let c = load_ok("site-a.toml");
    let text = c.policy.to_string();
    let keys = fixture::path("policy/../keys/example");
    let want = format!(
        "site site-a: gateway VIPAs 192.0.2.1 (IKE 500, NAT-T 4500)
  interface eth0 192.0.2.2/24
peer roadwarriors: remote any, @vpn.site-a.example <-> %any, auth psk {psk}
  ike aes256gcm16-prfsha384-ecp384, aes128-sha256-prfsha256-x25519; rekey 4h, life 4h24m, dpd 30s; retransmit 4s, base 1.8, 5 tries
  child web: 10.100.0.10[tcp/443], 10.100.0.10[tcp/80] === dynamic (tunnel)
    esp aes256gcm16-esn, aes128gcm16, chacha20poly1305; rekey 1h, life 1h6m; replay 1024; start None
spd (first match wins):
  #1 https-over-ipsec: Both tcp local 10.100.0.10 port 443 remote any port any -> protect roadwarriors/web
  #2 http-over-ipsec: Both tcp local 10.100.0.10 port 80 remote any port any -> protect roadwarriors/web
  #3 no-clear-to-pool: In any local 10.100.0.10 port any remote any port any -> discard
dvipa 10.100.0.10 ports 80, 443: RoundRobin, plain traffic Drop
  target web-1 10.9.0.2 via link to-web-1 weight 1
  target web-2 10.9.0.6 via link to-web-2 weight 1
  target web-3 10.9.0.10 via link to-web-3 weight 1
link to-web-1: pg-w1 10.9.0.1 in 10.9.0.0/30 <-> 10.9.0.2
link to-web-2: pg-w2 10.9.0.5 in 10.9.0.4/30 <-> 10.9.0.6
link to-web-3: pg-w3 10.9.0.9 in 10.9.0.8/30 <-> 10.9.0.10
cluster: gateway id 1, port 7600, key {cluster}
",
        psk = keys.join("site-a.psk").display(),
        cluster = keys.join("cluster.key").display()
    );
    assert_eq!(text, want);
}

#[test]
fn identities_display_parse_back() {
    for name in ["site-a.toml", "site-b.toml", "site-c.toml"] {
        let p = load_ok(name).policy;
        for peer in &p.peers {
            for id in [&peer.local_id, &peer.remote_id] {
                let text = format!(
                    "[site]\nname = \"x\"\ngateway_vipas = [\"192.0.2.1\"]\n[[site.interface]]\nname = \"e\"\naddress = \"192.0.2.2/24\"\n[[peer]]\nname = \"p\"\nremote_address = \"any\"\nlocal_id = \"@a\"\nremote_id = \"{id}\"\nauth = \"psk\"\npsk_file = \"k\"\n"
                );
                let again = parse_str(&text, "x.toml", std::path::Path::new(".")).unwrap();
                assert_eq!(&again.policy.peers[0].remote_id, id);
            }
        }
    }
}
