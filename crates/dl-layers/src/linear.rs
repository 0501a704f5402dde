//! Linear maps run through dl-kernels' linear kernel where the device has it.

use burn::module::Param;
use burn::nn::Linear;
use burn::tensor::Tensor;

/// `x W + b` over the last axis of `x`, with `weight` `[in, out]` (Burn's layout), as
/// `burn::tensor::module::linear`, with the same result to f32 rounding. On Flex (f32) with a
/// bias it runs through [`dl_kernels::linear`]: the bias and the product written in one pass,
/// and a backward pass of three products on host memory (docs/performance.md has the
/// measurements). On LibTorch without autodiff (inference) with a bias it is LibTorch's
/// `at::linear` (`dl_kernels::torch_linear`, feature `tch`). Without a bias, on other
/// backends, or when the shapes do not fit (Burn then reports the mismatch), it is Burn's
/// `linear`.
///
/// ```
/// use burn::tensor::Tensor;
///
/// let device = dl_core::BackendKind::Flex.device()?;
/// let x = Tensor::<2>::from_floats([[1.0, 2.0]], &device);
/// let w = Tensor::<2>::from_floats([[1.0, 0.0], [0.0, 1.0]], &device);
/// let b = Tensor::<1>::from_floats([0.5, -0.5], &device);
/// let y = dl_layers::linear(x, w, Some(b));
/// assert_eq!(y.into_data().try_to_vec::<f32>().unwrap(), [1.5, 1.5]);
/// # Ok::<(), dl_core::Error>(())
/// ```
pub fn linear<const D: usize>(
    x: Tensor<D>,
    weight: Tensor<2>,
    bias: Option<Tensor<1>>,
) -> Tensor<D> {
    if let Some(b) = &bias {
        let [k, n] = weight.dims();
        if D >= 1
            && x.dims()[D - 1] == k
            && b.dims() == [n]
            && let Some(y) = dl_kernels::linear(&x, &weight, b)
        {
            return y;
        }
        // Inference on LibTorch: one `addmm`, as PyTorch's `nn.Linear`, instead of a product
        // and a separate bias addition.
        #[cfg(feature = "tch")]
        if D >= 1
            && x.dims()[D - 1] == weight.dims()[0]
            && b.dims() == [weight.dims()[1]]
            && let Some(y) = dl_kernels::torch_linear(&x, &weight, b)
        {
            return y;
        }
    }
    burn::tensor::module::linear(x, weight, bias)
}

/// `layer.forward(x)` through [`linear`].
///
/// ```
/// use burn::nn::LinearConfig;
/// use burn::tensor::Tensor;
///
/// let device = dl_core::BackendKind::Flex.device()?;
/// let layer = LinearConfig::new(3, 2).init(&device);
/// let x = Tensor::<2>::ones([4, 3], &device);
/// let ours = dl_layers::linear_forward(&layer, x.clone());
/// dl_core::assert_tensor_close!(ours, layer.forward(x), 1e-6, 1e-6);
/// # Ok::<(), dl_core::Error>(())
/// ```
pub fn linear_forward<const D: usize>(layer: &Linear, x: Tensor<D>) -> Tensor<D> {
    linear(x, layer.weight.val(), layer.bias.as_ref().map(Param::val))
}
