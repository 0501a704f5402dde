//! Cross-entropy from logits and class indices, as `torch.nn.functional.cross_entropy`.

use burn::config::Config;
use burn::tensor::activation::{log_softmax, softmax};
use burn::tensor::{Int, Tensor};
use dl_core::{Error, Result};

use crate::loss::{Loss, scaled};
use crate::reduction::Reduction;
use crate::targets;

/// Configuration of a [`CrossEntropyLoss`], with PyTorch's defaults.
///
/// ```
/// use dl_loss::{CrossEntropyLossConfig, Reduction};
/// let loss = CrossEntropyLossConfig::new().with_label_smoothing(0.1).init()?;
/// assert_eq!(loss.reduction(), Reduction::Mean);
/// assert!(CrossEntropyLossConfig::new().with_label_smoothing(1.5).init().is_err());
/// # Ok::<(), dl_core::Error>(())
/// ```
#[derive(Config, Debug)]
pub struct CrossEntropyLossConfig {
    /// How the per-sample losses are reduced. Default: mean.
    #[config(default = "Reduction::Mean")]
    pub reduction: Reduction,
    /// Label smoothing `ε` in `[0, 1]`: the target distribution is `(1-ε)·onehot + ε/C`.
    /// Default: 0.
    #[config(default = 0.0)]
    pub label_smoothing: f64,
}

impl CrossEntropyLossConfig {
    /// Build the loss; [`Error::InvalidValue`] when `label_smoothing` is outside `[0, 1]`.
    pub fn init(&self) -> Result<CrossEntropyLoss> {
        if !(0.0..=1.0).contains(&self.label_smoothing) {
            return Err(Error::invalid(
                "label_smoothing of CrossEntropyLoss",
                "a value in [0, 1]",
                self.label_smoothing,
            ));
        }
        Ok(CrossEntropyLoss {
            reduction: self.reduction,
            label_smoothing: self.label_smoothing,
        })
    }
}

/// Cross-entropy between logits `[N, C]` and class indices `[N]`, matching
/// `torch.nn.functional.cross_entropy(input, target, reduction=..., label_smoothing=...)`
/// (without `weight` and `ignore_index`: every index must be a class in `0..C`).
///
/// Per sample, with `log p = log_softmax(x)` computed by log-sum-exp (finite for logits of
/// any size, ±1e4 included) and the smoothed target `q = (1-ε)·onehot(y) + ε/C`:
///
/// ```text
/// loss_n = -Σ_c q_c · log p_c = (1-ε)·(-log p_y) + ε·(-Σ_c log p_c / C)
/// ```
///
/// The gradient with respect to the logits is `softmax(x) - q`, divided by `N` for the mean.
///
/// ```
/// use burn::tensor::{Int, Tensor};
/// use dl_loss::CrossEntropyLossConfig;
/// let device = dl_core::BackendKind::Flex.device()?;
/// let logits = Tensor::<2>::from_floats([[0.0, 0.0], [0.0, 0.0]], &device);
/// let target = Tensor::<1, Int>::from_ints([0, 1], &device);
/// let loss = CrossEntropyLossConfig::new().init()?;
/// let value = loss.try_forward(logits.clone(), target.clone())?.into_scalar::<f32>();
/// assert!((value - 2f32.ln()).abs() < 1e-6); // two equal logits: -log(1/2)
/// let grad = loss.gradient(logits, target)?.try_into_vec_as::<f32>().unwrap();
/// assert_eq!(grad, vec![-0.25, 0.25, 0.25, -0.25]); // (softmax - onehot) / N
/// # Ok::<(), dl_core::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CrossEntropyLoss {
    reduction: Reduction,
    label_smoothing: f64,
}

impl CrossEntropyLoss {
    /// How the per-sample losses are reduced.
    pub fn reduction(&self) -> Reduction {
        self.reduction
    }

    /// The label smoothing `ε`.
    pub fn label_smoothing(&self) -> f64 {
        self.label_smoothing
    }

