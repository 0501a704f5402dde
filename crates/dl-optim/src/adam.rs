//! Adam with PyTorch's update rule (`torch.optim.Adam`), and the moment update AdamW shares.

use burn::config::Config;
use burn::optim::{ModuleOptimizer, Optimizer, RecordState, StateSink, StateSource};
use burn::tensor::{Device, Tensor};
use dl_core::Result;
use dl_core::validate::{non_negative, unit_half_open};

use crate::record::{push_count, push_optional_tensor, push_tensor, take_count, take_tensor};

/// Configuration of [`Adam`], with `torch.optim.Adam`'s defaults.
///
/// Unlike Burn's own Adam, `eps` defaults to 1e-8 (Burn: 1e-5) and is added *after* the
/// bias-corrected square root, as PyTorch does; weight decay is the L2 penalty added to the
/// gradient (see [`AdamWConfig`](crate::AdamWConfig) for decoupled decay).
///
/// ```
/// use dl_optim::AdamConfig;
/// let optimizer = AdamConfig::new().with_lr(3e-4).with_amsgrad(true).init()?;
/// assert!(AdamConfig::new().with_betas((0.9, 1.0)).init().is_err());
/// # let _ = optimizer;
/// # Ok::<(), dl_core::Error>(())
/// ```
#[derive(Config, Debug)]
pub struct AdamConfig {
    /// Learning rate to pass to `step` when no schedule drives it (PyTorch default 1e-3).
    #[config(default = 1e-3)]
    pub lr: f64,
    /// Decay rates `(beta1, beta2)` of the first and second moment averages, each in `[0, 1)`.
    #[config(default = "(0.9, 0.999)")]
    pub betas: (f64, f64),
    /// Added to the denominator for numerical stability.
    #[config(default = 1e-8)]
    pub eps: f64,
    /// L2 penalty: `weight_decay * param` is added to the gradient.
    #[config(default = 0.0)]
    pub weight_decay: f64,
    /// Use the running maximum of the second moment (AMSGrad).
    #[config(default = false)]
    pub amsgrad: bool,
}

impl AdamConfig {
    /// Check every setting against PyTorch's rules: `lr`, `eps` and `weight_decay` finite and
    /// `>= 0`, both betas in `[0, 1)`.
    pub fn validate(&self) -> Result<()> {
        validate_adam("Adam", self.lr, self.betas, self.eps, self.weight_decay)
    }

    /// The per-tensor optimizer, for
    /// [`ModuleOptimizer::with_group`](burn::optim::ModuleOptimizer::with_group).
    pub fn build(&self) -> Result<Adam> {
        self.validate()?;
        Ok(Adam {
            rule: AdamRule {
                beta_1: self.betas.0,
                beta_2: self.betas.1,
                eps: self.eps,
                weight_decay: self.weight_decay,
                amsgrad: self.amsgrad,
                decoupled_weight_decay: false,
            },
        })
    }

    /// An optimizer for a whole module: `optimizer.step(lr, module, grads)`.
    pub fn init(&self) -> Result<ModuleOptimizer> {
        Ok(ModuleOptimizer::from(self.build()?))
    }
}

pub(crate) fn validate_adam(
    name: &str,
    lr: f64,
    betas: (f64, f64),
    eps: f64,
    weight_decay: f64,
) -> Result<()> {
    non_negative(&format!("{name} lr"), lr)?;
    non_negative(&format!("{name} eps"), eps)?;
    unit_half_open(&format!("{name} beta_1 (betas.0)"), betas.0)?;
    unit_half_open(&format!("{name} beta_2 (betas.1)"), betas.1)?;
    non_negative(&format!("{name} weight_decay"), weight_decay)
}

/// Adam (Kingma and Ba, 2014), optionally with AMSGrad and L2 weight decay.
///
/// For each parameter `p` with gradient `g`, at step `t` (from 1), exactly as
/// `torch.optim.Adam`'s single-tensor path:
///
/// ```text
/// g = g + weight_decay * p                              (if weight_decay != 0)
/// m = m.lerp(g, 1 - beta1)
/// v = beta2 * v + (1 - beta2) * g * g
/// v_max = max(v_max, v)                                 (AMSGrad; v_max starts at 0)
/// step_size = lr / (1 - beta1^t)                        (in f64)
/// denom = sqrt(v or v_max) / sqrt(1 - beta2^t) + eps
/// p = p - step_size * m / denom
/// ```
#[derive(Clone, Debug)]
pub struct Adam {
    rule: AdamRule,
}

