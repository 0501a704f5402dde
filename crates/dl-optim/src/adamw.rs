//! AdamW with PyTorch's update rule (`torch.optim.AdamW`): Adam with decoupled weight decay.

use burn::config::Config;
use burn::optim::{ModuleOptimizer, Optimizer};
use burn::tensor::{Device, Tensor};
use dl_core::Result;

use crate::adam::{AdamRule, AdamState, validate_adam};

/// Configuration of [`AdamW`], with `torch.optim.AdamW`'s defaults (weight decay 0.01).
///
/// ```
/// use dl_optim::AdamWConfig;
/// let optimizer = AdamWConfig::new().with_weight_decay(0.05).init()?;
/// assert!(AdamWConfig::new().with_eps(-1.0).init().is_err());
/// # let _ = optimizer;
/// # Ok::<(), dl_core::Error>(())
/// ```
#[derive(Config, Debug)]
pub struct AdamWConfig {
    /// Learning rate to pass to `step` when no schedule drives it (PyTorch default 1e-3).
    #[config(default = 1e-3)]
    pub lr: f64,
    /// Decay rates `(beta1, beta2)` of the first and second moment averages, each in `[0, 1)`.
    #[config(default = "(0.9, 0.999)")]
    pub betas: (f64, f64),
    /// Added to the denominator for numerical stability.
    #[config(default = 1e-8)]
    pub eps: f64,
    /// Decoupled decay: each step first scales the parameter by `1 - lr * weight_decay`.
    #[config(default = 0.01)]
    pub weight_decay: f64,
    /// Use the running maximum of the second moment (AMSGrad).
    #[config(default = false)]
    pub amsgrad: bool,
}

impl AdamWConfig {
    /// Check every setting against PyTorch's rules: `lr`, `eps` and `weight_decay` finite and
    /// `>= 0`, both betas in `[0, 1)`.
    pub fn validate(&self) -> Result<()> {
        validate_adam("AdamW", self.lr, self.betas, self.eps, self.weight_decay)
    }

    /// The per-tensor optimizer, for
    /// [`ModuleOptimizer::with_group`](burn::optim::ModuleOptimizer::with_group).
    pub fn build(&self) -> Result<AdamW> {
        self.validate()?;
        Ok(AdamW {
            rule: AdamRule {
                beta_1: self.betas.0,
                beta_2: self.betas.1,
                eps: self.eps,
                weight_decay: self.weight_decay,
                amsgrad: self.amsgrad,
                decoupled_weight_decay: true,
            },
        })
    }

    /// An optimizer for a whole module: `optimizer.step(lr, module, grads)`.
    pub fn init(&self) -> Result<ModuleOptimizer> {
        Ok(ModuleOptimizer::from(self.build()?))
    }
}

/// AdamW (Loshchilov and Hutter, 2017): [`Adam`](crate::Adam)'s update after the decoupled
/// decay `p = p * (1 - lr * weight_decay)`; the gradient itself is not changed.
///
/// The state is [`AdamState`], the same as Adam's.
#[derive(Clone, Debug)]
pub struct AdamW {
    rule: AdamRule,
}

impl Optimizer for AdamW {
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
    use crate::AdamConfig;
    use dl_core::BackendKind;

    #[test]
    fn defaults_are_pytorchs() {
        let c = AdamWConfig::new();
        assert_eq!(
            (c.lr, c.betas, c.eps, c.weight_decay, c.amsgrad),
            (1e-3, (0.9, 0.999), 1e-8, 0.01, false)
        );
    }

    #[test]
    fn invalid_settings_are_errors_naming_the_setting() {
        let err = AdamWConfig::new()
            .with_weight_decay(-0.01)
            .build()
            .err()
            .unwrap();
        assert!(err.to_string().contains("AdamW weight_decay"), "{err}");
        let err = AdamWConfig::new()
            .with_betas((0.9, 1.0))
            .build()
            .err()
            .unwrap();
        assert!(err.to_string().contains("AdamW beta_2"), "{err}");
    }

    #[test]
    fn decay_is_decoupled_from_the_gradient() {
        // A zero gradient leaves Adam's update at 0 (m = 0), so AdamW's only change is the
        // decay: p = 2 * (1 - 0.1 * 0.1) = 1.98. Adam's L2 decay instead adds 0.1 * p = 0.2 to
        // the gradient, and its first step moves p by lr = 0.1 (m / sqrt(v) = 1): p = 1.9.
        let device = BackendKind::Flex.device().unwrap();
        let p = || Tensor::<1>::from_floats([2.0], &device);
        let g = || Tensor::<1>::from_floats([0.0], &device);
        let adamw = AdamWConfig::new().with_weight_decay(0.1).build().unwrap();
        let (decoupled, _) = adamw.step(0.1, p(), g(), None);
        assert!((decoupled.into_scalar::<f32>() - 1.98).abs() < 1e-6);
        let adam = AdamConfig::new().with_weight_decay(0.1).build().unwrap();
        let (coupled, _) = adam.step(0.1, p(), g(), None);
        assert!((coupled.into_scalar::<f32>() - 1.9).abs() < 1e-6);
    }
}
