//! Convolution → optional batch norm → activation → optional max pooling.

use burn::config::Config;
use burn::module::Module;
use burn::nn::PaddingConfig2d;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::pool::{MaxPool2d, MaxPool2dConfig};
use burn::tensor::{Device, Tensor};
use dl_core::{Error, Result, validate};

use crate::activation::Activation;
use crate::batch_norm::{BatchNorm2d, BatchNorm2dConfig};

/// Configuration of a [`ConvBlock`]. Sizes are `[height, width]`.
#[derive(Config, Debug)]
pub struct ConvBlockConfig {
    /// Input channels.
    pub in_channels: usize,
    /// Output channels.
    pub out_channels: usize,
    /// Convolution kernel size.
    pub kernel_size: [usize; 2],
    /// Convolution stride (PyTorch: 1).
    #[config(default = "[1, 1]")]
    pub stride: [usize; 2],
    /// Zero padding added on both sides (PyTorch: 0).
    #[config(default = "[0, 0]")]
    pub padding: [usize; 2],
    /// Whether the convolution has a bias (PyTorch: yes).
    #[config(default = true)]
    pub bias: bool,
    /// Whether a `BatchNorm2d` follows the convolution.
    #[config(default = false)]
    pub batch_norm: bool,
    /// Batch norm epsilon (PyTorch: 1e-5).
    #[config(default = 1e-5)]
    pub bn_eps: f64,
    /// Batch norm momentum (PyTorch: 0.1).
    #[config(default = 0.1)]
    pub bn_momentum: f64,
    /// Activation after the (normalised) convolution (the chapter's CNN: ReLU).
    #[config(default = "Activation::Relu")]
    pub activation: Activation,
    /// Max pooling kernel; `None` for no pooling.
    pub pool_kernel: Option<[usize; 2]>,
    /// Max pooling stride; `None` means the kernel size (PyTorch's default).
    pub pool_stride: Option<[usize; 2]>,
}

/// `pool(activation(bn(conv(x))))`, the building block of the chapter's CNN
/// (`F.relu(self.conv1(x))` then `self.pool(x)`), with an optional `BatchNorm2d`.
///
/// # PyTorch keys (for a standalone block)
///
/// | key | shape | here |
/// |---|---|---|
/// | `conv.weight` | `[out, in, kh, kw]` | `conv.weight`, same layout |
/// | `conv.bias` | `[out]` | `conv.bias` (absent when `bias` is false) |
/// | `bn.weight`, `bn.bias` | `[out]` | `bn.weight`, `bn.bias` ([`BatchNorm2d`]) |
/// | `bn.running_mean`, `bn.running_var` | `[out]` | `bn.running_mean`, `bn.running_var` (buffers) |
/// | `bn.num_batches_tracked` | `[]` | not stored |
///
/// The activation and the pooling have no parameters.
///
/// # Initialisation
///
/// PyTorch's `nn.Conv2d` default, `kaiming_uniform_(a=√5)`: weight and bias from
/// `U(−1/√fan_in, 1/√fan_in)` with `fan_in = in · kh · kw` (Burn's default `Conv2d` initialiser
/// is the same); batch norm γ = 1, β = 0.
///
/// ```
/// use burn::tensor::Tensor;
/// use dl_layers::ConvBlockConfig;
///
/// let device = dl_core::BackendKind::Flex.device()?;
/// // The chapter's first CNN stage: Conv2d(1, 32, 3, padding=1) → ReLU → MaxPool2d(2, 2).
/// let block = ConvBlockConfig::new(1, 32, [3, 3])
///     .with_padding([1, 1])
///     .with_pool_kernel(Some([2, 2]))
///     .init(&device)?;
/// let y = block.forward(Tensor::<4>::zeros([8, 1, 28, 28], &device));
/// assert_eq!(y.dims(), [8, 32, 14, 14]);
/// # Ok::<(), dl_core::Error>(())
/// ```
#[derive(Module, Debug)]
pub struct ConvBlock {
    /// The convolution (Burn's `Conv2d`, PyTorch's weight layout).
    pub conv: Conv2d,
    /// Optional batch normalisation.
    pub bn: Option<BatchNorm2d>,
    /// The activation.
    #[module(skip)]
    pub activation: Activation,
    /// Optional max pooling.
    pub pool: Option<MaxPool2d>,
}

