//! Random sources: the operating system's generator for production and a seeded,
//! deterministic one for tests and benches.

/// A source of random bytes. Tests use a seeded one; production uses [`SystemRng`].
pub trait Rng: Send {
    /// Fill `buf` with random bytes.
    fn fill(&mut self, buf: &mut [u8]);
}

/// The operating system's random generator (ring's `SystemRandom`).
pub struct SystemRng(ring::rand::SystemRandom);

impl SystemRng {
    /// A new system RNG.
    pub fn new() -> Self {
        SystemRng(ring::rand::SystemRandom::new())
    }
}

impl Default for SystemRng {
    fn default() -> Self {
        Self::new()
    }
}

impl Rng for SystemRng {
    fn fill(&mut self, buf: &mut [u8]) {
        use ring::rand::SecureRandom;
        // The OS RNG failing is not recoverable; ring documents it does not in practice.
        if self.0.fill(buf).is_err() {
            buf.iter_mut().for_each(|b| *b = 0);
        }
    }
}

/// A small deterministic RNG (xorshift-based; NOT for production keys) for tests and
/// benches.
pub struct SeededRng(u64);

impl SeededRng {
    /// Seeded generator.
    pub fn new(seed: u64) -> Self {
        SeededRng(seed ^ 0x9e37_79b9_7f4a_7c15)
    }
}

impl Rng for SeededRng {
    fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            // splitmix64
            self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^= z >> 31;
            chunk.copy_from_slice(&z.to_be_bytes()[..chunk.len()]);
        }
    }
}
