//! Loading a PyTorch state dict into a Burn module, and reading a module back out in
//! PyTorch's layout.
//!
//! The walk is generic: it follows the module's field names (`fc1.weight`,
//! `transformer_blocks.0.norm1.gamma`), names each parameter as PyTorch does with dl-layers'
//! [`PytorchPath`] (Burn's `Linear` stores `[in, out]`, PyTorch `[out, in]`; Burn's
//! `LayerNorm` calls its parameters `gamma`/`beta`, PyTorch `weight`/`bias`; an LSTM's layers
//! get `_l{k}` suffixes), and then a per-model [`KeyLayout`] turns the result into the
//! checkpoint's key (for example `layers.1.weight` into the `nn.Sequential` key `3.weight`).

use std::collections::BTreeMap;
use std::fmt;

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param, ParamId};
use burn::tensor::{Gradients, Tensor, TensorData};
use dl_layers::{KeyLayout, PytorchPath};

use crate::error::{Error, Result};
use crate::state_dict::StateDict;

/// Strict (all keys must match, as PyTorch's `load_state_dict(strict=True)`) or partial
/// (load what matches and report the rest).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LoadMode {
    /// Any missing, unexpected or mis-shaped key is an error and the model is not changed.
    #[default]
    Strict,
    /// Load every key that matches; the report lists the others.
    Partial,
}

/// A tensor whose shape in the file differs from the model's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShapeMismatch {
    /// Checkpoint key.
    pub key: String,
    /// Shape the model expects, in PyTorch's layout.
    pub model: Vec<usize>,
    /// Shape found in the file.
    pub file: Vec<usize>,
}

/// What a load did and did not match, by checkpoint key, with shapes.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LoadReport {
    /// Model type name.
    pub model: String,
    /// Where the tensors came from.
    pub source: String,
    /// The key layout used.
    pub layout: String,
    /// Keys that were loaded.
    pub loaded: Vec<String>,
    /// Keys the model needs but the file lacks, with the model's shape.
    pub missing: Vec<(String, Vec<usize>)>,
    /// Keys in the file that the model does not have, with the file's shape.
    pub unexpected: Vec<(String, Vec<usize>)>,
    /// Keys present in both with different shapes.
    pub mismatched: Vec<ShapeMismatch>,
    /// Remarks such as dtype conversions.
    pub notes: Vec<String>,
}

impl LoadReport {
    /// True when every key matched.
    pub fn is_clean(&self) -> bool {
        self.missing.is_empty() && self.unexpected.is_empty() && self.mismatched.is_empty()
    }

    fn problems(&self) -> usize {
        self.missing.len() + self.unexpected.len() + self.mismatched.len()
    }
}

impl fmt::Display for LoadReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_clean() {
            return write!(
                f,
                "loaded {} tensors into {} from {} ({} keys)",
                self.loaded.len(),
                self.model,
                self.source,
                self.layout
            );
        }
        write!(
            f,
            "error(s) in loading state_dict for {} from {} ({} keys):",
            self.model, self.source, self.layout
        )?;
        if !self.missing.is_empty() {
            let keys: Vec<String> = self
                .missing
                .iter()
                .map(|(k, s)| format!("\"{k}\" {s:?}"))
                .collect();
            write!(f, "\n  missing key(s): {}", keys.join(", "))?;
        }
        if !self.unexpected.is_empty() {
            let keys: Vec<String> = self
                .unexpected
                .iter()
                .map(|(k, s)| format!("\"{k}\" {s:?}"))
                .collect();
            write!(f, "\n  unexpected key(s): {}", keys.join(", "))?;
        }
        for m in &self.mismatched {
            write!(
                f,
                "\n  size mismatch for {}: copying a param with shape {:?} from checkpoint, the shape in current model is {:?}",
                m.key, m.file, m.model
            )?;
        }
        Ok(())
    }
}

/// Where a parameter goes in a PyTorch checkpoint.
#[derive(Debug, Clone)]
struct Slot {
    /// The parameter's path in the Burn module (`lstm.layers.0.weight_ih`).
    burn_path: String,
    key: String,
    /// The parameter's shape in PyTorch's layout.
    shape: Vec<usize>,
    /// Burn stores this tensor as the transpose of PyTorch's (a `Linear` weight).
    transposed: bool,
}

/// Tracks the module path while Burn walks a module and names the parameter at its top:
/// PyTorch's name from dl-layers' [`PytorchPath`] (the renames and transposes of every layer),
/// then the model's [`KeyLayout`].
#[derive(Default)]
pub(crate) struct PathStack {
    path: PytorchPath,
}

impl PathStack {
    pub(crate) fn enter(&mut self, name: &str, container: &str) {
        self.path.enter(name, container);
    }

    pub(crate) fn exit(&mut self) {
        self.path.exit();
    }

