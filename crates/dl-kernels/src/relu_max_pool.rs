//! ReLU followed by a 2x2, stride-2 max-pool in one pass, as a Burn backend extension.
//!
//! Every stage of the chapter's CNN is `conv → ReLU → MaxPool2d(2, 2)`. Burn runs these as two
//! operations: ReLU writes a full-size tensor, then Flex's generic max-pool visits each window
//! with bounds checks for any kernel, stride, padding and dilation, and writes the argmax of
//! every output as an `i64` tensor, in inference too, where nothing reads it. ReLU is
//! monotone, so `max(relu(a), relu(b), …) = relu(max(a, b, …))`: [`ReluMaxPoolOps::relu_max_pool`]
//! reads each input once and writes the quarter-size output; under autodiff it keeps one byte
//! per output (which of the four values won, or that none did because the output is not
//! positive) instead of the ReLU output and the `i64` indices.
//!
//! Numerics: exact, as PyTorch's `max_pool2d(relu(x), 2, 2)` (floor mode: an odd last row or
//! column is dropped). A NaN in a window gives NaN, as in PyTorch. Gradient: PyTorch's, the
//! output gradient goes to the window's maximum (the first in row-major order on ties, the last
//! NaN when there is one, as PyTorch's CPU `max_pool2d`), and nowhere where the output is not
//! positive (ReLU's gradient at 0 is 0). Tests compare outputs and gradients exactly with
//! Burn's `max_pool2d(relu(x))`.

use burn::backend::Flex;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::tensor::FloatTensor;
use burn::backend::{Autodiff, Backend, Dispatch, TensorMetadata, backend_extension};
use burn::tensor::{DType, Device, Shape, Tensor};

use crate::host::HostTensors;

/// `max_pool2d(relu(x), kernel 2, stride 2)`, per backend.
#[backend_extension(Flex, Autodiff)]
pub trait ReluMaxPoolOps: Backend {
    /// `x` `[N, C, H, W]` with `H, W ≥ 2`; result `[N, C, H / 2, W / 2]`.
    fn relu_max_pool(x: FloatTensor<Self>) -> FloatTensor<Self>;
}

/// Whether [`relu_max_pool2x2`] has a native kernel for `dtype` tensors on `device` (Flex
/// `f32`, with or without autodiff).
pub fn has_relu_max_pool(device: &Device, dtype: DType) -> bool {
    crate::host::is_flex_f32(device, dtype)
}

/// `max_pool2d(relu(x), [2, 2], stride [2, 2])` through [`ReluMaxPoolOps::relu_max_pool`], or
/// `None` when the device has no native kernel (see [`has_relu_max_pool`]) or the image is
/// smaller than the window; the caller then runs Burn's two operations.
///
/// ```
/// use burn::tensor::Tensor;
///
/// let device = burn::tensor::Device::flex();
/// let x = Tensor::<4>::from_floats([[[[1.0, -2.0, -1.0], [3.0, 0.5, -4.0], [9.0, 9.0, 9.0]]]], &device);
/// let y = dl_kernels::relu_max_pool2x2(&x).expect("flex has the kernel");
/// assert_eq!(y.dims(), [1, 1, 1, 1]); // floor mode: the odd last row and column are dropped
/// assert_eq!(y.into_data().try_to_vec::<f32>().unwrap(), [3.0]);
/// ```
pub fn relu_max_pool2x2(x: &Tensor<4>) -> Option<Tensor<4>> {
    let [_, _, height, width] = x.dims();
    if !has_relu_max_pool(&x.device(), x.dtype()) || height < 2 || width < 2 {
        return None;
    }
    let out = <Dispatch as ReluMaxPoolOps>::relu_max_pool(x.clone().into_dispatch());
    Some(Tensor::from_dispatch(out))
}

/// The code of an output that is not positive: no input receives its gradient.
const NONE: u8 = u8::MAX;

/// Sizes of one pooling.
#[derive(Debug, Clone, Copy)]
struct Dims {
    /// `N · C`.
    planes: usize,
    height: usize,
    width: usize,
}

