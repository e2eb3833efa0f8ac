//! Broken policies in `tests/bad/`: each must fail `check` with exactly the listed
//! diagnostics (file:line:column, severity, sentence), in position order.
//!
//! The tests run with the package directory as working directory (cargo does
//! that), so file names in messages are `tests/bad/NAME.toml`.

use std::path::Path;

/// (file in tests/bad, every expected diagnostic as a short line).
const EXPECTED: &[(&str, &[&str])] = &[
    (
        "addresses.toml",
        &[
            "tests/bad/addresses.toml:3:31: error: gateway VIPA 203.0.113.9 is not on any local subnet (the interfaces have 192.0.2.0/24)",
            "tests/bad/addresses.toml:16:11: error: address 10.9.0.9 of target \"web-2\" is not in subnet 10.9.0.4/30 of its link \"to-web-2\"",
            "tests/bad/addresses.toml:30:10: error: remote address 10.9.0.6 of link \"to-web-2\" is not the address of its target \"web-2\"",
            "tests/bad/addresses.toml:34:11: error: address 10.9.0.12 of target \"web-3\" is the network address of subnet 10.9.0.12/30 of its link \"to-web-3\"",
            "tests/bad/addresses.toml:44:8: error: link \"to-nowhere\" has no `remote` address and no target sits on it",
            "tests/bad/addresses.toml:47:10: error: `subnet` in link \"to-nowhere\": subnet 10.9.0.9/30 has host bits set; did you mean 10.9.0.8/30?",
        ],
    ),
    (
        "duplicates.toml",
        &[
            "tests/bad/duplicates.toml:23:10: error: duplicate child name \"web\"",
            "tests/bad/duplicates.toml:28:8: error: duplicate peer name \"rw\"",
            "tests/bad/duplicates.toml:28:8: warning: peer \"rw\" has no [[peer.child]]: it can authenticate but carries no traffic",
            "tests/bad/duplicates.toml:41:11: error: DVIPA 10.100.0.10 is defined twice",
            "tests/bad/duplicates.toml:51:8: error: duplicate target name \"web-1\"",
            "tests/bad/duplicates.toml:68:8: error: duplicate link name \"to-web-2\"",
        ],
    ),
    (
        "dvipa_subnet.toml",
        &[
            "tests/bad/dvipa_subnet.toml:19:15: error: local_ts of child \"net\" covers DVIPA 10.100.0.10 with the wider selector 10.100.0.0/24; SAs for DVIPA traffic must name the DVIPA itself (10.100.0.10/32) so they can move between gateways",
            "tests/bad/dvipa_subnet.toml:24:9: error: the local selector of SPD rule #1 (\"pool\") covers DVIPA 10.100.0.10 with the wider selector 10.100.0.0-10.100.0.20; SAs for DVIPA traffic must name the DVIPA itself (10.100.0.10/32) so they can move between gateways",
        ],
    ),
    (
        "files.toml",
        &[
            "tests/bad/files.toml:10:8: warning: peer \"a\" has no [[peer.child]]: it can authenticate but carries no traffic",
            "tests/bad/files.toml:15:12: error: PSK file tests/bad/keys/readable.psk has mode 0644: group and others can access it; run `chmod 600 tests/bad/keys/readable.psk`",
            "tests/bad/files.toml:18:8: warning: peer \"b\" has no [[peer.child]]: it can authenticate but carries no traffic",
            "tests/bad/files.toml:23:8: error: certificate tests/bad/keys/missing-cert.pem does not exist",
            "tests/bad/files.toml:24:15: error: private key /nonexistent/plexgate/key.pem does not exist",
            "tests/bad/files.toml:25:7: error: CA certificate tests/bad/keys is not a regular file",
            "tests/bad/files.toml:28:12: error: cluster key file tests/bad/keys/readable.psk has mode 0644: group and others can access it; run `chmod 600 tests/bad/keys/readable.psk`",
        ],
    ),
    (
        "ha.toml",
        &[
            "tests/bad/ha.toml:16:30: error: backups \"gw-2\" and \"gw-3\" of DVIPA 10.100.0.10 both have rank 200; ranks decide the takeover order and must differ",
            "tests/bad/ha.toml:17:15: error: gateway \"gw-1\" is both the routing gateway and a backup of DVIPA 10.100.0.10",
            "tests/bad/ha.toml:17:30: error: `rank` = 255 in a backup of DVIPA 10.100.0.10 is out of range: it must be between 1 and 254",
            "tests/bad/ha.toml:18:15: error: backup gateway \"gw-9\" of DVIPA 10.100.0.10 is neither [ha] name nor an [[ha.peer]] (known: gw-1, gw-2, gw-3)",
            "tests/bad/ha.toml:22:11: error: DVIPA 10.100.0.11 needs a `routing_gateway` because [ha] is present",
            "tests/bad/ha.toml:28:8: error: `rank` = 0 in [ha] is out of range: it must be between 1 and 254",
            "tests/bad/ha.toml:40:3: error: [ha.store] is missing the required key `key_file`: recovery records are sealed with it (32 bytes as 64 hex digits, mode 0600)",
            "tests/bad/ha.toml:41:10: error: store kind \"zookeeper\" is unknown: use \"embedded\" or \"etcd\"",
        ],
    ),
    (
        "ha_store.toml",
        &[
            "tests/bad/ha_store.toml:14:14: error: dead_after 250ms in [ha] must be at least 3 heartbeats (300ms): a gateway is declared dead only after several missed heartbeats",
            "tests/bad/ha_store.toml:22:12: error: old store key id 2 is the current `key_id`; an old key needs its own id",
            "tests/bad/ha_store.toml:24:12: error: two old store keys have id 1",
            "tests/bad/ha_store.toml:25:12: error: `id` = 70000 in [ha.store] old key #4 is out of range: it must be between 1 and 65535",
        ],
    ),
    (
        "link_encap.toml",
        &[
            "tests/bad/link_encap.toml:26:9: warning: link \"l1\" carries GRE in UDP (RFC 8086) to port 4500: its target must run `plexgate target`, which decapsulates it (a kernel GRE tunnel does not)",
            "tests/bad/link_encap.toml:33:9: error: `encap` in link \"l2\" is \"ipip\", but it must be one of \"gre\", \"udp\"",
            "tests/bad/link_encap.toml:38:16: error: gre_udp_port 4500 collides with the IKE ports 500 / 4500 or the cluster port 7600",
        ],
    ),
    (
        "missing_keys.toml",
        &[
            "tests/bad/missing_keys.toml:1:1: error: [site] is missing the required key `name`",
            "tests/bad/missing_keys.toml:8:1: error: peer \"rw\" is missing the required key `remote_id`",
            "tests/bad/missing_keys.toml:8:1: error: peer \"rw\" is missing the required key `auth` (\"psk\" or \"cert\")",
            "tests/bad/missing_keys.toml:9:8: warning: peer \"rw\" has no [[peer.child]]: it can authenticate but carries no traffic",
            "tests/bad/missing_keys.toml:14:1: error: target \"t1\" is missing the required key `address`",
            "tests/bad/missing_keys.toml:15:8: error: the site has targets but no [cluster] section: gateways and targets need its control-channel key (`key_file`) and `gateway_id`",
            "tests/bad/missing_keys.toml:18:1: error: link \"l1\" is missing the required key `interface`",
            "tests/bad/missing_keys.toml:23:1: error: SPD rule #1 is missing the required key `action` (\"protect\", \"bypass\" or \"discard\")",
        ],
    ),
    (
        "proposals.toml",
        &[
            "tests/bad/proposals.toml:16:46: error: unknown algorithm `aes257` in IKE proposal `aes257-sha256-x25519`; did you mean `aes256`?",
            "tests/bad/proposals.toml:16:70: error: IKE proposal `aes256gcm16-ecp384` uses an AEAD cipher but names no PRF (add e.g. prfsha256 or prfsha384)",
            "tests/bad/proposals.toml:16:92: error: IKE proposal `aes128-sha1-modp1024`: the IKE engine does not implement sha1 or modp1024; it implements aes128gcm16, aes256gcm16, aes128, aes256, with sha256, sha384, sha512 after a CBC cipher; PRFs prfsha256, prfsha384, prfsha512; key exchange modp2048, ecp256, ecp384, x25519",
            "tests/bad/proposals.toml:22:20: error: ESP proposal `aes256gcm16-sha256` pairs an AEAD cipher with an integrity algorithm; AEAD ciphers carry their own integrity, drop the sha…",
            "tests/bad/proposals.toml:22:42: error: unknown algorithm `3des` in ESP proposal `3des-sha1` (it is weak and not supported)",
        ],
    ),
    (
        "ranges.toml",
        &[
            "tests/bad/ranges.toml:4:12: error: `ike_port` = 70000 in [site] is out of range: it must be between 1 and 65535",
            "tests/bad/ranges.toml:18:13: error: rekey_time (14400 s) of peer \"rw\" must be below life_time (10800 s): the SA must be rekeyed before it expires",
            "tests/bad/ranges.toml:22:15: error: `local_ts` in child \"web\" of peer \"rw\": port range 500-400 is inverted: 500 is above 400",
            "tests/bad/ranges.toml:24:19: error: replay window 64 of child \"web\" of peer \"rw\" is out of range: it must be between 128 and 4096 packets (default 1024)",
            "tests/bad/ranges.toml:26:16: error: rekey_bytes (1000 bytes) of child \"web\" must be below life_bytes (1000 bytes): the SA must be rekeyed before it expires",
            "tests/bad/ranges.toml:32:19: error: replay window 8192 of child \"mail\" of peer \"rw\" is out of range: it must be between 128 and 4096 packets (default 1024)",
            "tests/bad/ranges.toml:36:15: error: `ports` in DVIPA 10.100.0.10: port range 9000-8000 is inverted: 9000 is above 8000",
            "tests/bad/ranges.toml:38:21: error: weight -3 for target \"web-1\" in DVIPA 10.100.0.10 is invalid: weights are 0 (drain) to 1000000",
            "tests/bad/ranges.toml:53:14: error: `gateway_id` = 0 in [cluster] is out of range: it must be between 1 and 4294967295",
        ],
    ),
    (
        "references.toml",
        &[
            "tests/bad/references.toml:21:18: error: child \"web\" has start_action = \"start\", but peer \"rw\" has no single remote address to initiate to",
            "tests/bad/references.toml:29:8: error: SPD rule #1 protects with peer \"roadwarriors\", but no [[peer]] has that name",
            "tests/bad/references.toml:37:9: error: SPD rule #2 protects with child \"mail\", but peer \"rw\" has no child of that name",
            "tests/bad/references.toml:42:21: error: DVIPA 10.100.0.10 names target \"web-9\", but no [[target]] has that name",
            "tests/bad/references.toml:43:24: error: DVIPA 10.100.0.10 sets a weight for \"web-2\", which is not one of its targets",
            "tests/bad/references.toml:44:19: error: DVIPA 10.100.0.10 names routing gateway \"gw-1\", but there is no [ha] section naming gateways",
            "tests/bad/references.toml:54:8: error: target \"web-2\" names link \"to-web-7\", but no [[link]] has that name (known: \"to-web-1\")",
        ],
    ),
    (
        "retransmit.toml",
        &[
            "tests/bad/retransmit.toml:11:8: warning: peer \"flood\" has no [[peer.child]]: it can authenticate but carries no traffic",
            "tests/bad/retransmit.toml:17:22: error: retransmit_timeout 10ms of peer \"flood\" is too short: at least 100ms",
            "tests/bad/retransmit.toml:18:19: error: `retransmit_base` = 0.5 in peer \"flood\" is out of range: it must be between 1.0 and 10.0",
            "tests/bad/retransmit.toml:19:20: error: `retransmit_tries` = 0 in peer \"flood\" is out of range: it must be between 1 and 20",
            "tests/bad/retransmit.toml:22:8: warning: peer \"forever\" has no [[peer.child]]: it can authenticate but carries no traffic",
            "tests/bad/retransmit.toml:29:19: error: peer \"forever\" would retransmit for 3632067d2h1m before giving up (retransmit_timeout 1m × retransmit_base 3^n, 20 tries); keep it under 1d",
        ],
    ),
    (
        "spd_shadowed.toml",
        &[
            "tests/bad/spd_shadowed.toml:18:1: error: SPD rule #2 (\"https-in\") can never match: SPD rule #1 (\"all-web\") before it matches all of its traffic (with a different action); remove it or move it above",
            "tests/bad/spd_shadowed.toml:27:1: error: SPD rule #3 (\"https-again\") can never match: SPD rule #1 (\"all-web\") before it matches all of its traffic (with the same action); remove it or move it above",
        ],
    ),
    (
        "syntax.toml",
        &[
            "tests/bad/syntax.toml:2:15: error: TOML syntax: invalid basic string, expected `\"`",
            "tests/bad/syntax.toml:7:16: error: TOML syntax: invalid float, expected nothing; addresses are strings and must be quoted: \"192.0.2.2/24\"",
        ],
    ),
    (
        "unsupported.toml",
        &[
            "tests/bad/unsupported.toml:22:3: error: IKE proposal `chacha20poly1305-prfsha256-x25519`: the IKE engine does not implement chacha20poly1305; it implements aes128gcm16, aes256gcm16, aes128, aes256, with sha256, sha384, sha512 after a CBC cipher; PRFs prfsha256, prfsha384, prfsha512; key exchange modp2048, ecp256, ecp384, x25519",
            "tests/bad/unsupported.toml:23:3: error: IKE proposal `aes256gcm16-prfsha512-x448`: the IKE engine does not implement x448; it implements aes128gcm16, aes256gcm16, aes128, aes256, with sha256, sha384, sha512 after a CBC cipher; PRFs prfsha256, prfsha384, prfsha512; key exchange modp2048, ecp256, ecp384, x25519",
            "tests/bad/unsupported.toml:32:5: error: ESP proposal `aes192-sha256`: the data plane cannot install aes192; it installs aes128gcm16, aes256gcm16, chacha20poly1305, aes128-sha256, aes128-sha384, aes128-sha512, aes256-sha256, aes256-sha384, aes256-sha512",
            "tests/bad/unsupported.toml:33:5: error: ESP proposal `aes256gcm12`: the data plane cannot install aes256gcm12; it installs aes128gcm16, aes256gcm16, chacha20poly1305, aes128-sha256, aes128-sha384, aes128-sha512, aes256-sha256, aes256-sha384, aes256-sha512",
            "tests/bad/unsupported.toml:34:5: error: ESP proposal `aes128-sha1`: the data plane cannot install sha1; it installs aes128gcm16, aes256gcm16, chacha20poly1305, aes128-sha256, aes128-sha384, aes128-sha512, aes256-sha256, aes256-sha384, aes256-sha512",
            "tests/bad/unsupported.toml:36:5: error: ESP proposal `aes128gcm16-ecp521`: the IKE engine has no key exchange ecp521 for PFS; it has modp2048, ecp256, ecp384, x25519",
        ],
    ),
    (
        "unknown_keys.toml",
        &[
            "tests/bad/unknown_keys.toml:4:1: error: unknown key `ike-port` in [site]; did you mean `ike_port`?",
            "tests/bad/unknown_keys.toml:22:3: error: unknown key `replay_windw` in child \"web\" of peer \"rw\"; did you mean `replay_window`?",
            "tests/bad/unknown_keys.toml:28:1: error: unknown key `distribution` in DVIPA 10.100.0.10; known keys are: address, ports, targets, method, weights, routing_gateway, backup, plain_traffic, gateway_vipa",
            "tests/bad/unknown_keys.toml:30:2: error: unknown key `firewall` in the top level; known keys are: site, peer, spd, dvipa, target, link, cluster, ha, log, l2",
        ],
    ),
    (
        "wrong_types.toml",
        &[
            "tests/bad/wrong_types.toml:2:8: error: `name` in [site] must be a string, found an integer",
            "tests/bad/wrong_types.toml:4:12: error: `ike_port` in [site] must be an integer, found a string",
            "tests/bad/wrong_types.toml:12:15: error: `ports` in DVIPA 10.100.0.10: a port must be a number or a string like \"1024-65535\"",
            "tests/bad/wrong_types.toml:13:18: error: items of `targets` in DVIPA 10.100.0.10 must be strings, found an integer",
            "tests/bad/wrong_types.toml:19:10: error: `weight` in target \"t1\" must be an integer, found a float",
            "tests/bad/wrong_types.toml:32:10: error: `keylog` in [log] must be a string, found a boolean",
        ],
    ),
];

