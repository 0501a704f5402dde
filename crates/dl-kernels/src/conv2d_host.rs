//! The convolution of [`crate::conv2d`] on host memory, one example at a time: the forward
//! pass and both gradients as products with the example's unfolded input (im2col), the layout
//! PyTorch's CPU convolution uses without oneDNN.
//!
//! For example `n`, `U_n` `[C·k_h·k_w, H_out·W_out]` holds in row `(c, ky, kx)` the input value
//! that kernel offset reads at every output position (zero in the padding), and with `W` the
//! weight as `[C_out, C·k_h·k_w]`:
//!
//! - output: `Y_n = W U_n + b`, written straight into the example's `[C_out, H_out·W_out]`
//!   block of the NCHW output (filled with the bias first, then accumulated into);
//! - weight gradient: `dW = Σ_n dY_n U_nᵀ`, accumulated example by example;
//! - input gradient: `dX_n = fold(Wᵀ dY_n)`, where `fold` adds every value of the
//!   `[C·k_h·k_w, H_out·W_out]` product back at the input position it came from (the adjoint
//!   of the unfolding).
//!
//! `U_n` and `Wᵀ dY_n` live in one buffer per thread, reused for every example, so they stay
//! in cache (the whole batch unfolded at once was up to 14 MB for the chapter's CNN). With
//! several threads in the pool and enough work the examples are split across threads; the
//! weight gradient then sums per-thread partial sums, so its last bits can depend on the
//! thread count (as PyTorch's do).

use rayon::prelude::*;

use crate::gemm::{MatRef, product};

/// Work (`N · C_out · C·k_h·k_w · H_out·W_out` multiply-adds) from which the examples are
/// split across threads; below it a thread hand-off costs more than it saves.
const PARALLEL_WORK: usize = 1 << 20;

/// Sizes of one convolution.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Dims {
    pub batch: usize,
    pub channels: usize,
    pub height: usize,
    pub width: usize,
    pub out_channels: usize,
    pub kh: usize,
    pub kw: usize,
    pub out_h: usize,
    pub out_w: usize,
    pub stride: usize,
    pub padding: usize,
}

impl Dims {
    /// The sizes of `x` `[N, C, H, W]` convolved with `weight` `[C_out, C, k_h, k_w]`.
    pub fn new(x: &[usize], weight: &[usize], stride: usize, padding: usize) -> Self {
        let out = |size: usize, k: usize| (size + 2 * padding - k) / stride + 1;
        Self {
            batch: x[0],
            channels: x[1],
            height: x[2],
            width: x[3],
            out_channels: weight[0],
            kh: weight[2],
            kw: weight[3],
            out_h: out(x[2], weight[2]),
            out_w: out(x[3], weight[3]),
            stride,
            padding,
        }
    }

    /// Rows of an unfolded example: `C·k_h·k_w`.
    fn rows(self) -> usize {
        self.channels * self.kh * self.kw
    }

    /// Output positions of one example: `H_out·W_out`.
    fn positions(self) -> usize {
        self.out_h * self.out_w
    }

    /// Values of one input example: `C·H·W`.
    fn example_len(self) -> usize {
        self.channels * self.height * self.width
    }

    /// Values of one output example: `C_out·H_out·W_out`.
    fn out_example_len(self) -> usize {
        self.out_channels * self.positions()
    }

    /// Whether the examples are worth splitting across the pool's threads.
    fn parallel(self) -> bool {
        self.batch > 1
            && rayon::current_num_threads() > 1
            && self.batch * self.out_channels * self.rows() * self.positions() >= PARALLEL_WORK
    }

    /// With stride 1 and an output as wide as the input, the unfolded row of kernel offset
    /// `(ky, kx)` is the input plane shifted by `(ky − p)·W + kx − p`: its valid rows `ys` and
    /// columns `xs` lie in one contiguous range `block` of the row, read from `from..` of the
    /// plane, with the values at columns outside `xs` (wrapped around from the neighbouring
    /// image row) to be zeroed afterwards. `None` for other shapes or an empty range.
    fn block(
        self,
        ys: &std::ops::Range<usize>,
        xs: &std::ops::Range<usize>,
        ky: usize,
        kx: usize,
    ) -> Option<(std::ops::Range<usize>, usize)> {
        if self.stride != 1 || self.out_w != self.width || ys.is_empty() || xs.is_empty() {
            return None;
        }
        let w = self.width;
        let block = ys.start * w + xs.start..(ys.end - 1) * w + xs.end;
        // Input index of output position `i`: `i + (ky − p)·W + kx − p`, inside the plane on
        // the valid range.
        let from = (ys.start + ky - self.padding) * w + xs.start + kx - self.padding;
        Some((block, from))
    }

