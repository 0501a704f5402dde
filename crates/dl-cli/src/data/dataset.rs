//! One split (train or test) of the digits, in memory.

use std::path::{Path, PathBuf};

use anyhow::{Result, bail};
use clap::ValueEnum;
use serde::{Deserialize, Serialize};

use super::format::DigitFile;

/// Which of the two files of a data folder.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Split {
    /// `train.bin`: 8,000 digits in the full set, 800 in the fixture.
    Train,
    /// `test.bin`: 2,000 held-out digits in the full set, 200 in the fixture.
    Test,
}

impl Split {
    fn file_name(self) -> &'static str {
        match self {
            Split::Train => "train.bin",
            Split::Test => "test.bin",
        }
    }
}

/// The committed 1,000-digit subset (`fixtures/mnist`), used when no `--data` is given.
pub fn default_data_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/mnist");
    std::fs::canonicalize(&dir).unwrap_or(dir)
}

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