    /// The checkpoint key of the parameter at the top of the stack.
    pub(crate) fn key(&self, layout: &KeyLayout) -> String {
        (layout.map)(&self.path.pytorch_name().0)
    }

    fn slot(&self, layout: &KeyLayout, dims: &[usize]) -> Slot {
        let (path, transposed) = self.path.pytorch_name();
        let mut shape = dims.to_vec();
        if transposed {
            shape.reverse();
        }
        Slot {
            burn_path: self.path.burn_path(),
            key: (layout.map)(&path),
            shape,
            transposed,
        }
    }
}

struct SlotCollector<'a> {
    layout: &'a KeyLayout,
    path: PathStack,
    slots: Vec<Slot>,
}

impl ModuleVisitor for SlotCollector<'_> {
    fn enter_module(&mut self, name: &str, container_type: &str) {
        self.path.enter(name, container_type);
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.exit();
    }

    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let dims = param.val().dims();
        self.slots.push(self.path.slot(self.layout, &dims));
    }
}

fn slots<M: Module>(model: &M, layout: &KeyLayout) -> Vec<Slot> {
    let mut collector = SlotCollector {
        layout,
        path: PathStack::default(),
        slots: Vec::new(),
    };
    model.visit(&mut collector);
    collector.slots
}

/// Each parameter's checkpoint key in `layout`, by its Burn module path.
pub(crate) fn keys_by_burn_path<M: Module>(
    model: &M,
    layout: &KeyLayout,
) -> BTreeMap<String, String> {
    slots(model, layout)
        .into_iter()
        .map(|slot| (slot.burn_path, slot.key))
        .collect()
}

fn report_for(slots: &[Slot], state: &StateDict, model: &str, layout: &KeyLayout) -> LoadReport {
    let mut report = LoadReport {
        model: model.to_string(),
        source: state.source().to_string(),
        layout: layout.name.to_string(),
        notes: state.notes().to_vec(),
        ..LoadReport::default()
    };
    for slot in slots {
        match state.get(&slot.key) {
            None => report.missing.push((slot.key.clone(), slot.shape.clone())),
            Some(data) if data.shape().to_vec() != slot.shape => {
                report.mismatched.push(ShapeMismatch {
                    key: slot.key.clone(),
                    model: slot.shape.clone(),
                    file: data.shape().to_vec(),
                })
            }
            Some(_) => report.loaded.push(slot.key.clone()),
        }
    }
    for key in state.keys() {
        if !slots.iter().any(|s| s.key == key) {
            let shape = state
                .get(key)
                .map(|d| d.shape().to_vec())
                .unwrap_or_default();
            report.unexpected.push((key.to_string(), shape));
        }
    }
    report
}

struct Loader<'a> {
    layout: &'a KeyLayout,
    state: &'a StateDict,
    path: PathStack,
    /// Parameter ids to restore, by checkpoint key (checkpoints only).
    ids: Option<&'a BTreeMap<String, u64>>,
}

impl ModuleMapper for Loader<'_> {
    fn enter_module(&mut self, name: &str, container_type: &str) {
        self.path.enter(name, container_type);
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.exit();
    }

    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let dims = param.val().dims();
        let slot = self.path.slot(self.layout, &dims);
        let Some(data) = self.state.get(&slot.key) else {
            return param;
        };
        if data.shape().to_vec() != slot.shape {
            return param;
        }
        let (id, current, mapper) = param.consume();
        // Transpose on the host so the parameter is contiguous, as a freshly initialised one
        // is: a strided view would send matmuls to other kernels, whose different summation
        // order changes the last bits (and breaks bit-identical resuming).
        let data = if slot.transposed {
            transpose_2d(data)
        } else {
            data.clone()
        };
        let loaded = Tensor::<D>::from_data(data, &current.device());
        // A fresh tensor is not tracked: keep the parameter trainable as it was.
        let loaded = loaded.set_require_grad(current.is_require_grad());
        let id = self
            .ids
            .and_then(|ids| ids.get(&slot.key))
            .map_or(id, |&saved| ParamId::from(saved));
        Param::from_mapped_value(id, loaded, mapper)
    }
}

/// `[rows, cols]` f32 data as `[cols, rows]`, laid out contiguously.
fn transpose_2d(data: &TensorData) -> TensorData {
    let shape = data.shape().to_vec();
    let (Ok(values), [rows, cols]) = (data.as_slice::<f32>(), shape.as_slice()) else {
        return data.clone();
    };
    let (rows, cols) = (*rows, *cols);
    let mut out = vec![0f32; values.len()];
    for r in 0..rows {
        for c in 0..cols {
            out[c * rows + r] = values[r * cols + c];
        }
    }
    TensorData::new(out, [cols, rows])
}

