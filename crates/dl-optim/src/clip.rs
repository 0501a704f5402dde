//! Gradient clipping with the semantics of `torch.nn.utils.clip_grad_norm_` and
//! `clip_grad_value_`, over every parameter of a module.
//!
//! Unlike Burn's per-parameter `GradientClipping`, clipping by norm here uses the norm of all
//! gradients together, as PyTorch does, and returns it.

use burn::module::{Module, ModuleVisitor, Param};
use burn::optim::GradientsParams;
use burn::tensor::{Device, Tensor};
use dl_core::validate::non_negative;
use dl_core::{Error, Result};
use serde::{Deserialize, Serialize};

/// Which vector norm [`clip_grad_norm`] measures (PyTorch's `norm_type`).
///
/// Serialised as `"two"`, `"inf"` or `{"p": 1.0}`.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NormType {
    /// The Euclidean norm, PyTorch's default `2.0`.
    #[default]
    Two,
    /// The largest absolute value, `float('inf')`.
    Inf,
    /// `(sum |g|^p)^(1/p)` for a finite `p > 0`.
    P(f64),
}

impl NormType {
    fn validate(self) -> Result<Self> {
        match self {
            NormType::P(p) if !(p > 0.0 && p.is_finite()) => Err(Error::invalid(
                "gradient clipping norm_type",
                "p > 0 and finite (use NormType::Inf for the maximum norm)",
                p,
            )),
            NormType::P(2.0) => Ok(NormType::Two),
            other => Ok(other),
        }
    }

    /// The norm of one tensor, as a one-element tensor.
    fn of<const D: usize>(self, tensor: Tensor<D>) -> Tensor<1> {
        match self {
            NormType::Two => tensor.square().sum().sqrt(),
            NormType::Inf => tensor.abs().max(),
            NormType::P(p) => tensor.abs().powf_scalar(p).sum().powf_scalar(1.0 / p),
        }
    }
}

/// Gradient clipping as written in a configuration file.
///
/// ```
/// use dl_optim::{GradClip, NormType};
/// let clip: GradClip = serde_json::from_str(r#"{"type": "norm", "max_norm": 1.0}"#).unwrap();
/// assert_eq!(clip, GradClip::Norm { max_norm: 1.0, norm_type: NormType::Two, error_if_nonfinite: false });
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum GradClip {
    /// [`clip_grad_norm`]: scale every gradient so that their total norm is at most `max_norm`.
    Norm {
        /// The largest total norm let through.
        max_norm: f64,
        /// The norm measured.
        #[serde(default)]
        norm_type: NormType,
        /// Return [`Error::NonFinite`] instead of clipping when the total norm is NaN or
        /// infinite (PyTorch's `error_if_nonfinite`, default off).
        #[serde(default)]
        error_if_nonfinite: bool,
    },
    /// [`clip_grad_value`]: clamp every gradient element to `[-clip_value, clip_value]`.
    Value {
        /// The largest absolute gradient value let through.
        clip_value: f64,
    },
}

impl GradClip {
    /// Clip `grads` of `module`; returns the clipped gradients and, when clipping by norm, the
    /// total norm before clipping.
    pub fn apply<M: Module>(
        &self,
        module: &M,
        grads: GradientsParams,
    ) -> Result<(GradientsParams, Option<f64>)> {
        match *self {
            GradClip::Norm {
                max_norm,
                norm_type,
                error_if_nonfinite,
            } => {
                let (grads, norm) =
                    clip_norm(module, grads, max_norm, norm_type, error_if_nonfinite)?;
                Ok((grads, Some(norm)))
            }
            GradClip::Value { clip_value } => {
                Ok((clip_grad_value(module, grads, clip_value)?, None))
            }
        }
    }
}

