//! `exp`, the logistic sigmoid and `tanh` on SIMD vectors of `f32`, for the fused kernels.
//!
//! Burn's flex backend calls glibc's scalar `expf`/`tanhf` per element; in an LSTM those were
//! 57% of the instructions (docs/performance.md). These are the Cephes single-precision
//! approximation of `exp` (the one Eigen, Sleef's `u10` variants and PyTorch's vectorised CPU
//! kernels are built on) and Eigen's rational `tanh`, written with [`pulp::Simd`] operations
//! only, so each call works on a whole register (8 lanes with AVX2, 16 with AVX-512) whatever
//! the compiler would have done with a scalar loop:
//! - `exp`: reduction by `ln 2` split into two parts, a degree-6 polynomial, and `2^n` built by
//!   integer arithmetic on the exponent bits (no float-to-int conversion, no `floor`);
//! - `sigmoid(x) = 1 / (1 + exp(−x))`;
//! - `tanh`: Eigen's rational approximation (an odd degree-13 numerator over an even degree-6
//!   denominator, one division and no exponential: an LSTM step takes two per unit), with
//!   `tanh x = x` for tiny and `±1` for large `|x|`.
//!
//! Measured against `f64` over ±30 (tests below): `exp` within 2 ulp, `sigmoid` and `tanh`
//! within 3e-7 relative (2.5 ulp), that is the rounding of `f32`; PyTorch's own vectorised
//! kernels are approximations of the same accuracy, so results agree within the parity
//! tolerances.
//!
//! The `*_in_place` functions apply one of them to a slice, choosing the instruction set at
//! run time with [`pulp::Arch::dispatch`].

// The coefficients are written as Cephes publishes them; some have a digit more than f32 holds.
#![allow(clippy::excessive_precision)]

use pulp::{Arch, Simd, WithSimd};

/// `log2(e)`.
const LOG2E: f32 = std::f32::consts::LOG2_E;
/// `ln 2` in two parts: `LN2_HI` has few enough mantissa bits that `n · LN2_HI` is exact.
const LN2_HI: f32 = 0.693_359_4;
const LN2_LO: f32 = -2.121_944_4e-4;
/// Inputs are clamped to this range so that `2^n` stays a normal `f32`
/// (`exp(88) ≈ 1.65e38 < f32::MAX`, `exp(-87) ≈ 1.6e-38 > f32::MIN_POSITIVE`).
const EXP_MAX: f32 = 88.0;
const EXP_MIN: f32 = -87.0;
/// `1.5 · 2^23`: adding it to a float with |value| < 2^22 rounds the value to an integer `n`
/// and leaves `0x4B40_0000 + n` in the sum's bits, which is how `2^n` is built.
const ROUND_MAGIC: f32 = 12_582_912.0;
/// The bits of `ROUND_MAGIC` less the exponent bias 127: `bits(t) − this` is `n + 127`.
const MAGIC_BITS_LESS_BIAS: u32 = 0x4B40_0000 - 127;

/// `e^x` lane by lane (clamped to `[e^-87, e^88]`).
#[inline(always)]
pub fn exp<S: Simd>(s: S, x: S::f32s) -> S::f32s {
    let x = s.min_f32s(s.max_f32s(x, s.splat_f32s(EXP_MIN)), s.splat_f32s(EXP_MAX));
    let t = s.mul_add_f32s(x, s.splat_f32s(LOG2E), s.splat_f32s(ROUND_MAGIC));
    let n = s.sub_f32s(t, s.splat_f32s(ROUND_MAGIC));
    let r = s.negate_mul_add_f32s(n, s.splat_f32s(LN2_HI), x);
    let r = s.negate_mul_add_f32s(n, s.splat_f32s(LN2_LO), r);
    let mut p = s.splat_f32s(1.987_569_1e-4);
    for c in [
        1.398_199_9e-3,
        8.333_452e-3,
        4.166_579_6e-2,
        1.666_666_5e-1,
        5.000_000_1e-1,
    ] {
        p = s.mul_add_f32s(p, r, s.splat_f32s(c));
    }
    let y = s.add_f32s(s.mul_add_f32s(p, s.mul_f32s(r, r), r), s.splat_f32s(1.0));
    // (n + 127) << 23 is 2^n as f32 bits; the shift is a multiplication by 2^23.
    let biased = s.sub_u32s(s.transmute_u32s_f32s(t), s.splat_u32s(MAGIC_BITS_LESS_BIAS));
    let scale = s.transmute_f32s_u32s(s.mul_u32s(biased, s.splat_u32s(1 << 23)));
    s.mul_f32s(y, scale)
}

