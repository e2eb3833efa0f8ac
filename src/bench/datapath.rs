//! `plexgate bench datapath`: raw AEAD open of ESP packets with ring versus the
//! whole inbound path of the gateway on the same bytes — SAD lookup by SPI, ESP open,
//! anti-replay, selector check (RFC 4301 §5.2), connection lookup in the CRT and GRE
//! encapsulation — per transform and packet size.
//!
//! Both loops copy each packet from a pre-sealed template into the work buffer
//! before opening it (opening is destructive), so the copy is in both figures.
//! Packets carry increasing sequence numbers; each round uses a freshly installed SA
//! so the replay window accepts them.

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use plexgate_distrib as distrib;
use plexgate_ipsec::{self as ipsec, Direction, EspCipher, EspTransform, SaParams};
use serde_json::json;

type BoxError = Box<dyn std::error::Error>;

/// Packet sizes (inner IP packet length).
pub const SIZES: [usize; 4] = [64, 512, 1400, 8192];
const CLIENT: Ipv4Addr = Ipv4Addr::new(192, 168, 77, 1);
const DVIPA: Ipv4Addr = Ipv4Addr::new(10, 100, 0, 10);
const TARGET: Ipv4Addr = Ipv4Addr::new(10, 9, 0, 2);

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
    /// path / aead.
    pub ratio: f64,
    /// Nanoseconds per packet, raw open.
    pub aead_ns: f64,
    /// Nanoseconds per packet, whole path.
    pub path_ns: f64,
    /// path_ns - aead_ns: what the gateway adds around the crypto.
    pub non_crypto_ns: f64,
    /// Packets per second through the whole path.
    pub path_pps: f64,
}

fn params(t: EspTransform, dir: Direction) -> SaParams {
    let (ek, ik) = match t {
        EspTransform::AesGcm128 => (20, 0),
        EspTransform::AesGcm256 | EspTransform::ChaCha20Poly1305 => (36, 0),
        EspTransform::AesCbc128HmacSha256 => (16, 32),
        EspTransform::AesCbc256HmacSha256 => (32, 32),
    };
    SaParams {
        spi: 0x1000_0001,
        direction: dir,
        transform: t,
        enc_key: (0..ek as u8).collect(),
        integ_key: (100..100 + ik as u8).collect(),
        esn: true,
        mode: ipsec::Mode::Tunnel,
        replay_window: 1024,
        lifetime: ipsec::Lifetime::default(),
        local_ts: vec![ipsec::TrafficSelector::host(IpAddr::V4(DVIPA))],
        remote_ts: vec![ipsec::TrafficSelector::host(IpAddr::V4(CLIENT))],
        local_addr: IpAddr::V4(Ipv4Addr::new(10, 250, 0, 2)),
        remote_addr: IpAddr::V4(Ipv4Addr::new(10, 250, 0, 1)),
        encap: Some(ipsec::UdpEncapPorts { local_port: 4500, remote_port: 4500 }),
        initial_seq: 0,
        peer: "bench".into(),
        child: "bench".into(),
    }
}

/// An inner TCP packet client:40000 → DVIPA:80 of `size` bytes (ACK, not SYN).
fn inner_packet(size: usize, syn: bool) -> Vec<u8> {
    let payload = vec![0xabu8; size.saturating_sub(40)];
    let mut v = Vec::with_capacity(size);
    let b = etherparse::PacketBuilder::ipv4(CLIENT.octets(), DVIPA.octets(), 64).tcp(40000, 80, 1, 65535);
    let b = if syn { b.syn() } else { b.ack(1) };
    b.write(&mut v, &payload).expect("build packet");
    v
}

fn distributor() -> distrib::Distributor {
    let key = distrib::ClusterKey::new(b"bench-cluster-key-0123456789abcdef");
    let gw = distrib::NodeId(1);
    let tgt = distrib::NodeId(1000);
    let mut d = distrib::Distributor::new(distrib::DistributorConfig::new(gw, key.clone(), 1));
    d.bind_link(distrib::LinkId(0), tgt, IpAddr::V4(TARGET));
    d.configure_dvipa(distrib::dpt::DvipaConfig {
        dvipa: IpAddr::V4(DVIPA),
        ports: distrib::PortSet::List(vec![80]),
        targets: distrib::TargetSet::List(vec![(tgt, 1)]),
        algorithm: distrib::Algorithm::RoundRobin,
        routing_gateway: gw,
        backups: vec![],
    });
    let m = distrib::Message::SrvStat { target: tgt, dvipa: IpAddr::V4(DVIPA), port: 80, listening: true };
    let bytes = distrib::cluster::seal_with(&key, tgt, 1, &m);
    let now = Instant::now();
    let _ = d.handle_cluster(now, &bytes);
    // Establish the connection the benchmark packets belong to.
    let _ = d.route_inbound(now, &inner_packet(64, true), true);
    while d.poll_transmit().is_some() {}
    d
}

/// Seal `n` packets of `size` with increasing sequence numbers.
fn templates(t: EspTransform, size: usize, n: usize) -> Result<Vec<Vec<u8>>, BoxError> {
    let mut out = ipsec::SecurityAssociation::new(params(t, Direction::Outbound), Instant::now())?;
    let inner = inner_packet(size, false);
    let mut v = Vec::with_capacity(n);
    for _ in 0..n {
        let mut buf = vec![0u8; out.sealed_len(size)];
        let len = out.seal(Instant::now(), &inner, 4, &mut buf)?;
        buf.truncate(len);
        v.push(buf);
    }
    Ok(v)
}

