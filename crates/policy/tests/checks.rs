//! Semantic checks one at a time, on small policies built in the test: each test
//! states the exact diagnostic (line:column and sentence) or the model value.

use std::path::Path;

use plexgate_policy::{parse_str, Identity, Mode, Store};

/// A minimal valid site; `extra` is appended.
fn site(extra: &str) -> String {
    format!(
        "[site]\nname = \"t\"\ngateway_vipas = [\"192.0.2.1\"]\n\n[[site.interface]]\nname = \"eth0\"\naddress = \"192.0.2.2/24\"\n{extra}"
    )
}

/// Lines 1-7 are the site; extra starts on line 8.
fn diags(text: &str) -> Vec<String> {
    match parse_str(text, "t.toml", Path::new("/etc/plexgate")) {
        Ok(c) => c.warnings.short_lines(),
        Err(d) => d.short_lines(),
    }
}

const PEER: &str = r#"
[[peer]]
name = "p"
remote_address = "203.0.113.5"
local_id = "@gw"
remote_id = "peer@example"
auth = "psk"
psk_file = "p.psk"
  [[peer.child]]
  name = "c"
  local_ts = ["10.1.0.0/24"]
  remote_ts = ["10.2.0.0/24"]
"#;

#[test]
fn minimal_site_is_clean_and_has_defaults() {
    let c = parse_str(&site(""), "t.toml", Path::new("/etc/plexgate")).unwrap();
    assert!(c.warnings.is_empty());
    assert_eq!(c.policy.site.ike_port, 500);
    assert_eq!(c.policy.site.natt_port, 4500);
    assert!(c.policy.peers.is_empty());
}

#[test]
fn peer_defaults_and_paths_resolve_against_the_policy_directory() {
    let c = parse_str(&site(PEER), "t.toml", Path::new("/etc/plexgate")).unwrap();
    let p = &c.policy.peers[0];
    assert_eq!(p.remote_id, Identity::Email("peer@example".into()));
    match &p.auth {
        plexgate_policy::Auth::Psk { psk_file } => {
            assert_eq!(psk_file, Path::new("/etc/plexgate/p.psk"))
        }
        a => panic!("{a:?}"),
    }
    // Default proposals, lifetimes, replay window, mode.
    assert_eq!(p.proposals.len(), 2);
    let ch = &p.children[0];
    assert_eq!(ch.esp_proposals.len(), 2);
    assert_eq!(ch.replay_window, 1024);
    assert_eq!(ch.mode, Mode::Tunnel);
    assert_eq!(ch.lifetime.rekey_time.as_secs(), 3600);
    assert_eq!(ch.lifetime.life_time.as_secs(), 3960);
}

#[test]
fn gateway_vipa_without_interfaces() {
    let d = diags("[site]\nname = \"t\"\ngateway_vipas = [\"192.0.2.1\"]\n");
    assert_eq!(
        d,
        ["t.toml:3:18: error: gateway VIPA 192.0.2.1 is not on any local subnet: [site] lists no [[site.interface]]"]
    );
}

#[test]
fn natt_port_equal_to_ike_port() {
    let text = site("").replace(
        "[[site.interface]]",
        "natt_port = 500\n\n[[site.interface]]",
    );
    assert_eq!(
        diags(&text),
        ["t.toml:5:13: error: natt_port 500 is the same as ike_port; NAT-T needs its own port (usually 4500)"]
    );
}

#[test]
fn overlapping_links_and_two_targets_on_one_link_and_shared_address() {
    let text = site(
        r#"
[[target]]
name = "a"
address = "10.9.0.2"
link = "l1"
[[target]]
name = "b"
address = "10.9.0.2"
link = "l1"
[[link]]
name = "l1"
interface = "i1"
local = "10.9.0.1"
subnet = "10.9.0.0/30"
[[link]]
name = "l2"
interface = "i2"
local = "10.9.0.5"
subnet = "10.9.0.0/29"
remote = "10.9.0.6"
[cluster]
key_file = "k"
gateway_id = 1
"#,
    );
    assert_eq!(
        diags(&text),
        [
            "t.toml:15:11: error: address 10.9.0.2 of target \"b\" is used by another target",
            "t.toml:16:8: error: link \"l1\" already carries a target; a link is point-to-point, give target \"b\" its own link",
            "t.toml:26:10: error: subnet 10.9.0.0/29 of link \"l2\" overlaps subnet 10.9.0.0/30 of link \"l1\"; GRE anti-spoofing needs each link to be distinct",
        ]
    );
}