impl Dims {
    fn new(shape: &Shape) -> Self {
        Self {
            planes: shape[0] * shape[1],
            height: shape[2],
            width: shape[3],
        }
    }

    fn out_len(self) -> usize {
        self.planes * (self.height / 2) * (self.width / 2)
    }

    fn out_shape(self, shape: &Shape) -> Shape {
        Shape::new([shape[0], shape[1], self.height / 2, self.width / 2])
    }
}

/// The winner of one window `[a, b, c, d]` (row-major) and the output: the first maximum, the
/// last NaN if any; `NONE` and 0 when the maximum is not positive.
///
/// Branch-free (selects, not jumps): the signs of a ReLU's inputs are as good as random, and a
/// mispredicted branch per window cost more than the rest of the pass.
#[inline(always)]
fn window(values: [f32; 4]) -> (f32, u8) {
    let mut best = values[0];
    let mut at = 0u8;
    for (k, &v) in (1u8..).zip(&values[1..]) {
        let take = (v > best) | v.is_nan();
        best = if take { v } else { best };
        at = if take { k } else { at };
    }
    let keep = (best > 0.0) | best.is_nan();
    (if keep { best } else { 0.0 }, if keep { at } else { NONE })
}

/// The output and, when `codes` is given, each output's winner (see [`window`]).
fn forward_host(x: &[f32], d: Dims, codes: Option<&mut Vec<u8>>) -> Vec<f32> {
    let mut out = vec![0.0f32; d.out_len()];
    match codes {
        Some(codes) => {
            codes.clear();
            codes.resize(out.len(), NONE);
            pool::<true>(x, d, &mut out, codes);
        }
        None => pool::<false>(x, d, &mut out, &mut []),
    }
    out
}

/// One pass over the windows, row pair by row pair; `codes` is written when `CODES`.
fn pool<const CODES: bool>(x: &[f32], d: Dims, out: &mut [f32], codes: &mut [u8]) {
    let (out_h, out_w) = (d.height / 2, d.width / 2);
    for (p, plane) in x
        .chunks_exact(d.height * d.width)
        .take(d.planes)
        .enumerate()
    {
        for i in 0..out_h {
            let top = &plane[2 * i * d.width..][..2 * out_w];
            let bottom = &plane[(2 * i + 1) * d.width..][..2 * out_w];
            let at = (p * out_h + i) * out_w;
            let out_row = &mut out[at..][..out_w];
            let code_row = if CODES {
                &mut codes[at..][..out_w]
            } else {
                &mut []
            };
            if pool_row::<CODES>(top, bottom, out_row, code_row) {
                // A NaN in the row pair: redo it with the exact rules.
                let pairs = top.chunks_exact(2).zip(bottom.chunks_exact(2));
                for (j, (t, b)) in pairs.enumerate() {
                    let (y, code) = window([t[0], t[1], b[0], b[1]]);
                    out_row[j] = y;
                    if CODES {
                        code_row[j] = code;
                    }
                }
            }
        }
    }
}

/// One row of outputs from the two input rows above it, as straight-line selects that the
/// compiler vectorises; returns whether any input was NaN, in which case the caller redoes the
/// row with [`window`] (the comparisons here treat NaN as never larger).
///
/// Without NaN this is [`window`]: the larger of each horizontal pair (the left one on ties),
/// then the larger of the two pairs (the top one on ties), i.e. the first maximum in row-major
/// order; zero and `NONE` when it is not positive.
#[inline(always)]
fn pool_row<const CODES: bool>(
    top: &[f32],
    bottom: &[f32],
    out: &mut [f32],
    codes: &mut [u8],
) -> bool {
    let n = out.len();
    let (top, bottom) = (&top[..2 * n], &bottom[..2 * n]);
    let mut nan = false;
    for j in 0..n {
        let (a, b, c, e) = (top[2 * j], top[2 * j + 1], bottom[2 * j], bottom[2 * j + 1]);
        nan |= a.is_nan() | b.is_nan() | c.is_nan() | e.is_nan();
        let right_top = b > a;
        let upper = if right_top { b } else { a };
        let right_bottom = e > c;
        let lower = if right_bottom { e } else { c };
        let below = lower > upper;
        let best = if below { lower } else { upper };
        let keep = best > 0.0;
        out[j] = if keep { best } else { 0.0 };
        if CODES {
            let right = if below { right_bottom } else { right_top };
            let at = 2 * u8::from(below) + u8::from(right);
            codes[j] = if keep { at } else { NONE };
        }
    }
    nan
}

