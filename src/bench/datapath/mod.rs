//! `plexgate bench datapath`: raw AEAD open of ESP packets with ring versus the
//! whole inbound path of the gateway on the same bytes, per transform and packet
//! size. The path is the real one: [`GatewayCore::on_udp`] on a UDP/4500 payload —
//! classification (RFC 3948), SAD lookup by SPI, ESP open with the anti-replay
//! check, the SA's selector check (RFC 4301 §5.2), the connection lookup in the CRT
//! and the GRE encapsulation in place — handing the GRE packet to a sink that only
//! counts it.
//!
//! Both loops start where the daemon's receive thread starts: from a batch of
//! [`BATCH`] packets already in the receive buffers. Opening is destructive, so
//! before each batch both copy it from pre-sealed templates into those buffers
//! (the stand-in for `recvmmsg`'s copy); that copy is outside both timings and
//! is reported on its own (`copy_ns`, and `ratio_with_copy` with it counted in
//! both). Each batch is timed from one clock read, which the path also hands
//! to the core as `now`, as the daemon does. Packets carry increasing sequence
//! numbers; each round re-installs the SA (untimed) so that the replay window
//! accepts them again.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use plexgate_distrib as distrib;
use plexgate_ike as ike;
use plexgate_ipsec::{self as ipsec, Direction, EspCipher, EspTransform, SaParams};
use serde_json::json;

use crate::gateway::core::{GatewayCore, RxBatch, RxPacket, Sink};

mod flood;
use crate::site_template::{DvipaSite, TargetLink};
pub use flood::{measure_flood, FloodRow};

type BoxError = Box<dyn std::error::Error>;

/// Packet sizes (inner IP packet length).
pub const SIZES: [usize; 4] = [64, 512, 1400, 8192];
const CLIENT: Ipv4Addr = Ipv4Addr::new(192, 168, 77, 1);
const DVIPA: Ipv4Addr = Ipv4Addr::new(10, 100, 0, 10);
const GW: Ipv4Addr = Ipv4Addr::new(10, 250, 0, 2);
const PEER: Ipv4Addr = Ipv4Addr::new(10, 250, 0, 1);
const SPI_IN: u32 = 0x1000_0001;
const SPI_OUT: u32 = 0x2000_0002;
const CLUSTER_KEY: &[u8] = b"bench-cluster-key-0123456789abcdef";

/// One row of the result.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Row {
    /// Transform name.
    pub transform: String,
    /// Inner packet size in bytes.
    pub size: usize,
    /// Raw AEAD (or CBC+HMAC) open throughput, inner Gbit/s.
    pub aead_gbps: f64,
    /// Whole inbound path throughput, inner Gbit/s.
    pub path_gbps: f64,
    /// aead_ns / path_ns: the median over pairs of rounds measured back to back.
    pub ratio: f64,
    /// Nanoseconds per packet, raw open (median over rounds; also below).
    pub aead_ns: f64,
    /// Nanoseconds per packet, whole path.
    pub path_ns: f64,
    /// What the gateway adds around the crypto (median of path - raw per pair).
    pub non_crypto_ns: f64,
    /// Packets per second through the whole path.
    pub path_pps: f64,
    /// Nanoseconds per packet to copy it into a receive slot (the stand-in for
    /// `recvmmsg`'s copy, which both loops do outside their timing).
    pub copy_ns: f64,
    /// The ratio if that copy were counted in both loops (the convention of
    /// the figures recorded before 2026-11-23 afternoon).
    pub ratio_with_copy: f64,
    /// Total raw time over total path time (the mean, where `ratio` is the
    /// median of the per-pair ratios).
    pub ratio_mean: f64,
    /// Number of (raw, path) round pairs measured.
    pub pairs: usize,
}

fn keys(t: EspTransform) -> (Vec<u8>, Vec<u8>) {
    let (ek, ik) = (t.enc_key_len() as u8, t.integ_key_len() as u8);
    ((0..ek).collect(), (100..100 + ik).collect())
}

