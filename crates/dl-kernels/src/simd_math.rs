//! `exp`, the logistic sigmoid and `tanh` for `f32`, written so that the compiler vectorises
//! them: no branches, no calls into libm, integer tricks instead of casts.
//!
//! Burn's flex backend calls glibc's scalar `expf`/`tanhf` per element; in an LSTM those were
//! 57% of the instructions (docs/performance.md). These are the Cephes single-precision
//! approximations (the ones Eigen, Sleef's `u10` variants and PyTorch's vectorised CPU kernels
//! are built on): a degree-6 polynomial for `exp` after reduction by `ln 2` split into two parts,
//! and for `tanh` an odd degree-11 polynomial below |x| = 0.625 and `1 − 2 / (exp(2|x|) + 1)`
//! above. Measured against `f64` over the whole range the LSTM sees (tests below): `exp` within
//! 2 ulp, `sigmoid` within 3e-7 relative, `tanh` within 3e-7 relative — the rounding of `f32`.
//!
//! Each function is `#[inline(always)]` so that it is inlined into the loop of its caller, which
//! runs inside [`pulp::Arch::dispatch`]: there the loop is compiled for the best instruction set
//! the CPU has (AVX-512 or AVX2 + FMA on x86-64), chosen at run time.

/// `log2(e)`.
const LOG2E: f32 = std::f32::consts::LOG2_E;
/// `ln 2` in two parts: `LN2_HI` has few enough mantissa bits that `n · LN2_HI` is exact.
const LN2_HI: f32 = 0.693_359_4;
const LN2_LO: f32 = -2.121_944_4e-4;
/// Inputs are clamped to this range so that `2^n` stays a normal `f32`
/// (`exp(88) ≈ 1.65e38 < f32::MAX`, `exp(-87) ≈ 1.6e-38 > f32::MIN_POSITIVE`).
const EXP_MAX: f32 = 88.0;
const EXP_MIN: f32 = -87.0;
/// `1.5 · 2^23`: adding it to a float with |value| < 2^22 leaves the rounded integer in the low
/// mantissa bits, which is how `2^n` is built without a float-to-int conversion.
const ROUND_MAGIC: f32 = 12_582_912.0;

/// `e^x` (clamped to `[e^-87, e^88]`).
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    let x = x.clamp(EXP_MIN, EXP_MAX);
    let n = (x * LOG2E + 0.5).floor();
    let r = x - n * LN2_HI - n * LN2_LO;
    let r2 = r * r;
    let p = ((((1.987_569_1e-4 * r + 1.398_199_9e-3) * r + 8.333_452e-3) * r + 4.166_579_6e-2) * r
        + 1.666_666_5e-1)
        * r
        + 5.000_000_1e-1;
    let y = p * r2 + r + 1.0;
    // n is an integer in [-126, 127]; its bits after adding ROUND_MAGIC are 0x4B40_0000 + n.
    let n_bits = (n + ROUND_MAGIC).to_bits().wrapping_sub(0x4B40_0000);
    let scale = f32::from_bits(n_bits.wrapping_add(127) << 23);
    y * scale
}

/// The logistic function `1 / (1 + e^-x)`.
#[inline(always)]
pub fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + exp(-x))
}

/// The hyperbolic tangent.
#[inline(always)]
pub fn tanh(x: f32) -> f32 {
    let ax = x.abs();
    // Small |x|: odd polynomial, full relative accuracy near 0.
    let z = x * x;
    let small =
        ((((-5.704_988_7e-3 * z + 2.063_908_9e-2) * z - 5.373_971_6e-2) * z + 1.333_144_2e-1) * z
            - 3.333_328_2e-1)
            * z
            * x
            + x;
    // Large |x|: 1 - 2 / (e^(2|x|) + 1), which tends to 1 without overflow (exp is clamped).
    let large = (1.0 - 2.0 / (exp(2.0 * ax) + 1.0)).copysign(x);
    if ax < 0.625 { small } else { large }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every 97th float between -30 and 30 plus the edges: about 10^6 values, dense near 0.
    fn samples() -> Vec<f32> {
        let mut out = vec![0.0, -0.0, 1e-30, -1e-30, 87.0, -87.0, 100.0, -100.0];
        let (lo, hi) = (30.0f32.to_bits(), 0u32);
        let mut bits = hi;
        while bits < lo {
            let v = f32::from_bits(bits);
            out.push(v);
            out.push(-v);
            bits += 97 * 1024;
        }
        out
    }

    fn rel_err(got: f32, want: f64) -> f64 {
        let diff = (f64::from(got) - want).abs();
        if want == 0.0 { diff } else { diff / want.abs() }
    }

    #[test]
    fn exp_is_within_two_ulp_where_it_is_a_normal_float() {
        let mut worst = 0.0f64;
        for x in samples() {
            if !(-87.0..=88.0).contains(&x) {
                continue;
            }
            worst = worst.max(rel_err(exp(x), f64::from(x).exp()));
        }
        // One ulp of f32 is 2^-23 ≈ 1.19e-7 relative.
        assert!(worst < 2.4e-7, "worst relative error {worst:e}");
    }

    #[test]
    fn exp_clamps_instead_of_overflowing() {
        assert!(exp(1000.0).is_finite());
        assert!(exp(-1000.0) > 0.0);
        assert_eq!(exp(0.0), 1.0);
    }

    #[test]
    fn sigmoid_and_tanh_match_f64() {
        let (mut worst_s, mut worst_t) = (0.0f64, 0.0f64);
        for x in samples() {
            let s = 1.0 / (1.0 + (-f64::from(x)).exp());
            // Below e^-87 the clamped exp stops following; compare absolutely there.
            if s > 1e-37 {
                worst_s = worst_s.max(rel_err(sigmoid(x), s));
            } else {
                assert!(sigmoid(x) < 1e-37);
            }
            worst_t = worst_t.max(rel_err(tanh(x), f64::from(x).tanh()));
        }
        assert!(worst_s < 3e-7, "sigmoid: worst relative error {worst_s:e}");
        assert!(worst_t < 3e-7, "tanh: worst relative error {worst_t:e}");
        assert_eq!(tanh(0.0), 0.0);
        assert_eq!(tanh(50.0), 1.0);
        assert_eq!(tanh(-50.0), -1.0);
    }
}
