//! Criterion: the gateway's whole inbound path (`GatewayCore::on_udp` on ESP-in-UDP:
//! classify, SAD lookup, open + anti-replay, selectors, CRT lookup, GRE in place)
//! against the raw open of the same packets, per transform and size.
//! `cargo bench --bench datapath`; `plexgate bench datapath` prints the ratios.
//! Under criterion each iteration is a whole round, so both figures include the
//! copy of the packets into the receive slots, and the path's also the SA
//! re-install that lets the replay window take the packets again;
//! `plexgate bench datapath` times the processing alone (see its module docs).

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use plexgate::bench::datapath::{Fixture, SIZES};
use plexgate_ipsec::EspTransform;

fn inbound(c: &mut Criterion) {
    for t in [
        EspTransform::AesGcm128,
        EspTransform::AesGcm256,
        EspTransform::ChaCha20Poly1305,
        EspTransform::AesCbc128HmacSha256,
    ] {
        let mut g = c.benchmark_group(format!("inbound/{t:?}"));
        for size in SIZES {
            let mut f = Fixture::new(t, size, 256).expect("fixture");
            let cipher = f.cipher().expect("cipher");
            g.throughput(Throughput::Bytes((size * f.packets()) as u64));
            g.bench_with_input(BenchmarkId::new("raw_open", size), &size, |b, _| {
                b.iter(|| f.raw_round(&cipher))
            });
            g.bench_with_input(BenchmarkId::new("gateway_path", size), &size, |b, _| {
                b.iter(|| f.round())
            });
        }
        g.finish();
    }
}

criterion_group!(benches, inbound);
criterion_main!(benches);