/// Raw open with the transform's primitives only.
fn raw_open(c: &EspCipher, t: EspTransform, buf: &mut [u8]) -> bool {
    match t {
        EspTransform::AesCbc128HmacSha256 | EspTransform::AesCbc256HmacSha256 => {
            let n = buf.len();
            // ESN: the high 32 bits of the sequence number (0 here) are appended
            // for the ICV only (RFC 4303 §3.3.2.1).
            let Some(icv) = c.hmac_icv(&[&buf[..n - 16], &[0u8; 4]]) else { return false };
            if !plexgate_ipsec::transform::constant_time_eq(&icv, &buf[n - 16..]) {
                return false;
            }
            let mut iv = [0u8; 16];
            iv.copy_from_slice(&buf[8..24]);
            c.cbc_decrypt(&iv, &mut buf[24..n - 16]).is_some()
        }
        _ => {
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

fn measure(t: EspTransform, size: usize, seconds: f64) -> Result<Row, BoxError> {
    let n = (4 << 20) / size.max(64);
    let n = n.clamp(256, 16384);
    let tpl = templates(t, size, n)?;
    let p = params(t, Direction::Inbound);
    let cipher = EspCipher::new(t, &p.enc_key, &p.integ_key)?;
    let mut work = vec![0u8; 16384];
    let budget = Duration::from_secs_f64(seconds);

    // Raw AEAD.
    let mut pkts = 0u64;
    let start = Instant::now();
    while start.elapsed() < budget {
        for pkt in &tpl {
            let w = &mut work[64..64 + pkt.len()];
            w.copy_from_slice(pkt);
            if !raw_open(&cipher, t, w) {
                return Err(format!("{t:?}: raw open failed").into());
            }
        }
        pkts += tpl.len() as u64;
    }
    let aead_ns = start.elapsed().as_nanos() as f64 / pkts as f64;

    // Whole inbound path.
    let mut dist = distributor();
    let mut pkts = 0u64;
    let mut total = Duration::ZERO;
    let mut gre_bytes = 0usize;
    while total < budget {
        let mut sad = ipsec::Sad::new();
        sad.insert(params(t, Direction::Inbound), Instant::now())?;
        let start = Instant::now();
        // One clock read per batch of 32 packets, as the daemon does per recvmmsg.
        let mut now = Instant::now();
        for (i, pkt) in tpl.iter().enumerate() {
            let w = &mut work[64..64 + pkt.len()];
            w.copy_from_slice(pkt);
            if i % 32 == 0 {
                now = Instant::now();
            }
            let inb = sad.open_in_place(now, w).map_err(|e| format!("{t:?}: open: {e}"))?;
            let r = inb.opened.inner.clone();
            // (open_in_place checked the SA's selectors: RFC 4301 §5.2.)
            match dist.route_inbound(now, &w[r.clone()], true) {
                distrib::Route::ToTarget { key, .. } => {
                    let first = w[r.start];
                    distrib::gre::write_header(key, first, &mut w[r.start - 8..r.end], r.len())?;
                    gre_bytes += r.len() + 8;
                }
                other => return Err(format!("route: {other:?}").into()),
            }
        }
        total += start.elapsed();
        pkts += tpl.len() as u64;
    }
    std::hint::black_box(gre_bytes);
    let path_ns = total.as_nanos() as f64 / pkts as f64;
    let gbps = |ns: f64| size as f64 * 8.0 / ns;
    Ok(Row {
        transform: format!("{t:?}"),
        size,
        aead_gbps: gbps(aead_ns),
        path_gbps: gbps(path_ns),
        ratio: aead_ns / path_ns,
        aead_ns,
        path_ns,
        non_crypto_ns: path_ns - aead_ns,
        path_pps: 1e9 / path_ns,
    })
}

/// Run the benchmark for every transform and size.
pub fn run_all(seconds: f64) -> Result<Vec<Row>, BoxError> {
    let mut rows = Vec::new();
    for t in EspTransform::ALL {
        for size in SIZES {
            rows.push(measure(t, size, seconds)?);
        }
    }
    Ok(rows)
}

/// `plexgate bench datapath`.
pub fn datapath(as_json: bool, seconds: f64) -> Result<(), BoxError> {
    if !as_json {
        println!("{:<22} {:>6} {:>10} {:>10} {:>7} {:>9} {:>9} {:>10} {:>11}", "transform", "size", "aead Gb/s", "path Gb/s", "ratio", "aead ns", "path ns", "non-crypto", "path pkt/s");
    }
    for t in EspTransform::ALL {
        for size in SIZES {
            let r = measure(t, size, seconds)?;
            if as_json {
                println!("{}", json!(r));
            } else {
                println!(
                    "{:<22} {:>6} {:>10.2} {:>10.2} {:>7.3} {:>9.1} {:>9.1} {:>10.1} {:>11.0}",
                    r.transform, r.size, r.aead_gbps, r.path_gbps, r.ratio, r.aead_ns, r.path_ns, r.non_crypto_ns, r.path_pps
                );
            }
        }
    }
    Ok(())
}