/// IANA ids of a transform: (ENCR, key bits, INTEG).
fn ikev2_ids(t: EspTransform) -> (u16, u16, Option<u16>) {
    // ChaCha20-Poly1305 carries no Key Length attribute; the IKE engine
    // reports 256 for it.
    (t.encr_id(), t.key_bits().unwrap_or(256), t.integ_id())
}

/// The client's outbound SA (what the gateway's inbound SA opens).
fn client_params(t: EspTransform) -> SaParams {
    let (enc_key, integ_key) = keys(t);
    SaParams {
        spi: SPI_IN,
        direction: Direction::Outbound,
        transform: t,
        enc_key,
        integ_key,
        esn: true,
        mode: ipsec::Mode::Tunnel,
        replay_window: 1024,
        lifetime: ipsec::Lifetime::default(),
        local_ts: vec![],
        remote_ts: vec![],
        local_addr: IpAddr::V4(PEER),
        remote_addr: IpAddr::V4(GW),
        encap: Some(ipsec::UdpEncapPorts {
            local_port: 4500,
            remote_port: 4500,
        }),
        initial_seq: 0,
        peer: "bench".into(),
        child: "bench".into(),
    }
}

fn child_sa(t: EspTransform) -> ike::ChildSa {
    let (encr, encr_key_bits, integ) = ikev2_ids(t);
    let k = keys(t);
    ike::ChildSa {
        name: "web".into(),
        spi_in: SPI_IN,
        spi_out: SPI_OUT,
        protocol: 50,
        encr,
        encr_key_bits,
        integ,
        esn: true,
        keys_in: k.clone(),
        keys_out: k,
        ts_local: vec![ike::TrafficSelector::host(IpAddr::V4(DVIPA))],
        ts_remote: vec![ike::TrafficSelector::host(IpAddr::V4(CLIENT))],
        local: SocketAddr::new(IpAddr::V4(GW), 4500),
        remote: SocketAddr::new(IpAddr::V4(PEER), 4500),
        udp_encap: true,
        mode: ike::Mode::Tunnel,
        lifetime: Duration::from_secs(3600),
    }
}

/// An inner TCP packet client:40000 → DVIPA:80 of `size` bytes.
fn inner_packet(size: usize, syn: bool) -> Vec<u8> {
    let payload = vec![0xabu8; size.saturating_sub(40)];
    let mut v = Vec::with_capacity(size);
    let b = etherparse::PacketBuilder::ipv4(CLIENT.octets(), DVIPA.octets(), 64)
        .tcp(40000, 80, 1, 65535);
    let b = if syn { b.syn() } else { b.ack(1) };
    b.write(&mut v, &payload).expect("build packet");
    v
}

/// A sink that only counts what the gateway would send.
#[derive(Default)]
struct CountingSink {
    gre_packets: u64,
    gre_bytes: u64,
    other: u64,
}

impl Sink for CountingSink {
    fn udp(&mut self, _: SocketAddr, _: SocketAddr, _: &[u8]) {
        self.other += 1;
    }
    fn esp(&mut self, _: IpAddr, _: IpAddr, _: &[u8]) {
        self.other += 1;
    }
    fn gre(&mut self, _: IpAddr, data: &[u8]) {
        self.gre_packets += 1;
        self.gre_bytes += data.len() as u64;
    }
    fn tun(&mut self, _: &[u8]) {
        self.other += 1;
    }
    fn cluster(&mut self, _: distrib::Destination, _: &[u8]) {}
}

/// Packets received in one `recvmmsg` by the daemon (and per clock read).
pub const BATCH: usize = 32;

/// Where each packet of a batch starts in its slot (headroom, as in the daemon).
const HEADROOM: usize = 64;

/// The receive buffers of one batch, filled from the templates the way
/// `recvmmsg` fills the daemon's: [`BATCH`] packets copied in one go, one per
/// slot, and then handed on one by one. Both loops use it the same way.
struct Slots {
    buf: Vec<u8>,
    slot: usize,
    lens: Vec<usize>,
}

