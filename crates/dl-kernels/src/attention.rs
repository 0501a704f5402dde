//! Unmasked multi-head self-attention heads for inference on Flex, as a Burn backend extension.
//!
//! `MultiHeadAttention`'s composed path splits the packed projection `[B, T, 3E]` into heads
//! (`[B, h, T, E/h]`, strided copies), multiplies `q kᵀ` into a `[B, h, T, T]` score tensor
//! (8 MB at the benchmark's batch 64, 64 tokens, 8 heads: past L2), runs the softmax over it,
//! multiplies by `v` and copies the heads back together: at the benchmark's size two thirds of
//! the time went to the copies and the score tensor's trips through memory
//! (docs/performance.md). [`AttentionHeadsOps::self_attention_heads`] does the same arithmetic
//! one sequence and one head at a time, with that head's `[T, T]` scores in a buffer that stays
//! in cache, reading `q`, `k` and `v` straight out of the packed projection and writing each
//! head's output straight into its columns of the `[B, T, E]` result.
//!
//! Numerics follow PyTorch's order: `q` scaled by `1/√(E/h)` first, the scores
//! `(q·s) kᵀ` (each a sum of `E/h` fused multiply-adds in index order), the softmax as in
//! `softmax.rs` (max-shifted, SIMD `exp` within 2 ulp, the weights normalised before they
//! multiply `v`), then `Σ_j p_ij v_j` in key order. A head whose scores hold NaN or ±∞ is
//! computed again with the scalar `exp`, which gives PyTorch's NaN. Tests compare it with a
//! direct `f64` evaluation, and `dl-layers/tests/attention_paths.rs` with the composed path.
//!
//! Inference only: [`self_attention_heads`] returns `None` on an autodiff device, and the layer
//! calls it only without masks and without attention weights.

use burn::backend::tensor::FloatTensor;
use burn::backend::{Backend, Dispatch, Flex, TensorMetadata, backend_extension};
use burn::tensor::{DType, Device, Shape, Tensor};
use pulp::{Arch, Simd, WithSimd};

use crate::host::HostTensors;
use crate::simd_math::{exp, load, store};

/// Work (`B·T²·E`) from which the sequences are split across the thread pool.
const PARALLEL_WORK: usize = 1 << 20;

/// Multi-head self-attention heads, per backend.
#[backend_extension(Flex)]
pub trait AttentionHeadsOps: Backend {
    /// `softmax((q/√d) kᵀ) v` for every sequence and head of the packed projection `qkv`
    /// `[B, T, 3E]` (`q`, `k`, `v` one after the other along the last axis, each head `d =
    /// E/num_heads` consecutive values of them, as `nn.MultiheadAttention`'s `in_proj` makes
    /// them), without a mask; returns `[B, T, E]` with the heads side by side.
    fn self_attention_heads(qkv: FloatTensor<Self>, num_heads: usize) -> FloatTensor<Self>;
}

/// Whether [`self_attention_heads`] has a native kernel for `dtype` tensors on `device` (plain
/// Flex, `f32`; not under autodiff).
pub fn has_attention_heads(device: &Device, dtype: DType) -> bool {
    !device.is_autodiff() && crate::host::is_flex_f32(device, dtype)
}

/// The attention heads of an unmasked self-attention at inference, from the packed projection
/// `qkv` `[B, T, 3E]`: `[B, T, E]`, or `None` where there is no native kernel (see
/// [`has_attention_heads`]).
///
/// # Panics
///
/// When the last axis is not a multiple of `3 · num_heads` (or `num_heads` is 0).
///
/// ```
/// use burn::tensor::Tensor;
///
/// // One sequence of two tokens, one head of width 1: q = 0, so both keys weigh 1/2.
/// let device = burn::tensor::Device::flex();
/// let qkv = Tensor::<3>::from_floats([[[0.0, 1.0, 2.0], [0.0, 3.0, 4.0]]], &device);
/// let heads = dl_kernels::self_attention_heads(&qkv, 1).expect("flex has the kernel");
/// assert_eq!(heads.into_data().to_vec::<f32>().unwrap(), [3.0, 3.0]);
/// ```
pub fn self_attention_heads(qkv: &Tensor<3>, num_heads: usize) -> Option<Tensor<3>> {
    if !has_attention_heads(&qkv.device(), qkv.dtype()) {
        return None;
    }
    let width = qkv.dims()[2];
    assert!(
        num_heads > 0 && width.is_multiple_of(3 * num_heads),
        "self_attention_heads: the packed projection's {width} values per token are not 3 × \
         {num_heads} heads of one width"
    );
    let out = <Dispatch as AttentionHeadsOps>::self_attention_heads(
        qkv.clone().into_dispatch(),
        num_heads,
    );
    Some(Tensor::from_dispatch(out))
}

