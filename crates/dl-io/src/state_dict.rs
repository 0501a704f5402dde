//! A PyTorch-style state dict: named tensors in PyTorch's layout, and the choice of reader for
//! a weight file by its first bytes (safetensors in `safetensors.rs`, PyTorch's formats in
//! `pytorch/read.rs`).

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;

use burn::tensor::TensorData;

use crate::dtype::FloatDtype;
use crate::error::{Error, Result};

/// Named tensors in PyTorch's layout and names (`fc1.weight` is `[out, in]`).
///
/// ```
/// use burn::tensor::TensorData;
/// let mut state = dl_io::StateDict::new("example");
/// state.insert("fc.weight", TensorData::new(vec![1.0f32, 2.0], [1, 2]));
/// assert_eq!(state.keys().collect::<Vec<_>>(), ["fc.weight"]);
/// ```
#[derive(Debug, Clone, Default)]
pub struct StateDict {
    pub(crate) source: String,
    pub(crate) tensors: BTreeMap<String, TensorData>,
    pub(crate) notes: Vec<String>,
    /// The dtype each tensor had in its file, where it was not F32 (all are f32 here).
    pub(crate) file_dtypes: BTreeMap<String, &'static str>,
}

impl StateDict {
    /// An empty state dict; `source` names it in error messages (a file name, say).
    pub fn new(source: impl Into<String>) -> Self {
        Self {
            source: source.into(),
            ..Self::default()
        }
    }

    /// Where these tensors came from, for messages.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Add or replace a tensor.
    pub fn insert(&mut self, key: impl Into<String>, data: TensorData) {
        self.tensors.insert(key.into(), data);
    }

    /// The tensor stored under `key`.
    pub fn get(&self, key: &str) -> Option<&TensorData> {
        self.tensors.get(key)
    }

    /// Remove and return the tensor stored under `key`.
    pub fn remove(&mut self, key: &str) -> Option<TensorData> {
        self.tensors.remove(key)
    }

    /// Keys in sorted order.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.tensors.keys().map(String::as_str)
    }

    /// Number of tensors.
    pub fn len(&self) -> usize {
        self.tensors.len()
    }

    /// Whether there are no tensors.
    pub fn is_empty(&self) -> bool {
        self.tensors.is_empty()
    }

    /// Notes made while reading (for example dtype conversions).
    pub fn notes(&self) -> &[String] {
        &self.notes
    }

    /// The dtype `key` had in the file it was read from (`F32`, `F64`, `F16`, `BF16`), before
    /// the conversion to f32; `F32` for tensors made in memory.
    pub fn file_dtype(&self, key: &str) -> &'static str {
        self.file_dtypes.get(key).copied().unwrap_or("F32")
    }

    pub(crate) fn record_dtype(&mut self, key: &str, dtype: FloatDtype) {
        if dtype != FloatDtype::F32 {
            self.file_dtypes.insert(key.to_string(), dtype.name());
        }
    }

    /// The tensors whose key starts with `prefix`, with the prefix removed.
    ///
    /// ```
    /// use burn::tensor::TensorData;
    /// let mut state = dl_io::StateDict::new("x");
    /// state.insert("model.fc.bias", TensorData::new(vec![0.0f32], [1]));
    /// assert!(state.strip_prefix("model.").get("fc.bias").is_some());
    /// ```
    pub fn strip_prefix(&self, prefix: &str) -> StateDict {
        let tensors = self
            .tensors
            .iter()
            .filter_map(|(k, v)| k.strip_prefix(prefix).map(|k| (k.to_string(), v.clone())))
            .collect();
        let file_dtypes = self
            .file_dtypes
            .iter()
            .filter_map(|(k, v)| k.strip_prefix(prefix).map(|k| (k.to_string(), *v)))
            .collect();
        StateDict {
            source: self.source.clone(),
            tensors,
            notes: self.notes.clone(),
            file_dtypes,
        }
    }

    /// Read a weight file, choosing the reader by the file's first bytes, not its extension:
    /// a zip archive (`PK\x03\x04`) or an older `torch.save` format (pickle, tar) goes to
    /// [`StateDict::from_pytorch_file`], an 8-byte header length followed by `{` to
    /// [`StateDict::from_safetensors_file`]. Anything else is [`Error::UnknownFormat`].
    ///
    /// ```no_run
    /// // The same call reads `model.safetensors`, `model.pt` and `model.pth`.
    /// let state = dl_io::StateDict::from_file("model.pth")?;
    /// println!("{} tensors from {}", state.len(), state.source());
    /// # Ok::<(), dl_io::Error>(())
    /// ```
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let io = |source| Error::Io {
            path: path.display().to_string(),
            source,
        };
        let mut head = Vec::with_capacity(FORMAT_PROBE_LEN);
        std::fs::File::open(path)
            .map_err(io)?
            .take(FORMAT_PROBE_LEN as u64)
            .read_to_end(&mut head)
            .map_err(io)?;
        match detect_format(&head) {
            Ok(Format::Safetensors) => Self::from_safetensors_file(path),
            Ok(Format::Pytorch) => Self::from_pytorch_file(path),
            Err(reason) => Err(Error::UnknownFormat {
                path: path.display().to_string(),
                reason,
            }),
        }
    }
}

