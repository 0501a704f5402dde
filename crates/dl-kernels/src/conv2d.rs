//! A 2-D convolution with both gradients as matrix products, as a Burn backend extension.
//!
//! Burn's autodiff differentiates `conv2d` with backend-generic rules: the input gradient as a
//! transposed convolution and the weight gradient as *another convolution* (the input with
//! batch and channels swapped, convolved with the output gradient, a kernel as large as the
//! output plane), which Flex sent to its direct-convolution loop. Flex's forward convolution
//! converted the input to channels-last, built its columns in tiles and scattered each tile's
//! product back into the NCHW output element by element; and every Flex matmul zero-fills and
//! then copies its result (see `gemm.rs`).
//!
//! [`Conv2dOps::conv2d_gemm`] runs the forward pass and both gradients as PyTorch's CPU
//! backend does without oneDNN, one example at a time on its unfolded (im2col) input
//! (`conv2d_host.rs`): `Y_n = W U_n + b` written straight into the output, `dW = Σ_n dY_n U_nᵀ`,
//! `dX_n = fold(Wᵀ dY_n)`, with the products in `gemm` and the examples split across the
//! thread pool when there is enough work. The bias gradient is the sum of `dY` over batch and
//! positions. Backends without the kernel (NdArray, LibTorch, wgpu, CUDA) are not routed here:
//! [`conv2d`] returns `None` and the caller keeps Burn's `Conv2d`.
//!
//! Numerics against PyTorch: the same products, summed in another order (a gemm's blocking;
//! the weight gradient over examples in order, or per thread and then across threads), so
//! outputs and gradients agree with PyTorch's and with Burn's generic rules to f32 rounding
//! (checked against Burn's `conv2d` and its gradients and against finite differences in this
//! file's tests, and against PyTorch in the model parity tests).

use burn::backend::Flex;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::tensor::FloatTensor;
use burn::backend::{Autodiff, Backend, Dispatch, TensorMetadata, backend_extension};
use burn::tensor::{DType, Device, Shape, Tensor};

use crate::conv2d_host::{self, Dims};
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
    crate::host::is_flex_f32(device, dtype)
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

impl Conv2dOps for Flex {
    fn conv2d_gemm(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        stride: usize,
        padding: usize,
    ) -> FloatTensor<Self> {
        let shape = x.shape();
        let d = Dims::new(&shape, &weight.shape(), stride, padding);
        let y = conv2d_host::forward(
            &Self::host_values(&x),
            &Self::host_values(&weight),
            &Self::host_values(&bias),
            d,
        );
        Self::from_host(y, Shape::new([d.batch, d.out_channels, d.out_h, d.out_w]))
    }
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
        let g = B::host_values(&grad);
        if let Some(node) = weight_node {
            let dw = conv2d_host::weight_grad(&B::host_values(&x), &g, dims);
            grads.register::<B>(node.id, B::from_host(dw, weight.shape()));
        }
        if let Some(node) = x_node {
            let dx = conv2d_host::input_grad(&B::host_values(&weight), &g, dims);
            grads.register::<B>(node.id, B::from_host(dx, x.shape()));
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
    use burn::backend::ops::ConvOptions;
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