/// Load `state` into `model` with the first of `layouts` that fits best (fewest problems).
///
/// In [`LoadMode::Strict`] any missing, unexpected or mis-shaped key returns
/// [`Error::Mismatch`] with the whole report, and the model is dropped unchanged; in
/// [`LoadMode::Partial`] what matches is loaded and the report says what did not.
pub fn load_with_layouts<M: Module>(
    model: M,
    state: &StateDict,
    layouts: &[KeyLayout],
    mode: LoadMode,
) -> Result<(M, LoadReport)> {
    let model_name = type_name_of::<M>();
    let fallback = [KeyLayout::IDENTITY];
    let layouts = if layouts.is_empty() {
        &fallback[..]
    } else {
        layouts
    };
    let mut best: Option<(usize, LoadReport)> = None;
    for (i, layout) in layouts.iter().enumerate() {
        let report = report_for(&slots(&model, layout), state, &model_name, layout);
        if best
            .as_ref()
            .is_none_or(|(_, b)| report.problems() < b.problems())
        {
            best = Some((i, report));
        }
    }
    let Some((index, mut report)) = best else {
        return Err(Error::Mismatch(Box::default()));
    };
    if mode == LoadMode::Strict && !report.is_clean() {
        return Err(Error::Mismatch(Box::new(report)));
    }
    // NaN or infinite weights: an error when strict, a warning in the report otherwise.
    report
        .notes
        .extend(state.check_finite(mode == LoadMode::Strict)?);
    let mut loader = Loader {
        layout: &layouts[index],
        state,
        path: PathStack::default(),
        ids: None,
    };
    let model = model.map(&mut loader);
    Ok((model, report))
}

/// Strict load with one layout that also gives every parameter the id it had when saved, so
/// that optimizer state (kept by parameter id) attaches to the restored weights.
pub(crate) fn load_with_ids<M: Module>(
    model: M,
    state: &StateDict,
    layout: &KeyLayout,
    ids: &BTreeMap<String, u64>,
    mode: LoadMode,
) -> Result<(M, LoadReport)> {
    let model_name = type_name_of::<M>();
    let mut report = report_for(&slots(&model, layout), state, &model_name, layout);
    if mode == LoadMode::Strict && !report.is_clean() {
        return Err(Error::Mismatch(Box::new(report)));
    }
    report
        .notes
        .extend(state.check_finite(mode == LoadMode::Strict)?);
    let mut loader = Loader {
        layout,
        state,
        path: PathStack::default(),
        ids: Some(ids),
    };
    Ok((model.map(&mut loader), report))
}

fn type_name_of<M>() -> String {
    std::any::type_name::<M>()
        .rsplit("::")
        .next()
        .unwrap_or("model")
        .to_string()
}

struct Exporter<'a, F> {
    layout: &'a KeyLayout,
    path: PathStack,
    out: StateDict,
    value: F,
}

/// Picks what to export from a parameter: its value, or its gradient.
trait ParamValue {
    fn get<const D: usize>(&self, param: &Param<Tensor<D>>) -> Option<Tensor<D>>;
}

struct Values;
impl ParamValue for Values {
    fn get<const D: usize>(&self, param: &Param<Tensor<D>>) -> Option<Tensor<D>> {
        Some(param.val())
    }
}

struct Grads<'g>(&'g Gradients);
impl ParamValue for Grads<'_> {
    fn get<const D: usize>(&self, param: &Param<Tensor<D>>) -> Option<Tensor<D>> {
        param.val().grad(self.0)
    }
}

impl<F: ParamValue> ModuleVisitor for Exporter<'_, F> {
    fn enter_module(&mut self, name: &str, container_type: &str) {
        self.path.enter(name, container_type);
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.exit();
    }

    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let Some(tensor) = self.value.get(param) else {
            return;
        };
        let slot = self.path.slot(self.layout, &tensor.dims());
        let tensor = if slot.transposed {
            tensor.transpose()
        } else {
            tensor
        };
        let data: TensorData = tensor.into_data().convert::<f32>();
        self.out.insert(slot.key, data);
    }
}

fn export<M: Module, F: ParamValue>(model: &M, layout: &KeyLayout, value: F) -> StateDict {
    let mut exporter = Exporter {
        layout,
        path: PathStack::default(),
        out: StateDict::new(std::any::type_name::<M>()),
        value,
    };
    model.visit(&mut exporter);
    exporter.out
}

/// The model's parameters as a PyTorch state dict (PyTorch's names and layouts, f32).
pub fn state_dict_with_layout<M: Module>(model: &M, layout: &KeyLayout) -> StateDict {
    export(model, layout, Values)
}

/// The gradients of the model's parameters, named and laid out as PyTorch's
/// `{name: p.grad for name, p in model.named_parameters()}`. Parameters without a gradient
/// are left out.
pub fn grads_with_layout<M: Module>(model: &M, grads: &Gradients, layout: &KeyLayout) -> StateDict {
    export(model, layout, Grads(grads))
}
