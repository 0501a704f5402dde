//! The chapter's hinge loss for binary labels ±1.

use burn::config::Config;
use burn::tensor::Tensor;
use burn::tensor::activation::relu;
use dl_core::{Error, Result};

use crate::loss::{Loss, scaled};
use crate::reduction::Reduction;
use crate::targets;

/// Configuration of a [`HingeLoss`].
///
/// ```
/// let loss = dl_loss::HingeLossConfig::new().init()?;
/// assert_eq!(loss.margin(), 1.0);
/// assert!(dl_loss::HingeLossConfig::new().with_margin(-1.0).init().is_err());
/// # Ok::<(), dl_core::Error>(())
/// ```
#[derive(Config, Debug)]
pub struct HingeLossConfig {
    /// How the element losses are reduced. Default: mean (the chapter's).
    #[config(default = "Reduction::Mean")]
    pub reduction: Reduction,
    /// The margin, finite and non-negative. Default: 1.
    #[config(default = 1.0)]
    pub margin: f64,
}

impl HingeLossConfig {
    /// Build the loss; [`Error::InvalidValue`] when the margin is negative or not finite.
    pub fn init(&self) -> Result<HingeLoss> {
        if !(self.margin.is_finite() && self.margin >= 0.0) {
            return Err(Error::invalid(
                "margin of HingeLoss",
                "a finite value >= 0",
                self.margin,
            ));
        }
        Ok(HingeLoss {
            reduction: self.reduction,
            margin: self.margin,
        })
    }
}

/// The chapter's `HingeLoss`: scores `ŷ` against labels `y` ∈ {-1, +1} of the same shape
/// (any rank), element-wise
///
/// ```text
/// loss = mean( max(0, margin - y·ŷ) )
/// ```
///
/// PyTorch has no function of this form; the reference values are computed with it in
/// torch ops. [`gradient`](Self::gradient) is `-y · [margin - y·ŷ > 0] / numel` for the mean.
/// The chapter's `gradient` leaves out the `1/numel`; ours is the true gradient of the mean,
/// checked against autograd. At the kink (`margin - y·ŷ = 0`) the gradient is taken as 0.
///
/// Every label must be exactly -1 or +1: the labels are read back to the host once per call
/// to check this, and the first other value is reported as an error.
///
/// ```
/// use burn::tensor::Tensor;
/// let device = dl_core::BackendKind::Flex.device()?;
/// let scores = Tensor::<1>::from_floats([2.0, 0.5, 0.5], &device);
/// let labels = Tensor::<1>::from_floats([1.0, 1.0, -1.0], &device);
/// let loss = dl_loss::HingeLossConfig::new().init()?;
/// // max(0, 1 - 2) = 0, max(0, 1 - 0.5) = 0.5, max(0, 1 + 0.5) = 1.5: mean 2/3.
/// let value = loss.try_forward(scores.clone(), labels.clone())?.into_scalar::<f32>();
/// assert!((value - 2.0 / 3.0).abs() < 1e-6);
/// let grad = loss.gradient(scores, labels)?.try_into_vec_as::<f32>().unwrap();
/// assert_eq!(grad, vec![0.0, -1.0 / 3.0, 1.0 / 3.0]);
/// # Ok::<(), dl_core::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HingeLoss {
    reduction: Reduction,
    margin: f64,
}

impl HingeLoss {
    /// How the element losses are reduced.
    pub fn reduction(&self) -> Reduction {
        self.reduction
    }

    /// The margin.
    pub fn margin(&self) -> f64 {
        self.margin
    }

