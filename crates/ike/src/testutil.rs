//! Test-only helpers: a minimal pcap reader for the strongSwan captures in
//! `crates/ike/testdata/captures/` and a reader for the hex dumps in charon's logs.

use std::path::PathBuf;

fn dir(name: &str) -> PathBuf {
    // A copy of `shared/captures` (strongSwan 5.9.8 exchanges with their key logs)
    // lives in the crate so the tests need nothing outside the repository.
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("testdata/captures")
        .join(name)
}

/// The IKE datagrams (UDP 500 or 4500 with the non-ESP marker removed) of a capture,
/// in order. Returns (src port, dst port, bytes).
pub(crate) fn capture_ike_all(name: &str) -> Vec<(u16, u16, Vec<u8>)> {
    let data = std::fs::read(dir(name).join("exchange.pcap")).expect("capture present");
    let mut out = Vec::new();
    let mut off = 24; // global header; link type 1 (Ethernet)
    while off + 16 <= data.len() {
        let incl = u32::from_le_bytes(data[off + 8..off + 12].try_into().unwrap()) as usize;
        let frame = &data[off + 16..off + 16 + incl];
        off += 16 + incl;
        // Ethernet (14) + IPv4 (ihl) + UDP (8)
        if frame.len() < 14 + 20 + 8 || frame[12..14] != [0x08, 0x00] || frame[23] != 17 {
            continue;
        }
        let ihl = (frame[14] & 0x0f) as usize * 4;
        let udp = &frame[14 + ihl..];
        let sport = u16::from_be_bytes([udp[0], udp[1]]);
        let dport = u16::from_be_bytes([udp[2], udp[3]]);
        let payload = &udp[8..];
        let ike = if dport == 500 || sport == 500 {
            payload
        } else if (dport == 4500 || sport == 4500) && payload.len() >= 4 && payload[..4] == [0; 4] {
            &payload[4..]
        } else {
            continue;
        };
        out.push((sport, dport, ike.to_vec()));
    }
    out
}

/// The n-th IKE datagram of a capture.
pub(crate) fn capture_ike(name: &str, n: usize) -> Vec<u8> {
    capture_ike_all(name).swap_remove(n).2
}

/// The n-th hex dump following a log line that contains `label` in
/// `<capture>/<file>`, e.g. `log_hex("gcm128-x25519", "initiator.log", "Sk_d secret", 0)`.
pub(crate) fn log_hex(name: &str, file: &str, label: &str, n: usize) -> Vec<u8> {
    let text = std::fs::read_to_string(dir(name).join(file)).expect("log present");
    let lines: Vec<&str> = text.lines().collect();
    let mut seen = 0;
    for (i, l) in lines.iter().enumerate() {
        if !l.contains(label) || !l.contains("=>") {
            continue;
        }
        if seen < n {
            seen += 1;
            continue;
        }
        let mut out = Vec::new();
        for l in &lines[i + 1..] {
            // "09[IKE]   16: 4F F2 57 ...  ascii"
            let Some(pos) = l.find("]") else { break };
            let rest = l[pos + 1..].trim_start();
            let Some(colon) = rest.find(':') else { break };
            if rest[..colon].trim().parse::<usize>().is_err() {
                break;
            }
            let hexpart = &rest[colon + 1..];
            let hexpart = hexpart.get(..50).unwrap_or(hexpart);
            for tok in hexpart.split_whitespace() {
                if tok.len() == 2 {
                    if let Ok(b) = u8::from_str_radix(tok, 16) {
                        out.push(b);
                    }
                }
            }
        }
        return out;
    }
    panic!("{label} #{n} not found in {name}/{file}");
}
