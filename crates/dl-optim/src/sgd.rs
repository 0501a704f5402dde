//! Stochastic gradient descent with PyTorch's update rule (`torch.optim.SGD`).

use burn::config::Config;
use burn::optim::{ModuleOptimizer, Optimizer, RecordState, StateSink, StateSource};
use burn::tensor::{Device, Tensor};
use dl_core::validate::{finite, non_negative};
use dl_core::{Error, Result};

use crate::record::{push_tensor, take_tensor};

/// Configuration of [`Sgd`], with `torch.optim.SGD`'s defaults.
///
/// Unlike Burn's own SGD, `dampening` defaults to 0 (Burn: 0.1) and momentum is configured here
/// directly, as PyTorch does.
///
/// ```
/// use dl_optim::SgdConfig;
/// let config = SgdConfig::new().with_lr(0.1).with_momentum(0.9).with_nesterov(true);
/// let optimizer = config.init()?; // a burn::optim::ModuleOptimizer
/// // Nesterov momentum needs momentum > 0 and no dampening, as in PyTorch.
/// assert!(SgdConfig::new().with_nesterov(true).init().is_err());
/// # let _ = optimizer;
/// # Ok::<(), dl_core::Error>(())
/// ```
#[derive(Config, Debug)]
pub struct SgdConfig {
    /// Learning rate to pass to `step` when no schedule drives it (PyTorch default 1e-3).
    /// `ModuleOptimizer::step` takes the learning rate of each step; this value is validated
    /// and is the base that a schedule scales.
    #[config(default = 1e-3)]
    pub lr: f64,
    /// Momentum factor; 0 disables the momentum buffer.
    #[config(default = 0.0)]
    pub momentum: f64,
    /// Dampening of the gradient added to the momentum buffer (not applied on the first step).
    #[config(default = 0.0)]
    pub dampening: f64,
    /// Use Nesterov momentum (needs `momentum > 0` and `dampening == 0`).
    #[config(default = false)]
    pub nesterov: bool,
    /// L2 penalty: `weight_decay * param` is added to the gradient.
    #[config(default = 0.0)]
    pub weight_decay: f64,
}

impl SgdConfig {
    /// Check every setting against PyTorch's rules.
    ///
    /// Errors: a negative or non-finite `lr`, `momentum` or `weight_decay`, a non-finite
    /// `dampening`, or `nesterov` without momentum or with dampening.
    pub fn validate(&self) -> Result<()> {
        non_negative("SGD lr", self.lr)?;
        non_negative("SGD momentum", self.momentum)?;
        finite("SGD dampening", self.dampening)?;
        non_negative("SGD weight_decay", self.weight_decay)?;
        if self.nesterov && (self.momentum <= 0.0 || self.dampening != 0.0) {
            return Err(Error::invalid(
                "SGD nesterov",
                "momentum > 0 and dampening 0",
                format!(
                    "momentum {} and dampening {}",
                    self.momentum, self.dampening
                ),
            ));
        }
        Ok(())
    }

    /// The per-tensor optimizer, for
    /// [`ModuleOptimizer::with_group`](burn::optim::ModuleOptimizer::with_group).
    pub fn build(&self) -> Result<Sgd> {
        self.validate()?;
        Ok(Sgd {
            momentum: self.momentum,
            dampening: self.dampening,
            nesterov: self.nesterov,
            weight_decay: self.weight_decay,
        })
    }

    /// An optimizer for a whole module: `optimizer.step(lr, module, grads)`.
    pub fn init(&self) -> Result<ModuleOptimizer> {
        Ok(ModuleOptimizer::from(self.build()?))
    }
}

/// SGD with optional momentum, dampening, Nesterov momentum and L2 weight decay.
///
/// For each parameter `p` with gradient `g`, exactly as `torch.optim.SGD` (single-tensor path):
///
/// ```text
/// g = g + weight_decay * p                          (if weight_decay != 0)
/// buf = g                                           (first step, if momentum != 0)
/// buf = momentum * buf + (1 - dampening) * g        (later steps)
/// g = g + momentum * buf   if nesterov   else   buf
/// p = p - lr * g
/// ```
#[derive(Clone, Debug)]
pub struct Sgd {
    momentum: f64,
    dampening: f64,
    nesterov: bool,
    weight_decay: f64,
}

/// Per-parameter state of [`Sgd`]: the momentum buffer (only kept when momentum is on).
#[derive(Clone, Debug)]
pub struct SgdState<const D: usize> {
    /// PyTorch's `momentum_buffer`.
    pub momentum_buffer: Tensor<D>,
}

impl<const D: usize> RecordState for SgdState<D> {
    fn state_flatten(&self, prefix: &str, out: &mut StateSink) {
        push_tensor(out, prefix, "momentum_buffer", &self.momentum_buffer);
    }

    fn state_unflatten(prefix: &str, src: &mut StateSource, device: &Device) -> Option<Self> {
        Some(Self {
            momentum_buffer: take_tensor(src, prefix, "momentum_buffer", device)?,
        })
    }
}