    /// [`Self::try_forward`], panicking with its error on invalid input.
    pub fn forward<const D: usize>(&self, input: Tensor<D>, target: Tensor<D>) -> Tensor<1> {
        self.try_forward(input, target)
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// The loss: shape `[1]` when reduced, `[numel]` (flattened) for [`Reduction::None`].
    ///
    /// Errors: an empty input ([`Error::Empty`]), labels of another shape
    /// ([`Error::ShapeMismatch`]), a label other than ±1 ([`Error::InvalidValue`]).
    pub fn try_forward<const D: usize>(
        &self,
        input: Tensor<D>,
        target: Tensor<D>,
    ) -> Result<Tensor<1>> {
        let count = self.check(&input, &target)?;
        let loss = relu(self.slack(input, target));
        Ok(self.reduction.reduce(loss.reshape([count])))
    }

    /// The gradient of [`forward`](Self::forward) with respect to the scores:
    /// `-y · [margin - y·ŷ > 0]`, divided by the element count for the mean. Same errors.
    pub fn gradient<const D: usize>(
        &self,
        input: Tensor<D>,
        target: Tensor<D>,
    ) -> Result<Tensor<D>> {
        let count = self.check(&input, &target)?;
        let inactive = self.slack(input, target.clone()).lower_equal_elem(0.0);
        let gradient = target.neg().mask_fill(inactive, 0.0);
        Ok(scaled(gradient, self.reduction.gradient_scale(count)))
    }

    fn check<const D: usize>(&self, input: &Tensor<D>, target: &Tensor<D>) -> Result<usize> {
        let count = targets::same_shape(&input.dims(), &target.dims())?;
        targets::plus_minus_one(target)?;
        Ok(count)
    }

    /// `margin - y·ŷ`
    fn slack<const D: usize>(&self, input: Tensor<D>, target: Tensor<D>) -> Tensor<D> {
        target.mul(input).neg().add_scalar(self.margin)
    }
}

impl<const D: usize> Loss<D> for HingeLoss {
    type Target = Tensor<D>;

    fn try_forward(&self, input: Tensor<D>, target: Tensor<D>) -> Result<Tensor<1>> {
        HingeLoss::try_forward(self, input, target)
    }

    fn gradient(&self, input: Tensor<D>, target: Tensor<D>) -> Result<Tensor<D>> {
        HingeLoss::gradient(self, input, target)
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
    fn hand_derived_with_margin_one_half() {
        // margin 0.5, y·ŷ = [0.2, 0.7, -1, 0.5]: slack [0.3, -0.2, 1.5, 0] -> [0.3, 0, 1.5, 0].
        let device = device();
        let scores = Tensor::<2>::from_floats([[0.2, -0.7], [1.0, 0.5]], &device);
        let labels = Tensor::<2>::from_floats([[1.0, -1.0], [-1.0, 1.0]], &device);
        let with = |reduction| {
            HingeLossConfig::new()
                .with_margin(0.5)
                .with_reduction(reduction)
                .init()
                .unwrap()
        };
        close(
            &values(
                with(Reduction::None)
                    .try_forward(scores.clone(), labels.clone())
                    .unwrap(),
            ),
            &[0.3, 0.0, 1.5, 0.0],
        );
        close(
            &values(
                with(Reduction::Mean)
                    .try_forward(scores.clone(), labels.clone())
                    .unwrap(),
            ),
            &[1.8 / 4.0],
        );
        // -y where slack > 0 (the kink at slack 0 counts as inactive): [-1, 0, 1, 0].
        close(
            &values(
                with(Reduction::Sum)
                    .gradient(scores.clone(), labels.clone())
                    .unwrap(),
            ),
            &[-1.0, 0.0, 1.0, 0.0],
        );
        close(
            &values(with(Reduction::Mean).gradient(scores, labels).unwrap()),
            &[-0.25, 0.0, 0.25, 0.0],
        );
    }

    #[test]
    fn bad_labels_are_reported_with_their_value() {
        let device = device();
        let loss = HingeLossConfig::new().init().unwrap();
        let scores = Tensor::<1>::zeros([3], &device);
        let labels = Tensor::<1>::from_floats([1.0, 0.0, 1.0], &device);
        let err = loss
            .try_forward(scores.clone(), labels.clone())
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid hinge label at index [1] of the loss target: expected -1 or +1, got 0"
        );
        assert_eq!(loss.gradient(scores, labels).unwrap_err(), err);
    }

    #[test]
    fn shape_empty_and_config_errors() {
        let device = device();
        let loss = HingeLossConfig::new().init().unwrap();
        let err = loss
            .try_forward(
                Tensor::<1>::zeros([3], &device),
                Tensor::<1>::ones([2], &device),
            )
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "shape mismatch for loss target: expected [3] (the shape of the loss input), got [2]"
        );
        let empty = Tensor::<1>::zeros([0], &device);
        let err = loss.try_forward(empty.clone(), empty).unwrap_err();
        assert!(matches!(err, Error::Empty { .. }), "{err}");
        for margin in [-0.5, f64::INFINITY, f64::NAN] {
            let err = HingeLossConfig::new()
                .with_margin(margin)
                .init()
                .unwrap_err();
            assert!(
                err.to_string()
                    .starts_with("invalid margin of HingeLoss: expected a finite value >= 0"),
                "{err}"
            );
        }
    }
}
