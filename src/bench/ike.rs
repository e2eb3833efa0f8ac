//! `plexgate bench ike`: complete IKE SA + first Child SA setups (IKE_SA_INIT and
//! IKE_AUTH, X25519, PSK) per second on one core, initiator and responder in one
//! process with no network in between, and the memory per established SA. The
//! measurement itself lives in `plexgate_ike::bench`, next to the engine.

use serde_json::json;

type BoxError = Box<dyn std::error::Error>;

/// `plexgate bench ike`.
pub fn ike(as_json: bool, count: usize) -> Result<(), BoxError> {
    let r = plexgate_ike::bench::bench_setups(count.max(1));
    if r.setups == 0 {
        return Err("no IKE setup completed".into());
    }
    if as_json {
        println!(
            "{}",
            json!({
                "setups": r.setups,
                "seconds": r.elapsed.as_secs_f64(),
                "setups_per_sec": r.setups_per_sec,
                "cpu_seconds": r.cpu.as_secs_f64(),
                "setups_per_cpu_sec": r.setups_per_cpu_sec,
                "responder_bytes_per_sa": r.responder_bytes_per_sa,
            })
        );
    } else {
        println!(
            "IKE SA + Child SA setups (X25519, PSK, both ends on this thread): {} in {:.2} s wall = {:.0}/s; {:.2} s CPU = {:.0} per CPU second\nresponder memory per IKE SA with one Child SA: ~{} bytes",
            r.setups,
            r.elapsed.as_secs_f64(),
            r.setups_per_sec,
            r.cpu.as_secs_f64(),
            r.setups_per_cpu_sec,
            r.responder_bytes_per_sa
        );
    }
    Ok(())
}
