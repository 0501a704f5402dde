//! Errors of ONNX export and import: each names the file or the model and what was wrong.

/// Everything that can go wrong writing or reading an ONNX file.
///
/// It converts into the crate's [`enum@crate::Error`] (as an `Io` error whose source is
/// this error), so `?` works in functions that return [`crate::Result`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OnnxError {
    /// The file could not be opened, read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The operating-system error.
        #[source]
        source: std::io::Error,
    },
    /// The bytes are not an ONNX model (`ModelProto`) the decoder can read.
    #[error("{path}: not a valid ONNX model: {reason}")]
    Decode {
        /// The file.
        path: String,
        /// What was wrong: the protobuf parser's error, or the part of the model missing.
        reason: String,
    },
    /// An initializer cannot become a state-dict tensor (a non-float type, external data, or
    /// a data size that does not match its shape).
    #[error("{path}: initializer `{name}`: {reason}")]
    Initializer {
        /// The file.
        path: String,
        /// The initializer's name.
        name: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The model (or the export options) cannot be written as an ONNX graph.
    #[error("cannot export {model} to ONNX: {reason}")]
    Unsupported {
        /// The model type.
        model: String,
        /// What does not fit.
        reason: String,
    },
}

impl OnnxError {
    pub(crate) fn unsupported(model: &str, reason: impl Into<String>) -> Self {
        OnnxError::Unsupported {
            model: model.to_string(),
            reason: reason.into(),
        }
    }
}

impl From<crate::atomic::IoFailure> for OnnxError {
    fn from(crate::atomic::IoFailure { path, source }: crate::atomic::IoFailure) -> Self {
        OnnxError::Io { path, source }
    }
}

impl From<OnnxError> for crate::Error {
    /// I/O errors keep their path and operating-system error; the others become
    /// [`crate::Error::Onnx`], whose message already names the file.
    fn from(error: OnnxError) -> Self {
        match error {
            OnnxError::Io { path, source } => crate::Error::Io { path, source },
            other => crate::Error::Onnx(other),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn converts_to_the_crate_error_without_losing_it() {
        let error = OnnxError::Decode {
            path: "m.onnx".into(),
            reason: "truncated varint".into(),
        };
        let converted = crate::Error::from(error);
        let crate::Error::Onnx(OnnxError::Decode { path, reason }) = &converted else {
            panic!("expected Onnx(Decode), got {converted:?}");
        };
        assert_eq!(
            (path.as_str(), reason.as_str()),
            ("m.onnx", "truncated varint")
        );
        // The path appears once in the message.
        assert_eq!(
            converted.to_string().matches("m.onnx").count(),
            1,
            "{converted}"
        );
    }
}
