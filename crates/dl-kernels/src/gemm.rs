//! Matrix products on host slices, through the `gemm` crate that Flex's own matmul calls (with
//! its AVX-512 kernels, see dl-core's `flex` feature).
//!
//! Why not Flex's matmul for the per-example products of a convolution: each Flex matmul
//! allocates its result through `FlexTensor::empty`, which zero-fills a byte vector and then
//! copies it into a new 16-byte-aligned allocation (Burn 0.22.1 with cubecl-environment 0.11.3:
//! `Bytes::from_bytes_vec` records a byte vector's alignment as 1 and re-allocates). Under
//! `perf` that copy and fill were 10% and 7% of a CNN training step. Here the product writes
//! into a slice the caller owns: an output block filled with the bias and accumulated into,
//! or a per-thread buffer reused for every example.
//!
//! **`unsafe`.** This file holds dl-kernels' only `unsafe` block: the call to `gemm::gemm`,
//! which takes raw pointers and strides. [`product`] first checks that the destination holds
//! exactly `rows × cols` values and that every index the two views can address lies inside
//! their slices; the destination is a `&mut` slice, so it cannot alias the inputs. The tests
//! below compare it with a naive product for every layout the kernels use (row-major and
//! transposed views, overwrite and accumulate), and the convolution's tests compare the whole
//! kernel with Burn's operations and with finite differences.

/// Products of at least this many multiply-adds (`m·n·k`) may use several threads, as in
/// Flex's matmul (`192³`); smaller ones run on the calling thread, where splitting them cost
/// more than it gained.
const PARALLEL_WORK: usize = 192 * 192 * 192;

/// A read-only matrix view: `rows × cols` values of `data`, element `(i, j)` at
/// `i · row_stride + j · col_stride`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct MatRef<'a> {
    data: &'a [f32],
    rows: usize,
    cols: usize,
    row_stride: usize,
    col_stride: usize,
}

impl<'a> MatRef<'a> {
    /// The first `rows · cols` values of `data` as a row-major `rows × cols` matrix.
    pub fn row_major(data: &'a [f32], rows: usize, cols: usize) -> Self {
        Self {
            data,
            rows,
            cols,
            row_stride: cols,
            col_stride: 1,
        }
    }

    /// The transposed view (no copy).
    pub fn t(self) -> Self {
        Self {
            rows: self.cols,
            cols: self.rows,
            row_stride: self.col_stride,
            col_stride: self.row_stride,
            ..self
        }
    }

    /// Rows of the view.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Columns of the view.
    pub fn cols(&self) -> usize {
        self.cols
    }

    /// Columns `first..first + count` into `out`, row `p` of column `first + c` at
    /// `out[p · out_stride + c]` (a panel of a packed matrix).
    ///
    /// # Panics
    ///
    /// When the columns lie outside the view, the view reaches past its slice or `out` is too
    /// short.
    pub fn copy_columns(&self, first: usize, count: usize, out: &mut [f32], out_stride: usize) {
        assert!(
            first + count <= self.cols && count <= out_stride && self.in_bounds(),
            "columns {first}..{} of a {} x {} view (or a view past its slice)",
            first + count,
            self.rows,
            self.cols
        );
        if self.rows == 0 || count == 0 {
            return;
        }
        let out = &mut out[..(self.rows - 1) * out_stride + count];
        if self.row_stride == 1 {
            // Each column contiguous (a transposed row-major matrix): read it straight through.
            // In 16 × 16 blocks through a local tile, so that both the reads (16 values of a
            // column) and the writes (16 values of a row) are contiguous runs.
            const BLOCK: usize = 16;
            let mut tile = [[0.0f32; BLOCK]; BLOCK];
            for p0 in (0..self.rows).step_by(BLOCK) {
                let ps = (self.rows - p0).min(BLOCK);
                for c0 in (0..count).step_by(BLOCK) {
                    let cs = (count - c0).min(BLOCK);
                    for (c, tile_column) in tile.iter_mut().enumerate().take(cs) {
                        let at = (first + c0 + c) * self.col_stride + p0;
                        tile_column[..ps].copy_from_slice(&self.data[at..at + ps]);
                    }
                    for p in 0..ps {
                        let row = &mut out[(p0 + p) * out_stride + c0..][..cs];
                        for (c, slot) in row.iter_mut().enumerate() {
                            *slot = tile[c][p];
                        }
                    }
                }
            }
        } else {
            for (p, row) in out.chunks_mut(out_stride).enumerate() {
                for (c, slot) in row[..count].iter_mut().enumerate() {
                    *slot = self.data[p * self.row_stride + (first + c) * self.col_stride];
                }
            }
        }
    }

    /// Whether every element the view addresses lies inside `data`.
    fn in_bounds(&self) -> bool {
        if self.rows == 0 || self.cols == 0 {
            return true;
        }
        (self.rows - 1)
            .checked_mul(self.row_stride)
            .zip((self.cols - 1).checked_mul(self.col_stride))
            .and_then(|(r, c)| r.checked_add(c))
            .is_some_and(|last| last < self.data.len())
    }

    fn stride(value: usize) -> isize {
        isize::try_from(value).expect("a slice index fits in isize")
    }
}

