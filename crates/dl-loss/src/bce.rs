//! Binary cross-entropy, from probabilities (`F.binary_cross_entropy`) and from logits
//! (`F.binary_cross_entropy_with_logits`).

use burn::config::Config;
use burn::tensor::Tensor;
use burn::tensor::activation::{log_sigmoid, sigmoid};
use dl_core::Result;

use crate::loss::{Loss, scaled};
use crate::reduction::Reduction;
use crate::targets;

/// PyTorch clamps each logarithm of the binary cross-entropy at this value, so that a
/// probability of exactly 0 or 1 gives a finite loss.
pub const BCE_LOG_CLAMP: f64 = -100.0;

/// PyTorch's backward of the binary cross-entropy divides by `max(p(1-p), BCE_GRAD_EPSILON)`.
pub const BCE_GRAD_EPSILON: f64 = 1e-12;

/// Configuration of a [`BinaryCrossEntropy`], with PyTorch's defaults.
///
/// ```
/// let loss = dl_loss::BinaryCrossEntropyConfig::new().init()?;
/// assert_eq!(loss.reduction(), dl_loss::Reduction::Mean);
/// # Ok::<(), dl_core::Error>(())
/// ```
#[derive(Config, Debug)]
pub struct BinaryCrossEntropyConfig {
    /// How the element losses are reduced. Default: mean.
    #[config(default = "Reduction::Mean")]
    pub reduction: Reduction,
}

impl BinaryCrossEntropyConfig {
    /// Build the loss. Every configuration is valid; the `Result` keeps the convention
    /// of every `init` in dl-rs.
    pub fn init(&self) -> Result<BinaryCrossEntropy> {
        Ok(BinaryCrossEntropy {
            reduction: self.reduction,
        })
    }
}

/// Binary cross-entropy of probabilities `p` against targets `y` in `[0, 1]` (hard or soft),
/// element-wise over any rank, matching `torch.nn.functional.binary_cross_entropy` (without
/// `weight`):
///
/// ```text
/// loss = -( y · max(log p, -100) + (1 - y) · max(log1p(-p), -100) )
/// ```
///
/// [`gradient`](Self::gradient) is PyTorch's backward formula,
/// `(p - y) / max(p(1 - p), 1e-12)` (divided by the element count for the mean), which stays
/// finite at `p = 0` and `p = 1`. Burn's autodiff of [`forward`](Self::forward) agrees with
/// it wherever neither logarithm is clamped; where one is (`p` = 0 or 1 in `f32`), autodiff
/// gives that term 0 instead.
///
/// Inputs outside `[0, 1]` are not checked (that would read the input back to the host on
/// every call); they give NaN, where PyTorch raises an error.
///
/// ```
/// use burn::tensor::Tensor;
/// let device = dl_core::BackendKind::Flex.device()?;
/// let p = Tensor::<1>::from_floats([0.5, 0.8], &device);
/// let y = Tensor::<1>::from_floats([1.0, 0.0], &device);
/// let loss = dl_loss::BinaryCrossEntropyConfig::new().init()?;
/// let value = loss.try_forward(p.clone(), y.clone())?.into_scalar::<f32>();
/// assert!((value - (-(0.5f32.ln()) - 0.2f32.ln()) / 2.0).abs() < 1e-6);
/// let grad = loss.gradient(p, y)?.try_into_vec_as::<f32>().unwrap();
/// // (p - y) / (p(1-p)) / 2 = [-0.5 / 0.25, 0.8 / 0.16] / 2
/// assert!((grad[0] + 1.0).abs() < 1e-6 && (grad[1] - 2.5).abs() < 1e-5);
/// # Ok::<(), dl_core::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BinaryCrossEntropy {
    reduction: Reduction,
}

impl BinaryCrossEntropy {
    /// How the element losses are reduced.
    pub fn reduction(&self) -> Reduction {
        self.reduction
    }

