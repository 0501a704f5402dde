//! How a whole model's parameters are named in PyTorch checkpoints: the [`PytorchModel`]
//! trait each network implements next to its definition, and its [`KeyLayout`]s.
//!
//! A parameter's checkpoint key is made in two steps: [`crate::PytorchPath`] names it as
//! PyTorch's layer would (`fc1.weight`, `lstm.weight_ih_l0`), then one of the model's
//! `KeyLayout`s renumbers that name where the PyTorch version of the network is an
//! `nn.Sequential` (`layers.1.weight` → `3.weight`). dl-io's loading, export and gradients
//! use both.

use burn::module::Module;

/// Maps PyTorch's name of a parameter ([`crate::PytorchPath::pytorch_name`]: `fc1.weight`,
/// `lstm.weight_ih_l0`) to a checkpoint key.
pub type KeyMapFn = fn(&str) -> String;

/// One way a model's parameters may be named in a PyTorch checkpoint.
///
/// ```
/// use dl_layers::KeyLayout;
///
/// fn sequential(name: &str) -> String {
///     KeyLayout::rename_head(name, |head| (head == "fc1").then(|| "0".to_string()))
/// }
/// let layout = KeyLayout { name: "nn.Sequential", map: sequential };
/// assert_eq!((layout.map)("fc1.weight"), "0.weight");
/// assert_eq!((KeyLayout::IDENTITY.map)("fc1.weight"), "fc1.weight");
/// ```
#[derive(Debug, Clone, Copy)]
pub struct KeyLayout {
    /// A short name for reports (`"named"`, `"nn.Sequential"`).
    pub name: &'static str,
    /// The mapping from PyTorch's parameter name to the checkpoint key.
    pub map: KeyMapFn,
}

impl KeyLayout {
    /// Keys equal to the module's own field paths.
    pub const IDENTITY: KeyLayout = KeyLayout {
        name: "named",
        map: identity,
    };

    /// Replace the first segment of `path` with what `map` gives for it, keeping the rest
    /// (`None` keeps the path unchanged): the building block of `nn.Sequential` layouts.
    pub fn rename_head(path: &str, map: impl Fn(&str) -> Option<String>) -> String {
        let (head, rest) = path.split_once('.').unwrap_or((path, ""));
        match map(head) {
            Some(new) if rest.is_empty() => new,
            Some(new) => format!("{new}.{rest}"),
            None => path.to_string(),
        }
    }
}

fn identity(path: &str) -> String {
    path.to_string()
}

/// A module whose parameters have known names in PyTorch checkpoints.
///
/// The first layout is the one written on export; loading tries each and uses the one that
/// fits the file best, so both the chapter's `nn.Sequential` and class versions of a network
/// load into the same model.
///
/// ```
/// use burn::module::Module;
/// use burn::nn::{Linear, LinearConfig};
/// use dl_layers::{KeyLayout, PytorchModel};
///
/// #[derive(Module, Debug)]
/// struct Probe { fc1: Linear }
///
/// impl PytorchModel for Probe {
///     fn key_layouts() -> &'static [KeyLayout] {
///         &[KeyLayout::IDENTITY]
///     }
/// }
/// assert_eq!(Probe::key_layouts()[0].name, "named");
/// ```
pub trait PytorchModel: Module {
    /// The naming schemes this model's checkpoints come in, preferred first.
    fn key_layouts() -> &'static [KeyLayout];
}
