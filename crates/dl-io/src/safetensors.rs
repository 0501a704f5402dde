//! Safetensors files with PyTorch's conventions: reading any float dtype into a
//! [`StateDict`] (converted to f32, noted), and writing f32 tensors under the state dict's
//! keys with metadata `{"format": "pt"}`, as `safetensors.torch.save_file` does, through an
//! atomic replace of the destination.

use std::collections::HashMap;
use std::path::Path;

use ::safetensors::tensor::TensorView;
use ::safetensors::{Dtype, SafeTensors};

use crate::atomic::write_atomically;
use crate::dtype::{ByteOrder, FloatDtype, f32_values, float_tensor};
use crate::error::{Error, Result};
use crate::state_dict::StateDict;

/// The tensor name safetensors reserves for the metadata.
const METADATA_KEY: &str = "__metadata__";

impl StateDict {
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
    ///
    /// The `safetensors` crate checks the header before anything is allocated from it: the
    /// length field against its 100 MB limit and the buffer's size, the JSON, each tensor's
    /// offsets (contiguous, in bounds, together covering the data exactly) and that
    /// shape × dtype size equals the tensor's byte range, with overflow checks. Every failure
    /// is [`Error::Safetensors`] naming `source`.
    ///
    /// ```
    /// let err = dl_io::StateDict::from_safetensors_bytes(b"junk", "junk.safetensors").unwrap_err();
    /// assert!(err.to_string().starts_with("junk.safetensors: not a valid safetensors file"));
    /// ```
    pub fn from_safetensors_bytes(bytes: &[u8], source: impl Into<String>) -> Result<Self> {
        let source = source.into();
        let invalid = |reason: String| Error::Safetensors {
            path: source.clone(),
            reason,
        };
        let file = SafeTensors::deserialize(bytes).map_err(|e| invalid(e.to_string()))?;
        let mut views = file.tensors();
        views.sort_by(|a, b| a.0.cmp(&b.0));
        let mut state = StateDict::new(source.clone());
        for (key, view) in views {
            let dtype = match view.dtype() {
                Dtype::F32 => FloatDtype::F32,
                Dtype::F64 => FloatDtype::F64,
                Dtype::F16 => FloatDtype::F16,
                Dtype::BF16 => FloatDtype::BF16,
                other => {
                    return Err(Error::UnsupportedDtype {
                        path: source,
                        key,
                        dtype: format!("{other:?}"),
                    });
                }
            };
            let (data, note) =
                float_tensor(&key, view.data(), view.shape(), dtype, ByteOrder::Little)
                    .map_err(invalid)?;
            state.record_dtype(&key, dtype);
            state.notes.extend(note);
            state.tensors.insert(key, data);
        }
        Ok(state)
    }

    /// The state dict as safetensors bytes: every tensor as little-endian f32 under its key,
    /// metadata `{"format": "pt"}`. Errors name [`StateDict::source`].
    ///
    /// ```
    /// use burn::tensor::TensorData;
    /// let mut state = dl_io::StateDict::new("mem");
    /// state.insert("fc.weight", TensorData::new(vec![1.0f32, 2.0], [1, 2]));
    /// let bytes = state.to_safetensors_bytes()?;
    /// let back = dl_io::StateDict::from_safetensors_bytes(&bytes, "back")?;
    /// assert_eq!(back.get("fc.weight"), state.get("fc.weight"));
    /// # Ok::<(), dl_io::Error>(())
    /// ```
    pub fn to_safetensors_bytes(&self) -> Result<Vec<u8>> {
        self.serialize(&self.source)
    }

    /// Write the state dict to `path` as a safetensors file with PyTorch's conventions: f32
    /// tensors under the state dict's keys and metadata `{"format": "pt"}`, so that
    /// `model.load_state_dict(safetensors.torch.load_file(path))` accepts a
    /// [`to_pytorch_state_dict`](crate::to_pytorch_state_dict) export. f64, f16 and bf16
    /// tensors are written as f32; an integer or boolean tensor is
    /// [`Error::UnsupportedDtype`].
    ///
    /// The write is atomic: the bytes go to a temporary file in the same folder, which is
    /// flushed to disk (`fsync`) and then renamed over `path`. On any error the temporary
    /// file is removed and an existing file at `path` is left as it was; a reader never sees
    /// a half-written file.
    ///
    /// ```no_run
    /// let device = dl_core::BackendKind::Flex.device()?;
    /// let model = dl_models::MlpConfig::new().init(&device)?;
    /// dl_io::to_pytorch_state_dict(&model).write_safetensors("mlp.safetensors")?;
    /// // Python: model.load_state_dict(safetensors.torch.load_file("mlp.safetensors"))
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn write_safetensors(&self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        let name = path.display().to_string();
        let bytes = self.serialize(&name)?;
        write_atomically(path, &bytes)
    }

