//! The example policies in `policy/` pass `check`, and their models say what the
//! examples intend (so the daemon gets what the operator wrote).

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use plexgate_policy::*;

fn example(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../policy")
        .join(name)
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// Git does not keep file modes: put the example keys' 0600 in place.
fn fix_modes() {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../keys");
        for k in [
            "example/site-a.psk",
            "example/site-c.psk",
            "example/cluster.key",
            "test/private/gw.pem",
        ] {
            let p = root.join(k);
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        }
    }
}

fn load_ok(name: &str) -> Checked {
    fix_modes();
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
        vec![Encr::ChaCha20Poly1305]
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
        w[0].contains("site-c.toml:123:10: warning: key logging is on"),
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
    assert_eq!(p.spd.len(), 5);
    assert_eq!(p.spd[0].action, SpdAction::Bypass);
    assert_eq!(p.spd[0].protocol, Some(1));
    assert_eq!(p.spd[4].action, SpdAction::Discard);
    assert_eq!(p.dvipas[0].method, Method::LeastConnections);
    // An IPv6 link.
    assert_eq!(p.link("to-db-2").unwrap().remote, ip("fd00:9:2::2"));
    assert!(p.log.keylog.is_some());
}

#[test]
fn check_renders_ok_summary() {
    fix_modes();
    let r = check(&example("site-a.toml"));
    assert!(!r.has_errors());
    assert!(
        r.to_string().ends_with("site-a.toml: ok, 0 warnings\n"),
        "{r}"
    );
}
