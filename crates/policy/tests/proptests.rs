//! Property tests: arbitrary text never panics the checker (the CI twin of the
//! `policy_parse` fuzz target), positions always point inside the file, and the
//! small parsers round-trip through their `Display`.

use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;

use plexgate_policy::addr::{parse_addr_sel, parse_ports};
use plexgate_policy::proposal::{parse_esp, parse_ike};
use plexgate_policy::TrafficSelector;
use plexgate_policy::{parse_str, AddrSel, IpRange, PortRange};
use proptest::prelude::*;

const SITE_A: &str = include_str!("../../../policy/site-a.toml");
const SITE_B: &str = include_str!("../../../policy/site-b.toml");

fn check_positions(text: &str) {
    match parse_str(text, "fuzz.toml", Path::new(".")) {
        Ok(c) => assert!(!c.warnings.has_errors()),
        Err(d) => {
            assert!(d.has_errors());
            let lines = text.split('\n').count();
            for diag in d.iter() {
                if let Some(p) = diag.position {
                    assert!(p.line >= 1 && p.line <= lines, "line {} of {lines}", p.line);
                    assert!(p.column >= 1);
                }
            }
            // Rendering never panics either.
            let _ = d.to_string();
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn arbitrary_text_never_panics(s in "\\PC*") {
        check_positions(&s);
    }

    #[test]
    fn toml_like_text_never_panics(s in "(\\[\\[?[a-z.]{0,12}\\]\\]?\n|[a-z_]{1,12} = (\"[ -~]{0,20}\"|-?[0-9]{1,6}|\\[[0-9\", ]{0,12}\\]|true|\\{ ?[a-z]{1,4} = [0-9]{1,3} ?\\})\n){0,30}") {
        check_positions(&s);
    }

    /// Splicing random text into a valid policy never panics and positions stay
    /// inside the file.
    #[test]
    fn mutated_examples_never_panic(at in 0usize..4000, cut in 0usize..40, ins in "[ -~\n]{0,30}", b in any::<bool>()) {
        let base = if b { SITE_A } else { SITE_B };
        let mut at = at.min(base.len());
        while !base.is_char_boundary(at) { at -= 1; }
        let mut end = (at + cut).min(base.len());
        while !base.is_char_boundary(end) { end -= 1; }
        let text = format!("{}{}{}", &base[..at], ins, &base[end..]);
        check_positions(&text);
    }

    #[test]
    fn port_ranges_round_trip(a in any::<u16>(), b in any::<u16>()) {
        let r = PortRange { lo: a.min(b), hi: a.max(b) };
        prop_assert_eq!(parse_ports(&r.to_string()).unwrap(), r);
        let inverted = format!("{}-{}", a.max(b), a.min(b));
        prop_assert_eq!(parse_ports(&inverted).is_ok(), a == b);
    }

    #[test]
    fn address_ranges_round_trip(a in any::<u32>(), b in any::<u32>()) {
        let (lo, hi) = (a.min(b), a.max(b));
        let r = IpRange { start: IpAddr::V4(Ipv4Addr::from(lo)), end: IpAddr::V4(Ipv4Addr::from(hi)) };
        prop_assert_eq!(parse_addr_sel(&r.to_string()).unwrap(), AddrSel::Range(r));
    }

    #[test]
    fn prefix_ranges_round_trip(a in any::<u32>(), len in 0u8..=32) {
        let net = ipnet::Ipv4Net::new(Ipv4Addr::from(a), len).unwrap().trunc();
        let r = IpRange::from_net(net.into());
        // A single host is shown without its /32, like swanctl's output.
        let want = if len == 32 { net.addr().to_string() } else { net.to_string() };
        prop_assert_eq!(r.to_string(), want);
        prop_assert_eq!(parse_addr_sel(&net.to_string()).unwrap(), AddrSel::Range(r));
    }

    /// Any keyword combination that parses prints back to a string that parses to
    /// the same proposal; the rest fail with an error, never a panic.
    #[test]
    fn proposals_round_trip(words in proptest::collection::vec(proptest::sample::select(WORDS), 1..6)) {
        let s = words.join("-");
        if let Ok((p, _)) = parse_ike(&s) {
            prop_assert_eq!(parse_ike(&p.to_string()).unwrap().0, p);
        }
        if let Ok((p, _)) = parse_esp(&s) {
            prop_assert_eq!(parse_esp(&p.to_string()).unwrap().0, p);
        }
    }

    #[test]
    fn selectors_round_trip(a in any::<u32>(), len in 0u8..=32, proto in prop_oneof![Just("tcp"), Just("udp"), Just("icmp"), Just("any"), Just("")], lo in any::<u16>(), hi in any::<u16>()) {
        let net = ipnet::Ipv4Net::new(Ipv4Addr::from(a), len).unwrap().trunc();
        let s = match proto {
            "" => net.to_string(),
            "tcp" | "udp" => format!("{net}[{proto}/{}-{}]", lo.min(hi), lo.max(hi)),
            p => format!("{net}[{p}]"),
        };
        let ts: TrafficSelector = s.parse().unwrap();
        prop_assert_eq!(ts.to_string().parse::<TrafficSelector>().unwrap(), ts);
    }
}

const WORDS: &[&str] = &[
    "aes128",
    "aes256",
    "aes128gcm16",
    "aes256gcm12",
    "chacha20poly1305",
    "sha1",
    "sha256",
    "sha512",
    "prfsha256",
    "prfsha384",
    "modp2048",
    "ecp384",
    "x25519",
    "esn",
    "noesn",
    "bogus",
];
