//! Writing a state dict as a safetensors file that PyTorch loads: f32 tensors under the
//! state dict's names, metadata `{"format": "pt"}` as `safetensors.torch.save_file` writes,
//! and an atomic replace of the destination.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use burn::tensor::{DType, TensorData, bf16, f16};
use safetensors::Dtype;
use safetensors::tensor::TensorView;

use crate::error::{Error, Result};
use crate::state_dict::StateDict;

/// The tensor name safetensors reserves for the metadata.
const METADATA_KEY: &str = "__metadata__";

/// The f32 values of a floating-point tensor, or `None` for other dtypes.
pub(crate) fn f32_values(data: &TensorData) -> Option<Vec<f32>> {
    match data.dtype() {
        DType::F32 | DType::Flex32 => data.try_to_vec::<f32>().ok(),
        DType::F64 => data
            .try_to_vec::<f64>()
            .ok()
            .map(|v| v.into_iter().map(|x| x as f32).collect()),
        DType::F16 => data
            .try_to_vec::<f16>()
            .ok()
            .map(|v| v.into_iter().map(f16::to_f32).collect()),
        DType::BF16 => data
            .try_to_vec::<bf16>()
            .ok()
            .map(|v| v.into_iter().map(bf16::to_f32).collect()),
        _ => None,
    }
}

impl StateDict {
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
        safetensors::serialize(views, Some(metadata)).map_err(|e| invalid(e.to_string()))
    }
}

/// Removes the temporary file when dropped, unless it was renamed into place.
struct TempFile {
    path: PathBuf,
    persisted: bool,
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if !self.persisted {
            // Best effort: the error being reported is the one that got us here.
            let _ = fs::remove_file(&self.path);
        }
    }
}

/// Distinguishes temporary files of one process.
static COUNTER: AtomicU64 = AtomicU64::new(0);

/// The folder `path` is in: `.` for a bare file name.
fn folder_of(path: &Path) -> &Path {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    }
}

/// A failed atomic write: the file it concerns and the operating system's error. The only way
/// [`write_atomically`] fails, so each crate error type converts it without a catch-all.
#[derive(Debug)]
pub(crate) struct IoFailure {
    pub(crate) path: String,
    pub(crate) source: std::io::Error,
}

impl From<IoFailure> for Error {
    fn from(IoFailure { path, source }: IoFailure) -> Self {
        Error::Io { path, source }
    }
}

/// Create a new temporary file next to `path` (`.NAME.PID.N.tmp`), never reusing one.
fn create_temp(path: &Path) -> std::result::Result<(File, TempFile), IoFailure> {
    let io = |source| IoFailure {
        path: path.display().to_string(),
        source,
    };
    let Some(file_name) = path.file_name() else {
        return Err(io(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "the path has no file name",
        )));
    };
    let dir = folder_of(path);
    loop {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let mut name = std::ffi::OsString::from(".");
        name.push(file_name);
        name.push(format!(".{}.{n}.tmp", std::process::id()));
        let temp = dir.join(name);
        match OpenOptions::new().write(true).create_new(true).open(&temp) {
            Ok(file) => {
                return Ok((
                    file,
                    TempFile {
                        path: temp,
                        persisted: false,
                    },
                ));
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            // Name the destination: the temporary name means nothing to the caller.
            Err(source) => return Err(io(source)),
        }
    }
}

/// Write `bytes` to `path` atomically: to a new temporary file beside it
/// (`.NAME.PID.N.tmp`), flushed to disk (`fsync`), renamed over `path`, and the folder
/// synced (best effort: the file is complete and in place by then). A reader sees the old
/// file or the new one, never a part; on any error the temporary file is removed and an
/// existing `path` is left as it was. Every file dl-io writes goes through this.
///
/// ```
/// let path = std::env::temp_dir().join(format!("dl-io-doc-{}.txt", std::process::id()));
/// dl_io::write_atomically(&path, b"epoch 3")?;
/// assert_eq!(std::fs::read(&path).unwrap(), b"epoch 3");
/// # std::fs::remove_file(&path).unwrap();
/// # Ok::<(), dl_io::Error>(())
/// ```
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    Ok(write_atomically_io(path, bytes)?)
}

/// [`write_atomically`] with its one kind of failure, for the crate's other error types.
pub(crate) fn write_atomically_io(path: &Path, bytes: &[u8]) -> std::result::Result<(), IoFailure> {
    let (mut file, mut temp) = create_temp(path)?;
    let at_temp = |source| IoFailure {
        path: temp.path.display().to_string(),
        source,
    };
    file.write_all(bytes).map_err(at_temp)?;
    file.sync_all().map_err(at_temp)?;
    drop(file);
    fs::rename(&temp.path, path).map_err(|source| IoFailure {
        path: path.display().to_string(),
        source,
    })?;
    temp.persisted = true;
    if let Ok(dir) = File::open(folder_of(path)) {
        let _ = dir.sync_all();
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn metadata_and_dtype_follow_pytorch() {
        let mut state = StateDict::new("mem");
        state.insert("a.weight", TensorData::new(vec![1.5f64, -2.0], [2, 1]));
        state.insert("a.bias", TensorData::new(vec![f16::from_f32(0.5)], [1]));
        let bytes = state.to_safetensors_bytes().unwrap();
        let (_, metadata) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
        let format = metadata.metadata().as_ref().and_then(|m| m.get("format"));
        assert_eq!(format.map(String::as_str), Some("pt"));
        let file = safetensors::SafeTensors::deserialize(&bytes).unwrap();
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
    fn temporary_files_go_beside_the_destination() {
        assert_eq!(folder_of(Path::new("model.safetensors")), Path::new("."));
        assert_eq!(
            folder_of(Path::new("out/model.safetensors")),
            Path::new("out")
        );
        let (file, temp) = create_temp(&std::env::temp_dir().join("dl_io_probe")).unwrap();
        drop(file);
        assert_eq!(temp.path.parent(), Some(std::env::temp_dir().as_path()));
        let name = temp
            .path
            .file_name()
            .unwrap()
            .to_string_lossy()
            .into_owned();
        assert!(
            name.starts_with(".dl_io_probe.") && name.ends_with(".tmp"),
            "{name}"
        );
        let path = temp.path.clone();
        drop(temp); // not persisted: removed
        assert!(!path.exists());
    }

    #[test]
    fn a_path_without_file_name_is_an_error() {
        let err = StateDict::new("x").write_safetensors("/").unwrap_err();
        assert!(matches!(err, Error::Io { .. }), "{err}");
    }
}
