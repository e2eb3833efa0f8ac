//! `plexgate demo`: the whole product in network namespaces on this machine.
//!
//! ```text
//!  client (strongSwan) ── LAN bridge, gateway VIPA 10.10.0.100 ──┬── gw-1 (plexgate run, primary)
//!  inner 192.168.77.1                                             └── gw-2 (plexgate run, backup)
//!  gw-1 and gw-2 ── links ── t1..t3 (plexgate target, HTTP and a TCP sink on DVIPA 10.200.0.20)
//!  shared store: the embedded SQLite file both gateways open
//! ```
//!
//! The client negotiates IKEv2 (PSK) with the gateway VIPA, owned by gw-1; new
//! HTTP connections to the DVIPA are spread round-robin over the three targets.
//! Twenty TCP streams of known content then run while gw-1 is killed with
//! SIGKILL: gw-2 takes the VIPA over (gratuitous ARP), renegotiates the client's
//! SAs from the recovery records, the targets follow it, and the streams go on.
//! gw-1 is started again and takes its DVIPA back. A summary follows; the demo
//! exits 0 only if every check held. Everything is removed at the end.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use plexgate_lab::failover::{FailoverLab, FailoverSpec, StoreKind, DVIPA, VIPA};
use plexgate_lab::streams::{GapMonitor, StreamResult, Streams};

type BoxError = Box<dyn std::error::Error>;

const STREAMS: usize = 20;
const RATE: u64 = 256 * 1024;
const WAIT: Duration = Duration::from_secs(30);

/// What the demo measured.
#[derive(Debug, Default)]
struct Summary {
    takeover: Duration,
    takeover_gap: Duration,
    takeback_gap: Duration,
    renegotiated: (u64, u64),
    streams: Vec<StreamResult>,
    per_target: Vec<usize>,
}

/// `plexgate demo`.
pub fn run(requests: usize) -> Result<(), BoxError> {
    let spec = FailoverSpec {
        label: "demo".into(),
        plexgate: std::env::current_exe()?,
        store: StoreKind::Embedded,
        nat: false,
        targets: 3,
    };
    println!("== building namespaces: a strongSwan client, gateways gw-1 (primary) and gw-2 (backup) sharing the VIPA {VIPA}, targets t1..t3 serving the DVIPA {DVIPA}");
    let mut l = FailoverLab::build(spec)?;
    let r = demo(&mut l, requests);
    if r.is_err() {
        eprintln!("{}", l.logs());
    }
    r
}

fn demo(l: &mut FailoverLab, requests: usize) -> Result<(), BoxError> {
    bring_up(l)?;
    println!("== {requests} HTTP requests from the client, each on a new connection, through the tunnel to the DVIPA");
    let answers = l.requests(requests)?;
    let mut counts = BTreeMap::new();
    for a in &answers {
        *counts
            .entry(a.clone().unwrap_or_else(|e| format!("error: {e}")))
            .or_insert(0) += 1;
    }
    for (who, n) in &counts {
        println!("   {who:<28} {n}");
    }
    let ok = answers.iter().filter(|a| a.is_ok()).count();
    if ok != requests {
        return Err(format!("{} of {requests} requests failed", requests - ok).into());
    }
    let s = failover(l)?;
    print_summary(l, &s);
    check(&s)
}

fn bring_up(l: &mut FailoverLab) -> Result<(), BoxError> {
    l.start_gateway(1)?;
    l.wait_status(1, "gw-1 routes the DVIPA", WAIT, |s| {
        s["ha"]["groups"][0]["routing"] == true && crate::status::listening_targets(s) == 6
    })?;
    println!("== gw-1 owns the VIPA (epoch in the store), the targets reported their listeners (SRVSTAT)");
    l.start_gateway(2)?;
    l.wait_status(2, "gw-2 is the backup", WAIT, |s| {
        s["ha"]["groups"][0]["role"]
            .as_str()
            .is_some_and(|r| r.starts_with("Backup"))
    })?;
    println!("== gw-2 is the backup; the strongSwan client negotiates IKEv2 with {VIPA}");
    l.connect_client()?;
    if let Some(c) = l.client() {
        for sa in c.list_sas()? {
            println!(
                "   strongSwan: IKE SA {} {} {} ... {}, {:?}/{:?}; {} Child SA(s)",
                sa.name,
                sa.state,
                sa.local_host,
                sa.remote_host,
                sa.encr_alg,
                sa.dh_group,
                sa.children.len()
            );
        }
    }
    Ok(())
}