#[test]
fn auth_fields_must_match_the_method() {
    let text = site(&PEER.replace(
        "psk_file = \"p.psk\"",
        "psk_file = \"p.psk\"\ncert = \"c.pem\"",
    ));
    assert_eq!(
        diags(&text),
        ["t.toml:16:8: error: `cert` in peer \"p\" has no effect with auth = \"psk\"; remove it"]
    );
    let text = site(&PEER.replace("auth = \"psk\"", "auth = \"cert\""));
    assert_eq!(
        diags(&text),
        [
            "t.toml:14:8: error: peer \"p\" uses auth = \"cert\" but has no `cert`",
            "t.toml:14:8: error: peer \"p\" uses auth = \"cert\" but has no `private_key`",
            "t.toml:14:8: error: peer \"p\" uses auth = \"cert\" but has no `ca`",
            "t.toml:15:12: error: `psk_file` in peer \"p\" has no effect with auth = \"cert\"; remove it",
        ]
    );
    let text = site(&PEER.replace("auth = \"psk\"", "auth = \"rsa\""));
    assert_eq!(diags(&text), ["t.toml:14:8: error: `auth` in peer \"p\" is \"rsa\", but it must be one of \"psk\", \"cert\""]);
}

#[test]
fn local_identity_cannot_be_any_and_trap_needs_a_host() {
    let text = site(
        &PEER
            .replace("local_id = \"@gw\"", "local_id = \"%any\"")
            .replace(
                "remote_address = \"203.0.113.5\"",
                "remote_address = \"203.0.113.0/24\"",
            )
            .replace(
                "remote_ts = [\"10.2.0.0/24\"]",
                "remote_ts = [\"10.2.0.0/24\"]\n  start_action = \"trap\"",
            ),
    );
    assert_eq!(
        diags(&text),
        [
            "t.toml:12:12: error: local_id of peer \"p\" cannot be %any: we must say who we are",
            "t.toml:20:18: error: child \"c\" has start_action = \"trap\", but peer \"p\" has no single remote address to initiate to",
        ]
    );
}

#[test]
fn dvipa_checks_ipv6_any_and_gateway_collision() {
    let text = site(
        r#"
[[peer]]
name = "p"
remote_address = "any"
local_id = "@gw"
remote_id = "%any"
auth = "psk"
psk_file = "p.psk"
  [[peer.child]]
  name = "v6"
  local_ts = ["2001:db8:1::/64[tcp/443]", "2001:db8:1::10"]
  remote_ts = ["dynamic"]
  [[peer.child]]
  name = "all"
  local_ts = ["any"]
  remote_ts = ["dynamic"]
[[dvipa]]
address = "2001:db8:1::10"
ports = ["443"]
targets = []
[[dvipa]]
address = "192.0.2.1"
ports = "80"
targets = "all"
"#,
    );
    assert_eq!(
        diags(&text),
        [
            "t.toml:18:15: error: local_ts of child \"v6\" covers DVIPA 2001:db8:1::10 with the wider selector 2001:db8:1::/64; SAs for DVIPA traffic must name the DVIPA itself (2001:db8:1::10/128) so they can move between gateways",
            "t.toml:22:15: error: local_ts of child \"all\" covers DVIPA 2001:db8:1::10 with the wider selector any; SAs for DVIPA traffic must name the DVIPA itself (2001:db8:1::10/128) so they can move between gateways",
            "t.toml:27:11: error: DVIPA 2001:db8:1::10 lists no targets (write \"all\" or target names)",
            "t.toml:29:11: error: DVIPA 192.0.2.1 is also a gateway VIPA; the outer and inner addresses must differ",
        ]
    );
    // One error per wide selector: the other DVIPAs it covers are a note.
    let d = parse_str(&text, "t.toml", Path::new("/etc/plexgate")).unwrap_err();
    let all = d
        .iter()
        .find(|x| x.message.contains("child \"all\""))
        .unwrap();
    let notes: Vec<&str> = all.notes.iter().map(|n| n.message.as_str()).collect();
    assert_eq!(
        notes,
        [
            "DVIPA 2001:db8:1::10 is defined here",
            "it also covers DVIPA 192.0.2.1"
        ]
    );
}

#[test]
fn spd_directions_protocols_and_ports() {
    // An "in" rule does not shadow an "out" rule; an "out" rule does not shadow a
    // "both" rule; a tcp rule does not shadow an any-protocol rule; a port rule
    // without a port protocol is an error.
    let text = site(
        r#"
[[spd]]
direction = "in"
local = "10.0.0.0/8"
remote = "any"
action = "bypass"
[[spd]]
direction = "out"
local = "10.0.0.0/8"
remote = "any"
action = "discard"
[[spd]]
local = "10.1.0.0/16"
remote = "any"
protocol = "tcp"
action = "discard"
[[spd]]
local = "10.1.0.0/16"
remote = "any"
action = "discard"
[[spd]]
local = "10.2.0.0/16"
remote = "any"
protocol = "icmp"
local_port = 80
action = "discard"
[[spd]]
direction = "in"
local = "10.1.2.0/24"
remote = "192.0.2.0/24"
action = "bypass"
"#,
    );
    assert_eq!(
        diags(&text),
        [
            "t.toml:32:14: error: SPD rule #5 names `local_port` but protocol icmp has no ports (use tcp, udp or sctp)",
            "t.toml:34:1: error: SPD rule #6 can never match: SPD rule #1 before it matches all of its traffic (with the same action); remove it or move it above",
        ]
    );
}