/// `dst = a · b`, or `dst += a · b` when `accumulate`; `dst` is the row-major `a.rows × b.cols`
/// result. `parallel` lets a large product use the current thread pool (callers that already
/// run one product per thread pass `false`).
///
/// # Panics
///
/// When `a.cols != b.rows`, `dst` does not hold exactly `a.rows · b.cols` values, or a view
/// reaches past its slice.
pub(crate) fn product(
    dst: &mut [f32],
    a: MatRef<'_>,
    b: MatRef<'_>,
    accumulate: bool,
    parallel: bool,
) {
    let (m, k, n) = (a.rows, a.cols, b.cols);
    assert!(
        b.rows == k && dst.len() == m * n && a.in_bounds() && b.in_bounds(),
        "product: [{m} x {k}] · [{} x {n}] into {} values (or a view past its slice)",
        b.rows,
        dst.len()
    );
    if dst.is_empty() {
        return;
    }
    if k == 0 {
        if !accumulate {
            dst.fill(0.0);
        }
        return;
    }
    let parallelism = if parallel && m * n * k >= PARALLEL_WORK && rayon::current_num_threads() > 1
    {
        gemm::Parallelism::Rayon(0)
    } else {
        gemm::Parallelism::None
    };
    #[allow(unsafe_code)]
    // SAFETY: `dst` holds exactly `m · n` values, addressed row-major (column stride 1, row
    // stride `n`); the assertion above checked that every element of `a` (`m × k`) and `b`
    // (`k × n`) at their strides lies inside their slices; `dst` is borrowed mutably, so it
    // does not overlap `a` or `b`. With `read_dst = accumulate`, gemm computes
    // `dst = 1 · dst + 1 · a b` or `dst = 1 · a b`.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            MatRef::stride(n),
            accumulate,
            a.data.as_ptr(),
            MatRef::stride(a.col_stride),
            MatRef::stride(a.row_stride),
            b.data.as_ptr(),
            MatRef::stride(b.col_stride),
            MatRef::stride(b.row_stride),
            1.0,
            1.0,
            false,
            false,
            false,
            parallelism,
        );
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A fixed, irregular sequence in [-1, 1).
    pub(crate) fn values(len: usize, seed: u32) -> Vec<f32> {
        (0..len)
            .map(|i| (((i as u32).wrapping_mul(2654435761) ^ seed) % 1000) as f32 / 500.0 - 1.0)
            .collect()
    }

    /// `a · b` element by element, in f64.
    pub(crate) fn naive(a: MatRef<'_>, b: MatRef<'_>) -> Vec<f32> {
        let at = |m: &MatRef<'_>, i: usize, j: usize| {
            f64::from(m.data[i * m.row_stride + j * m.col_stride])
        };
        let mut out = Vec::new();
        for i in 0..a.rows {
            for j in 0..b.cols {
                out.push(
                    (0..a.cols)
                        .map(|p| at(&a, i, p) * at(&b, p, j))
                        .sum::<f64>() as f32,
                );
            }
        }
        out
    }

    /// Every element within 1e-5 relative (plus 1e-5 absolute) of the reference.
    pub(crate) fn assert_near(ours: &[f32], theirs: &[f32]) {
        assert_eq!(ours.len(), theirs.len());
        for (i, (x, y)) in ours.iter().zip(theirs).enumerate() {
            assert!(
                (x - y).abs() <= 1e-5 * (1.0 + y.abs()),
                "element {i}: {x} against {y}"
            );
        }
    }

    #[test]
    fn matches_a_naive_product_for_every_layout() {
        for (m, k, n) in [(1, 1, 1), (3, 5, 7), (17, 9, 33), (64, 300, 20), (2, 0, 3)] {
            let (a, b) = (values(m * k, 1), values(k * n, 2));
            let (at, bt) = (values(m * k, 3), values(k * n, 4));
            for (a, b) in [
                (MatRef::row_major(&a, m, k), MatRef::row_major(&b, k, n)),
                (
                    MatRef::row_major(&at, k, m).t(),
                    MatRef::row_major(&b, k, n),
                ),
                (
                    MatRef::row_major(&a, m, k),
                    MatRef::row_major(&bt, n, k).t(),
                ),
                (
                    MatRef::row_major(&at, k, m).t(),
                    MatRef::row_major(&bt, n, k).t(),
                ),
            ] {
                let expected = naive(a, b);
                let mut dst = vec![f32::NAN; m * n];
                product(&mut dst, a, b, false, true);
                assert_near(&dst, &expected);
                // Accumulating adds to what is there.
                let start = values(m * n, 5);
                let mut dst = start.clone();
                product(&mut dst, a, b, true, false);
                let sum: Vec<f32> = expected.iter().zip(&start).map(|(x, y)| x + y).collect();
                assert_near(&dst, &sum);
            }
        }
    }

    #[test]
    #[should_panic(expected = "product: [2 x 3]")]
    fn a_destination_of_the_wrong_size_is_refused() {
        let a = [0.0; 6];
        let b = [0.0; 12];
        let mut dst = [0.0; 7];
        product(
            &mut dst,
            MatRef::row_major(&a, 2, 3),
            MatRef::row_major(&b, 3, 4),
            false,
            false,
        );
    }

    #[test]
    #[should_panic(expected = "past its slice")]
    fn a_view_past_its_slice_is_refused() {
        let a = [0.0; 5];
        let b = [0.0; 12];
        let mut dst = [0.0; 8];
        product(
            &mut dst,
            MatRef::row_major(&a, 2, 3),
            MatRef::row_major(&b, 3, 4),
            false,
            false,
        );
    }
}