/// Per-parameter state of [`Adam`] and [`AdamW`](crate::AdamW), as PyTorch names it.
#[derive(Clone, Debug)]
pub struct AdamState<const D: usize> {
    /// Number of steps taken (PyTorch's `step`).
    pub step: usize,
    /// First moment running average (`exp_avg`).
    pub exp_avg: Tensor<D>,
    /// Second moment running average (`exp_avg_sq`).
    pub exp_avg_sq: Tensor<D>,
    /// Running maximum of `exp_avg_sq` (`max_exp_avg_sq`), only with AMSGrad.
    pub max_exp_avg_sq: Option<Tensor<D>>,
}

impl<const D: usize> RecordState for AdamState<D> {
    fn state_flatten(&self, prefix: &str, out: &mut StateSink) {
        push_count(out, prefix, "step", self.step);
        push_tensor(out, prefix, "exp_avg", &self.exp_avg);
        push_tensor(out, prefix, "exp_avg_sq", &self.exp_avg_sq);
        push_optional_tensor(out, prefix, "max_exp_avg_sq", self.max_exp_avg_sq.as_ref());
    }

    fn state_unflatten(prefix: &str, src: &mut StateSource, device: &Device) -> Option<Self> {
        Some(Self {
            step: take_count(src, prefix, "step")?,
            exp_avg: take_tensor(src, prefix, "exp_avg", device)?,
            exp_avg_sq: take_tensor(src, prefix, "exp_avg_sq", device)?,
            max_exp_avg_sq: take_tensor(src, prefix, "max_exp_avg_sq", device),
        })
    }
}

impl<const D: usize> AdamState<D> {
    pub(crate) fn moved_to(self, device: &Device) -> Self {
        Self {
            step: self.step,
            exp_avg: self.exp_avg.to_device(device),
            exp_avg_sq: self.exp_avg_sq.to_device(device),
            max_exp_avg_sq: self.max_exp_avg_sq.map(|t| t.to_device(device)),
        }
    }
}

/// The Adam update shared by [`Adam`] (L2 decay) and [`AdamW`](crate::AdamW) (decoupled decay).
#[derive(Clone, Debug)]
pub(crate) struct AdamRule {
    pub(crate) beta_1: f64,
    pub(crate) beta_2: f64,
    pub(crate) eps: f64,
    pub(crate) weight_decay: f64,
    pub(crate) amsgrad: bool,
    pub(crate) decoupled_weight_decay: bool,
}

impl AdamRule {
    pub(crate) fn step<const D: usize>(
        &self,
        lr: f64,
        param: Tensor<D>,
        grad: Tensor<D>,
        state: Option<AdamState<D>>,
    ) -> (Tensor<D>, AdamState<D>) {
        let mut param = param;
        let mut grad = grad;
        // PyTorch initialises the moments (and AMSGrad's maximum) to zeros, so the first step
        // runs the same arithmetic as every later one.
        let AdamState {
            step,
            exp_avg,
            exp_avg_sq,
            max_exp_avg_sq,
        } = state.unwrap_or_else(|| AdamState {
            step: 0,
            exp_avg: param.zeros_like(),
            exp_avg_sq: param.zeros_like(),
            max_exp_avg_sq: None,
        });
        let step = step + 1;

        if self.weight_decay != 0.0 {
            if self.decoupled_weight_decay {
                param = param.mul_scalar(1.0 - lr * self.weight_decay);
            } else {
                grad = grad.add(param.clone().mul_scalar(self.weight_decay));
            }
        }

        let exp_avg = lerp(exp_avg, grad.clone(), 1.0 - self.beta_1);
        let exp_avg_sq = exp_avg_sq
            .mul_scalar(self.beta_2)
            .add(grad.clone().mul_scalar(1.0 - self.beta_2).mul(grad));

        // Python floats: the bias corrections and the step size are computed in f64.
        let t = step as f64;
        let bias_correction_1 = 1.0 - self.beta_1.powf(t);
        let bias_correction_2 = 1.0 - self.beta_2.powf(t);
        let step_size = lr / bias_correction_1;
        let bias_correction_2_sqrt = bias_correction_2.powf(0.5);

        let (max_exp_avg_sq, second_moment) = if self.amsgrad {
            let previous = max_exp_avg_sq.unwrap_or_else(|| exp_avg_sq.zeros_like());
            let max = previous.max_pair(exp_avg_sq.clone());
            (Some(max.clone()), max)
        } else {
            (None, exp_avg_sq.clone())
        };
        let denom = second_moment
            .sqrt()
            .div_scalar(bias_correction_2_sqrt)
            .add_scalar(self.eps);
        // param.addcdiv_(exp_avg, denom, value=-step_size): param + (-step_size * m) / denom
        let param = param.add(exp_avg.clone().mul_scalar(-step_size).div(denom));

        let state = AdamState {
            step,
            exp_avg,
            exp_avg_sq,
            max_exp_avg_sq,
        };
        (param, state)
    }
}

