//! Errors of dl-io: each names the file and what was wrong with it.

use crate::load::LoadReport;

/// Everything that can go wrong reading or writing model files.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The file could not be opened, read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The operating-system error.
        #[source]
        source: std::io::Error,
    },
    /// The file is not a valid safetensors file.
    #[error("{path}: not a valid safetensors file: {reason}")]
    Safetensors {
        /// The file.
        path: String,
        /// What the parser found wrong.
        reason: String,
    },
    /// A tensor in the file has a dtype that cannot become model weights.
    #[error(
        "{path}: tensor `{key}` has dtype {dtype}; expected a floating-point dtype (f32, f16, bf16 or f64)"
    )]
    UnsupportedDtype {
        /// The file.
        path: String,
        /// The tensor's key.
        key: String,
        /// The dtype found.
        dtype: String,
    },
    /// The state dict does not fit the model (strict loading).
    #[error("{0}")]
    Mismatch(Box<LoadReport>),
    /// An error from the shared core (shapes, values).
    #[error(transparent)]
    Core(#[from] dl_core::Error),
}

/// `Result` with [`enum@Error`] as the error type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
