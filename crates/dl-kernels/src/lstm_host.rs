//! The LSTM recurrence of one layer in one direction on host memory: forward over the whole
//! sequence and backpropagation through time, for backends whose tensors live in host memory.
//!
//! Layouts (all row-major `f32`), time-major or batch-first as the layer's input is, so that a
//! batch-first LSTM never transposes its activations:
//! - `projected` `[T, B, 4H]` or `[B, T, 4H]`: `x_t W_ihᵀ + b_ih + b_hh` for every step, gate
//!   order `(i, f, g, o)` as PyTorch packs them;
//! - the output `states` `[2, T, B, H]` or `[2, B, T, H]`: `h_t` for every step, then `c_t` for
//!   every step, both in time order whatever the direction (the reverse direction fills them
//!   from `t = T − 1` down);
//! - `gates` `[T, B, 4H]` (always time-major, private to the two passes): the activated gates
//!   `σ(i), σ(f), tanh(g), σ(o)` of every step, kept for the backward pass.
//!
//! The matrix products go to the caller's [`Recurrent`]; the element-wise work of a step is one
//! pass over the batch rows in SIMD registers (see [`crate::simd_math`]). A large step splits
//! its batch rows over two threads, each doing the product and the element-wise work of its
//! rows (see [`SPLIT_WORK`]); the values do not depend on the split.

use pulp::{Arch, Simd, WithSimd};

use crate::simd_math::{load, sigmoid, store, tanh};

/// Sizes and layout of one recurrence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Dims {
    /// Time steps `T`.
    pub steps: usize,
    /// Sequences `B`.
    pub batch: usize,
    /// Hidden features `H`.
    pub hidden: usize,
    /// `[B, T, ·]` instead of `[T, B, ·]` for `projected`, `states` and their gradients.
    pub batch_first: bool,
}

impl Dims {
    /// Values of one `[B, H]` state.
    pub fn state_len(self) -> usize {
        self.batch * self.hidden
    }

    /// Values of one `[B, 4H]` gate block.
    pub fn gates_len(self) -> usize {
        4 * self.state_len()
    }

    /// The step processed `s`-th: `s` forwards, `T − 1 − s` in reverse.
    fn time(self, s: usize, reverse: bool) -> usize {
        if reverse { self.steps - 1 - s } else { s }
    }

    /// Where the row of sequence `b` at step `t` starts, in rows of the caller's layout.
    fn row(self, t: usize, b: usize) -> usize {
        if self.batch_first {
            b * self.steps + t
        } else {
            t * self.batch + b
        }
    }
}