    /// Zero the values of `row` (one unfolded row, `H_out × W_out`) in the valid rows `ys` but
    /// outside the valid columns `xs`.
    fn zero_wrapped(
        self,
        row: &mut [f32],
        ys: &std::ops::Range<usize>,
        xs: &std::ops::Range<usize>,
    ) {
        // Column by column: a few values per image row (one for a 3x3 kernel), where a `fill`
        // per row was a `memset` call each.
        for x in (0..xs.start).chain(xs.end..self.out_w) {
            for y in ys.clone() {
                row[y * self.out_w + x] = 0.0;
            }
        }
    }

    /// For offset `k` along an axis of input size `size` and output size `out`: the output
    /// positions whose input position `o·s + k − p` is inside the image.
    fn valid(self, k: usize, size: usize, out: usize) -> std::ops::Range<usize> {
        let first = self.padding.saturating_sub(k).div_ceil(self.stride);
        let last = (size + self.padding)
            .checked_sub(k + 1)
            .map_or(0, |m| (m / self.stride + 1).min(out));
        first..last.max(first)
    }
}

/// Unfold one example `image` `[C, H, W]` into `columns` `[C·k_h·k_w, H_out·W_out]`,
/// overwriting every value; with stride 1 each output row is one contiguous copy, and when
/// the output is as wide as the input (stride 1, "same" padding) each unfolded row is one
/// copy of the shifted plane (see [`Dims::block`]).
fn unfold_example(image: &[f32], d: Dims, columns: &mut [f32]) {
    let mut rows = columns.chunks_exact_mut(d.positions());
    for plane in image.chunks_exact(d.height * d.width).take(d.channels) {
        for ky in 0..d.kh {
            let ys = d.valid(ky, d.height, d.out_h);
            for kx in 0..d.kw {
                let xs = d.valid(kx, d.width, d.out_w);
                let Some(row) = rows.next() else { return };
                if let Some((block, from)) = d.block(&ys, &xs, ky, kx) {
                    row[..block.start].fill(0.0);
                    row[block.end..].fill(0.0);
                    row[block.clone()].copy_from_slice(&plane[from..from + block.len()]);
                    d.zero_wrapped(row, &ys, &xs);
                    continue;
                }
                for (y, out_row) in row.chunks_exact_mut(d.out_w).enumerate() {
                    if !ys.contains(&y) || xs.is_empty() {
                        out_row.fill(0.0);
                        continue;
                    }
                    let source = &plane[(y * d.stride + ky - d.padding) * d.width..][..d.width];
                    out_row[..xs.start].fill(0.0);
                    out_row[xs.end..].fill(0.0);
                    if d.stride == 1 {
                        let from = xs.start + kx - d.padding;
                        out_row[xs.clone()].copy_from_slice(&source[from..from + xs.len()]);
                    } else {
                        for ox in xs.clone() {
                            out_row[ox] = source[ox * d.stride + kx - d.padding];
                        }
                    }
                }
            }
        }
    }
}

