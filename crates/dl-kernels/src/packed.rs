//! A right-hand matrix packed once for many products with small left-hand matrices: the LSTM's
//! recurrent weight, multiplied by a new `[B, H]` state at every step of a sequence.
//!
//! Why not [`crate::gemm::product`] for those: the `gemm` crate packs its right operand into
//! panels at every call. For the LSTM step of the benchmarks (`[64, 128] × [128, 512]`, 4.2 M
//! multiply-adds) that repacks the same 256 KB of `W_hhᵀ` 28 times per layer and direction. Here
//! it is packed once per forward (or backward) pass and every step only streams it.
//!
//! Layout: the `k × n` matrix as column panels of [`PANEL`] values (the last one padded with
//! zeros), each panel `k` rows of `PANEL` contiguous values. A product walks one panel at a
//! time, in passes of a few SIMD registers of columns, and keeps an `R × NV` block of the
//! result in registers (6 rows × 4 registers with AVX-512, 3 × 4 otherwise, so that the
//! accumulators, the panel row and a broadcast fit the 32 or 16 vector registers) while `k`
//! runs: per panel row `NV` loads and `R` broadcasts for `R · NV` fused multiply-adds. The last
//! rows (fewer than `R`) run as one block of their own size. A 4 × 4 tile measured the same on
//! the AMD machine: the loop runs at the rate of the FMA units either way.
//!
//! A packed matrix may also stack two matrices, `[B₁; B₂]`, with a bias row: the product
//! `[A₁, A₂] · [B₁; B₂] + bias` then reads the rows of its left operand from two slices, which
//! is how an LSTM step multiplies the step's input by `W_ihᵀ` and the hidden state by `W_hhᵀ`
//! in one pass (see `crate::lstm_host`), without first concatenating them.
//!
//! Numerics: each output is `bias_j + Σ_p a_ip b_pj` summed in order of `p` with fused
//! multiply-adds, as in gemm's kernels, so results agree with [`crate::gemm::product`] to f32
//! rounding (tests below compare both with a naive f64 product).

use std::array;

use pulp::{Arch, Simd, WithSimd};

use crate::gemm::MatRef;
use crate::simd_math::{load, store};

/// Columns per panel: four AVX-512 registers, eight AVX2 registers.
const PANEL: usize = 64;

/// A `k × n` matrix packed into column panels for repeated products `A · B`.
#[derive(Debug, Clone)]
pub(crate) struct PackedRhs {
    /// Rows of the first stacked matrix (read against the first left operand); 0 when only one.
    k1: usize,
    /// All rows.
    k: usize,
    n: usize,
    /// `⌈n / PANEL⌉` panels of `k × PANEL` values.
    panels: Vec<f32>,
    /// The bias row, `n` values padded with zeros to whole panels, or empty for none.
    bias: Vec<f32>,
}

impl PackedRhs {
    /// Packs `b` (any strides).
    pub fn new(b: MatRef<'_>) -> Self {
        Self::stacked(None, b, None)
    }

    /// Packs `[top; bottom]` (any strides, the same number of columns) and a bias row of `n`
    /// values, for [`PackedRhs::product_stacked`].
    ///
    /// # Panics
    ///
    /// When `top` or `bias` does not have the columns of `bottom`.
    pub fn stacked(top: Option<MatRef<'_>>, bottom: MatRef<'_>, bias: Option<&[f32]>) -> Self {
        let n = bottom.cols();
        let k1 = top.as_ref().map_or(0, MatRef::rows);
        let k = k1 + bottom.rows();
        assert!(
            top.as_ref().is_none_or(|top| top.cols() == n) && bias.is_none_or(|b| b.len() == n),
            "packed stack: {n} columns below, {:?} above, a bias of {:?}",
            top.as_ref().map(MatRef::cols),
            bias.map(<[f32]>::len)
        );
        let padded = n.div_ceil(PANEL) * PANEL;
        let mut panels = vec![0.0; padded * k];
        if k > 0 {
            for (j, panel) in panels.chunks_exact_mut(k * PANEL).enumerate() {
                let (upper, lower) = panel.split_at_mut(k1 * PANEL);
                let parts = [(top.as_ref(), upper), (Some(&bottom), lower)];
                for (part, out) in parts {
                    let Some(part) = part else { continue };
                    part.copy_columns(j * PANEL, (n - j * PANEL).min(PANEL), out, PANEL);
                }
            }
        }
        let bias = bias.map_or_else(Vec::new, |b| {
            let mut padded = vec![0.0; padded];
            padded[..n].copy_from_slice(b);
            padded
        });
        Self {
            k1,
            k,
            n,
            panels,
            bias,
        }
    }

    /// `dst = a · B` for the row-major `m × k` matrix `a` (`m = a.len() / k`); `dst` is the
    /// row-major `m × n` result, computed on the calling thread (the LSTM splits its rows over
    /// threads itself, together with the element-wise work of the step).
    ///
    /// # Panics
    ///
    /// When `a` is not a whole number of `k`-value rows or `dst` does not hold `m · n` values.
    pub fn product(&self, dst: &mut [f32], a: &[f32]) {
        self.product_stacked(dst, &[], a);
    }