/// What a step adds the recurrent product to.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Input<'a> {
    /// `x_t W_ihᵀ + b_ih + b_hh` of every step, `[T, B, 4H]` or `[B, T, 4H]`, computed by the
    /// caller as one product.
    Projected(&'a [f32]),
    /// The layer's input `[T, B, I]` or `[B, T, I]` itself, `size` = `I`: the [`Recurrent`]
    /// multiplies the step's rows by `W_ihᵀ` and adds the biases in the same product as the
    /// recurrent part (inference, where nothing needs the projection afterwards).
    Raw { x: &'a [f32], size: usize },
}

impl<'a> Input<'a> {
    /// Values per row of the caller's layout.
    fn width(self, dims: Dims) -> usize {
        match self {
            Self::Projected(_) => 4 * dims.hidden,
            Self::Raw { size, .. } => size,
        }
    }

    /// The rows of the first `rows` sequences and those of the others (batch-first only, where
    /// the rows of a sequence are contiguous).
    fn split_sequences(self, dims: Dims, rows: usize) -> (Self, Self) {
        let at = rows * dims.steps * self.width(dims);
        match self {
            Self::Projected(p) => {
                let (a, b) = p.split_at(at);
                (Self::Projected(a), Self::Projected(b))
            }
            Self::Raw { x, size } => {
                let (a, b) = x.split_at(at);
                (Self::Raw { x: a, size }, Self::Raw { x: b, size })
            }
        }
    }
}

/// The two products with the recurrent weight `W_hh` `[4H, H]`.
pub(crate) trait Recurrent {
    /// `gates = h W_hhᵀ`: `[B, H]` → `[B, 4H]`; with the step's input rows `x` `[B, I]` (not
    /// empty for [`Input::Raw`]), `gates = x W_ihᵀ + h W_hhᵀ + b_ih + b_hh`.
    fn hidden_to_gates(&self, x: &[f32], h: &[f32], gates: &mut [f32]);
    /// `dh = dz W_hh`: `[B, 4H]` → `[B, H]`.
    fn gates_to_hidden(&self, dz: &[f32], dh: &mut [f32]);
}

/// What the forward pass returns.
pub(crate) struct Forward {
    /// `[2, T, B, H]` or `[2, B, T, H]`: every `h_t`, then every `c_t`.
    pub states: Vec<f32>,
    /// `[T, B, 4H]` activated gates, when asked for.
    pub gates: Option<Vec<f32>>,
}

/// Run the recurrence over the sequence.
///
/// With two threads and a large enough step, a batch-first recurrence without kept gates runs
/// as two independent recurrences over the two halves of the batch, one per thread (one
/// `rayon::join` for the whole sequence; each half's rows are contiguous in that layout);
/// otherwise every step splits its rows (see [`split_rows`]).
pub(crate) fn forward(
    dims: Dims,
    input: Input<'_>,
    h0: &[f32],
    c0: &[f32],
    reverse: bool,
    keep_gates: bool,
    weights: &(impl Recurrent + Sync),
) -> Forward {
    let block = dims.steps * dims.state_len();
    let mut states = vec![0.0; 2 * block];
    let mut gates = keep_gates.then(|| vec![0.0; dims.steps * dims.gates_len()]);
    let (hs, cs) = states.split_at_mut(block);
    let (steps, hd) = (dims.steps, dims.hidden);
    match split_rows(dims).filter(|_| dims.batch_first && !keep_gates) {
        Some(half) => {
            let (top, bottom) = (
                Dims {
                    batch: half,
                    ..dims
                },
                Dims {
                    batch: dims.batch - half,
                    ..dims
                },
            );
            let (hs_a, hs_b) = hs.split_at_mut(half * steps * hd);
            let (cs_a, cs_b) = cs.split_at_mut(half * steps * hd);
            let (in_a, in_b) = input.split_sequences(dims, half);
            let (h0_a, h0_b) = h0.split_at(half * hd);
            let (c0_a, c0_b) = c0.split_at(half * hd);
            rayon::join(
                || sequence(top, in_a, h0_a, c0_a, reverse, hs_a, cs_a, None, weights),
                || sequence(bottom, in_b, h0_b, c0_b, reverse, hs_b, cs_b, None, weights),
            );
        }
        None => sequence(
            dims,
            input,
            h0,
            c0,
            reverse,
            hs,
            cs,
            gates.as_deref_mut(),
            weights,
        ),
    }
    Forward { states, gates }
}

/// The forward loop over the steps into `hs`, `cs` (and `gates` when kept); a large step
/// splits its rows over two threads when this runs on the calling thread alone.
#[allow(clippy::too_many_arguments)]
fn sequence(
    dims: Dims,
    input: Input<'_>,
    h0: &[f32],
    c0: &[f32],
    reverse: bool,
    hs: &mut [f32],
    cs: &mut [f32],
    mut gates: Option<&mut [f32]>,
    weights: &(impl Recurrent + Sync),
) {
    let g = dims.gates_len();
    let mut h_prev = h0.to_vec();
    let mut c_prev = c0.to_vec();
    let mut recurrent = vec![0.0; g];
    // The step's input rows, gathered for the product when it multiplies them itself.
    let mut x_rows = match input {
        Input::Raw { size, .. } => vec![0.0; dims.batch * size],
        Input::Projected(_) => Vec::new(),
    };
    // Inside one half of a batch split both threads are busy already.
    let split = split_rows(dims).filter(|_| !dims.batch_first || gates.is_some());
    let hd = dims.hidden;
    let arch = Arch::new();
    for s in 0..dims.steps {
        let t = dims.time(s, reverse);
        let mut gate_block = gates.as_deref_mut().map(|gates| &mut gates[t * g..][..g]);
        let step = |first: usize,
                    h: &mut [f32],
                    c: &mut [f32],
                    r: &mut [f32],
                    x_rows: &mut [f32],
                    gates: Option<&mut [f32]>,
                    states: Option<(&mut [f32], &mut [f32])>| {
            let projected = match input {
                Input::Projected(p) => Some(p),
                Input::Raw { x, size } => {
                    for (b, row) in x_rows.chunks_exact_mut(size).enumerate() {
                        row.copy_from_slice(&x[dims.row(t, first + b) * size..][..size]);
                    }
                    None
                }
            };
            weights.hidden_to_gates(x_rows, h, r);
            arch.dispatch(CellForward {
                dims,
                t,
                first,
                projected,
                recurrent: r,
                h_prev: h,
                c_prev: c,
                gates,
                states,
            });
        };
        match split {
            Some(half) => {
                let (h_a, h_b) = h_prev.split_at_mut(half * hd);
                let (c_a, c_b) = c_prev.split_at_mut(half * hd);
                let (r_a, r_b) = recurrent.split_at_mut(half * 4 * hd);
                let per_row = x_rows.len() / dims.batch;
                let (x_a, x_b) = x_rows.split_at_mut(half * per_row);
                let (g_a, g_b) = match gate_block.take() {
                    Some(block) => {
                        let (a, b) = block.split_at_mut(half * 4 * hd);
                        (Some(a), Some(b))
                    }
                    None => (None, None),
                };
                rayon::join(
                    || step(0, h_a, c_a, r_a, x_a, g_a, None),
                    || step(half, h_b, c_b, r_b, x_b, g_b, None),
                );
                // The rows of the two halves interleave in a batch-first layout: copied here.
                for b in 0..dims.batch {
                    let row = dims.row(t, b) * hd;
                    hs[row..][..hd].copy_from_slice(&h_prev[b * hd..][..hd]);
                    cs[row..][..hd].copy_from_slice(&c_prev[b * hd..][..hd]);
                }
            }
            None => step(
                0,
                &mut h_prev,
                &mut c_prev,
                &mut recurrent,
                &mut x_rows,
                gate_block,
                Some((&mut *hs, &mut *cs)),
            ),
        }
    }
}

/// What the backward pass returns (the gradient of `W_hh` is one product of two of these,
/// left to the backend: `d_projectedᵀ · h_prev`).
pub(crate) struct Backward {
    /// Gradient of the pre-activation gates, which is that of `projected` (same layout).
    pub d_projected: Vec<f32>,
    /// The hidden state each step started from (`h_0` for the first processed), one `H` row per
    /// row of `d_projected`, in the same order.
    pub h_prev: Vec<f32>,
    /// `[B, H]`.
    pub d_h0: Vec<f32>,
    /// `[B, H]`.
    pub d_c0: Vec<f32>,
}

/// Backpropagation through time. `grad` is the gradient of `states`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn backward(
    dims: Dims,
    grad: &[f32],
    states: &[f32],
    gates: &[f32],
    h0: &[f32],
    c0: &[f32],
    reverse: bool,
    weights: &(impl Recurrent + Sync),
) -> Backward {
    let (n, g, hd) = (dims.state_len(), dims.gates_len(), dims.hidden);
    let block = dims.steps * n;
    let (hs, cs) = states.split_at(block);
    let (grad_h, grad_c) = grad.split_at(block);
    // h_{t−1} (or h_0) per row, and c_{t−1} (or c_0) gathered per step below.
    let mut h_prev = vec![0.0; block];
    for s in 0..dims.steps {
        let t = dims.time(s, reverse);
        for b in 0..dims.batch {
            let from = if s == 0 {
                &h0[b * hd..][..hd]
            } else {
                &hs[dims.row(dims.time(s - 1, reverse), b) * hd..][..hd]
            };
            h_prev[dims.row(t, b) * hd..][..hd].copy_from_slice(from);
        }
    }
    let mut d_projected = vec![0.0; dims.steps * g];
    let mut dz = vec![0.0; g];
    let mut dh_next = vec![0.0; n];
    let mut dc_next = vec![0.0; n];
    let split = split_rows(dims);
    let arch = Arch::new();
    for s in (0..dims.steps).rev() {
        let t = dims.time(s, reverse);
        let prev = (s > 0).then(|| dims.time(s - 1, reverse));
        let gates = &gates[t * g..][..g];
        let step = |first: usize, dh: &mut [f32], dc: &mut [f32], dz: &mut [f32]| {
            arch.dispatch(CellBackward {
                dims,
                t,
                first,
                prev,
                c0,
                gates: &gates[first * 4 * hd..],
                cs,
                grad_h,
                grad_c,
                dh_next: &*dh,
                dc_next: dc,
                dz: &mut *dz,
            });
            weights.gates_to_hidden(dz, dh);
        };
        match split {
            Some(half) => {
                let (dh_a, dh_b) = dh_next.split_at_mut(half * hd);
                let (dc_a, dc_b) = dc_next.split_at_mut(half * hd);
                let (dz_a, dz_b) = dz.split_at_mut(half * 4 * hd);
                rayon::join(
                    || step(0, dh_a, dc_a, dz_a),
                    || step(half, dh_b, dc_b, dz_b),
                );
            }
            None => step(0, &mut dh_next, &mut dc_next, &mut dz),
        }
        for b in 0..dims.batch {
            d_projected[dims.row(t, b) * 4 * hd..][..4 * hd]
                .copy_from_slice(&dz[b * 4 * hd..][..4 * hd]);
        }
    }
    Backward {
        d_projected,
        h_prev,
        d_h0: dh_next,
        d_c0: dc_next,
    }
}

