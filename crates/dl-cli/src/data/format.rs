//! The binary digit file written by `cargo xtask data`: a 20-byte header (magic `DLMN`, then
//! little-endian u32 version, count, rows, cols), `count` label bytes, then
//! `count * rows * cols` pixel bytes (0 background, 255 ink), digit after digit, row-major.

use std::path::Path;

use thiserror::Error;

/// First four bytes of every digit file.
pub const MAGIC: &[u8; 4] = b"DLMN";
/// The only format version this program reads.
pub const VERSION: u32 = 1;
const HEADER_LEN: usize = 20;

/// Why a digit file could not be read.
#[derive(Debug, Error)]
pub enum FormatError {
    /// The file could not be opened or read.
    #[error(
        "cannot read digit file {path}: {source} (make the full set with `cargo xtask data`, or use the committed fixtures/mnist)"
    )]
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
    /// `labels.len() * rows * cols` grey values.
    pub pixels: Vec<u8>,
}

impl DigitFile {
    /// Read and check a digit file.
    pub fn read(path: &Path) -> Result<Self, FormatError> {
        let bytes = std::fs::read(path).map_err(|source| FormatError::Io {
            path: path.display().to_string(),
            source,
        })?;
        Self::parse(&bytes, &path.display().to_string())
    }

    /// Parse the bytes of a digit file; `source` names it in errors.
    pub fn parse(bytes: &[u8], source: &str) -> Result<Self, FormatError> {
        let malformed = |reason: String| FormatError::Malformed {
            path: source.to_string(),
            reason,
        };
        if bytes.len() < HEADER_LEN {
            return Err(malformed(format!(
                "{} bytes, shorter than the {HEADER_LEN}-byte header",
                bytes.len()
            )));
        }
        if &bytes[..4] != MAGIC {
            return Err(malformed(format!(
                "starts with {:?}, expected the magic `DLMN`",
                String::from_utf8_lossy(&bytes[..4])
            )));
        }
        let word = |i: usize| {
            let mut b = [0u8; 4];
            b.copy_from_slice(&bytes[4 + 4 * i..8 + 4 * i]);
            u32::from_le_bytes(b) as usize
        };
        let (version, count, rows, cols) = (word(0), word(1), word(2), word(3));
        if version != VERSION as usize {
            return Err(malformed(format!("version {version}, expected {VERSION}")));
        }
        if rows == 0 || cols == 0 {
            return Err(malformed(format!("image size {rows}x{cols}")));
        }
        let expected = count
            .checked_mul(1 + rows * cols)
            .and_then(|n| n.checked_add(HEADER_LEN))
            .ok_or_else(|| malformed(format!("count {count} is too large")))?;
        if bytes.len() != expected {
            return Err(malformed(format!(
                "{} bytes, expected {expected} for {count} digits of {rows}x{cols} (truncated?)",
                bytes.len()
            )));
        }
        let labels = bytes[HEADER_LEN..HEADER_LEN + count].to_vec();
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
            pixels: bytes[HEADER_LEN + count..].to_vec(),
        })
    }

    /// The file's bytes (the inverse of [`DigitFile::parse`]; `cargo xtask data` writes the
    /// same layout).
    #[cfg(test)]
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut bytes = Vec::with_capacity(HEADER_LEN + self.labels.len() + self.pixels.len());
        bytes.extend_from_slice(MAGIC);
        for value in [VERSION as usize, self.labels.len(), self.rows, self.cols] {
            bytes.extend_from_slice(&(value as u32).to_le_bytes());
        }
        bytes.extend_from_slice(&self.labels);
        bytes.extend_from_slice(&self.pixels);
        bytes
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
    fn round_trips() {
        let bytes = sample().to_bytes();
        assert_eq!(bytes.len(), 20 + 2 + 12);
        assert_eq!(DigitFile::parse(&bytes, "x").unwrap(), sample());
    }

    #[test]
    fn truncated_file_is_an_error_naming_the_sizes() {
        let bytes = sample().to_bytes();
        let err = DigitFile::parse(&bytes[..bytes.len() - 1], "t.bin").unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("t.bin") && msg.contains("33 bytes, expected 34"),
            "{msg}"
        );
        let err = DigitFile::parse(&bytes[..10], "t.bin").unwrap_err();
        assert!(err.to_string().contains("header"), "{err}");
    }

    #[test]
    fn bad_magic_version_and_label_are_errors() {
        let mut bytes = sample().to_bytes();
        bytes[0] = b'X';
        assert!(
            DigitFile::parse(&bytes, "m")
                .unwrap_err()
                .to_string()
                .contains("magic")
        );
        let mut bytes = sample().to_bytes();
        bytes[4] = 9;
        assert!(
            DigitFile::parse(&bytes, "v")
                .unwrap_err()
                .to_string()
                .contains("version 9")
        );
        let mut bytes = sample().to_bytes();
        bytes[20] = 12;
        assert!(
            DigitFile::parse(&bytes, "l")
                .unwrap_err()
                .to_string()
                .contains("label 12")
        );
    }

    #[test]
    fn missing_file_names_the_path() {
        let err = DigitFile::read(Path::new("/no/such/train.bin")).unwrap_err();
        assert!(err.to_string().contains("/no/such/train.bin"), "{err}");
    }
}