/// How many leading bytes [`detect_format`] looks at: enough for a tar header's `ustar` magic.
const FORMAT_PROBE_LEN: usize = 262;

/// The largest header the safetensors format allows, as in the `safetensors` crate.
const SAFETENSORS_MAX_HEADER: u64 = 100_000_000;

/// The readers [`StateDict::from_file`] chooses between.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Safetensors,
    Pytorch,
}

/// Which reader the first bytes of a file call for, or why none does.
fn detect_format(head: &[u8]) -> std::result::Result<Format, String> {
    if head.is_empty() {
        return Err("the file is empty (0 bytes)".to_string());
    }
    if head.starts_with(b"PK\x03\x04") || head.starts_with(b"PK\x05\x06") {
        return Ok(Format::Pytorch);
    }
    // A pickle's PROTO opcode (0x80, protocol 2 to 5) can also be the low byte of a
    // safetensors header length; a `{` after the length decides, unless the length is beyond
    // what safetensors allows and the bytes read as a pickle.
    let pickle = head.first() == Some(&0x80) && head.get(1).is_some_and(|p| (2..=5).contains(p));
    if let (Some(len), Some(b'{')) = (head.first_chunk::<8>(), head.get(8))
        && (u64::from_le_bytes(*len) <= SAFETENSORS_MAX_HEADER || !pickle)
    {
        return Ok(Format::Safetensors);
    }
    if pickle || head.get(257..262) == Some(b"ustar") {
        return Ok(Format::Pytorch);
    }
    let shown: Vec<String> = head.iter().take(8).map(|b| format!("{b:02x}")).collect();
    Err(format!(
        "it starts with bytes {} ({} bytes read); expected a safetensors header (an 8-byte \
         little-endian length, then `{{`) or a PyTorch zip archive (`PK\\x03\\x04`)",
        shown.join(" "),
        head.len()
    ))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn format_is_told_by_content() {
        let mut safetensors = 16u64.to_le_bytes().to_vec();
        safetensors.extend_from_slice(b"{}              ");
        assert_eq!(detect_format(&safetensors), Ok(Format::Safetensors));
        // A header length whose low byte is a pickle PROTO opcode (0x280 = 640) is still
        // safetensors when `{` follows.
        let mut proto_like = 0x280u64.to_le_bytes().to_vec();
        proto_like.push(b'{');
        assert_eq!(detect_format(&proto_like), Ok(Format::Safetensors));
        // An absurd length with `{` after it goes to safetensors, which reports it.
        let mut huge = (1u64 << 60).to_le_bytes().to_vec();
        huge.push(b'{');
        assert_eq!(detect_format(&huge), Ok(Format::Safetensors));
        assert_eq!(detect_format(b"PK\x03\x04rest"), Ok(Format::Pytorch));
        // Legacy `torch.save`: pickle protocol 2, then the magic number as a LONG1.
        assert_eq!(
            detect_format(&[0x80, 0x02, 0x8a, 0x0a, 0x6c]),
            Ok(Format::Pytorch)
        );
        let err = detect_format(b"hello world").unwrap_err();
        assert!(err.contains("68 65 6c 6c 6f 20 77 6f"), "{err}");
        assert!(detect_format(b"").unwrap_err().contains("empty"));
    }
}