/// A step of at least this many multiply-adds in its product (`B · 4H · H`) splits its batch
/// rows over two threads of the current pool, product and element-wise work together (one
/// `rayon::join` per step): the benchmarks' `[64, 128] × [128, 512]` step (4.2 M) does, a
/// batch-1 step (66 k) does not, where waking the second thread would cost more than it saves.
const SPLIT_WORK: usize = 1 << 21;

/// The first row of the second half when a step's rows are split over two threads (a multiple
/// of four, so that each half keeps whole register blocks of the product), or `None`.
fn split_rows(dims: Dims) -> Option<usize> {
    let work = dims.gates_len() * dims.hidden;
    let half = (dims.batch / 2).div_ceil(4) * 4;
    (work >= SPLIT_WORK && half < dims.batch && rayon::current_num_threads() > 1).then_some(half)
}

/// One step's gates and cell update: every batch row, one SIMD register of hidden units at a
/// time (the last one partial when `H` is not a multiple of the lane count). Covers the batch
/// rows `first..first + h_prev.len() / H` (all of them, or one thread's half); updates `h_prev`
/// and `c_prev` in place, writes the activated gates when they are kept and the new state into
/// the step's rows of the output when given.
struct CellForward<'a> {
    dims: Dims,
    t: usize,
    /// The batch row of `h_prev`'s first row.
    first: usize,
    /// The input projection of every step ([`Input::Projected`]), or `None` when `recurrent`
    /// holds the whole pre-activation already ([`Input::Raw`]).
    projected: Option<&'a [f32]>,
    recurrent: &'a [f32],
    h_prev: &'a mut [f32],
    c_prev: &'a mut [f32],
    gates: Option<&'a mut [f32]>,
    /// Every `h_t` and every `c_t` (`[T, B, H]` or `[B, T, H]` each).
    states: Option<(&'a mut [f32], &'a mut [f32])>,
}

