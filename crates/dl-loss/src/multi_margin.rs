//! Multi-class margin loss, as `torch.nn.MultiMarginLoss`.

use burn::config::Config;
use burn::tensor::activation::relu;
use burn::tensor::{Int, Tensor};
use dl_core::{Error, Result};

use crate::loss::{Loss, scaled};
use crate::reduction::Reduction;
use crate::targets;

/// Configuration of a [`MultiMarginLoss`], with PyTorch's defaults.
///
/// ```
/// let loss = dl_loss::MultiMarginLossConfig::new().with_p(2).init()?;
/// assert_eq!((loss.p(), loss.margin()), (2, 1.0));
/// assert!(dl_loss::MultiMarginLossConfig::new().with_p(3).init().is_err());
/// # Ok::<(), dl_core::Error>(())
/// ```
#[derive(Config, Debug)]
pub struct MultiMarginLossConfig {
    /// How the per-sample losses are reduced. Default: mean.
    #[config(default = "Reduction::Mean")]
    pub reduction: Reduction,
    /// The exponent `p`, 1 or 2. Default: 1.
    #[config(default = 1)]
    pub p: u32,
    /// The margin, finite and non-negative. Default: 1.
    #[config(default = 1.0)]
    pub margin: f64,
}

impl MultiMarginLossConfig {
    /// Build the loss; [`Error::InvalidValue`] when `p` is not 1 or 2, or the margin is
    /// negative or not finite.
    pub fn init(&self) -> Result<MultiMarginLoss> {
        if self.p != 1 && self.p != 2 {
            return Err(Error::invalid("p of MultiMarginLoss", "1 or 2", self.p));
        }
        if !(self.margin.is_finite() && self.margin >= 0.0) {
            return Err(Error::invalid(
                "margin of MultiMarginLoss",
                "a finite value >= 0",
                self.margin,
            ));
        }
        Ok(MultiMarginLoss {
            reduction: self.reduction,
            p: self.p,
            margin: self.margin,
        })
    }
}

/// Multi-class margin (hinge) loss of logits `x` `[N, C]` against class indices `y` `[N]`,
/// matching `torch.nn.MultiMarginLoss(p, margin, reduction=...)` (without `weight`):
///
/// ```text
/// loss_n = Σ_{j ≠ y_n} max(0, margin - x_{n,y_n} + x_{n,j})^p / C
/// ```
///
/// With `h_j = max(0, margin - x_y + x_j)`, the gradient is `p·h_j^(p-1)·[h_j > 0] / C` for
/// `j ≠ y` and minus the sum of those at `j = y` (over `N` for the mean), as PyTorch's
/// backward computes it.
///
/// ```
/// use burn::tensor::{Int, Tensor};
/// let device = dl_core::BackendKind::Flex.device()?;
/// let x = Tensor::<2>::from_floats([[1.0, 0.5, -2.0]], &device);
/// let y = Tensor::<1, Int>::from_ints([0], &device);
/// let loss = dl_loss::MultiMarginLossConfig::new().init()?;
/// // j = 1: max(0, 1 - 1 + 0.5) = 0.5; j = 2: max(0, 1 - 1 - 2) = 0; loss 0.5 / 3.
/// let value = loss.try_forward(x.clone(), y.clone())?.into_scalar::<f32>();
/// assert!((value - 0.5 / 3.0).abs() < 1e-6);
/// let grad = loss.gradient(x, y)?.try_into_vec_as::<f32>().unwrap();
/// assert_eq!(grad, vec![-1.0 / 3.0, 1.0 / 3.0, 0.0]);
/// # Ok::<(), dl_core::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MultiMarginLoss {
    reduction: Reduction,
    p: u32,
    margin: f64,
}

impl MultiMarginLoss {
    /// How the per-sample losses are reduced.
    pub fn reduction(&self) -> Reduction {
        self.reduction
    }

    /// The exponent `p` (1 or 2).
    pub fn p(&self) -> u32 {
        self.p
    }

    /// The margin.
    pub fn margin(&self) -> f64 {
        self.margin
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
        let own_class = targets::one_hot_mask(target.clone(), c);
        let hinge = relu(self.slack(input, target)).mask_fill(own_class, 0.0);
        let powered = if self.p == 2 { hinge.square() } else { hinge };
        let per_sample = powered.sum_dim(1).reshape([n]).div_scalar(c as f64);
        Ok(self.reduction.reduce(per_sample))
    }

    /// The gradient of [`forward`](Self::forward) with respect to the logits. Same errors.
    pub fn gradient(&self, input: Tensor<2>, target: Tensor<1, Int>) -> Result<Tensor<2>> {
        let [n, c] = input.dims();
        targets::class_targets([n, c], &target)?;
        let own_class = targets::one_hot_mask(target.clone(), c);
        let slack = self.slack(input, target);
        // d/dx_j of h_j^p for j ≠ y: 1·[h_j > 0] for p = 1, 2·h_j for p = 2.
        let others = if self.p == 2 {
            relu(slack).mul_scalar(2.0)
        } else {
            let active = slack.clone().greater_elem(0.0);
            slack.zeros_like().mask_fill(active, 1.0)
        }
        .mask_fill(own_class.clone(), 0.0);
        // x_y enters every h_j with sign -1.
        let own = others.clone().sum_dim(1).neg().expand([n, c]);
        let gradient = others.mask_where(own_class, own);
        let scale = self.reduction.gradient_scale(n) / c as f64;
        Ok(scaled(gradient, scale))
    }

