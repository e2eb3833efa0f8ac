//! The keys added for IKE retransmission, failover timing, sealed records and
//! GRE-in-UDP links: their defaults, their values, their limits, and the key
//! files they name (written to a temporary folder with the modes they need).

use std::path::{Path, PathBuf};
use std::time::Duration;

use plexgate_policy::{parse_str, LinkEncap, Retransmit, Store};

fn site(extra: &str) -> String {
    format!(
        "[site]\nname = \"t\"\ngateway_vipas = [\"192.0.2.1\"]\n\n[[site.interface]]\nname = \"eth0\"\naddress = \"192.0.2.2/24\"\n{extra}"
    )
}

fn diags(text: &str) -> Vec<String> {
    match parse_str(text, "t.toml", Path::new("/etc/plexgate")) {
        Ok(c) => c.warnings.short_lines(),
        Err(d) => d.short_lines(),
    }
}

const PEER: &str = "[[peer]]\nname = \"p\"\nremote_address = \"203.0.113.5\"\nlocal_id = \"@gw\"\nremote_id = \"peer@example\"\nauth = \"psk\"\npsk_file = \"p.psk\"\n  [[peer.child]]\n  name = \"c\"\n  local_ts = [\"10.1.0.0/24\"]\n  remote_ts = [\"10.2.0.0/24\"]\n";

const HA: &str = "[ha]\nname = \"gw-1\"\nrank = 200\n  [ha.store]\n  kind = \"embedded\"\n  path = \"store.sqlite\"\n  key_file = \"store.key\"\n";

#[test]
fn retransmit_defaults_are_strongswans() {
    let c = parse_str(&site(PEER), "t.toml", Path::new("/")).unwrap();
    let r = c.policy.peers[0].retransmit;
    assert_eq!(r, Retransmit::default());
    assert_eq!(
        (r.timeout, r.base, r.tries),
        (Duration::from_secs(4), 1.8, 5)
    );
    // 4 + 7.2 + 12.96 + 23.328 + 41.99 + 75.58 s.
    assert_eq!(r.wait(0), Duration::from_secs(4));
    assert_eq!(r.wait(5).as_millis(), 75_582);
    assert_eq!(r.give_up_after().as_millis(), 165_061);
}

#[test]
fn retransmit_values_accept_floats_integers_and_units() {
    let text = site(&PEER.replace(
        "psk_file = \"p.psk\"",
        "psk_file = \"p.psk\"\nretransmit_timeout = \"1500ms\"\nretransmit_base = 2\nretransmit_tries = 3",
    ));
    let c = parse_str(&text, "t.toml", Path::new("/")).unwrap();
    let r = c.policy.peers[0].retransmit;
    assert_eq!(
        (r.timeout, r.base, r.tries),
        (Duration::from_millis(1500), 2.0, 3)
    );
    assert_eq!(r.give_up_after(), Duration::from_millis(1500 * 15));
    let text = site(&PEER.replace(
        "psk_file = \"p.psk\"",
        "psk_file = \"p.psk\"\nretransmit_timeout = 2.5\nretransmit_base = 1.0",
    ));
    let r = parse_str(&text, "t.toml", Path::new("/"))
        .unwrap()
        .policy
        .peers[0]
        .retransmit;
    assert_eq!((r.timeout, r.base), (Duration::from_millis(2500), 1.0));
    let text = site(&PEER.replace(
        "psk_file = \"p.psk\"",
        "psk_file = \"p.psk\"\nretransmit_base = \"fast\"",
    ));
    assert_eq!(
        diags(&text),
        ["t.toml:15:19: error: `retransmit_base` in peer \"p\" must be a number, found a string"]
    );
    let text = site(&PEER.replace(
        "psk_file = \"p.psk\"",
        "psk_file = \"p.psk\"\nretransmit_base = nan",
    ));
    assert_eq!(
        diags(&text),
        ["t.toml:15:19: error: `retransmit_base` in peer \"p\" must be a number, found a float"]
    );
}

#[test]
fn huge_durations_are_refused_not_overflowed() {
    // rekey + 10 % of this used to overflow a Duration.
    let text = site(&PEER.replace(
        "psk_file = \"p.psk\"",
        "psk_file = \"p.psk\"\nrekey_time = 18446744073709551615",
    ));
    // TOML integers stop at i64::MAX: that is a syntax error, not a crash.
    assert!(diags(&text)[0].contains("error"), "{:?}", diags(&text));
    let text = site(&PEER.replace(
        "psk_file = \"p.psk\"",
        "psk_file = \"p.psk\"\nrekey_time = \"18446744073709551615s\"",
    ));
    assert_eq!(
        diags(&text),
        ["t.toml:15:14: error: `rekey_time` in peer \"p\": duration 213503982334601d7h15s is too long"]
    );
    let text = site(&PEER.replace(
        "psk_file = \"p.psk\"",
        "psk_file = \"p.psk\"\nrekey_time = 9223372036854775807",
    ));
    assert_eq!(
        diags(&text),
        ["t.toml:15:14: error: `rekey_time` in peer \"p\": duration 9223372036854776000 s is too long"]
    );
}