    /// [`Self::try_forward`], panicking with its error on invalid input.
    pub fn forward<const D: usize>(&self, input: Tensor<D>, target: Tensor<D>) -> Tensor<1> {
        self.try_forward(input, target)
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// The loss: shape `[1]` when reduced, `[numel]` (flattened) for [`Reduction::None`].
    ///
    /// Errors: an empty input ([`dl_core::Error::Empty`]), a target of another shape
    /// ([`dl_core::Error::ShapeMismatch`]).
    pub fn try_forward<const D: usize>(
        &self,
        input: Tensor<D>,
        target: Tensor<D>,
    ) -> Result<Tensor<1>> {
        let count = targets::same_shape(&input.dims(), &target.dims())?;
        let log_p = input.clone().log().clamp_min(BCE_LOG_CLAMP);
        let log_1mp = input.neg().log1p().clamp_min(BCE_LOG_CLAMP);
        // PyTorch's arrangement (y - 1)·log(1-p) - y·log p: no cancellation when y is 0 or 1.
        let loss = target
            .clone()
            .sub_scalar(1.0)
            .mul(log_1mp)
            .sub(target.mul(log_p));
        Ok(self.reduction.reduce(loss.reshape([count])))
    }

    /// PyTorch's gradient with respect to the probabilities:
    /// `(p - y) / max(p(1 - p), 1e-12)`, divided by the element count for the mean.
    /// Same errors as [`try_forward`](Self::try_forward).
    pub fn gradient<const D: usize>(
        &self,
        input: Tensor<D>,
        target: Tensor<D>,
    ) -> Result<Tensor<D>> {
        let count = targets::same_shape(&input.dims(), &target.dims())?;
        let denominator = input
            .clone()
            .mul(input.clone().neg().add_scalar(1.0))
            .clamp_min(BCE_GRAD_EPSILON);
        let gradient = input.sub(target).div(denominator);
        Ok(scaled(gradient, self.reduction.gradient_scale(count)))
    }
}

impl<const D: usize> Loss<D> for BinaryCrossEntropy {
    type Target = Tensor<D>;

    fn try_forward(&self, input: Tensor<D>, target: Tensor<D>) -> Result<Tensor<1>> {
        BinaryCrossEntropy::try_forward(self, input, target)
    }

    fn gradient(&self, input: Tensor<D>, target: Tensor<D>) -> Result<Tensor<D>> {
        BinaryCrossEntropy::gradient(self, input, target)
    }

    fn reduction(&self) -> Reduction {
        self.reduction
    }
}

/// Configuration of a [`BinaryCrossEntropyWithLogits`], with PyTorch's defaults.
///
/// ```
/// let loss = dl_loss::BinaryCrossEntropyWithLogitsConfig::new().init()?;
/// assert_eq!(loss.reduction(), dl_loss::Reduction::Mean);
/// # Ok::<(), dl_core::Error>(())
/// ```
#[derive(Config, Debug)]
pub struct BinaryCrossEntropyWithLogitsConfig {
    /// How the element losses are reduced. Default: mean.
    #[config(default = "Reduction::Mean")]
    pub reduction: Reduction,
}

impl BinaryCrossEntropyWithLogitsConfig {
    /// Build the loss. Every configuration is valid; the `Result` keeps the convention
    /// of every `init` in dl-rs.
    pub fn init(&self) -> Result<BinaryCrossEntropyWithLogits> {
        Ok(BinaryCrossEntropyWithLogits {
            reduction: self.reduction,
        })
    }
}

/// Binary cross-entropy of logits `x` against targets `y` in `[0, 1]`, element-wise over any
/// rank, matching `torch.nn.functional.binary_cross_entropy_with_logits` (without `weight`
/// and `pos_weight`). It is `BCE(sigmoid(x), y)` computed stably:
///
/// ```text
/// loss = (1 - y)·x - log_sigmoid(x) = max(x, 0) - x·y + log(1 + exp(-|x|))
/// ```
///
/// (the first form is PyTorch's and has the right derivative at `x = 0` under autodiff), so
/// logits of ±1e4 give finite values. The gradient is `sigmoid(x) - y`, divided by the
/// element count for the mean.
///
/// ```
/// use burn::tensor::Tensor;
/// let device = dl_core::BackendKind::Flex.device()?;
/// let x = Tensor::<1>::from_floats([0.0, 1e4, -1e4], &device);
/// let y = Tensor::<1>::from_floats([1.0, 1.0, 1.0], &device);
/// let loss = dl_loss::BinaryCrossEntropyWithLogitsConfig::new()
///     .with_reduction(dl_loss::Reduction::None)
///     .init()?;
/// let values = loss.try_forward(x.clone(), y.clone())?.try_into_vec_as::<f32>().unwrap();
/// assert!((values[0] - 2f32.ln()).abs() < 1e-6);
/// assert_eq!(values[1..], [0.0, 1e4]);
/// let grad = loss.gradient(x, y)?.try_into_vec_as::<f32>().unwrap();
/// assert_eq!(grad, vec![-0.5, 0.0, -1.0]);
/// # Ok::<(), dl_core::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BinaryCrossEntropyWithLogits {
    reduction: Reduction,
}

