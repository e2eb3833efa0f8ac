//! Takeover and takeback with real peers (issue #12, DESIGN.md flows 6 and 7):
//! a strongSwan client, a primary and a backup gateway on one LAN sharing the
//! gateway VIPA (owned on the wire through plexgate's ARP agent), targets with
//! TCP sinks on the DVIPA, and the shared store. Twenty TCP streams of known
//! content run while the primary is killed with SIGKILL and later comes back;
//! every stream must end byte-exact (SHA-256 at the sink).

use std::time::{Duration, Instant};

use plexgate_lab::failover::{FailoverLab, FailoverSpec, StoreKind};

const STREAMS: usize = 20;
/// Bytes per second per stream: enough to notice any gap, small enough for a
/// busy 2-core box.
const RATE: u64 = 256 * 1024;
const WAIT: Duration = Duration::from_secs(30);

fn lab(label: &str, store: StoreKind, nat: bool) -> FailoverLab {
    FailoverLab::build(FailoverSpec {
        label: label.into(),
        plexgate: env!("CARGO_BIN_EXE_plexgate").into(),
        store,
        nat,
        targets: 3,
    })
    .unwrap_or_else(|e| panic!("building the failover lab: {e}"))
}

/// Primary up and routing, backup up and waiting, the client connected.
fn bring_up(l: &mut FailoverLab) {
    l.start_gateway(1).unwrap();
    l.wait_status(1, "gw-1 routes the DVIPA", WAIT, |s| {
        s["ha"]["groups"][0]["routing"] == true && plexgate::status::listening_targets(s) == 6
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", l.logs()));
    l.start_gateway(2).unwrap();
    l.wait_status(2, "gw-2 is the backup", WAIT, |s| {
        s["ha"]["groups"][0]["role"]
            .as_str()
            .is_some_and(|r| r.starts_with("Backup"))
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", l.logs()));
    l.connect_client()
        .unwrap_or_else(|e| panic!("client: {e}\n{}", l.logs()));
}

/// Wait until every stream has moved another `bytes`.
fn progress(l: &FailoverLab, s: &plexgate_lab::streams::Streams, bytes: u64) {
    let start = l.clock.bytes.load(std::sync::atomic::Ordering::Relaxed);
    let t = Instant::now();
    while l.clock.bytes.load(std::sync::atomic::Ordering::Relaxed) < start + bytes
        || s.min_sent() < bytes / STREAMS as u64
    {
        assert!(t.elapsed() < WAIT, "no progress\n{}", l.logs());
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn check(results: &[plexgate_lab::streams::StreamResult], l: &FailoverLab) {
    let bad: Vec<_> = results.iter().filter(|r| !r.ok).collect();
    assert!(bad.is_empty(), "streams failed: {bad:?}\n{}", l.logs());
    assert_eq!(results.len(), STREAMS);
    let served = l.served();
    assert!(
        served.iter().filter(|n| **n > 0).count() >= 2,
        "connections spread over the targets: {served:?}"
    );
}

fn takeover_and_takeback(store: StoreKind, nat: bool, label: &str) {
    let mut l = lab(label, store, nat);
    bring_up(&mut l);
    let streams = l.streams(STREAMS, RATE, 1).unwrap();
    progress(&l, &streams, 2 << 20);
    let gap = plexgate_lab::streams::GapMonitor::start(l.clock.clone());
    let killed = Instant::now();
    l.kill_gateway(1);
    l.wait_status(2, "gw-2 took over", WAIT, |s| {
        s["ha"]["groups"][0]["routing"] == true
            && s["ha"]["takeovers"]
                .as_array()
                .is_some_and(|t| !t.is_empty())
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", l.logs()));
    let took = killed.elapsed();
    progress(&l, &streams, 2 << 20);
    let takeover_gap = gap.stop();
    eprintln!("takeover done {took:?} after SIGKILL; longest service gap {takeover_gap:?}");
    let s2 = l.status(2).unwrap();
    assert_eq!(s2["ha"]["takeovers"][0]["up"], 1, "{s2}");
    assert_eq!(s2["ha"]["takeovers"][0]["failed"], 0, "{s2}");
    // The primary returns and takes the DVIPA back.
    let gap = plexgate_lab::streams::GapMonitor::start(l.clock.clone());
    l.start_gateway(1).unwrap();
    l.wait_status(1, "gw-1 took back", Duration::from_secs(60), |s| {
        s["ha"]["groups"][0]["routing"] == true
            && s["ha"]["takeovers"]
                .as_array()
                .is_some_and(|t| !t.is_empty())
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", l.logs()));
    progress(&l, &streams, 2 << 20);
    let takeback_gap = gap.stop();
    eprintln!("takeback: longest service gap {takeback_gap:?}");
    assert!(!l.routes(2), "gw-2 stopped routing after the takeback");
    let results = streams.stop();
    check(&results, &l);
}

#[test]
fn takeover_and_takeback_on_the_embedded_store() {
    takeover_and_takeback(StoreKind::Embedded, false, "fo-emb");
}

#[test]
fn takeover_and_takeback_on_etcd() {
    takeover_and_takeback(StoreKind::Etcd, false, "fo-etcd");
}

/// The client sits behind a masquerading router: the backup renegotiates to the
/// NAT's mapping of the client's port 4500 (IBM's product documents that it cannot
/// do this).
#[test]
fn takeover_and_takeback_with_the_client_behind_nat() {
    takeover_and_takeback(StoreKind::Embedded, true, "fo-nat");
}

/// `plexgate move DVIPA --to gw-2` for maintenance, then back: the owner hands its
/// SAs over (DELETE), the new owner renegotiates; no stream loses a byte.
#[test]
fn planned_move_and_back() {
    let mut l = lab("fo-move", StoreKind::Embedded, false);
    bring_up(&mut l);
    let streams = l.streams(STREAMS, RATE, 3).unwrap();
    progress(&l, &streams, 2 << 20);
    for (from, to) in [(1, 2), (2, 1)] {
        let gap = plexgate_lab::streams::GapMonitor::start(l.clock.clone());
        let r = l
            .ctl(
                from,
                &serde_json::json!({"cmd": "move", "dvipa": plexgate_lab::failover::DVIPA, "to": format!("gw-{to}")}),
            )
            .unwrap();
        assert_eq!(r["ok"], true, "move: {r}");
        l.wait_status(to, "the new owner routes", WAIT, |s| {
            s["ha"]["groups"][0]["routing"] == true
        })
        .unwrap_or_else(|e| panic!("{e}\n{}", l.logs()));
        progress(&l, &streams, 2 << 20);
        eprintln!(
            "move gw-{from} -> gw-{to}: longest service gap {:?}",
            gap.stop()
        );
        assert!(!l.routes(from), "gw-{from} no longer routes");
    }
    let results = streams.stop();
    check(&results, &l);
}

/// A partition: the primary loses the store (its HA link goes down) but not its
/// targets or clients. It fences itself before the backup may claim; the backup
/// takes over; no target ever follows both (targets follow the higher epoch), and
/// the streams go on.
#[test]
fn a_primary_cut_off_from_the_store_stops_before_the_backup_claims() {
    let mut l = lab("fo-part", StoreKind::Etcd, false);
    bring_up(&mut l);
    let streams = l.streams(STREAMS, RATE, 5).unwrap();
    progress(&l, &streams, 2 << 20);
    let gw1 = l.ns("gw1").unwrap();
    gw1.ip(&["link", "set", "dev", "ha", "down"]).unwrap();
    // gw-1 fences: it stops routing on its own.
    l.wait_status(1, "gw-1 fenced", WAIT, |s| {
        s["ha"]["groups"][0]["routing"] == false
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", l.logs()));
    l.wait_status(2, "gw-2 took over", WAIT, |s| {
        s["ha"]["groups"][0]["routing"] == true
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", l.logs()));
    progress(&l, &streams, 2 << 20);
    // Never two owners at a target: each follows exactly one (gw-2, the higher epoch).
    for n in 1..=3 {
        let p = l.dir().join(format!("t{n}.sock"));
        let t =
            plexgate_lab::failover::ctl_request(&p, &serde_json::json!({"cmd": "status"})).unwrap();
        let owners = t["owners"].as_array().unwrap();
        assert_eq!(owners.len(), 1, "{t}");
        assert_eq!(owners[0]["gateway"], 2, "t{n} follows gw-2: {t}");
    }
    assert!(!l.routes(1), "gw-1 stays fenced while cut off");
    let results = streams.stop();
    check(&results, &l);
}
