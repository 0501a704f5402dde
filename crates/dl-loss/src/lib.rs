//! Loss functions with PyTorch semantics and analytic gradients.
//!
//! Every loss has a `…Config` (a Burn [`Config`](burn::config::Config) with PyTorch's
//! defaults) whose `init` builds it (or returns an error naming the invalid setting), a
//! `try_forward(input, target)` that returns the loss, a `forward` that panics with the same
//! error where `try_forward` returns one (the convention of every layer and model in dl-rs), and
//! a `gradient(input, target)` that returns the derivative of the (reduced) loss with respect
//! to `input`, computed with plain tensor operations: it works on a device without autodiff,
//! and it agrees with Burn's autodiff of `forward` and with PyTorch's autograd (checked by
//! `tests/pytorch_parity.rs` against `fixtures/losses.safetensors`).
//!
//! | Loss | Input, target | Matches |
//! |---|---|---|
//! | [`CrossEntropyLoss`] | logits `[N, C]`, class indices `[N]` | `torch.nn.functional.cross_entropy` (with `label_smoothing`) |
//! | [`CrossEntropyProbs`] | probabilities `[N, C]`, one-hot or soft `[N, C]` | the chapter's `CrossEntropyLoss`: `-mean Σ y log(clip(p, 1e-15, 1-1e-15))` |
//! | [`MseLoss`] | any rank, same shape | `torch.nn.functional.mse_loss` |
//! | [`BinaryCrossEntropy`] | probabilities, any rank, same shape | `torch.nn.functional.binary_cross_entropy` |
//! | [`BinaryCrossEntropyWithLogits`] | logits, any rank, same shape | `torch.nn.functional.binary_cross_entropy_with_logits` |
//! | [`HingeLoss`] | scores and labels ±1, any rank | the chapter's `HingeLoss`: `mean(max(0, margin - y·ŷ))` |
//! | [`MultiMarginLoss`] | logits `[N, C]`, class indices `[N]` | `torch.nn.MultiMarginLoss` (`p` 1 or 2, `margin`) |
//!
//! [`Reduction`] is PyTorch's `reduction`: `Mean` (default) and `Sum` return shape `[1]`;
//! `None` returns one value per sample (cross-entropies, multi-margin) or per element,
//! flattened (MSE, BCE, hinge), and its gradient is that of the sum. PyTorch's `weight`,
//! `pos_weight` and `ignore_index` options are not provided.
//!
//! Bad input is an [`Error`](dl_core::Error) from `try_forward` and `gradient`: a target whose shape does not fit
//! the input, a class index outside `0..C`, a hinge label other than ±1, an empty batch, or
//! an invalid configuration.
//!
//! ```
//! use burn::tensor::{Int, Tensor};
//! use dl_loss::{CrossEntropyLossConfig, Reduction};
//!
//! let device = dl_core::BackendKind::Flex.device()?;
//! let logits = Tensor::<2>::from_floats([[2.0, 0.5, -1.0], [0.1, 0.2, 3.0]], &device);
//! let classes = Tensor::<1, Int>::from_ints([0, 2], &device);
//! let loss = CrossEntropyLossConfig::new().with_label_smoothing(0.1).init()?;
//! let value = loss.try_forward(logits.clone(), classes.clone())?; // shape [1]
//! let grad = loss.gradient(logits, classes)?; // [2, 3]: (softmax - q) / 2
//! assert_eq!(value.dims(), [1]);
//! assert_eq!(grad.dims(), [2, 3]);
//! # Ok::<(), dl_core::Error>(())
//! ```

mod bce;
mod cross_entropy;
mod cross_entropy_probs;
mod hinge;
mod loss;
mod mse;
mod multi_margin;
mod reduction;
mod targets;
#[cfg(test)]
mod test_util;

pub use bce::{
    BCE_GRAD_EPSILON, BCE_LOG_CLAMP, BinaryCrossEntropy, BinaryCrossEntropyConfig,
    BinaryCrossEntropyWithLogits, BinaryCrossEntropyWithLogitsConfig,
};
pub use cross_entropy::{CrossEntropyLoss, CrossEntropyLossConfig};
pub use cross_entropy_probs::{CrossEntropyProbs, CrossEntropyProbsConfig};
pub use hinge::{HingeLoss, HingeLossConfig};
pub use loss::Loss;
pub use mse::{MseLoss, MseLossConfig};
pub use multi_margin::{MultiMarginLoss, MultiMarginLossConfig};
pub use reduction::Reduction;
