//! Hostile sizes (#15): the checker must stay near-linear in the size of the
//! policy. A generated site with 16,000 targets and links, and a 50 MB policy
//! (hundreds of thousands of targets, links, peers, children, SPD rules and
//! DVIPAs), must both check in seconds. The bounds are generous (30 s, in debug
//! builds, on a shared machine) so that they cannot flake; the quadratic checker
//! took 6 s for the first and hours for the second. Each test prints its time.
//!
//! The bound applies to the CPU time of the checking thread, not to wall time:
//! this machine is shared, and a neighbour's build must not fail the test (the
//! check is single-threaded, so its CPU time is its work). Wall time is printed
//! too.

use std::fmt::Write as _;
use std::path::Path;
use std::time::{Duration, Instant};

/// The bound that would catch a quadratic check but never a slow machine.
const BOUND: Duration = Duration::from_secs(30);

/// How many of each section a generated policy has.
#[derive(Clone, Copy)]
struct Shape {
    targets: usize,
    dvipas: usize,
    peers: usize,
    children_per_peer: usize,
    spd_rules: usize,
}

/// 10.a.b.c for the `n`-th address of a /30 link `i` (n in 0..4).
fn link_addr(i: usize, n: usize) -> String {
    let x = i * 4 + n;
    format!("10.{}.{}.{}", 1 + (x >> 16), (x >> 8) & 255, x & 255)
}

/// 172.16.0.0/12 host `i`: the DVIPAs.
fn dvipa_addr(i: usize) -> String {
    format!("172.{}.{}.{}", 16 + (i >> 16), (i >> 8) & 255, i & 255)
}

/// A valid policy of the given shape (no errors, a handful of warnings at most).
fn generate(s: Shape) -> String {
    let mut out = String::with_capacity(s.targets * 200 + s.spd_rules * 150);
    out.push_str(
        "[site]\nname = \"big\"\ngateway_vipas = [\"192.0.2.1\"]\n\n[[site.interface]]\nname = \"eth0\"\naddress = \"192.0.2.2/24\"\n\n[cluster]\nkey_file = \"cluster.key\"\ngateway_id = 1\n\n",
    );
    for p in 0..s.peers {
        let _ = write!(
            out,
            "[[peer]]\nname = \"p{p}\"\nremote_address = \"any\"\nlocal_id = \"@gw.example\"\nremote_id = \"peer{p}@example\"\nauth = \"psk\"\npsk_file = \"p.psk\"\n"
        );
        for c in 0..s.children_per_peer {
            let d = (p * s.children_per_peer + c) % s.dvipas.max(1);
            let _ = write!(
                out,
                "  [[peer.child]]\n  name = \"c{c}\"\n  local_ts = [\"{}/32[tcp/443]\"]\n  remote_ts = [\"dynamic\"]\n",
                dvipa_addr(d)
            );
        }
    }
    for r in 0..s.spd_rules {
        // Each rule names one DVIPA and one remote host: none shadows another.
        let p = r % s.peers.max(1);
        let d = (p * s.children_per_peer) % s.dvipas.max(1);
        let _ = write!(
            out,
            "[[spd]]\nlocal = \"{}\"\nremote = \"198.{}.{}.{}\"\nprotocol = \"tcp\"\nlocal_port = 443\naction = \"protect\"\npeer = \"p{p}\"\nchild = \"c0\"\n",
            dvipa_addr(d),
            18 + ((r >> 16) & 1),
            (r >> 8) & 255,
            r & 255
        );
    }
    for d in 0..s.dvipas {
        let _ = write!(
            out,
            "[[dvipa]]\naddress = \"{}\"\nports = [443]\ntargets = [\"t{}\", \"t{}\"]\n",
            dvipa_addr(d),
            (2 * d) % s.targets,
            (2 * d + 1) % s.targets
        );
    }
    for t in 0..s.targets {
        let _ = write!(
            out,
            "[[target]]\nname = \"t{t}\"\naddress = \"{}\"\nlink = \"l{t}\"\n[[link]]\nname = \"l{t}\"\ninterface = \"eth1\"\nlocal = \"{}\"\nsubnet = \"{}/30\"\n",
            link_addr(t, 2),
            link_addr(t, 1),
            link_addr(t, 0)
        );
    }
    out
}