/// The adjoint of [`unfold_example`]: add every value of `columns`
/// `[C·k_h·k_w, H_out·W_out]` to `image` `[C, H, W]` at the position it was read from
/// (values that fell in the padding are dropped).
///
/// `columns` is scratch: the values that fell in the left and right padding are zeroed.
fn fold_example(columns: &mut [f32], d: Dims, image: &mut [f32]) {
    let mut rows = columns.chunks_exact_mut(d.positions());
    for plane in image.chunks_exact_mut(d.height * d.width).take(d.channels) {
        for ky in 0..d.kh {
            let ys = d.valid(ky, d.height, d.out_h);
            for kx in 0..d.kw {
                let xs = d.valid(kx, d.width, d.out_w);
                let Some(row) = rows.next() else { return };
                if xs.is_empty() {
                    continue;
                }
                if let Some((block, from)) = d.block(&ys, &xs, ky, kx) {
                    d.zero_wrapped(row, &ys, &xs);
                    let dest = &mut plane[from..from + block.len()];
                    for (value, &g) in dest.iter_mut().zip(&row[block]) {
                        *value += g;
                    }
                    continue;
                }
                for y in ys.clone() {
                    let dest = &mut plane[(y * d.stride + ky - d.padding) * d.width..][..d.width];
                    let source = &row[y * d.out_w..][..d.out_w];
                    if d.stride == 1 {
                        let from = xs.start + kx - d.padding;
                        let dest = &mut dest[from..from + xs.len()];
                        for (value, &g) in dest.iter_mut().zip(&source[xs.clone()]) {
                            *value += g;
                        }
                    } else {
                        for ox in xs.clone() {
                            dest[ox * d.stride + kx - d.padding] += source[ox];
                        }
                    }
                }
            }
        }
    }
}

/// `conv2d(x, weight, bias)`: `x` `[N, C, H, W]`, `weight` `[C_out, C, k_h, k_w]`, `bias`
/// `[C_out]`, all row-major; returns `[N, C_out, H_out, W_out]`.
pub(crate) fn forward(x: &[f32], weight: &[f32], bias: &[f32], d: Dims) -> Vec<f32> {
    let (rows, positions) = (d.rows(), d.positions());
    let mut out = Vec::with_capacity(d.batch * d.out_example_len());
    for _ in 0..d.batch {
        for &b in bias {
            out.extend(std::iter::repeat_n(b, positions));
        }
    }
    let weight = MatRef::row_major(weight, d.out_channels, rows);
    let example = |columns: &mut Vec<f32>, (y, x): (&mut [f32], &[f32]), parallel: bool| {
        unfold_example(x, d, columns);
        product(
            y,
            weight,
            MatRef::row_major(columns, rows, positions),
            true,
            parallel,
        );
    };
    let (out_len, in_len) = (d.out_example_len(), d.example_len());
    if d.parallel() {
        out.par_chunks_mut(out_len)
            .zip(x.par_chunks(in_len))
            .for_each_init(|| vec![0.0; rows * positions], |c, e| example(c, e, false));
    } else {
        let mut columns = vec![0.0; rows * positions];
        for e in out.chunks_mut(out_len).zip(x.chunks(in_len)) {
            example(&mut columns, e, true);
        }
    }
    out
}

/// The gradient of the weight, `[C_out, C, k_h, k_w]`, from the input `x` and the output
/// gradient `grad` `[N, C_out, H_out, W_out]`.
pub(crate) fn weight_grad(x: &[f32], grad: &[f32], d: Dims) -> Vec<f32> {
    let (rows, positions) = (d.rows(), d.positions());
    let weight_len = d.out_channels * rows;
    let example = |(columns, dw): &mut (Vec<f32>, Vec<f32>), (x, g): (&[f32], &[f32]), parallel| {
        unfold_example(x, d, columns);
        let g = MatRef::row_major(g, d.out_channels, positions);
        product(
            dw,
            g,
            MatRef::row_major(columns, rows, positions).t(),
            true,
            parallel,
        );
    };
    let (in_len, out_len) = (d.example_len(), d.out_example_len());
    let fresh = || (vec![0.0; rows * positions], vec![0.0; weight_len]);
    if d.parallel() {
        x.par_chunks(in_len)
            .zip(grad.par_chunks(out_len))
            .fold(fresh, |mut acc, e| {
                example(&mut acc, e, false);
                acc
            })
            .map(|(_, dw)| dw)
            .reduce(
                || vec![0.0; weight_len],
                |mut sum, part| {
                    sum.iter_mut().zip(&part).for_each(|(s, p)| *s += p);
                    sum
                },
            )
    } else {
        let mut acc = fresh();
        for e in x.chunks(in_len).zip(grad.chunks(out_len)) {
            example(&mut acc, e, true);
        }
        acc.1
    }
}

