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
    /// Panics when the operating system's generator fails: SPIs, nonces and keys
    /// must never be made of predictable bytes, and there is nothing else to fall
    /// back on.
    fn fill(&mut self, buf: &mut [u8]) {
        use ring::rand::SecureRandom;
        fill_or_panic(|b| self.0.fill(b).is_ok(), buf);
    }
}

/// Fill `buf` with `fill`, which reports success; a failure is not recoverable.
fn fill_or_panic(fill: impl FnOnce(&mut [u8]) -> bool, buf: &mut [u8]) {
    if !fill(buf) {
        panic!(
            "the operating system's random number generator failed: refusing to go on with predictable SPIs, nonces and keys"
        );
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[should_panic(expected = "random number generator failed")]
    fn a_failing_generator_is_loud_not_zeros() {
        let mut buf = [0x55u8; 16];
        // A generator that fails after writing nothing: never hand the buffer out.
        fill_or_panic(|_| false, &mut buf);
    }

    #[test]
    fn the_system_generator_fills() {
        let mut a = [0u8; 32];
        let mut b = [0u8; 32];
        let mut r = SystemRng::new();
        r.fill(&mut a);
        r.fill(&mut b);
        assert_ne!(a, b);
        assert_ne!(a, [0u8; 32]);
    }
}