impl WithSimd for CellForward<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: Simd>(self, s: S) {
        let hd = self.dims.hidden;
        let (mut gates, mut states) = (self.gates, self.states);
        for b in 0..self.h_prev.len() / hd.max(1) {
            let row = self.dims.row(self.t, self.first + b);
            let cell = Cell {
                projected: self.projected.map(|p| &p[row * 4 * hd..][..4 * hd]),
                recurrent: &self.recurrent[b * 4 * hd..][..4 * hd],
                h: &mut self.h_prev[b * hd..][..hd],
                c: &mut self.c_prev[b * hd..][..hd],
                out: states
                    .as_mut()
                    .map(|(hs, cs)| (&mut hs[row * hd..][..hd], &mut cs[row * hd..][..hd])),
            };
            match gates.as_deref_mut() {
                Some(gates) => cell_row(s, cell, Some(&mut gates[b * 4 * hd..][..4 * hd])),
                None => cell_row(s, cell, None),
            }
        }
    }
}

/// The pre-activation of `w` gate units from `at`: the projection (when there is one) plus the
/// recurrent product. A function, not a closure: a closure's SIMD arguments were not inlined.
#[inline(always)]
fn z<S: Simd>(s: S, projected: Option<&[f32]>, recurrent: &[f32], at: usize, w: usize) -> S::f32s {
    let r = load(s, &recurrent[at..at + w]);
    match projected {
        Some(p) => s.add_f32s(load(s, &p[at..at + w]), r),
        None => r,
    }
}