/// The logistic function `1 / (1 + e^-x)` lane by lane.
#[inline(always)]
pub fn sigmoid<S: Simd>(s: S, x: S::f32s) -> S::f32s {
    let one = s.splat_f32s(1.0);
    s.div_f32s(one, s.add_f32s(one, exp(s, s.neg_f32s(x))))
}

/// The hyperbolic tangent lane by lane: Eigen's 13/6-degree rational approximation on
/// `|x| ≤ 7.905` (one division, no exponential), `x` itself below `|x| = 4·10⁻⁴` (where the
/// rational form would lose subnormal inputs, and `tanh x = x` in f32), `±1` from `|x| = 9`.
#[inline(always)]
pub fn tanh<S: Simd>(s: S, x: S::f32s) -> S::f32s {
    let limit = s.splat_f32s(TANH_CLAMP);
    let clamped = s.min_f32s(s.max_f32s(x, s.neg_f32s(limit)), limit);
    let x2 = s.mul_f32s(clamped, clamped);
    let [top, numerator @ ..] = TANH_NUMERATOR;
    let mut p = s.splat_f32s(top);
    for c in numerator {
        p = s.mul_add_f32s(p, x2, s.splat_f32s(c));
    }
    let p = s.mul_f32s(p, clamped);
    let [top, denominator @ ..] = TANH_DENOMINATOR;
    let mut q = s.splat_f32s(top);
    for c in denominator {
        q = s.mul_add_f32s(q, x2, s.splat_f32s(c));
    }
    let ax = s.abs_f32s(x);
    let ratio = s.select_f32s(
        s.less_than_f32s(ax, s.splat_f32s(4e-4)),
        x,
        s.div_f32s(p, q),
    );
    // From 9 on tanh rounds to ±1 in f32; the clamped ratio stops a few ulp short of it.
    let one = s.or_f32s(s.splat_f32s(1.0), s.and_f32s(x, s.splat_f32s(-0.0)));
    s.select_f32s(s.less_than_f32s(ax, s.splat_f32s(9.0)), ratio, one)
}

/// Where [`tanh`]'s rational approximation is clamped.
const TANH_CLAMP: f32 = 7.905_311;
/// The odd numerator `x · P(x²)` of [`tanh`], highest degree first (Eigen's `ptanh_float`).
const TANH_NUMERATOR: [f32; 7] = [
    -2.760_768_5e-16,
    2.000_188e-13,
    -8.604_672e-11,
    5.122_297e-8,
    1.485_722_4e-5,
    6.372_619e-4,
    4.893_524_6e-3,
];
/// The even denominator `Q(x²)` of [`tanh`], highest degree first.
const TANH_DENOMINATOR: [f32; 4] = [1.198_258_4e-6, 1.185_347e-4, 2.268_434_6e-3, 4.893_525e-3];

/// Loads `values` (at most one register's worth), zeros past the end. A full register is one
/// unaligned load; only a partial one goes through pulp's masked load (an out-of-line call).
#[inline(always)]
pub(crate) fn load<S: Simd>(s: S, values: &[f32]) -> S::f32s {
    if values.len() == S::F32_LANES {
        bytemuck::pod_read_unaligned(bytemuck::cast_slice(values))
    } else {
        s.partial_load_f32s(values)
    }
}

/// Stores the first `out.len()` lanes of `v` (at most one register's worth).
#[inline(always)]
pub(crate) fn store<S: Simd>(s: S, out: &mut [f32], v: S::f32s) {
    if out.len() == S::F32_LANES {
        bytemuck::cast_slice_mut::<f32, u8>(out).copy_from_slice(bytemuck::bytes_of(&v));
    } else {
        s.partial_store_f32s(out, v);
    }
}

/// Which function [`apply_in_place`] applies.
#[derive(Debug, Clone, Copy)]
enum Function {
    Exp,
    Sigmoid,
    Tanh,
}

struct InPlace<'a> {
    function: Function,
    values: &'a mut [f32],
}

