//! Inverted dropout whose mask is a hash of the element index, as a Burn backend extension.
//!
//! Burn's `Dropout` draws a `Bernoulli(1 − p)` tensor from the backend's RNG (one ChaCha draw
//! and one distribution match per element, scalar), multiplies the input by it and then by
//! `1/(1 − p)`: three tensors and two recorded operations per call, and under autodiff a
//! backward for each. The Transformer drops attention weights, both residual branches, the
//! feed-forward hidden layer and the embeddings, the MLP and CNN their hidden layers, so a
//! training step draws millions of random numbers.
//!
//! [`DropoutOps::dropout_seeded`] computes `y = x ⊙ m / (1 − p)` in one pass, where
//! `m_i = 1` when `hash(seed, i) < (1 − p) · 2³²`, with a two-round 32-bit integer hash
//! (Wellons' `lowbias32`, full avalanche) that vectorises. The backward pass recomputes the same
//! mask from the seed instead of keeping it: `dx = dy ⊙ m / (1 − p)`. The seed is drawn from
//! the backend's own RNG for every call (see [`dropout`]), so seeding the device
//! (`dl_core::seed_device`) makes runs repeat exactly, as with Burn's `Dropout`.
//!
//! Numerics against PyTorch's `nn.Dropout`: the same definition (each element kept with
//! probability `1 − p` independently, survivors scaled by `1/(1 − p)`, identity outside
//! training); the random stream differs, as it does between any two frameworks. The keep
//! probability is quantised to multiples of 2⁻³².

use burn::backend::Flex;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::tensor::FloatTensor;
use burn::backend::{Autodiff, Backend, Dispatch, TensorMetadata, backend_extension};
use burn::tensor::{DType, Device, Distribution, Int, Tensor};
use pulp::Arch;

use crate::host::HostTensors;

/// Inverted dropout with a hashed mask, per backend.
#[backend_extension(Flex, Autodiff)]
pub trait DropoutOps: Backend {
    /// `x ⊙ m / (1 − prob)` with the mask `m` a function of `seed` and the element index;
    /// `prob` in `(0, 1)`.
    fn dropout_seeded(x: FloatTensor<Self>, prob: f64, seed: u64) -> FloatTensor<Self>;
}

/// Whether [`dropout`] has a native kernel for `dtype` tensors on `device` (Flex `f32`, with or
/// without autodiff).
pub fn has_dropout(device: &Device, dtype: DType) -> bool {
    crate::host::is_flex_f32(device, dtype)
}

/// Inverted dropout of `x` with probability `prob` in `(0, 1)`, the seed drawn from the
/// device's RNG, or `None` when the device has no native kernel (see [`has_dropout`]) or
/// `prob` is outside `(0, 1)`; the caller then uses Burn's `Dropout`. Whether dropout applies
/// at all (training, an autodiff device) is the caller's decision.
///
/// ```
/// use burn::tensor::Tensor;
///
/// let device = burn::tensor::Device::flex();
/// let x = Tensor::<2>::ones([100, 100], &device);
/// let y = dl_kernels::dropout(&x, 0.25).expect("flex has the kernel");
/// let y = y.into_data().try_to_vec::<f32>().unwrap();
/// // Every element is dropped (0) or scaled by 1 / 0.75, about a quarter dropped.
/// assert!(y.iter().all(|&v| v == 0.0 || (v - 4.0 / 3.0).abs() < 1e-6));
/// let dropped = y.iter().filter(|&&v| v == 0.0).count();
/// assert!((2_200..2_800).contains(&dropped));
/// ```
pub fn dropout<const D: usize>(x: &Tensor<D>, prob: f64) -> Option<Tensor<D>> {
    if !(has_dropout(&x.device(), x.dtype()) && prob > 0.0 && prob < 1.0) {
        return None;
    }
    let seed = draw_seed(&x.device());
    let out = <Dispatch as DropoutOps>::dropout_seeded(x.clone().into_dispatch(), prob, seed);
    Some(Tensor::from_dispatch(out))
}

/// 64 random bits from the device's own RNG (four 16-bit draws: Burn's integer tensors may be
/// 32-bit), so `seed_device` governs the masks.
fn draw_seed(device: &Device) -> u64 {
    Tensor::<1, Int>::random([4], Distribution::Uniform(0.0, 65_536.0), device)
        .into_data()
        .iter::<i64>()
        .fold(0u64, |seed, d| (seed << 16) | (d as u64 & 0xffff))
}

/// The keep threshold: an element is kept when its 32-bit hash is below it.
fn threshold(prob: f64) -> u32 {
    ((1.0 - prob) * 4_294_967_296.0).clamp(0.0, u32::MAX as f64) as u32
}

/// Wellons' `lowbias32`: a bijective 32-bit integer hash with full avalanche.
#[inline(always)]
fn lowbias32(mut x: u32) -> u32 {
    x ^= x >> 16;
    x = x.wrapping_mul(0x7feb_352d);
    x ^= x >> 15;
    x = x.wrapping_mul(0x846c_a68b);
    x ^ (x >> 16)
}

/// Multiplies the tensor's `values` in place by `m_i / (1 − prob)`.
fn apply_mask(values: &mut [f32], prob: f64, seed: u64) {
    let (keep_below, scale) = (threshold(prob), (1.0 / (1.0 - prob)) as f32);
    let (low, high) = (seed as u32, (seed >> 32) as u32);
    // Blocks of 2³² elements get their own key, so indices never repeat a mask.
    for (block, chunk) in values.chunks_mut(1 << 32).enumerate() {
        let key = lowbias32(high ^ block as u32);
        Arch::new().dispatch(|| {
            for (i, v) in chunk.iter_mut().enumerate() {
                let h = lowbias32(lowbias32((i as u32) ^ low).wrapping_add(key));
                *v *= if h < keep_below { scale } else { 0.0 };
            }
        });
    }
}

