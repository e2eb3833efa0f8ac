use super::*;

fn client() -> CharonConfig {
    CharonConfig::psk(
        "10.99.0.1",
        "10.99.0.2",
        "client@example",
        "gw@example",
        "testsecret0123456789",
    )
    .child(ChildConfig::new(
        "net",
        "192.168.77.1/32",
        "203.0.113.10/32",
    ))
}

#[test]
fn renders_the_known_good_client_config() {
    // The recipe of /work/shared/notes/strongswan-in-netns.md, one setting per line.
    let text = client().swanctl_conf().unwrap();
    let lines: Vec<&str> = text.lines().map(str::trim).collect();
    for want in [
        "lab {",
        "version = 2",
        "local_addrs = 10.99.0.1",
        "remote_addrs = 10.99.0.2",
        "proposals = aes128-sha256-x25519",
        "auth = psk",
        "id = client@example",
        "id = gw@example",
        "net {",
        "local_ts = 192.168.77.1/32",
        "remote_ts = 203.0.113.10/32",
        "esp_proposals = aes128gcm16",
        "mode = tunnel",
        "start_action = none",
        "id-1 = client@example",
        "id-2 = gw@example",
        "secret = \"testsecret0123456789\"",
    ] {
        assert!(lines.contains(&want), "missing `{want}` in\n{text}");
    }
    // Braces balance and every value line holds exactly one setting.
    let opens = text.matches('{').count();
    assert_eq!(opens, text.matches('}').count());
    for l in &lines {
        assert!(
            l.matches(" = ").count() <= 1,
            "two settings on one line: {l}"
        );
    }
}

#[test]
fn mirrored_swaps_ends() {
    let gw = client().mirrored();
    assert_eq!(gw.local_addrs, vec!["10.99.0.2".to_string()]);
    assert_eq!(gw.local_id, "gw@example");
    assert_eq!(gw.children[0].local_ts, vec!["203.0.113.10/32".to_string()]);
    assert_eq!(
        gw.children[0].remote_ts,
        vec!["192.168.77.1/32".to_string()]
    );
    assert_eq!(gw.mirrored(), client());
}

#[test]
fn rekey_and_lifetimes_are_rendered() {
    let mut c = client();
    c.rekey_time = Some("20s".into());
    c.dpd_delay = Some("2s".into());
    c.children[0].rekey_time = Some("10s".into());
    c.children[0].life_time = Some("15s".into());
    c.children[0].rekey_bytes = Some(1_000_000);
    c.children[0].start_action = StartAction::Start;
    c.children[0].mode = Mode::Transport;
    let text = c.swanctl_conf().unwrap();
    for want in [
        "    rekey_time = 20s",
        "    dpd_delay = 2s",
        "        rekey_time = 10s",
        "        life_time = 15s",
        "        rekey_bytes = 1000000",
        "        start_action = start",
        "        mode = transport",
    ] {
        assert!(
            text.lines().any(|l| l == want),
            "missing `{want}` in\n{text}"
        );
    }
}

#[test]
fn certificate_auth_references_cert_and_has_no_psk() {
    let mut c = client();
    c.auth = Auth::Certs {
        cert: "/keys/client.pem".into(),
        key: "/keys/client.key".into(),
        cas: vec!["/keys/ca.pem".into()],
    };
    let text = c.swanctl_conf().unwrap();
    assert!(text.contains("auth = pubkey"));
    assert!(text.contains("certs = client.pem"));
    assert!(!text.contains("secrets"));
}

#[test]
fn refuses_values_that_break_the_syntax() {
    let mut c = client();
    c.local_id = "a\nb".into();
    assert!(matches!(c.swanctl_conf(), Err(LabError::Config(_))));
    let mut c = client();
    c.children[0].remote_ts = vec!["10.0.0.0/8 }".into()];
    assert!(c.validate().is_err());
    let mut c = client();
    c.auth = Auth::Psk("quote\"d".into());
    assert!(c.validate().is_err());
    let mut c = client();
    c.children.clear();
    assert!(c.validate().is_err());
}

#[test]
fn strongswan_conf_turns_off_lan_plugins_and_routes() {
    let text = client().strongswan_conf(Path::new("/tmp/x"));
    assert!(text.contains("install_routes = no"));
    assert!(text.contains("socket = unix:///tmp/x/run/charon.vici"));
    for p in ["bypass-lan", "forecast", "farp", "dhcp", "ha"] {
        let i = text
            .find(&format!("    {p} {{"))
            .unwrap_or_else(|| panic!("{p} missing"));
        assert!(
            text[i..].lines().nth(1).unwrap().contains("load = no"),
            "{p}"
        );
    }
    assert!(text.contains("ike = 2") && text.contains("chd = 2") && text.contains("knl = 1"));
}

#[test]
fn tail_keeps_last_lines() {
    assert_eq!(tail("a\nb\nc", 2), "b\nc");
    assert_eq!(tail("a", 5), "a");
    assert_eq!(tail("", 5), "");
}
