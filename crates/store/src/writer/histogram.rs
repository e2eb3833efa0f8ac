//! A small log-linear latency histogram (8 sub-buckets per power of two of
//! microseconds, so quantiles are within ~9%), for the record writer's "handed to the
//! writer → durable" times without keeping every sample.

use std::time::Duration;

const SUB: usize = 8;
const POWERS: usize = 40;

/// Latency quantiles, in microseconds.
#[derive(Debug, Default, Clone, Copy, PartialEq, serde::Serialize)]
pub struct LatencySummary {
    /// Samples.
    pub count: u64,
    /// Mean.
    pub mean_us: f64,
    /// Median (bucket upper bound).
    pub p50_us: f64,
    /// 99th percentile (bucket upper bound).
    pub p99_us: f64,
    /// Largest sample.
    pub max_us: f64,
}

/// The histogram.
#[derive(Debug, Clone)]
pub(crate) struct Histogram {
    buckets: Vec<u64>,
    count: u64,
    sum_us: f64,
    max_us: f64,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            buckets: vec![0; SUB * POWERS],
            count: 0,
            sum_us: 0.0,
            max_us: 0.0,
        }
    }
}

fn bucket(us: u64) -> usize {
    if us < SUB as u64 {
        return us as usize;
    }
    let p = 63 - us.leading_zeros() as usize; // us >= 8: p >= 3
    let sub = ((us >> (p - 3)) as usize) & (SUB - 1);
    ((p - 2) * SUB + sub).min(SUB * POWERS - 1)
}

fn upper(b: usize) -> f64 {
    if b < SUB {
        return (b + 1) as f64;
    }
    let p = b / SUB + 2;
    let sub = b % SUB;
    ((SUB + sub + 1) as f64) * (1u64 << (p - 3)) as f64
}

impl Histogram {
    pub(crate) fn record(&mut self, d: Duration) {
        let us = d.as_micros().min(u64::MAX as u128) as u64;
        self.buckets[bucket(us)] += 1;
        self.count += 1;
        self.sum_us += us as f64;
        self.max_us = self.max_us.max(us as f64);
    }

    fn quantile(&self, q: f64) -> f64 {
        if self.count == 0 {
            return 0.0;
        }
        let rank = ((self.count as f64) * q).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (b, n) in self.buckets.iter().enumerate() {
            seen += n;
            if seen >= rank {
                return upper(b).min(self.max_us.max(1.0));
            }
        }
        self.max_us
    }

    pub(crate) fn summary(&self) -> LatencySummary {
        LatencySummary {
            count: self.count,
            mean_us: if self.count == 0 {
                0.0
            } else {
                self.sum_us / self.count as f64
            },
            p50_us: self.quantile(0.5),
            p99_us: self.quantile(0.99),
            max_us: self.max_us,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_are_within_a_bucket_of_the_truth() {
        let mut h = Histogram::default();
        for us in 1..=10_000u64 {
            h.record(Duration::from_micros(us));
        }
        let s = h.summary();
        assert_eq!(s.count, 10_000);
        assert!((s.mean_us - 5000.5).abs() < 1e-6);
        assert!(s.p50_us >= 5000.0 && s.p50_us <= 5000.0 * 1.13, "{s:?}");
        assert!(s.p99_us >= 9900.0 && s.p99_us <= 10_000.0, "{s:?}");
        assert_eq!(s.max_us, 10_000.0);
        for us in [0u64, 1, 7, 8, 9, 15, 16, 1000, 1 << 30] {
            assert!(upper(bucket(us)) >= us as f64, "{us}");
            assert!(
                upper(bucket(us)) <= (us as f64 * 1.126).max(us as f64 + 1.0),
                "{us}"
            );
        }
    }
}