impl ConvBlockConfig {
    /// Build the block with PyTorch's initialisation.
    ///
    /// Fails on zero channels, kernel sizes or strides, and on invalid batch norm settings.
    pub fn init(&self, device: &Device) -> Result<ConvBlock> {
        validate::positive("conv block in_channels", self.in_channels)?;
        validate::positive("conv block out_channels", self.out_channels)?;
        for (what, pair) in [
            ("conv block kernel_size", self.kernel_size),
            ("conv block stride", self.stride),
        ] {
            validate::positive(what, pair[0].min(pair[1]))?;
        }
        let [ph, pw] = self.padding;
        let conv = Conv2dConfig::new([self.in_channels, self.out_channels], self.kernel_size)
            .with_stride(self.stride)
            .with_padding(PaddingConfig2d::Explicit(ph, pw, ph, pw))
            .with_bias(self.bias)
            .init(device);
        let bn = if self.batch_norm {
            Some(
                BatchNorm2dConfig::new(self.out_channels)
                    .with_eps(self.bn_eps)
                    .with_momentum(self.bn_momentum)
                    .init(device)?,
            )
        } else {
            None
        };
        let pool = match self.pool_kernel {
            Some(kernel) => {
                let stride = self.pool_stride.unwrap_or(kernel);
                validate::positive("conv block pool_kernel", kernel[0].min(kernel[1]))?;
                validate::positive("conv block pool_stride", stride[0].min(stride[1]))?;
                Some(MaxPool2dConfig::new(kernel).with_strides(stride).init())
            }
            None => {
                if self.pool_stride.is_some() {
                    return Err(Error::invalid(
                        "conv block pool_stride",
                        "no stride without a pool_kernel",
                        format!("{:?}", self.pool_stride),
                    ));
                }
                None
            }
        };
        Ok(ConvBlock {
            conv,
            bn,
            activation: self.activation,
            pool,
        })
    }
}

impl ConvBlock {
    /// Number of input channels.
    pub fn in_channels(&self) -> usize {
        self.conv.weight.shape().dims::<4>()[1] * self.conv.groups
    }

    /// Number of output channels.
    pub fn out_channels(&self) -> usize {
        self.conv.weight.shape().dims::<4>()[0]
    }

    /// Buffer elements (batch norm running statistics) included in Burn's `num_params` but
    /// not in PyTorch's parameter count.
    pub fn buffer_count(&self) -> usize {
        self.bn.as_ref().map_or(0, BatchNorm2d::buffer_count)
    }

    /// The output size `[height, width]` for an input of `[height, width]`, or `None` when the
    /// input is too small for the kernel (after padding) or the pooling window.
    pub fn output_size(&self, input: [usize; 2]) -> Option<[usize; 2]> {
        let [kh, kw] = self.conv.kernel_size;
        let (pad_h, pad_w) = match self.conv.padding {
            PaddingConfig2d::Explicit(top, left, bottom, right) => (top + bottom, left + right),
            _ => (0, 0),
        };
        let conv = |size: usize, pad: usize, k: usize, s: usize| {
            (size + pad).checked_sub(k).map(|d| d / s + 1)
        };
        let mut h = conv(input[0], pad_h, kh, self.conv.stride[0])?;
        let mut w = conv(input[1], pad_w, kw, self.conv.stride[1])?;
        if let Some(pool) = &self.pool {
            h = conv(h, 0, pool.kernel_size[0], pool.stride[0])?;
            w = conv(w, 0, pool.kernel_size[1], pool.stride[1])?;
        }
        Some([h, w])
    }

