//! The [`Loss`] trait that every loss of this crate implements.

use burn::tensor::Tensor;
use dl_core::Result;

use crate::Reduction;

/// A loss of a rank-`D` input against a target, with its analytic gradient.
///
/// Each loss also has inherent `try_forward` and `gradient` methods of the same meaning, so the
/// trait is only needed to write code generic over losses (a training loop, a test).
///
/// ```
/// use burn::tensor::Tensor;
/// use dl_loss::{Loss, MseLossConfig};
///
/// fn loss_and_gradient<L: Loss<2, Target = Tensor<2>>>(
///     loss: &L,
///     input: Tensor<2>,
///     target: Tensor<2>,
/// ) -> dl_core::Result<(f32, Tensor<2>)> {
///     let value = loss.try_forward(input.clone(), target.clone())?.into_scalar::<f32>();
///     Ok((value, loss.gradient(input, target)?))
/// }
///
/// let device = dl_core::BackendKind::Flex.device()?;
/// let x = Tensor::<2>::from_floats([[1.0, 3.0]], &device);
/// let y = Tensor::<2>::from_floats([[0.0, 1.0]], &device);
/// let (value, grad) = loss_and_gradient(&MseLossConfig::new().init()?, x, y)?;
/// assert_eq!(value, 2.5); // ((1-0)^2 + (3-1)^2) / 2
/// assert_eq!(grad.try_into_vec_as::<f32>().unwrap(), vec![1.0, 2.0]); // 2(x-y)/2
/// # Ok::<(), dl_core::Error>(())
/// ```
pub trait Loss<const D: usize> {
    /// What the targets are: class indices `Tensor<1, Int>` or a tensor shaped like the input.
    type Target;

    /// The loss: shape `[1]` when reduced, else one value per sample or per element.
    fn try_forward(&self, input: Tensor<D>, target: Self::Target) -> Result<Tensor<1>>;

    /// The analytic gradient of the (reduced) loss with respect to `input`, computed with
    /// plain tensor operations (no autodiff needed); for [`Reduction::None`] the gradient of
    /// the sum of the values.
    fn gradient(&self, input: Tensor<D>, target: Self::Target) -> Result<Tensor<D>>;

    /// How the values are reduced.
    fn reduction(&self) -> Reduction;
}

/// Multiply a gradient by a reduction's scale, skipping the multiplication when it is 1.
pub(crate) fn scaled<const D: usize>(gradient: Tensor<D>, scale: f64) -> Tensor<D> {
    if scale == 1.0 {
        gradient
    } else {
        gradient.mul_scalar(scale)
    }
}
