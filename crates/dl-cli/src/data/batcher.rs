//! Mini-batches: a seeded shuffle per epoch, fixed-size batches with the last partial batch
//! kept, and normalisation with MNIST's mean and standard deviation.

use dl_core::SeededRng;

use super::dataset::Digits;

/// Mean grey value of MNIST's training digits, on the [0, 1] scale (torchvision's constant).
pub const MNIST_MEAN: f32 = 0.1307;
/// Standard deviation of the same.
pub const MNIST_STD: f32 = 0.3081;

/// One batch: normalised images `[len, rows * cols]` (row-major) and labels.
#[derive(Debug, Clone, PartialEq)]
pub struct Batch {
    /// `(pixel / 255 - MNIST_MEAN) / MNIST_STD`, image after image.
    pub images: Vec<f32>,
    /// Label of each image.
    pub labels: Vec<i64>,
}

impl Batch {
    /// Number of images.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }
}

/// Cuts a dataset into batches.
#[derive(Debug, Clone, Copy)]
pub struct Batcher {
    /// Images per batch (the last one may be smaller).
    pub batch_size: usize,
}

impl Batcher {
    /// The order of one training epoch of `n` samples: a permutation drawn from `rng`.
    pub fn shuffled_order(n: usize, rng: &mut SeededRng) -> Vec<usize> {
        rng.permutation(n)
    }

    /// Number of batches of `n` items.
    pub fn batch_count(&self, n: usize) -> usize {
        n.div_ceil(self.batch_size.max(1))
    }

    /// The batches of `digits` in `order`; the last partial batch is kept.
    pub fn batches<'a>(
        &self,
        digits: &'a Digits,
        order: &'a [usize],
    ) -> impl Iterator<Item = Batch> + 'a {
        order
            .chunks(self.batch_size.max(1))
            .map(move |chunk| Self::batch(digits, chunk))
    }

    /// The batch of the digits at `indices`.
    pub fn batch(digits: &Digits, indices: &[usize]) -> Batch {
        let mut images = Vec::with_capacity(indices.len() * digits.image_len());
        for &i in indices {
            images.extend(digits.image(i).iter().map(|&p| normalise(p)));
        }
        Batch {
            images,
            labels: indices
                .iter()
                .map(|&i| i64::from(digits.labels[i]))
                .collect(),
        }
    }
}

/// One grey value on the scale the models train on.
pub fn normalise(pixel: u8) -> f32 {
    (f32::from(pixel) / 255.0 - MNIST_MEAN) / MNIST_STD
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn digits(n: usize) -> Digits {
        Digits {
            rows: 2,
            cols: 2,
            labels: (0..n).map(|i| (i % 10) as u8).collect(),
            pixels: (0..n * 4).map(|i| (i % 256) as u8).collect(),
        }
    }

    #[test]
    fn last_partial_batch_is_kept() {
        let d = digits(10);
        let order: Vec<usize> = (0..10).collect();
        let batcher = Batcher { batch_size: 4 };
        let sizes: Vec<usize> = batcher.batches(&d, &order).map(|b| b.len()).collect();
        assert_eq!(sizes, vec![4, 4, 2]);
        assert_eq!(batcher.batch_count(10), 3);
    }

    #[test]
    fn shuffle_is_seeded_and_covers_every_digit() {
        let d = digits(50);
        let a = Batcher::shuffled_order(d.len(), &mut SeededRng::new(7));
        let b = Batcher::shuffled_order(d.len(), &mut SeededRng::new(7));
        let c = Batcher::shuffled_order(d.len(), &mut SeededRng::new(8));
        assert_eq!(a, b);
        assert_ne!(a, c);
        let mut sorted = a.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..50).collect::<Vec<_>>());
    }

    #[test]
    fn batches_follow_the_order_and_normalise() {
        let d = digits(3);
        let batch = Batcher::batch(&d, &[2, 0]);
        assert_eq!(batch.labels, vec![2, 0]);
        assert_eq!(batch.images.len(), 8);
        // Digit 2's first pixel is 8: (8/255 - mean) / std.
        assert!((batch.images[0] - (8.0 / 255.0 - MNIST_MEAN) / MNIST_STD).abs() < 1e-6);
        assert!((normalise(0) + MNIST_MEAN / MNIST_STD).abs() < 1e-6);
    }
}
