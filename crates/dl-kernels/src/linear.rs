//! A linear map `y = x W + b` as a Burn backend extension, its products written into buffers
//! the kernel owns.
//!
//! Burn's `Linear` runs a matmul and then a broadcast bias add. On Flex the matmul allocates
//! its result through `FlexTensor::empty`, which zero-fills a buffer and copies it into
//! another (see `gemm.rs`), and the bias add is one more pass over the result; under autodiff
//! the backward pass transposes and multiplies through the same path. [`LinearOps::linear`]
//! fills the output with the bias and accumulates `x W` into it with one `gemm` call, and its
//! backward computes `dx = dy Wᵀ`, `dW = xᵀ dy` and `db = Σ_rows dy` on host slices, reading
//! the transposes as strided views. Every model's fully connected layers, the attention
//! projections and the LSTM's input projection go through it on Flex (via
//! `dl_layers::linear`); other backends keep Burn's operations.
//!
//! Numerics: the same products as Burn's and PyTorch's `addmm`, summed in another order (a
//! gemm's blocking), so results agree to f32 rounding; tests compare outputs and all three
//! gradients with Burn's `linear`.

use burn::backend::Flex;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::tensor::FloatTensor;
use burn::backend::{Autodiff, Backend, Dispatch, TensorMetadata, backend_extension};
use burn::tensor::{DType, Device, Shape, Tensor};

use crate::gemm::{MatRef, product};
use crate::host::HostTensors;

/// `x W + b`, per backend.
#[backend_extension(Flex, Autodiff)]
pub trait LinearOps: Backend {
    /// `x` `[M, K]`, `weight` `[K, N]`, `bias` `[N]`; result `[M, N]`.
    fn linear_bias(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
    ) -> FloatTensor<Self>;
}

/// Whether [`linear`] has a native kernel for `dtype` tensors on `device` (Flex `f32`, with or
/// without autodiff).
pub fn has_linear(device: &Device, dtype: DType) -> bool {
    crate::host::is_flex_f32(device, dtype)
}

/// `x W + b` over the last axis of `x` (`[..., K]`, `weight` `[K, N]` in Burn's layout, `bias`
/// `[N]`) through [`LinearOps::linear_bias`], or `None` when the device has no native kernel
/// (see [`has_linear`]); the caller then uses Burn's `linear`.
///
/// # Panics
///
/// When the last axis of `x` is not `K` or `bias` is not `[N]` (callers check their inputs).
///
/// ```
/// use burn::tensor::Tensor;
///
/// let device = burn::tensor::Device::flex();
/// let x = Tensor::<2>::from_floats([[1.0, 2.0]], &device);
/// let weight = Tensor::<2>::from_floats([[1.0, 0.0, 1.0], [0.0, 1.0, 1.0]], &device);
/// let bias = Tensor::<1>::from_floats([0.5, 0.0, -3.0], &device);
/// let y = dl_kernels::linear(&x, &weight, &bias).expect("flex has the kernel");
/// assert_eq!(y.into_data().try_to_vec::<f32>().unwrap(), [1.5, 2.0, 0.0]);
/// ```
pub fn linear<const D: usize>(
    x: &Tensor<D>,
    weight: &Tensor<2>,
    bias: &Tensor<1>,
) -> Option<Tensor<D>> {
    if !has_linear(&x.device(), x.dtype()) || D < 1 {
        return None;
    }
    let dims = x.dims();
    let [k, n] = weight.dims();
    assert!(
        dims[D - 1] == k && bias.dims() == [n],
        "linear: input {dims:?} needs weight [{}, N] and bias [N]; got weight {:?}, bias {:?}",
        dims[D - 1],
        weight.dims(),
        bias.dims()
    );
    let rows = dims[..D - 1].iter().product::<usize>();
    let out = <Dispatch as LinearOps>::linear_bias(
        x.clone().reshape([rows, k]).into_dispatch(),
        weight.clone().into_dispatch(),
        bias.clone().into_dispatch(),
    );
    let mut out_dims = dims;
    out_dims[D - 1] = n;
    Some(Tensor::<2>::from_dispatch(out).reshape(out_dims))
}

/// `[M, K] · [K, N] + b` on host slices.
fn forward_host(x: &[f32], weight: &[f32], bias: &[f32], m: usize, k: usize) -> Vec<f32> {
    let n = bias.len();
    let mut y = Vec::with_capacity(m * n);
    for _ in 0..m {
        y.extend_from_slice(bias);
    }
    let (x, w) = (MatRef::row_major(x, m, k), MatRef::row_major(weight, k, n));
    product(&mut y, x, w, true, true);
    y
}

impl LinearOps for Flex {
    fn linear_bias(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        let [m, k] = [x.shape()[0], x.shape()[1]];
        let n = weight.shape()[1];
        let y = forward_host(
            &Self::host_values(&x),
            &Self::host_values(&weight),
            &Self::host_values(&bias),
            m,
            k,
        );
        Self::from_host(y, Shape::new([m, n]))
    }
}

/// What the backward pass keeps: the input and the weight.
#[derive(Debug, Clone)]
struct Saved<B: Backend> {
    x: FloatTensor<B>,
    weight: FloatTensor<B>,
}

/// The backward pass of [`LinearOps::linear_bias`].
#[derive(Debug)]
struct LinearBackward;