impl BinaryCrossEntropyWithLogits {
    /// How the element losses are reduced.
    pub fn reduction(&self) -> Reduction {
        self.reduction
    }

    /// [`Self::try_forward`], panicking with its error on invalid input.
    pub fn forward<const D: usize>(&self, input: Tensor<D>, target: Tensor<D>) -> Tensor<1> {
        self.try_forward(input, target)
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// The loss: shape `[1]` when reduced, `[numel]` (flattened) for [`Reduction::None`].
    ///
    /// Errors: an empty input ([`dl_core::Error::Empty`]), a target of another shape
    /// ([`dl_core::Error::ShapeMismatch`]).
    pub fn try_forward<const D: usize>(
        &self,
        input: Tensor<D>,
        target: Tensor<D>,
    ) -> Result<Tensor<1>> {
        let count = targets::same_shape(&input.dims(), &target.dims())?;
        let loss = target
            .neg()
            .add_scalar(1.0)
            .mul(input.clone())
            .sub(log_sigmoid(input));
        Ok(self.reduction.reduce(loss.reshape([count])))
    }

    /// The gradient of [`forward`](Self::forward) with respect to the logits:
    /// `sigmoid(x) - y`, divided by the element count for the mean. Same errors.
    pub fn gradient<const D: usize>(
        &self,
        input: Tensor<D>,
        target: Tensor<D>,
    ) -> Result<Tensor<D>> {
        let count = targets::same_shape(&input.dims(), &target.dims())?;
        let gradient = sigmoid(input).sub(target);
        Ok(scaled(gradient, self.reduction.gradient_scale(count)))
    }
}

impl<const D: usize> Loss<D> for BinaryCrossEntropyWithLogits {
    type Target = Tensor<D>;

    fn try_forward(&self, input: Tensor<D>, target: Tensor<D>) -> Result<Tensor<1>> {
        BinaryCrossEntropyWithLogits::try_forward(self, input, target)
    }

    fn gradient(&self, input: Tensor<D>, target: Tensor<D>) -> Result<Tensor<D>> {
        BinaryCrossEntropyWithLogits::gradient(self, input, target)
    }