impl Slots {
    fn new(max_len: usize) -> Slots {
        let slot = (HEADROOM + max_len).next_multiple_of(64);
        Slots {
            buf: vec![0u8; slot * BATCH],
            slot,
            lens: Vec::with_capacity(BATCH),
        }
    }

    /// "Receive" up to [`BATCH`] templates.
    fn fill(&mut self, chunk: &[Vec<u8>]) {
        self.lens.clear();
        for (i, pkt) in chunk.iter().enumerate() {
            let at = i * self.slot + HEADROOM;
            self.buf[at..at + pkt.len()].copy_from_slice(pkt);
            self.lens.push(pkt.len());
        }
    }

    /// The buffer of slot `i` and the packet's length in it.
    fn get(&mut self, i: usize) -> (&mut [u8], usize) {
        let s = self.slot;
        (&mut self.buf[i * s..(i + 1) * s], self.lens[i])
    }
}

impl RxBatch for Slots {
    fn count(&self) -> usize {
        self.lens.len()
    }
    #[inline]
    fn packet(&mut self, i: usize) -> Option<RxPacket<'_>> {
        let (buf, len) = self.get(i);
        Some(RxPacket {
            buf,
            start: HEADROOM,
            len,
            remote: Some(SocketAddr::new(IpAddr::V4(PEER), 4500)),
        })
    }
}

