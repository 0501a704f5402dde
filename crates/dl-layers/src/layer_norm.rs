//! Burn's `LayerNorm` run through dl-kernels' layer normalisation where the device has it.

use burn::nn::LayerNorm;
use burn::tensor::Tensor;

/// `norm.forward(x)` for a norm built with `epsilon`, with the same result to f32 rounding; on
/// Flex (f32) a norm with a bias runs through [`dl_kernels::layer_norm_last`], one pass
/// forward and one backward instead of Burn's nine-operation decomposition under autodiff
/// (docs/performance.md has the measurements). Every other case, and every other backend, is
/// Burn's `LayerNorm::forward`.
///
/// Burn keeps a `LayerNorm`'s epsilon private, so the caller passes the one it built the norm
/// with.
///
/// ```
/// use burn::nn::LayerNormConfig;
/// use burn::tensor::{Distribution, Tensor};
///
/// let device = dl_core::BackendKind::Flex.device()?;
/// let norm = LayerNormConfig::new(8).with_epsilon(1e-5).init(&device);
/// let x = Tensor::<3>::random([2, 3, 8], Distribution::Normal(0.0, 1.0), &device);
/// let ours = dl_layers::layer_norm_forward(&norm, 1e-5, x.clone());
/// let burns = norm.forward(x);
/// let diff: f32 = (ours - burns).abs().max().into_scalar();
/// assert!(diff < 1e-5);
/// # Ok::<(), dl_core::Error>(())
/// ```
pub fn layer_norm_forward<const D: usize>(
    norm: &LayerNorm,
    epsilon: f64,
    x: Tensor<D>,
) -> Tensor<D> {
    if let Some(beta) = &norm.beta
        && let Some(y) = dl_kernels::layer_norm_last(&x, &norm.gamma.val(), &beta.val(), epsilon)
    {
        return y;
    }
    norm.forward(x)
}
