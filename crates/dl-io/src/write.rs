//! Writing a state dict as a safetensors file that PyTorch loads: f32 tensors under the
//! state dict's names, metadata `{"format": "pt"}` as `safetensors.torch.save_file` writes,
//! and an atomic replace of the destination.

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::Write;
use std::path::Path;

use burn::tensor::{DType, TensorData, bf16, f16};
use safetensors::Dtype;
use safetensors::tensor::TensorView;
use tempfile::NamedTempFile;

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

/// A new temporary file beside `path`, named `.NAME.XXXXXX.tmp` (so that a leftover from a
/// killed process is recognisable), removed when dropped unless persisted. It is created with
/// the mode an ordinary new file gets (`0o666` less the umask), not tempfile's private
/// `0o600`, since it becomes the destination file.
fn temp_beside(path: &Path, file_name: &OsStr) -> std::io::Result<NamedTempFile> {
    let mut prefix = OsString::from(".");
    prefix.push(file_name);
    prefix.push(".");
    let mut builder = tempfile::Builder::new();
    builder.prefix(&prefix).suffix(".tmp");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        builder.permissions(std::fs::Permissions::from_mode(0o666));
    }
    builder.tempfile_in(folder_of(path))
}

/// Write `bytes` to `path` atomically: to a new temporary file beside it
/// (`.NAME.XXXXXX.tmp`, made by `tempfile`), flushed to disk (`fsync`), renamed over `path`,
/// and the folder synced so that the rename itself survives a crash (best effort: the file is
/// complete and in place by then). A reader sees the old file or the new one, never a part; on
/// any error the temporary file is removed, an existing `path` is left as it was, and the error
/// names `path`. Every file that dl-io, the `dl` program and `cargo xtask` write goes through
/// this.
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
    // The temporary name means nothing to the caller: every failure names the destination.
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
    let mut temp = temp_beside(path, file_name).map_err(io)?;
    temp.write_all(bytes).map_err(io)?;
    temp.as_file().sync_all().map_err(io)?;
    // On failure the `PersistError` hands the temporary file back; dropping it removes it.
    temp.persist(path).map_err(|e| io(e.error))?;
    if let Ok(dir) = File::open(folder_of(path)) {
        let _ = dir.sync_all();
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::fs;

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

    /// A fresh empty folder under the system's temporary folder, removed when dropped.
    fn scratch() -> tempfile::TempDir {
        tempfile::tempdir().unwrap()
    }

    fn listing(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn temporary_files_go_beside_the_destination_and_go_away() {
        assert_eq!(folder_of(Path::new("model.safetensors")), Path::new("."));
        assert_eq!(
            folder_of(Path::new("out/model.safetensors")),
            Path::new("out")
        );
        let dir = scratch();
        let dest = dir.path().join("probe.bin");
        let temp = temp_beside(&dest, OsStr::new("probe.bin")).unwrap();
        assert_eq!(temp.path().parent(), Some(dir.path()));
        let name = temp
            .path()
            .file_name()
            .unwrap()
            .to_string_lossy()
            .into_owned();
        assert!(
            name.starts_with(".probe.bin.") && name.ends_with(".tmp"),
            "{name}"
        );
        let path = temp.path().to_path_buf();
        assert!(path.exists());
        drop(temp); // not persisted: removed
        assert!(!path.exists());
    }

    #[test]
    fn a_write_replaces_the_file_and_leaves_nothing_else() {
        let dir = scratch();
        let path = dir.path().join("metrics.csv");
        fs::write(&path, b"old contents, longer than the new").unwrap();
        write_atomically(&path, b"new").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"new");
        write_atomically(&path, b"").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"");
        assert_eq!(listing(dir.path()), ["metrics.csv"]);
    }

    #[cfg(unix)]
    #[test]
    fn the_file_gets_the_mode_of_an_ordinary_new_file() {
        use std::os::unix::fs::PermissionsExt;
        let dir = scratch();
        let plain = dir.path().join("plain");
        File::create(&plain).unwrap();
        let atomic = dir.path().join("atomic");
        write_atomically(&atomic, b"x").unwrap();
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        // Not tempfile's owner-only 0o600: others may read what `dl` writes, as before.
        assert_eq!(mode(&atomic), mode(&plain));
    }

    #[test]
    fn a_failed_rename_keeps_the_destination_and_removes_the_temporary_file() {
        let dir = scratch();
        // A non-empty folder cannot be replaced by a file: the rename fails after the
        // temporary file was written and synced.
        let taken = dir.path().join("taken");
        fs::create_dir(&taken).unwrap();
        fs::write(taken.join("keep.txt"), b"keep").unwrap();
        let err = write_atomically(&taken, b"new").unwrap_err();
        match &err {
            Error::Io { path, .. } => assert_eq!(path, &taken.display().to_string()),
            other => panic!("expected Error::Io, got {other}"),
        }
        assert_eq!(listing(dir.path()), ["taken"]);
        assert_eq!(fs::read(taken.join("keep.txt")).unwrap(), b"keep");
    }

    #[test]
    fn a_missing_folder_is_an_error_naming_the_destination() {
        let dir = scratch();
        let path = dir.path().join("no_such_dir/m.bin");
        let err = write_atomically(&path, b"x").unwrap_err();
        assert!(
            matches!(&err, Error::Io { path: p, .. } if p == &path.display().to_string()),
            "{err}"
        );
        assert!(listing(dir.path()).is_empty());
    }

    #[test]
    fn a_path_without_file_name_is_an_error() {
        let err = StateDict::new("x").write_safetensors("/").unwrap_err();
        assert!(matches!(err, Error::Io { .. }), "{err}");
    }
}