/// The slices of one batch row for [`cell_row`].
struct Cell<'a> {
    projected: Option<&'a [f32]>,
    recurrent: &'a [f32],
    h: &'a mut [f32],
    c: &'a mut [f32],
    /// The row's `h_t` and `c_t` in the output, written as well when given.
    out: Option<(&'a mut [f32], &'a mut [f32])>,
}

/// One batch row of [`CellForward`]: `h` and `c` updated in place, the activated gates stored
/// when `gate` is given.
#[inline(always)]
fn cell_row<S: Simd>(s: S, mut cell: Cell<'_>, mut gate: Option<&mut [f32]>) {
    let hd = cell.h.len();
    let (p, r) = (cell.projected, cell.recurrent);
    for start in (0..hd).step_by(S::F32_LANES) {
        let end = (start + S::F32_LANES).min(hd);
        let (i0, f0, g0, o0) = (start, hd + start, 2 * hd + start, 3 * hd + start);
        let w = end - start;
        let (i, f) = (sigmoid(s, z(s, p, r, i0, w)), sigmoid(s, z(s, p, r, f0, w)));
        let (g, o) = (tanh(s, z(s, p, r, g0, w)), sigmoid(s, z(s, p, r, o0, w)));
        let c = s.mul_add_f32s(f, load(s, &cell.c[start..end]), s.mul_f32s(i, g));
        let h = s.mul_f32s(o, tanh(s, c));
        store(s, &mut cell.c[start..end], c);
        store(s, &mut cell.h[start..end], h);
        if let Some((h_out, c_out)) = cell.out.as_mut() {
            store(s, &mut c_out[start..end], c);
            store(s, &mut h_out[start..end], h);
        }
        if let Some(gate) = gate.as_deref_mut() {
            store(s, &mut gate[i0..i0 + w], i);
            store(s, &mut gate[f0..f0 + w], f);
            store(s, &mut gate[g0..g0 + w], g);
            store(s, &mut gate[o0..o0 + w], o);
        }
    }
}

/// One step of backpropagation through time, every batch row, one SIMD register of hidden
/// units at a time; `dz` is written as one contiguous `[B, 4H]` block:
///
/// ```text
/// dh = ∂L/∂h_t (from the output) + dh_next          (dh_next = dz_{t+1} W_hh)
/// dc = ∂L/∂c_t (from c_n) + dc_next + dh · o · (1 − tanh²(c_t))
/// dz_i = dc · g · i(1 − i)      dz_f = dc · c_{t−1} · f(1 − f)
/// dz_g = dc · i · (1 − g²)      dz_o = dh · tanh(c_t) · o(1 − o)
/// dc_next ← dc · f
/// ```
///
/// Covers the batch rows `first..first + dz.len() / 4H`; `gates`, `dh_next`, `dc_next` and `dz`
/// start at row `first`, the other slices are whole.
struct CellBackward<'a> {
    dims: Dims,
    t: usize,
    /// The batch row of `dz`'s first row.
    first: usize,
    /// The step processed before `t`, whose cell state `t` started from (`None`: `c_0`).
    prev: Option<usize>,
    c0: &'a [f32],
    gates: &'a [f32],
    cs: &'a [f32],
    grad_h: &'a [f32],
    grad_c: &'a [f32],
    dh_next: &'a [f32],
    dc_next: &'a mut [f32],
    dz: &'a mut [f32],
}

