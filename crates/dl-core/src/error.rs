//! The error type shared by every dl-rs library crate.

use std::fmt;

/// Everything that can go wrong in the dl-rs library crates.
///
/// Each variant names the thing that was wrong and what was expected, so that a message
/// such as `shape mismatch for loss input: expected [32, 10], got [32, 9]` can be shown to a
/// user as is.
///
/// ```
/// use dl_core::Error;
/// let err = Error::shape_mismatch("targets", &[32], &[31]);
/// assert_eq!(err.to_string(), "shape mismatch for targets: expected [32], got [31]");
/// ```
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A backend name that is not one of the known backends.
    #[error("unknown backend `{name}`: expected one of {expected}")]
    UnknownBackend {
        /// The name that was given.
        name: String,
        /// The accepted names, comma separated.
        expected: String,
    },
    /// A known backend whose cargo feature was not compiled in.
    #[error(
        "backend `{backend}` is not compiled in: rebuild with the cargo feature `{feature}` (for example `cargo build --features {feature}`)"
    )]
    BackendNotCompiled {
        /// The backend that was asked for.
        backend: String,
        /// The cargo feature that enables it.
        feature: String,
    },
    /// A backend that is compiled in but could not start on this machine.
    #[error("backend `{backend}` is not available here: {reason}")]
    BackendUnavailable {
        /// The backend that was asked for.
        backend: String,
        /// Why it could not start (the runtime's own message).
        reason: String,
    },
    /// A tensor whose shape does not fit.
    #[error("shape mismatch for {what}: expected {expected}, got {actual}")]
    ShapeMismatch {
        /// What the tensor is (for example `loss targets`).
        what: String,
        /// The shape that was expected, formatted.
        expected: String,
        /// The shape that was given, formatted.
        actual: String,
    },
    /// A value outside its valid range or set.
    #[error("invalid {what}: expected {expected}, got {actual}")]
    InvalidValue {
        /// What the value is (for example `class index`).
        what: String,
        /// What was expected.
        expected: String,
        /// What was given.
        actual: String,
    },
    /// An empty batch, which has no defined mean.
    #[error("empty input for {what}: expected at least one element")]
    Empty {
        /// What was empty.
        what: String,
    },
    /// A reference-data file that could not be read.
    #[error("fixture {path}: {reason}")]
    Fixture {
        /// The file.
        path: String,
        /// What was wrong.
        reason: String,
    },
    /// A non-finite number where a finite one is required.
    #[error("non-finite {what}: {value}")]
    NonFinite {
        /// What was not finite (for example `loss at step 12`).
        what: String,
        /// The value that was found.
        value: f64,
    },
}

impl Error {
    /// A [`Error::ShapeMismatch`] from two shapes.
    pub fn shape_mismatch(what: impl Into<String>, expected: &[usize], actual: &[usize]) -> Self {
        Error::ShapeMismatch {
            what: what.into(),
            expected: format!("{expected:?}"),
            actual: format!("{actual:?}"),
        }
    }

    /// A [`Error::InvalidValue`] from anything that displays.
    pub fn invalid(
        what: impl Into<String>,
        expected: impl fmt::Display,
        actual: impl fmt::Display,
    ) -> Self {
        Error::InvalidValue {
            what: what.into(),
            expected: expected.to_string(),
            actual: actual.to_string(),
        }
    }
}

/// `Result` with [`Error`] as the error type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