impl DropoutOps for Flex {
    fn dropout_seeded(x: FloatTensor<Self>, prob: f64, seed: u64) -> FloatTensor<Self> {
        let shape = x.shape();
        let mut values = Self::to_host(x);
        apply_mask(&mut values, prob, seed);
        Self::from_host(values, shape)
    }
}

/// The backward pass of [`DropoutOps::dropout_seeded`]: the same mask, from the same seed.
#[derive(Debug)]
struct DropoutBackward;

impl<B: HostTensors> Backward<B, 1> for DropoutBackward {
    type State = (f64, u64);

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let grad = grads.consume::<B>(&ops.node);
        let [Some(node)] = ops.parents else {
            return;
        };
        let (prob, seed) = ops.state;
        let shape = grad.shape();
        let mut values = B::to_host(grad);
        apply_mask(&mut values, prob, seed);
        grads.register::<B>(node.id, B::from_host(values, shape));
    }
}

impl<B: HostTensors + DropoutOps, C: CheckpointStrategy> DropoutOps for Autodiff<B, C> {
    fn dropout_seeded(x: FloatTensor<Self>, prob: f64, seed: u64) -> FloatTensor<Self> {
        match DropoutBackward
            .prepare::<C>([x.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => prep.finish(
                (prob, seed),
                B::dropout_seeded(x.into_primitive(), prob, seed),
            ),
            OpsKind::UnTracked(prep) => {
                prep.finish(B::dropout_seeded(x.into_primitive(), prob, seed))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::TensorData;

    fn values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
        t.into_data().try_to_vec::<f32>().unwrap()
    }

    /// Kept fraction within 6σ of `1 − p` for several `p`, survivors scaled by `1/(1 − p)`,
    /// and no visible structure: neighbouring elements agree no more often than chance.
    #[test]
    fn masks_keep_each_element_with_probability_one_minus_p() {
        let device = Device::flex();
        let n = 200_000usize;
        for prob in [0.1, 0.2, 0.5, 0.9] {
            let y = values(dropout(&Tensor::<1>::ones([n], &device), prob).unwrap());
            let scale = (1.0 / (1.0 - prob)) as f32;
            assert!(y.iter().all(|&v| v == 0.0 || v == scale), "p {prob}");
            let kept = y.iter().filter(|&&v| v != 0.0).count() as f64;
            let (mean, sd) = (
                n as f64 * (1.0 - prob),
                (n as f64 * prob * (1.0 - prob)).sqrt(),
            );
            assert!(
                (kept - mean).abs() < 6.0 * sd,
                "p {prob}: kept {kept}, expected {mean}"
            );
            // Pairs of neighbours both kept: (1 − p)² of the pairs, within 6σ.
            let both = y.windows(2).filter(|w| w[0] != 0.0 && w[1] != 0.0).count() as f64;
            let q = (1.0 - prob) * (1.0 - prob);
            let sd = ((n - 1) as f64 * q * (1.0 - q)).sqrt();
            assert!(
                (both - (n - 1) as f64 * q).abs() < 6.0 * sd,
                "p {prob}: pairs {both}"
            );
        }
    }

    /// Two calls draw different masks; the same device seed repeats them.
    #[test]
    fn seeds_come_from_the_device_rng() {
        let device = Device::flex();
        let x = Tensor::<1>::ones([4096], &device);
        dl_core::seed_device(&device, 5);
        let (a, b) = (
            values(dropout(&x, 0.5).unwrap()),
            values(dropout(&x, 0.5).unwrap()),
        );
        assert_ne!(a, b);
        dl_core::seed_device(&device, 5);
        assert_eq!(values(dropout(&x, 0.5).unwrap()), a);
    }

    /// The gradient is the output gradient through the same mask: zero where the output was
    /// dropped, `1/(1 − p)` times it elsewhere.
    #[test]
    fn gradient_uses_the_forward_mask() {
        let device = Device::flex().autodiff();
        let x = Tensor::<2>::from_data(
            TensorData::new(
                (0..600).map(|i| 1.0 + i as f32).collect::<Vec<_>>(),
                [20, 30],
            ),
            &device,
        )
        .require_grad();
        let y = dropout(&x, 0.3).unwrap();
        let w = Tensor::<2>::from_data(
            TensorData::new(
                (0..600).map(|i| (i % 7) as f32 - 3.0).collect::<Vec<_>>(),
                [20, 30],
            ),
            &device,
        );
        let grads = (y.clone() * w.clone()).sum().backward();
        let (y, g, w) = (values(y), values(x.grad(&grads).unwrap()), values(w));
        let scale = (1.0 / 0.7f64) as f32;
        for i in 0..600 {
            let want = if y[i] == 0.0 { 0.0 } else { w[i] * scale };
            assert_eq!(g[i], want, "element {i}");
        }
        assert!(y.contains(&0.0) && y.iter().any(|&v| v != 0.0));
    }

    #[test]
    fn no_kernel_outside_flex_or_for_p_0() {
        let x = Tensor::<1>::ones([4], &Device::flex());
        assert!(dropout(&x, 0.0).is_none());
        assert!(dropout(&x, 1.0).is_none());
        #[cfg(feature = "ndarray")]
        {
            let device = dl_core::BackendKind::NdArray.device().unwrap();
            assert!(dropout(&Tensor::<1>::ones([4], &device), 0.5).is_none());
        }
    }
}
