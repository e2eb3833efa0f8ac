//! Packet captures inside a namespace, read back with tshark.
//!
//! [`Capture::start`] runs `tcpdump -U --immediate-mode -w FILE` (without
//! immediate mode packets still in the kernel ring are lost when it stops) on an interface of a namespace and
//! waits until it is listening; [`Capture::stop`] ends it (SIGTERM flushes the
//! file) and returns the pcap path. [`tshark_fields`] reads a pcap with a display
//! filter and returns the chosen fields per packet, e.g. the SPI and sequence
//! numbers of ESP in UDP 4500 (`esp.spi`, `esp.sequence`) — the proof that traffic
//! on the wire really was encrypted, and by which SA.

use crate::cmd::{self, SHORT};
use crate::error::{LabError, Result};
use crate::labdir::LabDir;
use crate::netns::{Netns, Process};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// A running tcpdump; stopped on drop.
#[derive(Debug)]
pub struct Capture {
    process: Option<Process>,
    pcap: PathBuf,
    dir: LabDir,
}

impl Capture {
    /// Capture on `iface` in `ns` with the BPF `filter` (may be empty); waits
    /// (≤ 10 s) until tcpdump reports it is listening.
    pub fn start(ns: &Netns, iface: &str, filter: &str) -> Result<Capture> {
        let dir = LabDir::new(&format!("pcap-{}", ns.label()))?;
        let pcap = dir.join(&format!("{}-{iface}.pcap", ns.label()));
        let p = pcap.display().to_string();
        let mut argv = vec![
            "tcpdump",
            "-n",
            "-U",
            "--immediate-mode",
            "-Z",
            "root",
            "-s",
            "0",
            "-i",
            iface,
            "-w",
            &p,
        ];
        if !filter.is_empty() {
            argv.push(filter);
        }
        let process = ns.spawn(&argv, &dir.join("tcpdump.log"))?;
        let deadline = Instant::now() + Duration::from_secs(10);
        while !process.log().contains("listening on") {
            if Instant::now() >= deadline {
                return Err(LabError::Timeout {
                    what: format!("tcpdump on {iface}: {}", process.log().trim()),
                    after: Duration::from_secs(10),
                });
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(Capture {
            process: Some(process),
            pcap,
            dir,
        })
    }

    /// Stop capturing and return the pcap file (valid while the capture lives).
    pub fn stop(&mut self) -> &Path {
        if let Some(mut p) = self.process.take() {
            // tcpdump writes out its buffer on SIGTERM.
            p.stop(Duration::from_secs(3));
        }
        &self.pcap
    }

    /// The pcap path.
    pub fn path(&self) -> &Path {
        &self.pcap
    }

    /// The scratch directory holding the pcap.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

/// Read `pcap` with tshark, keep packets matching `display_filter`, and return
/// the values of `fields` for each (tab-separated by tshark, split here).
pub fn tshark_fields(
    pcap: &Path,
    display_filter: &str,
    fields: &[&str],
) -> Result<Vec<Vec<String>>> {
    let p = pcap.display().to_string();
    let mut argv = vec![
        "tshark",
        "-n",
        "-r",
        &p,
        "-Y",
        display_filter,
        "-T",
        "fields",
    ];
    for f in fields {
        argv.extend_from_slice(&["-e", f]);
    }
    let out = cmd::run_ok(&argv, SHORT)?;
    Ok(out
        .stdout
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| l.split('\t').map(str::to_string).collect())
        .collect())
}

/// SPIs (parsed from tshark's `0x…` form) of the ESP packets in `pcap`, in order.
pub fn esp_spis(pcap: &Path) -> Result<Vec<u32>> {
    tshark_fields(pcap, "esp", &["esp.spi"])?
        .into_iter()
        .map(|row| {
            let v = row.first().cloned().unwrap_or_default();
            let hex = v.trim_start_matches("0x");
            u32::from_str_radix(hex, 16).map_err(|_| LabError::Parse {
                what: "tshark esp.spi".into(),
                detail: format!("`{v}`"),
            })
        })
        .collect()
}
