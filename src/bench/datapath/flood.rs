//! `plexgate bench datapath --flood`: what ESP floods cost the gateway per
//! packet, side by side with legitimate packets of the same SA on the same
//! path (issue #15). Four kinds of round over the same packets, alternated and
//! rotated like the main rows (medians over the rounds):
//!
//! - `legit`: the sealed packets as they are (SAD lookup, ESN, replay check,
//!   AEAD open or HMAC then CBC, trailer, selectors, CRT, GRE);
//! - `unknown_spi`: the same packets under an SPI no SA has: classification
//!   and the SAD probe, then the drop;
//! - `bad_icv`: the same packets with the last ICV byte flipped, on the
//!   legitimate SA with fresh sequence numbers (so the replay check passes and
//!   the ICV is computed: RFC 4303 §3.4.3 lets the replay check go first, but a
//!   forged packet with a new number always reaches the ICV);
//! - `mixed`: legitimate and unknown-SPI packets alternating in each batch
//!   (what a legitimate flow sees under a flood: the SAD's memo of the last SPI
//!   and the batch's flow cache are thrashed), against the sum of the legit and
//!   unknown-SPI rounds of the same packets.
//!
//! The raw AEAD open of the same packets is measured too, as the yardstick.

use super::{median, BoxError, Fixture, BATCH};
use plexgate_ipsec::EspTransform;
use std::time::Duration;

/// One row of `bench datapath --flood`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct FloodRow {
    /// Transform name.
    pub transform: String,
    /// Inner packet size in bytes.
    pub size: usize,
    /// Raw AEAD (or HMAC + CBC) open, ns per packet.
    pub aead_ns: f64,
    /// A legitimate packet through the whole inbound path, ns.
    pub legit_ns: f64,
    /// A packet with an unknown SPI, ns until it is dropped.
    pub unknown_spi_ns: f64,
    /// A packet with a bad ICV on the legitimate SA, ns until it is dropped.
    pub bad_icv_ns: f64,
    /// Median over rounds of unknown-SPI ns / legitimate ns.
    pub unknown_spi_ratio: f64,
    /// Median over rounds of bad-ICV ns / legitimate ns.
    pub bad_icv_ratio: f64,
    /// Median over rounds of bad-ICV ns / raw AEAD ns.
    pub bad_icv_per_aead: f64,
    /// Median over rounds of mixed-round time / (legit + unknown-SPI round
    /// time) for the same packets: 1.0 = the flood costs a legitimate flow
    /// nothing beyond the flood packets' own cost.
    pub mixed_interference: f64,
    /// Rounds measured (of each kind).
    pub rounds: usize,
}

/// What is done to the legitimate packets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Legit,
    UnknownSpi,
    BadIcv,
    Mixed,
}

/// The data templates of `kind` (index 0, the SYN, stays as it is: rounds
/// skip it).
fn templates(f: &Fixture, kind: Kind) -> Vec<Vec<u8>> {
    let mut out = vec![f.templates[0].clone()];
    for t in &f.templates[1..] {
        let mut unknown = t.clone();
        // An SPI no SA has (ours are SPI_IN and SPI_OUT).
        unknown[..4].copy_from_slice(&0x5eed_f100u32.to_be_bytes());
        let mut bad = t.clone();
        if let Some(b) = bad.last_mut() {
            *b ^= 0x01;
        }
        match kind {
            Kind::Legit => out.push(t.clone()),
            Kind::UnknownSpi => out.push(unknown),
            Kind::BadIcv => out.push(bad),
            Kind::Mixed => {
                out.push(t.clone());
                out.push(unknown);
            }
        }
    }
    out
}

/// One timed round of `set` (a template set of [`templates`]), checked: every
/// legitimate packet reaches the target and every other one is dropped for
/// its reason. Returns ns per packet of the set.
fn round(f: &mut Fixture, set: &mut Vec<Vec<u8>>, kind: Kind) -> Result<(f64, Duration), BoxError> {
    let n = set.len() - 1;
    let before = f.core.sad().counters;
    std::mem::swap(&mut f.templates, set);
    let (got, spent) = f.timed_round();
    std::mem::swap(&mut f.templates, set);
    let after = f.core.sad().counters;
    let legit = match kind {
        Kind::Legit => n,
        Kind::Mixed => n / 2,
        Kind::UnknownSpi | Kind::BadIcv => 0,
    };
    let dropped = match kind {
        Kind::UnknownSpi | Kind::Mixed => after.drop_unknown_spi - before.drop_unknown_spi,
        Kind::BadIcv => after.drop_bad_icv - before.drop_bad_icv,
        Kind::Legit => 0,
    };
    if got != legit as u64 || dropped != (n - legit) as u64 {
        return Err(format!(
            "{kind:?}: {got} of {legit} packets reached the target, {dropped} of {} dropped",
            n - legit
        )
        .into());
    }
    Ok((spent.as_nanos() as f64 / n as f64, spent))
}

