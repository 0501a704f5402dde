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
    /// The file is not a PyTorch checkpoint the reader understands, or one of its tensors
    /// could not be read.
    #[error("{path}: not a readable PyTorch checkpoint: {reason}")]
    Pytorch {
        /// The file.
        path: String,
        /// What the reader found wrong.
        reason: String,
    },
    /// The file is neither a safetensors file nor a PyTorch checkpoint.
    #[error("{path}: not a safetensors file or PyTorch checkpoint: {reason}")]
    UnknownFormat {
        /// The file.
        path: String,
        /// What the first bytes look like.
        reason: String,
    },
    /// A key-remapping pattern is not a valid regular expression.
    #[error("invalid key-remapping pattern `{pattern}`: {reason}")]
    InvalidPattern {
        /// The pattern as given.
        pattern: String,
        /// The regex parser's message.
        reason: String,
    },
    /// Key remapping gave two tensors the same name.
    #[error("{path}: key remapping maps both `{first}` and `{second}` to `{key}`")]
    KeyCollision {
        /// Where the tensors came from.
        path: String,
        /// The name both keys were mapped to.
        key: String,
        /// The first original key (in sorted order).
        first: String,
        /// The second original key.
        second: String,
    },
    /// Key remapping turned a key into the empty string.
    #[error("{path}: key remapping maps `{key}` to an empty name")]
    EmptyKey {
        /// Where the tensors came from.
        path: String,
        /// The original key.
        key: String,
    },
    /// A tensor holds NaN or infinite values (strict finiteness check).
    #[error("{path}: tensor `{key}` holds {count} non-finite value(s) (NaN or ±Inf)")]
    NonFinite {
        /// Where the tensors came from.
        path: String,
        /// The tensor's key.
        key: String,
        /// How many of its values are NaN, +Inf or -Inf.
        count: usize,
    },
    /// No dl-models network (or more than one) explains a state dict's keys and shapes.
    #[error("{path}: not a recognised network: {reason}")]
    UnknownArchitecture {
        /// The file (or state dict source).
        path: String,
        /// For each network, the keys that did not fit and what it expected.
        reason: String,
    },
    /// A checkpoint that is not one, or whose contents do not fit what was asked.
    #[error("{path}: {reason}")]
    Checkpoint {
        /// The file.
        path: String,
        /// What is wrong.
        reason: String,
    },
    /// An ONNX file that cannot be read, or a model that cannot be exported to ONNX.
    #[error(transparent)]
    Onnx(crate::onnx::OnnxError),
    /// The state dict does not fit the model (strict loading).
    #[error("{0}")]
    Mismatch(Box<LoadReport>),
    /// An error from the shared core (shapes, values).
    #[error(transparent)]
    Core(#[from] dl_core::Error),
}

/// `Result` with [`enum@Error`] as the error type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
