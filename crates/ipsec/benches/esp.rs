//! Criterion benches of the ESP data path: seal and open per transform at 64,
//! 512, 1400 and 8192 bytes, the raw ring AEAD open that the inbound path is
//! compared against, and the replay window.
//!
//! `cargo bench -p plexgate-ipsec --bench esp -- 'open/aes128gcm16/1400'`

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use plexgate_ipsec::replay::ReplayWindow;
use plexgate_ipsec::{Direction, EspTransform, Lifetime, Mode, SaParams, SecurityAssociation};
use std::hint::black_box;
use std::time::Instant;

const SIZES: [usize; 4] = [64, 512, 1400, 8192];

fn params(t: EspTransform, direction: Direction, replay_window: u32) -> SaParams {
    SaParams {
        spi: 0x0102_0304,
        direction,
        transform: t,
        enc_key: vec![0x42; t.enc_key_len()],
        integ_key: vec![0x24; t.integ_key_len()],
        esn: true,
        mode: Mode::Tunnel,
        replay_window,
        lifetime: Lifetime::default(),
        local_ts: vec![],
        remote_ts: vec![],
        local_addr: "198.51.100.1".parse().unwrap(),
        remote_addr: "198.51.100.2".parse().unwrap(),
        encap: None,
        initial_seq: 0,
        peer: "p".into(),
        child: "c".into(),
    }
}

/// An IPv4 UDP packet of `len` bytes.
fn inner(len: usize) -> Vec<u8> {
    let mut p = vec![0u8; len];
    p[0] = 0x45;
    p[2..4].copy_from_slice(&(len as u16).to_be_bytes());
    p[8] = 64;
    p[9] = 17;
    p[12..16].copy_from_slice(&[10, 0, 0, 1]);
    p[16..20].copy_from_slice(&[10, 0, 0, 2]);
    p
}

fn seal(c: &mut Criterion) {
    let now = Instant::now();
    let mut g = c.benchmark_group("seal");
    for t in EspTransform::ALL {
        for len in SIZES {
            let mut sa = SecurityAssociation::new(params(t, Direction::Outbound, 0), now).unwrap();
            let pkt = inner(len);
            let h = sa.header_len();
            let mut buf = vec![0u8; len + 128];
            buf[h..h + len].copy_from_slice(&pkt);
            g.throughput(Throughput::Bytes(len as u64));
            // In place: the inner packet already sits after the header room,
            // as when the daemon reads from TUN at an offset.
            g.bench_with_input(BenchmarkId::new(t.name(), len), &len, |b, &len| {
                b.iter(|| black_box(sa.seal_in_place(now, &mut buf, len, 4).unwrap()))
            });
        }
    }
    g.finish();
}

fn open(c: &mut Criterion) {
    let now = Instant::now();
    let mut g = c.benchmark_group("open");
    for t in EspTransform::ALL {
        for len in SIZES {
            let mut tx = SecurityAssociation::new(params(t, Direction::Outbound, 0), now).unwrap();
            // Anti-replay off so that one packet can be opened repeatedly;
            // the window has its own bench below.
            let mut rx = SecurityAssociation::new(params(t, Direction::Inbound, 0), now).unwrap();
            let mut sealed = vec![0u8; len + 128];
            let n = tx.seal(now, &inner(len), 4, &mut sealed).unwrap();
            sealed.truncate(n);
            let mut buf = sealed.clone();
            g.throughput(Throughput::Bytes(len as u64));
            // Each iteration copies the packet back (open decrypts in place).
            g.bench_with_input(BenchmarkId::new(t.name(), len), &len, |b, _| {
                b.iter(|| {
                    buf.copy_from_slice(&sealed);
                    black_box(rx.open_in_place(now, &mut buf).unwrap())
                })
            });
        }
    }
    g.finish();
}

