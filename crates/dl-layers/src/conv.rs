//! Burn's `Conv2d` run through dl-kernels' convolution where the device has it.

use burn::nn::PaddingConfig2d;
use burn::nn::conv::Conv2d;
use burn::tensor::Tensor;

/// `conv.forward(x)`, with the same result to f32 rounding; on Flex (f32) a convolution with
/// bias, equal strides, equal explicit symmetric padding, no dilation and one group runs
/// through [`dl_kernels::conv2d`], which computes the output and both gradients as
/// per-example matrix products on the unfolded input instead of Flex's convolution and Burn's
/// generic backward rules (docs/performance.md has the measurements). On LibTorch (feature
/// `tch`) a convolution with bias and symmetric padding runs through
/// `dl_kernels::torch_conv2d`: LibTorch's own convolution, differentiated by LibTorch's
/// autograd. Every other case, and every other backend, is Burn's `Conv2d::forward`.
///
/// ```
/// use burn::nn::PaddingConfig2d;
/// use burn::nn::conv::Conv2dConfig;
/// use burn::tensor::Tensor;
///
/// let device = dl_core::BackendKind::Flex.device()?;
/// let conv = Conv2dConfig::new([1, 4], [3, 3])
///     .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
///     .init(&device);
/// let x = Tensor::<4>::ones([2, 1, 6, 6], &device);
/// let ours = dl_layers::conv2d_forward(&conv, x.clone());
/// let burns = conv.forward(x);
/// assert_eq!(ours.to_data(), burns.to_data());
/// # Ok::<(), dl_core::Error>(())
/// ```
pub fn conv2d_forward(conv: &Conv2d, x: Tensor<4>) -> Tensor<4> {
    if let Some(y) = fused(conv, &x) {
        return y;
    }
    #[cfg(feature = "tch")]
    if let Some(y) = torch(conv, &x) {
        return y;
    }
    conv.forward(x)
}

/// LibTorch's own convolution and backward (`dl_kernels::torch_conv2d`) for a convolution with
/// bias and symmetric explicit (or no) padding whose input has the weight's channels.
#[cfg(feature = "tch")]
fn torch(conv: &Conv2d, x: &Tensor<4>) -> Option<Tensor<4>> {
    let bias = conv.bias.as_ref()?;
    let padding = match conv.padding {
        PaddingConfig2d::Explicit(top, left, bottom, right) if top == bottom && left == right => {
            [top, left]
        }
        PaddingConfig2d::Valid => [0, 0],
        _ => return None,
    };
    let weight = conv.weight.val();
    if x.dims()[1] != weight.dims()[1] * conv.groups {
        // Burn's own path reports a mismatch in its own words.
        return None;
    }
    let options = dl_kernels::TorchConv2dOptions {
        stride: conv.stride,
        padding,
        dilation: conv.dilation,
        groups: conv.groups,
    };
    dl_kernels::torch_conv2d(x, &weight, &bias.val(), options)
}

fn fused(conv: &Conv2d, x: &Tensor<4>) -> Option<Tensor<4>> {
    let bias = conv.bias.as_ref()?;
    let [sh, sw] = conv.stride;
    let padding = match conv.padding {
        PaddingConfig2d::Explicit(top, left, bottom, right)
            if top == left && top == bottom && top == right =>
        {
            top
        }
        PaddingConfig2d::Valid => 0,
        _ => return None,
    };
    let [_, channels, height, width] = x.dims();
    let weight = conv.weight.val();
    let [_, in_channels, kh, kw] = weight.dims();
    let simple = sh == sw
        && conv.dilation == [1, 1]
        && conv.groups == 1
        && in_channels == channels
        && height + 2 * padding >= kh
        && width + 2 * padding >= kw;
    if !simple {
        // Burn's own path reports a mismatch in its own words.
        return None;
    }
    dl_kernels::conv2d(x, &weight, &bias.val(), sh, padding)
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::nn::conv::Conv2dConfig;
    use burn::tensor::{Device, Distribution};

    /// The routed path and Burn's give the same outputs and gradients for the layer shapes
    /// of the chapter's CNN, and layers the kernel does not cover fall back to Burn.
    #[test]
    fn same_outputs_and_gradients_as_burns_conv2d() {
        let device = Device::flex().autodiff();
        for (config, size) in [
            (
                Conv2dConfig::new([3, 8], [3, 3])
                    .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1)),
                12,
            ),
            (Conv2dConfig::new([2, 4], [3, 3]).with_stride([2, 2]), 9),
            (Conv2dConfig::new([2, 4], [3, 3]).with_bias(false), 7),
            (Conv2dConfig::new([2, 4], [3, 3]).with_dilation([2, 2]), 9),
        ] {
            let conv = config.init(&device);
            let x = Tensor::<4>::random(
                [2, conv.weight.dims()[1], size, size],
                Distribution::Default,
                &device,
            )
            .require_grad();
            let ours = conv2d_forward(&conv, x.clone());
            let burns = conv.forward(x.clone());
            ours.to_data()
                .assert_approx_eq::<f32>(&burns.to_data(), burn::tensor::Tolerance::default());
            let g1 = (ours.clone() * ours).sum().backward();
            let g2 = (burns.clone() * burns).sum().backward();
            let dw1 = conv.weight.grad(&g1).unwrap();
            let dw2 = conv.weight.grad(&g2).unwrap();
            dw1.to_data().assert_approx_eq::<f32>(
                &dw2.to_data(),
                burn::tensor::Tolerance::rel_abs(1e-5, 1e-5),
            );
            let dx1 = x.grad(&g1).unwrap();
            let dx2 = x.grad(&g2).unwrap();
            dx1.to_data().assert_approx_eq::<f32>(
                &dx2.to_data(),
                burn::tensor::Tolerance::rel_abs(1e-5, 1e-5),
            );
        }
    }
}
