//! A 2-D convolution whose weight gradient is one matrix product, as a Burn backend extension.
//!
//! Burn's autodiff differentiates `conv2d` with backend-generic rules. The input gradient is a
//! transposed convolution, which Flex runs as gemm + col2im (fast). The weight gradient is
//! computed as *another convolution*: the input with batch and channels swapped, convolved
//! with the output gradient as its kernel, a kernel as large as the output plane (28 x 28 for
//! the chapter's first layer). Flex sends that shape, three output positions wide, to its
//! direct-convolution loop, and under perf it was the largest part of a CNN training step.
//!
//! [`Conv2dOps::conv2d_gemm`] keeps Flex's forward convolution and the transposed-convolution
//! input gradient, and computes the weight gradient as PyTorch's CPU backend does, as a
//! product with the unfolded input:
//!
//! `dW[o, (c, ky, kx)] = Σ_(n, y, x) dY[n, o, y, x] · X[n, c, y·s + ky − p, x·s + kx − p]`
//!
//! i.e. `dW = dY' · U` with `dY'` the output gradient as `[C_out, N·H_out·W_out]` and `U` the
//! unfolded (im2col) input `[N·H_out·W_out, C·k_h·k_w]`, built here from host memory, and the
//! bias gradient as the sum of `dY` over batch and positions. Backends without the kernel
//! (NdArray, LibTorch, wgpu, CUDA) are not routed here: [`conv2d`] returns `None` and the
//! caller keeps Burn's `Conv2d`.
//!
//! Numerics against PyTorch: the forward pass is Flex's own convolution (unchanged); the
//! weight gradient sums the same products in another order (one gemm over all positions), so
//! it agrees with PyTorch's to f32 rounding (checked against Burn's generic rule and against
//! finite differences in this file's tests, and against PyTorch in the model parity tests).

use burn::backend::Flex;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::ops::{ConvOptions, ModuleOps};
use burn::backend::tensor::FloatTensor;
use burn::backend::{Autodiff, Backend, Dispatch, TensorMetadata, backend_extension};
use burn::tensor::{DType, Device, Shape, Tensor};

use crate::host::HostTensors;

/// The convolution with a gemm weight gradient, per backend.
#[backend_extension(Flex, Autodiff)]
pub trait Conv2dOps: Backend {
    /// `conv2d(x, weight, bias)` with equal stride and equal symmetric zero padding on both
    /// axes, no dilation, one group: `x` `[N, C, H, W]`, `weight` `[C_out, C, k_h, k_w]`,
    /// `bias` `[C_out]`; result `[N, C_out, H_out, W_out]`.
    fn conv2d_gemm(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        stride: usize,
        padding: usize,
    ) -> FloatTensor<Self>;
}

/// Whether [`conv2d`] has a native kernel for `f32` tensors on `device` (Flex, with or
/// without autodiff).
pub fn has_conv2d_gemm(device: &Device, dtype: DType) -> bool {
    dtype == DType::F32 && device.clone().inner() == Device::flex()
}

/// `conv2d(x, weight, bias)` through [`Conv2dOps::conv2d_gemm`], or `None` when the device has
/// no native kernel (see [`has_conv2d_gemm`]). Stride and padding are the same on both axes.
///
/// # Panics
///
/// When `weight` is not `[C_out, C, k_h, k_w]` for the `C` of `x`, `bias` not `[C_out]`, or
/// the padded input is smaller than the kernel (callers check their inputs first).
///
/// ```
/// use burn::tensor::Tensor;
///
/// let device = burn::tensor::Device::flex();
/// let x = Tensor::<4>::ones([2, 1, 5, 5], &device);
/// let weight = Tensor::<4>::ones([3, 1, 3, 3], &device);
/// let bias = Tensor::<1>::from_floats([0.0, 1.0, 2.0], &device);
/// let y = dl_kernels::conv2d(&x, &weight, &bias, 1, 1).expect("flex has the kernel");
/// assert_eq!(y.dims(), [2, 3, 5, 5]);
/// // The centre sees nine ones, a corner four (the rest is padding).
/// let y = y.into_data().try_to_vec::<f32>().unwrap();
/// assert_eq!((y[12], y[0], y[25]), (9.0, 4.0, 5.0));
/// ```
pub fn conv2d(
    x: &Tensor<4>,
    weight: &Tensor<4>,
    bias: &Tensor<1>,
    stride: usize,
    padding: usize,
) -> Option<Tensor<4>> {
    if !has_conv2d_gemm(&x.device(), x.dtype()) {
        return None;
    }
    let [_, channels, height, width] = x.dims();
    let [out_channels, in_channels, kh, kw] = weight.dims();
    assert!(
        in_channels == channels
            && bias.dims() == [out_channels]
            && stride > 0
            && height + 2 * padding >= kh
            && width + 2 * padding >= kw,
        "conv2d: input {:?} needs weight [C_out, {channels}, kh, kw] with kh, kw at most the padded \
         size, and bias [C_out]; got weight {:?}, bias {:?}, stride {stride}, padding {padding}",
        x.dims(),
        weight.dims(),
        bias.dims()
    );
    let out = <Dispatch as Conv2dOps>::conv2d_gemm(
        x.clone().into_dispatch(),
        weight.clone().into_dispatch(),
        bias.clone().into_dispatch(),
        stride,
        padding,
    );
    Some(Tensor::from_dispatch(out))
}

