//! PyTorch's formats: the entry points that name a model's parameters as PyTorch does (here;
//! each network's [`PytorchModel`] layouts live next to it in dl-models), reading `torch.save` files (`read.rs`) and writing them (`write.rs`).

pub(crate) mod read;
mod write;

use std::collections::BTreeMap;
use std::path::Path;

use burn::tensor::Gradients;

pub use dl_layers::{KeyLayout, KeyMapFn, PytorchModel};

use crate::error::Result;
use crate::load::{
    LoadMode, LoadReport, grads_with_layout, keys_by_burn_path, load_with_layouts,
    state_dict_with_layout,
};
use crate::state_dict::StateDict;

/// Load a PyTorch state dict into `model` (strict by default, as `load_state_dict`).
///
/// ```
/// use dl_io::{LoadMode, load_pytorch_state_dict, to_pytorch_state_dict};
/// let device = dl_core::BackendKind::Flex.device().unwrap();
/// let source = dl_models::MlpConfig::new().with_hidden_sizes(vec![8]).init(&device)?;
/// let state = to_pytorch_state_dict(&source);
/// assert!(state.get("0.weight").is_some()); // the chapter's nn.Sequential names
/// let target = dl_models::MlpConfig::new().with_hidden_sizes(vec![8]).init(&device)?;
/// let (target, report) = load_pytorch_state_dict(target, &state, LoadMode::Strict)?;
/// assert_eq!(report.loaded.len(), 4);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn load_pytorch_state_dict<M: PytorchModel>(
    model: M,
    state: &StateDict,
    mode: LoadMode,
) -> Result<(M, LoadReport)> {
    load_with_layouts(model, state, M::key_layouts(), mode)
}

/// Strictly load a safetensors file written from a PyTorch `state_dict()`.
pub fn load_pytorch_safetensors<M: PytorchModel>(
    model: M,
    path: impl AsRef<Path>,
) -> Result<(M, LoadReport)> {
    let state = StateDict::from_safetensors_file(path)?;
    load_pytorch_state_dict(model, &state, LoadMode::Strict)
}

/// Strictly load a PyTorch checkpoint of either format: a `torch.save(model.state_dict())`
/// file (`.pt`/`.pth`) or a safetensors file, told apart by content, not by extension.
///
/// NaN or infinite weights are an error (strict loading); load through
/// [`load_pytorch_state_dict`] with [`LoadMode::Partial`] to get them as warnings.
pub fn load_pytorch_file<M: PytorchModel>(
    model: M,
    path: impl AsRef<Path>,
) -> Result<(M, LoadReport)> {
    let state = StateDict::from_file(path)?;
    load_pytorch_state_dict(model, &state, LoadMode::Strict)
}

/// The model's parameters under PyTorch's names, in PyTorch's layouts.
pub fn to_pytorch_state_dict<M: PytorchModel>(model: &M) -> StateDict {
    state_dict_with_layout(model, &primary_layout::<M>())
}

/// Each parameter's key in [`to_pytorch_state_dict`]'s output, by its Burn module path
/// (`lstm.layers.1.weight_ih` → `lstm.weight_ih_l1`).
pub(crate) fn export_keys<M: PytorchModel>(model: &M) -> BTreeMap<String, String> {
    keys_by_burn_path(model, &primary_layout::<M>())
}

/// The parameter gradients under PyTorch's names (as `p.grad` of `named_parameters()`).
pub fn pytorch_grads<M: PytorchModel>(model: &M, grads: &Gradients) -> StateDict {
    grads_with_layout(model, grads, &primary_layout::<M>())
}

/// The layout of `M` with the given name (as in [`LoadReport::layout`]), to export under the
/// names a checkpoint was loaded with.
///
/// ```
/// let layout = dl_io::layout_named::<dl_models::Cnn>("nn.Sequential").unwrap();
/// assert_eq!((layout.map)("fc1.weight"), "10.weight");
/// ```
pub fn layout_named<M: PytorchModel>(name: &str) -> Option<KeyLayout> {
    M::key_layouts().iter().find(|l| l.name == name).copied()
}

pub(crate) fn primary_layout<M: PytorchModel>() -> KeyLayout {
    M::key_layouts()
        .first()
        .copied()
        .unwrap_or(KeyLayout::IDENTITY)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn export_keys_follow_the_module_paths() {
        let device = dl_core::BackendKind::Flex.device().unwrap();
        let lstm = dl_models::LstmClassifierConfig::new()
            .with_input_size(3)
            .with_hidden_size(4)
            .with_num_layers(2)
            .with_num_classes(2)
            .init(&device)
            .unwrap();
        let keys = export_keys(&lstm);
        assert_eq!(keys["lstm.layers.1.bias_hh"], "lstm.bias_hh_l1");
        assert_eq!(keys["fc.weight"], "fc.weight");
        let transformer = dl_models::TransformerClassifierConfig::new()
            .with_vocab_size(5)
            .with_d_model(8)
            .with_n_heads(2)
            .with_d_ff(16)
            .init(&device)
            .unwrap();
        let keys = export_keys(&transformer);
        assert_eq!(
            keys["transformer_blocks.1.feed_forward.linear2.bias"],
            "transformer_blocks.1.feed_forward.3.bias"
        );
        assert_eq!(
            keys["transformer_blocks.0.norm1.gamma"],
            "transformer_blocks.0.norm1.weight"
        );
        let mlp = dl_models::MlpConfig::new()
            .with_hidden_sizes(vec![8])
            .init(&device)
            .unwrap();
        assert_eq!(export_keys(&mlp)["layers.1.weight"], "3.weight");
    }
}