impl AttentionHeadsOps for Flex {
    fn self_attention_heads(qkv: FloatTensor<Self>, num_heads: usize) -> FloatTensor<Self> {
        let shape = qkv.shape();
        let (batch, tokens, embed) = (shape[0], shape[1], shape[2] / 3);
        let dims = Dims {
            tokens,
            embed,
            heads: num_heads,
        };
        let out = heads(&Self::host_values(&qkv), batch, dims);
        Self::from_host(out, Shape::new([batch, tokens, embed]))
    }
}

/// The sizes of one sequence.
#[derive(Debug, Clone, Copy)]
struct Dims {
    tokens: usize,
    embed: usize,
    heads: usize,
}

impl Dims {
    fn head_dim(self) -> usize {
        self.embed / self.heads
    }
}

/// All sequences of `qkv` (`batch` × `[T, 3E]`, row-major): `batch` × `[T, E]`.
fn heads(qkv: &[f32], batch: usize, dims: Dims) -> Vec<f32> {
    let (t, e) = (dims.tokens, dims.embed);
    let mut out = vec![0.0; batch * t * e];
    if t == 0 || e == 0 {
        return out;
    }
    let run = |qkv: &[f32], out: &mut [f32]| {
        Arch::new().dispatch(Sequences { qkv, out, dims });
    };
    let threads = rayon::current_num_threads();
    if threads > 1 && batch > 1 && batch * t * t * e >= PARALLEL_WORK {
        use rayon::prelude::*;
        let per_task = batch.div_ceil(4 * threads);
        out.par_chunks_mut(per_task * t * e)
            .zip(qkv.par_chunks(per_task * t * 3 * e))
            .for_each(|(out, qkv)| run(qkv, out));
    } else {
        run(qkv, &mut out);
    }
    out
}

/// Whole sequences: `qkv` `[n, T, 3E]`, `out` `[n, T, E]`.
struct Sequences<'a> {
    qkv: &'a [f32],
    out: &'a mut [f32],
    dims: Dims,
}

