//! The chapter's cross-entropy: probabilities against one-hot (or soft) targets.

use burn::config::Config;
use burn::tensor::Tensor;
use dl_core::{Error, Result};

use crate::loss::{Loss, scaled};
use crate::reduction::Reduction;
use crate::targets;

/// Configuration of a [`CrossEntropyProbs`].
///
/// ```
/// let loss = dl_loss::CrossEntropyProbsConfig::new().init()?;
/// assert_eq!(loss.epsilon(), 1e-15);
/// # Ok::<(), dl_core::Error>(())
/// ```
#[derive(Config, Debug)]
pub struct CrossEntropyProbsConfig {
    /// How the per-sample losses are reduced. Default: mean (the chapter's).
    #[config(default = "Reduction::Mean")]
    pub reduction: Reduction,
    /// Probabilities are clipped to `[epsilon, 1 - epsilon]` before the logarithm.
    /// Default: the chapter's 1e-15. Must lie in `[0, 0.5)`.
    #[config(default = 1e-15)]
    pub epsilon: f64,
}

impl CrossEntropyProbsConfig {
    /// Build the loss; [`Error::InvalidValue`] when `epsilon` is outside `[0, 0.5)`.
    pub fn init(&self) -> Result<CrossEntropyProbs> {
        if !(0.0..0.5).contains(&self.epsilon) {
            return Err(Error::invalid(
                "epsilon of CrossEntropyProbs",
                "a value in [0, 0.5)",
                self.epsilon,
            ));
        }
        Ok(CrossEntropyProbs {
            reduction: self.reduction,
            epsilon: self.epsilon,
        })
    }
}

/// The chapter's `CrossEntropyLoss`: probabilities `p` `[N, C]` (for example a softmax
/// output) against one-hot or soft targets `y` `[N, C]`:
///
/// ```text
/// loss = -mean_n Σ_c y_nc · log(clip(p_nc, ε, 1-ε))        ε = 1e-15
/// ```
///
/// PyTorch has no such function; the reference values are computed with these formulas in
/// torch ops. In `f32` the upper bound `1 - 1e-15` rounds to 1, so only the lower clip acts.
///
/// [`gradient`](Self::gradient) is the true derivative with respect to `p`:
/// `-y / clip(p) / N`, and 0 where `p` was clipped. The chapter's `gradient` returns
/// `y_pred - y_true` instead: that is the gradient with respect to the *logits* `z` when
/// `p = softmax(z)`, which [`CrossEntropyLoss::gradient`](crate::CrossEntropyLoss::gradient)
/// gives (including the `1/N` of the mean, which the chapter leaves out).
///
/// ```
/// use burn::tensor::Tensor;
/// use dl_loss::CrossEntropyProbsConfig;
/// let device = dl_core::BackendKind::Flex.device()?;
/// let p = Tensor::<2>::from_floats([[0.5, 0.5], [0.25, 0.75]], &device);
/// let y = Tensor::<2>::from_floats([[1.0, 0.0], [0.0, 1.0]], &device);
/// let loss = CrossEntropyProbsConfig::new().init()?;
/// let value = loss.try_forward(p.clone(), y.clone())?.into_scalar::<f32>();
/// let expected = -(0.5f32.ln() + 0.75f32.ln()) / 2.0;
/// assert!((value - expected).abs() < 1e-6);
/// let grad = loss.gradient(p, y)?.try_into_vec_as::<f32>().unwrap();
/// assert_eq!(grad, vec![-1.0, 0.0, 0.0, -2.0 / 3.0]); // -y / p / N
/// # Ok::<(), dl_core::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CrossEntropyProbs {
    reduction: Reduction,
    epsilon: f64,
}

impl CrossEntropyProbs {
    /// How the per-sample losses are reduced.
    pub fn reduction(&self) -> Reduction {
        self.reduction
    }

    /// The clip bound `ε`.
    pub fn epsilon(&self) -> f64 {
        self.epsilon
    }

