//! `plexgate bench e2e`: iperf3 through a namespace topology (client site — gateway
//! — target) with strongSwan at both tunnel ends, and with plexgate, in one run.

use std::time::Duration;

use serde_json::json;

type BoxError = Box<dyn std::error::Error>;

/// `plexgate bench e2e`.
pub fn e2e(as_json: bool, seconds: u32) -> Result<(), BoxError> {
    plexgate_lab::check_prerequisites()?;
    let d = Duration::from_secs(u64::from(seconds.max(1)));
    let (ss1, ss8) = plexgate_lab::strongswan_baseline(d)?;
    let out = json!({"implementation": "strongswan", "gbps_1_stream": ss1, "gbps_8_streams": ss8});
    if as_json {
        println!("{out}");
    } else {
        println!("strongSwan (kernel-libipsec) at both ends: {ss1:.3} Gbit/s (1 stream), {ss8:.3} Gbit/s (8 streams)");
    }
    Err("the plexgate half of this benchmark (plexgate at both tunnel ends) is not built yet; see docs/benchmarks.md".into())
}
