//! Reading the reference data that PyTorch wrote (`fixtures/*.safetensors`).
//!
//! Each fixture file holds named tensors plus a JSON document in the safetensors metadata
//! (key `cases`) that says how each case was configured. Tests iterate over the cases, so a
//! case added to a generator script is tested without touching Rust code.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use burn::tensor::{DType, TensorData};
use safetensors::{Dtype, SafeTensors};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::error::{Error, Result};

/// The workspace's `fixtures/` folder (for tests inside this workspace).
///
/// ```
/// assert!(dl_core::fixtures_dir().ends_with("fixtures"));
/// ```
pub fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures")
}

/// A safetensors fixture file loaded into memory.
///
/// ```no_run
/// let fixture = dl_core::Fixture::open(dl_core::fixtures_dir().join("losses.safetensors"))?;
/// let cases = fixture.cases()?;
/// # Ok::<(), dl_core::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct Fixture {
    path: PathBuf,
    tensors: HashMap<String, TensorData>,
    metadata: HashMap<String, String>,
}

impl Fixture {
    /// Read a whole fixture file; every tensor is converted to its Burn dtype.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        let bytes = std::fs::read(&path).map_err(|e| fixture_error(&path, e))?;
        let (_, header) =
            SafeTensors::read_metadata(&bytes).map_err(|e| fixture_error(&path, e))?;
        let metadata = header.metadata().clone().unwrap_or_default();
        let file = SafeTensors::deserialize(&bytes).map_err(|e| fixture_error(&path, e))?;
        let mut tensors = HashMap::new();
        for (name, view) in file.tensors() {
            let dtype = match view.dtype() {
                Dtype::F32 => DType::F32,
                Dtype::F64 => DType::F64,
                Dtype::I64 => DType::I64,
                Dtype::I32 => DType::I32,
                Dtype::U8 => DType::U8,
                Dtype::BOOL => DType::Bool(burn::tensor::BoolStore::Native),
                other => {
                    return Err(fixture_error(
                        &path,
                        format!("tensor `{name}` has unsupported dtype {other:?}"),
                    ));
                }
            };
            let data = TensorData::from_bytes_vec(view.data().to_vec(), view.shape(), dtype);
            tensors.insert(name, data);
        }
        Ok(Self {
            path,
            tensors,
            metadata,
        })
    }

    /// The file this fixture was read from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The tensor stored under `name`.
    pub fn tensor(&self, name: &str) -> Result<TensorData> {
        self.tensors
            .get(name)
            .cloned()
            .ok_or_else(|| fixture_error(&self.path, format!("no tensor named `{name}`")))
    }

    /// Whether a tensor named `name` exists.
    pub fn contains(&self, name: &str) -> bool {
        self.tensors.contains_key(name)
    }

    /// Every tensor name, sorted.
    pub fn names(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self.tensors.keys().map(String::as_str).collect();
        names.sort_unstable();
        names
    }

    /// A raw metadata string.
    pub fn metadata(&self, key: &str) -> Option<&str> {
        self.metadata.get(key).map(String::as_str)
    }

    /// The `cases` metadata: case name to its JSON configuration, sorted by name.
    pub fn cases(&self) -> Result<Vec<(String, serde_json::Value)>> {
        let text = self
            .metadata("cases")
            .ok_or_else(|| fixture_error(&self.path, "no `cases` metadata"))?;
        let value: serde_json::Value =
            serde_json::from_str(text).map_err(|e| fixture_error(&self.path, e))?;
        let serde_json::Value::Object(map) = value else {
            return Err(fixture_error(
                &self.path,
                "`cases` metadata is not an object",
            ));
        };
        let mut cases: Vec<_> = map.into_iter().collect();
        cases.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(cases)
    }
}

/// A configuration read from a fixture case's JSON with serde: `defaults` (any `XConfig`) with
/// every field the case sets taken from the case.
///
/// Keys in `ignore` (bookkeeping such as `"model"`) are skipped. Any other key the
/// configuration does not have is an error naming it, so a field renamed on one side cannot
/// silently fall back to its default; a value of the wrong type is an error too.
///
/// ```
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Debug, Serialize, Deserialize)]
/// struct Sizes { hidden: usize, layers: usize }
///
/// let case = serde_json::json!({"model": "mlp", "hidden": 16});
/// let sizes = dl_core::config_from_case(&Sizes { hidden: 64, layers: 2 }, &case, &["model"])?;
/// assert_eq!((sizes.hidden, sizes.layers), (16, 2));
///
/// let typo = serde_json::json!({"hiden": 16});
/// let err = dl_core::config_from_case(&Sizes { hidden: 64, layers: 2 }, &typo, &[]).unwrap_err();
/// assert!(err.to_string().contains("hiden"), "{err}");
/// # Ok::<(), dl_core::Error>(())
/// ```
pub fn config_from_case<C: Serialize + DeserializeOwned>(
    defaults: &C,
    case: &Value,
    ignore: &[&str],
) -> Result<C> {
    let type_name = std::any::type_name::<C>()
        .rsplit("::")
        .next()
        .unwrap_or("config");
    let what = |key: &str| format!("fixture config `{key}` for {type_name}");
    let Value::Object(fields) = case else {
        return Err(Error::invalid(what(""), "a JSON object", case));
    };
    let mut merged = serde_json::to_value(defaults)
        .map_err(|e| Error::invalid(what(""), "a serialisable configuration", e))?;
    let Value::Object(known) = &mut merged else {
        return Err(Error::invalid(what(""), "a configuration struct", merged));
    };
    for (key, value) in fields {
        if ignore.contains(&key.as_str()) {
            continue;
        }
        let Some(slot) = known.get_mut(key) else {
            let names: Vec<&str> = known.keys().map(String::as_str).collect();
            return Err(Error::invalid(
                what(key),
                format!("one of {}", names.join(", ")),
                "an unknown field",
            ));
        };
        *slot = value.clone();
    }
    serde_json::from_value(merged).map_err(|e| Error::invalid(what(""), "valid field values", e))
}

fn fixture_error(path: &Path, reason: impl std::fmt::Display) -> Error {
    Error::Fixture {
        path: path.display().to_string(),
        reason: reason.to_string(),
    }
}
