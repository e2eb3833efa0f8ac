//! `cargo run --release -p plexgate-ike --example ike_bench [N]`: IKE SA + Child SA
//! setups per second (both ends in one process) and bytes per established SA, then
//! N takeover renegotiations from recovery records.
fn main() {
    let n = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(2000);
    let r = plexgate_ike::bench::bench_setups(n);
    println!(
        "{} setups in {:.3} s wall ({:.3} s CPU): {:.0} setups/s wall, {:.0} per CPU second; {} bytes per responder IKE SA (+1 Child SA), {} per initiator SA",
        r.setups,
        r.elapsed.as_secs_f64(),
        r.cpu.as_secs_f64(),
        r.setups_per_sec,
        r.setups_per_cpu_sec,
        r.responder_bytes_per_sa,
        r.initiator_bytes_per_sa
    );
    let r = plexgate_ike::bench::bench_recovery(n);
    println!(
        "{} takeover renegotiations (initiate_recovered + INITIAL_CONTACT, both ends) in {:.3} s wall ({:.3} s CPU): {:.0} per CPU second",
        r.renegotiations,
        r.elapsed.as_secs_f64(),
        r.cpu.as_secs_f64(),
        r.per_cpu_sec
    );
}
