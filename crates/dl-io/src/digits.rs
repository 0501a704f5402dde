//! Digit files: grey images and their labels as a plain safetensors file, the data format of
//! the `dl` program (`fixtures/mnist/{train,test}.safetensors`, written by `cargo xtask data`).
//!
//! Two tensors, both `U8`: `images` of shape `[count, rows, cols]` (0 background, 255 ink,
//! row-major) and `labels` of shape `[count]` (0..=9). Any safetensors reader opens them, for
//! example `safetensors.numpy.load_file("fixtures/mnist/train.safetensors")` in Python. The
//! header's metadata may carry provenance; readers ignore it.
//!
//! ```
//! use dl_io::DigitFile;
//! let digits = DigitFile { rows: 2, cols: 2, labels: vec![7], pixels: vec![0, 255, 128, 0] };
//! let bytes = digits.to_bytes(Default::default())?;
//! assert_eq!(DigitFile::parse(&bytes, "memory")?, digits);
//! # Ok::<(), dl_io::DigitFileError>(())
//! ```

use std::collections::HashMap;
use std::path::Path;

use safetensors::tensor::{Dtype, SafeTensors, TensorView};
use thiserror::Error;

/// Name of the image tensor (`U8`, `[count, rows, cols]`).
pub const IMAGES: &str = "images";
/// Name of the label tensor (`U8`, `[count]`).
pub const LABELS: &str = "labels";

/// Why a digit file could not be read or written.
#[derive(Debug, Error)]
pub enum DigitFileError {
    /// The file could not be opened, read or written.
    #[error("cannot access digit file {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The content is not a valid digit file.
    #[error("{path} is not a valid digit file: {reason}")]
    Malformed {
        /// The file.
        path: String,
        /// What was wrong, and what was expected.
        reason: String,
    },
}

/// Digits as stored: labels and u8 pixels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DigitFile {
    /// Rows of each image.
    pub rows: usize,
    /// Columns of each image.
    pub cols: usize,
    /// One label (0..=9) per digit.
    pub labels: Vec<u8>,
    /// `labels.len() * rows * cols` grey values, digit after digit, row-major.
    pub pixels: Vec<u8>,
}

impl DigitFile {
    /// Read and check a digit file.
    ///
    /// ```no_run
    /// let train = dl_io::DigitFile::read("fixtures/mnist/train.safetensors".as_ref())?;
    /// assert_eq!((train.rows, train.cols), (28, 28));
    /// # Ok::<(), dl_io::DigitFileError>(())
    /// ```
    pub fn read(path: &Path) -> Result<Self, DigitFileError> {
        let bytes = std::fs::read(path).map_err(|source| DigitFileError::Io {
            path: path.display().to_string(),
            source,
        })?;
        Self::parse(&bytes, &path.display().to_string())
    }

    /// Parse the bytes of a digit file; `source` names it in errors.
    pub fn parse(bytes: &[u8], source: &str) -> Result<Self, DigitFileError> {
        let malformed = |reason: String| DigitFileError::Malformed {
            path: source.to_string(),
            reason,
        };
        let file = SafeTensors::deserialize(bytes)
            .map_err(|e| malformed(format!("not a safetensors file ({e})")))?;
        let tensor = |name: &str| {
            let view = file.tensor(name).map_err(|_| {
                malformed(format!(
                    "no tensor `{name}`; expected `{IMAGES}` and `{LABELS}`"
                ))
            })?;
            if view.dtype() != Dtype::U8 {
                return Err(malformed(format!(
                    "`{name}` has dtype {:?}, expected U8",
                    view.dtype()
                )));
            }
            Ok(view)
        };
        let (images, labels) = (tensor(IMAGES)?, tensor(LABELS)?);
        let &[count, rows, cols] = images.shape() else {
            return Err(malformed(format!(
                "`{IMAGES}` has shape {:?}, expected [count, rows, cols]",
                images.shape()
            )));
        };
        if rows == 0 || cols == 0 {
            return Err(malformed(format!("image size {rows}x{cols}")));
        }
        if labels.shape() != [count] {
            return Err(malformed(format!(
                "`{LABELS}` has shape {:?}, expected [{count}] (one label per image)",
                labels.shape()
            )));
        }
        let labels = labels.data().to_vec();
        if let Some(bad) = labels.iter().position(|&l| l > 9) {
            return Err(malformed(format!(
                "digit {bad} has label {}, expected 0..=9",
                labels[bad]
            )));
        }
        Ok(Self {
            rows,
            cols,
            labels,
            pixels: images.data().to_vec(),
        })
    }

    /// The file's bytes, with `metadata` (provenance, for example) in the header.
    pub fn to_bytes(&self, metadata: HashMap<String, String>) -> Result<Vec<u8>, DigitFileError> {
        let error = |reason: String| DigitFileError::Malformed {
            path: "<digits being written>".into(),
            reason,
        };
        let count = self.labels.len();
        let images = TensorView::new(Dtype::U8, vec![count, self.rows, self.cols], &self.pixels)
            .map_err(|e| {
                error(format!(
                    "{} pixels for {count} images of {}x{} ({e})",
                    self.pixels.len(),
                    self.rows,
                    self.cols
                ))
            })?;
        let labels = TensorView::new(Dtype::U8, vec![count], &self.labels)
            .map_err(|e| error(e.to_string()))?;
        let metadata = (!metadata.is_empty()).then_some(metadata);
        safetensors::serialize([(IMAGES, images), (LABELS, labels)], metadata)
            .map_err(|e| error(e.to_string()))
    }