impl WithSimd for CellBackward<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: Simd>(self, s: S) {
        let hd = self.dims.hidden;
        let one = s.splat_f32s(1.0);
        for local in 0..self.dz.len() / (4 * hd).max(1) {
            let b = self.first + local;
            let row = self.dims.row(self.t, b);
            let gate = &self.gates[local * 4 * hd..][..4 * hd];
            let dz = &mut self.dz[local * 4 * hd..][..4 * hd];
            let c = &self.cs[row * hd..][..hd];
            let c_prev = match self.prev {
                Some(prev) => &self.cs[self.dims.row(prev, b) * hd..][..hd],
                None => &self.c0[b * hd..][..hd],
            };
            let grad_h = &self.grad_h[row * hd..][..hd];
            let grad_c = &self.grad_c[row * hd..][..hd];
            let dh_next = &self.dh_next[local * hd..][..hd];
            let dc_next = &mut self.dc_next[local * hd..][..hd];
            for start in (0..hd).step_by(S::F32_LANES) {
                let end = (start + S::F32_LANES).min(hd);
                let (i0, f0, g0, o0) = (start, hd + start, 2 * hd + start, 3 * hd + start);
                let w = end - start;
                let i = load(s, &gate[i0..i0 + w]);
                let f = load(s, &gate[f0..f0 + w]);
                let g = load(s, &gate[g0..g0 + w]);
                let o = load(s, &gate[o0..o0 + w]);
                let tc = tanh(s, load(s, &c[start..end]));
                let dh = s.add_f32s(load(s, &grad_h[start..end]), load(s, &dh_next[start..end]));
                let dc_out = s.mul_f32s(s.mul_f32s(dh, o), s.negate_mul_add_f32s(tc, tc, one));
                let dc_in = s.add_f32s(load(s, &grad_c[start..end]), load(s, &dc_next[start..end]));
                let dc = s.add_f32s(dc_in, dc_out);
                // σ'(z) = σ(z)(1 − σ(z)), tanh'(z) = 1 − tanh²(z), from the saved activations.
                let dz_i = s.mul_f32s(s.mul_f32s(dc, g), s.mul_f32s(i, s.sub_f32s(one, i)));
                let dc_f = s.mul_f32s(dc, load(s, &c_prev[start..end]));
                let dz_f = s.mul_f32s(dc_f, s.mul_f32s(f, s.sub_f32s(one, f)));
                let dz_g = s.mul_f32s(s.mul_f32s(dc, i), s.negate_mul_add_f32s(g, g, one));
                let dz_o = s.mul_f32s(s.mul_f32s(dh, tc), s.mul_f32s(o, s.sub_f32s(one, o)));
                store(s, &mut dz[i0..i0 + w], dz_i);
                store(s, &mut dz[f0..f0 + w], dz_f);
                store(s, &mut dz[g0..g0 + w], dz_g);
                store(s, &mut dz[o0..o0 + w], dz_o);
                store(s, &mut dc_next[start..end], s.mul_f32s(dc, f));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Plain matrix products for the tests: `W_hh` `[4H, H]` row-major.
    struct Naive<'a> {
        w_hh: &'a [f32],
        dims: Dims,
    }

    impl Recurrent for Naive<'_> {
        fn hidden_to_gates(&self, x: &[f32], h: &[f32], out: &mut [f32]) {
            assert!(x.is_empty(), "Naive has no input weight; see WithInput");
            let hd = self.dims.hidden;
            let b = h.len() / hd;
            for r in 0..b {
                for k in 0..4 * hd {
                    out[r * 4 * hd + k] =
                        (0..hd).map(|j| h[r * hd + j] * self.w_hh[k * hd + j]).sum();
                }
            }
        }

        fn gates_to_hidden(&self, dz: &[f32], out: &mut [f32]) {
            let hd = self.dims.hidden;
            let b = dz.len() / (4 * hd);
            for r in 0..b {
                for j in 0..hd {
                    out[r * hd + j] = (0..4 * hd)
                        .map(|k| dz[r * 4 * hd + k] * self.w_hh[k * hd + j])
                        .sum();
                }
            }
        }
    }

