//! Layers with PyTorch's parameter layouts and names, for any Burn device.
//!
//! Each layer is a Burn [`Module`](burn::module::Module) built from a
//! [`Config`](burn::config::Config) whose defaults are PyTorch's, initialised as PyTorch
//! initialises it, and whose fields carry PyTorch's attribute names, so that a PyTorch
//! `state_dict` maps one-to-one onto the module's parameters. Every layer's rustdoc lists its
//! PyTorch keys and shapes and says where Burn's storage differs:
//!
//! * Burn's [`Linear`](burn::nn::Linear) stores `weight` as `[in, out]`; PyTorch's is
//!   `[out, in]` (transpose on load and save).
//! * Burn's [`LayerNorm`](burn::nn::LayerNorm) names its parameters `gamma` / `beta`; PyTorch's
//!   are `weight` / `bias`.
//! * Everything else written here ([`BatchNorm2d`], [`Lstm`], [`MultiHeadAttention`]'s packed
//!   input projection) is stored exactly in PyTorch's layout under PyTorch's name.
//!
//! [`PytorchPath`] holds these rules (and the few renames of containers, such as the LSTM's
//! `_l{k}` suffixes): loading, export, gradients and the parity tests all name parameters
//! through it.
//!
//! | layer | PyTorch counterpart |
//! |---|---|
//! | [`Activation`] | `torch.relu`, `sigmoid`, `tanh`, `gelu` (exact), identity |
//! | [`Dense`] | `nn.Linear` followed by an activation |
//! | [`BatchNorm2d`] | `nn.BatchNorm2d` |
//! | [`ConvBlock`] | `nn.Conv2d` → optional `nn.BatchNorm2d` → activation → optional `nn.MaxPool2d` |
//! | [`Lstm`] | `nn.LSTM` (packed gates, multi-layer, bidirectional) |
//! | [`MultiHeadAttention`] | `nn.MultiheadAttention(batch_first=True)` |
//! | [`TransformerBlock`] | the chapter's `TransformerBlock` (post-norm, or pre-norm) |
//! | [`PositionalEncoding`] | the chapter's `Transformer._create_positional_encoding` |
//!
//! Embeddings need no wrapper: [`burn::nn::Embedding`] stores `weight` as
//! `[num_embeddings, embedding_dim]` and initialises it from `N(0, 1)`, exactly as
//! `nn.Embedding` does.
//!
//! # Training and inference
//!
//! As in Burn, a stochastic or stateful layer (dropout, batch norm) behaves as in training
//! only when its input lives on an autodiff device **and** its training flag is enabled; on a
//! plain device (or after [`Module::valid`](burn::module::Module::valid)) it behaves as in
//! PyTorch's `eval()`. [`set_training`] flips the flags without leaving the autodiff device:
//! `set_training(module, false)` is PyTorch's `module.eval()` with autograd still on.
//!
//! # Checked and unchecked forward passes
//!
//! Every layer whose input shape can be wrong has a `try_forward` that checks the input and
//! returns a [`dl_core::Error`] naming the tensor and the expected shape, and a `forward` that
//! runs the same shape checks and panics with that message (as Burn's own layers panic on a
//! bad shape). Use `try_forward` on user-supplied data. (Attention's `try_` methods also refuse
//! fully masked query rows, which costs one read of the mask back to the host; `forward` returns
//! NaN for them, as PyTorch does.)
//!
//! ```
//! use burn::tensor::Tensor;
//! use dl_layers::{Activation, DenseConfig};
//!
//! let device = dl_core::BackendKind::Flex.device()?;
//! let dense = DenseConfig::new(4, 3).with_activation(Activation::Tanh).init(&device)?;
//! let y = dense.try_forward(Tensor::<2>::zeros([2, 4], &device))?;
//! assert_eq!(y.dims(), [2, 3]);
//! assert!(dense.try_forward(Tensor::<2>::zeros([2, 5], &device)).is_err());
//! # Ok::<(), dl_core::Error>(())
//! ```

mod activation;
mod attention;
mod batch_norm;
mod conv;
mod conv_block;
mod dense;
mod dropout;
mod key_layout;
mod layer_norm;
mod linear;
mod lstm;
mod pool;
mod positional;
mod pytorch_path;
mod training;
mod transformer;

pub use activation::Activation;
pub use attention::{AttentionMask, MultiHeadAttention, MultiHeadAttentionConfig};
pub use batch_norm::{BatchNorm2d, BatchNorm2dConfig};
pub use conv::conv2d_forward;
pub use conv_block::{ConvBlock, ConvBlockConfig};
pub use dense::{Dense, DenseConfig};
pub use dropout::dropout_forward;
pub use key_layout::{KeyLayout, KeyMapFn, PytorchModel};
pub use layer_norm::layer_norm_forward;
pub use linear::{linear, linear_forward};
pub use lstm::{Lstm, LstmConfig, LstmLayer, LstmState};
pub use pool::relu_max_pool2d;
pub use positional::{PositionalEncoding, PositionalEncodingConfig};
pub use pytorch_path::PytorchPath;
pub use training::set_training;
pub use transformer::{FeedForward, TransformerBlock, TransformerBlockConfig};

#[cfg(test)]
mod test_util;