impl WithSimd for Sequences<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: Simd>(self, s: S) {
        let Dims {
            tokens: t,
            embed: e,
            heads,
        } = self.dims;
        let d = self.dims.head_dim();
        let lanes = S::F32_LANES;
        // Queries padded to whole registers; padded lanes hold zeros and are never written out.
        let padded = t.div_ceil(lanes) * lanes;
        let scale = (1.0 / d as f64).sqrt() as f32;
        // `q` of one head, transposed and scaled: `[d, padded]`.
        let mut q_t = vec![0.0f32; d * padded];
        // `k` and `v` of one head, one key per row: `[T, d]`.
        let (mut k_h, mut v_h) = (vec![0.0f32; t * d], vec![0.0f32; t * d]);
        // The scores, then the weights, transposed: row `j` holds key `j`'s score for every
        // query, `[T, padded]`.
        let mut p_t = vec![0.0f32; t * padded];
        // The head's output, transposed: `[d, padded]`.
        let mut o_t = vec![0.0f32; d * padded];
        let blocks = padded / lanes;
        let tiles = Head { width: d, padded };
        for (qkv, out) in self
            .qkv
            .chunks_exact(t * 3 * e)
            .zip(self.out.chunks_exact_mut(t * e))
        {
            for head in 0..heads {
                let (q0, k0, v0) = (head * d, e + head * d, 2 * e + head * d);
                for (i, row) in qkv.chunks_exact(3 * e).enumerate() {
                    for (c, &q) in row[q0..q0 + d].iter().enumerate() {
                        q_t[c * padded + i] = q * scale;
                    }
                    k_h[i * d..(i + 1) * d].copy_from_slice(&row[k0..k0 + d]);
                    v_h[i * d..(i + 1) * d].copy_from_slice(&row[v0..v0 + d]);
                }
                // Scores: eight keys at a time (eight independent sums in registers), a
                // register of queries each.
                let mut check = s.splat_f32s(0.0);
                for block in 0..blocks {
                    let mut j = 0;
                    while j + TILE <= t {
                        check =
                            scores_tile::<S, TILE>(s, &q_t, &k_h, &mut p_t, tiles, block, j, check);
                        j += TILE;
                    }
                    for j in j..t {
                        check =
                            scores_tile::<S, 1>(s, &q_t, &k_h, &mut p_t, tiles, block, j, check);
                    }
                }
                if s.reduce_sum_f32s(check).is_nan() {
                    scalar_head(qkv, out, self.dims, head, scale);
                    continue;
                }
                softmax_columns(s, &mut p_t, padded);
                // Output: eight of the head's values at a time, Σ_j p_ij v_jc.
                for block in 0..blocks {
                    let mut c = 0;
                    while c + TILE <= d {
                        values_tile::<S, TILE>(s, &p_t, &v_h, &mut o_t, tiles, block, c);
                        c += TILE;
                    }
                    for c in c..d {
                        values_tile::<S, 1>(s, &p_t, &v_h, &mut o_t, tiles, block, c);
                    }
                }
                for (i, row) in out.chunks_exact_mut(e).enumerate() {
                    for (c, value) in row[head * d..(head + 1) * d].iter_mut().enumerate() {
                        *value = o_t[c * padded + i];
                    }
                }
            }
        }
    }
}

/// Independent sums per register tile: a sum of fused multiply-adds waits four cycles for the
/// previous one, so one sum at a time runs at a quarter of the FMA units' rate.
const TILE: usize = 8;

/// The sizes one head's tiles index with.
#[derive(Debug, Clone, Copy)]
struct Head {
    /// Values per head, `d`.
    width: usize,
    /// Queries rounded up to whole registers.
    padded: usize,
}

/// The scores of keys `j0 .. j0 + N` for one register of queries (`block`): `p_t[j][block] =
/// Σ_c k_h[j][c] q_t[c][block]`; returns `check` plus `0 ·` each score (NaN once one is NaN
/// or ±∞).
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn scores_tile<S: Simd, const N: usize>(
    s: S,
    q_t: &[f32],
    k_h: &[f32],
    p_t: &mut [f32],
    head: Head,
    block: usize,
    j0: usize,
    check: S::f32s,
) -> S::f32s {
    let (lanes, d) = (S::F32_LANES, head.width);
    let keys = &k_h[j0 * d..(j0 + N) * d];
    let mut acc = [s.splat_f32s(0.0); N];
    for c in 0..d {
        let q = load(s, &q_t[c * head.padded + block * lanes..][..lanes]);
        for (n, acc) in acc.iter_mut().enumerate() {
            *acc = s.mul_add_f32s(s.splat_f32s(keys[n * d + c]), q, *acc);
        }
    }
    let mut check = check;
    for (n, acc) in acc.into_iter().enumerate() {
        check = s.add_f32s(check, s.mul_f32s(acc, s.splat_f32s(0.0)));
        store(
            s,
            &mut p_t[(j0 + n) * head.padded + block * lanes..][..lanes],
            acc,
        );
    }
    check
}