    /// `margin - x_y + x_j` for every class `j`, `[N, C]`.
    fn slack(&self, input: Tensor<2>, target: Tensor<1, Int>) -> Tensor<2> {
        let [n, _] = input.dims();
        let own_logit = input.clone().gather(1, target.reshape([n, 1]));
        input.sub(own_logit).add_scalar(self.margin)
    }
}

impl Loss<2> for MultiMarginLoss {
    type Target = Tensor<1, Int>;

    fn try_forward(&self, input: Tensor<2>, target: Tensor<1, Int>) -> Result<Tensor<1>> {
        MultiMarginLoss::try_forward(self, input, target)
    }

    fn gradient(&self, input: Tensor<2>, target: Tensor<1, Int>) -> Result<Tensor<2>> {
        MultiMarginLoss::gradient(self, input, target)
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

    fn loss(p: u32, margin: f64, reduction: Reduction) -> MultiMarginLoss {
        MultiMarginLossConfig::new()
            .with_p(p)
            .with_margin(margin)
            .with_reduction(reduction)
            .init()
            .unwrap()
    }

    #[test]
    fn hand_derived_p1_and_p2() {
        // Row 0: x = [1, 0.5, -2], y = 0, margin 1: h = [-, 0.5, 0] (slack -2 for j = 2).
        // Row 1: x = [0, 0, 3], y = 1: h = [1, -, 4].
        let device = device();
        let x = Tensor::<2>::from_floats([[1.0, 0.5, -2.0], [0.0, 0.0, 3.0]], &device);
        let y = Tensor::<1, Int>::from_ints([0, 1], &device);
        // p = 1: per sample [0.5 / 3, 5 / 3].
        close(
            &values(
                loss(1, 1.0, Reduction::None)
                    .try_forward(x.clone(), y.clone())
                    .unwrap(),
            ),
            &[0.5 / 3.0, 5.0 / 3.0],
        );
        // Gradient of the sum: row 0 [-1, 1, 0] / 3; row 1 [1, -2, 1] / 3.
        close(
            &values(
                loss(1, 1.0, Reduction::Sum)
                    .gradient(x.clone(), y.clone())
                    .unwrap(),
            ),
            &[-1.0 / 3.0, 1.0 / 3.0, 0.0, 1.0 / 3.0, -2.0 / 3.0, 1.0 / 3.0],
        );
        // p = 2: per sample [0.25 / 3, 17 / 3]; mean (0.25 + 17) / 6.
        close(
            &values(
                loss(2, 1.0, Reduction::Mean)
                    .try_forward(x.clone(), y.clone())
                    .unwrap(),
            ),
            &[17.25 / 6.0],
        );
        // Gradient 2h / C, own class minus their sum, halved by the mean:
        // row 0 [-1, 1, 0] / 3 / 2; row 1 [2, -10, 8] / 3 / 2.
        close(
            &values(loss(2, 1.0, Reduction::Mean).gradient(x, y).unwrap()),
            &[
                -1.0 / 6.0,
                1.0 / 6.0,
                0.0,
                2.0 / 6.0,
                -10.0 / 6.0,
                8.0 / 6.0,
            ],
        );
    }

    #[test]
    fn margin_changes_which_classes_are_active() {
        // margin 0.7, x = [1, 0.5, 0.2], y = 0: slack [-, 0.2, -0.1]: only class 1 active.
        let device = device();
        let x = Tensor::<2>::from_floats([[1.0, 0.5, 0.2]], &device);
        let y = Tensor::<1, Int>::from_ints([0], &device);
        let l = loss(1, 0.7, Reduction::Sum);
        close(
            &values(l.try_forward(x.clone(), y.clone()).unwrap()),
            &[0.2 / 3.0],
        );
        close(
            &values(l.gradient(x, y).unwrap()),
            &[-1.0 / 3.0, 1.0 / 3.0, 0.0],
        );
    }

    #[test]
    fn errors_name_the_problem() {
        let device = device();
        let l = loss(1, 1.0, Reduction::Mean);
        let x = Tensor::<2>::zeros([2, 3], &device);
        let err = l
            .try_forward(x.clone(), Tensor::<1, Int>::from_ints([0, 3], &device))
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid class index at position 1 of the loss target: expected a value in 0..3, got 3"
        );
        let err = l
            .gradient(x, Tensor::<1, Int>::from_ints([0], &device))
            .unwrap_err();
        assert!(matches!(err, Error::ShapeMismatch { .. }), "{err}");
        let err = l
            .try_forward(
                Tensor::<2>::zeros([0, 3], &device),
                Tensor::<1, Int>::zeros([0], &device),
            )
            .unwrap_err();
        assert!(matches!(err, Error::Empty { .. }), "{err}");
        let err = MultiMarginLossConfig::new().with_p(0).init().unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid p of MultiMarginLoss: expected 1 or 2, got 0"
        );
        let err = MultiMarginLossConfig::new()
            .with_margin(-1.0)
            .init()
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid margin of MultiMarginLoss: expected a finite value >= 0, got -1"
        );
    }
}
