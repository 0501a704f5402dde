//! Reading PyTorch checkpoints (`torch.save(model.state_dict(), "model.pt")`) into a
//! [`StateDict`], through burn-store's `pytorch_reader`.
//!
//! The reader parses the zip archive and its `data.pkl` pickle (and the older pickle and tar
//! formats of `torch.save`) without running any pickled code, checks every declared length
//! against what the file holds and refuses pickles over 100 MiB. On top of that this module
//! refuses a tensor before reading it when its bytes could not all be in the file (see
//! [`MAX_EXPANSION`]), so a size field alone never decides how much is allocated.

use std::path::Path;

use burn::store::pytorch_reader::{DType as PtDtype, PytorchReader};

use crate::dtype::{ByteOrder, FloatDtype, float_tensor};
use crate::error::{Error, Result};
use crate::state_dict::StateDict;

/// How many times the file's size the tensors of a checkpoint may add up to.
///
/// Tensors may share storage (tied weights, views of one buffer), so together they can hold
/// more bytes than the file; a checkpoint declaring more than this multiple is refused as
/// corrupt or hostile before any tensor is read. A single tensor may not be larger than the
/// file at all (that needs a broadcast view, which a state dict does not hold).
pub const MAX_EXPANSION: u64 = 4;

impl StateDict {
    /// Read a PyTorch checkpoint written by `torch.save(model.state_dict(), path)`: the zip
    /// format of PyTorch 1.6 and later (`.pt`, `.pth`, `.bin`), and the older pickle and tar
    /// formats.
    ///
    /// Keys are the state dict's (`0.weight`, `module.fc.bias`); a checkpoint that nests
    /// its weights (`{"state_dict": ..., "epoch": 3}`) gives dotted keys
    /// (`state_dict.fc.weight`), which [`StateDict::strip_prefix`] or
    /// [`StateDict::remap_keys`] turn into the model's. Floating-point tensors become f32,
    /// with a note for each f16, bf16 or f64 one converted (as for safetensors); an integer or
    /// boolean tensor is [`Error::UnsupportedDtype`]. Anything else wrong with the file is
    /// [`Error::Pytorch`] naming it.
    ///
    /// ```no_run
    /// let state = dl_io::StateDict::from_pytorch_file("mlp.pt")?;
    /// assert!(state.get("0.weight").is_some());
    /// # Ok::<(), dl_io::Error>(())
    /// ```
    pub fn from_pytorch_file(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let name = path.display().to_string();
        let invalid = |reason: String| Error::Pytorch {
            path: name.clone(),
            reason,
        };
        let file_len = std::fs::metadata(path)
            .map_err(|source| Error::Io {
                path: name.clone(),
                source,
            })?
            .len();
        if file_len == 0 {
            return Err(invalid("the file is empty (0 bytes)".to_string()));
        }
        let reader = PytorchReader::new(path).map_err(|e| invalid(e.to_string()))?;
        let mut tensors: Vec<_> = reader.into_tensors().into_iter().collect();
        tensors.sort_by(|a, b| a.0.cmp(&b.0));

        // Check every tensor's dtype and size before reading any bytes.
        let budget = file_len.saturating_mul(MAX_EXPANSION);
        let mut total = 0u64;
        let mut dtypes = Vec::with_capacity(tensors.len());
        for (key, tensor) in &tensors {
            let dtype = match tensor.dtype() {
                PtDtype::F32 => FloatDtype::F32,
                PtDtype::F64 => FloatDtype::F64,
                PtDtype::F16 => FloatDtype::F16,
                PtDtype::BF16 => FloatDtype::BF16,
                other => {
                    return Err(Error::UnsupportedDtype {
                        path: name,
                        key: key.clone(),
                        dtype: format!("{other:?}"),
                    });
                }
            };
            let bytes = tensor
                .shape()
                .iter()
                .try_fold(dtype.size() as u64, |n, &d| n.checked_mul(d as u64));
            let Some(bytes) = bytes.filter(|&b| b <= file_len) else {
                return Err(invalid(format!(
                    "tensor `{key}` of shape {:?} ({}) needs more bytes than the whole file \
                     holds ({file_len})",
                    tensor.shape(),
                    dtype.name()
                )));
            };
            total = total.saturating_add(bytes);
            if total > budget {
                return Err(invalid(format!(
                    "its tensors declare more than {MAX_EXPANSION} times the file's {file_len} \
                     bytes (at `{key}`)"
                )));
            }
            dtypes.push(dtype);
        }

        let mut state = StateDict::new(name.clone());
        for ((key, tensor), dtype) in tensors.into_iter().zip(dtypes) {
            let bytes = tensor.read().map_err(|e| invalid(e.to_string()))?;
            let (data, note) = float_tensor(&key, &bytes, tensor.shape(), dtype, ByteOrder::Native)
                .map_err(&invalid)?;
            state.record_dtype(&key, dtype);
            state.notes.extend(note);
            state.tensors.insert(key, data);
        }
        Ok(state)
    }
}
