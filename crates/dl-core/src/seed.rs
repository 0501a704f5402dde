//! Reproducible randomness: one seed fixes model initialisation and data order.
//!
//! Burn draws parameter initialisations from a generator owned by the backend, seeded with
//! [`Device::seed`]; the order of training samples is ours to choose. [`seed_device`] seeds
//! the former, and [`SeededRng`] is a small generator for the latter whose whole state is one
//! `u64`, so that a checkpoint can store it and a resumed run continues with the same order.

use burn::tensor::Device;
use serde::{Deserialize, Serialize};

/// Seed the backend's generator, so that the next module `init(&device)` and every random
/// tensor after it are the same for the same seed, on the same backend.
///
/// Burn's generator is per backend (for some backends process-wide), so seed right before
/// initialising, from one thread.
///
/// ```
/// use burn::tensor::{Distribution, Tensor};
/// let device = dl_core::BackendKind::Flex.device().unwrap();
/// dl_core::seed_device(&device, 7);
/// let a = Tensor::<1>::random([4], Distribution::Default, &device).into_data();
/// dl_core::seed_device(&device, 7);
/// let b = Tensor::<1>::random([4], Distribution::Default, &device).into_data();
/// assert_eq!(a, b);
/// ```
pub fn seed_device(device: &Device, seed: u64) {
    device.seed(seed);
}

/// A small, portable pseudo-random generator (SplitMix64) for data shuffling and sampling.
///
/// Its output depends only on the seed, not on the platform or a crate version, and its
/// state can be saved and restored with [`SeededRng::state`] and [`SeededRng::from_state`].
///
/// ```
/// use dl_core::SeededRng;
/// let mut a = SeededRng::new(42);
/// let mut b = SeededRng::new(42);
/// assert_eq!(a.next_u64(), b.next_u64());
/// let saved = a.state();
/// let x = a.next_u64();
/// assert_eq!(SeededRng::from_state(saved).next_u64(), x);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeededRng {
    state: u64,
}

impl SeededRng {
    /// A generator for `seed`.
    pub fn new(seed: u64) -> Self {
        Self { state: seed }
    }

    /// Rebuild a generator from a state saved with [`SeededRng::state`].
    pub fn from_state(state: u64) -> Self {
        Self { state }
    }

    /// The whole state of the generator.
    pub fn state(&self) -> u64 {
        self.state
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        // SplitMix64 (Steele, Lea and Flood 2014), as used to seed xoshiro.
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A uniform integer in `0..bound` (Lemire's method, without modulo bias).
    ///
    /// `bound` 0 gives 0.
    pub fn below(&mut self, bound: u64) -> u64 {
        if bound == 0 {
            return 0;
        }
        let threshold = bound.wrapping_neg() % bound;
        loop {
            let product = u128::from(self.next_u64()) * u128::from(bound);
            if (product as u64) >= threshold {
                return (product >> 64) as u64;
            }
        }
    }

    /// A uniform float in `[0, 1)` with 53 random bits.
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Shuffle a slice in place (Fisher-Yates).
    ///
    /// ```
    /// let mut v: Vec<u32> = (0..10).collect();
    /// dl_core::SeededRng::new(1).shuffle(&mut v);
    /// let mut sorted = v.clone();
    /// sorted.sort();
    /// assert_eq!(sorted, (0..10).collect::<Vec<_>>());
    /// ```
    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = self.below(i as u64 + 1) as usize;
            items.swap(i, j);
        }
    }

    /// The indices `0..n` in a random order: one epoch's sample order.
    pub fn permutation(&mut self, n: usize) -> Vec<usize> {
        let mut indices: Vec<usize> = (0..n).collect();
        self.shuffle(&mut indices);
        indices
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splitmix_matches_reference_values() {
        // Reference output of SplitMix64 seeded with 1234567 (from the original C code).
        let mut rng = SeededRng::new(1_234_567);
        assert_eq!(rng.next_u64(), 6_457_827_717_110_365_317);
        assert_eq!(rng.next_u64(), 3_203_168_211_198_807_973);
    }

    #[test]
    fn different_seeds_give_different_orders() {
        let a = SeededRng::new(1).permutation(100);
        let b = SeededRng::new(2).permutation(100);
        assert_ne!(a, b);
        assert_eq!(a, SeededRng::new(1).permutation(100));
    }

    #[test]
    fn below_is_roughly_uniform() {
        let mut rng = SeededRng::new(3);
        let mut counts = [0usize; 4];
        for _ in 0..40_000 {
            counts[rng.below(4) as usize] += 1;
        }
        // Each bucket expects 10 000; 5 sigma is about 430.
        for c in counts {
            assert!((9_500..10_500).contains(&c), "{counts:?}");
        }
        assert_eq!(rng.below(0), 0);
    }

    #[test]
    fn floats_are_in_unit_interval() {
        let mut rng = SeededRng::new(9);
        for _ in 0..1000 {
            let x = rng.next_f64();
            assert!((0.0..1.0).contains(&x));
        }
    }
}