    /// `[N, in, H, W]` → `[N, out, H', W']`.
    ///
    /// # Panics
    ///
    /// On the inputs [`ConvBlock::try_forward`] rejects.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        validate::or_panic(self.try_forward(x))
    }

    /// [`ConvBlock::forward`], failing when the channel axis is not `in_channels`, when the
    /// image is smaller than the kernel or the pooling window, or (batch norm in training) when a
    /// channel has a single value.
    pub fn try_forward(&self, x: Tensor<4>) -> Result<Tensor<4>> {
        let dims = x.dims();
        let cin = self.in_channels();
        if dims[1] != cin {
            return Err(Error::shape_mismatch(
                "conv block input",
                &[dims[0], cin, dims[2], dims[3]],
                &dims,
            ));
        }
        if self
            .output_size([dims[2], dims[3]])
            .is_none_or(|[h, w]| h == 0 || w == 0)
        {
            return Err(Error::invalid(
                "conv block input size",
                "an image at least as large as the (padded) kernel and the pooling window",
                format!("{}x{}", dims[2], dims[3]),
            ));
        }
        let mut y = crate::conv::conv2d_forward(&self.conv, x);
        if let Some(bn) = &self.bn {
            y = bn.try_forward(y)?;
        }
        Ok(match (&self.pool, self.activation) {
            // One pass on Flex (dl-kernels), the two operations elsewhere.
            (Some(pool), Activation::Relu) => crate::relu_max_pool2d(pool, y),
            (Some(pool), activation) => pool.forward(activation.forward(y)),
            (None, activation) => activation.forward(y),
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::test_util::{assert_all, assert_uniform, values};
    use dl_core::BackendKind;

    #[test]
    fn init_follows_pytorch() {
        let device = BackendKind::Flex.device().unwrap();
        dl_core::seed_device(&device, 3);
        let block = ConvBlockConfig::new(4, 64, [3, 3])
            .with_batch_norm(true)
            .init(&device)
            .unwrap();
        let bound = 1.0 / ((4 * 3 * 3) as f64).sqrt();
        assert_uniform(&values(block.conv.weight.val()), bound, "conv weight");
        let bias = values(block.conv.bias.as_ref().unwrap().val());
        assert!(bias.iter().all(|b| b.abs() <= bound));
        let bn = block.bn.as_ref().unwrap();
        assert_all(&values(bn.weight.val()), 1.0, "bn weight");
        assert_all(&values(bn.bias.val()), 0.0, "bn bias");
        assert_eq!(
            block.num_params() - block.buffer_count(),
            64 * 4 * 9 + 64 + 2 * 64,
            "PyTorch's parameter count"
        );
    }

    #[test]
    fn output_shapes() {
        let device = BackendKind::Flex.device().unwrap();
        // 7x7, k3, s2, p1 → 4x4; pool 2 stride 1 → 3x3
        let block = ConvBlockConfig::new(2, 3, [3, 3])
            .with_stride([2, 2])
            .with_padding([1, 1])
            .with_pool_kernel(Some([2, 2]))
            .with_pool_stride(Some([1, 1]))
            .init(&device)
            .unwrap();
        assert_eq!(block.output_size([7, 7]), Some([3, 3]));
        assert_eq!(
            block.forward(Tensor::zeros([2, 2, 7, 7], &device)).dims(),
            [2, 3, 3, 3]
        );
        assert_eq!((block.in_channels(), block.out_channels()), (2, 3));
    }

    #[test]
    fn errors() {
        let device = BackendKind::Flex.device().unwrap();
        assert!(ConvBlockConfig::new(0, 3, [3, 3]).init(&device).is_err());
        assert!(ConvBlockConfig::new(1, 3, [0, 3]).init(&device).is_err());
        assert!(
            ConvBlockConfig::new(1, 3, [3, 3])
                .with_pool_stride(Some([2, 2]))
                .init(&device)
                .is_err()
        );
        let block = ConvBlockConfig::new(2, 3, [3, 3]).init(&device).unwrap();
        let err = block
            .try_forward(Tensor::zeros([1, 1, 5, 5], &device))
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "shape mismatch for conv block input: expected [1, 2, 5, 5], got [1, 1, 5, 5]"
        );
        assert!(
            block
                .try_forward(Tensor::zeros([1, 2, 2, 5], &device))
                .is_err()
        );
    }
}