fn options(stride: usize, padding: usize) -> ConvOptions<2> {
    ConvOptions::new([stride, stride], [padding, padding], [1, 1], 1)
}

impl Conv2dOps for Flex {
    fn conv2d_gemm(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        stride: usize,
        padding: usize,
    ) -> FloatTensor<Self> {
        Self::conv2d(x, weight, Some(bias), options(stride, padding))
    }
}

/// Sizes of one convolution.
#[derive(Debug, Clone, Copy)]
struct Dims {
    batch: usize,
    channels: usize,
    height: usize,
    width: usize,
    kh: usize,
    kw: usize,
    out_h: usize,
    out_w: usize,
    stride: usize,
    padding: usize,
}

impl Dims {
    fn new(x: &Shape, weight: &Shape, stride: usize, padding: usize) -> Self {
        let out = |size: usize, k: usize| (size + 2 * padding - k) / stride + 1;
        Self {
            batch: x[0],
            channels: x[1],
            height: x[2],
            width: x[3],
            kh: weight[2],
            kw: weight[3],
            out_h: out(x[2], weight[2]),
            out_w: out(x[3], weight[3]),
            stride,
            padding,
        }
    }
}

/// The unfolded input, transposed: `[C·k_h·k_w, N·H_out·W_out]`, row `(c, ky, kx)`, column
/// `(n, y, x)`, zeros where the window reaches into the padding. This order makes the inner
/// loop a contiguous copy of an input row (stride 1), and the gemm reads it transposed for
/// free (Flex's matmul takes strides).
fn unfold_transposed(x: &[f32], d: Dims) -> Vec<f32> {
    let positions = d.out_h * d.out_w;
    let columns = d.batch * positions;
    let mut out = vec![0.0f32; d.channels * d.kh * d.kw * columns];
    let plane = d.height * d.width;
    // For offset `k` along an axis of input size `size`: the output positions whose input
    // position `o·s + k − p` is inside the image.
    let valid = |k: usize, size: usize, out: usize| {
        let first = d.padding.saturating_sub(k).div_ceil(d.stride);
        let last = (size + d.padding)
            .checked_sub(k + 1)
            .map_or(0, |m| (m / d.stride + 1).min(out));
        first..last.max(first)
    };
    for c in 0..d.channels {
        for ky in 0..d.kh {
            let ys = valid(ky, d.height, d.out_h);
            for kx in 0..d.kw {
                let xs = valid(kx, d.width, d.out_w);
                let row = (c * d.kh + ky) * d.kw + kx;
                let row = &mut out[row * columns..(row + 1) * columns];
                for n in 0..d.batch {
                    let image = &x[(n * d.channels + c) * plane..][..plane];
                    let dest = &mut row[n * positions..(n + 1) * positions];
                    if xs.is_empty() {
                        continue;
                    }
                    for y in ys.clone() {
                        let iy = y * d.stride + ky - d.padding;
                        let source = &image[iy * d.width..(iy + 1) * d.width];
                        let dest = &mut dest[y * d.out_w..(y + 1) * d.out_w];
                        if d.stride == 1 {
                            let from = xs.start + kx - d.padding;
                            dest[xs.clone()].copy_from_slice(&source[from..from + xs.len()]);
                        } else {
                            for ox in xs.clone() {
                                dest[ox] = source[ox * d.stride + kx - d.padding];
                            }
                        }
                    }
                }
            }
        }
    }
    out
}

/// The weight gradient `[C_out, C, k_h, k_w]` as one product (see the module's text).
fn weight_grad<B: HostTensors>(
    x: &FloatTensor<B>,
    grad: FloatTensor<B>,
    d: Dims,
) -> FloatTensor<B> {
    let out_channels = grad.shape()[1];
    let positions = d.out_h * d.out_w;
    let unfolded = B::from_host(
        unfold_transposed(&B::host_values(x), d),
        Shape::new([d.channels * d.kh * d.kw, d.batch * positions]),
    );
    // dY [N, C_out, P] → [C_out, N·P].
    let grad = B::float_reshape(grad, Shape::new([d.batch, out_channels, positions]));
    let grad = B::float_swap_dims(grad, 0, 1);
    let grad = B::float_reshape(grad, Shape::new([out_channels, d.batch * positions]));
    let dw = B::float_matmul(grad, B::float_transpose(unfolded));
    B::float_reshape(dw, Shape::new([out_channels, d.channels, d.kh, d.kw]))
}