/// Wait until the sinks have received `bytes` more.
fn progress(l: &FailoverLab, s: &Streams, bytes: u64) -> Result<(), BoxError> {
    let start = l.clock.bytes.load(std::sync::atomic::Ordering::Relaxed);
    let t = Instant::now();
    while l.clock.bytes.load(std::sync::atomic::Ordering::Relaxed) < start + bytes
        || s.min_sent() < bytes / STREAMS as u64
    {
        if t.elapsed() > WAIT {
            return Err("the streams made no progress".into());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

fn failover(l: &mut FailoverLab) -> Result<Summary, BoxError> {
    println!(
        "== {STREAMS} TCP streams of known content from the client to the DVIPA ({} KiB/s each)",
        RATE / 1024
    );
    let streams = l.streams(STREAMS, RATE, 1)?;
    progress(l, &streams, 2 << 20)?;
    println!("== SIGKILL gw-1");
    let gap = GapMonitor::start(l.clock.clone());
    let killed = Instant::now();
    l.kill_gateway(1);
    let s2 = l.wait_status(2, "gw-2 took over", WAIT, |s| {
        s["ha"]["groups"][0]["routing"] == true
            && s["ha"]["takeovers"]
                .as_array()
                .is_some_and(|t| !t.is_empty())
    })?;
    let mut sum = Summary {
        takeover: killed.elapsed(),
        ..Summary::default()
    };
    let t = &s2["ha"]["takeovers"][0];
    sum.renegotiated = (
        t["up"].as_u64().unwrap_or(0),
        t["failed"].as_u64().unwrap_or(0),
    );
    progress(l, &streams, 2 << 20)?;
    sum.takeover_gap = gap.stop();
    println!(
        "   gw-2 took over {:?} after the kill (epoch {}), renegotiated {} IKE SA(s) from the records; longest pause of the streams {:?}",
        sum.takeover, t["epoch"], sum.renegotiated.0, sum.takeover_gap
    );
    println!("== gw-1 starts again and takes its DVIPA back (after holding steady for 3 s)");
    let gap = GapMonitor::start(l.clock.clone());
    l.start_gateway(1)?;
    l.wait_status(1, "gw-1 took back", Duration::from_secs(60), |s| {
        s["ha"]["groups"][0]["routing"] == true
            && s["ha"]["takeovers"]
                .as_array()
                .is_some_and(|t| !t.is_empty())
    })?;
    progress(l, &streams, 2 << 20)?;
    sum.takeback_gap = gap.stop();
    println!(
        "   gw-1 routes again; longest pause of the streams {:?}",
        sum.takeback_gap
    );
    sum.streams = streams.stop();
    sum.per_target = l.served();
    Ok(sum)
}

fn print_summary(l: &FailoverLab, s: &Summary) {
    println!("== plexgate status of gw-1");
    if let Ok(st) = l.status(1) {
        print!("{}", crate::status::render(&st));
    }
    println!("== summary");
    let bytes: u64 = s.streams.iter().map(|r| r.bytes).sum();
    let ok = s.streams.iter().filter(|r| r.ok).count();
    println!(
        "   streams byte-exact:        {ok}/{} ({} MiB in all)",
        s.streams.len(),
        bytes >> 20
    );
    for (i, n) in s.per_target.iter().enumerate() {
        println!("   connections on t{}:         {n}", i + 1);
    }
    println!("   takeover after SIGKILL:    {:?}", s.takeover);
    println!("   longest pause, takeover:   {:?}", s.takeover_gap);
    println!("   longest pause, takeback:   {:?}", s.takeback_gap);
    println!(
        "   SAs renegotiated by gw-2:  {} up, {} failed",
        s.renegotiated.0, s.renegotiated.1
    );
}

fn check(s: &Summary) -> Result<(), BoxError> {
    let bad: Vec<&StreamResult> = s.streams.iter().filter(|r| !r.ok).collect();
    if !bad.is_empty() {
        return Err(format!("{} stream(s) lost bytes: {bad:?}", bad.len()).into());
    }
    if s.renegotiated != (1, 0) {
        return Err(format!("renegotiation: {:?} (up, failed)", s.renegotiated).into());
    }
    if s.per_target.iter().filter(|n| **n > 0).count() < 2 {
        return Err(format!("connections not spread: {:?}", s.per_target).into());
    }
    println!("== every check held; cleaning up the namespaces");
    Ok(())
}
