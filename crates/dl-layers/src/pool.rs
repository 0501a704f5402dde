//! ReLU then Burn's `MaxPool2d`, run as one dl-kernels pass where the device has it.

use burn::nn::PaddingConfig2d;
use burn::nn::pool::MaxPool2d;
use burn::tensor::Tensor;
use burn::tensor::activation::relu;

/// `pool.forward(relu(x))`, with the same result and gradient; on Flex (f32) a 2x2 pool with
/// stride 2, no padding, no dilation and floor mode (PyTorch's `MaxPool2d(2, 2)`, every stage
/// of the chapter's CNN) runs as [`dl_kernels::relu_max_pool2x2`]: one pass that writes no
/// full-size ReLU output and no `i64` argmax tensor. On LibTorch (feature `tch`) a pool with
/// symmetric padding runs as LibTorch's own `relu` and `max_pool2d`, differentiated by
/// LibTorch's autograd (`dl_kernels::torch_relu_max_pool2d`). Every other pool, and every
/// other backend, is Burn's `relu` and `MaxPool2d::forward`.
///
/// ```
/// use burn::nn::pool::MaxPool2dConfig;
/// use burn::tensor::{Distribution, Tensor};
///
/// let device = dl_core::BackendKind::Flex.device()?;
/// let pool = MaxPool2dConfig::new([2, 2]).with_strides([2, 2]).init();
/// let x = Tensor::<4>::random([2, 3, 7, 6], Distribution::Normal(0.0, 1.0), &device);
/// let ours = dl_layers::relu_max_pool2d(&pool, x.clone());
/// let burns = pool.forward(burn::tensor::activation::relu(x));
/// assert_eq!(ours.to_data(), burns.to_data());
/// # Ok::<(), dl_core::Error>(())
/// ```
pub fn relu_max_pool2d(pool: &MaxPool2d, x: Tensor<4>) -> Tensor<4> {
    let unpadded = matches!(
        pool.padding,
        PaddingConfig2d::Valid | PaddingConfig2d::Explicit(0, 0, 0, 0)
    );
    if pool.kernel_size == [2, 2]
        && pool.stride == [2, 2]
        && pool.dilation == [1, 1]
        && !pool.ceil_mode
        && unpadded
        && let Some(y) = dl_kernels::relu_max_pool2x2(&x)
    {
        return y;
    }
    #[cfg(feature = "tch")]
    if let Some(y) = torch(pool, &x) {
        return y;
    }
    pool.forward(relu(x))
}

/// LibTorch's own ReLU and max-pool, differentiated by LibTorch's autograd
/// (`dl_kernels::torch_relu_max_pool2d`), for a pool with symmetric padding.
#[cfg(feature = "tch")]
fn torch(pool: &MaxPool2d, x: &Tensor<4>) -> Option<Tensor<4>> {
    let padding = match pool.padding {
        PaddingConfig2d::Valid => [0, 0],
        PaddingConfig2d::Explicit(top, left, bottom, right) if top == bottom && left == right => {
            [top, left]
        }
        _ => return None,
    };
    if (0..2).any(|i| 2 * padding[i] > pool.kernel_size[i]) {
        // ATen refuses padding over half the window; Burn's path reports it in its own words.
        return None;
    }
    let options = dl_kernels::TorchMaxPoolOptions {
        kernel_size: pool.kernel_size,
        stride: pool.stride,
        padding,
        dilation: pool.dilation,
        ceil_mode: pool.ceil_mode,
    };
    dl_kernels::torch_relu_max_pool2d(x, options)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use burn::nn::pool::MaxPool2dConfig;
    use burn::tensor::Distribution;
    use dl_core::BackendKind;

    /// Pools the kernel does not cover take Burn's path and still give Burn's result.
    #[test]
    fn other_pools_are_burns() {
        let device = BackendKind::Flex.device().unwrap();
        let x = Tensor::<4>::random([1, 2, 7, 7], Distribution::Normal(0.0, 1.0), &device);
        for pool in [
            MaxPool2dConfig::new([3, 3]).with_strides([2, 2]).init(),
            MaxPool2dConfig::new([2, 2]).with_strides([1, 1]).init(),
            MaxPool2dConfig::new([2, 2])
                .with_strides([2, 2])
                .with_ceil_mode(true)
                .init(),
        ] {
            let ours = relu_max_pool2d(&pool, x.clone());
            assert_eq!(ours.to_data(), pool.forward(relu(x.clone())).to_data());
        }
    }
}