/// CPU time consumed by the calling thread.
fn thread_cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime(CLOCK_THREAD_CPUTIME_ID) failed");
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

type Checked = Result<plexgate_policy::Checked, plexgate_policy::Diagnostics>;

/// Checks `text`; returns (CPU time, wall time, result).
fn timed_check(text: &str) -> (Duration, Duration, Checked) {
    let (cpu, wall) = (thread_cpu(), Instant::now());
    let r = plexgate_policy::parse_str(text, "big.toml", Path::new("/etc/plexgate"));
    (thread_cpu() - cpu, wall.elapsed(), r)
}

/// The first few diagnostics, for a failure message.
fn first_lines(d: &plexgate_policy::Diagnostics) -> String {
    let lines = d.short_lines();
    lines[..lines.len().min(5)].join("\n")
}

#[test]
fn sixteen_thousand_targets_check_in_seconds() {
    let text = generate(Shape {
        targets: 16_000,
        dvipas: 2_000,
        peers: 200,
        children_per_peer: 10,
        spd_rules: 2_000,
    });
    let (took, wall, r) = timed_check(&text);
    println!(
        "16,000 targets/links ({:.1} MB): checked in {took:.2?} CPU ({wall:.2?} wall)",
        text.len() as f64 / 1e6,
    );
    let c = r.unwrap_or_else(|d| panic!("{}", first_lines(&d)));
    assert_eq!(c.policy.targets.len(), 16_000);
    assert_eq!(c.policy.links.len(), 16_000);
    assert!(took < BOUND, "took {took:?}");
    // The normalized listing (`policy check -v`) is linear too.
    let cpu = thread_cpu();
    let listing = c.policy.to_string();
    let listed = thread_cpu() - cpu;
    println!(
        "its listing ({} lines): {listed:.2?} CPU",
        listing.lines().count()
    );
    assert!(listing.contains("target t3999 10."), "{}", &listing[..500]);
    assert!(listed < BOUND, "listing took {listed:?}");
}

#[test]
fn a_fifty_megabyte_policy_checks_in_seconds() {
    let shape = Shape {
        targets: 200_000,
        dvipas: 20_000,
        peers: 6_000,
        children_per_peer: 10,
        spd_rules: 75_000,
    };
    let text = generate(shape);
    assert!(text.len() >= 50_000_000, "only {} bytes", text.len());
    let (took, wall, r) = timed_check(&text);
    println!(
        "{:.1} MB policy ({} targets, {} SPD rules, {} children): checked in {took:.2?} CPU ({wall:.2?} wall)",
        text.len() as f64 / 1e6,
        shape.targets,
        shape.spd_rules,
        shape.peers * shape.children_per_peer,
    );
    let c = r.unwrap_or_else(|d| panic!("{}", first_lines(&d)));
    assert_eq!(c.policy.spd.len(), shape.spd_rules);
    assert!(took < BOUND, "took {took:?}");
}

#[test]
fn rules_that_differ_only_in_ports_exhaust_the_shadowing_budget_not_the_clock() {
    // Every rule lands in one index bucket (any/any), so each is compared with
    // all earlier ones: 30,000 rules would be 450 million comparisons. The
    // check stops at its budget and says so.
    let mut text = String::from(
        "[site]\nname = \"spd\"\ngateway_vipas = [\"192.0.2.1\"]\n[[site.interface]]\nname = \"eth0\"\naddress = \"192.0.2.2/24\"\n",
    );
    for i in 0..30_000 {
        let _ = write!(
            text,
            "[[spd]]\nlocal = \"any\"\nremote = \"any\"\nprotocol = \"tcp\"\nlocal_port = {}\naction = \"discard\"\n",
            1 + i
        );
    }
    let (took, wall, r) = timed_check(&text);
    println!("30,000 near-identical SPD rules: checked in {took:.2?} CPU ({wall:.2?} wall)");
    let c = r.unwrap_or_else(|d| panic!("{}", first_lines(&d)));
    let w = c.warnings.short_lines();
    assert_eq!(w.len(), 1, "{w:?}");
    assert!(
        w[0].contains(
            "were not checked for shadowing: the check stops after 20000000 rule comparisons"
        ),
        "{}",
        w[0]
    );
    assert!(took < BOUND, "took {took:?}");
}