/// What the backward pass keeps from the forward pass.
#[derive(Debug, Clone)]
struct Saved<B: Backend> {
    x: FloatTensor<B>,
    weight: FloatTensor<B>,
    dims: Dims,
}

/// The backward pass of [`Conv2dOps::conv2d_gemm`].
#[derive(Debug)]
struct Conv2dBackward;

impl<B: HostTensors> Backward<B, 3> for Conv2dBackward {
    type State = Saved<B>;

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
        let grad = grads.consume::<B>(&ops.node);
        let Saved { x, weight, dims } = ops.state;
        let [x_node, weight_node, bias_node] = ops.parents;
        if let Some(node) = bias_node {
            // Σ over batch and positions: [N, C_out, P] → [C_out].
            let out_channels = grad.shape()[1];
            let g = B::float_reshape(
                grad.clone(),
                Shape::new([dims.batch, out_channels, dims.out_h * dims.out_w]),
            );
            let g = B::float_sum_dim(B::float_sum_dim(g, 2), 0);
            grads.register::<B>(node.id, B::float_reshape(g, Shape::new([out_channels])));
        }
        if let Some(node) = weight_node {
            grads.register::<B>(node.id, weight_grad::<B>(&x, grad.clone(), dims));
        }
        if let Some(node) = x_node {
            let options = options(dims.stride, dims.padding);
            grads.register::<B>(node.id, B::conv2d_x_backward(x, weight, grad, options));
        }
    }
}