    /// Write the file atomically (a temporary file renamed into place, so an interrupted run
    /// never leaves a truncated file).
    pub fn write(
        &self,
        path: &Path,
        metadata: HashMap<String, String>,
    ) -> Result<(), DigitFileError> {
        let bytes = self.to_bytes(metadata)?;
        crate::atomic::write_atomically_io(path, &bytes).map_err(|failure| DigitFileError::Io {
            path: failure.path,
            source: failure.source,
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn sample() -> DigitFile {
        DigitFile {
            rows: 2,
            cols: 3,
            labels: vec![7, 1],
            pixels: (0..12).collect(),
        }
    }

    #[test]
    fn round_trips_with_the_documented_tensors() {
        let bytes = sample().to_bytes(HashMap::new()).unwrap();
        assert_eq!(DigitFile::parse(&bytes, "x").unwrap(), sample());
        // The layout any safetensors reader sees.
        let file = SafeTensors::deserialize(&bytes).unwrap();
        let images = file.tensor("images").unwrap();
        assert_eq!(
            (images.dtype(), images.shape()),
            (Dtype::U8, &[2, 2, 3][..])
        );
        assert_eq!(images.data(), (0..12).collect::<Vec<u8>>());
        assert_eq!(file.tensor("labels").unwrap().data(), [7, 1]);
    }

    #[test]
    fn truncated_file_is_an_error_naming_the_file() {
        let bytes = sample().to_bytes(HashMap::new()).unwrap();
        let err = DigitFile::parse(&bytes[..bytes.len() - 1], "t.safetensors").unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("t.safetensors") && msg.contains("not a safetensors file"),
            "{msg}"
        );
        let err = DigitFile::parse(&bytes[..5], "t.safetensors").unwrap_err();
        assert!(err.to_string().contains("not a safetensors file"), "{err}");
    }

    fn with(tensors: Vec<(&str, Dtype, Vec<usize>, Vec<u8>)>) -> Vec<u8> {
        let views: Vec<_> = tensors
            .iter()
            .map(|(n, d, s, b)| (*n, TensorView::new(*d, s.clone(), b).unwrap()))
            .collect();
        safetensors::serialize(views, None).unwrap()
    }

    #[test]
    fn wrong_tensors_are_errors_saying_what_was_expected() {
        let cases = [
            (
                with(vec![("images", Dtype::U8, vec![1, 1, 1], vec![0])]),
                "no tensor `labels`",
            ),
            (
                with(vec![
                    ("images", Dtype::U8, vec![1, 1, 1], vec![0]),
                    ("labels", Dtype::F32, vec![1], vec![0; 4]),
                ]),
                "`labels` has dtype F32, expected U8",
            ),
            (
                with(vec![
                    ("images", Dtype::U8, vec![2, 2], vec![0; 4]),
                    ("labels", Dtype::U8, vec![2], vec![0, 1]),
                ]),
                "expected [count, rows, cols]",
            ),
            (
                with(vec![
                    ("images", Dtype::U8, vec![2, 1, 1], vec![0; 2]),
                    ("labels", Dtype::U8, vec![3], vec![0; 3]),
                ]),
                "expected [2] (one label per image)",
            ),
            (
                with(vec![
                    ("images", Dtype::U8, vec![2, 1, 1], vec![0; 2]),
                    ("labels", Dtype::U8, vec![2], vec![3, 12]),
                ]),
                "digit 1 has label 12, expected 0..=9",
            ),
            (
                with(vec![
                    ("images", Dtype::U8, vec![2, 0, 1], vec![]),
                    ("labels", Dtype::U8, vec![2], vec![3, 1]),
                ]),
                "image size 0x1",
            ),
        ];
        for (bytes, expected) in cases {
            let err = DigitFile::parse(&bytes, "d.safetensors")
                .unwrap_err()
                .to_string();
            assert!(
                err.starts_with("d.safetensors is not a valid digit file")
                    && err.contains(expected),
                "{err} (expected {expected})"
            );
        }
    }

    #[test]
    fn missing_file_names_the_path() {
        let err = DigitFile::read(Path::new("/no/such/train.safetensors")).unwrap_err();
        assert!(
            err.to_string().contains("/no/such/train.safetensors"),
            "{err}"
        );
    }

    #[test]
    fn write_is_atomic_and_keeps_metadata() {
        let dir = std::env::temp_dir().join(format!("dl-io-digits-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("d.safetensors");
        let meta = HashMap::from([("source".to_string(), "test".to_string())]);
        sample().write(&path, meta.clone()).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(DigitFile::parse(&bytes, "d").unwrap(), sample());
        let file = SafeTensors::read_metadata(&bytes).unwrap().1;
        assert_eq!(file.metadata(), &Some(meta));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
