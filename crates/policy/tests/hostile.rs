//! Hostile and careless files (#15): short pre-shared keys, mistakes of one
//! kind that used to make two errors, selectors of families that never meet,
//! and files whose size or number of problems would otherwise make the checker
//! or its output explode.
//!
//! Key files are written to a fresh temporary folder with the modes the test
//! needs, so nothing depends on the modes of the checkout.

use std::path::{Path, PathBuf};

use plexgate_policy::{parse_str, MIN_PSK_BYTES};

/// A temporary folder removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("plx-{}-policy-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    /// Writes `name` with `bytes` and mode 0600.
    fn secret(&self, name: &str, bytes: &[u8]) -> PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let p = self.0.join(name);
        std::fs::write(&p, bytes).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        p
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

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

/// A peer on lines 8-15 whose PSK file is `psk`.
fn psk_peer(psk: &str) -> String {
    site(&format!(
        "[[peer]]\nname = \"p\"\nremote_address = \"203.0.113.5\"\nlocal_id = \"@gw\"\nremote_id = \"peer@example\"\nauth = \"psk\"\npsk_file = \"{psk}\"\n  [[peer.child]]\n  name = \"c\"\n  local_ts = [\"10.1.0.0/24\"]\n  remote_ts = [\"10.2.0.0/24\"]\n"
    ))
}

/// `check` on `text` written as `site.toml` in `dir`.
fn check_in(dir: &TempDir, text: &str) -> Vec<String> {
    let path = dir.0.join("site.toml");
    std::fs::write(&path, text).unwrap();
    let report = plexgate_policy::check(&path);
    let prefix = format!("{}/", dir.0.display());
    report
        .diagnostics
        .short_lines()
        .into_iter()
        .map(|l| l.replace(&prefix, ""))
        .collect()
}

#[test]
fn empty_and_short_psks_are_refused_at_psk_file() {
    let dir = TempDir::new("psk");
    dir.secret("empty.psk", b"\n");
    dir.secret("short.psk", b"0123456789abcde\r\n"); // 15 bytes once trimmed
    dir.secret("exact.psk", b"0123456789abcdef\n"); // 16 bytes
    assert_eq!(MIN_PSK_BYTES, 16);
    assert_eq!(
        check_in(&dir, &psk_peer("empty.psk")),
        ["site.toml:14:12: error: PSK file empty.psk is empty (after its trailing newline): a pre-shared key must be at least 16 bytes; make one with `head -c 32 /dev/urandom | base64 > empty.psk`"]
    );
    assert_eq!(
        check_in(&dir, &psk_peer("short.psk")),
        ["site.toml:14:12: error: PSK file short.psk holds a 15-byte key, too short to resist guessing: a pre-shared key must be at least 16 bytes; make one with `head -c 32 /dev/urandom | base64 > short.psk`"]
    );
    assert!(check_in(&dir, &psk_peer("exact.psk")).is_empty());
    // A file that is no PSK at all is not read whole.
    dir.secret("huge.psk", &vec![b'k'; 100_000]);
    let d = check_in(&dir, &psk_peer("huge.psk"));
    assert_eq!(d.len(), 1);
    assert!(d[0].contains("is larger than 64 KiB"), "{}", d[0]);
}

#[test]
fn an_oversized_policy_file_is_refused_without_reading_it_all() {
    let dir = TempDir::new("size");
    let path = dir.0.join("huge.toml");
    let f = std::fs::File::create(&path).unwrap();
    // Sparse: no disk space, but 200 MiB long.
    f.set_len(200 << 20).unwrap();
    let report = plexgate_policy::check(&path);
    let lines = report.diagnostics.short_lines();
    assert_eq!(lines.len(), 1);
    assert!(lines[0].contains("larger than 128 MiB"), "{}", lines[0]);
}

