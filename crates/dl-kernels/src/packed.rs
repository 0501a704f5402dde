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
//! Numerics: each output is `Σ_p a_ip b_pj` summed in order of `p` with fused multiply-adds, as
//! in gemm's kernels, so results agree with [`crate::gemm::product`] to f32 rounding (tests
//! below compare both with a naive f64 product).

use std::array;

use pulp::{Arch, Simd, WithSimd};

use crate::gemm::MatRef;
use crate::simd_math::{load, store};

/// Columns per panel: four AVX-512 registers, eight AVX2 registers.
const PANEL: usize = 64;

/// A `k × n` matrix packed into column panels for repeated products `A · B`.
#[derive(Debug, Clone)]
pub(crate) struct PackedRhs {
    k: usize,
    n: usize,
    /// `⌈n / PANEL⌉` panels of `k × PANEL` values.
    panels: Vec<f32>,
}

impl PackedRhs {
    /// Packs `b` (any strides).
    pub fn new(b: MatRef<'_>) -> Self {
        let (k, n) = (b.rows(), b.cols());
        let mut panels = vec![0.0; n.div_ceil(PANEL) * k * PANEL];
        if k > 0 {
            for (j, panel) in panels.chunks_exact_mut(k * PANEL).enumerate() {
                for c in 0..(n - j * PANEL).min(PANEL) {
                    for (p, value) in b.column(j * PANEL + c).enumerate() {
                        panel[p * PANEL + c] = value;
                    }
                }
            }
        }
        Self { k, n, panels }
    }

    /// `dst = a · B` for the row-major `m × k` matrix `a` (`m = a.len() / k`); `dst` is the
    /// row-major `m × n` result, computed on the calling thread (the LSTM splits its rows over
    /// threads itself, together with the element-wise work of the step).
    ///
    /// # Panics
    ///
    /// When `a` is not a whole number of `k`-value rows or `dst` does not hold `m · n` values.
    pub fn product(&self, dst: &mut [f32], a: &[f32]) {
        let (k, n) = (self.k, self.n);
        let m = a
            .len()
            .checked_div(k)
            .unwrap_or_else(|| dst.len() / n.max(1));
        assert!(
            m * k == a.len() && dst.len() == m * n,
            "packed product: {} values of a against k = {k}, {} of dst against n = {n}",
            a.len(),
            dst.len()
        );
        if dst.is_empty() {
            return;
        }
        if k == 0 {
            dst.fill(0.0);
            return;
        }
        Arch::new().dispatch(Product {
            packed: self,
            a,
            m,
            dst,
        });
    }
}

struct Product<'a> {
    packed: &'a PackedRhs,
    a: &'a [f32],
    m: usize,
    dst: &'a mut [f32],
}

impl WithSimd for Product<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: Simd>(self, s: S) {
        if S::F32_LANES >= 16 {
            run::<S, 6, 4>(s, self.packed, self.a, self.m, self.dst);
        } else {
            run::<S, 3, 4>(s, self.packed, self.a, self.m, self.dst);
        }
    }
}

/// Every panel, in passes of `NV` registers of columns, in blocks of `R` rows.
#[inline(always)]
fn run<S: Simd, const R: usize, const NV: usize>(
    s: S,
    packed: &PackedRhs,
    a: &[f32],
    m: usize,
    dst: &mut [f32],
) {
    let (k, n) = (packed.k, packed.n);
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
                tile::<S, R, NV>((s, a, k, i, panel, offset), dst, n, col, cols);
                i += R;
            }
            // The last rows in one block of their own size.
            let args = (s, a, k, i, panel, offset);
            match m - i {
                0 => {}
                1 => tile::<S, 1, NV>(args, dst, n, col, cols),
                2 => tile::<S, 2, NV>(args, dst, n, col, cols),
                3 => tile::<S, 3, NV>(args, dst, n, col, cols),
                4 => tile::<S, 4, NV>(args, dst, n, col, cols),
                _ => tile::<S, 5, NV>(args, dst, n, col, cols),
            }
        }
    }
}

/// Rows `i..i + R` of the result, columns `col..col + cols` (`cols ≤ NV` registers), from the
/// columns `offset..` of one panel.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn tile<S: Simd, const R: usize, const NV: usize>(
    (s, a, k, i, panel, offset): (S, &[f32], usize, usize, &[f32], usize),
    dst: &mut [f32],
    n: usize,
    col: usize,
    cols: usize,
) {
    let lanes = S::F32_LANES;
    let rows: [&[f32]; R] = array::from_fn(|r| &a[(i + r) * k..][..k]);
    let mut acc = [[s.splat_f32s(0.0); NV]; R];
    for (p, panel_row) in panel.chunks_exact(PANEL).enumerate() {
        let b: [S::f32s; NV] =
            array::from_fn(|v| load(s, &panel_row[offset + v * lanes..][..lanes]));
        for r in 0..R {
            let x = s.splat_f32s(rows[r][p]);
            for v in 0..NV {
                acc[r][v] = s.mul_add_f32s(x, b[v], acc[r][v]);
            }
        }
    }
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