impl<B: HostTensors> Backward<B, 3> for LinearBackward {
    type State = Saved<B>;

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
        let grad = grads.consume::<B>(&ops.node);
        let Saved { x, weight } = ops.state;
        let [x_node, weight_node, bias_node] = ops.parents;
        let (m, k, n) = (x.shape()[0], x.shape()[1], weight.shape()[1]);
        let dy = B::host_values(&grad);
        let dy_mat = MatRef::row_major(&dy, m, n);
        if let Some(node) = bias_node {
            let mut db = vec![0.0f32; n];
            for row in dy.chunks_exact(n) {
                db.iter_mut().zip(row).for_each(|(s, g)| *s += g);
            }
            grads.register::<B>(node.id, B::from_host(db, Shape::new([n])));
        }
        if let Some(node) = weight_node {
            let x = B::host_values(&x);
            let mut dw = vec![0.0f32; k * n];
            product(
                &mut dw,
                MatRef::row_major(&x, m, k).t(),
                dy_mat,
                false,
                true,
            );
            grads.register::<B>(node.id, B::from_host(dw, Shape::new([k, n])));
        }
        if let Some(node) = x_node {
            let w = B::host_values(&weight);
            let mut dx = vec![0.0f32; m * k];
            product(
                &mut dx,
                dy_mat,
                MatRef::row_major(&w, k, n).t(),
                false,
                true,
            );
            grads.register::<B>(node.id, B::from_host(dx, Shape::new([m, k])));
        }
    }
}

impl<B: HostTensors + LinearOps, C: CheckpointStrategy> LinearOps for Autodiff<B, C> {
    fn linear_bias(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        let nodes = [x.node(), weight.node(), bias.node()];
        let prep = LinearBackward
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
                let out = B::linear_bias(x.clone(), weight.clone(), bias);
                prep.finish(Saved { x, weight }, out)
            }
            OpsKind::UnTracked(prep) => prep.finish(B::linear_bias(x, weight, bias)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::{Distribution, TensorData};
    use dl_core::{Tolerance, assert_close};

    /// Output and the three gradients of `Σ probe ⊙ linear(x, W, b)`.
    fn outputs_and_grads(
        x: &Tensor<3>,
        w: &Tensor<2>,
        b: &Tensor<1>,
        probe: &Tensor<3>,
        transposed: bool,
        ours: bool,
    ) -> [TensorData; 4] {
        let (x, w, b) = (
            x.clone().require_grad(),
            w.clone().require_grad(),
            b.clone().require_grad(),
        );
        let weight = if transposed {
            w.clone().transpose()
        } else {
            w.clone()
        };
        let y = if ours {
            linear(&x, &weight, &b).expect("flex has the kernel")
        } else {
            burn::tensor::module::linear(x.clone(), weight, Some(b.clone()))
        };
        let grads = (y.clone() * probe.clone()).sum().backward();
        [
            y.to_data(),
            x.grad(&grads).expect("x gradient").to_data(),
            w.grad(&grads).expect("weight gradient").to_data(),
            b.grad(&grads).expect("bias gradient").to_data(),
        ]
    }

    /// Output and the three gradients against Burn's `linear`, for 3-D inputs, a transposed
    /// (non-contiguous) weight view, and sizes around gemm's blocks.
    #[test]
    fn matches_burns_linear_and_its_gradients() {
        let device = Device::flex().autodiff();
        for (lead, k, n, transposed) in [
            ([2, 3], 5, 4, false),
            ([1, 64], 784, 33, false),
            ([4, 7], 16, 48, true),
        ] {
            let normal = Distribution::Normal(0.0, 1.0);
            let x = Tensor::<3>::random([lead[0], lead[1], k], normal, &device);
            let stored = if transposed { [n, k] } else { [k, n] };
            let w = Tensor::<2>::random(stored, normal, &device);
            let b = Tensor::<1>::random([n], normal, &device);
            let probe = Tensor::<3>::random([lead[0], lead[1], n], normal, &device);
            let ours = outputs_and_grads(&x, &w, &b, &probe, transposed, true);
            let theirs = outputs_and_grads(&x, &w, &b, &probe, transposed, false);
            for (what, (a, b)) in ["output", "x grad", "weight grad", "bias grad"]
                .iter()
                .zip(ours.iter().zip(&theirs))
            {
                let case = format!("{what}, {lead:?} x [{k}, {n}], transposed {transposed}");
                assert_close(a, b, Tolerance::new(1e-5, 1e-5), &case);
            }
        }
    }

    #[test]
    #[should_panic(expected = "linear: input [2, 3] needs weight [3, N]")]
    fn inconsistent_shapes_are_named() {
        let device = Device::flex();
        let x = Tensor::<2>::zeros([2, 3], &device);
        let _ = linear(
            &x,
            &Tensor::<2>::zeros([4, 5], &device),
            &Tensor::<1>::zeros([5], &device),
        );
    }

    #[test]
    fn other_backends_are_not_routed() {
        assert!(!has_linear(&Device::flex(), DType::F64));
        #[cfg(feature = "ndarray")]
        {
            let device = dl_core::BackendKind::NdArray.device().expect("ndarray");
            let x = Tensor::<2>::zeros([2, 3], &device);
            let w = Tensor::<2>::zeros([3, 4], &device);
            assert!(linear(&x, &w, &Tensor::<1>::zeros([4], &device)).is_none());
        }
    }
}