impl<B: HostTensors + Conv2dOps, C: CheckpointStrategy> Conv2dOps for Autodiff<B, C> {
    fn conv2d_gemm(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        stride: usize,
        padding: usize,
    ) -> FloatTensor<Self> {
        let nodes = [x.node(), weight.node(), bias.node()];
        let prep = Conv2dBackward
            .prepare::<C>(nodes)
            .compute_bound()
            .stateful();
        let (x, weight, bias) = (
            x.into_primitive(),
            weight.into_primitive(),
            bias.into_primitive(),
        );
        match prep {
            OpsKind::Tracked(prep) => {
                let dims = Dims::new(&x.shape(), &weight.shape(), stride, padding);
                let out = B::conv2d_gemm(x.clone(), weight.clone(), bias, stride, padding);
                prep.finish(Saved { x, weight, dims }, out)
            }
            OpsKind::UnTracked(prep) => {
                prep.finish(B::conv2d_gemm(x, weight, bias, stride, padding))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::{Distribution, TensorData};
    use dl_core::{Tolerance, assert_close};

    use crate::finite_differences::assert_gradient;

    /// `|ours - theirs| <= tol * (1 + |theirs|)` element-wise, with dl-core's report on failure.
    fn close(ours: &TensorData, theirs: &TensorData, tol: f64, what: &str) {
        assert_close(ours, theirs, Tolerance::new(tol, tol), what);
    }

    /// Output, input, weight and bias gradients against Burn's own `conv2d` and its generic
    /// backward rules, for paddings 0-2, strides 1-2 and non-square kernels and images.
    #[test]
    fn matches_burns_conv2d_and_its_gradients() {
        let device = Device::flex().autodiff();
        for (n, c, o, h, w, kh, kw, stride, padding) in [
            (3, 1, 4, 9, 9, 3, 3, 1, 1),
            (2, 3, 5, 8, 6, 3, 2, 1, 0),
            (2, 2, 3, 7, 7, 3, 3, 2, 1),
            (1, 4, 2, 5, 6, 2, 3, 2, 2),
            (2, 2, 2, 3, 3, 3, 3, 1, 2),
        ] {
            let x = Tensor::<4>::random([n, c, h, w], Distribution::Normal(0.0, 1.0), &device);
            let weight =
                Tensor::<4>::random([o, c, kh, kw], Distribution::Normal(0.0, 1.0), &device);
            let bias = Tensor::<1>::random([o], Distribution::Normal(0.0, 1.0), &device);
            let probe = |y: Tensor<4>| {
                // A loss that weighs every output differently.
                let weights = Tensor::<1, burn::tensor::Int>::arange(
                    0..y.shape().num_elements() as i64,
                    &device,
                )
                .float()
                .reshape(y.dims())
                .cos();
                (y * weights).sum()
            };
            let x1 = x.clone().require_grad();
            let w1 = weight.clone().require_grad();
            let b1 = bias.clone().require_grad();
            let ours = conv2d(&x1, &w1, &b1, stride, padding).unwrap();
            let g1 = probe(ours.clone()).backward();

            let x2 = x.require_grad();
            let w2 = weight.require_grad();
            let b2 = bias.require_grad();
            let theirs = burn::tensor::module::conv2d(
                x2.clone(),
                w2.clone(),
                Some(b2.clone()),
                ConvOptions::new([stride, stride], [padding, padding], [1, 1], 1),
            );
            let g2 = probe(theirs.clone()).backward();

            let case = format!("{n}x{c}x{h}x{w} k{kh}x{kw} s{stride} p{padding}");
            assert_eq!(ours.dims(), theirs.dims(), "{case}");
            close(&ours.to_data(), &theirs.to_data(), 1e-6, &case);
            for (a, b, what) in [
                (
                    x1.grad(&g1).unwrap().into_data(),
                    x2.grad(&g2).unwrap().into_data(),
                    "x",
                ),
                (
                    w1.grad(&g1).unwrap().into_data(),
                    w2.grad(&g2).unwrap().into_data(),
                    "weight",
                ),
            ] {
                close(&a, &b, 1e-5, &format!("{case} {what} gradient"));
            }
            close(
                &b1.grad(&g1).unwrap().into_data(),
                &b2.grad(&g2).unwrap().into_data(),
                1e-5,
                &format!("{case} bias gradient"),
            );
        }
    }

    /// The weight gradient against central finite differences of the forward pass in f64.
    #[test]
    fn weight_gradient_matches_finite_differences() {
        let device = Device::flex().autodiff();
        let (n, c, o, h, w, k, stride, padding) = (2, 2, 3, 6, 5, 3, 2, 1);
        let x = Tensor::<4>::random([n, c, h, w], Distribution::Normal(0.0, 1.0), &device);
        let weight = Tensor::<4>::random([o, c, k, k], Distribution::Normal(0.0, 1.0), &device);
        let bias = Tensor::<1>::zeros([o], &device);
        let w1 = weight.clone().require_grad();
        let grads = conv2d(&x, &w1, &bias, stride, padding)
            .unwrap()
            .powi_scalar(2)
            .sum()
            .backward();
        let analytic = w1.grad(&grads).unwrap().into_data();

        // Σ y² in f64 by the definition.
        let xs = x.into_data().try_to_vec::<f32>().unwrap();
        let loss = |ws: &[f64]| -> f64 {
            let d = Dims::new(
                &Shape::new([n, c, h, w]),
                &Shape::new([o, c, k, k]),
                stride,
                padding,
            );
            let mut total = 0.0;
            for b in 0..n {
                for oc in 0..o {
                    for oy in 0..d.out_h {
                        for ox in 0..d.out_w {
                            let mut acc = 0.0;
                            for ic in 0..c {
                                for ky in 0..k {
                                    for kx in 0..k {
                                        let iy = (oy * stride + ky) as isize - padding as isize;
                                        let ix = (ox * stride + kx) as isize - padding as isize;
                                        if iy < 0 || ix < 0 || iy >= h as isize || ix >= w as isize
                                        {
                                            continue;
                                        }
                                        let xv =
                                            xs[((b * c + ic) * h + iy as usize) * w + ix as usize];
                                        acc +=
                                            f64::from(xv) * ws[((oc * c + ic) * k + ky) * k + kx];
                                    }
                                }
                            }
                            total += acc * acc;
                        }
                    }
                }
            }
            total
        };
        let ws: Vec<f64> = weight
            .into_data()
            .try_to_vec::<f32>()
            .unwrap()
            .into_iter()
            .map(f64::from)
            .collect();
        assert_gradient("dW", analytic, &ws, 1e-4, Tolerance::new(1e-3, 1e-3), loss);
    }

    #[test]
    #[should_panic(expected = "conv2d: input [1, 2, 5, 5] needs weight [C_out, 2, kh, kw]")]
    fn inconsistent_shapes_are_named() {
        let device = Device::flex();
        let x = Tensor::<4>::zeros([1, 2, 5, 5], &device);
        let weight = Tensor::<4>::zeros([3, 1, 3, 3], &device);
        let bias = Tensor::<1>::zeros([3], &device);
        let _ = conv2d(&x, &weight, &bias, 1, 1);
    }

    #[test]
    #[cfg(feature = "ndarray")]
    fn other_backends_are_not_routed() {
        #[allow(deprecated)]
        let device = Device::ndarray();
        let x = Tensor::<4>::zeros([1, 1, 5, 5], &device);
        let weight = Tensor::<4>::zeros([1, 1, 3, 3], &device);
        let bias = Tensor::<1>::zeros([1], &device);
        assert!(conv2d(&x, &weight, &bias, 1, 1).is_none());
    }
}