#[test]
fn ha_store_defaults_and_duplicate_gateways() {
    let text = site(
        r#"
[ha]
name = "gw-1"
rank = 100
  [[ha.peer]]
  name = "gw-1"
  address = "192.0.2.12"
  rank = 100
  [ha.store]
  kind = "etcd"
  endpoints = ["http://127.0.0.1:2379"]
  key_file = "store.key"
"#,
    );
    assert_eq!(
        diags(&text),
        [
            "t.toml:13:10: error: duplicate gateway name \"gw-1\"",
            "t.toml:15:10: warning: gateway \"gw-1\" has the same default rank 100 as this gateway \"gw-1\"; DVIPA backups must then set ranks explicitly",
        ]
    );
    let ok = parse_str(
        &text
            .replace("name = \"gw-1\"\n  address", "name = \"gw-2\"\n  address")
            .replace("rank = 100\n  [ha.store]", "rank = 50\n  [ha.store]"),
        "t.toml",
        Path::new("."),
    )
    .unwrap();
    match &ok.policy.ha.unwrap().store {
        Store::Etcd { prefix, lease, .. } => {
            assert_eq!(prefix, "/plexgate/t/");
            assert_eq!(lease.as_secs(), 10);
        }
        s => panic!("{s:?}"),
    }
}

#[test]
fn drained_pool_and_backups_without_ha() {
    let text = site(
        r#"
[[dvipa]]
address = "10.100.0.10"
ports = [443]
targets = ["a"]
weights = { a = 0 }
backup = [{ gateway = "gw-2", rank = 10 }]
[[target]]
name = "a"
address = "10.9.0.2"
link = "l"
[[link]]
name = "l"
interface = "i"
local = "10.9.0.1"
subnet = "10.9.0.0/30"
[cluster]
key_file = "k"
gateway_id = 1
port = 4500
"#,
    );
    assert_eq!(
        diags(&text),
        [
            "t.toml:10:11: warning: every target of DVIPA 10.100.0.10 has weight 0 (drained): new connections will be refused",
            "t.toml:14:10: error: DVIPA 10.100.0.10 has backups, but there is no [ha] section naming gateways",
            "t.toml:27:8: error: cluster port 4500 collides with the IKE ports 500 / 4500",
        ]
    );
}

#[test]
fn durations_accept_units_and_reject_nonsense() {
    let text = site(&PEER.replace(
        "psk_file = \"p.psk\"",
        "psk_file = \"p.psk\"\nrekey_time = \"2x\"\ndpd_delay = 0",
    ));
    assert_eq!(
        diags(&text),
        ["t.toml:16:14: error: `rekey_time` in peer \"p\": unknown time unit `x` in `2x`: use ms, s, m, h or d"]
    );
    let ok = parse_str(
        &site(&PEER.replace(
            "psk_file = \"p.psk\"",
            "psk_file = \"p.psk\"\ndpd_delay = 0",
        )),
        "t.toml",
        Path::new("."),
    )
    .unwrap();
    assert_eq!(ok.policy.peers[0].dpd_delay, None);
}

#[test]
fn protect_rule_outside_the_child_selectors_warns() {
    let text = site(&format!(
        "{PEER}{}",
        r#"
[[spd]]
local = "10.1.0.0/24"
remote = "10.2.0.0/24"
action = "protect"
peer = "p"
child = "c"
[[spd]]
local = "10.1.0.5"
remote = "10.3.0.0/24"
protocol = "udp"
remote_port = 53
action = "protect"
peer = "p"
child = "c"
"#
    ));
    assert_eq!(
        diags(&text),
        ["t.toml:29:10: warning: SPD rule #2 sends remote 10.3.0.0/24 protocol udp ports 53 to child \"c\", but no single remote_ts of that child covers it; packets outside the child's selectors have no SA"]
    );
}

#[test]
fn encap_udp_is_parsed_and_warns_where_we_cannot_initiate() {
    let text = site(&PEER.replace("auth = \"psk\"", "auth = \"psk\"\nencap = \"udp\""));
    let c = parse_str(&text, "t.toml", Path::new("/etc/plexgate")).unwrap();
    assert_eq!(c.policy.peers[0].encap, plexgate_policy::Encap::Udp);
    assert!(c.warnings.is_empty(), "{:?}", c.warnings.short_lines());
    let default = parse_str(&site(PEER), "t.toml", Path::new("/etc/plexgate")).unwrap();
    assert_eq!(default.policy.peers[0].encap, plexgate_policy::Encap::Auto);
    let responder_only = text.replace(
        "remote_address = \"203.0.113.5\"",
        "remote_address = \"any\"",
    );
    assert_eq!(
        diags(&responder_only),
        ["t.toml:15:9: warning: encap = \"udp\" in peer \"p\" has no effect: we never initiate to a peer without a single remote_address, and a responder uses what the initiator chose"]
    );
    assert_eq!(
        diags(&text.replace("encap = \"udp\"", "encap = \"yes\"")),
        ["t.toml:15:9: error: `encap` in peer \"p\" is \"yes\", but it must be one of \"auto\", \"udp\""]
    );
}