/// A gateway with one Child SA, a target listening on the DVIPA and an
/// established connection, plus `n` sealed ESP packets of `size` bytes for it.
pub struct Fixture {
    transform: EspTransform,
    core: GatewayCore,
    templates: Vec<Vec<u8>>,
    slots: Slots,
    sink: CountingSink,
    dir: PathBuf,
    /// Hand the gateway [`BATCH`] packets per call (`on_udp_batch`, as the
    /// daemon's receive threads do) instead of one (`on_udp`).
    pub batched: bool,
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Fixture {
    /// Build the fixture.
    pub fn new(t: EspTransform, size: usize, n: usize) -> Result<Fixture, BoxError> {
        static SEQ: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "plexgate-bench-{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir)?;
        let mut site = DvipaSite::new("bench", GW, DVIPA);
        site.targets = vec![TargetLink::new(
            "web-1",
            "web-1",
            Ipv4Addr::new(10, 9, 0, 1),
        )];
        site.write(&dir, b"bench-psk-0123456789", CLUSTER_KEY)?;
        let checked = plexgate_policy::parse_str(&site.toml(), "bench.toml", &dir)
            .map_err(|d| format!("{d}"))?;
        let setup = crate::gateway::core::CoreSetup::load(&checked.policy)?;
        let mut core = GatewayCore::new(
            &checked.policy,
            setup,
            Box::new(ike::SeededRng::new(1)),
            Instant::now(),
        )?;
        let mut sink = CountingSink::default();
        let now = Instant::now();
        let node = distrib::NodeId(1000);
        let m = distrib::Message::SrvStat {
            target: node,
            dvipa: IpAddr::V4(DVIPA),
            port: 80,
            listening: true,
        };
        core.on_cluster(
            now,
            &distrib::cluster::seal_with(&distrib::ClusterKey::new(CLUSTER_KEY), node, 1, &m),
            &mut sink,
        );
        // Seal the templates: first the SYN that opens the connection, then data.
        let mut out = ipsec::SecurityAssociation::new(client_params(t), now)?;
        let mut templates = Vec::with_capacity(n + 1);
        for i in 0..=n {
            let inner = inner_packet(size, i == 0);
            let mut buf = vec![0u8; out.sealed_len(inner.len())];
            let len = out.seal(now, &inner, 4, &mut buf)?;
            buf.truncate(len);
            templates.push(buf);
        }
        let max_len = templates.iter().map(Vec::len).max().unwrap_or(0);
        let mut f = Fixture {
            transform: t,
            core,
            templates,
            slots: Slots::new(max_len),
            sink,
            dir,
            batched: true,
        };
        f.core
            .install_child_sa(now, plexgate_ike::IkeSaId(1), "client", child_sa(t));
        f.one(0, now);
        if f.sink.gre_packets != 1 {
            return Err(format!(
                "{t:?}: the SYN did not reach the target (sink: {} other)",
                f.sink.other
            )
            .into());
        }
        Ok(f)
    }

    /// The gateway's per-packet entry point on template `i` (the SYN).
    fn one(&mut self, i: usize, now: Instant) {
        self.slots.fill(&self.templates[i..=i]);
        self.one_slot(0, now);
    }

    #[inline]
    fn one_slot(&mut self, i: usize, now: Instant) {
        let local = SocketAddr::new(IpAddr::V4(GW), 4500);
        let remote = SocketAddr::new(IpAddr::V4(PEER), 4500);
        let (buf, len) = self.slots.get(i);
        self.core
            .on_udp(now, local, remote, buf, HEADROOM, len, &mut self.sink);
    }

    /// Push every data packet once through the gateway (re-installing the SA
    /// first, so that the replay window takes the same sequence numbers again).
    /// Returns the number of packets that reached the target.
    pub fn round(&mut self) -> u64 {
        self.timed_round().0
    }

    /// [`Fixture::round`], also returning the time spent in the gateway: from
    /// the clock read that starts each batch (the one the daemon makes per
    /// `recvmmsg`, handed to the core as `now`) to the end of the batch. The SA
    /// re-install and the copy of each batch into the receive slots are not in
    /// it; [`Fixture::fill_round`] measures the copy on its own.
    pub fn timed_round(&mut self) -> (u64, Duration) {
        self.core.remove_child_sa(SPI_IN);
        self.core.install_child_sa(
            Instant::now(),
            plexgate_ike::IkeSaId(1),
            "client",
            child_sa(self.transform),
        );
        let before = self.sink.gre_packets;
        let local = SocketAddr::new(IpAddr::V4(GW), 4500);
        let mut spent = Duration::ZERO;
        let mut first = 1;
        while first < self.templates.len() {
            let n = BATCH.min(self.templates.len() - first);
            self.slots.fill(&self.templates[first..first + n]);
            first += n;
            let now = Instant::now();
            if self.batched {
                self.core
                    .on_udp_batch(now, local, &mut self.slots, &mut self.sink);
            } else {
                for i in 0..n {
                    self.one_slot(i, now);
                }
            }
            spent += now.elapsed();
        }
        let _ = self.core.drain_side_effects();
        (self.sink.gre_packets - before, spent)
    }

    /// Data packets per round.
    pub fn packets(&self) -> usize {
        self.templates.len() - 1
    }

    /// Open every data packet once with the transform's primitives only.
    pub fn raw_round(&mut self, c: &EspCipher) -> bool {
        self.timed_raw_round(c).is_some()
    }

    /// [`Fixture::raw_round`], returning the time spent opening (timed per
    /// batch like [`Fixture::timed_round`]), or `None` if a packet failed.
    pub fn timed_raw_round(&mut self, c: &EspCipher) -> Option<Duration> {
        let mut spent = Duration::ZERO;
        for chunk in self.templates[1..].chunks(BATCH) {
            self.slots.fill(chunk);
            let start = Instant::now();
            for i in 0..chunk.len() {
                let (buf, len) = self.slots.get(i);
                if !raw_open(c, self.transform, &mut buf[HEADROOM..HEADROOM + len]) {
                    return None;
                }
            }
            spent += start.elapsed();
        }
        Some(spent)
    }

    /// The time to copy every data packet into the receive slots once, batch
    /// by batch (what both loops do before each batch, outside their timing).
    pub fn fill_round(&mut self) -> Duration {
        let start = Instant::now();
        for chunk in self.templates[1..].chunks(BATCH) {
            self.slots.fill(chunk);
            std::hint::black_box(&mut self.slots.buf);
        }
        start.elapsed()
    }

    /// The cipher for [`Fixture::raw_round`].
    pub fn cipher(&self) -> Result<EspCipher, BoxError> {
        let (e, i) = keys(self.transform);
        Ok(EspCipher::new(self.transform, &e, &i)?)
    }
}

/// Raw open with the transform's primitives only.
fn raw_open(c: &EspCipher, t: EspTransform, buf: &mut [u8]) -> bool {
    match t.integ() {
        Some(_) => {
            let n = buf.len();
            let icv_len = t.icv_len();
            // ESN: the high 32 bits of the sequence number (0 here) are appended
            // for the ICV only (RFC 4303 §3.3.2.1).
            let Some(icv) = c.hmac_icv(&[&buf[..n - icv_len], &[0u8; 4]]) else {
                return false;
            };
            if !plexgate_ipsec::transform::constant_time_eq(&icv, &buf[n - icv_len..]) {
                return false;
            }
            let mut iv = [0u8; 16];
            iv.copy_from_slice(&buf[8..24]);
            c.cbc_decrypt(&iv, &mut buf[24..n - icv_len]).is_some()
        }
        None => {
            let mut iv = [0u8; 8];
            iv.copy_from_slice(&buf[8..16]);
            // ESN: AAD = SPI || seq_hi || seq_lo (RFC 4106 §5); seq_hi is 0 here.
            let mut aad = [0u8; 12];
            aad[..4].copy_from_slice(&buf[..4]);
            aad[8..].copy_from_slice(&buf[4..8]);
            c.aead_open(&iv, &aad, &mut buf[16..]).is_some()
        }
    }
}

fn measure(t: EspTransform, size: usize, seconds: f64, batched: bool) -> Result<Row, BoxError> {
    let n = ((4 << 20) / size.max(64)).clamp(256, 16384);
    let mut f = Fixture::new(t, size, n)?;
    f.batched = batched;
    let cipher = f.cipher()?;
    let budget = Duration::from_secs_f64(seconds);
    // Alternate the two measurements round by round (~1 ms each), in both
    // orders, so that both see the same noise; each pair gives one ratio. The
    // figures are medians over the pairs: a burst of load from a neighbour
    // slows both rounds of a pair and moves its ratio little, and the median
    // ignores the pairs it hit unevenly. The means are kept as `ratio_mean`.
    let pkts = f.packets() as f64;
    let ns = |d: Duration| d.as_nanos() as f64 / pkts;
    let (mut raw, mut path, mut fill) = (Vec::new(), Vec::new(), Vec::new());
    let mut total = Duration::ZERO;
    while total < 2 * budget {
        let raw_round = |f: &mut Fixture| {
            f.timed_raw_round(&cipher)
                .ok_or_else(|| format!("{t:?}: raw open failed"))
        };
        let path_round = |f: &mut Fixture| {
            let (got, spent) = f.timed_round();
            if got != f.packets() as u64 {
                return Err(format!(
                    "{t:?}: {got} of {} packets reached the target",
                    f.packets()
                ));
            }
            Ok(spent)
        };
        let (r, p) = if raw.len() % 2 == 0 {
            let r = raw_round(&mut f)?;
            (r, path_round(&mut f)?)
        } else {
            let p = path_round(&mut f)?;
            (raw_round(&mut f)?, p)
        };
        total += r + p;
        raw.push(ns(r));
        path.push(ns(p));
        fill.push(ns(f.fill_round()));
    }
    let ratios: Vec<f64> = raw.iter().zip(&path).map(|(r, p)| r / p).collect();
    let extra: Vec<f64> = raw.iter().zip(&path).map(|(r, p)| p - r).collect();
    let ratio_mean = raw.iter().sum::<f64>() / path.iter().sum::<f64>();
    let (aead_ns, path_ns, copy_ns) = (median(&raw), median(&path), median(&fill));
    let gbps = |ns: f64| size as f64 * 8.0 / ns;
    Ok(Row {
        transform: format!("{t:?}"),
        size,
        aead_gbps: gbps(aead_ns),
        path_gbps: gbps(path_ns),
        ratio: median(&ratios),
        aead_ns,
        path_ns,
        non_crypto_ns: median(&extra),
        path_pps: 1e9 / path_ns,
        copy_ns,
        ratio_with_copy: (aead_ns + copy_ns) / (path_ns + copy_ns),
        ratio_mean,
        pairs: raw.len(),
    })
}

/// The median of `v` (not empty).
fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// Run the benchmark for every transform and size.
pub fn run_all(seconds: f64) -> Result<Vec<Row>, BoxError> {
    let mut rows = Vec::new();
    for t in EspTransform::ALL {
        for size in SIZES {
            rows.push(measure(t, size, seconds, true)?);
        }
    }
    Ok(rows)
}

/// `plexgate bench datapath`, optionally for one transform and/or size.
///
/// With `flood`, the rows of [`measure_flood`] instead: the cost of
/// unknown-SPI and bad-ICV packets next to legitimate ones.
pub fn datapath(
    as_json: bool,
    seconds: f64,
    only_transform: Option<&str>,
    only_size: Option<usize>,
    per_packet: bool,
    flood: bool,
) -> Result<(), BoxError> {
    if !as_json && !flood {
        println!(
            "{:<22} {:>6} {:>10} {:>10} {:>7} {:>9} {:>9} {:>10} {:>11} {:>8} {:>10}",
            "transform",
            "size",
            "aead Gb/s",
            "path Gb/s",
            "ratio",
            "aead ns",
            "path ns",
            "non-crypto",
            "path pkt/s",
            "copy ns",
            "ratio+copy"
        );
    }
    let transforms: Vec<EspTransform> = EspTransform::ALL
        .into_iter()
        .filter(|t| only_transform.is_none_or(|n| n.eq_ignore_ascii_case(&format!("{t:?}"))))
        .collect();
    if transforms.is_empty() {
        return Err(format!(
            "no transform named {only_transform:?}; one of {:?}",
            EspTransform::ALL
        )
        .into());
    }
    let sizes: Vec<usize> = only_size.map(|s| vec![s]).unwrap_or_else(|| SIZES.to_vec());
    if let Some(s) = sizes.iter().find(|s| !(64..=9000).contains(*s)) {
        return Err(format!("size {s}: from 64 to 9000 bytes").into());
    }
    if flood {
        return flood::print_flood(as_json, seconds, &transforms, &sizes);
    }
    for &t in &transforms {
        for &size in &sizes {
            if !(64..=9000).contains(&size) {
                return Err(format!("size {size}: from 64 to 9000 bytes").into());
            }
            let r = measure(t, size, seconds, !per_packet)?;
            if as_json {
                println!("{}", json!(r));
            } else {
                println!(
                    "{:<22} {:>6} {:>10.2} {:>10.2} {:>7.3} {:>9.1} {:>9.1} {:>10.1} {:>11.0} {:>8.1} {:>10.3}",
                    r.transform,
                    r.size,
                    r.aead_gbps,
                    r.path_gbps,
                    r.ratio,
                    r.aead_ns,
                    r.path_ns,
                    r.non_crypto_ns,
                    r.path_pps,
                    r.copy_ns,
                    r.ratio_with_copy
                );
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_transform_reaches_the_target_through_the_real_path() {
        for (t, batched) in EspTransform::ALL
            .into_iter()
            .flat_map(|t| [(t, true), (t, false)])
        {
            let mut f = Fixture::new(t, 512, 64).unwrap();
            f.batched = batched;
            assert_eq!(f.round(), 64, "{t:?}");
            assert_eq!(
                f.round(),
                64,
                "{t:?}: a re-installed SA takes the same packets again"
            );
            let c = f.cipher().unwrap();
            assert!(f.raw_round(&c), "{t:?}");
        }
    }
}