    /// `dst = [a1, a2] · [B₁; B₂] + bias` for the row-major `m × k1` matrix `a1` and `m × k2`
    /// matrix `a2` (`a1` empty when `B` was not stacked); otherwise as [`PackedRhs::product`].
    ///
    /// # Panics
    ///
    /// When `a1` and `a2` do not hold `m` rows of `k1` and `k2` values for the `m = len / n`
    /// rows of `dst`.
    pub fn product_stacked(&self, dst: &mut [f32], a1: &[f32], a2: &[f32]) {
        let (k1, k, n) = (self.k1, self.k, self.n);
        let m = dst.len() / n.max(1);
        assert!(
            dst.len() == m * n && a1.len() == m * k1 && a2.len() == m * (k - k1),
            "packed product: {} values of a against k = {k}, {} of dst against n = {n}",
            a1.len() + a2.len(),
            dst.len()
        );
        if dst.is_empty() {
            return;
        }
        Arch::new().dispatch(Product {
            packed: self,
            a1,
            a2,
            m,
            dst,
        });
    }
}

struct Product<'a> {
    packed: &'a PackedRhs,
    a1: &'a [f32],
    a2: &'a [f32],
    m: usize,
    dst: &'a mut [f32],
}

impl WithSimd for Product<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: Simd>(self, s: S) {
        if S::F32_LANES >= 16 {
            run::<S, 6, 4>(s, self.packed, (self.a1, self.a2), self.m, self.dst);
        } else {
            run::<S, 3, 4>(s, self.packed, (self.a1, self.a2), self.m, self.dst);
        }
    }
}

/// Every panel, in passes of `NV` registers of columns, in blocks of `R` rows.
#[inline(always)]
fn run<S: Simd, const R: usize, const NV: usize>(
    s: S,
    packed: &PackedRhs,
    a: (&[f32], &[f32]),
    m: usize,
    dst: &mut [f32],
) {
    let (k, n) = (packed.k, packed.n);
    if k == 0 {
        // No panels to walk: the bias (or zeros) alone.
        for row in dst.chunks_exact_mut(n) {
            match packed.bias.get(..n) {
                Some(bias) => row.copy_from_slice(bias),
                None => row.fill(0.0),
            }
        }
        return;
    }
    let width = NV * S::F32_LANES;
    debug_assert!(PANEL.is_multiple_of(width));
    // The remainder below has arms for up to five rows.
    const { assert!(R <= 6) };
    for (j, panel) in packed.panels.chunks_exact(k * PANEL).enumerate() {
        for offset in (0..PANEL).step_by(width) {
            let col = j * PANEL + offset;
            if col >= n {
                break;
            }
            let cols = (n - col).min(width);
            let mut i = 0;
            while i + R <= m {
                tile::<S, R, NV>((s, packed, a, i, panel, offset), dst, col, cols);
                i += R;
            }
            // The last rows in one block of their own size.
            let args = (s, packed, a, i, panel, offset);
            match m - i {
                0 => {}
                1 => tile::<S, 1, NV>(args, dst, col, cols),
                2 => tile::<S, 2, NV>(args, dst, col, cols),
                3 => tile::<S, 3, NV>(args, dst, col, cols),
                4 => tile::<S, 4, NV>(args, dst, col, cols),
                _ => tile::<S, 5, NV>(args, dst, col, cols),
            }
        }
    }
}

/// `acc + rows · part` for the panel rows `part` (`rows[r].len()` of them), columns
/// `offset..offset + NV` registers.
#[inline(always)]
fn accumulate<S: Simd, const R: usize, const NV: usize>(
    s: S,
    mut acc: [[S::f32s; NV]; R],
    rows: [&[f32]; R],
    part: &[f32],
    offset: usize,
) -> [[S::f32s; NV]; R] {
    let lanes = S::F32_LANES;
    for (p, panel_row) in part.chunks_exact(PANEL).enumerate() {
        let b: [S::f32s; NV] =
            array::from_fn(|v| load(s, &panel_row[offset + v * lanes..][..lanes]));
        for r in 0..R {
            let x = s.splat_f32s(rows[r][p]);
            for v in 0..NV {
                acc[r][v] = s.mul_add_f32s(x, b[v], acc[r][v]);
            }
        }
    }
    acc
}

/// The arguments of [`tile`] that stay the same along a panel: the SIMD token, the packed
/// matrix, the two left operands, the first row and the panel with the column offset in it.
type TileArgs<'a, S> = (
    S,
    &'a PackedRhs,
    (&'a [f32], &'a [f32]),
    usize,
    &'a [f32],
    usize,
);