mod fixture;

/// `tests/bad/NAME` in a scratch copy with the key modes the checks need.
fn bad(name: &str) -> std::path::PathBuf {
    fixture::path("crates/policy/tests/bad").join(name)
}

/// Messages name the copy's files as the checkout would (`tests/bad/NAME`).
fn as_in_checkout(text: &str) -> String {
    text.replace(&fixture::bad_prefix(), "")
}

#[test]
fn every_bad_example_reports_exactly_its_errors() {
    let mut failures = Vec::new();
    for (file, want) in EXPECTED {
        let path = bad(file);
        let report = plexgate_policy::check(&path);
        assert!(report.has_errors(), "{} passed the check", path.display());
        assert!(report.policy.is_none());
        let got: Vec<String> = report
            .diagnostics
            .short_lines()
            .iter()
            .map(|l| as_in_checkout(l))
            .collect();
        let path = format!("tests/bad/{file}");
        if got != *want {
            failures.push(format!(
                "{path}:\n  got:\n    {}\n  want:\n    {}",
                got.join("\n    "),
                want.join("\n    ")
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn every_file_in_bad_has_expectations() {
    let mut on_disk: Vec<String> = std::fs::read_dir("tests/bad")
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".toml"))
        .collect();
    on_disk.sort();
    let mut listed: Vec<String> = EXPECTED.iter().map(|(f, _)| f.to_string()).collect();
    listed.sort();
    assert_eq!(on_disk, listed);
}

#[test]
fn rendering_quotes_the_line_with_a_caret_and_notes() {
    let report = plexgate_policy::check(&bad("addresses.toml"));
    let text = as_in_checkout(&report.to_string());
    let want = "tests/bad/addresses.toml:16:11: error: address 10.9.0.9 of target \"web-2\" is not in subnet 10.9.0.4/30 of its link \"to-web-2\"
   |
16 | address = \"10.9.0.9\"
   |           ^^^^^^^^^^
   = note: link \"to-web-2\" has subnet 10.9.0.4/30 (tests/bad/addresses.toml:29:10)
";
    assert!(text.contains(want), "{text}");
    assert!(
        text.ends_with("tests/bad/addresses.toml: 6 errors, 0 warnings\n"),
        "{text}"
    );
}

#[test]
fn shadowing_note_points_at_the_earlier_rule() {
    let report = plexgate_policy::check(&bad("spd_shadowed.toml"));
    let d: Vec<_> = report.diagnostics.iter().collect();
    assert_eq!(d.len(), 2);
    let note = &d[0].notes[0];
    assert_eq!(note.message, "SPD rule #1 (\"all-web\") is here");
    assert_eq!(
        note.position,
        Some(plexgate_policy::Position { line: 9, column: 1 })
    );
}

#[test]
fn missing_policy_file_is_a_diagnostic() {
    let report = plexgate_policy::check(Path::new("tests/bad/does-not-exist.toml"));
    let lines = report.diagnostics.short_lines();
    assert_eq!(lines.len(), 1);
    assert!(
        lines[0].starts_with("tests/bad/does-not-exist.toml: error: cannot read the policy file:"),
        "{}",
        lines[0]
    );
}