    /// [`Self::try_forward`], panicking with its error on invalid input.
    pub fn forward(&self, input: Tensor<2>, target: Tensor<2>) -> Tensor<1> {
        self.try_forward(input, target)
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// The loss of probabilities `[N, C]` against targets `[N, C]`: shape `[1]` when reduced,
    /// `[N]` for [`Reduction::None`].
    ///
    /// Errors: an empty input ([`Error::Empty`]), a target of another shape
    /// ([`Error::ShapeMismatch`]).
    pub fn try_forward(&self, input: Tensor<2>, target: Tensor<2>) -> Result<Tensor<1>> {
        let [n, _] = input.dims();
        targets::same_shape(&input.dims(), &target.dims())?;
        let clipped = input.clamp(self.epsilon, 1.0 - self.epsilon);
        let per_sample = target.mul(clipped.log()).sum_dim(1).reshape([n]).neg();
        Ok(self.reduction.reduce(per_sample))
    }

    /// The gradient of [`forward`](Self::forward) with respect to the probabilities:
    /// `-y / clip(p)`, 0 where `p < ε` or `p > 1-ε`, times `1/N` for the mean. Same errors.
    pub fn gradient(&self, input: Tensor<2>, target: Tensor<2>) -> Result<Tensor<2>> {
        let [n, _] = input.dims();
        targets::same_shape(&input.dims(), &target.dims())?;
        let (low, high) = (self.epsilon, 1.0 - self.epsilon);
        let outside = input
            .clone()
            .lower_elem(low)
            .bool_or(input.clone().greater_elem(high));
        let gradient = target
            .div(input.clamp(low, high))
            .neg()
            .mask_fill(outside, 0.0);
        Ok(scaled(gradient, self.reduction.gradient_scale(n)))
    }
}

impl Loss<2> for CrossEntropyProbs {
    type Target = Tensor<2>;

    fn try_forward(&self, input: Tensor<2>, target: Tensor<2>) -> Result<Tensor<1>> {
        CrossEntropyProbs::try_forward(self, input, target)
    }

    fn gradient(&self, input: Tensor<2>, target: Tensor<2>) -> Result<Tensor<2>> {
        CrossEntropyProbs::gradient(self, input, target)
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

    #[test]
    fn hand_derived_values_and_gradient() {
        // p = [[0.5, 0.5], [0.25, 0.75]], y = one-hot [0, 1]: per sample -ln 0.5, -ln 0.75.
        let device = device();
        let p = Tensor::<2>::from_floats([[0.5, 0.5], [0.25, 0.75]], &device);
        let y = Tensor::<2>::from_floats([[1.0, 0.0], [0.0, 1.0]], &device);
        let per_sample = [-(0.5f64.ln()), -(0.75f64.ln())];
        let none = CrossEntropyProbsConfig::new()
            .with_reduction(Reduction::None)
            .init()
            .unwrap();
        close(
            &values(none.try_forward(p.clone(), y.clone()).unwrap()),
            &per_sample,
        );
        let sum = CrossEntropyProbsConfig::new()
            .with_reduction(Reduction::Sum)
            .init()
            .unwrap();
        close(
            &values(sum.try_forward(p.clone(), y.clone()).unwrap()),
            &[per_sample[0] + per_sample[1]],
        );
        // -y/p: [-2, 0], [0, -4/3]; sum and none are not scaled.
        close(
            &values(sum.gradient(p.clone(), y.clone()).unwrap()),
            &[-2.0, 0.0, 0.0, -4.0 / 3.0],
        );
        close(
            &values(none.gradient(p, y).unwrap()),
            &[-2.0, 0.0, 0.0, -4.0 / 3.0],
        );
    }

    #[test]
    fn zero_probability_is_clipped_with_zero_gradient() {
        // p = 0 for the true class: loss -ln(1e-15) ≈ 34.539, and the clip stops the gradient.
        let device = device();
        let p = Tensor::<2>::from_floats([[0.0, 1.0]], &device);
        let y = Tensor::<2>::from_floats([[1.0, 0.0]], &device);
        let loss = CrossEntropyProbsConfig::new().init().unwrap();
        let value = values(loss.try_forward(p.clone(), y.clone()).unwrap());
        // 1e-15 as f32 is 1.0000000036e-15; its log differs from ln(1e-15) by 4e-9.
        close(&value, &[-(1e-15f64.ln())]);
        close(&values(loss.gradient(p, y).unwrap()), &[0.0, 0.0]);
    }

    #[test]
    fn errors_name_the_problem() {
        let device = device();
        let loss = CrossEntropyProbsConfig::new().init().unwrap();
        let p = Tensor::<2>::full([2, 3], 1.0 / 3.0, &device);
        let y = Tensor::<2>::zeros([2, 2], &device);
        let err = loss.try_forward(p.clone(), y.clone()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "shape mismatch for loss target: expected [2, 3] (the shape of the loss input), got [2, 2]"
        );
        assert_eq!(loss.gradient(p, y).unwrap_err(), err);
        let empty = Tensor::<2>::zeros([0, 3], &device);
        let err = loss.try_forward(empty.clone(), empty).unwrap_err();
        assert!(matches!(err, Error::Empty { .. }), "{err}");
        let err = CrossEntropyProbsConfig::new()
            .with_epsilon(0.5)
            .init()
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid epsilon of CrossEntropyProbs: expected a value in [0, 0.5), got 0.5"
        );
    }
}