    fn reduction(&self) -> Reduction {
        self.reduction
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::test_util::{close, device, values};
    use dl_core::Error;

    #[test]
    fn probabilities_hand_derived() {
        // p = [0.25, 0.5], soft y = [1, 0.5]:
        // loss_0 = -ln 0.25; loss_1 = -(0.5 ln 0.5 + 0.5 ln 0.5) = -ln 0.5.
        let device = device();
        let p = Tensor::<2>::from_floats([[0.25, 0.5]], &device);
        let y = Tensor::<2>::from_floats([[1.0, 0.5]], &device);
        let none = BinaryCrossEntropyConfig::new()
            .with_reduction(Reduction::None)
            .init()
            .unwrap();
        close(
            &values(none.try_forward(p.clone(), y.clone()).unwrap()),
            &[-(0.25f64.ln()), -(0.5f64.ln())],
        );
        // (p - y) / (p(1-p)): -0.75 / 0.1875 = -4; 0 / 0.25 = 0. Mean halves.
        let mean = BinaryCrossEntropyConfig::new().init().unwrap();
        close(
            &values(mean.gradient(p.clone(), y.clone()).unwrap()),
            &[-2.0, 0.0],
        );
        close(
            &values(mean.try_forward(p, y).unwrap()),
            &[-(0.25f64.ln() + 0.5f64.ln()) / 2.0],
        );
    }

    #[test]
    fn saturated_probabilities_follow_pytorch_clamps() {
        // p = 0, y = 1: log clamped at -100, loss 100, gradient (0 - 1) / 1e-12 = -1e12.
        // p = 1, y = 1: loss 0 (0 · -100 for the other term, not NaN), gradient 0 / 1e-12 = 0.
        let device = device();
        let p = Tensor::<1>::from_floats([0.0, 1.0], &device);
        let y = Tensor::<1>::from_floats([1.0, 1.0], &device);
        let loss = BinaryCrossEntropyConfig::new()
            .with_reduction(Reduction::None)
            .init()
            .unwrap();
        close(
            &values(loss.try_forward(p.clone(), y.clone()).unwrap()),
            &[100.0, 0.0],
        );
        let grad = values(loss.gradient(p, y).unwrap());
        // 1e-12 in f32 is 9.9999998e-13.
        close(&grad, &[-1.0 / f64::from(1e-12f32), 0.0]);
    }

    #[test]
    fn logits_hand_derived_and_stable() {
        // x = [ln 3, -ln 3], y = [1, 0]: sigmoid(x) = [0.75, 0.25], both losses -ln 0.75.
        let device = device();
        let x = Tensor::<1>::from_floats([3f32.ln(), -(3f32.ln())], &device);
        let y = Tensor::<1>::from_floats([1.0, 0.0], &device);
        let sum = BinaryCrossEntropyWithLogitsConfig::new()
            .with_reduction(Reduction::Sum)
            .init()
            .unwrap();
        close(
            &values(sum.try_forward(x.clone(), y.clone()).unwrap()),
            &[-2.0 * 0.75f64.ln()],
        );
        close(&values(sum.gradient(x, y).unwrap()), &[-0.25, 0.25]);

        // ±1e4 with the wrong label: loss 1e4 each, gradient ±1, all finite.
        let x = Tensor::<1>::from_floats([1e4, -1e4], &device);
        let y = Tensor::<1>::from_floats([0.0, 1.0], &device);
        let mean = BinaryCrossEntropyWithLogitsConfig::new().init().unwrap();
        close(
            &values(mean.try_forward(x.clone(), y.clone()).unwrap()),
            &[1e4],
        );
        close(&values(mean.gradient(x, y).unwrap()), &[0.5, -0.5]);
    }

    #[test]
    fn errors_name_the_problem() {
        let device = device();
        let x = Tensor::<2>::zeros([2, 3], &device);
        let y = Tensor::<2>::zeros([2, 1], &device);
        let expected = "shape mismatch for loss target: expected [2, 3] (the shape of the loss input), got [2, 1]";
        let probs = BinaryCrossEntropyConfig::new().init().unwrap();
        let logits = BinaryCrossEntropyWithLogitsConfig::new().init().unwrap();
        let errors = [
            probs.try_forward(x.clone(), y.clone()).unwrap_err(),
            probs.gradient(x.clone(), y.clone()).unwrap_err(),
            logits.try_forward(x.clone(), y.clone()).unwrap_err(),
            logits.gradient(x, y).unwrap_err(),
        ];
        for err in errors {
            assert_eq!(err.to_string(), expected);
        }
        let empty = Tensor::<1>::zeros([0], &device);
        let err = logits
            .try_forward(empty.clone(), empty.clone())
            .unwrap_err();
        assert!(matches!(err, Error::Empty { .. }), "{err}");
        let err = probs.try_forward(empty.clone(), empty).unwrap_err();
        assert!(matches!(err, Error::Empty { .. }), "{err}");
    }
}