/// Values `c0 .. c0 + N` of the head's output for one register of queries (`block`):
/// `o_t[c][block] = Σ_j v_h[j][c] p_t[j][block]`, in key order.
#[inline(always)]
fn values_tile<S: Simd, const N: usize>(
    s: S,
    p_t: &[f32],
    v_h: &[f32],
    o_t: &mut [f32],
    head: Head,
    block: usize,
    c0: usize,
) {
    let (lanes, d) = (S::F32_LANES, head.width);
    let mut acc = [s.splat_f32s(0.0); N];
    for (weights, v) in p_t.chunks_exact(head.padded).zip(v_h.chunks_exact(d)) {
        let p = load(s, &weights[block * lanes..][..lanes]);
        for (acc, &v) in acc.iter_mut().zip(&v[c0..c0 + N]) {
            *acc = s.mul_add_f32s(s.splat_f32s(v), p, *acc);
        }
    }
    for (n, acc) in acc.into_iter().enumerate() {
        store(
            s,
            &mut o_t[(c0 + n) * head.padded + block * lanes..][..lanes],
            acc,
        );
    }
}

/// Softmax down each column (query) of `p_t` `[T, padded]` (rows are keys), in place: the
/// maximum, `exp(x − max)` and the sum per SIMD lane, then the weights normalised.
#[inline(always)]
fn softmax_columns<S: Simd>(s: S, p_t: &mut [f32], padded: usize) {
    let lanes = S::F32_LANES;
    for block in 0..padded / lanes {
        let at = |j: usize| j * padded + block * lanes;
        let keys = p_t.len() / padded;
        let mut max = s.splat_f32s(f32::NEG_INFINITY);
        for j in 0..keys {
            max = s.max_f32s(max, load(s, &p_t[at(j)..][..lanes]));
        }
        let mut sum = s.splat_f32s(0.0);
        for j in 0..keys {
            let slot = &mut p_t[at(j)..][..lanes];
            let e = exp(s, s.sub_f32s(load(s, slot), max));
            sum = s.add_f32s(sum, e);
            store(s, slot, e);
        }
        let inverse = s.div_f32s(s.splat_f32s(1.0), sum);
        for j in 0..keys {
            let slot = &mut p_t[at(j)..][..lanes];
            let p = s.mul_f32s(load(s, slot), inverse);
            store(s, slot, p);
        }
    }
}