    /// [`Self::try_forward`], panicking with its error on invalid input.
    pub fn forward(&self, input: Tensor<2>, target: Tensor<1, Int>) -> Tensor<1> {
        self.try_forward(input, target)
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// The loss of logits `[N, C]` against class indices `[N]`: shape `[1]` when reduced,
    /// `[N]` for [`Reduction::None`].
    ///
    /// Errors: an empty input ([`Error::Empty`]), a target whose length is not `N`
    /// ([`Error::ShapeMismatch`]), an index outside `0..C` ([`Error::InvalidValue`]).
    pub fn try_forward(&self, input: Tensor<2>, target: Tensor<1, Int>) -> Result<Tensor<1>> {
        let [n, c] = input.dims();
        targets::class_targets([n, c], &target)?;
        let log_probs = log_softmax(input, 1);
        let eps = self.label_smoothing;
        let index = target.reshape([n, 1]);
        let per_sample = if eps == 0.0 {
            log_probs.gather(1, index).reshape([n]).neg()
        } else {
            let target_log_prob = log_probs.clone().gather(1, index).reshape([n]);
            let mean_log_prob = log_probs.sum_dim(1).reshape([n]).div_scalar(c as f64);
            // (1-ε)·(-log p_y) + ε·(-mean_c log p_c)
            target_log_prob
                .mul_scalar(eps - 1.0)
                .sub(mean_log_prob.mul_scalar(eps))
        };
        Ok(self.reduction.reduce(per_sample))
    }

    /// The gradient of [`forward`](Self::forward) with respect to the logits:
    /// `softmax(x) - ((1-ε)·onehot(y) + ε/C)`, times `1/N` for the mean. Same errors.
    pub fn gradient(&self, input: Tensor<2>, target: Tensor<1, Int>) -> Result<Tensor<2>> {
        let [n, c] = input.dims();
        targets::class_targets([n, c], &target)?;
        let eps = self.label_smoothing;
        let off = eps / c as f64;
        let target_distribution = Tensor::<2>::full([n, c], off, (&input.device(), input.dtype()))
            .mask_fill(targets::one_hot_mask(target, c), 1.0 - eps + off);
        let gradient = softmax(input, 1).sub(target_distribution);
        Ok(scaled(gradient, self.reduction.gradient_scale(n)))
    }
}

impl Loss<2> for CrossEntropyLoss {
    type Target = Tensor<1, Int>;

    fn try_forward(&self, input: Tensor<2>, target: Tensor<1, Int>) -> Result<Tensor<1>> {
        CrossEntropyLoss::try_forward(self, input, target)
    }

