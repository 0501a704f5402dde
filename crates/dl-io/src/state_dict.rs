//! A PyTorch-style state dict: named tensors in PyTorch's layout, read from and written to
//! safetensors files.

use std::collections::BTreeMap;
use std::path::Path;

use burn::tensor::{DType, TensorData};
use safetensors::{Dtype, SafeTensors};

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
    source: String,
    tensors: BTreeMap<String, TensorData>,
    notes: Vec<String>,
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
        StateDict {
            source: self.source.clone(),
            tensors,
            notes: self.notes.clone(),
        }
    }

    /// Read a safetensors file (as written by `safetensors.torch.save_file`).
    ///
    /// Floating-point tensors become f32; f16, bf16 and f64 are converted and the conversion
    /// is noted in [`StateDict::notes`]. Integer and boolean tensors are an error.
    pub fn from_safetensors_file(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|source| Error::Io {
            path: path.display().to_string(),
            source,
        })?;
        Self::from_safetensors_bytes(&bytes, path.display().to_string())
    }

    /// Parse safetensors bytes; `source` names them in error messages.
    pub fn from_safetensors_bytes(bytes: &[u8], source: impl Into<String>) -> Result<Self> {
        let source = source.into();
        let file = SafeTensors::deserialize(bytes).map_err(|e| Error::Safetensors {
            path: source.clone(),
            reason: e.to_string(),
        })?;
        let mut state = StateDict::new(source.clone());
        for (key, view) in file.tensors() {
            let dtype = match view.dtype() {
                Dtype::F32 => DType::F32,
                Dtype::F64 => DType::F64,
                Dtype::F16 => DType::F16,
                Dtype::BF16 => DType::BF16,
                other => {
                    return Err(Error::UnsupportedDtype {
                        path: source,
                        key,
                        dtype: format!("{other:?}"),
                    });
                }
            };
            let mut data = TensorData::from_bytes_vec(view.data().to_vec(), view.shape(), dtype);
            if dtype != DType::F32 {
                state
                    .notes
                    .push(format!("`{key}` converted from {dtype:?} to F32"));
                data = data.convert::<f32>();
            }
            state.tensors.insert(key, data);
        }
        Ok(state)
    }
}