/// Rows `i..i + R` of the result, columns `col..col + cols` (`cols ≤ NV` registers), from the
/// columns `offset..` of one panel: the bias (or zeros), then the rows of the first stacked
/// matrix against `a1`, then those of the second against `a2`.
#[inline(always)]
fn tile<S: Simd, const R: usize, const NV: usize>(
    (s, packed, (a1, a2), i, panel, offset): TileArgs<'_, S>,
    dst: &mut [f32],
    col: usize,
    cols: usize,
) {
    let lanes = S::F32_LANES;
    let (k1, k2, n) = (packed.k1, packed.k - packed.k1, packed.n);
    let first: [&[f32]; R] = array::from_fn(|r| &a1[(i + r) * k1..][..k1]);
    let second: [&[f32]; R] = array::from_fn(|r| &a2[(i + r) * k2..][..k2]);
    let init: [S::f32s; NV] = array::from_fn(|v| match packed.bias.get(col + v * lanes..) {
        Some(bias) if !bias.is_empty() => load(s, &bias[..lanes]),
        _ => s.splat_f32s(0.0),
    });
    let (upper, lower) = panel.split_at(k1 * PANEL);
    let acc = accumulate::<S, R, NV>(s, [init; R], first, upper, offset);
    let acc = accumulate::<S, R, NV>(s, acc, second, lower, offset);
    for (r, acc_row) in acc.iter().enumerate() {
        let out = &mut dst[(i + r) * n + col..][..cols];
        for (chunk, value) in out.chunks_mut(lanes).zip(acc_row) {
            store(s, chunk, *value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gemm::product;
    use crate::gemm::tests::{assert_near, naive, values};

    #[test]
    fn matches_a_naive_product_and_gemm_for_ragged_sizes() {
        // Rows not a multiple of the register block, columns not a multiple of a panel or of
        // a register, a transposed right operand (the LSTM's W_hhᵀ) and a plain one.
        for (m, k, n) in [
            (1, 1, 1),
            (5, 3, 7),
            (7, 33, 65),
            (64, 128, 512),
            (13, 17, 130),
        ] {
            let a = values(m * k, 1);
            let b = values(k * n, 2);
            for b in [MatRef::row_major(&b, k, n), MatRef::row_major(&b, n, k).t()] {
                let packed = PackedRhs::new(b);
                let expected = naive(MatRef::row_major(&a, m, k), b);
                let mut dst = vec![f32::NAN; m * n];
                packed.product(&mut dst, &a);
                assert_near(&dst, &expected);
                let mut via_gemm = vec![0.0; m * n];
                product(&mut via_gemm, MatRef::row_major(&a, m, k), b, false, false);
                assert_near(&via_gemm, &expected);
            }
        }
    }

    #[test]
    fn a_stacked_product_with_bias_matches_the_concatenated_one() {
        // [a1, a2] · [b1; b2] + bias against a naive product of the concatenations; the LSTM's
        // step (input 28, hidden 128, 4H = 512 columns, transposed weights), ragged sizes, and
        // an empty second part.
        for (m, k1, k2, n) in [
            (32, 28, 128, 512),
            (7, 3, 5, 65),
            (5, 4, 0, 9),
            (6, 0, 4, 3),
        ] {
            let (a1, a2) = (values(m * k1, 3), values(m * k2, 4));
            let (b1, b2) = (values(n * k1, 5), values(n * k2, 6));
            let bias = values(n, 7);
            let packed = PackedRhs::stacked(
                Some(MatRef::row_major(&b1, n, k1).t()),
                MatRef::row_major(&b2, n, k2).t(),
                Some(&bias),
            );
            let mut dst = vec![f32::NAN; m * n];
            packed.product_stacked(&mut dst, &a1, &a2);
            let k = k1 + k2;
            let a: Vec<f32> = (0..m)
                .flat_map(|i| a1[i * k1..][..k1].iter().chain(&a2[i * k2..][..k2]))
                .copied()
                .collect();
            // b as [k, n]: the transposes of b1 and b2 one above the other.
            let (b1, b2) = (&b1, &b2);
            let b: Vec<f32> = (0..k)
                .flat_map(|p| {
                    (0..n).map(move |j| {
                        if p < k1 {
                            b1[j * k1 + p]
                        } else {
                            b2[j * k2 + p - k1]
                        }
                    })
                })
                .collect();
            let mut expected = naive(MatRef::row_major(&a, m, k), MatRef::row_major(&b, k, n));
            for (i, value) in expected.iter_mut().enumerate() {
                *value += bias[i % n];
            }
            assert_near(&dst, &expected);
        }
    }

    #[test]
    #[should_panic(expected = "packed stack: 3 columns below, Some(2) above")]
    fn a_stack_of_different_widths_is_refused() {
        let _ = PackedRhs::stacked(
            Some(MatRef::row_major(&[0.0; 4], 2, 2)),
            MatRef::row_major(&[0.0; 6], 2, 3),
            None,
        );
    }

    #[test]
    fn an_empty_inner_dimension_gives_zeros() {
        let packed = PackedRhs::new(MatRef::row_major(&[], 0, 3));
        let mut dst = vec![f32::NAN; 6];
        packed.product(&mut dst, &[]);
        assert_eq!(dst, vec![0.0; 6]);
    }

    #[test]
    #[should_panic(expected = "packed product: 5 values of a against k = 2")]
    fn a_ragged_left_operand_is_refused() {
        let packed = PackedRhs::new(MatRef::row_major(&[0.0; 6], 2, 3));
        let mut dst = vec![0.0; 6];
        packed.product(&mut dst, &[0.0; 5]);
    }
}