    fn serialize(&self, destination: &str) -> Result<Vec<u8>> {
        let mut buffers = Vec::with_capacity(self.tensors.len());
        for (key, data) in &self.tensors {
            if key == METADATA_KEY {
                return Err(Error::Safetensors {
                    path: destination.to_string(),
                    reason: format!("the tensor name `{METADATA_KEY}` is reserved for metadata"),
                });
            }
            let Some(values) = f32_values(data) else {
                return Err(Error::UnsupportedDtype {
                    path: destination.to_string(),
                    key: key.clone(),
                    dtype: format!("{:?}", data.dtype()),
                });
            };
            let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
            buffers.push((key.as_str(), data.shape().to_vec(), bytes));
        }
        let invalid = |reason: String| Error::Safetensors {
            path: destination.to_string(),
            reason,
        };
        let views = buffers
            .iter()
            .map(|(key, shape, bytes)| {
                TensorView::new(Dtype::F32, shape.clone(), bytes)
                    .map(|view| (*key, view))
                    .map_err(|e| invalid(format!("tensor `{key}`: {e}")))
            })
            .collect::<Result<Vec<_>>>()?;
        let metadata = HashMap::from([("format".to_string(), "pt".to_string())]);
        ::safetensors::serialize(views, Some(metadata)).map_err(|e| invalid(e.to_string()))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use burn::tensor::{TensorData, f16};

    use super::*;

    #[test]
    fn safetensors_dtypes_become_f32_with_a_note() {
        let values = [1.0f32, -2.5];
        let f32_bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        let f64_bytes: Vec<u8> = values
            .iter()
            .flat_map(|v| f64::from(*v).to_le_bytes())
            .collect();
        let bytes = ::safetensors::serialize(
            [
                (
                    "a",
                    ::safetensors::tensor::TensorView::new(Dtype::F32, vec![2], &f32_bytes)
                        .unwrap(),
                ),
                (
                    "b",
                    ::safetensors::tensor::TensorView::new(Dtype::F64, vec![1, 2], &f64_bytes)
                        .unwrap(),
                ),
            ],
            None,
        )
        .unwrap();
        let state = StateDict::from_safetensors_bytes(&bytes, "mem").unwrap();
        assert_eq!(state.get("a").unwrap().try_to_vec::<f32>().unwrap(), values);
        assert_eq!(state.get("b").unwrap().try_to_vec::<f32>().unwrap(), values);
        assert_eq!(state.get("b").unwrap().shape().to_vec(), [1, 2]);
        assert_eq!(state.notes(), ["`b` converted from F64 to F32"]);
    }

    #[test]
    fn integer_tensors_are_refused_by_name() {
        let bytes = ::safetensors::serialize(
            [(
                "steps",
                ::safetensors::tensor::TensorView::new(Dtype::I64, vec![1], &[0u8; 8]).unwrap(),
            )],
            None,
        )
        .unwrap();
        let err = StateDict::from_safetensors_bytes(&bytes, "ckpt.safetensors").unwrap_err();
        assert!(
            matches!(&err, Error::UnsupportedDtype { key, .. } if key == "steps"),
            "{err}"
        );
        assert!(
            err.to_string()
                .starts_with("ckpt.safetensors: tensor `steps` has dtype I64")
        );
    }

    #[test]
    fn metadata_and_dtype_follow_pytorch() {
        let mut state = StateDict::new("mem");
        state.insert("a.weight", TensorData::new(vec![1.5f64, -2.0], [2, 1]));
        state.insert("a.bias", TensorData::new(vec![f16::from_f32(0.5)], [1]));
        let bytes = state.to_safetensors_bytes().unwrap();
        let (_, metadata) = ::safetensors::SafeTensors::read_metadata(&bytes).unwrap();
        let format = metadata.metadata().as_ref().and_then(|m| m.get("format"));
        assert_eq!(format.map(String::as_str), Some("pt"));
        let file = ::safetensors::SafeTensors::deserialize(&bytes).unwrap();
        let weight = file.tensor("a.weight").unwrap();
        assert_eq!(weight.dtype(), Dtype::F32);
        assert_eq!(weight.shape(), [2, 1]);
        assert_eq!(
            weight.data(),
            [1.5f32.to_le_bytes(), (-2.0f32).to_le_bytes()].concat()
        );
        assert_eq!(file.tensor("a.bias").unwrap().data(), 0.5f32.to_le_bytes());
    }

    #[test]
    fn integer_tensors_and_the_reserved_name_are_refused() {
        let mut state = StateDict::new("mem");
        state.insert("steps", TensorData::new(vec![3i64], [1]));
        let err = state.to_safetensors_bytes().unwrap_err();
        assert!(
            matches!(&err, Error::UnsupportedDtype { key, .. } if key == "steps"),
            "{err}"
        );
        let mut state = StateDict::new("mem");
        state.insert(METADATA_KEY, TensorData::new(vec![0.0f32], [1]));
        assert!(
            state
                .to_safetensors_bytes()
                .unwrap_err()
                .to_string()
                .contains("reserved")
        );
    }

    #[test]
    fn a_path_without_file_name_is_an_error() {
        let err = StateDict::new("x").write_safetensors("/").unwrap_err();
        assert!(matches!(err, Error::Io { .. }), "{err}");
    }
}