impl Optimizer for Sgd {
    type State<const D: usize> = SgdState<D>;

    fn step<const D: usize>(
        &self,
        lr: f64,
        tensor: Tensor<D>,
        grad: Tensor<D>,
        state: Option<SgdState<D>>,
    ) -> (Tensor<D>, Option<SgdState<D>>) {
        let mut grad = grad;
        if self.weight_decay != 0.0 {
            grad = grad.add(tensor.clone().mul_scalar(self.weight_decay));
        }
        let mut new_state = None;
        if self.momentum != 0.0 {
            let buf = match state {
                None => grad.clone(),
                Some(state) => state
                    .momentum_buffer
                    .mul_scalar(self.momentum)
                    .add(grad.clone().mul_scalar(1.0 - self.dampening)),
            };
            grad = if self.nesterov {
                grad.add(buf.clone().mul_scalar(self.momentum))
            } else {
                buf.clone()
            };
            new_state = Some(SgdState {
                momentum_buffer: buf,
            });
        }
        (tensor.add(grad.mul_scalar(-lr)), new_state)
    }

    fn to_device<const D: usize>(state: SgdState<D>, device: &Device) -> SgdState<D> {
        SgdState {
            momentum_buffer: state.momentum_buffer.to_device(device),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use dl_core::BackendKind;

    #[test]
    fn defaults_are_pytorchs() {
        let c = SgdConfig::new();
        assert_eq!(
            (c.lr, c.momentum, c.dampening, c.nesterov, c.weight_decay),
            (1e-3, 0.0, 0.0, false, 0.0)
        );
    }

    #[test]
    fn invalid_settings_are_errors_naming_the_setting() {
        let cases = [
            (SgdConfig::new().with_lr(-0.1), "SGD lr"),
            (SgdConfig::new().with_lr(f64::NAN), "SGD lr"),
            (SgdConfig::new().with_momentum(-0.5), "SGD momentum"),
            (
                SgdConfig::new().with_weight_decay(-1e-4),
                "SGD weight_decay",
            ),
            (
                SgdConfig::new().with_dampening(f64::INFINITY),
                "SGD dampening",
            ),
            (SgdConfig::new().with_nesterov(true), "SGD nesterov"),
            (
                SgdConfig::new()
                    .with_nesterov(true)
                    .with_momentum(0.9)
                    .with_dampening(0.1),
                "SGD nesterov",
            ),
        ];
        for (config, what) in cases {
            let err = config.init().err().unwrap();
            assert!(err.to_string().contains(what), "{err}");
        }
        // Nesterov with momentum and no dampening is valid, and keeps those settings.
        let sgd = SgdConfig::new()
            .with_nesterov(true)
            .with_momentum(0.9)
            .build()
            .unwrap();
        assert_eq!(
            (sgd.momentum, sgd.dampening, sgd.nesterov, sgd.weight_decay),
            (0.9, 0.0, true, 0.0)
        );
    }

    #[test]
    fn one_tensor_follows_the_update_rule_by_hand() {
        // p = 1, g = 2, lr 0.1, momentum 0.9, dampening 0.5, weight_decay 0.5:
        // step 1: g = 2 + 0.5*1 = 2.5; buf = 2.5; p = 1 - 0.25 = 0.75
        // step 2: g = 2 + 0.5*0.75 = 2.375; buf = 0.9*2.5 + 0.5*2.375 = 3.4375;
        //         p = 0.75 - 0.34375 = 0.40625
        let device = BackendKind::Flex.device().unwrap();
        let sgd = SgdConfig::new()
            .with_momentum(0.9)
            .with_dampening(0.5)
            .with_weight_decay(0.5)
            .build()
            .unwrap();
        let grad = Tensor::<1>::from_floats([2.0], &device);
        let p = Tensor::<1>::from_floats([1.0], &device);
        let (p, state) = sgd.step(0.1, p, grad.clone(), None);
        let buf = state.clone().unwrap().momentum_buffer.into_scalar::<f32>();
        assert_eq!(buf, 2.5);
        assert!((p.clone().into_scalar::<f32>() - 0.75).abs() < 1e-7);
        let (p, state) = sgd.step(0.1, p, grad, state);
        let buf = state.unwrap().momentum_buffer.into_scalar::<f32>();
        assert!((buf - 3.4375).abs() < 1e-6);
        assert!((p.into_scalar::<f32>() - 0.40625).abs() < 1e-6);
    }

    #[test]
    fn plain_sgd_keeps_no_state() {
        let device = BackendKind::Flex.device().unwrap();
        let sgd = SgdConfig::new().build().unwrap();
        let (p, state) = sgd.step(
            0.5,
            Tensor::<1>::from_floats([1.0, -1.0], &device),
            Tensor::<1>::from_floats([2.0, 4.0], &device),
            None,
        );
        assert!(state.is_none());
        // 1 - 0.5*2 = 0, -1 - 0.5*4 = -3
        assert_eq!(p.to_data().try_to_vec::<f32>().unwrap(), vec![0.0, -3.0]);
    }
}