#[test]
fn a_proposal_typo_is_one_error() {
    let text = psk_peer("p.psk").replace(
        "psk_file = \"p.psk\"",
        "psk_file = \"p.psk\"\nproposals = [\"aes256gcm16-prfsha384-ecp38\"]",
    );
    assert_eq!(
        diags(&text),
        ["t.toml:15:14: error: unknown algorithm `ecp38` in IKE proposal `aes256gcm16-prfsha384-ecp38`; did you mean `ecp384`?"]
    );
    let text = psk_peer("p.psk").replace(
        "remote_ts = [\"10.2.0.0/24\"]",
        "remote_ts = [\"10.2.0.0/24\"]\n  esp_proposals = \"aes256gmc16\"",
    );
    assert_eq!(diags(&text).len(), 1, "{:?}", diags(&text));
}

#[test]
fn a_mixed_family_spd_rule_is_an_error() {
    let text = site(
        "[[spd]]\nname = \"cross\"\nlocal = \"10.0.0.0/8\"\nremote = \"2001:db8::/32\"\naction = \"discard\"\n[[spd]]\nlocal = \"10.0.0.0/8\"\nremote = \"any\"\naction = \"bypass\"\n",
    );
    assert_eq!(
        diags(&text),
        ["t.toml:11:10: error: SPD rule #1 (\"cross\") can never match: its local selector 10.0.0.0/8 is IPv4 and its remote selector 2001:db8::/32 is IPv6; a packet has one family"]
    );
}

#[test]
fn child_selectors_of_families_that_never_meet() {
    // No common family: one error.
    let text = psk_peer("p.psk").replace(
        "remote_ts = [\"10.2.0.0/24\"]",
        "remote_ts = [\"2001:db8::/64\"]",
    );
    assert_eq!(
        diags(&text),
        ["t.toml:18:15: error: child \"c\" can never carry traffic: its local_ts are IPv4 only and its remote_ts IPv6 only"]
    );
    // One dead selector: a warning at it. `dynamic` and `any` meet everything.
    let text = psk_peer("p.psk").replace(
        "local_ts = [\"10.1.0.0/24\"]",
        "local_ts = [\"10.1.0.0/24\", \"2001:db8:1::/64\"]",
    );
    assert_eq!(
        diags(&text),
        ["t.toml:17:30: warning: local_ts 2001:db8:1::/64 of child \"c\" is IPv6 but remote_ts has no IPv6 selector: it can never match"]
    );
    let text = psk_peer("p.psk")
        .replace("remote_ts = [\"10.2.0.0/24\"]", "remote_ts = [\"dynamic\"]")
        .replace(
            "local_ts = [\"10.1.0.0/24\"]",
            "local_ts = [\"10.1.0.0/24\", \"2001:db8:1::/64\"]",
        );
    assert!(diags(&text).is_empty(), "{:?}", diags(&text));
}

#[test]
fn a_peer_of_a_family_the_site_cannot_reach() {
    let text = psk_peer("p.psk").replace("203.0.113.5", "2001:db8::5");
    assert_eq!(
        diags(&text),
        ["t.toml:10:18: error: peer \"p\" is at IPv6 address 2001:db8::5, but the site has no IPv6 gateway VIPA: IKE with it can never start"]
    );
}

#[test]
fn more_than_255_traffic_selectors_do_not_fit_in_ike() {
    let many: Vec<String> = (0..256)
        .map(|i| format!("\"10.1.{}.{}\"", i / 250, i % 250 + 1))
        .collect();
    let text = psk_peer("p.psk").replace(
        "local_ts = [\"10.1.0.0/24\"]",
        &format!("local_ts = [{}]", many.join(", ")),
    );
    assert_eq!(
        diags(&text),
        ["t.toml:17:14: error: `local_ts` of child \"c\" has 256 traffic selectors; IKEv2 carries at most 255 (RFC 7296 §3.13)"]
    );
}

#[test]
fn a_link_overlapping_several_is_one_error() {
    let mut extra = String::from("[cluster]\nkey_file = \"k\"\ngateway_id = 1\n");
    for (i, net) in ["10.9.0.0/30", "10.9.0.4/30", "10.9.0.0/24"]
        .iter()
        .enumerate()
    {
        extra.push_str(&format!(
            "[[link]]\nname = \"l{i}\"\ninterface = \"eth1\"\nlocal = \"{}\"\nsubnet = \"{net}\"\nremote = \"{}\"\n",
            net.replace(".0/", ".1/").replace(".4/", ".5/").split('/').next().unwrap(),
            net.replace(".0/", ".2/").replace(".4/", ".6/").split('/').next().unwrap(),
        ));
    }
    let d = diags(&site(&extra));
    assert_eq!(
        d,
        ["t.toml:27:10: error: subnet 10.9.0.0/24 of link \"l2\" overlaps subnet 10.9.0.0/30 of link \"l0\"; GRE anti-spoofing needs each link to be distinct"]
    );
}

