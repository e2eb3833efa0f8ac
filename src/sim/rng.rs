//! The harness's own deterministic random numbers (SplitMix64): loss, duplication,
//! jitter and reordering decisions, and initial TCP sequence numbers. One generator
//! per use, each seeded from the simulation's seed, so that adding a node does not
//! change the network's decisions.

/// A SplitMix64 generator (Steele, Lea, Flood 2014): tiny, fast, and good enough
/// for test decisions; not for keys.
#[derive(Debug, Clone)]
pub struct SimRng(u64);

impl SimRng {
    /// A generator for `seed`, mixed with `stream` so that generators seeded
    /// from one simulation seed for different uses are independent.
    pub fn new(seed: u64, stream: u64) -> SimRng {
        let mut r = SimRng(seed ^ stream.wrapping_mul(0xA076_1D64_78BD_642F));
        r.next_u64();
        r
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A uniform number in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// True with probability `p` (never for `p <= 0`, always for `p >= 1`).
    pub fn chance(&mut self, p: f64) -> bool {
        p > 0.0 && (p >= 1.0 || self.unit() < p)
    }

    /// A uniform number in `[0, n)` (0 when `n == 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next_u64() % n
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_sequence_other_stream_other_sequence() {
        let a: Vec<u64> = (0..4).map(|_| SimRng::new(7, 1).next_u64()).collect();
        let mut r = SimRng::new(7, 1);
        let b: Vec<u64> = (0..4).map(|_| r.next_u64()).collect();
        assert!(
            a.iter().all(|x| *x == a[0]),
            "a fresh generator starts alike"
        );
        assert_eq!(b[0], a[0]);
        assert_ne!(b[0], b[1]);
        assert_ne!(SimRng::new(7, 2).next_u64(), b[0]);
    }

    #[test]
    fn chance_bounds_and_rate() {
        let mut r = SimRng::new(1, 0);
        assert!((0..1000).all(|_| !r.chance(0.0)));
        assert!((0..1000).all(|_| r.chance(1.0)));
        let hits = (0..10_000).filter(|_| r.chance(0.25)).count();
        assert!((2_200..2_800).contains(&hits), "{hits}");
    }
}