    fn gradient(&self, input: Tensor<2>, target: Tensor<1, Int>) -> Result<Tensor<2>> {
        CrossEntropyLoss::gradient(self, input, target)
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
    fn hand_derived_two_class_case() {
        // Logits [ln 3, 0] -> softmax [3/4, 1/4]. Target 0: -ln(3/4); target 1: -ln(1/4).
        let device = device();
        let logits = Tensor::<2>::from_floats([[3f32.ln(), 0.0], [3f32.ln(), 0.0]], &device);
        let target = Tensor::<1, Int>::from_ints([0, 1], &device);
        let per_sample = [-(0.75f64.ln()), -(0.25f64.ln())];
        let none = CrossEntropyLossConfig::new()
            .with_reduction(Reduction::None)
            .init()
            .unwrap();
        close(
            &values(none.try_forward(logits.clone(), target.clone()).unwrap()),
            &per_sample,
        );
        let mean = CrossEntropyLossConfig::new().init().unwrap();
        close(
            &values(mean.try_forward(logits.clone(), target.clone()).unwrap()),
            &[(per_sample[0] + per_sample[1]) / 2.0],
        );
        // softmax - onehot = [-1/4, 1/4] and [3/4, -3/4]; mean divides by N = 2.
        close(
            &values(mean.gradient(logits.clone(), target.clone()).unwrap()),
            &[-0.125, 0.125, 0.375, -0.375],
        );
        close(
            &values(none.gradient(logits, target).unwrap()),
            &[-0.25, 0.25, 0.75, -0.75],
        );
    }

    #[test]
    fn label_smoothing_follows_pytorch_formula() {
        // C = 2, ε = 0.2: q = 0.8·onehot + 0.1 = [0.9, 0.1] for target 0.
        // Logits [ln 3, 0]: log p = [ln 0.75, ln 0.25]; loss = -(0.9 ln 0.75 + 0.1 ln 0.25).
        let device = device();
        let logits = Tensor::<2>::from_floats([[3f32.ln(), 0.0]], &device);
        let target = Tensor::<1, Int>::from_ints([0], &device);
        let loss = CrossEntropyLossConfig::new()
            .with_label_smoothing(0.2)
            .with_reduction(Reduction::Sum)
            .init()
            .unwrap();
        let expected = -(0.9 * 0.75f64.ln() + 0.1 * 0.25f64.ln());
        close(
            &values(loss.try_forward(logits.clone(), target.clone()).unwrap()),
            &[expected],
        );
        // Gradient softmax - q = [0.75 - 0.9, 0.25 - 0.1].
        close(
            &values(loss.gradient(logits, target).unwrap()),
            &[-0.15, 0.15],
        );
    }

    #[test]
    fn huge_logits_give_finite_loss_and_gradient() {
        // Logits ±1e4: the target's logit is 2e4 below the row's maximum, so the loss is 2e4
        // (log-sum-exp of [1e4, -1e4] is 1e4 + ln(1 + e^-2e4) = 1e4 in f32).
        let device = device();
        let logits = Tensor::<2>::from_floats([[1e4, -1e4], [-1e4, 1e4]], &device);
        let target = Tensor::<1, Int>::from_ints([1, 1], &device);
        let loss = CrossEntropyLossConfig::new()
            .with_label_smoothing(0.1)
            .init()
            .unwrap();
        let value = values(loss.try_forward(logits.clone(), target.clone()).unwrap());
        assert!(value[0].is_finite(), "{value:?}");
        // q = 0.9·onehot + 0.05 = [0.05, 0.95]. Sample 0: log p = [0, -2e4], loss 0.95·2e4;
        // sample 1: log p = [-2e4, 0], loss 0.05·2e4. Mean (1.9e4 + 1e3) / 2 = 1e4.
        close(&value, &[1.0e4]);
        let grad = values(loss.gradient(logits, target).unwrap());
        assert!(grad.iter().all(|g| g.is_finite()), "{grad:?}");
        // softmax [1, 0] - q [0.05, 0.95], halved; softmax [0, 1] - q [0.05, 0.95], halved.
        close(&grad, &[0.475, -0.475, -0.025, 0.025]);
    }

    #[test]
    fn one_class_is_allowed() {
        // log_softmax of a single logit is 0: the loss is 0 and so is the gradient.
        let device = device();
        let logits = Tensor::<2>::from_floats([[5.0], [-2.0]], &device);
        let target = Tensor::<1, Int>::from_ints([0, 0], &device);
        let loss = CrossEntropyLossConfig::new().init().unwrap();
        close(
            &values(loss.try_forward(logits.clone(), target.clone()).unwrap()),
            &[0.0],
        );
        close(&values(loss.gradient(logits, target).unwrap()), &[0.0, 0.0]);
    }

    #[test]
    fn errors_name_the_problem() {
        let device = device();
        let loss = CrossEntropyLossConfig::new().init().unwrap();
        let logits = Tensor::<2>::zeros([3, 4], &device);

        let short = Tensor::<1, Int>::from_ints([0, 1], &device);
        let err = loss.try_forward(logits.clone(), short.clone()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "shape mismatch for loss target: expected [3] (the batch size of the loss input [3, 4]), got [2]"
        );
        assert!(loss.gradient(logits.clone(), short).is_err());

        let out_of_range = Tensor::<1, Int>::from_ints([0, 4, 1], &device);
        let err = loss
            .try_forward(logits.clone(), out_of_range.clone())
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid class index at position 1 of the loss target: expected a value in 0..4, got 4"
        );
        assert_eq!(loss.gradient(logits, out_of_range).unwrap_err(), err);

        let empty = Tensor::<2>::zeros([0, 4], &device);
        let none = Tensor::<1, Int>::zeros([0], &device);
        let err = loss.try_forward(empty, none).unwrap_err();
        assert!(matches!(err, Error::Empty { .. }), "{err}");

        for bad in [-0.1, 1.1, f64::NAN] {
            let err = CrossEntropyLossConfig::new()
                .with_label_smoothing(bad)
                .init()
                .unwrap_err();
            assert!(
                err.to_string().starts_with(
                    "invalid label_smoothing of CrossEntropyLoss: expected a value in [0, 1]"
                ),
                "{err}"
            );
        }
    }
}
