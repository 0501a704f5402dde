//! Training checkpoints: model weights, optimizer state, configurations, progress and the
//! random-number state in one safetensors file, written atomically.
//!
//! Layout: the model's tensors under `model.{pytorch_key}` (PyTorch's names and layouts, so
//! `safetensors.torch.load_file` reads them), the optimizer's state as one `u8` tensor
//! `optimizer` holding Burn's own optimizer record, and a JSON header (metadata `dl-rs`) with
//! the [`CheckpointMeta`] and each parameter's Burn id. Restoring the ids is what lets the
//! optimizer's per-parameter state (kept by id) attach to the restored weights, so resuming is
//! bit-identical to never having stopped.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use burn::module::ModuleVisitor;
use burn::module::Param;
use burn::optim::ModuleOptimizer;
use burn::tensor::{Bytes, Tensor};
use safetensors::tensor::TensorView;
use safetensors::{Dtype, SafeTensors};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::load::{LoadMode, LoadReport, PathStack};
use crate::pytorch::{PytorchModel, primary_layout};
use crate::state_dict::StateDict;

/// Format marker in the file's metadata, checked on load.
const FORMAT: &str = "dl-rs-checkpoint-1";

/// Everything in a checkpoint besides tensors.
///
/// ```
/// let meta = dl_io::CheckpointMeta { step: 100, epoch: 2, ..Default::default() };
/// assert_eq!(meta.step, 100);
/// ```
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CheckpointMeta {
    /// Which model this is (for example `"mlp"`), for tools that rebuild it.
    pub model: String,
    /// The model's configuration (its `XConfig` as JSON).
    pub model_config: serde_json::Value,
    /// The training configuration (optimizer, schedule, batch size, ...).
    pub training_config: serde_json::Value,
    /// Optimizer steps taken so far.
    pub step: u64,
    /// Epochs completed so far.
    pub epoch: u64,
    /// State of the data-order generator ([`dl_core::SeededRng::state`]).
    pub rng_state: u64,
}

#[derive(Serialize, Deserialize)]
struct Header {
    format: String,
    meta: CheckpointMeta,
    /// Burn parameter id of each model tensor, by PyTorch key.
    param_ids: BTreeMap<String, u64>,
}

/// A checkpoint read back: the model with its weights, the optimizer with its state, and the
/// metadata.
pub struct Checkpoint<M> {
    /// The model, weights loaded.
    pub model: M,
    /// The optimizer with its per-parameter state, when the checkpoint had one and an
    /// optimizer was given to load it into.
    pub optimizer: Option<ModuleOptimizer>,
    /// Progress, configurations and random state.
    pub meta: CheckpointMeta,
    /// What the weight loading matched.
    pub report: LoadReport,
}

/// Collects each parameter's PyTorch key and Burn id.
struct IdCollector {
    layout: dl_layers::KeyLayout,
    path: PathStack,
    ids: BTreeMap<String, u64>,
}

impl ModuleVisitor for IdCollector {
    fn enter_module(&mut self, name: &str, container_type: &str) {
        self.path.enter(name, container_type);
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.exit();
    }

    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let key = self.path.key(&self.layout);
        self.ids.insert(key, param.id.val());
    }
}

/// Write a checkpoint to `path` atomically (temporary file, fsync, rename): a crash while
/// writing leaves any previous checkpoint at `path` intact.
///
/// ```
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let device = dl_core::BackendKind::Flex.autodiff_device()?;
/// let model = dl_models::MlpConfig::new().with_hidden_sizes(vec![4]).init(&device)?;
/// let optimizer = dl_optim::AdamConfig::new().init()?;
/// let dir = std::env::temp_dir().join(format!("dl-io-doc-{}", std::process::id()));
/// std::fs::create_dir_all(&dir)?;
/// let path = dir.join("step-0.safetensors");
/// let meta = dl_io::CheckpointMeta { model: "mlp".into(), ..Default::default() };
/// dl_io::save_checkpoint(&path, &model, Some(&optimizer), &meta)?;
/// let fresh = dl_models::MlpConfig::new().with_hidden_sizes(vec![4]).init(&device)?;
/// let restored = dl_io::load_checkpoint(&path, fresh, Some(dl_optim::AdamConfig::new().init()?))?;
/// assert_eq!(restored.meta, meta);
/// # std::fs::remove_dir_all(&dir)?;
/// # Ok(()) }
/// ```
pub fn save_checkpoint<M: PytorchModel>(
    path: impl AsRef<Path>,
    model: &M,
    optimizer: Option<&ModuleOptimizer>,
    meta: &CheckpointMeta,
) -> Result<()> {
    let path = path.as_ref();
    let layout = primary_layout::<M>();
    let state = crate::load::state_dict_with_layout(model, &layout);
    let mut collector = IdCollector {
        layout,
        path: PathStack::default(),
        ids: BTreeMap::new(),
    };
    model.visit(&mut collector);
    let header = Header {
        format: FORMAT.to_string(),
        meta: meta.clone(),
        param_ids: collector.ids,
    };
    let header = serde_json::to_string(&header).map_err(|e| Error::Checkpoint {
        path: path.display().to_string(),
        reason: format!("metadata does not serialise: {e}"),
    })?;
    let optimizer_bytes = match optimizer {
        Some(optimizer) => Some(optimizer.into_bytes().map_err(|e| Error::Checkpoint {
            path: path.display().to_string(),
            reason: format!("optimizer state does not serialise: {e}"),
        })?),
        None => None,
    };

    let mut buffers: Vec<(String, Vec<u8>, Vec<usize>, Dtype)> = Vec::new();
    for key in state.keys() {
        let Some(data) = state.get(key) else { continue };
        buffers.push((
            format!("model.{key}"),
            data.as_bytes().to_vec(),
            data.shape().to_vec(),
            Dtype::F32,
        ));
    }
    if let Some(bytes) = &optimizer_bytes {
        buffers.push((
            "optimizer".into(),
            bytes.to_vec(),
            vec![bytes.len()],
            Dtype::U8,
        ));
    }
    let mut views = Vec::with_capacity(buffers.len());
    for (name, bytes, shape, dtype) in &buffers {
        let view =
            TensorView::new(*dtype, shape.clone(), bytes).map_err(|e| Error::Checkpoint {
                path: path.display().to_string(),
                reason: format!("tensor `{name}`: {e}"),
            })?;
        views.push((name.clone(), view));
    }
    let metadata = HashMap::from([("dl-rs".to_string(), header)]);
    let bytes = safetensors::serialize(views, Some(metadata)).map_err(|e| Error::Checkpoint {
        path: path.display().to_string(),
        reason: e.to_string(),
    })?;
    crate::atomic::write_atomically(path, &bytes)
}

