//! `plexgate status` and `plexgate initiate`: clients of the control socket.

use std::path::Path;

use serde_json::{json, Value};

type BoxError = Box<dyn std::error::Error>;

/// Print the daemon's status, as a table (like `swanctl --list-sas`) or JSON.
pub fn print(ctl: &Path, as_json: bool) -> Result<(), BoxError> {
    let v = crate::ctl::request(ctl, &json!({"cmd": "status"}))?;
    if let Some(e) = v.get("error") {
        return Err(format!("daemon: {e}").into());
    }
    if as_json {
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        print!("{}", render(&v));
    }
    Ok(())
}

/// Human-readable status.
pub fn render(v: &Value) -> String {
    let mut o = String::new();
    let s = |x: &Value| {
        x.as_str()
            .map(str::to_string)
            .unwrap_or_else(|| x.to_string())
    };
    o.push_str(&format!("site {}\n", s(&v["site"])));
    for sa in v["ike_sas"].as_array().into_iter().flatten() {
        o.push_str(&format!(
            "{}: #{}, {}, IKEv2, {:016x}_i{} {:016x}_r{}\n  local  '{}' @ {}\n  remote '{}' @ {}{}\n  {}\n",
            s(&sa["peer"]),
            sa["id"],
            s(&sa["state"]),
            u64_of(&sa["spi_i"]),
            if sa["initiator"] == true { "*" } else { "" },
            u64_of(&sa["spi_r"]),
            if sa["initiator"] == true { "" } else { "*" },
            s(&sa["local_id"]),
            s(&sa["local"]),
            s(&sa["remote_id"]),
            s(&sa["remote"]),
            if sa["nat"] == true { " (NAT-T)" } else { "" },
            s(&sa["algorithms"]),
        ));
        if let Some(r) = sa["rekey_in_secs"].as_u64() {
            o.push_str(&format!("  rekeying in {r} s\n"));
        }
    }
    for c in v["child_sas"].as_array().into_iter().flatten() {
        o.push_str(&format!(
            "  {} {}/{}: SPI {} {} {}{}{}, {} bytes, {} packets\n    local {}  remote {}\n",
            s(&c["direction"]),
            s(&c["peer"]),
            s(&c["child"]),
            s(&c["spi"]),
            s(&c["mode"]),
            s(&c["transform"]),
            if c["esn"] == true { "/ESN" } else { "" },
            if c["udp_encap"] == true {
                " UDP-encap"
            } else {
                ""
            },
            c["bytes"],
            c["packets"],
            ts_list(&c["local_ts"]),
            ts_list(&c["remote_ts"]),
        ));
    }
    for d in v["dvipas"].as_array().into_iter().flatten() {
        o.push_str(&format!(
            "DVIPA {} {} ({})\n",
            s(&d["dvipa"]),
            if d["routing"] == true {
                "routing"
            } else {
                "backup"
            },
            s(&d["algorithm"])
        ));
    }
    for row in v["dpt"].as_array().into_iter().flatten() {
        o.push_str(&format!(
            "  DPT {}:{} ({})\n",
            s(&row["dvipa"]),
            row["port"],
            s(&row["algorithm"])
        ));
        for t in row["targets"].as_array().into_iter().flatten() {
            o.push_str(&format!(
                "    target {} (node {}): weight {}, {}, link {}, {} active\n",
                s(&t["name"]),
                t["node"],
                t["weight"],
                if t["listening"] == true {
                    "listening"
                } else {
                    "no listener"
                },
                if t["link_up"] == true { "up" } else { "down" },
                t["active"]
            ));
        }
    }
    for t in v["distrib_targets"].as_array().into_iter().flatten() {
        o.push_str(&format!(
            "  CRT target {}: {} connections\n",
            s(&t["name"]),
            t["connections"]
        ));
    }
    if v.get("l2").is_some_and(|l2| !l2.is_null()) {
        o.push_str(&crate::l2::render_status(&v["l2"]));
    }
    if let Some(st) = v.get("store").filter(|x| !x.is_null()) {
        o.push_str(&format!(
            "store {}: {}, {} pending (lag {} ms), {} IKE and {} Child records, leases held by {}\n",
            s(&st["backend"]),
            if st["reachable"] == true { "reachable" } else { "UNREACHABLE" },
            st["pending"],
            st["lag_ms"],
            st["ike_records"],
            st["child_records"],
            st["lease_holders"]
        ));
    }
    if let Some(ha) = v.get("ha").filter(|x| !x.is_null()) {
        for g in ha["groups"].as_array().into_iter().flatten() {
            o.push_str(&format!("HA {}\n", s(g)));
        }
    }
    o.push_str(&format!("CRT entries: {}\n", v["crt_entries"]));
    o.push_str(&format!("ESP counters: {}\n", v["esp_counters"]));
    o.push_str(&format!("drops: {}\n", v["core_counters"]));
    o
}