/// Scale all gradients of `module` by `min(1, max_norm / (total_norm + 1e-6))`, where
/// `total_norm` is the `norm_type` norm of all gradients seen as one vector; returns the
/// scaled gradients and `total_norm` (before scaling), as `torch.nn.utils.clip_grad_norm_`.
///
/// Parameters without a gradient are left out. A non-finite total norm is not an error (it
/// scales the gradients to zeros or NaNs as PyTorch does); use [`GradClip::Norm`] with
/// `error_if_nonfinite` to refuse it.
///
/// Errors: `max_norm` negative or NaN, or `NormType::P(p)` with `p <= 0` or not finite.
///
/// ```
/// use burn::module::{Module, Param};
/// use burn::optim::GradientsParams;
/// use burn::tensor::Tensor;
/// use dl_optim::{clip_grad_norm, NormType};
///
/// #[derive(Module, Debug)]
/// struct Pair { a: Param<Tensor<1>>, b: Param<Tensor<1>> }
///
/// let device = dl_core::BackendKind::Flex.autodiff_device()?;
/// let pair = Pair {
///     a: Param::from_tensor(Tensor::from_floats([1.0], &device)),
///     b: Param::from_tensor(Tensor::from_floats([1.0], &device)),
/// };
/// // d/da (3a + 4b) = 3, d/db = 4: total norm 5.
/// let loss = pair.a.val().mul_scalar(3.0) + pair.b.val().mul_scalar(4.0);
/// let grads = GradientsParams::from_grads(loss.backward(), &pair);
/// let (grads, norm) = clip_grad_norm(&pair, grads, 1.0, NormType::Two)?;
/// assert!((norm - 5.0).abs() < 1e-6);
/// let ga = grads.get::<1>(pair.a.id).unwrap().into_scalar::<f32>();
/// assert!((ga - 0.6).abs() < 1e-6);
/// # Ok::<(), dl_core::Error>(())
/// ```
pub fn clip_grad_norm<M: Module>(
    module: &M,
    grads: GradientsParams,
    max_norm: f64,
    norm_type: NormType,
) -> Result<(GradientsParams, f64)> {
    clip_norm(module, grads, max_norm, norm_type, false)
}

fn clip_norm<M: Module>(
    module: &M,
    mut grads: GradientsParams,
    max_norm: f64,
    norm_type: NormType,
    error_if_nonfinite: bool,
) -> Result<(GradientsParams, f64)> {
    if max_norm.is_nan() || max_norm < 0.0 {
        return Err(Error::invalid(
            "gradient clipping max_norm",
            "a number >= 0",
            max_norm,
        ));
    }
    let norm_type = norm_type.validate()?;

    let mut collector = NormCollector {
        grads: &grads,
        norm_type,
        norms: Vec::new(),
        device: None,
    };
    module.visit(&mut collector);
    let NormCollector { norms, device, .. } = collector;
    let Some(device) = device else {
        // No gradients: PyTorch returns a total norm of 0 and changes nothing.
        return Ok((grads, 0.0));
    };
    let norms = norms.into_iter().map(|n| n.to_device(&device)).collect();
    let total = norm_type.of(Tensor::cat(norms, 0)).into_scalar::<f32>();

    if error_if_nonfinite && !total.is_finite() {
        return Err(Error::NonFinite {
            what: format!("total gradient norm ({norm_type:?}) for clipping"),
            value: f64::from(total),
        });
    }
    // PyTorch, in f32: clip_coef = max_norm / (total_norm + 1e-6), where `float / tensor` is
    // `tensor.reciprocal() * float`; then clamp(max=1), which keeps a NaN.
    let coef = (1.0f32 / (total + 1e-6f32)) * max_norm as f32;
    let coef = if coef.is_nan() { coef } else { coef.min(1.0) };

    module.visit(&mut GradMapper {
        grads: &mut grads,
        op: GradOp::Scale(coef),
    });
    Ok((grads, f64::from(total)))
}

/// Clamp every gradient element of `module` to `[-clip_value, clip_value]`, as
/// `torch.nn.utils.clip_grad_value_`.
///
/// Errors: `clip_value` negative or NaN (PyTorch would clamp everything to `clip_value`).
///
/// ```
/// use burn::module::{Module, Param};
/// use burn::optim::GradientsParams;
/// use burn::tensor::Tensor;
///
/// #[derive(Module, Debug)]
/// struct One { w: Param<Tensor<1>> }
///
/// let device = dl_core::BackendKind::Flex.autodiff_device()?;
/// let one = One { w: Param::from_tensor(Tensor::from_floats([1.0, 1.0], &device)) };
/// let loss = (one.w.val() * Tensor::from_floats([3.0, -0.5], &device)).sum();
/// let grads = GradientsParams::from_grads(loss.backward(), &one);
/// let grads = dl_optim::clip_grad_value(&one, grads, 1.0)?;
/// let g = grads.get::<1>(one.w.id).unwrap().into_data().try_to_vec::<f32>().unwrap();
/// assert_eq!(g, vec![1.0, -0.5]);
/// # Ok::<(), dl_core::Error>(())
/// ```
pub fn clip_grad_value<M: Module>(
    module: &M,
    mut grads: GradientsParams,
    clip_value: f64,
) -> Result<GradientsParams> {
    non_negative_or_inf("gradient clipping clip_value", clip_value)?;
    module.visit(&mut GradMapper {
        grads: &mut grads,
        op: GradOp::Clamp(clip_value as f32),
    });
    Ok(grads)
}