#[test]
fn shadowing_through_the_index_finds_the_first_earlier_rule() {
    // Rule 4 is covered by rule 2 (an explicit range, indexed under its
    // covering prefix 10.1.2.0/24) and by rule 3 (a /16, found first by the
    // index); the first in file order is reported. Rule 1 (another port) and
    // rule 5 (another remote) are clean.
    let text = site(concat!(
        "[[spd]]\nlocal = \"any\"\nremote = \"any\"\nprotocol = \"tcp\"\nlocal_port = 22\naction = \"discard\"\n",
        "[[spd]]\nlocal = \"10.1.2.0-10.1.2.200\"\nremote = \"192.0.2.0/24\"\naction = \"discard\"\n",
        "[[spd]]\nlocal = \"10.1.0.0/16\"\nremote = \"192.0.2.0/25\"\naction = \"bypass\"\n",
        "[[spd]]\nlocal = \"10.1.2.5\"\nremote = \"192.0.2.7\"\nprotocol = \"tcp\"\nlocal_port = 443\naction = \"discard\"\n",
        "[[spd]]\nlocal = \"10.1.2.5\"\nremote = \"198.51.100.7\"\nprotocol = \"tcp\"\nlocal_port = 443\naction = \"discard\"\n",
    ));
    assert_eq!(
        diags(&text),
        ["t.toml:22:1: error: SPD rule #4 can never match: SPD rule #2 before it matches all of its traffic (with the same action); remove it or move it above"]
    );
}

#[test]
fn ten_thousand_errors_keep_a_thousand_and_count_the_rest() {
    let mut text = site("[cluster]\nkey_file = \"k\"\ngateway_id = 1\n");
    for i in 0..10_000 {
        text.push_str(&format!(
            "[[target]]\nname = \"t{i}\"\naddress = \"nope\"\nlink = \"l\"\n"
        ));
    }
    let d = parse_str(&text, "t.toml", Path::new("/")).unwrap_err();
    assert_eq!(d.short_lines().len(), plexgate_policy::diag::MAX_KEPT);
    // Each target has a bad address and names a missing link.
    assert_eq!(d.error_count(), 20_000);
    assert_eq!(d.dropped_count(), 19_000);
    let out = d.to_string();
    assert!(out.contains("only the first 1000 problems are shown; 19000 more were found"));
    assert!(
        out.ends_with("t.toml: 20000 errors, 0 warnings\n"),
        "{}",
        &out[out.len() - 200..]
    );
}

#[test]
fn a_huge_line_is_quoted_as_a_window() {
    // One line of 200,000 bad addresses (3 MB): the errors are capped and
    // each quote is a window around the bad item, not the whole line.
    let items: Vec<String> = (0..200_000).map(|i| format!("\"é{i}\"")).collect();
    let text = format!(
        "[site]\nname = \"t\"\ngateway_vipas = [{}]\n",
        items.join(", ")
    );
    let d = parse_str(&text, "t.toml", Path::new("/")).unwrap_err();
    assert_eq!(d.error_count(), 200_000);
    let lines = d.short_lines();
    // Column counted in characters: "é" is one, though two bytes.
    assert!(
        lines[1].starts_with(
            "t.toml:3:24: error: `gateway_vipas` in [site]: `é1` is not an IP address"
        ),
        "{}",
        lines[1]
    );
    let out = d.to_string();
    assert!(out.len() < 1_000_000, "{} bytes of output", out.len());
    let longest = out.lines().map(|l| l.chars().count()).max().unwrap();
    assert!(longest < 400, "a quoted line has {longest} characters");
    assert!(out.contains("| …"), "no window marker");
}