/// An integer the daemon may send as a number or, above 2^53, as a string.
fn u64_of(v: &Value) -> u64 {
    v.as_u64()
        .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
        .unwrap_or(0)
}

/// Traffic selectors as `10.0.0.1`, `10.0.0.0-10.0.0.255[tcp/80-443]`.
fn ts_list(v: &Value) -> String {
    let one = |t: &Value| {
        let (a, b) = (
            t["start_addr"].as_str().unwrap_or("?"),
            t["end_addr"].as_str().unwrap_or("?"),
        );
        let mut s = if a == b {
            a.to_string()
        } else {
            format!("{a}-{b}")
        };
        let proto = t["protocol"].as_u64().unwrap_or(0);
        let (p0, p1) = (
            t["start_port"].as_u64().unwrap_or(0),
            t["end_port"].as_u64().unwrap_or(65535),
        );
        if proto != 0 || (p0, p1) != (0, 65535) {
            let ports = if (p0, p1) == (0, 65535) {
                String::new()
            } else if p0 == p1 {
                format!("/{p0}")
            } else {
                format!("/{p0}-{p1}")
            };
            s.push_str(&format!("[{proto}{ports}]"));
        }
        s
    };
    v.as_array()
        .map(|a| a.iter().map(one).collect::<Vec<_>>().join(", "))
        .unwrap_or_default()
}

/// How many (DVIPA, port, target) entries of a status' DPT have a listener.
pub fn listening_targets(status: &Value) -> usize {
    status["dpt"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|row| row["targets"].as_array().into_iter().flatten())
        .filter(|t| t["listening"] == true)
        .count()
}

/// Ask the gateway to initiate.
pub fn initiate(ctl: &Path, peer: &str, child: Option<&str>) -> Result<(), BoxError> {
    let v = crate::ctl::request(
        ctl,
        &json!({"cmd": "initiate", "peer": peer, "child": child}),
    )?;
    match v.get("error") {
        Some(e) => Err(format!("{e}").into()),
        None => {
            println!("initiating IKE SA #{} with {peer}", v["ike_sa"]);
            Ok(())
        }
    }
}

/// `plexgate move DVIPA --to GATEWAY`.
pub fn move_dvipa(ctl: &Path, dvipa: std::net::IpAddr, to: &str) -> Result<(), BoxError> {
    let v = crate::ctl::request(
        ctl,
        &json!({"cmd": "move", "dvipa": dvipa.to_string(), "to": to}),
    )?;
    match v.get("error") {
        Some(e) => Err(format!("{e}").into()),
        None => {
            println!("moving {dvipa} to {to}: the owner hands it over, {to} renegotiates its SAs");
            Ok(())
        }
    }
}

/// `plexgate records [--json]`.
pub fn records(ctl: &Path, as_json: bool) -> Result<(), BoxError> {
    let v = crate::ctl::request(ctl, &json!({"cmd": "records"}))?;
    if let Some(e) = v.get("error") {
        return Err(format!("{e}").into());
    }
    if as_json {
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    for i in v["ike"].as_array().into_iter().flatten() {
        println!(
            "IKE SA {} peer {} {} -> {} ({} <-> {}){}",
            i["spis"].as_str().unwrap_or("-"),
            i["peer"].as_str().unwrap_or("-"),
            i["local"].as_str().unwrap_or("-"),
            i["remote"].as_str().unwrap_or("-"),
            i["local_id"].as_str().unwrap_or("-"),
            i["remote_id"].as_str().unwrap_or("-"),
            if i["nat_remote"] == true {
                ", peer behind NAT"
            } else {
                ""
            }
        );
        for c in i["children"].as_array().into_iter().flatten() {
            println!(
                "  child {} {}_i {}_o {} === {}",
                c["child"].as_str().unwrap_or("-"),
                c["spi_in"].as_str().unwrap_or("-"),
                c["spi_out"].as_str().unwrap_or("-"),
                c["ts_local"],
                c["ts_remote"]
            );
        }
    }
    let refused = v["refused"].as_array().map_or(0, Vec::len);
    if refused > 0 {
        println!("{refused} record(s) refused (altered, forged or under an unknown key)");
    }
    Ok(())
}