/// Measures one transform and size for about `seconds` per kind.
pub fn measure_flood(t: EspTransform, size: usize, seconds: f64) -> Result<FloodRow, BoxError> {
    let n = ((2 << 20) / size.max(64)).clamp(256, 8192) / BATCH * BATCH;
    let mut f = Fixture::new(t, size, n)?;
    let cipher = f.cipher()?;
    let kinds = [Kind::Legit, Kind::UnknownSpi, Kind::BadIcv, Kind::Mixed];
    let mut sets: Vec<Vec<Vec<u8>>> = kinds.iter().map(|&k| templates(&f, k)).collect();
    let mut ns: [Vec<f64>; 5] = Default::default();
    let mut interference = Vec::new();
    let budget = Duration::from_secs_f64(seconds * 4.0);
    let mut total = Duration::ZERO;
    let mut r = 0usize;
    while total < budget || r < 3 {
        let mut spent = [Duration::ZERO; 4];
        // Rotate the order so that no kind always follows another.
        for j in 0..4 {
            let i = (j + r) % 4;
            let (per, d) = round(&mut f, &mut sets[i], kinds[i])?;
            ns[i].push(per);
            spent[i] = d;
            total += d;
        }
        let raw = f
            .timed_raw_round(&cipher)
            .ok_or_else(|| format!("{t:?}: raw open failed"))?;
        ns[4].push(raw.as_nanos() as f64 / f.packets() as f64);
        interference.push(spent[3].as_secs_f64() / (spent[0] + spent[1]).as_secs_f64());
        r += 1;
    }
    let ratio =
        |a: &[f64], b: &[f64]| median(&a.iter().zip(b).map(|(x, y)| x / y).collect::<Vec<_>>());
    Ok(FloodRow {
        transform: format!("{t:?}"),
        size,
        aead_ns: median(&ns[4]),
        legit_ns: median(&ns[0]),
        unknown_spi_ns: median(&ns[1]),
        bad_icv_ns: median(&ns[2]),
        unknown_spi_ratio: ratio(&ns[1], &ns[0]),
        bad_icv_ratio: ratio(&ns[2], &ns[0]),
        bad_icv_per_aead: ratio(&ns[2], &ns[4]),
        mixed_interference: median(&interference),
        rounds: r,
    })
}

/// Prints the flood rows for the transforms and sizes asked for.
pub fn print_flood(
    as_json: bool,
    seconds: f64,
    transforms: &[EspTransform],
    sizes: &[usize],
) -> Result<(), BoxError> {
    if !as_json {
        println!(
            "{:<22} {:>6} {:>8} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>7}",
            "transform",
            "size",
            "aead ns",
            "legit ns",
            "unk. ns",
            "bad ns",
            "unk/leg",
            "bad/leg",
            "bad/aead",
            "mixed"
        );
    }
    for &t in transforms {
        for &size in sizes {
            let r = measure_flood(t, size, seconds)?;
            if as_json {
                println!("{}", serde_json::json!(r));
            } else {
                println!(
                    "{:<22} {:>6} {:>8.1} {:>9.1} {:>9.1} {:>9.1} {:>9.3} {:>9.3} {:>9.3} {:>7.3}",
                    r.transform,
                    r.size,
                    r.aead_ns,
                    r.legit_ns,
                    r.unknown_spi_ns,
                    r.bad_icv_ns,
                    r.unknown_spi_ratio,
                    r.bad_icv_ratio,
                    r.bad_icv_per_aead,
                    r.mixed_interference
                );
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every kind of round is checked (legitimate packets delivered, the
    /// others dropped for their reason), for an AEAD and a CBC transform.
    #[test]
    fn flood_rounds_drop_for_the_right_reason() {
        for t in [EspTransform::AesGcm128, EspTransform::AesCbc256HmacSha512] {
            let row = measure_flood(t, 256, 0.001).unwrap();
            assert!(row.rounds >= 3);
            assert!(row.legit_ns > 0.0 && row.unknown_spi_ns > 0.0 && row.bad_icv_ns > 0.0);
            let mut f = Fixture::new(t, 256, 64).unwrap();
            let mut unknown = templates(&f, Kind::UnknownSpi);
            // A set of the wrong kind is refused by the check.
            assert!(round(&mut f, &mut unknown, Kind::Legit).is_err());
        }
    }
}