/// The gradient of the input, `[N, C, H, W]`, from the weight and the output gradient `grad`
/// `[N, C_out, H_out, W_out]`.
pub(crate) fn input_grad(weight: &[f32], grad: &[f32], d: Dims) -> Vec<f32> {
    let (rows, positions) = (d.rows(), d.positions());
    let weight_t = MatRef::row_major(weight, d.out_channels, rows).t();
    let example = |columns: &mut Vec<f32>, (dx, g): (&mut [f32], &[f32]), parallel: bool| {
        let g = MatRef::row_major(g, d.out_channels, positions);
        product(columns, weight_t, g, false, parallel);
        fold_example(columns, d, dx);
    };
    let mut dx = vec![0.0f32; d.batch * d.example_len()];
    let (in_len, out_len) = (d.example_len(), d.out_example_len());
    if d.parallel() {
        dx.par_chunks_mut(in_len)
            .zip(grad.par_chunks(out_len))
            .for_each_init(|| vec![0.0; rows * positions], |c, e| example(c, e, false));
    } else {
        let mut columns = vec![0.0; rows * positions];
        for e in dx.chunks_mut(in_len).zip(grad.chunks(out_len)) {
            example(&mut columns, e, true);
        }
    }
    dx
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(len: usize, seed: u32) -> Vec<f32> {
        (0..len)
            .map(|i| ((i as u32).wrapping_mul(2654435761) ^ seed) % 997)
            .map(|v| v as f32 / 498.5 - 1.0)
            .collect()
    }

    /// `fold` is the adjoint of `unfold`: `⟨unfold(x), c⟩ = ⟨x, fold(c)⟩` for any `x` and `c`,
    /// for strides 1-3 and paddings from none to more than the kernel reaches.
    #[test]
    fn fold_is_the_adjoint_of_unfold() {
        for (c, h, w, kh, kw, stride, padding) in [
            (1, 5, 5, 3, 3, 1, 1),
            (2, 7, 6, 3, 2, 2, 0),
            (3, 6, 9, 2, 3, 3, 2),
            (1, 3, 3, 3, 3, 1, 3),
            (2, 6, 5, 5, 5, 1, 2),
        ] {
            let d = Dims::new(&[1, c, h, w], &[1, c, kh, kw], stride, padding);
            let x = values(d.example_len(), 7);
            let cols = values(d.rows() * d.positions(), 11);
            let mut unfolded = vec![f32::NAN; cols.len()];
            unfold_example(&x, d, &mut unfolded);
            let mut folded = vec![0.0; x.len()];
            fold_example(&mut cols.clone(), d, &mut folded);
            let dot =
                |a: &[f32], b: &[f32]| a.iter().zip(b).map(|(p, q)| f64::from(p * q)).sum::<f64>();
            let (left, right) = (dot(&unfolded, &cols), dot(&x, &folded));
            assert!(
                (left - right).abs() < 1e-4 * (1.0 + left.abs()),
                "{d:?}: {left} against {right}"
            );
        }
    }

    /// The same results with the examples split across threads as on one thread.
    #[test]
    fn several_threads_give_the_single_thread_results() {
        let d = Dims::new(&[8, 8, 12, 12], &[16, 8, 3, 3], 1, 1);
        assert!(d.batch * d.out_channels * d.rows() * d.positions() >= PARALLEL_WORK);
        let (x, weight, bias) = (
            values(8 * d.example_len(), 1),
            values(16 * d.rows(), 2),
            values(16, 3),
        );
        let grad = values(8 * d.out_example_len(), 4);
        let run = |threads: usize| {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .expect("a pool");
            pool.install(|| {
                assert_eq!(d.parallel(), threads > 1);
                (
                    forward(&x, &weight, &bias, d),
                    weight_grad(&x, &grad, d),
                    input_grad(&weight, &grad, d),
                )
            })
        };
        let (one, two) = (run(1), run(2));
        assert_eq!(one.0, two.0, "forward");
        assert_eq!(one.2, two.2, "input gradient");
        for (a, b) in one.1.iter().zip(&two.1) {
            assert!(
                (a - b).abs() <= 1e-5 * (1.0 + b.abs()),
                "weight gradient {a} against {b}"
            );
        }
    }
}