/// `start.lerp(end, weight)` with ATen's formula: `start + weight * (end - start)` for
/// `|weight| < 0.5`, else `end - (end - start) * (1 - weight)`, the weight in f32 as ATen
/// casts it.
pub(crate) fn lerp<const D: usize>(start: Tensor<D>, end: Tensor<D>, weight: f64) -> Tensor<D> {
    let weight = weight as f32;
    let diff = end.clone().sub(start.clone());
    if weight.abs() < 0.5 {
        start.add(diff.mul_scalar(weight))
    } else {
        end.sub(diff.mul_scalar(1.0f32 - weight))
    }
}

impl Optimizer for Adam {
    type State<const D: usize> = AdamState<D>;

    fn step<const D: usize>(
        &self,
        lr: f64,
        tensor: Tensor<D>,
        grad: Tensor<D>,
        state: Option<AdamState<D>>,
    ) -> (Tensor<D>, Option<AdamState<D>>) {
        let (tensor, state) = self.rule.step(lr, tensor, grad, state);
        (tensor, Some(state))
    }

    fn to_device<const D: usize>(state: AdamState<D>, device: &Device) -> AdamState<D> {
        state.moved_to(device)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use dl_core::BackendKind;

    #[test]
    fn defaults_are_pytorchs() {
        let c = AdamConfig::new();
        assert_eq!(
            (c.lr, c.betas, c.eps, c.weight_decay, c.amsgrad),
            (1e-3, (0.9, 0.999), 1e-8, 0.0, false)
        );
    }

    #[test]
    fn invalid_settings_are_errors_naming_the_setting() {
        let cases = [
            (AdamConfig::new().with_lr(-1e-3), "Adam lr"),
            (AdamConfig::new().with_eps(-1e-8), "Adam eps"),
            (AdamConfig::new().with_betas((1.0, 0.999)), "Adam beta_1"),
            (AdamConfig::new().with_betas((-0.1, 0.999)), "Adam beta_1"),
            (AdamConfig::new().with_betas((0.9, 1.5)), "Adam beta_2"),
            (AdamConfig::new().with_betas((0.9, f64::NAN)), "Adam beta_2"),
            (
                AdamConfig::new().with_weight_decay(-0.1),
                "Adam weight_decay",
            ),
        ];
        for (config, what) in cases {
            let err = config.build().err().unwrap();
            assert!(err.to_string().contains(what), "{err}");
        }
    }

    #[test]
    fn first_step_moves_each_weight_by_lr() {
        // With m = (1-b1) g and v = (1-b2) g^2, the bias corrections cancel:
        // step = lr * g / (|g| + eps * ...) which is lr * sign(g) up to eps.
        let device = BackendKind::Flex.device().unwrap();
        let adam = AdamConfig::new().build().unwrap();
        let (p, state) = adam.step(
            0.01,
            Tensor::<1>::from_floats([1.0, 1.0], &device),
            Tensor::<1>::from_floats([3.0, -0.5], &device),
            None,
        );
        let p = p.to_data().try_to_vec::<f32>().unwrap();
        assert!((p[0] - 0.99).abs() < 1e-6, "{p:?}");
        assert!((p[1] - 1.01).abs() < 1e-6, "{p:?}");
        let state = state.unwrap();
        assert_eq!(state.step, 1);
        assert!(state.max_exp_avg_sq.is_none());
    }

    #[test]
    fn amsgrad_keeps_the_running_maximum() {
        // v1 = 0.001 * 16 = 0.016; v2 = 0.999 * 0.016 + 0.001 * 0 = 0.015984 < v1.
        let device = BackendKind::Flex.device().unwrap();
        let adam = AdamConfig::new().with_amsgrad(true).build().unwrap();
        let p = Tensor::<1>::from_floats([0.0], &device);
        let (p, state) = adam.step(0.1, p, Tensor::from_floats([4.0], &device), None);
        let (_, state) = adam.step(0.1, p, Tensor::from_floats([0.0], &device), state);
        let state = state.unwrap();
        let v = state.exp_avg_sq.into_scalar::<f32>();
        let v_max = state.max_exp_avg_sq.unwrap().into_scalar::<f32>();
        assert!((v - 0.015_984).abs() < 1e-8, "{v}");
        assert!((v_max - 0.016).abs() < 1e-8, "{v_max}");
    }

    #[test]
    fn lerp_uses_both_aten_branches() {
        let device = BackendKind::Flex.device().unwrap();
        let a = Tensor::<1>::from_floats([0.0, 10.0], &device);
        let b = Tensor::<1>::from_floats([4.0, 20.0], &device);
        let small = lerp(a.clone(), b.clone(), 0.25)
            .to_data()
            .try_to_vec::<f32>()
            .unwrap();
        let large = lerp(a, b, 0.75).to_data().try_to_vec::<f32>().unwrap();
        assert_eq!(small, vec![1.0, 12.5]);
        assert_eq!(large, vec![3.0, 17.5]);
    }
}