/// The input gradient: each output's gradient at its window's winner, zeros elsewhere (and in
/// an odd last row or column). Written in order, row by row, rather than zero-filled and
/// scattered into.
fn backward_host(grad: &[f32], codes: &[u8], d: Dims) -> Vec<f32> {
    let (out_h, out_w) = (d.height / 2, d.width / 2);
    let mut dx = Vec::with_capacity(d.planes * d.height * d.width);
    for p in 0..d.planes {
        for i in 0..out_h {
            let at = (p * out_h + i) * out_w;
            let (grad, codes) = (&grad[at..][..out_w], &codes[at..][..out_w]);
            for first in [0u8, 2] {
                let row = grad.iter().zip(codes).flat_map(|(&g, &code)| {
                    [
                        if code == first { g } else { 0.0 },
                        if code == first + 1 { g } else { 0.0 },
                    ]
                });
                dx.extend(row);
                dx.extend(std::iter::repeat_n(0.0, d.width % 2));
            }
        }
        dx.extend(std::iter::repeat_n(0.0, (d.height % 2) * d.width));
    }
    dx
}

impl ReluMaxPoolOps for Flex {
    fn relu_max_pool(x: FloatTensor<Self>) -> FloatTensor<Self> {
        let shape = x.shape();
        let d = Dims::new(&shape);
        let y = forward_host(&Self::host_values(&x), d, None);
        Self::from_host(y, d.out_shape(&shape))
    }
}

/// What the backward pass keeps: each output's winner and the input's shape.
#[derive(Debug, Clone)]
struct Saved {
    codes: Vec<u8>,
    shape: Shape,
}

/// The backward pass of [`ReluMaxPoolOps::relu_max_pool`].
#[derive(Debug)]
struct ReluMaxPoolBackward;

impl<B: HostTensors> Backward<B, 1> for ReluMaxPoolBackward {
    type State = Saved;

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let grad = grads.consume::<B>(&ops.node);
        let [Some(node)] = ops.parents else {
            return;
        };
        let Saved { codes, shape } = ops.state;
        let dx = backward_host(&B::host_values(&grad), &codes, Dims::new(&shape));
        grads.register::<B>(node.id, B::from_host(dx, shape));
    }
}