/// The whole inbound path as the daemon runs it: SAD lookup, ESN inference,
/// anti-replay (window 1024) check and update, AEAD open, trailer, selectors,
/// counters. Packets are sealed in chunks outside the timed section and
/// opened in order inside it.
fn open_sad(c: &mut Criterion) {
    use plexgate_ipsec::{Sad, TrafficSelector};
    let mut g = c.benchmark_group("open_sad");
    for t in [EspTransform::AesGcm128, EspTransform::AesGcm256] {
        for len in [64usize, 1400] {
            let now = Instant::now();
            let mut tx = SecurityAssociation::new(params(t, Direction::Outbound, 0), now).unwrap();
            let mut inb = params(t, Direction::Inbound, 1024);
            inb.local_ts = vec![TrafficSelector::host("10.0.0.2".parse().unwrap())];
            inb.remote_ts = vec![TrafficSelector::from_net("10.0.0.0/24".parse().unwrap())];
            let mut sad = Sad::new();
            sad.insert(inb, now).unwrap();
            let pkt = inner(len);
            const CHUNK: usize = 1024;
            let slot = len + 64;
            let mut chunk = vec![0u8; CHUNK * slot];
            let mut lens = vec![0usize; CHUNK];
            g.throughput(Throughput::Bytes(len as u64));
            g.bench_function(BenchmarkId::new(t.name(), len), |b| {
                b.iter_custom(|iters| {
                    let mut total = std::time::Duration::ZERO;
                    let mut left = iters as usize;
                    while left > 0 {
                        let k = left.min(CHUNK);
                        for i in 0..k {
                            lens[i] = tx
                                .seal(now, &pkt, 4, &mut chunk[i * slot..(i + 1) * slot])
                                .unwrap();
                        }
                        let start = Instant::now();
                        for i in 0..k {
                            let buf = &mut chunk[i * slot..i * slot + lens[i]];
                            black_box(sad.open_in_place(now, buf).unwrap());
                        }
                        total += start.elapsed();
                        left -= k;
                    }
                    total
                })
            });
        }
    }
    g.finish();
}

/// The baseline for "inbound path ≥ 0.85 × raw AEAD open": ring's AES-128-GCM
/// open_in_place on the same sizes, with the same per-iteration copy.
fn raw_ring_open(c: &mut Criterion) {
    use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_128_GCM};
    let mut g = c.benchmark_group("raw_ring_open");
    let key = LessSafeKey::new(UnboundKey::new(&AES_128_GCM, &[0x42; 16]).unwrap());
    for len in SIZES {
        let mut sealed = vec![0u8; len];
        let tag = key
            .seal_in_place_separate_tag(
                Nonce::assume_unique_for_key([1; 12]),
                Aad::from([2u8; 8]),
                &mut sealed,
            )
            .unwrap();
        sealed.extend_from_slice(tag.as_ref());
        let mut buf = sealed.clone();
        g.throughput(Throughput::Bytes(len as u64));
        g.bench_with_input(BenchmarkId::new("aes128gcm", len), &len, |b, _| {
            b.iter(|| {
                buf.copy_from_slice(&sealed);
                black_box(
                    key.open_in_place(
                        Nonce::assume_unique_for_key([1; 12]),
                        Aad::from([2u8; 8]),
                        &mut buf,
                    )
                    .unwrap()
                    .len(),
                )
            })
        });
    }
    g.finish();
}

fn replay(c: &mut Criterion) {
    let mut g = c.benchmark_group("replay_window");
    g.bench_function("in_order_1024", |b| {
        let mut w = ReplayWindow::new(1024);
        let mut s = 0u64;
        b.iter(|| {
            s += 1;
            black_box(w.check(s).and_then(|_| w.update(s)).is_ok())
        })
    });
    g.bench_function("reordered_1024", |b| {
        let mut w = ReplayWindow::new(1024);
        let mut s = 1000u64;
        let mut x = 0x9e37_79b9u64;
        b.iter(|| {
            // Move forward by 1, and look back up to 255 packets.
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            s += 1;
            let q = s - (x & 255);
            black_box(w.check(q).and_then(|_| w.update(q)).is_ok())
        })
    });
    g.bench_function("esn_infer_1024", |b| {
        let mut w = ReplayWindow::new(1024);
        w.update(u64::from(u32::MAX) - 10).unwrap();
        let mut lo = 0u32;
        b.iter(|| {
            lo = lo.wrapping_add(7);
            black_box(w.infer_esn(lo))
        })
    });
    g.finish();
}

criterion_group!(benches, seal, open, open_sad, raw_ring_open, replay);
criterion_main!(benches);