fn non_negative_or_inf(what: &str, value: f64) -> Result<()> {
    if value == f64::INFINITY {
        Ok(())
    } else {
        non_negative(what, value)
    }
}

/// Visits every float parameter and computes the norm of its gradient, if it has one.
struct NormCollector<'a> {
    grads: &'a GradientsParams,
    norm_type: NormType,
    norms: Vec<Tensor<1>>,
    device: Option<Device>,
}

impl ModuleVisitor for NormCollector<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        if let Some(grad) = self.grads.get::<D>(param.id) {
            self.device.get_or_insert_with(|| grad.device());
            self.norms.push(self.norm_type.of(grad));
        }
    }
}

/// The element-wise change clipping makes to every gradient.
#[derive(Clone, Copy)]
enum GradOp {
    /// Multiply by a coefficient.
    Scale(f32),
    /// Clamp to `[-v, v]`.
    Clamp(f32),
}

/// Visits every float parameter and replaces its gradient, if it has one, by `op(gradient)`.
struct GradMapper<'a> {
    grads: &'a mut GradientsParams,
    op: GradOp,
}

impl ModuleVisitor for GradMapper<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        if let Some(grad) = self.grads.remove::<D>(param.id) {
            let grad = match self.op {
                GradOp::Scale(coef) => grad.mul_scalar(coef),
                GradOp::Clamp(value) => grad.clamp(-value, value),
            };
            self.grads.register(param.id, grad);
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use dl_core::BackendKind;

    #[derive(Module, Debug)]
    struct Pair {
        a: Param<Tensor<1>>,
        b: Param<Tensor<2>>,
    }

    /// Gradients a = [3], b = [[0, -4]] (loss 3a - 4 b[1]), plus the module.
    fn pair_with_grads() -> (Pair, GradientsParams) {
        let device = BackendKind::Flex.autodiff_device().unwrap();
        let pair = Pair {
            a: Param::from_tensor(Tensor::from_floats([1.0], &device)),
            b: Param::from_tensor(Tensor::from_floats([[1.0, 1.0]], &device)),
        };
        let weights = Tensor::<2>::from_floats([[0.0, -4.0]], &device);
        let loss = pair.a.val().mul_scalar(3.0).sum() + (pair.b.val() * weights).sum();
        let grads = GradientsParams::from_grads(loss.backward(), &pair);
        (pair, grads)
    }

    fn values(pair: &Pair, grads: &GradientsParams) -> Vec<f32> {
        let mut v = grads
            .get::<1>(pair.a.id)
            .unwrap()
            .into_data()
            .try_to_vec::<f32>()
            .unwrap();
        v.extend(
            grads
                .get::<2>(pair.b.id)
                .unwrap()
                .into_data()
                .try_to_vec::<f32>()
                .unwrap(),
        );
        v
    }

    #[test]
    fn total_norm_over_all_parameters_by_hand() {
        // |(3, 0, -4)|: 2-norm 5, inf-norm 4, 1-norm 7, 3-norm (27 + 64)^(1/3).
        let cases = [
            (NormType::Two, 5.0),
            (NormType::Inf, 4.0),
            (NormType::P(1.0), 7.0),
            (NormType::P(3.0), 91f64.powf(1.0 / 3.0)),
        ];
        for (norm_type, expected) in cases {
            let (pair, grads) = pair_with_grads();
            let (grads, norm) = clip_grad_norm(&pair, grads, 1.0, norm_type).unwrap();
            assert!((norm - expected).abs() < 1e-5, "{norm_type:?}: {norm}");
            // Every gradient scaled by 1 / (norm + 1e-6).
            let coef = 1.0 / (expected + 1e-6);
            let got = values(&pair, &grads);
            let want = [3.0 * coef, 0.0, -4.0 * coef];
            for (g, w) in got.iter().zip(want) {
                assert!((f64::from(*g) - w).abs() < 1e-6, "{norm_type:?}: {got:?}");
            }
        }
    }