#[test]
fn ha_defaults_and_values() {
    let c = parse_str(&site(HA), "t.toml", Path::new("/etc/plexgate")).unwrap();
    let ha = c.policy.ha.unwrap();
    assert_eq!(ha.heartbeat, Duration::from_millis(150));
    assert_eq!(ha.dead_after, Duration::from_millis(600));
    assert_eq!(ha.store_keys.key_file, Path::new("/etc/plexgate/store.key"));
    assert_eq!(ha.store_keys.key_id, 1);
    assert!(ha.store_keys.old_keys.is_empty());
    assert_eq!(
        ha.store,
        Store::Embedded {
            path: PathBuf::from("/etc/plexgate/store.sqlite")
        }
    );
    // dead_after follows a longer heartbeat (four of them) unless set.
    let text = site(&HA.replace("rank = 200", "rank = 200\nheartbeat = \"1s\""));
    let ha = parse_str(&text, "t.toml", Path::new("/"))
        .unwrap()
        .policy
        .ha
        .unwrap();
    assert_eq!(ha.dead_after, Duration::from_secs(4));
    let text = site(&HA.replace(
        "key_file = \"store.key\"",
        "key_file = \"store.key\"\n  key_id = 7\n  old_keys = [{ id = 6, file = \"old.key\" }]",
    ));
    let k = parse_str(&text, "t.toml", Path::new("/k"))
        .unwrap()
        .policy
        .ha
        .unwrap()
        .store_keys;
    assert_eq!(k.key_id, 7);
    assert_eq!(
        (k.old_keys[0].id, k.old_keys[0].file.as_path()),
        (6, Path::new("/k/old.key"))
    );
}

#[test]
fn ha_limits() {
    let text = site(&HA.replace("rank = 200", "rank = 200\nheartbeat = \"10ms\""));
    assert_eq!(
        diags(&text),
        ["t.toml:11:13: error: heartbeat 10ms in [ha] is too short: at least 20ms"]
    );
    let text = site(&HA.replace("  key_file = \"store.key\"\n", ""));
    assert_eq!(
        diags(&text),
        ["t.toml:11:3: error: [ha.store] is missing the required key `key_file`: recovery records are sealed with it (32 bytes as 64 hex digits, mode 0600)"]
    );
    // An etcd store takes the keys too.
    let text = site(&HA.replace(
        "kind = \"embedded\"\n  path = \"store.sqlite\"",
        "kind = \"etcd\"\n  endpoints = [\"http://192.0.2.50:2379\"]",
    ));
    assert!(diags(&text).is_empty(), "{:?}", diags(&text));
}

#[test]
fn links_default_to_gre_and_udp_is_noted() {
    let links = "[[target]]\nname = \"t1\"\naddress = \"10.9.0.2\"\nlink = \"l1\"\n[[link]]\nname = \"l1\"\ninterface = \"eth1\"\nlocal = \"10.9.0.1\"\nsubnet = \"10.9.0.0/30\"\n[cluster]\nkey_file = \"k\"\ngateway_id = 1\n";
    let c = parse_str(&site(links), "t.toml", Path::new("/")).unwrap();
    assert_eq!(c.policy.links[0].encap, LinkEncap::Gre);
    assert_eq!(c.policy.cluster.unwrap().gre_udp_port, 4754);
    assert!(c.warnings.is_empty());
    let udp = links.replace(
        "subnet = \"10.9.0.0/30\"",
        "subnet = \"10.9.0.0/30\"\nencap = \"udp\"",
    );
    let c = parse_str(&site(&udp), "t.toml", Path::new("/")).unwrap();
    assert_eq!(c.policy.links[0].encap, LinkEncap::Udp);
    assert_eq!(
        c.warnings.short_lines(),
        ["t.toml:17:9: warning: link \"l1\" carries GRE in UDP (RFC 8086) to port 4754: its target must run `plexgate target`, which decapsulates it (a kernel GRE tunnel does not)"]
    );
    assert!(c.policy.to_string().contains("gre in udp to port 4754"));
}

/// A temporary folder removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("plx-{}-policy-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    fn file(&self, name: &str, bytes: &[u8], mode: u32) {
        use std::os::unix::fs::PermissionsExt;
        let p = self.0.join(name);
        std::fs::write(&p, bytes).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    fn check(&self, text: &str) -> Vec<String> {
        let path = self.0.join("site.toml");
        std::fs::write(&path, text).unwrap();
        let prefix = format!("{}/", self.0.display());
        plexgate_policy::check(&path)
            .diagnostics
            .short_lines()
            .into_iter()
            .map(|l| l.replace(&prefix, ""))
            .collect()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn store_key_files_must_be_private_32_byte_keys() {
    let dir = TempDir::new("storekey");
    let hex = "6780ecf73737b5193e514292ba5d61f61b5e3f9cc2ede240aa00ff11ee22dd33";
    dir.file("store.key", format!("{hex}\n").as_bytes(), 0o600);
    dir.file("raw.key", &[7u8; 32], 0o600);
    dir.file("short.key", b"abc\n", 0o600);
    dir.file("open.key", hex.as_bytes(), 0o644);
    let old = "  old_keys = [{ id = 2, file = \"raw.key\" }, { id = 3, file = \"short.key\" }, { id = 4, file = \"open.key\" }]\n";
    let text = site(&format!("{HA}{old}"));
    assert_eq!(
        dir.check(&text),
        [
            "site.toml:15:62: error: old store key file short.key is not a store key: it must hold 32 bytes as 64 hex digits (make one with `openssl rand -hex 32 > short.key`) or 32 raw bytes",
            "site.toml:15:94: error: old store key file open.key has mode 0644: group and others can access it; run `chmod 600 open.key`",
        ]
    );
}