impl<B: HostTensors + ReluMaxPoolOps, C: CheckpointStrategy> ReluMaxPoolOps for Autodiff<B, C> {
    fn relu_max_pool(x: FloatTensor<Self>) -> FloatTensor<Self> {
        match ReluMaxPoolBackward
            .prepare::<C>([x.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let x = x.into_primitive();
                let shape = x.shape();
                let d = Dims::new(&shape);
                let mut codes = Vec::new();
                let y = forward_host(&B::host_values(&x), d, Some(&mut codes));
                let y = B::from_host(y, d.out_shape(&shape));
                prep.finish(Saved { codes, shape }, y)
            }
            OpsKind::UnTracked(prep) => prep.finish(B::relu_max_pool(x.into_primitive())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::nn::pool::MaxPool2dConfig;
    use burn::tensor::activation::relu;
    use burn::tensor::{Distribution, TensorData};
    use dl_core::{Tolerance, assert_close};

    fn burns(x: Tensor<4>) -> Tensor<4> {
        let pool = MaxPool2dConfig::new([2, 2]).with_strides([2, 2]).init();
        pool.forward(relu(x))
    }

    /// Outputs and input gradients equal Burn's `max_pool2d(relu(x))` exactly: odd and even
    /// sizes, values rounded to a few levels so that windows hold ties and non-positive
    /// maxima, and a weighted sum so every output has its own gradient.
    #[test]
    fn equals_burns_relu_then_max_pool_with_gradients() {
        let device = Device::flex().autodiff();
        for shape in [[2, 3, 6, 8], [1, 2, 5, 7], [3, 1, 2, 2], [1, 4, 9, 4]] {
            let x = Tensor::<4>::random(shape, Distribution::Normal(0.0, 1.0), &device)
                .mul_scalar(2.0)
                .round()
                .require_grad();
            let ours = relu_max_pool2x2(&x).expect("flex has the kernel");
            let theirs = burns(x.clone());
            assert_close(
                &ours.to_data(),
                &theirs.to_data(),
                Tolerance::EXACT,
                &format!("output {shape:?}"),
            );
            let weights = Tensor::<4>::random(ours.dims(), Distribution::Default, &device);
            let g_ours = (ours * weights.clone()).sum().backward();
            let g_theirs = (theirs * weights).sum().backward();
            assert_close(
                &x.grad(&g_ours).expect("gradient").to_data(),
                &x.grad(&g_theirs).expect("gradient").to_data(),
                Tolerance::EXACT,
                &format!("input gradient {shape:?}"),
            );
        }
    }

    #[test]
    fn ties_go_to_the_first_maximum_and_nan_wins() {
        let (y, code) = window([2.0, 2.0, 1.0, 2.0]);
        assert_eq!((y, code), (2.0, 0));
        let (y, code) = window([1.0, f32::NAN, 5.0, f32::NAN]);
        assert!(y.is_nan());
        assert_eq!(code, 3, "the last NaN, as PyTorch's CPU max_pool2d");
        assert_eq!(window([-1.0, 0.0, -3.0, -0.5]), (0.0, NONE));
        assert_eq!(window([-1.0, -2.0, 0.25, -0.5]), (0.25, 2));
    }

    /// The vectorised row gives [`window`]'s output and winner for every window without NaN
    /// (all 625 windows over five values with ties, zeros and negatives), and reports a NaN.
    #[test]
    fn the_vectorised_row_equals_window() {
        let levels = [-1.0f32, 0.0, 0.5, 1.0, 2.0];
        let windows: Vec<[f32; 4]> = (0..625)
            .map(|i| [0, 1, 2, 3].map(|k| levels[(i / 5usize.pow(k)) % 5]))
            .collect();
        let top: Vec<f32> = windows.iter().flat_map(|w| [w[0], w[1]]).collect();
        let bottom: Vec<f32> = windows.iter().flat_map(|w| [w[2], w[3]]).collect();
        let (mut out, mut codes) = (vec![f32::NAN; 625], vec![7u8; 625]);
        assert!(!pool_row::<true>(&top, &bottom, &mut out, &mut codes));
        for (j, w) in windows.iter().enumerate() {
            assert_eq!((out[j], codes[j]), window(*w), "window {w:?}");
        }
        let mut with_nan = top.clone();
        with_nan[301] = f32::NAN;
        assert!(pool_row::<false>(&with_nan, &bottom, &mut out, &mut []));
    }

    #[test]
    fn nan_propagates_to_the_output_as_in_pytorch() {
        let device = Device::flex();
        let x = Tensor::<4>::from_data(
            TensorData::new(vec![1.0, f32::NAN, -1.0, 2.0], [1, 1, 2, 2]),
            &device,
        );
        let y = relu_max_pool2x2(&x).expect("flex has the kernel");
        assert!(y.into_data().try_to_vec::<f32>().unwrap()[0].is_nan());
    }

    #[test]
    fn other_backends_and_tiny_images_fall_back() {
        let flex = Device::flex();
        assert!(relu_max_pool2x2(&Tensor::<4>::ones([1, 1, 1, 4], &flex)).is_none());
        #[cfg(feature = "ndarray")]
        {
            let device = dl_core::BackendKind::NdArray.device().unwrap();
            assert!(relu_max_pool2x2(&Tensor::<4>::ones([1, 1, 2, 2], &device)).is_none());
        }
        assert!(!has_relu_max_pool(&flex, DType::F64));
    }
}