impl WithSimd for InPlace<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: Simd>(self, s: S) {
        for chunk in self.values.chunks_mut(S::F32_LANES) {
            let x = load(s, chunk);
            let y = match self.function {
                Function::Exp => exp(s, x),
                Function::Sigmoid => sigmoid(s, x),
                Function::Tanh => tanh(s, x),
            };
            store(s, chunk, y);
        }
    }
}

fn apply_in_place(function: Function, values: &mut [f32]) {
    Arch::new().dispatch(InPlace { function, values });
}

/// Replace every value by its exponential (clamped to `[e^-87, e^88]`).
///
/// ```
/// let mut v = [0.0, 1.0, -1.0];
/// dl_kernels::simd_math::exp_in_place(&mut v);
/// assert_eq!(v[0], 1.0);
/// assert!((v[1] - std::f32::consts::E).abs() < 1e-6);
/// ```
pub fn exp_in_place(values: &mut [f32]) {
    apply_in_place(Function::Exp, values);
}

/// Replace every value by its logistic sigmoid.
///
/// ```
/// let mut v = [0.0, 40.0];
/// dl_kernels::simd_math::sigmoid_in_place(&mut v);
/// assert_eq!(v, [0.5, 1.0]);
/// ```
pub fn sigmoid_in_place(values: &mut [f32]) {
    apply_in_place(Function::Sigmoid, values);
}

/// Replace every value by its hyperbolic tangent.
///
/// ```
/// let mut v = [0.0, 20.0, -20.0];
/// dl_kernels::simd_math::tanh_in_place(&mut v);
/// assert_eq!(v, [0.0, 1.0, -1.0]);
/// ```
pub fn tanh_in_place(values: &mut [f32]) {
    apply_in_place(Function::Tanh, values);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every 97·1024th float between 0 and 30, both signs, plus the edges: dense near 0.
    fn samples() -> Vec<f32> {
        let mut out = vec![0.0, -0.0, 1e-30, -1e-30, 87.0, -87.0, 100.0, -100.0];
        let mut bits = 0u32;
        while bits < 30.0f32.to_bits() {
            let v = f32::from_bits(bits);
            out.push(v);
            out.push(-v);
            bits += 97 * 1024;
        }
        // An odd count, so that the last register is partial.
        out.push(0.5);
        out
    }

    fn rel_err(got: f32, want: f64) -> f64 {
        let diff = (f64::from(got) - want).abs();
        if want == 0.0 { diff } else { diff / want.abs() }
    }

    fn mapped(f: fn(&mut [f32])) -> (Vec<f32>, Vec<f32>) {
        let xs = samples();
        let mut ys = xs.clone();
        f(&mut ys);
        (xs, ys)
    }

    #[test]
    fn exp_is_within_two_ulp_where_it_is_a_normal_float() {
        let (xs, ys) = mapped(exp_in_place);
        let mut worst = 0.0f64;
        for (x, y) in xs.into_iter().zip(ys) {
            if (-87.0..=88.0).contains(&x) {
                worst = worst.max(rel_err(y, f64::from(x).exp()));
            }
        }
        // One ulp of f32 is 2^-23 ≈ 1.19e-7 relative.
        assert!(worst < 2.4e-7, "worst relative error {worst:e}");
    }

    #[test]
    fn exp_clamps_instead_of_overflowing() {
        let mut v = [1000.0, -1000.0, 0.0, f32::MAX];
        exp_in_place(&mut v);
        assert!(v[0].is_finite() && v[3].is_finite());
        assert!(v[1] > 0.0);
        assert_eq!(v[2], 1.0);
    }

    #[test]
    fn sigmoid_and_tanh_match_f64() {
        let (xs, sig) = mapped(sigmoid_in_place);
        let (_, th) = mapped(tanh_in_place);
        let (mut worst_s, mut worst_t) = (0.0f64, 0.0f64);
        for ((x, s), t) in xs.into_iter().zip(sig).zip(th) {
            let want = 1.0 / (1.0 + (-f64::from(x)).exp());
            // Below e^-87 the clamped exp stops following; compare absolutely there.
            if want > 1e-37 {
                worst_s = worst_s.max(rel_err(s, want));
            } else {
                assert!(s < 1e-37, "sigmoid({x}) = {s}");
            }
            worst_t = worst_t.max(rel_err(t, f64::from(x).tanh()));
        }
        assert!(worst_s < 3e-7, "sigmoid: worst relative error {worst_s:e}");
        assert!(worst_t < 3e-7, "tanh: worst relative error {worst_t:e}");
    }
}