/// One head of one sequence with the scalar `exp`, for scores holding NaN or ±∞ (NaN out, as
/// in PyTorch); the same order of operations as the SIMD path otherwise.
fn scalar_head(qkv: &[f32], out: &mut [f32], dims: Dims, head: usize, scale: f32) {
    let (e, d) = (dims.embed, dims.head_dim());
    let (q0, k0, v0) = (head * d, e + head * d, 2 * e + head * d);
    let rows: Vec<&[f32]> = qkv.chunks_exact(3 * e).collect();
    for (i, out_row) in out.chunks_exact_mut(e).enumerate() {
        let q: Vec<f32> = rows[i][q0..q0 + d].iter().map(|v| v * scale).collect();
        let scores: Vec<f32> = rows
            .iter()
            .map(|k| {
                q.iter()
                    .zip(&k[k0..k0 + d])
                    .fold(0.0f32, |acc, (q, k)| q.mul_add(*k, acc))
            })
            .collect();
        let max = scores.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let exps: Vec<f32> = scores.iter().map(|x| (x - max).exp()).collect();
        let inverse = 1.0 / exps.iter().sum::<f32>();
        for (c, value) in out_row[head * d..(head + 1) * d].iter_mut().enumerate() {
            *value = exps
                .iter()
                .zip(&rows)
                .fold(0.0f32, |acc, (p, v)| (p * inverse).mul_add(v[v0 + c], acc));
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// The heads evaluated directly in `f64`.
    fn reference(qkv: &[f32], batch: usize, dims: Dims) -> Vec<f64> {
        let (t, e, d) = (dims.tokens, dims.embed, dims.head_dim());
        let scale = 1.0 / (d as f64).sqrt();
        let mut out = vec![0.0; batch * t * e];
        for b in 0..batch {
            let at = |i: usize, col: usize| f64::from(qkv[(b * t + i) * 3 * e + col]);
            for head in 0..dims.heads {
                for i in 0..t {
                    let scores: Vec<f64> = (0..t)
                        .map(|j| {
                            (0..d)
                                .map(|c| at(i, head * d + c) * scale * at(j, e + head * d + c))
                                .sum()
                        })
                        .collect();
                    let max = scores.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                    let exps: Vec<f64> = scores.iter().map(|x| (x - max).exp()).collect();
                    let sum: f64 = exps.iter().sum();
                    for c in 0..d {
                        out[(b * t + i) * e + head * d + c] = (0..t)
                            .map(|j| exps[j] / sum * at(j, 2 * e + head * d + c))
                            .sum();
                    }
                }
            }
        }
        out
    }

    fn values(n: usize, seed: usize) -> Vec<f32> {
        (0..n)
            .map(|i| (((i * 37 + seed * 11) % 101) as f32 - 50.0) * 0.04)
            .collect()
    }

    /// Tokens and head widths that fill whole registers and leave tails (1, 5, 17, 33
    /// tokens; heads of 1, 4, 8 and 12 values), against `f64`.
    #[test]
    fn heads_match_f64() {
        for (batch, tokens, embed, heads) in [
            (2, 5, 8, 2),
            (1, 17, 12, 3),
            (3, 33, 16, 2),
            (1, 1, 4, 4),
            (2, 16, 24, 2),
        ] {
            let dims = Dims {
                tokens,
                embed,
                heads,
            };
            let qkv = values(batch * tokens * 3 * embed, tokens);
            let ours = super::heads(&qkv, batch, dims);
            let want = reference(&qkv, batch, dims);
            for (k, (&o, &w)) in ours.iter().zip(&want).enumerate() {
                assert!(
                    (f64::from(o) - w).abs() <= 1e-5 * (1.0 + w.abs()),
                    "{dims:?} value {k}: {o} against {w}"
                );
            }
        }
    }

    /// A NaN or an infinity in one sequence gives NaN in every value of its heads that reads
    /// it (PyTorch's result) and leaves the other sequences alone; the split across threads
    /// changes no bit.
    #[test]
    fn non_finite_scores_give_nan_and_threads_change_nothing() {
        let dims = Dims {
            tokens: 9,
            embed: 8,
            heads: 2,
        };
        for bad in [f32::NAN, f32::INFINITY] {
            let mut qkv = values(2 * 9 * 24, 3);
            qkv[9 * 24 + 2 * 24 + 1] = bad; // sequence 1, token 2, q of head 0
            let out = super::heads(&qkv, 2, dims);
            let (first, second) = out.split_at(9 * 8);
            assert!(first.iter().all(|v| v.is_finite()), "{bad}");
            assert!(second[2 * 8..2 * 8 + 4].iter().all(|v| v.is_nan()), "{bad}");
        }

        let (batch, t, e) = (40, 64, 32);
        let dims = Dims {
            tokens: t,
            embed: e,
            heads: 4,
        };
        assert!(batch * t * t * e >= PARALLEL_WORK);
        let qkv = values(batch * t * 3 * e, 7);
        let on = |threads| {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            pool.install(|| super::heads(&qkv, batch, dims))
        };
        assert_eq!(on(1), on(3));
    }

    /// Autodiff devices and other backends have no kernel; a width that is not three equal
    /// parts of whole heads is refused with a message.
    #[test]
    fn declines_autodiff_and_refuses_a_bad_width() {
        let device = Device::flex().autodiff();
        let qkv = Tensor::<3>::zeros([1, 2, 6], &device);
        assert!(self_attention_heads(&qkv, 1).is_none());
        let qkv = Tensor::<3>::zeros([1, 2, 8], &Device::flex());
        let refusal = std::panic::catch_unwind(|| self_attention_heads(&qkv, 1)).unwrap_err();
        let message = refusal.downcast_ref::<String>().unwrap();
        assert!(message.contains("8 values per token"), "{message}");
    }
}