    #[test]
    fn small_gradients_pass_unchanged() {
        let (pair, grads) = pair_with_grads();
        let (grads, norm) = clip_grad_norm(&pair, grads, 10.0, NormType::Two).unwrap();
        assert!((norm - 5.0).abs() < 1e-6);
        assert_eq!(values(&pair, &grads), vec![3.0, 0.0, -4.0]);
    }

    #[test]
    fn no_gradients_give_norm_zero() {
        let (pair, _) = pair_with_grads();
        let (grads, norm) =
            clip_grad_norm(&pair, GradientsParams::new(), 1.0, NormType::Two).unwrap();
        assert_eq!(norm, 0.0);
        assert!(grads.is_empty());
    }

    #[test]
    fn non_finite_norm_is_an_error_only_when_asked() {
        let device = BackendKind::Flex.autodiff_device().unwrap();
        let pair = Pair {
            a: Param::from_tensor(Tensor::from_floats([1.0], &device)),
            b: Param::from_tensor(Tensor::from_floats([[1.0, 1.0]], &device)),
        };
        let grads = || {
            let loss = pair.a.val().mul_scalar(f32::INFINITY).sum() + pair.b.val().sum();
            GradientsParams::from_grads(loss.backward(), &pair)
        };
        let strict = GradClip::Norm {
            max_norm: 1.0,
            norm_type: NormType::Two,
            error_if_nonfinite: true,
        };
        let err = strict.apply(&pair, grads()).unwrap_err();
        assert!(matches!(err, Error::NonFinite { .. }), "{err}");
        // Off (the default): clipped as PyTorch does, coefficient 1 / inf = 0.
        let (clipped, norm) = clip_grad_norm(&pair, grads(), 1.0, NormType::Two).unwrap();
        assert_eq!(norm, f64::INFINITY);
        let b = clipped
            .get::<2>(pair.b.id)
            .unwrap()
            .into_data()
            .try_to_vec::<f32>()
            .unwrap();
        assert_eq!(b, vec![0.0, 0.0]);
    }

    #[test]
    fn invalid_settings_are_errors() {
        let grads = || pair_with_grads().1;
        let (pair, _) = pair_with_grads();
        let err = clip_grad_norm(&pair, grads(), -1.0, NormType::Two).unwrap_err();
        assert!(err.to_string().contains("max_norm"), "{err}");
        assert!(clip_grad_norm(&pair, grads(), f64::NAN, NormType::Two).is_err());
        let err = clip_grad_norm(&pair, grads(), 1.0, NormType::P(0.0)).unwrap_err();
        assert!(err.to_string().contains("norm_type"), "{err}");
        assert!(clip_grad_norm(&pair, grads(), 1.0, NormType::P(f64::INFINITY)).is_err());
        let err = clip_grad_value(&pair, grads(), -0.5).unwrap_err();
        assert!(err.to_string().contains("clip_value"), "{err}");
    }

    #[test]
    fn clip_by_value_clamps_each_element() {
        let (pair, grads) = pair_with_grads();
        let (grads, norm) = GradClip::Value { clip_value: 3.5 }
            .apply(&pair, grads)
            .unwrap();
        assert_eq!(norm, None);
        assert_eq!(values(&pair, &grads), vec![3.0, 0.0, -3.5]);
    }

    #[test]
    fn config_reads_pytorch_style_json() {
        let clip: GradClip =
            serde_json::from_str(r#"{"type": "norm", "max_norm": 0.5, "norm_type": {"p": 1.5}}"#)
                .unwrap();
        assert_eq!(
            clip,
            GradClip::Norm {
                max_norm: 0.5,
                norm_type: NormType::P(1.5),
                error_if_nonfinite: false
            }
        );
        let clip: GradClip =
            serde_json::from_str(r#"{"type": "value", "clip_value": 2.0}"#).unwrap();
        assert_eq!(clip, GradClip::Value { clip_value: 2.0 });
    }
}