/// Read only the metadata of a checkpoint (for `dl info`, or to rebuild the model first).
pub fn read_checkpoint_meta(path: impl AsRef<Path>) -> Result<CheckpointMeta> {
    let path = path.as_ref();
    let bytes = read(path)?;
    Ok(header(&bytes, path)?.meta)
}

/// Restore a checkpoint written by [`save_checkpoint`] into a freshly built `model` (same
/// configuration) and, when given, an optimizer of the same kind and settings.
///
/// Weights load strictly: a model that does not fit the checkpoint is an error naming every
/// missing, unexpected and mis-shaped key.
pub fn load_checkpoint<M: PytorchModel>(
    path: impl AsRef<Path>,
    model: M,
    optimizer: Option<ModuleOptimizer>,
) -> Result<Checkpoint<M>> {
    let path = path.as_ref();
    let bytes = read(path)?;
    let header = header(&bytes, path)?;
    let file = SafeTensors::deserialize(&bytes).map_err(|e| Error::Safetensors {
        path: path.display().to_string(),
        reason: e.to_string(),
    })?;
    let mut model_tensors = StateDict::new(path.display().to_string());
    let mut optimizer_bytes = None;
    for (name, view) in file.tensors() {
        if name == "optimizer" {
            optimizer_bytes = Some(view.data().to_vec());
        } else if let Some(key) = name.strip_prefix("model.") {
            if view.dtype() != Dtype::F32 {
                return Err(Error::UnsupportedDtype {
                    path: path.display().to_string(),
                    key: name.clone(),
                    dtype: format!("{:?}", view.dtype()),
                });
            }
            let data = burn::tensor::TensorData::from_bytes_vec(
                view.data().to_vec(),
                view.shape(),
                burn::tensor::DType::F32,
            );
            model_tensors.insert(key, data);
        }
    }
    let layout = primary_layout::<M>();
    let (model, report) = crate::load::load_with_ids(
        model,
        &model_tensors,
        &layout,
        &header.param_ids,
        LoadMode::Strict,
    )?;
    let optimizer = match (optimizer, optimizer_bytes) {
        (Some(optimizer), Some(bytes)) => Some(
            optimizer
                .from_bytes(Bytes::from_bytes_vec(bytes))
                .map_err(|e| Error::Checkpoint {
                    path: path.display().to_string(),
                    reason: format!("optimizer state: {e}"),
                })?,
        ),
        (Some(_), None) => {
            return Err(Error::Checkpoint {
                path: path.display().to_string(),
                reason: "an optimizer was given but the checkpoint holds no optimizer state".into(),
            });
        }
        (None, _) => None,
    };
    Ok(Checkpoint {
        model,
        optimizer,
        meta: header.meta,
        report,
    })
}

fn read(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|source| Error::Io {
        path: path.display().to_string(),
        source,
    })
}

fn header(bytes: &[u8], path: &Path) -> Result<Header> {
    let (_, metadata) = SafeTensors::read_metadata(bytes).map_err(|e| Error::Safetensors {
        path: path.display().to_string(),
        reason: e.to_string(),
    })?;
    let text = metadata
        .metadata()
        .as_ref()
        .and_then(|m| m.get("dl-rs"))
        .ok_or_else(|| Error::Checkpoint {
            path: path.display().to_string(),
            reason: "no `dl-rs` metadata: not a dl-rs checkpoint (a plain state dict? load it with load_pytorch_safetensors)".into(),
        })?;
    let header: Header = serde_json::from_str(text).map_err(|e| Error::Checkpoint {
        path: path.display().to_string(),
        reason: format!("checkpoint metadata is not valid: {e}"),
    })?;
    if header.format != FORMAT {
        return Err(Error::Checkpoint {
            path: path.display().to_string(),
            reason: format!("format `{}`, expected `{FORMAT}`", header.format),
        });
    }
    Ok(header)
}