    /// [`Naive`] plus the input projection: `W_ih` `[4H, I]` row-major and a bias `[4H]`.
    struct WithInput<'a> {
        naive: Naive<'a>,
        w_ih: &'a [f32],
        bias: &'a [f32],
    }

    impl Recurrent for WithInput<'_> {
        fn hidden_to_gates(&self, x: &[f32], h: &[f32], out: &mut [f32]) {
            self.naive.hidden_to_gates(&[], h, out);
            let n4 = 4 * self.naive.dims.hidden;
            let size = self.w_ih.len() / n4;
            for (r, row) in out.chunks_exact_mut(n4).enumerate() {
                for (k, value) in row.iter_mut().enumerate() {
                    let dot: f32 = (0..size)
                        .map(|j| x[r * size + j] * self.w_ih[k * size + j])
                        .sum();
                    *value += dot + self.bias[k];
                }
            }
        }

        fn gates_to_hidden(&self, dz: &[f32], dh: &mut [f32]) {
            self.naive.gates_to_hidden(dz, dh);
        }
    }

    #[test]
    fn the_input_inside_the_step_gives_the_states_of_a_projection_made_first() {
        // Time-major and batch-first, both directions, one thread and two (40 rows of hidden
        // 128 split: per step when time-major, into two recurrences when batch-first).
        for (batch, hidden, batch_first) in [
            (3, 5, false),
            (3, 5, true),
            (40, 128, false),
            (40, 128, true),
        ] {
            let (steps, size) = (4, 6);
            let dims = Dims {
                steps,
                batch,
                hidden,
                batch_first,
            };
            let n4 = 4 * hidden;
            let x = values(steps * batch * size, 1);
            let w_ih = values(n4 * size, 2);
            let w_hh: Vec<f32> = values(n4 * hidden, 3).iter().map(|v| v * 0.1).collect();
            let bias = values(n4, 4);
            let (h0, c0) = (values(dims.state_len(), 5), values(dims.state_len(), 6));
            // The projection of every row in the caller's layout.
            let projected: Vec<f32> = x
                .chunks_exact(size)
                .flat_map(|row| {
                    (0..n4).map(|k| {
                        (0..size).map(|j| row[j] * w_ih[k * size + j]).sum::<f32>() + bias[k]
                    })
                })
                .collect();
            let naive = Naive { w_hh: &w_hh, dims };
            let with_input = WithInput {
                naive: Naive { w_hh: &w_hh, dims },
                w_ih: &w_ih,
                bias: &bias,
            };
            for threads in [1, 2] {
                let pool = rayon::ThreadPoolBuilder::new()
                    .num_threads(threads)
                    .build()
                    .expect("a thread pool");
                for reverse in [false, true] {
                    let (a, b) = pool.install(|| {
                        let a = forward(
                            dims,
                            Input::Projected(&projected),
                            &h0,
                            &c0,
                            reverse,
                            false,
                            &naive,
                        );
                        let raw = Input::Raw { x: &x, size };
                        let b = forward(dims, raw, &h0, &c0, reverse, false, &with_input);
                        (a.states, b.states)
                    });
                    for (k, (a, b)) in a.iter().zip(&b).enumerate() {
                        assert!(
                            (a - b).abs() <= 1e-5 * (1.0 + a.abs()),
                            "{dims:?}, reverse {reverse}, {threads} threads: state {k}: {a} against {b}"
                        );
                    }
                }
            }
        }
    }

    fn values(len: usize, seed: u32) -> Vec<f32> {
        // A fixed, irregular sequence in (-1, 1).
        (0..len)
            .map(|k| ((k as f32 + 1.0) * 0.618_034 * (seed as f32 + 1.3)).sin())
            .collect()
    }

    /// L = Σ w_h · h_t + Σ w_c · c_t (fixed weights): its gradient with respect to the states
    /// is (w_h, w_c), so the backward pass can be checked against central differences.
    fn loss(
        dims: Dims,
        p: &[f32],
        w: &[f32],
        h0: &[f32],
        c0: &[f32],
        rev: bool,
        dl: &[f32],
    ) -> f64 {
        let fwd = forward(
            dims,
            Input::Projected(p),
            h0,
            c0,
            rev,
            false,
            &Naive { w_hh: w, dims },
        );
        fwd.states
            .iter()
            .zip(dl)
            .map(|(s, d)| f64::from(*s) * f64::from(*d))
            .sum()
    }

    #[test]
    fn backward_matches_finite_differences_in_both_directions() {
        // Hidden 3: one partial register per row; hidden 19: full registers and a partial one.
        for (steps, hidden, batch_first) in [(4, 3, false), (4, 3, true), (3, 19, true)] {
            check_gradients(Dims {
                steps,
                batch: 2,
                hidden,
                batch_first,
            });
        }
    }

    fn check_gradients(dims: Dims) {
        let p = values(dims.steps * dims.gates_len(), 1);
        let w: Vec<f32> = values(4 * dims.hidden * dims.hidden, 2)
            .iter()
            .map(|v| v * 0.5)
            .collect();
        let h0 = values(dims.state_len(), 3);
        let c0 = values(dims.state_len(), 4);
        let dl = values(2 * dims.steps * dims.state_len(), 5);
        for rev in [false, true] {
            let weights = Naive { w_hh: &w, dims };
            let fwd = forward(dims, Input::Projected(&p), &h0, &c0, rev, true, &weights);
            let gates = fwd.gates.as_deref().unwrap_or_default();
            let back = backward(dims, &dl, &fwd.states, gates, &h0, &c0, rev, &weights);
            let eps = 1e-2f32;
            let numeric = |x: &[f32], k: usize, f: &dyn Fn(&[f32]) -> f64| {
                let (mut up, mut down) = (x.to_vec(), x.to_vec());
                up[k] += eps;
                down[k] -= eps;
                (f(&up) - f(&down)) / (2.0 * f64::from(eps))
            };
            let check = |name: &str, got: f32, want: f64| {
                assert!(
                    (f64::from(got) - want).abs() <= 2e-3 * (1.0 + want.abs()),
                    "{name} (reverse {rev}, {dims:?}): analytic {got}, numeric {want}"
                );
            };
            for k in 0..p.len() {
                let want = numeric(&p, k, &|x| loss(dims, x, &w, &h0, &c0, rev, &dl));
                check("d_projected", back.d_projected[k], want);
            }
            for k in 0..h0.len() {
                let want = numeric(&h0, k, &|x| loss(dims, &p, &w, x, &c0, rev, &dl));
                check("d_h0", back.d_h0[k], want);
                let want = numeric(&c0, k, &|x| loss(dims, &p, &w, &h0, x, rev, &dl));
                check("d_c0", back.d_c0[k], want);
            }
            // d W_hh = d_projectedᵀ · h_prev.
            let (n4, hd, rows) = (4 * dims.hidden, dims.hidden, dims.steps * dims.batch);
            for k in 0..n4 {
                for j in 0..hd {
                    let got: f32 = (0..rows)
                        .map(|r| back.d_projected[r * n4 + k] * back.h_prev[r * hd + j])
                        .sum();
                    let want = numeric(&w, k * hd + j, &|x| loss(dims, &p, x, &h0, &c0, rev, &dl));
                    check("d_w_hh", got, want);
                }
            }
        }
    }

    #[test]
    fn rows_split_over_two_threads_give_the_values_of_one() {
        // 40 rows · 4 · 128 · 128 multiply-adds per step: above SPLIT_WORK, so a two-thread pool
        // splits at row 20 (every step for training, the whole batch for inference).
        let dims = Dims {
            steps: 3,
            batch: 40,
            hidden: 128,
            batch_first: true,
        };
        assert!(dims.gates_len() * dims.hidden >= SPLIT_WORK);
        let p = values(dims.steps * dims.gates_len(), 1);
        let w: Vec<f32> = values(4 * dims.hidden * dims.hidden, 2)
            .iter()
            .map(|v| v * 0.1)
            .collect();
        let (h0, c0) = (values(dims.state_len(), 3), values(dims.state_len(), 4));
        let dl = values(2 * dims.steps * dims.state_len(), 5);
        let run = |threads: usize| {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .expect("a thread pool");
            pool.install(|| {
                assert_eq!(split_rows(dims).is_some(), threads > 1);
                let weights = Naive { w_hh: &w, dims };
                let fwd = forward(dims, Input::Projected(&p), &h0, &c0, true, true, &weights);
                let gates = fwd.gates.clone().unwrap_or_default();
                let back = backward(dims, &dl, &fwd.states, &gates, &h0, &c0, true, &weights);
                // Without kept gates (inference) a batch-first recurrence splits the batch
                // into two recurrences instead of splitting every step.
                let inference =
                    forward(dims, Input::Projected(&p), &h0, &c0, true, false, &weights);
                assert!(inference.gates.is_none());
                let states = (fwd.states, inference.states);
                (states, gates, back.d_projected, back.d_h0, back.d_c0)
            })
        };
        assert!(run(2) == run(1), "two threads changed a value");
    }
}
