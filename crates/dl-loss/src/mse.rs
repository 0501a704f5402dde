//! Mean squared error, as `torch.nn.functional.mse_loss`.

use burn::config::Config;
use burn::tensor::Tensor;
use dl_core::Result;

use crate::loss::{Loss, scaled};
use crate::reduction::Reduction;
use crate::targets;

/// Configuration of an [`MseLoss`], with PyTorch's defaults.
///
/// ```
/// let loss = dl_loss::MseLossConfig::new().with_reduction(dl_loss::Reduction::Sum).init()?;
/// assert_eq!(loss.reduction(), dl_loss::Reduction::Sum);
/// # Ok::<(), dl_core::Error>(())
/// ```
#[derive(Config, Debug)]
pub struct MseLossConfig {
    /// How the squared errors are reduced. Default: mean.
    #[config(default = "Reduction::Mean")]
    pub reduction: Reduction,
}

impl MseLossConfig {
    /// Build the loss. Every configuration is valid; the `Result` keeps the convention
    /// of every `init` in dl-rs.
    pub fn init(&self) -> Result<MseLoss> {
        Ok(MseLoss {
            reduction: self.reduction,
        })
    }
}

/// Squared error `(x - y)²` element-wise over inputs of any rank, matching
/// `torch.nn.functional.mse_loss(input, target, reduction=...)` (the shapes must be equal:
/// no broadcasting).
///
/// The mean is over every element; [`Reduction::None`] gives every element's squared error,
/// flattened in row-major order. The gradient is `2(x - y)`, divided by the element count
/// for the mean.
///
/// ```
/// use burn::tensor::Tensor;
/// let device = dl_core::BackendKind::Flex.device()?;
/// let x = Tensor::<3>::from_floats([[[1.0, 2.0]], [[3.0, 4.0]]], &device);
/// let y = Tensor::<3>::zeros([2, 1, 2], &device);
/// let loss = dl_loss::MseLossConfig::new().init()?;
/// assert_eq!(loss.try_forward(x.clone(), y.clone())?.into_scalar::<f32>(), 7.5); // 30 / 4
/// let grad = loss.gradient(x, y)?; // 2x / 4
/// assert_eq!(grad.try_into_vec_as::<f32>().unwrap(), vec![0.5, 1.0, 1.5, 2.0]);
/// # Ok::<(), dl_core::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MseLoss {
    reduction: Reduction,
}

impl MseLoss {
    /// How the squared errors are reduced.
    pub fn reduction(&self) -> Reduction {
        self.reduction
    }

    /// [`Self::try_forward`], panicking with its error on invalid input.
    pub fn forward<const D: usize>(&self, input: Tensor<D>, target: Tensor<D>) -> Tensor<1> {
        self.try_forward(input, target)
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// The loss: shape `[1]` when reduced, `[numel]` for [`Reduction::None`].
    ///
    /// Errors: an empty input ([`dl_core::Error::Empty`]), a target of another shape
    /// ([`dl_core::Error::ShapeMismatch`]).
    pub fn try_forward<const D: usize>(
        &self,
        input: Tensor<D>,
        target: Tensor<D>,
    ) -> Result<Tensor<1>> {
        let count = targets::same_shape(&input.dims(), &target.dims())?;
        let squared = input.sub(target).square().reshape([count]);
        Ok(self.reduction.reduce(squared))
    }

    /// The gradient of [`forward`](Self::forward) with respect to the input: `2(x - y)`,
    /// divided by the element count for the mean. Same errors.
    pub fn gradient<const D: usize>(
        &self,
        input: Tensor<D>,
        target: Tensor<D>,
    ) -> Result<Tensor<D>> {
        let count = targets::same_shape(&input.dims(), &target.dims())?;
        let scale = 2.0 * self.reduction.gradient_scale(count);
        Ok(scaled(input.sub(target), scale))
    }
}

impl<const D: usize> Loss<D> for MseLoss {
    type Target = Tensor<D>;

    fn try_forward(&self, input: Tensor<D>, target: Tensor<D>) -> Result<Tensor<1>> {
        MseLoss::try_forward(self, input, target)
    }

    fn gradient(&self, input: Tensor<D>, target: Tensor<D>) -> Result<Tensor<D>> {
        MseLoss::gradient(self, input, target)
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
    fn hand_derived_values_for_every_reduction() {
        // x - y = [1, -2, 0.5]: squares [1, 4, 0.25], sum 5.25, mean 1.75.
        let device = device();
        let x = Tensor::<1>::from_floats([2.0, -1.0, 0.5], &device);
        let y = Tensor::<1>::from_floats([1.0, 1.0, 0.0], &device);
        let with = |reduction| {
            MseLossConfig::new()
                .with_reduction(reduction)
                .init()
                .unwrap()
        };
        let forward = |r| values(with(r).try_forward(x.clone(), y.clone()).unwrap());
        let gradient = |r| values(with(r).gradient(x.clone(), y.clone()).unwrap());
        close(&forward(Reduction::Mean), &[1.75]);
        close(&forward(Reduction::Sum), &[5.25]);
        close(&forward(Reduction::None), &[1.0, 4.0, 0.25]);
        // 2(x - y) = [2, -4, 1], over 3 for the mean.
        close(
            &gradient(Reduction::Mean),
            &[2.0 / 3.0, -4.0 / 3.0, 1.0 / 3.0],
        );
        close(&gradient(Reduction::Sum), &[2.0, -4.0, 1.0]);
        close(&gradient(Reduction::None), &[2.0, -4.0, 1.0]);
    }

    #[test]
    fn none_flattens_in_row_major_order() {
        let device = device();
        let x = Tensor::<2>::from_floats([[1.0, 2.0], [3.0, 4.0]], &device);
        let loss = MseLossConfig::new()
            .with_reduction(Reduction::None)
            .init()
            .unwrap();
        let out = loss
            .try_forward(x.clone(), x.zeros_like().add_scalar(1.0))
            .unwrap();
        close(&values(out), &[0.0, 1.0, 4.0, 9.0]);
    }

    #[test]
    fn errors_name_the_problem() {
        let device = device();
        let loss = MseLossConfig::new().init().unwrap();
        let x = Tensor::<2>::zeros([2, 3], &device);
        let y = Tensor::<2>::zeros([3, 2], &device);
        let err = loss.try_forward(x.clone(), y.clone()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "shape mismatch for loss target: expected [2, 3] (the shape of the loss input), got [3, 2]"
        );
        assert_eq!(loss.gradient(x, y).unwrap_err(), err);
        let empty = Tensor::<2>::zeros([2, 0], &device);
        let err = loss.try_forward(empty.clone(), empty).unwrap_err();
        assert!(matches!(err, Error::Empty { .. }), "{err}");
    }

    #[test]
    fn forward_is_try_forward_or_a_panic_with_its_error() {
        let device = device();
        let loss = MseLossConfig::new().init().unwrap();
        let x = Tensor::<2>::from_floats([[1.0, 2.0]], &device);
        let y = Tensor::<2>::zeros([1, 2], &device);
        close(&values(loss.forward(x.clone(), y.clone())), &[2.5]);
        let wrong = Tensor::<2>::zeros([2, 1], &device);
        let err = loss.try_forward(x.clone(), wrong.clone()).unwrap_err();
        let panic = std::panic::catch_unwind(|| loss.forward(x, wrong)).unwrap_err();
        assert_eq!(panic.downcast_ref::<String>(), Some(&err.to_string()));
    }
}
